//! A loom-checkable ring memory (only under `cfg(loom)`).
//!
//! The header words are loom atomics and every slot is a loom cell, so loom reports a
//! data race if the protocol ever lets a producer write a slot the consumer may still be
//! reading, and explores every interleaving of the index protocol in
//! [`crate::FrontRing`] and [`crate::BackRing`], the code that runs on real pages.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{fence, AtomicU32};
use loom::sync::Arc;
use std::boxed::Box;
use std::vec::Vec;

use core::marker::PhantomData;
use core::sync::atomic::Ordering;

use crate::mem::{Entry, FenceSite, RingMemory, Word};

/// Bytes per model slot; entries must fit.
const SLOT_BYTES: usize = 32;

/// Ring memory for loom models: `entries` slots, the four header words, and optionally
/// one fence removed (to show the model catches the bug).
pub struct LoomRing<Req, Rsp> {
    words: [AtomicU32; 4],
    slots: Box<[UnsafeCell<[u8; SLOT_BYTES]>]>,
    omit_fence: Option<FenceSite>,
    _types: PhantomData<fn(Req, Rsp)>,
}

impl<Req: Entry, Rsp: Entry> LoomRing<Req, Rsp> {
    /// A ring of `entries` slots (a power of two) after `SHARED_RING_INIT`.
    pub fn new(entries: u32) -> Arc<Self> {
        Self::with(entries, 0, None)
    }

    /// A ring whose producer indices start at `start` (event indices at `start + 1`),
    /// with the fence at `omit` skipped if given: a deliberately broken ring.
    pub fn with(entries: u32, start: u32, omit: Option<FenceSite>) -> Arc<Self> {
        assert!(entries.is_power_of_two());
        assert!(core::mem::size_of::<Req>() <= SLOT_BYTES);
        assert!(core::mem::size_of::<Rsp>() <= SLOT_BYTES);
        let slots: Vec<_> = (0..entries)
            .map(|_| UnsafeCell::new([0u8; SLOT_BYTES]))
            .collect();
        Arc::new(LoomRing {
            words: [
                AtomicU32::new(start),
                AtomicU32::new(start.wrapping_add(1)),
                AtomicU32::new(start),
                AtomicU32::new(start.wrapping_add(1)),
            ],
            slots: slots.into_boxed_slice(),
            omit_fence: omit,
            _types: PhantomData,
        })
    }

    fn read<T: Entry>(&self, slot: u32) -> T {
        self.slots[slot as usize].with(|p| {
            // SAFETY: loom hands out the cell's pointer for a read; it is a live array.
            let bytes = unsafe { &*p };
            T::read_from_prefix(bytes)
                .map(|(v, _)| v)
                .unwrap_or_else(|_| unreachable!())
        })
    }

    fn write<T: Entry>(&self, slot: u32, value: &T) {
        self.slots[slot as usize].with_mut(|p| {
            // SAFETY: loom hands out the cell's pointer for a write; it is a live array.
            let bytes = unsafe { &mut *p };
            let src = value.as_bytes();
            bytes[..src.len()].copy_from_slice(src);
        })
    }
}

impl<Req: Entry, Rsp: Entry> RingMemory<Req, Rsp> for Arc<LoomRing<Req, Rsp>> {
    fn entries(&self) -> u32 {
        self.slots.len() as u32
    }
    fn load(&self, word: Word, order: Ordering) -> u32 {
        self.words[word as usize].load(order)
    }
    fn store(&self, word: Word, value: u32, order: Ordering) {
        self.words[word as usize].store(value, order)
    }
    fn fence(&self, site: FenceSite) {
        if self.omit_fence != Some(site) {
            fence(Ordering::SeqCst)
        }
    }
    fn read_request(&self, slot: u32) -> Req {
        self.read(slot)
    }
    fn write_request(&self, slot: u32, req: &Req) {
        self.write(slot, req)
    }
    fn read_response(&self, slot: u32) -> Rsp {
        self.read(slot)
    }
    fn write_response(&self, slot: u32, rsp: &Rsp) {
        self.write(slot, rsp)
    }
}
