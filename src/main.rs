//! `xennet`: the toolstack CLI (plays xl/libxl for the plain-process platform).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

use cli::bench::{bench, BenchArgs, WorkerArgs};
use cli::check::{cli_check, CheckArgs};
use cli::demo::{demo, DemoArgs};
use cli::guest::{cli_guest, GuestArgs};
use cli::soak::{cli_soak, SoakArgs};
use cli::toolstack::{
    cli_introduce, cli_xenstored, network_attach, network_detach, view, xenstore_ls, BrctlArgs,
    DestroyArgs, IntroduceArgs, ListArgs, NetworkAttachArgs, NetworkDetachArgs, StatsArgs,
    XenstoredArgs, XsLsArgs,
};
use cli::up::{cli_up, UpArgs};
use cli::{control, DirArg};

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
    /// Start the driver domain: XenStore daemon, domain 0, netback and the switch.
    Up(UpArgs),
    /// Run a guest domain: netfront + a smoltcp stack, connected through XenStore.
    Guest(GuestArgs),
    /// Domains and their vifs with XenStore states.
    List(ListArgs),
    /// The driver domain's mode, uplink, guest count and xenstored.
    Info(DirArg),
    /// Counters: netback's per vif (rx = what the guest sent, as Linux counts a
    /// vif), the switch's per port with drops by reason.
    Stats(StatsArgs),
    /// Bridge views like bridge-utils: `brctl show`, `brctl showmacs xenbr0`.
    Brctl(BrctlArgs),
    /// Print the XenStore tree (like xenstore-ls) of a running driver domain.
    XenstoreLs(XsLsArgs),
    /// Destroy a guest domain: its vifs are closed in order and removed, the domain
    /// released; the guest sees it go and exits (what `xl destroy` does).
    Destroy(DestroyArgs),
    /// Give a guest one more vif (what `xl network-attach` does).
    NetworkAttach(NetworkAttachArgs),
    /// Take one of a guest's vifs away in order, keeping the domain (what `xl
    /// network-detach` does); a guest whose vif 0 goes waits for it to be attached
    /// again.
    NetworkDetach(NetworkDetachArgs),
    /// Stop the driver domain (guests see their backend close).
    Down(DirArg),
    /// Run the XenStore daemon alone: DIR/socket for domain 0.
    Xenstored(XenstoredArgs),
    /// Introduce a domain to a XenStore daemon (opens DIR/domain/<id>/socket).
    XenstoreIntroduce(IntroduceArgs),
    /// Sustained traffic with guest restarts and kills; reports RSS and counters.
    Soak(SoakArgs),
    /// The platform against a real hypervisor: grant-copy statuses and event coalescing
    /// between a domU (`grant`) and dom0 (`copy`), compared with the shm platform.
    PlatformCheck(CheckArgs),
    /// One side of one benchmark case (internal).
    #[command(hide = true)]
    BenchWorker(WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XENNET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Up(a) => cli_up(a),
        Command::Soak(a) => cli_soak(&a),
        Command::Guest(a) => cli_guest(a),
        Command::List(a) => view(&a.dir, &["list"], a.json),
        Command::Info(a) => control(&a.dir(), &["info"]),
        Command::Stats(a) => view(&a.dir, &["stats"], a.json),
        Command::Brctl(a) => {
            let mut w = vec!["brctl"];
            w.extend(a.args.iter().map(String::as_str));
            if a.args.is_empty() {
                w.push("show");
            }
            view(&a.dir, &w, a.json)
        }
        Command::XenstoreLs(a) => xenstore_ls(&a),
        Command::Destroy(a) => control(&a.dir.dir(), &["destroy", &a.domid.to_string()]),
        Command::NetworkAttach(a) => network_attach(&a),
        Command::NetworkDetach(a) => network_detach(&a),
        Command::Down(a) => control(&a.dir(), &["down"]),
        Command::Xenstored(a) => cli_xenstored(&a),
        Command::XenstoreIntroduce(a) => cli_introduce(&a),
        Command::PlatformCheck(a) => cli_check(a),
        Command::Demo(args) => demo(args),
        Command::Bench(args) => bench(args),
        Command::BenchWorker(w) => {
            let case = xennet::bench::Case {
                frame_bytes: w.frame_bytes,
                batch: w.batch.max(1),
                packets: w.packets,
                header: w.header,
            };
            let env = xennet::bench::xennet::WorkerEnv {
                dir: w.dir.clone().unwrap_or_default(),
                domid: w.domid,
                cpu: w.cpu,
            };
            match xennet::bench::worker(&w.role, &case, w.ifname.as_deref(), &env) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench-worker {}: {e}", w.role);
                    ExitCode::FAILURE
                }
            }
        }
    }
}
