//! Request handling: one xs_wire request of a connection in, its reply and the
//! tree changes out (read, write, mkdir, rm, directory, permissions, transactions,
//! watches, introduce/release).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::store::{parent_of, Caller, Change, Nodes, Perms, Tree};
use crate::wire::{self, check_path, Errno, Header, MsgType, ABS_PATH_MAX, PAYLOAD_MAX};

use super::*;

pub(super) const OK: &[u8] = b"OK\0";

/// The canonical absolute form of a client path.
pub(super) fn canonical(caller: Caller, path: &str) -> Result<String, Errno> {
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

pub(super) fn first_str(body: &[u8]) -> Result<&str, Errno> {
    let parts = wire::split_strings(body);
    let s = parts.first().ok_or(Errno::EINVAL)?;
    std::str::from_utf8(s).map_err(|_| Errno::EINVAL)
}

pub(super) fn parse_domid(s: &[u8]) -> Result<u16, Errno> {
    let s = std::str::from_utf8(s).map_err(|_| Errno::EINVAL)?;
    s.parse::<u16>().map_err(|_| Errno::EINVAL)
}

pub(super) type Handled = (Vec<u8>, Vec<Vec<u8>>);

/// Result of one tree operation, on the live tree or a transaction's copy.
pub(super) struct Outcome {
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

pub(super) fn tree_op(
    limits: &Limits,
    tree: &mut impl Nodes,
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

pub(super) fn written_outcome(tree: &impl Nodes, path: String, created: Vec<String>) -> Outcome {
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

/// A tree request inside transaction `tx_id`: run on the transaction's view
/// of the tree, recording what it accessed.
fn in_transaction(
    sh: &Shared,
    st: &mut State,
    id: u64,
    tx_id: u32,
    caller: Caller,
    ty: MsgType,
    body: &[u8],
) -> Result<Handled, Errno> {
    let limits = &sh.limits;
    let State { conns, tree, .. } = st;
    let conn = conns.get_mut(&id).ok_or(Errno::EIO)?;
    let tx = conn.txs.get_mut(&tx_id).ok_or(Errno::ENOENT)?;
    let copies = tx.overlay.changed();
    let mut view = tx.overlay.view(tree);
    let out = match tree_op(limits, &mut view, caller, ty, body) {
        Ok(out) => out,
        Err(e) => {
            view.rollback();
            return Err(e);
        }
    };
    let accessed = view.accessed_with(out.read.iter().chain(&out.written));
    if !caller.privileged && accessed > limits.nodes_per_transaction {
        // Refused, so undone; and the transaction can no longer commit.
        view.rollback();
        tx.failed = true;
        return Err(Errno::ENOSPC);
    }
    drop(view);
    tx.overlay
        .note_accessed(tree, out.read.iter().chain(&out.written));
    tx.changes.extend(out.changes);
    let copied = tx.overlay.changed().saturating_sub(copies);
    sh.stats
        .transaction_node_copies
        .fetch_add(copied as u64, Ordering::Relaxed);
    Ok((out.reply, Vec::new()))
}

pub(super) fn handle(
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
                in_transaction(sh, st, id, h.tx_id, caller, ty, body)
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
            // Refused before anything is allocated; and starting one copies
            // nothing: a transaction holds only the nodes it changes.
            let open = st.conns.get(&id).ok_or(Errno::EIO)?.txs.len();
            if !caller.privileged && open >= limits.transactions_per_connection {
                return Err(Errno::ENOSPC);
            }
            let txid = st.next_tx;
            st.next_tx = st.next_tx.wrapping_add(1).max(1);
            let conn = st.conns.get_mut(&id).ok_or(Errno::EIO)?;
            conn.txs.insert(txid, Transaction::default());
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
            if tx.failed {
                // xenstored answers ENOMEM, its generic failed-transaction
                // error; ENOSPC names the limit that was hit.
                sh.stats
                    .transaction_quota_refusals
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Errno::ENOSPC);
            }
            if tx.overlay.conflicts_with(&st.tree) {
                sh.stats
                    .transaction_conflicts
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Errno::EAGAIN);
            }
            // The quota was checked against the transaction's view; other
            // commits may have used it up since (xenstored checks it again).
            let over_quota = tx
                .overlay
                .growth()
                .any(|(d, more)| st.tree.owned_by(d) + more > limits.nodes_per_domain);
            if !caller.privileged && over_quota {
                sh.stats
                    .transaction_quota_refusals
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Errno::ENOSPC);
            }
            let changed = st.tree.commit(tx.overlay);
            note_paths(st, &changed);
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
