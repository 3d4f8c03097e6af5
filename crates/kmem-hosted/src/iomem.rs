//! Device memory for hosted machines: what `ioremap` maps.
//!
//! A process has no devices on a bus, so a hosted machine's device memory
//! is a file descriptor: a [`FakeDevice`] (a memfd standing for a device's
//! registers or a frame buffer) or a real file whose pages are a device's,
//! such as a PCI BAR's `/sys/bus/pci/devices/.../resource0`. Registering one
//! ([`Machine::register_iomem`]) places it at a physical address the memory
//! map leaves free (the PCI hole below 4 GiB is the usual place) and does
//! two things, as a PCI core would when it finds a BAR:
//!
//! * the core machine gets a non-busy iomem resource with the device's name
//!   (`/proc/iomem`), which a driver claims with `request_mem_region`;
//! * the platform's [`IomemRegistry`] remembers `(phys, size, fd, offset)`,
//!   so `ioremap` of any page-aligned part of it maps that part of the file
//!   into the vmalloc window (`MAP_SHARED | MAP_FIXED`): stores through the
//!   ioremap address are seen through the descriptor (`pread`) and the
//!   other way round, as with a real device's registers.
//!
//! A physical range that is neither RAM nor registered has nothing behind
//! it here, and `ioremap` of it fails with a message. Regions stay
//! registered for the machine's life (hardware is not unplugged); the
//! registry is a read-mostly `RwLock`ed list searched on every ioremap.
//! Cache modes are recorded by the core but the host decides caching (a
//! memfd is ordinary cached memory; sysfs maps `resource0` uncached).

use crate::machine::Machine;
use kmem::ioremap::ResourceError;
use kmem::PAGE_SIZE;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::RwLock;

/// One registered device window.
#[derive(Debug)]
struct DeviceRegion {
    phys: u64,
    size: u64,
    fd: OwnedFd,
    offset: u64,
}

/// The device windows of one machine, by physical address.
#[derive(Debug, Default)]
pub struct IomemRegistry {
    regions: RwLock<Vec<DeviceRegion>>,
}

impl IomemRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&self, r: DeviceRegion) {
        let mut v = self.regions.write().unwrap_or_else(|e| e.into_inner());
        v.push(r);
    }

    /// Maps `[phys, phys + len)`, which must lie inside one registered
    /// region, at `virt` (read/write, shared). False if nothing registered
    /// covers it or the host refuses.
    ///
    /// # Safety
    /// `[virt, virt + len)` is a page-aligned range of a reserved window the
    /// caller owns, and nothing holds references into it.
    pub unsafe fn map(&self, virt: usize, phys: u64, len: usize) -> bool {
        let v = self.regions.read().unwrap_or_else(|e| e.into_inner());
        let Some(end) = phys.checked_add(len as u64) else {
            return false;
        };
        let Some(r) = v.iter().find(|r| r.phys <= phys && end <= r.phys + r.size) else {
            return false;
        };
        let Ok(off) = libc::off_t::try_from(r.offset + (phys - r.phys)) else {
            return false;
        };
        // SAFETY: the caller owns the target range inside a reserved window; the file range lies within the
        // region, which registration checked against the file's size.
        let m = unsafe {
            libc::mmap(
                virt as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                r.fd.as_raw_fd(),
                off,
            )
        };
        m != libc::MAP_FAILED
    }

    /// Registered regions as `(phys, size)`.
    pub fn regions(&self) -> Vec<(u64, u64)> {
        let v = self.regions.read().unwrap_or_else(|e| e.into_inner());
        v.iter().map(|r| (r.phys, r.size)).collect()
    }
}

/// Why a device region could not be registered.
#[derive(Debug)]
pub enum IomemError {
    /// Not page-aligned, empty, or beyond the file.
    Invalid(&'static str),
    /// The physical range conflicts with RAM, firmware or another device.
    Busy,
    /// The host refused (duplicating the descriptor, `fstat`).
    Io(io::Error),
    /// No memory for the resource record.
    NoMemory,
}

impl fmt::Display for IomemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IomemError::Invalid(why) => write!(f, "invalid device region: {why}"),
            IomemError::Busy => f.write_str("physical range already in use"),
            IomemError::Io(e) => write!(f, "{e}"),
            IomemError::NoMemory => f.write_str("out of memory"),
        }
    }
}

impl std::error::Error for IomemError {}

/// A registered device window: `[start, start + size)` in physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IomemRegion {
    /// First physical address.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
}

impl IomemRegion {
    /// Last physical address (inclusive, as resources print it).
    pub fn end(&self) -> u64 {
        self.start + self.size - 1
    }
}

impl Machine {
    /// Registers a device's memory at physical `[phys, phys + size)`, backed
    /// by `fd` from `offset` (a memfd, or a real device file such as a PCI
    /// BAR's `resource0`). All three numbers must be page-aligned and the
    /// range must be free in the iomem tree (a hole of the memory map, or
    /// inside a non-busy "Reserved" range). The region appears in
    /// `/proc/iomem` under `name`; `ioremap` of any part of it then maps the
    /// file.
    pub fn register_iomem(
        &self,
        name: &str,
        phys: u64,
        size: u64,
        fd: BorrowedFd<'_>,
        offset: u64,
    ) -> Result<IomemRegion, IomemError> {
        let page = PAGE_SIZE as u64;
        if size == 0
            || !phys.is_multiple_of(page)
            || !size.is_multiple_of(page)
            || !offset.is_multiple_of(page)
        {
            return Err(IomemError::Invalid(
                "phys, size and offset must be page-aligned, size nonzero",
            ));
        }
        phys.checked_add(size).ok_or(IomemError::Invalid("range wraps"))?;
        let end_off = offset
            .checked_add(size)
            .ok_or(IomemError::Invalid("offset + size wraps"))?;
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: `fd` is open (borrowed) and `st` is writable.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(IomemError::Io(io::Error::last_os_error()));
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFREG && (st.st_size as u64) < end_off {
            return Err(IomemError::Invalid("the file is smaller than offset + size"));
        }
        let owned = fd.try_clone_to_owned().map_err(IomemError::Io)?;
        self.request_iomem_resource(phys, size, name)
            .map_err(|e| match e {
                ResourceError::Busy => IomemError::Busy,
                ResourceError::Invalid => IomemError::Invalid("bad range"),
                ResourceError::NoMemory => IomemError::NoMemory,
            })?;
        self.platform.iomem().add(DeviceRegion {
            phys,
            size,
            fd: owned,
            offset,
        });
        Ok(IomemRegion { start: phys, size })
    }

    /// Text of `/proc/iomem`.
    pub fn iomem(&self) -> String {
        let mut s = String::new();
        let _ = self.iomem_show(&mut s);
        s
    }
}

/// A device that is only memory: a memfd standing for its registers or
/// frame buffer. Register it with [`Machine::register_iomem`] and look at
/// what the driver wrote with [`FakeDevice::read_u32`] and friends (`pread`,
/// `pwrite`: the device's side).
#[derive(Debug)]
pub struct FakeDevice {
    file: File,
    size: u64,
}

impl FakeDevice {
    /// A zeroed device of `size` bytes (rounded up to a page).
    pub fn new(name: &str, size: u64) -> io::Result<FakeDevice> {
        let size = size.max(1).next_multiple_of(PAGE_SIZE as u64);
        let cname = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: NUL-terminated name, valid flags.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create returned a new descriptor nobody else owns.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        file.set_len(size)?;
        Ok(FakeDevice { file, size })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The descriptor to register.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Reads `buf.len()` bytes at `offset` (the device's view).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Writes `buf` at `offset` (the device changes its registers).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// The little-endian 32-bit register at `offset`.
    pub fn read_u32(&self, offset: u64) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.read_at(&mut b, offset)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Sets the little-endian 32-bit register at `offset`.
    pub fn write_u32(&self, offset: u64, val: u32) -> io::Result<()> {
        self.write_at(&val.to_le_bytes(), offset)
    }
}
