//! Per-device counters: every frame is counted as sent, received or dropped with a reason.

/// Counters of one frontend device (all queues).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontCounters {
    /// Frames placed on the tx ring.
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames the backend answered with ERROR.
    pub tx_errors: u64,
    /// Frames the backend answered with DROPPED.
    pub tx_dropped: u64,
    /// Sends refused with [`crate::SendError::Busy`] (the caller kept the frame).
    pub tx_busy: u64,
    /// Frames delivered to the stack.
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames the backend marked with an error status, or that were malformed.
    pub rx_errors: u64,
    /// Receive buffers posted to the backend.
    pub rx_posted: u64,
    /// Notifications sent to the backend.
    pub notify_sent: u64,
    /// Times the device was declared broken.
    pub fatal_errors: u64,
}
