//! `xennet guest`: a guest domain as a process. It asks the driver domain to
//! create its vif (what `xl create` does), makes its own memory, runs the
//! netfront side of the XenStore handshake on its own XenStore socket, and puts
//! a smoltcp stack behind the netfront that answers ping and serves TCP echo
//! (port 7) and a small HTTP page (port 80). It can run a script (pings, a TCP
//! echo exchange) and exit, or serve until stopped. When the driver domain
//! goes away it keeps its memory, waits for a driver domain to come back, and
//! reconnects.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::wire::{Ipv4Address, Ipv4Cidr};
use xennet_netfront::phy::NetfrontDevice;
use xennet_netfront::xenbus::{self as fe, FrontLink, FrontOptions, Health, ShmFront};
use xennet_platform::shm::{Domain, EventChannels, RuntimeDir};
use xennet_ring::DomId;
use xennet_xenstore::{domain_socket, XsClient};

use xennet_dom0::control;
use xennet_dom0::stack::{GuestStack, PingReport};
use xennet_dom0::up::xenstore_dir;
use xennet_switch::uplink::tap::TapDevice;

mod script;
pub mod xen;

/// What a guest does.
#[derive(Clone, Debug)]
pub struct GuestOptions {
    /// The instance directory (shared with `xennet up`).
    pub dir: PathBuf,
    /// This guest's domain id (1..).
    pub domid: u16,
    /// xl vif spec (`mac=...,ip=...`); may be empty.
    pub vif: String,
    /// Queues to ask for.
    pub queues: usize,
    /// Override of the address the driver domain suggests.
    pub ip: Option<Ipv4Cidr>,
    /// Override of the gateway.
    pub gateway: Option<Ipv4Address>,
    /// Targets to ping, in order.
    pub pings: Vec<Ipv4Address>,
    /// Echo requests per ping target.
    pub count: u16,
    /// A TCP echo exchange with `addr:port`.
    pub tcp_echo: Option<(Ipv4Address, u16)>,
    /// Pings are expected to get no reply (route mode without proxy ARP).
    pub expect_loss: bool,
    /// After the script, serve (answer pings and TCP) until stopped.
    pub serve: bool,
    /// How long to wait for a driver domain (at start and after it went away).
    pub wait: Duration,
    /// `tap:NAME`: a Linux TAP device behind the netfront instead of smoltcp, so
    /// the kernel's own TCP/IP stack is the guest (configure the TAP from outside).
    pub tap: Option<String>,
}

impl GuestOptions {
    /// A guest that only serves.
    pub fn new(dir: impl Into<PathBuf>, domid: u16) -> Self {
        GuestOptions {
            dir: dir.into(),
            domid,
            vif: String::new(),
            queues: 1,
            ip: None,
            gateway: None,
            pings: Vec::new(),
            count: 4,
            tcp_echo: None,
            expect_loss: false,
            serve: true,
            wait: Duration::from_secs(30),
            tap: None,
        }
    }
}

/// Why the guest stopped.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// Talking to the driver domain failed.
    #[error("driver domain: {0}")]
    Control(#[from] control::ControlError),
    /// Setting up memory or channels failed.
    #[error("domain memory: {0}")]
    Shm(#[from] xennet_platform::shm::ShmError),
    /// The XenStore handshake failed.
    #[error("handshake: {0}")]
    Xenbus(#[from] fe::XenbusError),
    /// XenStore.
    #[error("xenstore: {0}")]
    Xs(#[from] xennet_xenstore::XsError),
    /// A XenStore node was missing or unusable.
    #[error("xenstore: {0}")]
    Node(#[from] xennet_xenstore::NodeError),
    /// The driver domain's reply made no sense.
    #[error("driver domain reply: {0}")]
    Reply(String),
    /// The guest's own set-up failed (its TAP device, its platform's devices).
    #[error("{0}")]
    Setup(String),
}

/// What the script saw.
#[derive(Debug, Default)]
pub struct GuestReport {
    /// Printable transcript.
    pub text: String,
    /// Per ping target.
    pub pings: Vec<PingReport>,
    /// Whether the TCP echo came back intact (None: not asked).
    pub tcp_echo_ok: Option<bool>,
    /// Times the guest reconnected to a restarted driver domain.
    pub reconnects: u32,
    /// Grants the backend still held at close (0 expected).
    pub leaked_grants: usize,
}

impl GuestReport {
    /// Whether everything the script claimed worked.
    pub fn ok(&self, expect_loss: bool) -> bool {
        let pings_ok = self.pings.iter().all(|p| {
            if expect_loss {
                p.received == 0
            } else {
                p.received > 0
            }
        });
        pings_ok && self.tcp_echo_ok != Some(false) && self.leaked_grants == 0
    }
}

#[derive(Clone, Copy)]
struct Assigned {
    ip: Ipv4Cidr,
    gateway: Option<Ipv4Address>,
}

fn parse_reply(reply: &str) -> Result<Assigned, GuestError> {
    let mut ip = None;
    let mut gateway = None;
    // The first line is the guest's first vif (further lines: its other vifs).
    for w in reply.lines().next().unwrap_or("").split_whitespace() {
        if let Some(v) = w.strip_prefix("ip=") {
            let first = v.split(',').next().unwrap_or("");
            ip = Some(
                first
                    .parse::<Ipv4Cidr>()
                    .map_err(|_| GuestError::Reply(reply.trim().into()))?,
            );
        } else if let Some(v) = w.strip_prefix("gw=") {
            gateway = Some(
                v.parse::<Ipv4Address>()
                    .map_err(|_| GuestError::Reply(reply.trim().into()))?,
            );
        }
    }
    Ok(Assigned {
        ip: ip.ok_or_else(|| GuestError::Reply(reply.trim().into()))?,
        gateway,
    })
}

type Stack = GuestStack<NetfrontDevice<Domain, xennet_platform::shm::EventPort>>;

enum Guest {
    Smoltcp(Box<Stack>),
    Tap(ShmFront),
}

struct Connection {
    guest: Guest,
    link: FrontLink,
    /// What the driver domain gave this guest at `create`.
    assigned: Assigned,
}

/// Asks for the vif, then connects. Waits up to `opts.wait` for a driver domain.
fn attach(
    opts: &GuestOptions,
    stop: &AtomicBool,
    domain: &Domain,
    events: &Arc<EventChannels>,
    log: &mut String,
) -> Result<Connection, GuestError> {
    let deadline = Instant::now() + opts.wait;
    let mut words = vec!["create".to_string(), opts.domid.to_string()];
    if !opts.vif.is_empty() {
        words.push(opts.vif.clone());
    }
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let reply = loop {
        match control::request(&opts.dir, &refs) {
            Ok(r) => break r,
            Err(control::ControlError::NotRunning(..))
                if Instant::now() < deadline && !stop.load(Ordering::Relaxed) =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let _ = write!(log, "{reply}");
    // From here on the driver domain holds a domain for us: undo it on failure, so
    // that a retry (or another guest with this id) can create it again.
    let connected = (|| {
        let assigned = parse_reply(&reply)?;
        let xs = XsClient::connect(domain_socket(&xenstore_dir(&opts.dir), opts.domid))?;
        connect_device(opts, &xs, domain, events, assigned, log)
    })();
    if connected.is_err() {
        let _ = control::request(&opts.dir, &["destroy", &opts.domid.to_string()]);
    }
    connected
}

/// Runs the frontend handshake for the guest's vif (created by the toolstack) and
/// puts the guest's stack behind it.
fn connect_device(
    opts: &GuestOptions,
    xs: &XsClient,
    domain: &Domain,
    events: &Arc<EventChannels>,
    assigned: Assigned,
    log: &mut String,
) -> Result<Connection, GuestError> {
    let fopts = FrontOptions {
        queues: opts.queues,
        ..FrontOptions::default()
    };
    let (front, link) = fe::connect(xs, domain, events, &fopts)?;
    let mac = front.mac();
    let ip = opts.ip.unwrap_or(assigned.ip);
    let gateway = opts.gateway.or(assigned.gateway);
    let _ = writeln!(
        log,
        "guest {}: netfront connected, {} {}",
        opts.domid,
        ip,
        gateway.map(|g| format!("via {g}")).unwrap_or_default()
    );
    if opts.tap.is_some() {
        return Ok(Connection {
            guest: Guest::Tap(front),
            link,
            assigned,
        });
    }
    let banner = format!("hello from guest domain {} over xennet", opts.domid);
    let stack = GuestStack::new(NetfrontDevice::new(front), mac, ip, gateway, &banner);
    Ok(Connection {
        guest: Guest::Smoltcp(Box::new(stack)),
        link,
        assigned,
    })
}

/// What became of a vif the toolstack removed.
enum Removed {
    /// The domain itself was destroyed (its XenStore connection closed).
    Destroyed,
    /// A vif was attached again (`network-attach`): connected to it.
    Attached(Box<Connection>),
    /// Stopped while waiting.
    Stopped,
}

/// After the toolstack removed the vif (`online = 0`): waits until the domain is
/// destroyed or a vif is attached again, and connects to that.
fn wait_for_vif(
    opts: &GuestOptions,
    stop: &AtomicBool,
    xs: &XsClient,
    domain: &Domain,
    events: &Arc<EventChannels>,
    assigned: Assigned,
) -> Result<Removed, GuestError> {
    let dev = format!("/local/domain/{}/device/vif/0", opts.domid);
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Removed::Stopped);
        }
        if xs.is_closed() {
            return Ok(Removed::Destroyed);
        }
        let state = xs.try_read_string(&format!("{dev}/state")).ok().flatten();
        if state.as_deref() == Some("1") {
            let mut log = String::new();
            let c = connect_device(opts, xs, domain, events, assigned, &mut log)?;
            print!("{log}");
            return Ok(Removed::Attached(Box::new(c)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Guest {
    fn into_front(self) -> ShmFront {
        match self {
            Guest::Smoltcp(stack) => stack.into_device().into_inner(),
            Guest::Tap(front) => front,
        }
    }
}

/// Runs the guest until its script is done (and, with `serve`, until `stop`).
pub fn run(opts: &GuestOptions, stop: &AtomicBool) -> Result<GuestReport, GuestError> {
    let rt = RuntimeDir::new(&opts.dir)?;
    let domain = Domain::create(&rt, DomId(opts.domid), 4096, 4096)?;
    let events = EventChannels::new(&domain, Some(rt.clone()));
    let mut rep = GuestReport::default();
    let mut tap = match &opts.tap {
        Some(name) => Some(
            TapDevice::open(name)
                .map_err(|e| GuestError::Setup(format!("--stack tap:{name}: {e}")))?,
        ),
        None => None,
    };
    let mut conn = attach(opts, stop, &domain, &events, &mut rep.text)?;
    let mut pump = script::TapPump::new();
    let ev = events.clone();
    let mut wait = move |d: Duration| {
        ev.wait(Some(d));
    };
    if let Guest::Smoltcp(stack) = &mut conn.guest {
        script::run(stack, opts, &mut wait, &mut rep);
    }
    if opts.serve {
        print!("{}", std::mem::take(&mut rep.text));
        while !stop.load(Ordering::Relaxed) {
            match (&mut conn.guest, tap.as_mut()) {
                (Guest::Smoltcp(stack), _) => {
                    stack.serve_for(Duration::from_millis(100), &mut wait)
                }
                (Guest::Tap(front), Some(tap)) => pump.pump(
                    &format!("guest {}", opts.domid),
                    front,
                    tap,
                    &mut |d| {
                        events.wait(Some(d));
                    },
                    Duration::from_millis(100),
                ),
                (Guest::Tap(_), None) => {
                    return Err(GuestError::Setup("tap stack without a TAP".into()))
                }
            }
            let why = match conn.link.check() {
                Health::Up => continue,
                Health::Gone(why) => why,
            };
            let Connection {
                guest,
                link,
                assigned,
            } = conn;
            // The toolstack's removal (network-detach, destroy) says online = 0 with
            // its Closing; a backend that failed or a driver domain that stopped does
            // not, and a new one will create the domain again.
            let xs = link.xs().clone();
            let online = xs.try_read_string(&format!("{}/online", link.backend));
            if online.ok().flatten().as_deref() == Some("0") {
                eprintln!(
                    "guest {}: backend gone ({why}); the toolstack removed vif{}.0",
                    opts.domid, opts.domid
                );
                rep.leaked_grants += link.close(guest.into_front());
                println!(
                    "guest {}: vif removed (network-detach or destroy); waiting for it to be attached again",
                    opts.domid
                );
                match wait_for_vif(opts, stop, &xs, &domain, &events, assigned)? {
                    Removed::Attached(c) => {
                        conn = *c;
                        rep.reconnects += 1;
                        println!("guest {}: vif attached again", opts.domid);
                        continue;
                    }
                    Removed::Destroyed => {
                        println!(
                            "guest {}: domain destroyed by the toolstack; exiting",
                            opts.domid
                        );
                        return Ok(finish(opts, rep, &pump, false));
                    }
                    Removed::Stopped => return Ok(finish(opts, rep, &pump, true)),
                }
            }
            eprintln!(
                "guest {}: backend gone ({why}); waiting for a driver domain",
                opts.domid
            );
            let dd_dead = link.xs().get_domain_path(0).is_err();
            let front = guest.into_front();
            let leaked = if dd_dead {
                link.abandon(front)
            } else {
                link.close(front)
            };
            if leaked > 0 {
                eprintln!(
                    "guest {}: {leaked} grants still held by the old backend",
                    opts.domid
                );
            }
            if dd_dead {
                // Let the dead driver domain's files be noticed as stale.
                std::thread::sleep(Duration::from_millis(200));
            }
            let mut log = String::new();
            conn = loop {
                match attach(opts, stop, &domain, &events, &mut log) {
                    Ok(c) => break c,
                    Err(e) if !stop.load(Ordering::Relaxed) => {
                        eprintln!("guest {}: reconnect failed: {e}; retrying", opts.domid);
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => return Err(e),
                }
            };
            rep.reconnects += 1;
            print!("{log}");
            println!(
                "guest {}: reconnected ({} so far)",
                opts.domid, rep.reconnects
            );
        }
    }
    let Connection { guest, link, .. } = conn;
    rep.leaked_grants += link.close(guest.into_front());
    Ok(finish(opts, rep, &pump, true))
}

/// The end of a guest's run: what it has to report, and (unless the toolstack
/// destroyed it already) its domain destroyed.
fn finish(
    opts: &GuestOptions,
    mut rep: GuestReport,
    pump: &script::TapPump,
    destroy: bool,
) -> GuestReport {
    if opts.tap.is_some() {
        let _ = writeln!(rep.text, "guest {}: {}", opts.domid, pump.line());
    }
    if rep.leaked_grants > 0 {
        let _ = writeln!(
            rep.text,
            "guest {}: {} grants still held at close",
            opts.domid, rep.leaked_grants
        );
    }
    if destroy {
        let _ = control::request(&opts.dir, &["destroy", &opts.domid.to_string()]);
    }
    rep
}
