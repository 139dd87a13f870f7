//! # xennet-netback
//!
//! The backend of Xen's paravirtual network split driver and the driver domain around
//! it: per-vif queues, the bridge/route/NAT switch, uplinks and packet captures.
#![warn(missing_docs)]

pub mod capture;
pub mod config;
pub mod switch;
pub mod uplink;
pub mod vif;
pub mod wire;
pub mod xenbus;
