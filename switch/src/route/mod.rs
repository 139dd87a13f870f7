//! Route mode: the driver domain as an IPv4 router (`network-route` + `vif-route`),
//! and the routing half of NAT mode (`vif-nat`).
//!
//! Every port is an interface with the port device's MAC and one address:
//! - the uplink (`peth0`) carries the driver domain's address and subnet
//!   ([`RouterConfig::uplink_addr`], a connected route) and the default route via
//!   [`RouterConfig::gateway`], if any; its `proxy_arp` is
//!   [`RouterConfig::proxy_arp_uplink`] (off by default, as on Linux);
//! - route mode: a vif carries the driver domain's uplink address too and a host route
//!   (`/32`) per guest address from its `ip=`, with `proxy_arp` on, exactly what
//!   `vif-route` configures; the guest's default gateway is the driver domain's IP;
//! - NAT mode: a vif gets the guest address from `ip=` or, as `vif-nat` does,
//!   `10.<domid/256>.<domid%256>.<devid+1>`, and the router address on the vif is the
//!   guest's with 127 added to the last octet; host route and `proxy_arp` as above.
//!
//! ARP is answered on every interface for every router address; with `proxy_arp` on
//! an interface, also for any address whose route leaves through a *different*
//! interface. So with proxy ARP off on the uplink, a remote host on the physical
//! segment asking for a guest's address gets no answer, and the guest's pings to it
//! get no reply; with it on, they do.
//!
//! Forwarding decrements the TTL (updating the header checksum incrementally) and sends
//! ICMP time exceeded / destination unreachable (net, host, port) where Linux would.

mod arp_in;
mod ip_in;

use std::collections::BTreeMap;

use smoltcp::wire::{EthernetFrame, EthernetProtocol};
use xennet_ring::time::Instant;

use super::arp::{ArpConfig, NeighbourTable};
use super::nat::{NatConfig, NatTable};
use super::{Disposition, DropReason, FabricError, Output, Port, PortId, PortKind, PortTable};
use crate::wire::{is_valid_source, Ipv4Address, Ipv4Cidr, MacAddr};

/// Router settings (route and NAT modes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    /// The driver domain's address and prefix on the uplink.
    pub uplink_addr: Ipv4Cidr,
    /// Default gateway on the uplink segment, if any.
    pub gateway: Option<Ipv4Address>,
    /// `net.ipv4.ip_forward`.
    pub ip_forward: bool,
    /// `net.ipv4.conf.peth0.proxy_arp`.
    pub proxy_arp_uplink: bool,
    /// Neighbour-table settings.
    pub arp: ArpConfig,
    /// NAT settings (NAT mode).
    pub nat: NatConfig,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            uplink_addr: Ipv4Cidr::new(Ipv4Address::new(128, 153, 144, 204), 24),
            gateway: None,
            ip_forward: true,
            proxy_arp_uplink: false,
            arp: ArpConfig::default(),
            nat: NatConfig::default(),
        }
    }
}

/// A router interface (one per port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iface {
    /// The interface's MAC (the port device's).
    pub mac: MacAddr,
    /// The interface's address.
    pub addr: Ipv4Address,
    /// Answer ARP for addresses routed through other interfaces.
    pub proxy_arp: bool,
}

/// A route: destinations in `net` leave through `port`, to `gateway` if set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub net: Ipv4Cidr,
    /// Egress interface.
    pub port: PortId,
    /// Next hop, or `None` for a directly connected destination.
    pub gateway: Option<Ipv4Address>,
}

/// The IPv4 router. See the [module documentation](self).
#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    ifaces: BTreeMap<PortId, Iface>,
    routes: Vec<Route>,
    neigh: NeighbourTable,
    nat: Option<NatTable>,
    uplink: Option<PortId>,
    /// Scratch for frames the router writes (one buffer, reused).
    frame: Vec<u8>,
}

impl Router {
    /// A router without interfaces; `nat` enables source NAT to the uplink address.
    pub fn new(cfg: RouterConfig, nat: bool) -> Router {
        let nat = nat.then(|| NatTable::new(cfg.nat.clone(), cfg.uplink_addr.address()));
        let neigh = NeighbourTable::new(cfg.arp.clone());
        Router {
            cfg,
            ifaces: BTreeMap::new(),
            routes: Vec::new(),
            neigh,
            nat,
            uplink: None,
            frame: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Switches forwarding on or off (`sysctl net.ipv4.ip_forward`).
    pub fn set_ip_forward(&mut self, on: bool) {
        self.cfg.ip_forward = on;
    }

    /// Switches proxy ARP on one interface; false if there is no such interface.
    pub fn set_proxy_arp(&mut self, port: PortId, on: bool) -> bool {
        match self.ifaces.get_mut(&port) {
            Some(i) => {
                i.proxy_arp = on;
                if Some(port) == self.uplink {
                    self.cfg.proxy_arp_uplink = on;
                }
                true
            }
            None => false,
        }
    }

    /// The interface of a port.
    pub fn iface(&self, port: PortId) -> Option<&Iface> {
        self.ifaces.get(&port)
    }

    /// The routing table.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The NAT table, in NAT mode.
    pub fn nat(&self) -> Option<&NatTable> {
        self.nat.as_ref()
    }

    /// The neighbour table.
    pub fn neighbours(&self) -> &NeighbourTable {
        &self.neigh
    }

    /// Longest-prefix match.
    pub fn lookup(&self, dst: Ipv4Address) -> Option<Route> {
        self.routes
            .iter()
            .filter(|r| r.net.contains_addr(&dst))
            .max_by_key(|r| r.net.prefix_len())
            .copied()
    }

    /// True if `a` is one of the router's own addresses.
    pub fn is_local(&self, a: Ipv4Address) -> bool {
        self.ifaces.values().any(|i| i.addr == a)
    }

    fn is_uplink_broadcast(&self, a: Ipv4Address) -> bool {
        self.cfg.uplink_addr.prefix_len() < 31 && self.cfg.uplink_addr.broadcast() == Some(a)
    }

    pub(crate) fn port_added(&mut self, id: PortId, port: &Port) -> Result<(), FabricError> {
        let mac = port.cfg.port_mac;
        if !is_valid_source(mac) {
            return Err(addressing(
                port,
                format!(
                    "port MAC {} is not a unicast address",
                    crate::wire::MacFmt(mac)
                ),
            ));
        }
        let main = self.cfg.uplink_addr.address();
        match (port.kind, self.nat.is_some()) {
            (PortKind::Uplink, _) => {
                self.ifaces.insert(
                    id,
                    Iface {
                        mac,
                        addr: main,
                        proxy_arp: self.cfg.proxy_arp_uplink,
                    },
                );
                self.routes.push(Route {
                    net: self.cfg.uplink_addr.network(),
                    port: id,
                    gateway: None,
                });
                if let Some(gw) = self.cfg.gateway {
                    let any = Ipv4Cidr::new(Ipv4Address::UNSPECIFIED, 0);
                    self.routes.push(Route {
                        net: any,
                        port: id,
                        gateway: Some(gw),
                    });
                }
                self.uplink = Some(id);
            }
            (PortKind::Vif { domid, devid }, true) => {
                let guest = match port.cfg.ips.first() {
                    Some(ip) => *ip,
                    None => vif_nat_guest_ip(domid, devid).ok_or_else(|| {
                        addressing(
                            port,
                            format!(
                                "no ip= and devid {devid} too large for vif-nat's 10.a.b.<devid+1>"
                            ),
                        )
                    })?,
                };
                let router = vif_nat_router_ip(guest).ok_or_else(|| {
                    addressing(
                        port,
                        format!("guest address {guest}: last octet + 127 exceeds 255 (vif-nat)"),
                    )
                })?;
                self.ifaces.insert(
                    id,
                    Iface {
                        mac,
                        addr: router,
                        proxy_arp: true,
                    },
                );
                let ips = if port.cfg.ips.is_empty() {
                    vec![guest]
                } else {
                    port.cfg.ips.clone()
                };
                self.add_host_routes(id, &ips);
            }
            (PortKind::Vif { .. } | PortKind::Local, _) => {
                self.ifaces.insert(
                    id,
                    Iface {
                        mac,
                        addr: main,
                        proxy_arp: true,
                    },
                );
                self.add_host_routes(id, &port.cfg.ips);
            }
            // Wired to a vif (Fabric::add_wire), never added to the router.
            (PortKind::Kernel, _) => return Ok(()),
        }
        tracing::debug!(port = %port.name, iface = ?self.ifaces.get(&id), "router interface up");
        Ok(())
    }

    fn add_host_routes(&mut self, id: PortId, ips: &[Ipv4Address]) {
        for ip in ips {
            self.routes.push(Route {
                net: Ipv4Cidr::new(*ip, 32),
                port: id,
                gateway: None,
            });
        }
    }

    pub(crate) fn port_removed(&mut self, ports: &mut PortTable, id: PortId) {
        self.ifaces.remove(&id);
        self.routes.retain(|r| r.port != id);
        if self.uplink == Some(id) {
            self.uplink = None;
        }
        for w in self.neigh.port_removed(id) {
            if let Some(o) = w.origin {
                ports.count_drop(o, DropReason::NoRoute);
            }
        }
    }

    pub(crate) fn input(
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
        let Some(iface) = self.ifaces.get(&ingress).copied() else {
            return Disposition::Dropped(DropReason::NoRoute);
        };
        if !is_valid_source(eth.src_addr()) {
            return Disposition::Dropped(DropReason::BadSource);
        }
        let dst = eth.dst_addr();
        if dst != iface.mac && !dst.is_broadcast() && !dst.is_multicast() {
            return Disposition::Dropped(DropReason::NotForUs);
        }
        match eth.ethertype() {
            EthernetProtocol::Arp => self.arp_input(ports, now, ingress, iface, eth.payload(), out),
            EthernetProtocol::Ipv4 => self.ipv4_input(ports, now, ingress, eth.payload(), out),
            _ => Disposition::Dropped(DropReason::Unsupported),
        }
    }

    pub(crate) fn poll(&mut self, ports: &mut PortTable, now: Instant, out: &mut dyn Output) {
        let ex = self.neigh.poll(now);
        for (port, ip) in ex.reprobe {
            self.send_arp_request(ports, out, port, ip);
        }
        for w in ex.failed {
            if let Some(origin) = w.origin {
                ports.count_drop(origin, DropReason::ArpTimeout);
                self.icmp_error(ports, now, out, origin, &w.packet, (3, 1));
            }
        }
        if let Some(nat) = &mut self.nat {
            nat.poll(now);
        }
    }

    pub(crate) fn poll_at(&self) -> Option<Instant> {
        let nat = self.nat.as_ref().and_then(|n| n.poll_at());
        match (self.neigh.poll_at(), nat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn addressing(port: &Port, reason: String) -> FabricError {
    FabricError::Addressing {
        port: port.name.clone(),
        reason,
    }
}

/// `vif-nat`'s default guest address: `10.<domid/256>.<domid%256>.<devid+1>`.
pub fn vif_nat_guest_ip(domid: u16, devid: u16) -> Option<Ipv4Address> {
    let last = u8::try_from(devid.checked_add(1)?).ok()?;
    Some(Ipv4Address::new(
        10,
        (domid / 256) as u8,
        (domid % 256) as u8,
        last,
    ))
}

/// `vif-nat`'s router address on the vif: the guest's with 127 added to the last octet.
pub fn vif_nat_router_ip(guest: Ipv4Address) -> Option<Ipv4Address> {
    let o = guest.octets();
    Some(Ipv4Address::new(o[0], o[1], o[2], o[3].checked_add(127)?))
}
