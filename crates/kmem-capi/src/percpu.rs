//! `linux/percpu.h`: per-CPU memory for C — `alloc_percpu`/`free_percpu`,
//! and `DEFINE_PER_CPU` variables with a copy per CPU.
//!
//! **Dynamic per-CPU memory** is the core's: `__alloc_percpu` returns the
//! core's per-CPU cookie (`chunk base + offset`), and CPU `n`'s copy is at
//! `cookie + n * unit_size`.
//!
//! **Static per-CPU variables.** The kernel links every `DEFINE_PER_CPU`
//! variable into the `.data..percpu` section, which serves as a template:
//! at boot `setup_per_cpu_areas` copies it once per CPU and each CPU reaches
//! its copy through its per-CPU offset. libkmem does the same with a
//! section named `kmem_percpu`:
//!
//! * `DEFINE_PER_CPU(type, name)` defines `name` in section `kmem_percpu`
//!   (with the initialiser, if any: it is the initial value on every CPU).
//!   The variable itself is only the template; code reaches the CPUs' copies
//!   through `per_cpu(name, cpu)`, `this_cpu_*`, `get_cpu_var(name)` and
//!   `per_cpu_ptr(&name, cpu)`, as in the kernel.
//! * Each executable or shared object that includes `linux/percpu.h` runs a
//!   constructor that registers its section, `[__start_kmem_percpu,
//!   __stop_kmem_percpu)` (the linker's symbols, hidden so each object sees
//!   its own), with [`kmem_percpu_register`]. Registration only records the
//!   range (nothing boots: `kmem_boot` may still come).
//! * When the C API's machine is up (and for sections registered later, on
//!   first use) a registered section is **materialised**: one per-CPU area
//!   of the section's size is allocated from the core's per-CPU allocator
//!   (so it shows in `percpu_stats` and `Percpu:` of meminfo), and the
//!   template is copied into every CPU's copy. From then on an address
//!   inside the section maps to `area + (addr - section start)` plus the
//!   CPU's unit offset — the kernel's `__per_cpu_offset` arithmetic.
//! * The area is aligned like the section's start (up to a page), so every
//!   variable keeps its alignment in every copy.
//! * Sections stay registered for the life of the process (up to
//!   [`MAX_SECTIONS`] objects); unloading a shared object that has per-CPU
//!   variables (`dlclose`) is not supported.
//!
//! [`kmem_per_cpu_ptr`] accepts both kinds of pointer: an address inside a
//! registered section is a static variable, anything else a dynamic cookie.
//!
//! **Locking.** Registration and materialisation take `SECTION_LOCK`; the
//! lookup on every access reads the published table (`NR_SECTIONS` with
//! acquire, then each section's fields) without locking. A section's area,
//! once stored, never changes.

use core::ffi::{c_int, c_uint, c_void};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use kmem_core::gfp::{GFP_KERNEL, GFP_NOWAIT};
use kmem_core::page::PAGE_SIZE;
use kmem_core::percpu::PercpuPtr;
use kmem_core::platform::Platform;

use crate::{gfp, k};

/// Sections (executables and shared objects) that can register.
pub const MAX_SECTIONS: usize = 64;

struct Section {
    start: AtomicUsize,
    end: AtomicUsize,
    /// The per-CPU cookie of the section's copies; 0 until materialised.
    area: AtomicUsize,
}

static SECTIONS: [Section; MAX_SECTIONS] = [const {
    Section {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        area: AtomicUsize::new(0),
    }
}; MAX_SECTIONS];
static NR_SECTIONS: AtomicUsize = AtomicUsize::new(0);
static SECTION_LOCK: Mutex<()> = Mutex::new(());

/// `void kmem_percpu_register(void *start, void *end)`: record a
/// `kmem_percpu` section (called by the constructor in `linux/percpu.h`;
/// registering the same section again does nothing). If the machine is
/// already up, the section is materialised at once.
///
/// # Safety
/// `[start, end)` is a `kmem_percpu` section that lives as long as the process.
#[no_mangle]
pub unsafe extern "C" fn kmem_percpu_register(start: *mut c_void, end: *mut c_void) {
    let (start, end) = (start as usize, end as usize);
    if start == 0 || end <= start {
        return;
    }
    let idx;
    {
        let _g = SECTION_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let n = NR_SECTIONS.load(Ordering::Relaxed);
        if SECTIONS[..n]
            .iter()
            .any(|s| s.start.load(Ordering::Relaxed) == start)
        {
            return;
        }
        if n == MAX_SECTIONS {
            eprintln!("kmem: more than {MAX_SECTIONS} objects with DEFINE_PER_CPU variables");
            return;
        }
        SECTIONS[n].start.store(start, Ordering::Relaxed);
        SECTIONS[n].end.store(end, Ordering::Relaxed);
        NR_SECTIONS.store(n + 1, Ordering::Release);
        idx = n;
    }
    if crate::machine_booted() {
        materialise(idx);
    }
}

/// Materialise every registered section (when the machine comes up).
pub(crate) fn materialise_all() {
    for i in 0..NR_SECTIONS.load(Ordering::Acquire) {
        materialise(i);
    }
}

/// Give section `i` its per-CPU copies; returns the area cookie (0 on failure).
fn materialise(i: usize) -> usize {
    let s = &SECTIONS[i];
    // The machine first: materialising never boots under SECTION_LOCK.
    let k = k();
    let _g = SECTION_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let area = s.area.load(Ordering::Acquire);
    if area != 0 {
        return area;
    }
    let (start, end) = (s.start.load(Ordering::Relaxed), s.end.load(Ordering::Relaxed));
    let len = end - start;
    let align = (start & start.wrapping_neg()).clamp(8, PAGE_SIZE);
    // From atomic context (a first `get_cpu_var`) only existing chunks may be used.
    let flags = if k.in_atomic() { GFP_NOWAIT } else { GFP_KERNEL };
    let Ok(p) = k.__alloc_percpu_gfp(len, align, flags) else {
        k.printk(format_args!(
            "percpu: cannot allocate {len} bytes of DEFINE_PER_CPU variables"
        ));
        return 0;
    };
    for cpu in 0..k.nr_cpu_ids() {
        // SAFETY: the template is `len` readable bytes (a linked section);
        // the destination is CPU `cpu`'s copy of a fresh `len`-byte area.
        unsafe { ptr::copy_nonoverlapping(start as *const u8, k.per_cpu_ptr(p, cpu), len) };
    }
    s.area.store(p.addr(), Ordering::Release);
    p.addr()
}

/// The per-CPU cookie for `addr`: its copy's offset in a materialised
/// section, or `addr` itself (a dynamic per-CPU pointer). 0 if a section
/// cannot be materialised.
#[inline]
fn cookie_of(addr: usize) -> usize {
    let n = NR_SECTIONS.load(Ordering::Acquire);
    for (i, s) in SECTIONS[..n].iter().enumerate() {
        let start = s.start.load(Ordering::Relaxed);
        if addr >= start && addr < s.end.load(Ordering::Relaxed) {
            let mut area = s.area.load(Ordering::Acquire);
            if area == 0 {
                area = materialise(i);
                if area == 0 {
                    return 0;
                }
            }
            return area + (addr - start);
        }
    }
    addr
}

/// `void *kmem_per_cpu_ptr(const void *ptr, int cpu)`: CPU `cpu`'s copy of
/// a per-CPU variable — `&var` of a `DEFINE_PER_CPU` variable or a pointer
/// from `alloc_percpu` (the header's `per_cpu_ptr`, `per_cpu`). A CPU
/// outside `[0, nr_cpu_ids)` is reported, and NULL returned.
#[no_mangle]
pub extern "C" fn kmem_per_cpu_ptr(p: *const c_void, cpu: c_int) -> *mut c_void {
    let k = k();
    if p.is_null() {
        return ptr::null_mut();
    }
    if cpu < 0 || cpu as usize >= k.nr_cpu_ids() {
        crate::warn(
            k,
            format_args!(
                "per_cpu_ptr: cpu {cpu} out of range (nr_cpu_ids {})",
                k.nr_cpu_ids()
            ),
        );
        return ptr::null_mut();
    }
    match cookie_of(p as usize) {
        0 => ptr::null_mut(),
        c => k.per_cpu_ptr(PercpuPtr::<u8>::from_addr(c), cpu as usize) as *mut c_void,
    }
}

/// `void *kmem_this_cpu_ptr(const void *ptr)`: the current CPU's copy
/// (`this_cpu_ptr`; stable while the caller has preemption disabled).
#[no_mangle]
pub extern "C" fn kmem_this_cpu_ptr(p: *const c_void) -> *mut c_void {
    let k = k();
    if p.is_null() {
        return ptr::null_mut();
    }
    match cookie_of(p as usize) {
        0 => ptr::null_mut(),
        c => k.this_cpu_ptr(PercpuPtr::<u8>::from_addr(c)) as *mut c_void,
    }
}

/// `void *__alloc_percpu(size_t size, size_t align)`: zeroed on every CPU;
/// NULL on failure (with the kernel's warning for bad sizes or alignments).
#[no_mangle]
pub extern "C" fn __alloc_percpu(size: usize, align: usize) -> *mut c_void {
    k().__alloc_percpu(size, align)
        .map_or(ptr::null_mut(), |p| p.addr() as *mut c_void)
}

/// `void *__alloc_percpu_gfp(size_t size, size_t align, gfp_t gfp)`: without
/// `__GFP_DIRECT_RECLAIM` only existing chunks are used.
#[no_mangle]
pub extern "C" fn __alloc_percpu_gfp(size: usize, align: usize, flags: c_uint) -> *mut c_void {
    k().__alloc_percpu_gfp(size, align, gfp(flags))
        .map_or(ptr::null_mut(), |p| p.addr() as *mut c_void)
}

/// `void free_percpu(void *ptr)`: NULL is ignored; anything
/// `__alloc_percpu` did not return is reported.
///
/// # Safety
/// `ptr` is NULL or a live per-CPU allocation the caller gives up.
#[no_mangle]
pub unsafe extern "C" fn free_percpu(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: caller's contract.
    unsafe { k().free_percpu(PercpuPtr::<u8>::from_addr(p as usize)) }
}

/// `unsigned int kmem_nr_cpu_ids(void)`: the machine's possible CPUs
/// (`nr_cpu_ids`).
#[no_mangle]
pub extern "C" fn kmem_nr_cpu_ids() -> c_uint {
    k().platform.nr_cpu_ids() as c_uint
}
