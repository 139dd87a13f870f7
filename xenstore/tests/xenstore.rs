//! The XenStore daemon through its client, and through Debian's xenstore-utils.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use xennet_xenstore::{
    domain_socket, wire, Access, Errno, Perm, WatchEvent, Xenstored, XsClient, XsError,
};

mod common;
use common::*;

#[test]
fn read_write_directory_rm_mkdir() {
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    let c = XsClient::connect(xs.socket_path()).unwrap();
    c.write("/a/b/c", "hello").unwrap();
    assert_eq!(c.read_string("/a/b/c").unwrap(), "hello");
    assert_eq!(c.read_string("/a/b").unwrap(), "");
    c.write("/a/b/d", [0u8, 1, 2, 255]).unwrap();
    assert_eq!(c.read("/a/b/d").unwrap(), vec![0, 1, 2, 255]);
    assert_eq!(c.directory("/a/b").unwrap(), vec!["c", "d"]);
    c.mkdir("/a/e").unwrap();
    c.mkdir("/a/e").unwrap();
    assert_eq!(c.directory("/a").unwrap(), vec!["b", "e"]);
    c.rm("/a/b").unwrap();
    assert_eq!(errno(c.read("/a/b/c")), Errno::ENOENT);
    c.rm("/a/b").unwrap(); // missing child of an existing parent: fine, as in xenstored
    assert_eq!(errno(c.rm("/nope/x")), Errno::ENOENT);
    assert_eq!(errno(c.rm("/")), Errno::EINVAL);
    assert_eq!(errno(c.read("bad//path")), Errno::EINVAL);
    assert_eq!(c.get_domain_path(7).unwrap(), "/local/domain/7");
    // Relative paths are relative to the connection's home.
    c.write("rel", "x").unwrap();
    assert_eq!(c.read_string("/local/domain/0/rel").unwrap(), "x");
}

#[test]
fn guests_are_confined_to_what_permissions_allow() {
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    let dom0 = XsClient::connect(xs.socket_path()).unwrap();
    dom0.introduce(5, 0, 0).unwrap();
    dom0.introduce(6, 0, 0).unwrap();
    assert!(dom0.is_domain_introduced(5).unwrap());
    assert!(!dom0.is_domain_introduced(9).unwrap());
    let g5 = XsClient::connect(domain_socket(&dir.0, 5)).unwrap();
    let g6 = XsClient::connect(domain_socket(&dir.0, 6)).unwrap();

    g5.write("device/vif/0/state", "1").unwrap();
    assert_eq!(
        g5.read_string("/local/domain/5/device/vif/0/state")
            .unwrap(),
        "1"
    );
    let perms = g5.get_perms("device/vif/0/state").unwrap();
    assert_eq!(perms[0], Perm::new(5, Access::None));
    // Another guest can neither read, list, write nor learn what exists.
    assert_eq!(
        errno(g6.read("/local/domain/5/device/vif/0/state")),
        Errno::EACCES
    );
    assert_eq!(errno(g6.read("/local/domain/5/nothing")), Errno::EACCES);
    assert_eq!(errno(g6.directory("/local/domain/5")), Errno::EACCES);
    assert_eq!(errno(g6.write("/local/domain/5/x", "1")), Errno::EACCES);
    assert_eq!(errno(g6.rm("/local/domain/5/device")), Errno::EACCES);
    // Nor write outside its home, nor do privileged operations.
    assert_eq!(errno(g5.write("/tool/x", "1")), Errno::EACCES);
    assert_eq!(errno(g5.write("/local/domain/0/x", "1")), Errno::EACCES);
    assert_eq!(errno(g5.introduce(7, 0, 0)), Errno::EACCES);
    assert_eq!(errno(g5.release(6)), Errno::EACCES);
    // The owner may share read access, but not give the node away.
    g5.set_perms(
        "device/vif/0/state",
        &[Perm::new(5, Access::None), Perm::new(6, Access::Read)],
    )
    .unwrap();
    assert_eq!(
        g6.read_string("/local/domain/5/device/vif/0/state")
            .unwrap(),
        "1"
    );
    assert_eq!(
        errno(g6.write("/local/domain/5/device/vif/0/state", "2")),
        Errno::EACCES
    );
    assert_eq!(
        errno(g5.set_perms("device/vif/0/state", &[Perm::new(6, Access::None)])),
        Errno::EPERM
    );
    // Domain 0 sees and does everything.
    dom0.write(
        "/local/domain/5/device/vif/0/backend",
        "/local/domain/0/backend/vif/5/0",
    )
    .unwrap();
    // A backend directory shared the Xen way: owned by dom0, readable by the guest.
    dom0.write("/local/domain/0/backend/vif/5/0/state", "2")
        .unwrap();
    dom0.set_perms(
        "/local/domain/0/backend/vif/5/0",
        &[Perm::new(0, Access::None), Perm::new(5, Access::Read)],
    )
    .unwrap();
    dom0.set_perms(
        "/local/domain/0/backend/vif/5/0/state",
        &[Perm::new(0, Access::None), Perm::new(5, Access::Read)],
    )
    .unwrap();
    assert_eq!(
        g5.read_string("/local/domain/0/backend/vif/5/0/state")
            .unwrap(),
        "2"
    );
    assert_eq!(
        errno(g6.read("/local/domain/0/backend/vif/5/0/state")),
        Errno::EACCES
    );
    assert_eq!(
        errno(g5.write("/local/domain/0/backend/vif/5/0/state", "4")),
        Errno::EACCES
    );
}

#[test]
fn limits_are_enforced_for_guests() {
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    let dom0 = XsClient::connect(xs.socket_path()).unwrap();
    dom0.introduce(3, 0, 0).unwrap();
    let g = XsClient::connect(domain_socket(&dir.0, 3)).unwrap();
    assert_eq!(errno(g.write("big", vec![b'x'; 2049])), Errno::ENOSPC);
    g.write("fits", vec![b'x'; 2048]).unwrap();
    dom0.write("/big", vec![b'x'; 4000]).unwrap(); // domain 0 is not limited
    for i in 0..128 {
        g.watch(&format!("w{i}"), "t").unwrap();
    }
    assert_eq!(errno(g.watch("w128", "t")), Errno::E2BIG);
    let txs: Vec<_> = (0..10).map(|_| g.transaction().unwrap()).collect();
    assert_eq!(errno(g.transaction()), Errno::ENOSPC);
    drop(txs);
    let mut n = 0;
    let err = loop {
        match g.write(&format!("n/{n}"), "") {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n <= 1000);
    };
    assert_eq!(err.errno(), Some(Errno::ENOSPC));
    assert!(n > 900, "quota reached after {n} nodes");
}

#[test]
fn watches_fire_initially_on_change_and_on_removal() {
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    let c = XsClient::connect(xs.socket_path()).unwrap();
    let w = XsClient::connect(xs.socket_path()).unwrap();
    w.watch("/dev", "tok").unwrap();
    assert_eq!(
        next(&w),
        WatchEvent {
            path: "/dev".into(),
            token: "tok".into()
        }
    );
    c.write("/dev/vif/0/state", "4").unwrap();
    // Creating /dev, /dev/vif, ... fires once for the written node.
    assert_eq!(next(&w).path, "/dev/vif/0/state");
    no_event(&w);
    c.write("/other", "1").unwrap();
    no_event(&w);
    // A watch below a removed node fires with its own path.
    w.watch("/dev/vif/0/state", "deep").unwrap();
    assert_eq!(next(&w).token, "deep");
    c.rm("/dev/vif").unwrap();
    let mut got = [next(&w), next(&w)];
    got.sort_by(|a, b| a.token.cmp(&b.token));
    assert_eq!(
        got[0],
        WatchEvent {
            path: "/dev/vif/0/state".into(),
            token: "deep".into()
        }
    );
    assert_eq!(
        got[1],
        WatchEvent {
            path: "/dev/vif".into(),
            token: "tok".into()
        }
    );
    w.unwatch("/dev", "tok").unwrap();
    assert_eq!(errno(w.unwatch("/dev", "tok")), Errno::ENOENT);
    c.write("/dev/x", "1").unwrap();
    no_event(&w);

    // Relative watches report relative paths; guests only see what they may read.
    xs.introduce(4).unwrap();
    let g = XsClient::connect(domain_socket(&dir.0, 4)).unwrap();
    g.watch("device", "d").unwrap();
    assert_eq!(next(&g).path, "device");
    c.write("/local/domain/4/device/vif/0/state", "1").unwrap();
    assert_eq!(next(&g).path, "device/vif/0/state");
    g.watch("/", "root").unwrap();
    assert_eq!(next(&g).path, "/");
    c.write("/secret", "s").unwrap();
    no_event(&g);
}

#[test]
fn transactions_commit_atomically_and_conflict_with_eagain() {
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    let a = XsClient::connect(xs.socket_path()).unwrap();
    let b = XsClient::connect(xs.socket_path()).unwrap();
    a.write("/t/x", "0").unwrap();
    b.watch("/t", "w").unwrap();
    next(&b);

    let tx = a.transaction().unwrap();
    tx.write("/t/x", "1").unwrap();
    tx.write("/t/y", "2").unwrap();
    assert_eq!(tx.read_string("/t/x").unwrap(), "1");
    // Not visible, and no watch fired, before commit.
    assert_eq!(b.read_string("/t/x").unwrap(), "0");
    assert_eq!(errno(b.read("/t/y")), Errno::ENOENT);
    no_event(&b);
    tx.commit().unwrap();
    assert_eq!(b.read_string("/t/y").unwrap(), "2");
    let mut paths = vec![next(&b).path, next(&b).path];
    paths.sort();
    assert_eq!(paths, vec!["/t/x", "/t/y"]);

    // A concurrent write to something the transaction read: EAGAIN.
    let tx = a.transaction().unwrap();
    assert_eq!(tx.read_string("/t/x").unwrap(), "1");
    b.write("/t/x", "changed").unwrap();
    tx.write("/t/z", "3").unwrap();
    assert_eq!(errno(tx.commit()), Errno::EAGAIN);
    assert_eq!(errno(a.read("/t/z")), Errno::ENOENT);
    // Listing counts as reading the directory.
    let tx = a.transaction().unwrap();
    tx.directory("/t").unwrap();
    b.write("/t/new", "").unwrap();
    tx.write("/u", "1").unwrap();
    assert_eq!(errno(tx.commit()), Errno::EAGAIN);
    // Unrelated writes do not conflict; transact() retries conflicts itself.
    let tx = a.transaction().unwrap();
    tx.write("/t/x", "mine").unwrap();
    b.write("/elsewhere", "1").unwrap();
    tx.commit().unwrap();
    let n = a
        .transact(|tx| {
            let v: u32 = tx
                .read_string("/t/count")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            tx.write("/t/count", (v + 1).to_string())
        })
        .map(|_| a.read_string("/t/count").unwrap())
        .unwrap();
    assert_eq!(n, "1");
    // Aborted transactions leave nothing behind; unknown ids are ENOENT.
    let tx = a.transaction().unwrap();
    tx.write("/gone", "1").unwrap();
    tx.abort().unwrap();
    assert_eq!(errno(a.read("/gone")), Errno::ENOENT);
}

#[test]
fn introduce_and_release_manage_domain_sockets() {
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    let dom0 = XsClient::connect(xs.socket_path()).unwrap();
    dom0.watch("@introduceDomain", "i").unwrap();
    dom0.watch("@releaseDomain", "r").unwrap();
    next(&dom0);
    next(&dom0);
    assert!(!domain_socket(&dir.0, 8).exists());
    dom0.introduce(8, 1234, 5).unwrap();
    assert_eq!(
        next(&dom0),
        WatchEvent {
            path: "@introduceDomain".into(),
            token: "i".into()
        }
    );
    let g = XsClient::connect(domain_socket(&dir.0, 8)).unwrap();
    g.write("data", "1").unwrap();
    dom0.release(8).unwrap();
    assert_eq!(
        next(&dom0),
        WatchEvent {
            path: "@releaseDomain".into(),
            token: "r".into()
        }
    );
    assert!(!domain_socket(&dir.0, 8).exists());
    // The guest's connection is gone.
    assert!(matches!(
        g.read("data"),
        Err(XsError::Closed | XsError::Io(_))
    ));
    assert_eq!(errno(dom0.release(8)), Errno::ENOENT);
    // A domain can be introduced again after its release.
    dom0.introduce(8, 0, 0).unwrap();
    assert!(domain_socket(&dir.0, 8).exists());
}

#[test]
fn malformed_messages_get_errors_or_a_closed_connection() {
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    let mut s = UnixStream::connect(xs.socket_path()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let error = wire::MsgType::Error as u32;
    assert_eq!(raw(&mut s, 999, 1, b""), (error, 1, b"EINVAL\0".to_vec()));
    assert_eq!(
        raw(&mut s, wire::MsgType::Read as u32, 2, b""),
        (error, 2, b"EINVAL\0".to_vec())
    );
    assert_eq!(
        raw(&mut s, wire::MsgType::Read as u32, 3, b"/nope\0"),
        (error, 3, b"ENOENT\0".to_vec())
    );
    assert_eq!(
        raw(
            &mut s,
            wire::MsgType::Introduce as u32,
            4,
            b"9\0not-a-number\0"
        ),
        (error, 4, b"EINVAL\0".to_vec())
    );
    assert_eq!(
        raw(&mut s, wire::MsgType::Write as u32, 5, b"/v\0val"),
        (wire::MsgType::Write as u32, 5, b"OK\0".to_vec())
    );
    assert_eq!(
        raw(&mut s, wire::MsgType::Read as u32, 6, b"/v\0"),
        (wire::MsgType::Read as u32, 6, b"val".to_vec())
    );
    // A length over XENSTORE_PAYLOAD_MAX cannot be resynchronised: closed.
    let h = wire::Header {
        ty: 2,
        req_id: 7,
        tx_id: 0,
        len: 5000,
    };
    s.write_all(&h.to_bytes()).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    assert_eq!(xs.stats().protocol_violations.load(Ordering::Relaxed), 1);
    // The daemon keeps serving others.
    let c = XsClient::connect(xs.socket_path()).unwrap();
    assert_eq!(c.read_string("/v").unwrap(), "val");
}

// ---- Debian's xenstore-utils, unmodified, via XENSTORED_PATH ----

fn have_tools() -> bool {
    let ok = Command::new("xenstore-read").arg("--help").output().is_ok();
    if !ok {
        eprintln!("SKIP: xenstore-utils not installed (scripts/test installs them as root)");
    }
    ok
}

fn tool(sock: &std::path::Path, name: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(name)
        .args(args)
        .env("XENSTORED_PATH", sock)
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn xenstore_utils_work_against_the_daemon() {
    if !have_tools() {
        return;
    }
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    let sock = xs.socket_path();
    let c = XsClient::connect(&sock).unwrap();

    let (ok, _, err) = tool(&sock, "xenstore-write", &["/vm/a", "one", "/vm/b/c", "two"]);
    assert!(ok, "xenstore-write: {err}");
    assert_eq!(c.read_string("/vm/b/c").unwrap(), "two");
    let (ok, out, err) = tool(&sock, "xenstore-read", &["/vm/a", "/vm/b/c"]);
    assert!(ok, "xenstore-read: {err}");
    assert_eq!(out, "one\ntwo\n");
    let (ok, _, _) = tool(&sock, "xenstore-read", &["/vm/missing"]);
    assert!(!ok, "reading a missing node must fail");
    let (ok, out, err) = tool(&sock, "xenstore-list", &["/vm"]);
    assert!(ok, "xenstore-list: {err}");
    assert_eq!(out, "a\nb\n");
    let (ok, out, err) = tool(&sock, "xenstore-ls", &["/vm"]);
    assert!(ok, "xenstore-ls: {err}");
    assert!(out.contains("a = \"one\""), "{out}");
    assert!(
        out.contains("b = \"\"") && out.contains(" c = \"two\""),
        "{out}"
    );
    let (ok, _, err) = tool(&sock, "xenstore-chmod", &["/vm/a", "n0", "r5"]);
    assert!(ok, "xenstore-chmod: {err}");
    assert_eq!(
        c.get_perms("/vm/a").unwrap(),
        vec![Perm::new(0, Access::None), Perm::new(5, Access::Read)]
    );
    let (ok, out, err) = tool(&sock, "xenstore-ls", &["-p", "/vm"]);
    assert!(ok, "xenstore-ls -p: {err}");
    assert!(out.contains("(n0,r5)"), "{out}");
    let (ok, _, err) = tool(&sock, "xenstore-rm", &["/vm/b"]);
    assert!(ok, "xenstore-rm: {err}");
    assert_eq!(errno(c.read("/vm/b/c")), Errno::ENOENT);

    // xenstore-watch prints the initial event and then each change.
    let mut child = Command::new("xenstore-watch")
        .args(["-n", "3", "/vm"])
        .env("XENSTORED_PATH", &sock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Write until the watcher has registered and seen two changes; each write
    // is one more event, so this ends as soon as it has counted three.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "xenstore-watch never finished"
        );
        c.write(&format!("/vm/w{i}"), "x").unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "/vm");
    assert!(
        lines[1].starts_with("/vm/w") && lines[2].starts_with("/vm/w"),
        "{out}"
    );

    // A guest socket through the same tools: confined to its permissions.
    xs.introduce(5).unwrap();
    let gsock = domain_socket(&dir.0, 5);
    let (ok, _, err) = tool(&gsock, "xenstore-write", &["/local/domain/5/name", "guest"]);
    assert!(ok, "guest write in its home: {err}");
    let (ok, out, _) = tool(&gsock, "xenstore-read", &["/vm/a"]);
    assert!(ok && out == "one\n", "r5 lets domain 5 read /vm/a: {out}");
    let (ok, _, _) = tool(&gsock, "xenstore-write", &["/vm/a", "evil"]);
    assert!(!ok, "guest must not write dom0's node");
    let (ok, _, _) = tool(&gsock, "xenstore-read", &["/local/domain/0/rel"]);
    assert!(!ok);
}

#[test]
fn dropped_clients_close_their_connections() {
    // Found by `xennet soak`: a client dropped without closing kept a reader
    // thread on both sides, so short-lived clients leaked threads in the daemon.
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    let keep = XsClient::connect(xs.socket_path()).unwrap();
    for _ in 0..50 {
        let c = XsClient::connect(xs.socket_path()).unwrap();
        c.write("/x", "1").unwrap();
    }
    // Wait for the 50 dropped ones to wind down (bounded by the deadline).
    let deadline = std::time::Instant::now() + WAIT;
    while xs.connections() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} connections still open",
            xs.connections()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(keep.read_string("/x").unwrap(), "1");
}

/// Drains events until one names `path` (a restart re-fires every watch once).
fn event_for(c: &XsClient, path: &str) -> WatchEvent {
    loop {
        let ev = next(c);
        if ev.path == path {
            return ev;
        }
    }
}

#[test]
fn a_persistent_daemon_comes_back_after_a_crash_and_its_clients_reconnect() {
    let dir = TempDir::new();
    let xs = Xenstored::start_persistent(&dir.0).unwrap();
    let dom0 = XsClient::connect(xs.socket_path()).unwrap();
    dom0.write("/local/domain/0/backend/vif/5/0/state", "4")
        .unwrap();
    dom0.write("/tool/blob", [0u8, 1, 2, 255]).unwrap();
    xs.introduce(5).unwrap();
    dom0.write("/local/domain/5/device/vif/0/state", "4")
        .unwrap();
    dom0.set_perms(
        "/local/domain/5/device/vif/0",
        &[Perm::new(5, Access::None), Perm::new(0, Access::Read)],
    )
    .unwrap();
    dom0.transact(|t| t.write("/tool/committed", "yes"))
        .unwrap();
    dom0.watch("/local/domain/0/backend", "be").unwrap();
    assert_eq!(next(&dom0).token, "be");
    let guest = XsClient::connect(domain_socket(&dir.0, 5)).unwrap();
    guest.watch("device", "dev").unwrap();
    assert_eq!(next(&guest).path, "device");
    // A transaction open across the crash cannot commit.
    let open_tx = dom0.transaction().unwrap();
    open_tx.write("/tool/lost", "x").unwrap();

    xs.crash();
    drop(xs);
    // The clients are waiting for a daemon, not closed.
    assert!(!dom0.is_closed() && !guest.is_closed());
    // A request made while the daemon is down waits for its successor.
    let writer = {
        let c = dom0.clone();
        std::thread::spawn(move || c.write("/local/domain/0/backend/vif/5/0/x", "during"))
    };
    std::thread::sleep(Duration::from_millis(100));
    let xs = Xenstored::start_persistent(&dir.0).unwrap();
    writer.join().unwrap().unwrap();

    // Everything acknowledged before the crash is there, with its permissions.
    assert_eq!(dom0.read("/tool/blob").unwrap(), vec![0, 1, 2, 255]);
    assert_eq!(dom0.read_string("/tool/committed").unwrap(), "yes");
    assert_eq!(errno(dom0.read("/tool/lost")), Errno::ENOENT);
    assert_eq!(errno(open_tx.commit()), Errno::EAGAIN);
    assert!(dom0.is_domain_introduced(5).unwrap());
    assert_eq!(
        dom0.get_perms("/local/domain/5/device/vif/0").unwrap(),
        vec![Perm::new(5, Access::None), Perm::new(0, Access::Read)]
    );
    // Watches were registered again: the initial event, then real changes.
    event_for(&dom0, "/local/domain/0/backend");
    dom0.write("/local/domain/0/backend/vif/5/0/state", "5")
        .unwrap();
    event_for(&dom0, "/local/domain/0/backend/vif/5/0/state");
    event_for(&guest, "device");
    dom0.write("/local/domain/5/device/vif/0/state", "5")
        .unwrap();
    event_for(&guest, "device/vif/0/state");
    // The guest is still confined, and still owns its home.
    assert_eq!(errno(guest.read("/tool/blob")), Errno::EACCES);
    guest.write("data/x", "1").unwrap();
    assert!(dom0.reconnects() >= 1 && guest.reconnects() >= 1);
    // Transactions work on the new daemon (transact retries a lost one).
    dom0.transact(|t| t.write("/tool/after", "ok")).unwrap();

    // Released: the guest's socket goes away and its client gives up at once.
    xs.release(5).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !guest.is_closed() {
        assert!(
            std::time::Instant::now() < deadline,
            "guest client never closed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // An orderly stop removes the dom0 socket: its client closes too.
    xs.stop();
    let deadline = std::time::Instant::now() + WAIT;
    while !dom0.is_closed() {
        assert!(
            std::time::Instant::now() < deadline,
            "dom0 client never closed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(dom0.read("/tool/blob"), Err(XsError::Closed)));
    // The journal keeps what the stopped daemon held, minus the release.
    let xs = Xenstored::start_persistent(&dir.0).unwrap();
    let c = XsClient::connect(xs.socket_path()).unwrap();
    assert_eq!(c.read_string("/tool/after").unwrap(), "ok");
    assert!(!c.is_domain_introduced(5).unwrap());
    assert!(!domain_socket(&dir.0, 5).exists());
}

#[test]
fn a_daemon_started_without_its_journal_starts_empty_and_drops_stale_sockets() {
    let dir = TempDir::new();
    let xs = Xenstored::start_persistent(&dir.0).unwrap();
    xs.introduce(3).unwrap();
    let c = XsClient::connect(xs.socket_path()).unwrap();
    c.write("/tool/x", "1").unwrap();
    xs.crash();
    drop(xs);
    assert!(
        domain_socket(&dir.0, 3).exists(),
        "a crash leaves sockets behind"
    );
    std::fs::remove_file(Xenstored::journal_path(&dir.0)).unwrap();
    let xs = Xenstored::start_persistent(&dir.0).unwrap();
    assert!(!domain_socket(&dir.0, 3).exists());
    let c2 = XsClient::connect(xs.socket_path()).unwrap();
    assert_eq!(errno(c2.read("/tool/x")), Errno::ENOENT);
    // A second daemon on the same directory is refused.
    assert!(Xenstored::start_persistent(&dir.0).is_err());
    drop(c);
}
