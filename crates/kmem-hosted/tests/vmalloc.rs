//! vmalloc, vmap and kvmalloc (reference/linux-mm.md §1.6, §2.3): scattered
//! pages mapped into the vmalloc window, lowest-address first fit with a
//! guard page, lazy purge, misuse warnings, /proc/vmallocinfo and meminfo.

mod common;

use common::*;
use kmem::*;
use std::sync::atomic::Ordering;

const CMDLINE: &str = "quiet mem=256M nr_cpus=2 kswapd=off";

fn warnings(m: &kmem_hosted::Machine) -> usize {
    m.events.warnings.load(Ordering::Relaxed)
}

#[test]
fn vmalloc_memory_is_usable_across_its_whole_size() {
    let m = boot(CMDLINE);
    let size = 3 * PAGE_SIZE + 123;
    let p = m.vmalloc(size).unwrap();
    assert!(m.is_vmalloc_addr(p.as_ptr()));
    // SAFETY: vmalloc returned `size` writable bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), size) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    for (i, b) in s.iter().enumerate() {
        assert_eq!(*b, (i % 251) as u8);
    }
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn same_page_through_linear_map_and_vmalloc_address() {
    let m = boot(CMDLINE);
    let p = m.vmalloc(4 * PAGE_SIZE).unwrap();
    for i in 0..4 {
        // SAFETY: inside the area.
        let v = unsafe { p.as_ptr().add(i * PAGE_SIZE + 8) };
        let page = m.vmalloc_to_page(v).expect("mapped");
        assert_eq!(m.vmalloc_to_pfn(v), Some(m.page_to_pfn(page)));
        let lin = m.page_address(page).expect("lowmem page").as_ptr();
        // SAFETY: both addresses map the same live page.
        unsafe {
            v.cast::<u64>().write(0xdead_beef_0000 + i as u64);
            assert_eq!(lin.add(8).cast::<u64>().read(), 0xdead_beef_0000 + i as u64);
            lin.add(100).write(0x5a);
            assert_eq!(v.add(92).read(), 0x5a);
        }
    }
    // The guard page has no page.
    // SAFETY: address arithmetic only.
    assert!(m
        // SAFETY: within memory this test allocated and still owns.
        .vmalloc_to_page(unsafe { p.as_ptr().add(4 * PAGE_SIZE) })
        .is_none());
    // The pages are scattered order-0 pages; not a requirement that they are
    // non-contiguous, but every one is distinct.
    let mut pfns: Vec<_> = (0..4)
        .map(|i| m.vmalloc_to_pfn(p.as_ptr().wrapping_add(i * PAGE_SIZE)).unwrap())
        .collect();
    pfns.sort();
    pfns.dedup();
    assert_eq!(pfns.len(), 4);
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
}

#[test]
fn lowest_first_fit_with_guard_page() {
    let m = boot(CMDLINE);
    let a = m.vmalloc(PAGE_SIZE).unwrap().as_ptr() as usize;
    let b = m.vmalloc(PAGE_SIZE).unwrap().as_ptr() as usize;
    assert_eq!(a, m.vmalloc_start());
    assert_eq!(b, a + 2 * PAGE_SIZE);
    let c = m.vmalloc(3 * PAGE_SIZE).unwrap().as_ptr() as usize;
    assert_eq!(c, b + 2 * PAGE_SIZE);
    // A freed range goes back to the free tree only after a purge: a request
    // of another size does not get it before.
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(b as *const u8) };
    let d = m.vmalloc(2 * PAGE_SIZE).unwrap().as_ptr() as usize;
    assert_eq!(d, c + 4 * PAGE_SIZE, "lazily freed range is not reused yet");
    // A request of the same size takes the lazily freed area back whole,
    // still mapped, with its page.
    let pfn = m.vmalloc_to_pfn(a as *const u8).unwrap();
    let e = m.vmalloc(PAGE_SIZE).unwrap().as_ptr() as usize;
    assert_eq!(e, b, "the newest lazily freed area of the same size is reused");
    assert_eq!(m.vmalloc_lazy_pages(), 0);
    assert_eq!(m.vmalloc_to_pfn(a as *const u8), Some(pfn));
    // After the purge the lowest hole is used.
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(e as *const u8) };
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(a as *const u8) };
    m.vm_unmap_aliases();
    let f = m.vmalloc(3 * PAGE_SIZE).unwrap().as_ptr() as usize;
    assert_eq!(f, a, "after the purge the lowest hole is used");
    for p in [c, d, f] {
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(p as *const u8) };
    }
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn bad_and_double_vfree_warn_and_change_nothing() {
    let m = boot(CMDLINE);
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(std::ptr::null()) };
    assert_eq!(warnings(&m), 0);
    let p = m.vmalloc(2 * PAGE_SIZE).unwrap();
    let used = m.vmalloc_nr_pages();
    let since = m.dmesg_len();
    let inside = p.as_ptr().wrapping_add(PAGE_SIZE);
    // SAFETY: not an area's start: reported, and nothing is freed.
    unsafe { m.vfree(inside) };
    let mut x = 0u64;
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(&mut x as *mut u64 as *const u8) };
    assert_eq!(warnings(&m), 2);
    assert!(m
        .dmesg_since(since)
        .contains("Trying to vfree() nonexistent vm area"));
    assert_eq!(m.vmalloc_nr_pages(), used);
    // Still usable.
    // SAFETY: the area is live.
    unsafe { p.as_ptr().write_bytes(7, 2 * PAGE_SIZE) };
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
    assert_eq!(m.vmalloc_nr_pages(), 0);
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
    assert_eq!(warnings(&m), 3);
    m.vm_unmap_aliases();
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
    assert_eq!(warnings(&m), 4);
}

#[test]
fn vzalloc_and_vmalloc_user_are_zeroed() {
    let m = boot(CMDLINE);
    // Dirty some pages first so that reuse would show.
    let d = m.vmalloc(64 * PAGE_SIZE).unwrap();
    // SAFETY: the area is live.
    unsafe { d.as_ptr().write_bytes(0xaa, 64 * PAGE_SIZE) };
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(d.as_ptr()) };
    m.drain_all_pages();
    for p in [
        m.vzalloc(64 * PAGE_SIZE).unwrap(),
        m.vmalloc_user(64 * PAGE_SIZE).unwrap(),
    ] {
        // SAFETY: the area is live.
        let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), 64 * PAGE_SIZE) };
        assert!(s.iter().all(|&b| b == 0));
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(p.as_ptr()) };
    }
}

#[test]
fn vmalloc_32_pages_are_below_4g() {
    let m = boot("quiet mem=6G nr_cpus=2 kswapd=off");
    let p = m.vmalloc_32(16 * PAGE_SIZE).unwrap();
    for i in 0..16 {
        // SAFETY: address arithmetic only.
        let pfn = m
            // SAFETY: within memory this test allocated and still owns.
            .vmalloc_to_pfn(unsafe { p.as_ptr().add(i * PAGE_SIZE) })
            .unwrap();
        assert!((pfn as u64) << PAGE_SHIFT < 1 << 32);
    }
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
}

#[test]
fn vmap_maps_given_pages() {
    let m = boot(CMDLINE);
    let pages: Vec<_> = (0..3).map(|_| m.alloc_pages(GFP_KERNEL, 0).unwrap()).collect();
    for (i, &pg) in pages.iter().enumerate() {
        // SAFETY: our page.
        unsafe {
            m.page_address(pg)
                .unwrap()
                .as_ptr()
                .write_bytes(i as u8 + 1, PAGE_SIZE)
        };
    }
    let v = m.vmap(&pages).unwrap();
    assert!(m.is_vmalloc_addr(v.as_ptr()));
    for (i, &pg) in pages.iter().enumerate() {
        // SAFETY: inside the mapping.
        let a = unsafe { v.as_ptr().add(i * PAGE_SIZE) };
        assert_eq!(m.vmalloc_to_page(a), Some(pg));
        // SAFETY: mapped.
        assert_eq!(unsafe { a.add(17).read() }, i as u8 + 1);
    }
    let mut info = String::new();
    m.vmallocinfo_show(&mut info).unwrap();
    assert!(
        info.lines()
            .any(|l| l.ends_with(" vmap") && l.contains(" 16384 ")),
        "{info}"
    );
    // SAFETY: our mapping, unused afterwards.
    unsafe { m.vunmap(v.as_ptr()) };
    for pg in pages {
        // SAFETY: still ours; vunmap does not free them.
        unsafe { m.__free_pages(pg, 0) };
    }
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn kvmalloc_small_is_kmalloc_large_is_vmalloc() {
    let m = boot(CMDLINE);
    let small = m.kvmalloc(100, GFP_KERNEL).unwrap();
    assert!(!m.is_vmalloc_addr(small.as_ptr()));
    let large = m.kvmalloc(8 << 20, GFP_KERNEL).unwrap();
    assert!(m.is_vmalloc_addr(large.as_ptr()));
    // Not blocking: no vmalloc fallback.
    assert!(m.kvmalloc(8 << 20, GFP_ATOMIC | __GFP_NOWARN).is_err());
    let z = m.kvzalloc(3 * PAGE_SIZE, GFP_KERNEL).unwrap();
    // SAFETY: live, 3 pages.
    assert!(unsafe { std::slice::from_raw_parts(z.as_ptr(), 3 * PAGE_SIZE) }
        .iter()
        .all(|&b| b == 0));
    // SAFETY: live allocations.
    unsafe {
        small.as_ptr().write_bytes(9, 100);
        let grown = m.kvrealloc(small.as_ptr(), 8 << 20, GFP_KERNEL).unwrap();
        assert!(m.is_vmalloc_addr(grown.as_ptr()));
        assert!(std::slice::from_raw_parts(grown.as_ptr(), 100)
            .iter()
            .all(|&b| b == 9));
        m.kvfree(grown.as_ptr());
        m.kvfree(large.as_ptr());
        m.kvfree(z.as_ptr());
        m.kvfree(std::ptr::null());
    }
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn vmallocinfo_format_and_meminfo() {
    let m = boot(CMDLINE);
    let p = m.vmalloc(4 * PAGE_SIZE).unwrap();
    let line_no = line!() - 1;
    let big = m.vmalloc(1024 * PAGE_SIZE).unwrap(); // page array > a page: vpages
    let info = m.proc_read("vmallocinfo").unwrap();
    let lines: Vec<&str> = info.lines().collect();
    let want = format!(
        "0x{:016x}-0x{:016x}   20480 {}:{} pages=4 vmalloc N0=4",
        p.as_ptr() as usize,
        p.as_ptr() as usize + 5 * PAGE_SIZE,
        file!(),
        line_no
    );
    assert!(lines.contains(&want.as_str()), "want {want}\n{info}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("{:016x}-", big.as_ptr() as usize))
                && l.ends_with(" pages=1024 vmalloc vpages N0=1024")
                && l.contains(" 4198400 ")),
        "{info}"
    );
    let meminfo = m.proc_read("meminfo").unwrap();
    let kb = |name: &str| -> usize {
        let l = meminfo.lines().find(|l| l.starts_with(name)).unwrap();
        l.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(kb("VmallocTotal:"), m.vmalloc_total() / 1024);
    // The pages of both areas plus the vpages array's page.
    assert_eq!(kb("VmallocUsed:"), (4 + 1024 + 2) * 4);
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
    let info = m.proc_read("vmallocinfo").unwrap();
    let want = format!(
        "0x{:016x}-0x{:016x}   20480 unpurged vm_area",
        p.as_ptr() as usize,
        p.as_ptr() as usize + 5 * PAGE_SIZE
    );
    assert!(info.lines().any(|l| l == want), "want {want}\n{info}");
    m.vm_unmap_aliases();
    let info = m.proc_read("vmallocinfo").unwrap();
    assert!(!info.contains("unpurged"), "{info}");
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(big.as_ptr()) };
    assert_eq!(m.vmalloc_nr_pages(), 0);
}

#[test]
fn lazy_purge_happens_past_lazy_max_pages() {
    let m = boot(CMDLINE);
    let max = m.lazy_max_pages();
    assert_eq!(max, 2 * (32 << 20) / PAGE_SIZE); // fls(2) * 32 MiB
    let chunk = 1024 * PAGE_SIZE;
    let mut freed = 0;
    while freed <= max {
        let p = m.vmalloc(chunk).unwrap();
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(p.as_ptr()) };
        freed += chunk / PAGE_SIZE + 1;
    }
    // The batch went back: the lowest address is free again.
    let p = m.vmalloc(PAGE_SIZE).unwrap();
    assert_eq!(
        p.as_ptr() as usize,
        m.vmalloc_start(),
        "{}",
        m.proc_read("vmallocinfo").unwrap()
    );
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
}

#[test]
fn window_exhaustion_purges_then_fails_cleanly() {
    let m = boot(CMDLINE);
    let total = m.vmalloc_total();
    // Larger than RAM: refused before touching the window.
    assert!(m.__vmalloc(512 << 20, GFP_KERNEL | __GFP_NOWARN).is_err());
    assert!(m.vmalloc(0).is_err());
    let since = warnings(&m);
    let p = m.vmalloc(16 << 20).unwrap();
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
    // Fill the window with address space only: vmaps of one 64-page block
    // (physically contiguous, so each is one host mapping).
    let page = m.alloc_pages(GFP_KERNEL, 6).unwrap();
    let base = m.page_to_pfn(page);
    let pages: Vec<_> = (0..64).map(|i| m.pfn_to_page(base + i).unwrap()).collect();
    let mut maps = Vec::new();
    while let Ok(v) = m.vmap(&pages) {
        maps.push(v);
        assert!(maps.len() <= total / (65 * PAGE_SIZE) + 1);
    }
    assert_eq!(
        maps.len(),
        total / (65 * PAGE_SIZE),
        "the purge gave the freed range back"
    );
    for v in maps {
        // SAFETY: our mapping, unused afterwards.
        unsafe { m.vunmap(v.as_ptr()) };
    }
    // SAFETY: our block.
    unsafe { m.__free_pages(page, 6) };
    m.vm_unmap_aliases();
    let q = m.vmalloc(PAGE_SIZE).unwrap();
    assert_eq!(q.as_ptr() as usize, m.vmalloc_start());
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(q.as_ptr()) };
    assert_eq!(warnings(&m), since, "only vmalloc(0) warned\n{}", m.dmesg());
}

#[test]
fn all_pages_return_to_the_buddy_allocator() {
    let m = boot(CMDLINE);
    let workload = |check: Option<usize>| {
        let mut held = Vec::new();
        for i in 1..40 {
            held.push(m.vmalloc(i * 37 * PAGE_SIZE / 3).unwrap());
        }
        held.push(m.kvmalloc(8 << 20, GFP_KERNEL).unwrap());
        held.push(m.vzalloc(700 * PAGE_SIZE).unwrap());
        if let Some(start) = check {
            m.drain_all_pages();
            assert!(m.nr_free_pages() < start);
        }
        for p in held {
            // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
            unsafe { m.vfree(p.as_ptr()) };
        }
        assert_eq!(m.vmalloc_nr_pages(), 0);
        m.vm_unmap_aliases();
        // The thread may run on another CPU than last time: give back the
        // CPU slabs so the count does not depend on where it ran.
        m.kmem_cache_shrink_all();
        m.drain_all_pages();
    };
    // Once to warm the slab caches the records and page arrays come from.
    workload(None);
    let start = m.nr_free_pages();
    workload(Some(start));
    assert_eq!(
        m.nr_free_pages(),
        start,
        "{}",
        m.proc_read("vmallocinfo").unwrap()
    );
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn concurrent_vmalloc_vfree() {
    let m = boot(CMDLINE);
    std::thread::scope(|s| {
        for t in 0..4 {
            let m = &m;
            s.spawn(move || {
                for i in 0..200 {
                    let n = 1 + (i + t) % 7;
                    let p = m.vmalloc(n * PAGE_SIZE).unwrap();
                    // SAFETY: live area of n pages.
                    unsafe {
                        p.as_ptr().write_bytes(t as u8, n * PAGE_SIZE);
                        assert_eq!(p.as_ptr().add(n * PAGE_SIZE - 1).read(), t as u8);
                    }
                    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
                    unsafe { m.vfree(p.as_ptr()) };
                }
            });
        }
    });
    assert_eq!(m.vmalloc_nr_pages(), 0);
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

/// Free everything, purge, shrink the caches: the buddy lists must be those
/// of boot again — in particular no kmalloc'd free-range record survives a
/// merge with the boot record of the window.
fn assert_vmalloc_boot_state(m: &kmem_hosted::Machine) {
    assert_eq!(m.vmalloc_nr_pages(), 0);
    m.vm_unmap_aliases();
    assert_eq!(m.vmalloc_lazy_pages(), 0);
    m.kmem_cache_shrink_all();
    assert_boot_state(m);
}

#[test]
fn everything_freed_gives_the_boot_buddy_lists_back() {
    let m = boot(CMDLINE);
    assert_boot_state(&m);
    // Areas of many sizes, freed in an order that makes ranges merge on
    // both sides, on one side, and not at all, with purges in between.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut live = Vec::new();
    for round in 0..6 {
        for _ in 0..200 {
            let pages = 1 + (next() % 40) as usize;
            let p = m.vmalloc(pages * PAGE_SIZE).unwrap();
            // SAFETY: live area of `pages` pages.
            unsafe { p.as_ptr().write_bytes(round as u8, pages * PAGE_SIZE) };
            live.push(p);
        }
        while live.len() > 50 {
            let i = (next() as usize) % live.len();
            // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
            unsafe { m.vfree(live.swap_remove(i).as_ptr()) };
        }
        if round % 2 == 1 {
            m.vm_unmap_aliases();
        }
    }
    live.push(m.vmalloc(3 << 20).unwrap()); // a vmalloc'd page array
    for p in live {
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(p.as_ptr()) };
    }
    assert_vmalloc_boot_state(&m);
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn boot_state_after_the_window_was_used_up_exactly() {
    let m = boot(CMDLINE);
    // vmaps of one 64-page block fill the window; the last one may take the
    // boot record's range in full (or leave a tail no vmap fits).
    let page = m.alloc_pages(GFP_KERNEL, 6).unwrap();
    let base = m.page_to_pfn(page);
    let pages: Vec<_> = (0..64).map(|i| m.pfn_to_page(base + i).unwrap()).collect();
    let mut maps = Vec::new();
    while let Ok(v) = m.vmap(&pages) {
        maps.push(v);
    }
    // Fill what is left with single pages, so nothing is free at all.
    let one = &pages[..1];
    while let Ok(v) = m.vmap(one) {
        maps.push(v);
    }
    // Free in an interleaved order: odd ones first, then even ones.
    let (odd, even): (Vec<_>, Vec<_>) = maps.iter().enumerate().partition(|(i, _)| i % 2 == 1);
    for (_, v) in odd.into_iter().chain(even) {
        // SAFETY: our mapping, unused afterwards.
        unsafe { m.vunmap(v.as_ptr()) };
    }
    // SAFETY: our block, unmapped everywhere.
    unsafe { m.__free_pages(page, 6) };
    assert_vmalloc_boot_state(&m);
    let q = m.vmalloc(PAGE_SIZE).unwrap();
    assert_eq!(q.as_ptr() as usize, m.vmalloc_start());
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(q.as_ptr()) };
    assert_vmalloc_boot_state(&m);
}

#[test]
fn vfree_keeps_pages_until_the_purge_then_gives_them_back() {
    let m = boot(CMDLINE);
    m.drain_all_pages();
    let p = m.vmalloc(8 * PAGE_SIZE).unwrap();
    let pfns: Vec<_> = (0..8)
        .map(|i| m.vmalloc_to_pfn(p.as_ptr().wrapping_add(i * PAGE_SIZE)).unwrap())
        .collect();
    // The pages are mapped in pfn order.
    let mut sorted = pfns.clone();
    sorted.sort();
    assert_eq!(pfns, sorted);
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
    assert_eq!(m.vmalloc_nr_pages(), 0);
    assert_eq!(m.vmalloc_lazy_pages(), 8);
    // Not reusable before the purge by an area of another size: it gets
    // other pages.
    let q = m.vmalloc(7 * PAGE_SIZE).unwrap();
    for i in 0..7 {
        // SAFETY: address arithmetic only.
        let pfn = m
            // SAFETY: within memory this test allocated and still owns.
            .vmalloc_to_pfn(unsafe { q.as_ptr().add(i * PAGE_SIZE) })
            .unwrap();
        assert!(!pfns.contains(&pfn), "a lazily freed page was handed out again");
    }
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(q.as_ptr()) };
    m.vm_unmap_aliases();
    assert_eq!(m.vmalloc_lazy_pages(), 0);
    // After the purge the pages come back (freed in reverse order, so the
    // per-CPU list hands them out ascending: one run, one host mapping).
    let r = m.vmalloc(8 * PAGE_SIZE).unwrap();
    let again: Vec<_> = (0..8)
        .map(|i| m.vmalloc_to_pfn(r.as_ptr().wrapping_add(i * PAGE_SIZE)).unwrap())
        .collect();
    assert!(again.windows(2).all(|w| w[0] < w[1]), "{again:?}");
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(r.as_ptr()) };
    assert_vmalloc_boot_state(&m);
}

#[test]
fn lazily_held_pages_are_reclaimed_under_memory_pressure() {
    let m = boot("quiet mem=128M nr_cpus=2 kswapd=off");
    // Hold many pages lazily (below lazy_max_pages, so no purge happens).
    let chunk = 256 * PAGE_SIZE;
    for _ in 0..40 {
        let p = m.vmalloc(chunk).unwrap();
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(p.as_ptr()) };
    }
    let held = m.vmalloc_lazy_pages();
    assert_eq!(
        held, 256,
        "each vmalloc took back the area the vfree before it left"
    );
    // Many areas freed together wait together.
    let live: Vec<_> = (0..40).map(|_| m.vmalloc(chunk).unwrap()).collect();
    assert_eq!(m.vmalloc_lazy_pages(), 0);
    for p in live {
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(p.as_ptr()) };
    }
    let held = m.vmalloc_lazy_pages();
    assert_eq!(held, 40 * 256);
    // Take every page a sleeping allocation can get: direct reclaim must
    // purge the lazy areas through the vmap-node shrinker.
    let mut got = Vec::new();
    while let Ok(p) = m.alloc_pages(GFP_KERNEL | __GFP_NOWARN | __GFP_NORETRY, 0) {
        got.push(p);
    }
    assert_eq!(m.vmalloc_lazy_pages(), 0, "the shrinker gave the held pages back");
    for p in got {
        // SAFETY: our pages.
        unsafe { m.__free_pages(p, 0) };
    }
    assert_vmalloc_boot_state(&m);
}

#[test]
fn lazily_freed_area_is_reused_only_by_a_matching_request() {
    let m = boot(CMDLINE);
    let p = m.vmalloc(2 * PAGE_SIZE).unwrap();
    // SAFETY: the area is ours, mapped for two pages.
    unsafe { std::ptr::write_bytes(p.as_ptr(), 0xa5, 2 * PAGE_SIZE) };
    let pfns = [0, 1].map(|i| m.vmalloc_to_pfn(p.as_ptr().wrapping_add(i * PAGE_SIZE)).unwrap());
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
    assert_eq!(m.vmalloc_lazy_pages(), 2);
    // vmalloc_32 needs ZONE_DMA32 pages: not the lazily freed area's request.
    let q = m.vmalloc_32(2 * PAGE_SIZE).unwrap();
    assert_ne!(q, p);
    assert_eq!(m.vmalloc_lazy_pages(), 2);
    // vzalloc of the same size takes it back, zeroed.
    let z = m.vzalloc(2 * PAGE_SIZE).unwrap();
    let line_no = line!() - 1;
    assert_eq!(z, p, "the area comes back");
    assert_eq!(m.vmalloc_lazy_pages(), 0);
    assert_eq!(m.vmalloc_nr_pages(), 4);
    assert_eq!(
        pfns,
        [0, 1].map(|i| m.vmalloc_to_pfn(z.as_ptr().wrapping_add(i * PAGE_SIZE)).unwrap())
    );
    // SAFETY: the area is ours, mapped for two pages.
    let bytes = unsafe { std::slice::from_raw_parts(z.as_ptr(), 2 * PAGE_SIZE) };
    assert!(bytes.iter().all(|&b| b == 0), "vzalloc zeroes a reused area");
    // Its caller is the new one, and it is busy again in /proc/vmallocinfo.
    let info = m.proc_read("vmallocinfo").unwrap();
    let want = format!("{}:{} pages=2 vmalloc N0=2", file!(), line_no);
    let line = info
        .lines()
        .find(|l| l.starts_with(&format!("0x{:016x}-", z.as_ptr() as usize)));
    assert!(line.is_some_and(|l| l.ends_with(&want)), "want {want}\n{info}");
    assert!(!info.contains("unpurged"), "{info}");
    // A double vfree of the reused area is still caught.
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(z.as_ptr()) };
    let since = m.dmesg_len();
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(z.as_ptr()) };
    assert!(m
        .dmesg_since(since)
        .contains("Trying to vfree() nonexistent vm area"));
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(q.as_ptr()) };
    assert_vmalloc_boot_state(&m);
}

#[test]
fn vmalloc_node_with_alignment() {
    let m = boot(CMDLINE);
    // Aligned starts, for every alignment from a byte to 4 MiB.
    for shift in 0..23 {
        let align = 1usize << shift;
        let p = m
            .__vmalloc_node(3 * PAGE_SIZE, align, GFP_KERNEL | __GFP_ZERO, -1)
            .unwrap();
        assert_eq!(p.as_ptr() as usize % align.max(PAGE_SIZE), 0, "align {align:#x}");
        // SAFETY: the area is ours, mapped for three pages.
        let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), 3 * PAGE_SIZE) };
        assert!(bytes.iter().all(|&b| b == 0));
        // Dirty it: the next request of the same size may take it back.
        // SAFETY: as above.
        unsafe { std::ptr::write_bytes(p.as_ptr(), 0x5a, 3 * PAGE_SIZE) };
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(p.as_ptr()) };
    }
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
    // Not a power of two: the kernel's BUG_ON becomes a warning and a failure.
    assert!(m
        .__vmalloc_node(PAGE_SIZE, 3 * PAGE_SIZE, GFP_KERNEL, -1)
        .is_err());
    assert_eq!(warnings(&m), 1, "{}", m.dmesg());
    // Larger than the window: the kernel's failure message.
    let since = m.dmesg_len();
    assert!(m.__vmalloc_node(PAGE_SIZE, 1 << 63, GFP_KERNEL, -1).is_err());
    assert!(
        m.dmesg_since(since)
            .contains("vmalloc_node_range for size 8192 failed: Address range restricted to"),
        "{}",
        m.dmesg_since(since)
    );
    assert_vmalloc_boot_state(&m);
}

/// `vmalloc=` sizes the hosted vmalloc window (rounded up to 2 MiB).
#[test]
fn vmalloc_param_sizes_the_window() {
    let m = kmem_hosted::Machine::boot("quiet mem=64M nr_cpus=2 vmalloc=33M").unwrap();
    assert_eq!(m.vmalloc_end() - m.vmalloc_start(), 34 << 20);
    let p = m.vmalloc(16 << 20).unwrap();
    assert!(m.vmalloc(32 << 20).is_err(), "more than the window holds");
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(p.as_ptr()) };
}
