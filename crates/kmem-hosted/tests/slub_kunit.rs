//! The kernel's SLUB KUnit suite (`lib/slub_kunit.c`, suite `slub_test`),
//! case by case, with the kernel's exact error counts.
//!
//! The kernel counts reports in the KUnit resource `slab_errors` instead of
//! printing them: +1 per `slab_err`, `object_err`, `check_bytes_and_report`
//! and `slab_fix`, so one corruption (report + fix) counts 2. kmem prints the
//! reports and counts them in `slab.errors`; each test boots its own machine
//! and looks at the difference.

use core::ptr::NonNull;
use kmem::slab::*;
use kmem::*;
use kmem_hosted::Machine;
use std::sync::atomic::Ordering::Relaxed;

fn boot() -> Machine {
    Machine::boot("quiet mem=128M nr_cpus=2 kswapd=off").expect("boot")
}

/// `test_kmem_cache_create`: the test caches ignore `slub_debug=`.
fn create(m: &Machine, name: &str, size: usize, flags: SlabFlags) -> NonNull<KmemCache> {
    m.kmem_cache_create(name, size, 0, flags | SLAB_NO_USER_FLAGS | SLAB_SKIP_KFENCE, None)
        .expect("cache")
}

fn errors(m: &Machine) -> usize {
    m.slab.errors.load(Relaxed)
}

/// `validate_slab_cache(s)`, returning the errors it added, with the log of
/// what it printed for the failure message.
fn validate(m: &Machine, s: NonNull<KmemCache>) -> (usize, String) {
    let since = m.dmesg_len();
    let before = errors(m);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let n = unsafe { m.kmem_cache_validate(s) };
    assert_eq!(n, errors(m) - before);
    (n, m.dmesg_since(since))
}

#[test]
fn test_clobber_zone() {
    let m = boot();
    let s = create(&m, "TestSlub_RZ_alloc", 64, SLAB_RED_ZONE);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { *p.add(64) = 0x12 };
    let (n, log) = validate(&m, s);
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("[Right Redzone overwritten]"), "{log}");
    assert!(log.contains("First byte 0x12 instead of 0xcc"), "{log}");
    assert!(
        log.contains("FIX TestSlub_RZ_alloc: Restoring Right Redzone"),
        "{log}"
    );
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert_eq!(unsafe { *p.add(64) }, 0xcc, "the red zone was restored");
    // SAFETY: within memory this test allocated and still owns.
    unsafe {
        m.kmem_cache_free(s, p);
        m.kmem_cache_destroy(s);
    }
    assert_eq!(errors(&m), 2, "{}", m.dmesg());
}

#[test]
fn test_next_pointer() {
    let m = boot();
    let s = create(&m, "TestSlub_next_ptr_free", 64, SLAB_POISON);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(s, p) };
    // SAFETY: a live descriptor or cache of this machine.
    let off = unsafe { s.as_ref().offset };
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let ptr_addr = unsafe { p.add(off) as *mut usize };
    // SAFETY: within memory this test allocated and still owns.
    let tmp = unsafe { ptr_addr.read() };
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { *p.add(off) = !*p.add(off) };

    // One for the corrupted freechain, one for the wrong count of objects in
    // use, and the third for fixing the count.
    let (n, log) = validate(&m, s);
    assert_eq!(n, 3, "{log}");
    assert!(log.contains("Freechain corrupt"), "{log}");
    assert!(
        log.contains("Wrong object count. Counter is 0 but counted were"),
        "{log}"
    );
    assert!(log.contains("Object count adjusted"), "{log}");

    // Repair the pointer: the count is wrong the other way now.
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { ptr_addr.write(tmp) };
    let (n, log) = validate(&m, s);
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("but counted were 0"), "{log}");

    // The previous validation repaired the count.
    let (n, log) = validate(&m, s);
    assert_eq!(n, 0, "{log}");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
    assert_eq!(errors(&m), 5, "{}", m.dmesg());
}

#[test]
fn test_first_word() {
    let m = boot();
    let s = create(&m, "TestSlub_1th_word_free", 64, SLAB_POISON);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kmem_cache_free(s, p);
        *p = 0x78;
    }
    let (n, log) = validate(&m, s);
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("[Poison overwritten]"), "{log}");
    assert!(
        log.contains("@offset=0. First byte 0x78 instead of 0x6b"),
        "{log}"
    );
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
    assert_eq!(errors(&m), 2);
}

#[test]
fn test_clobber_50th_byte() {
    let m = boot();
    let s = create(&m, "TestSlub_50th_word_free", 64, SLAB_POISON);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kmem_cache_free(s, p);
        *p.add(50) = 0x9a;
    }
    let (n, log) = validate(&m, s);
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("First byte 0x9a instead of 0x6b"), "{log}");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
    assert_eq!(errors(&m), 2);
}

#[test]
fn test_clobber_redzone_free() {
    let m = boot();
    let s = create(&m, "TestSlub_RZ_free", 64, SLAB_RED_ZONE);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kmem_cache_free(s, p);
        *p.add(64) = 0xab;
    }
    let (n, log) = validate(&m, s);
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("First byte 0xab instead of 0xbb"), "{log}");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
    assert_eq!(errors(&m), 2);
}

#[test]
fn test_kmalloc_redzone_access() {
    let m = boot();
    let s = create(
        &m,
        "TestSlub_RZ_kmalloc",
        32,
        SLAB_KMALLOC | SLAB_STORE_USER | SLAB_RED_ZONE,
    );
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc_trace(s, GFP_KERNEL, 18) }
        .unwrap()
        .as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert_eq!(unsafe { m.kmem_cache_orig_size(s.as_ref(), p) }, 18);
    // The slack after the 18 requested bytes is red zone.
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert!((18..32).all(|i| unsafe { *p.add(i) } == 0xcc));
    // SAFETY: within memory this test allocated and still owns.
    unsafe {
        *p.add(18) = 0xab;
        *p.add(19) = 0xab;
    }
    let (n, log) = validate(&m, s);
    assert_eq!(n, 2, "{log}");
    assert!(log.contains("[kmalloc Redzone overwritten]"), "{log}");
    assert!(log.contains("@offset="), "{log}");
    assert!(log.contains("Allocated in "), "the alloc track is printed: {log}");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kmem_cache_free(s, p);
        m.kmem_cache_destroy(s);
    }
    assert_eq!(errors(&m), 2, "{}", m.dmesg());
}

#[test]
fn test_kmalloc_redzone_zeroed_and_full_size() {
    // __GFP_ZERO zeroes only what was asked for; the slack stays red zone.
    let m = boot();
    let s = create(
        &m,
        "TestSlub_RZ_kmalloc_zero",
        64,
        SLAB_KMALLOC | SLAB_STORE_USER | SLAB_RED_ZONE | SLAB_POISON,
    );
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc_trace(s, GFP_KERNEL | __GFP_ZERO, 40) }
        .unwrap()
        .as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert!((0..40).all(|i| unsafe { *p.add(i) } == 0));
    // SAFETY: within memory this test allocated and still owns.
    assert!((40..64).all(|i| unsafe { *p.add(i) } == 0xcc));
    // SAFETY: a live cache of this machine (created and not destroyed).
    let q = unsafe { m.kmem_cache_alloc_trace(s, GFP_KERNEL, 64) }
        .unwrap()
        .as_ptr();
    // SAFETY: a live cache of this machine (created and not destroyed).
    let r = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert_eq!(unsafe { m.kmem_cache_orig_size(s.as_ref(), r) }, 64);
    let (n, log) = validate(&m, s);
    assert_eq!(n, 0, "{log}");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe {
        m.kmem_cache_free(s, p);
        m.kmem_cache_free(s, q);
        m.kmem_cache_free(s, r);
    }
    let (n, log) = validate(&m, s);
    assert_eq!(n, 0, "{log}");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
    assert_eq!(errors(&m), 0, "{}", m.dmesg());
}

#[test]
fn test_leak_destroy() {
    let m = boot();
    let s = create(&m, "TestSlub_leak_destroy", 64, SLAB_NO_MERGE);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let _leak = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
    let since = m.dmesg_len();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
    let log = m.dmesg_since(since);
    // The "Objects remaining" header and the one leaked object.
    assert_eq!(errors(&m), 2, "{log}");
    assert!(
        log.contains("Objects remaining on __kmem_cache_shutdown()"),
        "{log}"
    );
}

#[test]
fn test_leak_destroy_store_user_prints_tracks() {
    let m = boot();
    let s = create(&m, "TestSlub_leak_destroy_U", 64, SLAB_NO_MERGE | SLAB_STORE_USER);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let _a = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
    // SAFETY: a live cache of this machine (created and not destroyed).
    let _b = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
    let since = m.dmesg_len();
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
    let log = m.dmesg_since(since);
    assert_eq!(errors(&m), 3, "{log}");
    assert_eq!(log.matches("Allocated in ").count(), 2, "{log}");
    assert!(log.contains("slub_kunit.rs:"), "the caller's location: {log}");
}
