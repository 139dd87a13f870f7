//! The frontend's control ring (netif.h `feature-ctrl-ring`): after connecting, the
//! device asks the backend to keep its buffer pools mapped (staging grants:
//! `GET_GREF_MAPPING_SIZE`, then `ADD_GREF_MAPPING` per queue) and, with several
//! queues, sets a Toeplitz hash so that both ends steer a flow onto the same queue.
//!
//! One request is outstanding at a time; each response is copied once, must carry
//! the id and type of that request, and only then changes anything. A request the
//! backend refuses (`NOT_SUPPORTED`, as a Linux backend answers the staging-grant
//! messages) is counted and skipped: the device then works by plain grant copy.

use alloc::vec::Vec;

use xennet_ring::netif::{
    ctrl_status, ctrl_type, hash_input, hash_type, toeplitz_hash, CtrlRequest, CtrlResponse,
    XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ,
};
use xennet_ring::{DomId, FrameAlloc, FrontRing, GrantAccess, GrantRef, LocalMemory, PAGE_SIZE};

use crate::error::FrontError;
use crate::pool::GrantedPages;

/// The Toeplitz key the frontend sets (the RSS specification's sample key).
pub const HASH_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];
/// Entries of the hash-to-queue table the frontend sets.
pub const HASH_MAPPING_SIZE: usize = 128;
/// Hash types the frontend asks for.
pub const HASH_TYPES: u32 = hash_type::IPV4 | hash_type::IPV4_TCP;

/// What the control ring has achieved so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtrlState {
    /// Buffer pages the backend confirmed it keeps mapped (staging grants).
    pub static_grants: usize,
    /// The backend steers by the frontend's Toeplitz settings.
    pub hash: bool,
    /// Requests answered.
    pub requests: u64,
    /// Requests the backend refused (not supported, invalid).
    pub refused: u64,
    /// Every request of the start-up script was answered.
    pub done: bool,
}

/// One request of the start-up script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    GrefSize(u16),
    AddGrefs(u16),
    HashAlgorithm,
    HashFlags,
    HashKey,
    HashMappingSize,
    HashMapping,
}

impl Step {
    fn is_hash(self) -> bool {
        !matches!(self, Step::GrefSize(_) | Step::AddGrefs(_))
    }

    fn type_(self) -> u16 {
        match self {
            Step::GrefSize(_) => ctrl_type::GET_GREF_MAPPING_SIZE,
            Step::AddGrefs(_) => ctrl_type::ADD_GREF_MAPPING,
            Step::HashAlgorithm => ctrl_type::SET_HASH_ALGORITHM,
            Step::HashFlags => ctrl_type::SET_HASH_FLAGS,
            Step::HashKey => ctrl_type::SET_HASH_KEY,
            Step::HashMappingSize => ctrl_type::SET_HASH_MAPPING_SIZE,
            Step::HashMapping => ctrl_type::SET_HASH_MAPPING,
        }
    }
}

pub(crate) struct Ctrl<N> {
    pub(crate) ring: FrontRing<CtrlRequest, CtrlResponse>,
    /// `[0]` the ring, `[1]` the data page requests point at (lists, key, table).
    pages: GrantedPages,
    pub(crate) kick: N,
    steps: Vec<Step>,
    next: usize,
    waiting: Option<(u16, Step)>,
    next_id: u16,
    /// Per queue: how many grants the backend will keep mapped.
    room: Vec<u32>,
    /// Entries sent in the outstanding ADD request.
    adding: usize,
    hash_failed: bool,
    /// The script was started (the device is connected).
    started: bool,
    pub(crate) state: CtrlState,
    /// What the next request's data page gets (allocated once).
    pub(crate) scratch: Vec<u8>,
}

impl<N> Ctrl<N> {
    pub(crate) fn new<P: GrantAccess + FrameAlloc + LocalMemory>(
        platform: &P,
        backend: DomId,
        kick: N,
    ) -> Result<Self, FrontError> {
        let mut pages = GrantedPages::new(platform, backend, 2, false)?;
        let ring = match platform
            .page_ptr(pages.frames[0])
            .map_err(FrontError::from)
            // SAFETY: the page is ours, allocated above and freed only in `release`,
            // after the ring is dropped.
            .and_then(|p| unsafe { FrontRing::init(p, PAGE_SIZE) }.map_err(FrontError::from))
        {
            Ok(r) => r,
            Err(e) => {
                pages.release(platform);
                return Err(e);
            }
        };
        Ok(Ctrl {
            ring,
            pages,
            kick,
            steps: Vec::new(),
            next: 0,
            waiting: None,
            next_id: 0,
            room: Vec::new(),
            adding: 0,
            hash_failed: false,
            started: false,
            state: CtrlState::default(),
            scratch: Vec::with_capacity(PAGE_SIZE),
        })
    }

    /// `ctrl-ring-ref`.
    pub(crate) fn ring_ref(&self) -> GrantRef {
        self.pages.grefs[0]
    }

    /// The script run once connected: staging grants per queue, then the hash when
    /// there are several queues.
    pub(crate) fn start(&mut self, queues: usize) {
        self.started = true;
        self.room = alloc::vec![0; queues];
        for q in 0..queues as u16 {
            self.steps.push(Step::GrefSize(q));
            self.steps.push(Step::AddGrefs(q));
        }
        if queues > 1 {
            self.steps.extend([
                Step::HashAlgorithm,
                Step::HashFlags,
                Step::HashKey,
                Step::HashMappingSize,
                Step::HashMapping,
            ]);
        }
        if self.steps.is_empty() {
            self.state.done = true;
        }
    }

    /// The next request to send, skipping steps that no longer apply.
    pub(crate) fn next_step(&mut self) -> Option<Step> {
        if self.waiting.is_some() || !self.started {
            return None;
        }
        while let Some(&step) = self.steps.get(self.next) {
            self.next += 1;
            let skip = match step {
                Step::AddGrefs(q) => self.room.get(usize::from(q)).copied().unwrap_or(0) == 0,
                s => s.is_hash() && self.hash_failed,
            };
            if !skip {
                return Some(step);
            }
        }
        self.state.done = true;
        None
    }

    /// Grants queue `q`'s backend keeps mapped at most.
    pub(crate) fn room(&self, q: u16) -> usize {
        self.room.get(usize::from(q)).copied().unwrap_or(0) as usize
    }

    /// Write the scratch buffer to the start of the data page; returns the page's
    /// grant, which the request names.
    pub(crate) fn write_data<P: LocalMemory>(&self, platform: &P) -> Result<GrantRef, FrontError> {
        platform.write(self.pages.frames[1], 0, &self.scratch)?;
        Ok(self.pages.grefs[1])
    }

    /// Put `step`'s request on the ring (published by the caller).
    pub(crate) fn send(&mut self, step: Step, data: [u32; 3], adding: usize) {
        let type_ = step.type_();
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        // Cannot fail: one request outstanding on a ring of many slots.
        let _ = self.ring.push_request(&CtrlRequest { id, type_, data });
        self.adding = adding;
        self.waiting = Some((id, step));
    }

    /// Take the answer to the outstanding request, if it arrived.
    pub(crate) fn take_response(&mut self) -> Result<bool, FrontError> {
        let Some((id, step)) = self.waiting else {
            return Ok(false);
        };
        let Some(rsp) = self.ring.pop_response()? else {
            return Ok(false);
        };
        if rsp.id != id || rsp.type_ != step.type_() {
            return Err(FrontError::BadCtrlResponse { id: rsp.id });
        }
        self.waiting = None;
        self.state.requests += 1;
        let ok = rsp.status == ctrl_status::SUCCESS;
        if !ok {
            self.state.refused += 1;
        }
        match step {
            Step::GrefSize(q) => {
                if let Some(r) = self.room.get_mut(usize::from(q)) {
                    *r = if ok { rsp.data } else { 0 };
                }
            }
            Step::AddGrefs(_) if ok => self.state.static_grants += self.adding,
            Step::AddGrefs(_) => {}
            Step::HashMapping if ok => self.state.hash = true,
            _ if !ok => self.hash_failed = true,
            _ => {}
        }
        Ok(true)
    }

    /// Whether a request is outstanding.
    pub(crate) fn waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// End the grants and free the pages; returns grants the backend still held.
    pub(crate) fn release<P: GrantAccess + FrameAlloc>(self, platform: &P) -> usize {
        // The ring end is a pointer into the page with no Drop: nothing touches the
        // page after this.
        let Ctrl { mut pages, .. } = self;
        pages.release(platform)
    }
}

/// The queue the frontend's Toeplitz settings give `frame` (the same table the
/// backend was given), if the frame has a hashable header.
pub(crate) fn hash_queue(frame: &[u8], queues: usize) -> Option<usize> {
    let mut buf = [0u8; 36];
    let n = hash_input(frame, HASH_TYPES, &mut buf)?;
    let h = toeplitz_hash(&HASH_KEY, &buf[..n]) as usize;
    Some(mapping_entry(h % HASH_MAPPING_SIZE, queues))
}

/// Entry `i` of the hash-to-queue table: queues in turn.
pub(crate) fn mapping_entry(i: usize, queues: usize) -> usize {
    i % queues.max(1)
}

/// The request arguments for a hash step, and what its data page must hold (the key,
/// the table); for those two, `data[0]` is the data page's grant, filled in by the
/// caller.
pub(crate) fn hash_request(step: Step, queues: usize, page: &mut Vec<u8>) -> [u32; 3] {
    page.clear();
    match step {
        Step::HashAlgorithm => [XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, 0, 0],
        Step::HashFlags => [HASH_TYPES, 0, 0],
        Step::HashKey => {
            page.extend_from_slice(&HASH_KEY);
            [0, HASH_KEY.len() as u32, 0]
        }
        Step::HashMappingSize => [HASH_MAPPING_SIZE as u32, 0, 0],
        Step::HashMapping => {
            for i in 0..HASH_MAPPING_SIZE {
                page.extend_from_slice(&(mapping_entry(i, queues) as u32).to_ne_bytes());
            }
            [0, HASH_MAPPING_SIZE as u32, 0]
        }
        Step::GrefSize(_) | Step::AddGrefs(_) => [0; 3],
    }
}
