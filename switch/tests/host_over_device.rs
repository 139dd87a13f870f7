//! The smoltcp host over a device (`Host::over`, a guest's stack over netfront):
//! echo requests are answered through its ICMP socket, and it asks for a next hop
//! itself, round smoltcp's interface-wide ARP rate limit. A `Wire` stands in for the
//! device.

mod common;

use common::*;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Packet,
};
use xennet_ring::time::Instant;
use xennet_switch::host::{Host, HostConfig, Services, Wire};
use xennet_switch::uplink::Endpoint;
use xennet_switch::wire::Ipv4Address;

const PEER: Ipv4Address = Ipv4Address::new(128, 153, 144, 10);
const OTHER: Ipv4Address = Ipv4Address::new(128, 153, 144, 11);

fn over(cfg: HostConfig) -> Host<Wire> {
    let services = Services::endpoint(&cfg);
    Host::over(Wire::default(), cfg, services, Instant::ZERO).expect("host over a device")
}

fn poll(h: &mut Host<Wire>, now: Instant) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    Endpoint::poll(h, now, &mut |f: &[u8]| sent.push(f.to_vec()));
    sent
}

/// The targets of the ARP requests among `frames`.
fn arp_targets(frames: &[Vec<u8>]) -> Vec<Ipv4Address> {
    frames
        .iter()
        .filter_map(|f| {
            let eth = EthernetFrame::new_checked(&f[..]).ok()?;
            if eth.ethertype() != EthernetProtocol::Arp {
                return None;
            }
            match ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()? {
                ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Request,
                    target_protocol_addr,
                    ..
                } => Some(target_protocol_addr),
                _ => None,
            }
        })
        .collect()
}

/// Sequence numbers of the echo replies among `frames`.
fn echo_replies(frames: &[Vec<u8>]) -> Vec<u16> {
    frames
        .iter()
        .filter_map(|f| ip_of(f))
        .filter_map(|p| {
            let ip = Ipv4Packet::new_checked(&p[..]).ok()?;
            if ip.next_header() != IpProtocol::Icmp {
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

#[test]
fn a_host_over_a_device_answers_echo_through_its_icmp_socket() {
    let mut h = over(HostConfig::sim_uplink());
    let t = Instant::ZERO;
    // The peer introduces itself, then pings.
    h.receive(t, &arp_request(mac(1), PEER, SIM_IP));
    let icmp = icmp_echo(0x77, 5, b"ping");
    let ip = ipv4(PEER, SIM_IP, IpProtocol::Icmp, 64, &icmp);
    h.receive(t, &eth(SIM_MAC, mac(1), EthernetProtocol::Ipv4, &ip));
    let sent = poll(&mut h, t);
    assert_eq!(echo_replies(&sent), [5]);
    // The socket answered, not the per-neighbour responder of a host on a port.
    assert_eq!(h.echo_replies_sent(), 0);
}

#[test]
fn resolve_asks_for_each_next_hop_at_once_on_link_or_through_the_gateway() {
    let mut h = over(HostConfig::sim_uplink());
    let t = Instant::ZERO;
    h.resolve(t, PEER);
    h.resolve(t, OTHER);
    // Off-link without a gateway: there is no next hop to ask for.
    h.resolve(t, Ipv4Address::new(10, 0, 0, 1));
    assert_eq!(arp_targets(&poll(&mut h, t)), [PEER, OTHER]);

    let gw = Ipv4Address::new(128, 153, 144, 1);
    let mut routed = over(HostConfig {
        gateway: Some(gw),
        ..HostConfig::sim_uplink()
    });
    routed.resolve(t, Ipv4Address::new(10, 0, 0, 1));
    assert_eq!(arp_targets(&poll(&mut routed, t)), [gw]);
}
