//! Per-queue counters: every frame is delivered or counted as dropped with a reason.

use std::ops::AddAssign;

/// Counters of one netback queue (and, summed, of a vif).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VifCounters {
    /// Frames taken from the guest's tx ring and handed to the switch.
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames refused with an ERROR response (bad size, 18-19 slots, copy failure,
    /// an offload that cannot be done).
    pub tx_errors: u64,
    /// Of those, frames whose checksum or segmentation request (csum_blank, GSO) their
    /// headers cannot carry.
    pub tx_bad_offload: u64,
    /// Segments made from GSO frames (each GSO frame counts once in `tx_packets`).
    pub tx_gso_segments: u64,
    /// Frames sent into the guest's rx ring.
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames for the guest dropped because its rx queue held `RX_QUEUE_FRAMES`
    /// frames (it posts no buffers fast enough).
    pub rx_dropped_queue_full: u64,
    /// Frames for the guest dropped because its rx queue held `RX_QUEUE_BYTES` of
    /// frames (the frame did not fit in what was left).
    pub rx_dropped_queue_bytes: u64,
    /// Frames dropped because they waited `RX_STALL` for guest buffers (aged out).
    pub rx_dropped_stalled: u64,
    /// Frames dropped because the vif was not connected.
    pub rx_dropped_disconnected: u64,
    /// Frames dropped because they were larger than any rx chain can carry.
    pub rx_dropped_too_big: u64,
    /// Frames the guest's buffers could not take (copy error answered with ERROR).
    pub rx_errors: u64,
    /// Notifications sent to the frontend.
    pub notify_sent: u64,
    /// Notifications received from the frontend (counted by the caller's event loop).
    pub notify_received: u64,
    /// Times the tx ring had requests waiting while rate credit ran out.
    pub tx_credit_waits: u64,
    /// Times a frame for the guest found no posted buffer (rx ring empty).
    pub rx_ring_full: u64,
    /// Grant copy batches issued.
    pub copy_batches: u64,
    /// Fatal frontend errors (the vif was disconnected).
    pub fatal_errors: u64,
    /// Slots copied through a staging grant (a page kept mapped): no grant operation.
    pub mapped_slots: u64,
    /// Control-ring requests answered.
    pub ctrl_requests: u64,
    /// Kicks from the frontend that found no work (counted by the event loop).
    pub spurious_events: u64,
    /// Times the frontend's channels were masked for a while after a run of
    /// spurious kicks (an event storm, XSA-332).
    pub throttled: u64,
}

impl AddAssign for VifCounters {
    fn add_assign(&mut self, o: VifCounters) {
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_errors += o.tx_errors;
        self.tx_bad_offload += o.tx_bad_offload;
        self.tx_gso_segments += o.tx_gso_segments;
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.rx_dropped_queue_full += o.rx_dropped_queue_full;
        self.rx_dropped_queue_bytes += o.rx_dropped_queue_bytes;
        self.rx_dropped_stalled += o.rx_dropped_stalled;
        self.rx_dropped_disconnected += o.rx_dropped_disconnected;
        self.rx_dropped_too_big += o.rx_dropped_too_big;
        self.rx_errors += o.rx_errors;
        self.notify_sent += o.notify_sent;
        self.notify_received += o.notify_received;
        self.tx_credit_waits += o.tx_credit_waits;
        self.rx_ring_full += o.rx_ring_full;
        self.copy_batches += o.copy_batches;
        self.fatal_errors += o.fatal_errors;
        self.mapped_slots += o.mapped_slots;
        self.ctrl_requests += o.ctrl_requests;
        self.spurious_events += o.spurious_events;
        self.throttled += o.throttled;
    }
}

impl VifCounters {
    /// All frames for the guest that were dropped, whatever the reason.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped_queue_full
            + self.rx_dropped_queue_bytes
            + self.rx_dropped_stalled
            + self.rx_dropped_disconnected
            + self.rx_dropped_too_big
            + self.rx_errors
    }
}
