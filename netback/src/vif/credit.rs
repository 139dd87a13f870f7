//! Credit-based transmit rate limiting per vif, as Linux netback does it: `credit`
//! bytes may leave per `interval`; when a packet needs more than is left, the queue
//! stops taking requests until the next refill (the frontend's requests wait in its
//! ring, so nothing is dropped).

use xennet_ring::time::{Duration, Instant};

/// A vif's transmit credit.
#[derive(Clone, Copy, Debug)]
pub struct Credit {
    per_interval: u64,
    interval: Duration,
    remaining: u64,
    next_refill: Instant,
}

impl Credit {
    /// `bytes` per `interval`; `None` for unlimited.
    pub fn new(limit: Option<(u64, Duration)>, now: Instant) -> Credit {
        let (per_interval, interval) = limit.unwrap_or((u64::MAX, Duration::from_secs(3600)));
        Credit {
            per_interval,
            interval,
            remaining: per_interval,
            next_refill: now + interval,
        }
    }

    /// Whether a limit is set.
    pub fn limited(&self) -> bool {
        self.per_interval != u64::MAX
    }

    /// Take `bytes` if available (refilling first if an interval passed). A packet
    /// larger than a whole interval's credit is let through when the credit is full,
    /// as Linux does, so a small `rate=` cannot wedge large frames forever.
    pub fn take(&mut self, bytes: u64, now: Instant) -> bool {
        if !self.limited() {
            return true;
        }
        if now >= self.next_refill {
            self.remaining = self.per_interval;
            self.next_refill = now + self.interval;
        }
        if bytes <= self.remaining {
            self.remaining -= bytes;
            true
        } else if self.remaining == self.per_interval {
            self.remaining = 0;
            true
        } else {
            false
        }
    }

    /// When credit next refills (the caller's timer while requests wait).
    pub fn next_refill(&self) -> Option<Instant> {
        self.limited().then_some(self.next_refill)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_refills_per_interval_and_never_wedges_big_frames() {
        let t0 = xennet_platform::clock::now();
        let mut c = Credit::new(Some((3000, Duration::from_millis(10))), t0);
        assert!(c.take(1500, t0));
        assert!(c.take(1500, t0));
        assert!(!c.take(60, t0));
        let t1 = t0 + Duration::from_millis(10);
        assert!(c.take(60, t1));
        let t2 = t1 + Duration::from_millis(10);
        assert!(c.take(9000, t2), "oversized frame passes on full credit");
        assert!(!c.take(60, t2));
        assert!(Credit::new(None, t0).take(u64::MAX, t0));
    }
}
