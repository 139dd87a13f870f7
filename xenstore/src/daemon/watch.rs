//! Watches: the WATCH_EVENT messages a set of tree changes fires.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use crate::store::{is_child_or_self, Change};
use crate::wire::{self, MsgType};

use super::*;

pub(super) fn watch_event(path: &str, token: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(path.len() + token.len() + 2);
    p.extend_from_slice(path.as_bytes());
    p.push(0);
    p.extend_from_slice(token);
    p.push(0);
    wire::encode(MsgType::WatchEvent, 0, 0, &p)
}

/// Queues watch events for `changes` to every connection allowed to see them.
pub(super) fn fire(sh: &Shared, st: &State, changes: &[Change]) {
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
                let full = conn.out.messages() >= sh.limits.outstanding_messages
                    || conn.out.bytes() >= sh.limits.outstanding_bytes;
                if !conn.caller.privileged && full {
                    sh.stats
                        .watch_events_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        domid = conn.caller.domid,
                        "xenstored: watch event for {shown} dropped: client not reading"
                    );
                    continue;
                }
                sh.stats.watch_events.fetch_add(1, Ordering::Relaxed);
                conn.out.push(watch_event(&shown, &w.token), &sh.stats);
            }
        }
    }
}
