//! # xennet-ring
//!
//! Xen's shared I/O rings (`xen/io/ring.h`), the netif wire format (`xen/io/netif.h`),
//! the grant-table ABI (`xen/grant_table.h`) and a XenStore client over the shared
//! XenStore page (`xen/io/xs_wire.h`, [`xenstore`]), byte-compatible with Xen 4.17.
//!
//! `#![no_std]`, no `alloc`: the same code runs in a unikernel guest, in a Linux
//! process over a shared-memory file, and under loom's model checker.
//!
//! The ring logic ([`FrontRing`], [`BackRing`]) is written once over [`RingMemory`];
//! [`SharedRing`] is the real page, and under `cfg(loom)` the `loom` module provides
//! a checked model of the same memory.
#![no_std]
#![warn(missing_docs)]

#[cfg(any(loom, test, feature = "std"))]
extern crate std;

pub mod back;
pub mod error;
pub mod event;
pub mod front;
pub mod grant;
pub mod idx;
#[cfg(loom)]
pub mod loom;
pub mod mem;
pub mod memory;
pub mod netif;
pub mod page;
pub mod sring;
pub mod time;
pub mod xenbus;
pub mod xenstore;

pub use back::BackRing;
pub use error::RingError;
pub use event::{Notify, Port};
pub use front::FrontRing;
pub use grant::{DomId, GrantAccess, GrantCopy, GrantError, GrantMap, GrantRef, GrantStatus};
pub use idx::{need_notify, RingIdx};
pub use mem::{Entry, FenceSite, RingMemory, Word};
pub use memory::{FrameAlloc, LocalMemory, MappedPage, MemoryError};
pub use page::{Frame, PAGE_SIZE};
pub use sring::{ring_entries, SharedRing, HEADER_SIZE};
pub use xenbus::XenbusState;

#[cfg(test)]
mod tests;
