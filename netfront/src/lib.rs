//! # xennet-netfront
//!
//! The guest side of Xen's paravirtual network split driver. The core is `no_std`
//! (+`alloc`) and depends only on `xennet-ring`; the `std` feature adds the process
//! harness and the `smoltcp` feature a `smoltcp::phy::Device`.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;
