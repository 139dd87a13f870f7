//! The toolstack against a running `xennet up`, across processes: what `stats`,
//! `list`, `brctl`, `destroy`, `network-attach`/`network-detach` and the control
//! socket's permissions show and do. Bounded in time; each test uses its own
//! instance directory and removes it.

mod support;
// The xenstore tests' ring page served from a guest's socket: the ring client
// exactly as a unikernel runs it.
#[path = "../xenstore/tests/common/ring_relay.rs"]
mod ring_relay;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ring_relay::RingRelay;
use support::*;
use xennet_dom0::{control, up};
use xennet_netfront::xenbus::{self as fe, FrontLink, FrontOptions, Health, ShmFront};
use xennet_platform::shm::{Domain, EventChannels, RuntimeDir};
use xennet_ring::DomId;
use xennet_xenstore::{domain_socket, XsClient};

/// A guest played by this test process: its domain's files in the instance
/// directory (so this process owns domain `domid`), created through the control
/// socket and connected through XenStore.
struct HandGuest {
    domain: Domain,
    front: ShmFront,
    link: FrontLink,
    _events: Arc<EventChannels>,
}

fn hand_guest(dir: &Path, domid: u16) -> HandGuest {
    let rt = RuntimeDir::new(dir).unwrap();
    let domain = Domain::create(&rt, DomId(domid), 1024, 1024).unwrap();
    let events = EventChannels::new(&domain, Some(rt));
    control::request(dir, &["create", &domid.to_string()]).unwrap();
    let xs = XsClient::connect(domain_socket(&up::xenstore_dir(dir), domid)).unwrap();
    let (front, link) = fe::connect(&xs, &domain, &events, &FrontOptions::default()).unwrap();
    HandGuest {
        domain,
        front,
        link,
        _events: events,
    }
}

/// Domain 0's view of a node.
fn read(dir: &Path, path: &str) -> Option<String> {
    XsClient::connect(up::xenstore_dir(dir).join("socket"))
        .ok()?
        .try_read_string(path)
        .ok()
        .flatten()
}

/// `xennet stats --json`'s entry for one vif (asked by another process: this one
/// may own a guest's domain, and a guest may ask only for its own devices).
fn vif_stats(dir: &Path, vif: &str) -> Option<serde_json::Value> {
    let out = xennet(dir, &["stats", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["vifs"]
        .as_array()?
        .iter()
        .find(|e| e["vif"] == vif)
        .cloned()
}

/// Publishes a tx `req_prod` far past the ring (XSA-39 class) by writing the shared
/// ring page through the domain's memory file (docs/shm-layout.md): the backend
/// must disconnect the vif.
fn break_the_tx_ring(dir: &Path, g: &mut HandGuest) {
    let domid = g.domain.domid().0;
    let files = dir.join("domain").join(domid.to_string());
    let gref = g.front.queue_refs()[0].tx_ring_ref.0;
    let mut gnttab = std::fs::File::open(files.join("gnttab")).unwrap();
    gnttab
        .seek(SeekFrom::Start(u64::from(gref) * 8 + 4))
        .unwrap();
    let mut frame = [0u8; 4];
    gnttab.read_exact(&mut frame).unwrap();
    let at = u64::from(u32::from_le_bytes(frame)) * 4096;
    let mut memory = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(files.join("memory"))
        .unwrap();
    memory.seek(SeekFrom::Start(at)).unwrap();
    let mut req_prod = [0u8; 4];
    memory.read_exact(&mut req_prod).unwrap();
    let bogus = u32::from_le_bytes(req_prod).wrapping_add(1000);
    memory.seek(SeekFrom::Start(at)).unwrap();
    memory.write_all(&bogus.to_le_bytes()).unwrap();
    g.front.kick_all();
}

/// Issue 17 item 9: a fatal protocol error is observable (the departed vif's final
/// counters and reason in `stats`, the specific reason in the backend's `error`
/// node), and the backend that started the disconnect reaches Closed once the
/// frontend has closed.
#[test]
fn a_fatal_error_stays_readable_and_the_backend_reaches_closed() {
    let mut inst = Instance::new();
    inst.up(&[]);
    let mut g = hand_guest(&inst.dir, 7);
    let be = "/local/domain/0/backend/vif/7/0";
    assert_eq!(
        read(&inst.dir, &format!("{be}/state")).as_deref(),
        Some("4")
    );
    break_the_tx_ring(&inst.dir, &mut g);
    wait_for("the backend to close the device", || {
        read(&inst.dir, &format!("{be}/state")).as_deref() == Some("5")
    });
    let error = read(&inst.dir, &format!("{be}/error")).unwrap_or_default();
    assert!(
        error.contains("frontend broke the ring"),
        "error node: {error}"
    );
    let s = vif_stats(&inst.dir, "vif7.0").expect("the departed vif is in stats --json");
    assert_eq!(s["state"], "departed", "{s}");
    assert_eq!(s["counters"]["fatal_errors"], 1, "{s}");
    assert!(
        s["fault"]
            .as_str()
            .is_some_and(|f| f.contains("frontend broke the ring")),
        "{s}"
    );
    let table = text(&xennet(&inst.dir, &["stats"]));
    assert!(
        table.contains("vif7.0") && table.contains("frontend broke the ring"),
        "{table}"
    );
    // The frontend answers the backend's Closing; the backend goes Closed.
    let HandGuest { front, link, .. } = g;
    assert_eq!(link.close(front), 0, "grants still held by the backend");
    wait_for("the backend to reach Closed", || {
        read(&inst.dir, &format!("{be}/state")).as_deref() == Some("6")
    });
}

/// Runs `xennet ARGS --dir DIR` to completion.
fn xennet(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(EXE)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap()
}

/// Issue 17 item 4: `destroy` ends the guest's devices for good, as `xl destroy`
/// does: the guest sees its backend go and its domain destroyed, says so and exits;
/// it does not create itself again.
#[test]
fn destroy_ends_a_guests_devices_for_good() {
    let mut inst = Instance::new();
    inst.up(&[]);
    let g = inst.spawn_logged(&["guest", "--domid", "2"], "guest2.log");
    inst.wait_connected(2);
    let out = xennet(&inst.dir, &["destroy", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("domain 2 destroyed"), "{}", text(&out));
    wait_for("guest 2 to exit", || {
        inst.kids[g].try_wait().unwrap().is_some()
    });
    let log = inst.log("guest2.log");
    assert!(
        log.contains("guest 2: domain destroyed by the toolstack; exiting"),
        "{log}"
    );
    let list = control::request(&inst.dir, &["list"]).unwrap();
    assert!(!list.contains("guest2"), "{list}");
    assert_eq!(
        read(&inst.dir, "/local/domain/0/backend/vif/2/0/state"),
        None
    );
}

/// Issue 17 item 26: `network-detach` closes a running guest's vif in order and keeps
/// the domain; `network-attach` gives it a vif again, which the waiting guest connects.
#[test]
fn network_detach_and_attach_move_a_running_guests_vif() {
    let mut inst = Instance::new();
    inst.up(&[]);
    let g = inst.spawn_logged(&["guest", "--domid", "2"], "guest2.log");
    inst.wait_connected(2);
    let out = xennet(&inst.dir, &["network-detach", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("vif2.0 detached from domain 2"),
        "{}",
        text(&out)
    );
    assert_eq!(
        read(&inst.dir, "/local/domain/0/backend/vif/2/0/state"),
        None
    );
    assert_eq!(read(&inst.dir, "/local/domain/2/device/vif/0/state"), None);
    let list = control::request(&inst.dir, &["list"]).unwrap();
    assert!(list.contains("guest2"), "{list}");
    assert!(inst.kids[g].try_wait().unwrap().is_none(), "guest 2 exited");
    // The vif is gone, so it cannot be detached again; a domain that does not
    // exist gets no vif.
    let out = xennet(&inst.dir, &["network-detach", "2"]);
    assert!(text(&out).contains("domain 2 has no vif"), "{}", text(&out));
    let out = xennet(&inst.dir, &["network-attach", "5"]);
    assert!(text(&out).contains("no domain 5"), "{}", text(&out));

    let out = xennet(
        &inst.dir,
        &[
            "network-attach",
            "2",
            "mac=00:16:3e:00:02:22",
            "bridge=xenbr0",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("domain 2 vif attached: vif2.0 mac=00:16:3e:00:02:22"),
        "{}",
        text(&out)
    );
    // Device 0 is taken now; without devid= a vif gets the lowest free one, and
    // the domain's default address stays with the vif that has it.
    let out = xennet(&inst.dir, &["network-attach", "2", "devid=0"]);
    assert!(text(&out).contains("already has vif2.0"), "{}", text(&out));
    let out = xennet(&inst.dir, &["network-attach", "2"]);
    assert!(
        text(&out).contains("domain 2 vif attached: vif2.1 mac=00:16:3e:5f:00:02 ip=-"),
        "{}",
        text(&out)
    );
    let out = xennet(&inst.dir, &["network-detach", "2", "1"]);
    assert!(
        text(&out).contains("vif2.1 detached from domain 2"),
        "{}",
        text(&out)
    );
    inst.wait_connected(2);
    let out = inst.guest(1, &["--ping", "128.153.144.206"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("3 packets transmitted, 3 received"),
        "{}",
        text(&out)
    );
    let log = inst.log("guest2.log");
    assert!(log.contains("guest 2: vif attached again"), "{log}");
}

/// Issue 17 item 25: domain 0's toolstack may ask anything; a guest's process (one
/// that owns a domain's files) may ask only for its own devices.
#[test]
fn a_guest_may_ask_for_its_own_devices_only() {
    let mut inst = Instance::new();
    inst.up(&[]);
    inst.spawn(&["guest", "--domid", "2"]);
    inst.wait_connected(2);
    // This process becomes guest 5: it owns domain 5's files.
    let rt = RuntimeDir::new(&inst.dir).unwrap();
    let domain = Domain::create(&rt, DomId(5), 64, 64).unwrap();
    let refused = |words: &[&str]| match control::request(&inst.dir, words) {
        Err(control::ControlError::Refused(m)) => m,
        other => panic!("{words:?} from guest 5 was not refused: {other:?}"),
    };
    for words in [
        &["create", "6"][..],
        &["destroy", "2"],
        &["network-detach", "2"],
        &["network-attach", "2"],
        &["down"],
        &["list"],
    ] {
        let m = refused(words);
        assert!(
            m.contains("domain 5 may ask only for its own devices"),
            "{words:?}: {m}"
        );
    }
    let out = control::request(&inst.dir, &["create", "5"]).unwrap();
    assert!(out.contains("domain 5 created"), "{out}");
    // The toolstack (another process owning no domain) still may do anything.
    let out = xennet(&inst.dir, &["list"]);
    assert!(
        text(&out).contains("guest2") && text(&out).contains("guest5"),
        "{}",
        text(&out)
    );
    let out = xennet(&inst.dir, &["destroy", "5"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(control::request(&inst.dir, &["destroy", "2"]).is_err());
    drop(domain);
}

/// A frame from `src` to `dst` with an experimental EtherType.
fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// An ARP request from `mac` at `ip` for `target`, padded to the minimum frame.
fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = frame([0xff; 6], mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    // Ethernet, IPv4, 6-byte and 4-byte addresses, a request.
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip);
    f[38..42].copy_from_slice(&target);
    f
}

/// Issue 20 item 2: netfront's handshake is one piece of code over the `XenStore`
/// trait. Over the `no_std` ring client a unikernel uses (a ring page served from
/// the guest's socket), it reaches Connected on both ends, an ARP request for the
/// driver domain's address gets its answer through the rings, and the orderly
/// close takes both ends to Closed with every grant back.
#[test]
fn the_handshake_over_the_ring_client_connects_and_carries_frames() {
    let mut inst = Instance::new();
    inst.up(&[]);
    let rt = RuntimeDir::new(&inst.dir).unwrap();
    let domain = Domain::create(&rt, DomId(7), 1024, 1024).unwrap();
    let events = EventChannels::new(&domain, Some(rt));
    control::request(&inst.dir, &["create", "7"]).unwrap();
    let sock = UnixStream::connect(domain_socket(&up::xenstore_dir(&inst.dir), 7)).unwrap();
    // Declared before the client: the page outlives it, also when the test fails.
    let mut relay = RingRelay::start(sock);
    let ring = relay.client(Duration::from_secs(10));
    let opts = FrontOptions::default();
    let (mut front, mut link) = fe::connect_with(ring, domain.clone(), DomId(7), &events, &opts)
        .unwrap_or_else(|e| panic!("handshake over the ring client: {e}"));
    assert!(front.is_connected());
    let (be, fe_dir) = (
        "/local/domain/0/backend/vif/7/0",
        "/local/domain/7/device/vif/0",
    );
    assert_eq!(
        read(&inst.dir, &format!("{be}/state")).as_deref(),
        Some("4")
    );
    assert_eq!(
        read(&inst.dir, &format!("{fe_dir}/state")).as_deref(),
        Some("4")
    );
    assert_eq!(link.check(), Health::Up);

    // Guest 7's default address in bridge mode asks for the driver domain's.
    let mac = front.mac();
    let dd = [128, 153, 144, 204];
    front
        .send(&arp_request(mac, [128, 153, 144, 211], dd))
        .unwrap();
    let mut reply = None;
    wait_for("the driver domain's ARP reply", || {
        front
            .receive(8, |f, _| {
                let is_reply =
                    f.get(12..14) == Some(&[0x08, 0x06][..]) && f.get(20..22) == Some(&[0, 2][..]);
                if is_reply {
                    reply = Some(f.to_vec());
                }
            })
            .unwrap();
        front.poll_tx().unwrap();
        reply.is_some()
    });
    let reply = reply.unwrap();
    assert_eq!(&reply[..6], &mac[..], "addressed to the guest");
    assert_eq!(&reply[28..32], &dd[..], "the driver domain's address");
    assert_eq!(&reply[38..42], &[128, 153, 144, 211][..]);
    assert_eq!(link.check(), Health::Up, "nothing changed in XenStore");

    assert_eq!(link.close(front), 0, "grants still held by the backend");
    assert_eq!(
        read(&inst.dir, &format!("{fe_dir}/state")).as_deref(),
        Some("6")
    );
    wait_for("the backend to reach Closed", || {
        read(&inst.dir, &format!("{be}/state")).as_deref() == Some("6")
    });
    drop(relay);
}

/// `xennet ARGS --json` from another process, parsed.
fn json_view(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = xennet(dir, &a);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Issue 17 item 13: `stats` names a vif's directions as domain 0's Linux does (rx is
/// what the guest sent), shows the switch's drops by reason per port, and `list`,
/// `stats` and `brctl` have a JSON form.
#[test]
fn stats_name_a_vifs_directions_as_linux_does_and_every_view_has_json() {
    let mut inst = Instance::new();
    inst.up(&[]);
    let mut g = hand_guest(&inst.dir, 7);
    let mac = g.front.mac();
    // Three frames to the 802.1D link-local group (never forwarded: `filtered`),
    // two broadcasts (flooded).
    for dst in [[0x01, 0x80, 0xc2, 0, 0, 0]; 3]
        .into_iter()
        .chain([[0xff; 6]; 2])
    {
        g.front.send(&frame(dst, mac)).unwrap();
    }
    wait_for("the five frames to reach the switch", || {
        vif_stats(&inst.dir, "vif7.0").is_some_and(|s| s["rx"]["packets"] == 5)
    });
    let s = vif_stats(&inst.dir, "vif7.0").unwrap();
    assert_eq!(s["state"], "connected", "{s}");
    assert_eq!(s["rx"]["bytes"], 300, "{s}");
    // netback's own counters keep the guest's side: its tx is the vif's rx.
    assert_eq!(s["counters"]["tx_packets"], 5, "{s}");
    let stats = json_view(&inst.dir, &["stats"]);
    let port = stats["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == "vif7.0")
        .cloned()
        .unwrap_or_else(|| panic!("no port vif7.0 in {stats}"));
    assert_eq!(port["kind"], "vif");
    assert_eq!(port["rx_packets"], 5, "{port}");
    assert_eq!(port["drops"]["filtered"], 3, "{port}");
    assert_eq!(port["dropped"], 3, "{port}");
    let table = text(&xennet(&inst.dir, &["stats"]));
    let vif_line = table
        .lines()
        .find(|l| l.starts_with("vif7.0 ") && l.contains("connected"))
        .unwrap_or_else(|| panic!("{table}"));
    let cols: Vec<&str> = vif_line.split_whitespace().collect();
    assert_eq!(
        &cols[..5],
        ["vif7.0", "connected", "5", "300", "0"],
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("vif7.0 ") && l.ends_with("filtered=3")),
        "{table}"
    );

    let list = json_view(&inst.dir, &["list"]);
    let g7 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domid"] == 7)
        .cloned()
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(g7["vif"], "vif7.0", "{g7}");
    assert_eq!(g7["backend_state"], "Connected", "{g7}");
    assert_eq!(g7["frontend_state"], "Connected", "{g7}");
    assert_eq!(list[0]["name"], "Domain-0", "{list}");
    let show = json_view(&inst.dir, &["brctl", "show"]);
    assert_eq!(show[0]["bridge"], "xenbr0", "{show}");
    assert!(
        show[0]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "vif7.0"),
        "{show}"
    );
    let macs = json_view(&inst.dir, &["brctl", "showmacs", "xenbr0"]);
    let mac_s = format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    );
    assert!(
        macs.as_array()
            .unwrap()
            .iter()
            .any(|m| m["mac"] == mac_s.as_str() && m["is_local"] == false),
        "{macs}"
    );
}

/// Issue 17 item 27 (the default guest address per mode, as docs/driver-domain.md
/// states it): bridge and route give 128.153.144.(204 + domid) to domains 1..=50 and
/// refuse a larger id without `ip=` (it overflowed the octet and panicked the driver
/// domain before); NAT follows vif-nat's 10.<domid / 256>.<domid % 256>.1.
#[test]
fn default_addresses_follow_each_modes_rule_and_an_id_without_one_is_refused() {
    let mut inst = Instance::new();
    inst.up(&[]);
    let out = control::request(&inst.dir, &["create", "50"]).unwrap();
    assert!(out.contains("ip=128.153.144.254/24"), "{out}");
    let e = control::request(&inst.dir, &["create", "60"]).unwrap_err();
    assert!(e.to_string().contains("no default address"), "{e}");
    let out = control::request(&inst.dir, &["create", "60", "ip=128.153.144.100"]).unwrap();
    assert!(out.contains("ip=128.153.144.100/24"), "{out}");
    assert!(
        control::request(&inst.dir, &["info"]).is_ok(),
        "the driver domain died"
    );
    let mut nat = Instance::new();
    nat.up(&["--mode", "nat"]);
    let out = control::request(&nat.dir, &["create", "300"]).unwrap();
    assert!(out.contains("ip=10.1.44.1/24 gw=10.1.44.128"), "{out}");
}
