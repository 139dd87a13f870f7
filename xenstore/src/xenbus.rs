//! Reading and writing the nodes of a split device's XenStore handshake, shared
//! by the frontend and backend halves (`netfront::xenbus`, `netback::xenbus`).
//! Each value is read once and parsed into a typed value; a bad one is an error
//! naming the node, never a panic. The states themselves are
//! [`xennet_ring::XenbusState`] (`xen/io/xenbus.h`).

pub use xennet_ring::XenbusState;

use super::{XsClient, XsError};

/// A handshake node could not be read or held something unusable.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// XenStore failed.
    #[error(transparent)]
    Xs(#[from] XsError),
    /// A node held something unusable.
    #[error("{path}: {why} (value {value:?})")]
    Bad {
        /// The node.
        path: String,
        /// Its value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
}

impl NodeError {
    /// A bad value at `path`.
    pub fn bad(path: &str, value: &str, why: &'static str) -> Self {
        NodeError::Bad {
            path: path.to_owned(),
            value: value.to_owned(),
            why,
        }
    }
}

/// Reads a `state` node; a missing node is `Unknown`.
pub fn read_state(xs: &XsClient, path: &str) -> Result<XenbusState, NodeError> {
    match xs.try_read_string(path)? {
        None => Ok(XenbusState::Unknown),
        Some(v) => XenbusState::parse(v.as_bytes())
            .ok_or_else(|| NodeError::bad(path, &v, "not a xenbus state")),
    }
}

/// Writes a `state` node.
pub fn write_state(xs: &XsClient, path: &str, state: XenbusState) -> Result<(), XsError> {
    xs.write(path, state.as_u8().to_string())
}

/// Reads a feature flag: missing, empty or `0` is off, `1` is on.
pub fn read_flag(xs: &XsClient, path: &str) -> Result<bool, NodeError> {
    match xs.try_read_string(path)? {
        None => Ok(false),
        Some(v) => match v.trim() {
            "0" | "" => Ok(false),
            "1" => Ok(true),
            _ => Err(NodeError::bad(path, &v, "expected 0 or 1")),
        },
    }
}

/// Reads a required decimal number.
pub fn read_num<T: std::str::FromStr>(xs: &XsClient, path: &str) -> Result<T, NodeError> {
    let v = xs.read_string(path)?;
    v.trim()
        .parse()
        .map_err(|_| NodeError::bad(path, &v, "not a number"))
}

/// Reads an optional decimal number.
pub fn read_opt_num<T: std::str::FromStr>(
    xs: &XsClient,
    path: &str,
) -> Result<Option<T>, NodeError> {
    match xs.try_read_string(path)? {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| NodeError::bad(path, &v, "not a number")),
    }
}
