//! Fixtures of the process tests: a private runtime directory removed on drop, and
//! this test binary re-run as another domain's process, driven line by line over its
//! stdin and stdout with a watchdog that bounds it in time.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A directory removed (with everything in it) when dropped.
pub struct Dir(pub std::path::PathBuf);

impl Dir {
    /// A fresh directory in the temporary directory, named after `tag` and our pid.
    pub fn new(tag: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("xennet-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// This test binary re-run as a peer process: `test` is the name of the test that
/// plays the peer (it does nothing unless `env` is set), `env` carries `value` to it.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Dropping it stops the watchdog.
    _watchdog: std::sync::mpsc::Sender<()>,
}

impl Peer {
    /// Start the peer and wait for its `READY` line; returns the peer and the words
    /// after `READY`. The peer is killed after `limit` whatever happens.
    pub fn start(test: &str, env: &str, value: &str, limit: Duration) -> (Peer, String) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(env, value)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // Bounded in time: a peer that hangs is killed, and our reads then end.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let pid = child.id() as libc::pid_t;
        std::thread::spawn(move || {
            if rx.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                // SAFETY: kill(2) with a pid and a signal number has no memory effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        let mut peer = Peer {
            child,
            stdin,
            stdout,
            _watchdog: tx,
        };
        // libtest prints its own lines first (and `test name ... ` without a newline
        // before the peer's output): find READY in the line.
        let deadline = Instant::now() + limit;
        let ready = loop {
            let l = peer.next_line().expect("peer exited before it was ready");
            if let Some(at) = l.find("READY") {
                break l[at + 5..].trim().to_string();
            }
            assert!(Instant::now() < deadline, "peer never got ready");
        };
        (peer, ready)
    }

    /// Send a command; its one-line reply, or `None` if the peer is gone.
    pub fn ask(&mut self, cmd: &str) -> Option<String> {
        writeln!(self.stdin, "{cmd}").ok()?;
        self.stdin.flush().ok()?;
        self.next_line()
    }

    /// [`Peer::ask`], failing the test with the peer's exit status if it is gone.
    pub fn say(&mut self, cmd: &str) -> String {
        match self.ask(cmd) {
            Some(l) => l,
            None => panic!("peer died at `{cmd}`: {}", self.exit_status()),
        }
    }

    /// The next line; `None` at end of output.
    pub fn next_line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.stdout.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l.trim().to_string()),
        }
    }

    /// Wait for the peer to exit (it is killed after its limit at the latest).
    pub fn exit_status(&mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files this process has mapped (the path column of /proc/self/maps).
pub fn mapped_files() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_string))
        .collect()
}
