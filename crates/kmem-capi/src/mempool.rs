//! `linux/mempool.h`: memory pools with C element allocators.
//!
//! A C `mempool_t` is a [`CMempool`]: the core's `Mempool` followed by the
//! pool's C callbacks and their data. The core's pool is set up with two
//! Rust trampolines as its allocator and its `pool_data` pointing at the
//! `CMempool` itself, so the trampolines find the C functions and call them
//! with the C data. `mempool_create` allocates the `CMempool` with kmalloc
//! (and `mempool_destroy` frees it); `mempool_init` sets one up in memory the
//! caller owns — the header gives `mempool_t` the right size and alignment
//! (checked at compile time below) so it can be embedded in C structures.
//!
//! The ready-made callbacks (`mempool_alloc_slab`/`mempool_free_slab`,
//! `mempool_kmalloc`/`mempool_kfree`, `mempool_alloc_pages`/
//! `mempool_free_pages`) are exported as C functions with the kernel's
//! signatures, and the header's `mempool_create_slab_pool`,
//! `mempool_create_kmalloc_pool` and `mempool_create_page_pool` pass them to
//! `mempool_create` exactly as the kernel's inline helpers do. Pools made with
//! them are named after their elements (`slab:<cache>`, `kmalloc:<size>`,
//! `pages:order-<n>`) in the machine's reports.
//!
//! Allocation, freeing, resizing and the waiting semantics are the core's
//! (`mm/mempool.c`'s order: the backing allocator without reclaim, then the
//! reserve, then the full flags, then sleep until an element is freed).

use core::ffi::{c_int, c_uint, c_void};
use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

use kmem_core::gfp::{Gfp, GFP_KERNEL};
use kmem_core::mempool::Mempool;
use kmem_core::page::Page;
use kmem_core::slab::KmemCache;

use crate::{gfp, k};

/// `typedef void *(mempool_alloc_t)(gfp_t gfp_mask, void *pool_data)`.
pub type CAllocFn = unsafe extern "C" fn(c_uint, *mut c_void) -> *mut c_void;
/// `typedef void (mempool_free_t)(void *element, void *pool_data)`.
pub type CFreeFn = unsafe extern "C" fn(*mut c_void, *mut c_void);

/// The C `mempool_t`.
#[repr(C)]
pub struct CMempool {
    /// The core's pool (first, so a `mempool_t *` is also a `Mempool *`).
    pool: Mempool,
    alloc_fn: CAllocFn,
    free_fn: CFreeFn,
    pool_data: *mut c_void,
}

/// Size of the C `mempool_t` in 8-byte words (`include/linux/mempool.h`,
/// `KMEM_MEMPOOL_WORDS`).
pub const MEMPOOL_T_WORDS: usize = 32;
/// Alignment of the C `mempool_t` (`KMEM_MEMPOOL_ALIGN`).
pub const MEMPOOL_T_ALIGN: usize = 8;

const _: () = assert!(size_of::<CMempool>() <= MEMPOOL_T_WORDS * 8);
const _: () = assert!(align_of::<CMempool>() <= MEMPOOL_T_ALIGN);

/// The core's allocator for C pools.
///
/// # Safety
/// `data` is the live `CMempool` whose callbacks to call.
unsafe fn alloc_trampoline(gfp: Gfp, data: *mut ()) -> *mut u8 {
    // SAFETY: the pool's pool_data is its CMempool (set at init).
    let c = unsafe { &*(data as *const CMempool) };
    // SAFETY: the pool's creator promised the callback may be called with its data.
    unsafe { (c.alloc_fn)(gfp.bits(), c.pool_data) as *mut u8 }
}

/// The core's free function for C pools.
///
/// # Safety
/// As [`alloc_trampoline`]; `element` came from it.
unsafe fn free_trampoline(element: *mut u8, data: *mut ()) {
    // SAFETY: as in alloc_trampoline.
    let c = unsafe { &*(data as *const CMempool) };
    // SAFETY: as in alloc_trampoline.
    unsafe { (c.free_fn)(element as *mut c_void, c.pool_data) }
}

/// Set up a C pool at `c` (which the caller owns).
///
/// # Safety
/// `c` is valid for writes of a `CMempool` and does not move while the pool
/// lives; the callbacks may be called with `pool_data` from any thread.
unsafe fn init(
    c: *mut CMempool,
    min_nr: c_int,
    alloc_fn: Option<CAllocFn>,
    free_fn: Option<CFreeFn>,
    pool_data: *mut c_void,
    gfp: Gfp,
    nid: c_int,
) -> c_int {
    let (Some(alloc_fn), Some(free_fn)) = (alloc_fn, free_fn) else {
        return -crate::errno::EINVAL;
    };
    if min_nr < 0 {
        return -crate::errno::EINVAL;
    }
    let k = k();
    // SAFETY: caller's contract: `c` is ours to write.
    unsafe {
        ptr::addr_of_mut!((*c).alloc_fn).write(alloc_fn);
        ptr::addr_of_mut!((*c).free_fn).write(free_fn);
        ptr::addr_of_mut!((*c).pool_data).write(pool_data);
    }
    // SAFETY: the pool lives at `c` (caller's contract); the trampolines get
    // `c` as their data and find the callbacks written above.
    let r = unsafe {
        k.mempool_init_node(
            ptr::addr_of_mut!((*c).pool),
            min_nr as usize,
            alloc_trampoline,
            free_trampoline,
            c as *mut (),
            gfp,
            nid,
        )
    };
    if r.is_err() {
        return -crate::errno::ENOMEM;
    }
    // SAFETY: initialised; nobody else has the pool yet.
    unsafe { name_pool(&mut (*c).pool, alloc_fn, pool_data) };
    0
}

/// Name ready-made pools after their elements, as the core names its own.
fn name_pool(pool: &mut Mempool, alloc_fn: CAllocFn, data: *mut c_void) {
    let f = alloc_fn as *const () as usize;
    let mut name = String::new();
    if f == mempool_alloc_slab as *const () as usize && !data.is_null() {
        // SAFETY: a slab pool's data is its live cache (the creator's promise).
        name = format!("slab:{}", unsafe { (*(data as *const KmemCache)).name() });
    } else if f == mempool_kmalloc as *const () as usize {
        name = format!("kmalloc:{}", data as usize);
    } else if f == mempool_alloc_pages as *const () as usize {
        name = format!("pages:order-{}", data as usize);
    }
    if !name.is_empty() {
        pool.set_name(&name);
    }
}

/// `mempool_t *mempool_create(int min_nr, mempool_alloc_t *alloc_fn,
/// mempool_free_t *free_fn, void *pool_data)`: a pool with `min_nr`
/// elements preallocated (`GFP_KERNEL`); NULL on failure.
///
/// # Safety
/// The callbacks may be called with `pool_data` from any thread until the
/// pool is destroyed; `free_fn` frees what `alloc_fn` returns.
#[no_mangle]
pub unsafe extern "C" fn mempool_create(
    min_nr: c_int,
    alloc_fn: Option<CAllocFn>,
    free_fn: Option<CFreeFn>,
    pool_data: *mut c_void,
) -> *mut CMempool {
    // SAFETY: forwarded.
    unsafe { mempool_create_node(min_nr, alloc_fn, free_fn, pool_data, GFP_KERNEL.bits(), -1) }
}

/// `mempool_t *mempool_create_node(int min_nr, mempool_alloc_t *alloc_fn,
/// mempool_free_t *free_fn, void *pool_data, gfp_t gfp_mask, int nid)`.
///
/// # Safety
/// As [`mempool_create`].
#[no_mangle]
pub unsafe extern "C" fn mempool_create_node(
    min_nr: c_int,
    alloc_fn: Option<CAllocFn>,
    free_fn: Option<CFreeFn>,
    pool_data: *mut c_void,
    gfp_mask: c_uint,
    nid: c_int,
) -> *mut CMempool {
    let k = k();
    let Ok(mem) = k.kzalloc_node(size_of::<CMempool>(), gfp(gfp_mask), nid) else {
        return ptr::null_mut();
    };
    let c = mem.as_ptr() as *mut CMempool;
    // SAFETY: fresh kmalloc memory of the right size; kmalloc aligns to 8,
    // enough for CMempool (checked above); the callbacks are the caller's promise.
    let r = unsafe { init(c, min_nr, alloc_fn, free_fn, pool_data, gfp(gfp_mask), nid) };
    if r != 0 {
        // SAFETY: ours; init tore the pool down on failure.
        unsafe { k.kfree(c as *const u8) };
        return ptr::null_mut();
    }
    c
}

/// `void mempool_destroy(mempool_t *pool)`: free the reserve and the pool;
/// NULL is ignored. Elements still out are reported (and stay the caller's).
///
/// # Safety
/// `pool` is NULL or came from `mempool_create*` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn mempool_destroy(pool: *mut CMempool) {
    if pool.is_null() {
        return;
    }
    let k = k();
    // SAFETY: caller's contract; then the memory is ours to free.
    unsafe {
        k.mempool_exit(ptr::addr_of_mut!((*pool).pool));
        k.kfree(pool as *const u8);
    }
}

/// `int mempool_init(mempool_t *pool, int min_nr, mempool_alloc_t *alloc_fn,
/// mempool_free_t *free_fn, void *pool_data)`: set up a pool in the caller's
/// memory; 0 or `-ENOMEM`.
///
/// # Safety
/// `pool` is valid for writes of a `mempool_t` and does not move until
/// `mempool_exit`; the callbacks as for [`mempool_create`].
#[no_mangle]
pub unsafe extern "C" fn mempool_init(
    pool: *mut CMempool,
    min_nr: c_int,
    alloc_fn: Option<CAllocFn>,
    free_fn: Option<CFreeFn>,
    pool_data: *mut c_void,
) -> c_int {
    if pool.is_null() {
        return -crate::errno::EINVAL;
    }
    // SAFETY: forwarded.
    unsafe { init(pool, min_nr, alloc_fn, free_fn, pool_data, GFP_KERNEL, -1) }
}

/// `void mempool_exit(mempool_t *pool)`: free the reserve of a pool set up
/// with `mempool_init` (the pool's memory stays the caller's).
///
/// # Safety
/// `pool` was set up by `mempool_init` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn mempool_exit(pool: *mut CMempool) {
    if pool.is_null() {
        return;
    }
    // SAFETY: caller's contract.
    unsafe { k().mempool_exit(ptr::addr_of_mut!((*pool).pool)) }
}

/// `void *mempool_alloc(mempool_t *pool, gfp_t gfp_mask)`: never NULL when
/// `gfp_mask` may sleep (it waits for an element to be freed).
///
/// # Safety
/// `pool` is a live pool.
#[no_mangle]
pub unsafe extern "C" fn mempool_alloc(pool: *mut CMempool, gfp_mask: c_uint) -> *mut c_void {
    if pool.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: caller's contract.
    k().mempool_alloc(unsafe { &(*pool).pool }, gfp(gfp_mask)) as *mut c_void
}

/// `void *mempool_alloc_preallocated(mempool_t *pool)`: an element from the
/// reserve only, or NULL.
///
/// # Safety
/// `pool` is a live pool.
#[no_mangle]
pub unsafe extern "C" fn mempool_alloc_preallocated(pool: *mut CMempool) -> *mut c_void {
    if pool.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: caller's contract.
    k().mempool_alloc_preallocated(unsafe { &(*pool).pool }) as *mut c_void
}

/// `void mempool_free(void *element, mempool_t *pool)`: refill the reserve
/// if it is short, else give the element back to `free_fn`. NULL is ignored.
///
/// # Safety
/// `pool` is a live pool and `element` NULL or one of its elements.
#[no_mangle]
pub unsafe extern "C" fn mempool_free(element: *mut c_void, pool: *mut CMempool) {
    if element.is_null() || pool.is_null() {
        return;
    }
    // SAFETY: caller's contract.
    unsafe { k().mempool_free(element as *mut u8, &(*pool).pool) }
}

/// `int mempool_resize(mempool_t *pool, int new_min_nr)`: 0 or `-ENOMEM`.
///
/// # Safety
/// `pool` is a live pool.
#[no_mangle]
pub unsafe extern "C" fn mempool_resize(pool: *mut CMempool, new_min_nr: c_int) -> c_int {
    if pool.is_null() || new_min_nr <= 0 {
        return -crate::errno::EINVAL;
    }
    // SAFETY: caller's contract.
    match k().mempool_resize(unsafe { &(*pool).pool }, new_min_nr as usize) {
        Ok(()) => 0,
        Err(_) => -crate::errno::ENOMEM,
    }
}

/// `int kmem_mempool_curr_nr(mempool_t *pool)`: elements in the reserve now
/// (`pool->curr_nr` in the kernel's struct).
///
/// # Safety
/// `pool` is a live pool.
#[no_mangle]
pub unsafe extern "C" fn kmem_mempool_curr_nr(pool: *mut CMempool) -> c_int {
    if pool.is_null() {
        return 0;
    }
    // SAFETY: caller's contract.
    unsafe { (*pool).pool.curr_nr() as c_int }
}

/// `int kmem_mempool_min_nr(mempool_t *pool)`: the guaranteed reserve.
///
/// # Safety
/// `pool` is a live pool.
#[no_mangle]
pub unsafe extern "C" fn kmem_mempool_min_nr(pool: *mut CMempool) -> c_int {
    if pool.is_null() {
        return 0;
    }
    // SAFETY: caller's contract.
    unsafe { (*pool).pool.min_nr() as c_int }
}

// ---------------------------------------------------------------------------
// Ready-made callbacks
// ---------------------------------------------------------------------------

/// `void *mempool_alloc_slab(gfp_t gfp_mask, void *pool_data)`:
/// `kmem_cache_alloc(pool_data, gfp_mask)`.
///
/// # Safety
/// `pool_data` is a live cache.
#[no_mangle]
pub unsafe extern "C" fn mempool_alloc_slab(gfp_mask: c_uint, pool_data: *mut c_void) -> *mut c_void {
    let Some(s) = NonNull::new(pool_data as *mut KmemCache) else {
        return ptr::null_mut();
    };
    // SAFETY: a live cache of this machine (created and not destroyed).
    unsafe { k().kmem_cache_alloc(s, gfp(gfp_mask)) }.map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
}

/// `void mempool_free_slab(void *element, void *pool_data)`.
///
/// # Safety
/// `pool_data` is a live cache and `element` one of its objects.
#[no_mangle]
pub unsafe extern "C" fn mempool_free_slab(element: *mut c_void, pool_data: *mut c_void) {
    if let Some(s) = NonNull::new(pool_data as *mut KmemCache) {
        // SAFETY: caller's contract.
        unsafe { k().kmem_cache_free(s, element as *mut u8) }
    }
}

/// `void *mempool_kmalloc(gfp_t gfp_mask, void *pool_data)`:
/// `kmalloc((size_t)pool_data, gfp_mask)`.
///
/// # Safety
/// None beyond the C contract (`pool_data` is a size).
#[no_mangle]
pub unsafe extern "C" fn mempool_kmalloc(gfp_mask: c_uint, pool_data: *mut c_void) -> *mut c_void {
    k().kmalloc(pool_data as usize, gfp(gfp_mask))
        .map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
}

/// `void mempool_kfree(void *element, void *pool_data)`.
///
/// # Safety
/// `element` is a kmalloc allocation the caller gives up.
#[no_mangle]
pub unsafe extern "C" fn mempool_kfree(element: *mut c_void, _pool_data: *mut c_void) {
    // SAFETY: caller's contract.
    unsafe { k().kfree(element as *const u8) }
}

/// `void *mempool_alloc_pages(gfp_t gfp_mask, void *pool_data)`: a
/// `struct page *` of order `(int)pool_data`.
///
/// # Safety
/// None beyond the C contract (`pool_data` is an order).
#[no_mangle]
pub unsafe extern "C" fn mempool_alloc_pages(gfp_mask: c_uint, pool_data: *mut c_void) -> *mut c_void {
    k().alloc_pages(gfp(gfp_mask), pool_data as usize as u32)
        .map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
}

/// `void mempool_free_pages(void *element, void *pool_data)`.
///
/// # Safety
/// `element` is a `struct page *` of order `(int)pool_data` the caller gives up.
#[no_mangle]
pub unsafe extern "C" fn mempool_free_pages(element: *mut c_void, pool_data: *mut c_void) {
    if let Some(p) = NonNull::new(element as *mut Page) {
        // SAFETY: caller's contract.
        unsafe { k().__free_pages(p, pool_data as usize as u32) }
    }
}
