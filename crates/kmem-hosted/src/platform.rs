//! `HostedPlatform`: the kmem platform of a Linux process.
//!
//! Each kmem machine booted in a process holds one `HostedPlatform` by value.
//! It answers the core's questions about the world with the host's own means:
//!
//! * **CPU ids** come from the rseq area glibc (2.35+) registers for every
//!   thread: the kernel stores the thread's current CPU in `rseq.cpu_id`
//!   whenever it returns to user space after a migration, so reading the CPU
//!   is one load from thread-local memory. The area lives at
//!   `thread pointer + __rseq_offset`; on x86-64 the thread pointer is the
//!   word at `fs:0`. glibc's offset is read once and cached in a static
//!   (`RSEQ_OFFSET`, 0 meaning "no rseq"), and each platform keeps a copy
//!   beside `nr_cpus`. So the fast path is: load the offset, load the thread
//!   pointer, load `cpu_id`, compare it with `nr_cpus` — a handful of
//!   instructions. Everything else takes the cold path: no rseq (the
//!   process's or this thread's: a negative `cpu_id`) means `sched_getcpu()`,
//!   and a host CPU at or beyond the machine's CPU count is folded with
//!   `% nr_cpus` (a smaller machine shares host CPUs; on a bigger one the
//!   extra CPUs never run).
//! * **Task state** (`current->flags`, `preempt_count()`) is per thread: a
//!   thread is a task. Both are `const`-initialised `Cell<u32>` thread-locals
//!   without destructors, so reading them never allocates and still works
//!   while a thread is being torn down (and reads as 0 if it ever does not).
//!   They are per thread and not per machine: a thread inside an atomic
//!   section cannot sleep, whatever machine it allocates from.
//! * **Pinning** (`preempt_disable`, `get_cpu`) is real: each machine CPU
//!   has an owner lock (a futex mutex in a fixed static array of
//!   `MAX_PINNED_CPUS` words, so it never allocates). The outermost
//!   `preempt_disable` of a thread takes the lock of the CPU it runs on and
//!   records that CPU in thread-locals; until the matching `preempt_enable`,
//!   `smp_processor_id()` returns it even if the host migrates the thread,
//!   and any other thread that wants that CPU waits. So two threads never
//!   run a `get_cpu` section on the same machine CPU at once, and plain
//!   read-modify-writes of per-CPU data inside it are exact. Nesting only
//!   counts. The locks are process-wide (a thread pinned to CPU `n` owns CPU
//!   `n` of every machine). As in the kernel, a pinned thread must not sleep
//!   or wait for another thread that may want its CPU (that deadlocks), and a
//!   thread that exits pinned leaves its CPU owned forever.
//! * **Sleeping** is a private futex on the word. Private futexes key on the
//!   (mm, virtual address) pair, which works for words in the machine's RAM
//!   (a `MAP_SHARED` memfd mapping) as long as every waiter and waker uses the
//!   same mapping of the word in the same process — which kmem does.
//! * **RAM given back** to the host is a hole punched in the RAM memfd, so the
//!   process's memory use follows the machine's.
//! * **fork**: spinlocks of a machine with the fork gate enabled
//!   (`enable_fork_gate`; the default machine) count their holders in
//!   `local_irq_save`/`local_irq_restore`, so a fork can wait until no other
//!   thread holds one (see `fork.rs`); other machines pay nothing there.
//! * **printk** formats into a 512-byte stack buffer and writes it to stderr in
//!   one `write(2)`, so it never allocates (it may run inside the allocator)
//!   and concurrent lines do not interleave. Quiet platforms drop the text;
//!   the core keeps its own dmesg ring, so nothing is lost.

use core::cell::Cell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::io;

use kmem::platform::{Platform, PREEMPT_OFFSET};

use crate::ram::{HostRam, RamRef};

/// Whether this target can read CPU ids from glibc's rseq area.
macro_rules! if_rseq {
    ($($item:item)*) => {
        $(#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))] $item)*
    };
}

/// Offset of every thread's `struct rseq` from its thread pointer, or 0 when
/// rseq cannot be used (not probed yet, glibc registered none, or this is not
/// an x86-64 glibc target). A valid offset is never 0: the word at the thread
/// pointer is the TCB's self pointer.
static RSEQ_OFFSET: AtomicIsize = AtomicIsize::new(0);

/// Whether `rseq_offset` probed glibc already.
static RSEQ_PROBED: AtomicBool = AtomicBool::new(false);

/// Offset of every thread's `struct rseq` from its thread pointer whether or
/// not glibc registered it (glibc 2.35+ sets `__rseq_offset` in both cases;
/// an unregistered area reads `cpu_id` -2), or the emulated area; 0 before
/// probing and on targets without one. What the slab fast paths run their
/// restartable sequences on (`Platform::RSEQ_AREA`).
static RSEQ_AREA: AtomicIsize = AtomicIsize::new(0);

if_rseq! {
    mod glibc_rseq {
        extern "C" {
            /// Offset of the thread's `struct rseq` from the thread pointer
            /// (glibc 2.35+, `<sys/rseq.h>`).
            pub static __rseq_offset: isize;
            /// Size of the registered rseq area, 0 if glibc registered none.
            pub static __rseq_size: u32;
        }
    }

    /// Offset of `cpu_id` in `struct rseq` (after `u32 cpu_id_start`).
    const RSEQ_CPU_ID_OFFSET: isize = 4;

    /// The calling thread's `rseq.cpu_id`: its CPU, or a negative value
    /// (`RSEQ_CPU_ID_UNINITIALIZED`, `RSEQ_CPU_ID_REGISTRATION_FAILED`) as
    /// u32 if this thread has no registered area.
    ///
    /// `offset` must be a nonzero value of `RSEQ_OFFSET`.
    #[inline(always)]
    fn read_rseq_cpu_id(offset: isize) -> u32 {
        let tp: usize;
        // The load has no side effects and its value is fixed for the thread's life, hence `pure, readonly`.
        // SAFETY: on x86-64 Linux the FS base of every thread points at its TCB, whose first word is the
        // TCB's own address (the ABI's thread pointer).
        unsafe {
            core::arch::asm!(
                "mov {}, qword ptr fs:[0]",
                out(reg) tp,
                options(nostack, readonly, preserves_flags, pure)
            );
        }
        let addr = tp.wrapping_add_signed(offset + RSEQ_CPU_ID_OFFSET);
        // Glibc places the area in the static TLS of every thread it creates, at that offset from the thread
        // pointer (threads made with a raw `clone`, bypassing glibc, cannot run Rust's std either). So `addr`
        // is this thread's `rseq.cpu_id`, an aligned u32 that lives as long as the thread. Volatile: the
        // kernel rewrites it behind the compiler's back.
        // SAFETY: a nonzero `offset` is glibc's `__rseq_offset` of a process in which glibc registered rseq.
        unsafe { core::ptr::read_volatile(core::ptr::with_exposed_provenance::<u32>(addr)) }
    }
}

/// `membarrier(2)` commands and flags (`<linux/membarrier.h>`).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ: libc::c_long = 1 << 7;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ: libc::c_long = 1 << 8;
const MEMBARRIER_CMD_FLAG_CPU: libc::c_long = 1 << 0;

/// `membarrier(cmd, flags, cpu)`; true on success.
fn membarrier(cmd: libc::c_long, flags: libc::c_long, cpu: libc::c_long) -> bool {
    // SAFETY: membarrier takes three integers and touches no user memory.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, flags, cpu) == 0 }
}

/// Whether this process may restart other threads' rseq critical sections
/// (`MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ`, Linux 5.10+): registers
/// once and checks that a fence works. Registration is per process; a forked
/// child inherits it.
fn membarrier_rseq_ready() -> bool {
    static STATE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);
    match STATE.load(Ordering::Acquire) {
        1 => true,
        2 => false,
        _ => {
            let ok = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0)
                && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_FLAG_CPU, 0);
            STATE.store(if ok { 1 } else { 2 }, Ordering::Release);
            ok
        }
    }
}

/// Reads glibc's rseq registration once and caches it in `RSEQ_OFFSET`;
/// returns the offset (0: no rseq). Thread-safe: every prober stores the same.
#[inline]
fn rseq_offset() -> isize {
    if !RSEQ_PROBED.load(Ordering::Acquire) {
        probe_rseq();
    }
    RSEQ_OFFSET.load(Ordering::Relaxed)
}

/// Set by [`emulate_rseq_for_instruction_counts`].
static RSEQ_EMULATED: AtomicBool = AtomicBool::new(false);

if_rseq! {
    /// A never-registered `struct rseq` per thread, for
    /// [`emulate_rseq_for_instruction_counts`]; `cpu_id` reads 0.
    #[repr(C, align(32))]
    struct EmulatedRseq([u32; 8]);

    std::thread_local! {
        static EMULATED_RSEQ: EmulatedRseq = const { EmulatedRseq([0; 8]) };
    }
}

/// For instruction counting under valgrind only, which implements no rseq
/// (glibc then registers none): make this process's machines take their rseq
/// code paths over a per-thread area the kernel does not know, whose
/// `cpu_id` is 0. The instructions executed are those of a registered area;
/// but nothing restarts a sequence, so this is correct for one thread only —
/// never use it in a program that allocates from several threads. Call
/// before booting a machine. Returns false (and does nothing) if glibc did
/// register rseq or the target has none.
pub fn emulate_rseq_for_instruction_counts() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    {
        if rseq_offset() != 0 {
            return false;
        }
        let tp: usize;
        // SAFETY: as in `read_rseq_cpu_id`.
        unsafe {
            core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags));
        }
        // A `const` thread-local without destructor of an executable is in
        // static TLS: the same offset from every thread's pointer.
        let area = EMULATED_RSEQ.with(|a| a as *const EmulatedRseq as usize);
        RSEQ_OFFSET.store(area.wrapping_sub(tp) as isize, Ordering::Relaxed);
        RSEQ_AREA.store(area.wrapping_sub(tp) as isize, Ordering::Relaxed);
        RSEQ_EMULATED.store(true, Ordering::Relaxed);
        true
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cold]
fn probe_rseq() {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: both are plain data symbols exported by glibc 2.35+, set
        // by the dynamic loader before any user code runs and constant after.
        let (size, offset) = unsafe { (glibc_rseq::__rseq_size, glibc_rseq::__rseq_offset) };
        if size != 0 && offset != 0 {
            RSEQ_OFFSET.store(offset, Ordering::Relaxed);
        }
        // Compare-exchange: an emulated area set before the first probe stays.
        let _ = RSEQ_AREA.compare_exchange(0, offset, Ordering::Relaxed, Ordering::Relaxed);
    }
    RSEQ_PROBED.store(true, Ordering::Release);
}

/// The host CPU the caller runs on (not folded onto any machine's CPUs).
#[inline]
pub fn host_cpu() -> usize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    {
        let offset = rseq_offset();
        if offset != 0 {
            let cpu = read_rseq_cpu_id(offset);
            if (cpu as i32) >= 0 {
                return cpu as usize;
            }
        }
    }
    host_cpu_slow()
}

/// `sched_getcpu()`, for threads and hosts without rseq.
#[cold]
#[inline(never)]
fn host_cpu_slow() -> usize {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    // It only fails where the kernel lacks getcpu (before Linux 2.6.19).
    if cpu < 0 {
        0
    } else {
        cpu as usize
    }
}

/// Whether CPU ids come from glibc's rseq area (the fast path) rather than
/// `sched_getcpu()`.
pub fn rseq_available() -> bool {
    rseq_offset() != 0
}

/// The host's `nr_cpu_ids`: one more than the last CPU of
/// `/sys/devices/system/cpu/possible` (ids may be sparse), or the configured
/// CPU count if that file cannot be read. Every CPU id the kernel can write
/// into an rseq area is below it. Read with plain system calls (no
/// allocation: the malloc override boots through here).
pub fn host_cpu_ids() -> usize {
    static IDS: AtomicUsize = AtomicUsize::new(0);
    read_once(&IDS, || {
        possible_cpus().map_or(0, |(_, ids)| ids).max(host_nr_cpus())
    })
}

/// Number of CPUs the host has configured (`_SC_NPROCESSORS_CONF`), at least 1:
/// the CPUs of `/sys/devices/system/cpu/possible`, as glibc counts them, or
/// glibc's answer if that file cannot be read. The boot asks for it and for
/// [`host_cpu_ids`]; both come from one reading of the file (three system
/// calls), and the possible CPUs do not change while the host runs.
pub fn host_nr_cpus() -> usize {
    static NR: AtomicUsize = AtomicUsize::new(0);
    read_once(&NR, || match possible_cpus() {
        Some((n, _)) => n,
        None => {
            // SAFETY: sysconf has no preconditions.
            let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
            n.max(1) as usize
        }
    })
}

/// `/sys/devices/system/cpu/possible`, read once: how many CPUs it lists
/// and one more than the last; `None` if it cannot be read or parsed.
fn possible_cpus() -> Option<(usize, usize)> {
    // 0: not read yet; 1: unreadable; else `ids << 32 | count` (both below
    // 2^20: `parse_cpu_list`). Two threads that race both read.
    static POSSIBLE: AtomicU64 = AtomicU64::new(0);
    let mut v = POSSIBLE.load(Ordering::Relaxed);
    if v == 0 {
        v = match read_possible_cpus() {
            Some((n, ids)) if n > 0 => (ids as u64) << 32 | n as u64,
            _ => 1,
        };
        POSSIBLE.store(v, Ordering::Relaxed);
    }
    (v != 1).then_some(((v & 0xffff_ffff) as usize, (v >> 32) as usize))
}

/// Reads and parses `/sys/devices/system/cpu/possible`.
fn read_possible_cpus() -> Option<(usize, usize)> {
    let mut buf = [0u8; 256];
    // SAFETY: a NUL-terminated path; `buf` is writable for its length; the
    // descriptor is closed once.
    let len = unsafe {
        let fd = libc::open(
            c"/sys/devices/system/cpu/possible".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    parse_cpu_list(buf.get(..usize::try_from(len).ok()?)?)
}

/// A kernel CPU list ("0-3,8-11\n"): how many CPUs, and one more than the
/// last; `None` if empty or malformed.
fn parse_cpu_list(text: &[u8]) -> Option<(usize, usize)> {
    let text = core::str::from_utf8(text).ok()?.trim_end();
    let (mut count, mut ids) = (0usize, 0usize);
    for range in text.split(',') {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let (a, b) = (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
        if b < a || b >= 1 << 20 {
            return None;
        }
        count += b - a + 1;
        ids = ids.max(b + 1);
    }
    Some((count, ids))
}

/// A fact about the host that does not change while it runs: `read` (which
/// returns at least 1) the first time, `cache` afterwards (0: not read yet;
/// two threads that race both read, with the same result).
fn read_once(cache: &AtomicUsize, read: impl FnOnce() -> usize) -> usize {
    match cache.load(Ordering::Relaxed) {
        0 => {
            let v = read();
            cache.store(v, Ordering::Relaxed);
            v
        }
        v => v,
    }
}

std::thread_local! {
    /// `current->flags` of the calling thread.
    static TASK_FLAGS: Cell<u32> = const { Cell::new(0) };
    /// `preempt_count()` of the calling thread.
    static PREEMPT_COUNT: Cell<u32> = const { Cell::new(0) };
    /// `preempt_disable` nesting depth of the calling thread (0: not pinned).
    static PIN_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The machine CPU the calling thread is pinned to while `PIN_DEPTH > 0`.
    static PIN_CPU: Cell<u32> = const { Cell::new(0) };
}

/// Machine CPUs with an owner lock; CPU `n` uses lock `n % MAX_PINNED_CPUS`.
pub const MAX_PINNED_CPUS: usize = 1024;

/// Owner locks of the machine CPUs, for `preempt_disable` (0: free, 1: held,
/// 2: held with waiters). A fixed static array, so pinning never allocates.
/// Process-wide: a thread pinned to CPU `n` owns CPU `n` of every machine.
/// Zeroed, and a page of its own: after the small statics (`cold-bss.ld` of
/// libkmalloc), which it would otherwise split (the fork handlers' words on
/// one side, the gate's flags on the other: two pages for a `fork` to copy).
#[link_section = ".bss.kmem_cold"]
static CPU_OWNER: [AtomicU32; MAX_PINNED_CPUS] = [const { AtomicU32::new(0) }; MAX_PINNED_CPUS];

/// Whether any owner lock was ever taken in this process or its parents:
/// until then `CPU_OWNER`'s pages were never touched, and reading them would
/// fault them in.
static CPU_OWNER_USED: AtomicBool = AtomicBool::new(false);

/// Frees every CPU owner lock: in a child after `fork`, the threads that
/// held them do not exist. Writes only the locks that are held (the page is
/// the parent's until written: a copy-on-write fault), and reads none if
/// none was ever taken (two page faults in every child otherwise).
pub(crate) fn reset_cpu_owners() {
    if !CPU_OWNER_USED.load(Ordering::Relaxed) {
        return;
    }
    for w in &CPU_OWNER {
        crate::fork::take_unshared(w);
    }
}

/// Spins on a busy owner lock before sleeping on its futex.
const OWNER_SPINS: u32 = 64;

/// The Linux-process platform. See the module documentation.
///
/// # Invariants
/// `nr_cpus >= 1`. `rseq_offset` is `RSEQ_OFFSET` after probing, `rseq_area` `RSEQ_AREA`. `ram`,
/// if present, is the registry entry of the machine's RAM (`crate::ram`).
#[derive(Debug)]
pub struct HostedPlatform {
    nr_cpus: usize,
    /// Copy of `RSEQ_OFFSET`, beside `nr_cpus` so the fast path reads one
    /// cache line it already has (and no GOT entry).
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    rseq_offset: isize,
    /// Copy of `RSEQ_AREA` (never 0).
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    rseq_area: isize,
    ram: Option<RamRef>,
    quiet: AtomicBool,
    /// Whether spinlock holders are counted for fork (`enable_fork_gate`).
    fork_gate: AtomicBool,
    /// Device windows `ioremap` can map (`crate::iomem`).
    iomem: crate::iomem::IomemRegistry,
}

impl HostedPlatform {
    /// A platform for a machine of `nr_cpus` CPUs whose RAM is `ram` (used to
    /// give discarded RAM back to the host and to map vmalloc's aliases;
    /// `None`: discard is a no-op and vmalloc cannot map). `quiet`
    /// suppresses printk output to stderr.
    ///
    /// # Panics
    /// If `nr_cpus` is 0.
    pub fn new(nr_cpus: usize, ram: Option<RamRef>, quiet: bool) -> Self {
        assert!(nr_cpus >= 1, "a machine needs at least one CPU");
        Self {
            nr_cpus,
            #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
            rseq_offset: rseq_offset(),
            #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
            rseq_area: {
                let area = RSEQ_AREA.load(Ordering::Relaxed);
                // glibc 2.35+ (which this target links against for
                // `__rseq_offset`) always places the area in the TCB.
                assert!(area != 0, "glibc gave no rseq area offset");
                area
            },
            ram,
            quiet: AtomicBool::new(quiet),
            fork_gate: AtomicBool::new(false),
            iomem: crate::iomem::IomemRegistry::new(),
        }
    }

    /// The device windows registered with this machine.
    pub fn iomem(&self) -> &crate::iomem::IomemRegistry {
        &self.iomem
    }

    /// A platform for a machine of `nr_cpus` CPUs whose RAM is `ram`. It
    /// reaches the memfd through the RAM's registry entry, so it does not
    /// borrow `ram`; once `ram` is dropped, discarding does nothing and
    /// vmalloc cannot map.
    pub fn with_ram(nr_cpus: usize, ram: &HostRam, quiet: bool) -> io::Result<Self> {
        Ok(Self::new(nr_cpus, Some(ram.ram_ref()), quiet))
    }

    /// Bytes of private lowmem at the start of the RAM (`kmem.private_lowmem`):
    /// pages below it cannot be mapped in the vmalloc window. 0 without RAM.
    pub fn private_lowmem(&self) -> usize {
        self.ram.as_ref().map_or(0, |r| r.private())
    }

    /// Whether printk output is suppressed.
    pub fn is_quiet(&self) -> bool {
        self.quiet.load(Ordering::Relaxed)
    }

    /// Suppress (or restore) printk output to stderr.
    pub fn set_quiet(&self, quiet: bool) {
        self.quiet.store(quiet, Ordering::Relaxed);
    }

    /// Count this machine's spinlock holders so that a `fork` can wait until
    /// no other thread holds one (the child would find it held forever).
    /// Costs two thread-local updates and two atomic operations per outermost
    /// lock in multi-threaded processes; the default machine enables it.
    pub fn enable_fork_gate(&self) {
        self.fork_gate.store(true, Ordering::Relaxed);
    }

    /// Raise the calling thread's `preempt_count()` by `val`
    /// (`PREEMPT_OFFSET`, `SOFTIRQ_OFFSET`, `HARDIRQ_OFFSET`, ...).
    #[inline]
    pub fn preempt_count_add(&self, val: u32) {
        let _ = PREEMPT_COUNT.try_with(|c| c.set(c.get().wrapping_add(val)));
    }

    /// Lower the calling thread's `preempt_count()` by `val`.
    ///
    /// Lowering below zero is a caller bug (an unbalanced enable); debug
    /// builds assert, release builds clamp at 0.
    #[inline]
    pub fn preempt_count_sub(&self, val: u32) {
        let _ = PREEMPT_COUNT.try_with(|c| {
            let cur = c.get();
            debug_assert!(cur >= val, "preempt_count underflow: {cur:#x} - {val:#x}");
            c.set(cur.saturating_sub(val));
        });
    }

    /// The cold half of `smp_processor_id`: `rseq_cpu` is what rseq said
    /// (`u32::MAX` without rseq); a negative value as i32 means "ask
    /// `sched_getcpu`". Folds the host CPU onto the machine's.
    #[cold]
    #[inline(never)]
    fn fold_cpu(&self, rseq_cpu: u32) -> usize {
        let cpu = if (rseq_cpu as i32) < 0 {
            host_cpu_slow()
        } else {
            rseq_cpu as usize
        };
        cpu % self.nr_cpus
    }

    /// The CPU the caller runs on, ignoring pinning. The fast path: with
    /// rseq, load the offset (beside `nr_cpus`), the thread pointer and
    /// `rseq.cpu_id`, compare with `nr_cpus`. A negative `cpu_id` is huge as
    /// u32, so one comparison sends both "no rseq in this thread" and "host
    /// CPU beyond the machine's" to the cold path.
    #[inline]
    fn unpinned_cpu(&self) -> usize {
        #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
        if self.rseq_offset != 0 {
            let cpu = read_rseq_cpu_id(self.rseq_offset) as usize;
            if cpu < self.nr_cpus {
                return cpu;
            }
            return self.fold_cpu(cpu as u32);
        }
        self.fold_cpu(u32::MAX)
    }

    /// The machine CPU of a pinned caller (folded onto this machine's CPUs:
    /// a thread pinned on a bigger machine's CPU `n` uses `n % nr_cpus` here).
    #[inline]
    fn pinned_cpu(&self) -> usize {
        PIN_CPU.try_with(Cell::get).unwrap_or(0) as usize % self.nr_cpus
    }

    /// Take owner lock `i` (a futex mutex: spin a little, then sleep).
    fn owner_lock(&self, i: usize) {
        if !CPU_OWNER_USED.load(Ordering::Relaxed) {
            CPU_OWNER_USED.store(true, Ordering::Relaxed);
        }
        let w = &CPU_OWNER[i];
        if w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        for _ in 0..OWNER_SPINS {
            core::hint::spin_loop();
            if w.load(Ordering::Relaxed) == 0
                && w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        // Mark the lock contended; whoever finds it free this way owns it
        // (still marked contended, which only costs a spurious wake).
        while w.swap(2, Ordering::Acquire) != 0 {
            self.futex_wait(w, 2, None);
        }
    }

    /// Release owner lock `i`, waking one waiter if there may be any.
    fn owner_unlock(&self, i: usize) {
        let w = &CPU_OWNER[i];
        if w.swap(0, Ordering::Release) == 2 {
            self.futex_wake(w, 1);
        }
    }

    /// Give the host CPU to another thread (`sched_yield`).
    pub fn yield_now(&self) {
        // SAFETY: sched_yield has no preconditions.
        unsafe {
            libc::sched_yield();
        }
    }
}

impl Platform for HostedPlatform {
    /// A pinned thread (inside `preempt_disable`) gets the CPU it is pinned
    /// to; otherwise the rseq fast path (`unpinned_cpu`).
    #[inline]
    fn smp_processor_id(&self) -> usize {
        if PIN_DEPTH.try_with(Cell::get).unwrap_or(0) != 0 {
            return self.pinned_cpu();
        }
        self.unpinned_cpu()
    }

    /// The rseq read alone: the allocators' fast paths use it.
    #[inline]
    fn raw_smp_processor_id(&self) -> usize {
        self.unpinned_cpu()
    }

    /// glibc registered rseq, no host CPU is folded onto another (the host
    /// has at most `nr_cpus` CPUs), and membarrier can restart sequences.
    fn rseq_usable(&self) -> bool {
        #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
        {
            self.rseq_offset != 0
                && host_nr_cpus() <= self.nr_cpus
                && (RSEQ_EMULATED.load(Ordering::Relaxed) || membarrier_rseq_ready())
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
        {
            false
        }
    }

    const TRACKS_PREEMPT_COUNT: bool = true;

    const RSEQ_AREA: bool = cfg!(all(
        target_arch = "x86_64",
        target_os = "linux",
        target_env = "gnu"
    ));

    fn rseq_cpu_ids(&self) -> usize {
        host_cpu_ids()
    }

    #[inline(always)]
    fn rseq_offset(&self) -> isize {
        #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
        {
            self.rseq_area
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
        {
            0
        }
    }

    /// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)` on `cpu`, or on
    /// every CPU if the one-CPU form fails (a CPU that went offline).
    fn rseq_fence(&self, cpu: usize) {
        if RSEQ_EMULATED.load(Ordering::Relaxed) {
            return; // One thread: nothing to restart.
        }
        if membarrier(
            MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
            MEMBARRIER_CMD_FLAG_CPU,
            cpu as libc::c_long,
        ) {
            return;
        }
        while !membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) {
            // Only fails unregistered (which rseq_usable rules out) or on a
            // signal-free transient; registering again is harmless.
            membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0);
            std::thread::yield_now();
        }
    }

    #[inline]
    fn nr_cpu_ids(&self) -> usize {
        self.nr_cpus
    }

    /// There are no interrupts to mask in a process; a machine with the fork
    /// gate counts the lock holder here (see `fork.rs`).
    #[inline]
    fn local_irq_save(&self) -> usize {
        if self.fork_gate.load(Ordering::Relaxed) {
            crate::fork::gate_enter()
        } else {
            0
        }
    }

    #[inline]
    fn local_irq_restore(&self, flags: usize) {
        if flags != 0 {
            crate::fork::gate_exit(flags);
        }
    }

    /// Takes the owner lock of the CPU the caller runs on (unless it is
    /// pinned already: then only the depth grows), so no other thread runs
    /// on that machine CPU until the matching `preempt_enable`.
    fn preempt_disable(&self) -> usize {
        let Ok(depth) = PIN_DEPTH.try_with(Cell::get) else {
            // Thread teardown: no pinning possible; count only.
            HostedPlatform::preempt_count_add(self, PREEMPT_OFFSET);
            return self.unpinned_cpu();
        };
        if depth == 0 {
            let cpu = self.unpinned_cpu();
            self.owner_lock(cpu % MAX_PINNED_CPUS);
            PIN_CPU.with(|c| c.set(cpu as u32));
        }
        PIN_DEPTH.with(|d| d.set(depth + 1));
        HostedPlatform::preempt_count_add(self, PREEMPT_OFFSET);
        self.pinned_cpu()
    }

    fn preempt_enable(&self) {
        HostedPlatform::preempt_count_sub(self, PREEMPT_OFFSET);
        let Ok(depth) = PIN_DEPTH.try_with(Cell::get) else {
            return;
        };
        debug_assert!(depth > 0, "preempt_enable without preempt_disable");
        if depth == 0 {
            return;
        }
        PIN_DEPTH.with(|d| d.set(depth - 1));
        if depth == 1 {
            let cpu = PIN_CPU.with(Cell::get) as usize;
            self.owner_unlock(cpu % MAX_PINNED_CPUS);
        }
    }

    #[inline]
    fn preempt_count_add(&self, val: u32) {
        HostedPlatform::preempt_count_add(self, val)
    }

    #[inline]
    fn preempt_count_sub(&self, val: u32) {
        HostedPlatform::preempt_count_sub(self, val)
    }

    fn current_pid(&self) -> u32 {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() as u32 }
    }

    #[inline]
    fn preempt_count(&self) -> u32 {
        PREEMPT_COUNT.try_with(Cell::get).unwrap_or(0)
    }

    #[inline]
    fn current_flags(&self) -> u32 {
        TASK_FLAGS.try_with(Cell::get).unwrap_or(0)
    }

    #[inline]
    fn set_current_flags(&self, flags: u32) {
        let _ = TASK_FLAGS.try_with(|f| f.set(flags));
    }

    fn current_comm(&self, buf: &mut [u8; 16]) -> usize {
        // SAFETY: PR_GET_NAME writes at most 16 bytes (NUL included) to the
        // buffer, which is 16 bytes long.
        let r = unsafe { libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr()) };
        if r != 0 {
            buf.fill(0);
            return 0;
        }
        buf.iter().position(|&b| b == 0).unwrap_or(buf.len())
    }

    fn futex_wait(&self, word: &AtomicU32, expected: u32, timeout_ns: Option<u64>) {
        let ts;
        let ts_ptr = match timeout_ns {
            Some(ns) => {
                ts = libc::timespec {
                    tv_sec: (ns / 1_000_000_000).min(libc::time_t::MAX as u64) as libc::time_t,
                    tv_nsec: (ns % 1_000_000_000) as libc::c_long,
                };
                &ts as *const libc::timespec
            }
            None => core::ptr::null(),
        };
        // The kernel only reads it. `ts_ptr` is null or points at `ts`, alive until the call returns. EINTR,
        // EAGAIN (value changed) and ETIMEDOUT are all plain returns: callers re-check their condition.
        // SAFETY: `word` is a live, aligned u32 for the whole call.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                ts_ptr,
                core::ptr::null::<u32>(),
                0u32,
            );
        }
    }

    fn futex_wake(&self, word: &AtomicU32, n: u32) {
        let n = n.min(i32::MAX as u32) as libc::c_int;
        // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not access it.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                n,
            );
        }
    }

    #[inline]
    fn now_ns(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists.
        unsafe {
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        }
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }

    #[inline]
    fn cpu_relax(&self) {
        core::hint::spin_loop();
    }

    fn yield_cpu(&self) {
        self.yield_now();
    }

    fn discard_ram(&self, phys: u64, len: u64) {
        let Some(ram) = &self.ram else { return };
        if len == 0 {
            return;
        }
        // Punching a hole only makes the range read as zeroes; the caller
        // declared it free. If the host refuses, the pages stay.
        let _ = ram.discard(phys, len);
    }

    fn discard_zeroes(&self) -> bool {
        self.ram.is_some()
    }

    unsafe fn map_pages(&self, virt: usize, phys: &[u64]) -> bool {
        let Some(ram) = &self.ram else { return false };
        // Lowmem pages are refused before the file is reached (a RAM with no file yet makes it).
        let private = ram.private() as u64;
        if phys.iter().any(|&p| p < private) {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                self.printk(format_args!(
                    "kmem: lowmem is private (kmem.private_lowmem): only HighMem pages can be mapped in the \
                     vmalloc window"
                ));
            }
            return false;
        }
        let fd = match ram.fd() {
            Ok(fd) => fd,
            Err(err) => {
                static WARNED: AtomicBool = AtomicBool::new(false);
                if !WARNED.swap(true, Ordering::Relaxed) {
                    self.printk(format_args!(
                        "kmem: cannot reach the RAM's memfd to map vmalloc pages ({err})"
                    ));
                }
                return false;
            }
        };
        ram.note_alias();
        let page = kmem::PAGE_SIZE;
        let mut i = 0;
        while i < phys.len() {
            // Coalesce a run of physically consecutive pages into one mapping.
            let mut n = 1;
            while i + n < phys.len() && phys[i + n] == phys[i] + (n * page) as u64 {
                n += 1;
            }
            let Ok(off) = libc::off_t::try_from(phys[i]) else {
                return false;
            };
            // SAFETY: the caller owns `[virt + i*page, +n*page)` inside the reserved vmalloc window, and the
            // pages are RAM, inside the memfd; MAP_FIXED replaces exactly that part of the reservation.
            let r = unsafe {
                libc::mmap(
                    (virt + i * page) as *mut libc::c_void,
                    n * page,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    fd,
                    off,
                )
            };
            if r == libc::MAP_FAILED {
                static WARNED: AtomicBool = AtomicBool::new(false);
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::ENOMEM) && !WARNED.swap(true, Ordering::Relaxed) {
                    self.printk(format_args!(
                        "kmem: host mmap of a vmalloc page failed ({err}): the process may have reached \
                         vm.max_map_count"
                    ));
                }
                return false;
            }
            // SAFETY: the run was just mapped.
            unsafe { populate_resident(virt + i * page, n) };
            i += n;
        }
        true
    }

    /// Maps the part of a registered device file behind `phys` (see
    /// `crate::iomem`); the cache mode is the host's business.
    unsafe fn ioremap_pages(
        &self,
        virt: usize,
        phys: u64,
        len: usize,
        _pcm: kmem::platform::PageCacheMode,
    ) -> bool {
        // SAFETY: the caller owns the page-aligned range in the window.
        unsafe { self.iomem.map(virt, phys, len) }
    }

    unsafe fn unmap_pages(&self, virt: usize, len: usize) {
        if len == 0 {
            return;
        }
        // SAFETY: the caller owns the range inside the vmalloc window and no longer uses it; an inaccessible
        // reservation replaces it, so the window keeps its addresses (as `HostRam::unmap_alias`).
        let _ = unsafe { crate::ram::reserve_in_place(virt, len) };
    }

    fn printk(&self, args: fmt::Arguments<'_>) {
        if self.is_quiet() {
            return;
        }
        let mut buf = [0u8; PRINTK_LINE_MAX];
        let len = format_line(&mut buf, args);
        write_stderr(&buf[..len]);
    }

    fn caller_ip(&self) -> usize {
        crate::fork::caller_ip()
    }

    fn write_symbol(&self, addr: usize, out: &mut dyn fmt::Write) -> fmt::Result {
        write_symbol(addr, out)
    }

    fn dump_stack(&self) {
        if self.is_quiet() {
            return;
        }
        let mut comm = [0u8; 16];
        let n = self.current_comm(&mut comm);
        let comm = core::str::from_utf8(&comm[..n]).unwrap_or("?");
        // SAFETY: getpid/gettid have no preconditions.
        let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
        self.printk(format_args!(
            "CPU: {} PID: {} TID: {} Comm: {}\n",
            self.smp_processor_id(),
            pid,
            tid,
            comm
        ));
        write_backtrace();
    }
}

/// Longest printk line written to stderr, newline included; longer ones are cut.
pub const PRINTK_LINE_MAX: usize = 512;

/// A `fmt::Write` into a fixed buffer that cuts what does not fit (at a
/// character boundary) and then stops the formatting.
struct LineBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for LineBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// Formats `args` into `buf` as one line ending in `'\n'` (added if missing,
/// kept if the text is cut); returns its length.
fn format_line(buf: &mut [u8], args: fmt::Arguments<'_>) -> usize {
    let Some(text_room) = buf.len().checked_sub(1) else {
        return 0;
    };
    let mut w = LineBuf {
        buf: &mut buf[..text_room],
        len: 0,
    };
    // A cut line reports fmt::Error; what fit is kept.
    let _ = fmt::write(&mut w, args);
    let mut len = w.len;
    if len == 0 || buf[len - 1] != b'\n' {
        buf[len] = b'\n';
        len += 1;
    }
    len
}

/// Writes all of `bytes` to stderr, retrying on EINTR and short writes;
/// errors are dropped (there is nowhere to report them).
pub(crate) fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of `bytes.len()` bytes.
        let r = unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        if r > 0 {
            bytes = &bytes[r as usize..];
        } else if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        } else {
            return;
        }
    }
}

/// Writes the caller's stack to stderr without allocating: the return
/// addresses through the unwinder's `_Unwind_Backtrace` (libgcc's, linked
/// into the program or into libkmalloc itself), named by glibc's
/// `backtrace_symbols_fd`. Not glibc's `backtrace`, which loads libgcc_s on
/// its first call: a library that carries its own copy of the unwinder
/// (libkmalloc links it statically, to keep libgcc_s out of every process)
/// would then have two.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[inline(never)]
fn write_backtrace() {
    let mut ips = [core::ptr::null_mut(); 48];
    let n = backtrace(&mut ips);
    write_stderr(b"Call Trace:\n");
    // Skip this function's own frame.
    if n > 1 {
        // backtrace_symbols_fd reads exactly the first `n` entries and writes to the fd without allocating.
        // SAFETY: the first `n` entries are filled.
        unsafe {
            libc::backtrace_symbols_fd(ips.as_ptr().add(1), (n - 1) as libc::c_int, libc::STDERR_FILENO)
        };
    }
}

/// The return addresses of the calling thread's frames, innermost first
/// (this function's own caller first), through the unwinder's
/// `_Unwind_Backtrace` (libgcc's, linked into the program or into
/// libkmalloc itself): how many it wrote.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn backtrace(ips: &mut [*mut libc::c_void]) -> usize {
    struct Frames<'a> {
        ips: &'a mut [*mut libc::c_void],
        n: usize,
    }
    extern "C" {
        fn _Unwind_Backtrace(
            trace: extern "C" fn(*mut libc::c_void, *mut libc::c_void) -> libc::c_int,
            arg: *mut libc::c_void,
        ) -> libc::c_int;
        fn _Unwind_GetIP(ctx: *mut libc::c_void) -> usize;
    }
    /// `_URC_NO_REASON`, go on; `_URC_END_OF_STACK`, stop.
    const URC_NO_REASON: libc::c_int = 0;
    const URC_END_OF_STACK: libc::c_int = 5;
    extern "C" fn trace(ctx: *mut libc::c_void, arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `Frames` passed below, alive for the walk.
        let f = unsafe { &mut *(arg as *mut Frames<'_>) };
        if f.n == f.ips.len() {
            return URC_END_OF_STACK;
        }
        // SAFETY: `ctx` is the unwinder's context of the current frame.
        let ip = unsafe { _Unwind_GetIP(ctx) };
        if ip == 0 {
            return URC_END_OF_STACK;
        }
        f.ips[f.n] = ip as *mut libc::c_void;
        f.n += 1;
        URC_NO_REASON
    }
    let mut f = Frames { ips, n: 0 };
    // SAFETY: `trace` only writes into `f`, which outlives the call.
    unsafe { _Unwind_Backtrace(trace, &mut f as *mut Frames<'_> as *mut libc::c_void) };
    f.n
}

/// The return address of the innermost frame outside the loaded object
/// (executable or shared library) that contains `own`: where a program
/// called into that library (libkmalloc's `malloc`, say); 0 if none is found.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn caller_outside(own: usize) -> usize {
    let base = |a: usize| dladdr(a).map(|info| info.dli_fbase as usize);
    let Some(own_base) = base(own) else { return 0 };
    let mut ips = [core::ptr::null_mut(); 32];
    let n = backtrace(&mut ips);
    ips[..n]
        .iter()
        .map(|&ip| ip as usize)
        .find(|&ip| base(ip.saturating_sub(1)).is_some_and(|b| b != own_base))
        .unwrap_or(0)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn caller_outside(_own: usize) -> usize {
    0
}

/// What the dynamic loader knows of the object and symbol around `addr`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn dladdr(addr: usize) -> Option<libc::Dl_info> {
    // SAFETY: a zeroed Dl_info is a valid value to fill in.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // dladdr only reads the loader's tables; any address may be asked about.
    // SAFETY: `info` is writable.
    (unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } != 0).then_some(info)
}

/// `%pS` of a code address: `symbol+0xoff [object]`, or `object+0xoff`
/// when the loader knows no symbol there (static functions), or hex.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn write_symbol(addr: usize, out: &mut dyn fmt::Write) -> fmt::Result {
    // A return address may be one past its call's function: look up the byte before it.
    let Some(info) = dladdr(addr.wrapping_sub(1)).filter(|i| !i.dli_fname.is_null()) else {
        return write!(out, "0x{addr:x}");
    };
    // Nothing here allocates: a report may be written from inside `malloc`.
    // SAFETY: dladdr gave NUL-terminated strings owned by the loader (or null).
    let file = unsafe { core::ffi::CStr::from_ptr(info.dli_fname) }.to_bytes();
    let file = core::str::from_utf8(file).unwrap_or("?");
    let file = file.rsplit('/').next().unwrap_or("?");
    if info.dli_sname.is_null() {
        return write!(out, "{file}+0x{:x}", addr - info.dli_fbase as usize);
    }
    // SAFETY: as above.
    let sym = unsafe { core::ffi::CStr::from_ptr(info.dli_sname) }.to_bytes();
    let sym = core::str::from_utf8(sym).unwrap_or("?");
    write!(out, "{sym}+0x{:x} [{file}]", addr - info.dli_saddr as usize)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn write_symbol(addr: usize, out: &mut dyn fmt::Write) -> fmt::Result {
    write!(out, "0x{addr:x}")
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn write_backtrace() {
    write_stderr(b"Call Trace: (not available on this host)\n");
}

/// Fills the host page tables of the mapped RAM pages `[virt, virt + n
/// pages)` that are resident in the memfd, as the kernel writes a vmalloc
/// area's PTEs at once (cheaper than a fault on first use), and leaves the
/// holes (RAM given back to the host, which reads as zero) to fault in when
/// first touched: populating a hole would allocate a host page for memory
/// the program may never touch (a large array of which it uses the first
/// part), so a vmalloc area costs RSS only as it is used, as `mmap` memory
/// does. Best effort: a host without `MADV_POPULATE_WRITE` (before Linux
/// 5.14) or `mincore` faults every page in on use.
///
/// # Safety
/// The range is a `MAP_SHARED` mapping of the RAM memfd owned by the caller.
unsafe fn populate_resident(virt: usize, n: usize) {
    // SAFETY: caller contract; populating a sub-range only faults its pages in.
    let _ = unsafe {
        crate::ram::for_each_backed_run(virt, n, |start, pages| {
            libc::madvise(
                start as *mut libc::c_void,
                pages * kmem::PAGE_SIZE,
                libc::MADV_POPULATE_WRITE,
            );
        })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_counted_as_glibc_counts_them() {
        assert_eq!(parse_cpu_list(b"0-1\n"), Some((2, 2)));
        assert_eq!(parse_cpu_list(b"0\n"), Some((1, 1)));
        assert_eq!(parse_cpu_list(b"0-3,8-11\n"), Some((8, 12)));
        assert_eq!(parse_cpu_list(b""), None);
        assert_eq!(parse_cpu_list(b"3-1\n"), None);
        assert_eq!(parse_cpu_list(b"0-x\n"), None);
        // glibc's `_SC_NPROCESSORS_CONF` counts the same file's CPUs.
        // SAFETY: sysconf has no preconditions.
        let glibc = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
        assert_eq!(host_nr_cpus(), glibc as usize);
        assert!(host_cpu_ids() >= host_nr_cpus());
    }

    #[test]
    fn line_is_cut_and_terminated() {
        let mut buf = [0u8; 8];
        let n = format_line(&mut buf, format_args!("{}", "abcdefghijkl"));
        assert_eq!(&buf[..n], b"abcdefg\n");
        let n = format_line(&mut buf, format_args!("ab\n"));
        assert_eq!(&buf[..n], b"ab\n");
        let n = format_line(&mut buf, format_args!("x{}", 1));
        assert_eq!(&buf[..n], b"x1\n");
        let n = format_line(&mut buf, format_args!(""));
        assert_eq!(&buf[..n], b"\n");
    }

    #[test]
    fn cut_respects_char_boundaries() {
        let mut buf = [0u8; 6];
        // "aé€" is 1 + 2 + 3 bytes; 5 bytes of text room keep "aé".
        let n = format_line(&mut buf, format_args!("aé€"));
        assert_eq!(&buf[..n], "aé\n".as_bytes());
    }

    #[test]
    fn full_size_line() {
        let mut buf = [0u8; PRINTK_LINE_MAX];
        let long = [b'z'; 2 * PRINTK_LINE_MAX];
        let s = core::str::from_utf8(&long).unwrap();
        let n = format_line(&mut buf, format_args!("{s}"));
        assert_eq!(n, PRINTK_LINE_MAX);
        assert_eq!(buf[n - 1], b'\n');
        assert!(buf[..n - 1].iter().all(|&b| b == b'z'));
    }

    #[test]
    fn now_is_monotonic() {
        let p = HostedPlatform::new(1, None, true);
        let a = p.now_ns();
        let b = p.now_ns();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn comm_is_thread_name() {
        let t = std::thread::Builder::new()
            .name("kmem-comm-test".into())
            .spawn(|| {
                let p = HostedPlatform::new(1, None, true);
                let mut buf = [0xffu8; 16];
                let n = p.current_comm(&mut buf);
                // std names the thread with the first 15 bytes.
                assert_eq!(&buf[..n], b"kmem-comm-test");
            })
            .unwrap();
        t.join().unwrap();
    }

    #[test]
    fn no_ram_no_discard() {
        let p = HostedPlatform::new(2, None, true);
        assert!(!p.discard_zeroes());
        p.discard_ram(0, 4096); // no-op, no crash
    }

    #[test]
    #[should_panic]
    fn zero_cpus_rejected() {
        let _ = HostedPlatform::new(0, None, true);
    }

    #[test]
    fn rseq_glibc_registers() {
        let _p = HostedPlatform::new(1, None, true);
        // Debian 12's glibc 2.36 registers rseq unless told not to.
        if std::env::var_os("GLIBC_TUNABLES").is_none() {
            assert!(rseq_available());
        }
    }
}
