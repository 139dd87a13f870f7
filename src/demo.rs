//! `xennet demo`: a driver domain and guests, each guest a netfront with a smoltcp
//! stack, connected through netback to a bridge, a router with proxy ARP, or NAT, with
//! the simulated remote host (or a TAP device) on the uplink. Guests ping the remote
//! host and each other and talk to its TCP echo port; the demo prints what each saw,
//! the bridge table and every vif's counters.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use xennet_netfront::phy::NetfrontDevice;
use xennet_netfront::Features;
use xennet_ring::DomId;
use xennet_switch::capture::PcapSink;
use xennet_switch::config::UplinkSpec;
use xennet_switch::wire::{Ipv4Address, Ipv4Cidr, MacAddr};
use xennet_switch::{brctl, Mode, PortConfig, PortKind};

use xennet_dom0::dataplane::Dataplane;
use xennet_dom0::side::{connect_pair, Side};
use xennet_dom0::stack::GuestStack;

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Bridge, route or NAT.
    pub mode: Mode,
    /// Proxy ARP on the uplink (route mode).
    pub proxy_arp: bool,
    /// What is behind `peth0`.
    pub uplink: UplinkSpec,
    /// `PORT=FILE` captures.
    pub captures: Vec<(String, PathBuf)>,
    /// Number of guests (1..=8).
    pub guests: u16,
    /// Pings per target.
    pub count: u16,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            mode: Mode::Bridge,
            proxy_arp: true,
            uplink: UplinkSpec::Sim,
            captures: Vec::new(),
            guests: 2,
            count: 4,
        }
    }
}

/// What a demo run saw.
#[derive(Debug, Default)]
pub struct DemoReport {
    /// The printable transcript.
    pub text: String,
    /// Per guest: pings to the remote host (sent, received).
    pub remote_pings: Vec<(u32, u32)>,
    /// Guest 1 -> guest 2 pings (sent, received), when there are two guests.
    pub guest_pings: Option<(u32, u32)>,
    /// Whether the TCP echo exchange with the remote host returned the payload.
    pub tcp_echo_ok: bool,
}

use xennet_dom0::build::{driver_domain, guest_addr, guest_mac, no_default_addr, SIM_IP};

/// Errors that stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Setting up the switch failed.
    #[error("switch: {0}")]
    Switch(String),
    /// Platform or driver wiring failed.
    #[error(transparent)]
    Wire(#[from] xennet_dom0::side::WireError),
    /// Platform failure.
    #[error(transparent)]
    Shm(#[from] xennet_platform::shm::ShmError),
}

fn sw<E: std::fmt::Display>(e: E) -> DemoError {
    DemoError::Switch(e.to_string())
}

/// A demo guest's address and gateway (its first vif's default).
fn default_addr(mode: Mode, domid: u16) -> Result<(Ipv4Cidr, Option<Ipv4Address>), DemoError> {
    guest_addr(mode, domid, 0).ok_or_else(|| DemoError::Switch(no_default_addr(mode)))
}

/// Run the demo.
pub fn run(opts: &DemoOptions) -> Result<DemoReport, DemoError> {
    let guests = opts.guests.clamp(1, 8);
    let mut rep = DemoReport::default();
    let mut t = String::new();
    let mode_name = match opts.mode {
        Mode::Bridge => "bridge",
        Mode::Route => "route",
        Mode::Nat => "nat",
    };
    let _ = writeln!(
        t,
        "xennet demo: driver domain 0 in {mode_name} mode, {guests} guest(s), uplink {}",
        match &opts.uplink {
            UplinkSpec::Sim => "sim (remote host 128.153.144.148)".to_string(),
            UplinkSpec::Tap(n) => format!("tap:{n}"),
            UplinkSpec::Pcap(p) => format!("pcap:{}", p.display()),
        }
    );

    // The driver domain: switch, uplink, its own stack on vif0.0 (bridge mode).
    let mut dd = driver_domain(opts.mode, opts.proxy_arp, &opts.uplink)
        .map_err(|e| DemoError::Switch(e.to_string()))?;

    let dom0 = Side::anonymous(DomId(0), 8192)?;
    let mut guest_sides = Vec::new();
    let mut fronts = Vec::new();
    let mut vif_ports = Vec::new();
    for i in 1..=guests {
        let side = Side::anonymous(DomId(i), 2048)?;
        dom0.know(&side);
        side.know(&dom0);
        let (addr, _) = default_addr(opts.mode, i)?;
        let pcfg = PortConfig {
            peer_mac: Some(MacAddr(guest_mac(i))),
            ips: vec![addr.address()],
            ..PortConfig::default()
        };
        let port = dd
            .fabric_mut()
            .add_port(
                format!("vif{i}.0"),
                PortKind::Vif { domid: i, devid: 0 },
                pcfg,
            )
            .map_err(sw)?;
        let features = Features {
            sg: true,
            gso_tcpv4: false,
        };
        let (front, back, ports) = connect_pair(&dom0, &side, 0, guest_mac(i), 1, features, None)?;
        vif_ports.push((port, back, ports.iter().map(|p| p.1).collect::<Vec<_>>()));
        fronts.push(front);
        guest_sides.push(side);
    }
    for (name, path) in &opts.captures {
        match dd.fabric().port_id(name) {
            Some(id) => {
                let sink = PcapSink::create(path).map_err(sw)?;
                dd.captures_mut().attach_port(id, sink);
                let _ = writeln!(t, "capturing {name} to {}", path.display());
            }
            None => {
                return Err(DemoError::Switch(format!(
                    "no port named {name:?} to capture"
                )))
            }
        }
    }
    let mut plane = Dataplane::new(dom0, dd);
    for (port, back, ports) in vif_ports {
        plane.add_vif(port, back, ports);
    }

    // The driver domain runs in its own thread, as it would in its own domain.
    let stop = Arc::new(AtomicBool::new(false));
    let dd_thread = {
        let stop = stop.clone();
        thread::spawn(move || {
            plane.run(&stop);
            plane
        })
    };

    // Guests 2.. serve in their own threads; guest 1 runs the script.
    let mut stacks = Vec::new();
    for (i, (front, side)) in fronts.into_iter().zip(guest_sides).enumerate() {
        let domid = i as u16 + 1;
        let (addr, gw) = default_addr(opts.mode, domid)?;
        let dev = NetfrontDevice::new(front);
        let banner = format!("hello from guest domain {domid} over xennet");
        stacks.push((
            GuestStack::new(dev, guest_mac(domid), addr, gw, &banner),
            side,
            addr,
        ));
    }
    let mut first = stacks.remove(0);
    let serve_stop = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();
    for (mut stack, side, _) in stacks.drain(..) {
        let serve_stop = serve_stop.clone();
        servers.push(thread::spawn(move || {
            let events = side.events.clone();
            while !serve_stop.load(Ordering::Relaxed) {
                stack.serve_for(Duration::from_millis(100), &mut |d| {
                    events.wait(Some(d));
                });
            }
        }));
    }
    let events = first.1.events.clone();
    let mut wait = |d: Duration| {
        events.wait(Some(d));
    };
    let interval = Duration::from_millis(100);
    let _ = writeln!(t, "\nguest 1 ({}) pings the remote host {SIM_IP}:", first.2);
    let ping = first.0.ping(
        SIM_IP,
        opts.count,
        interval,
        Duration::from_secs(1),
        &mut wait,
    );
    let _ = writeln!(t, "{ping}");
    rep.remote_pings.push((ping.transmitted, ping.received));
    if guests >= 2 {
        let (g2, _) = default_addr(opts.mode, 2)?;
        let _ = writeln!(t, "\nguest 1 pings guest 2 ({}):", g2.address());
        let p = first.0.ping(
            g2.address(),
            opts.count,
            interval,
            Duration::from_secs(1),
            &mut wait,
        );
        let _ = writeln!(t, "{p}");
        rep.guest_pings = Some((p.transmitted, p.received));
    }
    let _ = writeln!(t, "\nguest 1 opens a TCP connection to {SIM_IP}:7 (echo):");
    let payload = b"xennet: frames through netfront, the shared rings and netback";
    match first
        .0
        .tcp_exchange(SIM_IP, 7, payload, false, Duration::from_secs(3), &mut wait)
    {
        Ok(back) if back == payload => {
            rep.tcp_echo_ok = true;
            let _ = writeln!(t, "echoed {} bytes intact", back.len());
        }
        Ok(back) => {
            let _ = writeln!(t, "echo returned {} of {} bytes", back.len(), payload.len());
        }
        Err(e) => {
            let _ = writeln!(t, "echo failed: {e}");
        }
    }

    serve_stop.store(true, Ordering::Relaxed);
    for s in servers {
        let _ = s.join();
    }
    stop.store(true, Ordering::Relaxed);
    let mut plane = dd_thread
        .join()
        .map_err(|_| DemoError::Switch("driver domain thread panicked".into()))?;
    let _ = plane.dd.captures_mut().flush();

    if opts.mode == Mode::Bridge {
        let _ = writeln!(
            t,
            "\n$ xennet brctl show\n{}",
            brctl::show(plane.dd.fabric())
        );
    }
    let _ = writeln!(t, "vif counters:");
    t.push_str(&xennet_dom0::stats::table(&plane));
    let fc = first.0.device_mut().counters();
    let _ = writeln!(
        t,
        "guest 1 netfront: tx {} frames, rx {} frames, {} notifications sent, {} rx buffers posted",
        fc.tx_packets, fc.rx_packets, fc.notify_sent, fc.rx_posted
    );
    rep.text = t;
    Ok(rep)
}

/// The demo with every domain in its own process: `xennet up` and one
/// `xennet guest` per guest, started from `exe` (the `xennet` binary), talking
/// through XenStore, shared memory and event channels only. Returns the
/// transcript and whether every claim held.
pub fn run_processes(
    opts: &DemoOptions,
    exe: &std::path::Path,
) -> Result<(String, bool), DemoError> {
    use std::process::{Command, Stdio};

    use crate::procs::Instance;
    use xennet_dom0::control;

    let guests = opts.guests.clamp(1, 8);
    let mode = opts.mode;
    let dir = xennet_platform::shm::RuntimeDir::default_path()
        .join(format!("demo-{}", std::process::id()));
    let mut inst = Instance::new(exe, dir.clone());
    let mut t = String::new();
    let progress = |s: &str| eprintln!("[demo] {s}");
    let _ = writeln!(
        t,
        "xennet demo: driver domain 0 in {} mode, {guests} guest(s), uplink {}, each domain its own process",
        xennet_dom0::build::mode_name(mode),
        match &opts.uplink {
            UplinkSpec::Sim => "sim (remote host 128.153.144.148)".to_string(),
            UplinkSpec::Tap(n) => format!("tap:{n}"),
            UplinkSpec::Pcap(p) => format!("pcap:{}", p.display()),
        }
    );
    let _ = writeln!(t, "instance directory {}", dir.display());

    progress("starting the driver domain (xennet up)");
    let mut args: Vec<String> = vec!["--mode".into(), xennet_dom0::build::mode_name(mode).into()];
    if !opts.proxy_arp {
        args.push("--no-proxy-arp".into());
    }
    args.push("--uplink".into());
    args.push(match &opts.uplink {
        UplinkSpec::Sim => "sim".to_string(),
        UplinkSpec::Tap(n) => format!("tap:{n}"),
        UplinkSpec::Pcap(p) => format!("pcap:{}", p.display()),
    });
    for (port, file) in &opts.captures {
        let file = std::path::absolute(file).unwrap_or_else(|_| file.clone());
        args.push("--capture".into());
        args.push(format!("{port}={}", file.display()));
        let _ = writeln!(t, "capturing {port} to {}", file.display());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    inst.start_driver(&refs).map_err(sw)?;
    for g in 2..=guests {
        progress(&format!(
            "starting guest {g} (serves ping, TCP echo and HTTP)"
        ));
        inst.spawn_guest(g).map_err(sw)?;
    }
    // Wait for every serving guest's vif to be Connected (the handshake ran).
    for g in 2..=guests {
        if !inst.wait_connected(g, Duration::from_secs(15)) {
            return Err(DemoError::Switch(format!("guest {g} did not connect")));
        }
    }

    let mut ok = true;
    let guest1 = |args: &[String]| -> Result<(bool, String), DemoError> {
        let out = Command::new(exe)
            .args(["guest", "--domid", "1", "--dir"])
            .arg(&dir)
            .args(args)
            .args(["--count", &opts.count.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .map_err(sw)?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    let remote = SIM_IP.to_string();
    let guest2 = match guests {
        1 => None,
        _ => Some(default_addr(mode, 2)?.0.address().to_string()),
    };
    let expect_loss = !opts.proxy_arp && mode == Mode::Route;
    let mut script = vec!["--ping".to_string(), remote.clone()];
    if expect_loss {
        script.push("--expect-loss".into());
        let _ = writeln!(
            t,
            "\nproxy ARP is off on the uplink: the remote host's ARP requests for the guest go\n\
             unanswered, so (as Xen's routing documentation describes) no reply reaches guest 1."
        );
        progress("guest 1 pings the remote host (no reply expected)");
    } else {
        if let Some(g2) = &guest2 {
            script.extend(["--ping".to_string(), g2.clone()]);
        }
        script.extend(["--tcp-echo".to_string(), format!("{remote}:7")]);
        progress("guest 1 pings the remote host and guest 2, then opens a TCP connection to the remote host");
    }
    let (good, out) = guest1(&script)?;
    ok &= good;
    t.push_str(&out);
    if let (true, Some(g2)) = (expect_loss, &guest2) {
        // Guest-to-guest traffic is routed inside the driver domain: unaffected.
        progress("guest 1 pings guest 2");
        let (good, out) = guest1(&["--ping".to_string(), g2.clone()])?;
        ok &= good;
        t.push_str(&out);
    }
    if mode == Mode::Bridge {
        if let Ok(s) = control::request(&dir, &["brctl", "show"]) {
            let _ = writeln!(t, "\n$ xennet brctl show\n{s}");
        }
    }
    if let Ok(s) = control::request(&dir, &["list"]) {
        let _ = writeln!(t, "\n$ xennet list\n{s}");
    }
    if let Ok(s) = control::request(&dir, &["stats"]) {
        let _ = writeln!(t, "$ xennet stats\n{s}");
    }
    progress("tearing down: guests close their devices, then the driver domain stops");
    inst.stop();

    let _ = writeln!(
        t,
        "{}",
        if ok {
            "demo: every claim above held"
        } else {
            "demo: FAILED: a claim above did not hold"
        }
    );
    Ok((t, ok))
}
