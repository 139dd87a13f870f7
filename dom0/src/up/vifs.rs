//! A guest's vifs: what the toolstack gives each one (`xl create`'s and `xl
//! network-attach`'s part before anything is added): its devid, MAC, addresses and
//! name by Xen's defaults, checked against the driver domain's mode and refused if
//! a MAC or an address is already in use.

use smoltcp::wire::Ipv4Cidr;
use xennet_switch::config::{Script, UplinkSpec, VifSpec};
use xennet_switch::wire::{MacAddr, MacFmt};
use xennet_switch::{Mode, PortConfig, PortId};

use super::Up;
use crate::build::{guest_addr, guest_vif_mac, mode_name, no_default_addr};
use crate::nodes::VifNodes;

/// One vif of a guest, as the driver domain keeps it.
pub(super) struct GuestVif {
    /// Device number (the `N` of `vifD.N`).
    pub(super) devid: u32,
    /// Its switch port.
    pub(super) port: PortId,
    /// The port's name (`vif1.0`, or `vifname=`).
    pub(super) name: String,
    /// The guest's MAC on it.
    pub(super) mac: MacAddr,
    /// Its addresses, with the prefix the guest's interface gets; may be empty
    /// (bridge and route modes: a vif after the first without `ip=`).
    pub(super) ips: Vec<Ipv4Cidr>,
}

/// A vif about to be created: its identity and what goes into XenStore.
pub(super) struct Planned {
    pub(super) devid: u32,
    pub(super) name: String,
    pub(super) mac: MacAddr,
    pub(super) ips: Vec<Ipv4Cidr>,
    /// Its switch port's configuration.
    pub(super) port: PortConfig,
    /// Both device directories.
    pub(super) nodes: VifNodes,
}

impl Planned {
    /// The vif as the guest keeps it, once its switch port is `port`.
    pub(super) fn added(&self, port: PortId) -> GuestVif {
        GuestVif {
            devid: self.devid,
            port,
            name: self.name.clone(),
            mac: self.mac,
            ips: self.ips.clone(),
        }
    }
}

/// Addresses as `list` and the create reply show them: comma-separated, `-` if none.
pub(super) fn addrs(ips: &[Ipv4Cidr]) -> String {
    match ips {
        [] => "-".to_string(),
        _ => ips
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
    }
}

impl Up {
    /// Vif `devid` of domain `domid` (`spec`, with `devid=` already taken into
    /// account): checked against the mode, given its defaults (MAC, addresses,
    /// name), refused if its MAC or an address is taken, by another guest or by a
    /// vif planned `earlier` in the same request. In bridge and route modes a vif
    /// without `ip=` gets the domain's one default address if `gets_default` (the
    /// first vif of a create; an attached vif when no other of the domain has it),
    /// else none; NAT gives every vif vif-nat's address for its devid.
    pub(super) fn plan_vif(
        &self,
        domid: u16,
        devid: u16,
        gets_default: bool,
        spec: &VifSpec,
        earlier: &[Planned],
    ) -> Result<Planned, String> {
        let mode = self.topo.driver_domain.mode;
        let bridge_name = &self.topo.driver_domain.bridge;
        let want = match mode {
            Mode::Bridge => Script::Bridge,
            Mode::Route => Script::Route,
            Mode::Nat => Script::Nat,
        };
        if let Some(s) = spec.script {
            if s != want {
                return Err(format!(
                    "vif spec: script={} does not match the driver domain's {} mode",
                    s.name(),
                    mode_name(mode)
                ));
            }
        }
        if let (Some(b), Mode::Bridge) = (&spec.bridge, mode) {
            if b != bridge_name {
                return Err(format!(
                    "vif spec: bridge={b}: this driver domain has only {bridge_name}"
                ));
            }
        }
        if earlier.iter().any(|p| p.devid == u32::from(devid)) {
            return Err(format!("domain {domid}: two vifs with devid {devid}"));
        }
        let mac = spec.mac.unwrap_or(MacAddr(guest_vif_mac(domid, devid)));
        let ips = if !spec.ips.is_empty() {
            // xl's `ip=` names addresses; the guest's interface gets the segment's
            // prefix so its gateway is on-link (the driver domain routes /32 per guest).
            spec.ips
                .iter()
                .map(|c| match c.prefix_len() {
                    32 => Ipv4Cidr::new(c.address(), 24),
                    _ => *c,
                })
                .collect()
        } else if mode == Mode::Nat || gets_default {
            match guest_addr(mode, domid, devid) {
                Some((addr, _)) => vec![addr],
                None => {
                    return Err(format!(
                        "domain {domid}: {}: give the vif an ip=",
                        no_default_addr(mode)
                    ))
                }
            }
        } else {
            Vec::new()
        };
        let taken = earlier.iter().map(|p| (p.name.as_str(), p.mac, &p.ips[..]));
        if let Some(taken) = self.in_use(mac, &ips, taken) {
            return Err(format!("domain {domid}: {taken}"));
        }
        let name = spec
            .vifname
            .clone()
            .unwrap_or_else(|| format!("vif{domid}.{devid}"));
        // The vif's `ip` node: in bridge mode only what `ip=` named. The port's
        // addresses are the ones its guest may send from (Xen's vif scripts'
        // antispoofing), and in route and NAT modes the ones routed to it.
        let ip_node = (!spec.ips.is_empty() || mode != Mode::Bridge) && !ips.is_empty();
        let port = PortConfig {
            peer_mac: Some(mac),
            ips: match ip_node {
                true => ips.iter().map(|c| c.address()).collect(),
                false => Vec::new(),
            },
            ..PortConfig::default()
        };
        let nodes = VifNodes {
            frontend_domid: domid,
            backend_domid: 0,
            devid: u32::from(devid),
            mac: MacFmt(mac).to_string(),
            bridge: (mode == Mode::Bridge).then(|| bridge_name.clone()),
            ip: ip_node.then(|| {
                ips.iter()
                    .map(|c| c.address().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            script: want.name().to_string(),
            rate: spec
                .rate
                .map(|r| (r.bytes_per_interval, u64::from(r.interval_us))),
            vifname: spec.vifname.clone(),
        };
        Ok(Planned {
            devid: u32::from(devid),
            name,
            mac,
            ips,
            port,
            nodes,
        })
    }

    /// Who has `mac` or one of `ips` already (the driver domain, the simulated
    /// uplink host, a vif of another guest or one planned before it, `planned`:
    /// name, MAC, addresses), said as a refusal: two domains on one address would
    /// each see the other's traffic.
    fn in_use<'a>(
        &'a self,
        mac: MacAddr,
        ips: &[Ipv4Cidr],
        planned: impl Iterator<Item = (&'a str, MacAddr, &'a [Ipv4Cidr])>,
    ) -> Option<String> {
        let dd = &self.topo.driver_domain;
        let sim = (dd.uplink == UplinkSpec::Sim).then_some(&self.topo.uplink_host);
        let mac_text = MacFmt(mac);
        if mac == dd.mac {
            return Some(format!("mac={mac_text} is the driver domain's"));
        }
        if sim.is_some_and(|h| h.mac == mac) {
            return Some(format!("mac={mac_text} is the simulated uplink host's"));
        }
        for ip in ips.iter().map(|c| c.address()) {
            if ip == dd.addr.address() {
                return Some(format!("ip={ip} is the driver domain's"));
            }
            if sim.is_some_and(|h| h.addr.address() == ip) {
                return Some(format!("ip={ip} is the simulated uplink host's"));
            }
        }
        let existing = self.guests.iter().flat_map(|(domid, g)| {
            g.vifs
                .iter()
                .map(move |v| (v.name.as_str(), v.mac, &v.ips[..], Some(*domid)))
        });
        let planned = planned.map(|(name, mac, ips)| (name, mac, ips, None));
        for (name, vmac, vips, domid) in existing.chain(planned) {
            let whose = match domid {
                Some(d) => format!("{name}'s (domain {d})"),
                None => format!("{name}'s"),
            };
            if vmac == mac {
                return Some(format!("mac={mac_text} is already {whose}"));
            }
            let shared = ips
                .iter()
                .map(|c| c.address())
                .find(|ip| vips.iter().any(|c| c.address() == *ip));
            if let Some(ip) = shared {
                return Some(format!("ip={ip} is already {whose}"));
            }
        }
        None
    }
}
