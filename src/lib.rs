//! # xennet
//!
//! A Rust implementation of Xen's paravirtual network split driver: netfront,
//! netback, the platform they run on (plain processes or a real hypervisor) and a
//! driver domain that bridges, routes or NATs guests' frames.
//!
//! This crate re-exports the workspace crates and hosts the `xennet` toolstack CLI.

pub use xennet_netback as netback;
pub use xennet_netfront as netfront;
pub use xennet_platform as platform;
pub use xennet_ring as ring;

pub mod bench;
pub mod dataplane;
pub mod demo;
pub mod guest;
pub mod harness;
pub mod toolstack;
