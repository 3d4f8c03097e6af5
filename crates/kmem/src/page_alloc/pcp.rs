//! Per-CPU page lists (`struct per_cpu_pages`): the page allocator's fast path.
//!
//! Each zone has, for every CPU, lists of free pages of orders 0..=3 by
//! migrate type. Allocation pops from the head of the right list; when it is
//! empty, a batch is moved from the buddy lists under `zone->lock`
//! (`rmqueue_bulk`). Freeing pushes at the head (hot: the cache still holds
//! the page) or, for `free_cold_page`/`__GFP_COLD`, at the tail; when the
//! list holds `high` pages or more, a batch of the coldest goes back to the
//! buddy lists (`free_pcppages_bulk`).
//!
//! The lists are protected by a per-CPU spinlock taken with `try_lock`, as the
//! kernel's `pcp_spin_trylock`: it is uncontended except when a thread was
//! preempted or migrated in the middle, or a remote drain runs; a caller that
//! fails to take it goes to the buddy lists instead, so nothing ever waits on
//! it from the fast path. In rseq mode a few order-0 pages per CPU and type
//! sit in front of the lists in hot arrays reached without the lock
//! (`pcp_hot.rs`); they count as pcp pages.
//!
//! Sizes follow the kernel (`zone_batchsize`, `zone_highsize`): `batch` is 63
//! for zones of 1 GiB or more, `high` moves between `high_min` (the low
//! watermark shared among CPUs) and `high_max` (an eighth of the zone), tuned
//! on each overflow as `nr_pcp_high` does. The kernel also decays `high`
//! periodically from vmstat work; kmem has no periodic work, so `high` only
//! shrinks when the zone is below its high watermark.

use crate::gfp::MIGRATE_PCPTYPES;
use crate::list::ListHead;
use crate::page::PAGE_ALLOC_COSTLY_ORDER;
use crate::spinlock::SpinLock;

/// Lists per CPU: one per (order, pcp migrate type).
pub const NR_PCP_LISTS: usize = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER as usize + 1);
/// Largest factor by which consecutive refills grow the batch (`PCP_BATCH_SCALE_MAX`).
pub const PCP_BATCH_SCALE_MAX: u32 = 5;

/// `order_to_pindex`.
#[inline(always)]
pub const fn order_to_pindex(mt: usize, order: u32) -> usize {
    MIGRATE_PCPTYPES * order as usize + mt
}

/// `pindex_to_order`.
#[inline(always)]
pub const fn pindex_to_order(pindex: usize) -> u32 {
    (pindex / MIGRATE_PCPTYPES) as u32
}

/// The lists and counters protected by the per-CPU lock.
#[repr(C)]
pub struct PcpLists {
    /// Pages on all lists.
    pub count: usize,
    /// Free back to buddy when `count` reaches this.
    pub high: usize,
    /// Lower bound of `high`.
    pub high_min: usize,
    /// Upper bound of `high`.
    pub high_max: usize,
    /// Pages moved per refill or drain.
    pub batch: usize,
    /// Refills without frees in between (doubles the batch, up to 2^5).
    pub alloc_factor: u32,
    /// Pages freed since the last allocation (guides `high`).
    pub free_count: usize,
    /// The lists, indexed by `order_to_pindex`.
    pub lists: [ListHead; NR_PCP_LISTS],
    /// Pages allocated from these lists (exact: updated under the lock).
    pub pgalloc: usize,
    /// Allocations served from these lists (`numa_hit`: one per call).
    pub numa_hit: usize,
    /// Pages freed into these lists.
    pub pgfree: usize,
    /// Refills from the buddy lists.
    pub refills: usize,
    /// Bulk frees to the buddy lists.
    pub spills: usize,
    /// The list `free_pcppages_bulk` took pages from last.
    pub drain_pindex: usize,
}

/// One CPU's lists for one zone, on its own cache line.
#[repr(C, align(64))]
pub struct PerCpuPages {
    /// `pcp->lock` and what it protects.
    pub lock: SpinLock<PcpLists>,
}

impl PcpLists {
    /// Initialise in place.
    ///
    /// # Safety
    /// `this` is valid and at its final address.
    pub unsafe fn init(this: *mut PcpLists, batch: usize, high_min: usize, high_max: usize) {
        // SAFETY: the caller guarantees `this` is valid and pinned.
        unsafe {
            for i in 0..NR_PCP_LISTS {
                ListHead::init(&mut (*this).lists[i]);
            }
            (*this).count = 0;
            (*this).batch = batch;
            (*this).high_min = high_min;
            (*this).high_max = high_max;
            (*this).high = 0;
            (*this).alloc_factor = 0;
            (*this).free_count = 0;
        }
    }

    /// `nr_pcp_alloc`: how many pages to pull from the buddy for one refill.
    #[inline]
    pub fn nr_pcp_alloc(&mut self, order: u32) -> usize {
        let batch = self.batch.max(1);
        if order == 0 {
            let mut n = batch << self.alloc_factor;
            // Do not fill beyond what `high` can keep.
            let room = self.high.saturating_sub(self.count).saturating_sub(batch);
            n = n.min(room.max(batch));
            if self.alloc_factor < PCP_BATCH_SCALE_MAX && (batch << (self.alloc_factor + 1)) <= self.high {
                self.alloc_factor += 1;
            }
            n
        } else {
            (batch >> order).max(2)
        }
    }

    /// `nr_pcp_free`: how many pages to return to the buddy once over `high`:
    /// the pages recently freed, at least a batch, leaving at least a batch.
    #[inline]
    pub fn nr_pcp_free(&self, high: usize) -> usize {
        let batch = self.batch.max(1);
        let upper = high.saturating_sub(batch).max(batch);
        self.free_count.clamp(batch, upper).min(self.count)
    }

    /// `nr_pcp_high`: the limit for this free, tuning `high` on the way.
    ///
    /// `high` starts at 0 ("not used yet", as the kernel prints it) and is
    /// clamped into `[high_min, high_max]` on the first free. While the zone is
    /// below its high watermark, `high` shrinks by the pages recently freed
    /// (down to `high_min`) so pages go back to the buddy lists; otherwise,
    /// once the list overflows, `high` grows to hold a batch beyond the pages
    /// recently freed (up to `high_max`).
    #[inline]
    pub fn nr_pcp_high(&mut self, zone_below_high: bool) -> usize {
        let high = self.high.clamp(self.high_min, self.high_max);
        self.high = high;
        if self.high_min == self.high_max {
            return high;
        }
        let batch = self.batch.max(1);
        if zone_below_high {
            let free_count = self.free_count.max(batch);
            self.high = high.saturating_sub(free_count).max(self.high_min);
            self.count.max(self.high_min)
        } else {
            if self.count >= high {
                let need_high = self.free_count + batch;
                if self.high < need_high {
                    self.high = need_high.clamp(self.high_min, self.high_max);
                }
            }
            high
        }
    }
}

/// `zone_batchsize`: pages per pcp refill for a zone of `managed` pages.
pub fn zone_batchsize(managed: usize) -> usize {
    // A 1/1024 of the zone, at most 1 MiB worth, divided by four.
    let mut b = (managed >> 10).min((1 << 20) / crate::page::PAGE_SIZE) / 4;
    b = b.max(1);
    // Clamp to 2^n - 1 so successive batches do not alias in the cache.
    let x = b + b / 2;
    let p = if x == 0 {
        1
    } else {
        1usize << (usize::BITS - 1 - x.leading_zeros())
    };
    p.saturating_sub(1).max(1)
}

/// `zone_highsize`: the (min, max) bounds of `high` for one CPU.
pub fn zone_highsize(managed: usize, low_wmark: usize, batch: usize, nr_cpus: usize) -> (usize, usize) {
    let cpus = nr_cpus.max(1);
    let min = (low_wmark / cpus).max(batch * 4);
    let max = ((managed / 8) / cpus).max(batch * 4);
    (min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_matches_the_kernel() {
        // Zones of 1 GiB and more get 63 (the sample's DMA32 and Normal zones).
        assert_eq!(zone_batchsize(772808), 63);
        assert_eq!(zone_batchsize(196608), 63);
        // The sample's DMA zone (3840 managed pages) gets 1.
        assert_eq!(zone_batchsize(3840), 1);
    }

    #[test]
    fn high_bounds_match_the_sample() {
        // Sample DMA32: low 16770, managed 772808, 2 CPUs -> high_min 8385, high_max 48300.
        assert_eq!(zone_highsize(772808, 16770, 63, 2), (8385, 48300));
        // Sample DMA: low 82, managed 3840, batch 1 -> 41, 240.
        assert_eq!(zone_highsize(3840, 82, 1, 2), (41, 240));
    }
}
