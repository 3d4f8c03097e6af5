//! C programs under libkmalloc: the allocator's contract, fork (with and
//! without exec, single- and multi-threaded), signals during allocation,
//! thousands of threads, programs that take over descriptor numbers, and
//! `slub_debug` finding a heap overflow.

mod common;
use common::*;
use std::process::Command;

#[test]
fn api_contract_same_as_glibc() {
    let dir = scratch("api");
    let Some(exe) = compile("api.c", &dir, &[]) else {
        return;
    };
    let out = same_output("api.c", || Command::new(&exe));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("all passed\n"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
}

fn check_fork_output(text: &str) {
    for round in 0..5 {
        assert!(
            text.contains(&format!("child {round}: child child-big child-alloc bad=0\n")),
            "child {round} did not see its own writes:\n{text}"
        );
        assert!(
            text.contains(&format!("parent {round}: parent parent-big bad=0 child-exit=0\n")),
            "parent {round} saw the child's writes or the child failed:\n{text}"
        );
    }
    assert!(text.contains("exec-child ran\nexec child exit=0\n"), "{text}");
    assert!(text.ends_with("done\n"), "{text}");
}

#[test]
fn fork_gives_the_child_a_private_heap() {
    let dir = scratch("fork");
    let Some(exe) = compile("fork.c", &dir, &[]) else {
        return;
    };
    let out = same_output("fork.c", || Command::new(&exe));
    check_fork_output(&String::from_utf8_lossy(&out.stdout));
}

#[test]
fn fork_while_other_threads_allocate() {
    let dir = scratch("fork-mt");
    let Some(exe) = compile("fork.c", &dir, &[]) else {
        return;
    };
    let out = same_output("fork.c mt", || {
        let mut c = Command::new(&exe);
        c.arg("mt");
        c
    });
    check_fork_output(&String::from_utf8_lossy(&out.stdout));
}

/// With no huge block alive the parent does not wait for the child (its
/// RAM memfd is empty: lowmem is private); it writes a huge block while the
/// child starts, and the child's own huge block must not show it. Alone,
/// and while other threads allocate (stopped through the `fork` itself).
#[test]
fn fork_without_huge_blocks() {
    let dir = scratch("fork-small");
    let Some(exe) = compile("fork.c", &dir, &[]) else {
        return;
    };
    for args in [&["small"][..], &["mt", "small"]] {
        let out = same_output(&format!("fork.c {}", args.join(" ")), || {
            let mut c = Command::new(&exe);
            c.args(args);
            c
        });
        check_fork_output(&String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn signals_during_allocation() {
    let dir = scratch("signals");
    let Some(exe) = compile("signals.c", &dir, &[]) else {
        return;
    };
    let out = same_output("signals.c", || Command::new(&exe));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "signals delivered: yes, allocations intact: yes\n"
    );
}

#[test]
fn thousands_of_threads() {
    let dir = scratch("threads");
    let Some(exe) = compile("threads.c", &dir, &[]) else {
        return;
    };
    let out = same_output("threads.c", || Command::new(&exe));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2000 of 2000 threads saw their memory intact\n"
    );
}

/// The program's descriptors are its own: files on 3-9 (a shell's
/// `exec 3>file`), a file on the very number of the RAM memfd, and a
/// daemon's closefrom(3); see `fds.c`. Before the RAM's descriptor moved out
/// of the way and was checked before each use, the first put holes in the
/// program's files and the second died of SIGBUS.
#[test]
fn the_programs_descriptors_are_left_alone() {
    let dir = scratch("fds");
    let Some(exe) = compile("fds.c", &dir, &[]) else {
        return;
    };
    let out = same_output("fds.c", || {
        let mut c = Command::new(&exe);
        c.env("FDS_DIR", &dir);
        c
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("BAD") && !text.contains("DAMAGED"), "{text}");
    assert!(
        text.contains("on the memfd's number: churn ok, fork ok, file ok\n"),
        "{text}"
    );
    assert!(text.ends_with("done\n"), "{text}");
}

/// The fork gate's phase page is mapped by the first fork that stops other
/// threads, not at the boot (`kmem_hosted::fork`, `phase_or_map`): a
/// preloaded program that never forks with threads never maps it, and a
/// child maps its own in place of its parent's at its first stop.
#[test]
fn the_phase_page_waits_for_a_fork_with_threads() {
    let dir = scratch("phase");
    let Some(exe) = compile("phase_page.c", &dir, &[]) else {
        return;
    };
    assert_eq!(
        run_ok(Command::new(&exe), ""),
        "after boot 0\n\
         after a one-thread fork 0 (status 0)\n\
         after a fork with a thread 1 (status 0)\n\
         child after a fork with a thread 1 (status 0)\n\
         done (status 0)\n"
    );
}

/// malloc's size classes: kmalloc's, and between its powers of two above
/// 256 bytes malloc's own (`bootstrap::MALLOC_MID_CLASSES`); a block that
/// `realloc` grows takes kmalloc's class; one shrunk below half its class
/// moves, one that fits stays.
#[test]
fn malloc_has_middle_size_classes() {
    let dir = scratch("classes");
    let Some(exe) = compile("classes.c", &dir, &[]) else {
        return;
    };
    let o = run(Command::new(&exe), true, "");
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "16:16 100:128 200:256 257:384 300:384 384:384 385:512 700:768 769:1024 1025:1280 \
         1100:1280 1281:1536 1537:1792 1793:2048 2100:2560 2561:3072 3073:3584 3585:4096 \
         4104:5120 5121:6144 6144:6144 6145:7168 7169:8192 8192:8192 \n\
         realloc 300 -> 400: 512\n\
         realloc 100 -> 128 -> 65 -> 64: kept kept moved 64\n"
    );
}

#[test]
fn slub_debug_finds_a_heap_overflow() {
    let dir = scratch("overflow");
    let Some(exe) = compile("overflow.c", &dir, &[]) else {
        return;
    };
    // Without slub_debug the overflow goes unnoticed (it stays inside the
    // object's stride), as with glibc.
    let plain = run(Command::new(&exe), true, "");
    assert!(plain.status.success());
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("BUG"));
    let o = run(Command::new(&exe), true, "slub_debug=FZP");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "program finished\n");
    assert!(err.contains("[Right Redzone overwritten]"), "no report:\n{err}");
    assert!(err.contains("BUG kmalloc-32 "), "no report:\n{err}");
    assert!(err.contains("First byte 0x78 instead of 0xcc"), "{err}");
}

/// With `U`, kmalloc remembers the size asked for: `slub_debug=FZPU` finds
/// a write just past it that stays inside the slab object (as the kernel
/// does since 6.1), and nothing in the program's legitimate uses of the
/// usable size and of `realloc`.
#[test]
fn slub_debug_with_u_finds_an_overflow_into_the_slack() {
    let dir = scratch("overflow_slack");
    let Some(exe) = compile("overflow_slack.c", &dir, &[]) else {
        return;
    };
    for (cmdline, reports) in [("", 0), ("slub_debug=FZP", 0), ("slub_debug=FZPU", 1)] {
        let o = run(Command::new(&exe), true, cmdline);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{cmdline}: {err}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "program finished\n");
        assert_eq!(err.matches("BUG kmalloc-").count(), reports, "{cmdline}: {err}");
        assert_eq!(
            err.matches("[kmalloc Redzone overwritten]").count(),
            reports,
            "{cmdline}: {err}"
        );
    }
}

/// Under libkmalloc, `slub_debug`'s `U` tracks record the program's call
/// sites (the innermost frame outside the library), printed as the kernel's
/// `%pS` does, not libkmalloc's own source lines.
#[test]
fn slub_debug_tracks_name_the_programs_call_sites() {
    let Some((out, err)) = run_program(
        "double_free_sites",
        "double_free_sites.c",
        &["-rdynamic"],
        "slub_debug=FZPU",
    ) else {
        return;
    };
    assert_eq!(out, "program finished\n");
    assert!(err.contains("Object already free"), "{err}");
    for (what, site) in [("Allocated in ", "main+0x"), ("Freed in ", "release+0x")] {
        let line = err.lines().find(|l| l.starts_with(what)).unwrap_or("");
        assert!(
            line.starts_with(&format!("{what}{site}")) && line.contains(" [double_free_sites] age="),
            "{what}: {err}"
        );
    }
    assert!(!err.contains(" in crates/"), "{err}");
}

/// The default machine's firmware map: flat (RAM from 4 MiB up to `mem=`,
/// so the RAM ends at `mem=`; 8 GiB by default) unless `KMEM_CMDLINE` gives
/// a `memmap=`, which keeps the PC layout (RAM above 4 GiB for the hole).
/// Lowmem, half of `mem=` unless `kmem.lowmem=` or `highmem=` says
/// otherwise, is private anonymous memory right below the memfd's mapping,
/// if there is HighMem above it. An address-space limit makes the default
/// smaller.
#[test]
fn the_default_machine_has_a_flat_memory_map() {
    let dir = scratch("rammap");
    let Some(exe) = compile("ram_map.c", &dir, &[]) else {
        return;
    };
    for (cmdline, mib, private) in [
        ("", 8192, 4096),
        ("mem=1G", 1024, 512),
        ("mem=4G kmem.lowmem=3G", 4096, 3072),
        ("mem=2G kmem.private_lowmem=0", 2048, 0),
        ("mem=2G kmem.lowmem=2G", 2048, 0),
        ("memmap=exactmap memmap=1M$0 memmap=511M@1M", 512, 0),
    ] {
        assert_eq!(
            run_ok(Command::new(&exe), cmdline),
            format!("ram {mib} MiB, private {private} MiB\n"),
            "{cmdline:?}"
        );
    }
    // A reservation alone keeps the PC layout of the hosted default mem=4G:
    // 3 GiB below the hole, the rest above 4 GiB; lowmem the first 4 GiB.
    let out = run_ok(Command::new(&exe), "memmap=64K$0x20000000");
    let (ram, private) = out
        .trim_end()
        .trim_start_matches("ram ")
        .split_once(" MiB, private ")
        .unwrap();
    let ram: u64 = ram.parse().unwrap();
    assert!((5120..5200).contains(&ram), "{out}");
    assert_eq!(private, "4096 MiB", "{out}");
    // Under an address-space limit the RAM and its vmalloc window, as large,
    // take at most half of it (8,192,000,000 bytes: 1,952 MiB of RAM, a
    // multiple of 16 MiB), down to about 70 MB (a limit of 200,000 kB: 48 MiB,
    // all of it lowmem, which is at least 64 MiB, so none private).
    for (kib, mib, private) in [(8_000_000, 1952, 976), (200_000, 48, 0)] {
        let mut limited = Command::new("sh");
        limited
            .args(["-c", &format!("ulimit -v {kib} && exec \"$0\"")])
            .arg(&exe);
        assert_eq!(
            run_ok(limited, ""),
            format!("ram {mib} MiB, private {private} MiB\n"),
            "ulimit -v {kib}"
        );
    }
}

/// A double free of a huge block (above 4 MiB, a vmalloc area) is reported
/// and frees nothing (it read the unmapped header and faulted).
#[test]
fn a_huge_block_freed_twice_is_reported() {
    let Some((out, err)) = run_program("hugedf", "huge_double_free.c", &[], "") else {
        return;
    };
    assert_eq!(out, "q[0] 2, q[last] 2\nprogram finished\n");
    assert_eq!(
        err.matches("Trying to vfree() nonexistent vm area").count(),
        1,
        "{err}"
    );
}

/// A program that took the stop signal before libkmalloc booted forks with a
/// thread running: the fork cannot stop it, and says so once.
#[test]
fn a_fork_that_cannot_stop_the_threads_says_so() {
    let Some((out, err)) = run_program("forkforeign", "fork_foreign_signal.c", &["-pthread"], "") else {
        return;
    };
    assert_eq!(out, "children ok\n");
    assert_eq!(
        err.matches("is the program's (its handler, or ignored), so other threads keep running")
            .count(),
        1,
        "{err}"
    );
}

/// Threads that take signals with `sigwait` or a `signalfd`: libkmalloc
/// never signals a thread that blocks its stop signal (nor one sleeping in
/// `sigwait`), so the program never sees it, and the fork goes on without
/// those threads at once, saying so once.
#[test]
fn sigwait_and_signalfd_threads_never_see_the_stop_signal() {
    let Some((out, err)) = run_program("forksigwait", "fork_sigwait.c", &["-pthread"], "") else {
        return;
    };
    assert_eq!(
        out, "children ok, foreign signal 0, slowest fork under 0.5 s\n",
        "{err}"
    );
    assert_eq!(err.matches("blocks signal").count(), 1, "{err}");
}

/// `numa=fake=N`: blocks above 4 MiB succeed on every CPU (vmalloc takes
/// HighMem node by node).
#[test]
fn huge_blocks_on_every_node() {
    let dir = scratch("numahuge");
    let Some(exe) = compile("numa_huge.c", &dir, &[]) else {
        return;
    };
    for cmdline in ["numa=fake=2", "numa=fake=4"] {
        let o = run(Command::new(&exe), true, cmdline);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{cmdline}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!out.is_empty() && !out.contains("FAILED"), "{cmdline}: {out}");
        assert!(
            o.stderr.is_empty(),
            "{cmdline}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn bad_kmem_cmdline_says_why() {
    let dir = scratch("badcmd");
    let Some(exe) = compile("overflow.c", &dir, &[]) else {
        return;
    };
    // A bad value or an unknown name: the program runs, and the boot log's complaint, which a
    // quiet boot keeps in the log, is on stderr too (an unknown name not under `quiet`).
    for (cmdline, says) in [
        (
            "mem=abc",
            Some("kmem: KMEM_CMDLINE: Malformed early option 'mem'\n"),
        ),
        (
            "slub_debug=X",
            Some("kmem: KMEM_CMDLINE: slab_debug option 'X' unknown. skipped\n"),
        ),
        (
            "nosuch=1",
            Some("kmem: KMEM_CMDLINE: unknown parameter \"nosuch=1\", ignored\n"),
        ),
        ("quiet nosuch=1", None),
    ] {
        let o = run(Command::new(&exe), true, cmdline);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{cmdline}: {err}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "program finished\n");
        match says {
            Some(line) => assert_eq!(err.matches(line).count(), 1, "{cmdline}: {err}"),
            None => assert!(!err.contains("KMEM_CMDLINE"), "{cmdline}: {err}"),
        }
    }
    let o = run(Command::new(&exe), true, "mem=1M");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("libkmalloc cannot boot the default machine")
            && err.contains("mem= must be at least 2M"),
        "{err}"
    );
}
