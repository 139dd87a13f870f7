//! Frames queued for a guest that posts no buffers: bounded in bytes, aged out, every
//! drop counted.

use xennet_platform::clock;

use super::{domains, rx_path, Frontend};
use crate::vif::{VifCounters, RX_QUEUE_BYTES, RX_STALL};

/// Linux netback's bound: half a ring of pages (`XENVIF_RX_QUEUE_BYTES`).
const BOUND: usize = 256 / 2 * 4096;

#[test]
fn the_bound_is_linux_netbacks() {
    assert_eq!(RX_QUEUE_BYTES, BOUND);
}

#[test]
fn a_guest_that_posts_no_buffers_gets_at_most_half_a_ring_of_pages_queued() {
    let d = domains();
    let fe = Frontend::new(&d);
    let mut rx = rx_path(&d, &fe);
    let (mut c, t0) = (VifCounters::default(), clock::now());
    let big = vec![0u8; 65535];
    let queued = (0..1024).filter(|_| rx.enqueue(&big, t0, &mut c)).count();
    assert_eq!(queued, BOUND / big.len(), "65535-byte frames queued");
    assert_eq!(
        c.rx_dropped(),
        1024 - queued as u64,
        "every refusal counted"
    );
    // What is left still takes small frames, up to the bound.
    let small = vec![0u8; 60];
    let room = BOUND - queued * big.len();
    let more = (0..1024).filter(|_| rx.enqueue(&small, t0, &mut c)).count();
    assert_eq!(more, room / small.len());
    assert_eq!(rx.queued(), queued + more);
}

#[test]
fn frames_that_wait_too_long_age_out_counted_and_free_their_room() {
    let d = domains();
    let fe = Frontend::new(&d);
    let mut rx = rx_path(&d, &fe);
    let (mut c, t0) = (VifCounters::default(), clock::now());
    let big = vec![0u8; 65535];
    let queued = (0..16).filter(|_| rx.enqueue(&big, t0, &mut c)).count();
    assert!(!rx.enqueue(&big, t0, &mut c), "full");
    assert_eq!(rx.stall_deadline(), Some(t0 + RX_STALL));
    // Not yet due.
    assert_eq!(rx.process(&d.peer, &mut c, t0 + RX_STALL / 2), Ok(0));
    assert_eq!(rx.queued(), queued);
    let t1 = t0 + RX_STALL;
    assert_eq!(rx.process(&d.peer, &mut c, t1), Ok(0));
    assert_eq!((rx.queued(), c.rx_dropped_stalled), (0, queued as u64));
    assert_eq!(rx.stall_deadline(), None, "nothing left to age");
    assert!(
        rx.enqueue(&big, t1, &mut c),
        "the aged frames' room is free again"
    );
}

#[test]
fn frames_the_guest_takes_free_their_room() {
    let d = domains();
    let mut fe = Frontend::new(&d);
    let mut rx = rx_path(&d, &fe);
    let (mut c, t0) = (VifCounters::default(), clock::now());
    let big = vec![7u8; 65535];
    while rx.enqueue(&big, t0, &mut c) {}
    let queued = rx.queued();
    // One frame's worth of buffers (16 pages): that frame leaves, another fits.
    fe.post_rx(&d, 16);
    assert_eq!(rx.process(&d.peer, &mut c, t0), Ok(1));
    assert_eq!((rx.queued(), c.rx_packets), (queued - 1, 1));
    assert!(rx.enqueue(&big, t0, &mut c));
    assert!(!rx.enqueue(&big, t0, &mut c));
}
