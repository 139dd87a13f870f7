//! The guest's IP stack: smoltcp over any `phy::Device` (netfront in a guest process),
//! answering ping, serving a TCP echo port and a tiny HTTP endpoint, and able to ping
//! and connect out.
//!
//! Echo requests are answered through the ICMP socket, not smoltcp's automatic reply,
//! so a reply waits for ARP like a Linux guest's (in route mode the asker is behind
//! the router's proxy ARP and was never resolved here; an automatic reply would be
//! dropped, losing the first echo).
//!
//! smoltcp rate-limits address resolution for the whole interface: after one ARP
//! request it sends no other for a second, whichever address it is for, so a ping to
//! a second neighbour right after the first waited a second for its ARP. The stack
//! therefore asks for the next hop itself when a ping or a connection starts; smoltcp
//! learns the reply (it fills its cache from any ARP reply aimed at it).

use std::time::{Duration, Instant as StdInstant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities};
use smoltcp::socket::{icmp, tcp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, Ipv4Address,
    Ipv4Cidr,
};
use xennet_switch::uplink::host::EchoRequest;

/// TCP port of the echo service every guest serves.
pub const ECHO_PORT: u16 = 7;
/// TCP port of the HTTP endpoint every guest serves.
pub const HTTP_PORT: u16 = 80;
const ICMP_IDENT: u16 = 0x58e7;

/// Errors of the guest's client operations.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The TCP connection could not be started.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    /// The peer did not answer in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// The connection closed before the whole reply arrived.
    #[error("connection to {0} closed after {1} of {2} bytes")]
    Closed(String, usize, usize),
}

/// The outcome of a ping run, printed in ping's own summary form.
#[derive(Clone, Debug, Default)]
pub struct PingReport {
    /// The address pinged.
    pub target: String,
    /// Echo requests sent.
    pub transmitted: u32,
    /// Echo replies received.
    pub received: u32,
    /// Round-trip times of the replies.
    pub rtts: Vec<Duration>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl PingReport {
    /// Packet loss in percent, rounded down like iputils.
    pub fn loss_percent(&self) -> u32 {
        if self.transmitted == 0 {
            return 0;
        }
        (self.transmitted - self.received) * 100 / self.transmitted
    }
}

impl std::fmt::Display for PingReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "--- {} ping statistics ---", self.target)?;
        write!(
            f,
            "{} packets transmitted, {} received, {}% packet loss, time {}ms",
            self.transmitted,
            self.received,
            self.loss_percent(),
            self.elapsed.as_millis()
        )?;
        if !self.rtts.is_empty() {
            let ms: Vec<f64> = self.rtts.iter().map(|d| d.as_secs_f64() * 1e3).collect();
            let min = ms.iter().copied().fold(f64::MAX, f64::min);
            let max = ms.iter().copied().fold(0.0, f64::max);
            let avg = ms.iter().sum::<f64>() / ms.len() as f64;
            let mdev =
                (ms.iter().map(|x| (x - avg) * (x - avg)).sum::<f64>() / ms.len() as f64).sqrt();
            write!(
                f,
                "\nrtt min/avg/max/mdev = {min:.3}/{avg:.3}/{max:.3}/{mdev:.3} ms"
            )?;
        }
        Ok(())
    }
}

/// A guest's network stack over a device.
pub struct GuestStack<D: Device> {
    /// The device (netfront) under the stack.
    pub device: D,
    iface: Interface,
    sockets: SocketSet<'static>,
    echo: SocketHandle,
    http: SocketHandle,
    icmp: SocketHandle,
    epoch: StdInstant,
    banner: String,
    next_port: u16,
    me: (EthernetAddress, Ipv4Address),
    cidr: Ipv4Cidr,
    gateway: Option<Ipv4Address>,
    echo_requests: Vec<EchoRequest>,
    /// Frame buffers the interceptor reuses.
    spare: Vec<Vec<u8>>,
    held: Option<Vec<u8>>,
}

/// Echo requests waiting for an answer; more are ignored (like a flooded host).
const ECHO_BACKLOG: usize = 64;

/// The device as smoltcp sees it: echo requests to us are taken out on the way in.
struct Intercept<'a, D> {
    inner: &'a mut D,
    me: (EthernetAddress, Ipv4Address),
    requests: &'a mut Vec<EchoRequest>,
    spare: &'a mut Vec<Vec<u8>>,
    /// A received frame waiting for a transmit token (smoltcp takes both together).
    held: &'a mut Option<Vec<u8>>,
}

impl<D: Device> Device for Intercept<'_, D> {
    /// A frame passed on; its buffer goes back to the pool once consumed.
    type RxToken<'b>
        = xennet_netfront::phy::RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = D::TxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, t: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if self.held.is_none() {
            loop {
                let (rx, _) = self.inner.receive(t)?;
                let me = self.me;
                let mut buf = self.spare.pop().unwrap_or_default();
                let req = phy::RxToken::consume(rx, |f| match EchoRequest::parse(f, me.0, me.1) {
                    Some(req) => Some(req),
                    None => {
                        buf.clear();
                        buf.extend_from_slice(f);
                        None
                    }
                });
                match req {
                    Some(req) => {
                        self.spare.push(buf);
                        if self.requests.len() < ECHO_BACKLOG {
                            self.requests.push(req);
                        }
                    }
                    None => {
                        *self.held = Some(buf);
                        break;
                    }
                }
            }
        }
        // No room to answer right now: the frame stays held for the next poll.
        let tx = self.inner.transmit(t)?;
        let buf = self.held.take()?;
        Some((xennet_netfront::phy::RxToken::new(buf, self.spare), tx))
    }

    fn transmit(&mut self, t: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(t)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

fn now(epoch: StdInstant) -> Instant {
    Instant::from_micros(epoch.elapsed().as_micros() as i64)
}

fn tcp_socket(size: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; size]),
        tcp::SocketBuffer::new(vec![0; size]),
    )
}

impl<D: Device> GuestStack<D> {
    /// Bring up a stack with `mac`, address `cidr` and an optional default gateway;
    /// `banner` is what the HTTP endpoint serves.
    pub fn new(
        mut device: D,
        mac: [u8; 6],
        cidr: Ipv4Cidr,
        gateway: Option<Ipv4Address>,
        banner: &str,
    ) -> Self {
        let epoch = StdInstant::now();
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        let mut iface = Interface::new(config, &mut device, now(epoch));
        iface.update_ip_addrs(|addrs| {
            // A fresh interface has room for its first address.
            let _ = addrs.push(IpCidr::Ipv4(cidr));
        });
        if let Some(gw) = gateway {
            // Only fails when the route table is full; it is empty here.
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        let mut sockets = SocketSet::new(Vec::new());
        let echo = sockets.add(tcp_socket(64 * 1024));
        let http = sockets.add(tcp_socket(4 * 1024));
        let icmp = sockets.add(icmp::Socket::new(
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 16], vec![0; 16 * 1024]),
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 16], vec![0; 16 * 1024]),
        ));
        let mut stack = GuestStack {
            device,
            iface,
            sockets,
            echo,
            http,
            icmp,
            epoch,
            banner: banner.to_string(),
            next_port: 49152,
            me: (EthernetAddress(mac), cidr.address()),
            cidr,
            gateway,
            echo_requests: Vec::new(),
            spare: Vec::new(),
            held: None,
        };
        stack.listen();
        // Bind cannot fail for a fresh socket with a non-zero ident.
        let _ = stack
            .sockets
            .get_mut::<icmp::Socket>(stack.icmp)
            .bind(icmp::Endpoint::Ident(ICMP_IDENT));
        stack
    }

    fn listen(&mut self) {
        let echo = self.sockets.get_mut::<tcp::Socket>(self.echo);
        if !echo.is_open() {
            let _ = echo.listen(ECHO_PORT);
        }
        let http = self.sockets.get_mut::<tcp::Socket>(self.http);
        if !http.is_open() {
            let _ = http.listen(HTTP_PORT);
        }
    }

    /// Run the stack once: move frames, serve the echo and HTTP ports.
    pub fn poll(&mut self) {
        let t = now(self.epoch);
        self.poll_iface(t);
        self.serve();
        self.poll_iface(now(self.epoch));
    }

    fn poll_iface(&mut self, t: Instant) {
        let mut dev = Intercept {
            inner: &mut self.device,
            me: self.me,
            requests: &mut self.echo_requests,
            spare: &mut self.spare,
            held: &mut self.held,
        };
        self.iface.poll(t, &mut dev, &mut self.sockets);
    }

    /// The device under the stack.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Sends an ARP request for the next hop towards `target` (itself when on-link,
    /// else the gateway), bypassing smoltcp's interface-wide ARP rate limit. Nothing
    /// is sent when the device has no room; smoltcp then resolves as usual.
    fn resolve(&mut self, target: Ipv4Address) {
        let hop = if self.cidr.contains_addr(&target) {
            target
        } else {
            match self.gateway {
                Some(gw) => gw,
                None => return,
            }
        };
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: self.me.0,
            source_protocol_addr: self.me.1,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: hop,
        };
        let eth = EthernetRepr {
            src_addr: self.me.0,
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        };
        let Some(tx) = self.device.transmit(now(self.epoch)) else {
            return;
        };
        let len = eth.buffer_len() + arp.buffer_len();
        phy::TxToken::consume(tx, len, |buf| {
            let mut frame = EthernetFrame::new_unchecked(buf);
            eth.emit(&mut frame);
            arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        });
    }

    /// How long the stack may sleep before it must be polled again.
    pub fn poll_delay(&mut self) -> Option<Duration> {
        self.iface
            .poll_delay(now(self.epoch), &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
    }

    fn serve(&mut self) {
        let icmp = self.sockets.get_mut::<icmp::Socket>(self.icmp);
        for req in self.echo_requests.drain(..) {
            // A full socket buffer loses the reply, as a flooded host would.
            let _ = req.answer(icmp);
        }
        let echo = self.sockets.get_mut::<tcp::Socket>(self.echo);
        // Move everything that fits now: one small chunk per poll starved a bulk
        // transfer (a wake-up per 2 KiB).
        let mut buf = [0u8; 4096];
        while echo.can_recv() && echo.can_send() {
            let room = echo.send_capacity() - echo.send_queue();
            let want = room.min(buf.len());
            match echo.recv_slice(&mut buf[..want]) {
                Ok(n) if n > 0 => {
                    let _ = echo.send_slice(&buf[..n]);
                }
                _ => break,
            }
        }
        if !echo.may_recv() && echo.may_send() {
            echo.close();
        }
        let banner = self.banner.clone();
        let http = self.sockets.get_mut::<tcp::Socket>(self.http);
        if http.can_recv() {
            let mut buf = [0u8; 1024];
            let n = http.recv_slice(&mut buf).unwrap_or(0);
            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") || buf[..n].ends_with(b"\n\n") {
                let body = format!("{banner}\n");
                let reply = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = http.send_slice(reply.as_bytes());
                http.close();
            }
        }
        self.listen();
    }

    /// Drive the stack until `done` says so or `timeout` passes; `wait` blocks for at
    /// most the given time until the device may have frames (netfront's event wait).
    fn drive(
        &mut self,
        timeout: Duration,
        wait: &mut dyn FnMut(Duration),
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        let deadline = StdInstant::now() + timeout;
        loop {
            self.poll();
            if done(self) {
                return true;
            }
            let left = deadline.saturating_duration_since(StdInstant::now());
            if left.is_zero() {
                return false;
            }
            let nap = self
                .poll_delay()
                .unwrap_or(left)
                .min(left)
                .min(Duration::from_millis(20));
            wait(nap);
        }
    }

    /// Keep the stack running (answering ping, echo and HTTP) for `duration`.
    pub fn serve_for(&mut self, duration: Duration, wait: &mut dyn FnMut(Duration)) {
        self.drive(duration, wait, |_| false);
    }

    /// Ping `target` `count` times, `interval` apart, waiting `timeout` for the last reply.
    pub fn ping(
        &mut self,
        target: Ipv4Address,
        count: u16,
        interval: Duration,
        timeout: Duration,
        wait: &mut dyn FnMut(Duration),
    ) -> PingReport {
        let start = StdInstant::now();
        let mut report = PingReport {
            target: target.to_string(),
            ..Default::default()
        };
        let mut sent_at: Vec<Option<StdInstant>> = vec![None; count as usize];
        self.resolve(target);
        for seq in 0..count {
            let payload = [0xa5u8; 56];
            let repr = Icmpv4Repr::EchoRequest {
                ident: ICMP_IDENT,
                seq_no: seq,
                data: &payload,
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(
                &mut Icmpv4Packet::new_unchecked(&mut buf),
                &ChecksumCapabilities::default(),
            );
            let sock = self.sockets.get_mut::<icmp::Socket>(self.icmp);
            if sock.send_slice(&buf, IpAddress::Ipv4(target)).is_ok() {
                sent_at[seq as usize] = Some(StdInstant::now());
                report.transmitted += 1;
            }
            let last = seq + 1 == count;
            let window = if last { timeout } else { interval };
            let icmp_h = self.icmp;
            self.drive(window, wait, |s| {
                let sock = s.sockets.get_mut::<icmp::Socket>(icmp_h);
                while let Ok((data, _from)) = sock.recv() {
                    if let Ok(pkt) = Icmpv4Packet::new_checked(data) {
                        if let Ok(Icmpv4Repr::EchoReply { ident, seq_no, .. }) =
                            Icmpv4Repr::parse(&pkt, &ChecksumCapabilities::default())
                        {
                            if ident == ICMP_IDENT {
                                if let Some(Some(t)) =
                                    sent_at.get_mut(seq_no as usize).map(|t| t.take())
                                {
                                    report.rtts.push(t.elapsed());
                                    report.received += 1;
                                }
                            }
                        }
                    }
                }
                last && report.received == report.transmitted
            });
        }
        report.elapsed = start.elapsed();
        report
    }

    /// Connect to `target:port`, send `payload`, read back as many bytes as were sent
    /// (an echo service) or until the peer closes (`until_close`), then close.
    pub fn tcp_exchange(
        &mut self,
        target: Ipv4Address,
        port: u16,
        payload: &[u8],
        until_close: bool,
        timeout: Duration,
        wait: &mut dyn FnMut(Duration),
    ) -> Result<Vec<u8>, StackError> {
        let peer = format!("{target}:{port}");
        let handle = self.sockets.add(tcp_socket(64 * 1024));
        self.next_port = if self.next_port >= 65000 {
            49152
        } else {
            self.next_port + 1
        };
        let local = self.next_port;
        self.resolve(target);
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket>(handle)
            .connect(cx, (IpAddress::Ipv4(target), port), local)
            .map_err(|e| StackError::Connect(peer.clone(), e.to_string()))?;
        let mut sent = 0usize;
        let mut got = Vec::new();
        let mut closed = false;
        let finished = self.drive(timeout, wait, |s| {
            let sock = s.sockets.get_mut::<tcp::Socket>(handle);
            if sock.can_send() && sent < payload.len() {
                sent += sock.send_slice(&payload[sent..]).unwrap_or(0);
            }
            while sock.can_recv() {
                let mut buf = [0u8; 4096];
                match sock.recv_slice(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            if !sock.is_active() || (!sock.may_recv() && sent == payload.len()) {
                closed = true;
            }
            if until_close {
                closed
            } else {
                sent == payload.len() && got.len() >= payload.len()
            }
        });
        self.sockets.get_mut::<tcp::Socket>(handle).close();
        // Let the FIN go out before the socket is dropped.
        let _ = self.drive(Duration::from_millis(50), wait, |s| {
            !s.sockets.get::<tcp::Socket>(handle).is_active()
        });
        self.sockets.remove(handle);
        if finished {
            Ok(got)
        } else if closed {
            Err(StackError::Closed(peer, got.len(), payload.len()))
        } else {
            Err(StackError::Timeout(timeout, format!("{peer} to answer")))
        }
    }
}
