//! NAT mode's connection tracking and translation (source NAT, "masquerade").
//!
//! Packets that guests send out of the uplink get the driver domain's uplink address
//! as source, and a per-connection external port (TCP/UDP) or echo identifier
//! (ICMP echo): the guest's own port/id is kept when free. Replies addressed to that
//! external port/id from the same remote address and port are translated back.
//! Checksums are updated incrementally (RFC 1624): the IPv4 header checksum for the
//! address, the TCP/UDP checksum for the address (pseudo-header) and the port, the
//! ICMP checksum for the identifier. A UDP checksum of zero ("none") stays zero.
//!
//! Connections expire: ICMP after 30 s, UDP after 30 s, or 180 s once the remote has
//! replied, TCP after 240 s until it is established or after a FIN or RST, else 2 h 4
//! min (RFC 5382). The table is bounded ([`NatConfig::max_flows`]).
//!
//! Not translated (dropped with [`DropReason::NatUnsupported`]): IP fragments, and
//! ICMP other than echo; inbound ICMP errors about translated connections are not
//! translated back.

use std::collections::HashMap;

use smoltcp::wire::IpProtocol;
use xennet_ring::time::{Duration, Instant};

use super::DropReason;
use crate::wire::checksum::{get16, put16, update16, update32};
use crate::wire::Ipv4Address;

/// NAT settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// Most tracked connections.
    pub max_flows: usize,
    /// Lowest external port/id allocated.
    pub port_min: u16,
    /// Highest external port/id allocated.
    pub port_max: u16,
    /// TCP connection seen both ways, no FIN/RST.
    pub tcp_established: Duration,
    /// TCP before the reply, or after FIN/RST.
    pub tcp_transitory: Duration,
    /// UDP before the remote replied.
    pub udp: Duration,
    /// UDP after the remote replied.
    pub udp_stream: Duration,
    /// ICMP echo.
    pub icmp: Duration,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            max_flows: 4096,
            port_min: 1024,
            port_max: 65535,
            tcp_established: Duration::from_secs(7440),
            tcp_transitory: Duration::from_secs(240),
            udp: Duration::from_secs(30),
            udp_stream: Duration::from_secs(180),
            icmp: Duration::from_secs(30),
        }
    }
}

/// Translated protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NatProto {
    /// TCP (ports).
    Tcp,
    /// UDP (ports).
    Udp,
    /// ICMP echo (identifier).
    Icmp,
}

/// One tracked connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatFlow {
    /// Protocol.
    pub proto: NatProto,
    /// Guest address and port/id.
    pub inside: (Ipv4Address, u16),
    /// Remote address and port (0 for ICMP).
    pub remote: (Ipv4Address, u16),
    /// External port/id on the driver domain's address.
    pub external_port: u16,
    /// When it expires unless refreshed.
    pub expires: Instant,
    replied: bool,
    closing: bool,
}

/// Result of translating an inbound packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Rewritten towards a guest.
    Translated,
    /// Translatable kind, but no connection matches: drop it.
    NoMapping,
    /// Not a kind NAT handles (echo request, fragment...): for the router itself.
    NotApplicable,
}

type Key = (NatProto, Ipv4Address, u16, Ipv4Address, u16);

/// Layer-4 fields located in a packet.
struct L4 {
    proto: NatProto,
    hl: usize,
    /// Offset (from the IP header start) of the port/id NAT rewrites on this side.
    port_at: usize,
    csum_at: usize,
    src_port: u16,
    dst_port: u16,
    tcp_flags: u8,
}

/// The connection table.
#[derive(Debug)]
pub struct NatTable {
    cfg: NatConfig,
    external: Ipv4Address,
    flows: HashMap<Key, NatFlow>,
    by_external: HashMap<(NatProto, u16), Key>,
    cursor: u16,
}

impl NatTable {
    /// An empty table translating to `external`.
    pub fn new(cfg: NatConfig, external: Ipv4Address) -> NatTable {
        let cursor = cfg.port_min;
        NatTable {
            cfg,
            external,
            flows: HashMap::new(),
            by_external: HashMap::new(),
            cursor,
        }
    }

    /// Tracked connections.
    pub fn flows(&self) -> impl Iterator<Item = &NatFlow> {
        self.flows.values()
    }

    /// Number of tracked connections.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// True if nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Translates a guest's packet leaving through the uplink (a whole, validated IPv4
    /// packet). On error the packet is unchanged.
    pub fn outbound(&mut self, pkt: &mut [u8], now: Instant) -> Result<(), DropReason> {
        let (src, dst) = addrs(pkt).ok_or(DropReason::Malformed)?;
        let l4 = locate(pkt, true).ok_or(DropReason::NatUnsupported)?;
        if l4.proto == NatProto::Icmp && pkt[l4.hl] != 8 {
            return Err(DropReason::NatUnsupported);
        }
        let key = (l4.proto, src, l4.src_port, dst, l4.dst_port);
        if !self.flows.contains_key(&key) {
            let ext = self
                .allocate(l4.proto, l4.src_port, now)
                .ok_or(DropReason::NatExhausted)?;
            let flow = NatFlow {
                proto: l4.proto,
                inside: (src, l4.src_port),
                remote: (dst, l4.dst_port),
                external_port: ext,
                expires: now,
                replied: false,
                closing: false,
            };
            self.flows.insert(key, flow);
            self.by_external.insert((l4.proto, ext), key);
        }
        let cfg = self.cfg.clone();
        let flow = self.flows.get_mut(&key).ok_or(DropReason::NatExhausted)?;
        refresh(&cfg, flow, l4.tcp_flags, now);
        let ext = flow.external_port;
        rewrite(pkt, &l4, 12, self.external, ext);
        Ok(())
    }

    /// Translates a packet that arrived on the uplink for the external address.
    pub fn inbound(&mut self, pkt: &mut [u8], now: Instant) -> Inbound {
        let Some((src, _)) = addrs(pkt) else {
            return Inbound::NotApplicable;
        };
        let Some(l4) = locate(pkt, false) else {
            return Inbound::NotApplicable;
        };
        if l4.proto == NatProto::Icmp && pkt[l4.hl] != 0 {
            return Inbound::NotApplicable;
        }
        let Some(key) = self.by_external.get(&(l4.proto, l4.dst_port)).copied() else {
            return Inbound::NoMapping;
        };
        let cfg = self.cfg.clone();
        let Some(flow) = self.flows.get_mut(&key) else {
            return Inbound::NoMapping;
        };
        // Address-dependent filtering: only the remote the guest talked to gets in.
        if flow.remote.0 != src || flow.remote.1 != l4.src_port {
            return Inbound::NoMapping;
        }
        flow.replied = true;
        refresh(&cfg, flow, l4.tcp_flags, now);
        let (ip, port) = flow.inside;
        rewrite(pkt, &l4, 16, ip, port);
        Inbound::Translated
    }

    /// Forgets expired connections.
    pub fn poll(&mut self, now: Instant) {
        let by_external = &mut self.by_external;
        self.flows.retain(|_, f| {
            let keep = now < f.expires;
            if !keep {
                by_external.remove(&(f.proto, f.external_port));
            }
            keep
        });
    }

    /// When the next connection expires.
    pub fn poll_at(&self) -> Option<Instant> {
        self.flows.values().map(|f| f.expires).min()
    }

    fn allocate(&mut self, proto: NatProto, wanted: u16, now: Instant) -> Option<u16> {
        if self.flows.len() >= self.cfg.max_flows {
            self.poll(now);
            if self.flows.len() >= self.cfg.max_flows {
                return None;
            }
        }
        let (lo, hi) = (self.cfg.port_min, self.cfg.port_max.max(self.cfg.port_min));
        let free = |t: &Self, p: u16| !t.by_external.contains_key(&(proto, p));
        if (lo..=hi).contains(&wanted) && free(self, wanted) {
            return Some(wanted);
        }
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let p = self.cursor;
            self.cursor = if self.cursor >= hi {
                lo
            } else {
                self.cursor + 1
            };
            if (lo..=hi).contains(&p) && free(self, p) {
                return Some(p);
            }
        }
        None
    }
}

fn refresh(cfg: &NatConfig, flow: &mut NatFlow, tcp_flags: u8, now: Instant) {
    const FIN: u8 = 0x01;
    const RST: u8 = 0x04;
    let timeout = match flow.proto {
        NatProto::Icmp => cfg.icmp,
        NatProto::Udp if flow.replied => cfg.udp_stream,
        NatProto::Udp => cfg.udp,
        NatProto::Tcp => {
            if tcp_flags & (FIN | RST) != 0 {
                flow.closing = true;
            }
            if flow.replied && !flow.closing {
                cfg.tcp_established
            } else {
                cfg.tcp_transitory
            }
        }
    };
    flow.expires = now + timeout;
}

fn addrs(pkt: &[u8]) -> Option<(Ipv4Address, Ipv4Address)> {
    let p = crate::wire::ipv4_checked(pkt)?;
    Some((p.src_addr(), p.dst_addr()))
}

/// Finds the layer-4 header; `outbound` picks the source port (else the destination)
/// as the field NAT rewrites. None for fragments, other protocols, short headers.
fn locate(pkt: &[u8], outbound: bool) -> Option<L4> {
    let p = crate::wire::ipv4_checked(pkt)?;
    if p.more_frags() || p.frag_offset() != 0 {
        return None;
    }
    let hl = usize::from(p.header_len());
    let l4_len = usize::from(p.total_len()).checked_sub(hl)?;
    let (proto, min, csum) = match p.next_header() {
        IpProtocol::Tcp => (NatProto::Tcp, 20, 16),
        IpProtocol::Udp => (NatProto::Udp, 8, 6),
        IpProtocol::Icmp => (NatProto::Icmp, 8, 2),
        _ => return None,
    };
    if l4_len < min {
        return None;
    }
    let (src_port, dst_port, port_at) = if proto == NatProto::Icmp {
        // The echo identifier plays the guest's port; the remote "port" is 0.
        let id = get16(pkt, hl + 4)?;
        if outbound {
            (id, 0, hl + 4)
        } else {
            (0, id, hl + 4)
        }
    } else {
        let (s, d) = (get16(pkt, hl)?, get16(pkt, hl + 2)?);
        (s, d, if outbound { hl } else { hl + 2 })
    };
    let tcp_flags = if proto == NatProto::Tcp {
        pkt[hl + 13]
    } else {
        0
    };
    Some(L4 {
        proto,
        hl,
        port_at,
        csum_at: hl + csum,
        src_port,
        dst_port,
        tcp_flags,
    })
}

/// Rewrites the address at `addr_at` (12 source, 16 destination) and the port/id,
/// updating the IPv4 and layer-4 checksums.
fn rewrite(pkt: &mut [u8], l4: &L4, addr_at: usize, addr: Ipv4Address, port: u16) {
    let old_addr = u32::from_be_bytes([
        pkt[addr_at],
        pkt[addr_at + 1],
        pkt[addr_at + 2],
        pkt[addr_at + 3],
    ]);
    let new_addr = u32::from(addr);
    pkt[addr_at..addr_at + 4].copy_from_slice(&addr.octets());
    if let Some(c) = get16(pkt, 10) {
        put16(pkt, 10, update32(c, old_addr, new_addr));
    }
    let old_port = get16(pkt, l4.port_at).unwrap_or(0);
    put16(pkt, l4.port_at, port);
    let Some(c) = get16(pkt, l4.csum_at) else {
        return;
    };
    let c = match l4.proto {
        NatProto::Icmp => update16(c, old_port, port),
        NatProto::Udp if c == 0 => return,
        NatProto::Udp => {
            let c = update16(update32(c, old_addr, new_addr), old_port, port);
            if c == 0 {
                0xffff
            } else {
                c
            }
        }
        NatProto::Tcp => update16(update32(c, old_addr, new_addr), old_port, port),
    };
    put16(pkt, l4.csum_at, c);
}
