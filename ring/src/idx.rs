//! Free-running ring indices (`RING_IDX`).

use core::fmt;

/// A free-running ring index (`RING_IDX`, a `u32`). It wraps at 2^32; the slot is
/// `idx & (size - 1)`. Differences between indices are taken with wrapping arithmetic,
/// so a ring works across the wrap exactly like Xen's macros.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct RingIdx(pub u32);

impl RingIdx {
    /// The index `n` entries after this one.
    #[inline]
    #[must_use]
    pub const fn add(self, n: u32) -> RingIdx {
        RingIdx(self.0.wrapping_add(n))
    }

    /// How many entries lie from `earlier` up to (not including) `self`.
    #[inline]
    #[must_use]
    pub const fn since(self, earlier: RingIdx) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// The slot this index names in a ring of `size` entries (a power of two).
    #[inline]
    #[must_use]
    pub const fn slot(self, size: u32) -> u32 {
        self.0 & (size - 1)
    }
}

impl fmt::Display for RingIdx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Xen's notification rule (`RING_PUSH_*_AND_CHECK_NOTIFY`): after moving a producer
/// index from `old` to `new`, the peer wants an event iff the index it asked to be woken
/// at (`event`) lies in `(old, new]`. Computed with wrapping arithmetic.
#[inline]
#[must_use]
pub const fn need_notify(old: RingIdx, new: RingIdx, event: RingIdx) -> bool {
    new.0.wrapping_sub(event.0) < new.0.wrapping_sub(old.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_wrap_around_u32_max() {
        let a = RingIdx(u32::MAX - 1);
        let b = a.add(5);
        assert_eq!(b, RingIdx(3));
        assert_eq!(b.since(a), 5);
        assert_eq!(b.slot(256), 3);
        assert_eq!(a.slot(256), 254);
    }

    #[test]
    fn notify_iff_event_in_published_window() {
        let old = RingIdx(10);
        let new = RingIdx(14);
        assert!(need_notify(old, new, RingIdx(11)));
        assert!(need_notify(old, new, RingIdx(14)));
        assert!(!need_notify(old, new, RingIdx(10)));
        assert!(!need_notify(old, new, RingIdx(15)));
        // Across the wrap.
        assert!(need_notify(RingIdx(u32::MAX), RingIdx(2), RingIdx(0)));
        assert!(!need_notify(RingIdx(u32::MAX), RingIdx(2), RingIdx(3)));
        // Nothing published: never notify.
        assert!(!need_notify(new, new, new));
    }
}
