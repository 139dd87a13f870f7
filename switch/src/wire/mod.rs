//! Frame helpers shared by the switch, the uplinks and the tests.
//!
//! Parsing and emitting is smoltcp's (`smoltcp::wire`); this module adds what smoltcp
//! does not have: colon-separated MAC text, incremental Internet checksum updates
//! (RFC 1624) for in-place header rewrites, and builders for the few frames the
//! driver domain itself originates (ARP, ICMP).
#![deny(unsafe_code)]

pub mod build;
pub mod checksum;

pub use smoltcp::wire::{EthernetAddress as MacAddr, Ipv4Address, Ipv4Cidr};

use core::fmt;

/// The MAC address Linux/Xen backend vif devices carry (`fe:ff:ff:ff:ff:ff`).
pub const VIF_PORT_MAC: MacAddr = MacAddr([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]);

pub use xennet_ring::netif::ETH_HLEN;

/// Displays a MAC address as `00:16:3e:01:02:03` (smoltcp's Display uses dashes).
#[derive(Clone, Copy, Debug)]
pub struct MacFmt(pub MacAddr);

impl fmt::Display for MacFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 .0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// True for the IEEE 802.1D link-local group 01:80:c2:00:00:0X (STP, pause, LACP...),
/// which a bridge must never forward.
pub fn is_link_local_group(mac: MacAddr) -> bool {
    let b = mac.0;
    b[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && b[5] & 0xf0 == 0
}

/// True if `mac` may appear as a frame's source: unicast and not all zeros.
pub fn is_valid_source(mac: MacAddr) -> bool {
    mac.is_unicast() && mac.0 != [0; 6]
}

/// An IPv4 packet whose header can be trusted for offsets: smoltcp's length checks
/// plus version 4 and a header of at least 20 bytes. (smoltcp alone accepts an IHL
/// of 0 with a total length of 0, which the fuzzer found: the router then indexed
/// an empty packet.) Every parse of peer IPv4 headers in the switch goes through it.
pub fn ipv4_checked(buf: &[u8]) -> Option<smoltcp::wire::Ipv4Packet<&[u8]>> {
    let p = smoltcp::wire::Ipv4Packet::new_checked(buf).ok()?;
    (p.version() == 4 && p.header_len() >= 20 && usize::from(p.total_len()) >= 20).then_some(p)
}

/// True for a DHCP client's message (UDP from port 68 to port 67, first fragment),
/// which Xen's vif scripts let a guest send from any source address: it has none yet.
pub fn is_dhcp_request(pkt: &smoltcp::wire::Ipv4Packet<&[u8]>) -> bool {
    let udp = pkt.payload();
    pkt.next_header() == smoltcp::wire::IpProtocol::Udp
        && pkt.frag_offset() == 0
        && udp.len() >= 4
        && udp[..4] == [0, 68, 0, 67]
}

#[cfg(test)]
mod ipv4_tests {
    #[test]
    fn zero_length_headers_are_refused() {
        // Version 4, IHL 0, total length 0: smoltcp accepts it, we do not.
        let mut b = [0u8; 28];
        b[0] = 0x40;
        assert!(smoltcp::wire::Ipv4Packet::new_checked(&b[..]).is_ok());
        assert!(super::ipv4_checked(&b).is_none());
        b[0] = 0x45;
        b[3] = 28;
        assert!(super::ipv4_checked(&b).is_some());
    }
}
