//! Echo requests to a [`Host`](super::Host): [`EchoRequest`], one taken out of a
//! frame before smoltcp sees it, and [`EchoResponder`], the replies of a host on a
//! switch port, each waiting for its own next hop.
//!
//! smoltcp sends an ICMP socket's packets in order and keeps the first one queued
//! while its destination is being resolved, so a single sender that never answers
//! ARP (a guest pinging with a spoofed source address) held every later reply behind
//! its own, for every sender. Here a reply to a resolved neighbour goes out at once;
//! a reply to an unresolved one waits in that neighbour's queue of the router's
//! [`NeighbourTable`]: bounded per neighbour and in neighbours, asked for at once and
//! then every second, given up on after three requests (as the router gives up on a
//! next hop). Every reply not sent is counted by [`DropReason`].
//!
//! Neighbours are learnt as Linux learns them: from an ARP request or reply aimed at
//! the host's address, and refreshed by any ARP from a neighbour already known.

use smoltcp::socket::icmp;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv4Repr,
    IpAddress, IpProtocol, Ipv4Packet,
};
use xennet_ring::time::Instant;

use crate::arp::{ArpConfig, Enqueued, NeighbourTable, Waiting};
use crate::wire::build::{arp_frame, echo_reply, eth_frame, Arp};
use crate::wire::{ipv4_checked, is_valid_source, Ipv4Address, Ipv4Cidr, MacAddr};
use crate::{DropReason, PortId};

/// An ICMP echo request to the host, taken out of a frame before smoltcp sees it:
/// who asked, and the request's id, sequence and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchoRequest {
    /// The sender.
    pub from: Ipv4Address,
    /// Its identifier.
    pub ident: u16,
    /// Its sequence number.
    pub seq: u16,
    /// Its payload.
    pub data: Vec<u8>,
}

impl EchoRequest {
    /// `frame` if it is an ICMP echo request to `mac`/`addr` (not fragmented; IP and
    /// ICMP checksums verified).
    pub fn parse(frame: &[u8], mac: MacAddr, addr: Ipv4Address) -> Option<EchoRequest> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.dst_addr() != mac || eth.ethertype() != EthernetProtocol::Ipv4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        if ip.dst_addr() != addr
            || ip.next_header() != IpProtocol::Icmp
            || !ip.verify_checksum()
            || ip.more_frags()
            || ip.frag_offset() != 0
        {
            return None;
        }
        let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
        match Icmpv4Repr::parse(&icmp, &Default::default()).ok()? {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => Some(EchoRequest {
                from: ip.src_addr(),
                ident,
                seq: seq_no,
                data: data.to_vec(),
            }),
            _ => None,
        }
    }

    /// Queue the reply on `sock` (sent once the sender's address is resolved).
    /// False if the socket's buffer is full.
    pub fn answer(&self, sock: &mut icmp::Socket<'_>) -> bool {
        let repr = Icmpv4Repr::EchoReply {
            ident: self.ident,
            seq_no: self.seq,
            data: &self.data,
        };
        match sock.send(repr.buffer_len(), IpAddress::Ipv4(self.from)) {
            Ok(buf) => {
                repr.emit(
                    &mut Icmpv4Packet::new_unchecked(buf),
                    &smoltcp::phy::ChecksumCapabilities::default(),
                );
                true
            }
            Err(_) => false,
        }
    }
}

/// A host has one interface; its neighbours are kept under this id.
const IFACE: PortId = PortId(0);

/// Answers ICMP echo requests without letting one neighbour hold up another.
#[derive(Debug)]
pub struct EchoResponder {
    mac: MacAddr,
    addr: Ipv4Cidr,
    gateway: Option<Ipv4Address>,
    neigh: NeighbourTable,
    sent: u64,
    drops: [u64; DropReason::ALL.len()],
    /// Scratch: the reply packet, then the frame around it.
    packet: Vec<u8>,
    frame: Vec<u8>,
}

impl EchoResponder {
    /// The responder of the host at `mac` and `addr`, routing off-link senders to
    /// `gateway`.
    pub fn new(mac: MacAddr, addr: Ipv4Cidr, gateway: Option<Ipv4Address>) -> Self {
        EchoResponder {
            mac,
            addr,
            gateway,
            neigh: NeighbourTable::new(ArpConfig::default()),
            sent: 0,
            drops: [0; DropReason::ALL.len()],
            packet: Vec::new(),
            frame: Vec::new(),
        }
    }

    /// Echo replies sent.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Echo replies given up on for `reason`: `arp_timeout` (the next hop never
    /// answered), `queue_full` (too many waiting for it, or too many neighbours
    /// being resolved), `no_route` (an off-link sender and no gateway), `bad_source`
    /// (a broadcast, multicast or unspecified sender).
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Neighbours being resolved.
    pub fn pending(&self) -> usize {
        self.neigh.pending_len()
    }

    /// Answers the ICMP echo request `req` (an IPv4 packet to this host's address);
    /// frames to send go to `tx`.
    pub fn request(&mut self, now: Instant, req: &[u8], tx: &mut dyn FnMut(&[u8])) {
        let Some(pkt) = ipv4_checked(req) else {
            return;
        };
        let src = pkt.src_addr();
        if src.is_unspecified()
            || src.is_broadcast()
            || src.is_multicast()
            || self.addr.broadcast() == Some(src)
        {
            self.count(DropReason::BadSource);
            return;
        }
        if !echo_reply(&mut self.packet, self.addr.address(), req) {
            return;
        }
        let next_hop = if self.addr.contains_addr(&src) {
            src
        } else if let Some(gw) = self.gateway {
            gw
        } else {
            self.count(DropReason::NoRoute);
            return;
        };
        if let Some(mac) = self.neigh.lookup(IFACE, next_hop, now) {
            let packet = std::mem::take(&mut self.packet);
            self.send(mac, &packet, tx);
            self.packet = packet;
            return;
        }
        let w = Waiting {
            packet: std::mem::take(&mut self.packet),
            origin: None,
        };
        match self.neigh.enqueue(IFACE, next_hop, w, now) {
            Enqueued::FirstProbe => self.ask(next_hop, tx),
            Enqueued::Queued => {}
            Enqueued::Full(_) => self.count(DropReason::QueueFull),
        }
    }

    /// Learns from an ARP frame the host received; replies that were waiting for
    /// the sender go out to `tx`.
    pub fn arp(&mut self, now: Instant, frame: &[u8], tx: &mut dyn FnMut(&[u8])) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        let Ok(pkt) = ArpPacket::new_checked(eth.payload()) else {
            return;
        };
        let Ok(ArpRepr::EthernetIpv4 {
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_protocol_addr: tpa,
            ..
        }) = ArpRepr::parse(&pkt)
        else {
            return;
        };
        let me = self.addr.address();
        if !is_valid_source(sha)
            || spa.is_unspecified()
            || spa.is_broadcast()
            || spa.is_multicast()
            || spa == me
        {
            return;
        }
        if tpa == me || self.neigh.known(IFACE, spa) {
            for w in self.neigh.insert(IFACE, spa, sha, now) {
                self.send(sha, &w.packet, tx);
            }
        }
    }

    /// Timers: asks again for neighbours still unresolved, gives up (counted) on
    /// those that never answered.
    pub fn poll(&mut self, now: Instant, tx: &mut dyn FnMut(&[u8])) {
        let ex = self.neigh.poll(now);
        for (_, ip) in ex.reprobe {
            self.ask(ip, tx);
        }
        for _ in ex.failed {
            self.count(DropReason::ArpTimeout);
        }
    }

    /// When [`poll`](Self::poll) next has work.
    pub fn poll_at(&self) -> Option<Instant> {
        self.neigh.poll_at()
    }

    fn count(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }

    fn send(&mut self, dst: MacAddr, packet: &[u8], tx: &mut dyn FnMut(&[u8])) {
        eth_frame(
            &mut self.frame,
            dst,
            self.mac,
            EthernetProtocol::Ipv4,
            packet,
        );
        tx(&self.frame);
        self.sent += 1;
    }

    fn ask(&mut self, ip: Ipv4Address, tx: &mut dyn FnMut(&[u8])) {
        arp_frame(
            &mut self.frame,
            MacAddr::BROADCAST,
            Arp {
                op: ArpOperation::Request,
                sha: self.mac,
                spa: self.addr.address(),
                tha: MacAddr([0; 6]),
                tpa: ip,
            },
        );
        tx(&self.frame);
    }
}
