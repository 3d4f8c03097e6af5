//! SMP bring-up (`smpboot.c`): every processor the MADT lists is started
//! with INIT-SIPI-SIPI at the real-mode trampoline (`boot.rs`), copied to
//! `TRAMPOLINE_PHYS` below 1 MiB — memory the kernel reserved in memblock,
//! so the allocator never hands it out.
//!
//! One AP at a time: the boot CPU allocates the AP's kernel stack from kmem
//! (order 3, 32 KiB), publishes the stack and the CPU number in
//! `ap_boot_stack`/`ap_boot_cpu`, sends the IPIs and waits for the AP to mark
//! itself online. The AP, in `ap_main`: its per-CPU area and GS base, its
//! TSS and the shared GDT, the IDT, its local APIC, joins the TLB shootdown
//! set, goes online, and enters the test kernel's AP loop (`ktest.rs`).
//! At the end every AP parks (leaves the shootdown set, halts with
//! interrupts masked) and the boot CPU frees the stacks.

use crate::apic;
use crate::boot;
use crate::percpu;
use crate::{kmem, printk, TRAMPOLINE_PHYS};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use kmem::page::Page;

/// Order of an AP's kernel stack.
pub const AP_STACK_ORDER: u32 = 3;

static AP_STACKS: [AtomicPtr<Page>; boot::MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; boot::MAX_CPUS];
/// CPUs online (the boot CPU included).
pub static NR_ONLINE: AtomicUsize = AtomicUsize::new(1);

/// Start the APs `apic_ids[1..]` (`apic_ids[0]` must be the boot CPU's);
/// returns how many CPUs are online.
pub fn bring_up(apic_ids: &[u32]) -> usize {
    let k = kmem();
    // SAFETY: the trampoline's bytes, copied into the reserved page below
    // 1 MiB through the identity map.
    unsafe {
        let start = core::ptr::addr_of!(boot::trampoline_start);
        let len = core::ptr::addr_of!(boot::trampoline_end) as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, TRAMPOLINE_PHYS as *mut u8, len);
    }
    for (cpu, &id) in apic_ids.iter().enumerate().skip(1) {
        let Ok(stack) = k.alloc_pages(kmem::GFP_KERNEL, AP_STACK_ORDER) else {
            printk!("smpboot: no stack for CPU {}", cpu);
            break;
        };
        AP_STACKS[cpu].store(stack.as_ptr(), Ordering::Relaxed);
        let top = k.page_address(stack).expect("lowmem stack").as_ptr() as u64
            + ((kmem::PAGE_SIZE as u64) << AP_STACK_ORDER);
        // SAFETY: the APs read these only after the SIPI below; one AP at a time.
        unsafe {
            core::ptr::write_volatile(core::ptr::addr_of_mut!(boot::ap_boot_stack), top);
            core::ptr::write_volatile(core::ptr::addr_of_mut!(boot::ap_boot_cpu), cpu as u64);
        }
        core::sync::atomic::fence(Ordering::SeqCst);
        apic::wakeup_secondary_cpu(id, TRAMPOLINE_PHYS);
        let start = crate::time::now_ns();
        // Generous: TCG may be slow to schedule a new vCPU thread.
        while !percpu::area(cpu).online.load(Ordering::Acquire)
            && crate::time::now_ns() - start < 5_000_000_000
        {
            percpu::service_pending_ipis();
            core::hint::spin_loop();
        }
        if percpu::area(cpu).online.load(Ordering::Acquire) {
            NR_ONLINE.fetch_add(1, Ordering::AcqRel);
        } else {
            printk!("smpboot: CPU {} (APIC {}) failed to come online", cpu, id);
            break;
        }
    }
    // SAFETY: no AP is starting any more.
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!(boot::ap_boot_stack), 0) };
    NR_ONLINE.load(Ordering::Acquire)
}

/// Free the stacks of the parked APs.
pub fn free_ap_stacks() -> usize {
    let k = kmem();
    let mut n = 0;
    for s in &AP_STACKS {
        if let Some(p) = NonNull::new(s.swap(core::ptr::null_mut(), Ordering::AcqRel)) {
            // SAFETY: the stack's CPU is parked (halted with interrupts off,
            // never to run again), so nothing uses the stack.
            unsafe { k.__free_pages(p, AP_STACK_ORDER) };
            n += 1;
        }
    }
    n
}

#[no_mangle]
extern "C" fn ap_main(cpu: u64) -> ! {
    let cpu = cpu as usize;
    // SAFETY: this AP's own area, before it runs any other kernel code.
    unsafe { percpu::init_this_cpu(cpu, 0) };
    // SAFETY: once, on this CPU.
    unsafe { crate::gdt::init_this_cpu(cpu) };
    crate::idt::load();
    crate::paging::init_pat();
    apic::init_this_cpu();
    // SAFETY: refresh with the real APIC id.
    unsafe { percpu::init_this_cpu(cpu, apic::id()) };
    crate::tlb::cpu_online(cpu);
    percpu::set_online(cpu);
    crate::ktest::ap_loop(cpu)
}
