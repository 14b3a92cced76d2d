//! `/metrics`: Prometheus/OpenMetrics text exposition, `edgelb_` namespace.
//!
//! A custom prometheus-client `Collector` reads the runtime's atomics at scrape time, so nothing
//! is registered per server and the request path never touches a metrics object. Names follow
//! Prometheus conventions (base units, `_total` counters); labels are `listen`, `server` and,
//! for responses, `code_class` (`1xx`..`5xx`, `other`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::runtime::{AdminState, Counters, Runtime, Snapshot, LATENCY_BUCKETS_MS};

use super::{backend_active, StatsState};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

#[derive(Debug)]
struct RuntimeCollector {
    rt: Arc<Runtime>,
}

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
    fn encode(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(self.name, self.help, None, self.kind)?;
        for (labels, v) in &self.samples {
            if labels.is_empty() {
                emit(&mut m, self.kind, *v)?;
            } else {
                emit(&mut m.encode_family(labels)?, self.kind, *v)?;
            }
        }
        Ok(())
    }
}

/// Integral values print as integers (`1`, not `1.0`) for readable output.
fn emit(m: &mut MetricEncoder, kind: MetricType, v: f64) -> Result<(), std::fmt::Error> {
    let integral = v.fract() == 0.0 && v.abs() < 9.0e15;
    match kind {
        MetricType::Counter if integral && v >= 0.0 => {
            m.encode_counter::<(), u64, f64>(&(v as u64), None)
        }
        MetricType::Counter => m.encode_counter::<(), f64, f64>(&v, None),
        _ if integral => m.encode_gauge(&(v as i64)),
        _ => m.encode_gauge(&v),
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

impl RuntimeCollector {
    fn encode_snapshot(
        &self,
        snap: &Snapshot,
        mut enc: DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let rt = &self.rt;
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
        info.encode(&mut enc)?;
        let mut up = Family::new(
            "uptime_seconds",
            "Seconds since the process started.",
            MetricType::Gauge,
        );
        up.add(vec![], rt.uptime().as_secs_f64());
        up.encode(&mut enc)?;
        let mut gen = Family::new(
            "config_generation",
            "Generation of the loaded configuration (1 = first load).",
            MetricType::Gauge,
        );
        gen.add(vec![], snap.generation);
        gen.encode(&mut enc)?;
        let reload = rt.reload.load();
        let mut rl = Family::new(
            "config_last_reload_successful",
            "Whether the last configuration (re)load was applied.",
            MetricType::Gauge,
        );
        rl.add(vec![], reload.ok);
        rl.encode(&mut enc)?;
        let mut pc = Family::new(
            "process_connections_current",
            "Client connections open on all listens.",
            MetricType::Gauge,
        );
        pc.add(vec![], get(&rt.process.actconn));
        pc.encode(&mut enc)?;
        let mut pt = Family::new(
            "process_connections",
            "Client connections accepted on all listens.",
            MetricType::Counter,
        );
        pt.add(vec![], get(&rt.process.cum_conns));
        pt.encode(&mut enc)?;
        let mut pr = Family::new(
            "process_requests",
            "HTTP requests received on all listens.",
            MetricType::Counter,
        );
        pr.add(vec![], get(&rt.process.cum_req));
        pr.encode(&mut enc)?;

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
            f.encode(&mut enc)?;
        }
        for f in be.iter().chain([&be_up, &be_act, &be_w]) {
            f.encode(&mut enc)?;
        }
        for f in sv.iter().chain([
            &sv_up, &sv_adm, &sv_w, &sv_h, &sv_cf, &sv_cd, &sv_dur, &sv_chg, &sv_down, &sv_retr,
            &sv_redis, &sv_lb,
        ]) {
            f.encode(&mut enc)?;
        }

        // Total request time per server, from the lock-free histogram in `ServerLive`.
        let mut m = enc.encode_descriptor(
            "server_request_duration_seconds",
            "Total time of proxied requests (first byte in to last byte out).",
            None,
            MetricType::Histogram,
        )?;
        for l in &snap.listens {
            for s in &l.servers {
                let (counts, sum, count) = s.live.counters.latency.read();
                let buckets: Vec<(f64, u64)> = counts
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| {
                        let ub = LATENCY_BUCKETS_MS
                            .get(i)
                            .map(|&ms| ms as f64 / 1000.0)
                            .unwrap_or(f64::MAX);
                        (ub, c)
                    })
                    .collect();
                let labels: Labels = vec![("listen", &l.name), ("server", &s.name)];
                m.encode_family(&labels)?
                    .encode_histogram::<()>(sum, count, &buckets, None)?;
            }
        }
        Ok(())
    }
}

impl Collector for RuntimeCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.rt.load();
        self.encode_snapshot(&snap, encoder)
    }
}

/// The exposition text for one scrape.
pub fn render(st: &StatsState) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("edgelb");
    reg.register_collector(Box::new(RuntimeCollector { rt: st.rt.clone() }));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}
