//! Domains: INTRODUCE gives a domain its own socket (its connections are that
//! domain), RELEASE removes it and closes its connections.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use crate::store::{Caller, Change, Perms};
use crate::wire::Errno;

use super::*;

pub(super) fn introduce(sh: &Arc<Shared>, st: &mut State, domid: u16) -> Result<PathBuf, Errno> {
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
pub(super) fn listen_domain(sh: &Arc<Shared>, domid: u16) -> io::Result<DomainEntry> {
    let path = domain_socket(&sh.dir, domid);
    let listener = bind(&path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sh2 = sh.clone();
    let stop2 = stop.clone();
    let accept = thread::Builder::new()
        .name(format!("xenstored-dom{domid}"))
        .spawn(move || accept_loop(sh2, listener, Caller::guest(domid), stop2))?;
    Ok(DomainEntry {
        socket: path,
        stop,
        accept,
    })
}

pub(super) fn release(sh: &Shared, st: &mut State, domid: u16) -> Result<(), Errno> {
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
