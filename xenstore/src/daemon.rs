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
//! Replies and watch events go through the connection's bounded outbox; a
//! client that stops reading loses watch events (counted and logged), never
//! stalls the daemon.
//!
//! Started with [`Xenstored::start_persistent`], the daemon keeps its store in
//! `DIR/journal` ([`super::journal`]): every change is on disk before its reply
//! is sent, and a daemon started again on the same directory (after a crash or
//! a kill -9) comes back with every node, permission and introduced domain.
//! Sockets are replaced atomically (bound under a temporary name, renamed over
//! the old one), so a client reconnecting meanwhile finds either the dead
//! daemon's socket (connection refused: retry) or the new one, never nothing;
//! a socket that is missing means the domain was released.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use super::journal::Journal;
use super::store::{is_child_or_self, parent_of, Caller, Change, Perms, Tree};
use super::wire::{
    self, check_path, Errno, Header, MsgType, ABS_PATH_MAX, HEADER_LEN, PAYLOAD_MAX,
};

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
    /// Commits refused with EAGAIN.
    pub transaction_conflicts: AtomicU64,
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

struct Transaction {
    base: Tree,
    work: Tree,
    /// Every path read or written, for conflict detection.
    footprint: BTreeSet<String>,
    /// Paths whose state the commit copies into the live tree.
    written: BTreeSet<String>,
    changes: Vec<Change>,
}

struct Outbox {
    tx: mpsc::Sender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
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
        thread::Builder::new()
            .name("xenstored-dom0".into())
            .spawn(move || accept_loop(sh, listener, Caller::DOM0, stop))?;
        Ok(Xenstored { shared })
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
        for entry in st.domains.values() {
            entry.stop.store(true, Ordering::Release);
            // Wake its accept loop, which sees the flag and drops the listener.
            let _ = UnixStream::connect(&entry.socket);
        }
        st.domains.clear();
        drop(st);
        let _ = UnixStream::connect(dom0_socket(&self.shared.dir));
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

/// Removes sockets of domains the daemon does not serve (left by a daemon that
/// died, or from an earlier store), so clients of those domains see at once
/// that they are gone.
fn remove_stale_domain_sockets(dir: &Path, keep: &BTreeSet<u16>) {
    let Ok(entries) = std::fs::read_dir(dir.join("domain")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(domid) = name.to_str().and_then(|n| n.parse::<u16>().ok()) else {
            continue;
        };
        if !keep.contains(&domid) {
            let _ = std::fs::remove_file(domain_socket(dir, domid));
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// Removes a listening socket at once (renamed away, so a client connecting
/// from now on finds nothing), then wakes its accept loop, which sees its stop
/// flag (set by the caller) and drops the listener.
fn unlisten(socket: &Path) {
    let closing = socket.with_extension("closing");
    if std::fs::rename(socket, &closing).is_ok() {
        let _ = UnixStream::connect(&closing);
        let _ = std::fs::remove_file(&closing);
    }
}

fn served(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("{} is served by a running xenstored", path.display()),
    )
}

impl Drop for Xenstored {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Listens on `path`. A socket already there that nobody answers (left by a
/// daemon that died) is replaced atomically: the new one is bound under a
/// temporary name and renamed over it.
fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if path.exists() && UnixStream::connect(path).is_ok() {
        return Err(served(path));
    }
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)?;
    Ok(l)
}

fn accept_loop(sh: Arc<Shared>, listener: UnixListener, caller: Caller, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if sh.stop.load(Ordering::Acquire) || stop.load(Ordering::Acquire) {
            break;
        }
        let Ok(stream) = stream else { continue };
        if let Err(e) = start_conn(&sh, stream, caller) {
            tracing::warn!(domid = caller.domid, "xenstored: connection refused: {e}");
        }
    }
}

fn start_conn(sh: &Arc<Shared>, stream: UnixStream, caller: Caller) -> io::Result<()> {
    let reader = stream.try_clone()?;
    let writer = stream.try_clone()?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let queued = Arc::new(AtomicUsize::new(0));
    let id = {
        let mut st = sh.lock();
        if !caller.privileged {
            let open = st.conns.values().filter(|c| c.caller == caller).count();
            if open >= sh.limits.connections_per_domain {
                return Err(io::Error::other("too many connections for this domain"));
            }
        }
        let id = st.next_conn;
        st.next_conn += 1;
        st.conns.insert(
            id,
            Conn {
                caller,
                stream,
                out: Outbox {
                    tx,
                    queued: queued.clone(),
                },
                watches: Vec::new(),
                txs: HashMap::new(),
            },
        );
        id
    };
    thread::Builder::new()
        .name(format!("xs-w{id}"))
        .spawn(move || writer_loop(writer, rx, queued))?;
    let sh2 = sh.clone();
    thread::Builder::new()
        .name(format!("xs-r{id}"))
        .spawn(move || {
            reader_loop(&sh2, id, reader);
            let mut st = sh2.lock();
            if let Some(c) = st.conns.remove(&id) {
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
        })?;
    Ok(())
}

fn writer_loop(mut w: UnixStream, rx: mpsc::Receiver<Vec<u8>>, queued: Arc<AtomicUsize>) {
    while let Ok(msg) = rx.recv() {
        queued.fetch_sub(1, Ordering::AcqRel);
        if w.write_all(&msg).is_err() {
            let _ = w.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

fn reader_loop(sh: &Arc<Shared>, id: u64, mut r: UnixStream) {
    let mut hdr = [0u8; HEADER_LEN];
    let mut payload = vec![0u8; PAYLOAD_MAX];
    loop {
        if r.read_exact(&mut hdr).is_err() {
            return;
        }
        let Ok(h) = Header::parse(&hdr) else {
            // Xen drops a connection that sends an oversized message: the
            // stream cannot be resynchronised.
            sh.stats.protocol_violations.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                conn = id,
                "xenstored: payload over {PAYLOAD_MAX} bytes; closing"
            );
            return;
        };
        let body = &mut payload[..h.len as usize];
        if r.read_exact(body).is_err() {
            return;
        }
        sh.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut st = sh.lock();
        if !st.conns.contains_key(&id) {
            return;
        }
        let (reply, after) = match handle(sh, &mut st, id, h, body) {
            Ok((p, after)) => (Ok(p), after),
            Err(e) => (Err(e), Vec::new()),
        };
        persist(sh, &mut st);
        let (ty, p) = match reply {
            Ok(p) => (h.ty, p),
            Err(e) => {
                sh.stats.errors.fetch_add(1, Ordering::Relaxed);
                (MsgType::Error as u32, e.payload())
            }
        };
        let mut msg = Header {
            ty,
            req_id: h.req_id,
            tx_id: h.tx_id,
            len: p.len() as u32,
        }
        .to_bytes()
        .to_vec();
        msg.extend_from_slice(&p);
        if let Some(c) = st.conns.get(&id) {
            c.out.queued.fetch_add(1, Ordering::AcqRel);
            let _ = c.out.tx.send(msg);
            for ev in after {
                c.out.queued.fetch_add(1, Ordering::AcqRel);
                let _ = c.out.tx.send(ev);
            }
        }
    }
}

const OK: &[u8] = b"OK\0";

/// The canonical absolute form of a client path.
fn canonical(caller: Caller, path: &str) -> Result<String, Errno> {
    check_path(path)?;
    if path.starts_with('/') || path.starts_with('@') {
        Ok(path.to_owned())
    } else {
        let abs = format!("/local/domain/{}/{}", caller.domid, path);
        if abs.len() > ABS_PATH_MAX {
            return Err(Errno::EINVAL);
        }
        Ok(abs)
    }
}

fn first_str(body: &[u8]) -> Result<&str, Errno> {
    let parts = wire::split_strings(body);
    let s = parts.first().ok_or(Errno::EINVAL)?;
    std::str::from_utf8(s).map_err(|_| Errno::EINVAL)
}

fn parse_domid(s: &[u8]) -> Result<u16, Errno> {
    let s = std::str::from_utf8(s).map_err(|_| Errno::EINVAL)?;
    s.parse::<u16>().map_err(|_| Errno::EINVAL)
}

type Handled = (Vec<u8>, Vec<Vec<u8>>);

/// Result of one tree operation, on the live tree or a transaction's copy.
struct Outcome {
    reply: Vec<u8>,
    read: Vec<String>,
    written: Vec<String>,
    changes: Vec<Change>,
}

impl Outcome {
    fn reply(reply: Vec<u8>, read: String) -> Self {
        Outcome {
            reply,
            read: vec![read],
            written: Vec::new(),
            changes: Vec::new(),
        }
    }
}

/// Applies one tree request (READ, WRITE, MKDIR, RM, DIRECTORY, DIRECTORY_PART,
/// GET_PERMS, SET_PERMS) from `caller` to `tree`, exactly as the daemon does
/// outside transactions, and returns the reply payload. The daemon's pure core:
/// fuzzed directly (`fuzz/fuzz_targets/xenstore.rs`).
pub fn apply(
    limits: &Limits,
    tree: &mut Tree,
    caller: Caller,
    ty: MsgType,
    body: &[u8],
) -> Result<Vec<u8>, Errno> {
    tree_op(limits, tree, caller, ty, body).map(|o| o.reply)
}

fn tree_op(
    limits: &Limits,
    tree: &mut Tree,
    caller: Caller,
    ty: MsgType,
    body: &[u8],
) -> Result<Outcome, Errno> {
    // `@` paths name watch events only; there are no such nodes.
    if let Some(first) = wire::split_strings(body).first() {
        if first.first() == Some(&b'@') {
            return Err(Errno::ENOENT);
        }
    }
    match ty {
        MsgType::Read => {
            let path = canonical(caller, first_str(body)?)?;
            let n = tree.read(caller, &path)?;
            Ok(Outcome::reply(n.value.clone(), path))
        }
        MsgType::Directory => {
            let path = canonical(caller, first_str(body)?)?;
            tree.read(caller, &path)?;
            let kids = tree.children(&path);
            let reply = wire::join_strings(&kids);
            if reply.len() > PAYLOAD_MAX {
                return Err(Errno::E2BIG);
            }
            Ok(Outcome::reply(reply, path))
        }
        MsgType::DirectoryPart => {
            let parts = wire::split_strings(body);
            let [path, offset] = parts[..] else {
                return Err(Errno::EINVAL);
            };
            let path = canonical(
                caller,
                std::str::from_utf8(path).map_err(|_| Errno::EINVAL)?,
            )?;
            let offset: usize = std::str::from_utf8(offset)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Errno::EINVAL)?;
            let n = tree.read(caller, &path)?;
            let gen = n.gen;
            let all = wire::join_strings(&tree.children(&path));
            if offset > all.len() {
                return Err(Errno::EINVAL);
            }
            let mut reply = format!("{gen}\0").into_bytes();
            let room = PAYLOAD_MAX - reply.len() - 1;
            let rest = &all[offset..];
            if rest.len() <= room {
                reply.extend_from_slice(rest);
                reply.push(0); // an empty name marks the end
            } else {
                // Whole names only.
                let cut = rest[..room]
                    .iter()
                    .rposition(|&b| b == 0)
                    .map_or(0, |i| i + 1);
                reply.extend_from_slice(&rest[..cut]);
            }
            Ok(Outcome::reply(reply, path))
        }
        MsgType::GetPerms => {
            let path = canonical(caller, first_str(body)?)?;
            let n = tree.read(caller, &path)?;
            Ok(Outcome::reply(n.perms.to_payload(), path))
        }
        MsgType::Write => {
            let nul = body.iter().position(|&b| b == 0).ok_or(Errno::EINVAL)?;
            let path = std::str::from_utf8(&body[..nul]).map_err(|_| Errno::EINVAL)?;
            let value = &body[nul + 1..];
            let path = canonical(caller, path)?;
            if path.starts_with('@') {
                return Err(Errno::EINVAL);
            }
            if !caller.privileged && value.len() > limits.value_size {
                return Err(Errno::ENOSPC);
            }
            let created = tree.write(caller, &path, value, limits.nodes_per_domain)?;
            Ok(written_outcome(tree, path, created))
        }
        MsgType::Mkdir => {
            let path = canonical(caller, first_str(body)?)?;
            if path.starts_with('@') {
                return Err(Errno::EINVAL);
            }
            if tree.get(&path).is_some() {
                tree.read(caller, &path)?;
                return Ok(Outcome::reply(OK.to_vec(), path));
            }
            let created = tree.create(caller, &path, limits.nodes_per_domain)?;
            Ok(written_outcome(tree, path, created))
        }
        MsgType::Rm => {
            let path = canonical(caller, first_str(body)?)?;
            if path.starts_with('@') {
                return Err(Errno::EINVAL);
            }
            if tree.get(&path).is_none() {
                // xenstored: removing a missing node is fine if its parent exists.
                let parent = parent_of(&path).ok_or(Errno::EINVAL)?;
                tree.read(caller, parent)?;
                return Ok(Outcome::reply(OK.to_vec(), path));
            }
            let removed = tree.remove(caller, &path)?;
            let mut written: Vec<String> = removed.iter().map(|(p, _)| p.clone()).collect();
            if let Some(parent) = parent_of(&path) {
                written.push(parent.to_owned());
            }
            let changes = match removed.into_iter().next() {
                Some((p, perms)) => vec![Change {
                    path: p,
                    perms,
                    recursive: true,
                }],
                None => Vec::new(),
            };
            Ok(Outcome {
                reply: OK.to_vec(),
                read: vec![path],
                written,
                changes,
            })
        }
        MsgType::SetPerms => {
            let parts = wire::split_strings(body);
            let (path, perms) = parts.split_first().ok_or(Errno::EINVAL)?;
            let path = canonical(
                caller,
                std::str::from_utf8(path).map_err(|_| Errno::EINVAL)?,
            )?;
            let perms = Perms::parse(perms.iter().copied())?;
            if !caller.privileged && perms.0.len() > limits.perms_per_node {
                return Err(Errno::ENOSPC);
            }
            if path.starts_with('@') {
                return Err(Errno::EINVAL);
            }
            let old = tree.get(&path).map(|n| n.perms.clone());
            tree.set_perms(caller, &path, perms.clone())?;
            let mut changes = vec![Change {
                path: path.clone(),
                perms,
                recursive: false,
            }];
            if let Some(old) = old {
                // Those who could see the node before learn that it changed too.
                changes.push(Change {
                    path: path.clone(),
                    perms: old,
                    recursive: false,
                });
            }
            Ok(Outcome {
                reply: OK.to_vec(),
                read: vec![path.clone()],
                written: vec![path],
                changes,
            })
        }
        _ => Err(Errno::EINVAL),
    }
}

fn written_outcome(tree: &Tree, path: String, created: Vec<String>) -> Outcome {
    let mut written = created.clone();
    if let Some(first) = created.first().and_then(|p| parent_of(p)) {
        written.push(first.to_owned());
    }
    written.push(path.clone());
    let perms = tree
        .get(&path)
        .map(|n| n.perms.clone())
        .unwrap_or(Perms::owned_by(0));
    Outcome {
        reply: OK.to_vec(),
        read: vec![path.clone()],
        written,
        changes: vec![Change {
            path,
            perms,
            recursive: false,
        }],
    }
}

fn handle(
    sh: &Arc<Shared>,
    st: &mut State,
    id: u64,
    h: Header,
    body: &[u8],
) -> Result<Handled, Errno> {
    let caller = st.conns.get(&id).ok_or(Errno::EIO)?.caller;
    let ty = MsgType::from_u32(h.ty).ok_or(Errno::EINVAL)?;
    let limits = sh.limits;
    match ty {
        MsgType::Read
        | MsgType::Directory
        | MsgType::DirectoryPart
        | MsgType::GetPerms
        | MsgType::Write
        | MsgType::Mkdir
        | MsgType::Rm
        | MsgType::SetPerms => {
            if h.tx_id == 0 {
                let out = tree_op(&limits, &mut st.tree, caller, ty, body)?;
                note_paths(st, &out.written);
                fire(sh, st, &out.changes);
                Ok((out.reply, Vec::new()))
            } else {
                let conn = st.conns.get_mut(&id).ok_or(Errno::EIO)?;
                let tx = conn.txs.get_mut(&h.tx_id).ok_or(Errno::ENOENT)?;
                let out = tree_op(&limits, &mut tx.work, caller, ty, body)?;
                tx.footprint.extend(out.read);
                tx.footprint.extend(out.written.iter().cloned());
                tx.written.extend(out.written);
                tx.changes.extend(out.changes);
                if !caller.privileged && tx.footprint.len() > limits.nodes_per_transaction {
                    return Err(Errno::ENOSPC);
                }
                Ok((out.reply, Vec::new()))
            }
        }
        MsgType::Watch => {
            let parts = wire::split_strings(body);
            let [path, token] = parts[..] else {
                return Err(Errno::EINVAL);
            };
            let given = std::str::from_utf8(path)
                .map_err(|_| Errno::EINVAL)?
                .to_owned();
            let canonical = canonical(caller, &given)?;
            let conn = st.conns.get_mut(&id).ok_or(Errno::EIO)?;
            if conn
                .watches
                .iter()
                .any(|w| w.canonical == canonical && w.token == token)
            {
                return Err(Errno::EEXIST);
            }
            if !caller.privileged && conn.watches.len() >= limits.watches_per_connection {
                return Err(Errno::E2BIG);
            }
            let event = watch_event(&given, token);
            conn.watches.push(Watch {
                given,
                canonical,
                token: token.to_vec(),
            });
            sh.stats.watch_events.fetch_add(1, Ordering::Relaxed);
            // The initial event follows the reply, as with xenstored.
            Ok((OK.to_vec(), vec![event]))
        }
        MsgType::Unwatch => {
            let parts = wire::split_strings(body);
            let [path, token] = parts[..] else {
                return Err(Errno::EINVAL);
            };
            let canonical = canonical(
                caller,
                std::str::from_utf8(path).map_err(|_| Errno::EINVAL)?,
            )?;
            let conn = st.conns.get_mut(&id).ok_or(Errno::EIO)?;
            let i = conn
                .watches
                .iter()
                .position(|w| w.canonical == canonical && w.token == token)
                .ok_or(Errno::ENOENT)?;
            conn.watches.remove(i);
            Ok((OK.to_vec(), Vec::new()))
        }
        MsgType::ResetWatches => {
            let conn = st.conns.get_mut(&id).ok_or(Errno::EIO)?;
            conn.watches.clear();
            conn.txs.clear();
            Ok((OK.to_vec(), Vec::new()))
        }
        MsgType::TransactionStart => {
            if h.tx_id != 0 {
                return Err(Errno::EBUSY);
            }
            let txid = st.next_tx;
            st.next_tx = st.next_tx.wrapping_add(1).max(1);
            let snapshot = st.tree.clone();
            let conn = st.conns.get_mut(&id).ok_or(Errno::EIO)?;
            if !caller.privileged && conn.txs.len() >= limits.transactions_per_connection {
                return Err(Errno::ENOSPC);
            }
            conn.txs.insert(
                txid,
                Transaction {
                    work: snapshot.clone(),
                    base: snapshot,
                    footprint: BTreeSet::new(),
                    written: BTreeSet::new(),
                    changes: Vec::new(),
                },
            );
            Ok((format!("{txid}\0").into_bytes(), Vec::new()))
        }
        MsgType::TransactionEnd => {
            let commit = match wire::split_strings(body).first().copied() {
                Some(b"T") => true,
                Some(b"F") => false,
                _ => return Err(Errno::EINVAL),
            };
            let conn = st.conns.get_mut(&id).ok_or(Errno::EIO)?;
            let tx = conn.txs.remove(&h.tx_id).ok_or(Errno::ENOENT)?;
            if !commit {
                return Ok((OK.to_vec(), Vec::new()));
            }
            let conflict = tx
                .footprint
                .iter()
                .any(|p| tx.base.gen_of(p) != st.tree.gen_of(p));
            if conflict {
                sh.stats
                    .transaction_conflicts
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Errno::EAGAIN);
            }
            st.tree.adopt(&tx.work, &tx.written);
            note_paths(st, &tx.written);
            fire(sh, st, &tx.changes);
            Ok((OK.to_vec(), Vec::new()))
        }
        MsgType::GetDomainPath => {
            let parts = wire::split_strings(body);
            let domid = parse_domid(parts.first().ok_or(Errno::EINVAL)?)?;
            Ok((format!("/local/domain/{domid}\0").into_bytes(), Vec::new()))
        }
        MsgType::IsDomainIntroduced => {
            let parts = wire::split_strings(body);
            let domid = parse_domid(parts.first().ok_or(Errno::EINVAL)?)?;
            let yes = domid == 0 || st.domains.contains_key(&domid);
            Ok((
                if yes {
                    b"T\0".to_vec()
                } else {
                    b"F\0".to_vec()
                },
                Vec::new(),
            ))
        }
        MsgType::Introduce => {
            if !caller.privileged {
                return Err(Errno::EACCES);
            }
            let parts = wire::split_strings(body);
            let [domid, mfn, port] = parts[..] else {
                return Err(Errno::EINVAL);
            };
            let domid = parse_domid(domid)?;
            // The ring frame and event channel are meaningless over sockets, but
            // must still be numbers as with Xen.
            for n in [mfn, port] {
                std::str::from_utf8(n)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(Errno::EINVAL)?;
            }
            introduce(sh, st, domid)?;
            Ok((OK.to_vec(), Vec::new()))
        }
        MsgType::Release => {
            if !caller.privileged {
                return Err(Errno::EACCES);
            }
            let parts = wire::split_strings(body);
            let domid = parse_domid(parts.first().ok_or(Errno::EINVAL)?)?;
            release(sh, st, domid)?;
            Ok((OK.to_vec(), Vec::new()))
        }
        MsgType::Resume => {
            if !caller.privileged {
                return Err(Errno::EACCES);
            }
            Ok((OK.to_vec(), Vec::new()))
        }
        MsgType::Control | MsgType::SetTarget => Err(Errno::ENOSYS),
        MsgType::WatchEvent | MsgType::Error => Err(Errno::EINVAL),
    }
}

fn watch_event(path: &str, token: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(path.len() + token.len() + 2);
    p.extend_from_slice(path.as_bytes());
    p.push(0);
    p.extend_from_slice(token);
    p.push(0);
    wire::encode(MsgType::WatchEvent, 0, 0, &p)
}

/// Queues watch events for `changes` to every connection allowed to see them.
fn fire(sh: &Shared, st: &State, changes: &[Change]) {
    for conn in st.conns.values() {
        let home = format!("/local/domain/{}/", conn.caller.domid);
        // One event per (watch, path) even if several changes name the same path.
        let mut sent: BTreeSet<(usize, String)> = BTreeSet::new();
        for ch in changes {
            let visible = conn.caller.privileged
                || ch.path.starts_with('@')
                || ch.perms.access_for(conn.caller.domid, false).can_read();
            if !visible {
                continue;
            }
            for (i, w) in conn.watches.iter().enumerate() {
                let hit = if ch.path.starts_with('@') || w.canonical.starts_with('@') {
                    (ch.path == w.canonical).then(|| ch.path.clone())
                } else if is_child_or_self(&ch.path, &w.canonical) {
                    Some(ch.path.clone())
                } else if ch.recursive && is_child_or_self(&w.canonical, &ch.path) {
                    Some(w.canonical.clone())
                } else {
                    None
                };
                let Some(path) = hit else { continue };
                if !sent.insert((i, path.clone())) {
                    continue;
                }
                let shown = if w.given.starts_with('/') || w.given.starts_with('@') {
                    path
                } else {
                    path.strip_prefix(&home).map(str::to_owned).unwrap_or(path)
                };
                let queued = conn.out.queued.load(Ordering::Acquire);
                if !conn.caller.privileged && queued >= sh.limits.outstanding_messages {
                    sh.stats
                        .watch_events_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        domid = conn.caller.domid,
                        "xenstored: watch event for {shown} dropped: client not reading"
                    );
                    continue;
                }
                conn.out.queued.fetch_add(1, Ordering::AcqRel);
                sh.stats.watch_events.fetch_add(1, Ordering::Relaxed);
                let _ = conn.out.tx.send(watch_event(&shown, &w.token));
            }
        }
    }
}

fn introduce(sh: &Arc<Shared>, st: &mut State, domid: u16) -> Result<PathBuf, Errno> {
    if domid == 0 {
        return Err(Errno::EINVAL);
    }
    let path = domain_socket(&sh.dir, domid);
    if st.domains.contains_key(&domid) {
        return Ok(path);
    }
    let entry = listen_domain(sh, domid).map_err(|e| {
        tracing::warn!("xenstored: cannot open {}: {e}", path.display());
        Errno::EIO
    })?;
    st.domains.insert(domid, entry);
    // Like libxl at domain creation: the domain's home, owned by the domain.
    let home = format!("/local/domain/{domid}");
    st.tree.ensure(&home, Perms::owned_by(domid));
    if let Some(j) = st.journal.as_mut() {
        j.note_domain(domid, true);
        j.note_path(&st.tree, &home);
    }
    fire(
        sh,
        st,
        &[Change {
            path: "@introduceDomain".into(),
            perms: Perms::owned_by(0),
            recursive: false,
        }],
    );
    Ok(path)
}

/// Opens a domain's socket and its accept loop.
fn listen_domain(sh: &Arc<Shared>, domid: u16) -> io::Result<DomainEntry> {
    let path = domain_socket(&sh.dir, domid);
    let listener = bind(&path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sh2 = sh.clone();
    let stop2 = stop.clone();
    thread::Builder::new()
        .name(format!("xenstored-dom{domid}"))
        .spawn(move || accept_loop(sh2, listener, Caller::guest(domid), stop2))?;
    Ok(DomainEntry { socket: path, stop })
}

fn release(sh: &Shared, st: &mut State, domid: u16) -> Result<(), Errno> {
    let entry = st.domains.remove(&domid).ok_or(Errno::ENOENT)?;
    if let Some(j) = st.journal.as_mut() {
        j.note_domain(domid, false);
    }
    entry.stop.store(true, Ordering::Release);
    unlisten(&entry.socket);
    if let Some(dir) = entry.socket.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    let doomed: Vec<u64> = st
        .conns
        .iter()
        .filter(|(_, c)| !c.caller.privileged && c.caller.domid == domid)
        .map(|(&id, _)| id)
        .collect();
    for id in doomed {
        if let Some(c) = st.conns.remove(&id) {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }
    fire(
        sh,
        st,
        &[Change {
            path: "@releaseDomain".into(),
            perms: Perms::owned_by(0),
            recursive: false,
        }],
    );
    Ok(())
}
