//! Guest transmit with rate credit: each request is read off the ring once, and the
//! packet charged is the packet built.

use xennet_platform::clock;
use xennet_ring::netif::{TxRequest, NETIF_RSP_OKAY};
use xennet_ring::time::Duration;

use super::{domains, slot, tx_path, Frontend};
use crate::vif::VifCounters;

/// What a frontend rewrites each slot to once netback has read it: a packet of a
/// whole page instead of the 64 bytes it was charged for.
fn grow(r: TxRequest) -> TxRequest {
    TxRequest { size: 4000, ..r }
}

const RATE: Option<(u64, Duration)> = Some((100, Duration::from_millis(10)));

#[test]
fn a_rate_limited_packet_is_the_one_read_when_it_was_charged() {
    let d = domains();
    let mut fe = Frontend::new(&d);
    let (ring, reads) = fe.rewriting_tx(grow);
    let t0 = clock::now();
    let mut tx = tx_path(&d, ring, RATE, t0);
    fe.send(&[slot(fe.data, 0, 64, 1)]);
    let (mut c, mut got) = (VifCounters::default(), Vec::new());
    let n = tx.process(&d.peer, &mut c, 64, t0, &mut |f| got.push(f.len()));
    assert_eq!(n, Ok(1));
    assert_eq!(got, [64], "built from a second read of the slot");
    assert_eq!(reads.borrow()[..2], [1, 0], "each slot is read once");
    assert_eq!(fe.statuses(), [NETIF_RSP_OKAY]);
}

#[test]
fn a_packet_held_for_credit_is_built_from_the_copy_taken_before_the_wait() {
    let d = domains();
    let mut fe = Frontend::new(&d);
    let (ring, reads) = fe.rewriting_tx(grow);
    let t0 = clock::now();
    let mut tx = tx_path(&d, ring, RATE, t0);
    fe.send(&[slot(fe.data, 0, 64, 1), slot(fe.data, 0, 64, 2)]);
    let (mut c, mut got) = (VifCounters::default(), Vec::new());
    // 100 bytes of credit: the first packet passes, the second waits.
    let n = tx.process(&d.peer, &mut c, 64, t0, &mut |f| got.push(f.len()));
    assert_eq!(n, Ok(1));
    // The frontend rewrote the waiting slot meanwhile; the refill lets the packet
    // it was charged for through, as it read then.
    let t1 = t0 + Duration::from_millis(10);
    let n = tx.process(&d.peer, &mut c, 64, t1, &mut |f| got.push(f.len()));
    assert_eq!(n, Ok(1));
    assert_eq!(got, [64, 64]);
    assert_eq!((c.tx_packets, c.tx_bytes, c.tx_credit_waits), (2, 128, 1));
    assert_eq!(reads.borrow()[..3], [1, 1, 0], "each slot is read once");
    assert_eq!(fe.statuses(), [NETIF_RSP_OKAY, NETIF_RSP_OKAY]);
}

#[test]
fn an_idle_rate_limited_path_sets_no_timer_and_a_waiting_one_sleeps_until_the_refill() {
    let d = domains();
    let mut fe = Frontend::new(&d);
    let (ring, _) = fe.rewriting_tx(|r| r);
    let t0 = clock::now();
    let mut tx = tx_path(&d, ring, RATE, t0);
    // Nothing waits for credit: no timer, whatever the refill time says.
    assert_eq!(tx.next_refill(), None, "an idle queue needs no wake-up");
    assert_eq!(tx.final_check(), Ok(false));
    fe.send(&[slot(fe.data, 0, 64, 1), slot(fe.data, 0, 64, 2)]);
    let mut c = VifCounters::default();
    assert_eq!(tx.process(&d.peer, &mut c, 64, t0, &mut |_| {}), Ok(1));
    // The second packet waits and a third is published: nothing can move before
    // the refill, so the ring is no reason to stay awake; the refill is the timer.
    fe.send(&[slot(fe.data, 0, 64, 3)]);
    assert_eq!(tx.final_check(), Ok(false), "requests waiting for credit");
    let t1 = t0 + Duration::from_millis(10);
    assert_eq!(tx.next_refill(), Some(t1));
    assert_eq!(tx.process(&d.peer, &mut c, 64, t1, &mut |_| {}), Ok(1));
    assert_eq!(tx.next_refill(), Some(t1 + Duration::from_millis(10)));
}
