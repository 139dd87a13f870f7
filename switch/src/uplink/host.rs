//! A small IP host on smoltcp: the simulated remote host, the driver domain's own
//! stack, and the test guests.
//!
//! It answers ARP (smoltcp does) and ICMP echo, echoes TCP on
//! [`HostConfig::tcp_echo_port`] (port 7 by default) and UDP on
//! [`HostConfig::udp_echo_port`], and can ping, and open TCP connections and UDP
//! sockets of its own. Its "wire" is a pair of queues the fabric fills and drains.
//!
//! Echo requests to its address are answered by an [`EchoResponder`] rather than by
//! smoltcp's automatic reply: a reply waits while the sender's address is resolved by
//! ARP, as a Linux host queues it, where the automatic reply would be dropped. That
//! matters behind a router: the host has never seen an ARP from a routed guest, so
//! the first reply to it needs a resolution first. (Not through smoltcp's ICMP socket
//! either: that sends in order, so a reply to a sender who never answers ARP would
//! hold up every later one.)

use std::collections::VecDeque;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr,
    IpEndpoint, IpProtocol, Ipv4Packet,
};
use xennet_ring::time::Instant;

use super::echo::EchoResponder;
use super::Endpoint;
use crate::wire::{is_valid_source, Ipv4Address, Ipv4Cidr, MacAddr, MacFmt};
use crate::DropReason;

/// `t` as smoltcp's clock: the same microseconds (smoltcp counts them in an `i64`).
pub fn smoltcp_time(t: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(i64::try_from(t.as_micros()).unwrap_or(i64::MAX))
}

/// smoltcp's `t` on the data path's clock (before the epoch is the epoch).
pub fn data_path_time(t: smoltcp::time::Instant) -> Instant {
    Instant::from_micros(u64::try_from(t.total_micros()).unwrap_or(0))
}

/// Frames queued towards the host before it polls; more are dropped.
const RX_QUEUE: usize = 256;
/// Concurrent TCP echo connections.
const ECHO_SOCKETS: usize = 4;

/// An ICMP echo request to answer through a socket (see the module documentation):
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

/// Host settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// Its MAC (unicast).
    pub mac: MacAddr,
    /// Its address and prefix.
    pub addr: Ipv4Cidr,
    /// Its default gateway.
    pub gateway: Option<Ipv4Address>,
    /// TCP echo service port.
    pub tcp_echo_port: Option<u16>,
    /// UDP echo service port.
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

/// The host's wire: frames in from the fabric, frames out to it.
#[derive(Debug, Default)]
struct Wire {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct RxTok(Vec<u8>);
struct TxTok<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(&mut self, _now: smoltcp::time::Instant) -> Option<(RxTok, TxTok<'_>)> {
        let f = self.rx.pop_front()?;
        Some((RxTok(f), TxTok(&mut self.tx)))
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<TxTok<'_>> {
        Some(TxTok(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// A received ICMP echo reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoReply {
    /// Who answered.
    pub from: Ipv4Address,
    /// The sequence number.
    pub seq: u16,
}

/// The host. See the [module documentation](self).
pub struct Host {
    cfg: HostConfig,
    iface: Interface,
    sockets: SocketSet<'static>,
    wire: Wire,
    icmp: SocketHandle,
    ident: u16,
    tcp_echo: Vec<SocketHandle>,
    udp_echo: Option<SocketHandle>,
    replies: Vec<EchoReply>,
    responder: EchoResponder,
    rx_dropped: u64,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("mac", &MacFmt(self.cfg.mac))
            .field("addr", &self.cfg.addr)
            .finish()
    }
}

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 16384]),
        tcp::SocketBuffer::new(vec![0; 16384]),
    )
}

fn udp_socket() -> udp::Socket<'static> {
    let meta = || vec![udp::PacketMetadata::EMPTY; 16];
    udp::Socket::new(
        udp::PacketBuffer::new(meta(), vec![0; 16384]),
        udp::PacketBuffer::new(meta(), vec![0; 16384]),
    )
}

impl Host {
    /// Builds a host at time `now`.
    pub fn new(cfg: HostConfig, now: Instant) -> Result<Host, HostError> {
        if !is_valid_source(cfg.mac) {
            return Err(HostError::BadMac(MacFmt(cfg.mac).to_string()));
        }
        let mut wire = Wire::default();
        let mut icfg = Config::new(HardwareAddress::Ethernet(cfg.mac));
        icfg.random_seed = cfg.seed;
        let mut iface = Interface::new(icfg, &mut wire, smoltcp_time(now));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::Ipv4(cfg.addr));
        });
        if let Some(gw) = cfg.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gw)
                .map_err(|e| HostError::Socket(e.to_string()))?;
        }
        let mut sockets = SocketSet::new(Vec::new());
        let meta = || vec![icmp::PacketMetadata::EMPTY; 16];
        let mut icmp_sock = icmp::Socket::new(
            icmp::PacketBuffer::new(meta(), vec![0; 8192]),
            icmp::PacketBuffer::new(meta(), vec![0; 8192]),
        );
        let ident = (cfg.seed as u16) | 1;
        icmp_sock
            .bind(icmp::Endpoint::Ident(ident))
            .map_err(|e| HostError::Socket(e.to_string()))?;
        let icmp = sockets.add(icmp_sock);
        let mut tcp_echo = Vec::new();
        if let Some(port) = cfg.tcp_echo_port {
            for _ in 0..ECHO_SOCKETS {
                let mut s = tcp_socket();
                s.listen(port)
                    .map_err(|e| HostError::Socket(e.to_string()))?;
                tcp_echo.push(sockets.add(s));
            }
        }
        let udp_echo = match cfg.udp_echo_port {
            Some(port) => {
                let mut s = udp_socket();
                s.bind(port).map_err(|e| HostError::Socket(e.to_string()))?;
                Some(sockets.add(s))
            }
            None => None,
        };
        let responder = EchoResponder::new(cfg.mac, cfg.addr, cfg.gateway);
        Ok(Host {
            cfg,
            iface,
            sockets,
            wire,
            icmp,
            ident,
            tcp_echo,
            udp_echo,
            replies: Vec::new(),
            responder,
            rx_dropped: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &HostConfig {
        &self.cfg
    }

    /// Sends an ICMP echo request with `seq` and `len` payload bytes to `dst` (on the
    /// next poll; smoltcp resolves the next hop by ARP first).
    pub fn ping(&mut self, dst: Ipv4Address, seq: u16, len: usize) -> Result<(), HostError> {
        let data = vec![0x5a; len];
        let repr = Icmpv4Repr::EchoRequest {
            ident: self.ident,
            seq_no: seq,
            data: &data,
        };
        let sock = self.sockets.get_mut::<icmp::Socket>(self.icmp);
        let buf = sock
            .send(repr.buffer_len(), IpAddress::Ipv4(dst))
            .map_err(|e| HostError::Socket(e.to_string()))?;
        let mut pkt = Icmpv4Packet::new_unchecked(buf);
        repr.emit(&mut pkt, &smoltcp::phy::ChecksumCapabilities::default());
        Ok(())
    }

    /// Echo replies received so far.
    pub fn echo_replies(&self) -> &[EchoReply] {
        &self.replies
    }

    /// Opens a TCP connection from `local_port` to `remote`.
    pub fn tcp_connect(
        &mut self,
        remote: (Ipv4Address, u16),
        local_port: u16,
    ) -> Result<SocketHandle, HostError> {
        let mut s = tcp_socket();
        let ep = IpEndpoint::new(IpAddress::Ipv4(remote.0), remote.1);
        s.connect(self.iface.context(), ep, local_port)
            .map_err(|e| HostError::Socket(e.to_string()))?;
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
            .map_err(|e| HostError::Socket(e.to_string()))
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
        let mut s = udp_socket();
        s.bind(port).map_err(|e| HostError::Socket(e.to_string()))?;
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
            .map_err(|e| HostError::Socket(e.to_string()))
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

    /// Frames dropped because the receive queue was full.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }

    /// Echo replies this host sent.
    pub fn echo_replies_sent(&self) -> u64 {
        self.responder.sent()
    }

    /// Echo replies given up on, by reason (see [`EchoResponder::dropped`]).
    pub fn echo_replies_dropped(&self, reason: DropReason) -> u64 {
        self.responder.dropped(reason)
    }

    fn run_services(&mut self) {
        let icmp = self.sockets.get_mut::<icmp::Socket>(self.icmp);
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
        if let Some(port) = self.cfg.tcp_echo_port {
            for &h in &self.tcp_echo {
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                while s.can_recv() && s.can_send() {
                    let room = s.send_capacity() - s.send_queue();
                    let data = s.recv(|b| {
                        let n = b.len().min(room);
                        (n, b[..n].to_vec())
                    });
                    match data {
                        Ok(d) if !d.is_empty() => {
                            let _ = s.send_slice(&d);
                        }
                        _ => break,
                    }
                }
                if s.state() == tcp::State::CloseWait && s.send_queue() == 0 {
                    s.close();
                }
                if !s.is_open() {
                    let _ = s.listen(port);
                }
            }
        }
        if let Some(h) = self.udp_echo {
            let s = self.sockets.get_mut::<udp::Socket>(h);
            let mut echoes = Vec::new();
            while let Ok((data, meta)) = s.recv() {
                echoes.push((data.to_vec(), meta.endpoint));
            }
            for (d, ep) in echoes {
                let _ = s.send_slice(&d, ep);
            }
        }
    }
}

impl Endpoint for Host {
    fn receive(&mut self, now: Instant, frame: &[u8]) {
        let tx = &mut self.wire.tx;
        if EchoRequest::parse(frame, self.cfg.mac, self.cfg.addr.address()).is_some() {
            let ip = EthernetFrame::new_unchecked(frame).payload();
            self.responder
                .request(now, ip, &mut |f: &[u8]| tx.push(f.to_vec()));
            return;
        }
        if EthernetFrame::new_unchecked(frame).ethertype() == EthernetProtocol::Arp {
            // smoltcp answers and learns too; the responder learns for the replies.
            self.responder
                .arp(now, frame, &mut |f: &[u8]| tx.push(f.to_vec()));
        }
        if self.wire.rx.len() >= RX_QUEUE {
            self.rx_dropped += 1;
            return;
        }
        self.wire.rx.push_back(frame.to_vec());
    }

    fn poll(&mut self, now: Instant, tx: &mut dyn FnMut(&[u8])) {
        let wire_tx = &mut self.wire.tx;
        self.responder
            .poll(now, &mut |f: &[u8]| wire_tx.push(f.to_vec()));
        self.run_services();
        // Two rounds: the services may answer what the first poll delivered.
        for _ in 0..2 {
            self.iface
                .poll(smoltcp_time(now), &mut self.wire, &mut self.sockets);
            self.run_services();
        }
        self.iface
            .poll(smoltcp_time(now), &mut self.wire, &mut self.sockets);
        for f in self.wire.tx.drain(..) {
            tx(&f);
        }
    }

    fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let smoltcp = self
            .iface
            .poll_at(smoltcp_time(now), &self.sockets)
            .map(data_path_time);
        match (smoltcp, self.responder.poll_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
