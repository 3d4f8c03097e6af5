//! The Rust front door: owned boxes over kmalloc, typed slab caches, and an
//! `allocator-api2` allocator.
//!
//! * [`KBox<T>`] is Rust-for-Linux's `KBox`: `KBox::new(x, GFP_KERNEL)?`
//!   allocates `size_of::<T>()` bytes with kmalloc (with `T`'s alignment),
//!   moves `x` in, and on drop runs `T`'s destructor and `kfree`s. Failure is
//!   an [`AllocError`], never a panic. A machine is a value, so a box holds a
//!   `&'k Kmem<P>` next to its pointer; on platforms with a process-wide
//!   machine ([`DefaultMachine`], e.g. the hosted `default_machine()`)
//!   `KBox::new` uses it, elsewhere `KBox::new_in(x, gfp, &machine)`.
//!
//! * [`KmemCache<T>`] is a slab cache of `T` with Bonwick's object caching:
//!   objects are **constructed once**, when a slab is populated, with
//!   `T::default()`, and stay constructed while they sit free in the cache.
//!   [`KmemCache::alloc`] hands out such a constructed object as a
//!   [`CacheBox`]; dropping the `CacheBox` gives the object back *without*
//!   dropping the `T` — the next `alloc` may get it back exactly as it was
//!   left (that is the point: no re-initialisation on the hot path). `T`'s
//!   destructor runs when the slab holding the object goes back to the page
//!   allocator (cache shrink, memory pressure, cache destruction), so no
//!   resource a `T` owns is leaked. To run drop logic on every free, use a
//!   `KBox` instead. [`KmemCache::alloc_with`] stores a fresh value (dropping
//!   the one the object held).
//!
//!   A constructor of the slab layer is a plain `fn(*mut u8)`: it cannot
//!   capture a closure, so the typed cache uses a generic trampoline per type
//!   (`T::default()` written in place). Types that need another constructor
//!   implement `Default` (a newtype will do), or use the `unsafe`
//!   [`KmemCache::with_ctor`].
//!
//! * [`KmallocAllocator`] implements `allocator_api2::alloc::Allocator`, so
//!   `allocator_api2::vec::Vec::new_in(KmallocAllocator::new(&m, GFP_KERNEL))`
//!   keeps its buffer in kmalloc memory; growing uses `krealloc` when the
//!   alignment allows, so a buffer grows in place while its size class has
//!   room. [`KVmallocAllocator`] (Rust-for-Linux's `KVmalloc`) is the same
//!   with `kvmalloc`'s policy: beyond 8 KiB a large kmalloc if one comes
//!   without retrying, else vmalloc, so buffers may outgrow kmalloc's 4 MiB.

use crate::gfp::*;
use crate::kmalloc::ARCH_KMALLOC_MINALIGN;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::slab::{self, SlabFlags};
use crate::AllocError;
use core::fmt;
use core::marker::PhantomData;
use core::mem::{self, ManuallyDrop, MaybeUninit};
use core::ops::{Deref, DerefMut};
use core::pin::Pin;
use core::ptr::{self, NonNull};

/// A platform with a process-wide machine, used when no machine is named
/// (`KBox::new`). The hosted home implements it with `default_machine()`.
pub trait DefaultMachine: Platform + Sized + 'static {
    /// The process-wide machine (booted on first use).
    fn default_machine() -> &'static Kmem<Self>;
}

// ---------------------------------------------------------------------------
// KBox
// ---------------------------------------------------------------------------

/// An owned `T` in kmalloc memory of the machine `'k` (Rust-for-Linux's `KBox`).
///
/// # Invariants
/// `ptr` is a live kmalloc allocation of `kmem` holding an initialised `T`
/// aligned for `T`, owned by this box; or, for zero-sized `T`, a dangling
/// aligned pointer that was never allocated.
pub struct KBox<'k, T, P: Platform> {
    ptr: NonNull<T>,
    kmem: &'k Kmem<P>,
    _owns: PhantomData<T>,
}

// SAFETY: a KBox owns its T like a Box does; the machine is Sync.
unsafe impl<T: Send, P: Platform> Send for KBox<'_, T, P> {}
// SAFETY: shared access to the box only gives shared access to T.
unsafe impl<T: Sync, P: Platform> Sync for KBox<'_, T, P> {}

impl<'k, T, P: Platform> KBox<'k, T, P> {
    /// Allocate uninitialised memory for a `T`.
    #[track_caller]
    pub fn new_uninit_in(gfp: Gfp, kmem: &'k Kmem<P>) -> Result<KBox<'k, MaybeUninit<T>, P>, AllocError> {
        let ptr = if mem::size_of::<T>() == 0 {
            NonNull::dangling()
        } else {
            kmem.kmalloc_aligned(mem::size_of::<T>(), mem::align_of::<T>(), gfp)?
                .cast::<MaybeUninit<T>>()
        };
        Ok(KBox {
            ptr,
            kmem,
            _owns: PhantomData,
        })
    }

    /// `KBox::new` on a named machine: move `value` into kmalloc memory.
    #[track_caller]
    pub fn new_in(value: T, gfp: Gfp, kmem: &'k Kmem<P>) -> Result<Self, AllocError> {
        Ok(KBox::write(Self::new_uninit_in(gfp, kmem)?, value))
    }

    /// `KBox::pin` on a named machine.
    #[track_caller]
    pub fn pin_in(value: T, gfp: Gfp, kmem: &'k Kmem<P>) -> Result<Pin<Self>, AllocError> {
        Ok(Self::into_pin(Self::new_in(value, gfp, kmem)?))
    }

    /// Pin a box (its contents never move again).
    pub fn into_pin(b: Self) -> Pin<Self> {
        // SAFETY: the T lives in the allocation, which moves only if the box is
        // taken apart, and a Pin<KBox> offers no way to do that.
        unsafe { Pin::new_unchecked(b) }
    }

    /// The machine the memory belongs to.
    pub fn machine(b: &Self) -> &'k Kmem<P> {
        b.kmem
    }

    /// Give up ownership: the raw pointer (free it with [`KBox::from_raw_in`]).
    pub fn into_raw(b: Self) -> *mut T {
        ManuallyDrop::new(b).ptr.as_ptr()
    }

    /// Take back ownership of a pointer from [`KBox::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from `KBox::<T, P>::into_raw` of a box of `kmem`, and is
    /// not owned by anything else.
    pub unsafe fn from_raw_in(ptr: *mut T, kmem: &'k Kmem<P>) -> Self {
        KBox {
            // SAFETY: into_raw never returns null.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            kmem,
            _owns: PhantomData,
        }
    }

    /// Leak the box: the `T` lives (and its memory stays allocated) for `'k`.
    pub fn leak(b: Self) -> &'k mut T
    where
        T: 'k,
    {
        // SAFETY: the allocation is never freed, so it lives as long as the machine.
        unsafe { &mut *Self::into_raw(b) }
    }

    /// Move the value out and free the memory.
    pub fn into_inner(b: Self) -> T {
        let b = ManuallyDrop::new(b);
        // SAFETY: the box holds an initialised T, which we move out; the
        // memory is freed below without dropping it again.
        let value = unsafe { ptr::read(b.ptr.as_ptr()) };
        // SAFETY: a live allocation of this box (dangling ZST pointers are skipped).
        unsafe { free_kbox_memory::<T, P>(b.kmem, b.ptr.as_ptr()) };
        value
    }

    /// The raw pointer, still owned by the box.
    pub fn as_ptr(b: &Self) -> *const T {
        b.ptr.as_ptr()
    }
}

impl<'k, T, P: Platform> KBox<'k, MaybeUninit<T>, P> {
    /// Initialise the memory with `value`.
    pub fn write(b: Self, value: T) -> KBox<'k, T, P> {
        let b = ManuallyDrop::new(b);
        // SAFETY: the memory is ours and sized and aligned for T.
        unsafe { b.ptr.as_ptr().cast::<T>().write(value) };
        KBox {
            ptr: b.ptr.cast(),
            kmem: b.kmem,
            _owns: PhantomData,
        }
    }

    /// Declare the memory initialised.
    ///
    /// # Safety
    /// The `T` has been fully initialised.
    pub unsafe fn assume_init(b: Self) -> KBox<'k, T, P> {
        let b = ManuallyDrop::new(b);
        KBox {
            ptr: b.ptr.cast(),
            kmem: b.kmem,
            _owns: PhantomData,
        }
    }
}

impl<T, P: DefaultMachine> KBox<'static, T, P> {
    /// `KBox::new(x, GFP_KERNEL)?` on the process-wide machine.
    #[track_caller]
    pub fn new(value: T, gfp: Gfp) -> Result<Self, AllocError> {
        Self::new_in(value, gfp, P::default_machine())
    }

    /// `KBox::pin(x, GFP_KERNEL)?` on the process-wide machine.
    #[track_caller]
    pub fn pin(value: T, gfp: Gfp) -> Result<Pin<Self>, AllocError> {
        Self::pin_in(value, gfp, P::default_machine())
    }

    /// Uninitialised memory for a `T` on the process-wide machine.
    #[track_caller]
    pub fn new_uninit(gfp: Gfp) -> Result<KBox<'static, MaybeUninit<T>, P>, AllocError> {
        Self::new_uninit_in(gfp, P::default_machine())
    }

    /// [`KBox::from_raw_in`] on the process-wide machine.
    ///
    /// # Safety
    /// As `from_raw_in`, for a box of the default machine.
    pub unsafe fn from_raw(ptr: *mut T) -> Self {
        // SAFETY: forwarded.
        unsafe { Self::from_raw_in(ptr, P::default_machine()) }
    }
}

/// Free a box's memory without touching its contents.
///
/// # Safety
/// `ptr` is the pointer of a `KBox<T>` of `kmem` whose value is gone.
unsafe fn free_kbox_memory<T, P: Platform>(kmem: &Kmem<P>, ptr: *mut T) {
    if mem::size_of::<T>() != 0 {
        // SAFETY: caller contract: a kmalloc allocation of this machine.
        unsafe { kmem.kfree(ptr as *const u8) };
    }
}

impl<T, P: Platform> Drop for KBox<'_, T, P> {
    fn drop(&mut self) {
        // SAFETY: type invariant: we own an initialised T in kmalloc memory.
        unsafe {
            ptr::drop_in_place(self.ptr.as_ptr());
            free_kbox_memory::<T, P>(self.kmem, self.ptr.as_ptr());
        }
    }
}

impl<T, P: Platform> Deref for KBox<'_, T, P> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: type invariant.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T, P: Platform> DerefMut for KBox<'_, T, P> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: type invariant; we own the T.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T, P: Platform> AsRef<T> for KBox<'_, T, P> {
    fn as_ref(&self) -> &T {
        self
    }
}

impl<T, P: Platform> AsMut<T> for KBox<'_, T, P> {
    fn as_mut(&mut self) -> &mut T {
        self
    }
}

impl<T: fmt::Debug, P: Platform> fmt::Debug for KBox<'_, T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: fmt::Display, P: Platform> fmt::Display for KBox<'_, T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: PartialEq, P: Platform> PartialEq for KBox<'_, T, P> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<'k, T, P: Platform> From<KBox<'k, T, P>> for Pin<KBox<'k, T, P>> {
    fn from(b: KBox<'k, T, P>) -> Self {
        KBox::into_pin(b)
    }
}

// ---------------------------------------------------------------------------
// Typed slab caches
// ---------------------------------------------------------------------------

/// The constructor trampoline of a typed cache: `T::default()` in place.
fn ctor_default<T: Default>(obj: *mut u8, _s: *const slab::KmemCache, _flags: u64) {
    // SAFETY: the slab layer passes an object slot of the cache, sized and
    // aligned for T (the cache was created with T's size and alignment).
    unsafe { (obj as *mut T).write(T::default()) };
}

/// The destructor trampoline: drop the `T` of an object whose slab is freed.
fn dtor_drop<T>(obj: *mut u8, _s: *const slab::KmemCache, _flags: u64) {
    // SAFETY: every object of a typed cache holds a constructed T from slab
    // creation until the slab is freed, which is when this runs.
    unsafe { ptr::drop_in_place(obj as *mut T) };
}

/// A slab cache of constructed `T` objects (Bonwick's object cache).
///
/// Objects are built with `T::default()` once, when their slab is
/// populated, and keep their state while free: [`CacheBox`] does not drop
/// its `T` when it gives the object back. `T`'s destructor runs when the
/// object's slab is freed. Dropping the cache destroys it; objects still
/// allocated then (only possible by leaking a `CacheBox`) are reported the
/// kernel's way and their slabs leaked.
///
/// `T` must be `Send`: a free object's `T` stays in the cache, and whichever
/// thread frees its slab (a shrinker under memory pressure, say) drops it.
/// The cache is invariant in `T`: a free object keeps the `T` it had, so a
/// cache of `&'static str` must not be usable as one of shorter-lived `&str`.
///
/// # Invariants
/// `cache` is a live cache of `kmem` whose objects are sized and aligned for
/// `T`, and every object holds a constructed `T` from slab population until
/// its slab is freed.
pub struct KmemCache<'k, T, P: Platform> {
    kmem: &'k Kmem<P>,
    cache: NonNull<slab::KmemCache>,
    // Owns `T`s (drop check) and is invariant in `T` (`*mut T`).
    _t: PhantomData<(T, *mut T)>,
}

// SAFETY: the cache hands out Ts to whichever thread allocates; the slab
// layer is thread-safe.
unsafe impl<T: Send, P: Platform> Send for KmemCache<'_, T, P> {}
// SAFETY: as above: allocation through &self moves Ts between threads.
unsafe impl<T: Send, P: Platform> Sync for KmemCache<'_, T, P> {}

impl<'k, T: Default + Send, P: Platform> KmemCache<'k, T, P> {
    /// `kmem_cache_create(name, size_of::<T>(), align_of::<T>(), 0, ctor)`
    /// with `T::default()` as the constructor.
    pub fn new(kmem: &'k Kmem<P>, name: &str) -> Result<Self, AllocError> {
        Self::with_flags(kmem, name, SlabFlags(0))
    }

    /// As [`KmemCache::new`], with cache flags (`SLAB_HWCACHE_ALIGN`,
    /// `SLAB_RECLAIM_ACCOUNT`, debug flags, ...).
    pub fn with_flags(kmem: &'k Kmem<P>, name: &str, flags: SlabFlags) -> Result<Self, AllocError> {
        let dtor: Option<slab::LegacyCtor> = if mem::needs_drop::<T>() {
            Some(dtor_drop::<T>)
        } else {
            None
        };
        let s = kmem
            .kmem_cache_create_legacy(
                name,
                mem::size_of::<T>().max(1),
                mem::align_of::<T>(),
                flags,
                Some(ctor_default::<T>),
                dtor,
            )
            .ok_or(AllocError)?;
        // SAFETY: just created, constructed by the trampolines above.
        unsafe { Self::adopt(kmem, s) }
    }
}

impl<'k, T, P: Platform> KmemCache<'k, T, P> {
    /// A typed cache with a raw constructor (run once per object when a
    /// slab is populated). `T`'s destructor runs when a slab is freed.
    ///
    /// # Safety
    /// `ctor` fully initialises a valid `T` at the pointer it is given.
    pub unsafe fn with_ctor(
        kmem: &'k Kmem<P>,
        name: &str,
        flags: SlabFlags,
        ctor: slab::LegacyCtor,
    ) -> Result<Self, AllocError>
    where
        T: Send,
    {
        let dtor: Option<slab::LegacyCtor> = if mem::needs_drop::<T>() {
            Some(dtor_drop::<T>)
        } else {
            None
        };
        let s = kmem
            .kmem_cache_create_legacy(
                name,
                mem::size_of::<T>().max(1),
                mem::align_of::<T>(),
                flags,
                Some(ctor),
                dtor,
            )
            .ok_or(AllocError)?;
        // SAFETY: caller contract on ctor.
        unsafe { Self::adopt(kmem, s) }
    }

    /// Wrap a fresh cache, checking its objects are aligned for `T`.
    ///
    /// # Safety
    /// `s` is a cache of `kmem` nobody else holds, whose constructor builds a `T`.
    unsafe fn adopt(kmem: &'k Kmem<P>, s: NonNull<slab::KmemCache>) -> Result<Self, AllocError> {
        // SAFETY: a live cache.
        if !kmem.cache_objects_aligned(unsafe { s.as_ref() }, mem::align_of::<T>()) {
            // SAFETY: ours, no objects.
            unsafe { kmem.kmem_cache_destroy(s) };
            return Err(AllocError);
        }
        Ok(KmemCache {
            kmem,
            cache: s,
            _t: PhantomData,
        })
    }

    /// Take a constructed object. `__GFP_ZERO` is ignored: it would destroy
    /// the constructed state (the kernel warns about it).
    #[track_caller]
    pub fn alloc(&self, gfp: Gfp) -> Result<CacheBox<'_, T, P>, AllocError> {
        // SAFETY: a live cache of this machine (created and not destroyed).
        let obj = unsafe { self.kmem.kmem_cache_alloc(self.cache, gfp.without(__GFP_ZERO)) }?;
        Ok(CacheBox {
            obj: obj.cast(),
            kmem: self.kmem,
            cache: self.cache,
            _t: PhantomData,
        })
    }

    /// Take an object and store `value` in it (the `T` it held is dropped).
    #[track_caller]
    pub fn alloc_with(&self, value: T, gfp: Gfp) -> Result<CacheBox<'_, T, P>, AllocError> {
        let mut b = self.alloc(gfp)?;
        *b = value;
        Ok(b)
    }

    /// The slab cache underneath (for statistics: `cache_counts`, `kmem_cache_shrink`).
    pub fn raw(&self) -> NonNull<slab::KmemCache> {
        self.cache
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        // SAFETY: type invariant: a live cache.
        unsafe { self.cache.as_ref() }.name()
    }

    /// `kmem_cache_shrink`: give empty slabs back (their objects' `T`s are dropped).
    pub fn shrink(&self) -> i32 {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { self.kmem.kmem_cache_shrink(self.cache) }
    }

    /// The machine.
    pub fn machine(&self) -> &'k Kmem<P> {
        self.kmem
    }
}

impl<T, P: Platform> Drop for KmemCache<'_, T, P> {
    fn drop(&mut self) {
        // SAFETY: ours; every CacheBox borrowed the cache, so none is alive
        // unless it was leaked, which kmem_cache_destroy reports.
        unsafe { self.kmem.kmem_cache_destroy(self.cache) };
    }
}

impl<T, P: Platform> fmt::Debug for KmemCache<'_, T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmemCache").field("name", &self.name()).finish()
    }
}

/// An object of a [`KmemCache<T>`]. Dropping it returns the object to the
/// cache **without dropping the `T`**: the object stays constructed and may
/// be handed out again as it was left.
///
/// # Invariants
/// `obj` is an allocated object of `cache` holding a constructed `T`, owned
/// by this box.
pub struct CacheBox<'a, T, P: Platform> {
    obj: NonNull<T>,
    kmem: &'a Kmem<P>,
    cache: NonNull<slab::KmemCache>,
    // Owns a `T` and, as its cache, is invariant in `T`.
    _t: PhantomData<(T, *mut T)>,
}

// SAFETY: owns its T; the cache (which it borrows) is thread-safe.
unsafe impl<T: Send, P: Platform> Send for CacheBox<'_, T, P> {}
// SAFETY: shared access gives shared access to T only.
unsafe impl<T: Sync, P: Platform> Sync for CacheBox<'_, T, P> {}

impl<T, P: Platform> CacheBox<'_, T, P> {
    /// The object's address.
    pub fn as_ptr(b: &Self) -> *const T {
        b.obj.as_ptr()
    }
}

impl<T, P: Platform> Drop for CacheBox<'_, T, P> {
    fn drop(&mut self) {
        // SAFETY: type invariant: our object of `cache`; the T stays constructed.
        unsafe {
            self.kmem
                .kmem_cache_free(self.cache, self.obj.as_ptr() as *mut u8)
        };
    }
}

impl<T, P: Platform> Deref for CacheBox<'_, T, P> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: type invariant.
        unsafe { self.obj.as_ref() }
    }
}

impl<T, P: Platform> DerefMut for CacheBox<'_, T, P> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: type invariant; we own the object.
        unsafe { self.obj.as_mut() }
    }
}

impl<T: fmt::Debug, P: Platform> fmt::Debug for CacheBox<'_, T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

// ---------------------------------------------------------------------------
// allocator-api2
// ---------------------------------------------------------------------------

/// The `allocator_api2::alloc::Allocator` behind [`KmallocAllocator`]
/// (`KV = false`) and [`KVmallocAllocator`] (`KV = true`): a machine and the
/// GFP flags every allocation uses.
pub struct KAllocator<'k, P: Platform, const KV: bool> {
    kmem: &'k Kmem<P>,
    gfp: Gfp,
}

/// kmalloc as an `allocator_api2::alloc::Allocator` (Rust-for-Linux's
/// `Kmalloc`).
pub type KmallocAllocator<'k, P> = KAllocator<'k, P, false>;

/// `kvmalloc` as an `allocator_api2::alloc::Allocator` (Rust-for-Linux's
/// `KVmalloc`): kmalloc up to 8 KiB, then a large kmalloc tried without
/// retrying, else vmalloc (which needs a `gfp` that may block); freed with
/// `kvfree`.
pub type KVmallocAllocator<'k, P> = KAllocator<'k, P, true>;

impl<P: Platform, const KV: bool> Clone for KAllocator<'_, P, KV> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: Platform, const KV: bool> Copy for KAllocator<'_, P, KV> {}

impl<P: Platform, const KV: bool> fmt::Debug for KAllocator<'_, P, KV> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if KV {
            "KVmallocAllocator"
        } else {
            "KmallocAllocator"
        };
        f.debug_tuple(name).field(&self.gfp).finish()
    }
}

impl<'k, P: Platform, const KV: bool> KAllocator<'k, P, KV> {
    /// An allocator on `kmem` with `gfp` for every request.
    pub fn new(kmem: &'k Kmem<P>, gfp: Gfp) -> Self {
        KAllocator { kmem, gfp }
    }

    /// The machine.
    pub fn machine(&self) -> &'k Kmem<P> {
        self.kmem
    }

    /// The flags.
    pub fn gfp(&self) -> Gfp {
        self.gfp
    }
}

use allocator_api2::alloc::AllocError as ApiError;
type Layout = core::alloc::Layout;

/// A dangling, aligned pointer for zero-sized requests (never freed).
fn dangling(layout: Layout) -> NonNull<u8> {
    // SAFETY: an alignment is never zero.
    unsafe { NonNull::new_unchecked(ptr::without_provenance_mut(layout.align())) }
}

fn slice(p: NonNull<u8>, len: usize) -> NonNull<[u8]> {
    NonNull::slice_from_raw_parts(p, len)
}

impl<P: Platform, const KV: bool> KAllocator<'_, P, KV> {
    /// `kmalloc_layout`, or `kvmalloc_layout` for the kvmalloc flavour.
    #[inline]
    #[track_caller]
    fn alloc_layout(&self, layout: Layout, gfp: Gfp) -> Result<NonNull<[u8]>, ApiError> {
        if layout.size() == 0 {
            return Ok(slice(dangling(layout), 0));
        }
        let p = if KV {
            self.kmem.kvmalloc_layout(layout, gfp)
        } else {
            self.kmem.kmalloc_layout(layout, gfp)
        };
        Ok(slice(p.map_err(|_| ApiError)?, layout.size()))
    }

    /// `kmalloc_resize`, or `kvmalloc_resize` for the kvmalloc flavour.
    ///
    /// # Safety
    /// As [`Kmem::kmalloc_resize`].
    #[track_caller]
    unsafe fn resize(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, ApiError> {
        // SAFETY: forwarded.
        let p = unsafe {
            if KV {
                self.kmem.kvmalloc_resize(ptr, old, new, self.gfp)
            } else {
                self.kmem.kmalloc_resize(ptr, old, new, self.gfp)
            }
        };
        Ok(slice(p.map_err(|_| ApiError)?, new.size()))
    }
}

// SAFETY: memory handed out stays valid until deallocated through any copy
// of the allocator (they share the machine); kmalloc and kvmalloc honour the
// layout (kmalloc_layout, kvmalloc_layout), and frees go to kfree or kvfree,
// which find the size themselves.
unsafe impl<P: Platform, const KV: bool> allocator_api2::alloc::Allocator for KAllocator<'_, P, KV> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiError> {
        self.alloc_layout(layout, self.gfp)
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiError> {
        self.alloc_layout(layout, self.gfp | __GFP_ZERO)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: allocated by us (trait contract).
            unsafe {
                if KV {
                    self.kmem.kvfree(ptr.as_ptr())
                } else {
                    self.kmem.kfree(ptr.as_ptr())
                }
            }
        }
    }

    unsafe fn grow(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, ApiError> {
        if old.size() == 0 {
            return self.allocate(new);
        }
        // SAFETY: forwarded trait contract.
        unsafe { self.resize(ptr, old, new) }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, ApiError> {
        // SAFETY: forwarded trait contract.
        let p = unsafe { self.grow(ptr, old, new) }?;
        // SAFETY: new.size() bytes are ours; the first old.size() hold the data.
        unsafe {
            ptr::write_bytes(
                p.cast::<u8>().as_ptr().add(old.size()),
                0,
                new.size() - old.size(),
            )
        };
        Ok(p)
    }

    unsafe fn shrink(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, ApiError> {
        if new.size() == 0 {
            // SAFETY: forwarded trait contract.
            unsafe { self.deallocate(ptr, old) };
            return Ok(slice(dangling(new), 0));
        }
        // SAFETY: forwarded trait contract.
        unsafe { self.resize(ptr, old, new) }
    }
}

impl<P: Platform> Kmem<P> {
    /// Resize a `kmalloc_layout` allocation to another layout, keeping the
    /// first `min(old, new)` bytes: the same pointer if its usable size
    /// (`ksize`) holds the new size and it is aligned enough, `krealloc` when
    /// the new alignment is kmalloc's own, else a new allocation, a copy and
    /// a free. On failure the old allocation is untouched. (The
    /// `GlobalAlloc::realloc` and `Allocator::grow/shrink` of kmem.)
    ///
    /// # Safety
    /// `ptr` is a live allocation of this machine made for `old` (non-zero
    /// size); `new` has a non-zero size. On success `ptr` is not used again
    /// unless it was returned.
    #[track_caller]
    pub unsafe fn kmalloc_resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, AllocError> {
        let p = ptr.as_ptr();
        if (p as usize) & (new.align() - 1) == 0 {
            if new.size() <= self.ksize(p) {
                return Ok(ptr);
            }
            if new.align() <= ARCH_KMALLOC_MINALIGN {
                // SAFETY: caller contract.
                return unsafe { self.krealloc(p, new.size(), gfp) };
            }
        }
        let q = self.kmalloc_layout(new, gfp)?;
        // SAFETY: both live and distinct; min(old, new) bytes are valid in both.
        unsafe {
            ptr::copy_nonoverlapping(p, q.as_ptr(), old.size().min(new.size()));
            self.kfree(p);
        }
        Ok(q)
    }
}
