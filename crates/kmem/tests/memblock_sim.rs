//! The kernel's userspace memblock simulator (tools/testing/memblock), as
//! Rust integration tests against `kmem::memblock`.
//!
//! Every test is named after the simulator check it mirrors and asserts the
//! same `cnt` / `total_size` / `base` / `size` values. As in the simulator,
//! "DRAM" is a host buffer (16 MiB, of which `MEM_SIZE` = 32 KiB is usually
//! registered) and the direct map is the identity, so a physical address is
//! the host address of the byte. The buffer is page aligned here (the
//! simulator uses `malloc`), so expected addresses are deterministic.
//! Alignments are the simulator's `SMP_CACHE_BYTES` (32).
//! Allocation checks fill the memory with a non-zero pattern first and then
//! check that zeroing allocators cleared it and `_raw` ones did not.

use kmem::memblock::*;
use std::alloc::{alloc, dealloc, Layout};

const SZ_2: u64 = 2;
const SZ_4: u64 = 4;
const SZ_8: u64 = 8;
const SZ_16: u64 = 16;
const SZ_32: u64 = 32;
const SZ_64: u64 = 64;
const SZ_128: u64 = 128;
const SZ_256: u64 = 256;
const SZ_512: u64 = 512;
const SZ_1K: u64 = 1 << 10;
const SZ_2K: u64 = 2 << 10;
const SZ_4K: u64 = 4 << 10;
const SZ_8K: u64 = 8 << 10;
const SZ_16K: u64 = 16 << 10;
const SZ_32K: u64 = 32 << 10;
const SZ_64K: u64 = 64 << 10;
const SZ_128K: u64 = 128 << 10;
const SZ_512K: u64 = 512 << 10;
const SZ_1M: u64 = 1 << 20;
const SZ_2M: u64 = 2 << 20;
const SZ_4M: u64 = 4 << 20;
const SZ_8M: u64 = 8 << 20;
const SZ_16M: u64 = 16 << 20;
const SZ_32M: u64 = 32 << 20;
const SZ_64M: u64 = 64 << 20;
const SZ_128M: u64 = 128 << 20;
const SZ_256M: u64 = 256 << 20;
const SZ_512M: u64 = 512 << 20;
const SZ_1G: u64 = 1 << 30;
const SZ_2G: u64 = 2 << 30;

/// Registered memory in most checks (tests/common.h).
const MEM_SIZE: u64 = SZ_32K;
/// Size of the dummy physical memory buffer.
const PHYS_MEM_SIZE: usize = SZ_16M as usize;
const NUMA_NODES: usize = 8;
const BASIS: u64 = 10000;
const REGION_SIZE: u64 = std::mem::size_of::<MemblockRegion>() as u64;
/// The simulator builds against tools/include/linux/cache.h, where
/// `SMP_CACHE_BYTES` is 32 (`L1_CACHE_SHIFT` 5), not x86-64's 64; its
/// expected addresses depend on that, so the checks use the same value as
/// the explicit alignment (this shadows `kmem::memblock::SMP_CACHE_BYTES`).
const SMP_CACHE_BYTES: u64 = 32;

/// Fractions of `MEM_SIZE` per node, in basis points (alloc_nid_api.c).
const NODE_FRACTIONS: [u64; NUMA_NODES] = [2500, 625, 1250, 1250, 625, 625, 2500, 625];

const TEST_F_NONE: u32 = 0;
const TEST_F_RAW: u32 = 1;
const TEST_F_EXACT: u32 = 2;

fn page_align(x: u64) -> u64 {
    (x + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// `dummy_physical_memory_init`: the host buffer playing DRAM.
struct Dummy {
    ptr: *mut u8,
}

impl Dummy {
    fn layout() -> Layout {
        Layout::from_size_align(PHYS_MEM_SIZE, PAGE_SIZE as usize).unwrap()
    }

    fn init() -> Self {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(Self::layout()) };
        assert!(!ptr.is_null());
        let d = Self { ptr };
        d.fill();
        d
    }

    /// `dummy_physical_memory_base`.
    fn base(&self) -> PhysAddr {
        self.ptr as usize as PhysAddr
    }

    /// `fill_memblock`: a non-zero pattern over the registered part.
    fn fill(&self) {
        // SAFETY: the buffer holds PHYS_MEM_SIZE >= MEM_SIZE bytes.
        unsafe { std::ptr::write_bytes(self.ptr, 1, MEM_SIZE as usize) };
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        // SAFETY: allocated in `init` with the same layout.
        unsafe { dealloc(self.ptr, Self::layout()) };
    }
}

/// `reset_memblock_regions` + `reset_memblock_attributes`, with the identity
/// direct map over the dummy memory.
fn reset(_d: &Dummy) -> Memblock {
    let mut mb = Memblock::new();
    // SAFETY: every check only registers memory inside the dummy buffer,
    // which outlives the Memblock and is used by nothing else.
    unsafe { mb.set_direct_map(0) };
    mb
}

/// `setup_memblock`.
fn setup_memblock(d: &Dummy) -> Memblock {
    let mut mb = reset(d);
    mb.add(d.base(), MEM_SIZE).unwrap();
    d.fill();
    mb
}

/// `setup_numa_memblock`: 8 nodes carved out of `MEM_SIZE`.
fn setup_numa_memblock(d: &Dummy) -> Memblock {
    let mut mb = reset(d);
    let mut base = d.base();
    for (nid, frac) in NODE_FRACTIONS.iter().enumerate() {
        let size = MEM_SIZE * frac / BASIS;
        mb.add_node(base, size, nid as i32, MemblockFlags::HOTPLUG)
            .unwrap();
        base += size;
    }
    d.fill();
    mb
}

fn rgn(mb: &Memblock, which: Which, idx: usize) -> MemblockRegion {
    *mb.region_type(which).slot(idx).unwrap()
}

fn res(mb: &Memblock, idx: usize) -> MemblockRegion {
    rgn(mb, Which::Reserved, idx)
}

fn mem(mb: &Memblock, idx: usize) -> MemblockRegion {
    rgn(mb, Which::Memory, idx)
}

/// `assert_mem_content`.
fn assert_mem_content(ptr: *mut u8, size: u64, flags: u32) {
    // SAFETY: `ptr` came from a successful allocation of `size` bytes in the
    // dummy buffer.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, size as usize) };
    if flags & TEST_F_RAW != 0 {
        assert!(bytes.iter().all(|&b| b != 0), "raw memory was touched");
    } else {
        assert!(bytes.iter().all(|&b| b == 0), "memory was not zeroed");
    }
}

const ALLOC_FLAGS: [u32; 2] = [TEST_F_NONE, TEST_F_RAW];
const NID_FLAGS: [u32; 3] = [TEST_F_NONE, TEST_F_RAW, TEST_F_RAW | TEST_F_EXACT];

/// `run_memblock_alloc` of alloc_api.c.
fn run_memblock_alloc(mb: &mut Memblock, size: u64, align: u64, flags: u32) -> *mut u8 {
    if flags & TEST_F_RAW != 0 {
        mb.alloc_raw(size, align)
    } else {
        mb.alloc(size, align)
    }
}

/// `run_memblock_alloc_nid` of alloc_nid_api.c.
fn run_memblock_alloc_nid(
    mb: &mut Memblock,
    size: u64,
    align: u64,
    min_addr: u64,
    max_addr: u64,
    nid: i32,
    flags: u32,
) -> *mut u8 {
    if flags & TEST_F_EXACT != 0 {
        mb.alloc_exact_nid_raw(size, align, min_addr, max_addr, nid)
    } else if flags & TEST_F_RAW != 0 {
        mb.alloc_try_nid_raw(size, align, min_addr, max_addr, nid)
    } else {
        mb.alloc_try_nid(size, align, min_addr, max_addr, nid)
    }
}

// ===========================================================================
// basic_api.c
// ===========================================================================

#[test]
fn memblock_initialization_check() {
    let mb = Memblock::new();
    assert!(!mb.memory.regions_ptr().is_null());
    assert_eq!(mb.memory.cnt(), 0);
    assert_eq!(mb.memory.max(), INIT_MEMBLOCK_REGIONS);
    assert_eq!(mb.memory.name(), "memory");
    assert!(!mb.reserved.regions_ptr().is_null());
    assert_eq!(mb.reserved.cnt(), 0);
    assert_eq!(mb.reserved.max(), INIT_MEMBLOCK_RESERVED_REGIONS);
    assert_eq!(mb.reserved.name(), "reserved");
    assert!(!mb.bottom_up);
    assert_eq!(mb.current_limit, MEMBLOCK_ALLOC_ANYWHERE);
}

#[test]
fn memblock_add_simple_check() {
    let mut mb = Memblock::new();
    mb.add(SZ_1G, SZ_4M).unwrap();
    assert_eq!(mem(&mb, 0).base, SZ_1G);
    assert_eq!(mem(&mb, 0).size, SZ_4M);
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), SZ_4M);
}

#[test]
fn memblock_add_node_simple_check() {
    let mut mb = Memblock::new();
    mb.add_node(SZ_1M, SZ_16M, 1, MemblockFlags::HOTPLUG).unwrap();
    let r = mem(&mb, 0);
    assert_eq!(r.base, SZ_1M);
    assert_eq!(r.size, SZ_16M);
    assert_eq!(r.nid, 1);
    assert_eq!(r.flags, MemblockFlags::HOTPLUG);
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), SZ_16M);
}

#[test]
fn memblock_add_disjoint_check() {
    let mut mb = Memblock::new();
    mb.add(SZ_1G, SZ_8K).unwrap();
    mb.add(SZ_1G + SZ_16K, SZ_8K).unwrap();
    assert_eq!((mem(&mb, 0).base, mem(&mb, 0).size), (SZ_1G, SZ_8K));
    assert_eq!((mem(&mb, 1).base, mem(&mb, 1).size), (SZ_1G + SZ_16K, SZ_8K));
    assert_eq!(mb.memory.cnt(), 2);
    assert_eq!(mb.memory.total_size(), SZ_16K);
}

#[test]
fn memblock_add_overlap_top_check() {
    let mut mb = Memblock::new();
    let total_size = (SZ_512M - SZ_256M) + SZ_1G;
    mb.add(SZ_512M, SZ_1G).unwrap();
    mb.add(SZ_256M, SZ_512M).unwrap();
    assert_eq!(mem(&mb, 0).base, SZ_256M);
    assert_eq!(mem(&mb, 0).size, total_size);
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), total_size);
}

#[test]
fn memblock_add_overlap_bottom_check() {
    let mut mb = Memblock::new();
    let total_size = (SZ_256M - SZ_128M) + SZ_1G;
    mb.add(SZ_128M, SZ_512M).unwrap();
    mb.add(SZ_256M, SZ_1G).unwrap();
    assert_eq!(mem(&mb, 0).base, SZ_128M);
    assert_eq!(mem(&mb, 0).size, total_size);
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), total_size);
}

#[test]
fn memblock_add_within_check() {
    let mut mb = Memblock::new();
    mb.add(SZ_8M, SZ_32M).unwrap();
    mb.add(SZ_16M, SZ_1M).unwrap();
    assert_eq!(mem(&mb, 0).base, SZ_8M);
    assert_eq!(mem(&mb, 0).size, SZ_32M);
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), SZ_32M);
}

#[test]
fn memblock_add_twice_check() {
    let mut mb = Memblock::new();
    mb.add(SZ_16K, SZ_2M).unwrap();
    mb.add(SZ_16K, SZ_2M).unwrap();
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), SZ_2M);
}

#[test]
fn memblock_add_between_check() {
    let mut mb = Memblock::new();
    mb.add(SZ_1G, SZ_8K).unwrap();
    mb.add(SZ_1G + SZ_16K, SZ_8K).unwrap();
    mb.add(SZ_1G + SZ_8K, SZ_8K).unwrap();
    assert_eq!(mem(&mb, 0).base, SZ_1G);
    assert_eq!(mem(&mb, 0).size, 3 * SZ_8K);
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), 3 * SZ_8K);
}

#[test]
fn memblock_add_near_max_check() {
    let mut mb = Memblock::new();
    let base = PHYS_ADDR_MAX - SZ_1M;
    let total_size = PHYS_ADDR_MAX - base;
    mb.add(base, SZ_2M).unwrap();
    assert_eq!(mem(&mb, 0).base, base);
    assert_eq!(mem(&mb, 0).size, total_size);
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), total_size);
}

#[test]
fn memblock_add_many_check() {
    let d = Dummy::init();
    let mut mb = reset(&d);
    mb.allow_resize();
    let size = SZ_64;
    let gap_size = SZ_64;
    let mut base = page_align(d.base());
    let new_memory_regions_size = page_align(INIT_MEMBLOCK_REGIONS as u64 * 2 * REGION_SIZE);
    // A region big enough for the doubled array...
    mb.add(base, new_memory_regions_size).unwrap();
    base += new_memory_regions_size + gap_size;
    let orig_region = mb.memory.regions_ptr();
    // ...and small ones that cannot merge until the array overflows.
    for i in 0..INIT_MEMBLOCK_REGIONS as u64 {
        mb.add(base, size).unwrap();
        base += size + gap_size;
        assert_eq!(mb.memory.cnt(), i as usize + 2);
        assert_eq!(mb.memory.total_size(), new_memory_regions_size + (i + 1) * size);
    }
    assert_eq!(mb.memory.max(), INIT_MEMBLOCK_REGIONS * 2);
    assert_ne!(mb.memory.regions_ptr(), orig_region);
    // The new array took the first region and is reserved.
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), new_memory_regions_size);
    assert_eq!(res(&mb, 0).base, page_align(d.base()));
    assert_eq!(
        mb.memory.regions_ptr(),
        mb.phys_to_virt(res(&mb, 0).base).cast_const().cast()
    );

    mb.add(SZ_16K, SZ_16K).unwrap();
    assert_eq!(mem(&mb, 0).base, SZ_16K);
    assert_eq!(mem(&mb, 0).size, SZ_16K);
    assert_eq!(mb.memory.cnt(), INIT_MEMBLOCK_REGIONS + 2);
    assert_eq!(
        mb.memory.total_size(),
        INIT_MEMBLOCK_REGIONS as u64 * size + new_memory_regions_size + SZ_16K
    );
    assert_eq!(mb.memory.max(), INIT_MEMBLOCK_REGIONS * 2);
}

#[test]
fn memblock_add_many_without_resize_fails() {
    // Not in the simulator: before memblock_allow_resize() the array is fixed.
    let mut mb = Memblock::new();
    for i in 0..INIT_MEMBLOCK_REGIONS as u64 {
        mb.add(SZ_1G + i * SZ_128, SZ_64).unwrap();
    }
    assert_eq!(mb.add(SZ_2G, SZ_64), Err(MemblockError::TooManyRegions));
    assert_eq!(mb.memory.cnt(), INIT_MEMBLOCK_REGIONS);
    assert_eq!(mb.memory.max(), INIT_MEMBLOCK_REGIONS);
}

#[test]
fn memblock_reserve_simple_check() {
    let mut mb = Memblock::new();
    mb.reserve(SZ_2G, SZ_128M).unwrap();
    assert_eq!(res(&mb, 0).base, SZ_2G);
    assert_eq!(res(&mb, 0).size, SZ_128M);
    assert_eq!(mb.reserved.cnt(), 1);
}

#[test]
fn memblock_reserve_disjoint_check() {
    let mut mb = Memblock::new();
    mb.reserve(SZ_256M, SZ_16M).unwrap();
    mb.reserve(SZ_512M, SZ_512M).unwrap();
    assert_eq!((res(&mb, 0).base, res(&mb, 0).size), (SZ_256M, SZ_16M));
    assert_eq!((res(&mb, 1).base, res(&mb, 1).size), (SZ_512M, SZ_512M));
    assert_eq!(mb.reserved.cnt(), 2);
    assert_eq!(mb.reserved.total_size(), SZ_16M + SZ_512M);
}

#[test]
fn memblock_reserve_overlap_top_check() {
    let mut mb = Memblock::new();
    let total_size = (SZ_1G - SZ_128M) + SZ_1G;
    mb.reserve(SZ_1G, SZ_1G).unwrap();
    mb.reserve(SZ_128M, SZ_1G).unwrap();
    assert_eq!(res(&mb, 0).base, SZ_128M);
    assert_eq!(res(&mb, 0).size, total_size);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn memblock_reserve_overlap_bottom_check() {
    let mut mb = Memblock::new();
    let total_size = (SZ_128K - SZ_2K) + SZ_128K;
    mb.reserve(SZ_2K, SZ_128K).unwrap();
    mb.reserve(SZ_128K, SZ_128K).unwrap();
    assert_eq!(res(&mb, 0).base, SZ_2K);
    assert_eq!(res(&mb, 0).size, total_size);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn memblock_reserve_within_check() {
    let mut mb = Memblock::new();
    mb.reserve(SZ_1M, SZ_8M).unwrap();
    mb.reserve(SZ_2M, SZ_64K).unwrap();
    assert_eq!(res(&mb, 0).base, SZ_1M);
    assert_eq!(res(&mb, 0).size, SZ_8M);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), SZ_8M);
}

#[test]
fn memblock_reserve_twice_check() {
    let mut mb = Memblock::new();
    mb.reserve(SZ_16K, SZ_2M).unwrap();
    mb.reserve(SZ_16K, SZ_2M).unwrap();
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), SZ_2M);
}

#[test]
fn memblock_reserve_between_check() {
    let mut mb = Memblock::new();
    mb.reserve(SZ_1G, SZ_8K).unwrap();
    mb.reserve(SZ_1G + SZ_16K, SZ_8K).unwrap();
    mb.reserve(SZ_1G + SZ_8K, SZ_8K).unwrap();
    assert_eq!(res(&mb, 0).base, SZ_1G);
    assert_eq!(res(&mb, 0).size, 3 * SZ_8K);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), 3 * SZ_8K);
}

#[test]
fn memblock_reserve_near_max_check() {
    let mut mb = Memblock::new();
    let base = PHYS_ADDR_MAX - SZ_1M;
    mb.reserve(base, SZ_2M).unwrap();
    assert_eq!(res(&mb, 0).base, base);
    assert_eq!(res(&mb, 0).size, SZ_1M);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), SZ_1M);
}

fn new_reserved_regions_size() -> u64 {
    page_align(INIT_MEMBLOCK_REGIONS as u64 * 2 * REGION_SIZE)
}

/// Shared tail of the `*_many` reserve checks: after the overflowing reserve.
fn check_doubled_reserved(mb: &Memblock) {
    let n = INIT_MEMBLOCK_REGIONS as u64;
    assert_eq!(mb.reserved.cnt(), INIT_MEMBLOCK_REGIONS + 2);
    assert_eq!(
        mb.reserved.total_size(),
        (n + 1) * MEM_SIZE + new_reserved_regions_size()
    );
    assert_eq!(mb.reserved.max(), INIT_MEMBLOCK_REGIONS * 2);
}

/// Shared tail: one more reserve below everything goes to slot 0.
fn check_reserve_after_doubling(mb: &mut Memblock) {
    let n = INIT_MEMBLOCK_REGIONS as u64;
    mb.reserve(SZ_16K, SZ_16K).unwrap();
    assert_eq!(res(mb, 0).base, SZ_16K);
    assert_eq!(res(mb, 0).size, SZ_16K);
    assert_eq!(mb.reserved.cnt(), INIT_MEMBLOCK_REGIONS + 3);
    assert_eq!(
        mb.reserved.total_size(),
        (n + 1) * MEM_SIZE + new_reserved_regions_size() + SZ_16K
    );
    assert_eq!(mb.reserved.max(), INIT_MEMBLOCK_REGIONS * 2);
}

#[test]
fn memblock_reserve_many_check() {
    let d = Dummy::init();
    let mut mb = reset(&d);
    mb.allow_resize();
    mb.add(d.base(), MEM_SIZE).unwrap();
    let mut memory_base = SZ_128K;
    for i in 0..INIT_MEMBLOCK_REGIONS as u64 {
        mb.reserve(memory_base, MEM_SIZE).unwrap();
        assert_eq!(mb.reserved.cnt(), i as usize + 1);
        assert_eq!(mb.reserved.total_size(), (i + 1) * MEM_SIZE);
        memory_base += MEM_SIZE * 2;
    }
    let orig_region = mb.reserved.regions_ptr();
    mb.reserve(memory_base, MEM_SIZE).unwrap();
    check_doubled_reserved(&mb);
    assert_ne!(mb.reserved.regions_ptr(), orig_region);
    // The doubled array sits at the top of the registered memory.
    let last = *mb.reserved.regions().last().unwrap();
    assert_eq!(last.base, d.base() + MEM_SIZE - new_reserved_regions_size());
    assert_eq!(last.size, new_reserved_regions_size());
    check_reserve_after_doubling(&mut mb);
}

/// `MEMORY_BASE(idx)`: spaced so that the regions never merge.
fn memory_base(idx: u64) -> PhysAddr {
    SZ_128K + MEM_SIZE * 2 * idx
}

#[test]
fn memblock_reserve_all_locations_check() {
    let d = Dummy::init();
    let n = INIT_MEMBLOCK_REGIONS as u64;
    for skip in 0..=n {
        let mut mb = reset(&d);
        mb.allow_resize();
        mb.add(d.base(), MEM_SIZE).unwrap();
        for i in (0..=n).filter(|&i| i != skip) {
            mb.reserve(memory_base(i), MEM_SIZE).unwrap();
            let expect = if i < skip { i + 1 } else { i };
            assert_eq!(mb.reserved.cnt(), expect as usize);
            assert_eq!(mb.reserved.total_size(), expect * MEM_SIZE);
        }
        mb.reserve(memory_base(skip), MEM_SIZE).unwrap();
        check_doubled_reserved(&mb);
        check_reserve_after_doubling(&mut mb);
    }
}

#[test]
fn memblock_reserve_many_may_conflict_check() {
    let d = Dummy::init();
    let offset = page_align(d.base());
    let n = INIT_MEMBLOCK_REGIONS as u64;
    // `MEMORY_BASE_OFFSET(idx, offset)`: all inside the 16 MiB buffer.
    let mbo = |idx: u64| offset + MEM_SIZE * 2 * idx;
    for skip in 1..=n + 1 {
        let mut mb = reset(&d);
        mb.allow_resize();
        // Memory at index 0 (free) and at `skip` (about to be reserved).
        mb.add(mbo(0), MEM_SIZE).unwrap();
        mb.add(mbo(skip), MEM_SIZE).unwrap();
        for i in (1..=n + 1).filter(|&i| i != skip) {
            mb.reserve(mbo(i), MEM_SIZE).unwrap();
            let expect = if i < skip { i } else { i - 1 };
            assert_eq!(mb.reserved.cnt(), expect as usize);
            assert_eq!(mb.reserved.total_size(), expect * MEM_SIZE);
        }
        // Doubling must not place the new array in the range being reserved.
        mb.reserve(mbo(skip), MEM_SIZE).unwrap();
        check_doubled_reserved(&mb);
        assert_eq!(res(&mb, 0).end(), mbo(0) + SZ_32K);
        assert_eq!(res(&mb, 0).size, new_reserved_regions_size());
        check_reserve_after_doubling(&mut mb);
    }
}

#[test]
fn memblock_remove_simple_check() {
    let mut mb = Memblock::new();
    mb.add(SZ_2K, SZ_4K).unwrap();
    mb.add(SZ_128K, SZ_4M).unwrap();
    mb.remove(SZ_2K, SZ_4K).unwrap();
    assert_eq!(mem(&mb, 0).base, SZ_128K);
    assert_eq!(mem(&mb, 0).size, SZ_4M);
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), SZ_4M);
}

#[test]
fn memblock_remove_absent_check() {
    let mut mb = Memblock::new();
    mb.add(SZ_512K, SZ_4M).unwrap();
    mb.remove(SZ_64M, SZ_1G).unwrap();
    assert_eq!(mem(&mb, 0).base, SZ_512K);
    assert_eq!(mem(&mb, 0).size, SZ_4M);
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), SZ_4M);
}

#[test]
fn memblock_remove_overlap_top_check() {
    let mut mb = Memblock::new();
    let (r1_base, r1_size) = (SZ_32M, SZ_32M);
    let (r2_base, r2_size) = (SZ_16M, SZ_32M);
    let total_size = (r1_base + r1_size) - (r2_base + r2_size);
    mb.add(r1_base, r1_size).unwrap();
    mb.remove(r2_base, r2_size).unwrap();
    assert_eq!(mem(&mb, 0).base, r1_base + r2_base);
    assert_eq!(mem(&mb, 0).size, total_size);
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), total_size);
}

#[test]
fn memblock_remove_overlap_bottom_check() {
    let mut mb = Memblock::new();
    let total_size = SZ_32M - SZ_2M;
    mb.add(SZ_2M, SZ_64M).unwrap();
    mb.remove(SZ_32M, SZ_256M).unwrap();
    assert_eq!(mem(&mb, 0).base, SZ_2M);
    assert_eq!(mem(&mb, 0).size, total_size);
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), total_size);
}

#[test]
fn memblock_remove_within_check() {
    let mut mb = Memblock::new();
    let r1_size = SZ_16M - SZ_1M;
    let r2_size = (SZ_1M + SZ_32M) - (SZ_16M + SZ_1M);
    mb.add(SZ_1M, SZ_32M).unwrap();
    mb.remove(SZ_16M, SZ_1M).unwrap();
    assert_eq!((mem(&mb, 0).base, mem(&mb, 0).size), (SZ_1M, r1_size));
    assert_eq!((mem(&mb, 1).base, mem(&mb, 1).size), (SZ_16M + SZ_1M, r2_size));
    assert_eq!(mb.memory.cnt(), 2);
    assert_eq!(mb.memory.total_size(), r1_size + r2_size);
}

#[test]
fn memblock_remove_only_region_check() {
    let mut mb = Memblock::new();
    mb.add(SZ_2K, SZ_4K).unwrap();
    mb.remove(SZ_2K, SZ_4K).unwrap();
    assert_eq!(mem(&mb, 0).base, 0);
    assert_eq!(mem(&mb, 0).size, 0);
    assert_eq!(mb.memory.cnt(), 0);
    assert_eq!(mb.memory.total_size(), 0);
}

#[test]
fn memblock_remove_near_max_check() {
    let mut mb = Memblock::new();
    let r1_base = PHYS_ADDR_MAX - SZ_2M;
    let r2_base = PHYS_ADDR_MAX - SZ_1M;
    let total_size = SZ_2M - (PHYS_ADDR_MAX - r2_base);
    mb.add(r1_base, SZ_2M).unwrap();
    mb.remove(r2_base, SZ_2M).unwrap();
    assert_eq!(mem(&mb, 0).base, r1_base);
    assert_eq!(mem(&mb, 0).size, total_size);
    assert_eq!(mb.memory.cnt(), 1);
    assert_eq!(mb.memory.total_size(), total_size);
}

#[test]
fn memblock_remove_overlap_two_check() {
    let mut mb = Memblock::new();
    let (r1_base, r1_size) = (SZ_16M, SZ_32M);
    let (r2_base, r2_size) = (SZ_64M, SZ_64M);
    let (r3_base, r3_size) = (SZ_32M, SZ_64M);
    let r3_end = r3_base + r3_size;
    let new_r1_size = r3_base - r1_base;
    let new_r2_size = (r2_base + r2_size) - r3_end;
    mb.add(r1_base, r1_size).unwrap();
    mb.add(r2_base, r2_size).unwrap();
    mb.remove(r3_base, r3_size).unwrap();
    assert_eq!((mem(&mb, 0).base, mem(&mb, 0).size), (r1_base, new_r1_size));
    assert_eq!((mem(&mb, 1).base, mem(&mb, 1).size), (r3_end, new_r2_size));
    assert_eq!(mb.memory.cnt(), 2);
    assert_eq!(mb.memory.total_size(), new_r1_size + new_r2_size);
}

/// `memblock_free((void *)base, size)` with the identity map.
fn free_phys(mb: &mut Memblock, base: PhysAddr, size: u64) {
    mb.free(base as usize as *mut u8, size);
}

#[test]
fn memblock_free_simple_check() {
    let mut mb = Memblock::new();
    mb.reserve(SZ_4M, SZ_1M).unwrap();
    mb.reserve(SZ_8M, SZ_1M).unwrap();
    free_phys(&mut mb, SZ_4M, SZ_1M);
    assert_eq!(res(&mb, 0).base, SZ_8M);
    assert_eq!(res(&mb, 0).size, SZ_1M);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), SZ_1M);
}

#[test]
fn memblock_free_absent_check() {
    let mut mb = Memblock::new();
    mb.reserve(SZ_2M, SZ_8K).unwrap();
    free_phys(&mut mb, SZ_16M, SZ_128M);
    assert_eq!(res(&mb, 0).base, SZ_2M);
    assert_eq!(res(&mb, 0).size, SZ_8K);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), SZ_8K);
}

#[test]
fn memblock_free_overlap_top_check() {
    let mut mb = Memblock::new();
    let total_size = (SZ_32M + SZ_8M) - (SZ_1M + SZ_8M);
    mb.reserve(SZ_8M, SZ_32M).unwrap();
    free_phys(&mut mb, SZ_1M, SZ_8M);
    assert_eq!(res(&mb, 0).base, SZ_1M + SZ_8M);
    assert_eq!(res(&mb, 0).size, total_size);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn memblock_free_overlap_bottom_check() {
    let mut mb = Memblock::new();
    let total_size = SZ_32M - SZ_8M;
    mb.reserve(SZ_8M, SZ_32M).unwrap();
    free_phys(&mut mb, SZ_32M, SZ_32M);
    assert_eq!(res(&mb, 0).base, SZ_8M);
    assert_eq!(res(&mb, 0).size, total_size);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn memblock_free_within_check() {
    let mut mb = Memblock::new();
    let r1_size = SZ_4M - SZ_1M;
    let r2_size = (SZ_1M + SZ_8M) - (SZ_4M + SZ_1M);
    mb.reserve(SZ_1M, SZ_8M).unwrap();
    free_phys(&mut mb, SZ_4M, SZ_1M);
    assert_eq!((res(&mb, 0).base, res(&mb, 0).size), (SZ_1M, r1_size));
    assert_eq!((res(&mb, 1).base, res(&mb, 1).size), (SZ_4M + SZ_1M, r2_size));
    assert_eq!(mb.reserved.cnt(), 2);
    assert_eq!(mb.reserved.total_size(), r1_size + r2_size);
}

#[test]
fn memblock_free_only_region_check() {
    let mut mb = Memblock::new();
    mb.reserve(SZ_2K, SZ_4K).unwrap();
    free_phys(&mut mb, SZ_2K, SZ_4K);
    assert_eq!(res(&mb, 0).base, 0);
    assert_eq!(res(&mb, 0).size, 0);
    assert_eq!(mb.reserved.cnt(), 0);
    assert_eq!(mb.reserved.total_size(), 0);
}

#[test]
fn memblock_free_near_max_check() {
    let mut mb = Memblock::new();
    let r1_base = PHYS_ADDR_MAX - SZ_2M;
    let r2_base = PHYS_ADDR_MAX - SZ_1M;
    let total_size = SZ_2M - (PHYS_ADDR_MAX - r2_base);
    mb.reserve(r1_base, SZ_2M).unwrap();
    free_phys(&mut mb, r2_base, SZ_2M);
    assert_eq!(res(&mb, 0).base, r1_base);
    assert_eq!(res(&mb, 0).size, total_size);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn memblock_free_overlap_two_check() {
    let mut mb = Memblock::new();
    let r3_end = SZ_32M + SZ_64M;
    let new_r1_size = SZ_32M - SZ_16M;
    let new_r2_size = (SZ_64M + SZ_64M) - r3_end;
    mb.reserve(SZ_16M, SZ_32M).unwrap();
    mb.reserve(SZ_64M, SZ_64M).unwrap();
    free_phys(&mut mb, SZ_32M, SZ_64M);
    assert_eq!((res(&mb, 0).base, res(&mb, 0).size), (SZ_16M, new_r1_size));
    assert_eq!((res(&mb, 1).base, res(&mb, 1).size), (r3_end, new_r2_size));
    assert_eq!(mb.reserved.cnt(), 2);
    assert_eq!(mb.reserved.total_size(), new_r1_size + new_r2_size);
}

#[test]
fn memblock_set_bottom_up_check() {
    let mut mb = Memblock::new();
    mb.set_bottom_up(false);
    assert!(!mb.bottom_up);
    mb.set_bottom_up(true);
    assert!(mb.bottom_up);
}

#[test]
fn memblock_bottom_up_check() {
    let mut mb = Memblock::new();
    mb.set_bottom_up(false);
    assert_eq!(mb.bottom_up(), mb.bottom_up);
    assert!(!mb.bottom_up());
    mb.set_bottom_up(true);
    assert_eq!(mb.bottom_up(), mb.bottom_up);
    assert!(mb.bottom_up());
}

#[test]
fn memblock_trim_memory_aligned_check() {
    let mut mb = Memblock::new();
    let alignment = SMP_CACHE_BYTES;
    mb.add(alignment, alignment * 4).unwrap();
    mb.trim_memory(alignment).unwrap();
    assert_eq!(mem(&mb, 0).base, alignment);
    assert_eq!(mem(&mb, 0).size, alignment * 4);
    assert_eq!(mb.memory.cnt(), 1);
}

#[test]
fn memblock_trim_memory_too_small_check() {
    let mut mb = Memblock::new();
    let alignment = SMP_CACHE_BYTES;
    mb.add(alignment, alignment * 2).unwrap();
    mb.add(alignment * 4, alignment - SZ_2).unwrap();
    mb.trim_memory(alignment).unwrap();
    assert_eq!(mem(&mb, 0).base, alignment);
    assert_eq!(mem(&mb, 0).size, alignment * 2);
    assert_eq!(mb.memory.cnt(), 1);
}

#[test]
fn memblock_trim_memory_unaligned_base_check() {
    let mut mb = Memblock::new();
    let alignment = SMP_CACHE_BYTES;
    let offset = SZ_2;
    let (r2_base, r2_size) = (alignment * 4 + offset, alignment * 2 - offset);
    let new_r2_base = r2_base + (alignment - offset);
    let new_r2_size = r2_size - (alignment - offset);
    mb.add(alignment, alignment * 2).unwrap();
    mb.add(r2_base, r2_size).unwrap();
    mb.trim_memory(alignment).unwrap();
    assert_eq!((mem(&mb, 0).base, mem(&mb, 0).size), (alignment, alignment * 2));
    assert_eq!((mem(&mb, 1).base, mem(&mb, 1).size), (new_r2_base, new_r2_size));
    assert_eq!(mb.memory.cnt(), 2);
}

#[test]
fn memblock_trim_memory_unaligned_end_check() {
    let mut mb = Memblock::new();
    let alignment = SMP_CACHE_BYTES;
    let offset = SZ_2;
    let (r2_base, r2_size) = (alignment * 4, alignment * 2 - offset);
    let new_r2_size = r2_size - (alignment - offset);
    mb.add(alignment, alignment * 2).unwrap();
    mb.add(r2_base, r2_size).unwrap();
    mb.trim_memory(alignment).unwrap();
    assert_eq!((mem(&mb, 0).base, mem(&mb, 0).size), (alignment, alignment * 2));
    assert_eq!((mem(&mb, 1).base, mem(&mb, 1).size), (r2_base, new_r2_size));
    assert_eq!(mb.memory.cnt(), 2);
}

#[test]
fn memblock_overlaps_region_check() {
    let mut mb = Memblock::new();
    mb.add(SZ_1G, SZ_4M).unwrap();
    let m = Which::Memory;
    // Far away.
    assert!(!mb.overlaps_region(m, SZ_1M, SZ_1M));
    assert!(!mb.overlaps_region(m, SZ_2G, SZ_1M));
    // Neighbours.
    assert!(!mb.overlaps_region(m, SZ_1G - SZ_1M, SZ_1M));
    assert!(!mb.overlaps_region(m, SZ_1G + SZ_4M, SZ_1M));
    // Partial overlap.
    assert!(mb.overlaps_region(m, SZ_1G - SZ_1M, SZ_2M));
    assert!(mb.overlaps_region(m, SZ_1G + SZ_2M, SZ_2M));
    // Total overlap.
    assert!(mb.overlaps_region(m, SZ_1G, SZ_4M));
    assert!(mb.overlaps_region(m, SZ_1G - SZ_2M, SZ_8M));
    assert!(mb.overlaps_region(m, SZ_1G + SZ_1M, SZ_1M));
}

#[test]
fn memblock_set_node_check() {
    let d = Dummy::init();
    let mut mb = reset(&d);
    mb.allow_resize();
    mb.add(d.base(), MEM_SIZE).unwrap();
    let start = mb.start_of_dram();
    let half = mb.phys_mem_size() / 2;
    mb.set_node(start, half, Which::Memory, 0).unwrap();
    mb.set_node(start + half, half, Which::Memory, 1).unwrap();
    assert_eq!(mb.memory.cnt(), 2);
    assert_eq!(
        (mem(&mb, 0).base, mem(&mb, 0).size, mem(&mb, 0).nid),
        (start, half, 0)
    );
    assert_eq!(
        (mem(&mb, 1).base, mem(&mb, 1).size, mem(&mb, 1).nid),
        (start + half, half, 1)
    );

    // Fill reserved so that splitting on node boundaries must double it.
    for i in 0..125 {
        mb.reserve(start + SZ_16 * i, SZ_8).unwrap();
    }
    mb.reserve(start + half - SZ_8, SZ_16).unwrap();
    loop {
        let max_reserved = mb.reserved.max();
        let nodes: Vec<_> = mb.memory.regions().to_vec();
        for r in nodes {
            mb.set_node(r.base, r.size, Which::Reserved, r.nid).unwrap();
        }
        if max_reserved == mb.reserved.max() {
            break;
        }
    }
    assert_eq!(mb.reserved.max(), INIT_MEMBLOCK_REGIONS * 2);
    let regions = mb.reserved.regions();
    for (i, r) in regions.iter().enumerate() {
        assert!(numa_valid_node(r.nid));
        let expect = if i == regions.len() - 1 { 1 } else { 0 };
        assert_eq!(r.nid, expect, "region {i}");
    }
}

// ===========================================================================
// alloc_api.c
// ===========================================================================

fn alloc_top_down_simple(flags: u32) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    let size = SZ_2;
    let expected_start = mb.end_of_dram() - SMP_CACHE_BYTES;
    let p = run_memblock_alloc(&mut mb, size, SMP_CACHE_BYTES, flags);
    assert!(!p.is_null());
    assert_mem_content(p, size, flags);
    assert_eq!(mb.virt_to_phys(p), expected_start);
    assert_eq!(res(&mb, 0).size, size);
    assert_eq!(res(&mb, 0).base, expected_start);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), size);
}

#[test]
fn alloc_top_down_simple_check() {
    ALLOC_FLAGS.into_iter().for_each(alloc_top_down_simple);
}

fn alloc_top_down_disjoint(flags: u32) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    let r2_size = SZ_16;
    let alignment = SMP_CACHE_BYTES * 2;
    let r1 = (mb.end_of_dram() - SZ_2, SZ_2);
    let expected_start = mb.end_of_dram() - alignment;
    mb.reserve(r1.0, r1.1).unwrap();
    let p = run_memblock_alloc(&mut mb, r2_size, alignment, flags);
    assert!(!p.is_null());
    assert_mem_content(p, r2_size, flags);
    assert_eq!((res(&mb, 1).size, res(&mb, 1).base), (r1.1, r1.0));
    assert_eq!((res(&mb, 0).size, res(&mb, 0).base), (r2_size, expected_start));
    assert_eq!(mb.reserved.cnt(), 2);
    assert_eq!(mb.reserved.total_size(), r1.1 + r2_size);
}

#[test]
fn alloc_top_down_disjoint_check() {
    ALLOC_FLAGS.into_iter().for_each(alloc_top_down_disjoint);
}

fn alloc_top_down_before(flags: u32) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    let r1_size = SMP_CACHE_BYTES;
    let r2_size = SZ_512;
    let total_size = r1_size + r2_size;
    mb.reserve(mb.end_of_dram() - total_size, r1_size).unwrap();
    let p = run_memblock_alloc(&mut mb, r2_size, SMP_CACHE_BYTES, flags);
    assert!(!p.is_null());
    assert_mem_content(p, r2_size, flags);
    assert_eq!(res(&mb, 0).size, total_size);
    assert_eq!(res(&mb, 0).base, mb.end_of_dram() - total_size);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn alloc_top_down_before_check() {
    ALLOC_FLAGS.into_iter().for_each(alloc_top_down_before);
}

fn alloc_top_down_after(flags: u32) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    let r2_size = SZ_512;
    let r1 = (mb.end_of_dram() - SMP_CACHE_BYTES, SZ_8);
    let total_size = r1.1 + r2_size;
    mb.reserve(r1.0, r1.1).unwrap();
    let p = run_memblock_alloc(&mut mb, r2_size, SMP_CACHE_BYTES, flags);
    assert!(!p.is_null());
    assert_mem_content(p, r2_size, flags);
    assert_eq!(res(&mb, 0).size, total_size);
    assert_eq!(res(&mb, 0).base, r1.0 - r2_size);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn alloc_top_down_after_check() {
    ALLOC_FLAGS.into_iter().for_each(alloc_top_down_after);
}

fn alloc_top_down_second_fit(flags: u32) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    let r3_size = SZ_1K;
    let r1 = (mb.end_of_dram() - SZ_512, SZ_512);
    let r2 = (r1.0 - SZ_512, SZ_256);
    let total_size = r1.1 + r2.1 + r3_size;
    mb.reserve(r1.0, r1.1).unwrap();
    mb.reserve(r2.0, r2.1).unwrap();
    let p = run_memblock_alloc(&mut mb, r3_size, SMP_CACHE_BYTES, flags);
    assert!(!p.is_null());
    assert_mem_content(p, r3_size, flags);
    assert_eq!(res(&mb, 0).size, r2.1 + r3_size);
    assert_eq!(res(&mb, 0).base, r2.0 - r3_size);
    assert_eq!(mb.reserved.cnt(), 2);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn alloc_top_down_second_fit_check() {
    ALLOC_FLAGS.into_iter().for_each(alloc_top_down_second_fit);
}

fn alloc_in_between_generic(flags: u32, bottom_up: bool) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(bottom_up);
    let gap_size = SMP_CACHE_BYTES;
    let r3_size = SZ_64;
    let rgn_size = (MEM_SIZE - (2 * gap_size + r3_size)) / 2;
    let r1 = (mb.end_of_dram() - (gap_size + rgn_size), rgn_size);
    let r2 = (mb.start_of_dram() + gap_size, rgn_size);
    let total_size = r1.1 + r2.1 + r3_size;
    mb.reserve(r1.0, r1.1).unwrap();
    mb.reserve(r2.0, r2.1).unwrap();
    let p = run_memblock_alloc(&mut mb, r3_size, SMP_CACHE_BYTES, flags);
    assert!(!p.is_null());
    assert_mem_content(p, r3_size, flags);
    assert_eq!(res(&mb, 0).size, total_size);
    assert_eq!(res(&mb, 0).base, r1.0 - r2.1 - r3_size);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn alloc_in_between_generic_check() {
    for flags in ALLOC_FLAGS {
        alloc_in_between_generic(flags, false);
        alloc_in_between_generic(flags, true);
    }
}

fn alloc_small_gaps_generic(flags: u32, bottom_up: bool) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(bottom_up);
    let region_size = SZ_1K;
    let gap_size = SZ_256;
    let mut region_end = mb.start_of_dram();
    while region_end < mb.end_of_dram() {
        mb.reserve(region_end + gap_size, region_size).unwrap();
        region_end += gap_size + region_size;
    }
    let before = mb.reserved.total_size();
    let p = run_memblock_alloc(&mut mb, region_size, SMP_CACHE_BYTES, flags);
    assert!(p.is_null());
    assert_eq!(mb.reserved.total_size(), before);
}

#[test]
fn alloc_small_gaps_generic_check() {
    for flags in ALLOC_FLAGS {
        alloc_small_gaps_generic(flags, false);
        alloc_small_gaps_generic(flags, true);
    }
}

fn alloc_all_reserved_generic(flags: u32, bottom_up: bool) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(bottom_up);
    mb.reserve(mb.start_of_dram(), MEM_SIZE).unwrap();
    let p = run_memblock_alloc(&mut mb, SZ_256, SMP_CACHE_BYTES, flags);
    assert!(p.is_null());
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), MEM_SIZE);
}

#[test]
fn alloc_all_reserved_generic_check() {
    for flags in ALLOC_FLAGS {
        alloc_all_reserved_generic(flags, false);
        alloc_all_reserved_generic(flags, true);
    }
}

fn alloc_no_space_generic(flags: u32, bottom_up: bool) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(bottom_up);
    let available_size = SZ_256;
    let reserved_size = MEM_SIZE - available_size;
    mb.reserve(mb.start_of_dram(), reserved_size).unwrap();
    let p = run_memblock_alloc(&mut mb, SZ_1K, SMP_CACHE_BYTES, flags);
    assert!(p.is_null());
    assert_eq!(mb.reserved.total_size(), reserved_size);
}

#[test]
fn alloc_no_space_generic_check() {
    for flags in ALLOC_FLAGS {
        alloc_no_space_generic(flags, false);
        alloc_no_space_generic(flags, true);
    }
}

fn alloc_limited_space_generic(flags: u32, bottom_up: bool) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(bottom_up);
    let available_size = SZ_256;
    let reserved_size = MEM_SIZE - available_size;
    mb.reserve(mb.start_of_dram(), reserved_size).unwrap();
    let p = run_memblock_alloc(&mut mb, available_size, SMP_CACHE_BYTES, flags);
    assert!(!p.is_null());
    assert_mem_content(p, available_size, flags);
    assert_eq!(res(&mb, 0).size, MEM_SIZE);
    assert_eq!(res(&mb, 0).base, mb.start_of_dram());
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), MEM_SIZE);
}

#[test]
fn alloc_limited_space_generic_check() {
    for flags in ALLOC_FLAGS {
        alloc_limited_space_generic(flags, false);
        alloc_limited_space_generic(flags, true);
    }
}

fn alloc_no_memory_generic(flags: u32, bottom_up: bool) {
    let d = Dummy::init();
    let mut mb = reset(&d);
    mb.set_bottom_up(bottom_up);
    let p = run_memblock_alloc(&mut mb, SZ_1K, SMP_CACHE_BYTES, flags);
    assert!(p.is_null());
    assert_eq!(res(&mb, 0).size, 0);
    assert_eq!(res(&mb, 0).base, 0);
    assert_eq!(mb.reserved.total_size(), 0);
}

#[test]
fn alloc_no_memory_generic_check() {
    for flags in ALLOC_FLAGS {
        alloc_no_memory_generic(flags, false);
        alloc_no_memory_generic(flags, true);
    }
}

fn alloc_too_large_generic(flags: u32, bottom_up: bool) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(bottom_up);
    let p = run_memblock_alloc(&mut mb, MEM_SIZE + SZ_2, SMP_CACHE_BYTES, flags);
    assert!(p.is_null());
    assert_eq!(res(&mb, 0).size, 0);
    assert_eq!(res(&mb, 0).base, 0);
    assert_eq!(mb.reserved.total_size(), 0);
}

#[test]
fn alloc_too_large_generic_check() {
    for flags in ALLOC_FLAGS {
        alloc_too_large_generic(flags, false);
        alloc_too_large_generic(flags, true);
    }
}

fn alloc_bottom_up_simple(flags: u32) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(true);
    let p = run_memblock_alloc(&mut mb, SZ_2, SMP_CACHE_BYTES, flags);
    assert!(!p.is_null());
    assert_mem_content(p, SZ_2, flags);
    assert_eq!(res(&mb, 0).size, SZ_2);
    assert_eq!(res(&mb, 0).base, mb.start_of_dram());
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), SZ_2);
}

#[test]
fn alloc_bottom_up_simple_check() {
    ALLOC_FLAGS.into_iter().for_each(alloc_bottom_up_simple);
}

fn alloc_bottom_up_disjoint(flags: u32) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(true);
    let r2_size = SZ_16;
    let alignment = SMP_CACHE_BYTES * 2;
    let r1 = (mb.start_of_dram() + SZ_2, SZ_2);
    let expected_start = mb.start_of_dram() + alignment;
    mb.reserve(r1.0, r1.1).unwrap();
    let p = run_memblock_alloc(&mut mb, r2_size, alignment, flags);
    assert!(!p.is_null());
    assert_mem_content(p, r2_size, flags);
    assert_eq!((res(&mb, 0).size, res(&mb, 0).base), (r1.1, r1.0));
    assert_eq!((res(&mb, 1).size, res(&mb, 1).base), (r2_size, expected_start));
    assert_eq!(mb.reserved.cnt(), 2);
    assert_eq!(mb.reserved.total_size(), r1.1 + r2_size);
}

#[test]
fn alloc_bottom_up_disjoint_check() {
    ALLOC_FLAGS.into_iter().for_each(alloc_bottom_up_disjoint);
}

fn alloc_bottom_up_before(flags: u32) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(true);
    let r1_size = SZ_512;
    let r2_size = SZ_128;
    let total_size = r1_size + r2_size;
    mb.reserve(mb.start_of_dram() + r1_size, r2_size).unwrap();
    let p = run_memblock_alloc(&mut mb, r1_size, SMP_CACHE_BYTES, flags);
    assert!(!p.is_null());
    assert_mem_content(p, r1_size, flags);
    assert_eq!(res(&mb, 0).size, total_size);
    assert_eq!(res(&mb, 0).base, mb.start_of_dram());
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn alloc_bottom_up_before_check() {
    ALLOC_FLAGS.into_iter().for_each(alloc_bottom_up_before);
}

fn alloc_bottom_up_after(flags: u32) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(true);
    let r2_size = SZ_512;
    let r1 = (mb.start_of_dram() + SMP_CACHE_BYTES, SZ_64);
    let total_size = r1.1 + r2_size;
    mb.reserve(r1.0, r1.1).unwrap();
    let p = run_memblock_alloc(&mut mb, r2_size, SMP_CACHE_BYTES, flags);
    assert!(!p.is_null());
    assert_mem_content(p, r2_size, flags);
    assert_eq!(res(&mb, 0).size, total_size);
    assert_eq!(res(&mb, 0).base, r1.0);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn alloc_bottom_up_after_check() {
    ALLOC_FLAGS.into_iter().for_each(alloc_bottom_up_after);
}

fn alloc_bottom_up_second_fit(flags: u32) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(true);
    let r3_size = SZ_1K;
    let r1 = (mb.start_of_dram(), SZ_512);
    let r2 = (r1.0 + r1.1 + SZ_512, SZ_256);
    let total_size = r1.1 + r2.1 + r3_size;
    mb.reserve(r1.0, r1.1).unwrap();
    mb.reserve(r2.0, r2.1).unwrap();
    let p = run_memblock_alloc(&mut mb, r3_size, SMP_CACHE_BYTES, flags);
    assert!(!p.is_null());
    assert_mem_content(p, r3_size, flags);
    assert_eq!(res(&mb, 1).size, r2.1 + r3_size);
    assert_eq!(res(&mb, 1).base, r2.0);
    assert_eq!(mb.reserved.cnt(), 2);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn alloc_bottom_up_second_fit_check() {
    ALLOC_FLAGS.into_iter().for_each(alloc_bottom_up_second_fit);
}

// ===========================================================================
// alloc_helpers_api.c (memblock_alloc_from)
// ===========================================================================

fn alloc_from_simple_generic(bottom_up: bool) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(bottom_up);
    let size = SZ_16;
    let min_addr = mb.end_of_dram() - SMP_CACHE_BYTES;
    let p = mb.alloc_from(size, SMP_CACHE_BYTES, min_addr);
    assert!(!p.is_null());
    assert_mem_content(p, size, TEST_F_NONE);
    assert_eq!(res(&mb, 0).size, size);
    assert_eq!(res(&mb, 0).base, min_addr);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), size);
}

#[test]
fn alloc_from_simple_generic_check() {
    alloc_from_simple_generic(false);
    alloc_from_simple_generic(true);
}

fn alloc_from_misaligned_generic(bottom_up: bool) {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(bottom_up);
    let size = SZ_32;
    let min_addr = mb.end_of_dram() - (SMP_CACHE_BYTES * 2 - 1);
    let p = mb.alloc_from(size, SMP_CACHE_BYTES, min_addr);
    assert!(!p.is_null());
    assert_mem_content(p, size, TEST_F_NONE);
    assert_eq!(res(&mb, 0).size, size);
    assert_eq!(res(&mb, 0).base, mb.end_of_dram() - SMP_CACHE_BYTES);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), size);
}

#[test]
fn alloc_from_misaligned_generic_check() {
    alloc_from_misaligned_generic(false);
    alloc_from_misaligned_generic(true);
}

#[test]
fn alloc_from_top_down_high_addr_check() {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    let size = SZ_32;
    let min_addr = mb.end_of_dram() - SZ_16;
    let p = mb.alloc_from(size, SMP_CACHE_BYTES, min_addr);
    assert!(!p.is_null());
    assert_eq!(res(&mb, 0).size, size);
    assert_eq!(res(&mb, 0).base, mb.end_of_dram() - SMP_CACHE_BYTES);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), size);
}

#[test]
fn alloc_from_top_down_no_space_above_check() {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    let r1_size = SZ_64;
    let r2_size = SZ_2;
    let total_size = r1_size + r2_size;
    let min_addr = mb.end_of_dram() - SMP_CACHE_BYTES * 2;
    mb.reserve(min_addr, r2_size).unwrap();
    let p = mb.alloc_from(r1_size, SMP_CACHE_BYTES, min_addr);
    assert!(!p.is_null());
    assert_eq!(res(&mb, 0).base, min_addr - r1_size);
    assert_eq!(res(&mb, 0).size, total_size);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), total_size);
}

#[test]
fn alloc_from_top_down_min_addr_cap_check() {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    let r1_size = SZ_64;
    let start_addr = mb.start_of_dram();
    let min_addr = start_addr - SMP_CACHE_BYTES * 3;
    mb.reserve(start_addr + r1_size, MEM_SIZE - r1_size).unwrap();
    let p = mb.alloc_from(r1_size, SMP_CACHE_BYTES, min_addr);
    assert!(!p.is_null());
    assert_eq!(res(&mb, 0).base, start_addr);
    assert_eq!(res(&mb, 0).size, MEM_SIZE);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), MEM_SIZE);
}

#[test]
fn alloc_from_bottom_up_high_addr_check() {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(true);
    let size = SZ_32;
    let min_addr = mb.end_of_dram() - SZ_8;
    let p = mb.alloc_from(size, SMP_CACHE_BYTES, min_addr);
    assert!(!p.is_null());
    assert_eq!(res(&mb, 0).size, size);
    assert_eq!(res(&mb, 0).base, mb.start_of_dram());
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), size);
}

#[test]
fn alloc_from_bottom_up_no_space_above_check() {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(true);
    let r1_size = SZ_64;
    let min_addr = mb.start_of_dram() + SZ_128;
    let r2_size = mb.end_of_dram() - min_addr;
    // No space above min_addr (the SMP_CACHE_BYTES hole left at the top is
    // too small), so the lower bound is dropped.
    mb.reserve(min_addr - SMP_CACHE_BYTES, r2_size).unwrap();
    let p = mb.alloc_from(r1_size, SMP_CACHE_BYTES, min_addr);
    assert!(!p.is_null());
    assert_eq!(res(&mb, 0).base, mb.start_of_dram());
    assert_eq!(res(&mb, 0).size, r1_size);
    assert_eq!(mb.reserved.cnt(), 2);
    assert_eq!(mb.reserved.total_size(), r1_size + r2_size);
}

#[test]
fn alloc_from_bottom_up_min_addr_cap_check() {
    let d = Dummy::init();
    let mut mb = setup_memblock(&d);
    mb.set_bottom_up(true);
    let r1_size = SZ_64;
    let start_addr = mb.start_of_dram();
    let min_addr = start_addr - SMP_CACHE_BYTES * 3;
    let p = mb.alloc_from(r1_size, SMP_CACHE_BYTES, min_addr);
    assert!(!p.is_null());
    assert_eq!(res(&mb, 0).base, start_addr);
    assert_eq!(res(&mb, 0).size, r1_size);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), r1_size);
}

// ===========================================================================
// alloc_nid_api.c / alloc_exact_nid_api.c (sample)
// ===========================================================================

/// One successful range check: allocation of `size` with expected base.
fn expect_one(mb: &Memblock, p: *mut u8, size: u64, base: PhysAddr, flags: u32) {
    assert!(!p.is_null());
    assert_mem_content(p, size, flags);
    assert_eq!(mb.virt_to_phys(p), base);
    assert_eq!(res(mb, 0).size, size);
    assert_eq!(res(mb, 0).base, base);
    assert_eq!(mb.reserved.cnt(), 1);
    assert_eq!(mb.reserved.total_size(), size);
}

#[test]
fn alloc_nid_top_down_simple_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        let size = SZ_128;
        let min_addr = mb.start_of_dram() + SMP_CACHE_BYTES * 2;
        let max_addr = min_addr + SZ_512;
        let p = run_memblock_alloc_nid(
            &mut mb,
            size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        expect_one(&mb, p, size, max_addr - size, flags);
        assert_eq!(res(&mb, 0).end(), max_addr);
    }
}

#[test]
fn alloc_nid_top_down_end_misaligned_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        let size = SZ_128;
        let misalign = SZ_2;
        let min_addr = mb.start_of_dram() + SMP_CACHE_BYTES * 2;
        let max_addr = min_addr + SZ_512 + misalign;
        let p = run_memblock_alloc_nid(
            &mut mb,
            size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        expect_one(&mb, p, size, max_addr - size - misalign, flags);
        assert!(res(&mb, 0).end() < max_addr);
    }
}

#[test]
fn alloc_nid_exact_address_generic_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        for bottom_up in [false, true] {
            let mut mb = setup_memblock(&d);
            mb.set_bottom_up(bottom_up);
            let size = SZ_1K;
            let min_addr = mb.start_of_dram() + SMP_CACHE_BYTES;
            let max_addr = min_addr + size;
            let p = run_memblock_alloc_nid(
                &mut mb,
                size,
                SMP_CACHE_BYTES,
                min_addr,
                max_addr,
                NUMA_NO_NODE,
                flags,
            );
            expect_one(&mb, p, size, min_addr, flags);
            assert_eq!(res(&mb, 0).end(), max_addr);
        }
    }
}

#[test]
fn alloc_nid_top_down_narrow_range_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        let size = SZ_256;
        let min_addr = mb.start_of_dram() + SZ_512;
        let max_addr = min_addr + SMP_CACHE_BYTES;
        let p = run_memblock_alloc_nid(
            &mut mb,
            size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        expect_one(&mb, p, size, max_addr - size, flags);
    }
}

#[test]
fn alloc_nid_bottom_up_narrow_range_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        mb.set_bottom_up(true);
        let size = SZ_256;
        let min_addr = mb.start_of_dram() + SZ_512;
        let max_addr = min_addr + SMP_CACHE_BYTES;
        let p = run_memblock_alloc_nid(
            &mut mb,
            size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        expect_one(&mb, p, size, mb.start_of_dram(), flags);
    }
}

#[test]
fn alloc_nid_low_max_generic_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        for bottom_up in [false, true] {
            let mut mb = setup_memblock(&d);
            mb.set_bottom_up(bottom_up);
            let min_addr = mb.start_of_dram();
            let max_addr = min_addr + SMP_CACHE_BYTES;
            let p = run_memblock_alloc_nid(
                &mut mb,
                SZ_1K,
                SMP_CACHE_BYTES,
                min_addr,
                max_addr,
                NUMA_NO_NODE,
                flags,
            );
            assert!(p.is_null());
            assert_eq!(mb.reserved.cnt(), 0);
        }
    }
}

#[test]
fn alloc_nid_min_reserved_generic_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        for bottom_up in [false, true] {
            let mut mb = setup_memblock(&d);
            mb.set_bottom_up(bottom_up);
            let (r1_size, r2_size) = (SZ_128, SZ_64);
            let total_size = r1_size + r2_size;
            let max_addr = mb.end_of_dram();
            let min_addr = max_addr - r2_size;
            let reserved_base = min_addr - r1_size;
            mb.reserve(reserved_base, r1_size).unwrap();
            let p = run_memblock_alloc_nid(
                &mut mb,
                r2_size,
                SMP_CACHE_BYTES,
                min_addr,
                max_addr,
                NUMA_NO_NODE,
                flags,
            );
            assert!(!p.is_null());
            assert_mem_content(p, r2_size, flags);
            assert_eq!(res(&mb, 0).size, total_size);
            assert_eq!(res(&mb, 0).base, reserved_base);
            assert_eq!(mb.reserved.cnt(), 1);
            assert_eq!(mb.reserved.total_size(), total_size);
        }
    }
}

#[test]
fn alloc_nid_max_reserved_generic_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        for bottom_up in [false, true] {
            let mut mb = setup_memblock(&d);
            mb.set_bottom_up(bottom_up);
            let (r1_size, r2_size) = (SZ_64, SZ_128);
            let total_size = r1_size + r2_size;
            let max_addr = mb.end_of_dram() - r1_size;
            let min_addr = max_addr - r2_size;
            mb.reserve(max_addr, r1_size).unwrap();
            let p = run_memblock_alloc_nid(
                &mut mb,
                r2_size,
                SMP_CACHE_BYTES,
                min_addr,
                max_addr,
                NUMA_NO_NODE,
                flags,
            );
            assert!(!p.is_null());
            assert_mem_content(p, r2_size, flags);
            assert_eq!(res(&mb, 0).size, total_size);
            assert_eq!(res(&mb, 0).base, min_addr);
            assert_eq!(mb.reserved.cnt(), 1);
            assert_eq!(mb.reserved.total_size(), total_size);
        }
    }
}

/// Layout shared by the `reserved_*` checks: r1 near the end, r2 below it.
fn reserved_pair(mb: &Memblock, r3_size: u64, gap: u64) -> ((u64, u64), (u64, u64)) {
    let r1 = (mb.end_of_dram() - SMP_CACHE_BYTES * 2, SMP_CACHE_BYTES);
    let r2_size = SZ_128;
    let r2 = (r1.0 - (r3_size + gap + r2_size), r2_size);
    (r1, r2)
}

#[test]
fn alloc_nid_top_down_reserved_with_space_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        let r3_size = SZ_64;
        let (r1, r2) = reserved_pair(&mb, r3_size, SMP_CACHE_BYTES);
        let (min_addr, max_addr) = (r2.0 + r2.1, r1.0);
        mb.reserve(r1.0, r1.1).unwrap();
        mb.reserve(r2.0, r2.1).unwrap();
        let p = run_memblock_alloc_nid(
            &mut mb,
            r3_size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        assert!(!p.is_null());
        assert_mem_content(p, r3_size, flags);
        assert_eq!(res(&mb, 1).size, r1.1 + r3_size);
        assert_eq!(res(&mb, 1).base, max_addr - r3_size);
        assert_eq!((res(&mb, 0).size, res(&mb, 0).base), (r2.1, r2.0));
        assert_eq!(mb.reserved.cnt(), 2);
        assert_eq!(mb.reserved.total_size(), r1.1 + r2.1 + r3_size);
    }
}

#[test]
fn alloc_nid_bottom_up_reserved_with_space_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        mb.set_bottom_up(true);
        let r3_size = SZ_64;
        let (r1, r2) = reserved_pair(&mb, r3_size, SMP_CACHE_BYTES);
        let (min_addr, max_addr) = (r2.0 + r2.1, r1.0);
        mb.reserve(r1.0, r1.1).unwrap();
        mb.reserve(r2.0, r2.1).unwrap();
        let p = run_memblock_alloc_nid(
            &mut mb,
            r3_size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        assert!(!p.is_null());
        assert_mem_content(p, r3_size, flags);
        assert_eq!((res(&mb, 1).size, res(&mb, 1).base), (r1.1, max_addr));
        assert_eq!((res(&mb, 0).size, res(&mb, 0).base), (r2.1 + r3_size, r2.0));
        assert_eq!(mb.reserved.cnt(), 2);
        assert_eq!(mb.reserved.total_size(), r1.1 + r2.1 + r3_size);
    }
}

#[test]
fn alloc_nid_reserved_full_merge_generic_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        for bottom_up in [false, true] {
            let mut mb = setup_memblock(&d);
            mb.set_bottom_up(bottom_up);
            let r3_size = SZ_64;
            let (r1, r2) = reserved_pair(&mb, r3_size, 0);
            let total_size = r1.1 + r2.1 + r3_size;
            let (min_addr, max_addr) = (r2.0 + r2.1, r1.0);
            mb.reserve(r1.0, r1.1).unwrap();
            mb.reserve(r2.0, r2.1).unwrap();
            let p = run_memblock_alloc_nid(
                &mut mb,
                r3_size,
                SMP_CACHE_BYTES,
                min_addr,
                max_addr,
                NUMA_NO_NODE,
                flags,
            );
            assert!(!p.is_null());
            assert_mem_content(p, r3_size, flags);
            assert_eq!((res(&mb, 0).size, res(&mb, 0).base), (total_size, r2.0));
            assert_eq!(mb.reserved.cnt(), 1);
            assert_eq!(mb.reserved.total_size(), total_size);
        }
    }
}

#[test]
fn alloc_nid_top_down_reserved_no_space_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        let r3_size = SZ_256;
        let gap_size = SMP_CACHE_BYTES;
        let r1 = (mb.end_of_dram() - SMP_CACHE_BYTES * 2, SMP_CACHE_BYTES);
        let r2 = (r1.0 - (SZ_128 + gap_size), SZ_128);
        let (min_addr, max_addr) = (r2.0 + r2.1, r1.0);
        mb.reserve(r1.0, r1.1).unwrap();
        mb.reserve(r2.0, r2.1).unwrap();
        let p = run_memblock_alloc_nid(
            &mut mb,
            r3_size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        assert!(!p.is_null());
        assert_mem_content(p, r3_size, flags);
        assert_eq!((res(&mb, 1).size, res(&mb, 1).base), (r1.1, r1.0));
        assert_eq!(
            (res(&mb, 0).size, res(&mb, 0).base),
            (r2.1 + r3_size, r2.0 - r3_size)
        );
        assert_eq!(mb.reserved.cnt(), 2);
        assert_eq!(mb.reserved.total_size(), r1.1 + r2.1 + r3_size);
    }
}

#[test]
fn alloc_nid_bottom_up_reserved_no_space_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        mb.set_bottom_up(true);
        let r3_size = SZ_256;
        let gap_size = SMP_CACHE_BYTES;
        let r1 = (mb.end_of_dram() - SMP_CACHE_BYTES * 2, SMP_CACHE_BYTES);
        let r2 = (r1.0 - (SZ_128 + gap_size), SZ_128);
        let (min_addr, max_addr) = (r2.0 + r2.1, r1.0);
        mb.reserve(r1.0, r1.1).unwrap();
        mb.reserve(r2.0, r2.1).unwrap();
        let p = run_memblock_alloc_nid(
            &mut mb,
            r3_size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        assert!(!p.is_null());
        assert_mem_content(p, r3_size, flags);
        assert_eq!(
            (res(&mb, 0).size, res(&mb, 0).base),
            (r3_size, mb.start_of_dram())
        );
        assert_eq!((res(&mb, 1).size, res(&mb, 1).base), (r2.1, r2.0));
        assert_eq!((res(&mb, 2).size, res(&mb, 2).base), (r1.1, r1.0));
        assert_eq!(mb.reserved.cnt(), 3);
        assert_eq!(mb.reserved.total_size(), r1.1 + r2.1 + r3_size);
    }
}

#[test]
fn alloc_nid_reserved_all_generic_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        for bottom_up in [false, true] {
            let mut mb = setup_memblock(&d);
            mb.set_bottom_up(bottom_up);
            let gap_size = SMP_CACHE_BYTES;
            let r1 = (mb.end_of_dram() - SMP_CACHE_BYTES, SMP_CACHE_BYTES);
            let r2 = (mb.start_of_dram(), MEM_SIZE - (r1.1 + gap_size));
            let (min_addr, max_addr) = (r2.0 + r2.1, r1.0);
            mb.reserve(r1.0, r1.1).unwrap();
            mb.reserve(r2.0, r2.1).unwrap();
            let p = run_memblock_alloc_nid(
                &mut mb,
                SZ_256,
                SMP_CACHE_BYTES,
                min_addr,
                max_addr,
                NUMA_NO_NODE,
                flags,
            );
            assert!(p.is_null());
            assert_eq!(mb.reserved.cnt(), 2);
        }
    }
}

#[test]
fn alloc_nid_top_down_cap_max_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        let size = SZ_256;
        let min_addr = mb.end_of_dram() - SZ_1K;
        let max_addr = mb.end_of_dram() + SZ_256;
        let p = run_memblock_alloc_nid(
            &mut mb,
            size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        expect_one(&mb, p, size, mb.end_of_dram() - size, flags);
    }
}

#[test]
fn alloc_nid_top_down_cap_min_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        let size = SZ_1K;
        let min_addr = mb.start_of_dram() - SZ_256;
        let max_addr = mb.end_of_dram();
        let p = run_memblock_alloc_nid(
            &mut mb,
            size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        expect_one(&mb, p, size, mb.end_of_dram() - size, flags);
    }
}

#[test]
fn alloc_nid_bottom_up_simple_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        mb.set_bottom_up(true);
        let size = SZ_128;
        let min_addr = mb.start_of_dram() + SMP_CACHE_BYTES * 2;
        let max_addr = min_addr + SZ_512;
        let p = run_memblock_alloc_nid(
            &mut mb,
            size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        expect_one(&mb, p, size, min_addr, flags);
        assert!(res(&mb, 0).end() < max_addr);
    }
}

#[test]
fn alloc_nid_bottom_up_start_misaligned_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        mb.set_bottom_up(true);
        let size = SZ_128;
        let misalign = SZ_2;
        let min_addr = mb.start_of_dram() + misalign;
        let max_addr = min_addr + SZ_512;
        let p = run_memblock_alloc_nid(
            &mut mb,
            size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        expect_one(&mb, p, size, min_addr + (SMP_CACHE_BYTES - misalign), flags);
        assert!(res(&mb, 0).end() < max_addr);
    }
}

#[test]
fn alloc_nid_bottom_up_cap_max_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        mb.set_bottom_up(true);
        let size = SZ_256;
        let min_addr = mb.start_of_dram() + SZ_1K;
        let max_addr = mb.end_of_dram() + SZ_256;
        let p = run_memblock_alloc_nid(
            &mut mb,
            size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        expect_one(&mb, p, size, min_addr, flags);
    }
}

#[test]
fn alloc_nid_bottom_up_cap_min_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_memblock(&d);
        mb.set_bottom_up(true);
        let size = SZ_1K;
        let min_addr = mb.start_of_dram();
        let max_addr = mb.end_of_dram() - SZ_256;
        let p = run_memblock_alloc_nid(
            &mut mb,
            size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            NUMA_NO_NODE,
            flags,
        );
        expect_one(&mb, p, size, mb.start_of_dram(), flags);
    }
}

// --- NUMA ------------------------------------------------------------------

const NUMA_FLAGS: [u32; 2] = [TEST_F_NONE, TEST_F_RAW];

#[test]
fn alloc_nid_top_down_numa_simple_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        let nid_req = 3;
        let req_node = mem(&mb, nid_req);
        assert!(SZ_4 <= req_node.size);
        let size = req_node.size / SZ_4;
        let (min_addr, max_addr) = (mb.start_of_dram(), mb.end_of_dram());
        let p = run_memblock_alloc_nid(
            &mut mb,
            size,
            SMP_CACHE_BYTES,
            min_addr,
            max_addr,
            nid_req as i32,
            flags,
        );
        expect_one(&mb, p, size, req_node.end() - size, flags);
        assert!(req_node.base <= res(&mb, 0).base);
    }
}

#[test]
fn alloc_nid_top_down_numa_small_node_check() {
    let d = Dummy::init();
    for flags in NUMA_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        let req_node = mem(&mb, 1);
        let exp_node = mem(&mb, 6);
        let size = SZ_2 * req_node.size;
        let (min_addr, max_addr) = (mb.start_of_dram(), mb.end_of_dram());
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 1, flags);
        expect_one(&mb, p, size, exp_node.end() - size, flags);
        assert!(exp_node.base <= res(&mb, 0).base);
    }
}

#[test]
fn alloc_exact_nid_numa_small_node_generic_check() {
    // The exact-node variant may not fall back: no allocation, both ways.
    let d = Dummy::init();
    for bottom_up in [false, true] {
        let mut mb = setup_numa_memblock(&d);
        mb.set_bottom_up(bottom_up);
        let size = SZ_2 * mem(&mb, 1).size;
        let (min_addr, max_addr) = (mb.start_of_dram(), mb.end_of_dram());
        let p = mb.alloc_exact_nid_raw(size, SMP_CACHE_BYTES, min_addr, max_addr, 1);
        assert!(p.is_null());
        assert_eq!(mb.reserved.cnt(), 0);
    }
}

#[test]
fn alloc_nid_top_down_numa_node_reserved_check() {
    let d = Dummy::init();
    for flags in NUMA_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        let req_node = mem(&mb, 2);
        let exp_node = mem(&mb, 6);
        let size = req_node.size;
        let (min_addr, max_addr) = (mb.start_of_dram(), mb.end_of_dram());
        mb.reserve(req_node.base, req_node.size).unwrap();
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 2, flags);
        assert!(!p.is_null());
        assert_mem_content(p, size, flags);
        assert_eq!(res(&mb, 1).size, size);
        assert_eq!(res(&mb, 1).base, exp_node.end() - size);
        assert!(exp_node.base <= res(&mb, 1).base);
        assert_eq!(mb.reserved.cnt(), 2);
        assert_eq!(mb.reserved.total_size(), size + req_node.size);
    }
}

#[test]
fn alloc_nid_top_down_numa_part_reserved_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        let req_node = mem(&mb, 4);
        assert!(SZ_8 <= req_node.size);
        let r1 = (req_node.base, req_node.size / SZ_2);
        let size = r1.1 / SZ_4;
        let (min_addr, max_addr) = (mb.start_of_dram(), mb.end_of_dram());
        mb.reserve(r1.0, r1.1).unwrap();
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 4, flags);
        assert!(!p.is_null());
        assert_mem_content(p, size, flags);
        assert_eq!(res(&mb, 1).size, size);
        assert_eq!(res(&mb, 1).base, req_node.end() - size);
        assert!(req_node.base <= res(&mb, 1).base);
        assert_eq!(mb.reserved.cnt(), 2);
        assert_eq!(mb.reserved.total_size(), size + r1.1);
    }
}

#[test]
fn alloc_nid_top_down_numa_part_reserved_fallback_check() {
    let d = Dummy::init();
    for flags in NUMA_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        let req_node = mem(&mb, 4);
        let exp_node = mem(&mb, NUMA_NODES - 1);
        assert!(SZ_4 <= req_node.size);
        let size = req_node.size / SZ_2;
        let r1 = (req_node.base + size / SZ_2, size);
        let (min_addr, max_addr) = (mb.start_of_dram(), mb.end_of_dram());
        mb.reserve(r1.0, r1.1).unwrap();
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 4, flags);
        assert!(!p.is_null());
        assert_mem_content(p, size, flags);
        assert_eq!(res(&mb, 1).size, size);
        assert_eq!(res(&mb, 1).base, exp_node.end() - size);
        assert!(exp_node.base <= res(&mb, 1).base);
        assert_eq!(mb.reserved.cnt(), 2);
        assert_eq!(mb.reserved.total_size(), size + r1.1);
    }
}

#[test]
fn alloc_nid_top_down_numa_split_range_low_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        let req_node = mem(&mb, 2);
        let size = SZ_512;
        let min_addr = req_node.end() - SZ_256;
        let max_addr = min_addr + size;
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 2, flags);
        expect_one(&mb, p, size, req_node.end() - size, flags);
        assert!(req_node.base <= res(&mb, 0).base);
    }
}

#[test]
fn alloc_nid_top_down_numa_split_range_high_check() {
    let d = Dummy::init();
    for flags in NUMA_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        let exp_node = mem(&mb, 2);
        let size = SZ_512;
        let min_addr = exp_node.end() - SZ_256;
        let max_addr = min_addr + size;
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 3, flags);
        expect_one(&mb, p, size, exp_node.end() - size, flags);
        assert!(exp_node.base <= res(&mb, 0).base);
    }
}

#[test]
fn alloc_nid_top_down_numa_no_overlap_split_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        let req_node = mem(&mb, 2);
        let node2 = mem(&mb, 6);
        let size = SZ_512;
        let min_addr = node2.base - SZ_256;
        let max_addr = min_addr + size;
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 2, flags);
        expect_one(&mb, p, size, req_node.end() - size, flags);
        assert!(req_node.base <= res(&mb, 0).base);
    }
}

#[test]
fn alloc_nid_top_down_numa_no_overlap_low_check() {
    let d = Dummy::init();
    for flags in NUMA_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        let min_node = mem(&mb, 2);
        let max_node = mem(&mb, 5);
        let size = SZ_64;
        let (min_addr, max_addr) = (min_node.base, max_node.end());
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 0, flags);
        expect_one(&mb, p, size, max_addr - size, flags);
        assert!(max_node.base <= res(&mb, 0).base);
    }
}

#[test]
fn alloc_exact_nid_top_down_numa_no_overlap_low_check() {
    let d = Dummy::init();
    let mut mb = setup_numa_memblock(&d);
    let req_node = mem(&mb, 0);
    let (min_addr, max_addr) = (mem(&mb, 2).base, mem(&mb, 5).end());
    let size = SZ_64;
    let p = mb.alloc_exact_nid_raw(size, SMP_CACHE_BYTES, min_addr, max_addr, 0);
    expect_one(&mb, p, size, req_node.end() - size, TEST_F_RAW);
}

#[test]
fn alloc_nid_top_down_numa_no_overlap_high_check() {
    let d = Dummy::init();
    for flags in NUMA_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        let min_node = mem(&mb, 2);
        let max_node = mem(&mb, 5);
        let size = SZ_64;
        let (min_addr, max_addr) = (min_node.base, max_node.end());
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 7, flags);
        expect_one(&mb, p, size, max_addr - size, flags);
        assert!(max_node.base <= res(&mb, 0).base);
    }
}

#[test]
fn alloc_nid_bottom_up_numa_simple_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        mb.set_bottom_up(true);
        let req_node = mem(&mb, 3);
        let size = req_node.size / SZ_4;
        let (min_addr, max_addr) = (mb.start_of_dram(), mb.end_of_dram());
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 3, flags);
        expect_one(&mb, p, size, req_node.base, flags);
        assert!(res(&mb, 0).end() <= req_node.end());
    }
}

#[test]
fn alloc_nid_bottom_up_numa_small_node_check() {
    let d = Dummy::init();
    for flags in NUMA_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        mb.set_bottom_up(true);
        let exp_node = mem(&mb, 0);
        let size = SZ_2 * mem(&mb, 1).size;
        let (min_addr, max_addr) = (mb.start_of_dram(), mb.end_of_dram());
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 1, flags);
        expect_one(&mb, p, size, exp_node.base, flags);
        assert!(res(&mb, 0).end() <= exp_node.end());
    }
}

#[test]
fn alloc_nid_bottom_up_numa_node_reserved_check() {
    let d = Dummy::init();
    for flags in NUMA_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        mb.set_bottom_up(true);
        let req_node = mem(&mb, 2);
        let exp_node = mem(&mb, 0);
        let size = req_node.size;
        let (min_addr, max_addr) = (mb.start_of_dram(), mb.end_of_dram());
        mb.reserve(req_node.base, req_node.size).unwrap();
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 2, flags);
        assert!(!p.is_null());
        assert_mem_content(p, size, flags);
        assert_eq!((res(&mb, 0).size, res(&mb, 0).base), (size, exp_node.base));
        assert!(res(&mb, 0).end() <= exp_node.end());
        assert_eq!(mb.reserved.cnt(), 2);
        assert_eq!(mb.reserved.total_size(), size + req_node.size);
    }
}

#[test]
fn alloc_nid_bottom_up_numa_part_reserved_check() {
    let d = Dummy::init();
    for flags in NID_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        mb.set_bottom_up(true);
        let req_node = mem(&mb, 4);
        let r1 = (req_node.base, req_node.size / SZ_2);
        let size = r1.1 / SZ_4;
        let total_size = size + r1.1;
        let (min_addr, max_addr) = (mb.start_of_dram(), mb.end_of_dram());
        mb.reserve(r1.0, r1.1).unwrap();
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 4, flags);
        assert!(!p.is_null());
        assert_mem_content(p, size, flags);
        assert_eq!((res(&mb, 0).size, res(&mb, 0).base), (total_size, req_node.base));
        assert!(res(&mb, 0).end() <= req_node.end());
        assert_eq!(mb.reserved.cnt(), 1);
        assert_eq!(mb.reserved.total_size(), total_size);
    }
}

#[test]
fn alloc_nid_bottom_up_numa_part_reserved_fallback_check() {
    let d = Dummy::init();
    for flags in NUMA_FLAGS {
        let mut mb = setup_numa_memblock(&d);
        mb.set_bottom_up(true);
        let req_node = mem(&mb, 4);
        let exp_node = mem(&mb, 0);
        let size = req_node.size / SZ_2;
        let r1 = (req_node.base + size / SZ_2, size);
        let (min_addr, max_addr) = (mb.start_of_dram(), mb.end_of_dram());
        mb.reserve(r1.0, r1.1).unwrap();
        let p = run_memblock_alloc_nid(&mut mb, size, SMP_CACHE_BYTES, min_addr, max_addr, 4, flags);
        assert!(!p.is_null());
        assert_mem_content(p, size, flags);
        assert_eq!((res(&mb, 0).size, res(&mb, 0).base), (size, exp_node.base));
        assert!(res(&mb, 0).end() <= exp_node.end());
        assert_eq!(mb.reserved.cnt(), 2);
        assert_eq!(mb.reserved.total_size(), size + r1.1);
    }
}

#[test]
fn alloc_nid_numa_no_node_sentinel_and_free_ranges() {
    // Not in the simulator: the free-range walk per node matches the layout.
    let d = Dummy::init();
    let mut mb = setup_numa_memblock(&d);
    let node4 = mem(&mb, 4);
    mb.reserve(node4.base + SZ_512, SZ_512).unwrap();
    let ranges: Vec<_> = mb.free_ranges(4).collect();
    assert_eq!(
        ranges,
        [
            (node4.base, node4.base + SZ_512, 4),
            (node4.base + SZ_1K, node4.end(), 4)
        ]
    );
    assert_eq!(mb.free_ranges(NUMA_NO_NODE).count(), NUMA_NODES + 1);
    let total: u64 = mb.free_ranges(NUMA_NO_NODE).map(|(s, e, _)| e - s).sum();
    assert_eq!(total, MEM_SIZE - SZ_512);
    // A SZ_2K node holds a SZ_2K allocation only when nothing is reserved.
    assert_eq!(node4.size, SZ_2K);
    assert_eq!(mb.phys_alloc_try_nid(SZ_2K, SZ_64, 4), mem(&mb, 7).base);
}

// ===========================================================================
// debugfs
// ===========================================================================

#[test]
fn memblock_debugfs_show_format() {
    let mut mb = Memblock::new();
    mb.add_node(0x10_0000, 0x7ff0_0000, 0, MemblockFlags::NONE)
        .unwrap();
    mb.add(0x1_0000_0000, 0x4000_0000).unwrap();
    mb.mark_mirror(0x1_0000_0000, 0x1000).unwrap();
    mb.reserve(0x100_0000, 0x20_0000).unwrap();
    let mut out = String::new();
    mb.debugfs_show(Which::Memory, &mut out).unwrap();
    assert_eq!(
        out,
        concat!(
            "   0: 0x0000000000100000..0x000000007fffffff    0 NONE\n",
            "   1: 0x0000000100000000..0x0000000100000fff    x MIRROR\n",
            "   2: 0x0000000100001000..0x000000013fffffff    x NONE\n",
        )
    );
    out.clear();
    mb.debugfs_show(Which::Reserved, &mut out).unwrap();
    assert_eq!(out, "   0: 0x0000000001000000..0x00000000011fffff    x NONE\n");
}
