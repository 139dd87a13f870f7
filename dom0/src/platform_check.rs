//! The platform against its reference: one body of grant-copy edge cases, run on the
//! plain-process platform in this process and on a real hypervisor between two
//! domains, so the `GNTST_*` status of every case can be compared.
//!
//! The granting domain offers four grants to the copying domain's id (or another's):
//! a read-write one, a read-only one, one given to another domain, and one already
//! ended. The copying domain runs [`edge_cases`] against them and gets one status per
//! case; [`shm_reference`] runs the same body on `xennet_platform::shm`.

use xennet_platform::shm::{Domain, GrantOps, PeerDomain};
use xennet_ring::grant::{GnttabCopy, GnttabCopyPtr};
use xennet_ring::{
    DomId, Frame, FrameAlloc, GrantAccess, GrantCopy, GrantRef, GrantStatus, LocalMemory,
};

/// The grants a granting domain offers for the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offered {
    /// The granting domain.
    pub granter: DomId,
    /// Granted read-write to the copier.
    pub rw: GrantRef,
    /// Granted read-only to the copier.
    pub ro: GrantRef,
    /// Granted read-write to a third domain, not the copier.
    pub other: GrantRef,
    /// Granted to the copier and then ended.
    pub ended: GrantRef,
}

impl Offered {
    /// `granter rw ro other ended`, as the granter publishes it.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.granter.0, self.rw.0, self.ro.0, self.other.0, self.ended.0
        )
    }

    /// Parses [`Offered::encode`]'s form.
    pub fn parse(s: &str) -> Option<Offered> {
        let v: Vec<u32> = s
            .split_whitespace()
            .map(|w| w.parse().ok())
            .collect::<Option<_>>()?;
        let [g, rw, ro, other, ended] = v[..] else {
            return None;
        };
        Some(Offered {
            granter: DomId(u16::try_from(g).ok()?),
            rw: GrantRef(rw),
            ro: GrantRef(ro),
            other: GrantRef(other),
            ended: GrantRef(ended),
        })
    }
}

/// A grant reference past any grant table.
pub const BAD_REF: GrantRef = GrantRef(0x00ff_fff0);

/// The cases, in order, with the copy each makes. `local` is a frame of the copier's
/// own memory.
fn cases(o: &Offered, local: Frame) -> [(&'static str, GnttabCopy); 7] {
    let from = |g: GrantRef, off: u16, len: u16| {
        GnttabCopy::from_grant(
            GnttabCopyPtr::gref(g, o.granter, off),
            GnttabCopyPtr::local(local, 0),
            len,
        )
    };
    let to = |g: GrantRef, len: u16| {
        GnttabCopy::to_grant(
            GnttabCopyPtr::local(local, 0),
            GnttabCopyPtr::gref(g, o.granter, 0),
            len,
        )
    };
    [
        ("read a read-write grant", from(o.rw, 0, 64)),
        ("write a read-write grant", to(o.rw, 64)),
        ("read a read-only grant", from(o.ro, 0, 64)),
        ("write a read-only grant", to(o.ro, 64)),
        ("bad grant reference", from(BAD_REF, 0, 64)),
        ("grant to another domain", from(o.other, 0, 64)),
        ("ended grant", from(o.ended, 0, 64)),
    ]
}

/// The case past the page end: `offset + len` over 4096.
const PAST_PAGE: &str = "offset + len past the page";

/// Runs every case against `o` with `copier`, one operation per call (so one bad op
/// cannot hide another's status), and the page-crossing case. Returns each case's
/// name and status.
pub fn edge_cases<C: GrantCopy>(
    copier: &C,
    o: &Offered,
    local: Frame,
) -> Vec<(&'static str, GrantStatus)> {
    let mut out = Vec::new();
    let mut all: Vec<(&'static str, GnttabCopy)> = cases(o, local).to_vec();
    all.push((
        PAST_PAGE,
        GnttabCopy::from_grant(
            GnttabCopyPtr::gref(o.rw, o.granter, 4000),
            GnttabCopyPtr::local(local, 0),
            200,
        ),
    ));
    for (name, op) in all {
        let mut batch = [op];
        let status = match copier.grant_copy(&mut batch) {
            Ok(()) => batch[0].status(),
            Err(s) => s,
        };
        out.push((name, status));
    }
    out
}

/// Why the reference run could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("shm reference: {0}")]
pub struct ReferenceError(String);

/// The same body on the plain-process platform: domain `granter` grants to domain
/// `copier` in this process and the copier runs [`edge_cases`].
pub fn shm_reference() -> Result<Vec<(&'static str, GrantStatus)>, ReferenceError> {
    let e = |e: &dyn std::fmt::Display| ReferenceError(e.to_string());
    let granter = Domain::anonymous(DomId(7), 16, 64).map_err(|x| e(&x))?;
    let copier = Domain::anonymous(DomId(1), 16, 64).map_err(|x| e(&x))?;
    let page = || granter.alloc_frame().map_err(|x| e(&x));
    let (rw, ro, other, ended) = (page()?, page()?, page()?, page()?);
    let grant = |f: Frame, to: DomId, readonly: bool| {
        granter.grant_access(to, f, readonly).map_err(|x| e(&x))
    };
    let o = Offered {
        granter: granter.domid(),
        rw: grant(rw, copier.domid(), false)?,
        ro: grant(ro, copier.domid(), true)?,
        other: grant(other, DomId(9), false)?,
        ended: grant(ended, copier.domid(), false)?,
    };
    granter.end_access(o.ended).map_err(|x| e(&x))?;
    let ops = GrantOps::new(&copier);
    ops.add_peer(PeerDomain::from_domain(&granter));
    let local = copier.alloc_frame().map_err(|x| e(&x))?;
    copier.write(local, 0, &[0x5a; 64]).map_err(|x| e(&x))?;
    Ok(edge_cases(&ops, &o, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_gives_the_documented_status_for_every_case() {
        let got = shm_reference().unwrap();
        let want = [
            ("read a read-write grant", GrantStatus::Okay),
            ("write a read-write grant", GrantStatus::Okay),
            ("read a read-only grant", GrantStatus::Okay),
            ("write a read-only grant", GrantStatus::GeneralError),
            ("bad grant reference", GrantStatus::BadGntref),
            ("grant to another domain", GrantStatus::GeneralError),
            ("ended grant", GrantStatus::GeneralError),
            (PAST_PAGE, GrantStatus::BadCopyArg),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn offered_grants_round_trip_through_their_text_form() {
        let o = Offered {
            granter: DomId(3),
            rw: GrantRef(10),
            ro: GrantRef(11),
            other: GrantRef(12),
            ended: GrantRef(13),
        };
        assert_eq!(Offered::parse(&o.encode()), Some(o));
        assert_eq!(Offered::parse("3 10 11"), None);
        assert_eq!(Offered::parse("3 10 11 12 x"), None);
    }
}
