//! How libkmalloc is linked, to keep what it costs every process small.
//!
//! * Packed relative relocations (`DT_RELR`, GNU ld 2.38+, glibc 2.36+):
//!   its ~1,700 `R_X86_64_RELATIVE` entries (vtables and tables of
//!   pointers) take 0.5 kB instead of 41 kB, and the dynamic loader touches
//!   44 kB less of the library in every process that preloads it (peak RSS
//!   of a small malloc/free program, six runs each: 2,640-2,744 kB, median
//!   2,740, before; 2,612-2,684 kB, median 2,668, after).
//! * The unwinder linked statically (`libgcc_eh.a`, found through `cc`):
//!   Rust's standard library needs `_Unwind_*`, which otherwise brings
//!   libgcc_s into every process (about 100 kB resident). The copy stays
//!   private (the library exports only the malloc family), and the
//!   `slub_debug` stack trace walks with it (`kmem_hosted`'s
//!   `write_backtrace`) rather than through glibc's `backtrace`, which
//!   would load libgcc_s. Without a `libgcc_eh.a` the library links
//!   against libgcc_s as before.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    println!("cargo:rerun-if-changed=build.rs");
    let eh = std::process::Command::new("cc")
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| std::path::PathBuf::from(s.trim()));
    // `cc` prints the bare name when it has no such file.
    if let Some(dir) = eh
        .as_deref()
        .filter(|p| p.is_absolute() && p.is_file())
        .and_then(|p| p.parent())
    {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-lib=static=gcc_eh");
    }
}
