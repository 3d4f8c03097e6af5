//! `linux/vmalloc.h` and the kvmalloc family of `linux/slab.h`.
//!
//! vmalloc memory is the machine's pages mapped for real into its vmalloc
//! window (see the core's `vmalloc.rs`); `vfree` of anything else is
//! reported and frees nothing. The kvmalloc family tries kmalloc first and
//! falls back to vmalloc for sizes above a page; `kvfree` tells the two apart
//! by address. The array forms (`vmalloc_array`, `vcalloc`,
//! `kvmalloc_array`, `kvcalloc`) fail without allocating when `n * size`
//! overflows, as the kernel's `check_mul_overflow` does.

use core::ffi::{c_int, c_uint, c_ulong, c_void};
use core::ptr::{self, NonNull};

use kmem_core::gfp::__GFP_ZERO;
use kmem_core::page::Page;

use crate::{gfp, k};

fn ptr_or_null(r: Result<NonNull<u8>, kmem_core::AllocError>) -> *mut c_void {
    r.map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
}

/// `void *vmalloc(unsigned long size)`.
#[no_mangle]
pub extern "C" fn vmalloc(size: c_ulong) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().vmalloc(size as usize))
}

/// `void *vzalloc(unsigned long size)`.
#[no_mangle]
pub extern "C" fn vzalloc(size: c_ulong) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().vzalloc(size as usize))
}

/// `void *__vmalloc(unsigned long size, gfp_t gfp_mask)`.
#[no_mangle]
pub extern "C" fn __vmalloc(size: c_ulong, gfp_mask: c_uint) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().__vmalloc(size as usize, gfp(gfp_mask)))
}

/// `void *__vmalloc_node(unsigned long size, unsigned long align, gfp_t gfp_mask, int node, const void *caller)`.
/// `/proc/vmallocinfo` names `caller` (else this function's caller).
#[no_mangle]
pub extern "C" fn __vmalloc_node(
    size: c_ulong,
    align: c_ulong,
    gfp_mask: c_uint,
    node: c_int,
    caller: *const c_void,
) -> *mut c_void {
    let _caller = crate::CCaller::enter(caller as usize);
    ptr_or_null(k().__vmalloc_node(size as usize, align as usize, gfp(gfp_mask), node))
}

/// `void *vmalloc_node(unsigned long size, int node)`.
#[no_mangle]
pub extern "C" fn vmalloc_node(size: c_ulong, node: c_int) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().vmalloc_node(size as usize, node))
}

/// `void *vzalloc_node(unsigned long size, int node)`.
#[no_mangle]
pub extern "C" fn vzalloc_node(size: c_ulong, node: c_int) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().vzalloc_node(size as usize, node))
}

/// `void *vmalloc_32(unsigned long size)`: pages below 4 GiB.
#[no_mangle]
pub extern "C" fn vmalloc_32(size: c_ulong) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().vmalloc_32(size as usize))
}

/// `void *vmalloc_user(unsigned long size)`: zeroed, for mapping to user space.
#[no_mangle]
pub extern "C" fn vmalloc_user(size: c_ulong) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().vmalloc_user(size as usize))
}

/// `void *vmalloc_array(size_t n, size_t size)`: NULL on overflow.
#[no_mangle]
pub extern "C" fn vmalloc_array(n: usize, size: usize) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    match n.checked_mul(size) {
        Some(bytes) => ptr_or_null(k().vmalloc(bytes)),
        None => ptr::null_mut(),
    }
}

/// `void *vcalloc(size_t n, size_t size)`: zeroed, NULL on overflow.
#[no_mangle]
pub extern "C" fn vcalloc(n: usize, size: usize) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    match n.checked_mul(size) {
        Some(bytes) => ptr_or_null(k().vzalloc(bytes)),
        None => ptr::null_mut(),
    }
}

/// `void vfree(const void *addr)`: NULL is ignored; an address vmalloc did
/// not hand out is reported.
///
/// # Safety
/// `addr` is NULL or a vmalloc allocation the caller gives up.
#[no_mangle]
pub unsafe extern "C" fn vfree(addr: *const c_void) {
    // SAFETY: forwarded (the caller's contract).
    unsafe { k().vfree(addr as *const u8) }
}

/// `void *vmap(struct page **pages, unsigned int count, unsigned long flags,
/// pgprot_t prot)`: map `count` pages contiguously in the vmalloc window.
/// `flags` (`VM_MAP`) and `prot` (`PAGE_KERNEL`) are accepted; the mapping
/// is always read-write, as `PAGE_KERNEL`.
///
/// # Safety
/// `pages` holds `count` live pages of this machine, which stay the caller's.
#[no_mangle]
pub unsafe extern "C" fn vmap(
    pages: *mut *mut Page,
    count: c_uint,
    _flags: c_ulong,
    _prot: c_ulong,
) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    if pages.is_null() || count == 0 {
        return ptr::null_mut();
    }
    // SAFETY: caller's contract.
    let raw = unsafe { core::slice::from_raw_parts(pages as *const *mut Page, count as usize) };
    let mut v = Vec::with_capacity(raw.len());
    for &p in raw {
        match NonNull::new(p) {
            Some(p) => v.push(p),
            None => return ptr::null_mut(),
        }
    }
    ptr_or_null(k().vmap(&v))
}

/// `void vunmap(const void *addr)`: undo `vmap` (the pages are not freed).
///
/// # Safety
/// `addr` is NULL or a `vmap` address the caller gives up.
#[no_mangle]
pub unsafe extern "C" fn vunmap(addr: *const c_void) {
    // SAFETY: forwarded (the caller's contract).
    unsafe { k().vunmap(addr as *const u8) }
}

/// `struct page *vmalloc_to_page(const void *addr)`.
#[no_mangle]
pub extern "C" fn vmalloc_to_page(addr: *const c_void) -> *mut Page {
    k().vmalloc_to_page(addr as *const u8)
        .map_or(ptr::null_mut(), |p| p.as_ptr())
}

/// `unsigned long vmalloc_to_pfn(const void *addr)`: 0 if not mapped.
#[no_mangle]
pub extern "C" fn vmalloc_to_pfn(addr: *const c_void) -> c_ulong {
    k().vmalloc_to_pfn(addr as *const u8).unwrap_or(0) as c_ulong
}

/// `bool is_vmalloc_addr(const void *addr)`.
#[no_mangle]
pub extern "C" fn is_vmalloc_addr(addr: *const c_void) -> bool {
    k().is_vmalloc_addr(addr as *const u8)
}

/// `void vm_unmap_aliases(void)`: purge lazily freed vmap areas now.
#[no_mangle]
pub extern "C" fn vm_unmap_aliases() {
    k().vm_unmap_aliases()
}

// ---------------------------------------------------------------------------
// kvmalloc
// ---------------------------------------------------------------------------

/// `void *kvmalloc(size_t size, gfp_t flags)`.
#[no_mangle]
pub extern "C" fn kvmalloc(size: usize, flags: c_uint) -> *mut c_void {
    ptr_or_null(k().kvmalloc(size, gfp(flags)))
}

/// `void *kvzalloc(size_t size, gfp_t flags)`.
#[no_mangle]
pub extern "C" fn kvzalloc(size: usize, flags: c_uint) -> *mut c_void {
    ptr_or_null(k().kvzalloc(size, gfp(flags)))
}

/// `void *kvmalloc_node(size_t size, gfp_t flags, int node)`.
#[no_mangle]
pub extern "C" fn kvmalloc_node(size: usize, flags: c_uint, node: c_int) -> *mut c_void {
    ptr_or_null(k().kvmalloc_node(size, gfp(flags), node))
}

/// `void *kvzalloc_node(size_t size, gfp_t flags, int node)`.
#[no_mangle]
pub extern "C" fn kvzalloc_node(size: usize, flags: c_uint, node: c_int) -> *mut c_void {
    ptr_or_null(k().kvmalloc_node(size, gfp(flags) | __GFP_ZERO, node))
}

/// `void *kvmalloc_array(size_t n, size_t size, gfp_t flags)`: NULL on overflow.
#[no_mangle]
pub extern "C" fn kvmalloc_array(n: usize, size: usize, flags: c_uint) -> *mut c_void {
    match n.checked_mul(size) {
        Some(bytes) => ptr_or_null(k().kvmalloc(bytes, gfp(flags))),
        None => ptr::null_mut(),
    }
}

/// `void *kvcalloc(size_t n, size_t size, gfp_t flags)`: zeroed, NULL on overflow.
#[no_mangle]
pub extern "C" fn kvcalloc(n: usize, size: usize, flags: c_uint) -> *mut c_void {
    match n.checked_mul(size) {
        Some(bytes) => ptr_or_null(k().kvmalloc(bytes, gfp(flags) | __GFP_ZERO)),
        None => ptr::null_mut(),
    }
}

/// `void *kvrealloc(const void *p, size_t size, gfp_t flags)`: NULL on
/// failure, leaving `p` alone.
///
/// # Safety
/// `p` is NULL or a live kvmalloc (kmalloc, vmalloc) allocation.
#[no_mangle]
pub unsafe extern "C" fn kvrealloc(p: *const c_void, size: usize, flags: c_uint) -> *mut c_void {
    // SAFETY: caller's contract.
    ptr_or_null(unsafe { k().kvrealloc(p as *mut u8, size, gfp(flags)) })
}

/// `void kvfree(const void *addr)`: kfree or vfree, by address.
///
/// # Safety
/// `addr` is NULL or a kvmalloc/kmalloc/vmalloc allocation the caller gives up.
#[no_mangle]
pub unsafe extern "C" fn kvfree(addr: *const c_void) {
    // SAFETY: caller's contract.
    unsafe { k().kvfree(addr as *const u8) }
}

/// `void kvfree_sensitive(const void *addr, size_t len)`: clear `len` bytes, then kvfree.
///
/// # Safety
/// As [`kvfree`]; `len` bytes at `addr` are writable.
#[no_mangle]
pub unsafe extern "C" fn kvfree_sensitive(addr: *const c_void, len: usize) {
    if addr.is_null() {
        return;
    }
    // SAFETY: caller's contract; volatile so the clearing is not elided.
    unsafe {
        for i in 0..len {
            ptr::write_volatile((addr as *mut u8).add(i), 0);
        }
        k().kvfree(addr as *const u8)
    }
}
