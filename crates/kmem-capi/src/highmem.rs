//! `linux/highmem.h`: `kmap` and friends, over the core's HighMem support.
//!
//! On a machine booted with `highmem=`, pages above the lowmem limit have no
//! permanent address. The core gives them one for a while exactly as the
//! kernel does (`mm/highmem.c`): `kmap` takes a slot of the pkmap pool
//! (shared by every `kmap` of the same page, may sleep for a free slot),
//! `kmap_local_page`/`kmap_atomic` push a per-CPU fixmap slot (undo in
//! reverse order; `kmap_atomic` also disables preemption). Lowmem pages
//! always get their linear address. These functions forward to it; the
//! helpers (`clear_highpage`, `copy_highpage`, `memcpy_{from,to}_page`,
//! `memset_page`, `zero_user`) map with `kmap_local_page`.

use core::ffi::c_void;
use core::ptr::{self, NonNull};

use kmem_core::page::{Page, PAGE_SIZE};

use crate::k;

fn ptr_or_null(p: Option<NonNull<u8>>) -> *mut c_void {
    p.map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
}

/// `void *kmap(struct page *page)`: the page's address until `kunmap`; may
/// sleep. NULL only if it cannot be mapped.
///
/// # Safety
/// `page` is a live page of this machine.
#[no_mangle]
pub unsafe extern "C" fn kmap(page: *mut Page) -> *mut c_void {
    match NonNull::new(page) {
        Some(p) => ptr_or_null(k().kmap(p)),
        None => ptr::null_mut(),
    }
}

/// `void kunmap(struct page *page)`.
///
/// # Safety
/// `page` was mapped with `kmap`; the mapping is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn kunmap(page: *mut Page) {
    if let Some(p) = NonNull::new(page) {
        k().kunmap(p)
    }
}

/// `void *kmap_local_page(struct page *page)`: a mapping local to this
/// context and CPU, until `kunmap_local` (in reverse order when nested).
///
/// # Safety
/// `page` is a live page of this machine.
#[no_mangle]
pub unsafe extern "C" fn kmap_local_page(page: *mut Page) -> *mut c_void {
    match NonNull::new(page) {
        Some(p) => ptr_or_null(k().kmap_local_page(p)),
        None => ptr::null_mut(),
    }
}

/// `void kunmap_local(const void *addr)`: any address inside the mapped page.
///
/// # Safety
/// `addr` came from `kmap_local_page`; the mapping is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn kunmap_local(addr: *const c_void) {
    k().kunmap_local(addr as *const u8)
}

/// `void *kmap_atomic(struct page *page)`: `kmap_local_page` with preemption
/// disabled until `kunmap_atomic`.
///
/// # Safety
/// `page` is a live page of this machine.
#[no_mangle]
pub unsafe extern "C" fn kmap_atomic(page: *mut Page) -> *mut c_void {
    match NonNull::new(page) {
        Some(p) => ptr_or_null(k().kmap_atomic(p)),
        None => ptr::null_mut(),
    }
}

/// `void kunmap_atomic(void *addr)`.
///
/// # Safety
/// `addr` came from `kmap_atomic`; the mapping is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn kunmap_atomic(addr: *mut c_void) {
    k().kunmap_atomic(addr as *const u8)
}

/// Run `f` on the page's bytes through a `kmap_local_page` mapping.
fn with_page(page: NonNull<Page>, f: impl FnOnce(*mut u8)) {
    let k = k();
    if let Some(a) = k.kmap_local_page(page) {
        f(a.as_ptr());
        k.kunmap_local(a.as_ptr());
    }
}

/// `void clear_highpage(struct page *page)`: zero a page, HighMem or not.
///
/// # Safety
/// `page` is a live page the caller owns.
#[no_mangle]
pub unsafe extern "C" fn clear_highpage(page: *mut Page) {
    if let Some(p) = NonNull::new(page) {
        // SAFETY: a mapped page of PAGE_SIZE bytes the caller owns.
        with_page(p, |a| unsafe { ptr::write_bytes(a, 0, PAGE_SIZE) });
    }
}

/// `void zero_user(struct page *page, unsigned int start, unsigned int size)`.
///
/// # Safety
/// `page` is a live page the caller owns; `start + size <= PAGE_SIZE`.
#[no_mangle]
pub unsafe extern "C" fn zero_user(page: *mut Page, start: u32, size: u32) {
    let (start, size) = (start as usize, size as usize);
    if start.saturating_add(size) > PAGE_SIZE {
        crate::warn(
            k(),
            format_args!("zero_user: range {start}+{size} beyond the page"),
        );
        return;
    }
    if let Some(p) = NonNull::new(page) {
        // SAFETY: inside the mapped page (checked above).
        with_page(p, |a| unsafe { ptr::write_bytes(a.add(start), 0, size) });
    }
}

/// `void copy_highpage(struct page *to, struct page *from)`.
///
/// # Safety
/// Both are live pages; the caller owns `to`.
#[no_mangle]
pub unsafe extern "C" fn copy_highpage(to: *mut Page, from: *mut Page) {
    let (Some(t), Some(f)) = (NonNull::new(to), NonNull::new(from)) else {
        return;
    };
    if t == f {
        return;
    }
    let k = k();
    let Some(src) = k.kmap_local_page(f) else {
        return;
    };
    if let Some(dst) = k.kmap_local_page(t) {
        // SAFETY: two mapped, distinct pages of PAGE_SIZE bytes.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), dst.as_ptr(), PAGE_SIZE) };
        k.kunmap_local(dst.as_ptr());
    }
    k.kunmap_local(src.as_ptr());
}

/// `void memcpy_from_page(char *to, struct page *page, size_t offset, size_t len)`.
///
/// # Safety
/// `page` is live, `to` writable for `len` bytes, `offset + len <= PAGE_SIZE`.
#[no_mangle]
pub unsafe extern "C" fn memcpy_from_page(to: *mut c_void, page: *mut Page, offset: usize, len: usize) {
    let Some(p) = NonNull::new(page) else {
        return;
    };
    if len == 0 {
        return;
    }
    // SAFETY: caller's contract.
    let dst = unsafe { core::slice::from_raw_parts_mut(to as *mut u8, len) };
    if !k().memcpy_from_page(dst, p, offset) {
        crate::warn(k(), format_args!("memcpy_from_page: cannot map the page"));
    }
}

/// `void memcpy_to_page(struct page *page, size_t offset, const char *from, size_t len)`.
///
/// # Safety
/// `page` is live and the caller's, `from` readable for `len` bytes,
/// `offset + len <= PAGE_SIZE`.
#[no_mangle]
pub unsafe extern "C" fn memcpy_to_page(page: *mut Page, offset: usize, from: *const c_void, len: usize) {
    let Some(p) = NonNull::new(page) else {
        return;
    };
    if len == 0 {
        return;
    }
    // SAFETY: caller's contract.
    let src = unsafe { core::slice::from_raw_parts(from as *const u8, len) };
    if !k().memcpy_to_page(p, offset, src) {
        crate::warn(k(), format_args!("memcpy_to_page: cannot map the page"));
    }
}
