//! A domain's platform objects ([`Side`]) and wiring a netfront to a netback vif
//! without XenStore: the connection steps of the handshake (event channels bound,
//! rings granted and mapped) done directly. Threads in one process (tests,
//! benchmarks, `xennet demo --threads`) connect the drivers this way; the driver
//! domain uses [`Side`] for its own domain.

use std::sync::Arc;
use std::time::Duration;

use xennet_netback::vif::{CtrlRing, NetbackQueue, QueueSetup, Vif, VifError};
use xennet_netfront::{Features, FrontConfig, FrontError, Netfront};
use xennet_platform::clock;
use xennet_platform::shm::{Domain, EventChannels, GrantOps, PeerDomain, ShmError};
use xennet_ring::{DomId, Port};

pub use xennet_netback::xenbus::ShmVif as Back;
pub use xennet_netfront::xenbus::ShmFront as Front;

/// Why wiring failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Platform failure (files, ports).
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The frontend could not allocate or grant.
    #[error("frontend: {0}")]
    Front(FrontError),
    /// The backend refused the rings.
    #[error("backend: {0}")]
    Back(#[from] VifError),
}

/// One domain's platform objects.
#[derive(Clone)]
pub struct Side {
    /// Memory and grant table.
    pub domain: Domain,
    /// Grant copy/map on its behalf.
    pub ops: GrantOps,
    /// Its event channels.
    pub events: Arc<EventChannels>,
}

impl Side {
    /// An in-process domain of `pages` pages (anonymous memory).
    pub fn anonymous(domid: DomId, pages: u32) -> Result<Side, ShmError> {
        let domain = Domain::anonymous(domid, pages, 8192)?;
        Ok(Side::from_domain(domain, None))
    }

    /// Wrap a domain (with a runtime directory, peers in other processes are found).
    pub fn from_domain(domain: Domain, rt: Option<xennet_platform::shm::RuntimeDir>) -> Side {
        Side {
            ops: GrantOps::new(&domain),
            events: EventChannels::new(&domain, rt),
            domain,
        }
    }

    /// Make `other` (a domain of this process) reachable for grants and events.
    pub fn know(&self, other: &Side) {
        self.ops.add_peer(PeerDomain::from_domain(&other.domain));
        self.events
            .add_peer(&PeerDomain::from_domain(&other.domain));
    }
}

/// A driver domain (domain 0, 8192 pages) and `n` guests (domains 1..=n, 4096 pages
/// each) in this process, each guest and the driver domain reachable by the other.
pub fn domains(n: u16) -> Result<(Side, Vec<Side>), ShmError> {
    let dom0 = Side::anonymous(DomId(0), 8192)?;
    let mut guests = Vec::new();
    for d in 1..=n {
        let g = Side::anonymous(DomId(d), 4096)?;
        dom0.know(&g);
        g.know(&dom0);
        guests.push(g);
    }
    Ok((dom0, guests))
}

/// Per queue: the frontend's port, the backend's port.
pub type QueuePorts = Vec<(Port, Port)>;

/// Connect a frontend in `guest` to a backend vif in `backend` with `queues` queues,
/// as the handshake would: the guest allocates unbound ports and grants its rings, the
/// backend binds and maps them, then both connect.
pub fn connect_pair(
    backend: &Side,
    guest: &Side,
    devid: u32,
    mac: [u8; 6],
    queues: usize,
    features: Features,
    rate: Option<(u64, Duration)>,
) -> Result<(Front, Back, QueuePorts), WireError> {
    let (gid, bid) = (guest.domain.domid(), backend.domain.domid());
    let mut ports = Vec::new();
    for _ in 0..queues.max(1) {
        let gp = guest.events.alloc_unbound(bid)?;
        let bp = backend.events.bind_interdomain(gid, gp)?;
        ports.push((gp, bp));
    }
    let kicks = ports
        .iter()
        .map(|(gp, _)| (guest.events.port(*gp), guest.events.port(*gp)))
        .collect();
    let mut front = Netfront::new(guest.domain.clone(), FrontConfig::new(bid, mac), kicks)
        .map_err(WireError::Front)?;
    let now = clock::now();
    let mut qs = Vec::new();
    for (refs, (_, bp)) in front.queue_refs().into_iter().zip(&ports) {
        let setup = QueueSetup {
            frontend: gid,
            tx_ring_ref: refs.tx_ring_ref,
            rx_ring_ref: refs.rx_ring_ref,
        };
        let kick = backend.events.port(*bp);
        qs.push(NetbackQueue::connect(
            backend.ops.clone(),
            backend.domain.clone(),
            setup,
            rate,
            kick.clone(),
            kick,
            now,
        )?);
    }
    front.connect(features);
    let mut vif = Vif::new(gid, devid, qs);
    vif.set_rx_sg(features.sg);
    Ok((front, vif, ports))
}

/// Give a wired pair a control ring, as the handshake does when the backend offers
/// `feature-ctrl-ring`: the frontend then asks for staging grants (and, with several
/// queues, sets its hash), answered as the backend is polled. Returns (guest port,
/// backend port) of `event-channel-ctrl`.
pub fn enable_ctrl(
    backend: &Side,
    guest: &Side,
    front: &mut Front,
    back: &mut Back,
) -> Result<(Port, Port), WireError> {
    let (gid, bid) = (guest.domain.domid(), backend.domain.domid());
    let gp = guest.events.alloc_unbound(bid)?;
    let bp = backend.events.bind_interdomain(gid, gp)?;
    let ring_ref = front
        .enable_ctrl(guest.events.port(gp))
        .map_err(WireError::Front)?;
    let ring = CtrlRing::connect(&backend.ops, gid, ring_ref, backend.events.port(bp))?;
    back.attach_ctrl(ring);
    Ok((gp, bp))
}

/// The echo backend of the round-trip tests: every frame the guest transmits is queued
/// back to it on the same vif. Returns frames moved (either way).
pub fn echo_once(back: &mut Back, scratch: &mut Vec<Vec<u8>>) -> Result<usize, VifError> {
    let now = clock::now();
    let n = back.process_tx(256, now, &mut |f| scratch.push(f.to_vec()))?;
    for f in scratch.drain(..) {
        back.enqueue_rx(&f, now);
    }
    Ok(n + back.process_rx(now)?)
}
