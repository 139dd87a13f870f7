//! The TAP uplink with the Linux kernel as the remote host: a guest and the driver
//! domain's own stack ping the kernel through the bridge. Needs root and
//! /dev/net/tun; runs in a network namespace of its own, removed afterwards.

mod common;

use std::os::unix::io::AsRawFd;
use std::process::Command;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use common::*;
use xennet_ring::time::Instant;
use xennet_switch::domain::DriverDomain;
use xennet_switch::uplink::host::{Host, HostConfig};
use xennet_switch::uplink::tap::TapDevice;
use xennet_switch::{Collect, Fabric, FabricConfig, PortConfig, PortKind};

const TAP: &str = "xtap0";

/// A network namespace deleted on drop.
struct NetNs(String);

impl NetNs {
    fn create() -> Result<NetNs, String> {
        let name = format!("xennet-test-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip netns add: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(NetNs(name))
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Opens the TAP inside the namespace (setns on a scratch thread, so the test
    /// thread's namespace is untouched; the descriptor stays bound to the device).
    fn open_tap(&self) -> Result<TapDevice, String> {
        let path = format!("/var/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            // SAFETY: `ns` is an open namespace file; setns only changes this scratch
            // thread's network namespace, which ends with the thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(format!("setns: {}", std::io::Error::last_os_error()));
            }
            TapDevice::open(TAP).map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "tap thread panicked".to_string())?
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("no ip(8)".into());
    }
    None
}

#[test]
fn kernel_behind_a_tap_answers_pings_through_the_bridge() {
    if let Some(why) = skip_reason() {
        println!("SKIP: tap uplink test: {why}");
        return;
    }
    let ns = match NetNs::create() {
        Ok(ns) => ns,
        Err(e) => {
            println!("SKIP: tap uplink test: {e}");
            return;
        }
    };
    let tap = match ns.open_tap() {
        Ok(t) => t,
        Err(e) => {
            println!("SKIP: tap uplink test: {e}");
            return;
        }
    };
    ns.ip(&["addr", "add", "128.153.144.148/24", "dev", TAP]);
    ns.ip(&["link", "set", TAP, "up"]);

    let mut dd = DriverDomain::new(Fabric::new(FabricConfig::default()).unwrap());
    let up = dd
        .fabric_mut()
        .add_port("peth0", PortKind::Uplink, PortConfig::default())
        .unwrap();
    let local = dd
        .fabric_mut()
        .add_port("vif0.0", PortKind::Local, PortConfig::default())
        .unwrap();
    let vif = dd
        .fabric_mut()
        .add_port(
            "vif1.0",
            PortKind::Vif { domid: 1, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    dd.attach(up, Box::new(tap));
    dd.attach(
        local,
        Box::new(Host::new(HostConfig::driver_domain(DD_MAC), Instant::ZERO).unwrap()),
    );
    dd.attach(vif, Box::new(guest_host(GUEST_IP, mac(1), DD_IP, 24)));

    let start = StdInstant::now();
    let now = || Instant::from_micros(start.elapsed().as_micros() as u64);
    let mut out = Collect::default();
    let mut seq = 0;
    let mut next_ping = StdInstant::now();
    let deadline = start + StdDuration::from_secs(15);
    loop {
        let done = |dd: &mut DriverDomain| {
            !dd.endpoint_mut::<Host>(vif)
                .unwrap()
                .echo_replies()
                .is_empty()
                && !dd
                    .endpoint_mut::<Host>(local)
                    .unwrap()
                    .echo_replies()
                    .is_empty()
        };
        if done(&mut dd) || StdInstant::now() > deadline {
            break;
        }
        if StdInstant::now() >= next_ping {
            dd.endpoint_mut::<Host>(vif)
                .unwrap()
                .ping(SIM_IP, seq, 32)
                .unwrap();
            dd.endpoint_mut::<Host>(local)
                .unwrap()
                .ping(SIM_IP, seq, 32)
                .unwrap();
            seq += 1;
            next_ping += StdDuration::from_millis(500);
        }
        dd.poll(now(), &mut out);
        std::thread::sleep(StdDuration::from_millis(5));
    }
    let guest_replies = dd
        .endpoint_mut::<Host>(vif)
        .unwrap()
        .echo_replies()
        .to_vec();
    let local_replies = dd
        .endpoint_mut::<Host>(local)
        .unwrap()
        .echo_replies()
        .to_vec();
    let (rx, tx, _) = dd.endpoint_mut::<TapDevice>(up).unwrap().stats();
    drop(dd);
    assert!(
        !guest_replies.is_empty(),
        "guest got no reply from the kernel (tap rx {rx}, tx {tx})"
    );
    assert!(guest_replies.iter().all(|r| r.from == SIM_IP));
    assert!(
        !local_replies.is_empty(),
        "driver domain stack got no reply from the kernel"
    );
}
