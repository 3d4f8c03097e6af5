//! Property test of the page allocator against a simple model
//! (DESIGN.md "How we know it works"; reference/linux-mm.md §3.7 item 5 and
//! test_meminit's zeroing invariants): random sequences of allocations with
//! random orders and flags, frees through every entry point, and drains.
//!
//! The model is the set of live allocations as pfn ranges. After every step:
//! * no two live allocations overlap, and each is naturally aligned
//!   (`pfn % 2^order == 0`) and lies in one zone;
//! * the contents of every live allocation are what its owner wrote (the
//!   allocator never touches memory it handed out);
//! * `__GFP_ZERO` memory reads zero although every allocation is dirtied
//!   before it is freed;
//! * `nr_free_pages + pages on pcp lists + live pages == totalram_pages`;
//! * an order-0 request fails only when every zone is at its watermark.
//!
//! At the end, freeing everything returns the buddy lists to the boot state.

mod common;

use common::*;
use core::ptr::NonNull;
use kmem::page::{Page, PAGE_SIZE};
use kmem::page_alloc::zone::WMARK_MIN;
use kmem::*;
use kmem_hosted::Machine;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        order: u32,
        zero: bool,
        comp: bool,
        movable: bool,
        dma: bool,
    },
    Free {
        pick: usize,
        how: u8,
    },
    Drain,
    /// `__GFP_ZERO` order-0 allocation straight after a hot free: the page
    /// comes back dirty from the per-CPU list and must be zeroed.
    RecycleZero,
}

fn op() -> impl Strategy<Value = Op> {
    let order = prop_oneof![
        6 => 0u32..=1,
        3 => 2u32..=3,
        1 => 4u32..=10,
    ];
    prop_oneof![
        10 => (order, any::<bool>(), any::<bool>(), any::<bool>(), prop::bool::weighted(0.05))
            .prop_map(|(order, zero, comp, movable, dma)| Op::Alloc { order, zero, comp, movable, dma }),
        7 => (any::<usize>(), 0u8..4).prop_map(|(pick, how)| Op::Free { pick, how }),
        1 => Just(Op::Drain),
        1 => Just(Op::RecycleZero),
    ]
}

struct Live {
    page: NonNull<Page>,
    order: u32,
    fill: u8,
}

struct Model<'a> {
    m: &'a Machine,
    /// start pfn -> allocation
    live: BTreeMap<usize, Live>,
    live_pages: usize,
    next_fill: u8,
}

fn all_equal(s: &[u8], v: u8) -> bool {
    // Word-sized comparison keeps debug builds fast.
    let w = u64::from_ne_bytes([v; 8]);
    // SAFETY: u64 has no invalid bit patterns.
    let (head, mid, tail) = unsafe { s.align_to::<u64>() };
    head.iter().all(|&b| b == v) && mid.iter().all(|&x| x == w) && tail.iter().all(|&b| b == v)
}

impl<'a> Model<'a> {
    fn insert(&mut self, page: NonNull<Page>, order: u32, zero: bool) -> Result<(), TestCaseError> {
        let m = self.m;
        let start = pfn(m, page);
        let end = start + (1 << order);
        prop_assert_eq!(
            start % (1 << order),
            0,
            "order-{} block at pfn {:#x} not aligned",
            order,
            start
        );
        // Overlap with the previous or the next live allocation?
        if let Some((&s, l)) = self.live.range(..=start).next_back() {
            prop_assert!(
                s + (1 << l.order) <= start,
                "pfn {:#x} (order {}) overlaps live {:#x} (order {})",
                start,
                order,
                s,
                l.order
            );
        }
        if let Some((&s, _)) = self.live.range(start..).next() {
            prop_assert!(
                s >= end,
                "pfn {:#x} (order {}) overlaps live {:#x}",
                start,
                order,
                s
            );
        }
        // One zone.
        let z = zone_of(m, start);
        prop_assert!(z.spans(end - 1));
        let mem = bytes(m, page, order);
        if zero {
            prop_assert!(
                all_equal(mem, 0),
                "__GFP_ZERO order-{} block at {:#x} is not zero",
                order,
                start
            );
        }
        // Dirty it with a value of its own.
        self.next_fill = self.next_fill.wrapping_add(1).max(1);
        let fill = self.next_fill;
        mem.fill(fill);
        self.live.insert(start, Live { page, order, fill });
        self.live_pages += 1 << order;
        Ok(())
    }

    fn remove(&mut self, pick: usize) -> Option<(NonNull<Page>, u32)> {
        if self.live.is_empty() {
            return None;
        }
        let key = *self.live.keys().nth(pick % self.live.len()).unwrap();
        let l = self.live.remove(&key).unwrap();
        assert!(
            all_equal(bytes(self.m, l.page, l.order), l.fill),
            "live block at {key:#x} was overwritten"
        );
        self.live_pages -= 1 << l.order;
        Some((l.page, l.order))
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let m = self.m;
        match *op {
            Op::Alloc {
                order,
                zero,
                comp,
                movable,
                dma,
            } => {
                let mut gfp = GFP_KERNEL | __GFP_NOWARN | __GFP_NORETRY;
                if zero {
                    gfp |= __GFP_ZERO;
                }
                if comp {
                    gfp |= __GFP_COMP;
                }
                if movable {
                    gfp |= __GFP_MOVABLE;
                }
                if dma {
                    gfp |= __GFP_DMA;
                }
                match m.alloc_pages(gfp, order) {
                    Ok(p) => {
                        if dma {
                            prop_assert_eq!(zone_of(m, pfn(m, p)).zone_type, ZoneType::Dma);
                        }
                        self.insert(p, order, zero)?;
                    }
                    Err(_) if order == 0 && !dma => {
                        // Only when every zone is down to its watermark.
                        let limit: usize = m
                            .zones()
                            .map(|z| {
                                z.wmark(WMARK_MIN)
                                    + z.lowmem_reserve[ZoneType::Normal as usize]
                                        .load(std::sync::atomic::Ordering::Relaxed)
                            })
                            .sum();
                        prop_assert!(
                            m.nr_free_pages() <= limit,
                            "order-0 failed with {} free (limit {})",
                            m.nr_free_pages(),
                            limit
                        );
                    }
                    Err(_) => {}
                }
            }
            Op::Free { pick, how } => {
                if let Some((p, order)) = self.remove(pick) {
                    // SAFETY: a live allocation of this order, freed once.
                    unsafe {
                        match how {
                            0 => m.__free_pages(p, order),
                            1 => m.put_page(p),
                            2 if order == 0 => m.free_cold_page(p),
                            _ => m.free_pages(m.page_address(p).unwrap().as_ptr() as usize, order),
                        }
                    }
                }
            }
            Op::Drain => m.drain_all_pages(),
            Op::RecycleZero => {
                if let Ok(p) = m.alloc_pages(GFP_KERNEL | __GFP_NOWARN | __GFP_NORETRY, 0) {
                    bytes(m, p, 0).fill(0xee);
                    // SAFETY: our page.
                    unsafe { m.free_hot_page(p) };
                    if let Ok(z) = m.alloc_pages(GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN | __GFP_NORETRY, 0) {
                        self.insert(z, 0, true)?;
                    }
                }
            }
        }
        let free = m.nr_free_pages();
        let pcp = m.nr_pcp_pages();
        prop_assert_eq!(
            free + pcp + self.live_pages,
            m.totalram_pages() - m.boot_allocated_pages(),
            "free {} + pcp {} + live {}",
            free,
            pcp,
            self.live_pages
        );
        Ok(())
    }
}

fn run(cmdline: &str, ops: &[Op]) -> Result<(), TestCaseError> {
    let m = boot(cmdline);
    let mut model = Model {
        m: &m,
        live: BTreeMap::new(),
        live_pages: 0,
        next_fill: 0,
    };
    for op in ops {
        model.step(op)?;
    }
    while model
        .remove(0)
        .map(|(p, o)| {
            // SAFETY: a live allocation of this order.
            unsafe { m.__free_pages(p, o) }
        })
        .is_some()
    {}
    m.drain_all_pages();
    let mut diff = String::new();
    prop_assert!(m.buddy_matches_boot_state(&mut diff), "{}", diff);
    prop_assert_eq!(m.nr_free_pages(), m.totalram_pages() - m.boot_allocated_pages());
    prop_assert_eq!(m.events.bad_pages.load(std::sync::atomic::Ordering::Relaxed), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A roomy machine: mostly successful allocations.
    #[test]
    fn model_roomy_machine(ops in prop::collection::vec(op(), 1..300)) {
        run("quiet mem=128M nr_cpus=2 kswapd=off", &ops)?;
    }

    /// A tiny machine: allocations run into the watermarks and fail often.
    #[test]
    fn model_tiny_machine(ops in prop::collection::vec(op(), 1..300)) {
        run("quiet mem=8M nr_cpus=1 kswapd=off", &ops)?;
    }
}

/// Pages zeroed by `__GFP_ZERO` stay zero for blocks the host discarded
/// (free page reporting) and for blocks that were dirtied and merged back:
/// allocate everything dirty, free it, then allocate everything zeroed.
#[test]
fn gfp_zero_after_dirtying_the_whole_machine() {
    let m = boot("quiet mem=32M nr_cpus=2 kswapd=off");
    let held = exhaust(&m, GFP_KERNEL | __GFP_MEMALLOC);
    for &(p, o) in &held {
        bytes(&m, p, o).fill(0xa5);
    }
    free_all(&m, held);
    let held = exhaust(&m, GFP_KERNEL | __GFP_MEMALLOC | __GFP_ZERO);
    for &(p, o) in &held {
        assert!(
            all_equal(bytes(&m, p, o), 0),
            "order-{o} block at pfn {:#x} not zeroed",
            pfn(&m, p)
        );
    }
    assert!(held_pages(&held) * PAGE_SIZE > 16 << 20);
    free_all(&m, held);
    assert_boot_state(&m);
}
