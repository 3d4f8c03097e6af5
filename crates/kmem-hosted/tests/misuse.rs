//! Misuse of the page API is detected and reported the kernel's way
//! ("BUG: Bad page state", `WARN_ON_ONCE` for impossible orders), and never
//! corrupts the allocator: after every kind of misuse the machine still
//! allocates, and freeing everything returns the buddy lists to the boot
//! state (mm/page_alloc.c `bad_page`, `free_page_is_bad`,
//! `free_pages_prepare`; reference/linux-mm.md §1.2 "Bad page report").

mod common;

use common::*;
use core::ptr::NonNull;
use kmem::page::flags::PG_SLAB;
use kmem::page::Page;
use kmem::*;
use kmem_hosted::Machine;
use std::sync::atomic::Ordering;

fn bad_pages(m: &Machine) -> usize {
    m.events.bad_pages.load(Ordering::Relaxed)
}

/// Run `f`, then check it produced exactly one bad-page report whose text
/// contains one of `needles`, and that no page changed hands.
fn expect_one_report(m: &Machine, needles: &[&str], f: impl FnOnce()) {
    let before = bad_pages(m);
    let since = m.dmesg_len();
    let free = m.nr_free_pages() + m.nr_pcp_pages();
    f();
    assert_eq!(bad_pages(m), before + 1, "expected one report");
    let log = m.dmesg_since(since);
    assert!(log.contains("BUG: Bad page state"), "no bad page report:\n{log}");
    assert!(
        needles.iter().any(|n| log.contains(n)),
        "report does not say {needles:?}:\n{log}"
    );
    assert_eq!(
        m.nr_free_pages() + m.nr_pcp_pages(),
        free,
        "the bad free changed the free page count"
    );
}

/// Afterwards the machine is healthy: it can hand out (and take back) all its
/// memory, and the buddy lists are as at boot.
fn assert_healthy(m: &Machine) {
    assert_boot_state(m);
    let held = exhaust(m, GFP_KERNEL | __GFP_MEMALLOC);
    assert_eq!(
        held_pages(&held),
        m.totalram_pages() - m.boot_allocated_pages() - m.nr_free_pages() - m.nr_pcp_pages()
    );
    free_all(m, held);
    assert_boot_state(m);
}

/// Double free: the second free finds the page already free (on a per-CPU
/// list or in the buddy, refcount 0) and reports it instead of putting it on
/// a free list twice.
#[test]
fn double_free_is_reported_and_harmless() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    for order in [0u32, 2, 3, 5, 10] {
        let p = m.alloc_pages(GFP_KERNEL, order).unwrap();
        // SAFETY: our allocation.
        unsafe { m.__free_pages(p, order) };
        expect_one_report(&m, &["double free", "page_ref_count(page) == 0"], || {
            // SAFETY: deliberately wrong: the page is already free.
            unsafe { m.__free_pages(p, order) };
        });
        assert_boot_state(&m);
    }
    // Through free_pages (by address) and put_page as well.
    let a = m.__get_free_pages(GFP_KERNEL, 1).unwrap();
    // SAFETY: our allocation.
    unsafe { m.free_pages(a.as_ptr() as usize, 1) };
    expect_one_report(&m, &["double free", "page_ref_count(page) == 0"], || {
        // SAFETY: deliberately wrong.
        unsafe { m.free_pages(a.as_ptr() as usize, 1) };
    });
    let p = m.alloc_pages(GFP_KERNEL | __GFP_COMP, 2).unwrap();
    // SAFETY: our allocation.
    unsafe { m.put_page(p) };
    expect_one_report(&m, &["double free", "page_ref_count(page) == 0"], || {
        // SAFETY: deliberately wrong.
        unsafe { m.put_page(p) };
    });
    // A double free after the page went to the buddy lists (drained).
    let p = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    // SAFETY: our allocation.
    unsafe { m.__free_pages(p, 0) };
    m.drain_all_pages();
    expect_one_report(&m, &["double free", "page_ref_count(page) == 0"], || {
        // SAFETY: deliberately wrong.
        unsafe { m.__free_pages(p, 0) };
    });
    assert!(m.dmesg().contains("BUG: Bad page state in process"));
    // The reports show the count the bad put left, never a "nonzero" count of 0.
    assert!(m.dmesg().contains("page: refcount:-1 "), "{}", m.dmesg());
    assert!(!m.dmesg().contains("page: refcount:0 "), "{}", m.dmesg());
    assert_healthy(&m);
}

/// Freeing with the wrong order is reported (kmem records the allocation's
/// order, which the kernel cannot check) and the whole block comes back.
#[test]
fn wrong_order_free_is_reported_and_block_returned() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    for (alloc, free) in [(2u32, 0u32), (0, 3), (5, 4), (3, 10), (1, 2)] {
        let p = m.alloc_pages(GFP_KERNEL, alloc).unwrap();
        let before = bad_pages(&m);
        let since = m.dmesg_len();
        // SAFETY: deliberately the wrong order.
        unsafe { m.__free_pages(p, free) };
        assert_eq!(bad_pages(&m), before + 1);
        let log = m.dmesg_since(since);
        assert!(
            log.contains(&format!(
                "freed with order {free} but allocated with order {alloc}"
            )),
            "{log}"
        );
        // Everything came back, nothing more.
        assert_accounting(&m, 0);
        assert_boot_state(&m);
    }
    // free_pages by address too.
    let a = m.__get_free_pages(GFP_KERNEL, 4).unwrap();
    // SAFETY: deliberately the wrong order.
    unsafe { m.free_pages(a.as_ptr() as usize, 0) };
    assert_accounting(&m, 0);
    assert_healthy(&m);
}

/// Freeing a reserved page (the first MiB is reserved, like the BIOS area
/// on a PC) is reported and the page is not freed.
#[test]
fn freeing_a_reserved_page_is_reported_not_freed() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    for pfn in [1usize, 0x50, 0x9e] {
        let p = m.pfn_to_page(pfn).unwrap();
        // SAFETY: reading the descriptor of a reserved page.
        assert!(
            // SAFETY: a live descriptor or cache of this machine.
            unsafe { p.as_ref() }.is_reserved(),
            "pfn {pfn:#x} should be reserved"
        );
        expect_one_report(
            &m,
            &[
                "reserved",
                "page_ref_count(page) == 0",
                "PAGE_FLAGS_CHECK_AT_FREE",
            ],
            || {
                // SAFETY: deliberately wrong: never allocated.
                unsafe { m.__free_pages(p, 0) };
            },
        );
        // SAFETY: as above.
        assert!(
            // SAFETY: a live descriptor or cache of this machine.
            unsafe { p.as_ref() }.is_reserved(),
            "pfn {pfn:#x} lost PG_reserved"
        );
        // And by address.
        let a = m.page_address(p).unwrap().as_ptr() as usize;
        expect_one_report(
            &m,
            &[
                "reserved",
                "page_ref_count(page) == 0",
                "PAGE_FLAGS_CHECK_AT_FREE",
            ],
            || {
                // SAFETY: deliberately wrong.
                unsafe { m.free_pages(a, 0) };
            },
        );
    }
    // A page in the legacy hole (640K-1M, not RAM) is not a free page either.
    expect_one_report(
        &m,
        &[
            "reserved",
            "page_ref_count(page) == 0",
            "PAGE_FLAGS_CHECK_AT_FREE",
        ],
        || {
            // SAFETY: deliberately wrong: not RAM.
            unsafe { m.__free_pages(m.pfn_to_page(0xc0).unwrap(), 0) };
        },
    );
    // None of them ever comes out of the allocator.
    let held = exhaust(&m, GFP_KERNEL | __GFP_MEMALLOC);
    assert!(
        held.iter().all(|&(p, _)| pfn(&m, p) >= 0x100),
        "a page of the reserved first MiB was handed out"
    );
    free_all(&m, held);
    assert_healthy(&m);
}

/// Frees of things that are not pages of this machine: a small integer, a
/// misaligned linear address, an address outside RAM, a pointer into the
/// middle of a descriptor, a pointer outside the memmap, an order above
/// MAX_PAGE_ORDER. Each is reported; `free_pages(0)` is silently ignored.
#[test]
fn freeing_non_pages_is_reported() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let p = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    let a = m.page_address(p).unwrap().as_ptr() as usize;
    let not_a_page = ["not a page of this machine", "Bad page state"];
    expect_one_report(&m, &not_a_page, || {
        // SAFETY: deliberately wrong.
        unsafe { m.free_pages(0x1234, 0) };
    });
    expect_one_report(&m, &not_a_page, || {
        // SAFETY: deliberately wrong: far beyond the machine's RAM.
        unsafe { m.free_pages(m.page_offset() + (1 << 40), 0) };
    });
    expect_one_report(&m, &not_a_page, || {
        let inside = NonNull::new((p.as_ptr() as *mut u8).wrapping_add(8) as *mut Page).unwrap();
        // SAFETY: deliberately wrong: not a descriptor boundary.
        unsafe { m.__free_pages(inside, 0) };
    });
    expect_one_report(&m, &not_a_page, || {
        let mut fake = [0u8; 128];
        let fake = NonNull::new(fake.as_mut_ptr() as *mut Page).unwrap();
        // SAFETY: deliberately wrong: not in the memmap at all.
        unsafe { m.__free_pages(fake, 0) };
    });
    // free_pages(0) is a no-op, as in the kernel.
    let before = bad_pages(&m);
    // SAFETY: 0 is ignored.
    unsafe { m.free_pages(0, 3) };
    assert_eq!(bad_pages(&m), before);
    // The real page is still ours and intact.
    bytes(&m, p, 0).fill(0x3c);
    // SAFETY: our page.
    unsafe { m.free_pages(a, 0) };
    assert_healthy(&m);
}

/// `free_pages` of an address inside a page frees that page, as the
/// kernel's `virt_to_page` rounds down, without a report; `__free_pages` with
/// an order no block has (11) is a wrong-order free: reported, and the real
/// block freed.
#[test]
fn free_pages_rounds_down_and_order_11_frees_the_block() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let p = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    let a = m.page_address(p).unwrap().as_ptr() as usize;
    let before = bad_pages(&m);
    // SAFETY: our page, freed once, by an address inside it.
    unsafe { m.free_pages(a + 8, 0) };
    assert_eq!(bad_pages(&m), before);
    assert_healthy(&m);
    let p = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    let since = m.dmesg_len();
    // SAFETY: deliberately wrong: no such order; the page is ours and freed once.
    unsafe { m.__free_pages(p, 11) };
    assert_eq!(bad_pages(&m), before + 1);
    let log = m.dmesg_since(since);
    assert!(
        log.contains("freed with order 11 but allocated with order 0"),
        "{log}"
    );
    assert_healthy(&m);
}

/// Freeing a tail page of a compound page, or a page still flagged as a slab
/// page, is reported ("PAGE_FLAGS_CHECK_AT_FREE"); like the kernel, a bad
/// page is left alone rather than put on a free list.
#[test]
fn freeing_tail_or_slab_page_is_reported() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let head = m.alloc_pages(GFP_KERNEL | __GFP_COMP, 2).unwrap();
    let tail = m.pfn_to_page(pfn(&m, head) + 1).unwrap();
    expect_one_report(&m, &["tail page", "page_ref_count(page) == 0"], || {
        // SAFETY: deliberately wrong: a tail page is not an allocation.
        unsafe { m.__free_pages(tail, 0) };
    });
    // The compound page is still whole and frees normally.
    // SAFETY: our allocation.
    unsafe { m.__free_pages(head, 2) };
    assert_boot_state(&m);

    let p = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    // SAFETY: the descriptor is ours; we simulate a slab that forgot to clear its flag.
    unsafe { p.as_ref() }.set(PG_SLAB);
    let before = bad_pages(&m);
    let since = m.dmesg_len();
    // SAFETY: deliberately wrong.
    unsafe { m.__free_pages(p, 0) };
    assert_eq!(bad_pages(&m), before + 1);
    assert!(
        m.dmesg_since(since).contains("PAGE_FLAGS_CHECK_AT_FREE"),
        "{}",
        m.dmesg_since(since)
    );
    // The page was not freed (it is leaked, as in the kernel). Repair it and
    // free it properly so the machine returns to its boot state.
    assert_accounting(&m, 1);
    // SAFETY: we own the descriptor of the leaked page.
    unsafe {
        p.as_ref().clear(PG_SLAB);
        p.as_ref().refcount.store(1, Ordering::Relaxed);
        m.__free_pages(p, 0);
    }
    assert_healthy(&m);
}

/// Orders above MAX_PAGE_ORDER fail with a warning (silent with
/// `__GFP_NOWARN`), and nothing is taken.
#[test]
fn order_above_max_fails_with_warning() {
    let m = boot("quiet mem=64M nr_cpus=1 kswapd=off");
    assert!(m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 11).is_err());
    assert!(!m.dmesg().contains("MAX_PAGE_ORDER"), "__GFP_NOWARN still warned");
    for order in [11u32, 12, 20, 63] {
        assert!(m.alloc_pages(GFP_KERNEL, order).is_err());
        assert!(m.alloc_pages(GFP_ATOMIC, order).is_err());
        assert!(m.__get_free_pages(GFP_KERNEL, order).is_err());
    }
    let log = m.dmesg();
    assert!(
        log.contains("WARNING") && log.contains("order 11 > MAX_PAGE_ORDER"),
        "{log}"
    );
    // Huge sizes through alloc_pages_exact as well.
    assert!(m
        .alloc_pages_exact(usize::MAX / 2, GFP_KERNEL | __GFP_NOWARN)
        .is_err());
    assert!(m.alloc_pages_exact(8 << 20, GFP_KERNEL | __GFP_NOWARN).is_err());
    assert!(m.alloc_pages_exact(4 << 20, GFP_KERNEL).is_ok_and(|a| {
        // SAFETY: just allocated with this size.
        unsafe { m.free_pages_exact(a, 4 << 20) };
        true
    }));
    assert_eq!(m.nr_allocated_pages(), m.boot_allocated_pages());
    assert_healthy(&m);
}

/// All the misuse at once on one machine, interleaved with real work from
/// two threads; the reports add up and nothing is corrupted.
#[test]
fn misuse_mixed_with_real_work() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let m = &m;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..2000u32 {
                let order = i % 4;
                let p = m.alloc_pages(GFP_KERNEL, order).unwrap();
                bytes(m, p, order)[..8].copy_from_slice(&(i as u64).to_ne_bytes());
                assert_eq!(bytes(m, p, order)[..8], (i as u64).to_ne_bytes());
                // SAFETY: our allocation.
                unsafe { m.__free_pages(p, order) };
            }
        });
        s.spawn(|| {
            // (No double free here: the other thread could get the page
            // back in between, and then the second free would be a real bug.)
            for i in 0..50usize {
                // SAFETY: deliberately wrong: a reserved page.
                unsafe { m.__free_pages(m.pfn_to_page(2 + i).unwrap(), 0) };
                // SAFETY: deliberately wrong: not an address.
                unsafe { m.free_pages(0x1000 + i, 0) };
            }
        });
    });
    // 100 reports (the log is ratelimited, the count is not).
    assert_eq!(bad_pages(m), 100);
    assert_healthy(m);
}

/// The memmap's own pages (`Kmem::memmap_pfns`): their descriptors are never
/// written (on a 4 GiB machine that would keep 1.25 MiB of the host's memory
/// resident), yet they count as reserved, `page_is_reserved` says so, and a
/// stray free of one is reported and frees nothing.
#[test]
fn the_memmaps_own_pages_are_reserved_and_untouched() {
    let m = boot("quiet mem=4G nr_cpus=2 kswapd=off");
    let pfns = m.memmap_pfns();
    assert_eq!(pfns.len(), (m.max_pfn() * 64).div_ceil(PAGE_SIZE));
    // Their descriptors lie in the last pages of the memmap: none resident.
    let first = m.pfn_to_page(pfns.start).unwrap().as_ptr() as usize & !(PAGE_SIZE - 1);
    let last = m.pfn_to_page(pfns.end - 1).unwrap().as_ptr() as usize;
    let len = last + 1 - first;
    let mut vec = vec![0u8; len.div_ceil(PAGE_SIZE)];
    // SAFETY: the memmap is mapped for the machine's life; `vec` has a byte per page.
    let rc = unsafe { libc::mincore(first as *mut libc::c_void, len, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    // The first and last descriptor pages may be shared with other pages'
    // descriptors, and the buddy allocator reads (faults in) the second one
    // when it merges the free block just below the memmap and checks its
    // buddy there.
    let resident = vec[2..vec.len() - 1].iter().filter(|&&b| b & 1 != 0).count();
    assert_eq!(resident, 0, "descriptors of the memmap's own pages were written");
    for pfn in [pfns.start, pfns.start + pfns.len() / 2, pfns.end - 1] {
        assert!(m.page_is_reserved(pfn), "pfn {pfn:#x}");
    }
    let page = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    let pfn = m.page_to_pfn(page);
    assert!(
        !pfns.contains(&pfn) && !m.page_is_reserved(pfn),
        "an allocated page is not reserved"
    );
    // SAFETY: allocated above.
    unsafe { m.__free_pages(page, 0) };
    let p = m.pfn_to_page(pfns.start + 7).unwrap();
    expect_one_report(&m, &["refcount", "reserved", "already free"], || {
        // SAFETY: deliberately wrong: a page of the memmap, never allocated.
        unsafe { m.__free_pages(p, 0) };
    });
    assert_boot_state(&m);
}

/// `kmem_cache_free` of a pointer inside an object of the cpu slab (the
/// object just allocated): reported as "Invalid object pointer" and not
/// freed, whether the free runs the rseq sequence (with or without sheaves)
/// or the cmpxchg path; the freelist stays whole, so the next objects do not
/// overlap the first.
#[test]
fn kmem_cache_free_inside_an_object_is_reported() {
    for cmdline in [
        "quiet mem=64M",
        "quiet mem=64M kmem.sheaves=off",
        "quiet mem=64M kmem.rseq=off",
    ] {
        let m = Machine::boot(cmdline).unwrap();
        let s = m
            .kmem_cache_create("interior", 40, 8, kmem::slab::SlabFlags(0), None)
            .unwrap();
        // SAFETY: a live cache of this machine (created and not destroyed).
        let o = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
        let errors = m.slab.errors.load(Ordering::Relaxed);
        // SAFETY: a pointer inside a live object is the misuse under test; nothing is freed.
        unsafe { m.kmem_cache_free(s, o.wrapping_add(4)) };
        assert_eq!(m.slab.errors.load(Ordering::Relaxed), errors + 1, "{cmdline}");
        let bad = format!(
            "kmem_cache_free: Invalid object pointer 0x{:016x}",
            o as usize + 4
        );
        assert!(m.dmesg().contains(&bad), "{cmdline}: {}", m.dmesg());
        // SAFETY: a live cache of this machine (created and not destroyed).
        let a = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
        // SAFETY: a live cache of this machine (created and not destroyed).
        let b = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr();
        for p in [a, b] {
            assert!(
                (p as usize).abs_diff(o as usize) >= 40,
                "{cmdline}: {p:?} overlaps {o:?}"
            );
        }
        // SAFETY: each allocated above and freed once.
        unsafe {
            for p in [o, a, b] {
                m.kmem_cache_free(s, p);
            }
            m.kmem_cache_destroy(s);
        }
        assert_eq!(m.slab.errors.load(Ordering::Relaxed), errors + 1, "{cmdline}");
    }
}

/// `split_page` and `get_page` check their page as the kernel's
/// `VM_BUG_ON_PAGE`s would, report, and do nothing: an order that is not
/// the allocation's (30: beyond the memmap), a compound page (a slab's), a
/// page nobody holds, and something that is not a page of the machine.
#[test]
fn split_page_and_get_page_check_the_page() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let p = m.alloc_pages(GFP_KERNEL, 2).unwrap();
    let before = bad_pages(&m);
    m.split_page(p, 30);
    m.split_page(p, 1);
    assert_eq!(bad_pages(&m), before + 2);
    let obj = m.kmalloc(4096, GFP_KERNEL).unwrap();
    let slab = m.virt_to_page(obj.as_ptr()).unwrap();
    m.split_page(slab, 3);
    assert_eq!(bad_pages(&m), before + 3);
    assert!(
        m.dmesg().contains("VM_BUG_ON_PAGE(PageCompound(page))"),
        "{}",
        m.dmesg()
    );
    m.get_page(NonNull::dangling());
    let free = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    // SAFETY: our page, freed once.
    unsafe { m.__free_pages(free, 0) };
    m.get_page(free);
    assert_eq!(bad_pages(&m), before + 5);
    // The real allocation is intact: split as allocated, then freed page by page.
    m.split_page(p, 2);
    assert_eq!(bad_pages(&m), before + 5);
    let pfn = m.page_to_pfn(p);
    // SAFETY: the four order-0 pages split above are ours, each freed once; the object too.
    unsafe {
        for i in 0..4 {
            m.__free_pages(m.pfn_to_page(pfn + i).unwrap(), 0);
        }
        m.kfree(obj.as_ptr());
    }
    m.kmem_cache_shrink_all();
    assert_healthy(&m);
}
