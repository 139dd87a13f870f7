//! The XenStore wire protocol of `xen/io/xs_wire.h`: a 16-byte header
//! (`type`, `req_id`, `tx_id`, `len`, little-endian u32 each) followed by `len`
//! bytes of payload, usually NUL-terminated strings.
//!
//! The header, types, errno names and path rules are `xennet_ring::xenstore::wire`,
//! shared with the `no_std` ring client; this module re-exports them and adds the
//! helpers that build `Vec`s.
//!
//! Everything here is pure parsing and formatting, so it can be fuzzed and
//! reused by the daemon and the client alike.

pub use xennet_ring::xenstore::wire::*;

/// One message: header fields plus payload, as it goes on the wire.
pub fn encode(ty: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    let len = payload.len() as u32;
    out.extend_from_slice(
        &Header {
            ty: ty as u32,
            req_id,
            tx_id,
            len,
        }
        .to_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

/// Splits a payload into its NUL-terminated strings. A trailing string without a
/// NUL is kept as well (xenstored accepts WRITE's value without one).
pub fn split_strings(p: &[u8]) -> Vec<&[u8]> {
    strings(p).collect()
}

/// Joins strings, each followed by a NUL.
pub fn join_strings<S: AsRef<[u8]>>(parts: &[S]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p.as_ref());
        v.push(0);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join() {
        assert_eq!(split_strings(b"a\0bc\0"), vec![&b"a"[..], b"bc"]);
        assert_eq!(split_strings(b"a\0bc"), vec![&b"a"[..], b"bc"]);
        assert!(split_strings(b"").is_empty());
        assert_eq!(join_strings(&["x", "y"]), b"x\0y\0");
    }

    #[test]
    fn encode_is_header_then_payload() {
        let m = encode(MsgType::Read, 7, 3, b"/a\0");
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&m[..HEADER_LEN]);
        let h = Header::parse(&h).unwrap();
        assert_eq!((h.ty, h.req_id, h.tx_id, h.len), (2, 7, 3, 3));
        assert_eq!(&m[HEADER_LEN..], b"/a\0");
        assert_eq!(Errno::from_payload(Errno::EACCES.payload()), Errno::EACCES);
    }

    #[test]
    fn errno_is_a_std_error_here() {
        let e: Box<dyn std::error::Error> = Box::new(Errno::ENOENT);
        assert_eq!(e.to_string(), "ENOENT");
    }
}
