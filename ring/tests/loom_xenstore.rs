//! loom models of the XenStore ring page protocol: the ring client and xenstored's
//! end (`RequestReader`, `ReplyWriter`) over loom atomics and cells
//! (`LoomXsPage`), each side sleeping on a latched event channel when it has
//! nothing to do. Rings of 16 bytes make every message wrap and wait for room.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p xennet-ring --release --test loom_xenstore`.
#![cfg(loom)]

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use xennet_ring::xenstore::loom::LoomXsPage;
use xennet_ring::xenstore::page::XsWord;
use xennet_ring::xenstore::server::{ReplyWriter, RequestReader, MESSAGE_MAX};
use xennet_ring::xenstore::wire::{Header, MsgType, HEADER_LEN};
use xennet_ring::xenstore::{TxId, XsEvent, XsRingClient};

type Page = Arc<LoomXsPage>;

/// One direction of an event channel: a pending bit that coalesces kicks, and a
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

struct Guest {
    to_server: Arc<Event>,
    to_guest: Arc<Event>,
}

impl XsEvent for Guest {
    fn notify(&mut self) {
        self.to_server.notify();
    }
    fn wait(&mut self) -> bool {
        self.to_guest.wait();
        true
    }
}

fn msg(ty: MsgType, req_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Header {
        ty: ty as u32,
        req_id,
        tx_id: 0,
        len: payload.len() as u32,
    }
    .to_bytes()
    .to_vec();
    m.extend_from_slice(payload);
    m
}

/// xenstored's turn: take one request, answer it with `before` then the reply,
/// sleeping whenever the guest has to move first.
fn serve_one(page: Page, to_server: Arc<Event>, to_guest: Arc<Event>, before: Vec<u8>) {
    let mut requests = RequestReader::attach(page.clone());
    let mut replies = ReplyWriter::attach(page).unwrap();
    let mut buf = Box::new([0u8; MESSAGE_MAX]);
    let n = loop {
        let got = requests.poll(&mut buf).unwrap();
        if requests.take_moved() {
            to_guest.notify();
        }
        match got {
            Some(n) => break n,
            None => to_server.wait(),
        }
    };
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&buf[..HEADER_LEN]);
    let h = Header::parse(&h).unwrap();
    assert_eq!(h.ty, MsgType::Read as u32);
    assert_eq!(&buf[HEADER_LEN..n], b"a\0", "the request arrives intact");
    let mut out = before;
    out.extend(msg(MsgType::Read, h.req_id, b"v"));
    let mut rest = &out[..];
    while !rest.is_empty() {
        let n = replies.write(rest).unwrap();
        rest = &rest[n..];
        if n > 0 {
            to_guest.notify();
        } else {
            to_server.wait();
        }
    }
}

/// The guest reads one node; xenstored sends `before` (watch events) and then the
/// reply. Both rings are 16 bytes: the 18-byte request and the reply wrap.
fn exchange(before: Vec<u8>, weak: Option<XsWord>) {
    let page = LoomXsPage::new(16, weak);
    let to_server = Arc::new(Event::default());
    let to_guest = Arc::new(Event::default());
    let events = before.len();
    let server = {
        let (page, to_server, to_guest) = (page.clone(), to_server.clone(), to_guest.clone());
        thread::spawn(move || serve_one(page, to_server, to_guest, before))
    };
    let guest = Guest {
        to_server,
        to_guest,
    };
    let mut xs = XsRingClient::with_memory(page, guest, [0u8; 32]).unwrap();
    let mut out = [0u8; 4];
    assert_eq!(xs.read(TxId::NONE, "a", &mut out), Ok(1));
    assert_eq!(out[0], b'v', "the reply arrives intact");
    if events > 0 {
        let mut ev = [0u8; 16];
        let e = xs
            .next_watch_event(&mut ev)
            .unwrap()
            .expect("the event was kept");
        assert_eq!((e.path, e.token), ("p", "t"));
    }
    server.join().unwrap();
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn request_and_reply_wrap_the_rings_with_no_lost_wakeup_or_race() {
    model(|| exchange(Vec::new(), None));
}

#[test]
fn a_watch_event_before_the_reply_is_kept_and_the_reply_still_found() {
    model(|| exchange(msg(MsgType::WatchEvent, 0, b"p\0t\0"), None));
}

/// The model is not vacuous: if xenstored published `rsp_prod` without release
/// ordering, the guest could copy reply bytes before they are written, and loom
/// reports the race on the ring cells.
#[test]
#[should_panic(expected = "Causality violation")]
fn model_catches_rsp_prod_published_without_release() {
    model(|| exchange(Vec::new(), Some(XsWord::RspProd)));
}

/// Likewise for the guest's `rsp_cons`: without release ordering xenstored could
/// overwrite bytes the guest is still copying out.
#[test]
#[should_panic(expected = "Causality violation")]
fn model_catches_rsp_cons_published_without_release() {
    model(|| exchange(Vec::new(), Some(XsWord::RspCons)));
}

/// The request side too: `req_prod` without release lets xenstored read request
/// bytes before the guest wrote them.
#[test]
#[should_panic(expected = "Causality violation")]
fn model_catches_req_prod_published_without_release() {
    model(|| exchange(Vec::new(), Some(XsWord::ReqProd)));
}

/// And `req_cons` without release lets the guest reuse room (the 18-byte request
/// needs it) while xenstored is still copying the bytes out.
#[test]
#[should_panic(expected = "Causality violation")]
fn model_catches_req_cons_published_without_release() {
    model(|| exchange(Vec::new(), Some(XsWord::ReqCons)));
}
