//! kmalloc as the process's Rust allocator, and the default-machine aliases.
//!
//! ```rust,no_run
//! #[global_allocator]
//! static A: kmem_hosted::KmemAlloc = kmem_hosted::KmemAlloc;
//!
//! fn main() {
//!     let s = String::from("in kmalloc-16");
//!     assert!(kmem_hosted::default_machine().virt_addr_valid(s.as_ptr()));
//! }
//! ```
//!
//! Every `Box`, `Vec` and `String` of the program then lives in the default
//! machine (`default_machine()`, booted from `KMEM_CMDLINE` on the first
//! allocation) and shows up in its statistics: small allocations in the
//! `kmalloc-N` caches, those above 8 KiB as `kvmalloc` places them (large
//! kmallocs of compound pages, tried without retrying, and else vmalloc
//! areas, which is also where everything above kmalloc's 4 MiB goes).
//! Alignments above 8 use a size class whose objects are aligned that much
//! (the power-of-two classes are naturally aligned), or whole pages.
//!
//! **Booting without recursion.** Booting the machine allocates (the kswapd
//! threads, their names, an error message). While the first allocation
//! boots the machine, every allocation — from that thread or any other —
//! goes to the C library's `malloc`. Frees tell the two apart by address:
//! kmalloc memory is inside the machine's linear map, anything else is the C
//! library's, so those early blocks go back to `free`. If the machine cannot
//! boot, the reason goes to stderr (`kmem: default machine (KMEM_CMDLINE=...):
//! ...; allocating with malloc`) and the process keeps using `malloc`.
//!
//! Allocations use `GFP_KERNEL`: they may reclaim, and fail (returning
//! null, which Rust turns into `handle_alloc_error`) only when the machine
//! is really out of memory.

use crate::HostedPlatform;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use kmem::{Kmem, __GFP_ZERO, GFP_KERNEL};

/// `KBox<T>` on the default machine: `kmem_hosted::KBox::new(x, GFP_KERNEL)?`.
pub type KBox<T> = kmem::KBox<'static, T, HostedPlatform>;
/// A typed slab cache on a hosted machine.
///
/// Its objects outlive any one allocation, so the compiler refuses to use a
/// cache of `&'static str` as one of a shorter-lived `&str` (the cache is
/// invariant in `T`):
///
/// ```compile_fail
/// use kmem_hosted::{KmemCache, Machine};
/// let m = Machine::boot("quiet mem=64M").unwrap();
/// let cache: KmemCache<'_, &'static str> = KmemCache::new(&m, "strs").unwrap();
/// let s = String::from("short-lived");
/// let short: &KmemCache<'_, &str> = &cache;
/// *short.alloc(kmem::GFP_KERNEL).unwrap() = s.as_str();
/// ```
///
/// and `T` must be `Send`, since whichever thread frees a slab drops its
/// objects' `T`s:
///
/// ```compile_fail
/// use kmem_hosted::{KmemCache, Machine};
/// let m = Machine::boot("quiet mem=64M").unwrap();
/// let cache: KmemCache<'_, std::rc::Rc<u8>> = KmemCache::new(&m, "rcs").unwrap();
/// ```
///
/// (Both compile with a `String` or a `&'static str` in place of the
/// offending type.)
pub type KmemCache<'k, T> = kmem::kbox::KmemCache<'k, T, HostedPlatform>;
/// An object of a hosted typed slab cache.
pub type CacheBox<'a, T> = kmem::CacheBox<'a, T, HostedPlatform>;
/// kmalloc as an `allocator_api2` allocator on a hosted machine.
pub type KmallocAllocator<'k> = kmem::KmallocAllocator<'k, HostedPlatform>;
/// kvmalloc as an `allocator_api2` allocator on a hosted machine.
pub type KVmallocAllocator<'k> = kmem::KVmallocAllocator<'k, HostedPlatform>;

impl kmem::DefaultMachine for HostedPlatform {
    fn default_machine() -> &'static Kmem<HostedPlatform> {
        crate::default_machine().kmem()
    }
}

/// The `#[global_allocator]` over the default machine's kmalloc.
#[derive(Clone, Copy, Debug, Default)]
pub struct KmemAlloc;

const UNINIT: u8 = 0;
const BOOTING: u8 = 1;
const READY: u8 = 2;
/// The default machine could not boot: `malloc` serves for good.
const FAILED: u8 = 3;

/// UNINIT → BOOTING (one thread boots) → READY.
static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// The default machine, once READY.
static KMEM: AtomicPtr<Kmem<HostedPlatform>> = AtomicPtr::new(ptr::null_mut());
/// The machine's linear map `[LINEAR_START, LINEAR_START + LINEAR_LEN)`;
/// length 0 until READY, so every pointer is the C library's before then.
static LINEAR_START: AtomicUsize = AtomicUsize::new(0);
static LINEAR_LEN: AtomicUsize = AtomicUsize::new(0);

/// The machine, or `None` while it boots (use the C library meanwhile).
#[inline(always)]
fn machine() -> Option<&'static Kmem<HostedPlatform>> {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: stored before READY was published; the default machine lives forever.
        Some(unsafe { &*KMEM.load(Ordering::Relaxed) })
    } else {
        boot()
    }
}

#[cold]
#[inline(never)]
fn boot() -> Option<&'static Kmem<HostedPlatform>> {
    if STATE
        .compare_exchange(UNINIT, BOOTING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Booting (here or in another thread), or READY meanwhile.
        return if STATE.load(Ordering::Acquire) == READY {
            // SAFETY: as in `machine`.
            Some(unsafe { &*KMEM.load(Ordering::Relaxed) })
        } else {
            None
        };
    }
    let m = match crate::machine::boot_default_machine(|_| {}) {
        Ok(m) => m,
        Err(e) => {
            // A panic here would abort the process (an allocator must not
            // unwind); allocations while printing go to `malloc` (BOOTING).
            eprintln!(
                "kmem: default machine (KMEM_CMDLINE={:?}): {e}; allocating with malloc",
                crate::machine::env_cmdline()
            );
            STATE.store(FAILED, Ordering::Release);
            return None;
        }
    };
    KMEM.store(
        m.kmem() as *const Kmem<HostedPlatform> as *mut _,
        Ordering::Relaxed,
    );
    LINEAR_START.store(m.ram().base(), Ordering::Relaxed);
    LINEAR_LEN.store(m.ram().size(), Ordering::Release);
    STATE.store(READY, Ordering::Release);
    Some(m.kmem())
}

/// The machine, if `p` is kmalloc memory (inside its linear map); a
/// vmalloc area or C library memory otherwise (`dealloc_other`).
#[inline(always)]
fn owner(p: *mut u8) -> Option<&'static Kmem<HostedPlatform>> {
    let len = LINEAR_LEN.load(Ordering::Acquire);
    if (p as usize).wrapping_sub(LINEAR_START.load(Ordering::Relaxed)) < len {
        // SAFETY: LINEAR_LEN is published after KMEM; the machine lives forever.
        Some(unsafe { &*KMEM.load(Ordering::Relaxed) })
    } else {
        None
    }
}

/// The machine, if `p` is in its vmalloc window.
fn vmalloc_owner(p: *mut u8) -> Option<&'static Kmem<HostedPlatform>> {
    if LINEAR_LEN.load(Ordering::Acquire) == 0 {
        return None;
    }
    // SAFETY: LINEAR_LEN is published after KMEM; the machine lives forever.
    let m = unsafe { &*KMEM.load(Ordering::Relaxed) };
    m.is_vmalloc_addr(p).then_some(m)
}

/// Free what `alloc` gave that is not in the linear map: a vmalloc area
/// (large blocks) or a block of the C library (from the boot window).
///
/// # Safety
/// `p` came from `KmemAlloc::alloc` and is not used afterwards.
#[cold]
#[inline(never)]
unsafe fn dealloc_other(p: *mut u8) {
    match vmalloc_owner(p) {
        Some(m) => m.vfree(p),
        // SAFETY: C library memory from `libc_alloc`.
        None => unsafe { libc::free(p as *mut libc::c_void) },
    }
}

/// `malloc`'s guaranteed alignment on x86-64 and aarch64 glibc.
const MALLOC_ALIGN: usize = 16;

/// Allocate from the C library (while the machine boots).
///
/// # Safety
/// `layout` has a non-zero size.
unsafe fn libc_alloc(layout: Layout, zeroed: bool) -> *mut u8 {
    if layout.align() <= MALLOC_ALIGN && layout.align() <= layout.size() {
        // SAFETY: plain C allocations.
        unsafe {
            if zeroed {
                libc::calloc(1, layout.size()) as *mut u8
            } else {
                libc::malloc(layout.size()) as *mut u8
            }
        }
    } else {
        let mut out: *mut libc::c_void = ptr::null_mut();
        let align = layout.align().max(core::mem::size_of::<usize>());
        // SAFETY: `out` is a valid place; align is a power of two multiple of the pointer size.
        if unsafe { libc::posix_memalign(&mut out, align, layout.size()) } != 0 {
            return ptr::null_mut();
        }
        if zeroed {
            // SAFETY: `out` holds layout.size() bytes.
            unsafe { ptr::write_bytes(out as *mut u8, 0, layout.size()) };
        }
        out as *mut u8
    }
}

// SAFETY: kmalloc_layout honours size and alignment and hands out memory no
// one else uses until kfree; C library blocks are told apart by address and
// returned to the C library.
unsafe impl GlobalAlloc for KmemAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match machine() {
            Some(m) if layout.size() != 0 => m
                .kvmalloc_layout(layout, GFP_KERNEL)
                .map_or(ptr::null_mut(), NonNull::as_ptr),
            // SAFETY: non-zero size (GlobalAlloc contract; zero is refused below).
            None if layout.size() != 0 => unsafe { libc_alloc(layout, false) },
            _ => ptr::null_mut(),
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match machine() {
            Some(m) if layout.size() != 0 => m
                .kvmalloc_layout(layout, GFP_KERNEL | __GFP_ZERO)
                .map_or(ptr::null_mut(), NonNull::as_ptr),
            // SAFETY: non-zero size.
            None if layout.size() != 0 => unsafe { libc_alloc(layout, true) },
            _ => ptr::null_mut(),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        match owner(p) {
            // SAFETY: kmalloc memory of the default machine, from `alloc`.
            Some(m) => unsafe { m.kfree(p) },
            // SAFETY: forwarded: a vmalloc area or C library memory from `alloc`.
            None => unsafe { dealloc_other(p) },
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc contract: the new layout is valid.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if let Some(m) = owner(p).or_else(|| vmalloc_owner(p)) {
            // SAFETY: a live allocation of `m` for `layout`; new_size is non-zero.
            return match unsafe { m.kvmalloc_resize(NonNull::new_unchecked(p), layout, new, GFP_KERNEL) } {
                Ok(q) => q.as_ptr(),
                Err(_) => ptr::null_mut(),
            };
        }
        // A block from the boot window: stays with the C library.
        if layout.align() <= MALLOC_ALIGN && layout.align() <= new_size {
            // SAFETY: a C library block.
            return unsafe { libc::realloc(p as *mut libc::c_void, new_size) as *mut u8 };
        }
        // SAFETY: non-zero size.
        let q = unsafe { libc_alloc(new, false) };
        if !q.is_null() {
            // SAFETY: both blocks hold at least min(old, new) bytes.
            unsafe {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                libc::free(p as *mut libc::c_void);
            }
        }
        q
    }
}

/// Allocations made through the C library while the default machine booted
/// are not counted anywhere; this says whether the machine is serving now.
pub fn kmem_alloc_ready() -> bool {
    STATE.load(Ordering::Acquire) == READY
}
