//! `fork` keeps its meaning: the child's RAM is a private copy of one instant.
//!
//! A machine's RAM is a memfd mapped `MAP_SHARED` (`ram.rs`), and shared
//! mappings stay shared across `fork`: without help, parent and child would
//! allocate from, and write to, the same memory. `pthread_atfork` handlers,
//! installed when the first `HostRam` is created, fix that.
//!
//! * **prepare** (in the forking thread, before the `fork` system call):
//!   take the fork mutex (one fork at a time) and the RAM registry lock (no
//!   machine appears or goes away), close the *fork gate* and wait until no
//!   thread holds a spinlock of a gated machine (below), open a pipe, then
//!   *stop every other thread* (below).
//! * **child**: mark the stop as copying (so the parent's stopped threads
//!   stay stopped), then, for every registered RAM memfd, create a new memfd
//!   of the same length and copy the old one's populated ranges into it
//!   (`SEEK_DATA` / `SEEK_HOLE`, then `copy_file_range`, or `pread`/`pwrite`;
//!   a RAM's private lowmem, `ram.rs`, is not in the memfd: `fork` itself
//!   made the child's copy-on-write copy of it);
//!   replace every mapping of the old file — the linear map and the vmalloc
//!   window's aliases, found in `/proc/self/maps` by device and inode; the
//!   linear map alone, without reading that file, while the RAM has never
//!   been mapped anywhere else (`RamRef::aliased`) — with the same range of
//!   the new file (`MAP_FIXED`), and the registry's
//!   descriptor of the old file, the only one kmem holds (`crate::ram`), with
//!   a duplicate of the new one (`dup3`, same number), if it holds one and
//!   the number still names the old file (else the child holds none either;
//!   `RamRef::fd` opens the new file through the linear map when needed).
//!   A copy reaches the old file through `RamRef::fd`, which opens it again
//!   through the linear map if the program closed or replaced it.
//!   A RAM whose memfd holds no data and was never mapped anywhere else
//!   (the parent has nothing to copy, below) gets no new file: the child
//!   puts an inaccessible reservation where the linear map mapped the old
//!   one and makes a file of its own when it first needs one
//!   (`RamRef::detach_file`: the `memfd_create`, `ftruncate`, `fstat` and
//!   `close` saved are some 20 µs per `fork`).
//!   Then reset what threads that do not exist in the child held: the CPU
//!   owner locks of `preempt_disable` and the gate, and note that its phase
//!   page is still its parent's (below). Finally write a byte to the pipe. A child that
//!   cannot make its copy says why and exits with status 127: it would
//!   otherwise corrupt its parent.
//! * **parent**: wait for the child's byte (or end of file, if the child
//!   died), then let the stopped threads go, open the gate and release the
//!   locks. Nothing in the parent changes the RAM while the child copies it.
//!   A parent whose memfds hold no data once its other threads are stopped
//!   (their lowmem private, `ram.rs`, and no HighMem page written) gives
//!   the child nothing to copy: it does not wait, and lets its threads go
//!   as soon as `fork` returns (they stayed stopped through it, which copies
//!   the private lowmem); the child only makes its empty memfds and maps
//!   them where the old ones were.
//!
//! **The fork gate.** The core's locks are spinlocks; one held by another
//! thread at the instant of `fork` would be held forever in the child, where
//! that thread does not exist. Every spinlock acquisition calls the
//! platform's `local_irq_save`, and a machine with the gate enabled
//! (`HostedPlatform::enable_fork_gate`; the default machine has it) counts
//! there the calling thread's spinlock nesting depth in a thread-local word
//! (`GateTls`): a plain increment and decrement, no atomic instruction, no
//! shared cache line. The word is in *static* TLS (initial-exec: on x86-64 a
//! `.tbss` symbol reached through its `@gottpoff` GOT entry from the thread
//! pointer), so even inside `libkmalloc.so` it costs no `__tls_get_addr`
//! call. The outermost acquisition also reads `GATE_FLAGS`, a process-wide
//! word that is 0 except while a fork is in progress: then the thread waits
//! on its futex before taking the lock (the forking thread passes), having
//! said so in the word, so that a fork nobody waited for ends without a
//! wake-up call. A
//! process that never created a thread (`__libc_single_threaded`) skips all
//! of it: no other thread can hold a lock.
//!
//! The fork does not count lock holders: it stops every other thread with a
//! signal (below), and a thread the signal finds inside a gated spinlock
//! (depth above 0) is not stopped there but marks itself (`GateTls::defer`)
//! and runs on; its outermost unlock sees the mark and stops there, exactly
//! as the handler would have. So once every thread has stopped, none holds
//! a spinlock. The signal handler and the interrupted thread share the word
//! without atomics: a signal arrives between two instructions, and compiler
//! fences keep the depth updates on their side of the lock operations.
//!
//! Where the stop cannot be used (the program handles the stop signal
//! itself, or its page could not be mapped), the gate counts instead
//! (`GATE_COUNTING` in `GATE_FLAGS`): the outermost acquisition increments
//! a counter of its CPU's slot (`GATE_SLOTS`, one cache line each) and the
//! last release decrements it; prepare waits until every slot reads 0 (both
//! sides use sequentially consistent operations, so either the thread sees
//! the fork or the forker sees its count).
//!
//! **Stopping the world.** The gate keeps threads out of the locked paths,
//! but not out of the lock-free ones (the SLUB cpu freelists' restartable
//! sequences, `__slab_free`'s compare-and-swap on a slab's freelist) nor out
//! of the program's own memory. If they ran while the child copies, the copy
//! would mix instants: a cpu freelist head copied before a thread popped
//! that object and wrote into it sends the child's next allocation into
//! garbage. So, as a garbage collector does, prepare stops every other
//! thread once the gate has drained (a thread is never stopped holding a
//! spinlock), and the threads stay stopped until the child has copied:
//!
//! * The stop signal, `SIGRTMIN + 7`, gets a handler when the handlers are
//!   installed (`SA_RESTART`, every signal blocked while it runs) unless the
//!   program has one for it (then the gate counts, above); each fork checks
//!   that the handler is still ours, and forks without stopping (with a
//!   warning, and the gate counts from then on) if not.
//! * A *phase word* says what the stopped threads do: idle, stopped,
//!   copying, or abandoned, with a count of stops above the state. It lives
//!   in a page mapped `MAP_SHARED | MAP_ANONYMOUS` by the first fork that
//!   stops threads (a process that never does has none), which parent and
//!   child share; the child remaps a fresh page in its place before its
//!   first stop (`own_phase_page`). Most children never stop threads (they
//!   exec, or fork single-threaded): a fork then costs no page (some 15 µs:
//!   the mapping, its first write's fault, and its teardown at exit).
//! * The forker sets the phase to "stopped", lists the threads
//!   (`/proc/self/task` read with `getdents64` into a stack buffer — no
//!   allocation: this also runs inside the `LD_PRELOAD` malloc) and sends
//!   each the signal (`tgkill`), but for a thread whose status shows the
//!   signal blocked, or that sleeps in `rt_sigtimedwait` (whose status
//!   shows the signals it waits for unblocked): the signal would stay
//!   pending and reach the program's `sigwait` or `signalfd` as its own, so
//!   such a thread is signalled only once found unblocking it. The handler
//!   (or, for a thread inside a spinlock, its outermost unlock) writes
//!   (phase, tid) into an acknowledgement table and sleeps on the phase
//!   futex while it reads "stopped" or "copying". Once every signalled thread has acknowledged,
//!   the forker lists the threads again: a thread that had not stopped yet
//!   may have created one. When a listing finds no new thread, every thread
//!   is stopped (each in its handler, which stays until released). Signal
//!   delivery aborts a restartable sequence in flight; any other instruction
//!   boundary leaves the lock-free structures consistent.
//! * The C library's `fork` takes its own locks after the prepare handlers
//!   (malloc arenas, the list of streams): a thread stopped inside the C
//!   library might hold one, and the fork would wait for it forever. So a
//!   handler that finds it interrupted C library code (x86-64: the
//!   interrupted instruction pointer is in `libc.so`'s text) other than a
//!   blocked system call (pointed back at its `syscall` instruction to be
//!   restarted, or failed with `EINTR`) refuses, and the forker signals it
//!   again; after 8 refusals it stops where it is (a thread that lives in
//!   `sched_yield` or `memcpy` would never stop otherwise). As a last
//!   resort, a stopped thread that has waited 5 s for the child to start
//!   copying marks the phase "abandoned", which releases them all; the
//!   child then warns that its copy may mix instants.
//! * Threads that exit meanwhile are dropped from the list; a thread that
//!   sleeps with the signal blocked cannot be stopped (found so twice in a
//!   row in `/proc/self/task/<tid>/status`: glibc blocks every signal for a
//!   few microseconds while it creates or ends a thread, and a thread
//!   leaving the handler of the previous stop still has them blocked): it
//!   keeps running, with a warning. So does everything after 2 s without
//!   every acknowledgement, or with more than 4096 threads. Such a thread
//!   waits at its next outermost spinlock until the fork is over, but a
//!   spinlock it held at the instant of the fork stays held in the child
//!   (the warning says so).
//! * The child, first thing, changes the phase from "stopped" to "copying";
//!   the parent, once the child's byte arrives, sets it to idle and wakes the
//!   stopped threads. A thread interrupted in a blocking system call goes
//!   back to it (`SA_RESTART`), except for the calls that never restart
//!   (`epoll_wait`, `poll`, `nanosleep`, ...), which fail with `EINTR` as for
//!   any signal.
//!
//! A fork of a multi-threaded process thus costs two signals and two context
//! switches per thread on top of the copy. `vfork`, `posix_spawn` and
//! `clone(CLONE_VM)` share memory by definition and run no handlers; `_Fork`
//! and raw `clone` without `CLONE_VM` run no handlers and so share the RAM
//! (unsupported).

use core::sync::atomic::{
    compiler_fence, AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::Once;

use crate::platform::{host_cpu, write_stderr};

/// Slots of the gate's counters (host CPUs fold onto them), in counting mode.
const GATE_SLOTS_NR: usize = 64;

/// A gate counter on a cache line of its own.
#[repr(align(64))]
struct GateSlot(AtomicUsize);

/// In counting mode: threads inside a gated machine's spinlocks, by the slot
/// of the host CPU they entered on.
/// Zeroed and rarely written: after the small statics (`cold-bss.ld` of libkmalloc).
#[link_section = ".bss.kmem_cold"]
static GATE_SLOTS: [GateSlot; GATE_SLOTS_NR] = [const { GateSlot(AtomicUsize::new(0)) }; GATE_SLOTS_NR];

/// `GATE_FLAGS` bit: a fork is between its prepare and parent/child handlers.
const GATE_FORKING: u32 = 1;
/// `GATE_FLAGS` bit: the gate counts lock holders in `GATE_SLOTS` (the stop
/// signal is not available).
const GATE_COUNTING: u32 = 2;
/// `GATE_FLAGS` bit, set only with `GATE_FORKING`: a thread waits (on the
/// futex) for the fork to end.
const GATE_WAITERS: u32 = 4;

/// A read-mostly word on a cache line of its own.
#[repr(C, align(64))]
struct GateFlags(AtomicU32);

/// What the outermost spinlock acquisition must look at (0: nothing, the
/// fast path); a futex word for the threads that wait for a fork to end.
static GATE_FLAGS: GateFlags = GateFlags(AtomicU32::new(0));

/// `GATE_FLAGS`, loaded (relaxed) by one instruction: a compiler that sees
/// the static from another crate's code (the core's spinlocks, inlined into
/// `libkmalloc.so`) would load its address from the GOT first.
#[inline(always)]
fn gate_flags_relaxed() -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let v: u32;
        // The static is local to the linked object (not exported), so it is reachable RIP-relative.
        // SAFETY: a 4-byte aligned load of the atomic `GATE_FLAGS.0` (at offset 0 of the `repr(C)` struct),
        // which is what a relaxed atomic load compiles to on x86-64.
        unsafe {
            core::arch::asm!(
                "mov {v:e}, dword ptr [rip + {flags}]",
                v = out(reg) v,
                flags = sym GATE_FLAGS,
                options(nostack, readonly, preserves_flags)
            );
        }
        v
    }
    #[cfg(not(target_arch = "x86_64"))]
    GATE_FLAGS.0.load(Ordering::Relaxed)
}

/// The `GateTls` of the thread that is forking (it passes the gate), as an
/// address (0: none).
static FORKER: AtomicUsize = AtomicUsize::new(0);

/// One fork at a time.
static FORK_MUTEX: AtomicBool = AtomicBool::new(false);

/// The pipe through which the child tells the parent its copy is made.
static PIPE_R: AtomicI32 = AtomicI32::new(-1);
static PIPE_W: AtomicI32 = AtomicI32::new(-1);
/// Set by prepare when the child has nothing to copy (see **parent** above):
/// the child then copies nothing, whatever the parent writes meanwhile.
static NOTHING_TO_COPY: AtomicBool = AtomicBool::new(false);

/// The fork gate's per-thread state, in static TLS (see the module
/// documentation). Written by its thread and by the stop signal's handler
/// interrupting that thread, never by another thread: relaxed atomics, which
/// compile to plain loads and stores.
///
/// # Invariants
/// `depth` is the number of gated spinlock sections the thread is inside
/// (`gate_enter` calls that returned 1, not yet matched by `gate_exit`).
/// `pending` is `PENDING_DEFER` (set by the stop handler: stop at the
/// outermost unlock) or'ed with `(slot + 1) << 1` for the `GATE_SLOTS`
/// index the thread counted itself in (counting mode); 0 otherwise. The
/// thread writes `pending` only at depth 0 and the handler only above it,
/// so the two never race, and `PENDING_DEFER` is set only while `depth > 0`.
#[repr(C, align(8))]
struct GateTls {
    depth: AtomicU32,
    pending: AtomicU32,
    /// Not the gate's: the crate's one block of static TLS also holds the
    /// code address an `LD_PRELOAD` malloc records as the caller of the
    /// allocation or free in progress ([`set_caller_ip`]), 0 for none.
    caller_ip: AtomicUsize,
}

/// The code address to record as the caller of this thread's allocation or
/// free in progress (`Platform::caller_ip`), 0 for none.
pub(crate) fn caller_ip() -> usize {
    gate_tls().caller_ip.load(Ordering::Relaxed)
}

/// Set (or with 0 clear) the code address `slub_debug`'s `U` tracks record
/// as the caller of this thread's allocations and frees, instead of the
/// Rust call site: libkmalloc's `malloc` and `free` record the program's.
pub fn set_caller_ip(ip: usize) {
    gate_tls().caller_ip.store(ip, Ordering::Relaxed);
}

// The asm block below reserves exactly this much.
const _: () = assert!(core::mem::size_of::<GateTls>() == 16);

/// `GateTls::pending` bit: a stop signal found the thread inside a spinlock.
const PENDING_DEFER: u32 = 1;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
core::arch::global_asm!(
    // Zero-initialised thread-local storage of the size and alignment of
    // `GateTls`, hidden (one per linked object, never exported).
    ".pushsection .tbss,\"awT\",@nobits",
    ".balign 8",
    ".globl kmem_hosted_fork_gate_tls",
    ".hidden kmem_hosted_fork_gate_tls",
    ".type kmem_hosted_fork_gate_tls,@object",
    ".size kmem_hosted_fork_gate_tls,16",
    "kmem_hosted_fork_gate_tls:",
    ".zero 16",
    ".popsection",
);

/// The calling thread's `GateTls`: the thread pointer (`fs:0`) plus the
/// symbol's static TLS offset, read from its GOT entry (initial-exec model;
/// the linker turns it into a constant in an executable). Two instructions,
/// no call.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
fn gate_tls() -> &'static GateTls {
    let p: usize;
    // Both reads have no side effects and give the same value for the thread's whole life, hence `pure`.
    // On x86-64 Linux the word at `fs:0` is the thread pointer (the TCB's self pointer), and
    // `kmem_hosted_fork_gate_tls@gottpoff` is the GOT entry holding the symbol's offset from it, which the
    // dynamic loader fills (the object is marked as using static TLS: the block is at that offset in every
    // thread).
    // SAFETY: both reads are of memory the loader set up for this thread, as said above.
    unsafe {
        core::arch::asm!(
            "mov {p}, qword ptr fs:[0]",
            "add {p}, qword ptr [rip + kmem_hosted_fork_gate_tls@gottpoff]",
            p = out(reg) p,
            options(pure, readonly, nostack)
        );
    }
    // Nothing else refers to it but through this function. `'static` stands for "as long as the calling
    // thread": the reference is never sent.
    // `p` is this thread's 16-byte, 8-aligned, zero-initialised block, valid while the thread runs (static
    // TLS is freed only after the thread has ended), and `GateTls` is atomics (valid for all bits).
    // SAFETY: as said.
    unsafe { &*(p as *const GateTls) }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
std::thread_local! {
    static GATE_TLS: GateTls = const {
        GateTls { depth: AtomicU32::new(0), pending: AtomicU32::new(0), caller_ip: AtomicUsize::new(0) }
    };
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
#[inline(always)]
fn gate_tls() -> &'static GateTls {
    static TEARDOWN: GateTls = GateTls {
        depth: AtomicU32::new(0),
        pending: AtomicU32::new(0),
        caller_ip: AtomicUsize::new(0),
    };
    GATE_TLS
        .try_with(|t| {
            let p: *const GateTls = t;
            // After the thread's TLS is torn down `try_with` fails and a
            // shared dummy stands in (it only ever counts nesting of threads
            // that can no longer be stopped).
            // SAFETY: the thread's own block, valid until its TLS is torn down.
            unsafe { &*p }
        })
        .unwrap_or(&TEARDOWN)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    extern "C" {
        /// Nonzero while the process has never created a thread (glibc 2.32+).
        pub static __libc_single_threaded: core::ffi::c_char;
    }
}

/// Whether the process never created a thread.
#[inline(always)]
fn single_threaded() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: a plain byte glibc maintains; reading it races with nothing
        // that matters (it only ever goes from 1 to 0, before a thread exists).
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(glibc::__libc_single_threaded)) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// `local_irq_save` of a gated machine: count the caller's spinlock nesting
/// (waiting first, at the outermost one, while a fork is in progress).
/// Returns the value for `gate_exit`: 1 if counted, 0 in a process that
/// never created a thread (no other thread can hold a lock at a fork, and
/// the thread that creates the first one holds none: kmem creates no
/// thread inside a spinlock).
#[inline(always)]
pub(crate) fn gate_enter() -> usize {
    if single_threaded() {
        return 0;
    }
    let t = gate_tls();
    let depth = t.depth.load(Ordering::Relaxed);
    if depth == 0 && gate_flags_relaxed() != 0 {
        gate_enter_slow(t);
    } else {
        t.depth.store(depth + 1, Ordering::Relaxed);
    }
    // The depth is raised before the lock is taken, as the stop signal's
    // handler sees it (a signal fence; it emits no instruction).
    compiler_fence(Ordering::SeqCst);
    1
}

/// The outermost `gate_enter` while a fork is in progress or in counting
/// mode: wait for the fork to end (unless this thread is the forker), count
/// in if counting, then set the depth to 1.
#[cold]
#[inline(never)]
fn gate_enter_slow(t: &GateTls) {
    let me = t as *const GateTls as usize;
    let flags = &GATE_FLAGS.0;
    loop {
        let f = flags.load(Ordering::SeqCst);
        if f & GATE_COUNTING != 0 {
            let slot = host_cpu() % GATE_SLOTS_NR;
            GATE_SLOTS[slot].0.fetch_add(1, Ordering::SeqCst);
            if flags.load(Ordering::SeqCst) & GATE_FORKING == 0 || FORKER.load(Ordering::Relaxed) == me {
                t.pending.store((slot as u32 + 1) << 1, Ordering::Relaxed);
                break;
            }
            GATE_SLOTS[slot].0.fetch_sub(1, Ordering::SeqCst);
        } else if f & GATE_FORKING == 0 || FORKER.load(Ordering::Relaxed) == me {
            break;
        }
        // Announce the wait first: the gate's opener wakes waiters only if
        // one did (most forks have none, and the wake is a system call).
        let forking = f | GATE_FORKING;
        if flags
            .compare_exchange(
                forking,
                forking | GATE_WAITERS,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            futex_wait(flags, forking | GATE_WAITERS);
        }
    }
    t.depth.store(1, Ordering::Relaxed);
}

/// `local_irq_restore` of a gated machine: `counted` is what `gate_enter` returned.
#[inline(always)]
pub(crate) fn gate_exit(counted: usize) {
    if counted == 0 {
        return;
    }
    let t = gate_tls();
    // The lock is released before the depth drops, as the handler sees it.
    compiler_fence(Ordering::SeqCst);
    let depth = t.depth.load(Ordering::Relaxed);
    debug_assert!(depth > 0, "gate_exit without gate_enter");
    t.depth.store(depth.wrapping_sub(1), Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
    if depth == 1 && t.pending.load(Ordering::Relaxed) != 0 {
        gate_exit_slow(t);
    }
}

/// The outermost `gate_exit` of a thread that counted itself in a slot, or
/// that a stop signal found inside a spinlock: count out, and stop here.
#[cold]
#[inline(never)]
fn gate_exit_slow(t: &GateTls) {
    // The depth is 0 now, so the handler no longer writes `pending`: a stop
    // signal arriving from here on stops in the handler.
    let pending = t.pending.load(Ordering::Relaxed);
    t.pending.store(0, Ordering::Relaxed);
    let slot = pending >> 1;
    if slot != 0 {
        GATE_SLOTS[slot as usize - 1].0.fetch_sub(1, Ordering::Release);
    }
    if pending & PENDING_DEFER != 0 {
        if let Some(phase) = phase() {
            // SAFETY: this thread's errno.
            let errno = unsafe { *libc::__errno_location() };
            park(phase, gettid(), core::ptr::null_mut());
            // SAFETY: as above.
            unsafe { *libc::__errno_location() = errno };
        }
    }
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    futex_wait_ns(word, expected, None);
}

/// Sleeps while `word` holds `expected`, at most `timeout_ns` if given.
fn futex_wait_ns(word: &AtomicU32, expected: u32, timeout_ns: Option<u64>) {
    let ts = timeout_ns.map(|ns| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live aligned u32 and `tsp` null or a live
    // timespec; EINTR/EAGAIN/ETIMEDOUT are plain returns.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            tsp,
        );
    }
}

fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a live aligned u32.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// Registers the fork handlers, once per process.
pub(crate) fn install_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: three `extern "C"` functions that live as long as the process.
        let r = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        if r != 0 {
            write_stderr(b"kmem: pthread_atfork failed: a fork child will share the machine's RAM\n");
        }
        install_stop_handler();
    });
}

/// How long prepare waits for lock holders (counting mode) before forking anyway.
const GATE_WAIT_NS: u64 = 1_000_000_000;

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is writable; CLOCK_MONOTONIC exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The stop signal is `SIGRTMIN + STOP_SIGNAL_OFFSET` (41 with current
/// glibc, whose `SIGRTMIN` is 34: it keeps 32 and 33 for thread
/// cancellation and `setxid`). Programs that use real-time signals mostly
/// take the first few above `SIGRTMIN` or the last below `SIGRTMAX`; the
/// eighth is one no common runtime claims by default. A program that
/// installed its own handler for it keeps it: forks then go without stopping
/// (a warning says so).
const STOP_SIGNAL_OFFSET: i32 = 7;

fn stop_signal() -> i32 {
    libc::SIGRTMIN() + STOP_SIGNAL_OFFSET
}

/// The phase word's states (its low two bits); the bits above count stops,
/// so a stopped thread never mistakes the next stop for its own.
const PHASE_IDLE: u32 = 0;
const PHASE_STOPPED: u32 = 1;
const PHASE_COPYING: u32 = 2;
const PHASE_ABANDONED: u32 = 3;
const PHASE_STATE: u32 = 3;
const PHASE_ONE_STOP: u32 = 4;

/// The phase word, in a page mapped `MAP_SHARED | MAP_ANONYMOUS` so that a
/// fork's child and its parent see the same word (null: no stopping). A futex
/// word for the stopped threads.
static PHASE: AtomicPtr<AtomicU32> = AtomicPtr::new(core::ptr::null_mut());

/// Whether the phase page is still the parent's: set in a fork's child,
/// cleared when `own_phase_page` replaces it.
static PHASE_INHERITED: AtomicBool = AtomicBool::new(false);

/// Most threads one stop handles; a process with more forks without stopping.
const MAX_STOPPED: usize = 4096;

/// Acknowledgements of the stop signal: (phase word << 32) | tid, with
/// `ACK_REFUSED` for a refusal, written by the handler at index `ACK_N`
/// (counted up by each handler).
/// Zeroed and rarely written: after the small statics (`cold-bss.ld` of libkmalloc).
#[link_section = ".bss.kmem_cold"]
static ACKS: [AtomicU64; MAX_ACKS] = [const { AtomicU64::new(0) }; MAX_ACKS];
const MAX_ACKS: usize = 4 * MAX_STOPPED;
static ACK_N: AtomicUsize = AtomicUsize::new(0);

/// Refusals (`inside_libc`) after which a thread stops wherever it is: a
/// thread that spends its time in the C library (`sched_yield` loops, long
/// `memcpy`s) would otherwise never stop, and a lock of the C library is
/// held for short stretches.
const MAX_REFUSALS: u64 = 8;

/// Threads inside `stop_handler` (0: free slot; a thread uses the first
/// free slot from its tid on).
/// Zeroed and rarely written: after the small statics (`cold-bss.ld` of libkmalloc).
#[link_section = ".bss.kmem_cold"]
static IN_HANDLER: [AtomicI32; MAX_STOPPED] = [const { AtomicI32::new(0) }; MAX_STOPPED];

/// The forker's list of the threads it signalled: (status << 32) | tid.
/// Only the thread holding `FORK_MUTEX` uses it.
/// Zeroed and rarely written: after the small statics (`cold-bss.ld` of libkmalloc).
#[link_section = ".bss.kmem_cold"]
static TASKS: [AtomicU64; MAX_STOPPED] = [const { AtomicU64::new(0) }; MAX_STOPPED];
const TASK_SIGNALLED: u64 = 0;
const TASK_STOPPED: u64 = 1;
/// Exited, or has the stop signal blocked (it keeps running: a warning says so).
const TASK_SKIPPED: u64 = 2;
/// Signalled, and found sleeping with the signal blocked at the last check
/// (threads that glibc creates or ends do so for a few microseconds).
const TASK_SUSPECT: u64 = 3;
/// Not signalled: it blocked the signal when found. A signal sent to it
/// would stay pending and reach the program (its `sigwait`, its
/// `signalfd`), so it is sent only once the thread is found unblocking it.
const TASK_UNSENT: u64 = 4;

/// The phase word of the stop in force between prepare and the parent
/// handler (0: the other threads were not stopped).
static STOPPED_W: AtomicU32 = AtomicU32::new(0);

/// Takes the value of `w`, leaving 0; not written when it is 0 already: a
/// fork child writing a page it shares with its parent takes a
/// copy-on-write fault (as `close` avoids for a descriptor).
pub(crate) fn take_unshared(w: &AtomicU32) -> u32 {
    if w.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    w.swap(0, Ordering::Relaxed)
}

/// How long a stopped thread waits for the child to start copying before it
/// concludes that the fork cannot proceed (the forking thread may need a C
/// library lock that a stopped thread holds) and lets every thread go.
const ABANDON_NS: u64 = 5_000_000_000;
/// How long the forker waits for a signalled thread before it looks whether
/// the thread blocks the stop signal or has exited.
const BLOCKED_CHECK_NS: u64 = 2_000_000;
/// How long the forker waits for a runnable thread that blocks the signal.
const RUNNABLE_WAIT_NS: u64 = 100_000_000;
/// How long the forker waits for all threads to stop before forking without.
const STOP_WAIT_NS: u64 = 2_000_000_000;

/// Warnings given once per process.
static WARNED_FOREIGN: AtomicBool = AtomicBool::new(false);
static WARNED_BLOCKED: AtomicBool = AtomicBool::new(false);
static WARNED_FAILED: AtomicBool = AtomicBool::new(false);

fn warn_once(flag: &AtomicBool, args: core::fmt::Arguments<'_>) {
    if !flag.swap(true, Ordering::Relaxed) {
        let mut buf = [0u8; 256];
        let n = fmt_into(&mut buf, args);
        write_stderr(&buf[..n]);
    }
}

fn phase() -> Option<&'static AtomicU32> {
    let p = PHASE.load(Ordering::Acquire);
    // SAFETY: set once to a page that is never unmapped (a child replaces
    // it in place), so the reference stays valid.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Installs the stop signal's handler, unless the signal already has one;
/// if that cannot be done, the gate counts lock holders instead (forks
/// cannot stop the other threads then). The phase page is mapped by the
/// first fork that stops threads (`stop_other_threads`), not here: most
/// programs never fork with threads, and the mapping, its first write and
/// its teardown at exit took some 10 µs of every boot.
fn install_stop_handler() {
    if !try_install_stop_handler() {
        GATE_FLAGS.0.fetch_or(GATE_COUNTING, Ordering::SeqCst);
    }
}

fn try_install_stop_handler() -> bool {
    let sig = stop_signal();
    if sig > libc::SIGRTMAX() {
        return false;
    }
    // SAFETY: querying a signal's disposition into a zeroed struct.
    let mut old: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: `old` is writable; a null new action only queries.
    if unsafe { libc::sigaction(sig, core::ptr::null(), &mut old) } != 0 || old.sa_sigaction != libc::SIG_DFL
    {
        return false; // The program's: forks will say so and not stop.
    }
    // SAFETY: a zeroed sigaction is a valid value to fill in.
    let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
    sa.sa_sigaction = stop_handler as StopHandler as libc::sighandler_t;
    sa.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
    // SAFETY: `sa.sa_mask` is writable; `sa` is a complete action whose
    // handler is async-signal-safe and lives as long as the process.
    let r = unsafe {
        libc::sigfillset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, core::ptr::null_mut())
    };
    if r == 0 {
        STOP_HANDLER_OURS.store(true, Ordering::Relaxed);
    }
    r == 0
}

/// Whether `install_stop_handler` installed the stop signal's handler
/// (forks may stop the other threads).
static STOP_HANDLER_OURS: AtomicBool = AtomicBool::new(false);

/// The phase word for a stop (the stop handler is ours), its page mapped
/// now if this is the first stop; None if the page cannot be mapped (the
/// gate counts lock holders from then on).
fn phase_or_map() -> Option<&'static AtomicU32> {
    if let Some(p) = phase() {
        return Some(p);
    }
    match new_phase_page(core::ptr::null_mut()) {
        Some(page) => {
            // Stored before any thread is signalled, which then reads it.
            PHASE.store(page, Ordering::Release);
            phase()
        }
        None => {
            GATE_FLAGS.0.fetch_or(GATE_COUNTING, Ordering::SeqCst);
            None
        }
    }
}

/// In a fork's child, before its first stop: replace the phase page, still
/// shared with the parent, by a fresh one in place (with none, forks do not
/// stop). Nothing reads the word before: the child's other threads use it
/// only once this process's forker has signalled them, which it does after
/// this, and the `child` handler writes the parent's word on purpose.
fn own_phase_page() {
    if PHASE_INHERITED.swap(false, Ordering::Relaxed) {
        let page = PHASE.load(Ordering::Relaxed);
        if !page.is_null() && new_phase_page(page).is_none() {
            PHASE.store(core::ptr::null_mut(), Ordering::Relaxed);
        }
    }
}

/// Maps a zeroed shared anonymous page for the phase word, at `at` if not
/// null (replacing what is there).
fn new_phase_page(at: *mut AtomicU32) -> Option<*mut AtomicU32> {
    let flags = libc::MAP_SHARED | libc::MAP_ANONYMOUS | if at.is_null() { 0 } else { libc::MAP_FIXED };
    // SAFETY: a fresh anonymous mapping; with MAP_FIXED it replaces only the
    // old phase page, which nothing in this process uses (`own_phase_page`).
    let p = unsafe {
        libc::mmap(
            at.cast(),
            crate::ram::host_page_size(),
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p.cast())
}

/// Whether the stop signal's handler is still ours.
fn stop_handler_installed(sig: i32) -> bool {
    // SAFETY: querying a disposition into a zeroed struct.
    let mut cur: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: `cur` is writable; a null new action only queries.
    let r = unsafe { libc::sigaction(sig, core::ptr::null(), &mut cur) };
    r == 0 && cur.sa_sigaction == stop_handler as StopHandler as libc::sighandler_t
}

type StopHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// The C library's code, `[start, end)` (0, 0: unknown). Looked up by the
/// first fork that stops other threads, not at boot: reading
/// `/proc/self/maps` costs a program that never forks time, stack and
/// resident code.
static LIBC_TEXT: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// Finds the executable mappings of `libc.so` in `/proc/self/maps`, unless
/// an earlier fork found them.
fn find_libc_text() {
    if LIBC_TEXT[1].load(Ordering::Relaxed) != 0 {
        return;
    }
    let (mut start, mut end) = (usize::MAX, 0);
    for_each_line(c"/proc/self/maps", |line| {
        let Some((s, e, prot, ..)) = parse_maps_line(line) else {
            return;
        };
        let file = line.rsplit(|&b| b == b'/').next().unwrap_or(b"");
        if prot & libc::PROT_EXEC != 0 && line.contains(&b'/') && file.starts_with(b"libc.so") {
            start = start.min(s);
            end = end.max(e);
        }
    });
    if start < end {
        LIBC_TEXT[0].store(start, Ordering::Relaxed);
        LIBC_TEXT[1].store(end, Ordering::Relaxed);
    }
}

/// Whether the thread that the stop signal interrupted (`ctx`, its
/// `ucontext_t`) may hold a lock that the C library's `fork` takes after the
/// prepare handlers (its malloc arenas', its list of streams'): it was
/// running code of the C library other than a system call, which is
/// where those locks are held. A thread blocked in a system call (the
/// kernel points it back at its `syscall` instruction to restart it, or the
/// call failed with `EINTR`) is stopped.
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
fn inside_libc(ctx: *mut libc::c_void) -> bool {
    let (start, end) = (
        LIBC_TEXT[0].load(Ordering::Relaxed),
        LIBC_TEXT[1].load(Ordering::Relaxed),
    );
    if ctx.is_null() {
        return false;
    }
    // SAFETY: the kernel passes a `ucontext_t` to an SA_SIGINFO handler.
    let regs = unsafe { &(*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let ip = regs[libc::REG_RIP as usize] as usize;
    if ip < start || ip >= end {
        return false;
    }
    // SAFETY: `[start, end)` is the C library's code, mapped readable and
    // executable for the life of the process; the reads stay inside it.
    let at = |a: usize| a >= start && a + 2 <= end && unsafe { *(a as *const [u8; 2]) } == [0x0f, 0x05];
    let restart = at(ip);
    let interrupted = ip >= 2 && at(ip - 2) && regs[libc::REG_RAX as usize] == -(libc::EINTR as i64);
    !(restart || interrupted)
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
fn inside_libc(_ctx: *mut libc::c_void) -> bool {
    false
}

/// The stop signal's handler (every signal blocked while it runs):
/// acknowledge, then sleep until the fork is over; or, if the thread is
/// inside a gated spinlock, mark it to do so at its outermost unlock
/// (`gate_exit_slow`). Async-signal-safe: atomics and system calls only;
/// `errno` is kept.
extern "C" fn stop_handler(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let t = gate_tls();
    if t.depth.load(Ordering::Relaxed) != 0 {
        // Inside a gated spinlock: stop at the outermost unlock instead
        // (`gate_exit_slow`), if this signal is of a stop in progress.
        if phase().is_some_and(|p| p.load(Ordering::SeqCst) & PHASE_STATE == PHASE_STOPPED) {
            let pending = t.pending.load(Ordering::Relaxed);
            t.pending.store(pending | PENDING_DEFER, Ordering::Relaxed);
        }
        return;
    }
    // SAFETY: this thread's errno.
    let errno = unsafe { *libc::__errno_location() };
    let tid = gettid();
    let start = tid as usize % MAX_STOPPED;
    let slot = (start..MAX_STOPPED)
        .chain(0..start)
        .map(|i| &IN_HANDLER[i])
        .find(|s| {
            s.compare_exchange(0, tid, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        });
    if let Some(phase) = phase() {
        park(phase, tid, ctx);
    }
    if let Some(slot) = slot {
        slot.store(0, Ordering::SeqCst);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Whether thread `tid` is inside `stop_handler`.
fn in_handler(tid: i32) -> bool {
    IN_HANDLER.iter().any(|s| s.load(Ordering::SeqCst) == tid)
}

fn park(phase: &AtomicU32, tid: i32, ctx: *mut libc::c_void) {
    let w = phase.load(Ordering::SeqCst);
    if w & PHASE_STATE != PHASE_STOPPED {
        return; // A late signal of a stop that is over.
    }
    let refuse = inside_libc(ctx) && refusals(w, tid) < MAX_REFUSALS;
    let i = ACK_N.fetch_add(1, Ordering::SeqCst);
    if let Some(ack) = ACKS.get(i) {
        ack.store(
            ack_word(w, tid) | if refuse { ACK_REFUSED } else { 0 },
            Ordering::SeqCst,
        );
    }
    if refuse {
        return; // The forker signals again.
    }
    let copying = (w & !PHASE_STATE) | PHASE_COPYING;
    let start = now_ns();
    loop {
        let cur = phase.load(Ordering::SeqCst);
        if cur == w {
            let waited = now_ns().wrapping_sub(start);
            if waited < ABANDON_NS {
                futex_wait_ns(phase, w, Some(ABANDON_NS - waited));
            } else if phase
                .compare_exchange(
                    w,
                    (w & !PHASE_STATE) | PHASE_ABANDONED,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                futex_wake_all(phase);
            }
        } else if cur == copying {
            futex_wait(phase, copying);
        } else {
            return;
        }
    }
}

/// How many times thread `tid` refused stop `w`.
fn refusals(w: u32, tid: i32) -> u64 {
    let refused = ack_word(w, tid) | ACK_REFUSED;
    ACKS[..ACK_N.load(Ordering::SeqCst).min(MAX_ACKS)]
        .iter()
        .filter(|a| a.load(Ordering::SeqCst) == refused)
        .count() as u64
}

/// Marks an acknowledgement as "not here, signal me again".
const ACK_REFUSED: u64 = 1 << 31;

fn ack_word(phase: u32, tid: i32) -> u64 {
    (phase as u64) << 32 | tid as u32 as u64
}

fn tgkill(tid: i32, sig: i32) -> i32 {
    // SAFETY: getpid has no preconditions; tgkill only sends a signal (or
    // checks that the thread exists, with 0) to a thread of this process.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig) };
    if r == 0 {
        0
    } else {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    }
}

/// Calls `f` with the id of every thread of the process (`/proc/self/task`,
/// read with `getdents64` into a stack buffer). False if it cannot be read.
fn for_each_task(mut f: impl FnMut(i32)) -> bool {
    // SAFETY: a NUL-terminated path.
    let dir = unsafe {
        libc::open(
            c"/proc/self/task".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return false;
    }
    let ok = for_each_dirent(dir, |name| {
        if let Some(tid) = parse_dec(name).and_then(|v| i32::try_from(v).ok()) {
            f(tid);
        }
        true
    });
    // SAFETY: our descriptor.
    unsafe { libc::close(dir) };
    ok
}

/// Calls `f` with each entry name of the directory `dir` until it returns
/// false. False if the directory cannot be read.
fn for_each_dirent(dir: i32, mut f: impl FnMut(&[u8]) -> bool) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: getdents64 fills at most `buf.len()` bytes.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            return n == 0;
        }
        let mut pos = 0usize;
        while pos < n as usize {
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
            let reclen = u16::from_ne_bytes([buf[pos + 16], buf[pos + 17]]) as usize;
            let name = &buf[pos + 19..pos + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            pos += reclen;
            if !f(name) {
                return true;
            }
        }
    }
}

/// What `/proc/self/task/<tid>/status` says of a thread that has not
/// acknowledged the stop signal: whether it has exited, whether it is
/// runnable, and whether it blocks `sig`. A thread sleeping in
/// `rt_sigtimedwait` (`sigwait`, `sigwaitinfo`) counts as blocking it: the
/// call unblocks the signals it waits for while it waits (the status shows
/// them unblocked), and would take the stop signal as the program's own.
fn task_state(tid: i32, sig: i32) -> (bool, bool, bool) {
    let (gone, runnable, blocked) = task_status_file(tid, sig);
    (
        gone,
        runnable,
        blocked || (!gone && !runnable && in_sigtimedwait(tid)),
    )
}

/// Whether `/proc/self/task/<tid>/syscall` says the thread sleeps in
/// `rt_sigtimedwait` (the first field is the system call's number).
fn in_sigtimedwait(tid: i32) -> bool {
    let mut path = [0u8; 64];
    let n = fmt_into(&mut path[..63], format_args!("/proc/self/task/{tid}/syscall"));
    let Ok(path) = core::ffi::CStr::from_bytes_until_nul(&path[..n + 1]) else {
        return false;
    };
    let mut nr = None;
    for_each_line(path, |line| {
        let field = line.split(|&b| b == b' ').next().unwrap_or(b"");
        nr = core::str::from_utf8(field)
            .ok()
            .and_then(|f| f.parse::<i64>().ok());
    });
    nr == Some(libc::SYS_rt_sigtimedwait)
}

/// The status file's part of [`task_state`].
fn task_status_file(tid: i32, sig: i32) -> (bool, bool, bool) {
    let mut path = [0u8; 64];
    let n = fmt_into(&mut path[..63], format_args!("/proc/self/task/{tid}/status"));
    let Ok(path) = core::ffi::CStr::from_bytes_until_nul(&path[..n + 1]) else {
        return (false, true, false);
    };
    let (mut state, mut blocked) = (b'R', false);
    let read = for_each_line(path, |line| {
        if let Some(s) = line.strip_prefix(b"State:") {
            state = s.trim_ascii_start().first().copied().unwrap_or(b'R');
        } else if let Some(mask) = line.strip_prefix(b"SigBlk:") {
            blocked = parse_hex(mask.trim_ascii()).is_some_and(|m| m >> (sig - 1) & 1 != 0);
        }
    });
    // A thread whose status cannot be read has exited.
    (!read || matches!(state, b'Z' | b'X'), state == b'R', blocked)
}

/// Stops every other thread of the process (see the module documentation);
/// on success records the stop in `STOPPED_W`. Returns whether it did. Out
/// of line: its 4 KiB listing buffer would otherwise be in `prepare`'s
/// frame, whose stack probe then wrote a page below the caller's on every
/// `fork`, a copy-on-write fault since the previous one shared the stack
/// with its child.
#[inline(never)]
fn stop_other_threads() -> bool {
    own_phase_page();
    if !STOP_HANDLER_OURS.load(Ordering::Relaxed) {
        // The program had the signal (a handler, or ignored) before the machine booted. Said
        // when there is something to copy: a private-lowmem process without HighMem data has
        // nothing that could mix.
        if !crate::ram::registered().all(|r| r.memfd_empty()) {
            warn_once(
                &WARNED_FOREIGN,
                format_args!(
                    "kmem: fork: signal {} is the program's (its handler, or ignored), so other threads \
                     keep running while a fork child copies the RAM (its copy may mix instants)\n",
                    stop_signal()
                ),
            );
        }
        return false;
    }
    find_libc_text();
    let sig = stop_signal();
    if !stop_handler_installed(sig) {
        // Count lock holders from now on, for the next forks; this one cannot
        // know whether another thread is inside a spinlock.
        GATE_FLAGS.0.fetch_or(GATE_COUNTING, Ordering::SeqCst);
        warn_once(
            &WARNED_FOREIGN,
            format_args!(
                "kmem: fork: signal {sig} has the program's handler, so other threads keep running while \
                 a fork child copies the RAM (its copy may mix instants, and this fork does not wait for \
                 them to leave kmem's spinlocks)\n"
            ),
        );
        return false;
    }
    // The page is mapped only once the stop will happen.
    let Some(phase) = phase_or_map() else {
        return false;
    };
    let w = ((phase.load(Ordering::SeqCst) & !PHASE_STATE).wrapping_add(PHASE_ONE_STOP)) | PHASE_STOPPED;
    ACK_N.store(0, Ordering::SeqCst);
    phase.store(w, Ordering::SeqCst);
    match stop_all(phase, w, sig) {
        Ok(()) => {
            STOPPED_W.store(w, Ordering::Relaxed);
            true
        }
        Err(why) => {
            release(phase, w);
            warn_once(
                &WARNED_FAILED,
                format_args!(
                    "kmem: fork: could not stop the other threads ({why}): they keep running while the \
                     child copies the RAM (its copy may mix instants, or hold a spinlock)\n"
                ),
            );
            false
        }
    }
}

fn task_tid(t: &AtomicU64) -> i32 {
    t.load(Ordering::Relaxed) as u32 as i32
}

fn task_status(t: &AtomicU64) -> u64 {
    t.load(Ordering::Relaxed) >> 32 & 0xff
}

/// How many refusals of the task the forker has answered with a new signal.
fn task_refusals(t: &AtomicU64) -> u64 {
    t.load(Ordering::Relaxed) >> 40
}

fn set_task(t: &AtomicU64, tid: i32, status: u64) {
    set_task_refusals(t, tid, status, task_refusals(t));
}

fn set_task_refusals(t: &AtomicU64, tid: i32, status: u64, refusals: u64) {
    t.store(
        refusals << 40 | status << 32 | tid as u32 as u64,
        Ordering::Relaxed,
    );
}

/// Signals every other thread and waits until each has stopped, exited or
/// been found to block the signal; scans again until a scan finds no new
/// thread (a thread that was still running may have created one).
fn stop_all(phase: &AtomicU32, w: u32, sig: i32) -> Result<(), &'static str> {
    let me = gettid();
    let start = now_ns();
    let mut n = 0usize;
    loop {
        let scan_start = now_ns();
        let mut new = 0usize;
        let mut error = None;
        let read = for_each_task(|tid| {
            if tid == me || error.is_some() || TASKS[..n].iter().any(|t| task_tid(t) == tid) {
                return;
            }
            if n == MAX_STOPPED {
                error = Some("more than 4096 threads");
                return;
            }
            // A thread that blocks the signal (or waits for signals in
            // `sigwait`) is signalled only once found unblocking it
            // (`wait_for_acks`): the signal would stay pending and reach
            // the program. Ours, leaving the handler of the last stop, take it.
            let (gone, _, blocked) = task_state(tid, sig);
            if gone {
                return;
            }
            if blocked && !in_handler(tid) {
                set_task_refusals(&TASKS[n], tid, TASK_UNSENT, 0);
                n += 1;
                new += 1;
                return;
            }
            match send_stop(tid, sig) {
                0 => {
                    set_task_refusals(&TASKS[n], tid, TASK_SIGNALLED, 0);
                    n += 1;
                    new += 1;
                }
                libc::ESRCH => {} // Exited meanwhile.
                _ => error = Some("tgkill"),
            }
        });
        if !read {
            return Err("reading /proc/self/task");
        }
        if let Some(e) = error {
            return Err(e);
        }
        if new == 0 {
            return Ok(());
        }
        wait_for_acks(phase, w, sig, &TASKS[..n], start, scan_start)?;
    }
}

/// Sends the stop signal to `tid`: 0 or an errno.
fn send_stop(tid: i32, sig: i32) -> i32 {
    let mut r = tgkill(tid, sig);
    let mut tries = 0;
    while r == libc::EAGAIN && tries < 100 {
        // The queue of pending real-time signals is full.
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
        r = tgkill(tid, sig);
        tries += 1;
    }
    r
}

/// Waits until every signalled thread of `tasks` has acknowledged (or is
/// found gone or blocking the signal).
fn wait_for_acks(
    phase: &AtomicU32,
    w: u32,
    sig: i32,
    tasks: &[AtomicU64],
    start: u64,
    scan_start: u64,
) -> Result<(), &'static str> {
    let mut last_check = scan_start;
    loop {
        let acked = ACK_N.load(Ordering::SeqCst);
        if acked > MAX_ACKS {
            return Err("too many acknowledgements");
        }
        let acks = &ACKS[..acked];
        let mut pending = 0usize;
        for t in tasks
            .iter()
            .filter(|t| matches!(task_status(t), TASK_SIGNALLED | TASK_SUSPECT | TASK_UNSENT))
        {
            let tid = task_tid(t);
            if task_status(t) == TASK_UNSENT {
                pending += 1;
                continue;
            }
            let (mut stopped, mut refusals) = (false, 0);
            for a in acks {
                let a = a.load(Ordering::SeqCst);
                stopped |= a == ack_word(w, tid);
                refusals += (a == ack_word(w, tid) | ACK_REFUSED) as u64;
            }
            if stopped {
                set_task(t, tid, TASK_STOPPED);
                continue;
            }
            pending += 1;
            if refusals > task_refusals(t) {
                // It was inside the C library: try again.
                set_task_refusals(t, tid, task_status(t), refusals);
                match send_stop(tid, sig) {
                    0 | libc::ESRCH => {}
                    _ => return Err("tgkill"),
                }
            }
        }
        if pending == 0 {
            return Ok(());
        }
        if phase.load(Ordering::SeqCst) != w {
            return Err("a stopped thread gave up waiting");
        }
        let now = now_ns();
        if now.wrapping_sub(start) > STOP_WAIT_NS {
            return Err("a thread did not stop within 2 s");
        }
        if now.wrapping_sub(last_check) > BLOCKED_CHECK_NS {
            last_check = now;
            for t in tasks
                .iter()
                .filter(|t| matches!(task_status(t), TASK_SIGNALLED | TASK_SUSPECT | TASK_UNSENT))
            {
                let tid = task_tid(t);
                let (gone, runnable, blocked) = task_state(tid, sig);
                // Every signal is blocked for a while in threads that are
                // leaving this handler after the previous stop, or that
                // glibc is starting or ending: wait for those (runnable ones
                // are about to get there, sleeping ones will not be found
                // so twice in a row), but not for a thread that sleeps with
                // the signal blocked.
                let transient =
                    in_handler(tid) || runnable && now.wrapping_sub(scan_start) < RUNNABLE_WAIT_NS;
                if gone || tgkill(tid, 0) == libc::ESRCH {
                    set_task(t, tid, TASK_SKIPPED);
                } else if task_status(t) == TASK_UNSENT && (!blocked || in_handler(tid)) {
                    // It takes the signal now.
                    match send_stop(tid, sig) {
                        0 => set_task(t, tid, TASK_SIGNALLED),
                        libc::ESRCH => set_task(t, tid, TASK_SKIPPED),
                        _ => return Err("tgkill"),
                    }
                } else if task_status(t) == TASK_UNSENT && transient {
                    // Blocking for a moment (glibc starting or ending it): look again.
                } else if !blocked || transient {
                    set_task(t, tid, TASK_SIGNALLED);
                } else if task_status(t) == TASK_SIGNALLED {
                    set_task(t, tid, TASK_SUSPECT);
                } else {
                    set_task(t, tid, TASK_SKIPPED);
                    warn_once(
                        &WARNED_BLOCKED,
                        format_args!(
                            "kmem: fork: thread {tid} blocks signal {sig}, so it keeps running while a \
                             fork child copies the RAM (its copy may mix instants, or hold a spinlock)\n"
                        ),
                    );
                }
            }
        }
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// Lets the threads of stop `w` run again.
fn release(phase: &AtomicU32, w: u32) {
    phase.store((w & !PHASE_STATE) | PHASE_IDLE, Ordering::SeqCst);
    futex_wake_all(phase);
}

extern "C" fn prepare() {
    while FORK_MUTEX
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
    crate::ram::registry_lock();
    FORKER.store(gate_tls() as *const GateTls as usize, Ordering::Relaxed);
    // From here on, threads wait before their outermost gated spinlock.
    let flags = GATE_FLAGS.0.fetch_or(GATE_FORKING, Ordering::SeqCst);
    if flags & GATE_COUNTING != 0 {
        // Wait for the threads inside gated spinlocks to leave them. The
        // forking thread itself holds none (fork is not called from inside
        // kmem).
        let start = now_ns();
        while GATE_SLOTS.iter().any(|s| s.0.load(Ordering::SeqCst) != 0) {
            if now_ns().wrapping_sub(start) > GATE_WAIT_NS {
                write_stderr(b"kmem: fork: a thread kept a spinlock for 1s; forking anyway\n");
                break;
            }
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
    if crate::ram::registered().next().is_some() {
        // Stopping brings every other thread out of the gated spinlocks, and keeps them still
        // through the `fork` itself (which copies private lowmem) and the child's copy of the
        // memfds.
        let stopped = !single_threaded() && stop_other_threads();
        // With no other thread running, nothing writes the memfds: if they hold no data (lowmem
        // private, no HighMem page written) the child has nothing to copy, and the parent need not
        // wait for it.
        let nothing_to_copy =
            (stopped || single_threaded()) && crate::ram::registered().all(|r| r.memfd_empty());
        NOTHING_TO_COPY.store(nothing_to_copy, Ordering::Relaxed);
        if !nothing_to_copy {
            // The parent waits on this pipe until the child has copied the RAM.
            let mut fds = [-1i32; 2];
            // SAFETY: `fds` has room for two descriptors. Without the pipe the parent cannot wait
            // for the copy; its threads still stay stopped through the `fork` (the child warns
            // that its copy of the memfds may mix instants).
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
                PIPE_R.store(fds[0], Ordering::Relaxed);
                PIPE_W.store(fds[1], Ordering::Relaxed);
            }
        }
    }
}

fn close(fd: &AtomicI32) -> i32 {
    // Not written when already closed: a `fork`'s child would take a copy-on-write fault on its page.
    if fd.load(Ordering::Relaxed) < 0 {
        return -1;
    }
    let fd = fd.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: a descriptor this module opened and nobody else uses.
        unsafe { libc::close(fd) };
    }
    fd
}

fn open_gate() {
    FORKER.store(0, Ordering::Relaxed);
    let flags = GATE_FLAGS
        .0
        .fetch_and(!(GATE_FORKING | GATE_WAITERS), Ordering::SeqCst);
    if flags & GATE_WAITERS != 0 {
        futex_wake_all(&GATE_FLAGS.0);
    }
}

extern "C" fn parent() {
    close(&PIPE_W);
    let r = PIPE_R.load(Ordering::Relaxed);
    if r >= 0 {
        let mut b = 0u8;
        loop {
            // SAFETY: reading one byte into `b`.
            let n = unsafe { libc::read(r, (&mut b as *mut u8).cast(), 1) };
            if n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
    }
    close(&PIPE_R);
    let w = take_unshared(&STOPPED_W);
    if let (true, Some(phase)) = (w != 0, phase()) {
        release(phase, w);
    }
    open_gate();
    crate::ram::registry_unlock();
    FORK_MUTEX.store(false, Ordering::Release);
}

extern "C" fn child() {
    // Keep the parent's stopped threads stopped until the copy is made (with nothing to copy, the
    // parent lets them go at once).
    let w = take_unshared(&STOPPED_W);
    if let (true, false, Some(phase)) = (w != 0, NOTHING_TO_COPY.load(Ordering::Relaxed), phase()) {
        let copying = (w & !PHASE_STATE) | PHASE_COPYING;
        if phase
            .compare_exchange(w, copying, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            write_stderr(
                b"kmem: fork: the other threads resumed before the child copied the RAM (a stopped thread \
                  held a lock the fork needed?): the child's copy may mix instants\n",
            );
        }
    }
    close(&PIPE_R);
    for ram in crate::ram::registered() {
        if let Err(what) = private_copy(ram) {
            let mut buf = [0u8; 160];
            let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            let n = fmt_into(
                &mut buf,
                format_args!("kmem: fork: cannot give the child its own RAM ({what}, errno {err})\n"),
            );
            write_stderr(&buf[..n]);
            // SAFETY: ending the child at once; it would corrupt its parent.
            unsafe { libc::_exit(127) };
        }
    }
    // Threads that held gate slots or CPU owner locks do not exist here. The slots are used only
    // in counting mode, and each word is written only if set: a page this process shares with its
    // parent copy-on-write costs a fault to write.
    if GATE_FLAGS.0.load(Ordering::Relaxed) & GATE_COUNTING != 0 {
        for s in GATE_SLOTS.iter().filter(|s| s.0.load(Ordering::Relaxed) != 0) {
            s.0.store(0, Ordering::Relaxed);
        }
    }
    take_unshared(&gate_tls().pending);
    crate::platform::reset_cpu_owners();
    // The phase page, if the parent has one, is shared with it: this process maps its own before it
    // first stops.
    if !PHASE.load(Ordering::Relaxed).is_null() {
        PHASE_INHERITED.store(true, Ordering::Relaxed);
    }
    let w = PIPE_W.load(Ordering::Relaxed);
    if w >= 0 {
        // SAFETY: writing one byte from a local.
        unsafe { libc::write(w, b"k".as_ptr().cast(), 1) };
    }
    close(&PIPE_W);
    open_gate();
    crate::ram::registry_unlock();
    FORK_MUTEX.store(false, Ordering::Release);
}

/// Formats into `buf` without allocating; returns the length (cut if too long).
fn fmt_into(buf: &mut [u8], args: core::fmt::Arguments<'_>) -> usize {
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

/// Gives this (child) process its own copy of the registered RAM `ram`; see
/// the module documentation. Uses no heap: it runs right after `fork`.
fn private_copy(ram: crate::ram::RamRef) -> Result<(), &'static str> {
    if ram.detached() || (NOTHING_TO_COPY.load(Ordering::Relaxed) && !ram.aliased()) {
        // No data, and only the linear map maps the file: no file until the child needs one.
        return ram.detach_file().map_err(|_| "unmapping its parent's memfd");
    }
    let (dev, ino, size) = ram.file().ok_or("reaching the RAM's memfd")?;
    // SAFETY: a NUL-terminated name and valid flags.
    let new = unsafe { libc::memfd_create(c"kmem-ram".as_ptr(), libc::MFD_CLOEXEC) };
    if new < 0 {
        return Err("memfd_create");
    }
    let result = (|| {
        // SAFETY: `new` is our fresh memfd.
        if unsafe { libc::ftruncate(new, size) } != 0 {
            return Err("ftruncate");
        }
        if !NOTHING_TO_COPY.load(Ordering::Relaxed) {
            let old = ram.fd().map_err(|_| "reaching the RAM's memfd")?;
            copy_data(old, new, size)?;
        }
        match ram.shared_map() {
            // Only the linear map maps the file: no need to look for aliases. Its private lowmem, if
            // any, is the child's copy-on-write copy already.
            Some((start, len)) if !ram.aliased() => {
                if len != 0 {
                    let off = ram.private() as u64;
                    remap(start, len, libc::PROT_READ | libc::PROT_WRITE, new, off)?
                }
            }
            _ => remap_mappings(dev, ino, new)?,
        }
        ram.replace_file(new).map_err(|_| "dup3")
    })();
    // SAFETY: our descriptor; the registry's duplicate and the mappings keep the file.
    unsafe { libc::close(new) };
    result
}

/// Copies the populated ranges of `old` into `new` at the same offsets.
fn copy_data(old: i32, new: i32, size: i64) -> Result<(), &'static str> {
    let mut off: i64 = 0;
    while off < size {
        // SAFETY: seeking an open descriptor.
        let data = unsafe { libc::lseek(old, off, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: no data after `off`.
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(old, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size } else { hole.min(size) };
        copy_range(old, new, data, end)?;
        off = end;
    }
    Ok(())
}

fn copy_range(old: i32, new: i32, start: i64, end: i64) -> Result<(), &'static str> {
    let mut pos = start;
    while pos < end {
        let mut src = pos;
        let mut dst = pos;
        // SAFETY: both descriptors are open; the offsets are ours.
        let n = unsafe { libc::copy_file_range(old, &mut src, new, &mut dst, (end - pos) as usize, 0) };
        if n > 0 {
            pos += n as i64;
            continue;
        }
        if n == 0 {
            break;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            _ => return copy_range_rw(old, new, pos, end),
        }
    }
    Ok(())
}

/// `pread`/`pwrite` fallback of `copy_range`. Out of line, as `for_each_line`: its 16 KiB buffer
/// in `child`'s frame would make every fork child fault in four more stack pages.
#[cold]
#[inline(never)]
fn copy_range_rw(old: i32, new: i32, mut pos: i64, end: i64) -> Result<(), &'static str> {
    let mut buf = [0u8; 16384];
    while pos < end {
        let want = ((end - pos) as usize).min(buf.len());
        // SAFETY: `buf` has room for `want` bytes.
        let n = unsafe { libc::pread(old, buf.as_mut_ptr().cast(), want, pos) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err("pread");
        }
        let mut done = 0;
        while done < n as usize {
            // SAFETY: writing initialised bytes of `buf`.
            let w = unsafe {
                libc::pwrite(
                    new,
                    buf[done..].as_ptr().cast(),
                    n as usize - done,
                    pos + done as i64,
                )
            };
            if w <= 0 {
                if w < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err("pwrite");
            }
            done += w as usize;
        }
        pos += n as i64;
    }
    Ok(())
}

/// Reads a /proc file line by line without allocating, calling `f` on each
/// complete line. Returns false if the file cannot be read.
#[inline(never)]
fn for_each_line(path: &core::ffi::CStr, mut f: impl FnMut(&[u8])) -> bool {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    let mut buf = [0u8; 8192];
    let mut len = 0;
    let mut ok = true;
    loop {
        // SAFETY: reading into the free tail of `buf`.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            ok = false;
            break;
        }
        len += n as usize;
        let mut start = 0;
        while let Some(nl) = buf[start..len].iter().position(|&b| b == b'\n') {
            f(&buf[start..start + nl]);
            start += nl + 1;
        }
        buf.copy_within(start..len, 0);
        len -= start;
        if n == 0 {
            if len > 0 {
                f(&buf[..len]);
            }
            break;
        }
        if len == buf.len() {
            // A line longer than the buffer: skip it.
            len = 0;
        }
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    ok
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = (c as char).to_digit(16)? as u64;
        v = v.checked_mul(16)?.checked_add(d)?;
    }
    Some(v)
}

fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = (c as char).to_digit(10)? as u64;
        v = v.checked_mul(10)?.checked_add(d)?;
    }
    Some(v)
}

/// One `/proc/self/maps` line: (start, end, prot, offset, dev, inode).
fn parse_maps_line(line: &[u8]) -> Option<(usize, usize, i32, u64, u64, u64)> {
    let mut it = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let range = it.next()?;
    let perms = it.next()?;
    let offset = parse_hex(it.next()?)?;
    let dev = it.next()?;
    let inode = parse_dec(it.next()?)?;
    let dash = range.iter().position(|&b| b == b'-')?;
    let start = parse_hex(&range[..dash])? as usize;
    let end = parse_hex(&range[dash + 1..])? as usize;
    let colon = dev.iter().position(|&b| b == b':')?;
    let major = parse_hex(&dev[..colon])?;
    let minor = parse_hex(&dev[colon + 1..])?;
    let mut prot = 0;
    if perms.first() == Some(&b'r') {
        prot |= libc::PROT_READ;
    }
    if perms.get(1) == Some(&b'w') {
        prot |= libc::PROT_WRITE;
    }
    if perms.get(2) == Some(&b'x') {
        prot |= libc::PROT_EXEC;
    }
    let dev = libc::makedev(major as u32, minor as u32);
    Some((start, end, prot, offset, dev, inode))
}

/// Maps `[start, start + len)`, a mapping of the old RAM file at `off`, to
/// the same range of `new` instead, with protection `prot`.
fn remap(start: usize, len: usize, prot: i32, new: i32, off: u64) -> Result<(), &'static str> {
    // SAFETY: `[start, start + len)` maps the old RAM file at `off`; the same range of the new file (a
    // copy of the old one) replaces it, so every address keeps its contents.
    unsafe { crate::ram::map_file_in_place(start, len, prot, new, off as usize) }.map_err(|_| "mmap")
}

/// Replaces every mapping of the file (dev, ino), found in
/// `/proc/self/maps`, with the same range of `new`.
fn remap_mappings(dev: u64, ino: u64, new: i32) -> Result<(), &'static str> {
    // Remapping may merge or split areas while the file is read, which can
    // make a reader skip one: read again until a pass finds nothing to do.
    for _ in 0..16 {
        let mut found = 0usize;
        let mut failed = false;
        let ok = for_each_line(c"/proc/self/maps", |line| {
            let Some((start, end, prot, off, d, i)) = parse_maps_line(line) else {
                return;
            };
            if d != dev || i != ino || end <= start {
                return;
            }
            found += 1;
            failed |= remap(start, end - start, prot, new, off).is_err();
        });
        if !ok {
            return Err("reading /proc/self/maps");
        }
        if failed {
            return Err("mmap");
        }
        if found == 0 {
            return Ok(());
        }
    }
    Err("mappings kept changing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse() {
        let l = b"7f0000000000-7f0000200000 rw-s 00400000 00:01 1234   /memfd:kmem-ram (deleted)";
        let (s, e, prot, off, dev, ino) = parse_maps_line(l).unwrap();
        assert_eq!(
            (s, e, off, ino),
            (0x7f00_0000_0000, 0x7f00_0020_0000, 0x40_0000, 1234)
        );
        assert_eq!(prot, libc::PROT_READ | libc::PROT_WRITE);
        assert_eq!(dev, libc::makedev(0, 1));
        assert!(parse_maps_line(b"garbage").is_none());
        let anon = b"7ffd0000-7ffd1000 ---p 00000000 00:00 0";
        assert_eq!(parse_maps_line(anon).unwrap().5, 0);
    }

    #[test]
    fn gate_counts_nesting() {
        // A process that created a thread is never single-threaded again,
        // so the gate counts.
        std::thread::spawn(|| {}).join().unwrap();
        let depth = || gate_tls().depth.load(Ordering::Relaxed);
        let base = depth();
        let a = gate_enter();
        let b = gate_enter();
        assert_eq!((a, b), (1, 1));
        assert_eq!(depth(), base + 2);
        gate_exit(b);
        assert_eq!(depth(), base + 1);
        gate_exit(a);
        assert_eq!(depth(), base);
        gate_exit(0);
        assert_eq!(depth(), base);
        // Every thread has its own depth.
        let t = gate_enter();
        std::thread::spawn(|| assert_eq!(gate_tls().depth.load(Ordering::Relaxed), 0))
            .join()
            .unwrap();
        gate_exit(t);
    }

    #[test]
    fn gate_tls_is_per_thread_and_static() {
        let mine = gate_tls() as *const GateTls as usize;
        assert_eq!(mine % 8, 0);
        let other = std::thread::spawn(|| gate_tls() as *const GateTls as usize)
            .join()
            .unwrap();
        assert_ne!(mine, other);
    }

    /// A thread inside a gated spinlock when a fork starts is not stopped
    /// there: it runs on to its outermost unlock and stops there, and the
    /// fork waits for it.
    #[test]
    fn fork_waits_for_a_spinlock_holder() {
        // RAM registered and the handlers installed: forks stop threads.
        let m = crate::default_machine();
        assert!(m.kmem().kmalloc(64, kmem::GFP_KERNEL).is_ok());
        const HOLD_MS: u64 = 300;
        let (tx, rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let c = gate_enter();
            tx.send(()).unwrap();
            // The stop signal interrupts the sleep (std sleeps again for the
            // rest) and finds the depth above 0: it leaves a mark.
            std::thread::sleep(std::time::Duration::from_millis(HOLD_MS));
            let marked = gate_tls().pending.load(Ordering::Relaxed) & PENDING_DEFER != 0;
            let left = now_ns();
            gate_exit(c); // Stops here until the fork is over.
            (marked, left, gate_tls().pending.load(Ordering::Relaxed))
        });
        rx.recv().unwrap();
        let start = now_ns();
        // SAFETY: the child only calls `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: ending the child at once.
            unsafe { libc::_exit(0) };
        }
        let forked = now_ns();
        assert!(pid > 0);
        let mut status = -1;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let (marked, left, pending) = holder.join().unwrap();
        assert_eq!(status, 0);
        assert!(marked, "the stop signal did not mark the spinlock holder");
        assert!(
            left > start && forked >= left,
            "the fork did not wait for the holder's unlock ({start} {left} {forked})"
        );
        assert!(forked - start >= (HOLD_MS / 2) * 1_000_000);
        assert_eq!(pending, 0);
    }
}
