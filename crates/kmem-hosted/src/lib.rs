//! kmem's hosted home: the platform for running kmem machines inside an
//! ordinary Linux process.
//!
//! A machine booted here has
//!
//! * **real physical memory**: [`HostRam`] is a sparse memfd of the machine's
//!   RAM size, mapped once as the linear map (`virt = base + phys`), so pfn
//!   arithmetic, `virt_to_page` and `page_address` are plain arithmetic.
//!   Freed RAM is punched out of the memfd so the process's memory use follows
//!   the machine's; further windows alias RAM pages for vmalloc.
//! * **real CPUs**: [`HostedPlatform`] reads the CPU a thread runs on from
//!   glibc's rseq area (a load from thread-local memory) and folds the host's
//!   CPUs onto the machine's.
//! * **real sleeping**: allocations that may sleep wait on futexes.
//! * **kernel messages** on stderr (unless quiet), formatted without allocating.
//! * **device memory** for `ioremap`: file descriptors registered at free
//!   physical addresses ([`iomem`]).
//!
//! The machine and boot glue (the boot command line, the process-wide default
//! machine) builds on these two pieces.

pub mod fork;
pub mod global;
pub mod iomem;
pub mod machine;
pub mod platform;
pub mod ram;

pub use global::{CacheBox, KBox, KVmallocAllocator, KmallocAllocator, KmemAlloc, KmemCache};
pub use iomem::{FakeDevice, IomemError, IomemRegion};
pub use machine::{default_machine, Machine, MachineError};
pub use platform::HostedPlatform;
pub use ram::HostRam;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
