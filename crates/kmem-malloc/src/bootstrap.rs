//! Booting the default machine from inside `malloc`, and the bootstrap arena.
//!
//! The first `malloc` of the process boots the default machine
//! (`kmem_hosted::machine::boot_default_machine`, from `KMEM_CMDLINE`). The
//! boot itself allocates — `Vec`s, formatted names, glibc's `pthread_atfork`
//! list, an error message — and every one of those allocations comes back
//! here, re-entrantly, as do allocations of other threads while the boot
//! runs. They are served from the **bootstrap arena**, a static 1 MiB
//! buffer in `.bss` (no memory until touched; `cold-bss.ld` puts it after
//! the small statics) carved by an atomic bump pointer: each block is
//! preceded by a 16-byte header holding its size, so `realloc` and
//! `malloc_usable_size` work on it. Arena blocks are never
//! reused: `free` recognises them by address and does nothing. Nothing here
//! uses thread-locals, `dlsym` or locks, so nothing can recurse.
//!
//! **States.** `STATE` goes UNINIT → BOOTING (the one thread whose
//! compare-and-swap won boots) → READY, publishing the machine and the
//! tables the fast paths read (`crate::KMEM`, `crate::LINEAR_MAP`, then
//! `crate::MALLOC_CACHES` and `crate::MALLOC_FAST_BYTES`)
//! before READY. If the arena runs out while another thread
//! boots, a caller waits for READY; the booting thread itself gets `ENOMEM`.
//! If the machine cannot boot (a bad `KMEM_CMDLINE`), the reason is printed
//! and the process aborts: there is no other allocator to fall back on.
//!
//! **Defaults** for what `KMEM_CMDLINE` leaves unset:
//! * `mem=8G` unless `memmap=` is given, or less under an address-space
//!   limit (`ulimit -v`): RAM and vmalloc window within half of it
//!   ([`default_mem`]; at 14 GB, 3.5 GB). The RAM is sparse and the boot
//!   leaves the memmap of free memory untouched, so a larger machine costs
//!   little (at 4G, the first `malloc` booted in 0.44 ms at `mem=1G` and at
//!   4G and 0.65 at 64G). A program that needs more asks with `mem=`.
//! * `kmem.lowmem=` half of `mem=` (4G) unless it or `highmem=` is given,
//!   and `kmem.private_lowmem=1`: lowmem, where kmalloc, the slabs and the
//!   page allocator's kernel allocations live, is private anonymous memory
//!   of the process, and the rest is HighMem in the RAM memfd, where
//!   vmalloc (the blocks above 4 MiB) takes its pages and maps them a
//!   second time (`kmem_hosted::ram`; the memfd is made when the first
//!   such block needs it, not at boot). A `fork` child then gets lowmem
//!   copy-on-write from the kernel instead of a copy of every page in use:
//!   a `fork` with 8 MB of small blocks live took 7.2 ms and takes 0.9; a
//!   shell script of 300 command substitutions ran 1.8 s under libkmalloc
//!   and runs 1.2 (mimalloc 1.0, glibc 0.86). Lowmem caps the small
//!   blocks (up to 4 MiB each) at 4 GiB and HighMem the huge ones.
//! * A flat firmware map unless `memmap=` gives one ([`flat_memory_map`]):
//!   RAM from 4 MiB up to `mem=`, the first 4 MiB reserved, where the
//!   hosted default is a PC's (RAM below 640 KiB and from 1 MiB, a hole
//!   below 4 GiB). Every free block of a flat map is a max-order block,
//!   whose page descriptors the boot leaves unwritten; the PC map's odd
//!   ranges made the boot write the heads of some twenty smaller blocks, on
//!   ten pages of the memmap.
//! * `kmem.kmalloc_min_objects=128` unless `slub_min_objects` is given: the
//!   kmalloc caches' slabs hold at least 128 objects, up to
//!   `slub_max_order`, where the kernel's rule for two CPUs asks for 12. A
//!   program that keeps many objects alive takes the slab slow paths a slab
//!   at a time, and a larger slab takes them fewer times; the other caches
//!   keep the kernel's orders.
//! * `kmem.kmalloc_lazy=1`: `malloc` uses the normal kmalloc caches only; the
//!   26 `dma-kmalloc-N` and `kmalloc-rcl-N` caches are made if something
//!   asks for one. Making them at boot cost every program 28 kB and 9 % of
//!   the boot's instructions.
//! * `kmem.kmalloc_freeptr_start=1`: a free object of `malloc`'s caches
//!   keeps its free pointer in its first word, as glibc's and mimalloc's
//!   do, not in its middle one as the kernel's do. A program touches the
//!   start of its objects last before freeing them, so when the sheaves
//!   give objects back to their slabs the pointer's store finds the line
//!   still cached: in `mallocbench frag 48` (cachegrind, 512 KiB last
//!   level) the store's last-level misses went from 161,000 to 41,000, and
//!   the run's from 1.59 to 1.44 million (mimalloc 1.41 million).
//! * No kswapd thread: a library must not add a thread to every program (it
//!   would make single-threaded programs multi-threaded, and a forked child
//!   would not have it).
//! * The boot log kept in the machine's log only (later warnings and
//!   `slub_debug` reports still go to stderr unless `quiet` is given).

use core::ptr;
use core::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};
use kmem::kmalloc::{kmalloc_index, kmalloc_size, KMALLOC_SHIFT_HIGH};
use kmem::slab::KmemCache;
use kmem::Kmem;
use kmem_hosted::HostedPlatform;

const UNINIT: u8 = 0;
const BOOTING: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// Thread id of the booting thread.
static BOOT_TID: AtomicI32 = AtomicI32::new(0);

/// Where the flat memory map's RAM starts (the `4M` of [`flat_memory_map`]'s
/// line): the first 4 MiB are reserved.
const FLAT_RAM_START: u64 = 4 << 20;

/// The default machine's firmware map unless `KMEM_CMDLINE` gives one
/// (`memmap=`): RAM from 4 MiB up to `mem=` (8 GiB by default), below it a
/// reserved range, as `memmap=exactmap memmap=4M$0 memmap=<mem - 4M>@4M`
/// would say; see "Defaults" in the module's documentation. A `mem=` below
/// 16 MiB keeps the PC layout (and its errors, such as `mem=1M`'s).
fn flat_memory_map(p: &mut kmem::cmdline::BootParams) {
    let mem = p.mem.unwrap_or(kmem_hosted::machine::DEFAULT_MEM);
    if !p.memmap().is_empty() || mem < 4 * FLAT_RAM_START {
        return;
    }
    const HEAD: &[u8] = b"memmap=exactmap memmap=4M$0 memmap=";
    const TAIL: &[u8] = b"K@4M";
    // The RAM's size in KiB, in decimal, written by hand: `core::fmt` here
    // would fault in a page of code outside the boot's (see `hot-text.ld`).
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut kib = (mem - FLAT_RAM_START) >> 10;
    loop {
        i -= 1;
        digits[i] = b'0' + (kib % 10) as u8;
        kib /= 10;
        if kib == 0 {
            break;
        }
    }
    let mut line = [0u8; HEAD.len() + 20 + TAIL.len()];
    let n = HEAD.len() + digits.len() - i;
    line[..HEAD.len()].copy_from_slice(HEAD);
    line[HEAD.len()..n].copy_from_slice(&digits[i..]);
    line[n..n + TAIL.len()].copy_from_slice(TAIL);
    if let Ok(line) = core::str::from_utf8(&line[..n + TAIL.len()]) {
        p.parse_more(line);
    }
}

/// The default machine's RAM unless `KMEM_CMDLINE` gives `mem=` or
/// `memmap=`: 8 GiB, half of it lowmem (see "Defaults" above), or less
/// under an address-space limit ([`default_mem`]).
const MEM: u64 = 8 << 30;

/// The address-space limit (`ulimit -v`, `RLIMIT_AS`), if there is one.
fn address_space_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is writable.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// `mem=`: [`MEM`], or under an address-space limit RAM of a quarter of it
/// (a multiple of 16 MiB, at most [`MEM`]): with a vmalloc window as large
/// (below), the two take at most half of the limit, leaving the rest to the
/// program; never below 16 MiB, the flat map's least (a limit under about
/// 70 MB fails the boot, saying so).
fn default_mem() -> u64 {
    address_space_limit().map_or(MEM, |limit| {
        (limit / 4 / (16 << 20) * (16 << 20)).clamp(4 * FLAT_RAM_START, MEM)
    })
}

/// Lowmem and HighMem, lowmem private: `mem=8G kmem.lowmem=<half of mem=>
/// kmem.private_lowmem=1` for what `KMEM_CMDLINE` leaves unset (see
/// "Defaults" above). Under an address-space limit, also `vmalloc=` as large
/// as the RAM (below the hosted default's 1 GiB least: the window maps
/// HighMem, half the RAM).
fn lowmem_and_highmem(p: &mut kmem::cmdline::BootParams) {
    if p.mem.is_none() && p.memmap().is_empty() {
        p.mem = Some(default_mem());
    }
    if p.vmalloc.is_none() && address_space_limit().is_some() {
        p.vmalloc = Some(p.mem.unwrap_or(MEM));
    }
    if p.highmem.is_none() && p.kmem_lowmem.is_none() {
        let mem = p.mem.unwrap_or(MEM);
        p.kmem_lowmem = Some((mem / 2).max(kmem::e820::MIN_LOWMEM));
    }
    if p.kmem_private_lowmem.is_none() {
        p.kmem_private_lowmem = Some(true);
    }
}

/// `kmem.kmalloc_min_objects` unless `KMEM_CMDLINE` sets it or
/// `slub_min_objects`: see "Defaults" above.
const KMALLOC_MIN_OBJECTS: u32 = 128;

/// Size of the bootstrap arena.
pub const ARENA_SIZE: usize = 1 << 20;
/// Header before each arena block (its size), and the arena's minimum alignment.
const HDR: usize = 16;

#[repr(C, align(4096))]
struct Arena(core::cell::UnsafeCell<[u8; ARENA_SIZE]>);
// SAFETY: blocks are carved out by an atomic bump pointer; each belongs to
// the caller that carved it.
unsafe impl Sync for Arena {}

/// Zeroed and rarely written: after the small statics (`cold-bss.ld` of libkmalloc).
#[link_section = ".bss.kmem_cold"]
static ARENA: Arena = Arena(core::cell::UnsafeCell::new([0; ARENA_SIZE]));
/// Bytes of the arena handed out (bump pointer).
static ARENA_USED: AtomicUsize = AtomicUsize::new(0);

#[inline]
fn arena_base() -> usize {
    ARENA.0.get() as usize
}

/// Whether `p` points into the bootstrap arena.
#[inline]
pub fn in_arena(p: *const u8) -> bool {
    (p as usize).wrapping_sub(arena_base()) < ARENA_SIZE
}

/// The size recorded for an arena block.
///
/// # Safety
/// `p` is a block returned by `arena_alloc`.
pub unsafe fn arena_size(p: *const u8) -> usize {
    // SAFETY: every block has its header right before it.
    unsafe { ptr::read((p as usize - HDR) as *const usize) }
}

/// Carves `size` bytes aligned to `align` (a power of two, at most 4096) out
/// of the arena; null when it is exhausted.
fn arena_alloc(size: usize, align: usize) -> *mut u8 {
    let align = align.max(HDR);
    let mut used = ARENA_USED.load(Ordering::Relaxed);
    loop {
        let start = (arena_base() + used + HDR + align - 1) & !(align - 1);
        let Some(end) = start.checked_add(size.max(1)) else {
            return ptr::null_mut();
        };
        let new_used = end - arena_base();
        if new_used > ARENA_SIZE {
            return ptr::null_mut();
        }
        match ARENA_USED.compare_exchange_weak(used, new_used, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                // SAFETY: `[start - HDR, end)` lies in the arena and is ours now.
                unsafe { ptr::write((start - HDR) as *mut usize, size) };
                return start as *mut u8;
            }
            Err(u) => used = u,
        }
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// What a caller without a ready machine should do.
pub enum NotReady {
    /// Use this arena block (null: out of memory).
    Arena(*mut u8),
}

/// The machine once booted; otherwise boots it (first caller) or serves the
/// request from the arena. `size`/`align` describe the request.
#[cold]
#[inline(never)]
pub fn machine_or_arena(size: usize, align: usize) -> Result<&'static Kmem<HostedPlatform>, NotReady> {
    loop {
        match STATE.load(Ordering::Acquire) {
            READY => {
                // SAFETY: published before READY; the default machine lives forever.
                return Ok(unsafe { &*crate::KMEM.load(Ordering::Relaxed) });
            }
            UNINIT => {
                if STATE
                    .compare_exchange(UNINIT, BOOTING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    BOOT_TID.store(gettid(), Ordering::Relaxed);
                    crate::initmem::run_on_boot_stack(boot);
                }
            }
            _ => {
                let p = if align <= 4096 {
                    arena_alloc(size, align)
                } else {
                    ptr::null_mut()
                };
                if !p.is_null() || BOOT_TID.load(Ordering::Relaxed) == gettid() {
                    return Err(NotReady::Arena(p));
                }
                // Arena exhausted while another thread boots: wait for it.
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }
}

/// Boots the default machine and publishes it (the thread that moved
/// `STATE` to BOOTING), then drops the boot-only code (`initmem.rs`). Never
/// inlined: `scripts/hot-text.sh` finds the end of the boot at its return.
#[inline(never)]
extern "C" fn boot() {
    // Instruction counting under valgrind only (see the function's docs):
    // valgrind has no rseq, so without this the count is of the cmpxchg16b
    // fast paths, which no real run takes. Never set it in a threaded run.
    // SAFETY: a NUL-terminated name; getenv does not allocate.
    let emulate = unsafe { libc::getenv(c"KMEM_EMULATE_RSEQ".as_ptr()) };
    // SAFETY: getenv returned null or a NUL-terminated string.
    if !emulate.is_null() && unsafe { core::ffi::CStr::from_ptr(emulate) }.to_bytes() == b"1" {
        kmem_hosted::platform::emulate_rseq_for_instruction_counts();
    }
    let mut user_quiet = false;
    let r = kmem_hosted::machine::boot_default_machine(|p| {
        if p.kswapd.is_none() {
            p.kswapd = Some(false);
        }
        if p.kmem_kmalloc_min_objects.is_none() && p.slub_min_objects.is_none() {
            p.kmem_kmalloc_min_objects = Some(KMALLOC_MIN_OBJECTS);
        }
        if p.kmem_kmalloc_lazy.is_none() {
            p.kmem_kmalloc_lazy = Some(true);
        }
        if p.kmem_kmalloc_freeptr_start.is_none() {
            p.kmem_kmalloc_freeptr_start = Some(true);
        }
        lowmem_and_highmem(p);
        flat_memory_map(p);
        user_quiet = p.quiet;
        p.quiet = true;
    });
    let m = match r {
        Ok(m) => m,
        Err(e) => {
            let mut buf = [0u8; 512];
            let n = crate::fmt_into(
                &mut buf,
                format_args!(
                    "kmem: libkmalloc cannot boot the default machine (KMEM_CMDLINE={:?}): {e}{}\n",
                    kmem_hosted::machine::env_cmdline(),
                    if address_space_limit().is_some() {
                        " (under an address-space limit, ulimit -v: the machine's RAM and its \
                         vmalloc window take up to half of it, at least 32 MiB)"
                    } else {
                        ""
                    }
                ),
            );
            crate::write_stderr(&buf[..n]);
            // SAFETY: abort has no preconditions.
            unsafe { libc::abort() };
        }
    };
    let k: &'static Kmem<HostedPlatform> = m.kmem();
    crate::VMALLOC_START.store(k.vmalloc_start(), Ordering::Relaxed);
    crate::VMALLOC_LEN.store(k.vmalloc_end() - k.vmalloc_start(), Ordering::Relaxed);
    // Publish the machine (the slow paths read it), then its linear map
    // (free's test), then the caches (malloc's fast path), each with Release.
    crate::KMEM.store(k as *const _ as *mut _, Ordering::Release);
    crate::publish_linear_map(k);
    let mut caches = [ptr::null_mut(); KMALLOC_SHIFT_HIGH + 1];
    for (idx, c) in caches.iter_mut().enumerate() {
        *c = malloc_cache(k, idx);
    }
    let mid = MALLOC_MID_CLASSES.map(|(name, size)| (size, mid_cache(k, name, size)));
    let mut fast = crate::MALLOC_CACHES.len();
    // The slots in runs: a slot takes the first middle class at least as
    // large as its size and below its kmalloc class, if any, else that
    // kmalloc class; every slot up to the chosen class's size takes the
    // same one (the classes are sorted, and so are the slots).
    let mut first_mid = 0;
    let mut i = 0;
    while i < crate::MALLOC_CACHES.len() {
        let size = i * 8 + 8;
        let idx = kmalloc_index(size);
        while first_mid < mid.len() && mid[first_mid].0 < size {
            first_mid += 1;
        }
        let (bound, c) = match mid[first_mid..]
            .iter()
            .take_while(|&&(m, _)| m < kmalloc_size(idx))
            .find(|&&(_, c)| !c.is_null())
        {
            Some(&(m, c)) => (m, c),
            None => (kmalloc_size(idx), caches[idx]),
        };
        let end = (bound / 8).min(crate::MALLOC_CACHES.len());
        // A debug cache (`slub_debug`) has no fast path, and only `kmalloc` tells it the size
        // asked for (its "kmalloc Redzone"): from there up, `malloc` goes through `kmalloc`.
        // SAFETY: a non-null slot holds a live cache of the machine.
        if c.is_null() || unsafe { (*c).debug() } {
            fast = fast.min(i);
        }
        // SAFETY: as above.
        if !c.is_null() && unsafe { (*c).flags.intersects(kmem::slab::SLAB_STORE_USER) } {
            crate::TRACK_CALLERS.store(true, Ordering::Relaxed);
        }
        for slot in &crate::MALLOC_CACHES[i..end] {
            slot.store(c, Ordering::Relaxed);
        }
        i = end;
    }
    crate::MALLOC_FAST_BYTES.store(fast * 8, Ordering::Release);
    STATE.store(READY, Ordering::Release);
    // While the machine is still quiet: its message goes to the log alone.
    crate::initmem::free_initmem(k);
    if !user_quiet {
        m.platform.set_quiet(false);
    }
    if k.params.errors().next().is_some() || (!user_quiet && k.params.unknown().next().is_some()) {
        cmdline_complaints(k, user_quiet);
    }
}

/// The boot log's complaints about `KMEM_CMDLINE`, on stderr: the machine
/// booted quietly, so a mistyped parameter would otherwise go unseen. A bad
/// value is said always (the kernel's `pr_warn`), an unknown parameter
/// unless the command line says `quiet` (its `pr_notice`).
#[cold]
#[inline(never)]
fn cmdline_complaints(k: &Kmem<HostedPlatform>, quiet: bool) {
    let mut buf = [0u8; 256];
    for e in k.params.errors() {
        let n = crate::fmt_into(&mut buf, format_args!("kmem: KMEM_CMDLINE: {e}\n"));
        crate::write_stderr(&buf[..n]);
    }
    if !quiet {
        for u in k.params.unknown() {
            let n = crate::fmt_into(
                &mut buf,
                format_args!("kmem: KMEM_CMDLINE: unknown parameter \"{u}\", ignored\n"),
            );
            crate::write_stderr(&buf[..n]);
        }
    }
}

/// `malloc`'s own size classes, between kmalloc's powers of two above 256
/// bytes: 1.5 times a power of two up to 1 KiB, as kmalloc-96 and
/// kmalloc-192 are below, then quarter steps (1.25, 1.5 and 1.75 times), as
/// jemalloc's and mimalloc's classes go. Sizes just above a power of two are
/// common (a 4,096-byte buffer and its header: sqlite's page cache asks for
/// 4,104 bytes), and kmalloc would give them twice the memory; here the
/// waste is at most a third up to 1 KiB and a fifth above.
const MALLOC_MID_CLASSES: [(&str, usize); 11] = [
    ("malloc-384", 384),
    ("malloc-768", 768),
    ("malloc-1280", 1280),
    ("malloc-1536", 1536),
    ("malloc-1792", 1792),
    ("malloc-2560", 2560),
    ("malloc-3072", 3072),
    ("malloc-3584", 3584),
    ("malloc-5120", 5120),
    ("malloc-6144", 6144),
    ("malloc-7168", 7168),
];

/// Creates the cache of a middle class (see [`MALLOC_MID_CLASSES`]), made
/// as the kmalloc caches are (`SLAB_KMALLOC`: their slab sizes, their debug
/// reports), 16-byte aligned; null if it could not be made or a debug layout
/// misaligns its objects. Out of line: `boot` is in the hot section
/// (`hot-text.ld`), and this runs once.
#[cold]
#[inline(never)]
fn mid_cache(k: &Kmem<HostedPlatform>, name: &'static str, size: usize) -> *mut KmemCache {
    let args = kmem::slab::KmemCacheArgs {
        align: crate::MALLOC_ALIGN,
        ..Default::default()
    };
    let flags = kmem::slab::SLAB_KMALLOC | kmem::slab::SLAB_NO_MERGE;
    let Some(s) = k.kmem_cache_create_args(name, size, &args, flags) else {
        return ptr::null_mut();
    };
    // SAFETY: the cache lives as long as the machine (nothing destroys it).
    if aligned_objects(unsafe { s.as_ref() }, crate::MALLOC_ALIGN) {
        s.as_ptr()
    } else {
        ptr::null_mut()
    }
}

/// Whether every object of `c` is `want`-aligned: slabs start on page
/// boundaries and objects sit at `red_left_pad + i * size`.
fn aligned_objects(c: &KmemCache, want: usize) -> bool {
    c.size.is_multiple_of(want) && c.red_left_pad.is_multiple_of(want)
}

/// The cache `malloc` uses for kmalloc index `idx`: the kmalloc cache of
/// that size if its objects are 16-byte aligned (8 for kmalloc-8), else
/// the next power-of-two cache if that one's are; null for index 0 and when
/// neither is (the slow path then asks `kmalloc_aligned`). Only a debug
/// layout (`slub_debug` red zones) can misalign them.
fn malloc_cache(k: &Kmem<HostedPlatform>, idx: usize) -> *mut KmemCache {
    if idx == 0 || idx > KMALLOC_SHIFT_HIGH {
        return ptr::null_mut();
    }
    let size = kmalloc_size(idx);
    let want = size.min(crate::MALLOC_ALIGN);
    for candidate in [size, size.next_power_of_two()] {
        let Some(s) = k.kmalloc_slab(candidate, kmem::GFP_KERNEL) else {
            continue;
        };
        // SAFETY: kmalloc caches live as long as the machine.
        if aligned_objects(unsafe { s.as_ref() }, want) {
            return s.as_ptr();
        }
    }
    ptr::null_mut()
}
