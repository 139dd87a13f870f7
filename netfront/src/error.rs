//! Why the frontend refused a frame or declared its device broken.

use core::fmt;

use xennet_ring::{GrantError, MemoryError, RingError};

/// A fatal fault of the device: after one, the device stops using its rings (state
/// [`crate::LinkState::Broken`]) until it is reconnected. All come from the backend's
/// input (or from platform failures); none panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontError {
    /// A ring index from the backend was impossible (overflow or moving backwards).
    Ring(RingError),
    /// A tx response carried an id we never issued or already completed.
    BadTxResponseId(u16),
    /// An rx response described bytes outside its page (`offset + status > 4096`).
    BadRxResponse {
        /// Offset the backend claimed.
        offset: u16,
        /// Status (byte count) the backend claimed.
        status: i16,
    },
    /// A granting operation failed.
    Grant(GrantError),
    /// Our own memory refused an access.
    Memory(MemoryError),
    /// A grant was still in use by the backend when access had to end.
    GrantStillInUse,
    /// A control-ring response answered no outstanding request (wrong id or type).
    BadCtrlResponse {
        /// The id the backend answered.
        id: u16,
    },
}

impl fmt::Display for FrontError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontError::Ring(e) => write!(f, "backend broke the ring: {e}"),
            FrontError::BadTxResponseId(id) => {
                write!(f, "backend answered tx id {id}, which is not in flight")
            }
            FrontError::BadRxResponse { offset, status } => write!(
                f,
                "backend rx response with offset {offset} and size {status} exceeds the page"
            ),
            FrontError::Grant(e) => write!(f, "grant operation failed: {e}"),
            FrontError::Memory(e) => write!(f, "memory access failed: {e}"),
            FrontError::GrantStillInUse => write!(f, "a grant is still in use by the backend"),
            FrontError::BadCtrlResponse { id } => {
                write!(
                    f,
                    "backend answered control request {id}, which is not outstanding"
                )
            }
        }
    }
}

impl From<RingError> for FrontError {
    fn from(e: RingError) -> Self {
        FrontError::Ring(e)
    }
}

impl From<GrantError> for FrontError {
    fn from(e: GrantError) -> Self {
        FrontError::Grant(e)
    }
}

impl From<MemoryError> for FrontError {
    fn from(e: MemoryError) -> Self {
        FrontError::Memory(e)
    }
}

/// Why [`crate::Netfront::send`] did not take a frame. The frame is untouched and
/// still the caller's: nothing is dropped silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Empty, shorter than an Ethernet header, or over 65535 bytes.
    BadLength(usize),
    /// No room in the ring or buffer pool right now; retry after the backend answers.
    Busy,
    /// The device is not connected (or is broken).
    NotConnected,
    /// A GSO frame was offered but the backend did not negotiate `feature-gso-tcpv4`.
    GsoNotNegotiated,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::BadLength(n) => write!(f, "frame of {n} bytes cannot be sent"),
            SendError::Busy => write!(f, "tx ring or buffer pool full"),
            SendError::NotConnected => write!(f, "device not connected"),
            SendError::GsoNotNegotiated => write!(f, "backend did not negotiate GSO"),
        }
    }
}
