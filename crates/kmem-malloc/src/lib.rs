//! libkmalloc: the C library's allocator over kmem, for `LD_PRELOAD`.
//!
//! ```sh
//! LD_PRELOAD=target/release/libkmalloc.so python3 script.py
//! KMEM_CMDLINE="slub_debug=FZP" LD_PRELOAD=target/release/libkmalloc.so ./buggy
//! ```
//!
//! Exports `malloc`, `free`, `calloc`, `realloc`, `reallocarray`,
//! `memalign`, `posix_memalign`, `aligned_alloc`, `valloc`, `pvalloc` and
//! `malloc_usable_size`, all served by the process's default kmem machine
//! (booted on the first call from `KMEM_CMDLINE`, see `bootstrap.rs`). C++'s
//! `operator new`/`delete` in libstdc++ call `malloc`/`free`, so they come
//! here too.
//!
//! **Where a request goes**, by size:
//!
//! | size | allocator | alignment |
//! |---|---|---|
//! | 1 – 8 KiB | the `kmalloc-N` slab caches (8, 16, 32, 64, 96, 128, 192, 256, 512, 1k, 2k, 4k, 8k) | 16 (8 for 8-byte requests); power-of-two sizes naturally |
//! | 8 KiB – 4 MiB | large kmalloc: a compound page block from the buddy allocator | page, and the block's size |
//! | above 4 MiB | vmalloc (`huge.rs`) | 16, or what was asked |
//!
//! `malloc(0)` returns a unique 8-byte object, as glibc returns a unique chunk.
//!
//! **free in O(1)**: a pointer inside the linear map is kmalloc memory and
//! goes to `kfree` (which finds slab or compound page through `virt_to_page`
//! and `PageSlab`); one inside the vmalloc window is a huge block
//! (`is_vmalloc_addr`); one inside the bootstrap arena was handed out during
//! the boot and is left alone; NULL is nothing. Anything else was never ours:
//! it gets a kernel-style warning and nothing is freed (glibc would abort).
//!
//! **The fast path** of `malloc` is one comparison for the size range (0
//! until the machine is booted, so booting costs the fast path nothing),
//! one load of the cache pointer from a static table indexed by 8-byte size
//! step, and SLUB's lock-free per-CPU allocation, which needs nothing
//! but the cache and the rseq offset (`Kmem::kmalloc_alloc_rseq_area`; the
//! offset from a static, loaded beside the cache): 7 instructions of this
//! crate's own in front of the core's. `free` reads the linear map's
//! bounds, `mem_map` and the rseq offset through one pointer (`LINEAR_MAP`,
//! an empty map until the boot, so there is nothing to test for "booted");
//! the bounds test is `kfree`'s own first test, and `Kmem::kfree_fast`
//! does the rest without loading anything from the machine, which only the
//! declined frees load (`Kmem::kfree_finish`). No thread-locals of
//! its own (the fork gate's per-thread word is initial-exec TLS: no
//! `__tls_get_addr`), no locks, no `dlsym`.
//!
//! **One copy of each fast path.** `malloc`, `calloc`, `realloc` and `free`
//! are `#[inline(never)]`. The library's own Rust code (std's `System`
//! allocator, thread spawning, the backtrace symbolizer) calls the C
//! library's `malloc` and `free`, that is these, and link-time optimisation
//! used to copy their restartable sequences into each caller. Every copy
//! carries a 32-byte `rseq_cs` descriptor of two absolute addresses that
//! the loader must relocate in every process. There were 447 sequences;
//! now there are 49. The relocated data fell from 8 pages to 5 and the code
//! by 51 kB; the benchmarks' peak RSS fell by up to 112 kB (BENCHMARKS.md).
//! Programs call the exports through the PLT as before, so their cost is
//! unchanged (60 instructions a `malloc(64)`+`free` pair).
//!
//! **Errors** are the C library's: `errno = ENOMEM` and NULL on exhaustion,
//! `calloc`/`reallocarray` size overflow; `posix_memalign` returns `EINVAL`
//! for an alignment that is not a power-of-two multiple of `sizeof(void *)`,
//! `aligned_alloc` sets `EINVAL` for one that is not a power of two.
//! `realloc(p, 0)` frees `p` and returns NULL (as glibc).
//!
//! **realloc** keeps the block when the new size fits its usable size
//! (`ksize`) and is more than half of it; otherwise it moves (so shrinking
//! a big block gives memory back). A slab object's usable size is found
//! inline, as `free` finds its cache (`Kmem::ksize_fast`). A huge block
//! that must grow is given a quarter more than asked, so a buffer grown a
//! little at a time is copied O(log n) times.
//!
//! **fork** is handled below, in `kmem-hosted` (`fork.rs`): the child gets a
//! private copy of the machine's RAM.
#![deny(unsafe_op_in_unsafe_fn)]

mod bootstrap;
mod huge;
mod initmem;

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use kmem::kmalloc::{kmalloc_index, kmalloc_size, KfreeDeclined, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE};
use kmem::slab::KmemCache;
use kmem::{Gfp, Kmem, __GFP_ZERO, GFP_KERNEL, PAGE_SHIFT, PAGE_SIZE};
use kmem_hosted::HostedPlatform;

use bootstrap::{in_arena, machine_or_arena, NotReady};

/// What `malloc` guarantees (`alignof(max_align_t)` on x86-64).
pub(crate) const MALLOC_ALIGN: usize = 16;

/// The alignment `malloc(size)` gives: 16, or 8 for sizes up to 8 (no
/// object of 8 bytes or less needs more).
#[inline(always)]
fn malloc_align(size: usize) -> usize {
    if size <= 8 {
        8
    } else {
        MALLOC_ALIGN
    }
}

/// Entries of `MALLOC_CACHES`: one per 8-byte step of size up to
/// `KMALLOC_MAX_CACHE_SIZE`.
const SIZE_STEPS: usize = KMALLOC_MAX_CACHE_SIZE / 8;

/// The cache `malloc(size)` takes its object from, for every size from 1
/// to `KMALLOC_MAX_CACHE_SIZE`, at index `(size - 1) / 8` (sizes in one
/// 8-byte step share their cache): one load instead of the kernel's
/// `kmalloc_index` branches and a second table. Null until the machine is
/// booted and for a size whose cache cannot give malloc's alignment (a
/// debug layout). 8 KiB of pointers, of which the first 128 (sizes up to
/// 1 KiB, 16 cache lines) serve most programs.
pub(crate) static MALLOC_CACHES: [AtomicPtr<KmemCache>; SIZE_STEPS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; SIZE_STEPS];

/// `malloc`'s fast path serves the sizes `1..=MALLOC_FAST_BYTES`: 0 until
/// the boot has filled `MALLOC_CACHES` (Release), then the sizes below
/// the first null entry (all of them unless a debug layout misaligns a
/// cache). One comparison tests "small" and "booted": no null test.
pub(crate) static MALLOC_FAST_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The cache for `size` if the fast path serves it (see `MALLOC_FAST_BYTES`).
#[inline(always)]
fn small_cache(size: usize) -> Option<NonNull<KmemCache>> {
    let i = size.wrapping_sub(1);
    if !below_fast_bytes(i) {
        return None;
    }
    // The entries below `MALLOC_FAST_BYTES / 8` were non-null before it was published.
    // SAFETY: `i / 8 < MALLOC_FAST_BYTES / 8 <= SIZE_STEPS`, and those entries are non-null.
    unsafe {
        let c = MALLOC_CACHES.get_unchecked(i >> 3).load(Ordering::Relaxed);
        Some(NonNull::new_unchecked(c))
    }
}

/// `i < MALLOC_FAST_BYTES`, read with Acquire. On x86-64 the comparison
/// reads the static itself (a load has Acquire semantics there, and the
/// block orders the later loads after it, as it may write memory for all the
/// compiler knows), where LLVM keeps an atomic load out of the `cmp`: one
/// instruction less on `malloc`'s fast path.
#[inline(always)]
fn below_fast_bytes(i: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: reads the aligned word of an atomic static; writes nothing.
        unsafe {
            core::arch::asm!(
                "cmp {i}, qword ptr [rip + {fast}]",
                "jae {no}",
                i = in(reg) i,
                fast = sym MALLOC_FAST_BYTES,
                no = label { return false; },
                options(nostack),
            );
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        i < MALLOC_FAST_BYTES.load(Ordering::Acquire)
    }
}

/// The machine's rseq offset for `malloc`'s fast path, which runs only once
/// `small_cache` has seen `MALLOC_FAST_BYTES` nonzero (Acquire): the boot
/// publishes the linear map before it (Release). A static's field, its
/// load does not wait for that of the cache, as the cache's copy would
/// (`Kmem::kmalloc_alloc_rseq_area`).
#[inline(always)]
fn rseq_area() -> isize {
    // SAFETY: written once by the boot, before MALLOC_FAST_BYTES is published; read-only after.
    unsafe { (*BOOTED_LINEAR_MAP.0.get()).rseq_area }
}

/// The default machine, null until booted.
pub(crate) static KMEM: AtomicPtr<Kmem<HostedPlatform>> = AtomicPtr::new(ptr::null_mut());
/// The vmalloc window (length 0 until booted).
pub(crate) static VMALLOC_START: AtomicUsize = AtomicUsize::new(0);
pub(crate) static VMALLOC_LEN: AtomicUsize = AtomicUsize::new(0);

/// The default machine if booted.
#[inline(always)]
fn machine() -> Option<&'static Kmem<HostedPlatform>> {
    // SAFETY: KMEM is null or the default machine, published complete (Release) and never freed.
    unsafe { KMEM.load(Ordering::Acquire).as_ref() }
}

/// What `free` needs: the default machine's linear map
/// (`Kmem::page_offset`, `Kmem::max_low_pfn`) to tell kmalloc memory from
/// the rest, its page descriptors (`Kmem::mem_map`) and the rseq offset
/// (`Platform::rseq_offset`) for `Kmem::kfree_page`, and the machine for
/// the slow paths. `free` reads it through one pointer, `LINEAR_MAP`, which
/// is `NO_LINEAR_MAP` (no address inside) until the machine boots: no test
/// for "booted" on the fast path, and no load from the machine.
pub(crate) struct LinearMap {
    start: usize,
    pfns: usize,
    mem_map: *mut kmem::Page,
    rseq_area: isize,
    kmem: *const Kmem<HostedPlatform>,
}

// SAFETY: plain data; the machine it names is Sync and never freed.
unsafe impl Sync for LinearMap {}

/// The linear map before the boot: empty.
static NO_LINEAR_MAP: LinearMap = LinearMap {
    start: 0,
    pfns: 0,
    mem_map: ptr::null_mut(),
    rseq_area: 0,
    kmem: ptr::null(),
};

/// The booted machine's [`LinearMap`], written once by the boot before it
/// is published in `LINEAR_MAP`, and read-only after.
pub(crate) struct BootedLinearMap(core::cell::UnsafeCell<LinearMap>);
// SAFETY: written once, before its address is published with Release;
// readers get it through that Acquire load.
unsafe impl Sync for BootedLinearMap {}

pub(crate) static BOOTED_LINEAR_MAP: BootedLinearMap =
    BootedLinearMap(core::cell::UnsafeCell::new(LinearMap {
        start: 0,
        pfns: 0,
        mem_map: ptr::null_mut(),
        rseq_area: 0,
        kmem: ptr::null(),
    }));

/// `NO_LINEAR_MAP`, then `BOOTED_LINEAR_MAP`.
pub(crate) static LINEAR_MAP: AtomicPtr<LinearMap> =
    AtomicPtr::new(&NO_LINEAR_MAP as *const LinearMap as *mut LinearMap);

/// The booted map if `p` lies in the default machine's linear map
/// (kmalloc memory), with the frame of `p`: `Kmem::kfree`'s first test.
#[inline(always)]
fn kmalloc_map(p: *const u8) -> Option<(&'static LinearMap, usize)> {
    // SAFETY: `NO_LINEAR_MAP` or the booted map, published complete.
    let lm = unsafe { &*LINEAR_MAP.load(Ordering::Acquire) };
    let pfn = (p as usize).wrapping_sub(lm.start) >> PAGE_SHIFT;
    (pfn < lm.pfns).then_some((lm, pfn))
}

impl LinearMap {
    /// The machine (a map with frames is the booted one).
    #[inline(always)]
    fn kmem(&self) -> &'static Kmem<HostedPlatform> {
        // SAFETY: only the booted map has frames, and it names its machine (never freed).
        unsafe { &*self.kmem }
    }
}

/// Publish the booted machine `k` for `free` (once, from the boot).
pub(crate) fn publish_linear_map(k: &'static Kmem<HostedPlatform>) {
    // SAFETY: the boot runs once; nothing reads BOOTED_LINEAR_MAP before its address is stored below.
    unsafe {
        *BOOTED_LINEAR_MAP.0.get() = LinearMap {
            start: k.page_offset(),
            pfns: k.max_low_pfn(),
            mem_map: k.mem_map(),
            rseq_area: kmem::platform::Platform::rseq_offset(&k.platform),
            kmem: k,
        }
    };
    LINEAR_MAP.store(BOOTED_LINEAR_MAP.0.get(), Ordering::Release);
}

/// Sets `errno`.
#[inline]
fn set_errno(e: i32) {
    // SAFETY: __errno_location returns the calling thread's errno.
    unsafe { *libc::__errno_location() = e };
}

#[cold]
fn enomem() -> *mut c_void {
    set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// Writes to stderr without allocating.
pub(crate) fn write_stderr(mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: `b` is readable for its length.
        let n = unsafe { libc::write(2, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        b = &b[n as usize..];
    }
}

/// Formats into `buf` without allocating; returns the length (cut if too long).
pub(crate) fn fmt_into(buf: &mut [u8], args: core::fmt::Arguments<'_>) -> usize {
    struct W<'a>(&'a mut [u8], usize);
    impl core::fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let n = s.len().min(self.0.len() - self.1);
            self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
            self.1 += n;
            Ok(())
        }
    }
    let mut w = W(buf, 0);
    let _ = core::fmt::write(&mut w, args);
    w.1
}

/// Who handed out a pointer.
enum Owner {
    /// NULL.
    Null,
    /// kmalloc (slab object or large kmalloc), inside the linear map.
    Kmalloc(&'static Kmem<HostedPlatform>),
    /// A huge block, inside the vmalloc window.
    Huge(&'static Kmem<HostedPlatform>),
    /// The bootstrap arena.
    Arena,
    /// Not ours.
    Foreign,
}

#[inline]
fn owner(p: *const u8) -> Owner {
    let a = p as usize;
    if let Some((lm, _)) = kmalloc_map(p) {
        return Owner::Kmalloc(lm.kmem());
    }
    if let Some(k) = machine() {
        if a.wrapping_sub(VMALLOC_START.load(Ordering::Relaxed)) < VMALLOC_LEN.load(Ordering::Relaxed) {
            return Owner::Huge(k);
        }
    }
    if p.is_null() {
        return Owner::Null;
    }
    if in_arena(p) {
        return Owner::Arena;
    }
    Owner::Foreign
}

/// Reports a pointer that is not ours.
#[cold]
fn foreign(what: &str, p: *const u8) {
    let mut buf = [0u8; 160];
    let n = fmt_into(
        &mut buf,
        format_args!(
            "kmem: {what}: invalid pointer 0x{:016x} (not from libkmalloc)\n",
            p as usize
        ),
    );
    write_stderr(&buf[..n]);
}

// ---- allocation --------------------------------------------------------------

/// `malloc`: `size` bytes, 16-byte aligned (8 for sizes up to 8).
///
/// # Safety
/// Callable from any thread at any time (it is the C library's `malloc`).
#[no_mangle]
#[inline(never)] // One copy of the fast path: see "One copy" above.
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    if let Some(s) = small_cache(size) {
        // The per-CPU fast path inline, with nothing but the cache; the
        // rest is a tail call, so the fast path needs no stack frame.
        // SAFETY: `rseq_area()` is the machine's rseq offset.
        return match unsafe { Kmem::<HostedPlatform>::kmalloc_alloc_rseq_area(s, rseq_area(), GFP_KERNEL) } {
            Some(p) => p.as_ptr().cast(),
            None => cache_alloc_slow(s, GFP_KERNEL),
        };
    }
    alloc_slow(size, malloc_align(size), false)
}

/// `kmem_cache_alloc` of a malloc cache once its per-CPU fast paths had
/// nothing (`__slab_alloc`, or first the CAS fast path if the machine is
/// not in rseq mode): the object, or NULL with `errno` set.
#[cold]
#[inline(never)]
fn cache_alloc_slow(s: NonNull<KmemCache>, gfp: Gfp) -> *mut c_void {
    // SAFETY: the caches are published after KMEM (Release/Acquire).
    let k = unsafe { &*KMEM.load(Ordering::Relaxed) };
    let r = if <HostedPlatform as kmem::platform::Platform>::RSEQ_AREA {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { k.__slab_alloc(s, gfp) }
    } else {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { k.kmem_cache_alloc(s, gfp) } // No sequence ran: the CAS fast path first.
    };
    match r {
        Ok(p) => p.as_ptr().cast(),
        Err(_) => enomem(),
    }
}

/// `slub_debug`'s `U` under libkmalloc: set at boot when a malloc cache
/// stores its users, so that the tracks ("Allocated in", "Freed in") name
/// the program's call, not libkmalloc's own source lines.
pub(crate) static TRACK_CALLERS: AtomicBool = AtomicBool::new(false);

/// While alive, the tracks of this thread's allocations and frees record
/// the program's call: the innermost frame outside libkmalloc
/// (`caller_outside`, an unwind: only with `TRACK_CALLERS`).
struct ProgramCaller(bool);

impl ProgramCaller {
    #[inline(always)]
    fn enter() -> Self {
        if !TRACK_CALLERS.load(Ordering::Relaxed) {
            return ProgramCaller(false);
        }
        kmem_hosted::fork::set_caller_ip(kmem_hosted::platform::caller_outside(
            malloc as *const () as usize,
        ));
        ProgramCaller(true)
    }
}

impl Drop for ProgramCaller {
    fn drop(&mut self) {
        if self.0 {
            kmem_hosted::fork::set_caller_ip(0);
        }
    }
}

/// Everything but a small allocation on a booted machine: size 0, large and
/// huge sizes, alignments, zeroing, the boot. `align` is a power of two.
#[cold]
#[inline(never)]
fn alloc_slow(size: usize, align: usize, zero: bool) -> *mut c_void {
    let size = size.max(1);
    let k = match machine_or_arena(size, align) {
        Ok(k) => k,
        Err(NotReady::Arena(p)) => {
            // Arena memory is fresh .bss: already zero.
            return if p.is_null() { enomem() } else { p.cast() };
        }
    };
    // After the boot, which decides whether callers are tracked.
    let _caller = ProgramCaller::enter();
    let gfp = if zero { GFP_KERNEL | __GFP_ZERO } else { GFP_KERNEL };
    if size <= KMALLOC_MAX_SIZE && align <= KMALLOC_MAX_SIZE {
        // A small size whose cache was not usable (a debug layout), or a
        // large kmalloc, or an alignment kmalloc can give.
        let r = if size > KMALLOC_MAX_CACHE_SIZE && align <= PAGE_SIZE {
            // Whole pages: zero only what was asked, and only where the host
            // backs it (`zero_resident`).
            k.kmalloc_large_node(size, GFP_KERNEL, -1).inspect(|p| {
                if zero {
                    // SAFETY: the block holds at least `size` bytes.
                    unsafe { zero_resident(p.as_ptr(), size) };
                }
            })
        } else {
            k.kmalloc_aligned(size, align, gfp)
        };
        if let Ok(p) = r {
            return p.as_ptr().cast();
        }
        // A small block kmalloc could not give fails; one whose alignment
        // only whole pages give may still be had from vmalloc.
        if size <= KMALLOC_MAX_CACHE_SIZE && align <= PAGE_SIZE {
            return enomem();
        }
    }
    let p = huge::huge_alloc(k, size, align, zero);
    if p.is_null() {
        enomem()
    } else {
        p.cast()
    }
}

/// Requests from which `zero_resident` asks the host which pages it backs.
const ZERO_RESIDENT_MIN: usize = 64 << 10;

/// Zeroes `[p, p + size)` of a fresh large or huge block, skipping the
/// pages the RAM memfd does not back (`kmem_hosted::ram::for_each_backed_run`):
/// RAM given back to the host (free page reporting) or never written reads
/// as zero already, and writing zeroes there would make the host allocate
/// it, so a big `calloc` would cost its whole size in RSS at once, where
/// glibc and mimalloc hand out fresh `mmap` memory that costs only what the
/// program touches. The block is the caller's alone, so no page of it can
/// be filled meanwhile.
///
/// # Safety
/// `[p, p + size)` is writable memory of the caller's, mapped from the RAM
/// memfd (the linear map or a vmalloc area).
unsafe fn zero_resident(p: *mut u8, size: usize) {
    const PAGE: usize = kmem::PAGE_SIZE;
    if size < ZERO_RESIDENT_MIN {
        // SAFETY: caller contract.
        unsafe { ptr::write_bytes(p, 0, size) };
        return;
    }
    let (start, end) = (p as usize, p as usize + size);
    let first = start & !(PAGE - 1);
    let zero = |a: usize, b: usize| {
        let (a, b) = (a.max(start), b.min(end));
        // SAFETY: a part of the caller's range.
        unsafe { ptr::write_bytes(a as *mut u8, 0, b - a) };
    };
    // SAFETY: the pages around the caller's range belong to its mapping (caller contract).
    let known = unsafe {
        kmem_hosted::ram::for_each_backed_run(first, (end - first).div_ceil(PAGE), |a, pages| {
            zero(a, a + pages * PAGE)
        })
    };
    if known.is_err() {
        zero(start, end); // The host would not say: zero it all.
    }
}

/// `calloc`: `n * size` zeroed bytes; `ENOMEM` if the product overflows.
///
/// # Safety
/// As `malloc`.
#[no_mangle]
#[inline(never)] // One copy of the fast path: see "One copy" above.
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(bytes) = n.checked_mul(size) else {
        return enomem();
    };
    if let Some(s) = small_cache(bytes) {
        let gfp = GFP_KERNEL | __GFP_ZERO;
        // SAFETY: `rseq_area()` is the machine's rseq offset.
        return match unsafe { Kmem::<HostedPlatform>::kmalloc_alloc_rseq_area(s, rseq_area(), gfp) } {
            Some(p) => p.as_ptr().cast(),
            None => cache_alloc_slow(s, gfp),
        };
    }
    alloc_slow(bytes, malloc_align(bytes), true)
}

/// Aligned allocation: `align` is a power of two.
fn alloc_aligned(align: usize, size: usize) -> *mut c_void {
    if align <= malloc_align(size) {
        // SAFETY: plain malloc.
        return unsafe { malloc(size) };
    }
    alloc_slow(size, align, false)
}

/// `memalign`: `size` bytes aligned to `align`; an alignment that is not a
/// power of two is rounded up to one (glibc's leniency).
///
/// # Safety
/// As `malloc`.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(align) = align.checked_next_power_of_two() else {
        return enomem();
    };
    alloc_aligned(align, size)
}

/// `aligned_alloc` (C11): `EINVAL` if `align` is not a power of two.
///
/// # Safety
/// As `malloc`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    alloc_aligned(align, size)
}

/// `posix_memalign`: 0 and `*out` set, `EINVAL` for a bad alignment,
/// `ENOMEM` (with `*out` untouched) on exhaustion. `errno` is not changed.
///
/// # Safety
/// `out` is writable; otherwise as `malloc`.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<usize>()) {
        return libc::EINVAL;
    }
    // SAFETY: __errno_location is the calling thread's errno.
    let saved = unsafe { *libc::__errno_location() };
    let p = alloc_aligned(align, size);
    set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller gives a writable `out`.
    unsafe { *out = p };
    0
}

/// `valloc`: page-aligned.
///
/// # Safety
/// As `malloc`.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc_aligned(PAGE_SIZE, size)
}

/// `pvalloc`: page-aligned, size rounded up to whole pages (0 gives a page).
///
/// # Safety
/// As `malloc`.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(size) = size.max(1).checked_next_multiple_of(PAGE_SIZE) else {
        return enomem();
    };
    alloc_aligned(PAGE_SIZE, size)
}

// ---- freeing -----------------------------------------------------------------

/// `free`: NULL is a no-op; see the module documentation for how the owner
/// of a pointer is found.
///
/// # Safety
/// `p` is NULL or a live block from these functions.
#[no_mangle]
#[inline(never)] // One copy of the fast path: see "One copy" above.
pub unsafe extern "C" fn free(p: *mut c_void) {
    let p = p as *const u8;
    if let Some((lm, pfn)) = kmalloc_map(p) {
        // `Kmem::kfree_page`, with nothing loaded from the machine on the fast path.
        // `p` is kmalloc memory of the default machine (caller contract; kfree reports misuse).
        // SAFETY: `p` is on the page `mem_map + pfn`; `lm.rseq_area` is the machine's rseq offset.
        match unsafe { Kmem::<HostedPlatform>::kfree_fast(p, lm.mem_map.add(pfn), lm.rseq_area) } {
            Ok(()) => return,
            // Not an object the fast path can tell: `free_slow` starts over with the full `kfree`.
            Err(KfreeDeclined::Checks) => {}
            // A double free is not tried again (on another CPU the sequence would not see it); the object
            // of a full sheaf goes to the sheaf's slow path.
            // SAFETY: as above; the fast path did nothing.
            Err(why) => return unsafe { free_declined(p, why) },
        }
    }
    // SAFETY: forwarded.
    unsafe { free_slow(p) };
}

/// `Kmem::kfree_finish` for `free` (a function of its own, so `free` keeps
/// `p` where it came, in the first argument's register).
///
/// # Safety
/// As `Kmem::kfree_finish` on the default machine, which is booted.
#[cold]
#[inline(never)]
unsafe fn free_declined(p: *const u8, why: KfreeDeclined) {
    // SAFETY: published before the linear map in which `free` found `p`.
    let k = unsafe { &*KMEM.load(Ordering::Relaxed) };
    // SAFETY: forwarded.
    unsafe { k.kfree_finish(p, why) }
}

/// `free` of anything but kmalloc memory.
///
/// # Safety
/// As `free`.
#[cold]
#[inline(never)]
unsafe fn free_slow(p: *const u8) {
    let _caller = ProgramCaller::enter();
    match owner(p) {
        Owner::Null | Owner::Arena => {}
        // SAFETY: forwarded.
        Owner::Kmalloc(k) => unsafe { k.kfree(p) },
        // SAFETY: forwarded.
        Owner::Huge(k) => unsafe { huge::huge_free(k, p) },
        Owner::Foreign => foreign("free", p),
    }
}

/// `malloc_usable_size`: the bytes usable at `p` (0 for NULL).
///
/// # Safety
/// `p` is NULL or a live block from these functions.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: forwarded.
    unsafe { usable_size(p as *const u8, "malloc_usable_size") }
}

/// # Safety
/// As `malloc_usable_size`.
unsafe fn usable_size(p: *const u8, what: &str) -> usize {
    match owner(p) {
        Owner::Null => 0,
        Owner::Kmalloc(k) => k.ksize(p),
        // SAFETY: a live huge block (caller contract).
        Owner::Huge(_) => unsafe { huge::huge_usable_size(p) },
        // SAFETY: an arena block.
        Owner::Arena => unsafe { bootstrap::arena_size(p) },
        Owner::Foreign => {
            foreign(what, p);
            0
        }
    }
}

// ---- reallocation --------------------------------------------------------------

/// `realloc`: NULL behaves as `malloc`, size 0 frees and returns NULL (as
/// glibc); otherwise the contents up to the smaller size are kept. On
/// failure `p` is untouched and NULL is returned with `ENOMEM`.
///
/// # Safety
/// `p` is NULL or a live block from these functions; on success it must
/// not be used again (unless returned).
#[no_mangle]
#[inline(never)] // One copy of the fast path: see "One copy" above.
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // A slab object that keeps its place, found as `free` finds it (NULL is
    // not in the linear map; size 0 frees).
    if let Some((lm, pfn)) = kmalloc_map(p as *const u8) {
        // SAFETY: `p` lies in the linear map, on the page `mem_map + pfn`.
        let usable = unsafe { Kmem::<HostedPlatform>::ksize_fast(p as *const u8, lm.mem_map.add(pfn)) };
        if usable.is_some_and(|u| size != 0 && stays_in_place(size, u)) {
            return p;
        }
    }
    // SAFETY: forwarded.
    unsafe { realloc_slow(p, size) }
}

/// `realloc` of anything but a slab object that keeps its place.
///
/// # Safety
/// As `realloc`.
#[cold]
#[inline(never)]
unsafe fn realloc_slow(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        // SAFETY: plain malloc.
        return unsafe { malloc(size) };
    }
    if size == 0 {
        // SAFETY: forwarded.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    let old = p as *mut u8;
    let kind = owner(old);
    let usable = match kind {
        Owner::Kmalloc(k) => k.ksize(old),
        // SAFETY: a live huge block.
        Owner::Huge(_) => unsafe { huge::huge_usable_size(old) },
        // SAFETY: an arena block.
        Owner::Arena => unsafe { bootstrap::arena_size(old) },
        Owner::Null => 0,
        Owner::Foreign => {
            foreign("realloc", old);
            return enomem();
        }
    };
    if usable == 0 && !matches!(kind, Owner::Arena) {
        // ksize already warned: not a live kmalloc block.
        return enomem();
    }
    if stays_in_place(size, usable) && !matches!(kind, Owner::Arena) {
        return p;
    }
    let want = match kind {
        // Grow huge blocks geometrically.
        Owner::Huge(_) if size > usable => size.max(usable.saturating_add(usable / 4)),
        // A small block that grows takes kmalloc's class for its new size (a
        // power of two, or 96 or 192), not one of malloc's middle classes
        // (`bootstrap::MALLOC_MID_CLASSES`): room to grow in place again, and
        // a string grown a few bytes at a time passes through no more
        // caches than before they existed.
        _ if size > usable && size <= KMALLOC_MAX_CACHE_SIZE => kmalloc_size(kmalloc_index(size)),
        _ => size,
    };
    // SAFETY: plain malloc.
    let mut new = unsafe { malloc(want) };
    if new.is_null() && want != size {
        // SAFETY: plain malloc.
        new = unsafe { malloc(size) };
    }
    if new.is_null() {
        return enomem();
    }
    // SAFETY: both blocks hold at least min(usable, size) bytes; distinct blocks.
    unsafe {
        ptr::copy_nonoverlapping(old, new as *mut u8, usable.min(size));
        free(p);
    }
    new
}

/// Whether `realloc` to `size` (not 0) keeps a block of `usable` bytes:
/// if it fits and would not fit a class half the size (a shrink to less
/// than half moves, so the rest is not held for good).
#[inline(always)]
fn stays_in_place(size: usize, usable: usize) -> bool {
    size <= usable && (size > usable / 2 || usable <= MALLOC_ALIGN)
}

/// `reallocarray`: `realloc` to `n * size` bytes; `ENOMEM` (and `p`
/// untouched) if the product overflows.
///
/// # Safety
/// As `realloc`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded.
        Some(bytes) => unsafe { realloc(p, bytes) },
        None => enomem(),
    }
}
