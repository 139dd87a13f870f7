//! Builders for the frames and packets the driver domain originates itself.
//!
//! Each writes into a caller-owned `Vec<u8>` (cleared first) so hot paths can reuse
//! one buffer instead of allocating per packet.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet,
    IpProtocol, Ipv4Packet, Ipv4Repr,
};

use super::{Ipv4Address, MacAddr, ETH_HLEN};

/// Writes an Ethernet header for `ethertype` followed by `payload` into `buf`.
pub fn eth_frame(
    buf: &mut Vec<u8>,
    dst: MacAddr,
    src: MacAddr,
    ethertype: EthernetProtocol,
    payload: &[u8],
) {
    buf.clear();
    buf.resize(ETH_HLEN, 0);
    let repr = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype,
    };
    repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    buf.extend_from_slice(payload);
}

/// The fields of an Ethernet/IPv4 ARP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    /// Request or reply.
    pub op: ArpOperation,
    /// Sender hardware address.
    pub sha: MacAddr,
    /// Sender protocol address.
    pub spa: Ipv4Address,
    /// Target hardware address (zero in requests).
    pub tha: MacAddr,
    /// Target protocol address.
    pub tpa: Ipv4Address,
}

/// Writes a whole ARP frame (Ethernet header from `arp.sha` to `eth_dst`) into `buf`.
pub fn arp_frame(buf: &mut Vec<u8>, eth_dst: MacAddr, arp: Arp) {
    let repr = ArpRepr::EthernetIpv4 {
        operation: arp.op,
        source_hardware_addr: arp.sha,
        source_protocol_addr: arp.spa,
        target_hardware_addr: arp.tha,
        target_protocol_addr: arp.tpa,
    };
    buf.clear();
    buf.resize(ETH_HLEN + repr.buffer_len(), 0);
    let eth = EthernetRepr {
        src_addr: arp.sha,
        dst_addr: eth_dst,
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    repr.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
}

/// Writes an IPv4 header (no options, TTL 64, checksum filled) and `payload` into `buf`.
pub fn ipv4_packet(
    buf: &mut Vec<u8>,
    src: Ipv4Address,
    dst: Ipv4Address,
    proto: IpProtocol,
    payload: &[u8],
) {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: payload.len(),
        hop_limit: 64,
    };
    buf.clear();
    buf.resize(repr.buffer_len(), 0);
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut buf[..]),
        &ChecksumCapabilities::default(),
    );
    buf.extend_from_slice(payload);
}

/// ICMP types that report errors; no ICMP error is ever sent about one of them.
pub fn is_icmp_error_type(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// Writes an ICMP error IPv4 packet (type/code) quoting `orig` (the offending IPv4
/// packet: its header and the first 8 bytes of its payload, RFC 792) into `buf`.
/// `orig` must be at least a valid IPv4 header; returns false (buf unspecified) if not.
pub fn icmp_error(
    buf: &mut Vec<u8>,
    src: Ipv4Address,
    dst: Ipv4Address,
    icmp_type: u8,
    code: u8,
    orig: &[u8],
) -> bool {
    let Some(pkt) = crate::wire::ipv4_checked(orig) else {
        return false;
    };
    let quote_len = (usize::from(pkt.header_len()) + 8).min(orig.len());
    let mut icmp = vec![0u8; 8 + quote_len];
    icmp[0] = icmp_type;
    icmp[1] = code;
    icmp[8..].copy_from_slice(&orig[..quote_len]);
    let mut p = Icmpv4Packet::new_unchecked(&mut icmp[..]);
    p.fill_checksum();
    ipv4_packet(buf, src, dst, IpProtocol::Icmp, &icmp);
    true
}

/// Turns an ICMP echo request IPv4 packet (already validated by the caller) into the
/// echo reply from `src` in `buf`. Returns false if `req` is not an echo request.
pub fn echo_reply(buf: &mut Vec<u8>, src: Ipv4Address, req: &[u8]) -> bool {
    let Some(pkt) = crate::wire::ipv4_checked(req) else {
        return false;
    };
    if pkt.next_header() != IpProtocol::Icmp || pkt.frag_offset() != 0 || pkt.more_frags() {
        return false;
    }
    let payload = pkt.payload();
    if payload.len() < 8 || payload[0] != 8 {
        return false;
    }
    let mut icmp = payload.to_vec();
    icmp[0] = 0;
    icmp[1] = 0;
    Icmpv4Packet::new_unchecked(&mut icmp[..]).fill_checksum();
    ipv4_packet(buf, src, pkt.src_addr(), IpProtocol::Icmp, &icmp);
    true
}
