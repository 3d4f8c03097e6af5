//! kmap and kmap_local for HighMem pages (mm/highmem.c): an i386-style
//! machine (`mem=1G highmem=512M`) whose HighMem pages have no permanent
//! address; the pkmap pool with shared slots, wrap-around flushes and
//! sleeping for a slot; per-CPU stacked kmap_local slots; misuse warnings.

mod common;

use common::*;
use core::ptr::NonNull;
use kmem::highmem::{KM_MAX_IDX, LAST_PKMAP};
use kmem::page::Page;
use kmem::*;
use kmem_hosted::Machine;
use std::sync::atomic::Ordering;

const CMDLINE: &str = "quiet mem=1G highmem=512M nr_cpus=2 kswapd=off";

fn warnings(m: &Machine) -> usize {
    m.events.warnings.load(Ordering::Relaxed)
}

fn high_page(m: &Machine) -> NonNull<Page> {
    let p = m.alloc_pages(GFP_HIGHUSER, 0).expect("a HighMem page");
    assert!(m.page_is_highmem(p));
    assert!(m.page_address(p).is_none());
    p
}

fn in_pkmap(m: &Machine, a: NonNull<u8>) -> bool {
    let a = a.as_ptr() as usize;
    a >= m.pkmap_base() && a < m.pkmap_base() + LAST_PKMAP * PAGE_SIZE
}

#[test]
fn write_through_kmap_read_back_through_kmap_local() {
    let m = boot(CMDLINE);
    assert!(m.pkmap_base() != 0);
    // The pool sits above VMALLOC_END, as on x86-32.
    assert_eq!(m.vmalloc_end(), m.pkmap_base() - 2 * PAGE_SIZE);
    let p = high_page(&m);
    let a = m.kmap(p).expect("kmap");
    assert!(in_pkmap(&m, a));
    assert_eq!(m.pkmap_page_address(p), Some(a));
    // SAFETY: the page is mapped at `a` for PAGE_SIZE bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(a.as_ptr(), PAGE_SIZE) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    m.kunmap(p);
    let l = m.kmap_local_page(p).expect("kmap_local");
    assert!(!in_pkmap(&m, l), "kmap_local uses the fixmap slots");
    // SAFETY: mapped at `l` until kunmap_local.
    let s = unsafe { std::slice::from_raw_parts(l.as_ptr(), PAGE_SIZE) };
    assert!(s.iter().enumerate().all(|(i, &b)| b == (i * 7 % 251) as u8));
    m.kunmap_local(l.as_ptr());
    let mut buf = [0u8; 16];
    assert!(m.memcpy_from_page(&mut buf, p, 100));
    assert_eq!(buf[0], (100 * 7 % 251) as u8);
    assert!(m.memcpy_to_page(p, 4090, &[1, 2, 3, 4, 5, 6]));
    let a = m.kmap(p).unwrap();
    // SAFETY: mapped.
    assert_eq!(unsafe { a.as_ptr().add(4095).read() }, 6);
    m.kunmap(p);
    assert_eq!(m.nr_kmap_local(), 0);
    assert_eq!(m.preempt_count(), 0);
    // SAFETY: ours.
    unsafe { m.__free_pages(p, 0) };
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn lowmem_pages_need_no_mapping() {
    let m = boot(CMDLINE);
    let p = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    let addr = m.page_address(p).unwrap();
    assert_eq!(m.kmap(p), Some(addr));
    m.kunmap(p);
    assert_eq!(m.kmap_local_page(p), Some(addr));
    m.kunmap_local(addr.as_ptr());
    assert_eq!(m.pkmap_page_address(p), None);
    assert_eq!(m.nr_pkmaps_mapped(), 0);
    // SAFETY: ours.
    unsafe { m.__free_pages(p, 0) };
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn the_same_page_mapped_twice_shares_one_slot() {
    let m = boot(CMDLINE);
    let p = high_page(&m);
    let a = m.kmap(p).unwrap();
    let b = m.kmap(p).unwrap();
    assert_eq!(a, b);
    assert_eq!(m.pkmap_count(p), 3, "mapped, two users");
    assert_eq!(m.nr_pkmaps_mapped(), 1);
    m.kunmap(p);
    m.kunmap(p);
    // Unused but still mapped until the pool wraps (count 1).
    assert_eq!(m.pkmap_count(p), 1);
    assert_eq!(m.pkmap_page_address(p), Some(a));
    // Mapping it again reuses the slot.
    assert_eq!(m.kmap(p), Some(a));
    m.kunmap(p);
    // SAFETY: ours.
    unsafe { m.__free_pages(p, 0) };
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn exhausting_the_pool_wraps_and_flushes_unused_slots() {
    let m = boot(CMDLINE);
    let pages: Vec<_> = (0..LAST_PKMAP + 40).map(|_| high_page(&m)).collect();
    let mut first_addr = None;
    for (i, &p) in pages.iter().enumerate() {
        let a = m.kmap(p).unwrap();
        assert!(in_pkmap(&m, a));
        // SAFETY: mapped for a page.
        unsafe { a.as_ptr().cast::<u64>().write(i as u64 ^ 0x5555) };
        if i == 0 {
            first_addr = Some(a);
        }
        m.kunmap(p);
    }
    // The wrap unmapped every count-1 slot: the first page lost its address.
    assert_eq!(m.pkmap_page_address(pages[0]), None);
    assert!(m.nr_pkmaps_mapped() <= LAST_PKMAP);
    // Every page kept what was written through its (old) mapping.
    for (i, &p) in pages.iter().enumerate() {
        let mut b = [0u8; 8];
        assert!(m.memcpy_from_page(&mut b, p, 0));
        assert_eq!(u64::from_ne_bytes(b), i as u64 ^ 0x5555);
    }
    // Slots are handed out in order after last_pkmap_nr, so the first
    // page's old slot was reused.
    let reused = pages
        .iter()
        .filter_map(|&p| m.pkmap_page_address(p))
        .any(|a| Some(a) == first_addr);
    assert!(reused);
    for p in pages {
        // SAFETY: ours, not mapped by anyone.
        unsafe { m.__free_pages(p, 0) };
    }
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn kmap_sleeps_for_a_free_slot_when_all_are_in_use() {
    let m = boot(CMDLINE);
    let pages: Vec<_> = (0..LAST_PKMAP).map(|_| high_page(&m)).collect();
    let addrs: Vec<_> = pages.iter().map(|&p| m.kmap(p).unwrap()).collect();
    assert_eq!(m.nr_pkmaps_mapped(), LAST_PKMAP);
    let extra = SendPage(high_page(&m));
    std::thread::scope(|s| {
        let m = &m;
        let t = s.spawn(move || {
            let e = extra;
            m.kmap(e.0).map(|a| a.as_ptr() as usize)
        });
        // Wait until the thread sleeps in kmap.
        while m.kmap_waiters() == 0 {
            assert!(!t.is_finished(), "kmap returned with every slot in use");
            std::thread::yield_now();
        }
        m.kunmap(pages[77]);
        let got = t.join().unwrap().expect("woken with a slot");
        assert_eq!(got, addrs[77].as_ptr() as usize, "the freed slot");
    });
    assert_eq!(m.pkmap_page_address(pages[77]), None);
    m.kunmap(extra.0);
    for (i, &p) in pages.iter().enumerate() {
        if i != 77 {
            m.kunmap(p);
        }
    }
    for p in pages.into_iter().chain([extra.0]) {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, 0) };
    }
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn concurrent_kmap_and_kmap_local() {
    let m = boot("quiet mem=1G highmem=512M nr_cpus=4 kswapd=off");
    let shared: Vec<_> = (0..8).map(|_| SendPage(high_page(&m))).collect();
    for (i, p) in shared.iter().enumerate() {
        assert!(m.memcpy_to_page(p.0, 0, &[i as u8; 64]));
    }
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let m = &m;
            let shared = shared.clone();
            s.spawn(move || {
                for round in 0..300usize {
                    let p = m.alloc_pages(GFP_HIGHUSER, 0).unwrap();
                    let a = m.kmap(p).unwrap();
                    // SAFETY: mapped for a page; ours alone.
                    unsafe { a.as_ptr().write_bytes(t ^ round as u8, PAGE_SIZE) };
                    let sp = shared[round % shared.len()].0;
                    let sa = m.kmap(sp).unwrap();
                    let l = m.kmap_local_page(p).unwrap();
                    let sl = m.kmap_local_page(sp).unwrap();
                    // SAFETY: all four are live mappings.
                    unsafe {
                        assert_eq!(l.as_ptr().add(4000).read(), t ^ round as u8);
                        assert_eq!(sl.as_ptr().add(63).read(), (round % shared.len()) as u8);
                        assert_eq!(sa.as_ptr().add(1).read(), (round % shared.len()) as u8);
                    }
                    m.kunmap_local(sl.as_ptr());
                    m.kunmap_local(l.as_ptr());
                    m.kunmap(sp);
                    m.kunmap(p);
                    // SAFETY: ours.
                    unsafe { m.__free_pages(p, 0) };
                }
            });
        }
    });
    assert_eq!(m.nr_kmap_local(), 0);
    for p in &shared {
        assert!(m.pkmap_count(p.0) <= 1, "no user left");
    }
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

#[test]
fn nested_kmap_local_unwinds_lifo_and_out_of_order_warns() {
    let m = boot(CMDLINE);
    // kmap_local slots are per CPU: the checks of which slot comes back hold
    // only if the thread does not move between its mappings.
    let _pin = pin_to_current_cpu();
    let pages: Vec<_> = (0..4).map(|_| high_page(&m)).collect();
    for (i, &p) in pages.iter().enumerate() {
        assert!(m.memcpy_to_page(p, 0, &[0x10 + i as u8]));
    }
    let maps: Vec<_> = pages[..3]
        .iter()
        .map(|&p| m.kmap_local_page(p).unwrap())
        .collect();
    assert_eq!(m.nr_kmap_local(), 3);
    // Stacked slots: consecutive fixmap pages, growing downwards.
    assert_eq!(maps[0].as_ptr() as usize - maps[1].as_ptr() as usize, PAGE_SIZE);
    assert_eq!(maps[1].as_ptr() as usize - maps[2].as_ptr() as usize, PAGE_SIZE);
    for (i, a) in maps.iter().enumerate() {
        // SAFETY: live mappings.
        assert_eq!(unsafe { a.as_ptr().read() }, 0x10 + i as u8);
    }
    // kmap_local pins the caller to its CPU.
    assert!(m.in_atomic());
    for a in maps.iter().rev() {
        // Any address inside the page will do.
        // SAFETY: address arithmetic only.
        m.kunmap_local(unsafe { a.as_ptr().add(123) });
    }
    assert_eq!(m.nr_kmap_local(), 0);
    assert_eq!(m.preempt_count(), 0);
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());

    // Out of order: A, B mapped; A undone first.
    let a = m.kmap_local_page(pages[0]).unwrap();
    let b = m.kmap_local_page(pages[1]).unwrap();
    let since = m.dmesg_len();
    m.kunmap_local(a.as_ptr());
    assert_eq!(warnings(&m), 1);
    assert!(m.dmesg_since(since).contains("unmap in reverse order"));
    // B is untouched, and a new mapping does not take its slot.
    // SAFETY: B is still mapped.
    assert_eq!(unsafe { b.as_ptr().read() }, 0x11);
    let c = m.kmap_local_page(pages[2]).unwrap();
    assert_ne!(c, b);
    // SAFETY: both live.
    unsafe {
        assert_eq!(b.as_ptr().read(), 0x11);
        assert_eq!(c.as_ptr().read(), 0x12);
    }
    m.kunmap_local(c.as_ptr());
    m.kunmap_local(b.as_ptr());
    assert_eq!(m.nr_kmap_local(), 0);
    assert_eq!(m.preempt_count(), 0);
    // Unmapping again (the slot is free now) warns and changes nothing.
    m.kunmap_local(b.as_ptr());
    assert_eq!(m.preempt_count(), 0);
    // The stack is whole again: the first slot is used first.
    let again = m.kmap_local_page(pages[3]).unwrap();
    assert_eq!(again, maps[0]);
    // SAFETY: live.
    assert_eq!(unsafe { again.as_ptr().read() }, 0x13);
    m.kunmap_local(again.as_ptr());
    for p in pages {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, 0) };
    }
}

#[test]
fn kmap_local_depth_is_limited_and_kmap_atomic_disables_preemption() {
    let m = boot(CMDLINE);
    let p = high_page(&m);
    let maps: Vec<_> = (0..KM_MAX_IDX).map(|_| m.kmap_local_page(p).unwrap()).collect();
    let since = m.dmesg_len();
    assert!(m.kmap_local_page(p).is_none());
    assert!(m.dmesg_since(since).contains("nested kmap_local"));
    for a in maps.iter().rev() {
        m.kunmap_local(a.as_ptr());
    }
    assert_eq!(m.preempt_count(), 0);
    let a = m.kmap_atomic(p).unwrap();
    assert!(m.in_atomic());
    m.kunmap_atomic(a.as_ptr());
    let low = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    let la = m.kmap_atomic(low).unwrap();
    assert!(m.in_atomic(), "kmap_atomic disables preemption for lowmem too");
    m.kunmap_atomic(la.as_ptr());
    assert_eq!(m.preempt_count(), 0);
    // SAFETY: ours.
    unsafe {
        m.__free_pages(p, 0);
        m.__free_pages(low, 0);
    }
}

#[test]
fn kunmap_of_a_page_not_mapped_warns_and_changes_nothing() {
    let m = boot(CMDLINE);
    let p = high_page(&m);
    let since = m.dmesg_len();
    m.kunmap(p);
    assert_eq!(warnings(&m), 1);
    assert!(m.dmesg_since(since).contains("is not kmapped"));
    let a = m.kmap(p).unwrap();
    m.kunmap(p);
    m.kunmap(p);
    assert_eq!(warnings(&m), 2);
    assert_eq!(m.pkmap_count(p), 1, "the count did not underflow");
    assert_eq!(m.kmap(p), Some(a));
    assert_eq!(m.pkmap_count(p), 2);
    m.kunmap(p);
    // A stray address to kunmap_local warns once.
    let x = 0u8;
    m.kunmap_local(&x);
    assert_eq!(warnings(&m), 3);
    // kmap from atomic context with a free slot still works (after the
    // might_sleep report).
    m.preempt_disable();
    let b = m.kmap(p);
    m.preempt_enable();
    assert_eq!(b, Some(a));
    assert!(m
        .dmesg()
        .contains("BUG: sleeping function called from invalid context"));
    m.kunmap(p);
    // SAFETY: ours.
    unsafe { m.__free_pages(p, 0) };
}
