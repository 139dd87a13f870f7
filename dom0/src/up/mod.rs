//! `xennet up`: the driver domain as a process. It runs the XenStore daemon
//! (as a supervised child process, or in-process), domain 0's memory, netback
//! and the switch; guests (`xennet guest`, other processes) ask it over the
//! control socket to create their vifs, then connect through the XenStore
//! handshake. Everything lives in one instance directory:
//!
//! ```text
//! DIR/xenstore/socket              domain 0's XenStore socket
//! DIR/xenstore/{journal,pid}       the daemon's store on disk, its pid
//! DIR/xenstore/domain/<id>/socket  each guest's, after `create`
//! DIR/domain/<id>/{memory,gnttab,evtchn,pid}   each domain's shared memory
//! DIR/control.sock                 create, destroy, network-attach, network-detach,
//!                                  list, stats, brctl, info, down
//! ```
//!
//! The backend side of every device is reconciled level-triggered from XenStore
//! (on watch events and every half second), so a missed or coalesced event
//! cannot wedge a device: the states in the store are the truth. That is also
//! what makes a xenstored restart harmless: the daemon comes back with its
//! store, the client reconnects and its watch fires again, and the loop skips
//! XenStore work while the daemon is away, so frames keep moving.

mod access;
mod guests;
mod reconcile;
mod removal;
mod views;
mod vifs;
pub mod xen;

use crate::build::{attach_captures, driver_domain_for, BuildError};

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use xennet_netback::up::Device;
use xennet_platform::shm::{Domain, RuntimeDir};
use xennet_ring::DomId;
use xennet_switch::config::Topology;
use xennet_switch::config::UplinkSpec;
use xennet_switch::domain::DriverDomain;
use xennet_switch::{Mode, PortId};
use xennet_xenstore::{XenbusState, Xenstored, XsClient};

use crate::control::{ControlServer, Peer, Reply};
use crate::dataplane::Dataplane;
use crate::side::Side;
use crate::xenstored::{XenstoredHandle, XenstoredProcess};

/// How the driver domain is set up.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The instance directory.
    pub dir: PathBuf,
    /// Bridge, route or NAT.
    pub mode: Mode,
    /// Proxy ARP on the uplink (route mode).
    pub proxy_arp: bool,
    /// What is behind `peth0`.
    pub uplink: UplinkSpec,
    /// `PORT=FILE` captures; vif ports may be named before their guest exists.
    pub captures: Vec<(String, PathBuf)>,
    /// `multi-queue-max-queues` offered to frontends.
    pub max_queues: usize,
    /// A topology file's contents (`xennet up --config`): when set, the driver
    /// domain's mode, proxy ARP, uplink, captures, addresses and bridge come from it
    /// (the fields above are ignored), and its guests' vifs are used when those
    /// guests ask for a vif without a spec of their own.
    pub topology: Option<Topology>,
    /// Run XenStore as `<exe> xenstored` in a supervised child process (started
    /// again on its journal when it dies); `None`: inside this process.
    pub xenstored_exe: Option<PathBuf>,
    /// `--vifs tap`: every vif is a kernel TAP device named as the vif, wired to it,
    /// for the driver domain's own bridge, routes or NAT (Xen's hotplug scripts);
    /// else (`switch`) a port on xennet's switch.
    pub kernel_vifs: bool,
}

impl UpOptions {
    /// Defaults: bridge mode, simulated uplink, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        UpOptions {
            dir: dir.into(),
            mode: Mode::Bridge,
            proxy_arp: true,
            uplink: UplinkSpec::Sim,
            captures: Vec::new(),
            max_queues: 4,
            topology: None,
            xenstored_exe: None,
            kernel_vifs: false,
        }
    }

    /// The settings the driver domain runs with: the topology file's, or the
    /// defaults with these options' mode, proxy ARP, uplink and captures.
    pub fn effective_topology(&self) -> Result<Topology, UpError> {
        if let Some(t) = &self.topology {
            return Ok(t.clone());
        }
        let mut t = Topology::from_toml_str("").map_err(BuildError::from)?;
        t.driver_domain.mode = self.mode;
        t.driver_domain.proxy_arp = self.proxy_arp;
        t.driver_domain.uplink = self.uplink.clone();
        Ok(t)
    }

    /// `PORT=FILE` captures: the options' or the topology file's.
    fn capture_list(&self) -> Vec<(String, PathBuf)> {
        match &self.topology {
            Some(t) => t
                .driver_domain
                .captures
                .iter()
                .map(|c| (c.target.clone(), c.path.clone()))
                .collect(),
            None => self.captures.clone(),
        }
    }
}

/// The instance directory used when `--dir` is not given.
pub fn default_dir() -> PathBuf {
    RuntimeDir::default_path()
}

/// The XenStore directory of an instance.
pub fn xenstore_dir(dir: &Path) -> PathBuf {
    dir.join("xenstore")
}

/// Why `xennet up` could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// Another driver domain serves the directory.
    #[error("a driver domain is already running in {0}")]
    Running(PathBuf),
    /// The driver domain the options describe could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Setup failed.
    #[error("{0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> UpError + '_ {
    move |e| UpError::Setup(format!("{what}: {e}"))
}

/// A guest domain this driver domain created.
struct Guest {
    /// The domain's name (`/local/domain/<id>/name`).
    dom_name: String,
    /// Its vifs: a create's in its order, an attached one before the first with
    /// a higher devid (none after `network-detach` of the last).
    vifs: Vec<vifs::GuestVif>,
}

/// A control request: its words, who sent it, where the answer goes.
struct Request {
    words: Vec<String>,
    peer: Peer,
    reply: mpsc::Sender<Reply>,
}

struct Up {
    opts: UpOptions,
    topo: Topology,
    rt: RuntimeDir,
    xsd: XenstoredHandle,
    xs: XsClient,
    plane: Dataplane,
    devs: BTreeMap<(u16, u32), Device<PortId>>,
    guests: BTreeMap<u16, Guest>,
    pending_captures: Vec<(String, PathBuf)>,
    removals: Vec<removal::Removal>,
    stop: bool,
}

/// Runs the driver domain until `stop` is set or a `down` request arrives.
/// `ready` is called once the control socket accepts requests.
pub fn run(opts: &UpOptions, stop: &AtomicBool, ready: impl FnOnce()) -> Result<(), UpError> {
    let rt = RuntimeDir::new(&opts.dir).map_err(setup("runtime directory"))?;
    let ctl = crate::control::socket_path(&opts.dir);
    if std::os::unix::net::UnixStream::connect(&ctl).is_ok() {
        return Err(UpError::Running(opts.dir.clone()));
    }
    for d in rt.clean_stale() {
        tracing::info!("cleaned files of crashed domain {}", d.0);
    }
    let xs_dir = xenstore_dir(&opts.dir);
    let xsd = match &opts.xenstored_exe {
        Some(exe) => XenstoredHandle::Process(
            XenstoredProcess::start(exe, &xs_dir).map_err(setup("xenstored"))?,
        ),
        None => XenstoredHandle::InProcess(Xenstored::start(&xs_dir).map_err(setup("xenstored"))?),
    };
    let xs = open_xenstore(&xs_dir).map_err(setup("xenstore"))?;
    let domain = Domain::create(&rt, DomId(0), 16384, 16384).map_err(setup("domain 0 memory"))?;
    let side = Side::from_domain(domain, Some(rt.clone()));
    let topo = opts.effective_topology()?;
    let (dd, pending_captures) = build_switch(opts, &topo)?;
    xs.write("/local/domain/0/name", "Domain-0")
        .map_err(setup("xenstore"))?;
    let (req_tx, req_rx) = mpsc::channel::<Request>();
    let req_tx = std::sync::Mutex::new(req_tx);
    let _server = ControlServer::start(&ctl, move |peer, words| {
        let (tx, rx) = mpsc::channel();
        let req = Request {
            words: words.iter().map(|w| w.to_string()).collect(),
            peer: *peer,
            reply: tx,
        };
        let sent = req_tx.lock().map(|s| s.send(req).is_ok()).unwrap_or(false);
        if !sent {
            return Err("driver domain is shutting down".into());
        }
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| Err("driver domain did not answer".into()))
    })
    .map_err(setup("control socket"))?;
    let mut up = Up {
        opts: opts.clone(),
        topo,
        rt,
        xsd,
        xs,
        plane: Dataplane::new(side, dd),
        devs: BTreeMap::new(),
        guests: BTreeMap::new(),
        pending_captures,
        removals: Vec::new(),
        stop: false,
    };
    ready();
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::Relaxed) && !up.stop {
        let before = up.plane.vifs.len();
        let moved = up.plane.run_once();
        // A vif the plane dropped (fatal protocol error) is closed in XenStore, with
        // its reason, on this turn rather than at the next sweep.
        let mut changed = up.plane.vifs.len() < before;
        while let Ok(req) = req_rx.try_recv() {
            up.request(req);
        }
        while up.xs.try_watch().is_some() {
            changed = true;
        }
        let sweep = last_sweep.elapsed() >= Duration::from_millis(500);
        if sweep && up.xs.is_closed() {
            up.reopen_xenstore();
        }
        // While xenstored is away (restarting) its requests would wait: skip
        // XenStore work and keep the data plane going; the watch fires again
        // when the client is back.
        if (changed || sweep) && up.xs.is_connected() {
            if sweep {
                up.reap_dead_guests();
            }
            up.reconcile();
            if !up.removals.is_empty() {
                up.check_removals();
            }
        } else if up.removal_due() {
            up.check_removals();
        }
        if sweep {
            last_sweep = Instant::now();
        }
        if !moved {
            up.plane.wait(Duration::from_millis(20));
        }
    }
    up.shutdown();
    Ok(())
}

/// The switch `topo` describes, with the options' captures attached; captures of
/// vif ports that do not exist yet are returned, to attach when the vif comes.
fn build_switch(
    opts: &UpOptions,
    topo: &Topology,
) -> Result<(DriverDomain, Vec<(String, PathBuf)>), UpError> {
    let mut dd = driver_domain_for(topo)?;
    let pending_captures = attach_captures(&mut dd, &opts.capture_list())?;
    Ok((dd, pending_captures))
}

/// Why the vif attached to `port` left the data plane (what netback's state machine
/// writes into the backend's `error` node), or `None` while it runs.
fn vif_ended<P: crate::platform::DriverPlatform>(
    plane: &crate::dataplane::Plane<P>,
    port: PortId,
) -> Option<String> {
    if plane.vifs.iter().any(|v| v.port == port) {
        return None;
    }
    let last = plane.departed.iter().rev().find(|d| d.port == port);
    Some(
        match last.and_then(|d| Some((&d.name, d.fault.as_ref()?))) {
            Some((name, fault)) => format!("{name}: {fault}; vif disconnected"),
            None => "vif detached".to_string(),
        },
    )
}

/// How long the driver domain's XenStore client waits for a restarted daemon
/// before it gives up (then the loop opens a new one every sweep).
const XS_RECONNECT_WINDOW: Duration = Duration::from_secs(60);

/// Domain 0's XenStore client, watching the backend directory.
fn open_xenstore(xs_dir: &Path) -> Result<XsClient, xennet_xenstore::XsError> {
    let xs = XsClient::connect_with(xs_dir.join("socket"), Some(XS_RECONNECT_WINDOW))?;
    xs.watch("/local/domain/0/backend/vif", "backend")?;
    Ok(xs)
}

impl Up {
    /// The client gave up on xenstored: try a new connection.
    fn reopen_xenstore(&mut self) {
        match open_xenstore(&xenstore_dir(&self.opts.dir)) {
            Ok(xs) => {
                tracing::info!("xenstore: connected again");
                self.xs = xs;
                for d in self.guests.keys() {
                    self.watch_guest(*d);
                }
            }
            Err(e) => tracing::warn!("xenstore: still unreachable: {e}"),
        }
    }

    fn shutdown(&mut self) {
        let ids: Vec<u16> = self.guests.keys().copied().collect();
        for d in ids {
            // Tell the frontends first, so they see Closed rather than a vanished store.
            for ((fe, _), dev) in &self.devs {
                if *fe == d {
                    let _ = dev.dev().set_state(&self.xs, XenbusState::Closing);
                }
            }
            self.end_removal(d, Err("the driver domain is stopping".into()));
            self.destroy(d);
        }
        let _ = self.plane.dd.captures_mut().flush();
        self.xsd.stop();
    }
}
