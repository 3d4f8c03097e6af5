//! Helpers of the `fork` tests: a child that runs a closure and reports
//! through a pipe, and patterned blocks. The children only use the machine,
//! raw system calls and `_exit`: no Rust allocation, no stdout (the test
//! harness's threads do not exist there).

use kmem::{GFP_KERNEL, PAGE_SIZE};
use kmem_hosted::Machine;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Writes `msg` to `fd` (a pipe) without allocating.
pub fn send(fd: i32, msg: &[u8]) {
    // SAFETY: `msg` is readable for its length.
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

/// Forks; runs `child` in the child (its return value is the exit status,
/// and what it sends to the pipe is returned to the parent with the status).
pub fn fork_with(child: impl FnOnce(i32) -> i32) -> (i32, String) {
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
pub fn fill(p: *mut u8, len: usize, b: u8) {
    // SAFETY: callers pass live allocations of at least `len` bytes.
    unsafe { core::ptr::write_bytes(p, b, len) };
}

/// Whether all `len` bytes at `p` are `b`.
pub fn all(p: *const u8, len: usize, b: u8) -> bool {
    // SAFETY: callers pass live allocations of at least `len` bytes.
    unsafe { core::slice::from_raw_parts(p, len) }
        .iter()
        .all(|&x| x == b)
}

/// Allocates and frees a mix of sizes, checking each block keeps its pattern.
pub fn churn(m: &kmem::Kmem<kmem_hosted::HostedPlatform>, tag: u8, rounds: usize) -> bool {
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

/// Three threads that allocate and free from `m` until stopped: kmalloc of
/// mixed sizes, pages of orders 0-3 (the zone locks) and, with `vmalloc`,
/// vmalloc areas (the vmap locks).
pub struct AllocatingThreads {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl AllocatingThreads {
    pub fn start(m: &'static Machine, vmalloc: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..3)
            .map(|t| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        assert!(churn(m, b'a' + t as u8, 1));
                        let pages = m.alloc_pages(GFP_KERNEL, (n % 4) as u32).unwrap();
                        let v = vmalloc.then(|| m.vmalloc(PAGE_SIZE * (1 + n % 16)).unwrap());
                        // SAFETY: allocated just above.
                        unsafe { m.__free_pages(pages, (n % 4) as u32) };
                        if let Some(v) = v {
                            // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
                            unsafe { m.vfree(v.as_ptr()) };
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        AllocatingThreads { stop, threads }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}
