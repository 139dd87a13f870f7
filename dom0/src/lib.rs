//! # xennet-dom0
//!
//! The driver domain as a library: what `xennet up` runs. It builds a driver domain
//! from a topology ([`build`]), keeps domain 0's XenStore and reconciles every
//! backend device from it ([`up`], with netback's per-device state machine), and moves
//! frames between netback's vifs and the switch on the data plane ([`dataplane`]).
//! [`platform`] is what the data plane and the handshake need of the platform
//! (the process platform, or Linux user space under real Xen).
//! [`stack`] is the smoltcp host the guests run; [`side`] wires domains and drivers
//! for threads in one process. Test fixtures live behind the `test-utils` feature
//! ([`testing`]), so tests, benches and fuzz targets depend on libraries, not the CLI.
#![warn(missing_docs)]
// One scoped exception: the supervised xenstored's pre-exec hook (xenstored.rs).
#![deny(unsafe_code)]

pub mod build;
pub mod control;
pub mod dataplane;
pub mod nodes;
pub mod platform;
pub mod platform_check;
pub mod process;
pub mod side;
pub mod stack;
pub mod stats;
#[cfg(feature = "test-utils")]
pub mod testing;
pub mod up;
pub mod xenstored;
