//! `/metrics`: Prometheus exposition, `edgelb_` namespace, in the format the scraper asks for:
//! the Prometheus text format 0.0.4 by default and for `Accept: text/plain` (what `curl`,
//! `promtool check metrics` and older scrapers read), OpenMetrics 1.0 when `Accept` prefers
//! `application/openmetrics-text` (Prometheus' own scrapes do).
//!
//! The samples are read from the runtime's atomics at scrape time, so nothing is registered per
//! server and the request path never touches a metrics object. Names follow Prometheus
//! conventions (base units, `_total` counters); labels are `listen`, `server` and, for
//! responses, `code_class` (`1xx`..`5xx`, `other`). The two formats differ only where the specs
//! do: 0.0.4 names a counter family with its `_total` suffix and has no `# EOF`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::{AdminState, Counters, Runtime, Snapshot, LATENCY_BUCKETS_MS};

use super::{backend_active, StatsState};

/// Which exposition format an answer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// Picks the format from an `Accept` header: OpenMetrics when its quality is positive and
    /// at least that of `text/plain` (or `*/*`); the 0.0.4 text format otherwise.
    pub fn negotiate(accept: Option<&http::HeaderValue>) -> Format {
        let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
            return Format::Prometheus;
        };
        let (mut om, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Metric types of the plain families (the histogram is written on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricType {
    Counter,
    Gauge,
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// One metric family: name (without prefix), help, type and its samples.
struct Family<'a> {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels<'a>, f64)>,
}

impl<'a> Family<'a> {
    fn new(name: &'static str, help: &'static str, kind: MetricType) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }
    fn add(&mut self, labels: Labels<'a>, v: impl Into<Num>) {
        self.samples.push((labels, v.into().0));
    }
    fn encode(&self, out: &mut String, format: Format) {
        let name = self.name;
        let counter = self.kind == MetricType::Counter;
        let (family, kind) = match (counter, format) {
            (true, Format::Prometheus) => (format!("edgelb_{name}_total"), "counter"),
            (true, Format::OpenMetrics) => (format!("edgelb_{name}"), "counter"),
            (false, _) => (format!("edgelb_{name}"), "gauge"),
        };
        let _ = writeln!(out, "# HELP {family} {}", self.help);
        let _ = writeln!(out, "# TYPE {family} {kind}");
        let sample = if counter {
            format!("edgelb_{name}_total")
        } else {
            family
        };
        for (labels, v) in &self.samples {
            out.push_str(&sample);
            write_labels(out, labels, None);
            out.push(' ');
            write_value(out, *v);
            out.push('\n');
        }
    }
}

/// `{k="v",...}` with the exposition escapes; `le` (histograms) goes first.
fn write_labels(out: &mut String, labels: &Labels, le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in le
        .map(|le| ("le", le))
        .into_iter()
        .chain(labels.iter().copied())
    {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// Integral values print as integers (`1`, not `1.0`) for readable output.
fn write_value(out: &mut String, v: f64) {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Numbers of any width, as exposition values.
struct Num(f64);
impl From<u64> for Num {
    fn from(v: u64) -> Self {
        Num(v as f64)
    }
}
impl From<u32> for Num {
    fn from(v: u32) -> Self {
        Num(v as f64)
    }
}
impl From<usize> for Num {
    fn from(v: usize) -> Self {
        Num(v as f64)
    }
}
impl From<f64> for Num {
    fn from(v: f64) -> Self {
        Num(v)
    }
}
impl From<bool> for Num {
    fn from(v: bool) -> Self {
        Num(if v { 1.0 } else { 0.0 })
    }
}

fn traffic_families<'a>(fams: &mut [Family<'a>; 7], labels: &Labels<'a>, c: &Counters) {
    fams[0].add(labels.clone(), get(&c.scur));
    fams[1].add(labels.clone(), get(&c.stot));
    fams[2].add(labels.clone(), get(&c.bin));
    fams[3].add(labels.clone(), get(&c.bout));
    for (i, class) in CLASSES.iter().enumerate() {
        let mut l = labels.clone();
        l.push(("code_class", class));
        fams[4].add(l, get(&c.hrsp[i]));
    }
    fams[5].add(labels.clone(), get(&c.econ));
    fams[6].add(labels.clone(), get(&c.eresp));
}

macro_rules! traffic_set {
    ($p:literal, $what:literal) => {
        [
            Family::new(
                concat!($p, "_sessions_current"),
                concat!("Sessions in progress on this ", $what, "."),
                MetricType::Gauge,
            ),
            Family::new(
                concat!($p, "_sessions"),
                concat!("Sessions handled by this ", $what, "."),
                MetricType::Counter,
            ),
            Family::new(
                concat!($p, "_received_bytes"),
                concat!("Bytes received from clients by this ", $what, "."),
                MetricType::Counter,
            ),
            Family::new(
                concat!($p, "_sent_bytes"),
                concat!("Bytes sent to clients by this ", $what, "."),
                MetricType::Counter,
            ),
            Family::new(
                concat!($p, "_requests"),
                concat!("HTTP responses of this ", $what, " by status class."),
                MetricType::Counter,
            ),
            Family::new(
                concat!($p, "_connection_errors"),
                concat!("Failed connections to servers of this ", $what, "."),
                MetricType::Counter,
            ),
            Family::new(
                concat!($p, "_response_errors"),
                concat!("Bad or missing server responses on this ", $what, "."),
                MetricType::Counter,
            ),
        ]
    };
}

/// Writes every family of one scrape.
fn encode_snapshot(rt: &Runtime, snap: &Snapshot, out: &mut String, format: Format) {
    {
        let mut info = Family::new(
            "build_info",
            "Version of edgelb (value is always 1).",
            MetricType::Gauge,
        );
        info.add(
            vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("node", &snap.node_name),
            ],
            1u32,
        );
        info.encode(out, format);
        let mut up = Family::new(
            "uptime_seconds",
            "Seconds since the process started.",
            MetricType::Gauge,
        );
        up.add(vec![], rt.uptime().as_secs_f64());
        up.encode(out, format);
        let mut gen = Family::new(
            "config_generation",
            "Generation of the loaded configuration (1 = first load).",
            MetricType::Gauge,
        );
        gen.add(vec![], snap.generation);
        gen.encode(out, format);
        let reload = rt.reload.load();
        let mut rl = Family::new(
            "config_last_reload_successful",
            "Whether the last configuration (re)load was applied.",
            MetricType::Gauge,
        );
        rl.add(vec![], reload.ok);
        rl.encode(out, format);
        let mut pc = Family::new(
            "process_connections_current",
            "Client connections open on all listens.",
            MetricType::Gauge,
        );
        pc.add(vec![], get(&rt.process.actconn));
        pc.encode(out, format);
        let mut pt = Family::new(
            "process_connections",
            "Client connections accepted on all listens.",
            MetricType::Counter,
        );
        pt.add(vec![], get(&rt.process.cum_conns));
        pt.encode(out, format);
        let mut pr = Family::new(
            "process_requests",
            "HTTP requests received on all listens.",
            MetricType::Counter,
        );
        pr.add(vec![], get(&rt.process.cum_req));
        pr.encode(out, format);
        let mut pp = Family::new(
            "process_connection_panics",
            "Connection tasks that panicked; each closed its own connection only.",
            MetricType::Counter,
        );
        pp.add(vec![], get(&rt.process.conn_panics));
        pp.encode(out, format);
        let log = &snap.access_log;
        let mut ll = Family::new(
            "access_log_lines",
            "Access-log lines by outcome: queued, dropped (the queue's log.queue_bytes was full) or truncated at log.max_line_len.",
            MetricType::Counter,
        );
        for (outcome, c) in [
            ("queued", &log.written),
            ("dropped", &log.dropped),
            ("truncated", &log.truncated),
        ] {
            ll.add(vec![("outcome", outcome)], get(c));
        }
        ll.encode(out, format);
        encode_tls(snap, out, format);

        // Frontend: connections rather than sessions, as the dashboard and HAProxy call them.
        let mut fe = traffic_set!("frontend", "listen's frontend");
        fe[0].name = "frontend_connections_current";
        fe[0].help = "Client connections open on this listen.";
        fe[1].name = "frontend_connections";
        fe[1].help = "Client connections accepted on this listen.";
        let mut fe_err = Family::new(
            "frontend_request_errors",
            "Invalid client requests (HAProxy ereq).",
            MetricType::Counter,
        );
        let mut fe_den = Family::new(
            "frontend_requests_denied",
            "Denied client requests (HAProxy dreq).",
            MetricType::Counter,
        );
        let mut be = traffic_set!("backend", "listen's backend");
        let mut be_up = Family::new(
            "backend_up",
            "1 when at least one server takes round-robin traffic.",
            MetricType::Gauge,
        );
        let mut be_act = Family::new(
            "backend_active_servers",
            "Servers taking round-robin traffic.",
            MetricType::Gauge,
        );
        let mut be_w = Family::new(
            "backend_weight",
            "Sum of the weights of servers taking round-robin traffic.",
            MetricType::Gauge,
        );
        let mut sv = traffic_set!("server", "server");
        let mut sv_up = Family::new(
            "server_up",
            "1 when health checks (or no checks) say the server is UP.",
            MetricType::Gauge,
        );
        let mut sv_adm = Family::new(
            "server_admin_state",
            "Operator state of the server (1 for the current state).",
            MetricType::Gauge,
        );
        let mut sv_w = Family::new(
            "server_weight",
            "Current weight of the server.",
            MetricType::Gauge,
        );
        let mut sv_h = Family::new(
            "server_check_health",
            "Health check counter (0..rise+fall-1; UP at >= rise).",
            MetricType::Gauge,
        );
        let mut sv_cf = Family::new(
            "server_check_failures",
            "Failed health checks.",
            MetricType::Counter,
        );
        let mut sv_cd = Family::new(
            "server_check_down_transitions",
            "UP to DOWN transitions.",
            MetricType::Counter,
        );
        let mut sv_dur = Family::new(
            "server_check_duration_seconds",
            "Duration of the last health check.",
            MetricType::Gauge,
        );
        let mut sv_chg = Family::new(
            "server_last_change_timestamp_seconds",
            "Unix time of the last state change.",
            MetricType::Gauge,
        );
        let mut sv_down = Family::new(
            "server_downtime_seconds",
            "Time spent DOWN.",
            MetricType::Counter,
        );
        let mut sv_retr = Family::new(
            "server_retries",
            "Connection retries to this server.",
            MetricType::Counter,
        );
        let mut sv_redis = Family::new(
            "server_redispatches",
            "Requests redispatched away from this server.",
            MetricType::Counter,
        );
        let mut sv_lb = Family::new(
            "server_selected",
            "Times the balancer picked this server.",
            MetricType::Counter,
        );

        for l in &snap.listens {
            let ll: Labels = vec![("listen", &l.name)];
            traffic_families(&mut fe, &ll, &l.shared.frontend);
            fe_err.add(ll.clone(), get(&l.shared.frontend.ereq));
            fe_den.add(ll.clone(), get(&l.shared.frontend.dreq));
            traffic_families(&mut be, &ll, &l.shared.backend);
            let (act, weight) = backend_active(l);
            be_up.add(ll.clone(), act > 0);
            be_act.add(ll.clone(), act);
            be_w.add(ll.clone(), weight);
            for s in &l.servers {
                let live = &s.live;
                let sl: Labels = vec![("listen", &l.name), ("server", &s.name)];
                traffic_families(&mut sv, &sl, &live.counters);
                sv_up.add(sl.clone(), live.is_up());
                for st in [AdminState::Ready, AdminState::Drain, AdminState::Maint] {
                    let mut lab = sl.clone();
                    lab.push(("state", st.as_str()));
                    sv_adm.add(lab, live.admin() == st);
                }
                sv_w.add(sl.clone(), live.weight());
                sv_h.add(sl.clone(), live.health.load(Ordering::Relaxed));
                sv_cf.add(sl.clone(), get(&live.chkfail));
                sv_cd.add(sl.clone(), get(&live.chkdown));
                let d = live.check_duration_ms.load(Ordering::Relaxed);
                if d != u32::MAX {
                    sv_dur.add(sl.clone(), d as f64 / 1000.0);
                }
                sv_chg.add(sl.clone(), get(&live.last_change_ms) as f64 / 1000.0);
                sv_down.add(sl.clone(), live.downtime_total_ms() as f64 / 1000.0);
                sv_retr.add(sl.clone(), get(&live.counters.wretr));
                sv_redis.add(sl.clone(), get(&live.counters.wredis));
                sv_lb.add(sl.clone(), get(&live.counters.lbtot));
            }
        }
        for f in fe.iter().chain([&fe_err, &fe_den]) {
            f.encode(out, format);
        }
        for f in be.iter().chain([&be_up, &be_act, &be_w]) {
            f.encode(out, format);
        }
        for f in sv.iter().chain([
            &sv_up, &sv_adm, &sv_w, &sv_h, &sv_cf, &sv_cd, &sv_dur, &sv_chg, &sv_down, &sv_retr,
            &sv_redis, &sv_lb,
        ]) {
            f.encode(out, format);
        }

        // Total request time per server, from the lock-free histogram in `ServerLive`.
        let family = "edgelb_server_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {family} Total time of proxied requests (first byte in to last byte out)."
        );
        let _ = writeln!(out, "# TYPE {family} histogram");
        for l in &snap.listens {
            for s in &l.servers {
                let (counts, sum, count) = s.live.counters.latency.read();
                let labels: Labels = vec![("listen", &l.name), ("server", &s.name)];
                let mut cumulative = 0;
                for (i, c) in counts.iter().enumerate() {
                    cumulative += c;
                    let le = LATENCY_BUCKETS_MS
                        .get(i)
                        .map(|&ms| format!("{}", ms as f64 / 1000.0))
                        .unwrap_or_else(|| "+Inf".into());
                    out.push_str(family);
                    out.push_str("_bucket");
                    write_labels(out, &labels, Some(&le));
                    let _ = writeln!(out, " {cumulative}");
                }
                out.push_str(family);
                out.push_str("_sum");
                write_labels(out, &labels, None);
                out.push(' ');
                write_value(out, sum);
                out.push('\n');
                out.push_str(family);
                out.push_str("_count");
                write_labels(out, &labels, None);
                let _ = writeln!(out, " {count}");
            }
        }
    }
}

/// The exposition text for one scrape, in `format`.
/// TLS handshakes, certificate reloads and expiry, and PROXY protocol rejections, per listen.
fn encode_tls(snap: &Snapshot, out: &mut String, format: Format) {
    let mut hs = Family::new(
        "tls_handshakes",
        "Completed TLS handshakes, full or resumed (ticket or session cache).",
        MetricType::Counter,
    );
    let mut hf = Family::new(
        "tls_handshake_failures",
        "TLS handshakes that failed (error: bad hello, no common version or suite, unknown SNI under strict_sni, peer gone) or timed out (timeout_client).",
        MetricType::Counter,
    );
    let mut cr = Family::new(
        "tls_certificate_reloads",
        "Certificate sets re-read after their files changed: applied, or rejected (the previous set kept serving).",
        MetricType::Counter,
    );
    let mut na = Family::new(
        "tls_certificate_not_after_seconds",
        "Expiry (Unix time) of each certificate served.",
        MetricType::Gauge,
    );
    let mut pp = Family::new(
        "proxy_protocol_rejected",
        "Connections closed for a missing or invalid PROXY header, or from a source outside accept_proxy_from.",
        MetricType::Counter,
    );
    let sets: Vec<_> = snap
        .listens
        .iter()
        .filter_map(|l| Some((&*l.name, l.tls.as_ref()?.resolver.set.load_full())))
        .collect();
    let certs: Vec<(&str, String, String, i64)> = sets
        .iter()
        .flat_map(|(name, set)| {
            set.certs.iter().map(move |c| {
                (
                    *name,
                    c.file.display().to_string(),
                    c.info.serial_hex.clone(),
                    c.info.not_after,
                )
            })
        })
        .collect();
    for l in &snap.listens {
        let name: &str = &l.name;
        if let Some(t) = &l.tls {
            let c = &t.shared.counters;
            let (all, resumed) = (get(&c.handshakes), get(&c.resumed));
            hs.add(
                vec![("listen", name), ("kind", "full")],
                all - resumed.min(all),
            );
            hs.add(vec![("listen", name), ("kind", "resumed")], resumed);
            let (failed, timeouts) = (get(&c.handshake_failures), get(&c.handshake_timeouts));
            hf.add(
                vec![("listen", name), ("reason", "error")],
                failed - timeouts.min(failed),
            );
            hf.add(vec![("listen", name), ("reason", "timeout")], timeouts);
            cr.add(
                vec![("listen", name), ("result", "applied")],
                get(&c.cert_reloads),
            );
            cr.add(
                vec![("listen", name), ("result", "rejected")],
                get(&c.cert_reload_failures),
            );
        }
        if l.accept_proxy.is_some() {
            pp.add(
                vec![("listen", name), ("reason", "invalid")],
                get(&l.shared.proxy_header_errors),
            );
            pp.add(
                vec![("listen", name), ("reason", "untrusted")],
                get(&l.shared.proxy_untrusted),
            );
        }
    }
    for (listen, file, serial, not_after) in &certs {
        na.add(
            vec![("listen", *listen), ("file", file), ("serial", serial)],
            *not_after as f64,
        );
    }
    for f in [hs, hf, cr, na, pp] {
        if !f.samples.is_empty() {
            f.encode(out, format);
        }
    }
}

pub fn render(st: &StatsState, format: Format) -> String {
    let mut out = String::with_capacity(16 * 1024);
    encode_snapshot(&st.rt, &st.rt.load(), &mut out, format);
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}
