//! The XenStore nodes the toolstack writes for a vif, as libxl does: the frontend's
//! device directory (owned by the guest, readable by the backend) and the backend's
//! (owned by the driver domain, readable by the guest).

pub use xennet_xenstore::Access;
use xennet_xenstore::Perm;

/// A node's permissions: the owner with the default for everyone else, then grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perms {
    /// Owner domain; its access is total, `others` is what every other domain gets.
    pub owner: u16,
    /// Access of domains not listed.
    pub others: Access,
    /// Further per-domain access.
    pub acl: Vec<(u16, Access)>,
}

impl Perms {
    /// The list SET_PERMS takes: owner (with everyone else's access) first.
    pub fn to_perms(&self) -> Vec<Perm> {
        let mut v = vec![Perm::new(self.owner, self.others)];
        v.extend(self.acl.iter().map(|&(d, a)| Perm::new(d, a)));
        v
    }

    /// Xen's textual form, e.g. `n1 r0` (as xenstore-chmod takes it).
    pub fn to_xs_string(&self) -> String {
        self.to_perms()
            .iter()
            .map(Perm::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What the toolstack knows of one vif when it creates the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifNodes {
    /// The guest.
    pub frontend_domid: u16,
    /// The driver domain.
    pub backend_domid: u16,
    /// Device number (the `N` of `vifD.N`).
    pub devid: u32,
    /// Guest MAC as `00:16:3e:xx:xx:xx`.
    pub mac: String,
    /// `bridge=` (bridge mode).
    pub bridge: Option<String>,
    /// `ip=` (route and NAT modes; informative in bridge mode).
    pub ip: Option<String>,
    /// `script=` (vif-bridge, vif-route, vif-nat).
    pub script: String,
    /// `rate=` as libxl writes it: `bytes,microseconds`.
    pub rate: Option<(u64, u64)>,
    /// `vifname=`.
    pub vifname: Option<String>,
}

/// One write the toolstack performs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeWrite {
    /// Absolute path.
    pub path: String,
    /// Value (empty for a directory).
    pub value: String,
    /// Permissions to set on the node, when they differ from the inherited ones.
    pub perms: Option<Perms>,
}

impl VifNodes {
    /// `/local/domain/<fe>/device/vif/<devid>`.
    pub fn frontend_path(&self) -> String {
        format!(
            "/local/domain/{}/device/vif/{}",
            self.frontend_domid, self.devid
        )
    }

    /// `/local/domain/<be>/backend/vif/<fe>/<devid>`.
    pub fn backend_path(&self) -> String {
        format!(
            "/local/domain/{}/backend/vif/{}/{}",
            self.backend_domid, self.frontend_domid, self.devid
        )
    }

    /// The interface name in the driver domain: `vifname=` or `vif<fe>.<devid>`.
    pub fn port_name(&self) -> String {
        self.vifname
            .clone()
            .unwrap_or_else(|| format!("vif{}.{}", self.frontend_domid, self.devid))
    }

    /// Every node, in the order libxl writes them (directories with their perms first,
    /// then the values, `state` last so watchers see a complete device).
    pub fn writes(&self) -> Vec<NodeWrite> {
        let fe = self.frontend_path();
        let be = self.backend_path();
        let fe_perms = Perms {
            owner: self.frontend_domid,
            others: Access::None,
            acl: vec![(self.backend_domid, Access::Read)],
        };
        let be_perms = Perms {
            owner: self.backend_domid,
            others: Access::None,
            acl: vec![(self.frontend_domid, Access::Read)],
        };
        let w = |path: String, value: String| NodeWrite {
            path,
            value,
            perms: None,
        };
        let mut out = vec![
            NodeWrite {
                path: fe.clone(),
                value: String::new(),
                perms: Some(fe_perms),
            },
            NodeWrite {
                path: be.clone(),
                value: String::new(),
                perms: Some(be_perms),
            },
        ];
        out.push(w(format!("{fe}/backend"), be.clone()));
        out.push(w(
            format!("{fe}/backend-id"),
            self.backend_domid.to_string(),
        ));
        out.push(w(format!("{fe}/handle"), self.devid.to_string()));
        out.push(w(format!("{fe}/mac"), self.mac.clone()));
        out.push(w(format!("{be}/frontend"), fe.clone()));
        out.push(w(
            format!("{be}/frontend-id"),
            self.frontend_domid.to_string(),
        ));
        out.push(w(format!("{be}/online"), "1".into()));
        out.push(w(format!("{be}/handle"), self.devid.to_string()));
        out.push(w(format!("{be}/type"), "vif".into()));
        out.push(w(format!("{be}/mac"), self.mac.clone()));
        out.push(w(
            format!("{be}/script"),
            format!("/etc/xen/scripts/{}", self.script),
        ));
        if let Some(b) = &self.bridge {
            out.push(w(format!("{be}/bridge"), b.clone()));
        }
        if let Some(ip) = &self.ip {
            out.push(w(format!("{be}/ip"), ip.clone()));
        }
        if let Some((bytes, usec)) = self.rate {
            out.push(w(format!("{be}/rate"), format!("{bytes},{usec}")));
        }
        if let Some(n) = &self.vifname {
            out.push(w(format!("{be}/vifname"), n.clone()));
        }
        out.push(w(format!("{fe}/state"), "1".into()));
        out.push(w(format!("{be}/state"), "1".into()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vif() -> VifNodes {
        VifNodes {
            frontend_domid: 3,
            backend_domid: 0,
            devid: 0,
            mac: "00:16:3e:01:02:03".into(),
            bridge: Some("xenbr0".into()),
            ip: None,
            script: "vif-bridge".into(),
            rate: Some((1_250_000, 50_000)),
            vifname: None,
        }
    }

    #[test]
    fn vif_nodes_follow_libxl_paths_and_perms() {
        let w = vif().writes();
        assert_eq!(w[0].path, "/local/domain/3/device/vif/0");
        assert_eq!(
            w[0].perms.as_ref().map(|p| p.to_xs_string()).as_deref(),
            Some("n3 r0")
        );
        assert_eq!(w[1].path, "/local/domain/0/backend/vif/3/0");
        assert_eq!(
            w[1].perms.as_ref().map(|p| p.to_xs_string()).as_deref(),
            Some("n0 r3")
        );
        let get = |p: &str| w.iter().find(|n| n.path == p).map(|n| n.value.clone());
        assert_eq!(
            get("/local/domain/3/device/vif/0/backend").as_deref(),
            Some("/local/domain/0/backend/vif/3/0")
        );
        assert_eq!(
            get("/local/domain/0/backend/vif/3/0/rate").as_deref(),
            Some("1250000,50000")
        );
        assert_eq!(
            get("/local/domain/0/backend/vif/3/0/bridge").as_deref(),
            Some("xenbr0")
        );
        // state comes last so that a watcher sees a complete directory
        assert!(w[w.len() - 2].path.ends_with("/state") && w[w.len() - 1].path.ends_with("/state"));
        assert_eq!(vif().port_name(), "vif3.0");
    }
}
