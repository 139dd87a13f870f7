//! A frontend that breaks the protocol on purpose: each fault is graded as Linux
//! netback grades it (fatal: that vif is disconnected with a counted reason; or the
//! packet answered with ERROR and the vif kept), and nothing panics.

use std::ptr::NonNull;
use std::time::Instant;

use xennet::harness::Side;
use xennet::netback::vif::{NetbackQueue, QueueSetup, VifError, FATAL_SLOTS};
use xennet::platform::shm::{Domain, EventPort, GrantOps};
use xennet::ring::netif::{
    ExtraInfo, RxRequest, RxResponse, TxFlags, TxRequest, TxResponse, NETIF_RSP_ERROR,
    NETIF_RSP_OKAY,
};
use xennet::ring::{
    DomId, Frame, FrameAlloc, FrontRing, GrantAccess, GrantRef, GrantStatus, LocalMemory,
    RingError, PAGE_SIZE,
};

type Queue = NetbackQueue<GrantOps, Domain, EventPort>;

/// A hand-driven frontend: its own rings and one page of frame data.
struct Evil {
    tx: FrontRing<TxRequest, TxResponse>,
    rx: FrontRing<RxRequest, RxResponse>,
    tx_page: NonNull<u8>,
    data: GrantRef,
    data_ro_for_rx: GrantRef,
    back: Queue,
}

fn evil() -> Evil {
    let dom0 = Side::anonymous(DomId(0), 1024).unwrap();
    let domu = Side::anonymous(DomId(7), 256).unwrap();
    dom0.know(&domu);
    let d = &domu.domain;
    let (tf, rf, df) = (
        d.alloc_frame().unwrap(),
        d.alloc_frame().unwrap(),
        d.alloc_frame().unwrap(),
    );
    let frame: Vec<u8> = (0..PAGE_SIZE).map(|i| i as u8).collect();
    d.write(df, 0, &frame).unwrap();
    let g = |f: Frame, ro| d.grant_access(DomId(0), f, ro).unwrap();
    let (tx_ref, rx_ref, data, data_ro) = (g(tf, false), g(rf, false), g(df, true), g(df, true));
    let tx_page = d.page_ptr(tf).unwrap();
    // SAFETY: the pages live as long as the domain, which the queue keeps alive.
    let tx = unsafe { FrontRing::init(tx_page, PAGE_SIZE).unwrap() };
    // SAFETY: as above.
    let rx = unsafe { FrontRing::init(d.page_ptr(rf).unwrap(), PAGE_SIZE).unwrap() };
    let gp = domu.events.alloc_unbound(DomId(0)).unwrap();
    let bp = dom0.events.bind_interdomain(DomId(7), gp).unwrap();
    let setup = QueueSetup {
        frontend: DomId(7),
        tx_ring_ref: tx_ref,
        rx_ring_ref: rx_ref,
    };
    let kick = dom0.events.port(bp);
    let back = NetbackQueue::connect(
        dom0.ops.clone(),
        dom0.domain.clone(),
        setup,
        None,
        kick.clone(),
        kick,
        Instant::now(),
    )
    .unwrap();
    Evil {
        tx,
        rx,
        tx_page,
        data,
        data_ro_for_rx: data_ro,
        back,
    }
}

fn slot(gref: GrantRef, offset: u16, size: u16, more: bool, id: u16) -> TxRequest {
    TxRequest {
        gref,
        offset,
        flags: if more { TxFlags::MORE_DATA.bits() } else { 0 },
        id,
        size,
    }
}

impl Evil {
    fn send(&mut self, reqs: &[TxRequest]) {
        for r in reqs {
            self.tx.push_request(r).unwrap();
        }
        self.tx.push_requests();
    }

    fn run(&mut self) -> (Result<usize, VifError>, usize) {
        let mut delivered = 0;
        let r = self
            .back
            .process_tx(64, Instant::now(), &mut |_| delivered += 1);
        (r, delivered)
    }

    fn statuses(&mut self) -> Vec<i16> {
        let mut v = Vec::new();
        while let Ok(Some(r)) = self.tx.pop_response() {
            v.push(r.status);
        }
        v
    }
}

#[test]
fn a_good_packet_is_delivered() {
    let mut e = evil();
    let d = e.data;
    e.send(&[slot(d, 0, 100, false, 1)]);
    assert_eq!(e.run(), (Ok(1), 1));
    assert_eq!(e.statuses(), [NETIF_RSP_OKAY]);
}

#[test]
fn req_prod_far_ahead_disconnects_the_vif() {
    let mut e = evil();
    // SAFETY: the ring page is live; this is the hostile write under test.
    unsafe { (e.tx_page.as_ptr() as *mut u32).write_volatile(1000) };
    let (r, _) = e.run();
    assert!(matches!(
        r,
        Err(VifError::Ring(RingError::ProducerOverflow { .. }))
    ));
    assert!(e.back.broken().is_some());
    assert_eq!(e.back.counters().fatal_errors, 1);
    // It stays down: later calls report the same fault without touching the ring.
    assert!(e.run().0.is_err());
}

#[test]
fn chain_of_twenty_slots_disconnects_and_nineteen_is_dropped() {
    let mut e = evil();
    let d = e.data;
    let chain = |n: usize| -> Vec<TxRequest> {
        (0..n)
            .map(|i| {
                slot(
                    d,
                    0,
                    if i == 0 { n as u16 * 10 } else { 10 },
                    i + 1 < n,
                    i as u16,
                )
            })
            .collect()
    };
    e.send(&chain(19));
    assert_eq!(e.run(), (Ok(1), 0));
    assert!(e.statuses().iter().all(|&s| s == NETIF_RSP_ERROR));
    assert_eq!(e.back.counters().tx_errors, 1);
    e.send(&chain(FATAL_SLOTS));
    assert_eq!(e.run().0, Err(VifError::ChainTooLong(FATAL_SLOTS)));
}

#[test]
fn slot_crossing_its_page_disconnects() {
    let mut e = evil();
    let d = e.data;
    e.send(&[slot(d, 4000, 200, false, 1)]);
    assert!(matches!(
        e.run().0,
        Err(VifError::SlotCrossesPage { offset: 4000, .. })
    ));
}

#[test]
fn short_frames_and_disagreeing_sizes_are_answered_with_error() {
    let mut e = evil();
    let d = e.data;
    e.send(&[slot(d, 0, 10, false, 1)]);
    // Total 100 but the second fragment claims 500.
    e.send(&[slot(d, 0, 100, true, 2), slot(d, 0, 500, false, 3)]);
    assert_eq!(e.run(), (Ok(2), 0));
    assert_eq!(e.statuses(), [NETIF_RSP_ERROR; 3]);
    assert!(e.back.broken().is_none());
}

#[test]
fn never_granted_ref_disconnects() {
    let mut e = evil();
    e.send(&[slot(GrantRef(4000), 0, 100, false, 1)]);
    assert!(matches!(e.run().0, Err(VifError::BadGrant(_))));
}

#[test]
fn unknown_extra_info_type_disconnects() {
    let mut e = evil();
    let d = e.data;
    let mut first = slot(d, 0, 100, false, 1);
    first.flags |= TxFlags::EXTRA_INFO.bits();
    let bad = ExtraInfo {
        type_: 9,
        flags: 0,
        u: [0; 6],
    };
    e.send(&[first, bad.into()]);
    assert_eq!(e.run().0, Err(VifError::BadExtra(9)));
}

#[test]
fn chain_running_past_the_published_requests_disconnects() {
    let mut e = evil();
    let d = e.data;
    e.send(&[slot(d, 0, 100, true, 1)]);
    assert_eq!(e.run().0, Err(VifError::IncompleteChain));
}

#[test]
fn read_only_grant_posted_for_receive_disconnects() {
    let mut e = evil();
    let ro = e.data_ro_for_rx;
    e.rx.push_request(&RxRequest {
        id: 0,
        pad: 0,
        gref: ro,
    })
    .unwrap();
    e.rx.push_requests();
    assert!(e.back.enqueue_rx(&[0xffu8; 60], Instant::now()));
    assert_eq!(
        e.back.process_rx(Instant::now()),
        Err(VifError::BadGrant(GrantStatus::PermissionDenied))
    );
    // Frames queued for a disconnected vif are counted, not lost silently.
    assert!(!e.back.enqueue_rx(&[0xffu8; 60], Instant::now()));
    assert_eq!(e.back.counters().rx_dropped_disconnected, 1);
}
