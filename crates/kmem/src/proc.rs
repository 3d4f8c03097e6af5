//! The kernel's statistics files, byte for byte in the kernel's format.
//!
//! | file | kernel source | what it shows | where our numbers come from |
//! |------|---------------|---------------|-----------------------------|
//! | `/proc/buddyinfo` | `mm/vmstat.c` `frag_show_print` | free *blocks* per order, per populated zone | `free_area[order].nr_free`, read under `zone->lock` |
//! | `/proc/pagetypeinfo` | `pagetypeinfo_showfree_print`, `pagetypeinfo_showblockcount_print` | free blocks per order split by migrate type; then how many pageblocks carry each migrate type | the length of each `free_area[order].free_list[mt]` (capped at 100000 like the kernel, printed `>100000`); the pageblock table, walked over the zone span one pageblock at a time, skipping blocks of other zones and 128 MiB sections without RAM (the kernel's `pfn_to_online_page`) |
//! | `/proc/zoneinfo` | `zoneinfo_show_print` | every zone the kernel configuration has, empty ones in short form: watermarks, spans, `lowmem_reserve` ("protection"), zone counters, each CPU's pcp list, the vmstat threshold | the `Zone` fields; `nr_free_pages_blocks` is the free pages in blocks of pageblock order or more (not on Isolate lists); `numa_hit`/`numa_local` count allocations served by the zone (pcp + buddy); counters for things we do not have (LRU, page cache, mlock, CMA) are 0 |
//! | `/proc/meminfo` | `fs/proc/meminfo.c` `meminfo_proc_show` | system-wide memory in kB | `totalram_pages`, `NR_FREE_PAGES`, `si_mem_available`, the overcommit limit; slab, vmalloc and percpu through the placeholder helpers below (0 until those layers exist); the direct map is reported as 4 KiB mappings of RAM |
//! | `/proc/vmstat` | `vmstat_start`/`vmstat_show` | counters as `"%s %lu\n"` | only the counters we keep (see [`vmstat_show`]) |
//! | `memblock/memory`, `memblock/reserved` | `mm/memblock.c` `memblock_debug_show` (debugfs) | the boot allocator's regions | `Memblock::debugfs_show` |
//!
//! Zone layouts: the kernel prints every zone its configuration has, in
//! index order. An x86-64 kernel has DMA, DMA32, Normal, Movable, Device; a
//! machine with highmem lists DMA, Normal, HighMem, Movable, Device (a real
//! i386 kernel has no ZONE_DEVICE; we keep five zones in both layouts so the
//! protection arrays have the same length). Our zone array is indexed by [`ZoneType`] and has no ZONE_DEVICE: Device is
//! printed as the all-zero stanza the kernel shows for a machine without
//! device memory, and its protection column equals the one before it (it
//! adds no managed pages).
//!
//! Counts are copied under the zone or pcp lock and printed after the lock is
//! dropped, so a writer that allocates cannot deadlock against the allocator.

use crate::gfp::{MigrateType, ZoneType, MAX_NR_ZONES, MIGRATE_TYPES};
use crate::list::ListHead;
use crate::machine::{Kmem, PgData};
use crate::memblock::Which;
use crate::page::{NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, PAGE_SHIFT, PAGE_SIZE};
use crate::page_alloc::zone::{Zone, WMARK_HIGH, WMARK_LOW, WMARK_MIN, WMARK_PROMO};
use crate::platform::Platform;
use crate::slab::{KmemCache, OrderObjects, CACHE_NAME_LEN, SLAB_RECLAIM_ACCOUNT};
use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

/// Files [`proc_show`] knows.
pub const PROC_FILES: &[&str] = &[
    "slabinfo",
    "buddyinfo",
    "pagetypeinfo",
    "zoneinfo",
    "meminfo",
    "vmstat",
    "memblock/memory",
    "memblock/reserved",
    "percpu_stats",
    "vmallocinfo",
    "iomem",
];

/// Write the text of `/proc/<name>` (or debugfs `memblock/...`); `Err` for an unknown name.
pub fn proc_show<P: Platform>(k: &Kmem<P>, name: &str, out: &mut dyn Write) -> fmt::Result {
    match name {
        "slabinfo" => slabinfo_show(k, out),
        "buddyinfo" => buddyinfo_show(k, out),
        "pagetypeinfo" => pagetypeinfo_show(k, out),
        "zoneinfo" => zoneinfo_show(k, out),
        "meminfo" => meminfo_show(k, out),
        "vmstat" => vmstat_show(k, out),
        "memblock/memory" => k.memblock.lock(&k.platform).debugfs_show(Which::Memory, out),
        "memblock/reserved" => k.memblock.lock(&k.platform).debugfs_show(Which::Reserved, out),
        "percpu_stats" => k.percpu_stats_show(out),
        "vmallocinfo" => k.vmallocinfo_show(out),
        "iomem" => k.iomem_show(out),
        _ => Err(fmt::Error),
    }
}

// ---- zone layout ------------------------------------------------------------

/// Zones per node in the layouts we print (`MAX_NR_ZONES` of the kernel config).
const KERNEL_NR_ZONES: usize = 5;

/// A zone of the kernel's configuration: one of ours, or ZONE_DEVICE.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KZone {
    Ours(ZoneType),
    Device,
}

impl KZone {
    fn name(self) -> &'static str {
        match self {
            KZone::Ours(zt) => zt.name(),
            KZone::Device => "Device",
        }
    }

    /// Index into our `lowmem_reserve[]` for this zone's protection column.
    /// ZONE_DEVICE manages no pages, so its column equals the last of ours.
    fn reserve_index(self) -> usize {
        match self {
            KZone::Ours(zt) => zt as usize,
            KZone::Device => MAX_NR_ZONES - 1,
        }
    }

    /// Suffix in the vmstat event names (`pgalloc_dma32`).
    fn vmstat_suffix(self) -> &'static str {
        match self {
            KZone::Ours(ZoneType::Dma) => "dma",
            KZone::Ours(ZoneType::Dma32) => "dma32",
            KZone::Ours(ZoneType::Normal) => "normal",
            KZone::Ours(ZoneType::HighMem) => "high",
            KZone::Ours(ZoneType::Movable) => "movable",
            KZone::Device => "device",
        }
    }
}

/// The zones the kernel configuration of this machine lists, in index order.
fn zone_layout<P: Platform>(k: &Kmem<P>) -> [KZone; KERNEL_NR_ZONES] {
    if k.highmem {
        [
            KZone::Ours(ZoneType::Dma),
            KZone::Ours(ZoneType::Normal),
            KZone::Ours(ZoneType::HighMem),
            KZone::Ours(ZoneType::Movable),
            KZone::Device,
        ]
    } else {
        [
            KZone::Ours(ZoneType::Dma),
            KZone::Ours(ZoneType::Dma32),
            KZone::Ours(ZoneType::Normal),
            KZone::Ours(ZoneType::Movable),
            KZone::Device,
        ]
    }
}

/// The nodes of the machine.
fn nodes<P: Platform>(k: &Kmem<P>) -> impl Iterator<Item = &PgData> + '_ {
    k.nodes()
}

/// Populated zones of a node, lowest first (`walk_zones_in_node(.., true, ..)`).
fn populated_zones(pg: &PgData) -> impl Iterator<Item = &Zone> + '_ {
    pg.node_zones.iter().filter(|z| z.is_populated())
}

// ---- snapshots taken under locks ---------------------------------------------

/// `free_area[o].nr_free` for every order, under the zone lock.
fn free_area_snapshot<P: Platform>(k: &Kmem<P>, zone: &Zone) -> [usize; NR_PAGE_ORDERS] {
    let mut counts = [0; NR_PAGE_ORDERS];
    let f = zone.lock.lock(&k.platform);
    for (o, c) in counts.iter_mut().enumerate() {
        *c = f.free_area[o].nr_free;
    }
    counts
}

/// The kernel stops counting a free list at this length (`pagetypeinfo_showfree_print`).
const FREELIST_COUNT_CAP: usize = 100_000;

/// Length of a free list, capped at `FREELIST_COUNT_CAP`; `true` when capped.
///
/// # Safety
/// `head` is an initialised list head of a zone whose lock the caller holds.
unsafe fn count_capped(head: *const ListHead) -> (usize, bool) {
    let mut n = 0;
    // SAFETY: the list is initialised and circular; the zone lock keeps it stable.
    let mut l = unsafe { (*head).next } as *const ListHead;
    while !core::ptr::eq(l, head) {
        n += 1;
        if n >= FREELIST_COUNT_CAP {
            return (n, true);
        }
        // SAFETY: as above; `l` is an entry of the list.
        l = unsafe { (*l).next };
    }
    (n, false)
}

/// Free blocks per migrate type and order: (count, capped).
type TypeCounts = [[(usize, bool); NR_PAGE_ORDERS]; MIGRATE_TYPES];

fn free_by_type_snapshot<P: Platform>(k: &Kmem<P>, zone: &Zone) -> TypeCounts {
    let mut c = [[(0, false); NR_PAGE_ORDERS]; MIGRATE_TYPES];
    let f = zone.lock.lock(&k.platform);
    for (mt, row) in c.iter_mut().enumerate() {
        for (o, cell) in row.iter_mut().enumerate() {
            // SAFETY: the list belongs to this zone and we hold its lock.
            let (n, capped) = unsafe { count_capped(&f.free_area[o].free_list[mt]) };
            // Untouched max-order blocks stand behind their list.
            let n = (n + f.untouched_blocks(o, mt)).min(FREELIST_COUNT_CAP);
            *cell = (n, capped || n == FREELIST_COUNT_CAP);
        }
    }
    c
}

/// `NR_FREE_PAGES_BLOCKS`: free pages in blocks of pageblock order or larger,
/// not counting isolated ones (the kernel accounts it when such a block is put
/// on a list other than Isolate).
fn free_pages_blocks<P: Platform>(k: &Kmem<P>, zone: &Zone) -> usize {
    let f = zone.lock.lock(&k.platform);
    let mut pages = 0;
    for o in PAGEBLOCK_ORDER as usize..NR_PAGE_ORDERS {
        let isolated = f.count_list(o, MigrateType::Isolate as usize);
        pages += (f.free_area[o].nr_free - isolated.min(f.free_area[o].nr_free)) << o;
    }
    pages
}

/// One CPU's pcp list state, copied under its lock.
#[derive(Clone, Copy, Default)]
struct PcpSnap {
    count: usize,
    high: usize,
    batch: usize,
    high_min: usize,
    high_max: usize,
    pgalloc: usize,
    numa_hit: usize,
    pgfree: usize,
}

fn pcp_snapshot<P: Platform>(k: &Kmem<P>, zone: &Zone, cpu: usize) -> PcpSnap {
    if zone.pcp.is_null() || cpu >= k.nr_cpus {
        return PcpSnap::default();
    }
    // SAFETY: cpu < nr_cpus and the zone is populated, so its pcp array exists.
    let pcp = unsafe { zone.pcp(cpu) };
    let g = pcp.lock.lock(&k.platform);
    // Pages in the CPU's hot arrays are pcp pages too (`pcp_hot.rs`).
    let (nr, pops, pushes) = k.pcp_hot_counts(zone, cpu);
    PcpSnap {
        count: g.count + nr,
        high: g.high,
        batch: g.batch,
        high_min: g.high_min,
        high_max: g.high_max,
        pgalloc: g.pgalloc + pops,
        numa_hit: g.numa_hit + pops,
        pgfree: g.pgfree + pushes,
    }
}

/// Pages a zone's allocations and frees moved (pcp lists plus the buddy
/// path: an order-n block counts 2^n, as `PGALLOC` and `PGFREE` do), and its
/// allocations (`numa_hit`: one per call).
struct ZoneEvents {
    allocs: usize,
    numa_hit: usize,
    frees: usize,
    pcp_count: usize,
}

fn zone_events<P: Platform>(k: &Kmem<P>, zone: &Zone) -> ZoneEvents {
    let mut e = ZoneEvents {
        allocs: zone.stats.pgalloc.load(Ordering::Relaxed),
        numa_hit: zone.stats.numa_hit.load(Ordering::Relaxed),
        frees: zone.stats.pgfree.load(Ordering::Relaxed),
        pcp_count: 0,
    };
    if zone.is_populated() {
        for cpu in 0..k.nr_cpus {
            let s = pcp_snapshot(k, zone, cpu);
            e.allocs += s.pgalloc;
            e.numa_hit += s.numa_hit;
            e.frees += s.pgfree;
            e.pcp_count += s.count;
        }
    }
    e
}

/// `fls`: position of the highest set bit, 1-based; 0 for 0.
fn fls(x: usize) -> usize {
    (usize::BITS - x.leading_zeros()) as usize
}

/// `calculate_normal_threshold`: the per-CPU vmstat drift allowed for a zone.
pub fn calculate_normal_threshold(managed_pages: usize, online_cpus: usize) -> usize {
    // Memory in 128 MiB units.
    let mem = managed_pages >> (27 - PAGE_SHIFT);
    (2 * fls(online_cpus) * (1 + fls(mem))).min(125)
}

// ---- slab pages ---------------------------------------------------------------------

/// Pages held by slab caches.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct SlabPages {
    /// `NR_SLAB_RECLAIMABLE_B` in pages (caches with `SLAB_RECLAIM_ACCOUNT`).
    pub reclaimable: usize,
    /// `NR_SLAB_UNRECLAIMABLE_B` in pages (other caches and large kmalloc pages).
    pub unreclaimable: usize,
}

/// Pages of the slabs one node of a cache holds.
///
/// A slab has either the preferred order (`s.oo`) or, when that allocation
/// failed, the smallest order (`s.min`); the node keeps only the number of
/// slabs and the objects in them. Those two counts determine how many slabs
/// of each kind there are, exactly: with `a` slabs of `oo.objects` objects
/// and `nr - a` of `min.objects`, `total = a * oo.objects + (nr - a) *
/// min.objects`, and the two object counts differ whenever the orders do.
/// The counters are read without a lock, so a slab being added or removed
/// concurrently can make them disagree for a moment: `a` is clamped to
/// `0..=nr`, which keeps the result within one slab of the truth.
pub fn cache_node_pages(s: &KmemCache, nid: usize) -> usize {
    let n = s.node(nid);
    slab_pages_of_counts(
        n.nr_slabs.load(Ordering::Relaxed),
        n.total_objects.load(Ordering::Relaxed),
        s.oo,
        s.min,
    )
}

/// Pages of `nr` slabs holding `total` objects, each slab of order and
/// objects `oo` or `min` (see [`cache_node_pages`]).
pub fn slab_pages_of_counts(nr: usize, total: usize, oo: OrderObjects, min: OrderObjects) -> usize {
    if oo.order == min.order || oo.objects == min.objects {
        return nr << oo.order;
    }
    let (big, small) = if oo.objects > min.objects {
        (oo, min)
    } else {
        (min, oo)
    };
    let (bo, so) = (big.objects as usize, small.objects as usize);
    let of_big = (total.saturating_sub(nr * so) / (bo - so)).min(nr);
    (of_big << big.order) + ((nr - of_big) << small.order)
}

/// Pages of large kmalloc allocations (above `KMALLOC_MAX_CACHE_SIZE`, straight
/// from the page allocator), counted in `SUnreclaim` like the kernel's.
pub fn large_kmalloc_pages<P: Platform>(k: &Kmem<P>) -> usize {
    k.slab.large_kmalloc_pages.load(Ordering::Relaxed)
}

/// Slab pages of `node` (or all nodes for `None`), as the kernel's
/// `NR_SLAB_RECLAIMABLE_B` / `NR_SLAB_UNRECLAIMABLE_B` count them: the pages
/// of every slab of every cache, filed under reclaimable for caches with
/// `SLAB_RECLAIM_ACCOUNT`, plus the pages of large kmalloc allocations
/// (unreclaimable). The large-kmalloc counter is machine-wide, so on a
/// machine with several nodes it is filed under node 0.
pub fn slab_pages<P: Platform>(k: &Kmem<P>, node: Option<usize>) -> SlabPages {
    let mut sp = SlabPages::default();
    let nodes = match node {
        Some(n) if n < k.nr_nodes => n..n + 1,
        Some(_) => 0..0,
        None => 0..k.nr_nodes,
    };
    k.for_each_cache(|s| {
        let pages: usize = nodes.clone().map(|nid| cache_node_pages(s, nid)).sum();
        if s.flags.intersects(SLAB_RECLAIM_ACCOUNT) {
            sp.reclaimable += pages;
        } else {
            sp.unreclaimable += pages;
        }
    });
    if nodes.contains(&0) {
        sp.unreclaimable += large_kmalloc_pages(k);
    }
    sp
}

// ---- placeholders for layers that come later ------------------------------------

/// vmalloc address space and use, in pages: (`VMALLOC_TOTAL`, pages backing
/// vmalloc areas): the window's size and `nr_vmalloc_pages`.
pub fn vmalloc_pages<P: Platform>(k: &Kmem<P>) -> (usize, usize) {
    (k.vmalloc_total() >> crate::page::PAGE_SHIFT, k.vmalloc_nr_pages())
}

/// Populated percpu pages (`pcpu_nr_pages`): every chunk's units and
/// metadata page.
pub fn percpu_pages<P: Platform>(k: &Kmem<P>) -> usize {
    k.pcpu_nr_pages()
}

// ---- /proc/slabinfo -------------------------------------------------------------

/// One cache's numbers in `/proc/slabinfo` (the kernel's `struct slabinfo`
/// with the name and `s->size` that `cache_show` prints beside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabInfo {
    name: [u8; CACHE_NAME_LEN],
    name_len: usize,
    /// Live objects: all objects less the free ones on every list, cpu
    /// freelists included (exact when nothing allocates concurrently; the
    /// kernel counts free objects of cpu slabs as active).
    pub active_objs: usize,
    /// Objects in all slabs of all nodes.
    pub num_objs: usize,
    /// `s->size`: the stride, metadata included (not `object_size`).
    pub objsize: usize,
    /// Objects in a slab of the preferred order (`oo_objects(s->oo)`).
    pub objects_per_slab: usize,
    /// Pages in a slab of the preferred order (`1 << oo_order(s->oo)`).
    pub pages_per_slab: usize,
    /// Slabs; SLUB reports every slab as active.
    pub active_slabs: usize,
    /// Slabs of all nodes.
    pub num_slabs: usize,
}

impl SlabInfo {
    /// The cache's name.
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }

    const EMPTY: SlabInfo = SlabInfo {
        name: [0; CACHE_NAME_LEN],
        name_len: 0,
        active_objs: 0,
        num_objs: 0,
        objsize: 0,
        objects_per_slab: 0,
        pages_per_slab: 0,
        active_slabs: 0,
        num_slabs: 0,
    };
}

/// `get_slabinfo` (mm/slub.c) for one cache.
pub fn get_slabinfo<P: Platform>(k: &Kmem<P>, s: &KmemCache) -> SlabInfo {
    // Better than the kernel: `active_objs` counts the objects on cpu
    // freelists, cpu slabs and cpu partial slabs as free too (the kernel
    // counts only node-partial free objects), so it is the exact number of
    // live objects whenever no allocation runs concurrently.
    let (active, nr_objs, nr_slabs, _) = k.cache_counts(s);
    let mut info = SlabInfo {
        active_objs: active,
        num_objs: nr_objs,
        objsize: s.size,
        objects_per_slab: s.oo.objects as usize,
        pages_per_slab: 1 << s.oo.order,
        active_slabs: nr_slabs,
        num_slabs: nr_slabs,
        ..SlabInfo::EMPTY
    };
    let name = s.name().as_bytes();
    info.name_len = name.len().min(CACHE_NAME_LEN);
    info.name[..info.name_len].copy_from_slice(&name[..info.name_len]);
    info
}

/// Call `f` with the [`SlabInfo`] of every cache, in `slab_caches` order:
/// newest first, as the kernel's `list_add` leaves them (our list keeps the
/// oldest first, so it is walked backwards).
///
/// Like the kernel's `seq_file`, which takes `slab_mutex` once per read()
/// and finds its place again by position, the list lock is held while a
/// chunk of caches is copied out, never while `f` runs: `f` may allocate.
pub fn slabinfo_snapshots<P: Platform>(k: &Kmem<P>, mut f: impl FnMut(&SlabInfo)) {
    const CHUNK: usize = 16;
    let mut pos = 0;
    loop {
        let mut buf = [SlabInfo::EMPTY; CHUNK];
        let mut n = 0;
        let mut more = false;
        {
            let head = k.slab.caches.lock(&k.platform);
            let h = &*head as *const ListHead as *mut ListHead;
            // SAFETY: the list is walked under slab_mutex; listed caches are alive.
            unsafe {
                let mut l = (*h).prev;
                let mut i = 0;
                while !core::ptr::eq(l, h) {
                    if i >= pos {
                        if n == CHUNK {
                            more = true;
                            break;
                        }
                        buf[n] = get_slabinfo(k, &*crate::container_of!(l, KmemCache, list));
                        n += 1;
                    }
                    i += 1;
                    l = (*l).prev;
                }
            }
        }
        for info in &buf[..n] {
            f(info);
        }
        if !more {
            return;
        }
        pos += n;
    }
}

/// `print_slabinfo_header`: version 2.1, without the `CONFIG_DEBUG_SLAB` columns.
const SLABINFO_HEADER: &str = "slabinfo - version: 2.1\n\
    # name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> \
    : tunables <limit> <batchcount> <sharedfactor> \
    : slabdata <active_slabs> <num_slabs> <sharedavail>\n";

/// `cache_show`: one cache's line. SLUB has no tunables (`0 0 0`) and no
/// shared array (`sharedavail 0`).
fn cache_show(info: &SlabInfo, out: &mut dyn Write) -> fmt::Result {
    writeln!(
        out,
        "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : tunables {:>4} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6}",
        info.name(),
        info.active_objs,
        info.num_objs,
        info.objsize,
        info.objects_per_slab,
        info.pages_per_slab,
        0,
        0,
        0,
        info.active_slabs,
        info.num_slabs,
        0
    )
}

/// `/proc/slabinfo` (`slab_show`): the header before the first cache, then
/// one line per cache, newest first. Empty if there is no cache at all.
pub fn slabinfo_show<P: Platform>(k: &Kmem<P>, out: &mut dyn Write) -> fmt::Result {
    let mut res = Ok(());
    let mut first = true;
    slabinfo_snapshots(k, |info| {
        if res.is_ok() && first {
            first = false;
            res = out.write_str(SLABINFO_HEADER);
        }
        if res.is_ok() {
            res = cache_show(info, out);
        }
    });
    res
}

// ---- /proc/buddyinfo ----------------------------------------------------------

/// `/proc/buddyinfo`: free blocks per order of every populated zone.
pub fn buddyinfo_show<P: Platform>(k: &Kmem<P>, out: &mut dyn Write) -> fmt::Result {
    for pg in nodes(k) {
        for zone in populated_zones(pg) {
            let counts = free_area_snapshot(k, zone);
            write!(out, "Node {}, zone {:>8} ", pg.node_id, zone.name())?;
            for c in counts {
                write!(out, "{c:>6} ")?;
            }
            out.write_char('\n')?;
        }
    }
    Ok(())
}

// ---- /proc/pagetypeinfo -------------------------------------------------------

/// Whether a node has memory (`node_state(nid, N_MEMORY)`).
fn node_has_memory(pg: &PgData) -> bool {
    populated_zones(pg).next().is_some()
}

/// `SECTION_SIZE_BITS` of x86-64 sparsemem: the granularity at which the
/// kernel has a memmap (`pfn_to_online_page`).
const SECTION_SHIFT: u32 = 27;
/// How many RAM ranges the block counter copies out of memblock.
const MAX_RAM_RANGES: usize = 256;

/// RAM ranges of the machine, copied out of memblock (`None` if there are too many).
struct RamRanges {
    ranges: [(u64, u64); MAX_RAM_RANGES],
    nr: usize,
    truncated: bool,
}

impl RamRanges {
    fn new<P: Platform>(k: &Kmem<P>) -> RamRanges {
        let mut r = RamRanges {
            ranges: [(0, 0); MAX_RAM_RANGES],
            nr: 0,
            truncated: false,
        };
        let mb = k.memblock.lock(&k.platform);
        for (s, e, _) in mb.memory_ranges(crate::memblock::NUMA_NO_NODE) {
            if r.nr == MAX_RAM_RANGES {
                r.truncated = true;
                break;
            }
            r.ranges[r.nr] = (s, e);
            r.nr += 1;
        }
        r
    }

    /// Whether the section holding `pfn` has any RAM (so the kernel has a memmap for it).
    fn section_online(&self, pfn: usize) -> bool {
        if self.truncated {
            return true;
        }
        let start = ((pfn as u64) << PAGE_SHIFT) & !((1u64 << SECTION_SHIFT) - 1);
        let end = start + (1u64 << SECTION_SHIFT);
        self.ranges[..self.nr].iter().any(|&(s, e)| s < end && e > start)
    }

    /// Bytes of RAM below `limit`.
    fn bytes_below(&self, limit: u64) -> u64 {
        self.ranges[..self.nr]
            .iter()
            .map(|&(s, e)| e.min(limit).saturating_sub(s))
            .sum()
    }
}

/// Pageblocks of `zone` per migrate type (`pagetypeinfo_showblockcount_print`).
fn pageblock_counts<P: Platform>(k: &Kmem<P>, zone: &Zone, ram: &RamRanges) -> [usize; MIGRATE_TYPES] {
    let mut count = [0; MIGRATE_TYPES];
    let zone_id = (zone.node as usize * MAX_NR_ZONES + zone.zone_type as usize) as u8;
    let end = zone.end_pfn().min(k.map.max_pfn);
    // Pageblock records change under the zone lock.
    let _guard = zone.lock.lock(&k.platform);
    let mut pfn = zone.zone_start_pfn;
    while pfn < end {
        if ram.section_online(pfn) {
            let pb = k.map.pageblock(pfn);
            if pb.zone_id == zone_id && (pb.mt as usize) < MIGRATE_TYPES {
                count[pb.mt as usize] += 1;
            }
        }
        pfn += PAGEBLOCK_NR_PAGES;
    }
    count
}

/// `/proc/pagetypeinfo`: free blocks by migrate type, and pageblocks by type;
/// the whole text repeats for each node with memory, as the kernel's does.
pub fn pagetypeinfo_show<P: Platform>(k: &Kmem<P>, out: &mut dyn Write) -> fmt::Result {
    let ram = RamRanges::new(k);
    for pg in nodes(k) {
        if !node_has_memory(pg) {
            continue;
        }
        writeln!(out, "Page block order: {PAGEBLOCK_ORDER}")?;
        writeln!(out, "Pages per block:  {PAGEBLOCK_NR_PAGES}")?;
        out.write_char('\n')?;

        write!(out, "{:<43} ", "Free pages count per migrate type at order")?;
        for o in 0..NR_PAGE_ORDERS {
            write!(out, "{o:>6} ")?;
        }
        out.write_char('\n')?;
        for zone in populated_zones(pg) {
            let counts = free_by_type_snapshot(k, zone);
            for (mt, row) in counts.iter().enumerate() {
                write!(
                    out,
                    "Node {:>4}, zone {:>8}, type {:>12} ",
                    pg.node_id,
                    zone.name(),
                    MigrateType::from_index(mt).name()
                )?;
                for &(n, capped) in row {
                    write!(out, "{}{n:>6} ", if capped { ">" } else { "" })?;
                }
                out.write_char('\n')?;
            }
        }

        write!(out, "\n{:<23}", "Number of blocks type ")?;
        for mt in MigrateType::ALL {
            write!(out, "{:>12} ", mt.name())?;
        }
        out.write_char('\n')?;
        for zone in populated_zones(pg) {
            let counts = pageblock_counts(k, zone, &ram);
            write!(out, "Node {}, zone {:>8} ", pg.node_id, zone.name())?;
            for c in counts {
                write!(out, "{c:>12} ")?;
            }
            out.write_char('\n')?;
        }
    }
    Ok(())
}

// ---- /proc/zoneinfo -----------------------------------------------------------

/// Node counters (`enum node_stat_item`) in the order a 6.18 x86-64 kernel prints them.
const NODE_STAT_NAMES: &[&str] = &[
    "nr_inactive_anon",
    "nr_active_anon",
    "nr_inactive_file",
    "nr_active_file",
    "nr_unevictable",
    "nr_slab_reclaimable",
    "nr_slab_unreclaimable",
    "nr_isolated_anon",
    "nr_isolated_file",
    "workingset_nodes",
    "workingset_refault_anon",
    "workingset_refault_file",
    "workingset_activate_anon",
    "workingset_activate_file",
    "workingset_restore_anon",
    "workingset_restore_file",
    "workingset_nodereclaim",
    "nr_anon_pages",
    "nr_mapped",
    "nr_file_pages",
    "nr_dirty",
    "nr_writeback",
    "nr_shmem",
    "nr_shmem_hugepages",
    "nr_shmem_pmdmapped",
    "nr_file_hugepages",
    "nr_file_pmdmapped",
    "nr_anon_transparent_hugepages",
    "nr_vmscan_write",
    "nr_vmscan_immediate_reclaim",
    "nr_dirtied",
    "nr_written",
    "nr_throttled_written",
    "nr_kernel_misc_reclaimable",
    "nr_foll_pin_acquired",
    "nr_foll_pin_released",
    "nr_kernel_stack",
    "nr_page_table_pages",
    "nr_sec_page_table_pages",
    "nr_iommu_pages",
    "nr_swapcached",
    "pgpromote_success",
    "pgpromote_candidate",
    "pgpromote_candidate_nrl",
    "pgdemote_kswapd",
    "pgdemote_direct",
    "pgdemote_khugepaged",
    "pgdemote_proactive",
    "nr_hugetlb",
    "nr_balloon_pages",
    "nr_kernel_file_pages",
];

/// Value of a node counter: what we keep, 0 for what does not exist here
/// (LRU lists, page cache, writeback, page tables of processes).
fn node_stat<P: Platform>(k: &Kmem<P>, nid: usize, name: &str) -> usize {
    match name {
        "nr_slab_reclaimable" => slab_pages(k, Some(nid)).reclaimable,
        "nr_slab_unreclaimable" => slab_pages(k, Some(nid)).unreclaimable,
        _ => 0,
    }
}

/// Zone counters (`enum zone_stat_item`, then `enum numa_stat_item`) as 6.18 prints them.
const ZONE_STAT_NAMES: &[&str] = &[
    "nr_free_pages",
    "nr_free_pages_blocks",
    "nr_zone_inactive_anon",
    "nr_zone_active_anon",
    "nr_zone_inactive_file",
    "nr_zone_active_file",
    "nr_zone_unevictable",
    "nr_zone_write_pending",
    "nr_mlock",
    "nr_zspages",
    "nr_free_cma",
    "numa_hit",
    "numa_miss",
    "numa_foreign",
    "numa_interleave",
    "numa_local",
    "numa_other",
];

fn zone_of(pg: &PgData, kz: KZone) -> Option<&Zone> {
    match kz {
        KZone::Ours(zt) => Some(&pg.node_zones[zt as usize]),
        KZone::Device => None,
    }
}

/// One zone's stanza (`zoneinfo_show_print`).
fn zoneinfo_zone<P: Platform>(
    k: &Kmem<P>,
    pg: &PgData,
    kz: KZone,
    layout: &[KZone; KERNEL_NR_ZONES],
    out: &mut dyn Write,
) -> fmt::Result {
    let zone = zone_of(pg, kz);
    write!(out, "Node {}, zone {:>8}", pg.node_id, kz.name())?;
    let first_populated = populated_zones(pg).next();
    if let (Some(z), Some(f)) = (zone, first_populated) {
        if core::ptr::eq(z, f) {
            out.write_str("\n  per-node stats")?;
            for name in NODE_STAT_NAMES {
                write!(out, "\n      {:<12} {}", name, node_stat(k, pg.node_id, name))?;
            }
        }
    }
    let (free, boost, wm, spanned, present, managed) = match zone {
        Some(z) => (
            z.nr_free(),
            z.watermark_boost.load(Ordering::Relaxed),
            [
                z.wmark(WMARK_MIN),
                z.wmark(WMARK_LOW),
                z.wmark(WMARK_HIGH),
                z.wmark(WMARK_PROMO),
            ],
            z.spanned_pages,
            z.present_pages,
            z.managed(),
        ),
        None => (0, 0, [0; 4], 0, 0, 0),
    };
    write!(
        out,
        "\n  pages free     {free}\
         \n        boost    {boost}\
         \n        min      {}\
         \n        low      {}\
         \n        high     {}\
         \n        promo    {}\
         \n        spanned  {spanned}\
         \n        present  {present}\
         \n        managed  {managed}\
         \n        cma      0",
        wm[0], wm[1], wm[2], wm[3]
    )?;
    out.write_str("\n        protection: (")?;
    for (j, col) in layout.iter().enumerate() {
        let v = match zone {
            Some(z) => z.lowmem_reserve[col.reserve_index()].load(Ordering::Relaxed),
            None => 0,
        };
        if j > 0 {
            out.write_str(", ")?;
        }
        write!(out, "{v}")?;
    }
    out.write_char(')')?;

    let Some(zone) = zone.filter(|z| z.is_populated()) else {
        // Unpopulated: nothing else is useful.
        return out.write_char('\n');
    };

    let blocks = free_pages_blocks(k, zone);
    let ev = zone_events(k, zone);
    for name in ZONE_STAT_NAMES {
        let v = match *name {
            "nr_free_pages" => zone.nr_free(),
            "nr_free_pages_blocks" => blocks,
            // Every allocation is counted as local: we do not track which node
            // an allocation preferred, so misses are not known.
            "numa_hit" | "numa_local" => ev.numa_hit,
            _ => 0,
        };
        write!(out, "\n      {name:<12} {v}")?;
    }

    out.write_str("\n  pagesets")?;
    let threshold = calculate_normal_threshold(zone.managed(), k.nr_cpus);
    for cpu in 0..k.nr_cpus {
        let s = pcp_snapshot(k, zone, cpu);
        write!(
            out,
            "\n    cpu: {cpu}\
             \n              count:    {}\
             \n              high:     {}\
             \n              batch:    {}\
             \n              high_min: {}\
             \n              high_max: {}",
            s.count, s.high, s.batch, s.high_min, s.high_max
        )?;
        write!(out, "\n  vm stats threshold: {threshold}")?;
    }
    // No kswapd runs, so it never gives up on a node.
    write!(
        out,
        "\n  node_unreclaimable:  0\
         \n  start_pfn:           {}",
        zone.zone_start_pfn
    )?;
    out.write_char('\n')
}

/// `/proc/zoneinfo`: every zone of every node, populated or not.
pub fn zoneinfo_show<P: Platform>(k: &Kmem<P>, out: &mut dyn Write) -> fmt::Result {
    let layout = zone_layout(k);
    for pg in nodes(k) {
        for kz in layout {
            zoneinfo_zone(k, pg, kz, &layout, out)?;
        }
    }
    Ok(())
}

// ---- /proc/meminfo ------------------------------------------------------------

/// `show_val_kb`: label padded to 16 columns, value in kB right-aligned in 8.
fn show_val_kb(out: &mut dyn Write, label: &str, pages: usize) -> fmt::Result {
    writeln!(out, "{label:<16}{:>8} kB", pages << (PAGE_SHIFT - 10))
}

/// `si_mem_available`: free pages minus the reserves, plus what reclaim could
/// give back (half of the page cache and of reclaimable slab, each at least
/// the sum of the low watermarks kept back).
pub fn si_mem_available<P: Platform>(k: &Kmem<P>) -> usize {
    let wmark_low: usize = nodes(k)
        .flat_map(|pg| pg.node_zones.iter())
        .map(|z| z.wmark(WMARK_LOW))
        .sum();
    let free = k.nr_free_pages() as isize;
    let mut available = free - k.totalreserve_pages() as isize;
    // No page cache.
    let pagecache = 0usize;
    available += (pagecache - (pagecache / 2).min(wmark_low)) as isize;
    let reclaimable = slab_pages(k, None).reclaimable;
    available += (reclaimable - (reclaimable / 2).min(wmark_low)) as isize;
    available.max(0) as usize
}

/// Order of a PMD-mapped huge page on x86 (`HPAGE_PMD_ORDER`, 2 MiB).
const HPAGE_PMD_ORDER: u32 = 9;

/// `sysctl_overcommit_ratio` default.
const OVERCOMMIT_RATIO: usize = 50;

/// `/proc/meminfo`.
pub fn meminfo_show<P: Platform>(k: &Kmem<P>, out: &mut dyn Write) -> fmt::Result {
    let totalram = k.totalram_pages();
    let freeram = k.nr_free_pages();
    let slab = slab_pages(k, None);
    let (vmalloc_total, vmalloc_used) = vmalloc_pages(k);
    let ram = RamRanges::new(k);

    show_val_kb(out, "MemTotal:", totalram)?;
    show_val_kb(out, "MemFree:", freeram)?;
    show_val_kb(out, "MemAvailable:", si_mem_available(k))?;
    // No page cache, swap or anonymous memory: these are all zero.
    for label in [
        "Buffers:",
        "Cached:",
        "SwapCached:",
        "Active:",
        "Inactive:",
        "Active(anon):",
        "Inactive(anon):",
        "Active(file):",
        "Inactive(file):",
        "Unevictable:",
        "Mlocked:",
    ] {
        show_val_kb(out, label, 0)?;
    }
    if k.highmem {
        let (mut totalhigh, mut freehigh) = (0, 0);
        for pg in nodes(k) {
            let z = &pg.node_zones[ZoneType::HighMem as usize];
            totalhigh += z.managed();
            freehigh += z.nr_free();
        }
        show_val_kb(out, "HighTotal:", totalhigh)?;
        show_val_kb(out, "HighFree:", freehigh)?;
        show_val_kb(out, "LowTotal:", totalram - totalhigh.min(totalram))?;
        show_val_kb(out, "LowFree:", freeram - freehigh.min(freeram))?;
    }
    for label in [
        "SwapTotal:",
        "SwapFree:",
        "Zswap:",
        "Zswapped:",
        "Dirty:",
        "Writeback:",
        "AnonPages:",
        "Mapped:",
        "Shmem:",
    ] {
        show_val_kb(out, label, 0)?;
    }
    // KReclaimable = SReclaimable + NR_KERNEL_MISC_RECLAIMABLE (none here).
    show_val_kb(out, "KReclaimable:", slab.reclaimable)?;
    show_val_kb(out, "Slab:", slab.reclaimable + slab.unreclaimable)?;
    show_val_kb(out, "SReclaimable:", slab.reclaimable)?;
    show_val_kb(out, "SUnreclaim:", slab.unreclaimable)?;
    for label in [
        "KernelStack:",
        "PageTables:",
        "SecPageTables:",
        "NFS_Unstable:",
        "Bounce:",
        "WritebackTmp:",
    ] {
        show_val_kb(out, label, 0)?;
    }
    // vm_commit_limit: (totalram - hugetlb) * overcommit_ratio / 100 + swap.
    show_val_kb(out, "CommitLimit:", totalram * OVERCOMMIT_RATIO / 100)?;
    show_val_kb(out, "Committed_AS:", 0)?;
    show_val_kb(out, "VmallocTotal:", vmalloc_total)?;
    show_val_kb(out, "VmallocUsed:", vmalloc_used)?;
    show_val_kb(out, "VmallocChunk:", 0)?;
    show_val_kb(out, "Percpu:", percpu_pages(k))?;
    for label in [
        "AnonHugePages:",
        "ShmemHugePages:",
        "ShmemPmdMapped:",
        "FileHugePages:",
        "FilePmdMapped:",
        "Balloon:",
    ] {
        show_val_kb(out, label, 0)?;
    }
    // hugetlb_report_meminfo: no huge page pool.
    write!(
        out,
        "HugePages_Total:   {:>5}\n\
         HugePages_Free:    {:>5}\n\
         HugePages_Rsvd:    {:>5}\n\
         HugePages_Surp:    {:>5}\n\
         Hugepagesize:   {:>8} kB\n",
        0,
        0,
        0,
        0,
        (PAGE_SIZE << HPAGE_PMD_ORDER) >> 10
    )?;
    writeln!(out, "Hugetlb:        {:>8} kB", 0)?;
    // arch_report_meminfo: the linear map covers RAM (lowmem only with
    // highmem), all of it in 4 KiB pages here.
    let direct = if k.highmem {
        ram.bytes_below((k.max_low_pfn as u64) << PAGE_SHIFT)
    } else {
        ram.bytes_below(u64::MAX)
    };
    writeln!(out, "DirectMap4k:    {:>8} kB", direct >> 10)?;
    writeln!(out, "DirectMap2M:    {:>8} kB", 0)?;
    if !k.highmem {
        writeln!(out, "DirectMap1G:    {:>8} kB", 0)?;
    }
    Ok(())
}

// ---- /proc/vmstat -------------------------------------------------------------

/// Pages of the boot-time memmap (`nr_memmap_boot_pages`), as `Kmem::boot` allocates it.
fn memmap_boot_pages<P: Platform>(k: &Kmem<P>) -> usize {
    let bytes = k.map.max_pfn * core::mem::size_of::<crate::page::Page>();
    bytes.div_ceil(PAGE_SIZE)
}

/// The vm events after the zone and node counters, in 6.18's order
/// (`vmstat_text`, x86-64 with NUMA, THP, compaction, balloon, KSM and
/// zswap, as the sample kernel is configured). `pgalloc_`, `allocstall_`
/// and `pgskip_` stand for one line per zone type of the layout.
const VM_EVENT_NAMES: &[&str] = &[
    "pgpgin",
    "pgpgout",
    "pswpin",
    "pswpout",
    "pgalloc_",
    "allocstall_",
    "pgskip_",
    "pgfree",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pgfault",
    "pgmajfault",
    "pglazyfreed",
    "pgrefill",
    "pgreuse",
    "pgsteal_kswapd",
    "pgsteal_direct",
    "pgsteal_khugepaged",
    "pgsteal_proactive",
    "pgscan_kswapd",
    "pgscan_direct",
    "pgscan_khugepaged",
    "pgscan_proactive",
    "pgscan_direct_throttle",
    "pgscan_anon",
    "pgscan_file",
    "pgsteal_anon",
    "pgsteal_file",
    "zone_reclaim_success",
    "zone_reclaim_failed",
    "pginodesteal",
    "slabs_scanned",
    "kswapd_inodesteal",
    "kswapd_low_wmark_hit_quickly",
    "kswapd_high_wmark_hit_quickly",
    "pageoutrun",
    "pgrotated",
    "drop_pagecache",
    "drop_slab",
    "oom_kill",
    "numa_pte_updates",
    "numa_huge_pte_updates",
    "numa_hint_faults",
    "numa_hint_faults_local",
    "numa_pages_migrated",
    "pgmigrate_success",
    "pgmigrate_fail",
    "thp_migration_success",
    "thp_migration_fail",
    "thp_migration_split",
    "compact_migrate_scanned",
    "compact_free_scanned",
    "compact_isolated",
    "compact_stall",
    "compact_fail",
    "compact_success",
    "compact_daemon_wake",
    "compact_daemon_migrate_scanned",
    "compact_daemon_free_scanned",
    "htlb_buddy_alloc_success",
    "htlb_buddy_alloc_fail",
    "unevictable_pgs_culled",
    "unevictable_pgs_scanned",
    "unevictable_pgs_rescued",
    "unevictable_pgs_mlocked",
    "unevictable_pgs_munlocked",
    "unevictable_pgs_cleared",
    "unevictable_pgs_stranded",
    "thp_fault_alloc",
    "thp_fault_fallback",
    "thp_fault_fallback_charge",
    "thp_collapse_alloc",
    "thp_collapse_alloc_failed",
    "thp_file_alloc",
    "thp_file_fallback",
    "thp_file_fallback_charge",
    "thp_file_mapped",
    "thp_split_page",
    "thp_split_page_failed",
    "thp_deferred_split_page",
    "thp_underused_split_page",
    "thp_split_pmd",
    "thp_scan_exceed_none_pte",
    "thp_scan_exceed_swap_pte",
    "thp_scan_exceed_share_pte",
    "thp_split_pud",
    "thp_zero_page_alloc",
    "thp_zero_page_alloc_failed",
    "thp_swpout",
    "thp_swpout_fallback",
    "balloon_inflate",
    "balloon_deflate",
    "balloon_migrate",
    "swap_ra",
    "swap_ra_hit",
    "swpin_zero",
    "swpout_zero",
    "ksm_swpin_copy",
    "cow_ksm",
    "zswpin",
    "zswpout",
    "zswpwb",
    "direct_map_level2_splits",
    "direct_map_level3_splits",
    "direct_map_level2_collapses",
    "direct_map_level3_collapses",
];

/// `global_dirty_limits` with the default ratios (`vm.dirty_ratio` 20,
/// `vm.dirty_background_ratio` 10) of `global_dirtyable_memory`: free pages
/// less `totalreserve_pages` (no page cache here), less what HighMem and
/// Movable hold above their high watermarks. Returns (background, dirty).
fn dirty_limits<P: Platform>(k: &Kmem<P>) -> (usize, usize) {
    let mut x = k.nr_free_pages();
    x -= x.min(k.totalreserve_pages());
    let high: usize = nodes(k)
        .flat_map(populated_zones)
        .filter(|z| z.zone_type as usize > ZoneType::Normal as usize)
        .map(|z| z.nr_free().saturating_sub(z.wmark(WMARK_HIGH)))
        .sum();
    let available = x - high.min(x) + 1;
    let ratio = 20 * PAGE_SIZE / 100;
    let bg_ratio = 10 * PAGE_SIZE / 100;
    let thresh = ratio * available / PAGE_SIZE;
    let mut bg = bg_ratio * available / PAGE_SIZE;
    if bg >= thresh {
        bg = thresh / 2;
    }
    (bg, thresh)
}

/// `/proc/vmstat`: every line 6.18 prints, in its order (the zone counters,
/// the node counters, the dirty limits, the memmap, the vm events, and the
/// deprecated `nr_unstable 0`). The ones kmem keeps:
///
/// * `nr_free_pages`, `nr_free_pages_blocks`: exact.
/// * `numa_hit`, `numa_local`: allocations served by any zone (one per
///   call, whatever its order); `numa_miss`,
///   `numa_foreign`, `numa_interleave`, `numa_other`: 0, as in zoneinfo (we
///   do not know which node an allocation preferred).
/// * `nr_slab_reclaimable`, `nr_slab_unreclaimable`: from [`slab_pages`].
/// * `nr_dirty_threshold`, `nr_dirty_background_threshold`: the kernel's
///   default ratios of the free memory, as `global_dirty_limits` computes
///   them without a page cache.
/// * `nr_memmap_boot_pages`: the memmap allocated from memblock.
/// * `pgalloc_<zone>`, `pgfree`: pages allocated and freed (2^order per
///   call), per zone type; `pgfree` includes the boot's hand-over of memory
///   to the buddy allocator, as the kernel's does.
/// * `allocstall_<zone>`: direct reclaim entries. The kernel files them under
///   the highest zone the allocation could use; we keep one total and file it
///   under `normal` (GFP_KERNEL's zone).
/// * `slabs_scanned`: objects shrinkers were asked to scan.
/// * `oom_kill`: OOM invocations (we never kill; notifiers free memory).
///
/// Everything else counts what kmem does not have (LRU lists, page cache,
/// swap, page faults, compaction, THP, migration) and is 0, as in zoneinfo.
pub fn vmstat_show<P: Platform>(k: &Kmem<P>, out: &mut dyn Write) -> fmt::Result {
    let layout = zone_layout(k);
    let mut free = 0;
    let mut blocks = 0;
    let mut numa_hit = 0;
    let mut frees_total = 0;
    let mut pgalloc = [0usize; KERNEL_NR_ZONES];
    for pg in nodes(k) {
        for zone in populated_zones(pg) {
            free += zone.nr_free();
            blocks += free_pages_blocks(k, zone);
            let ev = zone_events(k, zone);
            numa_hit += ev.numa_hit;
            frees_total += ev.frees;
            if let Some(i) = layout.iter().position(|kz| *kz == KZone::Ours(zone.zone_type)) {
                pgalloc[i] += ev.allocs;
            }
        }
    }
    let events = &k.events;
    for name in ZONE_STAT_NAMES {
        let v = match *name {
            "nr_free_pages" => free,
            "nr_free_pages_blocks" => blocks,
            "numa_hit" | "numa_local" => numa_hit,
            _ => 0,
        };
        writeln!(out, "{name} {v}")?;
    }
    for name in NODE_STAT_NAMES {
        let v: usize = nodes(k).map(|pg| node_stat(k, pg.node_id, name)).sum();
        writeln!(out, "{name} {v}")?;
    }
    let (bg, thresh) = dirty_limits(k);
    writeln!(out, "nr_dirty_threshold {thresh}")?;
    writeln!(out, "nr_dirty_background_threshold {bg}")?;
    writeln!(out, "nr_memmap_pages 0")?;
    writeln!(out, "nr_memmap_boot_pages {}", memmap_boot_pages(k))?;
    let stalls = events.allocstall.load(Ordering::Relaxed);
    for name in VM_EVENT_NAMES {
        match *name {
            "pgalloc_" | "allocstall_" | "pgskip_" => {
                for (i, kz) in layout.iter().enumerate() {
                    let v = match *name {
                        "pgalloc_" => pgalloc[i],
                        "allocstall_" if *kz == KZone::Ours(ZoneType::Normal) => stalls,
                        _ => 0,
                    };
                    writeln!(out, "{name}{} {v}", kz.vmstat_suffix())?;
                }
            }
            "pgfree" => writeln!(out, "pgfree {frees_total}")?,
            "slabs_scanned" => writeln!(
                out,
                "slabs_scanned {}",
                events.slabs_scanned.load(Ordering::Relaxed)
            )?,
            "oom_kill" => writeln!(out, "oom_kill {}", events.oom.load(Ordering::Relaxed))?,
            _ => writeln!(out, "{name} 0")?,
        }
    }
    writeln!(out, "nr_unstable 0")
}

// ---- structured snapshots -----------------------------------------------------

/// One populated zone's state, for programs (`kmem top`, tests) that want
/// numbers rather than text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneSnapshot {
    /// Node id.
    pub node: usize,
    /// Zone name ("DMA", "DMA32", "Normal", "HighMem", "Movable").
    pub zone: &'static str,
    /// `NR_FREE_PAGES`: pages on the buddy lists.
    pub free: usize,
    /// Min watermark (with boost).
    pub min: usize,
    /// Low watermark (with boost).
    pub low: usize,
    /// High watermark (with boost).
    pub high: usize,
    /// Pages spanned, holes included.
    pub spanned: usize,
    /// RAM pages in the span.
    pub present: usize,
    /// Pages handed to the buddy allocator.
    pub managed: usize,
    /// Free blocks per order (the buddyinfo row).
    pub free_blocks: [usize; NR_PAGE_ORDERS],
    /// Pages on all CPUs' per-CPU lists.
    pub pcp_count: usize,
}

/// Call `f` with a snapshot of every populated zone, node by node, lowest zone first.
pub fn zone_snapshots<P: Platform>(k: &Kmem<P>, mut f: impl FnMut(&ZoneSnapshot)) {
    for pg in nodes(k) {
        for zone in populated_zones(pg) {
            let free_blocks = free_area_snapshot(k, zone);
            let pcp_count = (0..k.nr_cpus).map(|cpu| pcp_snapshot(k, zone, cpu).count).sum();
            f(&ZoneSnapshot {
                node: pg.node_id,
                zone: zone.name(),
                free: zone.nr_free(),
                min: zone.wmark(WMARK_MIN),
                low: zone.wmark(WMARK_LOW),
                high: zone.wmark(WMARK_HIGH),
                spanned: zone.spanned_pages,
                present: zone.present_pages,
                managed: zone.managed(),
                free_blocks,
                pcp_count,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_threshold_matches_the_kernel_table() {
        // The sample's zones on 2 CPUs: DMA 4, DMA32 24, Normal 16.
        assert_eq!(calculate_normal_threshold(3840, 2), 4);
        assert_eq!(calculate_normal_threshold(772808, 2), 24);
        assert_eq!(calculate_normal_threshold(196608, 2), 16);
        // From the kernel's comment: 1 CPU, 0.9-1 GB -> 8; 1024 CPUs -> capped at 125.
        assert_eq!(calculate_normal_threshold(240_000, 1), 8);
        assert_eq!(calculate_normal_threshold(4 << 20, 1024), 125);
    }

    #[test]
    fn slab_pages_of_mixed_orders_are_exact() {
        let oo = OrderObjects::new(3, 2000); // 16 objects in 8 pages
        let min = OrderObjects::new(0, 2000); // 2 objects in 1 page
        assert_eq!((oo.objects, min.objects), (16, 2));
        for big in 0..20 {
            for small in 0..20 {
                let nr = big + small;
                let total = big * 16 + small * 2;
                assert_eq!(
                    slab_pages_of_counts(nr, total, oo, min),
                    big * 8 + small,
                    "{big} {small}"
                );
            }
        }
        // Same order: no solving needed.
        let one = OrderObjects::new(0, 64);
        assert_eq!(slab_pages_of_counts(7, 7 * 64, one, one), 7);
        // Counters caught mid-update stay within the slabs counted.
        assert_eq!(slab_pages_of_counts(3, 0, oo, min), 3);
        assert_eq!(slab_pages_of_counts(3, 1000, oo, min), 24);
    }

    #[test]
    fn show_val_kb_pads_like_the_kernel() {
        let mut s = crate::printk::FixedBuf::<64>::new();
        show_val_kb(&mut s, "MemTotal:", 6170914).unwrap();
        assert_eq!(s.as_str(), "MemTotal:       24683656 kB\n");
    }
}
