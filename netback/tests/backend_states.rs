//! The per-device backend state machine (`xennet_netback::up::step`) against this
//! project's xenstored, with a stand-in for the driver domain's attach: the states and
//! `error` node a toolstack and a frontend see after every disconnect the backend
//! starts, as Linux netback's xenbus.c leaves them.

use std::path::PathBuf;

use xennet_netback::up::{step, Attach, Device};
use xennet_netback::xenbus::BackendDevice;
use xennet_xenstore::xenbus::read_state;
use xennet_xenstore::{XenbusState, Xenstored, XsClient};

const BE: &str = "/local/domain/0/backend/vif/3/0";
const FE: &str = "/local/domain/3/device/vif/0";

/// A driver domain whose attach refuses (`refuse`) or connects a vif that later ends
/// with `fault`.
#[derive(Default)]
struct Stand {
    refuse: Option<String>,
    fault: Option<String>,
    detached: usize,
}

impl Attach for Stand {
    type Handle = ();

    fn attach(&mut self, _: &XsClient, _: &BackendDevice) -> Result<(), String> {
        match &self.refuse {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    fn ended(&self, _: &()) -> Option<String> {
        self.fault.clone()
    }

    fn detach(&mut self, _: ()) {
        self.detached += 1;
    }
}

struct Store {
    dir: PathBuf,
    _xsd: Xenstored,
    xs: XsClient,
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A store with both directories of vif 3.0 written as a toolstack writes them.
fn store(tag: &str) -> Store {
    let dir = std::env::temp_dir().join(format!("xennet-bestates-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let xsd = Xenstored::start(dir.join("xenstore")).unwrap();
    let xs = XsClient::connect(dir.join("xenstore").join("socket")).unwrap();
    for (k, v) in [
        ("frontend", FE),
        ("frontend-id", "3"),
        ("handle", "0"),
        ("state", "1"),
    ] {
        xs.write(&format!("{BE}/{k}"), v).unwrap();
    }
    for (k, v) in [("backend", BE), ("backend-id", "0"), ("state", "1")] {
        xs.write(&format!("{FE}/{k}"), v).unwrap();
    }
    Store { dir, _xsd: xsd, xs }
}

fn be_state(xs: &XsClient) -> XenbusState {
    read_state(xs, &format!("{BE}/state")).unwrap()
}

fn set_fe(xs: &XsClient, s: XenbusState) {
    xs.write(&format!("{FE}/state"), s.as_u8().to_string())
        .unwrap();
}

/// One look, as the driver domain's reconcile makes it.
fn look(xs: &XsClient, dev: Option<Device<()>>, stand: &mut Stand) -> Option<Device<()>> {
    step(xs, BE, dev, 1, stand)
}

#[test]
fn a_refused_frontend_that_closes_leaves_the_backend_closed() {
    let s = store("refused");
    let mut stand = Stand {
        refuse: Some("refused: frontend does not set request-rx-copy".into()),
        ..Stand::default()
    };
    let dev = look(&s.xs, None, &mut stand);
    assert_eq!(be_state(&s.xs), XenbusState::InitWait);
    set_fe(&s.xs, XenbusState::Initialised);
    let dev = look(&s.xs, dev, &mut stand);
    assert_eq!(be_state(&s.xs), XenbusState::Closing);
    assert!(matches!(dev, Some(Device::Idle(_))));
    // The frontend answers the backend's Closing: Closing, then Closed.
    set_fe(&s.xs, XenbusState::Closing);
    let dev = look(&s.xs, dev, &mut stand);
    set_fe(&s.xs, XenbusState::Closed);
    let dev = look(&s.xs, dev, &mut stand);
    assert_eq!(be_state(&s.xs), XenbusState::Closed);
    // A frontend starting over is offered the device again.
    set_fe(&s.xs, XenbusState::Initialising);
    let dev = look(&s.xs, dev, &mut stand);
    assert_eq!(be_state(&s.xs), XenbusState::InitWait);
    assert!(matches!(dev, Some(Device::Probed(_))));
}

#[test]
fn a_fatal_error_is_named_in_the_error_node_and_the_backend_reaches_closed() {
    let s = store("fatal");
    let mut stand = Stand::default();
    let dev = look(&s.xs, None, &mut stand);
    set_fe(&s.xs, XenbusState::Connected);
    let dev = look(&s.xs, dev, &mut stand);
    assert_eq!(be_state(&s.xs), XenbusState::Connected);
    assert!(matches!(dev, Some(Device::Connected(..))));
    // The vif ends with a fatal protocol error.
    stand.fault = Some("frontend broke the protocol: tx chain of 20 slots or more".into());
    let dev = look(&s.xs, dev, &mut stand);
    assert_eq!(stand.detached, 1);
    assert_eq!(be_state(&s.xs), XenbusState::Closing);
    let error = s.xs.read_string(&format!("{BE}/error")).unwrap();
    assert!(error.contains("tx chain of 20 slots or more"), "{error}");
    set_fe(&s.xs, XenbusState::Closing);
    let dev = look(&s.xs, dev, &mut stand);
    set_fe(&s.xs, XenbusState::Closed);
    let dev = look(&s.xs, dev, &mut stand);
    assert_eq!(be_state(&s.xs), XenbusState::Closed);
    assert_eq!(stand.detached, 1, "detached once");
    assert!(matches!(dev, Some(Device::Idle(_))));
}
