//! Device states of the XenStore handshake (`xen/io/xenbus.h`).

/// `enum xenbus_state`: the `state` node of each end of a split device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum XenbusState {
    /// `XenbusStateUnknown` (0).
    Unknown = 0,
    /// `XenbusStateInitialising` (1).
    Initialising = 1,
    /// `XenbusStateInitWait` (2): finished early init, waiting for the peer's details.
    InitWait = 2,
    /// `XenbusStateInitialised` (3): the frontend's details are published.
    Initialised = 3,
    /// `XenbusStateConnected` (4).
    Connected = 4,
    /// `XenbusStateClosing` (5): the device is being closed.
    Closing = 5,
    /// `XenbusStateClosed` (6).
    Closed = 6,
    /// `XenbusStateReconfiguring` (7).
    Reconfiguring = 7,
    /// `XenbusStateReconfigured` (8).
    Reconfigured = 8,
}

impl XenbusState {
    /// Parse the decimal text of a `state` node; anything else is `None`.
    pub fn parse(text: &[u8]) -> Option<XenbusState> {
        let text = core::str::from_utf8(text)
            .ok()?
            .trim_end_matches('\0')
            .trim();
        let n: u8 = text.parse().ok()?;
        Some(match n {
            0 => XenbusState::Unknown,
            1 => XenbusState::Initialising,
            2 => XenbusState::InitWait,
            3 => XenbusState::Initialised,
            4 => XenbusState::Connected,
            5 => XenbusState::Closing,
            6 => XenbusState::Closed,
            7 => XenbusState::Reconfiguring,
            8 => XenbusState::Reconfigured,
            _ => return None,
        })
    }

    /// The decimal value written to the `state` node.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// xenbus.h's name without the prefix, e.g. `Connected`.
    pub const fn name(self) -> &'static str {
        match self {
            XenbusState::Unknown => "Unknown",
            XenbusState::Initialising => "Initialising",
            XenbusState::InitWait => "InitWait",
            XenbusState::Initialised => "Initialised",
            XenbusState::Connected => "Connected",
            XenbusState::Closing => "Closing",
            XenbusState::Closed => "Closed",
            XenbusState::Reconfiguring => "Reconfiguring",
            XenbusState::Reconfigured => "Reconfigured",
        }
    }
}

impl core::fmt::Display for XenbusState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.as_u8(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::XenbusState;

    #[test]
    fn parses_state_nodes_as_written_by_xen_tools() {
        assert_eq!(XenbusState::parse(b"4"), Some(XenbusState::Connected));
        assert_eq!(XenbusState::parse(b"6\0"), Some(XenbusState::Closed));
        assert_eq!(XenbusState::parse(b" 2 "), Some(XenbusState::InitWait));
        assert_eq!(XenbusState::parse(b"9"), None);
        assert_eq!(XenbusState::parse(b"x"), None);
        assert_eq!(XenbusState::parse(&[0xff]), None);
    }
}
