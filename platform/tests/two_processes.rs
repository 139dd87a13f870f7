//! Two processes exchange data only through grants and event channels.
//!
//! The test re-runs its own binary as the granting domain (domain 7): it grants pages
//! to domain 1 (the test), one read-write, one read-only, one to another domain, and
//! one it ends again, opens an unbound event-channel port, and then obeys commands on
//! stdin (end access, notify, report a page). The test process, domain 1, exercises
//! every GNTST outcome of a grant copy against those grants, the end-access refusal
//! while it maps a page, and notifications that cross the process boundary and
//! coalesce while masked. Bounded in time; the instance directory is removed.
//! (Not part of the loom run: it is about processes, not interleavings.)
#![cfg(not(loom))]

mod support;

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use support::{Dir, Peer};

use xennet_platform::shm::{Domain, EventChannels, GrantOps, PeerAccess, PeerDomain, RuntimeDir};
use xennet_ring::grant::{GnttabCopy, GnttabCopyPtr};
use xennet_ring::{
    DomId, FrameAlloc, GrantAccess, GrantCopy, GrantMap, GrantRef, GrantStatus, LocalMemory,
    MappedPage, Port,
};

const GRANTER: DomId = DomId(7);
const USER: DomId = DomId(1);
const PEER_ENV: &str = "XENNET_TWO_PROCESS_PEER_DIR";

/// The granting domain (runs only when re-executed by the test below).
#[test]
fn peer_process() {
    let Ok(dir) = std::env::var(PEER_ENV) else {
        return;
    };
    let rt = RuntimeDir::new(&dir).unwrap();
    let dom = Domain::create(&rt, GRANTER, 64, 64).unwrap();
    let events = EventChannels::new(&dom, Some(rt));
    let page = |fill: u8| {
        let f = dom.alloc_frame().unwrap();
        dom.write(f, 0, &[fill; 4096]).unwrap();
        f
    };
    let (f_rw, f_ro, f_other, f_ended) = (page(0xa1), page(0xb2), page(0xc3), page(0xd4));
    let g_rw = dom.grant_access(USER, f_rw, false).unwrap();
    let g_ro = dom.grant_access(USER, f_ro, true).unwrap();
    let g_other = dom.grant_access(DomId(9), f_other, false).unwrap();
    let g_ended = dom.grant_access(USER, f_ended, false).unwrap();
    dom.end_access(g_ended).unwrap();
    let port = events.alloc_unbound(USER).unwrap();
    println!(
        "READY {} {} {} {} {}",
        g_rw.0, g_ro.0, g_other.0, g_ended.0, port.0
    );
    let grants = [g_rw, g_ro, g_other];
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["end", g] => {
                let g = GrantRef(g.parse().unwrap());
                match dom.end_access(g) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("refused {e}"),
                }
            }
            ["notify", n] => {
                for _ in 0..n.parse::<u32>().unwrap() {
                    events.notify(port);
                }
                "ok".to_string()
            }
            ["read", i] => {
                let f = [f_rw, f_ro, f_other][i.parse::<usize>().unwrap()];
                let mut b = [0u8; 4];
                dom.read(f, 100, &mut b).unwrap();
                format!("{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
            }
            _ => "?".to_string(),
        };
        println!("{reply}");
        std::io::stdout().flush().unwrap();
    }
    let _ = grants;
}

fn copy_status(ops: &GrantOps, op: GnttabCopy) -> GrantStatus {
    let mut ops_v = [op];
    ops.grant_copy(&mut ops_v).unwrap();
    ops_v[0].status()
}

#[test]
fn grants_and_events_across_two_processes() {
    if std::env::var(PEER_ENV).is_ok() {
        return;
    }
    let dir = Dir::new("2p");
    let rt = RuntimeDir::new(&dir.0).unwrap();
    let (mut peer, ready) = Peer::start(
        "peer_process",
        PEER_ENV,
        &dir.0.display().to_string(),
        Duration::from_secs(60),
    );
    let n: Vec<u32> = ready.split(' ').map(|w| w.parse().unwrap()).collect();
    let (g_rw, g_ro, g_other, g_ended, port) = (
        GrantRef(n[0]),
        GrantRef(n[1]),
        GrantRef(n[2]),
        GrantRef(n[3]),
        Port(n[4]),
    );

    // Domain 1 in this process; the granter is reached only through its files.
    let me = Domain::create(&rt, USER, 16, 16).unwrap();
    let ops = GrantOps::new(&me);
    ops.add_peer(PeerDomain::open(&rt, GRANTER, PeerAccess::Grants).unwrap());
    let local = me.alloc_frame().unwrap();
    let from = |g: GrantRef, off: u16, len: u16| {
        GnttabCopy::from_grant(
            GnttabCopyPtr::gref(g, GRANTER, off),
            GnttabCopyPtr::local(local, 0),
            len,
        )
    };
    let to = |g: GrantRef, off: u16, len: u16| {
        GnttabCopy::to_grant(
            GnttabCopyPtr::local(local, 0),
            GnttabCopyPtr::gref(g, GRANTER, off),
            len,
        )
    };

    // Data crosses only through a grant: read the granter's page...
    assert_eq!(copy_status(&ops, from(g_rw, 0, 64)), GrantStatus::Okay);
    let mut b = [0u8; 64];
    me.read(local, 0, &mut b).unwrap();
    assert_eq!(b, [0xa1; 64]);
    // ...and write into it; the granter sees the bytes.
    me.write(local, 0, &[0x5e; 256]).unwrap();
    assert_eq!(copy_status(&ops, to(g_rw, 0, 256)), GrantStatus::Okay);
    assert_eq!(peer.say("read 0"), "5e5e5e5e");
    // A read-only grant reads, but is refused for writing (GNTST_general_error, as
    // Xen 4.17 answers it); its page is unchanged.
    assert_eq!(copy_status(&ops, from(g_ro, 0, 64)), GrantStatus::Okay);
    assert_eq!(
        copy_status(&ops, to(g_ro, 0, 64)),
        GrantStatus::GeneralError
    );
    assert_eq!(peer.say("read 1"), "b2b2b2b2");
    // Granted to another domain, ended, or beyond the table: refused.
    assert_eq!(
        copy_status(&ops, from(g_other, 0, 64)),
        GrantStatus::GeneralError
    );
    assert_eq!(
        copy_status(&ops, from(g_ended, 0, 64)),
        GrantStatus::GeneralError
    );
    assert_eq!(
        copy_status(&ops, from(GrantRef(1 << 20), 0, 64)),
        GrantStatus::BadGntref
    );
    // Offset + length over the page.
    assert_eq!(
        copy_status(&ops, from(g_rw, 4000, 200)),
        GrantStatus::BadCopyArg
    );
    // A domain we do not know.
    let unknown = GnttabCopy::from_grant(
        GnttabCopyPtr::gref(g_rw, DomId(55), 0),
        GnttabCopyPtr::local(local, 0),
        8,
    );
    assert_eq!(copy_status(&ops, unknown), GrantStatus::BadDomain);
    // One batch, several outcomes, each op with its own status.
    let mut batch = [
        from(g_rw, 0, 8),
        to(g_ro, 0, 8),
        from(g_ended, 0, 8),
        from(g_rw, 4090, 8),
    ];
    ops.grant_copy(&mut batch).unwrap();
    let got: Vec<GrantStatus> = batch.iter().map(GnttabCopy::status).collect();
    assert_eq!(
        got,
        [
            GrantStatus::Okay,
            GrantStatus::GeneralError,
            GrantStatus::GeneralError,
            GrantStatus::BadCopyArg
        ]
    );

    // End access is refused while we map the page, and succeeds after the unmap.
    let map = ops.map(GRANTER, g_rw, true).unwrap();
    assert!(map.readonly());
    assert!(peer.say(&format!("end {}", g_rw.0)).starts_with("refused"));
    ops.unmap(map).unwrap();
    assert_eq!(peer.say(&format!("end {}", g_rw.0)), "ok");
    // Ended: a copy no longer starts.
    assert_eq!(
        copy_status(&ops, from(g_rw, 0, 8)),
        GrantStatus::GeneralError
    );
    // A read-only grant cannot be mapped writable.
    assert_eq!(
        ops.map(GRANTER, g_ro, false).err(),
        Some(GrantStatus::GeneralError)
    );

    // Events: bind to the granter's port; notifications cross and coalesce.
    let events: Arc<EventChannels> = EventChannels::new(&me, Some(rt.clone()));
    let mine = events.bind_interdomain(GRANTER, port).unwrap();
    let mut woken = Vec::new();
    events.mask(mine);
    assert_eq!(peer.say("notify 5"), "ok");
    events.wait_into(Some(Duration::from_millis(50)), &mut woken);
    assert!(woken.is_empty(), "a masked port does not wake us");
    events.unmask(mine);
    events.wait_into(Some(Duration::from_secs(10)), &mut woken);
    assert_eq!(woken, [mine], "five notifications, one pending event");
    woken.clear();
    events.wait_into(Some(Duration::from_millis(50)), &mut woken);
    assert!(woken.is_empty(), "the event was consumed");
    // A sleeping waiter is woken by the other process.
    let waiter = {
        let events = events.clone();
        std::thread::spawn(move || {
            let mut w = Vec::new();
            events.wait_into(Some(Duration::from_secs(10)), &mut w);
            w
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(peer.say("notify 1"), "ok");
    assert_eq!(waiter.join().unwrap(), [mine]);
}
