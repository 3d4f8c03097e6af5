//! `kmem sim`: boot a machine, run the kernel-like workload of
//! [`crate::workload`] on every CPU for a set time with a progress bar on a
//! terminal, then print the report of [`crate::report`] and exit 0 only if
//! every page came back and the counters add up.

use crate::args::{check_cmdline, unknown, ArgError, Args};
use crate::report::Report;
use crate::workload::Workload;
use kmem_hosted::Machine;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

pub const USAGE: &str = "\
kmem sim — run a kernel-like workload on every CPU, then report and check it

USAGE:
    kmem [sim] [--duration SECS] [--threads N] [--cmdline \"BOOT PARAMS\"] [--json] [--quiet]

Boots a machine and, for the given time, drives on every CPU: page allocations of mixed
orders and GFP classes (some freed on other CPUs, some parked in a pool a shrinker empties);
a network path (packet buffers kmalloc'd GFP_ATOMIC in simulated softirq and hardirq
context, freed on the next CPU); a filesystem (dentry and inode caches with constructors,
GFP_NOFS, unused objects kept on LRUs that shrinkers reclaim under pressure); block I/O
(requests from a mempool under GFP_NOIO, completed in simulated hardirq context, while a
memory hog repeatedly takes every page it can); module loads (vmalloc/vfree); per-CPU
statistics counters and per-CPU objects. Then prints the boot log, the report (calls per
second by API, failures by GFP class, reclaim and mempool events), the /proc files, and
checks that every page came back. Exit status 0 if the check passes, 1 if not (or if the
machine cannot boot), 2 for a bad argument.

OPTIONS:
    --duration SECS    how long the workload runs (default 2; fractions allowed); the boot,
                       stopping every thread and the check come on top (seconds with
                       thousands of threads or init_on_free=1, which zeroes every page
                       the memory hog gives back)
    --threads N        worker threads (default: one per machine CPU)
    --cmdline STR      boot parameters (default: $KMEM_CMDLINE), e.g. \"mem=1G nr_cpus=4\"
    --json             print the report as one JSON document instead of text
    --quiet            no progress bar, boot log or /proc files: the report and the check
    -h, --help         this text

The machine's console is quiet (nothing on stderr): the boot log in the report is its dmesg.
A boot parameter kmem does not know or with a bad value is an error (the kernel would log it
and boot on).
";

/// The options of `kmem sim`.
pub struct SimOpts {
    pub duration: Duration,
    pub threads: Option<usize>,
    pub cmdline: String,
    pub json: bool,
    pub quiet: bool,
}

fn parse(args: &[String]) -> Result<SimOpts, ArgError> {
    let mut o = SimOpts {
        duration: Duration::from_secs(2),
        threads: None,
        cmdline: kmem_hosted::machine::env_cmdline().to_string(),
        json: false,
        quiet: false,
    };
    let mut from = "KMEM_CMDLINE";
    let mut a = Args::new(args);
    while let Some(opt) = a.next_opt()? {
        match opt {
            "--duration" => o.duration = a.seconds(opt)?,
            "--threads" => o.threads = Some(a.number(opt, 1, 4096)?),
            "--cmdline" => {
                o.cmdline = a.value(opt)?.to_string();
                from = "--cmdline";
            }
            "--json" => {
                a.flag(opt)?;
                o.json = true;
            }
            "--quiet" | "-q" => {
                a.flag(opt)?;
                o.quiet = true;
            }
            _ => return unknown(opt),
        }
    }
    check_cmdline(&o.cmdline, from)?;
    Ok(o)
}

/// Boot the machine of `cmdline` (checked by `check_cmdline`) for the rest
/// of the process. Its console stays quiet: the tools print the kernel log
/// themselves (the report's boot log is the machine's `dmesg`).
pub fn boot(cmdline: &str) -> Result<&'static Machine, String> {
    let mut params = kmem::cmdline::parse(cmdline);
    params.quiet = true;
    let m = Machine::boot_params(&params).map_err(|e| format!("cannot boot {cmdline:?}: {e}"))?;
    Ok(Box::leak(Box::new(m)))
}

/// Draw the progress bar until `total` has passed.
fn progress(w: &Workload, total: Duration, bar: bool) {
    let width = 40;
    let mut err = std::io::stderr();
    while w.start.elapsed() < total {
        if bar {
            let elapsed = w.start.elapsed();
            let frac = (elapsed.as_secs_f64() / total.as_secs_f64()).min(1.0);
            let done = (frac * width as f64) as usize;
            let rate = w.sh.stats.total_calls() as f64 / elapsed.as_secs_f64().max(1e-3);
            let _ = write!(
                err,
                "\r[{}{}] {:3.0}%  {:.2} M calls/s ",
                "#".repeat(done),
                ".".repeat(width - done),
                frac * 100.0,
                rate / 1e6
            );
            let _ = err.flush();
        }
        std::thread::sleep((total - w.start.elapsed().min(total)).min(Duration::from_millis(100)));
    }
    if bar {
        let _ = write!(err, "\r{}\r", " ".repeat(width + 30));
        let _ = err.flush();
    }
}

fn run(o: SimOpts) -> Result<bool, String> {
    let m = boot(&o.cmdline)?;
    let threads = o.threads.unwrap_or(m.nr_cpu_ids());
    let bar = !o.quiet && !o.json && std::io::stderr().is_terminal();
    if !o.json {
        println!(
            "kmem sim: {} CPUs, {} worker threads, {:.1} s, boot parameters {:?}",
            m.nr_cpu_ids(),
            threads,
            o.duration.as_secs_f64(),
            o.cmdline
        );
    }
    let w = Workload::start(m, threads, true)?;
    progress(&w, o.duration, bar);
    let sh = w.sh;
    let outcome = w.finish()?;
    let r = Report::new(sh, outcome, &o.cmdline);
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r.json(o.quiet)).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", r.text(o.quiet));
    }
    Ok(r.ok())
}

/// `kmem sim ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => return e.report("sim", USAGE),
    };
    match run(o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kmem sim: {e}");
            ExitCode::FAILURE
        }
    }
}
