//! The `no_std` ring client (`xennet_ring::xenstore::XsRingClient`) against the
//! project's daemon, through a ring page in shared memory served by a small relay
//! (`common/ring_relay.rs`) over a guest's socket: the daemon applies that guest's
//! permissions, as xenstored does for a domU's ring. Hostile rings are tested
//! beside the client, in `ring/src/xenstore/tests.rs`.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use xennet_ring::xenstore::{wire, TxId, XenStore, XsRingError};
use xennet_xenstore::{Errno, Xenstored, XsClient, XsError};

mod common;
use common::ring_relay::{RingClient, RingRelay};
use common::*;

const GUEST: u16 = 5;

/// A daemon, domain 0's client, and guest 5's ring client.
struct Fixture {
    _dir: TempDir,
    _xs: Xenstored,
    dom0: XsClient,
    relay: RingRelay,
}

fn fixture() -> (Fixture, RingClient) {
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    let dom0 = XsClient::connect(xs.socket_path()).unwrap();
    let sock = xs.introduce(GUEST).unwrap();
    let mut relay = RingRelay::start(UnixStream::connect(sock).unwrap());
    let ring = relay.client(WAIT);
    (
        Fixture {
            _dir: dir,
            _xs: xs,
            dom0,
            relay,
        },
        ring,
    )
}

fn read_string(xs: &mut RingClient, path: &str) -> Result<String, XsRingError> {
    let mut out = [0u8; 4096];
    let n = xs.read(TxId::NONE, path, &mut out)?;
    Ok(String::from_utf8(out[..n].to_vec()).unwrap())
}

fn names(xs: &mut RingClient, path: &str) -> Vec<String> {
    let mut out = [0u8; 4096];
    let n = xs.directory(TxId::NONE, path, &mut out).unwrap();
    wire::strings(&out[..n])
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

#[test]
fn read_write_directory_rm_round_trip_through_the_ring_as_a_guest() {
    let (f, mut xs) = fixture();
    xs.write(TxId::NONE, "device/vif/0/state", b"1").unwrap();
    xs.write(TxId::NONE, "device/vif/0/mac", b"00:16:3e:00:00:05")
        .unwrap();
    assert_eq!(read_string(&mut xs, "device/vif/0/state").unwrap(), "1");
    assert_eq!(
        f.dom0
            .read_string("/local/domain/5/device/vif/0/mac")
            .unwrap(),
        "00:16:3e:00:00:05",
        "relative paths are the guest's home, as over a socket"
    );
    assert_eq!(names(&mut xs, "device/vif/0"), ["mac", "state"]);
    xs.rm(TxId::NONE, "device/vif/0/mac").unwrap();
    assert_eq!(
        read_string(&mut xs, "device/vif/0/mac"),
        Err(XsRingError::Errno(Errno::ENOENT))
    );
    // A guest's permissions: nothing outside its home.
    assert_eq!(
        xs.write(TxId::NONE, "/tool/x", b"1"),
        Err(XsRingError::Errno(Errno::EACCES))
    );
    f.dom0.write("/local/domain/0/secret", "x").unwrap();
    assert_eq!(
        read_string(&mut xs, "/local/domain/0/secret"),
        Err(XsRingError::Errno(Errno::EACCES))
    );
    assert_eq!(
        read_string(&mut xs, "bad//path"),
        Err(XsRingError::Errno(Errno::EINVAL))
    );
    assert!(!xs.is_broken());
}

#[test]
fn values_up_to_the_daemon_limit_pass_both_rings_many_times_over() {
    let (_f, mut xs) = fixture();
    // 2048 bytes (the value limit) with a path: each request and reply is twice
    // the 1024-byte ring, so every one wraps and waits for the other end.
    for i in 0..20u8 {
        let value: Vec<u8> = (0..2048).map(|j| (j as u8).wrapping_add(i)).collect();
        xs.write(TxId::NONE, "big", &value).unwrap();
        let mut out = [0u8; 2048];
        assert_eq!(xs.read(TxId::NONE, "big", &mut out), Ok(2048));
        assert_eq!(&out[..], &value[..]);
    }
    let mut small = [0u8; 16];
    assert_eq!(
        xs.read(TxId::NONE, "big", &mut small),
        Err(XsRingError::BufferTooSmall { needed: 2048 })
    );
    assert_eq!(
        xs.write(TxId::NONE, "big", &[b'x'; 2049]),
        Err(XsRingError::Errno(Errno::ENOSPC)),
        "the daemon's quota applies as to any guest"
    );
    let mut out = [0u8; 2048];
    assert_eq!(xs.read(TxId::NONE, "big", &mut out), Ok(2048), "kept");
}

#[test]
fn watches_fire_at_once_and_on_change_and_events_wait_between_replies() {
    let (f, mut xs) = fixture();
    let mut ev = [0u8; 256];
    xs.watch("device", "dev").unwrap();
    let e = xs.wait_watch_event(WAIT, &mut ev).unwrap().unwrap();
    assert_eq!((e.path, e.token), ("device", "dev"), "the initial event");
    // Changes by domain 0 and by the guest itself; replies come in between.
    f.dom0
        .write("/local/domain/5/device/vif/0/backend-id", "0")
        .unwrap();
    xs.write(TxId::NONE, "device/vif/0/state", b"1").unwrap();
    assert_eq!(read_string(&mut xs, "device/vif/0/state").unwrap(), "1");
    // The read was answered after every event those writes caused (one outbox, in
    // order), so they are all queued by now.
    let mut got = Vec::new();
    while let Some(e) = xs.next_watch_event(&mut ev).unwrap() {
        assert_eq!(e.token, "dev");
        got.push(e.path.to_owned());
    }
    let backend = got.iter().position(|p| p == "device/vif/0/backend-id");
    let state = got.iter().position(|p| p == "device/vif/0/state");
    assert!(backend < state && backend.is_some(), "in order: {got:?}");
    xs.unwatch("device", "dev").unwrap();
    while xs.next_watch_event(&mut ev).unwrap().is_some() {}
    xs.write(TxId::NONE, "device/vif/0/state", b"2").unwrap();
    let _ = read_string(&mut xs, "device/vif/0/state").unwrap(); // a barrier
    assert_eq!(xs.next_watch_event(&mut ev), Ok(None));
    assert_eq!(xs.events_dropped(), 0);
}

#[test]
fn transactions_commit_atomically_and_conflicts_answer_eagain() {
    let (f, mut xs) = fixture();
    let tx = xs.transaction_start().unwrap();
    assert_ne!(tx, TxId::NONE);
    xs.write(tx, "device/vif/0/tx-ring-ref", b"8").unwrap();
    xs.write(tx, "device/vif/0/rx-ring-ref", b"9").unwrap();
    let mut out = [0u8; 16];
    assert_eq!(xs.read(tx, "device/vif/0/tx-ring-ref", &mut out), Ok(1));
    assert!(
        f.dom0
            .read("/local/domain/5/device/vif/0/tx-ring-ref")
            .unwrap_err()
            .is_not_found(),
        "nothing is visible before the commit"
    );
    xs.transaction_end(tx, true).unwrap();
    assert_eq!(
        f.dom0
            .read_string("/local/domain/5/device/vif/0/rx-ring-ref")
            .unwrap(),
        "9"
    );

    // Another writer touches what the transaction read: the commit fails.
    let tx = xs.transaction_start().unwrap();
    xs.read(tx, "device/vif/0/tx-ring-ref", &mut out).unwrap();
    f.dom0
        .write("/local/domain/5/device/vif/0/tx-ring-ref", "10")
        .unwrap();
    xs.write(tx, "device/vif/0/rx-ring-ref", b"11").unwrap();
    assert_eq!(
        xs.transaction_end(tx, true),
        Err(XsRingError::Errno(Errno::EAGAIN))
    );
    // An abort changes nothing; an ended transaction is gone.
    let tx = xs.transaction_start().unwrap();
    xs.write(tx, "device/vif/0/rx-ring-ref", b"12").unwrap();
    xs.transaction_end(tx, false).unwrap();
    assert_eq!(
        read_string(&mut xs, "device/vif/0/rx-ring-ref").unwrap(),
        "9"
    );
    assert_eq!(
        xs.write(tx, "device/vif/0/rx-ring-ref", b"13"),
        Err(XsRingError::Errno(Errno::ENOENT))
    );
}

/// A handshake step written once over the trait: publish ring refs in one
/// transaction (retried on EAGAIN), then read them back and list the directory.
fn publish<X: XenStore>(xs: &mut X, dir: &str) -> Result<(String, Vec<String>), X::Error> {
    xs.transact(|xs, tx| {
        xs.write(tx, &format!("{dir}/tx-ring-ref"), b"8")?;
        xs.write(tx, &format!("{dir}/rx-ring-ref"), b"9")?;
        xs.write(tx, &format!("{dir}/state"), b"4")
    })?;
    let mut out = [0u8; 64];
    let n = xs.read(TxId::NONE, &format!("{dir}/state"), &mut out)?;
    let state = String::from_utf8_lossy(&out[..n]).into_owned();
    assert_eq!(
        xs.try_read(TxId::NONE, &format!("{dir}/nope"), &mut out)?,
        None
    );
    let n = xs.directory(TxId::NONE, dir, &mut out)?;
    let list = wire::strings(&out[..n])
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    Ok((state, list))
}

#[test]
fn one_handshake_step_over_the_trait_runs_on_the_ring_and_on_the_socket() {
    let (f, mut ring) = fixture();
    let mut sock =
        XsClient::connect(xennet_xenstore::domain_socket(f._dir.0.as_path(), GUEST)).unwrap();
    let over_ring = publish(&mut ring, "device/vif/0").unwrap();
    let over_socket = publish(&mut sock, "device/vif/1").unwrap();
    assert_eq!(over_ring, over_socket);
    assert_eq!(over_ring.0, "4");
    assert_eq!(over_ring.1, ["rx-ring-ref", "state", "tx-ring-ref"]);

    // Watch events through the trait, from either client.
    XenStore::watch(&mut sock, "device/vif/0", "t").unwrap();
    let mut ev = [0u8; 64];
    let e = loop {
        if let Some(e) = XenStore::next_watch_event(&mut sock, &mut ev).unwrap() {
            break (e.path.to_owned(), e.token.to_owned());
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(e, ("device/vif/0".to_owned(), "t".to_owned()));
    let mut tiny = [0u8; 4];
    ring.write(TxId::NONE, "device/vif/0/state", b"5").unwrap();
    let too_small = loop {
        match XenStore::next_watch_event(&mut sock, &mut tiny) {
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            other => break other.map(|_| ()),
        }
    };
    assert!(matches!(
        too_small,
        Err(XsError::BufferTooSmall { needed: 21 })
    ));
    let e = XenStore::next_watch_event(&mut sock, &mut ev)
        .unwrap()
        .unwrap();
    assert_eq!(e.path, "device/vif/0/state", "the event was kept");
    let mut small = [0u8; 0];
    assert!(matches!(
        XenStore::read(&mut sock, TxId::NONE, "device/vif/0/state", &mut small),
        Err(XsError::BufferTooSmall { needed: 1 })
    ));
}

#[test]
fn a_daemon_that_stops_answering_is_a_timeout_not_a_hang() {
    let (f, _) = fixture();
    let mut relay = f.relay;
    let mut xs = relay.client(Duration::from_millis(200));
    xs.write(TxId::NONE, "x", b"1").unwrap();
    drop(f._xs); // the daemon goes; the relay's socket closes
    let mut out = [0u8; 8];
    assert_eq!(
        xs.read(TxId::NONE, "x", &mut out),
        Err(XsRingError::Timeout)
    );
}

#[test]
fn the_handshake_node_helpers_read_the_same_on_both_clients_as_xenbus_does() {
    use xennet_ring::xenstore::nodes::{self, NodeError};
    use xennet_xenstore::{xenbus, XenbusState};

    let (f, mut ring) = fixture();
    let sock =
        XsClient::connect(xennet_xenstore::domain_socket(f._dir.0.as_path(), GUEST)).unwrap();
    let d = "/local/domain/5/device/vif/0";
    for (k, v) in [
        ("state", "4"),
        ("on", "1"),
        ("off", "0"),
        ("blank", ""),
        ("odd", "yes"),
        ("num", " 42 "),
        ("bad-num", "4x"),
        ("bad-state", "9"),
    ] {
        f.dom0.write(&format!("{d}/{k}"), v).unwrap();
    }
    let p = |k: &str| format!("{d}/{k}");
    let mut sock_mut = sock.clone();
    for client in 0..2 {
        let tx = TxId::NONE;
        macro_rules! on {
            ($f:ident $(::<$t:ty>)?, $k:expr) => {
                if client == 0 {
                    nodes::$f$(::<_, $t>)?(&mut ring, tx, &p($k)).map_err(|e| e.to_string())
                } else {
                    nodes::$f$(::<_, $t>)?(&mut sock_mut, tx, &p($k)).map_err(|e| e.to_string())
                }
            };
        }
        assert_eq!(on!(read_state, "state"), Ok(XenbusState::Connected));
        assert_eq!(on!(read_state, "missing"), Ok(XenbusState::Unknown));
        assert!(on!(read_state, "bad-state").is_err());
        assert_eq!(on!(read_flag, "on"), Ok(true));
        assert_eq!(on!(read_flag, "off"), Ok(false));
        assert_eq!(on!(read_flag, "blank"), Ok(false));
        assert_eq!(on!(read_flag, "missing"), Ok(false));
        assert!(on!(read_flag, "odd").is_err());
        assert_eq!(on!(read_num::<u32>, "num"), Ok(42));
        assert!(on!(read_num::<u32>, "bad-num").is_err());
        assert!(on!(read_num::<u32>, "missing").is_err());
        assert_eq!(on!(read_opt_num::<u32>, "missing"), Ok(None));
        assert_eq!(on!(read_opt_num::<u32>, "num"), Ok(Some(42)));
    }
    // The same answers as the socket client's own helpers.
    assert_eq!(
        xenbus::read_state(&sock, &p("state")).unwrap(),
        XenbusState::Connected
    );
    assert!(xenbus::read_flag(&sock, &p("odd")).is_err());
    assert_eq!(xenbus::read_num::<u32>(&sock, &p("num")).unwrap(), 42);
    // Writes: a state and a number, without allocating.
    nodes::write_state(&mut ring, TxId::NONE, &p("state"), XenbusState::Closing).unwrap();
    nodes::write_num(&mut ring, TxId::NONE, &p("num"), u64::MAX).unwrap();
    assert_eq!(f.dom0.read_string(&p("state")).unwrap(), "5");
    assert_eq!(f.dom0.read_string(&p("num")).unwrap(), u64::MAX.to_string());
    let missing = nodes::read_num::<_, u32>(&mut ring, TxId::NONE, &p("missing"));
    assert_eq!(
        missing,
        Err(NodeError::Store(XsRingError::Errno(Errno::ENOENT)))
    );
}
