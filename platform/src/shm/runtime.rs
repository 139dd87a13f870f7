//! The private runtime directory where domains' shared-memory files and sockets live.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use xennet_ring::DomId;

use super::error::ShmError;

/// The runtime directory: `$XENNET_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/xennet`, else
/// `/run/xennet`. Created 0700.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// The default location (see the type's documentation).
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("XENNET_RUNTIME_DIR") {
            return PathBuf::from(p);
        }
        if let Some(p) = std::env::var_os("XDG_RUNTIME_DIR") {
            return PathBuf::from(p).join("xennet");
        }
        PathBuf::from("/run/xennet")
    }

    /// Use (and create, 0700) `path`.
    pub fn new(path: impl Into<PathBuf>) -> Result<RuntimeDir, ShmError> {
        let path = path.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(|e| ShmError::io(&path, e))?;
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o700));
        Ok(RuntimeDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `DIR/domain/<domid>`: a domain's files.
    pub fn domain_dir(&self, domid: DomId) -> PathBuf {
        self.path.join("domain").join(domid.0.to_string())
    }

    /// Domains with files in the directory.
    pub fn domains(&self) -> Vec<DomId> {
        let mut v: Vec<DomId> = fs::read_dir(self.path.join("domain"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok().map(DomId))
            .collect();
        v.sort();
        v
    }

    /// The pid recorded as owning `domid`'s files, if any.
    pub fn owner(&self, domid: DomId) -> Option<u32> {
        fs::read_to_string(self.domain_dir(domid).join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether `domid` has files whose owner process is gone (a crashed run).
    pub fn is_stale(&self, domid: DomId) -> bool {
        let dir = self.domain_dir(domid);
        if !dir.join("memory").exists() {
            return false;
        }
        match self.owner(domid) {
            Some(pid) => !pid_alive(pid),
            None => true,
        }
    }

    /// Remove the files of every domain whose owner is dead; returns those cleaned.
    pub fn clean_stale(&self) -> Vec<DomId> {
        let stale: Vec<DomId> = self
            .domains()
            .into_iter()
            .filter(|d| self.is_stale(*d))
            .collect();
        for d in &stale {
            tracing::info!(
                domid = d.0,
                "removing stale domain files from a crashed run"
            );
            remove_domain_files(&self.domain_dir(*d));
        }
        stale
    }
}

/// Whether a process exists.
pub fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Remove a domain's shared-memory files (sockets in the directory are left to their
/// owners); the directory too if it ends up empty.
pub(crate) fn remove_domain_files(dir: &Path) {
    for f in ["memory", "gnttab", "evtchn", "pid"] {
        let _ = fs::remove_file(dir.join(f));
    }
    let _ = fs::remove_dir(dir);
}
