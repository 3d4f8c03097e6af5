use kmem::*;
use kmem_hosted::Machine;

#[test]
fn boot_alloc_free_returns_to_boot_state() {
    let m = Machine::boot("quiet mem=512M nr_cpus=2").unwrap();
    let free0 = m.nr_free_pages();
    let mut pages = Vec::new();
    for order in 0..=10u32 {
        for _ in 0..3 {
            pages.push((m.alloc_pages(GFP_KERNEL, order).unwrap(), order));
        }
    }
    assert!(m.nr_free_pages() < free0);
    for (p, o) in pages {
        // SAFETY: test code on memory this machine allocated; misuse cases are the behaviour under test.
        unsafe { m.__free_pages(p, o) };
    }
    m.drain_all_pages();
    let mut diff = String::new();
    assert!(m.buddy_matches_boot_state(&mut diff), "{diff}\n{}", m.dmesg());
    assert_eq!(m.nr_free_pages(), free0);
    println!("{}", m.dmesg());
}

/// Parameters the machine does not know are listed on one line, as
/// `print_unknown_bootoptions` does: init's arguments first, then its
/// environment (`name=value`); a module's parameter (`name.param`) is
/// dropped without a word, as `unknown_bootoption` drops it.
#[test]
fn unknown_parameters_are_listed_as_written() {
    let m = Machine::boot("quiet mem=64M foo=bar baz nr_cpus=1 acpi.debug=1 x=\"a b\" single").unwrap();
    let log = m.dmesg();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Unknown kernel command"))
        .collect();
    assert_eq!(
        lines,
        ["Unknown kernel command line parameters \"baz single foo=bar x=a b\", will be passed to user space."]
    );
    let m = Machine::boot("quiet mem=64M acpi.debug=1").unwrap();
    assert!(!m.dmesg().contains("Unknown kernel command"), "{}", m.dmesg());
}
