//! What `xl create` and `xl destroy` do for a guest: introduce the domain to
//! XenStore, add its switch port (the hotplug script's job), write both device
//! directories; and undo it all, also for guests whose process died.

use std::fmt::Write as _;

use smoltcp::wire::Ipv4Cidr;
use xennet_netback::up::Device;
use xennet_ring::DomId;
use xennet_switch::capture::PcapSink;
use xennet_switch::config::{parse_vif_spec, Script, UplinkSpec, VifSpec};
use xennet_switch::route::vif_nat_router_ip;
use xennet_switch::wire::{MacAddr, MacFmt};
use xennet_switch::{Mode, PortConfig, PortKind};

use super::{Guest, Up};
use crate::build::{guest_addr, guest_mac, mode_name, no_default_addr};
use crate::control::Reply;
use crate::nodes::VifNodes;

impl Up {
    /// What xl create does for a guest with one vif: introduce the domain to
    /// XenStore, add the switch port (the hotplug script's job), write both
    /// device directories.
    pub(super) fn create(&mut self, domid: u16, spec: &str) -> Reply {
        if let Err(e) = DomId::guest(domid) {
            return Err(e.to_string());
        }
        if self.guests.contains_key(&domid) {
            return Err(format!("domain {domid} already exists"));
        }
        // A guest of the topology file that brings no spec gets the file's.
        let planned = self.topo.guests.iter().find(|g| g.domid == domid);
        let (spec, dom_name): (VifSpec, String) = match planned {
            Some(g) if spec.trim().is_empty() => {
                (g.vifs.first().cloned().unwrap_or_default(), g.name.clone())
            }
            _ => (
                parse_vif_spec(spec).map_err(|e| format!("vif spec: {e}"))?,
                format!("guest{domid}"),
            ),
        };
        let mode = self.topo.driver_domain.mode;
        let bridge_name = self.topo.driver_domain.bridge.clone();
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
            if *b != bridge_name {
                return Err(format!(
                    "vif spec: bridge={b}: this driver domain has only {bridge_name}"
                ));
            }
        }
        let devid = u32::from(spec.devid.unwrap_or(0));
        let mac = spec.mac.unwrap_or(MacAddr(guest_mac(domid)));
        let default = guest_addr(mode, domid, devid as u16);
        let ips = if spec.ips.is_empty() {
            match default {
                Some((addr, _)) => vec![addr],
                None => {
                    return Err(format!(
                        "domain {domid}: {}: give the vif an ip=",
                        no_default_addr(mode)
                    ))
                }
            }
        } else {
            // xl's `ip=` names addresses; the guest's interface gets the segment's
            // prefix so its gateway is on-link (the driver domain routes /32 per guest).
            spec.ips
                .iter()
                .map(|c| match c.prefix_len() {
                    32 => Ipv4Cidr::new(c.address(), 24),
                    _ => *c,
                })
                .collect()
        };
        if let Some(taken) = self.in_use(mac, &ips) {
            return Err(format!("domain {domid}: {taken}"));
        }
        let name = spec
            .vifname
            .clone()
            .unwrap_or_else(|| format!("vif{domid}.{devid}"));
        // The vif's `ip` node: in bridge mode only what `ip=` named. The port's
        // addresses are the ones its guest may send from (Xen's vif scripts'
        // antispoofing), and in route and NAT modes the ones routed to it.
        let ip_node = (!spec.ips.is_empty() || mode != Mode::Bridge).then(|| ips.clone());
        let pcfg = PortConfig {
            peer_mac: Some(mac),
            ips: ip_node.iter().flatten().map(|c| c.address()).collect(),
            ..PortConfig::default()
        };
        let port = self
            .plane
            .dd
            .fabric_mut()
            .add_port(
                name.clone(),
                PortKind::Vif {
                    domid,
                    devid: devid as u16,
                },
                pcfg,
            )
            .map_err(|e| e.to_string())?;
        if let Some(i) = self.pending_captures.iter().position(|(p, _)| *p == name) {
            let (_, file) = self.pending_captures.remove(i);
            match PcapSink::create(&file) {
                Ok(sink) => self.plane.dd.captures_mut().attach_port(port, sink),
                Err(e) => tracing::warn!("capture {name}: {e}"),
            }
        }
        let nodes = VifNodes {
            frontend_domid: domid,
            backend_domid: 0,
            devid,
            mac: MacFmt(mac).to_string(),
            bridge: (mode == Mode::Bridge).then(|| bridge_name.clone()),
            ip: ip_node.map(|ips| {
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
        if let Err(e) = self.xs.introduce(domid, 0, 0) {
            self.plane.dd.remove_port(port);
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
            for w in nodes.writes() {
                self.xs.write(&w.path, &w.value).map_err(e)?;
                if let Some(p) = w.perms {
                    self.xs.set_perms(&w.path, &p.to_perms()).map_err(e)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = written {
            self.plane.dd.remove_port(port);
            let _ = self.xs.release(domid);
            return Err(format!("xenstore: {e}"));
        }
        self.guests.insert(
            domid,
            Guest {
                port,
                dom_name,
                name: name.clone(),
                mac,
                ips: ips.clone(),
            },
        );
        self.reconcile();
        let gw = match mode {
            // The guests' gateway is the driver domain's own address.
            Mode::Route => Some(self.topo.driver_domain.addr.address()),
            // vif-nat: the router's address on the vif is the guest's + 127.
            Mode::Nat => ips.first().and_then(|c| vif_nat_router_ip(c.address())),
            Mode::Bridge => None,
        };
        let mut out = format!(
            "domain {domid} created: {name} mac={} ip={}",
            MacFmt(mac),
            ips.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        if let Some(gw) = gw {
            let _ = write!(out, " gw={gw}");
        }
        let _ = writeln!(out, " mode={}", mode_name(mode));
        Ok(out)
    }

    /// Who has `mac` or one of `ips` already (the driver domain, the simulated
    /// uplink host, another guest's vif), said as a refusal: two domains on one
    /// address would each see the other's traffic.
    fn in_use(&self, mac: MacAddr, ips: &[Ipv4Cidr]) -> Option<String> {
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
        for (domid, g) in &self.guests {
            if g.mac == mac {
                return Some(format!(
                    "mac={mac_text} is already {}'s (domain {domid})",
                    g.name
                ));
            }
            if let Some(ip) = ips
                .iter()
                .map(|c| c.address())
                .find(|ip| g.ips.iter().any(|c| c.address() == *ip))
            {
                return Some(format!("ip={ip} is already {}'s (domain {domid})", g.name));
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
        self.plane.remove_vif(g.port);
        self.plane.dd.remove_port(g.port);
        let _ = self.xs.rm(&format!("/local/domain/0/backend/vif/{domid}"));
        let _ = self.xs.rm(&format!("/local/domain/{domid}"));
        let _ = self.xs.release(domid);
        self.plane.side.ops.remove_peer(DomId(domid));
        self.plane.side.events.remove_peer(DomId(domid));
        tracing::info!(domid, vif = %g.name, "domain destroyed");
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
