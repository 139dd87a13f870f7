//! Unit tests of the ring ends on real (process-local) pages.

use core::ptr::NonNull;
use std::boxed::Box;
use std::vec::Vec;

use crate::netif::{RxRequest, RxResponse, TxRequest, TxResponse};
use crate::{BackRing, FrontRing, RingError, RingIdx, Word, HEADER_SIZE};

#[repr(C, align(4096))]
struct Pages([u8; 4096 * 16]);

fn pages() -> Box<Pages> {
    Box::new(Pages([0xAA; 4096 * 16]))
}

type TxFront = FrontRing<TxRequest, TxResponse>;
type TxBack = BackRing<TxRequest, TxResponse>;

fn pair(p: &mut Pages, len: usize) -> (TxFront, TxBack) {
    let mem = NonNull::new(p.0.as_mut_ptr()).unwrap();
    // SAFETY: the pages outlive both ends in every test.
    unsafe {
        (
            TxFront::init(mem, len).unwrap(),
            TxBack::attach(mem, len).unwrap(),
        )
    }
}

fn req(id: u16) -> TxRequest {
    TxRequest {
        gref: crate::GrantRef(u32::from(id) + 1000),
        id,
        size: 60 + id,
        ..Default::default()
    }
}

/// Set every index of a fresh ring to `start` (simulating a long-running ring).
fn start_at(p: &mut Pages, start: u32) -> (TxFront, TxBack) {
    let (front, _) = pair(p, 4096);
    for w in [Word::ReqProd, Word::RspProd] {
        crate::RingMemory::<TxRequest, TxResponse>::store(
            front.memory(),
            w,
            start,
            core::sync::atomic::Ordering::Relaxed,
        );
    }
    let mem = NonNull::new(p.0.as_mut_ptr()).unwrap();
    let front = FrontRing::with_memory(
        // SAFETY: as in `pair`.
        unsafe { crate::SharedRing::new(mem, 4096).unwrap() },
        RingIdx(start),
    );
    // SAFETY: as in `pair`.
    let back = unsafe { TxBack::attach(mem, 4096).unwrap() };
    (front, back)
}

#[test]
fn init_writes_xen_header_and_sizes_match_netif() {
    let mut p = pages();
    let (front, _) = pair(&mut p, 4096);
    let words: Vec<u32> = (0..4)
        .map(|i| u32::from_ne_bytes(p.0[i * 4..i * 4 + 4].try_into().unwrap()))
        .collect();
    assert_eq!(words, [0, 1, 0, 1]);
    assert!(p.0[16..HEADER_SIZE].iter().all(|&b| b == 0));
    assert_eq!(front.size(), crate::netif::TX_RING_SIZE as u32);
    assert_eq!(
        crate::ring_entries::<RxRequest, RxResponse>(4096),
        crate::netif::RX_RING_SIZE as u32
    );
}

#[test]
fn multi_page_rings_scale_entry_count() {
    for order in 0..=4u32 {
        let len = 4096 << order;
        assert_eq!(
            crate::ring_entries::<TxRequest, TxResponse>(len),
            256 << order
        );
        assert_eq!(
            crate::ring_entries::<RxRequest, RxResponse>(len),
            256 << order
        );
        let mut p = pages();
        let (front, back) = pair(&mut p, len);
        assert_eq!(front.size(), 256 << order);
        assert_eq!(back.size(), 256 << order);
    }
}

#[test]
fn bad_lengths_and_alignment_are_errors() {
    let mut p = pages();
    let mem = NonNull::new(p.0.as_mut_ptr()).unwrap();
    for len in [0, 64, 4095, 8192 + 4096, 4096 << 5] {
        // SAFETY: the length check fails before memory is touched.
        let r = unsafe { TxFront::init(mem, len) };
        assert_eq!(r.err(), Some(RingError::BadLength(len)));
    }
    let odd = NonNull::new(p.0[1..].as_mut_ptr()).unwrap();
    // SAFETY: the alignment check fails before memory is touched.
    let r = unsafe { TxBack::attach(odd, 4096) };
    assert_eq!(r.err(), Some(RingError::BadAlignment));
}

#[test]
fn requests_and_responses_round_trip_in_order() {
    let mut p = pages();
    let (mut front, mut back) = pair(&mut p, 4096);
    for id in 0..10 {
        front.push_request(&req(id)).unwrap();
    }
    assert_eq!(
        back.unconsumed_requests().unwrap(),
        0,
        "unpublished is invisible"
    );
    front.push_requests();
    assert_eq!(back.unconsumed_requests().unwrap(), 10);
    for id in 0..10 {
        assert_eq!(back.pop_request().unwrap(), Some(req(id)));
        back.push_response(&TxResponse { id, status: 0 }).unwrap();
    }
    assert_eq!(back.pop_request().unwrap(), None);
    back.push_responses();
    let mut out = [TxResponse::default(); 16];
    assert_eq!(front.pop_responses(&mut out).unwrap(), 10);
    assert!(out[..10].iter().enumerate().all(|(i, r)| r.id == i as u16));
    assert_eq!(front.free_requests(), 256);
}

#[test]
fn ring_full_and_empty_edges() {
    let mut p = pages();
    let (mut front, mut back) = pair(&mut p, 4096);
    assert_eq!(front.push_requests_from((0..300).map(req)), 256);
    assert!(front.is_full());
    assert_eq!(front.push_request(&req(0)), Err(RingError::Full));
    front.push_requests();
    let mut taken = [TxRequest::default(); 256];
    assert_eq!(back.pop_requests(&mut taken).unwrap(), 256);
    // Taking requests frees nothing for the front until they are answered.
    assert!(front.is_full());
    back.push_response(&TxResponse::default()).unwrap();
    back.push_responses();
    assert!(front.is_full(), "free slots count only consumed responses");
    front.pop_response().unwrap().unwrap();
    assert_eq!(front.free_requests(), 1);
    // The back cannot answer more than it took.
    for _ in 1..256 {
        back.push_response(&TxResponse::default()).unwrap();
    }
    assert_eq!(
        back.push_response(&TxResponse::default()),
        Err(RingError::Full)
    );
}

#[test]
fn indices_wrap_around_u32_max() {
    let mut p = pages();
    let (mut front, mut back) = start_at(&mut p, u32::MAX - 100);
    let mut next_req = 0u16;
    let mut next_rsp = 0u16;
    // Many rounds of partial batches carry the indices across 2^32.
    for round in 0..50 {
        let n = 1 + (round * 7) % 40;
        for _ in 0..n {
            front.push_request(&req(next_req)).unwrap();
            next_req = next_req.wrapping_add(1);
        }
        front.push_requests_and_check_notify();
        while let Some(r) = back.pop_request().unwrap() {
            back.push_response(&TxResponse {
                id: r.id,
                status: 1,
            })
            .unwrap();
        }
        back.push_responses_and_check_notify();
        while let Some(r) = front.pop_response().unwrap() {
            assert_eq!(r.id, next_rsp);
            next_rsp = next_rsp.wrapping_add(1);
        }
    }
    assert_eq!(next_req, next_rsp);
    assert!(front.req_prod_pvt().0 < 1000, "indices wrapped");
}

#[test]
fn notify_follows_event_hold_off() {
    let mut p = pages();
    let (mut front, mut back) = pair(&mut p, 4096);
    // req_event starts at 1: the first request wakes the back.
    front.push_request(&req(0)).unwrap();
    assert!(front.push_requests_and_check_notify());
    // The back has not asked again: further pushes stay silent.
    front.push_request(&req(1)).unwrap();
    assert!(!front.push_requests_and_check_notify());
    while back.pop_request().unwrap().is_some() {}
    // Final check with nothing pending arms req_event = req_cons + 1.
    assert!(!back.final_check_for_requests().unwrap());
    front.push_request(&req(2)).unwrap();
    front.push_request(&req(3)).unwrap();
    assert!(front.push_requests_and_check_notify(), "one kick per batch");
    assert!(back.final_check_for_requests().unwrap());
}

#[test]
fn front_overclaiming_req_prod_is_an_error_not_a_panic() {
    let mut p = pages();
    let (_front, mut back) = pair(&mut p, 4096);
    p.0[0..4].copy_from_slice(&257u32.to_ne_bytes());
    assert!(matches!(
        back.unconsumed_requests(),
        Err(RingError::ProducerOverflow { prod: 257, .. })
    ));
    assert!(back.pop_request().is_err());
    assert!(back.final_check_for_requests().is_err());
    // A front that moves req_prod backwards is caught too.
    p.0[0..4].copy_from_slice(&5u32.to_ne_bytes());
    let mut buf = [TxRequest::default(); 8];
    assert_eq!(back.pop_requests(&mut buf).unwrap(), 5);
    p.0[0..4].copy_from_slice(&3u32.to_ne_bytes());
    assert!(back.pop_request().is_err());
    // Attaching to an already-overflowing ring is refused.
    p.0[0..4].copy_from_slice(&1000u32.to_ne_bytes());
    let mem = NonNull::new(p.0.as_mut_ptr()).unwrap();
    // SAFETY: pages live for the test.
    assert!(unsafe { TxBack::attach(mem, 4096) }.is_err());
}

#[test]
fn back_overclaiming_rsp_prod_is_an_error_not_a_panic() {
    let mut p = pages();
    let (mut front, _back) = pair(&mut p, 4096);
    front.push_request(&req(0)).unwrap();
    front.push_requests();
    // One request outstanding: a second response is impossible.
    p.0[8..12].copy_from_slice(&2u32.to_ne_bytes());
    assert!(matches!(
        front.pop_response(),
        Err(RingError::ProducerOverflow { prod: 2, .. })
    ));
    p.0[8..12].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert!(front.final_check_for_responses().is_err());
    p.0[8..12].copy_from_slice(&1u32.to_ne_bytes());
    assert!(front.pop_response().unwrap().is_some());
}

#[test]
fn entries_are_copied_out_once() {
    let mut p = pages();
    let (mut front, mut back) = pair(&mut p, 4096);
    front.push_request(&req(1)).unwrap();
    front.push_requests();
    let got = back.pop_request().unwrap().unwrap();
    // The front rewrites the slot after publishing: the back's copy is unaffected.
    p.0[HEADER_SIZE..HEADER_SIZE + 12].fill(0xFF);
    assert_eq!(got, req(1));
}
