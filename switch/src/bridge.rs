//! Bridge mode: a MAC-learning switch, like a Linux bridge (`xenbr0`) with `vif-bridge`.
//!
//! - Learning: the source MAC of every valid frame is bound to its ingress port, with
//!   the time it was last seen; entries older than the ageing time (300 s by default,
//!   Linux's default) are ignored and removed by [`Bridge::poll`].
//! - Forwarding: broadcast, multicast and unknown unicast are flooded to every port
//!   except the ingress one; known unicast goes to its port, and never back out of
//!   the port it came in on (that is a drop, [`DropReason::Hairpin`]).
//! - Never forwarded: frames with a multicast or zero source, the 802.1D link-local
//!   groups (01:80:c2:00:00:0X), and frames addressed to a port device's own MAC
//!   (Linux hands those to the bridge device itself, which has no stack here).
//! - Antispoofing, as Xen's vif scripts set it up for a vif with `ip=`: IPv4 from a
//!   vif port whose [`PortConfig::ips`](crate::PortConfig::ips) are set is forwarded
//!   only from those addresses (and DHCP requests); other IPv4 is dropped
//!   ([`DropReason::BadSource`]), other ethertypes are bridged.
//! - The table is bounded ([`BridgeConfig::max_entries`]): a guest spraying random
//!   source MACs cannot make the driver domain hoard memory; beyond the bound new
//!   MACs are not learned (their frames are still flooded).

use std::collections::{BTreeMap, HashMap};

use smoltcp::wire::{EthernetFrame, EthernetProtocol};
use xennet_ring::time::{Duration, Instant};

use super::{Disposition, DropReason, Output, PortId, PortKind, PortTable};
use crate::wire::{ipv4_checked, is_dhcp_request, is_link_local_group, is_valid_source, MacAddr};

/// Bridge settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Bridge device name (`xenbr0`).
    pub name: String,
    /// How long a learned MAC stays valid without traffic from it (Linux: 300 s).
    pub ageing: Duration,
    /// Most learned MACs kept.
    pub max_entries: usize,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            name: "xenbr0".to_string(),
            ageing: Duration::from_secs(300),
            max_entries: 4096,
        }
    }
}

/// A learned forwarding-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    /// The port the MAC was last seen on.
    pub port: PortId,
    /// When it was last seen.
    pub updated: Instant,
}

/// The MAC-learning bridge.
#[derive(Debug)]
pub struct Bridge {
    cfg: BridgeConfig,
    fdb: HashMap<MacAddr, FdbEntry>,
    /// Bridge port numbers (Linux: lowest free number from 1), for `showmacs`.
    port_no: BTreeMap<PortId, u16>,
    /// MACs not learned because the table was full.
    learn_refused: u64,
}

impl Bridge {
    /// An empty bridge.
    pub fn new(cfg: BridgeConfig) -> Bridge {
        Bridge {
            cfg,
            fdb: HashMap::new(),
            port_no: BTreeMap::new(),
            learn_refused: 0,
        }
    }

    /// The bridge's settings.
    pub fn config(&self) -> &BridgeConfig {
        &self.cfg
    }

    /// The bridge device name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The bridge port number of a port (1-based, as `brctl showmacs` prints).
    pub fn port_no(&self, id: PortId) -> Option<u16> {
        self.port_no.get(&id).copied()
    }

    /// Learned entries that have not aged out at `now`.
    pub fn entries(&self, now: Instant) -> impl Iterator<Item = (MacAddr, FdbEntry)> + '_ {
        self.fdb
            .iter()
            .filter(move |(_, e)| !self.expired(e, now))
            .map(|(m, e)| (*m, *e))
    }

    /// The port `mac` was learned on, if the entry is still fresh at `now`.
    pub fn lookup(&self, mac: MacAddr, now: Instant) -> Option<PortId> {
        self.fdb
            .get(&mac)
            .filter(|e| !self.expired(e, now))
            .map(|e| e.port)
    }

    /// How many new MACs were not learned because the table was full.
    pub fn learn_refused(&self) -> u64 {
        self.learn_refused
    }

    fn expired(&self, e: &FdbEntry, now: Instant) -> bool {
        now >= e.updated + self.cfg.ageing
    }

    pub(super) fn port_added(&mut self, id: PortId) {
        let mut no = 1u16;
        let used: std::collections::BTreeSet<u16> = self.port_no.values().copied().collect();
        while used.contains(&no) {
            no = no.saturating_add(1);
        }
        self.port_no.insert(id, no);
    }

    pub(super) fn port_removed(&mut self, id: PortId) {
        self.port_no.remove(&id);
        self.fdb.retain(|_, e| e.port != id);
    }

    fn learn(&mut self, ports: &PortTable, now: Instant, mac: MacAddr, port: PortId) {
        // A frame claiming one of our own port MACs as source is not learned (Linux
        // logs "received packet with own address as source address").
        if ports.owns_mac(mac) {
            return;
        }
        if let Some(e) = self.fdb.get_mut(&mac) {
            e.port = port;
            e.updated = now;
            return;
        }
        if self.fdb.len() >= self.cfg.max_entries {
            let ageing = self.cfg.ageing;
            self.fdb.retain(|_, e| now < e.updated + ageing);
            if self.fdb.len() >= self.cfg.max_entries {
                self.learn_refused += 1;
                return;
            }
        }
        self.fdb.insert(mac, FdbEntry { port, updated: now });
    }

    pub(super) fn input(
        &mut self,
        ports: &mut PortTable,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        out: &mut dyn Output,
    ) -> Disposition {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Disposition::Dropped(DropReason::Malformed);
        };
        let (src, dst) = (eth.src_addr(), eth.dst_addr());
        if !is_valid_source(src) {
            return Disposition::Dropped(DropReason::BadSource);
        }
        if is_link_local_group(dst) {
            return Disposition::Dropped(DropReason::Filtered);
        }
        if let Err(reason) = source_check(ports, ingress, &eth) {
            return Disposition::Dropped(reason);
        }
        self.learn(ports, now, src, ingress);
        if dst.is_unicast() {
            if ports.owns_mac(dst) {
                return Disposition::Dropped(DropReason::Filtered);
            }
            if let Some(egress) = self.lookup(dst, now) {
                if egress == ingress {
                    return Disposition::Dropped(DropReason::Hairpin);
                }
                if ports.deliver(out, egress, frame) {
                    return Disposition::Forwarded;
                }
            }
            if let Some(c) = ports.unknown_flood_counter(ingress) {
                *c += 1;
            }
        }
        self.flood(ports, ingress, frame, out)
    }

    fn flood(
        &self,
        ports: &mut PortTable,
        ingress: PortId,
        frame: &[u8],
        out: &mut dyn Output,
    ) -> Disposition {
        let mut copies = 0u32;
        for &egress in self.port_no.keys() {
            if egress != ingress && ports.deliver(out, egress, frame) {
                copies += 1;
            }
        }
        if copies == 0 {
            Disposition::Dropped(DropReason::NoEgress)
        } else {
            Disposition::Flooded { copies }
        }
    }

    /// Removes aged-out entries.
    pub(super) fn poll(&mut self, now: Instant) {
        let ageing = self.cfg.ageing;
        self.fdb.retain(|_, e| now < e.updated + ageing);
    }

    /// When the oldest entry ages out.
    pub(super) fn poll_at(&self) -> Option<Instant> {
        self.fdb.values().map(|e| e.updated + self.cfg.ageing).min()
    }
}

/// Xen's antispoofing (vif-common.sh): a vif with addresses may send IPv4 only from
/// them, or DHCP requests. Nothing is checked for other ports, vifs without
/// addresses, or other ethertypes.
fn source_check(
    ports: &PortTable,
    ingress: PortId,
    eth: &EthernetFrame<&[u8]>,
) -> Result<(), DropReason> {
    let Some(port) = ports.get(ingress) else {
        return Ok(());
    };
    if !matches!(port.kind, PortKind::Vif { .. })
        || port.cfg.ips.is_empty()
        || eth.ethertype() != EthernetProtocol::Ipv4
    {
        return Ok(());
    }
    let ip = ipv4_checked(eth.payload()).ok_or(DropReason::Malformed)?;
    if port.cfg.ips.contains(&ip.src_addr()) || is_dhcp_request(&ip) {
        Ok(())
    } else {
        Err(DropReason::BadSource)
    }
}
