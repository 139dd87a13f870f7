//! The memory a ring lives in, as the protocol code sees it.
//!
//! The front and back ring logic is written once over [`RingMemory`]: loads and stores
//! of the four header indices with explicit orderings, a full fence, and copies of one
//! entry in or out. Two implementations exist: [`crate::SharedRing`], the real shared
//! page (atomics on the header words, volatile copies of entries), and, under
//! `cfg(loom)`, [`crate::loom::LoomRing`], whose atomics and cells loom can check. The
//! model therefore checks the very code that runs on the page.

use core::sync::atomic::Ordering;

use zerocopy::{FromBytes, Immutable, IntoBytes};

/// What a ring entry must be: plain bytes, copied by value. Any bit pattern a peer
/// writes is a valid value (`FromBytes`), so a copy can be validated afterwards.
pub trait Entry: Copy + FromBytes + IntoBytes + Immutable {}

impl<T: Copy + FromBytes + IntoBytes + Immutable> Entry for T {}

/// One of the four index words at the start of a shared ring (`struct *_sring`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Word {
    /// `req_prod`: written by the front, read by the back.
    ReqProd = 0,
    /// `req_event`: written by the back (final check), read by the front.
    ReqEvent = 1,
    /// `rsp_prod`: written by the back, read by the front.
    RspProd = 2,
    /// `rsp_event`: written by the front (final check), read by the back.
    RspEvent = 3,
}

/// Where a full fence is issued; lets a model remove one on purpose to show it matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceSite {
    /// Between publishing a producer index and reading the peer's event index
    /// (`xen_mb()` in `RING_PUSH_*_AND_CHECK_NOTIFY`).
    PushCheckNotify,
    /// Between writing our event index and re-reading the peer's producer index
    /// (`xen_mb()` in `RING_FINAL_CHECK_FOR_*`).
    FinalCheck,
}

/// Shared ring memory: a header of four `u32` indices and `entries()` slots, each
/// holding one request or one response (a C union).
///
/// Implementations must make index accesses atomic with the given ordering and make
/// entry copies whole (the entry is read or written by value, never referenced).
pub trait RingMemory<Req, Rsp> {
    /// Number of slots (a power of two, at least 1).
    fn entries(&self) -> u32;
    /// Load a header index.
    fn load(&self, word: Word, order: Ordering) -> u32;
    /// Store a header index.
    fn store(&self, word: Word, value: u32, order: Ordering);
    /// A sequentially consistent fence (`xen_mb()`).
    fn fence(&self, site: FenceSite);
    /// Copy the request out of `slot` (`slot < entries()`).
    fn read_request(&self, slot: u32) -> Req;
    /// Copy `req` into `slot`.
    fn write_request(&self, slot: u32, req: &Req);
    /// Copy the response out of `slot`.
    fn read_response(&self, slot: u32) -> Rsp;
    /// Copy `rsp` into `slot`.
    fn write_response(&self, slot: u32, rsp: &Rsp);
}
