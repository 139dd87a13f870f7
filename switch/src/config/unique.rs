//! A topology's guests may not share a MAC or an address with each other, with the
//! driver domain or with the simulated uplink host: two domains on one address each
//! see the other's traffic, and `xennet list` shows them both there.

use super::vif::VifSpec;
use crate::wire::{Ipv4Address, MacAddr};

/// Everyone a new vif's MAC and addresses must differ from: the driver domain's
/// (MAC, address), the simulated uplink host's (if it is the uplink), every earlier
/// guest's vifs and the earlier vifs of its own guest (index, domain id, vifs).
pub(super) struct Others<'a> {
    pub(super) dd: (MacAddr, Ipv4Address),
    pub(super) host: Option<(MacAddr, Ipv4Address)>,
    pub(super) earlier: Vec<(usize, u16, &'a [VifSpec])>,
    pub(super) this: (usize, u16, &'a [VifSpec]),
}

/// A vif's MAC or address that someone else has: its key (`mac`, `ip`), the value,
/// and whose it is.
pub(super) struct Clash {
    pub(super) key: &'static str,
    pub(super) value: String,
    pub(super) reason: String,
}

/// Who holds a MAC or an address already.
enum Owner {
    /// The driver domain (`driver_domain.<key>`).
    DriverDomain,
    /// The simulated uplink host (`uplink_host.<key>`).
    UplinkHost,
    /// `guest[guest].vifs[vif]`, of domain `domid`.
    Vif {
        guest: usize,
        vif: usize,
        domid: u16,
    },
}

impl Owner {
    /// Why a vif may not have it: `already guest[0].vifs[0]'s (domain 1)`, `the
    /// driver domain's (driver_domain.mac)`.
    fn reason(&self, key: &str) -> String {
        match self {
            Owner::DriverDomain => format!("the driver domain's (driver_domain.{key})"),
            Owner::UplinkHost => format!("the simulated uplink host's (uplink_host.{key})"),
            Owner::Vif { guest, vif, domid } => {
                format!("already guest[{guest}].vifs[{vif}]'s (domain {domid})")
            }
        }
    }
}

impl Others<'_> {
    /// The first vif (earlier guests', then this guest's) for which `taken` holds.
    fn vif_with(&self, taken: impl Fn(&VifSpec) -> bool) -> Option<Owner> {
        self.earlier
            .iter()
            .copied()
            .chain(std::iter::once(self.this))
            .find_map(|(guest, domid, vifs)| {
                let vif = vifs.iter().position(&taken)?;
                Some(Owner::Vif { guest, vif, domid })
            })
    }

    fn mac_owner(&self, mac: MacAddr) -> Option<Owner> {
        if mac == self.dd.0 {
            Some(Owner::DriverDomain)
        } else if self.host.is_some_and(|h| h.0 == mac) {
            Some(Owner::UplinkHost)
        } else {
            self.vif_with(|v| v.mac == Some(mac))
        }
    }

    fn ip_owner(&self, ip: Ipv4Address) -> Option<Owner> {
        if ip == self.dd.1 {
            Some(Owner::DriverDomain)
        } else if self.host.is_some_and(|h| h.1 == ip) {
            Some(Owner::UplinkHost)
        } else {
            self.vif_with(|v| v.ips.iter().any(|c| c.address() == ip))
        }
    }

    /// Refuses a vif whose MAC or an address someone else has (two domains on one
    /// address would each see the other's traffic).
    pub(super) fn check_unique(&self, spec: &VifSpec) -> Result<(), Clash> {
        if let Some(mac) = spec.mac {
            if let Some(owner) = self.mac_owner(mac) {
                return Err(Clash {
                    key: "mac",
                    value: crate::wire::MacFmt(mac).to_string(),
                    reason: owner.reason("mac"),
                });
            }
        }
        for ip in spec.ips.iter().map(|c| c.address()) {
            if let Some(owner) = self.ip_owner(ip) {
                return Err(Clash {
                    key: "ip",
                    value: ip.to_string(),
                    reason: owner.reason("ip"),
                });
            }
        }
        Ok(())
    }
}
