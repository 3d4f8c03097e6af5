//! Kernel page tables (`init_mm`): the identity map, the linear map of all
//! RAM, the vmalloc window and the fixmap, all in the one PML4 every CPU
//! loads.
//!
//! **Layout** (Linux's x86-64 4-level layout):
//!
//! | range                                   | what                                  |
//! |-----------------------------------------|---------------------------------------|
//! | `0 .. 1 GiB`                            | identity map (kernel image, stacks), 2 MiB pages, from `boot.rs` |
//! | `0xffff888000000000 ..` (`PAGE_OFFSET`) | linear map of every RAM range of the memory map, 1 GiB pages where a whole aligned GiB is RAM, 2 MiB pages elsewhere, non-executable |
//! | `0xffffc90000000000 ..` +32 TiB         | the vmalloc window (`VMALLOC_START`), 4 KiB pages mapped on demand |
//! | `0xfffffe0000000000 ..`                 | fixmap: 4 KiB slots (local APIC before ioremap exists) and 2 MiB `early_memremap` slots (ACPI tables) |
//!
//! **Page-table pages** come from a pool in the kernel image until the
//! memory manager is up (the linear map, the fixmap, anything mapped during
//! `Kmem::boot`), then from kmem's page allocator (`GFP_KERNEL |
//! __GFP_ZERO`, as `pte_alloc_kernel`). A new table is installed with a
//! compare-and-exchange on the empty entry, so CPUs mapping neighbouring
//! vmalloc areas at once never lose a table (the loser frees its page);
//! leaf entries of one area belong to the area's owner and need no lock.
//!
//! **vmalloc**: `map_pages` writes present, writable, non-executable PTEs;
//! `unmap_pages` clears them and invalidates the local TLB only — other CPUs
//! may keep stale entries until the lazy purge calls
//! `flush_tlb_kernel_range`, which shoots them down (`tlb.rs`). That is the
//! kernel's lazy vunmap: the range is not handed out again before the flush.
//! `map_device` maps MMIO with the cache-disable bits (PCD, plus PWT for
//! strong UC) as ioremap does. At shutdown `free_vmalloc_tables` checks that
//! no PTE is left in the window and gives every table page back.

use crate::arch;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Virtual address of physical 0 in the linear map (`PAGE_OFFSET`).
pub const PAGE_OFFSET: usize = 0xffff_8880_0000_0000;
/// `VMALLOC_START`.
pub const VMALLOC_START: usize = 0xffff_c900_0000_0000;
/// `VMALLOC_SIZE`: 32 TiB, as 4-level x86-64.
pub const VMALLOC_SIZE: usize = 32 << 40;
/// Base of the fixmap region.
pub const FIXMAP_BASE: usize = 0xffff_fe00_0000_0000;
/// Fixmap 4 KiB slot of the local APIC.
pub const FIX_APIC_BASE: usize = 0;
/// First 2 MiB slot of `early_memremap` (slot 0 holds the 4 KiB fixmap PT).
const EARLY_REMAP_FIRST: usize = 1;
const EARLY_REMAP_SLOTS: usize = 64;

/// Present.
pub const PTE_P: u64 = 1 << 0;
/// Writable.
pub const PTE_RW: u64 = 1 << 1;
/// Write-through.
pub const PTE_PWT: u64 = 1 << 3;
/// Cache disable.
pub const PTE_PCD: u64 = 1 << 4;
/// Accessed.
pub const PTE_A: u64 = 1 << 5;
/// Dirty.
pub const PTE_D: u64 = 1 << 6;
/// Large page (PS) in a PD or PDPT entry.
pub const PTE_PS: u64 = 1 << 7;
/// PAT index bit of a 4 KiB PTE.
pub const PTE_PAT: u64 = 1 << 7;
/// No execute.
pub const PTE_NX: u64 = 1 << 63;
/// Physical address bits of an entry.
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
/// `PAGE_KERNEL`: present, writable, accessed, dirty, non-executable.
pub const PAGE_KERNEL: u64 = PTE_P | PTE_RW | PTE_A | PTE_D | PTE_NX;
/// A table entry (points at the next level).
const TABLE: u64 = PTE_P | PTE_RW | PTE_A;

const PAGE: u64 = 4096;
const SZ_2M: u64 = 2 << 20;
const SZ_1G: u64 = 1 << 30;

const EARLY_POOL_PAGES: usize = 96;

#[repr(C, align(4096))]
struct EarlyPool([[u8; 4096]; EARLY_POOL_PAGES]);
static mut EARLY_POOL: EarlyPool = EarlyPool([[0; 4096]; EARLY_POOL_PAGES]);
static EARLY_USED: AtomicUsize = AtomicUsize::new(0);

/// Whether the linear map is up (tables are then reached through it).
static LINEAR_UP: AtomicBool = AtomicBool::new(false);
/// End of the linear map (virtual).
static LINEAR_END: AtomicUsize = AtomicUsize::new(PAGE_OFFSET);
/// Page-table pages taken from the memory manager and not given back.
pub static PGTABLE_PAGES: AtomicUsize = AtomicUsize::new(0);
/// Next free `early_memremap` slot.
static EARLY_REMAP_NEXT: AtomicUsize = AtomicUsize::new(EARLY_REMAP_FIRST);
/// Physical base + 1 of each `early_memremap` slot (0: unused).
static mut EARLY_REMAP_PHYS: [u64; EARLY_REMAP_FIRST + EARLY_REMAP_SLOTS] =
    [0; EARLY_REMAP_FIRST + EARLY_REMAP_SLOTS];
/// Whether the CPU has 1 GiB pages.
static GBPAGES: AtomicBool = AtomicBool::new(false);
/// Pages of the linear map by size: [4K, 2M, 1G].
pub static DIRECT_PAGES: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Where page-table pages come from once the memory manager is up.
pub struct PgtableAllocator {
    /// Allocate a zeroed page; its physical address.
    pub alloc: fn() -> Option<u64>,
    /// Free a page `alloc` returned.
    pub free: fn(u64),
}

static mut LATE_ALLOC: Option<PgtableAllocator> = None;
static LATE_READY: AtomicBool = AtomicBool::new(false);

/// Switch table allocation to the memory manager.
///
/// # Safety
/// Called once, on the boot CPU, before other CPUs run.
pub unsafe fn set_pgtable_allocator(a: PgtableAllocator) {
    // SAFETY: single-threaded boot (caller's promise).
    unsafe { *core::ptr::addr_of_mut!(LATE_ALLOC) = Some(a) };
    LATE_READY.store(true, Ordering::Release);
}

fn late() -> Option<&'static PgtableAllocator> {
    if !LATE_READY.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: written once before LATE_READY was published.
    unsafe { (*core::ptr::addr_of!(LATE_ALLOC)).as_ref() }
}

fn pool_range() -> (u64, u64) {
    let start = core::ptr::addr_of!(EARLY_POOL) as u64;
    (start, start + (EARLY_POOL_PAGES as u64) * PAGE)
}

/// A zeroed page-table page; its physical address.
fn alloc_table() -> Option<u64> {
    if let Some(a) = late() {
        let p = (a.alloc)()?;
        PGTABLE_PAGES.fetch_add(1, Ordering::Relaxed);
        return Some(p);
    }
    let i = EARLY_USED.fetch_add(1, Ordering::Relaxed);
    if i >= EARLY_POOL_PAGES {
        return None;
    }
    // The pool lives in the identity-mapped image: virtual = physical.
    Some(pool_range().0 + i as u64 * PAGE)
}

fn free_table(phys: u64) {
    let (s, e) = pool_range();
    if (s..e).contains(&phys) {
        return; // early pool pages stay with the image
    }
    if let Some(a) = late() {
        PGTABLE_PAGES.fetch_sub(1, Ordering::Relaxed);
        (a.free)(phys);
    }
}

/// Virtual address of a page-table page.
fn table_virt(phys: u64) -> *mut AtomicU64 {
    if LINEAR_UP.load(Ordering::Relaxed) {
        (PAGE_OFFSET as u64 + phys) as *mut AtomicU64
    } else {
        phys as *mut AtomicU64
    }
}

fn pml4() -> *mut AtomicU64 {
    // Only the address is taken; the PML4 is in the identity-mapped image.
    core::ptr::addr_of_mut!(crate::boot::boot_pml4) as *mut AtomicU64
}

fn index(virt: usize, level: u32) -> usize {
    (virt >> (12 + 9 * level)) & 511
}

/// Entry `idx` of the table at `table`.
fn entry<'a>(table: *mut AtomicU64, idx: usize) -> &'a AtomicU64 {
    // SAFETY: `table` is a live page-table page (4096 bytes, 512 entries).
    unsafe { &*table.add(idx) }
}

/// The next-level table under `e`, creating it if empty. `None`: out of
/// memory, or `e` maps a large page.
fn next_table(e: &AtomicU64) -> Option<*mut AtomicU64> {
    let mut v = e.load(Ordering::Acquire);
    if v & PTE_P == 0 {
        let new = alloc_table()?;
        match e.compare_exchange(0, new | TABLE, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => v = new | TABLE,
            Err(cur) => {
                free_table(new);
                v = cur;
            }
        }
    }
    if v & PTE_PS != 0 {
        return None;
    }
    Some(table_virt(v & PTE_ADDR))
}

/// The table `levels_down` below the PML4 for `virt` (3: the PT), creating
/// the tables on the way.
fn walk_create(virt: usize, levels_down: u32) -> Option<*mut AtomicU64> {
    let mut t = pml4();
    for lvl in (4 - levels_down..4).rev() {
        t = next_table(entry(t, index(virt, lvl)))?;
    }
    Some(t)
}

/// The PTE of `virt` if its tables exist.
fn walk_pte(virt: usize) -> Option<&'static AtomicU64> {
    let mut t = pml4();
    for lvl in (1..4).rev() {
        let v = entry(t, index(virt, lvl)).load(Ordering::Acquire);
        if v & PTE_P == 0 || v & PTE_PS != 0 {
            return None;
        }
        t = table_virt(v & PTE_ADDR);
    }
    Some(entry(t, index(virt, 0)))
}

/// Build the linear map of the RAM ranges `ram` (physical `[start, end)`).
/// Returns the number of bytes mapped, or `None` if the early pool ran out.
pub fn map_linear(ram: &[(u64, u64)]) -> Option<u64> {
    let (_, _, _, edx) = arch::cpuid(0x8000_0001, 0);
    GBPAGES.store(edx & (1 << 26) != 0, Ordering::Relaxed);
    let gb = GBPAGES.load(Ordering::Relaxed);
    let mut mapped = 0;
    let mut end_max = 0;
    for &(start, end) in ram {
        let mut a = start & !(SZ_2M - 1);
        let end = (end + SZ_2M - 1) & !(SZ_2M - 1);
        end_max = end_max.max(end);
        while a < end {
            let virt = PAGE_OFFSET + a as usize;
            let pdpt = walk_create(virt, 1)?;
            let pdpte = entry(pdpt, index(virt, 2));
            let cur = pdpte.load(Ordering::Relaxed);
            if cur & PTE_PS != 0 {
                a = (a & !(SZ_1G - 1)) + SZ_1G; // covered by a 1 GiB page
                continue;
            }
            if gb && a.is_multiple_of(SZ_1G) && a + SZ_1G <= end && cur & PTE_P == 0 {
                pdpte.store(a | PAGE_KERNEL | PTE_PS, Ordering::Relaxed);
                DIRECT_PAGES[2].fetch_add(1, Ordering::Relaxed);
                a += SZ_1G;
                mapped += SZ_1G;
                continue;
            }
            let pd = next_table(pdpte)?;
            let pde = entry(pd, index(virt, 1));
            if pde.load(Ordering::Relaxed) & PTE_P == 0 {
                pde.store(a | PAGE_KERNEL | PTE_PS, Ordering::Relaxed);
                DIRECT_PAGES[1].fetch_add(1, Ordering::Relaxed);
                mapped += SZ_2M;
            }
            a += SZ_2M;
        }
    }
    arch::flush_tlb_local();
    LINEAR_END.store(PAGE_OFFSET + end_max as usize, Ordering::Relaxed);
    LINEAR_UP.store(true, Ordering::Release);
    Some(mapped)
}

/// End of the linear map.
pub fn linear_end() -> usize {
    LINEAR_END.load(Ordering::Relaxed)
}

/// Page-table pages used from the early pool.
pub fn early_pool_used() -> usize {
    EARLY_USED.load(Ordering::Relaxed).min(EARLY_POOL_PAGES)
}

/// Map 4 KiB pages: `virt + i * 4096` → `phys[i]`, with `flags`. False if
/// a table could not be allocated or a page is mapped already (nothing is
/// left half-mapped in that case).
pub fn map_4k(virt: usize, phys: &[u64], flags: u64) -> bool {
    for (i, &p) in phys.iter().enumerate() {
        let va = virt + i * PAGE as usize;
        let ok = walk_create(va, 3).is_some_and(|pt| {
            entry(pt, index(va, 0))
                .compare_exchange(0, (p & PTE_ADDR) | flags, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        if !ok {
            unmap_4k(virt, i * PAGE as usize);
            return false;
        }
    }
    true
}

/// Clear the PTEs of `[virt, virt + len)` and invalidate them in this CPU's
/// TLB (others are flushed by the lazy purge's shootdown).
pub fn unmap_4k(virt: usize, len: usize) {
    let mut va = virt;
    while va < virt + len {
        if let Some(pte) = walk_pte(va) {
            pte.store(0, Ordering::Release);
            arch::invlpg(va);
        }
        va += PAGE as usize;
    }
}

/// `IA32_PAT`.
const MSR_IA32_PAT: u32 = 0x277;
/// Linux's PAT layout (`pat_bp_init`): PA0 WB, PA1 WC, PA2 UC-, PA3 UC,
/// PA4 WB, PA5 WP, PA6 UC-, PA7 WT (memory types 6, 1, 7, 0, 6, 5, 7, 4).
pub const PAT_LINUX: u64 = 0x0407_0506_0007_0106;

/// Program this CPU's PAT as Linux does (every CPU, before it maps devices).
pub fn init_pat() {
    // SAFETY: IA32_PAT exists on every x86-64 CPU; the layout keeps PA0
    // (WB) and PA3 (UC) — the entries every existing mapping uses.
    unsafe { arch::wrmsr(MSR_IA32_PAT, PAT_LINUX) };
}

/// PTE bits selecting a cache mode under `PAT_LINUX` (`cachemode2protval`).
pub fn cache_mode_bits(pcm: kmem::platform::PageCacheMode) -> u64 {
    use kmem::platform::PageCacheMode::*;
    match pcm {
        Wb => 0,
        Wc => PTE_PWT,
        UcMinus => PTE_PCD,
        Uc => PTE_PCD | PTE_PWT,
        Wp => PTE_PAT | PTE_PWT,
        Wt => PTE_PAT | PTE_PCD | PTE_PWT,
    }
}

/// Map `len` bytes of device memory at `phys` to `virt` with cache mode
/// `pcm` (`ioremap_page_range`).
pub fn map_device(virt: usize, phys: u64, len: usize, pcm: kmem::platform::PageCacheMode) -> bool {
    let flags = PAGE_KERNEL | cache_mode_bits(pcm);
    let mut pages = [0u64; 64];
    let mut done = 0;
    while done < len {
        let n = ((len - done) / PAGE as usize).min(pages.len());
        for (i, p) in pages[..n].iter_mut().enumerate() {
            *p = phys + (done + i * PAGE as usize) as u64;
        }
        if !map_4k(virt + done, &pages[..n], flags) {
            unmap_4k(virt, done);
            return false;
        }
        done += n * PAGE as usize;
    }
    true
}

/// The raw 4 KiB PTE of `virt`, if its tables exist.
pub fn pte_of(virt: usize) -> Option<u64> {
    walk_pte(virt).map(|e| e.load(Ordering::Acquire))
}

/// The physical page mapped at `virt` by a 4 KiB PTE.
pub fn lookup_4k(virt: usize) -> Option<u64> {
    let v = walk_pte(virt)?.load(Ordering::Acquire);
    (v & PTE_P != 0).then_some(v & PTE_ADDR)
}

/// Map the fixmap 4 KiB slot `slot` to `phys` with `flags`; its address.
pub fn set_fixmap(slot: usize, phys: u64, flags: u64) -> Option<usize> {
    let va = FIXMAP_BASE + slot * PAGE as usize;
    let pt = walk_create(va, 3)?;
    entry(pt, index(va, 0)).store((phys & PTE_ADDR) | flags, Ordering::Release);
    arch::invlpg(va);
    Some(va)
}

/// `early_memremap`: map `[phys, phys + len)` (write-back, read-only use)
/// through 2 MiB fixmap slots that stay mapped; its virtual address.
pub fn early_memremap(phys: u64, len: u64) -> Option<*const u8> {
    let first = phys & !(SZ_2M - 1);
    let last = (phys + len.max(1) - 1) & !(SZ_2M - 1);
    let n = ((last - first) / SZ_2M + 1) as usize;
    // Reuse slots that map the same 2 MiB pages already.
    let used = EARLY_REMAP_NEXT.load(Ordering::Relaxed);
    for s in EARLY_REMAP_FIRST..used.min(EARLY_REMAP_FIRST + EARLY_REMAP_SLOTS) {
        if s + n > used {
            break;
        }
        let same = (0..n).all(|i| {
            // SAFETY: slots below `used` were filled by earlier calls.
            let base = unsafe { (*core::ptr::addr_of!(EARLY_REMAP_PHYS))[s + i] };
            base == first + i as u64 * SZ_2M + 1
        });
        if same {
            return Some((FIXMAP_BASE + s * SZ_2M as usize + (phys - first) as usize) as *const u8);
        }
    }
    let slot = EARLY_REMAP_NEXT.fetch_add(n, Ordering::Relaxed);
    if slot + n > EARLY_REMAP_FIRST + EARLY_REMAP_SLOTS {
        return None;
    }
    for i in 0..n {
        let va = FIXMAP_BASE + (slot + i) * SZ_2M as usize;
        let pd = walk_create(va, 2)?;
        entry(pd, index(va, 1)).store(
            (first + i as u64 * SZ_2M) | PAGE_KERNEL | PTE_PS,
            Ordering::Release,
        );
        arch::invlpg(va);
        // SAFETY: boot CPU only (early_memremap runs before SMP bring-up).
        unsafe { (*core::ptr::addr_of_mut!(EARLY_REMAP_PHYS))[slot + i] = first + i as u64 * SZ_2M + 1 };
    }
    Some((FIXMAP_BASE + slot * SZ_2M as usize + (phys - first) as usize) as *const u8)
}

/// PML4 slots of the vmalloc window.
fn vmalloc_pml4_slots() -> core::ops::Range<usize> {
    index(VMALLOC_START, 3)..index(VMALLOC_START + VMALLOC_SIZE - 1, 3) + 1
}

/// Free every page table of the vmalloc window, after checking that no PTE
/// is left in it; returns `(tables freed, PTEs still present)`. Only with
/// every other CPU parked (nobody maps or walks the window any more).
pub fn free_vmalloc_tables() -> (usize, usize) {
    let mut freed = 0;
    let mut leaked = 0;
    let top = pml4();
    for i in vmalloc_pml4_slots() {
        let e4 = entry(top, i);
        let v4 = e4.load(Ordering::Acquire);
        if v4 & PTE_P == 0 {
            continue;
        }
        let pdpt = table_virt(v4 & PTE_ADDR);
        for j in 0..512 {
            let v3 = entry(pdpt, j).load(Ordering::Acquire);
            if v3 & PTE_P == 0 {
                continue;
            }
            let pd = table_virt(v3 & PTE_ADDR);
            for k in 0..512 {
                let v2 = entry(pd, k).load(Ordering::Acquire);
                if v2 & PTE_P == 0 {
                    continue;
                }
                let pt = table_virt(v2 & PTE_ADDR);
                leaked += (0..512)
                    .filter(|&l| entry(pt, l).load(Ordering::Relaxed) & PTE_P != 0)
                    .count();
                free_table(v2 & PTE_ADDR);
                freed += 1;
            }
            free_table(v3 & PTE_ADDR);
            freed += 1;
        }
        e4.store(0, Ordering::Release);
        free_table(v4 & PTE_ADDR);
        freed += 1;
    }
    arch::flush_tlb_local();
    (freed, leaked)
}
