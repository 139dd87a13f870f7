//! A small IP host on smoltcp, over any `smoltcp::phy::Device`: the simulated remote
//! host, the driver domain's own stack and the test guests on a switch port, and a
//! guest's stack over netfront.
//!
//! It answers ARP (smoltcp does) and ICMP echo, runs the [`Services`] it is given (a
//! TCP echo port, a UDP echo port, a one-line HTTP endpoint), and can ping, open TCP
//! connections and UDP sockets of its own. Two kinds, chosen by how it is made:
//! - **On a switch port** ([`Host::new`], a [`Host<Wire>`]): an
//!   [`Endpoint`](crate::uplink::Endpoint) whose wire is a pair of queues the fabric
//!   fills and drains. Echo requests to it are answered by an [`EchoResponder`]: a
//!   reply waits while the sender's address is resolved by ARP, as a Linux host
//!   queues it, where smoltcp's automatic reply would be dropped, and it waits in
//!   its own neighbour's queue, so a sender that never answers ARP holds up no other
//!   reply (smoltcp's ICMP socket sends in order). That matters behind a router: the
//!   host has never seen an ARP from a routed guest, so the first reply to it needs
//!   a resolution first.
//! - **Over a device** ([`Host::over`], e.g. netfront in a guest): echo requests are
//!   taken out of the received frames before smoltcp sees them and answered through
//!   the ICMP socket, so a reply waits for ARP like a Linux guest's.
//!
//! smoltcp rate-limits address resolution for the whole interface: after one ARP
//! request it sends no other for a second, whichever address it is for, so a ping to
//! a second neighbour right after the first waited a second for its ARP.
//! [`Host::resolve`] asks for a next hop itself; smoltcp learns the reply (it fills
//! its cache from any ARP reply aimed at it).
//!
//! The host keeps the data path's clock (`xennet_ring::time::Instant`); smoltcp's own
//! `Instant` is made from it only here, at the interface calls.

mod device;
pub mod echo;
mod endpoint;
mod services;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device};
use smoltcp::socket::{icmp, tcp, udp, AnySocket};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, EthernetRepr,
    HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, IpEndpoint,
};
use xennet_ring::time::{Duration, Instant};

use self::device::{Screen, Screened};
use crate::wire::{is_valid_source, Ipv4Address, Ipv4Cidr, MacAddr, MacFmt};
use crate::DropReason;

pub use self::device::{Wire, WireRx, WireTx};
pub use self::echo::{EchoRequest, EchoResponder};
pub use self::services::{Http, Services, TcpEcho};

/// `t` on smoltcp's clock: the same microseconds (smoltcp counts them in an `i64`).
fn smoltcp_time(t: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(i64::try_from(t.as_micros()).unwrap_or(i64::MAX))
}

/// smoltcp's `t` on the data path's clock (before the epoch is the epoch).
fn data_path_time(t: smoltcp::time::Instant) -> Instant {
    Instant::from_micros(u64::try_from(t.total_micros()).unwrap_or(0))
}

/// Host settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// Its MAC (unicast).
    pub mac: MacAddr,
    /// Its address and prefix.
    pub addr: Ipv4Cidr,
    /// Its default gateway.
    pub gateway: Option<Ipv4Address>,
    /// TCP echo service port (of a host on a switch port, [`Services::endpoint`]).
    pub tcp_echo_port: Option<u16>,
    /// UDP echo service port (of a host on a switch port).
    pub udp_echo_port: Option<u16>,
    /// Seed for smoltcp's TCP sequence numbers and ports.
    pub seed: u64,
}

impl HostConfig {
    /// The simulated remote host of Xen's documentation examples: 128.153.144.148/24,
    /// 00:04:76:35:0a:72, echo on TCP and UDP port 7.
    pub fn sim_uplink() -> HostConfig {
        HostConfig {
            mac: MacAddr([0x00, 0x04, 0x76, 0x35, 0x0a, 0x72]),
            addr: Ipv4Cidr::new(Ipv4Address::new(128, 153, 144, 148), 24),
            gateway: None,
            tcp_echo_port: Some(7),
            udp_echo_port: Some(7),
            seed: 0x5eed_0148,
        }
    }

    /// The driver domain's own stack in bridge mode: 128.153.144.204/24.
    pub fn driver_domain(mac: MacAddr) -> HostConfig {
        HostConfig {
            mac,
            addr: Ipv4Cidr::new(Ipv4Address::new(128, 153, 144, 204), 24),
            gateway: None,
            tcp_echo_port: None,
            udp_echo_port: None,
            seed: 0x5eed_0204,
        }
    }
}

/// Errors of the host.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    /// smoltcp needs a unicast hardware address.
    #[error("host MAC {0} is not a unicast address")]
    BadMac(String),
    /// A socket call failed.
    #[error("{0}")]
    Socket(String),
    /// No such socket.
    #[error("no such socket")]
    NoSocket,
}

/// A received ICMP echo reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoReply {
    /// Who answered.
    pub from: Ipv4Address,
    /// The sequence number.
    pub seq: u16,
}

/// How echo requests to the host are answered (see the [module documentation](self)).
#[derive(Debug)]
enum Answer {
    /// Per neighbour, by the responder; the requests are taken out as frames arrive
    /// from the switch ([`Endpoint::receive`](crate::uplink::Endpoint::receive)).
    PerNeighbour(Box<EchoResponder>),
    /// Through the ICMP socket; the requests are taken out of the device's frames as
    /// smoltcp polls it, and wait here for the next service run.
    InOrder(Vec<EchoRequest>),
}

/// The host. See the [module documentation](self).
pub struct Host<D: Device = Wire> {
    cfg: HostConfig,
    device: D,
    iface: Interface,
    sockets: SocketSet<'static>,
    icmp: SocketHandle,
    services: Services,
    served: services::Served,
    replies: Vec<EchoReply>,
    answer: Answer,
    screen: Screen,
}

impl<D: Device> std::fmt::Debug for Host<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("mac", &MacFmt(self.cfg.mac))
            .field("addr", &self.cfg.addr)
            .finish()
    }
}

fn socket_error(e: impl std::fmt::Display) -> HostError {
    HostError::Socket(e.to_string())
}

impl<D: Device> Host<D> {
    /// A stack over `device`, built at time `now`, running `services` (`cfg`'s echo
    /// ports are [`Services::endpoint`]'s business, not read here).
    pub fn over(
        device: D,
        cfg: HostConfig,
        services: Services,
        now: Instant,
    ) -> Result<Host<D>, HostError> {
        Host::build(device, cfg, services, Answer::InOrder(Vec::new()), now)
    }

    fn build(
        mut device: D,
        cfg: HostConfig,
        services: Services,
        answer: Answer,
        now: Instant,
    ) -> Result<Host<D>, HostError> {
        if !is_valid_source(cfg.mac) {
            return Err(HostError::BadMac(MacFmt(cfg.mac).to_string()));
        }
        let mut icfg = Config::new(HardwareAddress::Ethernet(cfg.mac));
        icfg.random_seed = cfg.seed;
        let mut iface = Interface::new(icfg, &mut device, smoltcp_time(now));
        iface.update_ip_addrs(|a| {
            // A fresh interface has room for its first address.
            let _ = a.push(IpCidr::Ipv4(cfg.addr));
        });
        if let Some(gw) = cfg.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gw)
                .map_err(socket_error)?;
        }
        let mut sockets = SocketSet::new(Vec::new());
        let meta = || vec![icmp::PacketMetadata::EMPTY; 16];
        let size = services.icmp_buffer;
        let mut icmp_sock = icmp::Socket::new(
            icmp::PacketBuffer::new(meta(), vec![0; size]),
            icmp::PacketBuffer::new(meta(), vec![0; size]),
        );
        icmp_sock
            .bind(icmp::Endpoint::Ident(services.icmp_ident))
            .map_err(socket_error)?;
        let icmp = sockets.add(icmp_sock);
        let served = services::Served::open(&mut sockets, &services)?;
        Ok(Host {
            cfg,
            device,
            iface,
            sockets,
            icmp,
            services,
            served,
            replies: Vec::new(),
            answer,
            screen: Screen::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &HostConfig {
        &self.cfg
    }

    /// The device under the stack.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device under the stack.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The device, the host dropped.
    pub fn into_device(self) -> D {
        self.device
    }

    /// Sends an ICMP echo request with `seq` and `len` payload bytes to `dst` (on the
    /// next poll; smoltcp resolves the next hop by ARP first).
    pub fn ping(&mut self, dst: Ipv4Address, seq: u16, len: usize) -> Result<(), HostError> {
        self.send_echo_request(dst, seq, &vec![0x5a; len])
    }

    /// Sends an ICMP echo request with `seq` and `data` to `dst` (as [`ping`](Self::ping)).
    pub fn send_echo_request(
        &mut self,
        dst: Ipv4Address,
        seq: u16,
        data: &[u8],
    ) -> Result<(), HostError> {
        let repr = Icmpv4Repr::EchoRequest {
            ident: self.services.icmp_ident,
            seq_no: seq,
            data,
        };
        let sock = self.sockets.get_mut::<icmp::Socket>(self.icmp);
        let buf = sock
            .send(repr.buffer_len(), IpAddress::Ipv4(dst))
            .map_err(socket_error)?;
        let mut pkt = Icmpv4Packet::new_unchecked(buf);
        repr.emit(&mut pkt, &smoltcp::phy::ChecksumCapabilities::default());
        Ok(())
    }

    /// Echo replies received so far.
    pub fn echo_replies(&self) -> &[EchoReply] {
        &self.replies
    }

    /// Takes the echo replies received so far, oldest first.
    pub fn drain_echo_replies(&mut self) -> std::vec::Drain<'_, EchoReply> {
        self.replies.drain(..)
    }

    /// Opens a TCP connection from `local_port` to `remote`.
    pub fn tcp_connect(
        &mut self,
        remote: (Ipv4Address, u16),
        local_port: u16,
    ) -> Result<SocketHandle, HostError> {
        let mut s = services::tcp_socket(self.services.tcp_buffer);
        let ep = IpEndpoint::new(IpAddress::Ipv4(remote.0), remote.1);
        s.connect(self.iface.context(), ep, local_port)
            .map_err(socket_error)?;
        Ok(self.sockets.add(s))
    }

    /// True once the TCP connection is established.
    pub fn tcp_established(&self, h: SocketHandle) -> bool {
        self.sockets.get::<tcp::Socket>(h).state() == tcp::State::Established
    }

    /// Queues bytes on a TCP connection; returns how many fit.
    pub fn tcp_send(&mut self, h: SocketHandle, data: &[u8]) -> Result<usize, HostError> {
        self.sockets
            .get_mut::<tcp::Socket>(h)
            .send_slice(data)
            .map_err(socket_error)
    }

    /// Takes the bytes received on a TCP connection.
    pub fn tcp_recv(&mut self, h: SocketHandle) -> Vec<u8> {
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        let mut out = Vec::new();
        while s.can_recv() {
            let got = s.recv(|b| (b.len(), b.to_vec()));
            match got {
                Ok(v) if !v.is_empty() => out.extend(v),
                _ => break,
            }
        }
        out
    }

    /// Binds a UDP socket.
    pub fn udp_bind(&mut self, port: u16) -> Result<SocketHandle, HostError> {
        let mut s = services::udp_socket();
        s.bind(port).map_err(socket_error)?;
        Ok(self.sockets.add(s))
    }

    /// Sends a UDP datagram.
    pub fn udp_send(
        &mut self,
        h: SocketHandle,
        to: (Ipv4Address, u16),
        data: &[u8],
    ) -> Result<(), HostError> {
        let ep = IpEndpoint::new(IpAddress::Ipv4(to.0), to.1);
        self.sockets
            .get_mut::<udp::Socket>(h)
            .send_slice(data, ep)
            .map_err(socket_error)
    }

    /// Takes received UDP datagrams with their senders.
    pub fn udp_recv(&mut self, h: SocketHandle) -> Vec<(Vec<u8>, (Ipv4Address, u16))> {
        let s = self.sockets.get_mut::<udp::Socket>(h);
        let mut out = Vec::new();
        while let Ok((data, meta)) = s.recv() {
            let IpAddress::Ipv4(a) = meta.endpoint.addr;
            out.push((data.to_vec(), (a, meta.endpoint.port)));
        }
        out
    }

    /// A socket the host opened for its caller ([`tcp_connect`](Self::tcp_connect),
    /// [`udp_bind`](Self::udp_bind)).
    pub fn socket_mut<T: AnySocket<'static>>(&mut self, h: SocketHandle) -> &mut T {
        self.sockets.get_mut::<T>(h)
    }

    /// Closes and forgets a socket the host opened for its caller.
    pub fn remove_socket(&mut self, h: SocketHandle) {
        self.sockets.remove(h);
    }

    /// Echo replies this host sent (a host on a switch port; a stack over a device
    /// leaves them to its ICMP socket and counts none).
    pub fn echo_replies_sent(&self) -> u64 {
        match &self.answer {
            Answer::PerNeighbour(r) => r.sent(),
            Answer::InOrder(_) => 0,
        }
    }

    /// Echo replies given up on, by reason (see [`EchoResponder::dropped`]).
    pub fn echo_replies_dropped(&self, reason: DropReason) -> u64 {
        match &self.answer {
            Answer::PerNeighbour(r) => r.dropped(reason),
            Answer::InOrder(_) => 0,
        }
    }

    /// Sends an ARP request for the next hop towards `target` (itself when on-link,
    /// else the gateway), bypassing smoltcp's interface-wide ARP rate limit. Nothing
    /// is sent when the device has no room; smoltcp then resolves as usual.
    pub fn resolve(&mut self, now: Instant, target: Ipv4Address) {
        let hop = if self.cfg.addr.contains_addr(&target) {
            target
        } else {
            match self.cfg.gateway {
                Some(gw) => gw,
                None => return,
            }
        };
        let me = (self.cfg.mac, self.cfg.addr.address());
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: me.0,
            source_protocol_addr: me.1,
            target_hardware_addr: MacAddr([0; 6]),
            target_protocol_addr: hop,
        };
        let eth = EthernetRepr {
            src_addr: me.0,
            dst_addr: MacAddr::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        };
        let Some(tx) = self.device.transmit(smoltcp_time(now)) else {
            return;
        };
        let len = eth.buffer_len() + arp.buffer_len();
        phy::TxToken::consume(tx, len, |buf| {
            let mut frame = EthernetFrame::new_unchecked(buf);
            eth.emit(&mut frame);
            arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        });
    }

    /// Runs the host at `now`: its timers, the frames its device has, its services
    /// (twice: they may answer what the first round delivered); what it sends goes
    /// to its device.
    pub fn run_once(&mut self, now: Instant) {
        self.run_services();
        for _ in 0..2 {
            self.poll_iface(now);
            self.run_services();
        }
        self.poll_iface(now);
    }

    /// When [`run_once`](Self::run_once) next has timed work, if ever.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let smoltcp = self
            .iface
            .poll_at(smoltcp_time(now), &self.sockets)
            .map(data_path_time);
        let responder = match &self.answer {
            Answer::PerNeighbour(r) => r.poll_at(),
            Answer::InOrder(_) => None,
        };
        match (smoltcp, responder) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long after `now` the host may wait before it must be polled again.
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        self.poll_at(now)
            .map(|at| at.saturating_duration_since(now))
    }

    fn poll_iface(&mut self, now: Instant) {
        let t = smoltcp_time(now);
        match &mut self.answer {
            Answer::PerNeighbour(_) => {
                self.iface.poll(t, &mut self.device, &mut self.sockets);
            }
            Answer::InOrder(requests) => {
                let mut dev = Screened {
                    inner: &mut self.device,
                    me: (self.cfg.mac, self.cfg.addr.address()),
                    requests,
                    screen: &mut self.screen,
                };
                self.iface.poll(t, &mut dev, &mut self.sockets);
            }
        }
    }

    fn run_services(&mut self) {
        let icmp = self.sockets.get_mut::<icmp::Socket>(self.icmp);
        if let Answer::InOrder(requests) = &mut self.answer {
            for req in requests.drain(..) {
                // A full socket buffer loses the reply, as a flooded host would.
                let _ = req.answer(icmp);
            }
        }
        while let Ok((data, from)) = icmp.recv() {
            let IpAddress::Ipv4(from) = from;
            if let Ok(pkt) = Icmpv4Packet::new_checked(data) {
                if let Ok(Icmpv4Repr::EchoReply { seq_no, .. }) =
                    Icmpv4Repr::parse(&pkt, &Default::default())
                {
                    self.replies.push(EchoReply { from, seq: seq_no });
                }
            }
        }
        self.served.run(&mut self.sockets);
    }
}
