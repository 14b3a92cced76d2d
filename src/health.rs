//! Health checks and the operator's server state changes.
//!
//! Owns: the probe tasks (one per checked server, following the *current* snapshot across
//! reloads), HAProxy's rise/fall arithmetic, the passive `observe layer4` signal, the
//! HAProxy-style transition log lines, and the admin operations (ready/drain/maint, weight,
//! enable/disable checks) shared by the stats API and the CLI.
//!
//! Must not: touch the request path beyond `observe_connect` (which is lock-free and does nothing on
//! success), or change server state other than through `ServerLive` methods (they bump the
//! listen version so the balancer rebuilds).
//!
//! HAProxy arithmetic (haproxy-semantics.md section 4): `health` runs 0..=rise+fall-1 and the
//! server is UP when `health >= rise`. A success adds one and jumps to the top on reaching `rise`;
//! a failure removes one and drops to 0 (DOWN) on falling below `rise`. Servers start UP at
//! `health = rise`, so a single failed first check takes them DOWN.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::runtime::{
    unix_ms, AdminState, CheckStatus, HealthRt, HttpCheckRt, ListenRt, Runtime, ServerLive,
    ServerRt, Snapshot,
};

/// How often the supervisor looks for a new snapshot generation. Reloads are rare and a new
/// server only needs its first check within one interval, so polling an atomic is enough.
const RESCAN: Duration = Duration::from_millis(250);
/// Largest HTTP check response head we read looking for the status line.
const MAX_STATUS_LINE: usize = 4096;

/// Stops every check task when dropped (or on `shutdown`).
#[derive(Debug)]
pub struct HealthHandle {
    supervisor: JoinHandle<()>,
}

impl HealthHandle {
    /// Stops all checks now. Server state stays as it was last published.
    pub fn shutdown(self) {}
}

impl Drop for HealthHandle {
    fn drop(&mut self) {
        // Aborting the supervisor drops its task table, whose guards abort every probe task.
        self.supervisor.abort();
    }
}

/// Aborts a probe task when dropped.
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts health checking for every server with `check` in the current snapshot, and keeps
/// following the snapshot: removed servers stop being probed, added ones start (with a jittered
/// first probe). Kept servers keep their `ServerLive`, so their state survives a reload.
pub fn spawn(rt: Arc<Runtime>) -> HealthHandle {
    HealthHandle {
        supervisor: tokio::spawn(supervise(rt)),
    }
}

fn live_key(live: &Arc<ServerLive>) -> usize {
    Arc::as_ptr(live) as usize
}

async fn supervise(rt: Arc<Runtime>) {
    let mut tasks: HashMap<usize, TaskGuard> = HashMap::new();
    let mut seen_generation = u64::MAX;
    loop {
        let snap = rt.load();
        if snap.generation != seen_generation {
            seen_generation = snap.generation;
            let mut wanted = HashMap::new();
            for l in &snap.listens {
                for s in l.servers.iter().filter(|s| s.check) {
                    wanted.insert(
                        live_key(&s.live),
                        (l.name.clone(), s.name.clone(), s.live.clone()),
                    );
                }
            }
            tasks.retain(|k, t| wanted.contains_key(k) && !t.0.is_finished());
            for (k, (listen, server, live)) in wanted {
                tasks.entry(k).or_insert_with(|| {
                    TaskGuard(tokio::spawn(probe_loop(rt.clone(), listen, server, live)))
                });
            }
        }
        drop(snap);
        tokio::time::sleep(RESCAN).await;
    }
}

/// The listen and server of `live` in the current snapshot, if it is still there and checked.
fn lookup(
    snap: &Snapshot,
    listen: &str,
    server: &str,
    live: &Arc<ServerLive>,
) -> Option<(Arc<ListenRt>, Arc<ServerRt>)> {
    let l = snap.listen_by_name(listen)?;
    let s = l.server_by_name(server)?;
    (Arc::ptr_eq(&s.live, live) && s.check).then(|| (l.clone(), s.clone()))
}

async fn probe_loop(rt: Arc<Runtime>, listen: Arc<str>, server: Arc<str>, live: Arc<ServerLive>) {
    // Spread first probes over the first interval so servers are not checked in lockstep.
    let first = match lookup(&rt.load(), &listen, &server, &live) {
        Some((l, _)) => jitter(l.health.inter),
        None => return,
    };
    tokio::time::sleep(first).await;
    loop {
        // Parameters are re-read every round so a reload that changes inter/rise/http applies
        // to kept servers without restarting their task.
        let Some((l, s)) = lookup(&rt.load(), &listen, &server, &live) else {
            return;
        };
        let h = l.health.clone();
        if !live.check_enabled() || live.admin() == AdminState::Maint {
            drop((l, s));
            tokio::time::sleep(h.inter).await;
            continue;
        }
        let started = Instant::now();
        // HAProxy's default for `send-proxy` servers: checks send the PROXY header too unless
        // they go to another port (`check-send-proxy`); a v2 `LOCAL` one, as HAProxy's checks.
        let send_proxy = s.send_proxy_v2 && s.check_addr == s.addr;
        let outcome = probe_with(s.check_addr, &h, send_proxy).await;
        let took = started.elapsed();
        // An operator may have put the server in MAINT or disabled checks during the probe.
        if live.check_enabled() && live.admin() != AdminState::Maint {
            apply_check(&l, &s, &outcome, took);
        }
        let next = next_interval(&h, live.health.load(Ordering::Acquire), live.is_up());
        drop((l, s));
        tokio::time::sleep(next).await;
    }
}

fn jitter(inter: Duration) -> Duration {
    use rand::Rng;
    let ms = inter.as_millis().max(1) as u64;
    Duration::from_millis(rand::thread_rng().gen_range(0..ms))
}

/// HAProxy's `srv_getinter`: `inter` when fully UP, `downinter` when fully DOWN, `fastinter` while
/// transitioning.
pub fn next_interval(h: &HealthRt, health: u32, up: bool) -> Duration {
    if health >= max_health(h) {
        h.inter
    } else if !up && health == 0 {
        h.downinter
    } else {
        h.fastinter
    }
}

fn max_health(h: &HealthRt) -> u32 {
    (h.rise + h.fall).saturating_sub(1).max(1)
}

/// Result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub status: CheckStatus,
    /// HTTP status of an HTTP check (0 otherwise).
    pub code: u16,
    /// HAProxy's `info` text ("Connection refused", the HTTP reason phrase...), may be empty.
    pub info: String,
}

impl Probe {
    fn new(status: CheckStatus, code: u16, info: impl Into<String>) -> Self {
        Self {
            status,
            code,
            info: info.into(),
        }
    }
}

/// One probe of `addr`: a TCP connect (HAProxy plain `check`), or an HTTP/1.1 request when
/// `h.http` is set, bounded as a whole by `h.timeout`.
pub async fn probe(addr: SocketAddr, h: &HealthRt) -> Probe {
    probe_with(addr, h, false).await
}

/// `probe`, opening the connection with a PROXY v2 `LOCAL` header when `send_proxy`.
pub async fn probe_with(addr: SocketAddr, h: &HealthRt, send_proxy: bool) -> Probe {
    let deadline = tokio::time::Instant::now() + h.timeout;
    let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Probe::new(CheckStatus::L4Tout, 0, ""),
        Ok(Err(e)) => return connect_error(&e),
        Ok(Ok(s)) => s,
    };
    if send_proxy {
        let header = crate::proxy::proxy_protocol::V2_LOCAL;
        match tokio::time::timeout_at(deadline, stream.write_all(&header)).await {
            Err(_) => return Probe::new(CheckStatus::L4Tout, 0, ""),
            Ok(Err(e)) => return connect_error(&e),
            Ok(Ok(())) => {}
        }
    }
    match &h.http {
        None => {
            // Abort with RST like HAProxy: no FIN/TIME_WAIT churn on either side.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            Probe::new(CheckStatus::L4Ok, 0, "")
        }
        Some(hc) => match tokio::time::timeout_at(deadline, http_probe(stream, hc, addr)).await {
            Ok(p) => p,
            Err(_) => Probe::new(CheckStatus::L7Tout, 0, ""),
        },
    }
}

fn connect_error(e: &std::io::Error) -> Probe {
    use std::io::ErrorKind::*;
    let status = match e.kind() {
        ConnectionRefused | ConnectionReset | ConnectionAborted | HostUnreachable
        | NetworkUnreachable | AddrNotAvailable => CheckStatus::L4Con,
        TimedOut => CheckStatus::L4Tout,
        _ => CheckStatus::SockErr,
    };
    Probe::new(status, 0, os_error_text(e))
}

/// "Connection refused (os error 111)" -> "Connection refused", as HAProxy prints strerror.
fn os_error_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

async fn http_probe(mut stream: TcpStream, hc: &HttpCheckRt, addr: SocketAddr) -> Probe {
    let host = hc.host.clone().unwrap_or_else(|| addr.to_string());
    let req = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: edgelb-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        hc.method, hc.path, host
    );
    if let Err(e) = stream.write_all(req.as_bytes()).await {
        return Probe::new(CheckStatus::SockErr, 0, os_error_text(&e));
    }
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let line_end = loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            break Some(i);
        }
        if buf.len() >= MAX_STATUS_LINE {
            break None;
        }
        match stream.read(&mut chunk).await {
            Ok(0) => {
                break buf
                    .iter()
                    .position(|&b| b == b'\n')
                    .or((!buf.is_empty()).then_some(buf.len()))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Probe::new(CheckStatus::SockErr, 0, os_error_text(&e)),
        }
    };
    let Some(end) = line_end else {
        return Probe::new(CheckStatus::L7Rsp, 0, "Empty or oversized response");
    };
    match parse_status_line(&buf[..end]) {
        Some((code, reason)) if (hc.expect.0..=hc.expect.1).contains(&code) => {
            Probe::new(CheckStatus::L7Ok, code, reason)
        }
        Some((code, reason)) => Probe::new(CheckStatus::L7Sts, code, reason),
        None => Probe::new(CheckStatus::L7Rsp, 0, "Invalid HTTP response"),
    }
}

/// `HTTP/1.x NNN reason` -> (NNN, reason).
fn parse_status_line(line: &[u8]) -> Option<(u16, String)> {
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let rest = line.strip_prefix("HTTP/1.")?;
    let mut parts = rest.splitn(3, ' ');
    let _minor = parts.next()?;
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    (100..=599)
        .contains(&code)
        .then(|| (code, parts.next().unwrap_or("").to_string()))
}

/// HAProxy's `reason:` text for a check status.
pub fn status_reason(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Unk => "Unknown",
        CheckStatus::Ini => "Initializing",
        CheckStatus::SockErr => "Socket error",
        CheckStatus::L4Ok => "Layer4 check passed",
        CheckStatus::L4Tout => "Layer4 timeout",
        CheckStatus::L4Con => "Layer4 connection problem",
        CheckStatus::L7Ok => "Layer7 check passed",
        CheckStatus::L7Tout => "Layer7 timeout",
        CheckStatus::L7Rsp => "Layer7 invalid response",
        CheckStatus::L7Sts => "Layer7 wrong status",
    }
}

/// Last check `info` per server (the HAProxy `last_chk` column). Kept here rather than in
/// `ServerLive` because it is a string: only check tasks write it and only stats scrapes read
/// it, never the request path. Keyed by the `ServerLive` address, with a `Weak` to tell a reused
/// address from the original.
type InfoTable = HashMap<usize, (Weak<ServerLive>, Arc<str>)>;
static CHECK_INFO: Mutex<Option<InfoTable>> = Mutex::new(None);

fn set_check_info(live: &Arc<ServerLive>, info: &str) {
    let Ok(mut g) = CHECK_INFO.lock() else { return };
    let table = g.get_or_insert_with(HashMap::new);
    let key = live_key(live);
    if !table.contains_key(&key) {
        table.retain(|_, (w, _)| w.strong_count() > 0);
    }
    table.insert(key, (Arc::downgrade(live), info.into()));
}

/// The `info` text of the last check of this server ("Connection refused", "Not Found"...).
pub fn check_info(live: &Arc<ServerLive>) -> Option<Arc<str>> {
    let g = CHECK_INFO.lock().ok()?;
    let (w, info) = g.as_ref()?.get(&live_key(live))?;
    (w.as_ptr() == Arc::as_ptr(live) && !info.is_empty()).then(|| info.clone())
}

/// Records a probe result on the server and applies the rise/fall arithmetic.
pub fn apply_check(listen: &ListenRt, server: &ServerRt, p: &Probe, took: Duration) {
    let live = &server.live;
    live.set_check_status(p.status);
    live.check_duration_ms.store(
        took.as_millis().min(u32::MAX as u128 - 1) as u32,
        Ordering::Relaxed,
    );
    live.check_code.store(p.code, Ordering::Relaxed);
    live.last_check_ms.store(unix_ms(), Ordering::Relaxed);
    set_check_info(live, &p.info);
    let why = Why {
        reason: status_reason(p.status),
        code: p.code,
        info: &p.info,
        duration_ms: Some(took.as_millis() as u64),
    };
    if p.status.is_ok() {
        step_success(listen, server, &why);
    } else {
        step_failure(listen, server, &why);
    }
}

/// What to print after `reason:` in a transition message.
struct Why<'a> {
    reason: &'a str,
    code: u16,
    info: &'a str,
    duration_ms: Option<u64>,
}

impl std::fmt::Display for Why<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reason: {}", self.reason)?;
        if self.code != 0 {
            write!(f, ", code: {}", self.code)?;
        }
        if !self.info.is_empty() {
            write!(f, ", info: \"{}\"", self.info)?;
        }
        if let Some(d) = self.duration_ms {
            write!(f, ", check duration: {d}ms")?;
        }
        Ok(())
    }
}

fn step_success(listen: &ListenRt, server: &ServerRt, why: &Why) {
    let h = &listen.health;
    let max = max_health(h);
    let live = &server.live;
    let res = live
        .health
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            (v < max).then(|| if v + 1 >= h.rise { max } else { v + 1 })
        });
    if let Ok(prev) = res {
        let now = if prev + 1 >= h.rise { max } else { prev + 1 };
        if now >= h.rise && live.set_up(true) {
            tracing::warn!(
                "Server {}/{} is UP, {why}. {} active and 0 backup servers online. 0 sessions requeued, 0 total in queue.",
                listen.name,
                server.name,
                listen.usable_servers()
            );
        }
    }
}

fn step_failure(listen: &ListenRt, server: &ServerRt, why: &Why) {
    let h = &listen.health;
    let live = &server.live;
    let res = live
        .health
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            (v > 0).then(|| if v - 1 < h.rise { 0 } else { v - 1 })
        });
    // Like HAProxy, a failure only counts (chkfail) while the server still had health to lose.
    if let Ok(prev) = res {
        live.chkfail.fetch_add(1, Ordering::Relaxed);
        if prev - 1 < h.rise && live.set_up(false) {
            log_down(listen, server, &why.to_string());
        }
    }
}

fn log_down(listen: &ListenRt, server: &ServerRt, why: &str) {
    let left = listen.usable_servers();
    tracing::warn!(
        "Server {}/{} is DOWN, {why}. {left} active and 0 backup servers left. {} sessions active, 0 requeued, 0 remaining in queue.",
        listen.name,
        server.name,
        server.live.counters.scur.load(Ordering::Relaxed)
    );
    if left == 0 {
        tracing::error!("proxy '{}' has no server available!", listen.name);
    }
}

/// Passive health (`observe_layer4`): the proxy calls this after each upstream connect attempt.
///
/// Choice: like HAProxy's `observe layer4`, only errors count. Each failed connect is one failed
/// check step (same arithmetic, so `fall` failures from the top take the server DOWN); a success
/// changes nothing, because a server that accepts traffic connects but fails its checks must still
/// be taken out by the checks, and bringing a server back stays the job of `rise` real checks.
/// HAProxy waits for `error-limit` (10) consecutive errors before one simulated failure; we count
/// each one, which reacts faster and is what `fall` suggests to an operator. Lock-free, and a no-op
/// unless `observe_layer4` is set and the server is checked, enabled and not in MAINT.
pub fn observe_connect(listen: &ListenRt, server: &ServerRt, ok: bool) {
    if ok
        || !listen.health.observe_layer4
        || !server.check
        || !server.live.check_enabled()
        || server.live.admin() == AdminState::Maint
    {
        return;
    }
    let why = Why {
        reason: "Health analyze",
        code: 0,
        info: "Detected a failed connection (observe layer4)",
        duration_ms: None,
    };
    step_failure(listen, server, &why);
}

/// Why an admin operation was refused. The messages are HAProxy's runtime API strings where one
/// exists.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    #[error("No such backend.")]
    NoSuchListen,
    #[error("No such server.")]
    NoSuchServer,
    #[error("{0}")]
    BadInput(String),
}

/// Finds a server by listen and server name (or `#<id>` like HAProxy) in the current snapshot.
pub fn find_server(
    snap: &Snapshot,
    listen: &str,
    server: &str,
) -> Result<(Arc<ListenRt>, Arc<ServerRt>), AdminError> {
    let l = match listen.strip_prefix('#') {
        Some(id) => id
            .parse::<usize>()
            .ok()
            .and_then(|id| snap.listens.iter().find(|l| l.id == id)),
        None => snap.listen_by_name(listen),
    }
    .ok_or(AdminError::NoSuchListen)?;
    let s = match server.strip_prefix('#') {
        Some(id) => id
            .parse::<usize>()
            .ok()
            .and_then(|id| l.servers.iter().find(|s| s.index + 1 == id)),
        None => l.server_by_name(server),
    }
    .ok_or(AdminError::NoSuchServer)?;
    Ok((l.clone(), s.clone()))
}

/// `ready` / `drain` / `maint`.
pub fn parse_state(s: &str) -> Result<AdminState, AdminError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "ready" => Ok(AdminState::Ready),
        "drain" => Ok(AdminState::Drain),
        "maint" => Ok(AdminState::Maint),
        _ => Err(AdminError::BadInput(
            "'set server <srv> state' expects 'ready', 'drain' and 'maint'.".into(),
        )),
    }
}

/// `N` (0..=256) or `N%` of the configured weight (`100%` restores it), as `set weight`. Like
/// HAProxy (server.c), a percentage above 25600 counts as 25600 and the result is capped at 256,
/// so no spelling of `N%` can overflow.
pub fn parse_weight(spec: &str, initial: u32) -> Result<u32, AdminError> {
    let spec = spec.trim();
    if let Some(p) = spec.strip_suffix('%') {
        let p = p.trim();
        let p = p.strip_prefix('+').unwrap_or(p);
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AdminError::BadInput(
                "Relative weight must be positive.".into(),
            ));
        }
        // All digits: only an overflow can fail, and that is above the cap anyway.
        let pct = p.parse::<u64>().unwrap_or(u64::MAX).min(25_600);
        return Ok(((initial.min(256) as u64 * pct) / 100).min(256) as u32);
    }
    match spec.parse::<u32>() {
        Ok(w) if w <= 256 => Ok(w),
        _ => Err(AdminError::BadInput(
            "Absolute weight can only be between 0 and 256 inclusive.".into(),
        )),
    }
}

/// The weight the configuration gives this server (`initial` in `get weight`).
pub fn initial_weight(snap: &Snapshot, listen: &ListenRt, server: &ServerRt) -> u32 {
    snap.config
        .listen
        .get(listen.id.wrapping_sub(1))
        .filter(|l| *l.name == *listen.name)
        .and_then(|l| l.server.get(server.index))
        .filter(|s| *s.name == *server.name)
        .map(|s| s.weight)
        .unwrap_or_else(|| server.live.weight())
}

/// Puts a server in `ready`, `drain` or `maint` (HAProxy `set server BE/SRV state`). Leaving
/// MAINT brings the server UP at once with `health = rise` ("UP 1/3"): one failed check takes it
/// down again. Entering MAINT stops its checks. Returns the previous state.
pub fn apply_state(listen: &ListenRt, server: &ServerRt, state: AdminState) -> AdminState {
    let live = &server.live;
    let prev = live.admin();
    if prev == state {
        return prev;
    }
    if prev == AdminState::Maint {
        if server.check && live.check_enabled() {
            live.health.store(listen.health.rise, Ordering::Release);
            live.set_check_status(CheckStatus::Ini);
        }
        live.set_up(true);
    }
    live.set_admin(state);
    let (l, s) = (&listen.name, &server.name);
    match (prev, state) {
        (_, AdminState::Maint) => tracing::warn!(
            "Server {l}/{s} is going DOWN for maintenance. {} active and 0 backup servers left. {} sessions active, 0 requeued, 0 remaining in queue.",
            listen.usable_servers(),
            live.counters.scur.load(Ordering::Relaxed)
        ),
        (AdminState::Maint, AdminState::Ready) => {
            tracing::warn!("Server {l}/{s} is UP/READY (leaving forced maintenance).")
        }
        (AdminState::Drain, AdminState::Ready) => {
            tracing::warn!("Server {l}/{s} is UP/READY (leaving forced drain).")
        }
        (_, AdminState::Drain) => tracing::warn!(
            "Server {l}/{s} enters drain state. {} active and 0 backup servers left. {} sessions active, 0 requeued, 0 remaining in queue.",
            listen.active_servers(),
            live.counters.scur.load(Ordering::Relaxed)
        ),
        _ => {}
    }
    if state == AdminState::Maint && listen.usable_servers() == 0 {
        tracing::error!("proxy '{l}' has no server available!");
    }
    prev
}

/// Enables or disables the health checks of a server (HAProxy `enable|disable health`). With
/// checks disabled the last result is ignored and the server counts as UP ("no check");
/// re-enabling starts from `health = rise`, like a server leaving maintenance.
pub fn apply_check_enabled(
    listen: &ListenRt,
    server: &ServerRt,
    on: bool,
) -> Result<(), AdminError> {
    if !server.check {
        return Err(AdminError::BadInput(
            "Health checks are not configured on this server, cannot enable.".into(),
        ));
    }
    let live = &server.live;
    if live.check_enabled() == on {
        return Ok(());
    }
    if on {
        live.health.store(listen.health.rise, Ordering::Release);
        live.set_check_status(CheckStatus::Ini);
        live.set_check_enabled(true);
    } else {
        live.set_check_enabled(false);
        live.set_up(true);
    }
    Ok(())
}

/// `set server LISTEN/SERVER state ready|drain|maint` against the current snapshot.
pub fn set_state(
    rt: &Runtime,
    listen: &str,
    server: &str,
    state: &str,
) -> Result<AdminState, AdminError> {
    let snap = rt.load();
    let (l, s) = find_server(&snap, listen, server)?;
    let st = parse_state(state)?;
    apply_state(&l, &s, st);
    Ok(st)
}

/// `set server LISTEN/SERVER weight N|N%`; returns the new weight.
pub fn set_weight(rt: &Runtime, listen: &str, server: &str, spec: &str) -> Result<u32, AdminError> {
    let snap = rt.load();
    let (l, s) = find_server(&snap, listen, server)?;
    let w = parse_weight(spec, initial_weight(&snap, &l, &s))?;
    s.live.set_weight(w);
    Ok(w)
}

/// `enable|disable health LISTEN/SERVER`; `action` is `enable` or `disable`.
pub fn set_check(
    rt: &Runtime,
    listen: &str,
    server: &str,
    action: &str,
) -> Result<bool, AdminError> {
    let snap = rt.load();
    let (l, s) = find_server(&snap, listen, server)?;
    let on = match action.trim().to_ascii_lowercase().as_str() {
        "enable" | "on" => true,
        "disable" | "off" => false,
        _ => {
            return Err(AdminError::BadInput(
                "check expects 'enable' or 'disable'.".into(),
            ))
        }
    };
    apply_check_enabled(&l, &s, on)?;
    Ok(on)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_parsing() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200 OK"),
            Some((200, "OK".into()))
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable"),
            Some((503, "Service Unavailable".into()))
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 204"),
            Some((204, String::new()))
        );
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 x"), None);
    }

    #[test]
    fn weight_specs() {
        assert_eq!(parse_weight("0", 3), Ok(0));
        assert_eq!(parse_weight("256", 3), Ok(256));
        assert!(parse_weight("257", 3).is_err());
        assert!(parse_weight("-1", 3).is_err());
        assert!(parse_weight("x", 3).is_err());
        assert_eq!(parse_weight("100%", 3), Ok(3));
        assert_eq!(parse_weight("50%", 4), Ok(2));
        assert_eq!(parse_weight("10000%", 3), Ok(256));
        // HAProxy caps the percentage at 25600: nothing overflows, whatever the digits.
        assert_eq!(parse_weight("18446744073709551615%", 256), Ok(256));
        assert_eq!(parse_weight("99999999999999999999999999%", 3), Ok(256));
        assert_eq!(parse_weight("25600%", 1), Ok(256));
        assert_eq!(parse_weight("0%", 3), Ok(0));
        assert!(parse_weight("-5%", 3).is_err());
        assert!(parse_weight("%", 3).is_err());
    }

    #[test]
    fn state_words() {
        assert_eq!(parse_state("DRAIN"), Ok(AdminState::Drain));
        assert!(parse_state("up").is_err());
    }
}
