//! Transmit offloads a frontend asks for, completed in software before a frame leaves
//! netback, so that everything the switch carries is a complete wire frame.
//!
//! netif.h lets a frontend send a frame with `NETTXF_csum_blank` (its TCP or UDP
//! checksum is not filled in; every backend must accept this for IPv4, which is why
//! Linux netfront always does it) and, when the backend offers `feature-gso-tcpv4`,
//! a GSO extra: one TCP frame of up to 64 KiB to be cut into segments of `size`
//! payload bytes. Linux netback passes both on to the kernel as a partial checksum
//! and a GSO skb; here the frame is finished on the spot: the checksum is computed
//! from scratch (whatever the frontend left in the field is ignored), and a GSO frame
//! becomes the segments a NIC would put on the wire, each with its own IP length,
//! IPv4 id, TCP sequence number, flags and checksums.
//!
//! A frame whose headers cannot carry what it asks for (csum_blank on something that is
//! not TCP or UDP, GSO on something that is not TCP of the right IP version, headers
//! running past the frame, an IP fragment) is refused with an ERROR response and
//! counted (`tx_bad_offload`), as Linux netback drops a frame whose checksum it cannot
//! set up.

use xennet_ring::netif::{XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// IPv6 extension headers that may sit between the fixed header and TCP/UDP.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_DEST_OPTS: u8 = 60;
/// At most this many extension headers are walked (a bound on peer-driven work).
const IPV6_MAX_EXT: usize = 4;

/// The smallest GSO segment accepted (Linux's TCP_MIN_SND_MSS): a frontend cannot make
/// one 64 KiB frame cost thousands of segments.
const MIN_MSS: usize = 48;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// What the frontend asked for on one transmitted frame (from its first slot's flags and
/// its GSO extra), copied out of the ring once at parse time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TxOffload {
    /// `NETTXF_csum_blank`: the L4 checksum is to be filled in.
    pub(super) csum_blank: bool,
    /// A GSO extra: (segment payload size, `XEN_NETIF_GSO_TYPE_*`).
    pub(super) gso: Option<(u16, u8)>,
}

impl TxOffload {
    /// Nothing to do: the frame goes out as it is.
    pub(super) fn is_none(&self) -> bool {
        !self.csum_blank && self.gso.is_none()
    }
}

/// Why a frame's offload request could not be honoured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OffloadError {
    /// Not IPv4 or IPv6 (after at most one VLAN tag), or its headers run past the frame.
    Unparsable,
    /// The transport is not TCP or UDP (or, for GSO, not TCP), or the packet is an IP
    /// fragment.
    Transport,
    /// The GSO type does not match the IP version, or its segment size is below
    /// [`MIN_MSS`].
    GsoType,
}

/// Where the headers of one frame are.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Start of the IP header.
    l3: usize,
    /// Start of the TCP/UDP header.
    l4: usize,
    /// End of the IP packet (a frame may carry Ethernet padding after it).
    end: usize,
    v6: bool,
    proto: u8,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn parse(frame: &[u8]) -> Result<Layout, OffloadError> {
    let bad = OffloadError::Unparsable;
    let mut l3 = 14;
    if frame.len() < l3 {
        return Err(bad);
    }
    let mut ethertype = be16(frame, 12);
    if ethertype == ETHERTYPE_VLAN {
        l3 = 18;
        if frame.len() < l3 {
            return Err(bad);
        }
        ethertype = be16(frame, 16);
    }
    match ethertype {
        ETHERTYPE_IPV4 => {
            let ip = frame.get(l3..l3 + 20).ok_or(bad)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 {
                return Err(bad);
            }
            let total = usize::from(be16(ip, 2));
            let end = l3 + total;
            if total < ihl || end > frame.len() {
                return Err(bad);
            }
            // More fragments, or a fragment offset: the transport header is not whole.
            if be16(ip, 6) & 0x3fff != 0 {
                return Err(OffloadError::Transport);
            }
            Ok(Layout {
                l3,
                l4: l3 + ihl,
                end,
                v6: false,
                proto: ip[9],
            })
        }
        ETHERTYPE_IPV6 => {
            let ip = frame.get(l3..l3 + 40).ok_or(bad)?;
            if ip[0] >> 4 != 6 {
                return Err(bad);
            }
            let end = l3 + 40 + usize::from(be16(ip, 4));
            if end > frame.len() {
                return Err(bad);
            }
            let (mut next, mut l4) = (ip[6], l3 + 40);
            for _ in 0..IPV6_MAX_EXT {
                if !matches!(next, IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS) {
                    break;
                }
                let ext = frame.get(l4..l4 + 2).ok_or(bad)?;
                next = ext[0];
                l4 += (usize::from(ext[1]) + 1) * 8;
                if l4 > end {
                    return Err(bad);
                }
            }
            Ok(Layout {
                l3,
                l4,
                end,
                v6: true,
                proto: next,
            })
        }
        _ => Err(bad),
    }
}

/// The ones' complement sum of `data` (as 16-bit big-endian words, odd byte padded),
/// added to `acc`, not yet folded.
fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(be16(rest, i));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Fills in the TCP or UDP checksum of the packet `frame[l.l3..l.end]`.
fn fill_l4(frame: &mut [u8], l: &Layout) -> Result<(), OffloadError> {
    let csum_at = match l.proto {
        PROTO_TCP if l.l4 + 20 <= l.end => l.l4 + 16,
        PROTO_UDP if l.l4 + 8 <= l.end => l.l4 + 6,
        PROTO_TCP | PROTO_UDP => return Err(OffloadError::Unparsable),
        _ => return Err(OffloadError::Transport),
    };
    put16(frame, csum_at, 0);
    let len = (l.end - l.l4) as u64;
    let pseudo = if l.v6 {
        sum(0, &frame[l.l3 + 8..l.l3 + 40])
    } else {
        sum(0, &frame[l.l3 + 12..l.l3 + 20])
    };
    let acc = sum(pseudo + len + u64::from(l.proto), &frame[l.l4..l.end]);
    let mut c = !fold(acc);
    if c == 0 && l.proto == PROTO_UDP {
        c = 0xffff;
    }
    put16(frame, csum_at, c);
    Ok(())
}

fn fill_ipv4_header(frame: &mut [u8], l: &Layout) {
    put16(frame, l.l3 + 10, 0);
    let c = !fold(sum(0, &frame[l.l3..l.l4]));
    put16(frame, l.l3 + 10, c);
}

/// Completes what `off` asks of `frame` and hands the result to `deliver`: the frame
/// itself (checksum filled in) or its GSO segments, built one at a time in `scratch`
/// (at least as long as `frame`). Returns how many frames were delivered.
pub(super) fn complete(
    frame: &mut [u8],
    off: TxOffload,
    scratch: &mut [u8],
    deliver: &mut dyn FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let l = parse(frame)?;
    let Some((mss, gso_type)) = off.gso else {
        fill_l4(frame, &l)?;
        deliver(frame);
        return Ok(1);
    };
    if l.proto != PROTO_TCP {
        return Err(OffloadError::Transport);
    }
    let want = if l.v6 {
        XEN_NETIF_GSO_TYPE_TCPV6
    } else {
        XEN_NETIF_GSO_TYPE_TCPV4
    };
    if gso_type != want {
        return Err(OffloadError::GsoType);
    }
    let tcp = frame.get(l.l4..l.l4 + 20).ok_or(OffloadError::Unparsable)?;
    let hdr = l.l4 + usize::from(tcp[12] >> 4) * 4;
    if hdr < l.l4 + 20 || hdr > l.end {
        return Err(OffloadError::Unparsable);
    }
    let payload = l.end - hdr;
    let mss = usize::from(mss);
    if mss < MIN_MSS {
        return Err(OffloadError::GsoType);
    }
    if payload <= mss {
        // One segment: the frame as it is, finished.
        fill_l4(frame, &l)?;
        if !l.v6 {
            fill_ipv4_header(frame, &l);
        }
        deliver(frame);
        return Ok(1);
    }
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let flags = tcp[13];
    let id = be16(frame, l.l3 + 4);
    let segments = payload.div_ceil(mss);
    for i in 0..segments {
        let from = hdr + i * mss;
        let len = mss.min(l.end - from);
        let out = &mut scratch[..hdr + len];
        out[..hdr].copy_from_slice(&frame[..hdr]);
        out[hdr..].copy_from_slice(&frame[from..from + len]);
        let seg = Layout {
            end: hdr + len,
            ..l
        };
        if l.v6 {
            put16(out, l.l3 + 4, (seg.end - l.l3 - 40) as u16);
        } else {
            put16(out, l.l3 + 2, (seg.end - l.l3) as u16);
            put16(out, l.l3 + 4, id.wrapping_add(i as u16));
            fill_ipv4_header(out, &seg);
        }
        let s = seq.wrapping_add((i * mss) as u32);
        out[l.l4 + 4..l.l4 + 8].copy_from_slice(&s.to_be_bytes());
        let mut f = flags;
        if i + 1 < segments {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        out[l.l4 + 13] = f;
        fill_l4(out, &seg)?;
        deliver(out);
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + TCP frame with `payload` bytes of data, checksums zero.
    fn tcp4(payload: usize, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        put16(&mut f, 12, ETHERTYPE_IPV4);
        f[14] = 0x45;
        put16(&mut f, 16, (40 + payload) as u16);
        put16(&mut f, 18, 0x1234);
        f[22] = 64;
        f[23] = PROTO_TCP;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[38..42].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = flags;
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        f
    }

    /// The checksum over a finished packet verifies to zero (RFC 1071).
    fn verifies(frame: &[u8]) -> bool {
        let l = parse(frame).unwrap();
        let pseudo = sum(0, &frame[l.l3 + 12..l.l3 + 20]);
        let acc = sum(pseudo + (l.end - l.l4) as u64 + 6, &frame[l.l4..l.end]);
        fold(acc) == 0xffff && fold(sum(0, &frame[l.l3..l.l4])) == 0xffff
    }

    #[test]
    fn odd_lengths_sum_with_a_padded_last_byte() {
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(fold(sum(0, &[0xff, 0xff, 0x00, 0x01])), 0x0001);
    }

    #[test]
    fn gso_frame_becomes_segments_with_sequence_flags_and_checksums() {
        let mut f = tcp4(3000, TCP_FIN | TCP_PSH | TCP_CWR | 0x10);
        let original = f.clone();
        let mut scratch = vec![0u8; f.len()];
        let mut segs: Vec<Vec<u8>> = Vec::new();
        let off = TxOffload {
            csum_blank: true,
            gso: Some((1448, XEN_NETIF_GSO_TYPE_TCPV4)),
        };
        let n = complete(&mut f, off, &mut scratch, &mut |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(n, 3);
        let mut data = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(verifies(s), "segment {i} checksums");
            let seq = u32::from_be_bytes([s[38], s[39], s[40], s[41]]);
            assert_eq!(seq, 0xffff_fff0u32.wrapping_add(1448 * i as u32));
            assert_eq!(be16(s, 18), 0x1234 + i as u16);
            assert_eq!(usize::from(be16(s, 16)), s.len() - 14);
            let last = i == 2;
            assert_eq!(s[47] & (TCP_FIN | TCP_PSH) != 0, last);
            assert_eq!(s[47] & TCP_CWR != 0, i == 0);
            data.extend_from_slice(&s[54..]);
        }
        assert_eq!(data, original[54..]);
    }

    #[test]
    fn what_cannot_be_offloaded_is_refused() {
        let mut scratch = vec![0u8; 2048];
        let blank = TxOffload {
            csum_blank: true,
            gso: None,
        };
        let mut icmp = tcp4(10, 0);
        icmp[23] = 1;
        let mut sink = |_: &[u8]| {};
        assert_eq!(
            complete(&mut icmp, blank, &mut scratch, &mut sink),
            Err(OffloadError::Transport)
        );
        let mut short = tcp4(10, 0);
        put16(&mut short, 16, 2000);
        assert_eq!(
            complete(&mut short, blank, &mut scratch, &mut sink),
            Err(OffloadError::Unparsable)
        );
        let mut v6_type = tcp4(10, 0);
        let gso6 = TxOffload {
            csum_blank: true,
            gso: Some((4, XEN_NETIF_GSO_TYPE_TCPV6)),
        };
        assert_eq!(
            complete(&mut v6_type, gso6, &mut scratch, &mut sink),
            Err(OffloadError::GsoType)
        );
        let mut tiny = tcp4(1000, 0);
        let gso_tiny = TxOffload {
            csum_blank: true,
            gso: Some((8, XEN_NETIF_GSO_TYPE_TCPV4)),
        };
        assert_eq!(
            complete(&mut tiny, gso_tiny, &mut scratch, &mut sink),
            Err(OffloadError::GsoType),
            "an 8-byte MSS would make 125 segments of one frame"
        );
    }
}
