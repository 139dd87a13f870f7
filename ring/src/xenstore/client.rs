//! The guest's end of the XenStore ring page: requests into `req[]`, replies and
//! watch events out of `rsp[]`, one request at a time.

use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use core::time::Duration;

use super::events::EventQueue;
use super::page::{Dir, XsPage, XsRingMemory, XsWord};
use super::reader::{Reader, Step, Want};
use super::store::{TxId, WatchEventRef, XenStore};
use super::stream::Producer;
use super::wire::{Errno, Header, MsgType, HEADER_LEN, PAYLOAD_MAX};
use super::XsRingError;

/// How many other messages (watch events, late replies) may come while one reply
/// is awaited before the client calls the peer a flood and gives up. Our daemon
/// queues at most 1024 messages per connection; this leaves room for any honest one.
pub const MAX_MESSAGES_PER_REPLY: u32 = 1 << 16;

/// The XenStore event channel (`start_info.store_evtchn`) as the client uses it.
pub trait XsEvent {
    /// Kick xenstored (`EVTCHNOP_send`).
    fn notify(&mut self);

    /// Block until xenstored has signalled since the last return (the pending bit
    /// is latched: a kick that came before the call returns at once), or a deadline
    /// passes. `false` gives up: the client stops waiting and reports
    /// [`XsRingError::Timeout`]. This is the only bound on how long a call takes, so
    /// a client facing a peer that may never answer needs a deadline here.
    fn wait(&mut self) -> bool;

    /// Like [`XsEvent::wait`], giving up once `timeout` passes without a signal
    /// (waiting for a watch event). The default ignores `timeout` and waits as
    /// `wait` does; a hook with a clock should honour it.
    fn wait_timeout(&mut self, timeout: Duration) -> bool {
        let _ = timeout;
        self.wait()
    }
}

impl<T: XsEvent + ?Sized> XsEvent for &mut T {
    fn notify(&mut self) {
        (**self).notify()
    }
    fn wait(&mut self) -> bool {
        (**self).wait()
    }
    fn wait_timeout(&mut self, timeout: Duration) -> bool {
        (**self).wait_timeout(timeout)
    }
}

/// A XenStore client over the shared ring page, without std or alloc: replies go
/// to the caller's buffers, watch events to the buffer `B` given at construction
/// (dropped and counted when it is full, as the daemon does).
///
/// Everything xenstored writes is read once and validated: its indices (at most a
/// ring ahead, never backwards), each header (known type, length within
/// `XENSTORE_PAYLOAD_MAX`, the `req_id` and type of the request waiting), and the
/// payloads the client interprets. A violation is an error value and ends the
/// connection ([`XsRingError::Broken`] from then on); nothing panics, reads or
/// writes outside the page, or loops without calling the wait hook.
///
/// ```
/// use core::ptr::NonNull;
/// use xennet_ring::xenstore::{TxId, XsEvent, XsRingClient, XsRingError};
///
/// struct NoServer(u32);
/// impl XsEvent for NoServer {
///     fn notify(&mut self) {}
///     fn wait(&mut self) -> bool {
///         self.0 += 1;
///         self.0 < 3 // give up after a few rounds
///     }
/// }
///
/// #[repr(C, align(4096))]
/// struct Page([u8; 4096]);
/// let mut page = Box::new(Page([0; 4096]));
/// let mem = NonNull::new(page.0.as_mut_ptr()).unwrap();
/// // SAFETY: the page outlives the client and is only used through it.
/// let mut xs = unsafe { XsRingClient::new(mem, NoServer(0), [0u8; 1024]) }.unwrap();
/// let mut value = [0u8; 64];
/// // Nobody serves this page: the request is sent, the reply never comes.
/// assert_eq!(xs.read(TxId::NONE, "name", &mut value), Err(XsRingError::Timeout));
/// ```
pub struct XsRingClient<M, E, B> {
    mem: M,
    event: E,
    req: Producer,
    reader: Reader,
    events: EventQueue<B>,
    next_id: u32,
    broken: bool,
}

impl<E: XsEvent, B: AsMut<[u8]> + AsRef<[u8]>> XsRingClient<XsPage, E, B> {
    /// A client over the ring page at `page` (the frame `start_info.store_mfn`
    /// names), kicking and waiting through `event`, keeping watch events in `events`.
    ///
    /// # Safety
    /// As [`XsPage::new`]: the page stays mapped for the client's life and is
    /// reached only through this client and the peer.
    pub unsafe fn new(page: NonNull<u8>, event: E, events: B) -> Result<Self, XsRingError> {
        // SAFETY: forwarded to our caller.
        let mem = unsafe { XsPage::new(page)? };
        Self::with_memory(mem, event, events)
    }
}

impl<M: XsRingMemory, E: XsEvent, B: AsMut<[u8]> + AsRef<[u8]>> XsRingClient<M, E, B> {
    /// A client over any [`XsRingMemory`] (loom models use this). Takes over the
    /// indices on the page, refusing impossible ones; unread bytes in `rsp[]` are
    /// skipped, as Linux does when it attaches (they answer no request of ours).
    pub fn with_memory(mem: M, event: E, events: B) -> Result<Self, XsRingError> {
        let req = Producer::attach(&mem, Dir::Req)?;
        let rsp = super::stream::Consumer::attach_skipping(&mem, Dir::Rsp)?;
        let next_id = 1;
        Ok(XsRingClient {
            mem,
            event,
            req,
            reader: Reader::new(rsp, next_id),
            events: EventQueue::new(events),
            next_id,
            broken: false,
        })
    }

    /// Whether a fault ended the connection.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Watch events dropped because the event buffer was full.
    pub fn events_dropped(&self) -> u64 {
        self.events.dropped()
    }

    /// Watch events dropped because their payload was not `path\0token\0`.
    pub fn events_malformed(&self) -> u64 {
        self.events.malformed()
    }

    /// `server_features` of the page (`XENSTORE_SERVER_FEATURE_*`), as xenstored
    /// wrote it: informational only.
    pub fn server_features(&self) -> u32 {
        self.mem.load(XsWord::ServerFeatures, Ordering::Relaxed)
    }

    /// `error` of the page (`XENSTORE_ERROR_*`): why xenstored stopped serving the
    /// ring, if it supports reporting it.
    pub fn server_error(&self) -> u32 {
        self.mem.load(XsWord::Error, Ordering::Relaxed)
    }

    /// The event hook (to inspect or adjust it between calls).
    pub fn event(&mut self) -> &mut E {
        &mut self.event
    }

    /// The ring memory (for inspection in tests).
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Reads `path` into `out`; returns the value's length.
    pub fn read(&mut self, tx: TxId, path: &str, out: &mut [u8]) -> Result<usize, XsRingError> {
        self.request(MsgType::Read, tx, &[text(path)?, b"\0"], out)
    }

    /// Writes `value` to `path`, creating the node and missing ancestors.
    pub fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), XsRingError> {
        self.ack(MsgType::Write, tx, &[text(path)?, b"\0", value])
    }

    /// Creates `path` with an empty value unless it exists.
    pub fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), XsRingError> {
        self.ack(MsgType::Mkdir, tx, &[text(path)?, b"\0"])
    }

    /// Removes `path` and everything below it.
    pub fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsRingError> {
        self.ack(MsgType::Rm, tx, &[text(path)?, b"\0"])
    }

    /// The names of `path`'s children into `out`, each followed by a NUL (iterate
    /// with [`super::wire::strings`]); returns the bytes used.
    pub fn directory(
        &mut self,
        tx: TxId,
        path: &str,
        out: &mut [u8],
    ) -> Result<usize, XsRingError> {
        self.request(MsgType::Directory, tx, &[text(path)?, b"\0"], out)
    }

    /// Registers a watch on `path` with `token`; it fires once at once, then on
    /// every change at or below `path`.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), XsRingError> {
        let p = [text(path)?, b"\0", text(token)?, b"\0"];
        self.ack(MsgType::Watch, TxId::NONE, &p)
    }

    /// Removes the watch registered with `path` and `token`.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsRingError> {
        let p = [text(path)?, b"\0", text(token)?, b"\0"];
        self.ack(MsgType::Unwatch, TxId::NONE, &p)
    }

    /// Starts a transaction.
    pub fn transaction_start(&mut self) -> Result<TxId, XsRingError> {
        let mut out = [0u8; 16];
        let n = self.request(MsgType::TransactionStart, TxId::NONE, &[b"\0"], &mut out)?;
        parse_tx_id(&out[..n]).ok_or_else(|| self.fault(XsRingError::Malformed("transaction id")))
    }

    /// Commits (`commit`) or aborts a transaction.
    pub fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XsRingError> {
        let flag: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.ack(MsgType::TransactionEnd, tx, &[flag])
    }

    /// The oldest watch event not yet taken, copied into `out`, reading what
    /// xenstored has sent so far; `None` if nothing has come. Never waits.
    pub fn next_watch_event<'o>(
        &mut self,
        out: &'o mut [u8],
    ) -> Result<Option<WatchEventRef<'o>>, XsRingError> {
        if self.broken {
            return Err(XsRingError::Broken);
        }
        if self.events.is_empty() {
            self.drain()?;
        }
        self.events.pop(out)
    }

    /// Like [`Self::next_watch_event`], waiting until one comes; `None` once a
    /// wait of `timeout` ([`XsEvent::wait_timeout`]) passes with no signal.
    pub fn wait_watch_event<'o>(
        &mut self,
        timeout: Duration,
        out: &'o mut [u8],
    ) -> Result<Option<WatchEventRef<'o>>, XsRingError> {
        if self.broken {
            return Err(XsRingError::Broken);
        }
        while self.events.is_empty() {
            self.drain()?;
            if self.events.is_empty() && !self.event.wait_timeout(timeout) {
                return Ok(None);
            }
        }
        self.events.pop(out)
    }

    /// Marks the connection broken by `e` (if it is a peer fault) and returns it.
    fn fault(&mut self, e: XsRingError) -> XsRingError {
        if e.is_protocol_violation() {
            self.broken = true;
        }
        e
    }

    /// Kicks xenstored if we freed room in `rsp[]` since the last kick.
    fn kick_if_moved(&mut self) {
        if core::mem::take(&mut self.reader.moved) {
            self.event.notify();
        }
    }

    /// Reads what has arrived (watch events, late replies) without waiting.
    fn drain(&mut self) -> Result<(), XsRingError> {
        if self.broken {
            return Err(XsRingError::Broken);
        }
        let mut others = 0;
        loop {
            let step = self
                .reader
                .step(&self.mem, &mut self.events, None, self.next_id)
                .map_err(|e| self.fault(e))?;
            if step == Step::Idle {
                break;
            }
            others += 1;
            if others > MAX_MESSAGES_PER_REPLY {
                self.kick_if_moved();
                return Err(self.fault(XsRingError::Flooded));
            }
        }
        self.kick_if_moved();
        Ok(())
    }

    /// A request whose reply carries nothing but "OK".
    fn ack(&mut self, ty: MsgType, tx: TxId, parts: &[&[u8]]) -> Result<(), XsRingError> {
        let mut ok = [0u8; 16];
        self.request(ty, tx, parts, &mut ok).map(drop)
    }

    /// Sends one request and waits for its reply, which goes into `out`.
    fn request(
        &mut self,
        ty: MsgType,
        tx: TxId,
        parts: &[&[u8]],
        out: &mut [u8],
    ) -> Result<usize, XsRingError> {
        if self.broken {
            return Err(XsRingError::Broken);
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > PAYLOAD_MAX {
            return Err(XsRingError::Errno(Errno::E2BIG));
        }
        let req_id = self.next_id;
        let hdr = Header {
            ty: ty as u32,
            req_id,
            tx_id: tx.0,
            len: len as u32,
        }
        .to_bytes();
        self.send(&hdr, parts).map_err(|e| self.fault(e))?;
        self.next_id = req_id.wrapping_add(1);
        let mut want = Want { req_id, ty, out };
        let r = self.receive(&mut want);
        if r == Err(XsRingError::Timeout) {
            self.reader.abandon();
        }
        r.map_err(|e| self.fault(e))
    }

    /// Writes the header and payload into `req[]`, waiting for room. Meanwhile
    /// whatever xenstored sends is read, so it is never stuck on a full `rsp[]`.
    fn send(&mut self, hdr: &[u8; HEADER_LEN], parts: &[&[u8]]) -> Result<(), XsRingError> {
        let mut sent_any = false;
        for part in core::iter::once(&&hdr[..]).chain(parts) {
            let mut rest: &[u8] = part;
            while !rest.is_empty() {
                let n = self.req.write(&self.mem, rest)?;
                if n > 0 {
                    sent_any = true;
                    rest = &rest[n..];
                    continue;
                }
                self.event.notify();
                self.drain()?;
                if !self.event.wait() {
                    if sent_any {
                        // Half a message is in the ring: the stream is out of step.
                        self.broken = true;
                    }
                    return Err(XsRingError::Timeout);
                }
            }
        }
        self.event.notify();
        Ok(())
    }

    /// Reads until the reply of `want` is complete.
    fn receive(&mut self, want: &mut Want<'_>) -> Result<usize, XsRingError> {
        let mut others = 0;
        loop {
            let step = self
                .reader
                .step(&self.mem, &mut self.events, Some(want), self.next_id)?;
            match step {
                Step::Idle => {
                    self.kick_if_moved();
                    if !self.event.wait() {
                        return Err(XsRingError::Timeout);
                    }
                }
                Step::Other => {
                    others += 1;
                    if others > MAX_MESSAGES_PER_REPLY {
                        self.kick_if_moved();
                        return Err(XsRingError::Flooded);
                    }
                }
                Step::Reply(n) => {
                    self.kick_if_moved();
                    return Ok(n);
                }
                Step::Refused(e) => {
                    self.kick_if_moved();
                    return Err(XsRingError::Errno(e));
                }
                Step::TooSmall(needed) => {
                    self.kick_if_moved();
                    return Err(XsRingError::BufferTooSmall { needed });
                }
            }
        }
    }
}

/// A path or token as it goes on the wire: a NUL inside would end it early and
/// turn the rest into another argument, so it is refused (EINVAL) before sending.
fn text(s: &str) -> Result<&[u8], XsRingError> {
    if s.as_bytes().contains(&0) {
        return Err(XsRingError::Errno(Errno::EINVAL));
    }
    Ok(s.as_bytes())
}

/// A TRANSACTION_START reply: the id in decimal, NUL-terminated; 0 is no id.
fn parse_tx_id(p: &[u8]) -> Option<TxId> {
    let digits = p.strip_suffix(b"\0").unwrap_or(p);
    let s = core::str::from_utf8(digits).ok()?;
    match s.parse::<u32>() {
        Ok(0) | Err(_) => None,
        Ok(id) => Some(TxId(id)),
    }
}

impl<M: XsRingMemory, E: XsEvent, B: AsMut<[u8]> + AsRef<[u8]>> XenStore for XsRingClient<M, E, B> {
    type Error = XsRingError;

    fn read(&mut self, tx: TxId, path: &str, out: &mut [u8]) -> Result<usize, XsRingError> {
        XsRingClient::read(self, tx, path, out)
    }
    fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), XsRingError> {
        XsRingClient::write(self, tx, path, value)
    }
    fn directory(&mut self, tx: TxId, path: &str, out: &mut [u8]) -> Result<usize, XsRingError> {
        XsRingClient::directory(self, tx, path, out)
    }
    fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsRingError> {
        XsRingClient::rm(self, tx, path)
    }
    fn watch(&mut self, path: &str, token: &str) -> Result<(), XsRingError> {
        XsRingClient::watch(self, path, token)
    }
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsRingError> {
        XsRingClient::unwatch(self, path, token)
    }
    fn transaction_start(&mut self) -> Result<TxId, XsRingError> {
        XsRingClient::transaction_start(self)
    }
    fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XsRingError> {
        XsRingClient::transaction_end(self, tx, commit)
    }
    fn next_watch_event<'o>(
        &mut self,
        out: &'o mut [u8],
    ) -> Result<Option<WatchEventRef<'o>>, XsRingError> {
        XsRingClient::next_watch_event(self, out)
    }
    fn wait_watch_event<'o>(
        &mut self,
        timeout: Duration,
        out: &'o mut [u8],
    ) -> Result<Option<WatchEventRef<'o>>, XsRingError> {
        XsRingClient::wait_watch_event(self, timeout, out)
    }
}
