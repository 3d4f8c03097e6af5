//! The kernel's statistics files (`/proc/buddyinfo`, `pagetypeinfo`, `zoneinfo`, `meminfo`).
use crate::machine::Kmem;
use crate::platform::Platform;
use core::fmt::{self, Write};

/// Write the text of `/proc/<name>`; `Err` for an unknown name.
pub fn proc_show<P: Platform>(_k: &Kmem<P>, _name: &str, _out: &mut dyn Write) -> fmt::Result {
    Err(fmt::Error)
}
