//! Child processes of the driver domain (its supervised xenstored) and of the CLI.

use std::process::Child;
use std::time::{Duration, Instant};

/// Ask `child` to stop (SIGTERM), wait up to `within` for it to exit, then kill it;
/// it is reaped either way.
pub fn terminate(child: &mut Child, within: Duration) {
    // SAFETY: kill(2) on a child we spawned and have not reaped (its pid is ours).
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    wait_exit(child, within);
}

/// Wait up to `within` for `child` to exit, then kill it; it is reaped either way.
pub fn wait_exit(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
