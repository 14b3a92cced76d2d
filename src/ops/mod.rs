//! Daemon plumbing: systemd notification, signals, reload and graceful drain.

pub mod notify;
