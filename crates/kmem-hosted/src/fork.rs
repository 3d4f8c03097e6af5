//! `fork` keeps its meaning: the child's RAM is a private copy.
//!
//! A machine's RAM is a memfd mapped `MAP_SHARED` (`ram.rs`), and shared
//! mappings stay shared across `fork`: without help, parent and child would
//! allocate from, and write to, the same memory. `pthread_atfork` handlers,
//! installed when the first `HostRam` is created, fix that.
//!
//! * **prepare** (in the forking thread, before the `fork` system call):
//!   take the fork mutex (one fork at a time) and the RAM registry lock (no
//!   machine appears or goes away), close the *fork gate* and wait until no
//!   thread holds a spinlock of a gated machine (below), then open a pipe.
//! * **child**: for every registered RAM memfd, create a new memfd of the same
//!   length and copy the old one's populated ranges into it (`SEEK_DATA` /
//!   `SEEK_HOLE`, then `copy_file_range`, or `pread`/`pwrite`); replace every
//!   mapping of the old file — the linear map and the vmalloc window's
//!   aliases, found in `/proc/self/maps` by device and inode — with the same
//!   range of the new file (`MAP_FIXED`), and every descriptor of the old
//!   file (the `HostRam`'s and the platform's duplicate, found in
//!   `/proc/self/fd`) with a duplicate of the new one (`dup3`, same number).
//!   Then reset what threads that do not exist in the child held: the CPU
//!   owner locks of `preempt_disable` and the gate. Finally write a byte to the
//!   pipe. A child that cannot make its copy says why and exits with status
//!   127: it would otherwise corrupt its parent.
//! * **parent**: wait for the child's byte (or end of file, if the child
//!   died), so the parent does not change the RAM while the child copies it,
//!   then open the gate and release the locks.
//!
//! **The fork gate.** The core's locks are spinlocks; one held by another
//! thread at the instant of `fork` would be held forever in the child, where
//! that thread does not exist. Every spinlock acquisition calls the
//! platform's `local_irq_save`, and a machine with the gate enabled
//! (`HostedPlatform::enable_fork_gate`; the default machine has it) counts
//! there: a thread's outermost acquisition increments a counter of its CPU's
//! slot (`GATE_SLOTS`, one cache line each), its last release decrements it
//! (the nesting depth and slot live in two thread-locals without
//! destructors). Before counting in, a thread checks `FORKING`; if a fork is
//! in progress it steps back and sleeps on the `FORKING` futex. The fork's
//! prepare sets `FORKING` and waits until every slot reads 0 (both sides use
//! sequentially consistent operations, so either the thread sees `FORKING`
//! or the forker sees its count). A single-threaded process
//! (`__libc_single_threaded`) skips all of it: no other thread can hold a lock.
//!
//! What the gate does not cover: the lock-free fast paths (a slab cpu
//! freelist swap) need no gate — a thread that vanishes at any instruction
//! leaves them consistent, at most leaking in the child the object it was
//! taking. Threads other than the forking one keep running while the child
//! copies, so the child sees memory they write during the copy (as of some
//! instant during it rather than the instant of `fork`); only the allocator's
//! locked paths are stopped. POSIX allows a multi-threaded program's child
//! only async-signal-safe calls anyway; fork+exec and single-threaded forks
//! get exact `fork` semantics. `vfork`, `posix_spawn` and `clone(CLONE_VM)`
//! share memory by definition and run no handlers; `_Fork` and raw `clone`
//! without `CLONE_VM` run no handlers and so share the RAM (unsupported).

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::Once;

use crate::platform::{host_cpu, write_stderr};

/// Slots of the gate's counters (host CPUs fold onto them).
const GATE_SLOTS_NR: usize = 64;

/// A gate counter on a cache line of its own.
#[repr(align(64))]
struct GateSlot(AtomicUsize);

/// Threads inside a gated machine's spinlocks, by the slot of the host CPU
/// they entered on.
static GATE_SLOTS: [GateSlot; GATE_SLOTS_NR] = [const { GateSlot(AtomicUsize::new(0)) }; GATE_SLOTS_NR];

/// 1 while a fork is between its prepare and parent/child handlers (a futex word).
static FORKING: AtomicU32 = AtomicU32::new(0);

/// Thread id of the thread that is forking (it passes the gate).
static FORKER: AtomicI32 = AtomicI32::new(0);

/// One fork at a time.
static FORK_MUTEX: AtomicBool = AtomicBool::new(false);

/// The pipe through which the child tells the parent its copy is made.
static PIPE_R: AtomicI32 = AtomicI32::new(-1);
static PIPE_W: AtomicI32 = AtomicI32::new(-1);

std::thread_local! {
    /// Spinlock nesting depth of the calling thread, counted by the gate.
    static GATE_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The gate slot the calling thread counted itself in.
    static GATE_SLOT: Cell<u32> = const { Cell::new(0) };
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    extern "C" {
        /// Nonzero while the process has never created a thread (glibc 2.32+).
        pub static __libc_single_threaded: core::ffi::c_char;
    }
}

/// Whether the process never created a thread.
#[inline]
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

/// `local_irq_save` of a gated machine: count the caller in (waiting while a
/// fork is in progress if this is its outermost spinlock). Returns the value
/// for `gate_exit` (0: not counted).
#[inline]
pub(crate) fn gate_enter() -> usize {
    if single_threaded() {
        return 0;
    }
    let Ok(depth) = GATE_DEPTH.try_with(Cell::get) else {
        // Thread teardown: nothing can be counted.
        return 0;
    };
    if depth == 0 {
        gate_enter_outermost();
    }
    GATE_DEPTH.with(|d| d.set(depth + 1));
    1
}

#[cold]
fn gate_enter_outermost() {
    loop {
        let slot = host_cpu() % GATE_SLOTS_NR;
        GATE_SLOTS[slot].0.fetch_add(1, Ordering::SeqCst);
        if FORKING.load(Ordering::SeqCst) == 0 || FORKER.load(Ordering::Relaxed) == gettid() {
            GATE_SLOT.with(|s| s.set(slot as u32));
            return;
        }
        GATE_SLOTS[slot].0.fetch_sub(1, Ordering::SeqCst);
        futex_wait(&FORKING, 1);
    }
}

/// `local_irq_restore` of a gated machine: `counted` is what `gate_enter` returned.
#[inline]
pub(crate) fn gate_exit(counted: usize) {
    if counted == 0 {
        return;
    }
    let Ok(depth) = GATE_DEPTH.try_with(Cell::get) else {
        return;
    };
    if depth == 0 {
        return;
    }
    GATE_DEPTH.with(|d| d.set(depth - 1));
    if depth == 1 {
        let slot = GATE_SLOT.with(Cell::get) as usize;
        GATE_SLOTS[slot].0.fetch_sub(1, Ordering::Release);
    }
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a live aligned u32; EINTR/EAGAIN are plain returns.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
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
    });
}

/// How long prepare waits for lock holders before forking anyway.
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

extern "C" fn prepare() {
    while FORK_MUTEX
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
    crate::ram::registry_lock();
    FORKER.store(gettid(), Ordering::Relaxed);
    FORKING.store(1, Ordering::SeqCst);
    // Wait for the threads inside gated spinlocks to leave them. The forking
    // thread itself holds none (fork is not called from inside kmem).
    let start = now_ns();
    while GATE_SLOTS.iter().any(|s| s.0.load(Ordering::SeqCst) != 0) {
        if now_ns().wrapping_sub(start) > GATE_WAIT_NS {
            write_stderr(b"kmem: fork: a thread kept a spinlock for 1s; forking anyway\n");
            break;
        }
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
    if crate::ram::registered_fds().next().is_some() {
        let mut fds = [-1i32; 2];
        // SAFETY: `fds` has room for two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
            PIPE_R.store(fds[0], Ordering::Relaxed);
            PIPE_W.store(fds[1], Ordering::Relaxed);
        }
    }
}

fn close(fd: &AtomicI32) -> i32 {
    let fd = fd.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: a descriptor this module opened and nobody else uses.
        unsafe { libc::close(fd) };
    }
    fd
}

fn open_gate() {
    FORKER.store(0, Ordering::Relaxed);
    FORKING.store(0, Ordering::SeqCst);
    futex_wake_all(&FORKING);
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
    open_gate();
    crate::ram::registry_unlock();
    FORK_MUTEX.store(false, Ordering::Release);
}

extern "C" fn child() {
    close(&PIPE_R);
    for fd in crate::ram::registered_fds() {
        if let Err(what) = private_copy(fd) {
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
    // Threads that held gate slots or CPU owner locks do not exist here.
    for s in &GATE_SLOTS {
        s.0.store(0, Ordering::Relaxed);
    }
    crate::platform::reset_cpu_owners();
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

/// (device, inode) of an open descriptor.
fn file_id(fd: i32) -> Option<(u64, u64, i64)> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is writable.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino, st.st_size))
}

/// Gives this (child) process its own copy of the RAM memfd `old`; see the
/// module documentation. Uses no heap: it runs right after `fork`.
fn private_copy(old: i32) -> Result<(), &'static str> {
    let (dev, ino, size) = file_id(old).ok_or("fstat")?;
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
        copy_data(old, new, size)?;
        remap_mappings(dev, ino, new)?;
        replace_fds(dev, ino, new)
    })();
    // SAFETY: our descriptor; the duplicates and mappings keep the file.
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

/// `pread`/`pwrite` fallback of `copy_range`.
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

/// Replaces every mapping of the file (dev, ino) with the same range of `new`.
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
            // SAFETY: `[start, end)` maps the old RAM file at `off`; the same
            // range of the new file (a copy of the old one) replaces it, so
            // every address keeps its contents.
            let r = unsafe {
                libc::mmap(
                    start as *mut libc::c_void,
                    end - start,
                    prot,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    new,
                    off as libc::off_t,
                )
            };
            if r == libc::MAP_FAILED {
                failed = true;
            }
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

/// Replaces every descriptor of the file (dev, ino) with a duplicate of `new`,
/// keeping its number and close-on-exec flag.
fn replace_fds(dev: u64, ino: u64, new: i32) -> Result<(), &'static str> {
    // SAFETY: a NUL-terminated path.
    let dir = unsafe {
        libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return Err("opening /proc/self/fd");
    }
    let mut buf = [0u8; 4096];
    let mut result = Ok(());
    'read: loop {
        // SAFETY: getdents64 fills at most `buf.len()` bytes.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            if n < 0 {
                result = Err("reading /proc/self/fd");
            }
            break;
        }
        let mut pos = 0usize;
        while pos < n as usize {
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
            let reclen = u16::from_ne_bytes([buf[pos + 16], buf[pos + 17]]) as usize;
            let name = &buf[pos + 19..pos + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            pos += reclen;
            let Some(fd) = parse_dec(name).and_then(|v| i32::try_from(v).ok()) else {
                continue;
            };
            if fd == dir || fd == new {
                continue;
            }
            if matches!(file_id(fd), Some((d, i, _)) if d == dev && i == ino) {
                // SAFETY: querying the flags of an open descriptor.
                let cloexec = unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC != 0;
                let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
                // SAFETY: `fd` refers to the old RAM file, which the child no
                // longer uses; replacing it atomically keeps its number.
                if unsafe { libc::dup3(new, fd, flags) } < 0 {
                    result = Err("dup3");
                    break 'read;
                }
            }
        }
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(dir) };
    result
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
        let a = gate_enter();
        let b = gate_enter();
        let slot = GATE_SLOT.with(Cell::get) as usize;
        assert!(GATE_SLOTS[slot].0.load(Ordering::SeqCst) >= 1);
        assert_eq!(GATE_DEPTH.with(Cell::get), 2);
        gate_exit(a);
        assert_eq!(GATE_DEPTH.with(Cell::get), 1);
        gate_exit(b);
        assert_eq!(GATE_DEPTH.with(Cell::get), 0);
        gate_exit(0);
        assert_eq!(GATE_DEPTH.with(Cell::get), 0);
    }
}
