//! The hosted platform against the real host: CPUs, futexes, RAM.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmem::platform::{task_flags, Platform, HARDIRQ_OFFSET, PREEMPT_OFFSET};
use kmem_hosted::platform::{host_cpu, rseq_available};
use kmem_hosted::ram::{host_page_size, rss_bytes};
use kmem_hosted::{HostRam, HostedPlatform};

const MIB: usize = 1 << 20;

fn quiet(nr_cpus: usize) -> HostedPlatform {
    HostedPlatform::new(nr_cpus, None, true)
}

// ---------------------------------------------------------------- CPUs ----

/// The host CPUs this thread may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(r, 0, "sched_getaffinity: {}", std::io::Error::last_os_error());
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

fn sched_getcpu() -> usize {
    // SAFETY: no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(cpu >= 0);
    cpu as usize
}

/// Pins a fresh thread to every allowed host CPU in turn and checks the CPU
/// id against `sched_getcpu()` for several machine sizes.
fn check_pinned_cpu_ids() {
    std::thread::spawn(|| {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        let host_n = kmem_hosted::platform::host_nr_cpus();
        for nr in [1, 2, 3, host_n, 64] {
            let p = quiet(nr);
            assert_eq!(p.nr_cpu_ids(), nr);
            for &cpu in &cpus {
                let _pin = common::pin_to(cpu);
                // sched_setaffinity migrates before returning; once pinned the
                // thread cannot move, so both answers are about `cpu`.
                assert_eq!(sched_getcpu(), cpu);
                assert_eq!(host_cpu(), cpu);
                let id = p.smp_processor_id();
                assert!(id < nr);
                assert_eq!(id, cpu % nr, "host cpu {cpu}, machine of {nr}");
            }
        }
    })
    .join()
    .unwrap();
}

#[test]
fn cpu_id_follows_pinning() {
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        let _p = quiet(1);
        assert!(rseq_available(), "glibc 2.35+ should have registered rseq");
    }
    check_pinned_cpu_ids();
}

#[test]
fn cpu_id_below_nr_cpus_on_many_threads() {
    let p = Arc::new(quiet(1));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    assert_eq!(p.smp_processor_id(), 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Runs in a child process with rseq turned off in glibc (see below).
#[test]
fn rseq_disabled_child() {
    if std::env::var_os("KMEM_HOSTED_RSEQ_CHILD").is_none() {
        return;
    }
    let _p = quiet(1);
    assert!(!rseq_available(), "the tunable should have disabled rseq");
    check_pinned_cpu_ids();
}

#[test]
fn cpu_id_falls_back_without_rseq() {
    common::run_without_rseq("rseq_disabled_child", "KMEM_HOSTED_RSEQ_CHILD");
}

// ------------------------------------------------------- task context ----

#[test]
fn flags_and_preempt_count_are_per_thread() {
    let p = Arc::new(quiet(2));
    assert_eq!(p.current_flags(), 0);
    assert_eq!(p.preempt_count(), 0);
    p.set_current_flags(task_flags::PF_MEMALLOC_NOIO);
    p.preempt_count_add(PREEMPT_OFFSET);
    p.preempt_count_add(HARDIRQ_OFFSET);

    let p2 = Arc::clone(&p);
    std::thread::spawn(move || {
        assert_eq!(p2.current_flags(), 0);
        assert_eq!(p2.preempt_count(), 0);
        p2.set_current_flags(task_flags::PF_MEMALLOC);
        p2.preempt_count_add(PREEMPT_OFFSET);
        assert_eq!(p2.current_flags(), task_flags::PF_MEMALLOC);
        assert_eq!(p2.preempt_count(), PREEMPT_OFFSET);
    })
    .join()
    .unwrap();

    // Another platform (another machine) sees the same task.
    let other = quiet(4);
    assert_eq!(other.current_flags(), task_flags::PF_MEMALLOC_NOIO);
    assert_eq!(other.preempt_count(), PREEMPT_OFFSET + HARDIRQ_OFFSET);

    p.preempt_count_sub(HARDIRQ_OFFSET);
    assert_eq!(p.preempt_count(), PREEMPT_OFFSET);
    p.preempt_count_sub(PREEMPT_OFFSET);
    assert_eq!(p.preempt_count(), 0);
    p.set_current_flags(0);
    assert_eq!(p.current_flags(), 0);
}

#[test]
fn task_state_usable_during_thread_teardown() {
    struct OnExit(Arc<HostedPlatform>, Arc<AtomicBool>);
    impl Drop for OnExit {
        fn drop(&mut self) {
            // Runs from a TLS destructor: must neither panic nor allocate.
            self.0.set_current_flags(task_flags::PF_MEMALLOC);
            let _ = self.0.current_flags();
            self.0.preempt_count_add(PREEMPT_OFFSET);
            self.0.preempt_count_sub(PREEMPT_OFFSET);
            let _ = self.0.smp_processor_id();
            self.1.store(true, Ordering::SeqCst);
        }
    }
    std::thread_local! {
        static GUARD: std::cell::RefCell<Option<OnExit>> = const { std::cell::RefCell::new(None) };
    }
    let p = Arc::new(quiet(2));
    let ran = Arc::new(AtomicBool::new(false));
    let (p2, ran2) = (Arc::clone(&p), Arc::clone(&ran));
    std::thread::spawn(move || {
        GUARD.with(|g| *g.borrow_mut() = Some(OnExit(p2, ran2)));
    })
    .join()
    .unwrap();
    assert!(ran.load(Ordering::SeqCst));
}

#[test]
fn comm_names_the_thread() {
    std::thread::Builder::new()
        .name("kmemd".into())
        .spawn(|| {
            let mut buf = [0u8; 16];
            let n = quiet(1).current_comm(&mut buf);
            assert_eq!(&buf[..n], b"kmemd");
        })
        .unwrap()
        .join()
        .unwrap();
}

// ------------------------------------------------------------- futexes ----

#[test]
fn futex_waiter_sleeps_until_woken() {
    let p = Arc::new(quiet(2));
    let word = Arc::new(AtomicU32::new(0));
    let waiting = Arc::new(AtomicBool::new(false));

    let waiter = {
        let (p, word, waiting) = (Arc::clone(&p), Arc::clone(&word), Arc::clone(&waiting));
        std::thread::spawn(move || {
            let mut sleeps = 0u32;
            waiting.store(true, Ordering::SeqCst);
            while word.load(Ordering::Acquire) == 0 {
                p.futex_wait(&word, 0, None);
                sleeps += 1;
            }
            (word.load(Ordering::Acquire), sleeps)
        })
    };
    while !waiting.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiter.is_finished(), "waiter returned without the word changing");
    word.store(7, Ordering::Release);
    p.futex_wake(&word, 1);
    let (seen, sleeps) = waiter.join().unwrap();
    assert_eq!(seen, 7);
    // It slept rather than spun (a spurious wake-up or two is allowed).
    assert!((1..=4).contains(&sleeps), "futex_wait returned {sleeps} times");
}

#[test]
fn futex_wake_all() {
    let p = Arc::new(quiet(2));
    let word = Arc::new(AtomicU32::new(0));
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let (p, word) = (Arc::clone(&p), Arc::clone(&word));
            std::thread::spawn(move || {
                while word.load(Ordering::Acquire) == 0 {
                    p.futex_wait(&word, 0, None);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    word.store(1, Ordering::Release);
    p.futex_wake(&word, u32::MAX);
    for w in waiters {
        w.join().unwrap();
    }
}

#[test]
fn futex_wait_times_out() {
    let p = quiet(1);
    let word = AtomicU32::new(0);
    for timeout in [Duration::from_millis(30), Duration::from_millis(100)] {
        let start = Instant::now();
        let t0 = p.now_ns();
        p.futex_wait(&word, 0, Some(timeout.as_nanos() as u64));
        assert!(start.elapsed() >= timeout, "returned before the timeout");
        assert!(p.now_ns() - t0 >= timeout.as_nanos() as u64);
    }
    // A stale expected value returns at once (no timeout needed to get here).
    p.futex_wait(&word, 1, None);
    // A zero timeout returns at once too.
    p.futex_wait(&word, 0, Some(0));
}

#[test]
fn futex_on_a_word_in_ram() {
    // The machine's wait words live in its RAM, a MAP_SHARED memfd mapping.
    let ram = HostRam::new(4 * MIB as u64).unwrap();
    let p = Arc::new(HostedPlatform::with_ram(2, &ram, true).unwrap());
    let addr = ram.base() + MIB;
    // SAFETY: the address is inside the linear map, 4-aligned, and only used
    // through atomics while `ram` lives (the thread is joined before drop).
    let word: &'static AtomicU32 = unsafe { &*(addr as *const AtomicU32) };
    let waiter = {
        let p = Arc::clone(&p);
        std::thread::spawn(move || {
            while word.load(Ordering::Acquire) == 0 {
                p.futex_wait(word, 0, None);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    word.store(1, Ordering::Release);
    p.futex_wake(word, 1);
    waiter.join().unwrap();
}

// ----------------------------------------------------------------- RAM ----

fn page_ptr(ram: &HostRam, phys: usize) -> *mut u8 {
    assert!(phys < ram.size());
    (ram.base() + phys) as *mut u8
}

/// Private lowmem (`HostRam::with_private_lowmem`): the linear map's first
/// part is private anonymous memory, which cannot be aliased and is
/// discarded with `MADV_DONTNEED`; the rest is the memfd's, as before, and
/// a fork child gets the private part copy-on-write without any copy.
#[test]
fn private_lowmem_is_not_the_memfds() {
    let page = host_page_size();
    let ram = HostRam::with_private_lowmem(16 * MIB as u64, 8 * MIB).unwrap();
    assert_eq!(ram.private(), 8 * MIB);
    // Lowmem is never backed by transparent huge pages (`nh`).
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let at = smaps
        .find(&format!("{:x}-{:x} ", ram.base(), ram.base() + 8 * MIB))
        .unwrap();
    let flags = smaps[at..].lines().find(|l| l.starts_with("VmFlags:")).unwrap();
    assert!(flags.split_whitespace().any(|f| f == "nh"), "{flags}");
    let window = ram.reserve_window(MIB).unwrap();
    // SAFETY: the targets lie in `window`, reserved above and unused.
    unsafe {
        let err = ram.map_alias(page as u64, page, window).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        ram.map_alias((8 * MIB) as u64, page, window).unwrap();
        page_ptr(&ram, 8 * MIB).write_volatile(0x11);
        assert_eq!((window as *const u8).read_volatile(), 0x11);
    }
    // Writes to the private part are not the file's, and count as resident.
    assert_eq!(ram.ram_resident_bytes().unwrap(), page as u64);
    let p = page_ptr(&ram, 2 * page);
    // SAFETY: a page of our linear map.
    unsafe { core::ptr::write_bytes(p, 0x22, 2 * page) };
    assert_eq!(ram.ram_resident_bytes().unwrap(), 3 * page as u64);
    let mut buf = [0u8; 1];
    // SAFETY: reading one byte of the memfd into `buf`.
    let n = unsafe { libc::pread(ram.fd().unwrap(), buf.as_mut_ptr().cast(), 1, 2 * page as i64) };
    assert_eq!((n, buf[0]), (1, 0), "private lowmem reached the memfd");
    // A discard across the boundary takes both parts back (checked before
    // reading them: a read would map them again).
    ram.discard((7 * MIB) as u64, (2 * MIB) as u64).unwrap();
    assert_eq!(ram.ram_resident_bytes().unwrap(), 2 * page as u64);
    // SAFETY: reading our mappings.
    unsafe {
        assert_eq!((window as *const u8).read_volatile(), 0);
        assert_eq!(p.read_volatile(), 0x22);
    }
    ram.discard(2 * page as u64, 2 * page as u64).unwrap();
    assert!(ram.ram_resident_bytes().unwrap() <= page as u64);
    // SAFETY: as above.
    assert_eq!(unsafe { p.read_volatile() }, 0);
    // SAFETY: `window` is ours; nothing refers into it.
    unsafe { ram.release_window(window, MIB).unwrap() };
}

#[test]
fn alias_shares_pages_with_linear_map() {
    let page = host_page_size();
    let ram = HostRam::new(16 * MIB as u64).unwrap();
    let window = ram.reserve_window(MIB).unwrap();
    assert!(window + MIB <= ram.base() || window >= ram.base() + ram.size());

    // Two scattered physical pages, mapped in reverse order (as vmalloc does).
    let (pa, pb) = (7 * page, 3 * page);
    // SAFETY: both targets lie in `window`, reserved above and unused.
    unsafe {
        ram.map_alias(pa as u64, page, window).unwrap();
        ram.map_alias(pb as u64, page, window + page).unwrap();
    }
    let (va, vb) = (window as *mut u8, (window + page) as *mut u8);

    // SAFETY: all pointers are inside live read/write mappings of RAM; we
    // use raw volatile accesses only.
    unsafe {
        page_ptr(&ram, pa).add(100).write_volatile(0xab);
        assert_eq!(va.add(100).read_volatile(), 0xab);
        vb.add(page - 1).write_volatile(0xcd);
        assert_eq!(page_ptr(&ram, pb).add(page - 1).read_volatile(), 0xcd);
        assert_eq!(page_ptr(&ram, pa).add(page - 1).read_volatile(), 0);
    }

    // Remap the first alias slot to another page: the old contents stay in
    // RAM, the slot now shows the new page.
    // SAFETY: `window` is ours; no references into it exist.
    unsafe {
        ram.unmap_alias(window, page).unwrap();
        ram.map_alias(pb as u64, page, window).unwrap();
        assert_eq!(va.add(page - 1).read_volatile(), 0xcd);
        assert_eq!(page_ptr(&ram, pa).add(100).read_volatile(), 0xab);
        ram.unmap_alias(window, 2 * page).unwrap();
        ram.release_window(window, MIB).unwrap();
    }
}

#[test]
fn discard_zeroes_and_returns_memory() {
    let page = host_page_size();
    let ram = HostRam::new(64 * MIB as u64).unwrap();
    let p = HostedPlatform::with_ram(2, &ram, true).unwrap();
    assert!(p.discard_zeroes());
    assert_eq!(ram.ram_resident_bytes().unwrap(), 0);

    // Dirty 4 MiB at 8 MiB.
    let (phys, len) = (8 * MIB, 4 * MIB);
    // SAFETY: the range is inside the linear map.
    unsafe { std::ptr::write_bytes(page_ptr(&ram, phys), 0x5a, len) };
    let dirty = ram.ram_resident_bytes().unwrap();
    assert!(dirty >= len as u64, "resident {dirty}");

    // Through the HostRam: one page.
    ram.discard(phys as u64, page as u64).unwrap();
    // Through the platform, as the page allocator does: the rest.
    p.discard_ram((phys + page) as u64, (len - page) as u64);

    assert!(ram.ram_resident_bytes().unwrap() <= dirty - len as u64);
    // SAFETY: the range is inside the linear map.
    let s = unsafe { std::slice::from_raw_parts(page_ptr(&ram, phys), len) };
    assert!(s.iter().all(|&b| b == 0), "discarded RAM must read zero");
}

#[test]
fn platform_outlives_ram() {
    let ram = HostRam::new(MIB as u64).unwrap();
    let p = HostedPlatform::with_ram(1, &ram, true).unwrap();
    drop(ram);
    // The platform holds its own descriptor: still harmless.
    p.discard_ram(0, MIB as u64);
}

#[test]
fn huge_ram_costs_nothing_until_touched() {
    const GIB: u64 = 1 << 30;
    let page = host_page_size();
    let rss_before = rss_bytes().unwrap();
    let ram = HostRam::new(64 * GIB).unwrap();
    assert_eq!(ram.size() as u64, 64 * GIB);
    assert_eq!(ram.ram_resident_bytes().unwrap(), 0);

    let spots = [0, 32 * GIB as usize, ram.size() - page];
    for &phys in &spots {
        // SAFETY: inside the linear map.
        unsafe { page_ptr(&ram, phys).write_volatile(1) };
    }
    assert_eq!(ram.ram_resident_bytes().unwrap(), (spots.len() * page) as u64);
    // Other tests run concurrently, so allow generous slack; 64 GiB of
    // touched memory would show as far more.
    let grew = rss_bytes().unwrap().saturating_sub(rss_before);
    assert!(grew < 256 * MIB as u64, "rss grew by {grew}");

    for &phys in &spots {
        ram.discard(phys as u64, page as u64).unwrap();
    }
    assert_eq!(ram.ram_resident_bytes().unwrap(), 0);
}

// ---------------------------------------------------------------- misc ----

#[test]
fn printk_and_dump_stack_do_not_fail() {
    let p = HostedPlatform::new(1, None, false);
    p.printk(format_args!("kmem-hosted test: printk {} works", 42));
    p.printk(format_args!("{:-<2000}", "long line "));
    p.dump_stack();
    p.set_quiet(true);
    assert!(p.is_quiet());
    p.printk(format_args!("this must not appear"));
    p.dump_stack();
}

#[test]
fn types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<HostedPlatform>();
    check::<HostRam>();
    fn as_platform<P: Platform>(p: &P) -> usize {
        p.nr_cpu_ids()
    }
    assert_eq!(as_platform(&quiet(3)), 3);
}

#[test]
fn yield_and_relax() {
    let p = quiet(1);
    p.yield_now();
    p.cpu_relax();
    p.yield_cpu();
}
