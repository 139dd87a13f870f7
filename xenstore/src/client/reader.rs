//! The reader thread: replies routed to their callers, watch events queued, and the
//! reconnect to a restarted daemon.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::wire::{self, Errno, Header, MsgType, HEADER_LEN};

use super::*;

/// Why a connection's read loop ended.
enum Ended {
    /// The connection failed or the daemon closed it.
    Lost,
    /// The client was dropped.
    Owner,
}

/// The reader thread: reads replies and events; reconnects when the daemon
/// goes away, if the client may; closes the client when it gives up.
pub(super) fn run_reader(mut stream: Stream, weak: Weak<Inner>, events: mpsc::Sender<WatchEvent>) {
    let mut epoch = 0;
    loop {
        if let Ended::Owner = read_loop(&mut stream, &weak, &events, epoch) {
            return;
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        match inner.reconnect_now() {
            Some((s, e)) => {
                stream = s;
                epoch = e;
            }
            None => {
                inner.close();
                return;
            }
        }
    }
}

impl Inner {
    /// Gives up: every waiting request fails with `Closed`.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut link = lock(&self.link);
        if let Some(s) = link.stream.take() {
            s.shutdown();
        }
        for (_, p) in lock(&self.pending).drain() {
            let _ = p.reply.send((Err(XsError::Closed), link.epoch));
        }
        self.link_changed.notify_all();
    }

    /// Reconnects to the socket within the window; the new stream to read and
    /// its epoch, or `None` to give up (no reconnecting, the socket is gone,
    /// the window passed, or the client was dropped meanwhile).
    fn reconnect_now(self: &Arc<Self>) -> Option<(Stream, u64)> {
        let (path, window) = self.reconnect.as_ref()?;
        lock(&self.link).stream = None;
        let deadline = Instant::now() + *window;
        loop {
            match UnixStream::connect(path) {
                Ok(s) => {
                    if let Some(r) = self.resume(Stream::Unix(s)) {
                        return Some(r);
                    }
                }
                // Released, or the daemon exited in order: it is not coming back.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
                // A crashed daemon's socket (refused) until its successor replaces it.
                Err(_) => {}
            }
            // Only this thread still holds the client: nobody is waiting.
            if Instant::now() >= deadline || Arc::strong_count(self) == 1 {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// On a new connection: registers the watches again and sends again the
    /// requests still waiting; `None` if the connection fails meanwhile.
    fn resume(&self, s: Stream) -> Option<(Stream, u64)> {
        let reader = s.try_clone().ok()?;
        let mut w = s;
        let mut link = lock(&self.link);
        for (path, token) in lock(&self.watches).iter() {
            let id = self.next_req.fetch_add(1, Ordering::Relaxed);
            let msg = wire::encode(MsgType::Watch, id, 0, &wire::join_strings(&[path, token]));
            w.write_all(&msg).ok()?;
        }
        let epoch = link.epoch + 1;
        let mut pending = lock(&self.pending);
        pending.retain(|_, p| {
            let settled = if p.tx_id != 0 {
                // The daemon's transactions died with it.
                Some(Err(XsError::Errno(Errno::EAGAIN)))
            } else if matches!(p.ty, MsgType::Watch | MsgType::Unwatch) {
                // The watch list registered above already says what it asked.
                Some(Ok(b"OK\0".to_vec()))
            } else {
                None
            };
            match settled {
                Some(r) => {
                    let _ = p.reply.send((r, epoch));
                    false
                }
                None => true,
            }
        });
        for p in pending.values() {
            w.write_all(&p.msg).ok()?;
        }
        drop(pending);
        link.stream = Some(w);
        link.epoch = epoch;
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        self.link_changed.notify_all();
        Some((reader, epoch))
    }
}

fn read_loop(
    r: &mut Stream,
    inner: &Weak<Inner>,
    events: &mpsc::Sender<WatchEvent>,
    epoch: u64,
) -> Ended {
    let mut hdr = [0u8; HEADER_LEN];
    loop {
        if r.read_exact(&mut hdr).is_err() {
            return Ended::Lost;
        }
        let Ok(h) = Header::parse(&hdr) else {
            // An oversized reply: the stream cannot be resynchronised.
            return Ended::Lost;
        };
        let mut body = vec![0u8; h.len as usize];
        if r.read_exact(&mut body).is_err() {
            return Ended::Lost;
        }
        if h.ty == MsgType::WatchEvent as u32 {
            let parts = wire::split_strings(&body);
            if let [path, token, ..] = parts[..] {
                let ev = WatchEvent {
                    path: String::from_utf8_lossy(path).into_owned(),
                    token: String::from_utf8_lossy(token).into_owned(),
                };
                if events.send(ev).is_err() {
                    return Ended::Owner;
                }
            }
            continue;
        }
        let Some(inner) = inner.upgrade() else {
            return Ended::Owner;
        };
        let waiter = lock(&inner.pending).remove(&h.req_id);
        if let Some(w) = waiter {
            let reply = if h.ty == MsgType::Error as u32 {
                Err(XsError::Errno(Errno::from_payload(&body)))
            } else {
                Ok(body)
            };
            let _ = w.reply.send((reply, epoch));
        }
    }
}
