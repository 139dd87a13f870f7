//! Removing a guest's devices in order, as libxl does for `xl network-detach` (one
//! vif) and for `xennet destroy` (every vif of the domain: its guest is a live
//! process that must learn its domain is gone, where `xl destroy` simply kills the
//! domain):
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
//! The request is answered when that is done for every device it removes, or after
//! [`REMOVE_TIMEOUT`] if a frontend never closes (then the devices are removed
//! anyway, as libxl gives up waiting after `LIBXL_DESTROY_TIMEOUT`). A device that
//! never connected is removed at once, and so is a domain without vifs.

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
    /// `network-detach`: the domain stays, without that vif.
    Detach,
    /// `destroy`: the domain goes too.
    Destroy,
}

/// A removal under way.
pub(super) struct Removal {
    domid: u16,
    /// Its devices: a detach's one, a destroy's every vif of the domain (maybe none).
    devids: Vec<u32>,
    then: Then,
    deadline: Instant,
    replies: Vec<mpsc::Sender<Reply>>,
}

impl Up {
    /// Whether a removal of one of `domid`'s devices is under way.
    pub(super) fn removing(&self, domid: u16) -> bool {
        self.removals.iter().any(|r| r.domid == domid)
    }

    /// Starts removing `domid`'s vif `devid` (a detach: device 0 if `None`) or, for
    /// a destroy, all its vifs; `reply` gets the answer when it is done. Asked again
    /// for a device under way, the request waits for that removal; a destroy takes
    /// over the detaches of its domain under way (their requests are answered as
    /// the domain's destroy).
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
        let devids: Vec<u32> = match then {
            Then::Destroy => g.vifs.iter().map(|v| v.devid).collect(),
            Then::Detach => {
                let d = devid.unwrap_or(0);
                if !g.vifs.iter().any(|v| v.devid == d) {
                    let _ = reply.send(Err(match g.vifs.is_empty() {
                        true => format!("domain {domid} has no vif"),
                        false => format!("domain {domid} has no vif with devid {d}"),
                    }));
                    return;
                }
                vec![d]
            }
        };
        let joins = |r: &Removal| {
            r.domid == domid
                && (r.then == Then::Destroy || (then == Then::Detach && r.devids == devids))
        };
        if let Some(r) = self.removals.iter_mut().find(|r| joins(r)) {
            r.replies.push(reply);
            return;
        }
        let mut removal = Removal {
            domid,
            devids: Vec::new(),
            then,
            deadline: Instant::now() + REMOVE_TIMEOUT,
            replies: vec![reply],
        };
        if then == Then::Destroy {
            // The detaches of this domain under way become part of its destroy.
            let (taken, kept): (Vec<Removal>, Vec<Removal>) = std::mem::take(&mut self.removals)
                .into_iter()
                .partition(|r| r.domid == domid);
            self.removals = kept;
            for r in taken {
                removal.devids.extend(r.devids);
                removal.replies.extend(r.replies);
            }
        }
        let closing: Vec<u32> = devids
            .into_iter()
            .filter(|d| !removal.devids.contains(d))
            .collect();
        self.close_backends(domid, &closing);
        removal.devids.extend(closing);
        tracing::info!(domid, devids = ?removal.devids, ?then, "removing vifs");
        self.removals.push(removal);
        self.check_removals();
    }

    /// Says to the frontends of `devids` that their devices go away for good:
    /// backend `online` 0 and Closing, in one transaction.
    fn close_backends(&self, domid: u16, devids: &[u32]) {
        if devids.is_empty() {
            return;
        }
        let closing = self.xs.transact(|tx| {
            for devid in devids {
                let be = format!("/local/domain/0/backend/vif/{domid}/{devid}");
                tx.write(&format!("{be}/online"), "0")?;
                tx.write(
                    &format!("{be}/state"),
                    XenbusState::Closing.as_u8().to_string(),
                )?;
            }
            Ok(())
        });
        if let Err(e) = closing {
            tracing::warn!(domid, ?devids, "removal: {e}");
        }
    }

    /// Finishes every removal whose frontends have closed (or whose time is up).
    pub(super) fn check_removals(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.removals.len() {
            let r = &self.removals[i];
            let late = now >= r.deadline;
            if late || r.devids.iter().all(|d| self.frontend_let_go(r.domid, *d)) {
                let r = self.removals.remove(i);
                self.finish_removal(r, late);
            } else {
                i += 1;
            }
        }
    }

    /// Whether a removal's time is up (checked every turn without XenStore).
    pub(super) fn removal_due(&self) -> bool {
        let now = Instant::now();
        self.removals.iter().any(|r| now >= r.deadline)
    }

    /// The backend no longer serves the device and the frontend uses nothing of it:
    /// not connected here, and the frontend neither connected nor closing.
    fn frontend_let_go(&self, domid: u16, devid: u32) -> bool {
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
                let mut text = String::new();
                for devid in r.devids {
                    let name = self
                        .guests
                        .get(&domid)
                        .and_then(|g| g.vifs.iter().find(|v| v.devid == devid))
                        .map_or_else(|| format!("vif{domid}.{devid}"), |v| v.name.clone());
                    self.forget_devices(domid, Some(devid));
                    let _ = self
                        .xs
                        .rm(&format!("/local/domain/0/backend/vif/{domid}/{devid}"));
                    let _ = self
                        .xs
                        .rm(&format!("/local/domain/{domid}/device/vif/{devid}"));
                    text.push_str(&format!("{name} detached from domain {domid}\n"));
                }
                Ok(text)
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

    /// Answers the removals of `domid` under way, if any, with `reply` (its domain
    /// went away some other way).
    pub(super) fn end_removal(&mut self, domid: u16, reply: Reply) {
        let (ended, kept): (Vec<Removal>, Vec<Removal>) = std::mem::take(&mut self.removals)
            .into_iter()
            .partition(|r| r.domid == domid);
        self.removals = kept;
        for tx in ended.into_iter().flat_map(|r| r.replies) {
            let _ = tx.send(reply.clone());
        }
    }
}
