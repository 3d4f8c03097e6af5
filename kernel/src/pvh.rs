//! The PVH boot protocol's `struct hvm_start_info` (Xen's
//! `arch-x86/hvm/start_info.h`): what QEMU's PVH option ROM tells the
//! kernel — the command line, the ACPI RSDP and the memory map (version 1
//! and later; entries as e820: address, size, type).
//!
//! Everything is copied into the kernel image at once, before anything can
//! overwrite low memory, so the memory the firmware used can be handed to
//! the allocator.

use crate::paging;
use kmem::e820::{E820Table, E820Type};

/// `XEN_HVM_START_MAGIC_VALUE`.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
const CMDLINE_MAX: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct HvmMemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// What the kernel keeps of the start info.
pub struct BootData {
    /// The firmware memory map.
    pub e820: E820Table,
    /// The command line.
    pub cmdline: [u8; CMDLINE_MAX],
    /// Its length.
    pub cmdline_len: usize,
    /// Physical address of the ACPI RSDP (0: none given).
    pub rsdp: u64,
    /// Physical ranges the boot data occupied (start info, memory map, command line).
    pub ranges: [(u64, u64); 3],
    /// Entries whose type kmem does not know (kept out of the map).
    pub unknown_types: usize,
}

/// Reach low physical memory: the identity map covers the first GiB; above
/// it, map through `early_memremap`.
fn phys_ptr(phys: u64, len: u64) -> Option<*const u8> {
    if phys + len <= 1 << 30 {
        Some(phys as *const u8)
    } else {
        paging::early_memremap(phys, len)
    }
}

/// Read the start info at `paddr`.
///
/// # Safety
/// `paddr` must be the address QEMU passed in `ebx` (or 0).
pub unsafe fn parse(paddr: u64, out: &mut BootData) -> Result<(), &'static str> {
    if paddr == 0 {
        return Err("no hvm_start_info (ebx was 0)");
    }
    let p = phys_ptr(paddr, core::mem::size_of::<HvmStartInfo>() as u64).ok_or("start info unreachable")?;
    // SAFETY: the firmware's start info, mapped above.
    let si = unsafe { core::ptr::read_unaligned(p as *const HvmStartInfo) };
    if si.magic != XEN_HVM_START_MAGIC_VALUE {
        return Err("bad hvm_start_info magic");
    }
    out.rsdp = si.rsdp_paddr;
    out.ranges[0] = (paddr, core::mem::size_of::<HvmStartInfo>() as u64);
    if si.cmdline_paddr != 0 {
        let q = phys_ptr(si.cmdline_paddr, CMDLINE_MAX as u64).ok_or("cmdline unreachable")?;
        let mut n = 0;
        // SAFETY: a NUL-terminated string in mapped memory; at most CMDLINE_MAX - 1 bytes read.
        unsafe {
            while n < CMDLINE_MAX - 1 && *q.add(n) != 0 {
                out.cmdline[n] = *q.add(n);
                n += 1;
            }
        }
        out.cmdline_len = n;
        out.ranges[2] = (si.cmdline_paddr, n as u64 + 1);
    }
    if si.version < 1 || si.memmap_paddr == 0 || si.memmap_entries == 0 {
        return Err("hvm_start_info has no memory map (version 0)");
    }
    let bytes = si.memmap_entries as u64 * core::mem::size_of::<HvmMemmapEntry>() as u64;
    let m = phys_ptr(si.memmap_paddr, bytes).ok_or("memory map unreachable")? as *const HvmMemmapEntry;
    out.ranges[1] = (si.memmap_paddr, bytes);
    out.e820.clear();
    for i in 0..si.memmap_entries as usize {
        // SAFETY: `memmap_entries` entries at the mapped address.
        let e = unsafe { core::ptr::read_unaligned(m.add(i)) };
        match E820Type::from_u32(e.kind) {
            Some(kind) => {
                out.e820.add(e.addr, e.size, kind);
            }
            None => {
                // Unknown types are not RAM: keep them reserved, as the kernel does.
                out.e820.add(e.addr, e.size, E820Type::Reserved);
                out.unknown_types += 1;
            }
        }
    }
    Ok(())
}

impl BootData {
    /// An empty record.
    pub const fn new() -> Self {
        BootData {
            e820: E820Table::new(),
            cmdline: [0; CMDLINE_MAX],
            cmdline_len: 0,
            rsdp: 0,
            ranges: [(0, 0); 3],
            unknown_types: 0,
        }
    }

    /// The command line as text (invalid UTF-8 is cut at the first bad byte).
    pub fn cmdline(&self) -> &str {
        let b = &self.cmdline[..self.cmdline_len];
        match core::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}
