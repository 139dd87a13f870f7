//! The back end of a ring (`BACK_RING_*` and the response-side macros): the party that
//! consumes requests and produces responses.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use crate::error::RingError;
use crate::idx::{need_notify, RingIdx};
use crate::mem::{Entry, FenceSite, RingMemory, Word};
use crate::sring::SharedRing;

/// The back end of a shared ring: takes requests (each copied out once, so a front
/// rewriting a slot after publishing it cannot change what was validated), queues
/// responses privately and publishes them with one index store.
///
/// A front whose `req_prod` claims more requests than the ring holds gets
/// [`RingError::ProducerOverflow`] from every consuming call; the caller should treat
/// the connection as broken. Nothing is read out of bounds and nothing panics.
pub struct BackRing<Req, Rsp, M = SharedRing<Req, Rsp>> {
    mem: M,
    size: u32,
    rsp_prod_pvt: RingIdx,
    req_cons: RingIdx,
    /// The front's `req_prod` as last read and validated.
    req_prod_seen: RingIdx,
    _types: PhantomData<fn(Req) -> Rsp>,
}

impl<Req: Entry, Rsp: Entry> BackRing<Req, Rsp, SharedRing<Req, Rsp>> {
    /// Become the back of a ring the front initialised, resuming at its published
    /// `rsp_prod` (`BACK_RING_ATTACH`, as Linux netback connects). Fails if the front's
    /// `req_prod` already claims more requests than the ring holds.
    ///
    /// # Safety
    /// As [`SharedRing::new`]: the memory stays valid for the ring's life and is only
    /// accessed through ring ends.
    pub unsafe fn attach(mem: NonNull<u8>, len: usize) -> Result<Self, RingError> {
        // SAFETY: forwarded to our caller.
        let sring = unsafe { SharedRing::new(mem, len)? };
        let rsp_prod = RingIdx(sring.load(Word::RspProd, Ordering::Acquire));
        let req_prod = RingIdx(sring.load(Word::ReqProd, Ordering::Acquire));
        if req_prod.since(rsp_prod) > sring.entries() {
            return Err(RingError::ProducerOverflow {
                prod: req_prod.0,
                cons: rsp_prod.0,
            });
        }
        Ok(Self::with_memory(sring, rsp_prod))
    }
}

impl<Req: Entry, Rsp: Entry, M: RingMemory<Req, Rsp>> BackRing<Req, Rsp, M> {
    /// A back over any [`RingMemory`] (used by loom models), starting at `start`.
    pub fn with_memory(mem: M, start: RingIdx) -> Self {
        let size = mem.entries();
        BackRing {
            mem,
            size,
            rsp_prod_pvt: start,
            req_cons: start,
            req_prod_seen: start,
            _types: PhantomData,
        }
    }

    /// Entries in the ring (`RING_SIZE`).
    #[inline]
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Our consumer index: requests taken so far.
    #[inline]
    pub fn req_cons(&self) -> RingIdx {
        self.req_cons
    }

    /// Our private producer index: responses queued, published or not.
    #[inline]
    pub fn rsp_prod_pvt(&self) -> RingIdx {
        self.rsp_prod_pvt
    }

    /// Requests taken and not yet answered.
    #[inline]
    pub fn unanswered(&self) -> u32 {
        self.req_cons.since(self.rsp_prod_pvt)
    }

    /// Read and validate the front's `req_prod` (`RING_REQUEST_PROD_OVERFLOW`); returns
    /// how many requests may be taken (`RING_HAS_UNCONSUMED_REQUESTS`: published and
    /// not taken, and never more than the slots our unanswered requests leave).
    fn refresh(&mut self) -> Result<u32, RingError> {
        let prod = RingIdx(self.mem.load(Word::ReqProd, Ordering::Acquire));
        let outstanding = prod.since(self.rsp_prod_pvt);
        let available = prod.since(self.req_cons);
        // Too far ahead, or moved back behind what we already took: both impossible
        // for an honest front.
        if outstanding > self.size || available > outstanding {
            return Err(RingError::ProducerOverflow {
                prod: prod.0,
                cons: self.req_cons.0,
            });
        }
        self.req_prod_seen = prod;
        Ok(available)
    }

    /// Requests published and not yet taken, or an error if the front's index is
    /// impossible.
    #[inline]
    pub fn unconsumed_requests(&mut self) -> Result<u32, RingError> {
        self.refresh()
    }

    /// Take the next request, copied out of its slot once; `None` if none is published.
    #[inline]
    pub fn pop_request(&mut self) -> Result<Option<Req>, RingError> {
        if self.req_cons == self.req_prod_seen && self.refresh()? == 0 {
            return Ok(None);
        }
        let req = self.mem.read_request(self.req_cons.slot(self.size));
        self.req_cons = self.req_cons.add(1);
        Ok(Some(req))
    }

    /// Take up to `out.len()` requests into `out`; returns how many.
    pub fn pop_requests(&mut self, out: &mut [Req]) -> Result<usize, RingError> {
        let mut n = 0;
        while n < out.len() {
            match self.pop_request()? {
                Some(req) => {
                    out[n] = req;
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }

    /// Queue a response in the next slot (the slot of the oldest unanswered request);
    /// invisible to the front until published. Fails with [`RingError::Full`] if every
    /// taken request is already answered.
    #[inline]
    pub fn push_response(&mut self, rsp: &Rsp) -> Result<RingIdx, RingError> {
        if self.unanswered() == 0 {
            return Err(RingError::Full);
        }
        let idx = self.rsp_prod_pvt;
        self.mem.write_response(idx.slot(self.size), rsp);
        self.rsp_prod_pvt = idx.add(1);
        Ok(idx)
    }

    /// Publish queued responses without a notification decision (`RING_PUSH_RESPONSES`).
    #[inline]
    pub fn push_responses(&mut self) {
        self.mem
            .store(Word::RspProd, self.rsp_prod_pvt.0, Ordering::Release);
    }

    /// Publish queued responses and say whether the front must be notified
    /// (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).
    #[inline]
    pub fn push_responses_and_check_notify(&mut self) -> bool {
        let old = RingIdx(self.mem.load(Word::RspProd, Ordering::Relaxed));
        let new = self.rsp_prod_pvt;
        self.mem.store(Word::RspProd, new.0, Ordering::Release);
        self.mem.fence(FenceSite::PushCheckNotify);
        let event = RingIdx(self.mem.load(Word::RspEvent, Ordering::Relaxed));
        need_notify(old, new, event)
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: true if requests are waiting; otherwise ask to be
    /// notified at the next one (`req_event = req_cons + 1`), fence, and look again.
    /// Call before sleeping.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.refresh()? > 0 {
            return Ok(true);
        }
        self.mem
            .store(Word::ReqEvent, self.req_cons.add(1).0, Ordering::Relaxed);
        self.mem.fence(FenceSite::FinalCheck);
        Ok(self.refresh()? > 0)
    }

    /// The ring memory (for inspection in tests and tools).
    pub fn memory(&self) -> &M {
        &self.mem
    }
}
