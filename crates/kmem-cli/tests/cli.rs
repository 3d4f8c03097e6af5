//! The `kmem` binary as a user meets it: help texts, bad arguments, a short
//! simulation with its JSON report, one frame of `kmem top`, a /proc file
//! and a tiny benchmark run.

use std::process::{Command, Output};

const SMALL: &str = "quiet mem=256M nr_cpus=2";

fn kmem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmem"))
        .args(args)
        .env("KMEM_CMDLINE", SMALL)
        .output()
        .expect("run kmem")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_every_command() {
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let o = kmem(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = stdout(&o);
        for cmd in ["kmem [sim]", "kmem top", "kmem proc NAME", "kmem bench"] {
            assert!(out.contains(cmd), "{args:?} does not mention {cmd}:\n{out}");
        }
    }
}

#[test]
fn version() {
    for args in [&["--version"][..], &["-V"]] {
        let o = kmem(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), format!("kmem {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn every_command_has_help() {
    for (cmd, says) in [
        ("sim", "--duration SECS"),
        ("top", "--once"),
        ("proc", "slabinfo buddyinfo"),
        ("bench", "--quick"),
    ] {
        for args in [vec![cmd, "--help"], vec!["help", cmd]] {
            let o = kmem(&args);
            assert!(o.status.success(), "{args:?}: {}", stderr(&o));
            let out = stdout(&o);
            assert!(out.starts_with(&format!("kmem {cmd} — ")), "{args:?}:\n{out}");
            assert!(out.contains(says), "{args:?} does not mention {says}:\n{out}");
        }
    }
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for (args, says) in [
        (&["frobnicate"][..], "unknown command: frobnicate"),
        (
            &["sim", "--duration", "abc"],
            "--duration: not a number of seconds: abc",
        ),
        (&["sim", "--duration", "-1"], "--duration: out of range"),
        (&["sim", "--threads", "0"], "--threads: out of range"),
        (&["sim", "--threads"], "--threads needs a value"),
        (&["sim", "--json=yes"], "--json takes no value"),
        (&["sim", "--bogus"], "unknown argument: --bogus"),
        (&["top", "--sort", "z"], "--sort: not a sort key"),
        (&["top", "--delay", "0"], "--delay: out of range"),
        (&["proc"], "which file?"),
        (&["proc", "nosuchfile"], "no such file: nosuchfile"),
        (&["proc", "slabinfo", "extra"], "unexpected argument: extra"),
        (&["bench", "--suite", "nope"], "no suite \"nope\""),
        (&["bench", "--suite", "--quick"], "--suite needs a value"),
        (&["bench", "--suite="], "--suite needs a suite name"),
        (
            &["sim", "--cmdline", "mem=1x"],
            "--cmdline: Malformed early option 'mem'",
        ),
        (
            &["sim", "--cmdline", "mem=256M slub_debug=Q"],
            "--cmdline: slab_debug option 'Q' unknown",
        ),
        (
            &["top", "--cmdline", "mem=256M nr-cpu=2"],
            "--cmdline: unknown boot parameter \"nr-cpu=2\"",
        ),
        (
            &["sim", "--cmdline", "nr_cpus=129"],
            "the per-CPU allocator serves at most 128 CPUs",
        ),
        (&["help", "nope"], "unknown command: nope"),
    ] {
        let o = kmem(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(says), "{args:?}: expected {says:?} in:\n{err}");
        assert!(
            err.contains("USAGE:"),
            "{args:?}: no usage after the message:\n{err}"
        );
        assert!(o.stdout.is_empty(), "{args:?} printed to stdout");
    }
}

/// `--json --quiet`: the report without the /proc files, as the text one.
#[test]
fn quiet_json_has_no_proc_files() {
    let o = kmem(&[
        "sim",
        "--duration",
        "0.2",
        "--cmdline",
        SMALL,
        "--json",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON document");
    assert_eq!(v["check"]["ok"], true, "{}", v["check"]["text"]);
    assert!(v.get("proc").is_none());
}

#[test]
fn short_sim_json_report() {
    let o = kmem(&[
        "sim",
        "--duration",
        "0.5",
        "--threads",
        "3",
        "--cmdline",
        SMALL,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON document");
    assert_eq!(v["threads"], 3);
    assert_eq!(v["nr_cpus"], 2);
    assert_eq!(v["boot_parameters"], SMALL);
    let check = &v["check"];
    assert_eq!(check["ok"], true, "{}", check["text"]);
    assert_eq!(check["percpu_counter_sum"], check["operations_counted"]);
    assert_eq!(check["objects_not_constructed"], 0);
    let apis = v["apis"].as_array().unwrap();
    let calls = |name: &str| {
        apis.iter()
            .find(|a| a["api"] == name)
            .unwrap_or_else(|| panic!("no {name} in {apis:?}"))["calls"]
            .as_u64()
            .unwrap()
    };
    for api in [
        "__get_free_pages",
        "kmalloc",
        "kmem_cache_alloc",
        "mempool_alloc",
        "__alloc_percpu_gfp",
        "this_cpu_inc",
    ] {
        assert!(calls(api) > 0, "{api} never called");
    }
    assert_eq!(calls("mempool_alloc"), calls("mempool_free"));
    assert_eq!(
        calls("this_cpu_inc"),
        check["operations_counted"].as_u64().unwrap()
    );
    let classes: Vec<_> = v["failures_by_gfp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["gfp"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        classes,
        ["GFP_KERNEL", "GFP_ATOMIC", "GFP_NOWAIT", "GFP_NOFS", "GFP_NOIO"]
    );
    assert_eq!(v["mempool"]["min_nr"], 64);
    assert_eq!(
        v["mempool"]["alloc_fail"], 0,
        "GFP_NOIO mempool allocations never fail"
    );
    let names: Vec<_> = v["shrinkers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["sim-dcache", "sim-icache", "sim-page-pool"]);
    let slabinfo = v["proc"]["slabinfo"].as_str().unwrap();
    assert!(slabinfo.starts_with("slabinfo - version: 2.1\n"));
    assert!(slabinfo.contains("\nsim-dentry "), "{slabinfo}");
    assert!(slabinfo.contains("\nsim-inode "), "{slabinfo}");
    assert!(v["proc"]["buddyinfo"]
        .as_str()
        .unwrap()
        .starts_with("Node 0, zone"));
}

#[test]
fn sim_text_report_without_a_terminal_has_no_escape_codes() {
    let o = kmem(&["sim", "--duration", "0.3", "--cmdline", SMALL]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for part in [
        "==== boot log (dmesg) ====",
        "==== report ====",
        "==== /proc/slabinfo ====",
        "==== /proc/meminfo ====",
        "==== check ====",
        "every page came back",
    ] {
        assert!(out.contains(part), "no {part:?} in:\n{out}");
    }
    assert!(!out.contains('\x1b') && !stderr(&o).contains('\x1b'));
    assert!(!stderr(&o).contains('\r'), "a progress bar without a terminal");
}

#[test]
fn top_once_prints_one_slabtop_frame() {
    let o = kmem(&["top", "--once", "--sort", "n", "--cmdline", SMALL]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains('\x1b'), "escape codes without a terminal");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(" Active / Total Objects (% used)    : "),
        "{out}"
    );
    assert!(lines[1].starts_with(" Active / Total Slabs (% used)      : "));
    assert!(lines[2].starts_with(" Active / Total Caches (% used)     : "));
    assert!(lines[3].starts_with(" Active / Total Size (% used)       : "));
    assert!(lines[4].starts_with(" Minimum / Average / Maximum Object : "));
    assert_eq!(
        lines[6],
        "  OBJS ACTIVE  USE OBJ SIZE  SLABS OBJ/SLAB CACHE SIZE NAME"
    );
    let names: Vec<&str> = lines[7..]
        .iter()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert!(
        names.contains(&"sim-dentry") && names.contains(&"sim-inode"),
        "{out}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "--sort n sorts by name");
    assert!(out.contains("\nNode 0, zone"), "no buddyinfo:\n{out}");
}

#[test]
fn a_bad_kmem_cmdline_is_an_error_not_a_panic() {
    for (cmdline, code, says) in [
        ("mem=1x", 2, "KMEM_CMDLINE: Malformed early option 'mem'"),
        ("mem=1", 1, "kmem proc: cannot boot \"mem=1\""),
    ] {
        for args in [&["proc", "meminfo"][..], &["sim", "-q", "--duration", "0.1"]] {
            let o = Command::new(env!("CARGO_BIN_EXE_kmem"))
                .args(args)
                .env("KMEM_CMDLINE", cmdline)
                .output()
                .expect("run kmem");
            let err = stderr(&o);
            assert!(!err.contains("panicked"), "{cmdline}, {args:?}: {err}");
            if args[0] == "proc" {
                assert_eq!(o.status.code(), Some(code), "{cmdline}: {err}");
                assert!(err.contains(says), "{cmdline}: expected {says:?} in:\n{err}");
            } else {
                assert!(!o.status.success(), "{cmdline}, {args:?}");
            }
        }
    }
}

#[test]
fn the_console_stays_quiet_and_the_proc_files_are_whole() {
    let o = kmem(&["sim", "--duration", "0.3", "--cmdline", "mem=256M nr_cpus=2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "",
        "the boot log went to stderr as well as into the report"
    );
    let out = stdout(&o);
    assert!(out.contains("==== /proc/iomem ====\n"), "{out}");
    // buddyinfo's lines end in a blank, as the kernel prints them.
    assert!(out.contains(" \n\n==== /proc/pagetypeinfo ====\n"), "{out}");
    for (name, says) in [
        ("iomem", " : System RAM\n"),
        ("vmallocinfo", " vmalloc N0="),
        ("vmstat", "\nnuma_miss 0\n"),
    ] {
        let o = kmem(&["proc", name]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(stdout(&o).contains(says), "{name}:\n{}", stdout(&o));
        assert_eq!(stderr(&o), "", "{name}");
    }
}

#[test]
fn proc_slabinfo_header() {
    let o = kmem(&["proc", "slabinfo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("slabinfo - version: 2.1"));
    assert_eq!(
        lines.next(),
        Some(
            "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> \
             : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> \
             <sharedavail>"
        )
    );
    assert!(out.contains("\nkmalloc-64 "), "{out}");
}

#[test]
fn bench_quick_prints_ratios() {
    let o = kmem(&["bench", "--quick", "--suite", "vmalloc"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("| case | kmem | reference | kmem/reference |"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with("| mempool_alloc+free vs kmem_cache_alloc+free |"))
        .unwrap_or_else(|| panic!("no mempool row:\n{out}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(cells.len(), 4, "{row}");
    for c in &cells[1..] {
        assert!(
            c.parse::<f64>().is_ok_and(|x| x > 0.0),
            "not a positive figure: {c} in {row}"
        );
    }
    assert!(!out.contains("bsa Heap"), "only the vmalloc suite was asked for");
}

#[test]
fn bench_malloc_suite_runs_the_preloaded_workloads() {
    let o = kmem(&["bench", "--quick", "--suite", "malloc"]);
    let out = stdout(&o);
    assert!(out.contains("## malloc override through LD_PRELOAD"), "{out}");
    if out.contains("(no libkmalloc.so beside this program") || out.contains("(no C compiler") {
        // A suite that cannot run says why, and the exit status says it did not run.
        assert_eq!(o.status.code(), Some(1), "{out}");
        assert!(stderr(&o).contains("kmem bench: the malloc suite did not run"));
        eprintln!("skipped: {out}");
        return;
    }
    assert!(o.status.success(), "{}", stderr(&o));
    // Every workload has a time row and a peak RSS row, with figures for
    // kmem and glibc (mimalloc and jemalloc only where installed).
    for w in [
        "pair",
        "larson",
        "mixed",
        "prodcons",
        "falseshare",
        "frag",
        "large",
    ] {
        for unit in ["ms", "peak RSS MB"] {
            let row = out
                .lines()
                .find(|l| l.starts_with(&format!("| {w} ")) && l.contains(&format!(", {unit} |")))
                .unwrap_or_else(|| panic!("no {w} {unit} row:\n{out}"));
            let cells: Vec<&str> = row.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
            for c in &cells[1..3] {
                assert!(
                    c.parse::<f64>().is_ok_and(|x| x > 0.0),
                    "not a positive figure: {c} in {row}"
                );
            }
        }
    }
    assert!(!out.contains("bsa Heap"), "only the malloc suite was asked for");
}
