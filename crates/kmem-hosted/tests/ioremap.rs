//! ioremap, iounmap, the MMIO accessors and the iomem resource tree
//! (reference/linux-mm.md §1.6): device memory registered at a hole of the
//! memory map is mapped for real, RAM is refused with the kernel's warning,
//! misuse is reported and changes nothing, /proc/vmallocinfo and /proc/iomem
//! print the kernel's lines.

mod common;

use common::*;
use kmem::ioremap::*;
use kmem::*;
use kmem_hosted::{FakeDevice, IomemError, Machine};
use std::sync::atomic::Ordering;

const CMDLINE: &str = "quiet mem=256M nr_cpus=2 kswapd=off";
/// In the PCI hole of every small machine's memory map.
const BAR: u64 = 0xfd00_0000;
const BAR_SIZE: u64 = 64 * 1024;

fn warnings(m: &Machine) -> usize {
    m.events.warnings.load(Ordering::Relaxed)
}

fn machine_with_device() -> (Machine, FakeDevice) {
    let m = boot(CMDLINE);
    let dev = FakeDevice::new("fakedev", BAR_SIZE).unwrap();
    m.register_iomem("fakedev", BAR, BAR_SIZE, dev.fd(), 0).unwrap();
    (m, dev)
}

#[test]
fn writes_through_ioremap_reach_the_device_and_back() {
    let (m, dev) = machine_with_device();
    let regs = m.ioremap(BAR, BAR_SIZE as usize).expect("device memory maps");
    assert!(m.is_ioremap_addr(regs.as_ptr()));
    let p = regs.as_ptr();
    // SAFETY: all offsets are inside the 64 KiB mapping.
    unsafe {
        writel(0xdead_beef, p.add(0x10));
        writeb(0x5a, p.add(0x20));
        writew(0x1234, p.add(0x22));
        writeq(0x0102_0304_0506_0708, p.add(0x28));
        iowrite32(0xcafe_f00d, p.add(0xfffc));
    }
    assert_eq!(dev.read_u32(0x10).unwrap(), 0xdead_beef);
    let mut b = [0u8; 12];
    dev.read_at(&mut b, 0x20).unwrap();
    assert_eq!(b, [0x5a, 0, 0x34, 0x12, 0, 0, 0, 0, 0x08, 0x07, 0x06, 0x05]);
    assert_eq!(dev.read_u32(0xfffc).unwrap(), 0xcafe_f00d);
    // The device changes a register: the driver sees it.
    dev.write_u32(0x40, 0x8000_0001).unwrap();
    dev.write_at(&[1, 2, 3, 4, 5, 6, 7], 0x101).unwrap();
    // SAFETY: inside the mapping.
    unsafe {
        assert_eq!(readl(p.add(0x40)), 0x8000_0001);
        assert_eq!(ioread16(p.add(0x40)), 0x0001);
        assert_eq!(readb(p.add(0x43)), 0x80);
        let mut got = [0u8; 7];
        memcpy_fromio(got.as_mut_ptr(), p.add(0x101), 7);
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7]);
        memset_io(p.add(0x200), 0xee, 9);
        memcpy_toio(p.add(0x301), b"registers".as_ptr(), 9);
    }
    let mut got = [0u8; 10];
    dev.read_at(&mut got, 0x200).unwrap();
    assert_eq!(got, [0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0]);
    dev.read_at(&mut got[..9], 0x301).unwrap();
    assert_eq!(&got[..9], b"registers");
    m.iounmap(p);
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn unaligned_phys_returns_the_offset_into_the_area() {
    let (m, dev) = machine_with_device();
    dev.write_at(&[0xab, 0xcd], 0x1123).unwrap();
    let p = m.ioremap(BAR + 0x1123, 2).expect("maps");
    assert_eq!(p.as_ptr() as usize & (PAGE_SIZE - 1), 0x123);
    // SAFETY: inside the mapping.
    assert_eq!(unsafe { readw(p.as_ptr()) }, 0xcdab);
    // Spanning a page boundary maps both pages.
    let q = m.ioremap(BAR + 0x2ffe, 4).expect("maps");
    // SAFETY: inside the mapping.
    unsafe { writel(0x4433_2211, q.as_ptr()) };
    let mut b = [0u8; 4];
    dev.read_at(&mut b, 0x2ffe).unwrap();
    assert_eq!(b, [0x11, 0x22, 0x33, 0x44]);
    let info = m.proc_read("vmallocinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.contains("phys=0x00000000fd002000"))
        .unwrap_or_else(|| panic!("{info}"));
    assert!(line.contains(" 12288 "), "two pages and the guard: {line}");
    // iounmap takes the address ioremap returned, offset and all.
    m.iounmap(p.as_ptr());
    m.iounmap(q.as_ptr());
    let info = m.proc_read("vmallocinfo").unwrap();
    assert!(!info.contains("ioremap"), "{info}");
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn ioremap_of_ram_is_refused_with_the_kernels_warning() {
    let m = boot(CMDLINE);
    let since = m.dmesg_len();
    assert!(m.ioremap(16 << 20, PAGE_SIZE).is_none());
    let log = m.dmesg_since(since);
    assert!(
        log.contains("ioremap on RAM at 0x0000000001000000 - 0x0000000001000fff"),
        "{log}"
    );
    assert_eq!(warnings(&m), 1);
    // A page the allocator handed out, even a sub-page range of it.
    let page = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    let phys = (m.page_to_pfn(page) as u64) << PAGE_SHIFT;
    assert!(m.ioremap_wc(phys + 100, 8).is_none());
    // A range that only ends in RAM.
    assert!(m.ioremap_cache(phys - 8, 16).is_none());
    // SAFETY: ours, allocated above.
    unsafe { m.__free_pages(page, 0) };
    // WARN_ONCE: the warning was printed once.
    assert_eq!(warnings(&m), 1);
    assert!(!m.proc_read("vmallocinfo").unwrap().contains("ioremap"));
    // Zero size and wrap-around give NULL quietly.
    assert!(m.ioremap(BAR, 0).is_none());
    assert!(m.ioremap(u64::MAX - 10, 100).is_none());
}

#[test]
fn reserved_ram_can_be_ioremapped_like_firmware_areas() {
    // The first megabyte is reserved RAM (BIOS data): x86 lets it be mapped,
    // and the mapping shows the same memory as the linear map.
    let m = boot(CMDLINE);
    let p = m.ioremap(0x50000, PAGE_SIZE).expect("reserved RAM maps");
    let lin = m.phys_to_virt(0x50000);
    // SAFETY: both map the same reserved page, which nothing else uses.
    unsafe {
        writel(0x1357_9bdf, p.as_ptr().add(64));
        assert_eq!(lin.add(64).cast::<u32>().read(), 0x1357_9bdf);
        lin.add(64).cast::<u32>().write(0);
    }
    m.iounmap(p.as_ptr());
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn a_hole_with_nothing_behind_it_is_refused_with_a_message() {
    let m = boot(CMDLINE);
    let since = m.dmesg_len();
    assert!(m.ioremap(0xe000_0000, PAGE_SIZE).is_none());
    let log = m.dmesg_since(since);
    assert!(
        log.contains("ioremap: cannot map [mem 0xe0000000-0xe0000fff]"),
        "{log}"
    );
    // The area went back: nothing is left in vmallocinfo but an unpurged range.
    let info = m.proc_read("vmallocinfo").unwrap();
    assert!(!info.contains("ioremap"), "{info}");
}

#[test]
fn bad_iounmap_and_vfree_warn_and_change_nothing() {
    let (m, dev) = machine_with_device();
    let p = m.ioremap(BAR, PAGE_SIZE).unwrap();
    let v = m.vmalloc(PAGE_SIZE).unwrap();
    let since = m.dmesg_len();
    // Not an ioremap address at all.
    let mut x = 0u32;
    m.iounmap(&mut x as *mut u32 as *const u8);
    assert_eq!(warnings(&m), 1);
    // Inside the window but not the start of an ioremap area.
    // SAFETY: address arithmetic only.
    m.iounmap(unsafe { p.as_ptr().add(PAGE_SIZE) });
    // A vmalloc area is not iounmap's to free.
    m.iounmap(v.as_ptr());
    let log = m.dmesg_since(since);
    assert_eq!(log.matches("iounmap: bad address").count(), 2, "{log}");
    // vfree refuses the ioremap area.
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
    assert!(m
        .dmesg_since(since)
        .contains("Trying to vfree() nonexistent vm area"));
    // Both areas still work.
    // SAFETY: both mappings are live.
    unsafe {
        writel(7, p.as_ptr());
        v.as_ptr().write(9);
    }
    assert_eq!(dev.read_u32(0).unwrap(), 7);
    m.iounmap(p.as_ptr());
    // Double iounmap.
    let since = m.dmesg_len();
    m.iounmap(p.as_ptr());
    assert!(m.dmesg_since(since).contains("iounmap: bad address"));
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(v.as_ptr()) };
    assert_eq!(m.vmalloc_nr_pages(), 0);
}

#[test]
fn vmallocinfo_lines_and_ioremap_alignment() {
    let (m, _dev) = machine_with_device();
    let a = m.ioremap(BAR + 3 * PAGE_SIZE as u64, 3 * PAGE_SIZE).unwrap();
    let line = line!() + 1;
    let b = m.ioremap_wc(BAR, BAR_SIZE as usize).unwrap();
    // Aligned to the size's order: 3 pages round up to 16 KiB, 64 KiB stays.
    assert_eq!(a.as_ptr() as usize % (16 << 10), 0);
    assert_eq!(b.as_ptr() as usize % (64 << 10), 0);
    let info = m.proc_read("vmallocinfo").unwrap();
    let bs = b.as_ptr() as usize;
    let want = format!(
        "0x{:016x}-0x{:016x} {:7} {}:{} phys=0x00000000fd000000 ioremap",
        bs,
        bs + BAR_SIZE as usize + PAGE_SIZE,
        BAR_SIZE as usize + PAGE_SIZE,
        file!(),
        line
    );
    assert!(info.lines().any(|l| l == want), "want {want}\n{info}");
    let a_line = info
        .lines()
        .find(|l| l.starts_with(&format!("0x{:016x}-", a.as_ptr() as usize)))
        .unwrap();
    assert!(a_line.ends_with(" phys=0x00000000fd003000 ioremap"), "{a_line}");
    assert!(a_line.contains("   16384 "), "{a_line}");
    assert!(!a_line.contains("pages="), "ioremap areas own no pages: {a_line}");
    m.iounmap(a.as_ptr());
    m.iounmap(b.as_ptr());
}

#[test]
fn request_mem_region_conflicts_and_proc_iomem() {
    let (m, _dev) = machine_with_device();
    let iomem = m.iomem();
    // The firmware map, as e820__reserve_resources names it.
    assert!(
        iomem.starts_with("00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n"),
        "{iomem}"
    );
    for e in m.e820().entries() {
        let name = match e.kind {
            e820::E820Type::Ram => "System RAM",
            e820::E820Type::Reserved => "Reserved",
            e820::E820Type::Acpi => "ACPI Tables",
            e820::E820Type::Nvs => "ACPI Non-volatile Storage",
            other => panic!("unexpected e820 type {other}"),
        };
        let want = format!("{:08x}-{:08x} : {name}\n", e.addr, e.addr + e.size - 1);
        assert!(iomem.lines().any(|l| format!("{l}\n") == want), "{want}{iomem}");
    }
    assert!(iomem.contains("\nfd000000-fd00ffff : fakedev\n"), "{iomem}");

    m.request_mem_region(BAR, 0x1000, "mydrv").unwrap();
    m.request_mem_region(BAR + 0x4000, 0x2000, "otherdrv").unwrap();
    let iomem = m.iomem();
    assert!(
        iomem.contains(
            "fd000000-fd00ffff : fakedev\n  fd000000-fd000fff : mydrv\n  fd004000-fd005fff : otherdrv\n"
        ),
        "{iomem}"
    );
    assert_eq!(
        m.request_mem_region(BAR + 0x800, 0x1000, "late"),
        Err(ResourceError::Busy)
    );
    assert_eq!(
        m.request_mem_region(BAR + 0xf000, 0x2000, "straddle"),
        Err(ResourceError::Busy)
    );
    assert_eq!(
        m.request_mem_region(16 << 20, 0x1000, "ram"),
        Err(ResourceError::Busy)
    );
    assert_eq!(m.request_mem_region(BAR, 0, "empty"), Err(ResourceError::Invalid));
    // A second device over the first, or over RAM, is refused.
    let dev2 = FakeDevice::new("dev2", 0x2000).unwrap();
    assert!(matches!(
        m.register_iomem("dev2", BAR + 0x8000, 0x2000, dev2.fd(), 0),
        Err(IomemError::Busy)
    ));
    assert!(matches!(
        m.register_iomem("dev2", 8 << 20, 0x2000, dev2.fd(), 0),
        Err(IomemError::Busy)
    ));
    assert!(matches!(
        m.register_iomem("dev2", BAR + BAR_SIZE, 0x4000, dev2.fd(), 0),
        Err(IomemError::Invalid(_))
    ));
    m.register_iomem("dev2", BAR + BAR_SIZE, 0x2000, dev2.fd(), 0)
        .unwrap();

    // Release: exact busy regions only.
    let since = m.dmesg_len();
    m.release_mem_region(BAR, 0x800);
    assert!(m
        .dmesg_since(since)
        .contains("resource: Trying to free nonexistent resource <0x00000000fd000000-0x00000000fd0007ff>"));
    m.release_mem_region(BAR, 0x1000);
    m.release_mem_region(BAR + 0x4000, 0x2000);
    let iomem = m.iomem();
    assert!(
        iomem.contains("fd000000-fd00ffff : fakedev\nfd010000-fd011fff : dev2\n"),
        "{iomem}"
    );
    // Releasing again is the nonexistent case; a device's own resource is
    // not busy and cannot be released this way either.
    let since = m.dmesg_len();
    m.release_mem_region(BAR, 0x1000);
    m.release_mem_region(BAR, BAR_SIZE);
    assert_eq!(
        m.dmesg_since(since)
            .matches("Trying to free nonexistent resource")
            .count(),
        2
    );
    m.request_mem_region(BAR + 0x800, 0x1000, "late").unwrap();
}

#[test]
fn many_ioremap_iounmap_cycles_leave_the_window_and_pages_as_they_were() {
    let (m, dev) = machine_with_device();
    let cycle = |n: usize| {
        let mut first = 0;
        for i in 0..n {
            let off = (i % 13) as u64 * PAGE_SIZE as u64;
            let len = PAGE_SIZE * (1 + i % 3);
            let p = m.ioremap(BAR + off + 4, len - 8).unwrap();
            if i == 0 {
                first = p.as_ptr() as usize;
            }
            // SAFETY: inside the mapping.
            unsafe { writel(i as u32, p.as_ptr()) };
            assert_eq!(dev.read_u32(off + 4).unwrap(), i as u32);
            m.iounmap(p.as_ptr());
        }
        m.vm_unmap_aliases();
        m.kmem_cache_shrink_all();
        m.drain_all_pages();
        first
    };
    let first = cycle(20);
    let free = m.nr_free_pages();
    let again = cycle(500);
    assert_eq!(first, again, "after a purge the lowest address is reused");
    assert_eq!(first, m.vmalloc_start() + 4, "the window is empty again");
    assert_eq!(m.nr_free_pages(), free);
    assert_eq!(m.proc_read("vmallocinfo").unwrap(), "");
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}
