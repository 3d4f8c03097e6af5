//! x86-64 instructions the kernel needs, one safe or unsafe wrapper each:
//! port I/O, model-specific registers, the time-stamp counter, control
//! registers, interrupt flag, TLB invalidation and halting.

use core::arch::asm;

/// `RFLAGS.IF`.
pub const X86_EFLAGS_IF: u64 = 1 << 9;

/// Read a byte from an I/O port.
///
/// # Safety
/// Port I/O may have any side effect on the device behind the port.
#[inline]
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: the caller accepts the device side effects.
    unsafe { asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags)) };
    v
}

/// Write a byte to an I/O port.
///
/// # Safety
/// As `inb`.
#[inline]
pub unsafe fn outb(port: u16, v: u8) {
    // SAFETY: the caller accepts the device side effects.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) };
}

/// Write a 32-bit word to an I/O port.
///
/// # Safety
/// As `inb`.
#[inline]
pub unsafe fn outl(port: u16, v: u32) {
    // SAFETY: the caller accepts the device side effects.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags)) };
}

/// Read a 32-bit word from an I/O port.
///
/// # Safety
/// As `inb`.
#[inline]
pub unsafe fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: the caller accepts the device side effects.
    unsafe { asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags)) };
    v
}

/// Read a model-specific register.
///
/// # Safety
/// The MSR must exist (else #GP).
#[inline]
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    ((hi as u64) << 32) | lo as u64
}

/// Write a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must be valid for it; writing changes
/// the machine's state (GS base, APIC base, ...).
#[inline]
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller's promise.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// The time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc has no side effects (CR4.TSD is clear in ring 0 anyway).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    ((hi as u64) << 32) | lo as u64
}

/// `RFLAGS`.
#[inline]
pub fn read_rflags() -> u64 {
    let f: u64;
    // SAFETY: pushfq/pop only touch the stack slot they use.
    unsafe { asm!("pushfq", "pop {}", out(reg) f, options(nomem, preserves_flags)) };
    f
}

/// `DR6`, the debug status register.
#[inline]
pub fn read_dr6() -> u64 {
    let v: u64;
    // SAFETY: reading a debug register in ring 0 has no side effects.
    unsafe { asm!("mov {}, dr6", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reset `DR6` to its idle value (`DR6_RESERVED`: every status bit clear),
/// as the kernel's `#DB` handler does once it has read it.
#[inline]
pub fn clear_dr6() {
    // SAFETY: writing DR6's architectural idle value only clears status bits.
    unsafe { asm!("mov dr6, {}", in(reg) 0xffff_0ff0u64, options(nomem, nostack, preserves_flags)) };
}

/// Whether interrupts are enabled on this CPU.
#[inline]
pub fn irqs_enabled() -> bool {
    read_rflags() & X86_EFLAGS_IF != 0
}

/// `cli`.
#[inline]
pub fn cli() {
    // SAFETY: masking interrupts is always allowed in ring 0.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// `sti`.
///
/// # Safety
/// The IDT must be loaded with handlers for every vector that can arrive.
#[inline]
pub unsafe fn sti() {
    // SAFETY: the caller's promise.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

/// `sti; hlt`: enable interrupts and wait for one (no wake-up is lost
/// between the two: `sti` takes effect after the next instruction).
///
/// # Safety
/// As `sti`.
#[inline]
pub unsafe fn safe_halt() {
    // SAFETY: the caller's promise.
    unsafe { asm!("sti; hlt", options(nomem, nostack)) };
}

/// `cli; hlt` forever.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: with interrupts masked only NMI/INIT wake the CPU.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// CR2 (the faulting address of the last page fault).
#[inline]
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// CR3.
#[inline]
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// CR0.
#[inline]
pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// CR4.
#[inline]
pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reload CR3 with its own value: flush every non-global TLB entry.
#[inline]
pub fn flush_tlb_local() {
    // SAFETY: writing back the current CR3 changes nothing but the TLB.
    unsafe { asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack, preserves_flags)) };
}

/// `invlpg`: drop the TLB entry of one virtual address.
#[inline]
pub fn invlpg(addr: usize) {
    // SAFETY: invalidating a translation never breaks memory safety.
    unsafe { asm!("invlpg [{}]", in(reg) addr, options(nostack, preserves_flags)) };
}

/// `cpuid(leaf, subleaf)` → (eax, ebx, ecx, edx).
#[inline]
pub fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    // SAFETY: cpuid is available on every x86-64 CPU (the intrinsic is
    // safe on newer compilers, unsafe on the MSRV).
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU.
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, sub) };
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// `pause`.
#[inline]
pub fn pause() {
    core::hint::spin_loop();
}
