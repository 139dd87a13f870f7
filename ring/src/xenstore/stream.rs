//! One end of one byte ring of the page: the index protocol, written once for the
//! guest and for xenstored.
//!
//! Each end keeps its own index privately and never reads it back from the page
//! (the peer could have scribbled on it); the peer's index is loaded once per step,
//! validated against the private one, and only then used.
//!
//! Ordering: the producer copies bytes in, then publishes `prod` with a release
//! store; the consumer loads `prod` with acquire, copies bytes out, then publishes
//! `cons` with a release store, which the producer loads with acquire before it
//! reuses the space. Notifications are the caller's: after every step that moved an
//! index, kick the peer (the event channel is latched, so a kick is never lost).

use core::sync::atomic::Ordering;

use super::page::{Dir, XsRingMemory};
use super::XsRingError;

/// The producing end of `dir`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Producer {
    dir: Dir,
    /// Our producer index: what we wrote.
    prod: u32,
    /// The peer's consumer index as last validated.
    cons: u32,
}

impl Producer {
    /// Takes over the indices found on the page (validated once).
    pub(crate) fn attach<M: XsRingMemory>(mem: &M, dir: Dir) -> Result<Self, XsRingError> {
        let prod = mem.load(dir.prod(), Ordering::Relaxed);
        let cons = mem.load(dir.cons(), Ordering::Acquire);
        if prod.wrapping_sub(cons) > mem.ring_len() {
            return Err(XsRingError::IndexOverrun { prod, cons });
        }
        Ok(Producer { dir, prod, cons })
    }

    /// Loads and validates the peer's consumer index: it may only move forwards, and
    /// not past what we produced. Returns the free bytes.
    fn refresh<M: XsRingMemory>(&mut self, mem: &M) -> Result<u32, XsRingError> {
        let cons = mem.load(self.dir.cons(), Ordering::Acquire);
        if cons.wrapping_sub(self.cons) > self.prod.wrapping_sub(self.cons) {
            return Err(XsRingError::IndexOverrun {
                prod: self.prod,
                cons,
            });
        }
        self.cons = cons;
        Ok(mem.ring_len() - self.prod.wrapping_sub(cons))
    }

    /// Copies as much of `data` as there is room for and publishes it; returns how
    /// many bytes went in (0: the ring is full).
    pub(crate) fn write<M: XsRingMemory>(
        &mut self,
        mem: &M,
        data: &[u8],
    ) -> Result<usize, XsRingError> {
        let mut done = 0;
        // At most two copies: up to the ring's end, then from its start.
        while done < data.len() {
            let free = self.refresh(mem)?;
            let len = mem.ring_len();
            let off = self.prod & (len - 1);
            let n = (free.min(len - off) as usize).min(data.len() - done);
            if n == 0 {
                break;
            }
            mem.write(self.dir, off, &data[done..done + n]);
            done += n;
            self.prod = self.prod.wrapping_add(n as u32);
            mem.store(self.dir.prod(), self.prod, Ordering::Release);
        }
        Ok(done)
    }
}

/// The consuming end of `dir`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Consumer {
    dir: Dir,
    /// Our consumer index: what we took.
    cons: u32,
    /// The peer's producer index as last validated.
    prod: u32,
}

impl Consumer {
    /// Takes over the consumer index found on the page; the peer's producer index is
    /// validated at the first read.
    pub(crate) fn attach<M: XsRingMemory>(mem: &M, dir: Dir) -> Self {
        let cons = mem.load(dir.cons(), Ordering::Relaxed);
        Consumer {
            dir,
            cons,
            prod: cons,
        }
    }

    /// Takes over the page skipping whatever is unread: bytes a previous owner of
    /// the page left (a kernel before a kexec or resume), which answer no request of
    /// ours. The producer index must still be at most a ring ahead.
    pub(crate) fn attach_skipping<M: XsRingMemory>(mem: &M, dir: Dir) -> Result<Self, XsRingError> {
        let mut c = Self::attach(mem, dir);
        let avail = c.refresh(mem)?;
        if avail > 0 {
            c.cons = c.prod;
            mem.store(dir.cons(), c.cons, Ordering::Release);
        }
        Ok(c)
    }

    /// Loads and validates the peer's producer index: at most a ring ahead of us, and
    /// never behind what it published before. Returns the bytes available.
    fn refresh<M: XsRingMemory>(&mut self, mem: &M) -> Result<u32, XsRingError> {
        let prod = mem.load(self.dir.prod(), Ordering::Acquire);
        let avail = prod.wrapping_sub(self.cons);
        if avail > mem.ring_len() || avail < self.prod.wrapping_sub(self.cons) {
            return Err(XsRingError::IndexOverrun {
                prod,
                cons: self.cons,
            });
        }
        self.prod = prod;
        Ok(avail)
    }

    /// Copies up to `out.len()` available bytes out and publishes the space; returns
    /// how many (0: nothing available).
    pub(crate) fn read<M: XsRingMemory>(
        &mut self,
        mem: &M,
        out: &mut [u8],
    ) -> Result<usize, XsRingError> {
        let mut done = 0;
        while done < out.len() {
            let avail = self.refresh(mem)?;
            let len = mem.ring_len();
            let off = self.cons & (len - 1);
            let n = (avail.min(len - off) as usize).min(out.len() - done);
            if n == 0 {
                break;
            }
            mem.read(self.dir, off, &mut out[done..done + n]);
            done += n;
            self.cons = self.cons.wrapping_add(n as u32);
            mem.store(self.dir.cons(), self.cons, Ordering::Release);
        }
        Ok(done)
    }
}
