//! Per-second rates (HAProxy `rate`, `req_rate`, `conn_rate` and their `*_max`), computed by a
//! 1-second sampler from the cumulative counters.
//!
//! The request path only bumps counters; the stats sampler (`StatsState::spawn_sampler`) calls
//! `sample` once a second, which publishes a fresh table through an `ArcSwap`, so scrapes read
//! rates without any lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::runtime::{Counters, Snapshot};

/// Which row of a listen a rate belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Frontend,
    Backend,
    Server,
}

type Key = (Arc<str>, Kind, Arc<str>);

/// Rates of one row, per second over the last sampled second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    /// New sessions (connections for a frontend) per second.
    pub rate: u64,
    pub rate_max: u64,
    pub req_rate: u64,
    pub req_rate_max: u64,
    last_stot: u64,
    last_req: u64,
}

#[derive(Debug, Default)]
pub struct Rates {
    table: ArcSwap<HashMap<Key, Rate>>,
}

impl Rates {
    pub fn get(&self, listen: &Arc<str>, kind: Kind, server: &Arc<str>) -> Rate {
        self.table
            .load()
            .get(&(listen.clone(), kind, server.clone()))
            .copied()
            .unwrap_or_default()
    }

    /// Takes one sample; `elapsed` is the time since the previous one.
    pub fn sample(&self, snap: &Snapshot, elapsed: Duration) {
        let old = self.table.load_full();
        let secs = elapsed.as_secs_f64().max(0.001);
        let mut next = HashMap::with_capacity(old.len());
        let empty: Arc<str> = Arc::from("");
        let mut one = |key: Key, c: &Counters| {
            let stot = Counters::get(&c.stot);
            let req = Counters::get(&c.req_tot);
            let r = match old.get(&key) {
                Some(p) => {
                    let rate = (stot.saturating_sub(p.last_stot) as f64 / secs).round() as u64;
                    let req_rate = (req.saturating_sub(p.last_req) as f64 / secs).round() as u64;
                    Rate {
                        rate,
                        rate_max: p.rate_max.max(rate),
                        req_rate,
                        req_rate_max: p.req_rate_max.max(req_rate),
                        last_stot: stot,
                        last_req: req,
                    }
                }
                // First sight: counters that existed before sampling began are not a burst.
                None => Rate {
                    last_stot: stot,
                    last_req: req,
                    ..Rate::default()
                },
            };
            next.insert(key, r);
        };
        for l in &snap.listens {
            one(
                (l.name.clone(), Kind::Frontend, empty.clone()),
                &l.shared.frontend,
            );
            one(
                (l.name.clone(), Kind::Backend, empty.clone()),
                &l.shared.backend,
            );
            for s in &l.servers {
                one(
                    (l.name.clone(), Kind::Server, s.name.clone()),
                    &s.live.counters,
                );
            }
        }
        self.table.store(Arc::new(next));
    }
}
