//! # libkmem — the kernel's memory-allocation C API over kmem
//!
//! This crate is the C library `libkmem.so` / `libkmem.a`. Its headers live in
//! `include/` at the repository root and are named as the kernel names them
//! (`linux/slab.h`, `linux/gfp.h`, `linux/mm.h`, `linux/mempool.h`,
//! `linux/vmalloc.h`, `linux/percpu.h`, `linux/bootmem.h`, `linux/memblock.h`,
//! `linux/highmem.h`, `asm/io.h`, `asm/page.h`), plus `kmem.h` for what the
//! kernel does not have (booting a machine, reading its /proc files). C code
//! written against the kernel's signatures compiles with
//!
//! ```text
//! cc -Iinclude prog.c -Ltarget/release -lkmem -Wl,-rpath,$PWD/target/release         # shared
//! cc -Iinclude prog.c target/release/libkmem.a -lpthread -ldl -lm -lgcc_s -lc          # static
//! ```
//!
//! ## The machine
//! Every function runs on one machine per process: the one a C program booted
//! with `kmem_boot(cmdline)` before its first allocation, or else
//! [`kmem_hosted::default_machine`], booted lazily on first use from the
//! `KMEM_CMDLINE` environment variable. The machine is found through one
//! atomic pointer ([`machine`]); the first call takes a lock and boots.
//!
//! ## One file per header area
//! `kmem.rs` (kmem.h), `slab.rs` (slab.h: caches and the kmalloc family),
//! `page.rs` (gfp.h, mm.h, asm/page.h: the page allocator), `mempool.rs`,
//! `vmalloc.rs` (vmalloc.h and the kvmalloc family), `percpu.rs` (percpu.h,
//! smp.h), `context.rs` (preempt.h, might_sleep), `bootmem.rs` (bootmem.h,
//! memblock.h), `highmem.rs` (kmap), `io.rs` (asm/io.h).
//!
//! ## Conventions
//! Failures return NULL (or 0 for address-returning functions), never
//! `ERR_PTR`, exactly as the kernel's allocators do. Misuse is reported the
//! kernel's way by the core (in the machine's log, `kmem_dmesg`, and on
//! stderr unless the machine is `quiet`). C callbacks (constructors,
//! destructors, mempool element allocators) are called through small Rust
//! trampolines, because the core's callback types are Rust functions.
//!
//! Every exported function that takes a pointer is `unsafe`: the C caller
//! promises what the kernel's documentation asks of the argument.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod bootmem;
pub mod context;
pub mod highmem;
pub mod io;

pub mod kmem;
pub mod mempool;
pub mod page;
pub mod percpu;
pub mod slab;
pub mod vmalloc;

use core::ffi::{c_char, CStr};
use core::fmt;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

use kmem_core::gfp::Gfp;
use kmem_core::Kmem;
use kmem_hosted::{HostedPlatform, Machine};

/// The machine type every function runs on.
pub type K = Kmem<HostedPlatform>;

/// The C API's machine, once booted (or chosen).
static MACHINE: AtomicPtr<Machine> = AtomicPtr::new(ptr::null_mut());
/// Serialises booting: `kmem_boot` against the lazy boot of the first call.
static BOOT_LOCK: Mutex<()> = Mutex::new(());

/// The C API's machine: the one `kmem_boot` booted, or the process's
/// default machine (booted from `KMEM_CMDLINE` on first use).
#[inline(always)]
pub fn machine() -> &'static Machine {
    let p = MACHINE.load(Ordering::Acquire);
    if p.is_null() {
        return machine_slow();
    }
    // SAFETY: only ever set to a machine that lives for the rest of the
    // process (the default machine, or a leaked one from `kmem_boot`).
    unsafe { &*p }
}

/// The core of the C API's machine.
#[inline(always)]
pub fn k() -> &'static K {
    machine().kmem()
}

/// While alive, kmem records this thread's calls as made from `ip` when it
/// is not 0, else from the innermost frame outside libkmem (an unwind), so
/// that `/proc/vmallocinfo` names the C function that called `vmalloc`,
/// `vmap` or `ioremap`, as the kernel's `%pS` of the caller does, instead of
/// this library's own source line. (Linked statically, libkmem shares the
/// program's object and no frame is outside it: the Rust call site stays.)
pub(crate) struct CCaller;

impl CCaller {
    pub(crate) fn enter(ip: usize) -> Self {
        let ip = if ip != 0 {
            ip
        } else {
            kmem_hosted::platform::caller_outside(CCaller::enter as *const () as usize)
        };
        kmem_hosted::fork::set_caller_ip(ip);
        CCaller
    }
}

impl Drop for CCaller {
    fn drop(&mut self) {
        kmem_hosted::fork::set_caller_ip(0);
    }
}

#[cold]
fn machine_slow() -> &'static Machine {
    let m = {
        let _g = BOOT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let p = MACHINE.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: as in `machine`.
            return unsafe { &*p };
        }
        let m = kmem_hosted::default_machine();
        MACHINE.store(m as *const Machine as *mut Machine, Ordering::Release);
        m
    };
    percpu::materialise_all();
    m
}

/// Install a freshly booted machine as the C API's; `Err(m)` if one is
/// already in use (the caller drops `m`).
fn install_machine(m: Box<Machine>) -> Result<(), Box<Machine>> {
    let _g = BOOT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !MACHINE.load(Ordering::Acquire).is_null() {
        return Err(m);
    }
    MACHINE.store(Box::into_raw(m), Ordering::Release);
    drop(_g);
    percpu::materialise_all();
    Ok(())
}

/// Whether a machine has been booted (or chosen) for the C API.
fn machine_booted() -> bool {
    !MACHINE.load(Ordering::Acquire).is_null()
}

/// `gfp_t` as the core's flags.
#[inline(always)]
pub(crate) fn gfp(flags: u32) -> Gfp {
    Gfp(flags)
}

/// A C string argument as `&str` (NULL is the empty string; `None` if it is
/// not UTF-8).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that lives for `'a`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return Some("");
    }
    // SAFETY: caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().ok()
}

/// `WARN()`: the kernel's warning block on the machine's log, counted in
/// the machine's warnings.
pub(crate) fn warn(k: &K, args: fmt::Arguments<'_>) {
    use kmem_core::platform::Platform;
    k.events.warnings.fetch_add(1, Ordering::Relaxed);
    let mut comm = [0u8; 16];
    let n = k.platform.current_comm(&mut comm);
    let comm = core::str::from_utf8(&comm[..n]).unwrap_or("?");
    k.printk(format_args!("------------[ cut here ]------------"));
    k.printk(format_args!(
        "WARNING: CPU: {} PID: {} Comm: {}: {}",
        k.platform.raw_smp_processor_id(),
        k.platform.current_pid(),
        comm,
        args
    ));
    k.platform.dump_stack();
    k.printk(format_args!("---[ end trace 0000000000000000 ]---"));
}

/// `snprintf` into a C buffer: writes at most `size - 1` bytes and a NUL
/// (nothing if `size == 0`), and counts every byte it was given.
pub(crate) struct CBuf {
    buf: *mut u8,
    size: usize,
    len: usize,
}

impl CBuf {
    /// A writer into `buf[..size]`.
    ///
    /// # Safety
    /// `buf` is valid for writes of `size` bytes (or `size` is 0).
    pub(crate) unsafe fn new(buf: *mut c_char, size: usize) -> Self {
        CBuf {
            buf: buf as *mut u8,
            size: if buf.is_null() { 0 } else { size },
            len: 0,
        }
    }

    /// NUL-terminate and return the full length.
    pub(crate) fn finish(self) -> usize {
        if self.size > 0 {
            let at = self.len.min(self.size - 1);
            // SAFETY: `at < size`, inside the caller's buffer.
            unsafe { *self.buf.add(at) = 0 };
        }
        self.len
    }
}

impl fmt::Write for CBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.size.saturating_sub(1).saturating_sub(self.len);
        let n = room.min(s.len());
        if n > 0 {
            // SAFETY: `len + n <= size - 1`: inside the caller's buffer, which
            // cannot overlap a Rust string we are formatting.
            unsafe { ptr::copy_nonoverlapping(s.as_ptr(), self.buf.add(self.len), n) };
        }
        self.len += s.len();
        Ok(())
    }
}

/// Errno values returned negated, as the kernel returns them.
pub(crate) mod errno {
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// No such file.
    pub const ENOENT: i32 = 2;
    /// Busy (already booted).
    pub const EBUSY: i32 = 16;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
}
