//! The cpu freelist fast paths as restartable sequences (Linux `rseq`).
//!
//! In the kernel, SLUB's fast paths use `this_cpu_cmpxchg_double` on the
//! (freelist, tid) pair: one instruction, with no `lock` prefix, because
//! nothing else runs on the CPU while it executes. A process has no such
//! instruction, and `lock cmpxchg16b` costs some twenty cycles on each side of
//! an alloc/free pair. Restartable sequences give a process the kernel's
//! guarantee instead: a short instruction sequence registered with the kernel
//! (start, commit, abort address) is either run to its final store without
//! the thread being preempted, migrated or signalled, or abandoned at the
//! abort address and retried. Inside one, per-CPU data can be updated with
//! plain loads and stores, as tcmalloc's per-CPU caches and librseq do.
//!
//! **The sequences.** `pop` reads the CPU id from the thread's `struct rseq`,
//! finds this CPU's `kmem_cache_cpu`, and replaces the freelist head with the
//! object's free pointer. `push` checks that the object lies in the cpu
//! slab (the same address range check as the CAS fast path) and is not the
//! current head (the naive double-free check), writes the free pointer and
//! makes the object the head. The final store commits. No tid is bumped: in
//! rseq mode nothing else changes the freelist while a sequence runs.
//!
//! **Who else writes the freelist.** Slow paths, under the cpu structure's
//! `lock`, possibly from a thread that runs on another CPU (it migrated, or
//! it flushes every CPU's cpu slab). They first set `stopped`, which every
//! sequence checks after reading the CPU id, and then make sure no sequence
//! that read `stopped == 0` can still commit: if the slow path now runs on
//! that CPU, every such sequence was preempted (and will restart, and see
//! `stopped`) or has committed; otherwise the platform's `rseq_fence`
//! (`membarrier`) restarts them. Then the slow path owns the freelist and
//! changes it with plain stores; clearing `stopped` at the end lets the
//! sequences run again. A sequence that finds `stopped` falls back to the
//! slow path (alloc) or to the slab's own freelist (free). Caches with
//! `init_on_alloc`/`init_on_free` hooks keep a second `stopped` bit set for
//! good, so their hooks run in the slow paths and the sequences test nothing
//! else.
//!
//! `this_cpu_inc` is the same mechanism for a per-CPU counter (mempool's
//! fast-path statistics): the add is the commit.
//!
//! A machine uses either these sequences or the CAS fast paths for all its
//! threads, decided at boot (`Platform::rseq_usable`, `kmem.rseq=`): a CAS
//! from another CPU could otherwise land between a sequence's load and its
//! commit. A thread without a registered area (its `cpu_id` is negative)
//! fails the CPU bound check and takes the slow paths.
//!
//! The abort handler is preceded by the signature glibc registers
//! (`RSEQ_SIG`, `0x53053053`, after the three bytes of a `ud1` as librseq
//! lays it out), as the kernel checks before jumping there.

use super::KmemCacheCpu;
use core::mem::{offset_of, size_of};

/// Offset of `cpu_id` in `struct rseq`.
pub const RSEQ_CPU_ID: usize = 4;
/// Offset of `rseq_cs` in `struct rseq`.
pub const RSEQ_CS: usize = 8;

/// `stopped` bit: a slow path owns the freelist.
pub(crate) const STOP_SLOW_PATH: u32 = 1;
/// `stopped` bit, for good: the cache has allocation or free hooks
/// (`init_on_alloc`, `init_on_free`), which the slow paths run.
pub(crate) const STOP_HOOKS: u32 = 2;

/// log2 of the size of a cpu structure: the sequences index with a shift.
const CPU_SHIFT: u32 = size_of::<KmemCacheCpu>().trailing_zeros();
const _: () = assert!(size_of::<KmemCacheCpu>() == 1 << CPU_SHIFT);

/// One restartable sequence, in AT&T syntax: label 6 (re)starts it by
/// publishing its descriptor (label 5) in `rseq_cs`; 2..3 is the critical
/// section, which begins by reading `cpu_id` into `{c}` and leaving for the
/// fallback (label 7, out of line) if it is not below `{nr}`; `body` must end
/// with the committing store. Label 4, after the signature, is the abort
/// address: it restarts at 6. `pre` runs before each start; `fallback` ends
/// by jumping back to 3. Operands `area` (the rseq offset from the FS base),
/// `nr`, `c` and `t` must be among `ops`.
#[cfg(target_arch = "x86_64")]
macro_rules! rseq_asm {
    (pre: [$($pre:literal),*], body: [$($body:literal),*], fallback: [$($fb:literal),*], $($ops:tt)*) => {
        core::arch::asm!(
            "6:",
            $($pre,)*
            "leaq 5f(%rip), {t}",
            "movq {t}, %fs:{cs}({area})",
            "2:",
            "movl %fs:{cpuid}({area}), {c:e}",
            "cmpq {nr}, {c}",
            "jae 7f",
            $($body,)*
            "3:",
            ".pushsection .data.rel.ro.kmem_rseq, \"aw\"",
            ".balign 32",
            "5:",
            ".long 0, 0",
            ".quad 2b, 3b - 2b, 4f",
            ".popsection",
            ".pushsection .text.unlikely.kmem_rseq, \"ax\"",
            "7:",
            $($fb,)*
            ".byte 0x0f, 0xb9, 0x3d",
            ".long 0x53053053",
            "4:",
            "jmp 6b",
            ".popsection",
            cs = const RSEQ_CS,
            cpuid = const RSEQ_CPU_ID,
            $($ops)*
            options(att_syntax, nostack),
        )
    };
}

/// Result of [`push`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Push {
    /// The object is on this CPU's freelist.
    Done,
    /// Not done: the object is not in the cpu slab, the fast paths are
    /// stopped, or the thread has no CPU id. Take the slow path.
    Fallback,
    /// The object is already the head of the cpu freelist.
    DoubleFree,
}

/// Pop the head of the calling CPU's freelist; null if it is empty or the
/// fast paths are stopped (take the slow path).
///
/// # Safety
/// `area` is the offset of the calling thread's registered `struct rseq`
/// from its FS base (x86-64 Linux keeps thread-local data there); `cpus` the
/// cache's array of `nr_cpus` cpu structures; objects on the freelists are
/// objects of the cache whose free pointer is at `fp_off`; and the machine is
/// in rseq mode (see the module documentation).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn pop(area: isize, cpus: *const KmemCacheCpu, nr_cpus: usize, fp_off: usize) -> *mut u8 {
    let obj: *mut u8;
    // SAFETY: caller contract. The sequence only reads the thread's rseq
    // area, this CPU's cpu structure and the head object's free pointer (slab
    // memory stays mapped), and commits with one store to the freelist head.
    // Labels: 6 sets rseq_cs, 2..3 is the critical section, 4 the abort
    // address, 7 the fallback; 5 the descriptor.
    unsafe {
        rseq_asm!(
            pre: [],
            body: [
                "shlq ${shift}, {c}",
                "cmpl $0, {stopped}({cpus},{c})",
                "jne 7f",
                "movq ({cpus},{c}), {obj}",
                "testq {obj}, {obj}",
                "jz 3f",
                "movq ({obj},{fp}), {t}",
                "movq {t}, ({cpus},{c})"
            ],
            fallback: ["xorl {obj:e}, {obj:e}", "jmp 3b"],
            area = in(reg) area,
            cpus = in(reg) cpus,
            nr = in(reg) nr_cpus,
            fp = in(reg) fp_off,
            obj = out(reg) obj,
            c = out(reg) _,
            t = out(reg) _,
            shift = const CPU_SHIFT,
            stopped = const offset_of!(KmemCacheCpu, stopped),
        );
    }
    obj
}

/// Push `obj` onto the calling CPU's freelist if it lies in that CPU's cpu
/// slab.
///
/// # Safety
/// As [`pop`]; `obj` is an allocated object of the cache owned by the
/// caller.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn push(
    area: isize,
    cpus: *const KmemCacheCpu,
    nr_cpus: usize,
    fp_off: usize,
    obj: *mut u8,
) -> Push {
    let res: u32;
    // SAFETY: caller contract. Reads as `pop`; writes the object's free
    // pointer (the object is the caller's) and commits with one store to the
    // freelist head. Labels as in `pop`; 8 is the double-free exit.
    unsafe {
        rseq_asm!(
            pre: ["xorl {res:e}, {res:e}"],
            body: [
                "shlq ${shift}, {c}",
                "cmpl $0, {stopped}({cpus},{c})",
                "jne 7f",
                "movq {obj}, {t}",
                "subq {start}({cpus},{c}), {t}",
                "cmpq {bytes}({cpus},{c}), {t}",
                "jae 7f",
                "movq ({cpus},{c}), {t}",
                "cmpq {t}, {obj}",
                "je 8f",
                "movq {t}, ({obj},{fp})",
                "movq {obj}, ({cpus},{c})"
            ],
            fallback: ["movl $1, {res:e}", "jmp 3b", "8:", "movl $2, {res:e}", "jmp 3b"],
            area = in(reg) area,
            cpus = in(reg) cpus,
            nr = in(reg) nr_cpus,
            fp = in(reg) fp_off,
            obj = in(reg) obj,
            res = out(reg) res,
            c = out(reg) _,
            t = out(reg) _,
            shift = const CPU_SHIFT,
            stopped = const offset_of!(KmemCacheCpu, stopped),
            start = const offset_of!(KmemCacheCpu, slab_start),
            bytes = const offset_of!(KmemCacheCpu, slab_bytes),
        );
    }
    match res {
        0 => Push::Done,
        2 => Push::DoubleFree,
        _ => Push::Fallback,
    }
}

/// `this_cpu_inc` for per-CPU counters that only these sequences write: add
/// 1 to the word at byte `field` of the calling CPU's 64-byte slot (`slots`
/// holds `nr` of them), the add itself being the commit. False if the thread
/// has no CPU id (no registered area): nothing was done. (mempool's
/// fast-path statistics.)
///
/// # Safety
/// `area` as in [`pop`]; `slots` points to `nr` 64-byte slots written only
/// by this function while the machine is in rseq mode; `field + 8 <= 64`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn this_cpu_inc(area: isize, slots: *mut u8, nr: usize, field: usize) -> bool {
    let res: u32;
    // SAFETY: caller contract. Reads the thread's rseq area and commits with
    // one add to this CPU's slot. Labels as in `pop`.
    unsafe {
        rseq_asm!(
            pre: ["xorl {res:e}, {res:e}"],
            body: ["shlq $6, {c}", "addq {slots}, {c}", "addq $1, ({c},{field})"],
            fallback: ["movl $1, {res:e}", "jmp 3b"],
            area = in(reg) area,
            slots = in(reg) slots,
            nr = in(reg) nr,
            field = in(reg) field,
            res = out(reg) res,
            c = out(reg) _,
            t = out(reg) _,
        );
    }
    res == 0
}

/// Other architectures have no sequences here: machines there never enter
/// rseq mode.
///
/// # Safety
/// Never called.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) unsafe fn pop(_: isize, _: *const KmemCacheCpu, _: usize, _: usize) -> *mut u8 {
    core::ptr::null_mut()
}

/// See the x86-64 version.
///
/// # Safety
/// Never called.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) unsafe fn push(_: isize, _: *const KmemCacheCpu, _: usize, _: usize, _: *mut u8) -> Push {
    Push::Fallback
}

/// See the x86-64 version.
///
/// # Safety
/// Never called.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) unsafe fn this_cpu_inc(_: isize, _: *mut u8, _: usize, _: usize) -> bool {
    false
}
