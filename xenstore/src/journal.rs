//! The daemon's journal: the store on disk, so that a xenstored that dies (even
//! by SIGKILL) comes back with every node, permission and introduced domain it
//! had acknowledged.
//!
//! One append-only file. The changes one request made to the live tree (a
//! write, a removal, a transaction's commit, an introduction) are appended as
//! one record, holding the resulting state of every node it touched, before the
//! reply leaves the daemon: a reply a client has seen is on disk (in the page
//! cache, which outlives the process), and a record torn by a crash is dropped
//! whole, so a transaction is never half restored. On open the file is
//! replayed, then rewritten as a snapshot (one record per node and domain).
//! The journal is compacted the same way when it grows past twice the last
//! snapshot (and at least [`COMPACT_MIN`]).
//!
//! ```text
//! file    = "XNXSJ001" record*
//! record  = len:u32le body[len] check:u32le     (check: FNV-1a 32 of body)
//! body    = entry+                              (replayed all or none)
//! entry   = 1 path:s16 perms:s16 value:s32      a node's state
//!                                               (perms as on the wire: "b0\0r5\0")
//!         | 2 path:s16                          the node and its subtree removed
//!         | 3 domid:u16le                       a domain introduced
//!         | 4 domid:u16le                       a domain released
//! sN      = len:uNle bytes[len]
//! ```
//!
//! Replay stops at the first record that is short, fails its check, or holds
//! an entry that does not parse (a path that is not canonical, a bad
//! permission list), and reports how many bytes it ignored.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::store::{Perms, Tree};
use super::wire::{self, check_path};

const MAGIC: &[u8; 8] = b"XNXSJ001";
/// A journal smaller than this is never compacted while running.
pub const COMPACT_MIN: u64 = 1 << 20;

const KIND_NODE: u8 = 1;
const KIND_REMOVED: u8 = 2;
const KIND_INTRODUCED: u8 = 3;
const KIND_RELEASED: u8 = 4;

/// What a journal held when it was opened.
#[derive(Debug, Default)]
pub struct Restored {
    /// The tree as of the last acknowledged change.
    pub tree: Tree,
    /// Domains introduced and not released.
    pub domains: BTreeSet<u16>,
    /// Records replayed.
    pub records: u64,
    /// Bytes at the end that were not a whole valid record (a write torn by a
    /// crash); dropped.
    pub ignored_bytes: u64,
}

/// An open journal, appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
    snapshot_len: u64,
    /// The entries of the request being handled.
    body: Vec<u8>,
}

fn fnv1a(body: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in body {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn push_record(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&fnv1a(body).to_le_bytes());
}

fn push_node(out: &mut Vec<u8>, path: &str, perms: &Perms, value: &[u8]) {
    let p = perms.to_payload();
    out.push(KIND_NODE);
    out.extend_from_slice(&(path.len() as u16).to_le_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(&(p.len() as u16).to_le_bytes());
    out.extend_from_slice(&p);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

fn push_removed(out: &mut Vec<u8>, path: &str) {
    out.push(KIND_REMOVED);
    out.extend_from_slice(&(path.len() as u16).to_le_bytes());
    out.extend_from_slice(path.as_bytes());
}

fn push_domain(out: &mut Vec<u8>, domid: u16, introduced: bool) {
    out.push(if introduced {
        KIND_INTRODUCED
    } else {
        KIND_RELEASED
    });
    out.extend_from_slice(&domid.to_le_bytes());
}

/// Reads `N` bytes off the front of `b`.
fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = (b.len() >= n).then(|| b.split_at(n))?;
    *b = rest;
    Some(head)
}

fn take_u16(b: &mut &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes(take(b, 2)?.try_into().ok()?))
}

fn take_u32(b: &mut &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?))
}

fn take_path<'a>(b: &mut &'a [u8]) -> Option<&'a str> {
    let n = take_u16(b)? as usize;
    let s = std::str::from_utf8(take(b, n)?).ok()?;
    (s.starts_with('/') && (s == "/" || check_path(s).is_ok())).then_some(s)
}

/// One parsed entry.
enum Entry<'a> {
    Node(&'a str, Perms, &'a [u8]),
    Removed(&'a str),
    Domain(u16, bool),
}

fn parse_entry<'a>(b: &mut &'a [u8]) -> Option<Entry<'a>> {
    let kind = *take(b, 1)?.first()?;
    Some(match kind {
        KIND_NODE => {
            let path = take_path(b)?;
            let n = take_u16(b)? as usize;
            let perms = Perms::parse(wire::split_strings(take(b, n)?)).ok()?;
            let n = take_u32(b)? as usize;
            Entry::Node(path, perms, take(b, n)?)
        }
        KIND_REMOVED => Entry::Removed(take_path(b)?),
        KIND_INTRODUCED => Entry::Domain(take_u16(b)?, true),
        KIND_RELEASED => Entry::Domain(take_u16(b)?, false),
        _ => return None,
    })
}

/// Replays a journal's bytes (header included).
pub fn replay(bytes: &[u8]) -> Restored {
    let mut r = Restored::default();
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        r.ignored_bytes = bytes.len() as u64;
        return r;
    };
    while let Some(n) = replay_one(&mut r, rest) {
        rest = &rest[n..];
        r.records += 1;
    }
    r.ignored_bytes = rest.len() as u64;
    r
}

/// Applies the record at the start of `b` if it is whole and every entry in
/// it parses; returns its length.
fn replay_one(r: &mut Restored, mut b: &[u8]) -> Option<usize> {
    let len = take_u32(&mut b)? as usize;
    let mut body = take(&mut b, len)?;
    if take_u32(&mut b)? != fnv1a(body) || body.is_empty() {
        return None;
    }
    let mut entries = Vec::new();
    while !body.is_empty() {
        entries.push(parse_entry(&mut body)?);
    }
    for e in entries {
        match e {
            Entry::Node(path, perms, value) => r.tree.restore_node(path, value.to_vec(), perms),
            Entry::Removed(path) => r.tree.purge(path),
            Entry::Domain(d, true) => {
                r.domains.insert(d);
            }
            Entry::Domain(d, false) => {
                r.domains.remove(&d);
            }
        }
    }
    Some(8 + len)
}

fn snapshot_bytes(tree: &Tree, domains: impl IntoIterator<Item = u16>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let mut body = Vec::new();
    for (path, node) in tree.nodes() {
        body.clear();
        push_node(&mut body, path, &node.perms, &node.value);
        push_record(&mut out, &body);
    }
    for d in domains {
        body.clear();
        push_domain(&mut body, d, true);
        push_record(&mut out, &body);
    }
    out
}

impl Journal {
    /// Opens (or creates) the journal at `path`, replays it, and rewrites it
    /// as a snapshot of what it held.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<(Journal, Restored)> {
        let path = path.into();
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let restored = if bytes.is_empty() {
            Restored::default()
        } else {
            replay(&bytes)
        };
        let domains = restored.domains.iter().copied();
        let journal = Journal::create(path, &restored.tree, domains)?;
        Ok((journal, restored))
    }

    /// Writes a snapshot of `tree` and `domains` to `path` (replacing any file
    /// there atomically) and opens it for appending.
    pub fn create(
        path: PathBuf,
        tree: &Tree,
        domains: impl IntoIterator<Item = u16>,
    ) -> io::Result<Journal> {
        let snap = snapshot_bytes(tree, domains);
        let tmp = path.with_extension("new");
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&snap)?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &path)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(Journal {
            path,
            file,
            len: snap.len() as u64,
            snapshot_len: snap.len() as u64,
            body: Vec::new(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Never true: the header is always there.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Notes the current state of `path` in `tree` (the node, or its removal)
    /// as part of the request being handled.
    pub fn note_path(&mut self, tree: &Tree, path: &str) {
        match tree.get(path) {
            Some(n) => push_node(&mut self.body, path, &n.perms, &n.value),
            None => push_removed(&mut self.body, path),
        }
    }

    /// Notes a domain's introduction or release.
    pub fn note_domain(&mut self, domid: u16, introduced: bool) {
        push_domain(&mut self.body, domid, introduced);
    }

    /// Appends what the request changed as one record (compacting instead
    /// when the file has grown large). Call before the reply is sent.
    pub fn commit(
        &mut self,
        tree: &Tree,
        domains: impl IntoIterator<Item = u16>,
    ) -> io::Result<()> {
        if self.body.is_empty() {
            return Ok(());
        }
        let grown = self.len + self.body.len() as u64 + 8;
        if grown > COMPACT_MIN.max(2 * self.snapshot_len) {
            self.body.clear();
            *self = Journal::create(self.path.clone(), tree, domains)?;
            return Ok(());
        }
        let mut rec = Vec::with_capacity(self.body.len() + 8);
        push_record(&mut rec, &self.body);
        self.body.clear();
        let r = self.file.write_all(&rec);
        self.len += rec.len() as u64;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Access, Caller, Nodes, Perm};

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xnj-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn dump(t: &Tree) -> Vec<(String, Vec<u8>, Perms)> {
        t.nodes()
            .map(|(p, n)| (p.to_owned(), n.value.clone(), n.perms.clone()))
            .collect()
    }

    type Step = Box<dyn Fn(&mut Tree, &mut BTreeSet<u16>) -> Vec<String>>;

    /// Applies a script of changes to a tree and a journal alike, returning
    /// the tree after each step.
    fn script(j: &mut Journal, domains: &mut BTreeSet<u16>) -> Vec<(Tree, BTreeSet<u16>)> {
        let mut t = Tree::new();
        let mut states = Vec::new();
        const DOM0: Caller = Caller::DOM0;
        let steps: Vec<Step> = vec![
            Box::new(|t, _| {
                t.write(DOM0, "/local/domain/5/name", b"guest5", 100)
                    .unwrap()
            }),
            Box::new(|t, _| {
                let p = Perms(vec![Perm::new(5, Access::None), Perm::new(0, Access::Read)]);
                t.set_perms(DOM0, "/local/domain/5", p).unwrap();
                vec!["/local/domain/5".into()]
            }),
            Box::new(|_, d| {
                d.insert(5);
                Vec::new()
            }),
            Box::new(|t, _| t.write(DOM0, "/a/b/c", &[0, 1, 2, 255], 100).unwrap()),
            Box::new(|t, _| {
                t.remove(DOM0, "/a/b").unwrap();
                vec!["/a/b".into()]
            }),
            Box::new(|_, d| {
                d.remove(&5);
                Vec::new()
            }),
        ];
        let mut before = domains.clone();
        for step in steps {
            let paths = step(&mut t, domains);
            for p in &paths {
                j.note_path(&t, p);
            }
            for d in domains.symmetric_difference(&before) {
                j.note_domain(*d, domains.contains(d));
            }
            before = domains.clone();
            j.commit(&t, domains.iter().copied()).unwrap();
            states.push((t.clone(), domains.clone()));
        }
        states
    }

    #[test]
    fn replay_restores_every_acknowledged_change_and_drops_a_torn_tail() {
        let dir = temp("torn");
        let path = dir.join("journal");
        let (mut j, r) = Journal::open(&path).unwrap();
        assert_eq!(r.records, 0);
        let start = j.len() as usize;
        let mut domains = BTreeSet::new();
        let states = script(&mut j, &mut domains);
        let bytes = std::fs::read(&path).unwrap();
        // Every record boundary restores the state after that many steps;
        // every cut inside a record restores the state before it.
        let mut boundaries = vec![start];
        let mut at = start;
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            at += 8 + len;
            boundaries.push(at);
        }
        assert_eq!(at, bytes.len());
        for cut in start..=bytes.len() {
            let r = replay(&bytes[..cut]);
            r.tree.check_invariants().unwrap();
            let whole = boundaries.iter().filter(|&&b| b <= cut).count() - 1;
            let expect = if whole == 0 {
                (Tree::new(), BTreeSet::new())
            } else {
                states[whole - 1].clone()
            };
            assert_eq!(dump(&r.tree), dump(&expect.0), "cut at {cut}");
            assert_eq!(r.domains, expect.1, "cut at {cut}");
            assert_eq!(
                r.ignored_bytes as usize,
                cut - boundaries[whole],
                "cut at {cut}"
            );
        }
        // Reopening replays and rewrites as a snapshot holding the same state.
        drop(j);
        let (j2, r) = Journal::open(&path).unwrap();
        assert_eq!(dump(&r.tree), dump(&states.last().unwrap().0));
        let (_, again) = Journal::open(j2.path()).unwrap();
        assert_eq!(dump(&again.tree), dump(&r.tree));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Bytes laid out by hand as the module documentation says, not by the
    /// encoder: the documented format is the one replayed.
    #[test]
    fn the_documented_layout_replays() {
        fn record(body: &[u8]) -> Vec<u8> {
            let mut h: u32 = 0x811c_9dc5;
            for &b in body {
                h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
            }
            let mut r = (body.len() as u32).to_le_bytes().to_vec();
            r.extend_from_slice(body);
            r.extend_from_slice(&h.to_le_bytes());
            r
        }
        let mut first = vec![1u8];
        first.extend_from_slice(&20u16.to_le_bytes());
        first.extend_from_slice(b"/local/domain/5/name");
        first.extend_from_slice(&6u16.to_le_bytes());
        first.extend_from_slice(b"b5\0r0\0");
        first.extend_from_slice(&6u32.to_le_bytes());
        first.extend_from_slice(b"guest5");
        first.extend_from_slice(&[3, 5, 0]);
        let mut second = vec![2u8];
        second.extend_from_slice(&6u16.to_le_bytes());
        second.extend_from_slice(b"/local");
        second.extend_from_slice(&[3, 7, 0, 4, 5, 0]);
        let mut bytes = b"XNXSJ001".to_vec();
        bytes.extend_from_slice(&record(&first));
        let r = replay(&bytes);
        assert_eq!((r.records, r.ignored_bytes), (1, 0));
        let n = r.tree.get("/local/domain/5/name").unwrap();
        assert_eq!(n.value, b"guest5");
        assert_eq!(
            n.perms,
            Perms(vec![Perm::new(5, Access::Both), Perm::new(0, Access::Read)])
        );
        assert_eq!(r.domains, BTreeSet::from([5]));
        bytes.extend_from_slice(&record(&second));
        let r = replay(&bytes);
        assert_eq!((r.records, r.ignored_bytes), (2, 0));
        assert!(r.tree.get("/local").is_none());
        assert_eq!(r.domains, BTreeSet::from([7]));
    }

    #[test]
    fn a_corrupt_record_stops_replay_there() {
        let dir = temp("corrupt");
        let path = dir.join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        let mut domains = BTreeSet::new();
        script(&mut j, &mut domains);
        let mut bytes = std::fs::read(&path).unwrap();
        let first_record = MAGIC.len();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        let r = replay(&bytes);
        assert!(r.ignored_bytes > 0 && (r.ignored_bytes as usize) < bytes.len() - first_record);
        r.tree.check_invariants().unwrap();
        // Not a journal at all: nothing restored, nothing panics.
        let r = replay(b"not a journal");
        assert_eq!((r.records, r.ignored_bytes), (0, 13));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_growing_journal_is_compacted_to_a_snapshot() {
        let dir = temp("compact");
        let path = dir.join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        let mut t = Tree::new();
        let domains = BTreeSet::new();
        let value = vec![b'x'; 2000];
        for i in 0..2000u32 {
            let p = format!("/n/{}", i % 10);
            t.write(Caller::DOM0, &p, &value, 100).unwrap();
            j.note_path(&t, &p);
            j.commit(&t, domains.iter().copied()).unwrap();
        }
        assert!(j.len() <= COMPACT_MIN + 4096, "{} bytes", j.len());
        let (_, r) = Journal::open(&path).unwrap();
        assert_eq!(dump(&r.tree), dump(&t));
        let _ = std::fs::remove_dir_all(dir);
    }
}
