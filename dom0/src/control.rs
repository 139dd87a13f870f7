//! The driver domain's control socket (`DIR/control.sock`): how the toolstack
//! commands (`xennet list`, `stats`, `brctl`, `destroy`, `network-attach`, `down`...)
//! and guests (`create`) talk to a running `xennet up`.
//!
//! One request per connection: the client writes a single line (the command and its
//! arguments separated by spaces) and reads the reply until the server closes. A reply
//! starts with `ok\n` or `error: <message>\n`; the rest is the command's output.
//! The handler learns who asks ([`Peer`], from `SO_PEERCRED`), so the driver domain
//! can tell its toolstack from a guest's process. docs/driver-domain.md lists the
//! requests.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest request line accepted.
const MAX_REQUEST: u64 = 4096;

/// The control socket's path inside an instance directory.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// What a handler returns for one request.
pub type Reply = Result<String, String>;

/// The process at the other end of a request, as the kernel reports it
/// (`SO_PEERCRED`; `None` where it could not be read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Its process id.
    pub pid: Option<u32>,
    /// Its user id.
    pub uid: Option<u32>,
}

/// Requests served at once, each on its own thread (one that waits for the driver
/// domain, a `destroy` waiting for its guest, does not hold up the others); past
/// this, the next is served on the accepting thread.
const MAX_IN_FLIGHT: usize = 16;

/// A running control server; stops (and removes its socket) on drop.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Listen on `path`, answering each request with `handler(peer, words)`.
    pub fn start<F>(path: &Path, handler: F) -> io::Result<ControlServer>
    where
        F: Fn(&Peer, &[&str]) -> Reply + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        // This user's and root's alone; which of them are guests the handler tells.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
                                let _ = serve_one(stream, &*handler);
                                in_flight.fetch_sub(1, Ordering::AcqRel);
                                continue;
                            }
                            let (handler, done) = (handler.clone(), in_flight.clone());
                            let spawned = std::thread::Builder::new()
                                .name("control-request".into())
                                .spawn(move || {
                                    let _ = serve_one(stream, &*handler);
                                    done.fetch_sub(1, Ordering::AcqRel);
                                });
                            if spawned.is_err() {
                                in_flight.fetch_sub(1, Ordering::AcqRel);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_one<F: Fn(&Peer, &[&str]) -> Reply>(stream: UnixStream, handler: &F) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let peer = match rustix::net::sockopt::socket_peercred(&stream) {
        Ok(c) => Peer {
            pid: u32::try_from(c.pid.as_raw_nonzero().get()).ok(),
            uid: Some(c.uid.as_raw()),
        },
        Err(_) => Peer::default(),
    };
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let reply = if words.is_empty() {
        Err("empty request".to_string())
    } else {
        handler(&peer, &words)
    };
    let mut out = &stream;
    match reply {
        Ok(text) => {
            out.write_all(b"ok\n")?;
            out.write_all(text.as_bytes())?;
        }
        Err(msg) => {
            out.write_all(format!("error: {msg}\n").as_bytes())?;
        }
    }
    out.flush()
}

/// Errors of a control request.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No driver domain is listening.
    #[error("no driver domain running at {0} ({1}); start one with `xennet up`")]
    NotRunning(PathBuf, io::Error),
    /// The socket failed mid-request.
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    /// The driver domain refused the request.
    #[error("{0}")]
    Refused(String),
}

/// Send one request and return the output of a successful reply.
pub fn request(dir: &Path, words: &[&str]) -> Result<String, ControlError> {
    let path = socket_path(dir);
    let mut stream =
        UnixStream::connect(&path).map_err(|e| ControlError::NotRunning(path.clone(), e))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(words.join(" ").as_bytes())?;
    stream.write_all(b"\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    if let Some(rest) = reply.strip_prefix("ok\n") {
        Ok(rest.to_string())
    } else if let Some(msg) = reply.strip_prefix("error: ") {
        Err(ControlError::Refused(msg.trim_end().to_string()))
    } else {
        Err(ControlError::Refused(format!(
            "malformed reply {:?}",
            reply.lines().next().unwrap_or("")
        )))
    }
}

/// One `key=value` field of a running driver domain's `info` reply
/// (`mode`, `uplink`, `guests`, `xenstored-pid`, `xenstored-restarts`).
pub fn info_field(dir: &Path, key: &str) -> Option<String> {
    let info = request(dir, &["info"]).ok()?;
    info.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_requests_reach_the_handler_and_errors_come_back() {
        let dir = std::env::temp_dir().join(format!("xennet-control-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = ControlServer::start(&socket_path(&dir), |peer, w| match w {
            ["whoami"] => Ok(format!("{:?}", peer.pid)),
            ["echo", rest @ ..] => Ok(rest.join(" ")),
            _ => Err(format!("unknown command {}", w[0])),
        })
        .unwrap();
        assert_eq!(request(&dir, &["echo", "a", "b"]).unwrap(), "a b");
        // The handler learns which process asks.
        assert_eq!(
            request(&dir, &["whoami"]).unwrap(),
            format!("{:?}", Some(std::process::id()))
        );
        match request(&dir, &["nope"]) {
            Err(ControlError::Refused(m)) => assert_eq!(m, "unknown command nope"),
            other => panic!("unexpected {other:?}"),
        }
        drop(server);
        assert!(matches!(
            request(&dir, &["echo"]),
            Err(ControlError::NotRunning(..))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
