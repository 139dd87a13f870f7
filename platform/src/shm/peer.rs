//! A peer domain as the using side sees it: the shared regions it was opened for,
//! mapped from its files (or shared with a domain of this process), and the pin counts
//! of the grant entries this process has in use.
//!
//! Each role maps only what it needs ([`PeerAccess`]): a domain that only signals the
//! other end maps its event page; only the side that plays the hypervisor's grant
//! copy/map (the driver domain) maps the peer's memory and grant table. Every file's
//! size is checked against the platform's limits before it is mapped.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use xennet_ring::grant::{flags, GrantStatus, GNTTAB_NR_RESERVED_ENTRIES};
use xennet_ring::{DomId, GrantRef, PAGE_SIZE};

use super::domain::{Domain, MAX_GRANT_ENTRIES, MAX_PAGES};
use super::error::ShmError;
use super::region::{self, FileLimit, Region, EVTCHN_BYTES, GRANT_ENTRY_BYTES};
use super::runtime::RuntimeDir;

/// What a process maps of another domain's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAccess {
    /// The event page only: enough to bind to the peer's ports, notify them and close
    /// them (docs/shm-layout.md lists the words a sender writes). What a guest needs
    /// of the driver domain, and what event channels open by themselves.
    Events,
    /// Memory and grant table: what grant copy and grant map need (the driver domain
    /// playing the hypervisor for a guest). No event page: event channels map it.
    Grants,
}

/// The limits a peer's `memory` file is checked against before it is mapped.
const MEMORY_LIMIT: FileLimit = FileLimit {
    unit: PAGE_SIZE,
    min: PAGE_SIZE,
    max: MAX_PAGES as usize * PAGE_SIZE,
    text: "1..=1048576 pages of 4096 bytes",
};
/// ... its `gnttab` file.
const GNTTAB_LIMIT: FileLimit = FileLimit {
    unit: GRANT_ENTRY_BYTES,
    min: (GNTTAB_NR_RESERVED_ENTRIES as usize + 1) * GRANT_ENTRY_BYTES,
    max: MAX_GRANT_ENTRIES as usize * GRANT_ENTRY_BYTES,
    text: "9..=65536 grant entries of 8 bytes",
};
/// ... its `evtchn` file.
pub(crate) const EVTCHN_LIMIT: FileLimit = FileLimit {
    unit: EVTCHN_BYTES,
    min: EVTCHN_BYTES,
    max: EVTCHN_BYTES,
    text: "exactly 4096 bytes",
};

/// Another domain as the using side sees it: the regions mapped for its
/// [`PeerAccess`], with the pin counts of the grant entries this process has in use.
pub struct PeerDomain {
    domid: DomId,
    pub(super) memory: Option<Arc<Region>>,
    pub(super) gnttab: Option<Arc<Region>>,
    evtchn: Option<Arc<Region>>,
    pub(super) pins: Mutex<Vec<u16>>,
}

impl PeerDomain {
    /// Map what `access` needs of a domain's files in the runtime directory (another
    /// process's domain). Each file's size is checked against the platform's limits
    /// ([`MAX_PAGES`], [`MAX_GRANT_ENTRIES`], one event page) before it is mapped.
    pub fn open(rt: &RuntimeDir, domid: DomId, access: PeerAccess) -> Result<PeerDomain, ShmError> {
        let dir = rt.domain_dir(domid);
        if !dir.join("memory").exists() {
            return Err(ShmError::NoSuchDomain(domid));
        }
        let open = |name: &str, limit| Region::open_peer(&dir.join(name), limit).map(Arc::new);
        let peer = match access {
            PeerAccess::Events => PeerDomain {
                domid,
                memory: None,
                gnttab: None,
                evtchn: Some(open("evtchn", EVTCHN_LIMIT)?),
                pins: Mutex::new(Vec::new()),
            },
            PeerAccess::Grants => {
                let memory = open("memory", MEMORY_LIMIT)?;
                let gnttab = open("gnttab", GNTTAB_LIMIT)?;
                let n = region::grant_entries(&gnttab) as usize;
                PeerDomain {
                    domid,
                    memory: Some(memory),
                    gnttab: Some(gnttab),
                    evtchn: None,
                    pins: Mutex::new(vec![0; n]),
                }
            }
        };
        Ok(peer)
    }

    /// A domain of this process (everything shared already).
    pub fn from_domain(d: &Domain) -> PeerDomain {
        let r = d.regions();
        PeerDomain {
            domid: r.domid,
            memory: Some(r.memory.clone()),
            gnttab: Some(r.gnttab.clone()),
            evtchn: Some(r.evtchn.clone()),
            pins: Mutex::new(vec![0; r.grant_entries() as usize]),
        }
    }

    /// The peer's id.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The peer's memory, if mapped ([`PeerAccess::Grants`], or a domain of this
    /// process).
    pub fn memory(&self) -> Option<&Arc<Region>> {
        self.memory.as_ref()
    }

    /// The peer's grant table, if mapped.
    pub fn gnttab(&self) -> Option<&Arc<Region>> {
        self.gnttab.as_ref()
    }

    /// The peer's event page, if mapped ([`PeerAccess::Events`], or a domain of this
    /// process).
    pub fn evtchn(&self) -> Option<&Arc<Region>> {
        self.evtchn.as_ref()
    }

    /// Whether the peer cut one of its files short under our mapping (it truncated
    /// it): it is broken, and every grant copy or map with it fails from then on.
    pub fn faulted(&self) -> bool {
        [&self.memory, &self.gnttab, &self.evtchn]
            .into_iter()
            .flatten()
            .any(|r| r.faulted())
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
        let (Some(memory), Some(gnttab)) = (&self.memory, &self.gnttab) else {
            return Err(GrantStatus::BadDomain);
        };
        if self.faulted() {
            return Err(GrantStatus::GeneralError);
        }
        let word = region::grant_word(gnttab, gref).ok_or(GrantStatus::BadGntref)?;
        let count = pins
            .get_mut(gref.0 as usize)
            .ok_or(GrantStatus::BadGntref)?;
        if *count == u16::MAX {
            return Err(GrantStatus::NoSpace);
        }
        flags::pin(word, user.0, write)?;
        *count += 1;
        // Read once, after the pin: the granter wrote it before publishing the flags.
        let frame = region::grant_frame(gnttab, gref)
            .map(|f| f.load(Ordering::Acquire))
            .unwrap_or(u32::MAX);
        match region::frame_offset(memory, u64::from(frame), 0, PAGE_SIZE) {
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
        let Some(word) = self
            .gnttab
            .as_ref()
            .and_then(|g| region::grant_word(g, gref))
        else {
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
