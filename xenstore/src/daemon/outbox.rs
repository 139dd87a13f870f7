//! A connection's outbox: the replies and watch events queued for its writer
//! thread, counted in messages and bytes. Its reader stops taking requests
//! while the outbox is full, so a client that never reads its replies costs
//! the daemon a bounded amount of memory (as a full ring stops a domain in Xen,
//! whose xenstored also limits a domain's outstanding requests, XSA-326).

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};

use super::DaemonStats;

/// What is queued towards one client.
#[derive(Debug, Default)]
struct Queued {
    messages: usize,
    bytes: usize,
    /// The writer has stopped: nothing queued will drain any more.
    closed: bool,
    /// The reader is waiting for the client to read.
    waiting: bool,
}

/// The counts the daemon (queueing), the writer (draining) and the reader
/// (waiting for room) share.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    queued: Mutex<Queued>,
    drained: Condvar,
}

impl Backlog {
    fn lock(&self) -> MutexGuard<'_, Queued> {
        // Counters only: a panic elsewhere cannot leave them inconsistent.
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer has written a message of `len` bytes to the socket.
    pub(super) fn sent(&self, len: usize) {
        let mut q = self.lock();
        q.messages = q.messages.saturating_sub(1);
        q.bytes = q.bytes.saturating_sub(len);
        drop(q);
        self.drained.notify_all();
    }

    /// The writer has stopped (the client went away or the connection was
    /// closed): a reader waiting for room gives up.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.drained.notify_all();
    }

    /// Blocks while `limit` bytes or more are queued (counted in
    /// `reads_paused`); a limit of 0 waits for an empty outbox. Returns false
    /// once the writer has stopped: the connection is going away.
    pub(super) fn wait_for_room(&self, limit: usize, stats: &DaemonStats) -> bool {
        let limit = limit.max(1);
        let mut q = self.lock();
        if q.bytes >= limit && !q.closed {
            stats.reads_paused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                queued = q.bytes,
                "xenstored: client not reading its replies; its requests wait"
            );
        }
        while q.bytes >= limit && !q.closed {
            q.waiting = true;
            q = self.drained.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        q.waiting = false;
        !q.closed
    }

    /// Whether the reader is waiting for the client to read.
    pub(super) fn is_waiting(&self) -> bool {
        self.lock().waiting
    }
}

/// The daemon's end of a connection's outbox.
pub(super) struct Outbox {
    tx: mpsc::Sender<Vec<u8>>,
    backlog: Arc<Backlog>,
}

impl Outbox {
    /// An outbox, the receiver its writer thread drains, and the counts.
    pub(super) fn new() -> (Self, mpsc::Receiver<Vec<u8>>, Arc<Backlog>) {
        let (tx, rx) = mpsc::channel();
        let backlog = Arc::new(Backlog::default());
        let out = Outbox {
            tx,
            backlog: backlog.clone(),
        };
        (out, rx, backlog)
    }

    /// Messages queued and not yet written.
    pub(super) fn messages(&self) -> usize {
        self.backlog.lock().messages
    }

    /// Bytes queued and not yet written.
    pub(super) fn bytes(&self) -> usize {
        self.backlog.lock().bytes
    }

    /// Whether the connection's reader is waiting for its client to read.
    pub(super) fn is_stalled(&self) -> bool {
        self.backlog.is_waiting()
    }

    /// Queues one message for the writer.
    pub(super) fn push(&self, msg: Vec<u8>, stats: &DaemonStats) {
        let len = msg.len();
        let mut q = self.backlog.lock();
        q.messages += 1;
        q.bytes += len;
        stats
            .outbox_peak_bytes
            .fetch_max(q.bytes as u64, Ordering::Relaxed);
        // Sent while counted, so the writer never subtracts before we add.
        if self.tx.send(msg).is_err() {
            // The writer is gone; the connection is being closed.
            q.messages -= 1;
            q.bytes -= len;
        }
    }
}
