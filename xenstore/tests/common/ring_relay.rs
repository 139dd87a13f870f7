//! A XenStore ring page served by the project's daemon: two threads play
//! xenstored's end of the page and forward each request over a guest's socket,
//! copying replies and watch events back into `rsp[]`. The guest's end is the
//! `no_std` ring client, exactly as a unikernel would run it. `tests/toolstack.rs`
//! includes this file too, to run netfront's handshake over the ring client.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use xennet_ring::xenstore::server::{ReplyWriter, RequestReader, MESSAGE_MAX};
use xennet_ring::xenstore::{XsEvent, XsPage, XsRingClient};
use xennet_xenstore::wire::{Header, HEADER_LEN};

/// One direction of the event channel: a counter the sender bumps and the
/// receiver watches (latched: a bump before the wait is seen at once).
#[derive(Default)]
pub struct Doorbell(AtomicU32);

impl Doorbell {
    pub fn ring(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    /// Spins (yielding, then napping, so an idle relay costs little CPU) until
    /// the counter passes `*seen`, `stop` is set, or `timeout` passes; false in the
    /// last two cases.
    pub fn wait(&self, seen: &mut u32, stop: &AtomicBool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for spins in 0u32.. {
            let now = self.0.load(Ordering::Acquire);
            if now != *seen {
                *seen = now;
                return true;
            }
            if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                return false;
            }
            if spins < 200 {
                thread::yield_now();
            } else {
                thread::sleep(Duration::from_micros(50));
            }
        }
        false
    }
}

/// The guest's end of the event channel, for the ring client.
pub struct GuestEvent {
    to_server: Arc<Doorbell>,
    to_guest: Arc<Doorbell>,
    seen: u32,
    never: AtomicBool,
    pub timeout: Duration,
}

impl XsEvent for GuestEvent {
    fn notify(&mut self) {
        self.to_server.ring();
    }
    fn wait(&mut self) -> bool {
        self.to_guest
            .wait(&mut self.seen, &self.never, self.timeout)
    }
    fn wait_timeout(&mut self, timeout: Duration) -> bool {
        self.to_guest.wait(&mut self.seen, &self.never, timeout)
    }
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The ring client of the tests: events kept in 4 KiB.
pub type RingClient = XsRingClient<XsPage, GuestEvent, Box<[u8]>>;

/// A ring page, its server threads, and the guest connection they forward to.
pub struct RingRelay {
    /// The shared page; freed only after the threads are joined (in `drop`).
    page: Box<Page>,
    to_server: Arc<Doorbell>,
    to_guest: Arc<Doorbell>,
    stop: Arc<AtomicBool>,
    socket: UnixStream,
    threads: Vec<JoinHandle<()>>,
}

impl RingRelay {
    /// Serves a fresh page from the daemon socket `socket` (a guest's, so the
    /// daemon applies that domain's permissions).
    pub fn start(socket: UnixStream) -> Self {
        let mut relay = RingRelay {
            page: Box::new(Page([0; 4096])),
            to_server: Arc::default(),
            to_guest: Arc::default(),
            stop: Arc::default(),
            socket,
            threads: Vec::new(),
        };
        let requests = RequestReader::attach(relay.view());
        let replies = ReplyWriter::attach(relay.view()).unwrap();
        let (up, down) = (
            relay.socket.try_clone().unwrap(),
            relay.socket.try_clone().unwrap(),
        );
        let t = relay.threads_ctx();
        relay
            .threads
            .push(thread::spawn(move || forward_requests(requests, up, t)));
        let t = relay.threads_ctx();
        relay
            .threads
            .push(thread::spawn(move || forward_replies(replies, down, t)));
        relay
    }

    fn view(&mut self) -> XsPage {
        // SAFETY: the page is boxed (it never moves) and outlives every view: the
        // threads holding views are joined in `drop` before the box is freed. It is
        // reached only through views (the client's and the two server halves').
        unsafe { XsPage::new(NonNull::new(self.page.0.as_mut_ptr()).unwrap()) }.unwrap()
    }

    fn threads_ctx(&self) -> Ctx {
        Ctx {
            to_server: self.to_server.clone(),
            to_guest: self.to_guest.clone(),
            stop: self.stop.clone(),
        }
    }

    /// The guest's ring client on this page; `wait` gives up after `timeout`.
    pub fn client(&mut self, timeout: Duration) -> RingClient {
        let event = GuestEvent {
            to_server: self.to_server.clone(),
            to_guest: self.to_guest.clone(),
            seen: 0,
            never: AtomicBool::new(false),
            timeout,
        };
        XsRingClient::with_memory(self.view(), event, vec![0; 4096].into_boxed_slice()).unwrap()
    }
}

impl Drop for RingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Ctx {
    to_server: Arc<Doorbell>,
    to_guest: Arc<Doorbell>,
    stop: Arc<AtomicBool>,
}

const IDLE: Duration = Duration::from_millis(50);

/// `req[]` -> the socket, one whole message at a time.
fn forward_requests(mut ring: RequestReader<XsPage>, mut sock: UnixStream, t: Ctx) {
    let mut msg = Box::new([0u8; MESSAGE_MAX]);
    let mut seen = 0;
    while !t.stop.load(Ordering::Relaxed) {
        let got = ring.poll(&mut msg);
        if ring.take_moved() {
            t.to_guest.ring();
        }
        match got {
            Ok(Some(n)) => {
                if sock.write_all(&msg[..n]).is_err() {
                    return;
                }
            }
            Ok(None) => {
                t.to_server.wait(&mut seen, &t.stop, IDLE);
            }
            Err(_) => return, // what xenstored does too: stop serving the ring
        }
    }
}

/// The socket -> `rsp[]`, waiting for the guest to make room.
fn forward_replies(mut ring: ReplyWriter<XsPage>, mut sock: UnixStream, t: Ctx) {
    let mut seen = 0;
    loop {
        let mut h = [0u8; HEADER_LEN];
        if sock.read_exact(&mut h).is_err() {
            return;
        }
        let Ok(hdr) = Header::parse(&h) else { return };
        let mut msg = h.to_vec();
        msg.resize(HEADER_LEN + hdr.len as usize, 0);
        if sock.read_exact(&mut msg[HEADER_LEN..]).is_err() {
            return;
        }
        let mut rest = &msg[..];
        while !rest.is_empty() {
            match ring.write(rest) {
                Ok(0) => {
                    if t.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    t.to_server.wait(&mut seen, &t.stop, IDLE);
                }
                Ok(n) => {
                    rest = &rest[n..];
                    t.to_guest.ring();
                }
                Err(_) => return,
            }
        }
    }
}
