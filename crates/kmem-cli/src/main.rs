//! `kmem`: boot a kmem machine in this process and exercise it.
//!
//! * `kmem sim` (the default, [`sim`]): a kernel-like workload on every CPU
//!   for a set time, then a report and a check that every page came back.
//! * `kmem top` ([`top`]): a slabtop-style live view of that workload.
//! * `kmem proc NAME` ([`proc`]): a /proc file of the default machine.
//! * `kmem bench` ([`bench`](mod@bench)): kmem against other allocators, as ratios.
//!
//! Every subcommand has `--help`; bad arguments print a message and exit 2.

mod args;
mod bench;
mod proc;
mod report;
mod sim;
mod top;
mod workload;

use std::process::ExitCode;

const USAGE: &str = "\
kmem — the Linux kernel's memory allocators, running in this process

USAGE:
    kmem [sim] [OPTIONS]      run a kernel-like workload, then report and check it (the default)
    kmem top [OPTIONS]        a live slabtop-style view of that workload
    kmem proc NAME            print /proc/NAME of the default machine after a short workload
    kmem bench [OPTIONS]      kmem against glibc, mimalloc, jemalloc and buddy_system_allocator
    kmem help [COMMAND]       this text, or a command's
    kmem --version            the version

`kmem COMMAND --help` describes a command's options. The machine boots from the
kernel-style parameters in KMEM_CMDLINE (or --cmdline), e.g. \"mem=1G nr_cpus=4\".
";

fn main() -> ExitCode {
    // Output piped into `head` and the like: end quietly when the reader goes away, as C tools do,
    // instead of panicking on the failed write (Rust starts programs with SIGPIPE ignored).
    // SAFETY: restores the default disposition of one signal before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.first().map(String::as_str) {
        None => ("sim", &args[..]),
        Some("-h" | "--help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("kmem {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("help") => {
            match args.get(1).map(String::as_str) {
                None => print!("{USAGE}"),
                Some("sim") => print!("{}", sim::USAGE),
                Some("top") => print!("{}", top::USAGE),
                Some("proc") => print!("{}", proc::USAGE),
                Some("bench") => print!("{}", bench::USAGE),
                Some(other) => {
                    eprintln!("kmem help: unknown command: {other}\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            }
            return ExitCode::SUCCESS;
        }
        Some(c) if c.starts_with('-') => ("sim", &args[..]),
        Some(c) => (c, &args[1..]),
    };
    match cmd {
        "sim" => sim::main(rest),
        "top" => top::main(rest),
        "proc" => proc::main(rest),
        "bench" => bench::main(rest),
        other => {
            eprintln!("kmem: unknown command: {other}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
