//! The guest's IP stack: the switch's smoltcp [`Host`] over any `phy::Device`
//! (netfront in a guest process), answering ping, serving a TCP echo port and a tiny
//! HTTP endpoint, and able to ping and connect out; this module adds the blocking
//! client calls a guest program makes (ping with a report, a TCP exchange).
//!
//! The host answers echo requests through its ICMP socket, not smoltcp's automatic
//! reply, so a reply waits for ARP like a Linux guest's (in route mode the asker is
//! behind the router's proxy ARP and was never resolved here; an automatic reply
//! would be dropped, losing the first echo). A ping or a connection first asks for
//! its next hop itself ([`Host::resolve`]), round smoltcp's interface-wide ARP rate
//! limit.

use std::time::{Duration, Instant as StdInstant};

use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
use xennet_platform::clock;
use xennet_switch::host::{Host, HostConfig, HostError, Http, Services, TcpEcho};

/// TCP port of the echo service every guest serves.
pub const ECHO_PORT: u16 = 7;
/// TCP port of the HTTP endpoint every guest serves.
pub const HTTP_PORT: u16 = 80;
const ICMP_IDENT: u16 = 0x58e7;
/// Socket buffers of the echo service and of connections out, each way.
const TCP_BUFFER: usize = 64 * 1024;

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
    host: Host<D>,
    next_port: u16,
}

impl<D: Device> GuestStack<D> {
    /// Bring up a stack with `mac`, address `cidr` and an optional default gateway;
    /// `banner` is what the HTTP endpoint serves.
    ///
    /// # Panics
    ///
    /// If `mac` is not a unicast address, as smoltcp's interface does
    /// ([`try_new`](Self::try_new) returns the error instead).
    pub fn new(
        device: D,
        mac: [u8; 6],
        cidr: Ipv4Cidr,
        gateway: Option<Ipv4Address>,
        banner: &str,
    ) -> Self {
        match Self::try_new(device, mac, cidr, gateway, banner) {
            Ok(stack) => stack,
            Err(e) => panic!("guest stack: {e}"),
        }
    }

    /// [`new`](Self::new), or why the stack cannot be built.
    pub fn try_new(
        device: D,
        mac: [u8; 6],
        cidr: Ipv4Cidr,
        gateway: Option<Ipv4Address>,
        banner: &str,
    ) -> Result<Self, HostError> {
        let cfg = HostConfig {
            mac: EthernetAddress(mac),
            addr: cidr,
            gateway,
            tcp_echo_port: None,
            udp_echo_port: None,
            seed: 0,
        };
        let services = Services {
            tcp_echo: Some(TcpEcho {
                port: ECHO_PORT,
                sockets: 1,
                buffer: TCP_BUFFER,
            }),
            udp_echo: None,
            http: Some(Http {
                port: HTTP_PORT,
                banner: banner.to_string(),
            }),
            icmp_ident: ICMP_IDENT,
            icmp_buffer: 16 * 1024,
            tcp_buffer: TCP_BUFFER,
        };
        let host = Host::over(device, cfg, services, clock::now())?;
        Ok(GuestStack {
            host,
            next_port: 49152,
        })
    }

    /// Run the stack once: move frames, serve the echo and HTTP ports.
    pub fn poll(&mut self) {
        self.host.run_once(clock::now());
    }

    /// The host under the client calls.
    pub fn host_mut(&mut self) -> &mut Host<D> {
        &mut self.host
    }

    /// The device under the stack.
    pub fn device_mut(&mut self) -> &mut D {
        self.host.device_mut()
    }

    /// The device, the stack dropped.
    pub fn into_device(self) -> D {
        self.host.into_device()
    }

    /// How long the stack may sleep before it must be polled again.
    pub fn poll_delay(&mut self) -> Option<Duration> {
        self.host.poll_delay(clock::now())
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
        self.host.resolve(clock::now(), target);
        for seq in 0..count {
            let payload = [0xa5u8; 56];
            if self.host.send_echo_request(target, seq, &payload).is_ok() {
                sent_at[seq as usize] = Some(StdInstant::now());
                report.transmitted += 1;
            }
            let last = seq + 1 == count;
            let window = if last { timeout } else { interval };
            self.drive(window, wait, |s| {
                // The host's ICMP socket takes only replies with our identifier.
                for reply in s.host.drain_echo_replies() {
                    if let Some(Some(t)) = sent_at.get_mut(reply.seq as usize).map(|t| t.take()) {
                        report.rtts.push(t.elapsed());
                        report.received += 1;
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
        self.next_port = if self.next_port >= 65000 {
            49152
        } else {
            self.next_port + 1
        };
        let local = self.next_port;
        self.host.resolve(clock::now(), target);
        let handle = self
            .host
            .tcp_connect((target, port), local)
            .map_err(|e| StackError::Connect(peer.clone(), e.to_string()))?;
        let mut sent = 0usize;
        let mut got = Vec::new();
        let mut closed = false;
        let finished = self.drive(timeout, wait, |s| {
            let sock = s.host.socket_mut::<tcp::Socket>(handle);
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
        self.host.socket_mut::<tcp::Socket>(handle).close();
        // Let the FIN go out before the socket is dropped.
        let _ = self.drive(Duration::from_millis(50), wait, |s| {
            !s.host.socket_mut::<tcp::Socket>(handle).is_active()
        });
        self.host.remove_socket(handle);
        if finished {
            Ok(got)
        } else if closed {
            Err(StackError::Closed(peer, got.len(), payload.len()))
        } else {
            Err(StackError::Timeout(timeout, format!("{peer} to answer")))
        }
    }
}
