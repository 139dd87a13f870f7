//! Errors of building or reconfiguring the switch.

/// Errors from building or reconfiguring a fabric.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FabricError {
    /// Port names must be 1..=15 bytes (Linux IFNAMSIZ) without '/', ' ' or ':'.
    #[error("invalid port name {0:?}: must be 1-15 characters without '/', ':' or whitespace")]
    BadName(String),
    /// A port with this name exists already.
    #[error("a port named {0:?} exists already")]
    DuplicateName(String),
    /// The fabric has as many ports as it allows.
    #[error("too many ports (limit {0})")]
    TooManyPorts(usize),
    /// Route/NAT mode could not derive addresses for the port.
    #[error("port {port}: {reason}")]
    Addressing {
        /// The port name.
        port: String,
        /// What is wrong.
        reason: String,
    },
    /// Only one uplink port is supported.
    #[error("an uplink port exists already")]
    SecondUplink,
}
