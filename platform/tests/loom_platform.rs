//! loom models of the platform's concurrency protocols, over the very functions the
//! shared-memory platform runs (`shm::flags`, `shm::pending`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p xennet-platform --release --test loom_platform`.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU32;
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use xennet_platform::shm::{flags, pending};

/// Ending access never succeeds while a copy is inside the page, and a copy never
/// starts on an ended grant: the page is reused right after a successful end, and loom's
/// cell reports any overlap with the copier's write.
#[test]
fn end_access_and_copy_never_overlap() {
    loom::model(|| {
        let word = Arc::new(AtomicU32::new(0));
        let page = Arc::new(UnsafeCell::new(0u8));
        flags::publish(&*word, 0, false);
        let copier = {
            let (word, page) = (word.clone(), page.clone());
            thread::spawn(move || {
                if flags::pin(&*word, 0, true).is_ok() {
                    // SAFETY: loom checks this access against the granter's reuse.
                    page.with_mut(|p| unsafe { *p = 1 });
                    flags::unpin(&*word);
                    true
                } else {
                    false
                }
            })
        };
        let ended = flags::end_access(&*word);
        if ended {
            // The granter reuses the page at once.
            // SAFETY: as above.
            page.with_mut(|p| unsafe { *p = 2 });
            assert!(
                flags::pin(&*word, 0, false).is_err(),
                "ended grant cannot be pinned"
            );
        }
        let copied = copier.join().unwrap();
        if !ended {
            assert!(
                copied,
                "end_access fails only while the copier holds the grant"
            );
            assert!(
                flags::end_access(&*word),
                "access ends once the copy is done"
            );
        }
    });
}

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
