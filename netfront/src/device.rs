//! The frontend device: its queues, negotiated features, link state and counters.

use alloc::boxed::Box;
use alloc::vec::Vec;

use xennet_ring::netif::CtrlGref;
use xennet_ring::{DomId, FrameAlloc, GrantAccess, GrantRef, LocalMemory, Notify};
use zerocopy::IntoBytes;

use crate::counters::FrontCounters;
use crate::ctrl::{self, Ctrl, CtrlState, Step};
use crate::error::{FrontError, SendError};
use crate::queue::{Queue, QueueRefs, RxMeta, TxOffload};

/// What the frontend is configured with before connecting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontConfig {
    /// The backend's domain.
    pub backend: DomId,
    /// This device's MAC address (from the `mac` node).
    pub mac: [u8; 6],
    /// Receive buffers kept posted per queue (clamped to the ring size).
    pub rx_target: u32,
}

impl FrontConfig {
    /// A configuration with the usual defaults: a full rx ring (256 buffers).
    pub fn new(backend: DomId, mac: [u8; 6]) -> Self {
        FrontConfig {
            backend,
            mac,
            rx_target: 256,
        }
    }
}

/// Features the backend advertised and we use (negotiated in the handshake).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `feature-sg`: frames may span several slots.
    pub sg: bool,
    /// `feature-gso-tcpv4`: large TCP/IPv4 segments with a GSO extra slot.
    pub gso_tcpv4: bool,
}

/// The device's link state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Rings allocated, waiting for the backend to connect.
    Initialised,
    /// Connected: frames flow.
    Connected,
    /// The backend broke the protocol; the rings are no longer used.
    Broken(FrontError),
}

/// A netfront device: one or more queues, each a tx and an rx ring with their
/// granted buffer pools and event-channel kicks `N`.
///
/// The device is poll-driven: the caller sends, calls [`Netfront::poll_tx`] and
/// [`Netfront::receive`] when woken, and before sleeping calls
/// [`Netfront::final_check`], which arms the rings' event indices so that the backend's
/// next response kicks it.
pub struct Netfront<P, N> {
    platform: P,
    config: FrontConfig,
    queues: Vec<Queue<N>>,
    features: Features,
    state: LinkState,
    counters: FrontCounters,
    /// The control ring, when the backend offers one (`feature-ctrl-ring`).
    ctrl: Option<Box<Ctrl<N>>>,
}

impl<P, N> Netfront<P, N>
where
    P: GrantAccess + FrameAlloc + LocalMemory,
    N: Notify,
{
    /// Allocate and grant the rings and buffer pools of one queue per entry of `kicks`
    /// (each the tx and rx notifier of that queue: the same channel twice, or split).
    pub fn new(platform: P, config: FrontConfig, kicks: Vec<(N, N)>) -> Result<Self, FrontError> {
        let mut queues: Vec<Queue<N>> = Vec::with_capacity(kicks.len());
        for (tx_kick, rx_kick) in kicks {
            match Queue::new(
                &platform,
                config.backend,
                config.rx_target,
                tx_kick,
                rx_kick,
            ) {
                Ok(q) => queues.push(q),
                Err(e) => {
                    for q in queues {
                        q.release(&platform);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Netfront {
            platform,
            config,
            queues,
            features: Features::default(),
            state: LinkState::Initialised,
            counters: FrontCounters::default(),
            ctrl: None,
        })
    }

    /// Set up a control ring (the backend offered `feature-ctrl-ring`; before
    /// [`Netfront::connect`] in the handshake, or after it when wiring by hand):
    /// `kick` notifies `event-channel-ctrl`. Returns the ring's
    /// grant, for `ctrl-ring-ref`. Once connected, the device asks the backend to keep
    /// its buffer pools mapped (staging grants) and, with several queues, sets the
    /// Toeplitz hash; see [`Netfront::ctrl_state`].
    pub fn enable_ctrl(&mut self, kick: N) -> Result<GrantRef, FrontError> {
        if let Some(c) = &self.ctrl {
            return Ok(c.ring_ref());
        }
        let mut c = Box::new(Ctrl::new(&self.platform, self.config.backend, kick)?);
        let r = c.ring_ref();
        if self.is_connected() {
            c.start(self.queues.len());
        }
        self.ctrl = Some(c);
        if let Err(e) = self.drive_ctrl() {
            self.fail(e);
        }
        Ok(r)
    }

    /// What the control ring achieved (`None` without one).
    pub fn ctrl_state(&self) -> Option<CtrlState> {
        self.ctrl.as_ref().map(|c| c.state)
    }

    /// Move the control-ring script on: take the answer to the outstanding request and
    /// send the next. Called from [`Netfront::poll_tx`], [`Netfront::receive`] and
    /// [`Netfront::final_check`]; nothing to do once the script is done.
    fn drive_ctrl(&mut self) -> Result<(), FrontError> {
        let Some(c) = self.ctrl.as_mut().filter(|c| !c.state.done) else {
            return Ok(());
        };
        loop {
            c.take_response()?;
            let Some(step) = c.next_step() else {
                return Ok(());
            };
            let nq = self.queues.len();
            let mut adding = 0;
            let data = match step {
                Step::GrefSize(q) => [u32::from(q), 0, 0],
                Step::AddGrefs(q) => {
                    // As many entries as one list page holds.
                    let room = c
                        .room(q)
                        .min(xennet_ring::PAGE_SIZE / core::mem::size_of::<CtrlGref>());
                    c.scratch.clear();
                    for e in self.queues[usize::from(q)].static_grefs().take(room) {
                        c.scratch.extend_from_slice(e.as_bytes());
                        adding += 1;
                    }
                    let page = c.write_data(&self.platform)?;
                    [u32::from(q), page.0, adding as u32]
                }
                s => {
                    let mut data = ctrl::hash_request(s, nq, &mut c.scratch);
                    if !c.scratch.is_empty() {
                        data[0] = c.write_data(&self.platform)?.0;
                    }
                    data
                }
            };
            c.send(step, data, adding);
            if c.ring.push_requests_and_check_notify() {
                c.kick.notify();
                self.counters.notify_sent += 1;
            }
        }
    }

    /// Ring grant refs of every queue, for XenStore.
    pub fn queue_refs(&self) -> Vec<QueueRefs> {
        self.queues.iter().map(Queue::refs).collect()
    }

    /// Number of queues.
    pub fn num_queues(&self) -> usize {
        self.queues.len()
    }

    /// The backend is Connected with these features: post receive buffers and start.
    pub fn connect(&mut self, features: Features) {
        self.prepare(features);
        self.backend_connected();
    }

    /// Before the backend connects (the XenStore handshake goes Connected first, as
    /// Linux netfront does and Linux netback expects): take the features and post
    /// receive buffers.
    pub fn prepare(&mut self, features: Features) {
        self.features = features;
        self.state = LinkState::Connected;
        for q in &mut self.queues {
            q.refill_rx(&mut self.counters);
        }
    }

    /// The backend is Connected: start the control-ring script.
    pub fn backend_connected(&mut self) {
        if let Some(c) = self.ctrl.as_mut() {
            c.start(self.queues.len());
        }
        if let Err(e) = self.drive_ctrl() {
            self.fail(e);
        }
    }

    /// Kick the backend through every queue's channels: after a handshake, since
    /// kicks sent before the backend bound its channels reached nobody.
    pub fn kick_all(&mut self) {
        for q in &self.queues {
            q.kick(&mut self.counters);
        }
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.config.mac
    }

    /// Negotiated features.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Link state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Whether frames can flow.
    pub fn is_connected(&self) -> bool {
        self.state == LinkState::Connected
    }

    /// Counters of all queues.
    pub fn counters(&self) -> FrontCounters {
        self.counters
    }

    /// The platform (memory, grants) the device runs on.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    fn fail(&mut self, e: FrontError) -> FrontError {
        if !matches!(self.state, LinkState::Broken(_)) {
            self.state = LinkState::Broken(e);
            self.counters.fatal_errors += 1;
        }
        e
    }

    fn check_connected(&self) -> Result<(), SendError> {
        if self.is_connected() {
            Ok(())
        } else {
            Err(SendError::NotConnected)
        }
    }

    fn pick_queue(&self, frame: &[u8]) -> usize {
        if self.queues.len() <= 1 {
            return 0;
        }
        // With the backend steering by our Toeplitz table, send a flow on the queue
        // its frames come back on.
        if self.ctrl.as_ref().is_some_and(|c| c.state.hash) {
            if let Some(q) = ctrl::hash_queue(frame, self.queues.len()) {
                return q;
            }
        }
        // Spread flows: the same hash netback uses without a table.
        xennet_ring::netif::flow_queue(frame, self.queues.len())
    }

    /// Send one frame now (queue it and publish). On error the frame was not taken.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.send_with(frame, &TxOffload::default())
    }

    /// Send one frame with offloads (checksum flags, GSO).
    pub fn send_with(&mut self, frame: &[u8], off: &TxOffload) -> Result<(), SendError> {
        self.check_connected()?;
        if off.gso_tcpv4_mss.is_some() && !self.features.gso_tcpv4 {
            return Err(SendError::GsoNotNegotiated);
        }
        let q = self.pick_queue(frame);
        let sg = self.features.sg;
        let queue = &mut self.queues[q];
        queue.queue_frame(&self.platform, frame, off, sg, &mut self.counters)?;
        queue.flush_tx(&mut self.counters);
        Ok(())
    }

    /// Send frames from `frames` until one is refused; publish once per queue at the
    /// end (one notification decision per batch). Returns how many were taken and the
    /// error that stopped the batch, if any.
    pub fn send_batch<'a, I>(&mut self, frames: I) -> (usize, Option<SendError>)
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        if let Err(e) = self.check_connected() {
            return (0, Some(e));
        }
        let sg = self.features.sg;
        let mut n = 0;
        let mut stop = None;
        for frame in frames {
            let q = self.pick_queue(frame);
            let off = TxOffload::default();
            match self.queues[q].queue_frame(&self.platform, frame, &off, sg, &mut self.counters) {
                Ok(()) => n += 1,
                Err(e) => {
                    stop = Some(e);
                    break;
                }
            }
        }
        for q in &mut self.queues {
            q.flush_tx(&mut self.counters);
        }
        (n, stop)
    }

    /// Room for single-slot frames on the emptiest queue right now.
    pub fn tx_room(&self) -> usize {
        self.queues.iter().map(Queue::tx_room).max().unwrap_or(0)
    }

    /// Frames sent and not yet answered by the backend.
    pub fn tx_in_flight(&self) -> usize {
        self.queues.iter().map(Queue::tx_in_flight).sum()
    }

    /// Take tx responses (freeing buffers for new frames). Returns slots completed.
    pub fn poll_tx(&mut self) -> Result<usize, FrontError> {
        if !self.is_connected() {
            return Ok(0);
        }
        if let Err(e) = self.drive_ctrl() {
            return Err(self.fail(e));
        }
        let mut n = 0;
        for i in 0..self.queues.len() {
            match self.queues[i].reap_tx(&mut self.counters) {
                Ok(k) => n += k,
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(n)
    }

    /// Hand up to `budget` received frames to `deliver` (a borrowed view, valid during
    /// the call) and refill the rx rings. Returns frames delivered.
    pub fn receive<F: FnMut(&[u8], RxMeta)>(
        &mut self,
        budget: usize,
        mut deliver: F,
    ) -> Result<usize, FrontError> {
        if !self.is_connected() {
            return Ok(0);
        }
        if let Err(e) = self.drive_ctrl() {
            return Err(self.fail(e));
        }
        let mut n = 0;
        for i in 0..self.queues.len() {
            let left = budget - n;
            let r = self.queues[i].receive(&self.platform, left, &mut deliver, &mut self.counters);
            match r {
                Ok(k) => n += k,
                Err(e) => return Err(self.fail(e)),
            }
            if n >= budget {
                break;
            }
        }
        Ok(n)
    }

    /// Before sleeping on the event channel: true if work is already waiting (do not
    /// sleep); otherwise the event indices are armed and any later response kicks us.
    pub fn final_check(&mut self) -> Result<bool, FrontError> {
        if !self.is_connected() {
            return Ok(false);
        }
        if let Err(e) = self.drive_ctrl() {
            return Err(self.fail(e));
        }
        let mut work = false;
        for i in 0..self.queues.len() {
            match self.queues[i].final_check() {
                Ok(w) => work |= w,
                Err(e) => return Err(self.fail(e)),
            }
        }
        if let Some(c) = self.ctrl.as_mut().filter(|c| c.waiting()) {
            match c.ring.final_check_for_responses() {
                Ok(w) => work |= w,
                Err(e) => return Err(self.fail(e.into())),
            }
        }
        Ok(work)
    }

    /// Tear down: end every grant and free every page. Returns the platform and the
    /// number of grants the backend still held (their pages are not reused).
    pub fn close(self) -> (P, usize) {
        let Netfront {
            platform,
            queues,
            ctrl,
            ..
        } = self;
        let mut leaked: usize = queues.into_iter().map(|q| q.release(&platform)).sum();
        if let Some(c) = ctrl {
            leaked += (*c).release(&platform);
        }
        (platform, leaked)
    }
}
