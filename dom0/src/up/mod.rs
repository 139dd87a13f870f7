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
//! DIR/control.sock                 list, stats, brctl, create, destroy, down
//! ```
//!
//! The backend side of every device is reconciled level-triggered from XenStore
//! (on watch events and every half second), so a missed or coalesced event
//! cannot wedge a device: the states in the store are the truth. That is also
//! what makes a xenstored restart harmless: the daemon comes back with its
//! store, the client reconnects and its watch fires again, and the loop skips
//! XenStore work while the daemon is away, so frames keep moving.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};
use xennet_netback::xenbus::{self as be, BackendDevice};
use xennet_platform::shm::{Domain, PeerDomain, RuntimeDir};
use xennet_ring::DomId;
use xennet_switch::bridge::BridgeConfig;
use xennet_switch::capture::PcapSink;
use xennet_switch::config::UplinkSpec;
use xennet_switch::config::{parse_vif_spec, Script, Topology, VifSpec};
use xennet_switch::domain::DriverDomain;
use xennet_switch::route::RouterConfig;
use xennet_switch::uplink::host::{Host, HostConfig};
use xennet_switch::uplink::tap::TapDevice;
use xennet_switch::wire::{MacAddr, MacFmt};
use xennet_switch::{brctl, Fabric, FabricConfig, Mode, PortConfig, PortId, PortKind};
use xennet_xenstore::xenbus::{read_state, write_state};
use xennet_xenstore::{XenbusState, Xenstored, XsClient};

use crate::control::{ControlServer, Reply};
use crate::dataplane::Dataplane;
use crate::nodes::VifNodes;
use crate::side::Side;
use crate::xenstored::{XenstoredHandle, XenstoredProcess};

/// The simulated remote host on the uplink.
pub const SIM_IP: Ipv4Address = Ipv4Address::new(128, 153, 144, 148);
/// The driver domain's own address (bridge: on vif0.0; route: the gateway).
pub const DD_IP: Ipv4Address = Ipv4Address::new(128, 153, 144, 204);
/// The driver domain's MAC.
pub const DD_MAC: MacAddr = MacAddr([0x00, 0x16, 0x3e, 0x00, 0x00, 0x01]);

/// The MAC the toolstack gives a guest's first vif when `mac=` is absent
/// (deterministic, so runs are reproducible; `00:16:3e` is Xen's OUI).
pub fn guest_mac(domid: u16) -> [u8; 6] {
    [0x00, 0x16, 0x3e, 0x5e, (domid >> 8) as u8, domid as u8]
}

/// A guest's default address and gateway in each mode (Xen's conventions: the
/// uplink's segment for bridge and route, `10.0.<domid>.1` behind
/// `10.0.<domid>.128` for NAT).
pub fn guest_addr(mode: Mode, domid: u16) -> (Ipv4Cidr, Option<Ipv4Address>) {
    match mode {
        Mode::Bridge => (
            Ipv4Cidr::new(Ipv4Address::new(128, 153, 144, 204 + domid as u8), 24),
            None,
        ),
        Mode::Route => (
            Ipv4Cidr::new(Ipv4Address::new(128, 153, 144, 204 + domid as u8), 24),
            Some(DD_IP),
        ),
        Mode::Nat => (
            Ipv4Cidr::new(Ipv4Address::new(10, 0, domid as u8, 1), 24),
            Some(Ipv4Address::new(10, 0, domid as u8, 128)),
        ),
    }
}

/// The mode's name as on the command line.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Bridge => "bridge",
        Mode::Route => "route",
        Mode::Nat => "nat",
    }
}

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
        }
    }

    /// The settings the driver domain runs with: the topology file's, or the
    /// defaults with these options' mode, proxy ARP, uplink and captures.
    pub fn effective_topology(&self) -> Result<Topology, String> {
        if let Some(t) = &self.topology {
            if let Some((gi, g)) = t.guests.iter().enumerate().find(|(_, g)| g.vifs.len() > 1) {
                return Err(format!(
                    "guest[{gi}].vifs: domain {} lists {} vifs; xennet up attaches one vif per guest",
                    g.domid,
                    g.vifs.len()
                ));
            }
            return Ok(t.clone());
        }
        let mut t = Topology::from_toml_str("").map_err(|e| e.to_string())?;
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

/// Builds the switch with its uplink endpoint and, in bridge mode, the driver
/// domain's own stack on `vif0.0`, with the default addresses.
pub fn driver_domain(
    mode: Mode,
    proxy_arp: bool,
    uplink: &UplinkSpec,
) -> Result<DriverDomain, String> {
    let mut t = Topology::from_toml_str("").map_err(|e| e.to_string())?;
    t.driver_domain.mode = mode;
    t.driver_domain.proxy_arp = proxy_arp;
    t.driver_domain.uplink = uplink.clone();
    driver_domain_for(&t)
}

/// Builds the switch a topology describes: mode, bridge name and ageing, the driver
/// domain's address, gateway, MAC, forwarding and proxy ARP, the uplink and (for
/// `sim`) the simulated host's address, MAC and echo port.
pub fn driver_domain_for(t: &Topology) -> Result<DriverDomain, String> {
    let s = |e: &dyn std::fmt::Display| e.to_string();
    let d = &t.driver_domain;
    let cfg = FabricConfig {
        mode: d.mode,
        bridge: BridgeConfig {
            name: d.bridge.clone(),
            ageing: smoltcp::time::Duration::from_secs(d.ageing_secs),
            ..BridgeConfig::default()
        },
        router: RouterConfig {
            uplink_addr: d.addr,
            gateway: d.gateway,
            ip_forward: d.ip_forward,
            proxy_arp_uplink: d.proxy_arp,
            ..RouterConfig::default()
        },
    };
    let mut dd = DriverDomain::new(Fabric::new(cfg).map_err(|e| s(&e))?);
    let up_cfg = PortConfig {
        port_mac: d.mac,
        ..PortConfig::default()
    };
    let up = dd
        .fabric_mut()
        .add_port("peth0", PortKind::Uplink, up_cfg)
        .map_err(|e| s(&e))?;
    match &d.uplink {
        UplinkSpec::Sim => {
            let h = &t.uplink_host;
            let cfg = HostConfig {
                mac: h.mac,
                addr: h.addr,
                gateway: h.gateway,
                tcp_echo_port: Some(h.tcp_echo_port),
                ..HostConfig::sim_uplink()
            };
            let host = Host::new(cfg, SmolInstant::ZERO).map_err(|e| s(&e))?;
            dd.attach(up, Box::new(host));
        }
        UplinkSpec::Tap(name) => {
            let tap = TapDevice::open(name).map_err(|e| format!("uplink tap:{name}: {e}"))?;
            dd.attach(up, Box::new(tap));
        }
        UplinkSpec::Pcap(path) => {
            let replay = xennet_switch::uplink::pcap::PcapReplay::load(path).map_err(|e| s(&e))?;
            dd.attach(up, Box::new(replay));
        }
    }
    if d.mode == Mode::Bridge {
        let local = dd
            .fabric_mut()
            .add_port("vif0.0", PortKind::Local, PortConfig::default())
            .map_err(|e| s(&e))?;
        let cfg = HostConfig {
            addr: d.addr,
            gateway: d.gateway,
            ..HostConfig::driver_domain(d.mac)
        };
        let host = Host::new(cfg, SmolInstant::ZERO).map_err(|e| s(&e))?;
        dd.attach(local, Box::new(host));
    }
    Ok(dd)
}

/// Why `xennet up` could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// Another driver domain serves the directory.
    #[error("a driver domain is already running in {0}")]
    Running(PathBuf),
    /// Setup failed.
    #[error("{0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> UpError + '_ {
    move |e| UpError::Setup(format!("{what}: {e}"))
}

enum Dev {
    /// InitWait: waiting for the frontend.
    Probed(BackendDevice),
    /// Attached to the switch.
    Connected(BackendDevice, PortId),
    /// Closed or refused: waits for the frontend to start over.
    Idle(BackendDevice),
}

impl Dev {
    fn dev(&self) -> &BackendDevice {
        match self {
            Dev::Probed(d) | Dev::Connected(d, _) | Dev::Idle(d) => d,
        }
    }
}

struct Guest {
    port: PortId,
    /// The domain's name (`/local/domain/<id>/name`).
    dom_name: String,
    name: String,
    mac: MacAddr,
    ips: Vec<Ipv4Cidr>,
}

type Request = (Vec<String>, mpsc::Sender<Reply>);

struct Up {
    opts: UpOptions,
    topo: Topology,
    rt: RuntimeDir,
    xsd: XenstoredHandle,
    xs: XsClient,
    plane: Dataplane,
    devs: BTreeMap<(u16, u32), Dev>,
    guests: BTreeMap<u16, Guest>,
    pending_captures: Vec<(String, PathBuf)>,
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
    let topo = opts.effective_topology().map_err(UpError::Setup)?;
    let mut dd = driver_domain_for(&topo).map_err(UpError::Setup)?;
    let mut pending_captures = Vec::new();
    for (port, file) in &opts.capture_list() {
        match dd.fabric().port_id(port) {
            Some(id) => {
                let sink = PcapSink::create(file).map_err(setup("capture"))?;
                dd.captures_mut().attach_port(id, sink);
            }
            None if port.starts_with("vif") => pending_captures.push((port.clone(), file.clone())),
            None => return Err(UpError::Setup(format!("--capture {port}: no such port"))),
        }
    }
    xs.write("/local/domain/0/name", "Domain-0")
        .map_err(setup("xenstore"))?;
    let (req_tx, req_rx) = mpsc::channel::<Request>();
    let req_tx = std::sync::Mutex::new(req_tx);
    let _server = ControlServer::start(&ctl, move |words| {
        let (tx, rx) = mpsc::channel();
        let sent = req_tx
            .lock()
            .map(|s| {
                s.send((words.iter().map(|w| w.to_string()).collect(), tx))
                    .is_ok()
            })
            .unwrap_or(false);
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
        stop: false,
    };
    ready();
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::Relaxed) && !up.stop {
        let moved = up.plane.run_once();
        while let Ok((words, reply)) = req_rx.try_recv() {
            let r = up.control(&words);
            let _ = reply.send(r);
        }
        let mut changed = false;
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
            }
            Err(e) => tracing::warn!("xenstore: still unreachable: {e}"),
        }
    }

    fn control(&mut self, words: &[String]) -> Reply {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["create", domid, specs @ ..] => {
                let domid: u16 = domid
                    .parse()
                    .map_err(|_| format!("bad domain id {domid:?}"))?;
                self.create(domid, &specs.join(" "))
            }
            ["destroy", domid] => {
                let domid: u16 = domid
                    .parse()
                    .map_err(|_| format!("bad domain id {domid:?}"))?;
                if self.destroy(domid) {
                    Ok(format!("domain {domid} destroyed\n"))
                } else {
                    Err(format!("no domain {domid}"))
                }
            }
            ["list"] => Ok(self.list()),
            ["stats"] => Ok(self.stats(false)),
            ["stats", "--json"] => Ok(self.stats(true)),
            ["brctl", "show"] | ["brctl"] => {
                if self.topo.driver_domain.mode != Mode::Bridge {
                    return Err(format!(
                        "no bridge in {} mode",
                        mode_name(self.topo.driver_domain.mode)
                    ));
                }
                Ok(brctl::show(self.plane.dd.fabric()))
            }
            ["brctl", "showmacs", br] => {
                let now = self.plane.now();
                brctl::showmacs(self.plane.dd.fabric(), br, now).map_err(|e| e.to_string())
            }
            ["info"] => Ok(format!(
                "mode={} uplink={} guests={} {}\n",
                mode_name(self.topo.driver_domain.mode),
                match &self.topo.driver_domain.uplink {
                    UplinkSpec::Sim => "sim".to_string(),
                    UplinkSpec::Tap(n) => format!("tap:{n}"),
                    UplinkSpec::Pcap(p) => format!("pcap:{}", p.display()),
                },
                self.guests.len(),
                self.xsd.describe()
            )),
            ["down"] => {
                self.stop = true;
                Ok("driver domain stopping\n".into())
            }
            _ => Err(format!(
                "unknown request {:?} (create, destroy, list, stats, brctl, info, down)",
                words.join(" ")
            )),
        }
    }

    /// What xl create does for a guest with one vif: introduce the domain to
    /// XenStore, add the switch port (the hotplug script's job), write both
    /// device directories.
    fn create(&mut self, domid: u16, spec: &str) -> Reply {
        if domid == 0 {
            return Err("domain 0 is the driver domain".into());
        }
        if self.guests.contains_key(&domid) {
            return Err(format!("domain {domid} already exists"));
        }
        // A guest of the topology file that brings no spec gets the file's.
        let planned = self.topo.guests.iter().find(|g| g.domid == domid);
        let (spec, dom_name): (VifSpec, String) = match planned {
            Some(g) if spec.trim().is_empty() => {
                (g.vifs.first().cloned().unwrap_or_default(), g.name.clone())
            }
            _ => (
                parse_vif_spec(spec).map_err(|e| format!("vif spec: {e}"))?,
                format!("guest{domid}"),
            ),
        };
        let mode = self.topo.driver_domain.mode;
        let bridge_name = self.topo.driver_domain.bridge.clone();
        let want = match mode {
            Mode::Bridge => Script::Bridge,
            Mode::Route => Script::Route,
            Mode::Nat => Script::Nat,
        };
        if let Some(s) = spec.script {
            if s != want {
                return Err(format!(
                    "vif spec: script={} does not match the driver domain's {} mode",
                    s.name(),
                    mode_name(mode)
                ));
            }
        }
        if let (Some(b), Mode::Bridge) = (&spec.bridge, mode) {
            if *b != bridge_name {
                return Err(format!(
                    "vif spec: bridge={b}: this driver domain has only {bridge_name}"
                ));
            }
        }
        let devid = u32::from(spec.devid.unwrap_or(0));
        let mac = spec.mac.unwrap_or(MacAddr(guest_mac(domid)));
        let default = guest_addr(mode, domid).0;
        let ips = if spec.ips.is_empty() {
            vec![default]
        } else {
            // xl's `ip=` names addresses; the guest's interface gets the segment's
            // prefix so its gateway is on-link (the driver domain routes /32 per guest).
            spec.ips
                .iter()
                .map(|c| match c.prefix_len() {
                    32 => Ipv4Cidr::new(c.address(), default.prefix_len()),
                    _ => *c,
                })
                .collect()
        };
        let name = spec
            .vifname
            .clone()
            .unwrap_or_else(|| format!("vif{domid}.{devid}"));
        let pcfg = PortConfig {
            peer_mac: Some(mac),
            ips: ips.iter().map(|c| c.address()).collect(),
            ..PortConfig::default()
        };
        let port = self
            .plane
            .dd
            .fabric_mut()
            .add_port(
                name.clone(),
                PortKind::Vif {
                    domid,
                    devid: devid as u16,
                },
                pcfg,
            )
            .map_err(|e| e.to_string())?;
        if let Some(i) = self.pending_captures.iter().position(|(p, _)| *p == name) {
            let (_, file) = self.pending_captures.remove(i);
            match PcapSink::create(&file) {
                Ok(sink) => self.plane.dd.captures_mut().attach_port(port, sink),
                Err(e) => tracing::warn!("capture {name}: {e}"),
            }
        }
        let nodes = VifNodes {
            frontend_domid: domid,
            backend_domid: 0,
            devid,
            mac: MacFmt(mac).to_string(),
            bridge: (mode == Mode::Bridge).then(|| bridge_name.clone()),
            ip: (!spec.ips.is_empty() || mode != Mode::Bridge).then(|| {
                ips.iter()
                    .map(|c| c.address().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            script: want.name().to_string(),
            rate: spec
                .rate
                .map(|r| (r.bytes_per_interval, u64::from(r.interval_us))),
            vifname: spec.vifname.clone(),
        };
        if let Err(e) = self.xs.introduce(domid, 0, 0) {
            self.plane.dd.remove_port(port);
            return Err(format!("xenstore introduce: {e}"));
        }
        let written = (|| -> Result<(), String> {
            let e = |e: xennet_xenstore::XsError| e.to_string();
            self.xs
                .write(&format!("/local/domain/{domid}/name"), &dom_name)
                .map_err(e)?;
            self.xs
                .write(&format!("/local/domain/{domid}/domid"), domid.to_string())
                .map_err(e)?;
            for w in nodes.writes() {
                self.xs.write(&w.path, &w.value).map_err(e)?;
                if let Some(p) = w.perms {
                    self.xs.set_perms(&w.path, &p.to_perms()).map_err(e)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = written {
            self.plane.dd.remove_port(port);
            let _ = self.xs.release(domid);
            return Err(format!("xenstore: {e}"));
        }
        self.guests.insert(
            domid,
            Guest {
                port,
                dom_name,
                name: name.clone(),
                mac,
                ips: ips.clone(),
            },
        );
        self.reconcile();
        let gw = match mode {
            // The guests' gateway is the driver domain's own address.
            Mode::Route => Some(self.topo.driver_domain.addr.address()),
            _ => guest_addr(mode, domid).1,
        };
        let mut out = format!(
            "domain {domid} created: {name} mac={} ip={}",
            MacFmt(mac),
            ips.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        if let Some(gw) = gw {
            let _ = write!(out, " gw={gw}");
        }
        let _ = writeln!(out, " mode={}", mode_name(mode));
        Ok(out)
    }

    fn destroy(&mut self, domid: u16) -> bool {
        let Some(g) = self.guests.remove(&domid) else {
            return false;
        };
        let keys: Vec<(u16, u32)> = self.devs.keys().filter(|k| k.0 == domid).copied().collect();
        for k in keys {
            if let Some(Dev::Connected(_, port)) = self.devs.remove(&k) {
                self.plane.remove_vif(port);
            }
        }
        self.plane.remove_vif(g.port);
        self.plane.dd.remove_port(g.port);
        let _ = self.xs.rm(&format!("/local/domain/0/backend/vif/{domid}"));
        let _ = self.xs.rm(&format!("/local/domain/{domid}"));
        let _ = self.xs.release(domid);
        self.plane.side.ops.remove_peer(DomId(domid));
        self.plane.side.events.remove_peer(DomId(domid));
        tracing::info!(domid, vif = %g.name, "domain destroyed");
        true
    }

    /// Guests whose process died (kill -9): their vif leaves the switch, every
    /// mapping of their memory is dropped, their files are removed.
    fn reap_dead_guests(&mut self) {
        let dead: Vec<u16> = self
            .guests
            .keys()
            .copied()
            .filter(|d| self.rt.is_stale(DomId(*d)))
            .collect();
        for d in dead {
            tracing::warn!(domid = d, "guest process is gone; destroying its devices");
            self.destroy(d);
            self.rt.clean_stale();
        }
    }

    fn reconcile(&mut self) {
        let root = "/local/domain/0/backend/vif";
        let fes = match self.xs.directory(root) {
            Ok(v) => v,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => {
                tracing::warn!("xenstore: {e}");
                return;
            }
        };
        let mut seen = Vec::new();
        for fe in fes {
            let Ok(fe_id) = fe.parse::<u16>() else {
                continue;
            };
            for dev in self
                .xs
                .directory(&format!("{root}/{fe}"))
                .unwrap_or_default()
            {
                let Ok(devid) = dev.parse::<u32>() else {
                    continue;
                };
                seen.push((fe_id, devid));
                self.step(fe_id, devid, &format!("{root}/{fe}/{dev}"));
            }
        }
        // Devices whose directory vanished.
        let gone: Vec<(u16, u32)> = self
            .devs
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(Dev::Connected(_, port)) = self.devs.remove(&k) {
                self.plane.remove_vif(port);
            }
        }
    }

    fn step(&mut self, fe_id: u16, devid: u32, path: &str) {
        let key = (fe_id, devid);
        let xs = self.xs.clone();
        let Some(dev) = self.devs.remove(&key) else {
            if let Ok(XenbusState::Initialising) = read_state(&xs, &format!("{path}/state")) {
                match be::probe(&xs, path, self.opts.max_queues) {
                    Ok(d) => {
                        self.devs.insert(key, Dev::Probed(d));
                        self.step(fe_id, devid, path);
                    }
                    Err(e) => {
                        tracing::warn!("{path}: {e}");
                        let _ = xs.write(&format!("{path}/error"), e.to_string());
                        let _ = write_state(&xs, &format!("{path}/state"), XenbusState::Closing);
                    }
                }
            }
            return;
        };
        let fe_state = dev
            .dev()
            .frontend_state(&xs)
            .unwrap_or(XenbusState::Unknown);
        let next = match dev {
            Dev::Probed(d) => match fe_state {
                XenbusState::Initialised | XenbusState::Connected => self.connect(d),
                _ => Dev::Probed(d),
            },
            Dev::Connected(d, port) => {
                let alive = self.plane.vifs.iter().any(|v| v.port == port);
                if !alive {
                    d.fail(&xs, "frontend broke the protocol; vif disconnected");
                    Dev::Idle(d)
                } else if matches!(fe_state, XenbusState::Connected | XenbusState::Initialised) {
                    Dev::Connected(d, port)
                } else {
                    self.plane.remove_vif(port);
                    let _ = d.set_state(&xs, XenbusState::Closed);
                    Dev::Idle(d)
                }
            }
            Dev::Idle(d) => match fe_state {
                // The frontend starts over (reconnect): offer again.
                XenbusState::Initialising | XenbusState::Closed | XenbusState::Unknown
                    if d.state(&xs).ok() != Some(XenbusState::InitWait) =>
                {
                    if fe_state == XenbusState::Initialising {
                        let _ = xs.rm(&format!("{}/error", d.path));
                        let _ = d.set_state(&xs, XenbusState::InitWait);
                        Dev::Probed(d)
                    } else {
                        Dev::Idle(d)
                    }
                }
                _ => Dev::Idle(d),
            },
        };
        self.devs.insert(key, next);
    }

    fn connect(&mut self, d: BackendDevice) -> Dev {
        let fe = d.frontend_id;
        let Some(port) = self.guests.get(&fe.0).map(|g| g.port) else {
            d.fail(
                &self.xs,
                "no switch port for this domain (not created through the toolstack)",
            );
            return Dev::Idle(d);
        };
        let params = match d.read_frontend(&self.xs) {
            Ok(p) => p,
            Err(e) => {
                d.fail(&self.xs, &e.to_string());
                return Dev::Idle(d);
            }
        };
        if self.plane.side.ops.peer(fe).is_none() {
            match PeerDomain::open(&self.rt, fe) {
                Ok(p) => {
                    self.plane.side.ops.add_peer(p);
                }
                Err(e) => {
                    d.fail(
                        &self.xs,
                        &format!("cannot open domain {}'s memory: {e}", fe.0),
                    );
                    return Dev::Idle(d);
                }
            }
        }
        let side = &self.plane.side;
        match d.connect(&params, &side.ops, &side.domain, &side.events) {
            Ok((vif, ports)) => {
                self.plane.add_vif(port, vif, ports);
                if let Err(e) = d.set_state(&self.xs, XenbusState::Connected) {
                    tracing::warn!("{}: {e}", d.path);
                }
                Dev::Connected(d, port)
            }
            Err(e) => {
                d.fail(&self.xs, &format!("connect: {e}"));
                Dev::Idle(d)
            }
        }
    }

    fn list(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{:<12} {:>5}  {:<10} {:<18} {:<20} state (be/fe)",
            "Name", "ID", "vif", "mac", "ip"
        );
        let _ = writeln!(
            t,
            "{:<12} {:>5}  {:<10} {:<18} {:<20} -",
            "Domain-0",
            0,
            "-",
            MacFmt(self.topo.driver_domain.mac).to_string(),
            self.topo.driver_domain.addr.address().to_string()
        );
        for (domid, g) in &self.guests {
            let (be_s, fe_s) = self
                .devs
                .iter()
                .find(|(k, _)| k.0 == *domid)
                .map(|(_, d)| {
                    let d = d.dev();
                    (
                        d.state(&self.xs).unwrap_or(XenbusState::Unknown),
                        d.frontend_state(&self.xs).unwrap_or(XenbusState::Unknown),
                    )
                })
                .unwrap_or((XenbusState::Unknown, XenbusState::Unknown));
            let ips = g
                .ips
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let _ = writeln!(
                t,
                "{:<12} {:>5}  {:<10} {:<18} {:<20} {:?}/{:?}",
                g.dom_name.clone(),
                domid,
                g.name,
                MacFmt(g.mac).to_string(),
                ips,
                be_s,
                fe_s
            );
        }
        t
    }

    fn stats(&self, json: bool) -> String {
        if json {
            let v: Vec<serde_json::Value> = self
                .plane
                .vifs
                .iter()
                .map(|v| serde_json::json!({"vif": v.vif.name(), "counters": v.vif.counters()}))
                .collect();
            return serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
        }
        self.plane.counters_table()
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
            self.destroy(d);
        }
        let _ = self.plane.dd.captures_mut().flush();
        self.xsd.stop();
    }
}
