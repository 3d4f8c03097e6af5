//! The statistics files in the kernel's exact format, checked line by line
//! against the shapes of the real samples in /work/shared/reference/proc-samples,
//! and for consistency between files and with the allocator's state.

use kmem::proc::{self, ZoneSnapshot, PROC_FILES};
use kmem::*;
use kmem_hosted::Machine;

const NR_ORDERS: usize = 11;

/// The meminfo labels of the sample (Linux 6.18, x86-64), in order.
const SAMPLE_MEMINFO_LABELS: &[&str] = &[
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "Active",
    "Inactive",
    "Active(anon)",
    "Inactive(anon)",
    "Active(file)",
    "Inactive(file)",
    "Unevictable",
    "Mlocked",
    "SwapTotal",
    "SwapFree",
    "Zswap",
    "Zswapped",
    "Dirty",
    "Writeback",
    "AnonPages",
    "Mapped",
    "Shmem",
    "KReclaimable",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "SecPageTables",
    "NFS_Unstable",
    "Bounce",
    "WritebackTmp",
    "CommitLimit",
    "Committed_AS",
    "VmallocTotal",
    "VmallocUsed",
    "VmallocChunk",
    "Percpu",
    "AnonHugePages",
    "ShmemHugePages",
    "ShmemPmdMapped",
    "FileHugePages",
    "FilePmdMapped",
    "Balloon",
    "HugePages_Total",
    "HugePages_Free",
    "HugePages_Rsvd",
    "HugePages_Surp",
    "Hugepagesize",
    "Hugetlb",
    "DirectMap4k",
    "DirectMap2M",
    "DirectMap1G",
];

fn boot(cmdline: &str) -> Machine {
    Machine::boot(cmdline).unwrap_or_else(|e| panic!("boot {cmdline}: {e}"))
}

fn read(m: &Machine, name: &str) -> String {
    m.proc_read(name)
        .unwrap_or_else(|| panic!("/proc/{name} unknown"))
}

fn machines() -> Vec<(&'static str, Machine)> {
    [
        "quiet mem=6G nr_cpus=2",
        "quiet mem=64M nr_cpus=2",
        "quiet mem=1G highmem=512M nr_cpus=2",
        "quiet mem=2G numa=fake=2 nr_cpus=3",
    ]
    .into_iter()
    .map(|c| (c, boot(c)))
    .collect()
}

fn snapshots(m: &Machine) -> Vec<ZoneSnapshot> {
    let mut v = Vec::new();
    proc::zone_snapshots(m, |s| v.push(*s));
    v
}

// ---- small parsers -------------------------------------------------------------

/// Split a right-aligned column of `width` off `s`: the field must be exactly
/// `width` characters, digits right-aligned with spaces in front.
fn col(s: &str, width: usize) -> (usize, &str) {
    assert!(s.len() >= width, "short column in {s:?}");
    let (f, rest) = s.split_at(width);
    let t = f.trim_start_matches(' ');
    assert!(
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()),
        "bad column {f:?}"
    );
    (t.parse().unwrap(), rest)
}

/// A buddyinfo line: `"Node %d, zone %8s "` then `"%6lu "` x 11, then nothing.
/// Returns (node, zone, counts).
fn parse_buddyinfo_line(l: &str) -> (usize, String, [usize; NR_ORDERS]) {
    let rest = l.strip_prefix("Node ").unwrap_or_else(|| panic!("{l:?}"));
    let (node, rest) = rest.split_once(", zone ").unwrap();
    let node: usize = node.parse().unwrap();
    let (zone, mut rest) = rest.split_at(8);
    assert!(zone.starts_with(' ') || zone.trim().len() == 8, "{l:?}");
    let mut counts = [0; NR_ORDERS];
    rest = rest.strip_prefix(' ').unwrap();
    for c in counts.iter_mut() {
        let (v, r) = col(rest, 6);
        *c = v;
        rest = r
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space after a count in {l:?}"));
    }
    assert!(rest.is_empty(), "trailing text in {l:?}");
    (node, zone.trim().to_string(), counts)
}

// ---- buddyinfo ---------------------------------------------------------------

#[test]
fn buddyinfo_lines_have_the_kernel_shape() {
    let sample = std::fs::read_to_string("/work/shared/reference/proc-samples/buddyinfo.txt").ok();
    for (cmd, m) in machines() {
        let text = read(&m, "buddyinfo");
        assert!(text.ends_with(" \n"), "{cmd}: {text:?}");
        let snaps = snapshots(&m);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            snaps.len(),
            "{cmd}: one line per populated zone\n{text}"
        );
        for (l, s) in lines.iter().zip(&snaps) {
            // Single-digit node ids: the sample's line length, trailing space included.
            if let Some(sample) = &sample {
                assert_eq!(l.len(), sample.lines().next().unwrap().len(), "{cmd}: {l:?}");
            }
            assert!(l.ends_with(' '));
            let (node, zone, counts) = parse_buddyinfo_line(l);
            assert_eq!(
                (node, zone.as_str(), counts),
                (s.node, s.zone, s.free_blocks),
                "{cmd}"
            );
        }
        // Our parser accepts the real sample.
        if let Some(sample) = &sample {
            for l in sample.lines() {
                parse_buddyinfo_line(l);
            }
        }
    }
}

// ---- pagetypeinfo ------------------------------------------------------------

struct PageTypeInfo {
    /// (node, zone, type) -> counts per order
    free: Vec<(usize, String, String, [usize; NR_ORDERS])>,
    /// (node, zone) -> pageblocks per type
    blocks: Vec<(usize, String, [usize; 5])>,
}

fn parse_pagetypeinfo(text: &str) -> PageTypeInfo {
    let mut p = PageTypeInfo {
        free: Vec::new(),
        blocks: Vec::new(),
    };
    let mut lines = text.lines().peekable();
    while lines.peek().is_some() {
        assert_eq!(lines.next(), Some("Page block order: 9"));
        assert_eq!(lines.next(), Some("Pages per block:  512"));
        assert_eq!(lines.next(), Some(""));
        assert_eq!(
            lines.next(),
            Some("Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 ")
        );
        while let Some(l) = lines.next_if(|l| l.starts_with("Node ")) {
            // "Node %4d, zone %8s, type %12s " + "%6lu " x 11
            let (node, rest) = l["Node ".len()..].split_at(4);
            let rest = rest.strip_prefix(", zone ").unwrap();
            let (zone, rest) = rest.split_at(8);
            let rest = rest.strip_prefix(", type ").unwrap();
            let (ty, rest) = rest.split_at(12);
            let mut rest = rest.strip_prefix(' ').unwrap();
            let mut counts = [0; NR_ORDERS];
            for c in counts.iter_mut() {
                let (v, r) = col(rest, 6);
                *c = v;
                rest = r.strip_prefix(' ').unwrap();
            }
            assert!(rest.is_empty(), "{l:?}");
            p.free.push((
                node.trim().parse().unwrap(),
                zone.trim().into(),
                ty.trim().into(),
                counts,
            ));
        }
        assert_eq!(lines.next(), Some(""));
        assert_eq!(
            lines.next(),
            Some("Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic      Isolate ")
        );
        while let Some(l) = lines.next_if(|l| l.starts_with("Node ")) {
            // "Node %d, zone %8s " + "%12lu " x 5
            let (node, rest) = l["Node ".len()..].split_once(", zone ").unwrap();
            let (zone, rest) = rest.split_at(8);
            let mut rest = rest.strip_prefix(' ').unwrap();
            let mut counts = [0; 5];
            for c in counts.iter_mut() {
                let (v, r) = col(rest, 12);
                *c = v;
                rest = r.strip_prefix(' ').unwrap();
            }
            assert!(rest.is_empty(), "{l:?}");
            p.blocks.push((node.parse().unwrap(), zone.trim().into(), counts));
        }
    }
    p
}

#[test]
fn pagetypeinfo_matches_buddyinfo_and_the_zone_spans() {
    if let Ok(sample) = std::fs::read_to_string("/work/shared/reference/proc-samples/pagetypeinfo.txt") {
        let p = parse_pagetypeinfo(&sample);
        assert_eq!(p.free.len(), 15);
        assert_eq!(p.blocks.len(), 3);
    }
    let types = ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"];
    for (cmd, m) in machines() {
        let text = read(&m, "pagetypeinfo");
        let p = parse_pagetypeinfo(&text);
        let snaps = snapshots(&m);
        assert_eq!(p.free.len(), snaps.len() * 5, "{cmd}\n{text}");
        assert_eq!(p.blocks.len(), snaps.len(), "{cmd}\n{text}");
        for (i, s) in snaps.iter().enumerate() {
            let mut sum = [0; NR_ORDERS];
            for (t, (node, zone, ty, counts)) in p.free[i * 5..i * 5 + 5].iter().enumerate() {
                assert_eq!(
                    (*node, zone.as_str(), ty.as_str()),
                    (s.node, s.zone, types[t]),
                    "{cmd}"
                );
                for o in 0..NR_ORDERS {
                    sum[o] += counts[o];
                }
            }
            assert_eq!(
                sum, s.free_blocks,
                "{cmd}: {} {} per-type sums differ from buddyinfo",
                s.node, s.zone
            );
            let (node, zone, blocks) = &p.blocks[i];
            assert_eq!((*node, zone.as_str()), (s.node, s.zone));
            // Every pageblock holding RAM of the zone has exactly one type.
            let total: usize = blocks.iter().sum();
            assert!(
                total * 512 >= s.present,
                "{cmd} {}: {total} blocks for {} present pages",
                s.zone,
                s.present
            );
            assert!(
                total <= s.spanned.div_ceil(512) + 1,
                "{cmd} {}: {total} blocks, spanned {}",
                s.zone,
                s.spanned
            );
            // Nothing has been isolated or reserved for atomic allocations.
            assert_eq!((blocks[3], blocks[4]), (0, 0), "{cmd}");
        }
    }
}

// ---- zoneinfo ----------------------------------------------------------------

/// The label of a zoneinfo line: the text before the number(s), with the
/// indentation kept and the padding collapsed ("        min").
fn zoneinfo_label(l: &str) -> String {
    if l.starts_with("Node ") {
        return "Node".into();
    }
    if let Some(i) = l.find(": (") {
        return l[..i + 1].to_string();
    }
    match l.rfind(' ') {
        Some(i) if l[i + 1..].bytes().all(|b| b.is_ascii_digit()) && i + 1 < l.len() => {
            l[..i].trim_end().to_string()
        }
        _ => l.to_string(),
    }
}

/// Stanzas of a zoneinfo text: (header line, lines).
fn zoneinfo_stanzas(text: &str) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<(String, Vec<String>)> = Vec::new();
    for l in text.lines() {
        if l.starts_with("Node ") {
            v.push((l.to_string(), Vec::new()));
        } else {
            v.last_mut().unwrap().1.push(l.to_string());
        }
    }
    v
}

fn labels(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| zoneinfo_label(l)).collect()
}

/// Labels with the per-CPU blocks after the first one left out, to compare
/// machines with different CPU counts.
fn labels_one_cpu(lines: &[String]) -> Vec<String> {
    let mut cpus = 0;
    let mut in_later_cpu = false;
    let mut v = Vec::new();
    for l in labels(lines) {
        if l == "    cpu:" {
            cpus += 1;
            in_later_cpu = cpus > 1;
        } else if !l.starts_with("              ") && l != "  vm stats threshold:" {
            in_later_cpu = false;
        }
        if !in_later_cpu {
            v.push(l);
        }
    }
    v
}

/// Check every line's exact shape: fixed-width labels followed by the value.
fn check_zoneinfo_line(l: &str) {
    let ok = l == "  per-node stats"
        || l == "  pagesets"
        || (l.starts_with("Node ") && l.len() >= "Node 0, zone ".len() + 8)
        || (l.starts_with("      ") && !l.starts_with("       ") && {
            // "      %-12s %lu"
            let body = &l[6..];
            let (name, val) = body.rsplit_once(' ').unwrap();
            (name.len() >= 12 || body.as_bytes()[12] == b' ')
                && !name.trim_end().contains(' ')
                && val.bytes().all(|b| b.is_ascii_digit())
        })
        || [
            "  pages free     ",
            "        boost    ",
            "        min      ",
            "        low      ",
            "        high     ",
            "        promo    ",
            "        spanned  ",
            "        present  ",
            "        managed  ",
            "        cma      ",
            "    cpu: ",
            "              count:    ",
            "              high:     ",
            "              batch:    ",
            "              high_min: ",
            "              high_max: ",
            "  vm stats threshold: ",
            "  node_unreclaimable:  ",
            "  start_pfn:           ",
        ]
        .iter()
        .any(|p| {
            l.strip_prefix(p)
                .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        })
        || l.strip_prefix("        protection: (")
            .and_then(|r| r.strip_suffix(')'))
            .is_some_and(|r| r.split(", ").count() == 5 && r.split(", ").all(|n| n.parse::<usize>().is_ok()));
    assert!(ok, "zoneinfo line of unknown shape: {l:?}");
}

fn sample_zoneinfo() -> Option<String> {
    std::fs::read_to_string("/work/shared/reference/proc-samples/zoneinfo.txt").ok()
}

#[test]
fn zoneinfo_has_the_kernel_structure() {
    let sample = sample_zoneinfo();
    let sample_stanzas = sample.as_deref().map(zoneinfo_stanzas);
    if let Some(s) = &sample {
        s.lines().for_each(check_zoneinfo_line);
    }
    for (cmd, m) in machines() {
        let text = read(&m, "zoneinfo");
        text.lines().for_each(check_zoneinfo_line);
        let stanzas = zoneinfo_stanzas(&text);
        let names: &[&str] = if m.has_highmem() {
            &["DMA", "Normal", "HighMem", "Movable", "Device"]
        } else {
            &["DMA", "DMA32", "Normal", "Movable", "Device"]
        };
        assert_eq!(stanzas.len(), 5 * m.nr_node_ids(), "{cmd}");
        let snaps = snapshots(&m);
        for (i, (head, lines)) in stanzas.iter().enumerate() {
            let node = i / 5;
            assert_eq!(head, &format!("Node {node}, zone {:>8}", names[i % 5]), "{cmd}");
            let snap = snaps.iter().find(|s| s.node == node && s.zone == names[i % 5]);
            let first_populated = snaps.iter().find(|s| s.node == node).map(|s| s.zone) == Some(names[i % 5]);
            let l = labels(lines);
            match snap {
                Some(s) => {
                    // Same label sequence as the sample's populated zones.
                    if let Some(ss) = &sample_stanzas {
                        let want = if first_populated { &ss[0] } else { &ss[1] };
                        assert_eq!(labels_one_cpu(lines), labels_one_cpu(&want.1), "{cmd}: {head}");
                    }
                    assert_eq!(l.iter().filter(|x| *x == "    cpu:").count(), m.nr_cpu_ids());
                    assert_eq!(
                        l.iter().filter(|x| *x == "  vm stats threshold:").count(),
                        m.nr_cpu_ids()
                    );
                    let val = |p: &str| -> usize {
                        lines
                            .iter()
                            .find_map(|x| x.strip_prefix(p))
                            .unwrap_or_else(|| panic!("{p}"))
                            .trim()
                            .parse()
                            .unwrap()
                    };
                    assert_eq!(val("  pages free "), s.free);
                    assert_eq!(val("        min "), s.min, "{cmd} {head}");
                    assert_eq!(val("        low "), s.low);
                    assert_eq!(val("        high "), s.high);
                    assert_eq!(val("        spanned "), s.spanned);
                    assert_eq!(val("        present "), s.present);
                    assert_eq!(val("        managed "), s.managed);
                    assert_eq!(val("      nr_free_pages "), s.free);
                    let blocks: usize = (9..NR_ORDERS).map(|o| s.free_blocks[o] << o).sum();
                    assert_eq!(val("      nr_free_pages_blocks "), blocks);
                    let pcp: usize = lines
                        .iter()
                        .filter_map(|x| x.strip_prefix("              count:"))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .sum();
                    assert_eq!(pcp, s.pcp_count);
                    // Watermarks are ordered, and high_min <= high_max per CPU.
                    assert!(s.min <= s.low && s.low <= s.high, "{cmd} {head}");
                    let hmin: Vec<usize> = lines
                        .iter()
                        .filter_map(|x| x.strip_prefix("              high_min: "))
                        .map(|v| v.parse().unwrap())
                        .collect();
                    let hmax: Vec<usize> = lines
                        .iter()
                        .filter_map(|x| x.strip_prefix("              high_max: "))
                        .map(|v| v.parse().unwrap())
                        .collect();
                    assert!(hmin.iter().zip(&hmax).all(|(a, b)| a <= b));
                }
                None => {
                    // Empty zone: the short form of the sample's Movable and Device stanzas.
                    if let Some(ss) = &sample_stanzas {
                        assert_eq!(l, labels(&ss[3].1), "{cmd}: {head}");
                        assert_eq!(l, labels(&ss[4].1));
                    }
                    assert_eq!(lines.len(), 11, "{cmd}: {head}");
                    assert_eq!(lines[0], "  pages free     0");
                }
            }
        }
    }
}

#[test]
fn zoneinfo_protection_follows_lowmem_reserve_ratio() {
    // 6G: DMA32 and Normal populated. protection[j] of zone i is the managed
    // pages of the zones above i up to j divided by lowmem_reserve_ratio[i]
    // (256 for DMA and DMA32), as in the sample's "(0, 3018, 3786, 3786, 3786)".
    let m = boot("quiet mem=6G nr_cpus=2");
    let snaps = snapshots(&m);
    let managed = |z: &str| snaps.iter().find(|s| s.zone == z).map_or(0, |s| s.managed);
    let text = read(&m, "zoneinfo");
    let prot: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("        protection: "))
        .collect();
    let (d32, n) = (managed("DMA32"), managed("Normal"));
    assert_eq!(
        prot[0],
        format!(
            "(0, {}, {}, {}, {})",
            d32 / 256,
            (d32 + n) / 256,
            (d32 + n) / 256,
            (d32 + n) / 256
        )
    );
    assert_eq!(prot[1], format!("(0, 0, {}, {}, {})", n / 256, n / 256, n / 256));
    assert_eq!(prot[2], "(0, 0, 0, 0, 0)");
    assert_eq!(prot[3], "(0, 0, 0, 0, 0)");
    assert_eq!(prot[4], "(0, 0, 0, 0, 0)");
    // vm stats threshold: calculate_normal_threshold.
    for (head, lines) in zoneinfo_stanzas(&text) {
        let Some(s) = snaps.iter().find(|s| head.ends_with(&format!(" {}", s.zone))) else {
            continue;
        };
        let t = proc::calculate_normal_threshold(s.managed, 2);
        assert!(
            lines.iter().any(|l| *l == format!("  vm stats threshold: {t}")),
            "{head}"
        );
    }
}

// ---- meminfo ------------------------------------------------------------------

fn meminfo_values(text: &str) -> Vec<(String, usize)> {
    text.lines()
        .map(|l| {
            let (label, rest) = l.split_once(':').unwrap_or_else(|| panic!("{l:?}"));
            if l.starts_with("HugePages_") {
                // "HugePages_Total:   %5lu"
                assert_eq!(l.len(), 24, "{l:?}");
                let v = rest.trim_start();
                return (label.to_string(), v.parse().unwrap());
            }
            // show_val_kb: label padded to 16, value right-aligned in 8 (or wider), " kB".
            let body = l.strip_suffix(" kB").unwrap_or_else(|| panic!("{l:?}"));
            assert!(body.len() >= 24, "{l:?}");
            assert!(body[..16].starts_with(&format!("{label}:")), "{l:?}");
            assert!(body[label.len() + 1..16].bytes().all(|b| b == b' '), "{l:?}");
            let v = body[16..].trim_start();
            assert!(body.len() == 24 || !body[16..].starts_with(' '), "{l:?}");
            (label.to_string(), v.parse().unwrap_or_else(|_| panic!("{l:?}")))
        })
        .collect()
}

#[test]
fn meminfo_has_the_sample_labels_and_consistent_values() {
    if let Ok(sample) = std::fs::read_to_string("/work/shared/reference/proc-samples/meminfo.txt") {
        let labels: Vec<String> = meminfo_values(&sample).into_iter().map(|(l, _)| l).collect();
        assert_eq!(labels, SAMPLE_MEMINFO_LABELS);
    }
    for (cmd, m) in machines() {
        let text = read(&m, "meminfo");
        let vals = meminfo_values(&text);
        let labels: Vec<&str> = vals.iter().map(|(l, _)| l.as_str()).collect();
        if m.has_highmem() {
            let mut want: Vec<&str> = SAMPLE_MEMINFO_LABELS.to_vec();
            let at = want.iter().position(|l| *l == "Mlocked").unwrap() + 1;
            want.splice(at..at, ["HighTotal", "HighFree", "LowTotal", "LowFree"]);
            want.retain(|l| *l != "DirectMap1G");
            assert_eq!(labels, want, "{cmd}");
        } else {
            assert_eq!(labels, SAMPLE_MEMINFO_LABELS, "{cmd}");
        }
        let get = |k: &str| vals.iter().find(|(l, _)| l == k).unwrap().1;
        assert_eq!(get("MemTotal"), m.totalram_pages() * 4, "{cmd}");
        assert_eq!(get("MemFree"), m.nr_free_pages() * 4, "{cmd}");
        // MemFree is the buddy lists: the sum of buddyinfo.
        let buddy_pages: usize = read(&m, "buddyinfo")
            .lines()
            .map(|l| {
                parse_buddyinfo_line(l)
                    .2
                    .iter()
                    .enumerate()
                    .map(|(o, n)| n << o)
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(get("MemFree"), buddy_pages * 4, "{cmd}");
        let avail = (m.nr_free_pages() - m.totalreserve_pages().min(m.nr_free_pages())) * 4;
        assert_eq!(get("MemAvailable"), avail, "{cmd}");
        assert!(get("MemAvailable") <= get("MemFree"));
        assert_eq!(get("CommitLimit"), get("MemTotal") / 2 / 4 * 4, "{cmd}");
        assert_eq!(get("Slab"), get("SReclaimable") + get("SUnreclaim"));
        assert_eq!(get("Hugepagesize"), 2048);
        if m.has_highmem() {
            // Only lowmem is in the linear map.
            assert!(get("DirectMap4k") >= get("LowTotal"), "{cmd}");
            assert!(get("DirectMap4k") < get("MemTotal"), "{cmd}");
        } else {
            assert!(get("DirectMap4k") >= get("MemTotal"), "{cmd}");
        }
        if m.has_highmem() {
            assert_eq!(get("LowTotal") + get("HighTotal"), get("MemTotal"));
            assert_eq!(get("LowFree") + get("HighFree"), get("MemFree"));
            assert!(get("HighTotal") > 0);
        }
    }
}

// ---- vmstat -----------------------------------------------------------------

fn vmstat(m: &Machine) -> Vec<(String, usize)> {
    read(m, "vmstat")
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or_else(|| panic!("{l:?}"));
            assert!(
                k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{l:?}"
            );
            assert!(!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()), "{l:?}");
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn vm(v: &[(String, usize)], k: &str) -> usize {
    v.iter()
        .find(|(n, _)| n == k)
        .unwrap_or_else(|| panic!("no {k} in vmstat"))
        .1
}

#[test]
fn vmstat_uses_kernel_names() {
    for (cmd, m) in machines() {
        let v = vmstat(&m);
        assert_eq!(vm(&v, "nr_free_pages"), m.nr_free_pages(), "{cmd}");
        let zones: &[&str] = if m.has_highmem() {
            &["dma", "normal", "high", "movable", "device"]
        } else {
            &["dma", "dma32", "normal", "movable", "device"]
        };
        let names: Vec<&str> = v.iter().map(|(n, _)| n.as_str()).collect();
        let pgalloc: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| n.starts_with("pgalloc_"))
            .collect();
        assert_eq!(
            pgalloc,
            zones.iter().map(|z| format!("pgalloc_{z}")).collect::<Vec<_>>(),
            "{cmd}"
        );
        let stall: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| n.starts_with("allocstall_"))
            .collect();
        assert_eq!(
            stall,
            zones
                .iter()
                .map(|z| format!("allocstall_{z}"))
                .collect::<Vec<_>>()
        );
        // The kernel's order: zone, numa, node, vm stats, then events; nr_unstable last.
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("nr_free_pages") < pos("numa_hit"));
        assert!(pos("numa_hit") < pos("nr_slab_reclaimable"));
        assert!(pos("nr_memmap_boot_pages") < pos("pgalloc_dma"));
        assert!(pos("allocstall_device") < pos("pgfree"));
        assert!(pos("pgfree") < pos("slabs_scanned") && pos("slabs_scanned") < pos("oom_kill"));
        assert_eq!(*names.last().unwrap(), "nr_unstable");
        // Every line 6.18 prints, those kmem has no use for as 0: a sample of each group, in order.
        let order = [
            "nr_zone_inactive_anon",
            "nr_free_cma",
            "numa_hit",
            "nr_inactive_anon",
            "nr_kernel_file_pages",
            "nr_dirty_threshold",
            "nr_dirty_background_threshold",
            "nr_memmap_pages",
            "nr_memmap_boot_pages",
            "pgpgin",
            "pswpout",
            "pgalloc_dma",
            "pgskip_device",
            "pgfree",
            "pgscan_kswapd",
            "kswapd_high_wmark_hit_quickly",
            "compact_stall",
            "thp_fault_alloc",
            "zswpwb",
            "direct_map_level3_collapses",
            "nr_unstable",
        ];
        assert!(order.windows(2).all(|w| pos(w[0]) < pos(w[1])), "{names:?}");
        assert_eq!(names.len(), 192 - 3 * 5 + 3 * zones.len(), "{names:?}");
    }
}

// ---- movement ------------------------------------------------------------------

#[test]
fn numbers_move_with_allocations() {
    let m = boot("quiet mem=6G nr_cpus=2");
    m.drain_all_pages();
    let before_snaps = snapshots(&m);
    let v0 = vmstat(&m);
    let mem0 = meminfo_values(&read(&m, "meminfo"));
    let free0 = m.nr_free_pages();

    let pages: Vec<_> = (0..100).map(|_| m.alloc_pages(GFP_KERNEL, 0).unwrap()).collect();
    let v1 = vmstat(&m);
    // Allocations come from Normal (GFP_KERNEL's highest zone, populated here).
    assert_eq!(vm(&v1, "pgalloc_normal") - vm(&v0, "pgalloc_normal"), 100);
    assert_eq!(vm(&v1, "numa_hit") - vm(&v0, "numa_hit"), 100);
    let snaps1 = snapshots(&m);
    let pcp1: usize = snaps1.iter().map(|s| s.pcp_count).sum();
    // Pages left the buddy lists: the 100 handed out plus whatever the pcp lists hold.
    assert_eq!(free0 - m.nr_free_pages(), 100 + pcp1);
    let memfree1 = meminfo_values(&read(&m, "meminfo"))
        .into_iter()
        .find(|(l, _)| l == "MemFree")
        .unwrap()
        .1;
    assert_eq!(memfree1, m.nr_free_pages() * 4);
    // zoneinfo shows the pcp pages on some CPU of Normal.
    let zi = read(&m, "zoneinfo");
    let normal = zoneinfo_stanzas(&zi)
        .into_iter()
        .find(|(h, _)| h == "Node 0, zone   Normal")
        .unwrap();
    let counts: usize = normal
        .1
        .iter()
        .filter_map(|l| l.strip_prefix("              count:"))
        .map(|v| v.trim().parse::<usize>().unwrap())
        .sum();
    assert_eq!(
        counts,
        snaps1.iter().find(|s| s.zone == "Normal").unwrap().pcp_count
    );

    for p in pages {
        // SAFETY: allocated above with order 0, freed once.
        unsafe { m.__free_pages(p, 0) };
    }
    let v2 = vmstat(&m);
    assert_eq!(vm(&v2, "pgfree") - vm(&v1, "pgfree"), 100);
    m.drain_all_pages();
    assert_eq!(m.nr_free_pages(), free0);
    assert_eq!(snapshots(&m), before_snaps);
    let mem2 = meminfo_values(&read(&m, "meminfo"));
    assert_eq!(mem2, mem0);
    let v3 = vmstat(&m);
    assert_eq!(vm(&v3, "nr_free_pages"), vm(&v0, "nr_free_pages"));
    assert_eq!(vm(&v3, "nr_free_pages_blocks"), vm(&v0, "nr_free_pages_blocks"));
}

/// `pgalloc_*` and `pgfree` count pages, `numa_hit` and `numa_local`
/// allocations (the kernel's `__count_zid_vm_events(PGALLOC, ..., 1 <<
/// order)` against `zone_statistics(..., 1)`), through the pcp lists
/// (order 3) and the buddy path (order 5); `pgfree` starts with the boot's
/// hand-over of every managed page.
#[test]
fn numa_hit_counts_allocations_and_pgalloc_pages() {
    let m = boot("quiet mem=256M nr_cpus=1");
    let v0 = vmstat(&m);
    let managed: usize = meminfo_values(&read(&m, "meminfo"))
        .into_iter()
        .find(|(l, _)| l == "MemTotal")
        .unwrap()
        .1
        / 4;
    assert!(
        vm(&v0, "pgfree") >= managed,
        "pgfree {} < managed {managed}",
        vm(&v0, "pgfree")
    );
    let a = m.alloc_pages(GFP_KERNEL, 3).unwrap();
    let b = m.alloc_pages(GFP_KERNEL, 5).unwrap();
    let v1 = vmstat(&m);
    let pgalloc = |v: &_| vm(v, "pgalloc_dma32") + vm(v, "pgalloc_normal");
    assert_eq!(pgalloc(&v1) - pgalloc(&v0), 8 + 32);
    assert_eq!(vm(&v1, "numa_hit") - vm(&v0, "numa_hit"), 2);
    assert_eq!(vm(&v1, "numa_local") - vm(&v0, "numa_local"), 2);
    // SAFETY: allocated above with these orders, freed once.
    unsafe {
        m.__free_pages(a, 3);
        m.__free_pages(b, 5);
    }
    assert_eq!(vm(&vmstat(&m), "pgfree") - vm(&v1, "pgfree"), 8 + 32);
}

#[test]
fn higher_order_allocations_show_in_buddyinfo() {
    let m = boot("quiet mem=64M nr_cpus=1");
    m.drain_all_pages();
    let b0 = read(&m, "buddyinfo");
    let p = m.alloc_pages(GFP_KERNEL, 10).unwrap();
    let b1 = read(&m, "buddyinfo");
    assert_ne!(b0, b1);
    let total = |t: &str| -> usize {
        t.lines()
            .map(|l| {
                parse_buddyinfo_line(l)
                    .2
                    .iter()
                    .enumerate()
                    .map(|(o, n)| n << o)
                    .sum::<usize>()
            })
            .sum()
    };
    assert_eq!(total(&b0) - total(&b1), 1024);
    // SAFETY: allocated above with order 10.
    unsafe { m.__free_pages(p, 10) };
    m.drain_all_pages();
    assert_eq!(read(&m, "buddyinfo"), b0);
}

// ---- dispatch, memblock, printout -----------------------------------------------------

#[test]
fn every_listed_file_reads_and_unknown_names_fail() {
    let m = boot("quiet mem=64M nr_cpus=2");
    for name in PROC_FILES {
        let t = read(&m, name);
        // vmallocinfo lists vmalloc areas: a fresh machine has none.
        assert!(
            (t.is_empty() && *name == "vmallocinfo") || (!t.is_empty() && t.ends_with('\n')),
            "{name}"
        );
    }
    assert!(m.proc_read("slabinfo-nonexistent").is_none());
    assert!(m.proc_read("").is_none());
    // memblock/memory: "%4d: %#018llx..%#018llx %4d %s" per region.
    for l in read(&m, "memblock/memory").lines() {
        assert_eq!(
            l.len(),
            "   0: 0x0000000000001000..0x000000000009efff    0 NONE".len(),
            "{l:?}"
        );
        assert_eq!(&l[4..8], ": 0x");
    }
    assert!(!read(&m, "memblock/reserved").is_empty());
}

#[test]
fn print_files_of_a_6g_machine() {
    let m = boot("quiet mem=6G nr_cpus=2");
    for name in [
        "buddyinfo",
        "pagetypeinfo",
        "zoneinfo",
        "meminfo",
        "vmstat",
        "memblock/memory",
        "memblock/reserved",
    ] {
        println!("==> /proc/{name} <==");
        print!("{}", read(&m, name));
    }
}

#[test]
fn zoneinfo_values_are_the_zone_fields() {
    use kmem::page_alloc::zone::{WMARK_HIGH, WMARK_LOW, WMARK_MIN, WMARK_PROMO};
    use std::sync::atomic::Ordering::Relaxed;
    for (cmd, m) in machines() {
        // Move some pages onto the per-CPU lists so the pagesets are not all zero:
        // allocate (small zones refill one page at a time) and free half of them.
        let mut pages: Vec<_> = (0..10).map(|_| m.alloc_pages(GFP_KERNEL, 0).unwrap()).collect();
        for p in pages.split_off(5) {
            // SAFETY: allocated above with order 0, freed once.
            unsafe { m.__free_pages(p, 0) };
        }
        let text = read(&m, "zoneinfo");
        let layout: [Option<ZoneType>; 5] = if m.has_highmem() {
            [
                Some(ZoneType::Dma),
                Some(ZoneType::Normal),
                Some(ZoneType::HighMem),
                Some(ZoneType::Movable),
                None,
            ]
        } else {
            [
                Some(ZoneType::Dma),
                Some(ZoneType::Dma32),
                Some(ZoneType::Normal),
                Some(ZoneType::Movable),
                None,
            ]
        };
        for (i, (head, lines)) in zoneinfo_stanzas(&text).into_iter().enumerate() {
            let pg = m.node_data(i / 5).unwrap();
            let val = |p: &str| -> usize {
                lines
                    .iter()
                    .find_map(|x| x.strip_prefix(p))
                    .unwrap_or_else(|| panic!("{cmd} {head}: {p}"))
                    .trim()
                    .parse()
                    .unwrap()
            };
            let prot = lines
                .iter()
                .find_map(|l| l.strip_prefix("        protection: "))
                .unwrap();
            let Some(zt) = layout[i % 5] else {
                // ZONE_DEVICE: not modelled, all zero.
                assert_eq!(prot, "(0, 0, 0, 0, 0)");
                assert_eq!(val("        managed "), 0);
                continue;
            };
            let z = &pg.node_zones[zt as usize];
            assert!(head.ends_with(&format!(" {:>8}", z.name())));
            assert_eq!(val("  pages free "), z.nr_free(), "{cmd} {head}");
            assert_eq!(val("        boost "), z.watermark_boost.load(Relaxed));
            assert_eq!(val("        min "), z.wmark(WMARK_MIN), "{cmd} {head}");
            assert_eq!(val("        low "), z.wmark(WMARK_LOW), "{cmd} {head}");
            assert_eq!(val("        high "), z.wmark(WMARK_HIGH), "{cmd} {head}");
            assert_eq!(val("        promo "), z.wmark(WMARK_PROMO), "{cmd} {head}");
            assert_eq!(val("        spanned "), z.spanned_pages);
            assert_eq!(val("        present "), z.present_pages);
            assert_eq!(val("        managed "), z.managed());
            // One protection entry per listed zone; ZONE_DEVICE adds no pages,
            // so its column repeats the last of ours.
            let cols: Vec<String> = layout
                .iter()
                .map(|c| {
                    z.lowmem_reserve[c.unwrap_or(ZoneType::Movable) as usize]
                        .load(Relaxed)
                        .to_string()
                })
                .collect();
            assert_eq!(prot, format!("({})", cols.join(", ")), "{cmd} {head}");
            if !z.is_populated() {
                continue;
            }
            assert_eq!(val("  start_pfn: "), z.zone_start_pfn);
            let per_cpu = |p: &str| -> Vec<usize> {
                lines
                    .iter()
                    .filter_map(|x| x.strip_prefix(p))
                    .map(|v| v.trim().parse().unwrap())
                    .collect()
            };
            let (count, high, batch) = (
                per_cpu("              count:"),
                per_cpu("              high:"),
                per_cpu("              batch:"),
            );
            let (hmin, hmax) = (
                per_cpu("              high_min:"),
                per_cpu("              high_max:"),
            );
            assert_eq!(per_cpu("    cpu: "), (0..m.nr_cpu_ids()).collect::<Vec<_>>());
            for cpu in 0..m.nr_cpu_ids() {
                // SAFETY: cpu < nr_cpu_ids and the zone is populated.
                let g = unsafe { z.pcp(cpu) }.lock.lock(&m.platform);
                // The CPU's hot arrays hold pcp pages too.
                let hot = m.pcp_hot_counts(z, cpu).0;
                assert_eq!(
                    (count[cpu], high[cpu], batch[cpu], hmin[cpu], hmax[cpu]),
                    (g.count + hot, g.high, g.batch, g.high_min, g.high_max),
                    "{cmd} {head} cpu {cpu}"
                );
            }
        }
        assert!(
            snapshots(&m).iter().map(|s| s.pcp_count).sum::<usize>() > 0,
            "{cmd}"
        );
        for p in pages {
            // SAFETY: allocated above with order 0, freed once.
            unsafe { m.__free_pages(p, 0) };
        }
    }
}

/// The `(start, end)` byte ranges of a `memblock/memory` or `memblock/reserved` file
/// ("   0: 0x0000000000001000..0x000000000009efff    0 NONE", ends inclusive).
fn memblock_ranges(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .map(|l| {
            let (a, b) = l[6..].split_once("..").expect("a range");
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex");
            (hex(a), hex(&b[..18]) + 1)
        })
        .collect()
}

/// The boot's reserved pages (`memmap_init_reserved_pages`): a page is
/// reserved if a reserved region covers part of it and its start lies in a
/// memory region. The boot intersects the ranges; this checks it against
/// the definition, page by page, on machines whose reserved regions straddle
/// the holes (the first MiB, the 3 GiB hole) and the memmap, and the count
/// that `show_mem` prints.
#[test]
fn reserved_pages_are_the_reserved_regions_inside_memory() {
    for cmdline in ["quiet mem=4G nr_cpus=2", "quiet mem=1G nr_cpus=2 numa=fake=2"] {
        let m = boot(cmdline);
        let memory = memblock_ranges(&read(&m, "memblock/memory"));
        let reserved = memblock_ranges(&read(&m, "memblock/reserved"));
        let in_memory = |pfn: usize| {
            let a = (pfn as u64) << 12;
            memory.iter().any(|&(s, e)| s <= a && a < e)
        };
        let mut expected = 0;
        for &(s, e) in &reserved {
            let (first, end) = ((s >> 12) as usize, (e.div_ceil(4096) as usize).min(m.max_pfn()));
            for pfn in first..end {
                let want = in_memory(pfn);
                expected += usize::from(want);
                assert_eq!(
                    m.page_is_reserved(pfn),
                    want,
                    "{cmdline}: pfn {pfn:#x} in [{s:#x}, {e:#x})"
                );
            }
            // The pages around a region are not reserved unless another region covers them.
            for pfn in [first.wrapping_sub(1), end] {
                let covered = reserved
                    .iter()
                    .any(|&(s, e)| (s >> 12) as usize <= pfn && pfn < e.div_ceil(4096) as usize);
                if pfn < m.max_pfn() && !covered {
                    assert!(
                        !m.page_is_reserved(pfn),
                        "{cmdline}: pfn {pfn:#x} next to [{s:#x}, {e:#x})"
                    );
                }
            }
        }
        println!(
            "{cmdline}: {expected} reserved pages in {} regions",
            reserved.len()
        );
        let since = m.dmesg_len();
        m.kmem().show_mem();
        let log = m.dmesg_since(since);
        assert!(
            log.contains(&format!("\n{expected} pages reserved\n")),
            "{cmdline}: {expected} expected:\n{log}"
        );
    }
}
