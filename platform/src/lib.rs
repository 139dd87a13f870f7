//! # xennet-platform
//!
//! What Xen gives split drivers, two ways: [`shm`] emulates grant tables and event
//! channels for plain Linux processes (and threads) sharing memory, [`xenstore`] is a
//! XenStore daemon and client speaking Xen's real wire protocol; the `xen` feature
//! implements the same driver traits with real hypercalls.
#![warn(missing_docs)]

pub mod shm;
#[cfg(all(feature = "xen", target_arch = "x86_64"))]
pub mod xen;
#[cfg(all(feature = "xenlinux", target_os = "linux"))]
pub mod xenlinux;
pub mod xenstore;
