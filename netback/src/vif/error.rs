//! Fatal faults of a frontend: each ends that vif's connection (never the process,
//! never other vifs), as Linux netback's `xenvif_fatal_tx_err` does.

use xennet_ring::{GrantStatus, MemoryError, RingError};

/// Why a vif was disconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VifError {
    /// The frontend's ring index was impossible (XSA-39 class).
    #[error("frontend broke the ring: {0}")]
    Ring(RingError),
    /// A packet's slot chain was longer than any frontend may send (20 or more).
    #[error("tx chain of {0} slots or more")]
    ChainTooLong(usize),
    /// A packet's chain continued past the requests the frontend published.
    #[error("tx chain continues past the published requests")]
    IncompleteChain,
    /// A slot's `offset + size` runs past its page.
    #[error("tx slot at offset {offset} with {size} bytes crosses its page")]
    SlotCrossesPage {
        /// Slot offset.
        offset: u16,
        /// Slot size.
        size: u16,
    },
    /// An extra-info slot was missing, of unknown type, or a GSO slot was invalid.
    #[error("bad extra-info slot (type {0})")]
    BadExtra(u8),
    /// A grant reference the frontend passed could not be used (never granted, ended,
    /// wrong domain, read-only for receive, out of range).
    #[error("frontend grant reference unusable: {0}")]
    BadGrant(GrantStatus),
    /// Mapping the frontend's ring page failed.
    #[error("cannot map frontend ring: {0}")]
    Map(GrantStatus),
    /// Our own memory refused an access.
    #[error("backend memory: {0}")]
    Memory(MemoryError),
    /// The platform could not perform a grant copy batch at all.
    #[error("grant copy failed: {0}")]
    Copy(GrantStatus),
}

impl From<RingError> for VifError {
    fn from(e: RingError) -> Self {
        VifError::Ring(e)
    }
}

impl From<MemoryError> for VifError {
    fn from(e: MemoryError) -> Self {
        VifError::Memory(e)
    }
}
