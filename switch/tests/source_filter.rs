//! Antispoofing, as Xen's vif scripts set it up (vif-common.sh's iptables rules): a
//! vif with `ip=` addresses (NAT: also vif-nat's default address) may send IPv4 only
//! from them, and DHCP requests (UDP 68 -> 67); anything else is dropped and counted
//! as `bad_source`. A vif without addresses may send from any.

mod common;

use common::*;
use smoltcp::wire::{EthernetProtocol, IpProtocol};
use xennet_ring::time::Instant;
use xennet_switch::wire::Ipv4Address;
use xennet_switch::{Collect, Disposition, DropReason, Fabric, FabricConfig, Mode, PortConfig};
use xennet_switch::{PortId, PortKind};

const SPOOFED: Ipv4Address = Ipv4Address::new(128, 153, 144, 250);
/// vif-nat's address for domain 1's first vif.
const NAT_GUEST: Ipv4Address = Ipv4Address::new(10, 0, 1, 1);

fn ping(src: Ipv4Address, dst: Ipv4Address) -> Vec<u8> {
    ipv4(src, dst, IpProtocol::Icmp, 64, &icmp_echo(9, 1, b"spoof"))
}

fn dhcp_discover() -> Vec<u8> {
    let bcast = Ipv4Address::BROADCAST;
    ipv4(
        Ipv4Address::UNSPECIFIED,
        bcast,
        IpProtocol::Udp,
        64,
        &udp(Ipv4Address::UNSPECIFIED, bcast, 68, 67, &[0; 240]),
    )
}

/// Sends `ip` from guest 1 (MAC mac(1)) into the routed world's vif, addressed
/// to the router's MAC; returns what became of it and what left through the uplink.
fn from_guest(w: &mut RouteWorld, ip: &[u8]) -> (Disposition, usize) {
    let mut out = Collect::default();
    let frame = eth(VIF_MAC, mac(1), EthernetProtocol::Ipv4, ip);
    let d = w.dd.input(Instant::ZERO, w.vif, &frame, &mut out);
    let up = w.dd.fabric().port(w.uplink).unwrap().counters.tx_packets;
    (d, up as usize)
}

fn bad_source(w: &RouteWorld) -> u64 {
    w.dd.fabric()
        .port(w.vif)
        .unwrap()
        .counters
        .dropped(DropReason::BadSource)
}

#[test]
fn route_mode_drops_ipv4_from_a_vif_whose_source_is_not_among_its_ip_addresses() {
    let mut w = route_world(Mode::Route, true, vec![GUEST_IP], None);
    let (d, up) = from_guest(&mut w, &ping(SPOOFED, SIM_IP));
    assert_eq!(d, Disposition::Dropped(DropReason::BadSource));
    assert_eq!((up, bad_source(&w)), (0, 1), "nothing left through peth0");
    // Its own address goes through (queued while the router resolves the host).
    let (d, _) = from_guest(&mut w, &ping(GUEST_IP, SIM_IP));
    assert_eq!(d, Disposition::Queued);
    // A spoofed packet to the router itself is dropped the same way.
    let (d, _) = from_guest(&mut w, &ping(SPOOFED, DD_IP));
    assert_eq!(d, Disposition::Dropped(DropReason::BadSource));
    // DHCP requests are allowed from anywhere (and find no server here).
    let (d, _) = from_guest(&mut w, &dhcp_discover());
    assert_eq!(d, Disposition::Dropped(DropReason::NoListener));
    assert_eq!(bad_source(&w), 2);
}

#[test]
fn route_mode_vif_without_ip_addresses_may_send_from_any_address() {
    let mut w = route_world(Mode::Route, true, vec![], None);
    let (d, _) = from_guest(&mut w, &ping(SPOOFED, SIM_IP));
    assert_eq!(d, Disposition::Queued);
}

#[test]
fn nat_mode_drops_sources_other_than_the_vifs_own_address() {
    // No ip=: vif-nat's 10.0.1.1 is the guest's only address.
    let mut w = route_world(Mode::Nat, false, vec![], None);
    let (d, up) = from_guest(&mut w, &ping(Ipv4Address::new(10, 0, 1, 2), SIM_IP));
    assert_eq!(d, Disposition::Dropped(DropReason::BadSource));
    assert_eq!((up, bad_source(&w)), (0, 1));
    let (d, _) = from_guest(&mut w, &ping(NAT_GUEST, SIM_IP));
    assert_eq!(d, Disposition::Queued);
    // With ip=, those addresses.
    let mut w = route_world(Mode::Nat, false, vec![Ipv4Address::new(10, 0, 7, 7)], None);
    let (d, _) = from_guest(&mut w, &ping(NAT_GUEST, SIM_IP));
    assert_eq!(d, Disposition::Dropped(DropReason::BadSource));
}

/// A bridge with the uplink and guest 1's vif, its addresses `ips`.
fn bridge(ips: Vec<Ipv4Address>) -> (Fabric, PortId, PortId) {
    let mut f = Fabric::new(FabricConfig::default()).unwrap();
    let up = f
        .add_port("peth0", PortKind::Uplink, PortConfig::default())
        .unwrap();
    let cfg = PortConfig {
        peer_mac: Some(mac(1)),
        ips,
        ..PortConfig::default()
    };
    let vif = f
        .add_port("vif1.0", PortKind::Vif { domid: 1, devid: 0 }, cfg)
        .unwrap();
    (f, up, vif)
}

#[test]
fn bridge_mode_vif_with_ip_addresses_forwards_ipv4_only_from_them() {
    let (mut f, up, vif) = bridge(vec![GUEST_IP]);
    let mut out = Collect::default();
    let t = Instant::ZERO;
    let spoofed = eth(
        SIM_MAC,
        mac(1),
        EthernetProtocol::Ipv4,
        &ping(SPOOFED, SIM_IP),
    );
    assert_eq!(
        f.input(t, vif, &spoofed, &mut out),
        Disposition::Dropped(DropReason::BadSource)
    );
    assert!(out.0.is_empty());
    let own = eth(
        SIM_MAC,
        mac(1),
        EthernetProtocol::Ipv4,
        &ping(GUEST_IP, SIM_IP),
    );
    assert!(matches!(
        f.input(t, vif, &own, &mut out),
        Disposition::Flooded { .. }
    ));
    // ARP and other ethertypes are bridged as before; so is DHCP.
    let arp = arp_request(mac(1), GUEST_IP, SIM_IP);
    assert!(matches!(
        f.input(t, vif, &arp, &mut out),
        Disposition::Flooded { .. }
    ));
    let dhcp = eth(
        smoltcp::wire::EthernetAddress::BROADCAST,
        mac(1),
        EthernetProtocol::Ipv4,
        &dhcp_discover(),
    );
    assert!(matches!(
        f.input(t, vif, &dhcp, &mut out),
        Disposition::Flooded { .. }
    ));
    // The uplink is not filtered.
    let remote = eth(
        mac(1),
        SIM_MAC,
        EthernetProtocol::Ipv4,
        &ping(SPOOFED, GUEST_IP),
    );
    assert_eq!(f.input(t, up, &remote, &mut out), Disposition::Forwarded);
    assert_eq!(
        f.port(vif).unwrap().counters.dropped(DropReason::BadSource),
        1
    );
}

#[test]
fn bridge_mode_vif_without_ip_addresses_is_not_filtered() {
    let (mut f, _, vif) = bridge(vec![]);
    let mut out = Collect::default();
    let spoofed = eth(
        SIM_MAC,
        mac(1),
        EthernetProtocol::Ipv4,
        &ping(SPOOFED, SIM_IP),
    );
    assert!(matches!(
        f.input(Instant::ZERO, vif, &spoofed, &mut out),
        Disposition::Flooded { .. }
    ));
}
