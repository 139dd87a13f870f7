//! The XenStore tree and Xen's node permissions, independent of any socket.
//!
//! Nodes are kept in one ordered map keyed by canonical absolute path; every
//! ancestor of a node exists, so the direct children of `/a` are exactly the
//! keys `/a/<name>` without a further `/`. Each node carries a generation that
//! changes whenever the node, its permissions or its set of children change;
//! transactions detect conflicts by comparing generations.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::wire::Errno;

/// `n`, `r`, `w` or `b` (both) for one domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// Grants reading.
    pub fn can_read(self) -> bool {
        matches!(self, Access::Read | Access::Both)
    }
    /// Grants writing.
    pub fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::Both)
    }
    fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }
}

/// One entry of a node's permission list, as on the wire (`"r5"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain this entry is about.
    pub domid: u16,
    /// What it may do.
    pub access: Access,
}

impl Perm {
    /// An entry.
    pub const fn new(domid: u16, access: Access) -> Self {
        Perm { domid, access }
    }

    /// Parses `"<n|r|w|b><domid>"`.
    pub fn parse(s: &[u8]) -> Result<Self, Errno> {
        let (&first, rest) = s.split_first().ok_or(Errno::EINVAL)?;
        let access = match first {
            b'n' => Access::None,
            b'r' => Access::Read,
            b'w' => Access::Write,
            b'b' => Access::Both,
            _ => return Err(Errno::EINVAL),
        };
        if rest.is_empty() || rest.len() > 5 || !rest.iter().all(u8::is_ascii_digit) {
            return Err(Errno::EINVAL);
        }
        let domid: u32 = std::str::from_utf8(rest)
            .map_err(|_| Errno::EINVAL)?
            .parse()
            .map_err(|_| Errno::EINVAL)?;
        let domid = u16::try_from(domid).map_err(|_| Errno::EINVAL)?;
        Ok(Perm { domid, access })
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

/// A node's permission list: the first entry names the owner and the access of
/// every domain not listed; later entries grant specific domains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perms(pub Vec<Perm>);

impl Perms {
    /// Owned by `owner`, nobody else may read or write.
    pub fn owned_by(owner: u16) -> Self {
        Perms(vec![Perm::new(owner, Access::None)])
    }

    /// The owning domain (first entry).
    pub fn owner(&self) -> u16 {
        self.0.first().map_or(0, |p| p.domid)
    }

    /// Xen's `perm_for_conn`: the privileged domain and the owner get both; a
    /// listed domain gets its entry; everyone else the first entry's access.
    pub fn access_for(&self, domid: u16, privileged: bool) -> Access {
        if privileged || self.owner() == domid {
            return Access::Both;
        }
        if let Some(p) = self.0.iter().skip(1).find(|p| p.domid == domid) {
            return p.access;
        }
        self.0.first().map_or(Access::None, |p| p.access)
    }

    /// Parses a SET_PERMS/GET_PERMS list of perm strings.
    pub fn parse<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, Errno> {
        let v = parts
            .into_iter()
            .map(Perm::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if v.is_empty() {
            return Err(Errno::EINVAL);
        }
        Ok(Perms(v))
    }

    /// The wire form: each perm string followed by a NUL.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.0 {
            out.extend_from_slice(p.to_string().as_bytes());
            out.push(0);
        }
        out
    }
}

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

/// The tree.
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    /// Nodes owned per domain, for quotas.
    owned: HashMap<u16, usize>,
    next_gen: u64,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// A tree holding the root only, owned by domain 0 and unreadable by others.
    pub fn new() -> Self {
        let mut t = Tree {
            nodes: BTreeMap::new(),
            owned: HashMap::new(),
            next_gen: 1,
        };
        t.put("/".to_owned(), Vec::new(), Perms::owned_by(0));
        t
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true: the root always exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A node by canonical path, without permission checks.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Nodes owned by a domain.
    pub fn owned_by(&self, domid: u16) -> usize {
        self.owned.get(&domid).copied().unwrap_or(0)
    }

    fn gen(&mut self) -> u64 {
        self.next_gen += 1;
        self.next_gen
    }

    fn put(&mut self, path: String, value: Vec<u8>, perms: Perms) {
        let gen = self.gen();
        *self.owned.entry(perms.owner()).or_default() += 1;
        if let Some(old) = self.nodes.insert(path, Node { value, perms, gen }) {
            self.disown(old.perms.owner());
        }
    }

    fn disown(&mut self, owner: u16) {
        if let Some(n) = self.owned.get_mut(&owner) {
            *n = n.saturating_sub(1);
        }
    }

    fn touch(&mut self, path: &str) {
        let gen = self.gen();
        if let Some(n) = self.nodes.get_mut(path) {
            n.gen = gen;
        }
    }

    /// Direct children's names, sorted.
    pub fn children(&self, path: &str) -> Vec<String> {
        let prefix = child_prefix(path);
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| {
                let rest = &k[prefix.len()..];
                (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_owned())
            })
            .collect()
    }

    /// The nearest existing node at or above `path`.
    pub fn nearest(&self, path: &str) -> (&str, &Node) {
        let mut p = path;
        loop {
            if let Some((k, n)) = self.nodes.get_key_value(p) {
                return (k.as_str(), n);
            }
            match parent_of(p) {
                Some(parent) => p = parent,
                // Not an absolute path (a caller bug): judge it by the root.
                None => p = "/",
            }
        }
    }

    /// Reads a node; a missing node under an unreadable ancestor is EACCES, as
    /// in xenstored, so existence does not leak either.
    pub fn read(&self, caller: Caller, path: &str) -> Result<&Node, Errno> {
        match self.nodes.get(path) {
            Some(n)
                if n.perms
                    .access_for(caller.domid, caller.privileged)
                    .can_read() =>
            {
                Ok(n)
            }
            Some(_) => Err(Errno::EACCES),
            None => {
                let (_, n) = self.nearest(path);
                if n.perms
                    .access_for(caller.domid, caller.privileged)
                    .can_read()
                {
                    Err(Errno::ENOENT)
                } else {
                    Err(Errno::EACCES)
                }
            }
        }
    }

    /// Creates `path` (and any missing ancestors) if absent; returns the paths
    /// created, top-down. New nodes inherit their parent's permissions, and an
    /// unprivileged creator becomes their owner. Checks write access on the
    /// nearest existing ancestor and the caller's node quota.
    pub fn create(
        &mut self,
        caller: Caller,
        path: &str,
        node_quota: usize,
    ) -> Result<Vec<String>, Errno> {
        if self.nodes.contains_key(path) {
            return Ok(Vec::new());
        }
        let (anc_path, anc) = self.nearest(path);
        if !anc
            .perms
            .access_for(caller.domid, caller.privileged)
            .can_write()
        {
            return Err(Errno::EACCES);
        }
        let anc_path = anc_path.to_owned();
        let mut perms = anc.perms.clone();
        if !caller.privileged {
            perms.0[0].domid = caller.domid;
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
            self.put(m.clone(), Vec::new(), perms.clone());
        }
        self.touch(&anc_path);
        Ok(missing)
    }

    /// Writes a node's value, creating it as [`Tree::create`] does.
    pub fn write(
        &mut self,
        caller: Caller,
        path: &str,
        value: &[u8],
        node_quota: usize,
    ) -> Result<Vec<String>, Errno> {
        if let Some(n) = self.nodes.get(path) {
            if !n
                .perms
                .access_for(caller.domid, caller.privileged)
                .can_write()
            {
                return Err(Errno::EACCES);
            }
        }
        let created = self.create(caller, path, node_quota)?;
        let gen = self.gen();
        let n = self.nodes.get_mut(path).ok_or(Errno::ENOENT)?;
        n.value = value.to_vec();
        n.gen = gen;
        Ok(created)
    }

    /// Removes a node and everything below it; returns the removed nodes
    /// (path, permissions), top-down. The root cannot be removed.
    pub fn remove(&mut self, caller: Caller, path: &str) -> Result<Vec<(String, Perms)>, Errno> {
        if path == "/" {
            return Err(Errno::EINVAL);
        }
        let n = self.read_for_write(caller, path)?;
        let _ = n;
        let prefix = child_prefix(path);
        let mut doomed = vec![path.to_owned()];
        doomed.extend(
            self.nodes
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone()),
        );
        let mut removed = Vec::with_capacity(doomed.len());
        for d in doomed {
            if let Some(node) = self.nodes.remove(&d) {
                self.disown(node.perms.owner());
                removed.push((d, node.perms));
            }
        }
        if let Some(parent) = parent_of(path) {
            let parent = parent.to_owned();
            self.touch(&parent);
        }
        Ok(removed)
    }

    fn read_for_write(&self, caller: Caller, path: &str) -> Result<&Node, Errno> {
        match self.nodes.get(path) {
            Some(n)
                if n.perms
                    .access_for(caller.domid, caller.privileged)
                    .can_write() =>
            {
                Ok(n)
            }
            Some(_) => Err(Errno::EACCES),
            None => match self.read(caller, path) {
                Err(e) => Err(e),
                Ok(_) => Err(Errno::ENOENT),
            },
        }
    }

    /// Replaces a node's permissions. Only the owner (or the privileged domain)
    /// may, and an unprivileged owner cannot give the node away.
    pub fn set_perms(&mut self, caller: Caller, path: &str, perms: Perms) -> Result<(), Errno> {
        let n = self.read_for_write(caller, path)?;
        if !caller.privileged {
            if n.perms.owner() != caller.domid {
                return Err(Errno::EACCES);
            }
            if perms.owner() != n.perms.owner() {
                return Err(Errno::EPERM);
            }
        }
        let old_owner = n.perms.owner();
        let new_owner = perms.owner();
        let gen = self.gen();
        if let Some(n) = self.nodes.get_mut(path) {
            n.perms = perms;
            n.gen = gen;
        }
        if old_owner != new_owner {
            self.disown(old_owner);
            *self.owned.entry(new_owner).or_default() += 1;
        }
        Ok(())
    }

    /// Copies the state of `paths` from `other` into `self` (transaction
    /// commit), giving every copied node a fresh generation.
    pub fn adopt(&mut self, other: &Tree, paths: &BTreeSet<String>) {
        for p in paths {
            match other.nodes.get(p) {
                Some(n) => self.put(p.clone(), n.value.clone(), n.perms.clone()),
                None => {
                    if let Some(old) = self.nodes.remove(p) {
                        self.disown(old.perms.owner());
                    }
                }
            }
        }
    }

    /// All paths at or below `path` (for recording a transaction's footprint).
    pub fn subtree(&self, path: &str) -> Vec<String> {
        let prefix = child_prefix(path);
        let mut v = vec![path.to_owned()];
        v.extend(
            self.nodes
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone()),
        );
        v
    }

    /// The generation of a node, `None` when absent.
    pub fn gen_of(&self, path: &str) -> Option<u64> {
        self.nodes.get(path).map(|n| n.gen)
    }

    /// The tree's invariants (for tests and fuzzing): the root exists, every
    /// node's parent exists, and the per-owner counts match the nodes.
    pub fn check_invariants(&self) -> Result<(), String> {
        if !self.nodes.contains_key("/") {
            return Err("root missing".into());
        }
        let mut owned: HashMap<u16, usize> = HashMap::new();
        for (path, node) in &self.nodes {
            if let Some(parent) = parent_of(path) {
                if !self.nodes.contains_key(parent) {
                    return Err(format!("{path} has no parent"));
                }
            }
            *owned.entry(node.perms.owner()).or_default() += 1;
        }
        for (d, n) in &owned {
            if self.owned_by(*d) != *n {
                return Err(format!(
                    "domain {d} owns {n} nodes, counted {}",
                    self.owned_by(*d)
                ));
            }
        }
        Ok(())
    }

    /// Every node, in path order (parents before children), for snapshots.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, n)| (k.as_str(), n))
    }

    /// Sets a node exactly (value and permissions), without permission checks,
    /// creating missing ancestors with the root's permissions: replaying the
    /// daemon's journal. `path` must be canonical and absolute.
    pub fn restore_node(&mut self, path: &str, value: Vec<u8>, perms: Perms) {
        if let Some(parent) = parent_of(path) {
            if !self.nodes.contains_key(parent) {
                let pp = self.nodes.get("/").map(|n| n.perms.clone());
                self.ensure(parent, pp.unwrap_or(Perms::owned_by(0)));
            }
        }
        self.put(path.to_owned(), value, perms);
    }

    /// Removes a node and its subtree without permission checks (journal
    /// replay); the root stays.
    pub fn purge(&mut self, path: &str) {
        if path == "/" {
            return;
        }
        for p in self.subtree(path) {
            if let Some(old) = self.nodes.remove(&p) {
                self.disown(old.perms.owner());
            }
        }
    }

    /// Privileged helper for the daemon's own bookkeeping (domain homes).
    pub fn ensure(&mut self, path: &str, perms: Perms) {
        if !self.nodes.contains_key(path) {
            if let Some(parent) = parent_of(path) {
                if !self.nodes.contains_key(parent) {
                    let pp = self
                        .nodes
                        .get("/")
                        .map(|n| n.perms.clone())
                        .unwrap_or(Perms::owned_by(0));
                    self.ensure(parent, pp);
                }
                let parent = parent.to_owned();
                self.touch(&parent);
            }
            self.put(path.to_owned(), Vec::new(), perms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: usize = 1000;

    #[test]
    fn perms_parse_and_access() {
        let p = Perms::parse([&b"n5"[..], b"r7", b"b9"]).unwrap();
        assert_eq!(p.to_payload(), b"n5\0r7\0b9\0");
        assert_eq!(p.access_for(5, false), Access::Both);
        assert_eq!(p.access_for(7, false), Access::Read);
        assert_eq!(p.access_for(9, false), Access::Both);
        assert_eq!(p.access_for(3, false), Access::None);
        assert_eq!(p.access_for(3, true), Access::Both);
        assert!(Perm::parse(b"x1").is_err());
        assert!(Perm::parse(b"r").is_err());
        assert!(Perm::parse(b"r70000").is_err());
        assert!(Perms::parse(std::iter::empty()).is_err());
    }

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
