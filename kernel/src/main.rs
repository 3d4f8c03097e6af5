//! The kmem test kernel: a bare-metal x86-64 kernel whose memory manager is
//! kmem, booted by QEMU (`-kernel`, PVH).
//!
//! Boot order (`kmain`, boot CPU):
//! 1. per-CPU area (GS base), serial console, legacy PICs masked, IDT, TSS;
//! 2. the PVH start info: memory map, command line, RSDP (`pvh.rs`);
//! 3. local APIC through the fixmap, TSC and APIC timer calibrated on the
//!    PIT, the MADT's processors (`acpi.rs`);
//! 4. the memory map with `mem=`/`memmap=` applied → the linear map of all
//!    RAM (`paging.rs`) → `Kmem::boot` with the kernel image, the boot page
//!    tables, the boot data and the first MiB reserved;
//! 5. page tables from kmem from now on; the other CPUs brought up
//!    (`smp.rs`);
//! 6. the tests (`ktest.rs`), `/proc` files on the console, every page
//!    checked back, the verdict through `isa-debug-exit`.
//!
//! Kernel parameters of its own (`ktest.*`) are taken off the command line
//! before kmem parses the rest.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(dead_code)]

mod acpi;
mod apic;
mod arch;
mod boot;
mod gdt;
mod idt;
mod ioremap;
mod irq_work;
mod ktest;
mod paging;
mod pci;
mod percpu;
mod platform;
mod printk;
mod pvh;
mod qemu_exit;
mod serial;
mod smp;
mod stacktrace;
mod time;
mod tlb;
mod traps;

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};
use kmem::e820::E820Type;
use kmem::{BootInfo, Kmem};
use platform::BareMetal;

/// The machine, once booted.
static KMEM: AtomicPtr<Kmem<BareMetal>> = AtomicPtr::new(core::ptr::null_mut());

/// The booted machine.
pub fn kmem() -> &'static Kmem<BareMetal> {
    let p = KMEM.load(Ordering::Acquire);
    assert!(!p.is_null(), "kmem used before boot");
    // SAFETY: set once after a successful boot; the machine lives forever
    // (its RAM stays mapped by the linear map).
    unsafe { &*p }
}

/// Whether the machine is booted.
pub fn kmem_ready() -> bool {
    !KMEM.load(Ordering::Acquire).is_null()
}

static mut BOOT_DATA: pvh::BootData = pvh::BootData::new();

/// Fixed place of the AP trampoline (below 1 MiB, in the reserved first MiB).
pub const TRAMPOLINE_PHYS: u64 = 0x8000;

/// The kernel's own options (`ktest.*`).
#[derive(Clone, Copy, Default)]
pub struct KtestOpts {
    /// `ktest.fault=pf|gp|ud|df|early`: fault on purpose.
    pub fault: Option<&'static str>,
    /// `ktest.iterations=N`: rounds of the SMP stress per CPU.
    pub iterations: Option<usize>,
    /// `ktest.debug`: print more state.
    pub debug: bool,
    /// `ktest.spurious_db`: raise unasked-for `#DB`s (`int1`, a `TF` step)
    /// before the tests, which the run must survive.
    pub spurious_db: bool,
}

static mut CMDLINE_REST: [u8; 2048] = [0; 2048];

/// Split `ktest.*` options off the command line; the rest goes to kmem.
fn split_cmdline(all: &'static str) -> (KtestOpts, &'static str) {
    let mut o = KtestOpts::default();
    // SAFETY: boot CPU, once.
    let rest = unsafe { &mut *core::ptr::addr_of_mut!(CMDLINE_REST) };
    let mut n = 0;
    for w in all.split_ascii_whitespace() {
        if let Some(v) = w.strip_prefix("ktest.fault=") {
            o.fault = Some(v);
        } else if let Some(v) = w.strip_prefix("ktest.iterations=") {
            o.iterations = v.parse().ok();
        } else if w == "ktest.debug" {
            o.debug = true;
        } else if w == "ktest.spurious_db" {
            o.spurious_db = true;
        } else if w == "ktest.no_shootdown" {
            tlb::BROKEN_NO_SHOOTDOWN.store(true, Ordering::Relaxed);
        } else if n + w.len() < rest.len() {
            if n > 0 {
                rest[n] = b' ';
                n += 1;
            }
            rest[n..n + w.len()].copy_from_slice(w.as_bytes());
            n += w.len();
        }
    }
    (o, core::str::from_utf8(&rest[..n]).unwrap_or(""))
}

/// Boot failure before or during `Kmem::boot`: say why and fail the run.
fn boot_fail(why: &dyn core::fmt::Display) -> ! {
    printk!("Kernel panic - not syncing: {}", why);
    qemu_exit::exit(qemu_exit::EXIT_FAIL)
}

#[no_mangle]
extern "C" fn kmain(start_info: u32) -> ! {
    // SAFETY: first thing on the boot CPU.
    unsafe { percpu::init_this_cpu(0, 0) };
    serial::init();
    // The firmware's last line ("Booting from ROM..") has no newline.
    serial::write_bytes(b"\n");
    apic::disable_pic();
    idt::init();
    idt::load();
    paging::init_pat();
    // SAFETY: once, on the boot CPU, after its per-CPU area.
    unsafe { gdt::init_this_cpu(0) };
    printk!(
        "kmem test kernel: PVH entry at {:#x}, long mode, serial console",
        start_info
    );

    // SAFETY: boot CPU, before anything else touches BOOT_DATA.
    let bd = unsafe { &mut *core::ptr::addr_of_mut!(BOOT_DATA) };
    // SAFETY: the value QEMU passed in ebx.
    if let Err(e) = unsafe { pvh::parse(start_info as u64, bd) } {
        boot_fail(&e);
    }
    let (opts, cmdline) = split_cmdline(bd.cmdline());
    printk!("Kernel command line: {}", bd.cmdline());
    if opts.fault == Some("early") {
        ktest::fault("pf");
    }

    let lapic = apic::map();
    apic::init_this_cpu();
    let bsp_apic = apic::id();
    // SAFETY: the boot CPU's area, refreshed with its real APIC id.
    unsafe { percpu::init_this_cpu(0, bsp_apic) };
    apic::start_calibration_count();
    let (khz, apic_per_ms) = time::calibrate(apic::current_count);
    apic::set_timer_rate(apic_per_ms);
    printk!(
        "tsc: Detected {}.{:03} MHz processor, APIC timer {} kHz (/16), local APIC at {:#x}",
        khz / 1000,
        khz % 1000,
        apic_per_ms,
        lapic
    );

    let madt = acpi::parse_madt(bd.rsdp);
    let (mut nr_cpus, cpu_ids) = match &madt {
        Ok(m) => {
            let (io_id, io_addr, io_gsi) = m.ioapic.unwrap_or((0, 0, 0));
            printk!(
                "ACPI: MADT: {} processors, local APIC at {:#x}, I/O APIC {} at {:#x} (GSI base {})",
                m.nr_cpus,
                m.lapic_addr,
                io_id,
                io_addr,
                io_gsi
            );
            (m.nr_cpus, m.apic_ids)
        }
        Err(e) => {
            printk!("ACPI: {}; running on the boot CPU only", e);
            let mut ids = [0; boot::MAX_CPUS];
            ids[0] = bsp_apic;
            (1, ids)
        }
    };

    let params = kmem::cmdline::parse(cmdline);
    if let Some(n) = params.nr_cpus {
        nr_cpus = nr_cpus.min(n.max(1));
    }
    let mut e820 = bd.e820;
    if e820.apply_params(&params).is_err() {
        boot_fail(&"Invalid user supplied memory map");
    }
    // trim_bios_range: page 0 is BIOS data.
    e820.update(0, 4096, E820Type::Ram, E820Type::Reserved);
    e820.sanitize();

    let mut ram = [(0u64, 0u64); kmem::e820::E820_MAX_ENTRIES];
    let mut nr_ram = 0;
    for e in e820.entries().iter().filter(|e| e.kind == E820Type::Ram) {
        ram[nr_ram] = (e.addr, e.addr + e.size);
        nr_ram += 1;
    }
    let Some(mapped) = paging::map_linear(&ram[..nr_ram]) else {
        boot_fail(&"out of early page-table pages for the linear map");
    };
    printk!(
        "Linear map: {} MiB at {:#x} ({} x 1G, {} x 2M), {} early page-table pages",
        mapped >> 20,
        paging::PAGE_OFFSET,
        paging::DIRECT_PAGES[2].load(Ordering::Relaxed),
        paging::DIRECT_PAGES[1].load(Ordering::Relaxed),
        paging::early_pool_used()
    );

    let (img_start, img_end) = boot::kernel_image();
    let reserved = [
        (0u64, 1u64 << 20), // BIOS, EBDA, real-mode trampoline (as x86 reserves the first MiB)
        (TRAMPOLINE_PHYS, 4096),
        (img_start, img_end - img_start), // text, data, bss: boot page tables, stacks, per-CPU areas
        bd.ranges[0],
        bd.ranges[1],
        bd.ranges[2],
    ];
    let reserved: &[(u64, u64)] = &reserved;
    let info = BootInfo {
        e820: &e820,
        page_offset: paging::PAGE_OFFSET,
        ram_zeroed: false,
        reserved,
        params: &params,
        vmalloc_window: Some((paging::VMALLOC_START, paging::VMALLOC_SIZE)),
    };
    // SAFETY: every RAM range of `e820` is mapped at PAGE_OFFSET + phys by the linear map, for good; the
    // reserved ranges cover everything the kernel itself uses.
    let k: NonNull<Kmem<BareMetal>> = match unsafe { Kmem::boot(BareMetal::new(nr_cpus), &info) } {
        Ok(k) => k,
        Err(e) => boot_fail(&e),
    };
    KMEM.store(k.as_ptr(), Ordering::Release);
    // SAFETY: boot CPU, no other CPU runs yet.
    unsafe {
        paging::set_pgtable_allocator(paging::PgtableAllocator {
            alloc: pgtable_alloc,
            free: pgtable_free,
        })
    };
    tlb::cpu_online(0);
    percpu::set_online(0);
    printk!(
        "Memory: {}K/{}K available, {} CPUs possible",
        kmem().nr_free_pages() * 4,
        e820.total_ram() >> 10,
        nr_cpus
    );
    ktest::run(opts, &cpu_ids[..nr_cpus])
}

fn pgtable_alloc() -> Option<u64> {
    let k = kmem();
    let page = k.alloc_page(kmem::GFP_KERNEL | kmem::__GFP_ZERO).ok()?;
    Some((k.page_to_pfn(page) as u64) << kmem::PAGE_SHIFT)
}

fn pgtable_free(phys: u64) {
    let k = kmem();
    if let Some(page) = k.pfn_to_page((phys >> kmem::PAGE_SHIFT) as usize) {
        // SAFETY: a page-table page `pgtable_alloc` took, no longer linked.
        unsafe { k.__free_pages(page, 0) };
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    printk!("Kernel panic - not syncing: {}", info);
    crate::platform_dump_stack();
    qemu_exit::exit(qemu_exit::EXIT_FAIL)
}

fn platform_dump_stack() {
    stacktrace::walk(stacktrace::current_rbp(), |ret| printk!("  {:016x}", ret));
}
