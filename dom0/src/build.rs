//! Building a driver domain: the switch a topology describes, with its uplink and
//! (in bridge mode) the driver domain's own stack on `vif0.0`, and the toolstack's
//! defaults for guests (MACs, addresses per mode).

use smoltcp::time::Instant;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};
use xennet_switch::bridge::BridgeConfig;
use xennet_switch::config::{Topology, TopologyError, UplinkSpec};
use xennet_switch::domain::DriverDomain;
use xennet_switch::route::RouterConfig;
use xennet_switch::uplink::host::{Host, HostConfig, HostError};
use xennet_switch::uplink::pcap::{PcapReplay, ReplayError};
use xennet_switch::uplink::tap::{TapDevice, TapError};
use xennet_switch::wire::MacAddr;
use xennet_switch::{Fabric, FabricConfig, FabricError, Mode, PortConfig, PortKind};

/// Why a driver domain could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The topology was refused.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The switch refused its configuration or a port.
    #[error(transparent)]
    Fabric(#[from] FabricError),
    /// A smoltcp host (the simulated uplink host, or vif0.0's) could not start.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The TAP uplink could not be opened.
    #[error("uplink tap:{name}: {source}")]
    Tap {
        /// The device name.
        name: String,
        /// Why.
        #[source]
        source: TapError,
    },
    /// The pcap uplink could not be loaded.
    #[error(transparent)]
    Pcap(#[from] ReplayError),
}

/// The simulated remote host on the uplink.
pub const SIM_IP: Ipv4Address = Ipv4Address::new(128, 153, 144, 148);
/// The driver domain's own address (bridge: on vif0.0; route: the gateway).
pub const DD_IP: Ipv4Address = Ipv4Address::new(128, 153, 144, 204);
/// The driver domain's MAC.
pub const DD_MAC: MacAddr = MacAddr([0x00, 0x16, 0x3e, 0x00, 0x00, 0x01]);

/// The MAC the toolstack gives a guest's first vif when `mac=` is absent
/// (deterministic, so runs are reproducible; `00:16:3e` is Xen's OUI).
pub fn guest_mac(domid: u16) -> [u8; 6] {
    [0x00, 0x16, 0x3e, 0x5e, (domid >> 8) as u8, domid as u8]
}

/// A guest's default address and gateway in each mode (Xen's conventions: the
/// uplink's segment for bridge and route, `128.153.144.(204 + domid)`, defined for
/// domains 1..=50; `10.<domid / 256>.<domid % 256>.1` behind `.128` for NAT).
pub fn guest_addr(mode: Mode, domid: u16) -> (Ipv4Cidr, Option<Ipv4Address>) {
    match mode {
        Mode::Bridge => (
            Ipv4Cidr::new(Ipv4Address::new(128, 153, 144, 204 + domid as u8), 24),
            None,
        ),
        Mode::Route => (
            Ipv4Cidr::new(Ipv4Address::new(128, 153, 144, 204 + domid as u8), 24),
            Some(DD_IP),
        ),
        // vif-nat's scheme: 10.<domid / 256>.<domid % 256>.<devid + 1>.
        Mode::Nat => (
            Ipv4Cidr::new(Ipv4Address::new(10, (domid >> 8) as u8, domid as u8, 1), 24),
            Some(Ipv4Address::new(10, (domid >> 8) as u8, domid as u8, 128)),
        ),
    }
}

/// The mode's name as on the command line.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Bridge => "bridge",
        Mode::Route => "route",
        Mode::Nat => "nat",
    }
}

/// Builds the switch with its uplink endpoint and, in bridge mode, the driver
/// domain's own stack on `vif0.0`, with the default addresses.
pub fn driver_domain(
    mode: Mode,
    proxy_arp: bool,
    uplink: &UplinkSpec,
) -> Result<DriverDomain, BuildError> {
    let mut t = Topology::from_toml_str("")?;
    t.driver_domain.mode = mode;
    t.driver_domain.proxy_arp = proxy_arp;
    t.driver_domain.uplink = uplink.clone();
    driver_domain_for(&t)
}

/// Builds the switch a topology describes: mode, bridge name and ageing, the driver
/// domain's address, gateway, MAC, forwarding and proxy ARP, the uplink and (for
/// `sim`) the simulated host's address, MAC and echo port.
pub fn driver_domain_for(t: &Topology) -> Result<DriverDomain, BuildError> {
    let d = &t.driver_domain;
    let cfg = FabricConfig {
        mode: d.mode,
        bridge: BridgeConfig {
            name: d.bridge.clone(),
            ageing: smoltcp::time::Duration::from_secs(d.ageing_secs),
            ..BridgeConfig::default()
        },
        router: RouterConfig {
            uplink_addr: d.addr,
            gateway: d.gateway,
            ip_forward: d.ip_forward,
            proxy_arp_uplink: d.proxy_arp,
            ..RouterConfig::default()
        },
    };
    let mut dd = DriverDomain::new(Fabric::new(cfg)?);
    let up_cfg = PortConfig {
        port_mac: d.mac,
        ..PortConfig::default()
    };
    let up = dd
        .fabric_mut()
        .add_port("peth0", PortKind::Uplink, up_cfg)?;
    match &d.uplink {
        UplinkSpec::Sim => {
            let h = &t.uplink_host;
            let cfg = HostConfig {
                mac: h.mac,
                addr: h.addr,
                gateway: h.gateway,
                tcp_echo_port: Some(h.tcp_echo_port),
                ..HostConfig::sim_uplink()
            };
            let host = Host::new(cfg, Instant::ZERO)?;
            dd.attach(up, Box::new(host));
        }
        UplinkSpec::Tap(name) => {
            let tap = TapDevice::open(name).map_err(|source| BuildError::Tap {
                name: name.clone(),
                source,
            })?;
            dd.attach(up, Box::new(tap));
        }
        UplinkSpec::Pcap(path) => {
            let replay = PcapReplay::load(path)?;
            dd.attach(up, Box::new(replay));
        }
    }
    if d.mode == Mode::Bridge {
        let local = dd
            .fabric_mut()
            .add_port("vif0.0", PortKind::Local, PortConfig::default())?;
        let cfg = HostConfig {
            addr: d.addr,
            gateway: d.gateway,
            ..HostConfig::driver_domain(d.mac)
        };
        let host = Host::new(cfg, Instant::ZERO)?;
        dd.attach(local, Box::new(host));
    }
    Ok(dd)
}
