//! XSA-332 class: a guest that kicks its event channel without giving the driver
//! domain any work. The data plane counts each such kick as spurious; after
//! `SPURIOUS_LIMIT` in a row it masks that guest's channel for `THROTTLE` (counted),
//! so the storm cannot keep the driver domain spinning; the guest's real frames still
//! get through, and a guest with real traffic is never throttled.

use std::time::{Duration, Instant};

use xennet_dom0::dataplane::{Dataplane, SPURIOUS_LIMIT};
use xennet_dom0::testing::{connect_pair, domains};
use xennet_netfront::Features;

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
    let (dom0, guests) = domains(2).unwrap();
    let (a, b) = (&guests[0], &guests[1]);
    let sg = Features {
        sg: true,
        gso_tcpv4: false,
    };
    let (mut fa, va, pa) = connect_pair(&dom0, a, 0, MAC_A, 1, sg, None).unwrap();
    let (mut fb, vb, pb) = connect_pair(&dom0, b, 0, MAC_B, 1, sg, None).unwrap();
    let storm_port = pa[0].0;
    let ports = |p: &[(xennet_ring::Port, xennet_ring::Port)]| p.iter().map(|x| x.1).collect();
    let vifs = vec![(1, MAC_A, va, ports(&pa)), (2, MAC_B, vb, ports(&pb))];
    let mut plane = Dataplane::bridged(dom0.clone(), vifs).unwrap();
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
                     fa: &mut xennet_dom0::testing::Front,
                     fb: &mut xennet_dom0::testing::Front,
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
    use xennet_ring::Notify;
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
