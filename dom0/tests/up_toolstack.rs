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

/// The sample topology file of docs/driver-domain.md, as printed there.
fn docs_sample_topology() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/driver-domain.md");
    let text = std::fs::read_to_string(path).expect("docs/driver-domain.md");
    let section = text
        .find("## Topology file (TOML)")
        .expect("the topology section");
    let start = text[section..].find("```toml\n").expect("its sample") + section + 8;
    let len = text[start..].find("```").expect("the sample's end");
    text[start..start + len].to_string()
}

#[test]
fn the_docs_sample_topology_is_accepted_and_every_vif_of_a_guest_is_attached() {
    let mut topo = xennet_switch::config::Topology::from_toml_str(&docs_sample_topology())
        .expect("the docs' sample parses");
    let probe = UpOptions {
        topology: Some(topo.clone()),
        ..UpOptions::new("/nonexistent")
    };
    probe
        .effective_topology()
        .expect("xennet up --config accepts the docs' sample");
    let dd = Running::start("sample", |opts| {
        // The sample's captures are relative file names: keep them in the test's dir.
        for c in &mut topo.driver_domain.captures {
            c.path = opts.dir.join(&c.path);
        }
        opts.topology = Some(topo);
    });
    // Guest 1 brings no vif spec: it gets the file's two vifs, devid 0 and 1.
    let reply = dd.ask(&["create", "1"]).expect("create guest 1");
    assert!(
        reply.starts_with("domain 1 created: vif1.0 mac=00:16:3e:00:01:01 ip=128.153.144.205/24"),
        "{reply}"
    );
    assert!(reply.contains("vif1.1 mac=00:16:3e:00:01:02"), "{reply}");
    let list = dd.ask(&["list"]).unwrap();
    let rows: Vec<&str> = list.lines().filter(|l| l.starts_with("web")).collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert!(
        rows[0].contains("vif1.0") && rows[0].contains("00:16:3e:00:01:01"),
        "{list}"
    );
    assert!(
        rows[1].contains("vif1.1") && rows[1].contains("00:16:3e:00:01:02"),
        "{list}"
    );
    // A frontend on device 1 connects to the second vif's backend.
    use xennet_netfront::xenbus::{connect, FrontOptions};
    use xennet_platform::shm::{Domain, EventChannels, RuntimeDir};
    let rt = RuntimeDir::new(dd.dir()).unwrap();
    let domain = Domain::create(&rt, xennet_ring::DomId(1), 4096, 4096).unwrap();
    let events = EventChannels::new(&domain, Some(rt.clone()));
    let xs_dir = xennet_dom0::up::xenstore_dir(dd.dir());
    let xs =
        xennet_xenstore::XsClient::connect(xennet_xenstore::domain_socket(&xs_dir, 1)).unwrap();
    let opts = FrontOptions {
        devid: 1,
        ..FrontOptions::default()
    };
    let (front, _link) = connect(&xs, &domain, &events, &opts).expect("device 1 connects");
    assert_eq!(front.mac(), [0x00, 0x16, 0x3e, 0x00, 0x01, 0x02]);
    let list = dd.ask(&["list"]).unwrap();
    let vif11 = list.lines().find(|l| l.contains("vif1.1")).unwrap();
    assert!(vif11.ends_with("Connected/Connected"), "{list}");
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

/// A guest keeps several vifs through `network-attach` and `network-detach`: detach
/// takes the vif of its devid (0 without one), attach adds the spec's devid or the
/// lowest free one (refused if taken), `list` has a row (and a JSON object) per vif
/// and one for a guest left without any, and `destroy` removes every vif.
#[test]
fn attach_and_detach_move_one_vif_of_a_guest_with_several_and_destroy_takes_all() {
    let dd = Running::start("several", |_| {});
    dd.ask(&["create", "3"]).expect("guest 3");
    let reply = dd.ask(&["network-attach", "3"]).unwrap();
    assert_eq!(
        reply,
        "domain 3 vif attached: vif3.1 mac=00:16:3e:5f:00:03 ip=- mode=bridge\n"
    );
    let reply = dd.ask(&["network-attach", "3", "devid=4,ip=128.153.144.100"]);
    assert!(reply
        .unwrap()
        .contains("vif3.4 mac=00:16:3e:62:00:03 ip=128.153.144.100/24"));
    assert_eq!(
        dd.ask(&["network-attach", "3", "devid=1"]),
        Err("domain 3 already has vif3.1 (devid 1)".to_string())
    );
    // An address in use is refused, also one of the same domain's other vifs.
    assert_eq!(
        dd.ask(&["network-attach", "3", "ip=128.153.144.100"]),
        Err("domain 3: ip=128.153.144.100 is already vif3.4's (domain 3)".to_string())
    );
    let vifs = |dd: &Running| -> Vec<String> {
        let list: serde_json::Value =
            serde_json::from_str(&dd.ask(&["list", "--json"]).unwrap()).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["domid"] == 3)
            .map(|r| r["vif"].as_str().unwrap_or("-").to_string())
            .collect()
    };
    assert_eq!(vifs(&dd), ["vif3.0", "vif3.1", "vif3.4"]);

    assert_eq!(
        dd.ask(&["network-detach", "3", "2"]),
        Err("domain 3 has no vif with devid 2".to_string())
    );
    assert_eq!(
        dd.ask(&["network-detach", "3"]).unwrap(),
        "vif3.0 detached from domain 3\n"
    );
    assert_eq!(vifs(&dd), ["vif3.1", "vif3.4"]);
    // The first free devid is 0 again, and the domain's default address with it.
    let reply = dd.ask(&["network-attach", "3"]).unwrap();
    assert!(
        reply.starts_with(
            "domain 3 vif attached: vif3.0 mac=00:16:3e:5e:00:03 ip=128.153.144.207/24"
        ),
        "{reply}"
    );
    for devid in ["0", "1", "4"] {
        dd.ask(&["network-detach", "3", devid]).unwrap();
    }
    assert_eq!(vifs(&dd), ["-"]);
    let list = dd.ask(&["list"]).unwrap();
    let row = list.lines().find(|l| l.starts_with("guest3")).unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["guest3", "3", "-", "-", "-", "-"]
    );

    dd.ask(&["network-attach", "3"]).unwrap();
    dd.ask(&["network-attach", "3"]).unwrap();
    assert_eq!(dd.ask(&["destroy", "3"]).unwrap(), "domain 3 destroyed\n");
    assert!(vifs(&dd).is_empty());
    let xs_dir = xennet_dom0::up::xenstore_dir(dd.dir());
    let xs = xennet_xenstore::XsClient::connect(xs_dir.join("socket")).unwrap();
    assert_eq!(
        xs.try_read_string("/local/domain/0/backend/vif/3/1/state")
            .unwrap(),
        None
    );
}
