//! A vif: one frontend device's queues.

use std::time::Instant;

use xennet_ring::{DomId, FrameAlloc, GrantCopy, GrantMap, LocalMemory, Notify};

use super::counters::VifCounters;
use super::error::VifError;
use super::queue::NetbackQueue;

/// A guest's network device as the backend sees it: `vif<domid>.<devid>`.
pub struct Vif<G: GrantMap, M, N> {
    /// The frontend's domain.
    pub domid: DomId,
    /// The device index (`handle`).
    pub devid: u32,
    queues: Vec<NetbackQueue<G, M, N>>,
    /// Counters of queues already closed (kept so totals never go backwards).
    closed: VifCounters,
}

impl<G, M, N> Vif<G, M, N>
where
    G: GrantCopy + GrantMap,
    M: LocalMemory + FrameAlloc,
    N: Notify,
{
    /// A vif over connected queues (at least one).
    pub fn new(domid: DomId, devid: u32, queues: Vec<NetbackQueue<G, M, N>>) -> Self {
        Vif {
            domid,
            devid,
            queues,
            closed: VifCounters::default(),
        }
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
        self.queues.iter().find_map(NetbackQueue::broken)
    }

    /// Guest transmit on every queue; each frame goes to `deliver`.
    pub fn process_tx(
        &mut self,
        budget: usize,
        now: Instant,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, VifError> {
        let mut n = 0;
        for q in &mut self.queues {
            n += q.process_tx(budget, now, deliver)?;
        }
        Ok(n)
    }

    /// Queue a frame for the guest on the queue its flow hashes to.
    pub fn enqueue_rx(&mut self, frame: &[u8], now: Instant) -> bool {
        let i = flow_queue(frame, self.queues.len());
        match self.queues.get_mut(i) {
            Some(q) => q.enqueue_rx(frame, now),
            None => false,
        }
    }

    /// Guest receive on every queue.
    pub fn process_rx(&mut self, now: Instant) -> Result<usize, VifError> {
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

    /// Disconnect every queue (unmap rings, free staging); returns final counters.
    pub fn close(self) -> VifCounters {
        let mut c = self.closed;
        for q in self.queues {
            c += q.close();
        }
        c
    }
}

/// The queue a frame's flow maps to (IPv4 addresses and ports hashed; the same flow
/// always takes the same queue, so its frames stay in order).
pub fn flow_queue(frame: &[u8], queues: usize) -> usize {
    if queues <= 1 {
        return 0;
    }
    let key = frame.get(26..38).unwrap_or(frame);
    let mut h: u32 = 0x811c_9dc5;
    for &b in key {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h as usize % queues
}
