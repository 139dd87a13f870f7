//! The xennet paths of the study. Each is a set of processes connected by the XenStore
//! handshake exactly as `xennet up` and `xennet guest` connect them:
//! - `tx`: a guest's netfront transmits; the driver domain's netback takes every frame;
//! - `rx`: the driver domain's netback sends; the guest's netfront receives;
//! - `bridge`: guest 1 -> netback -> bridge `xenbr0` -> netback -> guest 2;
//! - `tx-light`: `tx` at light load: the guest sends a batch, waits for its answers,
//!   then pauses [`LIGHT_GAP`], so the driver domain goes to sleep between batches and
//!   every batch has to wake it (notifications per batch near 1);
//! - `tx-copy`, `rx-copy`: `tx` and `rx` with a backend that does not offer the control
//!   ring, so every slot is a grant copy (the others use staging grants: the guest's
//!   buffer pages stay mapped in the driver domain).
//!
//! The coordinator (the `xennet bench` process) runs the XenStore daemon and writes the
//! devices as the toolstack does; each domain is a `bench-worker` process. A worker
//! prints its report as one JSON line once its part is done, then waits for its stdin to
//! close, so no domain tears down while another still measures.

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xennet_netback::xenbus as be;
use xennet_netfront::xenbus as fe;
use xennet_platform::shm::{Domain, EventChannels, PeerDomain, RuntimeDir};
use xennet_ring::DomId;
use xennet_xenstore::{dom0_socket, domain_socket, XenbusState, Xenstored, XsClient};

use super::peers::{check_frame, fill_frame};
use super::{sys, Case, Sample, WorkerReport};
use xennet_dom0::dataplane::Dataplane;
use xennet_dom0::nodes::VifNodes;
use xennet_dom0::side::{Back, Front, Side};
use xennet_dom0::up::{guest_mac, xenstore_dir, DD_MAC};
use xennet_switch::wire::{MacAddr, MacFmt};

/// The sending guest (and the only guest of `tx` and `rx`).
const GUEST_A: u16 = 1;
/// The receiving guest of `bridge`.
const GUEST_B: u16 = 2;
/// Bytes of Ethernet header in front of the checked payload.
pub const HEADER: usize = 14;
/// An ethertype for local experiments (IEEE 802): no stack in the path answers it.
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
/// How long a worker keeps polling before it sleeps on its event channel. A blocking
/// wake across processes costs tens of microseconds here (docs/design.md §8); a
/// peer that is producing shows up well within this.
const SPIN: Duration = Duration::from_micros(50);
/// A worker that sees nothing at all for this long reports what it has.
const IDLE: Duration = Duration::from_secs(5);
/// Once frames flowed, this long without any means the sender is done (frames the
/// path dropped never come); the receiver reports.
const QUIET: Duration = Duration::from_millis(300);

/// `tx`: guest transmit into the driver domain.
pub fn tx(case: &Case) -> io::Result<Sample> {
    one_guest("tx", "xennet-back-tx", "xennet-front-send", case, false)
}

/// `rx`: the driver domain sends to a guest.
pub fn rx(case: &Case) -> io::Result<Sample> {
    one_guest("rx", "xennet-back-rx", "xennet-front-recv", case, true)
}

/// `tx` by plain grant copy (no staging grants).
pub fn tx_copy(case: &Case) -> io::Result<Sample> {
    one_guest(
        "tx-copy",
        "xennet-back-tx-copy",
        "xennet-front-send",
        case,
        false,
    )
}

/// `rx` by plain grant copy (no staging grants).
pub fn rx_copy(case: &Case) -> io::Result<Sample> {
    one_guest(
        "rx-copy",
        "xennet-back-rx-copy",
        "xennet-front-recv",
        case,
        true,
    )
}

/// The pause between batches of `tx-light` (longer than a waiting side's spin).
pub const LIGHT_GAP: Duration = Duration::from_micros(200);
/// Frames `tx-light` sends (its rate is set by the pause, not by the path).
pub const LIGHT_PACKETS: u64 = 2_000;

/// `tx` at light load: one batch per [`LIGHT_GAP`].
pub fn tx_light(case: &Case) -> io::Result<Sample> {
    let case = Case {
        packets: case.packets.min(LIGHT_PACKETS),
        ..case.clone()
    };
    one_guest(
        "tx-light",
        "xennet-back-tx",
        "xennet-front-send-light",
        &case,
        false,
    )
}

/// A driver domain and one guest; `back_sends` says which of them is the sender.
fn one_guest(
    path: &str,
    back_role: &str,
    front_role: &str,
    case: &Case,
    back_sends: bool,
) -> io::Result<Sample> {
    let inst = Instance::new(path, &[GUEST_A])?;
    let mut back = inst.spawn(back_role, None, case, 0)?;
    let mut front = inst.spawn(front_role, Some(GUEST_A), case, 1)?;
    let (b, f) = (back.report(), front.report());
    let (b, f) = (b?, f?);
    let (s, r) = if back_sends { (b, f) } else { (f, b) };
    Ok(Sample::from_reports(path, case, &s, &r, s.drops + r.drops))
}

/// `bridge`: guest 1 -> bridge -> guest 2, the driver domain forwarding.
pub fn bridge(case: &Case) -> io::Result<Sample> {
    let inst = Instance::new("bridge", &[GUEST_A, GUEST_B])?;
    let mut back = inst.spawn("xennet-back-bridge", None, case, 0)?;
    let mut recv = inst.spawn("xennet-front-recv", Some(GUEST_B), case, 1)?;
    let mut send = inst.spawn("xennet-front-send", Some(GUEST_A), case, 1)?;
    let s = send.report();
    let r = recv.report();
    let b = back.report();
    let (s, r, b) = (s?, r?, b?);
    // The driver domain's CPU and kicks count with the sender's.
    let sender = WorkerReport {
        cpu_ns: s.cpu_ns + b.cpu_ns,
        notifications: s.notifications + b.notifications,
        drops: s.drops + b.drops,
        ..s
    };
    let drops = sender.drops + r.drops;
    Ok(Sample::from_reports("bridge", case, &sender, &r, drops))
}

/// A private XenStore daemon and runtime directory with the guests' vifs written, as
/// `xennet up` + `xennet guest` would leave them before the drivers connect. Removed
/// (daemon stopped, files deleted) when dropped.
pub struct Instance {
    dir: PathBuf,
    xsd: Option<Xenstored>,
    exe: Option<PathBuf>,
}

impl Instance {
    /// An instance for `path` with one vif per guest (the backend decides how many
    /// queues it offers: one on the measured paths, netback's maximum for the echo).
    pub fn new(path: &str, guests: &[u16]) -> io::Result<Instance> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        if SEQ.load(Ordering::Relaxed) == 0 {
            remove_stale_instances();
        }
        let dir = std::env::temp_dir().join(format!(
            "xennet-bench-{}-{path}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut inst = Instance {
            dir,
            xsd: None,
            exe: None,
        };
        let xsdir = xenstore_dir(&inst.dir);
        let xsd = Xenstored::start(&xsdir)?;
        let xs = XsClient::connect(dom0_socket(&xsdir)).map_err(io::Error::other)?;
        for &g in guests {
            xsd.introduce(g)
                .map_err(|e| io::Error::other(format!("introduce {g}: {e}")))?;
            let nodes = VifNodes {
                frontend_domid: g,
                backend_domid: 0,
                devid: 0,
                mac: MacFmt(MacAddr(guest_mac(g))).to_string(),
                bridge: (path == "bridge").then(|| "xenbr0".to_string()),
                ip: None,
                script: "vif-bridge".into(),
                rate: None,
                vifname: None,
            };
            for w in nodes.writes() {
                xs.write(&w.path, &w.value).map_err(io::Error::other)?;
                if let Some(p) = w.perms {
                    xs.set_perms(&w.path, &p.to_perms())
                        .map_err(io::Error::other)?;
                }
            }
        }
        inst.xsd = Some(xsd);
        Ok(inst)
    }

    /// Run workers from this `xennet` binary (default: the running one).
    pub fn use_exe(&mut self, exe: impl Into<PathBuf>) {
        self.exe = Some(exe.into());
    }

    /// The instance directory (`--dir` of every worker).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Start a `bench-worker` process playing `role` in this instance.
    pub fn spawn(
        &self,
        role: &str,
        domid: Option<u16>,
        case: &Case,
        cpu: usize,
    ) -> io::Result<Worker> {
        let exe = match &self.exe {
            Some(e) => e.clone(),
            None => std::env::current_exe()?,
        };
        let mut cmd = Command::new(exe);
        cmd.arg("bench-worker")
            .arg(role)
            .args(case.worker_args())
            .arg("--dir")
            .arg(&self.dir)
            .arg("--cpu")
            .arg(cpu.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(d) = domid {
            cmd.arg("--domid").arg(d.to_string());
        }
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        Ok(Worker { child, stdin })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(x) = self.xsd.take() {
            x.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Remove instance directories of bench runs whose process is gone (killed runs).
fn remove_stale_instances() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("xennet-bench-")) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !xennet_platform::shm::pid_alive(p)) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A worker process: its report comes first, then it is told to exit (when dropped:
/// stdin closed, killed if it has not exited within 10 s).
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Worker {
    /// Its report line.
    pub fn report(&mut self) -> io::Result<WorkerReport> {
        let Some(out) = self.child.stdout.take() else {
            return Err(io::Error::other("worker report already taken"));
        };
        for line in BufReader::new(out).lines() {
            let line = line?;
            if line.starts_with('{') {
                return serde_json::from_str(&line)
                    .map_err(|e| io::Error::other(format!("bad worker report: {e}")));
            }
        }
        Err(io::Error::other("worker exited without a report"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing stdin tells the worker to exit; one that does not is killed.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// What a `bench-worker` of a xennet path needs beyond the case.
pub struct WorkerEnv {
    /// The instance directory.
    pub dir: PathBuf,
    /// The guest this worker plays (front roles).
    pub domid: Option<u16>,
    /// The CPU to pin to.
    pub cpu: usize,
}

/// Run one xennet role (it prints its report, then lingers); `None` if `role` is not one.
pub fn worker(role: &str, case: &Case, env: &WorkerEnv) -> Option<io::Result<()>> {
    let r = match role {
        "xennet-back-tx" => back(case, env, BackRole::Sink, true),
        "xennet-back-rx" => back(case, env, BackRole::Source, true),
        "xennet-back-tx-copy" => back(case, env, BackRole::Sink, false),
        "xennet-back-rx-copy" => back(case, env, BackRole::Source, false),
        "xennet-back-bridge" => back(case, env, BackRole::Bridge, true),
        "xennet-back-echo" => back(case, env, BackRole::Echo, true),
        "xennet-front-send" => front(case, env, Some(Duration::ZERO)),
        "xennet-front-send-light" => front(case, env, Some(LIGHT_GAP)),
        "xennet-front-recv" => front(case, env, None),
        _ => return None,
    };
    Some(r)
}

/// After the report: wait for the coordinator to close our stdin.
pub fn linger() {
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
}

/// A frame of the study: Ethernet header, then [`fill_frame`]'s pattern.
fn fill(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], seq: u64) {
    buf[..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&src);
    buf[12..14].copy_from_slice(&ETHERTYPE);
    fill_frame(&mut buf[HEADER..], seq);
}

/// Whether a received frame is one of the study's, intact.
fn intact(case: &Case, f: &[u8]) -> bool {
    f.len() == case.frame_bytes && f[12..14] == ETHERTYPE && check_frame(&f[HEADER..]).is_some()
}

fn err(what: &str) -> impl FnOnce(String) -> io::Error + '_ {
    move |e| io::Error::other(format!("{what}: {e}"))
}

/// Waiting for a peer: poll for [`SPIN`], then arm the ring and sleep on the event
/// channel; gives up after [`IDLE`] without any progress, or [`QUIET`] once there was.
struct Waiter {
    last_progress: Instant,
    started: bool,
    woken: Vec<xennet_ring::Port>,
}

impl Waiter {
    fn new() -> Waiter {
        Waiter {
            last_progress: Instant::now(),
            started: false,
            woken: Vec::new(),
        }
    }

    fn progress(&mut self) {
        self.last_progress = Instant::now();
        self.started = true;
    }

    /// When the last progress was.
    fn last(&self) -> Instant {
        self.last_progress
    }

    fn limit(&self) -> Duration {
        if self.started {
            QUIET
        } else {
            IDLE
        }
    }

    /// Poll `work` (which does the work and says whether anything moved) for a while;
    /// if nothing moved, `arm` (true: work is waiting) and sleep on `events`.
    fn idle<T>(
        &mut self,
        events: &EventChannels,
        dev: &mut T,
        mut work: impl FnMut(&mut T) -> io::Result<bool>,
        arm: impl FnOnce(&mut T) -> io::Result<bool>,
    ) -> io::Result<bool> {
        let left = self.limit().saturating_sub(self.last_progress.elapsed());
        if left.is_zero() {
            return Ok(false);
        }
        let spin_until = Instant::now() + SPIN;
        while Instant::now() < spin_until {
            if work(dev)? {
                self.progress();
                return Ok(true);
            }
            std::hint::spin_loop();
        }
        if arm(dev)? {
            return Ok(true);
        }
        let left = self.limit().saturating_sub(self.last_progress.elapsed());
        if left.is_zero() {
            return Ok(false);
        }
        self.woken.clear();
        events.wait_into(Some(left.min(Duration::from_millis(100))), &mut self.woken);
        Ok(true)
    }
}

/// The measured interval of a receiver: from the end of the first batch (which starts
/// the clock) to the last frame.
struct Meter {
    start: Option<(Instant, u64, u64, u64)>,
}

impl Meter {
    fn new() -> Meter {
        Meter { start: None }
    }

    /// Note that `got` frames have arrived so far and `kicks` were sent.
    fn saw(&mut self, got: u64, kicks: u64) {
        if self.start.is_none() && got > 0 {
            self.start = Some((Instant::now(), sys::cpu_time_ns(), kicks, got));
        }
    }

    /// The report for `got` frames of which `bad` were damaged, the last at `last`.
    fn report(&self, got: u64, bad: u64, last: Instant, kicks: u64, drops: u64) -> WorkerReport {
        let (t0, cpu0, k0, got0) = self.start.unwrap_or((last, sys::cpu_time_ns(), kicks, got));
        WorkerReport {
            packets: got,
            bad,
            cpu_ns: sys::cpu_time_ns().saturating_sub(cpu0),
            wall_ns: last.saturating_duration_since(t0).as_nanos() as u64,
            notifications: kicks - k0,
            drops,
            timed: got - got0,
        }
    }
}

enum BackRole {
    /// Take the guest's frames (`tx`).
    Sink,
    /// Send frames to the guest (`rx`).
    Source,
    /// Forward guest 1's frames to guest 2 through the bridge.
    Bridge,
    /// Send every frame back to the guest that sent it (round-trip tests).
    Echo,
}

/// Connect the backend of every vif the coordinator wrote, as `xennet up` does.
fn connect_backends(
    rt: &RuntimeDir,
    side: &Side,
    xs: &XsClient,
    guests: &[u16],
    offer: be::Offer,
) -> io::Result<Vec<(u16, Back, Vec<xennet_ring::Port>)>> {
    let mut devs = Vec::new();
    for &g in guests {
        let path = format!("/local/domain/0/backend/vif/{g}/0");
        devs.push(be::probe_with(xs, &path, offer).map_err(|e| err("probe")(e.to_string()))?);
    }
    let mut out = Vec::new();
    for d in devs {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = d
                .frontend_state(xs)
                .map_err(|e| err("frontend state")(e.to_string()))?;
            if matches!(s, XenbusState::Initialised | XenbusState::Connected) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "frontend {} did not initialise",
                    d.frontend_id.0
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let params = d
            .read_frontend(xs)
            .map_err(|e| err("frontend nodes")(e.to_string()))?;
        let peer = PeerDomain::open(rt, d.frontend_id).map_err(|e| err("peer")(e.to_string()))?;
        side.ops.add_peer(peer);
        let (vif, ports) = d
            .connect(&params, &side.ops, &side.domain, &side.events)
            .map_err(|e| err("connect")(e.to_string()))?;
        d.set_state(xs, XenbusState::Connected)
            .map_err(|e| err("state")(e.to_string()))?;
        out.push((d.frontend_id.0, vif, ports));
    }
    Ok(out)
}

/// A driver domain; `ctrl_ring` says whether it offers the control ring (staging
/// grants).
fn back(case: &Case, env: &WorkerEnv, role: BackRole, ctrl_ring: bool) -> io::Result<()> {
    let offer = |max_queues| be::Offer {
        max_queues,
        ctrl_ring,
    };
    sys::pin_to_cpu(env.cpu);
    let rt = RuntimeDir::new(&env.dir).map_err(|e| err("runtime dir")(e.to_string()))?;
    let domain =
        Domain::create(&rt, DomId(0), 8192, 1024).map_err(|e| err("domain 0")(e.to_string()))?;
    let side = Side::from_domain(domain, Some(rt.clone()));
    let xs = XsClient::connect(dom0_socket(&xenstore_dir(&env.dir))).map_err(io::Error::other)?;
    let report = match role {
        BackRole::Sink => {
            let mut vifs = connect_backends(&rt, &side, &xs, &[GUEST_A], offer(1))?;
            let (_, vif, _) = vifs.remove(0);
            sink(case, &side, vif)?
        }
        BackRole::Source => {
            let mut vifs = connect_backends(&rt, &side, &xs, &[GUEST_A], offer(1))?;
            let (_, vif, _) = vifs.remove(0);
            source(case, &side, vif)?
        }
        BackRole::Bridge => {
            let vifs = connect_backends(&rt, &side, &xs, &[GUEST_A, GUEST_B], offer(1))?;
            return forward(case, side, vifs);
        }
        BackRole::Echo => {
            let mut vifs = connect_backends(&rt, &side, &xs, &[GUEST_A], offer(be::MAX_QUEUES))?;
            let (_, vif, _) = vifs.remove(0);
            return echo(&side, vif);
        }
    };
    print_report(&report);
    linger();
    Ok(())
}

/// `tx`: take frames until every one arrived (or the sender went quiet).
fn sink(case: &Case, side: &Side, mut vif: Back) -> io::Result<WorkerReport> {
    let mut got = 0u64;
    let mut bad = 0u64;
    let mut meter = Meter::new();
    let mut w = Waiter::new();
    let take = |vif: &mut Back, got: &mut u64, bad: &mut u64| -> io::Result<usize> {
        vif.process_tx(256, Instant::now(), &mut |f| {
            *got += 1;
            if !intact(case, f) {
                *bad += 1;
            }
        })
        .map_err(|e| err("netback tx")(e.to_string()))
    };
    while got < case.packets {
        if take(&mut vif, &mut got, &mut bad)? > 0 {
            w.progress();
        } else if !w.idle(
            &side.events,
            &mut vif,
            |v| Ok(take(v, &mut got, &mut bad)? > 0),
            |v| v.final_check().map_err(|e| err("netback")(e.to_string())),
        )? {
            break;
        }
        meter.saw(got, vif.counters().notify_sent);
    }
    let c = vif.counters();
    Ok(meter.report(got, bad, w.last(), c.notify_sent, c.tx_errors))
}

/// `rx`: queue frames for the guest a batch at a time and copy them into its buffers.
fn source(case: &Case, side: &Side, mut vif: Back) -> io::Result<WorkerReport> {
    let dst = guest_mac(GUEST_A);
    let src = DD_MAC.0;
    let mut frame = vec![0u8; case.frame_bytes];
    let cpu0 = sys::cpu_time_ns();
    let t0 = Instant::now();
    let mut w = Waiter::new();
    let mut seq = 0u64;
    let backlog = (case.batch * 2).max(64);
    let rx = |vif: &mut Back| {
        vif.process_rx(Instant::now())
            .map_err(|e| err("netback rx")(e.to_string()))
    };
    while seq < case.packets || vif.rx_queued() > 0 {
        if seq < case.packets && vif.rx_queued() + case.batch <= backlog {
            let n = (case.packets - seq).min(case.batch as u64);
            let now = Instant::now();
            for i in 0..n {
                fill(&mut frame, dst, src, seq + i);
                vif.enqueue_rx(&frame, now);
            }
            seq += n;
        }
        if rx(&mut vif)? > 0 {
            w.progress();
            continue;
        }
        if vif.rx_queued() + case.batch <= backlog && seq < case.packets {
            continue;
        }
        let more = w.idle(
            &side.events,
            &mut vif,
            |v| Ok(rx(v)? > 0),
            |v| v.final_check().map_err(|e| err("netback")(e.to_string())),
        )?;
        if !more {
            break;
        }
    }
    let c = vif.counters();
    Ok(WorkerReport {
        packets: seq,
        bad: 0,
        cpu_ns: sys::cpu_time_ns() - cpu0,
        wall_ns: t0.elapsed().as_nanos() as u64,
        notifications: c.notify_sent,
        drops: c.rx_dropped(),
        timed: 0,
    })
}

/// `bridge`: run the driver domain's data plane until guest 2 was handed every frame.
fn forward(
    case: &Case,
    side: Side,
    vifs: Vec<(u16, Back, Vec<xennet_ring::Port>)>,
) -> io::Result<()> {
    let vifs = vifs
        .into_iter()
        .map(|(domid, vif, ports)| (domid, guest_mac(domid), vif, ports))
        .collect();
    let mut plane = Dataplane::bridged(side, vifs).map_err(io::Error::other)?;
    // (frames handed to guest 2, kicks sent, drops, frames taken from guest 1)
    let delivered = |plane: &Dataplane| -> (u64, u64, u64, u64) {
        let mut out = (0, 0, 0, 0);
        for v in &plane.vifs {
            let c = v.vif.counters();
            if v.vif.domid.0 == GUEST_B {
                out.0 = c.rx_packets;
            } else {
                out.3 = c.tx_packets;
            }
            out.1 += c.notify_sent;
            out.2 += c.tx_errors + c.rx_dropped();
        }
        out
    };
    // Progress is guest 1's frames coming in and guest 2's going out.
    let mut meter = Meter::new();
    let mut w = Waiter::new();
    let mut seen = (0, 0);
    loop {
        plane.run_once();
        let (got, kicks, _, taken) = delivered(&plane);
        meter.saw(got, kicks);
        if (got, taken) != seen {
            seen = (got, taken);
            w.progress();
        }
        if got >= case.packets {
            break;
        }
        let quiet = w.last().elapsed();
        if quiet >= w.limit() {
            break;
        }
        if quiet > SPIN {
            plane.wait(Duration::from_millis(100));
        }
    }
    let (got, kicks, drops, _) = delivered(&plane);
    let report = meter.report(got, 0, w.last(), kicks, drops);
    // Keep forwarding (stragglers, the guests' goodbyes) until told to exit.
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        linger();
        s2.store(true, Ordering::Relaxed);
    });
    print_report(&report);
    plane.run(&stop);
    Ok(())
}

/// Echo every frame back to the guest until stdin closes.
fn echo(side: &Side, mut vif: Back) -> io::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        linger();
        s2.store(true, Ordering::Relaxed);
    });
    let mut scratch = Vec::new();
    let mut woken = Vec::new();
    let mut idle_since = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let n = xennet_dom0::side::echo_once(&mut vif, &mut scratch)
            .map_err(|e| err("echo")(e.to_string()))?;
        if n > 0 {
            idle_since = Instant::now();
        } else if idle_since.elapsed() > SPIN
            && !vif.final_check().map_err(|e| err("echo")(e.to_string()))?
        {
            woken.clear();
            side.events
                .wait_into(Some(Duration::from_millis(50)), &mut woken);
        }
    }
    Ok(())
}

/// Print a report line for the coordinator.
pub fn print_report(r: &WorkerReport) {
    if let Ok(line) = serde_json::to_string(r) {
        println!("{line}");
    }
}

/// Connect guest `domid`'s netfront through XenStore in the instance at `dir`.
pub fn connect_guest(
    dir: &std::path::Path,
    domid: u16,
    opts: &fe::FrontOptions,
) -> io::Result<(Front, fe::FrontLink, Arc<EventChannels>)> {
    let rt = RuntimeDir::new(dir).map_err(|e| err("runtime dir")(e.to_string()))?;
    let domain = Domain::create(&rt, DomId(domid), 4096, 4096)
        .map_err(|e| err("guest domain")(e.to_string()))?;
    let events = EventChannels::new(&domain, Some(rt));
    let xs =
        XsClient::connect(domain_socket(&xenstore_dir(dir), domid)).map_err(io::Error::other)?;
    let (front, link) = fe::connect(&xs, &domain, &events, opts)
        .map_err(|e| err("netfront handshake")(e.to_string()))?;
    Ok((front, link, events))
}

/// A guest: the sender (pausing `gap` after each batch once it was answered, if
/// non-zero) when `send` is some, else the receiver.
fn front(case: &Case, env: &WorkerEnv, send: Option<Duration>) -> io::Result<()> {
    sys::pin_to_cpu(env.cpu);
    let domid = env.domid.unwrap_or(GUEST_A);
    let (mut front, _link, events) = connect_guest(&env.dir, domid, &fe::FrontOptions::default())?;
    let report = match send {
        Some(gap) => transmit(case, &events, &mut front, gap)?,
        None => receive(case, &events, &mut front, domid)?,
    };
    print_report(&report);
    linger();
    Ok(())
}

/// Take tx answers; when there are none, wait for some (spin, then sleep). False once
/// the backend has gone quiet.
fn reap_or_wait(w: &mut Waiter, events: &EventChannels, front: &mut Front) -> io::Result<bool> {
    let fail = |e: xennet_netfront::FrontError| err("netfront")(e.to_string());
    if front.poll_tx().map_err(fail)? > 0 {
        w.progress();
        return Ok(true);
    }
    w.idle(
        events,
        front,
        |f| Ok(f.poll_tx().map_err(fail)? > 0),
        |f| f.final_check().map_err(fail),
    )
}

/// Send every frame in batches of `case.batch`; wait for every answer. With a `gap`,
/// each batch is answered, then the sender pauses that long (light load).
fn transmit(
    case: &Case,
    events: &EventChannels,
    front: &mut Front,
    gap: Duration,
) -> io::Result<WorkerReport> {
    let src = front.mac();
    let dst = guest_mac(GUEST_B);
    let mut frames: Vec<Vec<u8>> = (0..case.batch)
        .map(|_| vec![0u8; case.frame_bytes])
        .collect();
    let fail = |e: xennet_netfront::FrontError| err("netfront")(e.to_string());
    let mut w = Waiter::new();
    let c0 = front.counters();
    let cpu0 = sys::cpu_time_ns();
    let t0 = Instant::now();
    let mut seq = 0u64;
    let mut stalled = false;
    'send: while seq < case.packets {
        let n = (case.packets - seq).min(case.batch as u64) as usize;
        for (i, f) in frames.iter_mut().take(n).enumerate() {
            fill(f, dst, src, seq + i as u64);
        }
        let mut off = 0;
        while off < n {
            let (k, stop) = front.send_batch(frames[off..n].iter().map(Vec::as_slice));
            off += k;
            match stop {
                None | Some(xennet_netfront::SendError::Busy) => {}
                Some(e) => return Err(io::Error::other(format!("send: {e}"))),
            }
            // Ring or buffers full: take answers, waiting for them if need be.
            if off < n && !reap_or_wait(&mut w, events, front)? {
                stalled = true;
                seq += off as u64;
                break 'send;
            }
        }
        seq += n as u64;
        front.poll_tx().map_err(fail)?;
        if !gap.is_zero() {
            while front.tx_in_flight() > 0 {
                if !reap_or_wait(&mut w, events, front)? {
                    stalled = true;
                    break 'send;
                }
            }
            std::thread::sleep(gap);
        }
    }
    while !stalled && front.tx_in_flight() > 0 {
        if !reap_or_wait(&mut w, events, front)? {
            break;
        }
    }
    let c = front.counters();
    let report = WorkerReport {
        packets: seq,
        bad: 0,
        cpu_ns: sys::cpu_time_ns() - cpu0,
        wall_ns: t0.elapsed().as_nanos() as u64,
        notifications: c.notify_sent - c0.notify_sent,
        drops: (c.tx_errors + c.tx_dropped) - (c0.tx_errors + c0.tx_dropped),
        timed: 0,
    };
    Ok(report)
}

/// Receive until every frame arrived (or the sender went quiet).
fn receive(
    case: &Case,
    events: &EventChannels,
    front: &mut Front,
    domid: u16,
) -> io::Result<WorkerReport> {
    let fail = |e: xennet_netfront::FrontError| err("netfront")(e.to_string());
    if domid == GUEST_B {
        // Let the bridge learn where guest 2 is.
        let mut hello = vec![0u8; 60];
        fill(&mut hello, [0xff; 6], front.mac(), u64::MAX);
        front
            .send(&hello)
            .map_err(|e| io::Error::other(format!("send: {e}")))?;
    }
    let mut got = 0u64;
    let mut bad = 0u64;
    let mut w = Waiter::new();
    let mut meter = Meter::new();
    let take = |front: &mut Front, got: &mut u64, bad: &mut u64| -> io::Result<usize> {
        // Answers to our own sends (the hello) are reaped too, so that the final
        // check before sleeping does not keep finding them.
        front.poll_tx().map_err(fail)?;
        front
            .receive(256, |f, _| {
                *got += 1;
                if !intact(case, f) {
                    *bad += 1;
                }
            })
            .map_err(fail)
    };
    while got < case.packets {
        if take(front, &mut got, &mut bad)? > 0 {
            w.progress();
        } else if !w.idle(
            events,
            front,
            |f| Ok(take(f, &mut got, &mut bad)? > 0),
            |f| f.final_check().map_err(fail),
        )? {
            break;
        }
        meter.saw(got, front.counters().notify_sent);
    }
    let c = front.counters();
    let report = meter.report(got, bad, w.last(), c.notify_sent, c.rx_errors);
    Ok(report)
}
