//! A [`Host`] on a switch port: built over its [`Wire`], an [`Endpoint`] the
//! [`DriverDomain`](crate::domain::DriverDomain) exchanges frames with.

use smoltcp::wire::{EthernetFrame, EthernetProtocol};
use xennet_ring::time::Instant;

use super::device::RX_QUEUE;
use super::{Answer, EchoRequest, EchoResponder, Host, HostConfig, HostError, Services, Wire};
use crate::uplink::Endpoint;

impl Host<Wire> {
    /// A host on a switch port, built at time `now`, running the services `cfg`
    /// names ([`Services::endpoint`]).
    pub fn new(cfg: HostConfig, now: Instant) -> Result<Host, HostError> {
        let services = Services::endpoint(&cfg);
        let responder = EchoResponder::new(cfg.mac, cfg.addr, cfg.gateway);
        Host::build(
            Wire::default(),
            cfg,
            services,
            Answer::PerNeighbour(Box::new(responder)),
            now,
        )
    }

    /// Frames dropped because the receive queue was full.
    pub fn rx_dropped(&self) -> u64 {
        self.device.rx_dropped
    }
}

impl Endpoint for Host<Wire> {
    fn receive(&mut self, now: Instant, frame: &[u8]) {
        // Answered per neighbour, echo requests never reach smoltcp (a host built
        // over its wire with `Host::over` has them screened out as smoltcp polls).
        if let Answer::PerNeighbour(responder) = &mut self.answer {
            let tx = &mut self.device.tx;
            if EchoRequest::parse(frame, self.cfg.mac, self.cfg.addr.address()).is_some() {
                let ip = EthernetFrame::new_unchecked(frame).payload();
                responder.request(now, ip, &mut |f: &[u8]| tx.push(f.to_vec()));
                return;
            }
            if EthernetFrame::new_unchecked(frame).ethertype() == EthernetProtocol::Arp {
                // smoltcp answers and learns too; the responder learns for the replies.
                responder.arp(now, frame, &mut |f: &[u8]| tx.push(f.to_vec()));
            }
        }
        if self.device.rx.len() >= RX_QUEUE {
            self.device.rx_dropped += 1;
            return;
        }
        self.device.rx.push_back(frame.to_vec());
    }

    fn poll(&mut self, now: Instant, tx: &mut dyn FnMut(&[u8])) {
        if let Answer::PerNeighbour(responder) = &mut self.answer {
            let wire_tx = &mut self.device.tx;
            responder.poll(now, &mut |f: &[u8]| wire_tx.push(f.to_vec()));
        }
        self.run_once(now);
        for f in self.device.tx.drain(..) {
            tx(&f);
        }
    }

    fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        Host::poll_at(self, now)
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
