//! The driver domain's XenStore daemon as a process of its own (`xennet
//! xenstored`), as xencommons runs xenstored beside the toolstack: restarted
//! when it dies, coming back with its store from its journal, while netback's
//! data path and every guest keep running and their XenStore clients reconnect.
//!
//! The daemon dies with the thread that supervises it (`PR_SET_PDEATHSIG`), so
//! a driver domain that is killed does not leave its store behind: the next
//! `xennet up` starts an empty one, as a rebooted domain 0 would.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use xennet_xenstore::{dom0_socket, Xenstored};

/// How long a new daemon may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the supervisor looks at its child.
const POLL: Duration = Duration::from_millis(20);
/// Restart delays: the first, and the cap for a daemon that keeps dying at once.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

struct Shared {
    stop: AtomicBool,
    pid: AtomicU32,
    restarts: AtomicU64,
}

/// A supervised `xennet xenstored` child.
pub struct XenstoredProcess {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The pid file a `xennet xenstored` writes in its directory.
pub fn pid_file(dir: &Path) -> PathBuf {
    dir.join("pid")
}

// pre_exec is unsafe: the hook runs between fork and exec (see its SAFETY comment).
#[allow(unsafe_code)]
fn spawn(exe: &Path, dir: &Path, fresh: bool) -> io::Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.arg("xenstored").arg("--dir").arg(dir);
    if fresh {
        cmd.arg("--fresh");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent died before prctl took effect: nobody would stop us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Waits until the daemon answers on `dir`'s domain 0 socket.
fn wait_ready(child: &mut Child, dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let sock = dom0_socket(dir);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if let Some(st) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "xenstored exited at start ({st})"
            )));
        }
        if Instant::now() > deadline {
            return Err(io::Error::other("xenstored did not open its socket"));
        }
        thread::sleep(POLL);
    }
    Ok(())
}

impl XenstoredProcess {
    /// Starts `exe xenstored --dir DIR --fresh` (an empty store) and supervises
    /// it: whenever it exits it is started again on the same journal.
    pub fn start(exe: &Path, dir: &Path) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            pid: AtomicU32::new(0),
            restarts: AtomicU64::new(0),
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let sh = shared.clone();
        let (exe, d) = (exe.to_path_buf(), dir.to_path_buf());
        // The child is spawned by this thread, which lives as long as the
        // supervisor: PR_SET_PDEATHSIG follows the spawning thread.
        let thread = thread::Builder::new()
            .name("xenstored-supervisor".into())
            .spawn(move || supervise(&sh, &exe, &d, ready_tx))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(XenstoredProcess {
                shared,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(io::Error::other("xenstored supervisor failed")),
        }
    }

    /// The daemon's current pid.
    pub fn pid(&self) -> u32 {
        self.shared.pid.load(Ordering::Acquire)
    }

    /// How many times the daemon was started again after it exited.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Acquire)
    }

    /// Stops the daemon in order (SIGTERM: it removes its sockets) and the
    /// supervisor.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for XenstoredProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn supervise(sh: &Shared, exe: &Path, dir: &Path, ready: mpsc::Sender<io::Result<()>>) {
    let mut first = Some(ready);
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let mut child = match spawn(exe, dir, first.is_some()) {
            Ok(c) => c,
            Err(e) => {
                if let Some(r) = first.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                tracing::error!("xenstored: cannot start it again: {e}");
                if !pause(sh, &mut backoff) {
                    return;
                }
                continue;
            }
        };
        sh.pid.store(child.id(), Ordering::Release);
        // Counted once the new daemon runs and its pid is stored: whoever sees the
        // count go up also sees the new pid.
        if first.is_none() {
            sh.restarts.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(r) = first.take() {
            let ok = wait_ready(&mut child, dir);
            let failed = ok.is_err();
            let _ = r.send(ok);
            if failed {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
        let status = loop {
            if sh.stop.load(Ordering::Acquire) {
                crate::process::terminate(&mut child, Duration::from_secs(5));
                return;
            }
            match child.try_wait() {
                Ok(Some(st)) => break st.to_string(),
                Ok(None) => thread::sleep(POLL),
                Err(e) => break e.to_string(),
            }
        };
        tracing::warn!("xenstored exited ({status}); starting it again on its journal");
        if started.elapsed() > Duration::from_secs(1) {
            backoff = BACKOFF_MIN;
        }
        if !pause(sh, &mut backoff) {
            return;
        }
    }
}

/// Sleeps the back-off (doubling it for next time); false if asked to stop.
fn pause(sh: &Shared, backoff: &mut Duration) -> bool {
    let until = Instant::now() + *backoff;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    while Instant::now() < until {
        if sh.stop.load(Ordering::Acquire) {
            return false;
        }
        thread::sleep(POLL);
    }
    !sh.stop.load(Ordering::Acquire)
}

/// The driver domain's daemon: in this process, or supervised as its own.
pub enum XenstoredHandle {
    /// In the driver domain's process (it dies and restarts with it).
    InProcess(Xenstored),
    /// A `xennet xenstored` child, restarted when it exits.
    Process(XenstoredProcess),
}

impl XenstoredHandle {
    /// Stops the daemon in order.
    pub fn stop(&mut self) {
        match self {
            XenstoredHandle::InProcess(x) => x.stop(),
            XenstoredHandle::Process(p) => p.stop(),
        }
    }

    /// `xenstored-pid=<pid> xenstored-restarts=<n>`, or `xenstored=embedded`,
    /// for the driver domain's `info`.
    pub fn describe(&self) -> String {
        match self {
            XenstoredHandle::InProcess(_) => "xenstored=embedded".into(),
            XenstoredHandle::Process(p) => format!(
                "xenstored-pid={} xenstored-restarts={}",
                p.pid(),
                p.restarts()
            ),
        }
    }
}
