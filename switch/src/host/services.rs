//! What a [`Host`](super::Host) serves beside ARP and ping: a TCP echo port, a UDP
//! echo port and a one-line HTTP endpoint, each only when its [`Services`] asks.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};

use super::{HostConfig, HostError};

/// Concurrent TCP echo connections of a host on a switch port.
const ECHO_SOCKETS: usize = 4;
/// Buffers of a host on a switch port's TCP sockets, each way.
const TCP_BUFFER: usize = 16384;
/// Buffers of the HTTP endpoint's socket, each way.
const HTTP_BUFFER: usize = 4096;

/// A TCP echo service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpEcho {
    /// Its port.
    pub port: u16,
    /// Connections served at once (a listening socket each).
    pub sockets: usize,
    /// Each socket's buffer size, each way.
    pub buffer: usize,
}

/// An HTTP endpoint: answers any request with `200 OK` and its banner, then closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http {
    /// Its port.
    pub port: u16,
    /// The body's one line.
    pub banner: String,
}

/// What a host runs besides ARP, and its ICMP socket (its own pings and their
/// replies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Services {
    /// The TCP echo service.
    pub tcp_echo: Option<TcpEcho>,
    /// The UDP echo service's port.
    pub udp_echo: Option<u16>,
    /// The HTTP endpoint.
    pub http: Option<Http>,
    /// The identifier of the host's own echo requests.
    pub icmp_ident: u16,
    /// The ICMP socket's buffer size, each way.
    pub icmp_buffer: usize,
    /// The buffer size of the TCP connections the host opens, each way.
    pub tcp_buffer: usize,
}

impl Services {
    /// A host on a switch port: the echo ports `cfg` names (TCP with 4 connections),
    /// no HTTP, its pings identified by its seed.
    pub fn endpoint(cfg: &HostConfig) -> Services {
        Services {
            tcp_echo: cfg.tcp_echo_port.map(|port| TcpEcho {
                port,
                sockets: ECHO_SOCKETS,
                buffer: TCP_BUFFER,
            }),
            udp_echo: cfg.udp_echo_port,
            http: None,
            icmp_ident: (cfg.seed as u16) | 1,
            icmp_buffer: 8192,
            tcp_buffer: TCP_BUFFER,
        }
    }
}

pub(super) fn tcp_socket(size: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; size]),
        tcp::SocketBuffer::new(vec![0; size]),
    )
}

pub(super) fn udp_socket() -> udp::Socket<'static> {
    let meta = || vec![udp::PacketMetadata::EMPTY; 16];
    udp::Socket::new(
        udp::PacketBuffer::new(meta(), vec![0; 16384]),
        udp::PacketBuffer::new(meta(), vec![0; 16384]),
    )
}

fn socket_error(e: impl std::fmt::Display) -> HostError {
    HostError::Socket(e.to_string())
}

/// The services' sockets.
#[derive(Debug)]
pub(super) struct Served {
    tcp_echo: Option<(u16, Vec<SocketHandle>)>,
    http: Option<(Http, SocketHandle)>,
    udp_echo: Option<SocketHandle>,
}

impl Served {
    /// Opens (and listens on) the sockets `services` asks for.
    pub(super) fn open(
        sockets: &mut SocketSet<'static>,
        services: &Services,
    ) -> Result<Served, HostError> {
        let tcp_echo = match &services.tcp_echo {
            Some(echo) => {
                let mut handles = Vec::new();
                for _ in 0..echo.sockets {
                    let mut s = tcp_socket(echo.buffer);
                    s.listen(echo.port).map_err(socket_error)?;
                    handles.push(sockets.add(s));
                }
                Some((echo.port, handles))
            }
            None => None,
        };
        let http = match &services.http {
            Some(http) => {
                let mut s = tcp_socket(HTTP_BUFFER);
                s.listen(http.port).map_err(socket_error)?;
                Some((http.clone(), sockets.add(s)))
            }
            None => None,
        };
        let udp_echo = match services.udp_echo {
            Some(port) => {
                let mut s = udp_socket();
                s.bind(port).map_err(socket_error)?;
                Some(sockets.add(s))
            }
            None => None,
        };
        Ok(Served {
            tcp_echo,
            http,
            udp_echo,
        })
    }

    /// Serves what the last poll delivered.
    pub(super) fn run(&self, sockets: &mut SocketSet<'static>) {
        if let Some((port, handles)) = &self.tcp_echo {
            for &h in handles {
                tcp_echo(sockets.get_mut::<tcp::Socket>(h), *port);
            }
        }
        if let Some((http, h)) = &self.http {
            serve_http(sockets.get_mut::<tcp::Socket>(*h), http);
        }
        if let Some(h) = self.udp_echo {
            let s = sockets.get_mut::<udp::Socket>(h);
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

/// Moves everything that fits back to the sender (one small chunk per poll starved
/// a bulk transfer: a wake-up per 2 KiB); closes once the peer has and all of it is
/// sent; listens again when the connection is over.
fn tcp_echo(s: &mut tcp::Socket<'_>, port: u16) {
    let mut buf = [0u8; 4096];
    while s.can_recv() && s.can_send() {
        let room = s.send_capacity() - s.send_queue();
        let want = room.min(buf.len());
        match s.recv_slice(&mut buf[..want]) {
            Ok(n) if n > 0 => {
                let _ = s.send_slice(&buf[..n]);
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

/// Answers a request (once its header is in) with the banner, then closes; listens
/// again when the connection is over.
fn serve_http(s: &mut tcp::Socket<'_>, http: &Http) {
    if s.can_recv() {
        let mut buf = [0u8; 1024];
        let n = s.recv_slice(&mut buf).unwrap_or(0);
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") || buf[..n].ends_with(b"\n\n") {
            let body = format!("{}\n", http.banner);
            let reply = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.send_slice(reply.as_bytes());
            s.close();
        }
    }
    if !s.is_open() {
        let _ = s.listen(http.port);
    }
}
