//! fork keeps its meaning: after `fork` the child's machine memory is a
//! private copy (`kmem_hosted::fork`). Memory allocated before the fork and
//! written by the child is unchanged in the parent, both keep allocating
//! without corrupting each other, a child can exec, and a fork in the middle
//! of other threads' allocations leaves the child's allocator usable.
//!
//! The children only use the machine, raw system calls and `_exit`: no Rust
//! allocation, no stdout (the test harness's threads do not exist there).

use kmem::{GFP_KERNEL, PAGE_SIZE};
use kmem_hosted::{default_machine, Machine};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Writes `msg` to `fd` (a pipe) without allocating.
fn send(fd: i32, msg: &[u8]) {
    // SAFETY: `msg` is readable for its length.
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

/// Forks; runs `child` in the child (its return value is the exit status,
/// and what it sends to the pipe is returned to the parent with the status).
fn fork_with(child: impl FnOnce(i32) -> i32) -> (i32, String) {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only calls `child`, which sticks to async-signal-safe
    // calls and the machine, then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(fds[0]) };
        // A deadlock in the child ends it instead of hanging the test.
        // SAFETY: alarm has no preconditions.
        unsafe { libc::alarm(20) };
        let code = child(fds[1]);
        // SAFETY: ending the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: closing the parent's copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: reading into `buf`.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fds[0]) };
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    (code, String::from_utf8_lossy(&out).into_owned())
}

/// Fills `len` bytes at `p` with `b`.
fn fill(p: *mut u8, len: usize, b: u8) {
    // SAFETY: callers pass live allocations of at least `len` bytes.
    unsafe { core::ptr::write_bytes(p, b, len) };
}

/// Whether all `len` bytes at `p` are `b`.
fn all(p: *const u8, len: usize, b: u8) -> bool {
    // SAFETY: callers pass live allocations of at least `len` bytes.
    unsafe { core::slice::from_raw_parts(p, len) }
        .iter()
        .all(|&x| x == b)
}

/// Allocates and frees a mix of sizes, checking each block keeps its pattern.
fn churn(m: &kmem::Kmem<kmem_hosted::HostedPlatform>, tag: u8, rounds: usize) -> bool {
    let mut ok = true;
    let mut held = [core::ptr::null_mut::<u8>(); 64];
    for r in 0..rounds {
        for (i, slot) in held.iter_mut().enumerate() {
            let n = (r * 131 + i * 977) % 20000 + 1;
            let Ok(p) = m.kmalloc(n, GFP_KERNEL) else {
                return false;
            };
            fill(p.as_ptr(), n, tag);
            *slot = p.as_ptr();
        }
        for (i, slot) in held.iter_mut().enumerate() {
            let n = (r * 131 + i * 977) % 20000 + 1;
            ok &= all(*slot, n, tag);
            // SAFETY: allocated above.
            unsafe { m.kfree(*slot) };
        }
    }
    ok
}

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
    let parent_ram = file_id(m.ram().fd().as_raw_fd());

    let (code, msg) = fork_with(|out| {
        fill(small, 64, b'C');
        fill(large, 64 << 10, b'C');
        fill(vbuf, 8 << 20, b'C');
        let own = all(small, 64, b'C') && all(large, 64 << 10, b'C') && all(vbuf, 8 << 20, b'C');
        let churned = churn(&m, b'c', 50);
        // The child's RAM is another file than the parent's.
        let new_file = file_id(m.ram().fd().as_raw_fd()) != parent_ram;
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
    m.vfree(vbuf);
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
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    assert!(churn(m, b'a' + t as u8, 1));
                    // Page allocator and vmalloc paths take the zone and vmap locks.
                    let pages = m.alloc_pages(GFP_KERNEL, (n % 4) as u32).unwrap();
                    let v = m.vmalloc(PAGE_SIZE * (1 + n % 16)).unwrap();
                    // SAFETY: allocated just above.
                    unsafe { m.__free_pages(pages, (n % 4) as u32) };
                    m.vfree(v.as_ptr());
                    n += 1;
                }
            })
        })
        .collect();
    for round in 0..20 {
        let (code, msg) = fork_with(|out| {
            let ok = churn(m, b'c', 20);
            let v = m.vmalloc(1 << 20);
            let vok = v.is_ok();
            if let Ok(v) = v {
                fill(v.as_ptr(), 1 << 20, 1);
                m.vfree(v.as_ptr());
            }
            send(out, if ok && vok { b"ok" } else { b"BAD" });
            0
        });
        assert_eq!((code, msg.as_str()), (0, "ok"), "round {round}");
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}
