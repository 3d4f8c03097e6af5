//! Command-line parsing shared by the subcommands: `--name VALUE` and
//! `--name=VALUE` options, flags, `--help`, and the errors that make a
//! subcommand print its usage and exit with status 2.

use std::process::ExitCode;
use std::time::Duration;

/// What went wrong with the arguments (or `--help` was asked for).
pub enum ArgError {
    /// `-h` / `--help`: print the usage, exit 0.
    Help,
    /// A bad argument: the message, then the usage, exit 2.
    Bad(String),
}

impl ArgError {
    /// Print what `self` calls for and give the exit code.
    pub fn report(self, cmd: &str, usage: &str) -> ExitCode {
        match self {
            ArgError::Help => {
                print!("{usage}");
                ExitCode::SUCCESS
            }
            ArgError::Bad(msg) => {
                eprintln!("kmem {cmd}: {msg}\n\n{usage}");
                ExitCode::from(2)
            }
        }
    }
}

fn bad<T>(msg: String) -> Result<T, ArgError> {
    Err(ArgError::Bad(msg))
}

/// A cursor over a subcommand's arguments.
pub struct Args<'a> {
    args: &'a [String],
    pos: usize,
    /// The value of the current `--name=value` argument.
    inline: Option<&'a str>,
}

impl<'a> Args<'a> {
    pub fn new(args: &'a [String]) -> Self {
        Args {
            args,
            pos: 0,
            inline: None,
        }
    }

    /// The next option's name (`--duration` for both `--duration 2` and
    /// `--duration=2`), `None` at the end. `-h`/`--help` give [`ArgError::Help`].
    pub fn next_opt(&mut self) -> Result<Option<&'a str>, ArgError> {
        if let Some(v) = self.inline.take() {
            return bad(format!("unexpected value: {v}"));
        }
        let Some(a) = self.args.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        if a == "-h" || a == "--help" {
            return Err(ArgError::Help);
        }
        if let Some((name, v)) = a.split_once('=').filter(|_| a.starts_with("--")) {
            self.inline = Some(v);
            return Ok(Some(name));
        }
        Ok(Some(a.as_str()))
    }

    /// The value of option `name`. The next argument is taken unless it is
    /// another long option (`--suite --quick` is a missing value).
    pub fn value(&mut self, name: &str) -> Result<&'a str, ArgError> {
        if let Some(v) = self.inline.take() {
            return Ok(v);
        }
        match self.args.get(self.pos).filter(|v| !v.starts_with("--")) {
            Some(v) => {
                self.pos += 1;
                Ok(v)
            }
            None => bad(format!("{name} needs a value")),
        }
    }

    /// A duration in seconds (fractions allowed), in `(0, 1 day)`.
    pub fn seconds(&mut self, name: &str) -> Result<Duration, ArgError> {
        let v = self.value(name)?;
        match v.parse::<f64>() {
            Ok(s) if s > 0.0 && s < 86400.0 => Ok(Duration::from_secs_f64(s)),
            Ok(_) => bad(format!("{name}: out of range (0 < seconds < 86400): {v}")),
            Err(_) => bad(format!("{name}: not a number of seconds: {v}")),
        }
    }

    /// A whole number in `lo..=hi`.
    pub fn number(&mut self, name: &str, lo: usize, hi: usize) -> Result<usize, ArgError> {
        let v = self.value(name)?;
        match v.parse::<usize>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            Ok(_) => bad(format!("{name}: out of range ({lo}..={hi}): {v}")),
            Err(_) => bad(format!("{name}: not a whole number: {v}")),
        }
    }

    /// A flag must not have an `=value`.
    pub fn flag(&mut self, name: &str) -> Result<(), ArgError> {
        match self.inline.take() {
            Some(v) => bad(format!("{name} takes no value (got {v})")),
            None => Ok(()),
        }
    }
}

/// A boot command line the machine takes as given: no parameter with a bad
/// value and none it does not know. (The kernel logs both and boots on; a
/// typo on the command line of a tool would go unnoticed in the boot log.)
/// `what` names where the line came from, for the message.
pub fn check_cmdline(cmdline: &str, what: &str) -> Result<kmem::cmdline::BootParams, ArgError> {
    let p = kmem::cmdline::parse(cmdline);
    if let Some(e) = p.errors().next() {
        return bad(format!("{what}: {e}"));
    }
    if let Some(u) = p.unknown().next() {
        return bad(format!("{what}: unknown boot parameter {u:?}"));
    }
    if let Some(n) = p.nr_cpus.filter(|&n| n > kmem::percpu::PCPU_MAX_CPUS) {
        return bad(format!(
            "{what}: nr_cpus={n}: the per-CPU allocator serves at most {} CPUs",
            kmem::percpu::PCPU_MAX_CPUS
        ));
    }
    Ok(p)
}

/// An unknown argument.
pub fn unknown<T>(a: &str) -> Result<T, ArgError> {
    bad(format!("unknown argument: {a}"))
}
