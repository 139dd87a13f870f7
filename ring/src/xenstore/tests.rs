//! The ring client against a scripted xenstored on a process-local page: the wait
//! hook plays the server's turn, so each test is one thread and deterministic.
//! Round trips against the project's daemon are in `xenstore/tests/ring_client.rs`.

use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use std::boxed::Box;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use super::page::XsWord;
use super::server::{ReplyWriter, RequestReader, MESSAGE_MAX};
use super::wire::{self, Errno, Header, MsgType, HEADER_LEN};
use super::*;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

fn page() -> Box<Page> {
    Box::new(Page([0; 4096]))
}

fn view(p: &mut Page) -> XsPage {
    // SAFETY: every test keeps its page alive longer than the client and the
    // server built on it, and touches it only through views.
    unsafe { XsPage::new(NonNull::new(p.0.as_mut_ptr()).unwrap()) }.unwrap()
}

/// xenstored's side, scripted by the test.
struct Server {
    reader: RequestReader<XsPage>,
    writer: ReplyWriter<XsPage>,
    raw: XsPage,
    buf: Box<[u8; MESSAGE_MAX]>,
}

impl Server {
    fn new(p: &mut Page) -> Self {
        Server {
            reader: RequestReader::attach(view(p)),
            writer: ReplyWriter::attach(view(p)).unwrap(),
            raw: view(p),
            buf: Box::new([0; MESSAGE_MAX]),
        }
    }

    fn next_request(&mut self) -> Option<(Header, Vec<u8>)> {
        let n = self.reader.poll(&mut self.buf).unwrap()?;
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[..HEADER_LEN]);
        Some((Header::parse(&h).unwrap(), self.buf[HEADER_LEN..n].to_vec()))
    }

    /// Puts `bytes` into `rsp[]`; they must fit.
    fn send(&mut self, bytes: &[u8]) {
        assert_eq!(self.writer.write(bytes).unwrap(), bytes.len());
    }

    /// Answers every request waiting with `f(header, payload)`.
    fn answer(&mut self, mut f: impl FnMut(Header, &[u8]) -> Vec<u8>) {
        while let Some((h, p)) = self.next_request() {
            let reply = f(h, &p);
            self.send(&reply);
        }
    }
}

fn msg(ty: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Header {
        ty,
        req_id,
        tx_id: 0,
        len: payload.len() as u32,
    }
    .to_bytes()
    .to_vec();
    m.extend_from_slice(payload);
    m
}

fn ok(h: Header, _: &[u8]) -> Vec<u8> {
    msg(h.ty, h.req_id, b"OK\0")
}

/// The event channel: `wait` runs the server's turn, and gives up after `max`.
struct Hook<F> {
    srv: Server,
    turn: F,
    waits: u32,
    max: u32,
    kicks: u32,
}

impl<F: FnMut(&mut Server)> XsEvent for Hook<F> {
    fn notify(&mut self) {
        self.kicks += 1;
    }
    fn wait(&mut self) -> bool {
        self.waits += 1;
        if self.waits > self.max {
            return false;
        }
        (self.turn)(&mut self.srv);
        true
    }
}

type Client<F> = XsRingClient<XsPage, Hook<F>, [u8; 256]>;

fn client<F: FnMut(&mut Server)>(p: &mut Page, turn: F) -> Client<F> {
    let hook = Hook {
        srv: Server::new(p),
        turn,
        waits: 0,
        max: 100,
        kicks: 0,
    };
    XsRingClient::with_memory(view(p), hook, [0; 256]).unwrap()
}

fn server<F: FnMut(&mut Server)>(c: &mut Client<F>) -> &mut Server {
    // The hook is the client's; tests reach the server through it between calls.
    &mut c.event().srv
}

#[test]
fn read_returns_the_value_and_error_replies_map_to_errno() {
    let mut p = page();
    let mut xs = client(&mut p, |s| {
        s.answer(|h, body| match body {
            b"/a\0" => msg(h.ty, h.req_id, b"hello"),
            _ => msg(MsgType::Error as u32, h.req_id, b"ENOENT\0"),
        })
    });
    let mut out = [0u8; 16];
    assert_eq!(xs.read(TxId::NONE, "/a", &mut out), Ok(5));
    assert_eq!(&out[..5], b"hello");
    assert_eq!(
        xs.read(TxId::NONE, "/b", &mut out),
        Err(XsRingError::Errno(Errno::ENOENT))
    );
    assert_eq!(xs.try_read(TxId::NONE, "/b", &mut out), Ok(None));
    assert!(!xs.is_broken());
    assert!(xs.event().kicks >= 3, "every request kicks xenstored");
}

#[test]
fn requests_carry_type_tx_id_and_payload_as_xs_wire_says() {
    let mut p = page();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    let mut xs = client(&mut p, move |s| {
        s.answer(|h, body| {
            log.borrow_mut().push((h, body.to_vec()));
            match MsgType::from_u32(h.ty) {
                Some(MsgType::TransactionStart) => msg(h.ty, h.req_id, b"7\0"),
                Some(MsgType::Directory) => msg(h.ty, h.req_id, b"a\0bc\0"),
                _ => ok(h, body),
            }
        })
    });
    let tx = xs.transaction_start().unwrap();
    assert_eq!(tx, TxId(7));
    xs.write(tx, "/k", b"v").unwrap();
    let mut out = [0u8; 16];
    let n = xs.directory(tx, "/", &mut out).unwrap();
    let names: Vec<&[u8]> = wire::strings(&out[..n]).collect();
    assert_eq!(names, [&b"a"[..], b"bc"]);
    xs.transaction_end(tx, true).unwrap();
    xs.watch("/w", "tok").unwrap();
    xs.unwatch("/w", "tok").unwrap();
    let seen = seen.borrow();
    let want: [(MsgType, u32, &[u8]); 6] = [
        (MsgType::TransactionStart, 0, b"\0"),
        (MsgType::Write, 7, b"/k\0v"),
        (MsgType::Directory, 7, b"/\0"),
        (MsgType::TransactionEnd, 7, b"T\0"),
        (MsgType::Watch, 0, b"/w\0tok\0"),
        (MsgType::Unwatch, 0, b"/w\0tok\0"),
    ];
    assert_eq!(seen.len(), want.len());
    for (i, ((h, body), (ty, tx_id, payload))) in seen.iter().zip(want).enumerate() {
        assert_eq!((h.ty, h.tx_id, &body[..]), (ty as u32, tx_id, payload));
        assert_eq!(h.req_id, i as u32 + 1, "one request id each, in order");
    }
}

#[test]
fn watch_events_between_replies_are_kept_for_next_watch_event() {
    let mut p = page();
    let mut xs = client(&mut p, |s| {
        s.answer(|h, _| {
            let mut m = msg(MsgType::WatchEvent as u32, 0, b"/w/x\0tok\0");
            m.extend(msg(h.ty, h.req_id, b"OK\0"));
            m
        })
    });
    xs.watch("/w", "tok").unwrap();
    let mut out = [0u8; 64];
    let ev = xs.next_watch_event(&mut out).unwrap().unwrap();
    assert_eq!((ev.path, ev.token), ("/w/x", "tok"));
    assert_eq!(xs.next_watch_event(&mut out), Ok(None));
    // One sent while no request is outstanding is read by next_watch_event itself.
    server(&mut xs).send(&msg(MsgType::WatchEvent as u32, 0, b"/w/y\0tok\0"));
    let ev = xs.next_watch_event(&mut out).unwrap().unwrap();
    assert_eq!(ev.path, "/w/y");
}

#[test]
fn a_full_event_buffer_drops_and_counts_and_malformed_events_are_skipped() {
    let mut p = page();
    let mut xs = client(&mut p, |s| s.answer(ok));
    let long = [b'x'; 200];
    let mut ev = long.to_vec();
    ev.extend_from_slice(b"\0t\0");
    server(&mut xs).send(&msg(MsgType::WatchEvent as u32, 0, &ev));
    server(&mut xs).send(&msg(MsgType::WatchEvent as u32, 0, &ev));
    server(&mut xs).send(&msg(MsgType::WatchEvent as u32, 0, b"no-token"));
    server(&mut xs).send(&msg(MsgType::WatchEvent as u32, 0, &[0xff, 0, b't', 0]));
    xs.write(TxId::NONE, "/k", b"v").unwrap();
    assert_eq!(xs.events_dropped(), 1, "the second does not fit 256 bytes");
    assert_eq!(xs.events_malformed(), 2);
    let mut small = [0u8; 8];
    assert_eq!(
        xs.next_watch_event(&mut small),
        Err(XsRingError::BufferTooSmall { needed: 203 })
    );
    let mut out = [0u8; 256];
    assert_eq!(xs.next_watch_event(&mut out).unwrap().unwrap().token, "t");
    assert!(!xs.is_broken());
}

#[test]
fn messages_arriving_a_byte_at_a_time_across_the_wrap_are_reassembled() {
    let mut p = page();
    let mut pending: Vec<u8> = Vec::new();
    let mut xs = client(&mut p, move |s| {
        s.answer(|h, body| {
            assert_eq!(body.len(), 1000 + 1);
            let mut m = msg(MsgType::WatchEvent as u32, 0, b"/e\0t\0");
            m.extend(msg(h.ty, h.req_id, &[b'v'; 900]));
            pending.extend(m);
            Vec::new()
        });
        if !pending.is_empty() {
            let b = pending.remove(0);
            s.send(&[b]);
        }
    });
    xs.event().max = 10_000;
    let path = std::string::String::from_utf8(vec![b'p'; 1000]).unwrap();
    let mut out = [0u8; 1024];
    for _ in 0..3 {
        // 1017 bytes out and 937 back each time: both rings wrap.
        assert_eq!(xs.read(TxId::NONE, &path, &mut out), Ok(900));
        assert!(out[..900].iter().all(|&b| b == b'v'));
    }
    let mut ev = [0u8; 16];
    assert_eq!(xs.next_watch_event(&mut ev).unwrap().unwrap().path, "/e");
}

#[test]
fn a_reply_too_big_for_the_buffer_is_consumed_and_reported() {
    let mut p = page();
    let mut xs = client(&mut p, |s| {
        s.answer(|h, _| msg(h.ty, h.req_id, &[b'v'; 100]))
    });
    let mut out = [0u8; 10];
    assert_eq!(
        xs.read(TxId::NONE, "/a", &mut out),
        Err(XsRingError::BufferTooSmall { needed: 100 })
    );
    let mut out = [0u8; 100];
    assert_eq!(xs.read(TxId::NONE, "/a", &mut out), Ok(100));
}

#[test]
fn a_request_past_the_payload_max_is_refused_before_sending() {
    let mut p = page();
    let mut xs = client(&mut p, |s| s.answer(ok));
    let big = [b'v'; wire::PAYLOAD_MAX];
    assert_eq!(
        xs.write(TxId::NONE, "/k", &big),
        Err(XsRingError::Errno(Errno::E2BIG))
    );
    assert_eq!(xs.memory().load(XsWord::ReqProd, Ordering::Relaxed), 0);
    xs.write(TxId::NONE, "/k", b"v").unwrap();
}

#[test]
fn a_silent_server_times_out_and_its_late_reply_is_skipped() {
    let mut p = page();
    let awake = Rc::new(Cell::new(false));
    let flag = awake.clone();
    let mut xs = client(&mut p, move |s| {
        if flag.get() {
            s.answer(|h, _| msg(h.ty, h.req_id, b"fresh"));
        }
    });
    let mut out = [0u8; 16];
    assert_eq!(
        xs.read(TxId::NONE, "/a", &mut out),
        Err(XsRingError::Timeout)
    );
    assert!(
        !xs.is_broken(),
        "a whole request went out: the stream is in step"
    );
    // The late reply to request 1 comes before request 2 is answered.
    let s = server(&mut xs);
    let (h, _) = s.next_request().unwrap();
    s.send(&msg(h.ty, h.req_id, b"late"));
    awake.set(true);
    xs.event().waits = 0;
    assert_eq!(xs.read(TxId::NONE, "/a", &mut out), Ok(5));
    assert_eq!(&out[..5], b"fresh");
}

#[test]
fn rsp_prod_far_ahead_of_rsp_cons_is_an_overrun_and_breaks_the_connection() {
    let mut p = page();
    let mut xs = client(&mut p, |s| {
        s.raw.store(XsWord::RspProd, 5000, Ordering::Release);
    });
    let mut out = [0u8; 16];
    assert_eq!(
        xs.read(TxId::NONE, "/a", &mut out),
        Err(XsRingError::IndexOverrun {
            prod: 5000,
            cons: 0
        })
    );
    assert!(xs.is_broken());
    assert_eq!(
        xs.read(TxId::NONE, "/a", &mut out),
        Err(XsRingError::Broken)
    );
    assert_eq!(xs.next_watch_event(&mut out), Err(XsRingError::Broken));
}

#[test]
fn rsp_prod_moving_backwards_is_an_overrun() {
    let mut p = page();
    let mut turn = 0;
    let mut xs = client(&mut p, move |s| {
        // Half a header, then the producer index taken back.
        turn += 1;
        if turn == 1 {
            s.send(&[0u8; 8]);
        } else {
            s.raw.store(XsWord::RspProd, 4, Ordering::Release);
        }
    });
    let mut out = [0u8; 16];
    assert!(matches!(
        xs.read(TxId::NONE, "/a", &mut out),
        Err(XsRingError::IndexOverrun { .. })
    ));
}

#[test]
fn req_cons_past_what_was_written_is_an_overrun() {
    let mut p = page();
    let mut xs = client(&mut p, |s| {
        s.raw.store(XsWord::ReqCons, 2000, Ordering::Release);
    });
    // Fill req[] so the client must look at req_cons again.
    let big = [b'v'; 2000];
    assert!(matches!(
        xs.write(TxId::NONE, "/k", &big),
        Err(XsRingError::IndexOverrun { cons: 2000, .. })
    ));
    assert!(xs.is_broken());
}

#[test]
fn a_header_length_past_the_payload_max_is_refused() {
    let mut p = page();
    let mut xs = client(&mut p, |s| {
        s.answer(|h, _| {
            let mut m = msg(h.ty, h.req_id, b"");
            m[12..16].copy_from_slice(&5000u32.to_le_bytes());
            m
        })
    });
    let mut out = [0u8; 16];
    assert_eq!(
        xs.read(TxId::NONE, "/a", &mut out),
        Err(XsRingError::PayloadTooLong(5000))
    );
    assert!(xs.is_broken());
}

#[test]
fn an_unknown_message_type_is_refused() {
    let mut p = page();
    let mut xs = client(&mut p, |s| s.answer(|h, _| msg(20, h.req_id, b"OK\0")));
    let mut out = [0u8; 16];
    assert_eq!(
        xs.read(TxId::NONE, "/a", &mut out),
        Err(XsRingError::UnknownType(20))
    );
    assert!(xs.is_broken());
}

#[test]
fn a_reply_with_another_req_id_is_refused() {
    let mut p = page();
    let mut xs = client(&mut p, |s| s.answer(|h, _| msg(h.ty, h.req_id + 5, b"x")));
    let mut out = [0u8; 16];
    assert_eq!(
        xs.read(TxId::NONE, "/a", &mut out),
        Err(XsRingError::UnexpectedReply {
            expected: 1,
            req_id: 6,
            ty: MsgType::Read as u32
        })
    );
    assert!(xs.is_broken());
}

#[test]
fn a_reply_of_another_type_is_refused() {
    let mut p = page();
    let mut xs = client(&mut p, |s| {
        s.answer(|h, _| msg(MsgType::Write as u32, h.req_id, b"OK\0"))
    });
    let mut out = [0u8; 16];
    assert!(matches!(
        xs.read(TxId::NONE, "/a", &mut out),
        Err(XsRingError::UnexpectedReply { .. })
    ));
}

#[test]
fn a_transaction_id_that_is_not_a_number_is_malformed() {
    let mut p = page();
    let mut xs = client(&mut p, |s| s.answer(|h, _| msg(h.ty, h.req_id, b"seven\0")));
    assert_eq!(
        xs.transaction_start(),
        Err(XsRingError::Malformed("transaction id"))
    );
    assert!(xs.is_broken());
}

#[test]
fn an_endless_stream_of_watch_events_is_a_flood_not_a_hang() {
    let mut p = page();
    let ev = msg(MsgType::WatchEvent as u32, 0, b"/e\0t\0");
    let mut rest = Vec::new();
    let mut xs = client(&mut p, move |s| loop {
        if rest.is_empty() {
            rest = ev.clone();
        }
        let n = s.writer.write(&rest).unwrap();
        rest.drain(..n);
        if n == 0 {
            break;
        }
    });
    xs.event().max = u32::MAX;
    let mut out = [0u8; 16];
    assert_eq!(
        xs.read(TxId::NONE, "/a", &mut out),
        Err(XsRingError::Flooded)
    );
    assert!(xs.events_dropped() > 0);
}

#[test]
fn our_own_indices_scribbled_by_the_peer_are_not_believed() {
    let mut p = page();
    let mut xs = client(&mut p, |s| {
        s.answer(|h, _| msg(h.ty, h.req_id, b"v"));
        // req_prod far off, and rsp_cons claiming the reply is already taken: a
        // client reading either back would write in the wrong place or skip it.
        s.raw.store(XsWord::ReqProd, 12345, Ordering::Relaxed);
        let prod = s.raw.load(XsWord::RspProd, Ordering::Relaxed);
        s.raw.store(XsWord::RspCons, prod, Ordering::Relaxed);
    });
    let mut out = [0u8; 16];
    for _ in 0..3 {
        assert_eq!(xs.read(TxId::NONE, "/a", &mut out), Ok(1));
    }
}

#[test]
fn a_page_with_impossible_indices_is_refused_at_attach() {
    let mut p = page();
    view(&mut p).store(XsWord::ReqProd, 4096, Ordering::Relaxed);
    let hook = Hook {
        srv: Server::new(&mut page()),
        turn: |_: &mut Server| {},
        waits: 0,
        max: 0,
        kicks: 0,
    };
    assert!(matches!(
        XsRingClient::with_memory(view(&mut p), hook, [0u8; 16]),
        Err(XsRingError::IndexOverrun {
            prod: 4096,
            cons: 0
        })
    ));
}

#[test]
fn a_misaligned_page_is_refused() {
    let mut p = page();
    let ptr = NonNull::new(p.0[1..].as_mut_ptr()).unwrap();
    // SAFETY: the page outlives the call, which refuses it before any access.
    let r = unsafe { XsPage::new(ptr) };
    assert!(matches!(r, Err(XsRingError::BadPage)));
}

#[test]
fn a_request_cut_off_half_written_breaks_the_connection() {
    let mut p = page();
    let mut xs = client(&mut p, |_| {}); // never consumes
    xs.event().max = 3;
    let value = [b'v'; 2000];
    assert_eq!(
        xs.write(TxId::NONE, "/k", &value),
        Err(XsRingError::Timeout)
    );
    assert!(xs.is_broken(), "half a message is in req[]");
    assert_eq!(xs.write(TxId::NONE, "/k", b"v"), Err(XsRingError::Broken));
}

#[test]
fn wait_watch_event_gives_up_when_the_hook_does() {
    let mut p = page();
    let mut xs = client(&mut p, |_| {});
    xs.event().max = 2;
    let mut out = [0u8; 32];
    let never = core::time::Duration::from_secs(1);
    assert_eq!(xs.wait_watch_event(never, &mut out), Ok(None));
    assert_eq!(xs.event().waits, 3);
}

#[test]
fn transact_runs_the_body_again_when_the_commit_answers_eagain() {
    let mut p = page();
    let mut commits = 0;
    let mut xs = client(&mut p, move |s| {
        s.answer(|h, body| match MsgType::from_u32(h.ty) {
            Some(MsgType::TransactionStart) => msg(h.ty, h.req_id, b"3\0"),
            Some(MsgType::TransactionEnd) if body == b"T\0" => {
                commits += 1;
                if commits == 1 {
                    msg(MsgType::Error as u32, h.req_id, b"EAGAIN\0")
                } else {
                    ok(h, body)
                }
            }
            _ => ok(h, body),
        })
    });
    let mut runs = 0;
    let r = xs.transact(|xs, tx| {
        runs += 1;
        assert_eq!(tx, TxId(3));
        xs.write(tx, "/k", b"v")
    });
    assert_eq!((r, runs), (Ok(()), 2));
    // A body that fails aborts its transaction and returns its error.
    let r: Result<(), _> = xs.transact(|_, _| Err(XsRingError::Errno(Errno::EPERM)));
    assert_eq!(r, Err(XsRingError::Errno(Errno::EPERM)));
}

#[test]
fn a_broken_client_hands_out_nothing_it_queued_before() {
    let mut p = page();
    let mut xs = client(&mut p, |s| {
        s.answer(|h, _| {
            let mut m = msg(MsgType::WatchEvent as u32, 0, b"/w\0t\0");
            m.extend(msg(99, h.req_id, b""));
            m
        })
    });
    let mut out = [0u8; 16];
    assert_eq!(
        xs.read(TxId::NONE, "/a", &mut out),
        Err(XsRingError::UnknownType(99))
    );
    assert_eq!(xs.next_watch_event(&mut out), Err(XsRingError::Broken));
}

#[test]
fn xenstoreds_end_refuses_a_request_header_past_the_payload_max() {
    let mut p = page();
    let mut srv = Server::new(&mut p);
    let mut req = msg(MsgType::Read as u32, 1, b"");
    req[12..16].copy_from_slice(&4097u32.to_le_bytes());
    let guest = view(&mut p);
    guest.write(super::page::Dir::Req, 0, &req);
    guest.store(XsWord::ReqProd, req.len() as u32, Ordering::Release);
    assert_eq!(
        srv.reader.poll(&mut srv.buf),
        Err(XsRingError::PayloadTooLong(4097))
    );
}

#[test]
fn replies_left_on_the_page_by_an_earlier_owner_are_skipped_at_attach() {
    let mut p = page();
    let mut old = Server::new(&mut p);
    old.send(&msg(MsgType::Read as u32, 1, b"stale"));
    let mut xs = client(&mut p, |s| s.answer(|h, _| msg(h.ty, h.req_id, b"fresh")));
    assert_eq!(xs.memory().load(XsWord::RspCons, Ordering::Relaxed), 21);
    let mut out = [0u8; 16];
    assert_eq!(xs.read(TxId::NONE, "/a", &mut out), Ok(5));
    assert_eq!(&out[..5], b"fresh");
}

#[test]
fn an_impossible_rsp_prod_is_refused_at_attach() {
    let mut p = page();
    view(&mut p).store(XsWord::RspProd, 1025, Ordering::Relaxed);
    let hook = Hook {
        srv: Server::new(&mut page()),
        turn: |_: &mut Server| {},
        waits: 0,
        max: 0,
        kicks: 0,
    };
    assert!(matches!(
        XsRingClient::with_memory(view(&mut p), hook, [0u8; 16]),
        Err(XsRingError::IndexOverrun {
            prod: 1025,
            cons: 0
        })
    ));
}

#[test]
fn a_nul_inside_a_path_or_token_is_refused_before_sending() {
    let mut p = page();
    let mut xs = client(&mut p, |s| s.answer(ok));
    assert_eq!(
        xs.write(TxId::NONE, "/a\0/b", b"v"),
        Err(XsRingError::Errno(Errno::EINVAL))
    );
    assert_eq!(
        xs.watch("/a", "t\0x"),
        Err(XsRingError::Errno(Errno::EINVAL))
    );
    assert_eq!(xs.memory().load(XsWord::ReqProd, Ordering::Relaxed), 0);
    assert!(!xs.is_broken());
}
