//! Helpers shared by the page allocator's integration tests.
//!
//! Every test boots its own machine (`Machine::boot`), so tests are
//! independent and may run in parallel.
#![allow(dead_code)]

pub mod forking;

use core::ptr::NonNull;
use kmem::page::{Page, MAX_PAGE_ORDER, PAGE_SIZE};
use kmem::page_alloc::zone::Zone;
use kmem::slab::KmemCache;
use kmem::*;
use kmem_hosted::Machine;
use std::sync::atomic::Ordering;

/// An allocation we hold: head page and order.
pub type Held = Vec<(NonNull<Page>, u32)>;

/// A page pointer that may cross threads (the machine is `Sync`; the page is
/// owned by whoever holds this value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SendPage(pub NonNull<Page>);
// SAFETY: a page descriptor belongs to the machine, which is shared between
// threads; ownership of the allocation moves with the value.
unsafe impl Send for SendPage {}

/// Boot a machine or fail the test with the reason.
pub fn boot(cmdline: &str) -> Machine {
    Machine::boot(cmdline).unwrap_or_else(|e| panic!("boot {cmdline:?}: {e}"))
}

/// A command line with one CPU per host CPU (at least 2), so rseq mode is
/// possible (a machine with fewer CPUs than the host uses the CAS paths).
pub fn rseq_cmdline(extra: &str) -> String {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    // SAFETY: sysconf has no preconditions.
    let host = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as usize;
    format!("quiet mem=256M nr_cpus={} {extra}", cpus.max(host))
}

/// Run the test `name` of this test binary again in a child process with
/// glibc's rseq registration turned off (`GLIBC_TUNABLES`) and `marker` set
/// in its environment (the child test runs only when it finds it), and
/// fail unless it passed.
pub fn run_without_rseq(name: &str, marker: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1"])
        .env("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
        .env(marker, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pin the calling thread to host CPU `cpu` alone (for tests whose
/// expectations hold only while every step runs on one CPU: an object freed
/// goes to this CPU's freelist, a page to this CPU's list) until the guard
/// is dropped, which gives the thread its previous CPUs back (with one test
/// thread, libtest runs every test on the same thread).
#[must_use = "the thread is unpinned when the guard is dropped"]
pub fn pin_to(cpu: usize) -> Pinned {
    assert!(cpu < libc::CPU_SETSIZE as usize);
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut old: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `old` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, core::mem::size_of_val(&old), &mut old) };
    assert_eq!(r, 0, "sched_getaffinity: {}", std::io::Error::last_os_error());
    // SAFETY: as above.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set_affinity(&set);
    Pinned(old)
}

/// Pin the calling thread to the host CPU it is running on (see `pin_to`).
pub fn pin_to_current_cpu() -> Pinned {
    // SAFETY: no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(cpu >= 0, "sched_getcpu: {}", std::io::Error::last_os_error());
    pin_to(cpu as usize)
}

/// The CPUs a pinned thread had before; restored on drop.
pub struct Pinned(libc::cpu_set_t);

impl Drop for Pinned {
    fn drop(&mut self) {
        set_affinity(&self.0);
    }
}

fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, core::mem::size_of_val(set), set) };
    assert_eq!(r, 0, "sched_setaffinity: {}", std::io::Error::last_os_error());
}

/// The pfn of a page.
pub fn pfn(m: &Machine, p: NonNull<Page>) -> usize {
    m.page_to_pfn(p)
}

/// The zone a pfn belongs to.
pub fn zone_of(m: &Machine, pfn: usize) -> &Zone {
    m.page_zone_by_pfn(pfn)
        .unwrap_or_else(|| panic!("pfn {pfn:#x} in no zone"))
}

/// The zone of a type on node 0.
pub fn zone(m: &Machine, zt: ZoneType) -> &Zone {
    zone_on(m, 0, zt)
}

/// The zone of a type on a node.
pub fn zone_on(m: &Machine, nid: usize, zt: ZoneType) -> &Zone {
    &m.node_data(nid).expect("node").node_zones[zt as usize]
}

/// `zone->lowmem_reserve[idx]`.
pub fn reserve(z: &Zone, idx: ZoneType) -> usize {
    z.lowmem_reserve[idx as usize].load(Ordering::Relaxed)
}

/// Pages on the per-CPU lists of one zone.
pub fn zone_pcp_count(m: &Machine, z: &Zone) -> usize {
    (0..m.nr_cpu_ids())
        // SAFETY: cpu < nr_cpu_ids.
        .map(|cpu| unsafe { z.pcp(cpu) }.lock.lock(&m.platform).count + m.pcp_hot_counts(z, cpu).0)
        .sum()
}

/// Largest `high` of one zone's per-CPU lists.
pub fn zone_pcp_high(m: &Machine, z: &Zone) -> usize {
    (0..m.nr_cpu_ids())
        // SAFETY: cpu < nr_cpu_ids.
        .map(|cpu| unsafe { z.pcp(cpu) }.lock.lock(&m.platform).high_max)
        .max()
        .unwrap_or(0)
}

/// `nr_free_pages + pcp pages + live pages == totalram_pages` (less the
/// pages the slab layer took at boot).
pub fn assert_accounting(m: &Machine, live_pages: usize) {
    let free = m.nr_free_pages();
    let pcp = m.nr_pcp_pages();
    assert_eq!(
        free + pcp + live_pages,
        m.totalram_pages() - m.boot_allocated_pages(),
        "free {free} + pcp {pcp} + live {live_pages} != totalram {}",
        m.totalram_pages()
    );
}

/// Drain the per-CPU lists and check that the buddy lists hold exactly the
/// blocks they held after boot, and that every managed page is free.
pub fn assert_boot_state(m: &Machine) {
    m.drain_all_pages();
    let mut diff = String::new();
    assert!(
        m.buddy_matches_boot_state(&mut diff),
        "buddy lists differ from boot:\n{diff}\n--- dmesg ---\n{}",
        m.dmesg()
    );
    assert_eq!(m.nr_pcp_pages(), 0);
    assert_eq!(m.nr_free_pages(), m.totalram_pages() - m.boot_allocated_pages());
}

/// Allocate with `gfp` (plus `__GFP_NOWARN|__GFP_NORETRY`, so nothing waits),
/// largest orders first, until nothing more comes. The pages are returned.
pub fn exhaust(m: &Machine, gfp: Gfp) -> Held {
    let gfp = gfp | __GFP_NOWARN | __GFP_NORETRY;
    let mut held = Vec::new();
    for order in (0..=MAX_PAGE_ORDER).rev() {
        while let Ok(p) = m.alloc_pages(gfp, order) {
            held.push((p, order));
        }
    }
    held
}

/// Take every page of the machine (watermarks ignored), as order-0 pages.
pub fn exhaust_all_order0(m: &Machine) -> Vec<NonNull<Page>> {
    let held = exhaust(m, GFP_HIGHUSER | __GFP_MEMALLOC);
    let mut pages = Vec::new();
    for (p, order) in held {
        split(m, p, order, &mut pages);
    }
    m.drain_all_pages();
    assert_eq!(
        m.nr_free_pages(),
        0,
        "memory left after exhausting with __GFP_MEMALLOC"
    );
    pages
}

/// `split_page` an allocation into order-0 pages, appended to `out`.
pub fn split(m: &Machine, p: NonNull<Page>, order: u32, out: &mut Vec<NonNull<Page>>) {
    m.split_page(p, order);
    let base = pfn(m, p);
    for i in 0..(1usize << order) {
        out.push(m.pfn_to_page(base + i).unwrap());
    }
}

/// Free everything held.
pub fn free_all(m: &Machine, held: Held) {
    for (p, order) in held {
        // SAFETY: we allocated it with this order and drop our only reference.
        unsafe { m.__free_pages(p, order) };
    }
}

/// Free order-0 pages.
pub fn free_all0(m: &Machine, pages: Vec<NonNull<Page>>) {
    for p in pages {
        // SAFETY: an order-0 allocation we own.
        unsafe { m.__free_pages(p, 0) };
    }
}

/// The memory of a lowmem page.
pub fn bytes(m: &Machine, p: NonNull<Page>, order: u32) -> &'static mut [u8] {
    let a = m.page_address(p).expect("lowmem page has an address");
    // SAFETY: the allocation spans PAGE_SIZE << order bytes of the linear map
    // and is owned by the caller until freed.
    unsafe { core::slice::from_raw_parts_mut(a.as_ptr(), PAGE_SIZE << order) }
}

/// Number of pages in the held allocations.
pub fn held_pages(held: &Held) -> usize {
    held.iter().map(|&(_, o)| 1usize << o).sum()
}

/// Poll `cond` (yielding) until it holds; panics after a generous deadline so
/// a broken test does not hang the suite. Never used to assert speed.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Everything the hog holds: every free page of the machine and every free
/// object of the given caches.
pub struct Hog {
    pub pages: Held,
    pub objs: Vec<(NonNull<KmemCache>, *mut u8)>,
}

/// Exhaust the machine: first flush the caches' per-CPU slabs back to their
/// nodes (so no CPU keeps free objects), then take every page (GFP_KERNEL
/// until failure, then what GFP_ATOMIC may still reach, then the rest of
/// the reserves), then every free object left in the caches' partial slabs.
pub fn hog(m: &Machine, caches: &[NonNull<KmemCache>]) -> Hog {
    for &c in caches {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_shrink(c) };
    }
    let mut pages = exhaust(m, GFP_KERNEL);
    pages.extend(exhaust(m, GFP_ATOMIC));
    pages.extend(exhaust(m, GFP_KERNEL | __GFP_MEMALLOC));
    m.drain_all_pages();
    pages.extend(exhaust(m, GFP_ATOMIC | __GFP_MEMALLOC));
    assert_eq!(m.nr_free_pages(), 0, "the hog left free pages");
    let mut objs = Vec::new();
    for &c in caches {
        // SAFETY: a live cache of this machine (created and not destroyed).
        while let Ok(o) = unsafe { m.kmem_cache_alloc(c, GFP_ATOMIC | __GFP_NOWARN) } {
            objs.push((c, o.as_ptr()));
        }
    }
    Hog { pages, objs }
}

pub fn unhog(m: &Machine, h: Hog) {
    for (c, o) in h.objs {
        // SAFETY: our object of that cache.
        unsafe { m.kmem_cache_free(c, o) };
    }
    free_all(m, h.pages);
}
