//! The shared page itself (`struct *_sring` of `xen/io/ring.h`): layout, size rules and
//! the one audited place where ring memory is touched.

use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU32, Ordering};

use crate::error::RingError;
use crate::grant::PAGE_SIZE;
use crate::mem::{Entry, FenceSite, RingMemory, Word};

/// Bytes before the first entry: `req_prod, req_event, rsp_prod, rsp_event`, 4 private
/// bytes (`pvt`) and 44 bytes of padding.
pub const HEADER_SIZE: usize = 64;

/// Largest ring order accepted (`len = 4096 << order`), as Linux netback's
/// `max_ring_page_order` default allows up to 16 pages for block rings.
pub const MAX_RING_ORDER: u32 = 4;

/// The size of one entry: `sizeof(union { req; rsp; })`.
#[must_use]
pub const fn entry_size<Req, Rsp>() -> usize {
    let size = if size_of::<Req>() > size_of::<Rsp>() {
        size_of::<Req>()
    } else {
        size_of::<Rsp>()
    };
    let align = entry_align::<Req, Rsp>();
    size.div_ceil(align) * align
}

const fn entry_align<Req, Rsp>() -> usize {
    if align_of::<Req>() > align_of::<Rsp>() {
        align_of::<Req>()
    } else {
        align_of::<Rsp>()
    }
}

/// Entries in a ring of `len` bytes, computed like `__CONST_RING_SIZE`: the room after
/// the header divided by the entry size, rounded down to a power of two. 0 if none fit.
#[must_use]
pub const fn ring_entries<Req, Rsp>(len: usize) -> u32 {
    let stride = entry_size::<Req, Rsp>();
    if stride == 0 || len <= HEADER_SIZE {
        return 0;
    }
    let n = (len - HEADER_SIZE) / stride;
    if n == 0 {
        return 0;
    }
    let n = if n > u32::MAX as usize {
        u32::MAX
    } else {
        n as u32
    };
    1 << (31 - n.leading_zeros())
}

/// Check `len` is `4096 << order` with order `0..=MAX_RING_ORDER`.
pub fn check_len(len: usize) -> Result<(), RingError> {
    let ok = (0..=MAX_RING_ORDER).any(|order| len == PAGE_SIZE << order);
    if ok {
        Ok(())
    } else {
        Err(RingError::BadLength(len))
    }
}

/// A shared ring in real memory (a page of this process, a page mapped from a peer, or
/// an mmap'd shared-memory file), for requests `Req` and responses `Rsp`.
///
/// This is the only code that touches ring memory: header indices through atomics,
/// entries through whole volatile copies. Entry types are plain bytes (`FromBytes`), so
/// whatever a peer writes is a valid value; validation happens above, on the copy.
pub struct SharedRing<Req, Rsp> {
    base: NonNull<u8>,
    entries: u32,
    _types: PhantomData<fn(Req, Rsp)>,
}

// SAFETY: the ring only holds a pointer to shared memory and every access through it
// is atomic (header) or a volatile copy (entries); moving it to another thread is as
// safe as sharing the memory itself, which `SharedRing::new`'s caller vouched for.
unsafe impl<Req, Rsp> Send for SharedRing<Req, Rsp> {}

impl<Req: Entry, Rsp: Entry> SharedRing<Req, Rsp> {
    /// View `len` bytes at `mem` as a shared ring.
    ///
    /// # Safety
    /// `mem` must point to `len` bytes that stay valid (mapped, not freed) for the
    /// ring's whole life, and that no Rust reference aliases: the peer may write them at
    /// any time, so they are only accessed through atomics and volatile copies.
    pub unsafe fn new(mem: NonNull<u8>, len: usize) -> Result<Self, RingError> {
        check_len(len)?;
        if mem.as_ptr() as usize % align_of::<u64>() != 0 || entry_align::<Req, Rsp>() > HEADER_SIZE
        {
            return Err(RingError::BadAlignment);
        }
        let entries = ring_entries::<Req, Rsp>(len);
        if entries == 0 {
            return Err(RingError::BadLength(len));
        }
        Ok(SharedRing {
            base: mem,
            entries,
            _types: PhantomData,
        })
    }

    /// `SHARED_RING_INIT`: producer indices 0, event indices 1, private and padding
    /// bytes zeroed. Only the side that creates the ring (the front) does this.
    pub fn init(&self) {
        for w in [Word::ReqProd, Word::RspProd] {
            self.word(w).store(0, Ordering::Relaxed);
        }
        for w in [Word::ReqEvent, Word::RspEvent] {
            self.word(w).store(1, Ordering::Relaxed);
        }
        // SAFETY: bytes 16..64 are the header's pvt and pad fields, inside the ring
        // memory (`new` checked len >= 4096); nothing references them.
        unsafe { core::ptr::write_bytes(self.base.as_ptr().add(16), 0, HEADER_SIZE - 16) };
        fence(Ordering::Release);
    }

    fn word(&self, w: Word) -> &AtomicU32 {
        // SAFETY: the header's first 16 bytes are four u32 words; `base` is 8-aligned
        // (checked in `new`), so each is a properly aligned AtomicU32 for the ring's life.
        // Shared-memory atomics are the only way these words are accessed.
        unsafe { &*(self.base.as_ptr().add(w as usize * 4) as *const AtomicU32) }
    }

    fn slot_ptr(&self, slot: u32) -> *mut u8 {
        // Masking keeps even a wrong caller inside the ring; entries is a power of two.
        let slot = (slot & (self.entries - 1)) as usize;
        // SAFETY: HEADER_SIZE + slot * stride + stride <= len because
        // entries * stride <= len - HEADER_SIZE (ring_entries) and slot < entries.
        unsafe {
            self.base
                .as_ptr()
                .add(HEADER_SIZE + slot * entry_size::<Req, Rsp>())
        }
    }

    fn read<T: Entry>(&self, slot: u32) -> T {
        // The slot is in bounds for `entry_size >= size_of::<T>()` bytes and aligned
        // for T (base 8-aligned, header 64, stride a multiple of T's alignment).
        // Volatile because the peer may write concurrently; the copy is taken once.
        // SAFETY: in bounds and aligned (above); T is FromBytes, so any bytes form a T.
        unsafe { core::ptr::read_volatile(self.slot_ptr(slot) as *const T) }
    }

    fn write<T: Entry>(&self, slot: u32, value: &T) {
        // SAFETY: as in `read`: in bounds and aligned for T; T is plain bytes (Copy).
        unsafe { core::ptr::write_volatile(self.slot_ptr(slot) as *mut T, *value) }
    }
}

impl<Req: Entry, Rsp: Entry> RingMemory<Req, Rsp> for SharedRing<Req, Rsp> {
    #[inline]
    fn entries(&self) -> u32 {
        self.entries
    }

    #[inline]
    fn load(&self, word: Word, order: Ordering) -> u32 {
        self.word(word).load(order)
    }

    #[inline]
    fn store(&self, word: Word, value: u32, order: Ordering) {
        self.word(word).store(value, order)
    }

    #[inline]
    fn fence(&self, _site: FenceSite) {
        fence(Ordering::SeqCst)
    }

    #[inline]
    fn read_request(&self, slot: u32) -> Req {
        self.read(slot)
    }

    #[inline]
    fn write_request(&self, slot: u32, req: &Req) {
        self.write(slot, req)
    }

    #[inline]
    fn read_response(&self, slot: u32) -> Rsp {
        self.read(slot)
    }

    #[inline]
    fn write_response(&self, slot: u32, rsp: &Rsp) {
        self.write(slot, rsp)
    }
}
