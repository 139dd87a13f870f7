//! Taking messages off `rsp[]`: the header validated as soon as its 16 bytes are
//! in, then the payload copied straight to where it belongs (the caller's reply
//! buffer, the watch event queue, or nowhere). The state lives between calls, so a
//! message may arrive in any number of pieces.

use super::events::EventQueue;
use super::page::XsRingMemory;
use super::stream::Consumer;
use super::wire::{Errno, Header, MsgType, HEADER_LEN};
use super::XsRingError;

/// The reply a request waits for.
pub(crate) struct Want<'o> {
    pub(crate) req_id: u32,
    pub(crate) ty: MsgType,
    pub(crate) out: &'o mut [u8],
}

/// What one step of reading achieved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing (more) to read now: wait for the peer.
    Idle,
    /// The wanted reply is in `out[..len]`.
    Reply(usize),
    /// The wanted request was refused.
    Refused(Errno),
    /// The wanted reply did not fit `out`: it needs this many bytes (consumed).
    TooSmall(usize),
    /// Another message was taken: a watch event (queued or dropped), or the late
    /// reply of a request that timed out.
    Other,
}

/// Where the payload of the message being read goes.
#[derive(Clone, Copy, Debug)]
enum Sink {
    Reply,
    /// The errno name (longer names are cut; none is longer than 9 bytes).
    Error([u8; 16]),
    /// The event queue, at this offset.
    Event(usize),
    /// Read and forgotten; `Some(len)`: the wanted reply, too big for `out`.
    Skip(Option<usize>),
}

#[derive(Clone, Copy, Debug)]
struct Body {
    h: Header,
    got: usize,
    sink: Sink,
}

/// The reader's state between calls.
#[derive(Debug)]
pub(crate) struct Reader {
    rsp: Consumer,
    hdr: [u8; HEADER_LEN],
    hdr_got: usize,
    body: Option<Body>,
    /// Replies for request ids in `answered..next` are owed to requests that timed
    /// out: skipped when they come. xenstored answers one connection in order.
    answered: u32,
    /// Whether `rsp_cons` moved since the peer was last kicked.
    pub(crate) moved: bool,
}

impl Reader {
    pub(crate) fn new(rsp: Consumer, next_id: u32) -> Self {
        Reader {
            rsp,
            hdr: [0; HEADER_LEN],
            hdr_got: 0,
            body: None,
            answered: next_id,
            moved: false,
        }
    }

    /// The request a call gave up on: its reply, if it is coming in now, is skipped.
    pub(crate) fn abandon(&mut self) {
        if let Some(b) = &mut self.body {
            if matches!(b.sink, Sink::Reply | Sink::Error(_) | Sink::Skip(Some(_))) {
                b.sink = Sink::Skip(None);
            }
        }
    }

    fn take<M: XsRingMemory>(&mut self, mem: &M, out: &mut [u8]) -> Result<usize, XsRingError> {
        let n = self.rsp.read(mem, out)?;
        self.moved |= n > 0;
        Ok(n)
    }

    /// Reads until one message is complete or the ring is empty. `next_id` is the
    /// id the next request will get (replies below it may be owed).
    pub(crate) fn step<M: XsRingMemory, B: AsMut<[u8]> + AsRef<[u8]>>(
        &mut self,
        mem: &M,
        events: &mut EventQueue<B>,
        mut want: Option<&mut Want<'_>>,
        next_id: u32,
    ) -> Result<Step, XsRingError> {
        let mut body = match self.body {
            Some(b) => b,
            None => {
                let mut hdr = self.hdr;
                let n = self.take(mem, &mut hdr[self.hdr_got..])?;
                self.hdr = hdr;
                self.hdr_got += n;
                if self.hdr_got < HEADER_LEN {
                    return Ok(Step::Idle);
                }
                self.hdr_got = 0;
                let h = Header::parse(&self.hdr).map_err(|_| {
                    XsRingError::PayloadTooLong(u32::from_le_bytes([
                        self.hdr[12],
                        self.hdr[13],
                        self.hdr[14],
                        self.hdr[15],
                    ]))
                })?;
                let sink = self.classify(h, events, want.as_deref(), next_id)?;
                Body { h, got: 0, sink }
            }
        };
        let len = body.h.len as usize;
        while body.got < len {
            let mut scratch = [0u8; 64];
            let rest = len - body.got;
            let dst: &mut [u8] = match &mut body.sink {
                Sink::Reply => match want
                    .as_deref_mut()
                    .and_then(|w| w.out.get_mut(body.got..len))
                {
                    Some(d) => d,
                    None => &mut scratch[..rest.min(64)],
                },
                Sink::Error(name) if body.got < name.len() => &mut name[body.got..len.min(16)],
                Sink::Event(at) => events.slot(*at + body.got, rest),
                _ => &mut scratch[..rest.min(64)],
            };
            let n = self.rsp.read(mem, dst)?;
            self.moved |= n > 0;
            body.got += n;
            if n == 0 {
                self.body = Some(body);
                return Ok(Step::Idle);
            }
        }
        self.body = None;
        Ok(match body.sink {
            Sink::Event(at) => {
                events.commit(at, len);
                Step::Other
            }
            Sink::Skip(None) => Step::Other,
            Sink::Skip(Some(needed)) => {
                self.answered = body.h.req_id.wrapping_add(1);
                Step::TooSmall(needed)
            }
            Sink::Reply => {
                self.answered = body.h.req_id.wrapping_add(1);
                Step::Reply(len)
            }
            Sink::Error(name) => {
                self.answered = body.h.req_id.wrapping_add(1);
                Step::Refused(Errno::from_payload(&name[..len.min(16)]))
            }
        })
    }

    /// Decides where a message goes, from its header alone.
    fn classify<B: AsMut<[u8]> + AsRef<[u8]>>(
        &mut self,
        h: Header,
        events: &mut EventQueue<B>,
        want: Option<&Want<'_>>,
        next_id: u32,
    ) -> Result<Sink, XsRingError> {
        let ty = MsgType::from_u32(h.ty).ok_or(XsRingError::UnknownType(h.ty))?;
        let len = h.len as usize;
        if ty == MsgType::WatchEvent {
            return Ok(match events.reserve(len) {
                Some(at) => Sink::Event(at),
                None => Sink::Skip(None),
            });
        }
        if let Some(w) = want.filter(|w| w.req_id == h.req_id) {
            return if ty == MsgType::Error {
                Ok(Sink::Error([0; 16]))
            } else if ty != w.ty {
                Err(XsRingError::UnexpectedReply {
                    expected: w.req_id,
                    req_id: h.req_id,
                    ty: h.ty,
                })
            } else if len > w.out.len() {
                Ok(Sink::Skip(Some(len)))
            } else {
                Ok(Sink::Reply)
            };
        }
        let pending = want.map_or(next_id, |w| w.req_id);
        let owed = h.req_id.wrapping_sub(self.answered) < pending.wrapping_sub(self.answered);
        if owed {
            // The late reply of a request that gave up; all before it are answered.
            self.answered = h.req_id.wrapping_add(1);
            return Ok(Sink::Skip(None));
        }
        Err(XsRingError::UnexpectedReply {
            expected: pending,
            req_id: h.req_id,
            ty: h.ty,
        })
    }
}
