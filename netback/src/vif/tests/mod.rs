//! Fixtures for netback's own tests: the driver domain and a guest in this process,
//! and a frontend played by hand that can misbehave on purpose (as vm-virtio's
//! `mock` plays the driver side of a queue).

mod ctrl;
mod rx;
mod tx;

use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use xennet_platform::shm::{Domain, GrantOps, PeerDomain};
use xennet_ring::netif::{CtrlRequest, CtrlResponse, RxRequest, RxResponse, TxRequest, TxResponse};
use xennet_ring::time::{Duration, Instant};
use xennet_ring::{
    BackRing, DomId, FenceSite, Frame, FrameAlloc, FrontRing, GrantAccess, GrantRef, LocalMemory,
    Notify, RingIdx, RingMemory, SharedRing, Word, PAGE_SIZE,
};

use super::ctrl::CtrlRing;
use super::peer::Peer;
use super::rx::{RxPath, RX_STAGING_PAGES};
use super::staging::StaticGrants;
use super::tx::{TxPath, TX_STAGING_PAGES};

/// The guest's domain id.
pub(super) const GUEST: DomId = DomId(7);

/// A kick that goes nowhere: these tests look at the rings, not at events.
#[derive(Clone, Copy, Debug)]
pub(super) struct NoKick;

impl Notify for NoKick {
    fn notify(&self) {}
}

/// The backend's view of the frontend over the driver domain's memory.
pub(super) type TestPeer = Peer<GrantOps, Domain>;

/// The driver domain (domain 0) and the guest, each with its memory; the driver
/// domain's grant operations reach the guest's grants.
pub(super) struct Domains {
    pub(super) dom0: Domain,
    pub(super) guest: Domain,
    pub(super) peer: TestPeer,
}

pub(super) fn domains() -> Domains {
    let dom0 = Domain::anonymous(DomId(0), 1024, 256).unwrap();
    let guest = Domain::anonymous(GUEST, 256, 256).unwrap();
    let grants = GrantOps::new(&dom0);
    grants.add_peer(PeerDomain::from_domain(&guest));
    let peer = Peer {
        frontend: GUEST,
        grants,
        memory: dom0.clone(),
        statics: StaticGrants::new(),
    };
    Domains { dom0, guest, peer }
}

/// How often each slot of a ring was read by the backend.
pub(super) type Reads = Rc<RefCell<Vec<u32>>>;

/// Ring memory over the real page that plays a frontend rewriting every request
/// slot right after the backend copied it out (to `rewrite(what was read)`), and
/// counts how often each slot was read. A backend that reads a slot twice sees the
/// second version.
pub(super) struct Rewriting<Req, Rsp> {
    ring: SharedRing<Req, Rsp>,
    rewrite: fn(Req) -> Req,
    reads: Reads,
}

impl<Req: xennet_ring::Entry, Rsp: xennet_ring::Entry> RingMemory<Req, Rsp>
    for Rewriting<Req, Rsp>
{
    fn entries(&self) -> u32 {
        self.ring.entries()
    }
    fn load(&self, word: Word, order: Ordering) -> u32 {
        self.ring.load(word, order)
    }
    fn store(&self, word: Word, value: u32, order: Ordering) {
        self.ring.store(word, value, order)
    }
    fn fence(&self, site: FenceSite) {
        self.ring.fence(site)
    }
    fn read_request(&self, slot: u32) -> Req {
        let req = self.ring.read_request(slot);
        self.ring.write_request(slot, &(self.rewrite)(req));
        self.reads.borrow_mut()[slot as usize] += 1;
        req
    }
    fn write_request(&self, slot: u32, req: &Req) {
        self.ring.write_request(slot, req)
    }
    fn read_response(&self, slot: u32) -> Rsp {
        self.ring.read_response(slot)
    }
    fn write_response(&self, slot: u32, rsp: &Rsp) {
        self.ring.write_response(slot, rsp)
    }
}

/// A hand-driven frontend: its tx and rx rings and one granted page of frame data
/// (byte i holds i as u8).
pub(super) struct Frontend {
    pub(super) tx: FrontRing<TxRequest, TxResponse>,
    tx_page: NonNull<u8>,
    pub(super) rx: FrontRing<RxRequest, RxResponse>,
    rx_page: NonNull<u8>,
    /// The data page, granted read-only to the driver domain.
    pub(super) data: GrantRef,
}

impl Frontend {
    pub(super) fn new(d: &Domains) -> Frontend {
        let g = &d.guest;
        let (tf, df) = (g.alloc_frame().unwrap(), g.alloc_frame().unwrap());
        let bytes: Vec<u8> = (0..PAGE_SIZE).map(|i| i as u8).collect();
        g.write(df, 0, &bytes).unwrap();
        let data = g.grant_access(DomId(0), df, true).unwrap();
        let tx_page = g.page_ptr(tf).unwrap();
        let rx_page = g.page_ptr(g.alloc_frame().unwrap()).unwrap();
        // SAFETY: the page is the guest's and lives as long as its domain, which the
        // fixture keeps for the whole test; only ring ends access it.
        let tx = unsafe { FrontRing::init(tx_page, PAGE_SIZE) }.unwrap();
        // SAFETY: as above.
        let rx = unsafe { FrontRing::init(rx_page, PAGE_SIZE) }.unwrap();
        Frontend {
            tx,
            tx_page,
            rx,
            rx_page,
            data,
        }
    }

    /// Post `n` empty pages for receive (fresh guest pages granted writable).
    pub(super) fn post_rx(&mut self, d: &Domains, n: u16) {
        for id in 0..n {
            let frame = d.guest.alloc_frame().unwrap();
            let gref = d.guest.grant_access(DomId(0), frame, false).unwrap();
            self.rx
                .push_request(&RxRequest { id, pad: 0, gref })
                .unwrap();
        }
        self.rx.push_requests();
    }

    /// The backend's end of the rx ring.
    pub(super) fn rx_back(&self) -> BackRing<RxRequest, RxResponse> {
        // SAFETY: as in `new`: the guest's page outlives the test.
        unsafe { BackRing::attach(self.rx_page, PAGE_SIZE) }.unwrap()
    }

    /// Publish `reqs`.
    pub(super) fn send(&mut self, reqs: &[TxRequest]) {
        for r in reqs {
            self.tx.push_request(r).unwrap();
        }
        self.tx.push_requests();
    }

    /// Statuses of the responses published so far.
    pub(super) fn statuses(&mut self) -> Vec<i16> {
        let mut v = Vec::new();
        while let Ok(Some(r)) = self.tx.pop_response() {
            v.push(r.status);
        }
        v
    }

    /// The backend's end of the tx ring, over memory that rewrites each slot after
    /// it is read, and the count of reads per slot.
    pub(super) fn rewriting_tx(
        &self,
        rewrite: fn(TxRequest) -> TxRequest,
    ) -> (
        BackRing<TxRequest, TxResponse, Rewriting<TxRequest, TxResponse>>,
        Reads,
    ) {
        // SAFETY: as in `new`: the guest's page outlives the test.
        let ring = unsafe { SharedRing::new(self.tx_page, PAGE_SIZE) }.unwrap();
        let reads = Rc::new(RefCell::new(vec![0; ring.entries() as usize]));
        let mem = Rewriting {
            ring,
            rewrite,
            reads: reads.clone(),
        };
        (BackRing::with_memory(mem, RingIdx(0)), reads)
    }
}

/// A control ring the guest set up (its page granted to the driver domain), mapped
/// by the driver domain; and the guest's pointer to the page, for hostile writes.
pub(super) fn ctrl_ring(d: &Domains) -> (CtrlRing<GrantOps, NoKick>, NonNull<u8>) {
    let g = &d.guest;
    let frame = g.alloc_frame().unwrap();
    let page = g.page_ptr(frame).unwrap();
    // SAFETY: the guest's page outlives the test; only ring ends access it.
    let front = unsafe { FrontRing::<CtrlRequest, CtrlResponse>::init(page, PAGE_SIZE) };
    front.unwrap();
    let gref = g.grant_access(DomId(0), frame, false).unwrap();
    let ring = CtrlRing::connect(&d.peer.grants, GUEST, gref, NoKick).unwrap();
    (ring, page)
}

/// A transmit path over `ring` with staging pages in the driver domain.
pub(super) fn tx_path<R: RingMemory<TxRequest, TxResponse>>(
    d: &Domains,
    ring: BackRing<TxRequest, TxResponse, R>,
    rate: Option<(u64, Duration)>,
    now: Instant,
) -> TxPath<NoKick, R> {
    let staging: Vec<Frame> = (0..TX_STAGING_PAGES)
        .map(|_| d.dom0.alloc_frame().unwrap())
        .collect();
    TxPath::new(ring, staging, rate, now, NoKick)
}

/// A receive path over the frontend's rx ring with staging pages in the driver
/// domain.
pub(super) fn rx_path(d: &Domains, fe: &Frontend) -> RxPath<NoKick> {
    let staging: Vec<Frame> = (0..RX_STAGING_PAGES)
        .map(|_| d.dom0.alloc_frame().unwrap())
        .collect();
    RxPath::new(fe.rx_back(), staging, NoKick)
}

/// One tx slot.
pub(super) fn slot(gref: GrantRef, offset: u16, size: u16, id: u16) -> TxRequest {
    TxRequest {
        gref,
        offset,
        flags: 0,
        id,
        size,
    }
}
