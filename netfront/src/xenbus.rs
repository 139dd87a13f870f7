//! The frontend half of the XenStore handshake, as Linux netfront does it
//! (`xen/io/netif.h`, `xen/io/xenbus.h`), on the process platform.
//!
//! ```text
//!  toolstack: writes both device directories, states Initialising (1)
//!  backend:   feature-* , multi-queue-max-queues, state InitWait (2)
//!  frontend:  waits for InitWait, grants rings, allocates event channels, then in
//!             one transaction: tx-ring-ref, rx-ring-ref, event-channel (or
//!             queue-N/...), ctrl-ring-ref and event-channel-ctrl (if the backend
//!             offers feature-ctrl-ring), request-rx-copy, feature-rx-notify,
//!             feature-sg, feature-gso-tcpv4, feature-no-csum-offload,
//!             multi-queue-num-queues; receive
//!             buffers posted; state Connected (4), as Linux netfront does it
//!             (Linux netback connects on Connected and ignores Initialised)
//!  backend:   maps the rings, binds the channels, state Connected (4)
//!  frontend:  kicks every queue once; over the control ring:
//!             GET_GREF_MAPPING_SIZE + ADD_GREF_MAPPING per queue (staging grants),
//!             Toeplitz hash settings when there are several queues
//!  close:     frontend Closing (5) -> backend Closed (6) -> frontend ends every
//!             grant and closes its channels -> Closed (6)
//! ```
//!
//! Every value read from the backend's directory is read once and validated;
//! a bad value is an error naming the node, never a panic.
//!
//! The handshake is written once over the platform: [`connect_with`] takes any
//! granting platform and any [`EventChannelOps`], so the same code runs on the
//! process platform ([`connect`]) and in Linux user space under real Xen
//! (`xennet_platform::xenlinux`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use xennet_platform::shm::{Domain, EventChannels, EventPort};
use xennet_platform::EventChannelOps;
use xennet_ring::{DomId, Port};
use xennet_ring::{FrameAlloc, GrantAccess, LocalMemory};
use xennet_xenstore::xenbus::{read_flag, read_num, read_opt_num, read_state, write_state};
pub use xennet_xenstore::XenbusState;
use xennet_xenstore::{NodeError, XsClient, XsError};

use crate::{Features, FrontConfig, FrontError, Netfront};

/// A netfront on the process platform.
pub type ShmFront = Netfront<Domain, EventPort>;

/// Why the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum XenbusError {
    /// A node could not be read or held something unusable.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The other end does not offer something required.
    #[error("refused: {0}")]
    Refused(String),
    /// The other end did not reach the expected state in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The backend went away.
    #[error("backend closed the device (state {0:?})")]
    BackendGone(XenbusState),
    /// The frontend could not allocate or grant.
    #[error("frontend: {0}")]
    Front(FrontError),
    /// An event-channel operation of the platform failed.
    #[error("event channel: {0}")]
    Events(String),
}

/// What the frontend asks for.
#[derive(Clone, Debug)]
pub struct FrontOptions {
    /// Device number (`vif<domid>.<devid>`).
    pub devid: u32,
    /// Queues wanted (limited by the backend's `multi-queue-max-queues`).
    pub queues: usize,
    /// Features wanted (used only if the backend offers them).
    pub features: Features,
    /// How long to wait for each backend step.
    pub timeout: Duration,
}

impl Default for FrontOptions {
    fn default() -> Self {
        FrontOptions {
            devid: 0,
            queues: 1,
            features: Features {
                sg: true,
                gso_tcpv4: true,
            },
            timeout: Duration::from_secs(10),
        }
    }
}

/// Parses `xx:xx:xx:xx:xx:xx`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl From<XsError> for XenbusError {
    fn from(e: XsError) -> Self {
        XenbusError::Node(NodeError::Xs(e))
    }
}

fn bad(path: &str, value: &str, why: &'static str) -> XenbusError {
    XenbusError::Node(NodeError::bad(path, value, why))
}

/// The connected device's XenStore side: watches the backend and performs the
/// orderly close. `E` is the platform's event channels.
pub struct FrontLink<E = Arc<EventChannels>> {
    xs: XsClient,
    /// `/local/domain/<fe>/device/vif/<n>`.
    pub path: String,
    /// The backend's directory.
    pub backend: String,
    /// The backend's domain.
    pub backend_id: DomId,
    /// Our event-channel ports, one per queue.
    pub ports: Vec<Port>,
    /// Our `event-channel-ctrl`, when a control ring was set up.
    pub ctrl_port: Option<Port>,
    events: E,
    token: String,
    timeout: Duration,
}

/// Runs the frontend handshake for device `opts.devid` of `domain`, whose
/// XenStore connection is `xs`. Returns a connected netfront.
pub fn connect(
    xs: &XsClient,
    domain: &Domain,
    events: &Arc<EventChannels>,
    opts: &FrontOptions,
) -> Result<(ShmFront, FrontLink), XenbusError> {
    connect_with(xs, domain.clone(), domain.domid(), events, opts)
}

/// A connected netfront on platform `P` with event channels `E`, and its XenStore side.
pub type Connected<P, E> = (Netfront<P, <E as EventChannelOps>::Notifier>, FrontLink<E>);

/// The frontend handshake on any platform: `platform` grants the rings and buffers
/// (its pages go to the backend named in XenStore), `me` is this domain's id and
/// `events` allocates the channels.
pub fn connect_with<P, E>(
    xs: &XsClient,
    platform: P,
    me: DomId,
    events: &E,
    opts: &FrontOptions,
) -> Result<Connected<P, E>, XenbusError>
where
    P: GrantAccess + FrameAlloc + LocalMemory,
    E: EventChannelOps + Clone,
{
    let ev_err = |e: E::Error| XenbusError::Events(e.to_string());
    let dev = format!("/local/domain/{}/device/vif/{}", me.0, opts.devid);
    let backend = xs.read_string(&format!("{dev}/backend"))?;
    if !backend.starts_with('/') || backend.contains("..") {
        return Err(bad(
            &format!("{dev}/backend"),
            &backend,
            "not an absolute path",
        ));
    }
    let backend_id = DomId(read_num(xs, &format!("{dev}/backend-id"))?);
    let mac_path = format!("{dev}/mac");
    let mac_s = xs.read_string(&mac_path)?;
    let mac = parse_mac(&mac_s).ok_or_else(|| bad(&mac_path, &mac_s, "not a MAC address"))?;

    // Watch the backend's state before reading it, so no change is missed.
    let token = format!("netfront-{}-{}", me.0, opts.devid);
    let state_path = format!("{backend}/state");
    xs.watch(&state_path, &token)?;
    let link_timeout = opts.timeout;
    let wait_for = |want: &[XenbusState]| -> Result<XenbusState, XenbusError> {
        let deadline = Instant::now() + link_timeout;
        loop {
            let s = read_state(xs, &state_path)?;
            if want.contains(&s) {
                return Ok(s);
            }
            if matches!(s, XenbusState::Closing) {
                return Err(XenbusError::BackendGone(s));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(XenbusError::Timeout(format!(
                    "{state_path} to reach {want:?} (it is {s:?})"
                )));
            }
            xs.wait_watch(left.min(Duration::from_millis(200)))?;
        }
    };
    wait_for(&[XenbusState::InitWait, XenbusState::Connected])?;

    // What the backend offers (read once each).
    if !read_flag(xs, &format!("{backend}/feature-rx-copy"))? {
        write_state(xs, &format!("{dev}/state"), XenbusState::Closed)?;
        return Err(XenbusError::Refused(
            "backend does not offer feature-rx-copy".into(),
        ));
    }
    let features = Features {
        sg: opts.features.sg && read_flag(xs, &format!("{backend}/feature-sg"))?,
        gso_tcpv4: opts.features.gso_tcpv4
            && opts.features.sg
            && read_flag(xs, &format!("{backend}/feature-gso-tcpv4"))?,
    };
    let max_queues: usize = read_opt_num(xs, &format!("{backend}/multi-queue-max-queues"))?
        .map_or(1, |n: usize| n.max(1));
    let queues = opts.queues.clamp(1, max_queues.min(16));

    let mut ports = Vec::with_capacity(queues);
    for _ in 0..queues {
        match events.alloc_unbound(backend_id) {
            Ok(p) => ports.push(p),
            Err(e) => {
                ports.iter().for_each(|p| events.close(*p));
                return Err(ev_err(e));
            }
        }
    }
    let kicks = ports
        .iter()
        .map(|p| (events.notifier(*p), events.notifier(*p)))
        .collect();
    let mut front = match Netfront::new(platform, FrontConfig::new(backend_id, mac), kicks) {
        Ok(f) => f,
        Err(e) => {
            ports.iter().for_each(|p| events.close(*p));
            return Err(XenbusError::Front(e));
        }
    };
    // The control ring (staging grants, hash settings), if the backend offers one.
    let mut ctrl = None;
    if read_flag(xs, &format!("{backend}/feature-ctrl-ring"))? {
        let set_up = events
            .alloc_unbound(backend_id)
            .map_err(ev_err)
            .and_then(|p| match front.enable_ctrl(events.notifier(p)) {
                Ok(r) => Ok((r, p)),
                Err(e) => {
                    events.close(p);
                    Err(XenbusError::Front(e))
                }
            });
        match set_up {
            Ok(c) => ctrl = Some(c),
            Err(e) => {
                front.close();
                ports.iter().for_each(|p| events.close(*p));
                return Err(e);
            }
        }
    }
    let link = FrontLink {
        xs: xs.clone(),
        path: dev.clone(),
        backend: backend.clone(),
        backend_id,
        ports: ports.clone(),
        ctrl_port: ctrl.map(|(_, p)| p),
        events: events.clone(),
        token,
        timeout: opts.timeout,
    };
    let refs = front.queue_refs();
    // Receive buffers go up before the backend connects; the frontend then says
    // Connected in the same transaction as its keys, as Linux netfront does (Linux
    // netback connects on the frontend's Connected, not on Initialised).
    front.prepare(features);
    let publish = xs.transact(|tx| {
        let put = |k: &str, v: String| tx.write(&format!("{dev}/{k}"), v);
        if queues == 1 {
            put("tx-ring-ref", refs[0].tx_ring_ref.0.to_string())?;
            put("rx-ring-ref", refs[0].rx_ring_ref.0.to_string())?;
            put("event-channel", ports[0].0.to_string())?;
        } else {
            put("multi-queue-num-queues", queues.to_string())?;
            for (i, (r, p)) in refs.iter().zip(&ports).enumerate() {
                put(
                    &format!("queue-{i}/tx-ring-ref"),
                    r.tx_ring_ref.0.to_string(),
                )?;
                put(
                    &format!("queue-{i}/rx-ring-ref"),
                    r.rx_ring_ref.0.to_string(),
                )?;
                put(&format!("queue-{i}/event-channel"), p.0.to_string())?;
            }
        }
        if let Some((r, p)) = ctrl {
            put("ctrl-ring-ref", r.0.to_string())?;
            put("event-channel-ctrl", p.0.to_string())?;
        }
        put("request-rx-copy", "1".into())?;
        put("feature-rx-notify", "1".into())?;
        put("feature-sg", u8::from(features.sg).to_string())?;
        put(
            "feature-gso-tcpv4",
            u8::from(features.gso_tcpv4).to_string(),
        )?;
        // Received frames are handed on with their checksums as they are: a backend
        // must not leave them blank (Linux netback would, for traffic from dom0's own
        // stack, and a TCP stack above us would drop every such segment).
        put("feature-no-csum-offload", "1".into())?;
        put("state", XenbusState::Connected.as_u8().to_string())
    });
    let connected = publish
        .map_err(XenbusError::from)
        .and_then(|()| wait_for(&[XenbusState::Connected]));
    if let Err(e) = connected {
        link.release(front);
        let _ = write_state(xs, &format!("{dev}/state"), XenbusState::Closed);
        return Err(e);
    }
    front.backend_connected();
    front.kick_all();
    Ok((front, link))
}

/// What [`FrontLink::check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// The backend is connected.
    Up,
    /// The backend left (state shown), or XenStore itself went away.
    Gone(String),
}

impl<E: EventChannelOps> FrontLink<E> {
    /// Looks at queued watch events (cheap when there are none) and says whether
    /// the backend is still connected.
    pub fn check(&self) -> Health {
        if self.xs.is_closed() {
            return Health::Gone("xenstore connection closed".into());
        }
        let mut changed = false;
        while self.xs.try_watch().is_some() {
            changed = true;
        }
        if !changed {
            return Health::Up;
        }
        match read_state(&self.xs, &format!("{}/state", self.backend)) {
            Ok(XenbusState::Connected) => Health::Up,
            // A backend that ends the device says why in its `error` node.
            Ok(s) => match self.xs.try_read_string(&format!("{}/error", self.backend)) {
                Ok(Some(why)) => Health::Gone(format!("backend state {s:?}: {why}")),
                _ => Health::Gone(format!("backend state {s:?}")),
            },
            Err(e) => Health::Gone(e.to_string()),
        }
    }

    /// The XenStore connection.
    pub fn xs(&self) -> &XsClient {
        &self.xs
    }

    /// Orderly close: Closing, wait for the backend to let go (Closed, or gone),
    /// end every grant, close the channels, Closed. Returns grants still held
    /// by the backend (0 when it released everything).
    pub fn close<P>(self, front: Netfront<P, E::Notifier>) -> usize
    where
        P: GrantAccess + FrameAlloc + LocalMemory,
    {
        let state = format!("{}/state", self.path);
        let be_state = format!("{}/state", self.backend);
        let _ = write_state(&self.xs, &state, XenbusState::Closing);
        let deadline = Instant::now() + self.timeout;
        loop {
            match read_state(&self.xs, &be_state) {
                Ok(XenbusState::Closed | XenbusState::Unknown | XenbusState::InitWait) | Err(_) => {
                    break
                }
                Ok(_) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("backend {} did not close in time", self.backend);
                break;
            }
            if self
                .xs
                .wait_watch(left.min(Duration::from_millis(200)))
                .is_err()
            {
                break;
            }
        }
        let xs = self.xs.clone();
        let leaked = self.release(front);
        let _ = write_state(&xs, &state, XenbusState::Closed);
        leaked
    }

    /// Ends every grant, closes the channels and the watch. Returns grants the
    /// backend still held.
    fn release<P>(self, front: Netfront<P, E::Notifier>) -> usize
    where
        P: GrantAccess + FrameAlloc + LocalMemory,
    {
        let (_, leaked) = front.close();
        for p in self.ports.iter().chain(&self.ctrl_port) {
            self.events.close(*p);
        }
        let _ = self
            .xs
            .unwatch(&format!("{}/state", self.backend), &self.token);
        leaked
    }
}

impl FrontLink {
    /// The backend is dead (its process exited): reclaim what it held, as the
    /// hypervisor does on domain death, and free everything. Returns grants that
    /// could still not be ended (0 expected).
    pub fn abandon(self, front: ShmFront) -> usize {
        front.platform().reclaim_from_dead_peer(self.backend_id);
        self.release(front)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_macs_parse() {
        assert_eq!(XenbusState::parse(b"4"), Some(XenbusState::Connected));
        assert_eq!(XenbusState::parse(b"9"), None);
        assert_eq!(XenbusState::InitWait.as_u8().to_string(), "2");
        assert_eq!(
            parse_mac("00:16:3e:0a:0b:0c"),
            Some([0, 0x16, 0x3e, 10, 11, 12])
        );
        assert_eq!(parse_mac("00:16:3e:0a:0b"), None);
        assert_eq!(parse_mac("00:16:3e:0a:0b:0c:0d"), None);
        assert_eq!(parse_mac("00:16:3e:0a:0b:zz"), None);
    }
}
