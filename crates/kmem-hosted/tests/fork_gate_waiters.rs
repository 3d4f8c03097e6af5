//! A thread that reaches a gated spinlock while a `fork` is in progress
//! waits at the gate and is woken when the fork ends (`kmem_hosted::fork`:
//! the waiter sets `GATE_WAITERS`, and the handlers wake only then). Alone
//! in its process: the program's own handler of the stop signal, installed
//! before the machine boots, puts the gate in counting mode (no stop
//! signal, the gate alone keeps threads out), and a `pthread_atfork`
//! prepare handler registered before kmem's runs after kmem's, inside the
//! fork, where it lets a thread try a `vmalloc`.

use core::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kmem_hosted::Machine;

/// The helper thread may try its `vmalloc`.
static GO: AtomicBool = AtomicBool::new(false);
/// The helper's `vmalloc` returned.
static DONE: AtomicBool = AtomicBool::new(false);
/// `DONE` as the prepare handler found it after letting the helper go.
static DONE_IN_FORK: AtomicBool = AtomicBool::new(false);

/// Runs inside the fork, after kmem's prepare handler closed the gate.
extern "C" fn late_prepare() {
    GO.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    DONE_IN_FORK.store(DONE.load(Ordering::SeqCst), Ordering::SeqCst);
}

extern "C" fn programs_handler(_: libc::c_int) {}

#[test]
fn a_thread_at_the_gate_waits_for_the_fork_and_is_woken() {
    // SAFETY: a zeroed sigaction is valid; the handler does nothing.
    let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
    sa.sa_sigaction = programs_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `sa` is complete; the prepare handler lives as long as the process.
    unsafe {
        assert_eq!(
            libc::sigaction(libc::SIGRTMIN() + 7, &sa, core::ptr::null_mut()),
            0
        );
        assert_eq!(libc::pthread_atfork(Some(late_prepare), None, None), 0);
    }
    let m: &'static Machine = Box::leak(Box::new(
        Machine::boot("quiet mem=256M kmem.lowmem=128M kmem.private_lowmem=1 kswapd=off").unwrap(),
    ));
    m.platform.enable_fork_gate();
    let helper = std::thread::spawn(move || {
        while !GO.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let v = m.vmalloc(1 << 20).unwrap();
        DONE.store(true, Ordering::SeqCst);
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(v.as_ptr()) };
    });
    // SAFETY: the child only `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: ending the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut status = -1;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(status, 0);
    let start = Instant::now();
    while !DONE.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        !DONE_IN_FORK.load(Ordering::SeqCst),
        "the helper's vmalloc went through the gate during the fork"
    );
    assert!(
        DONE.load(Ordering::SeqCst),
        "the helper was not woken after the fork"
    );
    helper.join().unwrap();
}
