//! Debug caches (`slub_debug=`, `SLAB_CONSISTENCY_CHECKS`, `SLAB_RED_ZONE`,
//! `SLAB_POISON`, `SLAB_STORE_USER`, `SLAB_TRACE`): every allocation and free
//! goes through the node's `list_lock`, one object at a time, as SLUB's
//! `alloc_single_from_partial` and `free_to_partial_list` do, so the checks
//! see a stable slab. Full slabs of debug caches sit on the node's `full` list.
//!
//! **Layout of one object** (`size` bytes apart, the first `red_left_pad`
//! bytes after the slab's start):
//!
//! ```text
//!  [left red zone]  red_left_pad bytes                      (SLAB_RED_ZONE)
//!  [object]         object_size bytes; 0x6b.. 0xa5 when free (__OBJECT_POISON)
//!  [right red zone] up to inuse: word padding (+1 word)     (SLAB_RED_ZONE)
//!  [free pointer]   if it cannot live inside the object
//!  [2 x track]      alloc and free call sites               (SLAB_STORE_USER)
//!  [orig_size]      the size kmalloc was asked for          (STORE_USER + KMALLOC)
//!  [padding]        0x5a (POISON_INUSE), checked with SLAB_POISON
//! ```
//!
//! Red zones read 0xbb (`SLUB_RED_INACTIVE`) while the object is free and
//! 0xcc (`SLUB_RED_ACTIVE`) while it is allocated; with kmalloc size tracking
//! the bytes between the requested size and `object_size` are red zone too
//! ("kmalloc Redzone"). With `SLAB_POISON` the whole slab starts as 0x5a.
//!
//! **Checks.** As in the kernel, the full object checks (`check_object`) run
//! on allocation and free only with `SLAB_CONSISTENCY_CHECKS` (`F`), and on
//! every object whenever the cache is validated (`kmem_cache_validate`, the
//! sysfs `validate` file). Two cheap checks always run, because skipping them
//! would corrupt the slab rather than report: a freed pointer must be an
//! object boundary of its slab ("Invalid object pointer"), and it must not be
//! on the slab's freelist already ("Object already free").
//!
//! **Reports** have the kernel's shape and text: `slab_err`/`object_err`
//! print the `BUG <cache> (Tainted: ...): <reason>` header, the slab line, the
//! object line, hex dumps and the alloc/free tracks; a corrupted byte range is
//! reported as `[<what> overwritten] 0x..-0x.. @offset=..` and restored with a
//! `FIX <cache>: Restoring ...` line. Every report, and every fix, adds one to
//! the machine's `slab.errors` (the slub_kunit `slab_errors` counter), so one
//! corruption counts 2, exactly as the kernel's KUnit tests expect.

use super::*;
use crate::page_alloc::zone::lru_to_page;
use core::panic::Location;
use core::sync::atomic::Ordering::*;

/// Red zone byte of a free object.
pub const SLUB_RED_INACTIVE: u8 = 0xbb;
/// Red zone byte of an allocated object.
pub const SLUB_RED_ACTIVE: u8 = 0xcc;
/// Padding and not-yet-initialised bytes.
pub const POISON_INUSE: u8 = 0x5a;
/// Body of a free object.
pub const POISON_FREE: u8 = 0x6b;
/// Last byte of a free object.
pub const POISON_END: u8 = 0xa5;

/// Which of the two tracks (`enum track_item`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TrackItem {
    /// `TRACK_ALLOC`.
    Alloc = 0,
    /// `TRACK_FREE`.
    Free = 1,
}

/// One `struct track` in an object's metadata.
#[repr(C)]
#[derive(Clone, Copy)]
struct Track {
    /// The caller (`&'static Location`, or with [`TRACK_IP`] in `cpu` the
    /// platform's code address, `Platform::caller_ip`), or 0.
    addr: usize,
    /// `platform.now_ns()` when recorded.
    when: u64,
    /// CPU, and [`TRACK_IP`].
    cpu: u32,
    /// Task id.
    pid: u32,
    /// `Track::seal` of the fields above: a track damaged by a stray write
    /// is not followed as a pointer.
    seal: u64,
}

/// `Track::cpu` bit: `addr` is a code address, not a `Location`.
const TRACK_IP: u32 = 1 << 31;

/// Who a track names.
enum Caller {
    /// A Rust call site.
    Location(&'static Location<'static>),
    /// A code address (`Platform::caller_ip`).
    Ip(usize),
}

impl Track {
    const MAGIC: u64 = 0x5b1f_7ac4_d00d_e0a1;

    fn seal(&self) -> u64 {
        (self.addr as u64).rotate_left(17)
            ^ self.when
            ^ (((self.cpu as u64) << 32) | self.pid as u64)
            ^ Self::MAGIC
    }

    /// The recorded caller, if the track is intact.
    fn caller(&self) -> Option<Caller> {
        if self.addr == 0 || self.seal != self.seal() {
            return None;
        }
        if self.cpu & TRACK_IP != 0 {
            return Some(Caller::Ip(self.addr));
        }
        // An intact track without TRACK_IP holds the address of a `&'static Location` from `set_track`.
        // SAFETY: as said.
        Some(Caller::Location(unsafe {
            &*(self.addr as *const Location<'static>)
        }))
    }
}

const _: () = assert!(core::mem::size_of::<Track>() == TRACK_SIZE);

/// A track's caller as the report prints it: `file:line:col`, or the
/// platform's symbol for a code address.
struct CallerDisplay<'a, P>(&'a P, Caller);

impl<P: Platform> core::fmt::Display for CallerDisplay<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.1 {
            Caller::Location(loc) => write!(f, "{loc}"),
            Caller::Ip(ip) => self.0.write_symbol(ip, f),
        }
    }
}

/// Bitmap of the free objects of one slab (`__fill_map`).
type ObjMap = [u64; MAX_OBJS_PER_PAGE.div_ceil(64)];

impl KmemCache {
    /// `__OBJECT_POISON`: poison free objects (POISON, and nothing that must
    /// keep the contents of a free object: no constructor, not RCU-typesafe).
    #[inline]
    pub fn object_poison(&self) -> bool {
        self.flags.intersects(SLAB_POISON)
            && matches!(self.ctor, CtorKind::None)
            && !self.flags.intersects(SLAB_TYPESAFE_BY_RCU)
    }

    /// `freeptr_outside_object`.
    #[inline]
    pub fn freeptr_outside_object(&self) -> bool {
        self.offset >= self.inuse
    }

    /// `get_info_end`: where the tracks start.
    #[inline]
    pub fn info_end(&self) -> usize {
        if self.freeptr_outside_object() {
            self.inuse + core::mem::size_of::<usize>()
        } else {
            self.inuse
        }
    }

    /// `slub_debug_orig_size`: kmalloc caches with user tracking remember
    /// the requested size.
    #[inline]
    pub fn debug_orig_size(&self) -> bool {
        self.flags.contains(SLAB_KMALLOC | SLAB_STORE_USER)
    }

    /// `size_from_object`: the stride seen from the object's start.
    #[inline]
    pub fn size_from_object(&self) -> usize {
        if self.flags.intersects(SLAB_RED_ZONE) {
            self.size - self.red_left_pad
        } else {
            self.size
        }
    }

    /// End of the metadata (tracks, orig_size): the padding starts here.
    #[inline]
    fn meta_end(&self) -> usize {
        let mut off = self.info_end();
        if self.flags.intersects(SLAB_STORE_USER) {
            off += 2 * TRACK_SIZE;
            if self.flags.intersects(SLAB_KMALLOC) {
                off += core::mem::size_of::<usize>();
            }
        }
        off
    }
}

/// `memchr_inv`: the index of the first byte of `b` that is not `value`
/// (a word at a time).
fn memchr_inv(b: &[u8], value: u8) -> Option<usize> {
    let word = u64::from_ne_bytes([value; 8]);
    let p = b.as_ptr();
    let mut i = p.align_offset(8).min(b.len());
    if let Some(k) = b[..i].iter().position(|&x| x != value) {
        return Some(k);
    }
    while i + 8 <= b.len() {
        // SAFETY: `i + 8 <= b.len()`: the word lies in `b`, and `p + i` is
        // 8-byte aligned.
        if unsafe { *(p.add(i) as *const u64) } != word {
            break;
        }
        i += 8;
    }
    while i < b.len() {
        if b[i] != value {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The bytes `[p, p + len)`.
///
/// # Safety
/// The range lies inside a slab of the machine.
#[inline]
unsafe fn bytes<'a>(p: *const u8, len: usize) -> &'a [u8] {
    // SAFETY: caller contract.
    unsafe { core::slice::from_raw_parts(p, len) }
}

impl<P: Platform> Kmem<P> {
    // ------------------------------------------------------------------
    // Allocation and free under list_lock
    // ------------------------------------------------------------------

    /// Allocate one object of a debug cache (`alloc_single_from_partial`,
    /// `alloc_single_from_new_slab`).
    pub(crate) fn debug_alloc(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        nid: i32,
        caller: &'static Location<'static>,
    ) -> Option<*mut u8> {
        let node = if nid >= 0 {
            nid as usize
        } else {
            self.numa_node_id()
        };
        for i in 0..self.nr_nodes {
            let n = s.node((node + i) % self.nr_nodes);
            let mut nl = n.list_lock.lock(&self.platform);
            loop {
                let h = ptr::addr_of_mut!(nl.partial);
                // SAFETY: list under list_lock.
                let Some(l) = (unsafe { ListHead::first(h) }) else {
                    break;
                };
                let slab = lru_to_page(l);
                // SAFETY: a partial slab of `s` under its node lock. When no object
                // comes out, the slab has left the partial list, so this ends.
                if let Some(obj) = unsafe { self.debug_take_object(s, &mut nl, slab, caller) } {
                    return Some(obj);
                }
            }
            if nid >= 0 {
                break;
            }
        }
        let slab = self.new_slab_public(s, gfp, nid)?;
        let n = s.node(self.slab_nid(slab));
        let mut nl = n.list_lock.lock(&self.platform);
        // SAFETY: a new slab of `s`; put it on the partial list and take one object.
        unsafe {
            Self::add_partial(&mut nl, slab, false);
            self.debug_take_object(s, &mut nl, slab, caller)
        }
    }

    /// Pop one object from a partial slab under its node lock. `None` means
    /// the slab had no usable object; it has then been moved to the full list.
    ///
    /// # Safety
    /// `slab` is on `nl`'s partial list.
    unsafe fn debug_take_object(
        &self,
        s: &KmemCache,
        nl: &mut NodeLists,
        slab: *mut Page,
        caller: &'static Location<'static>,
    ) -> Option<*mut u8> {
        // SAFETY: caller contract: the slab is stable under the list lock.
        let d = unsafe { slab_fl(slab) };
        let (fl, cnt) = d.load();
        let c = Counters(cnt);
        let obj = fl as *mut u8;
        let mut ok = fl != 0;
        if ok && !self.check_valid_pointer(s, slab, obj) {
            // Reading a free pointer through it could fault: always checked.
            self.object_err(s, slab, obj, "Freelist Pointer check fails");
            self.mark_all_used(s, slab);
            ok = false;
        }
        if ok {
            // SAFETY: `obj` is a valid object address of this slab.
            let next = unsafe { s.get_freepointer(obj) } as usize;
            d.lo.store(next, Release);
            d.hi.store(c.with_inuse(c.inuse() + 1).0, Release);
            // SAFETY: the object is ours now.
            ok = unsafe { self.debug_alloc_checks(s, slab, obj, caller) };
        }
        let c = Counters(d.hi.load(Acquire));
        if !ok || c.inuse() >= c.objects() || d.lo.load(Acquire) == 0 {
            // Full (or given up on): to the full list.
            // SAFETY: on the partial list, under the lock.
            unsafe {
                Self::remove_partial(nl, slab);
                ListHead::add(ptr::addr_of_mut!((*slab).lru), ptr::addr_of_mut!(nl.full));
            }
        }
        ok.then_some(obj)
    }

    /// Free one object of a debug cache (`free_to_partial_list`).
    ///
    /// # Safety
    /// `slab` is the slab page holding `obj`; `s` is its cache.
    pub(crate) unsafe fn debug_free(
        &self,
        s: &KmemCache,
        slab: *mut Page,
        obj: *mut u8,
        caller: &'static Location<'static>,
    ) {
        let n = s.node(self.slab_nid(slab));
        let mut nl = n.list_lock.lock(&self.platform);
        // SAFETY: checks under the list lock.
        if !unsafe { self.debug_free_checks(s, slab, obj, caller) } {
            return;
        }
        // SAFETY: the slab is stable under its list lock.
        let d = unsafe { slab_fl(slab) };
        let (fl, cnt) = d.load();
        // SAFETY: the object is being freed by its owner.
        unsafe { s.set_freepointer(obj, fl as *mut u8) };
        let c = Counters(cnt);
        let nc = c.with_inuse(c.inuse() - 1);
        d.lo.store(obj as usize, Release);
        d.hi.store(nc.0, Release);
        // SAFETY: list moves under the lock; a debug slab is always on one of
        // the node's lists.
        unsafe {
            if !(*slab).test(PG_SLAB_NODE_PARTIAL) {
                // Was full: from the full list to the partial list.
                ListHead::del(ptr::addr_of_mut!((*slab).lru));
                Self::add_partial(&mut nl, slab, true);
            }
            if nc.inuse() == 0 && nl.nr_partial >= s.min_partial {
                Self::remove_partial(&mut nl, slab);
                drop(nl);
                self.discard_slab(s, slab);
            }
        }
    }

    /// `setup_slab_debug` + `setup_object_debug`: initialise an object of a
    /// new debug slab (padding, red zones, poison, tracks).
    ///
    /// # Safety
    /// `obj` is an object of a slab being set up, owned by the caller.
    pub(crate) unsafe fn debug_setup_object(&self, s: &KmemCache, obj: *mut u8) {
        let start = obj.wrapping_sub(s.red_left_pad);
        if s.flags.intersects(SLAB_POISON) {
            // The kernel poisons the whole slab first; we do it object by
            // object, and the slab's tail with the first object.
            // SAFETY: the object's stride lies in the new slab.
            unsafe { ptr::write_bytes(start, POISON_INUSE, s.size) };
            if let Some(slab) = self.virt_to_slab(obj) {
                let slab = slab.as_ptr();
                let base = self.slab_base(slab);
                if start == base {
                    let len = self.slab_bytes(slab);
                    let used = len / s.size * s.size;
                    // SAFETY: the tail of the new slab.
                    unsafe { ptr::write_bytes(base.add(used), POISON_INUSE, len - used) };
                }
            }
        }
        if s.flags.intersects(SLAB_STORE_USER | SLAB_RED_ZONE) || s.object_poison() {
            // SAFETY: forwarded.
            unsafe { self.init_object(s, obj, SLUB_RED_INACTIVE) };
        }
        if s.flags.intersects(SLAB_STORE_USER) {
            // SAFETY: the tracks lie in the object's stride.
            unsafe { ptr::write_bytes(obj.add(s.info_end()), 0, 2 * TRACK_SIZE) };
        }
        if self.want_init_on_free(s) {
            // Under init_on_free the kernel's page allocator hands out pages
            // wiped when they were freed; ours does not, so wipe here: what
            // the slab's previous life left must not show through.
            // SAFETY: the object is ours.
            unsafe { ptr::write_bytes(obj, 0, s.object_size) };
        }
    }

    /// Checks when a slab of a debug cache is freed (`__free_slab` with
    /// consistency checks): slab padding and every (free) object.
    ///
    /// # Safety
    /// `slab` is an empty slab of `s` being discarded.
    pub(crate) unsafe fn debug_discard_slab(&self, s: &KmemCache, slab: *mut Page) {
        if !s.flags.intersects(SLAB_CONSISTENCY_CHECKS) {
            return;
        }
        self.slab_pad_check(s, slab);
        let base = self.slab_base(slab);
        // SAFETY: caller contract: a slab head page.
        let objects = Counters(unsafe { slab_fl(slab) }.hi.load(Acquire)).objects();
        for i in 0..objects {
            // SAFETY: objects of the slab being discarded.
            unsafe { self.check_object(s, slab, s.object_at(base, i), SLUB_RED_INACTIVE) };
        }
    }

    /// `alloc_debug_processing`: checks and bookkeeping when an object is
    /// handed out. False: the slab is corrupt and was marked all used.
    ///
    /// # Safety
    /// `obj` was just taken from `slab` under the node lock.
    pub(crate) unsafe fn debug_alloc_checks(
        &self,
        s: &KmemCache,
        slab: *mut Page,
        obj: *mut u8,
        caller: &'static Location<'static>,
    ) -> bool {
        if s.flags.intersects(SLAB_CONSISTENCY_CHECKS)
            // SAFETY: forwarded.
            && !(self.check_slab(s, slab) && unsafe { self.check_object(s, slab, obj, SLUB_RED_INACTIVE) })
        {
            self.mark_all_used(s, slab);
            return false;
        }
        self.trace(s, slab, obj, true);
        // SAFETY: the object is ours.
        unsafe {
            self.write_orig_size(s, obj, s.object_size);
            self.init_object(s, obj, SLUB_RED_ACTIVE);
            if s.flags.intersects(SLAB_STORE_USER) {
                self.set_track(s, obj, TrackItem::Alloc, caller);
            }
            if self.want_init_on_free(s) && !s.freeptr_outside_object() {
                // maybe_wipe_obj_freeptr: the object was wiped at free, but for this word.
                ptr::write_bytes(obj.add(s.offset), 0, core::mem::size_of::<usize>());
            }
        }
        true
    }

    /// `free_debug_processing`: checks before an object is freed; false means
    /// "do not free" (reported, the object is leaked). On success the object
    /// is poisoned, its red zones inactive and its free track recorded.
    ///
    /// # Safety
    /// `slab` is the slab page holding `obj`; the node lock is held.
    pub(crate) unsafe fn debug_free_checks(
        &self,
        s: &KmemCache,
        slab: *mut Page,
        obj: *mut u8,
        caller: &'static Location<'static>,
    ) -> bool {
        let checks = s.flags.intersects(SLAB_CONSISTENCY_CHECKS);
        // SAFETY: forwarded; the slab is stable under the list lock.
        let ok = unsafe { self.free_consistency_checks(s, slab, obj, checks) };
        if !ok {
            self.slab_fix(s, format_args!("Object at 0x{:016x} not freed", obj as usize));
            return false;
        }
        // SAFETY: a valid, allocated object of the slab, being freed by its owner.
        unsafe {
            if s.flags.intersects(SLAB_STORE_USER) {
                self.set_track(s, obj, TrackItem::Free, caller);
            }
            self.trace(s, slab, obj, false);
            if self.want_init_on_free(s) {
                let len = self.read_orig_size(s, obj);
                ptr::write_bytes(obj, 0, len);
            }
            self.init_object(s, obj, SLUB_RED_INACTIVE);
        }
        true
    }

    /// `free_consistency_checks` (pointer and double-free checks always).
    ///
    /// # Safety
    /// As `debug_free_checks`.
    unsafe fn free_consistency_checks(
        &self,
        s: &KmemCache,
        slab: *mut Page,
        obj: *mut u8,
        full: bool,
    ) -> bool {
        if full && !self.check_slab(s, slab) {
            return false;
        }
        if !self.check_valid_pointer(s, slab, obj) {
            self.slab_err(
                s,
                slab,
                format_args!("Invalid object pointer 0x{:016x}", obj as usize),
            );
            return false;
        }
        if self.on_freelist(s, slab, obj) {
            self.object_err(s, slab, obj, "Object already free");
            return false;
        }
        // SAFETY: the slab is stable under the list lock.
        let inuse = Counters(unsafe { slab_fl(slab) }.hi.load(Acquire)).inuse();
        if inuse == 0 {
            self.slab_err(
                s,
                slab,
                format_args!("Slab has {inuse} allocated objects but 1 are to be freed"),
            );
            return false;
        }
        // SAFETY: a valid object of the slab.
        !full || unsafe { self.check_object(s, slab, obj, SLUB_RED_ACTIVE) }
    }

    // ------------------------------------------------------------------
    // kmalloc's requested size
    // ------------------------------------------------------------------

    /// `kmalloc_trace` (`__kmalloc_cache_noprof`): allocate from a cache for
    /// a request of `size` bytes. Caches with `SLAB_KMALLOC | SLAB_STORE_USER
    /// | SLAB_RED_ZONE` remember the size and red-zone the bytes between it
    /// and `object_size` ("kmalloc Redzone"); other caches behave as
    /// `kmem_cache_alloc`.
    ///
    /// # Safety
    /// `s` is a live cache of this machine (created, not destroyed).
    #[track_caller]
    pub unsafe fn kmem_cache_alloc_trace(
        &self,
        s: NonNull<KmemCache>,
        gfp: Gfp,
        size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: a live cache of this machine (created and not destroyed).
        let p = unsafe { self.kmem_cache_alloc(s, gfp) }?;
        // SAFETY: the caller holds a live cache; the object is ours.
        unsafe {
            let c = s.as_ref();
            let zeroed = gfp.intersects(__GFP_ZERO) || self.debug_want_init_on_alloc(c);
            self.debug_set_orig_size(c, p.as_ptr(), size, zeroed);
        }
        Ok(p)
    }

    /// Record the size a kmalloc caller asked for (`set_orig_size`) in an
    /// object just allocated from `s`, and red-zone the slack after it, as
    /// `alloc_debug_processing` does when it knows the size. `zeroed`: the
    /// object was zeroed after allocation (`__GFP_ZERO`, `init_on_alloc`).
    /// For the kmalloc layer; no-op unless the cache tracks sizes.
    ///
    /// # Safety
    /// `obj` was just allocated from `s` by the caller.
    pub(crate) unsafe fn debug_set_orig_size(&self, s: &KmemCache, obj: *mut u8, size: usize, zeroed: bool) {
        if !s.debug_orig_size() || size == 0 || size >= s.object_size {
            return;
        }
        // SAFETY: caller contract: the object and its metadata are ours.
        unsafe {
            self.write_orig_size(s, obj, size);
            if s.flags.intersects(SLAB_RED_ZONE) {
                if s.object_poison() && !zeroed {
                    *obj.add(size - 1) = POISON_END;
                }
                ptr::write_bytes(obj.add(size), SLUB_RED_ACTIVE, s.object_size - size);
            }
        }
    }

    /// `skip_orig_size_check`: the caller may use the whole object (`ksize`,
    /// `krealloc` in place): stop checking the kmalloc red zone.
    ///
    /// # Safety
    /// `obj` is an allocated object of `s` owned by the caller.
    pub unsafe fn skip_orig_size_check(&self, s: &KmemCache, obj: *mut u8) {
        // SAFETY: caller contract.
        unsafe { self.write_orig_size(s, obj, s.object_size) };
    }

    /// The size recorded for an allocated object (`get_orig_size`):
    /// `object_size` unless the cache tracks kmalloc sizes.
    ///
    /// # Safety
    /// `obj` is an object of `s`.
    pub unsafe fn kmem_cache_orig_size(&self, s: &KmemCache, obj: *const u8) -> usize {
        // SAFETY: forwarded.
        unsafe { self.read_orig_size(s, obj as *mut u8) }
    }

    /// # Safety
    /// `obj` is an object of `s`.
    unsafe fn read_orig_size(&self, s: &KmemCache, obj: *mut u8) -> usize {
        if !s.debug_orig_size() {
            return s.object_size;
        }
        // SAFETY: the orig_size word lies in the object's metadata.
        let v = unsafe { (obj.add(s.info_end() + 2 * TRACK_SIZE) as *const usize).read_unaligned() };
        v.min(s.object_size)
    }

    /// # Safety
    /// `obj` is an object of `s` owned by the caller.
    unsafe fn write_orig_size(&self, s: &KmemCache, obj: *mut u8, size: usize) {
        if s.debug_orig_size() {
            // SAFETY: the orig_size word lies in the object's metadata.
            unsafe { (obj.add(s.info_end() + 2 * TRACK_SIZE) as *mut usize).write_unaligned(size) };
        }
    }

    /// `slab_want_init_on_free`.
    fn want_init_on_free(&self, s: &KmemCache) -> bool {
        self.params.init_on_free == Some(true)
            && matches!(s.ctor, CtorKind::None)
            && !s.flags.intersects(SLAB_TYPESAFE_BY_RCU | SLAB_POISON)
    }

    /// `slab_want_init_on_alloc` without `__GFP_ZERO`.
    pub(crate) fn debug_want_init_on_alloc(&self, s: &KmemCache) -> bool {
        self.params.init_on_alloc == Some(true)
            && matches!(s.ctor, CtorKind::None)
            && !s.flags.intersects(SLAB_TYPESAFE_BY_RCU | SLAB_POISON)
    }

    // ------------------------------------------------------------------
    // Object state
    // ------------------------------------------------------------------

    /// `init_object`: red zones to `val`, poison the body of free objects
    /// (of allocated ones too: they were poisoned when freed).
    ///
    /// # Safety
    /// `obj` is an object of `s` owned by the caller.
    unsafe fn init_object(&self, s: &KmemCache, obj: *mut u8, val: u8) {
        let mut poison_size = s.object_size;
        // SAFETY: every range lies in the object's stride.
        unsafe {
            if s.flags.intersects(SLAB_RED_ZONE) {
                ptr::write_bytes(obj.sub(s.red_left_pad), val, s.red_left_pad);
                if s.debug_orig_size() && val == SLUB_RED_ACTIVE {
                    poison_size = self.read_orig_size(s, obj).max(1);
                }
            }
            if s.object_poison() {
                ptr::write_bytes(obj, POISON_FREE, poison_size - 1);
                *obj.add(poison_size - 1) = POISON_END;
            }
            if s.flags.intersects(SLAB_RED_ZONE) {
                ptr::write_bytes(obj.add(poison_size), val, s.inuse - poison_size);
            }
        }
    }

    /// `set_track`.
    ///
    /// # Safety
    /// `obj` is an object of a `SLAB_STORE_USER` cache, owned by the caller.
    unsafe fn set_track(
        &self,
        s: &KmemCache,
        obj: *mut u8,
        item: TrackItem,
        caller: &'static Location<'static>,
    ) {
        let ip = self.platform.caller_ip();
        let (addr, flag) = if ip != 0 {
            (ip, TRACK_IP)
        } else {
            (caller as *const Location<'static> as usize, 0)
        };
        let mut t = Track {
            addr,
            when: self.platform.now_ns(),
            cpu: self.platform.smp_processor_id() as u32 | flag,
            pid: self.platform.current_pid(),
            seal: 0,
        };
        t.seal = t.seal();
        // SAFETY: the track lies in the object's metadata.
        unsafe { (obj.add(s.info_end() + item as usize * TRACK_SIZE) as *mut Track).write_unaligned(t) };
    }

    /// # Safety
    /// `obj` is an object of a `SLAB_STORE_USER` cache.
    unsafe fn get_track(&self, s: &KmemCache, obj: *const u8, item: TrackItem) -> Track {
        // SAFETY: the track lies in the object's metadata.
        unsafe { (obj.add(s.info_end() + item as usize * TRACK_SIZE) as *const Track).read_unaligned() }
    }

    /// `check_valid_pointer`: null, or an object boundary of this slab.
    fn check_valid_pointer(&self, s: &KmemCache, slab: *mut Page, obj: *const u8) -> bool {
        if obj.is_null() {
            return true;
        }
        let base = self.slab_base(slab) as usize;
        // SAFETY: the counters of a slab head page.
        let objects = Counters(unsafe { slab_fl(slab) }.hi.load(Acquire)).objects();
        let p = (obj as usize).wrapping_sub(s.red_left_pad);
        p >= base && p < base + objects * s.size && (p - base).is_multiple_of(s.size)
    }

    /// Update a slab's (freelist, counters) from a fix-up.
    fn set_slab_state(
        &self,
        slab: *mut Page,
        fl: Option<usize>,
        inuse: Option<usize>,
        objects: Option<usize>,
    ) {
        // SAFETY: the slab head page's pair; a cmpxchg keeps racing remote
        // frees (non-debug caches) intact.
        let d = unsafe { slab_fl(slab) };
        loop {
            let (ofl, ocnt) = d.load();
            let c = Counters(ocnt);
            let objs = objects.unwrap_or(c.objects());
            let nc = Counters::new(inuse.unwrap_or(c.inuse()), objs, c.frozen());
            if d.cas((ofl, ocnt), (fl.unwrap_or(ofl), nc.0)) {
                return;
            }
        }
    }

    /// The slab is corrupt: hand out none of its objects any more.
    fn mark_all_used(&self, s: &KmemCache, slab: *mut Page) {
        self.slab_fix(s, format_args!("Marking all objects used"));
        // SAFETY: the counters of a slab head page.
        let objects = Counters(unsafe { slab_fl(slab) }.hi.load(Acquire)).objects();
        self.set_slab_state(slab, Some(0), Some(objects), None);
    }

    // ------------------------------------------------------------------
    // Checks
    // ------------------------------------------------------------------

    /// `check_bytes_and_report`: are `[start, start + len)` all `value`? If
    /// not, report the damaged range (with the object the first time, when
    /// `print_obj`), restore it and return false.
    ///
    /// # Safety
    /// The range lies in `slab`; `obj` is an object of it.
    #[allow(clippy::too_many_arguments)]
    unsafe fn check_bytes_and_report(
        &self,
        s: &KmemCache,
        slab: *mut Page,
        obj: *mut u8,
        what: &str,
        start: *mut u8,
        value: u8,
        len: usize,
        print_obj: bool,
    ) -> bool {
        // SAFETY: caller contract.
        let b = unsafe { bytes(start, len) };
        let Some(first) = memchr_inv(b, value) else {
            return true;
        };
        let last = b.iter().rposition(|&x| x != value).unwrap_or(first);
        let fault = start as usize + first;
        let end = start as usize + last + 1;
        let base = self.slab_base(slab) as usize;
        self.count_error(s);
        crate::pr!(
            self,
            "[{} overwritten] 0x{:016x}-0x{:016x} @offset={}. First byte 0x{:x} instead of 0x{:x}",
            what,
            fault,
            end - 1,
            fault - base,
            b[first],
            value
        );
        if print_obj {
            self.object_report(s, slab, obj, "Object corrupt");
        }
        // restore_bytes
        self.slab_fix(
            s,
            format_args!(
                "Restoring {} 0x{:016x}-0x{:016x}=0x{:x}",
                what,
                fault,
                end - 1,
                value
            ),
        );
        // SAFETY: inside the checked range.
        unsafe { ptr::write_bytes(fault as *mut u8, value, end - fault) };
        false
    }

    /// `check_pad_bytes`: the padding after the metadata reads 0x5a.
    ///
    /// # Safety
    /// `obj` is an object of `slab`.
    unsafe fn check_pad_bytes(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8, print_obj: bool) -> bool {
        let off = s.meta_end();
        let end = s.size_from_object();
        if off >= end {
            return true;
        }
        // SAFETY: the padding lies in the object's stride.
        unsafe {
            self.check_bytes_and_report(
                s,
                slab,
                obj,
                "Object padding",
                obj.add(off),
                POISON_INUSE,
                end - off,
                print_obj,
            )
        }
    }

    /// `slab_pad_check`: the bytes after the last object read 0x5a.
    fn slab_pad_check(&self, s: &KmemCache, slab: *mut Page) {
        if !s.flags.intersects(SLAB_POISON) {
            return;
        }
        let base = self.slab_base(slab);
        let len = self.slab_bytes(slab);
        let rem = len % s.size;
        if rem == 0 {
            return;
        }
        // SAFETY: the slab's tail.
        let pad = unsafe { base.add(len - rem) };
        // SAFETY: as above.
        let b = unsafe { bytes(pad, rem) };
        let Some(first) = memchr_inv(b, POISON_INUSE) else {
            return;
        };
        let last = b.iter().rposition(|&x| x != POISON_INUSE).unwrap_or(first);
        let fault = pad as usize + first;
        let end = pad as usize + last + 1;
        self.count_error(s);
        self.slab_bug(
            s,
            format_args!(
                "Padding overwritten. 0x{:016x}-0x{:016x} @offset={}",
                fault,
                end - 1,
                fault - base as usize
            ),
        );
        self.print_section("Padding ", pad, rem);
        self.print_slab_info(slab);
        self.platform.dump_stack();
        self.slab_fix(
            s,
            format_args!(
                "Restoring slab padding 0x{:016x}-0x{:016x}=0x{:x}",
                fault,
                end - 1,
                POISON_INUSE
            ),
        );
        // SAFETY: inside the slab's tail.
        unsafe { ptr::write_bytes(fault as *mut u8, POISON_INUSE, end - fault) };
    }

    /// `check_object`: red zones (`val`: active or inactive), poison of free
    /// objects, padding, and the free pointer. Damage is reported and
    /// repaired; returns false if any was found.
    ///
    /// # Safety
    /// `obj` is an object of `slab` of `s`, stable under the caller's lock.
    unsafe fn check_object(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8, val: u8) -> bool {
        let mut ok = true;
        // SAFETY: all ranges lie in the object's stride.
        unsafe {
            let endobj = obj.add(s.object_size);
            if s.flags.intersects(SLAB_RED_ZONE) {
                let left = obj.sub(s.red_left_pad);
                ok &=
                    self.check_bytes_and_report(s, slab, obj, "Left Redzone", left, val, s.red_left_pad, ok);
                let rlen = s.inuse - s.object_size;
                ok &= self.check_bytes_and_report(s, slab, obj, "Right Redzone", endobj, val, rlen, ok);
                if s.debug_orig_size() && val == SLUB_RED_ACTIVE {
                    let orig = self.read_orig_size(s, obj);
                    if s.object_size > orig {
                        let (p, n) = (obj.add(orig), s.object_size - orig);
                        ok &= self.check_bytes_and_report(s, slab, obj, "kmalloc Redzone", p, val, n, ok);
                    }
                }
            } else if s.flags.intersects(SLAB_POISON) && s.object_size < s.inuse {
                let n = s.inuse - s.object_size;
                ok &= self.check_bytes_and_report(
                    s,
                    slab,
                    obj,
                    "Alignment padding",
                    endobj,
                    POISON_INUSE,
                    n,
                    ok,
                );
            }
            if s.flags.intersects(SLAB_POISON) {
                if val != SLUB_RED_ACTIVE && s.object_poison() {
                    let n = s.object_size - 1;
                    ok &= self.check_bytes_and_report(s, slab, obj, "Poison", obj, POISON_FREE, n, ok);
                    let e = obj.add(n);
                    ok &= self.check_bytes_and_report(s, slab, obj, "End Poison", e, POISON_END, 1, ok);
                }
                ok &= self.check_pad_bytes(s, slab, obj, ok);
            }
            // The free pointer of an allocated object may be its data.
            if (s.freeptr_outside_object() || val != SLUB_RED_ACTIVE)
                && !self.check_valid_pointer(s, slab, s.get_freepointer(obj))
            {
                self.object_err(s, slab, obj, "Freepointer corrupt");
                // No choice but to zap it, losing the rest of the freelist.
                s.set_freepointer(obj, ptr::null_mut());
                ok = false;
            }
        }
        ok
    }

    /// `check_slab`: counters within bounds, slab padding intact.
    fn check_slab(&self, s: &KmemCache, slab: *mut Page) -> bool {
        // SAFETY: a slab head page.
        if !unsafe { (*slab).is_slab() } {
            self.slab_err(s, slab, format_args!("Not a valid slab page"));
            return false;
        }
        let maxobj = (self.slab_bytes(slab) / s.size).min(MAX_OBJS_PER_PAGE);
        // SAFETY: as above.
        let c = Counters(unsafe { slab_fl(slab) }.hi.load(Acquire));
        if c.objects() > maxobj {
            self.slab_err(s, slab, format_args!("objects {} > max {}", c.objects(), maxobj));
            return false;
        }
        if c.inuse() > c.objects() {
            self.slab_err(s, slab, format_args!("inuse {} > max {}", c.inuse(), c.objects()));
            return false;
        }
        self.slab_pad_check(s, slab);
        true
    }

    /// `on_freelist`: is `search` on the slab's freelist? Walking it also
    /// checks the chain and the counters, repairing them (with `search`
    /// null this is the validation walk; it returns false if the freelist
    /// had to be cleared).
    fn on_freelist(&self, s: &KmemCache, slab: *mut Page, search: *mut u8) -> bool {
        // SAFETY: a slab head page, stable under the caller's lock.
        let (head, cnt) = unsafe { slab_fl(slab) }.load();
        let objects = Counters(cnt).objects();
        let mut fp = head as *mut u8;
        let mut object: *mut u8 = ptr::null_mut();
        let mut nr = 0;
        while !fp.is_null() && nr <= objects {
            if fp == search {
                return true;
            }
            if !self.check_valid_pointer(s, slab, fp) {
                if !object.is_null() {
                    self.object_err(s, slab, object, "Freechain corrupt");
                    // SAFETY: `object` is a free object of the slab.
                    unsafe { s.set_freepointer(object, ptr::null_mut()) };
                    break;
                }
                self.slab_err(s, slab, format_args!("Freepointer corrupt"));
                self.set_slab_state(slab, Some(0), Some(objects), None);
                self.slab_fix(s, format_args!("Freelist cleared"));
                return false;
            }
            object = fp;
            // SAFETY: a valid object of the slab.
            fp = unsafe { s.get_freepointer(object) };
            nr += 1;
        }
        if nr > objects {
            self.slab_err(s, slab, format_args!("Freelist cycle detected"));
            self.set_slab_state(slab, Some(0), Some(objects), None);
            self.slab_fix(s, format_args!("Freelist cleared"));
            return false;
        }
        let max = (self.slab_bytes(slab) / s.size).min(MAX_OBJS_PER_PAGE);
        let mut objects = objects;
        if objects != max {
            self.slab_err(
                s,
                slab,
                format_args!("Wrong number of objects. Found {objects} but should be {max}"),
            );
            self.set_slab_state(slab, None, None, Some(max));
            self.slab_fix(s, format_args!("Number of objects adjusted"));
            objects = max;
        }
        // SAFETY: as above.
        let inuse = Counters(unsafe { slab_fl(slab) }.hi.load(Acquire)).inuse();
        if inuse != objects.saturating_sub(nr) {
            self.slab_err(
                s,
                slab,
                format_args!(
                    "Wrong object count. Counter is {} but counted were {}",
                    inuse,
                    objects.saturating_sub(nr)
                ),
            );
            self.set_slab_state(slab, None, Some(objects.saturating_sub(nr)), None);
            self.slab_fix(s, format_args!("Object count adjusted"));
        }
        search.is_null()
    }

    /// `SLAB_TRACE`: log every allocation and free.
    fn trace(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8, alloc: bool) {
        if !s.flags.intersects(SLAB_TRACE) {
            return;
        }
        // SAFETY: a slab head page.
        let (fl, cnt) = unsafe { slab_fl(slab) }.load();
        crate::pr!(
            self,
            "TRACE {} {} 0x{:016x} inuse={} fp=0x{:016x}",
            s.name(),
            if alloc { "alloc" } else { "free" },
            obj as usize,
            Counters(cnt).inuse(),
            fl
        );
        if !alloc {
            self.print_section("Object ", obj, s.object_size);
        }
        self.platform.dump_stack();
    }

    // ------------------------------------------------------------------
    // Reports
    // ------------------------------------------------------------------

    /// One more error report or fix (the slub_kunit `slab_errors` counter).
    fn count_error(&self, s: &KmemCache) {
        self.slab.errors.fetch_add(1, Relaxed);
        s.errors.fetch_add(1, Relaxed);
    }

    /// `slab_bug`: the BUG header, not counted by itself.
    fn slab_bug(&self, s: &KmemCache, args: core::fmt::Arguments<'_>) {
        crate::pr!(
            self,
            "============================================================================="
        );
        crate::pr!(self, "BUG {} (Tainted: G    B             ): {}", s.name(), args);
        crate::pr!(
            self,
            "-----------------------------------------------------------------------------"
        );
        crate::pr!(self, "");
    }

    /// `slab_fix`: a repair line (counted).
    fn slab_fix(&self, s: &KmemCache, args: core::fmt::Arguments<'_>) {
        self.count_error(s);
        crate::pr!(self, "FIX {}: {}", s.name(), args);
    }

    /// `slab_err`: a report about a whole slab (counted).
    fn slab_err(&self, s: &KmemCache, slab: *mut Page, args: core::fmt::Arguments<'_>) {
        self.count_error(s);
        self.slab_bug(s, args);
        self.print_slab_info(slab);
        self.platform.dump_stack();
    }

    /// `object_err`: a report about one object (counted).
    fn object_err(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8, reason: &str) {
        self.count_error(s);
        self.object_report(s, slab, obj, reason);
    }

    /// The text of `object_err`.
    fn object_report(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8, reason: &str) {
        self.slab_bug(s, format_args!("{reason}"));
        if obj.is_null() || !self.check_valid_pointer(s, slab, obj) {
            self.print_slab_info(slab);
            crate::pr!(self, "Invalid pointer 0x{:016x}", obj as usize);
        } else {
            self.print_trailer(s, slab, obj);
        }
        self.platform.dump_stack();
    }

    /// `print_slab_info`.
    fn print_slab_info(&self, slab: *mut Page) {
        // SAFETY: a slab head page.
        let (fl, cnt) = unsafe { slab_fl(slab) }.load();
        let c = Counters(cnt);
        // SAFETY: as above.
        let flags = unsafe { (*slab).flags.load(Relaxed) };
        crate::pr!(
            self,
            "Slab 0x{:016x} objects={} used={} fp=0x{:016x} flags={:#x}",
            slab as usize,
            c.objects(),
            c.inuse(),
            fl,
            flags
        );
    }

    /// `print_tracking`: the alloc and free tracks of an object, if any.
    pub(crate) fn print_tracking(&self, s: &KmemCache, obj: *const u8) {
        if !s.flags.intersects(SLAB_STORE_USER) {
            return;
        }
        let now = self.platform.now_ns();
        for (what, item) in [("Allocated", TrackItem::Alloc), ("Freed", TrackItem::Free)] {
            // SAFETY: `obj` is an object of a STORE_USER cache.
            let t = unsafe { self.get_track(s, obj, item) };
            if t.addr == 0 {
                continue;
            }
            let Some(caller) = t.caller() else {
                crate::pr!(self, "{} in 0x{:016x} (track corrupt)", what, t.addr);
                continue;
            };
            let at = CallerDisplay(&self.platform, caller);
            crate::pr!(
                self,
                "{} in {} age={} cpu={} pid={}",
                what,
                at,
                now.saturating_sub(t.when) / 1_000_000,
                t.cpu & !TRACK_IP,
                t.pid
            );
        }
    }

    /// `print_trailer`: tracks, slab, object line and hex dumps.
    fn print_trailer(&self, s: &KmemCache, slab: *mut Page, p: *mut u8) {
        let base = self.slab_base(slab);
        self.print_tracking(s, p);
        self.print_slab_info(slab);
        // SAFETY: `p` is a valid object of the slab.
        let fp = unsafe { s.get_freepointer(p) };
        crate::pr!(
            self,
            "Object 0x{:016x} @offset={} fp=0x{:016x}",
            p as usize,
            p as usize - base as usize,
            fp as usize
        );
        crate::pr!(self, "");
        // SAFETY: all ranges lie in the object's stride or the slab.
        unsafe {
            if s.flags.intersects(SLAB_RED_ZONE) {
                self.print_section("Redzone  ", p.sub(s.red_left_pad), s.red_left_pad);
            } else if p as usize > base as usize + 16 {
                self.print_section("Bytes b4 ", p.sub(16), 16);
            }
            self.print_section("Object   ", p, s.object_size.min(PAGE_SIZE));
            if s.flags.intersects(SLAB_RED_ZONE) {
                self.print_section("Redzone  ", p.add(s.object_size), s.inuse - s.object_size);
            }
            let off = s.meta_end();
            if off < s.size_from_object() {
                self.print_section("Padding  ", p.add(off), s.size_from_object() - off);
            }
        }
    }

    /// `print_section`: a hex dump, 16 bytes a line (`print_hex_dump` with
    /// `DUMP_PREFIX_ADDRESS`, ASCII column).
    fn print_section(&self, text: &str, addr: *const u8, len: usize) {
        let mut off = 0;
        while off < len {
            let n = (len - off).min(16);
            // SAFETY: callers pass ranges inside a slab.
            let row = unsafe { bytes(addr.add(off), n) };
            let mut hex = crate::printk::FixedBuf::<64>::new();
            let mut asc = crate::printk::FixedBuf::<20>::new();
            for (i, &b) in row.iter().enumerate() {
                let _ = write!(hex, "{}{:02x}", if i == 0 { "" } else { " " }, b);
                let ch = if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                };
                let _ = write!(asc, "{ch}");
            }
            crate::pr!(
                self,
                "{}{:016x}: {:<47}  {}",
                text,
                addr as usize + off,
                hex.as_str(),
                asc.as_str()
            );
            off += n;
        }
    }

    // ------------------------------------------------------------------
    // validate
    // ------------------------------------------------------------------

    /// `validate_slab_cache` (the sysfs `validate` file): flush the CPUs,
    /// then check every slab on the node lists — partial, and full for
    /// debug caches: the counters, the freelist, every free object (red
    /// zones inactive, poison, free pointer) and every allocated object (red
    /// zones active). Damage is reported and repaired. Returns the number of
    /// errors added to `slab.errors`.
    ///
    /// Exact when nothing else uses the cache meanwhile: remote frees to
    /// slabs of non-debug caches do not take `list_lock`.
    ///
    /// # Safety
    /// `s` is a live cache of this machine (created, not destroyed).
    pub unsafe fn kmem_cache_validate(&self, s: NonNull<KmemCache>) -> usize {
        // SAFETY: the caller holds a live cache.
        let c = unsafe { s.as_ref() };
        let before = self.slab.errors.load(Relaxed);
        self.flush_all(c);
        let mut map: ObjMap = [0; MAX_OBJS_PER_PAGE.div_ceil(64)];
        for nid in 0..self.nr_nodes {
            self.validate_slab_node(c, nid, &mut map);
        }
        self.slab.errors.load(Relaxed) - before
    }

    fn validate_slab_node(&self, s: &KmemCache, nid: usize, map: &mut ObjMap) {
        let n = s.node(nid);
        let nl = n.list_lock.lock(&self.platform);
        let mut count = 0;
        let h = ptr::addr_of!(nl.partial) as *mut ListHead;
        // SAFETY: walked under list_lock; validation does not move slabs.
        unsafe {
            let mut l = (*h).next;
            while !ptr::eq(l, h) {
                self.validate_slab(s, lru_to_page(l), map);
                count += 1;
                l = (*l).next;
            }
        }
        if count != nl.nr_partial {
            crate::pr!(
                self,
                "SLUB {}: {} partial slabs counted but counter={}",
                s.name(),
                count,
                nl.nr_partial
            );
        }
        if !s.debug() {
            return;
        }
        let h = ptr::addr_of!(nl.full) as *mut ListHead;
        // SAFETY: as above.
        unsafe {
            let mut l = (*h).next;
            while !ptr::eq(l, h) {
                self.validate_slab(s, lru_to_page(l), map);
                count += 1;
                l = (*l).next;
            }
        }
        let nr = n.nr_slabs.load(Relaxed);
        if count != nr {
            crate::pr!(
                self,
                "SLUB: {} {} slabs counted but counter={}",
                s.name(),
                count,
                nr
            );
        }
    }

    /// `validate_slab`.
    fn validate_slab(&self, s: &KmemCache, slab: *mut Page, map: &mut ObjMap) {
        if !self.check_slab(s, slab) || !self.on_freelist(s, slab, ptr::null_mut()) {
            return;
        }
        let base = self.slab_base(slab);
        // SAFETY: a slab head page under list_lock.
        let (fl, cnt) = unsafe { slab_fl(slab) }.load();
        let objects = Counters(cnt).objects().min(MAX_OBJS_PER_PAGE);
        map.fill(0);
        let mut p = fl as *mut u8;
        let mut guard = 0;
        while !p.is_null() && guard < objects {
            let idx = (p as usize - base as usize - s.red_left_pad) / s.size;
            map[idx / 64] |= 1 << (idx % 64);
            // SAFETY: on_freelist checked the chain.
            p = unsafe { s.get_freepointer(p) };
            guard += 1;
        }
        for i in 0..objects {
            let val = if map[i / 64] & (1 << (i % 64)) != 0 {
                SLUB_RED_INACTIVE
            } else {
                SLUB_RED_ACTIVE
            };
            // SAFETY: an object of the slab, stable under list_lock.
            if !unsafe { self.check_object(s, slab, s.object_at(base, i), val) } {
                break;
            }
        }
    }
}
