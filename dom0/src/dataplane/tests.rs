//! The data plane's loop over a platform whose clock the test moves: a wait lasts
//! exactly its timeout (or ends the period, when it has none), so wake-ups are
//! counted, not timed.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xennet_netfront::Features;
use xennet_platform::shm::{Domain, EventChannels, GrantOps};
use xennet_ring::Port;
use xennet_switch::domain::DriverDomain;
use xennet_switch::{Fabric, FabricConfig, PortConfig, PortKind};

use super::Plane;
use crate::platform::DriverPlatform;
use crate::side::{connect_pair, domains, Front, Side};

const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01];

/// The process platform with a clock of its own: waiting takes events already
/// pending, else moves the clock by the whole timeout (a wait with no timeout would
/// block for good: it moves the clock to the end of time, [`Clocked::FOREVER`]).
struct Clocked {
    side: Side,
    now: Cell<Instant>,
    /// The timeout of every wait that found no event.
    sleeps: RefCell<Vec<Option<Duration>>>,
}

impl Clocked {
    const FOREVER: Duration = Duration::from_secs(1 << 30);

    fn new(side: Side, now: Instant) -> Clocked {
        Clocked {
            side,
            now: Cell::new(now),
            sleeps: RefCell::new(Vec::new()),
        }
    }
}

impl DriverPlatform for Clocked {
    type Grants = GrantOps;
    type Memory = Domain;
    type Events = Arc<EventChannels>;

    fn grants(&self) -> &GrantOps {
        &self.side.ops
    }

    fn memory(&self) -> &Domain {
        &self.side.domain
    }

    fn events(&self) -> &Arc<EventChannels> {
        &self.side.events
    }

    fn now(&self) -> Instant {
        self.now.get()
    }

    fn wait_into(&self, timeout: Option<Duration>, out: &mut Vec<Port>) {
        self.side.events.poll_into(out);
        if out.is_empty() {
            self.sleeps.borrow_mut().push(timeout);
            let slept = timeout.unwrap_or(Self::FOREVER);
            self.now.set(self.now.get() + slept);
        }
    }
}

/// A driver domain with one guest whose vif has `rate` (a bridge with the vif as its
/// only port: nothing timed in the switch), its clock started `after` the vif
/// connected.
fn plane(rate: Option<(u64, Duration)>, after: Duration) -> (Plane<Clocked>, Front) {
    let (dom0, guests) = domains(1).unwrap();
    let features = Features {
        sg: true,
        gso_tcpv4: false,
    };
    let (front, vif, ports) = connect_pair(&dom0, &guests[0], 0, MAC, 1, features, rate).unwrap();
    let dd = DriverDomain::new(Fabric::new(FabricConfig::default()).unwrap());
    let mut plane = Plane::new(Clocked::new(dom0, Instant::now() + after), dd);
    let port = plane
        .dd
        .fabric_mut()
        .add_port(
            "vif1.0",
            PortKind::Vif { domid: 1, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    plane.add_vif(port, vif, ports.iter().map(|p| p.1).collect());
    // The period starts quiet: the kick of the guest's connect is taken.
    plane.side.side.events.poll_into(&mut Vec::new());
    (plane, front)
}

/// Run the loop as `xennet up` does (a pass; a wait when nothing moved, here with a
/// caller's limit of a minute) for `period` of the plane's clock; returns the waits
/// (bounded, so a loop that spins ends too).
fn run_for(plane: &mut Plane<Clocked>, period: Duration) -> usize {
    let end = plane.side.now() + period;
    let mut waits = 0;
    while plane.side.now() < end && waits < 10_000 {
        if !plane.run_once() {
            plane.wait(Duration::from_secs(60));
            waits += 1;
        }
    }
    waits
}

#[test]
fn an_idle_rate_limited_vif_lets_the_loop_sleep_without_a_timeout_of_its_own() {
    // Long after the vif's first credit interval: its refill time is in the past.
    let (mut plane, _front) = plane(
        Some((1000, Duration::from_millis(10))),
        Duration::from_secs(1),
    );
    let waits = run_for(&mut plane, Duration::from_secs(10));
    assert_eq!(waits, 1, "wake-ups over 10 idle seconds");
    assert_eq!(
        plane.side.sleeps.borrow()[..],
        [Some(Duration::from_secs(60))],
        "only the caller's limit bounds an idle sleep"
    );
}

#[test]
fn a_vif_out_of_credit_sleeps_until_each_refill_and_sends_everything() {
    // 1000 bytes per 10 ms; 20 frames of 500 bytes take ten intervals.
    let (mut plane, mut front) = plane(Some((1000, Duration::from_millis(10))), Duration::ZERO);
    let mut frame = vec![0u8; 500];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&MAC);
    for _ in 0..20 {
        front.send(&frame).unwrap();
    }
    let waits = run_for(&mut plane, Duration::from_millis(200));
    // Two frames per interval: the guest's kick, nine waits for a refill, then the
    // idle one.
    assert_eq!(waits, 11, "wake-ups: {:?}", plane.side.sleeps.borrow());
    let c = plane.vifs[0].vif.counters();
    assert_eq!((c.tx_packets, c.tx_credit_waits), (20, 9));
}
