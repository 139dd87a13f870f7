//! `xennet up`'s toolstack requests (what `xl create` does), against a driver domain
//! running in this process (its XenStore daemon too) in a temporary directory. No
//! guest process connects: the requests and what `list` shows are checked.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use xennet_dom0::control::{request, ControlError};
use xennet_dom0::up::{run, UpOptions};

/// A driver domain in a thread, stopped and its directory removed on drop.
struct Running {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn start(tag: &str, configure: impl FnOnce(&mut UpOptions)) -> Running {
        let dir = std::env::temp_dir().join(format!("xennet-upts-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut opts = UpOptions::new(&dir);
        configure(&mut opts);
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = mpsc::channel();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let r = run(&opts, &s, || {
                let _ = ready_tx.send(());
            });
            if let Err(e) = r {
                panic!("xennet up: {e}");
            }
        });
        ready
            .recv_timeout(Duration::from_secs(30))
            .expect("driver domain ready");
        Running {
            dir,
            stop,
            thread: Some(thread),
        }
    }

    fn ask(&self, words: &[&str]) -> Result<String, String> {
        request(&self.dir, words).map_err(|e| match e {
            ControlError::Refused(m) => m,
            other => panic!("control socket: {other}"),
        })
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn create_refuses_a_mac_or_address_in_use_and_the_driver_domains_own() {
    let dd = Running::start("dups", |_| {});
    dd.ask(&["create", "1", "mac=00:16:3e:00:01:01,ip=128.153.144.210"])
        .expect("guest 1");
    let refused = [
        (
            ["create", "2", "mac=00:16:3e:00:01:01"],
            "domain 2: mac=00:16:3e:00:01:01 is already vif1.0's (domain 1)",
        ),
        (
            ["create", "3", "ip=128.153.144.210"],
            "domain 3: ip=128.153.144.210 is already vif1.0's (domain 1)",
        ),
        (
            ["create", "4", "mac=00:16:3e:00:00:01"],
            "domain 4: mac=00:16:3e:00:00:01 is the driver domain's",
        ),
        (
            ["create", "5", "ip=128.153.144.204"],
            "domain 5: ip=128.153.144.204 is the driver domain's",
        ),
        // Guest 6's default address is 128.153.144.210 (204 + 6): taken by guest 1.
        (
            ["create", "6", ""],
            "domain 6: ip=128.153.144.210 is already vif1.0's (domain 1)",
        ),
    ];
    for (words, want) in refused {
        assert_eq!(dd.ask(&words), Err(want.to_string()), "{words:?}");
    }
    let list = dd.ask(&["list"]).unwrap();
    assert_eq!(
        list.lines().count(),
        3,
        "header, Domain-0, guest 1:\n{list}"
    );
    // A refused create leaves nothing behind: the id and a free address still work.
    dd.ask(&["create", "2", "mac=00:16:3e:00:01:02"])
        .expect("guest 2");
    assert!(dd.dir().join("control.sock").exists());
}

#[test]
fn a_domain_id_without_a_default_address_is_refused_clearly_and_nat_defaults_follow_vif_nat() {
    let dd = Running::start("noaddr", |_| {});
    // 128.153.144.<204 + domid> runs out at domain 50.
    assert_eq!(
        dd.ask(&["create", "60"]),
        Err(
            "domain 60: no default address in bridge mode (128.153.144.<204 + domain id> \
             ends at domain 50): give the vif an ip="
                .to_string()
        )
    );
    let reply = dd.ask(&["create", "61", "ip=128.153.144.99"]).unwrap();
    assert!(reply.contains("ip=128.153.144.99/24"), "{reply}");
    drop(dd);
    let nat = Running::start("natdef", |o| o.mode = xennet_switch::Mode::Nat);
    // vif-nat: 10.<domid / 256>.<domid % 256>.<devid + 1>, gateway + 127.
    let reply = nat.ask(&["create", "300"]).unwrap();
    assert!(reply.contains("ip=10.1.44.1/24 gw=10.1.44.128"), "{reply}");
    let reply = nat.ask(&["create", "44"]).unwrap();
    assert!(reply.contains("ip=10.0.44.1/24 gw=10.0.44.128"), "{reply}");
}
