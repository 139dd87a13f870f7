//! The control ring (netif.h `feature-ctrl-ring`) in one process: staging grants take
//! grant operations off the data path, Toeplitz settings steer flows, a backend that
//! refuses the messages leaves the device on grant copy, and hostile control requests
//! or responses are refused or end only that device.

use std::time::Duration;

use xennet_dom0::testing::{
    connect_pair, domains, echo_once, enable_ctrl, round_trip_matrix, rx_all, tx_all, Back, Front,
    Side,
};
use xennet_netback::vif::{CtrlRing, VifError, STATIC_GRANTS_PER_QUEUE};
use xennet_netfront::{Features, FrontError, LinkState, HASH_KEY, HASH_MAPPING_SIZE};
use xennet_platform::clock;
use xennet_ring::netif::{
    ctrl_status, ctrl_type, hash_input, hash_type, toeplitz_hash, CtrlGref, CtrlRequest,
    CtrlResponse,
};
use xennet_ring::{
    BackRing, DomId, FrameAlloc, FrontRing, GrantAccess, GrantMap, GrantRef, LocalMemory,
    MappedPage, RingError, PAGE_SIZE,
};
use zerocopy::IntoBytes;

const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01];

fn sides() -> (Side, Side) {
    let (dom0, mut guests) = domains(1).unwrap();
    (dom0, guests.remove(0))
}

fn sg() -> Features {
    Features {
        sg: true,
        gso_tcpv4: true,
    }
}

/// A connected pair with a control ring whose start-up script has run to its end.
fn staged_pair(dom0: &Side, domu: &Side, queues: usize) -> (Front, Back) {
    let (mut front, mut back, _) = connect_pair(dom0, domu, 0, MAC, queues, sg(), None).unwrap();
    enable_ctrl(dom0, domu, &mut front, &mut back).unwrap();
    for _ in 0..1000 {
        back.process_ctrl().unwrap();
        front.poll_tx().unwrap();
        if front.ctrl_state().unwrap().done {
            break;
        }
    }
    (front, back)
}

/// An IPv4/TCP frame of flow `(src port, dst port)` with `len` bytes.
fn tcp_frame(len: usize, sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&MAC);
    f[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0xaa, 0xbb, 0xcc]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(7).wrapping_add(seq) as u8;
    }
    f
}

#[test]
fn staging_grants_move_frames_both_ways_without_a_grant_copy() {
    let (dom0, domu) = sides();
    let (mut front, mut back) = staged_pair(&dom0, &domu, 1);
    let st = front.ctrl_state().unwrap();
    assert_eq!(st.static_grants, STATIC_GRANTS_PER_QUEUE, "{st:?}");
    assert_eq!((st.refused, st.hash), (0, false), "{st:?}");
    assert_eq!(back.static_grants(), STATIC_GRANTS_PER_QUEUE);
    let copies = back.counters().copy_batches;

    let sizes = [60usize, 512, 1514, 4096, 9000, 65535];
    let frames: Vec<Vec<u8>> = (0..120)
        .map(|i| tcp_frame(sizes[i % sizes.len()], 1000 + i as u16, 80, i as u32))
        .collect();
    assert_eq!(tx_all(&mut front, &mut back, &frames), frames);
    assert_eq!(rx_all(&mut front, &mut back, &frames), frames);
    let c = back.counters();
    assert_eq!(
        c.copy_batches, copies,
        "no grant copy once the pools are mapped"
    );
    let slots: u64 = frames
        .iter()
        .map(|f| f.len().div_ceil(PAGE_SIZE) as u64)
        .sum();
    assert_eq!(c.mapped_slots, 2 * slots);
    assert_eq!(c.fatal_errors, 0);

    // Disconnect releases every mapping: the guest then ends every grant.
    back.close();
    let (_, leaked) = front.close();
    assert_eq!(leaked, 0);
    assert_eq!(domu.domain.grants_in_use(), 0);
}

#[test]
fn round_trip_matrix_with_staging_grants_one_and_four_queues() {
    for queues in [1, 4] {
        let (dom0, domu) = sides();
        let (mut front, mut back) = staged_pair(&dom0, &domu, queues);
        assert_eq!(
            front.ctrl_state().unwrap().static_grants,
            queues * STATIC_GRANTS_PER_QUEUE
        );
        let mut scratch = Vec::new();
        let r = round_trip_matrix(&mut front, 8, Duration::from_secs(60), |_| {
            echo_once(&mut back, &mut scratch).unwrap();
        })
        .unwrap_or_else(|e| panic!("queues={queues}: {e}"));
        assert_eq!((r.echoed, r.refused), (32, 0));
        assert!(back.counters().mapped_slots > 0);
    }
}

#[test]
fn toeplitz_settings_steer_each_flow_to_the_queue_of_the_frontends_table() {
    let (dom0, domu) = sides();
    let (mut front, mut back) = staged_pair(&dom0, &domu, 4);
    let st = front.ctrl_state().unwrap();
    assert!(st.hash && st.done, "{st:?}");
    let expect = |f: &[u8]| {
        let mut buf = [0u8; 36];
        let n = hash_input(f, hash_type::IPV4 | hash_type::IPV4_TCP, &mut buf).unwrap();
        (toeplitz_hash(&HASH_KEY, &buf[..n]) as usize % HASH_MAPPING_SIZE) % 4
    };
    let mut seen = [false; 4];
    for port in 0..64u16 {
        let f = tcp_frame(100, 4000 + port, 443, u32::from(port));
        let q = expect(&f);
        seen[q] = true;
        // Backend -> guest: queued on the table's queue.
        let before: Vec<usize> = back.queues_mut().iter().map(|q| q.rx_queued()).collect();
        assert!(back.enqueue_rx(&f, clock::now()));
        let after: Vec<usize> = back.queues_mut().iter().map(|q| q.rx_queued()).collect();
        assert_eq!(after[q], before[q] + 1, "port {port}");
        // Guest -> backend: the frontend sends the flow on the same queue.
        let sent: Vec<u64> = back.queue_counters().iter().map(|c| c.tx_packets).collect();
        front.send(&f).unwrap();
        back.process_tx(64, clock::now(), &mut |_| {}).unwrap();
        let now: Vec<u64> = back.queue_counters().iter().map(|c| c.tx_packets).collect();
        assert_eq!(now[q], sent[q] + 1, "port {port}");
    }
    assert_eq!(seen, [true; 4], "64 flows cover every queue");
    back.process_rx(clock::now()).unwrap();
    let mut n = 0;
    front.receive(1000, |_, _| n += 1).unwrap();
    assert_eq!(n, 64);
}

/// A backend end driven by hand over the frontend's control ring page.
struct RawBackend {
    ring: BackRing<CtrlRequest, CtrlResponse>,
}

impl RawBackend {
    fn attach(dom0: &Side, ring_ref: GrantRef) -> RawBackend {
        let map = dom0.ops.map(DomId(1), ring_ref, false).unwrap();
        // SAFETY: the mapping is never unmapped in these tests (it lives as long as
        // the guest's memory, which the test keeps).
        let ring = unsafe { BackRing::attach(map.as_ptr(), PAGE_SIZE) }.unwrap();
        std::mem::forget(map);
        RawBackend { ring }
    }

    fn answer(&mut self, f: impl Fn(&CtrlRequest) -> CtrlResponse) -> usize {
        let mut n = 0;
        while let Ok(Some(req)) = self.ring.pop_request() {
            self.ring.push_response(&f(&req)).unwrap();
            n += 1;
        }
        self.ring.push_responses();
        n
    }
}

#[test]
fn a_backend_that_refuses_the_messages_leaves_the_device_on_grant_copy() {
    let (dom0, domu) = sides();
    let (mut front, mut back, _) = connect_pair(&dom0, &domu, 0, MAC, 2, sg(), None).unwrap();
    let gp = domu.events.alloc_unbound(DomId(0)).unwrap();
    let ring_ref = front.enable_ctrl(domu.events.port(gp)).unwrap();
    let mut raw = RawBackend::attach(&dom0, ring_ref);
    let mut answered = 0;
    for _ in 0..100 {
        answered += raw.answer(|r| CtrlResponse {
            id: r.id,
            type_: r.type_,
            status: ctrl_status::NOT_SUPPORTED,
            data: 0,
        });
        front.poll_tx().unwrap();
    }
    let st = front.ctrl_state().unwrap();
    // Two GET_GREF_MAPPING_SIZE (no ADD follows a refusal), then the hash stops at its
    // first message.
    assert_eq!(answered, 3);
    assert_eq!((st.requests, st.refused, st.static_grants), (3, 3, 0));
    assert!(st.done && !st.hash, "{st:?}");
    assert!(front.is_connected());
    let f = tcp_frame(1514, 1, 2, 3);
    front.send(&f).unwrap();
    let mut got = Vec::new();
    back.process_tx(64, clock::now(), &mut |x| got.push(x.to_vec()))
        .unwrap();
    assert_eq!(got, [f]);
    assert_eq!(back.counters().mapped_slots, 0);
}

#[test]
fn a_control_response_to_no_outstanding_request_breaks_only_the_frontend() {
    let (dom0, domu) = sides();
    let (mut front, _back, _) = connect_pair(&dom0, &domu, 0, MAC, 1, sg(), None).unwrap();
    let gp = domu.events.alloc_unbound(DomId(0)).unwrap();
    let ring_ref = front.enable_ctrl(domu.events.port(gp)).unwrap();
    let mut raw = RawBackend::attach(&dom0, ring_ref);
    raw.answer(|r| CtrlResponse {
        id: r.id.wrapping_add(5),
        type_: r.type_,
        status: 0,
        data: 512,
    });
    let e = front.poll_tx().unwrap_err();
    assert!(matches!(e, FrontError::BadCtrlResponse { .. }), "{e:?}");
    assert!(matches!(front.state(), LinkState::Broken(_)));
    assert_eq!(front.counters().fatal_errors, 1);
}

/// A frontend end driven by hand: its control ring and one data page.
struct RawFrontend {
    ring: FrontRing<CtrlRequest, CtrlResponse>,
    ring_page: std::ptr::NonNull<u8>,
    data: xennet_ring::Frame,
    data_ref: GrantRef,
    next_id: u16,
}

impl RawFrontend {
    fn attach(dom0: &Side, domu: &Side, back: &mut Back) -> RawFrontend {
        let d = &domu.domain;
        let (rf, df) = (d.alloc_frame().unwrap(), d.alloc_frame().unwrap());
        let ring_ref = d.grant_access(DomId(0), rf, false).unwrap();
        let data_ref = d.grant_access(DomId(0), df, false).unwrap();
        let ring_page = d.page_ptr(rf).unwrap();
        // SAFETY: the page is the guest's and outlives the test's use of the ring.
        let ring = unsafe { FrontRing::init(ring_page, PAGE_SIZE) }.unwrap();
        let gp = domu.events.alloc_unbound(DomId(0)).unwrap();
        let bp = dom0.events.bind_interdomain(DomId(1), gp).unwrap();
        let c = CtrlRing::connect(&dom0.ops, DomId(1), ring_ref, dom0.events.port(bp)).unwrap();
        back.attach_ctrl(c);
        RawFrontend {
            ring,
            ring_page,
            data: df,
            data_ref,
            next_id: 0,
        }
    }

    /// Send one request and have the backend answer it.
    fn ask(&mut self, back: &mut Back, type_: u16, data: [u32; 3]) -> CtrlResponse {
        let id = self.next_id;
        self.next_id += 1;
        self.ring
            .push_request(&CtrlRequest { id, type_, data })
            .unwrap();
        self.ring.push_requests();
        assert_eq!(back.process_ctrl().unwrap(), 1);
        let rsp = self.ring.pop_response().unwrap().unwrap();
        assert_eq!((rsp.id, rsp.type_), (id, type_));
        rsp
    }
}

#[test]
fn hostile_control_requests_are_refused_and_change_nothing() {
    use ctrl_status::{BUFFER_OVERFLOW, INVALID_PARAMETER, NOT_SUPPORTED, SUCCESS};
    use ctrl_type::*;
    let (dom0, domu) = sides();
    let (front, mut back, _) = connect_pair(&dom0, &domu, 0, MAC, 2, sg(), None).unwrap();
    let mut raw = RawFrontend::attach(&dom0, &domu, &mut back);
    let page = raw.data_ref.0;
    let d = &domu.domain;
    let data = raw.data;
    let list = |entries: &[CtrlGref]| d.write(data, 0, entries.as_bytes()).unwrap();
    let s = |r: CtrlResponse| (r.status, r.data);

    assert_eq!(
        s(raw.ask(&mut back, GET_GREF_MAPPING_SIZE, [0, 0, 0])),
        (SUCCESS, 512)
    );
    assert_eq!(
        s(raw.ask(&mut back, GET_GREF_MAPPING_SIZE, [2, 0, 0])).0,
        INVALID_PARAMETER
    );
    assert_eq!(s(raw.ask(&mut back, 99, [0, 0, 0])).0, NOT_SUPPORTED);
    // Refs never granted: nothing is mapped, not even the good entry before them.
    let good = front.queue_refs()[0].tx_ring_ref;
    let gref = |r: u32, flags| CtrlGref {
        gref: GrantRef(r),
        flags,
        status: 0,
    };
    list(&[gref(good.0, 0), gref(4000, 0)]);
    assert_eq!(
        s(raw.ask(&mut back, ADD_GREF_MAPPING, [0, page, 2])).0,
        INVALID_PARAMETER
    );
    // A duplicate, a list longer than a page, a queue out of range, a list page that
    // was never granted.
    list(&[gref(good.0, 0), gref(good.0, 0)]);
    assert_eq!(
        s(raw.ask(&mut back, ADD_GREF_MAPPING, [0, page, 2])).0,
        INVALID_PARAMETER
    );
    assert_eq!(
        s(raw.ask(&mut back, ADD_GREF_MAPPING, [0, page, 513])).0,
        INVALID_PARAMETER
    );
    assert_eq!(
        s(raw.ask(&mut back, ADD_GREF_MAPPING, [5, page, 1])).0,
        INVALID_PARAMETER
    );
    assert_eq!(
        s(raw.ask(&mut back, ADD_GREF_MAPPING, [0, 4000, 1])).0,
        INVALID_PARAMETER
    );
    assert_eq!(back.static_grants(), 0);
    // A good one, then DEL reports per entry.
    list(&[gref(good.0, 0)]);
    assert_eq!(
        s(raw.ask(&mut back, ADD_GREF_MAPPING, [0, page, 1])),
        (SUCCESS, 0)
    );
    assert_eq!(back.static_grants(), 1);
    // A grant already mapped by an earlier ADD, after a new one: refused, all or none.
    let other = front.queue_refs()[0].rx_ring_ref;
    list(&[gref(other.0, 0), gref(good.0, 0)]);
    assert_eq!(
        s(raw.ask(&mut back, ADD_GREF_MAPPING, [0, page, 2])).0,
        INVALID_PARAMETER
    );
    assert_eq!(back.static_grants(), 1);
    list(&[gref(good.0, 0), gref(77, 0)]);
    assert_eq!(
        s(raw.ask(&mut back, DEL_GREF_MAPPING, [0, page, 2])),
        (SUCCESS, 1)
    );
    let mut back_list = [CtrlGref::default(); 2];
    d.read(data, 0, back_list.as_mut_bytes()).unwrap();
    assert_eq!(
        (back_list[0].status, back_list[1].status),
        (SUCCESS as u16, INVALID_PARAMETER as u16)
    );
    assert_eq!(back.static_grants(), 0);
    // Hash: flags before an algorithm, unknown algorithm, key too long, a table
    // naming a queue that does not exist, a sub-table past the end.
    assert_eq!(
        s(raw.ask(&mut back, SET_HASH_FLAGS, [1, 0, 0])).0,
        INVALID_PARAMETER
    );
    assert_eq!(
        s(raw.ask(&mut back, SET_HASH_ALGORITHM, [7, 0, 0])).0,
        INVALID_PARAMETER
    );
    assert_eq!(
        s(raw.ask(&mut back, SET_HASH_ALGORITHM, [1, 0, 0])).0,
        SUCCESS
    );
    assert_eq!(
        s(raw.ask(&mut back, SET_HASH_FLAGS, [1 << 9, 0, 0])).0,
        INVALID_PARAMETER
    );
    assert_eq!(
        s(raw.ask(&mut back, SET_HASH_KEY, [page, 41, 0])).0,
        BUFFER_OVERFLOW
    );
    assert_eq!(
        s(raw.ask(&mut back, SET_HASH_MAPPING_SIZE, [129, 0, 0])).0,
        INVALID_PARAMETER
    );
    assert_eq!(
        s(raw.ask(&mut back, SET_HASH_MAPPING_SIZE, [8, 0, 0])).0,
        SUCCESS
    );
    d.write(data, 0, [0u32, 1, 2, 1].as_bytes()).unwrap();
    assert_eq!(
        s(raw.ask(&mut back, SET_HASH_MAPPING, [page, 4, 0])).0,
        INVALID_PARAMETER
    );
    d.write(data, 0, [0u32, 1, 1, 0].as_bytes()).unwrap();
    assert_eq!(
        s(raw.ask(&mut back, SET_HASH_MAPPING, [page, 4, 6])).0,
        BUFFER_OVERFLOW
    );
    assert_eq!(
        s(raw.ask(&mut back, SET_HASH_MAPPING, [page, 4, 4])).0,
        SUCCESS
    );
    assert!(back.broken().is_none());

    // An impossible request index ends the vif, with a counted reason.
    // SAFETY: the ring page is the guest's and live; this is the hostile write.
    unsafe { (raw.ring_page.as_ptr() as *mut u32).write_volatile(5000) };
    let e = back.process_ctrl().unwrap_err();
    assert!(
        matches!(e, VifError::Ring(RingError::ProducerOverflow { .. })),
        "{e:?}"
    );
    assert_eq!(back.broken(), Some(e));
    assert_eq!(back.counters().fatal_errors, 1);
    assert!(back.process_tx(64, clock::now(), &mut |_| {}).is_err());
    back.close();
}
