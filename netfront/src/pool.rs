//! Pools of pages granted to the backend once at connect time and reused for every
//! frame (no grant or page allocation per packet).

use alloc::vec::Vec;

use xennet_ring::{DomId, Frame, FrameAlloc, GrantAccess, GrantRef, LocalMemory, PAGE_SIZE};

/// What a page holds before it is granted.
static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

use crate::error::FrontError;

/// `n` pages of our memory, each granted to `backend` (read-only for tx, writable for
/// rx), addressed by a buffer id. Each page is cleared before it is granted, so the
/// backend never sees what the page held before (XSA-403: frontends leaking stale
/// data through the unused part of granted pages).
pub(crate) struct GrantedPages {
    pub(crate) frames: Vec<Frame>,
    pub(crate) grefs: Vec<GrantRef>,
}

impl GrantedPages {
    pub(crate) fn new<P: GrantAccess + FrameAlloc + LocalMemory>(
        platform: &P,
        backend: DomId,
        n: usize,
        readonly: bool,
    ) -> Result<Self, FrontError> {
        let mut pages = GrantedPages {
            frames: Vec::with_capacity(n),
            grefs: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let frame = match platform.alloc_frame() {
                Ok(f) => f,
                Err(e) => {
                    pages.release(platform);
                    return Err(e.into());
                }
            };
            if let Err(e) = platform.write(frame, 0, &ZERO_PAGE) {
                platform.free_frame(frame);
                pages.release(platform);
                return Err(e.into());
            }
            match platform.grant_access(backend, frame, readonly) {
                Ok(gref) => {
                    pages.frames.push(frame);
                    pages.grefs.push(gref);
                }
                Err(e) => {
                    platform.free_frame(frame);
                    pages.release(platform);
                    return Err(e.into());
                }
            }
        }
        Ok(pages)
    }

    /// End every grant and free the pages. Returns how many grants the backend still
    /// had in use; those pages are leaked on purpose (never reused while the peer may
    /// still touch them), as Linux netfront does.
    pub(crate) fn release<P: GrantAccess + FrameAlloc>(&mut self, platform: &P) -> usize {
        let mut in_use = 0;
        for (frame, gref) in self.frames.drain(..).zip(self.grefs.drain(..)) {
            if platform.end_access(gref).is_ok() {
                platform.free_frame(frame);
            } else {
                in_use += 1;
            }
        }
        in_use
    }
}

/// A stack of free buffer ids with a fixed capacity (no allocation after creation).
pub(crate) struct IdStack {
    free: Vec<u16>,
}

impl IdStack {
    pub(crate) fn full(n: usize) -> Self {
        IdStack {
            free: (0..n as u16).rev().collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.free.len()
    }

    pub(crate) fn pop(&mut self) -> Option<u16> {
        self.free.pop()
    }

    pub(crate) fn push(&mut self, id: u16) {
        self.free.push(id);
    }
}
