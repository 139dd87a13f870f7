//! Removing a guest's device in order, as libxl does for `xl network-detach` (and
//! for `xennet destroy`, whose guest is a live process that must learn its domain
//! is gone, where `xl destroy` simply kills the domain):
//!
//! ```text
//!  toolstack: backend online = 0 and state 5 (Closing), one transaction
//!  frontend:  sees its backend closing, reads online = 0 (the device is going away
//!             for good, not a backend that failed), closes: state 5
//!  backend:   detaches the vif, state 6 (Closed) (netback's state machine)
//!  frontend:  ends its grants, state 6
//!  toolstack: removes both directories (and, for destroy, the domain: its
//!             XenStore connection closes, which tells the guest it is destroyed)
//! ```
//!
//! The request is answered when that is done, or after [`REMOVE_TIMEOUT`] if the
//! frontend never closes (then the device is removed anyway, as libxl gives up
//! waiting after `LIBXL_DESTROY_TIMEOUT`). A device that never connected is
//! removed at once.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use xennet_netback::up::Device;
use xennet_xenstore::xenbus::read_state;
use xennet_xenstore::XenbusState;

use super::Up;
use crate::control::Reply;

/// How long a removal waits for the frontend to close.
pub(super) const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What follows once the device is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Then {
    /// `network-detach`: the domain stays, without its vif.
    Detach,
    /// `destroy`: the domain goes too.
    Destroy,
}

/// A removal under way.
pub(super) struct Removal {
    domid: u16,
    /// The device (`None`: the domain has no vif; a destroy finishes at once).
    devid: Option<u32>,
    then: Then,
    deadline: Instant,
    replies: Vec<mpsc::Sender<Reply>>,
}

impl Up {
    /// Whether a removal of `domid`'s device is under way.
    pub(super) fn removing(&self, domid: u16) -> bool {
        self.removals.iter().any(|r| r.domid == domid)
    }

    /// Starts removing `domid`'s vif (`devid`: only that device); `reply` gets the
    /// answer when it is done.
    pub(super) fn start_removal(
        &mut self,
        domid: u16,
        devid: Option<u32>,
        then: Then,
        reply: mpsc::Sender<Reply>,
    ) {
        let Some(g) = self.guests.get(&domid) else {
            let _ = reply.send(Err(format!("no domain {domid}")));
            return;
        };
        let vif_devid = g.vif.as_ref().map(|v| v.devid);
        let devid = match (devid, vif_devid, then) {
            (Some(d), Some(v), _) if d != v => {
                let _ = reply.send(Err(format!("domain {domid} has no vif {domid}.{d}")));
                return;
            }
            (_, None, Then::Detach) => {
                let _ = reply.send(Err(format!("domain {domid} has no vif")));
                return;
            }
            (_, v, _) => v,
        };
        if let Some(r) = self.removals.iter_mut().find(|r| r.domid == domid) {
            // Asked again while under way: a destroy supersedes a detach.
            if then == Then::Destroy {
                r.then = Then::Destroy;
            }
            r.replies.push(reply);
            return;
        }
        if let Some(devid) = devid {
            let be = format!("/local/domain/0/backend/vif/{domid}/{devid}");
            let closing = self.xs.transact(|tx| {
                tx.write(&format!("{be}/online"), "0")?;
                tx.write(
                    &format!("{be}/state"),
                    XenbusState::Closing.as_u8().to_string(),
                )
            });
            if let Err(e) = closing {
                tracing::warn!(device = %be, "removal: {e}");
            }
        }
        tracing::info!(domid, ?then, "removing the vif");
        self.removals.push(Removal {
            domid,
            devid,
            then,
            deadline: Instant::now() + REMOVE_TIMEOUT,
            replies: vec![reply],
        });
        self.check_removals();
    }

    /// Finishes every removal whose frontend has closed (or whose time is up).
    pub(super) fn check_removals(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.removals.len() {
            let r = &self.removals[i];
            let late = now >= r.deadline;
            if late || self.frontend_let_go(r.domid, r.devid) {
                let r = self.removals.remove(i);
                self.finish_removal(r, late);
            } else {
                i += 1;
            }
        }
    }

    /// Whether the removal's time is up (checked every turn without XenStore).
    pub(super) fn removal_due(&self) -> bool {
        let now = Instant::now();
        self.removals.iter().any(|r| now >= r.deadline)
    }

    /// The backend no longer serves the device and the frontend uses nothing of it:
    /// not connected here, and the frontend neither connected nor closing.
    fn frontend_let_go(&self, domid: u16, devid: Option<u32>) -> bool {
        let Some(devid) = devid else {
            return true;
        };
        if matches!(self.devs.get(&(domid, devid)), Some(Device::Connected(..))) {
            return false;
        }
        let fe = format!("/local/domain/{domid}/device/vif/{devid}/state");
        !matches!(
            read_state(&self.xs, &fe),
            Ok(XenbusState::Connected | XenbusState::Closing)
        )
    }

    fn finish_removal(&mut self, r: Removal, late: bool) {
        let domid = r.domid;
        let name = self
            .guests
            .get(&domid)
            .and_then(|g| g.vif.as_ref())
            .map_or_else(|| format!("vif{domid}.0"), |v| v.name.clone());
        if late {
            tracing::warn!(
                domid,
                "frontend did not close in {REMOVE_TIMEOUT:?}; removed anyway"
            );
        }
        let reply = match r.then {
            Then::Destroy => {
                self.destroy(domid);
                Ok(format!("domain {domid} destroyed\n"))
            }
            Then::Detach => {
                if let Some(devid) = r.devid {
                    self.forget_devices(domid, Some(devid));
                    let _ = self
                        .xs
                        .rm(&format!("/local/domain/0/backend/vif/{domid}/{devid}"));
                    let _ = self
                        .xs
                        .rm(&format!("/local/domain/{domid}/device/vif/{devid}"));
                }
                Ok(format!("{name} detached from domain {domid}\n"))
            }
        };
        let reply = reply.map(|mut text| {
            if late {
                text.push_str("(the frontend did not close in time; removed anyway)\n");
            }
            text
        });
        for tx in r.replies {
            let _ = tx.send(reply.clone());
        }
    }

    /// Answers the removal of `domid` under way, if any, with `reply` (its domain
    /// went away some other way).
    pub(super) fn end_removal(&mut self, domid: u16, reply: Reply) {
        if let Some(i) = self.removals.iter().position(|r| r.domid == domid) {
            for tx in self.removals.remove(i).replies {
                let _ = tx.send(reply.clone());
            }
        }
    }
}
