//! `xennet up`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::*;

#[derive(Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    dir: DirArg,
    #[command(flatten)]
    switch: SwitchArgs,
    /// Queues offered to each frontend (`multi-queue-max-queues`).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=8))]
    max_queues: u16,
    /// A topology file (TOML): the driver domain's mode, uplink, addresses, bridge and
    /// captures, and the guests' vifs (used when `xennet guest` brings no `--vif`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["mode", "no_proxy_arp", "uplink", "capture"])]
    config: Option<PathBuf>,
    /// Where the driver domain runs: `shm` (processes on this machine, with their own
    /// XenStore, created through the control socket) or `xenlinux` (domain 0's user
    /// space on real Xen: the host's xenstored, /dev/xen/gntdev and /dev/xen/evtchn,
    /// serving the vifs `xl` creates; `--dir` is not used).
    #[arg(long, default_value = "shm", value_parser = ["shm", "xenlinux"])]
    platform: String,
    /// What a vif is in the driver domain: `switch` (a port on xennet's bridge,
    /// router or NAT) or `tap` (a kernel TAP device named as the vif, `vifD.N`, for
    /// the driver domain's own bridge, routes or NAT; the toolstack's hotplug script
    /// sets it up). `tap` needs CAP_NET_ADMIN; with `--platform xenlinux` only, so far.
    #[arg(long, default_value = "switch", value_parser = ["switch", "tap"])]
    vifs: String,
}

pub(crate) fn cli_up(a: UpArgs) -> ExitCode {
    let uplink = match a.switch.uplink.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("xennet up: --uplink: {e}");
            return ExitCode::from(2);
        }
    };
    let captures = match parse_captures("up", &a.switch.capture) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut opts = xennet_dom0::up::UpOptions::new(a.dir.dir());
    match std::env::current_exe() {
        Ok(exe) => opts.xenstored_exe = Some(exe),
        Err(e) => {
            eprintln!("xennet up: cannot find this executable to run xenstored: {e}");
            return ExitCode::FAILURE;
        }
    }
    opts.mode = parse_mode(&a.switch.mode);
    opts.proxy_arp = !a.switch.no_proxy_arp;
    opts.uplink = uplink;
    opts.captures = captures;
    opts.max_queues = usize::from(a.max_queues);
    opts.kernel_vifs = a.vifs == "tap";
    if opts.kernel_vifs && a.platform != "xenlinux" {
        eprintln!(
            "xennet up: --vifs tap is implemented with --platform xenlinux only so far \
             (on shm the vifs are switch ports)"
        );
        return ExitCode::from(2);
    }
    if let Some(file) = &a.config {
        match xennet_switch::config::Topology::load(file) {
            Ok(t) => opts.topology = Some(t),
            Err(e) => {
                eprintln!("xennet up: {}: {e}", file.display());
                return ExitCode::from(2);
            }
        }
    }
    let mode = match opts.effective_topology() {
        Ok(t) => xennet_dom0::build::mode_name(t.driver_domain.mode),
        Err(e) => {
            eprintln!("xennet up: {e}");
            return ExitCode::from(2);
        }
    };
    install_stop_handler();
    if a.platform == "xenlinux" {
        let r = xennet_dom0::up::xen::run_xenlinux(
            &opts,
            &STOP,
            || {
                println!(
                    "xennet up: driver domain running in {mode} mode on Xen (xenlinux); \
                     serving {}",
                    xennet_dom0::up::xen::BACKEND_ROOT
                )
            },
            |e| println!("{e}"),
        );
        return match r {
            Ok(report) => {
                for line in report {
                    println!("xennet up: {line}");
                }
                println!("xennet up: stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xennet up: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let dir = opts.dir.clone();
    let r = xennet_dom0::up::run(&opts, &STOP, || {
        println!(
            "xennet up: driver domain running in {} mode; instance {}",
            mode,
            dir.display()
        );
        println!(
            "  XenStore: XENSTORED_PATH={}/xenstore/socket",
            dir.display()
        );
    });
    match r {
        Ok(()) => {
            println!("xennet up: stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xennet up: {e}");
            ExitCode::FAILURE
        }
    }
}
