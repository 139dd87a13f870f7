//! The live tree: every node in one ordered map keyed by canonical absolute
//! path, so the nodes below `/a` are the keys `/a/...` in one range, and the
//! count of nodes each domain owns, for quotas.

use std::collections::{BTreeMap, HashMap};

use super::{child_prefix, parent_of, Node, Nodes, Overlay, Perms};

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
        t.insert("/".to_owned(), Vec::new(), Perms::owned_by(0));
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

    /// The generation the next change will give out.
    pub(super) fn next_gen(&self) -> u64 {
        self.next_gen + 1
    }

    fn gen(&mut self) -> u64 {
        self.next_gen += 1;
        self.next_gen
    }

    fn insert(&mut self, path: String, value: Vec<u8>, perms: Perms) {
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

    /// Paths strictly below `path`, in order.
    fn below<'a>(&'a self, path: &str) -> impl Iterator<Item = &'a String> + 'a {
        let prefix = child_prefix(path);
        self.nodes
            .range(prefix.clone()..)
            .map(|(k, _)| k)
            .take_while(move |k| k.starts_with(&prefix))
    }

    /// Direct children's names, sorted.
    pub fn children(&self, path: &str) -> Vec<String> {
        let skip = child_prefix(path).len();
        self.below(path)
            .filter_map(|k| {
                let rest = &k[skip..];
                (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_owned())
            })
            .collect()
    }

    /// `path`, then every path below it, parents first.
    pub fn subtree(&self, path: &str) -> Vec<String> {
        let mut v = vec![path.to_owned()];
        v.extend(self.below(path).cloned());
        v
    }

    /// The generation of a node, `None` when absent.
    pub fn gen_of(&self, path: &str) -> Option<u64> {
        self.nodes.get(path).map(|n| n.gen)
    }

    /// Applies a transaction's changes (its commit): every node it wrote is
    /// copied in with a fresh generation, every node it removed goes with its
    /// subtree. Returns the paths changed, for the journal. The caller has
    /// checked that nothing the transaction read changed meanwhile.
    pub fn commit(&mut self, overlay: Overlay) -> Vec<String> {
        let mut changed = Vec::new();
        for (path, node) in overlay.into_changes() {
            match node {
                Some(n) => self.insert(path.clone(), n.value, n.perms),
                None => self.purge(&path),
            }
            changed.push(path);
        }
        changed
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
        self.insert(path.to_owned(), value, perms);
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
                Nodes::touch(self, &parent);
            }
            self.insert(path.to_owned(), Vec::new(), perms);
        }
    }
}

impl Nodes for Tree {
    fn get(&self, path: &str) -> Option<&Node> {
        Tree::get(self, path)
    }

    fn children(&self, path: &str) -> Vec<String> {
        Tree::children(self, path)
    }

    fn subtree(&self, path: &str) -> Vec<String> {
        Tree::subtree(self, path)
    }

    fn owned_by(&self, domid: u16) -> usize {
        Tree::owned_by(self, domid)
    }

    fn put(&mut self, path: &str, value: Vec<u8>, perms: Perms) {
        self.insert(path.to_owned(), value, perms);
    }

    fn take(&mut self, path: &str) -> Option<Node> {
        let old = self.nodes.remove(path)?;
        self.disown(old.perms.owner());
        Some(old)
    }

    fn touch(&mut self, path: &str) {
        let gen = self.gen();
        if let Some(n) = self.nodes.get_mut(path) {
            n.gen = gen;
        }
    }
}
