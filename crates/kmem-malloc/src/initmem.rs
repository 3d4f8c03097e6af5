//! `free_initmem` for libkmalloc: the code that only the boot runs leaves
//! the process once the machine is up.
//!
//! The kernel keeps its boot-only functions (`__init`) in sections of their
//! own and gives their pages back when the boot is over ("Freeing unused
//! kernel image (initmem) memory: 2548K"). libkmalloc's boot is a kernel's:
//! parsing the command line, the e820 map, memblock, the zones and memmap,
//! the slab caches — some 80 kB of code that runs once, at the first
//! `malloc`, and never again. `scripts/hot-text.sh` sorts the library's
//! functions by when they run (callgrind, with a dump when `boot` returns):
//! the ones that only the boot runs go between `__kmem_init_begin` and
//! `__kmem_init_end` in `hot-text.ld`, page-aligned, after the functions that
//! run afterwards. When the boot has published the machine,
//! [`free_initmem`] drops the range's pages from the process
//! (`MADV_DONTNEED`), and those of the rest of the last 64 KiB fault-around
//! window it touches (which the boot's faults mapped, used or not).
//!
//! **Better than the kernel's, in one way:** the pages are file-backed and
//! unmodified, so nothing is lost. A boot-only function that runs again (a
//! later `kmem_cache_create`, a warning formatted by code the boot alone
//! used so far) faults its window back in from the library file, where the
//! kernel would crash on freed memory.
//!
//! The boot's stack goes too: the boot runs on a stack of its own, whose
//! pages are dropped when it returns ([`run_on_boot_stack`]).
//!
//! A build without the script (`KMEM_MALLOC_NO_HOT_TEXT`, or a script from
//! before the range) defines both symbols equal (build.rs), and there is
//! nothing to drop.

use kmem::Kmem;
use kmem_hosted::HostedPlatform;

// The library's link arguments (build.rs) define them; its unit-test
// binary links without them and has no range.
#[cfg(not(test))]
extern "C" {
    /// Start of the boot-only code (page-aligned), from `hot-text.ld`.
    static __kmem_init_begin: u8;
    /// End of the boot-only code (page-aligned).
    static __kmem_init_end: u8;
    /// End of `.text` (the linkers define it): the end of the code mapping's
    /// last page is the end of the code.
    static etext: u8;
}

/// The host's fault-around window (Linux's default `fault_around_bytes`).
#[cfg(not(test))]
const FAULT_AROUND_BYTES: usize = 64 << 10;

/// No boot-only code in the unit-test binary.
#[cfg(test)]
fn init_text() -> (usize, usize, usize) {
    (0, 0, 0)
}

/// The boot-only code's range `[begin, end)`, and the end of what is
/// dropped: the rest of the fault-around window that `end` lies in. A
/// boot-only function there mapped the whole window, the code after the
/// range included, and whatever of that runs later faults its pages back.
/// The code's last page bounds it, so no other mapping is touched.
#[cfg(not(test))]
fn init_text() -> (usize, usize, usize) {
    let (begin, end) = (
        &raw const __kmem_init_begin as usize,
        &raw const __kmem_init_end as usize,
    );
    let text_end = (&raw const etext as usize).next_multiple_of(4096);
    (
        begin,
        end,
        end.next_multiple_of(FAULT_AROUND_BYTES).min(text_end).max(end),
    )
}

/// Drops the boot-only code's pages from the process and says so in the
/// machine's log, as the kernel does. Called once, by the booting thread,
/// after the boot and from code outside the range (so that returning does
/// not fault it back in).
pub(crate) fn free_initmem(k: &Kmem<HostedPlatform>) {
    let (begin, end, drop_end) = init_text();
    if end <= begin {
        return;
    }
    // The message first: formatting it runs code that may lie in the range.
    k.printk(format_args!(
        "Freeing unused kernel image (initmem) memory: {}K",
        (end - begin) >> 10
    ));
    // No thread runs in the boot-only part (the boot, its only user, has
    // returned; other threads wait for it), nor in the rest of the range
    // beyond `boot`, this function and their callers.
    // SAFETY: page-aligned, private, never-written code of this library:
    // dropping its pages loses nothing (a fetch reads them from the file).
    unsafe { libc::madvise(begin as *mut libc::c_void, drop_end - begin, libc::MADV_DONTNEED) };
}

/// The boot stack's size: the boot's deepest frames take some 40 kB in an
/// optimized build and more in a debug one; only the pages touched cost
/// memory, and only until the boot returns.
#[cfg(target_arch = "x86_64")]
const BOOT_STACK_BYTES: usize = 1 << 20;

/// The boot's stack, in the library's zeroed statics (after the others:
/// `cold-bss.ld`).
#[cfg(target_arch = "x86_64")]
#[repr(C, align(4096))]
struct BootStack(core::cell::UnsafeCell<[u8; BOOT_STACK_BYTES]>);

#[cfg(target_arch = "x86_64")]
// SAFETY: only the booting thread uses it, once (`run_on_boot_stack`).
unsafe impl Sync for BootStack {}

#[cfg(target_arch = "x86_64")]
#[link_section = ".bss.kmem_cold"]
static BOOT_STACK: BootStack = BootStack(core::cell::UnsafeCell::new([0; BOOT_STACK_BYTES]));

/// Runs `f` (the boot) on a stack of its own, whose pages are dropped
/// (`MADV_DONTNEED`) when it returns, so that its frames (the e820 map, the
/// machine structure and the command line on their way into place: some
/// 20 kB more than a small program's own stack) leave nothing resident on
/// the stack of the thread that happened to call `malloc` first, nor here.
/// The stack is a static of the library, not a mapping of its own: the
/// `mmap`, `mprotect` (a guard page) and `munmap` of one took some 20 µs of
/// every boot, the drop takes 4. Without a guard page, 1 MiB is 25 times
/// what the boot uses.
///
/// The switch is two moves of the stack pointer around a call. The boot
/// does not inspect its stack, and a signal handler that interrupts it runs
/// on this stack as on any other; `f` must not unwind (the library is built
/// with `panic = "abort"`, and a panic in an `extern "C"` function aborts).
/// The boot runs once per process, on one thread (`bootstrap::boot`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn run_on_boot_stack(f: extern "C" fn()) {
    let base = BOOT_STACK.0.get() as usize;
    let top = base + BOOT_STACK_BYTES;
    // The caller's stack pointer waits in a callee-saved register across
    // the call (`f` follows the C ABI) and is restored after it; the
    // sequence clobbers what a C call may.
    // SAFETY: `top` is the 16-byte aligned end of a writable static that
    // nothing else uses (the boot runs once).
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "mov rsp, {top}",
            "call {f}",
            "mov rsp, r12",
            top = in(reg) top,
            f = in(reg) f,
            out("r12") _,
            clobber_abi("C"),
        );
    }
    // The stack's pages read as zero again afterwards, as the static started.
    // SAFETY: the boot has returned; nothing points into its stack.
    unsafe { libc::madvise(base as *mut libc::c_void, BOOT_STACK_BYTES, libc::MADV_DONTNEED) };
}

/// Elsewhere the boot runs on the caller's stack.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn run_on_boot_stack(f: extern "C" fn()) {
    f();
}
