//! A guest that truncates its memory file under the driver domain (docs/reliability.md,
//! "What the shm platform can and cannot isolate"): its vif ends with a counted fatal
//! error and the driver domain keeps serving another guest, instead of dying of
//! SIGBUS. The scenario runs in this binary re-executed, so that a process killed by
//! the signal fails the test with its exit status; bounded in time, the runtime
//! directory is removed.

use std::fs::OpenOptions;
use std::process::Command;
use std::time::{Duration, Instant};

use xennet_dom0::side::{connect_pair, echo_once, Front, Side};
use xennet_netfront::Features;
use xennet_platform::shm::{Domain, PeerAccess, PeerDomain, RuntimeDir};
use xennet_ring::DomId;

const SCENARIO_ENV: &str = "XENNET_PEER_TRUNCATION_DIR";

fn mac(d: u8) -> [u8; 6] {
    [0x00, 0x16, 0x3e, 0x00, d, 0x01]
}

fn frame(from: u8) -> Vec<u8> {
    let mut f = vec![from; 60];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac(from));
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// Frames `front` receives within a second of polling `back` (echoing).
fn echoed(front: &mut Front, back: &mut xennet_dom0::side::Back) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut scratch = Vec::new();
    let end = Instant::now() + Duration::from_secs(1);
    while got.is_empty() && Instant::now() < end {
        echo_once(back, &mut scratch).unwrap();
        front.poll_tx().unwrap();
        front.receive(64, |f, _| got.push(f.to_vec())).unwrap();
    }
    got
}

/// The scenario (only when re-executed with [`SCENARIO_ENV`] set): a driver domain
/// and two guests with files in a runtime directory; the driver domain maps the
/// guests' memory as a driver domain process does (`PeerDomain::open`), the guests
/// reach its event page through the directory.
#[test]
fn scenario() {
    let Ok(dir) = std::env::var(SCENARIO_ENV) else {
        return;
    };
    let rt = RuntimeDir::new(&dir).unwrap();
    let side = |d: u16, pages| {
        let dom = Domain::create(&rt, DomId(d), pages, 8192).unwrap();
        Side::from_domain(dom, Some(rt.clone()))
    };
    let dom0 = side(0, 8192);
    let (g1, g2) = (side(1, 4096), side(2, 4096));
    for g in [1, 2] {
        let peer = PeerDomain::open(&rt, DomId(g), PeerAccess::Grants).unwrap();
        dom0.ops.add_peer(peer);
    }
    let features = Features {
        sg: true,
        gso_tcpv4: false,
    };
    let (mut f1, mut b1, _) = connect_pair(&dom0, &g1, 0, mac(1), 1, features, None).unwrap();
    let (mut f2, mut b2, _) = connect_pair(&dom0, &g2, 0, mac(2), 1, features, None).unwrap();
    for (f, b, d) in [(&mut f1, &mut b1, 1), (&mut f2, &mut b2, 2)] {
        f.send(&frame(d)).unwrap();
        assert_eq!(echoed(f, b), [frame(d)], "guest {d} before the truncation");
    }

    // Guest 1 queues a frame and cuts its memory file to nothing. (Its pages are gone
    // for this process too: guest 1's own objects are not touched again.)
    f1.send(&frame(1)).unwrap();
    OpenOptions::new()
        .write(true)
        .open(rt.domain_dir(DomId(1)).join("memory"))
        .unwrap()
        .set_len(0)
        .unwrap();
    let mut scratch = Vec::new();
    let err = echo_once(&mut b1, &mut scratch).expect_err("guest 1's vif goes on");
    assert_eq!(b1.broken(), Some(err));
    assert_eq!(b1.counters().fatal_errors, 1);
    assert!(dom0.ops.peer(DomId(1)).unwrap().faulted());
    // Guest 2 is still served.
    for _ in 0..3 {
        f2.send(&frame(2)).unwrap();
        assert_eq!(echoed(&mut f2, &mut b2), [frame(2)], "guest 2 after");
    }
    println!("SCENARIO-OK vif1 ended: {err}");
    std::mem::forget((f1, g1));
}

#[test]
fn a_guest_truncating_its_memory_ends_its_vif_and_the_driver_domain_serves_the_others() {
    if std::env::var(SCENARIO_ENV).is_ok() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("xennet-trunc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "scenario", "--nocapture", "--test-threads=1"])
        .env(SCENARIO_ENV, &dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded in time: the scenario is killed after a minute.
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::io::read_to_string(child.stdout.take().unwrap()).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "the scenario's process: {status}\n{out}");
    assert!(out.contains("SCENARIO-OK vif1 ended"), "{out}");
}
