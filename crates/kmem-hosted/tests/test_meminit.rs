//! The slab part of the kernel's `lib/test_meminit.c` (`test_kmemcache`,
//! `do_kmem_cache_size`, `do_kmem_cache_size_bulk`, `test_rcu_persistent`),
//! run on machines booted with and without `init_on_alloc=1` /
//! `init_on_free=1`, and with `slub_debug=FZPU` (the debug paths).
//!
//! Invariants (mm/slab.h `slab_want_init_on_alloc/free`):
//! * a cache with a constructor always hands out constructed objects
//!   (the first 4 bytes read `0x41414141`), whatever the boot options;
//! * `__GFP_ZERO` objects of caches without a constructor are zero, bulk
//!   allocations included;
//! * with `init_on_alloc=1`, objects of caches with neither a constructor nor
//!   `SLAB_TYPESAFE_BY_RCU` nor `SLAB_POISON` are zero even without
//!   `__GFP_ZERO`: freed garbage never shows through;
//! * with `init_on_free=1`, objects of such caches are wiped when freed;
//! * `SLAB_TYPESAFE_BY_RCU` objects keep their contents across a free (a
//!   reader under RCU may still look at them), and data written to an
//!   object survives its free and reallocation at the same address.

use core::ptr::NonNull;
use kmem::slab::*;
use kmem::*;
use kmem_hosted::Machine;

const CTOR_PATTERN: u32 = 0x4141_4141;
const CTOR_BYTES: usize = 4;
const BULK_SIZE: usize = 100;
const GARBAGE: u32 = 0x09A7_BA9E;

fn boot(extra: &str) -> Machine {
    let cmdline = format!("quiet mem=256M nr_cpus=2 kswapd=off {extra}");
    Machine::boot(&cmdline).unwrap_or_else(|e| panic!("boot {cmdline:?}: {e}"))
}

fn test_ctor(p: *mut u8) {
    // SAFETY: constructors get a whole object, at least 8 bytes here.
    unsafe { (p as *mut u32).write_unaligned(CTOR_PATTERN) };
}

fn nonzero(p: *const u8, size: usize) -> usize {
    // SAFETY: an object of `size` bytes we hold.
    let b = unsafe { std::slice::from_raw_parts(p, size) };
    if b == &ZEROES[..size] {
        0
    } else {
        b.iter().filter(|&&b| b != 0).count()
    }
}

static ZEROES: [u8; 4096] = [0; 4096];

/// `fill_with_garbage_skip`.
fn fill_with_garbage_skip(p: *mut u8, size: usize, skip: usize) {
    thread_local! {
        static PATTERN: Vec<u8> = (0..4096).map(|i| GARBAGE.to_ne_bytes()[i % 4]).collect();
    }
    // SAFETY: an object of `size` bytes we hold.
    PATTERN
        // SAFETY: within memory this test allocated and still owns.
        .with(|g| unsafe { std::ptr::copy_nonoverlapping(g.as_ptr().add(skip), p.add(skip), size - skip) });
}

/// `check_buf`: what the kernel test checks of a fresh object.
fn check_buf(p: *const u8, size: usize, ctor: bool, zero: bool) -> bool {
    if ctor {
        // SAFETY: at least 8 bytes.
        unsafe { (p as *const u32).read_unaligned() != CTOR_PATTERN }
    } else if zero {
        nonzero(p, size) != 0
    } else {
        false
    }
}

/// `do_kmem_cache_size`: ten rounds of (bulk) allocation, checks, garbage,
/// free; for RCU caches the contents must survive the free. `zero_always`:
/// the boot options zero every object of a plain cache (`init_on_alloc=1`).
fn do_kmem_cache_size(
    m: &Machine,
    size: usize,
    ctor: bool,
    rcu: bool,
    zero: bool,
    zero_always: bool,
) -> bool {
    let gfp = if zero { GFP_KERNEL | __GFP_ZERO } else { GFP_KERNEL };
    let flags = if rcu { SLAB_TYPESAFE_BY_RCU } else { SlabFlags(0) };
    let c = m
        .kmem_cache_create("test_cache", size, 1, flags, ctor.then_some(test_ctor as Ctor))
        .expect("cache");
    // init_on_alloc zeroes caches without ctor, RCU or poison.
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let plain = !ctor && !rcu && !unsafe { c.as_ref() }.flags.intersects(SLAB_POISON);
    let want_zero = zero || (zero_always && plain);
    let mut fail = false;
    for _ in 0..10 {
        if !rcu && !ctor {
            let mut bulk = [std::ptr::null_mut(); BULK_SIZE];
            // SAFETY: a live cache of this machine (created and not destroyed).
            let n = unsafe { m.kmem_cache_alloc_bulk(c, gfp, &mut bulk) };
            if n != BULK_SIZE {
                fail = true;
            } else {
                for &p in &bulk {
                    fail |= check_buf(p, size, ctor, want_zero);
                }
                // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
                unsafe { m.kmem_cache_free_bulk(c, &bulk) };
            }
        }
        // SAFETY: a live cache of this machine (created and not destroyed).
        let buf = unsafe { m.kmem_cache_alloc(c, gfp) }.expect("alloc").as_ptr();
        fail |= check_buf(buf, size, ctor, want_zero);
        fill_with_garbage_skip(buf, size, if ctor { CTOR_BYTES } else { 0 });
        if !rcu {
            // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
            unsafe { m.kmem_cache_free(c, buf) };
            continue;
        }
        // An RCU reader may still look at a freed object: it is not wiped.
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        let copy = unsafe { std::slice::from_raw_parts(buf, size) }.to_vec();
        // SAFETY: allocated from this machine above, freed once and not used afterwards.
        unsafe { m.kmem_cache_free(c, buf) };
        fail |= check_buf(buf, size, ctor, false);
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        fail |= unsafe { std::slice::from_raw_parts(buf, size) } != &copy[..];
    }
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(c) };
    fail
}

/// `do_kmem_cache_size_bulk`: objects from bulk allocations are zero
/// (`__GFP_ZERO`, or every allocation under `init_on_alloc=1`).
fn do_kmem_cache_size_bulk(m: &Machine, size: usize, gfp: Gfp) -> bool {
    let c = m
        .kmem_cache_create("test_cache", size, size, SlabFlags(0), None)
        .expect("cache");
    let mut fail = false;
    let mut objects = [std::ptr::null_mut(); 10];
    for _ in 0..1024 {
        // SAFETY: a live cache of this machine (created and not destroyed).
        let n = unsafe { m.kmem_cache_alloc_bulk(c, gfp, &mut objects) };
        for &p in &objects[..n] {
            fail |= nonzero(p, size) != 0;
            fill_with_garbage_skip(p, size, 0);
        }
        if n > 0 {
            // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
            unsafe { m.kmem_cache_free_bulk(c, &objects[..n]) };
        }
        if fail {
            break;
        }
    }
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(c) };
    fail
}

/// `test_kmemcache`: sizes 8..4096 x {ctor, rcu, zero} (no ctor with zero).
fn test_kmemcache(m: &Machine, zero_always: bool) {
    let mut failures = Vec::new();
    for i in 0..10 {
        let size = 8 << i;
        for flags in 0..8 {
            let (ctor, rcu, zero) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
            if ctor && zero {
                continue;
            }
            if do_kmem_cache_size(m, size, ctor, rcu, zero, zero_always) {
                failures.push(format!("size {size} ctor {ctor} rcu {rcu} zero {zero}"));
            }
        }
        if do_kmem_cache_size_bulk(m, size, GFP_KERNEL | __GFP_ZERO) {
            failures.push(format!("bulk size {size} __GFP_ZERO"));
        }
        if zero_always && do_kmem_cache_size_bulk(m, size, GFP_KERNEL) {
            failures.push(format!("bulk size {size} init_on_alloc"));
        }
    }
    assert!(
        failures.is_empty(),
        "failures: {} :\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `test_rcu_persistent`: data written to an RCU object survives its free
/// and reallocation at the same address.
fn test_rcu_persistent(m: &Machine) {
    let c = m
        .kmem_cache_create("test_cache", 64, 0, SLAB_TYPESAFE_BY_RCU, None)
        .expect("cache");
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(c, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { std::ptr::write_bytes(p, 0x2a, 64) };
    // SAFETY: allocated from this machine above, freed once and not used afterwards.
    unsafe { m.kmem_cache_free(c, p) };
    let mut held = Vec::new();
    let mut found = false;
    for _ in 0..1024 {
        // SAFETY: a live cache of this machine (created and not destroyed).
        let q = unsafe { m.kmem_cache_alloc(c, GFP_KERNEL) }.unwrap().as_ptr();
        if q == p {
            found = true;
            assert_eq!(nonzero(q, 64), 64);
            assert!(
                // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
                (0..64).all(|i| unsafe { *q.add(i) } == 0x2a),
                "RCU data survives reuse"
            );
            held.push(q);
            break;
        }
        held.push(q);
    }
    assert!(found, "the object came back within 1024 allocations");
    for q in held {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kmem_cache_free(c, q) };
    }
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(c) };
}

/// The test_kvmalloc idea for one cache: garbage left in a freed object
/// must not show through in the next allocation.
fn freed_garbage_does_not_leak(m: &Machine, s: NonNull<KmemCache>, size: usize) {
    for round in 0..64 {
        let v: Vec<_> = (0..16)
            // SAFETY: a live cache of this machine (created and not destroyed).
            .map(|_| unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr())
            .collect();
        for &p in &v {
            assert_eq!(nonzero(p, size), 0, "round {round}: freed garbage shows through");
            fill_with_garbage_skip(p, size, 0);
        }
        for p in v {
            // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
            unsafe { m.kmem_cache_free(s, p) };
        }
    }
}

fn no_slab_errors(m: &Machine) {
    assert_eq!(
        m.slab.errors.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "{}",
        m.dmesg()
    );
}

#[test]
fn kmemcache_default_boot() {
    let m = boot("");
    test_kmemcache(&m, false);
    test_rcu_persistent(&m);
    no_slab_errors(&m);
}

#[test]
fn kmemcache_debug_caches() {
    let m = boot("slub_debug=FZPU");
    test_kmemcache(&m, false);
    test_rcu_persistent(&m);
    no_slab_errors(&m);
}

#[test]
fn kmemcache_init_on_alloc_debug_caches() {
    // Z and U only: POISON would take precedence over init_on_alloc.
    let m = boot("init_on_alloc=1 slub_debug=FZU");
    test_kmemcache(&m, true);
    test_rcu_persistent(&m);
    let s = m
        .kmem_cache_create("leak-check", 200, 0, SlabFlags(0), None)
        .unwrap();
    freed_garbage_does_not_leak(&m, s, 200);
    no_slab_errors(&m);
}

#[test]
fn kmemcache_init_on_free_debug_caches() {
    let m = boot("init_on_free=1 slub_debug=FZU");
    // init_on_free wipes at free, so plain objects come back zero.
    test_kmemcache(&m, true);
    test_rcu_persistent(&m);
    let s = m
        .kmem_cache_create("leak-check", 200, 0, SlabFlags(0), None)
        .unwrap();
    freed_garbage_does_not_leak(&m, s, 200);
    no_slab_errors(&m);
}

#[test]
fn ctor_objects_stay_constructed_under_every_option() {
    for extra in [
        "",
        "init_on_alloc=1",
        "init_on_free=1",
        "slub_debug=FZPU",
        "init_on_alloc=1 init_on_free=1 slub_debug=FZU",
    ] {
        let m = boot(extra);
        let c = m
            .kmem_cache_create("ctor_cache", 96, 0, SlabFlags(0), Some(test_ctor))
            .unwrap();
        for _ in 0..8 {
            let v: Vec<_> = (0..50)
                // SAFETY: a live cache of this machine (created and not destroyed).
                .map(|_| unsafe { m.kmem_cache_alloc(c, GFP_KERNEL) }.unwrap().as_ptr())
                .collect();
            for &p in &v {
                // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
                assert_eq!(unsafe { (p as *const u32).read() }, CTOR_PATTERN, "{extra}");
                fill_with_garbage_skip(p, 96, CTOR_BYTES);
            }
            for p in v {
                // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
                unsafe { m.kmem_cache_free(c, p) };
            }
        }
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kmem_cache_destroy(c) };
        no_slab_errors(&m);
    }
}

/// `init_on_alloc=1` on the lock-free fast path of ordinary caches.
#[test]
fn kmemcache_init_on_alloc_plain_caches() {
    let m = boot("init_on_alloc=1");
    test_kmemcache(&m, true);
    let s = m
        .kmem_cache_create("leak-check", 200, 0, SlabFlags(0), None)
        .unwrap();
    freed_garbage_does_not_leak(&m, s, 200);
}

/// `init_on_free=1` on the free fast path of ordinary caches.
#[test]
fn kmemcache_init_on_free_plain_caches() {
    let m = boot("init_on_free=1");
    test_kmemcache(&m, true);
    let s = m
        .kmem_cache_create("leak-check", 200, 0, SlabFlags(0), None)
        .unwrap();
    freed_garbage_does_not_leak(&m, s, 200);
}
