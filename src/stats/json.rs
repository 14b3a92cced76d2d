//! `/stats.json`: the same data as the CSV, shaped for the dashboard and for scripts: the node
//! (name, version, uptime, readiness), the loaded config (generation, load time, last reload
//! outcome), each listen with its frontend, backend and servers, and the cluster view.
//!
//! Field names are part of the API (the dashboard and operators' scripts read them): add fields,
//! do not rename them.

use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::health;
use crate::runtime::{unix_ms, Counters, ListenRt, ReloadStatus, ServerRt, Snapshot};

use super::csv::{age_s, avg_times};
use super::{backend_active, readiness, server_status, Kind, Rate, StatsState};

#[derive(Debug, Serialize)]
pub struct StatsDoc {
    pub node: String,
    pub version: &'static str,
    pub pid: u32,
    pub now_unix_ms: u64,
    pub uptime_s: u64,
    pub started_unix_ms: u64,
    pub ready: bool,
    pub ready_reason: Option<String>,
    pub stopping: bool,
    /// How often the dashboard should poll, from `[stats] refresh`.
    pub refresh_ms: u64,
    pub config: ConfigDoc,
    pub process: ProcessDoc,
    pub listens: Vec<ListenDoc>,
    /// The cluster's own status document (peers, EIPs), when the cluster runs.
    pub cluster: Option<serde_json::Value>,
    /// The ACME task's status (certificate, next renewal, last error) and the HTTP-01 token
    /// table, when `[acme]` is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct ConfigDoc {
    pub generation: u64,
    pub source: String,
    pub loaded_unix_ms: u64,
    pub last_reload: ReloadStatus,
}

#[derive(Debug, Serialize)]
pub struct ProcessDoc {
    pub connections_current: u64,
    pub connections_total: u64,
    pub requests_total: u64,
    /// Connection tasks that panicked (each was closed; nothing else was affected).
    pub connection_panics: u64,
    /// Access-log lines queued, dropped because the log target could not keep up (the queue
    /// held `log.queue_bytes`), and cut at `log.max_line_len`.
    pub log_lines_written: u64,
    pub log_lines_dropped: u64,
    pub log_lines_truncated: u64,
}

#[derive(Debug, Serialize)]
pub struct ListenDoc {
    pub name: String,
    pub id: usize,
    pub mode: &'static str,
    pub algo: &'static str,
    pub binds: Vec<String>,
    pub cookie: Option<String>,
    pub frontend: FrontendDoc,
    pub backend: BackendDoc,
    pub servers: Vec<ServerDoc>,
}

#[derive(Debug, Serialize)]
pub struct FrontendDoc {
    pub status: &'static str,
    pub maxconn: u32,
    #[serde(flatten)]
    pub traffic: TrafficDoc,
    pub denied: u64,
    pub request_errors: u64,
}

#[derive(Debug, Serialize)]
pub struct BackendDoc {
    /// `UP` while at least one server takes round-robin traffic.
    pub status: &'static str,
    pub active_servers: usize,
    pub usable_servers: usize,
    pub weight: u64,
    #[serde(flatten)]
    pub traffic: TrafficDoc,
}

/// Counters common to every row.
#[derive(Debug, Serialize)]
pub struct TrafficDoc {
    pub sessions_current: u64,
    pub sessions_max: u64,
    pub sessions_total: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub requests_total: u64,
    pub rate: u64,
    pub rate_max: u64,
    pub req_rate: u64,
    pub req_rate_max: u64,
    pub hrsp: Hrsp,
    pub connection_errors: u64,
    pub response_errors: u64,
    pub retries: u64,
    pub redispatches: u64,
    pub client_aborts: u64,
    pub server_aborts: u64,
    pub lb_picks: u64,
    pub last_session_unix_ms: Option<u64>,
    pub avg_connect_ms: u64,
    pub avg_response_ms: u64,
    pub avg_total_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct Hrsp {
    #[serde(rename = "1xx")]
    pub r1xx: u64,
    #[serde(rename = "2xx")]
    pub r2xx: u64,
    #[serde(rename = "3xx")]
    pub r3xx: u64,
    #[serde(rename = "4xx")]
    pub r4xx: u64,
    #[serde(rename = "5xx")]
    pub r5xx: u64,
    pub other: u64,
}

#[derive(Debug, Serialize)]
pub struct ServerDoc {
    pub name: String,
    pub sid: usize,
    pub addr: String,
    pub cookie: String,
    /// HAProxy's status word: `UP`, `DOWN`, `MAINT`, `DRAIN`, `UP 1/3`, `DOWN 1/2`, `no check`.
    pub status: String,
    /// Operator state: `ready`, `drain`, `maint`.
    pub admin_state: &'static str,
    /// Operational state from the checks.
    pub up: bool,
    pub eligible_rr: bool,
    pub eligible_cookie: bool,
    pub weight: u32,
    pub initial_weight: u32,
    pub check: CheckDoc,
    pub last_change_unix_ms: u64,
    pub last_change_age_s: i64,
    pub downtime_s: u64,
    #[serde(flatten)]
    pub traffic: TrafficDoc,
}

#[derive(Debug, Serialize)]
pub struct CheckDoc {
    /// Configured (`check = true`) and not disabled by an operator.
    pub enabled: bool,
    pub configured: bool,
    pub status: &'static str,
    pub reason: &'static str,
    pub info: Option<String>,
    pub code: Option<u16>,
    pub duration_ms: Option<u32>,
    pub last_unix_ms: Option<u64>,
    pub age_s: Option<i64>,
    pub health: u32,
    pub rise: u32,
    pub fall: u32,
    pub failures: u64,
    pub down_transitions: u64,
    pub target: String,
    pub kind: &'static str,
}

fn get(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn traffic(c: &Counters, rate: Rate) -> TrafficDoc {
    let (ct, rt, tt) = avg_times(c);
    let last = get(&c.last_sess_ms);
    TrafficDoc {
        sessions_current: get(&c.scur),
        sessions_max: get(&c.smax),
        sessions_total: get(&c.stot),
        bytes_in: get(&c.bin),
        bytes_out: get(&c.bout),
        requests_total: get(&c.req_tot),
        rate: rate.rate,
        rate_max: rate.rate_max,
        req_rate: rate.req_rate,
        req_rate_max: rate.req_rate_max,
        hrsp: Hrsp {
            r1xx: get(&c.hrsp[0]),
            r2xx: get(&c.hrsp[1]),
            r3xx: get(&c.hrsp[2]),
            r4xx: get(&c.hrsp[3]),
            r5xx: get(&c.hrsp[4]),
            other: get(&c.hrsp[5]),
        },
        connection_errors: get(&c.econ),
        response_errors: get(&c.eresp),
        retries: get(&c.wretr),
        redispatches: get(&c.wredis),
        client_aborts: get(&c.cli_abrt),
        server_aborts: get(&c.srv_abrt),
        lb_picks: get(&c.lbtot),
        last_session_unix_ms: (last != 0).then_some(last),
        avg_connect_ms: ct,
        avg_response_ms: rt,
        avg_total_ms: tt,
    }
}

/// The JSON view of one server (also the body of admin answers).
pub fn server_doc(
    st: &StatsState,
    snap: &Snapshot,
    l: &ListenRt,
    s: &ServerRt,
    now: u64,
) -> ServerDoc {
    let live = &s.live;
    let cs = live.check_status();
    let last_chk = get(&live.last_check_ms);
    let dur = live.check_duration_ms.load(Ordering::Relaxed);
    let code = live.check_code.load(Ordering::Relaxed);
    let last_change = get(&live.last_change_ms);
    ServerDoc {
        name: s.name.to_string(),
        sid: s.index + 1,
        addr: s.addr.to_string(),
        cookie: s.cookie.to_string(),
        status: server_status(l, s),
        admin_state: live.admin().as_str(),
        up: live.is_up(),
        eligible_rr: live.eligible_rr(),
        eligible_cookie: live.eligible_cookie(),
        weight: live.weight(),
        initial_weight: health::initial_weight(snap, l, s),
        check: CheckDoc {
            enabled: s.check && live.check_enabled(),
            configured: s.check,
            status: cs.as_str(),
            reason: health::status_reason(cs),
            info: health::check_info(live).map(|i| i.to_string()),
            code: (code != 0).then_some(code),
            duration_ms: (dur != u32::MAX).then_some(dur),
            last_unix_ms: (last_chk != 0).then_some(last_chk),
            age_s: (last_chk != 0).then(|| age_s(last_chk, now)),
            health: live.health.load(Ordering::Relaxed),
            rise: l.health.rise,
            fall: l.health.fall,
            failures: get(&live.chkfail),
            down_transitions: get(&live.chkdown),
            target: s.check_addr.to_string(),
            kind: if l.health.http.is_some() {
                "http"
            } else {
                "tcp"
            },
        },
        last_change_unix_ms: last_change,
        last_change_age_s: age_s(last_change, now).max(0),
        downtime_s: live.downtime_total_ms() / 1000,
        traffic: traffic(&live.counters, st.rates.get(&l.name, Kind::Server, &s.name)),
    }
}

fn listen_doc(st: &StatsState, snap: &Snapshot, l: &ListenRt, now: u64) -> ListenDoc {
    let empty = "".into();
    let (act, weight) = backend_active(l);
    ListenDoc {
        name: l.name.to_string(),
        id: l.id,
        mode: "http",
        algo: "roundrobin",
        binds: l.binds.iter().map(|b| b.to_string()).collect(),
        cookie: l.cookie.as_ref().map(|c| c.name.to_string()),
        frontend: FrontendDoc {
            status: if st.rt.stopping.load(Ordering::Acquire) {
                "STOP"
            } else {
                "OPEN"
            },
            maxconn: l.settings.maxconn,
            traffic: traffic(
                &l.shared.frontend,
                st.rates.get(&l.name, Kind::Frontend, &empty),
            ),
            denied: get(&l.shared.frontend.dreq),
            request_errors: get(&l.shared.frontend.ereq),
        },
        backend: BackendDoc {
            status: if act > 0 { "UP" } else { "DOWN" },
            active_servers: act,
            usable_servers: l.usable_servers(),
            weight,
            traffic: traffic(
                &l.shared.backend,
                st.rates.get(&l.name, Kind::Backend, &empty),
            ),
        },
        servers: l
            .servers
            .iter()
            .map(|s| server_doc(st, snap, l, s, now))
            .collect(),
    }
}

/// Builds the whole document from the current snapshot and counters.
pub fn build(st: &StatsState) -> StatsDoc {
    let rt = &st.rt;
    let snap = rt.load();
    let now = unix_ms();
    let ready = readiness(rt);
    let ms = |t: std::time::SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    };
    StatsDoc {
        node: snap.node_name.clone(),
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        now_unix_ms: now,
        uptime_s: rt.uptime().as_secs(),
        started_unix_ms: ms(rt.started_at),
        ready: ready.is_ok(),
        ready_reason: ready.err(),
        stopping: rt.stopping.load(Ordering::Acquire),
        refresh_ms: snap
            .config
            .stats
            .as_ref()
            .map(|s| s.refresh.as_millis() as u64)
            .unwrap_or(2000),
        config: ConfigDoc {
            generation: snap.generation,
            source: snap.source.clone(),
            loaded_unix_ms: ms(snap.loaded_at),
            last_reload: (**rt.reload.load()).clone(),
        },
        process: ProcessDoc {
            connections_current: get(&rt.process.actconn),
            connections_total: get(&rt.process.cum_conns),
            requests_total: get(&rt.process.cum_req),
            connection_panics: get(&rt.process.conn_panics),
            log_lines_written: get(&snap.access_log.written),
            log_lines_dropped: get(&snap.access_log.dropped),
            log_lines_truncated: get(&snap.access_log.truncated),
        },
        listens: snap
            .listens
            .iter()
            .map(|l| listen_doc(st, &snap, l, now))
            .collect(),
        cluster: rt.cluster_view.load_full().map(|v| (*v).clone()),
        acme: rt.acme_view.load_full().map(|v| {
            let mut v = (*v).clone();
            v["challenges"] = rt.challenges.summary();
            v
        }),
    }
}

pub fn render(st: &StatsState) -> String {
    serde_json::to_string(&build(st)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
