//! The front end of a ring (`FRONT_RING_*` and the request-side macros): the party that
//! produces requests and consumes responses.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use crate::error::RingError;
use crate::idx::{need_notify, RingIdx};
use crate::mem::{Entry, FenceSite, RingMemory, Word};
use crate::sring::SharedRing;

/// The front end of a shared ring: queues requests privately, publishes them with one
/// index store, and takes responses, each copied out of shared memory exactly once.
///
/// ```
/// use core::ptr::NonNull;
/// use xennet_ring::{BackRing, FrontRing, netif::{TxRequest, TxResponse}};
///
/// #[repr(C, align(4096))]
/// struct Page([u8; 4096]);
/// let mut page = Box::new(Page([0; 4096]));
/// let mem = NonNull::new(page.0.as_mut_ptr()).unwrap();
/// // SAFETY: the page outlives both ends and is only used through them.
/// let mut front = unsafe { FrontRing::<TxRequest, TxResponse>::init(mem, 4096) }.unwrap();
/// let mut back = unsafe { BackRing::<TxRequest, TxResponse>::attach(mem, 4096) }.unwrap();
/// assert_eq!(front.size(), 256);
///
/// front.push_request(&TxRequest { id: 7, size: 60, ..Default::default() }).unwrap();
/// assert!(front.push_requests_and_check_notify()); // the back asked to be woken
/// let req = back.pop_request().unwrap().unwrap();
/// back.push_response(&TxResponse { id: req.id, status: 0 }).unwrap();
/// back.push_responses_and_check_notify();
/// assert_eq!(front.pop_response().unwrap().unwrap().id, 7);
/// ```
pub struct FrontRing<Req, Rsp, M = SharedRing<Req, Rsp>> {
    mem: M,
    size: u32,
    req_prod_pvt: RingIdx,
    rsp_cons: RingIdx,
    /// The peer's `rsp_prod` as last read and validated: responses up to it may be
    /// taken without touching the shared header again.
    rsp_prod_seen: RingIdx,
    _types: PhantomData<fn(Req) -> Rsp>,
}

impl<Req: Entry, Rsp: Entry> FrontRing<Req, Rsp, SharedRing<Req, Rsp>> {
    /// Initialise a fresh shared ring in `len` bytes at `mem` and become its front
    /// (`SHARED_RING_INIT` + `FRONT_RING_INIT`). `len` is `4096 << order`.
    ///
    /// # Safety
    /// As [`SharedRing::new`]: the memory stays valid for the ring's life and is only
    /// accessed through ring ends.
    pub unsafe fn init(mem: NonNull<u8>, len: usize) -> Result<Self, RingError> {
        // SAFETY: forwarded to our caller.
        let sring = unsafe { SharedRing::new(mem, len)? };
        sring.init();
        Ok(Self::with_memory(sring, RingIdx(0)))
    }
}

impl<Req: Entry, Rsp: Entry, M: RingMemory<Req, Rsp>> FrontRing<Req, Rsp, M> {
    /// A front over any [`RingMemory`] (used by loom models), starting at index `start`
    /// for both its private producer and consumer indices.
    pub fn with_memory(mem: M, start: RingIdx) -> Self {
        let size = mem.entries();
        FrontRing {
            mem,
            size,
            req_prod_pvt: start,
            rsp_cons: start,
            rsp_prod_seen: start,
            _types: PhantomData,
        }
    }

    /// Entries in the ring (`RING_SIZE`).
    #[inline]
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Our private producer index: requests queued, published or not.
    #[inline]
    pub fn req_prod_pvt(&self) -> RingIdx {
        self.req_prod_pvt
    }

    /// Our consumer index: responses taken so far.
    #[inline]
    pub fn rsp_cons(&self) -> RingIdx {
        self.rsp_cons
    }

    /// Free request slots (`RING_FREE_REQUESTS`).
    #[inline]
    pub fn free_requests(&self) -> u32 {
        self.size - self.req_prod_pvt.since(self.rsp_cons)
    }

    /// No free request slot (`RING_FULL`).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Requests queued but not yet published.
    #[inline]
    pub fn unpublished(&self) -> u32 {
        self.req_prod_pvt
            .since(RingIdx(self.mem.load(Word::ReqProd, Ordering::Relaxed)))
    }

    /// Queue one request in the next free slot; invisible to the back until
    /// published. Returns the index it was queued at.
    #[inline]
    pub fn push_request(&mut self, req: &Req) -> Result<RingIdx, RingError> {
        if self.is_full() {
            return Err(RingError::Full);
        }
        let idx = self.req_prod_pvt;
        self.mem.write_request(idx.slot(self.size), req);
        self.req_prod_pvt = idx.add(1);
        Ok(idx)
    }

    /// Queue requests from `reqs` until it ends or the ring fills; returns how many.
    pub fn push_requests_from<I: IntoIterator<Item = Req>>(&mut self, reqs: I) -> u32 {
        let mut n = 0;
        for req in reqs.into_iter().take(self.free_requests() as usize) {
            self.mem
                .write_request(self.req_prod_pvt.slot(self.size), &req);
            self.req_prod_pvt = self.req_prod_pvt.add(1);
            n += 1;
        }
        n
    }

    /// Publish queued requests without deciding about a notification
    /// (`RING_PUSH_REQUESTS`).
    #[inline]
    pub fn push_requests(&mut self) {
        self.mem
            .store(Word::ReqProd, self.req_prod_pvt.0, Ordering::Release);
    }

    /// Publish queued requests and say whether the back must be notified
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`): only if its `req_event` lies among the
    /// newly published entries. One store and one decision per batch.
    #[inline]
    pub fn push_requests_and_check_notify(&mut self) -> bool {
        let old = RingIdx(self.mem.load(Word::ReqProd, Ordering::Relaxed));
        let new = self.req_prod_pvt;
        self.mem.store(Word::ReqProd, new.0, Ordering::Release);
        self.mem.fence(FenceSite::PushCheckNotify);
        let event = RingIdx(self.mem.load(Word::ReqEvent, Ordering::Relaxed));
        need_notify(old, new, event)
    }

    /// Read and validate the back's `rsp_prod`: it may not claim more responses than we
    /// have requests outstanding (`RING_RESPONSE_PROD_OVERFLOW`, strengthened).
    fn refresh(&mut self) -> Result<u32, RingError> {
        let prod = RingIdx(self.mem.load(Word::RspProd, Ordering::Acquire));
        let available = prod.since(self.rsp_cons);
        if available > self.req_prod_pvt.since(self.rsp_cons) {
            return Err(RingError::ProducerOverflow {
                prod: prod.0,
                cons: self.rsp_cons.0,
            });
        }
        self.rsp_prod_seen = prod;
        Ok(available)
    }

    /// Responses published and not yet taken (`RING_HAS_UNCONSUMED_RESPONSES`), or an
    /// error if the back's index is impossible.
    #[inline]
    pub fn unconsumed_responses(&mut self) -> Result<u32, RingError> {
        self.refresh()
    }

    /// Take the next response, copied out of the slot once; `None` if none is
    /// published.
    #[inline]
    pub fn pop_response(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.rsp_cons == self.rsp_prod_seen && self.refresh()? == 0 {
            return Ok(None);
        }
        let rsp = self.mem.read_response(self.rsp_cons.slot(self.size));
        self.rsp_cons = self.rsp_cons.add(1);
        Ok(Some(rsp))
    }

    /// Take up to `out.len()` responses into `out`; returns how many.
    pub fn pop_responses(&mut self, out: &mut [Rsp]) -> Result<usize, RingError> {
        let mut n = 0;
        while n < out.len() {
            match self.pop_response()? {
                Some(rsp) => {
                    out[n] = rsp;
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: true if responses are waiting; otherwise ask to
    /// be notified at the next one (`rsp_event = rsp_cons + 1`), fence, and look again
    /// so a response published meanwhile is not missed. Call before sleeping.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.refresh()? > 0 {
            return Ok(true);
        }
        self.mem
            .store(Word::RspEvent, self.rsp_cons.add(1).0, Ordering::Relaxed);
        self.mem.fence(FenceSite::FinalCheck);
        Ok(self.refresh()? > 0)
    }

    /// The ring memory (for inspection in tests and tools).
    pub fn memory(&self) -> &M {
        &self.mem
    }
}
