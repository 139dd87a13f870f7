//! `xennet up --platform xenlinux`: the driver domain in domain 0's user space on
//! real Xen. The toolstack (`xl`) creates and destroys the devices; this serves
//! them:
//!
//! - XenStore is the host's xenstored ([`XsClient::open_xen`]): no embedded
//!   daemon, no control socket, no guest creation here.
//! - It watches `/local/domain/0/backend/vif` (and, per device, the frontend's
//!   `state`) and runs netback's per-device state machine ([`xennet_netback::up`])
//!   on every device `xl` writes there, level-triggered as the process platform's
//!   `reconcile` does: probe (features, InitWait); on Initialised read the
//!   frontend's rings and channels, connect over the platform
//!   ([`DriverPlatform::connect`]), add the switch port — named by the backend
//!   directory's `vifname` node or `vif<fe>.<devid>`, with the guest's MAC from its
//!   `mac` node and addresses from its `ip` node — and go Connected; when the
//!   frontend closes or the directory vanishes, detach and go Closed.
//! - The data plane is the same [`Plane`] and switch as on the process platform,
//!   over [`XenLinuxSide`] (gntdev + evtchn).
//!
//! # What libxl waits for (read in libxl_device.c)
//!
//! Adding a device, libxl writes both directories with state 1 (Initialising) and
//! waits up to `LIBXL_INIT_TIMEOUT` (10 s) for the backend's `state` to read exactly
//! 2 (InitWait); then it runs the vif's hotplug script and checks only the script's
//! exit status (on failure it reports the backend's `hotplug-error` node). It does
//! not read `hotplug-status`; [`xennet_netback::xenbus::probe`] writes
//! `hotplug-status = connected` anyway, as Linux's vif scripts do, for tools that
//! look. So with a no-op script (`script=vif-noop`, exiting 0) a device comes up
//! as soon as this backend has probed it. Because libxl must *see* state 2, a probed
//! device is held in InitWait for [`INITWAIT_HOLD`] before it may go Connected
//! (Linux netback waits for the script's `hotplug-status` instead; with a no-op
//! script there is nothing to wait for). Removing a device, libxl writes `online =
//! 0` and state 5 (Closing) in one transaction and waits up to
//! `LIBXL_DESTROY_TIMEOUT` (10 s) for state 6 (Closed), then removes the backend
//! directory. A connected device closes when its frontend answers our Closing (as
//! Linux netback's does); one that never connected is answered Closed at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use xennet_netback::up::{self as be_up, Attach, Device};
use xennet_netback::vif::VifCounters;
use xennet_netback::xenbus::{probe, BackendDevice};
use xennet_netfront::xenbus::parse_mac;
use xennet_switch::capture::PcapSink;
use xennet_switch::uplink::tap::TapDevice;

mod kernel_vifs;
use xennet_switch::wire::{Ipv4Address, MacAddr};
use xennet_switch::{Mode, PortConfig, PortId, PortKind};
use xennet_xenstore::xenbus::{read_state, write_state};
use xennet_xenstore::{XenbusState, XsClient, XsError};

use super::{build_switch, setup, UpError, UpOptions};
use crate::dataplane::Plane;
use crate::platform::{DriverPlatform, XenLinuxSide, XEN_LOCAL_PAGES};

/// Where the toolstack writes domain 0's vif backends.
pub const BACKEND_ROOT: &str = "/local/domain/0/backend/vif";
/// The watch token of [`BACKEND_ROOT`].
const BACKEND_TOKEN: &str = "backend";
/// Every device is looked at this often even without a watch event.
const SWEEP: Duration = Duration::from_millis(500);
/// How long a newly probed device stays in InitWait before it may connect, so the
/// toolstack (which waits for state 2 exactly) reads InitWait before Connected.
pub const INITWAIT_HOLD: Duration = Duration::from_millis(200);

/// A vif coming or going, as `xennet up --platform xenlinux` prints it (one line
/// each, for scripts to wait on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VifEvent {
    /// Attached to the switch; the backend is Connected.
    Connected {
        /// The switch port.
        name: String,
        /// The frontend's domain.
        frontend: u16,
        /// The device number.
        devid: u32,
        /// Queues the frontend connected.
        queues: usize,
    },
    /// Detached (frontend closed, device removed, protocol error or shutdown).
    Disconnected {
        /// The switch port.
        name: String,
        /// The frontend's domain.
        frontend: u16,
        /// The device number.
        devid: u32,
        /// The vif's final counters (none if it was already gone).
        counters: Option<VifCounters>,
    },
    /// The frontend was Initialised but could not be connected (the reason is also
    /// in the backend's `error` node; the backend went Closing).
    Refused {
        /// The switch port it would have had.
        name: String,
        /// The frontend's domain.
        frontend: u16,
        /// The device number.
        devid: u32,
        /// Why.
        why: String,
    },
}

impl fmt::Display for VifEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VifEvent::Connected {
                name,
                frontend,
                queues,
                ..
            } => write!(
                f,
                "{name} connected ({queues} queue{}, frontend {frontend})",
                if *queues == 1 { "" } else { "s" }
            ),
            VifEvent::Disconnected {
                name,
                frontend,
                counters,
                ..
            } => {
                write!(f, "{name} disconnected (frontend {frontend})")?;
                if let Some(c) = counters {
                    write!(
                        f,
                        ": from the guest {} frames ({} bytes, {} refused), to the guest {} \
                         frames ({} bytes, {} dropped), {} fatal errors",
                        c.tx_packets,
                        c.tx_bytes,
                        c.tx_errors,
                        c.rx_packets,
                        c.rx_bytes,
                        c.rx_dropped(),
                        c.fatal_errors
                    )?;
                }
                Ok(())
            }
            VifEvent::Refused {
                name,
                frontend,
                why,
                ..
            } => write!(f, "{name} refused (frontend {frontend}): {why}"),
        }
    }
}

/// A vif's switch port as the toolstack described it in the backend directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifPortSpec {
    /// `vifname`, or `vif<fe>.<devid>`.
    pub name: String,
    /// `mac`: the guest's MAC.
    pub mac: MacAddr,
    /// `ip`: the guest's addresses (space-separated; `a.b.c.d/n` is read as its
    /// address), routed to the port in route and NAT modes.
    pub ips: Vec<Ipv4Address>,
}

/// The default port name of a device: `vif<fe>.<devid>`, as Linux netback names
/// its interface.
pub fn default_port_name(frontend: u16, devid: u32) -> String {
    format!("vif{frontend}.{devid}")
}

/// Reads a device's port name, MAC and addresses from its backend directory
/// (`vifname`, `mac`, `ip`, each read once). A missing or unusable `mac`, a
/// `vifname` Linux would refuse as an interface name (empty, over 15 bytes,
/// containing `/`, `:` or white space) and an unparsable `ip` are refused.
pub fn vif_port_spec(xs: &XsClient, dev: &BackendDevice) -> Result<VifPortSpec, String> {
    let path = &dev.path;
    let node = |k: &str| {
        xs.try_read_string(&format!("{path}/{k}"))
            .map_err(|e| format!("{path}/{k}: {e}"))
    };
    let name = match node("vifname")? {
        None => default_port_name(dev.frontend_id.0, dev.devid),
        Some(n) => {
            let ok = !n.is_empty()
                && n.len() <= 15
                && !n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
            if !ok {
                return Err(format!("{path}/vifname: {n:?} is not an interface name"));
            }
            n
        }
    };
    let mac_s = node("mac")?.ok_or_else(|| format!("{path}/mac: missing"))?;
    let mac = parse_mac(&mac_s).ok_or_else(|| format!("{path}/mac: {mac_s:?} is not a MAC"))?;
    let mut ips = Vec::new();
    if let Some(list) = node("ip")? {
        for word in list.split_whitespace() {
            let addr = word.split_once('/').map_or(word, |(a, _)| a);
            let ip: Ipv4Address = addr
                .parse()
                .map_err(|_| format!("{path}/ip: {word:?} is not an IPv4 address"))?;
            ips.push(ip);
        }
    }
    Ok(VifPortSpec {
        name,
        mac: MacAddr(mac),
        ips,
    })
}

/// A connected device's switch port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The port.
    pub port: PortId,
    /// Its name.
    pub name: String,
    /// The frontend's domain.
    pub frontend: u16,
    /// The device number.
    pub devid: u32,
}

/// Adds a port per connecting vif and removes it when the vif goes.
struct Attacher<'a, P: DriverPlatform> {
    kernel_vifs: bool,
    plane: &'a mut Plane<P>,
    pending_captures: &'a mut Vec<(String, PathBuf)>,
    events: &'a mut Vec<VifEvent>,
    mode: Mode,
}

impl<P: DriverPlatform> Attacher<'_, P> {
    fn try_attach(
        &mut self,
        xs: &XsClient,
        d: &BackendDevice,
        spec: VifPortSpec,
    ) -> Result<Attached, String> {
        let fe = d.frontend_id.0;
        let params = d.read_frontend(xs).map_err(|e| e.to_string())?;
        if spec.ips.is_empty() && self.mode != Mode::Bridge {
            tracing::warn!(
                vif = %spec.name,
                "no ip node: in route and NAT modes nothing is routed to this guest"
            );
        }
        let cfg = PortConfig {
            peer_mac: Some(spec.mac),
            ips: spec.ips,
            ..PortConfig::default()
        };
        let kind = PortKind::Vif {
            domid: fe,
            devid: d.devid as u16,
        };
        let port = if self.kernel_vifs {
            // The kernel device made at probe time, wired to the vif's port.
            let tap = TapDevice::open(&spec.name)
                .map_err(|e| format!("kernel vif {}: {e}", spec.name))?;
            let (port, dev) = self
                .plane
                .dd
                .fabric_mut()
                .add_wire(spec.name.clone(), kind, cfg)
                .map_err(|e| format!("switch port {}: {e}", spec.name))?;
            self.plane.dd.attach(dev, Box::new(tap));
            port
        } else {
            self.plane
                .dd
                .fabric_mut()
                .add_port(spec.name.clone(), kind, cfg)
                .map_err(|e| format!("switch port {}: {e}", spec.name))?
        };
        let (vif, ports) = match self.plane.side.connect(d, &params) {
            Ok(c) => c,
            Err(e) => {
                self.plane.dd.remove_port(port);
                return Err(format!("connect: {e}"));
            }
        };
        if let Some(i) = self
            .pending_captures
            .iter()
            .position(|(p, _)| *p == spec.name)
        {
            let (_, file) = self.pending_captures.remove(i);
            match PcapSink::create(&file) {
                Ok(sink) => self.plane.dd.captures_mut().attach_port(port, sink),
                Err(e) => tracing::warn!("capture {}: {e}", spec.name),
            }
        }
        self.plane.add_vif(port, vif, ports);
        let queues = params.queues.len();
        tracing::info!(vif = %spec.name, frontend = fe, queues, "connected");
        self.events.push(VifEvent::Connected {
            name: spec.name.clone(),
            frontend: fe,
            devid: d.devid,
            queues,
        });
        Ok(Attached {
            port,
            name: spec.name,
            frontend: fe,
            devid: d.devid,
        })
    }
}

impl<P: DriverPlatform> Attach for Attacher<'_, P> {
    type Handle = Attached;

    fn attach(&mut self, xs: &XsClient, d: &BackendDevice) -> Result<Attached, String> {
        let fe = d.frontend_id.0;
        let (name, r) = match vif_port_spec(xs, d) {
            Ok(spec) => (spec.name.clone(), self.try_attach(xs, d, spec)),
            Err(e) => (default_port_name(fe, d.devid), Err(e)),
        };
        r.map_err(|why| {
            tracing::warn!(vif = %name, frontend = fe, "refused: {why}");
            self.events.push(VifEvent::Refused {
                name,
                frontend: fe,
                devid: d.devid,
                why: why.clone(),
            });
            why
        })
    }

    fn ended(&self, h: &Attached) -> Option<String> {
        super::vif_ended(self.plane, h.port)
    }

    fn detach(&mut self, h: Attached) {
        let counters = self.plane.remove_vif(h.port);
        self.plane.dd.remove_port(h.port);
        tracing::info!(vif = %h.name, frontend = h.frontend, "disconnected");
        self.events.push(VifEvent::Disconnected {
            name: h.name,
            frontend: h.frontend,
            devid: h.devid,
            counters,
        });
    }
}

/// Opens XenStore again after the connection was lost.
pub type XsOpener = Box<dyn Fn() -> Result<XsClient, XsError>>;

/// The backend of every vif the toolstack gives domain 0, over platform `P`, with
/// the switch of [`Plane`]. [`XenBackend::run`] is `xennet up --platform
/// xenlinux`'s loop; [`XenBackend::turn`] is one pass of it.
pub struct XenBackend<P: DriverPlatform> {
    xs: XsClient,
    open: XsOpener,
    /// The data plane.
    pub plane: Plane<P>,
    devs: BTreeMap<(u16, u32), Device<Attached>>,
    /// Devices the toolstack is removing while they were not connected: answered
    /// Closed and left alone until their directory goes or `online` is 1 again.
    removing: BTreeSet<(u16, u32)>,
    /// Newly probed devices held in InitWait until then.
    hold: BTreeMap<(u16, u32), Instant>,
    /// Frontend `state` nodes watched, per device.
    watched: BTreeMap<(u16, u32), String>,
    max_queues: usize,
    mode: Mode,
    pending_captures: Vec<(String, PathBuf)>,
    events: Vec<VifEvent>,
    last_sweep: Instant,
    look_again: bool,
    /// `--vifs tap`: each vif is a kernel TAP device wired to it.
    kernel_vifs: bool,
    /// The persistent TAP of each device probed with `--vifs tap`, by name: made
    /// before the backend goes InitWait (the toolstack's hotplug script, run then,
    /// puts it on a bridge), removed with the device's directory.
    taps: BTreeMap<(u16, u32), String>,
}

fn fe_token(key: (u16, u32)) -> String {
    format!("frontend-{}-{}", key.0, key.1)
}

impl<P: DriverPlatform> XenBackend<P> {
    /// A backend over `xs` (reopened with `open` when the connection is lost) and
    /// `plane`, offering `max_queues` queues; `pending_captures` are attached to vif
    /// ports when they appear. Watches [`BACKEND_ROOT`].
    pub fn new(
        xs: XsClient,
        open: XsOpener,
        plane: Plane<P>,
        mode: Mode,
        max_queues: usize,
        pending_captures: Vec<(String, PathBuf)>,
    ) -> Result<Self, XsError> {
        xs.watch(BACKEND_ROOT, BACKEND_TOKEN)?;
        Ok(XenBackend {
            xs,
            open,
            plane,
            devs: BTreeMap::new(),
            removing: BTreeSet::new(),
            hold: BTreeMap::new(),
            watched: BTreeMap::new(),
            max_queues,
            mode,
            pending_captures,
            events: Vec::new(),
            last_sweep: Instant::now(),
            look_again: true,
            kernel_vifs: false,
            taps: BTreeMap::new(),
        })
    }

    /// Serve each vif as a kernel network device (`xennet up --vifs tap`): a TAP
    /// named as the vif (`vifname`, else `vif<domid>.<devid>`), created when the
    /// device is probed and wired to the vif's port, instead of a port on the
    /// switch. The toolstack's hotplug script (`vif-bridge`, `vif-route`, ...) then
    /// does with it what it does with a Linux netback vif.
    pub fn with_kernel_vifs(mut self) -> Self {
        self.kernel_vifs = true;
        self
    }

    /// The XenStore connection.
    pub fn xs(&self) -> &XsClient {
        &self.xs
    }

    /// Where device `(frontend, devid)` stands, if it is known.
    pub fn device(&self, frontend: u16, devid: u32) -> Option<&Device<Attached>> {
        self.devs.get(&(frontend, devid))
    }

    /// The vif events since the last call.
    pub fn take_events(&mut self) -> Vec<VifEvent> {
        std::mem::take(&mut self.events)
    }

    /// One pass: move frames; look at XenStore on a watch event, on the sweep, when
    /// a held device may connect or a vif broke; sleep on the event channels when
    /// nothing moved (at most 20 ms). Returns whether frames moved.
    pub fn turn(&mut self) -> bool {
        let before = self.plane.vifs.len();
        let moved = self.plane.run_once();
        // A vif the plane dropped (protocol error) is detached on the next look.
        self.look_again |= self.plane.vifs.len() < before;
        while self.xs.try_watch().is_some() {
            self.look_again = true;
        }
        let now = Instant::now();
        let sweep = now.duration_since(self.last_sweep) >= SWEEP;
        if sweep {
            self.last_sweep = now;
            if self.xs.is_closed() {
                self.reopen();
            }
        }
        let held_due = self.hold.values().any(|t| *t <= now);
        if (self.look_again || sweep || held_due) && self.xs.is_connected() {
            self.look_again = false;
            self.reconcile();
        }
        if !moved {
            self.plane.wait(Duration::from_millis(20));
        }
        moved
    }

    /// Runs until `stop` is set, handing every vif event to `on_event`; then
    /// closes every device ([`XenBackend::shutdown`]).
    pub fn run(&mut self, stop: &AtomicBool, mut on_event: impl FnMut(&VifEvent)) {
        while !stop.load(Ordering::Relaxed) {
            self.turn();
            for e in self.take_events() {
                on_event(&e);
            }
        }
        self.shutdown();
        for e in self.take_events() {
            on_event(&e);
        }
    }

    fn reopen(&mut self) {
        match (self.open)() {
            Ok(xs) => {
                let mut ok = xs.watch(BACKEND_ROOT, BACKEND_TOKEN).is_ok();
                for (key, path) in &self.watched {
                    ok &= xs.watch(path, &fe_token(*key)).is_ok();
                }
                if ok {
                    tracing::info!("xenstore: connected again");
                    self.xs = xs;
                    self.look_again = true;
                }
            }
            Err(e) => tracing::warn!("xenstore: still unreachable: {e}"),
        }
    }

    fn watch_frontend(&mut self, key: (u16, u32), dev: &BackendDevice) {
        if self.watched.contains_key(&key) {
            return;
        }
        let path = format!("{}/state", dev.frontend);
        match self.xs.watch(&path, &fe_token(key)) {
            Ok(()) => {
                self.watched.insert(key, path);
            }
            Err(e) => tracing::warn!("watch {path}: {e}"),
        }
    }

    fn unwatch_frontend(&mut self, key: (u16, u32)) {
        if let Some(path) = self.watched.remove(&key) {
            let _ = self.xs.unwatch(&path, &fe_token(key));
        }
    }

    /// One look at every device under [`BACKEND_ROOT`] (level-triggered: what the
    /// store says now decides).
    pub fn reconcile(&mut self) {
        let fes = match self.xs.directory(BACKEND_ROOT) {
            Ok(v) => v,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => {
                tracing::warn!("xenstore: {e}");
                return;
            }
        };
        let now = Instant::now();
        let mut seen = BTreeSet::new();
        for fe in fes {
            let Ok(fe_id) = fe.parse::<u16>() else {
                continue;
            };
            let devids = self
                .xs
                .directory(&format!("{BACKEND_ROOT}/{fe}"))
                .unwrap_or_default();
            for dev in devids {
                let Ok(devid) = dev.parse::<u32>() else {
                    continue;
                };
                let key = (fe_id, devid);
                seen.insert(key);
                self.look_at(key, &format!("{BACKEND_ROOT}/{fe}/{dev}"), now);
            }
        }
        // Devices whose directory vanished.
        let gone: Vec<(u16, u32)> = self
            .devs
            .keys()
            .chain(&self.removing)
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for key in gone {
            self.removing.remove(&key);
            self.hold.remove(&key);
            self.unwatch_frontend(key);
            if let Some(Device::Connected(_, h)) = self.devs.remove(&key) {
                self.attacher().detach(h);
            }
        }
        let gone_taps: Vec<(u16, u32)> = self
            .taps
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for key in gone_taps {
            self.remove_tap(key);
        }
    }

    fn attacher(&mut self) -> Attacher<'_, P> {
        Attacher {
            kernel_vifs: self.kernel_vifs,
            plane: &mut self.plane,
            pending_captures: &mut self.pending_captures,
            events: &mut self.events,
            mode: self.mode,
        }
    }

    fn look_at(&mut self, key: (u16, u32), path: &str, now: Instant) {
        let online = self.xs.try_read_string(&format!("{path}/online"));
        let removing = online.ok().flatten().as_deref() == Some("0");
        let connected = matches!(self.devs.get(&key), Some(Device::Connected(..)));
        if removing && !connected {
            // The toolstack takes the device away before it connected: nothing to
            // release; answer Closed so it need not wait out its timeout.
            if self.removing.insert(key) {
                self.devs.remove(&key);
                self.hold.remove(&key);
                self.unwatch_frontend(key);
                let state = format!("{path}/state");
                if read_state(&self.xs, &state).ok() != Some(XenbusState::Closed) {
                    let _ = write_state(&self.xs, &state, XenbusState::Closed);
                }
                tracing::info!(device = %path, "removed by the toolstack before connecting");
            }
            return;
        }
        if !removing && self.removing.remove(&key) {
            tracing::info!(device = %path, "online again");
        }
        let mut state = self.devs.remove(&key);
        if state.is_none()
            && read_state(&self.xs, &format!("{path}/state")).ok() == Some(XenbusState::InitWait)
        {
            // Left in InitWait by an earlier backend (killed): offer again.
            match probe(&self.xs, path, self.max_queues) {
                Ok(d) => {
                    tracing::info!(device = %path, "taking over a device in InitWait");
                    self.ensure_tap(key, path);
                    self.hold.insert(key, now + INITWAIT_HOLD);
                    state = Some(Device::Probed(d));
                }
                Err(e) => tracing::warn!("{path}: {e}"),
            }
        }
        if let Some(Device::Probed(d)) = &state {
            if self.hold.get(&key).is_some_and(|t| *t > now) {
                let d = d.clone();
                self.watch_frontend(key, &d);
                if let Some(s) = state {
                    self.devs.insert(key, s);
                }
                return;
            }
            self.hold.remove(&key);
        }
        let was_new = state.is_none();
        if was_new
            && read_state(&self.xs, &format!("{path}/state")).ok()
                == Some(XenbusState::Initialising)
        {
            self.ensure_tap(key, path);
        }
        let max_queues = self.max_queues;
        let xs = self.xs.clone();
        let next = be_up::step(&xs, path, state, max_queues, &mut self.attacher());
        if let Some(next) = next {
            if !matches!(next, Device::Probed(_)) {
                self.hold.remove(&key);
            } else if was_new {
                self.hold.insert(key, now + INITWAIT_HOLD);
            }
            let d = next.dev().clone();
            self.watch_frontend(key, &d);
            self.devs.insert(key, next);
        }
    }

    /// Closes every device (Closing, detach, Closed), as when the backend driver
    /// goes away, and flushes the captures.
    pub fn shutdown(&mut self) {
        let devs = std::mem::take(&mut self.devs);
        for (key, dev) in devs {
            match dev {
                Device::Connected(d, h) => {
                    let _ = d.set_state(&self.xs, XenbusState::Closing);
                    self.attacher().detach(h);
                    let _ = d.set_state(&self.xs, XenbusState::Closed);
                }
                Device::Probed(d) | Device::Idle(d) => {
                    let _ = d.set_state(&self.xs, XenbusState::Closing);
                    let _ = d.set_state(&self.xs, XenbusState::Closed);
                }
            }
            self.unwatch_frontend(key);
        }
        self.hold.clear();
        let keys: Vec<(u16, u32)> = self.taps.keys().copied().collect();
        for key in keys {
            self.remove_tap(key);
        }
        let _ = self.plane.dd.captures_mut().flush();
    }
}

/// Why the kernel's own backend must not run beside this one.
const NETBACK_MODULE: &str = "/sys/module/xen_netback";

/// `xennet up --platform xenlinux`: serves every vif the toolstack gives domain 0
/// until `stop` is set, then closes them. `ready` is called once XenStore is
/// watched; `on_event` gets every vif connecting, disconnecting or refused. Returns
/// [`XenBackend::port_report`]'s lines.
pub fn run_xenlinux(
    opts: &UpOptions,
    stop: &AtomicBool,
    ready: impl FnOnce(),
    on_event: impl FnMut(&VifEvent),
) -> Result<Vec<String>, UpError> {
    if Path::new(NETBACK_MODULE).exists() {
        return Err(UpError::Setup(format!(
            "the kernel's xen-netback is loaded ({NETBACK_MODULE}) and serves {BACKEND_ROOT} \
             too; unload it (modprobe -r xen-netback) so the vifs reach this backend"
        )));
    }
    let topo = opts.effective_topology()?;
    let side = XenLinuxSide::open(XEN_LOCAL_PAGES).map_err(setup("xen devices"))?;
    let xs = XsClient::open_xen().map_err(setup("xenstore"))?;
    let (dd, pending) = build_switch(opts, &topo)?;
    let backend = XenBackend::new(
        xs,
        Box::new(XsClient::open_xen),
        Plane::new(side, dd),
        topo.driver_domain.mode,
        opts.max_queues,
        pending,
    )
    .map_err(setup("xenstore watch"))?;
    let mut backend = if opts.kernel_vifs {
        backend.with_kernel_vifs()
    } else {
        backend
    };
    ready();
    backend.run(stop, on_event);
    Ok(backend.port_report())
}
