//! vmalloc: virtually contiguous memory from scattered pages (`mm/vmalloc.c`).
//!
//! The machine owns a virtual window `[VMALLOC_START, VMALLOC_END)` handed
//! over by the platform at boot (`BootInfo::vmalloc_window`). An area of it is
//! a [`VmapArea`]; its pages come one by one (order 0, not contiguous) from
//! the page allocator and the platform maps them at consecutive virtual pages
//! (`Platform::map_pages`), as the kernel builds page tables.
//!
//! * **Address space** (`alloc_vmap_area`): free ranges are kept as a list of
//!   `VmapArea` records sorted by address (the kernel uses an augmented
//!   rb-tree; same policy, linear search): lowest-address first fit with
//!   alignment, splitting the chosen free range at its left edge, right edge,
//!   in full or in the middle (a record is preloaded for that case). Freed
//!   ranges merge with their neighbours (`merge_or_add_vmap_area`).
//! * **Guard page**: every area is one page longer than asked for; the last
//!   page is never mapped. The area size (as `/proc/vmallocinfo` prints it)
//!   includes it.
//! * **Busy areas** are kept sorted by address with their caller
//!   (`#[track_caller]`), flags, page count and page array. The page array
//!   is kmalloc'd, or vmalloc'd when larger than a page (the kernel's
//!   `vpages`).
//! * **Lazy purge**: `vfree` unmaps the area and frees its pages at once, but
//!   the address range only goes back to the free list in batches
//!   (`purge_vmap_area_lazy`), once more than `lazy_max_pages()` =
//!   `fls(nr_cpus) * 32 MiB` worth of pages wait, or when an allocation finds
//!   no room. One TLB flush covers the whole batch. Waiting areas show as
//!   `unpurged vm_area` in `/proc/vmallocinfo`.
//! * **Misuse**: `vfree` of an address vmalloc did not return, or a second
//!   `vfree`, gives the kernel's `WARN "Trying to vfree() nonexistent vm area"`
//!   and changes nothing.
//!
//! `kvmalloc` and friends (`mm/util.c`) try kmalloc first and fall back to
//! vmalloc.
//!
//! ioremap (`ioremap.rs`) takes its areas from the same window with
//! `VM_IOREMAP`, aligned to their size's order (`IOREMAP_MAX_ORDER`); the
//! area records the physical address it maps (`phys=` in vmallocinfo) and
//! owns no pages. `vfree` refuses ioremap areas (only `iounmap` frees them).

use crate::gfp::*;
use crate::machine::{Kmem, MAX_NUMNODES};
use crate::page::{Page, PAGE_SHIFT, PAGE_SIZE};
use crate::platform::Platform;
use crate::spinlock::SpinLock;
use crate::AllocError;
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
/// waiting to be purged. Allocated with kmalloc.
#[repr(C)]
pub struct VmapArea {
    /// First address.
    pub va_start: usize,
    /// One past the last address (the guard page included).
    pub va_end: usize,
    next: *mut VmapArea,
    flags: u32,
    /// Pages owned by the area (freed by `vfree`), printed as `pages=`.
    nr_pages: usize,
    /// Pages mapped (for `vmap`, the caller's pages).
    nr_mapped: usize,
    pages: *mut *mut Page,
    caller: Option<&'static Location<'static>>,
    /// Physical address an ioremap area maps (`vm->phys_addr`), else 0.
    phys_addr: u64,
}

struct VmapInner {
    /// Free ranges, sorted by address, never adjacent.
    free: *mut VmapArea,
    /// Busy areas, sorted by address.
    busy: *mut VmapArea,
    /// Lazily freed areas.
    purge: *mut VmapArea,
    /// Pages of address space waiting in `purge` (`vmap_lazy_nr`).
    lazy_nr: usize,
    /// The record of the whole window at boot (the kernel takes it from
    /// memblock): never kfree'd.
    boot_va: VmapArea,
}

// SAFETY: the raw pointers are records owned by the list, only touched under
// the spinlock that holds this value.
unsafe impl Send for VmapInner {}

/// The vmalloc layer's state in a machine.
pub struct VmallocState {
    inner: SpinLock<VmapInner>,
    start: AtomicUsize,
    end: AtomicUsize,
    nr_vmalloc_pages: AtomicUsize,
    lazy_max: AtomicUsize,
}

impl Default for VmallocState {
    fn default() -> Self {
        Self::new()
    }
}

impl VmallocState {
    /// An empty state (no window: every vmalloc fails).
    pub const fn new() -> Self {
        Self {
            inner: SpinLock::new(VmapInner {
                free: ptr::null_mut(),
                busy: ptr::null_mut(),
                purge: ptr::null_mut(),
                lazy_nr: 0,
                boot_va: VmapArea {
                    va_start: 0,
                    va_end: 0,
                    next: ptr::null_mut(),
                    flags: 0,
                    nr_pages: 0,
                    nr_mapped: 0,
                    pages: ptr::null_mut(),
                    caller: None,
                    phys_addr: 0,
                },
            }),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            nr_vmalloc_pages: AtomicUsize::new(0),
            lazy_max: AtomicUsize::new(0),
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
    phys_addr: u64,
    per_node: [usize; MAX_NUMNODES],
}

/// Records to kfree once the lock is dropped, chained through `next`.
struct Garbage(*mut VmapArea);

impl Garbage {
    fn push(&mut self, va: *mut VmapArea) {
        // SAFETY: `va` is a record no list holds any more.
        unsafe { (*va).next = self.0 };
        self.0 = va;
    }
}

fn fls(x: usize) -> usize {
    (usize::BITS - x.leading_zeros()) as usize
}

/// Insert `va` into the sorted free list, merging with its neighbours.
///
/// # Safety
/// `va` is a record no list holds; the list is well formed.
unsafe fn merge_or_add_vmap_area(inner: &mut VmapInner, mut va: *mut VmapArea, garbage: &mut Garbage) {
    // SAFETY: every pointer in the list is a live record (caller's promise).
    unsafe {
        let mut prev: *mut VmapArea = ptr::null_mut();
        let mut cur = inner.free;
        while !cur.is_null() && (*cur).va_start < (*va).va_start {
            prev = cur;
            cur = (*cur).next;
        }
        if !prev.is_null() && (*prev).va_end == (*va).va_start {
            (*prev).va_end = (*va).va_end;
            garbage.push(va);
            va = prev;
        } else {
            (*va).next = cur;
            if prev.is_null() {
                inner.free = va;
            } else {
                (*prev).next = va;
            }
        }
        // `va` is now in the list, followed by `cur`.
        if !cur.is_null() && (*cur).va_start == (*va).va_end {
            (*va).va_end = (*cur).va_end;
            (*va).next = (*cur).next;
            garbage.push(cur);
        }
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
            inner.free = ptr::addr_of_mut!(inner.boot_va);
        }
        self.vmalloc.start.store(start, Ordering::Relaxed);
        self.vmalloc.end.store(start + size, Ordering::Relaxed);
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

    /// `is_vmalloc_addr`: is `p` inside the vmalloc window?
    pub fn is_vmalloc_addr(&self, p: *const u8) -> bool {
        let a = p as usize;
        a >= self.vmalloc_start() && a < self.vmalloc_end()
    }

    fn new_va_gfp(&self, gfp: Gfp) -> Result<*mut VmapArea, AllocError> {
        let p = self.kmalloc(core::mem::size_of::<VmapArea>(), gfp & GFP_RECLAIM_MASK)?;
        let va = p.as_ptr() as *mut VmapArea;
        // SAFETY: kmalloc gave us room for one record, suitably aligned (8).
        unsafe {
            ptr::write(
                va,
                VmapArea {
                    va_start: 0,
                    va_end: 0,
                    next: ptr::null_mut(),
                    flags: 0,
                    nr_pages: 0,
                    nr_mapped: 0,
                    pages: ptr::null_mut(),
                    caller: None,
                    phys_addr: 0,
                },
            )
        };
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

    /// `__purge_vmap_area_lazy` with the lock held: one TLB flush, then the
    /// ranges go back to the free list.
    fn purge_locked(&self, inner: &mut VmapInner, garbage: &mut Garbage) -> bool {
        if inner.purge.is_null() {
            return false;
        }
        let (mut lo, mut hi) = (usize::MAX, 0);
        let mut p = inner.purge;
        while !p.is_null() {
            // SAFETY: purge list records are live.
            unsafe {
                lo = lo.min((*p).va_start);
                hi = hi.max((*p).va_end);
                p = (*p).next;
            }
        }
        self.platform.flush_tlb_kernel_range(lo, hi);
        let mut p = core::mem::replace(&mut inner.purge, ptr::null_mut());
        while !p.is_null() {
            // SAFETY: we own the detached purge list.
            unsafe {
                let next = (*p).next;
                (*p).next = ptr::null_mut();
                merge_or_add_vmap_area(inner, p, garbage);
                p = next;
            }
        }
        inner.lazy_nr = 0;
        true
    }

    /// `purge_vmap_area_lazy` / `vm_unmap_aliases`: return every lazily freed
    /// range to the free list now.
    pub fn vm_unmap_aliases(&self) {
        let mut g = Garbage(ptr::null_mut());
        {
            let mut inner = self.vmalloc.inner.lock(&self.platform);
            self.purge_locked(&mut inner, &mut g);
        }
        self.free_garbage(g);
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
        {
            let mut inner = self.vmalloc.inner.lock(&self.platform);
            let mut purged = false;
            loop {
                // SAFETY: list records are live; we hold the lock.
                unsafe {
                    let mut prev: *mut VmapArea = ptr::null_mut();
                    let mut f = inner.free;
                    while !f.is_null() {
                        let (fs, fe) = ((*f).va_start, (*f).va_end);
                        let addr = (fs + align - 1) & !(align - 1);
                        if addr >= fs && addr.checked_add(size).is_some_and(|e| e <= fe) {
                            let end = addr + size;
                            if addr == fs && end == fe {
                                // FL_FIT_TYPE
                                if prev.is_null() {
                                    inner.free = (*f).next;
                                } else {
                                    (*prev).next = (*f).next;
                                }
                                g.push(f);
                            } else if addr == fs {
                                (*f).va_start = end; // LE_FIT_TYPE
                            } else if end == fe {
                                (*f).va_end = addr; // RE_FIT_TYPE
                            } else {
                                // NE_FIT_TYPE: the preloaded record takes the right part.
                                let ne = spare.take().unwrap_or(ptr::null_mut());
                                (*ne).va_start = end;
                                (*ne).va_end = fe;
                                (*ne).next = (*f).next;
                                (*f).va_end = addr;
                                (*f).next = ne;
                            }
                            found = Some(addr);
                            break;
                        }
                        prev = f;
                        f = (*f).next;
                    }
                }
                if found.is_some() || purged {
                    break;
                }
                // No room: purge the lazy areas and retry once.
                purged = true;
                if !self.purge_locked(&mut inner, &mut g) {
                    break;
                }
            }
            if let Some(addr) = found {
                // SAFETY: `va` is our fresh record; busy records are live.
                unsafe {
                    (*va).va_start = addr;
                    (*va).va_end = addr + size;
                    (*va).flags = flags | VM_UNINITIALIZED;
                    (*va).caller = Some(caller);
                    let mut prev: *mut VmapArea = ptr::null_mut();
                    let mut cur = inner.busy;
                    while !cur.is_null() && (*cur).va_start < addr {
                        prev = cur;
                        cur = (*cur).next;
                    }
                    (*va).next = cur;
                    if prev.is_null() {
                        inner.busy = va;
                    } else {
                        (*prev).next = va;
                    }
                }
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
            let mut prev: *mut VmapArea = ptr::null_mut();
            let mut cur = inner.busy;
            while !cur.is_null() && (*cur).va_start < addr {
                prev = cur;
                cur = (*cur).next;
            }
            if cur.is_null()
                || (*cur).va_start != addr
                || (*cur).flags & VM_UNINITIALIZED != 0
                || !want((*cur).flags)
            {
                return None;
            }
            if prev.is_null() {
                inner.busy = (*cur).next;
            } else {
                (*prev).next = (*cur).next;
            }
            (*cur).next = ptr::null_mut();
            Some(cur)
        }
    }

    /// Unmap an unlinked area, free what it owns and put its range on the
    /// lazy list (`free_unmap_vmap_area` + `vm_reset_perms` + `__vfree`).
    ///
    /// # Safety
    /// `va` was unlinked from the busy list by the caller and is not used
    /// by anyone else; nobody uses its addresses any more.
    pub(crate) unsafe fn teardown_area(&self, va: *mut VmapArea, free_pages: bool) {
        // SAFETY: the record is ours (caller's promise).
        let (start, end, nr_mapped, nr_pages, pages, flags) = unsafe {
            (
                (*va).va_start,
                (*va).va_end,
                (*va).nr_mapped,
                (*va).nr_pages,
                (*va).pages,
                (*va).flags,
            )
        };
        if nr_mapped != 0 {
            // SAFETY: the range is ours and mapped by us; its users are gone.
            unsafe { self.platform.unmap_pages(start, nr_mapped << PAGE_SHIFT) };
        }
        if free_pages {
            for i in 0..nr_pages {
                // SAFETY: the array holds `nr_pages` order-0 pages we allocated.
                unsafe {
                    let p = *pages.add(i);
                    if let Some(p) = NonNull::new(p) {
                        self.__free_pages(p, 0);
                    }
                }
            }
            if flags & VM_ALLOC != 0 {
                self.vmalloc
                    .nr_vmalloc_pages
                    .fetch_sub(nr_pages, Ordering::Relaxed);
            }
        }
        if !pages.is_null() {
            if flags & VM_VPAGES != 0 {
                self.vfree(pages as *const u8);
            } else {
                // SAFETY: the array was kmalloc'd by us.
                unsafe { self.kfree(pages as *const u8) };
            }
        }
        // The range waits for the next purge.
        let mut g = Garbage(ptr::null_mut());
        {
            let mut inner = self.vmalloc.inner.lock(&self.platform);
            // SAFETY: our record; we hold the lock.
            unsafe {
                (*va).flags = 0;
                (*va).nr_pages = 0;
                (*va).nr_mapped = 0;
                (*va).pages = ptr::null_mut();
                (*va).caller = None;
                (*va).phys_addr = 0;
                (*va).next = inner.purge;
            }
            inner.purge = va;
            inner.lazy_nr += (end - start) >> PAGE_SHIFT;
            if inner.lazy_nr > self.lazy_max_pages() {
                self.purge_locked(&mut inner, &mut g);
            }
        }
        self.free_garbage(g);
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
    ) {
        let _g = self.vmalloc.inner.lock(&self.platform);
        // SAFETY: our busy record; we hold the lock.
        unsafe {
            (*va).nr_pages = nr_pages;
            (*va).nr_mapped = nr_mapped;
            (*va).pages = pages;
            (*va).flags = ((*va).flags & !VM_UNINITIALIZED) | extra;
        }
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
        let size = match size.checked_add(PAGE_SIZE - 1) {
            Some(s) => s & !(PAGE_SIZE - 1),
            None => return Err(AllocError),
        };
        let nr_pages = size >> PAGE_SHIFT;
        let nowarn = gfp.contains(__GFP_NOWARN);
        if nr_pages > self.totalram_pages() {
            if !nowarn {
                crate::pr!(self, "vmalloc error: size {size}, exceeds total pages");
            }
            return Err(AllocError);
        }
        let align = align.max(PAGE_SIZE).next_power_of_two();
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
            if !nowarn {
                crate::pr!(
                    self,
                    "vmalloc error: size {size}, failed to allocated page array size {array_size}"
                );
            }
            self.setup_vmalloc_vm(va, 0, 0, ptr::null_mut(), 0);
            if let Some(va) = self.remove_vm_area(self.va_start_of(va)) {
                // SAFETY: just unlinked, never handed out.
                unsafe { self.teardown_area(va, true) };
            }
            return Err(AllocError);
        }
        // The pages: order 0, one by one.
        let mut page_gfp = gfp | __GFP_NOWARN;
        if !gfp.intersects(GFP_ZONEMASK) && self.has_highmem() {
            page_gfp |= __GFP_HIGHMEM;
        }
        let mut got = 0;
        while got < nr_pages {
            match self.alloc_pages_node(node, page_gfp, 0) {
                // SAFETY: the array holds nr_pages entries.
                Ok(p) => unsafe { *pages.add(got) = p.as_ptr() },
                Err(_) => break,
            }
            got += 1;
        }
        self.vmalloc.nr_vmalloc_pages.fetch_add(got, Ordering::Relaxed);
        // SAFETY: `got` entries were written just above.
        let slice = unsafe { core::slice::from_raw_parts(pages, got) };
        let ok = got == nr_pages;
        let mapped = ok && self.vmap_pages_range(self.va_start_of(va), slice);
        if !mapped {
            if !nowarn {
                let what = if ok {
                    "failed to map pages"
                } else {
                    "failed to allocate pages"
                };
                crate::pr!(self, "vmalloc error: size {size}, {what}");
            }
            // Map nothing we did not map: unmapping the whole range is harmless.
            self.setup_vmalloc_vm(va, got, if ok { nr_pages } else { 0 }, pages, extra);
            if let Some(va) = self.remove_vm_area(self.va_start_of(va)) {
                // SAFETY: just unlinked, never handed out.
                unsafe { self.teardown_area(va, true) };
            }
            return Err(AllocError);
        }
        self.setup_vmalloc_vm(va, nr_pages, nr_pages, pages, extra);
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
    pub fn vfree(&self, addr: *const u8) {
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
        self.setup_vmalloc_vm(va, 0, if ok { count } else { 0 }, arr, 0);
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
    pub fn vunmap(&self, addr: *const u8) {
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
        let mut cur = inner.busy;
        // SAFETY: busy records are live; we hold the lock.
        unsafe {
            while !cur.is_null() && (*cur).va_end <= a {
                cur = (*cur).next;
            }
            if cur.is_null() || (*cur).va_start > a || (*cur).flags & VM_UNINITIALIZED != 0 {
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
        let mut cur = inner.busy;
        // SAFETY: busy records are live; we hold the lock.
        unsafe {
            while !cur.is_null() && (*cur).va_start < addr {
                cur = (*cur).next;
            }
            if cur.is_null() || (*cur).va_start != addr {
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
        let mut kflags = gfp;
        if size > PAGE_SIZE {
            kflags |= __GFP_NOWARN;
            if !kflags.contains(__GFP_RETRY_MAYFAIL) {
                kflags |= __GFP_NORETRY;
            }
            kflags = kflags.without(__GFP_NOFAIL);
        }
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
            self.vfree(p);
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
        let mut cur = inner.busy;
        // SAFETY: busy records are live; we hold the lock.
        unsafe {
            while !cur.is_null() && ((*cur).va_start < from || (*cur).flags & VM_UNINITIALIZED != 0) {
                cur = (*cur).next;
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
                phys_addr: v.phys_addr,
                per_node,
            })
        }
    }

    /// `/proc/vmallocinfo`: one line per busy area in address order, then
    /// the lazily freed ones. The caller prints as `file:line` where the
    /// kernel prints `symbol+off/len` (`%pS`); addresses are not hashed.
    pub fn vmallocinfo_show(&self, out: &mut dyn Write) -> fmt::Result {
        let mut from = 0;
        while let Some(a) = self.next_area_info(from) {
            from = a.end;
            write!(out, "0x{:016x}-0x{:016x} {:7}", a.start, a.end, a.end - a.start)?;
            if let Some(c) = a.caller {
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
