//! Connections: listening sockets (bound under a temporary name and renamed into
//! place), one reader and one writer thread per client, and socket clean-up.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use crate::store::Caller;
use crate::wire::{Header, MsgType, HEADER_LEN, PAYLOAD_MAX};

use super::outbox::Backlog;
use super::*;

/// Removes sockets of domains the daemon does not serve (left by a daemon that
/// died, or from an earlier store), so clients of those domains see at once
/// that they are gone.
pub(super) fn remove_stale_domain_sockets(dir: &Path, keep: &BTreeSet<u16>) {
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
pub(super) fn unlisten(socket: &Path) {
    let closing = socket.with_extension("closing");
    if std::fs::rename(socket, &closing).is_ok() {
        let _ = UnixStream::connect(&closing);
        let _ = std::fs::remove_file(&closing);
    }
}

pub(super) fn served(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("{} is served by a running xenstored", path.display()),
    )
}

/// Listens on `path`. A socket already there that nobody answers (left by a
/// daemon that died) is replaced atomically: the new one is bound under a
/// temporary name and renamed over it.
pub(super) fn bind(path: &Path) -> io::Result<UnixListener> {
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

pub(super) fn accept_loop(
    sh: Arc<Shared>,
    listener: UnixListener,
    caller: Caller,
    stop: Arc<AtomicBool>,
) {
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

pub(super) fn start_conn(sh: &Arc<Shared>, stream: UnixStream, caller: Caller) -> io::Result<()> {
    let reader = stream.try_clone()?;
    let writer = stream.try_clone()?;
    let (out, rx, backlog) = Outbox::new();
    let room = backlog.clone();
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
                out,
                watches: Vec::new(),
                txs: HashMap::new(),
            },
        );
        id
    };
    thread::Builder::new()
        .name(format!("xs-w{id}"))
        .spawn(move || writer_loop(writer, rx, &backlog))?;
    let sh2 = sh.clone();
    thread::Builder::new()
        .name(format!("xs-r{id}"))
        .spawn(move || {
            reader_loop(&sh2, id, reader, &room);
            let mut st = sh2.lock();
            if let Some(c) = st.conns.remove(&id) {
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
        })?;
    Ok(())
}

pub(super) fn writer_loop(mut w: UnixStream, rx: mpsc::Receiver<Vec<u8>>, backlog: &Backlog) {
    while let Ok(msg) = rx.recv() {
        let written = w.write_all(&msg);
        backlog.sent(msg.len());
        if written.is_err() {
            let _ = w.shutdown(std::net::Shutdown::Both);
            break;
        }
    }
    backlog.close();
}

pub(super) fn reader_loop(sh: &Arc<Shared>, id: u64, mut r: UnixStream, backlog: &Backlog) {
    let mut hdr = [0u8; HEADER_LEN];
    let mut payload = vec![0u8; PAYLOAD_MAX];
    loop {
        // A client that does not read its replies is not read either: what
        // the daemon holds for it stays bounded, and its own writes block.
        if !backlog.wait_for_room(sh.limits.outstanding_bytes, &sh.stats) {
            return;
        }
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
                (MsgType::Error as u32, e.payload().to_vec())
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
            c.out.push(msg, &sh.stats);
            for ev in after {
                c.out.push(ev, &sh.stats);
            }
        }
    }
}
