//! # kmem — the Linux kernel's memory allocators as a Rust library
//!
//! This is the `#![no_std]` core: the buddy page allocator with nodes, zones,
//! migrate types, per-CPU lists, watermarks and GFP semantics; memblock (the
//! boot-time allocator); and the kernel's statistics files. It has no heap of
//! its own: every structure a machine needs is allocated from the machine's
//! own memory at boot, as the kernel does.
//!
//! The core is generic over a [`platform::Platform`], which supplies CPU ids,
//! sleeping and waking, interrupt masking and logging. `kmem-hosted` provides
//! one for Linux processes; a bare-metal kernel provides its own.
//!
//! Names are the kernel's: a kernel engineer should find `free_area`, `pcp`,
//! `__free_one_page` and `__alloc_pages_slowpath` where they expect them.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(test)]
extern crate std;

pub mod bootmem;
pub mod cmdline;
pub mod context;
pub mod e820;
pub mod gfp;
pub mod highmem;
pub mod ioremap;
pub mod kbox;
pub mod kmalloc;
pub mod kswapd;
pub mod list;
pub mod machine;
pub mod memblock;
pub mod mempool;
pub mod page;
pub mod page_alloc;
pub mod percpu;
pub mod platform;
pub mod printk;
pub mod proc;
pub mod rbtree;
pub mod reciprocal_div;
pub mod slab;
pub mod spinlock;
pub mod vmalloc;
pub mod vmscan;

pub use gfp::*;
pub use kbox::{CacheBox, DefaultMachine, KAllocator, KBox, KVmallocAllocator, KmallocAllocator};
pub use kmalloc::{zero_or_null_ptr, ZERO_SIZE_PTR};
pub use machine::{BootError, BootInfo, Kmem, MachineState};
pub use page::{get_order, Page, PAGE_SHIFT, PAGE_SIZE};
pub use percpu::{PerCpu, PerCpuVar, PercpuInt, PercpuPtr};
pub use platform::Platform;

/// An allocation failed (the Rust-for-Linux `AllocError`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AllocError;

impl core::fmt::Display for AllocError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("memory allocation failed")
    }
}
