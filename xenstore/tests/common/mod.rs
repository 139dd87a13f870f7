//! Shared fixtures for the XenStore tests: a private socket directory, waiting
//! for watch events, errno of a reply, and raw xs_wire messages.
#![allow(dead_code)]

pub mod ring_relay;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use xennet_xenstore::{wire, Errno, WatchEvent, XsClient, XsError};

/// A private socket directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "xennet-xs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn errno<T: std::fmt::Debug>(r: Result<T, XsError>) -> Errno {
    r.unwrap_err().errno().expect("an errno reply")
}

pub fn next(c: &XsClient) -> WatchEvent {
    c.wait_watch(WAIT).unwrap().expect("a watch event")
}

pub fn no_event(c: &XsClient) {
    // A barrier: after a round trip, any event caused earlier is already queued.
    let _ = c.get_domain_path(0);
    assert_eq!(c.try_watch(), None);
}

/// An xs_wire message outside any transaction.
pub fn request(ty: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut msg = wire::Header {
        ty,
        req_id,
        tx_id: 0,
        len: payload.len() as u32,
    }
    .to_bytes()
    .to_vec();
    msg.extend_from_slice(payload);
    msg
}

/// Reads one message: (type, req_id, payload).
pub fn reply(stream: &mut UnixStream) -> (u32, u32, Vec<u8>) {
    let mut h = [0u8; wire::HEADER_LEN];
    stream.read_exact(&mut h).unwrap();
    let h = wire::Header::parse(&h).unwrap();
    let mut body = vec![0u8; h.len as usize];
    stream.read_exact(&mut body).unwrap();
    (h.ty, h.req_id, body)
}

/// Sends one request and reads one message back.
pub fn raw(stream: &mut UnixStream, ty: u32, req_id: u32, payload: &[u8]) -> (u32, u32, Vec<u8>) {
    stream.write_all(&request(ty, req_id, payload)).unwrap();
    reply(stream)
}
