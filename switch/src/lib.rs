//! # xennet-switch
//!
//! The driver domain's switch, as Xen's hotplug scripts set it up: a MAC-learning
//! bridge, an IPv4 router with proxy ARP, NAT, the wire views they share, uplinks
//! (a simulated host, a Linux TAP device, pcap replay), packet captures, and the
//! topology and `xl` vif-spec parsing that configure them. It knows nothing of rings
//! or grants: `xennet-dom0` feeds it the frames netback assembled.
//!
//! ## The fabric: whole Ethernet frames in, deliveries out
//!
//!
//! A [`Fabric`] has ports ([`PortKind::Vif`] for guests, [`PortKind::Local`] for the
//! driver domain's own stack, [`PortKind::Uplink`] for the physical side) and runs in
//! one of three modes, like Xen's hotplug scripts:
//! - [`Mode::Bridge`] (`network-bridge`/`vif-bridge`): a MAC-learning bridge, [`bridge`].
//! - [`Mode::Route`] (`network-route`/`vif-route`): an IPv4 router with ARP and
//!   per-interface proxy ARP, [`route`].
//! - [`Mode::Nat`] (`network-nat`/`vif-nat`): the router plus source NAT to the uplink
//!   address with connection tracking, [`nat`].
//!
//! The fabric knows nothing of rings or drivers: netback hands it frames with
//! [`Fabric::input`] and receives deliveries through [`Output`]; time is passed in, so
//! tests drive it with a fake clock. Every input frame gets one [`Disposition`] and is
//! counted per port (rx/tx packets and bytes, drops by [`DropReason`]).
//!
//! ```
//! use xennet_ring::time::Instant;
//! use xennet_switch::{Fabric, FabricConfig, PortConfig, PortId, PortKind};
//!
//! let mut fabric = Fabric::new(FabricConfig::default()).unwrap();
//! let a = fabric.add_port("vif1.0", PortKind::Vif { domid: 1, devid: 0 }, PortConfig::default()).unwrap();
//! let b = fabric.add_port("vif2.0", PortKind::Vif { domid: 2, devid: 0 }, PortConfig::default()).unwrap();
//! // A broadcast frame from vif1.0 is flooded to vif2.0 only.
//! let mut frame = vec![0xff; 6];
//! frame.extend_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 1, 0x08, 0x06]);
//! frame.resize(60, 0);
//! let mut seen = Vec::new();
//! fabric.input(Instant::ZERO, a, &frame, &mut |p: PortId, f: &[u8]| seen.push((p, f.len())));
//! assert_eq!(seen, vec![(b, 60)]);
//! ```
#![deny(unsafe_code)]

pub mod arp;
pub mod brctl;
pub mod bridge;
pub mod capture;
pub mod config;
mod counters;
pub mod domain;
mod error;
mod fabric;
pub mod host;
pub mod nat;
mod port;
pub mod route;
pub mod uplink;
pub mod wire;

pub use counters::{DropReason, PortCounters};
pub use error::FabricError;
pub use fabric::{Fabric, FabricConfig, Mode};
pub use port::{Port, PortConfig, PortId, PortKind, PortTable};

/// Receives the fabric's deliveries: `frame` leaves the fabric through port `egress`.
///
/// The bridge fast path passes the very input slice; nothing is allocated per frame.
pub trait Output {
    /// Delivers one frame to one port.
    fn deliver(&mut self, egress: PortId, frame: &[u8]);
}

impl<F: FnMut(PortId, &[u8])> Output for F {
    fn deliver(&mut self, egress: PortId, frame: &[u8]) {
        self(egress, frame)
    }
}

/// Collects deliveries as owned frames (tests, simple drivers).
#[derive(Debug, Default)]
pub struct Collect(pub Vec<(PortId, Vec<u8>)>);

impl Output for Collect {
    fn deliver(&mut self, egress: PortId, frame: &[u8]) {
        self.0.push((egress, frame.to_vec()));
    }
}

/// What became of one input frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Sent to exactly one port (known unicast, or routed).
    Forwarded,
    /// Sent to `copies` ports (broadcast, multicast or unknown unicast); at least one.
    Flooded {
        /// How many ports got a copy.
        copies: u32,
    },
    /// Consumed by the fabric itself (ARP handled, ping of a router address answered).
    Local,
    /// Waiting for the next hop's ARP resolution; later forwarded, or counted dropped
    /// with [`DropReason::ArpTimeout`].
    Queued,
    /// Dropped and counted on the ingress port.
    Dropped(DropReason),
}
