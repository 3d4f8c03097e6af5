//! The shared, machine-independent test suite (`kmem-testsuite`) on hosted
//! machines — the same cases the bare-metal kernel runs on its serial
//! console (`kernel/`). Several machine shapes, one after another in one
//! test (the suite is not run concurrently with itself in a process: its
//! constructor counter and the once-per-site sleeping report are
//! process-wide).

use kmem_hosted::Machine;

#[test]
fn shared_suite_on_hosted_machines() {
    let mut failures = Vec::new();
    for cmdline in [
        "quiet mem=64M nr_cpus=1 kswapd=off",
        "quiet mem=256M nr_cpus=4 kswapd=off",
        "quiet mem=1G nr_cpus=2 kswapd=off",
    ] {
        let m = Machine::boot(cmdline).unwrap_or_else(|e| panic!("boot {cmdline:?}: {e}"));
        let (passed, failed) = kmem_testsuite::run_all(&m, &mut |name, r| match r {
            Ok(()) => println!("{cmdline}: {name} ... ok"),
            Err(e) => {
                println!("{cmdline}: {name} ... FAILED: {e}");
                failures.push(format!("{cmdline}: {name}: {e}"));
            }
        });
        assert_eq!(
            passed + failed,
            kmem_testsuite::cases::<kmem_hosted::HostedPlatform>().len() + 1
        );
        if failed > 0 {
            println!("{}", m.dmesg());
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
