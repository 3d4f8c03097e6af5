//! `HostRam`: a machine's physical memory, as a memfd.
//!
//! The machine's RAM is one memfd of `size` bytes. `ftruncate` makes it that
//! long without giving it any memory: a page of the memfd costs host memory
//! only once it is written, and punching a hole (`fallocate(PUNCH_HOLE)`, or
//! `madvise(MADV_REMOVE)` through a mapping) gives it back, after which it
//! reads as zeroes. The holes of the machine's
//! memory map are simply offsets nobody touches.
//!
//! The whole memfd is mapped once, read/write and shared, at `base()`: the
//! linear ("direct") map, where `virt = base + phys`, as the kernel's
//! `PAGE_OFFSET` mapping. The window is first reserved as an inaccessible
//! anonymous mapping (aligned to 2 MiB, so large pages can back it when the
//! host allows) and the memfd is then mapped over it with `MAP_FIXED`.
//!
//! Other windows (vmalloc's) are reserved the same way with `reserve_window`
//! and filled page by page with `map_alias`, which maps a range of the memfd a
//! second time: both mappings see the same memory, as two page-table entries
//! pointing at one physical page do. `unmap_alias` puts the reservation back
//! (`PROT_NONE`), so the window keeps its addresses.
//!
//! **Private lowmem.** A machine booted with a HighMem zone and
//! `kmem.private_lowmem=1` (libkmalloc's) has its lowmem, the RAM below
//! `max_low_pfn` that the kernel's own allocations use, mapped as private
//! anonymous memory instead ([`HostRam::with_private_lowmem`]): `fork` then
//! gives the child a copy-on-write copy of it at no cost, where a copy of
//! the memfd costs a page allocation and a copy per page in use (7.2 ms per
//! `fork` of a program with 8 MB of small blocks). A private page cannot be
//! mapped a second time, so only HighMem can have aliases: vmalloc takes
//! its pages from HighMem first (`__GFP_HIGHMEM`) and kmap maps only
//! HighMem; a lowmem page asked for an alias (vmalloc falling back to lowmem
//! once HighMem is full, `vmap` of lowmem pages) is refused, and that
//! mapping fails. Discards of lowmem use `MADV_DONTNEED`, and lowmem is
//! `MADV_NOHUGEPAGE` (the machine touches it sparsely: with transparent
//! huge pages always on, each touch would cost 2 MiB). Such a RAM boots
//! with no memfd: HighMem is an inaccessible reservation in the linear map
//! until the first use that needs the file makes it ([`RamRef::fd`]: a
//! HighMem alias, which vmalloc makes for blocks above 4 MiB, or a `fork`
//! with data to copy), mapped where the reservation was. A program that
//! never uses HighMem never has one: libkmalloc's boot saves the
//! `memfd_create`, `ftruncate`, shared mapping and the checks of the
//! descriptor, some ten system calls. The memfd keeps the whole length, its
//! lowmem part a hole that no mapping writes.
//!
//! **The registry.** Every live `HostRam` has a slot in a small process-wide
//! registry (`RAMS`, a fixed array, so registering never allocates): its
//! memfd's descriptor, the file's identity (device and inode), and where the
//! linear map is. The `HostRam` and its machine's platform both reach the
//! memfd through the slot ([`RamRef`]); nothing else holds a descriptor of it.
//!
//! **fork.** Because the mappings are `MAP_SHARED`, a child created by `fork`
//! would share the machine's RAM with its parent. So the fork handlers of
//! `crate::fork` give the child a private copy of each registered memfd,
//! mapped where the old one was, and record the copy in the slot (see
//! `fork.rs`). `registry_lock` freezes the registry across a fork. A RAM
//! with private lowmem whose memfd holds no data and was never mapped
//! anywhere else gives its child nothing to copy: the child's linear map
//! gets an inaccessible reservation where the memfd was, and the RAM no
//! file, until a use needs one (`RamRef::detach_file`, [`RamRef::fd`]).
//!
//! **The descriptor is the program's business too.** A process's descriptor
//! numbers are shared with the program, which may `dup2` its own files onto
//! any number (`exec 3>file` in a shell) or close every descriptor it did
//! not open (`closefrom(3)` in a daemon). A memfd on a low number would then
//! be replaced under kmem's feet, and a `fallocate` meant for the RAM would
//! punch holes in the program's file (a preloaded `bash` running
//! `exec 3>file` lost its own heap at its next `fork` that way). So:
//! * the memfd moves to a number far above those programs pick
//!   ([`FD_FLOOR`], below the usual soft limit of 1024);
//! * every use checks first that the number still names the RAM's file
//!   (`fstat`: same device and inode, [`RamRef::fd`]); if the program closed
//!   or replaced it, the RAM is opened again through the linear map
//!   (`/proc/self/map_files`), and the number the program now owns is left
//!   alone;
//! * giving memory back goes through the linear map (`madvise(MADV_REMOVE)`,
//!   [`RamRef::discard`]), not a descriptor;
//! * a RAM with private lowmem has no file, and so holds no descriptor,
//!   until it needs one (see "Private lowmem").

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// Most `HostRam`s alive at once (the registry's size): a process that
/// creates more gets an error from `HostRam::new`.
pub const MAX_FORK_RAMS: usize = 256;

/// The lowest descriptor number a RAM memfd takes (below a soft
/// `RLIMIT_NOFILE` under 1024: 64 below it, or half of it if it is under
/// 128). Shells give `exec N>file` the numbers 0-9 and keep their own from 10
/// up, `open` returns the lowest free number, and `select`'s sets end at
/// 1024: programs rarely reach this high.
pub const FD_FLOOR: i32 = 960;

/// One registered RAM (see "The registry" above). Written under the
/// registry lock, except `fd`, which a recovery (`RamRef::fd`) swaps, and
/// `aliased`.
struct RamSlot {
    /// Whether a RAM holds the slot.
    live: AtomicBool,
    /// The memfd's descriptor.
    fd: AtomicI32,
    /// Bumped each time the slot is taken, so that a `RamRef` of an earlier
    /// RAM finds it gone.
    gen: AtomicU64,
    /// The memfd's device and inode (`fstat`).
    dev: AtomicU64,
    ino: AtomicU64,
    /// The linear map: `[base, base + size)`.
    base: AtomicUsize,
    size: AtomicUsize,
    /// Bytes at the start of the linear map that are private anonymous
    /// memory rather than the memfd's (see "Private lowmem" above).
    private: AtomicUsize,
    /// Whether the memfd was ever mapped anywhere else (a vmalloc alias):
    /// if not, a fork child replaces the linear map alone and need not
    /// read `/proc/self/maps`.
    aliased: AtomicBool,
    /// [`ATTACHED`], [`DETACHED`] (a fork child's linear map has a
    /// reservation where its parent's memfd was, and no file yet:
    /// [`RamRef::detach_file`]) or [`ATTACHING`] (a thread is making it one).
    file_state: AtomicU8,
}

/// `RamSlot::file_state`: the memfd is mapped in the linear map.
const ATTACHED: u8 = 0;
/// `RamSlot::file_state`: no file yet; the first use makes one.
const DETACHED: u8 = 1;
/// `RamSlot::file_state`: a thread is making the file.
const ATTACHING: u8 = 2;

impl RamSlot {
    /// The part of the linear map that maps the memfd (see
    /// [`RamRef::shared_map`]).
    fn shared_map(&self) -> (usize, usize) {
        let private = self.private.load(Ordering::Relaxed);
        (
            self.base.load(Ordering::Relaxed) + private,
            self.size.load(Ordering::Relaxed) - private,
        )
    }
}

/// Zeroed, and but for its first slots never written: after the small
/// statics (`cold-bss.ld` of libkmalloc).
#[link_section = ".bss.kmem_cold"]
static RAMS: [RamSlot; MAX_FORK_RAMS] = [const {
    RamSlot {
        live: AtomicBool::new(false),
        fd: AtomicI32::new(0),
        gen: AtomicU64::new(0),
        dev: AtomicU64::new(0),
        ino: AtomicU64::new(0),
        base: AtomicUsize::new(0),
        size: AtomicUsize::new(0),
        private: AtomicUsize::new(0),
        aliased: AtomicBool::new(false),
        file_state: AtomicU8::new(ATTACHED),
    }
}; MAX_FORK_RAMS];

/// One more than the highest slot ever taken: the registry is all zero
/// bytes (`.bss`, whose untouched pages cost nothing) and a scan stops here.
static RAMS_END: AtomicUsize = AtomicUsize::new(0);

/// Serialises changes to `RAMS` against a fork (a spinning lock: held only
/// for a slot update, or by a fork from its prepare to its parent/child handler).
static RAMS_LOCK: AtomicBool = AtomicBool::new(false);

/// Take the registry lock.
pub(crate) fn registry_lock() {
    while RAMS_LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
}

/// Release the registry lock.
pub(crate) fn registry_unlock() {
    RAMS_LOCK.store(false, Ordering::Release);
}

/// The registered RAMs (call with the registry lock held).
pub(crate) fn registered() -> impl Iterator<Item = RamRef> {
    RAMS[..RAMS_END.load(Ordering::Relaxed)]
        .iter()
        .enumerate()
        .filter(|(_, s)| s.live.load(Ordering::Relaxed))
        .map(|(idx, s)| RamRef {
            idx,
            gen: s.gen.load(Ordering::Relaxed),
        })
}

/// Records a RAM with its memfd's descriptor and identity, or with none
/// (detached: no file yet, see [`HostRam::with_private_lowmem`]); None if
/// the registry is full.
fn register(file: Option<(i32, (u64, u64))>, base: usize, size: usize, private: usize) -> Option<RamRef> {
    let (fd, (dev, ino), file_state) = match file {
        Some((fd, id)) => (fd, id, ATTACHED),
        None => (-1, (0, 0), DETACHED),
    };
    crate::fork::install_handlers();
    registry_lock();
    // A dead slot below `RAMS_END`, else the first never taken: the slots
    // from `RAMS_END` on are unread zero pages, and reading one before its
    // first write would fault it in twice.
    let end = RAMS_END.load(Ordering::Relaxed);
    let found = RAMS[..end]
        .iter()
        .position(|s| !s.live.load(Ordering::Relaxed))
        .or((end < MAX_FORK_RAMS).then_some(end));
    let r = found.map(|idx| {
        let s = &RAMS[idx];
        RAMS_END.fetch_max(idx + 1, Ordering::Relaxed);
        // A store first (see above), then the generation's increment.
        s.dev.store(dev, Ordering::Relaxed);
        let gen = s.gen.load(Ordering::Relaxed) + 1;
        s.gen.store(gen, Ordering::Relaxed);
        s.ino.store(ino, Ordering::Relaxed);
        s.base.store(base, Ordering::Relaxed);
        s.size.store(size, Ordering::Relaxed);
        s.private.store(private, Ordering::Relaxed);
        s.aliased.store(false, Ordering::Relaxed);
        s.file_state.store(file_state, Ordering::Relaxed);
        s.fd.store(fd, Ordering::Relaxed);
        s.live.store(true, Ordering::Release);
        RamRef { idx, gen }
    });
    registry_unlock();
    r
}

/// Frees `ram`'s slot and closes its descriptor, if that still names the
/// RAM's file (else the number is the program's now).
fn unregister(ram: RamRef) {
    registry_lock();
    if let Some(s) = ram.slot() {
        s.live.store(false, Ordering::Relaxed);
        let fd = s.fd.load(Ordering::Relaxed);
        if names(fd, (s.dev.load(Ordering::Relaxed), s.ino.load(Ordering::Relaxed))) {
            // SAFETY: the registry's descriptor of this RAM, used by nobody once the slot is free.
            unsafe { libc::close(fd) };
        }
    }
    registry_unlock();
}

/// (device, inode, size) of an open descriptor; None if it is not open.
pub(crate) fn file_id(fd: i32) -> Option<(u64, u64, i64)> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is writable.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino, st.st_size))
}

/// Whether `fd` is open on the file `(dev, ino)`.
fn names(fd: i32, (dev, ino): (u64, u64)) -> bool {
    matches!(file_id(fd), Some((d, i, _)) if (d, i) == (dev, ino))
}

/// Moves `fd` (ours) to the lowest free number from [`FD_FLOOR`] (or lower
/// under a low soft limit, see there), close-on-exec; returns the number it
/// ends on (`fd` itself if the host refuses).
pub(crate) fn out_of_the_way(fd: i32) -> i32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is writable.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(FD_FLOOR as libc::rlim_t + 64) as i32
    } else {
        FD_FLOOR + 64
    };
    let floor = if soft < 128 {
        soft / 2
    } else {
        (soft - 64).min(FD_FLOOR)
    };
    if fd >= floor {
        return fd;
    }
    // SAFETY: duplicating a descriptor we own.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
    if high < 0 {
        return fd;
    }
    // SAFETY: `fd` is ours and now has a duplicate; nobody else uses it.
    unsafe { libc::close(fd) };
    high
}

/// A registered RAM: the way to its memfd for the `HostRam` and its
/// machine's platform.
#[derive(Clone, Copy, Debug)]
pub struct RamRef {
    idx: usize,
    gen: u64,
}

impl RamRef {
    fn slot(&self) -> Option<&'static RamSlot> {
        let s = &RAMS[self.idx];
        (s.gen.load(Ordering::Acquire) == self.gen && s.live.load(Ordering::Acquire)).then_some(s)
    }

    /// The memfd's descriptor, checked to still name the RAM's file. If the
    /// program closed it or put another file on its number, the RAM is
    /// opened again through its linear map (`/proc/self/map_files`) on a
    /// new number, and the old number is left to the program. Err if the
    /// RAM is gone (its `HostRam` dropped) or cannot be opened again. A
    /// RAM without a file yet (a fork child's, `RamRef::detach_file`)
    /// makes one first.
    pub fn fd(&self) -> io::Result<i32> {
        let s = self.slot().ok_or(io::ErrorKind::NotFound)?;
        if s.file_state.load(Ordering::Acquire) != ATTACHED {
            if let Some(made) = attach_file(s) {
                return made;
            }
        }
        let fd = s.fd.load(Ordering::Acquire);
        let id = (s.dev.load(Ordering::Relaxed), s.ino.load(Ordering::Relaxed));
        if names(fd, id) {
            return Ok(fd);
        }
        let (start, len) = s.shared_map();
        let again = reopen(start, len, id)?;
        match s
            .fd
            .compare_exchange(fd, again, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(again),
            Err(theirs) => {
                // Another thread reopened it first.
                // SAFETY: `again` is ours alone.
                unsafe { libc::close(again) };
                Ok(theirs)
            }
        }
    }

    /// The part of the linear map that maps the memfd, `(start, len)`, at
    /// the file offset `private()` (all of it but the private lowmem); None
    /// if the RAM is gone.
    pub(crate) fn shared_map(&self) -> Option<(usize, usize)> {
        Some(self.slot()?.shared_map())
    }

    /// Bytes of private lowmem at the start of RAM (physical addresses
    /// below it cannot be mapped twice); 0 if the RAM is gone.
    pub fn private(&self) -> usize {
        self.slot().map_or(0, |s| s.private.load(Ordering::Relaxed))
    }

    /// In a fork's child whose parent's memfd holds no data and was never
    /// aliased (so this child has nothing of it to copy): puts an
    /// inaccessible reservation where the linear map mapped the parent's
    /// memfd, and lets go of the registry's descriptor of it. The child makes
    /// a file of its own when it first needs one ([`RamRef::fd`]: a HighMem
    /// alias, a `fork` with data to copy); most children never do (they
    /// `exec`, or `_exit`), and a `fork` saves the `memfd_create`,
    /// `ftruncate` and mapping it took before (some 20 µs). Nothing reads or
    /// writes HighMem but through aliases, so nothing touches the
    /// reservation meanwhile; a discard skips it. A RAM that had no file in
    /// the parent (not even one half made) has the reservation already, and
    /// nothing is done. Call with the registry lock held, in a child that is
    /// still single-threaded.
    pub(crate) fn detach_file(&self) -> io::Result<()> {
        let s = self.slot().ok_or(io::ErrorKind::NotFound)?;
        if s.file_state.load(Ordering::Acquire) == DETACHED {
            return Ok(());
        }
        let (start, len) = s.shared_map();
        if len != 0 {
            // SAFETY: `[start, start + len)` is the part of our linear map that maps the memfd, which
            // nothing uses (see above).
            unsafe { reserve_in_place(start, len)? };
        }
        let held = s.fd.swap(-1, Ordering::AcqRel);
        if held >= 0
            && names(
                held,
                (s.dev.load(Ordering::Relaxed), s.ino.load(Ordering::Relaxed)),
            )
        {
            // SAFETY: the registry's descriptor of the parent's memfd, which this child no longer maps.
            unsafe { libc::close(held) };
        }
        // A thread of the parent that was making a file does not exist here.
        s.file_state.store(DETACHED, Ordering::Release);
        Ok(())
    }

    /// Whether the RAM has no file yet ([`RamRef::detach_file`]).
    pub(crate) fn detached(&self) -> bool {
        self.slot()
            .is_some_and(|s| s.file_state.load(Ordering::Acquire) != ATTACHED)
    }

    /// Records that the memfd is about to be mapped outside the linear map.
    pub(crate) fn note_alias(&self) {
        if let Some(s) = self.slot() {
            s.aliased.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the memfd was ever mapped outside the linear map (else the
    /// RAM is gone, or only the linear map maps it).
    pub(crate) fn aliased(&self) -> bool {
        self.slot().is_some_and(|s| s.aliased.load(Ordering::Relaxed))
    }

    /// Whether the memfd holds no data: the RAM has private lowmem and no
    /// page above it was ever written (or all were discarded since). False
    /// if the RAM is gone or the host cannot tell (`SEEK_DATA`).
    pub(crate) fn memfd_empty(&self) -> bool {
        let private = self.private();
        // HighMem is written only through its aliases (vmalloc, kmap): never aliased, never written.
        if private != 0 && !self.aliased() {
            return true;
        }
        if private == 0 {
            return false;
        }
        let Ok(fd) = self.fd() else { return false };
        // SAFETY: seeking our open descriptor changes nothing but its offset, which nobody uses.
        let data = unsafe { libc::lseek(fd, private as libc::off_t, libc::SEEK_DATA) };
        data < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO)
    }

    /// Makes the registry's descriptor of this RAM name `new` instead (a
    /// fork child's copy, `crate::fork`), on the same number, if it holds
    /// one. Call with the registry lock held.
    pub(crate) fn replace_file(&self, new: i32) -> io::Result<()> {
        let s = self.slot().ok_or(io::ErrorKind::NotFound)?;
        let (dev, ino, _) = file_id(new).ok_or_else(io::Error::last_os_error)?;
        let held = s.fd.load(Ordering::Relaxed);
        if held >= 0
            && names(
                held,
                (s.dev.load(Ordering::Relaxed), s.ino.load(Ordering::Relaxed)),
            )
        {
            // SAFETY: the slot's descriptor is the registry's (it names the old file); dup3 replaces
            // it atomically, keeping its number.
            if unsafe { libc::dup3(new, held, libc::O_CLOEXEC) } < 0 {
                return Err(io::Error::last_os_error());
            }
        } else {
            // None held, or the number is the program's now: keep none. The
            // mappings keep the new file, and `fd` opens it again through them.
            s.fd.store(-1, Ordering::Relaxed);
        }
        s.dev.store(dev, Ordering::Relaxed);
        s.ino.store(ino, Ordering::Relaxed);
        Ok(())
    }

    /// The memfd's (device, inode) and length as recorded, without a
    /// descriptor; None if the RAM is gone.
    pub(crate) fn file(&self) -> Option<(u64, u64, i64)> {
        let s = self.slot()?;
        let size = s.size.load(Ordering::Relaxed) as i64;
        Some((s.dev.load(Ordering::Relaxed), s.ino.load(Ordering::Relaxed), size))
    }

    /// Gives RAM `[phys, phys + len)` back to the host through the linear
    /// map (`MADV_REMOVE`, which punches the range out of the memfd as
    /// `fallocate(PUNCH_HOLE)` does, without a descriptor; `MADV_DONTNEED`
    /// in private lowmem): it reads as zeroes from now on, through every
    /// mapping. Err if the RAM is gone (`NotFound`) or
    /// the range is not a nonempty page-aligned range inside it (`InvalidInput`).
    pub fn discard(&self, phys: u64, len: u64) -> io::Result<()> {
        let s = self.slot().ok_or(io::ErrorKind::NotFound)?;
        let (base, size) = (s.base.load(Ordering::Relaxed), s.size.load(Ordering::Relaxed));
        let private = s.private.load(Ordering::Relaxed);
        let page = host_page_size() as u64;
        let end = phys.checked_add(len).filter(|&e| e <= size as u64);
        if end.is_none() || len == 0 || !phys.is_multiple_of(page) || !len.is_multiple_of(page) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let (phys, end) = (phys as usize, (phys + len) as usize);
        // A detached RAM has nothing above `private` to give back.
        let shared_end = if s.file_state.load(Ordering::Acquire) == ATTACHED {
            end
        } else {
            private
        };
        let parts = [
            (phys, end.min(private), libc::MADV_DONTNEED),
            (phys.max(private), shared_end, libc::MADV_REMOVE),
        ];
        for (start, end, advice) in parts {
            if start >= end {
                continue;
            }
            // SAFETY: the slot is live, so `[base, base + size)` is its HostRam's linear map (private
            // anonymous memory below `private`, the memfd's shared mapping above), and the range lies
            // inside it, on one side; the caller declared the memory free.
            if unsafe { libc::madvise((base + start) as *mut libc::c_void, end - start, advice) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Makes a detached RAM (`RamRef::detach_file`) a memfd of its own, mapped
/// where the reservation was, and records it: Some(its descriptor, or the
/// error that left the RAM detached); None if another thread made it
/// meanwhile (the caller goes on as for an attached RAM).
fn attach_file(s: &RamSlot) -> Option<io::Result<i32>> {
    loop {
        match s
            .file_state
            .compare_exchange(DETACHED, ATTACHING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => break,
            Err(ATTACHED) => return None,
            // Another thread is making it.
            Err(_) => std::thread::yield_now(),
        }
    }
    let made = (|| {
        let (file, (dev, ino)) = new_ram_file(s.size.load(Ordering::Relaxed))?;
        let (start, len) = s.shared_map();
        let offset = s.private.load(Ordering::Relaxed);
        if len != 0 {
            // SAFETY: `[start, start + len)` is the linear map's reservation for the memfd (detached,
            // so nothing uses it); the new file is `offset + len` long.
            unsafe {
                map_file_in_place(
                    start,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    file.as_raw_fd(),
                    offset,
                )?
            };
        }
        Ok((file.into_raw_fd(), dev, ino))
    })();
    Some(match made {
        Ok((fd, dev, ino)) => {
            s.dev.store(dev, Ordering::Relaxed);
            s.ino.store(ino, Ordering::Relaxed);
            s.fd.store(fd, Ordering::Release);
            s.file_state.store(ATTACHED, Ordering::Release);
            Ok(fd)
        }
        Err(e) => {
            s.file_state.store(DETACHED, Ordering::Release);
            Err(e)
        }
    })
}

/// Opens the file mapped at `[base, base + size)` again, out of the way,
/// if it is the file `id`.
fn reopen(base: usize, size: usize, id: (u64, u64)) -> io::Result<i32> {
    let path = map_files_path(base, size);
    // SAFETY: `path` holds a NUL-terminated string.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    if !names(fd, id) {
        // SAFETY: ours.
        unsafe { libc::close(fd) };
        return Err(io::ErrorKind::NotFound.into());
    }
    Ok(out_of_the_way(fd))
}

/// `/proc/self/map_files/<start>-<end>` of the mapping `[base, base + size)`,
/// NUL-terminated. Written by hand: `core::fmt` here would fault in code
/// outside libkmalloc's boot (`hot-text.ld`).
fn map_files_path(base: usize, size: usize) -> [u8; 64] {
    const PREFIX: &[u8] = b"/proc/self/map_files/";
    let mut path = [0u8; 64];
    path[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut n = PREFIX.len();
    for (i, v) in [base, base + size].into_iter().enumerate() {
        if i == 1 {
            path[n] = b'-';
            n += 1;
        }
        let digits = (usize::BITS - v.leading_zeros()).div_ceil(4).max(1) as usize;
        for d in (0..digits).rev() {
            path[n] = b"0123456789abcdef"[(v >> (4 * d)) & 15];
            n += 1;
        }
    }
    path
}

/// Alignment of the linear map and of reserved windows: kmalloc's largest
/// block (4 MiB, order 10), so that a block, aligned physically to its
/// size, is aligned so in the linear map too (`kmalloc_aligned` gives up to
/// 4 MiB alignment), and large pages can back the map where the host allows.
const WINDOW_ALIGN: usize = 4 << 20;

/// The host's page size (the granularity of every mapping here).
pub fn host_page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n <= 0 {
        4096
    } else {
        n as usize
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Replaces `[start, start + len)` (page-aligned) with an inaccessible
/// reservation, atomically (an anonymous `PROT_NONE` mapping, `MAP_FIXED`):
/// the addresses stay ours, and whatever was mapped there is gone.
///
/// # Safety
/// The range is ours (a window or the linear map) and nothing uses it.
pub(crate) unsafe fn reserve_in_place(start: usize, len: usize) -> io::Result<()> {
    // SAFETY: caller contract.
    let r = unsafe {
        libc::mmap(
            start as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if r == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Maps `[start, start + len)` to the range of file `fd` at `offset`,
/// shared, with protection `prot`, replacing what was mapped there
/// (`MAP_FIXED`).
///
/// # Safety
/// The range is ours (a window or the linear map), and nothing uses what it
/// mapped before unless the file's range holds the same contents.
pub(crate) unsafe fn map_file_in_place(
    start: usize,
    len: usize,
    prot: i32,
    fd: i32,
    offset: usize,
) -> io::Result<()> {
    // SAFETY: caller contract.
    let r = unsafe {
        libc::mmap(
            start as *mut libc::c_void,
            len,
            prot,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd,
            offset as libc::off_t,
        )
    };
    if r == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new RAM memfd of `size` bytes (read as zeroes, costing no memory),
/// on a number out of the way (`out_of_the_way`), with its (device, inode).
fn new_ram_file(size: usize) -> io::Result<(OwnedFd, (u64, u64))> {
    // SAFETY: the name is a NUL-terminated string; the flags are valid.
    let raw_fd = unsafe { libc::memfd_create(c"kmem-ram".as_ptr(), libc::MFD_CLOEXEC) };
    if raw_fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor nobody else owns; it closes on drop.
    let fd = unsafe { OwnedFd::from_raw_fd(out_of_the_way(raw_fd)) };
    // SAFETY: `fd` is an open memfd; growing it only records the length.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (dev, ino, _) = file_id(fd.as_raw_fd()).ok_or_else(io::Error::last_os_error)?;
    Ok((fd, (dev, ino)))
}

/// Reserves `size` bytes (a multiple of the page size) of address space,
/// aligned to `WINDOW_ALIGN`, inaccessible and costing no memory.
///
/// First as it is: the kernel places a mapping right below the previous
/// one, and aligns large anonymous ones itself where transparent huge
/// pages are on, so a size that is a multiple of the alignment mostly comes
/// back aligned. Only if it does not is it made again with room to align
/// it, and the ends cut off (two more system calls, the cut some 3 µs).
fn reserve(size: usize) -> io::Result<usize> {
    if size.is_multiple_of(WINDOW_ALIGN) {
        let raw = reserve_anywhere(size)?;
        if raw.is_multiple_of(WINDOW_ALIGN) {
            return Ok(raw);
        }
        // SAFETY: the reservation just made, unused.
        unsafe { libc::munmap(raw as *mut libc::c_void, size) };
    }
    let padded = size
        .checked_add(WINDOW_ALIGN)
        .ok_or_else(|| invalid("window too large"))?;
    let raw = reserve_anywhere(padded)?;
    let start = (raw + WINDOW_ALIGN - 1) & !(WINDOW_ALIGN - 1);
    let head = start - raw;
    let tail = padded - head - size;
    // SAFETY: both ranges are the unused ends of the reservation just made,
    // page-aligned because `raw`, `start` and `size` are.
    unsafe {
        if head != 0 {
            libc::munmap(raw as *mut libc::c_void, head);
        }
        if tail != 0 {
            libc::munmap((start + size) as *mut libc::c_void, tail);
        }
    }
    Ok(start)
}

/// An inaccessible reservation of `len` bytes where the kernel chooses.
fn reserve_anywhere(len: usize) -> io::Result<usize> {
    // A fresh anonymous mapping at an address of the kernel's choosing.
    // SAFETY: it touches nothing that exists.
    let raw = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(raw as usize)
}

/// The machine's physical RAM: a sparse memfd mapped as the linear map.
///
/// # Invariants
/// `[base, base + size)` is the linear map of the RAM registered as `ram`,
/// owned by this value until it drops: private anonymous memory below
/// `ram.private()`, above it a shared read/write mapping of the memfd at
/// the same offsets, or an inaccessible reservation while the RAM has no
/// file. `size` is a nonzero multiple of the host page size and the
/// memfd's length.
#[derive(Debug)]
pub struct HostRam {
    base: usize,
    size: usize,
    ram: RamRef,
}

impl HostRam {
    /// Creates `phys_size` bytes of RAM (rounded up to the host page size),
    /// all zero, costing no host memory until written, and maps it as the
    /// linear map.
    pub fn new(phys_size: u64) -> io::Result<HostRam> {
        Self::with_private_lowmem(phys_size, 0)
    }

    /// [`HostRam::new`] whose first `private` bytes (rounded down to the
    /// host page size) are private anonymous memory (see "Private lowmem"
    /// above). The rest, HighMem, has no memfd yet: an inaccessible
    /// reservation stands in the linear map where the file will be mapped,
    /// and the first use that needs the file makes it ([`RamRef::fd`]: a
    /// HighMem alias, a `fork` with data to copy). If the host refuses the
    /// private mapping (strict overcommit), all of the RAM is a memfd, as
    /// with `new`.
    pub fn with_private_lowmem(phys_size: u64, private: usize) -> io::Result<HostRam> {
        let page = host_page_size();
        if phys_size == 0 {
            return Err(invalid("RAM size is 0"));
        }
        let size = usize::try_from(phys_size)
            .ok()
            .and_then(|s| s.checked_add(page - 1))
            .map(|s| s & !(page - 1))
            .filter(|&s| libc::off_t::try_from(s).is_ok())
            .ok_or_else(|| invalid("RAM size too large"))?;
        let private = private.min(size) & !(page - 1);
        let base = reserve(size)?;
        let unmap = || {
            // SAFETY: the reservation and what was mapped over it are ours and unused.
            unsafe { libc::munmap(base as *mut libc::c_void, size) };
        };
        if private != 0 {
            // SAFETY: `[base, base + private)` is the start of the reservation made just above, ours
            // alone and unused; MAP_FIXED replaces exactly it.
            let mapped = unsafe {
                libc::mmap(
                    base as *mut libc::c_void,
                    private,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                    -1,
                    0,
                ) != libc::MAP_FAILED
            };
            if mapped {
                // The machine touches lowmem sparsely (the memmap's pages, slabs here and there): on a
                // host with transparent huge pages always on, each touch would take 2 MiB.
                // SAFETY: advice on our own mapping; best effort.
                unsafe { libc::madvise(base as *mut libc::c_void, private, libc::MADV_NOHUGEPAGE) };
                let Some(ram) = register(None, base, size, private) else {
                    unmap();
                    return Err(io::Error::other("more than 256 HostRams alive at once"));
                };
                return Ok(HostRam { base, size, ram });
            }
            // Refused: all of it a memfd. (A failed MAP_FIXED may have unmapped the range on kernels
            // before 6.12; the file's MAP_FIXED mapping below covers it again.)
        }
        let (fd, (dev, ino)) = match new_ram_file(size) {
            Ok(file) => file,
            Err(err) => {
                unmap();
                return Err(err);
            }
        };
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: `[base, base + size)` is the reservation made above, owned by nobody else;
        // MAP_FIXED replaces exactly it.
        let mapped = unsafe { map_file_in_place(base, size, rw, fd.as_raw_fd(), 0) };
        if let Err(err) = mapped {
            unmap();
            return Err(err);
        }
        let Some(ram) = register(Some((fd.as_raw_fd(), (dev, ino))), base, size, 0) else {
            unmap();
            return Err(io::Error::other("more than 256 HostRams alive at once"));
        };
        // The registry owns the descriptor from here on (`HostRam::drop`).
        let _ = fd.into_raw_fd();
        Ok(HostRam { base, size, ram })
    }

    /// Start of the linear map: the virtual address of physical address 0
    /// (the kernel's `PAGE_OFFSET`).
    #[inline]
    pub fn base(&self) -> usize {
        self.base
    }

    /// Bytes of RAM (physical addresses `0..size`).
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes of private lowmem at the start of RAM (0 unless made by
    /// [`HostRam::with_private_lowmem`] and the host allowed it).
    pub fn private(&self) -> usize {
        self.ram.private()
    }

    /// The descriptor of the memfd holding the RAM, checked ([`RamRef::fd`]).
    pub fn fd(&self) -> io::Result<RawFd> {
        self.ram.fd()
    }

    /// The RAM's registry entry, through which its machine's platform
    /// reaches the memfd.
    pub fn ram_ref(&self) -> RamRef {
        self.ram
    }

    /// Checks that `[phys, phys + len)` is a nonempty page-aligned range of RAM.
    fn check_phys(&self, phys: u64, len: usize) -> io::Result<usize> {
        let page = host_page_size();
        let phys = usize::try_from(phys).map_err(|_| invalid("physical address out of range"))?;
        if len == 0 || phys % page != 0 || !len.is_multiple_of(page) {
            return Err(invalid("range not page-aligned or empty"));
        }
        match phys.checked_add(len) {
            Some(end) if end <= self.size => Ok(phys),
            _ => Err(invalid("range beyond RAM")),
        }
    }

    /// Checks that `[virt, virt + len)` is a nonempty page-aligned range that
    /// does not touch the linear map.
    fn check_window(&self, virt: usize, len: usize) -> io::Result<()> {
        let page = host_page_size();
        if len == 0 || !virt.is_multiple_of(page) || !len.is_multiple_of(page) {
            return Err(invalid("range not page-aligned or empty"));
        }
        let end = virt.checked_add(len).ok_or_else(|| invalid("range wraps"))?;
        if virt < self.base + self.size && self.base < end {
            return Err(invalid("range overlaps the linear map"));
        }
        Ok(())
    }

    /// Gives `[phys, phys + len)` back to the host: its memory is freed and
    /// it reads as zeroes from now on, through every mapping. The range must
    /// be nonempty, page-aligned and inside RAM (else `InvalidInput`): see
    /// [`RamRef::discard`], which does the work.
    ///
    /// This is safe in Rust's sense because this crate hands out no
    /// references into RAM, only addresses; whoever turns them into
    /// references (the core) must not discard memory it has lent out.
    pub fn discard(&self, phys: u64, len: u64) -> io::Result<()> {
        self.ram.discard(phys, len)
    }

    /// Reserves `size` bytes (rounded up to the page size) of inaccessible
    /// address space, aligned to 2 MiB, for aliases of RAM (the vmalloc
    /// window). It costs no memory. Release it with `release_window`.
    pub fn reserve_window(&self, size: usize) -> io::Result<usize> {
        let page = host_page_size();
        if size == 0 {
            return Err(invalid("window size is 0"));
        }
        let size = size
            .checked_add(page - 1)
            .ok_or_else(|| invalid("window too large"))?
            & !(page - 1);
        reserve(size)
    }

    /// Unmaps a window made by `reserve_window`, aliases and all.
    ///
    /// # Safety
    /// `[virt, virt + size)` must be (a part of) a window returned by
    /// `reserve_window`, and no reference into it may be used afterwards.
    pub unsafe fn release_window(&self, virt: usize, size: usize) -> io::Result<()> {
        self.check_window(virt, size)?;
        // SAFETY: the caller gives us the window and promises it is unused.
        if unsafe { libc::munmap(virt as *mut libc::c_void, size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Maps RAM `[phys, phys + len)` a second time, read/write, at
    /// `[at_virt, at_virt + len)`: writes through either mapping are seen
    /// through the other. Replaces whatever was mapped there.
    ///
    /// # Safety
    /// `[at_virt, at_virt + len)` must lie inside a window returned by
    /// `reserve_window` that is still reserved, and nothing may hold
    /// references into the part being replaced.
    pub unsafe fn map_alias(&self, phys: u64, len: usize, at_virt: usize) -> io::Result<()> {
        let phys = self.check_phys(phys, len)?;
        if phys < self.private() {
            return Err(invalid("private lowmem cannot be mapped a second time"));
        }
        self.check_window(at_virt, len)?;
        let fd = self.ram.fd()?;
        self.ram.note_alias();
        // SAFETY: the caller promises the target lies in a reserved window we
        // may replace; `fd` is the memfd (checked) and the source range is inside it.
        unsafe { map_file_in_place(at_virt, len, libc::PROT_READ | libc::PROT_WRITE, fd, phys) }
    }

    /// Removes the alias at `[virt, virt + len)`, turning the range back into
    /// inaccessible reservation (the window keeps its addresses; the RAM is
    /// untouched).
    ///
    /// # Safety
    /// `[virt, virt + len)` must lie inside a window returned by
    /// `reserve_window`, and no reference into it may be used afterwards.
    pub unsafe fn unmap_alias(&self, virt: usize, len: usize) -> io::Result<()> {
        self.check_window(virt, len)?;
        // SAFETY: the caller promises the range is in one of our windows and unused.
        unsafe { reserve_in_place(virt, len) }
    }

    /// Bytes of RAM that hold host memory (pages written and not discarded
    /// since): the memfd's block count, plus the resident pages of the
    /// private lowmem (`mincore`).
    pub fn ram_resident_bytes(&self) -> io::Result<u64> {
        // A RAM with no file yet has nothing in one (and this does not make one).
        let shared = if self.ram.detached() {
            0
        } else {
            // SAFETY: an all-zero `stat` is a valid value to be overwritten.
            let mut st: libc::stat = unsafe { core::mem::zeroed() };
            let fd = self.ram.fd()?;
            // SAFETY: `fd` is open and `st` is a writable `stat`.
            if unsafe { libc::fstat(fd, &mut st) } != 0 {
                return Err(io::Error::last_os_error());
            }
            st.st_blocks as u64 * 512
        };
        let mut private = 0;
        // SAFETY: the private lowmem is the page-aligned start of our linear map.
        unsafe {
            for_each_backed_run(self.base, self.private() / kmem::PAGE_SIZE, |_, pages| {
                private += pages * kmem::PAGE_SIZE
            })?
        };
        Ok(shared + private as u64)
    }
}

impl Drop for HostRam {
    fn drop(&mut self) {
        unregister(self.ram);
        // SAFETY: the linear map is ours (invariant); aliases made from it in other windows stay valid
        // mappings of the memfd, which the kernel keeps alive while they exist.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.size);
        }
    }
}

/// Calls `f(start, pages)` for each run of pages of `[virt, virt + n
/// pages)` that the RAM memfd backs (written, not given back to the host);
/// the others are holes, which read as zero and cost no host memory.
/// `mincore` on a shared file mapping reports the file's page cache, page
/// table entries or not; it is asked 512 pages at a time (a 512-byte
/// buffer, no allocation: the allocator itself calls this). Err if the host
/// refuses the question (then nothing is known about the rest).
///
/// # Safety
/// `virt` is page-aligned and `[virt, virt + n pages)` is mapped from the
/// RAM memfd (the linear map or a vmalloc alias).
pub unsafe fn for_each_backed_run(virt: usize, n: usize, mut f: impl FnMut(usize, usize)) -> io::Result<()> {
    const CHUNK: usize = 512;
    let page = kmem::PAGE_SIZE;
    let mut vec = [0u8; CHUNK];
    let mut done = 0;
    while done < n {
        let len = (n - done).min(CHUNK);
        let start = virt + done * page;
        // SAFETY: `[start, +len pages)` is mapped (caller) and `vec` has room for `len` entries.
        if unsafe { libc::mincore(start as *mut libc::c_void, len * page, vec.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut j = 0;
        while j < len {
            if vec[j] & 1 == 0 {
                j += 1;
                continue;
            }
            let first = j;
            while j < len && vec[j] & 1 != 0 {
                j += 1;
            }
            f(start + first * page, j - first);
        }
        done += len;
    }
    Ok(())
}

/// Resident set size of the whole process, in bytes (`/proc/self/statm`).
pub fn rss_bytes() -> io::Result<u64> {
    use std::io::Read;
    let mut buf = [0u8; 256];
    let mut file = std::fs::File::open("/proc/self/statm")?;
    let mut len = 0;
    loop {
        let n = file.read(&mut buf[len..])?;
        if n == 0 || len + n == buf.len() {
            len += n;
            break;
        }
        len += n;
    }
    let text = core::str::from_utf8(&buf[..len]).map_err(|_| invalid("bad statm"))?;
    let pages: u64 = text
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad statm"))?;
    Ok(pages * host_page_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_files_paths_are_the_kernels() {
        let p = map_files_path(0x7f00_1234_5000, 0x1000);
        let end = p.iter().position(|&b| b == 0).unwrap();
        assert_eq!(&p[..end], b"/proc/self/map_files/7f0012345000-7f0012346000");
        let p = map_files_path(0, 0xff);
        let end = p.iter().position(|&b| b == 0).unwrap();
        assert_eq!(&p[..end], b"/proc/self/map_files/0-ff");
    }

    #[test]
    fn rejects_bad_ranges() {
        let ram = HostRam::new(1 << 20).unwrap();
        let page = host_page_size() as u64;
        assert!(ram.discard(1, page).is_err());
        assert!(ram.discard(0, 0).is_err());
        assert!(ram.discard(0, (1 << 20) + page).is_err());
        assert!(ram.discard(u64::MAX - page + 1, page).is_err());
        assert!(ram.discard(0, 1 << 20).is_ok());
        // Aliasing onto the linear map itself is refused.
        // SAFETY: the call fails before mapping anything.
        let r = unsafe { ram.map_alias(0, page as usize, ram.base()) };
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn size_rounds_up_and_base_is_aligned() {
        let ram = HostRam::new(5000).unwrap();
        assert_eq!(ram.size(), 2 * host_page_size());
        assert_eq!(ram.base() % WINDOW_ALIGN, 0);
        assert!(HostRam::new(0).is_err());
    }

    #[test]
    fn fresh_ram_reads_zero() {
        let ram = HostRam::new(1 << 20).unwrap();
        // SAFETY: the linear map is readable for `size` bytes.
        let s = unsafe { core::slice::from_raw_parts(ram.base() as *const u8, ram.size()) };
        assert!(s.iter().all(|&b| b == 0));
    }

    #[test]
    fn the_descriptor_sits_out_of_the_programs_way() {
        let ram = HostRam::new(1 << 20).unwrap();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is writable.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        if lim.rlim_cur >= (FD_FLOOR + 64) as libc::rlim_t {
            assert!(ram.fd().unwrap() >= FD_FLOOR, "{}", ram.fd().unwrap());
        }
    }

    /// The program puts its own file on the RAM's descriptor number, then
    /// closes it: kmem notices each time, reaches the RAM again through the
    /// linear map, and never touches the program's file.
    #[test]
    fn a_replaced_or_closed_descriptor_is_noticed() {
        let page = host_page_size();
        let ram = HostRam::new(1 << 20).unwrap();
        let num = ram.fd().unwrap();
        let theirs = std::env::temp_dir().join(format!("kmem-ram-fd-{}", std::process::id()));
        std::fs::write(&theirs, vec![b'x'; 2 * page]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&theirs)
            .unwrap();
        // SAFETY: `num` is the RAM's descriptor, which this test takes over as the program would.
        assert_eq!(unsafe { libc::dup2(file.as_raw_fd(), num) }, num);

        // Written through the linear map, read through an alias: the alias
        // must map the RAM, not the program's file.
        // SAFETY: the first page of the linear map.
        unsafe { (ram.base() as *mut u8).write_volatile(7) };
        let window = ram.reserve_window(page).unwrap();
        // SAFETY: the window was just reserved and is unused.
        unsafe { ram.map_alias(0, page, window).unwrap() };
        // SAFETY: the alias maps one readable page.
        assert_eq!(unsafe { (window as *const u8).read_volatile() }, 7);
        let again = ram.fd().unwrap();
        assert_ne!(again, num);
        ram.discard(0, page as u64).unwrap();
        // SAFETY: both still map the discarded page.
        unsafe {
            assert_eq!((ram.base() as *const u8).read_volatile(), 0);
            assert_eq!((window as *const u8).read_volatile(), 0);
        }
        assert!(ram.ram_resident_bytes().is_ok());

        // Closed behind kmem's back: opened again, on another number.
        // SAFETY: the RAM's current descriptor, taken over by the test.
        unsafe { libc::close(again) };
        // (Reading the hole above made its page resident again, as reads of a
        // shared memfd mapping's holes do.)
        assert!(ram.ram_resident_bytes().unwrap() <= page as u64);
        let third = ram.fd().unwrap();
        assert!(third >= 0 && file_id(third).is_some());

        // SAFETY: the window is ours and nothing refers into it.
        unsafe { ram.release_window(window, page).unwrap() };
        drop(ram);
        // The program's file kept its bytes, and its number is still open on it.
        assert_eq!(std::fs::read(&theirs).unwrap(), vec![b'x'; 2 * page]);
        assert_eq!(
            file_id(num).map(|f| (f.0, f.1)),
            file_id(file.as_raw_fd()).map(|f| (f.0, f.1))
        );
        // SAFETY: `num` is the test's now.
        unsafe { libc::close(num) };
        let _ = std::fs::remove_file(&theirs);
    }

    #[test]
    fn process_rss_is_positive() {
        assert!(rss_bytes().unwrap() > 0);
    }
}
