//! The handshake's node helpers over any [`XenStore`], without allocation: each
//! value is read once into a small buffer and parsed into a typed value; a bad one
//! is an error, never a panic. Same rules as `xennet_xenstore::xenbus`, which does
//! this over the socket client with owned strings.

use core::fmt::{self, Write};
use core::str::FromStr;

use super::store::{StoreError, TxId, XenStore};
use super::wire::Errno;
use crate::xenbus::XenbusState;

/// The longest handshake value these helpers read (a number, a flag, a state, a
/// MAC, a path of a few dozen bytes); anything longer is [`NodeError::Bad`].
pub const NODE_VALUE_MAX: usize = 128;

/// A handshake node could not be read, or held something unusable.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeError<E> {
    /// The store failed.
    Store(E),
    /// The node held something unusable.
    Bad {
        /// What is wrong.
        why: &'static str,
    },
}

impl<E: fmt::Display> fmt::Display for NodeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Store(e) => write!(f, "{e}"),
            NodeError::Bad { why } => write!(f, "bad node value: {why}"),
        }
    }
}

impl<E: StoreError> StoreError for NodeError<E> {
    fn errno(&self) -> Option<Errno> {
        match self {
            NodeError::Store(e) => e.errno(),
            NodeError::Bad { .. } => None,
        }
    }
}

/// Reads a value as text if the node exists: into `buf`, which bounds it.
fn read_text<'b, X: XenStore>(
    xs: &mut X,
    tx: TxId,
    path: &str,
    buf: &'b mut [u8; NODE_VALUE_MAX],
) -> Result<Option<&'b str>, NodeError<X::Error>> {
    match xs.try_read(tx, path, buf) {
        Ok(Some(n)) => {
            let v = buf.get(..n).ok_or(NodeError::Bad { why: "too long" })?;
            let v = v.strip_suffix(b"\0").unwrap_or(v);
            core::str::from_utf8(v)
                .map(Some)
                .map_err(|_| NodeError::Bad { why: "not UTF-8" })
        }
        Ok(None) => Ok(None),
        Err(e) => Err(NodeError::Store(e)),
    }
}

/// Reads a `state` node; a missing node is `Unknown`.
pub fn read_state<X: XenStore>(
    xs: &mut X,
    tx: TxId,
    path: &str,
) -> Result<XenbusState, NodeError<X::Error>> {
    let mut buf = [0u8; NODE_VALUE_MAX];
    match read_text(xs, tx, path, &mut buf)? {
        None => Ok(XenbusState::Unknown),
        Some(v) => XenbusState::parse(v.as_bytes()).ok_or(NodeError::Bad {
            why: "not a xenbus state",
        }),
    }
}

/// Writes a `state` node.
pub fn write_state<X: XenStore>(
    xs: &mut X,
    tx: TxId,
    path: &str,
    state: XenbusState,
) -> Result<(), X::Error> {
    write_num(xs, tx, path, u64::from(state.as_u8()))
}

/// Reads a feature flag: missing, empty or `0` is off, `1` is on.
pub fn read_flag<X: XenStore>(
    xs: &mut X,
    tx: TxId,
    path: &str,
) -> Result<bool, NodeError<X::Error>> {
    let mut buf = [0u8; NODE_VALUE_MAX];
    match read_text(xs, tx, path, &mut buf)?.map(str::trim) {
        None | Some("0") | Some("") => Ok(false),
        Some("1") => Ok(true),
        Some(_) => Err(NodeError::Bad {
            why: "expected 0 or 1",
        }),
    }
}

/// Reads an optional decimal number.
pub fn read_opt_num<X: XenStore, T: FromStr>(
    xs: &mut X,
    tx: TxId,
    path: &str,
) -> Result<Option<T>, NodeError<X::Error>> {
    let mut buf = [0u8; NODE_VALUE_MAX];
    match read_text(xs, tx, path, &mut buf)? {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| NodeError::Bad {
            why: "not a number",
        }),
    }
}

/// Reads a required decimal number (a missing node is the store's ENOENT).
pub fn read_num<X: XenStore, T: FromStr>(
    xs: &mut X,
    tx: TxId,
    path: &str,
) -> Result<T, NodeError<X::Error>> {
    let mut buf = [0u8; NODE_VALUE_MAX];
    let n = xs.read(tx, path, &mut buf).map_err(NodeError::Store)?;
    let v = buf.get(..n).ok_or(NodeError::Bad { why: "too long" })?;
    let v = core::str::from_utf8(v).map_err(|_| NodeError::Bad { why: "not UTF-8" })?;
    v.trim_end_matches('\0')
        .trim()
        .parse()
        .map_err(|_| NodeError::Bad {
            why: "not a number",
        })
}

/// Writes a decimal number.
pub fn write_num<X: XenStore>(xs: &mut X, tx: TxId, path: &str, n: u64) -> Result<(), X::Error> {
    let mut digits = Digits::default();
    // A u64 has at most 20 digits: the buffer always fits.
    let _ = write!(digits, "{n}");
    xs.write(tx, path, digits.as_bytes())
}

/// A u64's decimal digits, formatted without allocation.
#[derive(Default)]
struct Digits {
    buf: [u8; 20],
    len: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Write for Digits {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
