//! The kernel home: builds the bare-metal test kernel (`kernel/`, target
//! `x86_64-unknown-none`) and boots it in QEMU under software emulation
//! (TCG), with 1, 2 and 4 vCPUs and 64 MiB and 1 GiB of RAM, repeatedly,
//! and with deliberate faults.
//!
//! A boot passes when QEMU exits through the kernel's `isa-debug-exit`
//! verdict (status 33) and the serial console shows every check passing —
//! the shared suite, SMP stress with allocating timer interrupts, TLB
//! shootdown, ioremap of the APICs and the `edu` device — the `/proc`
//! files and the page check. A deliberate fault must end with
//! the failing verdict (35) after a register dump; a triple fault (QEMU's
//! own exit 0 with `-no-reboot`) or a hang (killed after `BOOT_TIMEOUT`)
//! is never taken for a pass.
//!
//! Without `qemu-system-x86_64` or the `x86_64-unknown-none` target the
//! tests say "skipped: ..." and return. Boots run one at a time (a lock),
//! so parallel test threads do not crowd the emulator.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A boot that takes longer has hung.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const QEMU: &str = "qemu-system-x86_64";

fn kernel_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel")
}

/// Why the kernel cannot be booted here, if it cannot.
fn missing() -> Option<String> {
    let qemu_ok = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !qemu_ok {
        return Some(format!(
            "skipped: {QEMU} not found (apt-get install qemu-system-x86)"
        ));
    }
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let has_target = sysroot.is_some_and(|s| Path::new(&s).join("lib/rustlib/x86_64-unknown-none").is_dir());
    if !has_target {
        return Some(
            "skipped: target x86_64-unknown-none missing (rustup target add x86_64-unknown-none)".into(),
        );
    }
    None
}

/// Build the kernel once per test process; the ELF's path.
fn kernel_elf() -> Result<PathBuf, String> {
    static ELF: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ELF.get_or_init(|| {
        let dir = kernel_dir();
        let target_dir = dir.join("target");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&dir)
            .args(["build", "--release", "--target-dir"])
            .arg(&target_dir);
        // The outer build's settings are not the kernel's (its own target,
        // linker script and rustflags come from kernel/.cargo/config.toml).
        for v in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_MANIFEST_DIR",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(v);
        }
        let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "kernel build failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(target_dir.join("x86_64-unknown-none/release/kmem-kernel"))
    })
    .clone()
}

/// One boot's outcome.
struct Boot {
    /// QEMU's exit status (`None`: killed after the timeout).
    status: Option<i32>,
    /// The serial console.
    console: String,
    /// Wall time.
    elapsed: Duration,
}

impl Boot {
    fn passed(&self) -> bool {
        self.status == Some(33)
    }
}

/// Boot the kernel; `None` (after printing why) when it cannot be booted here.
fn boot(smp: u32, mem: &str, cmdline: &str) -> Option<Boot> {
    if let Some(why) = missing() {
        println!("{why}");
        return None;
    }
    let elf = match kernel_elf() {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let mut child = Command::new(QEMU)
        .args(["-machine", "q35", "-cpu", "max", "-accel", "tcg"])
        .args(["-smp", &smp.to_string(), "-m", mem])
        .arg("-kernel")
        .arg(&elf)
        .args(["-append", cmdline])
        .args(["-nographic", "-serial", "stdio", "-monitor", "none"])
        .args([
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-device",
            "edu",
        ])
        .arg("-no-reboot")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qemu");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).replace('\r', "")
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for qemu") {
            break s.code();
        }
        if start.elapsed() > BOOT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let mut console = reader.join().unwrap_or_default();
    if !err.is_empty() {
        console.push_str("\n[qemu stderr]\n");
        console.push_str(&err);
    }
    Some(Boot {
        status,
        console,
        elapsed: start.elapsed(),
    })
}

/// Boot and require a pass with everything the run must show.
fn boot_and_pass(smp: u32, mem: &str) {
    let Some(b) = boot(smp, mem, "") else { return };
    let c = &b.console;
    assert!(
        b.passed(),
        "smp={smp} mem={mem}: QEMU status {:?} (33 = pass)\n{c}",
        b.status
    );
    for must in [
        "ktest: pages_came_back ... ok",
        "ktest: smp_stress ... ok",
        "ktest: timer_irq_allocations ... ok",
        "ktest: sleeping_alloc_in_irq_reported ... ok",
        "BUG: sleeping function called from invalid context",
        "ktest: ioremap_local_apic ... ok",
        "ktest: ioremap_io_apic ... ok",
        "ktest: ioremap_edu_bar0 ... ok",
        "ktest: ioremap_ram_refused ... ok",
        "ktest: vmalloc_page_tables_empty ... ok",
        "ktest: every_page_came_back ... ok",
        "slabinfo - version: 2.1",
        "Node 0, zone      DMA",
        "==== /proc/vmallocinfo ====",
        "ktest: PASS",
    ] {
        assert!(
            c.contains(must),
            "smp={smp} mem={mem}: no {must:?} on the console\n{c}"
        );
    }
    assert!(!c.contains("FAILED"), "smp={smp} mem={mem}: a check failed\n{c}");
    let online = format!("{smp} of {smp} CPUs online");
    assert!(c.contains(&online), "smp={smp}: not every CPU came up\n{c}");
    if smp > 1 {
        assert!(
            c.contains("ktest: tlb_shootdown ... ok"),
            "smp={smp}: no shootdown check\n{c}"
        );
    }
    println!("smp={smp} mem={mem}: passed in {:.2?}", b.elapsed);
}

#[test]
fn boots_1cpu_64m() {
    boot_and_pass(1, "64M");
}

#[test]
fn boots_2cpus_64m() {
    boot_and_pass(2, "64M");
}

#[test]
fn boots_4cpus_64m() {
    boot_and_pass(4, "64M");
}

#[test]
fn boots_1cpu_1g() {
    boot_and_pass(1, "1G");
}

#[test]
fn boots_2cpus_1g() {
    boot_and_pass(2, "1G");
}

#[test]
fn boots_4cpus_1g() {
    boot_and_pass(4, "1G");
}

#[test]
fn repeated_boots_never_fail() {
    for i in 0..5 {
        let Some(b) = boot(4, "128M", "") else { return };
        assert!(
            b.passed() && !b.console.contains("FAILED"),
            "boot {i}: status {:?}\n{}",
            b.status,
            b.console
        );
    }
}

/// A deliberate fault is reported with a register dump and fails the run.
fn fault_is_reported(kind: &str, headline: &str) {
    let Some(b) = boot(2, "64M", &format!("ktest.fault={kind}")) else {
        return;
    };
    let c = &b.console;
    assert_eq!(
        b.status,
        Some(35),
        "ktest.fault={kind}: status {:?} (35 = fail)\n{c}",
        b.status
    );
    for must in [
        headline,
        "RIP: 0010:",
        "RSP: 0018:",
        "RAX: ",
        "R15: ",
        "CR2: ",
        "Call Trace:",
        "Kernel panic - not syncing: Fatal exception",
    ] {
        assert!(c.contains(must), "ktest.fault={kind}: no {must:?}\n{c}");
    }
    assert!(
        !c.contains("ktest: PASS"),
        "ktest.fault={kind}: passed anyway\n{c}"
    );
}

#[test]
fn page_fault_is_reported() {
    fault_is_reported(
        "pf",
        "BUG: unable to handle page fault for address: 00007fffdead0000",
    );
}

#[test]
fn general_protection_fault_is_reported() {
    fault_is_reported("gp", "general protection fault: 0000 [#1] SMP");
}

#[test]
fn invalid_opcode_is_reported() {
    fault_is_reported("ud", "invalid opcode: 0000 [#1] SMP");
}

#[test]
fn double_fault_is_reported() {
    fault_is_reported("df", "double fault: 0000 [#1] SMP");
}

#[test]
fn fault_before_the_memory_manager_is_reported() {
    fault_is_reported("early", "BUG: unable to handle page fault");
}

/// With the shootdown broken on purpose (local flushes only), the TLB
/// checks fail: the other CPU keeps its stale translation.
#[test]
fn missing_tlb_shootdown_is_caught() {
    let Some(b) = boot(2, "64M", "ktest.no_shootdown") else {
        return;
    };
    let c = &b.console;
    assert_eq!(b.status, Some(35), "status {:?}\n{c}", b.status);
    assert!(c.contains("ktest: tlb_shootdown ... FAILED"), "{c}");
    // The stale translations the broken shootdown leaves can corrupt memory
    // the later checks use: the run may end with an oops before the IPI
    // check reports (seen once in 30 runs).
    assert!(
        c.contains("ktest: tlb_shootdown_ipis ... FAILED") || c.contains("[#1] SMP"),
        "{c}"
    );
}

/// A `#DB` the kernel did not ask for (QEMU's software emulation leaks
/// them, as Linux notes) is ignored the way Linux's `exc_debug_kernel`
/// does: one warning, `TF` cleared in the interrupted context, and the run
/// goes on and passes.
#[test]
fn spurious_debug_exception_is_ignored() {
    let Some(b) = boot(2, "64M", "ktest.spurious_db") else {
        return;
    };
    let c = &b.console;
    assert!(b.passed(), "status {:?}\n{c}", b.status);
    assert!(c.contains("spurious #DB at"), "{c}");
    assert!(c.contains("TF cleared), ignored"), "{c}");
    assert!(c.contains("ktest: spurious #DB: 1 ignored, TF clear"), "{c}");
}

/// A triple fault resets the machine; with `-no-reboot` QEMU exits 0 —
/// which must never count as a pass.
#[test]
fn triple_fault_is_not_a_pass() {
    let Some(b) = boot(1, "64M", "ktest.fault=triple") else {
        return;
    };
    assert_ne!(b.status, Some(33), "a triple fault passed\n{}", b.console);
    assert!(!b.console.contains("ktest: PASS"), "{}", b.console);
}
