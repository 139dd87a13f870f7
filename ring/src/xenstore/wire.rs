//! The XenStore wire protocol of `xen/io/xs_wire.h`: a 16-byte header (`type`,
//! `req_id`, `tx_id`, `len`, little-endian u32 each) followed by `len` bytes of
//! payload, usually NUL-terminated strings.
//!
//! Names mirror the C header, which documents each one. Everything here is pure
//! parsing without allocation, shared by the ring client below, the socket client
//! and the daemon (`xennet_xenstore::wire` re-exports it and adds the `Vec` helpers).

#![allow(missing_docs)] // the names are xs_wire.h's own

use core::fmt;

/// Size of `struct xsd_sockmsg`.
pub const HEADER_LEN: usize = 16;
/// `XENSTORE_PAYLOAD_MAX`: the largest payload either side may send.
pub const PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`.
pub const ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`.
pub const REL_PATH_MAX: usize = 2048;

/// `enum xsd_sockmsg_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MsgType {
    Control = 0,
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    ResetWatches = 21,
    DirectoryPart = 22,
}

impl MsgType {
    /// Decodes a wire value; `None` for unknown types (the daemon answers EINVAL).
    pub fn from_u32(v: u32) -> Option<Self> {
        use MsgType::*;
        Some(match v {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            _ => return None,
        })
    }
}

/// `struct xsd_sockmsg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub len: u32,
}

impl Header {
    /// Parses a header. The length is validated against [`PAYLOAD_MAX`].
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Self, Errno> {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let h = Header {
            ty: word(0),
            req_id: word(4),
            tx_id: word(8),
            len: word(12),
        };
        if h.len as usize > PAYLOAD_MAX {
            return Err(Errno::E2BIG);
        }
        Ok(h)
    }

    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.ty.to_le_bytes());
        b[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }
}

/// The error names of `xsd_errors[]`, in the header's order. Error replies carry
/// the name followed by a NUL (`"ENOENT\0"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Errno {
    EINVAL,
    EACCES,
    EEXIST,
    EISDIR,
    ENOENT,
    ENOMEM,
    ENOSPC,
    EIO,
    ENOTEMPTY,
    ENOSYS,
    EROFS,
    EBUSY,
    EAGAIN,
    EISCONN,
    E2BIG,
    EPERM,
}

impl Errno {
    pub const ALL: [Errno; 16] = {
        use Errno::*;
        [
            EINVAL, EACCES, EEXIST, EISDIR, ENOENT, ENOMEM, ENOSPC, EIO, ENOTEMPTY, ENOSYS, EROFS,
            EBUSY, EAGAIN, EISCONN, E2BIG, EPERM,
        ]
    };

    pub fn name(self) -> &'static str {
        let p = self.payload();
        // Every payload below is ASCII followed by one NUL.
        core::str::from_utf8(&p[..p.len() - 1]).unwrap_or("EINVAL")
    }

    /// Parses an error reply payload (`"EACCES\0"`); unknown names give `EINVAL`,
    /// as libxenstore does.
    pub fn from_payload(p: &[u8]) -> Errno {
        let name = p.split(|&b| b == 0).next().unwrap_or(&[]);
        Errno::ALL
            .into_iter()
            .find(|e| e.name().as_bytes() == name)
            .unwrap_or(Errno::EINVAL)
    }

    /// The reply payload for this error: its name and a NUL.
    pub fn payload(self) -> &'static [u8] {
        use Errno::*;
        match self {
            EINVAL => b"EINVAL\0",
            EACCES => b"EACCES\0",
            EEXIST => b"EEXIST\0",
            EISDIR => b"EISDIR\0",
            ENOENT => b"ENOENT\0",
            ENOMEM => b"ENOMEM\0",
            ENOSPC => b"ENOSPC\0",
            EIO => b"EIO\0",
            ENOTEMPTY => b"ENOTEMPTY\0",
            ENOSYS => b"ENOSYS\0",
            EROFS => b"EROFS\0",
            EBUSY => b"EBUSY\0",
            EAGAIN => b"EAGAIN\0",
            EISCONN => b"EISCONN\0",
            E2BIG => b"E2BIG\0",
            EPERM => b"EPERM\0",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Errno {}

/// The NUL-terminated strings of a payload, in order. A trailing string without a
/// NUL is yielded as well (xenstored accepts WRITE's value without one); an empty
/// payload has none.
pub fn strings(p: &[u8]) -> Strings<'_> {
    Strings { rest: p }
}

/// Iterator of [`strings`].
#[derive(Clone, Debug)]
pub struct Strings<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Strings<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        match self.rest.iter().position(|&b| b == 0) {
            Some(i) => {
                let (s, rest) = self.rest.split_at(i);
                self.rest = &rest[1..];
                Some(s)
            }
            None => Some(core::mem::take(&mut self.rest)),
        }
    }
}

/// Validates a path as xenstored does: absolute (`/...`) or relative to the
/// connection's home, or a special `@` watch path; only the characters
/// `[A-Za-z0-9_/@-]` (plus `.` and `:` as Xen's `is_valid_nodename` allows), no
/// `//`, no trailing `/` except for the root, and within the length limits.
pub fn check_path(path: &str) -> Result<(), Errno> {
    if path.is_empty() {
        return Err(Errno::EINVAL);
    }
    if let Some(rest) = path.strip_prefix('@') {
        // Special watch paths: @introduceDomain, @releaseDomain.
        return if rest.bytes().all(|b| b.is_ascii_alphanumeric()) && !rest.is_empty() {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        };
    }
    let max = if path.starts_with('/') {
        ABS_PATH_MAX
    } else {
        REL_PATH_MAX
    };
    if path.len() > max {
        return Err(Errno::EINVAL);
    }
    if path.contains("//") || (path.len() > 1 && path.ends_with('/')) {
        return Err(Errno::EINVAL);
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_-@.:".contains(&b))
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn header_round_trip_and_limit() {
        let h = Header {
            ty: 2,
            req_id: 7,
            tx_id: 3,
            len: 11,
        };
        assert_eq!(Header::parse(&h.to_bytes()).unwrap(), h);
        let big = Header {
            len: PAYLOAD_MAX as u32 + 1,
            ..h
        };
        assert_eq!(Header::parse(&big.to_bytes()), Err(Errno::E2BIG));
    }

    #[test]
    fn errno_names_match_header_order() {
        assert_eq!(Errno::ALL[0], Errno::EINVAL);
        assert_eq!(Errno::ALL[15], Errno::EPERM);
        for e in Errno::ALL {
            assert_eq!(Errno::from_payload(e.payload()), e);
            assert_eq!(e.payload(), [e.name().as_bytes(), b"\0"].concat());
        }
        assert_eq!(Errno::from_payload(b"EWHAT\0"), Errno::EINVAL);
    }

    #[test]
    fn strings_split_at_nuls_and_keep_an_unterminated_tail() {
        let all = |p: &'static [u8]| strings(p).collect::<Vec<_>>();
        assert_eq!(all(b"a\0bc\0"), [&b"a"[..], b"bc"]);
        assert_eq!(all(b"a\0bc"), [&b"a"[..], b"bc"]);
        assert_eq!(all(b"\0"), [&b""[..]]);
        assert!(all(b"").is_empty());
    }

    #[test]
    fn paths() {
        assert!(check_path("/").is_ok());
        assert!(check_path("/local/domain/0").is_ok());
        assert!(check_path("device/vif/0").is_ok());
        assert!(check_path("@introduceDomain").is_ok());
        assert!(check_path("").is_err());
        assert!(check_path("/a//b").is_err());
        assert!(check_path("/a/").is_err());
        assert!(check_path("/a b").is_err());
        assert!(check_path(&std::format!("/{}", "a".repeat(ABS_PATH_MAX))).is_err());
    }
}
