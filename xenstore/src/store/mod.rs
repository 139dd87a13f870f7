//! The XenStore tree and Xen's node permissions, independent of any socket.
//!
//! Xen's rules (who may read, create, write, remove or set permissions, and
//! the node quota) are written once, over [`Nodes`]: where nodes are kept.
//! Two kinds of storage implement it: the live [`Tree`], and a transaction's
//! view of it ([`TxView`]), which holds only the nodes the transaction changed
//! ([`Overlay`]) and reads everything else from the live tree, so a
//! transaction costs what it touches, not the size of the store.
//!
//! Every ancestor of a node exists. Each node carries a generation that
//! changes whenever the node, its permissions or its set of children change;
//! transactions detect conflicts by comparing generations.

mod overlay;
mod perms;
mod tree;

pub use overlay::{Overlay, TxView};
pub use perms::{Access, Perm, Perms};
pub use tree::Tree;

use crate::wire::Errno;

/// One node.
#[derive(Clone, Debug)]
pub struct Node {
    /// The value bytes.
    pub value: Vec<u8>,
    /// Who may do what.
    pub perms: Perms,
    /// Changes whenever the node, its permissions or its children change.
    pub gen: u64,
}

/// Who is asking: the domain behind the connection, and whether it is
/// privileged (domain 0's socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The domain behind the connection.
    pub domid: u16,
    /// Domain 0's socket: all access.
    pub privileged: bool,
}

impl Caller {
    /// Domain 0 (privileged).
    pub const DOM0: Caller = Caller {
        domid: 0,
        privileged: true,
    };
    /// An unprivileged domain.
    pub fn guest(domid: u16) -> Self {
        Caller {
            domid,
            privileged: false,
        }
    }

    fn access(self, perms: &Perms) -> Access {
        perms.access_for(self.domid, self.privileged)
    }
}

/// The parent of a canonical absolute path (`/` for top-level nodes).
pub fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

fn child_prefix(path: &str) -> String {
    if path == "/" {
        "/".to_owned()
    } else {
        format!("{path}/")
    }
}

/// Is `path` equal to `ancestor` or below it?
pub fn is_child_or_self(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || (path.starts_with(ancestor) && path.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

/// A change, for firing watches: the node path, the permissions that decide
/// who may see the event, and whether watches below the path fire too (removal).
#[derive(Clone, Debug)]
pub struct Change {
    /// The node.
    pub path: String,
    /// Permissions deciding who sees the event.
    pub perms: Perms,
    /// Watches below the node fire too (removal).
    pub recursive: bool,
}

/// Where nodes are kept, and Xen's rules over them. Implementors provide the
/// storage (the first seven methods, none of which checks anything); the
/// rules are provided methods, the same for the live tree and a transaction.
/// Paths are canonical and absolute.
pub trait Nodes {
    /// A node, without permission checks.
    fn get(&self, path: &str) -> Option<&Node>;
    /// Direct children's names, sorted.
    fn children(&self, path: &str) -> Vec<String>;
    /// `path` (which exists) and every path below it, parents first.
    fn subtree(&self, path: &str) -> Vec<String>;
    /// Nodes owned by a domain.
    fn owned_by(&self, domid: u16) -> usize;
    /// Sets a node's value and permissions, with a fresh generation. Its
    /// parent must exist.
    fn put(&mut self, path: &str, value: Vec<u8>, perms: Perms);
    /// Removes one node (its children are the caller's business).
    fn take(&mut self, path: &str) -> Option<Node>;
    /// Gives an existing node a fresh generation (a child came or went).
    fn touch(&mut self, path: &str);

    /// The nearest existing node at or above `path` (`None` only without a
    /// root, which a tree always has).
    fn nearest<'p>(&self, path: &'p str) -> Option<(&'p str, &Node)> {
        // Not an absolute path (a caller bug) is judged by the root.
        let mut p = if path.starts_with('/') { path } else { "/" };
        loop {
            if let Some(n) = self.get(p) {
                return Some((p, n));
            }
            p = parent_of(p)?;
        }
    }

    /// Reads a node; a missing node under an unreadable ancestor is EACCES, as
    /// in xenstored, so existence does not leak either.
    fn read(&self, caller: Caller, path: &str) -> Result<&Node, Errno> {
        match self.get(path) {
            Some(n) if caller.access(&n.perms).can_read() => Ok(n),
            Some(_) => Err(Errno::EACCES),
            None => match self.nearest(path) {
                Some((_, n)) if caller.access(&n.perms).can_read() => Err(Errno::ENOENT),
                _ => Err(Errno::EACCES),
            },
        }
    }

    /// Creates `path` (and any missing ancestors) if absent; returns the paths
    /// created, top-down. New nodes inherit their parent's permissions, and an
    /// unprivileged creator becomes their owner. Checks write access on the
    /// nearest existing ancestor and the caller's node quota.
    fn create(
        &mut self,
        caller: Caller,
        path: &str,
        node_quota: usize,
    ) -> Result<Vec<String>, Errno> {
        if self.get(path).is_some() {
            return Ok(Vec::new());
        }
        let (anc_path, anc) = self.nearest(path).ok_or(Errno::EACCES)?;
        if !caller.access(&anc.perms).can_write() {
            return Err(Errno::EACCES);
        }
        let anc_path = anc_path.to_owned();
        let mut perms = anc.perms.clone();
        if !caller.privileged {
            if let Some(first) = perms.0.first_mut() {
                first.domid = caller.domid;
            }
        }
        // The missing components, top-down.
        let mut missing = Vec::new();
        let mut p = path;
        while p != anc_path {
            missing.push(p.to_owned());
            p = parent_of(p).ok_or(Errno::EINVAL)?;
        }
        missing.reverse();
        if !caller.privileged && self.owned_by(caller.domid) + missing.len() > node_quota {
            return Err(Errno::ENOSPC);
        }
        for m in &missing {
            self.put(m, Vec::new(), perms.clone());
        }
        self.touch(&anc_path);
        Ok(missing)
    }

    /// Writes a node's value, creating it as [`Nodes::create`] does.
    fn write(
        &mut self,
        caller: Caller,
        path: &str,
        value: &[u8],
        node_quota: usize,
    ) -> Result<Vec<String>, Errno> {
        if let Some(n) = self.get(path) {
            if !caller.access(&n.perms).can_write() {
                return Err(Errno::EACCES);
            }
        }
        let created = self.create(caller, path, node_quota)?;
        let perms = self.get(path).ok_or(Errno::ENOENT)?.perms.clone();
        self.put(path, value.to_vec(), perms);
        Ok(created)
    }

    /// Removes a node and everything below it; returns the removed nodes
    /// (path, permissions), top-down. The root cannot be removed.
    fn remove(&mut self, caller: Caller, path: &str) -> Result<Vec<(String, Perms)>, Errno> {
        if path == "/" {
            return Err(Errno::EINVAL);
        }
        self.read_for_write(caller, path)?;
        // Children first: once a node is gone, a transaction no longer sees
        // what was below it.
        let mut removed = Vec::new();
        for d in self.subtree(path).into_iter().rev() {
            if let Some(node) = self.take(&d) {
                removed.push((d, node.perms));
            }
        }
        removed.reverse();
        if let Some(parent) = parent_of(path) {
            self.touch(parent);
        }
        Ok(removed)
    }

    /// The node, if the caller may write it; errors as [`Nodes::read`] does.
    fn read_for_write(&self, caller: Caller, path: &str) -> Result<&Node, Errno> {
        match self.get(path) {
            Some(n) if caller.access(&n.perms).can_write() => Ok(n),
            Some(_) => Err(Errno::EACCES),
            None => match self.read(caller, path) {
                Err(e) => Err(e),
                Ok(_) => Err(Errno::ENOENT),
            },
        }
    }

    /// Replaces a node's permissions. Only the owner (or the privileged domain)
    /// may, and an unprivileged owner cannot give the node away.
    fn set_perms(&mut self, caller: Caller, path: &str, perms: Perms) -> Result<(), Errno> {
        let n = self.read_for_write(caller, path)?;
        if !caller.privileged {
            if n.perms.owner() != caller.domid {
                return Err(Errno::EACCES);
            }
            if perms.owner() != n.perms.owner() {
                return Err(Errno::EPERM);
            }
        }
        let value = n.value.clone();
        self.put(path, value, perms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: usize = 1000;

    #[test]
    fn create_inherits_and_guest_owns() {
        let mut t = Tree::new();
        t.ensure("/local/domain/5", Perms::owned_by(5));
        let g = Caller::guest(5);
        let created = t.write(g, "/local/domain/5/a/b", b"v", Q).unwrap();
        assert_eq!(created, vec!["/local/domain/5/a", "/local/domain/5/a/b"]);
        assert_eq!(t.get("/local/domain/5/a/b").unwrap().perms.owner(), 5);
        assert_eq!(t.children("/local/domain/5"), vec!["a"]);
        // Another guest can neither read nor write, nor learn what exists.
        let other = Caller::guest(6);
        assert_eq!(
            t.read(other, "/local/domain/5/a/b").unwrap_err(),
            Errno::EACCES
        );
        assert_eq!(
            t.read(other, "/local/domain/5/zzz").unwrap_err(),
            Errno::EACCES
        );
        assert_eq!(
            t.write(other, "/local/domain/5/x", b"", Q).unwrap_err(),
            Errno::EACCES
        );
        assert_eq!(t.write(g, "/tool/x", b"", Q).unwrap_err(), Errno::EACCES);
        assert_eq!(t.read(g, "/local/domain/5/zzz").unwrap_err(), Errno::ENOENT);
    }

    #[test]
    fn non_absolute_paths_do_not_panic() {
        // Found by fuzzing: a DIRECTORY of "@z" reached `nearest` with no parent.
        let t = Tree::new();
        assert_eq!(t.read(Caller::guest(3), "@z").unwrap_err(), Errno::EACCES);
        assert_eq!(t.read(Caller::DOM0, "@z").unwrap_err(), Errno::ENOENT);
    }

    #[test]
    fn children_are_direct_only() {
        let mut t = Tree::new();
        for p in ["/a/b", "/a/b-x", "/a/b/c", "/a/c"] {
            t.write(Caller::DOM0, p, b"", Q).unwrap();
        }
        assert_eq!(t.children("/a"), vec!["b", "b-x", "c"]);
        assert_eq!(t.children("/"), vec!["a"]);
        let removed = t.remove(Caller::DOM0, "/a/b").unwrap();
        assert_eq!(removed.len(), 2);
        assert_eq!(t.children("/a"), vec!["b-x", "c"]);
        assert!(t.remove(Caller::DOM0, "/").is_err());
    }

    #[test]
    fn set_perms_rules_and_quota() {
        let mut t = Tree::new();
        t.ensure("/local/domain/5", Perms::owned_by(5));
        let g = Caller::guest(5);
        t.write(g, "/local/domain/5/x", b"1", Q).unwrap();
        let give_away = Perms::owned_by(6);
        assert_eq!(
            t.set_perms(g, "/local/domain/5/x", give_away).unwrap_err(),
            Errno::EPERM
        );
        let share = Perms(vec![Perm::new(5, Access::None), Perm::new(6, Access::Read)]);
        t.set_perms(g, "/local/domain/5/x", share).unwrap();
        assert!(t.read(Caller::guest(6), "/local/domain/5/x").is_ok());
        let before = t.owned_by(5);
        assert_eq!(
            t.write(g, "/local/domain/5/q/r", b"", before + 1)
                .unwrap_err(),
            Errno::ENOSPC
        );
    }
}
