//! # xennet
//!
//! The `xennet` command: the toolstack for the plain-process platform (what `xl` and
//! libxl do on Xen), the demo, the guest program, the soak and the benchmark report.
//! The drivers and the driver domain live in the workspace's library crates:
//! `xennet-ring`, `xennet-platform`, `xennet-xenstore`, `xennet-netfront`,
//! `xennet-netback`, `xennet-switch` and `xennet-dom0` (see docs/architecture.md).
#![warn(missing_docs)]

pub mod bench;
pub mod check;
pub mod demo;
pub mod guest;
pub mod procs;
pub mod soak;
