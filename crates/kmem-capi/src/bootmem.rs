//! `linux/bootmem.h` and `linux/memblock.h`: the boot-time allocator.
//!
//! A C program only ever runs after its machine booted, when memory belongs
//! to the buddy allocator. The kernel's boot allocators then warn once
//! (`WARN_ON_ONCE(slab_is_available())`) and fall back to a `GFP_NOWAIT`
//! page allocation, zeroed; `free_bootmem`/`memblock_free` give such memory
//! (or a real boot reservation's whole pages) back. The core does exactly
//! that, so these functions forward to it. Sizes and addresses are physical
//! (`phys_addr_t`) where the kernel's are.

use core::ffi::{c_int, c_ulong, c_void};
use core::ptr::{self, NonNull};

use crate::k;

fn ptr_or_null(p: Option<NonNull<u8>>) -> *mut c_void {
    p.map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
}

/// `void *alloc_bootmem(unsigned long size)`: zeroed, cache-line aligned.
#[no_mangle]
pub extern "C" fn alloc_bootmem(size: c_ulong) -> *mut c_void {
    ptr_or_null(k().alloc_bootmem(size as usize))
}

/// `void *alloc_bootmem_low(unsigned long size)`: below 4 GiB.
#[no_mangle]
pub extern "C" fn alloc_bootmem_low(size: c_ulong) -> *mut c_void {
    ptr_or_null(k().alloc_bootmem_low(size as usize))
}

/// `void *alloc_bootmem_pages(unsigned long size)`: page aligned.
#[no_mangle]
pub extern "C" fn alloc_bootmem_pages(size: c_ulong) -> *mut c_void {
    ptr_or_null(k().alloc_bootmem_pages(size as usize))
}

/// `void *alloc_bootmem_low_pages(unsigned long size)`.
#[no_mangle]
pub extern "C" fn alloc_bootmem_low_pages(size: c_ulong) -> *mut c_void {
    ptr_or_null(k().alloc_bootmem_low_pages(size as usize))
}

/// `void free_bootmem(unsigned long addr, unsigned long size)`: `addr` is
/// physical (`__pa(ptr)`), as in 2.6.
///
/// # Safety
/// The range came from the boot allocator and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn free_bootmem(addr: c_ulong, size: c_ulong) {
    // `unsigned long` is 64 bits here, but not on every target.
    #[allow(clippy::unnecessary_cast)]
    let phys = addr as u64;
    // SAFETY: caller's contract.
    unsafe { k().free_bootmem(phys, size as usize) }
}

/// `void *memblock_alloc(phys_addr_t size, phys_addr_t align)`: zeroed.
#[no_mangle]
pub extern "C" fn memblock_alloc(size: u64, align: u64) -> *mut c_void {
    ptr_or_null(k().memblock_alloc(size as usize, align as usize))
}

/// `void *memblock_alloc_raw(phys_addr_t size, phys_addr_t align)`: not zeroed.
#[no_mangle]
pub extern "C" fn memblock_alloc_raw(size: u64, align: u64) -> *mut c_void {
    ptr_or_null(k().memblock_alloc_raw(size as usize, align as usize))
}

/// `void *memblock_alloc_from(phys_addr_t size, phys_addr_t align, phys_addr_t min_addr)`.
#[no_mangle]
pub extern "C" fn memblock_alloc_from(size: u64, align: u64, min_addr: u64) -> *mut c_void {
    ptr_or_null(k().memblock_alloc_from(size as usize, align as usize, min_addr))
}

/// `void *memblock_alloc_low(phys_addr_t size, phys_addr_t align)`.
#[no_mangle]
pub extern "C" fn memblock_alloc_low(size: u64, align: u64) -> *mut c_void {
    ptr_or_null(k().memblock_alloc_low(size as usize, align as usize))
}

/// `void *memblock_alloc_node(phys_addr_t size, phys_addr_t align, int nid)`.
#[no_mangle]
pub extern "C" fn memblock_alloc_node(size: u64, align: u64, nid: c_int) -> *mut c_void {
    ptr_or_null(k().memblock_alloc_node(size as usize, align as usize, nid))
}

/// `void *memblock_alloc_try_nid(phys_addr_t size, phys_addr_t align,
/// phys_addr_t min_addr, phys_addr_t max_addr, int nid)`.
#[no_mangle]
pub extern "C" fn memblock_alloc_try_nid(
    size: u64,
    align: u64,
    min_addr: u64,
    max_addr: u64,
    nid: c_int,
) -> *mut c_void {
    ptr_or_null(k().memblock_alloc_try_nid(size as usize, align as usize, min_addr, max_addr, nid))
}

/// `void *memblock_alloc_try_nid_raw(...)`: as above, not zeroed.
#[no_mangle]
pub extern "C" fn memblock_alloc_try_nid_raw(
    size: u64,
    align: u64,
    min_addr: u64,
    max_addr: u64,
    nid: c_int,
) -> *mut c_void {
    ptr_or_null(k().memblock_alloc_try_nid_raw(size as usize, align as usize, min_addr, max_addr, nid))
}

/// `phys_addr_t memblock_phys_alloc(phys_addr_t size, phys_addr_t align)`:
/// a physical address, 0 on failure.
#[no_mangle]
pub extern "C" fn memblock_phys_alloc(size: u64, align: u64) -> u64 {
    k().memblock_phys_alloc(size as usize, align as usize)
}

/// `void memblock_free(void *ptr, size_t size)`.
///
/// # Safety
/// The range came from the boot allocator and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn memblock_free(p: *mut c_void, size: usize) {
    if let Some(p) = NonNull::new(p as *mut u8) {
        // SAFETY: caller's contract.
        unsafe { k().memblock_free(p, size) }
    }
}

/// `void memblock_phys_free(phys_addr_t base, phys_addr_t size)`.
///
/// # Safety
/// As [`memblock_free`].
#[no_mangle]
pub unsafe extern "C" fn memblock_phys_free(base: u64, size: u64) {
    // SAFETY: caller's contract.
    unsafe { k().free_bootmem(base, size as usize) }
}

/// `phys_addr_t memblock_phys_mem_size(void)`: RAM memblock knows of.
#[no_mangle]
pub extern "C" fn memblock_phys_mem_size() -> u64 {
    k().memblock.lock(&k().platform).phys_mem_size()
}

/// `phys_addr_t memblock_reserved_size(void)`.
#[no_mangle]
pub extern "C" fn memblock_reserved_size() -> u64 {
    k().memblock.lock(&k().platform).reserved_size()
}

/// `phys_addr_t memblock_start_of_DRAM(void)`.
#[no_mangle]
pub extern "C" fn memblock_start_of_DRAM() -> u64 {
    k().memblock.lock(&k().platform).start_of_dram()
}

/// `phys_addr_t memblock_end_of_DRAM(void)`.
#[no_mangle]
pub extern "C" fn memblock_end_of_DRAM() -> u64 {
    k().memblock.lock(&k().platform).end_of_dram()
}
