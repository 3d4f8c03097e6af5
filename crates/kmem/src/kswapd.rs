//! kswapd: background reclaim (`mm/vmscan.c`'s `kswapd`, `balance_pgdat`).
//!
//! An allocation with `__GFP_KSWAPD_RECLAIM` that finds a zone below its *low*
//! watermark wakes kswapd (`wakeup_kswapd`) and goes on; kswapd then runs
//! the shrinkers with `GFP_KERNEL` until every zone of its node is back above
//! its *high* watermark (`balance_pgdat`), or no shrinker makes progress.
//! This keeps a gap between low and high free memory so atomic allocations
//! rarely see the min watermark.
//!
//! The core has no threads: a platform that can run one per node calls
//! `kswapd_run(nid, stop)` on it (the hosted machine does, unless booted with
//! `kswapd=off`); without one, wake-ups are only counted.

use crate::gfp::GFP_KERNEL;
use crate::machine::Kmem;
use crate::page_alloc::zone::{WMARK_HIGH, WMARK_LOW};
use crate::platform::task_flags::PF_MEMALLOC;
use crate::platform::Platform;
use crate::vmscan::DEF_PRIORITY;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// kswapd's per-machine state.
pub struct Kswapd {
    /// Futex word: bumped on every wake-up.
    pub(crate) seq: AtomicU32,
    /// Nodes with a pending wake-up (bit per node).
    pub(crate) pending: AtomicU32,
    /// Nodes whose kswapd thread runs (bit per node).
    pub(crate) running: AtomicU32,
    /// `pageoutrun`: balance_pgdat runs.
    pub runs: AtomicUsize,
    /// Objects freed by kswapd's shrinking.
    pub freed: AtomicUsize,
}

impl Kswapd {
    pub(crate) const fn new() -> Self {
        Kswapd {
            seq: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            running: AtomicU32::new(0),
            runs: AtomicUsize::new(0),
            freed: AtomicUsize::new(0),
        }
    }
}

impl<P: Platform> Kmem<P> {
    /// `wakeup_kswapd`: called by allocations that may wake kswapd when a
    /// zone of `nid` is below its low watermark.
    pub(crate) fn wakeup_kswapd(&self, nid: usize) {
        self.events.kswapd_wake.fetch_add(1, Ordering::Relaxed);
        let bit = 1u32 << (nid % 32);
        if self.kswapd.running.load(Ordering::Relaxed) & bit == 0 {
            return;
        }
        let Some(pg) = self.node_data(nid) else { return };
        let low = pg
            .node_zones
            .iter()
            .any(|z| z.is_populated() && z.nr_free() < z.wmark(WMARK_LOW));
        if !low || self.kswapd.pending.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            return;
        }
        self.kswapd.seq.fetch_add(1, Ordering::Release);
        self.platform.futex_wake(&self.kswapd.seq, u32::MAX);
    }

    /// Whether every populated zone of the node is above its high watermark
    /// (`pgdat_balanced`).
    pub fn pgdat_balanced(&self, nid: usize) -> bool {
        self.node_data(nid)
            .map(|pg| {
                pg.node_zones
                    .iter()
                    .filter(|z| z.is_populated())
                    .all(|z| z.nr_free() >= z.wmark(WMARK_HIGH))
            })
            .unwrap_or(true)
    }

    /// `balance_pgdat`: shrink until the node is balanced or nothing helps.
    /// Returns the objects freed.
    pub fn balance_pgdat(&self, nid: usize) -> usize {
        self.kswapd.runs.fetch_add(1, Ordering::Relaxed);
        let pflags = self.platform.current_flags();
        self.platform.set_current_flags(pflags | PF_MEMALLOC);
        let mut freed = 0;
        let mut priority = DEF_PRIORITY;
        while !self.pgdat_balanced(nid) {
            let f = self.shrink_slab(GFP_KERNEL, nid, priority);
            freed += f;
            if f == 0 {
                if priority == 0 {
                    break;
                }
                priority -= 1;
            }
        }
        self.platform.set_current_flags(pflags);
        self.kswapd.freed.fetch_add(freed, Ordering::Relaxed);
        if freed > 0 {
            self.wake_free_waiters();
        }
        freed
    }

    /// Body of node `nid`'s kswapd thread: sleep until woken, balance the
    /// node, repeat until `stop` is set (then call `kswapd_stop`).
    pub fn kswapd_run(&self, nid: usize, stop: &AtomicBool) {
        let bit = 1u32 << (nid % 32);
        self.kswapd.running.fetch_or(bit, Ordering::AcqRel);
        while !stop.load(Ordering::Acquire) {
            let seq = self.kswapd.seq.load(Ordering::Acquire);
            if self.kswapd.pending.fetch_and(!bit, Ordering::AcqRel) & bit != 0 {
                self.balance_pgdat(nid);
                continue;
            }
            self.platform
                .futex_wait(&self.kswapd.seq, seq, Some(1_000_000_000));
        }
        self.kswapd.running.fetch_and(!bit, Ordering::AcqRel);
    }

    /// Number of kswapd threads running.
    pub fn kswapd_threads(&self) -> usize {
        self.kswapd.running.load(Ordering::Acquire).count_ones() as usize
    }

    /// Wake kswapd threads so they notice `stop`.
    pub fn kswapd_stop(&self) {
        self.kswapd.seq.fetch_add(1, Ordering::Release);
        self.platform.futex_wake(&self.kswapd.seq, u32::MAX);
    }
}
