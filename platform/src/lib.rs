//! # xennet-platform
//!
//! The backends of the driver traits (`xennet_ring`'s `GrantAccess`, `GrantCopy`,
//! `GrantMap`, `LocalMemory`, `FrameAlloc`, `Notify`), one module per platform, as
//! vm-memory keeps one per backend:
//! - [`shm`]: plain Linux processes (and threads) sharing memory files; the grant
//!   copy/map routine plays the hypervisor.
//! - `xenlinux` (feature `xenlinux`): Linux user space inside a Xen domain, over
//!   `/dev/xen/gntalloc`, `/dev/xen/gntdev` and `/dev/xen/evtchn`.
//! - `xen` (feature `xen`): hypercalls through `xen-sys`, for a unikernel.
//!
//! XenStore is its own crate, `xennet-xenstore`.
#![warn(missing_docs)]

pub mod clock;
mod event;
pub mod shm;
#[cfg(all(feature = "xen", target_arch = "x86_64"))]
pub mod xen;
#[cfg(all(feature = "xenlinux", target_os = "linux"))]
pub mod xenlinux;

pub use event::{EventChannelOps, Interrupter};
