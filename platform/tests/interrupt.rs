//! `EventChannelOps::interrupter` ends an event wait from another thread, with no
//! event pending: what the driver domain's descriptor watcher relies on.
#![cfg(not(loom))]

use std::sync::mpsc;
use std::time::Duration;

use xennet_platform::shm::{Domain, EventChannels};
use xennet_platform::EventChannelOps;
use xennet_ring::DomId;

#[test]
fn an_interrupt_ends_the_wait_in_progress_and_an_early_one_the_next_wait() {
    let dom = Domain::anonymous(DomId(0), 4, 16).unwrap();
    let events = EventChannels::new(&dom, None);
    let wake = events.interrupter();
    // Raised before anyone waits: the next wait returns at once, with no ports.
    wake.interrupt();
    let mut out = Vec::new();
    events.wait_into(None, &mut out);
    assert!(out.is_empty());
    // Raised while a thread waits with no timeout.
    let (done_tx, done) = mpsc::channel();
    let waiter = {
        let events = events.clone();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            events.wait_into(None, &mut out);
            let _ = done_tx.send(out.len());
        })
    };
    // The waiter may or may not be asleep yet: either way it must return.
    wake.interrupt();
    let n = done
        .recv_timeout(Duration::from_secs(60))
        .expect("the waiter slept through the interrupt");
    assert_eq!(n, 0);
    waiter.join().unwrap();
    // Taken once: a later wait with a timeout times out.
    let mut out = Vec::new();
    events.wait_into(Some(Duration::from_millis(1)), &mut out);
    assert!(out.is_empty());
}
