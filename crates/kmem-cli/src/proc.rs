//! `kmem proc NAME`: a /proc file of the default machine (`KMEM_CMDLINE`),
//! after a short page-allocator workload so the numbers are not all
//! boot-time values.

use crate::args::check_cmdline;
use kmem::proc::PROC_FILES;
use kmem::GFP_KERNEL;
use std::process::ExitCode;

pub const USAGE: &str = "\
kmem proc — print a /proc file of the default machine after a short workload

USAGE:
    kmem proc NAME

NAME is one of: slabinfo buddyinfo pagetypeinfo zoneinfo meminfo vmstat memblock/memory
memblock/reserved percpu_stats vmallocinfo iomem. The text is in the kernel's exact format.
The default machine boots from $KMEM_CMDLINE (e.g. KMEM_CMDLINE=\"mem=1G nr_cpus=4\").
The workload allocates pages of orders 0-3, kmalloc objects and vmalloc areas, and frees
half of each.
";

/// `kmem proc ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    let name = match args {
        [a] if a == "-h" || a == "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [name] if PROC_FILES.contains(&name.as_str()) => name,
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
    if let Err(e) = check_cmdline(kmem_hosted::machine::env_cmdline(), "KMEM_CMDLINE") {
        return e.report("proc", USAGE);
    }
    // Quiet: the file alone goes to stdout, nothing of the boot log to stderr.
    let m = match kmem_hosted::machine::boot_default_machine(|p| p.quiet = true) {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "kmem proc: cannot boot {:?}: {e}",
                kmem_hosted::machine::env_cmdline()
            );
            return ExitCode::FAILURE;
        }
    };
    let mut pages = Vec::new();
    for o in 0..4 {
        for _ in 0..64 {
            if let Ok(p) = m.alloc_pages(GFP_KERNEL, o) {
                pages.push((p, o));
            }
        }
    }
    for (p, o) in pages.into_iter().step_by(2) {
        // SAFETY: allocated above with this order; the other half stays allocated.
        unsafe { m.__free_pages(p, o) };
    }
    let objects: Vec<_> = (0..256)
        .filter_map(|i| m.kmalloc(8 << (i % 8), GFP_KERNEL).ok())
        .collect();
    for p in objects.into_iter().step_by(2) {
        // SAFETY: allocated above; the other half stays allocated.
        unsafe { m.kfree(p.as_ptr()) };
    }
    let areas: Vec<_> = (1..=4)
        .filter_map(|i| m.vmalloc(i * 3 * kmem::PAGE_SIZE).ok())
        .collect();
    for p in areas.into_iter().step_by(2) {
        // SAFETY: an area allocated just above, never used.
        unsafe { m.vfree(p.as_ptr()) };
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
