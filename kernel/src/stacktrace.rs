//! Call traces by frame pointers (the kernel is built with
//! `-C force-frame-pointers=yes`): each frame's `rbp` points at the caller's
//! saved `rbp`, followed by the return address. The walk stops at a null or
//! misaligned frame, at a frame outside the kernel's identity-mapped first
//! GiB and the linear map (where kmem-allocated stacks live), or after 32
//! frames.

use crate::paging::PAGE_OFFSET;

fn plausible(fp: u64) -> bool {
    fp != 0
        && fp.is_multiple_of(8)
        && (fp + 16 <= (1 << 30)
            || (fp >= PAGE_OFFSET as u64 && fp + 16 <= crate::paging::linear_end() as u64))
}

/// Call `f` with each return address above frame `rbp`.
pub fn walk(mut rbp: u64, mut f: impl FnMut(u64)) {
    for _ in 0..32 {
        if !plausible(rbp) {
            return;
        }
        // SAFETY: `rbp` lies in mapped kernel memory (checked above) and is
        // aligned; a bad chain reads garbage words, never unmapped memory.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            return;
        }
        f(ret);
        if next <= rbp {
            return;
        }
        rbp = next;
    }
}

/// The caller's frame pointer.
#[inline(always)]
pub fn current_rbp() -> u64 {
    let rbp: u64;
    // SAFETY: reading rbp has no side effects.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    rbp
}
