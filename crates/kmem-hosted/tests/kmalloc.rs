//! The kmalloc family against the kernel's semantics (include/linux/slab.h,
//! mm/slab_common.c, mm/util.c): size classes, ZERO_SIZE_PTR, overflow,
//! krealloc, ksize, large kmalloc, alignment, kmalloc types, misuse.

use core::ptr::NonNull;
use kmem::kmalloc::*;
use kmem::page::flags::{PG_HEAD, PG_LARGE_KMALLOC};
use kmem::slab::KmemCache;
use kmem::*;
use kmem_hosted::Machine;
use std::collections::HashSet;

fn boot() -> Machine {
    Machine::boot("quiet mem=256M nr_cpus=2 kswapd=off").unwrap()
}

/// The size classes, in order.
const CLASSES: [usize; 13] = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192];

fn class_name(size: usize) -> String {
    match size {
        1024 => "1k".into(),
        2048 => "2k".into(),
        4096 => "4k".into(),
        8192 => "8k".into(),
        s => s.to_string(),
    }
}

/// The cache a slab object belongs to.
fn cache_of(m: &Machine, p: NonNull<u8>) -> &KmemCache {
    let slab = m.virt_to_slab(p.as_ptr()).expect("a slab object");
    // SAFETY: slab pages record their live cache.
    unsafe { &*(slab.as_ref().mapping as *const KmemCache) }
}

fn find_cache(m: &Machine, name: &str) -> NonNull<KmemCache> {
    let mut found = None;
    m.for_each_cache(|c| {
        if c.name() == name {
            found = Some(NonNull::from(c));
        }
    });
    found.unwrap_or_else(|| panic!("no cache {name}"))
}

fn active(m: &Machine, name: &str) -> usize {
    // SAFETY: kmalloc caches live as long as the machine.
    m.cache_counts(unsafe { find_cache(m, name).as_ref() }).0
}

/// Flush every cache, give empty slabs back, drain the per-CPU page lists,
/// and return the buddy lists as text.
fn settle(m: &Machine) -> String {
    let mut caches = Vec::new();
    m.for_each_cache(|c| caches.push(NonNull::from(c)));
    for c in caches {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_shrink(c) };
    }
    m.drain_all_pages();
    m.proc_read("buddyinfo").unwrap()
}

fn fill(p: NonNull<u8>, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: the caller owns len bytes at p.
        unsafe { *p.as_ptr().add(i) = seed.wrapping_add(i as u8) };
    }
}

fn check(p: NonNull<u8>, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: the caller owns len bytes at p.
        let b = unsafe { *p.as_ptr().add(i) };
        assert_eq!(b, seed.wrapping_add(i as u8), "byte {i}");
    }
}

#[test]
fn size_class_table() {
    // The kernel's kmalloc_size_index, boundaries included.
    for (size, want) in [
        (1, 8),
        (8, 8),
        (9, 16),
        (16, 16),
        (17, 32),
        (32, 32),
        (33, 64),
        (64, 64),
        (65, 96),
        (96, 96),
        (97, 128),
        (128, 128),
        (129, 192),
        (192, 192),
        (193, 256),
        (256, 256),
        (257, 512),
        (513, 1024),
        (1025, 2048),
        (2049, 4096),
        (4096, 4096),
        (4097, 8192),
        (8192, 8192),
    ] {
        assert_eq!(kmalloc_size(kmalloc_index(size)), want, "size {size}");
        assert_eq!(kmalloc_size_roundup(size), want, "roundup {size}");
    }
    assert_eq!(kmalloc_index(0), 0);
    assert_eq!(kmalloc_size_roundup(0), 0);
    assert_eq!(kmalloc_size_roundup(8193), 16384);
    assert_eq!(kmalloc_size_roundup(100_000), 131072);
    assert_eq!(kmalloc_size_roundup(4 << 20), 4 << 20);
    assert_eq!(kmalloc_size_roundup((4 << 20) + 1), (4 << 20) + 1);

    // And the caches really serve them: every size from 1 to 8 KiB.
    let m = boot();
    let mut held = Vec::new();
    for size in 1..=8192usize {
        let p = m.kmalloc(size, GFP_KERNEL).unwrap();
        let want = *CLASSES.iter().find(|&&c| c >= size).unwrap();
        let s = cache_of(&m, p);
        assert_eq!(s.name(), format!("kmalloc-{}", class_name(want)), "size {size}");
        assert_eq!(m.ksize(p.as_ptr()), want, "ksize of a {size}-byte kmalloc");
        assert_eq!(m.kmalloc_size_roundup(size), want);
        held.push(p);
    }
    for p in held {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kfree(p.as_ptr()) };
    }
    for c in CLASSES {
        assert_eq!(active(&m, &format!("kmalloc-{}", class_name(c))), 0);
    }
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

#[test]
fn zero_size_ptr_rules() {
    let m = boot();
    let before = m.dmesg_len();
    let z = m.kmalloc(0, GFP_KERNEL).unwrap();
    assert_eq!(z.as_ptr(), ZERO_SIZE_PTR);
    assert_eq!(z.as_ptr() as usize, 16);
    assert_eq!(m.kzalloc(0, GFP_KERNEL).unwrap().as_ptr(), ZERO_SIZE_PTR);
    assert_eq!(
        m.kmalloc_array(0, 100, GFP_KERNEL).unwrap().as_ptr(),
        ZERO_SIZE_PTR
    );
    assert_eq!(
        m.kmalloc_array(100, 0, GFP_KERNEL).unwrap().as_ptr(),
        ZERO_SIZE_PTR
    );
    assert_eq!(m.kmemdup(&[], GFP_KERNEL).unwrap().as_ptr(), ZERO_SIZE_PTR);
    assert!(zero_or_null_ptr(ZERO_SIZE_PTR));
    assert!(zero_or_null_ptr(core::ptr::null()));
    assert!(!zero_or_null_ptr(17 as *const u8));
    assert_eq!(m.ksize(ZERO_SIZE_PTR), 0);
    assert_eq!(m.ksize(core::ptr::null()), 0);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kfree(ZERO_SIZE_PTR);
        m.kfree(core::ptr::null());
        m.kfree_sensitive(ZERO_SIZE_PTR);
        m.kfree_bulk(&[core::ptr::null_mut(), ZERO_SIZE_PTR]);
    }
    // krealloc: NULL and ZERO_SIZE_PTR act as kmalloc; size 0 frees.
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let p = unsafe { m.krealloc(core::ptr::null_mut(), 50, GFP_KERNEL) }.unwrap();
    assert_eq!(m.ksize(p.as_ptr()), 64);
    assert_eq!(active(&m, "kmalloc-64"), 1);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let z = unsafe { m.krealloc(p.as_ptr(), 0, GFP_KERNEL) }.unwrap();
    assert_eq!(z.as_ptr(), ZERO_SIZE_PTR);
    assert_eq!(active(&m, "kmalloc-64"), 0);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let p = unsafe { m.krealloc(ZERO_SIZE_PTR, 20, GFP_KERNEL) }.unwrap();
    assert_eq!(m.ksize(p.as_ptr()), 32);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(p.as_ptr()) };
    // None of this is misuse.
    let log = m.dmesg_since(before);
    assert!(!log.contains("WARNING") && !log.contains("BUG"), "{log}");
}

#[test]
fn array_overflow_fails_without_allocating() {
    let m = boot();
    let boot_state = settle(&m);
    let before = m.dmesg_len();
    assert_eq!(
        m.kmalloc_array(usize::MAX / 2 + 1, 2, GFP_KERNEL),
        Err(AllocError)
    );
    assert_eq!(m.kcalloc(1 << 40, 1 << 40, GFP_KERNEL), Err(AllocError));
    assert_eq!(
        m.kmalloc_array_node(usize::MAX, 3, GFP_KERNEL, 0),
        Err(AllocError)
    );
    assert_eq!(m.kcalloc_node(3, usize::MAX, GFP_KERNEL, -1), Err(AllocError));
    // krealloc_array overflow leaves the buffer alone.
    let p = m.kmalloc_array(10, 4, GFP_KERNEL).unwrap();
    fill(p, 40, 7);
    assert_eq!(
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.krealloc_array(p.as_ptr(), usize::MAX, 2, GFP_KERNEL) },
        Err(AllocError)
    );
    check(p, 40, 7);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let q = unsafe { m.krealloc_array(p.as_ptr(), 20, 4, GFP_KERNEL) }.unwrap();
    check(q, 40, 7);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(q.as_ptr()) };
    // No allocation was attempted, so nothing was reported.
    let log = m.dmesg_since(before);
    assert!(
        !log.contains("allocation failure") && !log.contains("WARNING"),
        "{log}"
    );
    assert_eq!(settle(&m), boot_state);
    // kcalloc zeroes.
    let p = m.kmalloc(200, GFP_KERNEL).unwrap();
    fill(p, 200, 1);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(p.as_ptr()) };
    let c = m.kcalloc(25, 8, GFP_KERNEL).unwrap();
    for i in 0..200 {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        assert_eq!(unsafe { *c.as_ptr().add(i) }, 0);
    }
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(c.as_ptr()) };
}

#[test]
fn krealloc_same_pointer_and_moves() {
    let m = boot();
    let p = m.kmalloc(40, GFP_KERNEL).unwrap();
    fill(p, 40, 3);
    // Fits in ksize (64): the same pointer, contents kept.
    for size in [41, 60, 64, 10, 1] {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        let q = unsafe { m.krealloc(p.as_ptr(), size, GFP_KERNEL) }.unwrap();
        assert_eq!(q, p, "krealloc to {size}");
    }
    check(p, 40, 3);
    fill(p, 64, 5);
    // Beyond ksize: moves, copies ksize bytes, frees the old object.
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let q = unsafe { m.krealloc(p.as_ptr(), 65, GFP_KERNEL) }.unwrap();
    assert_ne!(q, p);
    assert_eq!(m.ksize(q.as_ptr()), 96);
    check(q, 64, 5);
    assert_eq!(active(&m, "kmalloc-64"), 0);
    assert_eq!(active(&m, "kmalloc-96"), 1);
    // Slab to large and large to larger.
    fill(q, 96, 9);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let r = unsafe { m.krealloc(q.as_ptr(), 10_000, GFP_KERNEL) }.unwrap();
    check(r, 96, 9);
    assert_eq!(m.ksize(r.as_ptr()), 16384);
    fill(r, 10_000, 11);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let r2 = unsafe { m.krealloc(r.as_ptr(), 16_000, GFP_KERNEL) }.unwrap();
    assert_eq!(r2, r, "a large kmalloc grows in place within its pages");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let r3 = unsafe { m.krealloc(r.as_ptr(), 40_000, GFP_KERNEL) }.unwrap();
    assert_ne!(r3, r);
    check(r3, 10_000, 11);
    assert_eq!(m.nr_large_kmalloc_pages(), 16);
    // Failure leaves the buffer untouched.
    let before = m.dmesg_len();
    assert_eq!(
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.krealloc(r3.as_ptr(), 8 << 20, GFP_KERNEL | __GFP_NOWARN) },
        Err(AllocError)
    );
    assert!(!m.dmesg_since(before).contains("WARNING"));
    check(r3, 10_000, 11);
    assert_eq!(m.nr_large_kmalloc_pages(), 16);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(r3.as_ptr()) };
    assert_eq!(m.nr_large_kmalloc_pages(), 0);
}

#[test]
fn krealloc_gfp_zero_clears_the_tail() {
    let m = boot();
    let p = m.kzalloc(100, GFP_KERNEL).unwrap();
    assert_eq!(m.ksize(p.as_ptr()), 128);
    fill(p, 128, 0x80);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let q = unsafe { m.krealloc(p.as_ptr(), 50, GFP_KERNEL | __GFP_ZERO) }.unwrap();
    assert_eq!(q, p);
    check(p, 50, 0x80);
    for i in 50..128 {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        assert_eq!(unsafe { *p.as_ptr().add(i) }, 0, "byte {i}");
    }
    // Growing back within ksize finds zeroes.
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let q = unsafe { m.krealloc(p.as_ptr(), 120, GFP_KERNEL | __GFP_ZERO) }.unwrap();
    assert_eq!(q, p);
    for i in 50..120 {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        assert_eq!(unsafe { *p.as_ptr().add(i) }, 0);
    }
    // Without __GFP_ZERO the tail is left alone.
    fill(p, 128, 1);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.krealloc(p.as_ptr(), 10, GFP_KERNEL) }.unwrap();
    check(p, 128, 1);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(p.as_ptr()) };
}

#[test]
fn ksize_values() {
    let m = boot();
    for &c in &CLASSES {
        let p = m.kmalloc(c, GFP_KERNEL).unwrap();
        assert_eq!(m.ksize(p.as_ptr()), c);
        // The whole usable size may be written.
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { core::ptr::write_bytes(p.as_ptr(), 0xee, c) };
        // SAFETY: allocated from this machine above, freed once and not used afterwards.
        unsafe { m.kfree(p.as_ptr()) };
    }
    for (size, ks) in [
        (8193, 16384),
        (16384, 16384),
        (16385, 32768),
        (100_000, 131072),
        (4 << 20, 4 << 20),
    ] {
        let p = m.kmalloc(size, GFP_KERNEL).unwrap();
        assert_eq!(m.ksize(p.as_ptr()), ks, "size {size}");
        assert_eq!(m.kmalloc_size_roundup(size), ks);
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kfree(p.as_ptr()) };
    }
    // kmem_cache objects: slab_ksize rules.
    let s = m
        .kmem_cache_create("ksize-test", 20, 0, kmem::slab::SlabFlags(0), None)
        .unwrap();
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert_eq!(m.ksize(p.as_ptr()), unsafe { s.as_ref() }.size);
    // SAFETY: allocated from this machine above, freed once and not used afterwards.
    unsafe { m.kmem_cache_free(s, p.as_ptr()) };
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
}

#[test]
fn large_kmalloc_order_flags_and_free() {
    let m = boot();
    let boot_state = settle(&m);
    let mut held = Vec::new();
    for (size, order) in [
        (8193usize, 2u32),
        (16384, 2),
        (16385, 3),
        (65536, 4),
        (1 << 20, 8),
        (4 << 20, 10),
    ] {
        let before = m.nr_large_kmalloc_pages();
        let p = m.kmalloc(size, GFP_KERNEL).unwrap();
        assert_eq!(p.as_ptr() as usize % PAGE_SIZE, 0, "page aligned");
        let page = m.virt_to_page(p.as_ptr()).unwrap();
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        let pg = unsafe { page.as_ref() };
        assert!(pg.test(PG_LARGE_KMALLOC));
        assert!(pg.test(PG_HEAD), "a compound page");
        assert!(!pg.is_slab());
        assert_eq!(pg.order as u32, order, "size {size}");
        assert_eq!(m.nr_large_kmalloc_pages() - before, 1 << order);
        assert!(m.virt_to_slab(p.as_ptr()).is_none());
        // The memory is usable end to end.
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { core::ptr::write_bytes(p.as_ptr(), 0x5a, PAGE_SIZE << order) };
        held.push((p, order));
    }
    assert_eq!(m.nr_large_kmalloc_pages(), 4 + 4 + 8 + 16 + 256 + 1024);
    // kzalloc of large memory is zeroed.
    let z = m.kzalloc(50_000, GFP_KERNEL).unwrap();
    for i in (0..50_000).step_by(97) {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        assert_eq!(unsafe { *z.as_ptr().add(i) }, 0);
    }
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(z.as_ptr()) };
    for (p, _) in held {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kfree(p.as_ptr()) };
    }
    assert_eq!(m.nr_large_kmalloc_pages(), 0);
    assert_eq!(settle(&m), boot_state);
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

#[test]
fn above_kmalloc_max_size_fails_with_a_warning() {
    let m = boot();
    let before = m.dmesg_len();
    assert_eq!(
        m.kmalloc((4 << 20) + 1, GFP_KERNEL | __GFP_NOWARN),
        Err(AllocError)
    );
    assert!(!m.dmesg_since(before).contains("WARNING"));
    assert_eq!(m.kmalloc((4 << 20) + 1, GFP_KERNEL), Err(AllocError));
    let log = m.dmesg_since(before);
    assert!(log.contains("WARNING") && log.contains("MAX_PAGE_ORDER"), "{log}");
    assert_eq!(m.kmalloc(usize::MAX, GFP_KERNEL), Err(AllocError));
    assert_eq!(m.nr_large_kmalloc_pages(), 0);
}

#[test]
fn power_of_two_sizes_are_naturally_aligned() {
    let m = boot();
    // Every kmalloc cache (every type) is created with align = size for powers of two.
    m.for_each_cache(|c| {
        if c.name().contains("kmalloc-") && c.object_size.is_power_of_two() {
            assert_eq!(c.align, c.object_size.min(PAGE_SIZE), "{}", c.name());
        }
    });
    let mut held = Vec::new();
    for gfp in [GFP_KERNEL, GFP_KERNEL | __GFP_RECLAIMABLE, GFP_KERNEL | GFP_DMA] {
        for &c in &CLASSES {
            // Enough objects to span several slabs.
            for _ in 0..40 {
                let p = m.kmalloc(c, gfp).unwrap();
                let natural = if c.is_power_of_two() {
                    c
                } else {
                    1 << c.trailing_zeros()
                };
                assert_eq!(p.as_ptr() as usize % natural, 0, "kmalloc({c}) at {p:p}");
                held.push(p);
            }
        }
    }
    // Large powers of two too (buddy blocks are aligned to their size).
    for shift in 14..=21 {
        let p = m.kmalloc(1 << shift, GFP_KERNEL).unwrap();
        assert_eq!(p.as_ptr() as usize % (1 << shift), 0);
        held.push(p);
    }
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree_bulk(&held.iter().map(|p| p.as_ptr()).collect::<Vec<_>>()) };
    assert_eq!(m.nr_large_kmalloc_pages(), 0);
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

#[test]
fn kmalloc_aligned_honours_any_alignment() {
    let m = boot();
    let mut held = Vec::new();
    for align in [
        16usize,
        32,
        64,
        128,
        256,
        512,
        1024,
        2048,
        4096,
        8192,
        16384,
        1 << 20,
    ] {
        for size in [1usize, 24, 80, 96, 100, 160, 192, 1000, 5000, 9000, 70_000] {
            let p = m.kmalloc_aligned(size, align, GFP_KERNEL).unwrap();
            assert_eq!(p.as_ptr() as usize % align, 0, "size {size} align {align}");
            assert!(m.ksize(p.as_ptr()) >= size);
            // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
            unsafe { core::ptr::write_bytes(p.as_ptr(), 1, size) };
            held.push(p);
        }
    }
    // 96-byte objects are 32-aligned already: no need for the 128 class.
    let p = m.kmalloc_aligned(96, 32, GFP_KERNEL).unwrap();
    assert_eq!(m.ksize(p.as_ptr()), 96);
    held.push(p);
    for p in held {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kfree(p.as_ptr()) };
    }
    assert_eq!(m.nr_large_kmalloc_pages(), 0);
    assert_eq!(m.kmalloc_aligned(10, 3, GFP_KERNEL), Err(AllocError));
}

#[test]
fn kmalloc_types_dma_and_reclaimable() {
    let m = boot();
    let p = m.kmalloc(100, GFP_KERNEL | GFP_DMA).unwrap();
    assert_eq!(cache_of(&m, p).name(), "dma-kmalloc-128");
    assert!(m.virt_to_phys(p.as_ptr()) < 16 << 20, "DMA memory below 16 MiB");
    let r = m.kmalloc(100, GFP_KERNEL | __GFP_RECLAIMABLE).unwrap();
    assert_eq!(cache_of(&m, r).name(), "kmalloc-rcl-128");
    // DMA wins over RECLAIMABLE.
    let d = m.kmalloc(3000, GFP_KERNEL | GFP_DMA | __GFP_RECLAIMABLE).unwrap();
    assert_eq!(cache_of(&m, d).name(), "dma-kmalloc-4k");
    assert!(m.virt_to_phys(d.as_ptr()) < 16 << 20);
    // Many DMA objects, all below 16 MiB.
    let mut held = Vec::new();
    for i in 0..2000 {
        let q = m.kmalloc(8 + i % 500, GFP_DMA).unwrap();
        assert!(m.virt_to_phys(q.as_ptr()) < 16 << 20);
        held.push(q);
    }
    // Large DMA kmalloc.
    let l = m.kmalloc(20_000, GFP_KERNEL | GFP_DMA).unwrap();
    assert!(m.virt_to_phys(l.as_ptr()) + 32768 <= 16 << 20);
    // Normal memory is above the DMA zone when there is room.
    let n = m.kmalloc(64, GFP_KERNEL).unwrap();
    assert_eq!(cache_of(&m, n).name(), "kmalloc-64");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        for q in held {
            m.kfree(q.as_ptr());
        }
        m.kfree_bulk(&[p.as_ptr(), r.as_ptr(), d.as_ptr(), l.as_ptr(), n.as_ptr()]);
    }
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

/// `kmem.kmalloc_lazy`: the boot makes the normal caches only; the first
/// allocation of a DMA or reclaimable size class makes its cache (each
/// once, whatever the race), from an atomic caller too, and
/// the objects are what the eager caches give.
#[test]
fn kmalloc_lazy_types_are_created_on_first_use() {
    let m = Machine::boot("quiet mem=256M nr_cpus=2 kswapd=off kmem.kmalloc_lazy=1").unwrap();
    let listed = |prefix: &str| {
        let text = m.proc_read("slabinfo").unwrap();
        let mut names: Vec<String> = text
            .lines()
            .skip(2)
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(prefix))
            .map(String::from)
            .collect();
        names.sort();
        names
    };
    assert_eq!(listed("kmalloc-").len(), 13, "every normal cache at boot");
    assert!(listed("dma-kmalloc-").is_empty() && listed("kmalloc-rcl-").is_empty());
    let p = m.kmalloc(100, GFP_KERNEL | GFP_DMA).unwrap();
    assert_eq!(cache_of(&m, p).name(), "dma-kmalloc-128");
    assert!(m.virt_to_phys(p.as_ptr()) < 16 << 20, "DMA memory below 16 MiB");
    assert_eq!(listed("dma-kmalloc-"), ["dma-kmalloc-128"]);
    assert_eq!(active(&m, "dma-kmalloc-128"), 1);
    let r = m.kmalloc(100, GFP_KERNEL | __GFP_RECLAIMABLE).unwrap();
    assert_eq!(cache_of(&m, r).name(), "kmalloc-rcl-128");
    // Size 0 has no cache of any type, and asking makes none.
    assert!(m.kmalloc_slab(0, GFP_KERNEL | GFP_DMA).is_none());
    assert_eq!(m.kmalloc(0, GFP_DMA).unwrap(), zero_size_ptr());
    assert_eq!(listed("dma-kmalloc-"), ["dma-kmalloc-128"]);
    // kmalloc_slab and kmalloc_node make them too.
    let s = m.kmalloc_slab(3000, GFP_KERNEL | GFP_DMA).unwrap();
    // SAFETY: kmalloc caches live as long as the machine.
    assert_eq!(unsafe { s.as_ref() }.name(), "dma-kmalloc-4k");
    let n = m.kmalloc_node(20, GFP_KERNEL | __GFP_RECLAIMABLE, 0).unwrap();
    assert_eq!(cache_of(&m, n).name(), "kmalloc-rcl-32");
    // An atomic caller (the cache is made with GFP_ATOMIC).
    let mut a = None;
    m.run_in_hardirq(|| a = Some(m.kmalloc(600, GFP_ATOMIC | GFP_DMA).unwrap()));
    let a = a.unwrap();
    assert_eq!(cache_of(&m, a).name(), "dma-kmalloc-1k");
    // Eight threads race for one new cache: one cache, every object from it.
    let barrier = std::sync::Barrier::new(8);
    let objs: Vec<usize> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(|| {
                    barrier.wait();
                    (0..50)
                        .map(|_| m.kmalloc(200, GFP_KERNEL | GFP_DMA).unwrap().as_ptr() as usize)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(objs.iter().collect::<HashSet<_>>().len(), 400);
    for &o in &objs {
        let o = NonNull::new(o as *mut u8).unwrap();
        assert_eq!(cache_of(&m, o).name(), "dma-kmalloc-256");
        assert!(m.virt_to_phys(o.as_ptr()) < 16 << 20);
    }
    assert_eq!(active(&m, "dma-kmalloc-256"), 400);
    assert_eq!(
        listed("dma-kmalloc-"),
        [
            "dma-kmalloc-128",
            "dma-kmalloc-1k",
            "dma-kmalloc-256",
            "dma-kmalloc-4k"
        ]
    );
    // SAFETY: allocated above, each freed once.
    unsafe {
        for o in objs {
            m.kfree(o as *const u8);
        }
        m.kfree_bulk(&[p.as_ptr(), r.as_ptr(), n.as_ptr(), a.as_ptr()]);
    }
    assert_eq!(active(&m, "dma-kmalloc-256"), 0);
    let d = m.dmesg();
    assert!(
        !d.contains("BUG")
            && !d.contains("duplicate")
            && !d.contains("WARNING")
            && !d.contains("Out of memory"),
        "{d}"
    );
}

#[test]
fn dma32_and_highmem_bits_are_stripped_with_a_warning() {
    let m = boot();
    let before = m.dmesg_len();
    // A fresh cache: the first allocation takes the slow path, which fixes the flags.
    let p = m.kmalloc(300, GFP_KERNEL | GFP_DMA32).unwrap();
    assert_eq!(cache_of(&m, p).name(), "kmalloc-512");
    let log = m.dmesg_since(before);
    assert!(log.contains("Unexpected gfp: 0x4 (GFP_DMA32)"), "{log}");
    assert!(log.contains("Fix your code!"));
    let before = m.dmesg_len();
    let l = m.kmalloc(30_000, GFP_KERNEL | __GFP_HIGHMEM).unwrap();
    let log = m.dmesg_since(before);
    assert!(
        log.contains("Unexpected gfp: 0x2 (") && log.contains("HIGHMEM"),
        "{log}"
    );
    assert!(m.virt_addr_valid(l.as_ptr()));
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kfree(p.as_ptr());
        m.kfree(l.as_ptr());
    }
}

/// `kmalloc-96` and `kmalloc-192` have one-page slabs coloured 0 or 64 bytes
/// in: `kfree` checks their pointers inline (`MultipleTest`, the offset from
/// the slab's first object). Every valid free of several slabs' objects is
/// taken without a report, and every pointer into an object, or into the
/// colour before the first one, is reported and frees nothing.
#[test]
fn kfree_checks_pointers_into_coloured_one_page_slabs_exactly() {
    let m = boot();
    let boot_state = settle(&m);
    for size in [96usize, 192] {
        let name = format!("kmalloc-{size}");
        let before_active = active(&m, &name);
        let objs: Vec<NonNull<u8>> = (0..(4096 / size) * 6)
            .map(|_| m.kmalloc(size, GFP_KERNEL).unwrap())
            .collect();
        let coloured = objs
            .iter()
            .filter(|p| {
                (p.as_ptr() as usize % PAGE_SIZE) % size == 64 % size
                    && p.as_ptr() as usize % PAGE_SIZE < size
            })
            .count();
        assert!(
            coloured > 0,
            "{name}: no slab with a colour among {} objects",
            objs.len()
        );
        let errors = m.slab.errors.load(std::sync::atomic::Ordering::Relaxed);
        let mut bad = 0;
        for p in &objs {
            let in_page = p.as_ptr() as usize % PAGE_SIZE;
            for off in [8isize, 32, 64, size as isize - 8] {
                // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
                unsafe { m.kfree(p.as_ptr().offset(off)) };
                bad += 1;
            }
            if in_page == 64 {
                // The colour before a slab's first object.
                // SAFETY: as above.
                unsafe { m.kfree(p.as_ptr().sub(32)) };
                bad += 1;
            }
        }
        // Each one reported (the log ring keeps only the last reports).
        let reported = m.slab.errors.load(std::sync::atomic::Ordering::Relaxed) - errors;
        assert_eq!(reported, bad, "{name}");
        assert!(m.dmesg().contains("Invalid object pointer"), "{name}");
        assert_eq!(
            active(&m, &name),
            before_active + objs.len(),
            "{name}: a bad free freed something"
        );
        let errors = m.slab.errors.load(std::sync::atomic::Ordering::Relaxed);
        for p in objs {
            // SAFETY: allocated above, freed once.
            unsafe { m.kfree(p.as_ptr()) };
        }
        assert_eq!(
            m.slab.errors.load(std::sync::atomic::Ordering::Relaxed),
            errors,
            "{name}: a valid free was reported"
        );
        assert_eq!(active(&m, &name), before_active, "{name}");
    }
    assert_eq!(settle(&m), boot_state);
}

/// `kfree`'s inline check is one test for every cache: the pointer's offset
/// from the first object its page records. For every kmalloc class, of one-
/// and multi-page slabs, pointers into objects (into tail pages too) and into
/// the room after a slab's last object are reported and free nothing; every
/// valid free is taken without a report.
#[test]
fn kfree_checks_pointers_of_every_size_class_exactly() {
    let m = boot();
    let boot_state = settle(&m);
    let errors = || m.slab.errors.load(std::sync::atomic::Ordering::Relaxed);
    for size in [8usize, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192] {
        let name = if size >= 1024 {
            format!("kmalloc-{}k", size / 1024)
        } else {
            format!("kmalloc-{size}")
        };
        let before_active = active(&m, &name);
        let objs: Vec<NonNull<u8>> = (0..(4 * 8192 / size).max(8))
            .map(|_| m.kmalloc(size, GFP_KERNEL).unwrap())
            .collect();
        let before = errors();
        let mut bad = 0;
        let mut room = 0;
        for p in &objs {
            let mut offsets = vec![size / 2, size - 4];
            if size > 8 {
                offsets.push(8);
            }
            let in_page = p.as_ptr() as usize % PAGE_SIZE;
            if size < PAGE_SIZE && in_page + size < PAGE_SIZE && in_page + 2 * size > PAGE_SIZE {
                // Just past the page's last object: the room no object fills.
                offsets.push(size);
                room += 1;
            }
            for off in offsets {
                // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
                unsafe { m.kfree(p.as_ptr().add(off)) };
                bad += 1;
            }
        }
        assert_eq!(errors() - before, bad, "{name}: reports");
        if size == 96 || size == 192 {
            assert!(room > 0, "{name}: no slab with room after its last object");
        }
        assert_eq!(
            active(&m, &name),
            before_active + objs.len(),
            "{name}: a bad free freed something"
        );
        let before = errors();
        for p in objs {
            // SAFETY: allocated above, freed once.
            unsafe { m.kfree(p.as_ptr()) };
        }
        assert_eq!(errors(), before, "{name}: a valid free was reported");
        assert_eq!(active(&m, &name), before_active, "{name}");
    }
    assert_eq!(settle(&m), boot_state);
}

#[test]
fn kfree_of_garbage_is_reported_and_corrupts_nothing() {
    let m = boot();
    let boot_state = settle(&m);
    let errors = m.slab.errors.load(std::sync::atomic::Ordering::Relaxed);

    // Not a kernel address at all.
    let local = 5u64;
    let before = m.dmesg_len();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(&local as *const u64 as *const u8) };
    let log = m.dmesg_since(before);
    assert!(log.contains("kfree: invalid pointer"), "{log}");

    // The middle of a slab object (power-of-two and other classes).
    for size in [64usize, 96, 192, 4096] {
        let p = m.kmalloc(size, GFP_KERNEL).unwrap();
        let before = m.dmesg_len();
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kfree(p.as_ptr().add(8)) };
        let log = m.dmesg_since(before);
        assert!(log.contains("Invalid object pointer"), "size {size}: {log}");
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kfree(p.as_ptr()) };
    }

    // Inside a large kmalloc: the second page, and an offset in the first.
    let l = m.kmalloc(40_000, GFP_KERNEL).unwrap();
    for off in [PAGE_SIZE, 100, 3 * PAGE_SIZE + 8] {
        let before = m.dmesg_len();
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kfree(l.as_ptr().add(off)) };
        let log = m.dmesg_since(before);
        assert!(log.contains("kfree: invalid pointer"), "offset {off}: {log}");
    }
    assert_eq!(m.nr_large_kmalloc_pages(), 16, "still allocated");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(l.as_ptr()) };
    assert_eq!(m.nr_large_kmalloc_pages(), 0);
    // Freeing it again: reported, not freed twice.
    let before = m.dmesg_len();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(l.as_ptr()) };
    let log = m.dmesg_since(before);
    assert!(
        log.contains("BUG: Bad page state") || log.contains("kfree: invalid pointer"),
        "{log}"
    );

    // A page from the page allocator is not kmalloc memory: reported, left allocated.
    let page = m.alloc_page(GFP_KERNEL).unwrap();
    let addr = m.page_address(page).unwrap();
    let before = m.dmesg_len();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(addr.as_ptr()) };
    let log = m.dmesg_since(before);
    assert!(
        log.contains("BUG: Bad page state") && log.contains("kfree"),
        "{log}"
    );
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert_eq!(unsafe { page.as_ref() }.ref_count(), 1, "the page is still ours");
    // SAFETY: allocated from this machine above, freed once and not used afterwards.
    unsafe { m.__free_page(page) };

    assert!(m.slab.errors.load(std::sync::atomic::Ordering::Relaxed) > errors);

    // The machine still works and nothing leaked or broke.
    let mut held = Vec::new();
    let mut seen = HashSet::new();
    for i in 0..5000usize {
        let p = m.kmalloc(1 + (i * 37) % 9000, GFP_KERNEL).unwrap();
        assert!(seen.insert(p.as_ptr() as usize), "an address handed out twice");
        held.push(p);
    }
    for p in held {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kfree(p.as_ptr()) };
    }
    for c in CLASSES {
        assert_eq!(active(&m, &format!("kmalloc-{}", class_name(c))), 0);
    }
    assert_eq!(settle(&m), boot_state);
}

#[test]
fn kfree_sensitive_clears_the_object() {
    let m = boot();
    let p = m.kmalloc(50, GFP_KERNEL).unwrap();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { core::ptr::write_bytes(p.as_ptr(), 0xaa, 64) };
    let s = cache_of(&m, p);
    let fp = s.offset;
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree_sensitive(p.as_ptr()) };
    // The object's memory (still mapped: it is the machine's RAM) is all
    // zero but the free pointer the slab wrote into it.
    for i in 0..64 {
        if (fp..fp + 8).contains(&i) {
            continue;
        }
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        assert_eq!(unsafe { *p.as_ptr().add(i) }, 0, "byte {i}");
    }
    let l = m.kmalloc(20_000, GFP_KERNEL).unwrap();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { core::ptr::write_bytes(l.as_ptr(), 0xaa, 20_000) };
    // SAFETY: allocated from this machine above, freed once and not used afterwards.
    unsafe { m.kfree_sensitive(l.as_ptr()) };
    assert_eq!(m.nr_large_kmalloc_pages(), 0);
}

#[test]
fn copies_and_strings() {
    let m = boot();
    let src: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let p = m.kmemdup(&src, GFP_KERNEL).unwrap();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert_eq!(unsafe { core::slice::from_raw_parts(p.as_ptr(), 300) }, &src[..]);
    assert_eq!(m.ksize(p.as_ptr()), 512);
    let s = m.kstrdup(c"hello, kernel", GFP_KERNEL).unwrap();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let back = unsafe { core::ffi::CStr::from_ptr(s.as_ptr() as *const core::ffi::c_char) };
    assert_eq!(back.to_str().unwrap(), "hello, kernel");
    assert_eq!(m.ksize(s.as_ptr()), 16);
    let t = m.kstrdup_str("ünïcode", GFP_KERNEL).unwrap();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let back = unsafe { core::ffi::CStr::from_ptr(t.as_ptr() as *const core::ffi::c_char) };
    assert_eq!(back.to_str().unwrap(), "ünïcode");
    let e = m.kstrdup_str("", GFP_KERNEL).unwrap();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert_eq!(unsafe { *e.as_ptr() }, 0);
    let n = m.kmemdup_nul(b"abc", GFP_KERNEL).unwrap();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert_eq!(unsafe { core::slice::from_raw_parts(n.as_ptr(), 4) }, b"abc\0");
    // SAFETY: allocated from this machine above, freed once and not used afterwards.
    unsafe { m.kfree_bulk(&[p.as_ptr(), s.as_ptr(), t.as_ptr(), e.as_ptr(), n.as_ptr()]) };
    assert_eq!(active(&m, "kmalloc-512"), 0);
    assert_eq!(active(&m, "kmalloc-16"), 0);
}

#[test]
fn kzalloc_and_node_variants() {
    let m = boot();
    let p = m.kmalloc(1000, GFP_KERNEL).unwrap();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { core::ptr::write_bytes(p.as_ptr(), 0xff, 1024) };
    // SAFETY: allocated from this machine above, freed once and not used afterwards.
    unsafe { m.kfree(p.as_ptr()) };
    for _ in 0..50 {
        let z = m.kzalloc(1000, GFP_KERNEL).unwrap();
        for i in 0..1000 {
            // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
            assert_eq!(unsafe { *z.as_ptr().add(i) }, 0);
        }
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kfree(z.as_ptr()) };
    }
    let a = m.kmalloc_node(100, GFP_KERNEL, 0).unwrap();
    let b = m.kzalloc_node(20_000, GFP_KERNEL, 0).unwrap();
    let c = m.kmalloc_node(0, GFP_KERNEL, -1).unwrap();
    assert_eq!(c.as_ptr(), ZERO_SIZE_PTR);
    assert_eq!(m.ksize(a.as_ptr()), 128);
    assert_eq!(m.ksize(b.as_ptr()), 32768);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree_bulk(&[a.as_ptr(), b.as_ptr(), c.as_ptr()]) };
    assert_eq!(m.nr_large_kmalloc_pages(), 0);
}

#[test]
fn kfree_frees_kmem_cache_objects_too() {
    let m = boot();
    let s = m
        .kmem_cache_create("kfree-any", 72, 0, kmem::slab::SlabFlags(0), None)
        .unwrap();
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(p.as_ptr()) };
    // SAFETY: a live descriptor or cache of this machine.
    assert_eq!(m.cache_counts(unsafe { s.as_ref() }).0, 0);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

#[test]
fn threads_kmalloc_and_free_each_others_memory() {
    let m = std::sync::Arc::new(boot());
    let boot_state = settle(&m);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, usize)>(4096);
    let mut producers = Vec::new();
    for t in 0..4usize {
        let m = m.clone();
        let tx = tx.clone();
        producers.push(std::thread::spawn(move || {
            for i in 0..20_000usize {
                let size = 1 + (i * 131 + t * 7) % if i % 50 == 0 { 30_000 } else { 2000 };
                let p = m.kmalloc(size, GFP_KERNEL).unwrap();
                // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
                unsafe { core::ptr::write_bytes(p.as_ptr(), (size % 251) as u8, size) };
                tx.send((p.as_ptr() as usize, size)).unwrap();
            }
        }));
    }
    drop(tx);
    let mut n = 0;
    while let Ok((p, size)) = rx.recv() {
        let p = p as *mut u8;
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        assert_eq!(unsafe { *p.add(size - 1) }, (size % 251) as u8);
        assert!(m.ksize(p) >= size);
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kfree(p) };
        n += 1;
    }
    for h in producers {
        h.join().unwrap();
    }
    assert_eq!(n, 80_000);
    assert_eq!(m.nr_large_kmalloc_pages(), 0);
    for c in CLASSES {
        assert_eq!(active(&m, &format!("kmalloc-{}", class_name(c))), 0);
    }
    assert_eq!(settle(&m), boot_state);
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

/// Every page of a multi-page slab names its cache: tail pages carry
/// `PG_SLAB_TAIL` and the cache in `mapping`, so `kfree` of an object in
/// any page takes the same path; misaligned pointers in tail pages are still
/// reported; and when the slab goes back, no tail keeps the flag or the
/// cache.
#[test]
fn objects_in_tail_pages_of_a_slab_name_their_cache() {
    use kmem::page_alloc::PG_TAIL_BIT;
    use kmem::slab::PG_SLAB_TAIL;
    use std::sync::atomic::Ordering::Relaxed;
    let m = boot();
    let boot_state = settle(&m);
    let cache = find_cache(&m, "kmalloc-1k");
    // SAFETY: kmalloc caches live as long as the machine.
    assert!(unsafe { cache.as_ref() }.oo.order > 0, "a multi-page slab");
    let before = active(&m, "kmalloc-1k");
    let objs: Vec<NonNull<u8>> = (0..64).map(|_| m.kmalloc(1000, GFP_KERNEL).unwrap()).collect();
    let flags = |p: NonNull<u8>| {
        let page = m.virt_to_page(p.as_ptr()).unwrap();
        // SAFETY: a descriptor of this machine's memmap.
        let pg = unsafe { page.as_ref() };
        (pg.flags.load(Relaxed), pg.mapping)
    };
    let mut tails = Vec::new();
    for &p in &objs {
        let (f, mapping) = flags(p);
        if f & PG_TAIL_BIT != 0 {
            assert_ne!(f & PG_SLAB_TAIL, 0);
            assert_eq!(mapping, cache.as_ptr() as usize);
            tails.push(m.virt_to_page(p.as_ptr()).unwrap());
        } else {
            assert_eq!(f & PG_SLAB_TAIL, 0, "a head page is PG_SLAB only");
        }
    }
    assert!(
        tails.len() > 32,
        "most objects of order-3 slabs lie in tail pages"
    );
    // A pointer into the middle of an object in a tail page.
    let t = *objs.iter().find(|&&p| flags(p).0 & PG_TAIL_BIT != 0).unwrap();
    let log_at = m.dmesg_len();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kfree(t.as_ptr().add(8)) };
    assert!(m.dmesg_since(log_at).contains("Invalid object pointer"));
    assert_eq!(
        active(&m, "kmalloc-1k"),
        before + 64,
        "nothing freed by the bad pointer"
    );
    for &p in objs.iter().rev() {
        // SAFETY: allocated above, freed once.
        unsafe { m.kfree(p.as_ptr()) };
    }
    assert_eq!(active(&m, "kmalloc-1k"), before);
    assert_eq!(settle(&m), boot_state);
    for page in tails {
        // SAFETY: a descriptor of this machine's memmap.
        let pg = unsafe { page.as_ref() };
        if pg.flags.load(Relaxed) & PG_TAIL_BIT == 0 {
            // The slab went back: nothing of it is left on the page.
            assert_eq!(pg.flags.load(Relaxed) & PG_SLAB_TAIL, 0);
            assert_eq!(pg.mapping, 0);
        }
    }
}

/// `kmem.kmalloc_freeptr_start=1` puts a free object's free pointer in its
/// first word in the kmalloc caches, and there alone; objects still chain,
/// come back whole and validate.
#[test]
fn kmalloc_freeptr_start_moves_the_kmalloc_free_pointers_alone() {
    let default = boot();
    let m = Machine::boot("quiet mem=256M nr_cpus=2 kswapd=off kmem.kmalloc_freeptr_start=1").unwrap();
    for size in CLASSES {
        let name = format!("kmalloc-{}", class_name(size));
        // SAFETY: kmalloc caches live as long as their machine.
        let (d, s) = unsafe {
            (
                find_cache(&default, &name).as_ref(),
                find_cache(&m, &name).as_ref(),
            )
        };
        assert_eq!(d.offset, (size / 2) & !7, "{name}: the kernel's middle word");
        assert_eq!(s.offset, 0, "{name}");
    }
    let c = m
        .kmem_cache_create("t_freeptr", 176, 8, kmem::slab::SlabFlags(0), None)
        .unwrap();
    // SAFETY: created above.
    assert_eq!(
        unsafe { c.as_ref() }.offset,
        88,
        "a created cache keeps the middle word"
    );
    // SAFETY: created above, no objects.
    unsafe { m.kmem_cache_destroy(c) };
    // Objects of several slabs, freed in an order that leaves every slab
    // partial, then allocated again: the chains hold and nothing overlaps.
    for round in 0..2u8 {
        let objs: Vec<NonNull<u8>> = (0..3000).map(|_| m.kmalloc(128, GFP_KERNEL).unwrap()).collect();
        assert_eq!(
            objs.iter().map(|p| p.as_ptr()).collect::<HashSet<_>>().len(),
            objs.len()
        );
        for (i, &p) in objs.iter().enumerate() {
            fill(p, 128, i as u8 ^ round);
        }
        for (i, &p) in objs.iter().enumerate() {
            check(p, 128, i as u8 ^ round);
        }
        for &p in objs.iter().step_by(2).chain(objs.iter().skip(1).step_by(2)) {
            // SAFETY: allocated above, freed once.
            unsafe { m.kfree(p.as_ptr()) };
        }
    }
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(find_cache(&m, "kmalloc-128")) }, 0);
    assert_eq!(active(&m, "kmalloc-128"), active(&default, "kmalloc-128"));
}
