//! The driver domain around the fabric: endpoints on its own ports (the uplink, the
//! driver domain's stack on `vif0.0`) and packet captures.
//!
//! netback hands guest frames to [`DriverDomain::input`]; deliveries to ports with an
//! attached [`Endpoint`] are handed to it, every other delivery (the vifs) goes to the
//! caller's [`Output`]. Frames that endpoints send are switched in turn, until no
//! endpoint has anything more to say (bounded, so two chatty endpoints cannot spin).
//!
//! ```
//! use xennet_ring::time::Instant;
//! use xennet_switch::domain::DriverDomain;
//! use xennet_switch::{Collect, Fabric, FabricConfig, PortConfig, PortKind};
//! use xennet_switch::uplink::host::{Host, HostConfig};
//!
//! let mut dd = DriverDomain::new(Fabric::new(FabricConfig::default()).unwrap());
//! let up = dd.fabric_mut().add_port("peth0", PortKind::Uplink, PortConfig::default()).unwrap();
//! dd.attach(up, Box::new(Host::new(HostConfig::sim_uplink(), Instant::ZERO).unwrap()));
//! let mut out = Collect::default();
//! dd.poll(Instant::ZERO, &mut out);
//! ```

use std::collections::{BTreeMap, VecDeque};

use xennet_ring::time::Instant;

use super::{Disposition, Fabric, Output, PortId};
use crate::capture::Captures;
use crate::uplink::Endpoint;

/// Rounds of endpoint polling per call before giving the caller control back.
const MAX_ROUNDS: usize = 64;

/// A fabric with endpoints and captures.
pub struct DriverDomain {
    fabric: Fabric,
    endpoints: BTreeMap<PortId, Box<dyn Endpoint>>,
    captures: Captures,
    pending: VecDeque<(PortId, Vec<u8>)>,
}

impl std::fmt::Debug for DriverDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverDomain")
            .field("fabric", &self.fabric)
            .field("endpoints", &self.endpoints.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Routes fabric deliveries to endpoints or to the caller, capturing on the way.
struct Dispatch<'a> {
    endpoints: &'a mut BTreeMap<PortId, Box<dyn Endpoint>>,
    captures: &'a mut Captures,
    out: &'a mut dyn Output,
    now: Instant,
}

impl Output for Dispatch<'_> {
    fn deliver(&mut self, egress: PortId, frame: &[u8]) {
        self.captures.egress(egress, frame);
        match self.endpoints.get_mut(&egress) {
            Some(ep) => ep.receive(self.now, frame),
            None => self.out.deliver(egress, frame),
        }
    }
}

impl DriverDomain {
    /// Wraps a fabric.
    pub fn new(fabric: Fabric) -> DriverDomain {
        DriverDomain {
            fabric,
            endpoints: BTreeMap::new(),
            captures: Captures::default(),
            pending: VecDeque::new(),
        }
    }

    /// The fabric.
    pub fn fabric(&self) -> &Fabric {
        &self.fabric
    }

    /// The fabric, mutable (add/remove vif ports, router switches).
    pub fn fabric_mut(&mut self) -> &mut Fabric {
        &mut self.fabric
    }

    /// The captures.
    pub fn captures_mut(&mut self) -> &mut Captures {
        &mut self.captures
    }

    /// Attaches an endpoint to a port (replacing any earlier one, which is returned).
    pub fn attach(&mut self, port: PortId, ep: Box<dyn Endpoint>) -> Option<Box<dyn Endpoint>> {
        self.endpoints.insert(port, ep)
    }

    /// Detaches a port's endpoint.
    pub fn detach(&mut self, port: PortId) -> Option<Box<dyn Endpoint>> {
        self.endpoints.remove(&port)
    }

    /// The endpoint on `port` as its concrete type.
    pub fn endpoint_mut<T: Endpoint>(&mut self, port: PortId) -> Option<&mut T> {
        self.endpoints
            .get_mut(&port)?
            .as_any_mut()
            .downcast_mut::<T>()
    }

    /// Removes a port with its endpoint and captures.
    pub fn remove_port(&mut self, port: PortId) {
        // A wired port goes with its other end (Fabric::remove_port): so do that
        // end's endpoint and captures.
        if let Some(peer) = self.fabric.wired_to(port) {
            self.endpoints.remove(&peer);
            self.captures.detach_port(peer);
            self.pending.retain(|(p, _)| *p != peer);
        }
        self.endpoints.remove(&port);
        self.captures.detach_port(port);
        self.pending.retain(|(p, _)| *p != port);
        self.fabric.remove_port(port);
    }

    fn switch_one<O: Output>(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        out: &mut O,
    ) -> Disposition {
        self.captures.ingress(ingress, frame);
        let mut d = Dispatch {
            endpoints: &mut self.endpoints,
            captures: &mut self.captures,
            out,
            now,
        };
        self.fabric.input(now, ingress, frame, &mut d)
    }

    /// Polls endpoints and switches what they send until quiet (or a round limit).
    fn settle<O: Output>(&mut self, now: Instant, out: &mut O) {
        for _ in 0..MAX_ROUNDS {
            for (&id, ep) in self.endpoints.iter_mut() {
                let pending = &mut self.pending;
                ep.poll(now, &mut |f: &[u8]| pending.push_back((id, f.to_vec())));
            }
            if self.pending.is_empty() {
                return;
            }
            while let Some((id, f)) = self.pending.pop_front() {
                self.switch_one(now, id, &f, out);
            }
        }
    }

    /// Switches a frame from a port without endpoint (a guest's vif), then lets the
    /// endpoints answer. Deliveries to vifs go to `out`.
    pub fn input<O: Output>(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        out: &mut O,
    ) -> Disposition {
        let d = self.switch_one(now, ingress, frame, out);
        self.settle(now, out);
        d
    }

    /// Runs the fabric's timers and the endpoints, then writes what the captures
    /// recorded since the last call to their files. A driver calls it once per pass.
    pub fn poll<O: Output>(&mut self, now: Instant, out: &mut O) {
        let mut d = Dispatch {
            endpoints: &mut self.endpoints,
            captures: &mut self.captures,
            out,
            now,
        };
        self.fabric.poll(now, &mut d);
        self.settle(now, out);
        self.captures.end_pass();
    }

    /// The descriptors of endpoints that read a device (appended to `out`): the
    /// caller wakes when one is readable, as it wakes for its timers.
    pub fn fds_into(&self, out: &mut Vec<std::os::fd::RawFd>) {
        use std::os::fd::AsRawFd;
        out.extend(
            self.endpoints
                .values()
                .filter_map(|ep| ep.fd().map(|fd| fd.as_raw_fd())),
        );
    }

    /// Duplicates of those descriptors, in the same order, for a thread to poll.
    pub fn dup_fds(&self) -> std::io::Result<Vec<std::os::fd::OwnedFd>> {
        self.endpoints
            .values()
            .filter_map(|ep| ep.fd())
            .map(|fd| fd.try_clone_to_owned())
            .collect()
    }

    /// The earliest time anything (fabric or endpoint) has timed work.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let mut at = self.fabric.poll_at();
        for ep in self.endpoints.values_mut() {
            if let Some(t) = ep.poll_at(now) {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        }
        at
    }
}
