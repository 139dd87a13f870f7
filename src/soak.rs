//! `xennet soak`: the driver domain and guests as processes under sustained mixed
//! traffic for a while, with guests restarted and killed on a schedule, and the
//! driver domain's xenstored killed every third cycle. It samples the driver
//! domain's resident memory and the vif counters, and fails if memory grows, a
//! script's traffic fails, a restarted guest does not come back, or xenstored is
//! not started again after each kill.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::procs::Instance;
use xennet_dom0::control;

/// Soak settings.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// How long to run.
    pub duration: Duration,
    /// The `xennet` executable.
    pub exe: PathBuf,
    /// Instance directory (removed afterwards).
    pub dir: PathBuf,
}

/// What the soak saw.
#[derive(Debug, Default)]
pub struct SoakReport {
    /// Printable table and summary.
    pub text: String,
    /// Whether every check held.
    pub ok: bool,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs the soak.
pub fn run(opts: &SoakOptions) -> Result<SoakReport, String> {
    let mut inst = Instance::new(&opts.exe, opts.dir.clone());
    let dir = &opts.dir;
    inst.start_driver(&[]).map_err(|e| e.to_string())?;
    let dd_pid = inst.driver_pid().unwrap_or(0);
    inst.spawn_guest(2).map_err(|e| e.to_string())?;
    if !inst.wait_connected(2, Duration::from_secs(15)) {
        return Err("guest 2 did not connect".into());
    }
    let mut rep = SoakReport {
        ok: true,
        ..SoakReport::default()
    };
    let t = &mut rep.text;
    let _ = writeln!(
        t,
        "{:>7} {:>6} {:>10} {:>10} {:>9} {:>9} {:>8} {:>8}",
        "time_s", "cycle", "pings_tx", "pings_rx", "tcp_ok", "dd_rss_kb", "restarts", "xs_kills"
    );
    let start = Instant::now();
    let (mut tx, mut rx, mut tcp_ok, mut restarts) = (0u64, 0u64, 0u64, 0u64);
    let mut xs_kills = 0u64;
    let mut rss: Vec<u64> = Vec::new();
    let mut cycle = 0u64;
    let mut victim: Option<usize> = None;
    while start.elapsed() < opts.duration {
        cycle += 1;
        // A short-lived guest: created, drives ping and TCP, closes, destroyed.
        let out = Command::new(&opts.exe)
            .args([
                "guest",
                "--domid",
                "1",
                "--count",
                "20",
                "--ping",
                "128.153.144.206",
                "--ping",
                "128.153.144.148",
            ])
            .args(["--tcp-echo", "128.153.144.206:7", "--dir"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        for l in text.lines().filter(|l| l.contains("packets transmitted")) {
            let mut it = l.split(", ");
            tx += it
                .next()
                .and_then(|s| s.split(' ').next()?.parse().ok())
                .unwrap_or(0);
            rx += it
                .next()
                .and_then(|s| s.split(' ').next()?.parse().ok())
                .unwrap_or(0);
        }
        if text.contains("bytes intact") {
            tcp_ok += 1;
        }
        if !out.status.success() {
            rep.ok = false;
            let _ = writeln!(t, "cycle {cycle}: guest script failed:\n{text}");
        }
        // A guest killed with SIGKILL every other cycle, and started again.
        if let Some(v) = victim.take() {
            inst.kill_guest(v);
            restarts += 1;
        }
        if cycle % 2 == 1 {
            victim = Some(inst.spawn_guest(3).map_err(|e| e.to_string())?);
            if !inst.wait_connected(3, Duration::from_secs(15)) {
                rep.ok = false;
                let _ = writeln!(t, "cycle {cycle}: restarted guest 3 did not connect");
            }
        }
        // xenstored killed every third cycle: the next cycle's guest needs it
        // (creating a domain, the handshake) and guest 2 must not notice.
        if cycle % 3 == 0 && inst.kill_xenstored() {
            xs_kills += 1;
        }
        let r = rss_kib(dd_pid).unwrap_or(0);
        rss.push(r);
        let _ = writeln!(
            t,
            "{:>7.1} {:>6} {:>10} {:>10} {:>9} {:>9} {:>8} {:>8}",
            start.elapsed().as_secs_f64(),
            cycle,
            tx,
            rx,
            tcp_ok,
            r,
            restarts,
            xs_kills
        );
    }
    if let Some(v) = victim.take() {
        inst.kill_guest(v);
    }
    // Every kill was followed by a restart.
    let deadline = Instant::now() + Duration::from_secs(15);
    let restarted = loop {
        let n: u64 = inst
            .info_field("xenstored-restarts")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if n >= xs_kills || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if restarted != xs_kills {
        rep.ok = false;
    }
    let _ = writeln!(
        t,
        "xenstored: killed {xs_kills} times, started again {restarted} times"
    );
    if let Ok(s) = control::request(dir, &["stats"]) {
        let _ = writeln!(t, "\n$ xennet stats (long-lived guest 2)\n{s}");
    }
    // Flat memory: after the first quarter (warm-up), the last sample may not exceed
    // the warm sample by more than 10% + 2 MiB.
    if rss.len() >= 4 {
        let warm = rss[rss.len() / 4];
        let last = *rss.last().unwrap_or(&0);
        let flat = last <= warm + warm / 10 + 2048;
        let _ = writeln!(
            t,
            "driver domain RSS: warm {warm} KiB, last {last} KiB -> {}",
            if flat { "flat" } else { "GROWING" }
        );
        rep.ok &= flat;
    }
    let _ = writeln!(
        t,
        "{cycle} cycles, {tx} echo requests ({rx} replies), {tcp_ok} TCP exchanges intact, {restarts} guest kills, {xs_kills} xenstored kills; {}",
        if rep.ok { "soak: ok" } else { "soak: FAILED" }
    );
    rep.ok &= rx > 0;
    Ok(rep)
}
