//! Watch events that arrived while the client waited for a reply, kept in a buffer
//! the caller provides until [`super::XsRingClient::next_watch_event`] takes them.
//!
//! Records are `len: u16le, payload[len]`, packed from the buffer's start; taking
//! the oldest moves the rest down. A few events of a few dozen bytes each is the
//! usual load, so the copy is cheaper than the bookkeeping a wrap would need.

use super::store::WatchEventRef;
use super::wire;
use super::XsRingError;

const LEN: usize = 2;

/// A FIFO of watch event payloads in `B`.
#[derive(Debug)]
pub(crate) struct EventQueue<B> {
    buf: B,
    /// Bytes of complete records.
    used: usize,
    /// Events dropped because the buffer was full.
    dropped: u64,
    /// Events dropped because their payload was not `path\0token\0`.
    malformed: u64,
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> EventQueue<B> {
    pub(crate) fn new(buf: B) -> Self {
        EventQueue {
            buf,
            used: 0,
            dropped: 0,
            malformed: 0,
        }
    }

    /// Room for a payload of `len` bytes after the complete records: where its
    /// bytes go, or `None` (the event is dropped and counted).
    pub(crate) fn reserve(&mut self, len: usize) -> Option<usize> {
        let at = self.used + LEN;
        if len > u16::MAX as usize || at + len > self.buf.as_ref().len() {
            self.dropped += 1;
            return None;
        }
        Some(at)
    }

    /// The reserved bytes `at..at + len` (as given by `reserve`).
    pub(crate) fn slot(&mut self, at: usize, len: usize) -> &mut [u8] {
        let buf = self.buf.as_mut();
        let end = (at + len).min(buf.len());
        &mut buf[at.min(end)..end]
    }

    /// The payload reserved at `at` is complete: keep it if it is a valid event.
    pub(crate) fn commit(&mut self, at: usize, len: usize) {
        if at != self.used + LEN || parse(self.slot(at, len)).is_none() {
            self.malformed += 1;
            return;
        }
        let buf = self.buf.as_mut();
        buf[self.used..at].copy_from_slice(&(len as u16).to_le_bytes());
        self.used = at + len;
    }

    /// Whether no event is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Moves the oldest event into `out` and returns it; `None` if none is queued.
    pub(crate) fn pop<'o>(
        &mut self,
        out: &'o mut [u8],
    ) -> Result<Option<WatchEventRef<'o>>, XsRingError> {
        if self.used == 0 {
            return Ok(None);
        }
        let buf = self.buf.as_mut();
        let len = usize::from(u16::from_le_bytes([buf[0], buf[1]]));
        if len > out.len() {
            return Err(XsRingError::BufferTooSmall { needed: len });
        }
        out[..len].copy_from_slice(&buf[LEN..LEN + len]);
        buf.copy_within(LEN + len..self.used, 0);
        self.used -= LEN + len;
        // Checked when it was queued.
        Ok(parse(&out[..len]))
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    pub(crate) fn malformed(&self) -> u64 {
        self.malformed
    }
}

/// A watch event payload: the changed path and the token, NUL-terminated strings
/// (more strings may follow, as the socket client allows), both UTF-8.
pub(crate) fn parse(p: &[u8]) -> Option<WatchEventRef<'_>> {
    let mut s = wire::strings(p);
    let path = core::str::from_utf8(s.next()?).ok()?;
    let token = core::str::from_utf8(s.next()?).ok()?;
    Some(WatchEventRef { path, token })
}
