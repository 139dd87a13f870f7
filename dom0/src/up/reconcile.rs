//! The backend side of every device, reconciled level-triggered from XenStore (on
//! watch events and every sweep): netback's per-device state machine
//! ([`xennet_netback::up`]) with the driver domain attaching connected vifs to the
//! switch.

use std::collections::BTreeMap;

use xennet_netback::up::{self as be_up, Attach};
use xennet_netback::xenbus::BackendDevice;
use xennet_platform::shm::{PeerAccess, PeerDomain, RuntimeDir};
use xennet_switch::PortId;
use xennet_xenstore::XsClient;

use super::{Guest, Up};
use crate::dataplane::Dataplane;

/// Attaches a connected vif to its guest's switch port.
struct Attacher<'a> {
    guests: &'a BTreeMap<u16, Guest>,
    rt: &'a RuntimeDir,
    plane: &'a mut Dataplane,
}

impl Attach for Attacher<'_> {
    type Handle = PortId;

    fn attach(&mut self, xs: &XsClient, d: &BackendDevice) -> Result<PortId, String> {
        let fe = d.frontend_id;
        let vif = self
            .guests
            .get(&fe.0)
            .and_then(|g| g.vifs.iter().find(|v| v.devid == d.devid));
        let Some(port) = vif.map(|v| v.port) else {
            return Err(
                "no switch port for this device (not created through the toolstack)".into(),
            );
        };
        let params = d.read_frontend(xs).map_err(|e| e.to_string())?;
        if self.plane.side.ops.peer(fe).is_none() {
            let p = PeerDomain::open(self.rt, fe, PeerAccess::Grants)
                .map_err(|e| format!("cannot open domain {}'s memory: {e}", fe.0))?;
            self.plane.side.ops.add_peer(p);
        }
        let side = &self.plane.side;
        let (vif, ports) = d
            .connect(&params, &side.ops, &side.domain, &side.events)
            .map_err(|e| format!("connect: {e}"))?;
        self.plane.add_vif(port, vif, ports);
        Ok(port)
    }

    fn ended(&self, port: &PortId) -> Option<String> {
        super::vif_ended(self.plane, *port)
    }

    fn detach(&mut self, port: PortId) {
        self.plane.remove_vif(port);
    }
}

impl Up {
    pub(super) fn reconcile(&mut self) {
        let root = "/local/domain/0/backend/vif";
        let fes = match self.xs.directory(root) {
            Ok(v) => v,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => {
                tracing::warn!("xenstore: {e}");
                return;
            }
        };
        let mut seen = Vec::new();
        let mut attacher = Attacher {
            guests: &self.guests,
            rt: &self.rt,
            plane: &mut self.plane,
        };
        for fe in fes {
            let Ok(fe_id) = fe.parse::<u16>() else {
                continue;
            };
            for dev in self
                .xs
                .directory(&format!("{root}/{fe}"))
                .unwrap_or_default()
            {
                let Ok(devid) = dev.parse::<u32>() else {
                    continue;
                };
                let key = (fe_id, devid);
                seen.push(key);
                let path = format!("{root}/{fe}/{dev}");
                let state = self.devs.remove(&key);
                let next = be_up::step(&self.xs, &path, state, self.opts.max_queues, &mut attacher);
                if let Some(next) = next {
                    self.devs.insert(key, next);
                }
            }
        }
        // Devices whose directory vanished.
        let gone: Vec<(u16, u32)> = self
            .devs
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(port) = self.devs.remove(&k).and_then(|d| d.handle().copied()) {
                self.plane.remove_vif(port);
            }
        }
    }
}
