//! `HostRam`: a machine's physical memory, as a memfd.
//!
//! The machine's RAM is one memfd of `size` bytes. `ftruncate` makes it that
//! long without giving it any memory: a page of the memfd costs host memory
//! only once it is written, and punching a hole (`fallocate(PUNCH_HOLE)`)
//! gives it back, after which it reads as zeroes. The holes of the machine's
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
//! **fork.** Because the mappings are `MAP_SHARED`, a child created by `fork`
//! would share the machine's RAM with its parent. So every live `HostRam`
//! is recorded in a small process-wide registry (`RAM_FDS`, a fixed array of
//! descriptors, so recording never allocates), and the fork handlers of
//! `crate::fork` give the child a private copy of each registered memfd,
//! mapped where the old one was (see `fork.rs`). `registry_lock` freezes the
//! registry across a fork.

use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Most `HostRam`s alive at once that a fork copies; more still work, but a
/// child created while they live shares them with its parent (a warning says so).
pub const MAX_FORK_RAMS: usize = 256;

/// Descriptors of the live `HostRam`s (-1: free slot).
static RAM_FDS: [AtomicI32; MAX_FORK_RAMS] = [const { AtomicI32::new(-1) }; MAX_FORK_RAMS];

/// Serialises changes to `RAM_FDS` against a fork (a spinning lock: held only
/// for a slot update, or by a fork from its prepare to its parent/child handler).
static RAM_FDS_LOCK: AtomicBool = AtomicBool::new(false);

/// Take the registry lock.
pub(crate) fn registry_lock() {
    while RAM_FDS_LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
}

/// Release the registry lock.
pub(crate) fn registry_unlock() {
    RAM_FDS_LOCK.store(false, Ordering::Release);
}

/// The registered RAM descriptors (call with the registry lock held).
pub(crate) fn registered_fds() -> impl Iterator<Item = i32> {
    RAM_FDS
        .iter()
        .map(|f| f.load(Ordering::Relaxed))
        .filter(|&fd| fd >= 0)
}

fn register(fd: i32) {
    crate::fork::install_handlers();
    registry_lock();
    let slot = RAM_FDS.iter().find(|f| f.load(Ordering::Relaxed) < 0);
    if let Some(slot) = slot {
        slot.store(fd, Ordering::Relaxed);
    }
    registry_unlock();
    if slot.is_none() {
        crate::platform::write_stderr(
            b"kmem: more than 256 machines: a fork child will share this one's RAM\n",
        );
    }
}

fn unregister(fd: i32) {
    registry_lock();
    if let Some(slot) = RAM_FDS.iter().find(|f| f.load(Ordering::Relaxed) == fd) {
        slot.store(-1, Ordering::Relaxed);
    }
    registry_unlock();
}

/// Alignment of the linear map and of reserved windows.
const WINDOW_ALIGN: usize = 2 << 20;

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

/// Reserves `size` bytes (a multiple of the page size) of address space,
/// aligned to `WINDOW_ALIGN`, inaccessible and costing no memory.
fn reserve(size: usize) -> io::Result<usize> {
    let padded = size
        .checked_add(WINDOW_ALIGN)
        .ok_or_else(|| invalid("window too large"))?;
    // SAFETY: a fresh anonymous mapping at an address of the kernel's
    // choosing touches nothing that exists.
    let raw = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            padded,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let raw = raw as usize;
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

/// The machine's physical RAM: a sparse memfd mapped as the linear map.
///
/// # Invariants
/// `[base, base + size)` is a shared read/write mapping of the whole of `fd`,
/// owned by this value until it drops; `size` is a nonzero multiple of the
/// host page size and the length of `fd`.
#[derive(Debug)]
pub struct HostRam {
    base: usize,
    size: usize,
    fd: OwnedFd,
}

impl HostRam {
    /// Creates `phys_size` bytes of RAM (rounded up to the host page size),
    /// all zero, costing no host memory until written, and maps it as the
    /// linear map.
    pub fn new(phys_size: u64) -> io::Result<HostRam> {
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

        // SAFETY: the name is a NUL-terminated string; the flags are valid.
        let raw_fd = unsafe { libc::memfd_create(c"kmem-ram".as_ptr(), libc::MFD_CLOEXEC) };
        if raw_fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create returned a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw_fd) };
        // SAFETY: `fd` is an open memfd; growing it only records the length.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }

        let base = reserve(size)?;
        // SAFETY: `[base, base + size)` is the reservation made just above,
        // owned by nobody else; MAP_FIXED replaces exactly it.
        let mapped = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            let err = io::Error::last_os_error();
            // SAFETY: the reservation is ours and unused.
            unsafe { libc::munmap(base as *mut libc::c_void, size) };
            return Err(err);
        }
        register(fd.as_raw_fd());
        Ok(HostRam { base, size, fd })
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

    /// The memfd holding the RAM.
    #[inline]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
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
    /// be page-aligned and inside RAM (else `InvalidInput`).
    ///
    /// This is safe in Rust's sense because this crate hands out no
    /// references into RAM, only addresses; whoever turns them into
    /// references (the core) must not discard memory it has lent out.
    pub fn discard(&self, phys: u64, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| invalid("range beyond RAM"))?;
        let phys = self.check_phys(phys, len)?;
        // SAFETY: `fd` is our memfd and the range is inside it.
        let r = unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                phys as libc::off_t,
                len as libc::off_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
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
        self.check_window(at_virt, len)?;
        // SAFETY: the caller promises the target lies in a reserved window we
        // may replace; the source range is inside the memfd.
        let r = unsafe {
            libc::mmap(
                at_virt as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                self.fd.as_raw_fd(),
                phys as libc::off_t,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
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
        // SAFETY: the caller promises the range is in one of our windows and
        // unused; an anonymous PROT_NONE mapping replaces it atomically.
        let r = unsafe {
            libc::mmap(
                virt as *mut libc::c_void,
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

    /// Bytes of RAM that hold host memory (pages written and not discarded
    /// since), from the memfd's block count.
    pub fn ram_resident_bytes(&self) -> io::Result<u64> {
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: `fd` is open and `st` is a writable `stat`.
        if unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.st_blocks as u64 * 512)
    }
}

impl Drop for HostRam {
    fn drop(&mut self) {
        unregister(self.fd.as_raw_fd());
        // SAFETY: the linear map is ours (invariant); aliases made from it in other windows stay valid
        // mappings of the memfd, which the kernel keeps alive while they exist.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.size);
        }
        // `fd` closes itself.
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
    fn process_rss_is_positive() {
        assert!(rss_bytes().unwrap() > 0);
    }
}
