//! The driver domain's data plane: netback vifs feeding the switch (bridge, route or
//! NAT) and the switch's deliveries fed back into the vifs' receive queues.
//!
//! One loop, event-driven: it works while any vif or endpoint has work, then arms every
//! ring's event index and sleeps on the domain's event channels until a frontend kicks
//! or the switch's next timer is due.
//!
//! The plane is written once over the platform ([`Plane`] over any
//! [`DriverPlatform`]); [`Dataplane`] is the process platform's.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use xennet_netback::vif::VifCounters;
use xennet_ring::time::{Duration, Instant};
use xennet_ring::Port;
use xennet_switch::config::UplinkSpec;
use xennet_switch::domain::DriverDomain;
use xennet_switch::wire::MacAddr;
use xennet_switch::{Mode, Output, PortConfig, PortId, PortKind};

use crate::build::{driver_domain, BuildError};
use crate::platform::{DriverPlatform, PlatformVif};
use crate::side::Side;
use fds::FdWatcher;

mod fds;

/// Frames taken from one vif per pass before others get a turn.
const TX_BUDGET: usize = 256;
/// Consecutive kicks from a guest that found no work before its channel is throttled
/// (XSA-332: a guest must not make the driver domain spin on empty events).
pub const SPURIOUS_LIMIT: u32 = 32;
/// How long a throttled guest's channels stay masked; its rings are still served on
/// every pass the loop makes for other reasons, and when the mask lifts.
pub const THROTTLE: Duration = Duration::from_millis(10);
/// How often [`Plane::run`] looks at its stop flag while nothing happens.
const STOP_POLL: Duration = Duration::from_millis(50);

/// A vif attached to a switch port.
pub struct VifPort<P: DriverPlatform = Side> {
    /// The switch port (`vif<domid>.<devid>`).
    pub port: PortId,
    /// The backend device.
    pub vif: PlatformVif<P>,
    /// Its event-channel ports (backend side).
    pub events: Vec<Port>,
    /// It kicked us since the last pass.
    woken: bool,
    /// Kicks in a row that found no work.
    spurious: u32,
    /// Its channels are masked until then (throttled).
    masked_until: Option<Instant>,
    /// Its counters when the current pass began (taken only when it kicked us).
    pass_start: VifCounters,
}

/// Departed vifs remembered (the oldest is forgotten first).
pub const DEPARTED_KEPT: usize = 64;

/// A vif that left the data plane.
#[derive(Clone, Debug)]
pub struct Departed {
    /// The switch port it was attached to.
    pub port: PortId,
    /// `vif<domid>.<devid>`.
    pub name: String,
    /// Its counters when it left.
    pub counters: VifCounters,
    /// The fatal protocol error that ended it (`None`: detached in order).
    pub fault: Option<String>,
}

/// A guest for [`Plane::bridged`]: its domain, its MAC, its connected vif and that
/// vif's backend ports.
pub type BridgedVif<P> = (u16, [u8; 6], PlatformVif<P>, Vec<Port>);

/// netback + switch, on the process platform.
pub type Dataplane = Plane<Side>;

/// netback + switch, on platform `P`.
pub struct Plane<P: DriverPlatform = Side> {
    /// The driver domain's platform.
    pub side: P,
    /// The switch with its endpoints and captures.
    pub dd: DriverDomain,
    /// Connected vifs.
    pub vifs: Vec<VifPort<P>>,
    /// Vifs that were removed (the latest [`DEPARTED_KEPT`]), so their final
    /// counters and the fault that ended them stay readable.
    pub departed: Vec<Departed>,
    /// The switch's deliveries of one pass (kept, so a pass allocates nothing).
    deliveries: Vec<(PortId, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
    woken: Vec<Port>,
    /// Wakes the plane when an endpoint's device (a TAP uplink) has frames.
    watcher: Option<FdWatcher>,
    fd_buf: Vec<RawFd>,
}

impl<P: DriverPlatform> VifPort<P> {
    /// After a pass: a kick that found nothing to do (no frame or error either way, no
    /// control request, no packet starting to wait for rate credit) is spurious; [`SPURIOUS_LIMIT`] of them in a row
    /// mask its channels for [`THROTTLE`] (counted), as Linux's late-EOI handling
    /// throttles an event storm (XSA-332).
    fn note_pass(&mut self, platform: &P, now: Instant) {
        if !std::mem::take(&mut self.woken) {
            return;
        }
        let work = |c: &VifCounters| {
            c.tx_packets
                + c.tx_errors
                + c.rx_packets
                + c.rx_errors
                + c.ctrl_requests
                + c.tx_credit_waits
        };
        let worked = work(&self.vif.counters()) != work(&self.pass_start);
        if worked {
            self.spurious = 0;
            return;
        }
        self.spurious += 1;
        self.vif.note_spurious();
        if self.spurious >= SPURIOUS_LIMIT && self.masked_until.is_none() {
            self.masked_until = Some(now + THROTTLE);
            self.vif.note_throttled();
            for p in &self.events {
                platform.mask(*p);
            }
            tracing::warn!(vif = %self.vif.name(), "event storm: channel throttled");
        }
    }
}

/// Deliveries to vif ports, kept for the vifs' receive queues.
struct ToVifs<'a> {
    out: &'a mut Vec<(PortId, Vec<u8>)>,
    spare: &'a mut Vec<Vec<u8>>,
}

impl Output for ToVifs<'_> {
    fn deliver(&mut self, egress: PortId, frame: &[u8]) {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        self.out.push((egress, buf));
    }
}

impl<P: DriverPlatform> Plane<P> {
    /// A data plane over a switch; vifs are added as guests connect.
    pub fn new(side: P, dd: DriverDomain) -> Self {
        Plane {
            side,
            dd,
            vifs: Vec::new(),
            departed: Vec::new(),
            deliveries: Vec::new(),
            spare: Vec::new(),
            woken: Vec::new(),
            watcher: None,
            fd_buf: Vec::new(),
        }
    }

    /// A bridge-mode data plane (learning bridge `xenbr0`, a simulated uplink host)
    /// with each of `vifs` — (guest domain, guest MAC, connected vif, its backend
    /// ports) — on its own switch port `vif<domid>.0`, as `xennet up` attaches guests.
    pub fn bridged(side: P, vifs: Vec<BridgedVif<P>>) -> Result<Self, BuildError> {
        let dd = driver_domain(Mode::Bridge, true, &UplinkSpec::Sim)?;
        let mut plane = Plane::new(side, dd);
        for (domid, mac, vif, ports) in vifs {
            let cfg = PortConfig {
                peer_mac: Some(MacAddr(mac)),
                ..PortConfig::default()
            };
            let port = plane.dd.fabric_mut().add_port(
                format!("vif{domid}.0"),
                PortKind::Vif { domid, devid: 0 },
                cfg,
            )?;
            plane.add_vif(port, vif, ports);
        }
        Ok(plane)
    }

    /// The data plane's clock (the platform's), which the vifs' and the switch's
    /// timers count against.
    pub fn now(&self) -> Instant {
        self.side.now()
    }

    /// Attach a connected vif to its switch port.
    pub fn add_vif(&mut self, port: PortId, vif: PlatformVif<P>, events: Vec<Port>) {
        tracing::info!(vif = %vif.name(), "vif connected");
        self.vifs.push(VifPort {
            port,
            vif,
            events,
            woken: false,
            spurious: 0,
            masked_until: None,
            pass_start: VifCounters::default(),
        });
    }

    /// Detach and close a vif (its port stays in the switch until removed).
    pub fn remove_vif(&mut self, port: PortId) -> Option<VifCounters> {
        let i = self.vifs.iter().position(|v| v.port == port)?;
        let v = self.vifs.remove(i);
        for p in &v.events {
            self.side.close(*p);
        }
        let name = v.vif.name();
        let fault = v.vif.broken().map(|e| e.to_string());
        let counters = v.vif.close();
        tracing::info!(vif = %name, fault = fault.as_deref().unwrap_or("none"), "vif disconnected");
        if self.departed.len() >= DEPARTED_KEPT {
            self.departed.remove(0);
        }
        self.departed.push(Departed {
            port,
            name,
            counters,
            fault,
        });
        Some(counters)
    }

    /// One pass: guest transmit into the switch, endpoints and timers, switch output
    /// into the guests' receive rings. Returns whether anything moved.
    pub fn run_once(&mut self) -> bool {
        let now = self.side.now();
        let mut moved = false;
        let mut broken = Vec::new();
        // Guest frames go straight from netback's assembly buffer into the switch;
        // what the switch delivers to vifs is collected (one copy) for their queues.
        let mut out = std::mem::take(&mut self.deliveries);
        for v in &mut self.vifs {
            let port = v.port;
            let dd = &mut self.dd;
            let spare = &mut self.spare;
            if v.woken {
                v.pass_start = v.vif.counters();
            }
            let r = v.vif.process_tx(TX_BUDGET, now, &mut |f| {
                moved = true;
                dd.input(
                    now,
                    port,
                    f,
                    &mut ToVifs {
                        out: &mut out,
                        spare,
                    },
                );
            });
            if r.is_err() {
                broken.push(port);
            }
        }
        self.dd.poll(
            now,
            &mut ToVifs {
                out: &mut out,
                spare: &mut self.spare,
            },
        );
        for (egress, f) in out.drain(..) {
            moved = true;
            let spare = match self.vifs.iter_mut().find(|v| v.port == egress) {
                // The buffer moves into the vif's queue; a spare comes back.
                Some(v) => v.vif.enqueue_rx_owned(f, now).1,
                None => f,
            };
            if self.spare.len() < 256 {
                self.spare.push(spare);
            }
        }
        self.deliveries = out;
        for v in &mut self.vifs {
            match v.vif.process_rx(now) {
                Ok(n) => moved |= n > 0,
                Err(_) => broken.push(v.port),
            }
            v.note_pass(&self.side, now);
        }
        for port in broken {
            self.remove_vif(port);
        }
        moved
    }

    /// Sleep until a frontend kicks, timed work is due (the switch's timers, a rate
    /// credit refill a packet waits for, a receive frame to age out, a throttle to
    /// lift) or `limit` passes; first arming every ring (a final check that finds
    /// work returns at once). With nothing timed only `limit` bounds the sleep: an
    /// idle plane adds no timeout of its own. Throttled vifs whose time is up are
    /// unmasked first (their pending kicks then wake us at once).
    pub fn wait(&mut self, limit: Duration) {
        self.watch_fds();
        let now = self.side.now();
        for v in &mut self.vifs {
            if v.masked_until.is_some_and(|t| t <= now) {
                v.masked_until = None;
                v.spurious = 0;
                for p in &v.events {
                    self.side.unmask(*p);
                }
            }
        }
        let mut work = false;
        for v in &mut self.vifs {
            work |= v.vif.final_check().unwrap_or(true);
        }
        if work {
            return;
        }
        let now = self.side.now();
        let mut sleep = limit;
        if let Some(at) = self.dd.poll_at(now) {
            // An overdue timer is due now.
            sleep = sleep.min(at.saturating_duration_since(now));
        }
        for v in &self.vifs {
            for at in v.vif.poll_at().into_iter().chain(v.masked_until) {
                sleep = sleep.min(at.saturating_duration_since(now));
            }
        }
        self.woken.clear();
        self.side.wait_into(Some(sleep), &mut self.woken);
        for p in &self.woken {
            for v in &mut self.vifs {
                if let Some(i) = v.events.iter().position(|e| e == p) {
                    v.woken = true;
                    v.vif.note_event(i);
                }
            }
        }
    }

    /// Keeps a watcher on the endpoints' descriptors (restarted if they changed)
    /// and re-arms it: the plane has just read them.
    fn watch_fds(&mut self) {
        use xennet_platform::EventChannelOps as _;
        self.fd_buf.clear();
        self.dd.fds_into(&mut self.fd_buf);
        let same = match &self.watcher {
            Some(w) => w.fds() == self.fd_buf.as_slice(),
            None => self.fd_buf.is_empty(),
        };
        if !same {
            self.watcher = None;
            if !self.fd_buf.is_empty() {
                let started = self.dd.dup_fds().and_then(|dups| {
                    FdWatcher::start(self.fd_buf.clone(), dups, self.side.events().interrupter())
                });
                match started {
                    Ok(w) => self.watcher = Some(w),
                    Err(e) => tracing::warn!(
                        "cannot watch the endpoints' devices ({e}): they are read on timers only"
                    ),
                }
            }
        }
        if let Some(w) = &self.watcher {
            w.rearm();
        }
    }

    /// Run until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if !self.run_once() {
                self.wait(STOP_POLL);
            }
        }
    }
}

#[cfg(test)]
mod tests;
