//! The processes of one instance directory (`xennet up` and its guests), for the
//! commands that start a whole setup themselves (`demo`, `soak`). On drop the
//! guests get SIGTERM (they close their devices in order), the driver domain is
//! asked to go `down`, stragglers are killed, and the directory is removed.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xennet_dom0::process::{terminate, wait_exit};
use xennet_dom0::{control, up};

/// A driver domain and guests started from one `xennet` binary.
pub struct Instance {
    exe: PathBuf,
    dir: PathBuf,
    driver: Option<Child>,
    /// Guests still ours to stop (a killed one leaves `None`, so indices stay valid
    /// and a reaped pid is never signalled).
    guests: Vec<Option<Child>>,
}

impl Instance {
    /// An empty instance in `dir` (anything left there is removed first).
    pub fn new(exe: &Path, dir: PathBuf) -> Self {
        let _ = std::fs::remove_dir_all(&dir);
        Instance {
            exe: exe.to_path_buf(),
            dir,
            driver: None,
            guests: Vec::new(),
        }
    }

    /// The instance directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The driver domain's pid, once started.
    pub fn driver_pid(&self) -> Option<u32> {
        self.driver.as_ref().map(Child::id)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.args(args)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null());
        c
    }

    /// Starts `xennet up ARGS` and waits until its control socket answers.
    pub fn start_driver(&mut self, args: &[&str]) -> io::Result<()> {
        let mut a = vec!["up"];
        a.extend_from_slice(args);
        let child = self.command(&a).spawn()?;
        let driver = self.driver.insert(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while control::request(&self.dir, &["info"]).is_err() {
            if let Ok(Some(st)) = driver.try_wait() {
                return Err(io::Error::other(format!("xennet up exited early ({st})")));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("driver domain did not start"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts a serving `xennet guest --domid DOMID`; returns its index.
    pub fn spawn_guest(&mut self, domid: u16) -> io::Result<usize> {
        let child = self
            .command(&["guest", "--domid", &domid.to_string()])
            .stderr(Stdio::null())
            .spawn()?;
        self.guests.push(Some(child));
        Ok(self.guests.len() - 1)
    }

    /// SIGKILLs guest `i` (a crash, as the driver domain sees it).
    pub fn kill_guest(&mut self, i: usize) {
        if let Some(mut c) = self.guests.get_mut(i).and_then(Option::take) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A `key=value` field of the driver domain's `info` reply.
    pub fn info_field(&self, key: &str) -> Option<String> {
        control::info_field(&self.dir, key)
    }

    /// SIGKILLs the driver domain's xenstored (a crash; the driver domain
    /// starts it again). False if it does not run as its own process.
    pub fn kill_xenstored(&self) -> bool {
        let Some(pid) = self
            .info_field("xenstored-pid")
            .and_then(|p| p.parse::<libc::pid_t>().ok())
            .filter(|&p| p > 0)
        else {
            return false;
        };
        // SAFETY: kill(2) on the pid the driver domain reports for its own
        // xenstored child; at worst a stale pid hits nothing (ESRCH).
        unsafe { libc::kill(pid, libc::SIGKILL) == 0 }
    }

    /// Whether `domid`'s first vif reaches Connected within `within`.
    pub fn wait_connected(&self, domid: u16, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let node = format!("/local/domain/0/backend/vif/{domid}/0/state");
        let sock = up::xenstore_dir(&self.dir).join("socket");
        let Ok(xs) = xennet_xenstore::XsClient::connect(sock) else {
            return false;
        };
        while Instant::now() < deadline {
            if xs.try_read_string(&node).ok().flatten().as_deref() == Some("4") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Orderly teardown (what drop does): guests first, then the driver domain.
    pub fn stop(&mut self) {
        for g in self.guests.iter_mut().filter_map(Option::as_mut) {
            terminate(g, Duration::from_secs(10));
        }
        self.guests.clear();
        if let Some(mut d) = self.driver.take() {
            let _ = control::request(&self.dir, &["down"]);
            wait_exit(&mut d, Duration::from_secs(10));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
