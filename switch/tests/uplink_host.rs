//! The smoltcp host (the sim uplink, the driver domain's own stack): echo replies
//! wait for their own next hop only, so one neighbour that never answers ARP never
//! holds up the replies to anyone else.

mod common;

use common::*;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Packet,
};
use xennet_ring::time::{Duration, Instant};
use xennet_switch::domain::DriverDomain;
use xennet_switch::uplink::host::{Host, HostConfig};
use xennet_switch::uplink::Endpoint;
use xennet_switch::wire::{Ipv4Address, Ipv4Cidr, MacAddr};
use xennet_switch::{Collect, DropReason, Fabric, FabricConfig, PortConfig, PortKind};

const SPOOFED: Ipv4Address = Ipv4Address::new(128, 153, 144, 250);

fn sim() -> Host {
    Host::new(HostConfig::sim_uplink(), Instant::ZERO).expect("sim host")
}

fn echo_request(src_mac: MacAddr, src: Ipv4Address, seq: u16) -> Vec<u8> {
    let icmp = icmp_echo(0x77, seq, b"ping");
    eth(
        SIM_MAC,
        src_mac,
        EthernetProtocol::Ipv4,
        &ipv4(src, SIM_IP, IpProtocol::Icmp, 64, &icmp),
    )
}

/// What the host sends when it runs at `now`.
fn poll(h: &mut Host, now: Instant) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    h.poll(now, &mut |f: &[u8]| sent.push(f.to_vec()));
    sent
}

/// Sequence numbers of the echo replies among `frames` addressed to `to`.
fn replies_to(frames: &[Vec<u8>], to: Ipv4Address) -> Vec<u16> {
    frames
        .iter()
        .filter_map(|f| ip_of(f))
        .filter_map(|p| {
            let ip = Ipv4Packet::new_checked(&p[..]).ok()?;
            if ip.dst_addr() != to || ip.next_header() != IpProtocol::Icmp {
                return None;
            }
            let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
            match Icmpv4Repr::parse(&icmp, &Default::default()).ok()? {
                Icmpv4Repr::EchoReply { seq_no, .. } => Some(seq_no),
                _ => None,
            }
        })
        .collect()
}

/// How many of `frames` are ARP requests for `ip`.
fn arp_requests_for(frames: &[Vec<u8>], ip: Ipv4Address) -> usize {
    frames
        .iter()
        .filter(|f| {
            let Ok(eth) = EthernetFrame::new_checked(&f[..]) else {
                return false;
            };
            if eth.ethertype() != EthernetProtocol::Arp {
                return false;
            }
            let Ok(pkt) = ArpPacket::new_checked(eth.payload()) else {
                return false;
            };
            matches!(
                ArpRepr::parse(&pkt),
                Ok(ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Request,
                    target_protocol_addr,
                    ..
                }) if target_protocol_addr == ip
            )
        })
        .count()
}

#[test]
fn a_sender_that_never_answers_arp_does_not_hold_up_echo_replies_to_others() {
    let mut h = sim();
    let mut t = Instant::ZERO;
    // A guest pings with a source address nobody owns: the host asks for it.
    h.receive(t, &echo_request(mac(9), SPOOFED, 1));
    let mut sent = poll(&mut h, t);
    // Guest 1 resolves the host (its ARP request) and pings every 100 ms for 10 s:
    // every request is answered in the pass it arrived in.
    h.receive(t, &arp_request(mac(1), GUEST_IP, SIM_IP));
    sent.extend(poll(&mut h, t));
    for seq in 0..100 {
        t += Duration::from_millis(100);
        h.receive(t, &echo_request(mac(1), GUEST_IP, seq));
        let now = poll(&mut h, t);
        assert_eq!(replies_to(&now, GUEST_IP), vec![seq], "reply to seq {seq}");
        sent.extend(now);
    }
    assert!(replies_to(&sent, SPOOFED).is_empty());
    // Asked for three times, a second apart, then given up on and counted.
    assert_eq!(arp_requests_for(&sent, SPOOFED), 3);
    assert_eq!(h.echo_replies_dropped(DropReason::ArpTimeout), 1);
    assert_eq!(h.echo_replies_sent(), 100);
}

#[test]
fn a_reply_waits_for_the_senders_arp_answer_and_then_goes_out() {
    let mut h = sim();
    let t = Instant::ZERO;
    h.receive(t, &echo_request(mac(1), GUEST_IP, 1));
    let asked = poll(&mut h, t);
    assert_eq!(arp_requests_for(&asked, GUEST_IP), 1);
    assert!(replies_to(&asked, GUEST_IP).is_empty());
    let t = t + Duration::from_millis(300);
    h.receive(t, &arp_reply(mac(1), GUEST_IP, SIM_MAC, SIM_IP));
    let sent = poll(&mut h, t);
    assert_eq!(replies_to(&sent, GUEST_IP), vec![1]);
    let eth = EthernetFrame::new_checked(&sent[0][..]).unwrap();
    assert_eq!((eth.dst_addr(), eth.src_addr()), (mac(1), SIM_MAC));
    // Nothing is left to give up on.
    poll(&mut h, t + Duration::from_secs(5));
    assert_eq!(h.echo_replies_dropped(DropReason::ArpTimeout), 0);
}

#[test]
fn replies_waiting_for_one_neighbour_are_bounded_and_every_one_is_counted() {
    let mut h = sim();
    let t = Instant::ZERO;
    for seq in 0..20 {
        h.receive(t, &echo_request(mac(9), SPOOFED, seq));
    }
    poll(&mut h, t);
    // Eight wait (the router's queue per neighbour); the rest are refused.
    assert_eq!(h.echo_replies_dropped(DropReason::QueueFull), 12);
    for ms in (100..=5000).step_by(100) {
        poll(&mut h, t + Duration::from_millis(ms));
    }
    assert_eq!(h.echo_replies_dropped(DropReason::ArpTimeout), 8);
    assert_eq!(h.echo_replies_sent(), 0);
}

#[test]
fn neighbours_being_resolved_are_bounded_and_a_known_one_is_still_answered_at_once() {
    let cfg = HostConfig {
        addr: Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 1), 16),
        ..HostConfig::sim_uplink()
    };
    let me = cfg.addr.address();
    let mut h = Host::new(cfg, Instant::ZERO).unwrap();
    let t = Instant::ZERO;
    let request = |src: Ipv4Address, seq: u16| {
        let icmp = icmp_echo(0x77, seq, b"ping");
        eth(
            SIM_MAC,
            mac(9),
            EthernetProtocol::Ipv4,
            &ipv4(src, me, IpProtocol::Icmp, 64, &icmp),
        )
    };
    for i in 0..300u16 {
        let src = Ipv4Address::new(10, 0, 1 + (i / 200) as u8, (i % 200) as u8 + 1);
        h.receive(t, &request(src, i));
    }
    poll(&mut h, t);
    // 256 neighbours at most are being resolved; the other 44 replies are refused.
    assert_eq!(h.echo_replies_dropped(DropReason::QueueFull), 44);
    let friend = Ipv4Address::new(10, 0, 9, 9);
    h.receive(t, &arp_request(mac(1), friend, me));
    h.receive(t, &request(friend, 7));
    assert_eq!(replies_to(&poll(&mut h, t), friend), vec![7]);
    // A reply to a sender off the host's subnet, with no gateway, has no route.
    h.receive(t, &request(Ipv4Address::new(192, 0, 2, 1), 8));
    poll(&mut h, t);
    assert_eq!(h.echo_replies_dropped(DropReason::NoRoute), 1);
}

#[test]
fn one_guests_spoofed_ping_through_the_bridge_does_not_stall_another_guests_pings() {
    let mut dd = DriverDomain::new(Fabric::new(FabricConfig::default()).unwrap());
    let up = dd
        .fabric_mut()
        .add_port("peth0", PortKind::Uplink, PortConfig::default())
        .unwrap();
    let spoofer = dd
        .fabric_mut()
        .add_port(
            "vif1.0",
            PortKind::Vif { domid: 1, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    let vif = dd
        .fabric_mut()
        .add_port(
            "vif2.0",
            PortKind::Vif { domid: 2, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    dd.attach(up, Box::new(sim()));
    dd.attach(vif, Box::new(guest_host(GUEST_IP, mac(2), DD_IP, 24)));
    let mut out = Collect::default();
    let mut t = Instant::ZERO;
    dd.input(t, spoofer, &echo_request(mac(1), SPOOFED, 1), &mut out);
    for seq in 0..5 {
        dd.endpoint_mut::<Host>(vif)
            .unwrap()
            .ping(SIM_IP, seq, 8)
            .unwrap();
        t = run(&mut dd, t, 1, &mut out);
    }
    let replies = dd
        .endpoint_mut::<Host>(vif)
        .unwrap()
        .echo_replies()
        .to_vec();
    // The first may wait for ARP; none waits behind the spoofed sender's reply.
    assert!(
        replies.iter().filter(|r| r.from == SIM_IP).count() >= 4,
        "{replies:?}"
    );
}
