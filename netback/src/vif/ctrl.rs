//! The control ring of netif.h (`feature-ctrl-ring`): the frontend's out-of-band
//! requests. Supported: the staging-grant messages (`GET_GREF_MAPPING_SIZE`,
//! `ADD_GREF_MAPPING`, `DEL_GREF_MAPPING`) and the Toeplitz hash messages that steer
//! frames for the guest onto its queues.
//!
//! Every request is copied off the ring once; every page it names is mapped, copied
//! into a local buffer once and unmapped before the values are checked. A bad value is
//! answered with `INVALID_PARAMETER` (or `BUFFER_OVERFLOW`) and changes nothing; only
//! an impossible ring index ends the vif.

use zerocopy::IntoBytes;

use xennet_ring::memory::{read_mapped, write_mapped};
use xennet_ring::netif::{
    ctrl_status, ctrl_type, hash_input, hash_type, toeplitz_hash, CtrlGref, CtrlRequest,
    CtrlResponse, XEN_NETIF_CTRL_HASH_ALGORITHM_NONE, XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ,
};
use xennet_ring::{BackRing, DomId, GrantMap, GrantRef, Notify, PAGE_SIZE};

use super::error::VifError;
use super::staging::{GREF_LIST_MAX, STATIC_GRANTS_PER_QUEUE};

/// Longest Toeplitz key the backend keeps (as Linux netback).
pub const MAX_HASH_KEY: usize = 40;
/// Most entries of the hash-to-queue mapping table (as Linux netback).
pub const MAX_HASH_MAPPING: usize = 128;
/// Hash types this backend computes.
pub const HASH_TYPES: u32 =
    hash_type::IPV4 | hash_type::IPV4_TCP | hash_type::IPV6 | hash_type::IPV6_TCP;
/// Control requests handled per call before others get a turn.
const CTRL_BUDGET: usize = 64;

/// A connected control ring: the frontend's page mapped, its channel bound.
pub struct CtrlRing<G: GrantMap, N> {
    ring: BackRing<CtrlRequest, CtrlResponse>,
    map: G::Mapping,
    kick: N,
}

impl<G: GrantMap, N: Notify> CtrlRing<G, N> {
    /// Map the frontend's `ctrl-ring-ref`; `kick` is the bound `event-channel-ctrl`.
    pub fn connect(
        grants: &G,
        frontend: DomId,
        ring_ref: GrantRef,
        kick: N,
    ) -> Result<Self, VifError> {
        let map = grants
            .map(frontend, ring_ref, false)
            .map_err(VifError::Map)?;
        // SAFETY: the mapping is kept in `map` until `close`, which drops the ring
        // first, so the page outlives every access through the ring end.
        match unsafe { BackRing::attach(xennet_ring::MappedPage::as_ptr(&map), PAGE_SIZE) } {
            Ok(ring) => Ok(CtrlRing { ring, map, kick }),
            Err(e) => {
                let _ = grants.unmap(map);
                Err(VifError::Ring(e))
            }
        }
    }

    /// Before sleeping: true if requests wait; otherwise the event index is armed.
    pub(crate) fn final_check(&mut self) -> Result<bool, VifError> {
        Ok(self.ring.final_check_for_requests()?)
    }

    /// Unmap the ring page.
    pub fn close(self, grants: &G) {
        // The ring end is a pointer into the page with no Drop: nothing touches the
        // page after this.
        let _ = grants.unmap(self.map);
    }
}

/// The frontend's hash settings (netif.h "Hash types", Toeplitz only).
pub(crate) struct HashState {
    algorithm: u32,
    types: u32,
    key: [u8; MAX_HASH_KEY],
    mapping: Vec<u32>,
}

impl HashState {
    pub(crate) fn new() -> Self {
        HashState {
            algorithm: XEN_NETIF_CTRL_HASH_ALGORITHM_NONE,
            types: 0,
            key: [0; MAX_HASH_KEY],
            mapping: Vec::with_capacity(MAX_HASH_MAPPING),
        }
    }

    /// The queue the frontend's hash settings send `frame` to, if they apply.
    pub(crate) fn queue_for(&self, frame: &[u8], queues: usize) -> Option<usize> {
        if self.algorithm != XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ || self.types == 0 {
            return None;
        }
        let mut buf = [0u8; 36];
        let n = hash_input(frame, self.types, &mut buf)?;
        let h = toeplitz_hash(&self.key, &buf[..n]) as usize;
        if self.mapping.is_empty() {
            Some(h % queues.max(1))
        } else {
            // Entries were checked against the queue count when they were set.
            Some(self.mapping[h % self.mapping.len()] as usize)
        }
    }
}

/// What a request handler can reach: the grants to map the frontend's pages, and the
/// queues' staging-grant tables.
pub(crate) trait CtrlTarget {
    type Grants: GrantMap;
    fn grants(&self) -> &Self::Grants;
    fn frontend(&self) -> DomId;
    fn queues(&self) -> usize;
    fn add_static(&mut self, queue: usize, list: &[CtrlGref]) -> u32;
    fn del_static(&mut self, queue: usize, list: &mut [CtrlGref]) -> u32;
    fn hash(&mut self) -> &mut HashState;
}

/// Answer up to [`CTRL_BUDGET`] requests. Returns how many were answered.
pub(crate) fn process<T: CtrlTarget, N: Notify>(
    ring: &mut CtrlRing<T::Grants, N>,
    target: &mut T,
    scratch: &mut [CtrlGref; GREF_LIST_MAX],
) -> Result<usize, VifError> {
    let mut n = 0;
    while n < CTRL_BUDGET {
        let Some(req) = ring.ring.pop_request()? else {
            break;
        };
        let (status, data) = answer(target, &req, scratch);
        ring.ring.push_response(&CtrlResponse {
            id: req.id,
            type_: req.type_,
            status,
            data,
        })?;
        n += 1;
    }
    if n > 0 && ring.ring.push_responses_and_check_notify() {
        ring.kick.notify();
    }
    Ok(n)
}

/// Copy `len` bytes from the start of the frontend's page `gref` into `buf`.
fn read_page<G: GrantMap>(
    grants: &G,
    frontend: DomId,
    gref: u32,
    buf: &mut [u8],
) -> Result<(), u32> {
    let map = grants
        .map(frontend, GrantRef(gref), true)
        .map_err(|_| ctrl_status::INVALID_PARAMETER)?;
    let r = read_mapped(&map, 0, buf);
    let _ = grants.unmap(map);
    r.map_err(|_| ctrl_status::INVALID_PARAMETER)
}

/// `scratch` is one page, typed as gref entries so a list read into it is aligned.
fn answer<T: CtrlTarget>(
    target: &mut T,
    req: &CtrlRequest,
    scratch: &mut [CtrlGref; GREF_LIST_MAX],
) -> (u32, u32) {
    let [d0, d1, d2] = req.data;
    let fail = |s| (s, 0);
    match req.type_ {
        ctrl_type::GET_GREF_MAPPING_SIZE => {
            if d0 as usize >= target.queues() {
                return fail(ctrl_status::INVALID_PARAMETER);
            }
            (ctrl_status::SUCCESS, STATIC_GRANTS_PER_QUEUE as u32)
        }
        ctrl_type::ADD_GREF_MAPPING | ctrl_type::DEL_GREF_MAPPING => {
            let (queue, len) = (d0 as usize, d2 as usize);
            if queue >= target.queues() || len == 0 || len > GREF_LIST_MAX {
                return fail(ctrl_status::INVALID_PARAMETER);
            }
            let list = &mut scratch[..len];
            if let Err(s) = read_page(target.grants(), target.frontend(), d1, list.as_mut_bytes()) {
                return fail(s);
            }
            if req.type_ == ctrl_type::ADD_GREF_MAPPING {
                return (target.add_static(queue, list), 0);
            }
            let unmapped = target.del_static(queue, list);
            // The statuses go back into the frontend's list page.
            let frontend = target.frontend();
            let grants = target.grants();
            let Ok(map) = grants.map(frontend, GrantRef(d1), false) else {
                return fail(ctrl_status::INVALID_PARAMETER);
            };
            let r = write_mapped(&map, 0, list.as_bytes());
            let _ = grants.unmap(map);
            match r {
                Ok(()) => (ctrl_status::SUCCESS, unmapped),
                Err(_) => fail(ctrl_status::INVALID_PARAMETER),
            }
        }
        ctrl_type::SET_HASH_ALGORITHM => match d0 {
            XEN_NETIF_CTRL_HASH_ALGORITHM_NONE | XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ => {
                let h = target.hash();
                h.algorithm = d0;
                (ctrl_status::SUCCESS, 0)
            }
            _ => fail(ctrl_status::INVALID_PARAMETER),
        },
        ctrl_type::GET_HASH_FLAGS => (ctrl_status::SUCCESS, HASH_TYPES),
        ctrl_type::SET_HASH_FLAGS => {
            let h = target.hash();
            if d0 & !HASH_TYPES != 0 || h.algorithm == XEN_NETIF_CTRL_HASH_ALGORITHM_NONE {
                return fail(ctrl_status::INVALID_PARAMETER);
            }
            h.types = d0;
            (ctrl_status::SUCCESS, 0)
        }
        ctrl_type::SET_HASH_KEY => {
            let len = d1 as usize;
            if len > MAX_HASH_KEY {
                return fail(ctrl_status::BUFFER_OVERFLOW);
            }
            let mut key = [0u8; MAX_HASH_KEY];
            if len > 0 {
                if let Err(s) = read_page(target.grants(), target.frontend(), d0, &mut key[..len]) {
                    return fail(s);
                }
            }
            target.hash().key = key;
            (ctrl_status::SUCCESS, 0)
        }
        ctrl_type::GET_HASH_MAPPING_SIZE => (ctrl_status::SUCCESS, MAX_HASH_MAPPING as u32),
        ctrl_type::SET_HASH_MAPPING_SIZE => {
            let size = d0 as usize;
            if size > MAX_HASH_MAPPING {
                return fail(ctrl_status::INVALID_PARAMETER);
            }
            let h = target.hash();
            h.mapping.clear();
            h.mapping.resize(size, 0);
            (ctrl_status::SUCCESS, 0)
        }
        ctrl_type::SET_HASH_MAPPING => {
            let (len, off) = (d1 as usize, d2 as usize);
            if len == 0 || len > PAGE_SIZE / 4 {
                return fail(ctrl_status::INVALID_PARAMETER);
            }
            if off.saturating_add(len) > target.hash().mapping.len() {
                return fail(ctrl_status::BUFFER_OVERFLOW);
            }
            let bytes = &mut scratch.as_mut_bytes()[..len * 4];
            if let Err(s) = read_page(target.grants(), target.frontend(), d0, bytes) {
                return fail(s);
            }
            let queues = target.queues();
            let values = bytes
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
            if values.clone().any(|q| q as usize >= queues) {
                return fail(ctrl_status::INVALID_PARAMETER);
            }
            for (slot, q) in target.hash().mapping[off..off + len].iter_mut().zip(values) {
                *slot = q;
            }
            (ctrl_status::SUCCESS, 0)
        }
        _ => fail(ctrl_status::NOT_SUPPORTED),
    }
}
