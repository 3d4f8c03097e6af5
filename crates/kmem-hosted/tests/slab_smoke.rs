use kmem::slab::*;
use kmem::*;
use kmem_hosted::Machine;

#[test]
fn cache_alloc_free_and_destroy() {
    let m = Machine::boot("quiet mem=256M nr_cpus=2 kswapd=off").unwrap();
    let s = m.kmem_cache_create("test-64", 64, 0, SlabFlags(0), None).unwrap();
    let mut v = Vec::new();
    for i in 0..10000 {
        // SAFETY: a live cache of this machine (created and not destroyed).
        let p = unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { *(p.as_ptr() as *mut u64) = i };
        v.push(p);
    }
    for (i, p) in v.iter().enumerate() {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        assert_eq!(unsafe { *(p.as_ptr() as *const u64) }, i as u64);
    }
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let (active, total, _, _) = m.cache_counts(unsafe { s.as_ref() });
    assert_eq!(active, 10000, "total {total}");
    for p in v {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.kmem_cache_free(s, p.as_ptr()) };
    }
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let (active, _, _, _) = m.cache_counts(unsafe { s.as_ref() });
    assert_eq!(active, 0);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
    let mut n = 0;
    m.for_each_cache(|c| {
        n += 1;
        let _ = c.name();
    });
    assert!(n > 30);
    println!("{}", m.dmesg());
}

#[test]
fn threads_free_each_others_objects() {
    let m = std::sync::Arc::new(Machine::boot("quiet mem=256M nr_cpus=2 kswapd=off").unwrap());
    let s = m
        .kmem_cache_create("xthread", 100, 0, SlabFlags(0), None)
        .unwrap();
    let sp = s.as_ptr() as usize;
    let (tx, rx) = std::sync::mpsc::sync_channel::<usize>(1024);
    let m2 = m.clone();
    let prod = std::thread::spawn(move || {
        let s = std::ptr::NonNull::new(sp as *mut KmemCache).unwrap();
        for _ in 0..200_000 {
            // SAFETY: a live cache of this machine (created and not destroyed).
            let p = unsafe { m2.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap();
            // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
            unsafe { std::ptr::write_bytes(p.as_ptr(), 0xab, 100) };
            tx.send(p.as_ptr() as usize).unwrap();
        }
    });
    let mut n = 0;
    while let Ok(p) = rx.recv() {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        assert_eq!(unsafe { *(p as *const u8).add(99) }, 0xab);
        // SAFETY: allocated from this machine above, freed once and not used afterwards.
        unsafe { m.kmem_cache_free(s, p as *mut u8) };
        n += 1;
    }
    prod.join().unwrap();
    assert_eq!(n, 200_000);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    let (active, _, _, _) = m.cache_counts(unsafe { s.as_ref() });
    assert_eq!(active, 0);
    // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
    unsafe { m.kmem_cache_destroy(s) };
    assert!(!m.dmesg().contains("BUG"), "{}", m.dmesg());
}
