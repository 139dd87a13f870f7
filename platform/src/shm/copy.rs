//! The using side: grant copy and grant map, the hypervisor's job in Xen, done here by
//! the using process over both domains' shared files.

use std::ptr::NonNull;
use std::sync::{Arc, RwLock};

use xennet_ring::grant::{GnttabCopy, GrantStatus, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF};
use xennet_ring::{DomId, GrantCopy, GrantMap, GrantRef, MappedPage, PAGE_SIZE};

use super::domain::Domain;
use super::peer::PeerDomain;
use super::region::{Region, Regions};

/// The "hypervisor" of one domain: performs its grant copies and maps against the
/// peers it knows. Cheap to clone (shared state).
#[derive(Clone)]
pub struct GrantOps {
    inner: Arc<OpsInner>,
}

#[doc(hidden)]
pub struct OpsInner {
    me: DomId,
    local: Arc<Regions>,
    peers: RwLock<Vec<Arc<PeerDomain>>>,
}

impl std::ops::Deref for GrantOps {
    type Target = OpsInner;
    fn deref(&self) -> &OpsInner {
        &self.inner
    }
}

impl GrantOps {
    /// Grant operations on behalf of `local`.
    pub fn new(local: &Domain) -> GrantOps {
        GrantOps {
            inner: Arc::new(OpsInner {
                me: local.domid(),
                local: local.regions().clone(),
                peers: RwLock::new(Vec::new()),
            }),
        }
    }

    /// Make a peer's grants reachable (replacing an earlier mapping of the same domain).
    pub fn add_peer(&self, peer: PeerDomain) -> Arc<PeerDomain> {
        let peer = Arc::new(peer);
        if let Ok(mut peers) = self.peers.write() {
            peers.retain(|p| p.domid() != peer.domid());
            peers.push(peer.clone());
        }
        peer
    }

    /// Forget a peer (its domain went away). Mappings still held stay valid memory.
    pub fn remove_peer(&self, domid: DomId) {
        if let Ok(mut peers) = self.peers.write() {
            peers.retain(|p| p.domid() != domid);
        }
    }

    /// The peer `domid`, if known.
    pub fn peer(&self, domid: DomId) -> Option<Arc<PeerDomain>> {
        self.peers
            .read()
            .ok()?
            .iter()
            .find(|p| p.domid() == domid)
            .cloned()
    }

    fn copy_one_with(&self, op: &GnttabCopy, peers: &[Arc<PeerDomain>]) -> GrantStatus {
        let len = op.len as usize;
        if len > PAGE_SIZE
            || op.source.offset as usize + len > PAGE_SIZE
            || op.dest.offset as usize + len > PAGE_SIZE
        {
            return GrantStatus::BadCopyArg;
        }
        let mut held: [Option<(Arc<PeerDomain>, GrantRef)>; 2] = [None, None];
        let result = (|| {
            let src = self.resolve(
                peers,
                op.flags & GNTCOPY_SOURCE_GREF != 0,
                &op.source,
                false,
                &mut held[0],
            )?;
            let dst = self.resolve(
                peers,
                op.flags & GNTCOPY_DEST_GREF != 0,
                &op.dest,
                true,
                &mut held[1],
            )?;
            let ok = dst.0.copy_from(
                dst.1 + op.dest.offset as usize,
                &src.0,
                src.1 + op.source.offset as usize,
                len,
            );
            // A peer that truncated its memory under the copy: the bytes came from
            // (or went to) a replacement page, not the peer's.
            if src.0.faulted() || dst.0.faulted() {
                Err(GrantStatus::GeneralError)
            } else if ok {
                Ok(())
            } else {
                Err(GrantStatus::BadCopyArg)
            }
        })();
        for (peer, gref) in held.into_iter().flatten() {
            peer.unpin(gref);
        }
        match result {
            Ok(()) => GrantStatus::Okay,
            Err(s) => s,
        }
    }

    /// Resolve one side of a copy to (memory, byte offset of the page); pins grants.
    fn resolve(
        &self,
        peers: &[Arc<PeerDomain>],
        is_gref: bool,
        ptr: &xennet_ring::grant::GnttabCopyPtr,
        write: bool,
        held: &mut Option<(Arc<PeerDomain>, GrantRef)>,
    ) -> Result<(Arc<Region>, usize), GrantStatus> {
        if !is_gref {
            if ptr.domid != DomId::SELF.0 && ptr.domid != self.me.0 {
                return Err(GrantStatus::PermissionDenied);
            }
            let at = self
                .local
                .frame_offset(ptr.u, 0, PAGE_SIZE)
                .ok_or(GrantStatus::BadCopyArg)?;
            return Ok((self.local.memory.clone(), at));
        }
        let peer = peers
            .iter()
            .find(|p| p.domid().0 == ptr.domid)
            .cloned()
            .ok_or(GrantStatus::BadDomain)?;
        let gref = GrantRef(u32::try_from(ptr.u).map_err(|_| GrantStatus::BadGntref)?);
        let at = peer.pin(self.me, gref, write)?;
        let Some(memory) = peer.memory.clone() else {
            peer.unpin(gref);
            return Err(GrantStatus::BadDomain);
        };
        *held = Some((peer, gref));
        Ok((memory, at))
    }
}

/// The peer a batch is working with, its pin counts locked for the batch.
struct BatchPeer<'a> {
    peer: &'a PeerDomain,
    pins: std::sync::MutexGuard<'a, Vec<u16>>,
}

impl GrantOps {
    /// One copy with one side local and the other a grant of `bp`'s peer (the data
    /// path's shape): the peer is looked up and its pins locked once per batch.
    fn copy_batched<'a>(
        &self,
        op: &GnttabCopy,
        peers: &'a [Arc<PeerDomain>],
        bp: &mut Option<BatchPeer<'a>>,
    ) -> GrantStatus {
        let len = op.len as usize;
        if len > PAGE_SIZE
            || op.source.offset as usize + len > PAGE_SIZE
            || op.dest.offset as usize + len > PAGE_SIZE
        {
            return GrantStatus::BadCopyArg;
        }
        let src_gref = op.flags & GNTCOPY_SOURCE_GREF != 0;
        let (gptr, lptr) = if src_gref {
            (&op.source, &op.dest)
        } else {
            (&op.dest, &op.source)
        };
        if lptr.domid != DomId::SELF.0 && lptr.domid != self.me.0 {
            return GrantStatus::PermissionDenied;
        }
        let Some(local_at) = self.local.frame_offset(lptr.u, 0, PAGE_SIZE) else {
            return GrantStatus::BadCopyArg;
        };
        if bp.as_ref().map(|b| b.peer.domid().0) != Some(gptr.domid) {
            *bp = None;
            let Some(peer) = peers.iter().find(|p| p.domid().0 == gptr.domid) else {
                return GrantStatus::BadDomain;
            };
            let Ok(pins) = peer.pins.lock() else {
                return GrantStatus::GeneralError;
            };
            *bp = Some(BatchPeer { peer, pins });
        }
        let Some(b) = bp.as_mut() else {
            return GrantStatus::GeneralError;
        };
        let Ok(g) = u32::try_from(gptr.u) else {
            return GrantStatus::BadGntref;
        };
        let gref = GrantRef(g);
        let peer_at = match b.peer.pin_with(&mut b.pins, self.me, gref, !src_gref) {
            Ok(at) => at,
            Err(s) => return s,
        };
        let Some(peer_mem) = b.peer.memory.as_deref() else {
            b.peer.unpin_with(&mut b.pins, gref);
            return GrantStatus::BadDomain;
        };
        let ok = if src_gref {
            self.local.memory.copy_from(
                local_at + op.dest.offset as usize,
                peer_mem,
                peer_at + op.source.offset as usize,
                len,
            )
        } else {
            peer_mem.copy_from(
                peer_at + op.dest.offset as usize,
                &self.local.memory,
                local_at + op.source.offset as usize,
                len,
            )
        };
        b.peer.unpin_with(&mut b.pins, gref);
        if peer_mem.faulted() {
            // The peer truncated its memory under the copy (see guard.rs).
            GrantStatus::GeneralError
        } else if ok {
            GrantStatus::Okay
        } else {
            GrantStatus::BadCopyArg
        }
    }
}

impl GrantCopy for GrantOps {
    /// Each op gets its own status. Ops with exactly one grant side (what the drivers
    /// issue) look the peer up and lock its pin counts once per batch; others take the
    /// general path.
    fn grant_copy(&self, ops: &mut [GnttabCopy]) -> Result<(), GrantStatus> {
        let Ok(peers) = self.peers.read() else {
            for op in ops.iter_mut() {
                op.status = GrantStatus::GeneralError.raw();
            }
            return Ok(());
        };
        let mut bp: Option<BatchPeer<'_>> = None;
        for op in ops.iter_mut() {
            let grefs = op.flags & (GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF);
            let one_side = grefs == GNTCOPY_SOURCE_GREF || grefs == GNTCOPY_DEST_GREF;
            op.status = if one_side {
                self.copy_batched(op, &peers, &mut bp)
            } else {
                // Both sides local or both grants: rare; not under the batch's lock.
                bp = None;
                self.copy_one_with(op, &peers)
            }
            .raw();
        }
        Ok(())
    }
}

/// A peer page mapped through a grant; unmap with [`GrantMap::unmap`].
pub struct Mapping {
    peer: Arc<PeerDomain>,
    gref: GrantRef,
    ptr: NonNull<u8>,
    readonly: bool,
}

// SAFETY: the pointer is into the peer's mapping, kept alive by the Arc held here; it is
// only used through MappedPage's copy/atomic accessors, which are thread-agnostic.
unsafe impl Send for Mapping {}

impl MappedPage for Mapping {
    fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }
    fn readonly(&self) -> bool {
        self.readonly
    }
}

impl GrantMap for GrantOps {
    type Mapping = Mapping;

    fn map(&self, domid: DomId, gref: GrantRef, readonly: bool) -> Result<Mapping, GrantStatus> {
        let peer = self.peer(domid).ok_or(GrantStatus::BadDomain)?;
        let at = peer.pin(self.me, gref, !readonly)?;
        let ptr = match peer.memory.as_ref().and_then(|m| m.ptr(at, PAGE_SIZE)) {
            Some(p) => p,
            None => {
                peer.unpin(gref);
                return Err(GrantStatus::GeneralError);
            }
        };
        Ok(Mapping {
            peer,
            gref,
            ptr,
            readonly,
        })
    }

    fn unmap(&self, mapping: Mapping) -> Result<(), GrantStatus> {
        mapping.peer.unpin(mapping.gref);
        Ok(())
    }
}
