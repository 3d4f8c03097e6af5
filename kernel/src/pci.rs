//! PCI configuration space through configuration mechanism #1 (ports
//! 0xcf8/0xcfc), as much as finding a device and its memory BAR needs:
//! scan bus 0, read a BAR and size it (write all ones, read the mask back,
//! restore), enable memory decoding. The firmware (SeaBIOS) assigned the
//! BARs before the PVH entry.

use crate::arch::{inl, outl};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// A function on bus 0.
#[derive(Clone, Copy, Debug)]
pub struct PciDev {
    /// Device number.
    pub dev: u8,
    /// Function number.
    pub func: u8,
}

fn addr(d: PciDev, off: u8) -> u32 {
    0x8000_0000 | (d.dev as u32) << 11 | (d.func as u32) << 8 | (off as u32 & 0xfc)
}

/// Read a configuration dword.
pub fn read32(d: PciDev, off: u8) -> u32 {
    // SAFETY: the configuration ports; reads have no side effects on config space.
    unsafe {
        outl(CONFIG_ADDRESS, addr(d, off));
        inl(CONFIG_DATA)
    }
}

/// Write a configuration dword.
pub fn write32(d: PciDev, off: u8, v: u32) {
    // SAFETY: the configuration ports; callers write registers they own.
    unsafe {
        outl(CONFIG_ADDRESS, addr(d, off));
        outl(CONFIG_DATA, v);
    }
}

/// Find `vendor:device` on bus 0.
pub fn find(vendor: u16, device: u16) -> Option<PciDev> {
    (0..32u8)
        .flat_map(|dev| (0..8u8).map(move |func| PciDev { dev, func }))
        .find(|&d| {
            let id = read32(d, 0);
            id & 0xffff == vendor as u32 && id >> 16 == device as u32
        })
}

/// Memory BAR `n`: (physical address, size), with memory decoding enabled.
/// `None` for an I/O or unassigned BAR.
pub fn mem_bar(d: PciDev, n: u8) -> Option<(u64, u64)> {
    let off = 0x10 + 4 * n;
    let bar = read32(d, off);
    if bar & 1 != 0 {
        return None;
    }
    let is64 = (bar >> 1) & 3 == 2;
    let cmd = read32(d, 0x04);
    // Decoding off while sizing, as the kernel's __pci_read_base does.
    write32(d, 0x04, cmd & !0x2);
    write32(d, off, 0xffff_ffff);
    let mask_lo = read32(d, off) & !0xf;
    write32(d, off, bar);
    let (mut base, mut mask) = ((bar & !0xf) as u64, mask_lo as u64 | 0xffff_ffff_0000_0000);
    if is64 {
        let hi = read32(d, off + 4);
        write32(d, off + 4, 0xffff_ffff);
        let mask_hi = read32(d, off + 4);
        write32(d, off + 4, hi);
        base |= (hi as u64) << 32;
        mask = (mask & 0xffff_ffff) | (mask_hi as u64) << 32;
    }
    write32(d, 0x04, cmd | 0x2); // memory space enable
    let size = (!mask).wrapping_add(1);
    (base != 0 && size != 0).then_some((base, size))
}
