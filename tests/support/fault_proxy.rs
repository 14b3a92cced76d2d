//! A loopback HTTP proxy in front of moto that injects the failures moto never produces:
//! throttling (HTTP 503 `RequestLimitExceeded`, EC2's XML error shape), HTTP 500, stalls and
//! dropped connections, and counts every request by its EC2 `Action`.
//!
//! It listens on a real TCP port, so a child edgelb process can be pointed at it with
//! `AWS_ENDPOINT_URL_EC2=<proxy.endpoint()>`; the test steers it through the in-process handle.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::{respond, HttpResponse, LoopbackServer};

/// What to do to a request instead of (or before) forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 503 `RequestLimitExceeded`, as EC2 answers when the account's bucket is empty.
    Throttle,
    /// HTTP 500 `InternalError`.
    Error500,
    /// Hold the request this long, then forward it. A client that gave up meanwhile may or may
    /// not have its request reach moto, like a slow EC2 that still executes the call.
    Stall(Duration),
    /// Close the connection without answering.
    Disconnect,
    /// Any EC2 error answer, e.g. `Ec2Error(403, "UnauthorizedOperation")`.
    Ec2Error(u16, &'static str),
}

/// Per-Action request counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionCount {
    /// Every request the proxy received.
    pub received: u64,
    /// Answered by moto (stalled requests count here too once forwarded).
    pub forwarded: u64,
    /// Answered by an injected error or dropped.
    pub faulted: u64,
}

#[derive(Default)]
struct State {
    /// Applied to every request not taken by a one-shot fault; `None` = pass through.
    always: Option<Fault>,
    /// One-shot faults, oldest first; `Some(action)` only matches that Action.
    next: VecDeque<(Option<String>, Fault)>,
    counts: BTreeMap<String, ActionCount>,
}

/// The proxy and its control handle. Stops on drop.
pub struct FaultProxy {
    server: LoopbackServer,
    state: Arc<Mutex<State>>,
    upstream: String,
}

impl FaultProxy {
    /// Starts forwarding to `upstream` (`http://127.0.0.1:<port>`, e.g. `moto.endpoint()`).
    pub fn start(upstream: &str) -> FaultProxy {
        let state = Arc::new(Mutex::new(State::default()));
        let authority = upstream
            .strip_prefix("http://")
            .expect("upstream must be http://host:port")
            .trim_end_matches('/')
            .to_string();
        let st = state.clone();
        let server = LoopbackServer::start("fault-proxy", move |req| {
            let st = st.clone();
            let authority = authority.clone();
            async move { handle(st, &authority, req).await }
        });
        FaultProxy {
            server,
            state,
            upstream: upstream.to_string(),
        }
    }

    /// `http://127.0.0.1:<port>`: give this to the client as its EC2 endpoint.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Forward everything; clears pending one-shot faults too.
    pub fn pass(&self) {
        let mut s = self.lock();
        s.always = None;
        s.next.clear();
    }

    /// Answer every call with HTTP 503 `RequestLimitExceeded` until `pass()`.
    pub fn throttle(&self) {
        self.lock().always = Some(Fault::Throttle);
    }

    /// Answer every call with HTTP 500 `InternalError` until `pass()`.
    pub fn error500(&self) {
        self.lock().always = Some(Fault::Error500);
    }

    /// Hold every call for `d` before forwarding, until `pass()`.
    pub fn stall(&self, d: Duration) {
        self.lock().always = Some(Fault::Stall(d));
    }

    /// Drop every connection unanswered until `pass()`.
    pub fn disconnect(&self) {
        self.lock().always = Some(Fault::Disconnect);
    }

    /// The next `n` requests (any Action) get `fault`; later ones follow the standing mode.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut s = self.lock();
        s.next.extend(std::iter::repeat_n((None, fault), n));
    }

    /// Like `fail_next`, only for requests with this EC2 Action (e.g. "AssociateAddress").
    pub fn fail_next_action(&self, action: &str, n: usize, fault: Fault) {
        let mut s = self.lock();
        s.next
            .extend(std::iter::repeat_n((Some(action.to_string()), fault), n));
    }

    /// Requests received with this Action (whatever happened to them).
    pub fn calls(&self, action: &str) -> u64 {
        self.lock()
            .counts
            .get(action)
            .map(|c| c.received)
            .unwrap_or(0)
    }

    pub fn count(&self, action: &str) -> ActionCount {
        self.lock().counts.get(action).copied().unwrap_or_default()
    }

    /// All counts by Action (requests without an Action are under `"?"`).
    pub fn counts(&self) -> BTreeMap<String, ActionCount> {
        self.lock().counts.clone()
    }

    pub fn total_calls(&self) -> u64 {
        self.lock().counts.values().map(|c| c.received).sum()
    }

    pub fn reset_counts(&self) {
        self.lock().counts.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fault proxy state")
    }
}

/// The EC2 `Action` of a query-protocol request (form body, or query string for GETs).
pub fn action_of(uri: &http::Uri, body: &[u8]) -> Option<String> {
    let from_pairs = |s: &str| {
        s.split('&')
            .find_map(|p| p.strip_prefix("Action="))
            .map(str::to_string)
    };
    std::str::from_utf8(body)
        .ok()
        .and_then(from_pairs)
        .or_else(|| uri.query().and_then(from_pairs))
}

fn ec2_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let request_id: u64 = rand::random();
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors><RequestID>{request_id:016x}</RequestID></Response>"
    );
    respond(status, "text/xml;charset=UTF-8", xml)
}

async fn handle(
    state: Arc<Mutex<State>>,
    upstream: &str,
    req: http::Request<Bytes>,
) -> Option<HttpResponse> {
    let action = action_of(req.uri(), req.body()).unwrap_or_else(|| "?".to_string());
    let fault = {
        let mut s = state.lock().expect("fault proxy state");
        s.counts.entry(action.clone()).or_default().received += 1;
        let idx = s
            .next
            .iter()
            .position(|(a, _)| a.as_deref().is_none_or(|a| a == action));
        match idx.and_then(|i| s.next.remove(i)) {
            Some((_, f)) => Some(f),
            None => s.always,
        }
    };
    let bump = |forwarded: bool| {
        let mut s = state.lock().expect("fault proxy state");
        let c = s.counts.entry(action.clone()).or_default();
        if forwarded {
            c.forwarded += 1;
        } else {
            c.faulted += 1;
        }
    };
    match fault {
        Some(Fault::Throttle) => {
            bump(false);
            return Some(ec2_error(
                503,
                "RequestLimitExceeded",
                "Request limit exceeded.",
            ));
        }
        Some(Fault::Error500) => {
            bump(false);
            return Some(ec2_error(
                500,
                "InternalError",
                "An internal error has occurred.",
            ));
        }
        Some(Fault::Ec2Error(status, code)) => {
            bump(false);
            return Some(ec2_error(status, code, "Injected by the fault proxy."));
        }
        Some(Fault::Disconnect) => {
            bump(false);
            return None;
        }
        Some(Fault::Stall(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let resp = match forward(upstream, req).await {
        Ok(r) => r,
        Err(e) => ec2_error(502, "ProxyUpstreamError", &format!("fault proxy: {e}")),
    };
    bump(true);
    Some(resp)
}

async fn forward(
    authority: &str,
    req: http::Request<Bytes>,
) -> Result<HttpResponse, Box<dyn std::error::Error + Send + Sync>> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let (parts, body) = req.into_parts();
    let mut out = http::Request::builder().method(parts.method).uri(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    for (k, v) in &parts.headers {
        if k != http::header::CONNECTION && k != http::header::TRANSFER_ENCODING {
            out = out.header(k, v);
        }
    }
    let resp = sender
        .send_request(out.body(http_body_util::Full::new(body))?)
        .await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut back = http::Response::builder().status(parts.status);
    for (k, v) in &parts.headers {
        if k != http::header::CONNECTION
            && k != http::header::TRANSFER_ENCODING
            && k != http::header::CONTENT_LENGTH
        {
            back = back.header(k, v);
        }
    }
    Ok(back.body(body)?)
}
