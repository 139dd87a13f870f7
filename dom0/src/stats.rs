//! `xennet stats`: netback's counters per vif, named the way domain 0's Linux names a
//! vif's directions, beside the switch's counters per port with its drop reasons.
//!
//! Directions are those of `ip -s link show vifN.0` in a Linux driver domain: a vif
//! *receives* (rx) what its guest transmits and *transmits* (tx) what is sent to
//! the guest. netback's own counters ([`VifCounters`], the `counters` object of the
//! JSON form) are named from the guest's side, as netif.h names the rings:
//! `tx_packets` there is the guest's transmit, which is the vif's rx here.
//!
//! A vif that left the data plane (its frontend closed, or a fatal protocol error
//! ended it) is still listed, as `departed` with its final counters and the fault,
//! until a vif of the same name connects again.
//!
//! The JSON form (`stats --json`), whose field names are kept stable:
//!
//! ```text
//! { "vifs": [ { "vif": "vif1.0", "state": "connected" | "departed",
//!               "fault": null | "<why a fatal error ended it>",
//!               "rx": { "packets", "bytes", "errors" },            from the guest
//!               "tx": { "packets", "bytes", "errors", "dropped" }, to the guest
//!               "counters": { netback's counters, guest-side names } } ],
//!   "ports": [ { "port": "peth0", "kind": "uplink" | "local" | "vif" | "kernel",
//!                "rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
//!                "unknown_unicast_flooded", "dropped",
//!                "drops": { "<drop reason>": count, ... } } ] }
//! ```
//!
//! A `kernel` port is the TAP wired to a vif's port (`--vifs tap`). A port's rx is
//! what entered the switch from it; its drops are counted on the port the frame came
//! in on, by reason (`xennet_switch::DropReason`; only reasons with a count appear).

use std::fmt::Write as _;

use serde_json::{json, Value};
use xennet_netback::vif::VifCounters;
use xennet_switch::{DropReason, PortKind};

use crate::dataplane::Plane;
use crate::platform::DriverPlatform;

/// One vif row: its name, whether it is still attached, its counters and the
/// fault that ended it.
struct VifRow<'a> {
    name: String,
    connected: bool,
    counters: VifCounters,
    fault: Option<&'a str>,
}

fn vif_rows<P: DriverPlatform>(plane: &Plane<P>) -> Vec<VifRow<'_>> {
    let mut rows: Vec<VifRow<'_>> = plane
        .vifs
        .iter()
        .map(|v| VifRow {
            name: v.vif.name(),
            connected: true,
            counters: v.vif.counters(),
            fault: None,
        })
        .collect();
    // The latest departure of each vif that is not connected again.
    for d in plane.departed.iter().rev() {
        if !rows.iter().any(|r| r.name == d.name) {
            rows.push(VifRow {
                name: d.name.clone(),
                connected: false,
                counters: d.counters,
                fault: d.fault.as_deref(),
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

fn kind_name(k: PortKind) -> &'static str {
    match k {
        PortKind::Vif { .. } => "vif",
        PortKind::Local => "local",
        PortKind::Uplink => "uplink",
        PortKind::Kernel => "kernel",
    }
}

/// The drop reasons with a count, as `reason=count` words (`-` when none).
fn drop_words(drops: &[u64]) -> String {
    let words: Vec<String> = DropReason::ALL
        .iter()
        .zip(drops)
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r}={n}"))
        .collect();
    if words.is_empty() {
        "-".into()
    } else {
        words.join(" ")
    }
}

/// The `stats` table: vifs (Linux's directions), then the switch's ports.
pub fn table<P: DriverPlatform>(plane: &Plane<P>) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<8} {:<9} {:>9} {:>11} {:>7} {:>9} {:>11} {:>7} {:>9} {:>9}",
        "vif",
        "state",
        "rx pkts",
        "rx bytes",
        "rx errs",
        "tx pkts",
        "tx bytes",
        "tx drop",
        "kicks in",
        "kicks out"
    );
    let rows = vif_rows(plane);
    for r in &rows {
        let c = &r.counters;
        let _ = writeln!(
            t,
            "{:<8} {:<9} {:>9} {:>11} {:>7} {:>9} {:>11} {:>7} {:>9} {:>9}",
            r.name,
            if r.connected { "connected" } else { "departed" },
            c.tx_packets,
            c.tx_bytes,
            c.tx_errors,
            c.rx_packets,
            c.rx_bytes,
            c.rx_dropped(),
            c.notify_received,
            c.notify_sent
        );
    }
    for r in rows.iter().filter(|r| r.fault.is_some()) {
        let _ = writeln!(
            t,
            "  {}: {} (fatal errors {})",
            r.name,
            r.fault.unwrap_or_default(),
            r.counters.fatal_errors
        );
    }
    t.push_str(
        "  (vif rx: what the guest sent; tx: what was sent to it, as ip -s link counts a vif)\n",
    );
    let _ = writeln!(
        t,
        "\n{:<8} {:>9} {:>11} {:>9} {:>11} {:>8}  drops by reason",
        "port", "rx pkts", "rx bytes", "tx pkts", "tx bytes", "flooded"
    );
    for (_, p) in plane.dd.fabric().ports().iter() {
        let c = &p.counters;
        let _ = writeln!(
            t,
            "{:<8} {:>9} {:>11} {:>9} {:>11} {:>8}  {}",
            p.name,
            c.rx_packets,
            c.rx_bytes,
            c.tx_packets,
            c.tx_bytes,
            c.unknown_unicast_flooded,
            drop_words(&c.drops)
        );
    }
    t.push_str(
        "  (port rx: into the switch from the port; drops are counted where the frame came in)\n",
    );
    t
}

/// The `stats --json` document (the module documentation lists its fields).
pub fn json<P: DriverPlatform>(plane: &Plane<P>) -> Value {
    let vifs: Vec<Value> = vif_rows(plane)
        .iter()
        .map(|r| {
            let c = &r.counters;
            json!({
                "vif": r.name,
                "state": if r.connected { "connected" } else { "departed" },
                "fault": r.fault,
                "rx": {"packets": c.tx_packets, "bytes": c.tx_bytes, "errors": c.tx_errors},
                "tx": {"packets": c.rx_packets, "bytes": c.rx_bytes, "errors": c.rx_errors,
                       "dropped": c.rx_dropped().saturating_sub(c.rx_errors)},
                "counters": c,
            })
        })
        .collect();
    let ports: Vec<Value> = plane
        .dd
        .fabric()
        .ports()
        .iter()
        .map(|(_, p)| {
            let c = &p.counters;
            let drops: serde_json::Map<String, Value> = DropReason::ALL
                .iter()
                .zip(&c.drops)
                .filter(|(_, n)| **n > 0)
                .map(|(r, n)| (r.as_str().to_string(), json!(n)))
                .collect();
            json!({
                "port": p.name,
                "kind": kind_name(p.kind),
                "rx_packets": c.rx_packets,
                "rx_bytes": c.rx_bytes,
                "tx_packets": c.tx_packets,
                "tx_bytes": c.tx_bytes,
                "unknown_unicast_flooded": c.unknown_unicast_flooded,
                "dropped": c.dropped_total(),
                "drops": drops,
            })
        })
        .collect();
    json!({"vifs": vifs, "ports": ports})
}
