//! What the workers share: frame patterns and checks, the wait-for-work loop and the
//! throughput meter.

use std::io::{self};
use std::time::{Duration, Instant};

use xennet_platform::shm::EventChannels;

use crate::bench::peers::{check_frame, fill_frame};
use crate::bench::{sys, Case, WorkerReport};

use super::*;

/// A frame of the study: Ethernet header, then [`fill_frame`]'s pattern.
pub(super) fn fill(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], seq: u64) {
    buf[..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&src);
    buf[12..14].copy_from_slice(&ETHERTYPE);
    fill_frame(&mut buf[HEADER..], seq);
}

/// Whether a received frame is one of the study's, intact.
pub(super) fn intact(case: &Case, f: &[u8]) -> bool {
    f.len() == case.frame_bytes && f[12..14] == ETHERTYPE && check_frame(&f[HEADER..]).is_some()
}

pub(super) fn err(what: &str) -> impl FnOnce(String) -> io::Error + '_ {
    move |e| io::Error::other(format!("{what}: {e}"))
}

/// Waiting for a peer: poll for [`SPIN`], then arm the ring and sleep on the event
/// channel; gives up after [`IDLE`] without any progress, or [`QUIET`] once there was.
pub(super) struct Waiter {
    last_progress: Instant,
    started: bool,
    woken: Vec<xennet_ring::Port>,
}

impl Waiter {
    pub(super) fn new() -> Waiter {
        Waiter {
            last_progress: Instant::now(),
            started: false,
            woken: Vec::new(),
        }
    }

    pub(super) fn progress(&mut self) {
        self.last_progress = Instant::now();
        self.started = true;
    }

    /// When the last progress was.
    pub(super) fn last(&self) -> Instant {
        self.last_progress
    }

    pub(super) fn limit(&self) -> Duration {
        if self.started {
            QUIET
        } else {
            IDLE
        }
    }

    /// Poll `work` (which does the work and says whether anything moved) for a while;
    /// if nothing moved, `arm` (true: work is waiting) and sleep on `events`.
    pub(super) fn idle<T>(
        &mut self,
        events: &EventChannels,
        dev: &mut T,
        mut work: impl FnMut(&mut T) -> io::Result<bool>,
        arm: impl FnOnce(&mut T) -> io::Result<bool>,
    ) -> io::Result<bool> {
        let left = self.limit().saturating_sub(self.last_progress.elapsed());
        if left.is_zero() {
            return Ok(false);
        }
        let spin_until = Instant::now() + SPIN;
        while Instant::now() < spin_until {
            if work(dev)? {
                self.progress();
                return Ok(true);
            }
            std::hint::spin_loop();
        }
        if arm(dev)? {
            return Ok(true);
        }
        let left = self.limit().saturating_sub(self.last_progress.elapsed());
        if left.is_zero() {
            return Ok(false);
        }
        self.woken.clear();
        events.wait_into(Some(left.min(Duration::from_millis(100))), &mut self.woken);
        Ok(true)
    }
}

/// The measured interval of a receiver: from the end of the first batch (which starts
/// the clock) to the last frame.
pub(super) struct Meter {
    start: Option<(Instant, u64, u64, u64)>,
}

impl Meter {
    pub(super) fn new() -> Meter {
        Meter { start: None }
    }

    /// Note that `got` frames have arrived so far and `kicks` were sent.
    pub(super) fn saw(&mut self, got: u64, kicks: u64) {
        if self.start.is_none() && got > 0 {
            self.start = Some((Instant::now(), sys::cpu_time_ns(), kicks, got));
        }
    }

    /// The report for `got` frames of which `bad` were damaged, the last at `last`.
    pub(super) fn report(
        &self,
        got: u64,
        bad: u64,
        last: Instant,
        kicks: u64,
        drops: u64,
    ) -> WorkerReport {
        let (t0, cpu0, k0, got0) = self.start.unwrap_or((last, sys::cpu_time_ns(), kicks, got));
        WorkerReport {
            packets: got,
            bad,
            cpu_ns: sys::cpu_time_ns().saturating_sub(cpu0),
            wall_ns: last.saturating_duration_since(t0).as_nanos() as u64,
            notifications: kicks - k0,
            drops,
            timed: got - got0,
        }
    }
}
