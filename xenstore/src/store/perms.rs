//! Node permission lists as in Xen: who owns a node and what every other
//! domain may do with it.

use std::fmt;

use crate::wire::Errno;

/// `n`, `r`, `w` or `b` (both) for one domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// Grants reading.
    pub fn can_read(self) -> bool {
        matches!(self, Access::Read | Access::Both)
    }
    /// Grants writing.
    pub fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::Both)
    }
    fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }
}

/// One entry of a node's permission list, as on the wire (`"r5"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain this entry is about.
    pub domid: u16,
    /// What it may do.
    pub access: Access,
}

impl Perm {
    /// An entry.
    pub const fn new(domid: u16, access: Access) -> Self {
        Perm { domid, access }
    }

    /// Parses `"<n|r|w|b><domid>"`.
    pub fn parse(s: &[u8]) -> Result<Self, Errno> {
        let (&first, rest) = s.split_first().ok_or(Errno::EINVAL)?;
        let access = match first {
            b'n' => Access::None,
            b'r' => Access::Read,
            b'w' => Access::Write,
            b'b' => Access::Both,
            _ => return Err(Errno::EINVAL),
        };
        if rest.is_empty() || rest.len() > 5 || !rest.iter().all(u8::is_ascii_digit) {
            return Err(Errno::EINVAL);
        }
        let domid: u32 = std::str::from_utf8(rest)
            .map_err(|_| Errno::EINVAL)?
            .parse()
            .map_err(|_| Errno::EINVAL)?;
        let domid = u16::try_from(domid).map_err(|_| Errno::EINVAL)?;
        Ok(Perm { domid, access })
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

/// A node's permission list: the first entry names the owner and the access of
/// every domain not listed; later entries grant specific domains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perms(pub Vec<Perm>);

impl Perms {
    /// Owned by `owner`, nobody else may read or write.
    pub fn owned_by(owner: u16) -> Self {
        Perms(vec![Perm::new(owner, Access::None)])
    }

    /// The owning domain (first entry).
    pub fn owner(&self) -> u16 {
        self.0.first().map_or(0, |p| p.domid)
    }

    /// Xen's `perm_for_conn`: the privileged domain and the owner get both; a
    /// listed domain gets its entry; everyone else the first entry's access.
    pub fn access_for(&self, domid: u16, privileged: bool) -> Access {
        if privileged || self.owner() == domid {
            return Access::Both;
        }
        if let Some(p) = self.0.iter().skip(1).find(|p| p.domid == domid) {
            return p.access;
        }
        self.0.first().map_or(Access::None, |p| p.access)
    }

    /// Parses a SET_PERMS/GET_PERMS list of perm strings.
    pub fn parse<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, Errno> {
        let v = parts
            .into_iter()
            .map(Perm::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if v.is_empty() {
            return Err(Errno::EINVAL);
        }
        Ok(Perms(v))
    }

    /// The wire form: each perm string followed by a NUL.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.0 {
            out.extend_from_slice(p.to_string().as_bytes());
            out.push(0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_parse_and_access() {
        let p = Perms::parse([&b"n5"[..], b"r7", b"b9"]).unwrap();
        assert_eq!(p.to_payload(), b"n5\0r7\0b9\0");
        assert_eq!(p.access_for(5, false), Access::Both);
        assert_eq!(p.access_for(7, false), Access::Read);
        assert_eq!(p.access_for(9, false), Access::Both);
        assert_eq!(p.access_for(3, false), Access::None);
        assert_eq!(p.access_for(3, true), Access::Both);
        assert!(Perm::parse(b"x1").is_err());
        assert!(Perm::parse(b"r").is_err());
        assert!(Perm::parse(b"r70000").is_err());
        assert!(Perms::parse(std::iter::empty()).is_err());
    }
}
