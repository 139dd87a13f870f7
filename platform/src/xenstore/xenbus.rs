//! The device states of `xen/io/xenbus.h`, shared by frontends and backends.

/// `enum xenbus_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum XenbusState {
    /// 0: unknown (or the node is missing).
    Unknown = 0,
    /// 1.
    Initialising = 1,
    /// 2: backend ready for the frontend's details.
    InitWait = 2,
    /// 3: frontend details written.
    Initialised = 3,
    /// 4.
    Connected = 4,
    /// 5.
    Closing = 5,
    /// 6.
    Closed = 6,
    /// 7.
    Reconfiguring = 7,
    /// 8.
    Reconfigured = 8,
}

impl XenbusState {
    /// Parses a `state` node's value; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        use XenbusState::*;
        Some(match s.trim() {
            "0" => Unknown,
            "1" => Initialising,
            "2" => InitWait,
            "3" => Initialised,
            "4" => Connected,
            "5" => Closing,
            "6" => Closed,
            "7" => Reconfiguring,
            "8" => Reconfigured,
            _ => return None,
        })
    }

    /// The node's value.
    pub fn as_str(self) -> String {
        (self as u32).to_string()
    }
}
