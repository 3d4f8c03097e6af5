//! `kmem proc NAME`: a /proc file of the default machine (`KMEM_CMDLINE`),
//! after a short page-allocator workload so the numbers are not all
//! boot-time values.

use kmem::GFP_KERNEL;
use std::process::ExitCode;

/// The files `proc_read` knows.
pub const FILES: [&str; 10] = [
    "slabinfo",
    "buddyinfo",
    "pagetypeinfo",
    "zoneinfo",
    "meminfo",
    "vmstat",
    "percpu_stats",
    "vmallocinfo",
    "memblock/memory",
    "memblock/reserved",
];

pub const USAGE: &str = "\
kmem proc — print a /proc file of the default machine after a short workload

USAGE:
    kmem proc NAME

NAME is one of: slabinfo buddyinfo pagetypeinfo zoneinfo meminfo vmstat percpu_stats
vmallocinfo memblock/memory memblock/reserved. The text is in the kernel's exact format.
The default machine boots from $KMEM_CMDLINE (e.g. KMEM_CMDLINE=\"mem=1G nr_cpus=4\").
";

/// `kmem proc ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    let name = match args {
        [a] if a == "-h" || a == "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [name] if FILES.contains(&name.as_str()) => name,
        [name] => {
            eprintln!("kmem proc: no such file: {name}\n\n{USAGE}");
            return ExitCode::from(2);
        }
        [] => {
            eprintln!("kmem proc: which file?\n\n{USAGE}");
            return ExitCode::from(2);
        }
        [_, extra, ..] => {
            eprintln!("kmem proc: unexpected argument: {extra}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let m = kmem_hosted::default_machine();
    let mut v = Vec::new();
    for o in 0..4 {
        for _ in 0..64 {
            if let Ok(p) = m.alloc_pages(GFP_KERNEL, o) {
                v.push((p, o));
            }
        }
    }
    for (p, o) in v.into_iter().step_by(2) {
        // SAFETY: allocated above with this order; the other half stays allocated.
        unsafe { m.__free_pages(p, o) };
    }
    match m.proc_read(name) {
        Some(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("kmem proc: cannot read {name}");
            ExitCode::FAILURE
        }
    }
}
