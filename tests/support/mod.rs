//! Fixtures of the cross-process tests: an instance directory with the `xennet`
//! processes started in it (killed and removed on drop), waiting, output text, and a
//! network namespace for the TAP tests.

#![allow(dead_code)] // each test crate uses a part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use xennet_dom0::{control, up};
use xennet_xenstore::XsClient;
pub const EXE: &str = env!("CARGO_BIN_EXE_xennet");

/// An instance directory plus the processes started in it; everything is
/// killed and removed on drop, also when a test fails.
pub struct Instance {
    pub dir: PathBuf,
    pub kids: Vec<Child>,
}

impl Instance {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xnp-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Instance {
            dir,
            kids: Vec::new(),
        }
    }

    pub fn spawn(&mut self, args: &[&str]) -> usize {
        self.spawn_to(args, Stdio::null(), Stdio::null())
    }

    /// Like `spawn`, with stdout and stderr in `DIR/<log>` (read with `log`).
    pub fn spawn_logged(&mut self, args: &[&str], log: &str) -> usize {
        std::fs::create_dir_all(&self.dir).unwrap();
        let f = std::fs::File::create(self.dir.join(log)).unwrap();
        let err = f.try_clone().unwrap();
        self.spawn_to(args, f.into(), err.into())
    }

    pub fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.join(log)).unwrap_or_default()
    }

    pub fn spawn_to(&mut self, args: &[&str], out: Stdio, err: Stdio) -> usize {
        let child = Command::new(EXE)
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn xennet");
        self.kids.push(child);
        self.kids.len() - 1
    }

    pub fn up(&mut self, args: &[&str]) -> usize {
        let mut a = vec!["up"];
        a.extend_from_slice(args);
        let i = self.spawn(&a);
        wait_for("driver domain to answer", || {
            control::request(&self.dir, &["info"]).is_ok()
        });
        i
    }

    pub fn wait_connected(&self, domid: u16) {
        let node = format!("/local/domain/0/backend/vif/{domid}/0/state");
        wait_for(&format!("vif{domid}.0 Connected"), || {
            XsClient::connect(up::xenstore_dir(&self.dir).join("socket"))
                .ok()
                .and_then(|xs| xs.try_read_string(&node).ok().flatten())
                .as_deref()
                == Some("4")
        });
    }

    /// Runs `xennet guest` to completion.
    pub fn guest(&self, domid: u16, args: &[&str]) -> Output {
        Command::new(EXE)
            .args([
                "guest",
                "--domid",
                &domid.to_string(),
                "--count",
                "3",
                "--dir",
            ])
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run guest")
    }

    pub fn kill9(&mut self, i: usize) {
        let _ = self.kids[i].kill(); // SIGKILL
        let _ = self.kids[i].wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = control::request(&self.dir, &["down"]);
        for k in &mut self.kids {
            let _ = k.kill();
            let _ = k.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The `M` of every `N packets transmitted, M received` line.
pub fn replies(t: &str) -> Vec<u32> {
    t.lines()
        .filter(|l| l.contains("packets transmitted"))
        .filter_map(|l| l.split(", ").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

/// Skips (with the reason printed) unless we may create namespaces and TAPs.
pub fn tap_skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    for tool in ["ip", "ping", "curl"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Some(format!("{tool} not installed"));
        }
    }
    None
}

/// A network namespace of our own, deleted on drop.
pub struct NetNs(pub String);

impl NetNs {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "xnp{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        NetNs(name)
    }
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}
