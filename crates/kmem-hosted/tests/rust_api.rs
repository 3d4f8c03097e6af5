//! The Rust front door: KBox, typed caches (construct once), the
//! allocator-api2 allocator, and kmalloc as this test binary's global
//! allocator — every Vec, String and HashMap below (and the test harness's
//! own) lives in the default machine.

use allocator_api2::vec::Vec as AVec;
use core::ptr::NonNull;
use kmem::kbox::KmemCache;
use kmem::slab::KmemCache as RawCache;
use kmem::*;
use kmem_hosted::{default_machine, KVmallocAllocator, KmallocAllocator, Machine};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

mod common;

#[global_allocator]
static A: kmem_hosted::KmemAlloc = kmem_hosted::KmemAlloc;

fn boot() -> Machine {
    Machine::boot("quiet mem=256M nr_cpus=2 kswapd=off").unwrap()
}

fn find_cache(m: &Kmem<kmem_hosted::HostedPlatform>, name: &str) -> NonNull<RawCache> {
    let mut found = None;
    m.for_each_cache(|c| {
        if c.name() == name {
            found = Some(NonNull::from(c));
        }
    });
    found.unwrap_or_else(|| panic!("no cache {name}"))
}

fn active(m: &Kmem<kmem_hosted::HostedPlatform>, name: &str) -> usize {
    // SAFETY: kmalloc caches live as long as the machine.
    m.cache_counts(unsafe { find_cache(m, name).as_ref() }).0
}

// ---- KBox -------------------------------------------------------------------

struct Droppy<'a>(&'a AtomicUsize, u64);

impl Drop for Droppy<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn kbox_lives_in_kmalloc_and_drops() {
    let m = boot();
    let drops = AtomicUsize::new(0);
    {
        let b = KBox::new_in(Droppy(&drops, 42), GFP_KERNEL, &m).unwrap();
        assert_eq!(b.1, 42);
        let p = KBox::as_ptr(&b) as *const u8;
        assert!(m.virt_addr_valid(p));
        // 16 bytes: kmalloc-16.
        assert_eq!(m.ksize(p), 16);
        assert_eq!(active(&m, "kmalloc-16"), 1);
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1, "drop ran");
    assert_eq!(active(&m, "kmalloc-16"), 0, "memory freed");

    // into_raw / from_raw_in keep the value alive in between.
    let b = KBox::new_in(Droppy(&drops, 7), GFP_KERNEL, &m).unwrap();
    let raw = KBox::into_raw(b);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    assert_eq!(unsafe { (*raw).1 }, 7);
    // SAFETY: the pointer and its owner come from the matching allocation above, used once.
    let b = unsafe { KBox::from_raw_in(raw, &m) };
    drop(b);
    assert_eq!(drops.load(Ordering::SeqCst), 2);

    // into_inner moves the value out and frees the memory.
    let b = KBox::new_in(Droppy(&drops, 9), GFP_KERNEL, &m).unwrap();
    let v = KBox::into_inner(b);
    assert_eq!(active(&m, "kmalloc-16"), 0);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    drop(v);
    assert_eq!(drops.load(Ordering::SeqCst), 3);

    // DerefMut, Debug, pin.
    let mut n = KBox::new_in(5u32, GFP_KERNEL, &m).unwrap();
    *n += 1;
    assert_eq!(*n, 6);
    assert_eq!(format!("{n:?}"), "6");
    let pinned = KBox::pin_in([1u8; 100], GFP_KERNEL, &m).unwrap();
    assert_eq!(pinned[99], 1);
    assert_eq!(m.ksize(&*pinned as *const [u8; 100] as *const u8), 128);
    let leaked: &mut u64 = KBox::leak(KBox::new_in(3u64, GFP_KERNEL, &m).unwrap());
    *leaked += 1;
    assert_eq!(*leaked, 4);
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

#[test]
fn kbox_sizes_and_alignments() {
    let m = boot();
    #[repr(align(64))]
    struct A64([u8; 8]);
    #[repr(align(4096))]
    struct A4k(u8);
    #[repr(align(8192))]
    struct A8k(u8);
    #[repr(align(32))]
    struct A32x3([u8; 96]);

    let a = KBox::new_in(A64([1; 8]), GFP_KERNEL, &m).unwrap();
    assert_eq!(KBox::as_ptr(&a) as usize % 64, 0);
    assert_eq!(a.0[7], 1);
    let b = KBox::new_in(A4k(2), GFP_KERNEL, &m).unwrap();
    assert_eq!(KBox::as_ptr(&b) as usize % 4096, 0);
    assert_eq!(b.0, 2);
    let c = KBox::new_in(A8k(3), GFP_KERNEL, &m).unwrap();
    assert_eq!(KBox::as_ptr(&c) as usize % 8192, 0);
    assert_eq!(c.0, 3);
    let d = KBox::new_in(A32x3([4; 96]), GFP_KERNEL, &m).unwrap();
    assert_eq!(KBox::as_ptr(&d) as usize % 32, 0);
    assert_eq!(d.0[95], 4);
    assert_eq!(
        m.ksize(KBox::as_ptr(&d) as *const u8),
        96,
        "the 96 class is 32-aligned"
    );
    // Large values go to the page allocator.
    let before = m.nr_large_kmalloc_pages();
    let big = KBox::new_in([7u8; 20_000], GFP_KERNEL, &m).unwrap();
    assert_eq!(m.nr_large_kmalloc_pages() - before, 8);
    assert_eq!(big[19_999], 7);
    drop(big);
    assert_eq!(m.nr_large_kmalloc_pages(), before);
    // Zero-sized types allocate nothing.
    let z = KBox::new_in((), GFP_KERNEL, &m).unwrap();
    let zz = KBox::new_in([0u64; 0], GFP_KERNEL, &m).unwrap();
    drop((z, zz));
    // Uninit + write.
    let u = KBox::<u64, _>::new_uninit_in(GFP_KERNEL, &m).unwrap();
    let w = KBox::write(u, 99);
    assert_eq!(*w, 99);
    drop((a, b, c, d, w));
    for name in [
        "kmalloc-64",
        "kmalloc-4k",
        "kmalloc-8k",
        "kmalloc-96",
        "kmalloc-8",
    ] {
        assert_eq!(active(&m, name), 0, "{name}");
    }
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

#[test]
fn kbox_on_the_default_machine() {
    let b = kmem_hosted::KBox::new(12345u64, GFP_KERNEL).unwrap();
    assert_eq!(*b, 12345);
    assert!(default_machine().virt_addr_valid(kmem_hosted::KBox::as_ptr(&b) as *const u8));
    let p = kmem_hosted::KBox::pin(String::from("pinned"), GFP_KERNEL).unwrap();
    assert_eq!(p.as_str(), "pinned");
    let raw = kmem_hosted::KBox::into_raw(b);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let b = unsafe { kmem_hosted::KBox::from_raw(raw) };
    assert_eq!(*b, 12345);
}

// ---- typed caches -------------------------------------------------------------

static CTORS: AtomicUsize = AtomicUsize::new(0);
static DTORS: AtomicUsize = AtomicUsize::new(0);

/// An object whose construction and destruction are counted.
struct Counted {
    state: u64,
    scratch: [u64; 7],
}

impl Default for Counted {
    fn default() -> Self {
        CTORS.fetch_add(1, Ordering::SeqCst);
        Counted {
            state: 0,
            scratch: [0; 7],
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        DTORS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn typed_cache_constructs_once_per_object() {
    let m = boot();
    // Every step on one CPU: an object freed on another CPU would go to that
    // CPU's slab, and an allocation there would populate (construct) a new one.
    let _pin = common::pin_to_current_cpu();
    let cache: KmemCache<'_, Counted, _> = KmemCache::new(&m, "counted").unwrap();
    assert_eq!(cache.name(), "counted");
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let per_slab = unsafe { cache.raw().as_ref() }.oo.objects as usize;
    assert!(per_slab > 1);
    assert_eq!(
        CTORS.load(Ordering::SeqCst),
        0,
        "nothing constructed before the first slab"
    );

    // The first allocation populates one slab: every object is constructed.
    let first = cache.alloc(GFP_KERNEL).unwrap();
    assert_eq!(CTORS.load(Ordering::SeqCst), per_slab);
    assert_eq!(first.state, 0);
    drop(first);

    // Fill the slab, mark every object, give them all back.
    let mut marks = HashMap::new();
    let mut held = Vec::new();
    for i in 0..per_slab {
        let mut o = cache.alloc(GFP_KERNEL).unwrap();
        o.state = 1000 + i as u64;
        o.scratch[6] = i as u64;
        marks.insert(kmem::CacheBox::as_ptr(&o) as usize, 1000 + i as u64);
        held.push(o);
    }
    assert_eq!(CTORS.load(Ordering::SeqCst), per_slab, "alloc does not construct");
    drop(held);
    assert_eq!(DTORS.load(Ordering::SeqCst), 0, "free does not destroy");

    // Allocated again, the objects come back exactly as they were left.
    for _ in 0..20 {
        let mut again = Vec::new();
        for _ in 0..per_slab {
            let o = cache.alloc(GFP_KERNEL).unwrap();
            let p = kmem::CacheBox::as_ptr(&o) as usize;
            assert_eq!(Some(&o.state), marks.get(&p), "object {p:#x} kept its state");
            assert_eq!(o.scratch[6] + 1000, o.state);
            again.push(o);
        }
        drop(again);
    }
    assert_eq!(
        CTORS.load(Ordering::SeqCst),
        per_slab,
        "still one construction per object"
    );

    // alloc_with stores a new value and drops the old one.
    let o = cache
        .alloc_with(
            Counted {
                state: 7,
                scratch: [0; 7],
            },
            GFP_KERNEL,
        )
        .unwrap();
    assert_eq!(o.state, 7);
    assert_eq!(DTORS.load(Ordering::SeqCst), 1, "the replaced value was dropped");
    drop(o);

    // Shrinking frees the empty slab: each object's T is destroyed then.
    assert_eq!(cache.shrink(), 0, "no slabs left");
    assert_eq!(DTORS.load(Ordering::SeqCst), 1 + per_slab);

    // A new slab constructs again.
    let o = cache.alloc(GFP_KERNEL).unwrap();
    assert_eq!(CTORS.load(Ordering::SeqCst), 2 * per_slab);
    assert_eq!(o.state, 0);
    drop(o);
    drop(cache);
    assert_eq!(
        DTORS.load(Ordering::SeqCst),
        1 + 2 * per_slab,
        "destroying the cache drops the rest"
    );
    let log = m.dmesg();
    assert!(!log.contains("BUG") && !log.contains("WARNING"), "{log}");
}

#[test]
fn typed_cache_alignment_and_threads() {
    #[derive(Default)]
    #[repr(align(128))]
    struct Line {
        hits: u64,
    }
    let m = boot();
    let cache: KmemCache<'_, Line, _> = KmemCache::new(&m, "lines").unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut v = Vec::new();
                for i in 0..5000u64 {
                    let mut o = cache.alloc(GFP_KERNEL).unwrap();
                    assert_eq!(kmem::CacheBox::as_ptr(&o) as usize % 128, 0);
                    o.hits += i;
                    v.push(o);
                    if v.len() > 100 {
                        v.drain(..50);
                    }
                }
            });
        }
    });
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let (active_objs, ..) = m.cache_counts(unsafe { cache.raw().as_ref() });
    assert_eq!(active_objs, 0);
    drop(cache);
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

#[test]
fn typed_cache_destroyed_with_live_objects_is_reported() {
    let m = boot();
    let cache: KmemCache<'_, u64, _> = KmemCache::new(&m, "leaky").unwrap();
    let o = cache.alloc(GFP_KERNEL).unwrap();
    std::mem::forget(o);
    drop(cache);
    let log = m.dmesg();
    assert!(log.contains("Objects remaining"), "{log}");
    assert!(log.contains("kmem_cache_destroy leaky"), "{log}");
}

// ---- allocator-api2 -------------------------------------------------------------

#[test]
fn allocator_api2_vec_push_grow_shrink() {
    let m = boot();
    let a = KmallocAllocator::new(&m, GFP_KERNEL);
    let mut v: AVec<u64, _> = AVec::new_in(a);
    let mut last = core::ptr::null();
    let mut moves = 0;
    for i in 0..100_000u64 {
        v.push(i * 3);
        if v.as_ptr() != last {
            assert!(m.virt_addr_valid(v.as_ptr() as *const u8));
            last = v.as_ptr();
            moves += 1;
        }
    }
    assert!(moves > 5, "the buffer grew through several classes");
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    assert!(m.nr_large_kmalloc_pages() >= 256, "800 KB is a large kmalloc");
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(&v[..3], &[0, 3, 6]);
    drop(v);
    assert_eq!(m.nr_large_kmalloc_pages(), 0);

    // Growing within the size class keeps the pointer (krealloc).
    let mut w: AVec<u8, _> = AVec::with_capacity_in(40, a);
    w.extend_from_slice(&[9; 40]);
    let p = w.as_ptr();
    w.reserve_exact(24);
    assert_eq!(w.as_ptr(), p, "40 -> 64 bytes stays in kmalloc-64");
    w.reserve_exact(100);
    assert_ne!(w.as_ptr(), p);
    assert_eq!(&w[..], &[9; 40]);
    drop(w);

    // Over-aligned elements, zeroed allocations, boxes.
    #[derive(Clone, Copy)]
    #[repr(align(256))]
    struct Big(u8);
    let mut b: AVec<Big, _> = AVec::new_in(a);
    for i in 0..300 {
        b.push(Big(i as u8));
        assert_eq!(b.as_ptr() as usize % 256, 0);
    }
    assert_eq!(b[299].0, 43);
    drop(b);
    let z: AVec<u32, _> = allocator_api2::vec::from_elem_in(0u32, 5000, a);
    assert!(z.iter().all(|&x| x == 0));
    let bx = allocator_api2::boxed::Box::new_in([5u16; 9], a);
    assert_eq!(bx[8], 5);
    drop((z, bx));
    for name in ["kmalloc-64", "kmalloc-128", "kmalloc-8k"] {
        assert_eq!(active(&m, name), 0, "{name}");
    }
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}

/// The kvmalloc flavour (Rust-for-Linux's `KVVec`): past kmalloc's 4 MiB the
/// buffer moves to vmalloc, and shrinking far brings it back.
#[test]
fn kvmalloc_allocator_vec_outgrows_kmalloc() {
    let m = boot();
    let a = KVmallocAllocator::new(&m, GFP_KERNEL);
    assert_eq!(format!("{a:?}"), format!("KVmallocAllocator({:?})", GFP_KERNEL));
    let mut v: AVec<u64, _> = AVec::new_in(a);
    for i in 0..(2u64 << 20) {
        v.push(i);
    }
    assert!(m.is_vmalloc_addr(v.as_ptr() as *const u8), "16 MiB is vmalloc");
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
    v.truncate(100);
    v.shrink_to_fit();
    assert!(
        m.virt_addr_valid(v.as_ptr() as *const u8),
        "800 bytes is kmalloc again"
    );
    assert_eq!(v[99], 99);
    drop(v);
    // Zeroed and over-aligned large buffers.
    #[derive(Clone, Copy)]
    #[repr(align(8192))]
    struct Chunk([u8; 8192]);
    let z: AVec<Chunk, _> = allocator_api2::vec::from_elem_in(Chunk([0; 8192]), 1024, a);
    assert_eq!(z.as_ptr() as usize % 8192, 0);
    assert!(z.iter().all(|c| c.0.iter().all(|&b| b == 0)));
    drop(z);
    assert_eq!(m.vmalloc_nr_pages(), 0, "every vmalloc area was freed");
    assert!(!m.dmesg().contains("WARNING"), "{}", m.dmesg());
}

// ---- the global allocator -------------------------------------------------------

#[test]
fn global_allocator_serves_std_collections() {
    let m = default_machine();
    // Our own heap allocations are kmalloc memory of the default machine.
    let b = Box::new([0u8; 64]);
    assert!(m.virt_addr_valid(&*b as *const [u8; 64] as *const u8));
    assert!(kmem_hosted::global::kmem_alloc_ready());

    // Hold many 64-byte boxes: each is an object of kmalloc-64. (Other
    // tests use the same machine at the same time, so the cache's counters
    // prove nothing here; the objects' own cache does.)
    let kmalloc_64 = find_cache(m, "kmalloc-64");
    let held: Vec<Box<[u8; 64]>> = (0..10_000).map(|i| Box::new([i as u8; 64])).collect();
    for b in &held {
        let p = &**b as *const [u8; 64] as *const u8;
        let slab = m.virt_to_slab(p).expect("a slab object");
        // SAFETY: a slab page of the default machine records its cache.
        assert_eq!(unsafe { slab.as_ref() }.mapping, kmalloc_64.as_ptr() as usize);
    }
    assert!(held.iter().enumerate().all(|(i, b)| b[63] == i as u8));
    drop(held);

    // A big Vec is a large kmalloc: whole pages in the linear map.
    let big = vec![1u32; 1 << 18];
    assert!(m.virt_addr_valid(big.as_ptr() as *const u8));
    assert!(m.virt_to_slab(big.as_ptr() as *const u8).is_none());
    assert_eq!(m.ksize(big.as_ptr() as *const u8), 1 << 20);
    assert_eq!(big.iter().map(|&x| x as usize).sum::<usize>(), 1 << 18);
    drop(big);

    // Strings, HashMaps, realloc through growth, threads.
    let mut s = String::new();
    for i in 0..10_000 {
        s.push_str(&i.to_string());
    }
    assert_eq!(s.len(), 38890);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut map: HashMap<String, Vec<u32>> = HashMap::new();
                for i in 0..5_000u32 {
                    map.entry(format!("key-{}", i % 500)).or_default().push(i + t);
                }
                map
            })
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        let map = h.join().unwrap();
        assert_eq!(map.len(), 500);
        assert_eq!(map["key-7"].len(), 10);
        assert_eq!(map["key-7"][1], 507 + t as u32);
    }
    // Over-aligned std allocations.
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let pages: Vec<Box<Page>> = (0..16).map(|_| Box::new(Page([3; 4096]))).collect();
    for p in &pages {
        assert_eq!(&**p as *const Page as usize % 4096, 0);
        assert_eq!(p.0[4095], 3);
    }
    drop(pages);
    let text = default_machine().proc_read("slabinfo");
    if let Some(t) = text {
        assert!(t.contains("kmalloc-64"));
    }
}

#[test]
fn global_allocator_serves_blocks_beyond_kmalloc() {
    let m = default_machine();
    // Above kmalloc's 4 MiB: a vmalloc area, every byte usable.
    let mut v: Vec<u8> = Vec::with_capacity(16 << 20);
    assert!(m.is_vmalloc_addr(v.as_ptr()), "{:p}", v.as_ptr());
    v.resize(16 << 20, 0xa5);
    assert!(m
        .vmalloc_to_page(v.as_ptr().wrapping_add((16 << 20) - 1))
        .is_some());
    assert!(v.iter().all(|&b| b == 0xa5));
    drop(v);

    // Growth by doubling crosses kmalloc-N, large kmalloc and vmalloc, keeping
    // the contents; shrinking far moves back to kmalloc.
    let mut w: Vec<u64> = Vec::new();
    for i in 0..(3u64 << 20) {
        w.push(i);
    }
    assert!(m.is_vmalloc_addr(w.as_ptr() as *const u8));
    assert!(w.iter().enumerate().all(|(i, &x)| x == i as u64));
    w.truncate(10);
    w.shrink_to_fit();
    assert!(m.virt_addr_valid(w.as_ptr() as *const u8), "{:p}", w.as_ptr());
    assert_eq!(w, (0..10).collect::<Vec<u64>>());

    // Over-aligned and zeroed large blocks.
    let layout = std::alloc::Layout::from_size_align(5 << 20, 2 << 20).unwrap();
    // SAFETY: a non-zero layout; freed with the same layout below.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout);
        assert!(!p.is_null());
        assert_eq!(p as usize % (2 << 20), 0);
        assert!(std::slice::from_raw_parts(p, layout.size())
            .iter()
            .all(|&b| b == 0));
        let q = std::alloc::realloc(p, layout, 9 << 20);
        assert!(!q.is_null());
        assert_eq!(q as usize % (2 << 20), 0);
        std::alloc::dealloc(q, std::alloc::Layout::from_size_align(9 << 20, 2 << 20).unwrap());
    }
    assert!(!m.dmesg().contains("WARNING"), "{}", m.dmesg());
}

/// Printing a backtrace reads the binary's debug information into a few
/// MiB of heap; with kmalloc alone that failed and the process hung
/// (the allocation-failure hook waits for the backtrace lock the printer holds).
#[test]
fn backtraces_resolve_on_the_global_allocator() {
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    assert!(bt.contains("backtraces_resolve_on_the_global_allocator"), "{bt}");
}

/// A default machine that cannot boot (`KMEM_CMDLINE=mem=1M`): `KmemAlloc`
/// says why once on stderr and the program runs on `malloc` (here a copy of
/// this test binary, whose harness allocates first).
#[test]
fn global_allocator_falls_back_to_malloc_when_the_machine_cannot_boot() {
    const NAME: &str = "global_allocator_falls_back_to_malloc_when_the_machine_cannot_boot";
    if std::env::var_os("KMEM_GLOBAL_CHILD").is_some() {
        assert!(!kmem_hosted::global::kmem_alloc_ready());
        let v: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        assert_eq!(v[999], "999");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--test-threads=1"])
        .env("KMEM_CMDLINE", "mem=1M quiet")
        .env("KMEM_GLOBAL_CHILD", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{err}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    assert_eq!(err.matches("; allocating with malloc").count(), 1, "{err}");
    assert!(err.contains("mem= must be at least 2M"), "{err}");
}
