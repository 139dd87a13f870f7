//! The topology file (TOML): the driver domain, the simulated uplink host, the guests.
//!
//! ```toml
//! [driver_domain]
//! mode = "route"                # bridge | route | nat
//! bridge = "xenbr0"             # bridge mode
//! uplink = "sim"                # sim | tap:NAME | pcap:FILE
//! ip = "128.153.144.204/24"
//! gateway = "128.153.144.1"     # optional
//! mac = "00:16:3e:00:00:01"     # the driver domain's own NIC address
//! proxy_arp = true              # on the uplink (route mode)
//! ip_forward = true
//! ageing_secs = 300
//! captures = ["vif1.0=vif1.pcap", "peth0=uplink.pcap"]
//!
//! [uplink_host]                 # the simulated remote host (uplink = "sim")
//! ip = "128.153.144.148/24"
//! mac = "00:04:76:35:0a:72"
//! tcp_echo_port = 7
//!
//! [[guest]]
//! domid = 1
//! name = "web"
//! vifs = ["mac=00:16:3e:00:01:01,ip=128.153.144.205,script=vif-route",
//!         { mac = "00:16:3e:00:01:02", rate = "10Mb/s" }]
//! ```
//!
//! Every error names the field (`guest[0].vifs[1].mac`) and the value.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::unique::Others;
use super::vif::{apply, parse_ifname, parse_mac, parse_vif_spec, Script, VifSpec, VifSpecError};
use crate::capture::CaptureSpec;
use crate::wire::{Ipv4Address, Ipv4Cidr, MacAddr};
use crate::Mode;

/// Where the uplink port's frames go.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum UplinkSpec {
    /// The simulated remote host.
    #[default]
    Sim,
    /// A Linux TAP device of this name.
    Tap(String),
    /// Replay of a pcap file.
    Pcap(PathBuf),
}

impl std::str::FromStr for UplinkSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "sim" {
            Ok(UplinkSpec::Sim)
        } else if let Some(name) = s.strip_prefix("tap:") {
            parse_ifname(name)
                .map(UplinkSpec::Tap)
                .map_err(|e| format!("tap device name {name:?}: {e}"))
        } else if let Some(file) = s.strip_prefix("pcap:") {
            if file.is_empty() {
                Err("pcap: needs a file name".to_string())
            } else {
                Ok(UplinkSpec::Pcap(PathBuf::from(file)))
            }
        } else {
            Err(format!("{s:?} is not sim, tap:NAME or pcap:FILE"))
        }
    }
}

/// The driver domain's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverDomainConfig {
    /// Switch mode.
    pub mode: Mode,
    /// Bridge name (bridge mode).
    pub bridge: String,
    /// The uplink.
    pub uplink: UplinkSpec,
    /// The driver domain's address on the uplink segment.
    pub addr: Ipv4Cidr,
    /// Default gateway.
    pub gateway: Option<Ipv4Address>,
    /// The driver domain's NIC address.
    pub mac: MacAddr,
    /// Proxy ARP on the uplink.
    pub proxy_arp: bool,
    /// IPv4 forwarding.
    pub ip_forward: bool,
    /// Bridge MAC ageing, seconds.
    pub ageing_secs: u64,
    /// Packet captures.
    pub captures: Vec<CaptureSpec>,
}

/// The simulated remote host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostTable {
    /// Its address.
    pub addr: Ipv4Cidr,
    /// Its MAC.
    pub mac: MacAddr,
    /// Its default gateway.
    pub gateway: Option<Ipv4Address>,
    /// Its TCP echo port.
    pub tcp_echo_port: u16,
}

/// A guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestConfig {
    /// Domain id (1..=32751).
    pub domid: u16,
    /// Name (`domU-<domid>` by default).
    pub name: String,
    /// Its vifs; the index is the devid unless `devid=` says otherwise.
    pub vifs: Vec<VifSpec>,
}

/// A parsed topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The driver domain.
    pub driver_domain: DriverDomainConfig,
    /// The simulated uplink host.
    pub uplink_host: HostTable,
    /// The guests.
    pub guests: Vec<GuestConfig>,
}

/// Errors of the topology file.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// Could not read the file.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TOML syntax or shape (the message names the key and line).
    #[error("topology file: {0}")]
    Toml(String),
    /// A bad value.
    #[error("{field} = {value:?}: {reason}")]
    Field {
        /// Dotted path of the field.
        field: String,
        /// The value as given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A bad vif.
    #[error("{field}: {source}")]
    Vif {
        /// Dotted path of the vif.
        field: String,
        /// The vif error.
        source: VifSpecError,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDd {
    mode: Option<String>,
    bridge: Option<String>,
    uplink: Option<String>,
    ip: Option<String>,
    gateway: Option<String>,
    mac: Option<String>,
    proxy_arp: Option<bool>,
    ip_forward: Option<bool>,
    ageing_secs: Option<u64>,
    #[serde(default)]
    captures: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHost {
    ip: Option<String>,
    mac: Option<String>,
    gateway: Option<String>,
    tcp_echo_port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuest {
    domid: u16,
    name: Option<String>,
    #[serde(default)]
    vifs: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    driver_domain: RawDd,
    #[serde(default)]
    uplink_host: RawHost,
    #[serde(default, rename = "guest")]
    guests: Vec<RawGuest>,
}

pub(super) fn field(field: &str, value: &str, reason: impl Into<String>) -> TopologyError {
    TopologyError::Field {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn cidr(name: &str, text: &str) -> Result<Ipv4Cidr, TopologyError> {
    let (a, l) = text.split_once('/').ok_or_else(|| {
        field(
            name,
            text,
            "expected ADDRESS/PREFIX, e.g. 128.153.144.204/24",
        )
    })?;
    let addr: Ipv4Address = a
        .parse()
        .map_err(|_| field(name, text, format!("{a:?} is not an IPv4 address")))?;
    match l.parse::<u8>() {
        Ok(n) if (1..=32).contains(&n) => Ok(Ipv4Cidr::new(addr, n)),
        _ => Err(field(
            name,
            text,
            format!("prefix length {l:?} is not 1..=32"),
        )),
    }
}

fn ip(name: &str, text: &str) -> Result<Ipv4Address, TopologyError> {
    text.parse()
        .map_err(|_| field(name, text, "not an IPv4 address"))
}

fn mac(name: &str, text: &str) -> Result<MacAddr, TopologyError> {
    parse_mac(text).map_err(|r| field(name, text, r.to_string()))
}

impl Topology {
    /// Reads and parses a topology file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Parses a topology from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Topology, TopologyError> {
        let raw: RawTopology =
            toml::from_str(text).map_err(|e| TopologyError::Toml(e.to_string()))?;
        let dd = driver_domain(raw.driver_domain)?;
        let h = raw.uplink_host;
        let uplink_host = HostTable {
            addr: cidr(
                "uplink_host.ip",
                h.ip.as_deref().unwrap_or("128.153.144.148/24"),
            )?,
            mac: mac(
                "uplink_host.mac",
                h.mac.as_deref().unwrap_or("00:04:76:35:0a:72"),
            )?,
            gateway: h
                .gateway
                .as_deref()
                .map(|g| ip("uplink_host.gateway", g))
                .transpose()?,
            tcp_echo_port: h.tcp_echo_port.unwrap_or(7),
        };
        let mut guests = Vec::new();
        for (gi, g) in raw.guests.into_iter().enumerate() {
            guests.push(guest(&dd, &uplink_host, gi, g, &guests)?);
        }
        Ok(Topology {
            driver_domain: dd,
            uplink_host,
            guests,
        })
    }
}

fn driver_domain(d: RawDd) -> Result<DriverDomainConfig, TopologyError> {
    let mode = match d.mode.as_deref().unwrap_or("bridge") {
        "bridge" => Mode::Bridge,
        "route" => Mode::Route,
        "nat" => Mode::Nat,
        other => {
            return Err(field(
                "driver_domain.mode",
                other,
                "must be bridge, route or nat",
            ))
        }
    };
    let bridge = d.bridge.unwrap_or_else(|| "xenbr0".to_string());
    parse_ifname(&bridge).map_err(|r| field("driver_domain.bridge", &bridge, r.to_string()))?;
    let uplink_text = d.uplink.unwrap_or_else(|| "sim".to_string());
    let uplink = uplink_text
        .parse()
        .map_err(|r: String| field("driver_domain.uplink", &uplink_text, r))?;
    let mut captures = Vec::new();
    for (i, c) in d.captures.iter().enumerate() {
        captures.push(c.parse().map_err(|e: crate::capture::CaptureError| {
            field(&format!("driver_domain.captures[{i}]"), c, e.to_string())
        })?);
    }
    Ok(DriverDomainConfig {
        mode,
        bridge,
        uplink,
        addr: cidr(
            "driver_domain.ip",
            d.ip.as_deref().unwrap_or("128.153.144.204/24"),
        )?,
        gateway: d
            .gateway
            .as_deref()
            .map(|g| ip("driver_domain.gateway", g))
            .transpose()?,
        mac: mac(
            "driver_domain.mac",
            d.mac.as_deref().unwrap_or("00:16:3e:00:00:01"),
        )?,
        proxy_arp: d.proxy_arp.unwrap_or(false),
        ip_forward: d.ip_forward.unwrap_or(true),
        ageing_secs: d.ageing_secs.unwrap_or(300),
        captures,
    })
}

fn guest(
    dd: &DriverDomainConfig,
    host: &HostTable,
    gi: usize,
    g: RawGuest,
    earlier: &[GuestConfig],
) -> Result<GuestConfig, TopologyError> {
    let at = format!("guest[{gi}]");
    if let Err(e) = xennet_ring::DomId::guest(g.domid) {
        return Err(field(
            &format!("{at}.domid"),
            &g.domid.to_string(),
            e.to_string(),
        ));
    }
    if earlier.iter().any(|e| e.domid == g.domid) {
        return Err(field(
            &format!("{at}.domid"),
            &g.domid.to_string(),
            "used by an earlier guest",
        ));
    }
    let mut vifs: Vec<VifSpec> = Vec::new();
    for (vi, v) in g.vifs.into_iter().enumerate() {
        let vat = format!("{at}.vifs[{vi}]");
        let mut spec = vif_entry(&vat, v)?;
        let devid = spec.devid.unwrap_or(vi as u16);
        if vifs
            .iter()
            .enumerate()
            .any(|(i, o)| o.devid.unwrap_or(i as u16) == devid)
        {
            return Err(field(
                &format!("{vat}.devid"),
                &devid.to_string(),
                "used by an earlier vif of this guest",
            ));
        }
        spec.devid = Some(devid);
        check_mode(dd, &vat, &spec)?;
        let others = Others {
            dd: (dd.mac, dd.addr.address()),
            host: (dd.uplink == UplinkSpec::Sim).then_some((host.mac, host.addr.address())),
            earlier: earlier
                .iter()
                .enumerate()
                .map(|(i, g)| (i, g.domid, &g.vifs[..]))
                .collect(),
            this: (gi, g.domid, &vifs),
        };
        others
            .check_unique(&spec)
            .map_err(|c| field(&format!("{vat}.{}", c.key), &c.value, c.reason))?;
        vifs.push(spec);
    }
    Ok(GuestConfig {
        domid: g.domid,
        name: g.name.unwrap_or_else(|| format!("domU-{}", g.domid)),
        vifs,
    })
}

fn vif_entry(at: &str, v: toml::Value) -> Result<VifSpec, TopologyError> {
    let vif_err = |source| TopologyError::Vif {
        field: at.to_string(),
        source,
    };
    match v {
        toml::Value::String(s) => parse_vif_spec(&s).map_err(vif_err),
        toml::Value::Table(t) => {
            let mut spec = VifSpec::default();
            let mut seen = Vec::new();
            for (k, val) in t {
                let text = match val {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    other => {
                        return Err(field(
                            &format!("{at}.{k}"),
                            &other.to_string(),
                            "must be a string or an integer",
                        ))
                    }
                };
                apply(&mut spec, &mut seen, &k, &text).map_err(vif_err)?;
            }
            Ok(spec)
        }
        other => Err(field(
            at,
            &other.to_string(),
            "a vif is an xl vif string or a table",
        )),
    }
}

fn check_mode(dd: &DriverDomainConfig, at: &str, spec: &VifSpec) -> Result<(), TopologyError> {
    let wanted = match dd.mode {
        Mode::Bridge => Script::Bridge,
        Mode::Route => Script::Route,
        Mode::Nat => Script::Nat,
    };
    if let Some(s) = spec.script {
        if s != wanted {
            return Err(field(
                &format!("{at}.script"),
                &format!("{s:?}"),
                format!("driver_domain.mode is {:?}", dd.mode),
            ));
        }
    }
    if let (Mode::Bridge, Some(b)) = (dd.mode, &spec.bridge) {
        if *b != dd.bridge {
            return Err(field(
                &format!("{at}.bridge"),
                b,
                format!("the driver domain's bridge is {}", dd.bridge),
            ));
        }
    }
    Ok(())
}
