//! The slab layer against a simple model, and under real threads.
//!
//! Property test: random sequences of cache creation, allocation (plain and
//! `__GFP_ZERO`), free, shrink and destroy over caches of random sizes,
//! alignments and constructors. After every step:
//! * no two live objects overlap and each lies inside a slab of its cache;
//! * every object is aligned as its cache promises;
//! * contents written by the owner survive until it frees the object;
//! * `__GFP_ZERO` objects read zero; constructed caches hand out objects in
//!   the constructed state (a constructor runs once per object per slab, never
//!   on allocation: a freed object keeps its state — Bonwick's object caching);
//! * the slab counters (`cache_counts`) equal the live objects exactly.
//!
//! Threads: objects allocated on one CPU are freed on another, thousands of
//! rounds, then every slab is accounted for and the buddy allocator gets all
//! pages back.

use kmem::slab::*;
use kmem::*;
use kmem_hosted::Machine;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

static CTOR_CALLS: AtomicUsize = AtomicUsize::new(0);
const CTOR_PATTERN: u32 = 0x4141_4141;

fn ctor(p: *mut u8) {
    CTOR_CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the slab layer passes an object of at least 8 bytes (our caches).
    unsafe { (p as *mut u32).write(CTOR_PATTERN) };
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        size: usize,
        align_pow: u32,
        hwalign: bool,
        with_ctor: bool,
    },
    Alloc {
        cache: usize,
        zero: bool,
    },
    Free {
        pick: usize,
    },
    Shrink {
        cache: usize,
    },
    Destroy {
        cache: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (8usize..3000, 3u32..8, any::<bool>(), any::<bool>())
            .prop_map(|(size, align_pow, hwalign, with_ctor)| Op::Create { size, align_pow, hwalign, with_ctor }),
        12 => (any::<usize>(), any::<bool>()).prop_map(|(cache, zero)| Op::Alloc { cache, zero }),
        9 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => any::<usize>().prop_map(|cache| Op::Shrink { cache }),
        1 => any::<usize>().prop_map(|cache| Op::Destroy { cache }),
    ]
}

struct CacheModel {
    s: NonNull<KmemCache>,
    size: usize,
    align: usize,
    ctor: bool,
    live: BTreeMap<usize, u8>, // address -> fill byte
}

fn check_counts(m: &Machine, c: &CacheModel) {
    // SAFETY: the cache is alive.
    let (active, total, _, _) = m.cache_counts(unsafe { c.s.as_ref() });
    assert_eq!(
        active,
        c.live.len(),
        "slab counters disagree with the live objects (total {total})"
    );
}

fn run(ops: Vec<Op>) {
    let m = Machine::boot("quiet mem=128M nr_cpus=2 kswapd=off").unwrap();
    let mut caches: Vec<CacheModel> = Vec::new();
    let mut seq = 0u8;
    for op in ops {
        match op {
            Op::Create {
                size,
                align_pow,
                hwalign,
                with_ctor,
            } => {
                let align = 1usize << align_pow;
                let flags = if hwalign { SLAB_HWCACHE_ALIGN } else { SlabFlags(0) };
                let name = format!("model-{}", caches.len());
                let s = m
                    .kmem_cache_create(
                        &name,
                        size,
                        align,
                        flags | SLAB_NO_MERGE,
                        with_ctor.then_some(ctor as Ctor),
                    )
                    .unwrap();
                // SAFETY: just created.
                let real_align = unsafe { s.as_ref().align };
                assert!(real_align >= align && real_align % 8 == 0);
                caches.push(CacheModel {
                    s,
                    size,
                    align: real_align,
                    ctor: with_ctor,
                    live: BTreeMap::new(),
                });
            }
            Op::Alloc { cache, zero } if !caches.is_empty() => {
                let ci = cache % caches.len();
                let c = &caches[ci];
                let zero = zero && !c.ctor; // __GFP_ZERO with a ctor is a caller bug (warned)
                let gfp = if zero { GFP_KERNEL | __GFP_ZERO } else { GFP_KERNEL };
                // SAFETY: a live cache of this machine (created and not destroyed).
                let p = unsafe { m.kmem_cache_alloc(c.s, gfp) }.unwrap().as_ptr();
                let a = p as usize;
                assert_eq!(a % c.align, 0, "misaligned object");
                // No overlap with any live object of any cache.
                for cm in caches.iter() {
                    if let Some((&b, _)) = cm.live.range(..a + c.size).next_back() {
                        assert!(
                            b + cm.size <= a || b >= a + c.size,
                            "objects overlap: {a:#x} and {b:#x}"
                        );
                    }
                }
                let c = &mut caches[ci];
                // SAFETY: the object is ours.
                let obj = unsafe { std::slice::from_raw_parts_mut(p, c.size) };
                if zero {
                    assert!(obj.iter().all(|&b| b == 0), "__GFP_ZERO object not zero");
                }
                if c.ctor {
                    // SAFETY: at least 8 bytes.
                    assert_eq!(
                        // SAFETY: within memory this test allocated and still owns.
                        unsafe { (p as *const u32).read() },
                        CTOR_PATTERN,
                        "object not in constructed state"
                    );
                }
                seq = seq.wrapping_add(1) | 1;
                // Keep the constructed word intact for ctor caches (the owner's duty).
                let start = if c.ctor { 4 } else { 0 };
                obj[start..].fill(seq);
                c.live.insert(a, seq);
                check_counts(&m, c);
            }
            Op::Free { pick } => {
                let total: usize = caches.iter().map(|c| c.live.len()).sum();
                if total == 0 {
                    continue;
                }
                let mut k = pick % total;
                for c in caches.iter_mut() {
                    if k < c.live.len() {
                        let (&a, &fill) = c.live.iter().nth(k).unwrap();
                        let start = if c.ctor { 4 } else { 0 };
                        // SAFETY: a live object of this cache.
                        let obj = unsafe { std::slice::from_raw_parts(a as *const u8, c.size) };
                        assert!(
                            obj[start..].iter().all(|&b| b == fill),
                            "object contents changed under its owner"
                        );
                        c.live.remove(&a);
                        // SAFETY: allocated from this cache, freed once.
                        unsafe { m.kmem_cache_free(c.s, a as *mut u8) };
                        check_counts(&m, c);
                        break;
                    }
                    k -= c.live.len();
                }
            }
            Op::Shrink { cache } if !caches.is_empty() => {
                let c = &caches[cache % caches.len()];
                // SAFETY: a live cache of this machine (created and not destroyed).
                let r = unsafe { m.kmem_cache_shrink(c.s) };
                if c.live.is_empty() {
                    assert_eq!(r, 0, "an empty cache keeps slabs after shrink");
                }
                check_counts(&m, c);
            }
            Op::Destroy { cache } if !caches.is_empty() => {
                let i = cache % caches.len();
                let c = caches.remove(i);
                for (&a, _) in c.live.iter() {
                    // SAFETY: live objects of this cache.
                    unsafe { m.kmem_cache_free(c.s, a as *mut u8) };
                }
                // SAFETY: all objects freed; not used again.
                unsafe { m.kmem_cache_destroy(c.s) };
            }
            _ => {}
        }
    }
    for c in caches {
        for (&a, _) in c.live.iter() {
            // SAFETY: live objects of this cache.
            unsafe { m.kmem_cache_free(c.s, a as *mut u8) };
        }
        // SAFETY: all objects freed.
        unsafe { m.kmem_cache_destroy(c.s) };
    }
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
    // Every page of the destroyed caches went back to the buddy allocator:
    // only the boot's caches (kmalloc's, the cache of caches, the sheaves')
    // hold slabs now.
    let mut pages_in_slabs = 0;
    m.for_each_cache(|s| {
        let (_, _, slabs, _) = m.cache_counts(s);
        pages_in_slabs += slabs << s.oo.order;
        assert!(
            s.name().starts_with("kmalloc")
                || s.name().contains("kmalloc")
                || s.name() == "kmem_cache"
                || s.name() == "slab_sheaf"
        );
    });
    m.drain_all_pages();
    assert!(m.nr_free_pages() + pages_in_slabs + 64 > m.totalram_pages() - 4096);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn slab_against_a_model(ops in prop::collection::vec(op(), 1..400)) {
        run(ops);
    }
}

#[test]
fn constructor_runs_once_per_object_per_slab() {
    let m = Machine::boot("quiet mem=64M nr_cpus=1 kswapd=off").unwrap();
    let s = m
        .kmem_cache_create("ctor-once", 64, 0, SLAB_NO_MERGE, Some(ctor as Ctor))
        .unwrap();
    let before = CTOR_CALLS.load(Ordering::Relaxed);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
    let after_first = CTOR_CALLS.load(Ordering::Relaxed);
    // SAFETY: just created.
    let per_slab = unsafe { s.as_ref().oo.objects } as usize;
    assert!(
        after_first - before >= per_slab,
        "the whole slab is constructed when populated"
    );
    // Free and reallocate many times: no constructor call, state kept.
    for i in 0..10_000u32 {
        // SAFETY: ours.
        unsafe { (p.as_ptr() as *mut u32).add(1).write(i) };
        // SAFETY: allocated from this machine above, freed once and not used afterwards.
        unsafe { m.kmem_cache_free(s, p.as_ptr()) };
        // SAFETY: a live cache of this machine (created and not destroyed).
        let q = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
        assert_eq!(q, p, "LIFO reuse of the hot object");
        // SAFETY: ours again; the object kept its state across free.
        assert_eq!(unsafe { (q.as_ptr() as *const u32).read() }, CTOR_PATTERN);
        // SAFETY: within memory this test allocated and still owns.
        assert_eq!(unsafe { (q.as_ptr() as *const u32).add(1).read() }, i);
    }
    assert_eq!(
        CTOR_CALLS.load(Ordering::Relaxed),
        after_first,
        "ctor ran on allocation"
    );
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_free(s, p.as_ptr()) };
    // SAFETY: allocated from this machine above, freed once and not used afterwards.
    unsafe { m.kmem_cache_destroy(s) };
}

#[test]
fn cross_cpu_frees_are_all_accounted_for() {
    let m = Arc::new(Machine::boot("quiet mem=512M nr_cpus=2 kswapd=off").unwrap());
    let sizes = [16usize, 64, 192, 700, 4000];
    let caches: Vec<usize> = sizes
        .iter()
        .map(|&sz| {
            m.kmem_cache_create(&format!("xcpu-{sz}"), sz, 0, SLAB_NO_MERGE, None)
                .unwrap()
                .as_ptr() as usize
        })
        .collect();
    let free_pages0 = m.nr_free_pages();
    let threads = 4;
    let rounds = 3000;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| std::sync::mpsc::channel::<(usize, usize)>())
        .unzip();
    let mut handles = Vec::new();
    for (t, rx) in rxs.into_iter().enumerate() {
        let m = m.clone();
        let caches = caches.clone();
        let next = txs[(t + 1) % threads].clone();
        handles.push(std::thread::spawn(move || {
            let mut rng = 0x1234_5678u64 ^ t as u64;
            let mut mine: Vec<(usize, usize)> = Vec::new();
            for r in 0..rounds {
                for _ in 0..16 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let ci = (rng % caches.len() as u64) as usize;
                    let s = NonNull::new(caches[ci] as *mut KmemCache).unwrap();
                    // SAFETY: a live cache of this machine (created and not destroyed).
                    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
                    // SAFETY: our object: tag it with its cache index.
                    unsafe { p.write(ci as u8) };
                    if rng & 1 == 0 {
                        next.send((ci, p as usize)).unwrap();
                    } else {
                        mine.push((ci, p as usize));
                    }
                }
                while let Ok((ci, p)) = rx.try_recv() {
                    // SAFETY: another thread's object, handed over.
                    assert_eq!(unsafe { *(p as *const u8) }, ci as u8);
                    // SAFETY: within memory this test allocated and still owns.
                    unsafe {
                        m.kmem_cache_free(NonNull::new(caches[ci] as *mut KmemCache).unwrap(), p as *mut u8)
                    };
                }
                if r % 4 == 0 {
                    for (ci, p) in mine.drain(..) {
                        // SAFETY: ours.
                        unsafe {
                            m.kmem_cache_free(
                                NonNull::new(caches[ci] as *mut KmemCache).unwrap(),
                                p as *mut u8,
                            )
                        };
                    }
                }
            }
            drop(next);
            for (ci, p) in mine {
                // SAFETY: ours.
                unsafe {
                    m.kmem_cache_free(NonNull::new(caches[ci] as *mut KmemCache).unwrap(), p as *mut u8)
                };
            }
            rx
        }));
    }
    drop(txs);
    let rxs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for rx in rxs {
        while let Ok((ci, p)) = rx.try_recv() {
            // SAFETY: handed over, never freed.
            unsafe { m.kmem_cache_free(NonNull::new(caches[ci] as *mut KmemCache).unwrap(), p as *mut u8) };
        }
    }
    for &c in &caches {
        let s = NonNull::new(c as *mut KmemCache).unwrap();
        // SAFETY: live cache.
        let (active, _, _, _) = m.cache_counts(unsafe { s.as_ref() });
        // SAFETY: within memory this test allocated and still owns.
        assert_eq!(active, 0, "objects unaccounted for in {}", unsafe {
            s.as_ref().name()
        });
        // SAFETY: a live cache of this machine (created and not destroyed).
        assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0, "slabs left after shrink");
        // SAFETY: empty now.
        unsafe { m.kmem_cache_destroy(s) };
    }
    m.drain_all_pages();
    assert!(
        m.nr_free_pages() + 64 >= free_pages0,
        "pages did not come back: {} vs {}",
        m.nr_free_pages(),
        free_pages0
    );
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

#[test]
fn double_free_in_a_row_is_caught_on_the_fast_path() {
    let m = Machine::boot("quiet mem=64M nr_cpus=1 kswapd=off").unwrap();
    let s = m.kmem_cache_create("df", 64, 0, SLAB_NO_MERGE, None).unwrap();
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
    // SAFETY: freed once legitimately, then misused on purpose.
    unsafe { m.kmem_cache_free(s, p.as_ptr()) };
    // SAFETY: allocated from this machine above, freed once and not used afterwards.
    unsafe { m.kmem_cache_free(s, p.as_ptr()) };
    assert!(m.dmesg().contains("Object already free"), "{}", m.dmesg());
    // The freelist is intact: two allocations give two different objects.
    // SAFETY: a live cache of this machine (created and not destroyed).
    let a = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
    // SAFETY: a live cache of this machine (created and not destroyed).
    let b = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
    assert_ne!(a, b);
    // SAFETY: ours.
    unsafe {
        m.kmem_cache_free(s, a.as_ptr());
        m.kmem_cache_free(s, b.as_ptr());
        m.kmem_cache_destroy(s);
    }
}

#[test]
fn slabs_are_coloured_and_legacy_ctors_get_ctor_flags() {
    use std::sync::atomic::AtomicUsize;
    static CTOR_FLAGS: AtomicUsize = AtomicUsize::new(0);
    static DTORS: AtomicUsize = AtomicUsize::new(0);
    fn legacy_ctor(_p: *mut u8, _s: *const KmemCache, flags: u64) {
        CTOR_FLAGS.fetch_or(flags as usize, Ordering::Relaxed);
    }
    fn legacy_dtor(_p: *mut u8, _s: *const KmemCache, _flags: u64) {
        DTORS.fetch_add(1, Ordering::Relaxed);
    }
    let m = Machine::boot("quiet mem=64M nr_cpus=1 kswapd=off").unwrap();
    // 200-byte objects: 20 per 4 KiB slab, 96 bytes left over: colours 0 and 64.
    let s = m
        .kmem_cache_create_legacy(
            "legacy",
            200,
            0,
            SLAB_NO_MERGE,
            Some(legacy_ctor),
            Some(legacy_dtor),
        )
        .unwrap();
    // SAFETY: live cache.
    let per = unsafe { s.as_ref().oo.objects } as usize;
    let mut objs = Vec::new();
    for _ in 0..per * 4 {
        // SAFETY: a live cache of this machine (created and not destroyed).
        objs.push(unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr() as usize);
    }
    assert_eq!(
        CTOR_FLAGS.load(Ordering::Relaxed) as u64 & SLAB_CTOR_CONSTRUCTOR,
        SLAB_CTOR_CONSTRUCTOR
    );
    // The first object of each slab sits at its slab's colour offset: both colours appear.
    let mut offsets: Vec<usize> = objs.iter().map(|&a| a % 4096).filter(|&o| o < 200).collect();
    offsets.sort();
    offsets.dedup();
    assert!(
        offsets.len() >= 2,
        "slabs not coloured: first-object offsets {offsets:?}"
    );
    // An atomic allocation that needs a new slab passes SLAB_CTOR_ATOMIC.
    for _ in 0..per {
        // SAFETY: a live cache of this machine (created and not destroyed).
        objs.push(unsafe { m.kmem_cache_alloc(s, GFP_ATOMIC) }.unwrap().as_ptr() as usize);
    }
    assert_ne!(CTOR_FLAGS.load(Ordering::Relaxed) as u64 & SLAB_CTOR_ATOMIC, 0);
    for a in objs {
        // SAFETY: ours.
        unsafe { m.kmem_cache_free(s, a as *mut u8) };
    }
    // SAFETY: a live cache of this machine (created and not destroyed).
    assert_eq!(unsafe { m.kmem_cache_shrink(s) }, 0);
    assert!(
        DTORS.load(Ordering::Relaxed) >= per * 5,
        "the destructor runs on every object of a freed slab"
    );
    // SAFETY: empty.
    unsafe { m.kmem_cache_destroy(s) };
}
