//! Switch ports: identity, kind and configuration.

use core::fmt;
use std::collections::BTreeMap;

use crate::wire::{Ipv4Address, MacAddr, VIF_PORT_MAC};
use crate::{DropReason, Output, PortCounters};

/// Identifies a port of a [`Fabric`](super::Fabric). Ids are never reused while the
/// fabric lives, so a stale id can never reach a newer port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port#{}", self.0)
    }
}

/// What is behind a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortKind {
    /// A guest's network device, served by netback (`vif<domid>.<devid>`).
    Vif {
        /// The guest's domain id.
        domid: u16,
        /// The device index within the guest (`handle`).
        devid: u16,
    },
    /// The driver domain's own interface with its own IP stack (`vif0.0`).
    Local,
    /// The physical uplink (`peth0`).
    Uplink,
    /// A kernel network device (a TAP named as the vif) wired to a vif's port
    /// ([`Fabric::add_wire`](crate::Fabric::add_wire)): `xennet up --vifs tap`.
    Kernel,
}

impl PortKind {
    /// The conventional interface name: `vif<domid>.<devid>`, `vif0.0` or `peth0`.
    pub fn default_name(&self) -> String {
        match self {
            PortKind::Vif { domid, devid } => format!("vif{domid}.{devid}"),
            PortKind::Local => "vif0.0".to_string(),
            PortKind::Uplink => "peth0".to_string(),
            PortKind::Kernel => "vif".to_string(),
        }
    }
}

/// Per-port configuration, mostly from the vif's xl spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// The port device's own MAC (what the bridge lists as local). Linux backend vifs
    /// carry `fe:ff:ff:ff:ff:ff`; so did `peth0` under Xen's network-bridge script.
    pub port_mac: MacAddr,
    /// The MAC of the host behind the port (the guest's `mac=`), if known.
    pub peer_mac: Option<MacAddr>,
    /// The guest addresses behind the port (`ip=`); route and NAT modes route them here.
    pub ips: Vec<Ipv4Address>,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            port_mac: VIF_PORT_MAC,
            peer_mac: None,
            ips: Vec::new(),
        }
    }
}

/// A port as the fabric keeps it.
#[derive(Clone, Debug)]
pub struct Port {
    /// Interface name (`vif1.0`, `peth0`...).
    pub name: String,
    /// What is behind it.
    pub kind: PortKind,
    /// Its configuration.
    pub cfg: PortConfig,
    /// Its counters.
    pub counters: super::PortCounters,
}

/// The fabric's ports and their counters; engines deliver through it so that every
/// delivery is counted.
#[derive(Debug, Default)]
pub struct PortTable {
    ports: BTreeMap<PortId, Port>,
}

impl PortTable {
    /// How many ports there are.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Whether there are no ports.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    pub(crate) fn insert(&mut self, id: PortId, port: Port) {
        self.ports.insert(id, port);
    }

    pub(crate) fn remove(&mut self, id: PortId) -> Option<Port> {
        self.ports.remove(&id)
    }

    /// The port with this id.
    pub fn get(&self, id: PortId) -> Option<&Port> {
        self.ports.get(&id)
    }

    /// All ports in id order.
    pub fn iter(&self) -> impl Iterator<Item = (PortId, &Port)> {
        self.ports.iter().map(|(id, p)| (*id, p))
    }

    /// The port of this kind with the lowest id, if any.
    pub fn first_of_kind(&self, kind: PortKind) -> Option<PortId> {
        self.iter().find(|(_, p)| p.kind == kind).map(|(id, _)| id)
    }

    /// True if some port device carries `mac` as its own address.
    pub fn owns_mac(&self, mac: MacAddr) -> bool {
        self.ports.values().any(|p| p.cfg.port_mac == mac)
    }

    /// Sends `frame` to `egress`, counting it; false if the port is gone.
    pub fn deliver(&mut self, out: &mut dyn Output, egress: PortId, frame: &[u8]) -> bool {
        match self.ports.get_mut(&egress) {
            Some(p) => {
                p.counters.tx_packets += 1;
                p.counters.tx_bytes += frame.len() as u64;
                out.deliver(egress, frame);
                true
            }
            None => false,
        }
    }

    /// Counts a drop on `port` (no-op if the port is gone).
    pub fn count_drop(&mut self, port: PortId, reason: DropReason) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.counters.drops[reason.index()] += 1;
        }
    }

    pub(crate) fn unknown_flood_counter(&mut self, port: PortId) -> Option<&mut u64> {
        self.ports
            .get_mut(&port)
            .map(|p| &mut p.counters.unknown_unicast_flooded)
    }

    pub(crate) fn counters_mut(&mut self, port: PortId) -> Option<&mut PortCounters> {
        self.ports.get_mut(&port).map(|p| &mut p.counters)
    }
}
