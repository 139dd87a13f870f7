//! What the control socket asks of a running driver domain: the request dispatcher
//! and the `list` and `stats` views.

use std::fmt::Write as _;

use serde_json::{json, Value};
use xennet_switch::config::UplinkSpec;
use xennet_switch::wire::MacFmt;
use xennet_switch::{brctl, Fabric, Mode};
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

    fn control(&mut self, words: &[&str]) -> Reply {
        // The views take `--json` last.
        let (w, json) = match words.split_last() {
            Some((&"--json", rest)) => (rest, true),
            _ => (words, false),
        };
        if json && !matches!(w.first(), Some(&"list" | &"stats" | &"brctl")) {
            return Err("--json: only list, stats and brctl have a JSON form".into());
        }
        match w {
            ["create", domid, specs @ ..] => {
                let domid = guest_id(domid)?;
                self.create(domid, &specs.join(" "))
            }
            ["network-attach", domid, specs @ ..] => {
                let domid = guest_id(domid)?;
                self.network_attach(domid, &specs.join(" "))
            }
            ["list"] => Ok(self.list(json)),
            ["stats"] => Ok(self.stats(json)),
            ["brctl", "show"] | ["brctl"] => {
                if self.topo.driver_domain.mode != Mode::Bridge {
                    return Err(format!(
                        "no bridge in {} mode",
                        mode_name(self.topo.driver_domain.mode)
                    ));
                }
                let fabric = self.plane.dd.fabric();
                Ok(if json {
                    pretty(&brctl_show_json(fabric))
                } else {
                    brctl::show(fabric)
                })
            }
            ["brctl", "showmacs", br] => {
                let now = self.plane.now();
                let text =
                    brctl::showmacs(self.plane.dd.fabric(), br, now).map_err(|e| e.to_string())?;
                Ok(if json {
                    pretty(&showmacs_json(&text))
                } else {
                    text
                })
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
                words.join(" ")
            )),
        }
    }

    /// The `list` rows: domain 0, then a row per vif of every guest (its name, MAC,
    /// addresses and the states of both ends of its device; a guest without a vif
    /// gets one row without them).
    fn list_rows(&self) -> Vec<ListRow> {
        let dd = &self.topo.driver_domain;
        let mut rows = vec![ListRow {
            name: "Domain-0".into(),
            domid: 0,
            vif: None,
            mac: Some(MacFmt(dd.mac).to_string()),
            ips: vec![dd.addr.address().to_string()],
            states: None,
        }];
        for (domid, g) in &self.guests {
            if g.vifs.is_empty() {
                rows.push(ListRow {
                    name: g.dom_name.clone(),
                    domid: *domid,
                    vif: None,
                    mac: None,
                    ips: Vec::new(),
                    states: None,
                });
            }
            for v in &g.vifs {
                let states = self
                    .devs
                    .get(&(*domid, v.devid))
                    .map(|d| {
                        let d = d.dev();
                        (
                            d.state(&self.xs).unwrap_or(XenbusState::Unknown),
                            d.frontend_state(&self.xs).unwrap_or(XenbusState::Unknown),
                        )
                    })
                    .unwrap_or((XenbusState::Unknown, XenbusState::Unknown));
                rows.push(ListRow {
                    name: g.dom_name.clone(),
                    domid: *domid,
                    vif: Some(v.name.clone()),
                    mac: Some(MacFmt(v.mac).to_string()),
                    ips: v.ips.iter().map(|c| c.to_string()).collect(),
                    states: Some(states),
                });
            }
        }
        rows
    }

    /// `list`: a table with a line per vif, or (`json`) a JSON array with an object
    /// per vif, `{name, domid, vif, mac, ip: [..], backend_state, frontend_state}`
    /// (states as netif.h names them; a domain without a vif has one object whose
    /// `vif`, `mac` and states are `null`).
    pub(super) fn list(&self, json: bool) -> String {
        let rows = self.list_rows();
        if json {
            let v: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "domid": r.domid,
                        "vif": r.vif,
                        "mac": r.mac,
                        "ip": r.ips,
                        "backend_state": r.states.map(|s| format!("{:?}", s.0)),
                        "frontend_state": r.states.map(|s| format!("{:?}", s.1)),
                    })
                })
                .collect();
            return pretty(&Value::Array(v));
        }
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{:<12} {:>5}  {:<10} {:<18} {:<20} state (be/fe)",
            "Name", "ID", "vif", "mac", "ip"
        );
        for r in rows {
            let states = match r.states {
                Some((be, fe)) => format!("{be:?}/{fe:?}"),
                None => "-".into(),
            };
            let ips = if r.ips.is_empty() {
                "-".to_string()
            } else {
                r.ips.join(",")
            };
            let _ = writeln!(
                t,
                "{:<12} {:>5}  {:<10} {:<18} {:<20} {states}",
                r.name,
                r.domid,
                r.vif.as_deref().unwrap_or("-"),
                r.mac.as_deref().unwrap_or("-"),
                ips
            );
        }
        t
    }

    pub(super) fn stats(&self, json: bool) -> String {
        if json {
            return pretty(&crate::stats::json(&self.plane));
        }
        crate::stats::table(&self.plane)
    }
}

/// One row of `list`: a vif of a domain, or a domain without one.
struct ListRow {
    name: String,
    domid: u16,
    vif: Option<String>,
    mac: Option<String>,
    ips: Vec<String>,
    /// Backend and frontend state of its device (`None`: it has no vif).
    states: Option<(XenbusState, XenbusState)>,
}

/// A JSON reply: pretty-printed, one newline at the end.
fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// `brctl show --json`: `[{bridge, id, stp, interfaces: [..]}]`, as the text view
/// (interfaces sorted by name).
fn brctl_show_json(fabric: &Fabric) -> Value {
    let Some(bridge) = fabric.bridge() else {
        return json!([]);
    };
    let mut names: Vec<&str> = fabric
        .ports()
        .iter()
        .map(|(_, p)| p.name.as_str())
        .collect();
    names.sort_unstable();
    json!([{
        "bridge": bridge.name(),
        "id": brctl::bridge_id(fabric),
        "stp": false,
        "interfaces": names,
    }])
}

/// `brctl showmacs BRIDGE --json`: the text view's rows as
/// `[{port_no, mac, is_local, ageing_timer}]` (seconds).
fn showmacs_json(text: &str) -> Value {
    let rows: Vec<Value> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let no: u16 = f.next()?.parse().ok()?;
            let mac = f.next()?;
            let local = f.next()? == "yes";
            let age: f64 = f.next()?.parse().ok()?;
            Some(json!({"port_no": no, "mac": mac, "is_local": local, "ageing_timer": age}))
        })
        .collect();
    Value::Array(rows)
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
