//! Slab cache flags (`slab_flags_t`) and constructor flags, with the kernel's values.

use core::ops::{BitAnd, BitOr, BitOrAssign, Not};

/// Flags of a cache (`slab_flags_t`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
#[repr(transparent)]
pub struct SlabFlags(pub u32);

/// `F`: sanity checks on alloc and free.
pub const SLAB_CONSISTENCY_CHECKS: SlabFlags = SlabFlags(0x0000_0100);
/// The 2.6-era name of `SLAB_CONSISTENCY_CHECKS`.
pub const SLAB_DEBUG_FREE: SlabFlags = SLAB_CONSISTENCY_CHECKS;
/// `Z`: red zones around objects.
pub const SLAB_RED_ZONE: SlabFlags = SlabFlags(0x0000_0400);
/// `P`: poison freed objects.
pub const SLAB_POISON: SlabFlags = SlabFlags(0x0000_0800);
/// Internal: a kmalloc cache.
pub const SLAB_KMALLOC: SlabFlags = SlabFlags(0x0000_1000);
/// Align objects on cache lines.
pub const SLAB_HWCACHE_ALIGN: SlabFlags = SlabFlags(0x0000_2000);
/// Slabs from ZONE_DMA.
pub const SLAB_CACHE_DMA: SlabFlags = SlabFlags(0x0000_4000);
/// Slabs from ZONE_DMA32.
pub const SLAB_CACHE_DMA32: SlabFlags = SlabFlags(0x0000_8000);
/// `U`: record the last allocation and free of each object.
pub const SLAB_STORE_USER: SlabFlags = SlabFlags(0x0001_0000);
/// Reclaimable memory (counted in SReclaimable, pages `__GFP_RECLAIMABLE`).
pub const SLAB_RECLAIM_ACCOUNT: SlabFlags = SlabFlags(0x0002_0000);
/// Panic if the cache cannot be created.
pub const SLAB_PANIC: SlabFlags = SlabFlags(0x0004_0000);
/// Freed slab pages wait for an RCU grace period; objects may be reused at once.
pub const SLAB_TYPESAFE_BY_RCU: SlabFlags = SlabFlags(0x0008_0000);
/// The 2.6-era name of `SLAB_TYPESAFE_BY_RCU`.
pub const SLAB_DESTROY_BY_RCU: SlabFlags = SLAB_TYPESAFE_BY_RCU;
/// `T`: trace allocations and frees.
pub const SLAB_TRACE: SlabFlags = SlabFlags(0x0020_0000);
/// Objects are tracked by debugobjects.
pub const SLAB_DEBUG_OBJECTS: SlabFlags = SlabFlags(0x0040_0000);
/// Not tracked by kmemleak.
pub const SLAB_NOLEAKTRACE: SlabFlags = SlabFlags(0x0080_0000);
/// Never merge with another cache.
pub const SLAB_NO_MERGE: SlabFlags = SlabFlags(0x0100_0000);
/// `A`: fault injection.
pub const SLAB_FAILSLAB: SlabFlags = SlabFlags(0x0200_0000);
/// Memory-cgroup accounting.
pub const SLAB_ACCOUNT: SlabFlags = SlabFlags(0x0400_0000);
/// KASAN.
pub const SLAB_KASAN: SlabFlags = SlabFlags(0x0800_0000);
/// Ignore `slub_debug=` for this cache.
pub const SLAB_NO_USER_FLAGS: SlabFlags = SlabFlags(0x1000_0000);
/// Skip KFENCE.
pub const SLAB_SKIP_KFENCE: SlabFlags = SlabFlags(0x2000_0000);
/// The 2.6-era `SLAB_NO_REAP`: the cache's empty slabs are not reaped, as
/// 2.6's `cache_reap` skipped it: here the memory-pressure shrinker leaves it
/// alone, while `kmem_cache_shrink` and frees treat it as any cache, as 2.6
/// did. Its old value (0x1000) is `SLAB_KMALLOC` today, so kmem gives it a
/// bit the kernel does not use.
pub const SLAB_NO_REAP: SlabFlags = SlabFlags(0x4000_0000);
/// 2.6-era `SLAB_MUST_HWCACHE_ALIGN`: accepted, same as `SLAB_HWCACHE_ALIGN`.
pub const SLAB_MUST_HWCACHE_ALIGN: SlabFlags = SLAB_HWCACHE_ALIGN;

/// Debug flags: any of them takes the cache off the lockless fast path.
pub const SLAB_DEBUG_FLAGS: SlabFlags =
    SlabFlags(SLAB_RED_ZONE.0 | SLAB_POISON.0 | SLAB_STORE_USER.0 | SLAB_TRACE.0 | SLAB_CONSISTENCY_CHECKS.0);
/// Flags a caller may pass (`SLAB_FLAGS_PERMITTED`, plus `SLAB_NO_REAP`).
pub const SLAB_FLAGS_PERMITTED: SlabFlags = SlabFlags(
    SLAB_CONSISTENCY_CHECKS.0
        | SLAB_RED_ZONE.0
        | SLAB_POISON.0
        | SLAB_KMALLOC.0
        | SLAB_HWCACHE_ALIGN.0
        | SLAB_CACHE_DMA.0
        | SLAB_CACHE_DMA32.0
        | SLAB_STORE_USER.0
        | SLAB_RECLAIM_ACCOUNT.0
        | SLAB_PANIC.0
        | SLAB_TYPESAFE_BY_RCU.0
        | SLAB_TRACE.0
        | SLAB_DEBUG_OBJECTS.0
        | SLAB_NOLEAKTRACE.0
        | SLAB_NO_MERGE.0
        | SLAB_FAILSLAB.0
        | SLAB_ACCOUNT.0
        | SLAB_KASAN.0
        | SLAB_NO_USER_FLAGS.0
        | SLAB_SKIP_KFENCE.0
        | SLAB_NO_REAP.0,
);
/// Flags that forbid merging (`SLAB_NEVER_MERGE`).
pub const SLAB_NEVER_MERGE: SlabFlags = SlabFlags(
    SLAB_RED_ZONE.0
        | SLAB_POISON.0
        | SLAB_STORE_USER.0
        | SLAB_TRACE.0
        | SLAB_TYPESAFE_BY_RCU.0
        | SLAB_NOLEAKTRACE.0
        | SLAB_FAILSLAB.0
        | SLAB_NO_MERGE.0,
);
/// Flags that must agree for caches to merge (`SLAB_MERGE_SAME`).
pub const SLAB_MERGE_SAME: SlabFlags =
    SlabFlags(SLAB_RECLAIM_ACCOUNT.0 | SLAB_CACHE_DMA.0 | SLAB_CACHE_DMA32.0 | SLAB_ACCOUNT.0);

/// Passed to 2.6-era constructors: the object is being constructed.
pub const SLAB_CTOR_CONSTRUCTOR: u64 = 0x001;
/// Passed to 2.6-era constructors: the allocation cannot sleep.
pub const SLAB_CTOR_ATOMIC: u64 = 0x002;
/// Passed to 2.6-era constructors: verify, do not construct.
pub const SLAB_CTOR_VERIFY: u64 = 0x004;

impl SlabFlags {
    /// Whether any bit of `o` is set.
    #[inline(always)]
    pub const fn intersects(self, o: SlabFlags) -> bool {
        self.0 & o.0 != 0
    }
    /// Whether all bits of `o` are set.
    #[inline(always)]
    pub const fn contains(self, o: SlabFlags) -> bool {
        self.0 & o.0 == o.0
    }
}

impl BitOr for SlabFlags {
    type Output = SlabFlags;
    fn bitor(self, r: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 | r.0)
    }
}
impl BitOrAssign for SlabFlags {
    fn bitor_assign(&mut self, r: SlabFlags) {
        self.0 |= r.0;
    }
}
impl BitAnd for SlabFlags {
    type Output = SlabFlags;
    fn bitand(self, r: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 & r.0)
    }
}
impl Not for SlabFlags {
    type Output = SlabFlags;
    fn not(self) -> SlabFlags {
        SlabFlags(!self.0)
    }
}
