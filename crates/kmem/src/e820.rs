//! The x86 physical memory map ("E820 table"), after arch/x86/kernel/e820.c.
//!
//! The firmware describes physical memory as a list of typed ranges that may be
//! unsorted and overlap. [`E820Table`] holds such a list in fixed storage and
//! offers the kernel's operations on it: adding ranges (`e820__range_add`),
//! retyping (`e820__range_update`), removing (`e820__range_remove`) and
//! sanitizing (`e820__update_table`: sort, resolve overlaps in favour of the
//! higher type number, merge neighbours of the same type). The boot options
//! `mem=` and `memmap=` are applied by [`E820Table::apply_params`].
//!
//! [`pc_layout`] builds the map of a typical PC with a given amount of RAM,
//! [`max_low_pfn_for_highmem`] computes the x86-32 lowmem boundary and
//! [`numa_emulation`] splits the RAM into fake NUMA nodes (`numa=fake=N`).

use core::fmt;

use crate::cmdline::{BootParams, MemmapKind};
use crate::printk::Hex18;

/// Capacity of an [`E820Table`] (`E820_MAX_ENTRIES_ZEROPAGE`, the size of the
/// table the boot protocol hands over).
pub const E820_MAX_ENTRIES: usize = 128;

const PAGE_SHIFT: u32 = 12;
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The type of an E820 range. Overlaps are resolved in favour of the larger
/// number.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum E820Type {
    /// Usable RAM.
    Ram = 1,
    /// Reserved by the firmware.
    Reserved = 2,
    /// ACPI tables; reclaimable once they are parsed.
    Acpi = 3,
    /// ACPI non-volatile storage; must be preserved across sleep.
    Nvs = 4,
    /// Memory with detected errors.
    Unusable = 5,
    /// Persistent memory (ACPI 6).
    Pmem = 7,
    /// Legacy persistent memory (the non-standard type 12; `memmap=nn!ss`).
    Pram = 12,
    /// EFI "specific purpose" memory, soft-reserved for drivers.
    SoftReserved = 0xefff_ffff,
}

impl E820Type {
    /// The type with this E820 number, if it is one of the known ones.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Ram,
            2 => Self::Reserved,
            3 => Self::Acpi,
            4 => Self::Nvs,
            5 => Self::Unusable,
            7 => Self::Pmem,
            12 => Self::Pram,
            0xefff_ffff => Self::SoftReserved,
            _ => return None,
        })
    }

    /// The E820 type number.
    pub const fn as_u32(self) -> u32 {
        self as u32
    }

    /// Types whose neighbouring ranges are never merged because their
    /// boundaries may be meaningful (`e820_nomerge`).
    const fn nomerge(self) -> bool {
        matches!(self, Self::Pram | Self::SoftReserved)
    }
}

/// Prints the name the kernel's `e820_print_type()` uses.
impl fmt::Display for E820Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ram => f.write_str("usable"),
            Self::Reserved => f.write_str("reserved"),
            Self::SoftReserved => f.write_str("soft reserved"),
            Self::Acpi => f.write_str("ACPI data"),
            Self::Nvs => f.write_str("ACPI NVS"),
            Self::Unusable => f.write_str("unusable"),
            Self::Pmem | Self::Pram => write!(f, "persistent (type {})", self.as_u32()),
        }
    }
}

/// One range of the map: `[addr, addr + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Type.
    pub kind: E820Type,
}

impl E820Entry {
    const EMPTY: Self = Self {
        addr: 0,
        size: 0,
        kind: E820Type::Reserved,
    };

    /// End address (exclusive), saturating at `u64::MAX`.
    pub const fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// Why a table could not be sanitized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E820Error {
    /// Fewer than two entries: the kernel's `e820__update_table()` does nothing
    /// and reports failure.
    TooFewEntries,
    /// An entry's end wraps around the 64-bit address space.
    AddressWrap,
    /// `mem=`/`memmap=` produced a map the kernel would reject at
    /// `e820__finish_early_params()` (it panics: "Invalid user supplied memory
    /// map").
    InvalidUserMap,
}

impl fmt::Display for E820Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooFewEntries => "e820: fewer than two entries",
            Self::AddressWrap => "e820: entry wraps around the address space",
            Self::InvalidUserMap => "Invalid user supplied memory map",
        })
    }
}

/// A physical memory map of at most [`E820_MAX_ENTRIES`] ranges.
#[derive(Clone, Copy)]
pub struct E820Table {
    entries: [E820Entry; E820_MAX_ENTRIES],
    nr: usize,
}

impl E820Table {
    /// An empty map.
    pub const fn new() -> Self {
        Self {
            entries: [E820Entry::EMPTY; E820_MAX_ENTRIES],
            nr: 0,
        }
    }

    /// The entries, in table order (sorted and disjoint after
    /// [`sanitize`](Self::sanitize)).
    pub fn entries(&self) -> &[E820Entry] {
        &self.entries[..self.nr]
    }

    /// Removes all entries.
    pub fn clear(&mut self) {
        self.nr = 0;
    }

    /// Appends a range, unsorted and possibly overlapping (`e820__range_add`).
    /// Returns `false` (and drops the range, as the kernel does with "too many
    /// entries") when the table is full.
    pub fn add(&mut self, addr: u64, size: u64, kind: E820Type) -> bool {
        if self.nr >= E820_MAX_ENTRIES {
            return false;
        }
        self.entries[self.nr] = E820Entry { addr, size, kind };
        self.nr += 1;
        true
    }

    /// Changes the type of the `old`-typed parts of `[addr, addr + size)` to
    /// `new` (`e820__range_update`); returns how many bytes changed. Entries are
    /// split as needed, the pieces appended; call [`sanitize`](Self::sanitize)
    /// afterwards. `old == new` changes nothing (the kernel BUG()s).
    pub fn update(&mut self, addr: u64, size: u64, old: E820Type, new: E820Type) -> u64 {
        if old == new {
            return 0;
        }
        let size = size.min(u64::MAX - addr);
        let end = addr + size;
        let mut updated = 0;
        let mut i = 0;
        while i < self.nr {
            let e = self.entries[i];
            i += 1;
            if e.kind != old {
                continue;
            }
            let e_end = e.addr + e.size;
            // Entirely inside the range: retype in place.
            if e.addr >= addr && e_end <= end {
                self.entries[i - 1].kind = new;
                updated += e.size;
                continue;
            }
            // The range is strictly inside the entry: three pieces.
            if e.addr < addr && e_end > end {
                self.add(addr, size, new);
                self.add(end, e_end - end, e.kind);
                self.entries[i - 1].size = addr - e.addr;
                updated += size;
                continue;
            }
            // Partial overlap at one end.
            let (s, t) = (addr.max(e.addr), end.min(e_end));
            if s >= t {
                continue;
            }
            self.add(s, t - s, new);
            updated += t - s;
            let ent = &mut self.entries[i - 1];
            ent.size -= t - s;
            if ent.addr >= s {
                ent.addr = t;
            }
        }
        updated
    }

    /// Removes `[addr, addr + size)` from the map (`e820__range_remove`); with
    /// `check_type` only from entries of type `kind` (`None` then matches every
    /// type, as does `check_type == false`). Returns how many bytes were
    /// removed. Unlike the kernel, which zeroes covered entries and leaves them
    /// for the next sanitize, covered entries are dropped at once.
    pub fn remove(&mut self, addr: u64, size: u64, kind: Option<E820Type>, check_type: bool) -> u64 {
        let filter = if check_type { kind } else { None };
        let size = size.min(u64::MAX - addr);
        let end = addr + size;
        let mut removed = 0;
        let mut i = 0;
        while i < self.nr {
            let e = self.entries[i];
            if filter.is_some_and(|k| k != e.kind) {
                i += 1;
                continue;
            }
            let e_end = e.addr + e.size;
            if e.addr >= addr && e_end <= end {
                removed += e.size;
                self.entries.copy_within(i + 1..self.nr, i);
                self.nr -= 1;
                continue;
            }
            i += 1;
            if e.addr < addr && e_end > end {
                self.add(end, e_end - end, e.kind);
                self.entries[i - 1].size = addr - e.addr;
                removed += size;
                continue;
            }
            let (s, t) = (addr.max(e.addr), end.min(e_end));
            if s >= t {
                continue;
            }
            removed += t - s;
            let ent = &mut self.entries[i - 1];
            ent.size -= t - s;
            if ent.addr >= s {
                ent.addr = t;
            }
        }
        removed
    }

    /// Sorts the map, resolves overlaps in favour of the higher type number,
    /// merges touching ranges of the same type (except [`E820Type::Pram`] and
    /// [`E820Type::SoftReserved`]) and drops empty ranges. Like the kernel, it
    /// leaves the table untouched when it has fewer than two entries or an
    /// entry wraps around; see [`update_table`](Self::update_table).
    pub fn sanitize(&mut self) {
        // Both failure cases leave the table as it was, which is all a caller
        // of this function can want.
        let _ = self.update_table();
    }

    /// [`sanitize`](Self::sanitize), reporting the kernel's
    /// `e820__update_table()` failures.
    pub fn update_table(&mut self) -> Result<(), E820Error> {
        if self.nr < 2 {
            return Err(E820Error::TooFewEntries);
        }
        if self
            .entries()
            .iter()
            .any(|e| e.addr.checked_add(e.size).is_none())
        {
            return Err(E820Error::AddressWrap);
        }

        /// A change point: where an entry starts or ends.
        #[derive(Clone, Copy)]
        struct Point {
            addr: u64,
            is_end: bool,
            entry: u8,
        }
        let mut points = [Point {
            addr: 0,
            is_end: false,
            entry: 0,
        }; 2 * E820_MAX_ENTRIES];
        let mut nr_points = 0;
        for (idx, e) in self.entries().iter().enumerate() {
            if e.size == 0 {
                continue;
            }
            // idx < E820_MAX_ENTRIES = 128 fits in a u8.
            let entry = idx as u8;
            points[nr_points] = Point {
                addr: e.addr,
                is_end: false,
                entry,
            };
            points[nr_points + 1] = Point {
                addr: e.addr + e.size,
                is_end: true,
                entry,
            };
            nr_points += 2;
        }
        // By address; at equal addresses starts come before ends so that
        // touching ranges of one type join up. An insertion sort: a map has
        // a few dozen points, and this is a few instructions of boot code
        // where a general sort is kilobytes.
        let key = |p: &Point| (p.addr, p.is_end);
        for i in 1..nr_points {
            let p = points[i];
            let mut j = i;
            while j > 0 && key(&points[j - 1]) > key(&p) {
                points[j] = points[j - 1];
                j -= 1;
            }
            points[j] = p;
        }

        let mut overlap = [0u8; E820_MAX_ENTRIES];
        let mut nr_overlap = 0;
        let mut out = [E820Entry::EMPTY; E820_MAX_ENTRIES];
        let mut nr_out = 0;
        let mut last: Option<E820Type> = None;
        let mut last_addr = 0;
        for p in &points[..nr_points] {
            if p.is_end {
                if let Some(pos) = overlap[..nr_overlap].iter().position(|&x| x == p.entry) {
                    overlap[pos] = overlap[nr_overlap - 1];
                    nr_overlap -= 1;
                }
            } else {
                overlap[nr_overlap] = p.entry;
                nr_overlap += 1;
            }
            let cur = overlap[..nr_overlap]
                .iter()
                .map(|&x| self.entries[usize::from(x)].kind)
                .max_by_key(|k| k.as_u32());
            if cur != last || cur.is_some_and(E820Type::nomerge) {
                if last.is_some() {
                    out[nr_out].size = p.addr - last_addr;
                    if out[nr_out].size != 0 {
                        nr_out += 1;
                        if nr_out >= E820_MAX_ENTRIES {
                            break;
                        }
                    }
                }
                if let Some(kind) = cur {
                    out[nr_out].addr = p.addr;
                    out[nr_out].kind = kind;
                    last_addr = p.addr;
                }
                last = cur;
            }
        }
        self.entries[..nr_out].copy_from_slice(&out[..nr_out]);
        self.nr = nr_out;
        Ok(())
    }

    /// Total bytes of usable RAM.
    pub fn total_ram(&self) -> u64 {
        self.entries()
            .iter()
            .filter(|e| e.kind == E820Type::Ram)
            .map(|e| e.size)
            .sum()
    }

    /// Bytes of usable RAM inside `[start, end)`.
    pub fn ram_in_range(&self, start: u64, end: u64) -> u64 {
        self.entries()
            .iter()
            .filter(|e| e.kind == E820Type::Ram)
            .map(|e| {
                let (s, t) = (e.addr.max(start), e.end().min(end));
                t.saturating_sub(s)
            })
            .sum()
    }

    /// The kernel's `e820__end_ram_pfn(limit_pfn)`, in pages. Counts RAM and
    /// ACPI data (the latter can hold tables the kernel needs mapped), stops at
    /// the first range that crosses the limit; expects a sanitized table.
    fn end_pfn(&self, limit_pfn: u64) -> u64 {
        let mut last_pfn = 0;
        for e in self.entries() {
            if e.kind != E820Type::Ram && e.kind != E820Type::Acpi {
                continue;
            }
            let start_pfn = e.addr >> PAGE_SHIFT;
            let end_pfn = e.end() >> PAGE_SHIFT;
            if start_pfn >= limit_pfn {
                continue;
            }
            if end_pfn > limit_pfn {
                last_pfn = limit_pfn;
                break;
            }
            last_pfn = last_pfn.max(end_pfn);
        }
        last_pfn
    }

    /// End of RAM (`e820__end_of_ram_pfn() << PAGE_SHIFT`): the page-aligned
    /// (rounded down) end of the highest RAM or ACPI-data range.
    pub fn end_of_ram(&self) -> u64 {
        // MAX_ARCH_PFN on x86-64: MAXMEM = 1 << MAX_PHYSMEM_BITS (52).
        self.end_pfn(1 << (52 - PAGE_SHIFT)) << PAGE_SHIFT
    }

    /// End of RAM below `limit` (`e820__end_of_low_ram_pfn()` with a 4 GiB
    /// limit), page-aligned.
    pub fn end_of_low_ram(&self, limit: u64) -> u64 {
        self.end_pfn(limit >> PAGE_SHIFT) << PAGE_SHIFT
    }

    /// Prints the map as the kernel's `e820__print_table("BIOS-e820")`:
    /// `BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable`.
    pub fn print(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        self.print_as("BIOS-e820", out)
    }

    /// Prints the map with another origin tag: `"user"` after `mem=`/`memmap=`,
    /// `"modified"` after later changes.
    pub fn print_as(&self, who: &str, out: &mut dyn fmt::Write) -> fmt::Result {
        for e in self.entries() {
            writeln!(
                out,
                "{who}: [mem {}-{}] {}",
                Hex18(e.addr),
                Hex18(e.addr.wrapping_add(e.size).wrapping_sub(1)),
                e.kind
            )?;
        }
        Ok(())
    }

    /// Applies `mem=` and `memmap=` in command-line order (`parse_memopt`,
    /// `parse_memmap_one`), then sanitizes as `e820__finish_early_params()`.
    ///
    /// Returns `Ok(true)` if the user changed the map (the kernel then prints it
    /// as `"user"`, see [`print_as`](Self::print_as)), `Ok(false)` if there was
    /// nothing to apply, and [`E820Error::InvalidUserMap`] when the result
    /// cannot be sanitized — for example `memmap=exactmap` followed by fewer
    /// than two ranges, which makes the kernel panic. The table is left as the
    /// options made it in that case.
    pub fn apply_params(&mut self, p: &BootParams) -> Result<bool, E820Error> {
        self.apply_params_mem(p, p.mem)
    }

    /// [`apply_params`](Self::apply_params) with `mem` in place of `p.mem`:
    /// a host that already sized its RAM by `mem=` passes `None`, without a
    /// copy of the parameters.
    pub fn apply_params_mem(&mut self, p: &BootParams, mem: Option<u64>) -> Result<bool, E820Error> {
        let mut userdef = false;
        let limit = |t: &mut Self, size: u64| {
            t.remove(size, u64::MAX - size, Some(E820Type::Ram), true);
        };
        for (i, e) in p.memmap().iter().enumerate() {
            if i == p.mem_pos {
                if let Some(m) = mem {
                    limit(self, m);
                }
            }
            userdef = true;
            match e.kind {
                MemmapKind::Exactmap => self.clear(),
                MemmapKind::Limit => limit(self, e.size),
                MemmapKind::Add(kind) => {
                    self.add(e.start, e.size, kind);
                }
                MemmapKind::Update { from, to } => match (from, to) {
                    (Some(f), Some(t)) => {
                        self.update(e.start, e.size, f, t);
                    }
                    (None, Some(t)) => {
                        self.add(e.start, e.size, t);
                    }
                    (from, None) => {
                        self.remove(e.start, e.size, from, from.is_some());
                    }
                },
            }
        }
        if p.mem_pos >= p.memmap().len() {
            if let Some(m) = mem {
                limit(self, m);
                userdef = true;
            }
        }
        if !userdef {
            return Ok(false);
        }
        self.update_table()
            .map(|()| true)
            .map_err(|_| E820Error::InvalidUserMap)
    }
}

impl Default for E820Table {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for E820Table {
    fn eq(&self, other: &Self) -> bool {
        self.entries() == other.entries()
    }
}

impl Eq for E820Table {}

impl fmt::Debug for E820Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries()).finish()
    }
}

/// End of the conventional memory below the EBDA.
const LOW_RAM_END: u64 = 0x9fc00;
/// Where RAM resumes above the legacy VGA/ROM area.
const HIGH_MEMORY: u64 = MIB;
/// Start of the 32-bit PCI hole.
const PCI_HOLE: u64 = 3 * GIB;
const ACPI_SIZE: u64 = 128 * KIB;
const NVS_SIZE: u64 = 64 * KIB;

/// The memory map of a PC-like machine with exactly `ram` bytes of usable RAM:
///
/// | range                         | type      |                              |
/// |-------------------------------|-----------|------------------------------|
/// | `0x0 - 0x9fbff`               | usable    | conventional memory          |
/// | `0x9fc00 - 0x9ffff`           | reserved  | EBDA                         |
/// | `0xf0000 - 0xfffff`           | reserved  | BIOS ROM                     |
/// | `0x100000 - low_end`          | usable    | up to at most 3 GiB - 192 KiB|
/// | 128 KiB after low RAM         | ACPI data | at a 64 KiB boundary         |
/// | 64 KiB after that             | ACPI NVS  | ends at 3 GiB on big machines|
/// | `0xfec00000`, 4 KiB           | reserved  | IOAPIC                       |
/// | `0xfee00000`, 4 KiB           | reserved  | local APIC                   |
/// | `0xfffc0000`, 256 KiB         | reserved  | BIOS flash                   |
/// | `4 GiB - ...`                 | usable    | the rest of the RAM          |
///
/// The rest of the PCI hole `[3 GiB, 4 GiB)` has no entry. The VGA window
/// `[0xa0000, 0xf0000)` has none either. Because the first range is 639 KiB,
/// [`E820Table::total_ram`] equals `ram` only if the last RAM range ends
/// 1 KiB-aligned; the page allocator loses that partial page, as on real
/// machines.
pub fn pc_layout(ram: u64) -> E820Table {
    let mut t = E820Table::new();
    let low = ram.min(LOW_RAM_END);
    if low > 0 {
        t.add(0, low, E820Type::Ram);
    }
    t.add(LOW_RAM_END, 0xa0000 - LOW_RAM_END, E820Type::Reserved);
    t.add(0xf0000, 0x10000, E820Type::Reserved);

    let mut rest = ram - low;
    let low_max = PCI_HOLE - ACPI_SIZE - NVS_SIZE;
    let below = rest.min(low_max - HIGH_MEMORY);
    if below > 0 {
        t.add(HIGH_MEMORY, below, E820Type::Ram);
    }
    rest -= below;
    let acpi = (HIGH_MEMORY + below).next_multiple_of(64 * KIB);
    t.add(acpi, ACPI_SIZE, E820Type::Acpi);
    t.add(acpi + ACPI_SIZE, NVS_SIZE, E820Type::Nvs);

    t.add(0xfec0_0000, 4 * KIB, E820Type::Reserved);
    t.add(0xfee0_0000, 4 * KIB, E820Type::Reserved);
    t.add(0xfffc_0000, 256 * KIB, E820Type::Reserved);
    if rest > 0 {
        t.add(4 * GIB, rest, E820Type::Ram);
    }
    t
}

/// The least lowmem [`max_low_pfn_for_highmem`] leaves, and the least
/// `kmem.lowmem=` takes: 64 MiB.
pub const MIN_LOWMEM: u64 = 64 * MIB;

/// The end of lowmem of a machine with RAM `table` booted with `params`, as
/// a page frame number aligned to the largest buddy block (so that no block
/// straddles Normal and HighMem); None if the machine has no HighMem zone
/// (neither `highmem=` nor `kmem.lowmem=` given). `kmem.lowmem=` gives the
/// boundary itself (above the end of RAM, lowmem is all of it); `highmem=`
/// follows x86-32 ([`max_low_pfn_for_highmem`]). The boot uses it, and so
/// does a platform that backs lowmem and HighMem differently.
pub fn max_low_pfn(table: &E820Table, params: &crate::cmdline::BootParams) -> Option<u64> {
    const MAX_ORDER_PAGES: u64 = 1 << crate::page::MAX_PAGE_ORDER;
    let max_pfn = table.end_of_ram() >> PAGE_SHIFT;
    let low = match (params.kmem_lowmem, params.highmem) {
        (Some(bytes), _) => bytes >> PAGE_SHIFT,
        (None, Some(_)) => max_low_pfn_for_highmem(table, params.highmem),
        (None, None) => return None,
    };
    Some((low & !(MAX_ORDER_PAGES - 1)).min(max_pfn))
}

/// x86-32's `MAXMEM` with the default 128 MiB vmalloc area: the top of the
/// direct mapping, 896 MiB.
pub const MAXMEM_32: u64 = 896 * MIB;

/// The x86-32 lowmem boundary `max_low_pfn` (a page frame number), as
/// `find_low_pfn_range()` in arch/x86/mm/init_32.c computes it.
///
/// `max_pfn` is the end of RAM ([`E820Table::end_of_ram`], capped at the PAE
/// limit of 64 GiB).
///
/// * RAM ends at or below [`MAXMEM_32`] (`lowmem_pfn_init`): lowmem is all of
///   it; `highmem=h` turns the top `h` into highmem, i.e. `max_pfn - h`
///   (rounded to pages), unless `h` is at least `max_pfn` or would leave less
///   than 64 MiB of lowmem — then it is ignored, as the kernel does with an
///   error message.
/// * RAM goes beyond it (`highmem_pfn_init`): lowmem ends at `MAXMEM_32`
///   whatever `highmem=` says (there `highmem=` only trims the top of RAM).
pub fn max_low_pfn_for_highmem(table: &E820Table, highmem_bytes: Option<u64>) -> u64 {
    const MAXMEM_PFN: u64 = MAXMEM_32 >> PAGE_SHIFT;
    const MIN_LOWMEM_PFN: u64 = MIN_LOWMEM >> PAGE_SHIFT;
    let max_pfn = (table.end_of_ram() >> PAGE_SHIFT).min(1 << (36 - PAGE_SHIFT));
    if max_pfn > MAXMEM_PFN {
        return MAXMEM_PFN;
    }
    let highmem_pages = highmem_bytes.unwrap_or(0) >> PAGE_SHIFT;
    if highmem_pages == 0 || highmem_pages >= max_pfn || max_pfn - highmem_pages < MIN_LOWMEM_PFN {
        return max_pfn;
    }
    max_pfn - highmem_pages
}

/// Most fake nodes [`numa_emulation`] makes (`MAX_NUMNODES` with
/// `NODES_SHIFT = 6`).
pub const MAX_NUMNODES: usize = 64;

/// Node boundaries of [`numa_emulation`] are multiples of this: 4 MiB, the
/// buddy allocator's largest block (order 10).
pub const NUMA_EMU_ALIGN: u64 = 4 * MIB;

/// Fake NUMA (`numa=fake=N`): splits the RAM of `table` into `n` nodes with
/// (nearly) equal amounts of RAM.
///
/// Returns the nodes' physical ranges `[start, end)` in the first `count`
/// slots. The ranges are contiguous and in address order, every boundary is a
/// multiple of [`NUMA_EMU_ALIGN`], and together they cover all RAM (the first
/// starts at the first RAM range rounded down, the last ends at the end of RAM
/// rounded up). Each inner boundary is the 4 MiB multiple nearest to the point
/// where the RAM below it reaches `i * total / n`, so a node's RAM differs
/// from the ideal share by less than 4 MiB plus any hole at the boundary.
/// `n` is clamped to [`MAX_NUMNODES`]; if the RAM is too small for `n` nodes
/// of at least 4 MiB, fewer are returned. The kernel's version
/// (`split_nodes_interleave`) aligns to 32 MiB (`FAKE_NODE_MIN_SIZE`).
pub fn numa_emulation(table: &E820Table, n: usize) -> ([(u64, u64); MAX_NUMNODES], usize) {
    let mut nodes = [(0u64, 0u64); MAX_NUMNODES];
    let n = n.min(MAX_NUMNODES);
    let total = table.total_ram();
    if n == 0 || total == 0 {
        return (nodes, 0);
    }
    // RAM ranges in address order.
    let mut ram = [(0u64, 0u64); E820_MAX_ENTRIES];
    let mut nr = 0;
    for e in table.entries() {
        if e.kind == E820Type::Ram && e.size > 0 {
            ram[nr] = (e.addr, e.end());
            nr += 1;
        }
    }
    let ram = &mut ram[..nr];
    ram.sort_unstable();
    let first = ram[0].0 / NUMA_EMU_ALIGN * NUMA_EMU_ALIGN;
    let last_ram = ram.iter().map(|r| r.1).max().unwrap_or(0);
    let end = last_ram
        .checked_next_multiple_of(NUMA_EMU_ALIGN)
        .unwrap_or(u64::MAX / NUMA_EMU_ALIGN * NUMA_EMU_ALIGN);

    // The address below which `target` bytes of RAM lie.
    let address_of = |target: u64| -> u64 {
        let mut acc = 0u64;
        for &(s, e) in ram.iter() {
            let len = e - s;
            if acc + len >= target {
                return s + (target - acc);
            }
            acc += len;
        }
        last_ram
    };

    let mut count = 0;
    let mut start = first;
    for i in 1..n {
        // i * total / n without overflow.
        let target = (u128::from(total) * i as u128 / n as u128) as u64;
        let a = address_of(target);
        let mut b = (a + NUMA_EMU_ALIGN / 2) / NUMA_EMU_ALIGN * NUMA_EMU_ALIGN;
        if b <= start {
            b = start + NUMA_EMU_ALIGN;
        }
        if b >= end {
            break;
        }
        nodes[count] = (start, b);
        count += 1;
        start = b;
    }
    nodes[count] = (start, end);
    count += 1;
    (nodes, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::parse;
    use std::string::String;
    use std::vec::Vec;

    fn e(addr: u64, size: u64, kind: E820Type) -> E820Entry {
        E820Entry { addr, size, kind }
    }

    fn table(list: &[(u64, u64, E820Type)]) -> E820Table {
        let mut t = E820Table::new();
        for &(a, s, k) in list {
            assert!(t.add(a, s, k));
        }
        t
    }

    fn ranges(t: &E820Table) -> Vec<(u64, u64, E820Type)> {
        t.entries().iter().map(|e| (e.addr, e.end(), e.kind)).collect()
    }

    use E820Type::*;

    #[test]
    fn sanitize_sorts_merges_and_resolves() {
        // The picture from the kernel's comment, one column per 0x1000.
        let rows: &[(&str, u32)] = &[
            ("____22__________________", 2),
            ("______________________4_", 4),
            ("____1111________________", 1),
            ("_44_____________________", 4),
            ("11111111________________", 1),
            ("____________________33__", 3),
            ("___________44___________", 4),
            ("__________33333_________", 3),
            ("______________22________", 2),
            ("___________________2222_", 2),
            ("_________111111111______", 1),
            ("_____________________11_", 1),
            ("_________________4______", 4),
        ];
        let mut t = E820Table::new();
        for (row, ty) in rows {
            let s = row.find(|c| c != '_').unwrap() as u64;
            let e = row.rfind(|c| c != '_').unwrap() as u64 + 1;
            t.add(s * 0x1000, (e - s) * 0x1000, E820Type::from_u32(*ty).unwrap());
        }
        t.sanitize();
        let want = [
            (0, 1, Ram),
            (1, 3, Nvs),
            (3, 4, Ram),
            (4, 6, Reserved),
            (6, 8, Ram),
            (9, 10, Ram),
            (10, 11, Acpi),
            (11, 13, Nvs),
            (13, 15, Acpi),
            (15, 16, Reserved),
            (16, 17, Ram),
            (17, 18, Nvs),
            (19, 20, Reserved),
            (20, 22, Acpi),
            (22, 23, Nvs),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|&(s, e, k)| (s * 0x1000, e * 0x1000, k))
            .collect();
        assert_eq!(ranges(&t), want);
    }

    #[test]
    fn sanitize_details() {
        // Touching same-type ranges merge, empty ones vanish, unsorted input.
        let mut t = table(&[
            (0x2000, 0x1000, Ram),
            (0x0, 0x2000, Ram),
            (0x5000, 0, Reserved),
            (0x3000, 0x1000, Reserved),
        ]);
        t.sanitize();
        assert_eq!(ranges(&t), [(0, 0x3000, Ram), (0x3000, 0x4000, Reserved)]);

        // Type 12 and soft-reserved neighbours are not merged.
        let mut t = table(&[
            (0x1000, 0x1000, Pram),
            (0x2000, 0x1000, Pram),
            (0x3000, 0x1000, SoftReserved),
            (0x4000, 0x1000, SoftReserved),
            (0x0, 0x1000, Ram),
        ]);
        t.sanitize();
        assert_eq!(t.entries().len(), 5);

        // Soft-reserved (0xefffffff) beats everything.
        let mut t = table(&[(0, 0x4000, Ram), (0x1000, 0x1000, SoftReserved)]);
        t.sanitize();
        assert_eq!(
            ranges(&t),
            [
                (0, 0x1000, Ram),
                (0x1000, 0x2000, SoftReserved),
                (0x2000, 0x4000, Ram)
            ]
        );

        // Fewer than two entries, or a wrapping one: left alone.
        let mut t = table(&[(0x1000, 0, Ram)]);
        assert_eq!(t.update_table(), Err(E820Error::TooFewEntries));
        assert_eq!(t.entries().len(), 1);
        let mut t = table(&[(0, 0x1000, Ram), (u64::MAX - 10, 100, Reserved)]);
        assert_eq!(t.update_table(), Err(E820Error::AddressWrap));
        assert_eq!(t.entries().len(), 2);
    }

    #[test]
    fn update_splits_and_counts() {
        let mut t = table(&[(0, 0x10000, Ram), (0x10000, 0x1000, Reserved)]);
        // Inside one entry: three pieces.
        assert_eq!(t.update(0x4000, 0x2000, Ram, Reserved), 0x2000);
        // Overlapping the end of the first RAM piece and a reserved range.
        assert_eq!(t.update(0x3000, 0x2000, Ram, Acpi), 0x1000);
        // Not matching the old type: nothing.
        assert_eq!(t.update(0x20000, 0x1000, Ram, Acpi), 0);
        assert_eq!(t.update(0, 0x1000, Ram, Ram), 0);
        t.sanitize();
        assert_eq!(
            ranges(&t),
            [
                (0, 0x3000, Ram),
                (0x3000, 0x4000, Acpi),
                (0x4000, 0x6000, Reserved),
                (0x6000, 0x10000, Ram),
                (0x10000, 0x11000, Reserved),
            ]
        );
        // Everything from an address to the top of the address space.
        assert_eq!(t.update(0x8000, u64::MAX, Ram, Unusable), 0x8000);
    }

    #[test]
    fn remove_kinds() {
        let mut t = table(&[
            (0, 0x10000, Ram),
            (0x10000, 0x10000, Reserved),
            (0x20000, 0x10000, Ram),
        ]);
        // Typed: only RAM goes, the hole in the middle of RAM splits it.
        assert_eq!(t.remove(0x4000, 0x1000, Some(Ram), true), 0x1000);
        assert_eq!(t.remove(0xc000, 0x18000, Some(Ram), true), 0x4000 + 0x4000);
        t.sanitize();
        assert_eq!(
            ranges(&t),
            [
                (0, 0x4000, Ram),
                (0x5000, 0xc000, Ram),
                (0x10000, 0x20000, Reserved),
                (0x24000, 0x30000, Ram),
            ]
        );
        // Untyped: everything in the range.
        assert_eq!(
            t.remove(0x8000, 0x20000, Some(Ram), false),
            0x4000 + 0x10000 + 0x4000
        );
        assert_eq!(
            ranges(&t),
            [(0, 0x4000, Ram), (0x5000, 0x8000, Ram), (0x28000, 0x30000, Ram)]
        );
        // Whole entries vanish at once.
        assert_eq!(t.remove(0, u64::MAX, None, false), 0x4000 + 0x3000 + 0x8000);
        assert!(t.entries().is_empty());
    }

    #[test]
    fn capacity() {
        let mut t = E820Table::new();
        for i in 0..E820_MAX_ENTRIES as u64 {
            assert!(t.add(i * 0x2000, 0x1000, Ram));
        }
        assert!(!t.add(u64::MAX / 2, 0x1000, Ram));
        // A split that needs a new slot loses its tail, as in the kernel.
        assert_eq!(t.update(0x400, 0x100, Ram, Reserved), 0x100);
        assert_eq!(t.entries().len(), E820_MAX_ENTRIES);
        t.sanitize();
        assert!(t.entries().len() <= E820_MAX_ENTRIES);
    }

    fn check_pc(ram: u64) -> E820Table {
        let t = pc_layout(ram);
        assert_eq!(t.total_ram(), ram);
        let mut s = t;
        s.sanitize();
        assert_eq!(s, t, "pc_layout is already sorted and disjoint");
        // Nothing but the three small reserved ranges in the PCI hole.
        for e in t.entries() {
            if e.end() > PCI_HOLE && e.addr < 4 * GIB {
                assert_eq!(e.kind, Reserved, "{e:?}");
                assert!(e.size <= 256 * KIB);
            }
        }
        assert_eq!(t.ram_in_range(PCI_HOLE, 4 * GIB), 0);
        assert_eq!(t.ram_in_range(0xa0000, 0x100000), 0);
        t
    }

    #[test]
    fn pc_layout_512m() {
        let t = check_pc(512 * MIB);
        let low_end = MIB + 512 * MIB - LOW_RAM_END;
        assert_eq!(
            ranges(&t),
            [
                (0, 0x9fc00, Ram),
                (0x9fc00, 0xa0000, Reserved),
                (0xf0000, 0x100000, Reserved),
                (0x100000, low_end, Ram),
                (0x2007_0000, 0x2009_0000, Acpi),
                (0x2009_0000, 0x200a_0000, Nvs),
                (0xfec0_0000, 0xfec0_1000, Reserved),
                (0xfee0_0000, 0xfee0_1000, Reserved),
                (0xfffc_0000, 0x1_0000_0000, Reserved),
            ]
        );
        assert_eq!(t.end_of_low_ram(4 * GIB), 0x2009_0000);
        assert_eq!(t.end_of_ram(), 0x2009_0000, "ACPI data counts, NVS does not");
    }

    #[test]
    fn pc_layout_4g_16g() {
        let t = check_pc(4 * GIB);
        let low = PCI_HOLE - 192 * KIB;
        let high = 4 * GIB - LOW_RAM_END - (low - MIB);
        let r = ranges(&t);
        assert_eq!(r[3], (MIB, low, Ram));
        assert_eq!(r[4], (low, low + 128 * KIB, Acpi));
        assert_eq!(r[5], (low + 128 * KIB, PCI_HOLE, Nvs));
        assert_eq!(*r.last().unwrap(), (4 * GIB, 4 * GIB + high, Ram));
        assert_eq!(t.end_of_low_ram(4 * GIB), PCI_HOLE - 64 * KIB);

        let t = check_pc(16 * GIB);
        let (a, b, k) = *ranges(&t).last().unwrap();
        assert_eq!((a, k), (4 * GIB, Ram));
        assert_eq!(b - a, 16 * GIB - LOW_RAM_END - (low - MIB));
        assert_eq!(t.end_of_ram(), b & !0xfff);

        // Tiny machines still make sense.
        let t = check_pc(256 * KIB);
        assert_eq!(t.entries()[0], e(0, 256 * KIB, Ram));
        check_pc(0);
        check_pc(3 * GIB);
    }

    #[test]
    fn print_format() {
        let mut t = E820Table::new();
        t.add(0, 0x9fc00, Ram);
        t.add(0x9fc00, 0x400, Reserved);
        t.add(0x7ffe_0000, 0x2_0000, Acpi);
        t.add(0x8000_0000, 0x1000, Nvs);
        t.add(0x9000_0000, 0x1000, Unusable);
        t.add(0x1_0000_0000, 0x1000_0000, Pram);
        t.add(0x2_0000_0000, 0x1000_0000, Pmem);
        t.add(0x3_0000_0000, 0x1000, SoftReserved);
        let mut s = String::new();
        t.print(&mut s).unwrap();
        let want = "\
BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved
BIOS-e820: [mem 0x000000007ffe0000-0x000000007fffffff] ACPI data
BIOS-e820: [mem 0x0000000080000000-0x0000000080000fff] ACPI NVS
BIOS-e820: [mem 0x0000000090000000-0x0000000090000fff] unusable
BIOS-e820: [mem 0x0000000100000000-0x000000010fffffff] persistent (type 12)
BIOS-e820: [mem 0x0000000200000000-0x000000020fffffff] persistent (type 7)
BIOS-e820: [mem 0x0000000300000000-0x0000000300000fff] soft reserved
";
        assert_eq!(s, want);
        let mut s = String::new();
        pc_layout(512 * MIB).print_as("user", &mut s).unwrap();
        assert!(s.starts_with("user: [mem 0x0000000000000000-0x000000000009fbff] usable\n"));
    }

    #[test]
    fn mem_trims_ram() {
        let mut t = pc_layout(16 * GIB);
        let p = parse("mem=2G");
        assert_eq!(t.apply_params(&p), Ok(true));
        // mem= is an address limit: RAM at or above 2 GiB goes, other types stay.
        assert_eq!(t.ram_in_range(2 * GIB, u64::MAX), 0);
        assert_eq!(t.total_ram(), 2 * GIB - MIB + LOW_RAM_END);
        assert!(t.entries().iter().any(|e| e.kind == Acpi));
        assert!(t.entries().iter().any(|e| e.addr == 0xfffc_0000));

        // memmap=nn without a position is the same.
        let mut u = pc_layout(16 * GIB);
        assert_eq!(u.apply_params(&parse("memmap=2G")), Ok(true));
        assert_eq!(u, t);

        // Nothing to do.
        let mut t = pc_layout(GIB);
        assert_eq!(t.apply_params(&parse("quiet")), Ok(false));
        assert_eq!(t, pc_layout(GIB));
        // mem= above the RAM changes nothing, but the map is user-defined.
        assert_eq!(t.apply_params(&parse("mem=8G")), Ok(true));
        assert_eq!(t, pc_layout(GIB));
    }

    #[test]
    fn memmap_adds_and_reserves() {
        let mut t = pc_layout(GIB);
        let p = parse("memmap=64M$0x10000000 memmap=16M#0x8000000 memmap=8M!0x20000000");
        assert_eq!(t.apply_params(&p), Ok(true));
        // Reserving inside RAM punches a hole (higher type wins).
        assert_eq!(t.total_ram(), GIB - 64 * MIB - 16 * MIB - 8 * MIB);
        let r = ranges(&t);
        assert!(r.contains(&(0x1000_0000, 0x1400_0000, Reserved)));
        assert!(r.contains(&(0x800_0000, 0x900_0000, Acpi)));
        assert!(r.contains(&(0x2000_0000, 0x2080_0000, Pram)));
        assert!(r.contains(&(MIB, 0x800_0000, Ram)));

        // Adding RAM in a hole.
        let mut t = pc_layout(GIB);
        assert_eq!(t.apply_params(&parse("memmap=1G@0x200000000")), Ok(true));
        assert_eq!(t.total_ram(), 2 * GIB);
        assert_eq!(t.end_of_ram(), 0x2_4000_0000);

        // memmap=nn%ss-old+new retypes.
        let mut t = pc_layout(GIB);
        assert_eq!(
            t.apply_params(&parse("memmap=4M%16M-1+2,4M%32M+5,4M%48M-1")),
            Ok(true)
        );
        assert_eq!(t.total_ram(), GIB - 12 * MIB);
        assert!(ranges(&t).contains(&(16 * MIB, 20 * MIB, Reserved)));
        assert!(ranges(&t).contains(&(32 * MIB, 36 * MIB, Unusable)));
        assert_eq!(t.ram_in_range(48 * MIB, 52 * MIB), 0);
    }

    #[test]
    fn exactmap() {
        let mut t = pc_layout(4 * GIB);
        let p = parse("mem=1G memmap=exactmap memmap=640K@0,511M@1M memmap=1M$0x20000000");
        assert_eq!(t.apply_params(&p), Ok(true));
        assert_eq!(
            ranges(&t),
            [
                (0, 0xa0000, Ram),
                (MIB, 512 * MIB, Ram),
                (512 * MIB, 513 * MIB, Reserved),
            ]
        );
        // mem= after exactmap applies to the new map.
        let mut t = pc_layout(4 * GIB);
        let p = parse("memmap=exactmap memmap=640K@0,2G@1M mem=1G");
        assert_eq!(t.apply_params(&p), Ok(true));
        assert_eq!(t.total_ram(), 640 * KIB + GIB - MIB);

        // A user map of one range is rejected, as the kernel panics on it.
        let mut t = pc_layout(GIB);
        assert_eq!(
            t.apply_params(&parse("memmap=exactmap memmap=1G@0")),
            Err(E820Error::InvalidUserMap)
        );
    }

    #[test]
    fn highmem_boundary() {
        // Small machine: everything is lowmem unless highmem= asks otherwise.
        let t = pc_layout(512 * MIB);
        let max_pfn = t.end_of_ram() >> 12;
        assert_eq!(max_low_pfn_for_highmem(&t, None), max_pfn);
        assert_eq!(
            max_low_pfn_for_highmem(&t, Some(128 * MIB)),
            max_pfn - ((128 * MIB) >> 12)
        );
        // Would leave less than 64 MiB of lowmem, or is more than there is.
        assert_eq!(max_low_pfn_for_highmem(&t, Some(480 * MIB)), max_pfn);
        assert_eq!(max_low_pfn_for_highmem(&t, Some(4 * GIB)), max_pfn);
        // Big machine: the 896 MiB boundary.
        let t = pc_layout(4 * GIB);
        assert_eq!(max_low_pfn_for_highmem(&t, None), (896 * MIB) >> 12);
        assert_eq!(max_low_pfn_for_highmem(&t, Some(GIB)), (896 * MIB) >> 12);
    }

    fn check_numa(t: &E820Table, n: usize) -> Vec<(u64, u64)> {
        let (nodes, count) = numa_emulation(t, n);
        let nodes = nodes[..count].to_vec();
        assert!(count >= 1 && count <= n.min(MAX_NUMNODES));
        for w in nodes.windows(2) {
            assert_eq!(w[0].1, w[1].0, "contiguous");
        }
        let total: u64 = nodes.iter().map(|&(s, e)| t.ram_in_range(s, e)).sum();
        assert_eq!(total, t.total_ram(), "every byte of RAM is in a node");
        for &(s, e) in &nodes {
            assert!(s < e);
            assert_eq!(s % NUMA_EMU_ALIGN, 0);
            assert_eq!(e % NUMA_EMU_ALIGN, 0);
        }
        nodes
    }

    #[test]
    fn numa_split() {
        let t = pc_layout(4 * GIB);
        let nodes = check_numa(&t, 2);
        assert_eq!(nodes.len(), 2);
        for &(s, e) in &nodes {
            let share = t.ram_in_range(s, e);
            assert!(share.abs_diff(2 * GIB) <= NUMA_EMU_ALIGN, "{share:#x}");
        }
        let nodes = check_numa(&t, 4);
        assert_eq!(nodes.len(), 4);
        for &(s, e) in &nodes {
            assert!(t.ram_in_range(s, e).abs_diff(GIB) <= NUMA_EMU_ALIGN);
        }
        let t16 = pc_layout(16 * GIB);
        for n in [1, 3, 7, 8, 64, 100] {
            let nodes = check_numa(&t16, n);
            assert_eq!(nodes.len(), n.min(64));
        }
        // Too little RAM for that many 4 MiB nodes: fewer nodes.
        let small = pc_layout(16 * MIB);
        let nodes = check_numa(&small, 64);
        assert!(nodes.len() < 64);
        assert_eq!(numa_emulation(&E820Table::new(), 4).1, 0);
        assert_eq!(numa_emulation(&t, 0).1, 0);
    }
}
