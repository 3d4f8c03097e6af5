//! TLB shootdown (`flush_tlb_kernel_range` across CPUs).
//!
//! The vmalloc lazy purge unmaps nothing itself — `unmap_pages` cleared the
//! PTEs earlier — but before a purged range is handed out again every CPU
//! must drop its cached translations of it. The flushing CPU:
//!
//! 1. invalidates its own TLB for the range;
//! 2. takes `FLUSH_LOCK` (one shootdown at a time; while it spins it serves
//!    the request of the current holder, which may be waiting for it);
//! 3. publishes the range, then bumps `FLUSH_GEN` (sequentially consistent);
//! 4. reads `ONLINE_MASK` and sends `CALL_FUNCTION_VECTOR` to every other
//!    CPU in it;
//! 5. waits until each of them has set its `tlb_done_gen` to the new
//!    generation, then releases the lock.
//!
//! A target serves the request in the IPI handler, or — when it is spinning
//! with interrupts masked, for instance on the very spinlock the flushing
//! CPU holds (`vmap_area_lock` is taken with `spin_lock_irqsave`) — from its
//! spin loop (`Platform::cpu_relax` calls `service`). Serving means: if
//! `FLUSH_GEN` is ahead of my `tlb_done_gen`, flush the published range
//! (`invlpg` per page, or a full CR3 reload above 32 pages) and store the
//! generation. The range is stable while anyone has not acknowledged it,
//! because its sender holds the lock until all have.
//!
//! A CPU that parks (halts for good) clears its bit in `ONLINE_MASK` and then
//! serves once more; with both sides sequentially consistent, a sender
//! either does not see the bit or the parking CPU sees the generation.

use crate::apic;
use crate::arch;
use crate::idt::CALL_FUNCTION_VECTOR;
use crate::percpu;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

static FLUSH_LOCK: AtomicBool = AtomicBool::new(false);
static FLUSH_GEN: AtomicU64 = AtomicU64::new(0);
static FLUSH_START: AtomicUsize = AtomicUsize::new(0);
static FLUSH_END: AtomicUsize = AtomicUsize::new(0);
/// CPUs that take part in shootdowns.
static ONLINE_MASK: AtomicU64 = AtomicU64::new(0);
/// `ktest.no_shootdown`: flush locally only — the bug the shootdown test
/// must catch.
pub static BROKEN_NO_SHOOTDOWN: AtomicBool = AtomicBool::new(false);
/// Shootdowns sent (one per remote flush request, counted once).
pub static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);
/// IPIs sent for shootdowns.
pub static SHOOTDOWN_IPIS: AtomicU64 = AtomicU64::new(0);

/// Above this many pages a flush reloads CR3 instead of `invlpg` per page
/// (`tlb_single_page_flush_ceiling`).
const FLUSH_CEILING: usize = 33;

fn flush_local(start: usize, end: usize) {
    if end <= start {
        return;
    }
    let pages = (end - start).div_ceil(4096);
    if pages > FLUSH_CEILING {
        arch::flush_tlb_local();
    } else {
        for i in 0..pages {
            arch::invlpg(start + i * 4096);
        }
    }
}

/// Join the shootdown set (a CPU coming online).
pub fn cpu_online(cpu: usize) {
    percpu::area(cpu)
        .tlb_done_gen
        .store(FLUSH_GEN.load(Ordering::SeqCst), Ordering::SeqCst);
    ONLINE_MASK.fetch_or(1 << cpu, Ordering::SeqCst);
}

/// Leave the shootdown set (a CPU about to halt for good).
pub fn cpu_offline(cpu: usize) {
    ONLINE_MASK.fetch_and(!(1 << cpu), Ordering::SeqCst);
    service();
}

/// Serve a pending shootdown addressed to this CPU.
pub fn service() {
    let gen = FLUSH_GEN.load(Ordering::SeqCst);
    let a = percpu::this_area();
    if a.tlb_done_gen.load(Ordering::Relaxed) >= gen {
        return;
    }
    let (s, e) = (
        FLUSH_START.load(Ordering::Acquire),
        FLUSH_END.load(Ordering::Acquire),
    );
    flush_local(s, e);
    a.tlb_flushes.fetch_add(1, Ordering::Relaxed);
    a.tlb_done_gen.store(gen, Ordering::SeqCst);
}

/// `flush_tlb_kernel_range(start, end)` on every online CPU.
pub fn flush_kernel_range(start: usize, end: usize) {
    flush_local(start, end);
    if BROKEN_NO_SHOOTDOWN.load(Ordering::Relaxed) {
        return;
    }
    let me = percpu::this_cpu();
    while FLUSH_LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        service();
        arch::pause();
    }
    // The mask without me: alone, nothing more to do.
    if ONLINE_MASK.load(Ordering::SeqCst) & !(1 << me) == 0 {
        FLUSH_LOCK.store(false, Ordering::Release);
        return;
    }
    FLUSH_START.store(start, Ordering::Release);
    FLUSH_END.store(end, Ordering::Release);
    let gen = FLUSH_GEN.fetch_add(1, Ordering::SeqCst) + 1;
    // I flushed already: do not serve my own request.
    percpu::area(me).tlb_done_gen.store(gen, Ordering::SeqCst);
    let targets = ONLINE_MASK.load(Ordering::SeqCst) & !(1 << me);
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    for cpu in 0..64 {
        if targets & (1 << cpu) != 0 {
            apic::send_ipi(percpu::area(cpu).apic_id, CALL_FUNCTION_VECTOR);
            SHOOTDOWN_IPIS.fetch_add(1, Ordering::Relaxed);
        }
    }
    for cpu in 0..64 {
        if targets & (1 << cpu) != 0 {
            while percpu::area(cpu).tlb_done_gen.load(Ordering::SeqCst) < gen {
                arch::pause();
            }
        }
    }
    FLUSH_LOCK.store(false, Ordering::Release);
}
