//! Memory is sparse and goes back to the host: untouched RAM costs nothing,
//! and freed blocks of a pageblock or more are punched out of the RAM memfd.
use kmem::*;
use kmem_hosted::Machine;
use std::sync::atomic::Ordering;

#[test]
fn a_large_machine_costs_no_memory_until_touched() {
    let m = Machine::boot("quiet mem=64G nr_cpus=2 kswapd=off").unwrap();
    let resident = m.ram().ram_resident_bytes().unwrap();
    // The memmap of 64 GiB is 1 GiB of struct pages (the kernel's 1.56%); only
    // the descriptors boot wrote — reserved pages, one head per free 4 MiB
    // block — are resident: about 0.12% of the machine's RAM.
    let memmap = (m.max_pfn() * std::mem::size_of::<Page>()) as u64;
    assert!(
        resident < (64 << 30) / 512 && resident < memmap / 8,
        "a fresh 64G machine holds {resident} bytes of host memory (memmap {memmap})"
    );
}

#[test]
fn freed_blocks_go_back_to_the_host() {
    let m = Machine::boot("quiet mem=1G nr_cpus=1 kswapd=off").unwrap();
    let base = m.ram().ram_resident_bytes().unwrap();
    let mut blocks = Vec::new();
    for _ in 0..64 {
        let p = m.alloc_pages(GFP_KERNEL, 10).unwrap();
        let a = m.page_address(p).unwrap();
        // SAFETY: we own the 4 MiB block.
        unsafe { std::ptr::write_bytes(a.as_ptr(), 0x5a, 4 << 20) };
        blocks.push(p);
    }
    let used = m.ram().ram_resident_bytes().unwrap();
    assert!(
        used >= base + (250 << 20),
        "256 MiB written, resident grew from {base} to {used}"
    );
    let reported = m.events.pages_reported.load(Ordering::Relaxed);
    for p in blocks {
        // SAFETY: allocated above.
        unsafe { m.__free_pages(p, 10) };
    }
    let after = m.ram().ram_resident_bytes().unwrap();
    assert!(m.events.pages_reported.load(Ordering::Relaxed) > reported);
    assert!(
        after < base + (32 << 20),
        "after freeing, resident is {after} (was {base} before, {used} in use)"
    );
    // Reported blocks read as zero, so __GFP_ZERO has nothing to clear.
    let p = m.alloc_pages(GFP_KERNEL | __GFP_ZERO, 10).unwrap();
    let a = m.page_address(p).unwrap();
    // SAFETY: we own the block.
    let s = unsafe { std::slice::from_raw_parts(a.as_ptr(), 4 << 20) };
    assert!(s.iter().all(|&b| b == 0));
    // SAFETY: allocated above.
    unsafe { m.__free_pages(p, 10) };
}

#[test]
fn reporting_waits_for_a_sixty_fourth_of_ram() {
    let m = Machine::boot("quiet mem=4G nr_cpus=1 kswapd=off").unwrap();
    assert_eq!(m.page_reporting_threshold(), m.totalram_pages() / 64);
    let small = Machine::boot("quiet mem=256M nr_cpus=1 kswapd=off").unwrap();
    assert_eq!(small.page_reporting_threshold(), 16 << 8, "16 MiB at least");
    // 8 blocks of 4 MiB, written and freed: 32 MiB, below 1/64 of 4 GiB: kept
    // resident for reuse; 16 more pass the threshold and all go back.
    let write_and_free = |n: usize| {
        let blocks: Vec<_> = (0..n)
            .map(|_| {
                let p = m.alloc_pages(GFP_KERNEL, 10).unwrap();
                // SAFETY: we own the 4 MiB block.
                unsafe { std::ptr::write_bytes(m.page_address(p).unwrap().as_ptr(), 0x5a, 4 << 20) };
                p
            })
            .collect();
        for p in blocks {
            // SAFETY: allocated above.
            unsafe { m.__free_pages(p, 10) };
        }
    };
    let reported = m.events.pages_reported.load(Ordering::Relaxed);
    write_and_free(8);
    assert_eq!(
        m.events.pages_reported.load(Ordering::Relaxed),
        reported,
        "32 MiB kept"
    );
    write_and_free(24);
    assert!(m.events.pages_reported.load(Ordering::Relaxed) >= reported + (64 << 8));
}
