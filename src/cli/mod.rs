//! The subcommands of the `xennet` command, one module each; what they share (the
//! instance directory, the switch options, the stop signal, control requests) is here.

pub(crate) mod bench;
pub(crate) mod check;
pub(crate) mod demo;
pub(crate) mod guest;
pub(crate) mod soak;
pub(crate) mod toolstack;
pub(crate) mod up;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

/// The driver domain's switch, as `demo` and `up` take it on the command line.
#[derive(Args)]
pub(crate) struct SwitchArgs {
    /// How the driver domain connects guests: bridge, route (with proxy ARP) or nat.
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "route", "nat"])]
    pub(crate) mode: String,
    /// Route mode: turn proxy ARP off on the uplink (the remote host then cannot reach
    /// the guests, as Xen's routing documentation describes).
    #[arg(long)]
    pub(crate) no_proxy_arp: bool,
    /// What is behind peth0: `sim` (a simulated remote host) or `tap:NAME`.
    #[arg(long, default_value = "sim")]
    pub(crate) uplink: String,
    /// Capture a port's frames: `PORT=FILE.pcap` (repeatable; ports vif1.0, peth0...;
    /// a vif port may be named before its guest starts).
    #[arg(long, value_name = "PORT=FILE")]
    pub(crate) capture: Vec<String>,
}

/// `--dir`: the instance directory shared by `up`, guests and the tools.
#[derive(Args, Clone)]
pub(crate) struct DirArg {
    /// Instance directory (default: $XENNET_RUNTIME_DIR, $XDG_RUNTIME_DIR/xennet or /run/xennet).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
}

impl DirArg {
    pub(crate) fn dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(xennet_dom0::up::default_dir)
    }
}

/// Set by SIGINT/SIGTERM.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM ask the long-running commands to tear down cleanly.
pub(crate) fn install_stop_handler() {
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

pub(crate) fn control(dir: &std::path::Path, words: &[&str]) -> ExitCode {
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

pub(crate) fn parse_mode(s: &str) -> xennet_switch::Mode {
    use xennet_switch::Mode;
    match s {
        "route" => Mode::Route,
        "nat" => Mode::Nat,
        _ => Mode::Bridge,
    }
}

pub(crate) fn parse_captures(
    cmd: &str,
    list: &[String],
) -> Result<Vec<(String, PathBuf)>, ExitCode> {
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
