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
fn two_transactions_each_under_the_node_quota_cannot_both_commit_past_it() {
    let (_dir, _xs, g) = guest_with(Limits {
        nodes_per_domain: 10,
        ..Limits::default()
    });
    // The home, a and b: 3 nodes owned.
    g.mkdir("a").unwrap();
    g.mkdir("b").unwrap();
    let ta = g.transaction().unwrap();
    let tb = g.transaction().unwrap();
    for i in 0..4 {
        ta.write(&format!("a/{i}"), "").unwrap();
        tb.write(&format!("b/{i}"), "").unwrap();
    }
    // Each fits alone (7 nodes); they touch different nodes, so no EAGAIN.
    ta.commit().unwrap();
    let second = tb.commit();
    assert_eq!(
        second.as_ref().err().and_then(|e| e.errno()),
        Some(Errno::ENOSPC),
        "the second commit takes guest 5 to 11 nodes, over its quota of 10: {second:?}"
    );
    assert_eq!(errno(g.read("b/0")), Errno::ENOENT);
    // What is left of the quota is still usable, and no more.
    g.write("c/0", "").unwrap();
    g.write("c/1", "").unwrap();
    assert_eq!(errno(g.write("c/2", "")), Errno::ENOSPC);
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

#[test]
fn a_write_refused_for_the_transaction_node_limit_is_not_applied_at_commit() {
    let (_dir, _xs, g) = guest_with(Limits {
        nodes_per_transaction: 4,
        ..Limits::default()
    });
    g.mkdir("t").unwrap();
    let tx = g.transaction().unwrap();
    let mut refused = None;
    for i in 0..10 {
        if let Err(e) = tx.write(&format!("t/{i}"), "v") {
            assert_eq!(e.errno(), Some(Errno::ENOSPC));
            refused = Some(format!("t/{i}"));
            break;
        }
    }
    let refused = refused.expect("the transaction node limit refuses a write");
    let commit = tx.commit();
    let r = g.read(&refused);
    assert!(
        r.as_ref().is_err_and(|e| e.errno() == Some(Errno::ENOENT)),
        "{refused}, answered ENOSPC inside the transaction, was applied at commit: {r:?}"
    );
    // As in xenstored, a transaction with a refused request fails as a whole.
    assert_eq!(
        commit.as_ref().err().and_then(|e| e.errno()),
        Some(Errno::ENOSPC),
        "{commit:?}"
    );
    assert!(g.directory("t").unwrap().is_empty());
    // The limit is per transaction: the next one starts afresh.
    g.transact(|tx| tx.write("t/0", "v")).unwrap();
    assert_eq!(g.read_string("t/0").unwrap(), "v");
}
