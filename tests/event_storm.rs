//! XSA-332 class: a guest that kicks its event channel without giving the driver
//! domain any work. The data plane counts each such kick as spurious; after
//! `SPURIOUS_LIMIT` in a row it masks that guest's channel for `THROTTLE` (counted),
//! so the storm cannot keep the driver domain spinning; the guest's real frames still
//! get through, and a guest with real traffic is never throttled.

use std::time::{Duration, Instant};

use xennet::dataplane::{Dataplane, SPURIOUS_LIMIT};
use xennet::harness::{connect_pair, Side};
use xennet::netback::config::UplinkSpec;
use xennet::netback::switch::{Mode, PortConfig, PortKind};
use xennet::netback::wire::MacAddr;
use xennet::netfront::Features;
use xennet::ring::DomId;
use xennet::toolstack::up::driver_domain;

const MAC_A: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01];
const MAC_B: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x02];

fn frame(len: usize, dst: [u8; 6], src: [u8; 6], seq: u8) -> Vec<u8> {
    let mut f = vec![seq; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

#[test]
fn an_event_storm_is_counted_and_throttled_and_real_frames_still_pass() {
    let dom0 = Side::anonymous(DomId(0), 8192).unwrap();
    let a = Side::anonymous(DomId(1), 4096).unwrap();
    let b = Side::anonymous(DomId(2), 4096).unwrap();
    for s in [&a, &b] {
        dom0.know(s);
        s.know(&dom0);
    }
    let sg = Features {
        sg: true,
        gso_tcpv4: false,
    };
    let (mut fa, va, pa) = connect_pair(&dom0, &a, 0, MAC_A, 1, sg, None).unwrap();
    let (mut fb, vb, pb) = connect_pair(&dom0, &b, 0, MAC_B, 1, sg, None).unwrap();
    let storm_port = pa[0].0;
    let dd = driver_domain(Mode::Bridge, true, &UplinkSpec::Sim).unwrap();
    let mut plane = Dataplane::new(dom0.clone(), dd);
    for (domid, mac, vif, ports) in [(1u16, MAC_A, va, pa), (2, MAC_B, vb, pb)] {
        let cfg = PortConfig {
            peer_mac: Some(MacAddr(mac)),
            ..PortConfig::default()
        };
        let port = plane
            .dd
            .fabric_mut()
            .add_port(
                format!("vif{domid}.0"),
                PortKind::Vif { domid, devid: 0 },
                cfg,
            )
            .unwrap();
        plane.add_vif(port, vif, ports.iter().map(|p| p.1).collect());
    }
    let counters = |plane: &Dataplane, domid: u16| {
        plane
            .vifs
            .iter()
            .find(|v| v.vif.domid.0 == domid)
            .unwrap()
            .vif
            .counters()
    };
    // Drive the loop as `xennet up` does, with the guests polled in between, until
    // guest 2 holds `want` frames (bounded).
    let run_until = |plane: &mut Dataplane,
                     fa: &mut xennet::harness::Front,
                     fb: &mut xennet::harness::Front,
                     got: &mut Vec<Vec<u8>>,
                     want: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < want && Instant::now() < deadline {
            if !plane.run_once() {
                plane.wait(Duration::from_millis(1));
            }
            fa.poll_tx().unwrap();
            fb.receive(256, |f, _| got.push(f.to_vec())).unwrap();
            fa.receive(256, |_, _| {}).unwrap();
            fa.final_check().unwrap();
            fb.final_check().unwrap();
        }
    };
    // Guest 2 speaks first so the bridge learns it; then real traffic, frame by
    // frame with the loop sleeping in between: every kick finds work.
    fb.send(&frame(60, MAC_A, MAC_B, 0)).unwrap();
    let mut got = Vec::new();
    run_until(&mut plane, &mut fa, &mut fb, &mut got, 0);
    for i in 0..100u8 {
        fa.send(&frame(60, MAC_B, MAC_A, i)).unwrap();
        run_until(&mut plane, &mut fa, &mut fb, &mut got, usize::from(i) + 1);
    }
    assert_eq!(got.len(), 100);
    let c = counters(&plane, 1);
    assert_eq!((c.spurious_events, c.throttled), (0, 0), "{c:?}");

    // The storm: kicks with nothing behind them.
    let kick = a.events.port(storm_port);
    use xennet::ring::Notify;
    for _ in 0..(3 * SPURIOUS_LIMIT) {
        kick.notify();
        plane.wait(Duration::from_millis(1));
        plane.run_once();
    }
    let c = counters(&plane, 1);
    assert!(c.spurious_events >= u64::from(SPURIOUS_LIMIT), "{c:?}");
    assert!(c.throttled >= 1, "{c:?}");
    // Guest 2 was never throttled.
    let c2 = counters(&plane, 2);
    assert_eq!(c2.throttled, 0, "{c2:?}");

    // A real frame from the throttled guest still arrives (once its mask lifts, or
    // on any pass the loop makes), and nothing was lost: frames sent = delivered.
    fa.send(&frame(60, MAC_B, MAC_A, 200)).unwrap();
    run_until(&mut plane, &mut fa, &mut fb, &mut got, 101);
    assert_eq!(got.len(), 101);
    assert_eq!(got[100], frame(60, MAC_B, MAC_A, 200));
    let c = counters(&plane, 1);
    assert_eq!(c.tx_packets, 101);
    assert_eq!(counters(&plane, 2).rx_packets, 101);
}
