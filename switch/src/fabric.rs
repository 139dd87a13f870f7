//! The fabric: a port table plus the engine of the configured mode.

use std::collections::BTreeMap;

use xennet_ring::time::Instant;

use super::bridge::{Bridge, BridgeConfig};
use super::route::{Router, RouterConfig};
use super::{
    Disposition, DropReason, FabricError, Output, Port, PortConfig, PortCounters, PortId, PortKind,
    PortTable,
};

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_NAME_LEN: usize = 15;

/// How the driver domain connects its ports (Xen's `network-*` / `vif-*` scripts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// MAC-learning bridge (`vif-bridge`).
    #[default]
    Bridge,
    /// IPv4 router with host routes per guest (`vif-route`).
    Route,
    /// IPv4 router with source NAT to the uplink address (`vif-nat`).
    Nat,
}

/// Fabric configuration.
#[derive(Clone, Debug, Default)]
pub struct FabricConfig {
    /// The mode.
    pub mode: Mode,
    /// Bridge settings (bridge mode).
    pub bridge: BridgeConfig,
    /// Router settings (route and NAT modes).
    pub router: RouterConfig,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

#[derive(Debug)]
enum Engine {
    Bridge(Bridge),
    Router(Box<Router>),
}

/// The switching fabric. See the [module documentation](super).
#[derive(Debug)]
pub struct Fabric {
    mode: Mode,
    ports: PortTable,
    engine: Engine,
    next_id: u32,
    max_ports: usize,
    /// Ports joined point to point, outside the bridge or router (both directions).
    wires: BTreeMap<PortId, PortId>,
}

impl Fabric {
    /// Most ports a fabric accepts.
    pub const DEFAULT_MAX_PORTS: usize = 1024;

    /// Builds an empty fabric.
    pub fn new(cfg: FabricConfig) -> Result<Fabric, FabricError> {
        if !valid_name(&cfg.bridge.name) {
            return Err(FabricError::BadName(cfg.bridge.name));
        }
        let engine = match cfg.mode {
            Mode::Bridge => Engine::Bridge(Bridge::new(cfg.bridge)),
            Mode::Route => Engine::Router(Box::new(Router::new(cfg.router, false))),
            Mode::Nat => Engine::Router(Box::new(Router::new(cfg.router, true))),
        };
        Ok(Fabric {
            mode: cfg.mode,
            ports: PortTable::default(),
            engine,
            next_id: 1,
            max_ports: Self::DEFAULT_MAX_PORTS,
            wires: BTreeMap::new(),
        })
    }

    /// The mode the fabric runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Adds a port. Route and NAT modes derive the port's addresses and routes here.
    pub fn add_port(
        &mut self,
        name: impl Into<String>,
        kind: PortKind,
        cfg: PortConfig,
    ) -> Result<PortId, FabricError> {
        let name = self.admit(name.into(), 1)?;
        if kind == PortKind::Uplink && self.ports.first_of_kind(PortKind::Uplink).is_some() {
            return Err(FabricError::SecondUplink);
        }
        let id = PortId(self.next_id);
        let port = Port {
            name,
            kind,
            cfg,
            counters: PortCounters::default(),
        };
        match &mut self.engine {
            Engine::Bridge(b) => b.port_added(id),
            Engine::Router(r) => r.port_added(id, &port)?,
        }
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.ports.insert(id, port);
        tracing::info!(port = %name_of(&self.ports, id), ?kind, "port added");
        Ok(id)
    }

    /// Adds a vif port and a [`PortKind::Kernel`] port joined by a wire: every frame
    /// entering one leaves by the other, unchanged and counted, and neither takes part
    /// in bridging or routing (the kernel device behind the second does that, with
    /// its own bridge, routes or NAT). The pair shares the vif's name (the kernel
    /// device is named as the vif); [`Fabric::port_id`] finds the vif port.
    pub fn add_wire(
        &mut self,
        name: impl Into<String>,
        vif: PortKind,
        cfg: PortConfig,
    ) -> Result<(PortId, PortId), FabricError> {
        let name = self.admit(name.into(), 2)?;
        let mut ids = [PortId(0); 2];
        for (i, (kind, cfg)) in [(vif, cfg), (PortKind::Kernel, PortConfig::default())]
            .into_iter()
            .enumerate()
        {
            ids[i] = PortId(self.next_id);
            self.next_id = self.next_id.wrapping_add(1).max(1);
            self.ports.insert(
                ids[i],
                Port {
                    name: name.clone(),
                    kind,
                    cfg,
                    counters: PortCounters::default(),
                },
            );
        }
        self.wires.insert(ids[0], ids[1]);
        self.wires.insert(ids[1], ids[0]);
        tracing::info!(port = %name, "wired port pair added");
        Ok((ids[0], ids[1]))
    }

    /// `name` if `count` new ports may take it: a valid interface name nobody has,
    /// and room for them.
    fn admit(&self, name: String, count: usize) -> Result<String, FabricError> {
        if !valid_name(&name) {
            return Err(FabricError::BadName(name));
        }
        if self.ports.iter().any(|(_, p)| p.name == name) {
            return Err(FabricError::DuplicateName(name));
        }
        if self.ports.len() + count > self.max_ports {
            return Err(FabricError::TooManyPorts(self.max_ports));
        }
        Ok(name)
    }

    /// The port wired to `id`, if `id` is one end of a wire.
    pub fn wired_to(&self, id: PortId) -> Option<PortId> {
        self.wires.get(&id).copied()
    }

    /// Removes a port; its learned MACs, routes and queued packets go with it. A
    /// wired port takes the other end of its wire with it.
    pub fn remove_port(&mut self, id: PortId) -> Option<Port> {
        if let Some(peer) = self.wires.remove(&id) {
            self.wires.remove(&peer);
            self.ports.remove(peer);
            let port = self.ports.remove(id)?;
            tracing::info!(port = %port.name, "wired port pair removed");
            return Some(port);
        }
        let port = self.ports.remove(id)?;
        match &mut self.engine {
            Engine::Bridge(b) => b.port_removed(id),
            Engine::Router(r) => r.port_removed(&mut self.ports, id),
        }
        tracing::info!(port = %port.name, "port removed");
        Some(port)
    }

    /// The port with this id.
    pub fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(id)
    }

    /// The id of the port with this name.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .find(|(_, p)| p.name == name)
            .map(|(id, _)| id)
    }

    /// The port table (all ports and counters).
    pub fn ports(&self) -> &PortTable {
        &self.ports
    }

    /// Counts a drop decided outside the fabric (e.g. by a vif's rate limiter).
    pub fn count_drop(&mut self, port: PortId, reason: DropReason) {
        self.ports.count_drop(port, reason);
    }

    /// The bridge, in bridge mode.
    pub fn bridge(&self) -> Option<&Bridge> {
        match &self.engine {
            Engine::Bridge(b) => Some(b),
            Engine::Router(_) => None,
        }
    }

    /// The router, in route and NAT modes.
    pub fn router(&self) -> Option<&Router> {
        match &self.engine {
            Engine::Router(r) => Some(r),
            Engine::Bridge(_) => None,
        }
    }

    /// The router, mutable (switch `ip_forward` / `proxy_arp` at run time).
    pub fn router_mut(&mut self) -> Option<&mut Router> {
        match &mut self.engine {
            Engine::Router(r) => Some(r),
            Engine::Bridge(_) => None,
        }
    }

    /// Switches one frame that arrived on `ingress`. Never panics on any bytes.
    pub fn input<O: Output>(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        out: &mut O,
    ) -> Disposition {
        let Some(c) = self.ports.counters_mut(ingress) else {
            // The port went away between the driver reading the frame and now.
            return Disposition::Dropped(DropReason::NoEgress);
        };
        c.rx_packets += 1;
        c.rx_bytes += frame.len() as u64;
        if let Some(&peer) = self.wires.get(&ingress) {
            return if self.ports.deliver(out, peer, frame) {
                Disposition::Forwarded
            } else {
                self.ports.count_drop(ingress, DropReason::NoEgress);
                Disposition::Dropped(DropReason::NoEgress)
            };
        }
        let disp = match &mut self.engine {
            Engine::Bridge(b) => b.input(&mut self.ports, now, ingress, frame, out),
            Engine::Router(r) => r.input(&mut self.ports, now, ingress, frame, out),
        };
        if let Disposition::Dropped(reason) = disp {
            self.ports.count_drop(ingress, reason);
        }
        disp
    }

    /// Runs timers: MAC ageing, ARP retries and expiry, NAT connection expiry. Packets
    /// given up on are counted dropped on the port they came in on.
    pub fn poll<O: Output>(&mut self, now: Instant, out: &mut O) {
        match &mut self.engine {
            Engine::Bridge(b) => b.poll(now),
            Engine::Router(r) => r.poll(&mut self.ports, now, out),
        }
    }

    /// When [`poll`](Self::poll) next has work, if ever.
    pub fn poll_at(&self) -> Option<Instant> {
        match &self.engine {
            Engine::Bridge(b) => b.poll_at(),
            Engine::Router(r) => r.poll_at(),
        }
    }
}

fn name_of(ports: &PortTable, id: PortId) -> &str {
    ports.get(id).map_or("?", |p| p.name.as_str())
}
