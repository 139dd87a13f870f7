//! A synchronous XenStore client with watches, for the drivers and the toolstack.
//!
//! Requests may come from several threads; a reader thread routes each reply to
//! its caller by `req_id` and queues watch events, which the owner takes with
//! [`XsClient::wait_watch`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::store::{Perm, Perms};
use super::wire::{self, Errno, Header, MsgType, HEADER_LEN, PAYLOAD_MAX};

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

type Reply = Result<Vec<u8>, XsError>;

struct Inner {
    writer: Mutex<UnixStream>,
    pending: Mutex<HashMap<u32, mpsc::Sender<Reply>>>,
    closed: std::sync::atomic::AtomicBool,
    next_req: AtomicU32,
    events: Mutex<mpsc::Receiver<WatchEvent>>,
    timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The reader thread holds its own handle of the socket and blocks in
        // read(): shutting the socket down ends it, and tells the daemon to drop
        // the connection (its threads and watches) too.
        if let Ok(w) = self.writer.lock() {
            let _ = w.shutdown(std::net::Shutdown::Both);
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
    crate::shm::RuntimeDir::default_path()
        .join("xenstore")
        .join("socket")
}

impl XsClient {
    /// Connects to a daemon socket.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, XsError> {
        let stream = UnixStream::connect(path.as_ref())?;
        Self::from_stream(stream)
    }

    /// Connects to `XENSTORED_PATH` or the default socket.
    pub fn open_default() -> Result<Self, XsError> {
        Self::connect(default_socket())
    }

    /// Uses an already connected socket.
    pub fn from_stream(stream: UnixStream) -> Result<Self, XsError> {
        let reader = stream.try_clone()?;
        let (ev_tx, ev_rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            writer: Mutex::new(stream),
            pending: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            next_req: AtomicU32::new(1),
            events: Mutex::new(ev_rx),
            timeout: Duration::from_secs(30),
        });
        let weak = Arc::downgrade(&inner);
        thread::Builder::new()
            .name("xs-client".into())
            .spawn(move || {
                let _ = read_loop(reader, &weak, ev_tx);
                if let Some(inner) = weak.upgrade() {
                    inner.closed.store(true, Ordering::Release);
                    let mut pending = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
                    for (_, tx) in pending.drain() {
                        let _ = tx.send(Err(XsError::Closed));
                    }
                }
            })?;
        Ok(XsClient { inner })
    }

    fn request(&self, ty: MsgType, tx_id: u32, payload: &[u8]) -> Result<Vec<u8>, XsError> {
        if payload.len() > PAYLOAD_MAX {
            return Err(XsError::Errno(Errno::E2BIG));
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(XsError::Closed);
        }
        let req_id = self.inner.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(req_id, tx);
        let msg = wire::encode(ty, req_id, tx_id, payload);
        {
            let mut w = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = w.write_all(&msg) {
                self.inner
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&req_id);
                return Err(e.into());
            }
        }
        match rx.recv_timeout(self.inner.timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.inner
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&req_id);
                Err(XsError::Timeout(self.inner.timeout))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(XsError::Closed),
        }
    }

    fn path_op(&self, ty: MsgType, tx: u32, path: &str) -> Result<Vec<u8>, XsError> {
        self.request(ty, tx, &wire::join_strings(&[path]))
    }

    /// Whether the daemon closed the connection (it exited, or released our domain).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Reads a node's value.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, XsError> {
        self.path_op(MsgType::Read, 0, path)
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
        write_op(self, 0, path, value.as_ref())
    }

    /// Creates a node with an empty value unless it exists.
    pub fn mkdir(&self, path: &str) -> Result<(), XsError> {
        self.path_op(MsgType::Mkdir, 0, path).map(drop)
    }

    /// Removes a node and everything below it.
    pub fn rm(&self, path: &str) -> Result<(), XsError> {
        self.path_op(MsgType::Rm, 0, path).map(drop)
    }

    /// The node's children's names.
    pub fn directory(&self, path: &str) -> Result<Vec<String>, XsError> {
        names(self.path_op(MsgType::Directory, 0, path)?)
    }

    /// The node's permission list (owner first).
    pub fn get_perms(&self, path: &str) -> Result<Vec<Perm>, XsError> {
        let p = self.path_op(MsgType::GetPerms, 0, path)?;
        Ok(Perms::parse(wire::split_strings(&p))?.0)
    }

    /// Replaces the node's permission list (owner only).
    pub fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        set_perms_op(self, 0, path, perms)
    }

    /// Registers a watch; the daemon fires it once at once, then on every change
    /// at or below `path`.
    pub fn watch(&self, path: &str, token: &str) -> Result<(), XsError> {
        self.request(MsgType::Watch, 0, &wire::join_strings(&[path, token]))
            .map(drop)
    }

    /// Removes a watch registered with the same path and token.
    pub fn unwatch(&self, path: &str, token: &str) -> Result<(), XsError> {
        self.request(MsgType::Unwatch, 0, &wire::join_strings(&[path, token]))
            .map(drop)
    }

    /// The next watch event, waiting at most `timeout`.
    pub fn wait_watch(&self, timeout: Duration) -> Result<Option<WatchEvent>, XsError> {
        let rx = self.inner.events.lock().unwrap_or_else(|p| p.into_inner());
        match rx.recv_timeout(timeout) {
            Ok(ev) => Ok(Some(ev)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(XsError::Closed),
        }
    }

    /// A watch event if one is queued.
    pub fn try_watch(&self) -> Option<WatchEvent> {
        self.inner
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_recv()
            .ok()
    }

    /// A domain's home path (`/local/domain/<domid>`).
    pub fn get_domain_path(&self, domid: u16) -> Result<String, XsError> {
        into_string(self.request(
            MsgType::GetDomainPath,
            0,
            &wire::join_strings(&[domid.to_string()]),
        )?)
    }

    /// INTRODUCE (domain 0 only). Over sockets `mfn` and `port` are recorded
    /// nowhere but must be given, as with Xen.
    pub fn introduce(&self, domid: u16, mfn: u64, port: u32) -> Result<(), XsError> {
        let parts = [domid.to_string(), mfn.to_string(), port.to_string()];
        self.request(MsgType::Introduce, 0, &wire::join_strings(&parts))
            .map(drop)
    }

    /// RELEASE (domain 0 only): closes the domain's socket and connections.
    pub fn release(&self, domid: u16) -> Result<(), XsError> {
        self.request(
            MsgType::Release,
            0,
            &wire::join_strings(&[domid.to_string()]),
        )
        .map(drop)
    }

    /// Whether the daemon knows the domain.
    pub fn is_domain_introduced(&self, domid: u16) -> Result<bool, XsError> {
        let r = self.request(
            MsgType::IsDomainIntroduced,
            0,
            &wire::join_strings(&[domid.to_string()]),
        )?;
        Ok(r.first() == Some(&b'T'))
    }

    /// Starts a transaction.
    pub fn transaction(&self) -> Result<Transaction<'_>, XsError> {
        let r = self.request(MsgType::TransactionStart, 0, b"\0")?;
        let id: u32 = into_string(r)?
            .parse()
            .map_err(|_| XsError::Protocol("transaction id is not a number".into()))?;
        Ok(Transaction {
            client: self,
            id,
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

fn write_op(c: &XsClient, tx: u32, path: &str, value: &[u8]) -> Result<(), XsError> {
    let mut p = Vec::with_capacity(path.len() + 1 + value.len());
    p.extend_from_slice(path.as_bytes());
    p.push(0);
    p.extend_from_slice(value);
    c.request(MsgType::Write, tx, &p).map(drop)
}

fn set_perms_op(c: &XsClient, tx: u32, path: &str, perms: &[Perm]) -> Result<(), XsError> {
    let mut p = wire::join_strings(&[path]);
    p.extend_from_slice(&Perms(perms.to_vec()).to_payload());
    c.request(MsgType::SetPerms, tx, &p).map(drop)
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
    done: bool,
}

impl Transaction<'_> {
    /// The daemon's transaction id.
    pub fn id(&self) -> u32 {
        self.id
    }
    /// Like [`XsClient::read`], inside the transaction.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, XsError> {
        self.client.path_op(MsgType::Read, self.id, path)
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
        write_op(self.client, self.id, path, value.as_ref())
    }
    /// Like [`XsClient::mkdir`], inside the transaction.
    pub fn mkdir(&self, path: &str) -> Result<(), XsError> {
        self.client.path_op(MsgType::Mkdir, self.id, path).map(drop)
    }
    /// Like [`XsClient::rm`], inside the transaction.
    pub fn rm(&self, path: &str) -> Result<(), XsError> {
        self.client.path_op(MsgType::Rm, self.id, path).map(drop)
    }
    /// Like [`XsClient::directory`], inside the transaction.
    pub fn directory(&self, path: &str) -> Result<Vec<String>, XsError> {
        names(self.client.path_op(MsgType::Directory, self.id, path)?)
    }
    /// Like [`XsClient::set_perms`], inside the transaction.
    pub fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        set_perms_op(self.client, self.id, path, perms)
    }
    /// Commits; `Err(Errno(EAGAIN))` when another writer touched what this
    /// transaction read or wrote.
    pub fn commit(mut self) -> Result<(), XsError> {
        self.done = true;
        self.client
            .request(MsgType::TransactionEnd, self.id, b"T\0")
            .map(drop)
    }
    /// Aborts, discarding every change.
    pub fn abort(mut self) -> Result<(), XsError> {
        self.done = true;
        self.client
            .request(MsgType::TransactionEnd, self.id, b"F\0")
            .map(drop)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .client
                .request(MsgType::TransactionEnd, self.id, b"F\0");
        }
    }
}

fn read_loop(
    mut r: UnixStream,
    inner: &std::sync::Weak<Inner>,
    events: mpsc::Sender<WatchEvent>,
) -> io::Result<()> {
    let mut hdr = [0u8; HEADER_LEN];
    loop {
        r.read_exact(&mut hdr)?;
        let h = Header::parse(&hdr).map_err(|_| io::Error::other("oversized reply"))?;
        let mut body = vec![0u8; h.len as usize];
        r.read_exact(&mut body)?;
        if h.ty == MsgType::WatchEvent as u32 {
            let parts = wire::split_strings(&body);
            if let [path, token, ..] = parts[..] {
                let ev = WatchEvent {
                    path: String::from_utf8_lossy(path).into_owned(),
                    token: String::from_utf8_lossy(token).into_owned(),
                };
                if events.send(ev).is_err() {
                    return Ok(());
                }
            }
            continue;
        }
        let Some(inner) = inner.upgrade() else {
            return Ok(());
        };
        let waiter = inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&h.req_id);
        if let Some(w) = waiter {
            let reply = if h.ty == MsgType::Error as u32 {
                Err(XsError::Errno(Errno::from_payload(&body)))
            } else {
                Ok(body)
            };
            let _ = w.send(reply);
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
