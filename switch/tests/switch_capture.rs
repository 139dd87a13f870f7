//! Captures: a pcap written on a port is read back by tshark and by pcap-file.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use pcap_file::pcap::PcapReader;
use pcap_file::DataLink;
use xennet_ring::time::Instant;
use xennet_switch::capture::{CaptureSpec, PcapSink};
use xennet_switch::domain::DriverDomain;
use xennet_switch::uplink::host::{Host, HostConfig};
use xennet_switch::{Collect, Fabric, FabricConfig, PortConfig, PortKind};

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("xennet-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bridge mode: driver domain stack on vif0.0 pings the sim host on peth0; the
/// uplink is captured, both directions, and the bridge sees every ingress frame.
fn capture_ping(dir: &TempDir) -> (PathBuf, PathBuf) {
    let mut dd = DriverDomain::new(Fabric::new(FabricConfig::default()).unwrap());
    let up = dd
        .fabric_mut()
        .add_port("peth0", PortKind::Uplink, PortConfig::default())
        .unwrap();
    let local = dd
        .fabric_mut()
        .add_port("vif0.0", PortKind::Local, PortConfig::default())
        .unwrap();
    dd.attach(
        up,
        Box::new(Host::new(HostConfig::sim_uplink(), Instant::ZERO).unwrap()),
    );
    dd.attach(
        local,
        Box::new(Host::new(HostConfig::driver_domain(DD_MAC), Instant::ZERO).unwrap()),
    );
    let up_file = dir.0.join("peth0.pcap");
    let br_file = dir.0.join("xenbr0.pcap");
    let spec: CaptureSpec = format!("peth0={}", up_file.display()).parse().unwrap();
    assert_eq!(spec.target, "peth0");
    dd.captures_mut()
        .attach_port(up, PcapSink::create(&spec.path).unwrap());
    dd.captures_mut()
        .attach_all(PcapSink::create(&br_file).unwrap());
    let mut out = Collect::default();
    let mut t = Instant::ZERO;
    for seq in 0..2 {
        dd.endpoint_mut::<Host>(local)
            .unwrap()
            .ping(SIM_IP, seq, 16)
            .unwrap();
        t = run(&mut dd, t, 1, &mut out);
    }
    assert_eq!(
        dd.endpoint_mut::<Host>(local).unwrap().echo_replies().len(),
        2
    );
    dd.captures_mut().flush().unwrap();
    (up_file, br_file)
}

#[test]
fn capture_is_valid_ethernet_pcap_with_both_directions() {
    let dir = TempDir::new("cap-pcapfile");
    let (up_file, br_file) = capture_ping(&dir);
    let mut r = PcapReader::new(std::fs::File::open(&up_file).unwrap()).unwrap();
    assert_eq!(r.header().datalink, DataLink::ETHERNET);
    assert_eq!(r.header().snaplen, 65535);
    let mut srcs = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        assert!(
            p.timestamp.as_secs() > 1_600_000_000,
            "real-clock timestamps"
        );
        srcs.push(p.data[6..12].to_vec());
    }
    // ARP request+reply, 2 echo requests + 2 replies, both ways.
    assert!(srcs.len() >= 6, "{} frames", srcs.len());
    assert!(
        srcs.iter().any(|s| s[..] == SIM_MAC.0),
        "frames from the sim host (into the fabric)"
    );
    assert!(
        srcs.iter().any(|s| s[..] == DD_MAC.0),
        "frames to the sim host (out of the fabric)"
    );
    let mut br = PcapReader::new(std::fs::File::open(&br_file).unwrap()).unwrap();
    let mut n = 0;
    while let Some(p) = br.next_packet() {
        p.unwrap();
        n += 1;
    }
    assert_eq!(
        n,
        srcs.len(),
        "two ports only: every frame enters the bridge once"
    );
}

#[test]
fn capture_is_read_back_by_tshark() {
    if Command::new("tshark").arg("--version").output().is_err() {
        println!("SKIP: tshark is not installed");
        return;
    }
    let dir = TempDir::new("cap-tshark");
    let (up_file, _) = capture_ping(&dir);
    let out = Command::new("tshark")
        .args([
            "-r",
            up_file.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "eth.src",
            "-e",
            "ip.dst",
            "-e",
            "icmp.type",
        ])
        .env("HOME", &dir.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let requests = lines.iter().filter(|f| {
        f.len() == 3 && f[0] == "00:16:3e:00:00:01" && f[1] == "128.153.144.148" && f[2] == "8"
    });
    let replies = lines.iter().filter(|f| {
        f.len() == 3 && f[0] == "00:04:76:35:0a:72" && f[1] == "128.153.144.204" && f[2] == "0"
    });
    assert_eq!(requests.count(), 2, "{text}");
    assert_eq!(replies.count(), 2, "{text}");
}

#[test]
fn capture_spec_syntax_is_checked() {
    for bad in ["peth0", "=x.pcap", "peth0=", " = "] {
        assert!(bad.parse::<CaptureSpec>().is_err(), "{bad}");
    }
    assert!(PcapSink::create(std::path::Path::new("/nonexistent-dir/x.pcap")).is_err());
}

#[test]
fn a_running_capture_is_on_disk_after_every_pass_not_only_at_exit() {
    let dir = TempDir::new("capture-live");
    let file = dir.0.join("vif1.pcap");
    let mut dd = DriverDomain::new(Fabric::new(FabricConfig::default()).unwrap());
    let a = dd
        .fabric_mut()
        .add_port(
            "vif1.0",
            PortKind::Vif { domid: 1, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    dd.fabric_mut()
        .add_port(
            "vif2.0",
            PortKind::Vif { domid: 2, devid: 0 },
            PortConfig::default(),
        )
        .unwrap();
    dd.captures_mut()
        .attach_port(a, PcapSink::create(&file).unwrap());
    let frame = eth(
        xennet_switch::wire::MacAddr::BROADCAST,
        mac(1),
        smoltcp::wire::EthernetProtocol::Ipv4,
        &[0; 46],
    );
    let mut out = Collect::default();
    for n in 1..=3usize {
        let t = Instant::from_secs(n as u64);
        dd.input(t, a, &frame, &mut out);
        dd.poll(t, &mut out);
        // The sink is still open: what a reader (tail -f | tshark -r -) sees now.
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(bytes.len(), 24 + n * (16 + frame.len()), "after pass {n}");
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        let mut got = 0;
        while let Some(p) = r.next_packet() {
            assert_eq!(&p.unwrap().data[..], &frame[..]);
            got += 1;
        }
        assert_eq!(got, n);
    }
}
