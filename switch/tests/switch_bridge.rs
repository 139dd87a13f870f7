//! Bridge mode: learning, ageing, flooding, no hairpin, and the brctl views.

mod common;

use common::*;
use smoltcp::wire::EthernetProtocol;
use xennet_ring::time::{Duration, Instant};
use xennet_switch::bridge::BridgeConfig;
use xennet_switch::wire::MacAddr;
use xennet_switch::{
    brctl, Collect, Disposition, DropReason, Fabric, FabricConfig, PortConfig, PortId, PortKind,
};

fn bridge_with(n: u16) -> (Fabric, Vec<PortId>) {
    let mut f = Fabric::new(FabricConfig::default()).unwrap();
    let ids = (1..=n)
        .map(|d| {
            f.add_port(
                format!("vif{d}.0"),
                PortKind::Vif { domid: d, devid: 0 },
                PortConfig::default(),
            )
            .unwrap()
        })
        .collect();
    (f, ids)
}

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    eth(dst, src, EthernetProtocol::Ipv4, &[0x45; 46])
}

fn ports_of(out: &Collect) -> Vec<PortId> {
    out.0.iter().map(|(p, _)| *p).collect()
}

#[test]
fn broadcast_is_flooded_to_every_port_but_the_ingress_one() {
    let (mut f, p) = bridge_with(3);
    let mut out = Collect::default();
    let d = f.input(
        Instant::ZERO,
        p[0],
        &frame(MacAddr::BROADCAST, mac(1)),
        &mut out,
    );
    assert_eq!(d, Disposition::Flooded { copies: 2 });
    assert_eq!(ports_of(&out), vec![p[1], p[2]]);
    assert!(
        out.0
            .iter()
            .all(|(_, fr)| *fr == frame(MacAddr::BROADCAST, mac(1))),
        "the same bytes go out"
    );
}

#[test]
fn unknown_unicast_is_flooded_and_counted_then_learned_unicast_goes_to_one_port() {
    let (mut f, p) = bridge_with(3);
    let mut out = Collect::default();
    let d = f.input(Instant::ZERO, p[0], &frame(mac(2), mac(1)), &mut out);
    assert_eq!(d, Disposition::Flooded { copies: 2 });
    assert_eq!(f.port(p[0]).unwrap().counters.unknown_unicast_flooded, 1);
    // mac(2) answers from port 1: learned; the reply goes to port 0 only.
    out.0.clear();
    let d = f.input(
        Instant::from_secs(1),
        p[1],
        &frame(mac(1), mac(2)),
        &mut out,
    );
    assert_eq!(d, Disposition::Forwarded);
    assert_eq!(ports_of(&out), vec![p[0]]);
    out.0.clear();
    assert_eq!(
        f.input(
            Instant::from_secs(2),
            p[0],
            &frame(mac(2), mac(1)),
            &mut out
        ),
        Disposition::Forwarded
    );
    assert_eq!(ports_of(&out), vec![p[1]]);
}

#[test]
fn multicast_is_flooded() {
    let (mut f, p) = bridge_with(3);
    let mut out = Collect::default();
    let mcast = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
    f.input(Instant::ZERO, p[2], &frame(mcast, mac(1)), &mut out);
    assert_eq!(ports_of(&out), vec![p[0], p[1]]);
}

#[test]
fn unicast_to_a_mac_learned_on_the_ingress_port_is_not_sent_back() {
    let (mut f, p) = bridge_with(2);
    let mut out = Collect::default();
    f.input(
        Instant::ZERO,
        p[0],
        &frame(MacAddr::BROADCAST, mac(1)),
        &mut out,
    );
    f.input(
        Instant::ZERO,
        p[0],
        &frame(MacAddr::BROADCAST, mac(2)),
        &mut out,
    );
    out.0.clear();
    let d = f.input(Instant::ZERO, p[0], &frame(mac(2), mac(1)), &mut out);
    assert_eq!(d, Disposition::Dropped(DropReason::Hairpin));
    assert!(out.0.is_empty());
    assert_eq!(
        f.port(p[0]).unwrap().counters.dropped(DropReason::Hairpin),
        1
    );
}

#[test]
fn learned_macs_age_out_after_the_ageing_time() {
    let cfg = FabricConfig {
        bridge: BridgeConfig {
            ageing: Duration::from_secs(10),
            ..BridgeConfig::default()
        },
        ..Default::default()
    };
    let mut f = Fabric::new(cfg).unwrap();
    let a = f
        .add_port(
            "vif1.0",
            PortKind::Vif { domid: 1, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    let b = f
        .add_port(
            "vif2.0",
            PortKind::Vif { domid: 2, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    let c = f
        .add_port(
            "vif3.0",
            PortKind::Vif { domid: 3, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    let mut out = Collect::default();
    f.input(
        Instant::ZERO,
        b,
        &frame(MacAddr::BROADCAST, mac(2)),
        &mut out,
    );
    assert_eq!(f.poll_at(), Some(Instant::from_secs(10)));
    out.0.clear();
    assert_eq!(
        f.input(
            Instant::from_millis(9_999),
            a,
            &frame(mac(2), mac(1)),
            &mut out
        ),
        Disposition::Forwarded
    );
    out.0.clear();
    let d = f.input(Instant::from_secs(10), a, &frame(mac(2), mac(1)), &mut out);
    assert_eq!(
        d,
        Disposition::Flooded { copies: 2 },
        "aged out: unknown again"
    );
    assert_eq!(ports_of(&out), vec![b, c]);
    f.poll(Instant::from_secs(20), &mut out);
    assert_eq!(
        f.bridge().unwrap().entries(Instant::from_secs(20)).count(),
        0
    );
}

#[test]
fn a_mac_moving_to_another_port_is_relearned() {
    let (mut f, p) = bridge_with(3);
    let mut out = Collect::default();
    f.input(
        Instant::ZERO,
        p[0],
        &frame(MacAddr::BROADCAST, mac(9)),
        &mut out,
    );
    f.input(
        Instant::from_secs(1),
        p[2],
        &frame(MacAddr::BROADCAST, mac(9)),
        &mut out,
    );
    assert_eq!(
        f.bridge().unwrap().lookup(mac(9), Instant::from_secs(1)),
        Some(p[2])
    );
}

#[test]
fn removing_a_port_forgets_its_macs() {
    let (mut f, p) = bridge_with(3);
    let mut out = Collect::default();
    f.input(
        Instant::ZERO,
        p[1],
        &frame(MacAddr::BROADCAST, mac(2)),
        &mut out,
    );
    f.remove_port(p[1]);
    assert_eq!(f.bridge().unwrap().lookup(mac(2), Instant::ZERO), None);
    out.0.clear();
    assert_eq!(
        f.input(Instant::ZERO, p[0], &frame(mac(2), mac(1)), &mut out),
        Disposition::Flooded { copies: 1 }
    );
    assert_eq!(ports_of(&out), vec![p[2]]);
    // Frames for the removed port's id are refused, not panicked on.
    assert_eq!(
        f.input(Instant::ZERO, p[1], &frame(mac(1), mac(2)), &mut out),
        Disposition::Dropped(DropReason::NoEgress)
    );
}

#[test]
fn invalid_sources_runts_and_link_local_groups_are_dropped_with_reasons() {
    let (mut f, p) = bridge_with(2);
    let mut out = Collect::default();
    assert_eq!(
        f.input(Instant::ZERO, p[0], &[0u8; 13], &mut out),
        Disposition::Dropped(DropReason::Malformed)
    );
    let mcast_src = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);
    assert_eq!(
        f.input(Instant::ZERO, p[0], &frame(mac(2), mcast_src), &mut out),
        Disposition::Dropped(DropReason::BadSource)
    );
    let stp = MacAddr([0x01, 0x80, 0xc2, 0, 0, 0]);
    assert_eq!(
        f.input(Instant::ZERO, p[0], &frame(stp, mac(1)), &mut out),
        Disposition::Dropped(DropReason::Filtered)
    );
    assert!(out.0.is_empty());
    let c = f.port(p[0]).unwrap().counters;
    assert_eq!((c.rx_packets, c.dropped_total()), (3, 3));
}

#[test]
fn counters_record_rx_and_tx_bytes() {
    let (mut f, p) = bridge_with(2);
    let mut out = Collect::default();
    let fr = frame(MacAddr::BROADCAST, mac(1));
    f.input(Instant::ZERO, p[0], &fr, &mut out);
    let (a, b) = (
        f.port(p[0]).unwrap().counters,
        f.port(p[1]).unwrap().counters,
    );
    assert_eq!(
        (a.rx_packets, a.rx_bytes, a.tx_packets),
        (1, fr.len() as u64, 0)
    );
    assert_eq!(
        (b.tx_packets, b.tx_bytes, b.rx_packets),
        (1, fr.len() as u64, 0)
    );
}

#[test]
fn learning_table_is_bounded() {
    let cfg = FabricConfig {
        bridge: BridgeConfig {
            max_entries: 4,
            ..BridgeConfig::default()
        },
        ..Default::default()
    };
    let mut f = Fabric::new(cfg).unwrap();
    let a = f
        .add_port(
            "vif1.0",
            PortKind::Vif { domid: 1, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    f.add_port(
        "vif2.0",
        PortKind::Vif { domid: 2, devid: 0 },
        PortConfig::default(),
    )
    .unwrap();
    let mut out = Collect::default();
    for i in 0..10 {
        f.input(
            Instant::ZERO,
            a,
            &frame(MacAddr::BROADCAST, mac(i)),
            &mut out,
        );
    }
    assert_eq!(f.bridge().unwrap().entries(Instant::ZERO).count(), 4);
    assert_eq!(f.bridge().unwrap().learn_refused(), 6);
}

fn xen_bridge() -> (Fabric, PortId, PortId, PortId) {
    let mut f = Fabric::new(FabricConfig::default()).unwrap();
    let up = f
        .add_port("peth0", PortKind::Uplink, PortConfig::default())
        .unwrap();
    let local = f
        .add_port("vif0.0", PortKind::Local, PortConfig::default())
        .unwrap();
    let v = f
        .add_port(
            "vif1.0",
            PortKind::Vif { domid: 1, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    (f, up, local, v)
}

#[test]
fn brctl_show_matches_bridge_utils_format() {
    let (f, ..) = xen_bridge();
    assert_eq!(
        brctl::show(&f),
        "bridge name\tbridge id\t\tSTP enabled\tinterfaces\n\
         xenbr0\t\t8000.feffffffffff\tno\t\tpeth0\n\
         \t\t\t\t\t\t\tvif0.0\n\
         \t\t\t\t\t\t\tvif1.0\n"
    );
}

#[test]
fn brctl_bridge_id_uses_the_lowest_port_mac() {
    let mut f = Fabric::new(FabricConfig::default()).unwrap();
    assert_eq!(brctl::bridge_id(&f), "8000.000000000000");
    assert_eq!(
        brctl::show(&f),
        "bridge name\tbridge id\t\tSTP enabled\tinterfaces\nxenbr0\t\t8000.000000000000\tno\t\t\n"
    );
    f.add_port(
        "vif1.0",
        PortKind::Vif { domid: 1, devid: 0 },
        PortConfig::default(),
    )
    .unwrap();
    let low = PortConfig {
        port_mac: MacAddr([0x00, 0x16, 0x3e, 0x0a, 0x0b, 0x0c]),
        ..PortConfig::default()
    };
    f.add_port("peth0", PortKind::Uplink, low).unwrap();
    assert_eq!(brctl::bridge_id(&f), "8000.00163e0a0b0c");
}

#[test]
fn brctl_showmacs_lists_local_and_learned_entries_sorted_by_mac() {
    let (mut f, up, _local, v) = xen_bridge();
    let mut out = Collect::default();
    f.input(
        Instant::from_secs(10),
        up,
        &frame(MacAddr::BROADCAST, SIM_MAC),
        &mut out,
    );
    f.input(
        Instant::from_millis(12_500),
        v,
        &frame(MacAddr::BROADCAST, mac(1)),
        &mut out,
    );
    let text = brctl::showmacs(&f, "xenbr0", Instant::from_millis(15_250)).unwrap();
    assert_eq!(
        text,
        "port no\tmac addr\t\tis local?\tageing timer\n\
         \x20 1\t00:04:76:35:0a:72\tno\t\t   5.25\n\
         \x20 3\t00:16:3e:00:01:01\tno\t\t   2.75\n\
         \x20 1\tfe:ff:ff:ff:ff:ff\tyes\t\t   0.00\n"
    );
    assert_eq!(
        brctl::showmacs(&f, "xenbr1", Instant::ZERO),
        Err(brctl::BrctlError::NoSuchBridge("xenbr1".into()))
    );
}

#[test]
fn custom_bridge_name_is_shown() {
    let cfg = FabricConfig {
        bridge: BridgeConfig {
            name: "br-test".into(),
            ..BridgeConfig::default()
        },
        ..Default::default()
    };
    let f = Fabric::new(cfg).unwrap();
    assert!(brctl::show(&f)
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("br-test\t\t"));
    assert!(brctl::showmacs(&f, "br-test", Instant::ZERO).is_ok());
}

#[test]
fn port_names_are_validated_and_unique() {
    let (mut f, ..) = bridge_with(1);
    let k = PortKind::Vif { domid: 9, devid: 0 };
    assert!(f.add_port("vif1.0", k, PortConfig::default()).is_err());
    assert!(f.add_port("", k, PortConfig::default()).is_err());
    assert!(f
        .add_port("a-name-that-is-too-long", k, PortConfig::default())
        .is_err());
    assert!(f.add_port("has space", k, PortConfig::default()).is_err());
    f.add_port("peth0", PortKind::Uplink, PortConfig::default())
        .unwrap();
    assert!(f
        .add_port("peth1", PortKind::Uplink, PortConfig::default())
        .is_err());
}

#[test]
fn guest_pings_the_driver_domain_stack_and_the_sim_host_through_the_bridge() {
    use xennet_switch::domain::DriverDomain;
    use xennet_switch::uplink::host::{Host, HostConfig};
    let mut dd = DriverDomain::new(Fabric::new(FabricConfig::default()).unwrap());
    let up = dd
        .fabric_mut()
        .add_port("peth0", PortKind::Uplink, PortConfig::default())
        .unwrap();
    let local = dd
        .fabric_mut()
        .add_port("vif0.0", PortKind::Local, PortConfig::default())
        .unwrap();
    let vif = dd
        .fabric_mut()
        .add_port(
            "vif1.0",
            PortKind::Vif { domid: 1, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    dd.attach(
        up,
        Box::new(Host::new(HostConfig::sim_uplink(), Instant::ZERO).unwrap()),
    );
    dd.attach(
        local,
        Box::new(Host::new(HostConfig::driver_domain(DD_MAC), Instant::ZERO).unwrap()),
    );
    dd.attach(vif, Box::new(guest_host(GUEST_IP, mac(1), DD_IP, 24)));
    let mut out = Collect::default();
    let mut t = Instant::ZERO;
    for seq in 0..3 {
        let g = dd
            .endpoint_mut::<xennet_switch::uplink::host::Host>(vif)
            .unwrap();
        g.ping(DD_IP, seq, 8).unwrap();
        g.ping(SIM_IP, 100 + seq, 8).unwrap();
        t = run(&mut dd, t, 1, &mut out);
    }
    let replies = dd
        .endpoint_mut::<Host>(vif)
        .unwrap()
        .echo_replies()
        .to_vec();
    assert!(replies.iter().any(|r| r.from == DD_IP), "{replies:?}");
    assert!(replies.iter().any(|r| r.from == SIM_IP), "{replies:?}");
    // Everyone was learned on their port.
    let b = dd.fabric().bridge().unwrap();
    assert_eq!(b.lookup(SIM_MAC, t), Some(up));
    assert_eq!(b.lookup(DD_MAC, t), Some(local));
    assert_eq!(b.lookup(mac(1), t), Some(vif));
    dd.remove_port(vif);
    assert_eq!(dd.fabric().bridge().unwrap().lookup(mac(1), t), None);
}
