//! A backend that breaks the protocol on purpose: netfront marks its device broken
//! with the reason (as Linux netfront does since 2021) and never panics.

use xennet_dom0::testing::{connect_pair, Side};
use xennet_netfront::{Features, FrontError, LinkState};
use xennet_ring::netif::{RxRequest, RxResponse, TxRequest, TxResponse};
use xennet_ring::{BackRing, DomId, GrantMap, MappedPage, RingError, PAGE_SIZE};

type Rings = (
    xennet_dom0::testing::Front,
    BackRing<TxRequest, TxResponse>,
    BackRing<RxRequest, RxResponse>,
    *mut u8,
    Side,
);

/// A connected frontend, and raw backend ends of its rings (plus the tx page).
fn setup() -> Rings {
    let dom0 = Side::anonymous(DomId(0), 4096).unwrap();
    let domu = Side::anonymous(DomId(3), 2048).unwrap();
    dom0.know(&domu);
    domu.know(&dom0);
    let (front, back, _) = connect_pair(
        &dom0,
        &domu,
        0,
        [0, 0x16, 0x3e, 0, 0, 3],
        1,
        Features {
            sg: true,
            gso_tcpv4: false,
        },
        None,
    )
    .unwrap();
    let refs = front.queue_refs()[0];
    // A second, hand-driven view of the same rings plays the hostile backend; the
    // honest vif is closed so it does not interfere.
    back.close();
    let tx_map = dom0.ops.map(DomId(3), refs.tx_ring_ref, false).unwrap();
    let rx_map = dom0.ops.map(DomId(3), refs.rx_ring_ref, false).unwrap();
    // SAFETY: the mappings are leaked below, so the pages stay valid for the test.
    let tx = unsafe { BackRing::attach(tx_map.as_ptr(), PAGE_SIZE).unwrap() };
    // SAFETY: as above.
    let rx = unsafe { BackRing::attach(rx_map.as_ptr(), PAGE_SIZE).unwrap() };
    let tx_page = tx_map.as_ptr().as_ptr();
    std::mem::forget((tx_map, rx_map));
    (front, tx, rx, tx_page, dom0)
}

#[test]
fn tx_response_with_an_id_never_issued_breaks_the_device() {
    let (mut front, mut tx, _rx, _p, _d) = setup();
    front.send(&[0xffu8; 60]).unwrap();
    let req = tx.pop_request().unwrap().unwrap();
    tx.push_response(&TxResponse {
        id: req.id ^ 0x55,
        status: 0,
    })
    .unwrap();
    tx.push_responses();
    assert_eq!(
        front.poll_tx(),
        Err(FrontError::BadTxResponseId(req.id ^ 0x55))
    );
    assert!(matches!(front.state(), LinkState::Broken(_)));
    assert_eq!(front.counters().fatal_errors, 1);
    assert!(
        front.send(&[0xffu8; 60]).is_err(),
        "a broken device takes no frames"
    );
}

#[test]
fn duplicate_tx_response_breaks_the_device() {
    let (mut front, mut tx, _rx, _p, _d) = setup();
    front.send(&[0xffu8; 60]).unwrap();
    front.send(&[0xffu8; 60]).unwrap();
    let req = tx.pop_request().unwrap().unwrap();
    let _ = tx.pop_request().unwrap().unwrap();
    tx.push_response(&TxResponse {
        id: req.id,
        status: 0,
    })
    .unwrap();
    tx.push_response(&TxResponse {
        id: req.id,
        status: 0,
    })
    .unwrap();
    tx.push_responses();
    assert_eq!(front.poll_tx(), Err(FrontError::BadTxResponseId(req.id)));
}

#[test]
fn overflowing_rsp_prod_breaks_the_device() {
    let (mut front, _tx, _rx, page, _d) = setup();
    front.send(&[0xffu8; 60]).unwrap();
    // rsp_prod is the third header word.
    // SAFETY: the mapping is live; this is the hostile write under test.
    unsafe { (page.add(8) as *mut u32).write_volatile(200) };
    assert!(matches!(
        front.poll_tx(),
        Err(FrontError::Ring(RingError::ProducerOverflow { .. }))
    ));
}

#[test]
fn rx_response_larger_than_its_page_breaks_the_device() {
    let (mut front, _tx, mut rx, _p, _d) = setup();
    let req = rx.pop_request().unwrap().unwrap();
    rx.push_response(&RxResponse {
        id: req.id,
        offset: 4000,
        flags: 0,
        status: 200,
    })
    .unwrap();
    rx.push_responses();
    let r = front.receive(8, |_, _| panic!("nothing may be delivered"));
    assert_eq!(
        r,
        Err(FrontError::BadRxResponse {
            offset: 4000,
            status: 200
        })
    );
}

#[test]
fn rx_error_status_is_counted_not_delivered() {
    let (mut front, _tx, mut rx, _p, _d) = setup();
    let req = rx.pop_request().unwrap().unwrap();
    rx.push_response(&RxResponse {
        id: req.id,
        offset: 0,
        flags: 0,
        status: -1,
    })
    .unwrap();
    rx.push_responses();
    assert_eq!(
        front.receive(8, |_, _| panic!("nothing may be delivered")),
        Ok(0)
    );
    assert_eq!(front.counters().rx_errors, 1);
    assert!(front.is_connected());
}
