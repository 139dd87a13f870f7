//! The data path's clock: [`Instant`], a point on a monotonic clock as nanoseconds
//! since that clock's epoch, and [`Duration`] (`core::time::Duration`) between two.
//!
//! One type for every timer on the data path (netback's rate credit and receive
//! ageing, the switch's bridge, ARP, route and NAT tables, the driver domain's loop),
//! so no layer converts between clocks; only smoltcp's own `Instant` is made from it,
//! at the smoltcp calls. It is a plain number: a test makes one with
//! [`Instant::from_millis`] and moves it by hand, a platform reads its clock into
//! one (`xennet_platform::clock::now`: `CLOCK_MONOTONIC`, nanoseconds since boot; a
//! unikernel would read Xen's system time, also nanoseconds since boot), and it
//! needs neither `std` nor `alloc`. `docs/design.md` §9 gives the reasons.
//!
//! Arithmetic saturates instead of panicking: `u64` nanoseconds last 584 years, so
//! only an absurd duration reaches the end, and a difference of instants in the
//! wrong order is zero, as `std::time::Instant`'s is.
//!
//! ```
//! use xennet_ring::time::{Duration, Instant};
//!
//! let t0 = Instant::from_secs(10);
//! let t1 = t0 + Duration::from_millis(1500);
//! assert_eq!(t1 - t0, Duration::from_millis(1500));
//! assert_eq!(t0 - t1, Duration::ZERO);
//! assert_eq!(t1.as_millis(), 11_500);
//! ```

use core::fmt;
use core::ops::{Add, AddAssign, Sub, SubAssign};

pub use core::time::Duration;

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A point in time on a monotonic clock: nanoseconds since its epoch. `Copy`, eight
/// bytes, ordered. See the [module documentation](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The clock's epoch.
    pub const ZERO: Instant = Instant { nanos: 0 };

    /// The latest instant (what saturating arithmetic stops at).
    pub const MAX: Instant = Instant { nanos: u64::MAX };

    /// `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant { nanos }
    }

    /// `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Instant {
        Instant::from_nanos(micros.saturating_mul(NANOS_PER_MICRO))
    }

    /// `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Instant {
        Instant::from_nanos(millis.saturating_mul(NANOS_PER_MILLI))
    }

    /// `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Instant {
        Instant::from_nanos(secs.saturating_mul(NANOS_PER_SEC))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// Whole microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.nanos / NANOS_PER_MICRO
    }

    /// Whole milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.nanos / NANOS_PER_MILLI
    }

    /// The time since the epoch.
    pub const fn since_epoch(self) -> Duration {
        Duration::from_nanos(self.nanos)
    }

    /// The time from `earlier` to `self`; `None` if `earlier` is later.
    pub const fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        match self.nanos.checked_sub(earlier.nanos) {
            Some(d) => Some(Duration::from_nanos(d)),
            None => None,
        }
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }

    /// `self + d`, `None` past [`Instant::MAX`].
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        let d = u64::try_from(d.as_nanos()).ok()?;
        Some(Instant::from_nanos(self.nanos.checked_add(d)?))
    }

    /// `self - d`, `None` before the epoch.
    pub fn checked_sub(self, d: Duration) -> Option<Instant> {
        let d = u64::try_from(d.as_nanos()).ok()?;
        Some(Instant::from_nanos(self.nanos.checked_sub(d)?))
    }
}

/// A duration as nanoseconds, `u64::MAX` for longer ones.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at [`Instant::MAX`].
    fn add(self, d: Duration) -> Instant {
        Instant::from_nanos(self.nanos.saturating_add(nanos(d)))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// Saturates at [`Instant::ZERO`].
    fn sub(self, d: Duration) -> Instant {
        Instant::from_nanos(self.nanos.saturating_sub(nanos(d)))
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// [`Instant::saturating_duration_since`]: zero if `earlier` is later.
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Display for Instant {
    /// Seconds with milliseconds, as `12.345s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        write!(f, "{}.{:03}s", ms / 1000, ms % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_agree_and_truncate_towards_the_epoch() {
        assert_eq!(Instant::from_secs(2), Instant::from_millis(2000));
        assert_eq!(Instant::from_millis(3), Instant::from_micros(3000));
        assert_eq!(Instant::from_micros(7), Instant::from_nanos(7000));
        assert_eq!(Instant::from_nanos(1_999).as_micros(), 1);
        assert_eq!(Instant::from_micros(1_999).as_millis(), 1);
        assert_eq!(Instant::from_secs(u64::MAX), Instant::MAX);
    }

    #[test]
    fn arithmetic_saturates_at_both_ends_of_the_clock() {
        let t = Instant::from_secs(1);
        assert_eq!(t - Duration::from_secs(2), Instant::ZERO);
        assert_eq!(t + Duration::MAX, Instant::MAX);
        assert_eq!(t.checked_sub(Duration::from_secs(2)), None);
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(Instant::ZERO.checked_duration_since(t), None);
        let mut u = t;
        u += Duration::from_millis(250);
        u -= Duration::from_millis(50);
        assert_eq!(u - t, Duration::from_millis(200));
    }

    #[test]
    fn display_shows_seconds_and_milliseconds() {
        assert_eq!(std::format!("{}", Instant::from_millis(12_345)), "12.345s");
    }
}
