//! The per-device backend state machine, as Linux keeps it in netback's xenbus.c:
//! what the backend does for one `vif` device directory at each look at XenStore.
//!
//! ```text
//!   (no device)  --frontend Initialising-->  probe: features, InitWait  = Probed
//!   Probed       --frontend Initialised-->   read rings/channels, attach = Connected
//!   Probed       --attach refused-->         error node, Closing         = Idle
//!   Connected    --vif died-->               error node (why), Closing   = Idle
//!   Connected    --frontend Closing/Closed-> detach, Closed              = Idle
//!   Idle         --frontend Closing/Closed-> Closed
//!   Idle         --frontend Initialising-->  offer again, InitWait       = Probed
//! ```
//!
//! Every disconnect ends at Closed once the frontend has let go, whoever started it:
//! after a refusal or a fatal error the backend says Closing (and why, in its `error`
//! node, as Linux's `xenbus_dev_fatal` does) and goes Closed when the frontend answers
//! Closing or Closed, as Linux netback follows its frontend to Closed.
//!
//! The machine is level-triggered: [`step`] reads the states in the store and acts on
//! them, so a missed or coalesced watch event cannot wedge a device. Where the vif's
//! frames go is the caller's business, behind [`Attach`]: the driver domain attaches
//! a connected vif to its switch.

use xennet_xenstore::xenbus::{read_state, write_state};
use xennet_xenstore::{XenbusState, XsClient};

use crate::xenbus::{probe, BackendDevice};

/// Where one device stands.
#[derive(Debug)]
pub enum Device<H> {
    /// InitWait: waiting for the frontend.
    Probed(BackendDevice),
    /// Attached; `H` is the caller's handle for the connected vif.
    Connected(BackendDevice, H),
    /// Closed or refused: waits for the frontend to start over.
    Idle(BackendDevice),
}

impl<H> Device<H> {
    /// The device's XenStore side.
    pub fn dev(&self) -> &BackendDevice {
        match self {
            Device::Probed(d) | Device::Connected(d, _) | Device::Idle(d) => d,
        }
    }

    /// The handle of a connected device.
    pub fn handle(&self) -> Option<&H> {
        match self {
            Device::Connected(_, h) => Some(h),
            _ => None,
        }
    }
}

/// What the state machine asks of the driver domain.
pub trait Attach {
    /// The handle of an attached vif.
    type Handle;

    /// The frontend is Initialised: read its rings and channels, connect the vif and
    /// attach it. An error is written into the backend's `error` node.
    fn attach(&mut self, xs: &XsClient, dev: &BackendDevice) -> Result<Self::Handle, String>;

    /// Why the attached vif ended (a fatal protocol error, named), or `None` while
    /// it runs. The reason is written into the backend's `error` node.
    fn ended(&self, handle: &Self::Handle) -> Option<String>;

    /// The frontend left: detach the vif and release what it held.
    fn detach(&mut self, handle: Self::Handle);
}

/// One look at device `path` (`/local/domain/<be>/backend/vif/<fe>/<n>`) in the state
/// `dev` left by the previous look (`None`: never probed). Returns the new state
/// (`None` while the device waits for the toolstack to start it).
pub fn step<A: Attach>(
    xs: &XsClient,
    path: &str,
    dev: Option<Device<A::Handle>>,
    max_queues: usize,
    attach: &mut A,
) -> Option<Device<A::Handle>> {
    let Some(dev) = dev else {
        if let Ok(XenbusState::Initialising) = read_state(xs, &format!("{path}/state")) {
            match probe(xs, path, max_queues) {
                Ok(d) => return step(xs, path, Some(Device::Probed(d)), max_queues, attach),
                Err(e) => {
                    tracing::warn!("{path}: {e}");
                    let _ = xs.write(&format!("{path}/error"), e.to_string());
                    let _ = write_state(xs, &format!("{path}/state"), XenbusState::Closing);
                }
            }
        }
        return None;
    };
    let fe_state = dev.dev().frontend_state(xs).unwrap_or(XenbusState::Unknown);
    Some(match dev {
        Device::Probed(d) => match fe_state {
            XenbusState::Initialised | XenbusState::Connected => connect(xs, d, attach),
            _ => Device::Probed(d),
        },
        Device::Connected(d, h) => {
            if let Some(why) = attach.ended(&h) {
                attach.detach(h);
                d.fail(xs, &why);
                Device::Idle(d)
            } else if matches!(fe_state, XenbusState::Connected | XenbusState::Initialised) {
                Device::Connected(d, h)
            } else {
                attach.detach(h);
                let _ = d.set_state(xs, XenbusState::Closed);
                Device::Idle(d)
            }
        }
        Device::Idle(d) => match fe_state {
            // The frontend starts over (reconnect): offer again.
            XenbusState::Initialising if d.state(xs).ok() != Some(XenbusState::InitWait) => {
                let _ = xs.rm(&format!("{}/error", d.path));
                let _ = d.set_state(xs, XenbusState::InitWait);
                Device::Probed(d)
            }
            // The frontend answered our Closing (a refusal, a fatal error) or left:
            // nothing is attached, so the device is Closed.
            XenbusState::Closing | XenbusState::Closed | XenbusState::Unknown => {
                if d.state(xs).ok() != Some(XenbusState::Closed) {
                    let _ = d.set_state(xs, XenbusState::Closed);
                }
                Device::Idle(d)
            }
            _ => Device::Idle(d),
        },
    })
}

fn connect<A: Attach>(xs: &XsClient, d: BackendDevice, attach: &mut A) -> Device<A::Handle> {
    match attach.attach(xs, &d) {
        Ok(h) => {
            if let Err(e) = d.set_state(xs, XenbusState::Connected) {
                tracing::warn!("{}: {e}", d.path);
            }
            Device::Connected(d, h)
        }
        Err(e) => {
            d.fail(xs, &e);
            Device::Idle(d)
        }
    }
}
