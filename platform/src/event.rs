//! The event-channel operations every platform offers drivers' handshakes.

use std::time::Duration;

use xennet_ring::{DomId, Notify, Port};

/// The event-channel operations a driver's XenStore handshake needs
/// (`EVTCHNOP_alloc_unbound`, `EVTCHNOP_bind_interdomain`, `EVTCHNOP_close`), and a
/// [`Notify`] handle for a bound port. Implemented by every platform, so one
/// handshake serves them all.
pub trait EventChannelOps {
    /// What kicks the peer through one port.
    type Notifier: Notify;
    /// Why an operation failed.
    type Error: core::fmt::Display + core::fmt::Debug;

    /// A new port that `remote` may bind to (the frontend's side).
    fn alloc_unbound(&self, remote: DomId) -> Result<Port, Self::Error>;

    /// Bind to `remote`'s unbound `remote_port` (the backend's side).
    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, Self::Error>;

    /// A handle that notifies the peer through `port`.
    fn notifier(&self, port: Port) -> Self::Notifier;

    /// Close `port`; the peer's end sees it unbound.
    fn close(&self, port: Port);

    /// Wait up to `timeout` (forever with `None`) for events, appending the pending
    /// ports to `out`; the ports are ready to fire again afterwards.
    fn wait_into(&self, timeout: Option<Duration>, out: &mut Vec<Port>);

    /// Hold `port`'s events back (they stay pending) until [`EventChannelOps::unmask`].
    fn mask(&self, port: Port);

    /// Let `port`'s events through again, delivering one held back meanwhile.
    fn unmask(&self, port: Port);
}
