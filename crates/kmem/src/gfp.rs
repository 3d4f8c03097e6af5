//! GFP ("get free pages") flags: how an allocation may behave.
//!
//! Every request carries a `Gfp` from the front door down to the page
//! allocator. The low four bits pick the highest zone the memory may come
//! from (`gfp_zone`), two bits pick the migrate type (`gfp_migratetype`), and
//! the rest say whether the caller may sleep (`__GFP_DIRECT_RECLAIM`), start
//! I/O (`__GFP_IO`) or call into a filesystem (`__GFP_FS`), how hard to try
//! (`__GFP_NORETRY`, `__GFP_RETRY_MAYFAIL`, `__GFP_NOFAIL`), how deep into the
//! reserves it may reach (`__GFP_HIGH`, `__GFP_MEMALLOC`), and what to do with
//! the memory (`__GFP_ZERO`, `__GFP_COMP`).
//!
//! Bit values and composites are the kernel's (`include/linux/gfp_types.h`,
//! 6.12), so traces and C callers agree with Linux. `current_gfp_context`
//! applies the task's `memalloc_noio_save`/`memalloc_nofs_save` scopes.

use crate::platform::task_flags::{PF_MEMALLOC_NOFS, PF_MEMALLOC_NOIO, PF_MEMALLOC_PIN};
use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign, Not};

/// A set of GFP flags (`gfp_t`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Gfp(pub u32);

/// Allocate from ZONE_DMA (below 16 MiB).
pub const __GFP_DMA: Gfp = Gfp(0x01);
/// May come from ZONE_HIGHMEM (no permanent kernel mapping).
pub const __GFP_HIGHMEM: Gfp = Gfp(0x02);
/// Allocate from ZONE_DMA32 (below 4 GiB).
pub const __GFP_DMA32: Gfp = Gfp(0x04);
/// The memory can be migrated (page cache, user pages).
pub const __GFP_MOVABLE: Gfp = Gfp(0x08);
/// The memory can be reclaimed through a shrinker (slab with SLAB_RECLAIM_ACCOUNT).
pub const __GFP_RECLAIMABLE: Gfp = Gfp(0x10);
/// High priority: may use part of the min reserve.
pub const __GFP_HIGH: Gfp = Gfp(0x20);
/// May start physical I/O.
pub const __GFP_IO: Gfp = Gfp(0x40);
/// May call into the filesystem.
pub const __GFP_FS: Gfp = Gfp(0x80);
/// Return zeroed memory.
pub const __GFP_ZERO: Gfp = Gfp(0x100);
/// May sleep in direct reclaim.
pub const __GFP_DIRECT_RECLAIM: Gfp = Gfp(0x400);
/// Wake kswapd when the low watermark is reached.
pub const __GFP_KSWAPD_RECLAIM: Gfp = Gfp(0x800);
/// The page will be written to (dirty accounting).
pub const __GFP_WRITE: Gfp = Gfp(0x1000);
/// Do not print a failure report.
pub const __GFP_NOWARN: Gfp = Gfp(0x2000);
/// Retry while reclaim makes progress; may fail; never OOM-kills.
pub const __GFP_RETRY_MAYFAIL: Gfp = Gfp(0x4000);
/// The 2.6-era name of `__GFP_RETRY_MAYFAIL`.
pub const __GFP_REPEAT: Gfp = __GFP_RETRY_MAYFAIL;
/// Never fail: retry forever.
pub const __GFP_NOFAIL: Gfp = Gfp(0x8000);
/// One lightweight attempt at reclaim, then fail.
pub const __GFP_NORETRY: Gfp = Gfp(0x10000);
/// Ignore watermarks entirely (the allocation frees memory).
pub const __GFP_MEMALLOC: Gfp = Gfp(0x20000);
/// Compound page metadata (the order is recorded in the page).
pub const __GFP_COMP: Gfp = Gfp(0x40000);
/// Never use the emergency reserves (overrides `__GFP_MEMALLOC`).
pub const __GFP_NOMEMALLOC: Gfp = Gfp(0x80000);
/// Enforce the cpuset memory policy.
pub const __GFP_HARDWALL: Gfp = Gfp(0x100000);
/// Only the requested node, no fallback.
pub const __GFP_THISNODE: Gfp = Gfp(0x200000);
/// Charge to the memory cgroup.
pub const __GFP_ACCOUNT: Gfp = Gfp(0x400000);
/// Zero memory tags as well (HW-tag KASAN; accepted, no effect).
pub const __GFP_ZEROTAGS: Gfp = Gfp(0x800000);
/// 2.6-era cold-page hint: free/allocate at the cold end of the per-CPU list.
///
/// The bit was removed from Linux in 4.15; we keep the seeds' meaning on the
/// unused bit 0x200 so old code keeps compiling and behaving.
pub const __GFP_COLD: Gfp = Gfp(0x200);

/// Number of meaningful bits.
pub const __GFP_BITS_SHIFT: u32 = 26;
/// All valid bits.
pub const __GFP_BITS_MASK: Gfp = Gfp((1 << __GFP_BITS_SHIFT) - 1);
/// Both reclaim bits.
pub const __GFP_RECLAIM: Gfp = Gfp(__GFP_DIRECT_RECLAIM.0 | __GFP_KSWAPD_RECLAIM.0);

/// Interrupt handlers and other callers that cannot sleep; may use reserves.
pub const GFP_ATOMIC: Gfp = Gfp(__GFP_HIGH.0 | __GFP_KSWAPD_RECLAIM.0);
/// Normal kernel allocations; may sleep, start I/O and call the filesystem.
pub const GFP_KERNEL: Gfp = Gfp(__GFP_RECLAIM.0 | __GFP_IO.0 | __GFP_FS.0);
/// `GFP_KERNEL`, charged to the memory cgroup.
pub const GFP_KERNEL_ACCOUNT: Gfp = Gfp(GFP_KERNEL.0 | __GFP_ACCOUNT.0);
/// Cannot sleep, no reserves.
pub const GFP_NOWAIT: Gfp = Gfp(__GFP_KSWAPD_RECLAIM.0 | __GFP_NOWARN.0);
/// May sleep but not start I/O (block layer).
pub const GFP_NOIO: Gfp = __GFP_RECLAIM;
/// May sleep and start I/O but not call the filesystem.
pub const GFP_NOFS: Gfp = Gfp(__GFP_RECLAIM.0 | __GFP_IO.0);
/// Userspace allocations made by the kernel.
pub const GFP_USER: Gfp = Gfp(GFP_KERNEL.0 | __GFP_HARDWALL.0);
/// ISA DMA memory.
pub const GFP_DMA: Gfp = __GFP_DMA;
/// 32-bit DMA memory.
pub const GFP_DMA32: Gfp = __GFP_DMA32;
/// User pages that may live in HighMem.
pub const GFP_HIGHUSER: Gfp = Gfp(GFP_USER.0 | __GFP_HIGHMEM.0);
/// User pages that may live in HighMem and can move.
pub const GFP_HIGHUSER_MOVABLE: Gfp = Gfp(GFP_HIGHUSER.0 | __GFP_MOVABLE.0);
/// Transparent huge pages, light: no direct reclaim.
pub const GFP_TRANSHUGE_LIGHT: Gfp =
    Gfp((GFP_HIGHUSER_MOVABLE.0 | __GFP_COMP.0 | __GFP_NOMEMALLOC.0 | __GFP_NOWARN.0) & !__GFP_RECLAIM.0);
/// Transparent huge pages.
pub const GFP_TRANSHUGE: Gfp = Gfp(GFP_TRANSHUGE_LIGHT.0 | __GFP_DIRECT_RECLAIM.0);

/// Bits that say how hard reclaim may try (kept when slab allocates pages).
pub const GFP_RECLAIM_MASK: Gfp = Gfp(__GFP_RECLAIM.0
    | __GFP_HIGH.0
    | __GFP_IO.0
    | __GFP_FS.0
    | __GFP_NOWARN.0
    | __GFP_RETRY_MAYFAIL.0
    | __GFP_NOFAIL.0
    | __GFP_NORETRY.0
    | __GFP_MEMALLOC.0
    | __GFP_NOMEMALLOC.0);
/// Placement bits (kept when slab allocates pages).
pub const GFP_CONSTRAINT_MASK: Gfp = Gfp(__GFP_HARDWALL.0 | __GFP_THISNODE.0);
/// Zone bits a slab allocation must not carry.
pub const GFP_SLAB_BUG_MASK: Gfp = Gfp(__GFP_DMA32.0 | __GFP_HIGHMEM.0 | !__GFP_BITS_MASK.0);
/// The four zone-modifier bits.
pub const GFP_ZONEMASK: Gfp = Gfp(__GFP_DMA.0 | __GFP_HIGHMEM.0 | __GFP_DMA32.0 | __GFP_MOVABLE.0);

impl Gfp {
    /// No flags.
    pub const fn empty() -> Self {
        Gfp(0)
    }
    /// The raw bits.
    #[inline(always)]
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// Whether any bit of `other` is set.
    #[inline(always)]
    pub const fn intersects(self, other: Gfp) -> bool {
        self.0 & other.0 != 0
    }
    /// Whether every bit of `other` is set.
    #[inline(always)]
    pub const fn contains(self, other: Gfp) -> bool {
        self.0 & other.0 == other.0
    }
    /// `self` without the bits of `other`.
    #[inline(always)]
    pub const fn without(self, other: Gfp) -> Gfp {
        Gfp(self.0 & !other.0)
    }
    /// `self` with the bits of `other`.
    #[inline(always)]
    pub const fn with(self, other: Gfp) -> Gfp {
        Gfp(self.0 | other.0)
    }
    /// `gfpflags_allow_blocking()`: may the caller sleep?
    #[inline(always)]
    pub const fn allows_blocking(self) -> bool {
        self.intersects(__GFP_DIRECT_RECLAIM)
    }
}

impl BitOr for Gfp {
    type Output = Gfp;
    #[inline(always)]
    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}
impl BitOrAssign for Gfp {
    #[inline(always)]
    fn bitor_assign(&mut self, rhs: Gfp) {
        self.0 |= rhs.0;
    }
}
impl BitAnd for Gfp {
    type Output = Gfp;
    #[inline(always)]
    fn bitand(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 & rhs.0)
    }
}
impl Not for Gfp {
    type Output = Gfp;
    #[inline(always)]
    fn not(self) -> Gfp {
        Gfp(!self.0)
    }
}

/// Zone types, lowest first (`enum zone_type`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
#[repr(u8)]
pub enum ZoneType {
    /// ISA DMA, below 16 MiB.
    Dma = 0,
    /// 32-bit devices, below 4 GiB.
    Dma32 = 1,
    /// Everything else the kernel maps permanently.
    Normal = 2,
    /// Memory above the permanent kernel mapping (32-bit layouts).
    HighMem = 3,
    /// Movable-only memory (`kernelcore=`/`movablecore=`).
    Movable = 4,
}

/// Number of zone types (`MAX_NR_ZONES`). ZONE_DEVICE is not modelled.
pub const MAX_NR_ZONES: usize = 5;

impl ZoneType {
    /// All zone types, lowest first.
    pub const ALL: [ZoneType; MAX_NR_ZONES] = [
        ZoneType::Dma,
        ZoneType::Dma32,
        ZoneType::Normal,
        ZoneType::HighMem,
        ZoneType::Movable,
    ];
    /// The kernel's zone name (`zone_names[]`).
    pub const fn name(self) -> &'static str {
        match self {
            ZoneType::Dma => "DMA",
            ZoneType::Dma32 => "DMA32",
            ZoneType::Normal => "Normal",
            ZoneType::HighMem => "HighMem",
            ZoneType::Movable => "Movable",
        }
    }
    /// Zone type from its index.
    pub const fn from_index(i: usize) -> ZoneType {
        ZoneType::ALL[i]
    }
}

/// Why `gfp_zone` refused a flag combination.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BadZoneFlags(pub Gfp);

/// `gfp_zone()`: the highest zone an allocation with these flags may use.
///
/// The kernel encodes this as a 16-entry table indexed by the zone bits; the
/// combinations it marks BAD (`VM_BUG_ON`) are returned as `Err`.
/// `highmem` says whether the machine has a HighMem zone (CONFIG_HIGHMEM):
/// without it, `__GFP_HIGHMEM` means ZONE_NORMAL.
pub const fn gfp_zone(gfp: Gfp, highmem: bool) -> Result<ZoneType, BadZoneFlags> {
    let high = if highmem {
        ZoneType::HighMem
    } else {
        ZoneType::Normal
    };
    let bits = gfp.0 & GFP_ZONEMASK.0;
    let dma = __GFP_DMA.0;
    let hi = __GFP_HIGHMEM.0;
    let d32 = __GFP_DMA32.0;
    let mov = __GFP_MOVABLE.0;
    match bits {
        0 => Ok(ZoneType::Normal),
        b if b == dma => Ok(ZoneType::Dma),
        b if b == hi => Ok(high),
        b if b == d32 => Ok(ZoneType::Dma32),
        b if b == mov => Ok(ZoneType::Normal),
        b if b == mov | dma => Ok(ZoneType::Dma),
        b if b == mov | hi => Ok(ZoneType::Movable),
        b if b == mov | d32 => Ok(ZoneType::Dma32),
        _ => Err(BadZoneFlags(gfp)),
    }
}

/// Migrate types (`enum migratetype`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
#[repr(u8)]
pub enum MigrateType {
    /// Kernel memory that cannot move.
    Unmovable = 0,
    /// Page cache and user memory.
    Movable = 1,
    /// Reclaimable slab.
    Reclaimable = 2,
    /// Reserve for high-order atomic allocations.
    HighAtomic = 3,
    /// Blocks being isolated.
    Isolate = 4,
}

/// Number of migrate types with free lists (`MIGRATE_TYPES`).
pub const MIGRATE_TYPES: usize = 5;
/// Migrate types that have per-CPU lists (`MIGRATE_PCPTYPES`).
pub const MIGRATE_PCPTYPES: usize = 3;

impl MigrateType {
    /// All migrate types in the kernel's order.
    pub const ALL: [MigrateType; MIGRATE_TYPES] = [
        MigrateType::Unmovable,
        MigrateType::Movable,
        MigrateType::Reclaimable,
        MigrateType::HighAtomic,
        MigrateType::Isolate,
    ];
    /// The kernel's name (`migratetype_names[]`).
    pub const fn name(self) -> &'static str {
        match self {
            MigrateType::Unmovable => "Unmovable",
            MigrateType::Movable => "Movable",
            MigrateType::Reclaimable => "Reclaimable",
            MigrateType::HighAtomic => "HighAtomic",
            MigrateType::Isolate => "Isolate",
        }
    }
    /// Migrate type from its index.
    pub const fn from_index(i: usize) -> MigrateType {
        MigrateType::ALL[i]
    }
    /// The kernel's fallback order when this type's lists are empty.
    pub const fn fallbacks(self) -> [MigrateType; 2] {
        match self {
            MigrateType::Unmovable => [MigrateType::Reclaimable, MigrateType::Movable],
            MigrateType::Movable => [MigrateType::Reclaimable, MigrateType::Unmovable],
            _ => [MigrateType::Unmovable, MigrateType::Movable],
        }
    }
}

/// `gfp_migratetype()`: which free lists an allocation prefers.
#[inline(always)]
pub const fn gfp_migratetype(gfp: Gfp) -> MigrateType {
    match (gfp.0 & (__GFP_MOVABLE.0 | __GFP_RECLAIMABLE.0)) >> 3 {
        0 => MigrateType::Unmovable,
        1 => MigrateType::Movable,
        2 => MigrateType::Reclaimable,
        // Both bits set is a caller bug the kernel warns about; it lands in HighAtomic.
        _ => MigrateType::HighAtomic,
    }
}

/// `current_gfp_context()`: apply the task's NOIO/NOFS/PIN scopes.
#[inline(always)]
pub const fn current_gfp_context(gfp: Gfp, pflags: u32) -> Gfp {
    if pflags & (PF_MEMALLOC_NOIO | PF_MEMALLOC_NOFS | PF_MEMALLOC_PIN) == 0 {
        return gfp;
    }
    let mut g = gfp.0;
    if pflags & PF_MEMALLOC_NOIO != 0 {
        g &= !(__GFP_IO.0 | __GFP_FS.0);
    } else if pflags & PF_MEMALLOC_NOFS != 0 {
        g &= !__GFP_FS.0;
    }
    if pflags & PF_MEMALLOC_PIN != 0 {
        g &= !__GFP_MOVABLE.0;
    }
    Gfp(g)
}

/// Names printed by `%pGg`, in the kernel's order (`__def_gfpflag_names`):
/// composites first, then single bits.
const GFP_NAMES: &[(u32, &str)] = &[
    (GFP_TRANSHUGE.0, "GFP_TRANSHUGE"),
    (GFP_TRANSHUGE_LIGHT.0, "GFP_TRANSHUGE_LIGHT"),
    (GFP_HIGHUSER_MOVABLE.0, "GFP_HIGHUSER_MOVABLE"),
    (GFP_HIGHUSER.0, "GFP_HIGHUSER"),
    (GFP_USER.0, "GFP_USER"),
    (GFP_KERNEL_ACCOUNT.0, "GFP_KERNEL_ACCOUNT"),
    (GFP_KERNEL.0, "GFP_KERNEL"),
    (GFP_NOFS.0, "GFP_NOFS"),
    (GFP_ATOMIC.0, "GFP_ATOMIC"),
    (GFP_NOIO.0, "GFP_NOIO"),
    (GFP_NOWAIT.0, "GFP_NOWAIT"),
    (GFP_DMA.0, "GFP_DMA"),
    (__GFP_HIGHMEM.0, "__GFP_HIGHMEM"),
    (GFP_DMA32.0, "GFP_DMA32"),
    (__GFP_HIGH.0, "__GFP_HIGH"),
    (__GFP_IO.0, "__GFP_IO"),
    (__GFP_FS.0, "__GFP_FS"),
    (__GFP_NOWARN.0, "__GFP_NOWARN"),
    (__GFP_RETRY_MAYFAIL.0, "__GFP_RETRY_MAYFAIL"),
    (__GFP_NOFAIL.0, "__GFP_NOFAIL"),
    (__GFP_NORETRY.0, "__GFP_NORETRY"),
    (__GFP_COMP.0, "__GFP_COMP"),
    (__GFP_ZERO.0, "__GFP_ZERO"),
    (__GFP_NOMEMALLOC.0, "__GFP_NOMEMALLOC"),
    (__GFP_MEMALLOC.0, "__GFP_MEMALLOC"),
    (__GFP_HARDWALL.0, "__GFP_HARDWALL"),
    (__GFP_THISNODE.0, "__GFP_THISNODE"),
    (__GFP_RECLAIMABLE.0, "__GFP_RECLAIMABLE"),
    (__GFP_MOVABLE.0, "__GFP_MOVABLE"),
    (__GFP_ACCOUNT.0, "__GFP_ACCOUNT"),
    (__GFP_WRITE.0, "__GFP_WRITE"),
    (__GFP_RECLAIM.0, "__GFP_RECLAIM"),
    (__GFP_DIRECT_RECLAIM.0, "__GFP_DIRECT_RECLAIM"),
    (__GFP_KSWAPD_RECLAIM.0, "__GFP_KSWAPD_RECLAIM"),
    (__GFP_ZEROTAGS.0, "__GFP_ZEROTAGS"),
    (__GFP_COLD.0, "__GFP_COLD"),
];

/// `%pGg`: the flags as `GFP_KERNEL|__GFP_ZERO`-style names, leftover bits in hex.
impl fmt::Display for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut first = true;
        if rest == 0 {
            return f.write_str("0");
        }
        for &(mask, name) in GFP_NAMES {
            if mask != 0 && rest & mask == mask {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !mask;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{:#x}", rest)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}({})", self.0, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composites_match_the_kernel() {
        assert_eq!(GFP_KERNEL.0, 0xcc0);
        assert_eq!(GFP_ATOMIC.0, 0x820);
        assert_eq!(GFP_NOWAIT.0, 0x2800);
        assert_eq!(GFP_NOIO.0, 0xc00);
        assert_eq!(GFP_NOFS.0, 0xc40);
        assert_eq!(GFP_USER.0, 0x100cc0);
        assert_eq!(GFP_HIGHUSER.0, 0x100cc2);
        assert_eq!(GFP_HIGHUSER_MOVABLE.0, 0x100cca);
    }

    #[test]
    fn zone_table_covers_all_sixteen_combinations() {
        use ZoneType::*;
        let expect: [Option<ZoneType>; 16] = [
            Some(Normal),  // 0
            Some(Dma),     // DMA
            Some(HighMem), // HIGHMEM
            None,          // DMA|HIGHMEM
            Some(Dma32),   // DMA32
            None,          // DMA|DMA32
            None,          // DMA32|HIGHMEM
            None,          // DMA|DMA32|HIGHMEM
            Some(Normal),  // MOVABLE
            Some(Dma),     // MOVABLE|DMA
            Some(Movable), // MOVABLE|HIGHMEM
            None,          // MOVABLE|DMA|HIGHMEM
            Some(Dma32),   // MOVABLE|DMA32
            None,
            None,
            None,
        ];
        for (bits, want) in expect.iter().enumerate() {
            assert_eq!(gfp_zone(Gfp(bits as u32), true).ok(), *want, "bits {bits:#x}");
        }
        assert_eq!(gfp_zone(__GFP_HIGHMEM, false), Ok(Normal));
        assert_eq!(gfp_zone(GFP_KERNEL | __GFP_DMA, false), Ok(Dma));
    }

    #[test]
    fn scopes_clear_io_and_fs() {
        use crate::platform::task_flags::*;
        assert_eq!(current_gfp_context(GFP_KERNEL, PF_MEMALLOC_NOIO), GFP_NOIO);
        assert_eq!(current_gfp_context(GFP_KERNEL, PF_MEMALLOC_NOFS), GFP_NOFS);
        assert_eq!(
            current_gfp_context(GFP_KERNEL, PF_MEMALLOC_NOFS | PF_MEMALLOC_NOIO),
            GFP_NOIO
        );
        assert_eq!(current_gfp_context(GFP_KERNEL, 0), GFP_KERNEL);
    }

    #[test]
    fn migratetype_from_flags() {
        assert_eq!(gfp_migratetype(GFP_KERNEL), MigrateType::Unmovable);
        assert_eq!(gfp_migratetype(GFP_HIGHUSER_MOVABLE), MigrateType::Movable);
        assert_eq!(
            gfp_migratetype(GFP_KERNEL | __GFP_RECLAIMABLE),
            MigrateType::Reclaimable
        );
    }
}
