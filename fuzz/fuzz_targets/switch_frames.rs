//! The driver domain's switch in each mode (bridge, route with proxy ARP, NAT),
//! with the simulated remote host and the driver domain's own stack attached:
//! arbitrary frames from any port, at arbitrary times. Every frame gets a
//! disposition; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xennet_switch::config::UplinkSpec;
use xennet_switch::{Mode, PortConfig, PortId, PortKind};
use xennet_switch::wire::MacAddr;
use xennet_dom0::build::{driver_domain, guest_addr, guest_mac};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let mode = match sel % 3 {
        0 => Mode::Bridge,
        1 => Mode::Route,
        _ => Mode::Nat,
    };
    let Ok(mut dd) = driver_domain(mode, sel & 4 != 0, &UplinkSpec::Sim) else {
        return;
    };
    let mut ports: Vec<PortId> = Vec::new();
    for d in 1..=2u16 {
        let cfg = PortConfig {
            peer_mac: Some(MacAddr(guest_mac(d))),
            ips: guest_addr(mode, d, 0).map(|(a, _)| a.address()).into_iter().collect(),
            ..PortConfig::default()
        };
        if let Ok(p) = dd.fabric_mut().add_port(
            format!("vif{d}.0"),
            PortKind::Vif { domid: d, devid: 0 },
            cfg,
        ) {
            ports.push(p);
        }
    }
    if let Some(p) = dd.fabric().port_id("peth0") {
        ports.push(p);
    }
    let mut now = xennet_ring::time::Instant::ZERO;
    let mut delivered = 0usize;
    let mut out = |_: PortId, f: &[u8]| {
        assert!(!f.is_empty());
        delivered += 1;
    };
    // Records: [port, ms, len_lo, len_hi, frame...].
    while rest.len() >= 4 && !ports.is_empty() {
        let port = ports[usize::from(rest[0]) % ports.len()];
        now += core::time::Duration::from_millis(u64::from(rest[1]) * 16);
        let len = (usize::from(rest[2]) | usize::from(rest[3]) << 8).min(rest.len() - 4);
        let frame = &rest[4..4 + len];
        rest = &rest[4 + len..];
        let _ = dd.input(now, port, frame, &mut out);
        dd.poll(now, &mut out);
    }
    let _ = delivered;
});
