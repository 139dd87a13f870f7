//! The router's IPv4 path: local delivery, forwarding, ICMP errors, transmission.

use smoltcp::wire::{IpProtocol, Ipv4Packet};
use xennet_ring::time::Instant;

use super::Router;
use crate::arp::{Enqueued, Waiting};
use crate::nat::Inbound;
use crate::wire::build::{echo_reply, icmp_error, is_icmp_error_type};
use crate::wire::checksum;
use crate::wire::{is_dhcp_request, Ipv4Address};
use crate::{Disposition, DropReason, Output, PortId};
use crate::{PortKind, PortTable};

/// Offsets in the IPv4 header.
const TTL: usize = 8;
const CSUM: usize = 10;

impl Router {
    pub(super) fn ipv4_input(
        &mut self,
        ports: &mut PortTable,
        now: Instant,
        ingress: PortId,
        payload: &[u8],
        out: &mut dyn Output,
    ) -> Disposition {
        let Some(pkt) = crate::wire::ipv4_checked(payload) else {
            return Disposition::Dropped(DropReason::Malformed);
        };
        if pkt.version() != 4 || !pkt.verify_checksum() {
            return Disposition::Dropped(DropReason::Malformed);
        }
        // Drop Ethernet padding: the packet is what its total length says.
        let ip = &payload[..usize::from(pkt.total_len())];
        let (src, dst) = (pkt.src_addr(), pkt.dst_addr());
        if src.is_multicast() || src.is_broadcast() || self.is_uplink_broadcast(src) {
            return Disposition::Dropped(DropReason::BadSource);
        }
        if !self.source_permitted(ports, ingress, &pkt) {
            return Disposition::Dropped(DropReason::BadSource);
        }
        if self.nat.is_some()
            && Some(ingress) == self.uplink
            && dst == self.cfg.uplink_addr.address()
        {
            let mut owned = ip.to_vec();
            let verdict = match &mut self.nat {
                Some(nat) => nat.inbound(&mut owned, now),
                None => Inbound::NotApplicable,
            };
            match verdict {
                Inbound::Translated if !self.cfg.ip_forward => {
                    return Disposition::Dropped(DropReason::ForwardingDisabled)
                }
                Inbound::Translated => return self.forward(ports, now, ingress, owned, out),
                Inbound::NoMapping => return Disposition::Dropped(DropReason::NatNoMapping),
                Inbound::NotApplicable => {}
            }
        }
        if self.is_local(dst) || dst.is_broadcast() || self.is_uplink_broadcast(dst) {
            return self.local_input(ports, now, ingress, ip, out);
        }
        if dst.is_multicast() {
            return Disposition::Dropped(DropReason::Filtered);
        }
        if !self.cfg.ip_forward {
            return Disposition::Dropped(DropReason::ForwardingDisabled);
        }
        self.forward(ports, now, ingress, ip.to_vec(), out)
    }

    /// Xen's antispoofing (vif-common.sh, for vif-route and vif-nat): a vif with
    /// addresses routed to it (its `ip=`, or vif-nat's default) may send only from
    /// them, or DHCP requests; a vif without any, from anywhere.
    fn source_permitted(
        &self,
        ports: &PortTable,
        ingress: PortId,
        pkt: &Ipv4Packet<&[u8]>,
    ) -> bool {
        if !ports
            .get(ingress)
            .is_some_and(|p| matches!(p.kind, PortKind::Vif { .. }))
        {
            return true;
        }
        let mut own = self
            .routes
            .iter()
            .filter(|r| r.port == ingress && r.net.prefix_len() == 32)
            .map(|r| r.net.address())
            .peekable();
        own.peek().is_none() || own.any(|a| a == pkt.src_addr()) || is_dhcp_request(pkt)
    }

    fn forward(
        &mut self,
        ports: &mut PortTable,
        now: Instant,
        ingress: PortId,
        mut packet: Vec<u8>,
        out: &mut dyn Output,
    ) -> Disposition {
        let ttl = packet[TTL];
        if ttl <= 1 {
            self.icmp_error(ports, now, out, ingress, &packet, (11, 0));
            return Disposition::Dropped(DropReason::TtlExceeded);
        }
        let view = Ipv4Packet::new_unchecked(&packet[..]);
        let (src, dst) = (view.src_addr(), view.dst_addr());
        let Some(route) = self.lookup(dst) else {
            self.icmp_error(ports, now, out, ingress, &packet, (3, 0));
            return Disposition::Dropped(DropReason::NoRoute);
        };
        let old = u16::from_be_bytes([packet[TTL], packet[TTL + 1]]);
        packet[TTL] = ttl - 1;
        let new = u16::from_be_bytes([packet[TTL], packet[TTL + 1]]);
        let csum = checksum::update16(
            u16::from_be_bytes([packet[CSUM], packet[CSUM + 1]]),
            old,
            new,
        );
        packet[CSUM..CSUM + 2].copy_from_slice(&csum.to_be_bytes());
        if Some(route.port) == self.uplink && !self.is_local(src) {
            if let Some(nat) = &mut self.nat {
                if let Err(reason) = nat.outbound(&mut packet, now) {
                    return Disposition::Dropped(reason);
                }
            }
        }
        let next_hop = route.gateway.unwrap_or(dst);
        self.transmit(
            ports,
            now,
            out,
            route.port,
            next_hop,
            Waiting {
                packet,
                origin: Some(ingress),
            },
        )
    }

    fn local_input(
        &mut self,
        ports: &mut PortTable,
        now: Instant,
        ingress: PortId,
        ip: &[u8],
        out: &mut dyn Output,
    ) -> Disposition {
        let pkt = Ipv4Packet::new_unchecked(ip);
        let dst = pkt.dst_addr();
        let unicast = self.is_local(dst);
        match pkt.next_header() {
            IpProtocol::Icmp if unicast => {
                let mut reply = Vec::new();
                if echo_reply(&mut reply, dst, ip) {
                    self.send_ip(ports, now, out, reply);
                    Disposition::Local
                } else {
                    Disposition::Dropped(DropReason::NoListener)
                }
            }
            IpProtocol::Udp if unicast => {
                self.icmp_error(ports, now, out, ingress, ip, (3, 3));
                Disposition::Dropped(DropReason::NoListener)
            }
            // Broadcast pings are ignored, as Linux's icmp_echo_ignore_broadcasts does.
            _ => Disposition::Dropped(DropReason::NoListener),
        }
    }

    /// Sends an ICMP error about `orig` (which came in on `ingress`) to its source,
    /// unless RFC 1812 forbids it (errors about errors, non-first fragments, broadcast
    /// or multicast, or a source that is one of ours).
    pub(super) fn icmp_error(
        &mut self,
        ports: &mut PortTable,
        now: Instant,
        out: &mut dyn Output,
        ingress: PortId,
        orig: &[u8],
        (icmp_type, code): (u8, u8),
    ) {
        let Some(pkt) = crate::wire::ipv4_checked(orig) else {
            return;
        };
        let (src, dst) = (pkt.src_addr(), pkt.dst_addr());
        if src.is_unspecified() || src.is_multicast() || src.is_broadcast() || self.is_local(src) {
            return;
        }
        if dst.is_multicast() || dst.is_broadcast() || pkt.frag_offset() != 0 {
            return;
        }
        if pkt.next_header() == IpProtocol::Icmp
            && pkt
                .payload()
                .first()
                .is_some_and(|t| is_icmp_error_type(*t))
        {
            return;
        }
        let Some(from) = self.ifaces.get(&ingress).map(|i| i.addr) else {
            return;
        };
        let mut packet = Vec::new();
        if icmp_error(&mut packet, from, src, icmp_type, code, orig) {
            self.send_ip(ports, now, out, packet);
        }
    }

    /// Routes and sends a packet the router originates.
    fn send_ip(
        &mut self,
        ports: &mut PortTable,
        now: Instant,
        out: &mut dyn Output,
        packet: Vec<u8>,
    ) {
        let dst = Ipv4Packet::new_unchecked(&packet[..]).dst_addr();
        if let Some(route) = self.lookup(dst) {
            let nh = route.gateway.unwrap_or(dst);
            self.transmit(
                ports,
                now,
                out,
                route.port,
                nh,
                Waiting {
                    packet,
                    origin: None,
                },
            );
        }
    }

    fn transmit(
        &mut self,
        ports: &mut PortTable,
        now: Instant,
        out: &mut dyn Output,
        egress: PortId,
        next_hop: Ipv4Address,
        w: Waiting,
    ) -> Disposition {
        let Some(iface) = self.ifaces.get(&egress).copied() else {
            return Disposition::Dropped(DropReason::NoRoute);
        };
        if let Some(mac) = self.neigh.lookup(egress, next_hop, now) {
            return if self.send_frame(ports, out, egress, iface.mac, mac, &w.packet) {
                Disposition::Forwarded
            } else {
                Disposition::Dropped(DropReason::NoEgress)
            };
        }
        match self.neigh.enqueue(egress, next_hop, w, now) {
            Enqueued::FirstProbe => {
                self.send_arp_request(ports, out, egress, next_hop);
                Disposition::Queued
            }
            Enqueued::Queued => Disposition::Queued,
            Enqueued::Full(_) => Disposition::Dropped(DropReason::QueueFull),
        }
    }
}
