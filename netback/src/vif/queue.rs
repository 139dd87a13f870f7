//! One netback queue: a frontend's tx and rx rings (mapped through grants), with the
//! transmit path ([`super::tx`]) and the receive path ([`super::rx`]) it owns, the
//! staging grants both use, and the queue's counters and fatal error.

use xennet_ring::time::{Duration, Instant};

use xennet_ring::{
    BackRing, DomId, FrameAlloc, GrantCopy, GrantMap, GrantRef, LocalMemory, MappedPage, Notify,
    PAGE_SIZE,
};

use super::counters::VifCounters;
use super::error::VifError;
use super::peer::Peer;
use super::rx::{RxPath, RX_STAGING_PAGES};
use super::staging::StaticGrants;
use super::tx::{TxPath, TX_STAGING_PAGES};

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
    peer: Peer<G, M>,
    maps: Option<(G::Mapping, G::Mapping)>,
    tx: TxPath<N>,
    rx: RxPath<N>,
    counters: VifCounters,
    broken: Option<VifError>,
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
            peer: Peer {
                frontend: setup.frontend,
                grants,
                memory,
                statics: StaticGrants::new(),
            },
            maps: Some((tx_map, rx_map)),
            tx: TxPath::new(tx, staging, rate, now, tx_kick),
            rx: RxPath::new(rx, rx_staging, rx_kick),
            counters: VifCounters::default(),
            broken: None,
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
        self.rx.set_sg(sg);
    }

    /// The platform's grant operations this queue uses.
    pub(super) fn grants(&self) -> &G {
        &self.peer.grants
    }

    /// Grants of this queue kept mapped (staging grants).
    pub fn static_grants(&self) -> usize {
        self.peer.statics.len()
    }

    pub(super) fn add_static(&mut self, list: &[xennet_ring::netif::CtrlGref]) -> u32 {
        let p = &mut self.peer;
        p.statics.add(&p.grants, p.frontend, list)
    }

    pub(super) fn del_static(&mut self, list: &mut [xennet_ring::netif::CtrlGref]) -> u32 {
        let p = &mut self.peer;
        p.statics.del(&p.grants, list)
    }

    /// Count a notification from the frontend (called by the event loop).
    pub fn note_notification(&mut self) {
        self.counters.notify_received += 1;
    }

    fn fail(&mut self, e: VifError) -> VifError {
        if self.broken.is_none() {
            tracing::warn!(frontend = self.peer.frontend.0, error = %e, "vif queue disconnected");
            self.broken = Some(e);
            self.counters.fatal_errors += 1;
            self.rx.drop_queued(&mut self.counters);
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
        let r = self
            .tx
            .process(&self.peer, &mut self.counters, budget, now, deliver);
        r.map_err(|e| self.fail(e))
    }

    /// Queue a frame for the guest. Returns false if it was dropped (counted).
    pub fn enqueue_rx(&mut self, frame: &[u8], now: Instant) -> bool {
        if self.broken.is_some() {
            self.counters.rx_dropped_disconnected += 1;
            return false;
        }
        self.rx.enqueue(frame, now, &mut self.counters)
    }

    /// [`NetbackQueue::enqueue_rx`] taking the frame's buffer instead of copying it.
    /// Returns a spare buffer for the caller to reuse (the frame's own, if it was
    /// dropped).
    pub fn enqueue_rx_owned(&mut self, frame: Vec<u8>, now: Instant) -> (bool, Vec<u8>) {
        if self.broken.is_some() {
            self.counters.rx_dropped_disconnected += 1;
            return (false, frame);
        }
        self.rx.enqueue_owned(frame, now, &mut self.counters)
    }

    /// Frames waiting for guest buffers.
    pub fn rx_queued(&self) -> usize {
        self.rx.queued()
    }

    /// Guest receive: copy queued frames into the buffers the guest posted, as many
    /// slots per frame as needed, and answer in the slots of the requests consumed.
    pub fn process_rx(&mut self, now: Instant) -> Result<usize, VifError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        let r = self.rx.process(&self.peer, &mut self.counters, now);
        r.map_err(|e| self.fail(e))
    }

    /// Before sleeping: true if the frontend has requests waiting on either ring (or
    /// queued frames could move); otherwise the event indices are armed.
    pub fn final_check(&mut self) -> Result<bool, VifError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        let r = self
            .tx
            .final_check()
            .and_then(|tx| Ok(self.rx.final_check()? || tx));
        r.map_err(|e| self.fail(e))
    }

    /// When the queue next needs attention without a notification (rate credit refill
    /// with requests waiting, or a stalled rx frame to expire).
    pub fn poll_at(&self) -> Option<Instant> {
        match (self.rx.stall_deadline(), self.tx.next_refill()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Disconnect: unmap the rings, free staging pages. Frames still queued for the
    /// guest are counted as dropped.
    pub fn close(mut self) -> VifCounters {
        self.rx.drop_queued(&mut self.counters);
        let NetbackQueue {
            peer,
            maps,
            tx,
            rx,
            counters,
            ..
        } = self;
        let Peer {
            grants,
            memory,
            mut statics,
            ..
        } = peer;
        // The rings point into the mapped pages: end them before the pages go.
        let staging: Vec<_> = tx
            .into_staging()
            .into_iter()
            .chain(rx.into_staging())
            .collect();
        statics.clear(&grants);
        if let Some((a, b)) = maps {
            let _ = grants.unmap(a);
            let _ = grants.unmap(b);
        }
        for f in staging {
            memory.free_frame(f);
        }
        counters
    }
}
