//! Entry: from QEMU's PVH boot to Rust in long mode, on the boot CPU and on
//! every application processor.
//!
//! **PVH.** QEMU's `-kernel` loads an ELF kernel that carries a Xen ELF note
//! `XEN_ELFNOTE_PHYS32_ENTRY` (type 18): its descriptor is the physical entry
//! address. The firmware's PVH option ROM jumps there in 32-bit protected
//! mode with flat segments, paging off, interrupts off and `ebx` holding the
//! physical address of `struct hvm_start_info` (magic, command line, RSDP,
//! and the e820-style memory map).
//!
//! **Boot CPU** (`pvh_start`): clear `.bss`, remember `ebx`, build the boot
//! page tables — one PML4, one PDPT and one PD identity-mapping the first
//! GiB with 2 MiB pages (the kernel image, its stacks and low memory) — then
//! the common path: load the GDT, enable PAE, point CR3 at the PML4, set
//! `EFER.LME` and `EFER.NXE`, enable paging (and `CR0.WP`), and far-jump into
//! the 64-bit code segment. There it takes the boot stack and calls
//! `kmain(start_info)`. The linear map of all RAM and the vmalloc window are
//! added to the same PML4 later, in Rust (`paging.rs`).
//!
//! **Application processors** start in real mode at the page the SIPI names.
//! `trampoline_start..trampoline_end` is copied below 1 MiB (`smp.rs`); it
//! loads the kernel's GDT with a 32-bit base, sets `CR0.PE` and far-jumps to
//! `ap_start32` in the kernel image, which joins the common path. In long
//! mode a CPU with a nonzero `ap_boot_stack` is an AP: it takes that stack
//! and calls `ap_main(ap_boot_cpu)`. The boot CPU starts one AP at a time and
//! waits for it to come online before reusing the two words, so they need no
//! lock.
//!
//! **GDT** (shared by all CPUs): null, 32-bit code (0x08), 64-bit code
//! (0x10, `__KERNEL_CS`), data (0x18, `__KERNEL_DS`), then one 16-byte TSS
//! descriptor per CPU from 0x20, filled in by `gdt.rs`.

use core::arch::global_asm;

/// `__KERNEL_CS`.
pub const KERNEL_CS: u16 = 0x10;
/// `__KERNEL_DS`.
pub const KERNEL_DS: u16 = 0x18;
/// First TSS selector; CPU `n` uses `TSS_BASE_SEL + 16 * n`.
pub const TSS_BASE_SEL: u16 = 0x20;
/// Most CPUs the kernel brings up.
pub const MAX_CPUS: usize = 16;
/// GDT entries (8 bytes each): four segments and two per TSS.
pub const GDT_ENTRIES: usize = 4 + 2 * MAX_CPUS;
/// Size of the boot CPU's stack.
pub const BOOT_STACK_SIZE: usize = 256 * 1024;

global_asm!(
    r#"
    .pushsection .note.Xen, "a", @note
    .p2align 2
    .long 4                 /* namesz: "Xen\0" */
    .long 8                 /* descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .quad pvh_start
    .popsection

    .pushsection .data.boot, "aw"
    .p2align 4
    .globl gdt_table
gdt_table:
    .quad 0
    .quad 0x00cf9a000000ffff    /* 0x08: 32-bit code */
    .quad 0x00af9a000000ffff    /* 0x10: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x18: data */
    .fill {tss_words}, 8, 0     /* 0x20: TSS descriptors */
gdt_end:
    .p2align 3
    .word 0
boot_gdt_ptr:
    .word gdt_end - gdt_table - 1
    .long gdt_table
    .p2align 3
    .globl pvh_start_info_paddr
pvh_start_info_paddr:
    .quad 0
    .globl ap_boot_stack
ap_boot_stack:
    .quad 0
    .globl ap_boot_cpu
ap_boot_cpu:
    .quad 0
    .popsection

    .pushsection .bss.boot, "aw", @nobits
    .p2align 12
    .globl boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096
    .globl boot_stack
boot_stack:
    .skip {boot_stack_size}
    .globl boot_stack_top
boot_stack_top:
    .popsection

    .pushsection .text.boot, "ax"
    .code32
    .globl pvh_start
pvh_start:
    cli
    cld
    movl %ebx, %esi
    /* Clear .bss (QEMU zeroes it too, but do not rely on a loader). */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb
    movl %esi, pvh_start_info_paddr
    /* PML4[0] -> PDPT, PDPT[0] -> PD, PD[i] = i * 2 MiB (present, writable, large). */
    movl $boot_pdpt, %eax
    orl $3, %eax
    movl %eax, boot_pml4
    movl $boot_pd, %eax
    orl $3, %eax
    movl %eax, boot_pdpt
    xorl %ecx, %ecx
1:
    movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, boot_pd(,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jb 1b
    jmp startup_32_common

    .globl ap_start32
ap_start32:
    movw $0x18, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss

startup_32_common:
    lgdt boot_gdt_ptr
    movl %cr4, %eax
    orl $0x20, %eax             /* PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx      /* EFER */
    rdmsr
    orl $0x900, %eax            /* LME | NXE */
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax       /* PG | WP | PE */
    movl %eax, %cr0
    ljmp $0x10, $startup_64

    .code64
startup_64:
    movw $0x18, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movq ap_boot_stack(%rip), %rsp
    testq %rsp, %rsp
    jnz 2f
    leaq boot_stack_top(%rip), %rsp
    xorl %ebp, %ebp
    movl pvh_start_info_paddr(%rip), %edi
    call kmain
    ud2
2:
    xorl %ebp, %ebp
    movq ap_boot_cpu(%rip), %rdi
    call ap_main
    ud2
    .popsection

    /* Real-mode AP entry, copied below 1 MiB; runs with CS = page >> 4, IP = 0. */
    .pushsection .rodata.trampoline, "a"
    .code16
    .globl trampoline_start
trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (tr_gdt_ptr - trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $ap_start32
    .p2align 2
tr_gdt_ptr:
    .word gdt_end - gdt_table - 1
    .long gdt_table
    .globl trampoline_end
trampoline_end:
    .code64
    .popsection
    "#,
    tss_words = const 2 * MAX_CPUS,
    boot_stack_size = const BOOT_STACK_SIZE,
    options(att_syntax)
);

extern "C" {
    /// The shared GDT (see the module documentation).
    pub static mut gdt_table: [u64; GDT_ENTRIES];
    /// The kernel's PML4 (`init_mm.pgd`), shared by every CPU.
    pub static mut boot_pml4: [u64; 512];
    /// Physical address of `hvm_start_info`, saved from `ebx`.
    pub static pvh_start_info_paddr: u64;
    /// Stack top for the AP being started (0 while the boot CPU boots).
    pub static mut ap_boot_stack: u64;
    /// CPU number of the AP being started.
    pub static mut ap_boot_cpu: u64;
    /// Start of the real-mode AP trampoline.
    pub static trampoline_start: u8;
    /// End of the real-mode AP trampoline.
    pub static trampoline_end: u8;
    /// Bottom of the boot CPU's stack.
    pub static boot_stack: u8;
    /// First byte of the kernel image (linker script).
    pub static __kernel_start: u8;
    /// End of the kernel image, `.bss` included (linker script).
    pub static __kernel_end: u8;
}

/// Physical extent `[start, end)` of the kernel image (text, data, bss with
/// the boot page tables and stacks).
pub fn kernel_image() -> (u64, u64) {
    // Linker-script symbols: only their addresses are taken.
    (
        core::ptr::addr_of!(__kernel_start) as u64,
        core::ptr::addr_of!(__kernel_end) as u64,
    )
}
