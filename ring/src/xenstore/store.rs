//! What a split driver's XenStore handshake needs from a XenStore, whoever serves
//! it: the ring client here (a unikernel), or the socket client
//! `xennet_xenstore::XsClient` (a process). A handshake written over [`XenStore`]
//! runs on both.
//!
//! Buffers are the caller's, so the trait needs no allocator: a value or a
//! directory listing is copied into `out` and its length returned.

use core::fmt;
use core::time::Duration;

use super::wire::Errno;

/// A transaction id (`tx_id` of the header); [`TxId::NONE`] outside any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TxId(pub u32);

impl TxId {
    /// Outside any transaction.
    pub const NONE: TxId = TxId(0);
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A watch firing, borrowed from the caller's buffer: the path that changed
/// (relative if the watch was) and the token given at registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchEventRef<'a> {
    /// The node that changed.
    pub path: &'a str,
    /// The token given to `watch`.
    pub token: &'a str,
}

/// An error of a [`XenStore`]: the handshake needs to tell xenstored's refusals
/// (ENOENT: the node is missing; EAGAIN: the transaction must be retried) from
/// everything else.
pub trait StoreError: fmt::Debug + fmt::Display {
    /// xenstored's errno, if it refused the request.
    fn errno(&self) -> Option<Errno>;
}

/// The XenStore operations of the netif/xenbus handshakes, without allocation.
///
/// Calls are synchronous: each returns once xenstored answered. Watch events that
/// arrive meanwhile are kept for [`XenStore::next_watch_event`].
pub trait XenStore {
    /// What can go wrong.
    type Error: StoreError;

    /// Copies the value of `path` into `out`; returns its length.
    fn read(&mut self, tx: TxId, path: &str, out: &mut [u8]) -> Result<usize, Self::Error>;

    /// Writes `value` to `path`, creating it and missing ancestors.
    fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), Self::Error>;

    /// Copies the names of `path`'s children into `out`, each followed by a NUL
    /// (iterate them with [`super::wire::strings`]); returns the bytes used.
    fn directory(&mut self, tx: TxId, path: &str, out: &mut [u8]) -> Result<usize, Self::Error>;

    /// Removes `path` and everything below it.
    fn rm(&mut self, tx: TxId, path: &str) -> Result<(), Self::Error>;

    /// Registers a watch; xenstored fires it once at once, then on every change at
    /// or below `path`.
    fn watch(&mut self, path: &str, token: &str) -> Result<(), Self::Error>;

    /// Removes the watch registered with the same path and token.
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), Self::Error>;

    /// Starts a transaction.
    fn transaction_start(&mut self) -> Result<TxId, Self::Error>;

    /// Ends a transaction: commits it (`commit`; EAGAIN when another writer touched
    /// what it read or wrote) or aborts it.
    fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), Self::Error>;

    /// The oldest watch event not yet taken, copied into `out`; `None` if none has
    /// come. Does not wait.
    fn next_watch_event<'o>(
        &mut self,
        out: &'o mut [u8],
    ) -> Result<Option<WatchEventRef<'o>>, Self::Error>;

    /// Like [`XenStore::next_watch_event`], waiting for one; `None` if none comes
    /// within `timeout` (the ring client leaves the clock to its event hook).
    fn wait_watch_event<'o>(
        &mut self,
        timeout: Duration,
        out: &'o mut [u8],
    ) -> Result<Option<WatchEventRef<'o>>, Self::Error>;

    /// Like [`XenStore::read`], with a missing node (ENOENT) as `None`.
    fn try_read(
        &mut self,
        tx: TxId,
        path: &str,
        out: &mut [u8],
    ) -> Result<Option<usize>, Self::Error> {
        match self.read(tx, path, out) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.errno() == Some(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `f` in a transaction and commits it, starting over while the commit
    /// answers EAGAIN. If `f` fails the transaction is aborted and its error
    /// returned.
    fn transact<T>(
        &mut self,
        mut f: impl FnMut(&mut Self, TxId) -> Result<T, Self::Error>,
    ) -> Result<T, Self::Error>
    where
        Self: Sized,
    {
        loop {
            let tx = self.transaction_start()?;
            let v = match f(self, tx) {
                Ok(v) => v,
                Err(e) => {
                    // The error that matters is f's; an abort that fails too adds nothing.
                    let _ = self.transaction_end(tx, false);
                    return Err(e);
                }
            };
            match self.transaction_end(tx, true) {
                Ok(()) => return Ok(v),
                Err(e) if e.errno() == Some(Errno::EAGAIN) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl StoreError for super::XsRingError {
    fn errno(&self) -> Option<Errno> {
        super::XsRingError::errno(self)
    }
}

impl StoreError for Errno {
    fn errno(&self) -> Option<Errno> {
        Some(*self)
    }
}
