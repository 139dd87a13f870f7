//! # xennet-ring
//!
//! Xen's shared I/O rings (`xen/io/ring.h`), the netif wire format (`xen/io/netif.h`)
//! and the grant-table ABI (`xen/grant_table.h`), byte-compatible with Xen 4.17.
//!
//! `#![no_std]`, no `alloc`: the same code runs in a unikernel guest, in a Linux
//! process over a shared-memory file, and under loom's model checker.
#![no_std]
#![warn(missing_docs)]

pub mod event;
pub mod grant;
pub mod memory;
pub mod netif;
pub mod xenbus;

pub use event::{Notify, Port};
pub use grant::{DomId, Frame, GrantAccess, GrantCopy, GrantMap, GrantRef, PAGE_SIZE};
pub use memory::{FrameAlloc, LocalMemory, MappedPage, MemoryError};
pub use xenbus::XenbusState;
