//! The parts of [`XenBackend`] for kernel vifs (`--vifs tap`: each device's
//! persistent TAP) and the report of the switch's ports when `xennet up` stops.

use xennet_switch::uplink::tap::TapDevice;

use super::{default_port_name, XenBackend};
use crate::platform::DriverPlatform;

impl<P: DriverPlatform> XenBackend<P> {
    /// Creates device `key`'s persistent TAP (named by its `vifname` node or as Xen
    /// names vifs) if it has none yet.
    pub(super) fn ensure_tap(&mut self, key: (u16, u32), path: &str) {
        if !self.kernel_vifs || self.taps.contains_key(&key) {
            return;
        }
        let name = match self.xs.try_read_string(&format!("{path}/vifname")) {
            Ok(Some(n)) if !n.is_empty() => n,
            _ => default_port_name(key.0, key.1),
        };
        match TapDevice::open(&name).and_then(|t| t.set_persist(true)) {
            Ok(()) => {
                tracing::info!(vif = %name, "kernel vif created");
                self.taps.insert(key, name);
            }
            Err(e) => {
                tracing::warn!(device = %path, "kernel vif {name}: {e}");
                let _ = self
                    .xs
                    .write(&format!("{path}/error"), format!("kernel vif {name}: {e}"));
            }
        }
    }

    /// Removes device `key`'s TAP (the vif detached first: its descriptor is closed).
    pub(super) fn remove_tap(&mut self, key: (u16, u32)) {
        if let Some(name) = self.taps.remove(&key) {
            match TapDevice::open(&name).and_then(|t| t.set_persist(false)) {
                Ok(()) => tracing::info!(vif = %name, "kernel vif removed"),
                Err(e) => tracing::warn!("kernel vif {name}: cannot remove it: {e}"),
            }
        }
    }

    /// One line per switch port still there (the uplink, vif0.0): frames in and out,
    /// drops by reason, and for a TAP its write errors (frames the kernel refused):
    /// where frames went, printed when `xennet up` stops.
    pub fn port_report(&mut self) -> Vec<String> {
        let ports: Vec<_> = self
            .plane
            .dd
            .fabric()
            .ports()
            .iter()
            .map(|(id, p)| (id, p.name.clone(), p.counters))
            .collect();
        let mut lines = Vec::new();
        for (id, name, c) in ports {
            let mut line = format!(
                "{name}: {} frames in, {} out, {} dropped",
                c.rx_packets,
                c.tx_packets,
                c.dropped_total()
            );
            let reasons: Vec<String> = xennet_switch::DropReason::ALL
                .iter()
                .filter(|r| c.dropped(**r) > 0)
                .map(|r| format!("{r} {}", c.dropped(*r)))
                .collect();
            if !reasons.is_empty() {
                line.push_str(&format!(" ({})", reasons.join(", ")));
            }
            if let Some(tap) = self.plane.dd.endpoint_mut::<TapDevice>(id) {
                let (read, written, errors) = tap.stats();
                line.push_str(&format!(
                    "; TAP {}: {read} read, {written} written, {errors} write errors",
                    tap.name()
                ));
            }
            lines.push(line);
        }
        lines
    }
}
