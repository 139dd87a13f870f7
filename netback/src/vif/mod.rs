//! netback proper: a guest's virtual interface (vif) with its queues.
//!
//! [`NetbackQueue`] is one connected queue pair (tx + rx ring of one frontend queue);
//! [`Vif`] groups a frontend's queues, spreads frames for the guest over them by flow
//! hash and sums their counters.

mod counters;
mod credit;
mod ctrl;
mod device;
mod error;
mod offload;
mod peer;
mod queue;
mod rx;
mod staging;
#[cfg(test)]
mod tests;
mod tx;

pub use counters::VifCounters;
pub use credit::Credit;
pub use ctrl::{CtrlRing, HASH_TYPES, MAX_HASH_KEY, MAX_HASH_MAPPING};
pub use device::Vif;
pub use error::VifError;
pub use queue::{NetbackQueue, QueueSetup};
pub use rx::{RX_QUEUE_BYTES, RX_QUEUE_FRAMES, RX_STAGING_PAGES, RX_STALL};
pub use staging::{GREF_LIST_MAX, STATIC_GRANTS_PER_QUEUE};
pub use tx::FATAL_SLOTS;
pub use tx::{TX_BATCH, TX_STAGING_PAGES};
pub use xennet_ring::netif::ETH_HLEN;
