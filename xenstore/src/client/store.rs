//! [`XsClient`] as a [`XenStore`]: the trait a handshake can be written against, so
//! that it runs over this socket client in a process and over the `no_std` ring
//! client in a unikernel (`xennet_ring::xenstore`).
//!
//! Values and listings are copied into the caller's buffers (a too-small buffer is
//! [`XsError::BufferTooSmall`]). Transactions are plain ids here; each remembers the
//! connection it was started on, so after a reconnect its requests fail with
//! EAGAIN, as with [`XsClient::transaction`].

use xennet_ring::xenstore::{StoreError, TxId, WatchEventRef, XenStore};

use std::time::Duration;

use super::{lock, Scope, WatchEvent, XsClient, XsError};
use crate::wire::{Errno, MsgType};

impl StoreError for XsError {
    fn errno(&self) -> Option<Errno> {
        XsError::errno(self)
    }
}

impl XsClient {
    /// The scope of a trait transaction (EAGAIN for one this client never began,
    /// or ended).
    fn raw_scope(&self, tx: TxId) -> Result<Scope, XsError> {
        if tx == TxId::NONE {
            return Ok(Scope::NONE);
        }
        match lock(&self.inner.raw_txs).get(&tx.0) {
            Some(&epoch) => Ok(Scope {
                tx_id: tx.0,
                epoch: Some(epoch),
            }),
            None => Err(XsError::Errno(Errno::EAGAIN)),
        }
    }
}

/// Copies a reply into the caller's buffer.
fn copy_out(v: &[u8], out: &mut [u8]) -> Result<usize, XsError> {
    let dst = out
        .get_mut(..v.len())
        .ok_or(XsError::BufferTooSmall { needed: v.len() })?;
    dst.copy_from_slice(v);
    Ok(v.len())
}

impl XenStore for XsClient {
    type Error = XsError;

    fn read(&mut self, tx: TxId, path: &str, out: &mut [u8]) -> Result<usize, XsError> {
        let v = self.path_op(MsgType::Read, self.raw_scope(tx)?, path)?;
        copy_out(&v, out)
    }

    fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), XsError> {
        super::write_op(self, self.raw_scope(tx)?, path, value)
    }

    fn directory(&mut self, tx: TxId, path: &str, out: &mut [u8]) -> Result<usize, XsError> {
        let v = self.path_op(MsgType::Directory, self.raw_scope(tx)?, path)?;
        copy_out(&v, out)
    }

    fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.path_op(MsgType::Rm, self.raw_scope(tx)?, path)
            .map(drop)
    }

    fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        XsClient::watch(self, path, token)
    }

    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        XsClient::unwatch(self, path, token)
    }

    fn transaction_start(&mut self) -> Result<TxId, XsError> {
        let (r, epoch) = self.request_at(MsgType::TransactionStart, 0, None, b"\0")?;
        let id = super::into_string(r)?
            .parse::<u32>()
            .ok()
            .filter(|&id| id != 0)
            .ok_or_else(|| XsError::Protocol("transaction id is not a number".into()))?;
        lock(&self.inner.raw_txs).insert(id, epoch);
        Ok(TxId(id))
    }

    fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XsError> {
        let scope = self.raw_scope(tx)?;
        lock(&self.inner.raw_txs).remove(&tx.0);
        let flag: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request(MsgType::TransactionEnd, scope, flag).map(drop)
    }

    fn next_watch_event<'o>(
        &mut self,
        out: &'o mut [u8],
    ) -> Result<Option<WatchEventRef<'o>>, XsError> {
        match self.try_watch() {
            Some(ev) => hand_out(self, ev, out).map(Some),
            None if self.is_closed() => Err(XsError::Closed),
            None => Ok(None),
        }
    }

    fn wait_watch_event<'o>(
        &mut self,
        timeout: Duration,
        out: &'o mut [u8],
    ) -> Result<Option<WatchEventRef<'o>>, XsError> {
        match self.wait_watch(timeout)? {
            Some(ev) => hand_out(self, ev, out).map(Some),
            None => Ok(None),
        }
    }
}

/// Copies an event into the caller's buffer as `path\0token\0`; one that does not
/// fit is kept for the next call.
fn hand_out<'o>(
    xs: &XsClient,
    ev: WatchEvent,
    out: &'o mut [u8],
) -> Result<WatchEventRef<'o>, XsError> {
    let (p, t) = (ev.path.len(), ev.token.len());
    let needed = p + 1 + t + 1;
    if out.len() < needed {
        lock(&xs.inner.events).held = Some(ev);
        return Err(XsError::BufferTooSmall { needed });
    }
    out[..p].copy_from_slice(ev.path.as_bytes());
    out[p] = 0;
    out[p + 1..p + 1 + t].copy_from_slice(ev.token.as_bytes());
    out[p + 1 + t] = 0;
    let (path, token) = out[..needed].split_at(p + 1);
    // Both halves are copies of Strings, so UTF-8.
    let text = |b: &'o [u8]| core::str::from_utf8(&b[..b.len() - 1]).unwrap_or_default();
    Ok(WatchEventRef {
        path: text(path),
        token: text(token),
    })
}
