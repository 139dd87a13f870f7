//! xennet's ring and netif types against Xen's own C headers: sizes and offsets from
//! `<xen/io/netif.h>`, and a C peer using `io/ring.h`'s macros on the same page as the
//! Rust `FrontRing`/`BackRing`, in both roles and across the u32 index wrap.
//! Skips with a reason when the headers (libxen-dev) or a C compiler are missing.

use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;

use xennet_platform::shm::Region;
use xennet_ring::grant::{GnttabCopy, GrantEntryV1};
use xennet_ring::netif::*;
use xennet_ring::{ring_entries, BackRing, FrontRing, RingIdx, SharedRing, PAGE_SIZE};

struct Peer {
    exe: PathBuf,
    dir: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn build_peer(tag: &str) -> Option<Peer> {
    if !Path::new("/usr/include/xen/io/netif.h").exists() {
        println!("skipped: /usr/include/xen/io/netif.h missing (install libxen-dev)");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("xennet-cabi-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let exe = dir.join("ring_peer");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/ring_peer.c");
    match Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
    {
        Ok(s) if s.success() => Some(Peer { exe, dir }),
        Ok(s) => panic!("compiling the C peer against Xen's headers failed: {s}"),
        Err(e) => {
            println!("skipped: no C compiler ({e})");
            None
        }
    }
}

impl Peer {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.exe).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{:?}: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn page(&self, name: &str) -> (Region, String) {
        let path = self.dir.join(name);
        let _ = std::fs::remove_file(&path);
        (
            Region::create(&path, PAGE_SIZE).unwrap(),
            path.display().to_string(),
        )
    }
}

#[test]
fn sizes_offsets_and_constants_match_xen_headers() {
    let Some(peer) = build_peer("abi") else {
        return;
    };
    let c: HashMap<String, i64> = peer
        .run(&["abi"])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect();
    let want: Vec<(&str, i64)> = vec![
        ("tx_request", size_of::<TxRequest>() as i64),
        ("tx_response", size_of::<TxResponse>() as i64),
        ("rx_request", size_of::<RxRequest>() as i64),
        ("rx_response", size_of::<RxResponse>() as i64),
        ("extra_info", size_of::<ExtraInfo>() as i64),
        ("grant_entry_v1", size_of::<GrantEntryV1>() as i64),
        ("gnttab_copy", size_of::<GnttabCopy>() as i64),
        ("tx_request.gref", offset_of!(TxRequest, gref) as i64),
        ("tx_request.offset", offset_of!(TxRequest, offset) as i64),
        ("tx_request.flags", offset_of!(TxRequest, flags) as i64),
        ("tx_request.id", offset_of!(TxRequest, id) as i64),
        ("tx_request.size", offset_of!(TxRequest, size) as i64),
        ("rx_response.offset", offset_of!(RxResponse, offset) as i64),
        ("rx_response.flags", offset_of!(RxResponse, flags) as i64),
        ("rx_response.status", offset_of!(RxResponse, status) as i64),
        ("sring.req_event", 4),
        ("sring.rsp_prod", 8),
        ("sring.rsp_event", 12),
        ("sring.ring", xennet_ring::HEADER_SIZE as i64),
        ("rsp_okay", i64::from(NETIF_RSP_OKAY)),
        ("rsp_error", i64::from(NETIF_RSP_ERROR)),
        ("rsp_dropped", i64::from(NETIF_RSP_DROPPED)),
        ("rsp_null", i64::from(NETIF_RSP_NULL)),
        ("txf_more_data", i64::from(TxFlags::MORE_DATA.bits())),
        ("txf_extra_info", i64::from(TxFlags::EXTRA_INFO.bits())),
        ("rxf_more_data", i64::from(RxFlags::MORE_DATA.bits())),
        ("rxf_gso_prefix", i64::from(RxFlags::GSO_PREFIX.bits())),
    ];
    for (k, v) in want {
        assert_eq!(c.get(k), Some(&v), "{k}");
    }
    for order in 0..=4 {
        let len = PAGE_SIZE << order;
        assert_eq!(
            c[&format!("tx_ring_size.{order}")],
            i64::from(ring_entries::<TxRequest, TxResponse>(len))
        );
        assert_eq!(
            c[&format!("rx_ring_size.{order}")],
            i64::from(ring_entries::<RxRequest, RxResponse>(len))
        );
    }
}

fn req(i: u16) -> TxRequest {
    TxRequest {
        gref: xennet_ring::GrantRef(1000 + u32::from(i)),
        offset: 0,
        flags: 0,
        id: i,
        size: 60 + i,
    }
}

/// Rust front, C back (`BACK_RING_ATTACH`, `RING_COPY_REQUEST`,
/// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`, `RING_FINAL_CHECK_FOR_REQUESTS`).
#[test]
fn rust_front_and_xen_macro_back_exchange_across_the_wrap() {
    let Some(peer) = build_peer("front") else {
        return;
    };
    let (page, path) = peer.page("tx-ring");
    let start = u32::MAX - 40;
    // A long-running ring: every index near the wrap (as if 2^32 - 41 entries passed).
    for (w, v) in [(0, start), (4, start + 1), (8, start), (12, start + 1)] {
        page.atomic_u32(w).unwrap().store(v, Ordering::SeqCst);
    }
    let mem = page.ptr(0, PAGE_SIZE).unwrap();
    // SAFETY: the region outlives the ring; both ends use the page only as a ring.
    let sring = unsafe { SharedRing::new(mem, PAGE_SIZE).unwrap() };
    let mut front = FrontRing::<TxRequest, TxResponse>::with_memory(sring, RingIdx(start));
    let mut id = 0u16;
    for round in 0..4 {
        let n = 30 + round * 7;
        for _ in 0..n {
            front.push_request(&req(id)).unwrap();
            id += 1;
        }
        // The C back armed req_event in its final check: every round must kick.
        assert!(front.push_requests_and_check_notify(), "round {round}");
        let out = peer.run(&["back", &path]);
        assert!(out.lines().all(|l| l.starts_with("notify=")), "{out}");
        let mut got = 0;
        while let Some(rsp) = front.pop_response().unwrap() {
            assert_eq!(rsp.status, ((rsp.id as i32 * 2) % 7) as i16);
            got += 1;
        }
        assert_eq!(got, n);
    }
    assert!(
        front.req_prod_pvt().0 < 1000,
        "indices wrapped past u32::MAX"
    );
}

/// C front (`SHARED_RING_INIT`/`FRONT_RING_ATTACH`, `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`),
/// Rust back, C reaping the responses.
#[test]
fn xen_macro_front_and_rust_back_exchange_across_the_wrap() {
    let Some(peer) = build_peer("back") else {
        return;
    };
    let (page, path) = peer.page("tx-ring");
    let mem = page.ptr(0, PAGE_SIZE).unwrap();
    // Fresh ring from C's SHARED_RING_INIT: the first push must notify (req_event 1).
    assert_eq!(peer.run(&["front", &path, "0", "5"]), "notify=1\n");
    // SAFETY: as above.
    let mut back = unsafe { BackRing::<TxRequest, TxResponse>::attach(mem, PAGE_SIZE).unwrap() };
    for i in 0..5u16 {
        assert_eq!(back.pop_request().unwrap(), Some(req(i)));
        back.push_response(&TxResponse { id: i, status: 0 })
            .unwrap();
    }
    assert!(
        back.push_responses_and_check_notify(),
        "rsp_event starts at 1"
    );
    let reaped = peer.run(&["reap", &path, "0"]);
    assert_eq!(reaped.lines().count(), 5, "{reaped}");

    // Now a ring near the wrap.
    let start = u32::MAX - 3;
    for (w, v) in [(0, start), (4, start + 1), (8, start), (12, start + 1)] {
        page.atomic_u32(w).unwrap().store(v, Ordering::SeqCst);
    }
    assert_eq!(
        peer.run(&["front", &path, &start.to_string(), "9"]),
        "notify=1\n"
    );
    // SAFETY: as above.
    let mut back = unsafe { BackRing::<TxRequest, TxResponse>::attach(mem, PAGE_SIZE).unwrap() };
    let mut n = 0u16;
    while let Some(r) = back.pop_request().unwrap() {
        assert_eq!(r, req(n));
        back.push_response(&TxResponse {
            id: r.id,
            status: 1,
        })
        .unwrap();
        n += 1;
    }
    assert_eq!(n, 9);
    back.push_responses_and_check_notify();
    let reaped = peer.run(&["reap", &path, &start.to_string()]);
    let ids: Vec<&str> = reaped.lines().collect();
    assert_eq!(ids.len(), 9, "{reaped}");
    assert_eq!(ids[8], "rsp 8 1");
}
