//! The frontend half of the XenStore handshake, as Linux netfront does it
//! (`xen/io/netif.h`, `xen/io/xenbus.h`), over any [`XenStore`] and platform.
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
//! The handshake is written once over the platform and the store: [`connect_with`]
//! takes any [`XenStore`] (the socket client, or a unikernel's ring client), any
//! granting platform and any [`EventChannelOps`], so the same code runs on the
//! process platform ([`connect`]) and in Linux user space under real Xen
//! (`xennet_platform::xenlinux`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use xennet_platform::shm::{Domain, EventChannels, EventPort};
use xennet_platform::EventChannelOps;
use xennet_ring::xenstore::nodes::{
    self, read_flag, read_num, read_opt_num, read_state, NodeError,
};
use xennet_ring::xenstore::wire::{Errno, PAYLOAD_MAX};
use xennet_ring::xenstore::{StoreError, TxId, XenStore};
use xennet_ring::{DomId, Port};
use xennet_ring::{FrameAlloc, GrantAccess, LocalMemory};
pub use xennet_xenstore::XenbusState;
use xennet_xenstore::XsClient;

use crate::{Features, FrontConfig, FrontError, Netfront};

/// A netfront on the process platform.
pub type ShmFront = Netfront<Domain, EventPort>;

/// Why the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum XenbusError {
    /// XenStore failed a request on a node (or refused it: `errno`).
    #[error("{path}: {error}")]
    Store {
        /// The node.
        path: String,
        /// The store's error, as text (the handshake runs over any [`XenStore`]).
        error: String,
        /// xenstored's errno, if it refused the request.
        errno: Option<Errno>,
    },
    /// A node held something unusable.
    #[error("{path}: {why}")]
    Bad {
        /// The node.
        path: String,
        /// What is wrong.
        why: &'static str,
    },
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

impl XenbusError {
    /// A store error on `path`.
    fn store<E: StoreError>(path: &str, e: E) -> Self {
        XenbusError::Store {
            path: path.to_owned(),
            error: e.to_string(),
            errno: e.errno(),
        }
    }

    /// A failed typed read of `path`.
    fn node<E: StoreError>(path: &str, e: NodeError<E>) -> Self {
        match e {
            NodeError::Store(e) => XenbusError::store(path, e),
            NodeError::Bad { why } => bad(path, why),
        }
    }
}

fn bad(path: &str, why: &'static str) -> XenbusError {
    XenbusError::Bad {
        path: path.to_owned(),
        why,
    }
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

/// The longest text value the handshake reads (the backend's path, a MAC).
const TEXT_MAX: usize = 256;

/// Reads a required text node once, into a bounded buffer.
fn read_text<X: XenStore>(xs: &mut X, path: &str) -> Result<String, XenbusError> {
    let mut buf = [0u8; TEXT_MAX];
    let n = xs
        .read(TxId::NONE, path, &mut buf)
        .map_err(|e| XenbusError::store(path, e))?;
    let v = buf.get(..n).ok_or_else(|| bad(path, "too long"))?;
    let v = v.strip_suffix(b"\0").unwrap_or(v);
    let v = core::str::from_utf8(v).map_err(|_| bad(path, "not UTF-8"))?;
    Ok(v.to_owned())
}

/// Writes a `state` node.
fn write_state<X: XenStore>(xs: &mut X, path: &str, s: XenbusState) -> Result<(), XenbusError> {
    nodes::write_state(xs, TxId::NONE, path, s).map_err(|e| XenbusError::store(path, e))
}

/// Waits until the `state` node at `path` holds one of `want`, using the watch
/// registered on it; a backend that is Closing has gone.
fn wait_for<X: XenStore>(
    xs: &mut X,
    path: &str,
    want: &[XenbusState],
    timeout: Duration,
) -> Result<XenbusState, XenbusError> {
    let deadline = Instant::now() + timeout;
    let mut event = [0u8; PAYLOAD_MAX];
    loop {
        let s = read_state(xs, TxId::NONE, path).map_err(|e| XenbusError::node(path, e))?;
        if want.contains(&s) {
            return Ok(s);
        }
        if matches!(s, XenbusState::Closing) {
            return Err(XenbusError::BackendGone(s));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(XenbusError::Timeout(format!(
                "{path} to reach {want:?} (it is {s:?})"
            )));
        }
        // Only the wake-up matters: the state is read again either way.
        xs.wait_watch_event(left.min(Duration::from_millis(200)), &mut event)
            .map_err(|e| XenbusError::store(path, e))?;
    }
}

/// The connected device's XenStore side: watches the backend and performs the
/// orderly close. `E` is the platform's event channels, `X` the XenStore client
/// (the socket client by default; any [`XenStore`], such as a unikernel's ring
/// client).
pub struct FrontLink<E = Arc<EventChannels>, X = XsClient> {
    xs: X,
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
    connect_with(xs.clone(), domain.clone(), domain.domid(), events, opts)
}

/// A connected netfront on platform `P` with event channels `E` and XenStore
/// client `X`, and its XenStore side.
pub type Connected<P, E, X = XsClient> = (
    Netfront<P, <E as EventChannelOps>::Notifier>,
    FrontLink<E, X>,
);

/// The frontend handshake over any XenStore and any platform: `xs` is this
/// domain's XenStore client (kept by the returned [`FrontLink`]), `platform`
/// grants the rings and buffers (its pages go to the backend named in XenStore),
/// `me` is this domain's id and `events` allocates the channels.
///
/// A process passes an `XsClient` ([`connect`] does); a unikernel passes its
/// ring client on `start_info.store_mfn`, with its grant table and event channels:
///
/// ```ignore
/// // SAFETY: store_mfn's page is mapped for the kernel's life and used only here.
/// let xs = unsafe { XsRingClient::new(store_page, StoreEvent::new(store_evtchn), [0u8; 4096]) }?;
/// let (mut front, mut link) = connect_with(xs, grants, my_domid, &evtchn, &FrontOptions::default())?;
/// while link.check() == Health::Up { /* front.poll(), send, receive */ }
/// link.close(front);
/// ```
pub fn connect_with<X, P, E>(
    mut store: X,
    platform: P,
    me: DomId,
    events: &E,
    opts: &FrontOptions,
) -> Result<Connected<P, E, X>, XenbusError>
where
    X: XenStore,
    P: GrantAccess + FrameAlloc + LocalMemory,
    E: EventChannelOps + Clone,
{
    let xs = &mut store;
    let ev_err = |e: E::Error| XenbusError::Events(e.to_string());
    let dev = format!("/local/domain/{}/device/vif/{}", me.0, opts.devid);
    let backend_path = format!("{dev}/backend");
    let backend = read_text(xs, &backend_path)?;
    if !backend.starts_with('/') || backend.contains("..") {
        return Err(bad(&backend_path, "not an absolute path"));
    }
    let id_path = format!("{dev}/backend-id");
    let backend_id =
        DomId(read_num(xs, TxId::NONE, &id_path).map_err(|e| XenbusError::node(&id_path, e))?);
    let mac_path = format!("{dev}/mac");
    let mac =
        parse_mac(&read_text(xs, &mac_path)?).ok_or_else(|| bad(&mac_path, "not a MAC address"))?;
    let flag = |xs: &mut X, key: &str| {
        let path = format!("{backend}/{key}");
        read_flag(xs, TxId::NONE, &path).map_err(|e| XenbusError::node(&path, e))
    };

    // Watch the backend's state before reading it, so no change is missed.
    let token = format!("netfront-{}-{}", me.0, opts.devid);
    let state_path = format!("{backend}/state");
    xs.watch(&state_path, &token)
        .map_err(|e| XenbusError::store(&state_path, e))?;
    let timeout = opts.timeout;
    wait_for(
        xs,
        &state_path,
        &[XenbusState::InitWait, XenbusState::Connected],
        timeout,
    )?;

    // What the backend offers (read once each).
    if !flag(xs, "feature-rx-copy")? {
        write_state(xs, &format!("{dev}/state"), XenbusState::Closed)?;
        return Err(XenbusError::Refused(
            "backend does not offer feature-rx-copy".into(),
        ));
    }
    let features = Features {
        sg: opts.features.sg && flag(xs, "feature-sg")?,
        gso_tcpv4: opts.features.gso_tcpv4 && opts.features.sg && flag(xs, "feature-gso-tcpv4")?,
    };
    let mq_path = format!("{backend}/multi-queue-max-queues");
    let max_queues: usize = read_opt_num(xs, TxId::NONE, &mq_path)
        .map_err(|e| XenbusError::node(&mq_path, e))?
        .map_or(1, |n: usize| n.max(1));
    let queues = opts.queues.clamp(1, max_queues.min(16));
    let ctrl_offered = flag(xs, "feature-ctrl-ring")?;

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
    if ctrl_offered {
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
    let refs = front.queue_refs();
    // Receive buffers go up before the backend connects; the frontend then says
    // Connected in the same transaction as its keys, as Linux netfront does (Linux
    // netback connects on the frontend's Connected, not on Initialised).
    front.prepare(features);
    let publish = xs.transact(|xs, tx| {
        let mut put = |k: &str, v: &str| xs.write(tx, &format!("{dev}/{k}"), v.as_bytes());
        if queues == 1 {
            put("tx-ring-ref", &refs[0].tx_ring_ref.0.to_string())?;
            put("rx-ring-ref", &refs[0].rx_ring_ref.0.to_string())?;
            put("event-channel", &ports[0].0.to_string())?;
        } else {
            put("multi-queue-num-queues", &queues.to_string())?;
            for (i, (r, p)) in refs.iter().zip(&ports).enumerate() {
                put(
                    &format!("queue-{i}/tx-ring-ref"),
                    &r.tx_ring_ref.0.to_string(),
                )?;
                put(
                    &format!("queue-{i}/rx-ring-ref"),
                    &r.rx_ring_ref.0.to_string(),
                )?;
                put(&format!("queue-{i}/event-channel"), &p.0.to_string())?;
            }
        }
        if let Some((r, p)) = ctrl {
            put("ctrl-ring-ref", &r.0.to_string())?;
            put("event-channel-ctrl", &p.0.to_string())?;
        }
        put("request-rx-copy", "1")?;
        put("feature-rx-notify", "1")?;
        put("feature-sg", if features.sg { "1" } else { "0" })?;
        put(
            "feature-gso-tcpv4",
            if features.gso_tcpv4 { "1" } else { "0" },
        )?;
        // Received frames are handed on with their checksums as they are: a backend
        // must not leave them blank (Linux netback would, for traffic from dom0's own
        // stack, and a TCP stack above us would drop every such segment).
        put("feature-no-csum-offload", "1")?;
        put("state", &XenbusState::Connected.as_u8().to_string())
    });
    let connected = publish
        .map_err(|e| XenbusError::store(&dev, e))
        .and_then(|()| wait_for(xs, &state_path, &[XenbusState::Connected], timeout));
    let mut link = FrontLink {
        xs: store,
        path: dev,
        backend,
        backend_id,
        ports,
        ctrl_port: ctrl.map(|(_, p)| p),
        events: events.clone(),
        token,
        timeout,
    };
    if let Err(e) = connected {
        link.release(front);
        let _ = write_state(
            &mut link.xs,
            &format!("{}/state", link.path),
            XenbusState::Closed,
        );
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

impl<E: EventChannelOps, X: XenStore> FrontLink<E, X> {
    /// Looks at queued watch events (cheap when there are none) and says whether
    /// the backend is still connected. A XenStore connection that ended (the
    /// socket client gave up reconnecting, or the ring client saw a broken ring)
    /// is [`Health::Gone`].
    pub fn check(&mut self) -> Health {
        // A watch event is at most one payload: every one fits.
        let mut event = [0u8; PAYLOAD_MAX];
        let mut changed = false;
        loop {
            match self.xs.next_watch_event(&mut event) {
                Ok(Some(_)) => changed = true,
                Ok(None) => break,
                Err(e) => return Health::Gone(format!("xenstore: {e}")),
            }
        }
        if !changed {
            return Health::Up;
        }
        match read_state(&mut self.xs, TxId::NONE, &format!("{}/state", self.backend)) {
            Ok(XenbusState::Connected) => Health::Up,
            // A backend that ends the device says why in its `error` node.
            Ok(s) => match read_text(&mut self.xs, &format!("{}/error", self.backend)) {
                Ok(why) => Health::Gone(format!("backend state {s:?}: {why}")),
                Err(_) => Health::Gone(format!("backend state {s:?}")),
            },
            Err(e) => Health::Gone(e.to_string()),
        }
    }

    /// The XenStore connection.
    pub fn xs(&self) -> &X {
        &self.xs
    }

    /// Orderly close: Closing, wait for the backend to let go (Closed, or gone),
    /// end every grant, close the channels, Closed. Returns grants still held
    /// by the backend (0 when it released everything).
    pub fn close<P>(mut self, front: Netfront<P, E::Notifier>) -> usize
    where
        P: GrantAccess + FrameAlloc + LocalMemory,
    {
        let state = format!("{}/state", self.path);
        let be_state = format!("{}/state", self.backend);
        let _ = write_state(&mut self.xs, &state, XenbusState::Closing);
        let deadline = Instant::now() + self.timeout;
        let mut event = [0u8; PAYLOAD_MAX];
        loop {
            match read_state(&mut self.xs, TxId::NONE, &be_state) {
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
            let waited = self
                .xs
                .wait_watch_event(left.min(Duration::from_millis(200)), &mut event);
            if waited.is_err() {
                break;
            }
        }
        let leaked = self.release(front);
        let _ = write_state(&mut self.xs, &state, XenbusState::Closed);
        leaked
    }

    /// Ends every grant, closes the channels and the watch. Returns grants the
    /// backend still held.
    fn release<P>(&mut self, front: Netfront<P, E::Notifier>) -> usize
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

impl<X: XenStore> FrontLink<Arc<EventChannels>, X> {
    /// The backend is dead (its process exited): reclaim what it held, as the
    /// hypervisor does on domain death, and free everything. Returns grants that
    /// could still not be ended (0 expected).
    pub fn abandon(mut self, front: ShmFront) -> usize {
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
