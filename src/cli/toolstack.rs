//! The toolstack views and tools: `list`, `stats`, `brctl`, `destroy`,
//! `network-attach`, `network-detach`, `xenstore-ls`, `xenstored`,
//! `xenstore-introduce`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::Args;

use super::*;

#[derive(Args)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    pub(crate) dir: DirArg,
    /// JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) dir: DirArg,
    /// JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct BrctlArgs {
    #[command(flatten)]
    pub(crate) dir: DirArg,
    /// JSON instead of bridge-utils' text.
    #[arg(long)]
    pub(crate) json: bool,
    /// `show` or `showmacs BRIDGE`.
    pub(crate) args: Vec<String>,
}

/// `list`, `stats`, `brctl ...`: a view, with `--json` last when asked.
pub(crate) fn view(dir: &DirArg, words: &[&str], json: bool) -> ExitCode {
    let mut w = words.to_vec();
    if json {
        w.push("--json");
    }
    control(&dir.dir(), &w)
}

#[derive(Args)]
pub(crate) struct XsLsArgs {
    #[command(flatten)]
    pub(crate) dir: DirArg,
    /// Subtree to print.
    #[arg(default_value = "/")]
    pub(crate) path: String,
}

#[derive(Args)]
pub(crate) struct DestroyArgs {
    #[command(flatten)]
    pub(crate) dir: DirArg,
    /// The guest (1..=32751).
    pub(crate) domid: u16,
}

#[derive(Args)]
pub(crate) struct NetworkAttachArgs {
    #[command(flatten)]
    pub(crate) dir: DirArg,
    /// The guest (1..=32751); it must exist.
    pub(crate) domid: u16,
    /// The vif, as xl takes it: `mac=...,ip=...` or `mac=... ip=...`; device
    /// `devid=`, else the lowest the guest lacks (default: the topology file's first
    /// vif the guest lacks, else a generated MAC).
    pub(crate) spec: Vec<String>,
}

#[derive(Args)]
pub(crate) struct NetworkDetachArgs {
    #[command(flatten)]
    pub(crate) dir: DirArg,
    /// The guest (1..=32751).
    pub(crate) domid: u16,
    /// The device (the `N` of `vifD.N`; default 0).
    pub(crate) devid: Option<u32>,
}

/// `network-attach DOMID SPEC`: the spec's words joined into one xl spec.
pub(crate) fn network_attach(a: &NetworkAttachArgs) -> ExitCode {
    let domid = a.domid.to_string();
    let spec = a.spec.join(",");
    let mut w = vec!["network-attach", domid.as_str()];
    if !spec.is_empty() {
        w.push(&spec);
    }
    control(&a.dir.dir(), &w)
}

/// `network-detach DOMID [DEVID]`.
pub(crate) fn network_detach(a: &NetworkDetachArgs) -> ExitCode {
    let domid = a.domid.to_string();
    let devid = a.devid.map(|d| d.to_string());
    let mut w = vec!["network-detach", domid.as_str()];
    w.extend(devid.as_deref());
    control(&a.dir.dir(), &w)
}

#[derive(Args)]
pub(crate) struct XenstoredArgs {
    /// Directory for the sockets (DIR/socket for domain 0, DIR/domain/<id>/socket),
    /// the store's journal (DIR/journal) and DIR/pid. A daemon started again on the
    /// same directory comes back with the store.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// Start with an empty store (discard DIR/journal).
    #[arg(long)]
    pub(crate) fresh: bool,
}

#[derive(Args)]
pub(crate) struct IntroduceArgs {
    /// Domain to introduce.
    pub(crate) domid: u16,
    /// The daemon's directory (as given to `xennet xenstored --dir`).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: PathBuf,
}

pub(crate) fn xenstore_ls(a: &XsLsArgs) -> ExitCode {
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

pub(crate) fn cli_xenstored(a: &XenstoredArgs) -> ExitCode {
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

pub(crate) fn cli_introduce(a: &IntroduceArgs) -> ExitCode {
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
