//! What the local APIC timer does on every CPU while the SMP stress runs:
//! real interrupt-context allocation. Each tick, in hardirq context
//! (`preempt_count()` has `HARDIRQ_OFFSET`, interrupts masked), allocates,
//! checks and frees with `GFP_ATOMIC`: a kmalloc object of a size that
//! changes with the tick, an object of a slab cache with a constructor, and
//! an element of a mempool. Once, on one CPU, it attempts a sleeping
//! allocation (`GFP_KERNEL`) from a cache with no slab yet, which must
//! produce the kernel's "sleeping function called from invalid context"
//! report and return instead of sleeping. (kmem checks the context where an
//! allocation could sleep — when it needs pages — not on the per-CPU
//! freelist fast path, so the probe uses a cache that has none.)

use crate::boot::MAX_CPUS;
use crate::kmem;
use crate::percpu;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use kmem::mempool::Mempool;
use kmem::slab::KmemCache;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static CACHE: AtomicPtr<KmemCache> = AtomicPtr::new(core::ptr::null_mut());
static POOL: AtomicPtr<Mempool> = AtomicPtr::new(core::ptr::null_mut());
static PROBE_CACHE: AtomicPtr<KmemCache> = AtomicPtr::new(core::ptr::null_mut());
static SLEEP_PROBE: AtomicBool = AtomicBool::new(false);
/// The sleeping probe ran (and returned).
pub static SLEEP_PROBE_DONE: AtomicBool = AtomicBool::new(false);
static TIMER_ON: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Per-CPU statistics of the tick's work.
pub struct IrqStats {
    /// Successful GFP_ATOMIC kmalloc+kfree pairs.
    pub kmalloc: AtomicU64,
    /// Slab cache objects.
    pub slab: AtomicU64,
    /// Mempool elements.
    pub mempool: AtomicU64,
    /// Allocations that failed (GFP_ATOMIC may fail; counted, not fatal).
    pub failed: AtomicU64,
    /// Objects found corrupted or not constructed (fatal).
    pub bad: AtomicU64,
}

/// The statistics, by CPU.
pub static STATS: [IrqStats; MAX_CPUS] = [const {
    IrqStats {
        kmalloc: AtomicU64::new(0),
        slab: AtomicU64::new(0),
        mempool: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        bad: AtomicU64::new(0),
    }
}; MAX_CPUS];

const IRQ_OBJ: usize = 80;
const IRQ_MAGIC: u8 = 0x1c;

fn irq_ctor(p: *mut u8) {
    // SAFETY: a whole object of the cache (IRQ_OBJ bytes).
    unsafe { core::ptr::write_bytes(p, IRQ_MAGIC, IRQ_OBJ) };
}

/// Create the cache and the pool the handler uses.
pub fn setup() -> bool {
    let k = kmem();
    let Some(c) = k.kmem_cache_create("irq_objs", IRQ_OBJ, 0, kmem::slab::SlabFlags(0), Some(irq_ctor))
    else {
        return false;
    };
    let Some(p) = k.mempool_create_kmalloc_pool(8, 256) else {
        // SAFETY: no objects.
        unsafe { k.kmem_cache_destroy(c) };
        return false;
    };
    // A cache nobody allocated from: the probe's allocation needs a new
    // slab from the page allocator, the path on which kmem checks whether
    // the caller may sleep.
    let Some(probe) = k.kmem_cache_create("irq_sleep_probe", 512, 0, kmem::slab::SlabFlags(0), None) else {
        // SAFETY: no objects or elements.
        unsafe {
            k.mempool_destroy(p.as_ptr());
            k.kmem_cache_destroy(c);
        }
        return false;
    };
    CACHE.store(c.as_ptr(), Ordering::Release);
    POOL.store(p.as_ptr(), Ordering::Release);
    PROBE_CACHE.store(probe.as_ptr(), Ordering::Release);
    true
}

/// Destroy them (every timer stopped first).
pub fn teardown() {
    let k = kmem();
    ACTIVE.store(false, Ordering::Release);
    if let Some(p) = NonNull::new(POOL.swap(core::ptr::null_mut(), Ordering::AcqRel)) {
        // SAFETY: no element is outstanding: handlers free what they take.
        unsafe { k.mempool_destroy(p.as_ptr()) };
    }
    for cache in [&CACHE, &PROBE_CACHE] {
        if let Some(c) = NonNull::new(cache.swap(core::ptr::null_mut(), Ordering::AcqRel)) {
            // SAFETY: as above.
            unsafe { k.kmem_cache_destroy(c) };
        }
    }
}

/// Let ticks do their work.
pub fn activate(on: bool) {
    ACTIVE.store(on, Ordering::Release);
}

/// Arm the one sleeping-allocation probe (taken by the next tick anywhere).
pub fn arm_sleep_probe() {
    SLEEP_PROBE.store(true, Ordering::Release);
}

/// Start this CPU's timer.
pub fn start_timer() {
    TIMER_ON[percpu::this_cpu()].store(true, Ordering::Release);
    crate::apic::start_timer();
}

/// Stop this CPU's timer.
pub fn stop_timer() {
    crate::apic::stop_timer();
    TIMER_ON[percpu::this_cpu()].store(false, Ordering::Release);
}

/// Whether this CPU's timer runs (a halted CPU will wake up).
pub fn timer_running() -> bool {
    TIMER_ON[percpu::this_cpu()].load(Ordering::Relaxed)
}

/// The tick's work (hardirq context).
pub fn timer_tick() {
    if !ACTIVE.load(Ordering::Acquire) || !crate::kmem_ready() {
        return;
    }
    let k = kmem();
    let cpu = percpu::this_cpu();
    let st = &STATS[cpu];
    let tick = percpu::area(cpu).timer_ticks.load(Ordering::Relaxed);
    if !k.in_hardirq() {
        st.bad.fetch_add(1, Ordering::Relaxed);
    }
    let size = 16 + (tick as usize % 16) * 48;
    match k.kmalloc(size, kmem::GFP_ATOMIC) {
        Ok(p) => {
            // SAFETY: `size` bytes we own until the kfree.
            unsafe {
                core::ptr::write_bytes(p.as_ptr(), cpu as u8, size);
                if *p.as_ptr().add(size - 1) != cpu as u8 {
                    st.bad.fetch_add(1, Ordering::Relaxed);
                }
                k.kfree(p.as_ptr());
            }
            st.kmalloc.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            st.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(c) = NonNull::new(CACHE.load(Ordering::Acquire)) {
        // SAFETY: a live cache of this machine (created and not destroyed).
        match unsafe { k.kmem_cache_alloc(c, kmem::GFP_ATOMIC) } {
            Ok(o) => {
                // SAFETY: an object of IRQ_OBJ bytes, returned constructed.
                unsafe {
                    if (0..IRQ_OBJ).any(|i| *o.as_ptr().add(i) != IRQ_MAGIC) {
                        st.bad.fetch_add(1, Ordering::Relaxed);
                    }
                    k.kmem_cache_free(c, o.as_ptr());
                }
                st.slab.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                st.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if let Some(pool) = NonNull::new(POOL.load(Ordering::Acquire)) {
        // SAFETY: the pool lives until teardown, which stops the ticks first.
        let pool = unsafe { pool.as_ref() };
        let e = k.mempool_alloc(pool, kmem::GFP_ATOMIC);
        if e.is_null() {
            st.failed.fetch_add(1, Ordering::Relaxed);
        } else {
            // SAFETY: a 256-byte element we own until the free.
            unsafe {
                core::ptr::write_bytes(e, 0x3c, 256);
                k.mempool_free(e, pool);
            }
            st.mempool.fetch_add(1, Ordering::Relaxed);
        }
    }
    if SLEEP_PROBE.swap(false, Ordering::AcqRel) {
        // The bug under test: a sleeping allocation in an interrupt handler.
        if let Some(c) = NonNull::new(PROBE_CACHE.load(Ordering::Acquire)) {
            // SAFETY: a live cache of this machine (created and not destroyed).
            if let Ok(p) = unsafe { k.kmem_cache_alloc(c, kmem::GFP_KERNEL) } {
                // SAFETY: from this cache.
                unsafe { k.kmem_cache_free(c, p.as_ptr()) };
            }
        }
        SLEEP_PROBE_DONE.store(true, Ordering::Release);
    }
}
