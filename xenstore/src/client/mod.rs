//! A synchronous XenStore client with watches, for the drivers and the toolstack.
//!
//! Requests may come from several threads; a reader thread routes each reply to
//! its caller by `req_id` and queues watch events, which the owner takes with
//! [`XsClient::wait_watch`].
//!
//! A client made by [`XsClient::connect`] survives a xenstored restart: when the
//! connection drops, the reader thread reconnects to the same socket for up to
//! [`RECONNECT_WINDOW`], registers every watch again (each fires once, so the
//! owner re-reads what it watches and misses nothing), and sends again every
//! request still waiting for its reply. Those are idempotent in effect (a
//! repeated write, mkdir, rm or set-perms leaves the same store), except inside
//! a transaction: the daemon's transactions die with it, so requests of a
//! transaction started before the restart fail with EAGAIN, which
//! [`XsClient::transact`] retries. Meanwhile requests wait for the connection.
//! The client gives up (and [`XsClient::is_closed`] turns true) when the window
//! passes or when the socket is gone: a daemon that released the domain, or
//! exited in order, removes it; one that crashed leaves it (connection
//! refused) until its successor replaces it.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::store::{Perm, Perms};
use crate::wire::{self, Errno, MsgType, PAYLOAD_MAX};

mod reader;
mod store;
mod stream;

use reader::run_reader;
use stream::Stream;
pub use stream::{XENBUS_DEVICE, XENSTORED_SOCKET};

/// What can go wrong talking to xenstored.
#[derive(Debug, thiserror::Error)]
pub enum XsError {
    /// The daemon refused the request with one of Xen's errno names.
    #[error("xenstore: {0}")]
    Errno(Errno),
    #[error("xenstore connection: {0}")]
    /// The socket failed.
    Io(#[from] io::Error),
    #[error("xenstore connection closed")]
    /// The daemon closed the connection.
    Closed,
    #[error("xenstore: no reply within {0:?}")]
    /// The daemon did not answer in time.
    Timeout(Duration),
    #[error("xenstore protocol: {0}")]
    /// The daemon sent something malformed.
    Protocol(String),
    /// The caller's buffer is too small for the value (only through the
    /// [`xennet_ring::xenstore::XenStore`] trait, whose callers give the buffers).
    #[error("xenstore: a reply of {needed} bytes does not fit the buffer")]
    BufferTooSmall {
        /// The reply's length.
        needed: usize,
    },
}

impl XsError {
    /// The daemon's errno, if it refused the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            XsError::Errno(e) => Some(*e),
            _ => None,
        }
    }
    /// Whether the node does not exist (ENOENT).
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(Errno::ENOENT)
    }
}

impl From<Errno> for XsError {
    fn from(e: Errno) -> Self {
        XsError::Errno(e)
    }
}

/// A watch firing: the path that changed and the token given at registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The node that changed (relative if the watch was).
    pub path: String,
    /// The token given to `watch`.
    pub token: String,
}

/// How long a client made by [`XsClient::connect`] keeps trying to reach a
/// restarted daemon before it gives up.
pub const RECONNECT_WINDOW: Duration = Duration::from_secs(10);

/// A reply and the connection (epoch) it came over.
type Reply = (Result<Vec<u8>, XsError>, u64);

/// A request waiting for its reply: what to send again after a reconnect.
struct Pending {
    reply: mpsc::Sender<Reply>,
    ty: MsgType,
    tx_id: u32,
    msg: Vec<u8>,
}

/// The current connection.
struct Link {
    /// `None` while reconnecting (and once closed).
    stream: Option<Stream>,
    /// Bumped on every reconnect; a transaction belongs to one epoch.
    epoch: u64,
}

struct Inner {
    /// Where to reconnect, and for how long to try (`None`: never).
    reconnect: Option<(PathBuf, Duration)>,
    link: Mutex<Link>,
    /// Signalled when the link comes back or closes for good.
    link_changed: Condvar,
    pending: Mutex<HashMap<u32, Pending>>,
    /// Registered watches (path, token), registered again on reconnect.
    watches: Mutex<Vec<(String, String)>>,
    closed: AtomicBool,
    reconnects: AtomicU64,
    next_req: AtomicU32,
    events: Mutex<Events>,
    /// Transactions started through the [`xennet_ring::xenstore::XenStore`] trait
    /// and the connection (epoch) each belongs to.
    raw_txs: Mutex<HashMap<u32, u64>>,
    timeout: Duration,
}

/// Watch events not yet taken.
struct Events {
    rx: mpsc::Receiver<WatchEvent>,
    /// One taken from `rx` but not handed out (it did not fit a caller's buffer).
    held: Option<WatchEvent>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The reader thread holds its own handle of the socket and blocks in
        // read(): shutting the socket down ends it, and tells the daemon to drop
        // the connection (its threads and watches) too.
        if let Some(w) = &lock(&self.link).stream {
            w.shutdown();
        }
    }
}

/// A connection to xenstored.
#[derive(Clone)]
pub struct XsClient {
    inner: Arc<Inner>,
}

/// The socket `XENSTORED_PATH` names, as libxenstore resolves it, or domain 0's
/// socket in the default runtime directory's `xenstore/`.
pub fn default_socket() -> PathBuf {
    if let Some(p) = std::env::var_os("XENSTORED_PATH") {
        return PathBuf::from(p);
    }
    xennet_platform::shm::RuntimeDir::default_path()
        .join("xenstore")
        .join("socket")
}

impl XsClient {
    /// Connects to a daemon socket; reconnects within [`RECONNECT_WINDOW`] if
    /// the daemon restarts.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, XsError> {
        Self::connect_with(path, Some(RECONNECT_WINDOW))
    }

    /// Connects to a daemon socket, reconnecting for up to `window` after the
    /// daemon goes away (`None`: the first loss closes the client).
    pub fn connect_with(path: impl AsRef<Path>, window: Option<Duration>) -> Result<Self, XsError> {
        let path = path.as_ref();
        let stream = Stream::Unix(UnixStream::connect(path)?);
        Self::start(stream, window.map(|w| (path.to_path_buf(), w)))
    }

    /// Connects to `XENSTORED_PATH` or the default socket.
    pub fn open_default() -> Result<Self, XsError> {
        Self::connect(default_socket())
    }

    /// Uses an already connected socket (never reconnects).
    pub fn from_stream(stream: UnixStream) -> Result<Self, XsError> {
        Self::start(Stream::Unix(stream), None)
    }

    /// Opens a Xen domain's xenbus device (`/dev/xen/xenbus` in a Linux domU, where
    /// the kernel relays the same xs_wire messages to xenstored). Never reconnects.
    /// Its reader thread blocks in `read()` on the device and ends with the process
    /// (a device read cannot be interrupted the way a socket is shut down).
    pub fn open_xenbus(path: impl AsRef<Path>) -> Result<Self, XsError> {
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path.as_ref())?;
        Self::start(Stream::Device(dev), None)
    }

    /// XenStore on a real Xen host, as libxenstore finds it: `XENSTORED_PATH`, else
    /// xenstored's socket (domain 0, `/run/xenstored/socket`), else the xenbus
    /// device (`/dev/xen/xenbus`, any domain).
    pub fn open_xen() -> Result<Self, XsError> {
        if let Some(p) = std::env::var_os("XENSTORED_PATH") {
            let p = PathBuf::from(p);
            return if p.starts_with("/dev") {
                Self::open_xenbus(p)
            } else {
                Self::connect_with(p, None)
            };
        }
        for sock in [XENSTORED_SOCKET, "/var/run/xenstored/socket"] {
            if Path::new(sock).exists() {
                return Self::connect_with(sock, None);
            }
        }
        Self::open_xenbus(XENBUS_DEVICE)
    }

    fn start(stream: Stream, reconnect: Option<(PathBuf, Duration)>) -> Result<Self, XsError> {
        let reader = stream.try_clone()?;
        let (ev_tx, ev_rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            reconnect,
            link: Mutex::new(Link {
                stream: Some(stream),
                epoch: 0,
            }),
            link_changed: Condvar::new(),
            pending: Mutex::new(HashMap::new()),
            watches: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            next_req: AtomicU32::new(1),
            events: Mutex::new(Events {
                rx: ev_rx,
                held: None,
            }),
            raw_txs: Mutex::new(HashMap::new()),
            timeout: Duration::from_secs(30),
        });
        let weak = Arc::downgrade(&inner);
        thread::Builder::new()
            .name("xs-client".into())
            .spawn(move || run_reader(reader, weak, ev_tx))?;
        Ok(XsClient { inner })
    }

    /// Sends a request and waits for its reply; the reply's epoch too.
    /// `epoch` (for a transaction's requests) is the connection the
    /// transaction was started on: after a reconnect they fail with EAGAIN.
    fn request_at(
        &self,
        ty: MsgType,
        tx_id: u32,
        epoch: Option<u64>,
        payload: &[u8],
    ) -> Result<(Vec<u8>, u64), XsError> {
        if payload.len() > PAYLOAD_MAX {
            return Err(XsError::Errno(Errno::E2BIG));
        }
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.timeout;
        let req_id = inner.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let msg = wire::encode(ty, req_id, tx_id, payload);
        {
            let mut link = lock(&inner.link);
            while link.stream.is_none() {
                if inner.closed.load(Ordering::Acquire) {
                    return Err(XsError::Closed);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(XsError::Timeout(inner.timeout));
                }
                link = inner
                    .link_changed
                    .wait_timeout(link, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            if inner.closed.load(Ordering::Acquire) {
                return Err(XsError::Closed);
            }
            if epoch.is_some_and(|e| e != link.epoch) {
                return Err(XsError::Errno(Errno::EAGAIN));
            }
            // Registered and written under the link lock, so a reconnect either
            // sees it pending (and sends it again) or comes after the write.
            lock(&inner.pending).insert(
                req_id,
                Pending {
                    reply: tx,
                    ty,
                    tx_id,
                    msg: msg.clone(),
                },
            );
            let written = match link.stream.as_mut() {
                Some(w) => w.write_all(&msg),
                None => Ok(()),
            };
            if let Err(e) = written {
                if inner.reconnect.is_none() {
                    lock(&inner.pending).remove(&req_id);
                    return Err(e.into());
                }
                // The reader sees the loss too, reconnects and sends it again.
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((r, epoch)) => r.map(|body| (body, epoch)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                lock(&inner.pending).remove(&req_id);
                Err(XsError::Timeout(inner.timeout))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(XsError::Closed),
        }
    }

    fn request(&self, ty: MsgType, scope: Scope, payload: &[u8]) -> Result<Vec<u8>, XsError> {
        self.request_at(ty, scope.tx_id, scope.epoch, payload)
            .map(|(b, _)| b)
    }

    fn path_op(&self, ty: MsgType, scope: Scope, path: &str) -> Result<Vec<u8>, XsError> {
        self.request(ty, scope, &wire::join_strings(&[path]))
    }

    /// Whether the client gave up: the daemon closed the connection and did
    /// not come back (it exited, or released our domain).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Whether a request sent now goes out at once (false while reconnecting
    /// and once closed).
    pub fn is_connected(&self) -> bool {
        lock(&self.inner.link).stream.is_some() && !self.is_closed()
    }

    /// How many times the client reconnected to a restarted daemon.
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects.load(Ordering::Relaxed)
    }

    /// Reads a node's value.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, XsError> {
        self.path_op(MsgType::Read, Scope::NONE, path)
    }

    /// Reads a value as UTF-8 text.
    /// Reads a value as UTF-8 text.
    pub fn read_string(&self, path: &str) -> Result<String, XsError> {
        into_string(self.read(path)?)
    }

    /// Reads a value if the node exists.
    pub fn try_read_string(&self, path: &str) -> Result<Option<String>, XsError> {
        optional(self.read_string(path))
    }

    /// Writes a value, creating the node and missing ancestors.
    pub fn write(&self, path: &str, value: impl AsRef<[u8]>) -> Result<(), XsError> {
        write_op(self, Scope::NONE, path, value.as_ref())
    }

    /// Creates a node with an empty value unless it exists.
    pub fn mkdir(&self, path: &str) -> Result<(), XsError> {
        self.path_op(MsgType::Mkdir, Scope::NONE, path).map(drop)
    }

    /// Removes a node and everything below it.
    pub fn rm(&self, path: &str) -> Result<(), XsError> {
        self.path_op(MsgType::Rm, Scope::NONE, path).map(drop)
    }

    /// The node's children's names.
    pub fn directory(&self, path: &str) -> Result<Vec<String>, XsError> {
        names(self.path_op(MsgType::Directory, Scope::NONE, path)?)
    }

    /// The node's permission list (owner first).
    pub fn get_perms(&self, path: &str) -> Result<Vec<Perm>, XsError> {
        let p = self.path_op(MsgType::GetPerms, Scope::NONE, path)?;
        Ok(Perms::parse(wire::split_strings(&p))?.0)
    }

    /// Replaces the node's permission list (owner only).
    pub fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        set_perms_op(self, Scope::NONE, path, perms)
    }

    /// Registers a watch; the daemon fires it once at once, then on every change
    /// at or below `path`.
    pub fn watch(&self, path: &str, token: &str) -> Result<(), XsError> {
        let w = (path.to_owned(), token.to_owned());
        lock(&self.inner.watches).push(w.clone());
        let r = self.request(
            MsgType::Watch,
            Scope::NONE,
            &wire::join_strings(&[path, token]),
        );
        if r.is_err() {
            let mut ws = lock(&self.inner.watches);
            if let Some(i) = ws.iter().rposition(|x| *x == w) {
                ws.remove(i);
            }
        }
        r.map(drop)
    }

    /// Removes a watch registered with the same path and token.
    pub fn unwatch(&self, path: &str, token: &str) -> Result<(), XsError> {
        {
            let mut ws = lock(&self.inner.watches);
            if let Some(i) = ws.iter().position(|(p, t)| p == path && t == token) {
                ws.remove(i);
            }
        }
        self.request(
            MsgType::Unwatch,
            Scope::NONE,
            &wire::join_strings(&[path, token]),
        )
        .map(drop)
    }

    /// The next watch event, waiting at most `timeout`.
    pub fn wait_watch(&self, timeout: Duration) -> Result<Option<WatchEvent>, XsError> {
        let mut ev = lock(&self.inner.events);
        if let Some(e) = ev.held.take() {
            return Ok(Some(e));
        }
        match ev.rx.recv_timeout(timeout) {
            Ok(ev) => Ok(Some(ev)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(XsError::Closed),
        }
    }

    /// A watch event if one is queued.
    pub fn try_watch(&self) -> Option<WatchEvent> {
        let mut ev = lock(&self.inner.events);
        ev.held.take().or_else(|| ev.rx.try_recv().ok())
    }

    /// A domain's home path (`/local/domain/<domid>`).
    pub fn get_domain_path(&self, domid: u16) -> Result<String, XsError> {
        into_string(self.request(
            MsgType::GetDomainPath,
            Scope::NONE,
            &wire::join_strings(&[domid.to_string()]),
        )?)
    }

    /// INTRODUCE (domain 0 only). Over sockets `mfn` and `port` are recorded
    /// nowhere but must be given, as with Xen.
    pub fn introduce(&self, domid: u16, mfn: u64, port: u32) -> Result<(), XsError> {
        let parts = [domid.to_string(), mfn.to_string(), port.to_string()];
        self.request(MsgType::Introduce, Scope::NONE, &wire::join_strings(&parts))
            .map(drop)
    }

    /// RELEASE (domain 0 only): closes the domain's socket and connections.
    pub fn release(&self, domid: u16) -> Result<(), XsError> {
        self.request(
            MsgType::Release,
            Scope::NONE,
            &wire::join_strings(&[domid.to_string()]),
        )
        .map(drop)
    }

    /// Whether the daemon knows the domain.
    pub fn is_domain_introduced(&self, domid: u16) -> Result<bool, XsError> {
        let r = self.request(
            MsgType::IsDomainIntroduced,
            Scope::NONE,
            &wire::join_strings(&[domid.to_string()]),
        )?;
        Ok(r.first() == Some(&b'T'))
    }

    /// Starts a transaction.
    pub fn transaction(&self) -> Result<Transaction<'_>, XsError> {
        let (r, epoch) = self.request_at(MsgType::TransactionStart, 0, None, b"\0")?;
        let id: u32 = into_string(r)?
            .parse()
            .map_err(|_| XsError::Protocol("transaction id is not a number".into()))?;
        Ok(Transaction {
            client: self,
            id,
            epoch,
            done: false,
        })
    }

    /// Runs `f` in a transaction, retrying while the commit reports EAGAIN.
    pub fn transact<T>(
        &self,
        mut f: impl FnMut(&Transaction<'_>) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        loop {
            let tx = self.transaction()?;
            let v = f(&tx)?;
            match tx.commit() {
                Ok(()) => return Ok(v),
                Err(XsError::Errno(Errno::EAGAIN)) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Outside any transaction, or inside one begun on a given connection.
#[derive(Clone, Copy)]
struct Scope {
    tx_id: u32,
    epoch: Option<u64>,
}

impl Scope {
    const NONE: Scope = Scope {
        tx_id: 0,
        epoch: None,
    };
}

fn write_op(c: &XsClient, scope: Scope, path: &str, value: &[u8]) -> Result<(), XsError> {
    let mut p = Vec::with_capacity(path.len() + 1 + value.len());
    p.extend_from_slice(path.as_bytes());
    p.push(0);
    p.extend_from_slice(value);
    c.request(MsgType::Write, scope, &p).map(drop)
}

fn set_perms_op(c: &XsClient, scope: Scope, path: &str, perms: &[Perm]) -> Result<(), XsError> {
    let mut p = wire::join_strings(&[path]);
    p.extend_from_slice(&Perms(perms.to_vec()).to_payload());
    c.request(MsgType::SetPerms, scope, &p).map(drop)
}

/// A missing node (ENOENT) as `None`.
fn optional(r: Result<String, XsError>) -> Result<Option<String>, XsError> {
    match r {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn into_string(mut v: Vec<u8>) -> Result<String, XsError> {
    if v.last() == Some(&0) {
        v.pop();
    }
    String::from_utf8(v).map_err(|_| XsError::Protocol("value is not UTF-8".into()))
}

fn names(v: Vec<u8>) -> Result<Vec<String>, XsError> {
    wire::split_strings(&v)
        .into_iter()
        .map(|s| {
            std::str::from_utf8(s)
                .map(str::to_owned)
                .map_err(|_| XsError::Protocol("name is not UTF-8".into()))
        })
        .collect()
}

/// An open transaction; dropped without [`Transaction::commit`] it is aborted.
#[derive(Debug)]
pub struct Transaction<'a> {
    client: &'a XsClient,
    id: u32,
    /// The connection it was begun on: it dies with it.
    epoch: u64,
    done: bool,
}

impl Transaction<'_> {
    /// The daemon's transaction id.
    pub fn id(&self) -> u32 {
        self.id
    }
    fn scope(&self) -> Scope {
        Scope {
            tx_id: self.id,
            epoch: Some(self.epoch),
        }
    }
    /// Like [`XsClient::read`], inside the transaction.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, XsError> {
        self.client.path_op(MsgType::Read, self.scope(), path)
    }
    /// Like [`XsClient::read_string`], inside the transaction.
    pub fn read_string(&self, path: &str) -> Result<String, XsError> {
        into_string(self.read(path)?)
    }
    /// Like [`XsClient::try_read_string`], inside the transaction.
    pub fn try_read_string(&self, path: &str) -> Result<Option<String>, XsError> {
        optional(self.read_string(path))
    }
    /// Like [`XsClient::write`], inside the transaction.
    pub fn write(&self, path: &str, value: impl AsRef<[u8]>) -> Result<(), XsError> {
        write_op(self.client, self.scope(), path, value.as_ref())
    }
    /// Like [`XsClient::mkdir`], inside the transaction.
    pub fn mkdir(&self, path: &str) -> Result<(), XsError> {
        self.client
            .path_op(MsgType::Mkdir, self.scope(), path)
            .map(drop)
    }
    /// Like [`XsClient::rm`], inside the transaction.
    pub fn rm(&self, path: &str) -> Result<(), XsError> {
        self.client
            .path_op(MsgType::Rm, self.scope(), path)
            .map(drop)
    }
    /// Like [`XsClient::directory`], inside the transaction.
    pub fn directory(&self, path: &str) -> Result<Vec<String>, XsError> {
        names(
            self.client
                .path_op(MsgType::Directory, self.scope(), path)?,
        )
    }
    /// Like [`XsClient::set_perms`], inside the transaction.
    pub fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        set_perms_op(self.client, self.scope(), path, perms)
    }
    /// Commits; `Err(Errno(EAGAIN))` when another writer touched what this
    /// transaction read or wrote.
    pub fn commit(mut self) -> Result<(), XsError> {
        self.done = true;
        self.client
            .request(MsgType::TransactionEnd, self.scope(), b"T\0")
            .map(drop)
    }
    /// Aborts, discarding every change.
    pub fn abort(mut self) -> Result<(), XsError> {
        self.done = true;
        self.client
            .request(MsgType::TransactionEnd, self.scope(), b"F\0")
            .map(drop)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .client
                .request(MsgType::TransactionEnd, self.scope(), b"F\0");
        }
    }
}

impl std::fmt::Debug for XsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XsClient")
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}
