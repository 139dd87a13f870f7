//! NAT mode (`vif-nat`): guests on 10.<domid>.x behind the driver domain's address,
//! with connection tracking for TCP, UDP and ICMP echo; checksums are checked with
//! smoltcp's parsers.

mod common;

use common::*;
use smoltcp::wire::{
    EthernetProtocol, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, TcpControl,
    TcpPacket, UdpPacket,
};
use xennet_ring::time::{Duration, Instant};
use xennet_switch::uplink::host::Host;
use xennet_switch::{
    Collect, Disposition, DropReason, Fabric, FabricConfig, Mode, PortConfig, PortId, PortKind,
};

const G1: Ipv4Address = Ipv4Address::new(10, 0, 1, 1);
const G1_GW: Ipv4Address = Ipv4Address::new(10, 0, 1, 128);
const G2: Ipv4Address = Ipv4Address::new(10, 0, 2, 1);
const G2_GW: Ipv4Address = Ipv4Address::new(10, 0, 2, 128);

#[test]
fn vif_nat_default_addresses_follow_the_hotplug_script() {
    use xennet_switch::route::{vif_nat_guest_ip, vif_nat_router_ip};
    assert_eq!(vif_nat_guest_ip(1, 0), Some(G1));
    assert_eq!(
        vif_nat_guest_ip(258, 1),
        Some(Ipv4Address::new(10, 1, 2, 2))
    );
    assert_eq!(vif_nat_router_ip(G1), Some(G1_GW));
    assert_eq!(vif_nat_router_ip(Ipv4Address::new(10, 0, 0, 200)), None);
    let w = route_world(Mode::Nat, false, vec![], None);
    let r = w.dd.fabric().router().unwrap();
    assert_eq!(r.iface(w.vif).unwrap().addr, G1_GW);
    assert_eq!(r.lookup(G1).unwrap().port, w.vif);
}

fn nat_world() -> RouteWorld {
    route_world(
        Mode::Nat,
        false,
        vec![],
        Some(guest_host(G1, mac(1), G1_GW, 16)),
    )
}

#[test]
fn guest_pings_the_remote_host_through_nat() {
    let mut w = nat_world();
    let mut out = Collect::default();
    let mut t = Instant::ZERO;
    for seq in 0..3 {
        w.dd.endpoint_mut::<Host>(w.vif)
            .unwrap()
            .ping(SIM_IP, seq, 24)
            .unwrap();
        t = run(&mut w.dd, t, 1, &mut out);
    }
    let replies =
        w.dd.endpoint_mut::<Host>(w.vif)
            .unwrap()
            .echo_replies()
            .to_vec();
    assert!(
        replies.len() >= 2 && replies.iter().all(|r| r.from == SIM_IP),
        "{replies:?}"
    );
}

#[test]
fn guest_tcp_connection_to_the_echo_port_works_through_nat() {
    let mut w = nat_world();
    let mut out = Collect::default();
    let h =
        w.dd.endpoint_mut::<Host>(w.vif)
            .unwrap()
            .tcp_connect((SIM_IP, 7), 40000)
            .unwrap();
    let mut t = run(&mut w.dd, Instant::ZERO, 3, &mut out);
    assert!(w.dd.endpoint_mut::<Host>(w.vif).unwrap().tcp_established(h));
    w.dd.endpoint_mut::<Host>(w.vif)
        .unwrap()
        .tcp_send(h, b"hello through nat")
        .unwrap();
    t = run(&mut w.dd, t, 2, &mut out);
    let _ = t;
    assert_eq!(
        w.dd.endpoint_mut::<Host>(w.vif).unwrap().tcp_recv(h),
        b"hello through nat"
    );
    let flows: Vec<_> =
        w.dd.fabric()
            .router()
            .unwrap()
            .nat()
            .unwrap()
            .flows()
            .copied()
            .collect();
    assert!(flows
        .iter()
        .any(|f| f.inside == (G1, 40000) && f.remote == (SIM_IP, 7)));
}

#[test]
fn guest_udp_datagram_is_echoed_back_through_nat() {
    let mut w = nat_world();
    let mut out = Collect::default();
    let g = w.dd.endpoint_mut::<Host>(w.vif).unwrap();
    let s = g.udp_bind(5353).unwrap();
    g.udp_send(s, (SIM_IP, 7), b"ping over udp").unwrap();
    let mut t = run(&mut w.dd, Instant::ZERO, 2, &mut out);
    // The first datagram may be lost while the sim host resolves us (see route tests).
    w.dd.endpoint_mut::<Host>(w.vif)
        .unwrap()
        .udp_send(s, (SIM_IP, 7), b"ping over udp")
        .unwrap();
    t = run(&mut w.dd, t, 2, &mut out);
    let _ = t;
    let got = w.dd.endpoint_mut::<Host>(w.vif).unwrap().udp_recv(s);
    assert!(!got.is_empty());
    assert!(got
        .iter()
        .all(|(d, from)| d == b"ping over udp" && *from == (SIM_IP, 7)));
}

/// A raw NAT fabric: two guests, the uplink; neighbours resolved by injected ARP.
struct Raw {
    f: Fabric,
    up: PortId,
    v1: PortId,
    v2: PortId,
    out: Collect,
}

fn raw() -> Raw {
    let mut f = Fabric::new(FabricConfig {
        mode: Mode::Nat,
        ..FabricConfig::default()
    })
    .unwrap();
    let up = f
        .add_port(
            "peth0",
            PortKind::Uplink,
            PortConfig {
                port_mac: DD_MAC,
                ..PortConfig::default()
            },
        )
        .unwrap();
    let v1 = f
        .add_port(
            "vif1.0",
            PortKind::Vif { domid: 1, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    let v2 = f
        .add_port(
            "vif2.0",
            PortKind::Vif { domid: 2, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    let mut out = Collect::default();
    // Everyone asks the router for its own address: the router learns them.
    f.input(
        Instant::ZERO,
        up,
        &arp_request(SIM_MAC, SIM_IP, DD_IP),
        &mut out,
    );
    f.input(Instant::ZERO, v1, &arp_request(mac(1), G1, G1_GW), &mut out);
    f.input(Instant::ZERO, v2, &arp_request(mac(2), G2, G2_GW), &mut out);
    out.0.clear();
    Raw { f, up, v1, v2, out }
}

impl Raw {
    fn send_from_guest(
        &mut self,
        port: PortId,
        gmac: smoltcp::wire::EthernetAddress,
        ip: Vec<u8>,
    ) -> Disposition {
        self.out.0.clear();
        let fr = eth(VIF_MAC, gmac, EthernetProtocol::Ipv4, &ip);
        self.f.input(Instant::ZERO, port, &fr, &mut self.out)
    }

    fn send_from_remote(&mut self, now: Instant, ip: Vec<u8>) -> Disposition {
        self.out.0.clear();
        let fr = eth(DD_MAC, SIM_MAC, EthernetProtocol::Ipv4, &ip);
        self.f.input(now, self.up, &fr, &mut self.out)
    }

    fn sent_to(&self, port: PortId) -> Vec<u8> {
        let v = ip_frames_to(&self.out, port);
        assert_eq!(v.len(), 1, "one packet to {port}");
        v.into_iter().next().unwrap()
    }
}

fn check_ip(ip: &[u8], src: Ipv4Address, dst: Ipv4Address, ttl: u8) {
    let p = Ipv4Packet::new_checked(ip).unwrap();
    assert!(p.verify_checksum(), "IPv4 header checksum");
    assert_eq!((p.src_addr(), p.dst_addr(), p.hop_limit()), (src, dst, ttl));
}

#[test]
fn udp_is_translated_both_ways_with_valid_checksums() {
    let mut r = raw();
    let d = r.send_from_guest(
        r.v1,
        mac(1),
        ipv4(
            G1,
            SIM_IP,
            IpProtocol::Udp,
            64,
            &udp(G1, SIM_IP, 5000, 53, b"query"),
        ),
    );
    assert_eq!(d, Disposition::Forwarded);
    let out = r.sent_to(r.up);
    check_ip(&out, DD_IP, SIM_IP, 63);
    let p = Ipv4Packet::new_checked(&out[..]).unwrap();
    let u = UdpPacket::new_checked(p.payload()).unwrap();
    assert!(
        u.verify_checksum(&IpAddress::Ipv4(DD_IP), &IpAddress::Ipv4(SIM_IP)),
        "UDP checksum incl. pseudo-header"
    );
    assert_eq!(
        (u.src_port(), u.dst_port(), u.payload()),
        (5000, 53, &b"query"[..]),
        "free port kept"
    );

    let d = r.send_from_remote(
        Instant::ZERO,
        ipv4(
            SIM_IP,
            DD_IP,
            IpProtocol::Udp,
            64,
            &udp(SIM_IP, DD_IP, 53, 5000, b"answer"),
        ),
    );
    assert_eq!(d, Disposition::Forwarded);
    let back = r.sent_to(r.v1);
    check_ip(&back, SIM_IP, G1, 63);
    let p = Ipv4Packet::new_checked(&back[..]).unwrap();
    let u = UdpPacket::new_checked(p.payload()).unwrap();
    assert!(u.verify_checksum(&IpAddress::Ipv4(SIM_IP), &IpAddress::Ipv4(G1)));
    assert_eq!(
        (u.src_port(), u.dst_port(), u.payload()),
        (53, 5000, &b"answer"[..])
    );
}

#[test]
fn udp_without_checksum_keeps_zero() {
    let mut r = raw();
    let mut l4 = udp(G1, SIM_IP, 5000, 53, b"x");
    l4[6] = 0;
    l4[7] = 0;
    r.send_from_guest(r.v1, mac(1), ipv4(G1, SIM_IP, IpProtocol::Udp, 64, &l4));
    let out = r.sent_to(r.up);
    assert_eq!(&out[26..28], &[0, 0]);
}

#[test]
fn tcp_from_two_guests_with_the_same_port_gets_distinct_external_ports() {
    let mut r = raw();
    let mut ext = Vec::new();
    for (port, m, g) in [(r.v1, mac(1), G1), (r.v2, mac(2), G2)] {
        r.send_from_guest(
            port,
            m,
            ipv4(
                g,
                SIM_IP,
                IpProtocol::Tcp,
                64,
                &tcp_syn(g, SIM_IP, 40000, 7),
            ),
        );
        let out = r.sent_to(r.up);
        check_ip(&out, DD_IP, SIM_IP, 63);
        let p = Ipv4Packet::new_checked(&out[..]).unwrap();
        let t = TcpPacket::new_checked(p.payload()).unwrap();
        assert!(
            t.verify_checksum(&IpAddress::Ipv4(DD_IP), &IpAddress::Ipv4(SIM_IP)),
            "TCP checksum"
        );
        assert!(t.syn());
        ext.push(t.src_port());
    }
    assert_eq!(ext[0], 40000);
    assert_ne!(ext[0], ext[1]);
    // The SYN-ACK to the second external port reaches the second guest.
    let synack = tcp_segment(SIM_IP, DD_IP, 7, ext[1], TcpControl::Syn, Some(1001), b"");
    assert_eq!(
        r.send_from_remote(
            Instant::ZERO,
            ipv4(SIM_IP, DD_IP, IpProtocol::Tcp, 64, &synack)
        ),
        Disposition::Forwarded
    );
    let back = r.sent_to(r.v2);
    check_ip(&back, SIM_IP, G2, 63);
    let p = Ipv4Packet::new_checked(&back[..]).unwrap();
    let t = TcpPacket::new_checked(p.payload()).unwrap();
    assert!(t.verify_checksum(&IpAddress::Ipv4(SIM_IP), &IpAddress::Ipv4(G2)));
    assert_eq!((t.src_port(), t.dst_port()), (7, 40000));
}

#[test]
fn icmp_echo_identifier_is_translated_both_ways() {
    let mut r = raw();
    r.send_from_guest(
        r.v1,
        mac(1),
        ipv4(
            G1,
            SIM_IP,
            IpProtocol::Icmp,
            64,
            &icmp_echo(0x4242, 1, b"data"),
        ),
    );
    let out = r.sent_to(r.up);
    check_ip(&out, DD_IP, SIM_IP, 63);
    let p = Ipv4Packet::new_checked(&out[..]).unwrap();
    let i = Icmpv4Packet::new_checked(p.payload()).unwrap();
    assert!(i.verify_checksum());
    let ident = i.echo_ident();
    let reply = icmp_echo_reply(ident, 1, b"data");
    assert_eq!(
        r.send_from_remote(
            Instant::ZERO,
            ipv4(SIM_IP, DD_IP, IpProtocol::Icmp, 64, &reply)
        ),
        Disposition::Forwarded
    );
    let back = r.sent_to(r.v1);
    check_ip(&back, SIM_IP, G1, 63);
    let p = Ipv4Packet::new_checked(&back[..]).unwrap();
    let i = Icmpv4Packet::new_checked(p.payload()).unwrap();
    assert!(i.verify_checksum());
    assert_eq!((i.echo_ident(), i.echo_seq_no()), (0x4242, 1));
}

#[test]
fn inbound_without_a_connection_or_from_another_remote_is_dropped() {
    let mut r = raw();
    let stray = udp(SIM_IP, DD_IP, 53, 5000, b"stray");
    assert_eq!(
        r.send_from_remote(
            Instant::ZERO,
            ipv4(SIM_IP, DD_IP, IpProtocol::Udp, 64, &stray)
        ),
        Disposition::Dropped(DropReason::NatNoMapping)
    );
    r.send_from_guest(
        r.v1,
        mac(1),
        ipv4(
            G1,
            SIM_IP,
            IpProtocol::Udp,
            64,
            &udp(G1, SIM_IP, 5000, 53, b"q"),
        ),
    );
    let wrong_port = udp(SIM_IP, DD_IP, 54, 5000, b"spoof");
    assert_eq!(
        r.send_from_remote(
            Instant::ZERO,
            ipv4(SIM_IP, DD_IP, IpProtocol::Udp, 64, &wrong_port)
        ),
        Disposition::Dropped(DropReason::NatNoMapping)
    );
    assert!(r.out.0.is_empty());
}

#[test]
fn udp_mapping_expires_after_its_timeout() {
    let mut r = raw();
    r.send_from_guest(
        r.v1,
        mac(1),
        ipv4(
            G1,
            SIM_IP,
            IpProtocol::Udp,
            64,
            &udp(G1, SIM_IP, 5000, 53, b"q"),
        ),
    );
    let later = Instant::ZERO + Duration::from_secs(31);
    r.f.poll(later, &mut r.out);
    assert_eq!(r.f.router().unwrap().nat().unwrap().len(), 0);
    let reply = udp(SIM_IP, DD_IP, 53, 5000, b"late");
    assert_eq!(
        r.send_from_remote(later, ipv4(SIM_IP, DD_IP, IpProtocol::Udp, 64, &reply)),
        Disposition::Dropped(DropReason::NatNoMapping)
    );
}

#[test]
fn fragments_and_non_echo_icmp_are_not_translated() {
    let mut r = raw();
    let mut frag = ipv4(
        G1,
        SIM_IP,
        IpProtocol::Udp,
        64,
        &udp(G1, SIM_IP, 5000, 53, b"frag"),
    );
    {
        let mut p = Ipv4Packet::new_unchecked(&mut frag[..]);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        p.fill_checksum();
    }
    assert_eq!(
        r.send_from_guest(r.v1, mac(1), frag),
        Disposition::Dropped(DropReason::NatUnsupported)
    );
    let mut unreach = icmp_echo(1, 1, &[0; 28]);
    unreach[0] = 3;
    let mut ic = Icmpv4Packet::new_unchecked(&mut unreach[..]);
    ic.fill_checksum();
    assert_eq!(
        r.send_from_guest(
            r.v1,
            mac(1),
            ipv4(G1, SIM_IP, IpProtocol::Icmp, 64, &unreach)
        ),
        Disposition::Dropped(DropReason::NatUnsupported)
    );
}

#[test]
fn remote_host_can_ping_the_driver_domain_address_in_nat_mode() {
    let mut r = raw();
    let d = r.send_from_remote(
        Instant::ZERO,
        ipv4(SIM_IP, DD_IP, IpProtocol::Icmp, 64, &icmp_echo(7, 7, b"hi")),
    );
    assert_eq!(d, Disposition::Local);
    let reply = r.sent_to(r.up);
    check_ip(&reply, DD_IP, SIM_IP, 64);
}

#[test]
fn ip_forward_off_stops_translated_traffic_both_ways() {
    let mut r = raw();
    r.send_from_guest(
        r.v1,
        mac(1),
        ipv4(
            G1,
            SIM_IP,
            IpProtocol::Udp,
            64,
            &udp(G1, SIM_IP, 5000, 53, b"q"),
        ),
    );
    r.f.router_mut().unwrap().set_ip_forward(false);
    let reply = udp(SIM_IP, DD_IP, 53, 5000, b"a");
    assert_eq!(
        r.send_from_remote(
            Instant::ZERO,
            ipv4(SIM_IP, DD_IP, IpProtocol::Udp, 64, &reply)
        ),
        Disposition::Dropped(DropReason::ForwardingDisabled)
    );
    let again = ipv4(
        G1,
        SIM_IP,
        IpProtocol::Udp,
        64,
        &udp(G1, SIM_IP, 5000, 53, b"q"),
    );
    assert_eq!(
        r.send_from_guest(r.v1, mac(1), again),
        Disposition::Dropped(DropReason::ForwardingDisabled)
    );
}
