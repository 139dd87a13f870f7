//! A frontend that breaks the protocol on purpose: each fault is graded as Linux
//! netback grades it (fatal: that vif is disconnected with a counted reason; or the
//! packet answered with ERROR and the vif kept), and nothing panics.

use std::ptr::NonNull;

use xennet_dom0::testing::Side;
use xennet_netback::vif::{NetbackQueue, QueueSetup, VifError, FATAL_SLOTS};
use xennet_platform::clock;
use xennet_platform::shm::{Domain, EventPort, GrantOps};
use xennet_ring::netif::{
    ExtraInfo, RxRequest, RxResponse, TxFlags, TxRequest, TxResponse, NETIF_RSP_ERROR,
    NETIF_RSP_OKAY,
};
use xennet_ring::{
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
    /// The page behind `data`, and the guest that owns it (to write frames into it).
    data_frame: Frame,
    domu: Side,
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
        clock::now(),
    )
    .unwrap();
    Evil {
        tx,
        rx,
        tx_page,
        data,
        data_ro_for_rx: data_ro,
        data_frame: df,
        domu,
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

    /// Runs the backend and returns the frames it delivered.
    fn run_collect(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.back
            .process_tx(64, clock::now(), &mut |f| out.push(f.to_vec()))
            .unwrap();
        out
    }

    fn run(&mut self) -> (Result<usize, VifError>, usize) {
        let mut delivered = 0;
        let r = self
            .back
            .process_tx(64, clock::now(), &mut |_| delivered += 1);
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

/// An Ethernet + IPv4 + TCP frame from 10.0.0.1 to 10.0.0.2 carrying `payload` bytes,
/// its TCP checksum left as a frontend offloading it leaves it (zero).
fn tcp_frame(payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 54 + payload];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..34].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f[38..42].copy_from_slice(&1000u32.to_be_bytes());
    f[46] = 5 << 4;
    f[47] = 0x18; // PSH, ACK
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    // The IPv4 header checksum is always the frontend's to fill in.
    let mut acc: u32 = f[14..34]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    f[24..26].copy_from_slice(&(!(acc as u16)).to_be_bytes());
    f
}

/// Checks the IPv4 and TCP checksums of a delivered frame and returns (seq, payload).
fn checked_tcp(frame: &[u8]) -> (u32, Vec<u8>) {
    use smoltcp::wire::{EthernetFrame, IpAddress, Ipv4Packet, TcpPacket};
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    assert!(tcp.verify_checksum(&src, &dst), "TCP checksum");
    (tcp.seq_number().0 as u32, tcp.payload().to_vec())
}

#[test]
fn a_csum_blank_frame_is_delivered_with_its_checksum_filled_in() {
    let mut e = evil();
    let f = tcp_frame(200);
    e.domu.domain.write(e.data_frame, 0, &f).unwrap();
    let mut first = slot(e.data, 0, f.len() as u16, false, 1);
    first.flags |= (TxFlags::CSUM_BLANK | TxFlags::DATA_VALIDATED).bits();
    e.send(&[first]);
    let out = e.run_collect();
    assert_eq!(out.len(), 1);
    assert_eq!(checked_tcp(&out[0]), (1000, f[54..].to_vec()));
    assert_eq!(e.statuses(), [NETIF_RSP_OKAY]);
}

#[test]
fn a_gso_frame_is_delivered_as_checksummed_segments() {
    let mut e = evil();
    // Payload in two slots, as Linux netfront sends a frame larger than a page.
    let f = tcp_frame(4000);
    let (head, tail) = (2048usize, f.len() - 2048);
    e.domu.domain.write(e.data_frame, 0, &f[..head]).unwrap();
    e.domu.domain.write(e.data_frame, 2048, &f[head..]).unwrap();
    let mut first = slot(e.data, 0, f.len() as u16, true, 1);
    first.flags |= (TxFlags::CSUM_BLANK | TxFlags::EXTRA_INFO).bits();
    let gso = ExtraInfo::encode(
        xennet_ring::netif::Extra::Gso {
            size: 1448,
            gso_type: xennet_ring::netif::XEN_NETIF_GSO_TYPE_TCPV4,
            features: 0,
        },
        false,
    );
    e.send(&[first, gso.into(), slot(e.data, 2048, tail as u16, false, 2)]);
    let out = e.run_collect();
    assert_eq!(out.len(), 3, "4000 bytes at an MSS of 1448");
    let mut data = Vec::new();
    for (i, seg) in out.iter().enumerate() {
        assert!(seg.len() <= 1514);
        let (seq, payload) = checked_tcp(seg);
        assert_eq!(seq, 1000 + 1448 * i as u32);
        data.extend(payload);
    }
    assert_eq!(data, f[54..]);
    let c = e.back.counters();
    assert_eq!((c.tx_packets, c.tx_gso_segments), (1, 3));
}

#[test]
fn an_offload_the_headers_cannot_carry_is_answered_with_error() {
    let mut e = evil();
    let mut f = tcp_frame(20);
    f[23] = 1; // ICMP: no TCP/UDP checksum to fill in.
    e.domu.domain.write(e.data_frame, 0, &f).unwrap();
    let mut first = slot(e.data, 0, f.len() as u16, false, 1);
    first.flags |= TxFlags::CSUM_BLANK.bits();
    e.send(&[first]);
    assert!(e.run_collect().is_empty());
    assert_eq!(e.statuses(), [NETIF_RSP_ERROR]);
    let c = e.back.counters();
    assert_eq!((c.tx_errors, c.tx_bad_offload), (1, 1));
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
    assert!(e.back.enqueue_rx(&[0xffu8; 60], clock::now()));
    assert_eq!(
        e.back.process_rx(clock::now()),
        Err(VifError::BadGrant(GrantStatus::GeneralError))
    );
    // The frame whose copy failed was not delivered: an rx error, not an rx packet.
    let c = e.back.counters();
    assert_eq!((c.rx_packets, c.rx_bytes, c.rx_errors), (0, 0, 1));
    // Frames queued for a disconnected vif are counted, not lost silently.
    assert!(!e.back.enqueue_rx(&[0xffu8; 60], clock::now()));
    assert_eq!(e.back.counters().rx_dropped_disconnected, 1);
}

#[test]
fn a_first_slot_shorter_than_an_ethernet_header_is_assembled_and_delivered() {
    // netif.h: the first slot's size is the packet's; the first slot itself carries
    // what the later slots do not. Here it carries 6 bytes (of the 14-byte Ethernet
    // header), the second slot the other 94: one 100-byte frame, as Linux assembles
    // it, header split across the slots.
    let mut e = evil();
    let d = e.data;
    e.send(&[slot(d, 0, 100, true, 1), slot(d, 200, 94, false, 2)]);
    let mut got = Vec::new();
    let r = e
        .back
        .process_tx(64, clock::now(), &mut |f| got.push(f.to_vec()));
    assert_eq!(r, Ok(1));
    assert_eq!(e.statuses(), [NETIF_RSP_OKAY; 2]);
    let page: Vec<u8> = (0..PAGE_SIZE).map(|i| i as u8).collect();
    let want = [&page[..6], &page[200..294]].concat();
    assert_eq!(got, vec![want]);
    // The first slot's size larger than the later slots' sum: the first slot holds
    // the difference (here all 60 bytes, the second slot none).
    e.send(&[slot(d, 0, 60, true, 3), slot(d, 0, 0, false, 4)]);
    got.clear();
    let r = e
        .back
        .process_tx(64, clock::now(), &mut |f| got.push(f.to_vec()));
    assert_eq!(r, Ok(1));
    assert_eq!(got, vec![page[..60].to_vec()]);
    assert_eq!(e.statuses(), [NETIF_RSP_OKAY; 2]);
}

/// One step of a hostile frontend in the random mixes below.
#[derive(Clone, Debug)]
enum Step {
    /// A tx slot: which grant (0 the good read-only data page, 1 never granted, 2 the
    /// rx ring's own page), offset, size, `more_data`, `extra_info`, id.
    Slot(u8, u16, u16, bool, bool, u16),
    /// Move `req_prod` by this much past what was really written.
    Jump(u32),
    /// Rewrite the last published slot's size after publishing (double fetch).
    Rewrite(u16),
    /// Run the backend.
    Run,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        8 => (0u8..3, 0u16..4200, 0u16..5000, any::<bool>(), proptest::bool::weighted(0.1), any::<u16>())
            .prop_map(|(g, o, s, m, x, id)| Step::Slot(g, o, s, m, x, id)),
        1 => (1u32..100_000).prop_map(Step::Jump),
        1 => any::<u16>().prop_map(Step::Rewrite),
        2 => Just(Step::Run),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 128, ..Default::default() })]

    /// Random mixes of good and hostile tx requests (bad grants, slots crossing pages,
    /// chains of any length, extra-info slots, `req_prod` jumps, requests rewritten
    /// after publishing). Whatever the frontend does, the backend never panics,
    /// answers only with OKAY, ERROR or NULL, counts exactly the frames it delivered,
    /// answers each delivered frame OKAY while connected, and either stays connected
    /// or is shut down with a counted reason that sticks; a second vif in the same
    /// process keeps working throughout.
    #[test]
    fn random_hostile_tx_mixes_end_only_that_vif(steps in proptest::collection::vec(step(), 1..60)) {
        let mut e = evil();
        let mut good = evil();
        let grefs = [e.data, GrantRef(4000), GrantRef(1)];
        let mut published = 0u32;
        let mut delivered = 0usize;
        let mut fatal = None;
        for s in steps {
            match s {
                Step::Slot(g, offset, size, more, extra, id) => {
                    let mut r = slot(grefs[g as usize], offset, size, more, id);
                    if extra {
                        r.flags |= TxFlags::EXTRA_INFO.bits();
                    }
                    if e.tx.push_request(&r).is_ok() {
                        e.tx.push_requests();
                        published += 1;
                    }
                }
                Step::Jump(n) => {
                    published = published.wrapping_add(n);
                    // SAFETY: the ring page is live; this is the hostile write.
                    unsafe { (e.tx_page.as_ptr() as *mut u32).write_volatile(published) };
                }
                Step::Rewrite(size) => {
                    // `size` is the last u16 of a 12-byte request; slot 0 sits at 64.
                    let slot = (published.wrapping_sub(1) % 256) as usize;
                    // SAFETY: inside the live ring page; the hostile write under test.
                    unsafe {
                        (e.tx_page.as_ptr().add(64 + slot * 12 + 10) as *mut u16)
                            .write_volatile(size)
                    };
                }
                Step::Run => {
                    let (r, n) = e.run();
                    delivered += n;
                    match r {
                        Ok(_) => proptest::prop_assert!(fatal.is_none()),
                        Err(err) => {
                            if let Some(f) = fatal {
                                proptest::prop_assert_eq!(err, f, "the first reason sticks");
                            }
                            fatal = Some(err);
                        }
                    }
                    // The honest vif next door is unaffected.
                    let d = good.data;
                    good.send(&[slot(d, 0, 100, false, 1)]);
                    proptest::prop_assert_eq!(good.run(), (Ok(1), 1));
                    good.statuses();
                }
            }
        }
        let (r, n) = e.run();
        delivered += n;
        let c = e.back.counters();
        let statuses = e.statuses();
        let okay = statuses.iter().filter(|&&s| s == NETIF_RSP_OKAY).count();
        proptest::prop_assert!(statuses.iter().all(|&s| matches!(s, NETIF_RSP_OKAY | NETIF_RSP_ERROR | 1)));
        proptest::prop_assert_eq!(c.tx_packets as usize, delivered);
        match r {
            Ok(_) => {
                // Connected: every delivered frame was answered OKAY (one per data
                // slot, so at least as many OKAYs as frames).
                proptest::prop_assert!(fatal.is_none());
                proptest::prop_assert_eq!(c.fatal_errors, 0);
                proptest::prop_assert!(okay >= delivered);
            }
            Err(_) => {
                proptest::prop_assert_eq!(c.fatal_errors, 1);
                proptest::prop_assert!(e.back.broken().is_some());
            }
        }
    }
}
