//! The ABI checked against the installed C headers (and x86_64 literals).

use super::*;
use core::mem::{align_of, offset_of};
use std::fmt::Write as _;

/// (name, value in Rust, the same quantity as a C expression).
fn abi_table() -> Vec<(&'static str, u64, &'static str)> {
    macro_rules! row {
        ($name:literal, $rust:expr, $c:literal) => {
            ($name, ($rust) as u64, $c)
        };
    }
    type Seg = GntdevGrantCopySegment;
    vec![
        // gntalloc
        row!(
            "alloc_gref.size",
            size_of::<IoctlGntallocAllocGref>(),
            "sizeof(struct ioctl_gntalloc_alloc_gref)"
        ),
        row!(
            "alloc_gref.domid",
            offset_of!(IoctlGntallocAllocGref, domid),
            "offsetof(struct ioctl_gntalloc_alloc_gref, domid)"
        ),
        row!(
            "alloc_gref.flags",
            offset_of!(IoctlGntallocAllocGref, flags),
            "offsetof(struct ioctl_gntalloc_alloc_gref, flags)"
        ),
        row!(
            "alloc_gref.count",
            offset_of!(IoctlGntallocAllocGref, count),
            "offsetof(struct ioctl_gntalloc_alloc_gref, count)"
        ),
        row!(
            "alloc_gref.index",
            offset_of!(IoctlGntallocAllocGref, index),
            "offsetof(struct ioctl_gntalloc_alloc_gref, index)"
        ),
        row!(
            "alloc_gref.gref_ids",
            offset_of!(IoctlGntallocAllocGref, gref_ids),
            "offsetof(struct ioctl_gntalloc_alloc_gref, gref_ids)"
        ),
        row!(
            "dealloc_gref.size",
            size_of::<IoctlGntallocDeallocGref>(),
            "sizeof(struct ioctl_gntalloc_dealloc_gref)"
        ),
        row!(
            "dealloc_gref.index",
            offset_of!(IoctlGntallocDeallocGref, index),
            "offsetof(struct ioctl_gntalloc_dealloc_gref, index)"
        ),
        row!(
            "dealloc_gref.count",
            offset_of!(IoctlGntallocDeallocGref, count),
            "offsetof(struct ioctl_gntalloc_dealloc_gref, count)"
        ),
        row!(
            "gntalloc_notify.size",
            size_of::<IoctlGntallocUnmapNotify>(),
            "sizeof(struct ioctl_gntalloc_unmap_notify)"
        ),
        row!(
            "gntalloc_notify.index",
            offset_of!(IoctlUnmapNotify, index),
            "offsetof(struct ioctl_gntalloc_unmap_notify, index)"
        ),
        row!(
            "gntalloc_notify.action",
            offset_of!(IoctlUnmapNotify, action),
            "offsetof(struct ioctl_gntalloc_unmap_notify, action)"
        ),
        row!(
            "gntalloc_notify.port",
            offset_of!(IoctlUnmapNotify, event_channel_port),
            "offsetof(struct ioctl_gntalloc_unmap_notify, event_channel_port)"
        ),
        row!(
            "GNTALLOC_FLAG_WRITABLE",
            GNTALLOC_FLAG_WRITABLE,
            "GNTALLOC_FLAG_WRITABLE"
        ),
        row!(
            "UNMAP_NOTIFY_CLEAR_BYTE",
            UNMAP_NOTIFY_CLEAR_BYTE,
            "UNMAP_NOTIFY_CLEAR_BYTE"
        ),
        row!(
            "UNMAP_NOTIFY_SEND_EVENT",
            UNMAP_NOTIFY_SEND_EVENT,
            "UNMAP_NOTIFY_SEND_EVENT"
        ),
        row!(
            "IOCTL_GNTALLOC_ALLOC_GREF",
            IOCTL_GNTALLOC_ALLOC_GREF,
            "IOCTL_GNTALLOC_ALLOC_GREF"
        ),
        row!(
            "IOCTL_GNTALLOC_DEALLOC_GREF",
            IOCTL_GNTALLOC_DEALLOC_GREF,
            "IOCTL_GNTALLOC_DEALLOC_GREF"
        ),
        row!(
            "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY",
            IOCTL_GNTALLOC_SET_UNMAP_NOTIFY,
            "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY"
        ),
        // gntdev
        row!(
            "grant_ref.size",
            size_of::<IoctlGntdevGrantRef>(),
            "sizeof(struct ioctl_gntdev_grant_ref)"
        ),
        row!(
            "grant_ref.domid",
            offset_of!(IoctlGntdevGrantRef, domid),
            "offsetof(struct ioctl_gntdev_grant_ref, domid)"
        ),
        row!(
            "grant_ref.ref",
            offset_of!(IoctlGntdevGrantRef, gref),
            "offsetof(struct ioctl_gntdev_grant_ref, ref)"
        ),
        row!(
            "map_grant_ref.size",
            size_of::<IoctlGntdevMapGrantRef>(),
            "sizeof(struct ioctl_gntdev_map_grant_ref)"
        ),
        row!(
            "map_grant_ref.count",
            offset_of!(IoctlGntdevMapGrantRef, count),
            "offsetof(struct ioctl_gntdev_map_grant_ref, count)"
        ),
        row!(
            "map_grant_ref.pad",
            offset_of!(IoctlGntdevMapGrantRef, pad),
            "offsetof(struct ioctl_gntdev_map_grant_ref, pad)"
        ),
        row!(
            "map_grant_ref.index",
            offset_of!(IoctlGntdevMapGrantRef, index),
            "offsetof(struct ioctl_gntdev_map_grant_ref, index)"
        ),
        row!(
            "map_grant_ref.refs",
            offset_of!(IoctlGntdevMapGrantRef, refs),
            "offsetof(struct ioctl_gntdev_map_grant_ref, refs)"
        ),
        row!(
            "unmap_grant_ref.size",
            size_of::<IoctlGntdevUnmapGrantRef>(),
            "sizeof(struct ioctl_gntdev_unmap_grant_ref)"
        ),
        row!(
            "unmap_grant_ref.index",
            offset_of!(IoctlGntdevUnmapGrantRef, index),
            "offsetof(struct ioctl_gntdev_unmap_grant_ref, index)"
        ),
        row!(
            "unmap_grant_ref.count",
            offset_of!(IoctlGntdevUnmapGrantRef, count),
            "offsetof(struct ioctl_gntdev_unmap_grant_ref, count)"
        ),
        row!(
            "gntdev_notify.size",
            size_of::<IoctlGntdevUnmapNotify>(),
            "sizeof(struct ioctl_gntdev_unmap_notify)"
        ),
        row!(
            "gntdev_notify.index",
            offset_of!(IoctlUnmapNotify, index),
            "offsetof(struct ioctl_gntdev_unmap_notify, index)"
        ),
        row!(
            "gntdev_notify.action",
            offset_of!(IoctlUnmapNotify, action),
            "offsetof(struct ioctl_gntdev_unmap_notify, action)"
        ),
        row!(
            "gntdev_notify.port",
            offset_of!(IoctlUnmapNotify, event_channel_port),
            "offsetof(struct ioctl_gntdev_unmap_notify, event_channel_port)"
        ),
        row!(
            "copy_segment.size",
            size_of::<Seg>(),
            "sizeof(struct gntdev_grant_copy_segment)"
        ),
        row!(
            "copy_segment.align",
            align_of::<Seg>(),
            "_Alignof(struct gntdev_grant_copy_segment)"
        ),
        row!(
            "copy_segment.union_size",
            size_of::<GntdevCopyPtr>(),
            "sizeof(((struct gntdev_grant_copy_segment *)0)->source)"
        ),
        row!(
            "copy_segment.source",
            offset_of!(Seg, source),
            "offsetof(struct gntdev_grant_copy_segment, source)"
        ),
        row!(
            "copy_segment.source.virt",
            offset_of!(Seg, source) + offset_of!(GntdevCopyPtr, virt),
            "offsetof(struct gntdev_grant_copy_segment, source.virt)"
        ),
        row!(
            "copy_segment.source.ref",
            offset_of!(Seg, source)
                + offset_of!(GntdevCopyPtr, foreign)
                + offset_of!(GntdevCopyForeign, gref),
            "offsetof(struct gntdev_grant_copy_segment, source.foreign.ref)"
        ),
        row!(
            "copy_segment.source.offset",
            offset_of!(Seg, source) + offset_of!(GntdevCopyForeign, offset),
            "offsetof(struct gntdev_grant_copy_segment, source.foreign.offset)"
        ),
        row!(
            "copy_segment.source.domid",
            offset_of!(Seg, source) + offset_of!(GntdevCopyForeign, domid),
            "offsetof(struct gntdev_grant_copy_segment, source.foreign.domid)"
        ),
        row!(
            "copy_segment.dest",
            offset_of!(Seg, dest),
            "offsetof(struct gntdev_grant_copy_segment, dest)"
        ),
        row!(
            "copy_segment.dest.ref",
            offset_of!(Seg, dest) + offset_of!(GntdevCopyForeign, gref),
            "offsetof(struct gntdev_grant_copy_segment, dest.foreign.ref)"
        ),
        row!(
            "copy_segment.dest.offset",
            offset_of!(Seg, dest) + offset_of!(GntdevCopyForeign, offset),
            "offsetof(struct gntdev_grant_copy_segment, dest.foreign.offset)"
        ),
        row!(
            "copy_segment.dest.domid",
            offset_of!(Seg, dest) + offset_of!(GntdevCopyForeign, domid),
            "offsetof(struct gntdev_grant_copy_segment, dest.foreign.domid)"
        ),
        row!(
            "copy_segment.len",
            offset_of!(Seg, len),
            "offsetof(struct gntdev_grant_copy_segment, len)"
        ),
        row!(
            "copy_segment.flags",
            offset_of!(Seg, flags),
            "offsetof(struct gntdev_grant_copy_segment, flags)"
        ),
        row!(
            "copy_segment.status",
            offset_of!(Seg, status),
            "offsetof(struct gntdev_grant_copy_segment, status)"
        ),
        row!(
            "grant_copy.size",
            size_of::<IoctlGntdevGrantCopy>(),
            "sizeof(struct ioctl_gntdev_grant_copy)"
        ),
        row!(
            "grant_copy.count",
            offset_of!(IoctlGntdevGrantCopy, count),
            "offsetof(struct ioctl_gntdev_grant_copy, count)"
        ),
        row!(
            "grant_copy.segments",
            offset_of!(IoctlGntdevGrantCopy, segments),
            "offsetof(struct ioctl_gntdev_grant_copy, segments)"
        ),
        row!(
            "IOCTL_GNTDEV_MAP_GRANT_REF",
            IOCTL_GNTDEV_MAP_GRANT_REF,
            "IOCTL_GNTDEV_MAP_GRANT_REF"
        ),
        row!(
            "IOCTL_GNTDEV_UNMAP_GRANT_REF",
            IOCTL_GNTDEV_UNMAP_GRANT_REF,
            "IOCTL_GNTDEV_UNMAP_GRANT_REF"
        ),
        row!(
            "IOCTL_GNTDEV_SET_UNMAP_NOTIFY",
            IOCTL_GNTDEV_SET_UNMAP_NOTIFY,
            "IOCTL_GNTDEV_SET_UNMAP_NOTIFY"
        ),
        row!(
            "IOCTL_GNTDEV_GRANT_COPY",
            IOCTL_GNTDEV_GRANT_COPY,
            "IOCTL_GNTDEV_GRANT_COPY"
        ),
        // evtchn
        row!(
            "bind_interdomain.size",
            size_of::<IoctlEvtchnBindInterdomain>(),
            "sizeof(struct ioctl_evtchn_bind_interdomain)"
        ),
        row!(
            "bind_interdomain.remote_domain",
            offset_of!(IoctlEvtchnBindInterdomain, remote_domain),
            "offsetof(struct ioctl_evtchn_bind_interdomain, remote_domain)"
        ),
        row!(
            "bind_interdomain.remote_port",
            offset_of!(IoctlEvtchnBindInterdomain, remote_port),
            "offsetof(struct ioctl_evtchn_bind_interdomain, remote_port)"
        ),
        row!(
            "bind_unbound_port.size",
            size_of::<IoctlEvtchnBindUnboundPort>(),
            "sizeof(struct ioctl_evtchn_bind_unbound_port)"
        ),
        row!(
            "unbind.size",
            size_of::<IoctlEvtchnUnbind>(),
            "sizeof(struct ioctl_evtchn_unbind)"
        ),
        row!(
            "notify.size",
            size_of::<IoctlEvtchnNotify>(),
            "sizeof(struct ioctl_evtchn_notify)"
        ),
        row!(
            "IOCTL_EVTCHN_BIND_INTERDOMAIN",
            IOCTL_EVTCHN_BIND_INTERDOMAIN,
            "IOCTL_EVTCHN_BIND_INTERDOMAIN"
        ),
        row!(
            "IOCTL_EVTCHN_BIND_UNBOUND_PORT",
            IOCTL_EVTCHN_BIND_UNBOUND_PORT,
            "IOCTL_EVTCHN_BIND_UNBOUND_PORT"
        ),
        row!(
            "IOCTL_EVTCHN_UNBIND",
            IOCTL_EVTCHN_UNBIND,
            "IOCTL_EVTCHN_UNBIND"
        ),
        row!(
            "IOCTL_EVTCHN_NOTIFY",
            IOCTL_EVTCHN_NOTIFY,
            "IOCTL_EVTCHN_NOTIFY"
        ),
        row!(
            "IOCTL_EVTCHN_RESET",
            IOCTL_EVTCHN_RESET,
            "IOCTL_EVTCHN_RESET"
        ),
    ]
}

/// The C program printing every row's C expression as `name value` lines.
fn c_program() -> String {
    // gntdev.h and evtchn.h use Xen's grant_ref_t and domid_t without defining
    // them (user space gets them from Xen's public headers); their definitions
    // there are uint32_t and uint16_t.
    let mut src = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <sys/ioctl.h>\n\
         typedef uint32_t grant_ref_t;\ntypedef uint16_t domid_t;\n\
         #include <xen/gntalloc.h>\n#include <xen/gntdev.h>\n#include <xen/evtchn.h>\n\
         int main(void) {\n",
    );
    for (name, _, c) in abi_table() {
        let _ = writeln!(
            src,
            "  printf(\"%s %llu\\n\", \"{name}\", (unsigned long long)({c}));"
        );
    }
    src.push_str("  return 0;\n}\n");
    src
}

#[test]
fn abi_matches_installed_c_headers() {
    let headers = ["gntalloc.h", "gntdev.h", "evtchn.h"];
    if let Some(h) = headers
        .iter()
        .find(|h| !std::path::Path::new("/usr/include/xen").join(h).exists())
    {
        println!("skipped: /usr/include/xen/{h} missing (apt-get install linux-libc-dev)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("xenlinux-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, exe) = (dir.join("abi.c"), dir.join("abi"));
    std::fs::write(&src, c_program()).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = match std::process::Command::new(&cc)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            println!("skipped: no C compiler `{cc}`: {e}");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    };
    assert!(
        built.status.success(),
        "C probe failed to compile:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out = std::process::Command::new(&exe).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let c: std::collections::HashMap<&str, u64> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, v)| (n, v.parse().unwrap()))
        .collect();
    let table = abi_table();
    assert_eq!(c.len(), table.len());
    let mut bad = Vec::new();
    for (name, rust, _) in &table {
        if c.get(name) != Some(rust) {
            let cv = c.get(name).map_or("absent".into(), |v| format!("{v:#x}"));
            bad.push(format!("{name}: rust {rust:#x}, C {cv}"));
        }
    }
    assert!(bad.is_empty(), "ABI mismatches:\n{}", bad.join("\n"));
    println!(
        "{} sizes, offsets and request numbers match the C headers",
        table.len()
    );
}

/// The x86_64 values, for machines without a C compiler. Recompute them with the
/// C program of `c_program()` (print it from a test, `cc abi.c && ./a.out`);
/// they were taken from its output with gcc against linux-libc-dev's headers.
#[cfg(target_arch = "x86_64")]
#[test]
fn abi_x86_64_literals() {
    let expect: &[(&str, u64)] = &[
        ("alloc_gref.size", 24),
        ("alloc_gref.gref_ids", 16),
        ("dealloc_gref.size", 16),
        ("gntalloc_notify.size", 16),
        ("map_grant_ref.size", 24),
        ("map_grant_ref.refs", 16),
        ("unmap_grant_ref.size", 16),
        ("copy_segment.size", 24),
        ("copy_segment.align", 8),
        ("copy_segment.dest", 8),
        ("copy_segment.len", 16),
        ("copy_segment.status", 20),
        ("grant_copy.size", 16),
        ("grant_copy.segments", 8),
        ("IOCTL_GNTALLOC_ALLOC_GREF", 0x184705),
        ("IOCTL_GNTALLOC_DEALLOC_GREF", 0x104706),
        ("IOCTL_GNTALLOC_SET_UNMAP_NOTIFY", 0x104707),
        ("IOCTL_GNTDEV_MAP_GRANT_REF", 0x184700),
        ("IOCTL_GNTDEV_UNMAP_GRANT_REF", 0x104701),
        ("IOCTL_GNTDEV_SET_UNMAP_NOTIFY", 0x104707),
        ("IOCTL_GNTDEV_GRANT_COPY", 0x104708),
        ("IOCTL_EVTCHN_BIND_INTERDOMAIN", 0x84501),
        ("IOCTL_EVTCHN_BIND_UNBOUND_PORT", 0x44502),
        ("IOCTL_EVTCHN_UNBIND", 0x44503),
        ("IOCTL_EVTCHN_NOTIFY", 0x44504),
        ("IOCTL_EVTCHN_RESET", 0x4505),
    ];
    let table: std::collections::HashMap<_, _> =
        abi_table().into_iter().map(|(n, v, _)| (n, v)).collect();
    for (name, v) in expect {
        assert_eq!(table[name], *v, "{name}");
    }
}

#[test]
fn gntcopy_flags_match_the_ring_crate() {
    assert_eq!(GNTCOPY_SOURCE_GREF, xennet_ring::grant::GNTCOPY_SOURCE_GREF);
    assert_eq!(GNTCOPY_DEST_GREF, xennet_ring::grant::GNTCOPY_DEST_GREF);
}

#[test]
fn copy_ptr_arms_marshal_to_c_bytes() {
    let f = GntdevCopyPtr::foreign(0x0102_0304, 0x0506, 0x0708).to_bytes();
    let mut want = Vec::new();
    want.extend_from_slice(&0x0102_0304u32.to_ne_bytes());
    want.extend_from_slice(&0x0506u16.to_ne_bytes());
    want.extend_from_slice(&0x0708u16.to_ne_bytes());
    assert_eq!(&f[..], &want[..]);
    let l = GntdevCopyPtr::local(0x1234_5000).to_bytes();
    assert_eq!(&l[..size_of::<usize>()], &0x1234_5000usize.to_ne_bytes());
    assert!(l[size_of::<usize>()..].iter().all(|&b| b == 0));
}

#[test]
fn ioc_encodes_like_the_generic_macro() {
    // _IOC(_IOC_NONE, 'E', 5, 0) and a sized request, by hand.
    assert_eq!(ioc(IOC_NONE, b'E', 5, 0), (b'E' as u32) << 8 | 5);
    assert_eq!(
        ioc(IOC_NONE, b'G', 8, 16),
        16 << 16 | (b'G' as u32) << 8 | 8
    );
    assert_eq!(ioc(2, b'G', 0, 0), 2 << 30 | (b'G' as u32) << 8);
}
