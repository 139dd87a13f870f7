//! The plain-process platform: domain memory files, grant tables, event channels.
