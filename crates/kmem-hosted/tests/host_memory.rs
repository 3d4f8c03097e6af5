//! Memory is sparse and goes back to the host: untouched RAM costs nothing,
//! and freed blocks of a pageblock or more are punched out of the RAM memfd.
use kmem::*;
use kmem_hosted::Machine;
use std::sync::atomic::Ordering;

#[test]
fn a_large_machine_costs_no_memory_until_touched() {
    let m = Machine::boot("quiet mem=64G nr_cpus=2 kswapd=off").unwrap();
    let resident = m.ram().ram_resident_bytes().unwrap();
    // The memmap of 64 GiB is 1 GiB of struct pages (the kernel's 1.56%); only
    // the descriptors boot wrote — reserved pages, one head per free 4 MiB
    // block — are resident: about 0.12% of the machine's RAM.
    let memmap = (m.max_pfn() * std::mem::size_of::<Page>()) as u64;
    assert!(
        resident < (64 << 30) / 512 && resident < memmap / 8,
        "a fresh 64G machine holds {resident} bytes of host memory (memmap {memmap})"
    );
}

#[test]
fn freed_blocks_go_back_to_the_host() {
    let m = Machine::boot("quiet mem=1G nr_cpus=1 kswapd=off").unwrap();
    let base = m.ram().ram_resident_bytes().unwrap();
    let mut blocks = Vec::new();
    for _ in 0..64 {
        let p = m.alloc_pages(GFP_KERNEL, 10).unwrap();
        let a = m.page_address(p).unwrap();
        // SAFETY: we own the 4 MiB block.
        unsafe { std::ptr::write_bytes(a.as_ptr(), 0x5a, 4 << 20) };
        blocks.push(p);
    }
    let used = m.ram().ram_resident_bytes().unwrap();
    assert!(
        used >= base + (250 << 20),
        "256 MiB written, resident grew from {base} to {used}"
    );
    let reported = m.events.pages_reported.load(Ordering::Relaxed);
    for p in blocks {
        // SAFETY: allocated above.
        unsafe { m.__free_pages(p, 10) };
    }
    let after = m.ram().ram_resident_bytes().unwrap();
    assert!(m.events.pages_reported.load(Ordering::Relaxed) > reported);
    assert!(
        after < base + (32 << 20),
        "after freeing, resident is {after} (was {base} before, {used} in use)"
    );
    // Reported blocks read as zero, so __GFP_ZERO has nothing to clear.
    let p = m.alloc_pages(GFP_KERNEL | __GFP_ZERO, 10).unwrap();
    let a = m.page_address(p).unwrap();
    // SAFETY: we own the block.
    let s = unsafe { std::slice::from_raw_parts(a.as_ptr(), 4 << 20) };
    assert!(s.iter().all(|&b| b == 0));
    // SAFETY: allocated above.
    unsafe { m.__free_pages(p, 10) };
}

#[test]
fn reporting_waits_for_a_sixty_fourth_of_ram() {
    let m = Machine::boot("quiet mem=4G nr_cpus=1 kswapd=off").unwrap();
    assert_eq!(m.page_reporting_threshold(), m.totalram_pages() / 64);
    let small = Machine::boot("quiet mem=256M nr_cpus=1 kswapd=off").unwrap();
    assert_eq!(small.page_reporting_threshold(), 16 << 8, "16 MiB at least");
    // 8 blocks of 4 MiB, written and freed: 32 MiB, below 1/64 of 4 GiB: kept
    // resident for reuse; 16 more pass the threshold and all but the hottest
    // half of the threshold (32 MiB) go back.
    let write_and_free = |n: usize| {
        let blocks: Vec<_> = (0..n)
            .map(|_| {
                let p = m.alloc_pages(GFP_KERNEL, 10).unwrap();
                // SAFETY: we own the 4 MiB block.
                unsafe { std::ptr::write_bytes(m.page_address(p).unwrap().as_ptr(), 0x5a, 4 << 20) };
                p
            })
            .collect();
        for p in blocks {
            // SAFETY: allocated above.
            unsafe { m.__free_pages(p, 10) };
        }
    };
    let base = m.ram().ram_resident_bytes().unwrap();
    let reported = m.events.pages_reported.load(Ordering::Relaxed);
    write_and_free(8);
    assert_eq!(
        m.events.pages_reported.load(Ordering::Relaxed),
        reported,
        "32 MiB kept"
    );
    write_and_free(24);
    assert!(m.events.pages_reported.load(Ordering::Relaxed) >= reported + (64 << 8));
    // What stays resident is the half threshold that was freed last: the
    // next allocation takes it from the heads of the lists, at no host fault.
    let kept = m.ram().ram_resident_bytes().unwrap() - base;
    assert!(
        (30 << 20..=36 << 20).contains(&kept),
        "{kept} bytes of freed memory kept resident, want 32 MiB"
    );
    let p = m.alloc_pages(GFP_KERNEL, 10).unwrap();
    let a = m.page_address(p).unwrap().as_ptr();
    // SAFETY: we own the block: it was written by write_and_free and not given back.
    assert_eq!(unsafe { *a }, 0x5a, "the hottest block is the resident one");
    // SAFETY: allocated above.
    unsafe { m.__free_pages(p, 10) };
}

/// Whether the page at `addr` is mapped in this process (`/proc/self/pagemap`'s present bit).
fn page_present(addr: usize) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open("/proc/self/pagemap").unwrap();
    f.seek(SeekFrom::Start((addr / 4096 * 8) as u64)).unwrap();
    let mut e = [0u8; 8];
    f.read_exact(&mut e).unwrap();
    u64::from_le_bytes(e) >> 63 != 0
}

#[test]
fn vmalloc_maps_resident_pages_at_once_and_holes_on_first_touch() {
    let m = Machine::boot("quiet mem=1G nr_cpus=1 kswapd=off").unwrap();
    let size = 16 << 20;
    let base = m.ram().ram_resident_bytes().unwrap();
    // Fresh RAM is a hole in the memfd: mapping it costs the host nothing until
    // the program touches it (as an mmap'd malloc block), however large.
    let p = m.vmalloc(size).unwrap().as_ptr();
    let pages = size / 4096;
    assert_eq!(
        (0..pages).filter(|i| page_present(p as usize + i * 4096)).count(),
        0
    );
    let grown = m.ram().ram_resident_bytes().unwrap() - base;
    assert!(
        grown < 1 << 20,
        "an untouched 16 MiB vmalloc area made {grown} bytes resident"
    );
    // SAFETY: the area is ours.
    unsafe { std::ptr::write_bytes(p, 0x5a, size) };
    assert!(m.ram().ram_resident_bytes().unwrap() - base >= size as u64);
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p) };
    m.vm_unmap_aliases();
    // Its pages are resident free memory now (below the reporting threshold):
    // the next area gets them mapped at once, as the kernel writes its PTEs
    // (most of them: the buddy hands out its smaller free blocks first).
    let q = m.vmalloc(size).unwrap().as_ptr();
    let present = (0..pages).filter(|i| page_present(q as usize + i * 4096)).count();
    assert!(present >= pages / 2, "{present} of {pages} resident pages mapped");
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(q) };
}

/// A fresh slab gets its objects linked a page at a time: one object of a
/// cache of 4000-byte objects (8 to an order-3 slab, each free pointer in a
/// page of its own) makes one page of the slab resident, not eight. The rest come one page at a time, in address
/// order, and every object is accounted for (also when the cpu slab is
/// flushed with objects not linked yet).
#[test]
fn a_fresh_slab_is_touched_a_page_at_a_time() {
    let m = Machine::boot("quiet mem=1G nr_cpus=1 kswapd=off").unwrap();
    let mut grown = 0;
    let mut caches = Vec::new();
    for i in 0..4 {
        let s = m
            .kmem_cache_create(&format!("lazy-{i}"), 4000, 0, kmem::slab::SLAB_NO_MERGE, None)
            .unwrap();
        // SAFETY: a live cache.
        assert_eq!(unsafe { s.as_ref() }.oo.objects, 8);
        let before = m.ram().ram_resident_bytes().unwrap();
        // SAFETY: a live cache of this machine (created and not destroyed).
        let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
        grown += m.ram().ram_resident_bytes().unwrap() - before;
        caches.push((s, p));
    }
    // Eight pages a slab would be 128 KiB for the four; one page each (the
    // one that holds the first object's free pointer) and up to two pages of
    // descriptors are at most 24 KiB.
    assert!(
        grown <= 24 << 10,
        "one object in each of four fresh slabs made {grown} bytes resident"
    );
    let (s, first) = caches[0];
    // SAFETY: a live cache.
    let counts = |s: std::ptr::NonNull<kmem::slab::KmemCache>| m.cache_counts(unsafe { s.as_ref() });
    assert_eq!(counts(s).0, 1, "the objects not linked yet count as free");
    let mut objs = vec![first.as_ptr() as usize];
    for _ in 1..8 {
        // SAFETY: a live cache of this machine (created and not destroyed).
        objs.push(unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr() as usize);
    }
    assert!(
        objs.windows(2).all(|w| w[1] == w[0] + 4000),
        "one slab's objects in address order: {objs:x?}"
    );
    assert_eq!(counts(s).0, 8);
    for &o in &objs {
        // SAFETY: allocated above, freed once.
        unsafe { m.kmem_cache_free(s, o as *mut u8) };
    }
    // The other caches' cpu slabs still hold seven objects not linked yet:
    // shrinking flushes them, links them and frees the slab.
    for (i, &(s, p)) in caches.iter().enumerate() {
        if i > 0 {
            // SAFETY: allocated above, freed once (the first cache's went above).
            unsafe { m.kmem_cache_free(s, p.as_ptr()) };
        }
        assert_eq!(counts(s).0, 0);
        // SAFETY: a live cache of this machine (created and not destroyed).
        assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0, "slabs left after shrink");
        // SAFETY: empty now.
        unsafe { m.kmem_cache_destroy(s) };
    }
}
