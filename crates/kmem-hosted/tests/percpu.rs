//! The per-CPU allocator (reference/linux-mm.md §1.7, §2.6, §3.6
//! `lib/percpu_test.c`): chunks of units, zeroed memory on every CPU, the
//! kernel's limits, `this_cpu_*` operations that add up exactly across
//! threads, `get_cpu()` pinning, `DEFINE_PER_CPU`, statistics.

mod common;

use common::*;
use kmem::percpu::{PCPU_MIN_UNIT_SIZE, PCPU_STATIC_SIZE, PCPU_UNIT_SIZE};
use kmem::*;
use std::sync::atomic::{AtomicBool, Ordering};

fn warnings(m: &kmem_hosted::Machine) -> usize {
    m.events.warnings.load(Ordering::Relaxed)
}

#[test]
fn first_chunk_at_boot_and_meminfo() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let s = m.percpu_stats();
    assert_eq!(s.nr_chunks, 1);
    assert_eq!(s.nr_cur_alloc, 0);
    // Two 32 KiB units (16 pages) plus one metadata page.
    assert_eq!(m.pcpu_nr_pages(), 2 * PCPU_UNIT_SIZE / PAGE_SIZE);
    let meminfo = m.proc_read("meminfo").unwrap();
    let line = meminfo.lines().find(|l| l.starts_with("Percpu:")).unwrap();
    assert_eq!(line, format!("{:<16}{:>8} kB", "Percpu:", m.pcpu_nr_pages() * 4));
    assert!(m
        .dmesg()
        .contains("percpu: Embedded 8 pages/cpu s8192 r0 d24576 u32768"));
}

#[test]
fn per_cpu_ptr_stride_and_zeroing_on_every_cpu() {
    let m = boot("quiet mem=64M nr_cpus=4 kswapd=off");
    let p = m.__alloc_percpu(100, 8).unwrap();
    assert_eq!(p.addr() % 8, 0);
    for cpu in 0..4 {
        let q = m.per_cpu_ptr(p, cpu);
        assert_eq!(q as usize, p.addr() + cpu * m.pcpu_unit_size());
        // SAFETY: 100 live bytes on every CPU.
        let bytes = unsafe { std::slice::from_raw_parts_mut(q, 100) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes.fill(0xa5);
    }
    // SAFETY: not used afterwards.
    unsafe { m.free_percpu(p) };
    // The same area again (first fit): zeroed on every CPU.
    let p2 = m.__alloc_percpu(100, 8).unwrap();
    assert_eq!(p2, p);
    for cpu in 0..4 {
        // SAFETY: 100 live bytes on every CPU.
        let bytes = unsafe { std::slice::from_raw_parts(m.per_cpu_ptr(p2, cpu), 100) };
        assert!(bytes.iter().all(|&b| b == 0), "cpu {cpu} not zeroed");
    }
    // SAFETY: not used afterwards.
    unsafe { m.free_percpu(p2) };
    assert_eq!(m.percpu_stats().nr_cur_alloc, 0);
}

#[test]
fn size_and_align_limits() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let w = warnings(&m);
    assert!(m.__alloc_percpu(0, 4).is_err());
    assert!(m.__alloc_percpu(PCPU_MIN_UNIT_SIZE + 1, 4).is_err());
    assert!(m.__alloc_percpu(8, 2 * PAGE_SIZE).is_err());
    assert!(m.__alloc_percpu(8, 12).is_err());
    assert_eq!(warnings(&m), w + 4);
    assert!(m
        .dmesg()
        .contains("illegal size (0) or align (4) for percpu allocation"));
    assert!(m
        .dmesg()
        .contains("illegal size (32769) or align (4) for percpu allocation"));

    // The largest allocation fits (in a new chunk: the first one has a
    // static area), and a page alignment is honoured.
    let big = m.__alloc_percpu(PCPU_MIN_UNIT_SIZE, PAGE_SIZE).unwrap();
    assert_eq!(big.addr() % PAGE_SIZE, 0);
    let a = m.__alloc_percpu(1, 1).unwrap();
    let b = m.__alloc_percpu(1, 1).unwrap();
    // Rounded to the 4-byte granule.
    assert_eq!(b.addr() - a.addr(), 4);
    let c = m.__alloc_percpu(24, 64).unwrap();
    assert_eq!(c.addr() % 64, 0);
    let s = m.percpu_stats();
    assert_eq!(s.min_alloc_size, 4);
    assert_eq!(s.max_alloc_size, PCPU_MIN_UNIT_SIZE as u64);
    for p in [big, a, b, c] {
        // SAFETY: not used afterwards.
        unsafe { m.free_percpu(p) };
    }
    assert_eq!(warnings(&m), w + 4);
    m.pcpu_balance();
    assert_eq!(m.percpu_stats().nr_chunks, 1);
}

#[test]
fn atomic_allocations_use_existing_chunks_only() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    // The first chunk's dynamic area is 24 KiB: a 16 KiB atomic request
    // fits, a second does not, and no chunk is created for it.
    let a = m.__alloc_percpu_gfp(16 << 10, 4, GFP_ATOMIC).unwrap();
    assert!(m.__alloc_percpu_gfp(16 << 10, 4, GFP_ATOMIC).is_err());
    assert!(m.dmesg().contains("atomic=1, atomic alloc failed, no space left"));
    assert_eq!(m.percpu_stats().nr_chunks, 1);
    let b = m.__alloc_percpu_gfp(16 << 10, 4, GFP_KERNEL).unwrap();
    assert_eq!(m.percpu_stats().nr_chunks, 2);
    // SAFETY: not used afterwards.
    unsafe {
        m.free_percpu(a);
        m.free_percpu(b);
    }
}

#[test]
fn many_allocations_span_chunks_and_free_all() {
    let m = boot("quiet mem=128M nr_cpus=2 kswapd=off");
    let pages0 = m.nr_allocated_pages();
    let npc0 = m.pcpu_nr_pages();
    let mut ptrs = Vec::new();
    // 4 KiB each: 6 in the first chunk's dynamic area, 8 per new chunk.
    for i in 0..46usize {
        let p = m.__alloc_percpu(4096, 8).unwrap();
        for cpu in 0..2 {
            // SAFETY: 4096 live bytes on every CPU.
            unsafe { m.per_cpu_ptr(p.cast::<usize>(), cpu).write(i * 2 + cpu) };
        }
        ptrs.push(p);
    }
    let s = m.percpu_stats();
    assert_eq!(s.nr_chunks, 1 + 5);
    assert_eq!(s.nr_cur_alloc, 46);
    assert_eq!(s.nr_max_chunks, 6);
    assert_eq!(m.pcpu_nr_pages(), npc0 + 5 * (2 * PCPU_UNIT_SIZE / PAGE_SIZE));
    let stats = m.proc_read("percpu_stats").unwrap();
    assert!(
        stats.contains("  nr_chunks           :            6\n"),
        "{stats}"
    );
    assert_eq!(stats.matches("Chunk:").count(), 6);
    assert_eq!(stats.matches("Chunk: <- First Chunk\n").count(), 1);
    // Every CPU's copy is distinct and intact.
    for (i, &p) in ptrs.iter().enumerate() {
        for cpu in 0..2 {
            // SAFETY: live.
            assert_eq!(
                // SAFETY: a live per-CPU allocation of this machine and a possible CPU.
                unsafe { m.per_cpu_ptr(p.cast::<usize>(), cpu).read() },
                i * 2 + cpu
            );
        }
    }
    for p in ptrs {
        // SAFETY: not used afterwards.
        unsafe { m.free_percpu(p) };
    }
    let s = m.percpu_stats();
    assert_eq!(s.nr_cur_alloc, 0);
    assert_eq!(s.nr_alloc, 46);
    assert_eq!(s.nr_dealloc, 46);
    assert_eq!(s.nr_max_alloc, 46);
    // The kernel's rule: fully empty chunks are released, one is kept.
    assert_eq!(s.nr_chunks, 2);
    m.pcpu_balance();
    assert_eq!(m.percpu_stats().nr_chunks, 1);
    assert_eq!(m.pcpu_nr_pages(), npc0);
    assert_eq!(m.nr_allocated_pages(), pages0);
    assert_boot_state(&m);
}

/// pcpu_alloc_test's pattern (sizes 1..1024 bytes, alignments 2..2048):
/// chunks are created on demand well past the 64 the allocator once had,
/// every object is distinct on every CPU, and freeing everything gives every
/// page back.
#[test]
fn chunks_grow_on_demand_for_many_objects() {
    let m = boot("quiet mem=256M nr_cpus=2 kswapd=off");
    let pages0 = m.nr_allocated_pages();
    let npc0 = m.pcpu_nr_pages();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut objs = Vec::new();
    for i in 0..6000usize {
        let size = 1 + rnd(1024);
        let align = 1 << (1 + rnd(11));
        let p = m.__alloc_percpu(size, align).unwrap();
        assert_eq!(p.addr() % align, 0);
        for cpu in 0..2 {
            let q = m.per_cpu_ptr(p, cpu);
            // SAFETY: `size` live bytes on every CPU.
            let bytes = unsafe { std::slice::from_raw_parts_mut(q, size) };
            assert!(bytes.iter().all(|&b| b == 0), "object {i} not zeroed");
            bytes.fill((i * 2 + cpu) as u8);
        }
        objs.push((p, size, i));
        // Free some on the way, as a real workload does.
        if rnd(4) == 0 {
            let (p, _, _) = objs.swap_remove(rnd(objs.len()));
            // SAFETY: not used afterwards.
            unsafe { m.free_percpu(p) };
        }
    }
    let s = m.percpu_stats();
    assert!(s.nr_chunks > 64, "{s:?}");
    assert_eq!(s.nr_cur_alloc, objs.len() as u64);
    let stats = m.proc_read("percpu_stats").unwrap();
    assert_eq!(stats.matches("Chunk:").count() as u64, s.nr_chunks);
    for &(p, size, i) in &objs {
        for cpu in 0..2 {
            // SAFETY: live.
            let bytes = unsafe { std::slice::from_raw_parts(m.per_cpu_ptr(p, cpu), size) };
            assert!(
                bytes.iter().all(|&b| b == (i * 2 + cpu) as u8),
                "object {i} overwritten"
            );
        }
    }
    for (p, _, _) in objs {
        // SAFETY: not used afterwards.
        unsafe { m.free_percpu(p) };
    }
    let s = m.percpu_stats();
    assert_eq!((s.nr_cur_alloc, s.nr_chunks), (0, 2));
    m.pcpu_balance();
    assert_eq!(m.percpu_stats().nr_chunks, 1);
    assert_eq!(m.pcpu_nr_pages(), npc0);
    assert_eq!(m.nr_allocated_pages(), pages0);
}

#[test]
fn invalid_free_is_reported() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let p = m.__alloc_percpu(16, 4).unwrap();
    let w = warnings(&m);
    // SAFETY: an interior pointer is detected and ignored.
    unsafe { m.free_percpu(kmem_interior(p)) };
    assert_eq!(warnings(&m), w + 1);
    assert!(m.dmesg().contains("invalid free_percpu"));
    // SAFETY: not used afterwards.
    unsafe { m.free_percpu(p) };
    assert_eq!(m.percpu_stats().nr_cur_alloc, 0);
}

/// A pointer 4 bytes into an allocation.
fn kmem_interior(p: PercpuPtr<u8>) -> PercpuPtr<u8> {
    PercpuPtr::from_addr(p.addr() + 4)
}

#[test]
fn this_cpu_inc_sums_exactly_across_threads() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let c = m.alloc_percpu::<u64>().unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..100_000 {
                    c.this_cpu_inc();
                }
            });
        }
    });
    assert_eq!(c.sum(), 800_000);
    assert_eq!(c.read(0) + c.read(1), 800_000);
}

#[test]
fn get_cpu_var_read_modify_write_is_exact() {
    // Plain (non-atomic) read-modify-writes under get_cpu_var: exact only
    // because the hosted platform really pins.
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let c = m.alloc_percpu::<u64>().unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..20_000 {
                    let v = c.get_cpu_var();
                    let x = v.get();
                    std::hint::spin_loop();
                    v.set(x + 1);
                }
                for _ in 0..20_000 {
                    m.preempt_disable();
                    c.__this_cpu_inc();
                    m.preempt_enable();
                }
            });
        }
    });
    assert_eq!(c.sum(), 8 * 40_000);
}

#[test]
fn get_cpu_pins_until_put_cpu() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Busy threads that migrate and pin themselves too.
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let cpu = m.get_cpu();
                    assert_eq!(m.platform.smp_processor_id(), cpu);
                    m.put_cpu();
                    std::thread::yield_now();
                }
            });
        }
        for _ in 0..50 {
            let cpu = m.get_cpu();
            assert!(m.in_atomic());
            // Nesting: the same CPU, the count goes up.
            let again = m.get_cpu();
            assert_eq!(again, cpu);
            assert_eq!(m.preempt_count(), 2);
            for _ in 0..100 {
                std::thread::yield_now();
                assert_eq!(m.platform.smp_processor_id(), cpu);
            }
            m.put_cpu();
            assert_eq!(m.platform.smp_processor_id(), cpu);
            m.put_cpu();
            assert_eq!(m.preempt_count(), 0);
        }
        stop.store(true, Ordering::Relaxed);
    });
}

kmem::DEFINE_PER_CPU!(static LONG_COUNTER: i64);
kmem::DEFINE_PER_CPU!(static ULONG_COUNTER: u64);
kmem::DEFINE_PER_CPU!(static EVENTS: u32);

#[test]
fn define_per_cpu_static_variables() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let m2 = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let e = EVENTS.on(&m);
    assert_eq!(e.sum(), 0);
    e.this_cpu_add(5);
    e.write(1, 7);
    assert_eq!(kmem::per_cpu!(m, EVENTS, 1), 7);
    let cpu = m.get_cpu();
    assert!(cpu < 2);
    m.put_cpu();
    assert!(e.sum() == 12 || e.sum() == 7, "{}", e.sum());
    // Another machine has its own copy.
    assert_eq!(EVENTS.on(&m2).sum(), 0);
    // Static variables live in the first chunk's static area and are not
    // counted as allocations.
    let p = e.as_ptr().addr();
    let first = LONG_COUNTER.on(&m).as_ptr().addr();
    assert!(p.abs_diff(first) < PCPU_STATIC_SIZE);
    assert_eq!(m.percpu_stats().nr_alloc, 0);
    // The same variable keeps its offset.
    assert_eq!(EVENTS.on(&m).as_ptr(), e.as_ptr());
}

/// `lib/percpu_test.c`, case by case: every per-CPU operation is checked
/// against the same arithmetic on a local variable, with the C conversions
/// written out (`-ui_one` is the 32-bit unsigned 0xffffffff, zero-extended).
#[test]
fn percpu_test_mirror() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let long_counter = LONG_COUNTER.on(&m);
    let ulong_counter = ULONG_COUNTER.on(&m);
    let ui_one: u32 = std::hint::black_box(1);
    pr!(m, "percpu test start");
    m.preempt_disable();
    macro_rules! check {
        ($native:expr, $pcp:expr, $expected:expr) => {
            assert_eq!($native, $expected, "raw");
            assert_eq!($pcp.__this_cpu_read(), $expected, "pcp");
        };
    }
    long_counter.__this_cpu_write(0);
    ulong_counter.__this_cpu_write(0);

    let mut l: i64 = 0;
    let mut ul: u64;

    l = l.wrapping_add(-1);
    long_counter.__this_cpu_add(-1);
    check!(l, long_counter, -1);

    l = l.wrapping_add(1);
    long_counter.__this_cpu_add(1);
    check!(l, long_counter, 0);

    ul = 0;
    ulong_counter.__this_cpu_write(0);

    ul = ul.wrapping_add(1);
    ulong_counter.__this_cpu_add(1);
    check!(ul, ulong_counter, 1);

    // -1UL
    ul = ul.wrapping_add(u64::MAX);
    ulong_counter.__this_cpu_add(u64::MAX);
    check!(ul, ulong_counter, 0);

    // -(unsigned long)1
    ul = ul.wrapping_add(1u64.wrapping_neg());
    ulong_counter.__this_cpu_add(1u64.wrapping_neg());
    check!(ul, ulong_counter, u64::MAX);

    ul = 0;
    ulong_counter.__this_cpu_write(0);

    ul = ul.wrapping_sub(1);
    ulong_counter.__this_cpu_dec();
    check!(ul, ulong_counter, u64::MAX);

    // l += -ui_one: the unsigned int 0xffffffff, zero-extended to long.
    let minus_ui_one = ui_one.wrapping_neg() as i64;
    assert_eq!(minus_ui_one, 0xffff_ffff);
    l = l.wrapping_add(minus_ui_one);
    long_counter.__this_cpu_add(minus_ui_one);
    check!(l, long_counter, 0xffff_ffff);

    l = l.wrapping_add(ui_one as i64);
    long_counter.__this_cpu_add(ui_one as i64);
    check!(l, long_counter, 0x1_0000_0000);

    l = 0;
    long_counter.__this_cpu_write(0);

    // __this_cpu_sub(long_counter, ui_one) adds -(long)ui_one: -1, not
    // 0xffffffff.
    l = l.wrapping_sub(ui_one as i64);
    long_counter.__this_cpu_sub(ui_one as i64);
    check!(l, long_counter, -1);

    l = 0;
    long_counter.__this_cpu_write(0);

    l = l.wrapping_add(ui_one as i64);
    long_counter.__this_cpu_add(ui_one as i64);
    check!(l, long_counter, 1);

    l = l.wrapping_add(minus_ui_one);
    long_counter.__this_cpu_add(minus_ui_one);
    check!(l, long_counter, 0x1_0000_0000);

    l = 0;
    long_counter.__this_cpu_write(0);

    l = l.wrapping_sub(ui_one as i64);
    long_counter.this_cpu_sub(ui_one as i64);
    check!(l, long_counter, -1);
    // CHECK(l, long_counter, ULONG_MAX): the same bits read as unsigned long.
    assert_eq!(l as u64, u64::MAX);
    assert_eq!(long_counter.__this_cpu_read() as u64, u64::MAX);

    ul = 0;
    ulong_counter.__this_cpu_write(0);

    ul = ul.wrapping_add(ui_one as u64);
    ulong_counter.__this_cpu_add(ui_one as u64);
    check!(ul, ulong_counter, 1);

    ul = 0;
    ulong_counter.__this_cpu_write(0);

    ul = ul.wrapping_sub(ui_one as u64);
    ulong_counter.__this_cpu_sub(ui_one as u64);
    check!(ul, ulong_counter, u64::MAX);

    ul = 3;
    ulong_counter.__this_cpu_write(ul);

    ul = ulong_counter.this_cpu_sub_return(ui_one as u64);
    check!(ul, ulong_counter, 2);

    ul = ulong_counter.__this_cpu_sub_return(ui_one as u64);
    check!(ul, ulong_counter, 1);

    m.preempt_enable();
    pr!(m, "percpu test done");
    let d = m.dmesg();
    assert!(d.contains("percpu test start") && d.contains("percpu test done"));
}

#[test]
fn this_cpu_ops_semantics() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let c = m.alloc_percpu::<u8>().unwrap();
    let cpu = m.get_cpu();
    c.this_cpu_write(250);
    assert_eq!(c.this_cpu_add_return(10), 4); // wraps
    assert_eq!(c.this_cpu_xchg(7), 4);
    assert_eq!(c.this_cpu_cmpxchg(7, 9), 7);
    assert_eq!(c.this_cpu_cmpxchg(7, 11), 9);
    c.this_cpu_dec();
    assert_eq!(c.this_cpu_read(), 8);
    assert_eq!(c.read(cpu), 8);
    assert_eq!(c.read(1 - cpu), 0);
    m.put_cpu();
    let raw = c.into_raw();
    // SAFETY: owned again, freed on drop.
    let again = unsafe { PerCpu::from_raw(&m, raw) };
    drop(again);
    assert_eq!(m.percpu_stats().nr_cur_alloc, 0);
}
