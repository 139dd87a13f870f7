//! `xennet guest --platform xenlinux`: netfront in Linux user space inside a Xen domain
//! (a domU), against whatever backend the toolstack (`xl`) gave the device: Linux's
//! xen-netback, or xennet's own netback in dom0. XenStore is the domain's xenbus
//! device, pages are granted through `/dev/xen/gntalloc`, events go through
//! `/dev/xen/evtchn`; the handshake is the same code as on the process platform.
//!
//! The device must be left to user space: the domain's kernel netfront
//! (`xen-netfront`) must not be loaded, or it takes the device first.
//!
//! When the backend goes away (`xl network-detach`, a backend that stops), the guest
//! closes its side (Closing, then Closed once the backend let go) and waits for the
//! toolstack to create the device again (`xl network-attach`), then connects anew.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::wire::Ipv4Cidr;
use xennet_dom0::stack::GuestStack;
use xennet_netfront::phy::NetfrontDevice;
use xennet_netfront::xenbus::{self as fe, FrontLink, FrontOptions, Health};
use xennet_netfront::Netfront;
use xennet_platform::xenlinux::{EventChannels, EventPort, GntAlloc};
use xennet_ring::DomId;
use xennet_switch::uplink::tap::TapDevice;
use xennet_xenstore::xenbus::{read_num, read_state};
use xennet_xenstore::{XenbusState, XsClient};

use super::{script, GuestError, GuestOptions, GuestReport};

type Front = Netfront<GntAlloc, EventPort>;
type Link = FrontLink<Arc<EventChannels>>;

/// The device this guest runs: `/local/domain/<me>/device/vif/<devid>`.
struct Device {
    me: DomId,
    path: String,
}

fn platform_err(
    what: &str,
) -> impl FnOnce(xennet_platform::xenlinux::XenLinuxError) -> GuestError + '_ {
    move |e| GuestError::Setup(format!("{what}: {e}"))
}

/// Waits until the toolstack has (re)created the device for a frontend to start:
/// its directory names a backend and says Initialising.
fn wait_for_device(
    xs: &XsClient,
    dev: &Device,
    stop: &AtomicBool,
    wait: Duration,
) -> Result<DomId, GuestError> {
    let deadline = Instant::now() + wait;
    loop {
        let state = read_state(xs, &format!("{}/state", dev.path)).ok();
        let backend = read_num::<u16>(xs, &format!("{}/backend-id", dev.path)).ok();
        if let (Some(XenbusState::Initialising), Some(b)) = (state, backend) {
            return Ok(DomId(b));
        }
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return Err(GuestError::Setup(format!(
                "no device to connect: {}/state is {state:?}, backend-id {backend:?}",
                dev.path
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connect(
    xs: &XsClient,
    dev: &Device,
    events: &Arc<EventChannels>,
    opts: &GuestOptions,
    stop: &AtomicBool,
) -> Result<(Front, Link), GuestError> {
    let backend = wait_for_device(xs, dev, stop, opts.wait)?;
    let gnt = GntAlloc::open(backend).map_err(platform_err("grant pages"))?;
    // smoltcp takes whole frames of at most one MTU: no GSO super-frames.
    let mut fopts = FrontOptions {
        queues: opts.queues,
        ..FrontOptions::default()
    };
    fopts.features.gso_tcpv4 = false;
    Ok(fe::connect_with(xs.clone(), gnt, dev.me, events, &fopts)?)
}

/// Runs the guest on real Xen until its script is done (and, with `serve`, until
/// `stop`).
pub fn run(opts: &GuestOptions, stop: &AtomicBool) -> Result<GuestReport, GuestError> {
    let xs = XsClient::open_xen()?;
    // The xenbus device resolves relative paths in this domain's directory.
    let me = DomId(read_num::<u16>(&xs, "domid")?);
    let mut opts = opts.clone();
    opts.domid = me.0;
    let opts = &opts;
    let dev = Device {
        me,
        path: format!("/local/domain/{}/device/vif/0", me.0),
    };
    let events = EventChannels::open().map_err(platform_err("event channels"))?;
    let mut rep = GuestReport::default();
    let mut tap = match &opts.tap {
        Some(name) => Some(
            TapDevice::open(name)
                .map_err(|e| GuestError::Setup(format!("--stack tap:{name}: {e}")))?,
        ),
        None => None,
    };
    // The smoltcp stack needs its address from the command line (no toolstack reply
    // on real Xen); with a TAP the kernel's own configuration applies.
    let ip: Option<Ipv4Cidr> = match (&opts.tap, opts.ip) {
        (None, None) => {
            return Err(GuestError::Setup(
                "--ip ADDR/PREFIX is needed for the smoltcp stack on real Xen".into(),
            ))
        }
        (_, ip) => ip,
    };
    let (mut front, mut link) = connect(&xs, &dev, &events, opts, stop)?;
    let mac = front.mac();
    println!(
        "guest {}: netfront connected to domain {} ({} queue(s)){}",
        me.0,
        link.backend_id.0,
        front.num_queues(),
        ip.map(|c| format!(", {c}")).unwrap_or_default()
    );
    let ev = events.clone();
    let mut wait = move |d: Duration| {
        ev.wait(Some(d));
    };
    let mut pump = script::TapPump::new();
    loop {
        let mut guest = match (&tap, ip) {
            (Some(_), _) | (None, None) => Guest::Tap(Box::new(front)),
            (None, Some(ip)) => {
                let banner = format!("hello from guest domain {} over xennet", me.0);
                let st =
                    GuestStack::new(NetfrontDevice::new(front), mac, ip, opts.gateway, &banner);
                Guest::Smoltcp(Box::new(st))
            }
        };
        if let Guest::Smoltcp(st) = &mut guest {
            if rep.reconnects == 0 {
                script::run(st, opts, &mut wait, &mut rep);
                print!("{}", std::mem::take(&mut rep.text));
            }
        }
        let mut gone = None;
        let mut ctrl_told = false;
        while opts.serve && !stop.load(Ordering::Relaxed) {
            if !ctrl_told {
                if let Some(line) = ctrl_line(guest.front()) {
                    println!("guest {}: {line}", me.0);
                    ctrl_told = true;
                }
            }
            match (&mut guest, tap.as_mut()) {
                (Guest::Smoltcp(st), _) => st.serve_for(Duration::from_millis(100), &mut wait),
                (Guest::Tap(f), Some(t)) => {
                    let who = format!("guest {}", me.0);
                    pump.pump(&who, &mut **f, t, &mut wait, Duration::from_millis(100))
                }
                (Guest::Tap(_), None) => {
                    return Err(GuestError::Setup("tap stack without a TAP".into()))
                }
            }
            if let Health::Gone(why) = link.check() {
                gone = Some(why);
                break;
            }
        }
        rep.leaked_grants += link.close(guest.into_front());
        let Some(why) = gone else {
            break;
        };
        eprintln!(
            "guest {}: backend gone ({why}); closed our side, waiting for the device again",
            me.0
        );
        match connect(&xs, &dev, &events, opts, stop) {
            Ok((f, l)) => {
                front = f;
                link = l;
                rep.reconnects += 1;
                println!(
                    "guest {}: reconnected to domain {} ({} so far)",
                    me.0, link.backend_id.0, rep.reconnects
                );
            }
            Err(e) if stop.load(Ordering::Relaxed) => {
                eprintln!("guest {}: stopping: {e}", me.0);
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if opts.tap.is_some() {
        use std::fmt::Write as _;
        let _ = writeln!(rep.text, "guest {}: {}", me.0, pump.line());
    }
    Ok(rep)
}

enum Guest {
    Smoltcp(Box<GuestStack<NetfrontDevice<GntAlloc, EventPort>>>),
    Tap(Box<Front>),
}

/// What the control ring's start-up script achieved, once it is done (`None` before,
/// or without a control ring).
fn ctrl_line(front: &Front) -> Option<String> {
    let c = front.ctrl_state().filter(|c| c.done)?;
    let grants = if c.static_grants > 0 {
        format!("{} staging grants mapped by the backend", c.static_grants)
    } else {
        "no staging grants (the backend refused GREF mapping): grant copy".to_string()
    };
    Some(format!(
        "control ring: {grants}; Toeplitz hash {}; {} of {} requests refused",
        if c.hash { "on" } else { "off" },
        c.refused,
        c.requests
    ))
}

impl Guest {
    fn front(&mut self) -> &Front {
        match self {
            Guest::Smoltcp(st) => st.device_mut().netfront(),
            Guest::Tap(f) => f,
        }
    }

    fn into_front(self) -> Front {
        match self {
            Guest::Smoltcp(st) => st.into_device().into_inner(),
            Guest::Tap(f) => *f,
        }
    }
}
