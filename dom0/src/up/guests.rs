//! What `xl create` and `xl destroy` do for a guest: introduce the domain to
//! XenStore, add a switch port per vif (the hotplug script's job), write both
//! device directories of each; and undo it all, also for guests whose process died.

use std::fmt::Write as _;

use smoltcp::wire::Ipv4Cidr;
use xennet_netback::up::Device;
use xennet_ring::DomId;
use xennet_switch::capture::PcapSink;
use xennet_switch::config::{parse_vif_spec, Script, UplinkSpec, VifSpec};
use xennet_switch::route::vif_nat_router_ip;
use xennet_switch::wire::{MacAddr, MacFmt};
use xennet_switch::{Mode, PortConfig, PortId, PortKind};

use super::{Guest, Up};
use crate::build::{guest_addr, guest_vif_mac, mode_name, no_default_addr};
use crate::control::Reply;
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
struct Planned {
    devid: u32,
    name: String,
    mac: MacAddr,
    ips: Vec<Ipv4Cidr>,
    port: PortConfig,
    nodes: VifNodes,
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
    /// What xl create does for a guest: introduce the domain to XenStore, add a
    /// switch port per vif (the hotplug script's job), write both device directories
    /// of each. A guest of the topology file that brings no spec gets the file's
    /// vifs (devid 0, 1, ...); otherwise it gets the one vif `spec` describes.
    pub(super) fn create(&mut self, domid: u16, spec: &str) -> Reply {
        if let Err(e) = DomId::guest(domid) {
            return Err(e.to_string());
        }
        if self.guests.contains_key(&domid) {
            return Err(format!("domain {domid} already exists"));
        }
        let planned = self.topo.guests.iter().find(|g| g.domid == domid);
        let (specs, dom_name): (Vec<VifSpec>, String) = match planned {
            Some(g) if spec.trim().is_empty() && g.vifs.is_empty() => {
                (vec![VifSpec::default()], g.name.clone())
            }
            Some(g) if spec.trim().is_empty() => (g.vifs.clone(), g.name.clone()),
            _ => (
                vec![parse_vif_spec(spec).map_err(|e| format!("vif spec: {e}"))?],
                format!("guest{domid}"),
            ),
        };
        let mut plan: Vec<Planned> = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let p = self.plan_vif(domid, i, spec, &plan)?;
            plan.push(p);
        }
        let mut vifs: Vec<GuestVif> = Vec::new();
        for p in &plan {
            let kind = PortKind::Vif {
                domid,
                devid: p.devid as u16,
            };
            match self
                .plane
                .dd
                .fabric_mut()
                .add_port(p.name.clone(), kind, p.port.clone())
            {
                Ok(port) => vifs.push(GuestVif {
                    devid: p.devid,
                    port,
                    name: p.name.clone(),
                    mac: p.mac,
                    ips: p.ips.clone(),
                }),
                Err(e) => {
                    self.remove_ports(&vifs);
                    return Err(format!("domain {domid}: {e}"));
                }
            }
        }
        if let Err(e) = self.xs.introduce(domid, 0, 0) {
            self.remove_ports(&vifs);
            return Err(format!("xenstore introduce: {e}"));
        }
        let written = (|| -> Result<(), String> {
            let e = |e: xennet_xenstore::XsError| e.to_string();
            self.xs
                .write(&format!("/local/domain/{domid}/name"), &dom_name)
                .map_err(e)?;
            self.xs
                .write(&format!("/local/domain/{domid}/domid"), domid.to_string())
                .map_err(e)?;
            for w in plan.iter().flat_map(|p| p.nodes.writes()) {
                self.xs.write(&w.path, &w.value).map_err(e)?;
                if let Some(p) = w.perms {
                    self.xs.set_perms(&w.path, &p.to_perms()).map_err(e)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = written {
            self.remove_ports(&vifs);
            let _ = self.xs.rm(&format!("/local/domain/0/backend/vif/{domid}"));
            let _ = self.xs.rm(&format!("/local/domain/{domid}"));
            let _ = self.xs.release(domid);
            return Err(format!("xenstore: {e}"));
        }
        for v in &vifs {
            if let Some(i) = self.pending_captures.iter().position(|(p, _)| *p == v.name) {
                let (_, file) = self.pending_captures.remove(i);
                match PcapSink::create(&file) {
                    Ok(sink) => self.plane.dd.captures_mut().attach_port(v.port, sink),
                    Err(e) => tracing::warn!("capture {}: {e}", v.name),
                }
            }
        }
        let out = self.created(domid, &vifs);
        self.guests.insert(domid, Guest { dom_name, vifs });
        self.reconcile();
        Ok(out)
    }

    /// The reply to a create: the first vif on the first line (what `xennet guest`
    /// reads: its address and gateway), the others on a line each.
    fn created(&self, domid: u16, vifs: &[GuestVif]) -> String {
        let mode = self.topo.driver_domain.mode;
        let gw = |v: &GuestVif| match mode {
            // The guests' gateway is the driver domain's own address.
            Mode::Route => Some(self.topo.driver_domain.addr.address()),
            // vif-nat: the router's address on the vif is the guest's + 127.
            Mode::Nat => v.ips.first().and_then(|c| vif_nat_router_ip(c.address())),
            Mode::Bridge => None,
        };
        let mut out = format!("domain {domid} created:");
        for (i, v) in vifs.iter().enumerate() {
            if i > 0 {
                out.push_str("\n ");
            }
            let _ = write!(
                out,
                " {} mac={} ip={}",
                v.name,
                MacFmt(v.mac),
                addrs(&v.ips)
            );
            if let Some(gw) = gw(v).filter(|_| !v.ips.is_empty()) {
                let _ = write!(out, " gw={gw}");
            }
            if i == 0 {
                let _ = write!(out, " mode={}", mode_name(mode));
            }
        }
        out.push('\n');
        out
    }

    /// One vif of a create: checked against the mode, given its defaults (devid,
    /// MAC, addresses, name), refused if its MAC or an address is taken.
    fn plan_vif(
        &self,
        domid: u16,
        index: usize,
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
        let devid = spec.devid.unwrap_or(index as u16);
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
        } else if mode == Mode::Nat || index == 0 {
            // A domain's default address goes to its first vif; NAT gives each vif
            // vif-nat's address for its devid.
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

    fn remove_ports(&mut self, vifs: &[GuestVif]) {
        for v in vifs {
            self.plane.remove_vif(v.port);
            self.plane.dd.remove_port(v.port);
        }
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

    pub(super) fn destroy(&mut self, domid: u16) -> bool {
        let Some(g) = self.guests.remove(&domid) else {
            return false;
        };
        let keys: Vec<(u16, u32)> = self.devs.keys().filter(|k| k.0 == domid).copied().collect();
        for k in keys {
            if let Some(Device::Connected(_, port)) = self.devs.remove(&k) {
                self.plane.remove_vif(port);
            }
        }
        self.remove_ports(&g.vifs);
        let _ = self.xs.rm(&format!("/local/domain/0/backend/vif/{domid}"));
        let _ = self.xs.rm(&format!("/local/domain/{domid}"));
        let _ = self.xs.release(domid);
        self.plane.side.ops.remove_peer(DomId(domid));
        self.plane.side.events.remove_peer(DomId(domid));
        tracing::info!(domid, vifs = g.vifs.len(), "domain destroyed");
        true
    }

    /// Guests whose process died (kill -9): their vif leaves the switch, every
    /// mapping of their memory is dropped, their files are removed.
    pub(super) fn reap_dead_guests(&mut self) {
        let dead: Vec<u16> = self
            .guests
            .keys()
            .copied()
            .filter(|d| self.rt.is_stale(DomId(*d)))
            .collect();
        for d in dead {
            tracing::warn!(domid = d, "guest process is gone; destroying its devices");
            self.destroy(d);
            self.rt.clean_stale();
        }
    }
}
