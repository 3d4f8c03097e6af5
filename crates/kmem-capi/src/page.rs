//! `linux/gfp.h`, `linux/mm.h`, `asm/page.h`: the page allocator.
//!
//! `struct page *` in C is the core's `Page` descriptor in the machine's
//! memmap, so `page_to_pfn`, `pfn_to_page`, `page_address` and
//! `virt_to_page` are the core's arithmetic. Address-returning functions
//! (`__get_free_pages`, `get_zeroed_page`) return 0 on failure, as the
//! kernel's do; `page_address` of a HighMem page is NULL unless the page is
//! mapped with `kmap` (see `highmem.rs`).

use core::ffi::{c_int, c_uint, c_ulong, c_void};
use core::ptr::{self, NonNull};

use kmem_core::page::Page;

use crate::{gfp, k};

fn page_or_null(r: Result<NonNull<Page>, kmem_core::AllocError>) -> *mut Page {
    r.map_or(ptr::null_mut(), |p| p.as_ptr())
}

fn addr_or_zero(r: Result<NonNull<u8>, kmem_core::AllocError>) -> c_ulong {
    r.map_or(0, |p| p.as_ptr() as c_ulong)
}

/// `struct page *alloc_pages(gfp_t gfp_mask, unsigned int order)`.
#[no_mangle]
pub extern "C" fn alloc_pages(gfp_mask: c_uint, order: c_uint) -> *mut Page {
    page_or_null(k().alloc_pages(gfp(gfp_mask), order))
}

/// `struct page *alloc_page(gfp_t gfp_mask)`.
#[no_mangle]
pub extern "C" fn alloc_page(gfp_mask: c_uint) -> *mut Page {
    page_or_null(k().alloc_page(gfp(gfp_mask)))
}

/// `struct page *alloc_pages_node(int nid, gfp_t gfp_mask, unsigned int order)`
/// (`nid < 0`: the current CPU's node).
#[no_mangle]
pub extern "C" fn alloc_pages_node(nid: c_int, gfp_mask: c_uint, order: c_uint) -> *mut Page {
    page_or_null(k().alloc_pages_node(nid, gfp(gfp_mask), order))
}

/// `unsigned long __get_free_pages(gfp_t gfp_mask, unsigned int order)`: the
/// linear address, or 0.
#[no_mangle]
pub extern "C" fn __get_free_pages(gfp_mask: c_uint, order: c_uint) -> c_ulong {
    addr_or_zero(k().__get_free_pages(gfp(gfp_mask), order))
}

/// `unsigned long __get_free_page(gfp_t gfp_mask)`.
#[no_mangle]
pub extern "C" fn __get_free_page(gfp_mask: c_uint) -> c_ulong {
    addr_or_zero(k().__get_free_page(gfp(gfp_mask)))
}

/// `unsigned long get_zeroed_page(gfp_t gfp_mask)`.
#[no_mangle]
pub extern "C" fn get_zeroed_page(gfp_mask: c_uint) -> c_ulong {
    addr_or_zero(k().get_zeroed_page(gfp(gfp_mask)))
}

/// `void *alloc_pages_exact(size_t size, gfp_t gfp_mask)`.
#[no_mangle]
pub extern "C" fn alloc_pages_exact(size: usize, gfp_mask: c_uint) -> *mut c_void {
    k().alloc_pages_exact(size, gfp(gfp_mask))
        .map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
}

/// `void free_pages_exact(void *virt, size_t size)`.
///
/// # Safety
/// `virt`/`size` came from `alloc_pages_exact` and are not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn free_pages_exact(virt: *mut c_void, size: usize) {
    if let Some(v) = NonNull::new(virt as *mut u8) {
        // SAFETY: caller's contract.
        unsafe { k().free_pages_exact(v, size) }
    }
}

/// `void __free_pages(struct page *page, unsigned int order)`.
///
/// # Safety
/// `page` came from this machine's allocator with this order (misuse is
/// reported: a wrong order or a double free), and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn __free_pages(page: *mut Page, order: c_uint) {
    if let Some(p) = NonNull::new(page) {
        // SAFETY: caller's contract.
        unsafe { k().__free_pages(p, order) }
    }
}

/// `void __free_page(struct page *page)`.
///
/// # Safety
/// As [`__free_pages`].
#[no_mangle]
pub unsafe extern "C" fn __free_page(page: *mut Page) {
    if let Some(p) = NonNull::new(page) {
        // SAFETY: caller's contract.
        unsafe { k().__free_page(p) }
    }
}

/// `void free_hot_page(struct page *page)` (2.6): free to the hot end of
/// the per-CPU list.
///
/// # Safety
/// As [`__free_pages`] for an order-0 page.
#[no_mangle]
pub unsafe extern "C" fn free_hot_page(page: *mut Page) {
    if let Some(p) = NonNull::new(page) {
        // SAFETY: caller's contract.
        unsafe { k().free_hot_page(p) }
    }
}

/// `void free_cold_page(struct page *page)` (2.6): free to the cold end.
///
/// # Safety
/// As [`__free_pages`] for an order-0 page.
#[no_mangle]
pub unsafe extern "C" fn free_cold_page(page: *mut Page) {
    if let Some(p) = NonNull::new(page) {
        // SAFETY: caller's contract.
        unsafe { k().free_cold_page(p) }
    }
}

/// `void free_pages(unsigned long addr, unsigned int order)`: 0 is ignored;
/// an address that is not a page of the linear map is reported.
///
/// # Safety
/// As [`__free_pages`].
#[no_mangle]
pub unsafe extern "C" fn free_pages(addr: c_ulong, order: c_uint) {
    // SAFETY: caller's contract.
    unsafe { k().free_pages(addr as usize, order) }
}

/// `void free_page(unsigned long addr)`.
///
/// # Safety
/// As [`__free_pages`].
#[no_mangle]
pub unsafe extern "C" fn free_page(addr: c_ulong) {
    // SAFETY: caller's contract.
    unsafe { k().free_page(addr as usize) }
}

/// `void split_page(struct page *page, unsigned int order)`.
///
/// # Safety
/// `page` is a live non-compound allocation of `order`.
#[no_mangle]
pub unsafe extern "C" fn split_page(page: *mut Page, order: c_uint) {
    if let Some(p) = NonNull::new(page) {
        k().split_page(p, order)
    }
}

/// `void get_page(struct page *page)`.
///
/// # Safety
/// The caller holds a reference to `page`.
#[no_mangle]
pub unsafe extern "C" fn get_page(page: *mut Page) {
    if let Some(p) = NonNull::new(page) {
        k().get_page(p)
    }
}

/// `void put_page(struct page *page)`: the last reference frees the allocation.
///
/// # Safety
/// The caller owns the reference it drops.
#[no_mangle]
pub unsafe extern "C" fn put_page(page: *mut Page) {
    if let Some(p) = NonNull::new(page) {
        // SAFETY: caller's contract.
        unsafe { k().put_page(p) }
    }
}

/// `int page_count(struct page *page)`.
///
/// # Safety
/// `page` is a page of this machine.
#[no_mangle]
pub unsafe extern "C" fn page_count(page: *const Page) -> c_int {
    if page.is_null() {
        return 0;
    }
    // SAFETY: caller's contract.
    unsafe { (*page).ref_count() }
}

/// `void *page_address(const struct page *page)`: the linear address; for a
/// HighMem page the `kmap` address, or NULL if it is not mapped.
///
/// # Safety
/// `page` is a page of this machine.
#[no_mangle]
pub unsafe extern "C" fn page_address(page: *const Page) -> *mut c_void {
    let Some(p) = NonNull::new(page as *mut Page) else {
        return ptr::null_mut();
    };
    let k = k();
    k.page_address(p)
        .or_else(|| k.pkmap_page_address(p))
        .map_or(ptr::null_mut(), |a| a.as_ptr() as *mut c_void)
}

/// `struct page *virt_to_page(const void *addr)`: NULL outside the linear map.
#[no_mangle]
pub extern "C" fn virt_to_page(addr: *const c_void) -> *mut Page {
    k().virt_to_page(addr as *const u8)
        .map_or(ptr::null_mut(), |p| p.as_ptr())
}

/// `unsigned long page_to_pfn(const struct page *page)`.
///
/// # Safety
/// `page` is a page of this machine.
#[no_mangle]
pub unsafe extern "C" fn page_to_pfn(page: *const Page) -> c_ulong {
    match NonNull::new(page as *mut Page) {
        Some(p) => k().page_to_pfn(p) as c_ulong,
        None => 0,
    }
}

/// `struct page *pfn_to_page(unsigned long pfn)`: NULL beyond the memmap.
#[no_mangle]
pub extern "C" fn pfn_to_page(pfn: c_ulong) -> *mut Page {
    k().pfn_to_page(pfn as usize)
        .map_or(ptr::null_mut(), |p| p.as_ptr())
}

/// `int pfn_valid(unsigned long pfn)`: the pfn has a `struct page`.
#[no_mangle]
pub extern "C" fn pfn_valid(pfn: c_ulong) -> c_int {
    k().pfn_to_page(pfn as usize).is_some() as c_int
}

/// `bool virt_addr_valid(const void *addr)`: `addr` is in the linear map,
/// on a page of a zone.
#[no_mangle]
pub extern "C" fn virt_addr_valid(addr: *const c_void) -> bool {
    k().virt_addr_valid(addr as *const u8)
}

/// `int PageHighMem(const struct page *page)`.
///
/// # Safety
/// `page` is a page of this machine.
#[no_mangle]
pub unsafe extern "C" fn PageHighMem(page: *const Page) -> c_int {
    match NonNull::new(page as *mut Page) {
        Some(p) => k().page_is_highmem(p) as c_int,
        None => 0,
    }
}

/// `phys_addr_t virt_to_phys(volatile void *addr)` (`__pa`).
#[no_mangle]
pub extern "C" fn virt_to_phys(addr: *const c_void) -> u64 {
    k().virt_to_phys(addr as *const u8)
}

/// `void *phys_to_virt(phys_addr_t addr)` (`__va`).
#[no_mangle]
pub extern "C" fn phys_to_virt(addr: u64) -> *mut c_void {
    k().phys_to_virt(addr) as *mut c_void
}

/// `unsigned long totalram_pages(void)`: pages the buddy allocator manages.
#[no_mangle]
pub extern "C" fn totalram_pages() -> c_ulong {
    k().totalram_pages() as c_ulong
}

/// `unsigned long nr_free_pages(void)`.
#[no_mangle]
pub extern "C" fn nr_free_pages() -> c_ulong {
    k().nr_free_pages() as c_ulong
}

/// `int numa_node_id(void)`: the current CPU's node.
#[no_mangle]
pub extern "C" fn numa_node_id() -> c_int {
    k().numa_node_id() as c_int
}

/// `int cpu_to_node(int cpu)`.
#[no_mangle]
pub extern "C" fn cpu_to_node(cpu: c_int) -> c_int {
    if cpu < 0 {
        return 0;
    }
    k().cpu_to_node(cpu as usize) as c_int
}

/// `unsigned int nr_node_ids` as a function.
#[no_mangle]
pub extern "C" fn kmem_nr_node_ids() -> c_uint {
    k().nr_node_ids() as c_uint
}
