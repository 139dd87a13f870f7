//! loom model of the grant in-use flag protocol (`xennet_ring::grant::flags`), over the
//! very functions both platforms run on a grant table.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p xennet-ring --release --test loom_grant_flags`.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU32;
use loom::sync::Arc;
use loom::thread;
use xennet_ring::grant::flags;

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
