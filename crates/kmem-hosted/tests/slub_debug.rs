//! Debug caches do what `slub_debug` does: red zones, poisoning, user
//! tracking, consistency checks on allocation and free, validation, and
//! misuse (double free, bad pointers, wrong cache, use after free) reported
//! the kernel's way (`mm/slub.c`). Error counts follow the kernel's rule:
//! every report and every fix counts one.

use core::ptr::NonNull;
use kmem::slab::debug::*;
use kmem::slab::*;
use kmem::*;
use kmem_hosted::Machine;
use std::sync::atomic::Ordering::Relaxed;

fn boot(cmdline: &str) -> Machine {
    Machine::boot(cmdline).unwrap_or_else(|e| panic!("boot {cmdline:?}: {e}"))
}

fn boot_plain() -> Machine {
    boot("quiet mem=128M nr_cpus=2 kswapd=off")
}

fn create(m: &Machine, name: &str, size: usize, flags: SlabFlags) -> NonNull<KmemCache> {
    m.kmem_cache_create(name, size, 0, flags | SLAB_NO_USER_FLAGS, None)
        .expect("cache")
}

fn errors(m: &Machine) -> usize {
    m.slab.errors.load(Relaxed)
}

/// Run `f`, returning the errors it added and what it logged.
fn during(m: &Machine, f: impl FnOnce()) -> (usize, String) {
    let since = m.dmesg_len();
    let before = errors(m);
    f();
    (errors(m) - before, m.dmesg_since(since))
}

fn cache(s: NonNull<KmemCache>) -> &'static KmemCache {
    // SAFETY: the tests keep their caches alive while they look at them.
    unsafe { &*s.as_ptr() }
}

fn active(m: &Machine, s: NonNull<KmemCache>) -> usize {
    m.cache_counts(cache(s)).0
}

// ---------------------------------------------------------------------------
// slub_debug= on the command line
// ---------------------------------------------------------------------------

#[test]
fn slub_debug_fzpu_debugs_every_cache_and_stays_clean() {
    let m = boot("quiet mem=256M nr_cpus=2 kswapd=off slub_debug=FZPU");
    let all = SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER;
    let mut n = 0;
    m.for_each_cache(|c| {
        assert!(c.flags.contains(all), "{} flags {:#x}", c.name(), c.flags.0);
        n += 1;
    });
    assert!(n > 30);
    let s = m
        .kmem_cache_create("fzpu-100", 100, 0, SlabFlags(0), None)
        .unwrap();
    assert!(cache(s).flags.contains(all));
    let k64 = m.kmalloc_slab(64, GFP_KERNEL).unwrap();
    let k192 = m.kmalloc_slab(150, GFP_KERNEL).unwrap();
    let mut live = Vec::new();
    for i in 0..3000usize {
        for c in [s, k64, k192] {
            // SAFETY: a live cache of this machine (created and not destroyed).
            let p = unsafe { m.kmem_cache_alloc(c, GFP_KERNEL) }.unwrap().as_ptr();
            let len = cache(c).object_size;
            // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
            unsafe { std::ptr::write_bytes(p, i as u8, len) };
            live.push((c, p));
        }
        if i % 3 == 0 {
            let (c, p) = live.swap_remove(i % live.len());
            // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
            unsafe { m.kmem_cache_free(c, p) };
        }
    }
    for c in [s, k64, k192] {
        // SAFETY: a live cache of this machine (created and not destroyed).
        assert_eq!(unsafe { m.kmem_cache_validate(c) }, 0, "{}", m.dmesg());
    }
    for (c, p) in live.drain(..) {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kmem_cache_free(c, p) };
    }
    let mut bad = 0;
    // SAFETY: a live cache of this machine (created and not destroyed).
    m.for_each_cache(|c| bad += unsafe { m.kmem_cache_validate(NonNull::from(c)) });
    assert_eq!(bad, 0, "{}", m.dmesg());
    assert_eq!(active(&m, s), 0);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
    assert_eq!(errors(&m), 0, "{}", m.dmesg());
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

#[test]
fn slub_debug_for_one_cache_only() {
    let m = boot("quiet mem=128M nr_cpus=2 kswapd=off slub_debug=P,kmalloc-64");
    let k64 = m.kmalloc_slab(64, GFP_KERNEL).unwrap();
    let k32 = m.kmalloc_slab(32, GFP_KERNEL).unwrap();
    assert_eq!(cache(k64).name(), "kmalloc-64");
    assert!(cache(k64).flags.intersects(SLAB_POISON));
    assert!(!cache(k64)
        .flags
        .intersects(SLAB_RED_ZONE | SLAB_STORE_USER | SLAB_CONSISTENCY_CHECKS));
    assert!(!cache(k32).debug());
    let other = m.kmem_cache_create("other", 64, 0, SlabFlags(0), None).unwrap();
    assert!(!cache(other).debug());
    // A poisoned cache hands out poisoned objects (no __GFP_ZERO).
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(k64, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let b = unsafe { std::slice::from_raw_parts(p, 64) };
    assert!(b[..63].iter().all(|&x| x == POISON_FREE), "{b:x?}");
    assert_eq!(b[63], POISON_END);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(k64, p) };
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(k64) }, 0);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(other) };
}

#[test]
fn slub_debug_named_cache_is_not_merged_away() {
    // find_mergeable applies slub_debug= with the new cache's name: a cache
    // that slub_debug names is a debug cache and never merges.
    let m = boot("quiet mem=128M nr_cpus=2 kswapd=off slub_debug=ZU,mycache");
    let plain = m
        .kmem_cache_create("plain-64", 64, 0, SlabFlags(0), None)
        .unwrap();
    let alias = m
        .kmem_cache_create("alias-64", 64, 0, SlabFlags(0), None)
        .unwrap();
    assert_eq!(plain, alias, "ordinary caches of one size merge");
    let mine = m.kmem_cache_create("mycache", 64, 0, SlabFlags(0), None).unwrap();
    assert_ne!(mine, plain);
    assert_eq!(cache(mine).name(), "mycache");
    assert!(cache(mine).flags.contains(SLAB_RED_ZONE | SLAB_STORE_USER));
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(mine, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { *p.add(64) = 1 };
    let (n, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_validate(mine) };
    });
    assert_eq!(n, 2, "{log}");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(mine, p) };
}

#[test]
fn kmalloc_caches_under_slub_debug() {
    let m = boot("quiet mem=128M nr_cpus=2 kswapd=off slub_debug=FZPU,kmalloc-*");
    let k32 = m.kmalloc_slab(32, GFP_KERNEL).unwrap();
    assert!(
        cache(k32).debug_orig_size(),
        "kmalloc caches with U track the requested size"
    );
    // Through the kmalloc-style entry: the slack is red zone.
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc_trace(k32, GFP_KERNEL, 20) }
        .unwrap()
        .as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert!((20..32).all(|i| unsafe { *p.add(i) } == SLUB_RED_ACTIVE));
    // SAFETY: within memory this test allocated and still owns.
    unsafe { *p.add(25) = 0 };
    let (n, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_validate(k32) };
    });
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("[kmalloc Redzone overwritten]"), "{log}");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(k32, p) };
    // ksize-style users take the whole object: no kmalloc red zone any more.
    // SAFETY: a live cache of this machine (created and not destroyed).
    let r = unsafe { m.kmem_cache_alloc_trace(k32, GFP_KERNEL, 10) }
        .unwrap()
        .as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.skip_orig_size_check(cache(k32), r);
        std::ptr::write_bytes(r, 0x77, 32);
    }
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(k32) }, 0, "{}", m.dmesg());
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(k32, r) };
    // Plain kmem_cache_alloc on the same cache records the whole object.
    // SAFETY: a live cache of this machine (created and not destroyed).
    let q = unsafe { m.kmem_cache_alloc(k32, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert_eq!(unsafe { m.kmem_cache_orig_size(cache(k32), q) }, 32);
    // SAFETY: allocated from this machine above, freed once and not used afterwards.
    unsafe { m.kmem_cache_free(k32, q) };
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(k32) }, 0, "{}", m.dmesg());
}

// ---------------------------------------------------------------------------
// Object layout
// ---------------------------------------------------------------------------

#[test]
fn new_objects_are_red_zoned_poisoned_and_padded() {
    let m = boot_plain();
    let s = create(&m, "layout", 60, SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER);
    let c = cache(s);
    assert_eq!(c.object_size, 60);
    assert_eq!(c.inuse, 64, "word padding is the right red zone");
    assert!(c.freeptr_outside_object());
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: a live cache of this machine (created and not destroyed).
    let q = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        let left = std::slice::from_raw_parts(p.sub(c.red_left_pad), c.red_left_pad);
        assert!(left.iter().all(|&x| x == SLUB_RED_ACTIVE));
        let right = std::slice::from_raw_parts(p.add(60), 4);
        assert!(right.iter().all(|&x| x == SLUB_RED_ACTIVE));
        // An allocated object of a poisoned cache still reads as poison.
        assert_eq!(*p, POISON_FREE);
        assert_eq!(*p.add(59), POISON_END);
        m.kmem_cache_free(s, p);
        let left = std::slice::from_raw_parts(p.sub(c.red_left_pad), c.red_left_pad);
        assert!(left.iter().all(|&x| x == SLUB_RED_INACTIVE));
        assert!((60..64).all(|i| *p.add(i) == SLUB_RED_INACTIVE));
        // Padding after the metadata.
        let meta = c.info_end() + 2 * 32;
        assert!((meta..c.size_from_object()).all(|i| *p.add(i) == POISON_INUSE));
        m.kmem_cache_free(s, q);
    }
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(s) }, 0, "{}", m.dmesg());
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
}

#[test]
fn ctor_and_rcu_caches_are_not_poisoned() {
    fn ctor(p: *mut u8) {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { (p as *mut u32).write(0x4141_4141) };
    }
    let m = boot_plain();
    let a = m
        .kmem_cache_create("ctor-p", 64, 0, SLAB_POISON | SLAB_NO_USER_FLAGS, Some(ctor))
        .unwrap();
    let b = create(&m, "rcu-p", 64, SLAB_POISON | SLAB_TYPESAFE_BY_RCU);
    assert!(!cache(a).object_poison() && !cache(b).object_poison());
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(a, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: a live cache of this machine (created and not destroyed).
    let q = unsafe { m.kmem_cache_alloc(b, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        assert_eq!((p as *const u32).read(), 0x4141_4141);
        std::ptr::write_bytes(q, 0x33, 64);
        m.kmem_cache_free(a, p);
        m.kmem_cache_free(b, q);
        assert_eq!(
            (p as *const u32).read(),
            0x4141_4141,
            "constructed state survives free"
        );
        assert!((0..64).all(|i| *q.add(i) == 0x33), "RCU contents survive free");
    }
    assert_eq!(
        // SAFETY: both are live caches of this machine (created above, not destroyed).
        unsafe { m.kmem_cache_validate(a) + m.kmem_cache_validate(b) },
        0,
        "{}",
        m.dmesg()
    );
}

// ---------------------------------------------------------------------------
// Misuse
// ---------------------------------------------------------------------------

#[test]
fn double_free_is_reported_and_not_done() {
    let m = boot_plain();
    let s = create(
        &m,
        "dfree",
        64,
        SLAB_CONSISTENCY_CHECKS | SLAB_POISON | SLAB_STORE_USER,
    );
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(s, p) };
    // SAFETY: allocated from this machine above, freed once and not used afterwards.
    let (n, log) = during(&m, || unsafe { m.kmem_cache_free(s, p) });
    // object_err + "not freed" fix.
    assert_eq!(n, 2, "{log}");
    assert!(
        log.contains("BUG dfree (Tainted: G    B             ): Object already free"),
        "{log}"
    );
    assert!(
        log.contains(&format!("FIX dfree: Object at 0x{:016x} not freed", p as usize)),
        "{log}"
    );
    assert!(log.contains("Freed in "), "the free track is shown: {log}");
    // The object is on the freelist once: two allocations differ.
    // SAFETY: a live cache of this machine (created and not destroyed).
    let a = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: a live cache of this machine (created and not destroyed).
    let b = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    assert_ne!(a, b);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kmem_cache_free(s, a);
        m.kmem_cache_free(s, b);
    }
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(s) }, 0, "{}", m.dmesg());
    assert_eq!(active(&m, s), 0);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
    assert_eq!(errors(&m), 2);
}

#[test]
fn double_free_is_caught_without_consistency_checks_too() {
    let m = boot_plain();
    let s = create(&m, "dfree-z", 64, SLAB_RED_ZONE);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(s, p) };
    // SAFETY: allocated from this machine above, freed once and not used afterwards.
    let (n, log) = during(&m, || unsafe { m.kmem_cache_free(s, p) });
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("Object already free"), "{log}");
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(s) }, 0, "{}", m.dmesg());
}

#[test]
fn free_of_a_pointer_inside_an_object_is_refused() {
    let m = boot_plain();
    let s = create(&m, "midptr", 64, SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    let bad = p.wrapping_add(24);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let (n, log) = during(&m, || unsafe { m.kmem_cache_free(s, bad) });
    assert_eq!(n, 2, "{log}");
    assert!(
        log.contains(&format!("Invalid object pointer 0x{:016x}", bad as usize)),
        "{log}"
    );
    assert!(log.contains("not freed"), "{log}");
    assert_eq!(active(&m, s), 1, "nothing was freed");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(s, p) };
    assert_eq!(active(&m, s), 0);
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(s) }, 0, "{}", m.dmesg());
}

#[test]
fn free_into_the_wrong_cache_goes_to_the_right_one() {
    let m = boot_plain();
    let a = create(&m, "right-cache", 64, SLAB_RED_ZONE | SLAB_STORE_USER);
    let b = create(&m, "wrong-cache", 64, SLAB_NO_MERGE);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(a, GFP_KERNEL) }.unwrap().as_ptr();
    let warnings = m.dmesg().matches("WARNING").count();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let (_, log) = during(&m, || unsafe { m.kmem_cache_free(b, p) });
    assert!(
        log.contains("Wrong slab cache. wrong-cache but object is from right-cache"),
        "{log}"
    );
    assert_eq!(m.dmesg().matches("WARNING").count(), warnings + 1);
    assert_eq!(active(&m, a), 0, "freed into the real cache");
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(a) }, 0, "{}", m.dmesg());
    // And the same the other way round, into a debug cache.
    // SAFETY: a live cache of this machine (created and not destroyed).
    let q = unsafe { m.kmem_cache_alloc(b, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(a, q) };
    assert_eq!(active(&m, b), 0);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kmem_cache_destroy(a);
        m.kmem_cache_destroy(b);
    }
}

#[test]
fn write_after_free_is_caught_at_the_next_allocation() {
    let m = boot_plain();
    let s = create(&m, "uaf-alloc", 64, SLAB_CONSISTENCY_CHECKS | SLAB_POISON);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kmem_cache_free(s, p);
        *p.add(10) = 0x11;
    }
    let mut q = std::ptr::null_mut();
    let (n, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        q = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr()
    });
    // Poison report + restore + "Marking all objects used".
    assert_eq!(n, 3, "{log}");
    assert!(log.contains("[Poison overwritten]"), "{log}");
    assert!(log.contains("First byte 0x11 instead of 0x6b"), "{log}");
    assert!(log.contains("FIX uaf-alloc: Marking all objects used"), "{log}");
    assert_ne!(p, q, "the corrupt slab is not used any more");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(s, q) };
    let (n, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_validate(s) };
    });
    assert_eq!(n, 0, "{log}");
}

#[test]
fn write_after_free_is_caught_by_validate() {
    let m = boot_plain();
    let s = create(&m, "uaf-validate", 128, SLAB_POISON);
    let v: Vec<_> = (0..5)
        // SAFETY: a live cache of this machine (created and not destroyed).
        .map(|_| unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr())
        .collect();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kmem_cache_free(s, v[2]);
        *v[2].add(127) = 0;
    }
    let (n, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_validate(s) };
    });
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("[End Poison overwritten]"), "{log}");
    assert!(log.contains("First byte 0x0 instead of 0xa5"), "{log}");
    for (i, p) in v.into_iter().enumerate() {
        if i != 2 {
            // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
            unsafe { m.kmem_cache_free(s, p) };
        }
    }
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(s) }, 0);
}

#[test]
fn overflow_is_caught_at_free_with_consistency_checks() {
    let m = boot_plain();
    let s = create(&m, "ovf-free", 64, SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { *p.add(66) = 0 };
    // SAFETY: allocated from this machine above, freed once and not used afterwards.
    let (n, log) = during(&m, || unsafe { m.kmem_cache_free(s, p) });
    // Report + restore, and the object is not freed (the kernel leaks it).
    assert_eq!(n, 3, "{log}");
    assert!(log.contains("[Right Redzone overwritten]"), "{log}");
    assert!(log.contains("First byte 0x0 instead of 0xcc"), "{log}");
    assert!(log.contains("Object corrupt"), "{log}");
    assert!(log.contains("not freed"), "{log}");
    assert_eq!(active(&m, s), 1);
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(s) }, 0, "{}", m.dmesg());
}

#[test]
fn underflow_is_caught_in_the_left_red_zone() {
    let m = boot_plain();
    let s = create(&m, "underflow", 64, SLAB_RED_ZONE);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { *p.sub(1) = 0x55 };
    let (n, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_validate(s) };
    });
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("[Left Redzone overwritten]"), "{log}");
    assert!(log.contains("FIX underflow: Restoring Left Redzone"), "{log}");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(s, p) };
}

#[test]
fn alignment_object_and_slab_padding_are_checked() {
    let m = boot_plain();
    // No red zone: the word padding after a 60-byte object is "Alignment padding".
    let s = create(&m, "pad-align", 60, SLAB_POISON);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { *p.add(61) = 1 };
    let (n, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_validate(s) };
    });
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("[Alignment padding overwritten]"), "{log}");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(s, p) };

    // Cache-line alignment leaves padding after the free pointer.
    let t = m
        .kmem_cache_create(
            "pad-object",
            64,
            0,
            SLAB_POISON | SLAB_HWCACHE_ALIGN | SLAB_NO_USER_FLAGS,
            None,
        )
        .unwrap();
    let c = cache(t);
    assert!(c.size > c.info_end(), "size {} info_end {}", c.size, c.info_end());
    // SAFETY: a live cache of this machine (created and not destroyed).
    let q = unsafe { m.kmem_cache_alloc(t, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { *q.add(c.size - 1) = 2 };
    let (n, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_validate(t) };
    });
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("[Object padding overwritten]"), "{log}");

    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(t, q) };
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(t) }, 0);

    // The bytes after the last object of the slab.
    let u = create(&m, "pad-slab", 100, SLAB_POISON);
    let c = cache(u);
    let objs = c.oo.objects as usize;
    let slab_bytes = 4096usize << c.oo.order;
    assert!(objs * c.size < slab_bytes, "this cache leaves a tail");
    // SAFETY: a live cache of this machine (created and not destroyed).
    let r = unsafe { m.kmem_cache_alloc(u, GFP_KERNEL) }.unwrap().as_ptr();
    let base = (r as usize) & !(slab_bytes - 1);
    assert_eq!(r as usize, base, "the first object of a fresh, aligned slab");
    let tail = (base + objs * c.size) as *mut u8;
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { *tail.add(3) = 9 };
    let (n, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_validate(u) };
    });
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("Padding overwritten."), "{log}");
    assert!(log.contains("Restoring slab padding"), "{log}");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(u, r) };
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(u) }, 0);
}

#[test]
fn corrupt_free_pointer_is_caught_at_allocation() {
    let m = boot_plain();
    let s = create(&m, "fp-alloc", 64, SLAB_CONSISTENCY_CHECKS | SLAB_POISON);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kmem_cache_free(s, p);
        (p.add(cache(s).offset) as *mut usize).write(0xdead_beef);
    }
    let mut q = std::ptr::null_mut();
    let (n, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        q = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr()
    });
    // "Freepointer corrupt" + "Marking all objects used".
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("Freepointer corrupt"), "{log}");
    assert!(log.contains("Marking all objects used"), "{log}");
    assert_ne!(p, q);
    // The next allocations come from a healthy slab.
    // SAFETY: a live cache of this machine (created and not destroyed).
    let r = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kmem_cache_free(s, r);
        m.kmem_cache_free(s, q);
    }
}

#[test]
fn tracks_name_the_callers() {
    let m = boot_plain();
    let s = create(&m, "tracks", 48, SLAB_STORE_USER | SLAB_RED_ZONE);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    let alloc_line = line!() - 1;
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(s, p) };
    let free_line = line!() - 1;
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { *p.add(48) = 0 };
    let (n, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_validate(s) };
    });
    assert_eq!(n, 2, "{log}");
    assert!(
        log.contains(&format!("Allocated in {}:{alloc_line}:", file!())),
        "{log}"
    );
    assert!(
        log.contains(&format!("Freed in {}:{free_line}:", file!())),
        "{log}"
    );
    assert!(log.contains(" cpu=") && log.contains(" pid="), "{log}");
    assert!(
        log.contains("Slab 0x") && log.contains(" objects=") && log.contains(" used=0 fp=0x"),
        "{log}"
    );
    assert!(log.contains("Redzone  "), "{log}");
    assert!(log.contains("Object   "), "{log}");
}

#[test]
fn a_smashed_track_is_not_followed() {
    let m = boot_plain();
    let s = create(&m, "smashed", 64, SLAB_STORE_USER | SLAB_RED_ZONE);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        // A wild write over the red zone and on into the alloc track.
        (p.add(cache(s).info_end()) as *mut usize).write(0x1234);
        *p.add(64) = 7;
    }
    let (n, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_validate(s) };
    });
    assert_eq!(n, 2, "{log}");
    assert!(
        log.contains("Allocated in 0x0000000000001234 (track corrupt)"),
        "{log}"
    );
}

#[test]
fn trace_logs_allocations_and_frees() {
    let m = boot_plain();
    let s = create(&m, "traced", 32, SLAB_TRACE);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let (_, log) = during(&m, || unsafe { m.kmem_cache_free(s, p) });
    assert!(
        log.contains(&format!("TRACE traced free 0x{:016x} inuse=1", p as usize)),
        "{log}"
    );
    assert!(log.contains("Object "), "{log}");
    let (_, log) = during(&m, || {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
    });
    assert!(log.contains("TRACE traced alloc 0x"), "{log}");
}

#[test]
fn init_on_free_wipes_debug_objects() {
    let m = boot("quiet mem=128M nr_cpus=2 kswapd=off init_on_free=1");
    let s = create(&m, "iof-u", 64, SLAB_STORE_USER | SLAB_RED_ZONE);
    let c = cache(s);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        std::ptr::write_bytes(p, 0xee, 64);
        m.kmem_cache_free(s, p);
        for i in 0..64 {
            if !(c.offset..c.offset + 8).contains(&i) {
                assert_eq!(*p.add(i), 0, "byte {i} wiped at free");
            }
        }
    }
    // SAFETY: a live cache of this machine (created and not destroyed).
    let q = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    assert_eq!(p, q);
    assert!(
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        (0..64).all(|i| unsafe { *q.add(i) } == 0),
        "the free pointer is wiped too"
    );
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(s, q) };
    // Poisoned caches keep their poison: POISON wins over init_on_free.
    let t = create(&m, "iof-p", 64, SLAB_POISON);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let r = unsafe { m.kmem_cache_alloc(t, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kmem_cache_free(t, r);
        assert_eq!(*r, POISON_FREE);
    }
    assert_eq!(
        // SAFETY: both are live caches of this machine (created above, not destroyed).
        unsafe { m.kmem_cache_validate(s) + m.kmem_cache_validate(t) },
        0,
        "{}",
        m.dmesg()
    );
}

#[test]
fn debug_caches_under_threads() {
    let m = std::sync::Arc::new(boot("quiet mem=256M nr_cpus=2 kswapd=off slub_debug=FZPU"));
    let s = m
        .kmem_cache_create("threads-fzpu", 200, 0, SlabFlags(0), None)
        .unwrap();
    let sp = s.as_ptr() as usize;
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let s = NonNull::new(sp as *mut KmemCache).unwrap();
                let mut v = Vec::new();
                for i in 0..5000usize {
                    // SAFETY: a live cache of this machine (created and not destroyed).
                    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
                    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
                    unsafe { std::ptr::write_bytes(p, (t * 31 + i) as u8, 200) };
                    v.push(p as usize);
                    if i % 2 == 1 {
                        let q = v.swap_remove((i * 7) % v.len());
                        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
                        unsafe { m.kmem_cache_free(s, q as *mut u8) };
                    }
                }
                for q in v {
                    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
                    unsafe { m.kmem_cache_free(s, q as *mut u8) };
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_validate(s) }, 0, "{}", m.dmesg());
    assert_eq!(active(&m, s), 0);
    assert_eq!(errors(&m), 0, "{}", m.dmesg());
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
}

/// `kmalloc` itself records the size asked for (it used to take only
/// `kmem_cache_alloc_trace`): a write just past it is a "kmalloc Redzone"
/// report at `kfree`, and after `ksize` the whole object is the caller's.
#[test]
fn kmalloc_records_the_size_it_was_asked_for() {
    let m = boot("quiet mem=128M nr_cpus=2 kswapd=off slub_debug=FZPU");
    let p = m.kmalloc(100, GFP_KERNEL).unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; the overflow is the behaviour under test.
    unsafe { *p.add(101) = b'x' };
    let (n, log) = during(&m, || {
        // SAFETY: as above.
        unsafe { m.kfree(p) };
    });
    assert!(n >= 1, "{log}");
    assert!(
        log.contains("BUG kmalloc-128 ") && log.contains("[kmalloc Redzone overwritten]"),
        "{log}"
    );
    let q = m.kmalloc(100, GFP_KERNEL).unwrap().as_ptr();
    assert_eq!(m.ksize(q), 128);
    // SAFETY: ksize gave the caller all 128 bytes.
    unsafe { std::ptr::write_bytes(q, 0x77, 128) };
    let (n, log) = during(&m, || {
        // SAFETY: our allocation.
        unsafe { m.kfree(q) };
    });
    assert_eq!(n, 0, "{log}");
}
