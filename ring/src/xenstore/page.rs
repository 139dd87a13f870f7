//! The XenStore ring page (`struct xenstore_domain_interface` of `xen/io/xs_wire.h`)
//! and the one audited place where it is touched.
//!
//! ```text
//! offset  size  field
//!      0  1024  req[]            requests, guest -> xenstored
//!   1024  1024  rsp[]            replies and watch events, xenstored -> guest
//!   2048     4  req_cons         written by xenstored
//!   2052     4  req_prod         written by the guest
//!   2056     4  rsp_cons         written by the guest
//!   2060     4  rsp_prod         written by xenstored
//!   2064     4  server_features  XENSTORE_SERVER_FEATURE_* (xenstored)
//!   2068     4  connection       XENSTORE_CONNECTED / _RECONNECT
//!   2072     4  error            XENSTORE_ERROR_* (xenstored)
//! ```
//!
//! The protocol code (`stream`, the client, the server end) is written once over
//! [`XsRingMemory`]: [`XsPage`] is the real page, and under `cfg(loom)`
//! `xenstore::loom::LoomXsPage` a model whose atomics and cells loom checks.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use super::XsRingError;

/// `XENSTORE_RING_SIZE`: bytes in each of `req[]` and `rsp[]`.
pub const XENSTORE_RING_SIZE: u32 = 1024;

/// `MASK_XENSTORE_IDX`: the byte an index names in a ring of the page.
#[must_use]
pub const fn mask_xenstore_idx(idx: u32) -> u32 {
    idx & (XENSTORE_RING_SIZE - 1)
}

/// Bytes of `struct xenstore_domain_interface` (Xen 4.17, with `server_features`,
/// `connection` and `error`). It sits at the start of a 4096-byte page.
pub const INTERFACE_SIZE: usize = 2076;

/// `XENSTORE_SERVER_FEATURE_RECONNECTION`.
pub const SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR`: xenstored reports why it stopped in `error`.
pub const SERVER_FEATURE_ERROR: u32 = 2;
/// `XENSTORE_CONNECTED`.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `XENSTORE_RECONNECT`.
pub const XENSTORE_RECONNECT: u32 = 1;
/// `XENSTORE_ERROR_NONE`.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `XENSTORE_ERROR_COMM`.
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `XENSTORE_ERROR_RINGIDX`.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `XENSTORE_ERROR_PROTO`.
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// One of the byte rings of the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// `req[]`: the guest produces, xenstored consumes.
    Req,
    /// `rsp[]`: xenstored produces, the guest consumes.
    Rsp,
}

impl Dir {
    /// The index word the producer of this ring writes.
    pub const fn prod(self) -> XsWord {
        match self {
            Dir::Req => XsWord::ReqProd,
            Dir::Rsp => XsWord::RspProd,
        }
    }

    /// The index word the consumer of this ring writes.
    pub const fn cons(self) -> XsWord {
        match self {
            Dir::Req => XsWord::ReqCons,
            Dir::Rsp => XsWord::RspCons,
        }
    }

    /// Byte offset of the ring in the page (`offsetof(req)`, `offsetof(rsp)`).
    pub const fn offset(self) -> usize {
        match self {
            Dir::Req => 0,
            Dir::Rsp => XENSTORE_RING_SIZE as usize,
        }
    }
}

/// A 32-bit word of the page after the two rings, in layout order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum XsWord {
    /// `req_cons` (xenstored).
    ReqCons = 0,
    /// `req_prod` (guest).
    ReqProd = 1,
    /// `rsp_cons` (guest).
    RspCons = 2,
    /// `rsp_prod` (xenstored).
    RspProd = 3,
    /// `server_features` (xenstored).
    ServerFeatures = 4,
    /// `connection`.
    Connection = 5,
    /// `error` (xenstored).
    Error = 6,
}

impl XsWord {
    /// Every word, in layout order.
    pub const ALL: [XsWord; 7] = [
        XsWord::ReqCons,
        XsWord::ReqProd,
        XsWord::RspCons,
        XsWord::RspProd,
        XsWord::ServerFeatures,
        XsWord::Connection,
        XsWord::Error,
    ];

    /// Byte offset of the word in the page: after the two rings, 4 bytes each.
    pub const fn offset(self) -> usize {
        2 * XENSTORE_RING_SIZE as usize + 4 * self as usize
    }
}

/// The ring page as the protocol code sees it: index words with explicit
/// orderings, and bounded copies in and out of the two byte rings.
///
/// Implementations keep every access inside the page whatever the arguments (an
/// offset is masked, a copy is cut at the ring's end), copy bytes by value (never
/// handing out a reference into memory the peer writes), and make word accesses
/// atomic with the given ordering.
pub trait XsRingMemory {
    /// Bytes in each ring: [`XENSTORE_RING_SIZE`] on the real page; a model may
    /// use a smaller power of two to reach the wrap in fewer steps.
    fn ring_len(&self) -> u32 {
        XENSTORE_RING_SIZE
    }
    /// Load a word.
    fn load(&self, word: XsWord, order: Ordering) -> u32;
    /// Store a word.
    fn store(&self, word: XsWord, value: u32, order: Ordering);
    /// Copy bytes of `dir` from `offset` into `out`, at most up to the ring's end.
    fn read(&self, dir: Dir, offset: u32, out: &mut [u8]);
    /// Copy `data` into `dir` at `offset`, at most up to the ring's end.
    fn write(&self, dir: Dir, offset: u32, data: &[u8]);
}

impl<T: XsRingMemory + ?Sized> XsRingMemory for &T {
    fn ring_len(&self) -> u32 {
        (**self).ring_len()
    }
    fn load(&self, word: XsWord, order: Ordering) -> u32 {
        (**self).load(word, order)
    }
    fn store(&self, word: XsWord, value: u32, order: Ordering) {
        (**self).store(word, value, order)
    }
    fn read(&self, dir: Dir, offset: u32, out: &mut [u8]) {
        (**self).read(dir, offset, out)
    }
    fn write(&self, dir: Dir, offset: u32, data: &[u8]) {
        (**self).write(dir, offset, data)
    }
}

/// The real ring page: a page of the guest's memory that xenstored maps (its frame
/// is `start_info.store_mfn`), or any page shared the same way in a test.
///
/// Words are accessed through atomics, ring bytes through volatile copies: the peer
/// may write any of them at any time, so nothing here is ever referenced.
pub struct XsPage {
    base: NonNull<u8>,
}

// SAFETY: an XsPage is a pointer to memory shared with another party anyway; every
// access through it is atomic (words) or a volatile byte copy (rings), so moving it to
// another thread is as safe as the sharing `XsPage::new`'s caller vouched for.
unsafe impl Send for XsPage {}

impl XsPage {
    /// View the [`INTERFACE_SIZE`] bytes at `page` as a XenStore ring page.
    ///
    /// # Safety
    /// `page` must point to at least [`INTERFACE_SIZE`] bytes that stay valid
    /// (mapped, not freed) for the view's whole life and that no Rust reference
    /// aliases: the peer may write them at any time, so they are only reached
    /// through atomics and volatile copies. Several views of one page may exist
    /// (one per end, as in a test playing both), each used by one thread.
    pub unsafe fn new(page: NonNull<u8>) -> Result<Self, XsRingError> {
        if page.as_ptr() as usize % core::mem::align_of::<AtomicU32>() != 0 {
            return Err(XsRingError::BadPage);
        }
        Ok(XsPage { base: page })
    }

    fn word(&self, w: XsWord) -> &AtomicU32 {
        // SAFETY: words 2048..2076 (= INTERFACE_SIZE) lie in the memory `new`'s caller
        // vouched for, 4-aligned (`base` is, checked in `new`); they are only accessed
        // atomically, by us and (by the ABI's contract) the peer.
        unsafe { &*(self.base.as_ptr().add(w.offset()) as *const AtomicU32) }
    }

    /// The start of `dir`'s ring and the part of a copy of `len` bytes at `offset`
    /// that stays inside it.
    fn span(&self, dir: Dir, offset: u32, len: usize) -> (*mut u8, usize) {
        let off = mask_xenstore_idx(offset) as usize;
        let len = len.min(XENSTORE_RING_SIZE as usize - off);
        // SAFETY: dir.offset() + off < 2048 <= INTERFACE_SIZE: inside the page.
        (unsafe { self.base.as_ptr().add(dir.offset() + off) }, len)
    }
}

impl XsRingMemory for XsPage {
    #[inline]
    fn load(&self, word: XsWord, order: Ordering) -> u32 {
        self.word(word).load(order)
    }

    #[inline]
    fn store(&self, word: XsWord, value: u32, order: Ordering) {
        self.word(word).store(value, order)
    }

    fn read(&self, dir: Dir, offset: u32, out: &mut [u8]) {
        let (src, len) = self.span(dir, offset, out.len());
        for (i, b) in out[..len].iter_mut().enumerate() {
            // SAFETY: `span` cut the copy to stay inside the ring; bytes are plain data,
            // so a concurrent peer write only changes the value read.
            *b = unsafe { core::ptr::read_volatile(src.add(i)) };
        }
    }

    fn write(&self, dir: Dir, offset: u32, data: &[u8]) {
        let (dst, len) = self.span(dir, offset, data.len());
        for (i, b) in data[..len].iter().enumerate() {
            // SAFETY: as in `read`: inside the ring, plain bytes.
            unsafe { core::ptr::write_volatile(dst.add(i), *b) };
        }
    }
}
