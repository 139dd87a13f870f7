//! Event channels as split drivers see them: a port to kick the peer through.

/// An event-channel port (`evtchn_port_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Port(pub u32);

impl core::fmt::Display for Port {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Sending side of a bound interdomain event channel (`EVTCHNOP_send`).
///
/// Notifications coalesce: several kicks before the peer looks count as one pending
/// event, so drivers must always drain their rings fully after a wake-up.
pub trait Notify {
    /// Set the peer's pending bit and wake it if it is waiting.
    fn notify(&self);
}

impl<T: Notify + ?Sized> Notify for &T {
    fn notify(&self) {
        (**self).notify()
    }
}
