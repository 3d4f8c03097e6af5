//! `kmem.h`: what the kernel does not have — booting the machine the C API
//! runs on, reading its /proc files and its log, simulated interrupt context,
//! and a check that every page came back.
//!
//! `kmem_boot(cmdline)` boots a machine from a kernel command line and makes
//! it the C API's machine; it must come before anything else allocates
//! (`-EBUSY` afterwards). Without it, the first call boots the process's
//! default machine from `KMEM_CMDLINE`. Reading functions have `snprintf`
//! semantics: they write at most `size - 1` bytes and a NUL, and return the
//! full length of the text.

use core::ffi::{c_char, c_int, c_void};
use core::fmt::Write;

use kmem_hosted::Machine;

use crate::errno::{EBUSY, EINVAL, ENOENT, ENOMEM};
use crate::{c_str, install_machine, k, machine_booted, CBuf};

/// `int kmem_boot(const char *cmdline)`: boot the C API's machine from a
/// kernel command line (`"mem=256M nr_cpus=4 slub_debug=FZPU"`). 0 on
/// success; `-EBUSY` if a machine is already in use, `-EINVAL` for a command
/// line that is not UTF-8 or a memory map that cannot boot, `-ENOMEM` if the
/// host refused the memory. The reason is printed on stderr.
///
/// # Safety
/// `cmdline` is NULL (an empty command line) or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn kmem_boot(cmdline: *const c_char) -> c_int {
    if machine_booted() {
        return -EBUSY;
    }
    // SAFETY: caller's contract.
    let Some(cmdline) = (unsafe { c_str(cmdline) }) else {
        eprintln!("kmem_boot: the command line is not UTF-8");
        return -EINVAL;
    };
    match Machine::boot(cmdline) {
        Ok(m) => match install_machine(Box::new(m)) {
            Ok(()) => 0,
            Err(_m) => -EBUSY,
        },
        Err(e) => {
            eprintln!("kmem_boot({cmdline:?}): {e}");
            match e {
                kmem_hosted::MachineError::Io(_) => -ENOMEM,
                _ => -EINVAL,
            }
        }
    }
}

/// `bool kmem_booted(void)`: whether the C API's machine is up (booted by
/// `kmem_boot` or by a first allocation).
#[no_mangle]
pub extern "C" fn kmem_booted() -> bool {
    machine_booted()
}

/// `ssize_t kmem_proc_read(const char *name, char *buf, size_t size)`: the
/// text of `/proc/<name>` (`slabinfo`, `buddyinfo`, `pagetypeinfo`,
/// `zoneinfo`, `meminfo`, `vmstat`, `vmallocinfo`, `percpu_stats`,
/// `memblock/memory`, `memblock/reserved`; a leading `/proc/` is accepted)
/// like `snprintf`: the full length is returned even when `size` is too
/// small. `-ENOENT` for an unknown name.
///
/// # Safety
/// `name` is a NUL-terminated string; `buf` is valid for writes of `size`
/// bytes (it may be NULL when `size` is 0).
#[no_mangle]
pub unsafe extern "C" fn kmem_proc_read(name: *const c_char, buf: *mut c_char, size: usize) -> isize {
    if name.is_null() {
        return -ENOENT as isize;
    }
    // SAFETY: caller's contract.
    let Some(name) = (unsafe { c_str(name) }) else {
        return -ENOENT as isize;
    };
    let name = name.strip_prefix("/proc/").unwrap_or(name);
    let name = name.strip_prefix("/sys/kernel/debug/").unwrap_or(name);
    if !kmem_core::proc::PROC_FILES.contains(&name) {
        return -ENOENT as isize;
    }
    // SAFETY: caller's contract on `buf`.
    let mut out = unsafe { CBuf::new(buf, size) };
    match kmem_core::proc::proc_show(k(), name, &mut out) {
        Ok(()) => out.finish() as isize,
        Err(_) => -ENOENT as isize,
    }
}

/// `ssize_t kmem_dmesg(char *buf, size_t size)`: the machine's kernel log,
/// like `snprintf`.
///
/// # Safety
/// `buf` is valid for writes of `size` bytes (or NULL with `size` 0).
#[no_mangle]
pub unsafe extern "C" fn kmem_dmesg(buf: *mut c_char, size: usize) -> isize {
    // SAFETY: caller's contract.
    let mut out = unsafe { CBuf::new(buf, size) };
    let _ = k().dmesg(&mut out);
    out.finish() as isize
}

/// `void kmem_printk(const char *msg)`: append one line to the machine's log
/// (and stderr unless `quiet`).
///
/// # Safety
/// `msg` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn kmem_printk(msg: *const c_char) {
    if msg.is_null() {
        return;
    }
    // SAFETY: caller's contract.
    let s = unsafe { core::ffi::CStr::from_ptr(msg) }.to_string_lossy();
    k().printk(format_args!("{}", s.trim_end_matches('\n')));
}

/// `unsigned long kmem_warnings(void)`: warnings (`WARN`) the machine has
/// printed since boot.
#[no_mangle]
pub extern "C" fn kmem_warnings() -> core::ffi::c_ulong {
    k().events.warnings.load(core::sync::atomic::Ordering::Relaxed) as core::ffi::c_ulong
}

/// `void kmem_run_in_hardirq(void (*fn)(void *), void *arg)`: call `fn(arg)`
/// in simulated hardirq context on the current CPU: `in_interrupt()` and
/// `in_atomic()` are true inside, sleeping allocations are reported and fail
/// instead of sleeping, as in an interrupt handler.
///
/// # Safety
/// `f` is a function that may be called with `arg`.
#[no_mangle]
pub unsafe extern "C" fn kmem_run_in_hardirq(f: Option<unsafe extern "C" fn(*mut c_void)>, arg: *mut c_void) {
    if let Some(f) = f {
        // SAFETY: caller's contract.
        k().run_in_hardirq(|| unsafe { f(arg) });
    }
}

/// `void kmem_run_in_softirq(void (*fn)(void *), void *arg)`: as
/// `kmem_run_in_hardirq`, in simulated softirq context.
///
/// # Safety
/// `f` is a function that may be called with `arg`.
#[no_mangle]
pub unsafe extern "C" fn kmem_run_in_softirq(f: Option<unsafe extern "C" fn(*mut c_void)>, arg: *mut c_void) {
    if let Some(f) = f {
        // SAFETY: caller's contract.
        k().run_in_softirq(|| unsafe { f(arg) });
    }
}

/// `void kmem_drain(void)`: give back every cache's empty slabs (CPU slabs
/// included), purge lazily freed vmalloc areas, release empty per-CPU chunks
/// and drain the per-CPU page lists, so `nr_free_pages()` counts everything
/// that is not in use.
#[no_mangle]
pub extern "C" fn kmem_drain() {
    let k = k();
    k.kmem_cache_shrink_all();
    k.vm_unmap_aliases();
    k.pcpu_balance();
    k.drain_all_pages();
}

/// `bool kmem_pages_all_free(char *why, size_t size)`: `kmem_drain()`, then
/// tell whether the buddy free lists are exactly as they were at boot
/// (every page came back). If not, the differences are written to `why`
/// like `snprintf`.
///
/// # Safety
/// `why` is valid for writes of `size` bytes (or NULL with `size` 0).
#[no_mangle]
pub unsafe extern "C" fn kmem_pages_all_free(why: *mut c_char, size: usize) -> bool {
    kmem_drain();
    let k = k();
    let mut s = String::new();
    let ok = k.buddy_matches_boot_state(&mut s);
    // SAFETY: caller's contract.
    let mut out = unsafe { CBuf::new(why, size) };
    let _ = out.write_str(&s);
    out.finish();
    ok
}
