//! The router's ARP: answers for its own addresses, proxy ARP, learning, requests.

use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetProtocol};
use xennet_ring::time::Instant;

use super::{Iface, Router};
use crate::wire::build::{arp_frame, eth_frame, Arp};
use crate::wire::{is_valid_source, Ipv4Address, MacAddr};
use crate::PortTable;
use crate::{Disposition, DropReason, Output, PortId};

impl Router {
    pub(super) fn arp_input(
        &mut self,
        ports: &mut PortTable,
        now: Instant,
        ingress: PortId,
        iface: Iface,
        payload: &[u8],
        out: &mut dyn Output,
    ) -> Disposition {
        let Ok(pkt) = ArpPacket::new_checked(payload) else {
            return Disposition::Dropped(DropReason::Malformed);
        };
        let Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_protocol_addr: tpa,
            ..
        }) = ArpRepr::parse(&pkt)
        else {
            return Disposition::Dropped(DropReason::Malformed);
        };
        if !is_valid_source(sha) {
            return Disposition::Dropped(DropReason::BadSource);
        }
        let spa_usable = !spa.is_unspecified()
            && !spa.is_broadcast()
            && !spa.is_multicast()
            && !self.is_local(spa);
        // Learn the sender if the message concerns us, or refresh what we know already.
        if spa_usable
            && (operation == ArpOperation::Reply
                || self.is_local(tpa)
                || self.neigh.known(ingress, spa))
        {
            for w in self.neigh.insert(ingress, spa, sha, now) {
                self.send_frame(ports, out, ingress, iface.mac, sha, &w.packet);
            }
        }
        if operation == ArpOperation::Request
            && tpa != spa
            && spa_usable
            && self.should_answer(ingress, iface, tpa)
        {
            arp_frame(
                &mut self.frame,
                sha,
                Arp {
                    op: ArpOperation::Reply,
                    sha: iface.mac,
                    spa: tpa,
                    tha: sha,
                    tpa: spa,
                },
            );
            ports.deliver(out, ingress, &self.frame);
        }
        Disposition::Local
    }

    /// Linux's rule (arp_ignore=0, plus proxy_arp): own addresses are answered on every
    /// interface; with proxy ARP, addresses routed through a different interface too.
    fn should_answer(&self, ingress: PortId, iface: Iface, tpa: Ipv4Address) -> bool {
        if self.is_local(tpa) {
            return true;
        }
        iface.proxy_arp && self.lookup(tpa).is_some_and(|r| r.port != ingress)
    }

    pub(super) fn send_arp_request(
        &mut self,
        ports: &mut PortTable,
        out: &mut dyn Output,
        egress: PortId,
        ip: Ipv4Address,
    ) {
        let Some(iface) = self.ifaces.get(&egress).copied() else {
            return;
        };
        arp_frame(
            &mut self.frame,
            MacAddr::BROADCAST,
            Arp {
                op: ArpOperation::Request,
                sha: iface.mac,
                spa: iface.addr,
                tha: MacAddr([0; 6]),
                tpa: ip,
            },
        );
        ports.deliver(out, egress, &self.frame);
    }

    pub(super) fn send_frame(
        &mut self,
        ports: &mut PortTable,
        out: &mut dyn Output,
        egress: PortId,
        src: MacAddr,
        dst: MacAddr,
        packet: &[u8],
    ) -> bool {
        eth_frame(&mut self.frame, dst, src, EthernetProtocol::Ipv4, packet);
        ports.deliver(out, egress, &self.frame)
    }
}
