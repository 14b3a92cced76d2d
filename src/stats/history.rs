//! The last minutes, for the dashboard's sparklines and cluster timeline (`/history.json`).
//!
//! Owns bounded rings fed by the stats sampler once a second: per server, the request rate and
//! the mean total time of the requests that finished in that second; per peer, its state as the
//! cluster published it; and a list of cluster events derived by comparing consecutive published
//! views (peer state changes and restarts, EIP moves with how long they took from the first sign
//! of the move to the holder changing).
//!
//! Must not: touch the cluster's internals or the request path. It reads only the snapshot's
//! counters (atomics), the rate table and `Runtime::cluster_view`, the JSON the cluster publishes.
//! Memory is bounded: [`SERIES_LEN`] samples per server and peer, [`EVENTS_MAX`] events;
//! servers and peers that disappear are dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use crate::runtime::{unix_ms, Snapshot};

use super::{Kind, Rates};

/// Samples kept per series: five minutes at one per second.
pub const SERIES_LEN: usize = 300;
/// Cluster events kept.
pub const EVENTS_MAX: usize = 200;

#[derive(Debug, Default)]
struct ServerSeries {
    req_rate: VecDeque<u64>,
    /// Mean total time (ms) of the requests that ended in that second; None when none did.
    latency_ms: VecDeque<Option<u64>>,
    last_ttime_sum: u64,
    last_samples: u64,
    primed: bool,
}

#[derive(Debug, Default)]
struct PeerTrack {
    states: VecDeque<String>,
    state: String,
    incarnation: Option<u64>,
}

#[derive(Debug, Default)]
struct EipTrack {
    holder: Option<String>,
    /// When a move was first seen coming (desired holder differs, or a call is pending).
    move_started_ms: Option<u64>,
}

/// One line of the cluster timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at_unix_ms: u64,
    /// `peer`, `restart` or `eip`.
    pub kind: &'static str,
    /// Peer name or EIP allocation id.
    pub subject: String,
    pub text: String,
    /// EIP moves: from the first sign of the move to the new holder.
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    servers: HashMap<(Arc<str>, Arc<str>), ServerSeries>,
    peers: HashMap<String, PeerTrack>,
    eips: HashMap<String, EipTrack>,
    events: VecDeque<Event>,
    last_unix_ms: u64,
}

/// The rings; written by the sampler, read by `/history.json`.
#[derive(Debug, Default)]
pub struct History {
    state: Mutex<State>,
}

fn push<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == SERIES_LEN {
        q.pop_front();
    }
    q.push_back(v);
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    match v.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

impl State {
    fn event(&mut self, e: Event) {
        if self.events.len() == EVENTS_MAX {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn sample_servers(&mut self, snap: &Snapshot, rates: &Rates) {
        let mut keep = HashMap::with_capacity(self.servers.len());
        for l in &snap.listens {
            for s in &l.servers {
                let key = (l.name.clone(), s.name.clone());
                let mut series = self.servers.remove(&key).unwrap_or_default();
                let c = &s.live.counters;
                let tsum = c.ttime_sum_ms.load(Ordering::Relaxed);
                let n = c.time_samples.load(Ordering::Relaxed);
                let rate = rates.get(&l.name, Kind::Server, &s.name).req_rate;
                if series.primed {
                    let dn = n.saturating_sub(series.last_samples);
                    let dt = tsum.saturating_sub(series.last_ttime_sum);
                    push(&mut series.req_rate, rate);
                    push(&mut series.latency_ms, (dn > 0).then(|| dt / dn));
                }
                series.last_ttime_sum = tsum;
                series.last_samples = n;
                series.primed = true;
                keep.insert(key, series);
            }
        }
        self.servers = keep;
    }

    fn sample_cluster(&mut self, view: Option<&Value>, now: u64) {
        let Some(view) = view else {
            return;
        };
        // The node may publish the brain's status at the top level or under "status".
        let st = view.get("status").unwrap_or(view);
        let mut seen = Vec::new();
        for p in st
            .get("peers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = str_of(p, "name") else {
                continue;
            };
            let state = str_of(p, "state").unwrap_or_else(|| "?".into());
            let inc = p.get("incarnation").and_then(Value::as_u64);
            let (old_state, old_inc, known) = match self.peers.get(&name) {
                Some(t) => (t.state.clone(), t.incarnation, true),
                None => (String::new(), None, false),
            };
            if known && old_state != state {
                let silent = p
                    .get("last_heard_ago_ms")
                    .and_then(Value::as_u64)
                    .filter(|_| state.eq_ignore_ascii_case("dead"))
                    .map(|ms| format!(" (silent {:.1}s)", ms as f64 / 1000.0))
                    .unwrap_or_default();
                self.event(Event {
                    at_unix_ms: now,
                    kind: "peer",
                    subject: name.clone(),
                    text: format!("{name}: {old_state} -> {state}{silent}"),
                    duration_ms: None,
                });
            }
            if let (Some(a), Some(b)) = (old_inc, inc) {
                if a != b {
                    self.event(Event {
                        at_unix_ms: now,
                        kind: "restart",
                        subject: name.clone(),
                        text: format!("{name} restarted (new incarnation)"),
                        duration_ms: None,
                    });
                }
            }
            let t = self.peers.entry(name.clone()).or_default();
            push(&mut t.states, state.clone());
            t.state = state;
            t.incarnation = inc.or(t.incarnation);
            seen.push(name);
        }
        self.peers.retain(|k, _| seen.contains(k));

        let mut seen = Vec::new();
        for e in st
            .get("eips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(id) = str_of(e, "allocation_id") else {
                continue;
            };
            let label = match str_of(e, "public_ip") {
                Some(ip) => format!("{ip} ({id})"),
                None => id.clone(),
            };
            let holder = str_of(e, "observed_holder").or_else(|| str_of(e, "holder"));
            let desired = str_of(e, "desired_holder");
            let pending = e.get("pending_call").is_some_and(|c| !c.is_null());
            let known = self.eips.contains_key(&id);
            let t = self.eips.entry(id.clone()).or_default();
            let moving = pending || (desired.is_some() && desired != holder);
            if moving && t.move_started_ms.is_none() {
                t.move_started_ms = Some(now);
            }
            let changed = known && t.holder != holder;
            let from = t.holder.clone();
            let started = t.move_started_ms;
            if changed || !moving {
                t.move_started_ms = None;
            }
            t.holder = holder.clone();
            if changed {
                let show = |h: &Option<String>| h.clone().unwrap_or_else(|| "nobody".into());
                let duration_ms = started.map(|s| now.saturating_sub(s));
                let took = duration_ms
                    .map(|d| format!(" in {:.1}s", d as f64 / 1000.0))
                    .unwrap_or_default();
                self.event(Event {
                    at_unix_ms: now,
                    kind: "eip",
                    subject: id.clone(),
                    text: format!("EIP {label}: {} -> {}{took}", show(&from), show(&holder)),
                    duration_ms,
                });
            }
            seen.push(id);
        }
        self.eips.retain(|k, _| seen.contains(k));
    }
}

/// `/history.json`.
#[derive(Debug, Serialize)]
struct Doc<'a> {
    interval_ms: u64,
    now_unix_ms: u64,
    servers: Vec<ServerDoc<'a>>,
    peers: Vec<PeerDoc<'a>>,
    events: &'a VecDeque<Event>,
}

#[derive(Debug, Serialize)]
struct ServerDoc<'a> {
    listen: &'a str,
    server: &'a str,
    req_rate: &'a VecDeque<u64>,
    latency_ms: &'a VecDeque<Option<u64>>,
}

#[derive(Debug, Serialize)]
struct PeerDoc<'a> {
    peer: &'a str,
    states: &'a VecDeque<String>,
}

impl History {
    /// One sampler tick: `rates` must already hold this tick's rates.
    pub fn sample(&self, snap: &Snapshot, rates: &Rates, cluster: Option<&Value>) {
        let now = unix_ms();
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.sample_servers(snap, rates);
        st.sample_cluster(cluster, now);
        st.last_unix_ms = now;
    }

    pub fn render_json(&self) -> String {
        let Ok(st) = self.state.lock() else {
            return "{}".into();
        };
        let mut servers: Vec<ServerDoc> = st
            .servers
            .iter()
            .map(|((l, s), v)| ServerDoc {
                listen: l,
                server: s,
                req_rate: &v.req_rate,
                latency_ms: &v.latency_ms,
            })
            .collect();
        servers.sort_by(|a, b| (a.listen, a.server).cmp(&(b.listen, b.server)));
        let mut peers: Vec<PeerDoc> = st
            .peers
            .iter()
            .map(|(k, v)| PeerDoc {
                peer: k,
                states: &v.states,
            })
            .collect();
        peers.sort_by(|a, b| a.peer.cmp(b.peer));
        let doc = Doc {
            interval_ms: 1000,
            now_unix_ms: if st.last_unix_ms == 0 {
                unix_ms()
            } else {
                st.last_unix_ms
            },
            servers,
            peers,
            events: &st.events,
        };
        serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cluster_events_from_published_views() {
        let mut st = State::default();
        let view = |state: &str, inc: u64, holder: &str, desired: &str, pending: bool| {
            json!({"peers": [{"name": "lb2", "state": state, "incarnation": inc, "last_heard_ago_ms": 15200}],
                   "eips": [{"allocation_id": "eipalloc-1", "public_ip": "203.0.113.9",
                             "observed_holder": holder, "desired_holder": desired,
                             "pending_call": if pending { json!(3) } else { Value::Null }}]})
        };
        st.sample_cluster(Some(&view("Alive", 1, "lb2", "lb2", false)), 1_000);
        assert!(st.events.is_empty(), "first sight is not an event");
        st.sample_cluster(Some(&view("Dead", 1, "lb2", "lb1", false)), 16_000);
        st.sample_cluster(Some(&view("Dead", 1, "lb2", "lb1", true)), 17_000);
        st.sample_cluster(Some(&view("Dead", 1, "lb1", "lb1", false)), 19_500);
        st.sample_cluster(Some(&view("Alive", 2, "lb1", "lb1", false)), 40_000);
        let texts: Vec<&str> = st.events.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "lb2: Alive -> Dead (silent 15.2s)",
                "EIP 203.0.113.9 (eipalloc-1): lb2 -> lb1 in 3.5s",
                "lb2: Dead -> Alive",
                "lb2 restarted (new incarnation)",
            ]
        );
        assert_eq!(st.events[1].duration_ms, Some(3_500));
        assert_eq!(st.peers["lb2"].states.len(), 5);
        for i in 0..(EVENTS_MAX + SERIES_LEN) as u64 {
            let s = if i % 2 == 0 { "Alive" } else { "Warn" };
            st.sample_cluster(Some(&view(s, 2, "lb1", "lb1", false)), 50_000 + i);
        }
        assert_eq!(st.events.len(), EVENTS_MAX);
        assert_eq!(st.peers["lb2"].states.len(), SERIES_LEN);
    }
}
