//! vmalloc: virtually contiguous memory from scattered pages (`mm/vmalloc.c`).
//!
//! The machine owns a virtual window `[VMALLOC_START, VMALLOC_END)` handed
//! over by the platform at boot (`BootInfo::vmalloc_window`). An area of it is
//! a [`VmapArea`]; its pages come one by one (order 0, not contiguous) from
//! the page allocator and the platform maps them at consecutive virtual pages
//! (`Platform::map_pages`), as the kernel builds page tables.
//!
//! * **Address space** (`alloc_vmap_area`): free ranges are `VmapArea`
//!   records in an address-ordered red-black tree (`rbtree.rs`) augmented
//!   with `subtree_max_size`, the largest free range below each node — the
//!   kernel's `free_vmap_area_root`. The search is lowest-address first fit
//!   with alignment: go left while the left subtree has a range large
//!   enough, else take this node if the aligned request fits in it, else go
//!   right (`find_vmap_lowest_match`; `O(log n)` for page alignment). The
//!   chosen range is split at its left edge, right edge, in full or in the
//!   middle (a record is preloaded for that case). Freed ranges merge with
//!   their neighbours (`merge_or_add_vmap_area`), which keep their records
//!   as in the kernel; the record of the whole window at boot lives in the
//!   machine (the kernel takes it from memblock) and is never kfree'd: a merge
//!   keeps it, and while it is out of the tree (its range was allocated in
//!   full) the next range that goes back into the tree moves into it. So once
//!   everything is freed and purged the tree is that one record again and no
//!   kmalloc'd record is left behind (the buddy lists equal their boot state).
//! * **Guard page**: every area is one page longer than asked for; the last
//!   page is never mapped. The area size (as `/proc/vmallocinfo` prints it)
//!   includes it.
//! * **Busy areas** are in a second red-black tree keyed by address (the
//!   kernel's `vmap_area_root`), with their caller (`#[track_caller]`),
//!   flags, page count and page array. The page array is kmalloc'd, sorted by
//!   pfn (so physically consecutive pages become one platform mapping; an
//!   area's pages have no order of their own), or vmalloc'd when larger than
//!   a page (the kernel's `vpages`).
//! * **Lazy unmapping** (`free_vmap_area_noflush`, `purge_vmap_area_lazy`):
//!   the kernel clears an area's page tables at `vfree` and frees its pages,
//!   but defers the TLB flush and the return of the address range to the
//!   free tree to a batched purge, once more than `lazy_max_pages()` =
//!   `fls(nr_cpus) * 32 MiB` of address space waits, or when an allocation
//!   finds no room. Here unmapping is the expensive part (hosted it is an
//!   `mmap` system call, with the host's VMA split/merge), so it is deferred
//!   too: `vfree` of a vmalloc area only moves the area, still mapped and
//!   still owning its pages and page array, to the lazy list (no system call;
//!   `VmallocUsed` drops at once). The pages are kept out of the page
//!   allocator until the purge, so the stale mapping never shows a page that
//!   has a new owner: a use after free through the old address reaches only
//!   the dead area's own pages (in the kernel it faults, modulo a stale TLB
//!   entry). The range goes back to the free tree only at the purge; before
//!   it, a vmalloc of the same size, alignment, flags and page zone/node
//!   takes back one of the 16 newest lazy areas whole, pages and mapping
//!   included (`reuse_lazy_area`), so a vmalloc+vfree pair of a size seen
//!   before makes no system call (the kernel 6.9+ reuses freed ranges from
//!   per-node pools, after the purge: its mappings are cheap). The purge
//!   sorts the batch by address, unmaps each run of adjacent areas with one
//!   `Platform::unmap_pages` (one `mmap(PROT_NONE)` hosted), flushes the TLB
//!   once, frees the pages (in reverse pfn order, so the per-CPU lists hand
//!   them out ascending again) and the page arrays, and merges the ranges
//!   into the free tree. `vmap`/`vunmap` and ioremap areas do not own their
//!   pages, so they are unmapped at once, as before; only their ranges wait.
//!   The pages held lazily are bounded by `lazy_max_pages()` and given back
//!   under memory pressure by the `vmap-node` shrinker (kernel 6.9's name for
//!   vmalloc's shrinker). Waiting areas show as `unpurged vm_area` in
//!   `/proc/vmallocinfo`.
//! * **Misuse**: `vfree` of an address vmalloc did not return, or a second
//!   `vfree`, gives the kernel's `WARN "Trying to vfree() nonexistent vm area"`
//!   and changes nothing.
//!
//! Locking: one spinlock (`free_vmap_area_lock` and `vmap_area_lock` in one)
//! protects both trees, the lazy list and the counters; no allocation, page
//! freeing or platform call happens under it (records are preallocated and
//! freed records are kfree'd after it is dropped). `purge_lock` (the
//! kernel's `vmap_purge_lock`) serialises purges, which detach the lazy list
//! under the spinlock and do the unmapping and freeing outside it; `vfree`
//! only tries it (`try_purge_vmap_area_lazy`), so a purge that frees a
//! vmalloc'd page array (a nested `vfree`) never waits for itself.
//!
//! **Hosted limits**: every area is at least two host mappings (its pages and
//! its guard), and lazily freed areas keep theirs until the purge, so a
//! machine with tens of thousands of small areas reaches the host's
//! `vm.max_map_count` (65,530 by default). A mapping failure purges the lazy
//! areas and retries once; if it fails again the vmalloc fails cleanly with
//! the kernel's "failed to map pages" message (and the hosted platform warns
//! once about the host limit).
//!
//! `kvmalloc` and friends (`mm/util.c`) try kmalloc first and fall back to
//! vmalloc.
//!
//! ioremap (`ioremap.rs`) takes its areas from the same window with
//! `VM_IOREMAP`, aligned to their size's order (`IOREMAP_MAX_ORDER`); the
//! area records the physical address it maps (`phys=` in vmallocinfo) and
//! owns no pages. `vfree` refuses ioremap areas (only `iounmap` frees them).

use crate::gfp::*;
use crate::kmalloc::{KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE};
use crate::machine::{Kmem, MAX_NUMNODES};
use crate::page::{Page, PAGE_SHIFT, PAGE_SIZE};
use crate::platform::Platform;
use crate::rbtree::{
    rb_erase, rb_insert, rb_link_node, rb_next, rb_propagate, NoAugment, RbAugment, RbNode, RbRoot,
};
use crate::spinlock::SpinLock;
use crate::vmscan::{ShrinkControl, Shrinker, SHRINK_EMPTY, SHRINK_STOP};
use crate::AllocError;
use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::panic::Location;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

/// `VM_IOREMAP`: an ioremap area.
pub const VM_IOREMAP: u32 = 0x1;
/// `VM_ALLOC`: a vmalloc area (owns its pages).
pub const VM_ALLOC: u32 = 0x2;
/// `VM_MAP`: a vmap area (maps the caller's pages).
pub const VM_MAP: u32 = 0x4;
/// `VM_USERMAP`: may be mapped to user space (`vmalloc_user`).
pub const VM_USERMAP: u32 = 0x8;
/// `VM_UNINITIALIZED`: being set up; invisible to lookups.
pub const VM_UNINITIALIZED: u32 = 0x20;
/// Internal: the page array itself is vmalloc'd (`vpages` in vmallocinfo).
const VM_VPAGES: u32 = 0x1_0000;

/// A range of the vmalloc window: free, busy (with its `vm_struct` part) or
/// waiting to be purged. Allocated with kmalloc (but for the boot record).
///
/// # Invariants
/// A record is in exactly one of: the free tree, the busy tree, the lazy
/// list, or a caller's hands (being set up or torn down). `rb` is the first
/// field, so a tree node pointer is the record's pointer.
#[repr(C)]
pub struct VmapArea {
    rb: RbNode,
    /// First address.
    pub va_start: usize,
    /// One past the last address (the guard page included).
    pub va_end: usize,
    /// Free tree: the largest `va_end - va_start` in this subtree.
    subtree_max_size: usize,
    /// Lazy list and garbage chain.
    next: *mut VmapArea,
    flags: u32,
    /// Pages owned by the area (freed by `vfree`), printed as `pages=`.
    nr_pages: usize,
    /// Pages mapped (for `vmap`, the caller's pages).
    nr_mapped: usize,
    pages: *mut *mut Page,
    caller: Option<&'static Location<'static>>,
    /// The caller's code address when the platform knows one
    /// (`Platform::caller_ip`: a C program's call into libkmem), else 0.
    caller_ip: usize,
    /// Physical address an ioremap area maps (`vm->phys_addr`), else 0.
    phys_addr: u64,
    /// A complete vmalloc area (every page allocated and mapped): the zone
    /// bits of the flags its pages were allocated with and the node asked
    /// for, so that once lazily freed it is reused only by a request its
    /// pages would have satisfied (`reuse_lazy_area`). `None` otherwise.
    page_req: Option<(u32, i32)>,
}

impl VmapArea {
    const fn empty() -> Self {
        VmapArea {
            rb: RbNode::new(),
            va_start: 0,
            va_end: 0,
            subtree_max_size: 0,
            next: ptr::null_mut(),
            flags: 0,
            nr_pages: 0,
            nr_mapped: 0,
            pages: ptr::null_mut(),
            caller: None,
            caller_ip: 0,
            phys_addr: 0,
            page_req: None,
        }
    }
}

fn va_of(n: *mut RbNode) -> *mut VmapArea {
    n as *mut VmapArea
}

fn node_of(va: *mut VmapArea) -> *mut RbNode {
    va as *mut RbNode
}

/// The free tree's augmentation: `subtree_max_size`
/// (`free_vmap_area_rb_augment_cb`).
struct FreeAugment;

impl RbAugment for FreeAugment {
    unsafe fn update(n: *mut RbNode) {
        // SAFETY: free tree nodes are `VmapArea`s (first field); the caller
        // passes a live node whose children are live or null.
        unsafe {
            let va = va_of(n);
            let mut m = (*va).va_end - (*va).va_start;
            for c in [(*n).left(), (*n).right()] {
                if !c.is_null() {
                    m = m.max((*va_of(c)).subtree_max_size);
                }
            }
            (*va).subtree_max_size = m;
        }
    }
}

struct VmapInner {
    /// Free ranges by address, never adjacent (`free_vmap_area_root`).
    free: RbRoot,
    /// Busy areas by address (`vmap_area_root`).
    busy: RbRoot,
    /// Lazily freed areas (`purge_vmap_area_list`), unordered.
    purge: *mut VmapArea,
    /// Pages of address space waiting in `purge` (`vmap_lazy_nr`).
    lazy_nr: usize,
    /// Is `boot_va` in the free tree?
    boot_in_tree: bool,
    /// The record of the whole window at boot (the kernel takes it from
    /// memblock): never kfree'd.
    boot_va: VmapArea,
}

// SAFETY: the raw pointers are records owned by the trees and list, only
// touched under the spinlock that holds this value.
unsafe impl Send for VmapInner {}

/// The `vmap-node` shrinker, completed with the machine's address at boot.
struct ShrinkerCell(UnsafeCell<Shrinker>);

// SAFETY: written once during `vmalloc_init` (before registration, while the
// machine is not shared yet), read-only afterwards.
unsafe impl Sync for ShrinkerCell {}

/// The vmalloc layer's state in a machine.
pub struct VmallocState {
    inner: SpinLock<VmapInner>,
    /// `vmap_purge_lock`.
    purge_lock: SpinLock<()>,
    start: AtomicUsize,
    end: AtomicUsize,
    nr_vmalloc_pages: AtomicUsize,
    lazy_max: AtomicUsize,
    /// Pages owned by lazily freed areas, not yet back in the page allocator.
    lazy_pages: AtomicUsize,
    shrinker: ShrinkerCell,
}

impl Default for VmallocState {
    fn default() -> Self {
        Self::new()
    }
}

fn shrink_nothing(_s: &Shrinker, _sc: &ShrinkControl) -> usize {
    SHRINK_EMPTY
}

fn scan_nothing(_s: &Shrinker, _sc: &mut ShrinkControl) -> usize {
    SHRINK_STOP
}

impl VmallocState {
    /// An empty state (no window: every vmalloc fails).
    pub const fn new() -> Self {
        Self {
            inner: SpinLock::new(VmapInner {
                free: RbRoot::new(),
                busy: RbRoot::new(),
                purge: ptr::null_mut(),
                lazy_nr: 0,
                boot_in_tree: false,
                boot_va: VmapArea::empty(),
            }),
            purge_lock: SpinLock::new(()),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            nr_vmalloc_pages: AtomicUsize::new(0),
            lazy_max: AtomicUsize::new(0),
            lazy_pages: AtomicUsize::new(0),
            shrinker: ShrinkerCell(UnsafeCell::new(
                Shrinker::new("vmap-node", shrink_nothing, scan_nothing).with_seeks(0),
            )),
        }
    }
}

/// A copy of a busy area's printable fields.
struct AreaInfo {
    start: usize,
    end: usize,
    flags: u32,
    nr_pages: usize,
    caller: Option<&'static Location<'static>>,
    caller_ip: usize,
    phys_addr: u64,
    per_node: [usize; MAX_NUMNODES],
}

/// Records to kfree once the lock is dropped, chained through `next`.
struct Garbage(*mut VmapArea);

impl Garbage {
    fn push(&mut self, va: *mut VmapArea) {
        // SAFETY: `va` is a record no tree or list holds any more.
        unsafe { (*va).next = self.0 };
        self.0 = va;
    }
}

/// How many of the newest lazily freed areas `reuse_lazy_area` looks at.
const VMAP_REUSE_SCAN: usize = 16;

fn fls(x: usize) -> usize {
    (usize::BITS - x.leading_zeros()) as usize
}

/// Link `va` into `root` by `va_start`.
///
/// # Safety
/// `va` is in no tree; its range does not overlap any record of `root`.
unsafe fn insert_vmap_area<A: RbAugment>(root: &mut RbRoot, va: *mut VmapArea) {
    // SAFETY: tree nodes are live records (caller holds the lock).
    unsafe {
        let mut parent = ptr::null_mut();
        let mut left = false;
        let mut n = root.node;
        while !n.is_null() {
            parent = n;
            left = (*va).va_start < (*va_of(n)).va_start;
            n = if left { (*n).left() } else { (*n).right() };
        }
        rb_link_node(root, node_of(va), parent, left);
        rb_insert::<A>(root, node_of(va));
    }
}

/// The busy area starting exactly at `addr`, or null.
///
/// # Safety
/// The caller holds the lock.
unsafe fn find_vmap_area(root: &RbRoot, addr: usize) -> *mut VmapArea {
    let mut n = root.node;
    // SAFETY: tree nodes are live records.
    unsafe {
        while !n.is_null() {
            let s = (*va_of(n)).va_start;
            if addr == s {
                return va_of(n);
            }
            n = if addr < s { (*n).left() } else { (*n).right() };
        }
    }
    ptr::null_mut()
}

/// The busy area whose range holds `addr`, or null.
///
/// # Safety
/// The caller holds the lock.
unsafe fn find_vmap_area_containing(root: &RbRoot, addr: usize) -> *mut VmapArea {
    let mut n = root.node;
    // SAFETY: tree nodes are live records.
    unsafe {
        while !n.is_null() {
            let va = va_of(n);
            if addr < (*va).va_start {
                n = (*n).left();
            } else if addr >= (*va).va_end {
                n = (*n).right();
            } else {
                return va;
            }
        }
    }
    ptr::null_mut()
}

/// The busy area with the lowest `va_start >= from`, or null.
///
/// # Safety
/// The caller holds the lock.
unsafe fn find_vmap_area_from(root: &RbRoot, from: usize) -> *mut VmapArea {
    let mut n = root.node;
    let mut best = ptr::null_mut();
    // SAFETY: tree nodes are live records.
    unsafe {
        while !n.is_null() {
            if (*va_of(n)).va_start >= from {
                best = va_of(n);
                n = (*n).left();
            } else {
                n = (*n).right();
            }
        }
    }
    best
}

/// `find_vmap_lowest_match`: the lowest free range in the subtree at `n`
/// holding `size` bytes at an `align`-aligned address, or null.
///
/// # Safety
/// The caller holds the lock; `n` is null or a free tree node.
unsafe fn find_vmap_lowest_match(n: *mut RbNode, size: usize, align: usize) -> *mut VmapArea {
    // SAFETY: free tree nodes are live records.
    unsafe {
        if n.is_null() || (*va_of(n)).subtree_max_size < size {
            return ptr::null_mut();
        }
        let l = find_vmap_lowest_match((*n).left(), size, align);
        if !l.is_null() {
            return l;
        }
        let va = va_of(n);
        let addr = ((*va).va_start + align - 1) & !(align - 1);
        if addr >= (*va).va_start && addr.checked_add(size).is_some_and(|e| e <= (*va).va_end) {
            return va;
        }
        find_vmap_lowest_match((*n).right(), size, align)
    }
}

/// Insert the range of `va` into the free tree, merging with its neighbours
/// (`merge_or_add_vmap_area`). A neighbour that absorbs the range keeps its
/// record and `va`'s goes to `garbage`; when both neighbours merge the boot
/// record survives if it is one of them. If the boot record is out of the
/// tree, the surviving range moves into it.
///
/// # Safety
/// `va` is a record no tree or list holds, not the boot record; the caller
/// holds the lock.
unsafe fn merge_or_add_vmap_area(inner: &mut VmapInner, va: *mut VmapArea, garbage: &mut Garbage) {
    let boot = ptr::addr_of_mut!(inner.boot_va);
    // SAFETY: tree nodes are live records; we hold the lock.
    unsafe {
        let (start, end) = ((*va).va_start, (*va).va_end);
        let (mut prev, mut next) = (ptr::null_mut::<VmapArea>(), ptr::null_mut::<VmapArea>());
        let mut n = inner.free.node;
        while !n.is_null() {
            if (*va_of(n)).va_start < start {
                prev = va_of(n);
                n = (*n).right();
            } else {
                next = va_of(n);
                n = (*n).left();
            }
        }
        let merge_prev = !prev.is_null() && (*prev).va_end == start;
        let merge_next = !next.is_null() && (*next).va_start == end;
        let survivor = if merge_prev && merge_next {
            garbage.push(va);
            if next == boot {
                let s = (*prev).va_start;
                rb_erase::<FreeAugment>(&mut inner.free, node_of(prev));
                garbage.push(prev);
                (*next).va_start = s;
                rb_propagate::<FreeAugment>(node_of(next));
                next
            } else {
                let e = (*next).va_end;
                rb_erase::<FreeAugment>(&mut inner.free, node_of(next));
                garbage.push(next);
                (*prev).va_end = e;
                rb_propagate::<FreeAugment>(node_of(prev));
                prev
            }
        } else if merge_next {
            garbage.push(va);
            (*next).va_start = start;
            rb_propagate::<FreeAugment>(node_of(next));
            next
        } else if merge_prev {
            garbage.push(va);
            (*prev).va_end = end;
            rb_propagate::<FreeAugment>(node_of(prev));
            prev
        } else {
            insert_vmap_area::<FreeAugment>(&mut inner.free, va);
            va
        };
        if !inner.boot_in_tree && survivor != boot {
            let (s, e) = ((*survivor).va_start, (*survivor).va_end);
            rb_erase::<FreeAugment>(&mut inner.free, node_of(survivor));
            garbage.push(survivor);
            (*boot).va_start = s;
            (*boot).va_end = e;
            insert_vmap_area::<FreeAugment>(&mut inner.free, boot);
            inner.boot_in_tree = true;
        }
    }
}

/// Sort a `next`-chained list of records by `va_start` (merge sort).
///
/// # Safety
/// Every record of the list is live and ours.
unsafe fn sort_by_start(mut list: *mut VmapArea) -> *mut VmapArea {
    // SAFETY: live records (caller's promise).
    unsafe {
        if list.is_null() || (*list).next.is_null() {
            return list;
        }
        // Split in two halves.
        let (mut a, mut b) = (ptr::null_mut::<VmapArea>(), ptr::null_mut::<VmapArea>());
        let mut toggle = false;
        while !list.is_null() {
            let next = (*list).next;
            if toggle {
                (*list).next = a;
                a = list;
            } else {
                (*list).next = b;
                b = list;
            }
            toggle = !toggle;
            list = next;
        }
        let mut a = sort_by_start(a);
        let mut b = sort_by_start(b);
        let mut head = ptr::null_mut::<VmapArea>();
        let mut tail: *mut *mut VmapArea = &mut head;
        while !a.is_null() && !b.is_null() {
            let take = if (*a).va_start <= (*b).va_start {
                let t = a;
                a = (*a).next;
                t
            } else {
                let t = b;
                b = (*b).next;
                t
            };
            *tail = take;
            tail = ptr::addr_of_mut!((*take).next);
        }
        *tail = if a.is_null() { b } else { a };
        head
    }
}

fn vmap_shrink_count<P: Platform>(s: &Shrinker, _sc: &ShrinkControl) -> usize {
    // SAFETY: `private_data` is the machine that registered the shrinker; it
    // outlives its registration (the shrinker list lives in it).
    let k = unsafe { &*(s.private_data as *const Kmem<P>) };
    match k.vmalloc.lazy_pages.load(Ordering::Relaxed) {
        0 => SHRINK_EMPTY,
        n => n,
    }
}

fn vmap_shrink_scan<P: Platform>(s: &Shrinker, _sc: &mut ShrinkControl) -> usize {
    // SAFETY: as in `vmap_shrink_count`.
    let k = unsafe { &*(s.private_data as *const Kmem<P>) };
    match k.purge_vmap_area_lazy(false) {
        Some(freed) => freed,
        None => SHRINK_STOP,
    }
}

impl<P: Platform> Kmem<P> {
    /// `vmalloc_init`: take over the window `[start, start + size)`.
    pub(crate) fn vmalloc_init(&self, window: Option<(usize, usize)>) {
        let nr = self.nr_cpu_ids();
        self.vmalloc
            .lazy_max
            .store(fls(nr) * ((32 << 20) >> PAGE_SHIFT), Ordering::Relaxed);
        let Some((start, size)) = window else { return };
        let start = (start + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
        let size = size & !(PAGE_SIZE - 1);
        if size < 2 * PAGE_SIZE {
            return;
        }
        {
            let mut inner = self.vmalloc.inner.lock(&self.platform);
            inner.boot_va.va_start = start;
            inner.boot_va.va_end = start + size;
            // The state lives in the machine structure, which never moves.
            let boot = ptr::addr_of_mut!(inner.boot_va);
            // SAFETY: the tree is empty; the boot record is ours.
            unsafe { insert_vmap_area::<FreeAugment>(&mut inner.free, boot) };
            inner.boot_in_tree = true;
        }
        self.vmalloc.start.store(start, Ordering::Relaxed);
        self.vmalloc.end.store(start + size, Ordering::Relaxed);
        let s = self.vmalloc.shrinker.0.get();
        // SAFETY: boot: nobody else sees the machine yet and the shrinker is not registered; the machine
        // (which holds the shrinker and the shrinker list) never moves.
        unsafe {
            (*s).count_objects = vmap_shrink_count::<P>;
            (*s).scan_objects = vmap_shrink_scan::<P>;
            (*s).private_data = self as *const Self as *mut ();
            self.register_shrinker(s);
        }
    }

    /// `VMALLOC_START`.
    pub fn vmalloc_start(&self) -> usize {
        self.vmalloc.start.load(Ordering::Relaxed)
    }

    /// `VMALLOC_END`.
    pub fn vmalloc_end(&self) -> usize {
        self.vmalloc.end.load(Ordering::Relaxed)
    }

    /// `VMALLOC_TOTAL` in bytes.
    pub fn vmalloc_total(&self) -> usize {
        self.vmalloc_end() - self.vmalloc_start()
    }

    /// `vmalloc_nr_pages()`: pages backing vmalloc areas.
    pub fn vmalloc_nr_pages(&self) -> usize {
        self.vmalloc.nr_vmalloc_pages.load(Ordering::Relaxed)
    }

    /// `lazy_max_pages()`.
    pub fn lazy_max_pages(&self) -> usize {
        self.vmalloc.lazy_max.load(Ordering::Relaxed)
    }

    /// Pages of lazily freed vmalloc areas not yet back in the page
    /// allocator (they return at the next purge).
    pub fn vmalloc_lazy_pages(&self) -> usize {
        self.vmalloc.lazy_pages.load(Ordering::Relaxed)
    }

    /// `is_vmalloc_addr`: is `p` inside the vmalloc window?
    pub fn is_vmalloc_addr(&self, p: *const u8) -> bool {
        let a = p as usize;
        a >= self.vmalloc_start() && a < self.vmalloc_end()
    }

    fn new_va_gfp(&self, gfp: Gfp) -> Result<*mut VmapArea, AllocError> {
        let p = self.kmalloc(core::mem::size_of::<VmapArea>(), gfp & GFP_RECLAIM_MASK)?;
        let va = p.as_ptr() as *mut VmapArea;
        // SAFETY: kmalloc gave us room for one record, suitably aligned (8).
        unsafe { ptr::write(va, VmapArea::empty()) };
        Ok(va)
    }

    fn free_garbage(&self, g: Garbage) {
        // SAFETY: only the address of the boot record is taken.
        let boot = unsafe { ptr::addr_of!((*self.vmalloc.inner.data_ptr()).boot_va) } as *const u8;
        let mut p = g.0;
        while !p.is_null() {
            // SAFETY: garbage records are unlinked and ours.
            unsafe {
                let next = (*p).next;
                if p as *const u8 != boot {
                    self.kfree(p as *const u8);
                }
                p = next;
            }
        }
    }

    /// `__purge_vmap_area_lazy`: take the whole lazy list, unmap what is
    /// still mapped (one platform call per run of adjacent areas), flush the
    /// TLB once, free the pages and page arrays, and merge the ranges into the
    /// free tree. With `wait`, waits for a purge in progress (then purges what
    /// is left); without, gives up if one runs. Returns the pages freed, or
    /// `None` if it did not run or found nothing.
    fn purge_vmap_area_lazy(&self, wait: bool) -> Option<usize> {
        let _purging = if wait {
            self.vmalloc.purge_lock.lock(&self.platform)
        } else {
            self.vmalloc.purge_lock.try_lock(&self.platform)?
        };
        let list = {
            let mut inner = self.vmalloc.inner.lock(&self.platform);
            inner.lazy_nr = 0;
            core::mem::replace(&mut inner.purge, ptr::null_mut())
        };
        if list.is_null() {
            return None;
        }
        // SAFETY: the detached list is ours: nobody else reaches its records,
        // and their ranges are in no tree, so nobody maps or allocates there.
        unsafe {
            let list = sort_by_start(list);
            let (mut lo, mut hi) = (usize::MAX, 0);
            let mut run: Option<(usize, usize)> = None;
            let mut p = list;
            while !p.is_null() {
                let (s, e) = ((*p).va_start, (*p).va_end);
                lo = lo.min(s);
                hi = hi.max(e);
                if (*p).nr_mapped != 0 {
                    run = match run {
                        Some((rs, re)) if re == s => Some((rs, e)),
                        Some((rs, re)) => {
                            self.platform.unmap_pages(rs, re - rs);
                            Some((s, e))
                        }
                        None => Some((s, e)),
                    };
                }
                p = (*p).next;
            }
            if let Some((rs, re)) = run {
                self.platform.unmap_pages(rs, re - rs);
            }
            self.platform.flush_tlb_kernel_range(lo, hi);
            let mut freed = 0;
            let mut p = list;
            while !p.is_null() {
                freed += self.release_area_memory(p);
                p = (*p).next;
            }
            self.vmalloc.lazy_pages.fetch_sub(freed, Ordering::Relaxed);
            let mut g = Garbage(ptr::null_mut());
            {
                let mut inner = self.vmalloc.inner.lock(&self.platform);
                let mut p = list;
                while !p.is_null() {
                    let next = (*p).next;
                    (*p).next = ptr::null_mut();
                    merge_or_add_vmap_area(&mut inner, p, &mut g);
                    p = next;
                }
            }
            self.free_garbage(g);
            Some(freed)
        }
    }

    /// Free the pages (in reverse order) and the page array of an unmapped
    /// area, and clear its fields. Returns the pages freed.
    ///
    /// # Safety
    /// `va` is ours, in no tree or list, and nothing maps its pages any more.
    unsafe fn release_area_memory(&self, va: *mut VmapArea) -> usize {
        // SAFETY: the record is ours (caller's promise); the array holds
        // `nr_pages` order-0 pages allocated by vmalloc.
        unsafe {
            let (nr_pages, pages, flags) = ((*va).nr_pages, (*va).pages, (*va).flags);
            for i in (0..nr_pages).rev() {
                if let Some(p) = NonNull::new(*pages.add(i)) {
                    self.__free_pages(p, 0);
                }
            }
            if !pages.is_null() {
                if flags & VM_VPAGES != 0 {
                    self.vfree(pages as *const u8);
                } else {
                    self.kfree(pages as *const u8);
                }
            }
            (*va).flags = 0;
            (*va).nr_pages = 0;
            (*va).nr_mapped = 0;
            (*va).pages = ptr::null_mut();
            (*va).caller = None;
            (*va).caller_ip = 0;
            (*va).phys_addr = 0;
            (*va).page_req = None;
            nr_pages
        }
    }

    /// `purge_vmap_area_lazy` / `vm_unmap_aliases`: unmap every lazily freed
    /// area, give its pages back and return its range to the free tree now
    /// (again for page arrays that the purge itself freed).
    pub fn vm_unmap_aliases(&self) {
        while self.purge_vmap_area_lazy(true).is_some() {}
    }

    /// Take back one of the most recently freed vmalloc areas that is still
    /// mapped with its pages (a lazy area the purge has not reached) if it
    /// has `size` bytes (guard included), starts at a multiple of `align`, has
    /// `flags`, and pages allocated for the same zone bits and node (`req`):
    /// it becomes busy again for `caller`,
    /// and its address is returned. Looks at the first `VMAP_REUSE_SCAN`
    /// entries of the lazy list (the newest first).
    ///
    /// The kernel reuses freed address ranges through per-node pools once
    /// they are purged (6.9's `vmap_pool`); here, where mapping a page is a
    /// host system call creating a VMA (about 9 µs on the machines measured,
    /// against the kernel's 1 µs for a whole vmalloc+vfree), the range is
    /// reused together with its pages and their mapping, before the purge.
    /// Nothing else can see the difference: the area's contents are those the
    /// previous owner left, as a vmalloc'd page's would be (zeroed when asked
    /// for, or with `init_on_alloc`, by the caller).
    fn reuse_lazy_area(
        &self,
        size: usize,
        align: usize,
        flags: u32,
        req: (u32, i32),
        caller: &'static Location<'static>,
    ) -> Option<usize> {
        let mut found = None;
        {
            let mut inner = self.vmalloc.inner.lock(&self.platform);
            let inner = &mut *inner;
            let mut link: *mut *mut VmapArea = &mut inner.purge;
            // `link` points at the list head or a record's `next`.
            // SAFETY: lazy records are live and only reached under the lock, which we hold.
            unsafe {
                for _ in 0..VMAP_REUSE_SCAN {
                    let va = *link;
                    if va.is_null() {
                        break;
                    }
                    if (*va).page_req == Some(req)
                        && (*va).va_end - (*va).va_start == size
                        && (*va).va_start & (align - 1) == 0
                        && (*va).flags == flags
                    {
                        *link = (*va).next;
                        (*va).next = ptr::null_mut();
                        inner.lazy_nr -= size >> PAGE_SHIFT;
                        (*va).caller = Some(caller);
                        (*va).caller_ip = self.platform.caller_ip();
                        insert_vmap_area::<NoAugment>(&mut inner.busy, va);
                        found = Some(((*va).va_start, (*va).nr_pages));
                        break;
                    }
                    link = ptr::addr_of_mut!((*va).next);
                }
            }
        }
        let (addr, nr_pages) = found?;
        self.vmalloc.lazy_pages.fetch_sub(nr_pages, Ordering::Relaxed);
        self.vmalloc
            .nr_vmalloc_pages
            .fetch_add(nr_pages, Ordering::Relaxed);
        Some(addr)
    }

    /// `alloc_vmap_area`: `size` bytes (guard included) aligned to `align`,
    /// lowest address first. The area is busy and `VM_UNINITIALIZED`.
    pub(crate) fn alloc_vmap_area(
        &self,
        size: usize,
        align: usize,
        gfp: Gfp,
        flags: u32,
        caller: &'static Location<'static>,
    ) -> Result<*mut VmapArea, AllocError> {
        let va = self.new_va_gfp(gfp)?;
        let spare = match self.new_va_gfp(gfp) {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: our record, unused.
                unsafe { self.kfree(va as *const u8) };
                return Err(e);
            }
        };
        let mut spare = Some(spare);
        let mut g = Garbage(ptr::null_mut());
        let mut found = None;
        let mut purged = false;
        loop {
            {
                let mut inner = self.vmalloc.inner.lock(&self.platform);
                let boot = ptr::addr_of_mut!(inner.boot_va);
                // SAFETY: tree records are live; we hold the lock.
                unsafe {
                    let f = find_vmap_lowest_match(inner.free.node, size, align);
                    if !f.is_null() {
                        let (fs, fe) = ((*f).va_start, (*f).va_end);
                        let addr = (fs + align - 1) & !(align - 1);
                        let end = addr + size;
                        if addr == fs && end == fe {
                            // FL_FIT_TYPE
                            rb_erase::<FreeAugment>(&mut inner.free, node_of(f));
                            if f == boot {
                                inner.boot_in_tree = false;
                            } else {
                                g.push(f);
                            }
                        } else if addr == fs {
                            (*f).va_start = end; // LE_FIT_TYPE
                            rb_propagate::<FreeAugment>(node_of(f));
                        } else if end == fe {
                            (*f).va_end = addr; // RE_FIT_TYPE
                            rb_propagate::<FreeAugment>(node_of(f));
                        } else {
                            // NE_FIT_TYPE: the preloaded record takes the right part.
                            let ne = spare.take().unwrap_or(ptr::null_mut());
                            (*ne).va_start = end;
                            (*ne).va_end = fe;
                            (*f).va_end = addr;
                            rb_propagate::<FreeAugment>(node_of(f));
                            insert_vmap_area::<FreeAugment>(&mut inner.free, ne);
                        }
                        (*va).va_start = addr;
                        (*va).va_end = end;
                        (*va).flags = flags | VM_UNINITIALIZED;
                        (*va).caller = Some(caller);
                        (*va).caller_ip = self.platform.caller_ip();
                        insert_vmap_area::<NoAugment>(&mut inner.busy, va);
                        found = Some(addr);
                    }
                }
            }
            if found.is_some() || purged {
                break;
            }
            // No room: purge the lazy areas and retry once.
            purged = true;
            if self.purge_vmap_area_lazy(true).is_none() {
                break;
            }
        }
        if let Some(s) = spare {
            g.push(s);
        }
        if found.is_none() {
            g.push(va);
        }
        self.free_garbage(g);
        if found.is_some() {
            Ok(va)
        } else {
            if !gfp.contains(__GFP_NOWARN) {
                crate::pr!(
                    self,
                    "vmalloc_node_range for size {} failed: Address range restricted to {:#x} - {:#x}",
                    size,
                    self.vmalloc_start(),
                    self.vmalloc_end()
                );
            }
            Err(AllocError)
        }
    }

    /// `remove_vm_area`: unlink the busy area starting at `addr`.
    fn remove_vm_area(&self, addr: usize) -> Option<*mut VmapArea> {
        self.remove_vm_area_if(addr, |_| true)
    }

    /// Unlink the busy area starting at `addr` if `want(flags)` holds for it.
    pub(crate) fn remove_vm_area_if(&self, addr: usize, want: impl Fn(u32) -> bool) -> Option<*mut VmapArea> {
        let mut inner = self.vmalloc.inner.lock(&self.platform);
        // SAFETY: busy records are live; we hold the lock.
        unsafe {
            let va = find_vmap_area(&inner.busy, addr);
            if va.is_null() || (*va).flags & VM_UNINITIALIZED != 0 || !want((*va).flags) {
                return None;
            }
            rb_erase::<NoAugment>(&mut inner.busy, node_of(va));
            Some(va)
        }
    }

    /// Tear down an unlinked area and put its range on the lazy list
    /// (`free_unmap_vmap_area` + `__vfree`). An area that owns pages
    /// (`free_pages`, a vmalloc area) stays mapped with its pages until the
    /// purge; any other (vmap, ioremap, a set-up failure) is unmapped now.
    ///
    /// # Safety
    /// `va` was unlinked from the busy tree by the caller and is not used
    /// by anyone else; nobody uses its addresses any more.
    pub(crate) unsafe fn teardown_area(&self, va: *mut VmapArea, free_pages: bool) {
        // SAFETY: the record is ours (caller's promise).
        let (start, end, nr_mapped, nr_pages, flags) = unsafe {
            (
                (*va).va_start,
                (*va).va_end,
                (*va).nr_mapped,
                (*va).nr_pages,
                (*va).flags,
            )
        };
        if free_pages && flags & VM_ALLOC != 0 {
            self.vmalloc
                .nr_vmalloc_pages
                .fetch_sub(nr_pages, Ordering::Relaxed);
        }
        if free_pages && nr_pages != 0 && flags & VM_VPAGES == 0 {
            // Lazy: the mapping, the pages and the array wait for the purge.
            // (Areas large enough for a vmalloc'd array, 2 MiB and more, are
            // unmapped at once: the system call is small beside their pages,
            // and their array's own area is then freed as `vfree` frees it.)
            self.vmalloc.lazy_pages.fetch_add(nr_pages, Ordering::Relaxed);
            // SAFETY: our record.
            unsafe {
                (*va).caller = None;
                (*va).caller_ip = 0;
            }
        } else {
            if nr_mapped != 0 {
                // SAFETY: the range is ours and mapped by us; its users are gone.
                unsafe { self.platform.unmap_pages(start, nr_mapped << PAGE_SHIFT) };
            }
            // SAFETY: unmapped; with no owned pages only the array is freed.
            unsafe {
                if !free_pages {
                    (*va).nr_pages = 0;
                }
                self.release_area_memory(va);
            }
        }
        let over = {
            let mut inner = self.vmalloc.inner.lock(&self.platform);
            // SAFETY: our record; we hold the lock.
            unsafe { (*va).next = inner.purge };
            inner.purge = va;
            inner.lazy_nr += (end - start) >> PAGE_SHIFT;
            inner.lazy_nr > self.lazy_max_pages()
        };
        if over {
            // try_purge_vmap_area_lazy: a purge in progress will do.
            self.purge_vmap_area_lazy(false);
        }
    }

    /// Map `pages` at `start` (in batches of physical addresses).
    fn vmap_pages_range(&self, start: usize, pages: &[*mut Page]) -> bool {
        let mut phys = [0u64; 64];
        let mut done = 0;
        while done < pages.len() {
            let n = (pages.len() - done).min(phys.len());
            for (i, ph) in phys[..n].iter_mut().enumerate() {
                // SAFETY: every entry is a page of this machine.
                let page = unsafe { NonNull::new_unchecked(pages[done + i]) };
                *ph = (self.page_to_pfn(page) as u64) << PAGE_SHIFT;
            }
            // SAFETY: `[start, start + len)` belongs to an area we own, inside
            // the window; the pages are RAM of this machine.
            if !unsafe { self.platform.map_pages(start + (done << PAGE_SHIFT), &phys[..n]) } {
                return false;
            }
            done += n;
        }
        true
    }

    /// Publish a set-up ioremap area mapping `nr_mapped` pages from `phys`.
    pub(crate) fn setup_ioremap_vm(&self, va: *mut VmapArea, phys: u64, nr_mapped: usize) {
        let _g = self.vmalloc.inner.lock(&self.platform);
        // SAFETY: our busy record; we hold the lock.
        unsafe {
            (*va).phys_addr = phys;
            (*va).nr_mapped = nr_mapped;
            (*va).flags &= !VM_UNINITIALIZED;
        }
    }

    /// Publish a set-up area: clear `VM_UNINITIALIZED`.
    fn setup_vmalloc_vm(
        &self,
        va: *mut VmapArea,
        nr_pages: usize,
        nr_mapped: usize,
        pages: *mut *mut Page,
        extra: u32,
        page_req: Option<(u32, i32)>,
    ) {
        let _g = self.vmalloc.inner.lock(&self.platform);
        // SAFETY: our busy record; we hold the lock.
        unsafe {
            (*va).nr_pages = nr_pages;
            (*va).nr_mapped = nr_mapped;
            (*va).pages = pages;
            (*va).page_req = page_req;
            (*va).flags = ((*va).flags & !VM_UNINITIALIZED) | extra;
        }
    }

    /// A HighMem page for a vmalloc area of a machine whose lowmem cannot
    /// be mapped twice: from node `*next` on (the local node first, then
    /// the others in order) with `__GFP_THISNODE`; a node whose allocation
    /// falls back to its lowmem is done (the page goes back).
    fn alloc_highmem_page(&self, gfp: Gfp, next: &mut usize) -> Option<NonNull<Page>> {
        let local = self.numa_node_id();
        while *next < self.nr_nodes {
            // The order: local, then 0, 1, ... without the local one.
            let nid = match *next {
                0 => local,
                i if i <= local => i - 1,
                i => i,
            };
            if let Ok(p) = self.alloc_pages_node(nid as i32, gfp | __GFP_THISNODE, 0) {
                let zone = self.page_zone_by_pfn(self.page_to_pfn(p));
                if zone.is_some_and(|z| z.zone_type == ZoneType::HighMem) {
                    return Some(p);
                }
                // SAFETY: just allocated with order 0, never handed out.
                unsafe { self.__free_pages(p, 0) };
            }
            *next += 1;
        }
        None
    }

    /// `__vmalloc_node_range` over the whole window.
    fn __vmalloc_node_range(
        &self,
        size: usize,
        align: usize,
        gfp: Gfp,
        vm_flags: u32,
        node: i32,
        caller: &'static Location<'static>,
    ) -> Result<NonNull<u8>, AllocError> {
        if size == 0 {
            self.warn(format_args!("vmalloc: size 0 at {caller}"));
            return Err(AllocError);
        }
        // Checked before the size is rounded up, as the kernel does (so
        // `usize::MAX` is reported here, not lost to an overflow).
        if (size >> PAGE_SHIFT) > self.totalram_pages() {
            self.warn_alloc(
                gfp,
                format_args!("vmalloc error: size {size}, exceeds total pages"),
            );
            return Err(AllocError);
        }
        let size = (size + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
        let nr_pages = size >> PAGE_SHIFT;
        let align = align.max(PAGE_SIZE).next_power_of_two();
        let mut page_gfp = gfp | __GFP_NOWARN;
        if !gfp.intersects(GFP_ZONEMASK) && self.has_highmem() {
            page_gfp |= __GFP_HIGHMEM;
        }
        // A hosted machine with private lowmem maps only HighMem pages a
        // second time, and a node's zonelist (`numa=fake`) gives its own
        // lowmem before another node's HighMem: take HighMem node by node.
        let highmem_only = node == crate::memblock::NUMA_NO_NODE
            && page_gfp.intersects(__GFP_HIGHMEM)
            && self.params.kmem_private_lowmem == Some(true)
            && self.nr_nodes > 1;
        {
            let req = (page_gfp.bits() & GFP_ZONEMASK.bits(), node);
            if let Some(addr) =
                self.reuse_lazy_area(size + PAGE_SIZE, align, VM_ALLOC | vm_flags, req, caller)
            {
                if gfp.intersects(__GFP_ZERO) || self.init_on_alloc {
                    // SAFETY: the area is ours again and mapped for `size` bytes.
                    unsafe { ptr::write_bytes(addr as *mut u8, 0, size) };
                }
                // SAFETY: an area's address is never null.
                return Ok(unsafe { NonNull::new_unchecked(addr as *mut u8) });
            }
        }
        let va = self.alloc_vmap_area(size + PAGE_SIZE, align, gfp, VM_ALLOC | vm_flags, caller)?;
        // The page array.
        let array_size = nr_pages * core::mem::size_of::<*mut Page>();
        let nested = gfp.without(GFP_ZONEMASK) | __GFP_ZERO;
        let (pages, extra) = if array_size > PAGE_SIZE {
            match self.__vmalloc_node_range(array_size, PAGE_SIZE, nested, 0, node, caller) {
                Ok(p) => (p.as_ptr() as *mut *mut Page, VM_VPAGES),
                Err(_) => (ptr::null_mut::<*mut Page>(), 0),
            }
        } else {
            match self.kmalloc_node(array_size, nested & (GFP_RECLAIM_MASK | __GFP_ZERO), node) {
                Ok(p) => (p.as_ptr() as *mut *mut Page, 0),
                Err(_) => (ptr::null_mut(), 0),
            }
        };
        if pages.is_null() {
            self.warn_alloc(
                gfp,
                format_args!("vmalloc error: size {size}, failed to allocated page array size {array_size}"),
            );
            self.setup_vmalloc_vm(va, 0, 0, ptr::null_mut(), 0, None);
            if let Some(va) = self.remove_vm_area(self.va_start_of(va)) {
                // SAFETY: just unlinked, never handed out.
                unsafe { self.teardown_area(va, true) };
            }
            return Err(AllocError);
        }
        // The pages: order 0, one by one.
        let mut got = 0;
        let mut next_node = 0;
        while got < nr_pages {
            let page = if highmem_only {
                self.alloc_highmem_page(page_gfp, &mut next_node)
            } else {
                self.alloc_pages_node(node, page_gfp, 0).ok()
            };
            match page {
                // SAFETY: the array holds nr_pages entries.
                Some(p) => unsafe { *pages.add(got) = p.as_ptr() },
                None => break,
            }
            got += 1;
        }
        self.vmalloc.nr_vmalloc_pages.fetch_add(got, Ordering::Relaxed);
        // SAFETY: `got` entries were written just above, and nobody else
        // sees the array yet.
        let slice = unsafe { core::slice::from_raw_parts_mut(pages, got) };
        // By pfn (the memmap is one array): consecutive pages map as one run.
        slice.sort_unstable();
        let ok = got == nr_pages;
        let mut mapped = ok && self.vmap_pages_range(self.va_start_of(va), slice);
        if ok && !mapped {
            // Lazily freed areas hold mappings (hosted: host VMAs); give
            // them back and try once more.
            self.vm_unmap_aliases();
            mapped = self.vmap_pages_range(self.va_start_of(va), slice);
        }
        if !mapped {
            let what = if ok {
                "failed to map pages"
            } else {
                "failed to allocate pages"
            };
            self.warn_alloc(gfp, format_args!("vmalloc error: size {size}, {what}"));
            // Map nothing we did not map: unmapping the whole range is harmless.
            self.setup_vmalloc_vm(va, got, if ok { nr_pages } else { 0 }, pages, extra, None);
            if let Some(va) = self.remove_vm_area(self.va_start_of(va)) {
                // SAFETY: just unlinked, never handed out.
                unsafe { self.teardown_area(va, true) };
            }
            return Err(AllocError);
        }
        let page_req = Some((page_gfp.bits() & GFP_ZONEMASK.bits(), node));
        self.setup_vmalloc_vm(va, nr_pages, nr_pages, pages, extra, page_req);
        let addr = self.va_start_of(va);
        // SAFETY: the address is mapped for `size` bytes; never null.
        Ok(unsafe { NonNull::new_unchecked(addr as *mut u8) })
    }

    pub(crate) fn va_start_of(&self, va: *mut VmapArea) -> usize {
        // SAFETY: `va_start` of a busy record we own does not change.
        unsafe { (*va).va_start }
    }

    /// `vmalloc`: `size` bytes, virtually contiguous, from scattered pages.
    #[track_caller]
    pub fn vmalloc(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        self.__vmalloc_node_range(size, PAGE_SIZE, GFP_KERNEL, 0, -1, Location::caller())
    }

    /// `vzalloc`: zeroed `vmalloc`.
    #[track_caller]
    pub fn vzalloc(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        self.__vmalloc_node_range(
            size,
            PAGE_SIZE,
            GFP_KERNEL | __GFP_ZERO,
            0,
            -1,
            Location::caller(),
        )
    }

    /// `__vmalloc`: with explicit GFP flags.
    #[track_caller]
    pub fn __vmalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        self.__vmalloc_node_range(size, PAGE_SIZE, gfp, 0, -1, Location::caller())
    }

    /// `__vmalloc_node`: with explicit GFP flags, the area's start aligned to
    /// `align` (a power of two; below a page it is a page), pages preferably
    /// from node `node` (`-1`: any). An `align` that is not a power of two
    /// gets the kernel's warning (`alloc_vmap_area`'s `BUG_ON`) and fails; an
    /// alignment the window cannot satisfy fails as a full window does.
    #[track_caller]
    pub fn __vmalloc_node(
        &self,
        size: usize,
        align: usize,
        gfp: Gfp,
        node: i32,
    ) -> Result<NonNull<u8>, AllocError> {
        if !align.is_power_of_two() {
            self.warn(format_args!(
                "__vmalloc_node: alignment {align:#x} is not a power of two at {}",
                Location::caller()
            ));
            return Err(AllocError);
        }
        self.__vmalloc_node_range(size, align, gfp, 0, node, Location::caller())
    }

    /// `vmalloc_node`: pages preferably from node `node` (`-1`: any).
    #[track_caller]
    pub fn vmalloc_node(&self, size: usize, node: i32) -> Result<NonNull<u8>, AllocError> {
        self.__vmalloc_node_range(size, PAGE_SIZE, GFP_KERNEL, 0, node, Location::caller())
    }

    /// `vzalloc_node`.
    #[track_caller]
    pub fn vzalloc_node(&self, size: usize, node: i32) -> Result<NonNull<u8>, AllocError> {
        self.__vmalloc_node_range(
            size,
            PAGE_SIZE,
            GFP_KERNEL | __GFP_ZERO,
            0,
            node,
            Location::caller(),
        )
    }

    /// `vmalloc_32`: pages from ZONE_DMA32 (32-bit addressable).
    #[track_caller]
    pub fn vmalloc_32(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        self.__vmalloc_node_range(size, PAGE_SIZE, GFP_KERNEL | GFP_DMA32, 0, -1, Location::caller())
    }

    /// `vmalloc_user`: zeroed, may be mapped to user space (`VM_USERMAP`).
    #[track_caller]
    pub fn vmalloc_user(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        self.__vmalloc_node_range(
            size,
            PAGE_SIZE,
            GFP_KERNEL | __GFP_ZERO,
            VM_USERMAP,
            -1,
            Location::caller(),
        )
    }

    /// `vfree`: free a vmalloc area; NULL is a no-op. Any other address
    /// (an ioremap area included) gives `WARN "Trying to vfree() nonexistent
    /// vm area"` and does nothing.
    ///
    /// # Safety
    /// `addr` is null or an address the caller may free: if it is a live
    /// vmalloc area, nothing uses the area afterwards.
    pub unsafe fn vfree(&self, addr: *const u8) {
        if addr.is_null() {
            return;
        }
        match self.remove_vm_area_if(addr as usize, |f| f & VM_IOREMAP == 0) {
            // SAFETY: unlinked just now; the caller gives the memory up.
            Some(va) => unsafe { self.teardown_area(va, true) },
            None => self.warn(format_args!("Trying to vfree() nonexistent vm area ({addr:p})")),
        }
    }

    /// `vmap`: map `pages` at consecutive virtual pages (`VM_MAP`). The pages
    /// stay the caller's; `vunmap` unmaps them.
    #[track_caller]
    pub fn vmap(&self, pages: &[NonNull<Page>]) -> Result<NonNull<u8>, AllocError> {
        let caller = Location::caller();
        let count = pages.len();
        if count == 0 || count > self.totalram_pages() {
            return Err(AllocError);
        }
        let size = count << PAGE_SHIFT;
        let va = self.alloc_vmap_area(size + PAGE_SIZE, PAGE_SIZE, GFP_KERNEL, VM_MAP, caller)?;
        let arr = match self.kmalloc(count * core::mem::size_of::<*mut Page>(), GFP_KERNEL) {
            Ok(p) => p.as_ptr() as *mut *mut Page,
            Err(_) => ptr::null_mut(),
        };
        let ok = !arr.is_null() && {
            for (i, p) in pages.iter().enumerate() {
                // SAFETY: the array holds `count` entries.
                unsafe { *arr.add(i) = p.as_ptr() };
            }
            // SAFETY: filled just above.
            self.vmap_pages_range(self.va_start_of(va), unsafe {
                core::slice::from_raw_parts(arr, count)
            })
        };
        self.setup_vmalloc_vm(va, 0, if ok { count } else { 0 }, arr, 0, None);
        let addr = self.va_start_of(va);
        if !ok {
            if let Some(va) = self.remove_vm_area(addr) {
                // SAFETY: just unlinked, never handed out; it owns no pages.
                unsafe { self.teardown_area(va, false) };
            }
            return Err(AllocError);
        }
        // SAFETY: never null.
        Ok(unsafe { NonNull::new_unchecked(addr as *mut u8) })
    }

    /// `vunmap`: undo `vmap` (the pages are not freed).
    ///
    /// # Safety
    /// As [`Kmem::vfree`]: nothing uses the mapping afterwards.
    pub unsafe fn vunmap(&self, addr: *const u8) {
        if addr.is_null() {
            return;
        }
        match self.remove_vm_area(addr as usize) {
            // SAFETY: unlinked just now; the caller gives the mapping up.
            Some(va) => unsafe { self.teardown_area(va, false) },
            None => self.warn(format_args!("Trying to vunmap() nonexistent vm area ({addr:p})")),
        }
    }

    /// `vmalloc_to_page`: the page mapped at a vmalloc address (`None` for
    /// unmapped addresses, the guard page included).
    pub fn vmalloc_to_page(&self, addr: *const u8) -> Option<NonNull<Page>> {
        let a = addr as usize;
        if !self.is_vmalloc_addr(addr) {
            return None;
        }
        let inner = self.vmalloc.inner.lock(&self.platform);
        // SAFETY: busy records are live; we hold the lock.
        unsafe {
            let cur = find_vmap_area_containing(&inner.busy, a);
            if cur.is_null() || (*cur).flags & VM_UNINITIALIZED != 0 {
                return None;
            }
            let idx = (a - (*cur).va_start) >> PAGE_SHIFT;
            // ioremap areas have no page array: device memory has no page.
            if idx >= (*cur).nr_mapped || (*cur).pages.is_null() {
                return None;
            }
            NonNull::new(*(*cur).pages.add(idx))
        }
    }

    /// `vmalloc_to_pfn`.
    pub fn vmalloc_to_pfn(&self, addr: *const u8) -> Option<usize> {
        self.vmalloc_to_page(addr).map(|p| self.page_to_pfn(p))
    }

    /// The usable size of the vmalloc area starting at `addr` (guard excluded).
    fn vmalloc_size(&self, addr: usize) -> Option<usize> {
        let inner = self.vmalloc.inner.lock(&self.platform);
        // SAFETY: busy records are live; we hold the lock.
        unsafe {
            let cur = find_vmap_area(&inner.busy, addr);
            if cur.is_null() {
                return None;
            }
            Some((*cur).va_end - (*cur).va_start - PAGE_SIZE)
        }
    }

    // ---- kvmalloc (mm/util.c) ----------------------------------------------

    /// `kvmalloc`: kmalloc, and for sizes above a page vmalloc if kmalloc
    /// fails (kmalloc then tries with `__GFP_NORETRY | __GFP_NOWARN`). The
    /// vmalloc fallback needs a gfp that may block.
    #[track_caller]
    pub fn kvmalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        self.kvmalloc_node(size, gfp, -1)
    }

    /// `kvmalloc_node`.
    #[track_caller]
    pub fn kvmalloc_node(&self, size: usize, gfp: Gfp, node: i32) -> Result<NonNull<u8>, AllocError> {
        let caller = Location::caller();
        let kflags = if size > PAGE_SIZE {
            kvmalloc_kmalloc_gfp(gfp)
        } else {
            gfp
        };
        if let Ok(p) = self.kmalloc_node(size, kflags, node) {
            return Ok(p);
        }
        if size <= PAGE_SIZE || !gfp.allows_blocking() {
            return Err(AllocError);
        }
        if size > i32::MAX as usize {
            return Err(AllocError);
        }
        self.__vmalloc_node_range(size, PAGE_SIZE, gfp, 0, node, caller)
    }

    /// `kvmalloc` for a `Layout`: what a general-purpose allocator needs
    /// (kmem's `GlobalAlloc` serves every size with it). Up to
    /// `KMALLOC_MAX_CACHE_SIZE` it is `kmalloc_layout`; above, `kvmalloc`'s
    /// policy with the alignment kept: kmalloc's pages (quietly, without
    /// retrying) and else a vmalloc area aligned to `max(align, PAGE_SIZE)`,
    /// so sizes beyond kmalloc's 4 MiB work. Free with `kvfree`.
    #[inline(always)]
    #[track_caller]
    pub fn kvmalloc_layout(&self, layout: core::alloc::Layout, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        if layout.size() <= KMALLOC_MAX_CACHE_SIZE {
            self.kmalloc_layout(layout, gfp)
        } else {
            self.kvmalloc_large(layout, gfp, Location::caller())
        }
    }

    #[cold]
    #[inline(never)]
    fn kvmalloc_large(
        &self,
        layout: core::alloc::Layout,
        gfp: Gfp,
        caller: &'static Location<'static>,
    ) -> Result<NonNull<u8>, AllocError> {
        if layout.size() <= KMALLOC_MAX_SIZE {
            if let Ok(p) = self.kmalloc_layout(layout, kvmalloc_kmalloc_gfp(gfp)) {
                return Ok(p);
            }
        }
        if !gfp.allows_blocking() || layout.size() > i32::MAX as usize {
            return Err(AllocError);
        }
        self.__vmalloc_node_range(layout.size(), layout.align(), gfp, 0, -1, caller)
    }

    /// Resize a `kvmalloc_layout` allocation to another layout, keeping the
    /// first `min(old, new)` bytes: `kmalloc_resize` while both sizes are
    /// kmalloc's; otherwise the same pointer while it is aligned enough and
    /// its usable size holds the new size (and, for a vmalloc area, the new
    /// size is more than half of it, so shrinking gives memory back), else
    /// a new allocation, a copy and a `kvfree`. On failure the old
    /// allocation is untouched.
    ///
    /// # Safety
    /// `ptr` is a live allocation of this machine made by
    /// `kvmalloc_layout` for `old` (non-zero size); `new` has a non-zero
    /// size. On success `ptr` is not used again unless it was returned.
    #[track_caller]
    pub unsafe fn kvmalloc_resize(
        &self,
        ptr: NonNull<u8>,
        old: core::alloc::Layout,
        new: core::alloc::Layout,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, AllocError> {
        let p = ptr.as_ptr();
        let vmalloced = self.is_vmalloc_addr(p);
        if !vmalloced && new.size() <= KMALLOC_MAX_CACHE_SIZE {
            // SAFETY: forwarded; a kmalloc allocation made for `old`.
            return unsafe { self.kmalloc_resize(ptr, old, new, gfp) };
        }
        let usable = if vmalloced {
            self.vmalloc_size(p as usize).unwrap_or(0)
        } else {
            self.ksize(p)
        };
        let aligned = (p as usize) & (new.align() - 1) == 0;
        if aligned && new.size() <= usable && (!vmalloced || new.size() > usable / 2) {
            return Ok(ptr);
        }
        let q = self.kvmalloc_layout(new, gfp)?;
        // SAFETY: both live and distinct; min(old, new) bytes are valid in both.
        unsafe {
            ptr::copy_nonoverlapping(p, q.as_ptr(), old.size().min(new.size()));
            self.kvfree(p);
        }
        Ok(q)
    }

    /// `kvzalloc`.
    #[track_caller]
    pub fn kvzalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        self.kvmalloc_node(size, gfp | __GFP_ZERO, -1)
    }

    /// `kvfree`: vfree or kfree, by address.
    ///
    /// # Safety
    /// `p` is NULL or came from `kvmalloc` (or kmalloc/vmalloc) of this
    /// machine and is not used afterwards.
    pub unsafe fn kvfree(&self, p: *const u8) {
        if self.is_vmalloc_addr(p) {
            // SAFETY: the caller's contract (kvfree's), forwarded.
            unsafe { self.vfree(p) };
        } else {
            // SAFETY: forwarded.
            unsafe { self.kfree(p) };
        }
    }

    /// `kvrealloc`: resize, keeping the contents up to the smaller size
    /// (always moves to a new allocation here). NULL behaves as `kvmalloc`.
    ///
    /// # Safety
    /// As `kvfree` for `p`; on success the old pointer is freed.
    #[track_caller]
    pub unsafe fn kvrealloc(&self, p: *mut u8, size: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        if p.is_null() {
            return self.kvmalloc(size, gfp);
        }
        let old = if self.is_vmalloc_addr(p) {
            self.vmalloc_size(p as usize).unwrap_or(0)
        } else {
            self.ksize(p)
        };
        let n = self.kvmalloc(size, gfp)?;
        // SAFETY: both blocks hold at least min(old, size) bytes and are distinct.
        unsafe {
            ptr::copy_nonoverlapping(p, n.as_ptr(), old.min(size));
            self.kvfree(p);
        }
        Ok(n)
    }

    // ---- /proc/vmallocinfo -------------------------------------------------

    /// Copy of the first initialised busy area at or after `from`.
    fn next_area_info(&self, from: usize) -> Option<AreaInfo> {
        let inner = self.vmalloc.inner.lock(&self.platform);
        // SAFETY: busy records are live; we hold the lock.
        unsafe {
            let mut cur = find_vmap_area_from(&inner.busy, from);
            while !cur.is_null() && (*cur).flags & VM_UNINITIALIZED != 0 {
                cur = va_of(rb_next(node_of(cur)));
            }
            if cur.is_null() {
                return None;
            }
            let v = &*cur;
            let mut per_node = [0; MAX_NUMNODES];
            if v.flags & VM_ALLOC != 0 {
                for i in 0..v.nr_pages {
                    if let Some(p) = NonNull::new(*v.pages.add(i)) {
                        let nid = self
                            .page_zone_by_pfn(self.page_to_pfn(p))
                            .map_or(0, |z| z.node as usize);
                        per_node[nid.min(MAX_NUMNODES - 1)] += 1;
                    }
                }
            }
            Some(AreaInfo {
                start: v.va_start,
                end: v.va_end,
                flags: v.flags,
                nr_pages: v.nr_pages,
                caller: v.caller,
                caller_ip: v.caller_ip,
                phys_addr: v.phys_addr,
                per_node,
            })
        }
    }

    /// `/proc/vmallocinfo`: one line per busy area in address order, then
    /// the lazily freed ones. The caller prints as the platform names a code
    /// address (`Platform::write_symbol`: `symbol+0xoff [object]` on a host,
    /// where the kernel's `%pS` prints `symbol+0xoff/0xlen`) when it gave
    /// one, else as the Rust call site's `file:line`; addresses are not
    /// hashed.
    pub fn vmallocinfo_show(&self, out: &mut dyn Write) -> fmt::Result {
        let mut from = 0;
        while let Some(a) = self.next_area_info(from) {
            from = a.end;
            write!(out, "0x{:016x}-0x{:016x} {:7}", a.start, a.end, a.end - a.start)?;
            if a.caller_ip != 0 {
                out.write_char(' ')?;
                self.platform.write_symbol(a.caller_ip, out)?;
            } else if let Some(c) = a.caller {
                write!(out, " {}:{}", c.file(), c.line())?;
            }
            if a.nr_pages != 0 {
                write!(out, " pages={}", a.nr_pages)?;
            }
            if a.phys_addr != 0 {
                write!(out, " phys=0x{:016x}", a.phys_addr)?;
            }
            for (bit, word) in [
                (VM_IOREMAP, " ioremap"),
                (VM_ALLOC, " vmalloc"),
                (VM_MAP, " vmap"),
                (VM_USERMAP, " user"),
                (VM_VPAGES, " vpages"),
            ] {
                if a.flags & bit != 0 {
                    out.write_str(word)?;
                }
            }
            for (nid, &n) in a.per_node[..self.nr_node_ids()].iter().enumerate() {
                if n != 0 {
                    write!(out, " N{nid}={n}")?;
                }
            }
            out.write_str("\n")?;
        }
        // Unpurged areas, in address order, one at a time.
        let mut from = 0;
        loop {
            let next = {
                let inner = self.vmalloc.inner.lock(&self.platform);
                let mut best: Option<(usize, usize)> = None;
                let mut p = inner.purge;
                // SAFETY: purge records are live; we hold the lock.
                unsafe {
                    while !p.is_null() {
                        let (s, e) = ((*p).va_start, (*p).va_end);
                        if s >= from && best.is_none_or(|(bs, _)| s < bs) {
                            best = Some((s, e));
                        }
                        p = (*p).next;
                    }
                }
                best
            };
            let Some((s, e)) = next else { break };
            writeln!(out, "0x{:016x}-0x{:016x} {:7} unpurged vm_area", s, e, e - s)?;
            from = e;
        }
        Ok(())
    }
}

/// The flags `kvmalloc` tries kmalloc with for more than a page
/// (`kmalloc_gfp_adjust`): quietly, without retrying unless the caller asked
/// to, never `__GFP_NOFAIL` (vmalloc is the fallback).
fn kvmalloc_kmalloc_gfp(gfp: Gfp) -> Gfp {
    let mut kflags = (gfp | __GFP_NOWARN).without(__GFP_NOFAIL);
    if !kflags.contains(__GFP_RETRY_MAYFAIL) {
        kflags |= __GFP_NORETRY;
    }
    kflags
}
