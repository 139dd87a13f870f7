//! loom models of the platform's concurrency protocols, over the very functions the
//! shared-memory platform runs (`shm::pending`; the grant in-use flags are modelled in
//! `ring/tests/loom_grant_flags.rs`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p xennet-platform --release --test loom_platform`.
#![cfg(loom)]

use loom::sync::atomic::AtomicU32;
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use xennet_platform::shm::pending;

/// A futex as the kernel provides it: wait returns at once if the word changed, and
/// otherwise sleeps until a wake. The mutex stands for the kernel's bucket lock.
struct Futex {
    lock: Mutex<()>,
    cv: Condvar,
}

impl Futex {
    fn wait(&self, word: &AtomicU32, seq: u32) {
        let g = self.lock.lock().unwrap();
        if pending::Word::get(word) != seq {
            return;
        }
        drop(self.cv.wait(g).unwrap());
    }

    fn wake(&self) {
        let _g = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
}

/// A notification raised while the receiver goes to sleep is never lost, and kicks
/// while pending coalesce into one event.
#[test]
fn pending_bit_wakeup_is_never_lost() {
    loom::model(|| {
        let port = Arc::new(AtomicU32::new(0));
        let summary = Arc::new(AtomicU32::new(0));
        let doorbell = Arc::new(AtomicU32::new(0));
        let sleepers = Arc::new(AtomicU32::new(0));
        let futex = Arc::new(Futex {
            lock: Mutex::new(()),
            cv: Condvar::new(),
        });
        let sender = {
            let (port, summary, doorbell, sleepers, futex) = (
                port.clone(),
                summary.clone(),
                doorbell.clone(),
                sleepers.clone(),
                futex.clone(),
            );
            thread::spawn(move || {
                for _ in 0..2 {
                    if pending::raise(&*port, &*summary, &*doorbell, &*sleepers) {
                        futex.wake();
                    }
                }
            })
        };
        // Receiver: wait until the event arrives.
        loop {
            if pending::clear_summary(&*summary) && pending::take(&*port) {
                break;
            }
            if let Some(seq) = pending::begin_sleep(&*summary, &*doorbell, &*sleepers) {
                futex.wait(&doorbell, seq);
            }
            pending::end_sleep(&*sleepers);
        }
        sender.join().unwrap();
    });
}
