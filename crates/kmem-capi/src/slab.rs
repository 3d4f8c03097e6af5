//! `linux/slab.h`: slab caches and the kmalloc family.
//!
//! **Caches.** `kmem_cache_create` has two C forms that the header tells
//! apart by their argument count: the modern five-argument one with
//! `void (*ctor)(void *)`, and the seeds' 2.6 six-argument one whose
//! constructor and destructor take `(void *obj, kmem_cache_t *cache,
//! unsigned long flags)` and are passed `SLAB_CTOR_CONSTRUCTOR` (with
//! `SLAB_CTOR_ATOMIC` for allocations that may not sleep). The core's
//! callbacks are Rust functions, so every C cache with a constructor or a
//! destructor is created with the core's 2.6-style (`Legacy`) callbacks
//! pointing at two trampolines here; they receive the cache, look its C
//! functions up in a table keyed by the cache's address, and call them.
//!
//! **The table** (`CTORS`) is written only by `kmem_cache_create`, under
//! `CREATE_LOCK`, after the core made the cache and before the caller sees it,
//! so an object can never be constructed before its cache's entry exists (the
//! core builds slabs only on allocation). Each creation overwrites (or, for a
//! cache without callbacks, removes) the entry for its address; destroying a
//! cache leaves the entry, since a cache destroyed with objects remaining is
//! leaked by the core (its slabs may still be freed later, running the
//! destructor) and a new cache at the same address replaces it anyway.
//! Trampolines take the read lock only to copy the entry out, never while
//! calling C.
//!
//! **kmalloc** and friends forward to the core; failure is NULL,
//! `kmalloc(0)` is `ZERO_SIZE_PTR`, `kfree(NULL)` and `kfree(ZERO_SIZE_PTR)`
//! do nothing, and anything kmalloc did not hand out is reported, not freed.

use core::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr};
use core::ptr::{self, NonNull};
use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

use kmem_core::slab::{CtorKind, KmemCache, KmemCacheArgs, SlabFlags};

use crate::{c_str, gfp, k};

/// `void (*ctor)(void *)`.
pub type CCtor = unsafe extern "C" fn(*mut c_void);
/// `void (*)(void *obj, kmem_cache_t *cache, unsigned long flags)`.
pub type CLegacyCtor = unsafe extern "C" fn(*mut c_void, *mut KmemCache, c_ulong);

/// The C callbacks of one cache.
#[derive(Clone, Copy)]
enum Callbacks {
    /// A modern constructor.
    Modern(CCtor),
    /// 2.6-era constructor and destructor.
    Legacy {
        ctor: Option<CLegacyCtor>,
        dtor: Option<CLegacyCtor>,
    },
}

/// C callbacks by cache address.
static CTORS: RwLock<BTreeMap<usize, Callbacks>> = RwLock::new(BTreeMap::new());
/// Serialises cache creation with its table update.
static CREATE_LOCK: Mutex<()> = Mutex::new(());

fn callbacks_of(s: *const KmemCache) -> Option<Callbacks> {
    CTORS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(s as usize))
        .copied()
}

/// The core's constructor for every C cache with callbacks.
fn ctor_trampoline(obj: *mut u8, s: *const KmemCache, flags: u64) {
    match callbacks_of(s) {
        // The creator of the cache promised the constructor may be called on its objects.
        // SAFETY: `obj` is one, being set up.
        Some(Callbacks::Modern(f)) => unsafe { f(obj as *mut c_void) },
        // SAFETY: as above.
        Some(Callbacks::Legacy { ctor: Some(f), .. }) => unsafe {
            f(obj as *mut c_void, s as *mut KmemCache, flags as c_ulong)
        },
        _ => {}
    }
}

/// The core's destructor for every C cache with a 2.6-era destructor.
fn dtor_trampoline(obj: *mut u8, s: *const KmemCache, flags: u64) {
    if let Some(Callbacks::Legacy { dtor: Some(d), .. }) = callbacks_of(s) {
        // The creator promised the destructor may be called on the objects of a slab being freed.
        // SAFETY: `obj` is one.
        unsafe { d(obj as *mut c_void, s as *mut KmemCache, flags as c_ulong) }
    }
}

/// Create a cache and record its C callbacks.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; the callbacks may be called on
/// the cache's objects from any thread while the cache lives.
unsafe fn create(
    name: *const c_char,
    size: usize,
    align: usize,
    flags: c_ulong,
    callbacks: Option<Callbacks>,
) -> *mut KmemCache {
    let k = k();
    // SAFETY: caller's contract.
    let name = match unsafe { c_str(name) } {
        Some(n) => n,
        None => {
            crate::warn(k, format_args!("kmem_cache_create: cache name is not UTF-8"));
            return ptr::null_mut();
        }
    };
    let Ok(flags) = u32::try_from(flags) else {
        // Bits the kernel does not define: let the core refuse them with its message.
        return core_create(k, name, size, align, SlabFlags(u32::MAX), None);
    };
    let _g = CREATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let s = core_create(k, name, size, align, SlabFlags(flags), callbacks);
    if !s.is_null() {
        let mut t = CTORS.write().unwrap_or_else(|e| e.into_inner());
        match callbacks {
            Some(c) => t.insert(s as usize, c),
            None => t.remove(&(s as usize)),
        };
    }
    s
}

fn core_create(
    k: &crate::K,
    name: &str,
    size: usize,
    align: usize,
    flags: SlabFlags,
    callbacks: Option<Callbacks>,
) -> *mut KmemCache {
    let ctor = match callbacks {
        None => CtorKind::None,
        Some(Callbacks::Modern(_)) => CtorKind::Legacy {
            ctor: Some(ctor_trampoline),
            dtor: None,
        },
        Some(Callbacks::Legacy { ctor, dtor }) => CtorKind::Legacy {
            ctor: ctor.map(|_| ctor_trampoline as kmem_core::slab::LegacyCtor),
            dtor: dtor.map(|_| dtor_trampoline as kmem_core::slab::LegacyCtor),
        },
    };
    let args = KmemCacheArgs {
        align,
        ctor,
        ..Default::default()
    };
    k.kmem_cache_create_args(name, size, &args, flags)
        .map_or(ptr::null_mut(), |s| s.as_ptr())
}

/// `struct kmem_cache *kmem_cache_create(const char *name, size_t size,
/// size_t align, slab_flags_t flags, void (*ctor)(void *))`: the modern
/// five-argument form. NULL on failure (with the kernel's message).
///
/// # Safety
/// `name` is a NUL-terminated string; `ctor`, if given, may be called on the
/// cache's objects from any thread while the cache lives.
#[no_mangle]
pub unsafe extern "C" fn kmem_cache_create(
    name: *const c_char,
    size: usize,
    align: usize,
    flags: c_uint,
    ctor: Option<CCtor>,
) -> *mut KmemCache {
    // SAFETY: forwarded.
    unsafe { create(name, size, align, flags as c_ulong, ctor.map(Callbacks::Modern)) }
}

/// `kmem_cache_t *kmem_cache_create(char *name, size_t size, size_t offset,
/// unsigned long flags, ctor, dtor)`: the seeds' 2.6 six-argument form (the
/// header maps six-argument calls here). `offset` aligns the objects; the
/// constructor gets `SLAB_CTOR_CONSTRUCTOR` (`| SLAB_CTOR_ATOMIC` for atomic
/// allocations) when a slab is built, the destructor runs on every object
/// of a slab when the slab is given back.
///
/// # Safety
/// As [`kmem_cache_create`], for both callbacks.
#[no_mangle]
pub unsafe extern "C" fn kmem_cache_create_legacy(
    name: *const c_char,
    size: usize,
    offset: usize,
    flags: c_ulong,
    ctor: Option<CLegacyCtor>,
    dtor: Option<CLegacyCtor>,
) -> *mut KmemCache {
    let cb = (ctor.is_some() || dtor.is_some()).then_some(Callbacks::Legacy { ctor, dtor });
    // SAFETY: forwarded.
    unsafe { create(name, size, offset, flags, cb) }
}

/// `int kmem_cache_destroy(kmem_cache_t *cache)`: 0 once the cache is gone;
/// 1 if objects remained (the kernel's report is printed and the cache is
/// leaked, as the kernel does), and 1 with a warning for a cache destroyed
/// already. NULL is ignored.
///
/// # Safety
/// `s` is NULL or a live cache from `kmem_cache_create` not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn kmem_cache_destroy(s: *mut KmemCache) -> c_int {
    let Some(s) = NonNull::new(s) else {
        return 0;
    };
    let k = k();
    let _g = CREATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !k.kmem_cache_is_live(s) {
        // SAFETY: reads nothing of `s`: reports it and returns.
        unsafe { k.kmem_cache_destroy(s) };
        return 1;
    }
    // SAFETY: a live cache (just checked; creation and destruction are serialised by CREATE_LOCK).
    let last = unsafe { s.as_ref() }
        .refcount
        .load(core::sync::atomic::Ordering::Relaxed)
        == 1;
    let remaining = if last {
        // SAFETY: as above.
        k.cache_counts(unsafe { s.as_ref() }).0
    } else {
        0
    };
    // SAFETY: caller's contract.
    unsafe { k.kmem_cache_destroy(s) };
    (remaining != 0) as c_int
}

/// `void *kmem_cache_alloc(kmem_cache_t *cache, gfp_t flags)`.
///
/// # Safety
/// `s` is a live cache.
#[no_mangle]
pub unsafe extern "C" fn kmem_cache_alloc(s: *mut KmemCache, flags: c_uint) -> *mut c_void {
    let Some(s) = NonNull::new(s) else {
        return ptr::null_mut();
    };
    // SAFETY: a live cache of this machine (created and not destroyed).
    unsafe { k().kmem_cache_alloc(s, gfp(flags)) }.map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
}

/// `void *kmem_cache_zalloc(kmem_cache_t *cache, gfp_t flags)`.
///
/// # Safety
/// `s` is a live cache.
#[no_mangle]
pub unsafe extern "C" fn kmem_cache_zalloc(s: *mut KmemCache, flags: c_uint) -> *mut c_void {
    let Some(s) = NonNull::new(s) else {
        return ptr::null_mut();
    };
    // SAFETY: a live cache of this machine (created and not destroyed).
    unsafe { k().kmem_cache_zalloc(s, gfp(flags)) }.map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
}

/// `void *kmem_cache_alloc_node(kmem_cache_t *cache, gfp_t flags, int node)`.
///
/// # Safety
/// `s` is a live cache.
#[no_mangle]
pub unsafe extern "C" fn kmem_cache_alloc_node(s: *mut KmemCache, flags: c_uint, node: c_int) -> *mut c_void {
    let Some(s) = NonNull::new(s) else {
        return ptr::null_mut();
    };
    // SAFETY: a live cache of this machine (created and not destroyed).
    unsafe { k().kmem_cache_alloc_node(s, gfp(flags), node) }
        .map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
}

/// `void kmem_cache_free(kmem_cache_t *cache, const void *obj)`.
///
/// # Safety
/// `obj` is NULL or an object of `s` the caller gives up.
#[no_mangle]
pub unsafe extern "C" fn kmem_cache_free(s: *mut KmemCache, obj: *const c_void) {
    let Some(s) = NonNull::new(s) else {
        return;
    };
    if obj.is_null() {
        return;
    }
    // SAFETY: caller's contract.
    unsafe { k().kmem_cache_free(s, obj as *mut u8) };
}

/// `int kmem_cache_alloc_bulk(kmem_cache_t *s, gfp_t flags, size_t size,
/// void **p)`: `size` objects or none; returns the number allocated.
///
/// # Safety
/// `s` is a live cache; `p` is valid for writes of `size` pointers.
#[no_mangle]
pub unsafe extern "C" fn kmem_cache_alloc_bulk(
    s: *mut KmemCache,
    flags: c_uint,
    size: usize,
    p: *mut *mut c_void,
) -> c_int {
    let Some(s) = NonNull::new(s) else {
        return 0;
    };
    if p.is_null() || size == 0 {
        return 0;
    }
    // SAFETY: caller's contract.
    let out = unsafe { core::slice::from_raw_parts_mut(p as *mut *mut u8, size) };
    // SAFETY: the caller's contract: `s` is a live cache.
    (unsafe { k().kmem_cache_alloc_bulk(s, gfp(flags), out) }) as c_int
}

/// `void kmem_cache_free_bulk(kmem_cache_t *s, size_t size, void **p)`.
///
/// # Safety
/// `p` holds `size` objects of `s` that the caller gives up.
#[no_mangle]
pub unsafe extern "C" fn kmem_cache_free_bulk(s: *mut KmemCache, size: usize, p: *mut *mut c_void) {
    let Some(s) = NonNull::new(s) else {
        return;
    };
    if p.is_null() || size == 0 {
        return;
    }
    // SAFETY: caller's contract.
    let objs = unsafe { core::slice::from_raw_parts(p as *const *mut u8, size) };
    // SAFETY: caller's contract.
    unsafe { k().kmem_cache_free_bulk(s, objs) };
}

/// `int kmem_cache_shrink(kmem_cache_t *cache)`: give empty slabs back; 0
/// if the cache holds no slabs afterwards.
///
/// # Safety
/// `s` is a live cache.
#[no_mangle]
pub unsafe extern "C" fn kmem_cache_shrink(s: *mut KmemCache) -> c_int {
    match NonNull::new(s) {
        // SAFETY: a live cache of this machine (created and not destroyed).
        Some(s) => unsafe { k().kmem_cache_shrink(s) },
        None => 0,
    }
}

/// `unsigned int kmem_cache_size(kmem_cache_t *cache)`: the object size.
///
/// # Safety
/// `s` is a live cache.
#[no_mangle]
pub unsafe extern "C" fn kmem_cache_size(s: *mut KmemCache) -> c_uint {
    match NonNull::new(s) {
        // SAFETY: the caller's contract: `s` is a live cache.
        Some(s) => (unsafe { k().kmem_cache_size(s) }) as c_uint,
        None => 0,
    }
}

// ---------------------------------------------------------------------------
// kmalloc
// ---------------------------------------------------------------------------

fn ptr_or_null(r: Result<NonNull<u8>, kmem_core::AllocError>) -> *mut c_void {
    r.map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
}

/// `void *kmalloc(size_t size, gfp_t flags)`.
#[no_mangle]
pub extern "C" fn kmalloc(size: usize, flags: c_uint) -> *mut c_void {
    ptr_or_null(k().kmalloc(size, gfp(flags)))
}

/// `void *kzalloc(size_t size, gfp_t flags)`.
#[no_mangle]
pub extern "C" fn kzalloc(size: usize, flags: c_uint) -> *mut c_void {
    ptr_or_null(k().kzalloc(size, gfp(flags)))
}

/// `void *kmalloc_node(size_t size, gfp_t flags, int node)`.
#[no_mangle]
pub extern "C" fn kmalloc_node(size: usize, flags: c_uint, node: c_int) -> *mut c_void {
    ptr_or_null(k().kmalloc_node(size, gfp(flags), node))
}

/// `void *kzalloc_node(size_t size, gfp_t flags, int node)`.
#[no_mangle]
pub extern "C" fn kzalloc_node(size: usize, flags: c_uint, node: c_int) -> *mut c_void {
    ptr_or_null(k().kzalloc_node(size, gfp(flags), node))
}

/// `void *kmalloc_array(size_t n, size_t size, gfp_t flags)`: NULL if
/// `n * size` overflows.
#[no_mangle]
pub extern "C" fn kmalloc_array(n: usize, size: usize, flags: c_uint) -> *mut c_void {
    ptr_or_null(k().kmalloc_array(n, size, gfp(flags)))
}

/// `void *kcalloc(size_t n, size_t size, gfp_t flags)`: zeroed, NULL on overflow.
#[no_mangle]
pub extern "C" fn kcalloc(n: usize, size: usize, flags: c_uint) -> *mut c_void {
    ptr_or_null(k().kcalloc(n, size, gfp(flags)))
}

/// `void *kmalloc_array_node(size_t n, size_t size, gfp_t flags, int node)`.
#[no_mangle]
pub extern "C" fn kmalloc_array_node(n: usize, size: usize, flags: c_uint, node: c_int) -> *mut c_void {
    ptr_or_null(k().kmalloc_array_node(n, size, gfp(flags), node))
}

/// `void *kcalloc_node(size_t n, size_t size, gfp_t flags, int node)`.
#[no_mangle]
pub extern "C" fn kcalloc_node(n: usize, size: usize, flags: c_uint, node: c_int) -> *mut c_void {
    ptr_or_null(k().kcalloc_node(n, size, gfp(flags), node))
}

/// `void *krealloc(const void *p, size_t new_size, gfp_t flags)`: on
/// failure NULL, and `p` is left alone.
///
/// # Safety
/// `p` is NULL, `ZERO_SIZE_PTR` or a live kmalloc allocation.
#[no_mangle]
pub unsafe extern "C" fn krealloc(p: *const c_void, new_size: usize, flags: c_uint) -> *mut c_void {
    // SAFETY: caller's contract.
    ptr_or_null(unsafe { k().krealloc(p as *mut u8, new_size, gfp(flags)) })
}

/// `void *krealloc_array(void *p, size_t n, size_t size, gfp_t flags)`.
///
/// # Safety
/// As [`krealloc`].
#[no_mangle]
pub unsafe extern "C" fn krealloc_array(p: *mut c_void, n: usize, size: usize, flags: c_uint) -> *mut c_void {
    // SAFETY: caller's contract.
    ptr_or_null(unsafe { k().krealloc_array(p as *mut u8, n, size, gfp(flags)) })
}

/// `void kfree(const void *p)`.
///
/// # Safety
/// `p` is NULL, `ZERO_SIZE_PTR` or a kmalloc allocation the caller gives up
/// (anything else is reported and not freed).
#[no_mangle]
pub unsafe extern "C" fn kfree(p: *const c_void) {
    // SAFETY: caller's contract.
    unsafe { k().kfree(p as *const u8) }
}

/// `void kfree_sensitive(const void *p)` (`kzfree` before 5.9): clear, then free.
///
/// # Safety
/// As [`kfree`].
#[no_mangle]
pub unsafe extern "C" fn kfree_sensitive(p: *const c_void) {
    // SAFETY: caller's contract.
    unsafe { k().kfree_sensitive(p as *const u8) }
}

/// `void kfree_bulk(size_t size, void **p)`.
///
/// # Safety
/// `p` holds `size` pointers, each as for [`kfree`].
#[no_mangle]
pub unsafe extern "C" fn kfree_bulk(size: usize, p: *mut *mut c_void) {
    if p.is_null() || size == 0 {
        return;
    }
    // SAFETY: caller's contract.
    let objs = unsafe { core::slice::from_raw_parts(p as *const *mut u8, size) };
    // SAFETY: caller's contract.
    unsafe { k().kfree_bulk(objs) }
}

/// `size_t ksize(const void *p)`: the usable size of a kmalloc allocation.
///
/// # Safety
/// `p` is NULL, `ZERO_SIZE_PTR` or a live kmalloc allocation.
#[no_mangle]
pub unsafe extern "C" fn ksize(p: *const c_void) -> usize {
    k().ksize(p as *const u8)
}

/// `size_t kmalloc_size_roundup(size_t size)`: the size kmalloc would really
/// allocate.
#[no_mangle]
pub extern "C" fn kmalloc_size_roundup(size: usize) -> usize {
    k().kmalloc_size_roundup(size)
}

/// `char *kstrdup(const char *s, gfp_t gfp)`: NULL for NULL.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn kstrdup(s: *const c_char, flags: c_uint) -> *mut c_char {
    if s.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: caller's contract.
    let s = unsafe { CStr::from_ptr(s) };
    ptr_or_null(k().kstrdup(s, gfp(flags))) as *mut c_char
}

/// `char *kstrndup(const char *s, size_t max, gfp_t gfp)`: at most `max`
/// bytes, NUL-terminated.
///
/// # Safety
/// `s` is NULL or readable up to its NUL or `max` bytes.
#[no_mangle]
pub unsafe extern "C" fn kstrndup(s: *const c_char, max: usize, flags: c_uint) -> *mut c_char {
    if s.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: caller's contract.
    let len = unsafe { libc::strnlen(s, max) };
    // SAFETY: `len` bytes are readable (strnlen stopped there).
    let bytes = unsafe { core::slice::from_raw_parts(s as *const u8, len) };
    ptr_or_null(k().kmemdup_nul(bytes, gfp(flags))) as *mut c_char
}

/// `void *kmemdup(const void *src, size_t len, gfp_t gfp)`.
///
/// # Safety
/// `src` is readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmemdup(src: *const c_void, len: usize, flags: c_uint) -> *mut c_void {
    if src.is_null() && len != 0 {
        return ptr::null_mut();
    }
    let bytes: &[u8] = if len == 0 {
        &[]
    } else {
        // SAFETY: caller's contract.
        unsafe { core::slice::from_raw_parts(src as *const u8, len) }
    };
    ptr_or_null(k().kmemdup(bytes, gfp(flags)))
}

/// `char *kmemdup_nul(const char *s, size_t len, gfp_t gfp)`.
///
/// # Safety
/// `s` is readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmemdup_nul(s: *const c_char, len: usize, flags: c_uint) -> *mut c_char {
    if s.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: caller's contract.
    let bytes = unsafe { core::slice::from_raw_parts(s as *const u8, len) };
    ptr_or_null(k().kmemdup_nul(bytes, gfp(flags))) as *mut c_char
}
