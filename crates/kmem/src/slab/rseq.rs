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
//! it flushes every CPU's cpu slab). They first stop the sequences, and then
//! make sure no sequence that started before can still commit: if the slow
//! path now runs on that CPU, every such sequence was preempted (and will
//! restart, and see the stop) or has committed; otherwise the platform's
//! `rseq_fence` (`membarrier`) restarts them. Then the slow path owns the
//! freelist and changes it with plain stores; restarting the sequences at
//! the end publishes its work. A stopped sequence falls back to the slow
//! path (alloc) or to the slab's own freelist (free).
//!
//! **Stopping by bounds.** The stop costs the sequences nothing: as in
//! tcmalloc's per-CPU caches, it is a set of bounds each sequence compares
//! with anyway, and that no sequence writes, so a commit racing with the
//! stop cannot undo it. `pop` takes the freelist's head if it is above
//! `floor` (`FLOOR_RUNNING`, 1, while running: any object), else the
//! sheaf's newest object if the sheaf's top is above `sheaf_floor` (its
//! second slot); `sheaf_pop` takes the sheaf's alone; `push` takes an
//! object inside `[slab_start, slab_start + rseq_bytes)`; `sheaf_push`
//! fills the sheaf up to `sheaf_limit` (the end of its capacity).
//! Stopped, `floor` and `sheaf_floor` are `FLOOR_STOPPED` (`i64::MAX`,
//! above every user-space address) and the other two are 0
//! (`KmemCacheCpu::rseq_stop`); restarting copies the cpu slab's size and
//! the installed sheaf's bounds back (`rseq_start`). The
//! `stopped` bits say why: `STOP_SLOW_PATH` while a slow path runs; caches
//! with `init_on_alloc`/`init_on_free` hooks keep `STOP_HOOKS` for good, so
//! their hooks run in the slow paths and the sequences test nothing else.
//!
//! The per-CPU arrays of free objects beside the freelists (`sheaf.rs`)
//! use the same mechanism: `pop` takes the sheaf's newest object when the
//! freelist is empty, `sheaf_pop` (`kmalloc`'s) before it, and `sheaf_push`
//! puts an object there. The sheaf's size is kept in the cpu structure as
//! the address of its first free slot (`sheaf_top`), so the sequences read
//! and write the slots through it with no load of the sheaf pointer: the
//! commit adds one slot to it or subtracts one (one read-modify-write
//! instruction, which an interrupt cannot split), or `pop` stores the new
//! top.
//!
//! `this_cpu_inc` is the same mechanism for a per-CPU counter (mempool's
//! fast-path statistics): the add is the commit.
//!
//! A machine uses either these sequences or the CAS fast paths for all its
//! threads, decided at boot (`Platform::rseq_usable`, `kmem.rseq=`): a CAS
//! from another CPU could otherwise land between a sequence's load and its
//! commit. A thread without a registered area (its `cpu_id` is negative)
//! takes the slow paths.
//!
//! **No mode test.** On a platform whose threads always have an area
//! (`Platform::RSEQ_AREA`, registered or not) the fast paths run the
//! sequences whatever the mode: a machine in CAS mode keeps a third
//! `stopped` bit set for good (`STOP_CAS`, bounds stopped), so its sequences always fall
//! back, and the out-of-line fallback tries the CAS fast path. The rseq
//! fast paths thus test nothing the CAS ones do not. Nor do they check the
//! CPU id against a bound: every cache's cpu array has entries for all the
//! ids an area can show (-2 and -1 for an unregistered one, host CPUs
//! beyond the machine's), the ones that are not the machine's CPUs stopped
//! for good (`STOP_NO_CPU`). Platforms without an area (a bare-metal kernel)
//! compile the CAS fast paths alone.
//!
//! The abort handler is preceded by the signature glibc registers
//! (`RSEQ_SIG`, `0x53053053`, after the three bytes of a `ud1` as librseq
//! lays it out), as the kernel checks before jumping there.

use super::{KmemCache, KmemCacheCpu, CPU_ARRAY_OFFSET};
use core::mem::{offset_of, size_of};

/// Offset of `cpu_id` in `struct rseq`.
pub const RSEQ_CPU_ID: usize = 4;
/// Offset of `rseq_cs` in `struct rseq`.
pub const RSEQ_CS: usize = 8;

/// `KmemCacheCpu::floor` and `sheaf_floor` of stopped sequences: above
/// every user-space address (x86-64 user space ends below 2^57), so no
/// freelist head and no sheaf top is above it.
pub(crate) const FLOOR_STOPPED: usize = i64::MAX as usize;
/// `KmemCacheCpu::floor` of running sequences: below every object address.
/// (A running `sheaf_floor` is the sheaf's second slot: the allocation
/// sequences leave a sheaf's last object alone, see [`pop`].)
pub(crate) const FLOOR_RUNNING: usize = 1;

/// `stopped` bit: a slow path owns the freelist.
pub(crate) const STOP_SLOW_PATH: u32 = 1;
/// `stopped` bit, for good: the cache has allocation or free hooks
/// (`init_on_alloc`, `init_on_free`), which the slow paths run.
pub(crate) const STOP_HOOKS: u32 = 2;
/// `stopped` bit, for good: the machine's fast paths are `cmpxchg16b` (it is
/// not in rseq mode); the fallbacks take them.
pub(crate) const STOP_CAS: u32 = 4;
/// `stopped` bit, for good: a cpu array entry for a CPU id that is not the
/// machine's (an unregistered area's -1 or -2, or a host CPU beyond the
/// machine's). Sequences reading such an id fall back.
pub(crate) const STOP_NO_CPU: u32 = 8;
/// Entries of a cpu array before CPU 0: for the negative CPU ids of an
/// unregistered area (`RSEQ_CPU_ID_UNINITIALIZED`, `..._REGISTRATION_FAILED`).
pub(crate) const NEGATIVE_CPU_IDS: usize = 2;

/// Offset of CPU 0's structure from its cache: the cpu array follows the
/// cache in the same object (`CPU_ARRAY_OFFSET`), after the stopped entries
/// of the negative CPU ids.
const CPU0: usize = CPU_ARRAY_OFFSET + NEGATIVE_CPU_IDS * size_of::<KmemCacheCpu>();

/// log2 of the size of a cpu structure: the sequences index with a shift.
const CPU_SHIFT: u32 = size_of::<KmemCacheCpu>().trailing_zeros();
const _: () = assert!(size_of::<KmemCacheCpu>() == 1 << CPU_SHIFT);

/// One restartable sequence, in AT&T syntax: label 6 (re)starts it by
/// publishing its descriptor (label 5) in `rseq_cs`; 2..3 is the critical
/// section: `body`, which may leave for the fallback (label 7, out of line)
/// and must end with the committing store. Label 4, after the signature, is
/// the abort address: it restarts at 6. `pre` runs before each start;
/// `fallback` leaves label 7 (back to 3, or to a Rust label). `t` names a
/// scratch register (`"{t}"` for an operand `t`, or a fixed one); operand
/// `area` (the rseq offset from the FS base) must be among `ops`.
#[cfg(target_arch = "x86_64")]
macro_rules! rseq_asm {
    (t: $t:literal, pre: [$($pre:literal),*], body: [$($body:expr),*], fallback: [$($fb:literal),*], $($ops:tt)*) => {
        core::arch::asm!(
            "6:",
            $($pre,)*
            concat!("leaq 5f(%rip), ", $t),
            concat!("movq ", $t, ", %fs:{cs}({area})"),
            "2:",
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
            $($ops)*
            options(att_syntax, nostack),
        )
    };
}
/// Pieces the sequences share, each a `body` entry of [`rseq_asm`] (a string
/// of instructions). `this_cpu_index`: the calling CPU's index into a
/// per-CPU array of `1 << shift`-byte entries, in %rcx (operands `area`,
/// `cpuid`, `shift`).
#[cfg(target_arch = "x86_64")]
macro_rules! this_cpu_index {
    () => {
        "movslq %fs:{cpuid}({area}), %rcx\nshlq ${shift}, %rcx"
    };
}
/// `cpu_slab_range`: compares `obj`'s offset in this CPU's cpu slab with
/// the slab's size (below: in it), %rdx scratch.
#[cfg(target_arch = "x86_64")]
macro_rules! cpu_slab_range {
    () => {
        "movq {obj}, %rdx\nsubq {start}({cache},%rcx), %rdx\ncmpq {bytes}({cache},%rcx), %rdx"
    };
}
/// `freelist_link`: `obj`'s free pointer set to the freelist's head (in
/// %rdx), or the naive double-free check's exit.
#[cfg(target_arch = "x86_64")]
macro_rules! freelist_link {
    () => {
        "movq {fl}({cache},%rcx), %rdx\ncmpq %rdx, {obj}\nje {double}\nmovq %rdx, ({obj},{fp})"
    };
}
/// `sheaf_slot`: `obj` written to the sheaf's first free slot (its address
/// in %rax), or the fallback if the sheaf is full, or the naive double-free
/// check's exit.
#[cfg(target_arch = "x86_64")]
macro_rules! sheaf_slot {
    () => {
        "movq {top}({cache},%rcx), %rax\ncmpq {limit}({cache},%rcx), %rax\njae 7f\ncmpq {obj}, -8(%rax)\nje {double}\nmovq {obj}, (%rax)"
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use this_cpu_index;

/// The page allocator's per-CPU hot arrays use the same sequences
/// (`page_alloc/pcp_hot.rs`).
#[cfg(target_arch = "x86_64")]
pub(crate) use rseq_asm;

impl<P: crate::platform::Platform> crate::machine::Kmem<P> {
    /// After a slow path stored a stop mark that CPU `cpu`'s sequences test
    /// (a cpu structure's `stopped`, a hot page array's stop bit): make sure
    /// no sequence that read the state before the store can still commit.
    /// No hardware fence is needed if we now run on `cpu`: its sequences run
    /// after ours in this CPU's program order (or migration's barriers), and
    /// one that was interrupted restarts; otherwise `Platform::rseq_fence`
    /// restarts those running there.
    pub(crate) fn rseq_stop_sync(&self, cpu: usize) {
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        if self.platform.raw_smp_processor_id() != cpu {
            self.platform.rseq_fence(cpu);
        }
    }
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

/// Pop the head of the calling CPU's freelist of cache `s`, or, if the
/// freelist is empty, the newest object of its sheaf unless that is the
/// sheaf's last (`sheaf.rs`; a CPU without one has the empty `no_sheaf()`);
/// null if there is none or the fast paths are stopped (take the fallback).
///
/// Why not the last one: a CPU whose freelist is empty and whose sheaf
/// holds one object would otherwise live off that object. After a thread
/// migrated, a loop of one allocation and one free would reuse forever the
/// object it freed there, which another CPU allocated, a cache line away
/// from the object another thread keeps reusing on that CPU (Hoard's
/// cache-thrash: 3.5 times slower in about one run of five before this
/// rule). Declined, the allocation takes a full sheaf from the barn, giving
/// that one object back to its slab, or the slow path gives the CPU a cpu
/// slab of its own.
///
/// # Safety
/// `area` is the offset of every thread's `struct rseq` from its FS base
/// (x86-64 Linux keeps thread-local data there; registered or not); `s` is a
/// live cache of a platform with such areas (`Platform::RSEQ_AREA`), whose
/// cpu array follows it in its object (`CPU_ARRAY_OFFSET`, CPU 0 at `CPU0`)
/// with an entry for every CPU id such an area can show
/// (`Kmem::cpu_array_layout`),
/// and the objects on its freelists have their free pointer at `s.offset`;
/// the cache's sheaves are changed only by these sequences and by slow
/// paths that stop them; the machine is in rseq mode or has `STOP_CAS` set
/// in every cpu structure (see the module documentation).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn pop(area: isize, s: *const KmemCache) -> *mut u8 {
    let obj: *mut u8;
    // The sequence only reads the thread's rseq area, the cache, this CPU's cpu structure, the head
    // object's free pointer (slab memory stays mapped) or the sheaf (a page that stays while it is
    // installed), and commits with one store. Labels: 6 sets rseq_cs, 2..3 is the critical section, 4 the
    // abort address, 7 the fallback; 5 the descriptor; 10 the freelist's case, 9 the commit. As SLUB's
    // `prefetch_freepointer`, the freelist's case prefetches the new head's free pointer for writing: the
    // next allocation reads it, and its caller writes the object; objects on a slab's freelist have often
    // left the cache since they were freed (a prefetch never faults, and the end of the list is 0 + fp).
    // SAFETY: caller contract.
    unsafe {
        rseq_asm!(
            t: "{t}",
            pre: [],
            body: [
                "movslq %fs:{cpuid}({area}), {c}",
                "shlq ${shift}, {c}",
                "movq {fl}({cache},{c}), {obj}",
                "cmpq {obj}, {floor}({cache},{c})",
                "jb 10f",
                "movq {top}({cache},{c}), {t}",
                "cmpq {sfloor}({cache},{c}), {t}",
                "jbe 7f",
                "movq -8({t}), {obj}",
                "subq $8, {t}",
                "leaq {top}({cache},{c}), {addr}",
                "jmp 9f",
                "10:",
                "movq ({obj},{fp}), {t}",
                "prefetchw ({t},{fp})",
                "leaq {fl}({cache},{c}), {addr}",
                "9:",
                "movq {t}, ({addr})"
            ],
            fallback: ["xorl {obj:e}, {obj:e}", "jmp 3b"],
            area = in(reg) area,
            cache = in(reg) s,
            fl = const CPU0 + offset_of!(KmemCacheCpu, fl),
            fp = in(reg) (*s).offset,
            obj = out(reg) obj,
            c = out(reg) _,
            t = out(reg) _,
            addr = out(reg) _,
            cpuid = const RSEQ_CPU_ID,
            shift = const CPU_SHIFT,
            floor = const CPU0 + offset_of!(KmemCacheCpu, floor),
            top = const CPU0 + offset_of!(KmemCacheCpu, sheaf_top),
            sfloor = const CPU0 + offset_of!(KmemCacheCpu, sheaf_floor),
        );
    }
    obj
}

/// Pop the newest object of the calling CPU's sheaf of cache `s` unless
/// that is the sheaf's last (see [`pop`]); null if there is none or the
/// fast paths are stopped. The allocation sequence of `kmalloc`, whose
/// frees (`kfree`) go to the sheaf first: the sheaf's order, as Linux 6.18
/// has it, keeps both sequences on the same structure whatever mix of
/// sizes a program allocates, so their branches go the same way.
///
/// # Safety
/// As [`pop`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn sheaf_pop(area: isize, s: *const KmemCache) -> *mut u8 {
    let obj: *mut u8;
    // The sequence only reads the thread's rseq area, this CPU's cpu structure and the sheaf's slot below
    // its top (a page that stays while it is installed), and commits by moving the top down one slot. Labels
    // as in `pop`.
    // SAFETY: caller contract.
    unsafe {
        rseq_asm!(
            t: "{obj}",
            pre: [],
            body: [
                "movslq %fs:{cpuid}({area}), {c}",
                "shlq ${shift}, {c}",
                "movq {top}({cache},{c}), {n}",
                "cmpq {sfloor}({cache},{c}), {n}",
                "jbe 7f",
                "movq -8({n}), {obj}",
                "subq $8, {top}({cache},{c})"
            ],
            fallback: ["xorl {obj:e}, {obj:e}", "jmp 3b"],
            area = in(reg) area,
            cache = in(reg) s,
            obj = out(reg) obj,
            c = out(reg) _,
            n = out(reg) _,
            cpuid = const RSEQ_CPU_ID,
            shift = const CPU_SHIFT,
            top = const CPU0 + offset_of!(KmemCacheCpu, sheaf_top),
            sfloor = const CPU0 + offset_of!(KmemCacheCpu, sheaf_floor),
        );
    }
    obj
}

/// Push `obj` onto the calling CPU's freelist of cache `s` if it lies in
/// that CPU's cpu slab (its address is in `[slab_start, slab_start +
/// rseq_bytes)`, an empty range while the sequences are stopped) and is not
/// the freelist's head (the naive double-free check of `set_freepointer`).
///
/// # Safety
/// As [`pop`]; `obj` is an allocated object of `s` owned by the caller.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn push(area: isize, s: *const KmemCache, obj: *mut u8) -> Push {
    // Reads as `pop`; writes the object's free pointer (the object is the caller's) and commits with one
    // store to the freelist head. Labels as in `pop`. An asm block with labels must have no outputs (LLVM
    // defines them on the fall-through edge only), so the two scratch registers are fixed and declared as
    // clobbers: %rcx is the CPU index, %rdx the scratch. The fallback and the double free leave for Rust
    // labels.
    // SAFETY: caller contract.
    unsafe {
        rseq_asm!(
            t: "%rdx",
            pre: [],
            body: [
                this_cpu_index!(),
                cpu_slab_range!(),
                "jae 7f",
                freelist_link!(),
                "movq {obj}, {fl}({cache},%rcx)"
            ],
            fallback: ["jmp {fallback}"],
            area = in(reg) area,
            cache = in(reg) s,
            fl = const CPU0 + offset_of!(KmemCacheCpu, fl),
            fp = in(reg) (*s).offset,
            obj = in(reg) obj,
            out("rcx") _,
            out("rdx") _,
            cpuid = const RSEQ_CPU_ID,
            shift = const CPU_SHIFT,
            start = const CPU0 + offset_of!(KmemCacheCpu, slab_start),
            bytes = const CPU0 + offset_of!(KmemCacheCpu, rseq_bytes),
            fallback = label {
                return Push::Fallback;
            },
            double = label {
                return Push::DoubleFree;
            },
        );
    }
    Push::Done
}

/// Push `obj` onto the calling CPU's sheaf of cache `s` unless the sheaf is
/// full (holds `sheaf_limit`: its capacity, 0 for a CPU without one, which
/// has `no_sheaf()`, and while the sequences are stopped), or `obj` is the newest object already there (the naive
/// double-free check).
///
/// # Safety
/// As [`pop`]; `obj` is an allocated object of `s` owned by the caller
/// (checked to be one: a sheaf takes objects of any of the cache's slabs).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn sheaf_push(area: isize, s: *const KmemCache, obj: *mut u8) -> Push {
    // Reads as `pop` does for the sheaf; writes the sheaf's first free slot (unused until the commit) and commits
    // by moving `sheaf_top` up one slot. Labels and fixed scratch registers as in `push` (%rax holds the top).
    // The word below `objects` is `capacity`, never an object, so an empty sheaf passes the double-free check.
    // SAFETY: caller contract.
    unsafe {
        rseq_asm!(
            t: "%rdx",
            pre: [],
            body: [
                this_cpu_index!(),
                sheaf_slot!(),
                "addq $8, {top}({cache},%rcx)"
            ],
            fallback: ["jmp {fallback}"],
            area = in(reg) area,
            cache = in(reg) s,
            obj = in(reg) obj,
            out("rax") _,
            out("rcx") _,
            out("rdx") _,
            cpuid = const RSEQ_CPU_ID,
            shift = const CPU_SHIFT,
            top = const CPU0 + offset_of!(KmemCacheCpu, sheaf_top),
            limit = const CPU0 + offset_of!(KmemCacheCpu, sheaf_limit),
            fallback = label {
                return Push::Fallback;
            },
            double = label {
                return Push::DoubleFree;
            },
        );
    }
    Push::Done
}

/// `kmem_cache_free`'s sequence: [`push`] if `obj` is an object start of
/// the calling CPU's cpu slab of `s` (`s.kfree_test` of its offset, as
/// below); otherwise [`sheaf_push`] once `kfree`'s inline
/// check (`kmalloc::slab_object_inline`) says `obj` is an object of `s`:
/// its page in `k`'s linear map is a slab page of `s` (its `mapping`), and
/// its offset from the slab's first object (the page's `private`) passes
/// `s.kfree_test`. One sequence, so a free outside the cpu slab (most of a
/// batch's) reads the CPU id and starts a sequence once. Anything else
/// (the check fails, the sheaf is full, the sequences are stopped) is
/// [`Push::Fallback`]: nothing was done.
///
/// # Safety
/// As [`pop`]; `obj` is a pointer the caller frees to `s` (if it passes
/// the checks, an allocated object of `s` owned by the caller); `k` is the
/// machine of `s`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn free<P: crate::platform::Platform>(
    area: isize,
    s: *const KmemCache,
    obj: *mut u8,
    k: *const crate::machine::Kmem<P>,
) -> Push {
    use crate::machine::Kmem;
    use crate::page::{Page, PAGE_SHIFT};
    use crate::page_alloc::zone::MemMap;
    use crate::reciprocal_div::MultipleTest;
    // Reads as `push` and `sheaf_push` do, and the machine's linear-map bounds, the object's page descriptor
    // (the memmap stays) and the cache's test (`kfree_test`, which an object of the cpu slab passes too: a
    // pointer inside an object goes to the slow path, which reports it); writes the object's free pointer or the sheaf's first free slot
    // (neither is read before the commit), and commits with one store: the new freelist head or the new sheaf
    // top, whose address is in %rax and value in %rdx at label 9. Labels as in `pop`, 12 the freelist's case;
    // fixed scratch registers as in `sheaf_push`.
    // SAFETY: caller contract.
    unsafe {
        rseq_asm!(
            t: "%rdx",
            pre: [],
            body: [
                this_cpu_index!(),
                cpu_slab_range!(),
                "jb 12f",
                "movq {obj}, %rax",
                "subq {page_offset}({k}), %rax",
                "shrq ${page_shift}, %rax",
                "cmpq {max_low_pfn}({k}), %rax",
                "jae 7f",
                "shlq ${desc_shift}, %rax",
                "addq {mem_map}({k}), %rax",
                "cmpq {mapping}(%rax), {cache}",
                "jne 7f",
                "movq {private}(%rax), %rdx",
                "subq {obj}, %rdx",
                "imulq {neg_inv}({cache}), %rdx",
                "rorq ${rot}, %rdx",
                "cmpq {max}({cache}), %rdx",
                "ja 7f",
                sheaf_slot!(),
                "leaq 8(%rax), %rdx",
                "leaq {top}({cache},%rcx), %rax",
                "jmp 9f",
                "12:",
                "imulq {inv}({cache}), %rdx",
                "rorq ${rot}, %rdx",
                "cmpq {max}({cache}), %rdx",
                "ja 7f",
                freelist_link!(),
                "movq {obj}, %rdx",
                "leaq {fl}({cache},%rcx), %rax",
                "9:",
                "movq %rdx, (%rax)"
            ],
            fallback: ["jmp {fallback}"],
            area = in(reg) area,
            cache = in(reg) s,
            fl = const CPU0 + offset_of!(KmemCacheCpu, fl),
            fp = in(reg) (*s).offset,
            obj = in(reg) obj,
            k = in(reg) k,
            out("rax") _,
            out("rcx") _,
            out("rdx") _,
            cpuid = const RSEQ_CPU_ID,
            shift = const CPU_SHIFT,
            start = const CPU0 + offset_of!(KmemCacheCpu, slab_start),
            bytes = const CPU0 + offset_of!(KmemCacheCpu, rseq_bytes),
            top = const CPU0 + offset_of!(KmemCacheCpu, sheaf_top),
            limit = const CPU0 + offset_of!(KmemCacheCpu, sheaf_limit),
            page_offset = const offset_of!(Kmem<P>, page_offset),
            max_low_pfn = const offset_of!(Kmem<P>, max_low_pfn),
            mem_map = const offset_of!(Kmem<P>, map) + offset_of!(MemMap, pages),
            page_shift = const PAGE_SHIFT,
            desc_shift = const DESC_SHIFT,
            mapping = const offset_of!(Page, mapping),
            private = const offset_of!(Page, private),
            neg_inv = const offset_of!(KmemCache, kfree_test) + offset_of!(MultipleTest, neg_inv),
            inv = const offset_of!(KmemCache, kfree_test) + offset_of!(MultipleTest, inv),
            max = const offset_of!(KmemCache, kfree_test) + offset_of!(MultipleTest, max),
            rot = const MultipleTest::ROT,
            fallback = label {
                return Push::Fallback;
            },
            double = label {
                return Push::DoubleFree;
            },
        );
    }
    Push::Done
}

/// log2 of the size of a page descriptor: [`free`] indexes the memmap with
/// a shift.
const DESC_SHIFT: u32 = size_of::<crate::page::Page>().trailing_zeros();
const _: () = assert!(size_of::<crate::page::Page>() == 1 << DESC_SHIFT);

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
            t: "{t}",
            pre: ["xorl {res:e}, {res:e}"],
            body: [
                "movl %fs:{cpuid}({area}), {c:e}",
                "cmpq {nr}, {c}",
                "jae 7f",
                "shlq $6, {c}",
                "addq {slots}, {c}",
                "addq $1, ({c},{field})"
            ],
            fallback: ["movl $1, {res:e}", "jmp 3b"],
            area = in(reg) area,
            slots = in(reg) slots,
            nr = in(reg) nr,
            field = in(reg) field,
            res = out(reg) res,
            c = out(reg) _,
            t = out(reg) _,
            cpuid = const RSEQ_CPU_ID,
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
pub(crate) unsafe fn pop(_: isize, _: *const KmemCache) -> *mut u8 {
    core::ptr::null_mut()
}

/// See the x86-64 version.
///
/// # Safety
/// Never called.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) unsafe fn sheaf_pop(_: isize, _: *const KmemCache) -> *mut u8 {
    core::ptr::null_mut()
}

/// See the x86-64 version.
///
/// # Safety
/// Never called.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) unsafe fn push(_: isize, _: *const KmemCache, _: *mut u8) -> Push {
    Push::Fallback
}

/// See the x86-64 version.
///
/// # Safety
/// Never called.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) unsafe fn sheaf_push(_: isize, _: *const KmemCache, _: *mut u8) -> Push {
    Push::Fallback
}

/// See the x86-64 version.
///
/// # Safety
/// Never called.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) unsafe fn free<P: crate::platform::Platform>(
    _: isize,
    _: *const KmemCache,
    _: *mut u8,
    _: *const crate::machine::Kmem<P>,
) -> Push {
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
