//! `xennet guest`.

use std::process::ExitCode;

use clap::Args;

use super::*;

#[derive(Args)]
pub(crate) struct GuestArgs {
    #[command(flatten)]
    dir: DirArg,
    /// This guest's domain id (shm; on real Xen it comes from XenStore).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..i64::from(xennet_ring::DomId::FIRST_RESERVED)))]
    domid: Option<u16>,
    /// Where the drivers run: `shm` (plain processes, with `xennet up`) or
    /// `xenlinux` (Linux user space in a Xen domU, against the backend `xl` gave the
    /// device; the domU's xen-netfront must not be loaded).
    #[arg(long, default_value = "shm", value_parser = ["shm", "xenlinux"])]
    platform: String,
    /// xl vif spec, e.g. `mac=00:16:3e:00:00:05,ip=128.153.144.210`.
    #[arg(long, default_value = "")]
    vif: String,
    /// Queues to ask for.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
    queues: u16,
    /// Address with prefix (default: what the driver domain assigns).
    #[arg(long, value_name = "CIDR")]
    ip: Option<String>,
    /// Default gateway (default: what the driver domain assigns).
    #[arg(long)]
    gw: Option<String>,
    /// Ping this address (repeatable).
    #[arg(long, value_name = "IP")]
    ping: Vec<String>,
    /// Echo requests per ping target.
    #[arg(long, default_value_t = 4)]
    count: u16,
    /// Exchange a payload with a TCP echo service.
    #[arg(long, value_name = "IP:PORT")]
    tcp_echo: Option<String>,
    /// The pings are expected to go unanswered (exit 0 only if they do).
    #[arg(long)]
    expect_loss: bool,
    /// Keep serving after the pings/TCP script (the default when there is no script).
    #[arg(long)]
    serve: bool,
    /// Seconds to wait for a driver domain.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// The guest's IP stack: `smoltcp` (built in), or `tap:NAME` to put a Linux TAP
    /// device behind the netfront so the kernel's stack is the guest (needs root).
    #[arg(long, default_value = "smoltcp")]
    stack: String,
}

pub(crate) fn cli_guest(a: GuestArgs) -> ExitCode {
    let bad = |what: &str, v: &str| {
        eprintln!("xennet guest: {what} {v:?} is not valid");
        ExitCode::from(2)
    };
    let xen = a.platform == "xenlinux";
    let domid = match (a.domid, xen) {
        (Some(d), _) => d,
        (None, true) => 0,
        (None, false) => {
            eprintln!("xennet guest: --domid is required with --platform shm");
            return ExitCode::from(2);
        }
    };
    let mut opts = xennet::guest::GuestOptions::new(a.dir.dir(), domid);
    opts.vif = a.vif.clone();
    opts.queues = usize::from(a.queues);
    if let Some(ip) = &a.ip {
        match ip.parse() {
            Ok(c) => opts.ip = Some(c),
            Err(_) => return bad("--ip (want ADDR/PREFIX)", ip),
        }
    }
    if let Some(gw) = &a.gw {
        match gw.parse() {
            Ok(g) => opts.gateway = Some(g),
            Err(_) => return bad("--gw", gw),
        }
    }
    for p in &a.ping {
        match p.parse() {
            Ok(ip) => opts.pings.push(ip),
            Err(_) => return bad("--ping", p),
        }
    }
    if let Some(t) = &a.tcp_echo {
        let parsed = t
            .rsplit_once(':')
            .and_then(|(ip, port)| Some((ip.parse().ok()?, port.parse().ok()?)));
        match parsed {
            Some(x) => opts.tcp_echo = Some(x),
            None => return bad("--tcp-echo (want IP:PORT)", t),
        }
    }
    match a.stack.as_str() {
        "smoltcp" => {}
        s => match s.strip_prefix("tap:") {
            Some(name) if !name.is_empty() => {
                if !a.ping.is_empty() || a.tcp_echo.is_some() {
                    eprintln!("xennet guest: --ping/--tcp-echo need the smoltcp stack; with a TAP use the kernel's tools");
                    return ExitCode::from(2);
                }
                opts.tap = Some(name.to_string());
            }
            _ => return bad("--stack (want smoltcp or tap:NAME)", s),
        },
    }
    opts.count = a.count;
    opts.expect_loss = a.expect_loss;
    opts.serve = a.serve || (opts.pings.is_empty() && opts.tcp_echo.is_none());
    opts.wait = std::time::Duration::from_secs(a.wait);
    install_stop_handler();
    let run = if xen {
        xennet::guest::xen::run
    } else {
        xennet::guest::run
    };
    match run(&opts, &STOP) {
        Ok(rep) => {
            print!("{}", rep.text);
            if rep.ok(opts.expect_loss) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("xennet guest {domid}: {e}");
            ExitCode::FAILURE
        }
    }
}
