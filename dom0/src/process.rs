//! Child processes of the driver domain (its supervised xenstored) and of the CLI.

use std::process::Child;
use std::time::{Duration, Instant};

/// Ask `child` to stop (SIGTERM), wait up to `within` for it to exit, then kill it;
/// it is reaped either way.
pub fn terminate(child: &mut Child, within: Duration) {
    // The child is ours and not reaped yet, so its pid cannot name another process.
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(child),
        rustix::process::Signal::TERM,
    );
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
