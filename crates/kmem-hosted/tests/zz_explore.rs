use kmem::page_alloc::zone::*;
use kmem_hosted::Machine;
use std::time::Instant;
#[test]
fn explore() {
    for cmd in ["quiet mem=64M nr_cpus=1", "quiet mem=64M nr_cpus=2", "quiet mem=512M nr_cpus=2", "quiet mem=6G nr_cpus=2", "quiet mem=1G highmem=512M nr_cpus=2", "quiet mem=512M numa=fake=2 nr_cpus=2"] {
        let t = Instant::now();
        let m = Machine::boot(cmd).unwrap();
        println!("{cmd}: boot {:?} total {} free {}", t.elapsed(), m.totalram_pages(), m.nr_free_pages());
        for z in m.zones() {
            let pcp = unsafe { z.pcp(0) }.lock.lock(&m.platform);
            println!("  node {} {} start {:#x} span {} managed {} free {} min {} low {} high {} reserve {:?} batch {} high {}..{}", z.node, z.name(), z.zone_start_pfn, z.spanned_pages, z.managed(), z.nr_free(), z.wmark(WMARK_MIN), z.wmark(WMARK_LOW), z.wmark(WMARK_HIGH), z.lowmem_reserve.iter().map(|r| r.load(std::sync::atomic::Ordering::Relaxed)).collect::<Vec<_>>(), pcp.batch, pcp.high_min, pcp.high_max);
        }
        let t = Instant::now();
        drop(m);
        println!("drop {:?}", t.elapsed());
    }
}
