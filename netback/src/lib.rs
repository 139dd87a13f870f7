//! # xennet-netback
//!
//! The backend half of Xen's paravirtual network split driver, as Linux's
//! xen-netback splits it: per-vif queues with their tx and rx paths ([`vif`]), the
//! control ring, credit-based rate limiting, the per-device XenStore handshake
//! ([`xenbus`]) and the state machine that drives it ([`up`]). What a vif's frames meet next (a bridge, a router, a TAP device) is
//! the driver domain's business (`xennet-switch`, `xennet-dom0`).
#![warn(missing_docs)]

pub mod up;
pub mod vif;
pub mod xenbus;
