//! The monotonic clock of a Linux process, as the data path's
//! [`Instant`].

use xennet_ring::time::Instant;

/// Now on `CLOCK_MONOTONIC` (nanoseconds since boot, the clock `std::time::Instant`
/// reads on Linux): the same in every process of the machine, never set back.
pub fn now() -> Instant {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // The kernel keeps both fields non-negative for this clock.
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    Instant::from_nanos(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_goes_back() {
        let a = now();
        let b = now();
        assert!(b >= a);
        assert!(a > Instant::ZERO);
    }
}
