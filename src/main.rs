//! `xennet`: the toolstack CLI (plays xl/libxl for the plain-process platform).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Start the driver domain: XenStore daemon, domain 0, netback and the switch.
    Up(UpArgs),
    /// Run a guest domain: netfront + a smoltcp stack, connected through XenStore.
    Guest(GuestArgs),
    /// Domains and their vifs with XenStore states.
    List(DirArg),
    /// Per-vif counters.
    Stats(StatsArgs),
    /// Bridge views like bridge-utils: `brctl show`, `brctl showmacs xenbr0`.
    Brctl(BrctlArgs),
    /// Print the XenStore tree (like xenstore-ls) of a running driver domain.
    XenstoreLs(XsLsArgs),
    /// Destroy a guest's devices (what `xl destroy` does to its vifs).
    Destroy(DestroyArgs),
    /// Stop the driver domain (guests see their backend close).
    Down(DirArg),
    /// Run the XenStore daemon alone: DIR/socket for domain 0.
    Xenstored(XenstoredArgs),
    /// Introduce a domain to a XenStore daemon (opens DIR/domain/<id>/socket).
    XenstoreIntroduce(IntroduceArgs),
    /// Sustained traffic with guest restarts and kills; reports RSS and counters.
    Soak(SoakArgs),
    /// One side of one benchmark case (internal).
    #[command(hide = true)]
    BenchWorker(WorkerArgs),
}

/// The driver domain's switch, as `demo` and `up` take it on the command line.
#[derive(Args)]
struct SwitchArgs {
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
    /// Capture a port's frames: `PORT=FILE.pcap` (repeatable; ports vif1.0, peth0...;
    /// a vif port may be named before its guest starts).
    #[arg(long, value_name = "PORT=FILE")]
    capture: Vec<String>,
}

#[derive(Args)]
struct DemoArgs {
    #[command(flatten)]
    switch: SwitchArgs,
    /// Number of guest domains.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
    guests: u16,
    /// Pings per target.
    #[arg(long, default_value_t = 4)]
    count: u16,
    /// Run every domain as a thread of this process instead of separate processes.
    #[arg(long)]
    threads: bool,
}

fn demo(args: DemoArgs) -> ExitCode {
    let mode = parse_mode(&args.switch.mode);
    let uplink = match args.switch.uplink.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("xennet demo: --uplink: {e}");
            return ExitCode::from(2);
        }
    };
    let captures = match parse_captures("demo", &args.switch.capture) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let opts = xennet::demo::DemoOptions {
        mode,
        proxy_arp: !args.switch.no_proxy_arp,
        uplink,
        captures,
        guests: args.guests,
        count: args.count,
    };
    if !args.threads {
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("xennet demo: cannot find my own executable: {e}");
                return ExitCode::FAILURE;
            }
        };
        return match xennet::demo::run_processes(&opts, &exe) {
            Ok((text, ok)) => {
                print!("{text}");
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("xennet demo: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match xennet::demo::run(&opts) {
        Ok(report) => {
            print!("{}", report.text);
            let expect_loss = !opts.proxy_arp && opts.mode == xennet_switch::Mode::Route;
            let remote_ok =
                report
                    .remote_pings
                    .iter()
                    .all(|&(_, rx)| if expect_loss { rx == 0 } else { rx > 0 });
            let guests_ok = report.guest_pings.map_or(true, |(_, rx)| rx > 0);
            if remote_ok && guests_ok && (expect_loss || report.tcp_echo_ok) {
                ExitCode::SUCCESS
            } else {
                eprintln!("xennet demo: a claim did not hold");
                ExitCode::FAILURE
            }
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
    /// Frame sizes to sweep (comma-separated bytes; default: the sweep's own).
    #[arg(long, value_delimiter = ',', value_name = "BYTES")]
    sizes: Vec<usize>,
    /// Batch sizes to sweep (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "N")]
    batches: Vec<usize>,
    /// Measure only these paths (comma-separated: tx, rx, bridge, tx-light, tx-copy, rx-copy, socketpair, veth).
    #[arg(long, value_delimiter = ',', value_name = "PATHS")]
    paths: Vec<String>,
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
    /// Instance directory (xennet paths).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The guest domain this worker plays (xennet paths).
    #[arg(long)]
    domid: Option<u16>,
    /// CPU to pin to (xennet paths).
    #[arg(long, default_value_t = 0)]
    cpu: usize,
}

fn bench(args: BenchArgs) -> ExitCode {
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
        Command::List(a) => control(&a.dir(), &["list"]),
        Command::Stats(a) => {
            if a.json {
                control(&a.dir.dir(), &["stats", "--json"])
            } else {
                control(&a.dir.dir(), &["stats"])
            }
        }
        Command::Brctl(a) => {
            let mut w = vec!["brctl"];
            w.extend(a.args.iter().map(String::as_str));
            if a.args.is_empty() {
                w.push("show");
            }
            control(&a.dir.dir(), &w)
        }
        Command::XenstoreLs(a) => xenstore_ls(&a),
        Command::Destroy(a) => control(&a.dir.dir(), &["destroy", &a.domid.to_string()]),
        Command::Down(a) => control(&a.dir(), &["down"]),
        Command::Xenstored(a) => cli_xenstored(&a),
        Command::XenstoreIntroduce(a) => cli_introduce(&a),
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

/// `--dir`: the instance directory shared by `up`, guests and the tools.
#[derive(Args, Clone)]
struct DirArg {
    /// Instance directory (default: $XENNET_RUNTIME_DIR, $XDG_RUNTIME_DIR/xennet or /run/xennet).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl DirArg {
    fn dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(xennet_dom0::up::default_dir)
    }
}

#[derive(Args)]
struct UpArgs {
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
}

#[derive(Args)]
struct GuestArgs {
    #[command(flatten)]
    dir: DirArg,
    /// This guest's domain id.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=32767))]
    domid: u16,
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

#[derive(Args)]
struct StatsArgs {
    #[command(flatten)]
    dir: DirArg,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BrctlArgs {
    #[command(flatten)]
    dir: DirArg,
    /// `show` or `showmacs BRIDGE`.
    args: Vec<String>,
}

#[derive(Args)]
struct XsLsArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Subtree to print.
    #[arg(default_value = "/")]
    path: String,
}

#[derive(Args)]
struct DestroyArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The guest.
    domid: u16,
}

#[derive(Args)]
struct XenstoredArgs {
    /// Directory for the sockets (DIR/socket for domain 0, DIR/domain/<id>/socket),
    /// the store's journal (DIR/journal) and DIR/pid. A daemon started again on the
    /// same directory comes back with the store.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Start with an empty store (discard DIR/journal).
    #[arg(long)]
    fresh: bool,
}

#[derive(Args)]
struct IntroduceArgs {
    /// Domain to introduce.
    domid: u16,
    /// The daemon's directory (as given to `xennet xenstored --dir`).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// Set by SIGINT/SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM ask the long-running commands to tear down cleanly.
fn install_stop_handler() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` is async-signal-safe (one atomic store) and has the
        // `extern "C" fn(c_int)` signature `signal` expects.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

fn control(dir: &std::path::Path, words: &[&str]) -> ExitCode {
    match xennet_dom0::control::request(dir, words) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xennet {}: {e}", words[0]);
            ExitCode::FAILURE
        }
    }
}

fn parse_mode(s: &str) -> xennet_switch::Mode {
    use xennet_switch::Mode;
    match s {
        "route" => Mode::Route,
        "nat" => Mode::Nat,
        _ => Mode::Bridge,
    }
}

fn parse_captures(cmd: &str, list: &[String]) -> Result<Vec<(String, PathBuf)>, ExitCode> {
    let mut captures = Vec::new();
    for c in list {
        match c.split_once('=') {
            Some((port, file)) if !port.is_empty() && !file.is_empty() => {
                captures.push((port.to_string(), PathBuf::from(file)))
            }
            _ => {
                eprintln!("xennet {cmd}: --capture {c:?}: expected PORT=FILE");
                return Err(ExitCode::from(2));
            }
        }
    }
    Ok(captures)
}

fn cli_up(a: UpArgs) -> ExitCode {
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
        Ok(t) => xennet_dom0::up::mode_name(t.driver_domain.mode),
        Err(e) => {
            eprintln!("xennet up: {e}");
            return ExitCode::from(2);
        }
    };
    install_stop_handler();
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

fn cli_guest(a: GuestArgs) -> ExitCode {
    let bad = |what: &str, v: &str| {
        eprintln!("xennet guest: {what} {v:?} is not valid");
        ExitCode::from(2)
    };
    let mut opts = xennet::guest::GuestOptions::new(a.dir.dir(), a.domid);
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
    match xennet::guest::run(&opts, &STOP) {
        Ok(rep) => {
            print!("{}", rep.text);
            if rep.ok(opts.expect_loss) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("xennet guest {}: {e}", a.domid);
            ExitCode::FAILURE
        }
    }
}

fn xenstore_ls(a: &XsLsArgs) -> ExitCode {
    use xennet_xenstore::XsClient;
    let sock = xennet_dom0::up::xenstore_dir(&a.dir.dir()).join("socket");
    let xs = match XsClient::connect(&sock) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("xennet xenstore-ls: {}: {e}", sock.display());
            return ExitCode::FAILURE;
        }
    };
    fn walk(xs: &XsClient, path: &str, depth: usize, out: &mut String) -> Result<(), String> {
        let kids = xs.directory(path).map_err(|e| format!("{path}: {e}"))?;
        for k in kids {
            let child = if path == "/" {
                format!("/{k}")
            } else {
                format!("{path}/{k}")
            };
            let v = xs.read_string(&child).unwrap_or_default();
            out.push_str(&format!(
                "{}{k} = \"{}\"\n",
                " ".repeat(depth),
                v.escape_default()
            ));
            walk(xs, &child, depth + 1, out)?;
        }
        Ok(())
    }
    let mut out = String::new();
    match walk(&xs, &a.path, 0, &mut out) {
        Ok(()) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xennet xenstore-ls: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cli_xenstored(a: &XenstoredArgs) -> ExitCode {
    use xennet_xenstore::Xenstored;
    install_stop_handler();
    if a.fresh {
        match std::fs::remove_file(Xenstored::journal_path(&a.dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                eprintln!("xennet xenstored --fresh: {}: {e}", a.dir.display());
                return ExitCode::FAILURE;
            }
            _ => {}
        }
    }
    match Xenstored::start_persistent(&a.dir) {
        Ok(xs) => {
            let pid_file = xennet_dom0::xenstored::pid_file(&a.dir);
            if let Err(e) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
                eprintln!("xennet xenstored: {}: {e}", pid_file.display());
            }
            println!("xenstored: domain 0 socket {}", xs.socket_path().display());
            while !STOP.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            xs.stop();
            let _ = std::fs::remove_file(&pid_file);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xennet xenstored: {}: {e}", a.dir.display());
            ExitCode::FAILURE
        }
    }
}

fn cli_introduce(a: &IntroduceArgs) -> ExitCode {
    use xennet_xenstore::{dom0_socket, domain_socket, XsClient};
    let r = XsClient::connect(dom0_socket(&a.dir)).and_then(|xs| xs.introduce(a.domid, 0, 0));
    match r {
        Ok(()) => {
            println!("{}", domain_socket(&a.dir, a.domid).display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xennet xenstore-introduce {}: {e}", a.domid);
            ExitCode::FAILURE
        }
    }
}

#[derive(Args)]
struct SoakArgs {
    /// How long to run (fractions allowed: CI runs 0.25).
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
}

fn cli_soak(a: &SoakArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("xennet soak: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !(a.minutes > 0.0 && a.minutes <= 24.0 * 60.0) {
        eprintln!("xennet soak: --minutes must be in (0, 1440]");
        return ExitCode::from(2);
    }
    let opts = xennet::soak::SoakOptions {
        duration: std::time::Duration::from_secs_f64(a.minutes * 60.0),
        exe,
        dir: xennet_platform::shm::RuntimeDir::default_path()
            .join(format!("soak-{}", std::process::id())),
    };
    match xennet::soak::run(&opts) {
        Ok(rep) => {
            print!("{}", rep.text);
            if rep.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("xennet soak: {e}");
            ExitCode::FAILURE
        }
    }
}
