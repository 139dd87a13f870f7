//! Route mode (`vif-route`): proxy ARP on the uplink decides whether the remote host
//! and the guest can talk; TTL handling, ICMP errors, ARP resolution and timeouts.

mod common;

use common::*;
use smoltcp::wire::Ipv4Address;
use smoltcp::wire::{EthernetProtocol, Icmpv4Packet, IpProtocol, Ipv4Packet};
use xennet_ring::time::{Duration, Instant};
use xennet_switch::uplink::host::{EchoReply, Host};
use xennet_switch::{Collect, Disposition, DropReason, Mode, PortId};

/// Pings `dst` from the host on `from` once a second, like ping(8); smoltcp drops its
/// automatic echo reply when the requester is not yet in its ARP cache (it sends an
/// ARP request instead), so the first probe of a conversation may go unanswered.
fn ping_series(w: &mut RouteWorld, from: PortId, dst: Ipv4Address, count: u16) -> Vec<EchoReply> {
    let mut out = Collect::default();
    let mut t = Instant::ZERO;
    for seq in 0..count {
        w.dd.endpoint_mut::<Host>(from)
            .unwrap()
            .ping(dst, seq, 32)
            .unwrap();
        t = run(&mut w.dd, t, 1, &mut out);
    }
    w.dd.endpoint_mut::<Host>(from)
        .unwrap()
        .echo_replies()
        .to_vec()
}

fn guest() -> Host {
    // As Xen's routing docs set a guest up: its own address in the segment's /24, the
    // driver domain's address as gateway.
    guest_host(GUEST_IP, mac(1), DD_IP, 24)
}

#[test]
fn guest_ping_to_remote_host_gets_replies_only_with_proxy_arp_on_the_uplink() {
    for proxy in [false, true] {
        let mut w = route_world(Mode::Route, proxy, vec![GUEST_IP], Some(guest()));
        let vif = w.vif;
        let replies = ping_series(&mut w, vif, SIM_IP, 4);
        if proxy {
            assert!(
                replies.len() >= 3,
                "proxy_arp on: replies arrive ({replies:?})"
            );
            assert!(replies.iter().all(|r| r.from == SIM_IP));
        } else {
            assert!(
                replies.is_empty(),
                "proxy_arp off: the remote host's ARP for the guest goes unanswered"
            );
            // The requests did reach the remote host: the router forwarded them.
            assert!(w.dd.fabric().port(w.uplink).unwrap().counters.tx_packets > 0);
        }
    }
}

#[test]
fn remote_host_ping_to_guest_is_answered_only_with_proxy_arp_on_the_uplink() {
    for proxy in [false, true] {
        let mut w = route_world(Mode::Route, proxy, vec![GUEST_IP], Some(guest()));
        let up = w.uplink;
        let replies = ping_series(&mut w, up, GUEST_IP, 4);
        if proxy {
            assert!(replies.len() >= 3, "{replies:?}");
            assert!(replies.iter().all(|r| r.from == GUEST_IP));
            assert!(replies.iter().any(|r| r.seq == 3));
        } else {
            assert!(replies.is_empty());
            assert_eq!(
                w.dd.fabric().port(w.vif).unwrap().counters.tx_packets,
                0,
                "nothing reached the guest"
            );
        }
    }
}

#[test]
fn proxy_arp_can_be_switched_at_run_time() {
    let mut w = route_world(Mode::Route, false, vec![GUEST_IP], Some(guest()));
    let up = w.uplink;
    assert!(ping_series(&mut w, up, GUEST_IP, 2).is_empty());
    assert!(w
        .dd
        .fabric_mut()
        .router_mut()
        .unwrap()
        .set_proxy_arp(up, true));
    let mut out = Collect::default();
    let mut t = Instant::from_secs(10);
    for seq in 10..13 {
        w.dd.endpoint_mut::<Host>(up)
            .unwrap()
            .ping(GUEST_IP, seq, 8)
            .unwrap();
        t = run(&mut w.dd, t, 1, &mut out);
    }
    let replies =
        w.dd.endpoint_mut::<Host>(up)
            .unwrap()
            .echo_replies()
            .to_vec();
    assert!(
        replies.iter().any(|r| r.seq == 12 && r.from == GUEST_IP),
        "{replies:?}"
    );
}

#[test]
fn guest_pings_its_gateway_the_driver_domains_address() {
    let mut w = route_world(Mode::Route, false, vec![GUEST_IP], Some(guest()));
    let mut out = Collect::default();
    w.dd.endpoint_mut::<Host>(w.vif)
        .unwrap()
        .ping(DD_IP, 1, 8)
        .unwrap();
    run(&mut w.dd, Instant::ZERO, 2, &mut out);
    assert_eq!(
        w.dd.endpoint_mut::<Host>(w.vif).unwrap().echo_replies(),
        &[EchoReply {
            from: DD_IP,
            seq: 1
        }]
    );
}

/// A raw routed world: frames are injected on vif1.0 and what the fabric sends to
/// vif1.0 is collected (no guest endpoint).
fn raw() -> RouteWorld {
    route_world(Mode::Route, true, vec![GUEST_IP], None)
}

fn echo_from_guest(dst: smoltcp::wire::Ipv4Address, ttl: u8) -> Vec<u8> {
    let ip = ipv4(
        GUEST_IP,
        dst,
        IpProtocol::Icmp,
        ttl,
        &icmp_echo(1, 1, b"abcdefgh"),
    );
    eth(VIF_MAC, mac(1), EthernetProtocol::Ipv4, &ip)
}

/// Answers the router's ARP request for the guest so queued packets are released.
fn answer_arp_for_guest(w: &mut RouteWorld, now: Instant, out: &mut Collect) {
    let reply = arp_reply(mac(1), GUEST_IP, VIF_MAC, DD_IP);
    assert_eq!(w.dd.input(now, w.vif, &reply, out), Disposition::Local);
}

fn icmp_to_guest(out: &Collect, w: &RouteWorld) -> Vec<(u8, u8, Vec<u8>)> {
    ip_frames_to(out, w.vif)
        .into_iter()
        .filter_map(|ip| {
            let p = Ipv4Packet::new_checked(&ip[..]).ok()?;
            assert!(p.verify_checksum());
            assert_eq!(p.src_addr(), DD_IP);
            assert_eq!(p.dst_addr(), GUEST_IP);
            let icmp = Icmpv4Packet::new_checked(p.payload()).ok()?;
            assert!(icmp.verify_checksum());
            Some((
                icmp.msg_type().into(),
                icmp.msg_code(),
                icmp.data().to_vec(),
            ))
        })
        .collect()
}

#[test]
fn ttl_1_is_dropped_with_icmp_time_exceeded_quoting_the_packet() {
    let mut w = raw();
    let mut out = Collect::default();
    let f = echo_from_guest(SIM_IP, 1);
    assert_eq!(
        w.dd.input(Instant::ZERO, w.vif, &f, &mut out),
        Disposition::Dropped(DropReason::TtlExceeded)
    );
    // The error waits for the guest's MAC: the router asks on vif1.0.
    assert!(out
        .0
        .iter()
        .any(|(p, fr)| *p == w.vif && fr[12..14] == [0x08, 0x06]));
    answer_arp_for_guest(&mut w, Instant::ZERO, &mut out);
    let errs = icmp_to_guest(&out, &w);
    assert_eq!(errs.len(), 1);
    let (t, c, quoted) = &errs[0];
    assert_eq!((*t, *c), (11, 0));
    let orig = ip_of(&f).unwrap();
    assert_eq!(
        &quoted[..28],
        &orig[..28],
        "original header and 8 bytes quoted"
    );
    assert_eq!(
        w.dd.fabric()
            .port(w.vif)
            .unwrap()
            .counters
            .dropped(DropReason::TtlExceeded),
        1
    );
}

#[test]
fn forwarded_packet_has_ttl_decremented_and_a_valid_checksum() {
    let mut w = raw();
    let mut out = Collect::default();
    // The router resolves the sim host by ARP, then forwards; the sim host resolves
    // the guest's address (proxy ARP on the uplink) while its first reply waits.
    let d =
        w.dd.input(Instant::ZERO, w.vif, &echo_from_guest(SIM_IP, 2), &mut out);
    assert_eq!(d, Disposition::Queued);
    answer_arp_for_guest(&mut w, Instant::ZERO, &mut out);
    let d = w.dd.input(
        Instant::from_secs(1),
        w.vif,
        &echo_from_guest(SIM_IP, 2),
        &mut out,
    );
    assert_eq!(d, Disposition::Forwarded);
    let to_guest = ip_frames_to(&out, w.vif);
    assert_eq!(to_guest.len(), 2, "both echo replies routed back");
    for f in &to_guest {
        let p = Ipv4Packet::new_checked(&f[..]).unwrap();
        assert_eq!(p.src_addr(), SIM_IP);
        assert_eq!(p.hop_limit(), 63, "sim host sent TTL 64, one hop");
        assert!(p.verify_checksum());
    }
    let up = w.dd.fabric().port(w.uplink).unwrap().counters;
    assert_eq!(
        up.rx_packets, 4,
        "ARP reply, ARP request for the guest, two echo replies"
    );
}

#[test]
fn no_route_gets_icmp_net_unreachable() {
    let mut w = raw();
    let mut out = Collect::default();
    answer_arp_for_guest(&mut w, Instant::ZERO, &mut out);
    let f = echo_from_guest(smoltcp::wire::Ipv4Address::new(192, 0, 2, 1), 64);
    assert_eq!(
        w.dd.input(Instant::ZERO, w.vif, &f, &mut out),
        Disposition::Dropped(DropReason::NoRoute)
    );
    let errs = icmp_to_guest(&out, &w);
    assert_eq!((errs[0].0, errs[0].1), (3, 0));
}

#[test]
fn unresolvable_next_hop_is_dropped_after_arp_retries_with_host_unreachable() {
    let mut w = raw();
    let mut out = Collect::default();
    answer_arp_for_guest(&mut w, Instant::ZERO, &mut out);
    let silent = smoltcp::wire::Ipv4Address::new(128, 153, 144, 99);
    assert_eq!(
        w.dd.input(Instant::ZERO, w.vif, &echo_from_guest(silent, 64), &mut out),
        Disposition::Queued
    );
    run(&mut w.dd, Instant::ZERO, 4, &mut out);
    assert_eq!(
        w.dd.fabric()
            .port(w.vif)
            .unwrap()
            .counters
            .dropped(DropReason::ArpTimeout),
        1
    );
    let errs = icmp_to_guest(&out, &w);
    assert_eq!((errs[0].0, errs[0].1), (3, 1));
}

#[test]
fn ip_forward_off_drops_transit_traffic_but_the_router_still_answers_pings() {
    let mut w = raw();
    let mut out = Collect::default();
    w.dd.fabric_mut()
        .router_mut()
        .unwrap()
        .set_ip_forward(false);
    answer_arp_for_guest(&mut w, Instant::ZERO, &mut out);
    let d =
        w.dd.input(Instant::ZERO, w.vif, &echo_from_guest(SIM_IP, 64), &mut out);
    assert_eq!(d, Disposition::Dropped(DropReason::ForwardingDisabled));
    assert_eq!(
        w.dd.input(Instant::ZERO, w.vif, &echo_from_guest(DD_IP, 64), &mut out),
        Disposition::Local
    );
    let replies = ip_frames_to(&out, w.vif);
    assert_eq!(replies.len(), 1);
    let p = Ipv4Packet::new_checked(&replies[0][..]).unwrap();
    assert_eq!((p.src_addr(), p.dst_addr()), (DD_IP, GUEST_IP));
}

#[test]
fn router_answers_arp_for_its_address_on_the_vif_and_proxies_remote_addresses() {
    let mut w = raw();
    let mut out = Collect::default();
    for (target, expect) in [(DD_IP, true), (SIM_IP, true), (GUEST_IP, false)] {
        out.0.clear();
        let req = arp_request(mac(1), GUEST_IP, target);
        assert_eq!(
            w.dd.input(Instant::ZERO, w.vif, &req, &mut out),
            Disposition::Local
        );
        let replies: Vec<_> = out
            .0
            .iter()
            .filter(|(p, f)| *p == w.vif && f[12..14] == [0x08, 0x06])
            .collect();
        assert_eq!(!replies.is_empty(), expect, "ARP for {target}");
        if expect {
            let f = &replies[0].1;
            assert_eq!(
                &f[22..28],
                &VIF_MAC.0,
                "sender hardware address is the vif's"
            );
            assert_eq!(&f[28..32], &target.octets());
        }
    }
}

#[test]
fn frames_not_addressed_to_the_router_and_garbage_are_dropped_not_panicked_on() {
    let mut w = raw();
    let mut out = Collect::default();
    let other = eth(
        mac(7),
        mac(1),
        EthernetProtocol::Ipv4,
        &ipv4(GUEST_IP, SIM_IP, IpProtocol::Udp, 64, &[0; 8]),
    );
    assert_eq!(
        w.dd.input(Instant::ZERO, w.vif, &other, &mut out),
        Disposition::Dropped(DropReason::NotForUs)
    );
    let mut bad_csum = echo_from_guest(SIM_IP, 64);
    bad_csum[24] ^= 0xff;
    assert_eq!(
        w.dd.input(Instant::ZERO, w.vif, &bad_csum, &mut out),
        Disposition::Dropped(DropReason::Malformed)
    );
    let ipv6 = eth(VIF_MAC, mac(1), EthernetProtocol::Ipv6, &[0x60; 40]);
    assert_eq!(
        w.dd.input(Instant::ZERO, w.vif, &ipv6, &mut out),
        Disposition::Dropped(DropReason::Unsupported)
    );
    let short_arp = eth(VIF_MAC, mac(1), EthernetProtocol::Arp, &[0; 4]);
    assert!(matches!(
        w.dd.input(Instant::ZERO, w.vif, &short_arp[..18], &mut out),
        Disposition::Dropped(_)
    ));
    let _ = w.dd.input(
        Instant::ZERO + Duration::from_secs(1),
        w.vif,
        &[0xff; 14],
        &mut out,
    );
}
