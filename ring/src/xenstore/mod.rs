//! XenStore without std: the wire format of `xen/io/xs_wire.h`, the shared ring
//! page (`struct xenstore_domain_interface`), a client over it, xenstored's end of
//! it, and the [`XenStore`] trait a split driver's handshake is written against.
//!
//! - [`wire`]: header, message types, errno names, path rules (pure parsing; the
//!   socket client and the daemon in `xennet-xenstore` use the same code).
//! - [`page`]: the page layout and [`XsPage`], the only code touching it.
//! - [`XsRingClient`]: a guest's client (a unikernel's, where the page is
//!   `start_info.store_mfn` and the event channel `start_info.store_evtchn`).
//! - [`server`]: xenstored's end, for tests and models.
//! - [`nodes`]: the handshake's typed node reads and writes (state, flags, numbers)
//!   over any [`XenStore`].
//! - [`XenStore`]: read, write, directory, watch, transactions, implemented by
//!   [`XsRingClient`] and by `xennet_xenstore::XsClient`.
//!
//! No allocation anywhere: replies go into the caller's buffers and watch events
//! into a buffer the caller gives the client.

mod client;
mod error;
mod events;
#[cfg(loom)]
pub mod loom;
pub mod nodes;
pub mod page;
mod reader;
pub mod server;
mod store;
mod stream;
pub mod wire;

pub use client::{XsEvent, XsRingClient, MAX_MESSAGES_PER_REPLY};
pub use error::XsRingError;
pub use page::{XsPage, XsRingMemory, XENSTORE_RING_SIZE};
pub use store::{StoreError, TxId, WatchEventRef, XenStore};

#[cfg(test)]
mod tests;
