//! A transaction's state: the nodes it changed and the generations of the
//! nodes it accessed, over the live tree. Nothing is copied when a transaction
//! starts; a node is copied when the transaction changes it. As in Xen's
//! xenstored, a node the transaction has not accessed yet is read from the
//! live tree, and the commit is refused (EAGAIN) if any node it accessed has
//! changed generation since its first access: the transaction then saw one
//! consistent state, the one it commits over.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{child_prefix, parent_of, Node, Nodes, Perms, Tree};

/// What one transaction holds.
#[derive(Debug, Default)]
pub struct Overlay {
    /// The nodes it wrote, and `None` for those it removed.
    changed: BTreeMap<String, Option<Node>>,
    /// How many of `changed` are removals (none: no ancestor checks).
    removed: usize,
    /// Every path it read or wrote, with its live generation when first
    /// accessed (`None`: absent then).
    accessed: BTreeMap<String, Option<u64>>,
    /// Change in the nodes each domain owns.
    owned: HashMap<u16, isize>,
    /// The last generation given to one of its nodes.
    gen: u64,
}

impl Overlay {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tree as this transaction sees it, for one request.
    pub fn view<'a>(&'a mut self, live: &'a Tree) -> TxView<'a> {
        let owned = self.owned.clone();
        let removed = self.removed;
        TxView {
            live,
            tx: self,
            undo: BTreeMap::new(),
            owned,
            removed,
        }
    }

    /// Nodes changed (written or removed).
    pub fn changed(&self) -> usize {
        self.changed.len()
    }

    /// Paths accessed.
    pub fn accessed(&self) -> usize {
        self.accessed.len()
    }

    /// Records `paths` as accessed, with their live generation if this is
    /// their first access.
    pub fn note_accessed<'p>(&mut self, live: &Tree, paths: impl IntoIterator<Item = &'p String>) {
        for p in paths {
            if !self.accessed.contains_key(p) {
                self.accessed.insert(p.clone(), live.gen_of(p));
            }
        }
    }

    /// Whether a node it accessed changed in the live tree since then.
    pub fn conflicts_with(&self, live: &Tree) -> bool {
        self.accessed.iter().any(|(p, gen)| live.gen_of(p) != *gen)
    }

    /// Domains that would own more nodes after the commit, and how many more.
    pub fn growth(&self) -> impl Iterator<Item = (u16, usize)> + '_ {
        self.owned
            .iter()
            .filter_map(|(&d, &n)| usize::try_from(n).ok().filter(|&n| n > 0).map(|n| (d, n)))
    }

    /// The changes, in path order (parents first), for [`Tree::commit`].
    pub(super) fn into_changes(self) -> impl Iterator<Item = (String, Option<Node>)> {
        self.changed.into_iter()
    }
}

/// The tree as a transaction sees it while one request runs: its changes over
/// the live tree. Dropped, the changes stay; [`TxView::rollback`] undoes what
/// this request changed.
pub struct TxView<'a> {
    live: &'a Tree,
    tx: &'a mut Overlay,
    /// Each changed path's entry in `tx.changed` before this request changed
    /// it (`None`: it had none).
    undo: BTreeMap<String, Option<Option<Node>>>,
    /// `tx.owned` and `tx.removed` before this request.
    owned: HashMap<u16, isize>,
    removed: usize,
}

impl TxView<'_> {
    /// How many paths the transaction will have accessed once it has
    /// accessed `paths` too.
    pub fn accessed_with<'p>(&self, paths: impl IntoIterator<Item = &'p String>) -> usize {
        let fresh: BTreeSet<&String> = paths
            .into_iter()
            .filter(|p| !self.tx.accessed.contains_key(*p))
            .collect();
        self.tx.accessed.len() + fresh.len()
    }

    /// Undoes every change this request made.
    pub fn rollback(self) {
        for (path, before) in self.undo {
            match before {
                Some(entry) => {
                    self.tx.changed.insert(path, entry);
                }
                None => {
                    self.tx.changed.remove(&path);
                }
            }
        }
        self.tx.owned = self.owned;
        self.tx.removed = self.removed;
    }

    /// Whether an ancestor of `path` was removed by the transaction (a live
    /// node below it is not there for the transaction).
    fn under_removed(&self, path: &str) -> bool {
        let mut p = path;
        while let Some(parent) = parent_of(p) {
            if matches!(self.tx.changed.get(parent), Some(None)) {
                return true;
            }
            p = parent;
        }
        false
    }

    fn visible(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// Remembers `path`'s entry before its first change in this request.
    fn save(&mut self, path: &str) {
        if !self.undo.contains_key(path) {
            let before = self.tx.changed.get(path).cloned();
            self.undo.insert(path.to_owned(), before);
        }
    }

    fn own(&mut self, domid: u16, by: isize) {
        *self.tx.owned.entry(domid).or_default() += by;
    }

    fn set(&mut self, path: &str, entry: Option<Node>) {
        self.save(path);
        let was_removed = matches!(self.tx.changed.get(path), Some(None));
        let removal = entry.is_none();
        self.tx.changed.insert(path.to_owned(), entry);
        match (was_removed, removal) {
            (false, true) => self.tx.removed += 1,
            (true, false) => self.tx.removed = self.tx.removed.saturating_sub(1),
            _ => {}
        }
    }

    fn next_gen(&mut self) -> u64 {
        // Above every live generation so far, so a client listing a directory
        // in parts sees the transaction's change.
        self.tx.gen = self.tx.gen.max(self.live.next_gen()) + 1;
        self.tx.gen
    }
}

impl Nodes for TxView<'_> {
    fn get(&self, path: &str) -> Option<&Node> {
        match self.tx.changed.get(path) {
            Some(entry) => entry.as_ref(),
            None if self.tx.removed > 0 && self.under_removed(path) => None,
            None => self.live.get(path),
        }
    }

    fn children(&self, path: &str) -> Vec<String> {
        if !self.visible(path) {
            return Vec::new();
        }
        let prefix = child_prefix(path);
        let mut names: BTreeSet<String> = self
            .live
            .children(path)
            .into_iter()
            .filter(|name| !matches!(self.tx.changed.get(&format!("{prefix}{name}")), Some(None)))
            .collect();
        names.extend(
            self.tx
                .changed
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .filter(|(_, n)| n.is_some())
                .map(|(k, _)| &k[prefix.len()..])
                .filter(|rest| !rest.is_empty() && !rest.contains('/'))
                .map(str::to_owned),
        );
        names.into_iter().collect()
    }

    fn subtree(&self, path: &str) -> Vec<String> {
        let prefix = child_prefix(path);
        let mut paths: BTreeSet<String> = self.live.subtree(path).into_iter().skip(1).collect();
        paths.extend(
            self.tx
                .changed
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone()),
        );
        let mut v = vec![path.to_owned()];
        v.extend(paths.into_iter().filter(|p| self.visible(p)));
        v
    }

    fn owned_by(&self, domid: u16) -> usize {
        let live = isize::try_from(self.live.owned_by(domid)).unwrap_or(isize::MAX);
        let delta = self.tx.owned.get(&domid).copied().unwrap_or(0);
        usize::try_from(live.saturating_add(delta)).unwrap_or(0)
    }

    fn put(&mut self, path: &str, value: Vec<u8>, perms: Perms) {
        if let Some(old) = self.get(path).map(|n| n.perms.owner()) {
            self.own(old, -1);
        }
        self.own(perms.owner(), 1);
        let gen = self.next_gen();
        self.set(path, Some(Node { value, perms, gen }));
    }

    fn take(&mut self, path: &str) -> Option<Node> {
        let old = self.get(path)?.clone();
        self.own(old.perms.owner(), -1);
        self.set(path, None);
        Some(old)
    }

    fn touch(&mut self, path: &str) {
        if let Some(n) = self.get(path) {
            let (value, perms) = (n.value.clone(), n.perms.clone());
            // Its owner does not change: put counts it out and back in.
            self.put(path, value, perms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Access, Caller, Perm};

    const Q: usize = 1000;

    fn store(n: usize) -> Tree {
        let mut t = Tree::new();
        t.ensure("/local/domain/5", Perms::owned_by(5));
        for i in 0..n {
            t.write(Caller::DOM0, &format!("/data/{i}"), b"v", Q)
                .unwrap();
        }
        t
    }

    #[test]
    fn a_transaction_holds_only_what_it_changed() {
        let live = store(500);
        let mut tx = Overlay::new();
        let mut v = tx.view(&live);
        assert_eq!(v.read(Caller::DOM0, "/data/7").unwrap().value, b"v");
        v.write(Caller::DOM0, "/data/7", b"w", Q).unwrap();
        v.write(Caller::DOM0, "/new/a", b"n", Q).unwrap();
        assert_eq!(v.read(Caller::DOM0, "/data/7").unwrap().value, b"w");
        drop(v);
        // /data/7, and / (touched) with /new and /new/a.
        assert_eq!(tx.changed(), 4);
        assert_eq!(live.get("/data/7").unwrap().value, b"v");
        assert!(live.get("/new").is_none());
    }

    #[test]
    fn removal_hides_the_live_subtree_and_commit_applies_it() {
        let mut live = store(3);
        live.write(Caller::DOM0, "/data/1/deep", b"d", Q).unwrap();
        let mut tx = Overlay::new();
        let mut v = tx.view(&live);
        let removed = v.remove(Caller::DOM0, "/data").unwrap();
        assert_eq!(removed.len(), 5);
        assert!(v.get("/data/1/deep").is_none());
        assert_eq!(v.children("/"), vec!["local"]);
        v.write(Caller::DOM0, "/data/again", b"a", Q).unwrap();
        assert_eq!(v.children("/data"), vec!["again"]);
        assert_eq!(v.subtree("/data"), vec!["/data", "/data/again"]);
        drop(v);
        live.commit(tx);
        live.check_invariants().unwrap();
        assert_eq!(live.children("/data"), vec!["again"]);
    }

    #[test]
    fn quota_counts_the_live_tree_and_the_transaction() {
        let live = store(0);
        let g = Caller::guest(5);
        let mut tx = Overlay::new();
        let mut v = tx.view(&live);
        v.write(g, "/local/domain/5/a", b"", 3).unwrap();
        v.write(g, "/local/domain/5/b", b"", 3).unwrap();
        assert_eq!(v.owned_by(5), 3);
        assert_eq!(
            v.write(g, "/local/domain/5/c", b"", 3).unwrap_err(),
            crate::wire::Errno::ENOSPC
        );
        drop(v);
        assert_eq!(tx.growth().collect::<Vec<_>>(), vec![(5, 2)]);
    }

    #[test]
    fn rollback_undoes_one_request_only() {
        let live = store(2);
        let mut tx = Overlay::new();
        let mut v = tx.view(&live);
        v.write(Caller::DOM0, "/data/0", b"kept", Q).unwrap();
        drop(v);
        let mut v = tx.view(&live);
        v.write(Caller::DOM0, "/data/0", b"undone", Q).unwrap();
        v.remove(Caller::DOM0, "/data/1").unwrap();
        v.rollback();
        let v = tx.view(&live);
        assert_eq!(v.get("/data/0").unwrap().value, b"kept");
        assert!(v.get("/data/1").is_some());
        drop(v);
        assert_eq!(tx.growth().count(), 0);
    }

    #[test]
    fn a_live_change_to_an_accessed_node_is_a_conflict() {
        let mut live = store(2);
        let mut tx = Overlay::new();
        tx.note_accessed(&live, &["/data/0".to_owned(), "/absent".to_owned()]);
        assert!(!tx.conflicts_with(&live));
        live.write(Caller::DOM0, "/data/1", b"other", Q).unwrap();
        assert!(!tx.conflicts_with(&live));
        live.write(Caller::DOM0, "/absent", b"now", Q).unwrap();
        assert!(tx.conflicts_with(&live));
    }

    /// xorshift64: deterministic cases without a dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn path(&mut self) -> String {
            let mut p = ["/local/domain/5", "/x"][self.below(2)].to_owned();
            for _ in 0..=self.below(3) {
                p.push('/');
                p.push_str(["a", "b", "c"][self.below(3)]);
            }
            p
        }
    }

    fn dump(t: &Tree) -> Vec<(String, Vec<u8>, Perms)> {
        t.nodes()
            .map(|(p, n)| (p.to_owned(), n.value.clone(), n.perms.clone()))
            .collect()
    }

    #[test]
    fn a_transaction_sees_and_commits_what_the_tree_itself_would() {
        const QUOTA: usize = 12;
        for seed in 1..300 {
            let mut rng = Rng(seed);
            let mut live = store(0);
            for _ in 0..10 {
                let p = rng.path();
                live.write(Caller::DOM0, &p, b"0", Q).unwrap();
            }
            let mut reference = live.clone();
            let mut tx = Overlay::new();
            for step in 0..40 {
                let caller = [Caller::DOM0, Caller::guest(5)][rng.below(2)];
                let p = rng.path();
                let before = reference.clone();
                let mut v = tx.view(&live);
                let value = [b'0' + rng.below(10) as u8];
                let same = match rng.below(6) {
                    0 => {
                        reference.write(caller, &p, &value, QUOTA)
                            == v.write(caller, &p, &value, QUOTA)
                    }
                    1 => reference.remove(caller, &p) == v.remove(caller, &p),
                    2 => {
                        let perms = Perms(vec![Perm::new(5, Access::Read)]);
                        reference.set_perms(caller, &p, perms.clone())
                            == v.set_perms(caller, &p, perms)
                    }
                    3 => {
                        reference.read(caller, &p).map(|n| n.value.clone())
                            == v.read(caller, &p).map(|n| n.value.clone())
                    }
                    4 => reference.children(&p) == v.children(&p),
                    _ => {
                        reference.get(&p).is_none()
                            || Tree::subtree(&reference, &p) == v.subtree(&p)
                    }
                };
                assert!(same, "seed {seed} step {step}: {p} differs");
                assert_eq!(
                    reference.owned_by(5),
                    v.owned_by(5),
                    "seed {seed} step {step}"
                );
                if rng.below(6) == 0 {
                    v.rollback();
                    reference = before;
                }
            }
            live.commit(tx);
            live.check_invariants().unwrap();
            assert_eq!(dump(&live), dump(&reference), "seed {seed}");
            assert_eq!(live.owned_by(5), reference.owned_by(5), "seed {seed}");
        }
    }

    #[test]
    fn a_node_added_live_below_a_removed_one_stays_hidden_and_conflicts() {
        let mut live = store(2);
        let mut tx = Overlay::new();
        let mut v = tx.view(&live);
        let removed = v.remove(Caller::DOM0, "/data").unwrap();
        drop(v);
        let paths: Vec<String> = removed.into_iter().map(|(p, _)| p).collect();
        tx.note_accessed(&live, &paths);
        live.write(Caller::DOM0, "/data/1/late", b"l", Q).unwrap();
        let v = tx.view(&live);
        assert!(v.get("/data/1/late").is_none());
        assert!(v.subtree("/data/1").iter().all(|p| p == "/data/1"));
        drop(v);
        assert!(tx.conflicts_with(&live));
    }

    #[test]
    fn the_tree_stays_whole_whatever_happens_live_meanwhile() {
        for seed in 1..300 {
            let mut rng = Rng(seed);
            let mut live = store(0);
            let mut tx = Overlay::new();
            for _ in 0..40 {
                let p = rng.path();
                if rng.below(3) == 0 {
                    // Another client, outside the transaction.
                    let _ = match rng.below(2) {
                        0 => live.write(Caller::DOM0, &p, b"l", Q).map(drop),
                        _ => live.remove(Caller::DOM0, &p).map(drop),
                    };
                    continue;
                }
                let mut v = tx.view(&live);
                let (read, written) = match rng.below(3) {
                    0 => (
                        vec![],
                        v.write(Caller::DOM0, &p, b"t", Q).unwrap_or_default(),
                    ),
                    1 => {
                        let gone = v.remove(Caller::DOM0, &p).unwrap_or_default();
                        (vec![], gone.into_iter().map(|(p, _)| p).collect())
                    }
                    _ => {
                        let _ = v.children(&p);
                        (vec![p.clone()], vec![])
                    }
                };
                drop(v);
                let parents: Vec<String> = written
                    .iter()
                    .filter_map(|w| parent_of(w).map(str::to_owned))
                    .collect();
                tx.note_accessed(&live, read.iter().chain(&written).chain(&parents));
                tx.note_accessed(&live, [&p]);
            }
            if !tx.conflicts_with(&live) {
                live.commit(tx);
            }
            live.check_invariants()
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }
}
