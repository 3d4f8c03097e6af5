//! The report of a `kmem sim` run: what the workload did (calls per second
//! by API, failures by GFP class, reclaim, the mempool's reserve, the
//! hog, the network and I/O paths), the /proc files and the final check,
//! as text for people or as one JSON document for programs (`--json`).

use crate::workload::{Outcome, Shared, API_NAMES, CLASS_NAMES};
use serde_json::{json, Map, Value};
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Everything a run produced.
pub struct Report {
    pub cmdline: String,
    pub nr_cpus: usize,
    pub threads: usize,
    pub seconds: f64,
    /// (API, calls, failures).
    pub apis: Vec<(&'static str, u64, u64)>,
    /// (GFP class, allocations, failures).
    pub classes: Vec<(&'static str, u64, u64)>,
    /// (name, value) of the machine's reclaim counters.
    pub reclaim: Vec<(&'static str, u64)>,
    pub shrinkers: Vec<(&'static str, usize, usize)>,
    /// (name, value) of the mempool's statistics.
    pub mempool: Vec<(&'static str, u64)>,
    /// (name, value) of the other workload events.
    pub events: Vec<(&'static str, u64)>,
    pub percpu_sum: u64,
    pub attempts: u64,
    pub ctor_bad: u64,
    pub proc_files: Vec<(&'static str, String)>,
    pub dmesg: String,
    pub boot_state: bool,
    pub boot_diff: String,
    pub baseline_free: usize,
    pub final_free: usize,
}

impl Report {
    /// Gather the report of a finished workload.
    pub fn new(sh: &Shared, o: Outcome, cmdline: &str) -> Report {
        let m = sh.m;
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let lu = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
        let s = &sh.stats;
        let e = &sh.events;
        let ev = &m.events;
        let mp = &o.mempool;
        Report {
            cmdline: cmdline.to_string(),
            nr_cpus: m.nr_cpu_ids(),
            threads: sh.nthreads,
            seconds: o.elapsed.as_secs_f64(),
            apis: (0..API_NAMES.len())
                .map(|i| (API_NAMES[i], ld(&s.calls[i]), ld(&s.fails[i])))
                .collect(),
            classes: (0..CLASS_NAMES.len())
                .map(|i| (CLASS_NAMES[i], ld(&s.class_calls[i]), ld(&s.class_fails[i])))
                .collect(),
            reclaim: vec![
                ("allocstall", lu(&ev.allocstall)),
                ("kswapd_wake", lu(&ev.kswapd_wake)),
                ("slabs_scanned", lu(&ev.slabs_scanned)),
                ("shrinker_freed", lu(&ev.shrinker_freed)),
                ("alloc_waits", lu(&ev.alloc_waits)),
                ("alloc_fail", lu(&ev.alloc_fail)),
                ("oom", lu(&ev.oom)),
                ("pages_reported", lu(&ev.pages_reported)),
            ],
            shrinkers: o.shrinkers,
            mempool: vec![
                ("min_nr", mp.min_nr as u64),
                ("alloc_backing", mp.alloc_backing as u64),
                ("alloc_reserve", mp.alloc_reserve as u64),
                ("alloc_fail", mp.alloc_fail as u64),
                ("waits", mp.waits as u64),
                ("free_reserve", mp.free_reserve as u64),
                ("free_backing", mp.free_backing as u64),
            ],
            events: vec![
                ("packets_softirq", ld(&e.packets_softirq)),
                ("packets_hardirq", ld(&e.packets_hardirq)),
                ("remote_packet_frees", ld(&e.remote_packet_frees)),
                ("remote_page_frees", ld(&e.remote_page_frees)),
                ("dcache_hits", ld(&e.dcache_hits)),
                ("dcache_misses", ld(&e.dcache_misses)),
                ("ctor_checked", ld(&e.ctor_checked)),
                ("io_completed_in_hardirq", ld(&e.io_completed)),
                ("hog_cycles", ld(&e.hog_cycles)),
                ("hog_max_pages", lu(&e.hog_max_pages)),
            ],
            percpu_sum: o.percpu_sum,
            attempts: ld(&e.attempts),
            ctor_bad: ld(&e.ctor_bad),
            proc_files: o.proc_files,
            dmesg: m.dmesg(),
            boot_state: o.boot_state,
            boot_diff: o.boot_diff,
            baseline_free: o.baseline_free,
            final_free: o.final_free,
        }
    }

    /// Whether the run is sound: every page back, the per-CPU counters
    /// exact, every cached object in its constructed state, every
    /// allocation matched by a free.
    pub fn ok(&self) -> bool {
        self.pages_back()
            && self.percpu_sum == self.attempts
            && self.ctor_bad == 0
            && self.unbalanced().is_empty()
    }

    /// Strict: the buddy lists hold exactly the blocks they held after boot.
    fn pages_back(&self) -> bool {
        self.boot_state
    }

    /// (alloc API, free API, allocated, freed) pairs that do not add up.
    fn unbalanced(&self) -> Vec<(&'static str, &'static str, u64, u64)> {
        let get = |name: &str| {
            self.apis
                .iter()
                .find(|a| a.0 == name)
                .map_or((0, 0), |a| (a.1, a.2))
        };
        [
            ("__get_free_pages", "free_pages"),
            ("kmalloc", "kfree"),
            ("kmem_cache_alloc", "kmem_cache_free"),
            ("mempool_alloc", "mempool_free"),
            ("__vmalloc", "vfree"),
            ("__alloc_percpu_gfp", "free_percpu"),
        ]
        .into_iter()
        .filter_map(|(a, f)| {
            let (calls, fails) = get(a);
            let freed = get(f).0;
            (calls - fails != freed).then_some((a, f, calls - fails, freed))
        })
        .collect()
    }

    /// The check's verdict, in words.
    pub fn check_text(&self) -> String {
        let mut s = String::new();
        if self.boot_state {
            let _ = writeln!(
                s,
                "every page came back: the buddy lists equal the boot state ({} free pages)",
                self.final_free
            );
        } else {
            let _ = writeln!(
                s,
                "PAGES MISSING: {} free pages, {} at the start; the buddy lists differ \
                 from the boot state:\n{}",
                self.final_free,
                self.baseline_free,
                self.boot_diff.trim_end()
            );
        }
        for (a, f, n, freed) in self.unbalanced() {
            let _ = writeln!(s, "UNBALANCED: {n} successful {a} calls, {freed} {f} calls");
        }
        if self.percpu_sum == self.attempts {
            let _ = writeln!(
                s,
                "the per-CPU operation counters sum to {} = the operations counted by the threads",
                self.percpu_sum
            );
        } else {
            let _ = writeln!(
                s,
                "PER-CPU COUNTERS WRONG: they sum to {}, the threads counted {}",
                self.percpu_sum, self.attempts
            );
        }
        if self.ctor_bad != 0 {
            let _ = writeln!(s, "CONSTRUCTOR STATE LOST: {} objects", self.ctor_bad);
        }
        s
    }

    /// The report as text (the boot log and /proc files too unless `quiet`).
    pub fn text(&self, quiet: bool) -> String {
        let mut s = String::new();
        if !quiet {
            let _ = writeln!(s, "==== boot log (dmesg) ====\n{}", self.dmesg.trim_end());
            s.push('\n');
        }
        let secs = self.seconds.max(1e-9);
        let _ = writeln!(
            s,
            "==== report ====\n{:.2} s on {} CPUs, {} worker threads, boot parameters {:?}\n",
            self.seconds, self.nr_cpus, self.threads, self.cmdline
        );
        let _ = writeln!(
            s,
            "{:<20} {:>12} {:>12} {:>10}",
            "API", "calls", "per second", "failed"
        );
        for (name, calls, fails) in &self.apis {
            let _ = writeln!(
                s,
                "{name:<20} {calls:>12} {:>12.0} {fails:>10}",
                *calls as f64 / secs
            );
        }
        let _ = writeln!(
            s,
            "\n{:<12} {:>12} {:>10}   (GFP_KERNEL and GFP_NOFS with __GFP_NORETRY; all with __GFP_NOWARN)",
            "GFP class", "allocations", "failed"
        );
        for (name, calls, fails) in &self.classes {
            let _ = writeln!(s, "{name:<12} {calls:>12} {fails:>10}");
        }
        let _ = writeln!(s, "\nreclaim:");
        for (name, v) in &self.reclaim {
            let _ = writeln!(s, "  {name:<28} {v:>12}");
        }
        for (name, freed, scans) in &self.shrinkers {
            let _ = writeln!(
                s,
                "  shrinker {name:<19} {freed:>12} objects freed in {scans} scans"
            );
        }
        let _ = writeln!(s, "\nmempool sim-bio (block I/O requests, GFP_NOIO):");
        for (name, v) in &self.mempool {
            let _ = writeln!(s, "  {name:<28} {v:>12}");
        }
        let _ = writeln!(s, "\nworkload:");
        for (name, v) in &self.events {
            let _ = writeln!(s, "  {name:<28} {v:>12}");
        }
        if !quiet {
            for (name, text) in &self.proc_files {
                // The file as the kernel prints it, trailing blanks included.
                let _ = write!(s, "\n==== /proc/{name} ====\n{text}");
                if !text.ends_with('\n') {
                    s.push('\n');
                }
            }
        }
        let _ = write!(s, "\n==== check ====\n{}", self.check_text());
        s
    }

    /// The report as JSON (without the /proc files if `quiet`).
    pub fn json(&self, quiet: bool) -> Value {
        let secs = self.seconds.max(1e-9);
        let pairs = |v: &[(&'static str, u64)]| {
            Value::Object(
                v.iter()
                    .map(|(k, n)| (k.to_string(), json!(n)))
                    .collect::<Map<_, _>>(),
            )
        };
        let mut doc = json!({
            "boot_parameters": self.cmdline,
            "nr_cpus": self.nr_cpus,
            "threads": self.threads,
            "seconds": self.seconds,
            "apis": self.apis.iter().map(|(n, c, f)| json!({
                "api": n, "calls": c, "per_second": *c as f64 / secs, "failed": f
            })).collect::<Vec<_>>(),
            "failures_by_gfp": self.classes.iter().map(|(n, c, f)| json!({
                "gfp": n, "allocations": c, "failed": f
            })).collect::<Vec<_>>(),
            "reclaim": pairs(&self.reclaim),
            "shrinkers": self.shrinkers.iter().map(|(n, f, s)| json!({
                "name": n, "freed": f, "scans": s
            })).collect::<Vec<_>>(),
            "mempool": pairs(&self.mempool),
            "events": pairs(&self.events),
            "proc": Value::Object(
                self.proc_files.iter().map(|(n, t)| (n.to_string(), json!(t))).collect::<Map<_, _>>()
            ),
            "check": {
                "ok": self.ok(),
                "buddy_equals_boot_state": self.boot_state,
                "boot_state_diff": self.boot_diff,
                "free_pages_after_warmup": self.baseline_free,
                "free_pages_at_end": self.final_free,
                "percpu_counter_sum": self.percpu_sum,
                "operations_counted": self.attempts,
                "objects_not_constructed": self.ctor_bad,
                "text": self.check_text(),
            },
        });
        // `--quiet`: no /proc files, as in the text report.
        if quiet {
            if let Some(o) = doc.as_object_mut() {
                o.remove("proc");
            }
        }
        doc
    }
}
