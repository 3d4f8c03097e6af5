//! `kmem bench`: the comparison suites of `kmem_bench::compare` (kmem's
//! page allocator against buddy_system_allocator; its slab caches and
//! kmalloc against glibc, mimalloc and jemalloc; vmalloc, per-CPU memory
//! and mempool; libkmalloc against the same three through `LD_PRELOAD`),
//! printed as tables of figures and ratios.

use crate::args::{unknown, ArgError, Args};
use kmem_bench::compare::{self, Scale, Suite};
use std::process::ExitCode;

pub const USAGE: &str = "\
kmem bench — kmem against other allocators, in this process and this run

USAGE:
    kmem bench [--suite NAME[,NAME...]]... [--quick]

SUITES:
    pages      alloc_pages/__free_pages against buddy_system_allocator's LockedHeap
    objects    kmem_cache_alloc and kmalloc against glibc, mimalloc and jemalloc
               (64-byte pairs, a batch of 1000, a cross-thread producer/consumer)
    vmalloc    1-page vmalloc+vfree, __alloc_percpu+free_percpu, mempool_alloc+free
               against kmem_cache_alloc+free under it
    malloc     libkmalloc against glibc, mimalloc and jemalloc through LD_PRELOAD on
               crates/kmem-malloc/bench/mallocbench.c's workloads (pair, larson, mixed,
               prodcons, falseshare, frag, large): ms per run and peak RSS; needs
               libkmalloc.so beside kmem (cargo build --release) and cc
    (default: all four)

OPTIONS:
    --suite NAMES   the suites to run (repeatable, or comma-separated)
    --quick         a smoke run of about a second per suite (noisier figures)
    -h, --help      this text

Figures are wall-clock nanoseconds per operation (the malloc suite: milliseconds per run
and MB; the median of a few runs, the allocators' runs interleaved); ratios
divide kmem's figure by the other allocator's (below 1.00: kmem is faster), in the malloc
suite's time rows round by round (each round runs every allocator once; the median of
the rounds' ratios). The full
tables, instruction counts and the machine they were measured on are in BENCHMARKS.md
(cargo run --release -p kmem-bench --bin kmem-bench-slab, and -pages, -vmalloc;
scripts/bench-malloc.sh).
";

struct Opts {
    suites: Vec<Suite>,
    quick: bool,
}

fn parse(args: &[String]) -> Result<Opts, ArgError> {
    let mut o = Opts {
        suites: Vec::new(),
        quick: false,
    };
    let mut a = Args::new(args);
    while let Some(opt) = a.next_opt()? {
        match opt {
            "--suite" => {
                let names = a.value(opt)?;
                if names.split(',').all(str::is_empty) {
                    return Err(ArgError::Bad(format!(
                        "{opt} needs a suite name (pages, objects, vmalloc, malloc)"
                    )));
                }
                for name in names.split(',').filter(|s| !s.is_empty()) {
                    let s = Suite::from_name(name).ok_or_else(|| {
                        ArgError::Bad(format!(
                            "--suite: no suite {name:?} (pages, objects, vmalloc, malloc)"
                        ))
                    })?;
                    if !o.suites.contains(&s) {
                        o.suites.push(s);
                    }
                }
            }
            "--quick" => {
                a.flag(opt)?;
                o.quick = true;
            }
            _ => return unknown(opt),
        }
    }
    if o.suites.is_empty() {
        o.suites = Suite::ALL.to_vec();
    }
    Ok(o)
}

fn cell(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.1}"))
}

/// Print a table: the figures, then each kmem column's ratio to each other allocator's.
fn print_table(t: &compare::Table) {
    let k = t.kmem_columns;
    let pairs: Vec<(usize, usize)> = (0..k)
        .flat_map(|i| (k..t.columns.len()).map(move |j| (i, j)))
        .collect();
    println!("\n## {}\n", t.title);
    print!("| case |");
    for c in &t.columns {
        print!(" {c} |");
    }
    for &(i, j) in &pairs {
        print!(" {}/{} |", t.columns[i], t.columns[j]);
    }
    println!();
    println!("|---|{}", "---:|".repeat(t.columns.len() + pairs.len()));
    for (row, (name, v)) in t.rows.iter().enumerate() {
        print!("| {name} |");
        for x in v {
            print!(" {} |", cell(*x));
        }
        let measured = t.round_ratios.iter().find(|(r, _)| *r == row).map(|(_, q)| q);
        for &(i, j) in &pairs {
            let ratio = match (measured, v[i], v[j]) {
                // Round by round (one kmem column): kmem's ratio to column j.
                (Some(q), ..) => q.get(j - k).copied().flatten(),
                (None, Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            match ratio {
                Some(r) => print!(" {r:.2} |"),
                None => print!(" – |"),
            }
        }
        println!();
    }
}

/// `kmem bench ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => return e.report("bench", USAGE),
    };
    let (model, cpus) = kmem_bench::cpu_model();
    println!(
        "kmem bench: CPU {model} ({cpus} logical CPUs), machine {:?}, wall-clock ns per operation{}",
        kmem_bench::BENCH_CMDLINE,
        if o.quick { " (--quick)" } else { "" }
    );
    let scale = if o.quick { Scale::QUICK } else { Scale::FULL };
    let mut ran_all = true;
    for s in o.suites {
        let t = compare::run(s, scale);
        print_table(&t);
        // A suite that could not run says why in its one row, with no figure.
        if t.rows.iter().all(|(_, v)| v.iter().all(Option::is_none)) {
            eprintln!("kmem bench: the {} suite did not run", s.name());
            ran_all = false;
        }
    }
    if ran_all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
