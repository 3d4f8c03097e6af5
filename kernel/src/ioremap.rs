//! ioremap of real devices, through the core's `ioremap` (a `VM_IOREMAP`
//! area of the vmalloc window) and the platform's `ioremap_pages` (4 KiB
//! PTEs with the cache mode's PAT/PCD/PWT bits):
//!
//! * the **local APIC**: its ID and version registers read through the
//!   ioremap mapping equal what the fixmap mapping reads, and the PTE is
//!   uncached (UC-: PCD);
//! * the **I/O APIC**: selecting its ID register and reading the window
//!   gives the id the MADT lists, and the version register answers;
//! * QEMU's **`edu` PCI device** (1234:11e8): its BAR0 is registered in the
//!   iomem tree at boot as the PCI core would (`pci_init`), claimed with
//!   `request_mem_region` as a driver would, then mapped with `ioremap`; the identification
//!   register reads `0xRRrr00ed` (`0xed` in its low byte) and the liveness
//!   register returns the complement of a value just written — only the
//!   device computes that, so the mapping reaches the device;
//! * **RAM is refused**: `ioremap` of a page the page allocator handed out
//!   gives NULL and the kernel's "ioremap on RAM" warning.
//!
//! Every mapping is unmapped again (`iounmap`); the vmalloc window's page
//! tables are checked empty at the end of the run.

use crate::{acpi, apic, kmem, paging, pci};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kmem::ioremap::{readl, writel};

type Report<'a> = &'a mut dyn FnMut(&str, bool, fmt::Arguments<'_>);

const EDU_VENDOR: u16 = 0x1234;
const EDU_DEVICE: u16 = 0x11e8;

/// Whether the 4 KiB PTE behind `virt` is uncached (PCD set).
fn pte_uncached(virt: usize) -> bool {
    paging::pte_of(virt & !0xfff).is_some_and(|e| e & paging::PTE_PCD != 0 && e & paging::PTE_P != 0)
}

fn local_apic(report: Report<'_>) {
    let k = kmem();
    let phys = apic::phys_base();
    let Some(m) = k.ioremap(phys, 4096) else {
        report(
            "ioremap_local_apic",
            false,
            format_args!("ioremap({phys:#x}) failed"),
        );
        return;
    };
    let base = m.as_ptr();
    // SAFETY: the APIC's register page, mapped uncached just above.
    let (id, ver) = unsafe { (readl(base.add(apic::APIC_ID)), readl(base.add(apic::APIC_LVR))) };
    let (fid, fver) = (apic::read_reg(apic::APIC_ID), apic::read_reg(apic::APIC_LVR));
    let uc = pte_uncached(base as usize);
    let inwin = k.is_vmalloc_addr(base) && k.is_ioremap_addr(base);
    k.iounmap(base);
    report(
        "ioremap_local_apic",
        id == fid && ver == fver && ver & 0xff != 0 && uc && inwin,
        format_args!(
            "{:#x} at {:p}: ID {:#010x} version {:#010x} (fixmap reads {:#010x} {:#010x}), uncached PTE: {}",
            phys, base, id, ver, fid, fver, uc
        ),
    );
}

fn io_apic(report: Report<'_>) {
    let k = kmem();
    let Some((madt_id, phys)) = acpi::ioapic() else {
        report(
            "ioremap_io_apic",
            false,
            format_args!("the MADT lists no I/O APIC"),
        );
        return;
    };
    let Some(m) = k.ioremap(phys, 0x20) else {
        report(
            "ioremap_io_apic",
            false,
            format_args!("ioremap({phys:#x}) failed"),
        );
        return;
    };
    let base = m.as_ptr();
    // SAFETY: IOREGSEL (+0) and IOWIN (+0x10) of the I/O APIC, mapped uncached.
    let (id, ver) = unsafe {
        writel(0x00, base);
        let id = readl(base.add(0x10));
        writel(0x01, base);
        (id, readl(base.add(0x10)))
    };
    let uc = pte_uncached(base as usize);
    k.iounmap(base);
    let hw_id = ((id >> 24) & 0x0f) as u8;
    report(
        "ioremap_io_apic",
        hw_id == madt_id && ver & 0xff != 0 && ver != u32::MAX && uc,
        format_args!(
            "{:#x} at {:p}: ID register {:#010x} (id {}, MADT says {}), version {:#010x} ({} redirection entries)",
            phys,
            base,
            id,
            hw_id,
            madt_id,
            ver,
            ((ver >> 16) & 0xff) + 1
        ),
    );
}

/// The edu device's BAR0 `(address, size)` as `pci_init` found it, and
/// whether its resource went into the iomem tree.
static EDU_BAR: AtomicU64 = AtomicU64::new(0);
static EDU_SIZE: AtomicU64 = AtomicU64::new(0);
static EDU_REGISTERED: AtomicBool = AtomicBool::new(false);

/// What the PCI core does at boot for the one device the tests use: find
/// QEMU's edu device, size its BAR0 and register the BAR in the iomem tree
/// (a resource that stays, as a PCI BAR's does).
pub fn pci_init() {
    let Some(dev) = pci::find(EDU_VENDOR, EDU_DEVICE) else {
        return;
    };
    let Some((bar, size)) = pci::mem_bar(dev, 0) else {
        return;
    };
    let ok = kmem()
        .request_iomem_resource(bar, size, "0000:00:edu BAR0")
        .is_ok();
    EDU_BAR.store(bar, Ordering::Relaxed);
    EDU_SIZE.store(size, Ordering::Relaxed);
    EDU_REGISTERED.store(ok, Ordering::Relaxed);
    crate::printk!(
        "pci 0000:00:{:02x}.{}: [1234:11e8] BAR 0 [mem {:#010x}-{:#010x}]",
        dev.dev,
        dev.func,
        bar,
        bar + size - 1
    );
}

fn edu(report: Report<'_>) {
    let k = kmem();
    let (bar, size) = (EDU_BAR.load(Ordering::Relaxed), EDU_SIZE.load(Ordering::Relaxed));
    if size == 0 {
        report(
            "ioremap_edu_bar0",
            false,
            format_args!("no edu device (1234:11e8) with a memory BAR0 on bus 0 (-device edu)"),
        );
        return;
    }
    let registered = EDU_REGISTERED.load(Ordering::Relaxed);
    let claimed = k.request_mem_region(bar, size, "edu").is_ok();
    let Some(m) = k.ioremap(bar, size as usize) else {
        report(
            "ioremap_edu_bar0",
            false,
            format_args!("ioremap({bar:#x}, {size:#x}) failed"),
        );
        return;
    };
    let base = m.as_ptr();
    let probe = (crate::arch::rdtsc() as u32) | 1;
    // SAFETY: the device's register BAR, mapped uncached: 0x00 is the
    // identification register, 0x04 the liveness check (reads ~written).
    let (ident, live) = unsafe {
        let ident = readl(base);
        writel(probe, base.add(4));
        (ident, readl(base.add(4)))
    };
    let uc = pte_uncached(base as usize);
    k.iounmap(base);
    if claimed {
        k.release_mem_region(bar, size);
    }
    report(
        "ioremap_edu_bar0",
        ident & 0xff == 0xed && live == !probe && uc && registered && claimed,
        format_args!(
            "BAR0 [mem {:#x}-{:#x}] at {:p}: ident {:#010x}, wrote {:#010x} to the liveness register, read {:#010x}; resource registered {}, claimed {}",
            bar,
            bar + size - 1,
            base,
            ident,
            probe,
            live,
            registered,
            claimed
        ),
    );
}

fn ram_refused(report: Report<'_>) {
    let k = kmem();
    let Ok(page) = k.alloc_page(kmem::GFP_KERNEL) else {
        report("ioremap_ram_refused", false, format_args!("no page"));
        return;
    };
    let phys = (k.page_to_pfn(page) as u64) << kmem::PAGE_SHIFT;
    let since = k.dmesg_len();
    let m = k.ioremap(phys, 4096);
    if let Some(m) = m {
        k.iounmap(m.as_ptr());
    }
    // SAFETY: allocated above, never mapped elsewhere.
    unsafe { k.__free_pages(page, 0) };
    let warned = kmem_testsuite::log_contains(k, since, "ioremap on RAM");
    report(
        "ioremap_ram_refused",
        m.is_none() && warned,
        format_args!(
            "ioremap of the allocated RAM page {:#x}: {:?}, warning printed: {}",
            phys, m, warned
        ),
    );
}

/// Run the ioremap checks, reporting each through `report`.
pub fn tests(report: Report<'_>) {
    local_apic(report);
    io_apic(report);
    edu(report);
    ram_refused(report);
    crate::printk::write_raw("==== /proc/iomem ====\n");
    let _ = kmem().iomem_show(&mut crate::ktest::Console);
}
