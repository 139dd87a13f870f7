//! Who may ask what of the control socket. Domain 0's toolstack (any process of
//! this user or root that is not a guest) may ask anything; a guest's process may
//! ask only for its own devices (`create`, `network-attach`, `network-detach` and
//! `destroy` naming its own domain), as a domU reaches no toolstack on real Xen.
//!
//! The plain-process platform has no hypervisor to say which domain a process
//! is: a process is guest N when it owns `DIR/domain/N` (the `pid` file a guest
//! writes with its memory, before it asks for its vif). That keeps guests to
//! their own devices; it is no boundary against a process of the same user that
//! sets out to pretend, which could read the domains' memory files anyway. The
//! driver domain's own process (it owns domain 0's files) is domain 0, also when it
//! holds a guest's memory too (a driver domain and a guest in one process, as the
//! in-process tests run them).

use xennet_ring::DomId;

use super::Up;
use crate::control::Peer;

/// The requests a guest may make, each naming its own domain id second.
const GUEST_REQUESTS: [&str; 4] = ["create", "network-attach", "network-detach", "destroy"];

impl Up {
    /// Whether `peer` may make request `w`; the error says why not.
    pub(super) fn authorize(&self, peer: &Peer, w: &[&str]) -> Result<(), String> {
        if let Some(guest) = peer.pid.and_then(|pid| self.guest_of(pid)) {
            let own = matches!(w, [cmd, id, ..]
                if GUEST_REQUESTS.contains(cmd) && id.parse::<u16>() == Ok(guest.0));
            return if own {
                Ok(())
            } else {
                Err(format!(
                    "domain {} may ask only for its own devices ({} {} ...)",
                    guest.0,
                    GUEST_REQUESTS.join("|"),
                    guest.0
                ))
            };
        }
        let me = rustix::process::geteuid().as_raw();
        match peer.uid {
            Some(uid) if uid != 0 && uid != me => Err(format!(
                "uid {uid} is not domain 0's toolstack (uid {me} or root)"
            )),
            _ => Ok(()),
        }
    }

    /// The guest domain whose files process `pid` owns, if any (none for domain
    /// 0's own process).
    fn guest_of(&self, pid: u32) -> Option<DomId> {
        if self.rt.owner(DomId(0)) == Some(pid) {
            return None;
        }
        self.rt
            .domains()
            .into_iter()
            .find(|d| d.0 != 0 && self.rt.owner(*d) == Some(pid))
    }
}
