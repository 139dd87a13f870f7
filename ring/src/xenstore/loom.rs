//! A loom-checkable XenStore ring page (only under `cfg(loom)`).
//!
//! Each word is a loom atomic and each ring byte a loom cell, so loom reports a
//! data race if the index protocol ever lets one end copy bytes the other may still
//! be writing, and explores every interleaving of the code in `stream`, the client
//! and the server end, the code that runs on the real page.

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU32;
use loom::sync::Arc;
use std::boxed::Box;
use std::vec::Vec;

use core::sync::atomic::Ordering;

use super::page::{Dir, XsRingMemory, XsWord};

/// Ring page memory for loom models: two rings of `len` bytes (a small power of
/// two, so messages wrap), the seven words, and optionally one word whose stores
/// are weakened to `Relaxed` (a deliberately broken page, to show the model sees it).
pub struct LoomXsPage {
    words: [AtomicU32; 7],
    req: Box<[UnsafeCell<u8>]>,
    rsp: Box<[UnsafeCell<u8>]>,
    len: u32,
    weak: Option<XsWord>,
}

impl LoomXsPage {
    /// A zeroed page whose rings hold `len` bytes (a power of two).
    pub fn new(len: u32, weak: Option<XsWord>) -> Arc<Self> {
        assert!(len.is_power_of_two());
        let ring = || -> Box<[UnsafeCell<u8>]> {
            (0..len)
                .map(|_| UnsafeCell::new(0))
                .collect::<Vec<_>>()
                .into_boxed_slice()
        };
        Arc::new(LoomXsPage {
            words: core::array::from_fn(|_| AtomicU32::new(0)),
            req: ring(),
            rsp: ring(),
            len,
            weak,
        })
    }

    fn ring(&self, dir: Dir) -> &[UnsafeCell<u8>] {
        match dir {
            Dir::Req => &self.req,
            Dir::Rsp => &self.rsp,
        }
    }
}

impl XsRingMemory for Arc<LoomXsPage> {
    fn ring_len(&self) -> u32 {
        self.len
    }
    fn load(&self, word: XsWord, order: Ordering) -> u32 {
        self.words[word as usize].load(order)
    }
    fn store(&self, word: XsWord, value: u32, order: Ordering) {
        let order = if self.weak == Some(word) {
            Ordering::Relaxed
        } else {
            order
        };
        self.words[word as usize].store(value, order)
    }
    fn read(&self, dir: Dir, offset: u32, out: &mut [u8]) {
        let ring = self.ring(dir);
        let off = (offset & (self.len - 1)) as usize;
        for (b, cell) in out.iter_mut().zip(&ring[off..]) {
            // SAFETY: loom hands out the cell's pointer for a read; it is a live u8.
            *b = cell.with(|p| unsafe { *p });
        }
    }
    fn write(&self, dir: Dir, offset: u32, data: &[u8]) {
        let ring = self.ring(dir);
        let off = (offset & (self.len - 1)) as usize;
        for (b, cell) in data.iter().zip(&ring[off..]) {
            // SAFETY: loom hands out the cell's pointer for a write; it is a live u8.
            cell.with_mut(|p| unsafe { *p = *b });
        }
    }
}
