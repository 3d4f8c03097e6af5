//! `linux/preempt.h`, `linux/smp.h`, `linux/kernel.h`'s `might_sleep`,
//! `linux/sched/mm.h`'s allocation scopes: the caller's execution context.
//!
//! A thread is a task. `preempt_disable()`/`get_cpu()` pin it to its CPU for
//! real (the hosted platform's per-CPU owner locks: no other thread runs a
//! pinned section on that CPU meanwhile), so plain read-modify-writes of
//! per-CPU data between `get_cpu()` and `put_cpu()` are exact — the header's
//! `this_cpu_*` operations rely on it. `in_interrupt()` is true inside
//! `kmem_run_in_hardirq`/`kmem_run_in_softirq` (kmem.h), the only interrupts a
//! process has.
//!
//! `might_sleep()` is `__might_sleep(__FILE__, __LINE__)`: from atomic
//! context it prints the kernel's "BUG: sleeping function called from invalid
//! context at file:line" report, once per call site (sites are remembered in
//! a set under a lock; the report itself goes to the machine's log).

use core::ffi::{c_char, c_int, c_uint};
use std::collections::BTreeSet;
use std::sync::Mutex;

use kmem_core::platform::task_flags::{PF_MEMALLOC, PF_MEMALLOC_NOFS, PF_MEMALLOC_NOIO};
use kmem_core::platform::{Platform, HARDIRQ_MASK, NMI_MASK};

use crate::k;

/// `void preempt_disable(void)`: pin the caller to its CPU (nests).
#[no_mangle]
pub extern "C" fn preempt_disable() {
    k().preempt_disable();
}

/// `void preempt_enable(void)`.
#[no_mangle]
pub extern "C" fn preempt_enable() {
    k().preempt_enable();
}

/// `void preempt_enable_no_resched(void)`: as `preempt_enable` (a process
/// has no resched point to skip).
#[no_mangle]
pub extern "C" fn preempt_enable_no_resched() {
    k().preempt_enable();
}

/// `int preempt_count(void)`.
#[no_mangle]
pub extern "C" fn preempt_count() -> c_int {
    k().preempt_count() as c_int
}

/// `int get_cpu(void)`: disable preemption, return the CPU the caller is
/// pinned to until `put_cpu()`.
#[no_mangle]
pub extern "C" fn get_cpu() -> c_int {
    k().get_cpu() as c_int
}

/// `void put_cpu(void)`.
#[no_mangle]
pub extern "C" fn put_cpu() {
    k().put_cpu();
}

/// `int smp_processor_id(void)`: the caller's CPU (stable while pinned).
#[no_mangle]
pub extern "C" fn smp_processor_id() -> c_int {
    k().platform.smp_processor_id() as c_int
}

/// `int raw_smp_processor_id(void)`: the CPU the caller ran on a moment ago.
#[no_mangle]
pub extern "C" fn raw_smp_processor_id() -> c_int {
    k().platform.raw_smp_processor_id() as c_int
}

/// `bool in_interrupt(void)`: hardirq, softirq or NMI context, or bottom
/// halves disabled.
#[no_mangle]
pub extern "C" fn in_interrupt() -> bool {
    k().in_interrupt()
}

/// `bool in_irq(void)` / `in_hardirq()`.
#[no_mangle]
pub extern "C" fn in_irq() -> bool {
    k().in_hardirq()
}

/// `bool in_hardirq(void)`.
#[no_mangle]
pub extern "C" fn in_hardirq() -> bool {
    k().in_hardirq()
}

/// `bool in_softirq(void)`: serving a softirq or bottom halves disabled.
#[no_mangle]
pub extern "C" fn in_softirq() -> bool {
    k().in_softirq()
}

/// `bool in_serving_softirq(void)`.
#[no_mangle]
pub extern "C" fn in_serving_softirq() -> bool {
    k().in_serving_softirq()
}

/// `bool in_nmi(void)`.
#[no_mangle]
pub extern "C" fn in_nmi() -> bool {
    k().in_nmi()
}

/// `bool in_task(void)`: process context.
#[no_mangle]
pub extern "C" fn in_task() -> bool {
    k().in_task()
}

/// `bool in_atomic(void)`: the caller must not sleep.
#[no_mangle]
pub extern "C" fn in_atomic() -> bool {
    k().in_atomic()
}

/// `bool irqs_disabled(void)`: only inside simulated hardirq/NMI context.
#[no_mangle]
pub extern "C" fn irqs_disabled() -> bool {
    k().preempt_count() & (HARDIRQ_MASK | NMI_MASK) != 0
}

/// `void local_bh_disable(void)`.
#[no_mangle]
pub extern "C" fn local_bh_disable() {
    k().local_bh_disable();
}

/// `void local_bh_enable(void)`.
#[no_mangle]
pub extern "C" fn local_bh_enable() {
    k().local_bh_enable();
}

/// Call sites `__might_sleep` already reported.
static REPORTED: Mutex<BTreeSet<(usize, c_int)>> = Mutex::new(BTreeSet::new());

/// `void __might_sleep(const char *file, int line)` (the header's
/// `might_sleep()`): from atomic context, the kernel's report, once per site.
///
/// # Safety
/// `file` is NULL or a NUL-terminated string that lives for the process
/// (`__FILE__`).
#[no_mangle]
pub unsafe extern "C" fn __might_sleep(file: *const c_char, line: c_int) {
    let k = k();
    let pc = k.preempt_count();
    if pc == 0 {
        return;
    }
    let first = REPORTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((file as usize, line));
    if !first {
        return;
    }
    let file = if file.is_null() {
        "?".into()
    } else {
        // SAFETY: caller's contract.
        unsafe { core::ffi::CStr::from_ptr(file) }.to_string_lossy()
    };
    let mut comm = [0u8; 16];
    let n = k.platform.current_comm(&mut comm);
    let comm = core::str::from_utf8(&comm[..n]).unwrap_or("?");
    k.printk(format_args!(
        "BUG: sleeping function called from invalid context at {file}:{line}"
    ));
    k.printk(format_args!(
        "in_atomic(): {}, irqs_disabled(): {}, non_block: 0, pid: {}, name: {}",
        (pc != 0) as u32,
        (pc & (HARDIRQ_MASK | NMI_MASK) != 0) as u32,
        k.platform.current_pid(),
        comm
    ));
    k.printk(format_args!("preempt_count: {pc:x}, expected: 0"));
    k.platform.dump_stack();
}

/// `memalloc_*_save` with the kernel's return value: the previous state of
/// the task flag (0 if it was clear), which `memalloc_*_restore` puts back.
fn flags_save(flag: u32) -> c_uint {
    let k = k();
    let old = k.platform.current_flags() & flag;
    k.memalloc_flags_save(flag);
    old
}

/// `memalloc_*_restore(flags)`: the flag as it was when `flags` was saved.
fn flags_restore(flag: u32, flags: c_uint) {
    if flags & flag == 0 {
        k().memalloc_flags_restore(flag);
    }
}

/// `unsigned int memalloc_noio_save(void)`: allocations of this task
/// behave as `GFP_NOIO` until the matching restore. Returns the previous
/// state (`current->flags & PF_MEMALLOC_NOIO`), as the kernel's.
#[no_mangle]
pub extern "C" fn memalloc_noio_save() -> c_uint {
    flags_save(PF_MEMALLOC_NOIO)
}

/// `void memalloc_noio_restore(unsigned int flags)`.
#[no_mangle]
pub extern "C" fn memalloc_noio_restore(flags: c_uint) {
    flags_restore(PF_MEMALLOC_NOIO, flags)
}

/// `unsigned int memalloc_nofs_save(void)`: allocations behave as `GFP_NOFS`.
#[no_mangle]
pub extern "C" fn memalloc_nofs_save() -> c_uint {
    flags_save(PF_MEMALLOC_NOFS)
}

/// `void memalloc_nofs_restore(unsigned int flags)`.
#[no_mangle]
pub extern "C" fn memalloc_nofs_restore(flags: c_uint) {
    flags_restore(PF_MEMALLOC_NOFS, flags)
}

/// `unsigned int memalloc_noreclaim_save(void)`: this task frees memory
/// (`PF_MEMALLOC`): it may use the reserves and does not reclaim.
#[no_mangle]
pub extern "C" fn memalloc_noreclaim_save() -> c_uint {
    flags_save(PF_MEMALLOC)
}

/// `void memalloc_noreclaim_restore(unsigned int flags)`.
#[no_mangle]
pub extern "C" fn memalloc_noreclaim_restore(flags: c_uint) {
    flags_restore(PF_MEMALLOC, flags)
}
