//! The netif wire format (`xen/io/netif.h`): requests and responses of the tx and rx
//! rings, extra-info slots, flags and status codes.
//!
//! Every type is `#[repr(C)]` with netif.h's field names and derives zerocopy's
//! traits, so a slot copied out of shared memory becomes a typed local value without
//! `unsafe`. Validation of a peer's values belongs to the drivers; these are plain data.

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::grant::GrantRef;

/// Entries in a one-page tx ring (`__CONST_RING_SIZE(netif_tx, 4096)`).
pub const TX_RING_SIZE: usize = 256;
/// Entries in a one-page rx ring (`__CONST_RING_SIZE(netif_rx, 4096)`).
pub const RX_RING_SIZE: usize = 256;
/// Slots a backend must accept in one tx packet (`XEN_NETIF_NR_SLOTS_MIN`).
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;
/// Largest tx packet (`XEN_NETIF_MAX_TX_SIZE`).
pub const XEN_NETIF_MAX_TX_SIZE: usize = 0xFFFF;

/// `NETIF_RSP_DROPPED`: the packet was dropped.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// `NETIF_RSP_ERROR`: the request was malformed or could not be served.
pub const NETIF_RSP_ERROR: i16 = -1;
/// `NETIF_RSP_OKAY`: success.
pub const NETIF_RSP_OKAY: i16 = 0;
/// `NETIF_RSP_NULL`: an unused response slot (after an extra-info request).
pub const NETIF_RSP_NULL: i16 = 1;

bitflags! {
    /// `NETTXF_*` flags of a [`TxRequest`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct TxFlags: u16 {
        /// `NETTXF_csum_blank`: the protocol checksum field is blank (offload).
        const CSUM_BLANK = 1 << 0;
        /// `NETTXF_data_validated`: the checksum has been validated.
        const DATA_VALIDATED = 1 << 1;
        /// `NETTXF_more_data`: the packet continues in the next slot.
        const MORE_DATA = 1 << 2;
        /// `NETTXF_extra_info`: a [`ExtraInfo`] slot follows this one.
        const EXTRA_INFO = 1 << 3;
    }
}

bitflags! {
    /// `NETRXF_*` flags of an [`RxResponse`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RxFlags: u16 {
        /// `NETRXF_data_validated`: the checksum has been validated.
        const DATA_VALIDATED = 1 << 0;
        /// `NETRXF_csum_blank`: the protocol checksum field is blank.
        const CSUM_BLANK = 1 << 1;
        /// `NETRXF_more_data`: the packet continues in the next slot.
        const MORE_DATA = 1 << 2;
        /// `NETRXF_extra_info`: an [`ExtraInfo`] slot follows this one.
        const EXTRA_INFO = 1 << 3;
        /// `NETRXF_gso_prefix`: a GSO prefix descriptor (legacy).
        const GSO_PREFIX = 1 << 4;
    }
}

/// `struct netif_tx_request`, 12 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct TxRequest {
    /// Grant of the page holding this slot's bytes.
    pub gref: GrantRef,
    /// Offset of the bytes within the page.
    pub offset: u16,
    /// `NETTXF_*`, see [`TxFlags`].
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// First slot: the whole packet's length; later slots: this fragment's length.
    pub size: u16,
}

impl TxRequest {
    /// The flags as a typed value (unknown bits dropped).
    pub fn tx_flags(&self) -> TxFlags {
        TxFlags::from_bits_truncate(self.flags)
    }
}

/// `struct netif_tx_response`, 4 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct TxResponse {
    /// The id of the request answered.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}

/// `struct netif_rx_request`, 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// Padding.
    pub pad: u16,
    /// Grant of the empty page offered for a received frame.
    pub gref: GrantRef,
}

/// `struct netif_rx_response`, 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RxResponse {
    /// The id of the request whose buffer was used.
    pub id: u16,
    /// Offset of the data in the page.
    pub offset: u16,
    /// `NETRXF_*`, see [`RxFlags`].
    pub flags: u16,
    /// `> 0`: bytes in this slot; `< 0`: a `NETIF_RSP_*` error.
    pub status: i16,
}

impl RxResponse {
    /// The flags as a typed value (unknown bits dropped).
    pub fn rx_flags(&self) -> RxFlags {
        RxFlags::from_bits_truncate(self.flags)
    }
}

/// `XEN_NETIF_EXTRA_TYPE_NONE`: never valid on the wire.
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_EXTRA_TYPE_GSO`.
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_ADD`.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_DEL`.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// `XEN_NETIF_EXTRA_TYPE_HASH`.
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// `XEN_NETIF_EXTRA_TYPE_MAX`: first invalid type.
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;
/// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;
/// `XEN_NETIF_GSO_TYPE_NONE`.
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV6`.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// `struct netif_extra_info`, 8 bytes: `type`, `flags`, then a 6-byte union kept as raw
/// bytes (`u`); [`ExtraInfo::decode`] turns it into a typed [`Extra`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*`.
    pub type_: u8,
    /// `XEN_NETIF_EXTRA_FLAG_*`.
    pub flags: u8,
    /// The union `u` (gso / mcast / hash), little-endian as on x86 and Arm.
    pub u: [u8; 6],
}

/// A decoded extra-info slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extra {
    /// `u.gso`: segment size, `XEN_NETIF_GSO_TYPE_*`, features.
    Gso {
        /// Maximum segment size.
        size: u16,
        /// `XEN_NETIF_GSO_TYPE_*`.
        gso_type: u8,
        /// `XEN_NETIF_GSO_FEAT_*` (none defined yet).
        features: u16,
    },
    /// `u.mcast` with `MCAST_ADD`.
    McastAdd([u8; 6]),
    /// `u.mcast` with `MCAST_DEL`.
    McastDel([u8; 6]),
    /// `u.hash`: hash type, algorithm, value.
    Hash {
        /// `_XEN_NETIF_CTRL_HASH_TYPE_*`.
        hash_type: u8,
        /// `XEN_NETIF_CTRL_HASH_ALGORITHM_*`.
        algorithm: u8,
        /// The hash value, little-endian.
        value: [u8; 4],
    },
}

/// Why an extra-info slot is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtraError {
    /// Type 0 or `>= XEN_NETIF_EXTRA_TYPE_MAX`.
    BadType(u8),
}

impl ExtraInfo {
    /// Build an extra-info slot from a typed value; `more` sets `XEN_NETIF_EXTRA_FLAG_MORE`.
    pub fn encode(extra: Extra, more: bool) -> ExtraInfo {
        let flags = if more { XEN_NETIF_EXTRA_FLAG_MORE } else { 0 };
        let (type_, u) = match extra {
            Extra::Gso {
                size,
                gso_type,
                features,
            } => {
                let s = size.to_le_bytes();
                let f = features.to_le_bytes();
                (
                    XEN_NETIF_EXTRA_TYPE_GSO,
                    [s[0], s[1], gso_type, 0, f[0], f[1]],
                )
            }
            Extra::McastAdd(a) => (XEN_NETIF_EXTRA_TYPE_MCAST_ADD, a),
            Extra::McastDel(a) => (XEN_NETIF_EXTRA_TYPE_MCAST_DEL, a),
            Extra::Hash {
                hash_type,
                algorithm,
                value,
            } => (
                XEN_NETIF_EXTRA_TYPE_HASH,
                [hash_type, algorithm, value[0], value[1], value[2], value[3]],
            ),
        };
        ExtraInfo { type_, flags, u }
    }

    /// Decode the union according to `type_`.
    pub fn decode(&self) -> Result<Extra, ExtraError> {
        let u = self.u;
        match self.type_ {
            XEN_NETIF_EXTRA_TYPE_GSO => Ok(Extra::Gso {
                size: u16::from_le_bytes([u[0], u[1]]),
                gso_type: u[2],
                features: u16::from_le_bytes([u[4], u[5]]),
            }),
            XEN_NETIF_EXTRA_TYPE_MCAST_ADD => Ok(Extra::McastAdd(u)),
            XEN_NETIF_EXTRA_TYPE_MCAST_DEL => Ok(Extra::McastDel(u)),
            XEN_NETIF_EXTRA_TYPE_HASH => Ok(Extra::Hash {
                hash_type: u[0],
                algorithm: u[1],
                value: [u[2], u[3], u[4], u[5]],
            }),
            t => Err(ExtraError::BadType(t)),
        }
    }

    /// Whether another extra-info slot follows.
    pub fn more(&self) -> bool {
        self.flags & XEN_NETIF_EXTRA_FLAG_MORE != 0
    }
}

impl From<ExtraInfo> for TxRequest {
    /// An extra-info slot occupies a whole tx request slot (its first 8 bytes).
    fn from(e: ExtraInfo) -> TxRequest {
        let mut req = TxRequest::default();
        let b = e.as_bytes();
        req.as_mut_bytes()[..8].copy_from_slice(b);
        req
    }
}

impl From<TxRequest> for ExtraInfo {
    /// Reinterpret the first 8 bytes of a tx slot as an extra-info slot.
    fn from(r: TxRequest) -> ExtraInfo {
        let mut e = ExtraInfo::default();
        e.as_mut_bytes().copy_from_slice(&r.as_bytes()[..8]);
        e
    }
}

impl From<ExtraInfo> for RxResponse {
    /// An extra-info slot occupies a whole rx response slot.
    fn from(e: ExtraInfo) -> RxResponse {
        let mut rsp = RxResponse::default();
        rsp.as_mut_bytes().copy_from_slice(e.as_bytes());
        rsp
    }
}

impl From<RxResponse> for ExtraInfo {
    /// Reinterpret an rx response slot as an extra-info slot.
    fn from(r: RxResponse) -> ExtraInfo {
        let mut e = ExtraInfo::default();
        e.as_mut_bytes().copy_from_slice(r.as_bytes());
        e
    }
}

/// `struct xen_netif_ctrl_request` (control ring), 16 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CtrlRequest {
    /// Echoed in the response.
    pub id: u16,
    /// `XEN_NETIF_CTRL_TYPE_*`.
    pub type_: u16,
    /// Type-specific arguments.
    pub data: [u32; 3],
}

/// `struct xen_netif_ctrl_response` (control ring), 12 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CtrlResponse {
    /// The request's id.
    pub id: u16,
    /// The request's type.
    pub type_: u16,
    /// `XEN_NETIF_CTRL_STATUS_*`.
    pub status: u32,
    /// Type-specific result.
    pub data: u32,
}

/// `struct xen_netif_gref`: one entry of an ADD/DEL_GREF_MAPPING page, 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CtrlGref {
    /// The grant to map.
    pub gref: GrantRef,
    /// `XEN_NETIF_CTRLF_GREF_*`.
    pub flags: u16,
    /// Out: `GNTST_*`.
    pub status: u16,
}

/// `XEN_NETIF_CTRL_TYPE_*` request types.
pub mod ctrl_type {
    /// Invalid.
    pub const INVALID: u16 = 0;
    /// `GET_HASH_FLAGS`.
    pub const GET_HASH_FLAGS: u16 = 1;
    /// `SET_HASH_FLAGS`.
    pub const SET_HASH_FLAGS: u16 = 2;
    /// `SET_HASH_KEY`.
    pub const SET_HASH_KEY: u16 = 3;
    /// `GET_HASH_MAPPING_SIZE`.
    pub const GET_HASH_MAPPING_SIZE: u16 = 4;
    /// `SET_HASH_MAPPING_SIZE`.
    pub const SET_HASH_MAPPING_SIZE: u16 = 5;
    /// `SET_HASH_MAPPING`.
    pub const SET_HASH_MAPPING: u16 = 6;
    /// `SET_HASH_ALGORITHM`.
    pub const SET_HASH_ALGORITHM: u16 = 7;
    /// `GET_GREF_MAPPING_SIZE`.
    pub const GET_GREF_MAPPING_SIZE: u16 = 8;
    /// `ADD_GREF_MAPPING`.
    pub const ADD_GREF_MAPPING: u16 = 9;
    /// `DEL_GREF_MAPPING`.
    pub const DEL_GREF_MAPPING: u16 = 10;
}

/// `XEN_NETIF_CTRL_STATUS_*`.
pub mod ctrl_status {
    /// Success.
    pub const SUCCESS: u32 = 0;
    /// Not supported.
    pub const NOT_SUPPORTED: u32 = 1;
    /// Invalid parameter.
    pub const INVALID_PARAMETER: u32 = 2;
    /// Buffer overflow.
    pub const BUFFER_OVERFLOW: u32 = 3;
}

/// `XEN_NETIF_CTRLF_GREF_readonly`: the entry's grant is read-only.
pub const XEN_NETIF_CTRLF_GREF_READONLY: u16 = 1 << 0;

/// `XEN_NETIF_CTRL_HASH_TYPE_*`: what a hash is computed over.
pub mod hash_type {
    /// Source and destination IPv4 addresses.
    pub const IPV4: u32 = 1 << 0;
    /// IPv4 addresses and TCP ports.
    pub const IPV4_TCP: u32 = 1 << 1;
    /// Source and destination IPv6 addresses.
    pub const IPV6: u32 = 1 << 2;
    /// IPv6 addresses and TCP ports.
    pub const IPV6_TCP: u32 = 1 << 3;
}

/// `XEN_NETIF_CTRL_HASH_ALGORITHM_NONE`: the backend steers as it likes.
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_NONE: u32 = 0;
/// `XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ`.
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ: u32 = 1;

/// The Toeplitz hash of netif.h (`xen_netif_toeplitz_hash`), for multi-queue steering.
pub fn toeplitz_hash(key: &[u8], buf: &[u8]) -> u32 {
    let mut prefix: u64 = 0;
    let mut keyi = 0usize;
    while keyi < 8 {
        prefix = (prefix << 8) | u64::from(key.get(keyi).copied().unwrap_or(0));
        keyi += 1;
    }
    let mut hash: u64 = 0;
    for &b in buf {
        let mut byte = b;
        for _ in 0..8 {
            if byte & 0x80 != 0 {
                hash ^= prefix;
            }
            prefix <<= 1;
            byte <<= 1;
        }
        // Pull the next key byte into the low end of the 64-bit window.
        prefix |= u64::from(key.get(keyi).copied().unwrap_or(0));
        keyi += 1;
    }
    (hash >> 32) as u32
}

/// Length of an Ethernet header (`ETH_HLEN`): destination, source, ethertype.
pub const ETH_HLEN: usize = 14;

/// The queue a frame's flow maps to when no Toeplitz table is set: the IPv4 addresses
/// and ports (bytes 26..38, or whatever bytes a shorter frame has) hashed with FNV-1a
/// and a final mix, so one flow always takes one queue and its frames stay in order.
/// Both ends use it: netfront to pick a transmit queue, netback a receive queue.
pub fn flow_queue(frame: &[u8], queues: usize) -> usize {
    if queues <= 1 {
        return 0;
    }
    let key = frame.get(26..38).unwrap_or(frame);
    let mut h: u32 = 0x811c_9dc5;
    for &b in key {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h as usize % queues
}

/// The bytes an enabled netif.h hash type covers in an Ethernet frame: the most
/// specific type that applies wins (addresses and TCP ports before addresses alone),
/// as Linux netback chooses. `types` is a [`hash_type`] mask. Returns how many bytes
/// were written to `buf`, or `None` when no enabled type applies (not IP, a fragment
/// for the TCP types, a truncated header).
pub fn hash_input(frame: &[u8], types: u32, buf: &mut [u8; 36]) -> Option<usize> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(14..)?;
    let (addrs, l4, tcp_type, ip_type) = match ethertype {
        0x0800 => {
            let ihl = usize::from(*ip.first()? & 0x0f) * 4;
            if ihl < 20 || ip.len() < ihl {
                return None;
            }
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            let tcp = ip[9] == 6 && !frag;
            (
                &ip[12..20],
                ip.get(ihl..ihl + 4).filter(|_| tcp),
                hash_type::IPV4_TCP,
                hash_type::IPV4,
            )
        }
        0x86dd => {
            let addrs = ip.get(8..40)?;
            let tcp = ip[6] == 6;
            (
                addrs,
                ip.get(40..44).filter(|_| tcp),
                hash_type::IPV6_TCP,
                hash_type::IPV6,
            )
        }
        _ => return None,
    };
    let n = addrs.len();
    buf[..n].copy_from_slice(addrs);
    match l4 {
        Some(ports) if types & tcp_type != 0 => {
            buf[n..n + 4].copy_from_slice(ports);
            Some(n + 4)
        }
        _ if types & ip_type != 0 => Some(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn sizes_match_netif_h() {
        assert_eq!(size_of::<TxRequest>(), 12);
        assert_eq!(size_of::<TxResponse>(), 4);
        assert_eq!(size_of::<RxRequest>(), 8);
        assert_eq!(size_of::<RxResponse>(), 8);
        assert_eq!(size_of::<ExtraInfo>(), 8);
        assert_eq!(size_of::<CtrlRequest>(), 16);
        assert_eq!(size_of::<CtrlResponse>(), 12);
        assert_eq!(size_of::<CtrlGref>(), 8);
    }

    #[test]
    fn extra_info_round_trips_through_slots() {
        let gso = Extra::Gso {
            size: 1448,
            gso_type: XEN_NETIF_GSO_TYPE_TCPV4,
            features: 0,
        };
        let e = ExtraInfo::encode(gso, true);
        assert!(e.more());
        let slot: TxRequest = e.into();
        let back: ExtraInfo = slot.into();
        assert_eq!(back.decode(), Ok(gso));
        let rsp: RxResponse = ExtraInfo::encode(Extra::McastAdd([1, 2, 3, 4, 5, 6]), false).into();
        assert_eq!(
            ExtraInfo::from(rsp).decode(),
            Ok(Extra::McastAdd([1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(ExtraInfo::default().decode(), Err(ExtraError::BadType(0)));
    }

    #[test]
    fn toeplitz_matches_the_rss_verification_vector() {
        // Microsoft's RSS verification suite: key, IPv4 src 66.9.149.187 dst 161.142.100.80.
        let key = [
            0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
            0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
            0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
        ];
        let input = [66, 9, 149, 187, 161, 142, 100, 80];
        assert_eq!(toeplitz_hash(&key, &input), 0x323e_8fc2);
        // The same flow with TCP ports 2794 -> 1766, through `hash_input`.
        let mut frame = [0u8; 54];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[23] = 6;
        frame[26..34].copy_from_slice(&input);
        frame[34..38].copy_from_slice(&[0x0a, 0xea, 0x06, 0xe6]);
        let mut buf = [0u8; 36];
        let n = hash_input(&frame, hash_type::IPV4_TCP, &mut buf).unwrap();
        assert_eq!(toeplitz_hash(&key, &buf[..n]), 0x51cc_c178);
        let n = hash_input(&frame, hash_type::IPV4, &mut buf).unwrap();
        assert_eq!(toeplitz_hash(&key, &buf[..n]), 0x323e_8fc2);
        // A fragment is hashed over its addresses only; no enabled type: no hash.
        frame[20] = 0x20;
        let n = hash_input(&frame, hash_type::IPV4 | hash_type::IPV4_TCP, &mut buf).unwrap();
        assert_eq!(n, 8);
        assert_eq!(hash_input(&frame, hash_type::IPV4_TCP, &mut buf), None);
        assert_eq!(hash_input(&frame[..20], hash_type::IPV4, &mut buf), None);
    }
}
