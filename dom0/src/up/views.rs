//! What the control socket asks of a running driver domain: the request dispatcher
//! and the `list` and `stats` views.

use std::fmt::Write as _;

use xennet_switch::config::UplinkSpec;
use xennet_switch::wire::MacFmt;
use xennet_switch::{brctl, Mode};
use xennet_xenstore::XenbusState;

use super::removal::Then;
use super::{Request, Up};
use crate::build::mode_name;
use crate::control::Reply;

impl Up {
    /// One control request: answered now, or (`destroy`, `network-detach`) when the
    /// device has closed (`removal.rs`).
    pub(super) fn request(&mut self, req: Request) {
        let w: Vec<&str> = req.words.iter().map(String::as_str).collect();
        tracing::debug!(pid = ?req.peer.pid, "control request {w:?}");
        if let Err(e) = self.authorize(&req.peer, &w) {
            tracing::warn!(pid = ?req.peer.pid, "control request {w:?} refused: {e}");
            let _ = req.reply.send(Err(e));
            return;
        }
        let removal = match w.as_slice() {
            ["destroy", domid] => Some((domid, None, Then::Destroy)),
            ["network-detach", domid] => Some((domid, None, Then::Detach)),
            ["network-detach", domid, devid] => Some((domid, Some(*devid), Then::Detach)),
            _ => None,
        };
        let Some((domid, devid, then)) = removal else {
            let r = self.control(&w);
            let _ = req.reply.send(r);
            return;
        };
        let target = guest_id(domid).and_then(|d| match devid {
            None => Ok((d, None)),
            Some(n) => n
                .parse::<u32>()
                .map(|n| (d, Some(n)))
                .map_err(|_| format!("bad device id {n:?}")),
        });
        match target {
            Ok((domid, devid)) => self.start_removal(domid, devid, then, req.reply),
            Err(e) => {
                let _ = req.reply.send(Err(e));
            }
        }
    }

    fn control(&mut self, w: &[&str]) -> Reply {
        match w {
            ["create", domid, specs @ ..] => {
                let domid = guest_id(domid)?;
                self.create(domid, &specs.join(" "))
            }
            ["network-attach", domid, specs @ ..] => {
                let domid = guest_id(domid)?;
                self.network_attach(domid, &specs.join(" "))
            }
            ["list"] => Ok(self.list()),
            ["stats"] => Ok(self.stats(false)),
            ["stats", "--json"] => Ok(self.stats(true)),
            ["brctl", "show"] | ["brctl"] => {
                if self.topo.driver_domain.mode != Mode::Bridge {
                    return Err(format!(
                        "no bridge in {} mode",
                        mode_name(self.topo.driver_domain.mode)
                    ));
                }
                Ok(brctl::show(self.plane.dd.fabric()))
            }
            ["brctl", "showmacs", br] => {
                let now = self.plane.now();
                brctl::showmacs(self.plane.dd.fabric(), br, now).map_err(|e| e.to_string())
            }
            ["brctl", ..] => Err(BRCTL_USAGE.into()),
            ["info"] => Ok(format!(
                "mode={} uplink={} guests={} {}\n",
                mode_name(self.topo.driver_domain.mode),
                match &self.topo.driver_domain.uplink {
                    UplinkSpec::Sim => "sim".to_string(),
                    UplinkSpec::Tap(n) => format!("tap:{n}"),
                    UplinkSpec::Pcap(p) => format!("pcap:{}", p.display()),
                },
                self.guests.len(),
                self.xsd.describe()
            )),
            ["down"] => {
                self.stop = true;
                Ok("driver domain stopping\n".into())
            }
            _ => Err(format!(
                "unknown request {:?} (create, destroy, network-attach, network-detach, \
                 list, stats, brctl, info, down)",
                w.join(" ")
            )),
        }
    }

    pub(super) fn list(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{:<12} {:>5}  {:<10} {:<18} {:<20} state (be/fe)",
            "Name", "ID", "vif", "mac", "ip"
        );
        let _ = writeln!(
            t,
            "{:<12} {:>5}  {:<10} {:<18} {:<20} -",
            "Domain-0",
            0,
            "-",
            MacFmt(self.topo.driver_domain.mac).to_string(),
            self.topo.driver_domain.addr.address().to_string()
        );
        for (domid, g) in &self.guests {
            let (be_s, fe_s) = self
                .devs
                .iter()
                .find(|(k, _)| k.0 == *domid)
                .map(|(_, d)| {
                    let d = d.dev();
                    (
                        d.state(&self.xs).unwrap_or(XenbusState::Unknown),
                        d.frontend_state(&self.xs).unwrap_or(XenbusState::Unknown),
                    )
                })
                .unwrap_or((XenbusState::Unknown, XenbusState::Unknown));
            let Some(v) = &g.vif else {
                let _ = writeln!(
                    t,
                    "{:<12} {:>5}  {:<10} {:<18} {:<20} -",
                    g.dom_name, domid, "-", "-", "-"
                );
                continue;
            };
            let ips = v
                .ips
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let _ = writeln!(
                t,
                "{:<12} {:>5}  {:<10} {:<18} {:<20} {:?}/{:?}",
                g.dom_name.clone(),
                domid,
                v.name,
                MacFmt(v.mac).to_string(),
                ips,
                be_s,
                fe_s
            );
        }
        t
    }

    pub(super) fn stats(&self, json: bool) -> String {
        if json {
            return serde_json::to_string_pretty(&crate::stats::json(&self.plane))
                .unwrap_or_default()
                + "\n";
        }
        crate::stats::table(&self.plane)
    }
}

/// What `brctl` takes, said when it is given anything else.
const BRCTL_USAGE: &str = "usage: brctl show | brctl showmacs BRIDGE";

/// A guest's domain id from a request: one range (1 up to DOMID_FIRST_RESERVED) and one
/// message for every command.
fn guest_id(word: &str) -> Result<u16, String> {
    let id: u16 = word
        .parse()
        .map_err(|_| format!("bad domain id {word:?}"))?;
    xennet_ring::DomId::guest(id)
        .map(|d| d.0)
        .map_err(|e| e.to_string())
}
