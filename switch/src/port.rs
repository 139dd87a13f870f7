//! Switch ports: identity, kind and configuration.

use core::fmt;

use crate::wire::{Ipv4Address, MacAddr, VIF_PORT_MAC};

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
}

impl PortKind {
    /// The conventional interface name: `vif<domid>.<devid>`, `vif0.0` or `peth0`.
    pub fn default_name(&self) -> String {
        match self {
            PortKind::Vif { domid, devid } => format!("vif{domid}.{devid}"),
            PortKind::Local => "vif0.0".to_string(),
            PortKind::Uplink => "peth0".to_string(),
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
