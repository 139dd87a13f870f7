//! Guest receive: frames queued for the guest (bounded, aged out), copied into the
//! buffers the guest posted (by grant copy from staging pages, or straight into pages
//! it keeps mapped for us), answered in the slots of the requests they consume.

use std::collections::VecDeque;

use xennet_ring::grant::{GnttabCopy, GnttabCopyPtr};
use xennet_ring::memory::write_mapped;
use xennet_ring::netif::{RxFlags, RxRequest, RxResponse, RX_RING_SIZE, XEN_NETIF_MAX_TX_SIZE};
use xennet_ring::time::{Duration, Instant};
use xennet_ring::{
    BackRing, Frame, GrantCopy, GrantMap, GrantStatus, LocalMemory, MappedPage, Notify, PAGE_SIZE,
};

use super::counters::VifCounters;
use super::error::VifError;
use super::peer::Peer;

/// Staging pages per queue for guest receive (frames are placed here, then copied out).
pub const RX_STAGING_PAGES: usize = 48;
/// Bytes of frames a queue keeps for a guest that posts no buffers before newer
/// frames are dropped: half a ring of pages, Linux netback's `XENVIF_RX_QUEUE_BYTES`
/// (512 KiB; eight 64 KiB frames). A guest cannot make the backend hoard memory
/// (XSA-392).
pub const RX_QUEUE_BYTES: usize = RX_RING_SIZE / 2 * PAGE_SIZE;
/// Frames a queue keeps, however small (bounds the per-frame bookkeeping).
pub const RX_QUEUE_FRAMES: usize = 1024;
/// A frame for the guest that waited this long for buffers is dropped, as Linux's
/// rx drain timeout ages its queue out (Linux waits 10 s).
pub const RX_STALL: Duration = Duration::from_secs(2);
/// An rx slot written through a staging grant: no copy operation.
const NO_OP: u32 = u32::MAX;
/// Spare frame buffers kept for reuse.
const SPARE_BUFFERS: usize = 64;

/// The receive half of a queue: the rx ring, the frames waiting for guest buffers,
/// the staging pages frames are copied out of, and the kick.
pub(super) struct RxPath<N> {
    ring: BackRing<RxRequest, RxResponse>,
    staging: Vec<Frame>,
    ops: Vec<GnttabCopy>,
    queue: VecDeque<(Vec<u8>, Instant)>,
    /// Bytes of the frames in `queue` (at most [`RX_QUEUE_BYTES`]).
    queued_bytes: usize,
    spare: Vec<Vec<u8>>,
    /// Per slot of a batch: request id, length, more data, copy op (or NO_OP).
    slots: Vec<(u16, u16, bool, u32)>,
    kick: N,
    /// The frontend takes multi-slot receive frames (`feature-sg`).
    sg: bool,
}

impl<N: Notify> RxPath<N> {
    pub(super) fn new(ring: BackRing<RxRequest, RxResponse>, staging: Vec<Frame>, kick: N) -> Self {
        RxPath {
            ring,
            ops: Vec::with_capacity(staging.len()),
            slots: Vec::with_capacity(staging.len()),
            staging,
            queue: VecDeque::with_capacity(RX_QUEUE_FRAMES),
            queued_bytes: 0,
            spare: Vec::new(),
            kick,
            sg: true,
        }
    }

    /// Whether the frontend negotiated `feature-sg`.
    pub(super) fn set_sg(&mut self, sg: bool) {
        self.sg = sg;
    }

    /// Frames waiting for guest buffers.
    pub(super) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether a frame of `len` bytes may be queued; counts the drop if not.
    fn admit(&self, len: usize, counters: &mut VifCounters) -> bool {
        let slots = len.div_ceil(PAGE_SIZE);
        if len > XEN_NETIF_MAX_TX_SIZE || slots > RX_STAGING_PAGES || (!self.sg && slots > 1) {
            counters.rx_dropped_too_big += 1;
            return false;
        }
        if self.queue.len() >= RX_QUEUE_FRAMES {
            counters.rx_dropped_queue_full += 1;
            return false;
        }
        if self.queued_bytes + len > RX_QUEUE_BYTES {
            counters.rx_dropped_queue_bytes += 1;
            return false;
        }
        true
    }

    /// Queue `frame` (admitted) from `now`.
    fn push(&mut self, frame: Vec<u8>, now: Instant) {
        self.queued_bytes += frame.len();
        self.queue.push_back((frame, now));
    }

    /// Take the oldest frame off the queue; its buffer is kept for reuse.
    fn pop(&mut self) {
        if let Some((buf, _)) = self.queue.pop_front() {
            self.queued_bytes -= buf.len();
            if self.spare.len() < SPARE_BUFFERS {
                self.spare.push(buf);
            }
        }
    }

    /// Queue a copy of `frame`. Returns false if it was dropped (counted).
    pub(super) fn enqueue(
        &mut self,
        frame: &[u8],
        now: Instant,
        counters: &mut VifCounters,
    ) -> bool {
        if !self.admit(frame.len(), counters) {
            return false;
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        self.push(buf, now);
        true
    }

    /// Queue `frame` by its buffer; returns a spare buffer (the frame's own if it was
    /// dropped).
    pub(super) fn enqueue_owned(
        &mut self,
        frame: Vec<u8>,
        now: Instant,
        counters: &mut VifCounters,
    ) -> (bool, Vec<u8>) {
        if !self.admit(frame.len(), counters) {
            return (false, frame);
        }
        self.push(frame, now);
        (true, self.spare.pop().unwrap_or_default())
    }

    /// The connection is gone: whatever waits for the guest is lost, and counted.
    pub(super) fn drop_queued(&mut self, counters: &mut VifCounters) {
        counters.rx_dropped_disconnected += self.queue.len() as u64;
        self.queue.clear();
        self.queued_bytes = 0;
    }

    /// Copy queued frames into the buffers the guest posted, as many slots per frame
    /// as needed, and answer in the slots of the requests consumed; then drop frames
    /// that waited too long for buffers.
    pub(super) fn process<G, M>(
        &mut self,
        peer: &Peer<G, M>,
        counters: &mut VifCounters,
        now: Instant,
    ) -> Result<usize, VifError>
    where
        G: GrantCopy + GrantMap,
        M: LocalMemory,
    {
        let mut delivered = 0;
        loop {
            let (mut frames, mut bytes) = (0, 0);
            if let Err(e) = self.batch(peer, counters, &mut frames, &mut bytes) {
                // The batch's frames left the queue but never reached the guest.
                counters.rx_errors += frames as u64;
                return Err(e);
            }
            if frames == 0 {
                break;
            }
            // Counted once the guest has them (the copies succeeded, the responses
            // are published), not when they were queued for copying.
            counters.rx_packets += frames as u64;
            counters.rx_bytes += bytes;
            delivered += frames;
        }
        // Frames that waited too long for buffers are dropped, oldest first.
        while let Some((_, since)) = self.queue.front() {
            if now.saturating_duration_since(*since) < RX_STALL {
                break;
            }
            self.pop();
            counters.rx_dropped_stalled += 1;
        }
        Ok(delivered)
    }

    /// One batch: as many queued frames as the staging pages and the posted buffers
    /// hold, copied and answered. `frames` and `bytes` count what left the queue.
    fn batch<G, M>(
        &mut self,
        peer: &Peer<G, M>,
        counters: &mut VifCounters,
        frames: &mut usize,
        bytes: &mut u64,
    ) -> Result<(), VifError>
    where
        G: GrantCopy + GrantMap,
        M: LocalMemory,
    {
        self.ops.clear();
        self.slots.clear();
        let mut page = 0;
        while let Some((frame, _)) = self.queue.front() {
            let len = frame.len();
            let needed = len.div_ceil(PAGE_SIZE).max(1);
            if page + needed > self.staging.len() {
                break;
            }
            let avail = self.ring.unconsumed_requests()? as usize;
            if avail < needed {
                if *frames == 0 {
                    counters.rx_ring_full += 1;
                }
                break;
            }
            for (i, chunk) in frame.chunks(PAGE_SIZE).enumerate() {
                let Some(req) = self.ring.pop_request()? else {
                    return Err(VifError::IncompleteChain);
                };
                let len = chunk.len() as u16;
                let more = i + 1 < needed;
                // A buffer the frontend keeps mapped for us: write it directly.
                let mapped = peer
                    .statics
                    .find(req.gref)
                    .filter(|&e| !peer.statics.page(e).readonly());
                if let Some(e) = mapped {
                    write_mapped(peer.statics.page(e), 0, chunk)?;
                    counters.mapped_slots += 1;
                    self.slots.push((req.id, len, more, NO_OP));
                    continue;
                }
                let staging = self.staging[page];
                page += 1;
                peer.memory.write(staging, 0, chunk)?;
                self.slots.push((req.id, len, more, self.ops.len() as u32));
                self.ops.push(GnttabCopy::to_grant(
                    GnttabCopyPtr::local(staging, 0),
                    GnttabCopyPtr::gref(req.gref, peer.frontend, 0),
                    len,
                ));
            }
            *frames += 1;
            *bytes += len as u64;
            self.pop();
        }
        if *frames == 0 {
            return Ok(());
        }
        if !self.ops.is_empty() {
            counters.copy_batches += 1;
            peer.grants
                .grant_copy(&mut self.ops)
                .map_err(VifError::Copy)?;
        }
        for &(id, len, more, op) in &self.slots {
            if let Some(op) = self.ops.get(op as usize) {
                let status = op.status();
                if status != GrantStatus::Okay {
                    return Err(VifError::BadGrant(status));
                }
            }
            let flags = if more {
                RxFlags::MORE_DATA
            } else {
                RxFlags::empty()
            };
            let rsp = RxResponse {
                id,
                offset: 0,
                flags: flags.bits(),
                status: len as i16,
            };
            self.ring.push_response(&rsp)?;
        }
        if self.ring.push_responses_and_check_notify() {
            self.kick.notify();
            counters.notify_sent += 1;
        }
        Ok(())
    }

    /// Before sleeping: whether queued frames could move now (else `req_event` is
    /// armed, so the guest's next posted buffer kicks us).
    pub(super) fn final_check(&mut self) -> Result<bool, VifError> {
        Ok(!self.queue.is_empty() && self.ring.final_check_for_requests()?)
    }

    /// When the oldest queued frame is due to be dropped as stalled.
    pub(super) fn stall_deadline(&self) -> Option<Instant> {
        self.queue.front().map(|(_, t)| *t + RX_STALL)
    }

    /// The staging pages, for freeing at close (the ring end goes with `self`).
    pub(super) fn into_staging(self) -> Vec<Frame> {
        self.staging
    }
}
