//! GFP semantics (reference/linux-mm.md §1.1, §1.2): the watermark reserve
//! arithmetic of `gfp_to_alloc_flags` + `__zone_watermark_ok`, checked both
//! unit-style and end to end at exact free-page counts; zone selection
//! (`gfp_zone`) for all sixteen zone-modifier combinations; zonelist
//! fallback and `lowmem_reserve` protection; HighMem.

mod common;

use common::*;
use core::ptr::NonNull;
use kmem::page::Page;
use kmem::page_alloc::zone::{Zone, WMARK_HIGH, WMARK_LOW, WMARK_MIN};
use kmem::page_alloc::*;
use kmem::*;
use kmem_hosted::Machine;
use std::sync::atomic::Ordering;

// ---------------------------------------------------------------------------
// Watermark arithmetic.

/// The reserve model of reference §1.1, written independently of the code:
/// the effective min watermark a request may go down to.
fn model_min(gfp: Gfp, min: usize) -> isize {
    let mut m = min as isize;
    let nonblock = !gfp.intersects(__GFP_DIRECT_RECLAIM) && !gfp.intersects(__GFP_NOMEMALLOC);
    if gfp.intersects(__GFP_HIGH) {
        m -= m / 2;
        if nonblock {
            m -= m / 4;
        }
    }
    m
}

/// Whether an order-0 request with `gfp` may take a page from a zone holding
/// `free` pages (model): `__GFP_MEMALLOC` without `__GFP_NOMEMALLOC` ignores
/// watermarks; otherwise `free > min' + lowmem_reserve`.
fn model_ok(gfp: Gfp, free: usize, min: usize, reserve: usize) -> bool {
    if free == 0 {
        return false;
    }
    if gfp.intersects(__GFP_MEMALLOC) && !gfp.intersects(__GFP_NOMEMALLOC) {
        return true;
    }
    free as isize > model_min(gfp, min) + reserve as isize
}

/// `gfp_to_alloc_flags` gives the kernel's flags for the common requests.
#[test]
fn gfp_to_alloc_flags_matches_the_kernel() {
    // GFP_KERNEL: min watermark, cpuset, kswapd; no reserves.
    assert_eq!(
        gfp_to_alloc_flags(GFP_KERNEL, 0),
        ALLOC_WMARK_MIN | ALLOC_CPUSET | ALLOC_KSWAPD
    );
    // GFP_ATOMIC: __GFP_HIGH is ALLOC_MIN_RESERVE, non-blocking adds
    // ALLOC_NON_BLOCK and drops ALLOC_CPUSET.
    assert_eq!(
        gfp_to_alloc_flags(GFP_ATOMIC, 0),
        ALLOC_WMARK_MIN | ALLOC_MIN_RESERVE | ALLOC_NON_BLOCK | ALLOC_KSWAPD
    );
    // Higher-order atomic requests may use the high-order atomic reserve.
    assert_ne!(gfp_to_alloc_flags(GFP_ATOMIC, 1) & ALLOC_HIGHATOMIC, 0);
    // GFP_NOWAIT: non-blocking, but no __GFP_HIGH: no MIN_RESERVE.
    assert_eq!(
        gfp_to_alloc_flags(GFP_NOWAIT, 0),
        ALLOC_WMARK_MIN | ALLOC_CPUSET | ALLOC_NON_BLOCK | ALLOC_KSWAPD
    );
    // __GFP_NOMEMALLOC: not worth trying harder, even without blocking.
    assert_eq!(
        gfp_to_alloc_flags(GFP_ATOMIC | __GFP_NOMEMALLOC, 0) & ALLOC_NON_BLOCK,
        0
    );
    // Blocking __GFP_HIGH: MIN_RESERVE only.
    let f = gfp_to_alloc_flags(GFP_KERNEL | __GFP_HIGH, 0);
    assert_ne!(f & ALLOC_MIN_RESERVE, 0);
    assert_eq!(f & ALLOC_NON_BLOCK, 0);
    // No kswapd bit, no ALLOC_KSWAPD.
    assert_eq!(gfp_to_alloc_flags(__GFP_DIRECT_RECLAIM, 0) & ALLOC_KSWAPD, 0);
}

/// `__zone_watermark_ok` at every free count around the boundaries, for each
/// kind of request, against the model: GFP_ATOMIC down to 37.5% of min (plus
/// the lowmem reserve), blocking `__GFP_HIGH` to 50%, GFP_NOWAIT and
/// GFP_KERNEL to min, order>0 subtracting the block size.
#[test]
fn zone_watermark_ok_boundaries_unit() {
    let m = boot("quiet mem=64M nr_cpus=1 kswapd=off");
    for zt in [ZoneType::Dma, ZoneType::Dma32] {
        let z = zone(&m, zt);
        let min = z.wmark(WMARK_MIN);
        assert!(min > 16, "{} min {min}", z.name());
        for highest in [ZoneType::Dma32, ZoneType::Normal] {
            let res = reserve(z, highest);
            for gfp in [
                GFP_KERNEL,
                GFP_NOWAIT,
                GFP_ATOMIC,
                GFP_KERNEL | __GFP_HIGH,
                GFP_ATOMIC | __GFP_NOMEMALLOC,
            ] {
                let flags = gfp_to_alloc_flags(gfp, 0);
                let mut boundary = None;
                for free in 0..(min + res + 10) {
                    let ok = zone_watermark_ok(z, 0, min, highest, flags, free as isize, None);
                    assert_eq!(
                        ok,
                        model_ok(gfp, free, min, res),
                        "{} {gfp:?} free {free} min {min} reserve {res}",
                        z.name()
                    );
                    if ok && boundary.is_none() {
                        boundary = Some(free);
                    }
                }
                // The documented fractions: the first free count that passes.
                let b = boundary.unwrap() - res;
                let expect = if gfp == GFP_ATOMIC {
                    let half = min - min / 2;
                    half - half / 4 + 1 // 37.5% of min
                } else if gfp.contains(__GFP_HIGH) {
                    min - min / 2 + 1 // 50% of min
                } else {
                    min + 1
                };
                assert_eq!(b, expect, "{} {gfp:?}", z.name());
            }
        }
        // Order > 0: the block's own pages do not count, and a free block of
        // that order must exist (it does: nothing has been allocated yet).
        let f = z.lock.lock(&m.platform);
        let flags = gfp_to_alloc_flags(GFP_KERNEL, 3);
        assert!(!zone_watermark_ok(
            z,
            3,
            min,
            zt,
            flags,
            (min + 7) as isize,
            Some(&f)
        ));
        assert!(zone_watermark_ok(
            z,
            3,
            min,
            zt,
            flags,
            (min + 8) as isize,
            Some(&f)
        ));
    }
    // The low watermark the fast path uses sits above min.
    let z = zone(&m, ZoneType::Dma32);
    assert!(z.wmark(WMARK_LOW) > z.wmark(WMARK_MIN) && z.wmark(WMARK_HIGH) > z.wmark(WMARK_LOW));
}

/// A machine whose every page is held by the test (as order-0 pages, sorted
/// by zone), so a zone's free count can be set exactly: free pages of that
/// zone and drain the per-CPU lists.
struct Drained<'a> {
    m: &'a Machine,
    pool: Vec<NonNull<Page>>,
}

impl<'a> Drained<'a> {
    fn new(m: &'a Machine) -> Self {
        Drained {
            m,
            pool: exhaust_all_order0(m),
        }
    }

    /// Take everything back, then give `zone` exactly `free` pages.
    fn set_free(&mut self, z: &Zone, free: usize) {
        let m = self.m;
        // Everything back to zero free.
        self.pool.extend(exhaust_all_order0(m));
        let mut given = 0;
        let mut i = 0;
        while given < free {
            let p = self.pool[i];
            if core::ptr::eq(zone_of(m, pfn(m, p)), z) {
                self.pool.swap_remove(i);
                // SAFETY: an order-0 page we own.
                unsafe { m.__free_pages(p, 0) };
                given += 1;
            } else {
                i += 1;
            }
        }
        m.drain_all_pages();
        assert_eq!(z.nr_free(), free);
        assert_eq!(m.nr_free_pages(), free);
    }

    fn release(self) {
        free_all0(self.m, self.pool);
    }
}

/// End to end: with a zone at an exact free count and every other zone
/// empty, each kind of request succeeds exactly when the model says so.
/// GFP_ATOMIC succeeds below min (down to 37.5% of min + the lowmem
/// reserve), GFP_NOWAIT fails below min, blocking `__GFP_HIGH` gets 50%,
/// `__GFP_MEMALLOC` ignores watermarks and `__GFP_NOMEMALLOC` overrides it.
#[test]
fn watermark_reserves_end_to_end() {
    let m = boot("quiet mem=64M nr_cpus=1 kswapd=off");
    let mut d = Drained::new(&m);
    // Blocking requests get __GFP_NORETRY so a failure returns after one
    // reclaim pass instead of waiting for memory.
    let requests = [
        GFP_ATOMIC | __GFP_NOWARN,
        GFP_NOWAIT,
        GFP_KERNEL | __GFP_NORETRY | __GFP_NOWARN,
        GFP_KERNEL | __GFP_HIGH | __GFP_NORETRY | __GFP_NOWARN,
        GFP_ATOMIC | __GFP_MEMALLOC | __GFP_NOWARN,
        GFP_KERNEL | __GFP_MEMALLOC | __GFP_NORETRY | __GFP_NOWARN,
        GFP_ATOMIC | __GFP_MEMALLOC | __GFP_NOMEMALLOC | __GFP_NOWARN,
        GFP_KERNEL | __GFP_MEMALLOC | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN,
    ];
    // DMA32 for GFP_KERNEL has no lowmem reserve (there is no Normal zone);
    // DMA keeps lowmem_reserve[Normal] back from GFP_KERNEL.
    for zt in [ZoneType::Dma32, ZoneType::Dma] {
        let z = zone(&m, zt);
        let min = z.wmark(WMARK_MIN);
        let res = reserve(z, ZoneType::Normal);
        let half = min - min / 2;
        let atomic = half - half / 4;
        let mut points = vec![0, 1, 2];
        for b in [atomic + res, half + res, min + res] {
            points.extend([b, b + 1]);
        }
        points.sort_unstable();
        points.dedup();
        for &gfp in &requests {
            for &free in &points {
                d.set_free(z, free);
                let waits = m.events.alloc_waits.load(Ordering::Relaxed);
                let r = m.alloc_pages(gfp, 0);
                assert_eq!(
                    r.is_ok(),
                    model_ok(gfp, free, min, res),
                    "{} {gfp:?} with {free} free (min {min}, reserve {res})",
                    z.name()
                );
                assert_eq!(
                    m.events.alloc_waits.load(Ordering::Relaxed),
                    waits,
                    "{gfp:?} waited"
                );
                if let Ok(p) = r {
                    assert!(core::ptr::eq(zone_of(&m, pfn(&m, p)), z));
                    d.pool.push(p);
                }
            }
        }
    }
    d.release();
    assert_boot_state(&m);
}

/// The same boundary for a HighMem zone's GFP_ATOMIC allocations, and for
/// lowmem_reserve[HighMem] of the Normal zone (i386 layout).
#[test]
fn watermark_reserves_highmem_machine() {
    let m = boot("quiet mem=1G highmem=512M nr_cpus=1 kswapd=off");
    let mut d = Drained::new(&m);
    for (zt, gfp) in [
        (ZoneType::Normal, GFP_ATOMIC | __GFP_HIGHMEM),
        (ZoneType::HighMem, GFP_ATOMIC | __GFP_HIGHMEM),
    ] {
        let z = zone(&m, zt);
        let min = z.wmark(WMARK_MIN);
        let res = reserve(z, ZoneType::HighMem);
        let half = min - min / 2;
        let b = half - half / 4 + res;
        for free in [b, b + 1] {
            d.set_free(z, free);
            let r = m.alloc_pages(gfp | __GFP_NOWARN, 0);
            assert_eq!(r.is_ok(), free > b, "{} free {free} boundary {b}", z.name());
            if let Ok(p) = r {
                d.pool.push(p);
            }
        }
    }
    d.release();
    assert_boot_state(&m);
}

// ---------------------------------------------------------------------------
// Zone selection.

const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

fn pfn_zone_by_address(pfn: usize) -> ZoneType {
    let addr = pfn << 12;
    if addr < 16 * MIB {
        ZoneType::Dma
    } else if addr < 4 * GIB {
        ZoneType::Dma32
    } else {
        ZoneType::Normal
    }
}

/// `gfp_zone`: all sixteen combinations of DMA|HIGHMEM|DMA32|MOVABLE on a
/// 6 GiB x86-64 machine (DMA, DMA32 and Normal exist, no HighMem). Valid
/// combinations return memory from the expected zone (the highest allowed
/// one while it has memory); invalid ones fail with a warning and no page.
#[test]
fn zone_selection_all_sixteen_combinations() {
    let m = boot("quiet mem=6G nr_cpus=2 kswapd=off");
    assert!(zone(&m, ZoneType::Normal).is_populated());
    use ZoneType::*;
    // Expected zone of the page, or None for BAD combinations.
    let expect: [Option<ZoneType>; 16] = [
        Some(Normal), // 0
        Some(Dma),    // DMA
        Some(Normal), // HIGHMEM, no CONFIG_HIGHMEM: Normal
        None,         // DMA|HIGHMEM
        Some(Dma32),  // DMA32
        None,         // DMA|DMA32
        None,         // DMA32|HIGHMEM
        None,         // DMA|DMA32|HIGHMEM
        Some(Normal), // MOVABLE
        Some(Dma),    // MOVABLE|DMA
        Some(Normal), // MOVABLE|HIGHMEM: ZONE_MOVABLE, empty here, falls back to Normal
        None,         // MOVABLE|DMA|HIGHMEM
        Some(Dma32),  // MOVABLE|DMA32
        None,         // MOVABLE|DMA|DMA32
        None,         // MOVABLE|DMA32|HIGHMEM
        None,         // all four
    ];
    let free0 = m.nr_free_pages();
    for (bits, want) in expect.iter().enumerate() {
        let gfp = GFP_KERNEL | Gfp(bits as u32);
        let warnings = m.events.warnings.load(Ordering::Relaxed);
        let since = m.dmesg_len();
        match (m.alloc_pages(gfp, 0), want) {
            (Ok(p), Some(z)) => {
                let pf = pfn(&m, p);
                assert_eq!(pfn_zone_by_address(pf), *z, "bits {bits:#x}: pfn {pf:#x}");
                assert_eq!(zone_of(&m, pf).zone_type, *z, "bits {bits:#x}");
                // SAFETY: our page.
                unsafe { m.__free_pages(p, 0) };
            }
            (Err(_), None) => {
                // The first bad combination warns (WARN_ON_ONCE); later ones
                // fail silently as VM_BUG_ON would not return at all.
                if bits == 3 {
                    assert!(m.events.warnings.load(Ordering::Relaxed) > warnings);
                    let log = m.dmesg_since(since);
                    assert!(log.contains("WARNING"), "no warning for bits {bits:#x}:\n{log}");
                }
            }
            (r, w) => panic!("bits {bits:#x}: got {:?}, expected {w:?}", r.map(|p| pfn(&m, p))),
        }
        // Bad combinations never take a page.
        if want.is_none() {
            m.drain_all_pages();
            assert_eq!(m.nr_free_pages(), free0, "bits {bits:#x} leaked a page");
        }
    }
    assert_boot_state(&m);
}

/// Every invalid combination warns on a fresh machine (the warning is once per
/// machine, like WARN_ON_ONCE).
#[test]
fn invalid_zone_combinations_each_warn() {
    for bits in [3u32, 5, 6, 7, 11, 13, 14, 15] {
        let m = boot("quiet mem=32M nr_cpus=1 kswapd=off");
        let free0 = m.nr_free_pages();
        assert!(
            m.alloc_pages(GFP_KERNEL | Gfp(bits), 0).is_err(),
            "bits {bits:#x}"
        );
        assert!(
            m.alloc_pages(GFP_ATOMIC | Gfp(bits), 2).is_err(),
            "bits {bits:#x}"
        );
        let log = m.dmesg();
        assert!(
            log.contains("WARNING") && log.contains("gfp"),
            "bits {bits:#x}:\n{log}"
        );
        assert_eq!(m.nr_free_pages() + m.nr_pcp_pages(), free0);
        assert_eq!(m.nr_allocated_pages(), m.boot_allocated_pages());
    }
}

/// Zonelist fallback: with Normal below its watermark, GFP_KERNEL gets DMA32
/// memory; but it never eats into DMA32 or DMA below their lowmem reserve
/// (`protection`), while GFP_DMA32 / GFP_DMA requests still can.
#[test]
fn zonelist_fallback_and_lowmem_reserve() {
    let m = boot("quiet mem=6G nr_cpus=2 kswapd=off");
    let normal = zone(&m, ZoneType::Normal);
    let dma32 = zone(&m, ZoneType::Dma32);
    let dma = zone(&m, ZoneType::Dma);
    let dma_free0 = dma.nr_free();

    // Fill Normal first: GFP_KERNEL prefers it.
    let mut held: Held = Vec::new();
    loop {
        let p = m
            .alloc_pages(GFP_KERNEL | __GFP_NOWARN | __GFP_NORETRY, 10)
            .unwrap();
        let z = pfn_zone_by_address(pfn(&m, p));
        held.push((p, 10));
        if z != ZoneType::Normal {
            assert_eq!(z, ZoneType::Dma32, "fallback from Normal goes to DMA32 first");
            break;
        }
    }
    // Order-0 requests drain Normal down to its low watermark, then fall back.
    loop {
        let p = m
            .alloc_pages(GFP_KERNEL | __GFP_NOWARN | __GFP_NORETRY, 0)
            .unwrap();
        held.push((p, 0));
        if pfn_zone_by_address(pfn(&m, p)) == ZoneType::Dma32 {
            break;
        }
    }
    // The fast path left Normal once it was at its low watermark.
    assert!(
        normal.nr_free() <= normal.wmark(WMARK_LOW),
        "fell back with Normal above low"
    );
    // Everything GFP_KERNEL can get.
    held.extend(exhaust(&m, GFP_KERNEL));
    m.drain_all_pages();
    // DMA: its reserve for Normal allocations exceeds its size, so GFP_KERNEL
    // never got a single DMA page.
    assert!(reserve(dma, ZoneType::Normal) > dma.managed());
    assert_eq!(dma.nr_free(), dma_free0, "GFP_KERNEL took DMA pages");
    assert!(held
        .iter()
        .all(|&(p, _)| pfn_zone_by_address(pfn(&m, p)) != ZoneType::Dma));
    // DMA32 keeps min + lowmem_reserve[Normal] back (pages a pcp refill
    // took beyond it came back with the drain and were not handed out).
    let protect = dma32.wmark(WMARK_MIN) + reserve(dma32, ZoneType::Normal);
    assert!(reserve(dma32, ZoneType::Normal) > 0);
    assert!(
        dma32.nr_free() >= protect,
        "DMA32 free {} below protection {protect}",
        dma32.nr_free()
    );
    // Zone-restricted requests may still use what GFP_KERNEL could not.
    let p = m
        .alloc_pages(GFP_KERNEL | __GFP_DMA32, 0)
        .expect("GFP_DMA32 uses DMA32's reserve for Normal");
    assert_eq!(pfn_zone_by_address(pfn(&m, p)), ZoneType::Dma32);
    held.push((p, 0));
    let p = m
        .alloc_pages(GFP_KERNEL | __GFP_DMA, 0)
        .expect("GFP_DMA uses the DMA zone");
    assert_eq!(pfn_zone_by_address(pfn(&m, p)), ZoneType::Dma);
    held.push((p, 0));
    // And GFP_KERNEL still fails.
    assert!(m
        .alloc_pages(GFP_KERNEL | __GFP_NOWARN | __GFP_NORETRY, 0)
        .is_err());
    free_all(&m, held);
    assert_boot_state(&m);
}

// ---------------------------------------------------------------------------
// HighMem.

/// On an i386-style machine (`mem=1G highmem=512M`), GFP_HIGHUSER pages come
/// from HighMem and have no permanent address; GFP_KERNEL pages have one;
/// `__get_free_pages(GFP_HIGHUSER)` still works, from lowmem.
#[test]
fn highmem_pages_have_no_address() {
    let m = boot("quiet mem=1G highmem=512M nr_cpus=2 kswapd=off");
    assert!(m.has_highmem());
    let hz = zone(&m, ZoneType::HighMem);
    assert!(hz.is_populated());
    let mut held: Held = Vec::new();
    for order in [0, 0, 1, 3, 5] {
        let p = m.alloc_pages(GFP_HIGHUSER, order).unwrap();
        let pf = pfn(&m, p);
        assert!(
            pf >= m.max_low_pfn(),
            "GFP_HIGHUSER pfn {pf:#x} below max_low_pfn"
        );
        assert_eq!(zone_of(&m, pf).zone_type, ZoneType::HighMem);
        assert!(m.page_is_highmem(p));
        assert!(
            m.page_address(p).is_none(),
            "a HighMem page has no permanent mapping"
        );
        held.push((p, order));
        let p = m.alloc_pages(GFP_KERNEL, order).unwrap();
        assert!(pfn(&m, p) < m.max_low_pfn());
        assert!(!m.page_is_highmem(p));
        let a = m.page_address(p).expect("lowmem page has an address");
        assert_eq!(m.virt_to_page(a.as_ptr()), Some(p));
        held.push((p, order));
    }
    // __get_free_pages never uses HighMem, whatever the flags say.
    for order in 0..4 {
        let a = m.__get_free_pages(GFP_HIGHUSER, order).unwrap();
        let p = m.virt_to_page(a.as_ptr()).unwrap();
        assert!(pfn(&m, p) < m.max_low_pfn());
        // Usable memory.
        // SAFETY: our allocation.
        unsafe { core::ptr::write_bytes(a.as_ptr(), 0x11, 4096 << order) };
        held.push((p, order));
    }
    let z = m.get_zeroed_page(GFP_HIGHUSER).unwrap();
    held.push((m.virt_to_page(z.as_ptr()).unwrap(), 0));
    // With HighMem exhausted, GFP_HIGHUSER falls back to Normal.
    let hs = exhaust(&m, GFP_HIGHUSER | __GFP_HIGHMEM);
    assert!(hs.iter().any(|&(p, _)| !m.page_is_highmem(p)));
    held.extend(hs);
    free_all(&m, held);
    assert_boot_state(&m);
}

// ---------------------------------------------------------------------------
// Nodes.

/// A node the machine lacks: the page allocator warns once (the kernel has a
/// `VM_BUG_ON` there) and serves the local node, or fails under
/// `__GFP_THISNODE`; a slab allocation treats it as `NUMA_NO_NODE`, as
/// `___slab_alloc` treats a node without slabs, without a word.
#[test]
fn offline_node_warns_and_falls_back() {
    let m = boot("quiet mem=256M numa=fake=2 nr_cpus=2 kswapd=off");
    let warnings = || m.events.warnings.load(Ordering::Relaxed);
    let w0 = warnings();
    let p = m
        .alloc_pages_node(5, GFP_KERNEL, 0)
        .expect("the local node serves");
    assert_eq!(warnings(), w0 + 1);
    assert!(
        m.dmesg().contains("GFP_KERNEL allocation from offline node 5"),
        "{}",
        m.dmesg()
    );
    assert!(m.alloc_pages_node(-7, GFP_KERNEL | __GFP_THISNODE, 0).is_err());
    assert_eq!(warnings(), w0 + 1, "a WARN_ON_ONCE");
    let q = m.alloc_pages_node(0, GFP_KERNEL, 0).unwrap();
    let obj = m
        .kmalloc_node(64, GFP_KERNEL, 9)
        .expect("kmalloc_node of a missing node");
    assert_eq!(warnings(), w0 + 1);
    // SAFETY: test code; the pages and the object are ours.
    unsafe {
        m.kfree(obj.as_ptr());
        m.__free_pages(p, 0);
        m.__free_pages(q, 0);
    }
    m.kmem_cache_shrink_all();
    assert_boot_state(&m);
}

/// `__GFP_THISNODE` selects the no-fallback zonelist: with node 1 exhausted,
/// a THISNODE request for node 1 fails (without OOM) while a normal one falls
/// back to node 0.
#[test]
fn thisnode_does_not_fall_back() {
    let m = boot("quiet mem=256M numa=fake=2 nr_cpus=2 kswapd=off");
    assert_eq!(m.nr_node_ids(), 2);
    let mut held: Held = Vec::new();
    for order in (0..=10).rev() {
        while let Ok(p) = m.alloc_pages_node(1, GFP_KERNEL | __GFP_THISNODE | __GFP_NOWARN, order) {
            assert_eq!(zone_of(&m, pfn(&m, p)).node, 1, "__GFP_THISNODE left node 1");
            held.push((p, order));
        }
    }
    assert!(held_pages(&held) > 1000);
    let oom = m.events.oom.load(Ordering::Relaxed);
    assert!(m
        .alloc_pages_node(1, GFP_KERNEL | __GFP_THISNODE | __GFP_NOWARN, 0)
        .is_err());
    assert_eq!(
        m.events.oom.load(Ordering::Relaxed),
        oom,
        "__GFP_THISNODE invoked the OOM step"
    );
    let p = m.alloc_pages_node(1, GFP_KERNEL, 0).expect("fallback to node 0");
    assert_eq!(zone_of(&m, pfn(&m, p)).node, 0);
    held.push((p, 0));
    free_all(&m, held);
    assert_boot_state(&m);
}
