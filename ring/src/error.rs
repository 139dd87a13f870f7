//! Errors of ring operations: all are values, none panics.

use core::fmt;

/// Why a ring operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The memory is not `4096 << order` bytes (order 0..=4), or holds no entry.
    BadLength(usize),
    /// The memory is not aligned for the header's atomics or the entries.
    BadAlignment,
    /// The peer's producer index claims more entries than the ring can hold
    /// (`RING_REQUEST_PROD_OVERFLOW` / `RING_RESPONSE_PROD_OVERFLOW`): the peer is
    /// broken or hostile. The index is the one it published.
    ProducerOverflow {
        /// The producer index the peer published.
        prod: u32,
        /// Our consumer index at the time.
        cons: u32,
    },
    /// No free slot: the front has `size` requests outstanding, or the back tried to
    /// answer more requests than it consumed.
    Full,
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::BadLength(len) => write!(
                f,
                "ring memory of {len} bytes is not 4096 << order (order 0..=4)"
            ),
            RingError::BadAlignment => write!(f, "ring memory is misaligned"),
            RingError::ProducerOverflow { prod, cons } => write!(
                f,
                "peer producer index {prod} is impossibly far ahead of consumer index {cons}"
            ),
            RingError::Full => write!(f, "ring full"),
        }
    }
}
