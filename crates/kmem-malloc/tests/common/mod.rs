//! Helpers for running real programs under `LD_PRELOAD=libkmalloc.so`.
//!
//! `cargo test` does not build a cdylib-only library for integration tests,
//! so `libkmalloc()` builds it once per test binary with the nested
//! `cargo build -p kmem-malloc --lib` of the same profile and target
//! directory as the test (found from the test executable's path,
//! `<target>/<profile>/deps/<test>`) and returns
//! `<target>/<profile>/libkmalloc.so`. A tool a test needs (`python3`,
//! `sqlite3`, `git`, `cc`, `c++`) that is missing makes the test print
//! "skipped: <tool> not found" and pass.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `libkmalloc.so` of this test run's profile, built if out of date.
pub fn libkmalloc() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>/deps/<test>");
        let target_dir = profile_dir.parent().expect("<target>");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile name");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", "kmem-malloc", "--lib", "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build -p kmem-malloc failed");
        let lib = profile_dir.join("libkmalloc.so");
        assert!(lib.exists(), "{} missing after the build", lib.display());
        lib
    })
    .clone()
}

/// Whether `tool` runs (`tool --version`).
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `true` if `tool` is there; otherwise prints the skip line.
pub fn need(tool: &str) -> bool {
    if have(tool) {
        true
    } else {
        println!("skipped: {tool} not found");
        false
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kmem-malloc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Compiles a test program from `tests/programs/<src>` into `dir` with the
/// C compiler (`.c`) or the C++ compiler (`.cc`); `None` (after printing the
/// skip line) if there is no compiler.
pub fn compile(src: &str, dir: &Path, extra: &[&str]) -> Option<PathBuf> {
    let cxx = src.ends_with(".cc");
    let compiler = if cxx { "c++" } else { "cc" };
    if !need(compiler) {
        return None;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(src);
    let out = dir.join(src.rsplit_once('.').map_or(src, |(stem, _)| stem));
    let mut cmd = Command::new(compiler);
    cmd.arg("-O1")
        .arg("-g")
        .arg("-Wall")
        .arg("-pthread")
        .arg("-o")
        .arg(&out)
        .arg(&path);
    if cxx {
        cmd.arg("-std=c++17");
    }
    cmd.args(extra);
    let o = cmd.output().expect("run the compiler");
    assert!(
        o.status.success(),
        "compiling {src} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    Some(out)
}

/// Runs `cmd`, with `LD_PRELOAD` of libkmalloc if `preload`, and `KMEM_CMDLINE`
/// set to `cmdline` (empty: unset).
pub fn run(mut cmd: Command, preload: bool, cmdline: &str) -> Output {
    cmd.env_remove("LD_PRELOAD").env_remove("KMEM_CMDLINE");
    if preload {
        cmd.env("LD_PRELOAD", libkmalloc());
    }
    if !cmdline.is_empty() {
        cmd.env("KMEM_CMDLINE", cmdline);
    }
    cmd.output().expect("run the program")
}

/// Compiles `src` in the scratch directory `name` and runs it under
/// libkmalloc with `KMEM_CMDLINE` set to `cmdline`: its stdout and stderr,
/// once it exited with status 0. None without a C compiler.
pub fn run_program(name: &str, src: &str, extra: &[&str], cmdline: &str) -> Option<(String, String)> {
    let exe = compile(src, &scratch(name), extra)?;
    let o = run(Command::new(&exe), true, cmdline);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{src}: {err}");
    Some((String::from_utf8_lossy(&o.stdout).into_owned(), err))
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs the command `make()` builds twice, with the C library's malloc and
/// with libkmalloc, and checks both succeed with the same stdout and stderr.
/// Returns the preloaded run's output.
pub fn same_output(what: &str, make: impl Fn() -> Command) -> Output {
    let plain = run(make(), false, "");
    assert!(
        plain.status.success(),
        "{what} without libkmalloc failed:\n{}",
        show(&plain)
    );
    let kmem = run(make(), true, "");
    assert!(
        kmem.status.success(),
        "{what} under libkmalloc failed:\n{}",
        show(&kmem)
    );
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout),
        String::from_utf8_lossy(&kmem.stdout),
        "{what}: stdout differs under libkmalloc"
    );
    assert_eq!(
        String::from_utf8_lossy(&plain.stderr),
        String::from_utf8_lossy(&kmem.stderr),
        "{what}: stderr differs under libkmalloc"
    );
    assert!(!plain.stdout.is_empty(), "{what} printed nothing");
    kmem
}

/// Runs `cmd` under libkmalloc and checks it succeeded; returns stdout.
pub fn run_ok(cmd: Command, cmdline: &str) -> String {
    let o = run(cmd, true, cmdline);
    assert!(o.status.success(), "under libkmalloc:\n{}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}
