//! Temporary seam between the request path and health checking (replaced by `health`).
use crate::runtime::{ListenRt, ServerRt};

pub fn observe_connect(_listen: &ListenRt, _server: &ServerRt, _ok: bool) {}
