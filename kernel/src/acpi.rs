//! ACPI, as much as SMP needs: the RSDP (from the start info, else the
//! BIOS-area scan), the RSDT/XSDT, and the MADT ("APIC"): the local APIC of
//! every processor (enabled or online-capable) and the I/O APICs. Tables
//! are read through `early_memremap`, checksums verified.

use crate::boot::MAX_CPUS;
use crate::paging;

use core::sync::atomic::{AtomicU64, Ordering};

/// The first I/O APIC the MADT listed: physical address | id << 56 (0: none).
static IOAPIC: AtomicU64 = AtomicU64::new(0);

/// The first I/O APIC: (id, physical address).
pub fn ioapic() -> Option<(u8, u64)> {
    let v = IOAPIC.load(Ordering::Relaxed);
    (v != 0).then_some(((v >> 56) as u8, v & ((1 << 56) - 1)))
}

/// What the MADT says.
pub struct Madt {
    /// Local APIC ids of the usable processors, in table order.
    pub apic_ids: [u32; MAX_CPUS],
    /// How many.
    pub nr_cpus: usize,
    /// Processors listed beyond `MAX_CPUS`.
    pub ignored_cpus: usize,
    /// Physical address of the local APIC.
    pub lapic_addr: u64,
    /// First I/O APIC: (id, physical address, GSI base).
    pub ioapic: Option<(u8, u64, u32)>,
}

fn map(phys: u64, len: u64) -> Option<&'static [u8]> {
    let p = paging::early_memremap(phys, len)?;
    // SAFETY: early_memremap mapped `len` bytes that stay mapped for good.
    Some(unsafe { core::slice::from_raw_parts(p, len as usize) })
}

fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x)) == 0
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u32_at(b, off) as u64 | (u32_at(b, off + 4) as u64) << 32
}

/// Scan the EBDA and the BIOS ROM area for "RSD PTR ".
fn find_rsdp() -> Option<u64> {
    let area = map(0xe0000, 0x20000)?;
    (0..area.len() - 20)
        .step_by(16)
        .find(|&i| &area[i..i + 8] == b"RSD PTR " && checksum_ok(&area[i..i + 20]))
        .map(|i| 0xe0000 + i as u64)
}

/// A table by physical address, if its signature and checksum are right.
fn table(phys: u64, sig: &[u8; 4]) -> Option<&'static [u8]> {
    let hdr = map(phys, 36)?;
    if &hdr[..4] != sig {
        return None;
    }
    let len = u32_at(hdr, 4) as u64;
    let t = map(phys, len)?;
    checksum_ok(t).then_some(t)
}

/// Find and parse the MADT.
pub fn parse_madt(rsdp_hint: u64) -> Result<Madt, &'static str> {
    let rsdp_phys = if rsdp_hint != 0 {
        rsdp_hint
    } else {
        find_rsdp().ok_or("no RSDP")?
    };
    let rsdp = map(rsdp_phys, 36).ok_or("RSDP unmapped")?;
    if &rsdp[..8] != b"RSD PTR " || !checksum_ok(&rsdp[..20]) {
        return Err("bad RSDP");
    }
    let (root, entry_size, sig): (u64, usize, &[u8; 4]) = if rsdp[15] >= 2 && u64_at(rsdp, 24) != 0 {
        (u64_at(rsdp, 24), 8, b"XSDT")
    } else {
        (u32_at(rsdp, 16) as u64, 4, b"RSDT")
    };
    let root = table(root, sig).ok_or("bad RSDT/XSDT")?;
    let n = (root.len() - 36) / entry_size;
    let madt = (0..n)
        .map(|i| {
            let off = 36 + i * entry_size;
            if entry_size == 8 {
                u64_at(root, off)
            } else {
                u32_at(root, off) as u64
            }
        })
        .find_map(|p| table(p, b"APIC"))
        .ok_or("no MADT")?;
    let mut m = Madt {
        apic_ids: [0; MAX_CPUS],
        nr_cpus: 0,
        ignored_cpus: 0,
        lapic_addr: u32_at(madt, 36) as u64,
        ioapic: None,
    };
    let mut off = 44;
    while off + 2 <= madt.len() {
        let (kind, len) = (madt[off], madt[off + 1] as usize);
        if len < 2 || off + len > madt.len() {
            break;
        }
        let e = &madt[off..off + len];
        match kind {
            0 if len >= 8 => {
                let flags = u32_at(e, 4);
                if flags & 3 != 0 {
                    if m.nr_cpus < MAX_CPUS {
                        m.apic_ids[m.nr_cpus] = e[3] as u32;
                        m.nr_cpus += 1;
                    } else {
                        m.ignored_cpus += 1;
                    }
                }
            }
            1 if len >= 12 && m.ioapic.is_none() => {
                m.ioapic = Some((e[2], u32_at(e, 4) as u64, u32_at(e, 8)));
            }
            5 if len >= 12 => m.lapic_addr = u64_at(e, 4),
            _ => {}
        }
        off += len;
    }
    if m.nr_cpus == 0 {
        return Err("MADT lists no processor");
    }
    if let Some((id, addr, _)) = m.ioapic {
        IOAPIC.store(addr | (id as u64) << 56, Ordering::Relaxed);
    }
    Ok(m)
}
