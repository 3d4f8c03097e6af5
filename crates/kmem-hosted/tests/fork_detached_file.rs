//! A `fork` child of a parent whose memfd holds no data, alone in its
//! process (so that no other test's machine is registered and the parent
//! has nothing to copy): the child gets no copy of the memfd but a
//! reservation in its place, and makes a file of its own when it first
//! needs one (`kmem_hosted::ram`, `RamRef::detach_file`). A machine with
//! private lowmem boots that way too: no file until one is needed.

mod common;

use common::forking::*;
use kmem::GFP_KERNEL;
use kmem_hosted::Machine;

/// The (device, inode) of a descriptor.
fn file_id(fd: i32) -> (u64, u64) {
    // SAFETY: an all-zero stat is a valid value to overwrite.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is writable.
    assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
    (st.st_dev, st.st_ino)
}

/// The line of `/proc/self/maps` that maps `addr`.
fn mapping_at(addr: usize) -> String {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .find(|l| {
            let (a, b) = l.split_whitespace().next().unwrap().split_once('-').unwrap();
            let (a, b) = (
                usize::from_str_radix(a, 16).unwrap(),
                usize::from_str_radix(b, 16).unwrap(),
            );
            (a..b).contains(&addr)
        })
        .unwrap_or_default()
        .to_string()
}

/// A parent whose memfd holds no data and was never mapped twice (it never
/// used HighMem) gives its child nothing to copy: the child puts a
/// reservation where the linear map mapped the memfd (`RamRef::detach_file`)
/// and makes a file of its own at its first vmalloc; the parent's file stays
/// empty.
#[test]
fn child_of_a_parent_without_highmem_data_makes_its_own_file() {
    let m = Machine::boot("quiet mem=256M kmem.lowmem=128M kmem.private_lowmem=1 kswapd=off").unwrap();
    let small = m.kmalloc(64, GFP_KERNEL).unwrap().as_ptr();
    fill(small, 64, b'P');
    let highmem = m.ram().base() + m.ram().private();
    // The machine boots with no file: a reservation where it will be mapped.
    let line = mapping_at(highmem);
    assert!(line.contains(" ---p ") && !line.contains("memfd"), "{line}");
    // A child of the parent that has no file makes its own, and the parent still has none.
    let (c0, m0) = fork_with(|o| {
        let v = m.vmalloc(1 << 20).unwrap().as_ptr();
        fill(v, 1 << 20, b'0');
        let own = mapping_at(highmem).contains("/memfd:kmem-ram");
        send(
            o,
            if own && all(v, 1 << 20, b'0') {
                b"ok"
            } else {
                b"BAD"
            },
        );
        0
    });
    assert_eq!((c0, m0.as_str()), (0, "ok"));
    assert!(!mapping_at(highmem).contains("memfd"));
    // The first use that needs the file makes it, where the reservation was.
    let parent_fd = m.ram().fd().unwrap();
    assert!(mapping_at(highmem).contains("/memfd:kmem-ram"));
    let parent_file = file_id(parent_fd);
    let (code, msg) = fork_with(|out| {
        let line = mapping_at(highmem);
        let reserved = line.contains(" ---p ") && !line.contains("memfd");
        // A grandchild while this child has no file: the same again.
        let (c1, m1) = fork_with(|o| {
            let v = m.vmalloc(1 << 20).unwrap().as_ptr();
            fill(v, 1 << 20, b'g');
            send(o, if all(v, 1 << 20, b'g') { b"ok" } else { b"BAD" });
            0
        });
        let v = m.vmalloc(1 << 20).unwrap().as_ptr();
        fill(v, 1 << 20, b'c');
        let written = all(v, 1 << 20, b'c');
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(v) };
        let own = file_id(m.ram().fd().unwrap()) != parent_file;
        let attached = mapping_at(highmem).contains("/memfd:kmem-ram");
        let snapshot = all(small, 64, b'P');
        // A grandchild once this child's file holds data: a copy of it.
        let keep = m.vmalloc(1 << 20).unwrap().as_ptr();
        fill(keep, 1 << 20, b'k');
        let (c2, m2) = fork_with(|o| {
            send(o, if all(keep, 1 << 20, b'k') { b"ok" } else { b"BAD" });
            0
        });
        let grandchildren = (c1, m1.as_str(), c2, m2.as_str()) == (0, "ok", 0, "ok");
        send(out, if reserved { b"reserved " } else { b"STILL-MAPPED " });
        send(out, if written { b"vmalloc-ok " } else { b"VMALLOC-BAD " });
        send(out, if own { b"own-file " } else { b"PARENTS-FILE " });
        send(out, if attached { b"attached " } else { b"NOT-ATTACHED " });
        send(out, if snapshot { b"snapshot " } else { b"NO-SNAPSHOT " });
        send(
            out,
            if grandchildren {
                b"grandchildren-ok"
            } else {
                b"GRANDCHILDREN-BAD"
            },
        );
        0
    });
    assert_eq!(
        (code, msg.as_str()),
        (
            0,
            "reserved vmalloc-ok own-file attached snapshot grandchildren-ok"
        )
    );
    // The child's vmalloc wrote its own file: the parent's holds no data above lowmem.
    // SAFETY: seeking the RAM's open descriptor.
    let data = unsafe { libc::lseek(parent_fd, m.ram().private() as libc::off_t, libc::SEEK_DATA) };
    assert_eq!(
        (data, std::io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::ENXIO))
    );
    assert!(all(small, 64, b'P'));
    // SAFETY: allocated above.
    unsafe { m.kfree(small) };
}
