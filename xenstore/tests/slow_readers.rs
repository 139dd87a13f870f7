//! A client that sends requests and never reads the replies (issue 17): the
//! daemon stops reading its requests once a bounded outbox is full, instead of
//! queueing replies without end, and loses none of them.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use xennet_xenstore::{domain_socket, wire, Limits, Xenstored, XsClient};

mod common;
use common::*;

/// Sends `n` READs of `path` on a fresh connection to `socket` without reading,
/// waits until the daemon has read them all or stopped reading, checks what
/// was queued, then reads every reply.
fn flood_without_reading(xs: &Xenstored, socket: &Path, path: &str, n: u32) {
    let limits = Limits::default();
    let handled = || xs.stats().requests.load(Ordering::Relaxed);
    let start = handled();
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut body = path.as_bytes().to_vec();
    body.push(0);
    let msgs: Vec<u8> = (0..n)
        .flat_map(|i| request(wire::MsgType::Read as u32, i, &body))
        .collect();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&msgs));
    let deadline = Instant::now() + WAIT;
    while handled() - start < u64::from(n) && xs.stalled_connections() == 0 {
        assert!(
            Instant::now() < deadline,
            "the daemon neither read nor paused"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // One request's output (a reply and a watch event) may pass the limit.
    let bound = limits.outstanding_bytes + 2 * (wire::HEADER_LEN + wire::PAYLOAD_MAX);
    let peak = xs.stats().outbox_peak_bytes.load(Ordering::Relaxed) as usize;
    assert!(
        peak <= bound,
        "{} of {n} requests read, {peak} bytes of replies queued to a client that reads none (bound {bound})",
        handled() - start
    );
    assert!(handled() - start < u64::from(n));
    assert!(xs.stats().reads_paused.load(Ordering::Relaxed) >= 1);
    // Nothing was dropped: every reply comes, in order, once the client reads.
    for i in 0..n {
        let (ty, id, value) = reply(&mut s);
        assert_eq!((ty, id, value.len()), (wire::MsgType::Read as u32, i, 2048));
    }
    writer.join().unwrap().unwrap();
    assert_eq!(xs.stalled_connections(), 0);
}

#[test]
fn a_client_that_never_reads_its_replies_stops_being_read() {
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    xs.introduce(5).unwrap();
    let g = XsClient::connect(domain_socket(&dir.0, 5)).unwrap();
    g.write("big", [b'x'; 2048]).unwrap();
    // 8 MB of replies: far more than the outbox and the socket buffers hold.
    flood_without_reading(&xs, &domain_socket(&dir.0, 5), "big", 4000);
    // Domain 0's connections are flow-controlled the same way.
    flood_without_reading(&xs, &xs.socket_path(), "/local/domain/5/big", 4000);
    // The daemon served everyone meanwhile and still does.
    assert_eq!(g.read("big").unwrap().len(), 2048);
}
