//! The XenStore daemon's core: header parsing, path and permission parsing, and
//! a sequence of requests from privileged and unprivileged callers applied to
//! one tree; and the same bytes as a journal to replay (with the magic put in
//! front, so records are reached). Nothing may panic and the tree's invariants
//! must hold throughout.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xennet_xenstore::{apply, journal, wire, Caller, Limits, Perms, Tree};

fuzz_target!(|data: &[u8]| {
    if data.len() >= wire::HEADER_LEN {
        let mut h = [0u8; wire::HEADER_LEN];
        h.copy_from_slice(&data[..wire::HEADER_LEN]);
        let _ = wire::Header::parse(&h);
    }
    let _ = Perms::parse(wire::split_strings(data));
    let mut j = b"XNXSJ001".to_vec();
    j.extend_from_slice(data);
    let restored = journal::replay(&j);
    if let Err(e) = restored.tree.check_invariants() {
        panic!("journal replay broke an invariant: {e}");
    }
    let limits = Limits {
        nodes_per_domain: 64,
        ..Limits::default()
    };
    let mut tree = Tree::new();
    tree.ensure("/local/domain/1", Perms::owned_by(1));
    tree.ensure("/local/domain/2", Perms::owned_by(2));
    // Records: [caller, type, len, body...].
    let mut rest = data;
    while rest.len() >= 3 {
        let caller = match rest[0] % 3 {
            0 => Caller::DOM0,
            1 => Caller::guest(1),
            _ => Caller::guest(2),
        };
        let ty = wire::MsgType::from_u32(u32::from(rest[1] % 24));
        let len = usize::from(rest[2]).min(rest.len() - 3);
        let body = &rest[3..3 + len];
        rest = &rest[3 + len..];
        if let Some(ty) = ty {
            let _ = wire::check_path(&String::from_utf8_lossy(body));
            let _ = apply(&limits, &mut tree, caller, ty, body);
        }
        if let Err(e) = tree.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }
    // Guests never own more than their quota.
    assert!(tree.owned_by(1) <= limits.nodes_per_domain + 1);
    assert!(tree.owned_by(2) <= limits.nodes_per_domain + 1);
});
