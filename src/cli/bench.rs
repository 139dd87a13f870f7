//! `xennet bench` and its internal `bench-worker`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// A few seconds: checks that every path moves its frames intact (what CI runs).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Write every sample as a JSON array to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Write SVG charts into DIR.
    #[arg(long, value_name = "DIR")]
    pub(crate) plot: Option<PathBuf>,
    /// Frame sizes to sweep (comma-separated bytes; default: the sweep's own).
    #[arg(long, value_delimiter = ',', value_name = "BYTES")]
    pub(crate) sizes: Vec<usize>,
    /// Batch sizes to sweep (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "N")]
    pub(crate) batches: Vec<usize>,
    /// Measure only these paths (comma-separated: tx, rx, bridge, tx-light, tx-copy, rx-copy, socketpair, veth).
    #[arg(long, value_delimiter = ',', value_name = "PATHS")]
    pub(crate) paths: Vec<String>,
}

#[derive(Args)]
pub(crate) struct WorkerArgs {
    pub(crate) role: String,
    #[arg(long)]
    pub(crate) frame_bytes: usize,
    #[arg(long)]
    pub(crate) batch: usize,
    #[arg(long)]
    pub(crate) packets: u64,
    #[arg(long, default_value_t = 0)]
    pub(crate) header: usize,
    #[arg(long)]
    pub(crate) ifname: Option<String>,
    /// Instance directory (xennet paths).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// The guest domain this worker plays (xennet paths).
    #[arg(long)]
    pub(crate) domid: Option<u16>,
    /// CPU to pin to (xennet paths).
    #[arg(long, default_value_t = 0)]
    pub(crate) cpu: usize,
}

pub(crate) fn bench(args: BenchArgs) -> ExitCode {
    use xennet::bench;
    let mut sweep = if args.quick {
        bench::Sweep::quick()
    } else {
        bench::Sweep::full()
    };
    if !args.sizes.is_empty() {
        sweep.sizes = args.sizes.clone();
    }
    if !args.batches.is_empty() {
        sweep.batches = args.batches.clone();
    }
    if let Some(bad) = sweep.sizes.iter().find(|&&s| !(60..=65535).contains(&s)) {
        eprintln!("bench: --sizes {bad}: frames are 60..=65535 bytes");
        return ExitCode::FAILURE;
    }
    if let Some(bad) = sweep.batches.iter().find(|&&b| !(1..=256).contains(&b)) {
        eprintln!("bench: --batches {bad}: batches are 1..=256 frames");
        return ExitCode::FAILURE;
    }
    let (peers, skipped) = bench::peer_paths();
    let mut paths = bench::xennet_paths();
    paths.extend(peers);
    for p in &args.paths {
        if !paths.iter().any(|x| x.name == p) && !matches!(p.as_str(), "veth") {
            eprintln!(
                "bench: unknown path {p} (tx, rx, bridge, tx-light, tx-copy, rx-copy, socketpair, veth)"
            );
            return ExitCode::FAILURE;
        }
    }
    if !args.paths.is_empty() {
        paths.retain(|x| args.paths.iter().any(|p| p == x.name));
    }
    for why in &skipped {
        println!("{why}");
    }
    let opts = bench::Options {
        sweep,
        verbose: true,
    };
    let (samples, failures) = bench::run(&paths, &opts);
    print!("{}", bench::report::table(&samples));
    let memcpy_time = std::time::Duration::from_millis(if args.quick { 50 } else { 300 });
    print!("{}", bench::report::memcpy_section(&samples, memcpy_time));
    let mut ok = failures.is_empty();
    for f in &failures {
        eprintln!("bench: FAILED {f}");
    }
    for s in samples.iter().filter(|s| !s.intact || s.packets == 0) {
        eprintln!(
            "bench: {} {} bytes batch {}: frames not delivered intact",
            s.path, s.frame_bytes, s.batch
        );
        ok = false;
    }
    if let Some(path) = &args.json {
        if let Err(e) = bench::report::write_json(path, &samples) {
            eprintln!("bench: cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    if let Some(dir) = &args.plot {
        match bench::report::write_plots(dir, &samples) {
            Ok(files) => files
                .iter()
                .for_each(|f| println!("chart: {}", f.display())),
            Err(e) => {
                eprintln!("bench: cannot write charts: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
