//! The event-channel operations every platform offers drivers' handshakes.

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
}
