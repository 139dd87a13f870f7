//! Errors of the ring client and server end: all are values, none panics.

use core::fmt;

use super::wire::Errno;

/// Why a XenStore ring operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsRingError {
    /// xenstored refused the request with one of Xen's errno names (or, as the
    /// socket client does, E2BIG for a request whose payload passes
    /// `XENSTORE_PAYLOAD_MAX`, before sending anything).
    Errno(Errno),
    /// The wait hook gave up before the peer answered. The reply still owed is
    /// skipped when it comes; a request cut off half-written breaks the connection.
    Timeout,
    /// The caller's buffer is too small for the reply (or queued event), which
    /// needs `needed` bytes. A reply is consumed; a queued event is kept.
    BufferTooSmall {
        /// Bytes the reply or event holds.
        needed: usize,
    },
    /// The ring page is not 4-byte aligned.
    BadPage,
    /// The peer's index is impossible: a producer more than the ring ahead of its
    /// consumer (`prod - cons > XENSTORE_RING_SIZE`), or an index moved backwards or
    /// past what the other side wrote.
    IndexOverrun {
        /// The producer index, as read.
        prod: u32,
        /// The consumer index, as read or kept.
        cons: u32,
    },
    /// A message header claims a payload past `XENSTORE_PAYLOAD_MAX`.
    PayloadTooLong(u32),
    /// A message header has a type xs_wire.h does not define.
    UnknownType(u32),
    /// A reply that answers no request of ours: another `req_id`, or another type
    /// than the request's (other than `XS_ERROR`).
    UnexpectedReply {
        /// The `req_id` of the request waiting for its reply.
        expected: u32,
        /// The reply's `req_id`.
        req_id: u32,
        /// The reply's type.
        ty: u32,
    },
    /// A reply's payload is not what its request calls for (a transaction id that
    /// is not a number).
    Malformed(&'static str),
    /// More than [`super::MAX_MESSAGES_PER_REPLY`] other messages came
    /// while waiting for one reply.
    Flooded,
    /// An earlier protocol violation or half-written request ended the connection:
    /// the byte stream can no longer be trusted to be in step.
    Broken,
}

impl XsRingError {
    /// xenstored's errno, if it refused the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            XsRingError::Errno(e) => Some(*e),
            _ => None,
        }
    }

    /// Whether the error is the peer's fault and ends the connection.
    pub fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            XsRingError::IndexOverrun { .. }
                | XsRingError::PayloadTooLong(_)
                | XsRingError::UnknownType(_)
                | XsRingError::UnexpectedReply { .. }
                | XsRingError::Malformed(_)
                | XsRingError::Flooded
        )
    }
}

impl From<Errno> for XsRingError {
    fn from(e: Errno) -> Self {
        XsRingError::Errno(e)
    }
}

impl fmt::Display for XsRingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XsRingError::Errno(e) => write!(f, "xenstore: {e}"),
            XsRingError::Timeout => {
                f.write_str("xenstore ring: no reply before the wait hook gave up")
            }
            XsRingError::BufferTooSmall { needed } => {
                write!(
                    f,
                    "xenstore ring: reply of {needed} bytes does not fit the buffer"
                )
            }
            XsRingError::BadPage => f.write_str("xenstore ring page is misaligned"),
            XsRingError::IndexOverrun { prod, cons } => write!(
                f,
                "xenstore ring: impossible indices (producer {prod}, consumer {cons})"
            ),
            XsRingError::PayloadTooLong(len) => {
                write!(
                    f,
                    "xenstore ring: message of {len} bytes passes the payload maximum"
                )
            }
            XsRingError::UnknownType(ty) => write!(f, "xenstore ring: unknown message type {ty}"),
            XsRingError::UnexpectedReply {
                expected,
                req_id,
                ty,
            } => write!(
                f,
                "xenstore ring: reply type {ty} for request {req_id} while waiting for {expected}"
            ),
            XsRingError::Malformed(why) => write!(f, "xenstore ring: malformed reply: {why}"),
            XsRingError::Flooded => {
                f.write_str("xenstore ring: too many other messages while waiting for a reply")
            }
            XsRingError::Broken => {
                f.write_str("xenstore ring: connection broken by an earlier fault")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for XsRingError {}
