//! `/proc/slabinfo` and the slab lines of meminfo, zoneinfo and vmstat.
//!
//! The format is checked column by column against the sample from a real
//! 6.18 kernel (`shared/reference/proc-samples/slabinfo.txt`, whose lines are
//! copied below), the numbers against what the tests allocate.

use kmem::proc::{self, SlabInfo};
use kmem::slab::{KmemCache, SLAB_HWCACHE_ALIGN, SLAB_RECLAIM_ACCOUNT};
use kmem::GFP_KERNEL;
use kmem_hosted::Machine;
use std::ptr::NonNull;

mod common;

fn boot(cmdline: &str) -> Machine {
    Machine::boot(cmdline).expect("boot")
}

fn slabinfo(m: &Machine) -> String {
    m.proc_read("slabinfo").expect("slabinfo")
}

/// The fields of one cache line: name, then the 11 numbers (tunables and slabdata included).
fn fields(line: &str) -> (String, Vec<usize>) {
    let mut it = line.split_whitespace();
    let name = it.next().unwrap().to_string();
    let nums: Vec<usize> = it
        .filter(|w| *w != ":" && *w != "tunables" && *w != "slabdata")
        .map(|w| w.parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 11, "{line:?}");
    (name, nums)
}

/// The line of cache `name`, if listed.
fn line_of<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .skip(2)
        .find(|l| l.split_whitespace().next() == Some(name))
}

/// Numbers of cache `name`: (active_objs, num_objs, objsize, objperslab, pagesperslab, active_slabs, num_slabs).
fn numbers(m: &Machine, name: &str) -> (usize, usize, usize, usize, usize, usize, usize) {
    let text = slabinfo(m);
    let l = line_of(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
    let (_, n) = fields(l);
    (n[0], n[1], n[2], n[3], n[4], n[8], n[9])
}

/// Lines of the real kernel's file (the header and a few caches, long names included).
const SAMPLE: &[&str] = &[
    "slabinfo - version: 2.1",
    "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>",
    "btrfs_ordered_extent      0      0    416   19    2 : tunables    0    0    0 : slabdata      0      0      0",
    "bio-312               12     12    320   12    1 : tunables    0    0    0 : slabdata      1      1      0",
    "ftrace_event_field   8246   8395     56   73    1 : tunables    0    0    0 : slabdata    115    115      0",
    "kmalloc-8k            32     32   8192    4    8 : tunables    0    0    0 : slabdata      8      8      0",
    "kmalloc-rcl-8          0      0      8  512    1 : tunables    0    0    0 : slabdata      0      0      0",
    "kmalloc-96          3276   3276     96   42    1 : tunables    0    0    0 : slabdata     78     78      0",
    "kmem_cache           256    256    256   16    1 : tunables    0    0    0 : slabdata     16     16      0",
];

/// Where the text after the name starts in a line: the name padded to 17
/// columns and a space, or the name and a space when it is longer.
fn after_name(line: &str) -> usize {
    let name = line.split_whitespace().next().unwrap();
    name.len().max(17) + 1
}

/// A line of ours has the sample's layout: same text after the name for the
/// same numbers (so equal column widths), and the same total width.
fn assert_layout_like_sample(line: &str) {
    let (name, n) = fields(line);
    // Re-render the sample's layout by hand: "%-17s %6lu %6lu %6u %4u %4d : tunables %4u %4u %4u : slabdata %6lu %6lu %6lu".
    let expect = format!(
        "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : tunables {:>4} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6}",
        name, n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9], n[10]
    );
    assert_eq!(line, expect);
    // And the hand-rendering reproduces the kernel's own lines.
    let rest = &line[after_name(line)..];
    assert_eq!(&rest[6..7], " ", "{line:?}");
    assert!(
        rest.contains(" : tunables ") && rest.contains(" : slabdata "),
        "{line:?}"
    );
}

#[test]
fn the_layout_reproduces_the_kernel_sample() {
    for l in &SAMPLE[2..] {
        assert_layout_like_sample(l);
    }
    // Column positions: every short-named sample line has " : tunables" at the same column.
    let col = |l: &str| l.find(" : tunables").unwrap();
    assert_eq!(col(SAMPLE[3]), col(SAMPLE[8]));
    assert_eq!(col(SAMPLE[3]), 17 + 1 + 6 + 1 + 6 + 1 + 6 + 1 + 4 + 1 + 4);
}

#[test]
fn header_and_every_line_are_in_the_kernel_format() {
    let m = boot("quiet mem=256M nr_cpus=2");
    let text = slabinfo(&m);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], SAMPLE[0]);
    assert_eq!(lines[1], SAMPLE[1]);
    assert!(text.ends_with('\n'));
    let tunables_col = SAMPLE[3].find(" : tunables").unwrap();
    let slabdata_col = SAMPLE[3].find(" : slabdata").unwrap();
    for l in &lines[2..] {
        assert_layout_like_sample(l);
        let (_, n) = fields(l);
        if after_name(l) == 18 && n.iter().all(|&x| x < 1_000_000) {
            // Same columns as the sample's short-named lines.
            assert_eq!(l.find(" : tunables"), Some(tunables_col), "{l:?}");
            assert_eq!(l.find(" : slabdata"), Some(slabdata_col), "{l:?}");
            assert_eq!(l.len(), SAMPLE[3].len(), "{l:?}");
        }
        // SLUB: tunables 0 0 0, active_slabs == num_slabs, sharedavail 0.
        assert_eq!(&n[5..8], &[0, 0, 0], "{l:?}");
        assert_eq!(n[8], n[9], "{l:?}");
        assert_eq!(n[10], 0, "{l:?}");
        // active <= num = slabs * objects (no slab here fell back to the min order).
        assert!(n[0] <= n[1], "{l:?}");
        assert_eq!(n[1], n[9] * n[3], "{l:?}");
    }
}

#[test]
fn every_kmalloc_cache_and_kmem_cache_are_listed_in_kernel_order() {
    let m = boot("quiet mem=256M nr_cpus=2");
    let text = slabinfo(&m);
    let names: Vec<&str> = text
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let sizes = [
        "8k", "4k", "2k", "1k", "512", "256", "128", "64", "32", "16", "8", "192", "96",
    ];
    let mut expect: Vec<String> = Vec::new();
    // Newest first: the kernel creates kmalloc caches type by type (normal,
    // reclaimable, DMA), index by index (96 and 192 first), after kmem_cache.
    for prefix in ["dma-kmalloc-", "kmalloc-rcl-", "kmalloc-"] {
        for s in sizes {
            expect.push(format!("{prefix}{s}"));
        }
    }
    expect.push("kmem_cache".into());
    let tail = &names[names.len() - expect.len()..];
    assert_eq!(
        tail,
        expect.iter().map(String::as_str).collect::<Vec<_>>().as_slice()
    );
    // objsize of kmalloc-N is N.
    for s in sizes {
        let bytes = match s {
            "8k" => 8192,
            "4k" => 4096,
            "2k" => 2048,
            "1k" => 1024,
            _ => s.parse().unwrap(),
        };
        for prefix in ["dma-kmalloc-", "kmalloc-rcl-", "kmalloc-"] {
            assert_eq!(numbers(&m, &format!("{prefix}{s}")).2, bytes, "{prefix}{s}");
        }
    }
    // A new cache comes first.
    let s = m
        .kmem_cache_create("newest_cache", 40, 0, SLAB_HWCACHE_ALIGN, None)
        .unwrap();
    let text = slabinfo(&m);
    assert!(
        text.lines().nth(2).unwrap().starts_with("newest_cache "),
        "{text}"
    );
    // SAFETY: created above, no objects.
    unsafe { m.kmem_cache_destroy(s) };
}

#[test]
fn slub_orders_match_the_kernel_on_two_cpus() {
    // Reference §1.3 / the sample VM (2 CPUs): order and objects per slab.
    let m = boot("quiet mem=256M nr_cpus=2");
    for (name, size, objs, pages) in [
        ("kmalloc-8k", 8192, 4, 8),
        ("kmalloc-4k", 4096, 8, 8),
        ("kmalloc-2k", 2048, 16, 8),
        ("kmalloc-1k", 1024, 16, 4),
        ("kmalloc-512", 512, 16, 2),
        ("kmalloc-256", 256, 16, 1),
        ("kmalloc-192", 192, 21, 1),
        ("kmalloc-128", 128, 32, 1),
        ("kmalloc-96", 96, 42, 1),
        ("kmalloc-64", 64, 64, 1),
        ("kmalloc-8", 8, 512, 1),
        ("kmem_cache", 256, 16, 1),
    ] {
        let (_, _, objsize, per, pps, _, _) = numbers(&m, name);
        if name == "kmem_cache" {
            // Our struct kmem_cache has its own size; only check consistency.
            assert_eq!(per, (4096 * pps) / objsize, "{name}");
            continue;
        }
        assert_eq!((objsize, per, pps), (size, objs, pages), "{name}");
    }
}

/// `kmem.kmalloc_min_objects=N` is `slub_min_objects=N` for the kmalloc
/// caches (all three types) alone: other caches keep the kernel's order.
#[test]
fn kmalloc_min_objects_raises_the_kmalloc_orders_alone() {
    let default = boot("quiet mem=256M nr_cpus=2");
    let m = boot("quiet mem=256M nr_cpus=2 kmem.kmalloc_min_objects=128");
    for (size, objs, pages) in [
        ("8", 512, 1),
        ("32", 128, 1),
        ("64", 128, 2),
        ("96", 170, 4),
        ("128", 128, 4),
        ("192", 170, 8),
        ("256", 128, 8),
        ("512", 64, 8),
        ("1k", 32, 8),
        ("8k", 4, 8),
    ] {
        for prefix in ["kmalloc-", "kmalloc-rcl-", "dma-kmalloc-"] {
            let name = format!("{prefix}{size}");
            let (_, _, _, per, pps, _, _) = numbers(&m, &name);
            assert_eq!((per, pps), (objs, pages), "{name}");
        }
    }
    let (_, _, _, per, pps, _, _) = numbers(&m, "kmem_cache");
    let (_, _, _, dper, dpps, _, _) = numbers(&default, "kmem_cache");
    assert_eq!((per, pps), (dper, dpps), "kmem_cache keeps its order");
    let s = m
        .kmem_cache_create("t_vm_area", 176, 64, kmem::slab::SlabFlags(0), None)
        .unwrap();
    assert_eq!(numbers(&m, "t_vm_area").3, 21, "a created cache keeps its order");
    // SAFETY: created above, no objects.
    unsafe { m.kmem_cache_destroy(s) };
    // The objects of the larger slabs are all usable and all counted.
    let objs: Vec<NonNull<u8>> = (0..1000).map(|_| m.kmalloc(150, GFP_KERNEL).unwrap()).collect();
    for (i, o) in objs.iter().enumerate() {
        // SAFETY: 150 bytes of ours.
        unsafe { o.as_ptr().write_bytes(i as u8, 150) };
    }
    for (i, o) in objs.iter().enumerate() {
        // SAFETY: as above.
        assert!(unsafe { core::slice::from_raw_parts(o.as_ptr(), 150) }
            .iter()
            .all(|&b| b == i as u8));
    }
    let i = info_of(&m, "kmalloc-192");
    assert!(i.active_objs >= 1000, "{i:?}");
    assert_eq!(i.num_objs, i.num_slabs * 170, "{i:?}");
    for o in objs {
        // SAFETY: allocated above, freed once.
        unsafe { m.kfree(o.as_ptr()) };
    }
    // `slub_min_objects` alone applies to every cache, as in the kernel.
    let m = boot("quiet mem=256M nr_cpus=2 slub_min_objects=128");
    assert_eq!(numbers(&m, "kmalloc-192").3, 170);
    let s = m
        .kmem_cache_create("t_vm_area", 176, 64, kmem::slab::SlabFlags(0), None)
        .unwrap();
    assert_eq!(numbers(&m, "t_vm_area").3, 170);
    // SAFETY: created above, no objects.
    unsafe { m.kmem_cache_destroy(s) };
}

#[test]
fn a_created_cache_shows_stride_objects_and_pages() {
    let m = boot("quiet mem=256M nr_cpus=2");
    // Sizes of the sample's caches: the stride is rounded to the alignment.
    for (name, size, align, stride, per, pages) in [
        ("t_bio_312", 312, 64, 320, 12, 1),  // like bio-312 (320, 12, 1)
        ("t_anon_vma", 104, 8, 104, 39, 1),  // like anon_vma
        ("t_vm_area", 176, 64, 192, 21, 1),  // 176 aligned to 64
        ("t_task", 4288, 64, 4288, 7, 8),    // like task_struct
        ("t_signal", 1152, 64, 1152, 14, 4), // like signal_cache
    ] {
        let s = m
            .kmem_cache_create(name, size, align, kmem::slab::SlabFlags(0), None)
            .unwrap();
        let (active, num, objsize, objperslab, pps, aslabs, nslabs) = numbers(&m, name);
        assert_eq!((objsize, objperslab, pps), (stride, per, pages), "{name}");
        assert_eq!((active, num, aslabs, nslabs), (0, 0, 0, 0), "{name}");
        // SAFETY: created above, no objects.
        unsafe { m.kmem_cache_destroy(s) };
    }
}

/// Allocate `n` objects from `s`.
fn alloc_n(m: &Machine, s: NonNull<KmemCache>, n: usize) -> Vec<*mut u8> {
    (0..n)
        // SAFETY: a live cache of this machine (created and not destroyed).
        .map(|_| unsafe { m.kmem_cache_alloc(s, GFP_KERNEL) }.unwrap().as_ptr())
        .collect()
}

fn free_all(m: &Machine, s: NonNull<KmemCache>, objs: impl IntoIterator<Item = *mut u8>) {
    for o in objs {
        // SAFETY: allocated from `s` by the test, freed once.
        unsafe { m.kmem_cache_free(s, o) };
    }
}

fn info_of(m: &Machine, name: &str) -> SlabInfo {
    let mut found = None;
    proc::slabinfo_snapshots(m.kmem(), |i| {
        if i.name() == name {
            found = Some(*i);
        }
    });
    found.unwrap_or_else(|| panic!("{name} not listed"))
}

#[test]
fn active_objects_follow_allocations_exactly_once_cpus_are_flushed() {
    let m = boot("quiet mem=256M nr_cpus=2");
    let s = m
        .kmem_cache_create("counted", 200, 8, kmem::slab::SlabFlags(0), None)
        .unwrap();
    // SAFETY: a live cache.
    let per = unsafe { s.as_ref() }.oo.objects as usize;
    assert_eq!(per, 4096 / 200);
    let mut live = alloc_n(&m, s, 1000);
    for round in 0..4 {
        let n = live.len();
        // The exact count of live objects, whatever the cpu slabs hold.
        // SAFETY: a live cache.
        let (active, total, slabs, _) = m.cache_counts(unsafe { s.as_ref() });
        assert_eq!(active, n, "round {round}");
        let i = info_of(&m, "counted");
        assert_eq!((i.num_objs, i.num_slabs), (total, slabs));
        // active_objs is the exact number of live objects (the kernel's would
        // count free objects of cpu slabs as active).
        assert_eq!(i.active_objs, n, "round {round}: {i:?}");
        // And still after kmem_cache_shrink flushes the CPUs.
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { m.kmem_cache_shrink(s) };
        let i = info_of(&m, "counted");
        assert_eq!(i.active_objs, n, "round {round}: {i:?}");
        assert_eq!(i.num_objs, i.num_slabs * per, "round {round}");
        // Every slab left holds at least one live object after the shrink.
        assert!(i.num_slabs <= n, "round {round}");
        assert!(i.num_slabs >= n.div_ceil(per), "round {round}");
        // Free every third object, then check again.
        let (gone, keep): (Vec<_>, Vec<_>) = live.iter().enumerate().partition(|(j, _)| j % 3 == round % 3);
        free_all(&m, s, gone.into_iter().map(|(_, &p)| p));
        live = keep.into_iter().map(|(_, &p)| p).collect();
    }
    free_all(&m, s, live);
    // SAFETY: a live cache of this machine (created and not destroyed).
    unsafe { m.kmem_cache_shrink(s) };
    let i = info_of(&m, "counted");
    assert_eq!((i.active_objs, i.num_objs, i.num_slabs), (0, 0, 0), "{i:?}");
    // SAFETY: no objects left.
    unsafe { m.kmem_cache_destroy(s) };
}

#[test]
fn a_fresh_cache_line_after_n_allocations() {
    let m = boot("quiet mem=256M nr_cpus=1");
    let s = m
        .kmem_cache_create("fresh", 64, 0, kmem::slab::SlabFlags(0), None)
        .unwrap();
    let objs = alloc_n(&m, s, 130);
    // 64-byte objects, 64 per order-0 slab: 3 slabs, the last one the cpu slab.
    let (active, num, objsize, per, pps, aslabs, nslabs) = numbers(&m, "fresh");
    assert_eq!((objsize, per, pps), (64, 64, 1));
    assert_eq!((num, aslabs, nslabs), (192, 3, 3));
    // Exact, better than the kernel (which would print 192: it counts the cpu
    // slab's free objects as active): the live objects.
    assert_eq!(active, 130);
    // SAFETY: a live cache of this machine (created and not destroyed).
    unsafe { m.kmem_cache_shrink(s) };
    assert_eq!(numbers(&m, "fresh").0, 130);
    free_all(&m, s, objs);
    // SAFETY: no objects left.
    unsafe { m.kmem_cache_destroy(s) };
}

#[test]
fn destroyed_caches_disappear() {
    let m = boot("quiet mem=256M nr_cpus=2");
    let before = slabinfo(&m);
    let a = m
        .kmem_cache_create("going_away", 72, 0, kmem::slab::SlabFlags(0), None)
        .unwrap();
    let b = m
        .kmem_cache_create("staying", 72, 0, SLAB_RECLAIM_ACCOUNT, None)
        .unwrap();
    let objs = alloc_n(&m, a, 100);
    let text = slabinfo(&m);
    assert!(line_of(&text, "going_away").is_some() && line_of(&text, "staying").is_some());
    free_all(&m, a, objs);
    // SAFETY: no objects left.
    unsafe { m.kmem_cache_destroy(a) };
    let text = slabinfo(&m);
    assert!(line_of(&text, "going_away").is_none(), "{text}");
    assert!(line_of(&text, "staying").is_some());
    // SAFETY: no objects.
    unsafe { m.kmem_cache_destroy(b) };
    // A second destroy is reported and does nothing (`b`'s memory is not reused meanwhile).
    assert!(!m.kmem_cache_is_live(b));
    let warnings = m.dmesg().matches("is not a live cache").count();
    // SAFETY: the call reads nothing of a cache it does not find.
    unsafe { m.kmem_cache_destroy(b) };
    assert_eq!(
        m.dmesg()
            .matches("is not a live cache (destroyed already?)")
            .count(),
        warnings + 1
    );
    // Back to the boot caches with the same numbers. kmem_cache itself may differ, and so may
    // slab_sheaf: freeing the destroyed caches' `KmemCache` objects may give the cache of caches
    // a sheaf on the CPU the test ran on last (a flake, 1 in 7 runs, until this line said so).
    let strip = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("kmem_cache ") && !l.starts_with("slab_sheaf "))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&slabinfo(&m)), strip(&before));
}

#[test]
fn many_caches_are_listed_once_each_in_order() {
    // More caches than one copy-out chunk: the chunked walk loses and repeats none.
    let m = boot("quiet mem=256M nr_cpus=2");
    let caches: Vec<_> = (0..40)
        .map(|i| {
            // Distinct sizes and flags that never merge (a constructor).
            fn ctor(_: *mut u8) {}
            m.kmem_cache_create(
                &format!("many_{i:02}"),
                24 + 8 * i,
                0,
                kmem::slab::SlabFlags(0),
                Some(ctor),
            )
            .unwrap()
        })
        .collect();
    let text = slabinfo(&m);
    let names: Vec<&str> = text
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let expect: Vec<String> = (0..40).rev().map(|i| format!("many_{i:02}")).collect();
    assert_eq!(
        &names[..40],
        expect.iter().map(String::as_str).collect::<Vec<_>>().as_slice()
    );
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len());
    for s in caches {
        // SAFETY: no objects.
        unsafe { m.kmem_cache_destroy(s) };
    }
}

// ---- meminfo, zoneinfo, vmstat -------------------------------------------------------

fn meminfo_kb(m: &Machine, field: &str) -> usize {
    let text = m.proc_read("meminfo").unwrap();
    let l = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn stat(text: &str, name: &str) -> usize {
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next().unwrap().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{name} missing"))
}

/// Slab pages summed over slabinfo: slabs x pages per slab, split by the
/// reclaimable flag of the cache. Exact when no slab fell back to the min order.
fn slabinfo_pages(m: &Machine) -> (usize, usize) {
    let (mut rec, mut unrec) = (0, 0);
    let mut reclaimable_names = Vec::new();
    m.for_each_cache(|s| {
        if s.flags.intersects(SLAB_RECLAIM_ACCOUNT) {
            reclaimable_names.push(s.name().to_string());
        }
    });
    proc::slabinfo_snapshots(m.kmem(), |i| {
        let pages = i.num_slabs * i.pages_per_slab;
        if reclaimable_names.iter().any(|n| n == i.name()) {
            rec += pages;
        } else {
            unrec += pages;
        }
    });
    (rec, unrec)
}

#[test]
fn meminfo_zoneinfo_and_vmstat_agree_with_the_slabs() {
    // One CPU throughout: a thread that migrates halfway through `alloc_n`
    // leaves a partial slab on each CPU, one slab more than counted below.
    let _pin = common::pin_to_current_cpu();
    let m = boot("quiet mem=256M nr_cpus=2");
    let check = |m: &Machine| {
        let (rec, unrec) = slabinfo_pages(m);
        let large = proc::large_kmalloc_pages(m.kmem());
        let sp = proc::slab_pages(m.kmem(), None);
        assert_eq!((sp.reclaimable, sp.unreclaimable), (rec, unrec + large));
        assert_eq!(meminfo_kb(m, "SReclaimable"), rec * 4);
        assert_eq!(meminfo_kb(m, "SUnreclaim"), (unrec + large) * 4);
        assert_eq!(meminfo_kb(m, "Slab"), (rec + unrec + large) * 4);
        assert_eq!(meminfo_kb(m, "KReclaimable"), rec * 4);
        let vm = m.proc_read("vmstat").unwrap();
        assert_eq!(stat(&vm, "nr_slab_reclaimable"), rec);
        assert_eq!(stat(&vm, "nr_slab_unreclaimable"), unrec + large);
        let zi = m.proc_read("zoneinfo").unwrap();
        assert_eq!(stat(&zi, "nr_slab_reclaimable"), rec);
        assert_eq!(stat(&zi, "nr_slab_unreclaimable"), unrec + large);
        (rec, unrec + large)
    };
    let (r0, u0) = check(&m);
    assert!(u0 > 0, "kmem_cache and the kmalloc caches hold slabs after boot");
    let plain = m
        .kmem_cache_create("plain_1k", 1024, 0, kmem::slab::SlabFlags(0), None)
        .unwrap();
    let recl = m
        .kmem_cache_create("recl_512", 512, 0, SLAB_RECLAIM_ACCOUNT, None)
        .unwrap();
    let a = alloc_n(&m, plain, 160); // 10 slabs of 16 objects, order 2: 40 pages
    let b = alloc_n(&m, recl, 160); // 10 slabs of 16 objects, order 1: 20 pages
    let (r1, u1) = check(&m);
    assert_eq!(r1 - r0, 20);
    assert_eq!(u1 - u0, 40);
    assert_eq!(meminfo_kb(&m, "SReclaimable") - r0 * 4, 80);
    free_all(&m, plain, a);
    free_all(&m, recl, b);
    // SAFETY: a live cache of this machine (created and not destroyed).
    unsafe { m.kmem_cache_shrink(plain) };
    // SAFETY: a live cache of this machine (created and not destroyed).
    unsafe { m.kmem_cache_shrink(recl) };
    let (r2, u2) = check(&m);
    assert_eq!((r2, u2), (r0, u0));
    // SAFETY: no objects left.
    unsafe {
        m.kmem_cache_destroy(plain);
        m.kmem_cache_destroy(recl);
    }
}

#[test]
fn node_pages_of_a_high_order_cache() {
    // A cache whose preferred order is above its smallest: pages come from the
    // per-node counters (the mixed-order arithmetic is unit-tested in proc.rs).
    // Pinned, so that the objects fill whole slabs on one CPU.
    let _pin = common::pin_to_current_cpu();
    let m = boot("quiet mem=256M nr_cpus=2");
    let s = m
        .kmem_cache_create("t_high_order", 2000, 8, kmem::slab::SlabFlags(0), None)
        .unwrap();
    // SAFETY: a live cache.
    let c = unsafe { s.as_ref() };
    assert!(c.oo.order > c.min.order, "oo {:?} min {:?}", c.oo, c.min);
    let objs = alloc_n(&m, s, 3 * c.oo.objects as usize);
    assert_eq!(proc::cache_node_pages(c, 0), 3 << c.oo.order);
    free_all(&m, s, objs);
    // SAFETY: a live cache of this machine (created and not destroyed).
    unsafe { m.kmem_cache_shrink(s) };
    assert_eq!(proc::cache_node_pages(c, 0), 0);
    // SAFETY: no objects left.
    unsafe { m.kmem_cache_destroy(s) };
}

#[test]
fn print_slabinfo_of_a_fresh_machine() {
    let m = boot("quiet mem=256M nr_cpus=2");
    print!("{}", slabinfo(&m));
}

/// `SLAB_NO_REAP` as 2.6 had it: the reaper (here the memory-pressure
/// shrinker) leaves the cache alone; `kmem_cache_shrink` frees its empty
/// slabs as for any cache (it used to keep them).
#[test]
fn no_reap_caches_escape_the_reaper_not_kmem_cache_shrink() {
    let m = boot("quiet mem=256M nr_cpus=2");
    let s = m
        .kmem_cache_create("no_reap", 200, 0, kmem::slab::SLAB_NO_REAP, None)
        .unwrap();
    let objs = alloc_n(&m, s, 400);
    free_all(&m, s, objs);
    // SAFETY: a live cache of this machine.
    let counts = || m.cache_counts(unsafe { s.as_ref() });
    let before = counts();
    assert!(before.3 > 0);
    for _ in 0..4 {
        m.shrink_slab(GFP_KERNEL, 0, 0);
    }
    assert_eq!(counts(), before, "the shrinker reaped a SLAB_NO_REAP cache");
    // SAFETY: a live cache of this machine (created and not destroyed).
    unsafe { m.kmem_cache_shrink(s) };
    assert_eq!(
        counts().3,
        0,
        "kmem_cache_shrink left a SLAB_NO_REAP cache's empty slabs"
    );
    // SAFETY: no objects left.
    unsafe { m.kmem_cache_destroy(s) };
}
