//! The cases. Each allocates through the public kmem API, checks what the
//! kernel promises (alignment, zeroing, zones, constructed objects, reserve
//! semantics, aliasing of vmalloc and linear addresses, per-CPU sums, debug
//! reports), and frees everything it took.

use crate::{ensure, log_contains, TestResult};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use kmem::mempool::Mempool;
use kmem::page::Page;
use kmem::slab::*;
use kmem::*;

/// The report a sleeping allocation in atomic context prints.
pub const SLEEP_REPORT: &str = "BUG: sleeping function called from invalid context";

/// Create what a machine keeps for good once a subsystem is first used
/// (vmalloc's free-range records), so later page counts compare like with
/// like.
pub fn warm_up<P: Platform>(k: &Kmem<P>) {
    if let Ok(v) = k.vmalloc(3 * PAGE_SIZE) {
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { k.vfree(v.as_ptr()) };
    }
    k.vm_unmap_aliases();
}

/// Give back everything cached (slab caches shrunk, per-CPU page lists
/// drained, lazily freed vmalloc ranges purged); the free page count after.
pub fn quiesce<P: Platform>(k: &Kmem<P>) -> usize {
    k.vm_unmap_aliases();
    k.kmem_cache_shrink_all();
    k.drain_all_pages();
    k.nr_free_pages()
}

fn fill(p: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: the callers pass memory they own, `len` bytes long.
        unsafe { p.add(i).write_volatile(seed.wrapping_add((i % 251) as u8)) };
    }
}

fn check(p: *const u8, len: usize, seed: u8) -> Option<usize> {
    // SAFETY: as `fill`.
    (0..len).find(|&i| unsafe { p.add(i).read_volatile() } != seed.wrapping_add((i % 251) as u8))
}

/// memblock's tables are sorted and disjoint, page 0 is reserved, and
/// what the buddy allocator manages plus what is reserved fits in RAM.
pub fn memblock_layout<P: Platform>(k: &Kmem<P>) -> TestResult {
    let mb = k.memblock.lock(&k.platform);
    let mut mem_bytes = 0;
    for t in [&mb.memory, &mb.reserved] {
        let r = t.regions();
        ensure!(!r.is_empty(), "an empty memblock type");
        for w in r.windows(2) {
            ensure!(
                w[0].base + w[0].size <= w[1].base,
                "regions overlap or are unsorted: {:#x}+{:#x}, {:#x}",
                w[0].base,
                w[0].size,
                w[1].base
            );
        }
        ensure!(r.iter().all(|x| x.size > 0), "an empty region");
    }
    for r in mb.memory.regions() {
        mem_bytes += r.size;
    }
    ensure!(mb.is_reserved(0), "page 0 is not reserved");
    for r in mb.reserved.regions() {
        ensure!(
            r.base % 4096 == 0 || !mb.is_memory(r.base) || mb.is_reserved(r.base),
            "reserved region {:#x} inconsistent",
            r.base
        );
    }
    drop(mb);
    let managed = k.totalram_pages() as u64 * PAGE_SIZE as u64;
    ensure!(
        managed > 0 && managed <= mem_bytes,
        "{} bytes managed by the buddy allocator, {} bytes of RAM",
        managed,
        mem_bytes
    );
    Ok(())
}

/// Every order allocates a naturally aligned block that holds what is
/// written to it, and the free count drops and recovers by exactly its size.
pub fn pages_every_order<P: Platform>(k: &Kmem<P>) -> TestResult {
    let before = quiesce(k);
    let mut held: [Option<NonNull<Page>>; 11] = [None; 11];
    let mut total = 0;
    for (order, slot) in held.iter_mut().enumerate() {
        let order = order as u32;
        let Ok(page) = k.alloc_pages(GFP_KERNEL | __GFP_NOWARN, order) else {
            continue; // a small machine may have no block this large
        };
        let pfn = k.page_to_pfn(page);
        ensure!(
            pfn.is_multiple_of(1 << order),
            "order-{order} block at pfn {pfn:#x}"
        );
        let Some(va) = k.page_address(page) else {
            // SAFETY: just allocated at this order.
            unsafe { k.__free_pages(page, order) };
            continue; // highmem has no permanent mapping
        };
        fill(va.as_ptr(), PAGE_SIZE << order, order as u8);
        *slot = Some(page);
        total += 1 << order;
    }
    ensure!(held[0].is_some(), "no order-0 page");
    k.drain_all_pages();
    let during = k.nr_free_pages();
    ensure!(
        during + total == before,
        "{before} free, {total} allocated, {during} free now"
    );
    for (order, slot) in held.iter().enumerate() {
        if let Some(page) = *slot {
            let va = k.page_address(page).unwrap().as_ptr();
            if let Some(i) = check(va, PAGE_SIZE << order, order as u8) {
                return Err(crate::Failure::new(format_args!(
                    "order {order}: byte {i} changed"
                )));
            }
            // SAFETY: allocated above at this order, not used after.
            unsafe { k.__free_pages(page, order as u32) };
        }
    }
    let after = quiesce(k);
    ensure!(after == before, "{before} free pages before, {after} after");
    Ok(())
}

/// `GFP_DMA` and `GFP_DMA32` pages come from below 16 MiB and 4 GiB;
/// `__GFP_ZERO` and `get_zeroed_page` give zeroes even after a dirty free.
pub fn pages_zones_and_zeroing<P: Platform>(k: &Kmem<P>) -> TestResult {
    for (gfp, limit, name) in [
        (GFP_DMA, 16u64 << 20, "GFP_DMA"),
        (GFP_DMA32, 4u64 << 30, "GFP_DMA32"),
    ] {
        if let Ok(p) = k.alloc_pages(gfp | __GFP_NOWARN, 0) {
            let phys = (k.page_to_pfn(p) as u64) << PAGE_SHIFT;
            // SAFETY: just allocated.
            unsafe { k.__free_pages(p, 0) };
            ensure!(phys < limit, "{name} page at {phys:#x}");
        }
    }
    // Dirty a page, free it, and ask for zeroed pages until one comes back
    // zeroed — every one must be zero.
    let dirty = k.__get_free_page(GFP_KERNEL).map_err(|_| fail("no page"))?;
    fill(dirty.as_ptr(), PAGE_SIZE, 0xa5);
    // SAFETY: ours, not used after.
    unsafe { k.free_page(dirty.as_ptr() as usize) };
    for _ in 0..4 {
        let z = k
            .get_zeroed_page(GFP_KERNEL)
            .map_err(|_| fail("no zeroed page"))?;
        // SAFETY: a page we own.
        let nonzero = (0..PAGE_SIZE).find(|&i| unsafe { *z.as_ptr().add(i) } != 0);
        // SAFETY: ours.
        unsafe { k.free_page(z.as_ptr() as usize) };
        ensure!(
            nonzero.is_none(),
            "get_zeroed_page: byte {:?} is not zero",
            nonzero
        );
    }
    Ok(())
}

fn fail(msg: &str) -> crate::Failure {
    crate::Failure::new(format_args!("{msg}"))
}

const CTOR_MAGIC: u64 = 0x6b6d_656d_6374_6f72; // "kmemctor"
static CTOR_CALLS: AtomicUsize = AtomicUsize::new(0);

fn ktest_ctor(p: *mut u8) {
    CTOR_CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the slab allocator passes a whole object of the cache (96 bytes).
    unsafe {
        let w = p as *mut u64;
        for i in 0..12 {
            w.add(i).write(CTOR_MAGIC ^ i as u64);
        }
    }
}

fn constructed(p: *const u8) -> bool {
    let w = p as *const u64;
    // SAFETY: a live object of 96 bytes.
    (0..12).all(|i| unsafe { w.add(i).read() } == CTOR_MAGIC ^ i as u64)
}

/// A cache with a constructor hands out constructed objects, runs the
/// constructor once per object and not again on reuse (objects come back
/// in their constructed state), and objects are distinct and aligned.
pub fn slab_cache_with_ctor<P: Platform>(k: &Kmem<P>) -> TestResult {
    const N: usize = 300;
    let s = k
        .kmem_cache_create("ktest_ctor", 96, 32, SLAB_HWCACHE_ALIGN, Some(ktest_ctor))
        .ok_or_else(|| fail("kmem_cache_create"))?;
    let calls0 = CTOR_CALLS.load(Ordering::Relaxed);
    let mut objs = [core::ptr::null_mut::<u8>(); N];
    let mut r = Ok(());
    for (i, o) in objs.iter_mut().enumerate() {
        // SAFETY: a live cache of this machine (created and not destroyed).
        match unsafe { k.kmem_cache_alloc(s, GFP_KERNEL) } {
            Ok(p) => *o = p.as_ptr(),
            Err(_) => {
                r = Err(fail("kmem_cache_alloc failed"));
                break;
            }
        }
        if !constructed(*o) {
            r = Err(crate::Failure::new(format_args!("object {i} not constructed")));
            break;
        }
        if !(*o as usize).is_multiple_of(32) {
            r = Err(crate::Failure::new(format_args!(
                "object {i} at {:p} misaligned",
                *o
            )));
            break;
        }
    }
    if r.is_ok() {
        let mut sorted = objs;
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| (w[1] as usize) < w[0] as usize + 96) {
            r = Err(fail("two objects overlap"));
        }
    }
    let calls1 = CTOR_CALLS.load(Ordering::Relaxed);
    if r.is_ok() && calls1 - calls0 < N {
        r = Err(crate::Failure::new(format_args!(
            "{} constructor calls for {N} objects",
            calls1 - calls0
        )));
    }
    // Free and reallocate: the constructor does not run again for reused objects.
    for &o in objs.iter().filter(|o| !o.is_null()) {
        // SAFETY: allocated above from `s`, in constructed state.
        unsafe { k.kmem_cache_free(s, o) };
    }
    if r.is_ok() {
        for o in objs.iter_mut() {
            // SAFETY: a live cache of this machine (created and not destroyed).
            match unsafe { k.kmem_cache_alloc(s, GFP_KERNEL) } {
                Ok(p) => *o = p.as_ptr(),
                Err(_) => {
                    *o = core::ptr::null_mut();
                    r = Err(fail("realloc failed"));
                    break;
                }
            }
            if !constructed(*o) {
                r = Err(fail("a reused object is not in constructed state"));
            }
        }
        // An object freed and allocated again at once comes back from the
        // CPU's freelist (LIFO) as it was returned: constructed, and the
        // constructor does not run for it. (The suite never runs
        // concurrently with itself in one process, so the counter counts
        // this cache only. A thread migrated between the two calls may get
        // another object: then try again.)
        if r.is_ok() {
            let mut reused = false;
            for _ in 0..16 {
                // SAFETY: a live cache of this machine (created and not destroyed).
                let a = unsafe { k.kmem_cache_alloc(s, GFP_KERNEL) }
                    .map_err(|_| fail("alloc"))?
                    .as_ptr();
                // SAFETY: ours, constructed; freed at once.
                unsafe { k.kmem_cache_free(s, a) };
                let before = CTOR_CALLS.load(Ordering::Relaxed);
                // SAFETY: a live cache of this machine (created and not destroyed).
                let b = unsafe { k.kmem_cache_alloc(s, GFP_KERNEL) }
                    .map_err(|_| fail("alloc"))?
                    .as_ptr();
                let after = CTOR_CALLS.load(Ordering::Relaxed);
                let ok = constructed(b);
                // SAFETY: ours.
                unsafe { k.kmem_cache_free(s, b) };
                if !ok {
                    r = Err(fail("a reused object is not in constructed state"));
                    break;
                }
                if a == b {
                    if after != before {
                        r = Err(fail("the constructor ran again for a reused object"));
                    }
                    reused = true;
                    break;
                }
            }
            if r.is_ok() && !reused {
                r = Err(fail("a freed object never came back first"));
            }
        }
        for &o in objs.iter().filter(|o| !o.is_null()) {
            // SAFETY: allocated from `s` just above.
            unsafe { k.kmem_cache_free(s, o) };
        }
    }
    // SAFETY: every object was freed.
    unsafe { k.kmem_cache_destroy(s) };
    r
}

/// kmalloc of every size class and of large sizes: the usable size covers
/// the request, power-of-two sizes are naturally aligned (up to a page),
/// contents survive, kzalloc zeroes, krealloc keeps the data.
pub fn kmalloc_sizes<P: Platform>(k: &Kmem<P>) -> TestResult {
    let before = quiesce(k);
    for &size in &[
        1usize,
        8,
        16,
        24,
        32,
        48,
        64,
        96,
        128,
        192,
        256,
        512,
        1024,
        2048,
        4096,
        8192,
        65536,
        1 << 20,
    ] {
        let p = k
            .kmalloc(size, GFP_KERNEL)
            .map_err(|_| fail("kmalloc failed"))?
            .as_ptr();
        let ks = k.ksize(p);
        let align = if size.is_power_of_two() {
            size.min(PAGE_SIZE)
        } else {
            8
        };
        let ok_align = (p as usize).is_multiple_of(align);
        fill(p, size, size as u8);
        let bad = check(p, size, size as u8);
        // SAFETY: from kmalloc above.
        unsafe { k.kfree(p) };
        ensure!(ks >= size, "ksize({size}) = {ks}");
        ensure!(ok_align, "kmalloc({size}) at {p:p}");
        ensure!(bad.is_none(), "kmalloc({size}): byte {:?} changed", bad);
        let z = k
            .kzalloc(size, GFP_KERNEL)
            .map_err(|_| fail("kzalloc failed"))?
            .as_ptr();
        // SAFETY: `size` bytes we own.
        let nz = (0..size).find(|&i| unsafe { *z.add(i) } != 0);
        // SAFETY: from kzalloc above.
        unsafe { k.kfree(z) };
        ensure!(nz.is_none(), "kzalloc({size}): byte {:?} not zero", nz);
    }
    let p = k.kmalloc(40, GFP_KERNEL).map_err(|_| fail("kmalloc"))?.as_ptr();
    fill(p, 40, 7);
    // SAFETY: `p` is a live kmalloc object; on success it is replaced by `q`.
    let q = unsafe { k.krealloc(p, 5000, GFP_KERNEL) }
        .map_err(|_| fail("krealloc"))?
        .as_ptr();
    let bad = check(q, 40, 7);
    // SAFETY: from krealloc.
    unsafe { k.kfree(q) };
    ensure!(bad.is_none(), "krealloc lost byte {:?}", bad);
    let after = quiesce(k);
    ensure!(after == before, "{before} free pages before, {after} after");
    Ok(())
}

/// A pool's backing allocator that can be told to fail.
struct Backing {
    fail: AtomicBool,
    allocs: AtomicUsize,
    frees: AtomicUsize,
    machine: *const (),
    kfree: unsafe fn(*const (), *mut u8),
    kmalloc: fn(*const (), Gfp) -> *mut u8,
}

fn backing_kmalloc<P: Platform>(m: *const (), gfp: Gfp) -> *mut u8 {
    // SAFETY: `m` is the machine the test runs on, alive during the test.
    let k = unsafe { &*(m as *const Kmem<P>) };
    k.kmalloc(128, gfp).map_or(core::ptr::null_mut(), |p| p.as_ptr())
}

/// # Safety
/// `p` came from `backing_kmalloc` on machine `m`.
unsafe fn backing_kfree<P: Platform>(m: *const (), p: *mut u8) {
    // SAFETY: as above.
    unsafe { (*(m as *const Kmem<P>)).kfree(p) };
}

/// # Safety
/// `data` is a live `Backing`.
unsafe fn pool_alloc(gfp: Gfp, data: *mut ()) -> *mut u8 {
    // SAFETY: the pool's data is the test's Backing.
    let b = unsafe { &*(data as *const Backing) };
    if b.fail.load(Ordering::Relaxed) {
        return core::ptr::null_mut();
    }
    let p = (b.kmalloc)(b.machine, gfp);
    if !p.is_null() {
        b.allocs.fetch_add(1, Ordering::Relaxed);
    }
    p
}

/// # Safety
/// `data` is a live `Backing`, `p` came from `pool_alloc`.
unsafe fn pool_free(p: *mut u8, data: *mut ()) {
    // SAFETY: as above.
    let b = unsafe { &*(data as *const Backing) };
    b.frees.fetch_add(1, Ordering::Relaxed);
    // SAFETY: forwarded.
    unsafe { (b.kfree)(b.machine, p) };
}

/// With the backing allocator failing, a pool still hands out its
/// `min_nr` reserved elements (`GFP_ATOMIC`), then NULL; a free refills the
/// reserve and the next allocation gets that element; the reserve is whole
/// again after everything is freed.
pub fn mempool_under_exhaustion<P: Platform>(k: &Kmem<P>) -> TestResult {
    const MIN: usize = 4;
    let b = Backing {
        fail: AtomicBool::new(false),
        allocs: AtomicUsize::new(0),
        frees: AtomicUsize::new(0),
        machine: k as *const Kmem<P> as *const (),
        kfree: backing_kfree::<P>,
        kmalloc: backing_kmalloc::<P>,
    };
    // SAFETY: `b` outlives the pool (destroyed below); pool_alloc/pool_free
    // match.
    let pool = unsafe { k.mempool_create(MIN, pool_alloc, pool_free, &b as *const Backing as *mut ()) }
        .ok_or_else(|| fail("mempool_create"))?;
    // SAFETY: destroyed only at the end.
    let pr: &Mempool = unsafe { pool.as_ref() };
    let mut r = Ok(());
    if pr.curr_nr() != MIN || b.allocs.load(Ordering::Relaxed) != MIN {
        r = Err(crate::Failure::new(format_args!(
            "created with {} elements, {} allocations",
            pr.curr_nr(),
            b.allocs.load(Ordering::Relaxed)
        )));
    }
    b.fail.store(true, Ordering::Relaxed);
    let mut got = [core::ptr::null_mut::<u8>(); MIN + 1];
    for g in got.iter_mut() {
        *g = k.mempool_alloc(pr, GFP_ATOMIC | __GFP_NOWARN);
    }
    if r.is_ok() && got[..MIN].iter().any(|p| p.is_null()) {
        r = Err(fail("the reserve did not serve min_nr elements"));
    }
    if r.is_ok() && !got[MIN].is_null() {
        r = Err(fail("an element beyond the reserve with the allocator failing"));
    }
    if r.is_ok() && pr.curr_nr() != 0 {
        r = Err(fail("reserve not empty"));
    }
    // One free refills the reserve; the next allocation takes it.
    // SAFETY: an element of this pool.
    unsafe { k.mempool_free(got[0], pr) };
    if r.is_ok() && pr.curr_nr() != 1 {
        r = Err(fail("a free did not refill the reserve"));
    }
    got[0] = k.mempool_alloc(pr, GFP_ATOMIC | __GFP_NOWARN);
    if r.is_ok() && got[0].is_null() {
        r = Err(fail("the refilled element was not handed out"));
    }
    b.fail.store(false, Ordering::Relaxed);
    for &p in got.iter().filter(|p| !p.is_null()) {
        fill(p, 128, 3);
        // SAFETY: elements of this pool.
        unsafe { k.mempool_free(p, pr) };
    }
    if r.is_ok() && pr.curr_nr() != MIN {
        r = Err(crate::Failure::new(format_args!(
            "reserve {} after freeing all",
            pr.curr_nr()
        )));
    }
    // SAFETY: no element is outstanding.
    unsafe { k.mempool_destroy(pool.as_ptr()) };
    if r.is_ok() && b.allocs.load(Ordering::Relaxed) != b.frees.load(Ordering::Relaxed) {
        r = Err(crate::Failure::new(format_args!(
            "{} backing allocations, {} frees",
            b.allocs.load(Ordering::Relaxed),
            b.frees.load(Ordering::Relaxed)
        )));
    }
    r
}

/// vmalloc memory is the same memory through both mappings: what is written
/// through the vmalloc address reads back through each page's linear-map
/// address and the other way round; vfree gives every page back.
pub fn vmalloc_aliasing<P: Platform>(k: &Kmem<P>) -> TestResult {
    warm_up(k);
    let before = quiesce(k);
    let size = 300 * 1024 + 123;
    let v = k.vmalloc(size).map_err(|_| fail("vmalloc"))?.as_ptr();
    let mut r = Ok(());
    if !k.is_vmalloc_addr(v) {
        r = Err(fail("not a vmalloc address"));
    }
    fill(v, size, 0x31);
    let mut prev_pfn = usize::MAX;
    let mut contiguous = true;
    for off in (0..size).step_by(PAGE_SIZE) {
        // SAFETY: inside the area.
        let Some(page) = k.vmalloc_to_page(unsafe { v.add(off) }) else {
            r = Err(crate::Failure::new(format_args!("no page at offset {off}")));
            break;
        };
        let pfn = k.page_to_pfn(page);
        contiguous &= prev_pfn == usize::MAX || pfn == prev_pfn + 1;
        prev_pfn = pfn;
        let Some(lin) = k.page_address(page) else { continue };
        let n = PAGE_SIZE.min(size - off);
        for i in 0..n {
            let want = 0x31u8.wrapping_add(((off + i) % 251) as u8);
            // SAFETY: the page's linear address, `n` bytes of it.
            if unsafe { lin.as_ptr().add(i).read_volatile() } != want {
                r = Err(crate::Failure::new(format_args!(
                    "linear alias differs at {}",
                    off + i
                )));
                break;
            }
        }
        // Write through the linear map, read through vmalloc.
        // SAFETY: both addresses name the same byte of our area.
        unsafe {
            lin.as_ptr().write_volatile(0xee);
            if v.add(off).read_volatile() != 0xee {
                r = Err(crate::Failure::new(format_args!(
                    "vmalloc alias differs at {off}"
                )));
            }
        }
        if r.is_err() {
            break;
        }
    }
    let _ = contiguous; // pages need not be contiguous; nothing to assert
                        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { k.vfree(v) };
    let after = quiesce(k);
    r?;
    ensure!(after == before, "{before} free pages before, {after} after");
    Ok(())
}

/// vmap maps the caller's pages in order; vunmap leaves them to the caller.
pub fn vmap_pages<P: Platform>(k: &Kmem<P>) -> TestResult {
    let mut pages: [Option<NonNull<Page>>; 4] = [None; 4];
    for p in pages.iter_mut() {
        *p = k.alloc_page(GFP_KERNEL).ok();
    }
    let mut r = Ok(());
    if pages.iter().any(|p| p.is_none()) {
        r = Err(fail("alloc_page"));
    } else {
        let list = [
            pages[0].unwrap(),
            pages[1].unwrap(),
            pages[2].unwrap(),
            pages[3].unwrap(),
        ];
        match k.vmap(&list) {
            Ok(v) => {
                for (i, pg) in list.iter().enumerate() {
                    // SAFETY: 4 mapped pages.
                    unsafe { v.as_ptr().add(i * PAGE_SIZE + 17).write_volatile(0x40 + i as u8) };
                    if let Some(lin) = k.page_address(*pg) {
                        // SAFETY: the page's linear address.
                        if unsafe { lin.as_ptr().add(17).read_volatile() } != 0x40 + i as u8 {
                            r = Err(crate::Failure::new(format_args!(
                                "vmap page {i} is not the caller's page"
                            )));
                        }
                    }
                }
                // SAFETY: our mapping, unused afterwards.
                unsafe { k.vunmap(v.as_ptr()) };
            }
            Err(_) => r = Err(fail("vmap")),
        }
    }
    for p in pages.iter().flatten() {
        // SAFETY: allocated above, unmapped.
        unsafe { k.__free_pages(*p, 0) };
    }
    r
}

/// Per-CPU counters: every CPU's slot is separate, the sum is the sum of
/// the slots, and `this_cpu_add` changes the caller's slot only.
pub fn percpu_sums<P: Platform>(k: &Kmem<P>) -> TestResult {
    let c = k.alloc_percpu::<u64>().map_err(|_| fail("alloc_percpu"))?;
    let n = k.nr_cpu_ids();
    for cpu in 0..n {
        ensure!(c.read(cpu) == 0, "fresh per-CPU slot {cpu} not zero");
        c.write(cpu, cpu as u64 + 1);
    }
    let want = (n * (n + 1) / 2) as u64;
    ensure!(c.sum() == want, "sum {} instead of {want}", c.sum());
    let cpu = k.get_cpu();
    c.this_cpu_add(1000);
    let mine = c.read(cpu);
    k.put_cpu();
    ensure!(
        mine == cpu as u64 + 1001,
        "this_cpu_add went elsewhere: slot {cpu} = {mine}"
    );
    ensure!(c.sum() == want + 1000, "sum {} after this_cpu_add", c.sum());
    Ok(())
}

/// A debug cache catches a red-zone overwrite (reported and repaired on
/// free) and a double free (reported, not done), and validates clean after.
pub fn slub_debug_detection<P: Platform>(k: &Kmem<P>) -> TestResult {
    let flags = SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER;
    let s = k
        .kmem_cache_create("ktest_debug", 60, 0, flags, None)
        .ok_or_else(|| fail("kmem_cache_create"))?;
    let since = k.dmesg_len();
    let errors0 = k.slab.errors.load(Ordering::Relaxed);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { k.kmem_cache_alloc(s, GFP_KERNEL) }
        .map_err(|_| fail("alloc"))?
        .as_ptr();
    // Overwrite the first byte of the right red zone, just past the object.
    // SAFETY: the red zone is part of the slab page, outside the object:
    // the write is the misuse under test, not an out-of-bounds access.
    unsafe { p.add(60).write_volatile(0) };
    // SAFETY: `p` is a live object of `s`.
    unsafe { k.kmem_cache_free(s, p) };
    let redzone = log_contains(k, since, "Right Redzone overwritten");
    let errors1 = k.slab.errors.load(Ordering::Relaxed);
    // As the kernel, the corrupted object was not freed ("Object at ... not
    // freed"); its red zone was restored, so freeing it now works.
    let kept = k.cache_counts(unsafe_cache(s)).0;
    // SAFETY: `p` is still allocated (the failed free did not free it).
    unsafe { k.kmem_cache_free(s, p) };
    let left = k.cache_counts(unsafe_cache(s)).0;
    // SAFETY: a live cache of this machine (created and not destroyed).
    let q = unsafe { k.kmem_cache_alloc(s, GFP_KERNEL) }
        .map_err(|_| fail("alloc"))?
        .as_ptr();
    // SAFETY: a live object, freed once.
    unsafe { k.kmem_cache_free(s, q) };
    // SAFETY: the double free under test; the debug checks refuse it.
    unsafe { k.kmem_cache_free(s, q) };
    let dfree = log_contains(k, since, "Object already free");
    let errors2 = k.slab.errors.load(Ordering::Relaxed);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let invalid = unsafe { k.kmem_cache_validate(s) };
    // SAFETY: no live objects.
    unsafe { k.kmem_cache_destroy(s) };
    ensure!(redzone, "no \"Right Redzone overwritten\" report");
    ensure!(errors1 > errors0, "the red-zone overwrite was not counted");
    ensure!(
        kept == 1 && left == 0,
        "{kept} objects after the refused free, {left} after the second"
    );
    ensure!(dfree, "no \"Object already free\" report");
    ensure!(errors2 > errors1, "the double free was not counted");
    ensure!(invalid == 0, "{invalid} errors on validation after repair");
    Ok(())
}

fn unsafe_cache(s: NonNull<KmemCache>) -> &'static KmemCache {
    // SAFETY: the callers look at caches they have not destroyed yet.
    unsafe { &*s.as_ptr() }
}

/// Whether this process already reported the sleeping call site (the
/// report is printed once per site, process-wide, as `WARN_ONCE`).
static SLEEP_SITE_REPORTED: AtomicBool = AtomicBool::new(false);

/// A sleeping allocation in (simulated) hardirq context prints the kernel's
/// "sleeping function called from invalid context" report instead of
/// sleeping, and returns.
pub fn sleeping_alloc_in_atomic_reports<P: Platform>(k: &Kmem<P>) -> TestResult {
    let since = k.dmesg_len();
    let (r, in_irq) = k.run_in_hardirq(|| (k.kmalloc(64, GFP_KERNEL), k.in_hardirq()));
    if let Ok(p) = r {
        // SAFETY: from kmalloc.
        unsafe { k.kfree(p.as_ptr()) };
    }
    ensure!(in_irq, "run_in_hardirq is not hardirq context");
    ensure!(
        k.preempt_count() == 0,
        "preempt_count {:#x} after the handler",
        k.preempt_count()
    );
    let first = !SLEEP_SITE_REPORTED.swap(true, Ordering::Relaxed);
    let reported = log_contains(k, since, SLEEP_REPORT);
    if first {
        ensure!(reported, "no \"{}\" report", SLEEP_REPORT);
    }
    Ok(())
}
