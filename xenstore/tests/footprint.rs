//! Memory figures for issue 17, measured the way the issue states them: the
//! growth of this process's RSS (daemon and clients share the process). They
//! print numbers and assert nothing; the structural bounds are asserted in
//! `slow_readers.rs` and `transactions.rs`. Run with
//! `cargo test -p xennet-xenstore --test footprint -- --ignored --nocapture --test-threads 1`.

use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use xennet_xenstore::{domain_socket, wire, Xenstored, XsClient};

mod common;
use common::*;

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn mib(kib: u64, since: u64) -> f64 {
    (kib as f64 - since as f64) / 1024.0
}

/// 200k READs of a 2 KiB node from a guest that never reads a reply.
#[test]
#[ignore = "measurement: prints RSS growth"]
fn rss_of_200k_reads_never_read() {
    const READS: u32 = 200_000;
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    xs.introduce(5).unwrap();
    let g = XsClient::connect(domain_socket(&dir.0, 5)).unwrap();
    g.write("big", [b'x'; 2048]).unwrap();
    let s = UnixStream::connect(domain_socket(&dir.0, 5)).unwrap();
    let msgs: Vec<u8> = (0..READS)
        .flat_map(|i| request(wire::MsgType::Read as u32, i, b"big\0"))
        .collect();
    let handled = || xs.stats().requests.load(Ordering::Relaxed);
    let start = handled();
    let before = rss_kib();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&msgs);
    });
    // Until the daemon has read everything or stopped reading for a second.
    let (mut last, mut since) = (handled(), Instant::now());
    while handled() - start < u64::from(READS) && since.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(50));
        if handled() != last {
            (last, since) = (handled(), Instant::now());
        }
    }
    let after = rss_kib();
    println!(
        "200k READs of a 2 KiB node never read: {} requests read, RSS +{:.1} MiB",
        handled() - start,
        mib(after, before)
    );
    let _ = s.shutdown(Shutdown::Both);
    writer.join().unwrap();
}

/// 320 open transactions over a store of 1800 nodes of 1000 bytes.
#[test]
#[ignore = "measurement: prints RSS growth"]
fn rss_of_320_transactions_over_a_1_8_mb_store() {
    let dir = TempDir::new();
    let xs = Xenstored::start(&dir.0).unwrap();
    let c = XsClient::connect(xs.socket_path()).unwrap();
    c.transact(|tx| (0..1800).try_for_each(|i| tx.write(&format!("/tool/big/{i}"), [b'x'; 1000])))
        .unwrap();
    let before = rss_kib();
    let txs: Vec<_> = (0..320).map(|_| c.transaction().unwrap()).collect();
    let after = rss_kib();
    println!(
        "320 transactions over a 1.8 MB store: RSS +{:.1} MiB",
        mib(after, before)
    );
    drop(txs);
}
