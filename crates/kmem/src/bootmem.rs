//! The boot-time allocator API of a machine: the seeds' `alloc_bootmem`
//! family and the modern `memblock_alloc` family, over the machine's memblock.
//!
//! Before the hand-over (`mem_init`) these carve memory out of memblock and
//! return it zeroed, exactly as the kernel's do. After the hand-over, memory
//! belongs to the buddy allocator and memblock must not hand it out again:
//! the kernel then warns once (`WARN_ON_ONCE(slab_is_available())`) and falls
//! back to a `GFP_NOWAIT` allocation from the buddy, and so does kmem.
//! `free_bootmem` after the hand-over releases the pages of a boot
//! reservation to the buddy allocator (`memblock_free_late`), or frees a
//! fallback allocation.

use crate::gfp::{__GFP_ZERO, GFP_NOWAIT};
use crate::machine::{Kmem, MachineState};
use crate::memblock::{
    PhysAddr, ARCH_LOW_ADDRESS_LIMIT, MEMBLOCK_ALLOC_ACCESSIBLE, NUMA_NO_NODE, SMP_CACHE_BYTES,
};
use crate::page::{flags::PG_RESERVED, PAGE_SHIFT, PAGE_SIZE};
use crate::platform::Platform;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

const WARN_MEMBLOCK_LATE: u32 = 10;
const WARN_ALIGN_ZERO: u32 = 11;

impl<P: Platform> Kmem<P> {
    /// `memblock_alloc_try_nid`: zeroed boot memory in `[min_addr, max_addr)`
    /// preferring node `nid`; retries without `min_addr` as the kernel does.
    pub fn memblock_alloc_try_nid(
        &self,
        size: usize,
        align: usize,
        min_addr: PhysAddr,
        max_addr: PhysAddr,
        nid: i32,
    ) -> Option<NonNull<u8>> {
        self.memblock_alloc_internal(size, align, min_addr, max_addr, nid, true)
    }

    /// `memblock_alloc_try_nid_raw`: as above, not zeroed.
    pub fn memblock_alloc_try_nid_raw(
        &self,
        size: usize,
        align: usize,
        min_addr: PhysAddr,
        max_addr: PhysAddr,
        nid: i32,
    ) -> Option<NonNull<u8>> {
        self.memblock_alloc_internal(size, align, min_addr, max_addr, nid, false)
    }

    /// `memblock_alloc`: zeroed boot memory anywhere below the current limit.
    pub fn memblock_alloc(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.memblock_alloc_try_nid(size, align, 0, MEMBLOCK_ALLOC_ACCESSIBLE, NUMA_NO_NODE)
    }

    /// `memblock_alloc_raw`: not zeroed.
    pub fn memblock_alloc_raw(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.memblock_alloc_try_nid_raw(size, align, 0, MEMBLOCK_ALLOC_ACCESSIBLE, NUMA_NO_NODE)
    }

    /// `memblock_alloc_from`: at or above `min_addr` if possible.
    pub fn memblock_alloc_from(&self, size: usize, align: usize, min_addr: PhysAddr) -> Option<NonNull<u8>> {
        self.memblock_alloc_try_nid(size, align, min_addr, MEMBLOCK_ALLOC_ACCESSIBLE, NUMA_NO_NODE)
    }

    /// `memblock_alloc_low`: below 4 GiB.
    pub fn memblock_alloc_low(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.memblock_alloc_try_nid(size, align, 0, ARCH_LOW_ADDRESS_LIMIT, NUMA_NO_NODE)
    }

    /// `memblock_alloc_node`.
    pub fn memblock_alloc_node(&self, size: usize, align: usize, nid: i32) -> Option<NonNull<u8>> {
        self.memblock_alloc_try_nid(size, align, 0, MEMBLOCK_ALLOC_ACCESSIBLE, nid)
    }

    /// `memblock_phys_alloc`: the physical address of uninitialised boot
    /// memory (the kernel does not clear physical allocations); 0 on failure.
    /// After the boot, a zeroed `GFP_NOWAIT` page allocation's, as the kernel
    /// falls back to `kzalloc_node` (`memblock_phys_free` gives it back).
    pub fn memblock_phys_alloc(&self, size: usize, align: usize) -> PhysAddr {
        if self.boot_allocator_gone("memblock_phys_alloc") {
            return self
                .alloc_pages_exact(size, GFP_NOWAIT | __GFP_ZERO)
                .map_or(0, |p| self.virt_to_phys(p.as_ptr()));
        }
        self.memblock
            .lock(&self.platform)
            .phys_alloc(size as u64, self.fix_align(align) as u64)
    }

    /// `alloc_bootmem`: zeroed, cache-line aligned.
    pub fn alloc_bootmem(&self, size: usize) -> Option<NonNull<u8>> {
        self.memblock_alloc_try_nid(
            size,
            SMP_CACHE_BYTES as usize,
            0,
            MEMBLOCK_ALLOC_ACCESSIBLE,
            NUMA_NO_NODE,
        )
    }

    /// `alloc_bootmem_low`: zeroed, below 4 GiB.
    pub fn alloc_bootmem_low(&self, size: usize) -> Option<NonNull<u8>> {
        self.memblock_alloc_try_nid(
            size,
            SMP_CACHE_BYTES as usize,
            0,
            ARCH_LOW_ADDRESS_LIMIT,
            NUMA_NO_NODE,
        )
    }

    /// `alloc_bootmem_pages`: zeroed, page aligned.
    pub fn alloc_bootmem_pages(&self, size: usize) -> Option<NonNull<u8>> {
        self.memblock_alloc_try_nid(size, PAGE_SIZE, 0, MEMBLOCK_ALLOC_ACCESSIBLE, NUMA_NO_NODE)
    }

    /// `alloc_bootmem_low_pages`: zeroed, page aligned, below 4 GiB.
    pub fn alloc_bootmem_low_pages(&self, size: usize) -> Option<NonNull<u8>> {
        self.memblock_alloc_try_nid(size, PAGE_SIZE, 0, ARCH_LOW_ADDRESS_LIMIT, NUMA_NO_NODE)
    }

    /// `free_bootmem` (`memblock_phys_free`): give back boot memory by physical
    /// address. After the hand-over, whole pages of a boot reservation go to
    /// the buddy allocator (`memblock_free_late`).
    ///
    /// # Safety
    /// The range was allocated from this machine's boot allocator (or its
    /// post-hand-over fallback) and is not used afterwards.
    pub unsafe fn free_bootmem(&self, phys: PhysAddr, size: usize) {
        if self.state() == MachineState::Boot {
            let _ = self.memblock.lock(&self.platform).phys_free(phys, size as u64);
            return;
        }
        let reserved = self
            .memblock
            .lock(&self.platform)
            .is_region_reserved(phys, size as u64);
        if reserved {
            // SAFETY: forwarded from the caller.
            unsafe { self.memblock_free_late(phys, size) };
        } else {
            let virt = self.phys_to_virt(phys);
            if let Some(v) = NonNull::new(virt) {
                // SAFETY: a post-hand-over boot allocation came from alloc_pages_exact.
                unsafe { self.free_pages_exact(v, size) };
            }
        }
    }

    /// `memblock_free` by virtual address.
    ///
    /// # Safety
    /// As `free_bootmem`.
    pub unsafe fn memblock_free(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: forwarded.
        unsafe { self.free_bootmem(self.virt_to_phys(ptr.as_ptr()), size) }
    }

    /// `memblock_free_late`: release the whole pages of a boot reservation.
    ///
    /// # Safety
    /// Nobody uses the range any more.
    unsafe fn memblock_free_late(&self, phys: PhysAddr, size: usize) {
        let _ = self.memblock.lock(&self.platform).phys_free(phys, size as u64);
        let start = ((phys as usize) + PAGE_SIZE - 1) >> PAGE_SHIFT;
        let end = (phys as usize + size) >> PAGE_SHIFT;
        let mut freed = 0;
        for pfn in start..end {
            let Some(page) = self.pfn_to_page(pfn) else {
                continue;
            };
            // SAFETY: the page belongs to the released reservation.
            unsafe {
                let p = page.as_ptr();
                if !(*p).is_reserved() {
                    continue;
                }
                (*p).clear(PG_RESERVED);
                let Some(zone) = self.page_zone_by_pfn(pfn) else {
                    continue;
                };
                zone.managed_pages.fetch_add(1, Ordering::Relaxed);
                self.free_one_page_locked(zone, p, pfn, 0, false, false);
            }
            freed += 1;
        }
        self.totalram_pages.fetch_add(freed, Ordering::Relaxed);
    }

    fn fix_align(&self, align: usize) -> usize {
        if align == 0 {
            self.warn_once(
                WARN_ALIGN_ZERO,
                format_args!("memblock_alloc_range_nid: zero alignment, using SMP_CACHE_BYTES"),
            );
            SMP_CACHE_BYTES as usize
        } else {
            align
        }
    }

    /// Warn (once) when the boot allocator is used after the hand-over.
    fn boot_allocator_gone(&self, func: &str) -> bool {
        if self.state() == MachineState::Running {
            self.warn_once(
                WARN_MEMBLOCK_LATE,
                format_args!(
                    "{func}: boot memory allocation after the buddy allocator took over (slab_is_available)"
                ),
            );
            true
        } else {
            false
        }
    }

    fn memblock_alloc_internal(
        &self,
        size: usize,
        align: usize,
        min_addr: PhysAddr,
        max_addr: PhysAddr,
        nid: i32,
        zero: bool,
    ) -> Option<NonNull<u8>> {
        let align = self.fix_align(align);
        if self.boot_allocator_gone("memblock_alloc_try_nid") {
            // The kernel falls back to kzalloc_node(GFP_NOWAIT).
            return self.alloc_pages_exact(size, GFP_NOWAIT | __GFP_ZERO).ok();
        }
        let mut mb = self.memblock.lock(&self.platform);
        let p = if zero {
            mb.alloc_try_nid(size as u64, align as u64, min_addr, max_addr, nid)
        } else {
            mb.alloc_try_nid_raw(size as u64, align as u64, min_addr, max_addr, nid)
        };
        drop(mb);
        if p.is_null() {
            crate::pr!(
                self,
                "memblock_alloc_try_nid: Failed to allocate {} bytes align={:#x} nid={} from={:#x} max_addr={:#x}",
                size,
                align,
                nid,
                min_addr,
                max_addr
            );
        }
        NonNull::new(p)
    }
}
