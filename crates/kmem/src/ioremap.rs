//! ioremap: device memory in the vmalloc window (`arch/x86/mm/ioremap.c`,
//! `mm/ioremap.c`), the iomem resource tree (`kernel/resource.c`) and the
//! MMIO accessors (`include/asm-generic/io.h`).
//!
//! **The resource tree.** The machine keeps the kernel's `iomem_resource`:
//! a tree of `[start, end]` physical ranges with a name and flags, children
//! sorted by address and never overlapping their siblings. At boot every
//! e820 range becomes a top-level resource named as `e820_type_to_string`
//! names it ("System RAM", "Reserved", "ACPI Tables", ...); RAM, ACPI and
//! everything below 1 MiB is marked `IORESOURCE_BUSY` (`do_mark_busy`), the
//! other reserved ranges are not, so drivers can claim parts of them.
//! A device region is added non-busy (what the PCI core does with a BAR:
//! `request_iomem_resource`), and a driver claims it with
//! `request_mem_region` (`__request_region`): the new busy resource descends
//! into the non-busy resource that contains it and fails (`-EBUSY`) if it
//! meets a busy one or straddles a boundary. `release_mem_region` removes
//! exactly a busy region or warns `Trying to free nonexistent resource`.
//! `/proc/iomem` prints the tree (`r_show`). The e820 records live in the
//! machine structure (the kernel takes them from memblock and never frees
//! them); later ones are kzalloc'd. One spinlock (`resource_lock`) covers
//! the tree.
//!
//! **ioremap** (`__ioremap_caller`): a zero or wrapping size gives NULL; a
//! range touching a page of RAM that the page allocator may own (System RAM
//! not `PageReserved`) gives `WARN_ONCE "ioremap on RAM at %pa - %pa"` and
//! NULL. (The kernel checks only the pages the range covers completely; we
//! check every page it touches, so a sub-page ioremap cannot alias RAM.)
//! Otherwise the range is widened to pages, a `VM_IOREMAP` area is taken
//! from the vmalloc window aligned to its size's order (at most
//! `IOREMAP_MAX_ORDER`, x86-64's `PUD_SHIFT`), and mapped: reserved RAM
//! pages with `Platform::map_pages`, everything else with
//! `Platform::ioremap_pages` and the cache mode of the call. The caller gets
//! the area's address plus the offset of `phys` in its page. x86 lets holes
//! be mapped too; a platform with nothing behind a range refuses it and we
//! say so. Cache-mode (PAT) conflicts between mappings are not tracked.
//!
//! **iounmap** (x86): an address outside the window gives `WARN_ON_ONCE`;
//! one that is not the start page of an ioremap area (unknown, already
//! unmapped, or a vmalloc area) gives `iounmap: bad address %p` and a stack
//! dump, and changes nothing. Otherwise the area is unmapped and its range
//! joins vmalloc's lazy purge list.
//!
//! **Accessors**: `readb`..`readq`, `writeb`..`writeq`, `ioread*`/`iowrite*`
//! and `memcpy_fromio`/`memcpy_toio`/`memset_io` are volatile accesses,
//! little-endian as the kernel's (`le32_to_cpu(__raw_readl(addr))`).

use crate::e820::{E820Table, E820Type, E820_MAX_ENTRIES};
use crate::gfp::GFP_KERNEL;
use crate::machine::Kmem;
use crate::page::{PAGE_MASK, PAGE_SHIFT, PAGE_SIZE};
use crate::platform::{PageCacheMode, Platform};
use crate::spinlock::SpinLock;
use crate::vmalloc::VM_IOREMAP;
use core::fmt::{self, Write};
use core::panic::Location;
use core::ptr::{self, NonNull};

/// End of the ISA and BIOS range of the first MiB (x86 `ISA_END_ADDRESS`).
const ISA_END_ADDRESS: u64 = 0x10_0000;

/// `IORESOURCE_MEM`.
pub const IORESOURCE_MEM: u32 = 0x0000_0200;
/// `IORESOURCE_SYSRAM`.
pub const IORESOURCE_SYSRAM: u32 = 0x0100_0000;
/// `IORESOURCE_SYSTEM_RAM`: memory that is System RAM.
pub const IORESOURCE_SYSTEM_RAM: u32 = IORESOURCE_MEM | IORESOURCE_SYSRAM;
/// `IORESOURCE_BUSY`: claimed by a driver (or RAM): nothing may nest in it.
pub const IORESOURCE_BUSY: u32 = 0x8000_0000;

/// `IOREMAP_MAX_ORDER` on x86-64 (`PUD_SHIFT`): the largest alignment an
/// ioremap area gets.
pub const IOREMAP_MAX_ORDER: u32 = 30;

/// `MAX_IORES_LEVEL`: deepest indentation of `/proc/iomem`.
const MAX_IORES_LEVEL: usize = 5;

/// Longest resource name kept (longer names are cut).
pub const RES_NAME_LEN: usize = 48;

/// Physical address bits (`boot_cpu_data.x86_phys_bits`): the end of the
/// iomem root and the limit of `phys_addr_valid`.
pub const PHYS_ADDR_BITS: u32 = 46;

const WARN_IOREMAP_RAM: u32 = 40;
const WARN_IOUNMAP_ADDR: u32 = 41;
const WARN_IOREMAP_INVALID: u32 = 42;

/// Why a resource request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceError {
    /// It conflicts with a busy resource or straddles one (`-EBUSY`).
    Busy,
    /// Empty or wrapping range (`-EINVAL`).
    Invalid,
    /// No memory for the record (`-ENOMEM`).
    NoMemory,
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceError::Busy => "resource busy",
            ResourceError::Invalid => "invalid range",
            ResourceError::NoMemory => "out of memory",
        })
    }
}

/// `struct resource`: `[start, end]` (inclusive), linked into the tree.
#[repr(C)]
struct Resource {
    start: u64,
    end: u64,
    flags: u32,
    /// A device window (`request_iomem_resource`): other devices do not
    /// nest in it, drivers' regions do.
    device: bool,
    name_len: u8,
    name: [u8; RES_NAME_LEN],
    parent: *mut Resource,
    sibling: *mut Resource,
    child: *mut Resource,
}

impl Resource {
    const fn empty() -> Self {
        Resource {
            start: 0,
            end: 0,
            flags: 0,
            device: false,
            name_len: 0,
            name: [0; RES_NAME_LEN],
            parent: ptr::null_mut(),
            sibling: ptr::null_mut(),
            child: ptr::null_mut(),
        }
    }

    fn set_name(&mut self, name: &str) {
        let mut n = name.len().min(RES_NAME_LEN);
        while !name.is_char_boundary(n) {
            n -= 1;
        }
        self.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.name_len = n as u8;
    }

    fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len as usize]).unwrap_or("<BAD>")
    }
}

struct IomemInner {
    /// `iomem_resource`, the root ("PCI mem").
    root: Resource,
    /// The e820 records (`e820_res`), never freed.
    boot: [Resource; E820_MAX_ENTRIES],
}

// SAFETY: the raw pointers are records owned by the tree, only touched under
// the spinlock that holds this value.
unsafe impl Send for IomemInner {}

/// The machine's iomem resource tree.
pub struct IomemState {
    inner: SpinLock<IomemInner>,
}

impl Default for IomemState {
    fn default() -> Self {
        Self::new()
    }
}

impl IomemState {
    /// An empty tree (the root only). The machine's starts as zero bytes
    /// instead, in place (`Kmem::setup_arch`), and `iomem_init` writes its
    /// root: all of this but the root is zero bytes.
    pub const fn new() -> Self {
        Self {
            inner: SpinLock::new(IomemInner {
                root: Self::root(),
                boot: [const { Resource::empty() }; E820_MAX_ENTRIES],
            }),
        }
    }

    /// `iomem_resource`, the root of an empty tree.
    const fn root() -> Resource {
        let mut root = Resource::empty();
        root.end = (1u64 << PHYS_ADDR_BITS) - 1;
        root.flags = IORESOURCE_MEM;
        let name = *b"PCI mem";
        let mut i = 0;
        while i < name.len() {
            root.name[i] = name[i];
            i += 1;
        }
        root.name_len = name.len() as u8;
        root
    }
}

/// `e820_type_to_string`.
fn e820_type_to_string(t: E820Type) -> &'static str {
    match t {
        E820Type::Ram => "System RAM",
        E820Type::Acpi => "ACPI Tables",
        E820Type::Nvs => "ACPI Non-volatile Storage",
        E820Type::Unusable => "Unusable memory",
        E820Type::Pram => "Persistent Memory (legacy)",
        E820Type::Pmem => "Persistent Memory",
        E820Type::Reserved => "Reserved",
        E820Type::SoftReserved => "Soft Reserved",
    }
}

/// `do_mark_busy`: what a driver may not claim.
fn do_mark_busy(t: E820Type, start: u64) -> bool {
    if start < (1 << 20) {
        return true;
    }
    !matches!(
        t,
        E820Type::Reserved | E820Type::SoftReserved | E820Type::Pram | E820Type::Pmem
    )
}

/// `__request_resource`: link `new` under `root`, or return the conflict.
///
/// # Safety
/// `root` and `new` are live records; the caller holds the tree lock.
unsafe fn __request_resource(root: *mut Resource, new: *mut Resource) -> *mut Resource {
    // SAFETY: caller's promise.
    unsafe {
        let (start, end) = ((*new).start, (*new).end);
        if end < start || start < (*root).start || end > (*root).end {
            return root;
        }
        let mut p: *mut *mut Resource = ptr::addr_of_mut!((*root).child);
        loop {
            let tmp = *p;
            if tmp.is_null() || (*tmp).start > end {
                (*new).sibling = tmp;
                *p = new;
                (*new).parent = root;
                return ptr::null_mut();
            }
            p = ptr::addr_of_mut!((*tmp).sibling);
            if (*tmp).end < start {
                continue;
            }
            return tmp;
        }
    }
}

/// `next_resource(p, false)`: pre-order successor.
///
/// # Safety
/// `p` is a live record of the tree; the caller holds the tree lock.
unsafe fn next_resource(mut p: *mut Resource) -> *mut Resource {
    // SAFETY: caller's promise; links point at live records.
    unsafe {
        if !(*p).child.is_null() {
            return (*p).child;
        }
        while (*p).sibling.is_null() && !(*p).parent.is_null() {
            p = (*p).parent;
        }
        (*p).sibling
    }
}

impl<P: Platform> Kmem<P> {
    /// The root's address (the state lives in the machine, which never moves).
    fn iomem_root(inner: &mut IomemInner) -> *mut Resource {
        ptr::addr_of_mut!(inner.root)
    }

    fn alloc_resource(&self, start: u64, end: u64, name: &str) -> Result<*mut Resource, ResourceError> {
        let p = self
            .kzalloc(core::mem::size_of::<Resource>(), GFP_KERNEL)
            .map_err(|_| ResourceError::NoMemory)?;
        let r = p.as_ptr() as *mut Resource;
        let mut rec = Resource::empty();
        rec.start = start;
        rec.end = end;
        rec.set_name(name);
        // SAFETY: kzalloc gave room for one record, 8-aligned.
        unsafe { ptr::write(r, rec) };
        Ok(r)
    }

    /// `e820__reserve_resources` (+ `_late`): the firmware map as the top of
    /// the iomem tree. Called once at boot, after the slab allocator is up.
    pub(crate) fn iomem_init(&self, e820: &E820Table) {
        let mut inner = self.iomem.inner.lock(&self.platform);
        // The tree starts as zero bytes (see `IomemState::new`).
        inner.root = IomemState::root();
        let root = Self::iomem_root(&mut inner);
        for (i, e) in e820.entries().iter().enumerate().take(E820_MAX_ENTRIES) {
            if e.size == 0 {
                continue;
            }
            let mut rec = Resource::empty();
            rec.start = e.addr;
            rec.end = e.addr.saturating_add(e.size - 1);
            rec.set_name(e820_type_to_string(e.kind));
            rec.flags = if e.kind == E820Type::Ram {
                IORESOURCE_SYSTEM_RAM
            } else {
                IORESOURCE_MEM
            };
            if do_mark_busy(e.kind, e.addr) {
                rec.flags |= IORESOURCE_BUSY;
            }
            inner.boot[i] = rec;
            let r = ptr::addr_of_mut!(inner.boot[i]);
            // SAFETY: live records (the state never moves); we hold the
            // lock. A record that conflicts stays unlinked.
            unsafe { __request_resource(root, r) };
        }
    }

    /// Free a record unlinked from the tree (boot records are kept).
    fn free_resource(&self, r: *mut Resource) {
        // SAFETY: only addresses are compared.
        let boot = unsafe { ptr::addr_of!((*self.iomem.inner.data_ptr()).boot) } as usize;
        let a = r as usize;
        if a >= boot && a < boot + core::mem::size_of::<[Resource; E820_MAX_ENTRIES]>() {
            return;
        }
        // SAFETY: records outside the boot array came from alloc_resource.
        unsafe { self.kfree(r as *const u8) };
    }

    /// `__request_region(&iomem_resource, start, n, name, flags)`; a
    /// `device` resource does not descend into another device's.
    fn __request_region(
        &self,
        start: u64,
        n: u64,
        name: &str,
        flags: u32,
        device: bool,
    ) -> Result<(), ResourceError> {
        if n == 0 {
            return Err(ResourceError::Invalid);
        }
        let end = start.checked_add(n - 1).ok_or(ResourceError::Invalid)?;
        let res = self.alloc_resource(start, end, name)?;
        // SAFETY: our fresh record.
        unsafe { (*res).device = device };
        let ok = {
            let mut inner = self.iomem.inner.lock(&self.platform);
            let mut parent = Self::iomem_root(&mut inner);
            // SAFETY: live records; we hold the lock.
            unsafe {
                loop {
                    (*res).flags = ((*parent).flags & (IORESOURCE_MEM | IORESOURCE_SYSRAM)) | flags;
                    let conflict = __request_resource(parent, res);
                    if conflict.is_null() {
                        break true;
                    }
                    if conflict != parent
                        && (*conflict).flags & IORESOURCE_BUSY == 0
                        && !(device && (*conflict).device)
                    {
                        parent = conflict;
                        continue;
                    }
                    break false;
                }
            }
        };
        if ok {
            Ok(())
        } else {
            // SAFETY: never linked.
            unsafe { self.kfree(res as *const u8) };
            Err(ResourceError::Busy)
        }
    }

    /// `request_mem_region(start, n, name)`: claim `[start, start + n)` for a
    /// driver (a busy resource). Fails with `Busy` if any part of it is RAM,
    /// claimed already, or straddles a resource boundary.
    pub fn request_mem_region(&self, start: u64, n: u64, name: &str) -> Result<(), ResourceError> {
        self.__request_region(start, n, name, IORESOURCE_BUSY, false)
    }

    /// A device's memory window appears (what the PCI core does with a BAR:
    /// `request_resource(&iomem_resource, bar)`): a non-busy resource drivers
    /// can then claim with `request_mem_region`. It nests inside a non-busy
    /// resource (e820 "Reserved") that contains it, and fails on any conflict.
    pub fn request_iomem_resource(&self, start: u64, n: u64, name: &str) -> Result<(), ResourceError> {
        self.__request_region(start, n, name, 0, true)
    }

    /// `release_mem_region(start, n)` (`__release_region`): free exactly a
    /// busy region; anything else warns `Trying to free nonexistent resource`.
    pub fn release_mem_region(&self, start: u64, n: u64) {
        let end = start.wrapping_add(n.wrapping_sub(1));
        let freed = {
            let mut inner = self.iomem.inner.lock(&self.platform);
            let root = Self::iomem_root(&mut inner);
            // SAFETY: live records; we hold the lock.
            unsafe {
                let mut p: *mut *mut Resource = ptr::addr_of_mut!((*root).child);
                let mut found = ptr::null_mut();
                loop {
                    let res = *p;
                    if res.is_null() {
                        break;
                    }
                    if (*res).start <= start && (*res).end >= end {
                        if (*res).flags & IORESOURCE_BUSY == 0 {
                            p = ptr::addr_of_mut!((*res).child);
                            continue;
                        }
                        if (*res).start != start || (*res).end != end {
                            break;
                        }
                        // A busy region's children (none are ever made) go with it.
                        *p = (*res).sibling;
                        found = res;
                        break;
                    }
                    p = ptr::addr_of_mut!((*res).sibling);
                }
                found
            }
        };
        if freed.is_null() {
            crate::pr!(
                self,
                "resource: Trying to free nonexistent resource <0x{:016x}-0x{:016x}>",
                start,
                end
            );
        } else {
            self.free_resource(freed);
        }
    }

    /// Whether some page touched by `[start, last]` is RAM the page allocator
    /// may own: inside a busy System RAM resource, in memblock's memory and
    /// not `PageReserved` (`__ioremap_check_ram`, over every page touched).
    /// (The kernel marks the pages outside memblock's memory reserved,
    /// `init_unavailable_range`; we leave their descriptors alone and ask
    /// memblock, as a page that straddles the end of a RAM range, such as
    /// 0x9f000 below the EBDA, is never given to the buddy.)
    fn ioremap_touches_ram(&self, start: u64, last: u64) -> bool {
        let first_pfn = start >> PAGE_SHIFT;
        let last_pfn = last >> PAGE_SHIFT;
        // The System RAM resources' pages in the range, gathered under the resource lock.
        let mut runs = [(0u64, 0u64); E820_MAX_ENTRIES];
        let mut nr = 0;
        {
            let mut inner = self.iomem.inner.lock(&self.platform);
            let root = Self::iomem_root(&mut inner);
            // SAFETY: live records; we hold the lock.
            unsafe {
                let mut p = (*root).child;
                while !p.is_null() && nr < runs.len() {
                    let r = &*p;
                    if r.flags & (IORESOURCE_SYSTEM_RAM | IORESOURCE_BUSY)
                        == IORESOURCE_SYSTEM_RAM | IORESOURCE_BUSY
                        && r.end >= start
                        && r.start <= last
                    {
                        runs[nr] = (
                            first_pfn.max(r.start >> PAGE_SHIFT),
                            last_pfn.min(r.end >> PAGE_SHIFT),
                        );
                        nr += 1;
                    }
                    p = next_resource(p);
                }
            }
        }
        runs[..nr].iter().any(|&(lo, hi)| {
            (lo..=hi).any(|pfn| {
                self.pfn_to_page(pfn as usize).is_some()
                    && !self.page_is_reserved(pfn as usize)
                    && self.memblock.lock(&self.platform).is_memory(pfn << PAGE_SHIFT)
            })
        })
    }

    /// Whether the page at `phys` is backed by this machine's RAM, for
    /// `map_pages`: reserved RAM, and every page of the first MiB (the ISA
    /// and BIOS range, which x86 maps whatever the firmware map says there:
    /// `ISA_START_ADDRESS`..`ISA_END_ADDRESS`).
    fn ioremap_page_is_ram(&self, phys: u64) -> bool {
        let pfn = (phys >> PAGE_SHIFT) as usize;
        self.pfn_to_page(pfn).is_some()
            && (phys < ISA_END_ADDRESS || self.memblock.lock(&self.platform).is_memory(phys))
    }

    /// `ioremap_page_range`: map `[phys, phys + size)` at `virt`, RAM pages
    /// and device pages in runs.
    fn ioremap_page_range(&self, virt: usize, phys: u64, size: usize, pcm: PageCacheMode) -> bool {
        let mut done = 0;
        while done < size {
            let at = phys + done as u64;
            let ram = self.ioremap_page_is_ram(at);
            let mut n = PAGE_SIZE;
            while done + n < size && self.ioremap_page_is_ram(at + n as u64) == ram {
                n += PAGE_SIZE;
            }
            let ok = if ram {
                let mut pfns = [0u64; 64];
                let mut i = 0;
                let mut ok = true;
                while ok && i < n {
                    let k = ((n - i) / PAGE_SIZE).min(pfns.len());
                    for (j, ph) in pfns[..k].iter_mut().enumerate() {
                        *ph = at + (i + j * PAGE_SIZE) as u64;
                    }
                    // SAFETY: `[virt + done + i, +k pages)` is part of an
                    // ioremap area we own in the window; the pages are RAM.
                    ok = unsafe { self.platform.map_pages(virt + done + i, &pfns[..k]) };
                    i += k * PAGE_SIZE;
                }
                ok
            } else {
                // SAFETY: the range is part of an ioremap area we own in the
                // window; everything is page-aligned and nonempty.
                unsafe { self.platform.ioremap_pages(virt + done, at, n, pcm) }
            };
            if !ok {
                crate::pr!(
                    self,
                    "ioremap: cannot map [mem {:#010x}-{:#010x}]: neither RAM nor device memory the platform can map",
                    at,
                    at + n as u64 - 1
                );
                return false;
            }
            done += n;
        }
        true
    }

    /// `__ioremap_caller`.
    fn __ioremap_caller(
        &self,
        phys_addr: u64,
        size: usize,
        pcm: PageCacheMode,
        caller: &'static Location<'static>,
    ) -> Option<NonNull<u8>> {
        let last_addr = phys_addr.wrapping_add(size as u64).wrapping_sub(1);
        if size == 0 || last_addr < phys_addr {
            return None;
        }
        if phys_addr >> PHYS_ADDR_BITS != 0 {
            crate::pr!(self, "ioremap: invalid physical address {:x}", phys_addr);
            self.warn_once(
                WARN_IOREMAP_INVALID,
                format_args!("at {}:{} __ioremap_caller", caller.file(), caller.line()),
            );
            return None;
        }
        if self.ioremap_touches_ram(phys_addr, last_addr) {
            self.warn_once(
                WARN_IOREMAP_RAM,
                format_args!("ioremap on RAM at 0x{:016x} - 0x{:016x}", phys_addr, last_addr),
            );
            return None;
        }
        let offset = (phys_addr & !(PAGE_MASK as u64)) as usize;
        let phys = phys_addr & PAGE_MASK as u64;
        let size =
            usize::try_from(((last_addr >> PAGE_SHIFT) + 1 - (phys >> PAGE_SHIFT)) << PAGE_SHIFT).ok()?;
        // `__get_vm_area_node` with VM_IOREMAP: aligned to the size's order.
        let order = (usize::BITS - (size - 1).leading_zeros()).clamp(PAGE_SHIFT, IOREMAP_MAX_ORDER);
        let align = 1usize << order;
        let va = self
            .alloc_vmap_area(
                size.checked_add(PAGE_SIZE)?,
                align,
                GFP_KERNEL,
                VM_IOREMAP,
                caller,
            )
            .ok()?;
        let vaddr = self.va_start_of(va);
        if !self.ioremap_page_range(vaddr, phys, size, pcm) {
            // Unmapping the whole range is harmless for the pages not mapped.
            self.setup_ioremap_vm(va, phys, size >> PAGE_SHIFT);
            if let Some(va) = self.remove_vm_area_if(vaddr, |f| f & VM_IOREMAP != 0) {
                // SAFETY: just unlinked, never handed out; owns no pages.
                unsafe { self.teardown_area(va, false) };
            }
            return None;
        }
        self.setup_ioremap_vm(va, phys, size >> PAGE_SHIFT);
        NonNull::new((vaddr + offset) as *mut u8)
    }

    /// `ioremap`: map device memory uncached (UC-). `None` for size 0, a
    /// wrapping range, RAM (with the kernel's warning) or a range the
    /// platform cannot map. Undo with `iounmap`.
    #[track_caller]
    pub fn ioremap(&self, phys_addr: u64, size: usize) -> Option<NonNull<u8>> {
        self.__ioremap_caller(phys_addr, size, PageCacheMode::UcMinus, Location::caller())
    }

    /// `ioremap_uc`: strongly uncached.
    #[track_caller]
    pub fn ioremap_uc(&self, phys_addr: u64, size: usize) -> Option<NonNull<u8>> {
        self.__ioremap_caller(phys_addr, size, PageCacheMode::Uc, Location::caller())
    }

    /// `ioremap_wc`: write-combining (frame buffers).
    #[track_caller]
    pub fn ioremap_wc(&self, phys_addr: u64, size: usize) -> Option<NonNull<u8>> {
        self.__ioremap_caller(phys_addr, size, PageCacheMode::Wc, Location::caller())
    }

    /// `ioremap_wt`: write-through.
    #[track_caller]
    pub fn ioremap_wt(&self, phys_addr: u64, size: usize) -> Option<NonNull<u8>> {
        self.__ioremap_caller(phys_addr, size, PageCacheMode::Wt, Location::caller())
    }

    /// `ioremap_cache`: write-back (cached) mapping of device memory.
    #[track_caller]
    pub fn ioremap_cache(&self, phys_addr: u64, size: usize) -> Option<NonNull<u8>> {
        self.__ioremap_caller(phys_addr, size, PageCacheMode::Wb, Location::caller())
    }

    /// `ioremap_prot`-like: with an explicit cache mode.
    #[track_caller]
    pub fn ioremap_pcm(&self, phys_addr: u64, size: usize, pcm: PageCacheMode) -> Option<NonNull<u8>> {
        self.__ioremap_caller(phys_addr, size, pcm, Location::caller())
    }

    /// `is_ioremap_addr`: inside the window ioremap areas come from.
    pub fn is_ioremap_addr(&self, addr: *const u8) -> bool {
        self.is_vmalloc_addr(addr)
    }

    /// `iounmap`: undo an `ioremap` (any address in the area's first page
    /// will do, as the kernel masks it). Anything else is reported the x86
    /// way and changes nothing.
    pub fn iounmap(&self, addr: *const u8) {
        if !self.is_ioremap_addr(addr) {
            self.warn_once(
                WARN_IOUNMAP_ADDR,
                format_args!("iounmap: {:p} is not in the ioremap area", addr),
            );
            return;
        }
        let vaddr = addr as usize & PAGE_MASK;
        match self.remove_vm_area_if(vaddr, |f| f & VM_IOREMAP != 0) {
            // SAFETY: unlinked just now; the caller gives the mapping up.
            Some(va) => unsafe { self.teardown_area(va, false) },
            None => {
                crate::pr!(self, "iounmap: bad address {:p}", vaddr as *const u8);
                self.platform.dump_stack();
            }
        }
    }

    /// `/proc/iomem` (`r_show` over `iomem_resource`), as root reads it.
    pub fn iomem_show(&self, out: &mut dyn Write) -> fmt::Result {
        let mut inner = self.iomem.inner.lock(&self.platform);
        let root = Self::iomem_root(&mut inner);
        // SAFETY: live records; we hold the lock while printing.
        unsafe {
            let width = if (*root).end < 0x10000 { 4 } else { 8 };
            let mut p = (*root).child;
            while !p.is_null() {
                let r = &*p;
                let mut depth = 0;
                let mut q = p;
                while depth < MAX_IORES_LEVEL && (*q).parent != root {
                    depth += 1;
                    q = (*q).parent;
                }
                writeln!(
                    out,
                    "{:indent$}{:0width$x}-{:0width$x} : {}",
                    "",
                    r.start,
                    r.end,
                    r.name(),
                    indent = depth * 2,
                    width = width
                )?;
                p = next_resource(p);
            }
        }
        Ok(())
    }
}

// ---- MMIO accessors (include/asm-generic/io.h) -----------------------------

/// Volatile load of `N` bytes at `addr`, in one access if naturally aligned,
/// else byte by byte (x86 allows unaligned MMIO; Rust's volatile does not).
///
/// # Safety
/// `[addr, addr + N)` is mapped and readable.
#[inline(always)]
unsafe fn read_le<const N: usize>(addr: *const u8) -> [u8; N] {
    let mut b = [0u8; N];
    if (addr as usize).is_multiple_of(N) {
        // SAFETY: aligned and readable (caller); [u8; N] has no invalid values.
        unsafe {
            match N {
                1 => b[0] = ptr::read_volatile(addr),
                2 => b[..2].copy_from_slice(&ptr::read_volatile(addr as *const u16).to_ne_bytes()),
                4 => b[..4].copy_from_slice(&ptr::read_volatile(addr as *const u32).to_ne_bytes()),
                _ => b[..8].copy_from_slice(&ptr::read_volatile(addr as *const u64).to_ne_bytes()),
            }
        }
    } else {
        for (i, v) in b.iter_mut().enumerate() {
            // SAFETY: inside the readable range (caller).
            *v = unsafe { ptr::read_volatile(addr.add(i)) };
        }
    }
    b
}

/// Volatile store of `N` native-order bytes at `addr` (see `read_le`).
///
/// # Safety
/// `[addr, addr + N)` is mapped and writable.
#[inline(always)]
unsafe fn write_ne<const N: usize>(addr: *mut u8, b: [u8; N]) {
    if (addr as usize).is_multiple_of(N) {
        // SAFETY: aligned and writable (caller).
        unsafe {
            match N {
                1 => ptr::write_volatile(addr, b[0]),
                2 => ptr::write_volatile(addr as *mut u16, u16::from_ne_bytes([b[0], b[1]])),
                4 => ptr::write_volatile(addr as *mut u32, u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
                _ => {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&b[..8]);
                    ptr::write_volatile(addr as *mut u64, u64::from_ne_bytes(w))
                }
            }
        }
    } else {
        for (i, v) in b.iter().enumerate() {
            // SAFETY: inside the writable range (caller).
            unsafe { ptr::write_volatile(addr.add(i), *v) };
        }
    }
}

/// `readb`: read a byte of device memory.
///
/// # Safety
/// `addr` points into a live `ioremap` mapping (or other mapped memory).
#[inline]
pub unsafe fn readb(addr: *const u8) -> u8 {
    // SAFETY: forwarded.
    unsafe { read_le::<1>(addr)[0] }
}

/// `readw`: read a little-endian 16-bit register.
///
/// # Safety
/// `[addr, addr + 2)` lies in a live mapping.
#[inline]
pub unsafe fn readw(addr: *const u8) -> u16 {
    // SAFETY: forwarded.
    u16::from_ne_bytes(unsafe { read_le::<2>(addr) }).to_le()
}

/// `readl`: read a little-endian 32-bit register.
///
/// # Safety
/// `[addr, addr + 4)` lies in a live mapping.
#[inline]
pub unsafe fn readl(addr: *const u8) -> u32 {
    // SAFETY: forwarded.
    u32::from_le_bytes(unsafe { read_le::<4>(addr) })
}

/// `readq`: read a little-endian 64-bit register.
///
/// # Safety
/// `[addr, addr + 8)` lies in a live mapping.
#[inline]
pub unsafe fn readq(addr: *const u8) -> u64 {
    // SAFETY: forwarded.
    u64::from_le_bytes(unsafe { read_le::<8>(addr) })
}

/// `writeb`: write a byte of device memory.
///
/// # Safety
/// `addr` points into a live writable mapping.
#[inline]
pub unsafe fn writeb(val: u8, addr: *mut u8) {
    // SAFETY: forwarded.
    unsafe { write_ne::<1>(addr, [val]) }
}

/// `writew`: write a little-endian 16-bit register.
///
/// # Safety
/// `[addr, addr + 2)` lies in a live writable mapping.
#[inline]
pub unsafe fn writew(val: u16, addr: *mut u8) {
    // SAFETY: forwarded.
    unsafe { write_ne::<2>(addr, val.to_le_bytes()) }
}

/// `writel`: write a little-endian 32-bit register.
///
/// # Safety
/// `[addr, addr + 4)` lies in a live writable mapping.
#[inline]
pub unsafe fn writel(val: u32, addr: *mut u8) {
    // SAFETY: forwarded.
    unsafe { write_ne::<4>(addr, val.to_le_bytes()) }
}

/// `writeq`: write a little-endian 64-bit register.
///
/// # Safety
/// `[addr, addr + 8)` lies in a live writable mapping.
#[inline]
pub unsafe fn writeq(val: u64, addr: *mut u8) {
    // SAFETY: forwarded.
    unsafe { write_ne::<8>(addr, val.to_le_bytes()) }
}

/// `ioread8` (memory-mapped cookies only: port I/O is not modelled).
///
/// # Safety
/// As `readb`.
#[inline]
pub unsafe fn ioread8(addr: *const u8) -> u8 {
    // SAFETY: forwarded.
    unsafe { readb(addr) }
}

/// `ioread16`.
///
/// # Safety
/// As `readw`.
#[inline]
pub unsafe fn ioread16(addr: *const u8) -> u16 {
    // SAFETY: forwarded.
    unsafe { readw(addr) }
}

/// `ioread32`.
///
/// # Safety
/// As `readl`.
#[inline]
pub unsafe fn ioread32(addr: *const u8) -> u32 {
    // SAFETY: forwarded.
    unsafe { readl(addr) }
}

/// `iowrite8`.
///
/// # Safety
/// As `writeb`.
#[inline]
pub unsafe fn iowrite8(val: u8, addr: *mut u8) {
    // SAFETY: forwarded.
    unsafe { writeb(val, addr) }
}

/// `iowrite16`.
///
/// # Safety
/// As `writew`.
#[inline]
pub unsafe fn iowrite16(val: u16, addr: *mut u8) {
    // SAFETY: forwarded.
    unsafe { writew(val, addr) }
}

/// `iowrite32`.
///
/// # Safety
/// As `writel`.
#[inline]
pub unsafe fn iowrite32(val: u32, addr: *mut u8) {
    // SAFETY: forwarded.
    unsafe { writel(val, addr) }
}

/// `memcpy_fromio`: copy `n` bytes of device memory to `dst`, the device
/// side read in aligned 32-bit words where it can (as x86's `__memcpy_fromio`).
///
/// # Safety
/// `[src, src + n)` lies in a live mapping, `[dst, dst + n)` is writable
/// ordinary memory, and the two do not overlap.
pub unsafe fn memcpy_fromio(dst: *mut u8, src: *const u8, n: usize) {
    let mut i = 0;
    // SAFETY: every access is inside the ranges the caller vouches for.
    unsafe {
        while i < n && !(src as usize + i).is_multiple_of(4) {
            *dst.add(i) = readb(src.add(i));
            i += 1;
        }
        while i + 4 <= n {
            let w = ptr::read_volatile(src.add(i) as *const u32);
            ptr::copy_nonoverlapping(w.to_ne_bytes().as_ptr(), dst.add(i), 4);
            i += 4;
        }
        while i < n {
            *dst.add(i) = readb(src.add(i));
            i += 1;
        }
    }
}

/// `memcpy_toio`: copy `n` bytes to device memory, in aligned 32-bit words
/// where it can.
///
/// # Safety
/// `[dst, dst + n)` lies in a live writable mapping, `[src, src + n)` is
/// readable ordinary memory, and the two do not overlap.
pub unsafe fn memcpy_toio(dst: *mut u8, src: *const u8, n: usize) {
    let mut i = 0;
    // SAFETY: every access is inside the ranges the caller vouches for.
    unsafe {
        while i < n && !(dst as usize + i).is_multiple_of(4) {
            writeb(*src.add(i), dst.add(i));
            i += 1;
        }
        while i + 4 <= n {
            let mut w = [0u8; 4];
            ptr::copy_nonoverlapping(src.add(i), w.as_mut_ptr(), 4);
            ptr::write_volatile(dst.add(i) as *mut u32, u32::from_ne_bytes(w));
            i += 4;
        }
        while i < n {
            writeb(*src.add(i), dst.add(i));
            i += 1;
        }
    }
}

/// `memset_io`: fill `n` bytes of device memory with `c`.
///
/// # Safety
/// `[dst, dst + n)` lies in a live writable mapping.
pub unsafe fn memset_io(dst: *mut u8, c: u8, n: usize) {
    let mut i = 0;
    let word = u32::from_ne_bytes([c; 4]);
    // SAFETY: every access is inside the range the caller vouches for.
    unsafe {
        while i < n && !(dst as usize + i).is_multiple_of(4) {
            writeb(c, dst.add(i));
            i += 1;
        }
        while i + 4 <= n {
            ptr::write_volatile(dst.add(i) as *mut u32, word);
            i += 4;
        }
        while i < n {
            writeb(c, dst.add(i));
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Kmem::setup_arch` leaves the iomem tree as the boot memory's zero
    /// bytes instead of writing `IomemState::new()`, and `iomem_init`
    /// writes the root: everything else must be zero.
    #[test]
    fn the_initial_state_is_zero_but_for_the_root() {
        // Every field by name, so that a new one must be added here too.
        let mut st = IomemState::new();
        assert!(!st.inner.is_locked());
        let IomemInner { root, boot } = st.inner.get_mut();
        let zero = |r: &Resource| {
            let Resource {
                start,
                end,
                flags,
                device,
                name_len,
                name,
                parent,
                sibling,
                child,
            } = r;
            (*start, *end, *flags, *device, *name_len) == (0, 0, 0, false, 0)
                && name.iter().all(|&b| b == 0)
                && parent.is_null()
                && sibling.is_null()
                && child.is_null()
        };
        assert!(boot.iter().all(zero));
        assert_eq!(root.name(), "PCI mem");
        assert!(!zero(root));
    }

    #[test]
    fn accessors_are_little_endian_and_handle_misalignment() {
        let mut buf = [0u8; 32];
        let p = buf.as_mut_ptr();
        // SAFETY: all accesses stay inside `buf`.
        unsafe {
            writel(0x1122_3344, p.add(4));
            assert_eq!(&buf[4..8], &[0x44, 0x33, 0x22, 0x11]);
            let p = buf.as_mut_ptr();
            writeq(0x0102_0304_0506_0708, p.add(9));
            assert_eq!(readq(p.add(9)), 0x0102_0304_0506_0708);
            assert_eq!(readb(p.add(9)), 0x08);
            assert_eq!(readw(p.add(4)), 0x3344);
            assert_eq!(ioread32(p.add(4)), 0x1122_3344);
            iowrite16(0xbeef, p.add(1));
            assert_eq!(buf[1], 0xef);
            assert_eq!(buf[2], 0xbe);
            let p = buf.as_mut_ptr();
            memset_io(p.add(3), 0x5a, 13);
            let src: [u8; 11] = core::array::from_fn(|i| i as u8 + 1);
            memcpy_toio(p.add(17), src.as_ptr(), 11);
            let mut back = [0u8; 11];
            memcpy_fromio(back.as_mut_ptr(), p.add(17), 11);
            assert_eq!(back, src);
        }
        assert!(buf[3..16].iter().all(|&b| b == 0x5a));
        // memset_io stopped where it was told: the top byte of the writeq stays.
        assert_eq!(buf[16], 0x01);
    }

    #[test]
    fn e820_names_match_the_kernel() {
        assert_eq!(e820_type_to_string(E820Type::Ram), "System RAM");
        assert_eq!(e820_type_to_string(E820Type::Nvs), "ACPI Non-volatile Storage");
        assert!(do_mark_busy(E820Type::Reserved, 0xf0000));
        assert!(!do_mark_busy(E820Type::Reserved, 0xfec0_0000));
        assert!(do_mark_busy(E820Type::Acpi, 0xbfff_0000));
    }
}
