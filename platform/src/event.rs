//! The event-channel operations every platform offers drivers' handshakes.

use std::sync::Arc;
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

    /// A handle any thread may use to make this side's [`wait_into`] return at once
    /// (the one in progress, or the next if none is), with or without events: what
    /// a thread watching other descriptors uses to wake the data plane.
    ///
    /// [`wait_into`]: EventChannelOps::wait_into
    fn interrupter(&self) -> Interrupter;
}

/// Wakes one side's event wait from any thread ([`EventChannelOps::interrupter`]).
#[derive(Clone)]
pub struct Interrupter(Arc<dyn Fn() + Send + Sync>);

impl Interrupter {
    /// An interrupter that runs `f`.
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Interrupter {
        Interrupter(Arc::new(f))
    }

    /// Make the wait return.
    pub fn interrupt(&self) {
        (self.0)()
    }
}

impl core::fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Interrupter")
    }
}
