//! The slab allocator: SLUB (`mm/slub.c`, `mm/slab_common.c`).
//!
//! A **cache** (`KmemCache`, the kernel's `struct kmem_cache`) hands out
//! objects of one size. Objects live in **slabs**: runs of 2^order pages from
//! the page allocator, cut into objects and threaded into a freelist through
//! a free pointer stored in each free object (in the middle of the object, or
//! after it when the object must keep its contents: constructors, poisoning,
//! `SLAB_TYPESAFE_BY_RCU`). The slab's state lives in its head `struct page`:
//! the cache, the freelist and the counters (`inuse`, `objects`, `frozen`).
//!
//! Each CPU owns one **cpu slab** (frozen: no one else allocates from it) and
//! a short list of **cpu partial** slabs; each node keeps a list of
//! **partial** slabs under `list_lock`. Full slabs are on no list; empty ones
//! go back to the page allocator once a node keeps `min_partial` of them.
//!
//! **Fast paths** (`slub.rs`) are lock-free, as in SLUB: allocation pops the
//! cpu freelist and free pushes onto it with one `cmpxchg16b` on
//! (freelist, tid); the tid changes with every operation on that CPU's
//! structure, so a thread that was preempted or migrated between reading and
//! swapping simply retries. Frees of objects of other slabs go to the slab's
//! own freelist with a `cmpxchg16b` on (freelist, counters), without the
//! owner's lock. Slow paths run under the per-CPU lock (`local_lock`) and the
//! node's `list_lock`.
//!
//! **Constructors** run when a slab is populated, never on allocation: a freed
//! object stays constructed (Bonwick's object caching). **Debug** caches
//! (`slub_debug=`, `SLAB_RED_ZONE`, `SLAB_POISON`, `SLAB_STORE_USER`,
//! `SLAB_CONSISTENCY_CHECKS`) take the slow path for every object, checked
//! under `list_lock` (`debug.rs`). Every cache registers a shrinker, so memory
//! pressure gives its empty slabs back.

pub mod cmpxchg;
pub mod debug;
pub mod flags;
pub(crate) mod rseq;
pub mod sheaf;
pub mod slub;

use crate::gfp::*;
use crate::list::ListHead;
use crate::machine::Kmem;
use crate::page::{flags::*, get_order, Page, PAGE_SIZE};
use crate::platform::Platform;
use crate::reciprocal_div::MultipleTest;
use crate::spinlock::SpinLock;
use crate::vmscan::{ShrinkControl, Shrinker};
use crate::AllocError;
use cmpxchg::DoubleWord;
use core::fmt::Write;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
pub use flags::*;

/// Largest object a slab cache may have (`KMALLOC_MAX_SIZE`).
pub const KMALLOC_MAX_SIZE: usize = 4 << 20;
/// Most objects in one slab (`MAX_OBJS_PER_PAGE`).
pub const MAX_OBJS_PER_PAGE: usize = 32767;
/// Default largest slab order (`slub_max_order`).
pub const SLUB_MAX_ORDER: u32 = 3;
/// Bounds of `min_partial`.
pub const MIN_PARTIAL: usize = 5;
/// Upper bound of `min_partial`.
pub const MAX_PARTIAL: usize = 10;
/// Cache line size (`cache_line_size()`).
pub const CACHE_LINE: usize = 64;
/// Longest cache name kept.
pub const CACHE_NAME_LEN: usize = 48;
/// Size of one `struct track` (alloc or free call site).
pub const TRACK_SIZE: usize = 32;

/// A modern constructor: `void (*ctor)(void *)`.
pub type Ctor = fn(*mut u8);
/// A 2.6-era constructor or destructor: `void (*)(void *, kmem_cache_t *, unsigned long flags)`.
pub type LegacyCtor = fn(*mut u8, *const KmemCache, u64);

/// How objects are constructed.
#[derive(Clone, Copy)]
pub enum CtorKind {
    /// No constructor.
    None,
    /// `ctor(obj)`.
    Modern(Ctor),
    /// `ctor(obj, cache, SLAB_CTOR_CONSTRUCTOR[|SLAB_CTOR_ATOMIC])` with an optional destructor
    /// run when the slab is freed.
    Legacy {
        /// Constructor.
        ctor: Option<LegacyCtor>,
        /// Destructor.
        dtor: Option<LegacyCtor>,
    },
}

/// Order and objects of a slab (`struct kmem_cache_order_objects`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OrderObjects {
    /// Page order.
    pub order: u32,
    /// Objects per slab.
    pub objects: u32,
}

impl OrderObjects {
    /// `oo_make`.
    pub const fn new(order: u32, size: usize) -> Self {
        let objects = ((PAGE_SIZE << order) / size) as u32;
        OrderObjects { order, objects }
    }
}

/// Where a cache's cpu array starts in its `KmemCache` object: every cache
/// object (from the cache of caches, whose objects are sized for it) holds
/// the structure and then the array, so the fast paths reach CPU `n`'s
/// structure at a constant offset from the cache, with no load of
/// `cpu_slab` (the kernel's `cpu_slab` is a per-CPU offset, added to the
/// CPU's base in the same instruction).
pub(crate) const CPU_ARRAY_OFFSET: usize =
    core::mem::size_of::<KmemCache>().next_multiple_of(core::mem::align_of::<KmemCacheCpu>());

/// Per-CPU slab state (`struct kmem_cache_cpu`).
///
/// The first cache line holds what the restartable sequences of `rseq.rs`
/// read and write: the freelist, the cpu slab's address range, the top of
/// the sheaf, and the bounds (`floor`, `rseq_bytes`, `sheaf_limit`,
/// `sheaf_floor`) through which a slow path stops them.
#[repr(C, align(64))]
pub struct KmemCacheCpu {
    /// (freelist, tid), swapped together by the fast paths.
    pub fl: DoubleWord,
    /// Start of the cpu slab's memory: the free fast path pushes an object
    /// onto the cpu freelist only if it lies in `[slab_start, slab_start + slab_bytes)`.
    pub slab_start: AtomicUsize,
    /// The sequences' copy of `slab_bytes`: 0 while they are stopped.
    pub rseq_bytes: AtomicUsize,
    /// The sequences' lower bound of the freelist: the allocation sequences
    /// take the freelist's head only if it is above `floor`.
    /// `rseq::FLOOR_RUNNING` (1) while they run, `rseq::FLOOR_STOPPED` while
    /// they are stopped.
    pub floor: AtomicUsize,
    /// The installed sheaf's first free slot (`&objects[size]`): the sheaf
    /// sequences read and write the newest object through it, and their
    /// committing add or subtract (of one slot) is to this word, so a push
    /// or a pop touches no other word of the cpu structure. A detached sheaf
    /// keeps its size in `Sheaf::size`; installing and detaching (with the
    /// sequences stopped) convert (`sheaf_size`, `set_sheaf_size`).
    pub sheaf_top: AtomicUsize,
    /// The sequences' upper bound of `sheaf_top`: the free sequences push
    /// onto the sheaf only below it (`&objects[capacity]`). 0 while they are
    /// stopped.
    pub sheaf_limit: AtomicUsize,
    /// The sequences' lower bound of `sheaf_top`: the allocation sequences
    /// pop only above it (`&objects[1]`: they leave a sheaf's last object
    /// alone, see `rseq::pop`). `rseq::FLOOR_STOPPED` while they are stopped.
    pub sheaf_floor: AtomicUsize,
    /// Nonzero while a slow path owns the freelist (`STOP_SLOW_PATH`), or for
    /// good if the cache has hooks (`STOP_HOOKS`) and in the other cases of
    /// `rseq.rs`; the sequences read the bounds above instead.
    pub stopped: AtomicU32,
    /// `local_lock`: serialises the slow paths of this CPU's structure.
    pub lock: SpinLock<()>,
    /// This CPU's sheaf of free objects (`sheaf.rs`), or `no_sheaf()`.
    /// Installed and detached under `lock` with the sequences stopped.
    pub sheaf: AtomicPtr<sheaf::Sheaf>,
    /// The cpu slab (head page), or null. Changed only under `lock`.
    pub slab: AtomicPtr<Page>,
    /// Size of the cpu slab's memory; 0 while there is no cpu slab.
    pub slab_bytes: AtomicUsize,
    /// Chain of cpu partial slabs (through `page.lru.next`), under `lock`.
    pub partial: AtomicPtr<Page>,
    /// Slow-path statistics (written under `lock`, read without).
    pub stat: CpuStats,
    /// Index of the cpu slab's first object not yet linked into any
    /// freelist, or 0 if every object is (see `slub.rs`, "Fresh slabs are
    /// linked a page at a time"). Under `lock`; the cpu slab owns those
    /// objects (counted in use by its counters, free by `cache_counts`).
    pub unbuilt: AtomicU32,
}

impl KmemCacheCpu {
    /// Whether this structure's sequences are stopped for good (hooks, CAS
    /// mode, or a CPU id that is not the machine's), not just while a slow
    /// path runs: its sheaf is never used.
    #[inline]
    pub(crate) fn stopped_for_good(&self) -> bool {
        self.stopped.load(Ordering::Relaxed) & !rseq::STOP_SLOW_PATH != 0
    }

    /// Set the bounds that make every sequence fall back (`rseq.rs`). The
    /// sequences never write them, so a commit racing with these stores
    /// cannot undo them.
    pub(crate) fn rseq_stop(&self) {
        self.floor.store(rseq::FLOOR_STOPPED, Ordering::Relaxed);
        self.rseq_bytes.store(0, Ordering::Relaxed);
        self.sheaf_limit.store(0, Ordering::Relaxed);
        self.sheaf_floor.store(rseq::FLOOR_STOPPED, Ordering::Relaxed);
    }

    /// Let the sequences run again over the state the slow path left,
    /// unless they are stopped for good.
    pub(crate) fn rseq_start(&self) {
        if self.stopped.load(Ordering::Relaxed) != 0 {
            return;
        }
        let sh = self.sheaf.load(Ordering::Relaxed);
        let slots = sheaf::sheaf_slots(sh) as usize;
        // SAFETY: the installed sheaf (or `no_sheaf()`) stays while it is
        // installed, and only the lock holder replaces it.
        let capacity = unsafe { (*sh).capacity };
        self.sheaf_limit.store(
            slots + capacity * core::mem::size_of::<usize>(),
            Ordering::Release,
        );
        self.sheaf_floor
            .store(slots + core::mem::size_of::<usize>(), Ordering::Release);
        self.rseq_bytes
            .store(self.slab_bytes.load(Ordering::Relaxed), Ordering::Release);
        self.floor.store(rseq::FLOOR_RUNNING, Ordering::Release);
    }

    /// Objects in the installed sheaf (under `lock`, or with nothing else
    /// running on the cache).
    pub fn sheaf_size(&self) -> usize {
        let slots = sheaf::sheaf_slots(self.sheaf.load(Ordering::Relaxed)) as usize;
        (self.sheaf_top.load(Ordering::Acquire) - slots) / core::mem::size_of::<usize>()
    }

    /// Set the installed sheaf's size (under `lock`, the sequences stopped).
    pub(crate) fn set_sheaf_size(&self, size: usize) {
        let slots = sheaf::sheaf_slots(self.sheaf.load(Ordering::Relaxed)) as usize;
        self.sheaf_top
            .store(slots + size * core::mem::size_of::<usize>(), Ordering::Relaxed);
    }
}

/// The cpu structures' layout: the sequences' fields in the first cache line.
const _: () = {
    assert!(core::mem::offset_of!(KmemCacheCpu, sheaf_floor) + 8 <= 64);
    assert!(core::mem::size_of::<KmemCacheCpu>() == 128);
    // The node array follows the cpu array, aligned.
    assert!(core::mem::align_of::<KmemCacheNode>() <= core::mem::align_of::<KmemCacheCpu>());
};

/// Slow-path counters of one CPU (the kernel's `CONFIG_SLUB_STATS` subset,
/// `unsigned int` as there).
/// Writers hold the CPU structure's `lock`, so an increment is a plain load
/// and store (`CpuStats::inc`); readers may see a slightly old value.
#[derive(Default, Debug)]
pub struct CpuStats {
    /// `ALLOC_SLOWPATH`.
    pub alloc_slowpath: AtomicU32,
    /// `ALLOC_SLAB`: new slabs.
    pub alloc_slab: AtomicU32,
    /// `CPU_PARTIAL_ALLOC`.
    pub cpu_partial_alloc: AtomicU32,
    /// `CPU_PARTIAL_FREE`.
    pub cpu_partial_free: AtomicU32,
    /// `ALLOC_FROM_PARTIAL`.
    pub alloc_from_partial: AtomicU32,
}

impl CpuStats {
    /// Count one event (the caller holds the CPU structure's `lock`).
    #[inline(always)]
    pub(crate) fn inc(c: &AtomicU32) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// The lists of one node (`struct kmem_cache_node`), under `list_lock`.
#[repr(C)]
pub struct NodeLists {
    /// Partial slabs (through `page.lru`).
    pub partial: ListHead,
    /// Number of partial slabs.
    pub nr_partial: usize,
    /// Full slabs, for debug caches only (through `page.lru`).
    pub full: ListHead,
}

/// One node's part of a cache (`struct kmem_cache_node`).
#[repr(C)]
pub struct KmemCacheNode {
    /// `list_lock` and the lists.
    pub list_lock: SpinLock<NodeLists>,
    /// Slabs of this node.
    pub nr_slabs: AtomicUsize,
    /// Objects in those slabs.
    pub total_objects: AtomicUsize,
    /// The node's spare sheaves (`sheaf.rs`).
    pub barn: SpinLock<sheaf::Barn>,
    /// Full sheaves in `barn` (written under its lock, read without).
    pub barn_full: AtomicUsize,
}

/// A slab cache (`struct kmem_cache`).
#[repr(C, align(64))]
pub struct KmemCache {
    /// Per-CPU state, `nr_cpu_ids` entries. On platforms with an rseq area
    /// the array has stopped entries around them for every other CPU id an
    /// area can show (`Kmem::cpu_array_layout`), so the restartable
    /// sequences index it without a bound check.
    pub(crate) cpu_slab: *mut KmemCacheCpu,
    /// Flags.
    pub flags: SlabFlags,
    /// Object size including metadata (the stride).
    pub size: usize,
    /// The size callers asked for.
    pub object_size: usize,
    /// Offset of the free pointer in an object.
    pub offset: usize,
    /// The platform's `rseq_offset()` (`Platform::RSEQ_AREA`; else 0),
    /// copied here so the allocation fast path needs nothing but the cache.
    /// The malloc override keeps a copy in a static of its own for `malloc`
    /// (`Kmem::kmalloc_alloc_rseq_area`) and `free`, which do not wait for
    /// the load of the cache to load it.
    pub(crate) rseq_area: isize,
    /// Object plus padding plus right red zone: where metadata starts.
    pub inuse: usize,
    /// Alignment of objects.
    pub align: usize,
    /// Left red zone size (`SLAB_RED_ZONE`).
    pub red_left_pad: usize,
    /// Preferred slab order and objects.
    pub oo: OrderObjects,
    /// Fallback (smallest) slab order and objects.
    pub min: OrderObjects,
    /// Empty slabs a node keeps before giving them back.
    pub min_partial: usize,
    /// Objects the cpu partial lists may hold.
    pub cpu_partial: usize,
    /// Slabs the cpu partial lists may hold.
    pub cpu_partial_slabs: usize,
    /// Objects a CPU's sheaf holds (`sheaf.rs`); 0: the cache has none.
    pub sheaf_capacity: usize,
    /// Flags for the page allocator.
    pub allocflags: Gfp,
    /// Constructor.
    pub ctor: CtorKind,
    /// Merge count; -1 for the boot caches that cannot be destroyed.
    pub refcount: AtomicIsize,
    /// Usercopy window.
    pub useroffset: usize,
    /// Usercopy window size.
    pub usersize: usize,
    name: [u8; CACHE_NAME_LEN],
    name_len: usize,
    /// Link in the machine's list of caches (`slab_caches`).
    pub(crate) list: ListHead,
    /// Node lists.
    /// Per-node state, `nr_node_ids` entries after the cpu array in the
    /// cache's object (the kernel sizes `struct kmem_cache` by
    /// `nr_node_ids` too): a one-node machine's caches carry one.
    node: *const KmemCacheNode,
    /// Entries at `node`.
    nr_nodes: usize,
    /// The cache's shrinker.
    pub(crate) shrinker: Shrinker,
    /// The machine (type-erased `*const Kmem<P>`), for the shrinker.
    pub(crate) machine: *const (),
    /// Colour of the next new slab (`colour_next`), counted modulo the colours that fit.
    pub(crate) colour_next: AtomicUsize,
    /// Objects ever allocated / freed on the slow paths (for statistics).
    pub(crate) errors: AtomicUsize,
    /// `slab_want_init_on_alloc` precomputed: 0 zero iff `__GFP_ZERO`,
    /// 1 never (a constructor under `init_on_alloc=1`), 2 always.
    pub(crate) init_on_alloc: u8,
    /// `slab_want_init_on_free` precomputed: wipe objects on free (`init_on_free=1`).
    pub(crate) init_on_free: bool,
    /// `reciprocal_value(size)`: offsets in a slab to object indices
    /// without a `div` (`obj_to_index`).
    pub(crate) reciprocal_size: crate::reciprocal_div::ReciprocalValue,
    /// `kfree`'s inline object check: for a non-debug cache, whether the
    /// offset of a pointer from its slab's first object (which every page of
    /// the slab records in `private`) is a multiple of the size below the
    /// slab's objects (`MultipleTest`); `NEVER` for the other caches, whose
    /// slab pages record 0 there, so every pointer takes the exact check out
    /// of line. One test for every size, so the branch on it goes the same
    /// way whatever mix of caches a program frees to.
    pub(crate) kfree_test: MultipleTest,
    /// Nonzero if a handed-out object needs work on the fast path besides
    /// `__GFP_ZERO`: always zeroing (`init_on_alloc`) or clearing the free
    /// pointer of a wiped object (`init_on_free`). One test covers both.
    pub(crate) alloc_hooks: u8,
}

impl KmemCache {
    /// Whether an allocation with `gfp` must be zeroed (`slab_want_init_on_alloc`).
    #[inline(always)]
    pub fn want_init_on_alloc(&self, gfp: Gfp) -> bool {
        self.init_on_alloc == 2 || (self.init_on_alloc == 0 && gfp.intersects(__GFP_ZERO))
    }

    /// The free pointer lies inside the object (it must be cleared again for
    /// `init_on_free` caches when the object is handed out).
    #[inline(always)]
    pub fn freeptr_inside(&self) -> bool {
        self.offset < self.inuse && self.offset + 8 <= self.object_size
    }
}

// SAFETY: all mutable state is behind atomics and locks; raw pointers point
// into the machine's memory, which outlives the cache.
unsafe impl Sync for KmemCache {}
// SAFETY: as above.
unsafe impl Send for KmemCache {}

impl KmemCache {
    /// The cache's name.
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }

    /// `kmem_cache_debug(s)`: does the cache take the debug path?
    #[inline(always)]
    pub fn debug(&self) -> bool {
        self.flags.intersects(SLAB_DEBUG_FLAGS)
    }

    /// Whether the cache keeps cpu partial slabs.
    #[inline(always)]
    pub fn has_cpu_partial(&self) -> bool {
        !self.debug()
    }

    /// Per-CPU state.
    ///
    /// # Safety
    /// `cpu` is below the machine's `nr_cpu_ids`.
    #[inline(always)]
    pub unsafe fn cpu(&self, cpu: usize) -> &KmemCacheCpu {
        // SAFETY: caller contract.
        unsafe { &*self.cpu_slab.add(cpu) }
    }

    /// A node's lists.
    #[inline(always)]
    pub fn node(&self, nid: usize) -> &KmemCacheNode {
        assert!(
            nid < self.nr_nodes,
            "node {nid} of a cache of {} nodes",
            self.nr_nodes
        );
        // SAFETY: `nr_nodes` initialised entries live as long as the cache.
        unsafe { &*self.node.add(nid) }
    }

    /// Read an object's free pointer.
    ///
    /// # Safety
    /// `obj` is an object of this cache (its memory stays mapped; the read may
    /// race with the object's new owner, which the callers' cmpxchg detects).
    #[inline(always)]
    pub unsafe fn get_freepointer(&self, obj: *mut u8) -> *mut u8 {
        // SAFETY: caller contract; an atomic load makes a racing read defined.
        unsafe { (*(obj.add(self.offset) as *const AtomicUsize)).load(Ordering::Relaxed) as *mut u8 }
    }

    /// Write an object's free pointer.
    ///
    /// # Safety
    /// `obj` is a free object of this cache owned by the caller.
    #[inline(always)]
    pub unsafe fn set_freepointer(&self, obj: *mut u8, fp: *mut u8) {
        // SAFETY: caller contract.
        unsafe { (*(obj.add(self.offset) as *const AtomicUsize)).store(fp as usize, Ordering::Relaxed) };
    }

    /// The address of object `i` of a slab whose memory starts at `base`.
    #[inline(always)]
    pub fn object_at(&self, base: *mut u8, i: usize) -> *mut u8 {
        base.wrapping_add(i * self.size + self.red_left_pad)
    }
}

/// Slab counters packed in `page.counters`: `inuse` (16 bits), `objects`
/// (15 bits), `frozen` (1 bit), as the kernel's bitfields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters(pub usize);

impl Counters {
    /// Pack.
    #[inline(always)]
    pub const fn new(inuse: usize, objects: usize, frozen: bool) -> Self {
        Counters(inuse | (objects << 16) | ((frozen as usize) << 31))
    }
    /// Objects in use (including those on a cpu freelist).
    #[inline(always)]
    pub const fn inuse(self) -> usize {
        self.0 & 0xffff
    }
    /// Objects in the slab.
    #[inline(always)]
    pub const fn objects(self) -> usize {
        (self.0 >> 16) & 0x7fff
    }
    /// Owned by a CPU.
    #[inline(always)]
    pub const fn frozen(self) -> bool {
        self.0 & (1 << 31) != 0
    }
    /// With another `inuse`.
    #[inline(always)]
    pub const fn with_inuse(self, inuse: usize) -> Self {
        Counters((self.0 & !0xffff) | inuse)
    }
    /// With another `frozen`.
    #[inline(always)]
    pub const fn with_frozen(self, frozen: bool) -> Self {
        Counters((self.0 & !(1 << 31)) | ((frozen as usize) << 31))
    }
}

/// A slab's colour offset in bytes, kept in its head page's spare bytes.
///
/// **Cache colouring** (Bonwick's slab allocator, the seeds' model): the
/// space a slab cannot use is spread before the first object, a cache line
/// more in each new slab, so the first objects of different slabs do not all
/// map to the same cache sets. SLUB dropped it; kmem keeps it where it is
/// free — it never costs an object, and caches whose objects fill their
/// slabs exactly (the power-of-two kmalloc sizes, which keep their natural
/// alignment) get no colour. Debug caches are not coloured, so their padding
/// checks see the kernel's layout.
///
/// # Safety
/// `slab` is a slab head page of a machine's memmap.
#[inline(always)]
pub unsafe fn slab_colour(slab: *const Page) -> usize {
    // SAFETY: caller contract.
    let b = unsafe { (*slab).spare };
    u16::from_le_bytes([b[0], b[1]]) as usize * CACHE_LINE
}

/// The number of slabs in a cpu partial chain, kept by its first slab
/// (`slab->slabs`). As in the kernel it overlays the list links' second
/// word, unused while the slab is chained through `lru.next`; a slab's
/// `private` holds its first object's address (`slab_object_inline`).
///
/// # Safety
/// `slab` is the first slab of a cpu partial chain, under its CPU's lock.
#[inline(always)]
pub(crate) unsafe fn cpu_partial_slabs(slab: *mut Page) -> usize {
    // SAFETY: caller contract.
    unsafe { (*slab).lru.prev as usize }
}

/// Set what [`cpu_partial_slabs`] reads.
///
/// # Safety
/// As [`cpu_partial_slabs`].
#[inline(always)]
pub(crate) unsafe fn set_cpu_partial_slabs(slab: *mut Page, slabs: usize) {
    // SAFETY: caller contract.
    unsafe { (*slab).lru.prev = slabs as *mut ListHead };
}

/// Page flag: the slab is on its node's partial list (`PG_workingset` in the kernel).
pub const PG_SLAB_NODE_PARTIAL: u32 = 1 << 10;

/// Page flag of kmem's own: a tail page of a slab, whose `mapping` holds the
/// cache as the head's does. `kfree` finds the cache of an object in any
/// page of its slab with one flag test, with no branch on head or tail (a
/// program mixing objects of one-page and multi-page slabs would have that
/// branch mispredicted on most frees). The kernel reaches the head first
/// (`virt_to_slab`); the tail's flag and `mapping` are cleared before the
/// slab's pages go back.
pub const PG_SLAB_TAIL: u32 = 1 << 11;

/// The (freelist, counters) pair of a slab's head page.
///
/// # Safety
/// `slab` is a slab head page.
#[inline(always)]
pub unsafe fn slab_fl(slab: *mut Page) -> &'static DoubleWord {
    // SAFETY: `index` and `counters` are adjacent at a 16-byte aligned offset of the 64-byte aligned page;
    // both are only accessed atomically while the page is a slab.
    unsafe { &*(ptr::addr_of_mut!((*slab).index) as *const DoubleWord) }
}

const _: () = assert!(core::mem::offset_of!(Page, index) % 16 == 0);
const _: () = assert!(core::mem::offset_of!(Page, counters) == core::mem::offset_of!(Page, index) + 8);

/// Slab state of a machine (`slab_caches`, `slab_mutex`, the boot caches).
pub struct SlabState {
    /// `slab_mutex` and `slab_caches`.
    pub(crate) caches: SpinLock<ListHead>,
    /// The cache of `struct kmem_cache`.
    pub(crate) kmem_cache: AtomicPtr<KmemCache>,
    /// `kmalloc_caches[type][index]`.
    pub(crate) kmalloc:
        [[AtomicPtr<KmemCache>; crate::kmalloc::KMALLOC_SHIFT_HIGH + 1]; crate::kmalloc::NR_KMALLOC_TYPES],
    /// Pages of large kmalloc allocations (NR_SLAB_UNRECLAIMABLE_B, in pages).
    pub(crate) large_kmalloc_pages: AtomicUsize,
    /// `slab_state >= UP`.
    pub(crate) up: core::sync::atomic::AtomicBool,
    /// Error reports since boot (the slub_kunit "slab_errors" counter).
    pub errors: AtomicUsize,
    /// Whether the cpu freelist fast paths are restartable sequences
    /// (`rseq.rs`) rather than `cmpxchg16b`; fixed at boot.
    pub(crate) rseq: core::sync::atomic::AtomicBool,
    /// CPU ids a thread's rseq area can show beyond the machine's
    /// (`Platform::rseq_cpu_ids`); every cache's cpu array has that many
    /// stopped entries after its real ones. Fixed at boot.
    pub(crate) rseq_extra_cpus: AtomicUsize,
    /// The cache sheaves come from (`slab_sheaf`, `sheaf.rs`); null while
    /// there is none (early in the boot, or no cache has sheaves).
    pub(crate) sheaf_cache: AtomicPtr<KmemCache>,
}

impl SlabState {
    pub(crate) const fn new() -> Self {
        SlabState {
            caches: SpinLock::new(ListHead::new()),
            kmem_cache: AtomicPtr::new(ptr::null_mut()),
            kmalloc: [const { [const { AtomicPtr::new(ptr::null_mut()) }; crate::kmalloc::KMALLOC_SHIFT_HIGH + 1] };
                crate::kmalloc::NR_KMALLOC_TYPES],
            sheaf_cache: AtomicPtr::new(ptr::null_mut()),
            large_kmalloc_pages: AtomicUsize::new(0),
            up: core::sync::atomic::AtomicBool::new(false),
            errors: AtomicUsize::new(0),
            rseq: core::sync::atomic::AtomicBool::new(false),
            rseq_extra_cpus: AtomicUsize::new(0),
        }
    }
}

/// Why `kmem_cache_create` failed (`-EINVAL`, `-ENOMEM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheError {
    /// Invalid arguments (`-EINVAL`).
    Invalid(&'static str),
    /// Out of memory (`-ENOMEM`).
    NoMemory,
}

impl CacheError {
    /// The errno the kernel would report.
    pub fn errno(self) -> i32 {
        match self {
            CacheError::Invalid(_) => -22,
            CacheError::NoMemory => -12,
        }
    }
}

/// Arguments of `__kmem_cache_create_args`.
#[derive(Clone, Copy)]
pub struct KmemCacheArgs {
    /// Alignment (0: the default).
    pub align: usize,
    /// Usercopy window.
    pub useroffset: usize,
    /// Usercopy window size.
    pub usersize: usize,
    /// Free pointer offset for `SLAB_TYPESAFE_BY_RCU` caches.
    pub freeptr_offset: Option<usize>,
    /// Constructor.
    pub ctor: CtorKind,
    /// Objects per sheaf (Linux 6.18's `sheaf_capacity`, `sheaf.rs`). None:
    /// kmem's default, which gives every cache that can have sheaves a
    /// capacity from its object size (SLAB's `enable_cpucache` limits); in
    /// Linux a cache without this argument has none. `Some(0)`: no sheaves.
    /// `Some(n)`: `n`, at most 120 (what a `slab_sheaf` object holds). Only
    /// caches whose fast paths are the restartable sequences, with no debug
    /// flags and no init hooks, have sheaves, whatever this says. A cache
    /// created with a capacity never merges with another.
    pub sheaf_capacity: Option<usize>,
}

impl Default for KmemCacheArgs {
    fn default() -> Self {
        KmemCacheArgs {
            align: 0,
            useroffset: 0,
            usersize: 0,
            freeptr_offset: None,
            ctor: CtorKind::None,
            sheaf_capacity: None,
        }
    }
}

/// `fls`.
fn fls(x: usize) -> u32 {
    usize::BITS - x.leading_zeros()
}

/// `calculate_alignment`.
pub fn calculate_alignment(flags: SlabFlags, align: usize, size: usize) -> usize {
    let mut align = align;
    if flags.intersects(SLAB_HWCACHE_ALIGN) {
        let mut ralign = CACHE_LINE;
        while size <= ralign / 2 {
            ralign /= 2;
        }
        align = align.max(ralign);
    }
    align = align.max(8);
    (align + 7) & !7
}

/// `calc_slab_order`.
/// The slab orders `slub_min_order=` and `slub_max_order=` leave:
/// `setup_slub_max_order` caps the largest at `MAX_PAGE_ORDER` and lowers
/// the smallest to it, `setup_slub_min_order` raises the largest to the
/// smallest (the kernel applies them in command-line order; here an explicit
/// `slub_max_order` wins, and the smallest is capped at `MAX_PAGE_ORDER` too,
/// where the kernel would ask for slabs it cannot allocate).
fn slub_orders(p: &crate::cmdline::BootParams) -> (u32, u32) {
    let cap = crate::page::MAX_PAGE_ORDER;
    let min = p.slub_min_order.unwrap_or(0).min(cap);
    match p.slub_max_order {
        Some(max) => {
            let max = max.min(cap);
            (min.min(max), max)
        }
        None => (min, SLUB_MAX_ORDER.max(min)),
    }
}

fn calc_slab_order(size: usize, min_order: u32, max_order: u32, fract_leftover: usize) -> u32 {
    let mut order = min_order;
    while order <= max_order {
        let slab_size = PAGE_SIZE << order;
        let rem = slab_size % size;
        if rem <= slab_size / fract_leftover {
            break;
        }
        order += 1;
    }
    order
}

/// `calculate_order`: the slab order SLUB picks for objects of `size`.
pub fn calculate_order(size: usize, nr_cpus: usize, min_objects: u32, min_order: u32, max_order: u32) -> u32 {
    let mut min_objects = if min_objects == 0 {
        4 * (fls(nr_cpus.max(1)) + 1)
    } else {
        min_objects
    } as usize;
    let max_objects = ((PAGE_SIZE << max_order) / size).max(1);
    min_objects = min_objects.min(max_objects);
    let min_order = min_order.max(get_order(min_objects * size));
    if (PAGE_SIZE << min_order) / size > MAX_OBJS_PER_PAGE {
        return get_order(size * MAX_OBJS_PER_PAGE) - 1;
    }
    let mut fraction = 16;
    while fraction > 1 {
        let order = calc_slab_order(size, min_order, max_order, fraction);
        if order <= max_order {
            return order;
        }
        fraction /= 2;
    }
    get_order(size)
}

impl<P: Platform> Kmem<P> {
    /// `kmem_cache_init`: bootstrap the cache of caches, then kmalloc
    /// (the boot fails without them).
    pub(crate) fn kmem_cache_init(&self) -> Result<(), crate::machine::BootError> {
        let rseq = self.platform.rseq_usable() && self.params.kmem_rseq != Some(false);
        self.slab.rseq.store(rseq, Ordering::Relaxed);
        if P::RSEQ_AREA {
            let extra = self.platform.rseq_cpu_ids().saturating_sub(self.nr_cpus);
            self.slab.rseq_extra_cpus.store(extra, Ordering::Relaxed);
        }
        // SAFETY: the list head lives in the machine, which never moves.
        unsafe { ListHead::init(self.slab.caches.data_ptr()) };
        let size = self.kmem_cache_object_size();
        let Ok(mem) = self.alloc_pages_exact(size, GFP_NOWAIT | __GFP_ZERO) else {
            crate::pr!(self, "kmem_cache_init: cannot allocate the kmem_cache cache");
            return Err(crate::machine::BootError::OutOfBootMemory("the kmem_cache cache"));
        };
        let s = mem.as_ptr() as *mut KmemCache;
        // SAFETY: zeroed memory of the right size, owned by us.
        match unsafe {
            self.init_cache(
                s,
                "kmem_cache",
                size,
                SLAB_HWCACHE_ALIGN | SLAB_NO_MERGE,
                &KmemCacheArgs::default(),
            )
        } {
            Ok(()) => {
                // SAFETY: initialised above.
                unsafe { (*s).refcount.store(-1, Ordering::Relaxed) };
                self.slab.kmem_cache.store(s, Ordering::Release);
            }
            Err(_) => {
                crate::pr!(self, "kmem_cache_init: kmem_cache setup failed");
                return Err(crate::machine::BootError::OutOfBootMemory("the kmem_cache cache"));
            }
        }
        self.slab.up.store(true, Ordering::Release);
        let p = &self.params;
        // `report_meminit` (kmem has no stacks to initialise).
        let on_off = |b: bool| if b { "on" } else { "off" };
        crate::pr!(
            self,
            "mem auto-init: stack:off, heap alloc:{}, heap free:{}",
            on_off(self.init_on_alloc),
            on_off(self.init_on_free)
        );
        if self.init_on_free {
            crate::pr!(
                self,
                "mem auto-init: clearing system memory may take some time..."
            );
        }
        crate::pr!(
            self,
            "SLUB: HWalign={}, Order={}-{}, MinObjects={}, CPUs={}, Nodes={}",
            CACHE_LINE,
            slub_orders(p).0,
            slub_orders(p).1,
            p.slub_min_objects.unwrap_or(0),
            self.nr_cpus,
            self.nr_nodes
        );
        crate::pr!(
            self,
            "SLUB: cpu freelist fast paths: {}",
            if rseq {
                "restartable sequences"
            } else {
                "cmpxchg16b"
            }
        );
        self.create_kmalloc_caches()?;
        if rseq && self.params.kmem_sheaves != Some(false) {
            self.create_sheaf_cache();
        }
        Ok(())
    }

    /// The `slab_sheaf` cache: the sheaves of every cache that has them
    /// (`sheaf.rs`). It has none itself, so allocating or freeing a sheaf
    /// never needs one. Without it (no memory) caches run without sheaves.
    fn create_sheaf_cache(&self) {
        let args = KmemCacheArgs {
            sheaf_capacity: Some(0),
            ..Default::default()
        };
        let Some(sc) = self.kmem_cache_create_args(
            "slab_sheaf",
            sheaf::SHEAF_BYTES,
            &args,
            // Cache-line aligned (1 KiB each): CPUs' sheaves share no line.
            SLAB_HWCACHE_ALIGN | SLAB_NO_MERGE,
        ) else {
            return;
        };
        // SAFETY: a cache created just now and not yet published: nothing
        // else uses it during this boot.
        unsafe { (*sc.as_ptr()).refcount.store(-1, Ordering::Relaxed) };
        self.slab.sheaf_cache.store(sc.as_ptr(), Ordering::Release);
    }

    /// Bytes of a `KmemCache` object of this machine: the structure, then
    /// its cpu array (`CPU_ARRAY_OFFSET`), then its node array.
    pub(crate) fn kmem_cache_object_size(&self) -> usize {
        self.kmem_cache_node_offset() + self.nr_nodes * core::mem::size_of::<KmemCacheNode>()
    }

    /// Offset of a cache's node array in its object: after the cpu array.
    fn kmem_cache_node_offset(&self) -> usize {
        CPU_ARRAY_OFFSET + self.cpu_array_layout().1 * core::mem::size_of::<KmemCacheCpu>()
    }

    /// A cache's cpu array: entries before CPU 0, and all entries. Platforms
    /// with an rseq area (`Platform::RSEQ_AREA`) get stopped entries for the
    /// CPU ids -2 and -1 (an unregistered area) and for host CPUs beyond the
    /// machine's, so the sequences need no bound check (`rseq.rs`).
    pub(crate) fn cpu_array_layout(&self) -> (usize, usize) {
        if P::RSEQ_AREA {
            let extra = self.slab.rseq_extra_cpus.load(Ordering::Relaxed);
            (
                rseq::NEGATIVE_CPU_IDS,
                rseq::NEGATIVE_CPU_IDS + self.nr_cpus + extra,
            )
        } else {
            (0, self.nr_cpus)
        }
    }

    /// Whether the cpu freelist fast paths are restartable sequences
    /// (`kmem.rseq=`, [`Platform::rseq_usable`]) rather than `cmpxchg16b`.
    pub fn slab_fast_paths_rseq(&self) -> bool {
        self.slab.rseq.load(Ordering::Relaxed)
    }

    /// Whether the slab allocator is up (`slab_is_available`).
    pub fn slab_is_available(&self) -> bool {
        self.slab.up.load(Ordering::Acquire)
    }

    /// `kmem_cache_create(name, size, align, flags, ctor)`.
    pub fn kmem_cache_create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Option<NonNull<KmemCache>> {
        let args = KmemCacheArgs {
            align,
            ctor: ctor.map_or(CtorKind::None, CtorKind::Modern),
            ..Default::default()
        };
        self.kmem_cache_create_args(name, size, &args, flags)
    }

    /// The 2.6-era `kmem_cache_create(name, size, offset, flags, ctor, dtor)`:
    /// `offset` is the alignment of the first object, the constructor gets
    /// `SLAB_CTOR_CONSTRUCTOR` (and `SLAB_CTOR_ATOMIC` for atomic allocations),
    /// the destructor runs on every object when its slab is freed.
    pub fn kmem_cache_create_legacy(
        &self,
        name: &str,
        size: usize,
        offset: usize,
        flags: SlabFlags,
        ctor: Option<LegacyCtor>,
        dtor: Option<LegacyCtor>,
    ) -> Option<NonNull<KmemCache>> {
        let args = KmemCacheArgs {
            align: offset,
            ctor: if ctor.is_none() && dtor.is_none() {
                CtorKind::None
            } else {
                CtorKind::Legacy { ctor, dtor }
            },
            ..Default::default()
        };
        self.kmem_cache_create_args(name, size, &args, flags)
    }

    /// `__kmem_cache_create_args`.
    pub fn kmem_cache_create_args(
        &self,
        name: &str,
        size: usize,
        args: &KmemCacheArgs,
        flags: SlabFlags,
    ) -> Option<NonNull<KmemCache>> {
        match self.try_cache_create(name, size, args, flags, GFP_KERNEL) {
            Ok(s) => Some(s),
            Err(e) => {
                crate::pr!(
                    self,
                    "__kmem_cache_create_args({}) failed with error {}",
                    name,
                    e.errno()
                );
                self.platform.dump_stack();
                if flags.intersects(SLAB_PANIC) {
                    panic!(
                        "kmem_cache_create: Failed to create slab '{name}'. Error {}",
                        e.errno()
                    );
                }
                None
            }
        }
    }

    /// `__kmem_cache_create_args`, its `struct kmem_cache` allocated with
    /// `gfp` (`GFP_KERNEL`, or a lazily created kmalloc cache's caller's).
    pub(crate) fn try_cache_create(
        &self,
        name: &str,
        size: usize,
        args: &KmemCacheArgs,
        flags: SlabFlags,
        gfp: Gfp,
    ) -> Result<NonNull<KmemCache>, CacheError> {
        if name.is_empty() {
            return Err(CacheError::Invalid("no name"));
        }
        if size == 0 || size > KMALLOC_MAX_SIZE {
            return Err(CacheError::Invalid("size"));
        }
        if flags.0 & !SLAB_FLAGS_PERMITTED.0 != 0 {
            return Err(CacheError::Invalid("flags"));
        }
        if name.contains(' ') {
            self.warn(format_args!(
                "kmem_cache_create: cache name '{name}' contains spaces"
            ));
        }
        if let Some(off) = args.freeptr_offset {
            if !flags.intersects(SLAB_TYPESAFE_BY_RCU) || off >= size || off % 8 != 0 {
                return Err(CacheError::Invalid("freeptr_offset"));
            }
        }
        let mut args = *args;
        if args.usersize > 0
            && args
                .useroffset
                .checked_add(args.usersize)
                .is_none_or(|e| e > size)
        {
            self.warn(format_args!("kmem_cache_create: bad usercopy region for {name}"));
            args.useroffset = 0;
            args.usersize = 0;
        }
        if self.cache_name_exists(name) {
            self.warn(format_args!("kmem_cache_create: duplicate cache {name}"));
        }
        // Merging with a compatible cache.
        if let Some(s) = self.find_mergeable(name, size, args.align, flags, &args) {
            // SAFETY: caches on the list are alive.
            unsafe {
                let sp = s.as_ptr();
                (*sp).refcount.fetch_add(1, Ordering::Relaxed);
                (*sp).object_size = (*sp).object_size.max(size);
            }
            return Ok(s);
        }
        let kc = self.slab.kmem_cache.load(Ordering::Acquire);
        if kc.is_null() {
            return Err(CacheError::NoMemory);
        }
        // `kc` is the live cache of caches (checked non-null above).
        // SAFETY: as said.
        let mem = unsafe { self.kmem_cache_alloc(NonNull::new_unchecked(kc), gfp | __GFP_ZERO) }
            .map_err(|_| CacheError::NoMemory)?;
        let s = mem.as_ptr() as *mut KmemCache;
        // SAFETY: zeroed object of the right size, owned by us.
        if let Err(e) = unsafe { self.init_cache(s, name, size, flags, &args) } {
            // SAFETY: allocated above from the cache of caches.
            unsafe { self.kmem_cache_free(NonNull::new_unchecked(kc), mem.as_ptr()) };
            return Err(e);
        }
        // SAFETY: initialised.
        Ok(unsafe { NonNull::new_unchecked(s) })
    }

    fn cache_name_exists(&self, name: &str) -> bool {
        let mut found = false;
        // The stored bytes, not `name()`: no UTF-8 check per cache, which
        // made the boot's 41 creations (each against every cache before it)
        // check 820 names.
        self.for_each_cache(|s| found |= s.name[..s.name_len] == *name.as_bytes());
        found
    }

    /// `find_mergeable`: an existing cache new objects can share.
    fn find_mergeable(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        args: &KmemCacheArgs,
    ) -> Option<NonNull<KmemCache>> {
        // slub_debug= may name this cache: a debug cache never merges.
        let flags = self.slub_debug_flags_for(flags, name);
        if flags.intersects(SLAB_NEVER_MERGE)
            || !matches!(args.ctor, CtorKind::None)
            || args.usersize != 0
            || args.freeptr_offset.is_some()
            || args.sheaf_capacity.is_some()
        {
            return None;
        }
        let size = (size + 7) & !7;
        let align = calculate_alignment(flags, align, size);
        let size = (size + align - 1) & !(align - 1);
        let mut found = None;
        // Newest first, as the kernel searches.
        let head = self.slab.caches.lock(&self.platform);
        let h = &*head as *const ListHead as *mut ListHead;
        // SAFETY: the list is walked under slab_mutex; caches stay alive while listed.
        unsafe {
            let mut l = (*h).prev;
            while !ptr::eq(l, h) {
                let s = crate::container_of!(l, KmemCache, list);
                l = (*l).prev;
                let c = &*s;
                if c.refcount.load(Ordering::Relaxed) < 0
                    || c.flags.intersects(SLAB_NEVER_MERGE)
                    || !matches!(c.ctor, CtorKind::None)
                    || c.usersize != 0
                    || size > c.size
                    || (flags.0 & SLAB_MERGE_SAME.0) != (c.flags.0 & SLAB_MERGE_SAME.0)
                    || !c.size.is_multiple_of(align)
                    || c.size - size >= core::mem::size_of::<usize>()
                {
                    continue;
                }
                found = NonNull::new(s);
                break;
            }
        }
        found
    }

    /// Apply `slub_debug=` to a cache's flags (`kmem_cache_flags`).
    pub(crate) fn slub_debug_flags_for(&self, flags: SlabFlags, name: &str) -> SlabFlags {
        if flags.intersects(SLAB_NO_USER_FLAGS) {
            return flags;
        }
        match self.params.slub_debug {
            Some(d) => flags | SlabFlags(d.flags_for(name)),
            None => flags,
        }
    }

    /// Set up a `KmemCache` in zeroed memory (`do_kmem_cache_create`).
    ///
    /// # Safety
    /// `s` is zeroed memory of `kmem_cache_object_size()` bytes, aligned to
    /// a cache line, that the caller owns.
    unsafe fn init_cache(
        &self,
        s: *mut KmemCache,
        name: &str,
        size: usize,
        flags: SlabFlags,
        args: &KmemCacheArgs,
    ) -> Result<(), CacheError> {
        let flags = self.slub_debug_flags_for(flags, name);
        let align = calculate_alignment(flags, args.align, size);
        let ctor = args.ctor;
        let has_ctor = !matches!(ctor, CtorKind::None);
        // calculate_sizes
        let object_size = size;
        let mut sz = (size + 7) & !7;
        if flags.intersects(SLAB_RED_ZONE) && sz == object_size {
            sz += 8;
        }
        let inuse = sz;
        let offset;
        if (flags.intersects(SLAB_TYPESAFE_BY_RCU) && args.freeptr_offset.is_none())
            || flags.intersects(SLAB_POISON)
            || has_ctor
            || (flags.intersects(SLAB_RED_ZONE)
                && (object_size < 8 || (flags.intersects(SLAB_KMALLOC) && flags.intersects(SLAB_STORE_USER))))
        {
            offset = sz;
            sz += 8;
        } else if let Some(off) = args.freeptr_offset {
            offset = off;
        } else if flags.intersects(SLAB_KMALLOC) && self.params.kmem_kmalloc_freeptr_start == Some(true) {
            offset = 0;
        } else {
            offset = (object_size / 2) & !7;
        }
        if flags.intersects(SLAB_STORE_USER) {
            sz += 2 * TRACK_SIZE;
            if flags.intersects(SLAB_KMALLOC) {
                sz += 8; // orig_size
            }
        }
        let mut red_left_pad = 0;
        if flags.intersects(SLAB_RED_ZONE) {
            sz += 8;
            red_left_pad = (8 + align - 1) & !(align - 1);
            sz += red_left_pad;
        }
        let sz = (sz + align - 1) & !(align - 1);
        let p = &self.params;
        let (min_order, max_order) = slub_orders(p);
        let min_objects = match p.kmem_kmalloc_min_objects {
            Some(n) if flags.intersects(SLAB_KMALLOC) => n,
            _ => p.slub_min_objects.unwrap_or(0),
        };
        let order = calculate_order(sz, self.nr_cpus, min_objects, min_order, max_order);
        if order > crate::page::MAX_PAGE_ORDER {
            return Err(CacheError::Invalid("object too large"));
        }
        let oo = OrderObjects::new(order, sz);
        let min = OrderObjects::new(get_order(sz), sz);
        if oo.objects == 0 {
            return Err(CacheError::Invalid("object too large"));
        }
        let mut allocflags = __GFP_COMP;
        if flags.intersects(SLAB_CACHE_DMA) {
            allocflags |= GFP_DMA;
        }
        if flags.intersects(SLAB_CACHE_DMA32) {
            allocflags |= GFP_DMA32;
        }
        if flags.intersects(SLAB_RECLAIM_ACCOUNT) {
            allocflags |= __GFP_RECLAIMABLE;
        }
        let debug = flags.intersects(SLAB_DEBUG_FLAGS);
        let cpu_partial: usize = if debug {
            0
        } else if sz >= PAGE_SIZE {
            6
        } else if sz >= 1024 {
            24
        } else if sz >= 256 {
            52
        } else {
            120
        };
        let cpu_partial_slabs = (cpu_partial * 2).div_ceil(oo.objects as usize);
        let min_partial =
            ((usize::BITS - 1 - sz.leading_zeros()) as usize / 2).clamp(MIN_PARTIAL, MAX_PARTIAL);
        // Per-CPU structures: the cpu array follows the cache (see
        // `CPU_ARRAY_OFFSET`), in the zeroed memory the caller gave.
        let (cpus_before, cpus_total) = self.cpu_array_layout();
        // SAFETY: caller contract: the memory holds the cpu array too.
        let cpu_mem = unsafe { NonNull::new_unchecked((s as *mut u8).add(CPU_ARRAY_OFFSET)) };
        let mut nm = [0u8; CACHE_NAME_LEN];
        let n = name.len().min(CACHE_NAME_LEN);
        nm[..n].copy_from_slice(&name.as_bytes()[..n]);
        // SAFETY: caller contract: `s` is ours and zeroed; we write every field.
        unsafe {
            ptr::write(
                s,
                KmemCache {
                    cpu_slab: (cpu_mem.as_ptr() as *mut KmemCacheCpu).add(cpus_before),
                    flags,
                    size: sz,
                    object_size,
                    offset,
                    rseq_area: if P::RSEQ_AREA {
                        self.platform.rseq_offset()
                    } else {
                        0
                    },
                    inuse,
                    align,
                    red_left_pad,
                    oo,
                    min,
                    min_partial,
                    cpu_partial,
                    cpu_partial_slabs,
                    sheaf_capacity: 0,
                    allocflags,
                    ctor,
                    refcount: AtomicIsize::new(1),
                    useroffset: args.useroffset,
                    usersize: args.usersize,
                    name: nm,
                    name_len: n,
                    list: ListHead::new(),
                    node: (s as *mut u8).add(self.kmem_cache_node_offset()) as *const KmemCacheNode,
                    nr_nodes: self.nr_nodes,
                    shrinker: Shrinker::new("slab", slab_shrink_count::<P>, slab_shrink_scan::<P>)
                        .with_private(s as *mut ()),
                    machine: self as *const Kmem<P> as *const (),
                    colour_next: AtomicUsize::new(0),
                    errors: AtomicUsize::new(0),
                    init_on_alloc: if self.params.init_on_alloc == Some(true) {
                        if has_ctor {
                            1
                        } else if flags.intersects(SLAB_TYPESAFE_BY_RCU | SLAB_POISON) {
                            0
                        } else {
                            2
                        }
                    } else {
                        0
                    },
                    init_on_free: self.params.init_on_free == Some(true)
                        && !has_ctor
                        && !flags.intersects(SLAB_TYPESAFE_BY_RCU | SLAB_POISON),
                    alloc_hooks: 0,
                    reciprocal_size: crate::reciprocal_div::ReciprocalValue::new(sz as u32),
                    // Multiples of the size below the preferred order's
                    // object count. A slab of the fallback order may have
                    // room after its last object where one of the preferred
                    // order has another: such slabs keep no first object for
                    // the test (`new_slab`), so a pointer of the room is not
                    // taken for an object.
                    kfree_test: match MultipleTest::new(sz as u64, oo.objects as u64) {
                        Some(t) if !flags.intersects(SLAB_DEBUG_FLAGS) && red_left_pad == 0 => t,
                        _ => MultipleTest::NEVER,
                    },
                },
            );
            (*s).alloc_hooks =
                ((*s).init_on_alloc == 2 || ((*s).init_on_free && (*s).freeptr_inside())) as u8;
            for nid in 0..self.nr_nodes {
                let n = (*s).node.add(nid) as *mut KmemCacheNode;
                ptr::write(
                    n,
                    KmemCacheNode {
                        list_lock: SpinLock::new(NodeLists {
                            partial: ListHead::new(),
                            nr_partial: 0,
                            full: ListHead::new(),
                        }),
                        nr_slabs: AtomicUsize::new(0),
                        total_objects: AtomicUsize::new(0),
                        barn: SpinLock::new(sheaf::Barn::new()),
                        barn_full: AtomicUsize::new(0),
                    },
                );
                let nl = (*n).list_lock.data_ptr();
                ListHead::init(ptr::addr_of_mut!((*nl).partial));
                ListHead::init(ptr::addr_of_mut!((*nl).full));
            }
            // Caches with allocation or free hooks keep their restartable
            // sequences stopped: the slow paths run the hooks. So do all
            // caches of a machine whose fast paths are the CAS ones.
            let mut stop = if (*s).alloc_hooks != 0 || (*s).init_on_free {
                rseq::STOP_HOOKS
            } else {
                0
            };
            if !self.slab.rseq.load(Ordering::Relaxed) {
                stop |= rseq::STOP_CAS;
            }
            // Sheaves need the sequences, and debug caches check every free.
            (*s).sheaf_capacity = if stop == 0 && !debug && self.params.kmem_sheaves != Some(false) {
                args.sheaf_capacity
                    .map_or(sheaf::sheaf_capacity(sz), |n| n.min(sheaf::MAX_SHEAF_CAPACITY))
            } else {
                0
            };
            let base = cpu_mem.as_ptr() as *mut KmemCacheCpu;
            // The restartable sequences find CPU 0 at a constant offset (`rseq.rs`).
            debug_assert!(
                !P::RSEQ_AREA
                    || (*s).cpu_slab as usize
                        == s as usize
                            + CPU_ARRAY_OFFSET
                            + rseq::NEGATIVE_CPU_IDS * core::mem::size_of::<KmemCacheCpu>()
            );
            for i in 0..cpus_total {
                let cpu = i.wrapping_sub(cpus_before);
                ptr::write(
                    base.add(i),
                    KmemCacheCpu {
                        fl: DoubleWord::new(0, cpu),
                        slab_start: AtomicUsize::new(0),
                        rseq_bytes: AtomicUsize::new(0),
                        floor: AtomicUsize::new(rseq::FLOOR_STOPPED),
                        sheaf_top: AtomicUsize::new(sheaf::sheaf_slots(sheaf::no_sheaf()) as usize),
                        sheaf_limit: AtomicUsize::new(0),
                        sheaf_floor: AtomicUsize::new(rseq::FLOOR_STOPPED),
                        stopped: AtomicU32::new(if cpu < self.nr_cpus {
                            stop
                        } else {
                            rseq::STOP_NO_CPU
                        }),
                        lock: SpinLock::new(()),
                        sheaf: AtomicPtr::new(sheaf::no_sheaf()),
                        slab: AtomicPtr::new(ptr::null_mut()),
                        slab_bytes: AtomicUsize::new(0),
                        partial: AtomicPtr::new(ptr::null_mut()),
                        stat: CpuStats::default(),
                        unbuilt: AtomicU32::new(0),
                    },
                );
                (*base.add(i)).rseq_start();
            }
            let head = self.slab.caches.lock(&self.platform);
            ListHead::add_tail(
                ptr::addr_of_mut!((*s).list),
                &*head as *const ListHead as *mut ListHead,
            );
            drop(head);
            self.register_shrinker(ptr::addr_of!((*s).shrinker));
        }
        Ok(())
    }

    /// Call `f` for every cache (under `slab_mutex`).
    pub fn for_each_cache(&self, mut f: impl FnMut(&KmemCache)) {
        let head = self.slab.caches.lock(&self.platform);
        let h = &*head as *const ListHead as *mut ListHead;
        // SAFETY: walked under slab_mutex; listed caches are alive.
        unsafe {
            let mut l = (*h).next;
            while !ptr::eq(l, h) {
                let s = crate::container_of!(l, KmemCache, list);
                f(&*s);
                l = (*l).next;
            }
        }
    }

    /// `kmem_cache_size`: the object size callers asked for.
    ///
    /// # Safety
    /// `s` is a live cache of this machine (created, not destroyed).
    pub unsafe fn kmem_cache_size(&self, s: NonNull<KmemCache>) -> usize {
        // SAFETY: the caller holds a live cache.
        unsafe { s.as_ref().object_size }
    }

    /// Whether `s` is a cache of this machine that is not destroyed: on the
    /// cache list (`slab_caches`), which only a destroy takes it off. Reads
    /// nothing of `s` itself.
    pub fn kmem_cache_is_live(&self, s: NonNull<KmemCache>) -> bool {
        let mut live = false;
        self.for_each_cache(|c| live |= ptr::eq(c, s.as_ptr()));
        live
    }

    /// `kmem_cache_destroy`: free the cache. If objects remain, report each
    /// one and leave the cache's memory alone, as the kernel does. A cache
    /// destroyed already (or any pointer that is not a live cache) is
    /// reported and left alone, where the kernel would use freed memory.
    ///
    /// # Safety
    /// `s` came from `kmem_cache_create` of this machine and is not used
    /// afterwards (a second destroy is caught as long as no new cache took
    /// the old one's memory).
    pub unsafe fn kmem_cache_destroy(&self, s: NonNull<KmemCache>) {
        if !self.kmem_cache_is_live(s) {
            self.warn(format_args!(
                "kmem_cache_destroy: {:p} is not a live cache (destroyed already?)",
                s.as_ptr()
            ));
            return;
        }
        // SAFETY: a live cache (just checked).
        let c = unsafe { s.as_ref() };
        if c.refcount.load(Ordering::Relaxed) < 0 {
            self.warn(format_args!(
                "kmem_cache_destroy: boot cache {} cannot be destroyed",
                c.name()
            ));
            return;
        }
        if c.refcount.fetch_sub(1, Ordering::AcqRel) > 1 {
            return; // A merged alias is still alive.
        }
        // SAFETY: registered at creation.
        unsafe { self.unregister_shrinker(ptr::addr_of!(c.shrinker)) };
        {
            let _head = self.slab.caches.lock(&self.platform);
            // SAFETY: the cache is on the list.
            unsafe { ListHead::del(ptr::addr_of!(c.list) as *mut ListHead) };
        }
        let leaked = self.kmem_cache_shutdown(c);
        if leaked > 0 {
            self.warn(format_args!(
                "kmem_cache_destroy {}: Slab cache still has objects when called from kmem_cache_destroy",
                c.name()
            ));
            return; // Leak the cache and its slabs, as the kernel does.
        }
        let kc = self.slab.kmem_cache.load(Ordering::Acquire);
        // SAFETY: the cache object came from the cache of caches.
        unsafe { self.kmem_cache_free(NonNull::new_unchecked(kc), s.as_ptr() as *mut u8) };
    }

    /// `__kmem_cache_shutdown`: flush CPUs, free empty slabs; report objects
    /// that remain. Returns the number of remaining objects.
    fn kmem_cache_shutdown(&self, s: &KmemCache) -> usize {
        self.flush_all(s);
        // Its sheaves' memory goes back with its slabs.
        self.shrink_sheaf_cache();
        let mut remaining = 0;
        for nid in 0..self.nr_nodes {
            let n = s.node(nid);
            let mut discard = [ptr::null_mut::<Page>(); 64];
            loop {
                let mut nd = 0;
                {
                    let mut nl = n.list_lock.lock(&self.platform);
                    let h = ptr::addr_of_mut!(nl.partial);
                    // SAFETY: list walked under list_lock.
                    unsafe {
                        let mut l = (*h).next;
                        while !ptr::eq(l, h) && nd < discard.len() {
                            let slab = crate::page_alloc::zone::lru_to_page(l);
                            l = (*l).next;
                            let cnt = Counters(slab_fl(slab).hi.load(Ordering::Acquire));
                            if cnt.inuse() == 0 {
                                ListHead::del(ptr::addr_of_mut!((*slab).lru));
                                (*slab).clear(PG_SLAB_NODE_PARTIAL);
                                nl.nr_partial -= 1;
                                discard[nd] = slab;
                                nd += 1;
                            }
                        }
                    }
                }
                for &slab in &discard[..nd] {
                    // SAFETY: taken off the list, empty.
                    unsafe { self.discard_slab(s, slab) };
                }
                if nd < discard.len() {
                    break;
                }
            }
            let nr = n.nr_slabs.load(Ordering::Relaxed);
            if nr > 0 {
                remaining += self.report_remaining_objects(s, nid);
            }
        }
        remaining
    }

    /// The "Objects remaining" report: one line per live object.
    fn report_remaining_objects(&self, s: &KmemCache, nid: usize) -> usize {
        let n = s.node(nid);
        let nl = n.list_lock.lock(&self.platform);
        let mut count = 0;
        let mut slabs = [ptr::null_mut::<Page>(); 32];
        let mut ns = 0;
        for head in [ptr::addr_of!(nl.partial), ptr::addr_of!(nl.full)] {
            let h = head as *mut ListHead;
            // SAFETY: walked under list_lock.
            unsafe {
                let mut l = (*h).next;
                while !ptr::eq(l, h) {
                    if ns < slabs.len() {
                        slabs[ns] = crate::page_alloc::zone::lru_to_page(l);
                        ns += 1;
                    }
                    l = (*l).next;
                }
            }
        }
        drop(nl);
        let total = n.nr_slabs.load(Ordering::Relaxed);
        self.slab_error(s, format_args!("Objects remaining on __kmem_cache_shutdown()"));
        crate::pr!(self, "Slabs remaining: {} (node {})", total, nid);
        for &slab in &slabs[..ns] {
            count += self.list_slab_objects(s, slab);
        }
        if ns < total {
            // Full slabs are on no list outside debug caches: count them.
            count += (total - ns).max(1);
        }
        count
    }

    /// Print one line per allocated object of a slab (`list_slab_objects`).
    fn list_slab_objects(&self, s: &KmemCache, slab: *mut Page) -> usize {
        let mut free_map = [0u64; 512];
        let base = self.slab_base(slab);
        // SAFETY: the slab's freelist is stable: the cache is being destroyed.
        let cnt = Counters(unsafe { slab_fl(slab).hi.load(Ordering::Acquire) });
        // SAFETY: as above.
        let mut p = unsafe { slab_fl(slab).lo.load(Ordering::Acquire) } as *mut u8;
        let objects = cnt.objects();
        let mut guard = 0;
        while !p.is_null() && guard < objects {
            let idx = ((p as usize) - (base as usize) - s.red_left_pad) / s.size;
            if idx < objects {
                free_map[idx / 64] |= 1 << (idx % 64);
            }
            // SAFETY: p is a free object of this slab.
            p = unsafe { s.get_freepointer(p) };
            guard += 1;
        }
        let mut n = 0;
        for i in 0..objects.min(free_map.len() * 64) {
            if free_map[i / 64] & (1 << (i % 64)) == 0 {
                let obj = s.object_at(base, i);
                crate::pr!(
                    self,
                    "Object 0x{:016x} @offset={}",
                    obj as usize,
                    (obj as usize) - (base as usize)
                );
                self.print_tracking(s, obj);
                self.slab.errors.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }
        n
    }

    /// `slab_err`: the kernel's BUG header for a cache.
    pub(crate) fn slab_error(&self, s: &KmemCache, args: core::fmt::Arguments<'_>) {
        self.slab.errors.fetch_add(1, Ordering::Relaxed);
        s.errors.fetch_add(1, Ordering::Relaxed);
        crate::pr!(
            self,
            "============================================================================="
        );
        let mut b = crate::printk::FixedBuf::<256>::new();
        let _ = b.write_fmt(args);
        crate::pr!(
            self,
            "BUG {} (Tainted: G    B             ): {}",
            s.name(),
            b.as_str()
        );
        crate::pr!(
            self,
            "-----------------------------------------------------------------------------"
        );
        crate::pr!(self, "");
    }

    /// Bytes of a slab (`slab_size`): its pages, from its head page's order.
    pub(crate) fn slab_bytes(&self, slab: *mut Page) -> usize {
        // SAFETY: callers pass slab head pages, which record their allocation order.
        PAGE_SIZE << unsafe { (*slab).order }
    }

    /// Where a slab's objects start: the slab's memory plus its colour
    /// offset (`slab_colour`).
    #[inline(always)]
    pub(crate) fn slab_base(&self, slab: *mut Page) -> *mut u8 {
        // SAFETY: callers pass slab head pages of this machine's memmap.
        let colour = unsafe { slab_colour(slab) };
        self.lowmem_or_direct_address(self.map.page_to_pfn(slab))
            .wrapping_add(colour)
    }

    /// `kmem_cache_shrink`: flush CPUs, give back empty slabs, sort partial
    /// slabs fullest first. Returns 0 if the cache holds no slabs any more.
    ///
    /// # Safety
    /// `s` is a live cache of this machine (created, not destroyed).
    pub unsafe fn kmem_cache_shrink(&self, s: NonNull<KmemCache>) -> i32 {
        // SAFETY: the caller holds a live cache.
        let c = unsafe { s.as_ref() };
        self.flush_all(c);
        self.shrink_node_partials(c, usize::MAX, true);
        // The sheaves just given back: their memory too.
        self.shrink_sheaf_cache();
        let left: usize = (0..self.nr_nodes)
            .map(|n| c.node(n).nr_slabs.load(Ordering::Relaxed))
            .sum();
        (left != 0) as i32
    }

    /// `kmem_cache_shrink_all`: shrink every cache (what memory offlining and
    /// `echo 1 > /sys/kernel/slab/*/shrink` do); leaves no CPU slab behind.
    pub fn kmem_cache_shrink_all(&self) {
        self.for_each_cache(|c| {
            self.flush_all(c);
            self.shrink_node_partials(c, usize::MAX, true);
        });
        // The caches after `slab_sheaf` in the list gave it their sheaves
        // after it was shrunk.
        self.shrink_sheaf_cache();
    }

    /// Shrink `slab_sheaf` (`sheaf.rs`), which a cache's shrink fills.
    fn shrink_sheaf_cache(&self) {
        // SAFETY: the sheaf cache, once created, is never destroyed.
        if let Some(sc) = unsafe { self.slab.sheaf_cache.load(Ordering::Acquire).as_ref() } {
            self.flush_all(sc);
            self.shrink_node_partials(sc, usize::MAX, true);
        }
    }

    /// Free the empty partial slabs of every node beyond `keep` (the kernel's
    /// `__kmem_cache_do_shrink` uses 0); returns the slabs freed.
    pub(crate) fn shrink_node_partials(&self, s: &KmemCache, max: usize, all: bool) -> usize {
        let mut freed = 0;
        for nid in 0..self.nr_nodes {
            let n = s.node(nid);
            loop {
                let mut batch = [ptr::null_mut::<Page>(); 32];
                let mut nb = 0;
                {
                    let mut nl = n.list_lock.lock(&self.platform);
                    let keep = if all { 0 } else { s.min_partial };
                    let h = ptr::addr_of_mut!(nl.partial);
                    // SAFETY: walked under list_lock.
                    unsafe {
                        let mut l = (*h).next;
                        while !ptr::eq(l, h) && nb < batch.len() && freed + nb < max && nl.nr_partial > keep {
                            let slab = crate::page_alloc::zone::lru_to_page(l);
                            l = (*l).next;
                            if Counters(slab_fl(slab).hi.load(Ordering::Acquire)).inuse() == 0 {
                                ListHead::del(ptr::addr_of_mut!((*slab).lru));
                                (*slab).clear(PG_SLAB_NODE_PARTIAL);
                                nl.nr_partial -= 1;
                                batch[nb] = slab;
                                nb += 1;
                            }
                        }
                    }
                }
                for &slab in &batch[..nb] {
                    // SAFETY: an empty slab taken off its list.
                    unsafe { self.discard_slab(s, slab) };
                }
                freed += nb;
                if nb < batch.len() || freed >= max {
                    break;
                }
            }
        }
        freed
    }

    /// The cache a slab object belongs to (`virt_to_cache`), if `obj` is in a slab.
    #[inline(always)]
    pub fn virt_to_slab(&self, obj: *const u8) -> Option<NonNull<Page>> {
        let head = self.virt_to_head_page(obj)?;
        // SAFETY: a descriptor of this memmap.
        unsafe { head.as_ref() }.is_slab().then_some(head)
    }

    /// Slab statistics of a cache, summed over nodes and CPUs:
    /// (active objects, total objects, active slabs, total slabs).
    /// Exact when no allocation runs concurrently.
    pub fn cache_counts(&self, s: &KmemCache) -> (usize, usize, usize, usize) {
        let mut total_objs = 0;
        let mut slabs = 0;
        let mut free = 0;
        for nid in 0..self.nr_nodes {
            let n = s.node(nid);
            total_objs += n.total_objects.load(Ordering::Relaxed);
            slabs += n.nr_slabs.load(Ordering::Relaxed);
            // Objects in the barn's full sheaves are free.
            free += self.barn_objects(n).0;
            let nl = n.list_lock.lock(&self.platform);
            let h = ptr::addr_of!(nl.partial) as *mut ListHead;
            // SAFETY: walked under list_lock.
            unsafe {
                let mut l = (*h).next;
                while !ptr::eq(l, h) {
                    let slab = crate::page_alloc::zone::lru_to_page(l);
                    let c = Counters(slab_fl(slab).hi.load(Ordering::Acquire));
                    free += c.objects() - c.inuse();
                    l = (*l).next;
                }
            }
        }
        for cpu in 0..self.nr_cpus {
            // SAFETY: cpu < nr_cpus.
            let c = unsafe { s.cpu(cpu) };
            // In rseq mode this also stops the fast paths, so the walk is exact.
            let _g = self.cpu_lock(c, cpu);
            // Objects in the sheaf are free.
            free += c.sheaf_size();
            // Objects on the cpu freelist are free.
            let (mut p, _) = c.fl.load();
            let mut guard = 0;
            while p != 0 && guard < MAX_OBJS_PER_PAGE {
                free += 1;
                // SAFETY: objects on the cpu freelist belong to this cache.
                p = unsafe { s.get_freepointer(p as *mut u8) } as usize;
                guard += 1;
            }
            let slab = c.slab.load(Ordering::Acquire);
            if !slab.is_null() {
                // Remote frees to the cpu slab sit on the slab's freelist.
                // SAFETY: the cpu slab is a live slab of this cache.
                let cnt = Counters(unsafe { slab_fl(slab).hi.load(Ordering::Acquire) });
                free += cnt.objects() - cnt.inuse();
                // Objects not linked yet are free.
                let unbuilt = c.unbuilt.load(Ordering::Relaxed) as usize;
                if unbuilt != 0 {
                    free += cnt.objects() - unbuilt;
                }
            }
            let mut part = c.partial.load(Ordering::Acquire);
            while !part.is_null() {
                // SAFETY: cpu partial slabs are live slabs of this cache.
                let cnt = Counters(unsafe { slab_fl(part).hi.load(Ordering::Acquire) });
                free += cnt.objects() - cnt.inuse();
                // SAFETY: as above.
                part = unsafe { (*part).lru.next } as *mut Page;
            }
        }
        let active = total_objs.saturating_sub(free);
        (active, total_objs, slabs, slabs)
    }

    /// Release the resources of every sheaf, barn, cpu slab and cpu partial
    /// list of `s`. The sheaves go first, all of them: a slab that gains a
    /// free object may land on the current CPU's partial list.
    pub fn flush_all(&self, s: &KmemCache) {
        for cpu in 0..self.nr_cpus {
            self.flush_cpu_sheaf(s, cpu);
        }
        self.flush_barns(s);
        for cpu in 0..self.nr_cpus {
            self.flush_cpu_slab(s, cpu);
        }
    }
}

fn slab_shrink_count<P: Platform>(sh: &Shrinker, _sc: &ShrinkControl) -> usize {
    // SAFETY: private_data is the cache, machine its machine; both outlive the registration.
    let s = unsafe { &*(sh.private_data as *const KmemCache) };
    // This shrinker is the 2.6 reaper's part (`cache_reap`), which skipped SLAB_NO_REAP caches;
    // kmem_cache_shrink and frees treat them as any cache, as 2.6 did.
    if s.flags.intersects(SLAB_NO_REAP) {
        return 0;
    }
    let mut empty = 0;
    // SAFETY: as above.
    let k = unsafe { &*(s.machine as *const Kmem<P>) };
    for nid in 0..k.nr_nodes {
        // A barn's sheaves may be all that keeps slabs: one if it has any.
        empty += k.barn_objects(s.node(nid)).1 as usize;
        let nl = s.node(nid).list_lock.lock(&k.platform);
        let h = ptr::addr_of!(nl.partial) as *mut ListHead;
        // SAFETY: walked under list_lock.
        unsafe {
            let mut l = (*h).next;
            while !ptr::eq(l, h) {
                let slab = crate::page_alloc::zone::lru_to_page(l);
                if Counters(slab_fl(slab).hi.load(Ordering::Acquire)).inuse() == 0 {
                    empty += 1;
                }
                l = (*l).next;
            }
        }
    }
    // Slabs on cpu partial lists may be empty too, and objects in sheaves
    // may be all that keeps a slab: count one per CPU holding any.
    for cpu in 0..k.nr_cpus {
        // SAFETY: cpu < nr_cpus.
        let c = unsafe { s.cpu(cpu) };
        if !c.partial.load(Ordering::Relaxed).is_null()
            || c.sheaf.load(Ordering::Relaxed) != sheaf::no_sheaf()
        {
            empty += 1;
        }
    }
    empty
}

fn slab_shrink_scan<P: Platform>(sh: &Shrinker, sc: &mut ShrinkControl) -> usize {
    // SAFETY: as in slab_shrink_count.
    let s = unsafe { &*(sh.private_data as *const KmemCache) };
    // SAFETY: as above.
    let k = unsafe { &*(s.machine as *const Kmem<P>) };
    // Empty the sheaves and barns, then flush cpu partial lists so their empty slabs
    // reach the node lists (see `flush_all` for the order).
    for cpu in 0..k.nr_cpus {
        k.flush_cpu_sheaf(s, cpu);
    }
    k.flush_barns(s);
    for cpu in 0..k.nr_cpus {
        k.flush_cpu_partial(s, cpu);
    }
    k.shrink_node_partials(s, sc.nr_to_scan, true)
}
