//! A domain's own memory and grant table: the granting side.
//!
//! Files (see docs/shm-layout.md): `DIR/domain/<domid>/memory` (pages of 4096 bytes,
//! frame number = page index), `gnttab` (v1 entries of 8 bytes), `evtchn` (one page of
//! event-channel state), `pid` (the owning process, for stale-file detection).

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use xennet_ring::grant::{GrantError, GNTTAB_NR_RESERVED_ENTRIES};
use xennet_ring::{
    DomId, Frame, FrameAlloc, GrantAccess, GrantRef, LocalMemory, MemoryError, PAGE_SIZE,
};

use super::error::ShmError;
use super::region::{Region, Regions, EVTCHN_BYTES, GRANT_ENTRY_BYTES};
use super::runtime::{pid_alive, remove_domain_files, RuntimeDir};
use xennet_ring::grant::flags;

/// Largest domain accepted (pages): 4 GiB.
pub const MAX_PAGES: u32 = 1 << 20;
/// Largest grant table accepted (entries).
pub const MAX_GRANT_ENTRIES: u32 = 1 << 16;
struct Inner {
    regions: Arc<Regions>,
    dir: Option<PathBuf>,
    free_frames: Mutex<Vec<u32>>,
    grants: Mutex<GrantState>,
}

struct GrantState {
    free: Vec<u32>,
    granted: Vec<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            remove_domain_files(dir);
        }
    }
}

/// A domain of this process: its memory, grant table and event channels. Cheap to
/// clone (shared); the files are removed when the last clone goes.
#[derive(Clone)]
pub struct Domain {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain")
            .field("domid", &self.domid())
            .field("pages", &self.inner.regions.pages())
            .finish()
    }
}

fn check_sizes(pages: u32, grant_entries: u32) -> Result<(), ShmError> {
    if pages == 0 || pages > MAX_PAGES {
        return Err(ShmError::BadSize("pages must be 1..=1048576"));
    }
    if grant_entries <= GNTTAB_NR_RESERVED_ENTRIES || grant_entries > MAX_GRANT_ENTRIES {
        return Err(ShmError::BadSize("grant entries must be 9..=65536"));
    }
    Ok(())
}

impl Domain {
    /// Create a domain's files in the runtime directory. Files of a crashed earlier
    /// owner are cleaned first; a live owner is an error.
    pub fn create(
        rt: &RuntimeDir,
        domid: DomId,
        pages: u32,
        grant_entries: u32,
    ) -> Result<Domain, ShmError> {
        check_sizes(pages, grant_entries)?;
        let dir = rt.domain_dir(domid);
        if dir.join("memory").exists() {
            if rt.is_stale(domid) {
                remove_domain_files(&dir);
            } else {
                return Err(ShmError::DomainExists(domid));
            }
        }
        fs::create_dir_all(&dir).map_err(|e| ShmError::io(&dir, e))?;
        let build = || -> Result<Regions, ShmError> {
            Ok(Regions {
                domid,
                memory: Arc::new(Region::create(
                    &dir.join("memory"),
                    pages as usize * PAGE_SIZE,
                )?),
                gnttab: Arc::new(Region::create(
                    &dir.join("gnttab"),
                    grant_entries as usize * GRANT_ENTRY_BYTES,
                )?),
                evtchn: Arc::new(Region::create(&dir.join("evtchn"), EVTCHN_BYTES)?),
            })
        };
        let regions = match build() {
            Ok(r) => r,
            Err(e) => {
                remove_domain_files(&dir);
                return Err(e);
            }
        };
        let pid_path = dir.join("pid");
        let mut f = fs::File::create(&pid_path).map_err(|e| ShmError::io(&pid_path, e))?;
        writeln!(f, "{}", std::process::id()).map_err(|e| ShmError::io(&pid_path, e))?;
        tracing::debug!(domid = domid.0, pages, "domain created");
        Ok(Self::from_regions(regions, Some(dir)))
    }

    /// A domain in anonymous memory, for threads of one process.
    pub fn anonymous(domid: DomId, pages: u32, grant_entries: u32) -> Result<Domain, ShmError> {
        check_sizes(pages, grant_entries)?;
        let regions = Regions {
            domid,
            memory: Arc::new(Region::anonymous(pages as usize * PAGE_SIZE)?),
            gnttab: Arc::new(Region::anonymous(
                grant_entries as usize * GRANT_ENTRY_BYTES,
            )?),
            evtchn: Arc::new(Region::anonymous(EVTCHN_BYTES)?),
        };
        Ok(Self::from_regions(regions, None))
    }

    fn from_regions(regions: Regions, dir: Option<PathBuf>) -> Domain {
        let pages = regions.pages();
        let entries = regions.grant_entries();
        Domain {
            inner: Arc::new(Inner {
                regions: Arc::new(regions),
                dir,
                free_frames: Mutex::new((0..pages).rev().collect()),
                grants: Mutex::new(GrantState {
                    free: (GNTTAB_NR_RESERVED_ENTRIES..entries).rev().collect(),
                    granted: vec![false; entries as usize],
                }),
            }),
        }
    }

    /// The domain's id.
    pub fn domid(&self) -> DomId {
        self.inner.regions.domid
    }

    /// The shared regions (for the event channels and for peers in this process).
    pub fn regions(&self) -> &Arc<Regions> {
        &self.inner.regions
    }

    /// Frames not allocated.
    pub fn free_frames(&self) -> usize {
        self.inner.free_frames.lock().map(|f| f.len()).unwrap_or(0)
    }

    /// Grant references currently granted.
    pub fn grants_in_use(&self) -> usize {
        self.inner
            .grants
            .lock()
            .map(|g| g.granted.iter().filter(|&&b| b).count())
            .unwrap_or(0)
    }

    /// What the hypervisor does when a domain dies: every grant of ours that
    /// `peer` still had in use (mapped, or mid-copy) is released, so that ending
    /// access succeeds again. Call it only once `peer` is known to be gone (its
    /// process exited); a live peer would lose its pins. Returns the entries
    /// released.
    pub fn reclaim_from_dead_peer(&self, peer: DomId) -> usize {
        let r = &self.inner.regions;
        let Ok(g) = self.inner.grants.lock() else {
            return 0;
        };
        let mut n = 0;
        for (i, granted) in g.granted.iter().enumerate() {
            if !granted {
                continue;
            }
            if let Some(word) = r.grant_word(GrantRef(i as u32)) {
                if flags::force_unpin(word, peer.0) {
                    n += 1;
                }
            }
        }
        n
    }

    /// Whether the owner of `pid` is alive (helper for tools).
    pub fn owner_alive(pid: u32) -> bool {
        pid_alive(pid)
    }
}

impl LocalMemory for Domain {
    fn read(&self, frame: Frame, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError> {
        let r = &self.inner.regions;
        let at = r
            .frame_offset(frame.0, offset, buf.len())
            .ok_or_else(|| mem_err(r, frame, offset, buf.len()))?;
        r.memory.read(at, buf);
        Ok(())
    }

    fn write(&self, frame: Frame, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        let r = &self.inner.regions;
        let at = r
            .frame_offset(frame.0, offset, data.len())
            .ok_or_else(|| mem_err(r, frame, offset, data.len()))?;
        r.memory.write(at, data);
        Ok(())
    }

    fn page_ptr(&self, frame: Frame) -> Result<NonNull<u8>, MemoryError> {
        let r = &self.inner.regions;
        let at = r
            .frame_offset(frame.0, 0, PAGE_SIZE)
            .ok_or(MemoryError::BadFrame(frame))?;
        r.memory
            .ptr(at, PAGE_SIZE)
            .ok_or(MemoryError::BadFrame(frame))
    }
}

fn mem_err(r: &Regions, frame: Frame, offset: usize, len: usize) -> MemoryError {
    if frame.0 >= u64::from(r.pages()) {
        MemoryError::BadFrame(frame)
    } else {
        MemoryError::CrossesPage { offset, len }
    }
}

impl FrameAlloc for Domain {
    fn alloc_frame(&self) -> Result<Frame, MemoryError> {
        let mut free = self
            .inner
            .free_frames
            .lock()
            .map_err(|_| MemoryError::OutOfFrames)?;
        free.pop()
            .map(|f| Frame(u64::from(f)))
            .ok_or(MemoryError::OutOfFrames)
    }

    fn free_frame(&self, frame: Frame) {
        if frame.0 < u64::from(self.inner.regions.pages()) {
            if let Ok(mut free) = self.inner.free_frames.lock() {
                free.push(frame.0 as u32);
            }
        }
    }
}

impl GrantAccess for Domain {
    fn grant_access(
        &self,
        domid: DomId,
        frame: Frame,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let r = &self.inner.regions;
        if frame.0 >= u64::from(r.pages()) {
            return Err(GrantError::BadFrame(frame));
        }
        let mut g = self
            .inner
            .grants
            .lock()
            .map_err(|_| GrantError::TableFull)?;
        let gref = GrantRef(g.free.pop().ok_or(GrantError::TableFull)?);
        g.granted[gref.0 as usize] = true;
        let (Some(word), Some(fword)) = (r.grant_word(gref), r.grant_frame(gref)) else {
            return Err(GrantError::BadRef(gref));
        };
        fword.store(frame.0 as u32, Ordering::Relaxed);
        flags::publish(word, domid.0, readonly);
        Ok(gref)
    }

    fn end_access(&self, gref: GrantRef) -> Result<(), GrantError> {
        let r = &self.inner.regions;
        let mut g = self
            .inner
            .grants
            .lock()
            .map_err(|_| GrantError::BadRef(gref))?;
        if !g.granted.get(gref.0 as usize).copied().unwrap_or(false) {
            return Err(GrantError::BadRef(gref));
        }
        let word = r.grant_word(gref).ok_or(GrantError::BadRef(gref))?;
        if !flags::end_access(word) {
            return Err(GrantError::InUse(gref));
        }
        g.granted[gref.0 as usize] = false;
        g.free.push(gref.0);
        Ok(())
    }
}
