//! Huge blocks: allocations above `KMALLOC_MAX_SIZE` (4 MiB), from vmalloc.
//!
//! kmalloc stops at an order-10 compound page; anything bigger is virtually
//! contiguous memory from `vmalloc`, scattered RAM pages mapped into the
//! machine's vmalloc window (which the hosted platform makes real with
//! `mmap` aliases of the RAM memfd). Requests larger than the machine's RAM
//! (with private lowmem, than HighMem's free pages, the only ones the window
//! can map) fail at once with `ENOMEM` and no kernel warning, as an overcommit-heuristic
//! Linux refuses an `mmap` larger than RAM plus swap; the machine never
//! falls back to host memory behind kmem's back, so every byte a program
//! uses shows up in the machine's statistics (`VmallocUsed`).
//!
//! **Layout.** vmalloc gives page-aligned areas and `free` must find the
//! area and the usable size from the pointer alone, so each block carries a
//! 16-byte header right before the pointer: the area's start (what `vfree`
//! takes) and the usable bytes. The pointer is the first multiple of the
//! alignment (at least 16) at or after `start + 16`, so the area is
//! `size + align` bytes rounded up to pages. `free` recognises huge blocks
//! by address (`is_vmalloc_addr`): O(1); before it reads the header, it
//! makes sure the header's page belongs to a live area (`vmalloc_to_page`),
//! so a double free is reported, not a fault.
//!
//! vmalloc's pages come back to the page allocator on `vfree` and, in
//! pageblocks, to the host (free page reporting punches them out of the memfd).

use core::ptr;
use kmem::{Kmem, PAGE_SIZE};
use kmem_hosted::HostedPlatform;

/// Bytes of header before a huge block.
const HDR: usize = 16;

/// Allocates a huge block of `size` bytes aligned to `align` (a power of
/// two); null on failure. `zero`: the first `size` bytes read as zero.
pub fn huge_alloc(k: &Kmem<HostedPlatform>, size: usize, align: usize, zero: bool) -> *mut u8 {
    let align = align.max(HDR);
    let Some(total) = size.checked_add(align) else {
        return ptr::null_mut();
    };
    if total / PAGE_SIZE >= mappable_pages(k) {
        return ptr::null_mut();
    }
    let Ok(base) = k.__vmalloc(total, kmem::GFP_KERNEL | kmem::__GFP_NOWARN) else {
        return ptr::null_mut();
    };
    let base = base.as_ptr() as usize;
    let p = (base + HDR + align - 1) & !(align - 1);
    let mapped = total.next_multiple_of(PAGE_SIZE);
    let usable = base + mapped - p;
    // SAFETY: `[base, base + mapped)` is our fresh mapping and `p - 16 >= base`.
    unsafe {
        ptr::write((p - HDR) as *mut usize, base);
        ptr::write((p - HDR + 8) as *mut usize, usable);
        if zero {
            crate::zero_resident(p as *mut u8, size);
        }
    }
    p as *mut u8
}

/// Pages a huge block could be given: the RAM's, or with private lowmem
/// (libkmalloc's default) HighMem's free pages, the only ones the vmalloc
/// window can map (a request beyond them fails at once with `ENOMEM`,
/// instead of taking lowmem pages vmalloc cannot map).
fn mappable_pages(k: &Kmem<HostedPlatform>) -> usize {
    if k.platform.private_lowmem() == 0 {
        return k.totalram_pages();
    }
    k.zones()
        .filter(|z| z.zone_type == kmem::ZoneType::HighMem)
        .map(|z| z.nr_free())
        .sum()
}

/// The usable size of huge block `p`.
///
/// # Safety
/// `p` was returned by `huge_alloc` and is live.
pub unsafe fn huge_usable_size(p: *const u8) -> usize {
    // SAFETY: the header precedes every huge block.
    unsafe { ptr::read((p as usize - HDR + 8) as *const usize) }
}

/// Frees huge block `p`. A pointer whose header does not lie in a live
/// vmalloc area, or does not name one (not from `huge_alloc`, or freed
/// already: a double free), gets vfree's warning and nothing is freed.
///
/// # Safety
/// `p` is inside the vmalloc window; if it came from `huge_alloc` it is not
/// used afterwards.
pub unsafe fn huge_free(k: &Kmem<HostedPlatform>, p: *const u8) {
    let a = p as usize;
    // The header must be on a page of a live area: a block freed already is unmapped (its range
    // may even be another block's by now, whose header then does not name this pointer's area).
    if a & (HDR - 1) != 0 || k.vmalloc_to_page((a - HDR) as *const u8).is_none() {
        // Not a huge block (or freed already): vfree reports it and frees nothing.
        // SAFETY: as said.
        unsafe { k.vfree(p) };
        return;
    }
    // SAFETY: the header's page is mapped: it is a page of a live vmalloc area (checked above).
    let base = unsafe { ptr::read((a - HDR) as *const usize) };
    if base > a || !k.is_vmalloc_addr(base as *const u8) {
        // The header names no area: vfree reports `p` and frees nothing.
        // SAFETY: as said.
        unsafe { k.vfree(p) };
        return;
    }
    // SAFETY: the block's area (its header names it); the caller gives the block up.
    unsafe { k.vfree(base as *const u8) };
}
