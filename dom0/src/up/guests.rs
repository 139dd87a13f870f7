//! What `xl create`, `xl network-attach` and `xl destroy` do for a guest: introduce
//! the domain to XenStore, add its switch port (the hotplug script's job), write both
//! device directories; and undo it all at once, for guests whose process died and
//! when the driver domain stops (the orderly removal is in `removal.rs`).

use std::fmt::Write as _;

use smoltcp::wire::Ipv4Cidr;
use xennet_netback::up::Device;
use xennet_ring::DomId;
use xennet_switch::capture::PcapSink;
use xennet_switch::config::{parse_vif_spec, Script, VifSpec};
use xennet_switch::wire::{MacAddr, MacFmt};
use xennet_switch::{Mode, PortConfig, PortId, PortKind};

use super::{Guest, GuestVif, Up};
use crate::build::{guest_addr, guest_mac, mode_name};
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
        let vif = self.prepare_vif(domid, &spec)?;
        if let Err(e) = self.xs.introduce(domid, 0, 0) {
            self.plane.dd.remove_port(vif.port);
            return Err(format!("xenstore introduce: {e}"));
        }
        let written = (|| -> Result<(), xennet_xenstore::XsError> {
            self.xs
                .write(&format!("/local/domain/{domid}/name"), &dom_name)?;
            self.xs
                .write(&format!("/local/domain/{domid}/domid"), domid.to_string())
        })();
        if let Err(e) = written
            .map_err(|e| e.to_string())
            .and_then(|()| vif.write(self))
        {
            self.plane.dd.remove_port(vif.port);
            let _ = self.xs.release(domid);
            return Err(format!("xenstore: {e}"));
        }
        self.watch_guest(domid);
        let out = vif.reply(self, "created");
        self.guests.insert(
            domid,
            Guest {
                dom_name,
                vif: Some(vif.into_vif()),
            },
        );
        self.reconcile();
        Ok(out)
    }

    /// What xl network-attach does: a vif for a domain that exists and has none
    /// (this driver domain attaches one vif per guest).
    pub(super) fn network_attach(&mut self, domid: u16, spec: &str) -> Reply {
        let Some(g) = self.guests.get(&domid) else {
            return Err(format!("no domain {domid} (create it first)"));
        };
        if let Some(v) = &g.vif {
            return Err(format!(
                "domain {domid} already has {}; this driver domain attaches one vif per guest",
                v.name
            ));
        }
        if self.removing(domid) {
            return Err(format!("domain {domid}: a removal is under way"));
        }
        let planned = self.topo.guests.iter().find(|g| g.domid == domid);
        let spec: VifSpec = match planned {
            Some(g) if spec.trim().is_empty() => g.vifs.first().cloned().unwrap_or_default(),
            _ => parse_vif_spec(spec).map_err(|e| format!("vif spec: {e}"))?,
        };
        let vif = self.prepare_vif(domid, &spec)?;
        if let Err(e) = vif.write(self) {
            self.plane.dd.remove_port(vif.port);
            return Err(format!("xenstore: {e}"));
        }
        let out = vif.reply(self, "vif attached");
        if let Some(g) = self.guests.get_mut(&domid) {
            g.vif = Some(vif.into_vif());
        }
        self.reconcile();
        Ok(out)
    }

    /// Checks a vif spec against this driver domain and adds the vif's switch port.
    fn prepare_vif(&mut self, domid: u16, spec: &VifSpec) -> Result<NewVif, String> {
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
        let default = default_addr(mode, domid);
        let ips = if spec.ips.is_empty() {
            vec![default.ok_or_else(|| {
                format!(
                    "vif spec: domain {domid} has no default address in {} mode \
                     (128.153.144.204+domid is for domains 1..={MAX_DEFAULT_ADDR}); give ip=",
                    mode_name(mode)
                )
            })?]
        } else {
            // xl's `ip=` names addresses; the guest's interface gets the segment's
            // prefix so its gateway is on-link (the driver domain routes /32 per guest).
            spec.ips
                .iter()
                .map(|c| match c.prefix_len() {
                    32 => Ipv4Cidr::new(c.address(), default.map_or(24, |d| d.prefix_len())),
                    _ => *c,
                })
                .collect()
        };
        let name = spec
            .vifname
            .clone()
            .unwrap_or_else(|| format!("vif{domid}.{devid}"));
        let pcfg = PortConfig {
            peer_mac: Some(mac),
            ips: ips.iter().map(|c| c.address()).collect(),
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
            ip: (!spec.ips.is_empty() || mode != Mode::Bridge).then(|| {
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
        Ok(NewVif {
            port,
            nodes,
            vif: GuestVif {
                port,
                devid,
                name,
                mac,
                ips,
            },
        })
    }

    /// Ends a domain at once (its process died, or the driver domain stops): every
    /// vif leaves the switch, the nodes go, the domain is released.
    pub(super) fn destroy(&mut self, domid: u16) -> bool {
        if !self.guests.contains_key(&domid) {
            return false;
        }
        self.forget_devices(domid, None);
        let Some(g) = self.guests.remove(&domid) else {
            return false;
        };
        let _ = self.xs.rm(&format!("/local/domain/0/backend/vif/{domid}"));
        let _ = self.xs.rm(&format!("/local/domain/{domid}"));
        self.unwatch_guest(domid);
        let _ = self.xs.release(domid);
        self.plane.side.ops.remove_peer(DomId(domid));
        self.plane.side.events.remove_peer(DomId(domid));
        let vif = g.vif.as_ref().map_or("-", |v| v.name.as_str());
        tracing::info!(domid, vif, "domain destroyed");
        true
    }

    /// Detaches the domain's connected devices (all, or `devid`'s) and removes the
    /// switch port of its vif.
    pub(super) fn forget_devices(&mut self, domid: u16, devid: Option<u32>) {
        let keys: Vec<(u16, u32)> = self
            .devs
            .keys()
            .filter(|k| k.0 == domid && devid.map_or(true, |d| d == k.1))
            .copied()
            .collect();
        for k in keys {
            if let Some(Device::Connected(_, port)) = self.devs.remove(&k) {
                self.plane.remove_vif(port);
            }
        }
        let Some(g) = self.guests.get_mut(&domid) else {
            return;
        };
        if g.vif
            .as_ref()
            .is_some_and(|v| devid.map_or(true, |d| d == v.devid))
        {
            if let Some(v) = g.vif.take() {
                self.plane.remove_vif(v.port);
                self.plane.dd.remove_port(v.port);
            }
        }
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
            self.end_removal(
                d,
                Ok(format!("domain {d} destroyed (its process was gone)\n")),
            );
            self.destroy(d);
            self.rt.clean_stale();
        }
    }

    /// Watches the guest's device directory, so a frontend's state changes reach
    /// the reconcile loop at once (not at the next sweep).
    pub(super) fn watch_guest(&self, domid: u16) {
        let path = format!("/local/domain/{domid}/device");
        if let Err(e) = self.xs.watch(&path, &format!("guest-{domid}")) {
            tracing::warn!("watch {path}: {e}");
        }
    }

    fn unwatch_guest(&self, domid: u16) {
        let path = format!("/local/domain/{domid}/device");
        let _ = self.xs.unwatch(&path, &format!("guest-{domid}"));
    }
}

/// The last domain with a default address on the uplink's segment (bridge and
/// route modes): 128.153.144.204 + domid stays below the broadcast address.
const MAX_DEFAULT_ADDR: u16 = 50;

/// A guest's default address, if its mode gives it one (`build::guest_addr`).
fn default_addr(mode: Mode, domid: u16) -> Option<Ipv4Cidr> {
    (mode == Mode::Nat || domid <= MAX_DEFAULT_ADDR).then(|| guest_addr(mode, domid).0)
}

/// A vif whose switch port exists, before its nodes are written.
struct NewVif {
    port: PortId,
    nodes: VifNodes,
    vif: GuestVif,
}

impl NewVif {
    /// Writes both device directories, as libxl does.
    fn write(&self, up: &Up) -> Result<(), String> {
        let e = |e: xennet_xenstore::XsError| e.to_string();
        for w in self.nodes.writes() {
            up.xs.write(&w.path, &w.value).map_err(e)?;
            if let Some(p) = w.perms {
                up.xs.set_perms(&w.path, &p.to_perms()).map_err(e)?;
            }
        }
        Ok(())
    }

    /// The control reply: `domain N <what>: NAME mac=... ip=...[ gw=...] mode=...`
    /// (guests read their address and gateway from it).
    fn reply(&self, up: &Up, what: &str) -> String {
        let v = &self.vif;
        let domid = self.nodes.frontend_domid;
        let mode = up.topo.driver_domain.mode;
        let gw = match mode {
            // The guests' gateway is the driver domain's own address.
            Mode::Route => Some(up.topo.driver_domain.addr.address()),
            Mode::Nat => guest_addr(mode, domid).1,
            Mode::Bridge => None,
        };
        let mut out = format!(
            "domain {domid} {what}: {} mac={} ip={}",
            v.name,
            MacFmt(v.mac),
            v.ips
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        if let Some(gw) = gw {
            let _ = write!(out, " gw={gw}");
        }
        let _ = writeln!(out, " mode={}", mode_name(mode));
        out
    }

    fn into_vif(self) -> GuestVif {
        self.vif
    }
}
