//! Object-allocator workloads: kmem's slab caches and kmalloc against the
//! general-purpose allocators a Rust program reaches through `GlobalAlloc`
//! (glibc, mimalloc, jemalloc) and a typed cache (`slab::Slab`).
//!
//! Every workload is generic over [`ObjAllocator`]: an allocator of objects
//! of one size, fixed when the instance is made, implemented for
//!
//! * [`KmemCacheObjs`]: `kmem_cache_alloc(GFP_KERNEL)` / `kmem_cache_free` on a
//!   cache of its own (`kmem_cache_create("bench-N", N, 0, 0, NULL)`);
//! * [`KmallocObjs`]: `kmalloc(N, GFP_KERNEL)` / `kfree` with a constant `N`
//!   (the kernel's usual call), and [`KmallocVar`] with a run-time size;
//! * [`Global`]`<A>` for any `GlobalAlloc`: `std::alloc::System` (glibc
//!   malloc), `mimalloc::MiMalloc`, `tikv_jemallocator::Jemalloc`, called
//!   directly with `Layout(N, 8)` (none of them is this program's global
//!   allocator, so no other code shares their per-thread caches);
//! * [`TypedSlab`]: `slab::Slab<MaybeUninit<[u8; N]>>`, `insert`/`remove`
//!   (single-threaded: a `Vec` of entries with a free list, no locking).
//!
//! The workloads are `#[inline(always)]`, so each benchmark or
//! instruction-count entry point gets a copy specialised for one allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use kmem::slab::{KmemCache, SlabFlags};
use kmem::Kmem;
use kmem::GFP_KERNEL;
use kmem_hosted::{HostedPlatform, Machine};
use std::hint::black_box;

/// The operations the workloads need from an object allocator.
pub trait ObjAllocator {
    /// What an allocation returns (a pointer, or a key for `slab::Slab`).
    type Obj: Copy + Send;
    /// Allocate one object.
    fn alloc(&self) -> Option<Self::Obj>;
    /// Free an object.
    ///
    /// # Safety
    /// `obj` came from `alloc` on this allocator and is not freed twice.
    unsafe fn free(&self, obj: Self::Obj);
}

/// An object's address, handed between threads by the cross-thread case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjPtr(pub NonNull<u8>);

// SAFETY: an allocated object belongs to whoever holds its address; the
// allocators measured here all allow freeing from any thread.
unsafe impl Send for ObjPtr {}

/// A kmem slab cache of its own.
pub struct KmemCacheObjs<'m> {
    /// The machine's core, held directly (as kernel code reaches the
    /// allocator's static state), not through the `Machine` handle.
    m: &'m Kmem<HostedPlatform>,
    s: NonNull<KmemCache>,
}

// SAFETY: the cache is a machine-wide object whose operations are thread-safe;
// the pointer is only a handle.
unsafe impl Sync for KmemCacheObjs<'_> {}

impl<'m> KmemCacheObjs<'m> {
    /// Create a cache `bench-<size>` of `size`-byte objects on `m`.
    pub fn new(m: &'m Machine, size: usize) -> Self {
        let s = m
            .kmem_cache_create(&format!("bench-{size}"), size, 0, SlabFlags(0), None)
            .expect("kmem_cache_create");
        KmemCacheObjs { m: m.kmem(), s }
    }

    /// The cache.
    pub fn cache(&self) -> NonNull<KmemCache> {
        self.s
    }
}

impl Drop for KmemCacheObjs<'_> {
    fn drop(&mut self) {
        // SAFETY: created in `new`; the workloads free every object they take.
        unsafe { self.m.kmem_cache_destroy(self.s) };
    }
}

impl ObjAllocator for KmemCacheObjs<'_> {
    type Obj = ObjPtr;

    #[inline(always)]
    fn alloc(&self) -> Option<ObjPtr> {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { self.m.kmem_cache_alloc(self.s, GFP_KERNEL) }
            .ok()
            .map(ObjPtr)
    }

    #[inline(always)]
    unsafe fn free(&self, obj: ObjPtr) {
        // SAFETY: forwarded from the caller.
        unsafe { self.m.kmem_cache_free(self.s, obj.0.as_ptr()) }
    }
}

/// `kmalloc(N, GFP_KERNEL)` / `kfree` with a constant size, as kernel code
/// calls it (`kmalloc(sizeof(*p), GFP_KERNEL)`): the size class is chosen at
/// compile time.
pub struct KmallocObjs<'m, const N: usize> {
    /// The machine's core, held directly (as kernel code reaches the
    /// allocator's static state), not through the `Machine` handle.
    m: &'m Kmem<HostedPlatform>,
}

impl<'m, const N: usize> KmallocObjs<'m, N> {
    /// kmalloc of `N` bytes on `m`.
    pub fn new(m: &'m Machine) -> Self {
        KmallocObjs { m: m.kmem() }
    }
}

impl<const N: usize> ObjAllocator for KmallocObjs<'_, N> {
    type Obj = ObjPtr;

    #[inline(always)]
    fn alloc(&self) -> Option<ObjPtr> {
        self.m.kmalloc(N, GFP_KERNEL).ok().map(ObjPtr)
    }

    #[inline(always)]
    unsafe fn free(&self, obj: ObjPtr) {
        // SAFETY: forwarded from the caller: the object came from kmalloc.
        unsafe { self.m.kfree(obj.0.as_ptr()) }
    }
}

/// `kmalloc(size, GFP_KERNEL)` / `kfree` with a size known only at run time
/// (what `malloc(size)` gets): the size class is looked up on every call.
pub struct KmallocVar<'m> {
    /// The machine's core, held directly (as kernel code reaches the
    /// allocator's static state), not through the `Machine` handle.
    m: &'m Kmem<HostedPlatform>,
    size: usize,
}

impl<'m> KmallocVar<'m> {
    /// kmalloc of `size` bytes on `m`.
    pub fn new(m: &'m Machine, size: usize) -> Self {
        KmallocVar { m: m.kmem(), size }
    }
}

impl ObjAllocator for KmallocVar<'_> {
    type Obj = ObjPtr;

    #[inline(always)]
    fn alloc(&self) -> Option<ObjPtr> {
        self.m.kmalloc(black_box(self.size), GFP_KERNEL).ok().map(ObjPtr)
    }

    #[inline(always)]
    unsafe fn free(&self, obj: ObjPtr) {
        // SAFETY: forwarded from the caller: the object came from kmalloc.
        unsafe { self.m.kfree(obj.0.as_ptr()) }
    }
}

/// A `GlobalAlloc` asked for one layout.
pub struct Global<A> {
    a: A,
    layout: Layout,
}

impl<A: GlobalAlloc> Global<A> {
    /// Objects of `size` bytes, 8-aligned (what `Box<[u64; size / 8]>` asks for).
    pub fn new(a: A, size: usize) -> Self {
        Global {
            a,
            layout: Layout::from_size_align(size, 8).expect("layout"),
        }
    }
}

impl<A: GlobalAlloc> ObjAllocator for Global<A> {
    type Obj = ObjPtr;

    #[inline(always)]
    fn alloc(&self) -> Option<ObjPtr> {
        // SAFETY: the layout has a nonzero size.
        NonNull::new(unsafe { self.a.alloc(self.layout) }).map(ObjPtr)
    }

    #[inline(always)]
    unsafe fn free(&self, obj: ObjPtr) {
        // SAFETY: caller contract: allocated by this allocator with this layout.
        unsafe { self.a.dealloc(obj.0.as_ptr(), self.layout) }
    }
}

/// `slab::Slab` of `N`-byte entries: a typed cache for one thread.
pub struct TypedSlab<const N: usize> {
    slab: UnsafeCell<slab::Slab<MaybeUninit<[u8; N]>>>,
}

impl<const N: usize> TypedSlab<N> {
    /// An empty slab with room for `capacity` entries before it grows.
    pub fn with_capacity(capacity: usize) -> Self {
        TypedSlab {
            slab: UnsafeCell::new(slab::Slab::with_capacity(capacity)),
        }
    }

    /// Entries in use (to check that workloads clean up).
    pub fn len(&self) -> usize {
        // SAFETY: single-threaded (the type is not Sync); no reference is held across calls.
        unsafe { (*self.slab.get()).len() }
    }

    /// Whether no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<const N: usize> ObjAllocator for TypedSlab<N> {
    type Obj = usize;

    #[inline(always)]
    fn alloc(&self) -> Option<usize> {
        // SAFETY: as in `len`.
        Some(unsafe { (*self.slab.get()).insert(MaybeUninit::uninit()) })
    }

    #[inline(always)]
    unsafe fn free(&self, key: usize) {
        // SAFETY: as in `len`; the key is live (caller contract).
        black_box(unsafe { (*self.slab.get()).remove(key) });
    }
}

/// No allocator: hands out one fixed address and frees nothing. The
/// producer/consumer case run on it measures the ring alone, the floor under
/// every allocator's cross-thread figure.
pub struct NoAlloc;

impl ObjAllocator for NoAlloc {
    type Obj = ObjPtr;

    #[inline(always)]
    fn alloc(&self) -> Option<ObjPtr> {
        Some(ObjPtr(black_box(NonNull::dangling())))
    }

    #[inline(always)]
    unsafe fn free(&self, obj: ObjPtr) {
        black_box(obj);
    }
}

// ---- the workloads ---------------------------------------------------------

/// Case (a): `n` alloc+free pairs on one thread. One pair is one operation.
///
/// # Panics
/// If an allocation fails.
#[inline(always)]
pub fn obj_pair<A: ObjAllocator>(a: &A, n: usize) {
    for _ in 0..n {
        let o = black_box(a.alloc().expect("allocation failed"));
        // SAFETY: just allocated, freed once.
        unsafe { a.free(o) };
    }
}

/// Case (b): allocate `count` objects, then free them all, last in first out.
/// `buf` is scratch space. One object (one alloc plus one free) is one operation.
///
/// # Panics
/// If an allocation fails.
#[inline(always)]
pub fn obj_batch<A: ObjAllocator>(a: &A, buf: &mut Vec<A::Obj>, count: usize) {
    buf.clear();
    for _ in 0..count {
        buf.push(black_box(a.alloc().expect("allocation failed")));
    }
    while let Some(o) = buf.pop() {
        // SAFETY: allocated above, freed once.
        unsafe { a.free(o) };
    }
}

/// A repetition of [`obj_pair`] for [`crate::measure_interleaved`]: `n`
/// pairs; ns per pair.
pub fn pair_rep<'a, A: ObjAllocator>(a: &'a A, n: usize) -> Option<crate::Rep<'a>> {
    crate::timed(n, move || obj_pair(a, n))
}

/// A repetition of `rounds` [`obj_batch`]es of `count` objects; ns per object.
pub fn batch_rep<'a, A: ObjAllocator + 'a>(a: &'a A, rounds: usize, count: usize) -> Option<crate::Rep<'a>> {
    let mut buf = Vec::with_capacity(count);
    crate::timed(rounds * count, move || {
        for _ in 0..rounds {
            obj_batch(a, &mut buf, count);
        }
    })
}

/// A repetition of [`obj_cross_thread`] between host CPUs 0 and 1: `n`
/// objects; ns per object.
pub fn cross_rep<'a, A: ObjAllocator + Sync>(a: &'a A, n: usize) -> Option<crate::Rep<'a>> {
    Some(Box::new(move || obj_cross_thread(a, n, (0, 1))))
}

/// A bounded single-producer single-consumer ring of objects: the channel of
/// the cross-thread case, the same for every allocator. Lock-free: the
/// producer owns `tail`, the consumer `head`, each on its own cache line.
pub struct Ring<T> {
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

#[repr(align(128))]
struct CachePadded<T>(T);

// SAFETY: a slot is written by the producer only while it is outside
// head..tail and read by the consumer only while it is inside; the
// release/acquire pairs on head and tail order those accesses.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T: Copy + Send> Ring<T> {
    /// A ring of `cap` slots (a power of two).
    pub fn new(cap: usize) -> Self {
        assert!(cap.is_power_of_two());
        Ring {
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(AtomicUsize::new(0)),
            slots: (0..cap).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect(),
        }
    }

    /// Push (producer only); spins while the ring is full.
    #[inline(always)]
    pub fn push(&self, v: T) {
        let t = self.tail.0.load(Ordering::Relaxed);
        while t.wrapping_sub(self.head.0.load(Ordering::Acquire)) == self.slots.len() {
            core::hint::spin_loop();
        }
        // SAFETY: slot t is outside head..tail: only the producer touches it.
        unsafe { (*self.slots[t & (self.slots.len() - 1)].get()).write(v) };
        self.tail.0.store(t.wrapping_add(1), Ordering::Release);
    }

    /// Pop (consumer only); spins while the ring is empty.
    #[inline(always)]
    pub fn pop(&self) -> T {
        let h = self.head.0.load(Ordering::Relaxed);
        while self.tail.0.load(Ordering::Acquire) == h {
            core::hint::spin_loop();
        }
        // SAFETY: slot h is inside head..tail: written by the producer (acquire above).
        let v = unsafe { (*self.slots[h & (self.slots.len() - 1)].get()).assume_init() };
        self.head.0.store(h.wrapping_add(1), Ordering::Release);
        v
    }
}

/// Slots of the producer/consumer ring.
pub const RING_SLOTS: usize = 256;

/// Case (d), one side: allocate `n` objects and hand each to the consumer.
///
/// # Panics
/// If an allocation fails.
#[inline(always)]
pub fn obj_produce<A: ObjAllocator>(a: &A, ring: &Ring<A::Obj>, n: usize) {
    for _ in 0..n {
        ring.push(a.alloc().expect("allocation failed"));
    }
}

/// Case (d), other side: take `n` objects from the producer and free each.
#[inline(always)]
pub fn obj_consume<A: ObjAllocator>(a: &A, ring: &Ring<A::Obj>, n: usize) {
    for _ in 0..n {
        let o = ring.pop();
        // SAFETY: each object was allocated by the producer and is freed once, here.
        unsafe { a.free(o) };
    }
}

/// Case (d) whole: a producer thread on host CPU `cpus.0` and a consumer on
/// `cpus.1` pass `n` objects; returns the wall time in ns per object
/// (from both threads' start to the consumer's last free).
pub fn obj_cross_thread<A: ObjAllocator + Sync>(a: &A, n: usize, cpus: (usize, usize)) -> f64 {
    let ring = Ring::new(RING_SLOTS);
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let (ring, barrier) = (&ring, &barrier);
        s.spawn(move || {
            crate::pin_to_cpu(cpus.0);
            barrier.wait();
            obj_produce(a, ring, n);
        });
        let consumer = s.spawn(move || {
            crate::pin_to_cpu(cpus.1);
            barrier.wait();
            let t = std::time::Instant::now();
            obj_consume(a, ring, n);
            t.elapsed().as_nanos() as f64 / n as f64
        });
        consumer.join().unwrap()
    })
}
