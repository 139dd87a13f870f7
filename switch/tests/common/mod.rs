//! Shared fixtures for the switch tests: frame builders (smoltcp's emitters, so the
//! switch is checked against an independent implementation) and ready-made worlds.
#![allow(dead_code)]

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol,
    Ipv4Packet, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};
use xennet_ring::time::{Duration, Instant};
use xennet_switch::domain::DriverDomain;
use xennet_switch::route::RouterConfig;
use xennet_switch::uplink::host::{Host, HostConfig};
use xennet_switch::wire::build::{arp_frame, eth_frame, Arp};
use xennet_switch::wire::{Ipv4Address, Ipv4Cidr, MacAddr};
use xennet_switch::{Collect, Fabric, FabricConfig, Mode, PortConfig, PortId, PortKind};

pub const DD_IP: Ipv4Address = Ipv4Address::new(128, 153, 144, 204);
pub const SIM_IP: Ipv4Address = Ipv4Address::new(128, 153, 144, 148);
pub const GUEST_IP: Ipv4Address = Ipv4Address::new(128, 153, 144, 205);
pub const SIM_MAC: MacAddr = MacAddr([0x00, 0x04, 0x76, 0x35, 0x0a, 0x72]);
pub const DD_MAC: MacAddr = MacAddr([0x00, 0x16, 0x3e, 0x00, 0x00, 0x01]);
pub const VIF_MAC: MacAddr = MacAddr([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]);

pub fn mac(n: u8) -> MacAddr {
    MacAddr([0x00, 0x16, 0x3e, 0x00, 0x01, n])
}

/// A minimum-size Ethernet frame (payload padded to 46 bytes).
pub fn eth(dst: MacAddr, src: MacAddr, ethertype: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    eth_frame(&mut f, dst, src, ethertype, payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

pub fn arp_request(sha: MacAddr, spa: Ipv4Address, tpa: Ipv4Address) -> Vec<u8> {
    let mut f = Vec::new();
    arp_frame(
        &mut f,
        MacAddr::BROADCAST,
        Arp {
            op: ArpOperation::Request,
            sha,
            spa,
            tha: MacAddr([0; 6]),
            tpa,
        },
    );
    f
}

pub fn arp_reply(sha: MacAddr, spa: Ipv4Address, tha: MacAddr, tpa: Ipv4Address) -> Vec<u8> {
    let mut f = Vec::new();
    arp_frame(
        &mut f,
        tha,
        Arp {
            op: ArpOperation::Reply,
            sha,
            spa,
            tha,
            tpa,
        },
    );
    f
}

/// An IPv4 packet with the given TTL and a correct header checksum.
pub fn ipv4(
    src: Ipv4Address,
    dst: Ipv4Address,
    proto: IpProtocol,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = vec![0u8; 20 + payload.len()];
    let mut pkt = Ipv4Packet::new_unchecked(&mut p[..]);
    pkt.set_version(4);
    pkt.set_header_len(20);
    pkt.set_total_len((20 + payload.len()) as u16);
    pkt.set_ident(0x1234);
    pkt.set_dont_frag(true);
    pkt.set_hop_limit(ttl);
    pkt.set_next_header(proto);
    pkt.set_src_addr(src);
    pkt.set_dst_addr(dst);
    pkt.payload_mut().copy_from_slice(payload);
    pkt.fill_checksum();
    p
}

pub fn icmp_echo(ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest {
        ident,
        seq_no: seq,
        data,
    };
    let mut b = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut b[..]),
        &ChecksumCapabilities::default(),
    );
    b
}

pub fn icmp_echo_reply(ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoReply {
        ident,
        seq_no: seq,
        data,
    };
    let mut b = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut b[..]),
        &ChecksumCapabilities::default(),
    );
    b
}

pub fn udp(src: Ipv4Address, dst: Ipv4Address, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: sport,
        dst_port: dport,
    };
    let mut b = vec![0u8; repr.header_len() + data.len()];
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut b[..]),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(dst),
        data.len(),
        |p| p.copy_from_slice(data),
        &ChecksumCapabilities::default(),
    );
    b
}

pub fn tcp_syn(src: Ipv4Address, dst: Ipv4Address, sport: u16, dport: u16) -> Vec<u8> {
    tcp_segment(src, dst, sport, dport, TcpControl::Syn, None, b"")
}

pub fn tcp_segment(
    src: Ipv4Address,
    dst: Ipv4Address,
    sport: u16,
    dport: u16,
    control: TcpControl,
    ack: Option<i32>,
    data: &[u8],
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: sport,
        dst_port: dport,
        control,
        seq_number: TcpSeqNumber(1000),
        ack_number: ack.map(TcpSeqNumber),
        window_len: 8192,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: data,
    };
    let mut b = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut b[..]),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(dst),
        &ChecksumCapabilities::default(),
    );
    b
}

/// The IPv4 packet inside an Ethernet frame, trimmed to its total length.
pub fn ip_of(frame: &[u8]) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let p = Ipv4Packet::new_checked(eth.payload()).ok()?;
    Some(eth.payload()[..usize::from(p.total_len())].to_vec())
}

/// Frames delivered to `port` that carry IPv4.
pub fn ip_frames_to(out: &Collect, port: PortId) -> Vec<Vec<u8>> {
    out.0
        .iter()
        .filter(|(p, _)| *p == port)
        .filter_map(|(_, f)| ip_of(f))
        .collect()
}

/// Polls the driver domain every 100 ms for `secs` seconds from `now`; returns the end.
pub fn run(dd: &mut DriverDomain, now: Instant, secs: u64, out: &mut Collect) -> Instant {
    let mut t = now;
    let end = now + Duration::from_secs(secs);
    while t < end {
        dd.poll(t, out);
        t += Duration::from_millis(100);
    }
    t
}

/// Ports of a routed world.
pub struct RouteWorld {
    pub dd: DriverDomain,
    pub uplink: PortId,
    pub vif: PortId,
}

pub fn guest_host(ip: Ipv4Address, mac: MacAddr, gateway: Ipv4Address, prefix: u8) -> Host {
    let cfg = HostConfig {
        mac,
        addr: Ipv4Cidr::new(ip, prefix),
        gateway: Some(gateway),
        tcp_echo_port: Some(7),
        udp_echo_port: Some(7),
        seed: 0x6e57,
    };
    Host::new(cfg, Instant::ZERO).expect("guest host")
}

/// Route mode (`vif-route`): peth0 with the simulated host, vif1.0 routing
/// 128.153.144.205; the guest endpoint is attached when `with_guest`.
pub fn route_world(
    mode: Mode,
    proxy_arp_uplink: bool,
    guest_ips: Vec<Ipv4Address>,
    with_guest: Option<Host>,
) -> RouteWorld {
    let cfg = FabricConfig {
        mode,
        router: RouterConfig {
            proxy_arp_uplink,
            ..RouterConfig::default()
        },
        ..FabricConfig::default()
    };
    let mut dd = DriverDomain::new(Fabric::new(cfg).expect("fabric"));
    let up_cfg = PortConfig {
        port_mac: DD_MAC,
        ..PortConfig::default()
    };
    let uplink = dd
        .fabric_mut()
        .add_port("peth0", PortKind::Uplink, up_cfg)
        .expect("uplink");
    dd.attach(
        uplink,
        Box::new(Host::new(HostConfig::sim_uplink(), Instant::ZERO).expect("sim host")),
    );
    let vif_cfg = PortConfig {
        ips: guest_ips,
        peer_mac: Some(mac(1)),
        ..PortConfig::default()
    };
    let vif = dd
        .fabric_mut()
        .add_port("vif1.0", PortKind::Vif { domid: 1, devid: 0 }, vif_cfg)
        .expect("vif");
    if let Some(h) = with_guest {
        dd.attach(vif, Box::new(h));
    }
    RouteWorld { dd, uplink, vif }
}
