//! Boot command line parsing, kernel style.
//!
//! The command line is split into `param[=value]` words the way the kernel's
//! `next_arg()` (lib/cmdline.c) does it: words are separated by white space,
//! double quotes group white space into one word (`param="a b"`), a quote
//! around the whole word or around the value is dropped, and hyphens and
//! underscores are equivalent in parameter names (`nr-cpus` is `nr_cpus`). A
//! bare `--` ends the kernel's parameters; what follows belongs to init.
//!
//! Numbers with size suffixes are read by [`memparse`], as the kernel's
//! `memparse()`.
//!
//! The result, [`BootParams`], is plain `Copy` data with fixed capacity: it does
//! not borrow from the command line. Parameters the parser does not know are
//! kept as written (`foo=bar`, or `foo` alone; truncated) in
//! [`BootParams::unknown`]; known parameters with a bad
//! value produce a kernel-style message in [`BootParams::errors`], for example
//! `Malformed early option 'mem'` for an early parameter, or
//! ``Booting kernel: `x' invalid for parameter `slub_min_order'`` for a normal
//! one. A malformed value never changes the corresponding field.
//!
//! The `mem=` and `memmap=` options are only recorded here; they are applied to
//! a physical memory map by [`crate::e820::E820Table::apply_params`].

use core::fmt::{self, Write};

use crate::e820::E820Type;

/// The longest command line kept by [`BootParams::cmdline`] is one byte less
/// (x86's `COMMAND_LINE_SIZE`, which counts the terminating NUL).
pub const COMMAND_LINE_SIZE: usize = 2048;
/// Capacity of [`BootParams::memmap`].
pub const MAX_MEMMAP: usize = 32;
/// How many unknown parameters are kept.
pub const MAX_UNKNOWN: usize = 16;
/// Bytes kept of each unknown parameter (`name=value`).
pub const UNKNOWN_LEN: usize = 64;
/// How many error messages are kept.
pub const MAX_ERRORS: usize = 16;
/// Bytes kept of each error message.
pub const ERROR_LEN: usize = 96;
/// How many cache-name filters of `slub_debug=` are kept.
pub const MAX_SLUB_FILTERS: usize = 8;
/// Bytes kept of each `slub_debug=` cache name.
pub const SLUB_FILTER_LEN: usize = 32;

// ---------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------

/// Reads an unsigned number the way the kernel's `simple_strtoull(s, &end, 0)`
/// does: `0x`/`0X` followed by a hex digit selects base 16, a leading `0` base 8,
/// anything else base 10. Returns `None` if no digit was consumed or the value
/// does not fit in 64 bits.
fn parse_ull(s: &str) -> Option<(u64, &str)> {
    let b = s.as_bytes();
    let (base, mut i) = match b {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16u32, 2usize),
        [b'0', ..] => (8, 0),
        _ => (10, 0),
    };
    let start = i;
    let mut v: u64 = 0;
    while let Some(d) = b.get(i).and_then(|&c| (c as char).to_digit(base)) {
        v = v.checked_mul(u64::from(base))?.checked_add(u64::from(d))?;
        i += 1;
    }
    if i == start {
        return None;
    }
    Some((v, &s[i..]))
}

/// Parses a size with an optional binary suffix, as the kernel's `memparse()`.
///
/// The number is read as by `simple_strtoull` with base 0 (`0x` hex, leading
/// `0` octal, otherwise decimal) and may be followed by one of `K`, `M`, `G`,
/// `T`, `P`, `E` (either case), each a further factor of 1024. Returns the value
/// and the unparsed rest of `s`.
///
/// Unlike the kernel, which returns 0 and leaves the pointer in place, this
/// returns `None` when there is no number at all; and it returns `None` when
/// the value overflows 64 bits, where the kernel silently wraps.
///
/// ```
/// # use kmem::cmdline::memparse;
/// assert_eq!(memparse("1M@16M"), Some((1 << 20, "@16M")));
/// ```
pub fn memparse(s: &str) -> Option<(u64, &str)> {
    let (v, rest) = parse_ull(s)?;
    let shift = match rest.as_bytes().first() {
        Some(b'K' | b'k') => 10,
        Some(b'M' | b'm') => 20,
        Some(b'G' | b'g') => 30,
        Some(b'T' | b't') => 40,
        Some(b'P' | b'p') => 50,
        Some(b'E' | b'e') => 60,
        _ => return Some((v, rest)),
    };
    let v = v.checked_mul(1u64 << shift)?;
    Some((v, &rest[1..]))
}

/// A whole-string number (base 0, no suffix).
fn parse_num(s: &str) -> Option<u64> {
    match parse_ull(s)? {
        (v, "") => Some(v),
        _ => None,
    }
}

/// A whole-string size with optional suffix.
fn parse_size(s: &str) -> Option<u64> {
    match memparse(s)? {
        (v, "") => Some(v),
        _ => None,
    }
}

/// The kernel's `kstrtobool()`: `1 y Y t T e E` and `on` are true,
/// `0 n N f F d D` and `off` are false; only the first one or two characters
/// are looked at.
fn kstrtobool(s: &str) -> Option<bool> {
    match s.as_bytes() {
        [b'1' | b'y' | b'Y' | b't' | b'T' | b'e' | b'E', ..] => Some(true),
        [b'0' | b'n' | b'N' | b'f' | b'F' | b'd' | b'D', ..] => Some(false),
        [b'o' | b'O', b'n' | b'N', ..] => Some(true),
        [b'o' | b'O', b'f' | b'F', ..] => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Fixed-capacity strings
// ---------------------------------------------------------------------------

/// A string of at most `N` bytes stored inline; longer input is truncated at a
/// character boundary.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FixedStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedStr<N> {
    const EMPTY: Self = Self { buf: [0; N], len: 0 };

    fn new(s: &str) -> Self {
        let mut f = Self::EMPTY;
        f.push(s);
        f
    }

    fn push(&mut self, s: &str) {
        let room = N - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
    }

    fn as_str(&self) -> &str {
        // Only whole characters are ever copied in, so this cannot fail.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Write for FixedStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s);
        Ok(())
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Debug-prints an iterator of strings as a list.
struct StrList<I>(I);

impl<'a, I: Iterator<Item = &'a str> + Clone> fmt::Debug for StrList<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.clone()).finish()
    }
}

// ---------------------------------------------------------------------------
// memmap=
// ---------------------------------------------------------------------------

/// What one `memmap=` item asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemmapKind {
    /// `memmap=exactmap`: forget the firmware's map, only the user's entries count.
    Exactmap,
    /// `memmap=nn[KMG]` without a position: same as `mem=nn`, RAM above `nn` is
    /// removed.
    Limit,
    /// `nn@ss` (RAM), `nn#ss` (ACPI data), `nn$ss` (reserved), `nn!ss`
    /// (protected/persistent, type 12): add a range of that type.
    Add(E820Type),
    /// `nn%ss-old+new`: retype (`-old+new`), add (`+new`), remove one type
    /// (`-old`) or remove everything (neither) in the range.
    Update {
        /// Type to replace or remove; `None` when `-old` was not given.
        from: Option<E820Type>,
        /// Type to set or add; `None` when `+new` was not given.
        to: Option<E820Type>,
    },
}

/// One item of a `memmap=` option, in command-line order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemmapEntry {
    /// What to do.
    pub kind: MemmapKind,
    /// `nn`: the size (for [`MemmapKind::Limit`], the limit).
    pub size: u64,
    /// `ss`: the start address (0 for `Exactmap` and `Limit`).
    pub start: u64,
}

impl MemmapEntry {
    const EMPTY: Self = Self {
        kind: MemmapKind::Exactmap,
        size: 0,
        start: 0,
    };
}

/// Parses one comma-separated item of `memmap=` (the kernel's
/// `parse_memmap_one`). Unlike the kernel, an item with trailing garbage is
/// rejected as a whole rather than applied and then reported.
fn parse_memmap_one(p: &str) -> Option<MemmapEntry> {
    if p.starts_with("exactmap") {
        return Some(MemmapEntry::EMPTY);
    }
    let (size, rest) = memparse(p)?;
    let mut chars = rest.chars();
    let op = chars.next();
    let after = chars.as_str();
    let entry = |kind, start| MemmapEntry { kind, size, start };
    match op {
        None => Some(entry(MemmapKind::Limit, 0)),
        Some(c @ ('@' | '#' | '$' | '!')) => {
            let start = parse_size(after)?;
            let kind = match c {
                '@' => E820Type::Ram,
                '#' => E820Type::Acpi,
                '$' => E820Type::Reserved,
                _ => E820Type::Pram,
            };
            Some(entry(MemmapKind::Add(kind), start))
        }
        Some('%') => {
            let (start, mut rest) = memparse(after)?;
            let mut from = None;
            let mut to = None;
            if let Some(r) = rest.strip_prefix('-') {
                let (t, r) = parse_ull(r)?;
                from = Some(E820Type::from_u32(u32::try_from(t).ok()?)?);
                rest = r;
            }
            if let Some(r) = rest.strip_prefix('+') {
                let (t, r) = parse_ull(r)?;
                to = Some(E820Type::from_u32(u32::try_from(t).ok()?)?);
                rest = r;
            }
            if !rest.is_empty() || (from.is_some() && from == to) {
                return None;
            }
            Some(entry(MemmapKind::Update { from, to }, start))
        }
        Some(_) => None,
    }
}

// ---------------------------------------------------------------------------
// slub_debug=
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
struct SlubFilter {
    name: FixedStr<SLUB_FILTER_LEN>,
    flags: u32,
}

impl SlubFilter {
    const EMPTY: Self = Self {
        name: FixedStr::EMPTY,
        flags: 0,
    };
}

/// The `slub_debug=` / `slab_debug=` option, parsed as mm/slub.c's
/// `setup_slub_debug()`.
///
/// Syntax: `slub_debug[=options[,cache,...][;options[,cache,...]]...]`.
/// `options` are letters (either case): `F` consistency checks, `Z` red zones,
/// `P` poisoning, `U` user tracking, `T` trace, `A` failslab, `O` do not debug
/// caches whose minimum order would grow, `-` clear the letters seen so far.
/// A block without cache names sets the global flags; a block with names sets
/// the flags for those caches only (a name ending in `*` matches by prefix). A
/// block that is only `,names` means the default flags (`FZPU`) for those
/// caches. No value at all means `FZPU` for every cache.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SlubDebug {
    /// Flags for every cache that no filter names (`slub_debug` in the kernel).
    pub flags: u32,
    /// `O` was given: turn debugging off for caches whose order it would raise.
    pub disable_higher_order: bool,
    filters: [SlubFilter; MAX_SLUB_FILTERS],
    nr_filters: usize,
}

impl SlubDebug {
    /// `F`: `SLAB_CONSISTENCY_CHECKS`.
    pub const CONSISTENCY_CHECKS: u32 = 0x0000_0100;
    /// `Z`: `SLAB_RED_ZONE`.
    pub const RED_ZONE: u32 = 0x0000_0400;
    /// `P`: `SLAB_POISON`.
    pub const POISON: u32 = 0x0000_0800;
    /// `U`: `SLAB_STORE_USER`.
    pub const STORE_USER: u32 = 0x0001_0000;
    /// `T`: `SLAB_TRACE`.
    pub const TRACE: u32 = 0x0020_0000;
    /// `A`: `SLAB_FAILSLAB`.
    pub const FAILSLAB: u32 = 0x0200_0000;
    /// `DEBUG_DEFAULT_FLAGS`: `F Z P U`.
    pub const DEFAULT_FLAGS: u32 =
        Self::CONSISTENCY_CHECKS | Self::RED_ZONE | Self::POISON | Self::STORE_USER;

    /// No debugging.
    pub const fn new() -> Self {
        Self {
            flags: 0,
            disable_higher_order: false,
            filters: [SlubFilter::EMPTY; MAX_SLUB_FILTERS],
            nr_filters: 0,
        }
    }

    /// The per-cache filters, in command-line order: `(cache name or prefix*,
    /// flags)`.
    pub fn filters(&self) -> impl Iterator<Item = (&str, u32)> + Clone + '_ {
        self.filters[..self.nr_filters]
            .iter()
            .map(|f| (f.name.as_str(), f.flags))
    }

    /// Whether any debugging is requested (the kernel's `slub_debug_enabled`).
    pub fn enabled(&self) -> bool {
        self.flags != 0 || self.nr_filters != 0
    }

    /// The debug flags for a cache called `name`, as `kmem_cache_flags()`: the
    /// flags of the first filter that matches, else the global flags.
    pub fn flags_for(&self, name: &str) -> u32 {
        for (pat, flags) in self.filters() {
            let hit = match pat.find('*') {
                Some(star) => name.starts_with(&pat[..star]),
                None => name == pat,
            };
            if hit {
                return flags;
            }
        }
        self.flags
    }

    fn letter(c: char) -> Option<u32> {
        Some(match c.to_ascii_lowercase() {
            'f' => Self::CONSISTENCY_CHECKS,
            'z' => Self::RED_ZONE,
            'p' => Self::POISON,
            'u' => Self::STORE_USER,
            't' => Self::TRACE,
            'a' => Self::FAILSLAB,
            _ => return None,
        })
    }

    /// Parses the value; problems are reported through `err`, as the kernel's
    /// `pr_err()`s (unknown letters are skipped, not fatal).
    fn parse(val: Option<&str>, mut err: impl FnMut(fmt::Arguments<'_>)) -> Self {
        let mut d = Self::new();
        let val = match val {
            Some(v) if !v.is_empty() => v,
            _ => {
                d.flags = Self::DEFAULT_FLAGS;
                return d;
            }
        };
        let mut global = Self::DEFAULT_FLAGS;
        let mut global_changed = false;
        let mut list_given = false;
        for block in val.split(';').filter(|b| !b.is_empty()) {
            let (opts, names) = match block.split_once(',') {
                Some((o, n)) => (o, Some(n)),
                None => (block, None),
            };
            let mut flags = 0;
            if opts.is_empty() && names.is_some() {
                flags = Self::DEFAULT_FLAGS;
            }
            for c in opts.chars() {
                match c {
                    '-' => flags = 0,
                    'o' | 'O' => d.disable_higher_order = true,
                    _ => match Self::letter(c) {
                        Some(bit) => flags |= bit,
                        None => err(format_args!("slab_debug option '{c}' unknown. skipped")),
                    },
                }
            }
            match names {
                None => {
                    global = flags;
                    global_changed = true;
                }
                Some(names) => {
                    list_given = true;
                    // An empty name can never match a cache; skip it.
                    for name in names.split(',').filter(|n| !n.is_empty()) {
                        if d.nr_filters == MAX_SLUB_FILTERS {
                            err(format_args!(
                                "slab_debug: too many cache names, ignoring '{name}'"
                            ));
                            continue;
                        }
                        d.filters[d.nr_filters] = SlubFilter {
                            name: FixedStr::new(name),
                            flags,
                        };
                        d.nr_filters += 1;
                    }
                }
            }
        }
        // A list of caches without a global block leaves the global flags as
        // they were: off (we are not built with CONFIG_SLUB_DEBUG_ON).
        if list_given && !global_changed {
            global = 0;
        }
        d.flags = global;
        d
    }
}

impl Default for SlubDebug {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SlubDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlubDebug")
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("disable_higher_order", &self.disable_higher_order)
            .field("filters", &&self.filters[..self.nr_filters])
            .finish()
    }
}

impl fmt::Debug for SlubFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:?}, {:#x})", self.name.as_str(), self.flags)
    }
}

// ---------------------------------------------------------------------------
// Boot parameters
// ---------------------------------------------------------------------------

/// `percpu_alloc=`: the first-chunk allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PercpuAlloc {
    /// `embed`: embed the first chunk in the linear mapping (bootmem).
    Embed,
    /// `page`: map the first chunk page by page.
    Page,
}

/// The boot parameters the memory subsystem cares about.
///
/// Fields are `None`/`false` when the parameter was absent (or malformed). When
/// a parameter is given twice, the last one wins, except `memmap=`, whose items
/// accumulate in order.
#[derive(Clone, Copy)]
pub struct BootParams {
    /// `mem=nn[KMG]`: physical RAM at or above `nn` is removed from the map
    /// (x86 `parse_memopt`: `e820__range_remove(nn, ULLONG_MAX - nn, RAM)`).
    /// `mem=0`, a value without digits and `mem=nopentium` (x86-32 only) are
    /// errors.
    pub mem: Option<u64>,
    /// How many [`memmap`](Self::memmap) items came before the (last) `mem=`:
    /// the kernel applies both in command-line order, and `memmap=exactmap`
    /// after `mem=` undoes the limit.
    pub mem_pos: usize,
    /// `memmap=` items in command-line order; the first
    /// [`memmap_count`](Self::memmap_count) are valid.
    pub memmap: [MemmapEntry; MAX_MEMMAP],
    /// Number of valid entries in [`memmap`](Self::memmap).
    pub memmap_count: usize,
    /// `nr_cpus=N` (N > 0; `nr_cpus=0` is ignored as by the kernel).
    pub nr_cpus: Option<usize>,
    /// `numa=off`.
    pub numa_off: bool,
    /// `numa=fake=N`: emulate N nodes (N > 0).
    pub numa_fake: Option<usize>,
    /// `numa=fake=<size>[MG]`: emulate nodes of this size.
    pub numa_fake_size: Option<u64>,
    /// `highmem=nn[KMG]`: size of highmem (x86-32).
    pub highmem: Option<u64>,
    /// `min_free_kbytes=` (a sysctl, accepted at boot).
    pub min_free_kbytes: Option<u64>,
    /// `watermark_scale_factor=` (a sysctl, accepted at boot; 1..=3000).
    pub watermark_scale_factor: Option<u32>,
    /// `slub_debug` / `slab_debug`.
    pub slub_debug: Option<SlubDebug>,
    /// `slub_min_order=` / `slab_min_order=`.
    pub slub_min_order: Option<u32>,
    /// `slub_max_order=` / `slab_max_order=`.
    pub slub_max_order: Option<u32>,
    /// `slub_min_objects=` / `slab_min_objects=`.
    pub slub_min_objects: Option<u32>,
    /// `init_on_alloc=` (kstrtobool).
    pub init_on_alloc: Option<bool>,
    /// `init_on_free=` (kstrtobool).
    pub init_on_free: Option<bool>,
    /// `page_alloc.shuffle=` (kstrtobool; bare `page_alloc.shuffle` is true).
    pub page_alloc_shuffle: Option<bool>,
    /// `quiet`.
    pub quiet: bool,
    /// `loglevel=`.
    pub loglevel: Option<u32>,
    /// `oom_wait_ms=` (kmem's own): how long a sleeping allocation waits for
    /// memory before it fails.
    pub oom_wait_ms: Option<u64>,
    /// `kswapd=on|off` (kmem's own): whether the hosted machine runs kswapd threads.
    pub kswapd: Option<bool>,
    /// `kmem.rseq=on|off` (kmem's own): whether the slab fast paths use
    /// restartable sequences where the platform offers them (default on).
    pub kmem_rseq: Option<bool>,
    /// `kmem.sheaves=on|off` (kmem's own): whether caches get per-CPU
    /// sheaves of free objects in rseq mode (default on; `slab/sheaf.rs`).
    pub kmem_sheaves: Option<bool>,
    /// `kmem.kmalloc_min_objects=N` (kmem's own): `slub_min_objects` for the
    /// kmalloc caches alone (`SLAB_KMALLOC`), the other caches keeping
    /// `slub_min_objects` or the kernel's default (libkmalloc boots with 128).
    pub kmem_kmalloc_min_objects: Option<u32>,
    /// `kmem.kmalloc_lazy=on|off` (kmem's own): create the `dma-kmalloc-N`
    /// and `kmalloc-rcl-N` caches on their first use instead of at boot
    /// (default off; libkmalloc boots with it on).
    pub kmem_kmalloc_lazy: Option<bool>,
    /// `kmem.kmalloc_freeptr_start=on|off` (kmem's own): the kmalloc caches
    /// (`SLAB_KMALLOC`) keep a free object's free pointer in its first word
    /// instead of its middle word, where the object's first cache line is
    /// the one its user last touched (default off, the kernel's layout;
    /// libkmalloc boots with it on).
    pub kmem_kmalloc_freeptr_start: Option<bool>,
    /// `kmem.pcp_hot=on|off` (kmem's own): whether the page allocator keeps
    /// per-CPU hot arrays of order-0 pages in rseq mode (default on;
    /// `page_alloc/pcp_hot.rs`).
    pub kmem_pcp_hot: Option<bool>,
    /// `kmem.lowmem=nn[KMG]` (kmem's own, at least 64 MiB): x86-32's zone
    /// layout (DMA, Normal, HighMem) with lowmem ending here instead of at
    /// 896 MiB; RAM above it is HighMem (`e820::max_low_pfn`).
    pub kmem_lowmem: Option<u64>,
    /// `kmem.private_lowmem=on|off` (kmem's own; hosted machines with a
    /// HighMem zone): lowmem is private anonymous memory of the process, so
    /// a forked child gets it copy-on-write, and only HighMem can be mapped
    /// a second time (vmalloc, kmap); default off, libkmalloc boots with it
    /// on (`kmem-hosted/src/ram.rs`).
    pub kmem_private_lowmem: Option<bool>,
    /// `vmalloc=nn[KMG]`: size of the vmalloc area.
    pub vmalloc: Option<u64>,
    /// `percpu_alloc=embed|page`.
    pub percpu_alloc: Option<PercpuAlloc>,
    /// Byte offset in the command line where init's arguments start (after a
    /// bare `--`), if there was one.
    pub init_args_offset: Option<usize>,
    cmdline: FixedStr<{ COMMAND_LINE_SIZE - 1 }>,
    unknown: [FixedStr<UNKNOWN_LEN>; MAX_UNKNOWN],
    nr_unknown: usize,
    errors: [FixedStr<ERROR_LEN>; MAX_ERRORS],
    nr_errors: usize,
}

impl BootParams {
    /// No parameters given.
    pub const fn new() -> Self {
        Self {
            mem: None,
            mem_pos: 0,
            memmap: [MemmapEntry::EMPTY; MAX_MEMMAP],
            memmap_count: 0,
            nr_cpus: None,
            numa_off: false,
            numa_fake: None,
            numa_fake_size: None,
            highmem: None,
            min_free_kbytes: None,
            watermark_scale_factor: None,
            slub_debug: None,
            slub_min_order: None,
            slub_max_order: None,
            slub_min_objects: None,
            init_on_alloc: None,
            init_on_free: None,
            page_alloc_shuffle: None,
            quiet: false,
            loglevel: None,
            oom_wait_ms: None,
            kswapd: None,
            kmem_rseq: None,
            kmem_sheaves: None,
            kmem_kmalloc_min_objects: None,
            kmem_kmalloc_lazy: None,
            kmem_kmalloc_freeptr_start: None,
            kmem_pcp_hot: None,
            kmem_lowmem: None,
            kmem_private_lowmem: None,
            vmalloc: None,
            percpu_alloc: None,
            init_args_offset: None,
            cmdline: FixedStr::EMPTY,
            unknown: [FixedStr::EMPTY; MAX_UNKNOWN],
            nr_unknown: 0,
            errors: [FixedStr::EMPTY; MAX_ERRORS],
            nr_errors: 0,
        }
    }

    /// The command line that was parsed, as the kernel's `boot_command_line`
    /// (truncated to `COMMAND_LINE_SIZE - 1` bytes), for `Command line: ...`.
    pub fn cmdline(&self) -> &str {
        self.cmdline.as_str()
    }

    /// The valid `memmap=` items, in command-line order.
    pub fn memmap(&self) -> &[MemmapEntry] {
        &self.memmap[..self.memmap_count]
    }

    /// Parameters that were not recognised, as written (`foo=bar`, or `foo`;
    /// the kernel passes these to init, in its environment or its arguments),
    /// in order; at most [`MAX_UNKNOWN`], each truncated to [`UNKNOWN_LEN`]
    /// bytes.
    pub fn unknown(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        self.unknown[..self.nr_unknown].iter().map(FixedStr::as_str)
    }

    /// Messages about known parameters with bad values, kernel style, in order;
    /// at most [`MAX_ERRORS`], each truncated to [`ERROR_LEN`] bytes.
    pub fn errors(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        self.errors[..self.nr_errors].iter().map(FixedStr::as_str)
    }

    fn push_unknown(&mut self, name: &str, val: Option<&str>) {
        if self.nr_unknown < MAX_UNKNOWN {
            let mut s = FixedStr::EMPTY;
            // FixedStr's write_str never fails.
            let _ = match val {
                Some(v) => write!(s, "{name}={v}"),
                None => s.write_str(name),
            };
            self.unknown[self.nr_unknown] = s;
            self.nr_unknown += 1;
        }
    }

    fn push_error(&mut self, args: fmt::Arguments<'_>) {
        if self.nr_errors < MAX_ERRORS {
            let mut s = FixedStr::EMPTY;
            // FixedStr's write_str never fails.
            let _ = s.write_fmt(args);
            self.errors[self.nr_errors] = s;
            self.nr_errors += 1;
        }
    }

    /// A malformed early parameter (`do_early_param`'s message).
    fn malformed_early(&mut self, param: &str) {
        self.push_error(format_args!("Malformed early option '{param}'"));
    }

    /// A malformed normal parameter (`parse_args`' message).
    fn invalid(&mut self, param: &str, val: Option<&str>) {
        let val = val.unwrap_or("");
        self.push_error(format_args!(
            "Booting kernel: `{val}' invalid for parameter `{param}'"
        ));
    }

    // Out of line: an empty command line (the usual case of a program
    // that preloads the malloc override) then runs none of this code, so
    // none of it is made resident.
    #[inline(never)]
    fn handle(&mut self, param: &str, val: Option<&str>) {
        let is = |name: &str| parameq(param, name);
        if is("mem") {
            self.handle_mem(param, val);
        } else if is("memmap") {
            self.handle_memmap(param, val);
        } else if is("nr_cpus") {
            match val.and_then(parse_num) {
                Some(0) => {}
                Some(n) => match usize::try_from(n) {
                    Ok(n) => self.nr_cpus = Some(n),
                    Err(_) => self.malformed_early(param),
                },
                None => self.malformed_early(param),
            }
        } else if is("numa") {
            self.handle_numa(param, val);
        } else if is("highmem") {
            self.set_early(param, val.and_then(parse_size), |p, v| p.highmem = Some(v));
        } else if is("vmalloc") {
            self.set_early(param, val.and_then(parse_size), |p, v| p.vmalloc = Some(v));
        } else if is("init_on_alloc") {
            self.set_early(param, val.and_then(kstrtobool), |p, v| p.init_on_alloc = Some(v));
        } else if is("init_on_free") {
            self.set_early(param, val.and_then(kstrtobool), |p, v| p.init_on_free = Some(v));
        } else if is("loglevel") {
            let v = val.and_then(parse_num).and_then(|v| u32::try_from(v).ok());
            self.set_early(param, v, |p, v| p.loglevel = Some(v));
        } else if is("quiet") {
            self.quiet = true;
        } else if is("percpu_alloc") {
            match val {
                None => self.malformed_early(param),
                Some("embed") => self.percpu_alloc = Some(PercpuAlloc::Embed),
                Some("page") => self.percpu_alloc = Some(PercpuAlloc::Page),
                Some(v) => self.push_error(format_args!("percpu: unknown allocator {v} specified")),
            }
        } else if is("slub_debug") || is("slab_debug") {
            let mut errs: [FixedStr<ERROR_LEN>; 4] = [FixedStr::EMPTY; 4];
            let mut n = 0;
            let d = SlubDebug::parse(val, |args| {
                if n < errs.len() {
                    let _ = errs[n].write_fmt(args);
                    n += 1;
                }
            });
            for e in &errs[..n] {
                self.push_error(format_args!("{}", e.as_str()));
            }
            self.slub_debug = Some(d);
        } else if is("slub_min_order") || is("slab_min_order") {
            let v = val.and_then(parse_num).and_then(|v| u32::try_from(v).ok());
            self.set_late(param, val, v, |p, v| p.slub_min_order = Some(v));
        } else if is("slub_max_order") || is("slab_max_order") {
            let v = val.and_then(parse_num).and_then(|v| u32::try_from(v).ok());
            self.set_late(param, val, v, |p, v| p.slub_max_order = Some(v));
        } else if is("slub_min_objects") || is("slab_min_objects") {
            let v = val.and_then(parse_num).and_then(|v| u32::try_from(v).ok());
            self.set_late(param, val, v, |p, v| p.slub_min_objects = Some(v));
        } else if is("min_free_kbytes") {
            let v = val.and_then(parse_num);
            self.set_late(param, val, v, |p, v| p.min_free_kbytes = Some(v));
        } else if is("watermark_scale_factor") {
            let v = val
                .and_then(parse_num)
                .filter(|v| (1..=3000).contains(v))
                .and_then(|v| u32::try_from(v).ok());
            self.set_late(param, val, v, |p, v| p.watermark_scale_factor = Some(v));
        } else if is("oom_wait_ms") {
            let v = val.and_then(parse_num);
            self.set_late(param, val, v, |p, v| p.oom_wait_ms = Some(v));
        } else if is("kswapd") {
            let v = val.and_then(kstrtobool);
            self.set_late(param, val, v, |p, v| p.kswapd = Some(v));
        } else if is("kmem.rseq") {
            let v = val.and_then(kstrtobool);
            self.set_late(param, val, v, |p, v| p.kmem_rseq = Some(v));
        } else if is("kmem.kmalloc_min_objects") {
            let v = val.and_then(parse_num).and_then(|v| u32::try_from(v).ok());
            self.set_late(param, val, v, |p, v| p.kmem_kmalloc_min_objects = Some(v));
        } else if is("kmem.kmalloc_lazy") {
            let v = val.and_then(kstrtobool);
            self.set_late(param, val, v, |p, v| p.kmem_kmalloc_lazy = Some(v));
        } else if is("kmem.kmalloc_freeptr_start") {
            let v = val.and_then(kstrtobool);
            self.set_late(param, val, v, |p, v| p.kmem_kmalloc_freeptr_start = Some(v));
        } else if is("kmem.sheaves") {
            let v = val.and_then(kstrtobool);
            self.set_late(param, val, v, |p, v| p.kmem_sheaves = Some(v));
        } else if is("kmem.pcp_hot") {
            let v = val.and_then(kstrtobool);
            self.set_late(param, val, v, |p, v| p.kmem_pcp_hot = Some(v));
        } else if is("kmem.lowmem") {
            let v = val.and_then(parse_size).filter(|&v| v >= crate::e820::MIN_LOWMEM);
            self.set_late(param, val, v, |p, v| p.kmem_lowmem = Some(v));
        } else if is("kmem.private_lowmem") {
            let v = val.and_then(kstrtobool);
            self.set_late(param, val, v, |p, v| p.kmem_private_lowmem = Some(v));
        } else if is("page_alloc.shuffle") {
            let v = match val {
                None => Some(true),
                Some(v) => kstrtobool(v),
            };
            self.set_late(param, val, v, |p, v| p.page_alloc_shuffle = Some(v));
        } else {
            self.push_unknown(param, val);
        }
    }

    fn set_early<T>(&mut self, param: &str, v: Option<T>, set: impl FnOnce(&mut Self, T)) {
        match v {
            Some(v) => set(self, v),
            None => self.malformed_early(param),
        }
    }

    fn set_late<T>(&mut self, param: &str, val: Option<&str>, v: Option<T>, set: impl FnOnce(&mut Self, T)) {
        match v {
            Some(v) => set(self, v),
            None => self.invalid(param, val),
        }
    }

    fn handle_mem(&mut self, param: &str, val: Option<&str>) {
        match val {
            Some("nopentium") => {
                // Only meaningful on x86-32: the kernel warns and fails.
                self.push_error(format_args!("mem=nopentium ignored! (only supported on x86_32)"));
                self.malformed_early(param);
            }
            Some(v) => match parse_size(v) {
                // "Don't remove all memory when getting mem={invalid}".
                Some(0) | None => self.malformed_early(param),
                Some(n) => {
                    self.mem = Some(n);
                    self.mem_pos = self.memmap_count;
                }
            },
            None => self.malformed_early(param),
        }
    }

    fn handle_memmap(&mut self, param: &str, val: Option<&str>) {
        let Some(val) = val else {
            self.malformed_early(param);
            return;
        };
        for item in val.split(',') {
            match parse_memmap_one(item) {
                Some(e) if self.memmap_count < MAX_MEMMAP => {
                    self.memmap[self.memmap_count] = e;
                    self.memmap_count += 1;
                }
                Some(_) => self.push_error(format_args!("memmap: too many entries, ignoring '{item}'")),
                None => self.malformed_early(param),
            }
        }
    }

    fn handle_numa(&mut self, param: &str, val: Option<&str>) {
        let Some(val) = val else {
            self.malformed_early(param);
            return;
        };
        // numa_setup() looks at prefixes and accepts what it does not know.
        if val.starts_with("off") {
            self.numa_off = true;
        }
        if let Some(fake) = val.strip_prefix("fake=") {
            // `fake=N` asks for N nodes, `fake=<size>[MG]` for nodes of a size.
            if let Some(n) = parse_num(fake) {
                match usize::try_from(n) {
                    Ok(n) if n > 0 => self.numa_fake = Some(n),
                    _ => self.malformed_early(param),
                }
            } else {
                match parse_size(fake) {
                    Some(size) if size > 0 => self.numa_fake_size = Some(size),
                    _ => self.malformed_early(param),
                }
            }
        }
    }
}

impl Default for BootParams {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for BootParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootParams")
            .field("mem", &self.mem)
            .field("mem_pos", &self.mem_pos)
            .field("memmap", &self.memmap())
            .field("nr_cpus", &self.nr_cpus)
            .field("numa_off", &self.numa_off)
            .field("numa_fake", &self.numa_fake)
            .field("numa_fake_size", &self.numa_fake_size)
            .field("highmem", &self.highmem)
            .field("min_free_kbytes", &self.min_free_kbytes)
            .field("watermark_scale_factor", &self.watermark_scale_factor)
            .field("slub_debug", &self.slub_debug)
            .field("slub_min_order", &self.slub_min_order)
            .field("slub_max_order", &self.slub_max_order)
            .field("slub_min_objects", &self.slub_min_objects)
            .field("init_on_alloc", &self.init_on_alloc)
            .field("init_on_free", &self.init_on_free)
            .field("page_alloc_shuffle", &self.page_alloc_shuffle)
            .field("quiet", &self.quiet)
            .field("loglevel", &self.loglevel)
            .field("oom_wait_ms", &self.oom_wait_ms)
            .field("kswapd", &self.kswapd)
            .field("kmem_rseq", &self.kmem_rseq)
            .field("kmem_sheaves", &self.kmem_sheaves)
            .field("kmem_kmalloc_min_objects", &self.kmem_kmalloc_min_objects)
            .field("kmem_kmalloc_lazy", &self.kmem_kmalloc_lazy)
            .field("kmem_kmalloc_freeptr_start", &self.kmem_kmalloc_freeptr_start)
            .field("kmem_pcp_hot", &self.kmem_pcp_hot)
            .field("kmem_lowmem", &self.kmem_lowmem)
            .field("kmem_private_lowmem", &self.kmem_private_lowmem)
            .field("vmalloc", &self.vmalloc)
            .field("percpu_alloc", &self.percpu_alloc)
            .field("init_args_offset", &self.init_args_offset)
            .field("cmdline", &self.cmdline())
            .field("unknown", &StrList(self.unknown()))
            .field("errors", &StrList(self.errors()))
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Splitting
// ---------------------------------------------------------------------------

/// The kernel's `isspace()` on ASCII.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn skip_spaces(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8))
}

/// Parameter names compare with `-` and `_` equivalent (`parameq`).
fn parameq(a: &str, b: &str) -> bool {
    let norm = |c: u8| if c == b'-' { b'_' } else { c };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

/// Splits off the first word of `args` (which must not start with white
/// space), as the kernel's `next_arg()`: returns the parameter name, the value
/// if there was an `=`, and the rest with leading white space skipped.
fn next_arg(args: &str) -> (&str, Option<&str>, &str) {
    let (quoted, s) = match args.strip_prefix('"') {
        Some(s) => (true, s),
        None => (false, args),
    };
    let b = s.as_bytes();
    let mut in_quote = quoted;
    // Like the kernel, an `=` at offset 0 does not count as one.
    let mut equals = 0;
    let mut i = 0;
    while i < b.len() {
        if is_space(b[i]) && !in_quote {
            break;
        }
        if equals == 0 && b[i] == b'=' {
            equals = i;
        }
        if b[i] == b'"' {
            in_quote = !in_quote;
        }
        i += 1;
    }
    // All indices below sit next to ASCII bytes, so they are char boundaries.
    let ends_in_quote = i > 0 && b[i - 1] == b'"';
    let (param, val) = if equals == 0 {
        let end = if quoted && ends_in_quote { i - 1 } else { i };
        (&s[..end], None)
    } else {
        let mut vs = equals + 1;
        let mut ve = i;
        if vs < i && b[vs] == b'"' {
            vs += 1;
            if ends_in_quote {
                ve = i - 1;
            }
        }
        if quoted && ends_in_quote {
            ve = i - 1;
        }
        let ve = ve.max(vs);
        (&s[..equals], Some(&s[vs..ve]))
    };
    // Skip the separating white space character, then any more.
    let next = if i < b.len() { i + 1 } else { i };
    (param, val, skip_spaces(&s[next..]))
}

/// Parses a kernel command line.
///
/// ```
/// # use kmem::cmdline::parse;
/// let p = parse("mem=256M nr_cpus=4 foo=bar");
/// assert_eq!(p.mem, Some(256 << 20));
/// assert_eq!(p.nr_cpus, Some(4));
/// assert!(p.unknown().eq(["foo=bar"]));
/// ```
pub fn parse(cmdline: &str) -> BootParams {
    let mut p = BootParams::new();
    parse_into(&mut p, cmdline);
    p
}

impl BootParams {
    /// Parse `more` as if it followed the command line parsed so far, into
    /// these parameters (not reset first; the recorded command line stays
    /// as it was): for a host that adds defaults of its own.
    pub fn parse_more(&mut self, more: &str) {
        let mut rest = skip_spaces(more);
        while !rest.is_empty() {
            let (param, val, next) = next_arg(rest);
            self.handle(param, val);
            rest = next;
        }
    }
}

/// [`parse`] into `p`, which is reset first: for a caller that keeps the
/// parameters somewhere other than its stack (they are over 6 KiB).
pub fn parse_into(p: &mut BootParams, cmdline: &str) {
    *p = BootParams::new();
    p.cmdline = FixedStr::new(cmdline);
    let mut rest = skip_spaces(cmdline);
    while !rest.is_empty() {
        let (param, val, next) = next_arg(rest);
        if val.is_none() && param == "--" {
            p.init_args_offset = Some(cmdline.len() - next.len());
            break;
        }
        p.handle(param, val);
        rest = next;
    }
}

/// The part of `cmdline` after a bare `--`, which the kernel hands to init.
pub fn init_args(cmdline: &str) -> Option<&str> {
    let off = parse_split(cmdline)?;
    cmdline.get(off..)
}

fn parse_split(cmdline: &str) -> Option<usize> {
    let mut rest = skip_spaces(cmdline);
    while !rest.is_empty() {
        let (param, val, next) = next_arg(rest);
        if val.is_none() && param == "--" {
            return Some(cmdline.len() - next.len());
        }
        rest = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn unknown(p: &BootParams) -> Vec<&str> {
        p.unknown().collect()
    }
    fn errors(p: &BootParams) -> Vec<&str> {
        p.errors().collect()
    }

    #[test]
    fn memparse_cases() {
        assert_eq!(memparse("4G"), Some((4 << 30, "")));
        assert_eq!(memparse("0x1000"), Some((0x1000, "")));
        assert_eq!(memparse("512k"), Some((512 << 10, "")));
        assert_eq!(memparse("512K"), Some((512 << 10, "")));
        assert_eq!(memparse("1M@16M"), Some((1 << 20, "@16M")));
        let (_, rest) = memparse("1M@16M").unwrap();
        assert_eq!(memparse(&rest[1..]), Some((16 << 20, "")));
        assert_eq!(memparse("010"), Some((8, "")));
        assert_eq!(memparse("0"), Some((0, "")));
        assert_eq!(memparse("08"), Some((0, "8")));
        assert_eq!(memparse("0x"), Some((0, "x")));
        assert_eq!(memparse("0xg"), Some((0, "xg")));
        assert_eq!(memparse("0X1fM"), Some((0x1f << 20, "")));
        assert_eq!(memparse("2t"), Some((2 << 40, "")));
        assert_eq!(memparse("1p"), Some((1 << 50, "")));
        assert_eq!(memparse("1E"), Some((1 << 60, "")));
        assert_eq!(memparse("16E"), None, "overflow");
        assert_eq!(memparse("99999999999999999999"), None, "overflow");
        assert_eq!(memparse("foo"), None);
        assert_eq!(memparse(""), None);
        assert_eq!(memparse("K"), None);
        assert_eq!(memparse("12x"), Some((12, "x")));
        assert_eq!(memparse("3MB"), Some((3 << 20, "B")));
    }

    #[test]
    fn full_line() {
        let p = parse("mem=256M nr_cpus=4 slub_debug=FZPU memmap=64M$0x10000000 numa=fake=2 foo=bar baz");
        assert_eq!(p.mem, Some(256 << 20));
        assert_eq!(p.mem_pos, 0);
        assert_eq!(p.nr_cpus, Some(4));
        let d = p.slub_debug.unwrap();
        assert_eq!(d.flags, SlubDebug::DEFAULT_FLAGS);
        assert_eq!(d.filters().count(), 0);
        assert_eq!(
            p.memmap(),
            &[MemmapEntry {
                kind: MemmapKind::Add(E820Type::Reserved),
                size: 64 << 20,
                start: 0x1000_0000
            }]
        );
        assert_eq!(p.numa_fake, Some(2));
        assert_eq!(unknown(&p), ["foo=bar", "baz"]);
        assert!(errors(&p).is_empty(), "{:?}", errors(&p));
        assert_eq!(p.init_args_offset, None);
        assert!(p.cmdline().starts_with("mem=256M nr_cpus=4 "));
        let long = "x".repeat(3000);
        assert_eq!(parse(&long).cmdline().len(), COMMAND_LINE_SIZE - 1);
    }

    #[test]
    fn bad_values_reported() {
        let p = parse("mem=foo mem=0 nr_cpus=x init_on_alloc=maybe slub_min_order=q memmap=1G%x highmem");
        assert_eq!(p.mem, None);
        assert_eq!(p.nr_cpus, None);
        assert_eq!(p.init_on_alloc, None);
        assert_eq!(p.slub_min_order, None);
        assert_eq!(p.memmap_count, 0);
        assert_eq!(p.highmem, None);
        assert_eq!(
            errors(&p),
            [
                "Malformed early option 'mem'",
                "Malformed early option 'mem'",
                "Malformed early option 'nr_cpus'",
                "Malformed early option 'init_on_alloc'",
                "Booting kernel: `q' invalid for parameter `slub_min_order'",
                "Malformed early option 'memmap'",
                "Malformed early option 'highmem'",
            ]
        );
        assert!(unknown(&p).is_empty());

        let p = parse("mem=nopentium percpu_alloc=lpage watermark_scale_factor=0 slub_debug=FQ");
        assert_eq!(
            errors(&p),
            [
                "mem=nopentium ignored! (only supported on x86_32)",
                "Malformed early option 'mem'",
                "percpu: unknown allocator lpage specified",
                "Booting kernel: `0' invalid for parameter `watermark_scale_factor'",
                "slab_debug option 'Q' unknown. skipped",
            ]
        );
        assert_eq!(p.slub_debug.unwrap().flags, SlubDebug::CONSISTENCY_CHECKS);
    }

    #[test]
    fn quoting() {
        let p = parse(r#"foo="a b c" mem="1G" "bar=x y" "nr_cpus=2" baz="#);
        assert_eq!(unknown(&p), ["foo=a b c", "bar=x y", "baz="]);
        assert_eq!(p.mem, Some(1 << 30));
        assert_eq!(p.nr_cpus, Some(2));
        assert!(errors(&p).is_empty());

        assert_eq!(next_arg(r#"a="b c"  d"#), ("a", Some("b c"), "d"));
        assert_eq!(next_arg(r#""x y""#), ("x y", None, ""));
        assert_eq!(next_arg(r#"a=""#), ("a", Some(""), ""));
        assert_eq!(next_arg(r#"a="b c"#), ("a", Some("b c"), ""));
        assert_eq!(next_arg("=x"), ("=x", None, ""));
        assert_eq!(next_arg("a=b=c\td"), ("a", Some("b=c"), "d"));
    }

    #[test]
    fn separator_and_spacing() {
        let line = "  quiet   loglevel=7 -- mem=1G init=/bin/sh";
        let p = parse(line);
        assert!(p.quiet);
        assert_eq!(p.loglevel, Some(7));
        assert_eq!(p.mem, None, "after -- belongs to init");
        let off = p.init_args_offset.unwrap();
        assert_eq!(&line[off..], "mem=1G init=/bin/sh");
        assert_eq!(init_args(line), Some("mem=1G init=/bin/sh"));
        assert_eq!(init_args("quiet"), None);
        // `--=x` is a parameter, not the separator.
        assert_eq!(unknown(&parse("--=x y")), ["--=x", "y"]);
        assert!(parse("").unknown().next().is_none());
    }

    #[test]
    fn hyphen_underscore_equivalent() {
        let p = parse("nr-cpus=3 slab-min-order=1 init_on-free=on page_alloc.shuffle");
        assert_eq!(p.nr_cpus, Some(3));
        assert_eq!(p.slub_min_order, Some(1));
        assert_eq!(p.init_on_free, Some(true));
        assert_eq!(p.page_alloc_shuffle, Some(true));
    }

    #[test]
    fn memmap_items() {
        let p = parse("memmap=exactmap,640K@0,1G@1M memmap=64M#0x30000000,16M!4G memmap=2G memmap=1M%2M-1+2,1M%3M+4,1M%4M-3,1M%5M");
        let e = p.memmap();
        assert_eq!(e.len(), 10);
        assert_eq!(e[0].kind, MemmapKind::Exactmap);
        assert_eq!(
            e[1],
            MemmapEntry {
                kind: MemmapKind::Add(E820Type::Ram),
                size: 640 << 10,
                start: 0
            }
        );
        assert_eq!((e[2].size, e[2].start), (1 << 30, 1 << 20));
        assert_eq!(e[3].kind, MemmapKind::Add(E820Type::Acpi));
        assert_eq!(e[4].kind, MemmapKind::Add(E820Type::Pram));
        assert_eq!(e[4].start, 4 << 30);
        assert_eq!(e[5].kind, MemmapKind::Limit);
        assert_eq!(e[5].size, 2 << 30);
        assert_eq!(
            e[6].kind,
            MemmapKind::Update {
                from: Some(E820Type::Ram),
                to: Some(E820Type::Reserved)
            }
        );
        assert_eq!(e[6].start, 2 << 20);
        assert_eq!(
            e[7].kind,
            MemmapKind::Update {
                from: None,
                to: Some(E820Type::Nvs)
            }
        );
        assert_eq!(
            e[8].kind,
            MemmapKind::Update {
                from: Some(E820Type::Acpi),
                to: None
            }
        );
        assert_eq!(e[9].kind, MemmapKind::Update { from: None, to: None });
        assert!(errors(&p).is_empty(), "{:?}", errors(&p));
    }

    #[test]
    fn mem_position_recorded() {
        let p = parse("memmap=exactmap mem=1G memmap=1G@0");
        assert_eq!(p.mem, Some(1 << 30));
        assert_eq!(p.mem_pos, 1);
        let bad = parse("memmap=1G@ memmap=1G@0x1000junk memmap=1G% memmap=1G%0-99 memmap=");
        assert_eq!(bad.memmap_count, 0);
        assert_eq!(bad.errors().count(), 5);
    }

    #[test]
    fn numa_forms() {
        let p = parse("numa=off");
        assert!(p.numa_off);
        assert_eq!(p.numa_fake, None);
        let p = parse("numa=fake=8");
        assert_eq!(p.numa_fake, Some(8));
        let p = parse("numa=fake=512M");
        assert_eq!((p.numa_fake, p.numa_fake_size), (None, Some(512 << 20)));
        let p = parse("numa=fake=0");
        assert_eq!(errors(&p), ["Malformed early option 'numa'"]);
        let p = parse("numa=noacpi numa");
        assert_eq!(errors(&p), ["Malformed early option 'numa'"]);
    }

    #[test]
    fn slub_debug_syntax() {
        let p = parse("slub_debug");
        let d = p.slub_debug.unwrap();
        assert_eq!(d.flags, SlubDebug::DEFAULT_FLAGS);
        assert!(d.enabled());

        let d = parse("slab_debug=-").slub_debug.unwrap();
        assert_eq!(d.flags, 0);
        assert!(!d.enabled());

        let d = parse("slub_debug=FZ,kmalloc-*,dentry").slub_debug.unwrap();
        assert_eq!(d.flags, 0, "a list alone leaves global debugging off");
        let want = SlubDebug::CONSISTENCY_CHECKS | SlubDebug::RED_ZONE;
        assert_eq!(
            d.filters().collect::<Vec<_>>(),
            [("kmalloc-*", want), ("dentry", want)]
        );
        assert_eq!(d.flags_for("kmalloc-64"), want);
        assert_eq!(d.flags_for("dentry"), want);
        assert_eq!(d.flags_for("dentry2"), 0);
        assert_eq!(d.flags_for("inode_cache"), 0);

        let d = parse("slub_debug=pu;,vma;T,inode_cache;O").slub_debug.unwrap();
        assert_eq!(d.flags, 0, "last global block was just O");
        assert!(d.disable_higher_order);
        assert_eq!(d.flags_for("vma"), SlubDebug::DEFAULT_FLAGS);
        assert_eq!(d.flags_for("inode_cache"), SlubDebug::TRACE);
        let d = parse("slub_debug=U-A;P,dentry").slub_debug.unwrap();
        assert_eq!(d.flags, SlubDebug::FAILSLAB);
        assert_eq!(d.flags_for("dentry"), SlubDebug::POISON);

        let long = "slub_debug=F,a,b,c,d,e,f,g,h,i,a_cache_name_that_is_longer_than_32_bytes";
        let p = parse(long);
        let d = p.slub_debug.unwrap();
        assert_eq!(d.filters().count(), MAX_SLUB_FILTERS);
        assert_eq!(p.errors().count(), 2);
    }

    #[test]
    fn misc_values() {
        let p = parse("min_free_kbytes=65536 watermark_scale_factor=150 slub_max_order=3 slub_min_objects=0x10 init_on_free=0 oom_wait_ms=250 vmalloc=256M percpu_alloc=page loglevel=4");
        assert_eq!(p.min_free_kbytes, Some(65536));
        assert_eq!(p.watermark_scale_factor, Some(150));
        assert_eq!(p.slub_max_order, Some(3));
        assert_eq!(p.slub_min_objects, Some(16));
        assert_eq!(p.init_on_free, Some(false));
        assert_eq!(p.oom_wait_ms, Some(250));
        assert_eq!(p.vmalloc, Some(256 << 20));
        assert_eq!(p.percpu_alloc, Some(PercpuAlloc::Page));
        assert_eq!(p.loglevel, Some(4));
        assert_eq!(p.kmem_kmalloc_min_objects, None);
        assert!(errors(&p).is_empty());
        let p = parse("kmem.kmalloc_min_objects=128");
        assert_eq!(p.kmem_kmalloc_min_objects, Some(128));
        assert_eq!(p.slub_min_objects, None);
        assert!(errors(&p).is_empty());
        let mut p = parse("mem=8G quiet");
        p.parse_more("memmap=exactmap memmap=4M$0 kmem.kmalloc_lazy=1");
        assert_eq!((p.mem, p.quiet, p.memmap().len()), (Some(8 << 30), true, 2));
        assert_eq!(p.cmdline(), "mem=8G quiet");
        let p = parse("kmem.kmalloc_lazy=1");
        assert_eq!(p.kmem_kmalloc_lazy, Some(true));
        let p = parse("kmem.kmalloc_freeptr_start=on");
        assert_eq!(p.kmem_kmalloc_freeptr_start, Some(true));
        let p = parse("kmem.kmalloc_freeptr_start=maybe");
        assert_eq!((p.kmem_kmalloc_freeptr_start, errors(&p).len()), (None, 1));
        let p = parse("kmem.lowmem=4G kmem.private_lowmem=1");
        assert_eq!(
            (p.kmem_lowmem, p.kmem_private_lowmem),
            (Some(4 << 30), Some(true))
        );
        assert!(errors(&p).is_empty());
        let p = parse("kmem.lowmem=32M kmem.private_lowmem=perhaps");
        assert_eq!(
            (p.kmem_lowmem, p.kmem_private_lowmem, errors(&p).len()),
            (None, None, 2)
        );
        let p = parse("kmem.kmalloc_min_objects=lots");
        assert_eq!(p.kmem_kmalloc_min_objects, None);
        assert_eq!(errors(&p).len(), 1);
        let p = parse("highmem=512M nr_cpus=0");
        assert_eq!(p.highmem, Some(512 << 20));
        assert_eq!(p.nr_cpus, None);
        assert!(errors(&p).is_empty());
    }

    #[test]
    fn capacity_limits() {
        let mut line = std::string::String::new();
        for i in 0..20 {
            line.push_str(&std::format!(
                "unknown_parameter_number_{i}_with_a_long_name_padding_padding_padding "
            ));
        }
        let p = parse(&line);
        assert_eq!(p.unknown().count(), MAX_UNKNOWN);
        assert!(p.unknown().all(|u| u.len() <= UNKNOWN_LEN));
        assert!(p
            .unknown()
            .next()
            .unwrap()
            .starts_with("unknown_parameter_number_0_"));
        // Truncation keeps whole characters.
        let name = "é".repeat(40);
        let p = parse(&name);
        assert_eq!(p.unknown().next().unwrap(), "é".repeat(32));

        let mut line = std::string::String::from("memmap=");
        for i in 0..40 {
            line.push_str(&std::format!("4K${}M,", i + 1));
        }
        line.pop();
        let p = parse(&line);
        assert_eq!(p.memmap_count, MAX_MEMMAP);
        assert_eq!(p.errors().count(), 8);
        let dbg = std::format!("{p:?}");
        assert!(dbg.contains("memmap: too many entries"));
    }
}
