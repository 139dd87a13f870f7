//! A guest domain: netfront plus an IP stack (smoltcp, or a Linux TAP device).

pub mod stack;
