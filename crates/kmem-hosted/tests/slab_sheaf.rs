//! Sheaves (`slab/sheaf.rs`): per-CPU arrays of free objects in front of
//! the slabs, for frees the cpu freelist declines. Every test pins its
//! thread, so "this CPU's sheaf" stays one sheaf.

mod common;

use common::*;
use core::ptr::NonNull;
use kmem::slab::*;
use kmem::*;
use kmem_hosted::Machine;
use std::sync::atomic::Ordering;

const CMDLINE: &str = "quiet mem=256M nr_cpus=2";

/// Objects in the sheaves of every CPU of `s`.
fn in_sheaves(m: &Machine, s: NonNull<KmemCache>) -> usize {
    (0..m.nr_cpu_ids())
        .map(|cpu| {
            // An installed sheaf's size is its CPU's, and nothing else runs
            // on this cache.
            // SAFETY: cpu < nr_cpus; a live cache.
            unsafe { s.as_ref().cpu(cpu) }.sheaf_size()
        })
        .sum()
}

fn sheaves_installed(m: &Machine, s: NonNull<KmemCache>) -> usize {
    let installed = |cpu| {
        // SAFETY: cpu < nr_cpus; a live cache.
        let c = unsafe { s.as_ref().cpu(cpu) };
        c.sheaf.load(Ordering::Acquire) != kmem::slab::sheaf::no_sheaf()
    };
    (0..m.nr_cpu_ids()).filter(|&cpu| installed(cpu)).count()
}

fn active(m: &Machine, s: NonNull<KmemCache>) -> usize {
    // SAFETY: a live cache.
    m.cache_counts(unsafe { s.as_ref() }).0
}

fn per_slab(s: NonNull<KmemCache>) -> usize {
    // SAFETY: a live cache.
    unsafe { s.as_ref() }.oo.objects as usize
}

/// `n` objects of `s`.
fn alloc_n(m: &Machine, s: NonNull<KmemCache>, n: usize) -> Vec<*mut u8> {
    (0..n)
        // SAFETY: a live cache of this machine (created and not destroyed).
        .map(|_| unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr())
        .collect()
}

/// Free objects of `s`, in order.
fn free_all(m: &Machine, s: NonNull<KmemCache>, objs: &[*mut u8]) {
    for &o in objs {
        // SAFETY: the caller's objects of `s`, each freed once.
        unsafe { m.kmem_cache_free(s, o) };
    }
}

/// Destroy `s` (every object freed) and check that nothing remained.
fn destroy_clean(m: &Machine, s: NonNull<KmemCache>) {
    let since = m.dmesg_len();
    // SAFETY: the caller freed every object and uses `s` no more.
    unsafe { m.kmem_cache_destroy(s) };
    assert!(
        !m.dmesg_since(since).contains("Objects remaining"),
        "{}",
        m.dmesg()
    );
}

/// A machine in rseq mode, or None (sheaves need the restartable sequences;
/// then the cache must have none).
fn boot_rseq(cmdline: &str) -> Option<Machine> {
    let m = boot(cmdline);
    if m.slab_fast_paths_rseq() {
        Some(m)
    } else {
        let s = m.kmem_cache_create("no-rseq", 64, 0, SlabFlags(0), None).unwrap();
        // SAFETY: just created.
        assert_eq!(unsafe { s.as_ref() }.sheaf_capacity, 0);
        None
    }
}

/// Objects of an older slab, freed, wait in the sheaf; they count as free,
/// come back newest first, and `kmem_cache_shrink` gives them and every slab
/// back (and the sheaf's page).
#[test]
fn frees_outside_the_cpu_slab_wait_in_the_sheaf() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let s = m
        .kmem_cache_create("sheaf-64", 64, 0, SlabFlags(0), None)
        .unwrap();
    // SAFETY: just created.
    assert_eq!(unsafe { s.as_ref() }.sheaf_capacity, 120);
    let _pin = pin_to_current_cpu();
    let n = per_slab(s);
    let objs = alloc_n(&m, s, 2 * n);
    assert_eq!(in_sheaves(&m, s), 0, "nothing freed yet");
    // The first slab is no longer the cpu slab: its objects go to the sheaf.
    free_all(&m, s, &objs[..n]);
    assert_eq!(in_sheaves(&m, s), n);
    assert_eq!(active(&m, s), n, "objects in a sheaf are free");
    // They come back last freed first. Only the cpu slab's objects are
    // allocated, so its freelist is empty and the allocation pops the sheaf.
    let again = alloc_n(&m, s, 1);
    assert_eq!(again[0], objs[n - 1]);
    assert_eq!(in_sheaves(&m, s), n - 1);
    free_all(&m, s, &again);
    free_all(&m, s, &objs[n..]);
    assert_eq!(active(&m, s), 0);
    assert_eq!(
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_shrink(s) },
        0,
        "shrink empties the sheaves, then the slabs"
    );
    assert_eq!((in_sheaves(&m, s), sheaves_installed(&m, s)), (0, 0));
    destroy_clean(&m, s);
}

/// `kmem_cache_free` of objects outside the cpu slab: into the sheaf
/// whether `kfree`'s inline check knows the object (64 and 96 bytes, one-page
/// slabs) or the slab is looked up (700 bytes, larger slabs); an object of
/// another cache is reported and freed into its own, a misaligned pointer
/// outside the cpu slab is reported and frees nothing.
#[test]
fn kmem_cache_free_outside_the_cpu_slab_checks_the_object() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let _pin = pin_to_current_cpu();
    let caches: Vec<_> = [64, 96, 700]
        .iter()
        .map(|&size| {
            m.kmem_cache_create(&format!("sheaf-check-{size}"), size, 0, SLAB_NO_MERGE, None)
                .unwrap()
        })
        .collect();
    // The first slab's objects but its last are freed; the second slab is
    // the cpu slab.
    let mut live = Vec::new();
    for &s in &caches {
        let n = per_slab(s);
        let objs = alloc_n(&m, s, 2 * n);
        free_all(&m, s, &objs[..n - 1]);
        assert_eq!(in_sheaves(&m, s), n - 1, "{}", per_slab(s));
        live.push(objs[n - 1..].to_vec());
    }
    // A 96-byte object freed to the 64-byte cache, and a 64-byte one to
    // the 700-byte cache: reported, and freed into their own caches.
    let (p96, p64) = (live[1].pop().unwrap(), live[0].pop().unwrap());
    // SAFETY: the wrong caches are the misuse under test; each object is freed once.
    unsafe {
        m.kmem_cache_free(caches[0], p96);
        m.kmem_cache_free(caches[2], p64);
    }
    assert_eq!(
        m.dmesg()
            .matches("Wrong slab cache. sheaf-check-64 but object is from sheaf-check-96")
            .count(),
        1,
        "{}",
        m.dmesg()
    );
    assert!(m
        .dmesg()
        .contains("Wrong slab cache. sheaf-check-700 but object is from sheaf-check-64"));
    // A pointer into the middle of a 96-byte object outside the cpu slab
    // (inside it too: `misuse.rs`): reported, nothing freed.
    let inside = live[1][0].wrapping_add(8);
    let errors = m.slab.errors.load(Ordering::Relaxed);
    // SAFETY: the misaligned pointer is the misuse under test.
    unsafe { m.kmem_cache_free(caches[1], inside) };
    assert_eq!(m.slab.errors.load(Ordering::Relaxed), errors + 1);
    let bad = format!(
        "kmem_cache_free: Invalid object pointer 0x{:016x}",
        inside as usize
    );
    assert!(m.dmesg().contains(&bad), "{}", m.dmesg());
    assert_eq!(
        active(&m, caches[1]),
        live[1].len(),
        "nothing freed by the misaligned pointer"
    );
    for (&s, objs) in caches.iter().zip(&live) {
        free_all(&m, s, objs);
        assert_eq!(active(&m, s), 0);
        // SAFETY: a live cache of this machine (created and not destroyed).
        assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0);
        destroy_clean(&m, s);
    }
}

/// Full sheaves in node 0's barn of `s`.
fn barn_full(s: NonNull<KmemCache>) -> usize {
    // SAFETY: a live cache.
    unsafe { s.as_ref() }.node(0).barn_full.load(Ordering::Relaxed)
}

/// A full sheaf goes to the node's barn and the CPU continues on an empty
/// one; an allocation that empties the sheaf takes the full one back. The
/// objects stay free in the counts the whole way, nothing touches a slab,
/// and shrink gives everything back.
#[test]
fn a_full_sheaf_goes_to_the_barn_and_comes_back() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let s = m
        .kmem_cache_create("sheaf-barn", 64, 0, SlabFlags(0), None)
        .unwrap();
    let _pin = pin_to_current_cpu();
    // SAFETY: a live cache.
    let cap = unsafe { s.as_ref() }.sheaf_capacity;
    let n = per_slab(s);
    // Whole slabs, so the cpu freelist is empty at the end.
    let objs = alloc_n(&m, s, ((2 * cap + 1).div_ceil(n) + 1) * n);
    free_all(&m, s, &objs[..=2 * cap]);
    // Each full sheaf goes to the barn but for its newest object, which
    // the CPU's next sheaf starts with: A = objs[..cap - 1], B =
    // objs[cap - 1..2 * cap - 2], and the CPU's sheaf holds the last three.
    assert_eq!(barn_full(s), 2, "two full sheaves in the barn");
    assert_eq!(in_sheaves(&m, s), 3, "the CPU continues on a new sheaf");
    assert_eq!(active(&m, s), objs.len() - (2 * cap + 1), "barn objects are free");
    // They come back newest first: the CPU's sheaf but for its last object
    // (the allocation sequence never takes a sheaf's last object,
    // `rseq::pop`), then B, then A, the barn's last first. Each refill puts
    // the kept object, objs[2 * cap - 2], in the full sheaf's free slot
    // under its objects (its oldest moves to the top), so it is again the
    // one left; the last allocation comes from the slabs.
    let back = alloc_n(&m, s, 2 * cap + 1);
    let from_sheaves: Vec<*mut u8> = [objs[2 * cap], objs[2 * cap - 1], objs[cap - 1]]
        .iter()
        .chain(objs[cap..2 * cap - 2].iter().rev())
        .chain([objs[0]].iter())
        .chain(objs[1..cap - 1].iter().rev())
        .copied()
        .collect();
    assert!(
        back[..2 * cap] == from_sheaves[..],
        "not the sheaves' objects, newest first"
    );
    let distinct: std::collections::HashSet<_> = back.iter().collect();
    assert_eq!(distinct.len(), back.len(), "an object handed out twice");
    assert!(
        !back.contains(&objs[2 * cap - 2]),
        "a sheaf's last object was handed out"
    );
    assert_eq!((barn_full(s), in_sheaves(&m, s)), (0, 1));
    assert_eq!(active(&m, s), objs.len(), "one object more, from the slabs");
    free_all(&m, s, &back);
    free_all(&m, s, &objs[2 * cap + 1..]);
    assert_eq!(active(&m, s), 0);
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0);
    assert_eq!(
        (barn_full(s), in_sheaves(&m, s), sheaves_installed(&m, s)),
        (0, 0, 0)
    );
    destroy_clean(&m, s);
}

/// Sheaves of one object (objects above 128 KiB) go to the barn whole: no
/// sheaf ever holds more than its capacity, and every object comes back.
#[test]
fn one_object_sheaves_stay_within_their_capacity() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let s = m
        .kmem_cache_create("sheaf-one", 192 << 10, 0, SlabFlags(0), None)
        .unwrap();
    let _pin = pin_to_current_cpu();
    // SAFETY: a live cache.
    assert_eq!(unsafe { s.as_ref() }.sheaf_capacity, 1);
    let n = per_slab(s);
    // Whole slabs, so every free but the cpu slab's goes to the sheaf.
    let objs = alloc_n(&m, s, 4 * n);
    for (i, &o) in objs.iter().enumerate() {
        free_all(&m, s, &[o]);
        assert!(
            in_sheaves(&m, s) <= 1,
            "a one-object sheaf holds more after {} frees",
            i + 1
        );
        assert!(barn_full(s) <= i + 1);
    }
    assert_eq!(active(&m, s), 0);
    let back = alloc_n(&m, s, 4 * n);
    let distinct: std::collections::HashSet<_> = back.iter().collect();
    assert_eq!(distinct.len(), back.len(), "an object handed out twice");
    assert_eq!(active(&m, s), back.len());
    free_all(&m, s, &back);
    assert_eq!(active(&m, s), 0);
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0);
    destroy_clean(&m, s);
}

/// With `MAX_FULL_SHEAVES` (10) in the barn, a full sheaf gives its oldest
/// half back to the slabs (one `__slab_free` per run of one slab's objects)
/// and keeps the newest; the counts stay exact.
#[test]
fn a_full_sheaf_with_a_full_barn_gives_its_oldest_half_back() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let s = m
        .kmem_cache_create("sheaf-full", 64, 0, SlabFlags(0), None)
        .unwrap();
    let _pin = pin_to_current_cpu();
    // SAFETY: a live cache.
    let cap = unsafe { s.as_ref() }.sheaf_capacity;
    let n = per_slab(s);
    // Fill the barn (ten sheaves of cap - 1 objects: each leaves its newest
    // to the next) and the sheaf, then one more free, oldest first.
    let freed = cap + 1 + 9 * (cap - 1) + (cap - 2) + 1;
    let objs = alloc_n(&m, s, (freed.div_ceil(n) + 1) * n);
    free_all(&m, s, &objs[..freed]);
    assert_eq!(barn_full(s), 10);
    assert_eq!(in_sheaves(&m, s), cap + 1 - cap.div_ceil(2));
    assert_eq!(active(&m, s), objs.len() - freed);
    // The flushed objects are on their slabs' freelists: nothing lost, nothing doubled.
    let back = alloc_n(&m, s, freed);
    let seen: std::collections::HashSet<_> = back.iter().copied().collect();
    assert_eq!(seen.len(), back.len(), "an object handed out twice");
    assert!(
        objs[freed..].iter().all(|o| !seen.contains(o)),
        "a live object handed out"
    );
    // Objects come from the sheaves (all but the last of each) and the slabs.
    let again = seen.iter().filter(|o| objs[..freed].contains(o)).count();
    assert!(
        again >= freed - 11,
        "only {again} of {freed} freed objects came back"
    );
    assert_eq!(active(&m, s), objs.len());
    free_all(&m, s, &back);
    free_all(&m, s, &objs[freed..]);
    assert_eq!(active(&m, s), 0);
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0);
    destroy_clean(&m, s);
}

/// Frees in a shuffled order past a full barn, for a cache whose slabs span
/// several pages: the halves given back mix objects of many slabs, and of
/// pages of one slab, in any order (`free_to_slabs` ends a run at the first
/// object outside its slab's pages). Nothing is lost or doubled, and every
/// slab empties.
#[test]
fn shuffled_frees_past_a_full_barn_reach_every_slab() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let _pin = pin_to_current_cpu();
    for size in [64, 700] {
        let s = m
            .kmem_cache_create("sheaf-shuffled", size, 0, SlabFlags(0), None)
            .unwrap();
        // SAFETY: a live cache.
        let (cap, order) = unsafe { (s.as_ref().sheaf_capacity, s.as_ref().oo.order) };
        assert!(
            size == 64 || order > 0,
            "700-byte objects take slabs of more than a page"
        );
        let mut objs = alloc_n(&m, s, 24 * cap);
        // Fisher-Yates with a fixed xorshift: the same order every run.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in (1..objs.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            objs.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let (gone, kept) = objs.split_at(objs.len() * 3 / 4);
        free_all(&m, s, gone);
        assert_eq!(barn_full(s), 10, "the barn filled");
        assert_eq!(active(&m, s), kept.len());
        let back = alloc_n(&m, s, gone.len());
        let seen: std::collections::HashSet<_> = back.iter().copied().collect();
        assert_eq!(seen.len(), back.len(), "an object handed out twice");
        assert!(kept.iter().all(|o| !seen.contains(o)), "a live object handed out");
        free_all(&m, s, &back);
        free_all(&m, s, kept);
        assert_eq!(active(&m, s), 0);
        // SAFETY: a live cache of this machine (created and not destroyed).
        assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0, "a slab kept objects");
        destroy_clean(&m, s);
    }
}

/// Destroying a cache whose barn holds sheaves, and the shrinker under
/// memory pressure, give the barn's objects back to their slabs.
#[test]
fn destroy_and_the_shrinker_empty_the_barn() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let _pin = pin_to_current_cpu();
    for shrinker in [false, true] {
        let s = m
            .kmem_cache_create("sheaf-barn-destroy", 64, 0, SlabFlags(0), None)
            .unwrap();
        // SAFETY: a live cache.
        let cap = unsafe { s.as_ref() }.sheaf_capacity;
        let objs = alloc_n(&m, s, 4 * cap);
        free_all(&m, s, &objs);
        assert!(barn_full(s) >= 2);
        if shrinker {
            // SAFETY: a live cache.
            let slabs_before = m.cache_counts(unsafe { s.as_ref() }).2;
            m.shrink_slab(GFP_KERNEL, 0, 0);
            assert_eq!(barn_full(s), 0);
            // SAFETY: a live cache.
            let slabs_after = m.cache_counts(unsafe { s.as_ref() }).2;
            assert!(
                slabs_after < slabs_before,
                "{slabs_after} slabs of {slabs_before} left"
            );
        }
        destroy_clean(&m, s);
    }
}

/// kfree finds the cache from the page and uses the same sheaf.
#[test]
fn kfree_uses_the_sheaf_too() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let _pin = pin_to_current_cpu();
    let k = m.kmalloc_slab(96, GFP_KERNEL).unwrap();
    let n = per_slab(k);
    let objs: Vec<*mut u8> = (0..3 * n)
        .map(|_| m.kmalloc(96, GFP_KERNEL).unwrap().as_ptr())
        .collect();
    let before = in_sheaves(&m, k);
    for &o in &objs[..n] {
        // SAFETY: ours, freed once.
        unsafe { m.kfree(o) };
    }
    assert_eq!(in_sheaves(&m, k), before + n);
    for &o in &objs[n..] {
        // SAFETY: ours, freed once.
        unsafe { m.kfree(o) };
    }
    // SAFETY: a live cache of this machine (created and not destroyed).
    unsafe { m.kmem_cache_shrink(k) };
    assert_eq!(in_sheaves(&m, k), 0);
    assert_eq!(active(&m, k), 0);
}

/// Freeing the object freed last a second time is caught (the cpu
/// freelist's naive check, on the sheaf) and changes nothing.
#[test]
fn double_free_of_the_newest_sheaf_object_is_caught() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let s = m
        .kmem_cache_create("sheaf-df", 64, 0, SlabFlags(0), None)
        .unwrap();
    let _pin = pin_to_current_cpu();
    let objs = alloc_n(&m, s, 2 * per_slab(s));
    let errors = m.slab.errors.load(Ordering::Relaxed);
    // The second free is the misuse under test.
    free_all(&m, s, &[objs[0], objs[0]]);
    assert_eq!(m.slab.errors.load(Ordering::Relaxed), errors + 1);
    assert!(m.dmesg().contains("Object already free"), "{}", m.dmesg());
    assert_eq!(in_sheaves(&m, s), 1, "the object is in the sheaf once");
    free_all(&m, s, &objs[1..]);
    assert_eq!(active(&m, s), 0);
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0);
    destroy_clean(&m, s);
}

/// Objects allocated on one CPU and freed on the other wait in the freeing
/// CPU's sheaf; the counts stay exact and destroying the cache is clean.
#[test]
fn cross_cpu_frees_fill_the_freeing_cpus_sheaf() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let cpus = kmem_hosted::platform::host_cpu_ids();
    if cpus < 2 {
        return;
    }
    let s = m
        .kmem_cache_create("sheaf-xcpu", 128, 0, SlabFlags(0), None)
        .unwrap();
    struct Objs(Vec<*mut u8>);
    // SAFETY: the objects belong to whoever holds the vector.
    unsafe impl Send for Objs {}
    let (m, sp) = (&m, s.as_ptr() as usize);
    let cache = move || NonNull::new(sp as *mut KmemCache).unwrap();
    for _round in 0..50 {
        let objs = std::thread::scope(|t| {
            t.spawn(move || {
                let _pin = pin_to(0);
                Objs(
                    (0..200)
                        .map(|_| {
                            // SAFETY: a live cache of this machine (created and not destroyed).
                            unsafe { m.kmem_cache_alloc(cache(), GFP_KERNEL) }
                                .unwrap()
                                .as_ptr()
                        })
                        .collect(),
                )
            })
            .join()
            .unwrap()
        });
        assert_eq!(active(m, s), 200);
        std::thread::scope(|t| {
            t.spawn(move || {
                let objs = objs; // the whole (Send) vector, not its field
                let _pin = pin_to(1);
                for &o in &objs.0 {
                    // SAFETY: allocated above, freed once.
                    unsafe { m.kmem_cache_free(cache(), o) };
                }
            });
        });
        assert_eq!(active(m, s), 0);
        assert!(in_sheaves(m, s) > 0, "CPU 1's frees went to its sheaf");
    }
    destroy_clean(m, s);
}

/// No sheaves with `kmem.sheaves=off`, for debug caches, or for caches that
/// wipe objects on free.
#[test]
fn caches_without_sheaves() {
    let Some(m) = boot_rseq("quiet mem=256M nr_cpus=2 kmem.sheaves=off") else {
        return;
    };
    let s = m.kmem_cache_create("off", 64, 0, SlabFlags(0), None).unwrap();
    // SAFETY: just created.
    assert_eq!(unsafe { s.as_ref() }.sheaf_capacity, 0);
    let m = boot(CMDLINE);
    let d = m.kmem_cache_create("debug", 64, 0, SLAB_RED_ZONE, None).unwrap();
    // SAFETY: just created.
    assert_eq!(unsafe { d.as_ref() }.sheaf_capacity, 0);
    let m = boot("quiet mem=256M nr_cpus=2 init_on_free=1");
    let w = m.kmem_cache_create("wiped", 64, 0, SlabFlags(0), None).unwrap();
    // SAFETY: just created.
    assert_eq!(unsafe { w.as_ref() }.sheaf_capacity, 0);
    // Sizes follow SLAB's limits.
    let m = boot(CMDLINE);
    if m.slab_fast_paths_rseq() {
        for (size, cap) in [(256, 120), (512, 54), (2048, 24), (8192, 8)] {
            let c = m.kmem_cache_create("sized", size, 0, SlabFlags(0), None).unwrap();
            // SAFETY: just created; destroyed below, empty.
            unsafe {
                assert_eq!(c.as_ref().sheaf_capacity, cap, "size {size}");
                m.kmem_cache_destroy(c);
            }
        }
    }
}

/// A CPU does not live off its sheaf's last object: an object another CPU
/// allocated and this CPU freed (a thread that migrated) waits there, and a
/// thread that allocates and frees in a loop gets a cpu slab of its own
/// instead of reusing that object for good, a cache line away from the
/// objects the other CPU hands out (Hoard's cache-thrash).
#[test]
fn a_cpu_does_not_live_off_a_migrated_object_in_its_sheaf() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    if kmem_hosted::platform::host_cpu_ids() < 2 {
        return;
    }
    let s = m
        .kmem_cache_create("sheaf-thrash", 8, 0, SlabFlags(0), None)
        .unwrap();
    let (a, b) = {
        let _pin = pin_to(0);
        // SAFETY: a live cache of this machine (created and not destroyed).
        let a = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
        // SAFETY: a live cache of this machine (created and not destroyed).
        (a, unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr())
    };
    assert_eq!(b as usize - a as usize, 8, "neighbours on one cache line");
    let _pin = pin_to(1);
    // SAFETY: a live cache.
    let c1 = unsafe { s.as_ref().cpu(1) };
    assert_eq!(
        c1.slab_bytes.load(Ordering::Relaxed),
        0,
        "CPU 1 has no cpu slab yet"
    );
    // SAFETY: allocated above, freed once (on CPU 1: into its sheaf).
    unsafe { m.kmem_cache_free(s, b) };
    assert_eq!(in_sheaves(&m, s), 1);
    for _ in 0..100 {
        // SAFETY: a live cache of this machine (created and not destroyed).
        let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
        assert!(
            (p as usize) / PAGE_SIZE != (a as usize) / PAGE_SIZE,
            "CPU 1 reused an object of CPU 0's slab"
        );
        // SAFETY: allocated just above, freed once.
        unsafe { m.kmem_cache_free(s, p) };
    }
    assert_ne!(c1.slab_bytes.load(Ordering::Relaxed), 0, "CPU 1 got a cpu slab");
    assert_eq!(
        in_sheaves(&m, s),
        1,
        "the migrated object still waits in the sheaf"
    );
    // SAFETY: allocated above, freed once.
    unsafe { m.kmem_cache_free(s, a) };
    assert_eq!(active(&m, s), 0);
    destroy_clean(&m, s);
}

/// The objects of the cpu freelist of `s` on this (pinned) CPU.
fn on_cpu_freelist(m: &Machine, s: NonNull<KmemCache>) -> Vec<*mut u8> {
    // SAFETY: sched_getcpu has no preconditions; the caller is pinned.
    let cpu = unsafe { libc::sched_getcpu() } as usize % m.nr_cpu_ids();
    // SAFETY: cpu < nr_cpus of a live cache; pinned, nothing else runs on it.
    let mut p = unsafe { s.as_ref().cpu(cpu) }.fl.load().0;
    let mut objs = Vec::new();
    while p != 0 {
        objs.push(p as *mut u8);
        // SAFETY: a free object of `s`: its free pointer is at `offset`.
        p = unsafe { *((p + s.as_ref().offset) as *const usize) };
    }
    objs.sort();
    objs
}

/// `kfree` frees to the sheaf first (`rseq::sheaf_push`, a CPU without a
/// sheaf gets one on the slow path), and `kmalloc` allocates from it first
/// (`rseq::sheaf_pop`); a double free is caught.
#[test]
fn kfree_frees_to_the_sheaf_first() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let s = m
        .kmem_cache_create("sheaf-kfree", 1024, 0, SlabFlags(0), None)
        .unwrap();
    let _pin = pin_to_current_cpu();
    let objs = alloc_n(&m, s, per_slab(s));
    let errors = m.slab.errors.load(Ordering::Relaxed);
    for &o in &objs {
        // SAFETY: allocated above, freed once.
        unsafe { m.kfree(o) };
    }
    assert_eq!(in_sheaves(&m, s), objs.len(), "every object in this CPU's sheaf");
    assert!(on_cpu_freelist(&m, s).is_empty());
    assert_eq!(active(&m, s), 0);
    // The newest object is freed again: caught, not taken twice.
    let newest = *objs.last().unwrap();
    // SAFETY: the second free is the misuse under test.
    unsafe { m.kfree(newest) };
    assert_eq!(m.slab.errors.load(Ordering::Relaxed), errors + 1);
    assert_eq!(in_sheaves(&m, s), objs.len());
    // kmalloc's order: a kmalloc cache's objects come back from the sheaf,
    // newest first.
    let k: Vec<_> = (0..64).map(|_| m.kmalloc(1024, GFP_KERNEL).unwrap()).collect();
    for p in k.iter().rev() {
        // SAFETY: allocated above, freed once.
        unsafe { m.kfree(p.as_ptr()) };
    }
    let again: Vec<_> = (0..64).map(|_| m.kmalloc(1024, GFP_KERNEL).unwrap()).collect();
    assert_eq!(again[0], k[0], "the newest freed first");
    // The same objects, from the sheaves, but the last one a sheaf keeps.
    assert_eq!(again.iter().filter(|p| k.contains(p)).count(), k.len() - 1);
    for p in again {
        // SAFETY: allocated above, freed once.
        unsafe { m.kfree(p.as_ptr()) };
    }
    assert_eq!(active(&m, s), 0);
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0);
    destroy_clean(&m, s);
}

/// Without sheaves (`kmem.sheaves=off`) `kfree` pushes the objects of the
/// cpu slab onto the cpu freelist (`rseq::push`); a double free of its head
/// is caught; the counts stay exact.
#[test]
fn kfree_without_sheaves_pushes_onto_the_cpu_freelist() {
    let Some(m) = boot_rseq(&format!("{CMDLINE} kmem.sheaves=off")) else {
        return;
    };
    let s = m
        .kmem_cache_create("kfree-no-sheaves", 1024, 0, SlabFlags(0), None)
        .unwrap();
    // SAFETY: a live cache.
    assert_eq!(unsafe { s.as_ref().sheaf_capacity }, 0);
    let _pin = pin_to_current_cpu();
    // One slab's worth: all from the cpu slab, whose freelist is then empty.
    let mut objs = alloc_n(&m, s, per_slab(s));
    assert!(on_cpu_freelist(&m, s).is_empty());
    let errors = m.slab.errors.load(Ordering::Relaxed);
    for &o in &objs {
        // SAFETY: allocated above, freed once.
        unsafe { m.kfree(o) };
    }
    objs.sort();
    assert_eq!(
        on_cpu_freelist(&m, s),
        objs,
        "the cpu slab's objects, all on its freelist"
    );
    assert_eq!(active(&m, s), 0);
    // A double free of the freelist's head: caught.
    let again = alloc_n(&m, s, 1);
    // SAFETY: the second free is the misuse under test.
    unsafe {
        m.kfree(again[0]);
        m.kfree(again[0]);
    }
    assert_eq!(m.slab.errors.load(Ordering::Relaxed), errors + 1);
    assert_eq!(active(&m, s), 0);
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0);
    destroy_clean(&m, s);
}

/// `slab_sheaf`'s slabinfo numbers: (active objects, objects, object size,
/// objects per slab, pages per slab).
fn sheaf_cache_info(m: &Machine) -> (usize, usize, usize, usize, usize) {
    let text = m.proc_read("slabinfo").expect("/proc/slabinfo");
    let line = text
        .lines()
        .find(|l| l.starts_with("slab_sheaf "))
        .unwrap_or_else(|| panic!("no slab_sheaf cache:\n{text}"));
    let n: Vec<usize> = line
        .split_whitespace()
        .skip(1)
        .take(5)
        .map(|w| w.parse().expect("a number"))
        .collect();
    (n[0], n[1], n[2], n[3], n[4])
}

/// Sheaves are objects of their own cache, `slab_sheaf`, a kilobyte each
/// and four to a page (they used to take a page each, three quarters of it
/// unused); shrinking the cache that used them gives their memory back too.
#[test]
fn sheaves_come_four_to_a_page_from_their_own_cache() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let _pin = pin_to_current_cpu();
    let (active0, _, size, sheaves_per_slab, pages) = sheaf_cache_info(&m);
    assert_eq!(
        size, 1024,
        "a sheaf of 120 objects in a cache-line aligned kilobyte"
    );
    assert_eq!(sheaves_per_slab, 4 * pages, "four sheaves to a page");
    let s = m
        .kmem_cache_create("sheaf-home", 64, 0, SlabFlags(0), None)
        .unwrap();
    // SAFETY: a live cache.
    let cap = unsafe { s.as_ref() }.sheaf_capacity;
    let objs = alloc_n(&m, s, 2 * cap + 1 + per_slab(s));
    free_all(&m, s, &objs[..=2 * cap]);
    // Two full sheaves in the barn and the CPU's: three objects of the
    // sheaf cache, in one slab of it.
    assert_eq!((barn_full(s), sheaves_installed(&m, s)), (2, 1));
    let (active, total, ..) = sheaf_cache_info(&m);
    assert_eq!(active, active0 + 3, "three sheaves in use");
    assert!(total <= (active0 + 3).div_ceil(sheaves_per_slab) * sheaves_per_slab);
    free_all(&m, s, &objs[2 * cap + 1..]);
    // SAFETY: a live cache with no objects.
    assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0);
    let (active, total, ..) = sheaf_cache_info(&m);
    assert_eq!(active, active0, "the sheaves went back");
    if active0 == 0 {
        assert_eq!(total, 0, "and the sheaf cache's slab with them");
    }
    destroy_clean(&m, s);
}

/// `KmemCacheArgs::sheaf_capacity` (Linux 6.18's `kmem_cache_args` field):
/// `Some(0)` gives a cache no sheaves, so its frees outside the cpu slab go
/// to their slabs; `Some(n)` gives sheaves of `n` objects, the
/// `(n + 1)`-th free sends the full one to the barn; more than a sheaf
/// holds is cut to 120; a cache with a capacity merges with no other.
#[test]
fn sheaf_capacity_from_the_cache_args() {
    let Some(m) = boot_rseq(CMDLINE) else { return };
    let _pin = pin_to_current_cpu();
    let create = |name, cap| {
        let args = KmemCacheArgs {
            sheaf_capacity: cap,
            ..Default::default()
        };
        m.kmem_cache_create_args(name, 64, &args, SlabFlags(0)).unwrap()
    };
    let default = create("args-default", None);
    let none = create("args-none", Some(0));
    let eight = create("args-eight", Some(8));
    let huge = create("args-huge", Some(100_000));
    // SAFETY: live caches.
    let caps = unsafe { [default, none, eight, huge].map(|s| s.as_ref().sheaf_capacity) };
    assert_eq!(caps, [120, 0, 8, 120]);
    assert!(
        none != default && eight != default && huge != default,
        "caches with a capacity are not merged"
    );
    let n = per_slab(none);
    // Without sheaves, frees of an older slab's objects go to their slab.
    let objs = alloc_n(&m, none, 2 * n);
    free_all(&m, none, &objs[..n]);
    assert_eq!((in_sheaves(&m, none), sheaves_installed(&m, none)), (0, 0));
    assert_eq!(active(&m, none), n);
    free_all(&m, none, &objs[n..]);
    destroy_clean(&m, none);
    // Eight objects fill a sheaf; the ninth free puts it in the barn.
    let n = per_slab(eight);
    let objs = alloc_n(&m, eight, n + 9);
    free_all(&m, eight, &objs[..8]);
    assert_eq!((in_sheaves(&m, eight), barn_full(eight)), (8, 0));
    free_all(&m, eight, &objs[8..9]);
    assert_eq!(barn_full(eight), 1, "a full sheaf of eight went to the barn");
    free_all(&m, eight, &objs[9..]);
    for s in [default, eight, huge] {
        destroy_clean(&m, s);
    }
}
