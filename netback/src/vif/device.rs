//! A vif: one frontend device's queues.

use xennet_ring::time::Instant;

use xennet_ring::netif::{flow_queue, CtrlGref};
use xennet_ring::{DomId, FrameAlloc, GrantCopy, GrantMap, LocalMemory, Notify};

use super::counters::VifCounters;
use super::ctrl::{self, CtrlRing, CtrlTarget, HashState};
use super::error::VifError;
use super::queue::NetbackQueue;
use super::staging::GREF_LIST_MAX;

/// A guest's network device as the backend sees it: `vif<domid>.<devid>`.
pub struct Vif<G: GrantMap, M, N> {
    /// The frontend's domain.
    pub domid: DomId,
    /// The device index (`handle`).
    pub devid: u32,
    queues: Vec<NetbackQueue<G, M, N>>,
    /// Counters of queues already closed (kept so totals never go backwards).
    closed: VifCounters,
    /// The control ring, when the frontend set one up (`feature-ctrl-ring`).
    ctrl: Option<CtrlRing<G, N>>,
    /// Why the control ring ended the vif.
    ctrl_broken: Option<VifError>,
    hash: HashState,
    ctrl_scratch: Box<[CtrlGref; GREF_LIST_MAX]>,
    /// Per queue: whether its tx and rx have channels of their own
    /// (`feature-split-event-channels`), which places its ports in the vif's list.
    split: Vec<bool>,
}

/// What control requests act on: the queues and the hash settings.
struct Target<'a, G: GrantMap, M, N> {
    domid: DomId,
    queues: &'a mut [NetbackQueue<G, M, N>],
    hash: &'a mut HashState,
}

impl<G, M, N> CtrlTarget for Target<'_, G, M, N>
where
    G: GrantCopy + GrantMap,
    M: LocalMemory + FrameAlloc,
    N: Notify,
{
    type Grants = G;
    fn grants(&self) -> &G {
        self.queues[0].grants()
    }
    fn frontend(&self) -> DomId {
        self.domid
    }
    fn queues(&self) -> usize {
        self.queues.len()
    }
    fn add_static(&mut self, queue: usize, list: &[CtrlGref]) -> u32 {
        self.queues[queue].add_static(list)
    }
    fn del_static(&mut self, queue: usize, list: &mut [CtrlGref]) -> u32 {
        self.queues[queue].del_static(list)
    }
    fn hash(&mut self) -> &mut HashState {
        self.hash
    }
}

impl<G, M, N> Vif<G, M, N>
where
    G: GrantCopy + GrantMap,
    M: LocalMemory + FrameAlloc,
    N: Notify,
{
    /// A vif over connected queues (at least one), each with one event channel for
    /// both rings unless [`Vif::set_split_channels`] says otherwise.
    pub fn new(domid: DomId, devid: u32, queues: Vec<NetbackQueue<G, M, N>>) -> Self {
        let split = vec![false; queues.len()];
        Vif {
            split,
            domid,
            devid,
            queues,
            closed: VifCounters::default(),
            ctrl: None,
            ctrl_broken: None,
            hash: HashState::new(),
            ctrl_scratch: Box::new([CtrlGref::default(); GREF_LIST_MAX]),
        }
    }

    /// Which queues have split channels (a tx and an rx channel each), in queue
    /// order; the rest share one channel per queue.
    pub fn set_split_channels(&mut self, split: impl IntoIterator<Item = bool>) {
        let mut split = split.into_iter();
        for s in &mut self.split {
            *s = split.next().unwrap_or(false);
        }
    }

    /// Count a kick that came through the vif's `index`th event channel, in the
    /// order the handshake binds them (per queue its channel, or its tx then its rx
    /// channel when split; then the control channel): on the queue it belongs to, or
    /// on the vif for the control channel.
    pub fn note_event(&mut self, index: usize) {
        let mut at = 0;
        for (q, &split) in self.queues.iter_mut().zip(&self.split) {
            let channels = if split { 2 } else { 1 };
            if index < at + channels {
                q.note_notification();
                return;
            }
            at += channels;
        }
        if index == at && self.ctrl.is_some() {
            self.closed.notify_received += 1;
        }
    }

    /// Attach the frontend's control ring (`ctrl-ring-ref`, `event-channel-ctrl`).
    pub fn attach_ctrl(&mut self, ring: CtrlRing<G, N>) {
        self.ctrl = Some(ring);
    }

    /// Whether a control ring is attached.
    pub fn has_ctrl(&self) -> bool {
        self.ctrl.is_some()
    }

    /// Answer the frontend's control requests (staging grants, hash settings). Called
    /// by [`Vif::process_tx`]; returns how many were answered. A control ring with an
    /// impossible index ends the vif.
    pub fn process_ctrl(&mut self) -> Result<usize, VifError> {
        if self.ctrl.is_none() {
            return Ok(0);
        }
        if let Some(e) = self.broken() {
            return Err(e);
        }
        let Some(ring) = self.ctrl.as_mut() else {
            return Ok(0);
        };
        if self.queues.is_empty() {
            return Ok(0);
        }
        let mut target = Target {
            domid: self.domid,
            queues: &mut self.queues,
            hash: &mut self.hash,
        };
        match ctrl::process(ring, &mut target, &mut self.ctrl_scratch) {
            Ok(n) => {
                self.closed.ctrl_requests += n as u64;
                Ok(n)
            }
            Err(e) => Err(self.ctrl_failed(e)),
        }
    }

    /// The control ring ended the vif: recorded and counted once, wherever the fault
    /// was first seen (answering requests or the final check before sleeping).
    fn ctrl_failed(&mut self, e: VifError) -> VifError {
        if self.ctrl_broken.is_none() {
            tracing::warn!(vif = %self.name(), error = %e, "control ring broken");
            self.ctrl_broken = Some(e);
            self.closed.fatal_errors += 1;
        }
        e
    }

    /// Count a kick that found no work (the event loop decides).
    pub fn note_spurious(&mut self) {
        self.closed.spurious_events += 1;
    }

    /// Count a throttling of this vif's channels after an event storm.
    pub fn note_throttled(&mut self) {
        self.closed.throttled += 1;
    }

    /// Grants kept mapped (staging grants), over all queues.
    pub fn static_grants(&self) -> usize {
        self.queues.iter().map(NetbackQueue::static_grants).sum()
    }

    /// Frames waiting for guest buffers, over all queues.
    pub fn rx_queued(&self) -> usize {
        self.queues.iter().map(NetbackQueue::rx_queued).sum()
    }

    /// Apply the frontend's `feature-sg` to every queue's receive side.
    pub fn set_rx_sg(&mut self, sg: bool) {
        for q in &mut self.queues {
            q.set_rx_sg(sg);
        }
    }

    /// The port name, `vif<domid>.<devid>`.
    pub fn name(&self) -> String {
        format!("vif{}.{}", self.domid.0, self.devid)
    }

    /// The queues.
    pub fn queues_mut(&mut self) -> &mut [NetbackQueue<G, M, N>] {
        &mut self.queues
    }

    /// The first fatal error of any queue.
    pub fn broken(&self) -> Option<VifError> {
        self.ctrl_broken
            .or_else(|| self.queues.iter().find_map(NetbackQueue::broken))
    }

    /// Guest transmit on every queue (control requests answered first); each frame
    /// goes to `deliver`.
    pub fn process_tx(
        &mut self,
        budget: usize,
        now: Instant,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, VifError> {
        self.process_ctrl()?;
        let mut n = 0;
        for q in &mut self.queues {
            n += q.process_tx(budget, now, deliver)?;
        }
        Ok(n)
    }

    /// Queue a frame for the guest on the queue its flow hashes to: the frontend's
    /// Toeplitz settings when it made any over the control ring, else [`flow_queue`](xennet_ring::netif::flow_queue).
    pub fn enqueue_rx(&mut self, frame: &[u8], now: Instant) -> bool {
        let i = self.rx_queue_for(frame);
        match self.queues.get_mut(i) {
            Some(q) => q.enqueue_rx(frame, now),
            None => false,
        }
    }

    /// [`Vif::enqueue_rx`] taking the frame's buffer; returns whether it was queued
    /// and a spare buffer for the caller.
    pub fn enqueue_rx_owned(&mut self, frame: Vec<u8>, now: Instant) -> (bool, Vec<u8>) {
        let i = self.rx_queue_for(&frame);
        match self.queues.get_mut(i) {
            Some(q) => q.enqueue_rx_owned(frame, now),
            None => (false, frame),
        }
    }

    /// The queue a frame for the guest goes to: by the frontend's Toeplitz settings
    /// when it made any, else by [`flow_queue`](xennet_ring::netif::flow_queue).
    fn rx_queue_for(&self, frame: &[u8]) -> usize {
        let n = self.queues.len();
        self.hash
            .queue_for(frame, n)
            .unwrap_or_else(|| flow_queue(frame, n))
    }

    /// Guest receive on every queue (control requests answered first).
    pub fn process_rx(&mut self, now: Instant) -> Result<usize, VifError> {
        self.process_ctrl()?;
        let mut n = 0;
        for q in &mut self.queues {
            n += q.process_rx(now)?;
        }
        Ok(n)
    }

    /// Before sleeping: true if any queue has work; otherwise all are armed.
    pub fn final_check(&mut self) -> Result<bool, VifError> {
        let mut work = false;
        for q in &mut self.queues {
            work |= q.final_check()?;
        }
        if let Some(e) = self.ctrl_broken {
            return Err(e);
        }
        if let Some(c) = self.ctrl.as_mut() {
            match c.final_check() {
                Ok(w) => work |= w,
                Err(e) => return Err(self.ctrl_failed(e)),
            }
        }
        Ok(work)
    }

    /// Earliest timed work of any queue.
    pub fn poll_at(&self) -> Option<Instant> {
        self.queues.iter().filter_map(NetbackQueue::poll_at).min()
    }

    /// Counters summed over the queues.
    pub fn counters(&self) -> VifCounters {
        let mut c = self.closed;
        for q in &self.queues {
            c += q.counters();
        }
        c
    }

    /// Per-queue counters.
    pub fn queue_counters(&self) -> Vec<VifCounters> {
        self.queues.iter().map(NetbackQueue::counters).collect()
    }

    /// Disconnect every queue (unmap rings and staging grants, free staging pages);
    /// returns final counters.
    pub fn close(self) -> VifCounters {
        let mut c = self.closed;
        if let (Some(ring), Some(q)) = (self.ctrl, self.queues.first()) {
            ring.close(q.grants());
        }
        for q in self.queues {
            c += q.close();
        }
        c
    }
}
