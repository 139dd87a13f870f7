//! A peer domain as the using side sees it: its shared regions, mapped from its files
//! (or shared with a domain of this process), and the pin counts of the grant entries
//! this process has in use.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use xennet_ring::grant::{flags, GrantStatus};
use xennet_ring::{DomId, GrantRef, PAGE_SIZE};

use super::domain::Domain;
use super::error::ShmError;
use super::region::{Region, Regions, EVTCHN_BYTES, GRANT_ENTRY_BYTES};
use super::runtime::RuntimeDir;

/// Another domain's memory and grant table as the using side sees them, with the pin
/// counts of the entries this process has in use.
pub struct PeerDomain {
    pub(super) regions: Arc<Regions>,
    pub(super) pins: Mutex<Vec<u16>>,
}

impl PeerDomain {
    /// Map a domain's files from the runtime directory (another process's domain).
    pub fn open(rt: &RuntimeDir, domid: DomId) -> Result<PeerDomain, ShmError> {
        let dir = rt.domain_dir(domid);
        if !dir.join("memory").exists() {
            return Err(ShmError::NoSuchDomain(domid));
        }
        let regions = Regions {
            domid,
            memory: Region::open(&dir.join("memory"), None)?,
            gnttab: Region::open(&dir.join("gnttab"), None)?,
            evtchn: Region::open(&dir.join("evtchn"), Some(EVTCHN_BYTES))?,
        };
        if regions.memory.len() % PAGE_SIZE != 0 || regions.gnttab.len() % GRANT_ENTRY_BYTES != 0 {
            return Err(ShmError::BadFile(dir));
        }
        Ok(Self::from_regions(Arc::new(regions)))
    }

    /// A domain of this process.
    pub fn from_domain(d: &Domain) -> PeerDomain {
        Self::from_regions(d.regions().clone())
    }

    fn from_regions(regions: Arc<Regions>) -> PeerDomain {
        let n = regions.grant_entries() as usize;
        PeerDomain {
            regions,
            pins: Mutex::new(vec![0; n]),
        }
    }

    /// The peer's id.
    pub fn domid(&self) -> DomId {
        self.regions.domid
    }

    /// The peer's shared regions.
    pub fn regions(&self) -> &Arc<Regions> {
        &self.regions
    }

    /// Pin `gref` for `user` and return the granted frame's byte offset in memory.
    pub(super) fn pin(
        &self,
        user: DomId,
        gref: GrantRef,
        write: bool,
    ) -> Result<usize, GrantStatus> {
        let mut pins = self.pins.lock().map_err(|_| GrantStatus::GeneralError)?;
        self.pin_with(&mut pins, user, gref, write)
    }

    /// [`PeerDomain::pin`] with the pin counts already locked (a batch locks once).
    pub(super) fn pin_with(
        &self,
        pins: &mut [u16],
        user: DomId,
        gref: GrantRef,
        write: bool,
    ) -> Result<usize, GrantStatus> {
        let word = self
            .regions
            .grant_word(gref)
            .ok_or(GrantStatus::BadGntref)?;
        let count = pins
            .get_mut(gref.0 as usize)
            .ok_or(GrantStatus::BadGntref)?;
        if *count == u16::MAX {
            return Err(GrantStatus::NoSpace);
        }
        flags::pin(word, user.0, write)?;
        *count += 1;
        // Read once, after the pin: the granter wrote it before publishing the flags.
        let frame = self
            .regions
            .grant_frame(gref)
            .map(|f| f.load(Ordering::Acquire))
            .unwrap_or(u32::MAX);
        match self.regions.frame_offset(u64::from(frame), 0, PAGE_SIZE) {
            Some(at) => Ok(at),
            None => {
                self.unpin_with(pins, gref);
                Err(GrantStatus::GeneralError)
            }
        }
    }

    pub(super) fn unpin(&self, gref: GrantRef) {
        if let Ok(mut pins) = self.pins.lock() {
            self.unpin_with(&mut pins, gref);
        }
    }

    pub(super) fn unpin_with(&self, pins: &mut [u16], gref: GrantRef) {
        let Some(word) = self.regions.grant_word(gref) else {
            return;
        };
        if let Some(c) = pins.get_mut(gref.0 as usize) {
            if *c > 0 {
                *c -= 1;
                if *c == 0 {
                    flags::unpin(word);
                }
            }
        }
    }
}
