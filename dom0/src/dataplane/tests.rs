//! The data plane's loop over a platform whose clock the test moves: a wait lasts
//! exactly its timeout (or ends the period, when it has none), so wake-ups are
//! counted, not timed.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use xennet_netback::xenbus::{BackendDevice, FrontendParams, QueueParams};
use xennet_netfront::{Features, FrontConfig, Netfront};
use xennet_platform::clock;
use xennet_platform::shm::{Domain, EventChannels, GrantOps};
use xennet_ring::time::{Duration, Instant};
use xennet_ring::{DomId, Port};
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
    let mut plane = Plane::new(Clocked::new(dom0, clock::now() + after), dd);
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

#[test]
fn each_kick_is_counted_on_the_queue_whose_channel_it_came_through() {
    // Two queues, each with its own tx and rx channel (feature-split-event-channels),
    // connected as the handshake connects them: the backend's ports come back as
    // tx0, rx0, tx1, rx1.
    let (dom0, guests) = domains(1).unwrap();
    let guest = &guests[0];
    let unbound = || guest.events.alloc_unbound(DomId(0)).unwrap();
    let guest_ports: Vec<(Port, Port)> = (0..2).map(|_| (unbound(), unbound())).collect();
    let kicks = guest_ports
        .iter()
        .map(|(tx, rx)| (guest.events.port(*tx), guest.events.port(*rx)))
        .collect();
    let mut front =
        Netfront::new(guest.domain.clone(), FrontConfig::new(DomId(0), MAC), kicks).unwrap();
    let params = FrontendParams {
        queues: front
            .queue_refs()
            .iter()
            .zip(&guest_ports)
            .map(|(refs, (tx, rx))| QueueParams {
                tx_ring_ref: refs.tx_ring_ref,
                rx_ring_ref: refs.rx_ring_ref,
                tx_port: *tx,
                rx_port: *rx,
            })
            .collect(),
        sg: true,
        gso_tcpv4: false,
        ctrl: None,
    };
    let dev = BackendDevice {
        path: "/local/domain/0/backend/vif/1/0".into(),
        frontend: "/local/domain/1/device/vif/0".into(),
        frontend_id: DomId(1),
        devid: 0,
        rate: None,
        max_queues: 2,
        ctrl_ring: false,
    };
    let (vif, ports) = dev
        .connect_with(&params, dom0.ops.clone(), dom0.domain.clone(), &dom0.events)
        .unwrap();
    assert_eq!(ports.len(), 4);
    front.connect(Features {
        sg: true,
        gso_tcpv4: false,
    });
    let dd = DriverDomain::new(Fabric::new(FabricConfig::default()).unwrap());
    let mut plane = Plane::new(Clocked::new(dom0, clock::now()), dd);
    let port = plane
        .dd
        .fabric_mut()
        .add_port(
            "vif1.0",
            PortKind::Vif { domid: 1, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    plane.add_vif(port, vif, ports);
    plane.side.side.events.poll_into(&mut Vec::new());
    let kicks_per_queue = |plane: &Plane<Clocked>| -> Vec<u64> {
        let queues = plane.vifs[0].vif.queue_counters();
        queues.iter().map(|c| c.notify_received).collect()
    };
    // Queue 0's rx channel, then queue 1's tx and rx channels.
    for (kick, want) in [
        (guest_ports[0].1, [1, 0]),
        (guest_ports[1].0, [1, 1]),
        (guest_ports[1].1, [1, 2]),
    ] {
        guest.events.notify(kick);
        plane.wait(Duration::from_secs(1));
        assert_eq!(
            kicks_per_queue(&plane),
            want,
            "after a kick on port {}",
            kick.0
        );
    }
}

/// An uplink whose device is one end of a socket pair: readable when the test writes
/// into the other end; `poll` reads it (as a TAP endpoint reads its device).
struct SocketUplink {
    sock: std::os::unix::net::UnixStream,
    frames: std::sync::mpsc::Sender<Vec<u8>>,
}

impl xennet_switch::uplink::Endpoint for SocketUplink {
    fn receive(&mut self, _now: Instant, _frame: &[u8]) {}

    fn poll(&mut self, _now: Instant, _tx: &mut dyn FnMut(&[u8])) {
        use std::io::Read;
        let mut buf = [0u8; 64];
        while let Ok(n) = self.sock.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = self.frames.send(buf[..n].to_vec());
        }
    }

    fn poll_at(&mut self, _now: Instant) -> Option<Instant> {
        None
    }

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.sock.as_fd())
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[test]
fn an_endpoint_device_with_frames_wakes_the_sleeping_plane_every_time() {
    use std::io::Write;
    let (dom0, _guests) = domains(1).unwrap();
    let mut dd = DriverDomain::new(Fabric::new(FabricConfig::default()).unwrap());
    let up = dd
        .fabric_mut()
        .add_port("peth0", PortKind::Uplink, PortConfig::default())
        .unwrap();
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let (tx, frames) = std::sync::mpsc::channel();
    dd.attach(
        up,
        Box::new(SocketUplink {
            sock: ours,
            frames: tx,
        }),
    );
    let mut plane = Plane::new(dom0, dd);
    let (done_tx, done) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        // Each round: a wait with no timer due (a day's limit), then a pass that reads.
        for _ in 0..3 {
            plane.wait(Duration::from_secs(86_400));
            plane.run_once();
            let _ = done_tx.send(());
        }
    });
    for round in 0..3u8 {
        theirs.write_all(&[round; 10]).unwrap();
        // A plane that slept through the device would hold this for a day.
        done.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("round {round}: the plane slept through its device"));
        assert_eq!(frames.recv().unwrap(), vec![round; 10]);
    }
    runner.join().unwrap();
}
