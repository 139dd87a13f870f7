//! `xenstored`: the XenStore daemon on unix sockets.
//!
//! `DIR/socket` is domain 0's connection point (privileged, like Xen's own
//! `/run/xenstored/socket`); `DIR/domain/<domid>/socket` appears when domain 0
//! introduces the domain and disappears when it releases it. The socket a
//! client connects to decides its domid, so a guest process cannot claim to be
//! anyone else.
//!
//! One thread per listening socket, and per connection one reader thread and
//! one writer thread. All state sits behind one mutex: requests are small and
//! the tree is in memory, so a request never waits on I/O while holding it.
//! Replies and watch events go through the connection's outbox
//! (`outbox.rs`); a client that stops reading stops being read once its outbox
//! holds [`Limits::outstanding_bytes`], and a guest's watch events are dropped
//! (counted and logged) rather than queued past it: the daemon never stalls
//! and never holds more than that for one client.
//!
//! Started with [`Xenstored::start_persistent`], the daemon keeps its store in
//! `DIR/journal` ([`super::journal`]): every change is on disk before its reply
//! is sent, and a daemon started again on the same directory (after a crash or
//! a kill -9) comes back with every node, permission and introduced domain.
//! Sockets are replaced atomically (bound under a temporary name, renamed over
//! the old one), so a client reconnecting meanwhile finds either the dead
//! daemon's socket (connection refused: retry) or the new one, never nothing;
//! a socket that is missing means the domain was released.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

mod conn;
mod domain;
mod outbox;
mod request;
mod watch;

use conn::*;
use domain::*;
use outbox::Outbox;
pub use request::apply;
use request::*;
use watch::*;

use crate::journal::Journal;
use crate::store::{Caller, Change, Overlay, Perms, Tree};
use crate::wire::Errno;

/// Limits applied to unprivileged connections (domain 0 is trusted, as in Xen).
/// Defaults follow xenstored's quotas.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Nodes a domain may own (`quota-nodes`, default 1000).
    pub nodes_per_domain: usize,
    /// Bytes in one node's value (`quota-max-entry-size`, 2048).
    pub value_size: usize,
    /// Watches per connection (`quota-max-watch`, 128).
    pub watches_per_connection: usize,
    /// Open transactions per connection (`quota-max-transaction`, 10).
    pub transactions_per_connection: usize,
    /// Nodes one transaction may touch.
    pub nodes_per_transaction: usize,
    /// Entries in one node's permission list.
    pub perms_per_node: usize,
    /// Connections one guest domain may hold open.
    pub connections_per_domain: usize,
    /// Messages queued towards one connection before watch events are dropped.
    pub outstanding_messages: usize,
    /// Bytes queued towards one connection (replies and watch events its
    /// client has not read) at which the daemon stops reading the
    /// connection's requests until the client reads; a guest connection's
    /// watch events are dropped past it.
    pub outstanding_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            nodes_per_domain: 1000,
            value_size: 2048,
            watches_per_connection: 128,
            transactions_per_connection: 10,
            nodes_per_transaction: 1024,
            perms_per_node: 5,
            connections_per_domain: 64,
            outstanding_messages: 1024,
            outstanding_bytes: 128 << 10,
        }
    }
}

/// Path of domain 0's socket under `dir`.
pub fn dom0_socket(dir: &Path) -> PathBuf {
    dir.join("socket")
}

/// Path of a guest domain's socket under `dir`.
pub fn domain_socket(dir: &Path, domid: u16) -> PathBuf {
    dir.join("domain").join(domid.to_string()).join("socket")
}

/// Daemon-wide counters.
#[derive(Debug, Default)]
pub struct DaemonStats {
    /// Requests handled.
    pub requests: AtomicU64,
    /// Requests answered with an error.
    pub errors: AtomicU64,
    /// Watch events queued.
    pub watch_events: AtomicU64,
    /// Watch events dropped because the client stopped reading.
    pub watch_events_dropped: AtomicU64,
    /// Times a connection's requests stopped being read because its client
    /// was not reading the replies (`Limits::outstanding_bytes`).
    pub reads_paused: AtomicU64,
    /// The most bytes queued towards one connection at any time.
    pub outbox_peak_bytes: AtomicU64,
    /// Commits refused with EAGAIN.
    pub transaction_conflicts: AtomicU64,
    /// Commits refused with ENOSPC: a request of the transaction had been
    /// refused for the per-transaction node limit, or the commit would take a
    /// domain past its node quota.
    pub transaction_quota_refusals: AtomicU64,
    /// Nodes copied into transactions' private state: a write in a
    /// transaction copies the nodes it changes; starting one copies nothing.
    pub transaction_node_copies: AtomicU64,
    /// Connections closed for malformed messages.
    pub protocol_violations: AtomicU64,
    /// Journal writes that failed (the change is live but would not survive a
    /// restart); logged.
    pub journal_errors: AtomicU64,
}

struct Watch {
    /// As the client gave it (relative or absolute or `@...`).
    given: String,
    canonical: String,
    token: Vec<u8>,
}

/// An open transaction: what it changed and accessed, over the live tree.
#[derive(Default)]
struct Transaction {
    overlay: Overlay,
    /// Watch events its commit fires.
    changes: Vec<Change>,
    /// A request in it was refused for the per-transaction node limit: its
    /// commit is refused too (ENOSPC), as xenstored fails such a transaction,
    /// so it is applied whole or not at all.
    failed: bool,
}

struct Conn {
    caller: Caller,
    stream: UnixStream,
    out: Outbox,
    watches: Vec<Watch>,
    txs: HashMap<u32, Transaction>,
}

struct DomainEntry {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    /// Its accept loop, which owns the listener: joined, the socket is closed.
    accept: thread::JoinHandle<()>,
}

struct State {
    tree: Tree,
    conns: HashMap<u64, Conn>,
    domains: BTreeMap<u16, DomainEntry>,
    next_conn: u64,
    next_tx: u32,
    /// Where changes go before their reply (persistent daemons only).
    journal: Option<Journal>,
}

struct Shared {
    dir: PathBuf,
    limits: Limits,
    state: Mutex<State>,
    stop: AtomicBool,
    stats: DaemonStats,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a daemon bug; keep serving
        // rather than cascading the poison into every connection.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running daemon. Dropping it stops it and removes its sockets.
pub struct Xenstored {
    shared: Arc<Shared>,
    /// Domain 0's accept loop (taken when it is joined).
    dom0_accept: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Xenstored {
    /// Starts a daemon with default limits on `dir` (created 0700 if missing).
    pub fn start(dir: impl Into<PathBuf>) -> io::Result<Self> {
        Self::start_with(dir, Limits::default())
    }

    /// Starts a daemon with the given limits.
    pub fn start_with(dir: impl Into<PathBuf>, limits: Limits) -> io::Result<Self> {
        Self::launch(dir.into(), limits, false)
    }

    /// Starts a daemon that keeps its store in `DIR/journal`, coming back with
    /// what the file holds if it exists (a restart after a crash). Remove the
    /// file first for an empty store.
    pub fn start_persistent(dir: impl Into<PathBuf>) -> io::Result<Self> {
        Self::launch(dir.into(), Limits::default(), true)
    }

    /// The journal of a persistent daemon on `dir`.
    pub fn journal_path(dir: &Path) -> PathBuf {
        dir.join("journal")
    }

    fn launch(dir: PathBuf, limits: Limits, persistent: bool) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let dom0 = dom0_socket(&dir);
        if UnixStream::connect(&dom0).is_ok() {
            return Err(served(&dom0));
        }
        let (mut tree, domains, mut journal) = if persistent {
            let (j, r) = Journal::open(Self::journal_path(&dir))?;
            if r.records > 0 || r.ignored_bytes > 0 {
                tracing::info!(
                    nodes = r.tree.len(),
                    domains = r.domains.len(),
                    ignored_bytes = r.ignored_bytes,
                    "xenstored: store restored from {}",
                    j.path().display()
                );
            }
            (r.tree, r.domains, Some(j))
        } else {
            (Tree::new(), Default::default(), None)
        };
        for p in ["/local/domain/0", "/tool"] {
            if tree.get(p).is_none() {
                tree.ensure(p, Perms::owned_by(0));
                if let Some(j) = journal.as_mut() {
                    j.note_path(&tree, p);
                }
            }
        }
        if let Some(j) = journal.as_mut() {
            j.commit(&tree, domains.iter().copied())?;
        }
        remove_stale_domain_sockets(&dir, &domains);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            limits,
            state: Mutex::new(State {
                tree,
                conns: HashMap::new(),
                domains: BTreeMap::new(),
                next_conn: 1,
                next_tx: 1,
                journal,
            }),
            stop: AtomicBool::new(false),
            stats: DaemonStats::default(),
        });
        {
            let mut st = shared.lock();
            for d in domains {
                let entry = listen_domain(&shared, d)?;
                st.domains.insert(d, entry);
            }
        }
        let listener = bind(&dom0)?;
        let sh = shared.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let accept = thread::Builder::new()
            .name("xenstored-dom0".into())
            .spawn(move || accept_loop(sh, listener, Caller::DOM0, stop))?;
        Ok(Xenstored {
            shared,
            dom0_accept: Mutex::new(Some(accept)),
        })
    }

    /// The directory holding the sockets.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Domain 0's socket.
    pub fn socket_path(&self) -> PathBuf {
        dom0_socket(&self.shared.dir)
    }

    /// Connections currently open (each costs the daemon two threads).
    pub fn connections(&self) -> usize {
        self.shared.lock().conns.len()
    }

    /// Connections whose requests are not being read until their client
    /// reads the replies queued for it.
    pub fn stalled_connections(&self) -> usize {
        self.shared
            .lock()
            .conns
            .values()
            .filter(|c| c.out.is_stalled())
            .count()
    }

    /// Counters since start.
    pub fn stats(&self) -> &DaemonStats {
        &self.shared.stats
    }

    /// What INTRODUCE does: opens the domain's socket and fires
    /// `@introduceDomain`. Idempotent.
    pub fn introduce(&self, domid: u16) -> Result<PathBuf, Errno> {
        let mut st = self.shared.lock();
        let r = introduce(&self.shared, &mut st, domid);
        persist(&self.shared, &mut st);
        r
    }

    /// What RELEASE does: closes the domain's socket and connections and fires
    /// `@releaseDomain`.
    pub fn release(&self, domid: u16) -> Result<(), Errno> {
        let mut st = self.shared.lock();
        let r = release(&self.shared, &mut st, domid);
        persist(&self.shared, &mut st);
        r
    }

    /// Blocks the calling thread while the daemon runs (for `xennet xenstored`).
    pub fn wait(&self) {
        while !self.shared.stop.load(Ordering::Acquire) {
            thread::park_timeout(std::time::Duration::from_secs(1));
        }
    }

    /// Stops accepting, closes every connection and removes the sockets. A
    /// persistent daemon's journal keeps the introduced domains: a daemon
    /// started again on the directory reopens their sockets.
    pub fn stop(&self) {
        if self.shared.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut st = self.shared.lock();
        // Closing down is not releasing: nothing more goes to the journal.
        st.journal = None;
        // The socket goes first, so clients that lose their connection below
        // find it gone and do not wait for a restart.
        unlisten(&dom0_socket(&self.shared.dir));
        let domids: Vec<u16> = st.domains.keys().copied().collect();
        for d in domids {
            let _ = release(&self.shared, &mut st, d);
        }
        for c in st.conns.values() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        st.conns.clear();
    }
}

impl Xenstored {
    /// Stops as a crash (kill -9) would, for fault tests: connections drop
    /// and nobody listens any more, but the sockets stay where they were and
    /// nothing is released; what the journal holds is what a restart finds.
    pub fn crash(&self) {
        if self.shared.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut st = self.shared.lock();
        st.journal = None;
        for c in st.conns.values() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        st.conns.clear();
        let domains = std::mem::take(&mut st.domains);
        drop(st);
        let mut loops = Vec::new();
        for entry in domains.into_values() {
            entry.stop.store(true, Ordering::Release);
            // Wake its accept loop, which sees the flag and drops the listener.
            let _ = UnixStream::connect(&entry.socket);
            loops.push(entry.accept);
        }
        let _ = UnixStream::connect(dom0_socket(&self.shared.dir));
        loops.extend(
            self.dom0_accept
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        // A dead process's listeners are closed when it dies: once this
        // returns, connecting to a socket left behind is refused.
        for l in loops {
            let _ = l.join();
        }
    }
}

/// Appends what the request being handled changed to the journal, before its
/// reply goes out.
fn persist(sh: &Shared, st: &mut State) {
    let State {
        journal,
        tree,
        domains,
        ..
    } = st;
    if let Some(j) = journal {
        if let Err(e) = j.commit(tree, domains.keys().copied()) {
            sh.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "xenstored: journal {}: {e}; this change will not survive a restart",
                j.path().display()
            );
        }
    }
}

fn note_paths<'a>(st: &mut State, paths: impl IntoIterator<Item = &'a String>) {
    if let Some(j) = st.journal.as_mut() {
        for p in paths {
            j.note_path(&st.tree, p);
        }
    }
}

impl Drop for Xenstored {
    fn drop(&mut self) {
        self.stop();
    }
}
