//! The peers a user would otherwise pick to move frames between two processes, measured
//! in the same run as xennet: a Unix datagram socketpair driven with
//! `sendmmsg`/`recvmmsg`, and (as root) a veth pair across two network namespaces
//! with `AF_PACKET` sockets.

use std::io::{self, BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::sys;
use super::{Case, Sample, WorkerReport};

/// Fill `buf` with the pattern for datagram `seq`: the sequence number, then bytes
/// derived from it, so the receiver can check integrity cheaply.
pub fn fill_frame(buf: &mut [u8], seq: u64) {
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
    if buf.len() > 8 {
        let last = buf.len() - 1;
        buf[last] = seq as u8;
    }
}

/// Check a received datagram against [`fill_frame`]'s pattern; returns its sequence.
pub fn check_frame(buf: &[u8]) -> Option<u64> {
    if buf.len() < 8 {
        return None;
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&buf[..8]);
    let seq = u64::from_le_bytes(s);
    if buf.len() > 8 && buf[buf.len() - 1] != seq as u8 {
        return None;
    }
    Some(seq)
}

fn spawn_worker(args: &[String], inherit_fd: Option<i32>) -> io::Result<std::process::Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("bench-worker")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(fd) = inherit_fd {
        // SAFETY: runs in the child between fork and exec; dup2 is async-signal-safe and
        // only touches the child's descriptor table (the new fd 3 has no CLOEXEC flag).
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself would keep FD_CLOEXEC: clear the flag instead.
                let rc = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if rc < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

fn read_report(child: std::process::Child) -> io::Result<WorkerReport> {
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = BufReader::new(text.as_bytes())
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with('{'))
        .last()
        .ok_or_else(|| {
            io::Error::other(format!("worker printed no report (status {})", out.status))
        })?;
    serde_json::from_str(&line).map_err(|e| io::Error::other(format!("bad worker report: {e}")))
}

/// Measure a Unix datagram socketpair between two processes for one case.
pub fn socketpair(case: &Case) -> io::Result<Sample> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    let (a, b) = socketpair(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    for fd in [&a, &b] {
        // Room for a whole batch of the largest frames in flight.
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(fd, 4 << 20);
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(fd, 4 << 20);
    }
    let common = case.worker_args();
    let mut rx_args = vec!["socketpair-recv".to_string()];
    rx_args.extend(common.iter().cloned());
    let mut tx_args = vec!["socketpair-send".to_string()];
    tx_args.extend(common);
    let mut rx = spawn_worker(&rx_args, Some(b.as_raw_fd()))?;
    let tx = match spawn_worker(&tx_args, Some(a.as_raw_fd())) {
        Ok(tx) => tx,
        Err(e) => {
            let _ = rx.kill();
            let _ = rx.wait();
            return Err(e);
        }
    };
    drop(a);
    drop(b);
    // A failed sender leaves the receiver to its idle timeout; its report then shows
    // the missing frames as drops.
    let txr = read_report(tx);
    let rxr = read_report(rx)?;
    let txr = txr?;
    Ok(Sample::from_reports("socketpair", case, &txr, &rxr, 0))
}

/// Worker: send `case.packets` datagrams on fd 3 in batches.
pub fn socketpair_send(case: &Case) -> io::Result<WorkerReport> {
    sys::pin_to_cpu(0);
    // SAFETY: the parent placed a socket at fd 3 for us (spawn_worker's dup2) and nothing
    // else in this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    let mut frames: Vec<Vec<u8>> = (0..case.batch)
        .map(|_| vec![0u8; case.frame_bytes])
        .collect();
    let cpu0 = sys::cpu_time_ns();
    let t0 = Instant::now();
    let mut seq = 0u64;
    while seq < case.packets {
        let n = (case.packets - seq).min(case.batch as u64) as usize;
        for (i, f) in frames.iter_mut().take(n).enumerate() {
            fill_frame(f, seq + i as u64);
        }
        let refs: Vec<&[u8]> = frames.iter().take(n).map(|f| f.as_slice()).collect();
        let mut off = 0;
        while off < n {
            off += sys::sendmmsg(fd.as_fd(), &refs[off..n])?;
        }
        seq += n as u64;
    }
    Ok(WorkerReport {
        packets: seq,
        bad: 0,
        cpu_ns: sys::cpu_time_ns() - cpu0,
        wall_ns: t0.elapsed().as_nanos() as u64,
        notifications: 0,
        drops: 0,
        timed: 0,
    })
}

/// Worker: receive `case.packets` datagrams on fd 3 and check them.
pub fn socketpair_recv(case: &Case) -> io::Result<WorkerReport> {
    sys::pin_to_cpu(1);
    // SAFETY: as in `socketpair_send`: fd 3 is our socket, owned by nobody else here.
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    recv_loop(fd, case, Duration::from_secs(5))
}

/// Receive until `case.packets` frames arrived or none came for `idle_timeout`.
fn recv_loop(fd: OwnedFd, case: &Case, idle_timeout: Duration) -> io::Result<WorkerReport> {
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(idle_timeout),
    )?;
    let mut bufs: Vec<Vec<u8>> = (0..case.batch.max(1))
        .map(|_| vec![0u8; case.frame_bytes.max(64) + 64])
        .collect();
    let mut lens = vec![0usize; bufs.len()];
    let mut got = 0u64;
    let mut bad = 0u64;
    let mut cpu0 = 0;
    let mut t0 = None;
    let mut first = 0u64;
    let mut last = Instant::now();
    while got < case.packets {
        let n = match sys::recvmmsg(fd.as_fd(), &mut bufs, &mut lens) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e),
        };
        if t0.is_none() {
            // The clock starts with the first batch: its frames are not timed.
            t0 = Some(Instant::now());
            cpu0 = sys::cpu_time_ns();
            first = n as u64;
        }
        for (b, &len) in bufs.iter().zip(lens.iter()).take(n) {
            let frame = &b[..len];
            let payload = case.payload_of(frame);
            if payload.len() != case.frame_bytes - case.header_bytes()
                || check_frame(payload).is_none()
            {
                bad += 1;
            }
        }
        got += n as u64;
        last = Instant::now();
    }
    let wall = t0
        .map(|t| last.duration_since(t).as_nanos() as u64)
        .unwrap_or(0);
    Ok(WorkerReport {
        packets: got,
        bad,
        cpu_ns: if t0.is_some() {
            sys::cpu_time_ns() - cpu0
        } else {
            0
        },
        wall_ns: wall,
        notifications: 0,
        drops: case.packets.saturating_sub(got),
        timed: got - first,
    })
}

/// A veth pair across two namespaces of this run's own, removed on drop.
struct VethPair {
    ns_a: String,
    ns_b: String,
}

const VETH_ETHERTYPE: u16 = 0x88b5; // IEEE 802 local experimental ethertype

impl VethPair {
    fn create() -> io::Result<VethPair> {
        let id = std::process::id();
        let pair = VethPair {
            ns_a: format!("xnbench-a-{id}"),
            ns_b: format!("xnbench-b-{id}"),
        };
        let run = |args: &[&str]| -> io::Result<()> {
            let st = Command::new("ip")
                .args(args)
                .stderr(Stdio::null())
                .status()?;
            if st.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!("ip {} failed", args.join(" "))))
            }
        };
        run(&["netns", "add", &pair.ns_a])?;
        run(&["netns", "add", &pair.ns_b])?;
        run(&[
            "-n", &pair.ns_a, "link", "add", "xnbva", "type", "veth", "peer", "name", "xnbvb",
            "netns", &pair.ns_b,
        ])?;
        run(&[
            "-n", &pair.ns_a, "link", "set", "xnbva", "mtu", "9000", "up",
        ])?;
        run(&[
            "-n", &pair.ns_b, "link", "set", "xnbvb", "mtu", "9000", "up",
        ])?;
        Ok(pair)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Why the veth peer cannot run here, if it cannot.
pub fn veth_unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("veth peer skipped: needs root to create network namespaces".into());
    }
    if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return Some("veth peer skipped: the `ip` command (iproute2) is missing".into());
    }
    None
}

/// Measure AF_PACKET over a veth pair between two namespaces for one case.
pub fn veth(case: &Case) -> io::Result<Sample> {
    let pair = VethPair::create()?;
    let exe = std::env::current_exe()?;
    let spawn = |ns: &str, role: &str, ifname: &str| -> io::Result<std::process::Child> {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&exe)
            .args(["bench-worker", role, "--ifname", ifname])
            .args(case.worker_args())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
    };
    let rx = spawn(&pair.ns_b, "packet-recv", "xnbvb")?;
    // Give the receiver a moment to bind before the sender starts; losses before it
    // binds would be counted as drops, not hidden.
    std::thread::sleep(Duration::from_millis(200));
    let tx = spawn(&pair.ns_a, "packet-send", "xnbva")?;
    let txr = read_report(tx)?;
    let rxr = read_report(rx)?;
    let drops = txr.packets.saturating_sub(rxr.packets);
    drop(pair);
    Ok(Sample::from_reports("veth", case, &txr, &rxr, drops))
}

fn packet_socket(ifname: &str) -> io::Result<OwnedFd> {
    let proto = (VETH_ETHERTYPE).to_be() as i32;
    // SAFETY: plain socket(2) call; the returned fd (if >= 0) is owned by us alone.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly created descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain C data; zero is valid for every field we don't set.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = VETH_ETHERTYPE.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a fully initialised sockaddr_ll and we pass its exact size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, 8 << 20);
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(&fd, 8 << 20);
    Ok(fd)
}

/// Worker: send Ethernet frames on an AF_PACKET socket bound to `ifname`.
pub fn packet_send(case: &Case, ifname: &str) -> io::Result<WorkerReport> {
    sys::pin_to_cpu(0);
    let fd = packet_socket(ifname)?;
    let mut frames: Vec<Vec<u8>> = (0..case.batch)
        .map(|_| vec![0u8; case.frame_bytes])
        .collect();
    for f in &mut frames {
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&VETH_ETHERTYPE.to_be_bytes());
    }
    let cpu0 = sys::cpu_time_ns();
    let t0 = Instant::now();
    let mut seq = 0u64;
    while seq < case.packets {
        let n = (case.packets - seq).min(case.batch as u64) as usize;
        for (i, f) in frames.iter_mut().take(n).enumerate() {
            fill_frame(&mut f[14..], seq + i as u64);
        }
        let refs: Vec<&[u8]> = frames.iter().take(n).map(|f| f.as_slice()).collect();
        let mut off = 0;
        while off < n {
            match sys::sendmmsg(fd.as_fd(), &refs[off..n]) {
                Ok(k) => off += k,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => std::thread::yield_now(),
                Err(e) => return Err(e),
            }
        }
        seq += n as u64;
    }
    Ok(WorkerReport {
        packets: seq,
        bad: 0,
        cpu_ns: sys::cpu_time_ns() - cpu0,
        wall_ns: t0.elapsed().as_nanos() as u64,
        notifications: 0,
        drops: 0,
        timed: 0,
    })
}

/// Worker: receive frames on an AF_PACKET socket bound to `ifname` until all arrived or
/// the link stays idle for a second (the rest count as drops).
pub fn packet_recv(case: &Case, ifname: &str) -> io::Result<WorkerReport> {
    sys::pin_to_cpu(1);
    let fd = packet_socket(ifname)?;
    recv_loop(fd, case, Duration::from_secs(1))
}
