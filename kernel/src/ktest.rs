//! The test run, from the boot CPU's point of view, and the APs' loop.
//!
//! 1. The shared suite (`kmem-testsuite`) on the boot CPU, one line per case.
//! 2. SMP: every CPU brought up (`smp.rs`).
//! 3. TLB shootdown, observed: CPU 1 reads a vmap address (caching the
//!    translation), CPU 0 unmaps it, purges, maps another page at the same
//!    address, and CPU 1 must read the new page.
//! 4. The stress, on every CPU at once with every CPU's APIC timer running
//!    (`irq_work.rs` allocates in the handler): task context allocates
//!    kmalloc objects and hands them to the next CPU, which checks and frees
//!    them; allocates constructed objects from a shared cache; allocates
//!    pages of orders 0-3; vmallocs, writing through the vmalloc address and
//!    reading through the linear map; purges the lazily freed vmalloc ranges
//!    now and then (TLB shootdowns while others map); counts every
//!    operation in a per-CPU counter. A CPU stops after its rounds once its
//!    timer has fired a few times and its handler has allocated.
//! 5. ioremap of the local APIC, the I/O APIC and the `edu` device's BAR0.
//! 6. The APs park; everything the run allocated is freed; the vmalloc
//!    window's page tables must be empty and are freed; the buddy lists must
//!    equal their state right after boot ("every page came back").
//! 7. `/proc/slabinfo`, `/proc/buddyinfo`, `/proc/vmallocinfo` (and
//!    meminfo) on the console, and the verdict.
//!
//! The APs follow `PHASE`: they wait (serving shootdowns) until the boot
//! CPU moves it, do their part, and count themselves done.

use crate::boot::MAX_CPUS;
use crate::percpu;
use crate::qemu_exit::{self, EXIT_FAIL, EXIT_PASS};
use crate::{arch, irq_work, kmem, paging, printk, smp, tlb, KtestOpts};
use core::fmt::{self, Write};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use kmem::slab::KmemCache;
use kmem::{PercpuPtr, GFP_KERNEL, PAGE_SIZE};

const PHASE_IDLE: usize = 0;
const PHASE_STRESS: usize = 1;
const PHASE_TLB_READ1: usize = 2;
const PHASE_TLB_READ2: usize = 3;
const PHASE_PARK: usize = 4;

static PHASE: AtomicUsize = AtomicUsize::new(PHASE_IDLE);
static DONE: AtomicUsize = AtomicUsize::new(0);
static ITERATIONS: AtomicUsize = AtomicUsize::new(2000);
/// Timer ticks every CPU must have taken before it ends its stress.
const MIN_TICKS: u64 = 4;

static STRESS_CACHE: AtomicPtr<KmemCache> = AtomicPtr::new(core::ptr::null_mut());
static COUNTER: AtomicUsize = AtomicUsize::new(0);
static OPS: AtomicU64 = AtomicU64::new(0);
static HANDOFF_ALLOCS: AtomicU64 = AtomicU64::new(0);
static HANDOFF_REMOTE_FREES: AtomicU64 = AtomicU64::new(0);
static HANDOFF_LOCAL_FREES: AtomicU64 = AtomicU64::new(0);
static BAD: AtomicU64 = AtomicU64::new(0);
static VMALLOCS: AtomicU64 = AtomicU64::new(0);
static PURGES: AtomicU64 = AtomicU64::new(0);

const INBOX_SLOTS: usize = 64;
static INBOX: [[AtomicPtr<u8>; INBOX_SLOTS]; MAX_CPUS] =
    [const { [const { AtomicPtr::new(core::ptr::null_mut()) }; INBOX_SLOTS] }; MAX_CPUS];

static TLB_ADDR: AtomicUsize = AtomicUsize::new(0);
static TLB_SEEN: AtomicU64 = AtomicU64::new(0);

/// Results of the run.
struct Verdict {
    passed: usize,
    failed: usize,
}

impl Verdict {
    fn check(&mut self, name: &str, ok: bool, detail: fmt::Arguments<'_>) {
        if ok {
            self.passed += 1;
            printk!("ktest: {} ... ok ({})", name, detail);
        } else {
            self.failed += 1;
            printk!("ktest: {} ... FAILED: {}", name, detail);
        }
    }
}

/// Writes text to the console as it comes.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::printk::write_raw(s);
        Ok(())
    }
}

/// Fault on purpose (`ktest.fault=pf|gp|ud|df|triple`), to prove faults
/// are reported (a triple fault cannot be: it resets the machine, which the
/// runner must count as a failure).
pub fn fault(kind: &str) -> ! {
    printk!("ktest: faulting on purpose: {}", kind);
    // SAFETY: none of these is safe; each is the deliberate fault under test,
    // and the exception handler ends the run.
    unsafe {
        match kind {
            "gp" => {
                core::ptr::read_volatile(0xdead_0000_0000_beefusize as *const u64);
            }
            "ud" => core::arch::asm!("ud2"),
            "triple" => {
                // An empty IDT: the breakpoint cannot be delivered, nor the
                // #GP nor the #DF that follow — the CPU resets.
                let idtr = [0u8; 10];
                core::arch::asm!("lidt [{}]", "int3", in(reg) idtr.as_ptr());
            }
            "df" => {
                // Make the page-fault gate not present: the page fault below
                // cannot be delivered, which is a double fault.
                let mut idtr = [0u8; 10];
                core::arch::asm!("sidt [{}]", in(reg) idtr.as_mut_ptr());
                let base = u64::from_le_bytes([
                    idtr[2], idtr[3], idtr[4], idtr[5], idtr[6], idtr[7], idtr[8], idtr[9],
                ]);
                let gate = (base + 14 * 16) as *mut u64;
                gate.write_volatile(gate.read_volatile() & !(1u64 << 47));
                core::ptr::write_volatile(0x7fff_dead_0000usize as *mut u64, 1);
            }
            _ => {
                core::ptr::write_volatile(0x7fff_dead_0000usize as *mut u64, 1);
            }
        }
    }
    printk!("ktest: the fault did not happen");
    qemu_exit::exit(EXIT_FAIL)
}

fn stress_ctor(p: *mut u8) {
    // SAFETY: a whole 200-byte object.
    unsafe { core::ptr::write_bytes(p, 0x77, 200) };
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// A handed-off kmalloc object: `[size: u32][cpu: u32]` then a pattern.
fn make_obj(cpu: usize, size: usize) -> Option<*mut u8> {
    let p = kmem().kmalloc(size, GFP_KERNEL).ok()?.as_ptr();
    // SAFETY: `size` (>= 8) bytes we own.
    unsafe {
        (p as *mut u32).write(size as u32);
        (p.add(4) as *mut u32).write(cpu as u32);
        for i in 8..size {
            p.add(i).write((cpu as u8).wrapping_add(i as u8));
        }
    }
    Some(p)
}

/// Check and free a handed-off object.
fn free_obj(p: *mut u8, remote: bool) {
    // SAFETY: an object `make_obj` built and nobody else holds.
    unsafe {
        let size = (p as *const u32).read() as usize;
        let cpu = (p.add(4) as *const u32).read() as usize;
        let ok = size >= 8
            && cpu < MAX_CPUS
            && (8..size).all(|i| p.add(i).read() == (cpu as u8).wrapping_add(i as u8));
        if !ok {
            BAD.fetch_add(1, Ordering::Relaxed);
        }
        kmem().kfree(p);
    }
    if remote {
        HANDOFF_REMOTE_FREES.fetch_add(1, Ordering::Relaxed);
    } else {
        HANDOFF_LOCAL_FREES.fetch_add(1, Ordering::Relaxed);
    }
}

fn drain_inbox(cpu: usize) {
    for slot in &INBOX[cpu] {
        let p = slot.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            free_obj(p, true);
        }
    }
}

fn stress(cpu: usize, nr_online: usize) {
    let k = kmem();
    // SAFETY: the boot CPU's live allocation; this view gives it back
    // (`into_raw`) instead of freeing it.
    let counter =
        // SAFETY: the pointer and its owner come from the matching allocation above, used once.
        unsafe { kmem::PerCpu::<u64, _>::from_raw(k, PercpuPtr::from_addr(COUNTER.load(Ordering::Acquire))) };
    let cache = NonNull::new(STRESS_CACHE.load(Ordering::Acquire)).expect("stress cache");
    let iterations = ITERATIONS.load(Ordering::Relaxed);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ ((cpu as u64 + 1) * 0x1000_0001);
    let mut i = 0usize;
    let next = (cpu + 1) % nr_online;
    loop {
        let ticks = percpu::area(cpu).timer_ticks.load(Ordering::Relaxed);
        let irq_allocs = irq_work::STATS[cpu].kmalloc.load(Ordering::Relaxed);
        if i >= iterations && ticks >= MIN_TICKS && irq_allocs > 0 {
            break;
        }
        let r = xorshift(&mut rng);
        // kmalloc, handed to the next CPU.
        let size = 8 + (r % 2040) as usize;
        if let Some(p) = make_obj(cpu, size) {
            HANDOFF_ALLOCS.fetch_add(1, Ordering::Relaxed);
            let placed = INBOX[next].iter().any(|s| {
                s.compare_exchange(core::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            });
            if !placed {
                free_obj(p, false);
            }
            counter.this_cpu_inc();
            OPS.fetch_add(1, Ordering::Relaxed);
        }
        drain_inbox(cpu);
        // A constructed object from the shared cache.
        // SAFETY: a live cache of this machine (created and not destroyed).
        if let Ok(o) = unsafe { k.kmem_cache_alloc(cache, GFP_KERNEL) } {
            // SAFETY: a 200-byte object; restored to its constructed state before the free.
            unsafe {
                if (0..200).any(|j| *o.as_ptr().add(j) != 0x77) {
                    BAD.fetch_add(1, Ordering::Relaxed);
                }
                core::ptr::write_bytes(o.as_ptr(), cpu as u8, 200);
                core::ptr::write_bytes(o.as_ptr(), 0x77, 200);
                k.kmem_cache_free(cache, o.as_ptr());
            }
            counter.this_cpu_inc();
            OPS.fetch_add(1, Ordering::Relaxed);
        }
        // Pages.
        let order = (r >> 20) as u32 % 4;
        if let Ok(pg) = k.alloc_pages(GFP_KERNEL, order) {
            if let Some(va) = k.page_address(pg) {
                let len = PAGE_SIZE << order;
                // SAFETY: the block is ours.
                unsafe {
                    va.as_ptr().write_volatile(cpu as u8);
                    va.as_ptr().add(len - 1).write_volatile(cpu as u8);
                    if va.as_ptr().read_volatile() != cpu as u8 {
                        BAD.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // SAFETY: allocated above at this order.
            unsafe { k.__free_pages(pg, order) };
            counter.this_cpu_inc();
            OPS.fetch_add(1, Ordering::Relaxed);
        }
        // vmalloc: write through the vmalloc address, read through the linear map.
        if i.is_multiple_of(16) {
            let pages = 1 + (r >> 40) as usize % 48;
            if let Ok(v) = k.vmalloc(pages * PAGE_SIZE) {
                for pg in 0..pages {
                    // SAFETY: inside the area.
                    unsafe {
                        v.as_ptr()
                            .add(pg * PAGE_SIZE + 8)
                            .write_volatile((cpu + pg) as u8)
                    };
                }
                for pg in 0..pages {
                    // SAFETY: inside the area.
                    let addr = unsafe { v.as_ptr().add(pg * PAGE_SIZE) };
                    let ok = k
                        .vmalloc_to_page(addr)
                        .and_then(|p| k.page_address(p))
                        // SAFETY: the linear alias of a page of the area.
                        .is_some_and(
                            // SAFETY: within memory this test allocated and still owns.
                            |lin| unsafe { lin.as_ptr().add(8).read_volatile() } == (cpu + pg) as u8,
                        );
                    if !ok {
                        BAD.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // SAFETY: the area allocated above, unused afterwards.
                unsafe { k.vfree(v.as_ptr()) };
                VMALLOCS.fetch_add(1, Ordering::Relaxed);
                counter.this_cpu_inc();
                OPS.fetch_add(1, Ordering::Relaxed);
            }
        }
        if i % 128 == 64 {
            // Purge now: a TLB shootdown while the other CPUs map and unmap.
            k.vm_unmap_aliases();
            PURGES.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
    }
    drain_inbox(cpu);
    let _ = counter.into_raw();
}

/// Wait until `PHASE` leaves `from`; returns the new phase.
fn wait_phase(from: usize) -> usize {
    loop {
        let p = PHASE.load(Ordering::Acquire);
        if p != from {
            return p;
        }
        percpu::service_pending_ipis();
        arch::pause();
    }
}

/// An AP's life after bring-up.
pub fn ap_loop(cpu: usize) -> ! {
    // SAFETY: the IDT is loaded and the APIC enabled (`ap_main`).
    unsafe { arch::sti() };
    let mut phase = PHASE_IDLE;
    loop {
        phase = wait_phase(phase);
        match phase {
            PHASE_STRESS => {
                irq_work::start_timer();
                stress(cpu, smp::NR_ONLINE.load(Ordering::Acquire));
                irq_work::stop_timer();
            }
            PHASE_TLB_READ1 | PHASE_TLB_READ2 if cpu == 1 => {
                let a = TLB_ADDR.load(Ordering::Acquire);
                // SAFETY: the boot CPU keeps a page mapped at `a` for this phase.
                let v = unsafe { core::ptr::read_volatile(a as *const u64) };
                TLB_SEEN.store(v, Ordering::Release);
            }
            PHASE_PARK => {
                arch::cli();
                tlb::cpu_offline(cpu);
                DONE.fetch_add(1, Ordering::AcqRel);
                arch::halt_forever();
            }
            _ => {}
        }
        DONE.fetch_add(1, Ordering::AcqRel);
    }
}

/// Move the APs to `phase` and wait for the `n` of them.
fn run_phase(phase: usize, n: usize) {
    DONE.store(0, Ordering::Release);
    PHASE.store(phase, Ordering::Release);
    while DONE.load(Ordering::Acquire) < n {
        percpu::service_pending_ipis();
        arch::pause();
    }
}

/// Start `phase` on the APs without waiting.
fn start_phase(phase: usize) {
    DONE.store(0, Ordering::Release);
    PHASE.store(phase, Ordering::Release);
}

fn wait_done(n: usize) {
    while DONE.load(Ordering::Acquire) < n {
        percpu::service_pending_ipis();
        arch::pause();
    }
}

/// The TLB shootdown test: 0 if the AP saw the new page.
fn tlb_shootdown_test(v: &mut Verdict, nr_aps: usize) {
    let k = kmem();
    let (Ok(p1), Ok(p2)) = (k.alloc_page(GFP_KERNEL), k.alloc_page(GFP_KERNEL)) else {
        v.check("tlb_shootdown", false, format_args!("no pages"));
        return;
    };
    let l1 = k.page_address(p1).unwrap().as_ptr() as *mut u64;
    let l2 = k.page_address(p2).unwrap().as_ptr() as *mut u64;
    // SAFETY: our two pages, through the linear map.
    unsafe {
        l1.write_volatile(0xaaaa_aaaa_aaaa_aaaa);
        l2.write_volatile(0xbbbb_bbbb_bbbb_bbbb);
    }
    let Ok(x) = k.vmap(&[p1]) else {
        v.check("tlb_shootdown", false, format_args!("vmap"));
        return;
    };
    TLB_ADDR.store(x.as_ptr() as usize, Ordering::Release);
    run_phase(PHASE_TLB_READ1, nr_aps);
    let first = TLB_SEEN.load(Ordering::Acquire);
    let flushes_before = percpu::area(1).tlb_flushes.load(Ordering::Relaxed);
    // SAFETY: the mapping made above; the other CPUs are done reading it (their phase is over).
    unsafe { k.vunmap(x.as_ptr()) };
    k.vm_unmap_aliases();
    // Map the other page until it lands at the same address (lowest fit).
    let mut extra: [Option<NonNull<u8>>; 256] = [None; 256];
    let mut y = None;
    for e in extra.iter_mut() {
        match k.vmap(&[p2]) {
            Ok(a) if a == x => {
                y = Some(a);
                break;
            }
            Ok(a) => *e = Some(a),
            Err(_) => break,
        }
    }
    let mut second = 0;
    if y.is_some() {
        run_phase(PHASE_TLB_READ2, nr_aps);
        second = TLB_SEEN.load(Ordering::Acquire);
    }
    let flushes_after = percpu::area(1).tlb_flushes.load(Ordering::Relaxed);
    if let Some(a) = y {
        // SAFETY: the mapping made above; the phase that read it is over.
        unsafe { k.vunmap(a.as_ptr()) };
    }
    for a in extra.iter().flatten() {
        // SAFETY: mappings made above that nothing read.
        unsafe { k.vunmap(a.as_ptr()) };
    }
    // SAFETY: unmapped everywhere above.
    unsafe {
        k.__free_pages(p1, 0);
        k.__free_pages(p2, 0);
    }
    v.check(
        "tlb_shootdown",
        y.is_some()
            && first == 0xaaaa_aaaa_aaaa_aaaa
            && second == 0xbbbb_bbbb_bbbb_bbbb
            && flushes_after > flushes_before,
        format_args!(
            "CPU 1 read {:#x} at {:#x}, then after vunmap + purge + {} at the same address, {:#x}; {} flushes served by CPU 1",
            first,
            x.as_ptr() as usize,
            if y.is_some() { "vmap of another page" } else { "NO vmap (the address never came back)" },
            second,
            flushes_after - flushes_before
        ),
    );
}

/// `ktest.debug`: active objects of the kmalloc caches after `what`
/// (after purging and shrinking), to see what a phase left behind.
fn debug_objects(what: &str) {
    let k = kmem();
    k.vm_unmap_aliases();
    k.kmem_cache_shrink_all();
    k.for_each_cache(|c| {
        let (active, ..) = k.cache_counts(c);
        if active > 0 && c.name().starts_with("kmalloc") {
            printk!(
                "ktest: after {}: {} has {} active objects",
                what,
                c.name(),
                active
            );
        }
    });
}

/// Raise a `#DB` the kernel did not ask for, as an emulator may: a single
/// step (`TF` set with `popfq`), which the handler must clear, or every
/// following instruction would trap. The run goes on.
fn spurious_debug_exceptions() {
    let before = crate::traps::SPURIOUS_DEBUG.load(Ordering::Relaxed);
    // SAFETY: the flags pushed and popped are this CPU's own with TF added;
    // the #DB after the next instruction is ignored and TF cleared.
    unsafe { core::arch::asm!("pushfq", "or qword ptr [rsp], 0x100", "popfq", "nop", "nop") };
    let n = crate::traps::SPURIOUS_DEBUG.load(Ordering::Relaxed) - before;
    let tf = crate::arch::read_rflags() & 0x100 != 0;
    printk!(
        "ktest: spurious #DB: {} ignored, TF {}",
        n,
        if tf { "still set" } else { "clear" }
    );
}

/// The whole run on the boot CPU.
pub fn run(opts: KtestOpts, apic_ids: &[u32]) -> ! {
    let k = kmem();
    if let Some(f) = opts.fault {
        fault(f);
    }
    if opts.spurious_db {
        spurious_debug_exceptions();
    }
    if let Some(n) = opts.iterations {
        ITERATIONS.store(n, Ordering::Relaxed);
    }
    let mut v = Verdict { passed: 0, failed: 0 };

    // The reference state for "every page came back": the buddy lists right
    // after boot, with the PCI BAR resource registered and vmalloc used once
    // (what they keep for good).
    crate::ioremap::pci_init();
    kmem_testsuite::warm_up(k);
    // The page tables it made are freed at the end: free them here too.
    paging::free_vmalloc_tables();
    kmem_testsuite::quiesce(k);
    let reference = BuddySnapshot::take(k);
    let reference_allocated = k.nr_allocated_pages();
    if opts.debug {
        for name in ["slabinfo", "buddyinfo"] {
            printk!("==== /proc/{} at the reference point ====", name);
            let _ = kmem::proc::proc_show(k, name, &mut Console);
        }
    }

    if opts.debug {
        debug_objects("boot");
    }
    printk!("ktest: shared suite (kmem-testsuite) on CPU 0");
    let (p, f) = kmem_testsuite::run_all(k, &mut |name, r| match r {
        Ok(()) => printk!("ktest: {} ... ok", name),
        Err(e) => printk!("ktest: {} ... FAILED: {}", name, e),
    });
    v.passed += p;
    v.failed += f;

    // SMP.
    let t0 = crate::time::now_ns();
    let online = smp::bring_up(apic_ids);
    let ms = (crate::time::now_ns() - t0) / 1_000_000;
    v.check(
        "smp_bringup",
        online == apic_ids.len(),
        format_args!("{} of {} CPUs online in {} ms", online, apic_ids.len(), ms),
    );
    let nr_aps = online - 1;
    // Before the stress, while the vmalloc window is unfragmented: the
    // address just freed is the lowest free one and comes back at once.
    if nr_aps >= 1 {
        tlb_shootdown_test(&mut v, nr_aps);
    }
    if opts.debug {
        debug_objects("the TLB test");
    }

    // Stress with timers on every CPU.
    let k_cache = k.kmem_cache_create("stress_objs", 200, 0, kmem::slab::SlabFlags(0), Some(stress_ctor));
    let counter = k.alloc_percpu::<u64>();
    let irq_ok = irq_work::setup();
    if let (Some(c), Ok(ctr), true) = (k_cache, counter, irq_ok) {
        STRESS_CACHE.store(c.as_ptr(), Ordering::Release);
        COUNTER.store(ctr.into_raw().addr(), Ordering::Release);
        irq_work::activate(true);
        let since = k.dmesg_len();
        let t0 = crate::time::now_ns();
        start_phase(PHASE_STRESS);
        // SAFETY: IDT loaded, APIC enabled.
        unsafe { arch::sti() };
        irq_work::start_timer();
        irq_work::arm_sleep_probe();
        stress(0, online);
        while !irq_work::SLEEP_PROBE_DONE.load(Ordering::Acquire) {
            arch::pause();
        }
        wait_done(nr_aps);
        irq_work::stop_timer();
        arch::cli();
        irq_work::activate(false);
        let ms = (crate::time::now_ns() - t0) / 1_000_000;
        for cpu in 0..online {
            drain_inbox(cpu);
        }
        // SAFETY: the allocation made above; this takes it back (freed on drop).
        let counter = unsafe {
            kmem::PerCpu::<u64, _>::from_raw(k, PercpuPtr::from_addr(COUNTER.load(Ordering::Acquire)))
        };
        let sum = counter.sum();
        let ops = OPS.load(Ordering::Relaxed);
        let allocs = HANDOFF_ALLOCS.load(Ordering::Relaxed);
        let remote = HANDOFF_REMOTE_FREES.load(Ordering::Relaxed);
        let local = HANDOFF_LOCAL_FREES.load(Ordering::Relaxed);
        v.check(
            "smp_stress",
            BAD.load(Ordering::Relaxed) == 0 && allocs == remote + local && (online == 1 || remote > 0),
            format_args!(
                "{} CPUs, {} ms: {} ops, {} kmalloc objects handed to the next CPU ({} freed there), {} vmallocs, {} purges, {} bad",
                online,
                ms,
                ops,
                allocs,
                remote,
                VMALLOCS.load(Ordering::Relaxed),
                PURGES.load(Ordering::Relaxed),
                BAD.load(Ordering::Relaxed)
            ),
        );
        v.check(
            "percpu_counter_sum",
            sum == ops,
            format_args!(
                "this_cpu_inc on every CPU sums to {} (operations counted: {})",
                sum, ops
            ),
        );
        let mut all_ticked = true;
        let mut bad = 0;
        for cpu in 0..online {
            let st = &irq_work::STATS[cpu];
            let ticks = percpu::area(cpu).timer_ticks.load(Ordering::Relaxed);
            all_ticked &= ticks > 0 && st.kmalloc.load(Ordering::Relaxed) > 0;
            bad += st.bad.load(Ordering::Relaxed);
            printk!(
                "ktest: CPU {}: {} timer ticks; in hardirq: {} kmalloc, {} slab, {} mempool GFP_ATOMIC, {} failed; {} TLB flushes served",
                cpu,
                ticks,
                st.kmalloc.load(Ordering::Relaxed),
                st.slab.load(Ordering::Relaxed),
                st.mempool.load(Ordering::Relaxed),
                st.failed.load(Ordering::Relaxed),
                percpu::area(cpu).tlb_flushes.load(Ordering::Relaxed)
            );
        }
        v.check(
            "timer_irq_allocations",
            all_ticked && bad == 0,
            format_args!(
                "every CPU's APIC timer allocated and freed GFP_ATOMIC in hardirq context, {} bad",
                bad
            ),
        );
        v.check(
            "sleeping_alloc_in_irq_reported",
            kmem_testsuite::log_contains(k, since, kmem_testsuite::SLEEP_REPORT),
            format_args!("GFP_KERNEL kmalloc from the timer handler"),
        );
        let shootdowns = tlb::SHOOTDOWNS.load(Ordering::Relaxed);
        v.check(
            "tlb_shootdown_ipis",
            online == 1 || shootdowns > 0,
            format_args!(
                "{} shootdowns, {} IPIs",
                shootdowns,
                tlb::SHOOTDOWN_IPIS.load(Ordering::Relaxed)
            ),
        );
        drop(counter);
        COUNTER.store(0, Ordering::Release);
        STRESS_CACHE.store(core::ptr::null_mut(), Ordering::Release);
        // SAFETY: every object went back (inboxes drained).
        unsafe { k.kmem_cache_destroy(c) };
    } else {
        v.check(
            "smp_stress",
            false,
            format_args!("could not set up the cache, counter or irq work"),
        );
    }
    irq_work::teardown();
    if opts.debug {
        debug_objects("the stress");
    }

    crate::ioremap::tests(&mut |name, ok, detail| v.check(name, ok, detail));
    if opts.debug {
        debug_objects("the ioremap tests");
    }

    // Park the APs, then give everything back.
    run_phase(PHASE_PARK, nr_aps);
    let stacks = smp::free_ap_stacks();
    k.vm_unmap_aliases();
    let (tables, ptes) = paging::free_vmalloc_tables();
    v.check(
        "vmalloc_page_tables_empty",
        ptes == 0 && paging::PGTABLE_PAGES.load(Ordering::Relaxed) == 0,
        format_args!(
            "{} page-table pages freed, {} PTEs left in the vmalloc window",
            tables, ptes
        ),
    );
    k.kmem_cache_shrink_all();
    k.drain_all_pages();
    let mut diff = DiffBuf::new();
    let now = BuddySnapshot::take(k);
    let same = now.same_free(&reference, &mut diff);
    let mut boot_diff = DiffBuf::new();
    let layout = if k.buddy_matches_boot_state(&mut boot_diff) {
        "buddy lists equal to the boot state"
    } else if now.same_blocks(&reference) {
        "buddy lists equal to the reference"
    } else {
        "buddy blocks rearranged"
    };
    v.check(
        "every_page_came_back",
        same && k.nr_allocated_pages() == reference_allocated,
        format_args!(
            "every zone has its free pages of the reference point (after boot, PCI BAR registered, vmalloc used once) back: {} free, {} allocated ({} then) ({}), {} AP stacks freed{}",
            k.nr_free_pages(),
            k.nr_allocated_pages(),
            reference_allocated,
            layout,
            stacks,
            diff.as_str()
        ),
    );

    for name in ["slabinfo", "buddyinfo", "vmallocinfo", "meminfo"] {
        crate::printk::write_raw("==== /proc/");
        crate::printk::write_raw(name);
        crate::printk::write_raw(" ====\n");
        let _ = kmem::proc::proc_show(k, name, &mut Console);
    }
    let ms = crate::time::now_ns() / 1_000_000;
    if v.failed == 0 {
        printk!(
            "ktest: PASS: {} checks passed on {} CPUs in {} ms",
            v.passed,
            online,
            ms
        );
        qemu_exit::exit(EXIT_PASS)
    } else {
        printk!(
            "ktest: FAIL: {} of {} checks failed",
            v.failed,
            v.passed + v.failed
        );
        qemu_exit::exit(EXIT_FAIL)
    }
}

/// Free pages and free blocks per order of every zone.
struct BuddySnapshot {
    zones: [(usize, &'static str, usize, [usize; kmem::page::NR_PAGE_ORDERS]); 16],
    nr: usize,
}

impl BuddySnapshot {
    fn take(k: &kmem::Kmem<crate::platform::BareMetal>) -> Self {
        let mut s = BuddySnapshot {
            zones: [(0, "", 0, [0; kmem::page::NR_PAGE_ORDERS]); 16],
            nr: 0,
        };
        kmem::proc::zone_snapshots(k, |z| {
            if s.nr < s.zones.len() {
                s.zones[s.nr] = (z.node, z.zone, z.free, z.free_blocks);
                s.nr += 1;
            }
        });
        s
    }

    /// Whether every zone has as many free pages as in `then`; lists the
    /// differences.
    fn same_free(&self, then: &BuddySnapshot, out: &mut dyn Write) -> bool {
        let mut same = self.nr == then.nr;
        for (now, old) in self.zones[..self.nr].iter().zip(&then.zones[..then.nr]) {
            if now.2 != old.2 {
                same = false;
                let _ = write!(
                    out,
                    "Node {}, zone {}: {} free pages, {} before; ",
                    now.0, now.1, now.2, old.2
                );
            }
        }
        same
    }

    /// Whether the free blocks of every order are the same as in `then`
    /// (they need not be: a long-lived kmem object — vmalloc's free-range
    /// record — may have moved to another slab page).
    fn same_blocks(&self, then: &BuddySnapshot) -> bool {
        self.nr == then.nr
            && self.zones[..self.nr]
                .iter()
                .zip(&then.zones[..then.nr])
                .all(|(a, b)| a.3 == b.3)
    }
}

/// The first differences a comparison lists.
struct DiffBuf {
    buf: [u8; 256],
    len: usize,
}

impl DiffBuf {
    const fn new() -> Self {
        DiffBuf {
            buf: [0; 256],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Write for DiffBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.len == 0 {
            let pre = b"; ";
            self.buf[..2].copy_from_slice(pre);
            self.len = 2;
        }
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = if b == b'\n' { b' ' } else { b };
                self.len += 1;
            }
        }
        Ok(())
    }
}
