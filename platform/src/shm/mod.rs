//! The plain-process platform: what Xen gives split drivers, over shared memory.
//!
//! - [`Domain`]: a domain's own pages, v1 grant table and event page, in files of the
//!   runtime directory (or anonymous memory for threads); the granting side
//!   ([`xennet_ring::GrantAccess`]) and the domain's memory ([`xennet_ring::LocalMemory`]).
//! - [`GrantOps`] with [`PeerDomain`]s: the using side, grant copy and grant map with
//!   Xen's status codes and in-use flags (the hypervisor's job, done by the user). A
//!   peer is mapped only as far as a role needs ([`PeerAccess`]), its files' sizes
//!   checked first, and guarded against it truncating them (`guard.rs`).
//! - [`EventChannels`]: event channels with coalescing pending bits and a futex doorbell.
//!
//! The byte layout of every file is in docs/shm-layout.md.

mod copy;
mod domain;
mod error;
mod evtchn;
mod guard;
mod peer;
pub mod pending;
mod region;
mod runtime;

pub use copy::{GrantOps, Mapping};
pub use domain::{Domain, MAX_GRANT_ENTRIES, MAX_PAGES};
pub use error::ShmError;
pub use evtchn::{state as port_state, EventChannels, EventPort, MAX_PORTS, PORTS_OFFSET};
pub use guard::pages_replaced;
pub use peer::{PeerAccess, PeerDomain};
pub use region::{Region, Regions, EVTCHN_BYTES, GRANT_ENTRY_BYTES};
pub use runtime::{pid_alive, RuntimeDir};
