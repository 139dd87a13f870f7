//! What both paths of a queue share.

use xennet_ring::{DomId, GrantMap};

use super::staging::StaticGrants;

/// What both paths of a queue read: the frontend, the platform's grant and memory
/// operations, and the frontend's pages kept mapped (staging grants). Only the queue
/// changes it (the control ring adds and removes staging grants).
pub(super) struct Peer<G: GrantMap, M> {
    pub(super) frontend: DomId,
    pub(super) grants: G,
    pub(super) memory: M,
    pub(super) statics: StaticGrants<G::Mapping>,
}
