//! One netback queue: a frontend's tx and rx rings (mapped through grants), the
//! backend's staging pages, and the per-packet logic of both directions.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use xennet_ring::grant::{GnttabCopy, GnttabCopyPtr};
use xennet_ring::memory::write_mapped;
use xennet_ring::netif::{
    RxFlags, RxRequest, RxResponse, TxRequest, TxResponse, NETIF_RSP_ERROR, NETIF_RSP_NULL,
    NETIF_RSP_OKAY, XEN_NETIF_MAX_TX_SIZE,
};
use xennet_ring::{
    BackRing, DomId, Frame, FrameAlloc, GrantCopy, GrantMap, GrantRef, GrantStatus, LocalMemory,
    MappedPage, Notify, PAGE_SIZE,
};

use super::counters::VifCounters;
use super::credit::Credit;
use super::error::VifError;
use super::staging::StaticGrants;
use super::tx::{self, Piece, TxPacket};

/// Staging pages per queue for guest transmit (grant copies land here).
pub const TX_STAGING_PAGES: usize = 96;
/// Staging pages per queue for guest receive (frames are placed here, then copied out).
pub const RX_STAGING_PAGES: usize = 48;
/// Frames per guest-transmit grant-copy batch.
pub const TX_BATCH: usize = 64;
/// Frames kept for a guest that posts no buffers before newer ones are dropped.
pub const RX_QUEUE_FRAMES: usize = 1024;
/// A frame for the guest that waited this long for buffers is dropped (a guest that
/// stops posting cannot make the backend hoard memory, XSA-392).
pub const RX_STALL: Duration = Duration::from_secs(2);
pub use xennet_ring::netif::ETH_HLEN;

/// What a queue is connected with: the frontend's ring refs and the kicks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSetup {
    /// The frontend's domain.
    pub frontend: DomId,
    /// `tx-ring-ref`.
    pub tx_ring_ref: GrantRef,
    /// `rx-ring-ref`.
    pub rx_ring_ref: GrantRef,
}

/// One connected queue of a vif.
pub struct NetbackQueue<G: GrantMap, M, N> {
    pub(super) frontend: DomId,
    pub(super) grants: G,
    pub(super) memory: M,
    pub(super) tx: BackRing<TxRequest, TxResponse>,
    pub(super) rx: BackRing<RxRequest, RxResponse>,
    maps: Option<(G::Mapping, G::Mapping)>,
    pub(super) tx_staging: Vec<Frame>,
    rx_staging: Vec<Frame>,
    pub(super) ops: Vec<GnttabCopy>,
    /// Where each data slot of the current tx batch comes from.
    pub(super) pieces: Vec<Piece>,
    /// Staging grants: the frontend's pages kept mapped (control ring).
    pub(super) statics: StaticGrants<G::Mapping>,
    pub(super) slots: Vec<TxRequest>,
    pub(super) pkts: Vec<TxPacket>,
    /// Where a guest's frame is assembled (used from its first page boundary on,
    /// see [`xennet_ring::memory::page_aligned`]).
    pub(super) frame_buf: Vec<u8>,
    rx_queue: VecDeque<(Vec<u8>, Instant)>,
    rx_spare: Vec<Vec<u8>>,
    /// Per rx slot of a batch: request id, length, more data, copy op (or NO_OP).
    rx_slots: Vec<(u16, u16, bool, u32)>,
    pub(super) credit: Credit,
    pub(super) counters: VifCounters,
    pub(super) tx_kick: N,
    pub(super) rx_kick: N,
    broken: Option<VifError>,
    /// The frontend takes multi-slot receive frames (`feature-sg`).
    rx_sg: bool,
}

impl<G, M, N> NetbackQueue<G, M, N>
where
    G: GrantCopy + GrantMap,
    M: LocalMemory + FrameAlloc,
    N: Notify,
{
    /// Map the frontend's rings and allocate staging pages. Refuses rings whose
    /// indices already overflow.
    pub fn connect(
        grants: G,
        memory: M,
        setup: QueueSetup,
        rate: Option<(u64, Duration)>,
        tx_kick: N,
        rx_kick: N,
        now: Instant,
    ) -> Result<Self, VifError> {
        let tx_map = grants
            .map(setup.frontend, setup.tx_ring_ref, false)
            .map_err(VifError::Map)?;
        let rx_map = match grants.map(setup.frontend, setup.rx_ring_ref, false) {
            Ok(m) => m,
            Err(e) => {
                let _ = grants.unmap(tx_map);
                return Err(VifError::Map(e));
            }
        };
        // SAFETY: the mappings are kept in `maps` until `close`, after the rings are
        // gone, so the pages stay valid; they are only accessed through the ring ends.
        let rings = unsafe {
            BackRing::attach(tx_map.as_ptr(), PAGE_SIZE)
                .and_then(|tx| Ok((tx, BackRing::attach(rx_map.as_ptr(), PAGE_SIZE)?)))
        };
        let (tx, rx) = match rings {
            Ok(r) => r,
            Err(e) => {
                let _ = grants.unmap(tx_map);
                let _ = grants.unmap(rx_map);
                return Err(VifError::Ring(e));
            }
        };
        let mut staging = Vec::with_capacity(TX_STAGING_PAGES + RX_STAGING_PAGES);
        for _ in 0..TX_STAGING_PAGES + RX_STAGING_PAGES {
            match memory.alloc_frame() {
                Ok(f) => staging.push(f),
                Err(e) => {
                    for f in staging {
                        memory.free_frame(f);
                    }
                    let _ = grants.unmap(tx_map);
                    let _ = grants.unmap(rx_map);
                    return Err(VifError::Memory(e));
                }
            }
        }
        let rx_staging = staging.split_off(TX_STAGING_PAGES);
        Ok(NetbackQueue {
            frontend: setup.frontend,
            grants,
            memory,
            tx,
            rx,
            maps: Some((tx_map, rx_map)),
            tx_staging: staging,
            rx_staging,
            ops: Vec::with_capacity(TX_STAGING_PAGES * 2),
            pieces: Vec::with_capacity(TX_STAGING_PAGES * 2),
            statics: StaticGrants::new(),
            slots: Vec::with_capacity(TX_BATCH * 4),
            pkts: Vec::with_capacity(TX_BATCH),
            frame_buf: vec![0; XEN_NETIF_MAX_TX_SIZE + 1 + PAGE_SIZE],
            rx_queue: VecDeque::with_capacity(RX_QUEUE_FRAMES),
            rx_spare: Vec::new(),
            rx_slots: Vec::with_capacity(RX_STAGING_PAGES),
            credit: Credit::new(rate, now),
            counters: VifCounters::default(),
            tx_kick,
            rx_kick,
            broken: None,
            rx_sg: true,
        })
    }

    /// The fatal error that stopped this queue, if any.
    pub fn broken(&self) -> Option<VifError> {
        self.broken
    }

    /// Counters.
    pub fn counters(&self) -> VifCounters {
        self.counters
    }

    /// Whether the frontend negotiated `feature-sg`: without it, a frame for the
    /// guest must fit one slot (one page) and larger ones are dropped as too big, as
    /// Linux netback limits a non-SG vif to one page.
    pub fn set_rx_sg(&mut self, sg: bool) {
        self.rx_sg = sg;
    }

    /// Grants of this queue kept mapped (staging grants).
    pub fn static_grants(&self) -> usize {
        self.statics.len()
    }

    pub(super) fn add_static(&mut self, list: &[xennet_ring::netif::CtrlGref]) -> u32 {
        self.statics.add(&self.grants, self.frontend, list)
    }

    pub(super) fn del_static(&mut self, list: &mut [xennet_ring::netif::CtrlGref]) -> u32 {
        self.statics.del(&self.grants, list)
    }

    /// Count a notification from the frontend (called by the event loop).
    pub fn note_notification(&mut self) {
        self.counters.notify_received += 1;
    }

    pub(super) fn fail(&mut self, e: VifError) -> VifError {
        if self.broken.is_none() {
            tracing::warn!(frontend = self.frontend.0, error = %e, "vif queue disconnected");
            self.broken = Some(e);
            self.counters.fatal_errors += 1;
            // Whatever waits for the guest is lost with the connection: count it.
            self.counters.rx_dropped_disconnected += self.rx_queue.len() as u64;
            self.rx_queue.clear();
        }
        e
    }

    /// Guest transmit: take up to `budget` frames from the tx ring, grant-copy them in
    /// batches, hand each whole frame to `deliver`, and answer every slot.
    pub fn process_tx(
        &mut self,
        budget: usize,
        now: Instant,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, VifError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        tx::process(self, budget, now, deliver).map_err(|e| self.fail(e))
    }

    /// Queue a frame for the guest. Returns false if it was dropped (counted).
    pub fn enqueue_rx(&mut self, frame: &[u8], now: Instant) -> bool {
        if !self.admit_rx(frame.len()) {
            return false;
        }
        let mut buf = self.rx_spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        self.rx_queue.push_back((buf, now));
        true
    }

    /// [`NetbackQueue::enqueue_rx`] taking the frame's buffer instead of copying it.
    /// Returns a spare buffer for the caller to reuse (the frame's own, if it was
    /// dropped).
    pub fn enqueue_rx_owned(&mut self, frame: Vec<u8>, now: Instant) -> (bool, Vec<u8>) {
        if !self.admit_rx(frame.len()) {
            return (false, frame);
        }
        self.rx_queue.push_back((frame, now));
        (true, self.rx_spare.pop().unwrap_or_default())
    }

    /// Whether a frame of `len` bytes may be queued for the guest; counts the drop
    /// if not.
    fn admit_rx(&mut self, len: usize) -> bool {
        if self.broken.is_some() {
            self.counters.rx_dropped_disconnected += 1;
            return false;
        }
        let slots = len.div_ceil(PAGE_SIZE);
        if len > XEN_NETIF_MAX_TX_SIZE || slots > RX_STAGING_PAGES || (!self.rx_sg && slots > 1) {
            self.counters.rx_dropped_too_big += 1;
            return false;
        }
        if self.rx_queue.len() >= RX_QUEUE_FRAMES {
            self.counters.rx_dropped_queue_full += 1;
            return false;
        }
        true
    }

    /// Frames waiting for guest buffers.
    pub fn rx_queued(&self) -> usize {
        self.rx_queue.len()
    }

    /// Guest receive: copy queued frames into the buffers the guest posted, as many
    /// slots per frame as needed, and answer in the slots of the requests consumed.
    pub fn process_rx(&mut self, now: Instant) -> Result<usize, VifError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        self.process_rx_inner(now).map_err(|e| self.fail(e))
    }

    fn process_rx_inner(&mut self, now: Instant) -> Result<usize, VifError> {
        let mut delivered = 0;
        loop {
            self.ops.clear();
            self.rx_slots.clear();
            let mut frames = 0;
            let mut page = 0;
            while let Some((frame, _)) = self.rx_queue.front() {
                let len = frame.len();
                let needed = len.div_ceil(PAGE_SIZE).max(1);
                if page + needed > self.rx_staging.len() {
                    break;
                }
                let avail = self.rx.unconsumed_requests()? as usize;
                if avail < needed {
                    if frames == 0 {
                        self.counters.rx_ring_full += 1;
                    }
                    break;
                }
                for (i, chunk) in frame.chunks(PAGE_SIZE).enumerate() {
                    let Some(req) = self.rx.pop_request()? else {
                        return Err(VifError::IncompleteChain);
                    };
                    let len = chunk.len() as u16;
                    let more = i + 1 < needed;
                    // A buffer the frontend keeps mapped for us: write it directly.
                    let mapped = self
                        .statics
                        .find(req.gref)
                        .filter(|&e| !self.statics.page(e).readonly());
                    if let Some(e) = mapped {
                        write_mapped(self.statics.page(e), 0, chunk)?;
                        self.counters.mapped_slots += 1;
                        self.rx_slots.push((req.id, len, more, NO_OP));
                        continue;
                    }
                    let staging = self.rx_staging[page];
                    page += 1;
                    self.memory.write(staging, 0, chunk)?;
                    self.rx_slots
                        .push((req.id, len, more, self.ops.len() as u32));
                    self.ops.push(GnttabCopy::to_grant(
                        GnttabCopyPtr::local(staging, 0),
                        GnttabCopyPtr::gref(req.gref, self.frontend, 0),
                        len,
                    ));
                }
                frames += 1;
                self.counters.rx_packets += 1;
                self.counters.rx_bytes += len as u64;
                if let Some((buf, _)) = self.rx_queue.pop_front() {
                    if self.rx_spare.len() < 64 {
                        self.rx_spare.push(buf);
                    }
                }
            }
            if frames == 0 {
                break;
            }
            if !self.ops.is_empty() {
                self.counters.copy_batches += 1;
                self.grants
                    .grant_copy(&mut self.ops)
                    .map_err(VifError::Copy)?;
            }
            for &(id, len, more, op) in &self.rx_slots {
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
                self.rx.push_response(&rsp)?;
            }
            if self.rx.push_responses_and_check_notify() {
                self.rx_kick.notify();
                self.counters.notify_sent += 1;
            }
            delivered += frames;
        }
        // Frames that waited too long for buffers are dropped, oldest first.
        while let Some((_, since)) = self.rx_queue.front() {
            if now.saturating_duration_since(*since) < RX_STALL {
                break;
            }
            self.rx_queue.pop_front();
            self.counters.rx_dropped_stalled += 1;
        }
        Ok(delivered)
    }

    /// Before sleeping: true if the frontend has requests waiting on either ring (or
    /// queued frames could move); otherwise the event indices are armed.
    pub fn final_check(&mut self) -> Result<bool, VifError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        let r = (|| {
            let tx = self.tx.final_check_for_requests()?;
            let rx = !self.rx_queue.is_empty() && self.rx.final_check_for_requests()?;
            Ok::<_, VifError>(tx || rx)
        })();
        r.map_err(|e| self.fail(e))
    }

    /// When the queue next needs attention without a notification (rate credit refill
    /// with requests waiting, or a stalled rx frame to expire).
    pub fn poll_at(&self) -> Option<Instant> {
        let stall = self.rx_queue.front().map(|(_, t)| *t + RX_STALL);
        match (stall, self.credit.next_refill()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Disconnect: unmap the rings, free staging pages. Frames still queued for the
    /// guest are counted as dropped.
    pub fn close(mut self) -> VifCounters {
        self.counters.rx_dropped_disconnected += self.rx_queue.len() as u64;
        let NetbackQueue {
            grants,
            mut statics,
            memory,
            tx,
            rx,
            maps,
            tx_staging,
            rx_staging,
            counters,
            ..
        } = self;
        // The rings point into the pages: end them before the pages go.
        let _ = (tx, rx);
        statics.clear(&grants);
        if let Some((a, b)) = maps {
            let _ = grants.unmap(a);
            let _ = grants.unmap(b);
        }
        for f in tx_staging.into_iter().chain(rx_staging) {
            memory.free_frame(f);
        }
        counters
    }
}

/// Answer every slot of a packet: data slots with `status`, extra slots with NULL.
/// `extra_mask` has bit i set if slot i is an extra-info slot.
pub(super) fn respond(
    ring: &mut BackRing<TxRequest, TxResponse>,
    slots: &[TxRequest],
    extra_mask: u32,
    status: i16,
) -> Result<(), VifError> {
    for (i, req) in slots.iter().enumerate() {
        let rsp = if extra_mask & (1 << i) != 0 {
            TxResponse {
                id: 0,
                status: NETIF_RSP_NULL,
            }
        } else {
            TxResponse { id: req.id, status }
        };
        ring.push_response(&rsp)?;
    }
    Ok(())
}

/// An rx slot written through a staging grant: no copy operation.
const NO_OP: u32 = u32::MAX;

/// Status for a packet that is dropped but does not end the connection.
pub(super) const DROP_STATUS: i16 = NETIF_RSP_ERROR;
/// Status for a delivered packet.
pub(super) const OK_STATUS: i16 = NETIF_RSP_OKAY;
