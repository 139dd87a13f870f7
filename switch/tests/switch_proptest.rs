//! Property tests: the fabric never panics on arbitrary frames, and every input frame
//! is accounted for: delivered n times, consumed, queued, or counted dropped.

mod common;

use common::*;
use proptest::prelude::*;
use smoltcp::wire::{ArpOperation, EthernetProtocol, IpProtocol};
use xennet_ring::time::{Duration, Instant};
use xennet_switch::wire::build::{arp_frame, Arp};
use xennet_switch::wire::{Ipv4Address, MacAddr};
use xennet_switch::{
    Collect, Disposition, DropReason, Fabric, FabricConfig, Mode, PortConfig, PortId, PortKind,
};

fn macs() -> BoxedStrategy<MacAddr> {
    prop_oneof![
        Just(MacAddr::BROADCAST),
        Just(VIF_MAC),
        Just(DD_MAC),
        Just(SIM_MAC),
        (1u8..5).prop_map(mac),
        Just(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1])),
        Just(MacAddr([0x01, 0x80, 0xc2, 0, 0, 0])),
        any::<[u8; 6]>().prop_map(MacAddr),
    ]
    .boxed()
}

fn ips() -> BoxedStrategy<Ipv4Address> {
    prop_oneof![
        Just(DD_IP),
        Just(SIM_IP),
        Just(GUEST_IP),
        Just(Ipv4Address::new(10, 0, 1, 1)),
        Just(Ipv4Address::new(10, 0, 1, 128)),
        Just(Ipv4Address::new(128, 153, 144, 255)),
        Just(Ipv4Address::BROADCAST),
        Just(Ipv4Address::new(224, 0, 0, 1)),
        any::<u32>().prop_map(Ipv4Address::from),
    ]
    .boxed()
}

fn l4() -> BoxedStrategy<(IpProtocol, Vec<u8>)> {
    prop_oneof![
        (
            ips(),
            ips(),
            any::<u16>(),
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(|(s, d, a, b, p)| (IpProtocol::Udp, udp(s, d, a, b, &p))),
        (ips(), ips(), any::<u16>(), any::<u16>())
            .prop_map(|(s, d, a, b)| (IpProtocol::Tcp, tcp_syn(s, d, a, b))),
        (any::<u16>(), any::<u16>()).prop_map(|(i, q)| (IpProtocol::Icmp, icmp_echo(i, q, b"x"))),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(p, b)| (IpProtocol::from(p), b)),
    ]
    .boxed()
}

fn frames() -> BoxedStrategy<Vec<u8>> {
    let ipv4_frame = (
        macs(),
        macs(),
        ips(),
        ips(),
        prop_oneof![Just(64u8), 0u8..3],
        l4(),
    )
        .prop_map(|(d, s, si, di, ttl, (proto, pl))| {
            eth(d, s, EthernetProtocol::Ipv4, &ipv4(si, di, proto, ttl, &pl))
        })
        .boxed();
    let arp = (macs(), macs(), ips(), ips(), any::<bool>())
        .prop_map(|(d, s, spa, tpa, req)| {
            let mut f = Vec::new();
            let op = if req {
                ArpOperation::Request
            } else {
                ArpOperation::Reply
            };
            arp_frame(
                &mut f,
                d,
                Arp {
                    op,
                    sha: s,
                    spa,
                    tha: MacAddr([0; 6]),
                    tpa,
                },
            );
            f
        })
        .boxed();
    let structured = prop_oneof![ipv4_frame, arp].boxed();
    let corrupted = (
        structured.clone(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut f, i, b, cut)| {
            let at = i.index(f.len());
            f[at] = b;
            let keep = cut.index(f.len() + 1);
            // Cut the tail off (headers stay, so the deeper parsers see short packets).
            if keep >= 14 {
                f.truncate(keep);
            }
            f
        });
    prop_oneof![
        structured,
        corrupted.boxed(),
        prop::collection::vec(any::<u8>(), 0..128)
    ]
    .boxed()
}

fn fabric(mode: Mode) -> (Fabric, Vec<PortId>) {
    let mut f = Fabric::new(FabricConfig {
        mode,
        ..FabricConfig::default()
    })
    .unwrap();
    let mut ids = vec![f
        .add_port(
            "peth0",
            PortKind::Uplink,
            PortConfig {
                port_mac: DD_MAC,
                ..PortConfig::default()
            },
        )
        .unwrap()];
    for d in 1..=3u16 {
        let cfg = PortConfig {
            ips: if mode == Mode::Route {
                vec![Ipv4Address::new(128, 153, 144, 204 + d as u8)]
            } else {
                vec![]
            },
            ..PortConfig::default()
        };
        ids.push(
            f.add_port(
                format!("vif{d}.0"),
                PortKind::Vif { domid: d, devid: 0 },
                cfg,
            )
            .unwrap(),
        );
    }
    (f, ids)
}

fn check(
    mode: Mode,
    inputs: Vec<(prop::sample::Index, Vec<u8>, u16)>,
) -> Result<(), TestCaseError> {
    let (mut f, ids) = fabric(mode);
    let mut out = Collect::default();
    let (mut dropped, mut expected_tx, mut queued) = (0u64, 0u64, 0u64);
    let mut now = Instant::ZERO;
    for (i, frame, dt) in &inputs {
        now += Duration::from_millis(u64::from(*dt % 2000));
        let port = ids[i.index(ids.len())];
        let before = out.0.len() as u64;
        let d = f.input(now, port, frame, &mut out);
        let sent = out.0.len() as u64 - before;
        match d {
            Disposition::Forwarded => prop_assert!(sent >= 1),
            Disposition::Flooded { copies } => {
                prop_assert!(copies >= 1);
                prop_assert_eq!(
                    u64::from(copies),
                    sent,
                    "a flood delivers exactly its copies"
                );
            }
            Disposition::Dropped(_) => dropped += 1,
            Disposition::Queued => queued += 1,
            Disposition::Local => {}
        }
        if mode == Mode::Bridge {
            // The bridge originates nothing: every delivery is a copy of an input.
            let switched = matches!(
                d,
                Disposition::Forwarded | Disposition::Flooded { .. } | Disposition::Dropped(_)
            );
            prop_assert!(switched, "bridge disposition {:?}", d);
            expected_tx += sent;
            if d == Disposition::Forwarded {
                prop_assert_eq!(sent, 1);
            }
            prop_assert!(
                out.0[before as usize..]
                    .iter()
                    .all(|(p, fr)| *p != port && fr == frame),
                "no hairpin, same bytes"
            );
        }
    }
    // Let every pending ARP resolution finish.
    for s in 1..=10 {
        f.poll(now + Duration::from_secs(s), &mut out);
    }
    if let Some(r) = f.router() {
        prop_assert_eq!(r.neighbours().pending_len(), 0);
    }
    let (mut rx, mut drops, mut tx, mut arp_timeouts) = (0, 0, 0, 0);
    for (_, p) in f.ports().iter() {
        rx += p.counters.rx_packets;
        drops += p.counters.dropped_total();
        tx += p.counters.tx_packets;
        arp_timeouts += p.counters.dropped(DropReason::ArpTimeout);
    }
    prop_assert_eq!(rx, inputs.len() as u64, "every input counted as received");
    prop_assert_eq!(
        drops,
        dropped + arp_timeouts,
        "every drop counted once, on its ingress port"
    );
    prop_assert!(arp_timeouts <= queued);
    prop_assert_eq!(tx, out.0.len() as u64, "every delivery counted as sent");
    if mode == Mode::Bridge {
        prop_assert_eq!(tx, expected_tx);
    }
    Ok(())
}

fn inputs() -> impl Strategy<Value = Vec<(prop::sample::Index, Vec<u8>, u16)>> {
    prop::collection::vec(
        (any::<prop::sample::Index>(), frames(), any::<u16>()),
        1..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn bridge_never_panics_and_conserves_frames(inputs in inputs()) {
        check(Mode::Bridge, inputs)?;
    }

    #[test]
    fn router_never_panics_and_accounts_for_every_frame(inputs in inputs()) {
        check(Mode::Route, inputs)?;
    }

    #[test]
    fn nat_never_panics_and_accounts_for_every_frame(inputs in inputs()) {
        check(Mode::Nat, inputs)?;
    }

    #[test]
    fn vif_spec_parser_never_panics(s in ".{0,200}") {
        let _ = xennet_switch::config::parse_vif_spec(&s);
    }

    #[test]
    fn rate_parser_never_panics(s in "[0-9KMGBbs/@mu]{0,20}") {
        let _ = xennet_switch::config::parse_rate(&s);
    }
}
