//! xenstored's end of the ring page, in two halves that may run on two threads:
//! [`RequestReader`] takes whole requests off `req[]`, [`ReplyWriter`] puts replies
//! and watch events into `rsp[]`. The test adapter that serves a ring page from the
//! project's daemon and the loom models use them; the same index code as the
//! client's runs underneath.
//!
//! Waiting is the caller's: after a call that moved an index, kick the guest; when
//! nothing moved, wait for its kick.

use super::page::{Dir, XsRingMemory};
use super::stream::{Consumer, Producer};
use super::wire::{Header, HEADER_LEN, PAYLOAD_MAX};
use super::XsRingError;

/// The largest message: a header and `XENSTORE_PAYLOAD_MAX` bytes.
pub const MESSAGE_MAX: usize = HEADER_LEN + PAYLOAD_MAX;

/// Takes requests off `req[]`.
#[derive(Debug)]
pub struct RequestReader<M> {
    mem: M,
    req: Consumer,
    /// Bytes of the current message in the caller's buffer.
    got: usize,
    moved: bool,
}

impl<M: XsRingMemory> RequestReader<M> {
    /// xenstored's consumer of `req[]`, from the indices on the page.
    pub fn attach(mem: M) -> Self {
        let req = Consumer::attach(&mem, Dir::Req);
        RequestReader {
            mem,
            req,
            got: 0,
            moved: false,
        }
    }

    /// Reads what has arrived into `msg` (the same buffer on every call until a
    /// message is complete); the message's length once it is, `None` before. The
    /// header is validated as soon as it is in (a payload past the maximum is an
    /// error: the stream cannot be followed further).
    pub fn poll(&mut self, msg: &mut [u8; MESSAGE_MAX]) -> Result<Option<usize>, XsRingError> {
        loop {
            let end = if self.got < HEADER_LEN {
                HEADER_LEN
            } else {
                let total = message_len(msg)?;
                if self.got == total {
                    self.got = 0;
                    return Ok(Some(total));
                }
                if self.got > total {
                    // Only if the caller changed the buffer between calls.
                    self.got = 0;
                    return Err(XsRingError::Malformed("request buffer changed mid-message"));
                }
                total
            };
            let n = self.req.read(&self.mem, &mut msg[self.got..end])?;
            self.moved |= n > 0;
            self.got += n;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    /// Whether `req_cons` moved since the last call (then kick the guest).
    pub fn take_moved(&mut self) -> bool {
        core::mem::take(&mut self.moved)
    }
}

/// Puts replies and watch events into `rsp[]`.
#[derive(Debug)]
pub struct ReplyWriter<M> {
    mem: M,
    rsp: Producer,
}

impl<M: XsRingMemory> ReplyWriter<M> {
    /// xenstored's producer of `rsp[]`, from the indices on the page.
    pub fn attach(mem: M) -> Result<Self, XsRingError> {
        let rsp = Producer::attach(&mem, Dir::Rsp)?;
        Ok(ReplyWriter { mem, rsp })
    }

    /// Copies as much of `data` into `rsp[]` as there is room for and publishes
    /// it; returns how many bytes (0: full, wait for the guest to read).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, XsRingError> {
        self.rsp.write(&self.mem, data)
    }
}

/// The whole length of the message whose header starts `msg`.
fn message_len(msg: &[u8; MESSAGE_MAX]) -> Result<usize, XsRingError> {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&msg[..HEADER_LEN]);
    let len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    let h = Header::parse(&h).map_err(|_| XsRingError::PayloadTooLong(len))?;
    Ok(HEADER_LEN + h.len as usize)
}
