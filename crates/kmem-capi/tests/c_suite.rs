//! The C test suite: every program in `tests/c/` is compiled against the
//! headers in `include/` and linked with libkmem twice — against the shared
//! library (`-lkmem` with an rpath) and the static one (`libkmem.a` plus the
//! system libraries Rust's standard library needs) — and run; it must exit 0.
//! Besides the programs:
//!
//! * every header compiles on its own with `-Wall -Wextra -Werror`, as C
//!   and as C++;
//! * the flag constants of the C headers equal the Rust core's (a generated
//!   program prints them);
//! * the C example in the README's "Using it from C" section compiles and
//!   runs, exactly as written there.
//!
//! The library is the one of this test's own build profile
//! (`target/<profile>/libkmem.{so,a}`), built by the test with cargo (see
//! [`lib_dir`]).
//!
//! Programs run with `KMEM_CMDLINE="quiet mem=256M nr_cpus=4"` unless they
//! boot their own machine with `kmem_boot`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The system libraries a program linked with `libkmem.a` needs (`rustc
/// --print native-static-libs`).
const STATIC_LIBS: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"];
const CFLAGS: &[&str] = &["-Wall", "-Wextra", "-Werror", "-O1", "-g", "-pthread"];
const CMDLINE: &str = "quiet mem=256M nr_cpus=4";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("repository root")
        .to_path_buf()
}

fn include_dir() -> PathBuf {
    repo().join("include")
}

fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c")
}

/// Where compiled test programs go (one directory per profile, so debug and
/// release runs do not overwrite each other's programs).
fn out_dir() -> PathBuf {
    let profile = lib_dir().file_name().unwrap().to_string_lossy().into_owned();
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kmem-capi-c-{profile}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `target/<profile>`, holding this profile's libkmem.so and libkmem.a.
///
/// `cargo test` builds a package's integration tests and its `lib` test
/// harness, but not its cdylib and staticlib, so this builds them with
/// `cargo build -p kmem-capi` of the test's own profile (a no-op when they
/// are up to date; cargo does not hold the build lock while tests run).
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // target/<profile>/deps/c_suite-<hash>
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let profile = dir.file_name().unwrap().to_string_lossy().into_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "kmem-capi"])
            .current_dir(repo());
        if profile != "debug" {
            cmd.args(["--profile", &profile]);
        }
        let st = cmd.status().expect("cargo build -p kmem-capi");
        assert!(st.success(), "cargo build -p kmem-capi failed");
        for f in ["libkmem.so", "libkmem.a"] {
            assert!(dir.join(f).exists(), "no {f} in {}", dir.display());
        }
        dir
    })
}

fn show(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Sources named by `// link: other.c` lines of a program.
fn extra_sources(src: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(src).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("// link: "))
        .map(|f| src.parent().unwrap().join(f.trim()))
        .collect()
}

/// Compile `src` into `exe`, shared or static.
fn compile(src: &Path, exe: &Path, static_link: bool) {
    let lib = lib_dir();
    let mut cmd = Command::new("cc");
    cmd.arg("-I").arg(include_dir()).args(CFLAGS).arg(src);
    cmd.args(extra_sources(src));
    cmd.arg("-o").arg(exe);
    if static_link {
        cmd.arg("-DKMEM_TEST_STATIC");
        cmd.arg(lib.join("libkmem.a")).args(STATIC_LIBS);
    } else {
        cmd.arg("-L")
            .arg(lib)
            .arg("-lkmem")
            .arg(format!("-Wl,-rpath,{}", lib.display()));
    }
    let out = cmd.output().expect("cc");
    assert!(out.status.success(), "{}", show(&format!("{cmd:?}"), &out));
}

fn run(exe: &Path) -> Output {
    let out = Command::new(exe)
        .env("KMEM_CMDLINE", CMDLINE)
        .output()
        .expect("run test program");
    assert!(out.status.success(), "{}", show(&exe.display().to_string(), &out));
    out
}

/// Compile and run `tests/c/<name>.c`, shared and static.
fn c_program(name: &str) {
    let src = c_dir().join(format!("{name}.c"));
    for static_link in [false, true] {
        let exe = out_dir().join(format!(
            "{name}-{}",
            if static_link { "static" } else { "shared" }
        ));
        compile(&src, &exe, static_link);
        let out = run(&exe);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("{name}: ok")),
            "{name}: no success line:\n{stdout}"
        );
    }
}

macro_rules! c_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { c_program(stringify!($name)); })*
        const PROGRAMS: &[&str] = &[$(stringify!($name)),*];
    };
}

c_tests!(seeds, slab, kmalloc, pages, mempool, vmalloc, percpu, context, bootmem, boot, highmem, io);

/// Every program in tests/c is one of the tests above.
#[test]
fn every_program_is_run() {
    let mut found = Vec::new();
    for e in std::fs::read_dir(c_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "c") {
            let text = std::fs::read_to_string(&p).unwrap();
            if text.contains("int main(") {
                found.push(p.file_stem().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    let mut listed: Vec<String> = PROGRAMS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed, "tests/c programs and the c_tests! list differ");
}

/// The headers, each alone, as C and as C++, with every warning an error.
#[test]
fn headers_compile_standalone() {
    let inc = include_dir();
    let mut headers = Vec::new();
    for sub in ["", "linux", "asm"] {
        for e in std::fs::read_dir(inc.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "h") {
                headers.push(p.strip_prefix(&inc).unwrap().to_path_buf());
            }
        }
    }
    for must in [
        "linux/slab.h",
        "linux/gfp.h",
        "linux/mm.h",
        "linux/mempool.h",
        "linux/vmalloc.h",
        "linux/percpu.h",
        "linux/bootmem.h",
        "linux/memblock.h",
        "linux/highmem.h",
        "asm/io.h",
        "asm/page.h",
        "kmem.h",
    ] {
        assert!(
            headers.iter().any(|h| h == Path::new(must)),
            "missing header {must}"
        );
    }
    let dir = out_dir().join("headers");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, h) in headers.iter().enumerate() {
        // C as the seeds' code was written (C89), as today (the compiler's default), and C++.
        for (lang, std, ext, compiler) in [
            ("c", Some("-std=c89"), "c", "cc"),
            ("c", None, "c", "cc"),
            ("c++", None, "cc", "c++"),
        ] {
            let src = dir.join(format!("h{i}.{ext}"));
            std::fs::write(
                &src,
                format!("#include <{}>\nint main(void) {{ return 0; }}\n", h.display()),
            )
            .unwrap();
            let out = Command::new(compiler)
                .arg("-I")
                .arg(&inc)
                .args(["-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-x", lang])
                .args(std)
                .arg(&src)
                .output()
                .expect("compiler");
            assert!(
                out.status.success(),
                "{}",
                show(&format!("{} as {lang} {std:?}", h.display()), &out)
            );
        }
    }
}

/// C constants equal the Rust core's.
#[test]
fn constants_match_the_core() {
    use kmem_core::gfp::*;
    use kmem_core::slab::flags::*;
    let gfp: &[(&str, u64)] = &[
        ("__GFP_DMA", __GFP_DMA.0 as u64),
        ("__GFP_HIGHMEM", __GFP_HIGHMEM.0 as u64),
        ("__GFP_DMA32", __GFP_DMA32.0 as u64),
        ("__GFP_MOVABLE", __GFP_MOVABLE.0 as u64),
        ("__GFP_RECLAIMABLE", __GFP_RECLAIMABLE.0 as u64),
        ("__GFP_HIGH", __GFP_HIGH.0 as u64),
        ("__GFP_IO", __GFP_IO.0 as u64),
        ("__GFP_FS", __GFP_FS.0 as u64),
        ("__GFP_ZERO", __GFP_ZERO.0 as u64),
        ("__GFP_COLD", __GFP_COLD.0 as u64),
        ("__GFP_DIRECT_RECLAIM", __GFP_DIRECT_RECLAIM.0 as u64),
        ("__GFP_KSWAPD_RECLAIM", __GFP_KSWAPD_RECLAIM.0 as u64),
        ("__GFP_WRITE", __GFP_WRITE.0 as u64),
        ("__GFP_NOWARN", __GFP_NOWARN.0 as u64),
        ("__GFP_RETRY_MAYFAIL", __GFP_RETRY_MAYFAIL.0 as u64),
        ("__GFP_REPEAT", __GFP_REPEAT.0 as u64),
        ("__GFP_NOFAIL", __GFP_NOFAIL.0 as u64),
        ("__GFP_NORETRY", __GFP_NORETRY.0 as u64),
        ("__GFP_MEMALLOC", __GFP_MEMALLOC.0 as u64),
        ("__GFP_COMP", __GFP_COMP.0 as u64),
        ("__GFP_NOMEMALLOC", __GFP_NOMEMALLOC.0 as u64),
        ("__GFP_HARDWALL", __GFP_HARDWALL.0 as u64),
        ("__GFP_THISNODE", __GFP_THISNODE.0 as u64),
        ("__GFP_ACCOUNT", __GFP_ACCOUNT.0 as u64),
        ("__GFP_ZEROTAGS", __GFP_ZEROTAGS.0 as u64),
        ("__GFP_BITS_SHIFT", __GFP_BITS_SHIFT as u64),
        ("__GFP_BITS_MASK", __GFP_BITS_MASK.0 as u64),
        ("__GFP_RECLAIM", __GFP_RECLAIM.0 as u64),
        ("GFP_ATOMIC", GFP_ATOMIC.0 as u64),
        ("GFP_KERNEL", GFP_KERNEL.0 as u64),
        ("GFP_KERNEL_ACCOUNT", GFP_KERNEL_ACCOUNT.0 as u64),
        ("GFP_NOWAIT", GFP_NOWAIT.0 as u64),
        ("GFP_NOIO", GFP_NOIO.0 as u64),
        ("GFP_NOFS", GFP_NOFS.0 as u64),
        ("GFP_USER", GFP_USER.0 as u64),
        ("GFP_DMA", GFP_DMA.0 as u64),
        ("GFP_DMA32", GFP_DMA32.0 as u64),
        ("GFP_HIGHUSER", GFP_HIGHUSER.0 as u64),
        ("GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE.0 as u64),
        ("GFP_TRANSHUGE_LIGHT", GFP_TRANSHUGE_LIGHT.0 as u64),
        ("GFP_TRANSHUGE", GFP_TRANSHUGE.0 as u64),
        ("GFP_RECLAIM_MASK", GFP_RECLAIM_MASK.0 as u64),
        ("GFP_CONSTRAINT_MASK", GFP_CONSTRAINT_MASK.0 as u64),
        ("GFP_ZONEMASK", GFP_ZONEMASK.0 as u64),
    ];
    let slab: &[(&str, u64)] = &[
        ("SLAB_CONSISTENCY_CHECKS", SLAB_CONSISTENCY_CHECKS.0 as u64),
        ("SLAB_DEBUG_FREE", SLAB_DEBUG_FREE.0 as u64),
        ("SLAB_RED_ZONE", SLAB_RED_ZONE.0 as u64),
        ("SLAB_POISON", SLAB_POISON.0 as u64),
        ("SLAB_KMALLOC", SLAB_KMALLOC.0 as u64),
        ("SLAB_HWCACHE_ALIGN", SLAB_HWCACHE_ALIGN.0 as u64),
        ("SLAB_MUST_HWCACHE_ALIGN", SLAB_MUST_HWCACHE_ALIGN.0 as u64),
        ("SLAB_CACHE_DMA", SLAB_CACHE_DMA.0 as u64),
        ("SLAB_CACHE_DMA32", SLAB_CACHE_DMA32.0 as u64),
        ("SLAB_STORE_USER", SLAB_STORE_USER.0 as u64),
        ("SLAB_RECLAIM_ACCOUNT", SLAB_RECLAIM_ACCOUNT.0 as u64),
        ("SLAB_PANIC", SLAB_PANIC.0 as u64),
        ("SLAB_TYPESAFE_BY_RCU", SLAB_TYPESAFE_BY_RCU.0 as u64),
        ("SLAB_DESTROY_BY_RCU", SLAB_DESTROY_BY_RCU.0 as u64),
        ("SLAB_TRACE", SLAB_TRACE.0 as u64),
        ("SLAB_DEBUG_OBJECTS", SLAB_DEBUG_OBJECTS.0 as u64),
        ("SLAB_NOLEAKTRACE", SLAB_NOLEAKTRACE.0 as u64),
        ("SLAB_NO_MERGE", SLAB_NO_MERGE.0 as u64),
        ("SLAB_FAILSLAB", SLAB_FAILSLAB.0 as u64),
        ("SLAB_ACCOUNT", SLAB_ACCOUNT.0 as u64),
        ("SLAB_KASAN", SLAB_KASAN.0 as u64),
        ("SLAB_NO_USER_FLAGS", SLAB_NO_USER_FLAGS.0 as u64),
        ("SLAB_SKIP_KFENCE", SLAB_SKIP_KFENCE.0 as u64),
        ("SLAB_NO_REAP", SLAB_NO_REAP.0 as u64),
        ("SLAB_CTOR_CONSTRUCTOR", SLAB_CTOR_CONSTRUCTOR),
        ("SLAB_CTOR_ATOMIC", SLAB_CTOR_ATOMIC),
        ("SLAB_CTOR_VERIFY", SLAB_CTOR_VERIFY),
    ];
    let other: &[(&str, u64)] = &[
        ("PAGE_SIZE", kmem_core::page::PAGE_SIZE as u64),
        ("PAGE_SHIFT", kmem_core::page::PAGE_SHIFT as u64),
        ("PAGE_MASK", kmem_core::page::PAGE_MASK as u64),
        ("MAX_PAGE_ORDER", kmem_core::page::MAX_PAGE_ORDER as u64),
        ("NR_PAGE_ORDERS", kmem_core::page::NR_PAGE_ORDERS as u64),
        (
            "PAGE_ALLOC_COSTLY_ORDER",
            kmem_core::page::PAGE_ALLOC_COSTLY_ORDER as u64,
        ),
        ("ZERO_SIZE_PTR", kmem_core::ZERO_SIZE_PTR as u64),
        ("KMALLOC_MAX_SIZE", kmem_core::kmalloc::KMALLOC_MAX_SIZE as u64),
        (
            "KMALLOC_MAX_CACHE_SIZE",
            kmem_core::kmalloc::KMALLOC_MAX_CACHE_SIZE as u64,
        ),
        ("KMALLOC_SHIFT_LOW", kmem_core::kmalloc::KMALLOC_SHIFT_LOW as u64),
        (
            "KMALLOC_SHIFT_HIGH",
            kmem_core::kmalloc::KMALLOC_SHIFT_HIGH as u64,
        ),
        ("KMALLOC_MAX_ORDER", kmem_core::kmalloc::KMALLOC_MAX_ORDER as u64),
        (
            "ARCH_KMALLOC_MINALIGN",
            kmem_core::kmalloc::ARCH_KMALLOC_MINALIGN as u64,
        ),
        ("VM_IOREMAP", kmem_core::vmalloc::VM_IOREMAP as u64),
        ("VM_ALLOC", kmem_core::vmalloc::VM_ALLOC as u64),
        ("VM_MAP", kmem_core::vmalloc::VM_MAP as u64),
        ("VM_USERMAP", kmem_core::vmalloc::VM_USERMAP as u64),
        ("VM_UNINITIALIZED", kmem_core::vmalloc::VM_UNINITIALIZED as u64),
        ("PCPU_MIN_UNIT_SIZE", kmem_core::percpu::PCPU_MIN_UNIT_SIZE as u64),
        (
            "PCPU_MIN_ALLOC_SIZE",
            kmem_core::percpu::PCPU_MIN_ALLOC_SIZE as u64,
        ),
        (
            "MEMBLOCK_ALLOC_ANYWHERE",
            kmem_core::memblock::MEMBLOCK_ALLOC_ANYWHERE,
        ),
        (
            "MEMBLOCK_ALLOC_ACCESSIBLE",
            kmem_core::memblock::MEMBLOCK_ALLOC_ACCESSIBLE,
        ),
        (
            "MEMBLOCK_ALLOC_NOLEAKTRACE",
            kmem_core::memblock::MEMBLOCK_ALLOC_NOLEAKTRACE,
        ),
        ("SMP_CACHE_BYTES", kmem_core::memblock::SMP_CACHE_BYTES),
        ("NUMA_NO_NODE", kmem_core::memblock::NUMA_NO_NODE as i64 as u64),
        ("PREEMPT_MASK", kmem_core::platform::PREEMPT_MASK as u64),
        ("SOFTIRQ_MASK", kmem_core::platform::SOFTIRQ_MASK as u64),
        ("HARDIRQ_MASK", kmem_core::platform::HARDIRQ_MASK as u64),
        ("NMI_MASK", kmem_core::platform::NMI_MASK as u64),
        ("PREEMPT_OFFSET", kmem_core::platform::PREEMPT_OFFSET as u64),
        ("SOFTIRQ_OFFSET", kmem_core::platform::SOFTIRQ_OFFSET as u64),
        ("HARDIRQ_OFFSET", kmem_core::platform::HARDIRQ_OFFSET as u64),
        (
            "SOFTIRQ_DISABLE_OFFSET",
            kmem_core::context::SOFTIRQ_DISABLE_OFFSET as u64,
        ),
    ];
    let all: Vec<(&str, u64)> = gfp.iter().chain(slab).chain(other).copied().collect();
    let mut src = String::from(
        "#include <linux/gfp.h>\n#include <linux/slab.h>\n#include <linux/mm.h>\n#include <linux/vmalloc.h>\n\
         #include <linux/percpu.h>\n#include <linux/memblock.h>\n#include <linux/preempt.h>\n#include <stdio.h>\n\
         int main(void)\n{\n",
    );
    for (name, _) in &all {
        src.push_str(&format!(
            "\tprintf(\"%s %llu\\n\", \"{name}\", (unsigned long long)({name}));\n"
        ));
    }
    // get_order, an inline function of the header, against the core's.
    let sizes = [1usize, 4095, 4096, 4097, 8192, 65536, 1 << 20, (4 << 20) + 1];
    for s in sizes {
        src.push_str(&format!(
            "\tprintf(\"get_order({s}) %d\\n\", get_order({s}UL));\n"
        ));
    }
    src.push_str("\treturn 0;\n}\n");
    let dir = out_dir();
    let c = dir.join("constants.c");
    std::fs::write(&c, src).unwrap();
    let exe = dir.join("constants");
    compile(&c, &exe, false);
    let out = run(&exe);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    for (name, want) in &all {
        let line = lines.next().unwrap();
        assert_eq!(line, format!("{name} {want}"), "C and Rust disagree on {name}");
    }
    for s in sizes {
        let line = lines.next().unwrap();
        assert_eq!(line, format!("get_order({s}) {}", kmem_core::page::get_order(s)));
    }
}

/// The README's C example compiles and runs as written.
#[test]
fn readme_c_example() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("\n## Using it from C\n")
        .nth(1)
        .expect("README has a \"Using it from C\" section");
    let section = section.split("\n## ").next().unwrap();
    let code = section
        .split("```c\n")
        .nth(1)
        .and_then(|s| s.split("\n```").next())
        .expect("a ```c block in \"Using it from C\"");
    let dir = out_dir();
    let c = dir.join("readme.c");
    std::fs::write(&c, code).unwrap();
    for static_link in [false, true] {
        let exe = dir.join(if static_link {
            "readme-static"
        } else {
            "readme-shared"
        });
        compile(&c, &exe, static_link);
        run(&exe);
    }
}
