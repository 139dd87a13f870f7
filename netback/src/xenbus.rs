//! The backend half of the XenStore handshake, as Linux netback does it, on any
//! platform.
//!
//! The driver domain calls [`probe`] when the toolstack has written a device's
//! backend directory: it advertises the features and goes InitWait. When the
//! frontend reaches Initialised, [`BackendDevice::read_frontend`] reads the ring
//! references and channels (each node once, validated) and
//! [`BackendDevice::connect_with`] maps the rings and binds the channels over any
//! granting platform and any [`EventChannelOps`] (the process platform's
//! [`BackendDevice::connect`], or Linux user space under real Xen through
//! `xennet_platform::xenlinux`); the caller then attaches the vif to its switch and
//! sets Connected. A frontend that does not set `request-rx-copy` is refused, as
//! Linux refuses it.

use std::sync::Arc;
use std::time::Duration;

use xennet_platform::shm::{Domain, EventChannels, EventPort, GrantOps};
use xennet_platform::EventChannelOps;
use xennet_ring::{DomId, FrameAlloc, GrantCopy, GrantMap, GrantRef, LocalMemory, Port};
use xennet_xenstore::xenbus::{read_flag, read_num, read_opt_num, read_state, write_state};
use xennet_xenstore::{NodeError, XenbusState, XsClient, XsError};

use crate::vif::{CtrlRing, NetbackQueue, QueueSetup, Vif, VifError};

/// A vif on the process platform.
pub type ShmVif = Vif<GrantOps, Domain, EventPort>;

/// A connected vif and its local event-channel ports (per queue: tx, and rx when
/// split; then the control channel), as [`BackendDevice::connect_with`] returns them.
pub type ConnectedVif<G, M, N> = (Vif<G, M, N>, Vec<Port>);

/// Most queues a backend offers.
pub const MAX_QUEUES: usize = 8;

/// Why a step of the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum XenbusError {
    /// A node could not be read or held something unusable.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The frontend lacks something required.
    #[error("refused: {0}")]
    Refused(String),
    /// Mapping the rings failed.
    #[error(transparent)]
    Vif(#[from] VifError),
    /// Binding the channels failed (the platform's event-channel error, with the
    /// port and domain it was binding).
    #[error("event channel: {0}")]
    Events(String),
}

impl From<XsError> for XenbusError {
    fn from(e: XsError) -> Self {
        XenbusError::Node(NodeError::Xs(e))
    }
}

fn bad(path: &str, value: &str, why: &'static str) -> XenbusError {
    XenbusError::Node(NodeError::bad(path, value, why))
}

/// One device as the backend sees it.
#[derive(Clone, Debug)]
pub struct BackendDevice {
    /// `/local/domain/<be>/backend/vif/<fe>/<n>`.
    pub path: String,
    /// The frontend's directory (from the `frontend` node).
    pub frontend: String,
    /// The frontend's domain.
    pub frontend_id: DomId,
    /// Device number.
    pub devid: u32,
    /// `rate=` as bytes per interval.
    pub rate: Option<(u64, Duration)>,
    /// Queues offered.
    pub max_queues: usize,
    /// Whether `feature-ctrl-ring` was offered.
    pub ctrl_ring: bool,
}

/// What a backend offers a frontend beyond the fixed features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Queues offered (`multi-queue-max-queues`, clamped to [`MAX_QUEUES`]).
    pub max_queues: usize,
    /// `feature-ctrl-ring`: staging grants and Toeplitz hash settings.
    pub ctrl_ring: bool,
}

impl Offer {
    /// Everything this backend can do, with `max_queues` queues.
    pub fn full(max_queues: usize) -> Offer {
        Offer {
            max_queues,
            ctrl_ring: true,
        }
    }
}

/// One queue's rings and channel as the frontend published them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueParams {
    /// `tx-ring-ref`.
    pub tx_ring_ref: GrantRef,
    /// `rx-ring-ref`.
    pub rx_ring_ref: GrantRef,
    /// `event-channel` (or `event-channel-tx`).
    pub tx_port: Port,
    /// `event-channel` (or `event-channel-rx`).
    pub rx_port: Port,
}

/// What the frontend published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendParams {
    /// Per queue.
    pub queues: Vec<QueueParams>,
    /// `feature-sg`.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso_tcpv4: bool,
    /// `ctrl-ring-ref` and `event-channel-ctrl`, when the frontend set up a control
    /// ring (only read if `feature-ctrl-ring` was offered).
    pub ctrl: Option<(GrantRef, Port)>,
}

/// Reads a device's backend directory, advertises the backend's features (all of
/// them: [`Offer::full`]) and goes InitWait. The `frontend` node must name the
/// frontend domain's own device directory (a toolstack bug or a forged node is
/// refused).
pub fn probe(xs: &XsClient, path: &str, max_queues: usize) -> Result<BackendDevice, XenbusError> {
    probe_with(xs, path, Offer::full(max_queues))
}

/// [`probe`] offering what `offer` says (a backend without the control ring serves
/// frontends by plain grant copy).
pub fn probe_with(xs: &XsClient, path: &str, offer: Offer) -> Result<BackendDevice, XenbusError> {
    let max_queues = offer.max_queues;
    let frontend = xs.read_string(&format!("{path}/frontend"))?;
    let frontend_id = DomId(read_num(xs, &format!("{path}/frontend-id"))?);
    let devid: u32 = read_num(xs, &format!("{path}/handle"))?;
    let expect = format!("/local/domain/{}/device/vif/{devid}", frontend_id.0);
    if frontend != expect {
        return Err(bad(
            &format!("{path}/frontend"),
            &frontend,
            "not the frontend domain's vif directory",
        ));
    }
    let rate_path = format!("{path}/rate");
    let rate = match xs.try_read_string(&rate_path)? {
        None => None,
        Some(v) => {
            let (b, us) = v
                .split_once(',')
                .ok_or_else(|| bad(&rate_path, &v, "expected bytes,microseconds"))?;
            let b: u64 = b
                .trim()
                .parse()
                .map_err(|_| bad(&rate_path, &v, "bytes not a number"))?;
            let us: u64 = us
                .trim()
                .parse()
                .map_err(|_| bad(&rate_path, &v, "interval not a number"))?;
            if b == 0 || us == 0 {
                return Err(bad(&rate_path, &v, "rate and interval must be positive"));
            }
            Some((b, Duration::from_micros(us)))
        }
    };
    let max_queues = max_queues.clamp(1, MAX_QUEUES);
    let dev = BackendDevice {
        path: path.to_owned(),
        frontend,
        frontend_id,
        devid,
        rate,
        max_queues,
        ctrl_ring: offer.ctrl_ring,
    };
    xs.transact(|tx| {
        let put = |k: &str, v: &str| tx.write(&format!("{path}/{k}"), v);
        put("feature-sg", "1")?;
        put("feature-gso-tcpv4", "1")?;
        put("feature-rx-copy", "1")?;
        put("feature-rx-flip", "0")?;
        put("feature-split-event-channels", "1")?;
        put("feature-multicast-control", "0")?;
        put("multi-queue-max-queues", &max_queues.to_string())?;
        put("feature-ctrl-ring", if offer.ctrl_ring { "1" } else { "0" })?;
        put("hotplug-status", "connected")?;
        put("state", &XenbusState::InitWait.as_u8().to_string())
    })?;
    Ok(dev)
}

impl BackendDevice {
    /// The frontend's `state`.
    pub fn frontend_state(&self, xs: &XsClient) -> Result<XenbusState, XenbusError> {
        Ok(read_state(xs, &format!("{}/state", self.frontend))?)
    }

    /// Our `state`.
    pub fn state(&self, xs: &XsClient) -> Result<XenbusState, XenbusError> {
        Ok(read_state(xs, &format!("{}/state", self.path))?)
    }

    /// Writes our `state`.
    pub fn set_state(&self, xs: &XsClient, s: XenbusState) -> Result<(), XenbusError> {
        Ok(write_state(xs, &format!("{}/state", self.path), s)?)
    }

    /// Refuses the device: records why (in `error`, like `xenbus_dev_fatal`) and
    /// goes Closing.
    pub fn fail(&self, xs: &XsClient, why: &str) {
        tracing::warn!(device = %self.path, "{why}");
        let _ = xs.write(&format!("{}/error", self.path), why);
        let _ = self.set_state(xs, XenbusState::Closing);
    }

    /// Reads what the frontend published, once, validated.
    pub fn read_frontend(&self, xs: &XsClient) -> Result<FrontendParams, XenbusError> {
        let fe = &self.frontend;
        if !read_flag(xs, &format!("{fe}/request-rx-copy"))? {
            return Err(XenbusError::Refused(
                "frontend does not set request-rx-copy".into(),
            ));
        }
        let nq_path = format!("{fe}/multi-queue-num-queues");
        let (n, per_queue) = match read_opt_num::<usize>(xs, &nq_path)? {
            None => (1, false),
            Some(n) if n == 0 || n > self.max_queues => {
                return Err(bad(&nq_path, &n.to_string(), "more queues than offered"));
            }
            // One queue keeps its keys at the top level even when the count is
            // written (Linux netfront writes multi-queue-num-queues = 1 so), as
            // Linux netback reads them.
            Some(n) => (n, n > 1),
        };
        let mut queues = Vec::with_capacity(n);
        for i in 0..n {
            let dir = if per_queue {
                format!("{fe}/queue-{i}")
            } else {
                fe.clone()
            };
            let tx_ring_ref = GrantRef(read_num(xs, &format!("{dir}/tx-ring-ref"))?);
            let rx_ring_ref = GrantRef(read_num(xs, &format!("{dir}/rx-ring-ref"))?);
            let (tx_port, rx_port) = match read_opt_num(xs, &format!("{dir}/event-channel"))? {
                Some(p) => (Port(p), Port(p)),
                None => (
                    Port(read_num(xs, &format!("{dir}/event-channel-tx"))?),
                    Port(read_num(xs, &format!("{dir}/event-channel-rx"))?),
                ),
            };
            queues.push(QueueParams {
                tx_ring_ref,
                rx_ring_ref,
                tx_port,
                rx_port,
            });
        }
        let ctrl = if self.ctrl_ring {
            let ref_path = format!("{fe}/ctrl-ring-ref");
            let port_path = format!("{fe}/event-channel-ctrl");
            match (
                read_opt_num::<u32>(xs, &ref_path)?,
                read_opt_num::<u32>(xs, &port_path)?,
            ) {
                (None, None) => None,
                (Some(r), Some(p)) => Some((GrantRef(r), Port(p))),
                (Some(_), None) => return Err(bad(&port_path, "", "missing beside ctrl-ring-ref")),
                (None, Some(_)) => {
                    return Err(bad(&ref_path, "", "missing beside event-channel-ctrl"))
                }
            }
        } else {
            None
        };
        Ok(FrontendParams {
            ctrl,
            queues,
            sg: read_flag(xs, &format!("{fe}/feature-sg"))?,
            gso_tcpv4: read_flag(xs, &format!("{fe}/feature-gso-tcpv4"))?,
        })
    }

    /// Binds the frontend's channels and maps its rings (and its control ring, if
    /// it set one up), on the process platform: [`BackendDevice::connect_with`]
    /// with the driver domain's grant ops, memory and event channels.
    pub fn connect(
        &self,
        params: &FrontendParams,
        ops: &GrantOps,
        domain: &Domain,
        events: &Arc<EventChannels>,
    ) -> Result<(ShmVif, Vec<Port>), XenbusError> {
        self.connect_with(params, ops.clone(), domain.clone(), events)
    }

    /// Binds the frontend's channels and maps its rings (and its control ring, if
    /// it set one up) on any platform: `grants` maps and copies the frontend's
    /// grants, `memory` holds the backend's staging pages (the local side of every
    /// copy, so the same pages `grants` copies into) and `events` binds the
    /// channels. Returns the vif and the local ports (per queue: tx, and rx when
    /// split; then the control channel). On failure everything bound so far is
    /// closed again.
    pub fn connect_with<G, M, E>(
        &self,
        params: &FrontendParams,
        grants: G,
        memory: M,
        events: &E,
    ) -> Result<ConnectedVif<G, M, E::Notifier>, XenbusError>
    where
        G: GrantCopy + GrantMap + Clone,
        M: LocalMemory + FrameAlloc + Clone,
        E: EventChannelOps,
    {
        let fe = self.frontend_id;
        let bind = |remote: Port| {
            events.bind_interdomain(fe, remote).map_err(|e| {
                XenbusError::Events(format!(
                    "cannot bind port {} of domain {}: {e}",
                    remote.0, fe.0
                ))
            })
        };
        let mut bound: Vec<Port> = Vec::new();
        let mut queues = Vec::new();
        let mut ctrl = None;
        let now = xennet_platform::clock::now();
        let result = (|| -> Result<(), XenbusError> {
            for q in &params.queues {
                let tx = bind(q.tx_port)?;
                bound.push(tx);
                let rx = if q.rx_port == q.tx_port {
                    tx
                } else {
                    let rx = bind(q.rx_port)?;
                    bound.push(rx);
                    rx
                };
                let setup = QueueSetup {
                    frontend: fe,
                    tx_ring_ref: q.tx_ring_ref,
                    rx_ring_ref: q.rx_ring_ref,
                };
                queues.push(NetbackQueue::connect(
                    grants.clone(),
                    memory.clone(),
                    setup,
                    self.rate,
                    events.notifier(tx),
                    events.notifier(rx),
                    now,
                )?);
            }
            if let Some((ring_ref, port)) = params.ctrl {
                let local = bind(port)?;
                bound.push(local);
                ctrl = Some(CtrlRing::connect(
                    &grants,
                    fe,
                    ring_ref,
                    events.notifier(local),
                )?);
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                let mut vif = Vif::new(fe, self.devid, queues);
                vif.set_split_channels(params.queues.iter().map(|q| q.rx_port != q.tx_port));
                vif.set_rx_sg(params.sg);
                if let Some(c) = ctrl {
                    vif.attach_ctrl(c);
                }
                Ok((vif, bound))
            }
            Err(e) => {
                if let Some(c) = ctrl {
                    c.close(&grants);
                }
                for q in queues {
                    q.close();
                }
                for p in bound {
                    events.close(p);
                }
                Err(e)
            }
        }
    }
}
