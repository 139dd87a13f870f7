//! Event channels between domains, in one process or across processes, with Xen's
//! verbs: alloc_unbound, bind_interdomain, notify, mask/unmask, close, and a blocking
//! wait with timeout.
//!
//! Each domain has an event page (the `evtchn` file, or anonymous memory) holding its
//! ports' state and pending bits and a futex doorbell. Notifying writes the pending bit
//! into the *receiver's* page (as Xen's hypervisor would) and wakes it through the
//! futex only if it sleeps and the bit was clear: notifications coalesce like Xen's.
//! One mechanism serves threads and processes alike (a shared futex word costs the
//! same wake-up as an eventfd and needs no descriptor passing); docs/shm-layout.md
//! explains the choice.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustix::thread::futex;
use xennet_ring::{DomId, Notify, Port};

use super::domain::Domain;
use super::error::ShmError;
use super::peer::{PeerAccess, PeerDomain};
use super::pending::{self, Word};
use super::region::{Region, EVTCHN_BYTES};
use super::runtime::RuntimeDir;

/// Byte offset of the first port record; records are 16 bytes.
pub const PORTS_OFFSET: usize = 64;
/// Ports per domain (port 0 is reserved, as in Xen).
pub const MAX_PORTS: u32 = ((EVTCHN_BYTES - PORTS_OFFSET) / 16) as u32;

const MAGIC: u32 = u32::from_le_bytes(*b"XNEV");
const OFF_MAGIC: usize = 0;
const OFF_DOORBELL: usize = 4;
const OFF_SLEEPERS: usize = 8;
const OFF_SUMMARY: usize = 12;

/// Port states (the `state` word of a port record).
pub mod state {
    /// Free.
    pub const FREE: u32 = 0;
    /// Allocated, waiting for the remote domain to bind (`ECS_UNBOUND`).
    pub const UNBOUND: u32 = 1;
    /// Connected to a remote port (`ECS_INTERDOMAIN`).
    pub const INTERDOMAIN: u32 = 2;
}

struct PortRec<'a> {
    state: &'a std::sync::atomic::AtomicU32,
    remote_dom: &'a std::sync::atomic::AtomicU32,
    remote_port: &'a std::sync::atomic::AtomicU32,
    bits: &'a std::sync::atomic::AtomicU32,
}

/// Port 0's `bits` word: no channel ever binds port 0, so its pending bit is the
/// domain's own wake-up, raised by [`EventChannels::interrupt`] (docs/shm-layout.md).
const OFF_INTERRUPT: usize = PORTS_OFFSET + 12;

fn word(page: &Region, off: usize) -> &std::sync::atomic::AtomicU32 {
    // The offsets used are constants inside the 4096-byte page, checked at open.
    page.atomic_u32(off)
        .unwrap_or_else(|| unreachable!("event page offsets are in bounds"))
}

fn port_rec(page: &Region, port: Port) -> Option<PortRec<'_>> {
    if port.0 == 0 || port.0 >= MAX_PORTS {
        return None;
    }
    let base = PORTS_OFFSET + port.0 as usize * 16;
    Some(PortRec {
        state: page.atomic_u32(base)?,
        remote_dom: page.atomic_u32(base + 4)?,
        remote_port: page.atomic_u32(base + 8)?,
        bits: page.atomic_u32(base + 12)?,
    })
}

/// A domain's event channels. Of a peer in another process only its event page is
/// mapped ([`PeerAccess::Events`]).
pub struct EventChannels {
    me: DomId,
    own: Arc<Region>,
    peers: RwLock<Vec<(DomId, Arc<Region>)>>,
    rt: Option<RuntimeDir>,
}

impl EventChannels {
    /// The event channels of `domain`. With `rt`, peers in other processes are found
    /// through their files in the runtime directory.
    pub fn new(domain: &Domain, rt: Option<RuntimeDir>) -> Arc<EventChannels> {
        let own = domain.regions().evtchn.clone();
        word(&own, OFF_MAGIC).store(MAGIC, std::sync::atomic::Ordering::Relaxed);
        Arc::new(EventChannels {
            me: domain.domid(),
            own,
            peers: RwLock::new(Vec::new()),
            rt,
        })
    }

    /// Make a peer's event page reachable (domains of this process, or already open).
    /// A peer opened without its event page is ignored.
    pub fn add_peer(&self, peer: &PeerDomain) {
        let Some(page) = peer.evtchn() else {
            return;
        };
        if let Ok(mut p) = self.peers.write() {
            p.retain(|(d, _)| *d != peer.domid());
            p.push((peer.domid(), page.clone()));
        }
    }

    /// Forget a peer.
    pub fn remove_peer(&self, domid: DomId) {
        if let Ok(mut p) = self.peers.write() {
            p.retain(|(d, _)| *d != domid);
        }
    }

    fn peer(&self, domid: DomId) -> Result<Arc<Region>, ShmError> {
        if domid == self.me {
            return Ok(self.own.clone());
        }
        if let Some(r) = self
            .peers
            .read()
            .ok()
            .and_then(|p| p.iter().find(|(d, _)| *d == domid).map(|(_, r)| r.clone()))
        {
            return Ok(r);
        }
        let rt = self.rt.as_ref().ok_or(ShmError::NoSuchDomain(domid))?;
        let peer = PeerDomain::open(rt, domid, PeerAccess::Events)?;
        self.add_peer(&peer);
        peer.evtchn().cloned().ok_or(ShmError::NoSuchDomain(domid))
    }

    /// This domain's id.
    pub fn domid(&self) -> DomId {
        self.me
    }

    /// `EVTCHNOP_alloc_unbound`: a fresh port that `remote` may bind to.
    pub fn alloc_unbound(&self, remote: DomId) -> Result<Port, ShmError> {
        for p in 1..MAX_PORTS {
            let Some(rec) = port_rec(&self.own, Port(p)) else {
                continue;
            };
            if rec
                .state
                .compare_exchange(state::FREE, u32::MAX, SEQ, SEQ)
                .is_ok()
            {
                rec.remote_dom.set(u32::from(remote.0));
                rec.remote_port.set(0);
                rec.bits.set(0);
                rec.state.set(state::UNBOUND);
                return Ok(Port(p));
            }
        }
        Err(ShmError::NoFreePort)
    }

    /// `EVTCHNOP_bind_interdomain`: connect a new local port to `remote`'s unbound
    /// `remote_port`, which must have been allocated for us.
    pub fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, ShmError> {
        let peer = self.peer(remote)?;
        let rrec = port_rec(&peer, remote_port).ok_or(ShmError::BadPort(remote_port.0))?;
        if rrec.remote_dom.get() != u32::from(self.me.0) {
            return Err(ShmError::BadPort(remote_port.0));
        }
        let local = self.alloc_unbound(remote)?;
        let Some(lrec) = port_rec(&self.own, local) else {
            return Err(ShmError::BadPort(local.0));
        };
        // Claim the remote port: only an unbound one, once.
        if rrec
            .state
            .compare_exchange(state::UNBOUND, u32::MAX, SEQ, SEQ)
            .is_err()
        {
            lrec.state.set(state::FREE);
            return Err(ShmError::BadPort(remote_port.0));
        }
        rrec.remote_port.set(local.0);
        rrec.state.set(state::INTERDOMAIN);
        lrec.remote_port.set(remote_port.0);
        lrec.state.set(state::INTERDOMAIN);
        Ok(local)
    }

    /// Whether `port` is connected to a remote port.
    pub fn is_bound(&self, port: Port) -> bool {
        port_rec(&self.own, port).is_some_and(|r| r.state.get() == state::INTERDOMAIN)
    }

    /// `EVTCHNOP_send`: set the remote port's pending bit and wake its domain if it
    /// sleeps. A no-op (false) if the port is not connected.
    pub fn notify(&self, port: Port) -> bool {
        let Some(rec) = port_rec(&self.own, port) else {
            return false;
        };
        if rec.state.get() != state::INTERDOMAIN {
            return false;
        }
        let remote = DomId(rec.remote_dom.get() as u16);
        let rport = Port(rec.remote_port.get());
        let Ok(peer) = self.peer(remote) else {
            return false;
        };
        let Some(rrec) = port_rec(&peer, rport) else {
            return false;
        };
        raise_on(&peer, &rrec);
        true
    }

    /// Make a [`EventChannels::wait_into`] in progress (or the next one) return at
    /// once: port 0's pending bit is raised as a peer raises a port's, so the same
    /// protocol (summary, doorbell, sleepers) wakes the sleeper.
    pub fn interrupt(&self) {
        let own = &self.own;
        if pending::raise(
            word(own, OFF_INTERRUPT),
            word(own, OFF_SUMMARY),
            word(own, OFF_DOORBELL),
            word(own, OFF_SLEEPERS),
        ) {
            wake(word(own, OFF_DOORBELL));
        }
    }

    /// Mask a port: its events stay pending without waking us.
    pub fn mask(&self, port: Port) {
        if let Some(rec) = port_rec(&self.own, port) {
            rec.bits.or(pending::MASKED);
        }
    }

    /// Unmask a port; an event that arrived while masked is delivered now.
    pub fn unmask(&self, port: Port) {
        if let Some(rec) = port_rec(&self.own, port) {
            if pending::unmask(rec.bits) {
                let (summary, doorbell) =
                    (word(&self.own, OFF_SUMMARY), word(&self.own, OFF_DOORBELL));
                summary.set(1);
                doorbell.add(1);
                wake(doorbell);
            }
        }
    }

    /// `EVTCHNOP_close`: free the port; a connected remote port becomes unbound.
    pub fn close(&self, port: Port) {
        let Some(rec) = port_rec(&self.own, port) else {
            return;
        };
        if rec.state.get() == state::INTERDOMAIN {
            let remote = DomId(rec.remote_dom.get() as u16);
            let rport = Port(rec.remote_port.get());
            if let Ok(peer) = self.peer(remote) {
                if let Some(rrec) = port_rec(&peer, rport) {
                    if rrec.remote_port.get() == port.0
                        && rrec.remote_dom.get() == u32::from(self.me.0)
                    {
                        let _ = rrec.state.compare_exchange(
                            state::INTERDOMAIN,
                            state::UNBOUND,
                            SEQ,
                            SEQ,
                        );
                        // Wake the peer so it notices.
                        raise_on(&peer, &rrec);
                    }
                }
            }
        }
        rec.bits.set(0);
        rec.state.set(state::FREE);
    }

    /// Take every pending event (clearing the bits) without blocking; appends the
    /// ports to `out`.
    pub fn poll_into(&self, out: &mut Vec<Port>) {
        if !pending::clear_summary(word(&self.own, OFF_SUMMARY)) {
            return;
        }
        for p in 1..MAX_PORTS {
            if let Some(rec) = port_rec(&self.own, Port(p)) {
                if pending::take(rec.bits) {
                    out.push(Port(p));
                }
            }
        }
    }

    /// Block until an event is pending or `timeout` passes; returns the ports that had
    /// events (empty on timeout).
    pub fn wait(&self, timeout: Option<Duration>) -> Vec<Port> {
        let mut out = Vec::new();
        self.wait_into(timeout, &mut out);
        out
    }

    /// [`EventChannels::wait`] into a caller's buffer (no allocation once it has grown).
    pub fn wait_into(&self, timeout: Option<Duration>, out: &mut Vec<Port>) {
        let deadline = timeout.map(|t| Instant::now() + t);
        let (summary, doorbell, sleepers) = (
            word(&self.own, OFF_SUMMARY),
            word(&self.own, OFF_DOORBELL),
            word(&self.own, OFF_SLEEPERS),
        );
        loop {
            self.poll_into(out);
            let interrupted = pending::take(word(&self.own, OFF_INTERRUPT));
            if !out.is_empty() || interrupted {
                return;
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(l) if !l.is_zero() => Some(l),
                    _ => return,
                },
                None => None,
            };
            if let Some(seq) = pending::begin_sleep(summary, doorbell, sleepers) {
                let ts = left.map(|l| rustix::time::Timespec {
                    tv_sec: l.as_secs() as i64,
                    tv_nsec: i64::from(l.subsec_nanos()),
                });
                // EAGAIN (doorbell moved), EINTR and ETIMEDOUT all mean: look again.
                let _ = futex::wait(doorbell, futex::Flags::empty(), seq, ts.as_ref());
            }
            pending::end_sleep(sleepers);
        }
    }

    /// A handle that notifies through `port` (implements [`Notify`]).
    pub fn port(self: &Arc<Self>, port: Port) -> EventPort {
        EventPort {
            channels: self.clone(),
            port,
        }
    }
}

const SEQ: std::sync::atomic::Ordering = std::sync::atomic::Ordering::SeqCst;

fn raise_on(peer: &Region, rrec: &PortRec<'_>) {
    let doorbell = word(peer, OFF_DOORBELL);
    if pending::raise(
        rrec.bits,
        word(peer, OFF_SUMMARY),
        doorbell,
        word(peer, OFF_SLEEPERS),
    ) {
        wake(doorbell);
    }
}

fn wake(doorbell: &std::sync::atomic::AtomicU32) {
    let _ = futex::wake(doorbell, futex::Flags::empty(), u32::MAX);
}

/// One local port, for drivers: kicks the remote end.
#[derive(Clone)]
pub struct EventPort {
    channels: Arc<EventChannels>,
    port: Port,
}

impl EventPort {
    /// The local port number.
    pub fn port(&self) -> Port {
        self.port
    }
}

impl Notify for EventPort {
    fn notify(&self) {
        self.channels.notify(self.port);
    }
}
impl crate::EventChannelOps for Arc<EventChannels> {
    type Notifier = EventPort;
    type Error = ShmError;

    fn alloc_unbound(&self, remote: DomId) -> Result<Port, ShmError> {
        EventChannels::alloc_unbound(self, remote)
    }

    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, ShmError> {
        EventChannels::bind_interdomain(self, remote, remote_port)
    }

    fn notifier(&self, port: Port) -> EventPort {
        EventChannels::port(self, port)
    }

    fn close(&self, port: Port) {
        EventChannels::close(self, port)
    }

    fn wait_into(&self, timeout: Option<Duration>, out: &mut Vec<Port>) {
        EventChannels::wait_into(self, timeout, out)
    }

    fn mask(&self, port: Port) {
        EventChannels::mask(self, port)
    }

    fn unmask(&self, port: Port) {
        EventChannels::unmask(self, port)
    }

    fn interrupter(&self) -> crate::Interrupter {
        let ch = self.clone();
        crate::Interrupter::new(move || ch.interrupt())
    }
}
