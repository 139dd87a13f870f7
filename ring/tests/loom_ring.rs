//! loom models of the ring protocol: the code of `FrontRing`/`BackRing` over loom
//! atomics and cells (`LoomRing`), with a blocking "sleep until notified" on each side.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p xennet-ring --release --test loom_ring`.
#![cfg(loom)]

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use xennet_ring::loom::LoomRing;
use xennet_ring::netif::{TxRequest, TxResponse};
use xennet_ring::{BackRing, FenceSite, FrontRing, RingIdx};

/// An event channel as the model sees it: a pending bit that coalesces kicks, and a
/// blocking wait that consumes it.
#[derive(Default)]
struct Event {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Event {
    fn notify(&self) {
        *self.pending.lock().unwrap() = true;
        self.cv.notify_one();
    }

    fn wait(&self) {
        let mut pending = self.pending.lock().unwrap();
        while !*pending {
            pending = self.cv.wait(pending).unwrap();
        }
        *pending = false;
    }
}

type Ring = Arc<LoomRing<TxRequest, TxResponse>>;

/// The front sends `n` requests through a ring of `entries` slots and waits for every
/// response; the back answers each. Both sleep when they have nothing to do, exactly as
/// drivers do: final check, then wait for the peer's notification.
fn exchange(entries: u32, n: u16, start: u32, omit: Option<FenceSite>) {
    let ring: Ring = LoomRing::with(entries, start, omit);
    let to_back = Arc::new(Event::default());
    let to_front = Arc::new(Event::default());

    let back = {
        let (ring, to_back, to_front) = (ring.clone(), to_back.clone(), to_front.clone());
        thread::spawn(move || {
            let mut back =
                BackRing::<TxRequest, TxResponse, Ring>::with_memory(ring, RingIdx(start));
            let mut answered = 0u16;
            let mut expect = 0u16;
            while answered < n {
                while let Some(req) = back.pop_request().unwrap() {
                    assert_eq!(req.id, expect, "requests arrive once, in order");
                    assert_eq!(req.size, 100 + req.id, "slot data intact");
                    expect += 1;
                    back.push_response(&TxResponse {
                        id: req.id,
                        status: 0,
                    })
                    .unwrap();
                    answered += 1;
                }
                if back.push_responses_and_check_notify() {
                    to_front.notify();
                }
                if answered < n && !back.final_check_for_requests().unwrap() {
                    to_back.wait();
                }
            }
        })
    };

    let mut front = FrontRing::<TxRequest, TxResponse, Ring>::with_memory(ring, RingIdx(start));
    let (mut sent, mut got) = (0u16, 0u16);
    while got < n {
        while sent < n && !front.is_full() {
            let req = TxRequest {
                id: sent,
                size: 100 + sent,
                ..Default::default()
            };
            front.push_request(&req).unwrap();
            sent += 1;
        }
        if front.push_requests_and_check_notify() {
            to_back.notify();
        }
        let mut progressed = false;
        while let Some(rsp) = front.pop_response().unwrap() {
            assert_eq!(rsp.id, got, "responses arrive once, in order");
            got += 1;
            progressed = true;
        }
        let can_send = sent < n && !front.is_full();
        if got < n && !progressed && !can_send && !front.final_check_for_responses().unwrap() {
            to_front.wait();
        }
    }
    back.join().unwrap();
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn exchange_has_no_lost_wakeup_and_delivers_in_order() {
    model(|| exchange(4, 3, 0, None));
}

#[test]
fn exchange_across_index_wrap() {
    model(|| exchange(4, 3, u32::MAX - 1, None));
}

#[test]
fn full_ring_backpressure_never_overwrites_unconsumed_slots() {
    // Two slots, four requests: the front must wait for responses to make room, and
    // loom's cells would report any write to a slot the back is still reading.
    model(|| exchange(2, 4, 0, None));
}

/// The model is not vacuous: without the fence between writing the event index and
/// re-reading the producer index, a response published meanwhile is missed by both
/// sides and loom finds the resulting lost wakeup (every thread asleep).
#[test]
#[should_panic(expected = "deadlock")]
fn model_catches_missing_fence_in_final_check() {
    model(|| exchange(2, 4, 0, Some(FenceSite::FinalCheck)));
}
