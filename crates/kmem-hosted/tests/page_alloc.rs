//! Page allocator invariants (reference/linux-mm.md §1.2, §3.6, §3.7 item 5):
//! buddy coalescing back to the boot state, the `__free_pages` tail rule of
//! `lib/test_free_pages.c`, `alloc_pages_bulk` array semantics, hot/cold
//! per-CPU lists, and real threads allocating and freeing concurrently.

mod common;

use common::*;
use core::ptr::NonNull;
use kmem::page::{Page, PAGE_SIZE};
use kmem::*;
use kmem_hosted::Machine;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Orders skewed towards small ones, as real workloads are.
    fn order(&mut self, max: u32) -> u32 {
        let r = self.below(100);
        let o = match r {
            0..=49 => 0,
            50..=64 => 1,
            65..=74 => 2,
            75..=84 => 3,
            _ => 4 + self.below(7) as u32,
        };
        o.min(max)
    }
}

/// Allocate a random mix of orders with `gfp`, free it in a random order by
/// the different free entry points, and check the buddy lists come back to
/// what `memblock_free_all` left (the /proc/buddyinfo-after-freeing check).
fn random_mix_returns_to_boot(m: &Machine, gfp: Gfp, seed: u64, rounds: usize, nodes: usize) {
    let mut rng = Rng(seed);
    for _ in 0..rounds {
        let mut held: Held = Vec::new();
        let n = 200 + rng.below(300) as usize;
        for _ in 0..n {
            let order = rng.order(10);
            let nid = if nodes > 1 {
                rng.below(nodes as u64) as i32
            } else {
                -1
            };
            match m.alloc_pages_node(nid, gfp | __GFP_NOWARN | __GFP_NORETRY, order) {
                Ok(p) => {
                    assert_eq!(
                        pfn(m, p) % (1 << order),
                        0,
                        "order-{order} block not naturally aligned"
                    );
                    held.push((p, order));
                }
                Err(_) => break,
            }
        }
        assert_accounting(m, held_pages(&held));
        // Free in a random order, through every entry point.
        while !held.is_empty() {
            let i = rng.below(held.len() as u64) as usize;
            let (p, order) = held.swap_remove(i);
            // SAFETY: our allocation of this order, freed once.
            unsafe {
                match rng.below(4) {
                    0 => m.__free_pages(p, order),
                    1 => m.put_page(p),
                    2 if order == 0 => m.free_cold_page(p),
                    _ => match m.page_address(p) {
                        Some(a) => m.free_pages(a.as_ptr() as usize, order),
                        None => m.__free_pages(p, order),
                    },
                }
            }
        }
        assert_accounting(m, 0);
        assert_boot_state(m);
    }
    assert_eq!(m.events.bad_pages.load(Ordering::Relaxed), 0, "{}", m.dmesg());
}

/// mm/page_alloc.c `__free_one_page`: freeing everything coalesces back to
/// the boot state (single node, plain x86-64 zones).
#[test]
fn buddy_returns_to_boot_state_after_random_mixes() {
    let m = boot("quiet mem=512M nr_cpus=2");
    assert_boot_state(&m);
    random_mix_returns_to_boot(&m, GFP_KERNEL, 0x1234_5678, 6, 1);
    random_mix_returns_to_boot(&m, GFP_KERNEL | __GFP_COMP, 0x9abc_def0, 3, 1);
    random_mix_returns_to_boot(&m, GFP_HIGHUSER_MOVABLE, 0x0f0f_0f0f, 3, 1);
    random_mix_returns_to_boot(&m, GFP_KERNEL | __GFP_RECLAIMABLE, 0x5555_aaaa, 3, 1);
}

/// The same with two fake NUMA nodes (`numa=fake=2`): each node's zones
/// come back, whichever node the pages were allocated from.
#[test]
fn buddy_returns_to_boot_state_numa_fake() {
    let m = boot("quiet mem=512M numa=fake=2 nr_cpus=2");
    assert_eq!(m.nr_node_ids(), 2);
    // alloc_pages_node prefers the node asked for.
    for nid in 0..2 {
        let p = m.alloc_pages_node(nid, GFP_KERNEL, 0).unwrap();
        assert_eq!(
            zone_of(&m, pfn(&m, p)).node as i32,
            nid,
            "alloc_pages_node({nid}) gave another node"
        );
        // SAFETY: our order-0 page.
        unsafe { m.__free_pages(p, 0) };
    }
    random_mix_returns_to_boot(&m, GFP_KERNEL, 0xfeed_beef, 4, 2);
}

/// And on a 32-bit style HighMem machine, with allocations that may use HighMem.
#[test]
fn buddy_returns_to_boot_state_highmem() {
    let m = boot("quiet mem=1G highmem=512M nr_cpus=2");
    assert!(m.has_highmem());
    random_mix_returns_to_boot(&m, GFP_HIGHUSER, 0x1357_9bdf, 4, 1);
    random_mix_returns_to_boot(&m, GFP_KERNEL, 0x2468_ace0, 2, 1);
}

/// Exhausting the whole machine and giving everything back is the extreme
/// random mix: every block of every order comes back together.
#[test]
fn buddy_returns_to_boot_state_after_exhaustion() {
    let m = boot("quiet mem=64M nr_cpus=2");
    let held = exhaust(&m, GFP_KERNEL | __GFP_MEMALLOC);
    assert_accounting(&m, held_pages(&held));
    m.drain_all_pages();
    assert_eq!(m.nr_free_pages(), 0);
    free_all(&m, held);
    assert_boot_state(&m);
}

/// lib/test_free_pages.c: `__get_free_pages(order 3)`, `get_page` (a
/// speculative reference), `free_pages`, `put_page`, many times. Without
/// `__GFP_COMP`, `__free_pages` must free the tail sub-blocks at once and
/// leave the first page to the last `put_page`; with it, the last reference
/// frees the whole compound page. Either way nothing leaks.
#[test]
fn free_pages_tail_rule_does_not_leak() {
    let m = boot("quiet mem=64M nr_cpus=2");
    for gfp in [GFP_KERNEL, GFP_KERNEL | __GFP_COMP] {
        for round in 0..2000 {
            let addr = m.__get_free_pages(gfp, 3).unwrap();
            let page = m.virt_to_page(addr.as_ptr()).unwrap();
            m.get_page(page);
            // SAFETY: our order-3 allocation; the extra reference keeps the head.
            unsafe { m.free_pages(addr.as_ptr() as usize, 3) };
            if round == 0 {
                // Only the head page is still allocated (non-compound) or
                // all eight (compound), never more or less.
                let live = if gfp.contains(__GFP_COMP) { 8 } else { 1 };
                assert_accounting(&m, live);
            }
            // SAFETY: we drop the reference we took.
            unsafe { m.put_page(page) };
        }
        assert_accounting(&m, 0);
        assert_boot_state(&m);
    }
    assert_eq!(m.events.bad_pages.load(Ordering::Relaxed), 0, "{}", m.dmesg());
}

/// `put_page` of a reference that is not the last only drops the count, even
/// on a non-compound high-order block (the tail rule belongs to
/// `__free_pages`): the owner's `__free_pages` then frees the whole block.
#[test]
fn put_page_of_an_extra_reference_frees_nothing() {
    let m = boot("quiet mem=64M nr_cpus=2");
    for gfp in [GFP_KERNEL, GFP_KERNEL | __GFP_COMP] {
        let page = m.alloc_pages(gfp, 2).unwrap();
        m.get_page(page);
        // SAFETY: we drop the extra reference we took.
        unsafe { m.put_page(page) };
        assert_accounting(&m, 4);
        // SAFETY: our order-2 allocation, freed once.
        unsafe { m.__free_pages(page, 2) };
        assert_accounting(&m, 0);
        assert_boot_state(&m);
    }
    assert_eq!(m.events.bad_pages.load(Ordering::Relaxed), 0, "{}", m.dmesg());
    assert!(!m.dmesg().contains("allocated with order"), "{}", m.dmesg());
}

/// `alloc_pages_bulk` in array mode fills only the empty slots and returns the
/// number of populated slots, old and new.
#[test]
fn alloc_pages_bulk_array_semantics() {
    let m = boot("quiet mem=64M nr_cpus=2");
    let a = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    let b = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    let mut arr: Vec<Option<NonNull<Page>>> = vec![None; 32];
    arr[3] = Some(a);
    arr[17] = Some(b);
    let n = m.alloc_pages_bulk(GFP_KERNEL, &mut arr);
    assert_eq!(n, 32, "bulk returns all populated slots");
    assert_eq!(arr[3], Some(a), "populated slot left alone");
    assert_eq!(arr[17], Some(b), "populated slot left alone");
    let mut pfns: Vec<usize> = arr.iter().map(|p| pfn(&m, p.unwrap())).collect();
    pfns.sort_unstable();
    pfns.dedup();
    assert_eq!(pfns.len(), 32, "bulk handed out a page twice");
    assert_accounting(&m, 32);

    // A full array allocates nothing.
    let before = m.nr_allocated_pages();
    assert_eq!(m.alloc_pages_bulk(GFP_KERNEL, &mut arr), 32);
    assert_eq!(m.nr_allocated_pages(), before);

    // One missing slot goes through the single-page path.
    let p = arr[9].take().unwrap();
    // SAFETY: our page.
    unsafe { m.__free_pages(p, 0) };
    assert_eq!(m.alloc_pages_bulk(GFP_KERNEL, &mut arr), 32);
    assert!(arr[9].is_some());

    // __GFP_ZERO is honoured by the bulk path.
    for slot in arr.iter_mut().step_by(2) {
        let p = slot.take().unwrap();
        bytes(&m, p, 0).fill(0xa5);
        // SAFETY: our page.
        unsafe { m.__free_pages(p, 0) };
    }
    assert_eq!(m.alloc_pages_bulk(GFP_KERNEL | __GFP_ZERO, &mut arr), 32);
    for (i, p) in arr.iter().enumerate().step_by(2) {
        assert!(
            bytes(&m, p.unwrap(), 0).iter().all(|&x| x == 0),
            "slot {i} not zeroed"
        );
    }

    // An empty array is fine.
    let mut empty: [Option<NonNull<Page>>; 0] = [];
    assert_eq!(m.alloc_pages_bulk(GFP_KERNEL, &mut empty), 0);

    for p in arr.into_iter().flatten() {
        // SAFETY: our pages.
        unsafe { m.__free_pages(p, 0) };
    }
    assert_boot_state(&m);
}

/// When memory is short, `alloc_pages_bulk` may return fewer pages than asked
/// (never more than were free), and the count it returns matches the slots.
#[test]
fn alloc_pages_bulk_when_memory_is_short() {
    let m = boot("quiet mem=64M nr_cpus=1");
    let held = exhaust(&m, GFP_KERNEL);
    let mut arr: Vec<Option<NonNull<Page>>> = vec![None; 64];
    let n = m.alloc_pages_bulk(GFP_NOWAIT, &mut arr);
    assert_eq!(n, arr.iter().filter(|p| p.is_some()).count());
    assert!(n < 64, "bulk allocated {n} pages on an exhausted machine");
    for p in arr.into_iter().flatten() {
        // SAFETY: our pages.
        unsafe { m.__free_pages(p, 0) };
    }
    free_all(&m, held);
    assert_boot_state(&m);
}

/// Per-CPU lists are LIFO at the hot end: `free_hot_page` puts the page at the
/// head so the next allocation on this CPU gets it back (its cache lines are
/// warm); `free_cold_page` puts it at the tail, so it is handed out last.
/// The 2.6 `__GFP_COLD` allocation takes from the cold end.
#[test]
fn pcp_hot_and_cold_frees() {
    let m = boot("quiet mem=64M nr_cpus=1");
    let t = std::thread::spawn(move || {
        let _pin = pin_to_current_cpu();
        // Fill the list so there is more than one page on it.
        let a = m.alloc_pages(GFP_KERNEL, 0).unwrap();
        let b = m.alloc_pages(GFP_KERNEL, 0).unwrap();
        let c = m.alloc_pages(GFP_KERNEL, 0).unwrap();
        let extra: Vec<_> = (0..8).map(|_| m.alloc_pages(GFP_KERNEL, 0).unwrap()).collect();
        for &p in &extra {
            // SAFETY: our pages.
            unsafe { m.free_hot_page(p) };
        }
        // Hot: straight back.
        // SAFETY: our page.
        unsafe { m.free_hot_page(a) };
        let again = m.alloc_pages(GFP_KERNEL, 0).unwrap();
        assert_eq!(
            again, a,
            "free_hot_page: the next allocation must return the hot page"
        );

        // Cold: to the tail; the next allocations take other pages first.
        // SAFETY: our page.
        unsafe { m.free_cold_page(b) };
        let next = m.alloc_pages(GFP_KERNEL, 0).unwrap();
        assert_ne!(next, b, "free_cold_page: the cold page came back first");
        // The cold end is where __GFP_COLD allocations look.
        let cold = m.alloc_pages(GFP_KERNEL | __GFP_COLD, 0).unwrap();
        assert_eq!(cold, b, "__GFP_COLD takes from the cold end");

        for p in [again, next, cold, c] {
            // SAFETY: our pages.
            unsafe { m.__free_pages(p, 0) };
        }
        assert_boot_state(&m);
        m
    });
    let m = t.join().unwrap();
    assert_eq!(m.events.bad_pages.load(Ordering::Relaxed), 0);
}

/// `alloc_pages_exact` keeps PAGE_ALIGN(size) bytes of a power-of-two block
/// and frees the tail at once; `free_pages_exact` gives back the rest.
#[test]
fn alloc_pages_exact_frees_the_tail() {
    let m = boot("quiet mem=64M nr_cpus=1");
    for pages in [1usize, 3, 5, 7, 9, 100] {
        let size = pages * PAGE_SIZE - 17;
        let a = m.alloc_pages_exact(size, GFP_KERNEL | __GFP_ZERO).unwrap();
        assert_eq!(a.as_ptr() as usize % PAGE_SIZE, 0);
        assert_accounting(&m, pages);
        // SAFETY: the bytes belong to the allocation.
        let s = unsafe { core::slice::from_raw_parts_mut(a.as_ptr(), size) };
        assert!(s.iter().all(|&x| x == 0));
        s.fill(0x5a);
        // SAFETY: allocated above with this size.
        unsafe { m.free_pages_exact(a, size) };
        assert_accounting(&m, 0);
    }
    assert!(m.alloc_pages_exact(0, GFP_KERNEL).is_err());
    assert_boot_state(&m);
}

/// `get_zeroed_page` zeroes even a page that was just dirtied and freed hot
/// (it comes straight back from the per-CPU list).
#[test]
fn get_zeroed_page_zeroes_recycled_pages() {
    let m = boot("quiet mem=64M nr_cpus=1");
    for _ in 0..50 {
        let a = m.__get_free_pages(GFP_KERNEL, 0).unwrap();
        // SAFETY: our page.
        unsafe { core::ptr::write_bytes(a.as_ptr(), 0xff, PAGE_SIZE) };
        // SAFETY: our page.
        unsafe { m.free_pages(a.as_ptr() as usize, 0) };
        let z = m.get_zeroed_page(GFP_KERNEL).unwrap();
        // SAFETY: our page.
        let s = unsafe { core::slice::from_raw_parts(z.as_ptr(), PAGE_SIZE) };
        assert!(s.iter().all(|&x| x == 0));
        // SAFETY: our page.
        unsafe { m.free_pages(z.as_ptr() as usize, 0) };
    }
    assert_boot_state(&m);
}

/// Real threads (mm's per-CPU lists and zone->lock under contention): four
/// threads allocate and free thousands of mixed-order blocks; a quarter of
/// the blocks are freed by another thread than the one that allocated them
/// (the remote-free case). Every block carries its owner's tag in each page;
/// a tag found changed at free time means two live blocks overlapped. At the
/// end everything is accounted for and the buddy lists are as at boot.
#[test]
fn concurrent_alloc_free_mixed_orders() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 10_000;
    let m = boot("quiet mem=256M nr_cpus=2");
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..THREADS {
        let (tx, rx) = mpsc::channel::<(SendPage, u32, u64)>();
        senders.push(tx);
        receivers.push(rx);
    }
    // Thread i sends to thread i+1.
    senders.rotate_left(1);
    let m = &m;
    let check_and_free = |p: NonNull<Page>, order: u32, tag: u64| {
        let s = bytes(m, p, order);
        for (i, chunk) in s.chunks(PAGE_SIZE).enumerate() {
            let got = u64::from_ne_bytes(chunk[..8].try_into().unwrap());
            assert_eq!(
                got, tag,
                "page {i} of an order-{order} block was overwritten: overlapping allocations"
            );
        }
        // SAFETY: the block is ours (passed to us) and freed once.
        unsafe { m.__free_pages(p, order) };
    };
    std::thread::scope(|s| {
        for (t, (tx, rx)) in senders.into_iter().zip(receivers).enumerate() {
            s.spawn(move || {
                let mut rng = Rng(0xdead_beef ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut mine: Vec<(NonNull<Page>, u32, u64)> = Vec::new();
                for round in 0..ROUNDS {
                    let order = rng.order(9);
                    let gfp = match rng.below(4) {
                        0 => GFP_KERNEL | __GFP_ZERO,
                        1 => GFP_KERNEL | __GFP_COMP,
                        2 => GFP_HIGHUSER_MOVABLE,
                        _ => GFP_KERNEL,
                    };
                    if let Ok(p) = m.alloc_pages(gfp | __GFP_NOWARN | __GFP_NORETRY, order) {
                        let tag = ((t as u64) << 32) | round as u64;
                        for chunk in bytes(m, p, order).chunks_mut(PAGE_SIZE) {
                            chunk[..8].copy_from_slice(&tag.to_ne_bytes());
                        }
                        if rng.below(4) == 0 {
                            tx.send((SendPage(p), order, tag)).unwrap();
                        } else {
                            mine.push((p, order, tag));
                        }
                    }
                    // Keep a bounded working set; free oldest-first or randomly.
                    while mine.len() > 64 || (!mine.is_empty() && rng.below(3) == 0) {
                        let i = rng.below(mine.len() as u64) as usize;
                        let (p, o, tag) = mine.swap_remove(i);
                        check_and_free(p, o, tag);
                    }
                    while let Ok((p, o, tag)) = rx.try_recv() {
                        check_and_free(p.0, o, tag);
                    }
                }
                for (p, o, tag) in mine.drain(..) {
                    check_and_free(p, o, tag);
                }
                drop(tx);
                // Until the previous thread is done, free what it sends us.
                while let Ok((p, o, tag)) = rx.recv() {
                    check_and_free(p.0, o, tag);
                }
            });
        }
    });
    assert_eq!(m.events.bad_pages.load(Ordering::Relaxed), 0, "{}", m.dmesg());
    assert_accounting(m, 0);
    assert_boot_state(m);
}

/// Pages of the memmap (page descriptors) describing pfns `[lo, hi)` that
/// are resident in the machine's RAM file (`mincore`).
fn resident_memmap_pages(m: &Machine, lo: usize, hi: usize) -> usize {
    let first = m.pfn_to_page(lo).unwrap().as_ptr() as usize & !(PAGE_SIZE - 1);
    let last = m.pfn_to_page(hi - 1).unwrap().as_ptr() as usize;
    let len = last + 1 - first;
    let mut vec = vec![0u8; len.div_ceil(PAGE_SIZE)];
    // SAFETY: the memmap is mapped for the machine's life; `vec` has a byte per page.
    let rc = unsafe { libc::mincore(first as *mut libc::c_void, len, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

/// DMA32's free max-order blocks, from `/proc/buddyinfo` (its last column).
fn dma32_max_order_blocks(m: &Machine) -> usize {
    m.proc_read("buddyinfo")
        .unwrap()
        .lines()
        .find(|l| l.contains("DMA32"))
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .parse::<usize>()
        .unwrap()
}

/// The boot hand-over does not write the descriptors of the max-order blocks
/// it frees (they stay untouched until first needed), yet every count and
/// the allocation order are those of listed blocks.
#[test]
fn untouched_max_order_blocks_cost_no_memmap_until_used() {
    let m = boot("quiet mem=4G nr_cpus=2");
    // DMA32's free RAM from 1 GiB to 4 MiB below its end (3 GiB less the
    // firmware's top; the blocks there are smaller, and listed): 511
    // max-order blocks, whose descriptors would take one memmap page each if
    // they had been written.
    let (lo, hi) = (1 << 18, (3 << 18) - (1 << 10));
    assert_eq!(
        resident_memmap_pages(&m, lo, hi),
        0,
        "boot wrote descriptors of free blocks"
    );
    let buddyinfo = m.proc_read("buddyinfo").unwrap();
    let z = zone(&m, ZoneType::Dma32);
    let max_blocks = dma32_max_order_blocks;
    let before = max_blocks(&m);
    assert!(before >= 512, "{buddyinfo}");
    // Max-order allocations from DMA32 (all but 64 blocks, to stay clear of
    // the watermarks): highest blocks first, as if every block had been
    // listed by the hand-over; each is counted once.
    let mut got = Vec::new();
    for i in 0..before - 64 {
        let p = m
            .alloc_pages(GFP_DMA32 | __GFP_NOWARN | __GFP_NORETRY, 10)
            .unwrap();
        assert_eq!(zone_of(&m, pfn(&m, p)).name(), z.name());
        got.push(pfn(&m, p));
        assert_eq!(max_blocks(&m), before - i - 1);
    }
    assert!(
        got.windows(2).all(|w| w[0] > w[1]),
        "blocks handed out highest first"
    );
    // Freed, they are listed blocks now.
    for &f in got.iter().rev() {
        // SAFETY: our blocks.
        unsafe { m.__free_pages(m.pfn_to_page(f).unwrap(), 10) };
    }
    assert_eq!(max_blocks(&m), before);
    assert_eq!(m.proc_read("buddyinfo").unwrap(), buddyinfo);
    assert_boot_state(&m);
}

/// More free ranges in one zone than it keeps untouched ranges for (four):
/// the hand-over counts the first ranges' max-order blocks untouched and
/// lists the others, and every block is there, is handed out and comes
/// back.
#[test]
fn more_free_ranges_than_untouched_ranges() {
    // Six 16 MiB ranges of RAM in DMA32, 4 MiB apart, and 64 MiB on top for
    // the boot's allocations.
    let mut cmdline = String::from("quiet nr_cpus=2 memmap=exactmap");
    for i in 0..6 {
        cmdline += &format!(" memmap=16M@{}M", 64 + 20 * i);
    }
    cmdline += " memmap=64M@256M";
    let m = boot(&cmdline);
    let max_blocks = dma32_max_order_blocks(&m);
    assert!(max_blocks >= 6 * 4, "{max_blocks} max-order blocks");
    let free = m.nr_free_pages();
    let held = exhaust(&m, GFP_KERNEL | __GFP_MEMALLOC);
    assert_accounting(&m, held_pages(&held));
    assert!(
        held_pages(&held) >= free,
        "{} of {free} free pages handed out",
        held_pages(&held)
    );
    free_all(&m, held);
    assert_boot_state(&m);
}
