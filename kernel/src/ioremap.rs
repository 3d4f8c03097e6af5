//! ioremap tests (real device memory). Filled in once the core's ioremap
//! lands; until then there is nothing to test here.

/// Run the ioremap checks, reporting each through `report`.
pub fn tests(_report: &mut dyn FnMut(&str, bool, core::fmt::Arguments<'_>)) {}
