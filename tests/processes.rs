//! Every domain its own process: `xennet up` and `xennet guest`, meeting only
//! through XenStore, shared memory and event channels. Bounded in time; each
//! test uses its own instance directory and removes it.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;
use xennet_dom0::{control, up};
use xennet_xenstore::{domain_socket, XsClient};

fn demo(args: &[&str]) -> Output {
    let dir = Instance::new();
    Command::new(EXE)
        .arg("demo")
        .args(args)
        .env("XENNET_RUNTIME_DIR", &dir.dir)
        .output()
        .expect("run demo")
}

#[test]
fn demo_runs_each_domain_as_a_process_in_every_mode() {
    for mode in ["bridge", "route", "nat"] {
        let out = demo(&["--mode", mode, "--count", "3"]);
        let t = text(&out);
        assert!(out.status.success(), "demo --mode {mode} failed:\n{t}");
        assert!(t.contains("each domain its own process"), "{t}");
        // Every ping target answered (route mode may lose the first echo while a
        // smoltcp peer resolves its gateway: smoltcp drops rather than queues).
        let received = replies(&t);
        assert!(
            received.len() >= 2 && received.iter().all(|&r| r >= 1),
            "{t}"
        );
        if mode == "bridge" {
            assert!(received.iter().all(|&r| r == 3), "{t}");
        }
        assert!(t.contains("echoed 61 bytes intact"), "{t}");
        if mode == "bridge" {
            assert!(
                t.contains("8000.feffffffffff") && t.contains("vif2.0"),
                "{t}"
            );
        }
    }
    // A capture on a vif named before its guest exists, read back by tshark.
    let pcap = std::env::temp_dir().join(format!("xnp-{}-vif1.pcap", std::process::id()));
    let arg = format!("vif1.0={}", pcap.display());
    let out = demo(&["--count", "2", "--capture", &arg]);
    assert!(out.status.success(), "{}", text(&out));
    match Command::new("tshark").arg("-r").arg(&pcap).output() {
        Ok(o) => {
            let t = text(&o);
            assert!(o.status.success(), "{t}");
            assert!(
                t.contains("Echo (ping) request") && t.contains("Echo (ping) reply"),
                "{t}"
            );
        }
        Err(_) => eprintln!("SKIP part: tshark not installed"),
    }
    let _ = std::fs::remove_file(&pcap);
    // Route mode without proxy ARP: the remote host cannot reach the guest.
    let out = demo(&["--mode", "route", "--no-proxy-arp", "--count", "2"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("2 packets transmitted, 0 received, 100% packet loss"),
        "{t}"
    );
}

#[test]
fn guests_talk_through_the_driver_domain_and_xenstore_utils_see_the_handshake() {
    let mut inst = Instance::new();
    inst.up(&[]);
    inst.spawn(&["guest", "--domid", "2"]);
    inst.wait_connected(2);
    let out = inst.guest(
        1,
        &[
            "--ping",
            "128.153.144.206",
            "--tcp-echo",
            "128.153.144.206:7",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("3 packets transmitted, 3 received"), "{t}");
    assert!(t.contains("echoed 61 bytes intact"), "{t}");

    // The handshake's nodes as the real xenstore tools see them.
    if Command::new("xenstore-ls").arg("--help").output().is_ok() {
        let out = Command::new("xenstore-ls")
            .arg("/local/domain/2/device/vif/0")
            .env("XENSTORED_PATH", up::xenstore_dir(&inst.dir).join("socket"))
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        for key in [
            "tx-ring-ref",
            "rx-ring-ref",
            "event-channel",
            "request-rx-copy = \"1\"",
            "state = \"4\"",
        ] {
            assert!(t.contains(key), "{key} missing from\n{t}");
        }
    } else {
        eprintln!("SKIP part: xenstore-utils not installed");
    }
    let list = control::request(&inst.dir, &["list"]).unwrap();
    assert!(
        list.contains("guest2") && list.contains("Connected/Connected"),
        "{list}"
    );
    // Guest 1 closed in order: its domain and vif are gone.
    assert!(!list.contains("guest1"), "{list}");
}

#[test]
fn a_killed_guest_leaves_the_bridge_and_others_keep_working() {
    let mut inst = Instance::new();
    inst.up(&[]);
    inst.spawn(&["guest", "--domid", "2"]);
    let g3 = inst.spawn(&["guest", "--domid", "3"]);
    inst.wait_connected(2);
    inst.wait_connected(3);
    let shm = inst.dir.join("domain").join("3");
    assert!(shm.join("memory").exists());
    inst.kill9(g3);
    wait_for("vif3.0 to leave the bridge", || {
        control::request(&inst.dir, &["brctl", "show"]).is_ok_and(|s| !s.contains("vif3.0"))
    });
    wait_for("domain 3's memory files to be removed", || {
        !shm.join("memory").exists()
    });
    assert!(!domain_socket(&up::xenstore_dir(&inst.dir), 3).exists());
    let out = inst.guest(1, &["--ping", "128.153.144.206"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn guests_reconnect_after_the_driver_domain_is_killed_and_restarted() {
    let mut inst = Instance::new();
    let dd = inst.up(&[]);
    let g2 = inst.spawn(&["guest", "--domid", "2"]);
    inst.wait_connected(2);
    inst.kill9(dd);
    // The guest keeps running and waits; a new driver domain takes over the
    // directory (cleaning the dead one's files) and the guest reconnects.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        inst.kids[g2].try_wait().unwrap().is_none(),
        "guest exited when its backend died"
    );
    inst.up(&[]);
    inst.wait_connected(2);
    let out = inst.guest(
        1,
        &[
            "--ping",
            "128.153.144.206",
            "--tcp-echo",
            "128.153.144.206:7",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// `xenstore-ls PATH` as domain 0, with Debian's tool.
fn xenstore_ls(dir: &Path, path: &str) -> String {
    let out = Command::new("xenstore-ls")
        .arg(path)
        .env("XENSTORED_PATH", up::xenstore_dir(dir).join("socket"))
        .output()
        .unwrap();
    assert!(out.status.success(), "xenstore-ls {path}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn xenstored_killed_mid_traffic_comes_back_with_its_store_and_guests_carry_on() {
    let mut inst = Instance::new();
    inst.up(&[]);
    let g2 = inst.spawn_logged(&["guest", "--domid", "2"], "guest2.log");
    inst.wait_connected(2);
    let tools = Command::new("xenstore-ls").arg("--help").output().is_ok();
    let nodes = ["/local/domain/2", "/local/domain/0/backend/vif/2"];
    let before: Vec<String> = if tools {
        nodes.iter().map(|p| xenstore_ls(&inst.dir, p)).collect()
    } else {
        eprintln!("SKIP part: xenstore-utils not installed (store compared through the client)");
        Vec::new()
    };
    // Guest 1 pings guest 2 across the kill: 30 echoes, 100 ms apart.
    let pinger = Command::new(EXE)
        .args(["guest", "--domid", "1", "--count", "30", "--dir"])
        .arg(&inst.dir)
        .args(["--ping", "128.153.144.206"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    inst.wait_connected(1);
    let pid: i32 = control::info_field(&inst.dir, "xenstored-pid")
        .and_then(|p| p.parse().ok())
        .expect("xenstored runs as its own process");
    assert_eq!(
        control::info_field(&inst.dir, "xenstored-restarts").as_deref(),
        Some("0")
    );
    // SAFETY: kill(2) on the driver domain's xenstored child, whose pid it
    // reported just now; a stale pid would at worst hit nothing (ESRCH).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    wait_for("xenstored to be started again", || {
        control::info_field(&inst.dir, "xenstored-restarts").as_deref() == Some("1")
    });
    let new_pid = control::info_field(&inst.dir, "xenstored-pid").unwrap();
    assert_ne!(new_pid, pid.to_string());

    // Every echo came back: the data path never needed XenStore.
    let out = pinger.wait_with_output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("30 packets transmitted, 30 received"), "{t}");
    // The restarted daemon holds the same store, seen by the real tools.
    if tools {
        let after: Vec<String> = nodes.iter().map(|p| xenstore_ls(&inst.dir, p)).collect();
        assert_eq!(before, after);
        assert!(after[0].contains("state = \"4\""), "{}", after[0]);
    }
    // Guest 2 was never torn down: still running, never saw its backend go.
    assert!(
        inst.kids[g2].try_wait().unwrap().is_none(),
        "guest 2 exited"
    );
    let log = inst.log("guest2.log");
    assert!(!log.contains("backend gone"), "{log}");
    let list = control::request(&inst.dir, &["list"]).unwrap();
    assert!(list.contains("Connected/Connected"), "{list}");
    // The handshake works on the restarted store: a new guest connects and pings.
    let out = inst.guest(3, &["--ping", "128.153.144.206"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("3 packets transmitted, 3 received"), "{t}");
}

#[test]
fn a_frontend_without_request_rx_copy_is_refused() {
    let mut inst = Instance::new();
    inst.up(&[]);
    control::request(&inst.dir, &["create", "7"]).unwrap();
    // Play a frontend by hand on domain 7's own socket.
    let xs = XsClient::connect(domain_socket(&up::xenstore_dir(&inst.dir), 7)).unwrap();
    let be = "/local/domain/0/backend/vif/7/0";
    wait_for("backend InitWait", || {
        xs.try_read_string(&format!("{be}/state"))
            .ok()
            .flatten()
            .as_deref()
            == Some("2")
    });
    let fe = "/local/domain/7/device/vif/0";
    xs.write(&format!("{fe}/tx-ring-ref"), "8").unwrap();
    xs.write(&format!("{fe}/rx-ring-ref"), "9").unwrap();
    xs.write(&format!("{fe}/event-channel"), "1").unwrap();
    xs.write(&format!("{fe}/state"), "3").unwrap();
    wait_for("backend Closing", || {
        xs.try_read_string(&format!("{be}/state"))
            .ok()
            .flatten()
            .as_deref()
            == Some("5")
    });
    let why = xs.read_string(&format!("{be}/error")).unwrap();
    assert!(why.contains("request-rx-copy"), "{why}");
    // A guest may not forge another guest's or the backend's nodes.
    assert!(xs.write(&format!("{be}/state"), "4").is_err());
    assert!(xs.write("/local/domain/2/device/vif/0/state", "4").is_err());
}

#[test]
fn bad_input_gets_precise_errors() {
    let inst = Instance::new();
    let out = Command::new(EXE)
        .args(["up", "--uplink", "bogus:x", "--dir"])
        .arg(&inst.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("--uplink"), "{}", text(&out));
    let out = Command::new(EXE)
        .args(["list", "--dir"])
        .arg(&inst.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("xennet up"), "{}", text(&out));
    let mut inst = inst;
    inst.up(&[]);
    let out = inst.guest(4, &["--vif", "mac=00:16:3e:zz:00:01", "--ping", "1.2.3.4"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("mac"), "{}", text(&out));
    let out = inst.guest(4, &["--vif", "script=vif-route", "--ping", "1.2.3.4"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("does not match"), "{}", text(&out));
    let e = control::request(&inst.dir, &["create", "0"]).unwrap_err();
    assert!(e.to_string().contains("driver domain"), "{e}");
    let _ = Path::new(EXE);
}

#[test]
fn a_tap_stack_guest_runs_the_kernels_tcp_ip_through_the_split_driver() {
    if let Some(why) = tap_skip_reason() {
        eprintln!("SKIP a_tap_stack_guest...: {why}");
        return;
    }
    let mut inst = Instance::new();
    inst.up(&[]);
    inst.spawn(&["guest", "--domid", "2"]);
    inst.wait_connected(2);
    let ns = NetNs::new();
    // Guest 1: the kernel's stack inside our namespace, behind a TAP behind netfront.
    let child = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, EXE, "guest", "--domid", "1", "--stack", "tap:xnt0", "--dir",
        ])
        .arg(&inst.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    inst.kids.push(child);
    inst.wait_connected(1);
    for cmd in [
        &[
            "ip",
            "link",
            "set",
            "dev",
            "xnt0",
            "address",
            "00:16:3e:5e:00:01",
        ][..],
        &["ip", "addr", "add", "128.153.144.205/24", "dev", "xnt0"],
        &["ip", "link", "set", "xnt0", "up"],
    ] {
        let o = ns.run(cmd);
        assert!(o.status.success(), "{cmd:?}: {}", text(&o));
    }
    let o = ns.run(&["ping", "-c", "3", "-W", "5", "128.153.144.206"]);
    assert!(
        o.status.success(),
        "kernel -> smoltcp guest ping: {}",
        text(&o)
    );
    let o = ns.run(&["ping", "-c", "2", "-W", "5", "128.153.144.148"]);
    assert!(
        o.status.success(),
        "kernel -> remote host ping: {}",
        text(&o)
    );
    let o = ns.run(&["curl", "-s", "-m", "10", "http://128.153.144.206/"]);
    assert!(
        text(&o).contains("hello from guest domain 2 over xennet"),
        "TCP to guest 2: {}",
        text(&o)
    );
}

#[test]
fn multi_queue_vifs_negotiate_and_carry_traffic_across_processes() {
    let mut inst = Instance::new();
    inst.up(&["--max-queues", "4"]);
    inst.spawn(&["guest", "--domid", "2", "--queues", "4"]);
    inst.wait_connected(2);
    let xs = XsClient::connect(up::xenstore_dir(&inst.dir).join("socket")).unwrap();
    let fe = "/local/domain/2/device/vif/0";
    assert_eq!(
        xs.read_string(&format!("{fe}/multi-queue-num-queues"))
            .unwrap(),
        "4"
    );
    for q in 0..4 {
        assert!(xs
            .read_string(&format!("{fe}/queue-{q}/tx-ring-ref"))
            .is_ok());
        assert!(xs
            .read_string(&format!("{fe}/queue-{q}/event-channel"))
            .is_ok());
    }
    // More queues than offered are clamped by the frontend to what the backend offers.
    let out = inst.guest(
        1,
        &[
            "--queues",
            "8",
            "--ping",
            "128.153.144.206",
            "--tcp-echo",
            "128.153.144.206:7",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// The round-trip matrix of tests/drivers_inprocess.rs, with the echo backend in a
/// driver-domain process and the guest here, connected through XenStore.
#[test]
fn frames_of_every_size_round_trip_across_processes_with_and_without_sg() {
    use xennet::bench::{xennet as bx, Case};
    use xennet_netfront::xenbus::FrontOptions;
    use xennet_netfront::Features;
    for (sg, queues) in [(true, 1), (true, 4), (false, 1), (false, 4)] {
        let mut inst = bx::Instance::new("echo", &[1]).unwrap();
        inst.use_exe(EXE);
        let case = Case {
            frame_bytes: 60,
            batch: 1,
            packets: 0,
            header: 0,
        };
        let _back = inst.spawn("xennet-back-echo", None, &case, 0).unwrap();
        let opts = FrontOptions {
            queues,
            features: Features {
                sg,
                gso_tcpv4: false,
            },
            ..FrontOptions::default()
        };
        let (mut front, _link, events) = bx::connect_guest(inst.dir(), 1, &opts).unwrap();
        assert_eq!(front.num_queues(), queues);
        let mut woken = Vec::new();
        let r =
            xennet_dom0::testing::round_trip_matrix(&mut front, 8, Duration::from_secs(60), |f| {
                if !f.final_check().unwrap_or(true) {
                    woken.clear();
                    events.wait_into(Some(Duration::from_millis(5)), &mut woken);
                }
            })
            .unwrap_or_else(|e| panic!("sg={sg} queues={queues}: {e}"));
        let (echoed, refused) = if sg { (32, 0) } else { (16, 16) };
        assert_eq!(
            (r.echoed, r.refused),
            (echoed, refused),
            "sg={sg} queues={queues}"
        );
        let c = front.counters();
        assert_eq!(
            (c.tx_errors, c.tx_dropped, c.rx_errors, c.fatal_errors),
            (0, 0, 0, 0),
            "sg={sg} queues={queues}: {c:?}"
        );
        assert_eq!(c.tx_packets, echoed);
        assert_eq!(c.rx_packets, echoed);
        // The control ring crossed the process boundary too: every buffer page is
        // kept mapped by the driver domain, and with several queues the hash is set.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !front.ctrl_state().is_some_and(|s| s.done) && Instant::now() < deadline {
            front.poll_tx().unwrap();
            if !front.final_check().unwrap() {
                events.wait_into(Some(Duration::from_millis(5)), &mut woken);
            }
        }
        let st = front
            .ctrl_state()
            .expect("the echo backend offers feature-ctrl-ring");
        assert!(st.done, "{st:?}");
        assert_eq!(st.static_grants, queues * 512, "{st:?}");
        assert_eq!((st.refused, st.hash), (0, queues > 1), "{st:?}");
    }
}

/// `xennet up --config`: the topology file sets the driver domain (route mode, its own
/// address, proxy ARP, a capture of a vif not yet created) and the guest's vif, which a
/// guest started without `--vif` receives.
#[test]
fn a_topology_file_sets_up_the_driver_domain_and_its_guests() {
    let mut inst = Instance::new();
    let cap = inst.dir.join("web.pcap");
    std::fs::create_dir_all(&inst.dir).unwrap();
    let topo = inst.dir.join("topology.toml");
    std::fs::write(
        &topo,
        format!(
            r#"
[driver_domain]
mode = "route"
ip = "128.153.144.204/24"
proxy_arp = true
captures = ["vif3.0={}"]

[[guest]]
domid = 3
name = "web"
vifs = ["mac=00:16:3e:00:03:01,ip=128.153.144.210,script=vif-route"]
"#,
            cap.display()
        ),
    )
    .unwrap();
    inst.up(&["--config", topo.to_str().unwrap()]);
    let out = inst.guest(3, &["--ping", "128.153.144.148"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("128.153.144.210"), "{t}");
    assert!(replies(&t).iter().all(|&r| r > 0), "{t}");
    // A serving guest stays: `list` shows the file's name and MAC for it.
    inst.spawn(&["guest", "--domid", "3"]);
    inst.wait_connected(3);
    let list = control::request(&inst.dir, &["list"]).unwrap();
    assert!(
        list.contains("web") && list.contains("00:16:3e:00:03:01"),
        "{list}"
    );
    let info = control::request(&inst.dir, &["info"]).unwrap();
    assert!(info.contains("route"), "{info}");
    drop(inst);
    let meta = std::fs::metadata(&cap);
    assert!(meta.is_err() || meta.unwrap().len() > 24);

    // A bad file names the field; the file and the flags it replaces conflict.
    let inst = Instance::new();
    std::fs::create_dir_all(&inst.dir).unwrap();
    let bad = inst.dir.join("bad.toml");
    let up = |extra: &[&str]| {
        Command::new(EXE)
            .args(["up", "--config", bad.to_str().unwrap()])
            .args(extra)
            .arg("--dir")
            .arg(&inst.dir)
            .output()
            .unwrap()
    };
    std::fs::write(&bad, "[driver_domain]\nmode = \"switch\"\n").unwrap();
    let out = up(&[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("driver_domain.mode"), "{}", text(&out));
    std::fs::write(
        &bad,
        "[[guest]]\ndomid = 2\nvifs = [\"mac=00:16:3e:00:00:zz\"]\n",
    )
    .unwrap();
    let out = up(&[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("guest[0].vifs[0]"), "{}", text(&out));
    let out = up(&["--mode", "nat"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--mode"), "{}", text(&out));
}

/// `xennet info` (named in docs/driver-domain.md) prints the driver domain's mode,
/// uplink, guest count and xenstored.
#[test]
fn xennet_info_describes_the_running_driver_domain() {
    let mut inst = Instance::new();
    inst.up(&["--mode", "route"]);
    let out = Command::new(EXE)
        .args(["info", "--dir"])
        .arg(&inst.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("mode=route") && t.contains("uplink=sim"), "{t}");
    assert!(t.contains("guests=0"), "{t}");
}

/// Domain ids: one range (1 up to Xen's DOMID_FIRST_RESERVED) and one message, for
/// `guest`, `destroy`, the control socket and the topology file; `brctl` says how to
/// use it instead of listing the control requests.
#[test]
fn domain_ids_share_one_range_and_brctl_says_how_to_use_it() {
    let mut inst = Instance::new();
    inst.up(&[]);
    let run = |args: &[&str]| {
        Command::new(EXE)
            .args(args)
            .arg("--dir")
            .arg(&inst.dir)
            .output()
            .unwrap()
    };
    let out = run(&["destroy", "0"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("domain 0 is the driver domain"),
        "{}",
        text(&out)
    );
    let out = run(&["destroy", "32752"]);
    assert!(
        text(&out).contains("reserved: guests are 1..=32751"),
        "{}",
        text(&out)
    );
    let e = control::request(&inst.dir, &["create", "40000"]).unwrap_err();
    assert!(
        e.to_string().contains("reserved: guests are 1..=32751"),
        "{e}"
    );
    let out = run(&["guest", "--domid", "32752"]);
    assert!(!out.status.success());
    let out = run(&["brctl", "showmacs"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("usage: brctl show | brctl showmacs BRIDGE"),
        "{t}"
    );
    assert!(!t.contains("create, destroy"), "{t}");
}

/// A TAP the guest cannot open is reported as the guest's own set-up error, naming
/// the option, not as something the driver domain said.
#[test]
fn a_tap_that_cannot_be_opened_is_the_guests_own_error() {
    let inst = Instance::new();
    let out = Command::new(EXE)
        .args(["guest", "--domid", "9", "--stack", "tap:lo", "--dir"])
        .arg(&inst.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("--stack tap:lo"), "{t}");
    assert!(!t.contains("driver domain reply"), "{t}");
}
