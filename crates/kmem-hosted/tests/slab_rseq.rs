//! The cpu freelist fast paths in both modes: restartable sequences (rseq,
//! the default where the host allows it) and `cmpxchg16b` (`kmem.rseq=off`).
//! Real threads allocate, free objects other threads allocated, and force
//! the slow paths that take a cpu structure from another CPU (shrinking
//! flushes every CPU's cpu slab and sheaf) while the fast paths run, through
//! `kmem_cache_alloc`/`kmem_cache_free` and through `kmalloc`/`kfree`.

mod common;

use common::{boot, rseq_cmdline};
use kmem::slab::*;
use kmem::*;
use kmem_hosted::Machine;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

#[test]
fn mode_is_reported_and_can_be_turned_off() {
    let m = boot(&rseq_cmdline(""));
    let log = m.dmesg();
    let line = if m.slab_fast_paths_rseq() {
        "SLUB: cpu freelist fast paths: restartable sequences"
    } else {
        "SLUB: cpu freelist fast paths: cmpxchg16b"
    };
    assert!(log.contains(line), "{log}");
    if kmem_hosted::platform::rseq_available() {
        assert!(
            m.slab_fast_paths_rseq(),
            "glibc registered rseq, yet the machine does not use it\n{log}"
        );
    }
    let off = boot(&rseq_cmdline("kmem.rseq=off"));
    assert!(!off.slab_fast_paths_rseq());
    assert!(off.dmesg().contains("SLUB: cpu freelist fast paths: cmpxchg16b"));
}

/// A pointer that crosses threads.
#[derive(Clone, Copy)]
struct Obj(*mut u8);
// SAFETY: ownership of the object moves with the value.
unsafe impl Send for Obj {}

/// Which allocator the stress runs: a cache of its own through
/// `kmem_cache_alloc`/`kmem_cache_free` (the cpu freelist first), or
/// `kmalloc-96` through `kmalloc`/`kfree` (the sheaf first).
#[derive(Clone, Copy, PartialEq)]
enum Api {
    Cache,
    Kmalloc,
}

fn stress(m: &Machine) {
    stress_api(m, Api::Cache);
}

fn stress_api(m: &Machine, api: Api) {
    const SIZE: usize = 96;
    const ROUNDS: usize = 200_000;
    let s = match api {
        Api::Cache => m
            .kmem_cache_create("rseq_stress", SIZE, 0, SlabFlags(0), None)
            .expect("cache"),
        Api::Kmalloc => m.kmalloc_slab(SIZE, GFP_KERNEL).expect("kmalloc-96"),
    };
    let start = m.nr_free_pages();
    let live = Mutex::new(HashSet::<usize>::new());
    let stop = AtomicBool::new(false);
    let sp = s.as_ptr() as usize;
    std::thread::scope(|sc| {
        // A shrinker thread: flushes every CPU's cpu slab, from whatever CPU
        // it runs on, while the others allocate and free.
        sc.spawn(|| {
            let s = core::ptr::NonNull::new(sp as *mut KmemCache).unwrap();
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: a live cache of this machine (created and not destroyed).
                unsafe { m.kmem_cache_shrink(s) };
                std::thread::yield_now();
            }
        });
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = mpsc::channel::<Obj>();
            senders.push(tx);
            receivers.push(rx);
        }
        let workers: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .map(|(t, rx)| {
                let next = senders[(t + 1) % 4].clone();
                let live = &live;
                sc.spawn(move || {
                    let s = core::ptr::NonNull::new(sp as *mut KmemCache).unwrap();
                    let mut mine = Vec::new();
                    for i in 0..ROUNDS {
                        let o = match api {
                            // SAFETY: a live cache of this machine (created and not destroyed).
                            Api::Cache => unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) },
                            Api::Kmalloc => m.kmalloc(SIZE, GFP_KERNEL),
                        }
                        .expect("alloc")
                        .as_ptr();
                        assert!(
                            live.lock().unwrap().insert(o as usize),
                            "object {o:p} handed out twice"
                        );
                        // SAFETY: our object of SIZE bytes.
                        unsafe { core::ptr::write_bytes(o, t as u8 + 1, SIZE) };
                        if i % 3 == 0 {
                            next.send(Obj(o)).unwrap();
                        } else {
                            mine.push(o);
                        }
                        if mine.len() > 64 || i % 7 == 0 {
                            while let Some(o) = mine.pop() {
                                free(m, api, s, live, o, t as u8 + 1);
                            }
                        }
                        while let Ok(Obj(o)) = rx.try_recv() {
                            free(m, api, s, live, o, ((t + 3) % 4) as u8 + 1);
                        }
                    }
                    for o in mine {
                        free(m, api, s, live, o, t as u8 + 1);
                    }
                    drop(next);
                    rx
                })
            })
            .collect();
        drop(senders);
        let rxs: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        for (t, rx) in rxs.into_iter().enumerate() {
            while let Ok(Obj(o)) = rx.try_recv() {
                free(m, api, s, &live, o, ((t + 3) % 4) as u8 + 1);
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(live.lock().unwrap().is_empty());
    assert_eq!(m.slab.errors.load(Ordering::Relaxed), 0, "{}", m.dmesg());
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0, "every object was freed");
    if api == Api::Cache {
        // SAFETY: no objects left.
        unsafe { m.kmem_cache_destroy(s) };
    }
    m.kmem_cache_shrink_all();
    m.drain_all_pages();
    assert!(m.nr_free_pages() >= start, "{} < {start}", m.nr_free_pages());
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

fn free(
    m: &Machine,
    api: Api,
    s: core::ptr::NonNull<KmemCache>,
    live: &Mutex<HashSet<usize>>,
    o: *mut u8,
    tag: u8,
) {
    // SAFETY: our object of 96 bytes.
    let bytes = unsafe { core::slice::from_raw_parts(o, 96) };
    assert!(
        bytes.iter().all(|&b| b == tag),
        "object {o:p} was overwritten while allocated"
    );
    assert!(live.lock().unwrap().remove(&(o as usize)));
    // SAFETY: allocated from `s` (by `kmalloc` for Api::Kmalloc), freed once.
    unsafe {
        match api {
            Api::Cache => m.kmem_cache_free(s, o),
            Api::Kmalloc => m.kfree(o),
        }
    }
}

#[test]
fn threads_and_cross_cpu_flushes_rseq() {
    let m = boot(&rseq_cmdline(""));
    stress(&m);
}

#[test]
fn threads_and_cross_cpu_flushes_kmalloc_sheaf_first() {
    let m = boot(&rseq_cmdline(""));
    stress_api(&m, Api::Kmalloc);
}

#[test]
fn threads_and_cross_cpu_flushes_cmpxchg() {
    let m = boot(&rseq_cmdline("kmem.rseq=off"));
    assert!(!m.slab_fast_paths_rseq());
    stress(&m);
}

#[test]
fn double_free_of_the_head_is_caught_in_both_modes() {
    for extra in ["", "kmem.rseq=off"] {
        let m = boot(&rseq_cmdline(extra));
        let s = m.kmem_cache_create("df", 64, 0, SlabFlags(0), None).unwrap();
        let before = m.slab.errors.load(Ordering::Relaxed);
        // Pin the thread to one host CPU so both frees see the same cpu slab.
        let _pin = common::pin_to(0);
        // SAFETY: a live cache of this machine (created and not destroyed).
        let o = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
        // SAFETY: allocated above; the second free is the misuse under test.
        unsafe {
            m.kmem_cache_free(s, o);
            m.kmem_cache_free(s, o);
        }
        assert!(
            m.slab.errors.load(Ordering::Relaxed) > before || m.dmesg().contains("double free"),
            "{extra}: {}",
            m.dmesg()
        );
        // SAFETY: a live cache of this machine (created and not destroyed).
        let a = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
        // SAFETY: a live cache of this machine (created and not destroyed).
        let b = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
        assert_ne!(a, b, "{extra}: the freelist became a cycle");
        // SAFETY: ours.
        unsafe {
            m.kmem_cache_free(s, a);
            m.kmem_cache_free(s, b);
        }
    }
}

/// A machine with fewer CPUs than the host cannot use rseq mode (two host
/// CPUs would share one machine CPU's freelist): its sequences fall back to
/// the CAS fast paths, and threads on host CPUs beyond the machine's read
/// cpu array entries that are stopped for good. Threads on two host CPUs then
/// share one cpu structure at the same moment, which is how this test found
/// the install race of `cpu_slab_install` (a retried swap left the new chain's
/// tail linked to an object a racing allocation had taken: handed out twice).
#[test]
fn threads_on_a_machine_smaller_than_the_host() {
    let m = boot("quiet mem=256M nr_cpus=1");
    if kmem_hosted::platform::host_cpu_ids() > 1 {
        assert!(!m.slab_fast_paths_rseq(), "{}", m.dmesg());
    }
    stress(&m);
}

/// Runs in a child process in which glibc registers no rseq area (see
/// below): every thread's area reads CPU id -2, so the sequences index the
/// stopped entries before CPU 0 and fall back to the CAS fast paths.
#[test]
fn unregistered_rseq_child() {
    if std::env::var_os("KMEM_SLAB_RSEQ_CHILD").is_none() {
        return;
    }
    assert!(!kmem_hosted::platform::rseq_available());
    let m = boot(&rseq_cmdline(""));
    assert!(!m.slab_fast_paths_rseq(), "{}", m.dmesg());
    stress(&m);
}

#[test]
fn threads_without_a_registered_rseq_area() {
    common::run_without_rseq("unregistered_rseq_child", "KMEM_SLAB_RSEQ_CHILD");
}

/// `kfree`'s inline check (`Kmem::kfree_fast`) takes every object of a
/// slab of the preferred order, also where that order holds more objects
/// than the fallback order's would: a 640-byte cache has slabs of order 1
/// or more and order-0 fallback slabs of 6 objects, and it used to send
/// every object past the sixth of a slab to the out-of-line check.
#[test]
fn kfree_checks_every_object_of_a_preferred_order_slab_inline() {
    let m = boot(&rseq_cmdline("kmem.sheaves=off"));
    let s = m
        .kmem_cache_create("odd-640", 640, 0, SlabFlags(0), None)
        .unwrap();
    // SAFETY: a live cache.
    let (oo, min) = unsafe { (s.as_ref().oo, s.as_ref().min) };
    assert!(oo.order > min.order && oo.objects > min.objects, "{oo:?} {min:?}");
    let objs: Vec<_> = (0..oo.objects * 2)
        // SAFETY: a live cache of this machine (created and not destroyed).
        .map(|_| unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr())
        .collect();
    let rseq_area = m.platform.rseq_offset();
    let mut declined = 0;
    for &p in &objs {
        let page = m.virt_to_page(p).unwrap().as_ptr();
        // SAFETY: an object of `s` we own; a declined free did nothing.
        match unsafe { Kmem::<kmem_hosted::HostedPlatform>::kfree_fast(p, page, rseq_area) } {
            Err(kmem::kmalloc::KfreeDeclined::Checks) => {
                declined += 1;
                // SAFETY: as above.
                unsafe { m.kfree(p) };
            }
            Err(why) => {
                // SAFETY: as above; the slab path declined, the checks passed.
                unsafe { m.kfree_finish(p, why) }
            }
            Ok(()) => {}
        }
    }
    assert_eq!(
        declined,
        0,
        "{declined} of {} frees took the out-of-line check",
        objs.len()
    );
    // SAFETY: every object was freed; the cache is not used again.
    unsafe { m.kmem_cache_destroy(s) };
}
