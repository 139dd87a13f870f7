//! Wiring a netfront to a netback vif without XenStore: the connection steps of the
//! handshake (event channels bound, rings granted and mapped) done directly. Used by
//! in-process tests, benchmarks and the XenStore handshake itself, so that every path
//! connects the drivers the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use xennet_netback::vif::{CtrlRing, NetbackQueue, QueueSetup, Vif, VifError};
use xennet_netfront::{Features, FrontConfig, FrontError, Netfront};
use xennet_platform::shm::{Domain, EventChannels, EventPort, GrantOps, PeerDomain, ShmError};
use xennet_ring::{DomId, Port};

/// A frontend on the shared-memory platform.
pub type Front = Netfront<Domain, EventPort>;
/// A backend vif on the shared-memory platform.
pub type Back = Vif<GrantOps, Domain, EventPort>;

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
    let now = Instant::now();
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

/// Drive both ends in this thread until the backend has taken every frame of
/// `frames` from the guest (bounded: 10 000 rounds); returns what it delivered.
pub fn tx_all(front: &mut Front, back: &mut Back, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut next = 0;
    for _ in 0..10_000 {
        while next < frames.len() && front.send(&frames[next]).is_ok() {
            next += 1;
        }
        if back
            .process_tx(64, Instant::now(), &mut |f| got.push(f.to_vec()))
            .is_err()
            || front.poll_tx().is_err()
            || got.len() == frames.len()
        {
            break;
        }
    }
    got
}

/// Drive both ends until the guest has received every frame of `frames` from the
/// backend (bounded: 10 000 rounds); returns what it received.
pub fn rx_all(front: &mut Front, back: &mut Back, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut next = 0;
    for _ in 0..10_000 {
        while next < frames.len() && back.enqueue_rx(&frames[next], Instant::now()) {
            next += 1;
        }
        if back.process_rx(Instant::now()).is_err()
            || front.receive(64, |f, _| got.push(f.to_vec())).is_err()
            || got.len() == frames.len()
        {
            break;
        }
    }
    got
}

/// The echo backend of the round-trip tests: every frame the guest transmits is queued
/// back to it on the same vif. Returns frames moved (either way).
pub fn echo_once(back: &mut Back, scratch: &mut Vec<Vec<u8>>) -> Result<usize, VifError> {
    let now = Instant::now();
    let n = back.process_tx(256, now, &mut |f| scratch.push(f.to_vec()))?;
    for f in scratch.drain(..) {
        back.enqueue_rx(&f, now);
    }
    Ok(n + back.process_rx(now)?)
}

/// Frame sizes of the round-trip matrix (design: smallest frame, Ethernet MTU, jumbo,
/// the protocol's largest).
pub const ROUND_TRIP_SIZES: [usize; 4] = [60, 1514, 9000, 65535];

/// A frame of `len` bytes whose contents depend on `seed`; bytes 26..38 (IPv4
/// addresses and ports, what the queue hash reads) vary so flows spread over queues.
pub fn pattern_frame(len: usize, seed: u32) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(seed.wrapping_mul(7)) as u8
        })
        .collect();
    f[..6].copy_from_slice(&[0x00, 0x16, 0x3e, 0xff, 0xff, 0xff]);
    f[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0xee, 0xee, 0xee]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    if len >= 38 {
        f[26..30].copy_from_slice(&seed.to_be_bytes());
        f[34..38].copy_from_slice(&seed.wrapping_mul(2_654_435_761).to_be_bytes());
    }
    f
}

/// The round-trip test body, the same in one process and across processes: send
/// `per_size` frames of every size in [`ROUND_TRIP_SIZES`] to an echo backend and check
/// each comes back intact, in order per flow. Without scatter-gather, frames over a
/// page must be refused by the frontend (the caller keeps them). `pump` lets the echo
/// backend run (a local call, or a wait for the remote one); it is given up to `limit`.
pub fn round_trip_matrix(
    front: &mut Front,
    per_size: u32,
    limit: Duration,
    mut pump: impl FnMut(&mut Front),
) -> Result<RoundTrip, String> {
    let sg = front.features().sg;
    let mut out = RoundTrip::default();
    let mut back: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + limit;
    for (k, &size) in ROUND_TRIP_SIZES.iter().enumerate() {
        let mut want = Vec::new();
        for i in 0..per_size {
            let f = pattern_frame(size, (k as u32) << 16 | i);
            match front.send(&f) {
                Ok(()) => want.push(f),
                Err(xennet_netfront::SendError::BadLength(_))
                    if !sg && size > xennet_ring::PAGE_SIZE =>
                {
                    out.refused += 1;
                }
                Err(e) => return Err(format!("{size} bytes: send: {e}")),
            }
            // Keep ring room: let the echo run between frames of the biggest sizes.
            while front.tx_room() < 20 && Instant::now() < deadline {
                pump(front);
                front.poll_tx().map_err(|e| e.to_string())?;
                receive_into(front, &mut back)?;
            }
        }
        while back.len() < want.len() && Instant::now() < deadline {
            pump(front);
            front.poll_tx().map_err(|e| e.to_string())?;
            receive_into(front, &mut back)?;
        }
        let got = std::mem::take(&mut back);
        if got.len() != want.len() {
            return Err(format!(
                "{size} bytes: {} of {} frames came back",
                got.len(),
                want.len()
            ));
        }
        // Queues may reorder across flows, never within one: compare as sets.
        let mut a = got.clone();
        let mut b = want.clone();
        a.sort();
        b.sort();
        if a != b {
            return Err(format!("{size} bytes: a frame came back damaged"));
        }
        out.echoed += got.len() as u64;
    }
    Ok(out)
}

fn receive_into(front: &mut Front, into: &mut Vec<Vec<u8>>) -> Result<(), String> {
    front
        .receive(256, |f, _| into.push(f.to_vec()))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What [`round_trip_matrix`] saw.
#[derive(Debug, Default)]
pub struct RoundTrip {
    /// Frames that came back intact.
    pub echoed: u64,
    /// Frames the frontend refused (over a page without scatter-gather).
    pub refused: u64,
}
