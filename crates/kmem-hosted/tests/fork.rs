//! fork keeps its meaning: after `fork` the child's machine memory is a
//! private copy (`kmem_hosted::fork`). Memory allocated before the fork and
//! written by the child is unchanged in the parent, both keep allocating
//! without corrupting each other, a child can exec, and a fork in the middle
//! of other threads' allocations leaves the child's allocator usable and
//! gives it the memory of one instant (the other threads are stopped while
//! the child copies).
//!
//! The children only use the machine, raw system calls and `_exit`: no Rust
//! allocation, no stdout (the test harness's threads do not exist there).

mod common;

use common::forking::*;
use kmem::GFP_KERNEL;
use kmem_hosted::{default_machine, Machine};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The (device, inode) of a descriptor.
fn file_id(fd: i32) -> (u64, u64) {
    // SAFETY: an all-zero stat is a valid value to overwrite.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is writable.
    assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
    (st.st_dev, st.st_ino)
}

#[test]
fn child_writes_stay_in_the_child() {
    let m = Machine::boot("quiet mem=256M kswapd=off").unwrap();
    let small = m.kmalloc(64, GFP_KERNEL).unwrap().as_ptr();
    let large = m.kmalloc(64 << 10, GFP_KERNEL).unwrap().as_ptr();
    let vbuf = m.vmalloc(8 << 20).unwrap().as_ptr();
    fill(small, 64, b'P');
    fill(large, 64 << 10, b'P');
    fill(vbuf, 8 << 20, b'P');
    let parent_ram = file_id(m.ram().fd().unwrap());

    let (code, msg) = fork_with(|out| {
        fill(small, 64, b'C');
        fill(large, 64 << 10, b'C');
        fill(vbuf, 8 << 20, b'C');
        let own = all(small, 64, b'C') && all(large, 64 << 10, b'C') && all(vbuf, 8 << 20, b'C');
        let churned = churn(&m, b'c', 50);
        // The child's RAM is another file than the parent's.
        let new_file = file_id(m.ram().fd().unwrap()) != parent_ram;
        send(out, if own { b"own-writes " } else { b"LOST-writes " });
        send(out, if churned { b"churn-ok " } else { b"CHURN-BAD " });
        send(out, if new_file { b"private-ram" } else { b"SHARED-RAM" });
        0
    });
    assert_eq!((code, msg.as_str()), (0, "own-writes churn-ok private-ram"));
    assert!(
        all(small, 64, b'P'),
        "the child's write reached the parent (kmalloc)"
    );
    assert!(
        all(large, 64 << 10, b'P'),
        "the child's write reached the parent (large kmalloc)"
    );
    assert!(
        all(vbuf, 8 << 20, b'P'),
        "the child's write reached the parent (vmalloc)"
    );
    assert!(churn(&m, b'p', 50));
    // SAFETY: allocated above.
    unsafe {
        m.kfree(small);
        m.kfree(large);
    }
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(vbuf) };
}

/// With private lowmem (`kmem.private_lowmem=1`, libkmalloc's default) the
/// child gets lowmem copy-on-write from `fork` itself, and a copy of the
/// memfd (HighMem, where vmalloc's pages are) as before.
#[test]
fn private_lowmem_is_copy_on_write() {
    let m = Machine::boot("quiet mem=256M kmem.lowmem=128M kmem.private_lowmem=1 kswapd=off").unwrap();
    assert_eq!(m.ram().private(), 128 << 20);
    let small = m.kmalloc(64, GFP_KERNEL).unwrap().as_ptr();
    let large = m.kmalloc(64 << 10, GFP_KERNEL).unwrap().as_ptr();
    let vbuf = m.vmalloc(8 << 20).unwrap().as_ptr();
    let base = m.ram().base();
    assert!(
        (small as usize) < base + m.ram().private(),
        "kmalloc memory is lowmem"
    );
    fill(small, 64, b'P');
    fill(large, 64 << 10, b'P');
    fill(vbuf, 8 << 20, b'P');
    let (code, msg) = fork_with(|out| {
        let seen = all(small, 64, b'P') && all(large, 64 << 10, b'P') && all(vbuf, 8 << 20, b'P');
        fill(small, 64, b'C');
        fill(large, 64 << 10, b'C');
        fill(vbuf, 8 << 20, b'C');
        let own = all(small, 64, b'C') && all(large, 64 << 10, b'C') && all(vbuf, 8 << 20, b'C');
        let churned = churn(&m, b'c', 50);
        let v2 = m.vmalloc(4 << 20);
        let vmalloc_ok = v2.is_ok_and(|v| {
            fill(v.as_ptr(), 4 << 20, b'v');
            let ok = all(v.as_ptr(), 4 << 20, b'v');
            // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
            unsafe { m.vfree(v.as_ptr()) };
            ok
        });
        send(out, if seen { b"snapshot " } else { b"NO-SNAPSHOT " });
        send(out, if own { b"own-writes " } else { b"LOST-writes " });
        send(out, if churned { b"churn-ok " } else { b"CHURN-BAD " });
        send(out, if vmalloc_ok { b"vmalloc-ok" } else { b"VMALLOC-BAD" });
        0
    });
    assert_eq!(
        (code, msg.as_str()),
        (0, "snapshot own-writes churn-ok vmalloc-ok")
    );
    assert!(all(small, 64, b'P') && all(large, 64 << 10, b'P') && all(vbuf, 8 << 20, b'P'));
    assert!(churn(&m, b'p', 50));
    // SAFETY: allocated above.
    unsafe {
        m.kfree(small);
        m.kfree(large);
    }
    // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
    unsafe { m.vfree(vbuf) };
}

#[test]
fn parent_and_child_allocate_at_the_same_time() {
    let m = Machine::boot("quiet mem=256M kswapd=off").unwrap();
    let before: Vec<usize> = (0..200)
        .map(|i| {
            let p = m.kmalloc(32 + i * 8, GFP_KERNEL).unwrap().as_ptr();
            fill(p, 32 + i * 8, i as u8);
            p as usize
        })
        .collect();
    let (code, msg) = fork_with(|out| {
        // Free half of what the parent allocated, allocate a lot more.
        for &p in before.iter().step_by(2) {
            // SAFETY: allocated before the fork; the child owns its copy.
            unsafe { m.kfree(p as *const u8) };
        }
        let ok = churn(&m, b'c', 200);
        let kept = before
            .iter()
            .enumerate()
            .skip(1)
            .step_by(2)
            .all(|(i, &p)| all(p as *const u8, 32 + i * 8, i as u8));
        send(out, if ok && kept { b"ok" } else { b"BAD" });
        0
    });
    assert_eq!((code, msg.as_str()), (0, "ok"));
    assert!(churn(&m, b'p', 200));
    for (i, &p) in before.iter().enumerate() {
        assert!(
            all(p as *const u8, 32 + i * 8, i as u8),
            "block {i} changed in the parent"
        );
        // SAFETY: allocated above, still ours (the child freed its copies).
        unsafe { m.kfree(p as *const u8) };
    }
}

#[test]
fn fork_then_exec() {
    let m = Machine::boot("quiet mem=128M kswapd=off").unwrap();
    let p = m.kmalloc(100, GFP_KERNEL).unwrap().as_ptr();
    fill(p, 100, 7);
    let (code, _) = fork_with(|_| {
        // SAFETY: NUL-terminated arguments; exec replaces the child.
        unsafe {
            libc::execl(
                c"/bin/sh".as_ptr(),
                c"sh".as_ptr(),
                c"-c".as_ptr(),
                c"exit 42".as_ptr(),
                core::ptr::null::<libc::c_char>(),
            )
        };
        127
    });
    assert_eq!(code, 42);
    assert!(all(p, 100, 7));
    // SAFETY: allocated above.
    unsafe { m.kfree(p) };
}

/// Forks while other threads allocate from the default machine (whose
/// spinlocks the fork gate covers): the child finds no lock held by a thread
/// that does not exist there, and its allocator works, many times over.
#[test]
fn fork_while_other_threads_allocate() {
    let m: &'static Machine = default_machine();
    let workers = AllocatingThreads::start(m, true);
    // Many short rounds: each fork lands at another point of the workers' loops.
    for round in 0..150 {
        let (code, msg) = fork_with(|out| {
            let ok = churn(m, b'c', 2);
            let v = m.vmalloc(1 << 20);
            let vok = v.is_ok();
            if let Ok(v) = v {
                fill(v.as_ptr(), 1 << 20, 1);
                // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
                unsafe { m.vfree(v.as_ptr()) };
            }
            send(out, if ok && vok { b"ok" } else { b"BAD" });
            0
        });
        assert_eq!((code, msg.as_str()), (0, "ok"), "round {round}");
    }
    workers.stop();
}

/// Appends the decimal digits of `v` to `buf` at `*len` (no allocation).
fn put_dec(buf: &mut [u8], len: &mut usize, v: u64) {
    let mut digits = [0u8; 20];
    let mut n = 0;
    let mut v = v;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in digits[..n].iter().rev() {
        if *len < buf.len() {
            buf[*len] = d;
            *len += 1;
        }
    }
}

/// Checks that the words of one writer's objects, read in the order the
/// writer stores them, are `k + 1` up to some word and `k` from there on:
/// what one instant of a thread that writes pass after pass looks like.
/// Returns the first word that breaks it: (object, word, value, previous value).
fn one_instant(objs: &[(usize, usize)]) -> Result<(), (usize, usize, u64, u64)> {
    let mut first = None;
    let mut prev = None;
    for (o, &(p, words)) in objs.iter().enumerate() {
        for w in 0..words {
            // SAFETY: `p` is a live allocation of `words` u64s.
            let v = unsafe { core::ptr::read_volatile((p as *const u64).add(w)) };
            let first = *first.get_or_insert(v);
            let last = prev.unwrap_or(v);
            // Never growing along the write order, and one pass apart at most.
            if v > last || first - v > 1 {
                return Err((o, w, v, last));
            }
            prev = Some(v);
        }
    }
    Ok(())
}

/// Forks while other threads store their pass number into every word of
/// their allocations (small and large kmalloc objects and a vmalloc area),
/// in the same order, pass after pass, as fast as they can. The child's RAM
/// must be a copy of one instant: for each thread, the words read in write
/// order are pass `k + 1` up to the word it was about to store, and pass `k`
/// after it. A copy made while the writers run mixes several passes.
#[test]
fn fork_copies_other_threads_writes_at_one_instant() {
    const WRITERS: usize = 3;
    const SIZES: [usize; 8] = [16, 64, 200, 1024, 4096, 10000, 65536, 300000];
    let m: &'static Machine = default_machine();
    let stop = Arc::new(AtomicBool::new(false));
    let passes: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let (tx, rx) = std::sync::mpsc::channel();
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (stop, passes, tx) = (stop.clone(), passes.clone(), tx.clone());
            std::thread::spawn(move || {
                // (address, number of u64 words), in write order.
                let mut objs: Vec<(usize, usize)> = SIZES
                    .iter()
                    .cycle()
                    .take(SIZES.len() * 2)
                    .map(|&n| (m.kmalloc(n, GFP_KERNEL).unwrap().as_ptr() as usize, n / 8))
                    .collect();
                let v = m.vmalloc(256 << 10).unwrap().as_ptr() as usize;
                objs.insert(objs.len() / 2, (v, (256 << 10) / 8));
                let write_pass = |k: u64| {
                    for &(p, words) in &objs {
                        for w in 0..words {
                            // SAFETY: `p` is this thread's allocation of `words` u64s.
                            unsafe { core::ptr::write_volatile((p as *mut u64).add(w), k) };
                        }
                    }
                };
                write_pass(1);
                tx.send(objs.clone()).unwrap();
                let mut k = 1;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    write_pass(k);
                    passes[t].store(k, Ordering::Relaxed);
                }
                for &(p, _) in &objs {
                    if p == v {
                        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
                        unsafe { m.vfree(v as *const u8) };
                    } else {
                        // SAFETY: allocated above.
                        unsafe { m.kfree(p as *const u8) };
                    }
                }
            })
        })
        .collect();
    let objs: Vec<Vec<(usize, usize)>> = (0..WRITERS).map(|_| rx.recv().unwrap()).collect();
    for round in 0..40 {
        // Let every writer get into its passes.
        let seen: Vec<u64> = passes.iter().map(|p| p.load(Ordering::Relaxed)).collect();
        while passes
            .iter()
            .zip(&seen)
            .any(|(p, &s)| p.load(Ordering::Relaxed) < s + 2)
        {
            std::thread::yield_now();
        }
        let (code, msg) = fork_with(|out| {
            let mut buf = [0u8; 200];
            let mut len = 0;
            for (t, objs) in objs.iter().enumerate() {
                if let Err((o, w, v, last)) = one_instant(objs) {
                    for (i, x) in [t as u64, o as u64, w as u64, v, last].into_iter().enumerate() {
                        let labels: [&[u8]; 5] = [b"writer ", b" object ", b" word ", b": ", b" after "];
                        let label = labels[i];
                        let n = label.len().min(buf.len() - len);
                        buf[len..len + n].copy_from_slice(&label[..n]);
                        len += n;
                        put_dec(&mut buf, &mut len, x);
                    }
                    send(out, &buf[..len]);
                    return 1;
                }
            }
            // The child's allocator works too.
            send(out, if churn(m, b'c', 5) { b"ok" } else { b"BAD churn" });
            0
        });
        assert_eq!((code, msg.as_str()), (0, "ok"), "round {round}");
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
}

/// A program that handles the stop signal (`SIGRTMIN + 7`) itself keeps its
/// handler: forks then go without stopping the other threads, and say so.
#[test]
fn program_handler_of_the_stop_signal_is_kept() {
    let m: &'static Machine = default_machine();
    let (code, msg) = fork_with(|out| {
        // This child is a process of its own: the program takes the signal here.
        extern "C" fn programs_handler(_: libc::c_int) {}
        let sig = libc::SIGRTMIN() + 7;
        // SAFETY: a zeroed sigaction is valid; the handler does nothing.
        let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
        sa.sa_sigaction = programs_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: `sa` is complete.
        unsafe { libc::sigaction(sig, &sa, core::ptr::null_mut()) };
        // Standard error into a pipe, to read the warning.
        let mut err = [0i32; 2];
        // SAFETY: `err` has room for two descriptors; dup2 replaces fd 2.
        unsafe {
            libc::pipe(err.as_mut_ptr());
            libc::dup2(err[1], 2);
            libc::close(err[1]);
            libc::fcntl(err[0], libc::F_SETFL, libc::O_NONBLOCK);
        }
        // Another thread, so that the fork would stop it; it waits on a pipe.
        let mut hold = [0i32; 2];
        // SAFETY: `hold` has room for two descriptors.
        unsafe { libc::pipe(hold.as_mut_ptr()) };
        let r = hold[0];
        let t = std::thread::spawn(move || {
            let mut b = 0u8;
            // SAFETY: reading one byte into `b`.
            unsafe { libc::read(r, (&mut b as *mut u8).cast(), 1) };
        });
        // SAFETY: the grandchild only allocates and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = m.kmalloc(100, GFP_KERNEL).is_ok();
            // SAFETY: ending the grandchild.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = -1;
        // SAFETY: waiting for our own child; then letting the thread go.
        unsafe {
            libc::waitpid(pid, &mut status, 0);
            libc::close(hold[1]);
        }
        t.join().unwrap();
        let mut buf = [0u8; 512];
        // SAFETY: reading into `buf`.
        let n = unsafe { libc::read(err[0], buf.as_mut_ptr().cast(), buf.len()) }.max(0) as usize;
        let warned = buf[..n].windows(22).any(|w| w == b"has the program's hand");
        // SAFETY: querying the disposition into a zeroed struct.
        let mut cur: libc::sigaction = unsafe { core::mem::zeroed() };
        // SAFETY: `cur` is writable.
        unsafe { libc::sigaction(sig, core::ptr::null(), &mut cur) };
        let kept = cur.sa_sigaction == sa.sa_sigaction;
        send(out, if status == 0 { b"forked " } else { b"FORK-FAILED " });
        send(out, if warned { b"warned " } else { b"NO-WARNING " });
        send(
            out,
            if kept {
                b"handler-kept"
            } else {
                b"HANDLER-REPLACED"
            },
        );
        0
    });
    assert_eq!((code, msg.as_str()), (0, "forked warned handler-kept"));
}

/// The shared anonymous mappings of this process (`/dev/zero (deleted)`,
/// `rw-s`), by start address and inode.
fn shared_anonymous_pages() -> Vec<(usize, u64)> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" rw-s ") && l.ends_with("/dev/zero (deleted)"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let start = usize::from_str_radix(f[0].split('-').next().unwrap(), 16).unwrap();
            (start, f[4].parse().unwrap())
        })
        .collect()
}

/// A child stops its own threads on a phase word of its own, which it maps
/// in place of its parent's before its first stop (`fork.rs`,
/// `own_phase_page`), while the parent keeps forking and stopping its
/// threads at the same time: neither process's stop wakes or parks the
/// other's threads.
#[test]
fn child_stops_its_threads_while_its_parent_stops_its_own() {
    let m: &'static Machine = default_machine();
    let workers = AllocatingThreads::start(m, false);
    let stop = Arc::new(AtomicBool::new(false));
    let parent_forks = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut forks = 0;
            while !stop.load(Ordering::Relaxed) {
                let (code, msg) = fork_with(|out| {
                    send(out, if churn(m, b'p', 1) { b"ok" } else { b"BAD" });
                    0
                });
                assert_eq!((code, msg.as_str()), (0, "ok"), "parent's fork {forks}");
                forks += 1;
            }
            forks
        })
    };
    // The phase page: the one shared anonymous page of this process (its
    // inode tells the mapping), mapped by the first fork that stops threads
    // (this one, with the workers running, if no test forked before).
    let _ = fork_with(|_| 0);
    let inherited = shared_anonymous_pages();
    assert_eq!(inherited.len(), 1, "{inherited:?}");
    for round in 0..4 {
        let (code, msg) = fork_with(|out| {
            // Not replaced yet: the parent's page.
            send(
                out,
                if shared_anonymous_pages() == inherited {
                    b"lazy "
                } else {
                    b"EAGER "
                },
            );
            // This process's own threads, which its forks below stop.
            let threads = AllocatingThreads::start(m, false);
            let mut ok = true;
            for i in 0..20 {
                let (c, msg) = fork_with(|o| {
                    send(o, if churn(m, b'g', 1) { b"ok" } else { b"BAD" });
                    0
                });
                ok &= c == 0 && msg == "ok";
                if i == 0 {
                    // Its first stop mapped a page of its own at the same address.
                    let own = shared_anonymous_pages();
                    let replaced = own.len() == 1 && own[0].0 == inherited[0].0 && own[0].1 != inherited[0].1;
                    send(out, if replaced { b"own " } else { b"SHARED " });
                }
            }
            threads.stop();
            send(out, if ok { b"ok" } else { b"BAD" });
            0
        });
        assert_eq!((code, msg.as_str()), (0, "lazy own ok"), "round {round}");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(parent_forks.join().unwrap() > 0);
    workers.stop();
}
