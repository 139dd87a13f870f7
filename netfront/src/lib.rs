//! # xennet-netfront
//!
//! The guest side of Xen's paravirtual network split driver. The core is `no_std`
//! (+`alloc`) and depends only on `xennet-ring`: it runs over any platform that grants
//! pages ([`xennet_ring::GrantAccess`]), owns memory ([`xennet_ring::LocalMemory`],
//! [`xennet_ring::FrameAlloc`]) and kicks event channels ([`xennet_ring::Notify`]).
//! The `std` feature adds the XenStore handshake for the process harness, and the
//! `smoltcp` feature a `smoltcp::phy::Device`.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod counters;
mod ctrl;
mod device;
mod error;
#[cfg(feature = "smoltcp")]
pub mod phy;
mod pool;
mod queue;
#[cfg(feature = "std")]
pub mod xenbus;

pub use counters::FrontCounters;
pub use ctrl::{CtrlState, HASH_KEY, HASH_MAPPING_SIZE, HASH_TYPES};
pub use device::{Features, FrontConfig, LinkState, Netfront};
pub use error::{FrontError, SendError};
pub use queue::{QueueRefs, RxMeta, TxOffload, MIN_FRAME};
