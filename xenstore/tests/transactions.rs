//! Transactions of guests under Xen's limits (issue 17): what a commit checks
//! again, what a refused request leaves behind, and what a transaction costs.

use std::sync::atomic::Ordering;

use xennet_xenstore::{domain_socket, Errno, Limits, Xenstored, XsClient};

mod common;
use common::*;

/// A daemon with `limits` and a client of guest 5.
fn guest_with(limits: Limits) -> (TempDir, Xenstored, XsClient) {
    let dir = TempDir::new();
    let xs = Xenstored::start_with(&dir.0, limits).unwrap();
    xs.introduce(5).unwrap();
    let g = XsClient::connect(domain_socket(&dir.0, 5)).unwrap();
    (dir, xs, g)
}

#[test]
fn starting_a_transaction_copies_nothing_of_the_store() {
    let (dir, xs, g) = guest_with(Limits::default());
    let dom0 = XsClient::connect(dir.0.join("socket")).unwrap();
    dom0.transact(|tx| {
        (0..2000).try_for_each(|i| tx.write(&format!("/tool/big/{i}"), [b'x'; 1024]))
    })
    .unwrap();
    let copies = || xs.stats().transaction_node_copies.load(Ordering::Relaxed);
    let before = copies();
    let txs: Vec<_> = (0..10).map(|_| g.transaction().unwrap()).collect();
    assert_eq!(errno(g.transaction()), Errno::ENOSPC);
    assert_eq!(
        copies() - before,
        0,
        "starting 11 transactions over a store of 2000 nodes copied nodes"
    );
    // Reading copies nothing either; a write copies what it changes.
    txs[0].read("/local/domain/5").unwrap();
    txs[0].write("x", "1").unwrap();
    assert!(copies() - before <= 2, "{} nodes copied", copies() - before);
    txs.into_iter().next().unwrap().commit().unwrap();
    assert_eq!(g.read_string("x").unwrap(), "1");
}
