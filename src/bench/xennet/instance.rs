//! A benchmark instance: its XenStore daemon and devices, and the worker processes
//! (one per domain) it starts and reaps.

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use xennet_xenstore::{dom0_socket, Xenstored, XsClient};

use crate::bench::{Case, WorkerReport};
use xennet_dom0::build::guest_mac;
use xennet_dom0::nodes::VifNodes;
use xennet_dom0::up::xenstore_dir;
use xennet_switch::wire::{MacAddr, MacFmt};

use super::*;

/// A private XenStore daemon and runtime directory with the guests' vifs written, as
/// `xennet up` + `xennet guest` would leave them before the drivers connect. Removed
/// (daemon stopped, files deleted) when dropped.
pub struct Instance {
    dir: PathBuf,
    xsd: Option<Xenstored>,
    exe: Option<PathBuf>,
}

impl Instance {
    /// An instance for `path` with one vif per guest (the backend decides how many
    /// queues it offers: one on the measured paths, netback's maximum for the echo).
    pub fn new(path: &str, guests: &[u16]) -> io::Result<Instance> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        if SEQ.load(Ordering::Relaxed) == 0 {
            remove_stale_instances();
        }
        let dir = std::env::temp_dir().join(format!(
            "xennet-bench-{}-{path}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut inst = Instance {
            dir,
            xsd: None,
            exe: None,
        };
        let xsdir = xenstore_dir(&inst.dir);
        let xsd = Xenstored::start(&xsdir)?;
        let xs = XsClient::connect(dom0_socket(&xsdir)).map_err(io::Error::other)?;
        for &g in guests {
            xsd.introduce(g)
                .map_err(|e| io::Error::other(format!("introduce {g}: {e}")))?;
            let nodes = VifNodes {
                frontend_domid: g,
                backend_domid: 0,
                devid: 0,
                mac: MacFmt(MacAddr(guest_mac(g))).to_string(),
                bridge: (path == "bridge").then(|| "xenbr0".to_string()),
                ip: None,
                script: "vif-bridge".into(),
                rate: None,
                vifname: None,
            };
            for w in nodes.writes() {
                xs.write(&w.path, &w.value).map_err(io::Error::other)?;
                if let Some(p) = w.perms {
                    xs.set_perms(&w.path, &p.to_perms())
                        .map_err(io::Error::other)?;
                }
            }
        }
        inst.xsd = Some(xsd);
        Ok(inst)
    }

    /// Run workers from this `xennet` binary (default: the running one).
    pub fn use_exe(&mut self, exe: impl Into<PathBuf>) {
        self.exe = Some(exe.into());
    }

    /// The instance directory (`--dir` of every worker).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Start a `bench-worker` process playing `role` in this instance.
    pub fn spawn(
        &self,
        role: &str,
        domid: Option<u16>,
        case: &Case,
        cpu: usize,
    ) -> io::Result<Worker> {
        let exe = match &self.exe {
            Some(e) => e.clone(),
            None => std::env::current_exe()?,
        };
        let mut cmd = Command::new(exe);
        cmd.arg("bench-worker")
            .arg(role)
            .args(case.worker_args())
            .arg("--dir")
            .arg(&self.dir)
            .arg("--cpu")
            .arg(cpu.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(d) = domid {
            cmd.arg("--domid").arg(d.to_string());
        }
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        Ok(Worker { child, stdin })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(x) = self.xsd.take() {
            x.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Remove instance directories of bench runs whose process is gone (killed runs).
pub(super) fn remove_stale_instances() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("xennet-bench-")) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !xennet_platform::shm::pid_alive(p)) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A worker process: its report comes first, then it is told to exit (when dropped:
/// stdin closed, killed if it has not exited within 10 s).
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Worker {
    /// Its report line.
    pub fn report(&mut self) -> io::Result<WorkerReport> {
        let Some(out) = self.child.stdout.take() else {
            return Err(io::Error::other("worker report already taken"));
        };
        for line in BufReader::new(out).lines() {
            let line = line?;
            if line.starts_with('{') {
                return serde_json::from_str(&line)
                    .map_err(|e| io::Error::other(format!("bad worker report: {e}")));
            }
        }
        Err(io::Error::other("worker exited without a report"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing stdin tells the worker to exit; one that does not is killed.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// What a `bench-worker` of a xennet path needs beyond the case.
pub struct WorkerEnv {
    /// The instance directory.
    pub dir: PathBuf,
    /// The guest this worker plays (front roles).
    pub domid: Option<u16>,
    /// The CPU to pin to.
    pub cpu: usize,
}

/// Run one xennet role (it prints its report, then lingers); `None` if `role` is not one.
pub fn worker(role: &str, case: &Case, env: &WorkerEnv) -> Option<io::Result<()>> {
    let r = match role {
        "xennet-back-tx" => back(case, env, BackRole::Sink, true),
        "xennet-back-rx" => back(case, env, BackRole::Source, true),
        "xennet-back-tx-copy" => back(case, env, BackRole::Sink, false),
        "xennet-back-rx-copy" => back(case, env, BackRole::Source, false),
        "xennet-back-bridge" => back(case, env, BackRole::Bridge, true),
        "xennet-back-echo" => back(case, env, BackRole::Echo, true),
        "xennet-front-send" => front(case, env, Some(Duration::ZERO)),
        "xennet-front-send-light" => front(case, env, Some(LIGHT_GAP)),
        "xennet-front-recv" => front(case, env, None),
        _ => return None,
    };
    Some(r)
}

/// After the report: wait for the coordinator to close our stdin.
pub fn linger() {
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
}
