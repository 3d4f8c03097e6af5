//! Booting kmem machines in a Linux process, and the process-wide default machine.
//!
//! `Machine::boot("mem=256M nr_cpus=4 ...")` builds the firmware memory map a
//! PC with that much RAM would have (`e820::pc_layout`: low RAM, the legacy
//! holes, RAM up to 3 GiB, the PCI hole, the rest above 4 GiB), applies
//! `memmap=`, creates a sparse memfd spanning the physical address space,
//! maps it as the linear map and boots the core on it. `mem=` is the amount of
//! installed RAM (default 4 GiB); unlike the kernel's `mem=` on a real PC it
//! cannot cut RAM that is not there, so it sizes the map instead of trimming it.
//!
//! As on x86 Linux, the first megabyte of RAM is reserved (BIOS data, EBDA,
//! real-mode trampolines): the DMA zone starts managing pages at 1 MiB.
//!
//! `default_machine()` boots once, lazily, from the `KMEM_CMDLINE` environment
//! variable; the C API, the malloc override and `GlobalAlloc` use it.

use crate::{HostRam, HostedPlatform};
use core::ops::Deref;
use core::ptr::NonNull;
use kmem::cmdline::{self, BootParams};
use kmem::e820::{self, E820Table};
use kmem::{BootError, BootInfo, Kmem};
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Installed RAM when `mem=` is not given.
pub const DEFAULT_MEM: u64 = 4 << 30;

/// Why a machine did not boot.
#[derive(Debug)]
pub enum MachineError {
    /// The host refused memory (memfd, mmap).
    Io(io::Error),
    /// The core refused the configuration.
    Boot(BootError),
    /// The memory map from the command line is unusable.
    MemoryMap(&'static str),
}

impl fmt::Display for MachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineError::Io(e) => write!(f, "cannot create the machine's RAM: {e}"),
            MachineError::Boot(e) => write!(f, "boot failed: {e}"),
            MachineError::MemoryMap(e) => write!(f, "bad memory map: {e}"),
        }
    }
}

impl std::error::Error for MachineError {}

/// A booted machine with its RAM. Dereferences to the core's `Kmem`.
pub struct Machine {
    kmem: NonNull<Kmem<HostedPlatform>>,
    kswapd: Vec<std::thread::JoinHandle<()>>,
    kswapd_stop: std::sync::Arc<AtomicBool>,
    e820: E820Table,
    /// The vmalloc window `(start, size)`, released after the machine.
    vmalloc_window: (usize, usize),
    // Dropped last: the machine lives inside it.
    ram: HostRam,
}

// SAFETY: the core machine is Sync (locks and atomics) and its RAM mapping is
// owned by this value; moving the handle between threads is fine.
unsafe impl Send for Machine {}
// SAFETY: as above.
unsafe impl Sync for Machine {}

impl Machine {
    /// Boot a machine from a kernel-style command line.
    pub fn boot(cmdline_str: &str) -> Result<Machine, MachineError> {
        Self::boot_params(&cmdline::parse(cmdline_str))
    }

    /// Boot a machine from parsed parameters.
    pub fn boot_params(params: &BootParams) -> Result<Machine, MachineError> {
        let ram_bytes = params.mem.unwrap_or(DEFAULT_MEM);
        if ram_bytes < (2 << 20) {
            return Err(MachineError::MemoryMap("mem= must be at least 2M"));
        }
        let mut e820 = e820::pc_layout(ram_bytes);
        // mem= sized the layout already.
        e820.apply_params_mem(params, None)
            .map_err(|_| MachineError::MemoryMap("invalid memmap="))?;
        // trim_bios_range: page 0 is BIOS data, never RAM to the kernel.
        e820.update(0, 4096, e820::E820Type::Ram, e820::E820Type::Reserved);
        e820.sanitize();
        let phys_size = e820.end_of_ram().max(
            e820.entries()
                .iter()
                .filter(|e| e.kind == e820::E820Type::Ram)
                .map(|e| e.addr + e.size)
                .max()
                .unwrap_or(0),
        );
        if phys_size == 0 {
            return Err(MachineError::MemoryMap("no RAM"));
        }
        // `kmem.private_lowmem`: lowmem as private anonymous memory (`ram.rs`), exactly the RAM
        // below the boundary the boot will draw. With no HighMem page at all, every page stays in
        // the memfd: vmalloc would have none to map.
        let private = match (params.kmem_private_lowmem, e820::max_low_pfn(&e820, params)) {
            (Some(true), Some(low)) if low << kmem::PAGE_SHIFT < e820.end_of_ram() => {
                (low << kmem::PAGE_SHIFT) as usize
            }
            _ => 0,
        };
        let ram = HostRam::with_private_lowmem(phys_size, private).map_err(MachineError::Io)?;
        let nr_cpus = params
            .nr_cpus
            .unwrap_or_else(crate::platform::host_nr_cpus)
            .max(1);
        let platform = HostedPlatform::with_ram(nr_cpus, &ram, params.quiet).map_err(MachineError::Io)?;
        let reserved = [(0u64, 1u64 << 20)];
        let vmalloc_size = params
            .vmalloc
            .map_or_else(|| vmalloc_window_size(phys_size), vmalloc_param_size);
        let vmalloc_start = ram.reserve_window(vmalloc_size).map_err(MachineError::Io)?;
        let vmalloc_window = (vmalloc_start, vmalloc_size);
        let info = BootInfo {
            e820: &e820,
            page_offset: ram.base(),
            ram_zeroed: true,
            reserved: &reserved,
            params,
            vmalloc_window: Some(vmalloc_window),
        };
        // `ram` is dropped after `drop_in_place` in `Drop`.
        // SAFETY: `ram` maps all of e820's RAM at base + phys and outlives the machine.
        let kmem = match unsafe { Kmem::boot(platform, &info) } {
            Ok(k) => k,
            Err(e) => {
                // SAFETY: the window is ours and nothing uses it.
                let _ = unsafe { ram.release_window(vmalloc_start, vmalloc_size) };
                return Err(MachineError::Boot(e));
            }
        };
        // SAFETY: just booted; the machine lives until `Machine` drops.
        debug_assert!(ram.private() <= unsafe { kmem.as_ref() }.max_low_pfn() << kmem::PAGE_SHIFT);
        let mut m = Machine {
            kmem,
            kswapd: Vec::new(),
            kswapd_stop: Default::default(),
            e820,
            vmalloc_window,
            ram,
        };
        if params.kswapd.unwrap_or(true) {
            m.start_kswapd();
        }
        Ok(m)
    }

    /// Start one kswapd thread per node (`kswapdN`).
    fn start_kswapd(&mut self) {
        struct SendPtr(NonNull<Kmem<HostedPlatform>>);
        // SAFETY: the machine is Sync; the pointer stays valid until the
        // threads are joined in `Drop`, before the machine is torn down.
        unsafe impl Send for SendPtr {}
        for nid in 0..self.kmem().nr_node_ids() {
            let k = SendPtr(self.kmem);
            let stop = self.kswapd_stop.clone();
            let h = std::thread::Builder::new()
                .name(format!("kswapd{nid}"))
                .spawn(move || {
                    let k = k;
                    // SAFETY: see SendPtr.
                    let kmem = unsafe { k.0.as_ref() };
                    kmem.kswapd_run(nid, &stop);
                });
            if let Ok(h) = h {
                self.kswapd.push(h);
            }
        }
        // Wait until the threads registered, so wake-ups from now on reach them.
        while self.kmem().kswapd_threads() < self.kswapd.len() {
            std::thread::yield_now();
        }
    }

    /// The core machine.
    #[inline(always)]
    pub fn kmem(&self) -> &Kmem<HostedPlatform> {
        // SAFETY: valid until drop (see `boot`).
        unsafe { self.kmem.as_ref() }
    }

    /// The machine's RAM.
    pub fn ram(&self) -> &HostRam {
        &self.ram
    }

    /// The firmware memory map the machine booted with.
    pub fn e820(&self) -> &E820Table {
        &self.e820
    }

    /// The kernel log as a string.
    pub fn dmesg(&self) -> String {
        let mut s = String::new();
        let _ = self.kmem().dmesg(&mut s);
        s
    }

    /// Log text written after `since` bytes (see `Kmem::dmesg_len`).
    pub fn dmesg_since(&self, since: usize) -> String {
        let all = self.dmesg();
        let total = self.kmem().dmesg_len();
        let new = total.saturating_sub(since);
        all[all.len().saturating_sub(new)..].to_string()
    }

    /// Text of `/proc/<name>`, or `None` for an unknown file.
    pub fn proc_read(&self, name: &str) -> Option<String> {
        let mut s = String::new();
        kmem::proc::proc_show(self.kmem(), name, &mut s).ok()?;
        Some(s)
    }
}

impl Deref for Machine {
    type Target = Kmem<HostedPlatform>;
    #[inline(always)]
    fn deref(&self) -> &Kmem<HostedPlatform> {
        self.kmem()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kswapd_stop.store(true, Ordering::Release);
        self.kmem().kswapd_stop();
        for h in self.kswapd.drain(..) {
            let _ = h.join();
        }
        // Its memory is unmapped when `ram` drops right after.
        // SAFETY: the machine was initialised by boot and is not used after this.
        unsafe { core::ptr::drop_in_place(self.kmem.as_ptr()) };
        let (start, size) = self.vmalloc_window;
        // SAFETY: the window was reserved at boot and the machine that used it is gone.
        let _ = unsafe { self.ram.release_window(start, size) };
    }
}

/// Size of the vmalloc window: twice the physical address space, at least
/// 1 GiB (the kernel's is 32 TiB on x86-64; address space is cheap, but many
/// machines share one process).
pub fn vmalloc_window_size(phys_size: u64) -> usize {
    let two = usize::try_from(phys_size)
        .unwrap_or(usize::MAX / 4)
        .saturating_mul(2);
    two.max(1 << 30).next_multiple_of(2 << 20)
}

/// Size of the vmalloc window that `vmalloc=` asks for (the kernel's
/// "exact size of the vmalloc area"): rounded up to 2 MiB, at least 8 MiB.
pub fn vmalloc_param_size(bytes: u64) -> usize {
    usize::try_from(bytes)
        .unwrap_or(usize::MAX / 4)
        .clamp(8 << 20, usize::MAX / 4)
        .next_multiple_of(2 << 20)
}

/// The boot command line of the default machine (`KMEM_CMDLINE`), read
/// without allocating.
pub fn env_cmdline() -> &'static str {
    // The result is owned by the environment, which lives for the process (we never setenv it).
    // SAFETY: getenv with a NUL-terminated name returns null or such a C string.
    unsafe {
        let p = libc::getenv(c"KMEM_CMDLINE".as_ptr());
        if p.is_null() {
            return "";
        }
        std::ffi::CStr::from_ptr(p).to_str().unwrap_or("")
    }
}

static DEFAULT: OnceLock<Machine> = OnceLock::new();

/// The process-wide default machine, booted on first use from `KMEM_CMDLINE`.
///
/// # Panics
/// If it cannot boot (the message says why).
pub fn default_machine() -> &'static Machine {
    if let Some(m) = DEFAULT.get() {
        return m;
    }
    match boot_default_machine(|_| {}) {
        Ok(m) => m,
        Err(e) => panic!("kmem: default machine (KMEM_CMDLINE={:?}): {e}", env_cmdline()),
    }
}

/// Boots the default machine now, unless it is booted already, from
/// `KMEM_CMDLINE` with `defaults` filling in what the command line leaves
/// unset (the malloc override turns kswapd off and boots quietly). The
/// default machine's spinlocks are fork-safe (`enable_fork_gate`).
///
/// One thread boots; others wait for it. Booting must not call back into
/// this function (the allocators built on it serve their own allocations
/// during the boot some other way).
pub fn boot_default_machine(
    defaults: impl FnOnce(&mut BootParams),
) -> Result<&'static Machine, MachineError> {
    // One thread boots. The parameters (over 6 KiB) are in this frame, not
    // in a static: the malloc override boots on a stack of its own whose
    // pages it drops afterwards, where a static's pages, written once, would
    // stay resident in every program that preloads it.
    static BOOT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(m) = DEFAULT.get() {
        return Ok(m);
    }
    let _booting = BOOT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = DEFAULT.get() {
        return Ok(m);
    }
    let mut params = BootParams::new();
    cmdline::parse_into(&mut params, env_cmdline());
    defaults(&mut params);
    let m = Machine::boot_params(&params)?;
    m.platform.enable_fork_gate();
    Ok(DEFAULT.get_or_init(|| m))
}
