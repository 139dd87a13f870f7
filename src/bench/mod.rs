//! `xennet bench`: the cross-process study of what moving a frame costs.
//!
//! Every path runs as separate processes (pinned to separate cores where there are two)
//! and reports packets/s, Gbit/s, CPU ns per packet (getrusage of every process, so the
//! figure holds on a noisy machine), notifications per packet and drops. The peers a
//! user would otherwise pick run in the same invocation, and each xennet figure is
//! printed as a ratio to them.

pub mod peers;
pub mod report;
pub mod sys;
pub mod xennet;

use serde::{Deserialize, Serialize};

/// One measurement point: a path at a frame size and batch size.
#[derive(Clone, Debug)]
pub struct Case {
    /// Bytes per frame (Ethernet header included where the path carries one).
    pub frame_bytes: usize,
    /// Frames handed over per batch (per `sendmmsg`, per ring push).
    pub batch: usize,
    /// Frames to move.
    pub packets: u64,
    /// Bytes of link header in front of the checked payload (14 on AF_PACKET).
    pub header: usize,
}

impl Case {
    /// Command-line arguments that recreate this case in a worker process.
    pub fn worker_args(&self) -> Vec<String> {
        vec![
            "--frame-bytes".into(),
            self.frame_bytes.to_string(),
            "--batch".into(),
            self.batch.to_string(),
            "--packets".into(),
            self.packets.to_string(),
            "--header".into(),
            self.header.to_string(),
        ]
    }

    /// Bytes of link header before the payload pattern.
    pub fn header_bytes(&self) -> usize {
        self.header
    }

    /// The payload part of a received frame.
    pub fn payload_of<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame.get(self.header..).unwrap_or(&[])
    }
}

/// What a worker process measured, printed as one JSON line on its stdout.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Frames sent (sender) or received intact or not (receiver).
    pub packets: u64,
    /// Frames that arrived with a wrong length or pattern.
    pub bad: u64,
    /// CPU time of the worker's measured loop, user + system.
    pub cpu_ns: u64,
    /// Wall time of the measured loop.
    pub wall_ns: u64,
    /// Event-channel notifications this worker sent.
    pub notifications: u64,
    /// Frames this worker counted as dropped.
    pub drops: u64,
    /// Frames received within `wall_ns` (after the first batch, which starts the
    /// clock); 0 means `packets - 1`.
    #[serde(default)]
    pub timed: u64,
}

/// One row of the study: a path at a case, as printed and written to `--json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    /// `tx`, `rx`, `bridge`, `socketpair` or `veth`.
    pub path: String,
    /// Bytes per frame.
    pub frame_bytes: usize,
    /// Frames per batch.
    pub batch: usize,
    /// Frames the receiver got.
    pub packets: u64,
    /// Received frames per second of the receiver's wall time.
    pub packets_per_sec: f64,
    /// Payload bit rate.
    pub gbit_per_sec: f64,
    /// CPU time of all processes of the path per frame.
    pub cpu_ns_per_packet: f64,
    /// Event-channel notifications (both directions) per frame.
    pub notifications_per_packet: f64,
    /// Frames lost, by the path's own count.
    pub drops: u64,
    /// Whether every received frame was intact (length and pattern).
    pub intact: bool,
}

impl Sample {
    /// Combine the sender's and the receiver's reports.
    pub fn from_reports(
        path: &str,
        case: &Case,
        tx: &WorkerReport,
        rx: &WorkerReport,
        drops: u64,
    ) -> Sample {
        let secs = rx.wall_ns.max(1) as f64 / 1e9;
        let timed = if rx.timed > 0 {
            rx.timed
        } else {
            rx.packets.saturating_sub(1)
        };
        let pps = timed as f64 / secs;
        let n = rx.packets.max(1) as f64;
        Sample {
            path: path.to_string(),
            frame_bytes: case.frame_bytes,
            batch: case.batch,
            packets: rx.packets,
            packets_per_sec: pps,
            gbit_per_sec: pps * case.frame_bytes as f64 * 8.0 / 1e9,
            cpu_ns_per_packet: (tx.cpu_ns + rx.cpu_ns) as f64 / n,
            notifications_per_packet: (tx.notifications + rx.notifications) as f64 / n,
            drops: drops.max(rx.drops).max(tx.drops),
            intact: rx.bad == 0 && rx.packets + drops.max(rx.drops) >= tx.packets,
        }
    }
}

/// Frame sizes and batch sizes of a sweep.
pub struct Sweep {
    /// Frame sizes in bytes.
    pub sizes: Vec<usize>,
    /// Batch sizes.
    pub batches: Vec<usize>,
    /// Frames per measurement for a given frame size.
    pub packets_for: fn(usize) -> u64,
}

impl Sweep {
    /// The quick sweep CI runs: a few seconds, checks that every path moves frames intact.
    pub fn quick() -> Sweep {
        Sweep {
            sizes: vec![64, 1514],
            batches: vec![32],
            packets_for: |_| 20_000,
        }
    }

    /// The full sweep recorded in docs/performance.md.
    pub fn full() -> Sweep {
        Sweep {
            sizes: vec![64, 512, 1514, 9000, 65535],
            batches: vec![1, 8, 32, 128],
            packets_for: |size| match size {
                0..=600 => 2_000_000,
                601..=2000 => 1_000_000,
                2001..=10_000 => 200_000,
                _ => 40_000,
            },
        }
    }
}

/// Options of one `xennet bench` run.
pub struct Options {
    /// The sweep to run.
    pub sweep: Sweep,
    /// Print progress lines on stderr.
    pub verbose: bool,
}

/// A path of the study: its name and how to measure one case.
pub struct Path {
    /// Name as printed and in JSON.
    pub name: &'static str,
    /// Bytes of link header in front of the payload pattern.
    pub header: usize,
    /// Largest frame the path carries (cases above are skipped).
    pub max_frame: usize,
    /// Measure one case.
    pub run: fn(&Case) -> std::io::Result<Sample>,
}

/// The peers measured in every run (veth only where it can run).
pub fn peer_paths() -> (Vec<Path>, Vec<String>) {
    let mut paths = vec![Path {
        name: "socketpair",
        header: 0,
        max_frame: 65535,
        run: peers::socketpair,
    }];
    let mut skipped = Vec::new();
    match peers::veth_unavailable() {
        None => paths.push(Path {
            name: "veth",
            header: 14,
            max_frame: 9014,
            run: peers::veth,
        }),
        Some(why) => skipped.push(why),
    }
    (paths, skipped)
}

/// xennet's own paths: guest transmit, guest receive, guest -> bridge -> guest (with
/// staging grants), and transmit and receive by plain grant copy.
pub fn xennet_paths() -> Vec<Path> {
    let p = |name, run| Path {
        name,
        header: xennet::HEADER,
        max_frame: xennet_ring::netif::XEN_NETIF_MAX_TX_SIZE,
        run,
    };
    vec![
        p("tx", xennet::tx as fn(&Case) -> std::io::Result<Sample>),
        p("rx", xennet::rx),
        p("bridge", xennet::bridge),
        p("tx-light", xennet::tx_light),
        p("tx-copy", xennet::tx_copy),
        p("rx-copy", xennet::rx_copy),
    ]
}

/// Run every path over the sweep; a failing case is reported and the study goes on.
pub fn run(paths: &[Path], opts: &Options) -> (Vec<Sample>, Vec<String>) {
    let mut samples = Vec::new();
    let mut failures = Vec::new();
    for path in paths {
        for &size in &opts.sweep.sizes {
            if size > path.max_frame || size < path.header + 8 {
                continue;
            }
            for &batch in &opts.sweep.batches {
                let case = Case {
                    frame_bytes: size,
                    batch,
                    packets: (opts.sweep.packets_for)(size),
                    header: path.header,
                };
                if opts.verbose {
                    eprintln!("bench: {} {} bytes, batch {} ...", path.name, size, batch);
                }
                match (path.run)(&case) {
                    Ok(s) => samples.push(s),
                    Err(e) => {
                        failures.push(format!("{} {} bytes batch {}: {e}", path.name, size, batch))
                    }
                }
            }
        }
    }
    (samples, failures)
}

/// Entry point of the hidden `bench-worker` subcommand: run one side of one case and
/// print its report as a JSON line.
pub fn worker(
    role: &str,
    case: &Case,
    ifname: Option<&str>,
    env: &xennet::WorkerEnv,
) -> std::io::Result<()> {
    if let Some(r) = xennet::worker(role, case, env) {
        return r;
    }
    let report = match (role, ifname) {
        ("socketpair-send", _) => peers::socketpair_send(case)?,
        ("socketpair-recv", _) => peers::socketpair_recv(case)?,
        ("packet-send", Some(i)) => peers::packet_send(case, i)?,
        ("packet-recv", Some(i)) => peers::packet_recv(case, i)?,
        _ => {
            return Err(std::io::Error::other(format!(
                "unknown bench worker role {role}"
            )))
        }
    };
    println!(
        "{}",
        serde_json::to_string(&report).map_err(std::io::Error::other)?
    );
    Ok(())
}
