//! `asm/io.h`: `ioremap` and the MMIO helpers, over the core's ioremap.
//!
//! `ioremap` maps device memory into the vmalloc window (a `VM_IOREMAP`
//! area aligned to its size's order) and refuses RAM the page allocator
//! may own with the kernel's `ioremap on RAM` warning; `iounmap` of anything
//! else reports `iounmap: bad address`. A process has no devices, so the
//! hosted machine's device memory is a file descriptor registered at a free
//! physical address: `kmem_register_iomem` (kmem.h) does it for C programs
//! (a `memfd_create` stands for a device's registers; stores through the
//! ioremap address are seen with `pread` on the descriptor). Reserved RAM
//! (the BIOS areas below 1 MiB) can be ioremapped too, as on x86.
//!
//! `readb`..`writeq` and `ioread*`/`iowrite*` are volatile little-endian
//! accesses inline in the header; the block helpers (`memcpy_fromio`,
//! `memcpy_toio`, `memset_io`) are the core's, which use aligned 32-bit
//! accesses on the device side as x86 does.

use core::ffi::{c_char, c_int, c_ulong, c_void};
use core::ptr;
use std::os::fd::BorrowedFd;

use kmem_hosted::IomemError;

use crate::errno::{EBUSY, EINVAL, ENOMEM};
use crate::{c_str, k, machine};

fn ptr_or_null(p: Option<core::ptr::NonNull<u8>>) -> *mut c_void {
    p.map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
}

/// `void __iomem *ioremap(resource_size_t offset, unsigned long size)`:
/// uncached (UC-); NULL for size 0, RAM, or a range with nothing behind it.
#[no_mangle]
pub extern "C" fn ioremap(offset: u64, size: c_ulong) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().ioremap(offset, size as usize))
}

/// `ioremap_nocache` (removed in 5.6): `ioremap`.
#[no_mangle]
pub extern "C" fn ioremap_nocache(offset: u64, size: c_ulong) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().ioremap(offset, size as usize))
}

/// `void __iomem *ioremap_uc(resource_size_t offset, unsigned long size)`: strongly uncached.
#[no_mangle]
pub extern "C" fn ioremap_uc(offset: u64, size: c_ulong) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().ioremap_uc(offset, size as usize))
}

/// `void __iomem *ioremap_wc(resource_size_t offset, unsigned long size)`: write-combining.
#[no_mangle]
pub extern "C" fn ioremap_wc(offset: u64, size: c_ulong) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().ioremap_wc(offset, size as usize))
}

/// `void __iomem *ioremap_wt(resource_size_t offset, unsigned long size)`: write-through.
#[no_mangle]
pub extern "C" fn ioremap_wt(offset: u64, size: c_ulong) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().ioremap_wt(offset, size as usize))
}

/// `void __iomem *ioremap_cache(resource_size_t offset, unsigned long size)`: write-back.
#[no_mangle]
pub extern "C" fn ioremap_cache(offset: u64, size: c_ulong) -> *mut c_void {
    let _caller = crate::CCaller::enter(0);
    ptr_or_null(k().ioremap_cache(offset, size as usize))
}

/// `void iounmap(volatile void __iomem *addr)`.
///
/// # Safety
/// `addr` came from `ioremap` and the mapping is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn iounmap(addr: *mut c_void) {
    k().iounmap(addr as *const u8)
}

/// `void memcpy_fromio(void *dst, const volatile void __iomem *src, size_t n)`.
///
/// # Safety
/// `src` lies in a live mapping for `n` bytes, `dst` is writable, no overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy_fromio(dst: *mut c_void, src: *const c_void, n: usize) {
    // SAFETY: caller's contract.
    unsafe { kmem_core::ioremap::memcpy_fromio(dst as *mut u8, src as *const u8, n) }
}

/// `void memcpy_toio(volatile void __iomem *dst, const void *src, size_t n)`.
///
/// # Safety
/// `dst` lies in a live mapping for `n` bytes, `src` is readable, no overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy_toio(dst: *mut c_void, src: *const c_void, n: usize) {
    // SAFETY: caller's contract.
    unsafe { kmem_core::ioremap::memcpy_toio(dst as *mut u8, src as *const u8, n) }
}

/// `void memset_io(volatile void __iomem *dst, int c, size_t n)`.
///
/// # Safety
/// `dst` lies in a live mapping for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset_io(dst: *mut c_void, c: c_int, n: usize) {
    // SAFETY: caller's contract.
    unsafe { kmem_core::ioremap::memset_io(dst as *mut u8, c as u8, n) }
}

/// `int kmem_register_iomem(const char *name, phys_addr_t phys, size_t size,
/// int fd, off_t offset)` (kmem.h): make `[phys, phys + size)` the device
/// memory behind `fd` from `offset`, as a PCI core does when it finds a BAR:
/// the range appears in `/proc/iomem` under `name` and `ioremap` of any part
/// of it maps the file. All numbers page-aligned; the range must be free in
/// the memory map. 0, or `-EINVAL`, `-EBUSY`, `-ENOMEM`. The descriptor is
/// duplicated (the caller may close its own).
///
/// # Safety
/// `name` is a NUL-terminated string; `fd` is an open descriptor.
#[no_mangle]
pub unsafe extern "C" fn kmem_register_iomem(
    name: *const c_char,
    phys: u64,
    size: usize,
    fd: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: caller's contract.
    let Some(name) = (unsafe { c_str(name) }) else {
        return -EINVAL;
    };
    if fd < 0 || offset < 0 {
        return -EINVAL;
    }
    // SAFETY: the caller promises `fd` is open for the duration of the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    match machine().register_iomem(name, phys, size as u64, fd, offset as u64) {
        Ok(_) => 0,
        Err(IomemError::Busy) => -EBUSY,
        Err(IomemError::NoMemory) => -ENOMEM,
        Err(_) => -EINVAL,
    }
}
