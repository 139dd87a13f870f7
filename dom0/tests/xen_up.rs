//! `xennet up --platform xenlinux`'s backend loop ([`XenBackend`]) without Xen: the
//! project's own xenstored in a temporary directory plays the host's, the nodes
//! `xl` would write are written by hand (as libxl writes them: `VifNodes`), and the
//! process platform (`shm` domains in this process) stands in for gntdev and evtchn,
//! which the loop reaches only through `DriverPlatform`. Real netfronts (this
//! project's, on the process platform) do the frontend half of the handshake.
//!
//! What only real Xen checks: the xenlinux platform itself (gntdev maps and copies,
//! evtchn), the host's xenstored, libxl's timing, and Linux's netfront.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xennet_dom0::build::driver_domain;
use xennet_dom0::dataplane::Plane;
use xennet_dom0::nodes::VifNodes;
use xennet_dom0::side::{domains, Side};
use xennet_dom0::up::xen::{vif_port_spec, VifEvent, XenBackend, BACKEND_ROOT};
use xennet_netback::up::Device;
use xennet_netback::xenbus::BackendDevice;
use xennet_netfront::xenbus::{connect, FrontOptions};
use xennet_ring::DomId;
use xennet_switch::config::UplinkSpec;
use xennet_switch::wire::{Ipv4Address, MacAddr};
use xennet_switch::Mode;
use xennet_xenstore::{XenbusState, Xenstored, XsClient};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("xennet-xenup-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const MAC_A: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01];
const MAC_B: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x02];

fn nodes(fe: u16, mac: &str, vifname: Option<&str>, ip: Option<&str>) -> VifNodes {
    VifNodes {
        frontend_domid: fe,
        backend_domid: 0,
        devid: 0,
        mac: mac.into(),
        bridge: Some("xenbr0".into()),
        ip: ip.map(str::to_string),
        script: "vif-noop".into(),
        rate: None,
        vifname: vifname.map(str::to_string),
    }
}

/// What libxl writes for a vif (the domain's directory first, as it introduces it).
fn toolstack_add(xs: &XsClient, n: &VifNodes) {
    xs.write(
        &format!("/local/domain/{}/domid", n.frontend_domid),
        n.frontend_domid.to_string(),
    )
    .unwrap();
    for w in n.writes() {
        xs.write(&w.path, &w.value).unwrap();
        if let Some(p) = w.perms {
            xs.set_perms(&w.path, &p.to_perms()).unwrap();
        }
    }
}

fn state(xs: &XsClient, path: &str) -> Option<XenbusState> {
    xennet_xenstore::xenbus::read_state(xs, &format!("{path}/state")).ok()
}

struct Host {
    _dir: TempDir,
    _xsd: Xenstored,
    socket: PathBuf,
    xs: XsClient,
}

fn host(tag: &str) -> Host {
    let dir = TempDir::new(tag);
    let xsd = Xenstored::start(dir.0.join("xenstore")).unwrap();
    let socket = dir.0.join("xenstore").join("socket");
    let xs = XsClient::connect(&socket).unwrap();
    Host {
        _dir: dir,
        _xsd: xsd,
        socket,
        xs,
    }
}

fn backend(h: &Host, dom0: Side) -> XenBackend<Side> {
    let dd = driver_domain(Mode::Bridge, true, &UplinkSpec::Sim).unwrap();
    let sock = h.socket.clone();
    XenBackend::new(
        h.xs.clone(),
        Box::new(move || XsClient::connect(&sock)),
        Plane::new(dom0, dd),
        Mode::Bridge,
        4,
        Vec::new(),
    )
    .unwrap()
}

/// Turns the loop until `done` holds (bounded: 10 s).
fn turn_until(
    be: &mut XenBackend<Side>,
    events: &mut Vec<VifEvent>,
    what: &str,
    mut done: impl FnMut(&XenBackend<Side>, &[VifEvent]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(be, events) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        be.turn();
        events.extend(be.take_events());
    }
}

type FrontThread = std::thread::JoinHandle<
    Result<
        (
            xennet_netfront::xenbus::ShmFront,
            xennet_netfront::xenbus::FrontLink,
        ),
        xennet_netfront::xenbus::XenbusError,
    >,
>;

fn start_frontend(h: &Host, guest: &Side, queues: usize) -> FrontThread {
    let sock = h.socket.clone();
    let (domain, events) = (guest.domain.clone(), Arc::clone(&guest.events));
    std::thread::spawn(move || {
        let xs = XsClient::connect(&sock).unwrap();
        let opts = FrontOptions {
            queues,
            ..FrontOptions::default()
        };
        connect(&xs, &domain, &events, &opts)
    })
}

fn frame(dst: [u8; 6], src: [u8; 6], seq: u8) -> Vec<u8> {
    let mut f = vec![seq; 60];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

#[test]
fn toolstack_written_vifs_connect_carry_frames_and_close() {
    let h = host("connect");
    let (dom0, guests) = domains(2).unwrap();
    let mut be = backend(&h, dom0);
    let mut events = Vec::new();
    // Guest 1's vif has a vifname and an address; guest 2's takes the default name.
    toolstack_add(
        &h.xs,
        &nodes(1, "00:16:3e:00:00:01", Some("web0"), Some("10.0.0.5")),
    );
    toolstack_add(&h.xs, &nodes(2, "00:16:3e:00:00:02", None, None));
    let fa = start_frontend(&h, &guests[0], 2);
    let fb = start_frontend(&h, &guests[1], 1);
    let connected = |name: &str, events: &[VifEvent]| {
        events
            .iter()
            .any(|e| matches!(e, VifEvent::Connected { name: n, .. } if n == name))
    };
    turn_until(&mut be, &mut events, "both vifs to connect", |_, ev| {
        connected("web0", ev) && connected("vif2.0", ev)
    });
    let lines: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    assert!(
        lines.contains(&"web0 connected (2 queues, frontend 1)".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"vif2.0 connected (1 queue, frontend 2)".to_string()),
        "{lines:?}"
    );
    // The frontends see Connected; the switch has the ports with the nodes' MACs.
    let (mut front_a, link_a) = fa.join().unwrap().unwrap();
    let (mut front_b, _link_b) = fb.join().unwrap().unwrap();
    let fabric = be.plane.dd.fabric();
    let web0 = fabric.port(fabric.port_id("web0").unwrap()).unwrap();
    assert_eq!(web0.cfg.peer_mac, Some(MacAddr(MAC_A)));
    assert_eq!(web0.cfg.ips, vec![Ipv4Address::new(10, 0, 0, 5)]);
    let vif2 = fabric.port(fabric.port_id("vif2.0").unwrap()).unwrap();
    assert_eq!(vif2.cfg.peer_mac, Some(MacAddr(MAC_B)));
    let be_a = format!("{BACKEND_ROOT}/1/0");
    let be_b = format!("{BACKEND_ROOT}/2/0");
    assert_eq!(state(&h.xs, &be_a), Some(XenbusState::Connected));
    assert_eq!(
        h.xs.read_string(&format!("{be_a}/hotplug-status")).unwrap(),
        "connected"
    );
    assert!(matches!(be.device(1, 0), Some(Device::Connected(..))));

    // Frames flow guest 1 -> bridge -> guest 2 over the generic plane.
    let mut got = Vec::new();
    for i in 0..20u8 {
        front_a.send(&frame(MAC_B, MAC_A, i)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() <= usize::from(i) {
            assert!(Instant::now() < deadline, "frame {i} did not arrive");
            be.turn();
            front_a.poll_tx().unwrap();
            front_a.receive(64, |_, _| {}).unwrap();
            front_b.receive(64, |f, _| got.push(f.to_vec())).unwrap();
            front_a.final_check().unwrap();
            front_b.final_check().unwrap();
        }
    }
    assert_eq!(got.len(), 20);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, f)| *f == frame(MAC_B, MAC_A, i as u8)));

    // Guest 1 closes its device: the backend detaches and goes Closed.
    let closer = std::thread::spawn(move || link_a.close(front_a));
    events.clear();
    turn_until(&mut be, &mut events, "web0 to disconnect", |_, ev| {
        ev.iter()
            .any(|e| matches!(e, VifEvent::Disconnected { name, .. } if name == "web0"))
    });
    // Its line carries the vif's final counters: the 20 frames guest 1 sent.
    let line = events
        .iter()
        .find(|e| matches!(e, VifEvent::Disconnected { name, .. } if name == "web0"))
        .map(|e| e.to_string())
        .unwrap();
    assert!(
        line.starts_with("web0 disconnected (frontend 1): from the guest 20 frames"),
        "{line}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !closer.is_finished() {
        assert!(Instant::now() < deadline, "frontend close did not finish");
        be.turn();
    }
    assert_eq!(
        closer.join().unwrap(),
        0,
        "grants still held by the backend"
    );
    assert_eq!(state(&h.xs, &be_a), Some(XenbusState::Closed));
    assert!(be.plane.dd.fabric().port_id("web0").is_none());
    assert_eq!(be.plane.vifs.len(), 1);

    // The toolstack removes guest 1's directories: forgotten.
    h.xs.rm(&format!("{BACKEND_ROOT}/1")).unwrap();
    h.xs.rm("/local/domain/1").unwrap();
    turn_until(&mut be, &mut events, "device 1 to be forgotten", |be, _| {
        be.device(1, 0).is_none()
    });

    // Stopping closes the connected device: Closing, detach, Closed.
    events.clear();
    be.shutdown();
    events.extend(be.take_events());
    assert_eq!(
        events.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        vec![
            "vif2.0 disconnected (frontend 2): from the guest 0 frames (0 bytes, 0 refused), \
             to the guest 20 frames (1200 bytes, 0 dropped), 0 fatal errors"
                .to_string()
        ]
    );
    assert_eq!(state(&h.xs, &be_b), Some(XenbusState::Closed));
    assert!(be.plane.vifs.is_empty());
    // What stays (no vif ports) is reported with its counters when up stops.
    let report = be.port_report();
    assert!(!report.is_empty());
    assert_eq!(
        report.len(),
        be.plane.dd.fabric().ports().len(),
        "{report:?}"
    );
    assert!(
        report.iter().all(|l| l.contains(" frames in, ")),
        "{report:?}"
    );
    drop(front_b);
}

#[test]
fn removal_before_connecting_bad_nodes_and_a_device_left_in_initwait() {
    let h = host("remove");
    let (dom0, guests) = domains(3).unwrap();
    let mut be = backend(&h, dom0);
    let mut events = Vec::new();
    let be1 = format!("{BACKEND_ROOT}/1/0");
    // A device nobody connects: probed (InitWait, what libxl waits for).
    toolstack_add(&h.xs, &nodes(1, "00:16:3e:00:00:01", None, None));
    turn_until(&mut be, &mut events, "InitWait", |be, _| {
        state(be.xs(), &be1) == Some(XenbusState::InitWait)
    });
    assert_eq!(
        h.xs.read_string(&format!("{be1}/feature-rx-copy")).unwrap(),
        "1"
    );
    assert_eq!(
        h.xs.read_string(&format!("{be1}/multi-queue-max-queues"))
            .unwrap(),
        "4"
    );
    // libxl's removal: online 0 and Closing in one transaction, then it waits for
    // Closed.
    h.xs.transact(|tx| {
        tx.write(&format!("{be1}/online"), "0")?;
        tx.write(&format!("{be1}/state"), "5")
    })
    .unwrap();
    turn_until(&mut be, &mut events, "Closed", |be, _| {
        state(be.xs(), &be1) == Some(XenbusState::Closed)
    });
    assert!(be.device(1, 0).is_none());
    // It stays Closed (not offered again) until the toolstack removes it.
    for _ in 0..30 {
        be.turn();
    }
    assert_eq!(state(&h.xs, &be1), Some(XenbusState::Closed));
    h.xs.rm(&format!("{BACKEND_ROOT}/1")).unwrap();

    // A backend directory with an unusable mac (the frontend's is fine): the
    // connecting frontend is refused.
    toolstack_add(&h.xs, &nodes(2, "00:16:3e:00:00:02", None, None));
    h.xs.write(&format!("{BACKEND_ROOT}/2/0/mac"), "00:16:3e:zz:00:02")
        .unwrap();
    let fb = start_frontend(&h, &guests[1], 1);
    turn_until(&mut be, &mut events, "the refusal", |_, ev| {
        ev.iter().any(|e| matches!(e, VifEvent::Refused { .. }))
    });
    let line = events
        .iter()
        .find(|e| matches!(e, VifEvent::Refused { .. }))
        .unwrap()
        .to_string();
    assert!(line.starts_with("vif2.0 refused (frontend 2): "), "{line}");
    assert!(line.contains("mac"), "{line}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fb.is_finished() {
        assert!(Instant::now() < deadline, "frontend did not give up");
        be.turn();
    }
    assert!(fb.join().unwrap().is_err(), "the frontend must not connect");
    let be2 = format!("{BACKEND_ROOT}/2/0");
    assert!(h
        .xs
        .read_string(&format!("{be2}/error"))
        .unwrap()
        .contains("mac"));
    assert!(be.plane.dd.fabric().port_id("vif2.0").is_none());
    assert!(be.plane.vifs.is_empty());

    // A device an earlier backend left in InitWait (killed) is offered again.
    let n3 = nodes(3, "00:16:3e:00:00:03", None, None);
    toolstack_add(&h.xs, &n3);
    // (Written after the loop looked: pretend another backend probed it.)
    h.xs.write(&format!("{BACKEND_ROOT}/3/0/state"), "2")
        .unwrap();
    turn_until(&mut be, &mut events, "the takeover", |be, _| {
        matches!(be.device(3, 0), Some(Device::Probed(_)))
    });
    let fc = start_frontend(&h, &guests[2], 1);
    turn_until(&mut be, &mut events, "vif3.0 to connect", |_, ev| {
        ev.iter()
            .any(|e| e.to_string() == "vif3.0 connected (1 queue, frontend 3)")
    });
    let (front_c, _link_c) = fc.join().unwrap().unwrap();
    be.shutdown();
    assert_eq!(
        state(&h.xs, &format!("{BACKEND_ROOT}/3/0")),
        Some(XenbusState::Closed)
    );
    drop(front_c);
}

#[test]
fn port_names_macs_and_addresses_come_from_the_backend_directory() {
    let h = host("spec");
    let path = format!("{BACKEND_ROOT}/7/1");
    let dev = BackendDevice {
        path: path.clone(),
        frontend: "/local/domain/7/device/vif/1".into(),
        frontend_id: DomId(7),
        devid: 1,
        rate: None,
        max_queues: 1,
        ctrl_ring: false,
    };
    h.xs.write(&format!("{path}/mac"), "00:16:3e:0a:0b:0c")
        .unwrap();
    let spec = vif_port_spec(&h.xs, &dev).unwrap();
    assert_eq!(spec.name, "vif7.1");
    assert_eq!(spec.mac, MacAddr([0, 0x16, 0x3e, 10, 11, 12]));
    assert!(spec.ips.is_empty());
    h.xs.write(&format!("{path}/vifname"), "guest7").unwrap();
    h.xs.write(&format!("{path}/ip"), "10.1.2.3 10.1.2.4/24")
        .unwrap();
    let spec = vif_port_spec(&h.xs, &dev).unwrap();
    assert_eq!(spec.name, "guest7");
    assert_eq!(
        spec.ips,
        vec![Ipv4Address::new(10, 1, 2, 3), Ipv4Address::new(10, 1, 2, 4)]
    );
    for (node, value, why) in [
        ("vifname", "has space", "interface name"),
        ("vifname", "a-name-longer-than-15", "interface name"),
        ("vifname", "eth0:1", "interface name"),
        ("ip", "10.1.2", "IPv4"),
        ("mac", "00:16:3e:0a:0b", "MAC"),
    ] {
        let old = h.xs.read_string(&format!("{path}/{node}")).unwrap();
        h.xs.write(&format!("{path}/{node}"), value).unwrap();
        let err = vif_port_spec(&h.xs, &dev).unwrap_err();
        assert!(
            err.contains(why) && err.contains(node),
            "{node}={value}: {err}"
        );
        h.xs.write(&format!("{path}/{node}"), old).unwrap();
    }
    h.xs.rm(&format!("{path}/mac")).unwrap();
    assert!(vif_port_spec(&h.xs, &dev).unwrap_err().contains("missing"));
}

/// Linux netfront with one queue writes `multi-queue-num-queues = 1` and keeps its ring
/// keys (and split event channels) at the top level, as Linux netback reads them
/// (seen on real Xen: the backend looked for `queue-0/...` and refused it).
#[test]
fn a_single_queue_frontend_that_writes_its_queue_count_is_read_at_the_top_level() {
    let h = host("one-queue");
    toolstack_add(&h.xs, &nodes(5, "00:16:3e:00:00:05", None, None));
    let dev = xennet_netback::xenbus::probe(&h.xs, &format!("{BACKEND_ROOT}/5/0"), 4).unwrap();
    let fe = "/local/domain/5/device/vif/0";
    for (k, v) in [
        ("multi-queue-num-queues", "1"),
        ("tx-ring-ref", "520"),
        ("rx-ring-ref", "521"),
        ("event-channel-tx", "8"),
        ("event-channel-rx", "9"),
        ("request-rx-copy", "1"),
        ("feature-rx-notify", "1"),
        ("feature-sg", "1"),
    ] {
        h.xs.write(&format!("{fe}/{k}"), v).unwrap();
    }
    let p = dev.read_frontend(&h.xs).unwrap();
    assert_eq!(p.queues.len(), 1);
    let q = &p.queues[0];
    assert_eq!((q.tx_ring_ref.0, q.rx_ring_ref.0), (520, 521));
    assert_eq!((q.tx_port.0, q.rx_port.0), (8, 9));
}
