//! The grant in-use flag protocol of Xen's v1 grant tables, written once over
//! [`FlagWord`] so that loom checks the same code that runs on the shared table.
//!
//! The first 32 bits of a `grant_entry_v1` are `flags` (low half) and `domid` (high
//! half). As in Xen, the using side pins an entry with one compare-and-swap on that
//! combined word that checks permission, domain and read-only-ness and sets
//! `GTF_reading` (and `GTF_writing`) in the same step; the granting side ends access
//! with a compare-and-swap that fails while either bit is set. So a copy never starts
//! on an ended grant, and access never ends while a copy is inside the page.

use core::sync::atomic::Ordering;

use super::{GrantFlags, GrantStatus};

/// The combined `flags | domid << 16` word of a grant entry.
pub trait FlagWord {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u32;
    /// Atomic store.
    fn store(&self, value: u32, order: Ordering);
    /// Strong compare-and-swap with AcqRel/Acquire orderings.
    fn cas(&self, current: u32, new: u32) -> Result<u32, u32>;
}

impl FlagWord for core::sync::atomic::AtomicU32 {
    fn load(&self, order: Ordering) -> u32 {
        self.load(order)
    }
    fn store(&self, value: u32, order: Ordering) {
        self.store(value, order)
    }
    fn cas(&self, current: u32, new: u32) -> Result<u32, u32> {
        self.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }
}

#[cfg(loom)]
impl FlagWord for loom::sync::atomic::AtomicU32 {
    fn load(&self, order: Ordering) -> u32 {
        self.load(order)
    }
    fn store(&self, value: u32, order: Ordering) {
        self.store(value, order)
    }
    fn cas(&self, current: u32, new: u32) -> Result<u32, u32> {
        self.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }
}

const IN_USE: u16 = GrantFlags::READING.bits() | GrantFlags::WRITING.bits();

/// Publish a grant: the frame is already written; the flags word (with the domid) is
/// stored last with release ordering, so a user that sees the permission sees the frame.
pub fn publish<W: FlagWord + ?Sized>(word: &W, domid: u16, readonly: bool) {
    let mut flags = GrantFlags::PERMIT_ACCESS.bits();
    if readonly {
        flags |= GrantFlags::READONLY.bits();
    }
    word.store(
        u32::from(flags) | (u32::from(domid) << 16),
        Ordering::Release,
    );
}

/// End access (`gnttab_end_foreign_access_ref`): clears the flags unless the peer has
/// the entry in use. Returns false (nothing changed) while it is in use.
pub fn end_access<W: FlagWord + ?Sized>(word: &W) -> bool {
    let mut cur = word.load(Ordering::Acquire);
    loop {
        if (cur as u16) & IN_USE != 0 {
            return false;
        }
        match word.cas(cur, cur & 0xFFFF_0000) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// Clears the in-use bits an entry granted to `peer` still carries (the peer is
/// dead and will never unpin). Returns whether anything was cleared.
pub fn force_unpin<W: FlagWord + ?Sized>(word: &W, peer: u16) -> bool {
    let mut cur = word.load(Ordering::Acquire);
    loop {
        if (cur >> 16) as u16 != peer || (cur as u16) & IN_USE == 0 {
            return false;
        }
        match word.cas(cur, cur & !u32::from(IN_USE)) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// Pin an entry for use by `user` (the hypervisor's `_set_status_v1`): checks the entry
/// permits access, is granted to `user`, and is writable if `write`; sets
/// `GTF_reading` (and `GTF_writing` when writing) in the same atomic step.
pub fn pin<W: FlagWord + ?Sized>(word: &W, user: u16, write: bool) -> Result<(), GrantStatus> {
    let mut cur = word.load(Ordering::Acquire);
    loop {
        let flags = cur as u16;
        let domid = (cur >> 16) as u16;
        if flags & GrantFlags::TYPE_MASK != GrantFlags::PERMIT_ACCESS.bits() || domid != user {
            return Err(GrantStatus::GeneralError);
        }
        // Xen answers a write-pin of a read-only entry with GNTST_general_error, not
        // permission_denied (seen on Xen 4.17 by `xennet platform-check`).
        if write && flags & GrantFlags::READONLY.bits() != 0 {
            return Err(GrantStatus::GeneralError);
        }
        let mut set = GrantFlags::READING.bits();
        if write {
            set |= GrantFlags::WRITING.bits();
        }
        match word.cas(cur, cur | u32::from(set)) {
            Ok(_) => return Ok(()),
            Err(now) => cur = now,
        }
    }
}

/// Unpin an entry: clears both in-use bits (the caller tracks nested pins and only
/// unpins the last one).
pub fn unpin<W: FlagWord + ?Sized>(word: &W) {
    let mut cur = word.load(Ordering::Acquire);
    loop {
        match word.cas(cur, cur & !u32::from(IN_USE)) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}
