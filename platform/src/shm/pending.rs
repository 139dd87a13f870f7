//! The event-channel pending-bit protocol, written once over [`Word`] so that loom
//! checks the code that runs on the shared page.
//!
//! Per port a bits word (`PENDING`, `MASKED`); per domain a `summary` word (some port
//! may be pending), a `doorbell` sequence (the futex word) and a `sleepers` count.
//! Sender: set PENDING; if it was clear and the port is unmasked, set the summary, bump
//! the doorbell and wake if anyone sleeps (the shared reads are read-modify-writes). Receiver before sleeping: count itself as a
//! sleeper, read the doorbell, look at the summary once more, and sleep only if the
//! doorbell still has the value read. All SeqCst: the sleeper count and the summary
//! form a Dekker pair, so a wake is never lost; kicks while pending coalesce.

use core::sync::atomic::Ordering::SeqCst;

/// Port bit: an event is pending.
pub const PENDING: u32 = 1;
/// Port bit: the port is masked (events stay pending without waking).
pub const MASKED: u32 = 2;

/// The atomic operations the protocol needs.
pub trait Word {
    /// Load.
    fn get(&self) -> u32;
    /// Store.
    fn set(&self, v: u32);
    /// Fetch-or, returning the previous value.
    fn or(&self, v: u32) -> u32;
    /// Fetch-and, returning the previous value.
    fn and(&self, v: u32) -> u32;
    /// Fetch-add, returning the previous value.
    fn add(&self, v: u32) -> u32;
    /// Fetch-sub, returning the previous value.
    fn sub(&self, v: u32) -> u32;
    /// Swap, returning the previous value.
    fn swap(&self, v: u32) -> u32;
    /// A sequentially consistent fence (the Dekker pair needs one on each side).
    fn fence(&self);
}

macro_rules! impl_word {
    ($t:ty, $fence:path) => {
        impl Word for $t {
            fn get(&self) -> u32 {
                self.load(SeqCst)
            }
            fn set(&self, v: u32) {
                self.store(v, SeqCst)
            }
            fn or(&self, v: u32) -> u32 {
                self.fetch_or(v, SeqCst)
            }
            fn and(&self, v: u32) -> u32 {
                self.fetch_and(v, SeqCst)
            }
            fn add(&self, v: u32) -> u32 {
                self.fetch_add(v, SeqCst)
            }
            fn sub(&self, v: u32) -> u32 {
                self.fetch_sub(v, SeqCst)
            }
            fn swap(&self, v: u32) -> u32 {
                self.swap(v, SeqCst)
            }
            fn fence(&self) {
                $fence(SeqCst)
            }
        }
    };
}

impl_word!(core::sync::atomic::AtomicU32, core::sync::atomic::fence);
#[cfg(loom)]
impl_word!(loom::sync::atomic::AtomicU32, loom::sync::atomic::fence);

/// Sender side: mark the port pending. Returns true if the receiver must be woken
/// (the doorbell was bumped and someone sleeps).
pub fn raise<W: Word + ?Sized>(port_bits: &W, summary: &W, doorbell: &W, sleepers: &W) -> bool {
    let before = port_bits.or(PENDING);
    if before & (PENDING | MASKED) != 0 {
        // Already pending (coalesced) or masked (stays pending until unmasked).
        return false;
    }
    summary.swap(1);
    doorbell.add(1);
    doorbell.fence();
    // Read-modify-writes read the latest value in each word's modification order, so
    // with the sleeper's own RMWs this is a Dekker pair on any memory model.
    sleepers.add(0) > 0
}

/// Receiver side: take the pending bit of an unmasked port.
pub fn take<W: Word + ?Sized>(port_bits: &W) -> bool {
    let bits = port_bits.get();
    if bits & PENDING == 0 || bits & MASKED != 0 {
        return false;
    }
    port_bits.and(!PENDING) & PENDING != 0
}

/// Receiver side, before a scan: clear the summary (a sender that sets a port after
/// this sets the summary again).
pub fn clear_summary<W: Word + ?Sized>(summary: &W) -> bool {
    summary.swap(0) != 0
}

/// Receiver side: register as a sleeper; returns the doorbell value to sleep on, or
/// `None` if an event arrived meanwhile (do not sleep; call [`end_sleep`] anyway).
pub fn begin_sleep<W: Word + ?Sized>(summary: &W, doorbell: &W, sleepers: &W) -> Option<u32> {
    sleepers.add(1);
    sleepers.fence();
    let seq = doorbell.add(0);
    if summary.add(0) != 0 {
        return None;
    }
    Some(seq)
}

/// Receiver side: no longer sleeping.
pub fn end_sleep<W: Word + ?Sized>(sleepers: &W) {
    sleepers.sub(1);
}

/// Unmask: returns true if an event was pending meanwhile (the caller re-raises the
/// summary and doorbell for the port's owner).
pub fn unmask<W: Word + ?Sized>(port_bits: &W) -> bool {
    port_bits.and(!MASKED) & PENDING != 0
}
