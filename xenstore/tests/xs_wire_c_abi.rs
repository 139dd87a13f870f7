//! `xennet_ring::xenstore` against Xen's own `<xen/io/xs_wire.h>`: the ring page
//! layout (`struct xenstore_domain_interface`), its constants, the message types
//! and the order of `xsd_errors[]`, as a C program compiled against the header
//! prints them. Skips with a reason when the header (libxen-dev) or a C compiler
//! is missing.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use xennet_ring::xenstore::page::{self, Dir, XsWord, INTERFACE_SIZE, XENSTORE_RING_SIZE};
use xennet_ring::xenstore::wire::{self, Errno, MsgType};

/// What the C program prints, built and run once for all tests.
fn c_values() -> Option<&'static HashMap<String, String>> {
    static VALUES: OnceLock<Option<HashMap<String, String>>> = OnceLock::new();
    VALUES.get_or_init(build_and_run).as_ref()
}

fn build_and_run() -> Option<HashMap<String, String>> {
    if !Path::new("/usr/include/xen/io/xs_wire.h").exists() {
        println!("skipped: /usr/include/xen/io/xs_wire.h missing (install libxen-dev)");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("xennet-xsabi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("xs_wire_abi");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/xs_wire_abi.c");
    let built = Command::new("cc").arg("-o").arg(&exe).arg(&src).status();
    let out = match built {
        Ok(s) if s.success() => Command::new(&exe).output().unwrap(),
        Ok(s) => panic!("compiling against xs_wire.h failed: {s}"),
        Err(e) => {
            println!("skipped: no C compiler ({e})");
            return None;
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

#[test]
fn the_ring_page_layout_and_constants_are_xs_wire_h_s() {
    let Some(c) = c_values() else { return };
    let num = |k: &str| -> usize { c[k].parse().unwrap_or_else(|_| panic!("{k}")) };
    assert_eq!(num("offset_req"), Dir::Req.offset());
    assert_eq!(num("offset_rsp"), Dir::Rsp.offset());
    let names = [
        "req_cons",
        "req_prod",
        "rsp_cons",
        "rsp_prod",
        "server_features",
        "connection",
        "error",
    ];
    for (w, name) in XsWord::ALL.into_iter().zip(names) {
        assert_eq!(num(&format!("offset_{name}")), w.offset(), "{name}");
    }
    assert_eq!(num("sizeof_interface"), INTERFACE_SIZE);
    assert_eq!(num("sizeof_sockmsg"), wire::HEADER_LEN);
    assert_eq!(num("XENSTORE_RING_SIZE"), XENSTORE_RING_SIZE as usize);
    assert_eq!(
        num("MASK_XENSTORE_IDX(1025)"),
        page::mask_xenstore_idx(1025) as usize
    );
    assert_eq!(num("XENSTORE_PAYLOAD_MAX"), wire::PAYLOAD_MAX);
    assert_eq!(num("XENSTORE_ABS_PATH_MAX"), wire::ABS_PATH_MAX);
    assert_eq!(num("XENSTORE_REL_PATH_MAX"), wire::REL_PATH_MAX);
    let consts = [
        (
            "XENSTORE_SERVER_FEATURE_RECONNECTION",
            page::SERVER_FEATURE_RECONNECTION,
        ),
        ("XENSTORE_SERVER_FEATURE_ERROR", page::SERVER_FEATURE_ERROR),
        ("XENSTORE_CONNECTED", page::XENSTORE_CONNECTED),
        ("XENSTORE_RECONNECT", page::XENSTORE_RECONNECT),
        ("XENSTORE_ERROR_NONE", page::XENSTORE_ERROR_NONE),
        ("XENSTORE_ERROR_COMM", page::XENSTORE_ERROR_COMM),
        ("XENSTORE_ERROR_RINGIDX", page::XENSTORE_ERROR_RINGIDX),
        ("XENSTORE_ERROR_PROTO", page::XENSTORE_ERROR_PROTO),
    ];
    for (name, v) in consts {
        assert_eq!(num(name), v as usize, "{name}");
    }
}

#[test]
fn message_types_and_error_names_are_xs_wire_h_s() {
    let Some(c) = c_values() else { return };
    let num = |k: &str| -> u32 { c[k].parse().unwrap_or_else(|_| panic!("{k}")) };
    let types = [
        ("XS_DIRECTORY", MsgType::Directory),
        ("XS_READ", MsgType::Read),
        ("XS_WATCH", MsgType::Watch),
        ("XS_UNWATCH", MsgType::Unwatch),
        ("XS_TRANSACTION_START", MsgType::TransactionStart),
        ("XS_TRANSACTION_END", MsgType::TransactionEnd),
        ("XS_WRITE", MsgType::Write),
        ("XS_MKDIR", MsgType::Mkdir),
        ("XS_RM", MsgType::Rm),
        ("XS_WATCH_EVENT", MsgType::WatchEvent),
        ("XS_ERROR", MsgType::Error),
        ("XS_RESET_WATCHES", MsgType::ResetWatches),
        ("XS_DIRECTORY_PART", MsgType::DirectoryPart),
    ];
    for (name, ty) in types {
        assert_eq!(num(name), ty as u32, "{name}");
    }
    // Every type below XS_TYPE_COUNT but the removed XS_RESTRICT (20) is known.
    for v in 0..num("XS_TYPE_COUNT") {
        assert_eq!(MsgType::from_u32(v).is_some(), v != 20, "type {v}");
    }
    for (i, e) in Errno::ALL.into_iter().enumerate() {
        assert_eq!(c[&format!("error_{i}")], e.name(), "xsd_errors[{i}]");
    }
    assert!(!c.contains_key(&format!("error_{}", Errno::ALL.len())));
}
