//! Staging grants (Xen's docs/misc/netif-staging-grants): pages a frontend asked us,
//! over the control ring, to keep mapped. A slot whose grant is in this table is
//! copied with a plain memcpy through the mapping: no grant operation per packet.
//!
//! The table is per queue, bounded ([`STATIC_GRANTS_PER_QUEUE`]), sorted by grant
//! reference (a binary search per slot) and allocated once at connect time.

use xennet_ring::netif::{ctrl_status, CtrlGref, XEN_NETIF_CTRLF_GREF_READONLY};
use xennet_ring::{DomId, GrantMap, GrantRef, MappedPage};

/// Grants a queue keeps mapped for its frontend: a full tx ring and a full rx ring of
/// buffers (`GET_GREF_MAPPING_SIZE` answers this).
pub const STATIC_GRANTS_PER_QUEUE: usize = 512;

/// Most entries one ADD/DEL_GREF_MAPPING list page holds.
pub const GREF_LIST_MAX: usize = xennet_ring::PAGE_SIZE / core::mem::size_of::<CtrlGref>();

/// One queue's persistent mappings, sorted by grant reference.
pub(crate) struct StaticGrants<Mp> {
    entries: Vec<(GrantRef, Mp)>,
}

impl<Mp: MappedPage> StaticGrants<Mp> {
    pub(crate) fn new() -> Self {
        StaticGrants {
            entries: Vec::with_capacity(STATIC_GRANTS_PER_QUEUE),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry mapping `gref`, if any.
    #[inline]
    pub(crate) fn find(&self, gref: GrantRef) -> Option<usize> {
        self.entries.binary_search_by_key(&gref, |e| e.0).ok()
    }

    /// The mapping of entry `i` (from [`StaticGrants::find`] in the same batch).
    #[inline]
    pub(crate) fn page(&self, i: usize) -> &Mp {
        &self.entries[i].1
    }

    /// ADD_GREF_MAPPING: map every entry of `list`, or none (netif.h: on failure no
    /// mapping is added). Refuses duplicates, grants already mapped, and more than the
    /// table holds.
    pub(crate) fn add<G: GrantMap<Mapping = Mp>>(
        &mut self,
        grants: &G,
        frontend: DomId,
        list: &[CtrlGref],
    ) -> u32 {
        if self.entries.len() + list.len() > STATIC_GRANTS_PER_QUEUE {
            return ctrl_status::INVALID_PARAMETER;
        }
        let before = self.entries.len();
        for e in list {
            // The table is sorted up to `before`; this list's entries follow unsorted.
            let (old, new) = self.entries.split_at(before);
            if old.binary_search_by_key(&e.gref, |m| m.0).is_ok()
                || new.iter().any(|m| m.0 == e.gref)
            {
                self.undo(grants, before);
                return ctrl_status::INVALID_PARAMETER;
            }
            let readonly = e.flags & XEN_NETIF_CTRLF_GREF_READONLY != 0;
            match grants.map(frontend, e.gref, readonly) {
                Ok(m) => self.entries.push((e.gref, m)),
                Err(_) => {
                    self.undo(grants, before);
                    return ctrl_status::INVALID_PARAMETER;
                }
            }
        }
        self.entries.sort_unstable_by_key(|e| e.0);
        ctrl_status::SUCCESS
    }

    /// Unmap the entries pushed after `len` (a failed ADD), keeping the sorted prefix.
    fn undo<G: GrantMap<Mapping = Mp>>(&mut self, grants: &G, len: usize) {
        for (_, m) in self.entries.drain(len..) {
            let _ = grants.unmap(m);
        }
    }

    /// DEL_GREF_MAPPING: unmap each listed grant that is mapped; every entry's status
    /// says whether it was. Returns how many were unmapped.
    pub(crate) fn del<G: GrantMap<Mapping = Mp>>(
        &mut self,
        grants: &G,
        list: &mut [CtrlGref],
    ) -> u32 {
        let mut n = 0;
        for e in list {
            match self.find(e.gref) {
                Some(i) => {
                    let (_, m) = self.entries.remove(i);
                    let _ = grants.unmap(m);
                    e.status = ctrl_status::SUCCESS as u16;
                    n += 1;
                }
                None => e.status = ctrl_status::INVALID_PARAMETER as u16,
            }
        }
        n
    }

    /// Unmap everything (disconnect).
    pub(crate) fn clear<G: GrantMap<Mapping = Mp>>(&mut self, grants: &G) {
        self.undo(grants, 0);
    }
}
