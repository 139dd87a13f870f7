//! Building a driver domain: the switch a topology describes, with its uplink and
//! (in bridge mode) the driver domain's own stack on `vif0.0`, and the toolstack's
//! defaults for guests (MACs, addresses per mode).

use std::path::PathBuf;

use smoltcp::wire::{Ipv4Address, Ipv4Cidr};
use xennet_ring::time::{Duration, Instant};
use xennet_switch::bridge::BridgeConfig;
use xennet_switch::capture::{CaptureError, PcapSink};
use xennet_switch::config::{Topology, TopologyError, UplinkSpec};
use xennet_switch::domain::DriverDomain;
use xennet_switch::route::{vif_nat_guest_ip, vif_nat_router_ip, RouterConfig};
use xennet_switch::uplink::host::{Host, HostConfig, HostError};
use xennet_switch::uplink::pcap::{PcapReplay, ReplayError};
use xennet_switch::uplink::tap::{TapDevice, TapError};
use xennet_switch::wire::{MacAddr, VIF_PORT_MAC};
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
    /// A capture file could not be created.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// A capture names neither a port of the driver domain nor its bridge.
    #[error("--capture {0}: no such port or bridge")]
    NoCapturePort(String),
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
    guest_vif_mac(domid, 0)
}

/// The MAC of a guest's vif `devid` when `mac=` is absent: `00:16:3e:5e:<domid>`
/// for devid 0, the fourth byte `0x5f + (devid - 1) % 33` for the others (below
/// 0x80, as libxl keeps it; devids 33 apart share one, which the toolstack refuses).
pub fn guest_vif_mac(domid: u16, devid: u16) -> [u8; 6] {
    let fourth = match devid {
        0 => 0x5e,
        n => 0x5f + ((n - 1) % 33) as u8,
    };
    [0x00, 0x16, 0x3e, fourth, (domid >> 8) as u8, domid as u8]
}

/// A guest's default address and gateway for its vif `devid`, by Xen's conventions:
/// bridge and route modes give a domain one address on the uplink's segment,
/// 128.153.144.<204 + domid> (domains 1 to [`LAST_DEFAULT_DOMID`]; in route mode
/// behind the driver domain's address), whatever the devid; NAT mode follows vif-nat,
/// 10.<domid / 256>.<domid % 256>.<devid + 1> behind that address + 127. `None` where
/// the convention has no address ([`no_default_addr`] says why): the vif needs an `ip=`.
pub fn guest_addr(mode: Mode, domid: u16, devid: u16) -> Option<(Ipv4Cidr, Option<Ipv4Address>)> {
    match mode {
        Mode::Bridge | Mode::Route => {
            let last = u8::try_from(domid).ok()?.checked_add(204)?;
            if domid == 0 || last == 255 {
                return None;
            }
            let addr = Ipv4Cidr::new(Ipv4Address::new(128, 153, 144, last), 24);
            Some((addr, (mode == Mode::Route).then_some(DD_IP)))
        }
        Mode::Nat => {
            let guest = vif_nat_guest_ip(domid, devid)?;
            let gw = vif_nat_router_ip(guest)?;
            Some((Ipv4Cidr::new(guest, 24), Some(gw)))
        }
    }
}

/// The last domain with a default address in bridge and route modes.
pub const LAST_DEFAULT_DOMID: u16 = 50;

/// Why [`guest_addr`] has no address for a vif, for an error message.
pub fn no_default_addr(mode: Mode) -> String {
    match mode {
        Mode::Bridge | Mode::Route => format!(
            "no default address in {} mode (128.153.144.<204 + domain id> ends at domain {LAST_DEFAULT_DOMID})",
            mode_name(mode)
        ),
        Mode::Nat => "no default address in nat mode (vif-nat's 10.<domid / 256>.<domid % 256>.<devid + 1> behind <devid + 128> ends at devid 125)".to_string(),
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
            ageing: Duration::from_secs(d.ageing_secs),
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
    // Bridge mode: Xen's network-bridge gives the physical NIC (peth0) the address
    // fe:ff:ff:ff:ff:ff and the driver domain's own MAC to its stack behind vif0.0;
    // were peth0 to carry that MAC too, the bridge would take frames to vif0.0 as
    // its own and never forward them. Route and NAT modes: peth0 is the driver
    // domain's NIC, the router's interface on the segment.
    let up_cfg = PortConfig {
        port_mac: match d.mode {
            Mode::Bridge => VIF_PORT_MAC,
            Mode::Route | Mode::Nat => d.mac,
        },
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
        let local_cfg = PortConfig {
            peer_mac: Some(d.mac),
            ips: vec![d.addr.address()],
            ..PortConfig::default()
        };
        let local = dd
            .fabric_mut()
            .add_port("vif0.0", PortKind::Local, local_cfg)?;
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

/// Attaches `PORT=FILE` captures to the driver domain's ports, or with the bridge's
/// name (bridge mode) to every frame entering the switch; the captures of vif ports
/// that do not exist yet are returned, to attach when the vif comes.
pub fn attach_captures(
    dd: &mut DriverDomain,
    captures: &[(String, PathBuf)],
) -> Result<Vec<(String, PathBuf)>, BuildError> {
    let mut pending = Vec::new();
    for (port, file) in captures {
        match dd.fabric().port_id(port) {
            Some(id) => {
                let sink = PcapSink::create(file)?;
                dd.captures_mut().attach_port(id, sink);
            }
            None if dd.fabric().bridge().is_some_and(|b| b.name() == port) => {
                let sink = PcapSink::create(file)?;
                dd.captures_mut().attach_all(sink);
            }
            None if port.starts_with("vif") => pending.push((port.clone(), file.clone())),
            None => return Err(BuildError::NoCapturePort(port.clone())),
        }
    }
    Ok(pending)
}
