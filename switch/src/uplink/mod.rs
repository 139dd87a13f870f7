//! What sits behind the uplink (`peth0`) and the driver domain's own port (`vif0.0`):
//! frame endpoints the [`DriverDomain`](crate::domain::DriverDomain) exchanges
//! frames with.
//!
//! - [`host::Host`]: a small IP host on smoltcp ([`crate::host`]: ARP, ICMP echo, a
//!   TCP and a UDP echo port, ping and TCP/UDP client calls). As the `sim` uplink it
//!   is the remote host on the physical segment (128.153.144.148, 00:04:76:35:0a:72
//!   by default); as the Local port it is the driver domain's own stack; tests use it
//!   as a guest. Its echo replies wait per neighbour ([`echo::EchoResponder`]).
//! - [`tap::TapDevice`]: a Linux TAP device; the kernel's stack is the peer.
//! - [`pcap::PcapReplay`]: injects the frames of a pcap file.
#![deny(unsafe_code)]

pub use crate::host::echo;
pub mod host;
pub mod pcap;
pub mod tap;

use std::any::Any;

use xennet_ring::time::Instant;

/// Something that exchanges whole Ethernet frames with one fabric port.
pub trait Endpoint: Any + Send {
    /// A frame the fabric delivered to this endpoint.
    fn receive(&mut self, now: Instant, frame: &[u8]);

    /// Lets the endpoint run (timers, replies, reading its device) and hand frames it
    /// sends into the fabric to `tx`.
    fn poll(&mut self, now: Instant, tx: &mut dyn FnMut(&[u8]));

    /// When [`poll`](Self::poll) next has timed work, if ever (device readiness is
    /// the caller's business).
    fn poll_at(&mut self, now: Instant) -> Option<Instant>;

    /// A descriptor that becomes readable when [`poll`](Self::poll) has frames to
    /// read (a TAP device), for the caller to wake on; `None` if only timers drive it.
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    /// For downcasting to the concrete endpoint (tests, CLI status).
    fn as_any_mut(&mut self) -> &mut dyn Any;
}
