//! Descriptors the data plane wakes for besides its event channels (a TAP uplink):
//! a thread polls them and interrupts the plane's event wait when one is readable,
//! then waits, disarmed, until the plane has read them and re-arms it.
//!
//! One thread whatever the platform: the process platform's events are a futex in
//! shared memory, not a descriptor, so the plane cannot `poll()` both itself. The
//! plane re-arms before each sleep; that costs a syscall only after a wake-up came
//! through here (re-arming an armed watcher is one atomic load).

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rustix::event::{eventfd, EventfdFlags, PollFd, PollFlags};
use xennet_platform::Interrupter;

/// Shared between the plane and the watcher thread.
struct Shared {
    /// The watcher polls the descriptors (else only `ctl`, waiting to be re-armed).
    armed: AtomicBool,
    stop: AtomicBool,
    /// Written to re-arm or stop the watcher.
    ctl: OwnedFd,
}

/// A thread that wakes the plane when one of `fds` is readable.
pub(super) struct FdWatcher {
    fds: Vec<RawFd>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FdWatcher {
    /// Watches `dups` (duplicates of the descriptors `fds`, so closing the
    /// originals never leaves the thread polling a stale number; the plane restarts
    /// the watcher when its set of descriptors changes) and calls `wake` when one
    /// is readable.
    pub(super) fn start(
        fds: Vec<RawFd>,
        dups: Vec<OwnedFd>,
        wake: Interrupter,
    ) -> io::Result<FdWatcher> {
        let shared = Arc::new(Shared {
            armed: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            ctl: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("xennet-fd-watch".into())
            .spawn(move || watch(&sh, &dups, &wake))?;
        Ok(FdWatcher {
            fds,
            shared,
            thread: Some(thread),
        })
    }

    /// The descriptors watched.
    pub(super) fn fds(&self) -> &[RawFd] {
        &self.fds
    }

    /// The plane has read its descriptors: watch them again.
    pub(super) fn rearm(&self) {
        if !self.shared.armed.swap(true, Ordering::AcqRel) {
            let _ = rustix::io::write(&self.shared.ctl, &1u64.to_ne_bytes());
        }
    }
}

impl Drop for FdWatcher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = rustix::io::write(&self.shared.ctl, &1u64.to_ne_bytes());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(sh: &Shared, fds: &[OwnedFd], wake: &Interrupter) {
    let broken = PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL;
    // Descriptors still watched: one that reports an error or hang-up without data
    // would make every poll return at once, so it is dropped from the set (its
    // endpoint sees the error itself when it next reads).
    let mut live: Vec<&OwnedFd> = fds.iter().collect();
    let mut all = poll_set(sh, &live);
    loop {
        // Disarmed, only the control descriptor: the plane has yet to read.
        let n = if sh.armed.load(Ordering::Acquire) {
            all.len()
        } else {
            1
        };
        let set = &mut all[..n];
        for p in set.iter_mut() {
            p.clear_revents();
        }
        if let Err(e) = rustix::event::poll(set, None) {
            if e != rustix::io::Errno::INTR {
                tracing::warn!("data plane descriptor watch: poll: {e}");
                return;
            }
            continue;
        }
        let readable = set[1..].iter().any(|p| p.revents().contains(PollFlags::IN));
        let gone =
            |p: &PollFd<'_>| !p.revents().contains(PollFlags::IN) && p.revents().intersects(broken);
        // Rare (a device went away): only then is the list of them made.
        let dead: Vec<usize> = if set[1..].iter().any(gone) {
            (0..set.len() - 1).filter(|&i| gone(&set[i + 1])).collect()
        } else {
            Vec::new()
        };
        if set[0].revents().contains(PollFlags::IN) {
            let mut counter = [0u8; 8];
            let _ = rustix::io::read(&sh.ctl, &mut counter);
        }
        if sh.stop.load(Ordering::Acquire) {
            return;
        }
        if !dead.is_empty() {
            tracing::warn!(
                "data plane descriptor watch: {} device(s) hung up or failed; no longer watched",
                dead.len()
            );
            for i in dead.into_iter().rev() {
                live.remove(i);
            }
            all = poll_set(sh, &live);
        }
        if readable {
            sh.armed.store(false, Ordering::Release);
            wake.interrupt();
        }
    }
}

/// The control descriptor, then each watched one.
fn poll_set<'a>(sh: &'a Shared, fds: &[&'a OwnedFd]) -> Vec<PollFd<'a>> {
    std::iter::once(PollFd::new(&sh.ctl, PollFlags::IN))
        .chain(fds.iter().map(|fd| PollFd::new(*fd, PollFlags::IN)))
        .collect()
}
