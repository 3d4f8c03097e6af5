//! The machine: one booted instance of the whole allocator stack (`Kmem`).
//!
//! A machine is a value. It is booted from a physical memory map (e820), a
//! CPU count and a boot command line, and from then on owns everything the
//! kernel keeps globally: memblock, the memmap, nodes and zones, the per-CPU
//! page lists, shrinkers, statistics and the log. Any number of machines can
//! live in one process.
//!
//! **Boot** (`Kmem::boot`) follows the kernel's order:
//! 1. memblock learns the RAM from e820 and reserves page 0 and whatever the
//!    platform reports in use (kernel image, page tables);
//! 2. nodes (`numa=fake=`) and zones are sized from the physical addresses;
//! 3. everything the machine needs is allocated from memblock, top-down,
//!    below the lowmem limit: the log ring, the machine structure itself, the
//!    memmap, the pageblock table, each node's `pg_data_t`, the per-CPU lists;
//! 4. `mem_init` hands every free memblock range to the buddy allocator in
//!    naturally aligned power-of-two chunks (`memblock_free_all`);
//! 5. watermarks, lowmem reserves and per-CPU list sizes are computed with the
//!    kernel's formulas.
//!
//! The machine structure lives in the machine's own RAM, like the kernel's
//! global data lives in its image; the handle is a pointer to it.

use crate::cmdline::BootParams;
use crate::e820::{E820Table, E820Type};
use crate::gfp::{ZoneType, MAX_NR_ZONES, MIGRATE_PCPTYPES};
use crate::memblock::{Memblock, PhysAddr, MEMBLOCK_ALLOC_ACCESSIBLE, NUMA_NO_NODE};
use crate::page::*;
use crate::page_alloc::pcp::{zone_batchsize, zone_highsize, PcpLists, PerCpuPages};
use crate::page_alloc::pcp_hot::PcpHot;
use crate::page_alloc::zone::{
    MemMap, Zone, ZoneFree, ZoneStats, WMARK_HIGH, WMARK_LOW, WMARK_MIN, WMARK_PROMO,
};
use crate::platform::Platform;
use crate::printk::{Hex18, LogRing, RateLimit};
use crate::spinlock::SpinLock;
use crate::vmscan::Reclaim;
use core::fmt::{self, Write};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Most nodes a machine can have (`numa=fake=` is capped here).
pub const MAX_NUMNODES: usize = 8;
/// Size of the log ring.
pub const LOG_BUF_LEN: usize = 128 * 1024;
/// `sysctl_lowmem_reserve_ratio` defaults, by zone type.
pub const DEFAULT_LOWMEM_RESERVE_RATIO: [usize; MAX_NR_ZONES] = [256, 256, 32, 0, 0];
/// Upper limit of ISA DMA memory (`MAX_DMA_PFN`).
pub const MAX_DMA_ADDR: u64 = 16 << 20;
/// Upper limit of 32-bit DMA memory (`MAX_DMA32_PFN`).
pub const MAX_DMA32_ADDR: u64 = 1 << 32;

/// A node (`pg_data_t`).
#[repr(C, align(64))]
pub struct PgData {
    /// The zones, indexed by `ZoneType`.
    pub node_zones: [Zone; MAX_NR_ZONES],
    /// Node id.
    pub node_id: usize,
    /// First pfn.
    pub node_start_pfn: usize,
    /// Pfns spanned.
    pub node_spanned_pages: usize,
    /// RAM pages.
    pub node_present_pages: usize,
}

/// A zonelist (`struct zonelist`): the zones an allocation tries, in order —
/// the preferred node's zones from the highest allowed downwards, then the
/// other nodes'. Built once at boot for every (node, highest zone) pair.
#[derive(Clone, Copy)]
pub struct ZoneList {
    /// The zones, `nr` of them.
    pub zones: [*const Zone; MAX_NUMNODES * MAX_NR_ZONES],
    /// Number of zones.
    pub nr: u8,
    /// How many of them are on the preferred node (`__GFP_THISNODE`).
    pub nr_local: u8,
}

impl ZoneList {
    const EMPTY: ZoneList = ZoneList {
        zones: [ptr::null(); MAX_NUMNODES * MAX_NR_ZONES],
        nr: 0,
        nr_local: 0,
    };

    /// The zones, or only the preferred node's with `thisnode`.
    #[inline(always)]
    pub fn zones(&self, thisnode: bool) -> &[*const Zone] {
        let n = if thisnode { self.nr_local } else { self.nr };
        &self.zones[..n as usize]
    }
}

/// Why a machine could not boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootError {
    /// The memory map has no usable RAM.
    NoMemory,
    /// memblock could not hold the memory map.
    TooManyRegions,
    /// Boot-time allocations did not fit in lowmem.
    OutOfBootMemory(&'static str),
    /// Zero CPUs.
    NoCpus,
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::NoMemory => f.write_str("no usable RAM in the memory map"),
            BootError::TooManyRegions => f.write_str("memory map has too many regions for memblock"),
            BootError::OutOfBootMemory(what) => write!(f, "not enough boot memory for {what}"),
            BootError::NoCpus => f.write_str("a machine needs at least one CPU"),
        }
    }
}

/// What a platform hands to `Kmem::boot`.
pub struct BootInfo<'a> {
    /// The physical memory map, with `mem=`/`memmap=` already applied.
    pub e820: &'a E820Table,
    /// Virtual address of physical address 0 in the linear map, a multiple
    /// of `PAGE_SIZE` (as every mapping's address is).
    pub page_offset: usize,
    /// Whether RAM nobody wrote reads as zero (a fresh memfd), so the memmap
    /// and the machine structure's zero tables need not be cleared (while
    /// memblock has given nothing back: `Memblock::nothing_freed`).
    pub ram_zeroed: bool,
    /// Physical ranges already in use (kernel image, page tables, boot data).
    pub reserved: &'a [(u64, u64)],
    /// The parsed boot command line.
    pub params: &'a BootParams,
    /// The virtual window for vmalloc, `(start, size)`, reserved by the
    /// platform (`None`: no vmalloc).
    pub vmalloc_window: Option<(usize, usize)>,
}

/// Machine lifecycle (`system_state` and friends).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub enum MachineState {
    /// memblock only.
    Boot = 0,
    /// The buddy allocator owns free memory (`mem_init` done).
    Running = 1,
}

/// Tunables (`/proc/sys/vm/*`).
pub struct VmTunables {
    /// `min_free_kbytes`.
    pub min_free_kbytes: AtomicUsize,
    /// `watermark_scale_factor` (in 1/10000 of the zone).
    pub watermark_scale_factor: AtomicUsize,
    /// `lowmem_reserve_ratio`.
    pub lowmem_reserve_ratio: [AtomicUsize; MAX_NR_ZONES],
    /// How long a sleeping allocation waits for memory in the OOM path (ms).
    pub oom_wait_ms: AtomicU64,
}

/// Global counters of the page allocator (the kernel's vm events).
#[derive(Default)]
pub struct VmEvents {
    /// Direct reclaim entered (`allocstall`).
    pub allocstall: AtomicUsize,
    /// kswapd wake-ups requested (`kswapd_wake`).
    pub kswapd_wake: AtomicUsize,
    /// Objects shrinkers were asked to scan (`slabs_scanned`).
    pub slabs_scanned: AtomicUsize,
    /// Objects shrinkers freed.
    pub shrinker_freed: AtomicUsize,
    /// OOM situations (`oom_kill` would count kills; we count invocations).
    pub oom: AtomicUsize,
    /// Pages freed by OOM notifiers.
    pub oom_notifier_freed: AtomicUsize,
    /// Times an allocation slept waiting for memory.
    pub alloc_waits: AtomicUsize,
    /// Allocations that failed (returned NULL).
    pub alloc_fail: AtomicUsize,
    /// `drain_all_pages` calls.
    pub drain_all: AtomicUsize,
    /// Bad page reports.
    pub bad_pages: AtomicUsize,
    /// Pages given back to the host by free page reporting.
    pub pages_reported: AtomicUsize,
    /// Warnings printed (`WARN`).
    pub warnings: AtomicUsize,
}

/// Copy `len` bytes from `src` to `dst`, which holds zero bytes, but for
/// the pieces of `dst` within one page that would receive zero bytes alone:
/// those pages stay unwritten. The boot parameters keep lists that mostly
/// stay empty (unknown parameters, error messages, `memmap=` items); a host
/// that backs RAM at its first write (a hosted machine, libkmalloc's) then
/// never backs a page of them.
///
/// # Safety
/// `src` is readable and `dst` writable for `len` bytes, they do not
/// overlap, `dst` holds zero bytes, and `src`, `dst` and `len` are
/// multiples of 8.
unsafe fn copy_to_zeroed(src: *const u8, dst: *mut u8, len: usize) {
    let mut done = 0;
    while done < len {
        let page_end = ((dst as usize + done) | (PAGE_SIZE - 1)) + 1 - dst as usize;
        let n = page_end.min(len) - done;
        // The page boundaries and `len` keep `done` and `n` multiples of 8.
        // SAFETY: caller contract; `done + n <= len`.
        unsafe {
            if !words_are_zero(src.add(done), n / 8) {
                ptr::copy_nonoverlapping(src.add(done), dst.add(done), n);
            }
        }
        done += n;
    }
}

/// Whether the `words` 8-byte words at `p` are all zero, read as the
/// machine's memory: a struct's padding, which Rust leaves uninitialised
/// and must not read as integers, is compared like any other byte (a
/// padding byte that is not zero only costs the copy of its page).
///
/// # Safety
/// `p` is 8-byte aligned and readable for `words * 8` bytes.
unsafe fn words_are_zero(p: *const u8, words: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let nonzero: usize;
        // `repe scasq` compares %rax (0) with the words from %rdi on, %rcx of
        // them, and stops after the first that differs: its compare leaves
        // ZF clear (with `words` zero it compares nothing: not used then).
        // SAFETY: caller contract; the instruction reads `[p, p + 8 * words)` at most.
        unsafe {
            core::arch::asm!(
                "repe scasq",
                "setne {ne}",
                "movzx {nonzero}, {ne}",
                ne = out(reg_byte) _,
                nonzero = out(reg) nonzero,
                inout("rdi") p => _,
                inout("rcx") words => _,
                in("rax") 0usize,
                options(nostack, readonly),
            );
        }
        words == 0 || nonzero == 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (p, words);
        false // Copy: a reading of padding would need the same care.
    }
}

/// One booted machine.
///
/// `#[repr(C)]`, in an order chosen for the host's memory: the machine is
/// 65 kB of boot memory, most of it tables that stay zero (the kmap state,
/// the iomem tree's free slots, the zone lists of absent nodes), and the
/// boot writes no page that holds only zero bytes (`Kmem::boot` places it
/// on a page boundary, and `copy_to_zeroed` leaves out the empty lists of
/// the boot parameters), so a hosted machine's host never
/// backs those pages. The parts that the boot writes sit together: the
/// zone table's head beside the boot parameters, the memblock and the slab
/// state, the boot free counts and the small fields, then the heads of the
/// zone lists, the per-CPU allocator's first chunk and the iomem tree's
/// root. The tables at the two ends (`zone_table` first; `preferred_zone`,
/// `zonelists`, `percpu`, `iomem` and `kmap` last) start as zero bytes, and
/// on zeroed RAM the boot leaves them unwritten (`setup_arch`; `percpu_init`
/// and `iomem_init` write what they need later). The fast
/// paths' read-mostly fields (`zone_table`, `platform`, `map`, the kmalloc
/// caches in `slab`) sit beside fields that are rarely written after the
/// boot: the boot allocator's and the cache list's locks, counters of rare
/// events.
#[repr(C)]
pub struct Kmem<P: Platform> {
    /// Zone by pageblock zone id (null for holes and unused ids).
    pub(crate) zone_table: [*const Zone; 256],
    /// The command line the machine booted with.
    pub params: BootParams,
    /// The vmalloc layer's state.
    pub vmalloc: crate::vmalloc::VmallocState,
    /// The boot allocator, kept after boot (`ARCH_KEEP_MEMBLOCK`).
    pub memblock: SpinLock<Memblock>,
    /// The slab allocator's state.
    pub slab: crate::slab::SlabState,
    pub(crate) boot_free_pages: [[AtomicUsize; NR_PAGE_ORDERS]; MAX_NUMNODES * MAX_NR_ZONES],
    /// The platform the machine runs on.
    pub platform: P,
    pub(crate) map: MemMap,
    pub(crate) page_offset: usize,
    /// End of RAM with a permanent kernel mapping, as a pfn (`max_low_pfn`).
    pub(crate) max_low_pfn: usize,
    pub(crate) nr_nodes: usize,
    pub(crate) nodes: [*mut PgData; MAX_NUMNODES],
    /// `cpu_to_node` for every possible CPU.
    pub(crate) cpu_node: *const u8,
    pub(crate) nr_cpus: usize,
    /// Tunables.
    pub vm: VmTunables,
    /// Counters.
    pub events: VmEvents,
    /// `totalram_pages`.
    pub(crate) totalram_pages: AtomicUsize,
    /// `totalreserve_pages`.
    pub(crate) totalreserve_pages: AtomicUsize,
    /// Pages reserved at boot (memblock reservations inside RAM).
    pub(crate) reserved_pages: usize,
    pub(crate) reclaim: Reclaim,
    /// Background reclaim state.
    pub kswapd: crate::kswapd::Kswapd,
    pub(crate) log: SpinLock<LogRing>,
    pub(crate) warn_once: AtomicU64,
    pub(crate) ratelimit_alloc: RateLimit,
    pub(crate) ratelimit_bad_page: RateLimit,
    pub(crate) boot_allocated: AtomicUsize,
    /// `gfp_zone` of the four zone bits; `NO_ZONE` for the invalid combinations.
    pub(crate) gfp_zone_table: [u8; 16],
    pub(crate) highmem: bool,
    /// `init_on_alloc=1`: zero every page allocation.
    pub(crate) init_on_alloc: bool,
    /// `init_on_free=1`: zero every page when it is freed.
    pub(crate) init_on_free: bool,
    pub(crate) state: AtomicU8,
    pub(crate) tainted_bad_page: AtomicBool,
    /// `preferred_zone[node][highest zone]`: the first zone of each zonelist
    /// (null if the list is empty), for the allocation fast path.
    pub(crate) preferred_zone: [[*const Zone; MAX_NR_ZONES]; MAX_NUMNODES],
    /// `node_zonelists`: `zonelists[preferred node][highest zone]`.
    pub(crate) zonelists: [[ZoneList; MAX_NR_ZONES]; MAX_NUMNODES],
    /// The per-CPU allocator's state: zero bytes until `percpu_init`.
    pub percpu: crate::percpu::PercpuState,
    /// The iomem resource tree (`iomem_resource`): zero bytes until
    /// `iomem_init` writes its root and the e820 records, most of its 12 kB
    /// (the free record slots) zero for good.
    pub iomem: crate::ioremap::IomemState,
    /// HighMem mappings (the pkmap pool and kmap_local slots).
    pub kmap: crate::highmem::KmapState,
}

// SAFETY: all shared mutable state is behind locks or atomics; raw pointers
// point into the machine's own RAM, which lives as long as the machine.
unsafe impl<P: Platform> Sync for Kmem<P> {}
// SAFETY: as above.
unsafe impl<P: Platform + Send> Send for Kmem<P> {}

/// `printk` into a machine: `pr!(kmem, "fmt", args...)`.
#[macro_export]
macro_rules! pr {
    ($k:expr, $($arg:tt)*) => { $k.printk(format_args!($($arg)*)) };
}

/// `, NNNK highmem`, which `mem_init_print_info` adds under `CONFIG_HIGHMEM`.
struct HighmemSuffix(Option<usize>);

impl fmt::Display for HighmemSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(k) => write!(f, ", {k}K highmem"),
            None => Ok(()),
        }
    }
}

/// Whether an unknown parameter names a module's (`name.param`): the
/// kernel's `unknown_bootoption` drops those silently ("Unused module
/// parameter") instead of passing them to init.
fn is_module_param(u: &str) -> bool {
    u.split('=').next().is_some_and(|name| name.contains('.'))
}

/// The parameters the kernel passes to init, as `print_unknown_bootoptions`
/// lists them on one line: init's arguments (no value) first, then its
/// environment (`name=value`), each group in command-line order.
struct UnknownBootoptions<'a>(&'a crate::cmdline::BootParams);

impl fmt::Display for UnknownBootoptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let passed = self.0.unknown().filter(|u| !is_module_param(u));
        let args = passed.clone().filter(|u| !u.contains('='));
        let env = passed.filter(|u| u.contains('='));
        for (i, u) in args.chain(env).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(u)?;
        }
        Ok(())
    }
}

struct BootLog<'a, P: Platform> {
    platform: &'a P,
    ring: &'a mut LogRing,
}

impl<P: Platform> BootLog<'_, P> {
    fn line(&mut self, args: fmt::Arguments<'_>) {
        let _ = self.ring.write_fmt(args);
        let _ = self.ring.write_str("\n");
        self.platform.printk(args);
    }
}

impl<P: Platform> Kmem<P> {
    /// Boot a machine.
    ///
    /// # Safety
    /// Every RAM range of `info.e820` must be mapped read-write at
    /// `info.page_offset + phys` (`page_offset` page-aligned) for as long as
    /// the machine is used, and
    /// nothing else may use that memory. The returned pointer is valid until
    /// the caller tears the mapping down (after `drop_in_place` of the machine).
    pub unsafe fn boot(platform: P, info: &BootInfo<'_>) -> Result<NonNull<Kmem<P>>, BootError> {
        // Two calls, not one body: the first phase's frame (the memblock,
        // the machine structure's parts as they are assembled) is popped
        // before the second phase's deep calls, so the boot's stack is the
        // larger of the two rather than their sum. Every page of a frame is
        // touched (stack probes), and a hosted program keeps it resident.
        // SAFETY: the caller's guarantees, passed on.
        let kmem_ptr = unsafe { Self::setup_arch(platform, info) }?;
        // SAFETY: `setup_arch` initialised the machine at `kmem_ptr`.
        unsafe { Self::mm_core_init(kmem_ptr, info) }
    }

    /// The first phase of [`Kmem::boot`] (the kernel's `setup_arch` and
    /// `free_area_init`): memblock from the memory map, the boot
    /// allocations, the nodes, zones and memmap, and the machine structure,
    /// built in place in RAM. Returns it, not yet usable.
    ///
    /// # Safety
    /// As for [`Kmem::boot`].
    #[inline(never)]
    unsafe fn setup_arch(platform: P, info: &BootInfo<'_>) -> Result<*mut Kmem<P>, BootError> {
        let params = info.params;
        debug_assert!(info.page_offset.is_multiple_of(PAGE_SIZE), "unaligned linear map");
        let nr_cpus = platform.nr_cpu_ids();
        if nr_cpus == 0 {
            return Err(BootError::NoCpus);
        }

        // 1. memblock from the memory map.
        let mut mb = Memblock::new();
        // SAFETY: the caller guarantees RAM is mapped at page_offset + phys.
        unsafe { mb.set_direct_map(info.page_offset) };
        // SAFETY: the caller says whether RAM nobody wrote reads as zero, and
        // nothing but memblock hands RAM out before the buddy allocator.
        unsafe { mb.set_ram_zeroed(info.ram_zeroed) };
        for e in info.e820.entries() {
            if e.kind == E820Type::Ram {
                let start = page_align(e.addr as usize) as u64;
                let end = (e.addr + e.size) & !(PAGE_SIZE as u64 - 1);
                if end > start {
                    mb.add(start, end - start)
                        .map_err(|_| BootError::TooManyRegions)?;
                }
            }
        }
        if mb.phys_mem_size() == 0 {
            return Err(BootError::NoMemory);
        }
        // Page 0 is never used (BIOS data, and NULL's page frame).
        mb.reserve(0, PAGE_SIZE as u64)
            .map_err(|_| BootError::TooManyRegions)?;
        for &(base, size) in info.reserved {
            mb.reserve(base, size).map_err(|_| BootError::TooManyRegions)?;
        }
        let end_of_ram = mb.end_of_dram();
        let max_pfn = (end_of_ram >> PAGE_SHIFT) as usize;

        // 2. Lowmem, nodes.
        let low = crate::e820::max_low_pfn(info.e820, params);
        let highmem = low.is_some();
        let max_low_pfn = low.map_or(max_pfn, |low| (low as usize).min(max_pfn));
        mb.set_current_limit((max_low_pfn as u64) << PAGE_SHIFT);
        let mut node_ranges = [(0u64, 0u64); MAX_NUMNODES];
        let mut nr_nodes = 1;
        node_ranges[0] = (0, end_of_ram);
        if let (Some(n), false) = (params.numa_fake, params.numa_off) {
            if n > 1 {
                let (r, cnt) = crate::e820::numa_emulation(info.e820, n.min(MAX_NUMNODES));
                if cnt > 1 {
                    nr_nodes = cnt.min(MAX_NUMNODES);
                    node_ranges[..nr_nodes].copy_from_slice(&r[..nr_nodes]);
                    node_ranges[0].0 = 0;
                    node_ranges[nr_nodes - 1].1 = end_of_ram;
                }
            }
        }
        for (nid, &(s, e)) in node_ranges[..nr_nodes].iter().enumerate() {
            let _ = mb.set_node(s, e - s, crate::memblock::Which::Memory, nid as i32);
        }

        // 3. Boot allocations.
        // Not zeroed: the ring reads back only what it wrote, so the part of
        // its 128 KiB that the log never reaches stays untouched (and costs
        // a hosted machine no resident memory).
        let ring_buf = mb.alloc_raw(LOG_BUF_LEN as u64, PAGE_SIZE as u64);
        if ring_buf.is_null() {
            return Err(BootError::OutOfBootMemory("the log buffer"));
        }
        // SAFETY: memblock returned LOG_BUF_LEN writable bytes that stay reserved.
        let mut ring = unsafe { LogRing::new(ring_buf, LOG_BUF_LEN) };
        let mut log = BootLog {
            platform: &platform,
            ring: &mut ring,
        };
        log.line(format_args!(
            "Linux version 6.12.0-kmem (kmem {}) #1 SMP",
            env!("CARGO_PKG_VERSION")
        ));
        log.line(format_args!("Command line: {}", params.cmdline()));
        log_e820(&mut log, info.e820);
        for u in params.errors() {
            log.line(format_args!("{u}"));
        }

        // On a page boundary, for the layout's sake (see `Kmem`). On RAM that
        // starts zeroed memblock does not clear it (`Memblock::set_ram_zeroed`):
        // the tables at the ends stay unwritten, as does the memmap of free
        // memory below.
        let kmem_size = core::mem::size_of::<Kmem<P>>() as u64;
        let kmem_ptr = mb.alloc(kmem_size, PAGE_SIZE as u64) as *mut Kmem<P>;
        if kmem_ptr.is_null() {
            return Err(BootError::OutOfBootMemory("the machine structure"));
        }
        let memmap_bytes = (max_pfn * core::mem::size_of::<Page>()) as u64;
        let mem_map = mb.alloc(page_align(memmap_bytes as usize) as u64, PAGE_SIZE as u64) as *mut Page;
        if mem_map.is_null() {
            return Err(BootError::OutOfBootMemory("the memmap"));
        }
        let nr_pageblocks = (max_pfn >> PAGEBLOCK_ORDER) + 1;
        let pageblocks = mb.alloc((nr_pageblocks * core::mem::size_of::<PageblockInfo>()) as u64, 64)
            as *mut PageblockInfo;
        if pageblocks.is_null() {
            return Err(BootError::OutOfBootMemory("the pageblock table"));
        }
        for i in 0..nr_pageblocks {
            // SAFETY: the table has nr_pageblocks entries.
            unsafe {
                // Outside every zone a pageblock is Isolate, so that the free
                // fast path, which takes pcp types only, always finds a zone.
                *pageblocks.add(i) = PageblockInfo {
                    zone_id: NO_ZONE,
                    mt: crate::gfp::MigrateType::Isolate as u8,
                }
            };
        }
        let map = MemMap {
            pages: mem_map,
            pageblocks,
            max_pfn,
            memmap_bytes: max_pfn * core::mem::size_of::<Page>(),
        };

        // Zone boundaries by physical address.
        let zone_limits: [u64; MAX_NR_ZONES] = if highmem {
            // i386: DMA, Normal up to max_low_pfn, HighMem above; no DMA32.
            let low = (max_low_pfn as u64) << PAGE_SHIFT;
            [
                MAX_DMA_ADDR.min(low),
                MAX_DMA_ADDR.min(low),
                low,
                u64::MAX,
                u64::MAX,
            ]
        } else {
            [MAX_DMA_ADDR, MAX_DMA32_ADDR, u64::MAX, u64::MAX, u64::MAX]
        };

        let mut nodes = [ptr::null_mut::<PgData>(); MAX_NUMNODES];
        let pcp_bytes = (nr_cpus * core::mem::size_of::<PerCpuPages>()) as u64;
        let hot_entries = Kmem::<P>::pcp_hot_entries(&platform, nr_cpus);
        for nid in 0..nr_nodes {
            let pg = mb.alloc_try_nid(
                core::mem::size_of::<PgData>() as u64,
                64,
                0,
                MEMBLOCK_ALLOC_ACCESSIBLE,
                nid as i32,
            ) as *mut PgData;
            if pg.is_null() {
                return Err(BootError::OutOfBootMemory("node data"));
            }
            let (ns, ne) = node_ranges[nid];
            // The node spans its first to its last RAM page; zones are clipped to that.
            let (node_first, node_span) = first_last_present(&mb, ns, ne);
            let node_lo = (node_first as u64) << PAGE_SHIFT;
            let node_hi = node_lo + ((node_span as u64) << PAGE_SHIFT);
            let mut zstart = ns;
            for zt in ZoneType::ALL {
                let zi = zt as usize;
                let zend = zone_limits[zi].min(ne).max(zstart);
                let (s, e) = (zstart, zend);
                zstart = zend;
                let start_pfn = (s >> PAGE_SHIFT) as usize;
                let end_pfn = (e >> PAGE_SHIFT) as usize;
                let mut present = 0usize;
                for (rs, re, _) in mb.memory_ranges(NUMA_NO_NODE) {
                    let a = rs.max(s);
                    let b = re.min(e);
                    if b > a {
                        present += ((b - a) >> PAGE_SHIFT) as usize;
                    }
                }
                // zone_spanned_pages_in_node: the zone's range within the node's span.
                let (zone_start_pfn, spanned) = if present == 0 {
                    (0, 0)
                } else {
                    let a = s.max(node_lo);
                    let b = e.min(node_hi);
                    ((a >> PAGE_SHIFT) as usize, ((b - a) >> PAGE_SHIFT) as usize)
                };
                let pcp = if present != 0 {
                    let p = mb.alloc_try_nid(pcp_bytes, 64, 0, MEMBLOCK_ALLOC_ACCESSIBLE, nid as i32)
                        as *mut PerCpuPages;
                    if p.is_null() {
                        return Err(BootError::OutOfBootMemory("per-CPU page lists"));
                    }
                    p
                } else {
                    ptr::null_mut()
                };
                let mut hot = [ptr::null_mut::<PcpHot>(); MIGRATE_PCPTYPES];
                if present != 0 && hot_entries != 0 {
                    let n = MIGRATE_PCPTYPES * hot_entries;
                    let p = mb.alloc_try_nid(
                        (n * core::mem::size_of::<PcpHot>()) as u64,
                        core::mem::align_of::<PcpHot>() as u64,
                        0,
                        MEMBLOCK_ALLOC_ACCESSIBLE,
                        nid as i32,
                    ) as *mut PcpHot;
                    if p.is_null() {
                        return Err(BootError::OutOfBootMemory("per-CPU hot page arrays"));
                    }
                    for i in 0..n {
                        // SAFETY: memblock gave us `n` zeroed entries (atomics: valid).
                        unsafe { (*p.add(i)).set_off() };
                    }
                    for (mt, h) in hot.iter_mut().enumerate() {
                        // SAFETY: each migrate type's entries are consecutive; CPU 0's follows those of
                        // the negative CPU ids.
                        *h = unsafe {
                            p.add(mt * hot_entries + crate::page_alloc::pcp_hot::HOT_NEGATIVE_CPU_IDS)
                        };
                    }
                }
                // SAFETY: `pg` points at zeroed memory large enough for PgData.
                unsafe {
                    let z = ptr::addr_of_mut!((*pg).node_zones[zi]);
                    ptr::write(
                        z,
                        Zone {
                            lock: SpinLock::new(core::mem::zeroed::<ZoneFree>()),
                            free_pages: AtomicIsize::new(0),
                            watermark: Default::default(),
                            watermark_boost: AtomicUsize::new(0),
                            lowmem_reserve: Default::default(),
                            zone_start_pfn,
                            spanned_pages: spanned,
                            present_pages: present,
                            managed_pages: AtomicUsize::new(0),
                            pcp,
                            hot,
                            node: nid as u8,
                            zone_type: zt,
                            stats: ZoneStats::default(),
                            free_orders: core::sync::atomic::AtomicU32::new(0),
                            fast_mark: Default::default(),
                        },
                    );
                    ZoneFree::init((*z).lock.data_ptr(), ptr::addr_of!((*z).free_orders));
                }
                let zone_id = (nid * MAX_NR_ZONES + zi) as u8;
                if present != 0 {
                    let mut pfn = start_pfn & !(PAGEBLOCK_NR_PAGES - 1);
                    while pfn < end_pfn.min(max_pfn) {
                        // SAFETY: pfn < max_pfn so the pageblock entry exists.
                        unsafe {
                            *pageblocks.add(pfn >> PAGEBLOCK_ORDER) = PageblockInfo {
                                zone_id,
                                mt: crate::gfp::MigrateType::Movable as u8,
                            }
                        };
                        pfn += PAGEBLOCK_NR_PAGES;
                    }
                }
            }
            // SAFETY: `pg` is valid (see above).
            unsafe {
                (*pg).node_id = nid;
                (*pg).node_start_pfn = node_first;
                (*pg).node_spanned_pages = node_span;
                (*pg).node_present_pages = (*pg).node_zones.iter().map(|z| z.present_pages).sum();
            }
            nodes[nid] = pg;
        }

        // cpu_to_node: CPUs spread over the nodes in equal consecutive runs.
        let cpu_node = mb.alloc(nr_cpus as u64, 64);
        if cpu_node.is_null() {
            return Err(BootError::OutOfBootMemory("the cpu-to-node map"));
        }
        for cpu in 0..nr_cpus {
            // SAFETY: memblock gave us nr_cpus bytes.
            unsafe { *cpu_node.add(cpu) = (cpu * nr_nodes / nr_cpus).min(nr_nodes - 1) as u8 };
        }
        let cpu_node = cpu_node as *const u8;

        // Boot log: zone ranges as the kernel prints them.
        log.line(format_args!("Zone ranges:"));
        {
            let zones: &[ZoneType] = if highmem {
                &[ZoneType::Dma, ZoneType::Normal, ZoneType::HighMem]
            } else {
                &[ZoneType::Dma, ZoneType::Dma32, ZoneType::Normal]
            };
            for &zt in zones {
                let mut lo = u64::MAX;
                let mut hi = 0u64;
                for pg in &nodes[..nr_nodes] {
                    // SAFETY: nodes were initialised above.
                    let z = unsafe { &(**pg).node_zones[zt as usize] };
                    if z.present_pages != 0 {
                        lo = lo.min((z.zone_start_pfn as u64) << PAGE_SHIFT);
                        hi = hi.max((z.end_pfn() as u64) << PAGE_SHIFT);
                    }
                }
                if hi == 0 {
                    log.line(format_args!("  {:<8} empty", zt.name()));
                } else {
                    log.line(format_args!(
                        "  {:<8} [mem {}-{}]",
                        zt.name(),
                        Hex18(lo),
                        Hex18(hi - 1)
                    ));
                }
            }
        }
        log.line(format_args!("Movable zone start for each node"));
        log.line(format_args!("Early memory node ranges"));
        for (s, e, nid) in mb.memory_ranges(NUMA_NO_NODE) {
            log.line(format_args!(
                "  node {:>3}: [mem {}-{}]",
                nid.max(0),
                Hex18(s),
                Hex18(e - 1)
            ));
        }
        if nr_nodes > 1 {
            for (nid, &(s, e)) in node_ranges[..nr_nodes].iter().enumerate() {
                log.line(format_args!(
                    "Faking node {} at [mem {}-{}] ({}MB)",
                    nid,
                    Hex18(s),
                    Hex18(e - 1),
                    (e - s) >> 20
                ));
            }
        }
        log.line(format_args!(
            "setup_percpu: NR_CPUS:{} nr_cpumask_bits:{} nr_cpu_ids:{} nr_node_ids:{}",
            nr_cpus.next_power_of_two().max(64),
            nr_cpus,
            nr_cpus,
            nr_nodes
        ));
        if params.unknown().any(|u| !is_module_param(u)) {
            log.line(format_args!(
                "Unknown kernel command line parameters \"{}\", will be passed to user space.",
                UnknownBootoptions(params)
            ));
        }

        // Build the machine in place.
        let oom_wait_ms = params.oom_wait_ms.unwrap_or(DEFAULT_OOM_WAIT_MS);
        let wsf = params.watermark_scale_factor.unwrap_or(10) as usize;
        let _ = log;
        // The machine is built here, then copied in from `params` up to
        // `preferred_zone`. The tables before and after that range (the zone
        // table, the preferred zones, the zone lists, the per-CPU allocator,
        // the iomem tree, the kmap state) start as all-zero bytes, which is what `kmem_ptr`
        // holds: on a host they are pages the boot never touches (see `Kmem`).
        const {
            assert!(core::mem::offset_of!(Kmem<P>, zone_table) == 0);
            assert!(core::mem::offset_of!(Kmem<P>, params) == core::mem::size_of::<[*const Zone; 256]>());
            assert!(
                core::mem::offset_of!(Kmem<P>, preferred_zone) < core::mem::offset_of!(Kmem<P>, zonelists)
            );
            assert!(core::mem::offset_of!(Kmem<P>, zonelists) < core::mem::offset_of!(Kmem<P>, percpu));
            assert!(core::mem::offset_of!(Kmem<P>, percpu) < core::mem::offset_of!(Kmem<P>, iomem));
            assert!(core::mem::offset_of!(Kmem<P>, iomem) < core::mem::offset_of!(Kmem<P>, kmap));
        };
        let machine = core::mem::ManuallyDrop::new(Kmem {
            platform,
            map,
            page_offset: info.page_offset,
            max_low_pfn,
            highmem,
            nr_nodes,
            nodes,
            zonelists: [[ZoneList::EMPTY; MAX_NR_ZONES]; MAX_NUMNODES],
            preferred_zone: [[ptr::null(); MAX_NR_ZONES]; MAX_NUMNODES],
            zone_table: [ptr::null(); 256],
            gfp_zone_table: [NO_ZONE; 16],
            cpu_node,
            nr_cpus,
            state: AtomicU8::new(MachineState::Boot as u8),
            // `mb` itself is copied in below, straight from this
            // frame: as a field of the value written here it would
            // take a second 6 KiB copy on the boot's stack.
            memblock: SpinLock::new(Memblock::new()),
            params: *params,
            vm: VmTunables {
                min_free_kbytes: AtomicUsize::new(0),
                watermark_scale_factor: AtomicUsize::new(wsf),
                lowmem_reserve_ratio: DEFAULT_LOWMEM_RESERVE_RATIO.map(AtomicUsize::new),
                oom_wait_ms: AtomicU64::new(oom_wait_ms),
            },
            events: VmEvents::default(),
            totalram_pages: AtomicUsize::new(0),
            totalreserve_pages: AtomicUsize::new(0),
            reserved_pages: 0,
            reclaim: Reclaim::new(),
            slab: crate::slab::SlabState::new(),
            kswapd: crate::kswapd::Kswapd::new(),
            percpu: crate::percpu::PercpuState::new(),
            vmalloc: crate::vmalloc::VmallocState::new(),
            iomem: crate::ioremap::IomemState::new(),
            kmap: crate::highmem::KmapState::new(),
            log: SpinLock::new(ring),
            warn_once: AtomicU64::new(0),
            ratelimit_alloc: RateLimit::new(10_000, 1),
            ratelimit_bad_page: RateLimit::new(60_000, 60),
            boot_free_pages: [const { [const { AtomicUsize::new(0) }; NR_PAGE_ORDERS] };
                MAX_NUMNODES * MAX_NR_ZONES],
            tainted_bad_page: AtomicBool::new(false),
            boot_allocated: AtomicUsize::new(0),
            init_on_alloc: params.init_on_alloc == Some(true),
            init_on_free: params.init_on_free == Some(true),
        });
        // The boot parameters go in from `params` by `copy_to_zeroed` (their
        // lists of unknown parameters, errors and `memmap=` items are mostly
        // empty, a page of zero bytes), the other fields written here by a
        // copy of one exact range (the compiler builds just that range on
        // the stack, not the whole 65 kB value).
        let copied = core::mem::offset_of!(Kmem<P>, vmalloc)..core::mem::offset_of!(Kmem<P>, preferred_zone);
        // `kmem_ptr` is zeroed (fresh zeroed RAM, or memblock's memset), aligned memory of the right
        // size reserved in memblock, and all-zero bytes are the value of the fields outside
        // `copied` and `params` (`ZoneList::EMPTY`, null pointers, `KmapState::new()` and
        // `PercpuState::new()`: `highmem.rs` and `percpu.rs` test them; `IomemState::new()` but
        // for its root, which `iomem_init` writes: `ioremap.rs` tests it).
        // SAFETY: as just said; `machine` is forgotten, so its bytes belong to `kmem_ptr` alone,
        // and `mb` is moved in by a copy of its bytes and never used again.
        unsafe {
            ptr::copy_nonoverlapping(
                (&*machine as *const Kmem<P> as *const u8).add(copied.start),
                (kmem_ptr as *mut u8).add(copied.start),
                copied.len(),
            );
            const {
                assert!(
                    core::mem::size_of::<BootParams>().is_multiple_of(8)
                        && core::mem::align_of::<BootParams>() >= 8
                )
            };
            copy_to_zeroed(
                params as *const BootParams as *const u8,
                ptr::addr_of_mut!((*kmem_ptr).params) as *mut u8,
                core::mem::size_of::<BootParams>(),
            );
            Reclaim::init(ptr::addr_of_mut!((*kmem_ptr).reclaim));
            // The machine owns the memblock from here on.
            let mb = core::mem::ManuallyDrop::new(mb);
            ptr::copy_nonoverlapping(&*mb, (*kmem_ptr).memblock.get_mut(), 1);
        }
        Ok(kmem_ptr)
    }

    /// The second phase of [`Kmem::boot`] (the kernel's `mm_core_init`):
    /// zonelists, the boot memory freed to the buddy allocator, the slab
    /// allocator, per-CPU memory, vmalloc.
    ///
    /// # Safety
    /// `kmem_ptr` came from [`Kmem::setup_arch`] with the same `info`, and
    /// nothing else uses the machine yet.
    #[inline(never)]
    unsafe fn mm_core_init(
        kmem_ptr: *mut Kmem<P>,
        info: &BootInfo<'_>,
    ) -> Result<NonNull<Kmem<P>>, BootError> {
        // SAFETY: initialised by setup_arch; from here on shared access only.
        let k = unsafe { &mut *kmem_ptr };
        k.build_zonelists();
        // RAM that started zeroed and that memblock never handed out twice
        // still reads as zero wherever memblock left it free.
        let mb = k.memblock.get_mut();
        let fresh = mb.fresh_reads_zero();
        // SAFETY: `false` promises nothing. From here on the buddy allocator
        // hands RAM out.
        unsafe { mb.set_ram_zeroed(false) };
        k.mem_init(fresh);
        k.kmem_cache_init()?;
        k.pcp_hot_init();
        k.percpu_init();
        k.iomem_init(info.e820);
        let vmalloc_window = k.kmap_init(info.vmalloc_window);
        k.vmalloc_init(vmalloc_window);
        // The boot state every page must return to: after the boot-time
        // allocations of the slab layer, with the per-CPU lists drained.
        k.drain_all_pages();
        k.record_boot_free_state();
        Ok(NonNull::from(&*k))
    }

    /// `build_zonelists`, the zone table and the `gfp_zone` table.
    fn build_zonelists(&mut self) {
        for nid in 0..self.nr_nodes {
            for highest in 0..MAX_NR_ZONES {
                let mut zl = ZoneList::EMPTY;
                for i in 0..self.nr_nodes {
                    let n = (nid + i) % self.nr_nodes;
                    // SAFETY: node pointers below nr_nodes are initialised.
                    let pg = unsafe { &*self.nodes[n] };
                    for z in pg.node_zones[..=highest].iter().rev() {
                        if z.is_populated() {
                            zl.zones[zl.nr as usize] = z;
                            zl.nr += 1;
                        }
                    }
                    if i == 0 {
                        zl.nr_local = zl.nr;
                    }
                }
                self.preferred_zone[nid][highest] = zl.zones[0];
                self.zonelists[nid][highest] = zl;
            }
            // SAFETY: as above.
            let pg = unsafe { &*self.nodes[nid] };
            for (zi, z) in pg.node_zones.iter().enumerate() {
                self.zone_table[nid * MAX_NR_ZONES + zi] = z;
            }
        }
        for bits in 0..16u32 {
            self.gfp_zone_table[bits as usize] =
                match crate::gfp::gfp_zone(crate::gfp::Gfp(bits), self.highmem) {
                    Ok(z) => z as u8,
                    Err(_) => NO_ZONE,
                };
        }
    }

    /// The pfns holding the memmap itself. Their descriptors are never
    /// written (the kernel marks them `PG_reserved` like every reserved
    /// page): they are the last 1/64 of the memmap, one page of descriptors
    /// per 64 memmap pages, 1.25 MiB on a 4 GiB machine that a hosted
    /// process would otherwise keep resident for nothing. Nothing allocates
    /// or frees these pages; `page_is_reserved` answers for them, and a
    /// stray `__free_pages` of one finds a zero reference count and is
    /// reported without freeing it.
    pub fn memmap_pfns(&self) -> core::ops::Range<usize> {
        let start = (self.virt_to_phys(self.map.pages as *const u8) >> PAGE_SHIFT) as usize;
        start..start + self.map.memmap_bytes.div_ceil(PAGE_SIZE)
    }

    /// `PageReserved` of pfn `pfn`'s page, including the memmap's own pages
    /// (see [`Kmem::memmap_pfns`]).
    pub fn page_is_reserved(&self, pfn: usize) -> bool {
        match self.pfn_to_page(pfn) {
            // SAFETY: a descriptor of this machine's memmap.
            Some(pg) => unsafe { pg.as_ref() }.is_reserved() || self.memmap_pfns().contains(&pfn),
            None => false,
        }
    }

    /// `mem_init` / `memblock_free_all`: hand free memory to the buddy
    /// allocator. `fresh`: memblock's free ranges read as zero (nothing was
    /// ever written there), so the untouched blocks need no discard.
    fn mem_init(&mut self, fresh: bool) {
        let mut reserved_pages = 0usize;
        let memmap = self.memmap_pfns();
        {
            let mb = self.memblock.get_mut();
            // memmap_init_reserved_pages: reserved regions take the node of the memory they are in...
            let mut mem = [(0u64, 0u64, 0i32); 128];
            let mut n = 0;
            for (s, e, nid) in mb.memory_ranges(NUMA_NO_NODE) {
                if n < mem.len() {
                    mem[n] = (s, e, nid);
                    n += 1;
                }
            }
            for &(s, e, nid) in &mem[..n] {
                let _ = mb.set_node(s, e - s, crate::memblock::Which::Reserved, nid.max(0));
            }
            // ...and their pages inside RAM (a page whose start lies in a
            // memory region) get PG_reserved, except the memmap's own pages
            // (see `memmap_pfns`): they are counted as reserved, but their
            // descriptors are left as they are. Ranges are intersected, not
            // pages looked up one by one: the memmap is a reserved range of
            // 16,384 pages per GiB of RAM, and a search per page was most
            // of the boot's time.
            for (s, e, _) in mb.reserved_ranges() {
                let spfn = (s >> PAGE_SHIFT) as usize;
                let epfn = (((e + PAGE_SIZE as u64 - 1) >> PAGE_SHIFT) as usize).min(self.map.max_pfn);
                for r in mb.memory.regions() {
                    let first = (r.base.div_ceil(PAGE_SIZE as u64) as usize).max(spfn);
                    let end = (r.end().div_ceil(PAGE_SIZE as u64) as usize).min(epfn);
                    if first >= end {
                        continue;
                    }
                    reserved_pages += end - first;
                    // All of [first, end) but the memmap's part, [a, b).
                    let (a, b) = (memmap.start.clamp(first, end), memmap.end.clamp(first, end));
                    for pfn in (first..a).chain(b..end) {
                        // SAFETY: pfn < max_pfn.
                        unsafe { (*self.map.pfn_to_page(pfn)).set(flags::PG_RESERVED) };
                    }
                }
            }
        }
        self.reserved_pages = reserved_pages;
        // Free ranges to the buddy in max-aligned chunks.
        let mut ranges = [(0u64, 0u64); 256];
        let mut nr = 0;
        for (s, e, _) in self.memblock.get_mut().free_ranges(NUMA_NO_NODE) {
            if nr < ranges.len() {
                ranges[nr] = (s, e);
                nr += 1;
            }
        }
        let mut total = 0;
        for &(s, e) in &ranges[..nr] {
            let spfn = ((s + PAGE_SIZE as u64 - 1) >> PAGE_SHIFT) as usize;
            let epfn = ((e >> PAGE_SHIFT) as usize).min(self.map.max_pfn);
            if epfn > spfn {
                total += self.free_pages_memory(spfn, epfn, fresh);
            }
        }
        self.totalram_pages.store(total, Ordering::Relaxed);
        self.state.store(MachineState::Running as u8, Ordering::Release);

        // Watermarks, reserves and per-CPU list sizes.
        let mfk = match self.params.min_free_kbytes {
            Some(v) => v as usize,
            None => self.calculate_min_free_kbytes(),
        };
        self.vm.min_free_kbytes.store(mfk, Ordering::Relaxed);
        self.setup_per_zone_wmarks();
        self.setup_per_zone_lowmem_reserve();
        self.setup_pcp_lists();
        self.report_untouched_blocks(fresh);
        self.report_all_free_pages();

        let present: usize = self.zones().map(|z| z.present_pages).sum();
        // `CONFIG_HIGHMEM` adds the HighMem zones' managed pages.
        let high: usize = self
            .zones()
            .filter(|z| z.zone_type == ZoneType::HighMem)
            .map(|z| z.managed())
            .sum();
        pr!(
            self,
            "Memory: {}K/{}K available (0K kernel code, 0K rwdata, 0K rodata, 0K init, 0K bss, {}K reserved, 0K cma-reserved{})",
            total << (PAGE_SHIFT - 10),
            present << (PAGE_SHIFT - 10),
            (present - total.min(present)) << (PAGE_SHIFT - 10),
            HighmemSuffix(self.highmem.then_some(high << (PAGE_SHIFT - 10)))
        );
        pr!(
            self,
            "Built {} zonelists, mobility grouping on.  Total pages: {}",
            self.nr_nodes,
            total
        );
    }

    /// `__free_pages_memory`: release `[start, end)` in the largest aligned chunks.
    ///
    /// The chunks grow from `start` up to the range's most aligned point
    /// `mid` (max-order aligned at most) and shrink above it. A chunk's
    /// buddy, which the free reads, lies below a growing chunk and above a
    /// shrinking one, so the growing ones go first and the shrinking ones
    /// from the top down: every buddy read is of a descriptor already
    /// written or of one never written (reserved memory), not of one about
    /// to be written. On a host, a read of a descriptor page before its first
    /// write maps the zero page and the write then faults again. `zeroed`:
    /// the range reads as zero, untouched since the RAM was made (the
    /// chunks are listed as reported, see `free_one_page_locked`).
    fn free_pages_memory(&self, mut start: usize, end: usize, zeroed: bool) -> usize {
        if start >= end {
            return 0;
        }
        let top_bit = usize::BITS - 1 - (start ^ end).leading_zeros();
        let mid = end & !((1usize << top_bit.min(MAX_PAGE_ORDER)) - 1);
        let mut count = 0;
        // Set once a zone has no untouched range left for a run: the rest
        // of the range is listed block by block, without looking again.
        let mut untouched_full = false;
        while start < mid {
            let mut order = MAX_PAGE_ORDER.min(start.trailing_zeros());
            while start + (1 << order) > mid {
                order -= 1;
            }
            // A run of max-order Movable blocks is counted, not written
            // (untouched, `zone.rs`): 1,023 blocks on a 4 GiB machine, one
            // lock and one range.
            if order == MAX_PAGE_ORDER && !untouched_full {
                if let Some(zone) = self.page_zone_by_pfn(start) {
                    let blocks = self.untouched_run(start, mid);
                    if blocks > 0 {
                        if zone.lock.lock(&self.platform).add_untouched(start, blocks) {
                            let pages = blocks << MAX_PAGE_ORDER;
                            zone.managed_pages.fetch_add(pages, Ordering::Relaxed);
                            zone.free_pages.fetch_add(pages as isize, Ordering::Relaxed);
                            zone.stats.pgfree.fetch_add(pages, Ordering::Relaxed);
                            count += pages;
                            start += pages;
                            continue;
                        }
                        untouched_full = true;
                    }
                }
            }
            count += self.free_boot_chunk(start, order, zeroed);
            start += 1 << order;
        }
        let mut top = end;
        while top > mid {
            let mut order = MAX_PAGE_ORDER.min(top.trailing_zeros());
            while top - (1 << order) < mid {
                order -= 1;
            }
            top -= 1 << order;
            count += self.free_boot_chunk(top, order, zeroed);
        }
        count
    }

    /// Frees the boot chunk of `order` pages at `pfn` to its zone's buddy
    /// lists (none outside every zone), as reported if `zeroed` (it reads
    /// as zero); the pages it freed.
    fn free_boot_chunk(&self, pfn: usize, order: u32, zeroed: bool) -> usize {
        let Some(zone) = self.page_zone_by_pfn(pfn) else {
            return 0;
        };
        zone.managed_pages.fetch_add(1 << order, Ordering::Relaxed);
        // Memblock says the chunk is free RAM of this zone; the caller, that it reads as zero if `zeroed`.
        // SAFETY: as just said; nobody uses the chunk.
        unsafe { self.free_one_page_locked(zone, self.map.pfn_to_page(pfn), pfn, order, true, zeroed) };
        1 << order
    }

    /// How many max-order blocks from the max-order-aligned `start` and
    /// below `end` lie in `start`'s zone with every pageblock Movable.
    fn untouched_run(&self, start: usize, end: usize) -> usize {
        const PER_BLOCK: usize = 1 << (MAX_PAGE_ORDER - PAGEBLOCK_ORDER);
        let want = PageblockInfo {
            zone_id: self.map.pageblock(start).zone_id,
            mt: crate::gfp::MigrateType::Movable as u8,
        };
        let want = u16::from_ne_bytes([want.zone_id, want.mt]);
        let entries = ((end - start) >> MAX_PAGE_ORDER) * PER_BLOCK;
        const { assert!(core::mem::size_of::<PageblockInfo>() == 2) };
        // SAFETY: `start` is max-order aligned and the entries are those of
        // whole max-order blocks below `end` <= max_pfn, which the table
        // covers; an entry is two bytes (`repr(C)`, checked above) and the
        // table is 64-byte aligned, so entry `start >> PAGEBLOCK_ORDER` is
        // 2-byte aligned.
        let table = unsafe {
            core::slice::from_raw_parts(
                self.map.pageblocks.add(start >> PAGEBLOCK_ORDER) as *const u16,
                entries,
            )
        };
        // 64 entries at a time with no early exit, which LLVM turns into a
        // few vector operations (4,096 entries at `mem=8G`), then one by one.
        let mut same = 0;
        for chunk in table.chunks_exact(64) {
            if chunk.iter().fold(0, |acc, &e| acc | (e ^ want)) != 0 {
                break;
            }
            same += chunk.len();
        }
        same += table[same..].iter().take_while(|&&e| e == want).count();
        same / PER_BLOCK
    }

    /// `calculate_min_free_kbytes`: sqrt(lowmem_kbytes * 16), clamped to [128, 262144].
    pub fn calculate_min_free_kbytes(&self) -> usize {
        let lowmem_kbytes = self.nr_free_buffer_pages() << (PAGE_SHIFT - 10);
        int_sqrt(lowmem_kbytes * 16).clamp(128, 262144)
    }

    /// `nr_free_buffer_pages`: managed pages above the high watermark in lowmem zones.
    pub fn nr_free_buffer_pages(&self) -> usize {
        self.zones()
            .filter(|z| z.zone_type <= ZoneType::Normal)
            .map(|z| z.managed().saturating_sub(z.wmark(WMARK_HIGH)))
            .sum()
    }

    /// `__setup_per_zone_wmarks`.
    pub fn setup_per_zone_wmarks(&self) {
        let pages_min = self.vm.min_free_kbytes.load(Ordering::Relaxed) >> (PAGE_SHIFT - 10);
        let wsf = self.vm.watermark_scale_factor.load(Ordering::Relaxed);
        let lowmem_pages: usize = self
            .zones()
            .filter(|z| !is_highmem_idx(z.zone_type))
            .map(|z| z.managed())
            .sum();
        for z in self.nodes().flat_map(|pg| pg.node_zones.iter()) {
            let managed = z.managed();
            let tmp = if lowmem_pages == 0 {
                0
            } else {
                (pages_min as u64 * managed as u64 / lowmem_pages as u64) as usize
            };
            let min = if is_highmem_idx(z.zone_type) {
                (managed / 1024).clamp(SWAP_CLUSTER_MAX, 128)
            } else {
                tmp
            };
            let delta = (tmp >> 2).max(managed * wsf / 10000);
            z.watermark[WMARK_MIN].store(min, Ordering::Relaxed);
            z.watermark[WMARK_LOW].store(min + delta, Ordering::Relaxed);
            z.watermark[WMARK_HIGH].store(min + 2 * delta, Ordering::Relaxed);
            z.watermark[WMARK_PROMO].store(min + 3 * delta, Ordering::Relaxed);
            z.watermark_boost.store(0, Ordering::Relaxed);
        }
        self.calculate_totalreserve_pages();
    }

    /// `setup_per_zone_lowmem_reserve`.
    pub fn setup_per_zone_lowmem_reserve(&self) {
        for pg in self.nodes() {
            for i in 0..MAX_NR_ZONES {
                let zone = &pg.node_zones[i];
                let ratio = self.vm.lowmem_reserve_ratio[i].load(Ordering::Relaxed);
                let clear = ratio == 0 || zone.managed() == 0;
                let mut managed = 0;
                for j in 0..MAX_NR_ZONES {
                    if j <= i {
                        zone.lowmem_reserve[j].store(0, Ordering::Relaxed);
                        continue;
                    }
                    managed += pg.node_zones[j].managed();
                    let v = if clear { 0 } else { managed / ratio };
                    zone.lowmem_reserve[j].store(v, Ordering::Relaxed);
                }
            }
        }
        self.calculate_totalreserve_pages();
    }

    /// `calculate_totalreserve_pages`, and the fast path's marks.
    fn calculate_totalreserve_pages(&self) {
        for z in self.nodes().flat_map(|pg| pg.node_zones.iter()) {
            for j in 0..MAX_NR_ZONES {
                let m = z.wmark(WMARK_LOW) + z.lowmem_reserve[j].load(Ordering::Relaxed);
                z.fast_mark[j].store(m, Ordering::Relaxed);
            }
        }
        let mut total = 0;
        for z in self.zones() {
            let max = z
                .lowmem_reserve
                .iter()
                .map(|r| r.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0);
            total += (max + z.wmark(WMARK_HIGH)).min(z.managed());
        }
        self.totalreserve_pages.store(total, Ordering::Relaxed);
    }

    /// `zone_set_pageset_high_and_batch` for every zone and CPU.
    fn setup_pcp_lists(&self) {
        for z in self.zones() {
            if z.pcp.is_null() {
                continue;
            }
            let batch = zone_batchsize(z.managed());
            let (hmin, hmax) = zone_highsize(z.managed(), z.wmark(WMARK_LOW), batch, self.nr_cpus);
            for cpu in 0..self.nr_cpus {
                // SAFETY: the pcp array has nr_cpus entries, zeroed by memblock, never moved.
                unsafe {
                    let p = z.pcp.add(cpu);
                    ptr::write(
                        ptr::addr_of_mut!((*p).lock),
                        SpinLock::new(core::mem::zeroed::<PcpLists>()),
                    );
                    PcpLists::init((*p).lock.data_ptr(), batch, hmin, hmax);
                }
            }
        }
    }

    /// Pages allocated during boot after the hand-over (the slab layer's
    /// caches): with them, every page is either free or allocated by a user.
    pub fn boot_allocated_pages(&self) -> usize {
        self.boot_allocated.load(Ordering::Relaxed)
    }

    /// Remember the buddy lists as they are right after boot.
    fn record_boot_free_state(&self) {
        self.boot_allocated.store(
            self.totalram_pages()
                .saturating_sub(self.nr_free_pages() + self.nr_pcp_pages()),
            Ordering::Relaxed,
        );
        for z in self.zones() {
            let id = z.node as usize * MAX_NR_ZONES + z.zone_type as usize;
            let f = z.lock.lock(&self.platform);
            for o in 0..NR_PAGE_ORDERS {
                self.boot_free_pages[id][o].store(f.free_area[o].nr_free, Ordering::Relaxed);
            }
        }
    }

    // ---- accessors -------------------------------------------------------

    /// Possible CPUs.
    pub fn nr_cpu_ids(&self) -> usize {
        self.nr_cpus
    }

    /// Nodes.
    pub fn nr_node_ids(&self) -> usize {
        self.nr_nodes
    }

    /// Whether the machine has a HighMem zone.
    pub fn has_highmem(&self) -> bool {
        self.highmem
    }

    /// `NODE_DATA(nid)`.
    pub fn node_data(&self, nid: usize) -> Option<&PgData> {
        if nid < self.nr_nodes {
            // SAFETY: node pointers below nr_nodes were initialised at boot.
            Some(unsafe { &*self.nodes[nid] })
        } else {
            None
        }
    }

    /// All nodes.
    pub fn nodes(&self) -> impl Iterator<Item = &PgData> + '_ {
        // SAFETY: node pointers below nr_nodes were initialised at boot.
        self.nodes[..self.nr_nodes].iter().map(|p| unsafe { &**p })
    }

    /// All populated zones, node by node, lowest zone first.
    pub fn zones(&self) -> impl Iterator<Item = &Zone> + '_ {
        self.nodes()
            .flat_map(|pg| pg.node_zones.iter().filter(|z| z.is_populated()))
    }

    /// The zone a pfn belongs to.
    #[inline(always)]
    pub fn page_zone_by_pfn(&self, pfn: usize) -> Option<&Zone> {
        if pfn >= self.map.max_pfn {
            return None;
        }
        let id = self.map.pageblock(pfn).zone_id;
        self.zone_by_id(id)
    }

    #[inline(always)]
    pub(crate) fn zone_by_id(&self, id: u8) -> Option<&Zone> {
        // SAFETY: non-null entries point at zones of this machine.
        unsafe { self.zone_table[id as usize].as_ref() }
    }

    /// Total RAM pages managed by the buddy allocator (`totalram_pages`).
    pub fn totalram_pages(&self) -> usize {
        self.totalram_pages.load(Ordering::Relaxed)
    }

    /// `totalreserve_pages`.
    pub fn totalreserve_pages(&self) -> usize {
        self.totalreserve_pages.load(Ordering::Relaxed)
    }

    /// `global_zone_page_state(NR_FREE_PAGES)`.
    pub fn nr_free_pages(&self) -> usize {
        self.zones().map(|z| z.nr_free()).sum()
    }

    /// Pages sitting on per-CPU lists.
    pub fn nr_pcp_pages(&self) -> usize {
        let mut n = 0;
        for z in self.zones() {
            for cpu in 0..self.nr_cpus {
                // SAFETY: cpu < nr_cpus.
                let pcp = unsafe { z.pcp(cpu) };
                let g = pcp.lock.lock(&self.platform);
                n += g.count + self.pcp_hot_counts(z, cpu).0;
            }
        }
        n
    }

    /// Highest pfn + 1 (`max_pfn`).
    pub fn max_pfn(&self) -> usize {
        self.map.max_pfn
    }

    /// `mem_map`: the page descriptors (FLATMEM), `pfn_to_page(pfn)` being
    /// `mem_map + pfn`.
    pub fn mem_map(&self) -> *mut Page {
        self.map.pfn_to_page(0)
    }

    /// `max_low_pfn`: RAM above it is HighMem.
    pub fn max_low_pfn(&self) -> usize {
        self.max_low_pfn
    }

    /// The machine's lifecycle state.
    pub fn state(&self) -> MachineState {
        if self.state.load(Ordering::Acquire) == MachineState::Boot as u8 {
            MachineState::Boot
        } else {
            MachineState::Running
        }
    }

    // ---- printk ----------------------------------------------------------

    /// Print a kernel message (one line; the newline is added).
    pub fn printk(&self, args: fmt::Arguments<'_>) {
        {
            let mut r = self.log.lock(&self.platform);
            let _ = r.write_fmt(args);
            let _ = r.write_str("\n");
        }
        self.platform.printk(args);
    }

    /// Read the log (`dmesg`).
    pub fn dmesg(&self, out: &mut dyn Write) -> fmt::Result {
        self.log.lock(&self.platform).read(out)
    }

    /// Bytes logged since boot (for tests that look at new messages only).
    pub fn dmesg_len(&self) -> usize {
        self.log.lock(&self.platform).written()
    }

    /// `WARN_ON_ONCE` keyed by a site number below 64.
    pub(crate) fn warn_once(&self, site: u32, args: fmt::Arguments<'_>) {
        let bit = 1u64 << (site % 64);
        if self.warn_once.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            self.warn(args);
        }
    }

    /// `WARN`: a warning with the CPU and the current task, then a stack dump.
    pub(crate) fn warn(&self, args: fmt::Arguments<'_>) {
        self.events.warnings.fetch_add(1, Ordering::Relaxed);
        let mut comm = [0u8; 16];
        let n = self.platform.current_comm(&mut comm);
        let comm = core::str::from_utf8(&comm[..n]).unwrap_or("?");
        pr!(self, "------------[ cut here ]------------");
        pr!(
            self,
            "WARNING: CPU: {} PID: {} Comm: {}: {}",
            self.platform.smp_processor_id(),
            self.platform.current_pid(),
            comm,
            args
        );
        self.platform.dump_stack();
        pr!(self, "---[ end trace 0000000000000000 ]---");
    }

    /// Virtual address of the linear map's physical address 0 (`PAGE_OFFSET`).
    pub fn page_offset(&self) -> usize {
        self.page_offset
    }

    pub(crate) fn free_area_counts(&self, zone: &Zone, out: &mut [usize; NR_PAGE_ORDERS]) {
        let f = zone.lock.lock(&self.platform);
        for (o, v) in out.iter_mut().enumerate() {
            *v = f.free_area[o].nr_free;
        }
    }

    /// Whether every zone's buddy lists hold exactly the blocks they held right
    /// after boot (drain the per-CPU lists first). Lists the differences.
    pub fn buddy_matches_boot_state(&self, out: &mut dyn Write) -> bool {
        let mut same = true;
        for z in self.zones() {
            let id = z.node as usize * MAX_NR_ZONES + z.zone_type as usize;
            let mut now = [0; NR_PAGE_ORDERS];
            self.free_area_counts(z, &mut now);
            for (o, &n) in now.iter().enumerate() {
                let then = self.boot_free_pages[id][o].load(Ordering::Relaxed);
                if n != then {
                    same = false;
                    let _ = writeln!(
                        out,
                        "Node {}, zone {:>8}: order {o}: {n} free blocks, {then} at boot",
                        z.node,
                        z.name()
                    );
                }
            }
        }
        same
    }
}

impl<P: Platform> Drop for Kmem<P> {
    fn drop(&mut self) {
        // Everything the machine owns lives in its RAM; the platform unmaps it.
    }
}

/// Default for `oom_wait_ms=`.
pub const DEFAULT_OOM_WAIT_MS: u64 = 1000;
/// `SWAP_CLUSTER_MAX`.
pub const SWAP_CLUSTER_MAX: usize = 32;

fn is_highmem_idx(z: ZoneType) -> bool {
    matches!(z, ZoneType::HighMem | ZoneType::Movable)
}

/// `int_sqrt`.
pub fn int_sqrt(x: usize) -> usize {
    if x < 2 {
        return x;
    }
    let mut r = 1usize << ((usize::BITS - x.leading_zeros()) / 2 + 1);
    loop {
        let n = (r + x / r) / 2;
        if n >= r {
            break;
        }
        r = n;
    }
    while r * r > x {
        r -= 1;
    }
    r
}

/// First pfn and span of the RAM of `[s, e)`.
fn first_last_present(mb: &Memblock, s: PhysAddr, e: PhysAddr) -> (usize, usize) {
    let mut lo = u64::MAX;
    let mut hi = 0;
    for (rs, re, _) in mb.memory_ranges(NUMA_NO_NODE) {
        let a = rs.max(s);
        let b = re.min(e);
        if b > a {
            lo = lo.min(a);
            hi = hi.max(b);
        }
    }
    let start = (lo >> PAGE_SHIFT) as usize;
    (start, ((hi >> PAGE_SHIFT) as usize) - start)
}

fn log_e820<P: Platform>(log: &mut BootLog<'_, P>, e820: &E820Table) {
    log.line(format_args!("BIOS-provided physical RAM map:"));
    let _ = e820.print(&mut LogLines {
        log,
        line: crate::printk::FixedBuf::new(),
    });
}

/// A `fmt::Write` that hands the boot log one line at a time, so a long
/// text such as the memory map needs no buffer of its size on the boot's
/// stack (every page of a frame is touched, and stays resident).
struct LogLines<'l, 'a, P: Platform> {
    log: &'l mut BootLog<'a, P>,
    line: crate::printk::FixedBuf<160>,
}

impl<P: Platform> fmt::Write for LogLines<'_, '_, P> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for piece in s.split_inclusive('\n') {
            match piece.strip_suffix('\n') {
                Some(text) => {
                    self.line.write_str(text)?;
                    self.log.line(format_args!("{}", self.line.as_str()));
                    self.line.clear();
                }
                None => self.line.write_str(piece)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_sqrt_and_min_free_kbytes_formula() {
        assert_eq!(int_sqrt(0), 0);
        assert_eq!(int_sqrt(15), 3);
        assert_eq!(int_sqrt(16), 4);
        assert_eq!(int_sqrt(1 << 40), 1 << 20);
        // 16 MB of lowmem gives 512k, 1 GB 4096k, 16 GB 16384k (the kernel's comment).
        assert_eq!(int_sqrt(16 * 1024 * 16), 512);
        assert_eq!(int_sqrt(1024 * 1024 * 16), 4096);
        assert_eq!(int_sqrt(16 * 1024 * 1024 * 16), 16384);
    }

    #[test]
    fn copy_to_zeroed_copies_everything_but_writes_no_all_zero_page_piece() {
        #[repr(C, align(4096))]
        struct Pages([u64; 3 * 512]);
        let mut src = Pages([0; 3 * 512]);
        // Page 0: one word set at its end; page 1: zero; page 2: the first word set.
        src.0[511] = 7;
        src.0[1024] = 9;
        // The destination holds zero bytes, but for a marker in page 1 that a
        // write of that page (zero bytes) would wipe out.
        let mut dst = Pages([0; 3 * 512]);
        dst.0[600] = 0xdead;
        // From the middle of page 0 to the middle of page 2.
        let (from, words) = (256, 1024);
        // SAFETY: both buffers hold `from + words` words; the destination is zero but for the marker.
        unsafe {
            copy_to_zeroed(
                src.0.as_ptr().add(from) as *const u8,
                dst.0.as_mut_ptr().add(from) as *mut u8,
                words * 8,
            );
        }
        assert_eq!((dst.0[511], dst.0[1024]), (7, 9));
        assert_eq!(dst.0[600], 0xdead, "the all-zero piece of page 1 was written");
        let ones = [1u64, 0, 0];
        let zeros = [0u64; 3];
        // SAFETY: 8-byte aligned arrays of the lengths given.
        unsafe {
            assert!(words_are_zero(zeros.as_ptr() as *const u8, 3));
            assert!(words_are_zero(ones.as_ptr() as *const u8, 0));
            assert!(!words_are_zero(ones.as_ptr() as *const u8, 3));
            assert!(words_are_zero(ones.as_ptr().add(1) as *const u8, 2));
        }
    }
}
