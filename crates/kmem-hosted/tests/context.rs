//! Execution context (reference/linux-mm.md §1.7 "Contexts", the kernel
//! hacking guide): task, atomic (`get_cpu()`), softirq and hardirq (run in
//! simulated interrupt context), and the "sleeping function called from
//! invalid context" report, once per call site.

mod common;

use common::*;
use kmem::platform::{Platform, HARDIRQ_OFFSET, PREEMPT_OFFSET, SOFTIRQ_OFFSET};
use std::panic::Location;

#[test]
fn task_context_by_default() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    assert!(m.in_task());
    assert!(!m.in_atomic());
    assert!(!m.in_interrupt());
    assert!(!m.in_irq() && !m.in_hardirq() && !m.in_softirq() && !m.in_nmi());
    assert_eq!(m.preempt_count(), 0);
}

#[test]
fn get_cpu_is_atomic_but_not_interrupt() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let cpu = m.get_cpu();
    assert!(cpu < 2);
    assert!(m.in_atomic());
    assert!(m.in_task());
    assert!(!m.in_interrupt());
    assert_eq!(m.preempt_count(), PREEMPT_OFFSET);
    m.put_cpu();
    assert!(!m.in_atomic());
}

#[test]
fn hardirq_context() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let r = m.run_in_hardirq(|| {
        assert!(m.in_irq());
        assert!(m.in_hardirq());
        assert!(m.in_interrupt());
        assert!(m.in_atomic());
        assert!(!m.in_task());
        assert!(!m.in_softirq());
        assert_eq!(m.preempt_count(), HARDIRQ_OFFSET);
        // A softirq does not nest inside a hardirq in the kernel, but the
        // counts compose.
        42
    });
    assert_eq!(r, 42);
    assert!(m.in_task() && !m.in_atomic());
}

#[test]
fn softirq_context_and_bh_disable() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    m.run_in_softirq(|| {
        assert!(m.in_softirq());
        assert!(m.in_serving_softirq());
        assert!(m.in_interrupt());
        assert!(m.in_atomic());
        assert!(!m.in_task());
        assert!(!m.in_hardirq());
        assert_eq!(m.preempt_count(), SOFTIRQ_OFFSET);
        // A hardirq interrupting the softirq.
        m.run_in_hardirq(|| {
            assert!(m.in_hardirq() && m.in_softirq());
            assert_eq!(m.preempt_count(), SOFTIRQ_OFFSET + HARDIRQ_OFFSET);
        });
    });
    // local_bh_disable: in_softirq() but still task context.
    m.local_bh_disable();
    assert!(m.in_softirq() && m.in_interrupt() && m.in_task());
    assert!(!m.in_serving_softirq());
    m.local_bh_enable();
    assert_eq!(m.preempt_count(), 0);
}

#[test]
fn interrupt_context_unwinds() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        m.run_in_hardirq(|| panic!("in the handler"));
    }));
    assert!(r.is_err());
    assert_eq!(m.preempt_count(), 0);
}

#[test]
fn get_cpu_inside_hardirq() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let cpu = m.get_cpu();
    m.run_in_hardirq(|| {
        // The interrupt runs on the pinned CPU.
        assert_eq!(m.platform.smp_processor_id(), cpu);
        assert_eq!(m.get_cpu(), cpu);
        m.put_cpu();
    });
    m.put_cpu();
    assert_eq!(m.preempt_count(), 0);
}

fn reports(m: &kmem_hosted::Machine) -> usize {
    m.dmesg()
        .matches("BUG: sleeping function called from invalid context at ")
        .count()
}

#[test]
fn might_sleep_reports_once_per_call_site() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    // Task context: fine, nothing printed.
    assert!(!m.might_sleep_here());
    assert_eq!(reports(&m), 0);

    let site_a: &'static Location<'static> = Location::caller();
    let site_b: &'static Location<'static> = Location::caller();
    assert_ne!(site_a.line(), site_b.line());

    m.get_cpu();
    assert!(m.might_sleep_at(site_a));
    assert!(m.might_sleep_at(site_a));
    m.put_cpu();
    assert_eq!(reports(&m), 1, "the same site twice: one report");

    m.run_in_hardirq(|| assert!(m.might_sleep_at(site_b)));
    assert_eq!(reports(&m), 2, "two different sites: two reports");

    let d = m.dmesg();
    let line = format!(
        "BUG: sleeping function called from invalid context at {}:{}",
        site_a.file(),
        site_a.line()
    );
    assert!(d.contains(&line), "{d}");
    let pid = m.platform.current_pid();
    let mut comm = [0u8; 16];
    let n = m.platform.current_comm(&mut comm);
    let comm = std::str::from_utf8(&comm[..n]).unwrap();
    assert!(d.contains(&format!(
        "in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: {pid}, name: {comm}"
    )));
    assert!(d.contains("preempt_count: 1, expected: 0"));
    assert!(d.contains(&format!(
        "in_atomic(): 1, irqs_disabled(): 1, non_block: 0, pid: {pid}, name: {comm}"
    )));
    assert!(d.contains("preempt_count: 10000, expected: 0"));

    // Back in task context: no report, may sleep.
    assert!(!m.might_sleep_at(site_b));
    assert_eq!(reports(&m), 2);
}

#[test]
fn might_sleep_here_uses_the_caller_location() {
    let m = boot("quiet mem=64M nr_cpus=1 kswapd=off");
    let line = line!() + 3;
    m.run_in_softirq(|| {
        for _ in 0..3 {
            assert!(m.might_sleep_here());
        }
    });
    assert_eq!(reports(&m), 1);
    assert!(
        m.dmesg().contains(&format!("tests/context.rs:{line}")),
        "{}",
        m.dmesg()
    );
}

/// A sleeping allocation from atomic context is reported at the caller's line
/// and does not sleep: with memory exhausted it fails instead of waiting.
#[test]
fn sleeping_allocation_in_atomic_context_reports_and_does_not_sleep() {
    use kmem::*;
    let m = kmem_hosted::Machine::boot("quiet mem=64M nr_cpus=1 kswapd=off oom_wait_ms=100000").unwrap();
    let mut held = Vec::new();
    for order in (0..=10).rev() {
        while let Ok(p) = m.alloc_pages(GFP_KERNEL | __GFP_NOWARN | __GFP_NORETRY | __GFP_MEMALLOC, order) {
            held.push((p, order));
        }
    }
    let waits = m.events.alloc_waits.load(std::sync::atomic::Ordering::Relaxed);
    let r = m.run_in_hardirq(|| m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 0));
    assert!(
        r.is_err(),
        "an atomic-context GFP_KERNEL allocation on an exhausted machine must fail, not sleep"
    );
    assert_eq!(
        m.events.alloc_waits.load(std::sync::atomic::Ordering::Relaxed),
        waits,
        "it slept"
    );
    let log = m.dmesg();
    assert!(
        log.contains("BUG: sleeping function called from invalid context at"),
        "{log}"
    );
    assert!(
        log.contains("context.rs"),
        "the report names the caller's file: {log}"
    );
    for (p, o) in held {
        // SAFETY: allocated above.
        unsafe { m.__free_pages(p, o) };
    }
}

/// An unbalanced `put_cpu()` / `preempt_enable()` / `local_bh_enable()` is
/// reported once, as `DEBUG_PREEMPT`'s `DEBUG_LOCKS_WARN_ON` reports it,
/// and leaves the count alone; balanced pairs still work afterwards.
#[test]
fn unbalanced_preempt_enable_warns_once() {
    let m = kmem_hosted::Machine::boot("quiet mem=64M nr_cpus=2").unwrap();
    let w0 = m.events.warnings.load(std::sync::atomic::Ordering::Relaxed);
    m.put_cpu();
    m.preempt_enable();
    m.local_bh_enable();
    assert_eq!(m.platform.preempt_count(), 0);
    assert_eq!(
        m.events.warnings.load(std::sync::atomic::Ordering::Relaxed),
        w0 + 1
    );
    assert!(
        m.dmesg().contains("DEBUG_LOCKS_WARN_ON(val > preempt_count())"),
        "{}",
        m.dmesg()
    );
    let cpu = m.get_cpu();
    assert!(cpu < 2);
    assert_eq!(m.platform.preempt_count(), 1);
    m.put_cpu();
    assert_eq!(m.platform.preempt_count(), 0);
}
