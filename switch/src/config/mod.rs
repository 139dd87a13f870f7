//! Configuration: xl's vif syntax ([`parse_vif_spec`]), rates, and the topology file
//! that describes a driver domain and its guests ([`Topology`]).
#![deny(unsafe_code)]

mod rate;
mod topology;
mod unique;
mod vif;

pub use rate::{parse_rate, Rate, RateError, DEFAULT_RATE_INTERVAL_US};
pub use topology::{
    DriverDomainConfig, GuestConfig, HostTable, Topology, TopologyError, UplinkSpec,
};
pub use vif::{
    parse_ifname, parse_mac, parse_vif_spec, random_xen_mac, IfnameError, MacError, Script,
    VifSpec, VifSpecError, VifType,
};
