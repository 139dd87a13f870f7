//! `xennet platform-check`: the platform against a real hypervisor. Two roles meet
//! through XenStore, in two domains of a real Xen host:
//! - `grant` (in a domU): grants pages to the copier (read-write, read-only, one to
//!   another domain, one ended), opens an unbound event channel, publishes them in
//!   `/local/domain/<me>/data/xennet-check`, then counts the events that arrive;
//! - `copy` (in dom0): runs `xennet_dom0::platform_check::edge_cases` through
//!   `/dev/xen/gntdev` against them, compares every `GNTST_*` status with the same body
//!   on the plain-process platform, then sends a burst of notifications and reads how
//!   many events the granter saw (they coalesce).
//!
//! `shm` prints the plain-process reference alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use xennet_dom0::platform_check::{edge_cases, shm_reference, Offered};
use xennet_platform::xenlinux::{EventChannels, GntAlloc, GntDev, LocalPages};
use xennet_ring::{DomId, FrameAlloc, GrantStatus, LocalMemory, Port};
use xennet_xenstore::xenbus::read_num;
use xennet_xenstore::XsClient;

/// How many notifications the copier sends in one burst.
pub const BURST: u32 = 5;

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckError(String);

fn err(what: &str) -> impl FnOnce(&dyn std::fmt::Display) -> CheckError + '_ {
    move |e| CheckError(format!("{what}: {e}"))
}

fn node(domid: u16, key: &str) -> String {
    format!("/local/domain/{domid}/data/xennet-check{key}")
}

fn wait_node(xs: &XsClient, path: &str, within: Duration) -> Result<String, CheckError> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(v)) = xs.try_read_string(path) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(CheckError(format!(
                "{path} did not appear within {within:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(s: GrantStatus) -> String {
    format!("GNTST {} ({})", s.raw(), s.message())
}

/// The plain-process reference: one line per case.
pub fn shm() -> Result<String, CheckError> {
    let r = shm_reference().map_err(|e| CheckError(e.to_string()))?;
    Ok(r.iter()
        .map(|(c, s)| format!("shm   {c}: {}\n", status(*s)))
        .collect())
}

/// The granting role (a domU): returns once the copier is done or `within` passes.
pub fn grant(copier: DomId, within: Duration) -> Result<String, CheckError> {
    let xs = XsClient::open_xen().map_err(|e| err("xenstore")(&e))?;
    let me: u16 = read_num(&xs, "domid").map_err(|e| err("domid")(&e))?;
    let to_copier = GntAlloc::open(copier).map_err(|e| err("gntalloc")(&e))?;
    let to_other =
        GntAlloc::open(DomId(copier.0.wrapping_add(42))).map_err(|e| err("gntalloc")(&e))?;
    let page = |g: &GntAlloc, writable: bool| {
        let (f, r) = g
            .alloc_page(writable)
            .map_err(|e| err("grant a page")(&e))?;
        g.write(f, 0, &[0xa5; 64])
            .map_err(|e| err("fill a page")(&e))?;
        Ok::<_, CheckError>((f, r))
    };
    let (_, rw) = page(&to_copier, true)?;
    let (_, ro) = page(&to_copier, false)?;
    let (_, other) = page(&to_other, true)?;
    let (ended_frame, ended) = page(&to_copier, true)?;
    // Ending a gntalloc grant is freeing its page: the reference is gone.
    to_copier.free_frame(ended_frame);
    let events = EventChannels::open().map_err(|e| err("evtchn")(&e))?;
    let port = events
        .alloc_unbound(copier)
        .map_err(|e| err("alloc_unbound")(&e))?;
    let offered = Offered {
        granter: DomId(me),
        rw,
        ro,
        other,
        ended,
    };
    xs.write(&node(me, ""), format!("{} {}", offered.encode(), port.0))
        .map_err(|e| err("publish")(&e))?;
    // The copier sends its burst while we do not read the device, then says so.
    let sent = wait_node(&xs, &node(me, "-kicked"), within)?;
    let mut got = 0u32;
    let mut seen: Vec<Port> = Vec::new();
    let quiet_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet_until {
        seen.clear();
        events.wait_into(Some(Duration::from_millis(200)), &mut seen);
        got += seen.iter().filter(|p| **p == port).count() as u32;
    }
    xs.write(&node(me, "-events"), got.to_string())
        .map_err(|e| err("publish")(&e))?;
    let _ = wait_node(&xs, &node(me, "-done"), within);
    events.close(port);
    Ok(format!(
        "granter: {sent} notifications sent, {got} events received\n"
    ))
}

/// The copying role (dom0): one line per case, `same` or `DIFF` against shm, then the
/// notification burst. Fails if any status differs.
pub fn copy(granter: u16, within: Duration) -> Result<(String, bool), CheckError> {
    let xs = XsClient::open_xen().map_err(|e| err("xenstore")(&e))?;
    let published = wait_node(&xs, &node(granter, ""), within)?;
    let (grants, port) = published
        .rsplit_once(' ')
        .ok_or_else(|| CheckError(format!("bad offer {published:?}")))?;
    let offered = Offered::parse(grants)
        .filter(|o| o.granter.0 == granter)
        .ok_or_else(|| CheckError(format!("bad offer {published:?}")))?;
    let port = Port(
        port.parse()
            .map_err(|_| CheckError(format!("bad port in {published:?}")))?,
    );
    let pages = Arc::new(LocalPages::new(4).map_err(|e| err("local pages")(&e))?);
    let dev = GntDev::open(pages.clone()).map_err(|e| err("gntdev")(&e))?;
    let local = pages.alloc_frame().map_err(|e| err("local page")(&e))?;
    pages
        .write(local, 0, &[0x3c; 64])
        .map_err(|e| err("local page")(&e))?;
    let xen = edge_cases(&dev, &offered, local);
    let reference = shm_reference().map_err(|e| CheckError(e.to_string()))?;
    let mut out = String::new();
    let mut all_same = true;
    for ((case, x), (_, s)) in xen.iter().zip(&reference) {
        if x == s {
            out.push_str(&format!("same  {case}: {}\n", status(*x)));
        } else {
            all_same = false;
            out.push_str(&format!(
                "DIFF  {case}: xen {}, shm {}\n",
                status(*x),
                status(*s)
            ));
        }
    }
    let events = EventChannels::open().map_err(|e| err("evtchn")(&e))?;
    let local_port = events
        .bind_interdomain(DomId(granter), port)
        .map_err(|e| err("bind_interdomain")(&e))?;
    for _ in 0..BURST {
        events.notify(local_port);
    }
    xs.write(&node(granter, "-kicked"), BURST.to_string())
        .map_err(|e| err("publish")(&e))?;
    let got = wait_node(&xs, &node(granter, "-events"), within)?;
    out.push_str(&format!(
        "events: {BURST} notifications sent, {got} received by the granter\n"
    ));
    let _ = xs.write(&node(granter, "-done"), "1");
    events.close(local_port);
    Ok((out, all_same))
}
