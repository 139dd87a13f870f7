//! What `xl create`, `xl network-attach` and `xl destroy` do for a guest: introduce
//! the domain to XenStore, add a switch port per vif (the hotplug script's job),
//! write both device directories of each; and undo it all at once, for guests whose
//! process died and when the driver domain stops (the orderly removal of `destroy`
//! and `network-detach` is in `removal.rs`, what each vif gets in `vifs.rs`).

use std::fmt::Write as _;

use xennet_netback::up::Device;
use xennet_ring::DomId;
use xennet_switch::capture::PcapSink;
use xennet_switch::config::{parse_vif_spec, VifSpec};
use xennet_switch::route::vif_nat_router_ip;
use xennet_switch::wire::MacFmt;
use xennet_switch::{Mode, PortKind};

use super::vifs::{addrs, GuestVif, Planned};
use super::{Guest, Up};
use crate::build::{guest_addr, mode_name};
use crate::control::Reply;

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
            // A domain's default address (bridge, route) goes to its first vif.
            let devid = spec.devid.unwrap_or(i as u16);
            let p = self.plan_vif(domid, devid, i == 0, spec, &plan)?;
            plan.push(p);
        }
        let vifs = self.add_ports(domid, &plan)?;
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
            self.write_nodes(&plan)
        })();
        if let Err(e) = written {
            self.remove_ports(&vifs);
            let _ = self.xs.rm(&format!("/local/domain/0/backend/vif/{domid}"));
            let _ = self.xs.rm(&format!("/local/domain/{domid}"));
            let _ = self.xs.release(domid);
            return Err(format!("xenstore: {e}"));
        }
        self.attach_pending_captures(&vifs);
        self.watch_guest(domid);
        let out = self.reply(domid, "created", &vifs);
        self.guests.insert(domid, Guest { dom_name, vifs });
        self.reconcile();
        Ok(out)
    }

    /// What xl network-attach does: one more vif for a domain that exists, device
    /// `devid=` of `spec` or else the lowest free one (refused if the domain has it).
    /// Without a spec, a guest of the topology file gets the first of the file's
    /// vifs it lacks.
    pub(super) fn network_attach(&mut self, domid: u16, spec: &str) -> Reply {
        let Some(g) = self.guests.get(&domid) else {
            return Err(format!("no domain {domid} (create it first)"));
        };
        if self.removing(domid) {
            return Err(format!("domain {domid}: a removal is under way"));
        }
        let has = |devid: u16| g.vifs.iter().find(|v| v.devid == u32::from(devid));
        let spec: VifSpec = if spec.trim().is_empty() {
            let file = self.topo.guests.iter().find(|t| t.domid == domid);
            file.into_iter()
                .flat_map(|t| t.vifs.iter().enumerate())
                .map(|(i, s)| VifSpec {
                    devid: Some(s.devid.unwrap_or(i as u16)),
                    ..s.clone()
                })
                .find(|s| s.devid.and_then(has).is_none())
                .unwrap_or_default()
        } else {
            parse_vif_spec(spec).map_err(|e| format!("vif spec: {e}"))?
        };
        let devid = match spec.devid {
            Some(d) => d,
            None => (0..=u16::MAX)
                .find(|d| has(*d).is_none())
                .ok_or_else(|| format!("domain {domid}: every devid is in use"))?,
        };
        if let Some(v) = has(devid) {
            return Err(format!(
                "domain {domid} already has {} (devid {devid})",
                v.name
            ));
        }
        // The domain's default address (bridge, route) goes to the new vif unless
        // another of its vifs has it (a first vif detached and attached again gets
        // it back).
        let mode = self.topo.driver_domain.mode;
        let gets_default = match guest_addr(mode, domid, devid) {
            Some((addr, _)) => !g
                .vifs
                .iter()
                .any(|v| v.ips.iter().any(|c| c.address() == addr.address())),
            None => g.vifs.is_empty(),
        };
        let p = self.plan_vif(domid, devid, gets_default, &spec, &[])?;
        let plan = [p];
        let vifs = self.add_ports(domid, &plan)?;
        if let Err(e) = self.write_nodes(&plan) {
            self.remove_ports(&vifs);
            let _ = self
                .xs
                .rm(&format!("/local/domain/0/backend/vif/{domid}/{devid}"));
            let _ = self
                .xs
                .rm(&format!("/local/domain/{domid}/device/vif/{devid}"));
            return Err(format!("xenstore: {e}"));
        }
        self.attach_pending_captures(&vifs);
        let out = self.reply(domid, "vif attached", &vifs);
        if let Some(g) = self.guests.get_mut(&domid) {
            for v in vifs {
                let at = g.vifs.iter().position(|w| w.devid > v.devid);
                g.vifs.insert(at.unwrap_or(g.vifs.len()), v);
            }
        }
        self.reconcile();
        Ok(out)
    }

    /// The reply to a create or an attach (`what`): the first vif on the first line
    /// (what `xennet guest` reads: its address and gateway), the others on a line
    /// each.
    fn reply(&self, domid: u16, what: &str, vifs: &[GuestVif]) -> String {
        let mode = self.topo.driver_domain.mode;
        let gw = |v: &GuestVif| match mode {
            // The guests' gateway is the driver domain's own address.
            Mode::Route => Some(self.topo.driver_domain.addr.address()),
            // vif-nat: the router's address on the vif is the guest's + 127.
            Mode::Nat => v.ips.first().and_then(|c| vif_nat_router_ip(c.address())),
            Mode::Bridge => None,
        };
        let mut out = format!("domain {domid} {what}:");
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

    /// Adds the switch port of every planned vif of `domid`; none if one fails.
    fn add_ports(&mut self, domid: u16, plan: &[Planned]) -> Result<Vec<GuestVif>, String> {
        let mut vifs: Vec<GuestVif> = Vec::new();
        for p in plan {
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
                Ok(port) => vifs.push(p.added(port)),
                Err(e) => {
                    self.remove_ports(&vifs);
                    return Err(format!("domain {domid}: {e}"));
                }
            }
        }
        Ok(vifs)
    }

    /// Writes both device directories of every planned vif, as libxl does.
    fn write_nodes(&self, plan: &[Planned]) -> Result<(), String> {
        let e = |e: xennet_xenstore::XsError| e.to_string();
        for w in plan.iter().flat_map(|p| p.nodes.writes()) {
            self.xs.write(&w.path, &w.value).map_err(e)?;
            if let Some(p) = w.perms {
                self.xs.set_perms(&w.path, &p.to_perms()).map_err(e)?;
            }
        }
        Ok(())
    }

    /// Starts the `--capture`s that name these vifs.
    fn attach_pending_captures(&mut self, vifs: &[GuestVif]) {
        for v in vifs {
            if let Some(i) = self.pending_captures.iter().position(|(p, _)| *p == v.name) {
                let (_, file) = self.pending_captures.remove(i);
                match PcapSink::create(&file) {
                    Ok(sink) => self.plane.dd.captures_mut().attach_port(v.port, sink),
                    Err(e) => tracing::warn!("capture {}: {e}", v.name),
                }
            }
        }
    }

    fn remove_ports(&mut self, vifs: &[GuestVif]) {
        for v in vifs {
            self.plane.remove_vif(v.port);
            self.plane.dd.remove_port(v.port);
        }
    }

    /// Ends a domain at once (its process died, the driver domain stops, or its
    /// orderly removal is done): every vif leaves the switch, the nodes go, the
    /// domain is released.
    pub(super) fn destroy(&mut self, domid: u16) -> bool {
        if !self.guests.contains_key(&domid) {
            return false;
        }
        let vifs = self.forget_devices(domid, None);
        self.guests.remove(&domid);
        let _ = self.xs.rm(&format!("/local/domain/0/backend/vif/{domid}"));
        let _ = self.xs.rm(&format!("/local/domain/{domid}"));
        self.unwatch_guest(domid);
        let _ = self.xs.release(domid);
        self.plane.side.ops.remove_peer(DomId(domid));
        self.plane.side.events.remove_peer(DomId(domid));
        tracing::info!(domid, vifs, "domain destroyed");
        true
    }

    /// Detaches the domain's connected devices (all, or `devid`'s) and removes the
    /// switch ports of those vifs; says how many vifs went.
    pub(super) fn forget_devices(&mut self, domid: u16, devid: Option<u32>) -> usize {
        let ours = |d: u32| devid.map_or(true, |want| want == d);
        let keys: Vec<(u16, u32)> = self
            .devs
            .keys()
            .filter(|k| k.0 == domid && ours(k.1))
            .copied()
            .collect();
        for k in keys {
            if let Some(Device::Connected(_, port)) = self.devs.remove(&k) {
                self.plane.remove_vif(port);
            }
        }
        let Some(g) = self.guests.get_mut(&domid) else {
            return 0;
        };
        let (gone, kept): (Vec<GuestVif>, Vec<GuestVif>) = std::mem::take(&mut g.vifs)
            .into_iter()
            .partition(|v| ours(v.devid));
        g.vifs = kept;
        self.remove_ports(&gone);
        gone.len()
    }

    /// Guests whose process died (kill -9): their vifs leave the switch, every
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
