//! Per-vif rate limiting with Linux netback's credit model.
//!
//! A vif may send `credit_bytes` every `interval` (xl's `rate=10Mb/s@50ms` becomes
//! 62500 bytes per 50 ms). The remaining credit is replenished once per interval, to
//! at most `max(credit_bytes, 128 KiB)` so that a frame larger than one interval's
//! credit (GSO, up to 64 KiB) still passes eventually, as in netback's
//! `tx_add_credit`. A frame over the credit is held, in order, until credit returns;
//! if the hold queue is full it is refused and the caller counts it dropped with
//! [`DropReason::RateLimited`](super::DropReason::RateLimited).
//!
//! The clock is passed in (`now`), so the limiter is tested with a fake one.
//!
//! ```
//! use smoltcp::time::{Duration, Instant};
//! use xennet_netback::switch::rate::{CreditLimiter, Offer};
//!
//! let mut rl = CreditLimiter::new(1000, Duration::from_millis(50), 4, Instant::ZERO);
//! assert!(matches!(rl.offer(Instant::ZERO, 600, "a"), Offer::Pass("a")));
//! assert!(matches!(rl.offer(Instant::ZERO, 600, "b"), Offer::Held));
//! assert_eq!(rl.next_release(), Some(Instant::from_millis(50)));
//! assert_eq!(rl.release(Instant::from_millis(50)), vec!["b"]);
//! ```

use std::collections::VecDeque;

use smoltcp::time::{Duration, Instant};

/// Smallest burst allowed, so the largest frame always fits eventually (netback uses
/// 128 KiB, above the 64 KiB packet limit).
const MIN_BURST: u64 = 128 * 1024;

/// What happened to an offered frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<T> {
    /// Within credit: send it now.
    Pass(T),
    /// Over credit: held; [`CreditLimiter::release`] returns it later.
    Held,
    /// Over credit and the hold queue is full: returned to be dropped and counted.
    Refused(T),
}

/// A credit-based limiter holding up to `hold_capacity` frames of type `T`.
#[derive(Debug)]
pub struct CreditLimiter<T> {
    credit_bytes: u64,
    interval: Duration,
    remaining: u64,
    window_start: Instant,
    held: VecDeque<(usize, T)>,
    hold_capacity: usize,
}

impl<T> CreditLimiter<T> {
    /// A limiter granting `credit_bytes` per `interval`, starting with full credit at
    /// `now`. An interval of zero means no limit.
    pub fn new(credit_bytes: u64, interval: Duration, hold_capacity: usize, now: Instant) -> Self {
        CreditLimiter {
            credit_bytes,
            interval,
            remaining: credit_bytes,
            window_start: now,
            held: VecDeque::new(),
            hold_capacity,
        }
    }

    /// A limiter that never limits.
    pub fn unlimited(now: Instant) -> Self {
        Self::new(u64::MAX, Duration::ZERO, 0, now)
    }

    /// Credit per interval, in bytes.
    pub fn credit_bytes(&self) -> u64 {
        self.credit_bytes
    }

    /// The replenishment interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Credit left in the current interval.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Frames held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn unlimited_mode(&self) -> bool {
        self.interval == Duration::ZERO || self.credit_bytes == u64::MAX
    }

    /// Adds one interval's credit if an interval has passed since the window opened.
    fn replenish(&mut self, now: Instant) {
        if now < self.window_start + self.interval {
            return;
        }
        let max_burst = self.credit_bytes.max(MIN_BURST);
        self.remaining = self
            .remaining
            .saturating_add(self.credit_bytes)
            .min(max_burst);
        self.window_start = now;
    }

    /// Offers a frame of `len` bytes for transmission at `now`.
    pub fn offer(&mut self, now: Instant, len: usize, item: T) -> Offer<T> {
        if self.unlimited_mode() {
            return Offer::Pass(item);
        }
        // Frames never overtake held ones.
        if self.held.is_empty() && self.take(now, len) {
            return Offer::Pass(item);
        }
        if self.held.len() >= self.hold_capacity {
            return Offer::Refused(item);
        }
        self.held.push_back((len, item));
        Offer::Held
    }

    fn take(&mut self, now: Instant, len: usize) -> bool {
        let len = len as u64;
        if len > self.remaining {
            self.replenish(now);
        }
        if len > self.remaining {
            return false;
        }
        self.remaining -= len;
        true
    }

    /// Returns the held frames that fit the credit at `now`, in order.
    pub fn release(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(&(len, _)) = self.held.front() {
            if !self.take(now, len) {
                break;
            }
            if let Some((_, item)) = self.held.pop_front() {
                out.push(item);
            }
        }
        out
    }

    /// When held frames may next be released (the next interval boundary).
    pub fn next_release(&self) -> Option<Instant> {
        (!self.held.is_empty()).then(|| self.window_start + self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n as i64)
    }

    #[test]
    fn frames_within_credit_pass_and_the_excess_is_held_not_dropped() {
        let mut rl = CreditLimiter::new(3000, Duration::from_millis(50), 8, ms(0));
        for i in 0..2 {
            assert_eq!(rl.offer(ms(0), 1500, i), Offer::Pass(i));
        }
        assert_eq!(rl.offer(ms(1), 1500, 2), Offer::Held);
        assert_eq!(
            rl.offer(ms(1), 10, 3),
            Offer::Held,
            "no overtaking held frames"
        );
        assert!(rl.release(ms(49)).is_empty());
        assert_eq!(rl.release(ms(50)), vec![2, 3]);
        assert_eq!(rl.held(), 0);
    }

    #[test]
    fn full_hold_queue_refuses_frames() {
        let mut rl = CreditLimiter::new(100, Duration::from_millis(10), 1, ms(0));
        assert_eq!(rl.offer(ms(0), 100, 'a'), Offer::Pass('a'));
        assert_eq!(rl.offer(ms(0), 100, 'b'), Offer::Held);
        assert_eq!(rl.offer(ms(0), 100, 'c'), Offer::Refused('c'));
    }

    #[test]
    fn credit_is_replenished_once_per_interval_and_capped() {
        let mut rl = CreditLimiter::new(200_000, Duration::from_millis(10), 0, ms(0));
        assert_eq!(rl.offer(ms(0), 150_000, ()), Offer::Pass(()));
        // 50_000 left; after a long idle time credit is capped at one burst.
        assert_eq!(rl.offer(ms(10_000), 200_000, ()), Offer::Pass(()));
        assert_eq!(rl.offer(ms(10_000), 1, ()), Offer::Refused(()));
    }

    #[test]
    fn frame_larger_than_one_interval_credit_passes_after_accumulating() {
        // 1000 bytes per 10 ms, a 64 KiB frame: credit accumulates up to the 128 KiB
        // burst, so it passes once enough intervals went by.
        let mut rl = CreditLimiter::new(1000, Duration::from_millis(10), 4, ms(0));
        assert_eq!(rl.offer(ms(0), 65_536, 7), Offer::Held);
        let mut t = 0;
        let mut got = Vec::new();
        while got.is_empty() {
            t += 10;
            got = rl.release(ms(t));
            assert!(t < 100_000, "never released");
        }
        assert_eq!(got, vec![7]);
        assert_eq!(
            t, 650,
            "65 intervals of 1000 bytes, plus the initial 1000 credit"
        );
    }

    #[test]
    fn zero_interval_means_unlimited() {
        let mut rl = CreditLimiter::unlimited(ms(0));
        for i in 0..1000 {
            assert_eq!(rl.offer(ms(0), 65_535, i), Offer::Pass(i));
        }
        assert_eq!(rl.next_release(), None);
    }
}
