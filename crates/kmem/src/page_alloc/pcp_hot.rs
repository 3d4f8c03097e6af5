//! Per-CPU hot arrays: a few order-0 pages per CPU and migrate type in front
//! of the per-CPU lists, reached by restartable sequences.
//!
//! The per-CPU lists (`pcp.rs`) are protected by `pcp->lock`, taken with a
//! compare-and-swap as the kernel's `pcp_spin_trylock`, and every list
//! operation is several stores (a doubly linked list, the count, the
//! statistics). A process cannot disable preemption around them, so the lock
//! stays. In rseq mode (`slab/rseq.rs`) each zone also has, for every CPU, a
//! small array of free order-0 pages per pcp migrate type, changed only by
//! restartable sequences whose one committing store is the array's `word`:
//! the number of pages in it (bits 0..15), a stop bit (bit 15), and the
//! number of pages taken from it since the last drain (the 48 bits above). A free of a clean order-0 page pushes
//! it there if there is room; an order-0 allocation pops the newest page if
//! there is one; anything else (a full or empty array, cold pages, higher
//! orders) uses the lists as before. So the pages freed last are handed out
//! first — the lists' hot end — without the lock. This is tcmalloc's per-CPU
//! cache in front of the kernel's design: kmem's own, for the hosted
//! platform, where the lock's atomic instruction and the fork gate are most
//! of an order-0 allocation's cost.
//!
//! **Statistics stay exact.** A page in an array is a pcp page: it counts in
//! the pcp's `count` as read by `/proc/zoneinfo` and `nr_pcp_pages`, it is
//! `PG_pcp` (so freeing it again is the same double free), and the pcp's
//! `pgalloc` and `pgfree` include the array's traffic: pops are the word's
//! upper bits, and pushes are pops plus the pages in the array (a drain
//! folds both into the pcp's counters and clears the word).
//!
//! **Who else touches an array.** Only drains (`drain_all_pages`), under
//! the pcp lock, which move its pages to the pcp lists and fold its counts
//! into the pcp's. They stop the CPU's sequences first, as the slab slow
//! paths do (`Kmem::cpu_lock`), but with the stop bit in the word itself,
//! so that the sequences need no test of their own: with it set, the page
//! count reads 0x8000 or more, which is never a valid count (a pop or push
//! falls back to the lists). The drain sets it with an atomic OR (so that
//! no commit before it is lost), waits until no sequence that missed it can
//! still commit (trivially if it runs on that CPU, else by
//! `Platform::rseq_fence`), and reads the word again: a sequence that read
//! the word before the OR may have committed after it, overwriting the bit
//! with a plain store; then the drain sets it again and repeats. Entries for CPU ids that are not the machine's (an
//! unregistered area's -1 and -2, host CPUs beyond the machine's) and every
//! entry of a machine not in rseq mode or booted with `kmem.pcp_hot=off`
//! keep the bit for good.

use super::pcp::{order_to_pindex, PcpLists};
use super::zone::Zone;
use crate::list::ListHead;
use crate::machine::Kmem;
use crate::page::{flags::PG_PCP, Page};
use crate::platform::Platform;
#[cfg(target_arch = "x86_64")]
use crate::slab::rseq::{rseq_asm, this_cpu_index, RSEQ_CPU_ID, RSEQ_CS};
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// Pages an array holds.
pub const PCP_HOT_PAGES: usize = 15;

/// Entries before CPU 0's: for the negative CPU ids of an unregistered area.
pub(crate) const HOT_NEGATIVE_CPU_IDS: usize = 2;

/// The word's page-count bits (the stop bit included: see the module comment).
const NR_FIELD: u64 = 0xffff;
/// The word's stop bit.
const HOT_STOP: u64 = 0x8000;
/// The word's count of pages taken starts at this bit.
const POPS_SHIFT: u32 = 16;

/// One CPU's array of one migrate type in one zone, on its own cache lines.
#[repr(C, align(128))]
pub struct PcpHot {
    /// Pages in `pages` (bits 0..15), the stop bit (15), pages popped since
    /// the last drain (the rest).
    word: AtomicU64,
    /// `pages[..nr]`, the newest last.
    pages: [AtomicPtr<Page>; PCP_HOT_PAGES],
}

/// log2 of an entry's size: the sequences index with a shift.
pub(crate) const HOT_SHIFT: u32 = size_of::<PcpHot>().trailing_zeros();
const _: () = assert!(size_of::<PcpHot>() == 1 << HOT_SHIFT);
const _: () = assert!(PCP_HOT_PAGES < HOT_STOP as usize);

impl PcpHot {
    /// Stop a zeroed entry for good (boot; `Kmem::pcp_hot_init` starts the
    /// machine's CPUs' entries).
    pub(crate) fn set_off(&self) {
        self.word.store(HOT_STOP, Ordering::Relaxed);
    }

    /// (pages in the array, pages popped since the last drain); racy (for
    /// statistics).
    fn counts(&self) -> (usize, usize) {
        let w = self.word.load(Ordering::Relaxed);
        (((w & NR_FIELD) & !HOT_STOP) as usize, (w >> POPS_SHIFT) as usize)
    }
}

/// Pop the newest page of the calling CPU's array in the per-CPU array
/// whose CPU 0 entry is `hot0`; null if it is empty or stopped.
///
/// # Safety
/// `area` is the offset of every thread's `struct rseq` from its FS base;
/// `hot0` is CPU 0's entry of one of a zone's per-CPU arrays, which has an
/// entry for every CPU id an area can show (`HOT_NEGATIVE_CPU_IDS` before
/// it).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn pop(area: isize, hot0: *const PcpHot) -> *mut Page {
    let page: *mut Page;
    // The sequence only reads the thread's rseq area and this CPU's entry, and commits with one store to the
    // word (count down, pops up). A count of 0, or a stopped word (0x8000 and up), leaves `nr - 1` at or above
    // the capacity. Labels as in `slab/rseq.rs`.
    // SAFETY: caller contract.
    unsafe {
        rseq_asm!(
            t: "{t}",
            pre: [],
            body: [
                "movslq %fs:{cpuid}({area}), {c}",
                "shlq ${shift}, {c}",
                "addq {hot}, {c}",
                "movq ({c}), {t}",
                "movzwl {t:x}, {i:e}",
                "subl $1, {i:e}",
                "cmpl ${cap}, {i:e}",
                "jae 7f",
                "movq {pages}({c},{i},8), {page}",
                "addq ${pop}, {t}",
                "movq {t}, ({c})"
            ],
            fallback: ["xorl {page:e}, {page:e}", "jmp 3b"],
            area = in(reg) area,
            hot = in(reg) hot0,
            page = out(reg) page,
            c = out(reg) _,
            i = out(reg) _,
            t = out(reg) _,
            cpuid = const RSEQ_CPU_ID,
            shift = const HOT_SHIFT,
            cap = const PCP_HOT_PAGES,
            pages = const offset_of!(PcpHot, pages),
            pop = const (1u64 << POPS_SHIFT) - 1,
        );
    }
    page
}

/// Push `page` onto the calling CPU's array in the per-CPU array whose CPU
/// 0 entry is `hot0` if it has room and is not stopped; false (nothing
/// done) otherwise.
///
/// # Safety
/// As [`pop`]; `page` is a free order-0 page of the array's zone and
/// migrate type, owned by the caller, already marked `PG_pcp`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn push(area: isize, hot0: *const PcpHot, page: *mut Page) -> bool {
    // Reads as `pop`; writes the slot past the last page (unused until the commit) and commits with one store
    // to the word (count up). A full or stopped word fails the capacity test. Labels as in `slab/rseq.rs`; an
    // asm block with labels has no outputs, so the scratch registers are fixed.
    // SAFETY: caller contract.
    unsafe {
        rseq_asm!(
            t: "%rdx",
            pre: [],
            body: [
                this_cpu_index!(),
                "addq {hot}, %rcx",
                "movq (%rcx), %rdx",
                "movzwl %dx, %eax",
                "cmpl ${cap}, %eax",
                "jae 7f",
                "movq {page}, {pages}(%rcx,%rax,8)",
                "addq $1, %rdx",
                "movq %rdx, (%rcx)"
            ],
            fallback: ["jmp {fallback}"],
            area = in(reg) area,
            hot = in(reg) hot0,
            page = in(reg) page,
            out("rax") _,
            out("rcx") _,
            out("rdx") _,
            cpuid = const RSEQ_CPU_ID,
            shift = const HOT_SHIFT,
            pages = const offset_of!(PcpHot, pages),
            cap = const PCP_HOT_PAGES,
            fallback = label {
                return false;
            },
        );
    }
    true
}

impl<P: Platform> Kmem<P> {
    /// An order-0 page of migrate type `mt` (below `MIGRATE_PCPTYPES`) from
    /// this CPU's hot array of populated zone `zone`, or null (use the lists).
    #[inline(always)]
    pub(crate) fn pcp_hot_alloc(&self, zone: &Zone, mt: usize) -> *mut Page {
        #[cfg(target_arch = "x86_64")]
        if P::RSEQ_AREA {
            // SAFETY: RSEQ_AREA: every thread has an area at `rseq_offset`, and every populated zone has
            // entries for every CPU id it can show (`Kmem::pcp_hot_entries`; boot fails otherwise).
            return unsafe { pop(self.platform.rseq_offset(), zone.hot[mt]) };
        }
        let _ = (zone, mt);
        core::ptr::null_mut()
    }

    /// Put free order-0 page `page` (of pageblock type `mt`, below
    /// `MIGRATE_PCPTYPES`) on this CPU's hot array of `zone`; false if it
    /// did not go there (use the lists).
    ///
    /// # Safety
    /// The page is free, ours, of populated zone `zone`, with refcount 0.
    #[inline(always)]
    pub(crate) unsafe fn pcp_hot_free(&self, zone: &Zone, mt: usize, page: *mut Page) -> bool {
        #[cfg(target_arch = "x86_64")]
        if P::RSEQ_AREA {
            // SAFETY: the page is ours until the push commits; it is marked
            // before, so from then on it is a pcp page.
            unsafe { (*page).flags.store(PG_PCP, Ordering::Relaxed) };
            // SAFETY: as in `pcp_hot_alloc`; the page is free and marked.
            return unsafe { push(self.platform.rseq_offset(), zone.hot[mt], page) };
        }
        let _ = (zone, mt, page);
        false
    }

    /// Entries of each of a zone's per-CPU hot arrays: the machine's CPUs
    /// plus every other CPU id a thread's rseq area can show. 0 where the
    /// platform has no area.
    pub(crate) fn pcp_hot_entries(platform: &P, nr_cpus: usize) -> usize {
        if P::RSEQ_AREA && cfg!(target_arch = "x86_64") {
            HOT_NEGATIVE_CPU_IDS + platform.rseq_cpu_ids().max(nr_cpus)
        } else {
            0
        }
    }

    /// Start the machine's CPUs' entries if the machine is in rseq mode and
    /// not booted with `kmem.pcp_hot=off` (after `kmem_cache_init` decided
    /// the mode).
    pub(crate) fn pcp_hot_init(&self) {
        if !self.slab_fast_paths_rseq() || self.params.kmem_pcp_hot == Some(false) {
            return;
        }
        for z in self.zones() {
            for hot in z.hot {
                if hot.is_null() {
                    continue;
                }
                for cpu in 0..self.nr_cpus {
                    // SAFETY: the machine's CPUs have entries.
                    unsafe { (*hot.add(cpu)).word.store(0, Ordering::Release) };
                }
            }
        }
    }

    /// Whether the machine's page allocator uses hot arrays.
    pub fn pcp_hot_enabled(&self) -> bool {
        self.zones()
            .find(|z| !z.hot[0].is_null())
            // SAFETY: CPU 0 has an entry.
            .is_some_and(|z| unsafe { (*z.hot[0]).word.load(Ordering::Relaxed) } & HOT_STOP == 0)
    }

    /// (pages in `cpu`'s hot arrays of `zone`, pages popped and pages
    /// pushed since the last drain), racy, for statistics: add them to the
    /// pcp's `count`, `pgalloc` and `pgfree`.
    pub fn pcp_hot_counts(&self, zone: &Zone, cpu: usize) -> (usize, usize, usize) {
        let (mut nr, mut pops) = (0, 0);
        if cpu < self.nr_cpus {
            for hot in zone.hot.into_iter().filter(|h| !h.is_null()) {
                // SAFETY: the machine's CPUs have entries.
                let (n, p) = unsafe { (*hot.add(cpu)).counts() };
                nr += n;
                pops += p;
            }
        }
        (nr, pops, pops + nr)
    }

    /// Move the pages of `cpu`'s hot arrays of `zone` to the pcp lists `g`
    /// (its lock held), each array stopped meanwhile, and fold its counts
    /// into the pcp's. Returns the pages moved.
    pub(crate) fn pcp_hot_drain(&self, zone: &Zone, cpu: usize, g: &mut PcpLists) -> usize {
        (0..zone.hot.len())
            .map(|mt| self.pcp_hot_drain_one(zone, cpu, mt, g, 1))
            .sum()
    }

    /// As [`Kmem::pcp_hot_drain`], for migrate type `mt`'s array alone and
    /// only if it holds at least `min` pages (`min` 1: if it holds any).
    /// The pages go to the head of the list oldest first, so the list
    /// keeps the newest first. A free that finds the array full calls this
    /// with the full count before putting its page on the list: the page
    /// freed last is then the first handed out, as the lists alone would do.
    pub(crate) fn pcp_hot_drain_one(
        &self,
        zone: &Zone,
        cpu: usize,
        mt: usize,
        g: &mut PcpLists,
        min: usize,
    ) -> usize {
        let hot = zone.hot[mt];
        if hot.is_null() || cpu >= self.nr_cpus {
            return 0;
        }
        // SAFETY: the machine's CPUs have entries.
        let h = unsafe { &*hot.add(cpu) };
        let w = h.word.load(Ordering::Relaxed);
        if w & HOT_STOP != 0 || ((w & NR_FIELD) as usize) < min {
            // Off for good, or not enough now: a page pushed from here on
            // stays, as a page freed right after a drain stays on the
            // kernel's lists. (Drains hold the pcp lock: the bit is never
            // one of another drain's.)
            return 0;
        }
        let w = self.pcp_hot_stop(h, cpu);
        let nr = (w & NR_FIELD & !HOT_STOP) as usize;
        let list = &mut g.lists[order_to_pindex(mt, 0)] as *mut ListHead;
        for slot in &h.pages[..nr] {
            let page = slot.load(Ordering::Relaxed);
            // A page in the array is a free order-0 pcp page of this zone and
            // CPU; the array is ours while stopped.
            // SAFETY: as said; the list is locked.
            unsafe { ListHead::add(&mut (*page).lru, list) };
        }
        let pops = (w >> POPS_SHIFT) as usize;
        g.pgalloc += pops;
        g.numa_hit += pops;
        g.pgfree += pops + nr;
        g.count += nr;
        // Empty, counts folded, started again.
        h.word.store(0, Ordering::Release);
        nr
    }

    /// Set the stop bit of `h` (`cpu`'s entry) so that no sequence can
    /// commit to it any more; returns the word then (stop bit set). See the
    /// module comment.
    fn pcp_hot_stop(&self, h: &PcpHot, cpu: usize) -> u64 {
        loop {
            // An atomic OR, not a store of the word read before: a commit
            // that lands between that read and the store would be undone.
            h.word.fetch_or(HOT_STOP, Ordering::AcqRel);
            self.rseq_stop_sync(cpu);
            let now = h.word.load(Ordering::Acquire);
            if now & HOT_STOP != 0 {
                return now;
            }
            // A sequence that read the word before the OR committed after
            // it (and before the fence), overwriting the bit: set it again.
        }
    }
}
