//! HAProxy 2.6-compatible CSV (`/stats.csv`, `/;csv`): the same columns, row order (FRONTEND,
//! servers, BACKEND per listen in config order), status words and trailing empty line as
//! HAProxy 2.6.12's `show stat`, so existing scripts and graphs keep working.
//!
//! Differences, on purpose: the server `addr` and `cookie` columns are filled (HAProxy's HTTP CSV
//! fills them only with `stats show-legends`, its CLI always does; operators use them to map a
//! row to an instance); `qtime/ctime/rtime/ttime` are averages over all requests rather than over
//! the last 1024; columns edgelb has no counter for (queues, compression, SSL/H2/H1 modules,
//! `*_max` times, connection reuse) are left empty rather than invented.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use crate::health;
use crate::runtime::{unix_ms, CheckStatus, Counters, ListenRt, ServerRt};

use super::{backend_active, server_status, Kind, StatsState};

/// Column names of HAProxy 2.6.12 `show stat` / `;csv`, in order (128 columns: the static ones up
/// to `-`, then the SSL/H2/H1 module columns, which edgelb leaves empty).
pub const COLUMNS: &str = concat!(
    "pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,",
    "wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,",
    "throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,",
    "check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,",
    "req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,",
    "lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,",
    "agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,",
    "agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,",
    "intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,",
    "qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,",
    "need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,",
    "ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,",
    "h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,",
    "h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,",
    "h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,",
    "h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,",
    "h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,",
);

/// The first line, byte-equal to HAProxy 2.6.12's.
pub fn header() -> String {
    format!("# {COLUMNS}\n")
}

fn index() -> &'static HashMap<&'static str, usize> {
    static IDX: OnceLock<HashMap<&'static str, usize>> = OnceLock::new();
    IDX.get_or_init(|| {
        COLUMNS
            .split(',')
            .filter(|c| !c.is_empty())
            .enumerate()
            .map(|(i, c)| (c, i))
            .collect()
    })
}

struct Row(Vec<String>);

impl Row {
    fn new() -> Self {
        Row(vec![String::new(); index().len()])
    }
    fn set(&mut self, col: &str, v: impl ToString) {
        if let Some(&i) = index().get(col) {
            self.0[i] = v.to_string();
        } else {
            debug_assert!(false, "unknown CSV column {col}");
        }
    }
    fn write(&self, out: &mut String) {
        for f in &self.0 {
            if f.contains([',', '"', '\n', '\r']) {
                out.push('"');
                out.push_str(&f.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(f);
            }
            out.push(',');
        }
        out.push('\n');
    }
}

fn get(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Seconds since a Unix-ms timestamp (HAProxy `lastchg`, `lastsess`), -1 when never.
pub(crate) fn age_s(at_ms: u64, now_ms: u64) -> i64 {
    if at_ms == 0 {
        -1
    } else {
        (now_ms.saturating_sub(at_ms) / 1000) as i64
    }
}

/// Average connect/response/total time in ms over every sampled request.
pub(crate) fn avg_times(c: &Counters) -> (u64, u64, u64) {
    let n = get(&c.time_samples);
    if n == 0 {
        return (0, 0, 0);
    }
    (
        get(&c.ctime_sum_ms) / n,
        get(&c.rtime_sum_ms) / n,
        get(&c.ttime_sum_ms) / n,
    )
}

fn traffic(r: &mut Row, c: &Counters) {
    r.set("scur", get(&c.scur));
    r.set("smax", get(&c.smax));
    r.set("stot", get(&c.stot));
    r.set("bin", get(&c.bin));
    r.set("bout", get(&c.bout));
    for (i, col) in [
        "hrsp_1xx",
        "hrsp_2xx",
        "hrsp_3xx",
        "hrsp_4xx",
        "hrsp_5xx",
        "hrsp_other",
    ]
    .iter()
    .enumerate()
    {
        r.set(col, get(&c.hrsp[i]));
    }
    r.set("req_tot", get(&c.req_tot));
    r.set("pid", 1);
    r.set("mode", "http");
    r.set("wrew", 0);
    r.set("eint", 0);
    r.set("-", "-");
}

fn backend_side(r: &mut Row, c: &Counters, now: u64) {
    r.set("qcur", 0);
    r.set("qmax", 0);
    r.set("dresp", 0);
    r.set("econ", get(&c.econ));
    r.set("eresp", get(&c.eresp));
    r.set("wretr", get(&c.wretr));
    r.set("wredis", get(&c.wredis));
    r.set("lbtot", get(&c.lbtot));
    r.set("cli_abrt", get(&c.cli_abrt));
    r.set("srv_abrt", get(&c.srv_abrt));
    r.set("lastsess", age_s(get(&c.last_sess_ms), now));
    let (ct, rt, tt) = avg_times(c);
    r.set("qtime", 0);
    r.set("ctime", ct);
    r.set("rtime", rt);
    r.set("ttime", tt);
}

fn frontend_row(st: &StatsState, l: &ListenRt) -> Row {
    let c = &l.shared.frontend;
    let rate = st.rates.get(&l.name, Kind::Frontend, &"".into());
    let mut r = Row::new();
    r.set("pxname", &*l.name);
    r.set("svname", "FRONTEND");
    traffic(&mut r, c);
    r.set("slim", l.settings.maxconn);
    r.set("dreq", get(&c.dreq));
    r.set("dresp", 0);
    r.set("ereq", get(&c.ereq));
    let stopping = st.rt.stopping.load(Ordering::Acquire);
    r.set("status", if stopping { "STOP" } else { "OPEN" });
    r.set("iid", l.id);
    r.set("sid", 0);
    r.set("type", 0);
    r.set("rate", rate.rate);
    r.set("rate_lim", 0);
    r.set("rate_max", rate.rate_max);
    r.set("req_rate", rate.req_rate);
    r.set("req_rate_max", rate.req_rate_max);
    r.set("conn_rate", rate.rate);
    r.set("conn_rate_max", rate.rate_max);
    r.set("conn_tot", get(&c.stot));
    for col in [
        "intercepted",
        "dcon",
        "dses",
        "comp_in",
        "comp_out",
        "comp_byp",
        "comp_rsp",
    ] {
        r.set(col, 0);
    }
    r
}

fn server_row(st: &StatsState, l: &ListenRt, s: &ServerRt, now: u64) -> Row {
    let live = &s.live;
    let c = &live.counters;
    let rate = st.rates.get(&l.name, Kind::Server, &s.name);
    let mut r = Row::new();
    r.set("pxname", &*l.name);
    r.set("svname", &*s.name);
    traffic(&mut r, c);
    backend_side(&mut r, c, now);
    r.set("status", server_status(l, s));
    r.set("weight", live.weight());
    r.set("uweight", live.weight());
    r.set("act", 1);
    r.set("bck", 0);
    // HAProxy leaves the check counters empty for a server without `check` (so exporters
    // publish no check/downtime series for it).
    if s.check {
        r.set("chkfail", get(&live.chkfail));
        r.set("chkdown", get(&live.chkdown));
        r.set("downtime", live.downtime_total_ms() / 1000);
    }
    r.set("lastchg", age_s(get(&live.last_change_ms), now).max(0));
    r.set("iid", l.id);
    r.set("sid", s.index + 1);
    r.set("type", 2);
    r.set("rate", rate.rate);
    r.set("rate_max", rate.rate_max);
    if s.check {
        let cs = live.check_status();
        let shown = if live.check_enabled() {
            cs.as_str().to_string()
        } else {
            String::new()
        };
        r.set("check_status", shown);
        if live.check_code.load(Ordering::Relaxed) != 0 {
            r.set("check_code", live.check_code.load(Ordering::Relaxed));
        }
        let d = live.check_duration_ms.load(Ordering::Relaxed);
        if d != u32::MAX && !matches!(cs, CheckStatus::Ini | CheckStatus::Unk) {
            r.set("check_duration", d);
        }
        if !cs.is_ok() {
            if let Some(info) = health::check_info(live) {
                r.set("last_chk", &*info);
            }
        }
        r.set("check_desc", health::status_reason(cs));
        r.set("check_rise", l.health.rise);
        r.set("check_fall", l.health.fall);
        r.set("check_health", live.health.load(Ordering::Relaxed));
    }
    r.set("addr", s.addr);
    if l.cookie.is_some() {
        r.set("cookie", &*s.cookie);
    }
    r
}

fn backend_row(st: &StatsState, l: &ListenRt, now: u64) -> Row {
    let c = &l.shared.backend;
    let rate = st.rates.get(&l.name, Kind::Backend, &"".into());
    let (act, weight) = backend_active(l);
    let mut r = Row::new();
    r.set("pxname", &*l.name);
    r.set("svname", "BACKEND");
    traffic(&mut r, c);
    backend_side(&mut r, c, now);
    r.set("dreq", get(&c.dreq));
    // HAProxy counts a balancer pick on the server and its backend at once; the sum over the
    // servers is the same number without a second counter on the request path.
    let lbtot: u64 = l.servers.iter().map(|s| get(&s.live.counters.lbtot)).sum();
    r.set("lbtot", lbtot);
    // HAProxy's backend `slim` is `fullconn`, by default (maxconn of its frontend + 9) / 10.
    r.set("slim", (l.settings.maxconn as u64).div_ceil(10));
    r.set("status", if act > 0 { "UP" } else { "DOWN" });
    r.set("weight", weight);
    r.set("uweight", weight);
    r.set("act", act);
    r.set("bck", 0);
    let last = l
        .servers
        .iter()
        .map(|s| get(&s.live.last_change_ms))
        .max()
        .unwrap_or(0);
    r.set("lastchg", age_s(last, now).max(0));
    r.set("iid", l.id);
    r.set("sid", 0);
    r.set("type", 1);
    r.set("rate", rate.rate);
    r.set("rate_max", rate.rate_max);
    if let Some(ck) = &l.cookie {
        r.set("cookie", &*ck.name);
    }
    r.set("algo", "roundrobin");
    for col in ["comp_in", "comp_out", "comp_byp", "comp_rsp"] {
        r.set(col, 0);
    }
    r
}

/// The whole CSV document: header, rows, and the empty line HAProxy ends with.
pub fn render(st: &StatsState) -> String {
    let snap = st.rt.load();
    let now = unix_ms();
    let mut out = header();
    for l in &snap.listens {
        frontend_row(st, l).write(&mut out);
        for s in &l.servers {
            server_row(st, l, s, now).write(&mut out);
        }
        backend_row(st, l, now).write(&mut out);
    }
    out.push('\n');
    out
}
