//! Wired port pairs (`xennet up --vifs tap`): a vif joined point to point to its
//! kernel device, outside the bridge or router, in every mode.

mod common;

use common::*;
use smoltcp::wire::EthernetProtocol;
use xennet_ring::time::Instant;
use xennet_switch::wire::MacAddr;
use xennet_switch::{
    Collect, Disposition, Fabric, FabricConfig, Mode, PortConfig, PortId, PortKind,
};

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    eth(dst, src, EthernetProtocol::Ipv4, &[0x45; 46])
}

fn ports_of(out: &Collect) -> Vec<PortId> {
    out.0.iter().map(|(p, _)| *p).collect()
}

#[test]
fn a_wired_vif_reaches_only_its_kernel_device_and_back_in_every_mode() {
    for mode in [Mode::Bridge, Mode::Route, Mode::Nat] {
        let cfg = FabricConfig {
            mode,
            ..FabricConfig::default()
        };
        let mut f = Fabric::new(cfg).unwrap();
        let other = f
            .add_port(
                "vif2.0",
                PortKind::Vif { domid: 2, devid: 0 },
                PortConfig::default(),
            )
            .unwrap();
        let (vif, dev) = f
            .add_wire(
                "vif1.0",
                PortKind::Vif { domid: 1, devid: 0 },
                PortConfig::default(),
            )
            .unwrap();
        assert_eq!(f.port_id("vif1.0"), Some(vif), "the name finds the vif");
        assert_eq!((f.wired_to(vif), f.wired_to(dev)), (Some(dev), Some(vif)));
        // Even a broadcast crosses the wire only, unchanged.
        let b = frame(MacAddr::BROADCAST, mac(1));
        let mut out = Collect::default();
        assert_eq!(
            f.input(Instant::ZERO, vif, &b, &mut out),
            Disposition::Forwarded
        );
        assert_eq!(out.0, vec![(dev, b.clone())], "{mode:?}");
        let mut out = Collect::default();
        f.input(Instant::ZERO, dev, &b, &mut out);
        assert_eq!(ports_of(&out), vec![vif], "{mode:?}");
        // What other ports flood never reaches the wired pair.
        let mut out = Collect::default();
        f.input(Instant::ZERO, other, &b, &mut out);
        assert!(!ports_of(&out).iter().any(|p| *p == vif || *p == dev));
        // Counted on both ends.
        let c = &f.port(vif).unwrap().counters;
        assert_eq!((c.rx_packets, c.tx_packets), (1, 1));
        // Removing the vif takes its device too.
        f.remove_port(vif).unwrap();
        assert!(f.port(dev).is_none() && f.wired_to(dev).is_none());
    }
}

#[test]
fn a_wire_is_refused_a_name_in_use() {
    let mut f = Fabric::new(FabricConfig::default()).unwrap();
    f.add_port(
        "vif1.0",
        PortKind::Vif { domid: 1, devid: 0 },
        PortConfig::default(),
    )
    .unwrap();
    assert!(f
        .add_wire(
            "vif1.0",
            PortKind::Vif { domid: 1, devid: 0 },
            PortConfig::default()
        )
        .is_err());
}
