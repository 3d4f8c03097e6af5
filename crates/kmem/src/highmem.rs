//! HighMem: temporary kernel mappings of pages without a permanent address
//! (`mm/highmem.c`, `include/linux/highmem*.h`).
//!
//! On a machine booted with `highmem=`, pages above `max_low_pfn` are in the
//! HighMem zone and `page_address()` has nothing for them. Two mechanisms
//! give them a kernel address for a while, both carved at boot from the top
//! of the vmalloc window (as x86-32 puts PKMAP and the fixmap above
//! `VMALLOC_END`): `[PKMAP_BASE, +LAST_PKMAP pages)`, a guard page, then the
//! fixmap's kmap slots, `KM_MAX_IDX` per CPU. `VMALLOC_END` moves down to
//! `PKMAP_BASE - 2 * PAGE_SIZE`.
//!
//! **kmap / kunmap** (the pkmap pool, `kmap_high`): `LAST_PKMAP` slots, each
//! with a count in `pkmap_count`: 0 = free, 1 = still mapped but unused
//! (its TLB entries may be stale), n = n - 1 users. A page's current slot is
//! found through `page_address_htable` (buckets of slot numbers hashed by
//! pfn), so the same page kmapped twice shares one slot. A new mapping takes
//! the next free slot after `last_pkmap_nr`; when the search wraps to slot 0,
//! `flush_all_zero_pkmaps` unmaps every count-1 slot, forgets its page and
//! flushes the TLB once for the whole pool. If every slot is in use, the
//! caller sleeps (task context: `might_sleep`) until a `kunmap` drops a count
//! to 1 and wakes the waiters, then searches again. One spinlock
//! (`kmap_lock`) covers the counts, the hash table and the mapping of a slot;
//! the wait is a futex on a sequence word bumped under that lock.
//!
//! **kmap_local_page / kunmap_local** (`kmap_local_pfn`): per-CPU stacked
//! fixmap slots. The caller is kept on its CPU (`migrate_disable`; on a
//! platform without a cheaper pin this is `preempt_disable`, so the section
//! is atomic there), pushes the next of its CPU's `KM_MAX_IDX` slots and maps
//! the page there; `kunmap_local` unmaps it and pops. Mappings nest and must
//! be undone in reverse order: undoing one out of order warns
//! (`WARN_ON_ONCE`, as the kernel's `kunmap_local_indexed`), frees that slot
//! only, and the stack pops past it once the later ones are gone, so no live
//! mapping is ever replaced. `kmap_atomic` also disables preemption.
//! Because the per-CPU stack is only touched by the thread pinned to that
//! CPU, it needs no lock.
//!
//! Lowmem pages need none of this: `kmap` and `kmap_local_page` return
//! `page_address()`.

use crate::gfp::GFP_KERNEL;
use crate::machine::Kmem;
use crate::page::{Page, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE};
use crate::platform::Platform;
use crate::spinlock::SpinLock;
use core::panic::Location;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// `LAST_PKMAP`: slots of the kmap pool (x86-32 without PAE: one page table).
pub const LAST_PKMAP: usize = 1024;
/// `KM_MAX_IDX`: nested `kmap_local` mappings a CPU can hold.
pub const KM_MAX_IDX: usize = 16;
/// `PA_HASH_ORDER`: log2 of the buckets of `page_address_htable`.
const PA_HASH_ORDER: u32 = 7;
const PA_HASH_SIZE: usize = 1 << PA_HASH_ORDER;
/// End of a hash chain. A link holds its slot + 1 (see [`link`]), so the
/// all-zero table is the empty one: the machine structure, built in zeroed
/// RAM, then takes no 14 KiB copy of it through the boot's stack.
const NO_SLOT: u16 = 0;
/// `PMD_SIZE`: PKMAP_BASE is aligned to it.
const PMD_SIZE: usize = 2 << 20;

const WARN_KUNMAP_LOCAL_ORDER: u32 = 45;
const WARN_KUNMAP_LOCAL_ADDR: u32 = 46;
const WARN_KMAP_LOCAL_DEPTH: u32 = 47;

struct PkmapInner {
    /// `pkmap_count`.
    count: [u32; LAST_PKMAP],
    /// The pfn each mapped slot holds (valid while `count != 0`).
    pfn: [usize; LAST_PKMAP],
    /// `page_address_htable`: first slot of each bucket's chain.
    htable: [u16; PA_HASH_SIZE],
    /// Next slot in the same bucket.
    next: [u16; LAST_PKMAP],
    /// `last_pkmap_nr`.
    last_pkmap_nr: usize,
    /// Tasks sleeping in `kmap` for a free slot.
    waiters: u32,
}

/// One CPU's kmap_local stack (`current->kmap_ctrl` of the task pinned there).
#[repr(C)]
struct KmapLocalCpu {
    /// Slots pushed (`kmap_ctrl.idx`).
    idx: AtomicUsize,
    /// pfn + 1 of the page in each slot, 0 when the slot is free.
    slot: [AtomicUsize; KM_MAX_IDX],
}

/// The machine's HighMem mapping state.
pub struct KmapState {
    lock: SpinLock<PkmapInner>,
    /// `pkmap_map_wait`: bumped when a slot may have become reusable.
    wait_seq: AtomicU32,
    /// `PKMAP_BASE` (0: no kmap on this machine).
    pkmap_base: AtomicUsize,
    /// Top of the fixmap kmap slots (`__fix_to_virt(FIX_KMAP_BEGIN) + PAGE_SIZE`).
    fixmap_top: AtomicUsize,
    /// The per-CPU kmap_local stacks (`nr_cpus` of them, kzalloc'd).
    local: AtomicUsize,
    /// Pages currently mapped through kmap_local, all CPUs.
    nr_local: AtomicUsize,
}

impl Default for KmapState {
    fn default() -> Self {
        Self::new()
    }
}

impl KmapState {
    /// No kmap area yet.
    pub const fn new() -> Self {
        Self {
            lock: SpinLock::new(PkmapInner {
                count: [0; LAST_PKMAP],
                pfn: [0; LAST_PKMAP],
                htable: [NO_SLOT; PA_HASH_SIZE],
                next: [NO_SLOT; LAST_PKMAP],
                last_pkmap_nr: 0,
                waiters: 0,
            }),
            wait_seq: AtomicU32::new(0),
            pkmap_base: AtomicUsize::new(0),
            fixmap_top: AtomicUsize::new(0),
            local: AtomicUsize::new(0),
            nr_local: AtomicUsize::new(0),
        }
    }
}

fn pa_hash(pfn: usize) -> usize {
    // hash_ptr of the page: any good mix of the pfn does.
    (pfn.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> (usize::BITS - PA_HASH_ORDER))
        & (PA_HASH_SIZE - 1)
}

/// The hash-chain link to `slot`.
fn link(slot: usize) -> u16 {
    slot as u16 + 1
}

impl PkmapInner {
    /// `page_address` lookup: the slot holding `pfn`.
    fn lookup(&self, pfn: usize) -> Option<usize> {
        let mut s = self.htable[pa_hash(pfn)];
        while s != NO_SLOT {
            let slot = s as usize - 1;
            if self.pfn[slot] == pfn {
                return Some(slot);
            }
            s = self.next[slot];
        }
        None
    }

    /// `set_page_address(page, vaddr)`.
    fn insert(&mut self, pfn: usize, slot: usize) {
        let b = pa_hash(pfn);
        self.pfn[slot] = pfn;
        self.next[slot] = self.htable[b];
        self.htable[b] = link(slot);
    }

    /// `set_page_address(page, NULL)`.
    fn remove(&mut self, slot: usize) {
        let b = pa_hash(self.pfn[slot]);
        let after = self.next[slot];
        if self.htable[b] == link(slot) {
            self.htable[b] = after;
        } else {
            let mut cur = self.htable[b];
            while cur != NO_SLOT {
                let i = cur as usize - 1;
                if self.next[i] == link(slot) {
                    self.next[i] = after;
                    break;
                }
                cur = self.next[i];
            }
        }
        self.next[slot] = NO_SLOT;
    }
}

impl<P: Platform> Kmem<P> {
    /// `kmap_init` / `permanent_kmaps_init`: carve the PKMAP pool and the
    /// kmap fixmap slots from the top of the vmalloc window; returns what is
    /// left for vmalloc. Machines without HighMem keep the whole window.
    pub(crate) fn kmap_init(&self, window: Option<(usize, usize)>) -> Option<(usize, usize)> {
        let (start, size) = window?;
        if !self.has_highmem() {
            return window;
        }
        let start_al = (start + PAGE_SIZE - 1) & PAGE_MASK;
        let end = (start + size) & PAGE_MASK;
        let fix_pages = KM_MAX_IDX * self.nr_cpu_ids();
        let need = (fix_pages + 1 + LAST_PKMAP + 2) * PAGE_SIZE + PMD_SIZE;
        if end < start_al || end - start_al < need + 16 * PAGE_SIZE {
            return window;
        }
        let bytes = self.nr_cpu_ids() * core::mem::size_of::<KmapLocalCpu>();
        let Ok(local) = self.kzalloc(bytes, GFP_KERNEL) else {
            return window;
        };
        let fixmap_top = end;
        let fix_start = fixmap_top - fix_pages * PAGE_SIZE;
        let pkmap_base = (fix_start - PAGE_SIZE - LAST_PKMAP * PAGE_SIZE) & !(PMD_SIZE - 1);
        self.kmap.local.store(local.as_ptr() as usize, Ordering::Relaxed);
        self.kmap.fixmap_top.store(fixmap_top, Ordering::Relaxed);
        self.kmap.pkmap_base.store(pkmap_base, Ordering::Release);
        let vmalloc_end = pkmap_base - 2 * PAGE_SIZE;
        Some((start, vmalloc_end - start))
    }

    /// `PKMAP_BASE` (0 when the machine has no HighMem).
    pub fn pkmap_base(&self) -> usize {
        self.kmap.pkmap_base.load(Ordering::Acquire)
    }

    /// `PKMAP_ADDR(nr)`.
    fn pkmap_addr(&self, nr: usize) -> usize {
        self.pkmap_base() + (nr << PAGE_SHIFT)
    }

    /// `__fix_to_virt(FIX_KMAP_BEGIN + idx)`: the fixmap grows downwards.
    fn kmap_fix_to_virt(&self, idx: usize) -> usize {
        self.kmap.fixmap_top.load(Ordering::Relaxed) - (idx + 1) * PAGE_SIZE
    }

    /// The HighMem page's kmap address while it holds a pkmap slot (the
    /// kernel's `page_address()` for HighMem, through `page_address_htable`).
    /// A slot stays attached to its page after the last `kunmap` until the
    /// pool is flushed, as in the kernel. `None` for lowmem pages (use
    /// `page_address`) and unmapped ones.
    pub fn pkmap_page_address(&self, page: NonNull<Page>) -> Option<NonNull<u8>> {
        if !self.page_is_highmem(page) || self.pkmap_base() == 0 {
            return None;
        }
        let pfn = self.page_to_pfn(page);
        let slot = self.kmap.lock.lock(&self.platform).lookup(pfn)?;
        NonNull::new(self.pkmap_addr(slot) as *mut u8)
    }

    /// `pkmap_count` of the slot holding `page` (0 if none): 1 means mapped
    /// without users, n means n - 1 users.
    pub fn pkmap_count(&self, page: NonNull<Page>) -> u32 {
        let pfn = self.page_to_pfn(page);
        let g = self.kmap.lock.lock(&self.platform);
        g.lookup(pfn).map_or(0, |s| g.count[s])
    }

    /// Slots of the pool in use or still mapped (count != 0).
    pub fn nr_pkmaps_mapped(&self) -> usize {
        self.kmap
            .lock
            .lock(&self.platform)
            .count
            .iter()
            .filter(|&&c| c != 0)
            .count()
    }

    /// Tasks sleeping in `kmap` for a free slot.
    pub fn kmap_waiters(&self) -> u32 {
        self.kmap.lock.lock(&self.platform).waiters
    }

    /// `flush_all_zero_pkmaps`: unmap every slot with count 1, one TLB flush.
    fn flush_all_zero_pkmaps(&self, g: &mut PkmapInner) {
        let mut need_flush = false;
        for i in 0..LAST_PKMAP {
            if g.count[i] != 1 {
                continue;
            }
            g.count[i] = 0;
            // SAFETY: the slot is ours (under kmap_lock) and has no users.
            unsafe { self.platform.unmap_pages(self.pkmap_addr(i), PAGE_SIZE) };
            g.remove(i);
            need_flush = true;
        }
        if need_flush {
            self.platform
                .flush_tlb_kernel_range(self.pkmap_addr(0), self.pkmap_addr(LAST_PKMAP));
        }
    }

    /// `kmap_high`: map a HighMem page in the pool (sleeping for a slot if
    /// `may_sleep`), take a reference on its slot.
    fn kmap_high(&self, pfn: usize, may_sleep: bool) -> Option<NonNull<u8>> {
        let mut g = self.kmap.lock.lock(&self.platform);
        'start: loop {
            if let Some(s) = g.lookup(pfn) {
                g.count[s] += 1;
                return NonNull::new(self.pkmap_addr(s) as *mut u8);
            }
            // map_new_virtual
            let mut count = LAST_PKMAP;
            loop {
                g.last_pkmap_nr = (g.last_pkmap_nr + 1) & (LAST_PKMAP - 1);
                if g.last_pkmap_nr == 0 {
                    self.flush_all_zero_pkmaps(&mut g);
                    count = LAST_PKMAP;
                }
                let nr = g.last_pkmap_nr;
                if g.count[nr] == 0 {
                    let vaddr = self.pkmap_addr(nr);
                    let phys = [(pfn as u64) << PAGE_SHIFT];
                    // SAFETY: the slot is free and ours under kmap_lock; it
                    // lies in the window carved at boot; the page is RAM.
                    if !unsafe { self.platform.map_pages(vaddr, &phys) } {
                        return None;
                    }
                    g.count[nr] = 2;
                    g.insert(pfn, nr);
                    return NonNull::new(vaddr as *mut u8);
                }
                count -= 1;
                if count != 0 {
                    continue;
                }
                // Every slot is in use: sleep until somebody unmaps one.
                if !may_sleep {
                    return None;
                }
                g.waiters += 1;
                let seq = self.kmap.wait_seq.load(Ordering::Acquire);
                drop(g);
                self.platform.futex_wait(&self.kmap.wait_seq, seq, None);
                g = self.kmap.lock.lock(&self.platform);
                g.waiters -= 1;
                continue 'start;
            }
        }
    }

    /// `kmap`: a kernel address for `page` until `kunmap`; may sleep for a
    /// free pkmap slot. Lowmem pages get `page_address()`. `None` only when
    /// the pool is full and the caller is in atomic context (reported as the
    /// kernel's `might_sleep` does), or the platform cannot map.
    #[track_caller]
    pub fn kmap(&self, page: NonNull<Page>) -> Option<NonNull<u8>> {
        let atomic = self.might_sleep_at(Location::caller());
        if !self.page_is_highmem(page) {
            return self.page_address(page);
        }
        if self.pkmap_base() == 0 {
            return None;
        }
        self.kmap_high(self.page_to_pfn(page), !atomic)
    }

    /// `kunmap`: drop a `kmap` reference. Lowmem pages: nothing to do. A
    /// HighMem page that is not kmapped (or kunmapped more often than
    /// kmapped) gives the kernel's BUG as a warning and changes nothing.
    #[track_caller]
    pub fn kunmap(&self, page: NonNull<Page>) {
        self.might_sleep_at(Location::caller());
        if !self.page_is_highmem(page) {
            return;
        }
        let pfn = self.page_to_pfn(page);
        let mut g = self.kmap.lock.lock(&self.platform);
        let slot = g.lookup(pfn);
        let Some(s) = slot.filter(|&s| g.count[s] >= 2) else {
            drop(g);
            self.warn(format_args!(
                "kernel BUG at mm/highmem.c: kunmap_high: pfn {pfn:#x} is not kmapped"
            ));
            return;
        };
        g.count[s] -= 1;
        let need_wakeup = g.count[s] == 1 && g.waiters != 0;
        if need_wakeup {
            self.kmap.wait_seq.fetch_add(1, Ordering::Release);
        }
        drop(g);
        if need_wakeup {
            self.platform.futex_wake(&self.kmap.wait_seq, u32::MAX);
        }
    }

    /// This CPU's kmap_local stack.
    fn kmap_local_cpu(&self, cpu: usize) -> &KmapLocalCpu {
        let base = self.kmap.local.load(Ordering::Relaxed) as *const KmapLocalCpu;
        // SAFETY: kmap_init allocated nr_cpus zeroed records (atomics are
        // valid when zero) that live as long as the machine; cpu < nr_cpus.
        unsafe { &*base.add(cpu.min(self.nr_cpu_ids() - 1)) }
    }

    /// `__kmap_local_pfn_prot` for a HighMem page.
    fn kmap_local_high(&self, pfn: usize) -> Option<NonNull<u8>> {
        if self.kmap.local.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let cpu = self.platform.migrate_disable();
        let c = self.kmap_local_cpu(cpu);
        let top = c.idx.load(Ordering::Relaxed);
        if top >= KM_MAX_IDX {
            self.warn_once(
                WARN_KMAP_LOCAL_DEPTH,
                format_args!("kernel BUG at mm/highmem.c: kmap_local_idx_push: more than {KM_MAX_IDX} nested kmap_local mappings"),
            );
            self.platform.migrate_enable();
            return None;
        }
        let vaddr = self.kmap_fix_to_virt(top + KM_MAX_IDX * cpu);
        let phys = [(pfn as u64) << PAGE_SHIFT];
        // SAFETY: the slot belongs to this CPU's stack, which only the thread pinned to the CPU touches; it
        // lies in the window carved at boot and is free; the page is RAM.
        if !unsafe { self.platform.map_pages(vaddr, &phys) } {
            self.platform.migrate_enable();
            return None;
        }
        c.slot[top].store(pfn + 1, Ordering::Relaxed);
        c.idx.store(top + 1, Ordering::Relaxed);
        self.kmap.nr_local.fetch_add(1, Ordering::Relaxed);
        NonNull::new(vaddr as *mut u8)
    }

    /// `kmap_local_page`: a CPU-local mapping of `page`, valid in this
    /// context until `kunmap_local`; nests (undo in reverse order). The
    /// caller stays on its CPU meanwhile. Lowmem pages get `page_address()`.
    pub fn kmap_local_page(&self, page: NonNull<Page>) -> Option<NonNull<u8>> {
        if !self.page_is_highmem(page) {
            return self.page_address(page);
        }
        self.kmap_local_high(self.page_to_pfn(page))
    }

    /// `kunmap_local` (`kunmap_local_indexed`): undo `kmap_local_page`; any
    /// address inside the mapped page will do. Addresses of lowmem pages are
    /// ignored; anything else warns and changes nothing.
    pub fn kunmap_local(&self, addr: *const u8) {
        let a = addr as usize & PAGE_MASK;
        let top = self.kmap.fixmap_top.load(Ordering::Relaxed);
        let bottom = top.wrapping_sub(KM_MAX_IDX * self.nr_cpu_ids() * PAGE_SIZE);
        if top == 0 || a < bottom || a >= top {
            let lowmem_end = self.page_offset() + (self.max_low_pfn() << PAGE_SHIFT);
            if a < self.page_offset() || a >= lowmem_end {
                self.warn_once(
                    WARN_KUNMAP_LOCAL_ADDR,
                    format_args!("kunmap_local: {addr:p} is not a kmap_local address"),
                );
            }
            return;
        }
        let idx = (top - a) / PAGE_SIZE - 1;
        let (slot_cpu, ty) = (idx / KM_MAX_IDX, idx % KM_MAX_IDX);
        let cpu = self.platform.smp_processor_id();
        let c = self.kmap_local_cpu(cpu);
        if slot_cpu != cpu || c.slot[ty].load(Ordering::Relaxed) == 0 {
            self.warn_once(
                WARN_KUNMAP_LOCAL_ADDR,
                format_args!("kunmap_local: {addr:p} is not mapped by this CPU's kmap_local"),
            );
            return;
        }
        let depth = c.idx.load(Ordering::Relaxed);
        if ty + 1 != depth {
            self.warn_once(
                WARN_KUNMAP_LOCAL_ORDER,
                format_args!(
                    "kunmap_local: {addr:p} is kmap_local slot {ty} but slot {} was mapped last (unmap in reverse order)",
                    depth - 1
                ),
            );
        }
        // SAFETY: this CPU's slot, mapped by kmap_local_high; its user gives
        // it up.
        unsafe { self.platform.unmap_pages(a, PAGE_SIZE) };
        self.platform.flush_tlb_kernel_range(a, a + PAGE_SIZE);
        c.slot[ty].store(0, Ordering::Relaxed);
        let mut d = depth;
        while d > 0 && c.slot[d - 1].load(Ordering::Relaxed) == 0 {
            d -= 1;
        }
        c.idx.store(d, Ordering::Relaxed);
        self.kmap.nr_local.fetch_sub(1, Ordering::Relaxed);
        self.platform.migrate_enable();
    }

    /// kmap_local mappings live on all CPUs.
    pub fn nr_kmap_local(&self) -> usize {
        self.kmap.nr_local.load(Ordering::Relaxed)
    }

    /// `kmap_atomic`: `kmap_local_page` with preemption (and page faults)
    /// disabled until `kunmap_atomic`, lowmem pages included.
    pub fn kmap_atomic(&self, page: NonNull<Page>) -> Option<NonNull<u8>> {
        self.platform.preempt_disable();
        let r = self.kmap_local_page(page);
        if r.is_none() {
            self.platform.preempt_enable();
        }
        r
    }

    /// `kunmap_atomic`: undo `kmap_atomic`.
    pub fn kunmap_atomic(&self, addr: *const u8) {
        self.kunmap_local(addr);
        self.platform.preempt_enable();
    }

    /// `memcpy_from_page`-style helper: copy `dst.len()` bytes at `offset` of
    /// `page` through a kmap_local mapping. `false` if it could not be mapped.
    pub fn memcpy_from_page(&self, dst: &mut [u8], page: NonNull<Page>, offset: usize) -> bool {
        assert!(
            offset + dst.len() <= PAGE_SIZE,
            "memcpy_from_page beyond the page"
        );
        let Some(p) = self.kmap_local_page(page) else {
            return false;
        };
        // SAFETY: the page is mapped at `p` for PAGE_SIZE bytes; `dst` is
        // ordinary memory that cannot overlap a fresh mapping.
        unsafe { ptr::copy_nonoverlapping(p.as_ptr().add(offset), dst.as_mut_ptr(), dst.len()) };
        self.kunmap_local(p.as_ptr());
        true
    }

    /// `memcpy_to_page`: copy `src` to `offset` of `page` through kmap_local.
    pub fn memcpy_to_page(&self, page: NonNull<Page>, offset: usize, src: &[u8]) -> bool {
        assert!(offset + src.len() <= PAGE_SIZE, "memcpy_to_page beyond the page");
        let Some(p) = self.kmap_local_page(page) else {
            return false;
        };
        // SAFETY: as in memcpy_from_page.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), p.as_ptr().add(offset), src.len()) };
        self.kunmap_local(p.as_ptr());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Kmem::setup_arch` leaves the kmap state as the boot memory's zero
    /// bytes instead of writing `KmapState::new()`: the two must agree.
    #[test]
    fn the_initial_state_is_all_zeroes() {
        // Every field by name, so that a new one must be added here too.
        let mut k = KmapState::new();
        assert!(!k.lock.is_locked());
        let KmapState {
            lock,
            wait_seq,
            pkmap_base,
            fixmap_top,
            local,
            nr_local,
        } = &mut k;
        let PkmapInner {
            count,
            pfn,
            htable,
            next,
            last_pkmap_nr,
            waiters,
        } = lock.get_mut();
        assert!(count.iter().all(|&c| c == 0));
        assert!(pfn.iter().all(|&p| p == 0));
        assert!(htable.iter().chain(next.iter()).all(|&s| s == 0));
        assert_eq!((*last_pkmap_nr, *waiters), (0, 0));
        assert_eq!(wait_seq.load(Ordering::Relaxed), 0);
        for a in [pkmap_base, fixmap_top, local, nr_local] {
            assert_eq!(a.load(Ordering::Relaxed), 0);
        }
    }
}
