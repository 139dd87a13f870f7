//! `brctl show` and `brctl showmacs` views of a bridge-mode fabric, in bridge-utils'
//! exact text format (tabs and all), so scripts that parse brctl output parse ours.
//!
//! The bridge id is `8000.<mac>` (default priority 0x8000) where the MAC is the lowest
//! MAC among the bridge's ports, as Linux chooses it when the bridge device has no
//! address of its own set; with no ports it is `8000.000000000000`.

use std::fmt::Write as _;

use xennet_ring::time::Instant;

use super::{Fabric, PortId};
use crate::wire::{MacAddr, MacFmt};

/// Errors of the brctl views.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BrctlError {
    /// No bridge of that name (the fabric is not in bridge mode or has another name).
    #[error("bridge {0} does not exist")]
    NoSuchBridge(String),
}

/// The bridge id text, `8000.feffffffffff`.
pub fn bridge_id(fabric: &Fabric) -> String {
    let lowest = fabric
        .ports()
        .iter()
        .map(|(_, p)| p.cfg.port_mac.0)
        .min()
        .unwrap_or([0; 6]);
    let mut s = String::from("8000.");
    for b in lowest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `brctl show`: a header, then per bridge `name\t\tid\tSTP\t\tfirst-port`, further
/// ports on continuation lines indented by seven tabs; ports sorted by name.
pub fn show(fabric: &Fabric) -> String {
    let mut s = String::from("bridge name\tbridge id\t\tSTP enabled\tinterfaces\n");
    let Some(bridge) = fabric.bridge() else {
        return s;
    };
    let mut names: Vec<&str> = fabric
        .ports()
        .iter()
        .map(|(_, p)| p.name.as_str())
        .collect();
    names.sort_unstable();
    let _ = write!(s, "{}\t\t{}\tno\t\t", bridge.name(), bridge_id(fabric));
    s.push_str(&names.join("\n\t\t\t\t\t\t\t"));
    s.push('\n');
    s
}

/// `brctl showmacs BRIDGE` at time `now`: local entries for the ports' own MACs
/// (ageing 0.00, one line per distinct MAC, on its lowest-numbered port), learned
/// entries with the time since the MAC was last seen; sorted by MAC.
pub fn showmacs(fabric: &Fabric, bridge_name: &str, now: Instant) -> Result<String, BrctlError> {
    let bridge = fabric
        .bridge()
        .filter(|b| b.name() == bridge_name)
        .ok_or_else(|| BrctlError::NoSuchBridge(bridge_name.to_string()))?;
    // (mac, port no, local, age in centiseconds)
    let mut rows: Vec<(MacAddr, u16, bool, u64)> = Vec::new();
    let mut locals: Vec<(u16, MacAddr)> = fabric
        .ports()
        .iter()
        .filter_map(|(id, p)| Some((bridge.port_no(id)?, p.cfg.port_mac)))
        .collect();
    locals.sort_unstable();
    for (no, mac) in locals {
        if !rows.iter().any(|r| r.0 == mac) {
            rows.push((mac, no, true, 0));
        }
    }
    for (mac, e) in bridge.entries(now) {
        let no = port_no(bridge, e.port);
        let age = u64::try_from((now - e.updated).as_millis()).unwrap_or(u64::MAX) / 10;
        rows.push((mac, no, false, age));
    }
    rows.sort_by_key(|r| r.0 .0);
    let mut s = String::from("port no\tmac addr\t\tis local?\tageing timer\n");
    for (mac, no, local, age) in rows {
        let _ = writeln!(
            s,
            "{:3}\t{}\t{}\t\t{:4}.{:02}",
            no,
            MacFmt(mac),
            if local { "yes" } else { "no" },
            age / 100,
            age % 100
        );
    }
    Ok(s)
}

fn port_no(bridge: &super::bridge::Bridge, id: PortId) -> u16 {
    bridge.port_no(id).unwrap_or(0)
}
