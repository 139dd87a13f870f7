//! XenStore: the `xs_wire.h` protocol, a daemon on unix sockets, and a client.
//!
//! - [`wire`]: message header, types, errno strings, path rules (pure parsing).
//! - [`store`]: the tree with Xen's node permissions and quotas, and a
//!   transaction's view of it.
//! - [`Xenstored`]: the daemon; `DIR/socket` is domain 0's, `DIR/domain/<id>/socket`
//!   each introduced guest's. Debian's `xenstore-*` tools work against it with
//!   `XENSTORED_PATH=DIR/socket`.
//! - [`XsClient`]: a synchronous client with watches and transactions.

#![deny(unsafe_code)]

pub mod client;
pub mod daemon;
pub mod journal;
pub mod store;
pub mod wire;
pub mod xenbus;

pub use client::{default_socket, Transaction, WatchEvent, XsClient, XsError};
pub use daemon::{apply, dom0_socket, domain_socket, DaemonStats, Limits, Xenstored};
pub use store::{Access, Caller, Nodes, Perm, Perms, Tree};
pub use wire::Errno;
pub use xenbus::{NodeError, XenbusState};
