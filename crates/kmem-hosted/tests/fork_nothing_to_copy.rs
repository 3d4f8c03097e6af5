//! `fork` with nothing to copy, alone in its process (so that no other
//! test's machine is registered): a machine with private lowmem and an
//! empty memfd (no vmalloc), other threads allocating. The parent keeps its
//! threads stopped through the `fork` itself, which copies lowmem, and lets
//! them go without waiting for the child (`kmem_hosted::fork`).

mod common;

use common::forking::*;
use kmem::GFP_KERNEL;
use kmem_hosted::Machine;

#[test]
fn fork_with_nothing_to_copy_while_other_threads_allocate() {
    let m: &'static Machine = Box::leak(Box::new(
        Machine::boot("quiet mem=256M kmem.lowmem=128M kmem.private_lowmem=1 kswapd=off").unwrap(),
    ));
    m.platform.enable_fork_gate();
    assert_eq!(m.ram().private(), 128 << 20);
    let workers = AllocatingThreads::start(m, false);
    let mine = m.kmalloc(4096, GFP_KERNEL).unwrap().as_ptr();
    fill(mine, 4096, b'P');
    for round in 0..100 {
        let (code, msg) = fork_with(|out| {
            let seen = all(mine, 4096, b'P');
            fill(mine, 4096, b'C');
            let ok = churn(m, b'c', 2);
            send(out, if seen && ok { b"ok" } else { b"BAD" });
            0
        });
        assert_eq!((code, msg.as_str()), (0, "ok"), "round {round}");
        assert!(
            all(mine, 4096, b'P'),
            "round {round}: the child's write reached the parent"
        );
    }
    workers.stop();
    // SAFETY: allocated above.
    unsafe { m.kfree(mine) };
}
