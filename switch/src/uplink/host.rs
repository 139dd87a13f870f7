//! The host on a switch port: [`Host`] (a [`crate::host::Host`] over its [`Wire`]),
//! here under the name the uplink's other endpoints share.

pub use crate::host::{EchoReply, EchoRequest, Host, HostConfig, HostError, Wire};
