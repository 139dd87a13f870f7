//! What one domain's process maps of another's files (docs/reliability.md, "What the
//! shm platform can and cannot isolate"): a guest maps only the driver domain's event
//! page, a peer's file outside the platform's limits is refused before it is mapped,
//! and a peer that truncates its memory under the driver domain's grant copy breaks
//! only itself. The peers run as this binary re-executed (`peer_process`); every test
//! is bounded in time and removes its runtime directory.
#![cfg(not(loom))]

mod support;

use std::fs::OpenOptions;
use std::time::Duration;

use support::{mapped_files, Dir, Peer};
use xennet_platform::shm::{
    pages_replaced, Domain, EventChannels, GrantOps, PeerAccess, PeerDomain, RuntimeDir, ShmError,
    MAX_GRANT_ENTRIES, MAX_PAGES,
};
use xennet_ring::grant::{GnttabCopy, GnttabCopyPtr};
use xennet_ring::{
    DomId, FrameAlloc, GrantAccess, GrantCopy, GrantMap, GrantRef, LocalMemory, Port, PAGE_SIZE,
};

const PEER_ENV: &str = "XENNET_PEER_ISOLATION_PEER";
const DOM0: DomId = DomId(0);
const LIMIT: Duration = Duration::from_secs(60);

/// The driver domain's process (runs only when re-executed by a test below, with
/// `<role> <runtime dir>` in [`PEER_ENV`]). Role `events`: domain 0 with a port
/// unbound for domain 1. Role `grants`: domain 0 grant-copying from the guests it is
/// told to open.
#[test]
fn peer_process() {
    let Ok(arg) = std::env::var(PEER_ENV) else {
        return;
    };
    let (role, dir) = arg.split_once(' ').unwrap();
    let rt = RuntimeDir::new(dir).unwrap();
    let dom = Domain::create(&rt, DOM0, 64, 64).unwrap();
    let events = EventChannels::new(&dom, Some(rt.clone()));
    let ops = GrantOps::new(&dom);
    let local = dom.alloc_frame().unwrap();
    match role {
        "events" => println!("READY {}", events.alloc_unbound(DomId(1)).unwrap().0),
        _ => println!("READY"),
    }
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        let w: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| w[i].parse::<u32>().unwrap();
        let reply = match w[0] {
            "wait" => format!("{:?}", events.wait(Some(Duration::from_secs(10)))),
            "open" => match PeerDomain::open(&rt, DomId(num(1) as u16), PeerAccess::Grants) {
                Ok(p) => {
                    ops.add_peer(p);
                    "ok".to_string()
                }
                Err(e) => format!("refused {e}"),
            },
            "copy" => {
                let mut op = [GnttabCopy::from_grant(
                    GnttabCopyPtr::gref(GrantRef(num(2)), DomId(num(1) as u16), 0),
                    GnttabCopyPtr::local(local, 0),
                    PAGE_SIZE as u16,
                )];
                ops.grant_copy(&mut op).unwrap();
                let mut b = [0u8; 2];
                dom.read(local, 0, &mut b).unwrap();
                format!("{:?} {:02x}{:02x}", op[0].status(), b[0], b[1])
            }
            "map" => match ops.map(DomId(num(1) as u16), GrantRef(num(2)), true) {
                Ok(m) => {
                    ops.unmap(m).unwrap();
                    "mapped".to_string()
                }
                Err(s) => format!("{s:?}"),
            },
            "faulted" => {
                let p = ops.peer(DomId(num(1) as u16)).unwrap();
                format!("{}", p.faulted())
            }
            "replaced" => format!("{}", pages_replaced()),
            "cut-own" => {
                // Our own file is not a peer's: touching it past its end must still
                // kill us (the guard takes only faults in peers' mappings).
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: setrlimit reads the struct passed; no core file is left behind.
                unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
                let path = rt.domain_dir(DOM0).join("memory");
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
                let mut b = [0u8; 1];
                dom.read(local, 0, &mut b).unwrap();
                format!("survived {b:?}")
            }
            _ => "?".to_string(),
        };
        println!("{reply}");
    }
}

fn start(role: &str, dir: &Dir) -> (Peer, String) {
    let arg = format!("{role} {}", dir.0.display());
    Peer::start("peer_process", PEER_ENV, &arg, LIMIT)
}

fn is_child() -> bool {
    std::env::var(PEER_ENV).is_ok()
}

#[test]
fn a_guest_maps_only_the_driver_domains_event_page() {
    if is_child() {
        return;
    }
    let dir = Dir::new("iso-events");
    let rt = RuntimeDir::new(&dir.0).unwrap();
    let (mut dom0, ready) = start("events", &dir);
    let port = Port(ready.parse().unwrap());

    // Guest 1 binds to the driver domain's port and kicks it, as netfront's
    // handshake and data path do.
    let me = Domain::create(&rt, DomId(1), 16, 16).unwrap();
    let events = EventChannels::new(&me, Some(rt.clone()));
    let mine = events.bind_interdomain(DOM0, port).unwrap();
    assert!(events.notify(mine));
    assert_eq!(dom0.say("wait"), format!("[Port({})]", port.0));

    // Of domain 0's files it holds the event page only.
    let dom0_dir = rt.domain_dir(DOM0);
    let maps = mapped_files();
    let mapped = |f: &str| {
        let p = dom0_dir.join(f).display().to_string();
        maps.iter().filter(|m| **m == p).count()
    };
    assert_eq!(
        mapped("memory"),
        0,
        "a guest maps the driver domain's memory"
    );
    assert_eq!(
        mapped("gnttab"),
        0,
        "a guest maps the driver domain's grant table"
    );
    assert_eq!(mapped("evtchn"), 1);
    // What each access level maps.
    let ev = PeerDomain::open(&rt, DOM0, PeerAccess::Events).unwrap();
    assert!(ev.memory().is_none() && ev.gnttab().is_none() && ev.evtchn().is_some());
    let gr = PeerDomain::open(&rt, DOM0, PeerAccess::Grants).unwrap();
    assert!(gr.memory().is_some() && gr.gnttab().is_some() && gr.evtchn().is_none());
}

/// A hand-made domain directory with files of the given sizes (sparse).
fn fake_domain(rt: &RuntimeDir, domid: DomId, memory: u64, gnttab: u64, evtchn: u64) {
    let d = rt.domain_dir(domid);
    std::fs::create_dir_all(&d).unwrap();
    for (name, len) in [("memory", memory), ("gnttab", gnttab), ("evtchn", evtchn)] {
        let f = std::fs::File::create(d.join(name)).unwrap();
        f.set_len(len).unwrap();
    }
}

#[test]
fn peer_files_outside_the_platforms_limits_are_refused_before_they_are_mapped() {
    if is_child() {
        return;
    }
    let dir = Dir::new("iso-sizes");
    let rt = RuntimeDir::new(&dir.0).unwrap();
    let page = PAGE_SIZE as u64;
    let (max_mem, max_gnt) = (
        u64::from(MAX_PAGES) * page,
        u64::from(MAX_GRANT_ENTRIES) * 8,
    );
    let cases = [
        // (memory, gnttab, evtchn, access, file named in the error)
        (max_mem + page, 64 * 8, page, PeerAccess::Grants, "memory"),
        (16 * page + 100, 64 * 8, page, PeerAccess::Grants, "memory"),
        (16 * page, max_gnt + 8, page, PeerAccess::Grants, "gnttab"),
        (16 * page, 8 * 8, page, PeerAccess::Grants, "gnttab"),
        (16 * page, 64 * 8, 2 * page, PeerAccess::Events, "evtchn"),
        (16 * page, 64 * 8, 100, PeerAccess::Events, "evtchn"),
    ];
    for (i, (memory, gnttab, evtchn, access, bad)) in cases.into_iter().enumerate() {
        let domid = DomId(10 + i as u16);
        fake_domain(&rt, domid, memory, gnttab, evtchn);
        let path = rt.domain_dir(domid).join(bad);
        match PeerDomain::open(&rt, domid, access) {
            Err(ShmError::PeerFileSize { path: p, .. }) => assert_eq!(p, path, "case {i}"),
            Err(e) => panic!("case {i}: refused for another reason: {e}"),
            Ok(_) => panic!("case {i}: {} of {} bytes was mapped", path.display(), {
                std::fs::metadata(&path).unwrap().len()
            }),
        }
        let shown = path.display().to_string();
        assert!(!mapped_files().contains(&shown), "case {i}: left mapped");
    }
    // At the limits, accepted.
    fake_domain(&rt, DomId(30), max_mem, max_gnt, page);
    let p = PeerDomain::open(&rt, DomId(30), PeerAccess::Grants).unwrap();
    assert_eq!(p.memory().unwrap().len() as u64, max_mem);
    // Behind a symbolic link: refused.
    let d = rt.domain_dir(DomId(31));
    std::fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::symlink(rt.domain_dir(DomId(30)).join("memory"), d.join("memory")).unwrap();
    std::fs::File::create(d.join("gnttab"))
        .unwrap()
        .set_len(64 * 8)
        .unwrap();
    assert!(PeerDomain::open(&rt, DomId(31), PeerAccess::Grants).is_err());
}

/// A guest of this process with one page granted to domain 0, filled with `fill`.
fn guest(rt: &RuntimeDir, domid: u16, fill: u8) -> (Domain, GrantRef) {
    let d = Domain::create(rt, DomId(domid), 16, 16).unwrap();
    let f = d.alloc_frame().unwrap();
    d.write(f, 0, &[fill; PAGE_SIZE]).unwrap();
    let g = d.grant_access(DOM0, f, false).unwrap();
    (d, g)
}

#[test]
fn a_guest_truncating_its_memory_under_a_grant_copy_breaks_only_itself() {
    if is_child() {
        return;
    }
    let dir = Dir::new("iso-trunc");
    let rt = RuntimeDir::new(&dir.0).unwrap();
    let (g1, r1) = guest(&rt, 1, 0xa1);
    let (_g2, r2) = guest(&rt, 2, 0xb2);
    let (mut dom0, _) = start("grants", &dir);
    assert_eq!(dom0.say("open 1"), "ok");
    assert_eq!(dom0.say("open 2"), "ok");
    assert_eq!(dom0.say(&format!("copy 1 {}", r1.0)), "Okay a1a1");
    assert_eq!(dom0.say(&format!("copy 2 {}", r2.0)), "Okay b2b2");

    // Guest 1 cuts its memory file to nothing while domain 0 has it mapped (this
    // process must not touch guest 1's pages from here on: they are gone here too).
    OpenOptions::new()
        .write(true)
        .open(rt.domain_dir(DomId(1)).join("memory"))
        .unwrap()
        .set_len(0)
        .unwrap();
    // The copy fails for guest 1 alone; domain 0 lives and keeps serving guest 2.
    let copy = dom0.say(&format!("copy 1 {}", r1.0));
    assert!(copy.starts_with("GeneralError "), "{copy}");
    assert_eq!(dom0.say("faulted 1"), "true");
    assert_eq!(dom0.say(&format!("map 1 {}", r1.0)), "GeneralError");
    assert_eq!(dom0.say(&format!("copy 2 {}", r2.0)), "Okay b2b2");
    assert_eq!(dom0.say("faulted 2"), "false");
    assert_eq!(dom0.say("replaced"), "1", "one page replaced");
    drop(dom0);
    // Guest 1's own mapping is dropped without touching its pages.
    drop(g1);
}

#[test]
fn a_fault_outside_any_peers_mapping_still_ends_the_process() {
    if is_child() {
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    let dir = Dir::new("iso-own");
    let rt = RuntimeDir::new(&dir.0).unwrap();
    let (_g1, r1) = guest(&rt, 1, 0xa1);
    let (mut dom0, _) = start("grants", &dir);
    // The guard is installed once a peer is mapped.
    assert_eq!(dom0.say("open 1"), "ok");
    assert_eq!(dom0.say(&format!("copy 1 {}", r1.0)), "Okay a1a1");
    assert_eq!(dom0.ask("cut-own"), None, "the process went on");
    assert_eq!(dom0.exit_status().signal(), Some(libc::SIGBUS));
}
