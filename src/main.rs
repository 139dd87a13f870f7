//! `xennet`: the toolstack CLI (plays xl/libxl for the plain-process platform).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xennet",
    version,
    about = "Xen PV network split driver, in plain processes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main demonstration.
    Demo(DemoArgs),
    /// Cross-process study of per-packet cost, with peers measured in the same run.
    Bench(BenchArgs),
    /// One side of one benchmark case (internal).
    #[command(hide = true)]
    BenchWorker(WorkerArgs),
}

#[derive(Args)]
struct DemoArgs {
    /// How the driver domain connects guests: bridge, route (with proxy ARP) or nat.
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "route", "nat"])]
    mode: String,
    /// Route mode: turn proxy ARP off on the uplink (the remote host then cannot reach
    /// the guests, as Xen's routing documentation describes).
    #[arg(long)]
    no_proxy_arp: bool,
    /// What is behind peth0: `sim` (a simulated remote host) or `tap:NAME`.
    #[arg(long, default_value = "sim")]
    uplink: String,
    /// Capture a port's frames: `PORT=FILE.pcap` (repeatable; ports vif1.0, peth0...).
    #[arg(long, value_name = "PORT=FILE")]
    capture: Vec<String>,
    /// Number of guest domains.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
    guests: u16,
    /// Pings per target.
    #[arg(long, default_value_t = 4)]
    count: u16,
}

fn demo(args: DemoArgs) -> ExitCode {
    use xennet::netback::switch::Mode;
    let mode = match args.mode.as_str() {
        "route" => Mode::Route,
        "nat" => Mode::Nat,
        _ => Mode::Bridge,
    };
    let uplink = match args.uplink.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("xennet demo: --uplink: {e}");
            return ExitCode::from(2);
        }
    };
    let mut captures = Vec::new();
    for c in &args.capture {
        match c.split_once('=') {
            Some((port, file)) if !port.is_empty() && !file.is_empty() => {
                captures.push((port.to_string(), PathBuf::from(file)))
            }
            _ => {
                eprintln!("xennet demo: --capture {c:?}: expected PORT=FILE");
                return ExitCode::from(2);
            }
        }
    }
    let opts = xennet::demo::DemoOptions {
        mode,
        proxy_arp: !args.no_proxy_arp,
        uplink,
        captures,
        guests: args.guests,
        count: args.count,
    };
    match xennet::demo::run(&opts) {
        Ok(report) => {
            print!("{}", report.text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xennet demo: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Args)]
struct BenchArgs {
    /// A few seconds: checks that every path moves its frames intact (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Write every sample as a JSON array to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write SVG charts into DIR.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
}

#[derive(Args)]
struct WorkerArgs {
    role: String,
    #[arg(long)]
    frame_bytes: usize,
    #[arg(long)]
    batch: usize,
    #[arg(long)]
    packets: u64,
    #[arg(long, default_value_t = 0)]
    header: usize,
    #[arg(long)]
    ifname: Option<String>,
}

fn bench(args: BenchArgs) -> ExitCode {
    use xennet::bench;
    let sweep = if args.quick {
        bench::Sweep::quick()
    } else {
        bench::Sweep::full()
    };
    let (paths, skipped) = bench::peer_paths();
    for why in &skipped {
        println!("{why}");
    }
    let opts = bench::Options {
        sweep,
        verbose: true,
    };
    let (samples, failures) = bench::run(&paths, &opts);
    print!("{}", bench::report::table(&samples));
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo(args),
        Command::Bench(args) => bench(args),
        Command::BenchWorker(w) => {
            let case = xennet::bench::Case {
                frame_bytes: w.frame_bytes,
                batch: w.batch.max(1),
                packets: w.packets,
                header: w.header,
            };
            match xennet::bench::worker(&w.role, &case, w.ifname.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench-worker {}: {e}", w.role);
                    ExitCode::FAILURE
                }
            }
        }
    }
}
