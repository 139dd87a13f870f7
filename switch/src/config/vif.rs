//! xl's vif syntax (xl-network-configuration(5)): comma-separated `key=value` items,
//! e.g. `mac=00:16:3e:01:02:03,bridge=xenbr0,ip=10.0.0.2,script=vif-route,rate=10Mb/s`.
//!
//! Keys: `mac`, `bridge`, `ip` (space-separated addresses, optional `/prefix`),
//! `script` (`vif-bridge`, `vif-route`, `vif-nat`, optionally with a directory),
//! `rate`, `vifname`, `model` (accepted and ignored: no device model here), `type`
//! (`vif` or `ioemu`), `backend`, `devid`, `mtu`. Whitespace around items, keys and
//! values is ignored; empty items are skipped (`''` is a valid spec). Unknown keys and
//! bad values are errors naming the key and the value.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use super::rate::{parse_rate, Rate, RateError};
use crate::wire::{Ipv4Address, Ipv4Cidr, MacAddr};

/// Longest vif spec accepted (a fuzz target feeds arbitrary input).
const MAX_SPEC_LEN: usize = 4096;

/// The hotplug script a vif asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// `vif-bridge`.
    Bridge,
    /// `vif-route`.
    Route,
    /// `vif-nat`.
    Nat,
}

impl Script {
    /// The script's file name.
    pub fn name(self) -> &'static str {
        match self {
            Script::Bridge => "vif-bridge",
            Script::Route => "vif-route",
            Script::Nat => "vif-nat",
        }
    }
}

/// `type=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VifType {
    /// A PV vif (the default).
    #[default]
    Vif,
    /// An emulated NIC; here treated as a PV vif.
    Ioemu,
}

/// A parsed vif spec.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct VifSpec {
    /// The guest-side MAC (`mac=`); `None` means "generate one" ([`random_xen_mac`]).
    pub mac: Option<MacAddr>,
    /// `bridge=`.
    pub bridge: Option<String>,
    /// `ip=`: guest addresses, each with an optional prefix length (32 if absent).
    pub ips: Vec<Ipv4Cidr>,
    /// `script=`.
    pub script: Option<Script>,
    /// `rate=`.
    pub rate: Option<Rate>,
    /// `vifname=`: backend interface name instead of `vif<domid>.<devid>`.
    pub vifname: Option<String>,
    /// `model=` (ignored).
    pub model: Option<String>,
    /// `type=`.
    pub vif_type: VifType,
    /// `backend=`: the driver domain (name or id).
    pub backend: Option<String>,
    /// `devid=`.
    pub devid: Option<u16>,
    /// `mtu=`.
    pub mtu: Option<u16>,
    /// Notes about accepted-but-ignored settings, for the user.
    pub notes: Vec<String>,
}

impl VifSpec {
    /// The MAC, generating a random Xen one if none was given.
    pub fn mac_or_random(&self) -> MacAddr {
        self.mac.unwrap_or_else(random_xen_mac)
    }

    /// The guest addresses without prefixes.
    pub fn addresses(&self) -> Vec<Ipv4Address> {
        self.ips.iter().map(|c| c.address()).collect()
    }
}

/// Errors of [`parse_vif_spec`]; each names the key and the offending text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VifSpecError {
    /// The spec is longer than 4096 bytes.
    #[error("vif spec is {0} bytes long; at most 4096 are accepted")]
    TooLong(usize),
    /// An item without '='.
    #[error("vif spec item {0:?} is not of the form key=value")]
    NotKeyValue(String),
    /// A key xl does not know (or this implementation does not support).
    #[error("unknown vif key {0:?} (known: mac, bridge, ip, script, rate, vifname, model, type, backend, devid, mtu)")]
    UnknownKey(String),
    /// The same key twice.
    #[error("vif key {0:?} given more than once")]
    Duplicate(String),
    /// A bad value for a key.
    #[error("{key}={value:?}: {reason}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A bad `rate=`.
    #[error("rate={value:?}: {source}")]
    BadRate {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        source: RateError,
    },
}

fn bad(key: &'static str, value: &str, reason: impl Into<String>) -> VifSpecError {
    VifSpecError::BadValue {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Why a MAC address was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// Not six groups.
    #[error("expected six hex pairs separated by ':', found {0} groups")]
    Groups(usize),
    /// A group that is not two hex digits (1-based position).
    #[error("group {0} ({1:?}) is not two hex digits")]
    NotHex(usize, String),
    /// The multicast bit is set.
    #[error("multicast bit set (first byte is odd): a NIC address must be unicast")]
    Multicast,
    /// 00:00:00:00:00:00.
    #[error("all-zero address")]
    Zero,
}

/// Parses a MAC written as six pairs of hex digits separated by ':' (or '-'); it must
/// be unicast (a guest NIC address).
pub fn parse_mac(text: &str) -> Result<MacAddr, MacError> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(MacError::Groups(parts.len()));
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        let byte = (p.len() == 2)
            .then(|| u8::from_str_radix(p, 16).ok())
            .flatten();
        mac[i] = byte.ok_or_else(|| MacError::NotHex(i + 1, p.to_string()))?;
    }
    if mac[0] & 1 != 0 {
        return Err(MacError::Multicast);
    }
    if mac == [0; 6] {
        return Err(MacError::Zero);
    }
    Ok(MacAddr(mac))
}

/// Why an interface name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IfnameError {
    /// Empty or longer than Linux's IFNAMSIZ allows.
    #[error("must be 1 to 15 characters (Linux IFNAMSIZ)")]
    Length,
    /// A character outside letters, digits, '.', '-', '_'.
    #[error("character {0:?} not allowed (letters, digits, '.', '-', '_')")]
    Char(char),
}

/// Validates an interface name: 1..=15 bytes of ASCII letters, digits, '.', '-', '_'.
pub fn parse_ifname(text: &str) -> Result<String, IfnameError> {
    if text.is_empty() || text.len() > 15 {
        return Err(IfnameError::Length);
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(IfnameError::Char(c));
    }
    Ok(text.to_string())
}

/// A random MAC in Xen's OUI 00:16:3e, as libxl generates one (the fourth byte's top
/// bit clear). Unicast and globally administered by construction.
pub fn random_xen_mac() -> MacAddr {
    let r = RandomState::new().build_hasher().finish().to_le_bytes();
    MacAddr([0x00, 0x16, 0x3e, r[0] & 0x7f, r[1], r[2]])
}

fn parse_ip_list(value: &str) -> Result<Vec<Ipv4Cidr>, VifSpecError> {
    let mut ips = Vec::new();
    for tok in value.split_whitespace() {
        let (addr, len) = match tok.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (tok, None),
        };
        let ip: Ipv4Address = addr
            .parse()
            .map_err(|_| bad("ip", value, format!("{addr:?} is not an IPv4 address")))?;
        let len = match len {
            None => 32,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= 32 => n,
                _ => {
                    return Err(bad(
                        "ip",
                        value,
                        format!("prefix length {l:?} is not 0..=32"),
                    ))
                }
            },
        };
        if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
            return Err(bad("ip", value, format!("{ip} is not a host address")));
        }
        ips.push(Ipv4Cidr::new(ip, len));
    }
    if ips.is_empty() {
        return Err(bad("ip", value, "no address given"));
    }
    Ok(ips)
}

fn parse_script(value: &str) -> Result<Script, VifSpecError> {
    match value.rsplit('/').next().unwrap_or(value) {
        "vif-bridge" => Ok(Script::Bridge),
        "vif-route" => Ok(Script::Route),
        "vif-nat" => Ok(Script::Nat),
        _ => Err(bad(
            "script",
            value,
            "supported scripts are vif-bridge, vif-route and vif-nat",
        )),
    }
}

/// Applies one `key=value` to `spec`. Used by the string parser and the topology
/// file's table form so both give the same errors.
pub(super) fn apply(
    spec: &mut VifSpec,
    seen: &mut Vec<&'static str>,
    key: &str,
    value: &str,
) -> Result<(), VifSpecError> {
    const KEYS: [&str; 11] = [
        "mac", "bridge", "ip", "script", "rate", "vifname", "model", "type", "backend", "devid",
        "mtu",
    ];
    let Some(key) = KEYS.iter().copied().find(|k| *k == key) else {
        return Err(VifSpecError::UnknownKey(key.to_string()));
    };
    if seen.contains(&key) {
        return Err(VifSpecError::Duplicate(key.to_string()));
    }
    seen.push(key);
    match key {
        "mac" => spec.mac = Some(parse_mac(value).map_err(|r| bad("mac", value, r.to_string()))?),
        "bridge" => {
            spec.bridge =
                Some(parse_ifname(value).map_err(|r| bad("bridge", value, r.to_string()))?)
        }
        "ip" => spec.ips = parse_ip_list(value)?,
        "script" => spec.script = Some(parse_script(value)?),
        "rate" => {
            spec.rate = Some(parse_rate(value).map_err(|source| VifSpecError::BadRate {
                value: value.to_string(),
                source,
            })?)
        }
        "vifname" => {
            spec.vifname =
                Some(parse_ifname(value).map_err(|r| bad("vifname", value, r.to_string()))?)
        }
        "model" => {
            spec.model = Some(value.to_string());
            spec.notes.push(format!(
                "model={value} ignored: there is no device model, the vif is paravirtual"
            ));
        }
        "type" => {
            spec.vif_type = match value {
                "vif" => VifType::Vif,
                "ioemu" => {
                    spec.notes.push(
                        "type=ioemu treated as type=vif: there is no device model".to_string(),
                    );
                    VifType::Ioemu
                }
                _ => return Err(bad("type", value, "must be vif or ioemu")),
            }
        }
        "backend" => {
            if value.is_empty() {
                return Err(bad("backend", value, "empty domain name"));
            }
            spec.backend = Some(value.to_string())
        }
        "devid" => {
            spec.devid = Some(
                value
                    .parse()
                    .map_err(|_| bad("devid", value, "must be a number 0..=65535"))?,
            )
        }
        _ => {
            let mtu: u16 = value
                .parse()
                .map_err(|_| bad("mtu", value, "must be a number 68..=65535"))?;
            if mtu < 68 {
                return Err(bad("mtu", value, "must be a number 68..=65535"));
            }
            spec.mtu = Some(mtu)
        }
    }
    Ok(())
}

/// Parses one xl vif spec. Never panics; errors name the key and the value.
///
/// ```
/// use xennet_switch::config::{parse_vif_spec, Script};
/// let v = parse_vif_spec("mac=00:16:3e:00:00:02, bridge=xenbr0, script=vif-route, rate=10Mb/s@20ms").unwrap();
/// assert_eq!(v.script, Some(Script::Route));
/// assert_eq!(v.rate.unwrap().bytes_per_interval, 25_000);
/// assert!(parse_vif_spec("colour=blue").unwrap_err().to_string().contains("colour"));
/// ```
pub fn parse_vif_spec(text: &str) -> Result<VifSpec, VifSpecError> {
    if text.len() > MAX_SPEC_LEN {
        return Err(VifSpecError::TooLong(text.len()));
    }
    let mut spec = VifSpec::default();
    let mut seen = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((key, value)) = item.split_once('=') else {
            return Err(VifSpecError::NotKeyValue(item.to_string()));
        };
        apply(&mut spec, &mut seen, key.trim(), value.trim())?;
    }
    Ok(spec)
}
