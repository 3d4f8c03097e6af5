//! `kmem.lowmem=` and `kmem.private_lowmem=1` (libkmalloc's default
//! machine): x86-32's zone layout with lowmem of any size, and lowmem as
//! private anonymous memory of the process (`kmem_hosted::ram`), which a
//! `fork` child gets copy-on-write and which cannot be mapped a second
//! time. vmalloc maps HighMem pages; a lowmem page asked for an alias is
//! refused and the mapping fails cleanly.

mod common;

use common::*;
use kmem::*;
use std::sync::atomic::Ordering;

const MIB: usize = 1 << 20;
const CMDLINE: &str = "quiet mem=256M kmem.lowmem=128M kmem.private_lowmem=1 nr_cpus=2 kswapd=off";

/// Whether `[p, p + len)` lies in the machine's private lowmem.
fn in_private(m: &kmem_hosted::Machine, p: *const u8, len: usize) -> bool {
    let base = m.ram().base();
    (p as usize) >= base && (p as usize) + len <= base + m.ram().private()
}

#[test]
fn lowmem_ends_where_kmem_lowmem_says() {
    let m = boot(CMDLINE);
    assert!(m.has_highmem());
    assert_eq!(m.max_low_pfn() << PAGE_SHIFT, 128 * MIB);
    assert_eq!(m.ram().private(), 128 * MIB);
    let zoneinfo = m.proc_read("zoneinfo").unwrap();
    assert!(zoneinfo.contains("zone  HighMem"), "{zoneinfo}");
    // The kernel's own allocations are lowmem, so private.
    let small = m.kmalloc(100, GFP_KERNEL).unwrap();
    let large = m.kmalloc(1 << 20, GFP_KERNEL).unwrap();
    assert!(in_private(&m, small.as_ptr(), 100));
    assert!(in_private(&m, large.as_ptr(), 1 << 20));
    // SAFETY: allocated above.
    unsafe {
        m.kfree(small.as_ptr());
        m.kfree(large.as_ptr());
    }
    // Without `kmem.private_lowmem`, or without HighMem, all RAM is the memfd's.
    assert_eq!(
        boot("quiet mem=256M kmem.lowmem=128M kswapd=off").ram().private(),
        0
    );
    assert_eq!(
        boot("quiet mem=256M kmem.lowmem=1G kmem.private_lowmem=1 kswapd=off")
            .ram()
            .private(),
        0
    );
}

#[test]
fn vmalloc_maps_highmem_and_refuses_lowmem_aliases() {
    let m = boot(CMDLINE);
    // vmalloc's pages come from HighMem (__GFP_HIGHMEM), which can be mapped twice.
    let len = 16 * MIB;
    let v = m.vmalloc(len).unwrap().as_ptr();
    // SAFETY: a fresh vmalloc area of `len` bytes.
    unsafe {
        core::ptr::write_bytes(v, 0x5a, len);
        assert!(core::slice::from_raw_parts(v, len).iter().all(|&b| b == 0x5a));
    }
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(v) };
    // vmap of a lowmem page cannot alias private memory: it fails (the
    // platform warns once, on stderr).
    let page = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    assert!(m.vmap(&[page]).is_err());
    // SAFETY: allocated above, unmapped.
    unsafe { m.__free_pages(page, 0) };
    // More vmalloc than HighMem holds falls back to lowmem pages and fails
    // as a whole, giving every page back.
    let free = m.nr_free_pages();
    assert!(m.vmalloc(200 * MIB).is_err());
    // (Freed pages wait on the per-CPU lists.)
    m.drain_all_pages();
    assert!(
        m.nr_free_pages() + 64 >= free,
        "pages lost: {} -> {}",
        free,
        m.nr_free_pages()
    );
    let again = m.vmalloc(len).unwrap();
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(again.as_ptr()) };
    assert_eq!(m.events.warnings.load(Ordering::Relaxed), 0);
}

#[test]
fn discarded_private_lowmem_reads_zero_and_leaves_the_host() {
    let m = boot(CMDLINE);
    let p = m.alloc_pages(GFP_KERNEL, 4).unwrap();
    let a = m.page_address(p).unwrap().as_ptr();
    let len = PAGE_SIZE << 4;
    assert!(in_private(&m, a, len));
    // SAFETY: our 16 pages.
    unsafe { core::ptr::write_bytes(a, 7, len) };
    let resident = m.ram().ram_resident_bytes().unwrap();
    let phys = (a as usize - m.ram().base()) as u64;
    m.ram().discard(phys, len as u64).unwrap();
    assert!(m.ram().ram_resident_bytes().unwrap() + len as u64 <= resident);
    // SAFETY: still our pages; discarded memory reads as zero.
    assert!(unsafe { core::slice::from_raw_parts(a, len) }
        .iter()
        .all(|&b| b == 0));
    // SAFETY: allocated above.
    unsafe { m.__free_pages(p, 4) };
}

/// The machine structure (`Kmem`, 65 kB of boot memory) is written only
/// where it holds something: its tables that stay zero (the zone lists of
/// absent nodes, the iomem tree's free records, the kmap state, the boot
/// parameters' empty lists) are left as the RAM's zero bytes, so the host
/// never backs their pages. No page of it
/// that the host backs after the boot is all zero bytes (those took a
/// fault and a page of the process for nothing).
#[test]
fn the_boot_backs_no_page_of_the_machine_structure_that_holds_only_zero_bytes() {
    for cmdline in [
        CMDLINE,
        "quiet mem=256M nr_cpus=2 kswapd=off",
        "quiet mem=256M kmem.lowmem=128M kmem.private_lowmem=1 kswapd=off slub_debug=FZ,kmalloc-64 no_such_param=1",
    ] {
        let m = boot(cmdline);
        let k: &Kmem<kmem_hosted::HostedPlatform> = &m;
        let start = k as *const Kmem<kmem_hosted::HostedPlatform> as usize;
        let first = start.next_multiple_of(PAGE_SIZE);
        let end = (start + core::mem::size_of_val(k)) & !(PAGE_SIZE - 1);
        let mut resident = vec![0u8; (end - first) / PAGE_SIZE];
        // SAFETY: a page-aligned range of the machine's mapped RAM; mincore only reports.
        let r = unsafe { libc::mincore(first as *mut libc::c_void, end - first, resident.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
        let backed: Vec<usize> = (0..resident.len()).filter(|&i| resident[i] & 1 != 0).collect();
        assert!(!backed.is_empty(), "{cmdline}: the boot wrote no page of the machine structure?");
        for i in backed {
            // SAFETY: a backed page of the machine structure, read only.
            let words = unsafe { core::slice::from_raw_parts((first + i * PAGE_SIZE) as *const u64, PAGE_SIZE / 8) };
            assert!(
                words.iter().any(|&w| w != 0),
                "{cmdline}: page {i} of the machine structure is backed and holds only zero bytes"
            );
        }
    }
}
