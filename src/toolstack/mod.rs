//! The toolstack: what xl/libxl do for the plain-process platform (create domains,
//! write both ends' device nodes, run the hotplug step, tear down).

pub mod control;
pub mod guest;
pub mod nodes;
pub mod procs;
pub mod soak;
pub mod up;
pub mod xenstored;
