//! memblock: the boot-time physical memory manager (what replaced bootmem).
//!
//! Early in boot, before the page allocator has any `struct page` to hand out,
//! the kernel still needs memory: for page tables, for the memory map itself,
//! for per-CPU areas, for the log buffer. memblock is the bookkeeping that
//! makes this possible. It knows nothing about pages; it only keeps two lists
//! of physical address ranges:
//!
//! * `memory`: the RAM that firmware / the device tree / `mem=` said exists
//!   (registered with [`Memblock::add`] or [`Memblock::add_node`]);
//! * `reserved`: the parts of that RAM that are taken, whether by the kernel
//!   image, the initrd, firmware tables, or by memblock's own allocations
//!   ([`Memblock::reserve`], and every successful allocation).
//!
//! Each list is a [`MemblockType`]: an array of [`MemblockRegion`]s
//! `{ base, size, flags, nid }` that is always **sorted by address, free of
//! overlaps, and minimal**: after every change, neighbours that touch and
//! have the same node id and the same flags are merged into one region
//! (`memblock_merge_regions`). Adding a range that overlaps existing regions
//! only fills the holes between them (`memblock_add_range`); removing a range,
//! or changing the flags or node of a range, first splits the regions that
//! straddle its boundaries (`memblock_isolate_range`) and then works on whole
//! regions. Sizes are clamped so that `base + size` never wraps
//! (`memblock_cap_size`). An empty list has `cnt == 0`; its first slot is kept
//! zeroed, as current kernels do since the "empty dummy entry" went away.
//!
//! **Free memory** is `memory` minus `reserved`; it is never stored, but
//! walked on demand by a two-cursor merge of the two sorted lists
//! (`__next_mem_range` / `__next_mem_range_rev`, here [`MemRanges`]). The
//! walk can be restricted to one NUMA node and skips regions by their flags
//! the way the kernel does: `NOMAP` and `DRIVER_MANAGED` memory unless asked
//! for, `HOTPLUG` memory when `movable_node` is in effect, and everything but
//! `MIRROR` memory when mirrored memory is requested.
//!
//! **Allocation** (`memblock_alloc_range_nid`) searches the free ranges inside
//! `[max(start, PAGE_SIZE), min(end, current_limit)]`, **top-down by
//! default**: the highest address that fits, aligned down. With
//! [`Memblock::set_bottom_up`] it takes the lowest instead. The found range
//! is then simply reserved. If a node was asked for and it has no room, any
//! node is tried unless the caller wants that exact node; if the system has
//! mirrored memory, mirrored memory is tried first and then any memory. The
//! "virtual" allocators (`memblock_alloc*`) additionally retry without the
//! lower bound and return a pointer through the direct map, zeroed unless the
//! `_raw` variant was used. The 2.6-era bootmem entry points
//! (`alloc_bootmem*`, `free_bootmem`) are thin aliases.
//!
//! **Capacity.** Both lists start with [`INIT_MEMBLOCK_REGIONS`] slots stored
//! inline, so a [`Memblock`] can be built by a `const fn` on the stack (or in
//! a static) and moved freely. Once [`Memblock::allow_resize`] has been
//! called (the kernel does this once it knows what must not be overwritten),
//! a full array doubles by allocating the new array from memblock itself and
//! reserving it (`memblock_double_array`); the new array lives outside the
//! struct, in memory reached through the direct map, so moving the struct is
//! still fine. Before that, or without a direct map, running out of slots is
//! an error.
//!
//! This crate has no `printk`: where the kernel would `WARN`, `dump_stack()`
//! or `pr_warn`, the public [`Memblock::warnings`] counter is incremented.

use core::fmt;

/// A physical address (`phys_addr_t`, 64-bit as on x86-64).
pub type PhysAddr = u64;

/// Initial number of slots of each region array (`INIT_MEMBLOCK_REGIONS`).
pub const INIT_MEMBLOCK_REGIONS: usize = 128;
/// Initial number of slots of the reserved array.
pub const INIT_MEMBLOCK_RESERVED_REGIONS: usize = INIT_MEMBLOCK_REGIONS;
/// Largest physical address (`PHYS_ADDR_MAX`).
pub const PHYS_ADDR_MAX: PhysAddr = PhysAddr::MAX;
/// Allocation upper bound meaning "no limit at all" (`~0`).
pub const MEMBLOCK_ALLOC_ANYWHERE: PhysAddr = PhysAddr::MAX;
/// Allocation upper bound meaning "up to `current_limit`".
pub const MEMBLOCK_ALLOC_ACCESSIBLE: PhysAddr = 0;
/// Like [`MEMBLOCK_ALLOC_ACCESSIBLE`], without kmemleak tracking in the kernel.
pub const MEMBLOCK_ALLOC_NOLEAKTRACE: PhysAddr = 1;
/// Default lower bound of the virtual allocators.
pub const MEMBLOCK_LOW_LIMIT: PhysAddr = 0;
/// "Any node".
pub const NUMA_NO_NODE: i32 = -1;
/// Number of possible nodes; also the node id of regions added without one.
pub const MAX_NUMNODES: usize = 64;
/// Default allocation alignment (a cache line).
pub const SMP_CACHE_BYTES: u64 = 64;
/// Page size used for the doubled arrays and the `*_pages` bootmem helpers.
pub const PAGE_SIZE: u64 = 4096;
/// Upper bound of the `*_low` allocators (x86-64: below 4 GiB).
pub const ARCH_LOW_ADDRESS_LIMIT: PhysAddr = 0xffff_ffff;

/// Node id stored in regions that have none (`memblock_add`, `memblock_reserve`).
const NO_NID: i32 = MAX_NUMNODES as i32;
const REGION_BYTES: u64 = core::mem::size_of::<MemblockRegion>() as u64;

/// Whether `nid` names a real node (`numa_valid_node`).
pub const fn numa_valid_node(nid: i32) -> bool {
    nid >= 0 && (nid as usize) < MAX_NUMNODES
}

/// `memblock_cap_size`: the size clamped so that `base + size` cannot wrap.
const fn cap_size(base: PhysAddr, size: PhysAddr) -> PhysAddr {
    let room = PHYS_ADDR_MAX - base;
    if size < room {
        size
    } else {
        room
    }
}

const fn round_down(x: u64, align: u64) -> u64 {
    x - x % align
}

/// `round_up`, or `None` when the result would not fit in 64 bits.
const fn round_up(x: u64, align: u64) -> Option<u64> {
    match x.checked_add(align - 1) {
        Some(v) => Some(v - v % align),
        None => None,
    }
}

const fn page_align(x: u64) -> u64 {
    match round_up(x, PAGE_SIZE) {
        Some(v) => v,
        None => round_down(x, PAGE_SIZE),
    }
}

/// Region attributes (`enum memblock_flags`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MemblockFlags(pub u32);

impl MemblockFlags {
    /// No special request.
    pub const NONE: Self = Self(0);
    /// Hot(un)pluggable memory.
    pub const HOTPLUG: Self = Self(0x1);
    /// Mirrored memory.
    pub const MIRROR: Self = Self(0x2);
    /// Not added to the kernel direct mapping.
    pub const NOMAP: Self = Self(0x4);
    /// Always detected via a driver, never in the firmware memory map.
    pub const DRIVER_MANAGED: Self = Self(0x8);
    /// Reserved memory whose `struct page`s are not initialised.
    pub const RSRV_NOINIT: Self = Self(0x10);

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set in `self`.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// `self | other`.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// `self & !other`.
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl core::ops::BitOr for MemblockFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

/// One range of a [`MemblockType`] (`struct memblock_region`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MemblockRegion {
    /// First physical address.
    pub base: PhysAddr,
    /// Size in bytes.
    pub size: PhysAddr,
    /// Attributes.
    pub flags: MemblockFlags,
    /// NUMA node; [`MAX_NUMNODES`] when none was given.
    pub nid: i32,
}

impl MemblockRegion {
    const ZERO: Self = Self {
        base: 0,
        size: 0,
        flags: MemblockFlags::NONE,
        nid: 0,
    };

    /// One past the last address (`region_end`).
    pub const fn end(&self) -> PhysAddr {
        self.base + self.size
    }

    /// `memblock_is_hotpluggable`.
    pub const fn is_hotpluggable(&self) -> bool {
        self.flags.intersects(MemblockFlags::HOTPLUG)
    }

    /// `memblock_is_mirror`.
    pub const fn is_mirror(&self) -> bool {
        self.flags.intersects(MemblockFlags::MIRROR)
    }

    /// `memblock_is_nomap`.
    pub const fn is_nomap(&self) -> bool {
        self.flags.intersects(MemblockFlags::NOMAP)
    }

    /// `memblock_is_driver_managed`.
    pub const fn is_driver_managed(&self) -> bool {
        self.flags.intersects(MemblockFlags::DRIVER_MANAGED)
    }

    /// `memblock_is_reserved_noinit`.
    pub const fn is_reserved_noinit(&self) -> bool {
        self.flags.intersects(MemblockFlags::RSRV_NOINIT)
    }
}

/// Selects one of the two region lists.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Which {
    /// `memblock.memory`.
    Memory,
    /// `memblock.reserved`.
    Reserved,
}

/// Why a memblock operation failed (the kernel returns `-ENOMEM` for all).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemblockError {
    /// The region array is full and may not grow: [`Memblock::allow_resize`]
    /// was not called, or there is no direct map to reach a new array.
    TooManyRegions,
    /// The array may grow but no free memory was found for the doubled array
    /// ("Failed to double %s array").
    NoSpaceForArray,
    /// An alignment of zero was passed where one is required.
    InvalidAlignment,
}

impl MemblockError {
    /// The kernel's return value for this error (`-ENOMEM` or `-EINVAL`).
    pub const fn to_errno(self) -> i32 {
        match self {
            Self::InvalidAlignment => -22,
            _ => -12,
        }
    }
}

impl fmt::Display for MemblockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooManyRegions => "memblock: region array full and resizing not allowed",
            Self::NoSpaceForArray => "memblock: failed to double region array",
            Self::InvalidAlignment => "memblock: invalid alignment",
        })
    }
}

/// A sorted, non-overlapping, minimal list of regions (`struct memblock_type`).
///
/// Invariant on `grown`: it is either null, in which case the regions are
/// `init_regions` and `max == INIT_MEMBLOCK_REGIONS`, or it points to an
/// array of `max` initialised, properly aligned [`MemblockRegion`]s that this
/// type owns exclusively. Such an array was allocated by memblock itself from
/// registered memory, is listed in the `reserved` list while in use, and is
/// reached through the direct map whose validity the caller promised in
/// [`Memblock::set_direct_map`]. It never points into the struct, so moving
/// the struct is fine.
pub struct MemblockType {
    cnt: usize,
    max: usize,
    total_size: PhysAddr,
    init_regions: [MemblockRegion; INIT_MEMBLOCK_REGIONS],
    grown: *mut MemblockRegion,
    name: &'static str,
}

// SAFETY: `grown` is an exclusively owned array (see the type invariant), so
// moving a `MemblockType` to another thread moves its sole owner, like a Box.
unsafe impl Send for MemblockType {}
// SAFETY: through `&MemblockType` the array is only read; all writes need
// `&mut`, so shared references on several threads cannot race.
unsafe impl Sync for MemblockType {}

impl MemblockType {
    /// An empty list with the inline array.
    pub const fn new(name: &'static str) -> Self {
        Self {
            cnt: 0,
            max: INIT_MEMBLOCK_REGIONS,
            total_size: 0,
            init_regions: [MemblockRegion::ZERO; INIT_MEMBLOCK_REGIONS],
            grown: core::ptr::null_mut(),
            name,
        }
    }

    /// Number of regions in use.
    pub const fn cnt(&self) -> usize {
        self.cnt
    }

    /// Number of slots of the current array.
    pub const fn max(&self) -> usize {
        self.max
    }

    /// Sum of the region sizes.
    pub const fn total_size(&self) -> PhysAddr {
        self.total_size
    }

    /// `"memory"` or `"reserved"`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The regions in use, sorted by address.
    pub fn regions(&self) -> &[MemblockRegion] {
        &self.array()[..self.cnt]
    }

    /// The raw array slot `idx` (`type->regions[idx]`), also past `cnt`
    /// (those hold zeroes or stale entries, as in the kernel); `None` past `max`.
    pub fn slot(&self, idx: usize) -> Option<&MemblockRegion> {
        self.array().get(idx)
    }

    /// Address of the current array: inside the struct until it has grown,
    /// then the doubled array in memblock-allocated memory.
    pub fn regions_ptr(&self) -> *const MemblockRegion {
        self.array().as_ptr()
    }

    /// Whether the array has been replaced by a doubled one.
    pub fn is_grown(&self) -> bool {
        !self.grown.is_null()
    }

    fn array(&self) -> &[MemblockRegion] {
        if self.grown.is_null() {
            &self.init_regions
        } else {
            // SAFETY: by the type invariant `grown` points to `max` initialised, aligned regions owned by
            // `self`; `&self` keeps them from being mutated for the lifetime of the slice.
            unsafe { core::slice::from_raw_parts(self.grown, self.max) }
        }
    }

    fn array_mut(&mut self) -> &mut [MemblockRegion] {
        if self.grown.is_null() {
            &mut self.init_regions
        } else {
            // SAFETY: as in `array`; `&mut self` makes the access exclusive.
            unsafe { core::slice::from_raw_parts_mut(self.grown, self.max) }
        }
    }

    /// `memblock_insert_region`: needs a free slot.
    fn insert_region(&mut self, idx: usize, base: PhysAddr, size: PhysAddr, nid: i32, flags: MemblockFlags) {
        assert!(self.cnt < self.max, "memblock: insert into a full array");
        let cnt = self.cnt;
        let arr = self.array_mut();
        arr.copy_within(idx..cnt, idx + 1);
        arr[idx] = MemblockRegion {
            base,
            size,
            flags,
            nid,
        };
        self.cnt += 1;
        self.total_size += size;
    }

    /// `memblock_remove_region`.
    fn remove_region(&mut self, r: usize) {
        let cnt = self.cnt;
        self.total_size -= self.array()[r].size;
        let arr = self.array_mut();
        arr.copy_within(r + 1..cnt, r);
        self.cnt -= 1;
        if self.cnt == 0 {
            debug_assert_eq!(self.total_size, 0);
            self.array_mut()[0] = MemblockRegion {
                nid: NO_NID,
                ..MemblockRegion::ZERO
            };
        }
    }

    /// `memblock_merge_regions`: merge touching neighbours of equal nid and flags.
    fn merge_regions(&mut self) {
        let mut i = 0;
        while i + 1 < self.cnt {
            let cnt = self.cnt;
            let arr = self.array_mut();
            let this = arr[i];
            let next = arr[i + 1];
            if this.end() != next.base || this.nid != next.nid || this.flags != next.flags {
                debug_assert!(this.end() <= next.base, "memblock: overlapping regions");
                i += 1;
                continue;
            }
            arr[i].size += next.size;
            arr.copy_within(i + 2..cnt, i + 1);
            self.cnt -= 1;
        }
    }

    /// `memblock_search`: index of the region containing `addr`.
    fn search(&self, addr: PhysAddr) -> Option<usize> {
        let regions = self.regions();
        let idx = regions.partition_point(|r| r.end() <= addr);
        match regions.get(idx) {
            Some(r) if r.base <= addr => Some(idx),
            _ => None,
        }
    }
}

impl fmt::Debug for MemblockType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemblockType")
            .field("name", &self.name)
            .field("cnt", &self.cnt)
            .field("max", &self.max)
            .field("total_size", &self.total_size)
            .field("regions", &self.regions())
            .finish()
    }
}

/// Iterator over physical ranges (`__next_mem_range` / `__next_mem_range_rev`).
///
/// Yields `(start, end, nid)` with `end` exclusive. With an exclusion list
/// (free ranges) each yielded range is a piece of a `memory` region that lies
/// between two `reserved` regions; this is the kernel's two-cursor walk, so
/// like the kernel it may yield an empty piece where two reserved regions
/// touch without having been merged.
pub struct MemRanges<'a> {
    a: &'a MemblockType,
    b: Option<&'a MemblockType>,
    filter: bool,
    nid: i32,
    flags: MemblockFlags,
    movable_node: bool,
    idx_a: isize,
    idx_b: isize,
    reverse: bool,
}

impl<'a> MemRanges<'a> {
    fn new(
        a: &'a MemblockType,
        b: Option<&'a MemblockType>,
        filter: bool,
        nid: i32,
        flags: MemblockFlags,
        movable_node: bool,
        reverse: bool,
    ) -> Self {
        let nid = if nid == NO_NID { NUMA_NO_NODE } else { nid };
        let (idx_a, idx_b) = if reverse {
            (a.cnt as isize - 1, b.map_or(0, |b| b.cnt as isize))
        } else {
            (0, 0)
        };
        Self {
            a,
            b,
            filter,
            nid,
            flags,
            movable_node,
            idx_a,
            idx_b,
            reverse,
        }
    }

    /// `should_skip_region`.
    fn should_skip_region(&self, m: &MemblockRegion) -> bool {
        if !self.filter {
            return false;
        }
        if numa_valid_node(self.nid) && self.nid != m.nid {
            return true;
        }
        if self.movable_node && m.is_hotpluggable() && !self.flags.intersects(MemblockFlags::HOTPLUG) {
            return true;
        }
        if self.flags.intersects(MemblockFlags::MIRROR) && !m.is_mirror() {
            return true;
        }
        if !self.flags.intersects(MemblockFlags::NOMAP) && m.is_nomap() {
            return true;
        }
        if !self.flags.intersects(MemblockFlags::DRIVER_MANAGED) && m.is_driver_managed() {
            return true;
        }
        false
    }

    /// Bounds of the gap before reserved region `idx_b` (`[prev end, this base)`).
    fn gap(b: &MemblockType, idx_b: isize) -> (PhysAddr, PhysAddr) {
        let regions = b.regions();
        let start = if idx_b > 0 {
            regions[idx_b as usize - 1].end()
        } else {
            0
        };
        let end = if (idx_b as usize) < regions.len() {
            regions[idx_b as usize].base
        } else {
            PHYS_ADDR_MAX
        };
        (start, end)
    }

    fn next_forward(&mut self) -> Option<(PhysAddr, PhysAddr, i32)> {
        let a = self.a.regions();
        while (self.idx_a as usize) < a.len() {
            let m = a[self.idx_a as usize];
            if self.should_skip_region(&m) {
                self.idx_a += 1;
                continue;
            }
            let Some(b) = self.b else {
                self.idx_a += 1;
                return Some((m.base, m.end(), m.nid));
            };
            while self.idx_b < b.cnt as isize + 1 {
                let (r_start, r_end) = Self::gap(b, self.idx_b);
                if r_start >= m.end() {
                    break;
                }
                if m.base < r_end {
                    let out = (m.base.max(r_start), m.end().min(r_end), m.nid);
                    if m.end() <= r_end {
                        self.idx_a += 1;
                    } else {
                        self.idx_b += 1;
                    }
                    return Some(out);
                }
                self.idx_b += 1;
            }
            self.idx_a += 1;
        }
        None
    }

    fn next_reverse(&mut self) -> Option<(PhysAddr, PhysAddr, i32)> {
        let a = self.a.regions();
        while self.idx_a >= 0 {
            let m = a[self.idx_a as usize];
            if self.should_skip_region(&m) {
                self.idx_a -= 1;
                continue;
            }
            let Some(b) = self.b else {
                self.idx_a -= 1;
                return Some((m.base, m.end(), m.nid));
            };
            while self.idx_b >= 0 {
                let (r_start, r_end) = Self::gap(b, self.idx_b);
                if r_end <= m.base {
                    break;
                }
                if m.end() > r_start {
                    let out = (m.base.max(r_start), m.end().min(r_end), m.nid);
                    if m.base >= r_start {
                        self.idx_a -= 1;
                    } else {
                        self.idx_b -= 1;
                    }
                    return Some(out);
                }
                self.idx_b -= 1;
            }
            self.idx_a -= 1;
        }
        None
    }
}

impl Iterator for MemRanges<'_> {
    type Item = (PhysAddr, PhysAddr, i32);

    fn next(&mut self) -> Option<Self::Item> {
        if self.reverse {
            self.next_reverse()
        } else {
            self.next_forward()
        }
    }
}

/// The boot memory manager (`struct memblock` plus the file-scope state of
/// mm/memblock.c). See the module documentation.
pub struct Memblock {
    /// Allocate from low addresses up instead of from the top down.
    pub bottom_up: bool,
    /// Upper bound of [`MEMBLOCK_ALLOC_ACCESSIBLE`] allocations.
    pub current_limit: PhysAddr,
    /// Registered RAM.
    pub memory: MemblockType,
    /// Taken RAM.
    pub reserved: MemblockType,
    /// Count of the warnings the kernel would print (`WARN`, `dump_stack`,
    /// `pr_warn`, `pr_err`): zero alignment, `MAX_NUMNODES` as a node id,
    /// mirror fallback, a failed array doubling, inconsistent overlaps.
    pub warnings: u32,
    direct_map: Option<usize>,
    can_resize: bool,
    system_has_some_mirror: bool,
    movable_node: bool,
    /// Whether a reservation was ever given back (`memblock_free`, the old
    /// array of a doubling): memory handed out after that may have been
    /// written (`Memblock::nothing_freed`).
    freed: bool,
    /// Whether RAM nobody wrote reads as zero (`Memblock::set_ram_zeroed`).
    ram_zeroed: bool,
}

impl Default for Memblock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Memblock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memblock")
            .field("bottom_up", &self.bottom_up)
            .field("current_limit", &self.current_limit)
            .field("memory", &self.memory)
            .field("reserved", &self.reserved)
            .field("warnings", &self.warnings)
            .field("direct_map", &self.direct_map)
            .field("can_resize", &self.can_resize)
            .finish()
    }
}

/// Formats `%#x`: `0` for zero, `0x…` otherwise.
struct AltHex(u64);

impl fmt::Display for AltHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("0")
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

/// Name of the lowest set flag, as the debugfs files print it.
fn flag_name(flags: MemblockFlags) -> &'static str {
    const NAMES: [&str; 5] = ["HOTPLUG", "MIRROR", "NOMAP", "DRV_MNG", "RSV_NIT"];
    if flags.0 == 0 {
        return "NONE";
    }
    NAMES
        .iter()
        .enumerate()
        .find(|&(bit, _)| flags.0 & (1 << bit) != 0)
        .map_or("UNKNOWN", |(_, name)| name)
}

impl Memblock {
    /// Empty lists, top-down, `current_limit = MEMBLOCK_ALLOC_ANYWHERE`,
    /// no direct map, resizing not allowed.
    pub const fn new() -> Self {
        Self {
            bottom_up: false,
            current_limit: MEMBLOCK_ALLOC_ANYWHERE,
            memory: MemblockType::new("memory"),
            reserved: MemblockType::new("reserved"),
            warnings: 0,
            direct_map: None,
            can_resize: false,
            system_has_some_mirror: false,
            movable_node: false,
            freed: false,
            ram_zeroed: false,
        }
    }

    /// True while no reservation has been given back: every byte handed
    /// out so far had never been handed out before, so on RAM that starts
    /// zeroed, the next allocation reads as zero without a memset.
    pub fn nothing_freed(&self) -> bool {
        !self.freed
    }

    /// Declares whether the registered memory that nobody has written reads
    /// as zero (a fresh memfd, pages a hypervisor has just given). While that
    /// holds and no reservation has been given back ([`Memblock::nothing_freed`]),
    /// the zeroing allocators skip their memset: what they hand out was
    /// never handed out before. The pages a memset would only have zeroed
    /// then stay unwritten, which on a host that backs RAM on first touch
    /// keeps them out of memory. The machine turns this off when it hands
    /// memory to the buddy allocator.
    ///
    /// # Safety
    ///
    /// With `true`: every part of the registered memory that is not reserved
    /// reads as zero, and stays so until memblock hands it out.
    pub unsafe fn set_ram_zeroed(&mut self, zeroed: bool) {
        self.ram_zeroed = zeroed;
    }

    /// Whether what memblock hands out next reads as zero without a memset
    /// (see [`Memblock::set_ram_zeroed`]).
    pub fn fresh_reads_zero(&self) -> bool {
        self.ram_zeroed && !self.freed
    }

    /// Declares the direct map: physical address `p` is reachable at virtual
    /// address `p + virt_offset` (wrapping). This enables the allocators that
    /// return pointers, zeroing, [`Memblock::free`] and the growth of the
    /// region arrays.
    ///
    /// # Safety
    ///
    /// For as long as this `Memblock` (or a [`MemblockType`] taken out of it)
    /// is used, every physical range that is or will be registered as memory
    /// ([`Memblock::add`], [`Memblock::add_node`]) must be valid for reads and
    /// writes at `phys + virt_offset`, and the parts of it that are not
    /// reserved must not be used by anyone but memblock: allocations write
    /// there (zeroing, doubled region arrays). `virt_offset` must keep 8-byte
    /// alignment (a multiple of 8), and the memory must not contain this
    /// `Memblock` itself.
    pub unsafe fn set_direct_map(&mut self, virt_offset: usize) {
        self.direct_map = Some(virt_offset);
    }

    /// `__va`: the direct-map address of `phys`, or null without a direct map.
    pub fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8 {
        match self.direct_map {
            Some(off) => (phys as usize).wrapping_add(off) as *mut u8,
            None => core::ptr::null_mut(),
        }
    }

    /// `__pa`: the physical address of a direct-map pointer (identity without
    /// a direct map).
    pub fn virt_to_phys(&self, ptr: *const u8) -> PhysAddr {
        (ptr as usize).wrapping_sub(self.direct_map.unwrap_or(0)) as PhysAddr
    }

    /// `memblock_allow_resize`: full arrays may now double (needs a direct map).
    pub fn allow_resize(&mut self) {
        self.can_resize = true;
    }

    /// Whether `movable_node` is in effect: hotpluggable memory is then
    /// skipped by allocations (`movable_node_is_enabled`).
    pub fn set_movable_node(&mut self, enable: bool) {
        self.movable_node = enable;
    }

    /// `memblock_set_bottom_up`.
    pub fn set_bottom_up(&mut self, enable: bool) {
        self.bottom_up = enable;
    }

    /// `memblock_bottom_up`.
    pub const fn bottom_up(&self) -> bool {
        self.bottom_up
    }

    /// `memblock_set_current_limit`.
    pub fn set_current_limit(&mut self, limit: PhysAddr) {
        self.current_limit = limit;
    }

    /// `memblock_get_current_limit`.
    pub const fn get_current_limit(&self) -> PhysAddr {
        self.current_limit
    }

    /// The list selected by `which`.
    pub fn region_type(&self, which: Which) -> &MemblockType {
        match which {
            Which::Memory => &self.memory,
            Which::Reserved => &self.reserved,
        }
    }

    fn ty_mut(&mut self, which: Which) -> &mut MemblockType {
        match which {
            Which::Memory => &mut self.memory,
            Which::Reserved => &mut self.reserved,
        }
    }

    fn choose_memblock_flags(&self) -> MemblockFlags {
        if self.system_has_some_mirror {
            MemblockFlags::MIRROR
        } else {
            MemblockFlags::NONE
        }
    }

    // ---------------------------------------------------------------------
    // Region list manipulation
    // ---------------------------------------------------------------------

    /// `memblock_double_array`: replace the full array of `which` with one of
    /// twice the size, allocated from memblock and reserved. When doubling
    /// `reserved`, the range `[new_area_start, +new_area_size)` that is about
    /// to be reserved is avoided.
    fn double_array(
        &mut self,
        which: Which,
        new_area_start: PhysAddr,
        new_area_size: PhysAddr,
    ) -> Result<(), MemblockError> {
        if !self.can_resize || self.direct_map.is_none() {
            return Err(MemblockError::TooManyRegions);
        }
        let old_max = self.region_type(which).max;
        let old_size = old_max as u64 * REGION_BYTES;
        let new_size = old_size * 2;
        let old_alloc_size = page_align(old_size);
        let new_alloc_size = page_align(new_size);

        // Only the reserved array must avoid the range being added.
        let (excl_start, excl_size) = match which {
            Which::Reserved => (new_area_start, new_area_size),
            Which::Memory => (0, 0),
        };
        let mut addr = self.find_in_range(
            excl_start + excl_size,
            self.current_limit,
            new_alloc_size,
            PAGE_SIZE,
        );
        if addr == 0 && excl_size != 0 {
            addr = self.find_in_range(0, excl_start.min(self.current_limit), new_alloc_size, PAGE_SIZE);
        }
        let new_array = self.phys_to_virt(addr).cast::<MemblockRegion>();
        if addr == 0 || new_array.is_null() || !new_array.is_aligned() {
            self.warnings += 1;
            return Err(MemblockError::NoSpaceForArray);
        }

        let t = self.ty_mut(which);
        let old_array = t.grown;
        let src = t.array().as_ptr();
        // It cannot overlap the old array: that is either inside `self` (which the contract keeps out of
        // registered memory) or a reserved range. Every slot is written here, so the new array is fully
        // initialised.
        // `[addr, addr + new_alloc_size)` lies in a free part of a registered memory region (found by
        // `find_in_range`), and new_alloc_size >= 2 * old_max * size.
        // SAFETY: so by the `set_direct_map` contract `new_array` is valid for writes of `2 * old_max`
        // regions, is aligned (checked above) and used by nobody else.
        unsafe {
            core::ptr::copy_nonoverlapping(src, new_array, old_max);
            core::ptr::write_bytes(new_array.add(old_max), 0, old_max);
        }
        t.grown = new_array;
        t.max = old_max * 2;

        // Free the old array unless it was the inline one.
        if !old_array.is_null() {
            let old_phys = self.virt_to_phys(old_array.cast_const().cast());
            // Like the kernel, ignore the (impossible) failure: the array
            // just doubled, so isolating needs no new slots.
            let _ = self.remove_range(Which::Reserved, old_phys, old_alloc_size);
        }
        self.add_range(Which::Reserved, addr, new_alloc_size, NO_NID, MemblockFlags::NONE)
    }

    /// `memblock_add_range`: add `[base, base + size)`, filling only the holes
    /// between existing regions, then merge.
    fn add_range(
        &mut self,
        which: Which,
        base: PhysAddr,
        size: PhysAddr,
        nid: i32,
        flags: MemblockFlags,
    ) -> Result<(), MemblockError> {
        let size = cap_size(base, size);
        if size == 0 {
            return Ok(());
        }
        let end = base + size;

        // Special case for an empty array.
        let t = self.ty_mut(which);
        if t.cnt == 0 {
            debug_assert_eq!(t.total_size, 0);
            t.array_mut()[0] = MemblockRegion {
                base,
                size,
                flags,
                nid,
            };
            t.cnt = 1;
            t.total_size = size;
            return Ok(());
        }

        // First pass: count the pieces to insert.
        let mut nr_new = 0;
        let mut mismatches = 0;
        let mut b = base;
        for r in t.regions() {
            if r.base >= end {
                break;
            }
            if r.end() <= b {
                continue;
            }
            if r.base > b {
                if r.nid != nid || r.flags != flags {
                    mismatches += 1;
                }
                nr_new += 1;
            }
            b = r.end().min(end);
        }
        if b < end {
            nr_new += 1;
        }
        self.warnings += mismatches;
        if nr_new == 0 {
            return Ok(());
        }
        while self.region_type(which).cnt + nr_new > self.region_type(which).max {
            self.double_array(which, base, size)?;
        }

        // Second pass: insert (the array may have changed while doubling).
        let t = self.ty_mut(which);
        let mut b = base;
        let mut idx = 0;
        while idx < t.cnt {
            let r = t.array()[idx];
            if r.base >= end {
                break;
            }
            if r.end() > b {
                if r.base > b {
                    t.insert_region(idx, b, r.base - b, nid, flags);
                    idx += 1;
                }
                b = r.end().min(end);
            }
            idx += 1;
        }
        if b < end {
            t.insert_region(idx, b, end - b, nid, flags);
        }
        t.merge_regions();
        Ok(())
    }

    /// `memblock_isolate_range`: split regions at the boundaries of
    /// `[base, base + size)`; returns the index range of the regions inside.
    fn isolate_range(
        &mut self,
        which: Which,
        base: PhysAddr,
        size: PhysAddr,
    ) -> Result<(usize, usize), MemblockError> {
        let size = cap_size(base, size);
        if size == 0 {
            return Ok((0, 0));
        }
        let end = base + size;

        // At most two more regions are created.
        while self.region_type(which).cnt + 2 > self.region_type(which).max {
            self.double_array(which, base, size)?;
        }

        let t = self.ty_mut(which);
        let (mut start_rgn, mut end_rgn) = (0, 0);
        let mut idx = 0;
        while idx < t.cnt {
            let r = t.array()[idx];
            let (rbase, rend) = (r.base, r.end());
            if rbase >= end {
                break;
            }
            if rend <= base {
                idx += 1;
                continue;
            }
            if rbase < base {
                // Crosses the lower boundary: split, go on with the top half.
                let arr = t.array_mut();
                arr[idx].base = base;
                arr[idx].size -= base - rbase;
                t.total_size -= base - rbase;
                t.insert_region(idx, rbase, base - rbase, r.nid, r.flags);
                idx += 1;
            } else if rend > end {
                // Crosses the upper boundary: split, redo the bottom half.
                let arr = t.array_mut();
                arr[idx].base = end;
                arr[idx].size -= end - rbase;
                t.total_size -= end - rbase;
                t.insert_region(idx, rbase, end - rbase, r.nid, r.flags);
            } else {
                // Fully inside.
                if end_rgn == 0 {
                    start_rgn = idx;
                }
                end_rgn = idx + 1;
                idx += 1;
            }
        }
        Ok((start_rgn, end_rgn))
    }

    /// `memblock_remove_range`.
    fn remove_range(&mut self, which: Which, base: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        let (start_rgn, end_rgn) = self.isolate_range(which, base, size)?;
        self.freed |= matches!(which, Which::Reserved) && end_rgn > start_rgn;
        let t = self.ty_mut(which);
        for i in (start_rgn..end_rgn).rev() {
            t.remove_region(i);
        }
        Ok(())
    }

    /// `memblock_setclr_flag`.
    fn setclr_flag(
        &mut self,
        which: Which,
        base: PhysAddr,
        size: PhysAddr,
        set: bool,
        flag: MemblockFlags,
    ) -> Result<(), MemblockError> {
        let (start_rgn, end_rgn) = self.isolate_range(which, base, size)?;
        let t = self.ty_mut(which);
        for r in &mut t.array_mut()[start_rgn..end_rgn] {
            r.flags = if set {
                r.flags.union(flag)
            } else {
                r.flags.difference(flag)
            };
        }
        t.merge_regions();
        Ok(())
    }

    /// `memblock_add`: register RAM without a node.
    pub fn add(&mut self, base: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        self.add_range(Which::Memory, base, size, NO_NID, MemblockFlags::NONE)
    }

    /// `memblock_add_node`: register RAM of node `nid` with `flags`.
    pub fn add_node(
        &mut self,
        base: PhysAddr,
        size: PhysAddr,
        nid: i32,
        flags: MemblockFlags,
    ) -> Result<(), MemblockError> {
        self.add_range(Which::Memory, base, size, nid, flags)
    }

    /// `memblock_remove`: unregister RAM.
    pub fn remove(&mut self, base: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        self.remove_range(Which::Memory, base, size)
    }

    /// `memblock_reserve`: mark a range as taken.
    pub fn reserve(&mut self, base: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        self.add_range(Which::Reserved, base, size, NO_NID, MemblockFlags::NONE)
    }

    /// `memblock_phys_free`: un-reserve a range (it does not go to the buddy
    /// allocator, it just becomes free for memblock again).
    pub fn phys_free(&mut self, base: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        self.remove_range(Which::Reserved, base, size)
    }

    /// `memblock_free`: un-reserve the range behind a direct-map pointer
    /// (no-op for null).
    pub fn free(&mut self, ptr: *mut u8, size: PhysAddr) {
        if ptr.is_null() {
            return;
        }
        let phys = self.virt_to_phys(ptr);
        // memblock_free() returns nothing; a failure can only be a full array.
        if self.phys_free(phys, size).is_err() {
            self.warnings += 1;
        }
    }

    /// `memblock_mark_hotplug`.
    pub fn mark_hotplug(&mut self, base: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        self.setclr_flag(Which::Memory, base, size, true, MemblockFlags::HOTPLUG)
    }

    /// `memblock_clear_hotplug`.
    pub fn clear_hotplug(&mut self, base: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        self.setclr_flag(Which::Memory, base, size, false, MemblockFlags::HOTPLUG)
    }

    /// `memblock_mark_mirror`: also makes allocations prefer mirrored memory.
    pub fn mark_mirror(&mut self, base: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        self.system_has_some_mirror = true;
        self.setclr_flag(Which::Memory, base, size, true, MemblockFlags::MIRROR)
    }

    /// `memblock_mark_nomap`.
    pub fn mark_nomap(&mut self, base: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        self.setclr_flag(Which::Memory, base, size, true, MemblockFlags::NOMAP)
    }

    /// `memblock_clear_nomap`.
    pub fn clear_nomap(&mut self, base: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        self.setclr_flag(Which::Memory, base, size, false, MemblockFlags::NOMAP)
    }

    /// `memblock_reserved_mark_noinit`.
    pub fn reserved_mark_noinit(&mut self, base: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        self.setclr_flag(Which::Reserved, base, size, true, MemblockFlags::RSRV_NOINIT)
    }

    /// `memblock_set_node`: give the regions of `which` inside the range node
    /// `nid`, splitting at the boundaries.
    pub fn set_node(
        &mut self,
        base: PhysAddr,
        size: PhysAddr,
        which: Which,
        nid: i32,
    ) -> Result<(), MemblockError> {
        let (start_rgn, end_rgn) = self.isolate_range(which, base, size)?;
        let t = self.ty_mut(which);
        for r in &mut t.array_mut()[start_rgn..end_rgn] {
            r.nid = nid;
        }
        t.merge_regions();
        Ok(())
    }

    /// `memblock_trim_memory`: shrink every memory region to `align`
    /// boundaries, dropping those that become empty. Unlike the kernel,
    /// `memory.total_size` is kept in step with the trimmed sizes.
    pub fn trim_memory(&mut self, align: PhysAddr) -> Result<(), MemblockError> {
        if align == 0 {
            return Err(MemblockError::InvalidAlignment);
        }
        let mut i = 0;
        while i < self.memory.cnt {
            let r = self.memory.array()[i];
            let start = round_up(r.base, align);
            let end = round_down(r.end(), align);
            match start {
                Some(start) if start == r.base && end == r.end() => i += 1,
                Some(start) if start < end => {
                    self.memory.total_size -= r.size - (end - start);
                    let slot = &mut self.memory.array_mut()[i];
                    slot.base = start;
                    slot.size = end - start;
                    i += 1;
                }
                _ => self.memory.remove_region(i),
            }
        }
        Ok(())
    }

    /// `memblock_enforce_memory_limit` (`mem=`): keep the first `limit` bytes
    /// of memory, truncating both lists above that point.
    pub fn enforce_memory_limit(&mut self, limit: PhysAddr) -> Result<(), MemblockError> {
        if limit == 0 {
            return Ok(());
        }
        let Some(max_addr) = self.find_max_addr(limit) else {
            return Ok(());
        };
        self.remove_range(Which::Memory, max_addr, PHYS_ADDR_MAX)?;
        self.remove_range(Which::Reserved, max_addr, PHYS_ADDR_MAX)
    }

    /// `memblock_cap_memory_range`: keep only `[base, base + size)` of memory
    /// (and `NOMAP` regions), truncating reserved to it.
    pub fn cap_memory_range(&mut self, base: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        if size == 0 {
            return Ok(());
        }
        let (start_rgn, end_rgn) = self.isolate_range(Which::Memory, base, size)?;
        for i in (end_rgn..self.memory.cnt).rev() {
            if !self.memory.array()[i].is_nomap() {
                self.memory.remove_region(i);
            }
        }
        for i in (0..start_rgn).rev() {
            if !self.memory.array()[i].is_nomap() {
                self.memory.remove_region(i);
            }
        }
        self.remove_range(Which::Reserved, 0, base)?;
        self.remove_range(Which::Reserved, base.saturating_add(size), PHYS_ADDR_MAX)
    }

    /// `__find_max_addr`: the address below which `limit` bytes of memory lie.
    fn find_max_addr(&self, mut limit: PhysAddr) -> Option<PhysAddr> {
        for r in self.memory.regions() {
            if limit <= r.size {
                return Some(r.base + limit);
            }
            limit -= r.size;
        }
        None
    }

    // ---------------------------------------------------------------------
    // Queries
    // ---------------------------------------------------------------------

    /// `memblock_overlaps_region`: whether any region of `which` intersects
    /// `[base, base + size)`.
    pub fn overlaps_region(&self, which: Which, base: PhysAddr, size: PhysAddr) -> bool {
        let size = cap_size(base, size);
        self.region_type(which)
            .regions()
            .iter()
            .any(|r| base < r.end() && r.base < base + size)
    }

    /// `memblock_is_region_memory`: whether the range lies in one memory region.
    pub fn is_region_memory(&self, base: PhysAddr, size: PhysAddr) -> bool {
        let end = base + cap_size(base, size);
        match self.memory.search(base) {
            Some(idx) => self.memory.regions()[idx].end() >= end,
            None => false,
        }
    }

    /// `memblock_is_region_reserved`: whether the range intersects reserved memory.
    pub fn is_region_reserved(&self, base: PhysAddr, size: PhysAddr) -> bool {
        self.overlaps_region(Which::Reserved, base, size)
    }

    /// `memblock_is_memory`.
    pub fn is_memory(&self, addr: PhysAddr) -> bool {
        self.memory.search(addr).is_some()
    }

    /// `memblock_is_map_memory`: memory that is not `NOMAP`.
    pub fn is_map_memory(&self, addr: PhysAddr) -> bool {
        self.memory
            .search(addr)
            .is_some_and(|i| !self.memory.regions()[i].is_nomap())
    }

    /// `memblock_is_reserved`.
    pub fn is_reserved(&self, addr: PhysAddr) -> bool {
        self.reserved.search(addr).is_some()
    }

    /// `memblock_phys_mem_size`.
    pub const fn phys_mem_size(&self) -> PhysAddr {
        self.memory.total_size
    }

    /// `memblock_reserved_size`.
    pub const fn reserved_size(&self) -> PhysAddr {
        self.reserved.total_size
    }

    /// `memblock_start_of_DRAM` (0 when no memory is registered).
    pub fn start_of_dram(&self) -> PhysAddr {
        self.memory.array()[0].base
    }

    /// `memblock_end_of_DRAM` (0 when no memory is registered).
    pub fn end_of_dram(&self) -> PhysAddr {
        self.memory.regions().last().map_or(0, MemblockRegion::end)
    }

    // ---------------------------------------------------------------------
    // Iterators
    // ---------------------------------------------------------------------

    /// `for_each_free_mem_range(i, nid, MEMBLOCK_NONE, ...)`: free ranges in
    /// ascending order, `(start, end, nid)`, `nid == NUMA_NO_NODE` for any.
    pub fn free_ranges(&self, nid: i32) -> MemRanges<'_> {
        self.free_ranges_flags(nid, MemblockFlags::NONE)
    }

    /// Free ranges with explicit `flags` (`MIRROR`: mirrored only; `NOMAP`,
    /// `DRIVER_MANAGED`, `HOTPLUG`: include such memory).
    pub fn free_ranges_flags(&self, nid: i32, flags: MemblockFlags) -> MemRanges<'_> {
        MemRanges::new(
            &self.memory,
            Some(&self.reserved),
            true,
            nid,
            flags,
            self.movable_node,
            false,
        )
    }

    /// `for_each_free_mem_range_reverse`: free ranges in descending order.
    pub fn free_ranges_rev(&self, nid: i32) -> MemRanges<'_> {
        self.free_ranges_rev_flags(nid, MemblockFlags::NONE)
    }

    /// Free ranges in descending order with explicit `flags`.
    pub fn free_ranges_rev_flags(&self, nid: i32, flags: MemblockFlags) -> MemRanges<'_> {
        MemRanges::new(
            &self.memory,
            Some(&self.reserved),
            true,
            nid,
            flags,
            self.movable_node,
            true,
        )
    }

    /// `for_each_mem_range`: memory regions (reserved or not), filtered by
    /// node and flags like the free ranges.
    pub fn memory_ranges(&self, nid: i32) -> MemRanges<'_> {
        MemRanges::new(
            &self.memory,
            None,
            true,
            nid,
            MemblockFlags::NONE,
            self.movable_node,
            false,
        )
    }

    /// `for_each_reserved_mem_range`: all reserved regions.
    pub fn reserved_ranges(&self) -> MemRanges<'_> {
        MemRanges::new(
            &self.reserved,
            None,
            false,
            NUMA_NO_NODE,
            MemblockFlags::NONE,
            self.movable_node,
            false,
        )
    }

    // ---------------------------------------------------------------------
    // Allocation
    // ---------------------------------------------------------------------

    /// `memblock_find_in_range_node`: a free, `align`ed range of `size` bytes
    /// in `[start, end]`; 0 if none.
    fn find_in_range_node(
        &self,
        size: PhysAddr,
        align: PhysAddr,
        start: PhysAddr,
        end: PhysAddr,
        nid: i32,
        flags: MemblockFlags,
    ) -> PhysAddr {
        let end = if end == MEMBLOCK_ALLOC_ACCESSIBLE || end == MEMBLOCK_ALLOC_NOLEAKTRACE {
            self.current_limit
        } else {
            end
        };
        // Avoid allocating the first page.
        let start = start.max(PAGE_SIZE);
        let end = end.max(start);

        if self.bottom_up {
            for (this_start, this_end, _) in self.free_ranges_flags(nid, flags) {
                let this_start = this_start.clamp(start, end);
                let this_end = this_end.clamp(start, end);
                let Some(cand) = round_up(this_start, align) else {
                    continue;
                };
                if cand < this_end && this_end - cand >= size {
                    return cand;
                }
            }
        } else {
            for (this_start, this_end, _) in self.free_ranges_rev_flags(nid, flags) {
                let this_start = this_start.clamp(start, end);
                let this_end = this_end.clamp(start, end);
                if this_end < size {
                    continue;
                }
                let cand = round_down(this_end - size, align);
                if cand >= this_start {
                    return cand;
                }
            }
        }
        0
    }

    /// `memblock_find_in_range`: any node, mirrored memory first if present.
    fn find_in_range(&mut self, start: PhysAddr, end: PhysAddr, size: PhysAddr, align: PhysAddr) -> PhysAddr {
        let mut flags = self.choose_memblock_flags();
        loop {
            let ret = self.find_in_range_node(size, align, start, end, NUMA_NO_NODE, flags);
            if ret == 0 && flags.intersects(MemblockFlags::MIRROR) {
                self.warnings += 1;
                flags = flags.difference(MemblockFlags::MIRROR);
                continue;
            }
            return ret;
        }
    }

    /// `memblock_alloc_range_nid`: find and reserve `size` bytes aligned to
    /// `align` (0 means [`SMP_CACHE_BYTES`], with a warning) in
    /// `[start, end]`, preferring node `nid` and falling back to any node
    /// unless `exact_nid`. Returns the physical address, 0 on failure.
    pub fn alloc_range_nid(
        &mut self,
        size: PhysAddr,
        align: PhysAddr,
        start: PhysAddr,
        end: PhysAddr,
        nid: i32,
        exact_nid: bool,
    ) -> PhysAddr {
        let mut flags = self.choose_memblock_flags();
        let mut nid = nid;
        let mut align = align;
        if nid == NO_NID {
            self.warnings += 1;
            nid = NUMA_NO_NODE;
        }
        if align == 0 {
            self.warnings += 1;
            align = SMP_CACHE_BYTES;
        }
        loop {
            let found = self.find_in_range_node(size, align, start, end, nid, flags);
            if found != 0 && self.reserve(found, size).is_ok() {
                return found;
            }
            if numa_valid_node(nid) && !exact_nid {
                let found = self.find_in_range_node(size, align, start, end, NUMA_NO_NODE, flags);
                if found != 0 && self.reserve(found, size).is_ok() {
                    return found;
                }
            }
            if flags.intersects(MemblockFlags::MIRROR) {
                flags = flags.difference(MemblockFlags::MIRROR);
                self.warnings += 1;
                continue;
            }
            return 0;
        }
    }

    /// `memblock_phys_alloc_range`: any node, `[start, end]`.
    pub fn phys_alloc_range(
        &mut self,
        size: PhysAddr,
        align: PhysAddr,
        start: PhysAddr,
        end: PhysAddr,
    ) -> PhysAddr {
        self.alloc_range_nid(size, align, start, end, NUMA_NO_NODE, false)
    }

    /// `memblock_phys_alloc_try_nid`: node `nid` preferred, below `current_limit`.
    pub fn phys_alloc_try_nid(&mut self, size: PhysAddr, align: PhysAddr, nid: i32) -> PhysAddr {
        self.alloc_range_nid(size, align, 0, MEMBLOCK_ALLOC_ACCESSIBLE, nid, false)
    }

    /// `memblock_phys_alloc`: anywhere below `current_limit`.
    pub fn phys_alloc(&mut self, size: PhysAddr, align: PhysAddr) -> PhysAddr {
        self.phys_alloc_range(size, align, 0, MEMBLOCK_ALLOC_ACCESSIBLE)
    }

    /// `memblock_alloc_internal`: clamp to `current_limit`, retry without the
    /// lower bound, translate through the direct map.
    fn alloc_internal(
        &mut self,
        size: PhysAddr,
        align: PhysAddr,
        min_addr: PhysAddr,
        max_addr: PhysAddr,
        nid: i32,
        exact_nid: bool,
    ) -> *mut u8 {
        if self.direct_map.is_none() {
            return core::ptr::null_mut();
        }
        let max_addr = max_addr.min(self.current_limit);
        let mut alloc = self.alloc_range_nid(size, align, min_addr, max_addr, nid, exact_nid);
        if alloc == 0 && min_addr != 0 {
            alloc = self.alloc_range_nid(size, align, 0, max_addr, nid, exact_nid);
        }
        if alloc == 0 {
            return core::ptr::null_mut();
        }
        self.phys_to_virt(alloc)
    }

    /// `memblock_alloc_try_nid`: zeroed memory, node `nid` preferred,
    /// `[min_addr, max_addr]` preferred (the lower bound is dropped if it
    /// cannot be met). Null without a direct map or on failure. Fresh memory
    /// of zeroed RAM is not cleared again ([`Memblock::set_ram_zeroed`]).
    pub fn alloc_try_nid(
        &mut self,
        size: PhysAddr,
        align: PhysAddr,
        min_addr: PhysAddr,
        max_addr: PhysAddr,
        nid: i32,
    ) -> *mut u8 {
        let ptr = self.alloc_internal(size, align, min_addr, max_addr, nid, false);
        if !ptr.is_null() && !self.fresh_reads_zero() {
            // `ptr` is the direct-map address of `size` bytes of registered
            // memory, just reserved for this allocation.
            // SAFETY: by the `set_direct_map` contract they are valid for
            // writes and used by nobody else.
            unsafe { core::ptr::write_bytes(ptr, 0, size as usize) };
        }
        ptr
    }

    /// `memblock_alloc_try_nid_raw`: like [`Memblock::alloc_try_nid`], not zeroed.
    pub fn alloc_try_nid_raw(
        &mut self,
        size: PhysAddr,
        align: PhysAddr,
        min_addr: PhysAddr,
        max_addr: PhysAddr,
        nid: i32,
    ) -> *mut u8 {
        self.alloc_internal(size, align, min_addr, max_addr, nid, false)
    }

    /// `memblock_alloc_exact_nid_raw`: only node `nid` (unless `NUMA_NO_NODE`),
    /// not zeroed.
    pub fn alloc_exact_nid_raw(
        &mut self,
        size: PhysAddr,
        align: PhysAddr,
        min_addr: PhysAddr,
        max_addr: PhysAddr,
        nid: i32,
    ) -> *mut u8 {
        self.alloc_internal(size, align, min_addr, max_addr, nid, true)
    }

    /// `memblock_alloc`: zeroed, anywhere below `current_limit`.
    pub fn alloc(&mut self, size: PhysAddr, align: PhysAddr) -> *mut u8 {
        self.alloc_try_nid(
            size,
            align,
            MEMBLOCK_LOW_LIMIT,
            MEMBLOCK_ALLOC_ACCESSIBLE,
            NUMA_NO_NODE,
        )
    }

    /// `memblock_alloc_raw`: not zeroed.
    pub fn alloc_raw(&mut self, size: PhysAddr, align: PhysAddr) -> *mut u8 {
        self.alloc_try_nid_raw(
            size,
            align,
            MEMBLOCK_LOW_LIMIT,
            MEMBLOCK_ALLOC_ACCESSIBLE,
            NUMA_NO_NODE,
        )
    }

    /// `memblock_alloc_from`: zeroed, preferably at or above `min_addr`.
    pub fn alloc_from(&mut self, size: PhysAddr, align: PhysAddr, min_addr: PhysAddr) -> *mut u8 {
        self.alloc_try_nid(size, align, min_addr, MEMBLOCK_ALLOC_ACCESSIBLE, NUMA_NO_NODE)
    }

    /// `memblock_alloc_low`: zeroed, below [`ARCH_LOW_ADDRESS_LIMIT`].
    pub fn alloc_low(&mut self, size: PhysAddr, align: PhysAddr) -> *mut u8 {
        self.alloc_try_nid(
            size,
            align,
            MEMBLOCK_LOW_LIMIT,
            ARCH_LOW_ADDRESS_LIMIT,
            NUMA_NO_NODE,
        )
    }

    /// `memblock_alloc_node`: zeroed, node `nid` preferred.
    pub fn alloc_node(&mut self, size: PhysAddr, align: PhysAddr, nid: i32) -> *mut u8 {
        self.alloc_try_nid(size, align, MEMBLOCK_LOW_LIMIT, MEMBLOCK_ALLOC_ACCESSIBLE, nid)
    }

    /// bootmem `alloc_bootmem`: zeroed, cache-line aligned. The kernel
    /// panicked on failure; this returns null.
    pub fn alloc_bootmem(&mut self, size: PhysAddr) -> *mut u8 {
        self.alloc(size, SMP_CACHE_BYTES)
    }

    /// bootmem `alloc_bootmem_pages`: zeroed, page aligned.
    pub fn alloc_bootmem_pages(&mut self, size: PhysAddr) -> *mut u8 {
        self.alloc(size, PAGE_SIZE)
    }

    /// bootmem `alloc_bootmem_low`: zeroed, cache-line aligned, below
    /// [`ARCH_LOW_ADDRESS_LIMIT`].
    pub fn alloc_bootmem_low(&mut self, size: PhysAddr) -> *mut u8 {
        self.alloc_low(size, SMP_CACHE_BYTES)
    }

    /// bootmem `alloc_bootmem_low_pages`: zeroed, page aligned, below
    /// [`ARCH_LOW_ADDRESS_LIMIT`].
    pub fn alloc_bootmem_low_pages(&mut self, size: PhysAddr) -> *mut u8 {
        self.alloc_low(size, PAGE_SIZE)
    }

    /// bootmem `free_bootmem`: un-reserve a physical range.
    pub fn free_bootmem(&mut self, phys: PhysAddr, size: PhysAddr) -> Result<(), MemblockError> {
        self.phys_free(phys, size)
    }

    // ---------------------------------------------------------------------
    // Text output
    // ---------------------------------------------------------------------

    /// `memblock_debug_show`: the contents of
    /// `/sys/kernel/debug/memblock/{memory,reserved}`, one
    /// `"%4d: %pa..%pa %4d %s\n"` line per region (end inclusive; the node is
    /// `x` when it is not a valid node; the flag word is the lowest set flag).
    pub fn debugfs_show(&self, which: Which, out: &mut dyn fmt::Write) -> fmt::Result {
        for (i, r) in self.region_type(which).regions().iter().enumerate() {
            let end = r.end().wrapping_sub(1);
            write!(out, "{i:4}: {:#018x}..{end:#018x} ", r.base)?;
            if numa_valid_node(r.nid) {
                write!(out, "{:4} ", r.nid)?;
            } else {
                write!(out, "{:>4} ", 'x')?;
            }
            writeln!(out, "{}", flag_name(r.flags))?;
        }
        Ok(())
    }

    /// `__memblock_dump_all`: the `memblock=debug` boot dump.
    pub fn dump_all(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        writeln!(out, "MEMBLOCK configuration:")?;
        writeln!(
            out,
            " memory size = {:#018x} reserved size = {:#018x}",
            self.memory.total_size, self.reserved.total_size
        )?;
        for t in [&self.memory, &self.reserved] {
            writeln!(out, " {}.cnt  = {:#x}", t.name, t.cnt)?;
            for (idx, r) in t.regions().iter().enumerate() {
                write!(
                    out,
                    " {}[{}]\t[{:#018x}-{:#018x}], {:#018x} bytes",
                    t.name,
                    AltHex(idx as u64),
                    r.base,
                    r.end().wrapping_sub(1),
                    r.size
                )?;
                if r.nid != NO_NID {
                    write!(out, " on node {}", r.nid)?;
                }
                writeln!(out, " flags: {}", AltHex(u64::from(r.flags.0)))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::boxed::Box;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    /// A page-aligned host buffer used as "DRAM" at physical address `phys`.
    struct Ram {
        buf: Vec<u8>,
        phys: PhysAddr,
        len: u64,
    }

    impl Ram {
        fn new(phys: PhysAddr, len: u64) -> Self {
            Self {
                buf: vec![0xa5; len as usize + PAGE_SIZE as usize],
                phys,
                len,
            }
        }

        /// Virtual address of `phys` (page aligned).
        fn base_ptr(&mut self) -> *mut u8 {
            let p = self.buf.as_mut_ptr();
            p.wrapping_add(p.align_offset(PAGE_SIZE as usize))
        }

        fn attach(&mut self, mb: &mut Memblock) {
            let off = (self.base_ptr() as usize).wrapping_sub(self.phys as usize);
            // SAFETY: the buffer outlives `mb` in every test, holds `len`
            // bytes from the aligned base, and only memblock touches it.
            unsafe { mb.set_direct_map(off) };
            mb.add(self.phys, self.len).unwrap();
        }
    }

    #[test]
    fn const_new_and_empty_state() {
        static MB: Memblock = Memblock::new();
        assert_eq!(MB.memory.cnt(), 0);
        assert_eq!(MB.reserved.cnt(), 0);
        assert_eq!(MB.memory.max(), INIT_MEMBLOCK_REGIONS);
        assert_eq!(MB.memory.name(), "memory");
        assert_eq!(MB.reserved.name(), "reserved");
        assert_eq!(MB.current_limit, MEMBLOCK_ALLOC_ANYWHERE);
        assert_eq!(MB.start_of_dram(), 0);
        assert_eq!(MB.end_of_dram(), 0);
        assert!(MB.free_ranges(NUMA_NO_NODE).next().is_none());
    }

    #[test]
    fn full_array_without_resize_is_an_error() {
        let mut mb = Memblock::new();
        for i in 0..INIT_MEMBLOCK_REGIONS as u64 {
            mb.reserve(i * 0x1000, 0x100).unwrap();
        }
        assert_eq!(mb.reserve(0x100_0000, 0x100), Err(MemblockError::TooManyRegions));
        // Allowed, but no direct map: still an error.
        mb.allow_resize();
        assert_eq!(mb.reserve(0x100_0000, 0x100), Err(MemblockError::TooManyRegions));
        // Even a range that would merge counts as a new piece first (as in
        // the kernel), but one inside an existing region needs no slot.
        assert_eq!(mb.reserve(0x100, 0x100), Err(MemblockError::TooManyRegions));
        mb.reserve(0x10, 0x20).unwrap();
        assert_eq!(mb.reserved.cnt(), INIT_MEMBLOCK_REGIONS);
        assert_eq!(mb.reserved_size(), INIT_MEMBLOCK_REGIONS as u64 * 0x100);
        // Splitting would need slots: removal in the middle fails too.
        assert_eq!(mb.phys_free(0x1040, 0x10), Err(MemblockError::TooManyRegions));
    }

    #[test]
    fn doubling_with_offset_direct_map_and_move() {
        let mut ram = Ram::new(0x20_0000, 0x10_0000);
        let mut mb = Memblock::new();
        ram.attach(&mut mb);
        mb.allow_resize();
        for i in 0..=INIT_MEMBLOCK_REGIONS as u64 {
            mb.reserve(0x20_0000 + i * 0x100, 0x80).unwrap();
        }
        assert_eq!(mb.reserved.max(), 2 * INIT_MEMBLOCK_REGIONS);
        assert!(mb.reserved.is_grown());
        // The new array sits at the top of RAM, page aligned, reserved.
        let arr_phys = 0x30_0000 - 0x2000;
        assert_eq!(mb.reserved.regions().last().unwrap().base, arr_phys);
        assert_eq!(mb.reserved.regions_ptr(), mb.phys_to_virt(arr_phys).cast());
        assert_eq!(mb.reserved.cnt(), INIT_MEMBLOCK_REGIONS + 2);

        // Moving the struct keeps everything valid.
        let moved = Box::new(mb);
        let mut mb = *moved;
        assert_eq!(mb.reserved.regions()[5].base, 0x20_0500);
        // Doubling again frees the old grown array.
        for i in 0..=INIT_MEMBLOCK_REGIONS as u64 {
            mb.reserve(0x28_0000 + i * 0x100, 0x80).unwrap();
        }
        assert_eq!(mb.reserved.max(), 4 * INIT_MEMBLOCK_REGIONS);
        assert!(!mb.is_reserved(arr_phys));
        let new_arr = mb.virt_to_phys(mb.reserved.regions_ptr().cast());
        assert!(mb.is_reserved(new_arr));
        assert_eq!(
            mb.reserved_size(),
            (2 * INIT_MEMBLOCK_REGIONS as u64 + 2) * 0x80 + 0x3000
        );
    }

    #[test]
    fn bootmem_aliases() {
        // 128 KiB of RAM straddling the 4 GiB line.
        let mut ram = Ram::new(0xffff_0000, 0x2_0000);
        let mut mb = Memblock::new();
        ram.attach(&mut mb);
        let low = mb.alloc_bootmem_low_pages(100);
        assert!(!low.is_null());
        let phys = mb.virt_to_phys(low);
        assert_eq!(phys, 0xffff_f000);
        // SAFETY: 100 bytes just allocated from the test buffer.
        assert!(unsafe { core::slice::from_raw_parts(low, 100) }
            .iter()
            .all(|&b| b == 0));
        let low2 = mb.alloc_bootmem_low(10);
        assert_eq!(mb.virt_to_phys(low2), 0xffff_ffc0);
        mb.free_bootmem(phys, 100).unwrap();
        assert_eq!(mb.reserved_size(), 10);
        let p = mb.alloc_bootmem_pages(1);
        assert_eq!(mb.virt_to_phys(p), 0x1_0001_0000 - PAGE_SIZE);
        let q = mb.alloc_bootmem(1);
        assert_eq!(mb.virt_to_phys(q), 0x1_0001_0000 - 64);
        // SAFETY: one byte just allocated from the test buffer.
        assert_eq!(unsafe { *q }, 0);
        mb.free(p, 1);
        mb.free(q, 1);
        mb.free(core::ptr::null_mut(), 1);
        assert_eq!(mb.reserved.cnt(), 1);
    }

    /// On RAM declared zeroed, fresh memory is handed out as it is; once a
    /// reservation went back (its bytes written), the zeroing allocators
    /// clear again.
    #[test]
    fn zeroed_ram_is_not_cleared_until_something_is_freed() {
        let mut ram = Ram::new(0x10_0000, 0x2_0000);
        // The buffer holds 0xa5 bytes: "zeroed" RAM that is not, so that a
        // skipped memset shows.
        let mut mb = Memblock::new();
        ram.attach(&mut mb);
        // SAFETY: not so here, on purpose (the test reads bytes only).
        unsafe { mb.set_ram_zeroed(true) };
        assert!(mb.fresh_reads_zero());
        let p = mb.alloc(256, 64);
        // SAFETY: 256 bytes memblock gave us.
        assert!(unsafe { core::slice::from_raw_parts(p, 256) }
            .iter()
            .all(|&b| b == 0xa5));
        mb.free(p, 256);
        assert!(!mb.fresh_reads_zero());
        let q = mb.alloc(256, 64);
        assert_eq!(q, p, "top-down: the same range again");
        // SAFETY: as above.
        assert!(unsafe { core::slice::from_raw_parts(q, 256) }
            .iter()
            .all(|&b| b == 0));
        // SAFETY: `false` promises nothing.
        unsafe { mb.set_ram_zeroed(false) };
        ram.buf.fill(0xa5);
        let mut mb = Memblock::new();
        ram.attach(&mut mb);
        assert!(!mb.fresh_reads_zero(), "not declared: cleared");
        let r = mb.alloc(64, 64);
        // SAFETY: as above.
        assert!(unsafe { core::slice::from_raw_parts(r, 64) }
            .iter()
            .all(|&b| b == 0));
    }

    #[test]
    fn nothing_freed_until_a_reservation_goes_back() {
        let mut ram = Ram::new(0x10_0000, 0x2_0000);
        let mut mb = Memblock::new();
        ram.attach(&mut mb);
        let p = mb.alloc_raw(100, 64);
        assert!(!p.is_null());
        mb.reserve(0x10_0000, PAGE_SIZE).unwrap();
        // Removing nothing (a range with no reservation) frees nothing.
        mb.phys_free(0x11_0000, PAGE_SIZE).unwrap();
        assert!(mb.nothing_freed());
        mb.free(p, 100);
        assert!(!mb.nothing_freed());
        // A doubling that gives an old array back counts too.
        let mut ram = Ram::new(0x10_0000, 0x100_0000);
        let mut mb = Memblock::new();
        ram.attach(&mut mb);
        mb.allow_resize();
        for i in 0..300 {
            mb.reserve(0x10_0000 + i * 2 * PAGE_SIZE, PAGE_SIZE).unwrap();
            assert!(
                mb.nothing_freed() || mb.reserved.cnt() > INIT_MEMBLOCK_REGIONS,
                "{i}"
            );
        }
        assert!(
            !mb.nothing_freed(),
            "the second doubling gave the first array back"
        );
    }

    #[test]
    fn no_direct_map_means_null_but_phys_works() {
        let mut mb = Memblock::new();
        mb.add(0x10_0000, 0x10_0000).unwrap();
        assert!(mb.alloc(64, 64).is_null());
        assert_eq!(mb.reserved.cnt(), 0);
        assert_eq!(mb.phys_alloc(64, 64), 0x20_0000 - 64);
        assert_eq!(mb.phys_alloc_try_nid(64, 0, 3), 0x20_0000 - 128);
        assert_eq!(mb.warnings, 1); // zero alignment
        assert_eq!(
            mb.alloc_range_nid(64, 64, 0, 0, MAX_NUMNODES as i32, false),
            0x20_0000 - 192
        );
        assert_eq!(mb.warnings, 2); // MAX_NUMNODES as nid
                                    // Nothing below the first page is ever returned.
        let mut low = Memblock::new();
        low.add(0, 0x2000).unwrap();
        low.set_bottom_up(true);
        assert_eq!(low.phys_alloc(16, 16), PAGE_SIZE);
    }

    #[test]
    fn free_ranges_both_directions_and_flags() {
        let mut mb = Memblock::new();
        mb.add_node(0x1000, 0x3000, 0, MemblockFlags::NONE).unwrap();
        mb.add_node(0x10000, 0x1000, 1, MemblockFlags::NONE).unwrap();
        mb.reserve(0x2000, 0x100).unwrap();
        let fwd: Vec<_> = mb.free_ranges(NUMA_NO_NODE).collect();
        assert_eq!(
            fwd,
            [(0x1000, 0x2000, 0), (0x2100, 0x4000, 0), (0x10000, 0x11000, 1)]
        );
        let mut rev: Vec<_> = mb.free_ranges_rev(NUMA_NO_NODE).collect();
        rev.reverse();
        assert_eq!(rev, fwd);
        assert_eq!(mb.free_ranges(1).collect::<Vec<_>>(), [(0x10000, 0x11000, 1)]);
        mb.mark_nomap(0x10000, 0x1000).unwrap();
        assert_eq!(mb.free_ranges(1).count(), 0);
        assert_eq!(mb.free_ranges_flags(1, MemblockFlags::NOMAP).count(), 1);
        assert!(!mb.is_map_memory(0x10000));
        assert!(mb.is_map_memory(0x1000));
        mb.set_movable_node(true);
        mb.mark_hotplug(0x1000, 0x1000).unwrap();
        assert_eq!(mb.free_ranges(NUMA_NO_NODE).next(), Some((0x2100, 0x4000, 0)));
        mb.clear_hotplug(0, PHYS_ADDR_MAX).unwrap();
        mb.clear_nomap(0, PHYS_ADDR_MAX).unwrap();
        assert_eq!(mb.memory.cnt(), 2);
        assert_eq!(mb.memory_ranges(0).collect::<Vec<_>>(), [(0x1000, 0x4000, 0)]);
        assert_eq!(
            mb.reserved_ranges().collect::<Vec<_>>(),
            [(0x2000, 0x2100, NO_NID)]
        );
    }

    #[test]
    fn mirror_preferred_then_fallback() {
        let mut mb = Memblock::new();
        mb.add(0x10_0000, 0x10_0000).unwrap();
        mb.mark_mirror(0x10_0000, 0x1000).unwrap();
        assert_eq!(mb.memory.cnt(), 2);
        // Mirrored memory is used first even though it is lower.
        assert_eq!(mb.phys_alloc(0x800, 0x800), 0x10_0800);
        assert_eq!(mb.warnings, 0);
        // Too big for the mirror: warning and any memory.
        assert_eq!(mb.phys_alloc(0x1000, 0x1000), 0x1F_F000);
        assert_eq!(mb.warnings, 1);
    }

    #[test]
    fn region_queries() {
        let mut mb = Memblock::new();
        mb.add(0x1000, 0x1000).unwrap();
        mb.add(0x3000, 0x1000).unwrap();
        mb.reserve(0x3800, 0x10).unwrap();
        assert!(mb.is_memory(0x1fff));
        assert!(!mb.is_memory(0x2000));
        assert!(mb.is_region_memory(0x1000, 0x1000));
        assert!(!mb.is_region_memory(0x1800, 0x1000));
        assert!(mb.is_reserved(0x380f));
        assert!(!mb.is_reserved(0x3810));
        assert!(mb.is_region_reserved(0x3000, 0x801));
        assert!(!mb.is_region_reserved(0x3000, 0x800));
        assert_eq!(mb.start_of_dram(), 0x1000);
        assert_eq!(mb.end_of_dram(), 0x4000);
        assert_eq!(mb.phys_mem_size(), 0x2000);
        assert_eq!(mb.trim_memory(0), Err(MemblockError::InvalidAlignment));
        assert_eq!(MemblockError::TooManyRegions.to_errno(), -12);
    }

    #[test]
    fn trim_keeps_total_size() {
        let mut mb = Memblock::new();
        mb.add(0x1010, 0x2000).unwrap();
        mb.trim_memory(0x1000).unwrap();
        assert_eq!(mb.memory.regions()[0].base, 0x2000);
        assert_eq!(mb.memory.regions()[0].size, 0x1000);
        assert_eq!(mb.phys_mem_size(), 0x1000);
    }

    #[test]
    fn memory_limit_and_cap() {
        let mut mb = Memblock::new();
        mb.add(0x1000, 0x1000).unwrap();
        mb.add(0x4000, 0x4000).unwrap();
        mb.reserve(0x5000, 0x2000).unwrap();
        mb.enforce_memory_limit(0x2000).unwrap();
        assert_eq!(mb.phys_mem_size(), 0x2000);
        assert_eq!(mb.end_of_dram(), 0x5000);
        assert!(mb.reserved.regions().is_empty());
        assert_eq!(mb.reserved.cnt(), 0);

        let mut mb = Memblock::new();
        mb.add(0x1000, 0x8000).unwrap();
        mb.mark_nomap(0x1000, 0x1000).unwrap();
        mb.reserve(0x1000, 0x8000).unwrap();
        mb.cap_memory_range(0x4000, 0x1000).unwrap();
        let kept: Vec<_> = mb.memory.regions().iter().map(|r| (r.base, r.size)).collect();
        assert_eq!(kept, [(0x1000, 0x1000), (0x4000, 0x1000)]);
        assert_eq!(mb.reserved.regions()[0].base, 0x4000);
        assert_eq!(mb.reserved_size(), 0x1000);
    }

    #[test]
    fn set_node_and_merge() {
        let mut mb = Memblock::new();
        mb.add(0x1000, 0x4000).unwrap();
        mb.set_node(0x1000, 0x2000, Which::Memory, 0).unwrap();
        mb.set_node(0x3000, 0x2000, Which::Memory, 1).unwrap();
        assert_eq!(mb.memory.cnt(), 2);
        mb.set_node(0x3000, 0x2000, Which::Memory, 0).unwrap();
        assert_eq!(mb.memory.cnt(), 1);
        assert_eq!(mb.memory.regions()[0].nid, 0);
        // Adding over a hole with a different node: the hole gets the new node.
        mb.add_node(0x5000, 0x1000, 2, MemblockFlags::NONE).unwrap();
        assert_eq!(mb.memory.cnt(), 2);
        mb.add_node(0x0, 0x8000, 3, MemblockFlags::NONE).unwrap();
        let nids: Vec<_> = mb.memory.regions().iter().map(|r| r.nid).collect();
        assert_eq!(nids, [3, 0, 2, 3]);
        assert_eq!(mb.phys_mem_size(), 0x8000);
    }

    #[test]
    fn noinit_flag_splits_reserved() {
        let mut mb = Memblock::new();
        mb.reserve(0x1000, 0x3000).unwrap();
        mb.reserved_mark_noinit(0x2000, 0x1000).unwrap();
        assert_eq!(mb.reserved.cnt(), 3);
        assert!(mb.reserved.regions()[1].is_reserved_noinit());
        assert_eq!(mb.reserved_size(), 0x3000);
    }

    #[test]
    fn debugfs_and_dump_format() {
        let mut mb = Memblock::new();
        mb.add(0x1000, 0x1000).unwrap();
        mb.add_node(
            0x10_0000,
            0x2000,
            1,
            MemblockFlags::HOTPLUG | MemblockFlags::NOMAP,
        )
        .unwrap();
        mb.add_node(0x20_0000, 0x1000, 2, MemblockFlags(0x40)).unwrap();
        let mut s = String::new();
        mb.debugfs_show(Which::Memory, &mut s).unwrap();
        assert_eq!(
            s,
            "   0: 0x0000000000001000..0x0000000000001fff    x NONE\n\
             \x20  1: 0x0000000000100000..0x0000000000101fff    1 HOTPLUG\n\
             \x20  2: 0x0000000000200000..0x0000000000200fff    2 UNKNOWN\n"
        );
        let mut s = String::new();
        mb.debugfs_show(Which::Reserved, &mut s).unwrap();
        assert!(s.is_empty());
        mb.reserve(0x1000, 0x10).unwrap();
        let mut s = String::new();
        mb.dump_all(&mut s).unwrap();
        assert!(s.starts_with(
            "MEMBLOCK configuration:\n memory size = 0x0000000000004000 reserved size = 0x0000000000000010\n memory.cnt  = 0x3\n"
        ));
        assert!(s.contains(
            " memory[0]\t[0x0000000000001000-0x0000000000001fff], 0x0000000000001000 bytes flags: 0\n"
        ));
        assert!(s.contains(" memory[0x1]\t[0x0000000000100000-0x0000000000101fff], 0x0000000000002000 bytes on node 1 flags: 0x5\n"));
        assert!(s.contains(" reserved.cnt  = 0x1\n"));
    }
}
