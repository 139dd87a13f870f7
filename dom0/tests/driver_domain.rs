//! The driver domain `xennet up` builds (`build::driver_domain`), exercised through
//! its switch with smoltcp hosts standing in for guests, on the switch's own clock:
//! who answers whom, and what its `brctl` views print.

use xennet_dom0::build::{driver_domain, DD_IP, SIM_IP};
use xennet_ring::time::{Duration, Instant};
use xennet_switch::brctl;
use xennet_switch::config::UplinkSpec;
use xennet_switch::domain::DriverDomain;
use xennet_switch::uplink::host::{Host, HostConfig};
use xennet_switch::wire::build::eth_frame;
use xennet_switch::wire::{Ipv4Cidr, MacAddr};
use xennet_switch::{Collect, Mode, PortConfig, PortId, PortKind};

const GUEST_MAC: MacAddr = MacAddr([0x00, 0x16, 0x3e, 0x00, 0x01, 0x01]);
const GUEST_IP: smoltcp::wire::Ipv4Address = smoltcp::wire::Ipv4Address::new(128, 153, 144, 205);

/// Adds guest 1's vif (`vif1.0`, MAC 00:16:3e:00:01:01) as `xennet up` does.
fn add_guest(dd: &mut DriverDomain) -> PortId {
    let cfg = PortConfig {
        peer_mac: Some(GUEST_MAC),
        ..PortConfig::default()
    };
    dd.fabric_mut()
        .add_port("vif1.0", PortKind::Vif { domid: 1, devid: 0 }, cfg)
        .expect("vif1.0")
}

fn guest_host() -> Host {
    let cfg = HostConfig {
        mac: GUEST_MAC,
        addr: Ipv4Cidr::new(GUEST_IP, 24),
        gateway: None,
        tcp_echo_port: None,
        udp_echo_port: None,
        seed: 0x6e57,
    };
    Host::new(cfg, Instant::ZERO).expect("guest host")
}

/// Polls the driver domain every 100 ms for `secs` seconds from `t`.
fn run(dd: &mut DriverDomain, mut t: Instant, secs: u64) -> Instant {
    let end = t + Duration::from_secs(secs);
    let mut out = Collect::default();
    while t < end {
        dd.poll(t, &mut out);
        t += Duration::from_millis(100);
    }
    t
}

#[test]
fn bridge_mode_driver_domain_answers_ping_from_a_guest_and_from_the_uplink() {
    let mut dd = driver_domain(Mode::Bridge, false, &UplinkSpec::Sim).expect("driver domain");
    let vif = add_guest(&mut dd);
    dd.attach(vif, Box::new(guest_host()));
    let up = dd.fabric().port_id("peth0").expect("peth0");
    let mut t = Instant::ZERO;
    for seq in 0..3 {
        let g = dd.endpoint_mut::<Host>(vif).expect("guest");
        g.ping(DD_IP, seq, 8).expect("guest ping");
        let sim = dd.endpoint_mut::<Host>(up).expect("sim host");
        sim.ping(DD_IP, 100 + seq, 8).expect("sim ping");
        t = run(&mut dd, t, 1);
    }
    let from_guest = dd
        .endpoint_mut::<Host>(vif)
        .unwrap()
        .echo_replies()
        .to_vec();
    let from_sim = dd.endpoint_mut::<Host>(up).unwrap().echo_replies().to_vec();
    assert_eq!(
        from_guest.iter().filter(|r| r.from == DD_IP).count(),
        3,
        "guest's pings of vif0.0: {from_guest:?}"
    );
    assert_eq!(
        from_sim.iter().filter(|r| r.from == DD_IP).count(),
        3,
        "the remote host's pings of vif0.0: {from_sim:?}"
    );
    // The sim host is reachable from the guest too (nothing else broke).
    dd.endpoint_mut::<Host>(vif)
        .unwrap()
        .ping(SIM_IP, 7, 8)
        .unwrap();
    run(&mut dd, t, 1);
    let replies = dd
        .endpoint_mut::<Host>(vif)
        .unwrap()
        .echo_replies()
        .to_vec();
    assert!(replies.iter().any(|r| r.from == SIM_IP), "{replies:?}");
}

/// A fenced block of `docs/driver-domain.md`: the `n`th one after the line holding
/// `marker`.
fn doc_block(marker: &str, n: usize) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/driver-domain.md");
    let text = std::fs::read_to_string(path).expect("docs/driver-domain.md");
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} in the docs"));
    let mut blocks = text[start..].split("```").skip(1).step_by(2);
    let block = blocks.nth(n).expect("fenced block");
    // Drop the info string line (```text) and keep the lines as printed.
    let body = block.split_once('\n').map_or("", |(_, b)| b);
    body.to_string()
}

/// An Ethernet broadcast no host answers (a local experimental ethertype).
fn hello(src: MacAddr) -> Vec<u8> {
    let mut f = Vec::new();
    eth_frame(
        &mut f,
        MacAddr::BROADCAST,
        src,
        smoltcp::wire::EthernetProtocol::Unknown(0x88b5),
        &[0; 46],
    );
    f
}

#[test]
fn the_docs_brctl_examples_are_what_the_bridge_mode_driver_domain_prints() {
    let mut dd = driver_domain(Mode::Bridge, false, &UplinkSpec::Sim).expect("driver domain");
    let vif = add_guest(&mut dd);
    let up = dd.fabric().port_id("peth0").expect("peth0");
    let mut out = Collect::default();
    let sim_mac = MacAddr([0x00, 0x04, 0x76, 0x35, 0x0a, 0x72]);
    dd.input(Instant::from_secs(10), up, &hello(sim_mac), &mut out);
    dd.input(
        Instant::from_millis(12_500),
        vif,
        &hello(GUEST_MAC),
        &mut out,
    );
    let marker = "print exactly bridge-utils' text";
    assert_eq!(brctl::show(dd.fabric()), doc_block(marker, 0));
    let macs = brctl::showmacs(dd.fabric(), "xenbr0", Instant::from_millis(15_250)).unwrap();
    assert_eq!(macs, doc_block(marker, 1));
}

/// A scratch directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("xennet-dd-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The frames of a pcap file as it is on disk now (24-byte file header, then a
/// 16-byte header per record whose third word is the captured length).
fn pcap_frames(path: &std::path::Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).expect("capture file");
    assert!(
        bytes.len() >= 24,
        "no pcap header yet: {} bytes",
        bytes.len()
    );
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32::from_ne_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        frames.push(bytes[at + 16..at + 16 + len].to_vec());
        at += 16 + len;
    }
    frames
}

#[test]
fn a_capture_on_the_bridge_records_every_frame_entering_it_while_running() {
    let dir = TempDir::new("xenbr0");
    let file = dir.0.join("xenbr0.pcap");
    let mut dd = driver_domain(Mode::Bridge, false, &UplinkSpec::Sim).expect("driver domain");
    let vif = add_guest(&mut dd);
    let up = dd.fabric().port_id("peth0").expect("peth0");
    let pending =
        xennet_dom0::build::attach_captures(&mut dd, &[("xenbr0".to_string(), file.clone())])
            .expect("a capture on the bridge");
    assert!(pending.is_empty());
    let mut out = Collect::default();
    let sim_mac = MacAddr([0x00, 0x04, 0x76, 0x35, 0x0a, 0x72]);
    let t = Instant::from_secs(1);
    dd.input(t, up, &hello(sim_mac), &mut out);
    dd.input(t, vif, &hello(GUEST_MAC), &mut out);
    dd.poll(t, &mut out);
    // Read while the driver domain still runs: one data-plane pass flushed them.
    assert_eq!(pcap_frames(&file), vec![hello(sim_mac), hello(GUEST_MAC)]);
    // A name that is neither a port nor the bridge is still refused.
    let err = xennet_dom0::build::attach_captures(&mut dd, &[("xenbr9".into(), file)]).unwrap_err();
    assert_eq!(err.to_string(), "--capture xenbr9: no such port or bridge");
}
