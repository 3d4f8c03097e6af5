//! `kmem top`: slabtop for a running simulation.
//!
//! The workload of `kmem sim` runs in background threads; every `--delay`
//! seconds the screen shows slabtop's header (active/total objects, slabs,
//! caches, size; smallest, average and largest object), the caches sorted
//! by one of slabtop's criteria, a status line of the workload, and
//! /proc/buddyinfo beside the header (below, on a narrow terminal). On a
//! terminal, stdin is put in raw mode (termios: no echo, no line buffering,
//! no signal keys) so single keys act at once, as in slabtop: `q` (or ^C)
//! quits, `o` `a` `c` `s` `l` `v` `n` `p` `b` `u` change the
//! sort order, space refreshes. When stdout is not a terminal, frames are
//! printed one after another without escape codes.

use crate::args::{check_cmdline, unknown, ArgError, Args};
use crate::sim::boot;
use crate::workload::Workload;
use kmem::proc::{slabinfo_snapshots, SlabInfo};
use kmem::PAGE_SIZE;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub const USAGE: &str = "\
kmem top — a live slabtop-style view of the kmem sim workload

USAGE:
    kmem top [--delay SECS] [--sort KEY] [--once] [--duration SECS] [--threads N] [--cmdline STR]

Runs the workload of `kmem sim` in the background and shows, refreshed every --delay
seconds: slabtop's summary (objects, slabs, caches, memory) with /proc/buddyinfo beside it,
and the slab caches sorted by the chosen key. Keys while it runs (as in slabtop):
    q  quit (also ^C)                o  number of objects (default)
    a  active objects                c  cache size
    s  object size                   l  number of slabs
    v  active slabs                  n  name
    p  pages per slab                b  objects per slab
    u  utilization                   space  refresh now
When it stops, the workload is torn down and checked like `kmem sim`'s (exit 1 if a page
is missing).

OPTIONS:
    --delay SECS       seconds between refreshes (default 1)
    --sort KEY         initial sort key, one of the letters above (default o)
    --once             print one frame (after a short run) and exit
    --duration SECS    stop by itself after this long
    --threads N        worker threads (default: one per machine CPU)
    --cmdline STR      boot parameters (default: $KMEM_CMDLINE)
    -h, --help         this text
";

const SORT_KEYS: &str = "oacslvnpbu";

struct Opts {
    delay: Duration,
    sort: char,
    once: bool,
    duration: Option<Duration>,
    threads: Option<usize>,
    cmdline: String,
}

fn parse(args: &[String]) -> Result<Opts, ArgError> {
    let mut o = Opts {
        delay: Duration::from_secs(1),
        sort: 'o',
        once: false,
        duration: None,
        threads: None,
        cmdline: kmem_hosted::machine::env_cmdline().to_string(),
    };
    let mut from = "KMEM_CMDLINE";
    let mut a = Args::new(args);
    while let Some(opt) = a.next_opt()? {
        match opt {
            "--delay" | "-d" => o.delay = a.seconds(opt)?,
            "--sort" | "-s" => {
                let v = a.value(opt)?;
                let mut cs = v.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) if SORT_KEYS.contains(c) => o.sort = c,
                    _ => {
                        return Err(ArgError::Bad(format!(
                            "{opt}: not a sort key: {v:?} (one of {SORT_KEYS})"
                        )))
                    }
                }
            }
            "--once" | "-o" => {
                a.flag(opt)?;
                o.once = true;
            }
            "--duration" => o.duration = Some(a.seconds(opt)?),
            "--threads" => o.threads = Some(a.number(opt, 1, 4096)?),
            "--cmdline" => {
                o.cmdline = a.value(opt)?.to_string();
                from = "--cmdline";
            }
            _ => return unknown(opt),
        }
    }
    check_cmdline(&o.cmdline, from)?;
    Ok(o)
}

/// Sort caches by slabtop's key `key` (largest first; names alphabetically).
fn sort(v: &mut [SlabInfo], key: char) {
    let cache_size = |s: &SlabInfo| s.num_slabs * s.pages_per_slab;
    let util = |s: &SlabInfo| (s.active_objs * 1000).checked_div(s.num_objs).unwrap_or(0);
    match key {
        'n' => v.sort_by(|a, b| a.name().cmp(b.name())),
        _ => v.sort_by_key(|s| {
            std::cmp::Reverse(match key {
                'a' => s.active_objs,
                'c' => cache_size(s),
                's' => s.objsize,
                'l' => s.num_slabs,
                'v' => s.active_slabs,
                'p' => s.pages_per_slab,
                'b' => s.objects_per_slab,
                'u' => util(s),
                _ => s.num_objs,
            })
        }),
    }
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}

/// One screen: slabtop's header with buddyinfo beside it (below it when
/// the terminal is narrower than both, `cols`, or its width is unknown), the
/// table (at most `rows` caches) and the workload's status.
fn frame(w: &Workload, key: char, rows: usize, cols: Option<usize>) -> String {
    let m = w.sh.m;
    let mut caches = Vec::new();
    slabinfo_snapshots(&**m, |s| caches.push(*s));
    let (mut active, mut objs, mut aslabs, mut slabs, mut acaches) = (0, 0, 0, 0, 0);
    let (mut asize, mut tsize) = (0usize, 0usize);
    let (mut min, mut max) = (usize::MAX, 0);
    for s in &caches {
        active += s.active_objs;
        objs += s.num_objs;
        aslabs += s.active_slabs;
        slabs += s.num_slabs;
        acaches += (s.active_objs > 0) as usize;
        asize += s.active_objs * s.objsize;
        tsize += s.num_slabs * s.pages_per_slab * PAGE_SIZE;
        min = min.min(s.objsize);
        max = max.max(s.objsize);
    }
    let k = |b: usize| b as f64 / 1024.0;
    let avg = asize.checked_div(active).unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        " Active / Total Objects (% used)    : {active} / {objs} ({:.1}%)",
        pct(active, objs)
    );
    let _ = writeln!(
        out,
        " Active / Total Slabs (% used)      : {aslabs} / {slabs} ({:.1}%)",
        pct(aslabs, slabs)
    );
    let _ = writeln!(
        out,
        " Active / Total Caches (% used)     : {acaches} / {} ({:.1}%)",
        caches.len(),
        pct(acaches, caches.len())
    );
    let _ = writeln!(
        out,
        " Active / Total Size (% used)       : {:.2}K / {:.2}K ({:.1}%)",
        k(asize),
        k(tsize),
        pct(asize, tsize)
    );
    let _ = writeln!(
        out,
        " Minimum / Average / Maximum Object : {:.2}K / {:.2}K / {:.2}K",
        k(if min == usize::MAX { 0 } else { min }),
        k(avg),
        k(max)
    );
    let buddyinfo = m.proc_read("buddyinfo").unwrap_or_default();
    let beside = beside(&out, &buddyinfo, cols);
    if let Some(header) = &beside {
        out.clone_from(header);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "  OBJS ACTIVE  USE OBJ SIZE  SLABS OBJ/SLAB CACHE SIZE NAME");
    sort(&mut caches, key);
    for s in caches.iter().take(rows) {
        let _ = writeln!(
            out,
            "{:6} {:6} {:3.0}% {:7.2}K {:6} {:8} {:9}K {}",
            s.num_objs,
            s.active_objs,
            pct(s.active_objs, s.num_objs).floor(),
            k(s.objsize),
            s.num_slabs,
            s.objects_per_slab,
            s.num_slabs * s.pages_per_slab * PAGE_SIZE / 1024,
            s.name()
        );
    }
    let secs = w.start.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "\nkmem sim: {:.1} s, {:.2} M calls/s, memory hog holds {} pages, sort: {key} (q quits)",
        secs,
        w.sh.stats.total_calls() as f64 / secs.max(1e-3) / 1e6,
        w.sh.events.hog_pages.load(Ordering::Relaxed)
    );
    if beside.is_none() {
        let _ = write!(out, "\n{buddyinfo}");
    }
    out
}

/// The lines of `left` with those of `right` beside them, if both fit in
/// `cols` columns with three blanks between.
fn beside(left: &str, right: &str, cols: Option<usize>) -> Option<String> {
    let width = |t: &str| t.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    let (lw, rw) = (width(left), width(right));
    if cols? < lw + 3 + rw {
        return None;
    }
    let (mut l, mut r) = (left.lines(), right.lines());
    let mut out = String::new();
    loop {
        match (l.next(), r.next()) {
            (None, None) => return Some(out),
            (a, b) => {
                let a = a.unwrap_or("");
                let _ = match b {
                    Some(b) => writeln!(out, "{a}{:pad$}   {b}", "", pad = lw - a.chars().count()),
                    None => writeln!(out, "{a}"),
                };
            }
        }
    }
}

/// Raw terminal mode on stdin for the life of the value.
struct RawMode(libc::termios);

impl RawMode {
    fn enter() -> Option<RawMode> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios value we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            // ISIG off as well: ^C and ^\ arrive as keys and quit through the
            // path that restores these settings.
            t.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
            t.c_cc[libc::VMIN] = 0;
            t.c_cc[libc::VTIME] = 0;
            (libc::tcsetattr(0, libc::TCSANOW, &t) == 0).then_some(RawMode(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enter`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
    }
}

/// Wait up to `d` for a key on stdin (raw mode); the key, if any.
fn wait_key(d: Duration) -> Option<u8> {
    let mut pfd = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = d.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one pollfd we own.
    if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
        return None;
    }
    let mut b = 0u8;
    // SAFETY: reads at most one byte into `b`.
    (unsafe { libc::read(0, (&mut b) as *mut u8 as *mut libc::c_void, 1) } == 1).then_some(b)
}

/// Rows and columns of the terminal on stdout, if it is one.
fn term_size() -> Option<(usize, usize)> {
    // SAFETY: TIOCGWINSZ fills a winsize we own.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0)
            .then_some((ws.ws_row as usize, ws.ws_col as usize))
    }
}

fn run(o: Opts) -> Result<bool, String> {
    let m = boot(&o.cmdline)?;
    let threads = o.threads.unwrap_or(m.nr_cpu_ids());
    let w = Workload::start(m, threads, true)?;
    let tty_out = std::io::stdout().is_terminal();
    let mut out = std::io::stdout();
    if o.once {
        std::thread::sleep(o.delay.min(Duration::from_millis(300)));
        let _ = write!(out, "{}", frame(&w, o.sort, usize::MAX, None));
    } else {
        let raw = if std::io::stdin().is_terminal() {
            RawMode::enter()
        } else {
            None
        };
        let mut key = o.sort;
        let end = o.duration.map(|d| Instant::now() + d);
        loop {
            // The header, blank line and table head, the status and buddyinfo (if it does not fit
            // beside the header) take about 12 rows.
            let size = term_size().filter(|_| tty_out);
            let rows = size.map_or(usize::MAX, |(r, _)| r.saturating_sub(12 + m.zones().count()));
            let f = frame(&w, key, rows, size.map(|(_, c)| c));
            if tty_out {
                let _ = write!(out, "\x1b[H\x1b[2J{f}");
            } else {
                let _ = writeln!(out, "{f}");
            }
            let _ = out.flush();
            let next = Instant::now() + o.delay;
            let mut quit = false;
            while let Some(left) = next.checked_duration_since(Instant::now()) {
                if end.is_some_and(|e| Instant::now() >= e) {
                    quit = true;
                    break;
                }
                let slice = left.min(Duration::from_millis(100));
                let k = if raw.is_some() {
                    wait_key(slice)
                } else {
                    std::thread::sleep(slice);
                    None
                };
                match k.map(|b| b.to_ascii_lowercase() as char) {
                    // q, ^C, ^\
                    Some('q' | '\x03' | '\x1c') => {
                        quit = true;
                        break;
                    }
                    Some(' ') => break,
                    Some(c) if SORT_KEYS.contains(c) => {
                        key = c;
                        break;
                    }
                    _ => {}
                }
            }
            if quit {
                break;
            }
        }
        drop(raw);
    }
    let sh = w.sh;
    let outcome = w.finish()?;
    let r = crate::report::Report::new(sh, outcome, &o.cmdline);
    if !r.ok() {
        eprint!(
            "kmem top: the check after the workload failed:\n{}",
            r.check_text()
        );
    }
    Ok(r.ok())
}

/// `kmem top ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => return e.report("top", USAGE),
    };
    match run(o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kmem top: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::beside;

    #[test]
    fn buddyinfo_goes_beside_the_header_when_both_fit() {
        let left = "ab\nabcd\n";
        let right = "x\ny\nz\n";
        assert_eq!(
            beside(left, right, Some(10)).as_deref(),
            Some("ab     x\nabcd   y\n       z\n")
        );
        assert_eq!(beside(left, right, Some(7)), None, "too narrow");
        assert_eq!(beside(left, right, None), None, "width unknown");
        assert_eq!(
            beside("a\nb\nc\n", "x\n", Some(80)).as_deref(),
            Some("a   x\nb\nc\n")
        );
    }
}
