//! xl's `rate=` syntax: `RATE/s[@INTERVAL]`, as libxl parses it.
//!
//! - RATE is decimal digits, an optional unit prefix `K`, `M` or `G` (x1000, x10^6,
//!   x10^9), then `B` (bytes) or `b` (bits), then `/s` — the `/s` is required, as in
//!   libxl (`^[0-9]+[GMK]?[Bb]/s$`). The number must be 1..=4294967295.
//! - INTERVAL is decimal digits followed by `s`, `ms`, `us` (or nothing, meaning
//!   seconds; libxl also accepts a bare `m` or `u`), 1..=4294967295 microseconds.
//!   The default is 50 ms.
//! - The result is netback's credit: `bytes_per_sec * interval_us / 10^6` bytes per
//!   interval (`rate-bytes-per-interval`, `rate-interval-usecs`).
//!
//! One difference: libxl reads the number with `strtoull(.., 0)`, so a leading zero
//! makes it octal (`010Mb/s` is 8 Mb/s there); here numbers are always decimal.

/// libxl's default replenishment interval (50 ms).
pub const DEFAULT_RATE_INTERVAL_US: u32 = 50_000;

/// A parsed rate: netback's credit model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Bytes per second.
    pub bytes_per_sec: u64,
    /// Credit bytes per interval.
    pub bytes_per_interval: u64,
    /// Interval in microseconds.
    pub interval_us: u32,
}

/// Errors of [`parse_rate`]; Display names the offending text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RateError {
    /// Nothing before '@'.
    #[error("no rate specified in {0:?}")]
    Empty(String),
    /// The rate part does not match `DIGITS[K|M|G](B|b)/s`.
    #[error("invalid rate {0:?}: expected e.g. 10Mb/s or 512KB/s (digits, optional K/M/G, B or b, then /s)")]
    BadRate(String),
    /// The number is 0 or above 4294967295.
    #[error("rate overflow in {0:?}: the number must be 1..=4294967295")]
    RateOverflow(String),
    /// The interval part does not match `DIGITS[s|ms|us]`.
    #[error("invalid replenishment interval {0:?}: expected e.g. 50ms, 20000us or 1s")]
    BadInterval(String),
    /// The interval is 0 or above 4294967295 us.
    #[error("replenishment interval overflow in {0:?}: must be 1..=4294967295 microseconds")]
    IntervalOverflow(String),
}

fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// Parses xl's `rate=` value.
pub fn parse_rate(text: &str) -> Result<Rate, RateError> {
    let (rate, interval) = match text.split_once('@') {
        Some((r, i)) => (r, Some(i)),
        None => (text, None),
    };
    if rate.is_empty() {
        return Err(RateError::Empty(text.to_string()));
    }
    let (digits, rest) = split_digits(rate);
    let bad = || RateError::BadRate(rate.to_string());
    let rest = rest.strip_suffix("/s").ok_or_else(bad)?;
    let (mult, unit) = match rest.as_bytes() {
        [b'K', u] => (1_000u64, *u),
        [b'M', u] => (1_000_000, *u),
        [b'G', u] => (1_000_000_000, *u),
        [u] => (1, *u),
        _ => return Err(bad()),
    };
    if digits.is_empty() || (unit != b'B' && unit != b'b') {
        return Err(bad());
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| RateError::RateOverflow(rate.to_string()))?;
    if n == 0 || n > u64::from(u32::MAX) {
        return Err(RateError::RateOverflow(rate.to_string()));
    }
    let mut bytes_per_sec = n * mult;
    if unit == b'b' {
        bytes_per_sec /= 8;
    }
    let interval_us = match interval {
        None => DEFAULT_RATE_INTERVAL_US,
        Some(i) => parse_interval(i)?,
    };
    let bytes_per_interval =
        (u128::from(bytes_per_sec) * u128::from(interval_us) / 1_000_000) as u64;
    Ok(Rate {
        bytes_per_sec,
        bytes_per_interval,
        interval_us,
    })
}

fn parse_interval(text: &str) -> Result<u32, RateError> {
    let (digits, unit) = split_digits(text);
    let mult: u64 = match unit {
        "" | "s" => 1_000_000,
        "ms" | "m" => 1_000,
        "us" | "u" => 1,
        _ => return Err(RateError::BadInterval(text.to_string())),
    };
    if digits.is_empty() {
        return Err(RateError::BadInterval(text.to_string()));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| RateError::IntervalOverflow(text.to_string()))?;
    if n == 0 || n > u64::from(u32::MAX) {
        return Err(RateError::IntervalOverflow(text.to_string()));
    }
    u32::try_from(n * mult).map_err(|_| RateError::IntervalOverflow(text.to_string()))
}
