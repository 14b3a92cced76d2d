//! Weighted round-robin over a listen's servers, without locks on the request path.
//!
//! The pick order is HAProxy's `fwrr` (weighted round-robin with its init/current/next trees),
//! replayed once per state change into a precomputed schedule, plus one atomic cursor: after a
//! start the order is exactly HAProxy's (weights 3/2/1 give app1 app2 app1 app3 app1 app2). fwrr
//! settles into a cycle of `sum(weights)` picks after a first period, so the schedule is that
//! first period followed by the cycle. It is rebuilt lazily when the listen's state `version`
//! moves (a server went DOWN, was drained, re-weighted), so a server that is out does not hand its
//! share to its neighbour.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::runtime::{ListenShared, ServerRt};

#[derive(Debug)]
struct Schedule {
    version: u64,
    slots: Vec<u16>,
    /// Where the repeating cycle starts in `slots`.
    cycle_start: usize,
}

impl Schedule {
    fn slot(&self, pos: usize) -> Option<u16> {
        let n = self.slots.len();
        if pos < n {
            return self.slots.get(pos).copied();
        }
        let cycle = n - self.cycle_start;
        if cycle == 0 {
            return None;
        }
        self.slots
            .get(self.cycle_start + (pos - self.cycle_start) % cycle)
            .copied()
    }
}

#[derive(Debug)]
pub struct Balancer {
    schedule: ArcSwap<Schedule>,
    cursor: AtomicUsize,
}

impl Default for Balancer {
    fn default() -> Self {
        Self::new()
    }
}

/// HAProxy's `BE_WEIGHT_SCALE`, `SRV_UWGHT_RANGE` and `SRV_EWGHT_MAX` (lb_fwrr.c arithmetic).
const WEIGHT_SCALE: u64 = 16;
const UWGHT_RANGE: u64 = 256;
const EWGHT_MAX: u64 = 256 * WEIGHT_SCALE;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tree {
    Init,
    Curr,
    Next,
    Out,
}

#[derive(Clone, Copy)]
struct FwrrSrv {
    eweight: u64,
    npos: u64,
    rweight: u64,
    tree: Tree,
    key: u64,
    seq: u64,
}

/// The first `n` picks of HAProxy's fwrr for these weights (0 = never picked), starting from a
/// fresh group as after a start or reload.
pub fn fwrr_order(weights: &[u32], n: usize) -> Vec<u16> {
    let mut srv: Vec<FwrrSrv> = weights
        .iter()
        .map(|&w| FwrrSrv {
            eweight: w as u64 * WEIGHT_SCALE,
            npos: 0,
            rweight: 0,
            tree: Tree::Out,
            key: 0,
            seq: 0,
        })
        .collect();
    let total: u64 = srv.iter().map(|s| s.eweight).sum();
    let mut out = Vec::with_capacity(n);
    if total == 0 {
        return out;
    }
    let (mut curr_pos, mut curr_weight) = (total, total);
    let next_weight = total;
    let mut seq = 0u64;
    let mut insert = |s: &mut FwrrSrv, tree: Tree, key: u64| {
        seq += 1;
        s.tree = tree;
        s.key = key;
        s.seq = seq;
    };
    for s in srv.iter_mut().filter(|s| s.eweight > 0) {
        insert(s, Tree::Init, EWGHT_MAX - s.eweight);
    }
    let first = |srv: &[FwrrSrv], tree: Tree| -> Option<usize> {
        srv.iter()
            .enumerate()
            .filter(|(_, s)| s.tree == tree)
            .min_by_key(|(_, s)| (s.key, s.seq))
            .map(|(i, _)| i)
    };
    while out.len() < n {
        let mut switched = false;
        let pick = loop {
            if let Some(i) = first(&srv, Tree::Curr) {
                if srv[i].npos <= curr_pos {
                    break Some(i);
                }
            }
            if let Some(i) = first(&srv, Tree::Init) {
                srv[i].npos = 0;
                srv[i].rweight = 0;
                break Some(i);
            }
            if let Some(i) = first(&srv, Tree::Curr) {
                break Some(i);
            }
            if switched {
                break None;
            }
            switched = true;
            // fwrr_switch_trees: "next" becomes "init".
            for s in srv.iter_mut().filter(|s| s.tree == Tree::Next) {
                s.tree = Tree::Init;
            }
            curr_weight = next_weight;
            curr_pos = curr_weight;
        };
        let Some(i) = pick else { break };
        let s = &mut srv[i];
        if s.npos == 0 {
            s.npos = curr_pos;
        }
        s.npos += next_weight / s.eweight;
        s.rweight += next_weight % s.eweight;
        if s.rweight >= s.eweight {
            s.rweight -= s.eweight;
            s.npos += 1;
        }
        curr_pos += 1;
        if s.npos >= 2 * curr_weight || s.npos >= curr_weight + next_weight {
            s.npos -= curr_weight;
            let key = EWGHT_MAX - s.eweight;
            insert(s, Tree::Next, key);
        } else {
            let key = UWGHT_RANGE * s.npos + (EWGHT_MAX + s.rweight - s.eweight) / WEIGHT_SCALE;
            insert(s, Tree::Curr, key);
        }
        out.push(i as u16);
    }
    out
}

/// The schedule for these weights: fwrr's first period, then its steady cycle (both `sum(weights)`
/// long). Returns (slots, cycle start).
fn schedule_for(weights: &[u32]) -> (Vec<u16>, usize) {
    let period: usize = weights.iter().map(|&w| w as usize).sum();
    (fwrr_order(weights, 2 * period), period)
}

impl Balancer {
    pub fn new() -> Self {
        Self {
            schedule: ArcSwap::from_pointee(Schedule {
                version: u64::MAX,
                slots: Vec::new(),
                cycle_start: 0,
            }),
            cursor: AtomicUsize::new(0),
        }
    }

    fn current(&self, shared: &ListenShared, servers: &[Arc<ServerRt>]) -> Arc<Schedule> {
        let version = shared.version.load(Ordering::Acquire);
        let s = self.schedule.load_full();
        if s.version == version {
            return s;
        }
        let weights: Vec<u32> = servers
            .iter()
            .map(|s| {
                if s.live.eligible_rr() {
                    s.live.weight()
                } else {
                    0
                }
            })
            .collect();
        let (slots, cycle_start) = schedule_for(&weights);
        let fresh = Arc::new(Schedule {
            version,
            slots,
            cycle_start,
        });
        self.schedule.store(fresh.clone());
        self.cursor.store(0, Ordering::Relaxed);
        fresh
    }

    /// Next round-robin server, skipping `exclude` (a server that just failed) and any server
    /// whose state changed since the schedule was built. `None` when nothing is eligible.
    pub fn pick(
        &self,
        shared: &ListenShared,
        servers: &[Arc<ServerRt>],
        exclude: Option<usize>,
    ) -> Option<usize> {
        let sched = self.current(shared, servers);
        let n = sched.slots.len();
        if n == 0 {
            return None;
        }
        for _ in 0..n {
            let pos = self.cursor.fetch_add(1, Ordering::Relaxed);
            let idx = sched.slot(pos)? as usize;
            if Some(idx) == exclude {
                continue;
            }
            if let Some(s) = servers.get(idx) {
                if s.live.eligible_rr() {
                    return Some(idx);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{fwrr_order, schedule_for};

    fn names(order: &[u16]) -> Vec<u16> {
        order.iter().map(|i| i + 1).collect()
    }

    #[test]
    fn fwrr_matches_haproxy_2_6_measured_orders() {
        // Measured with HAProxy 2.6.12 (`balance roundrobin`, weights from the config).
        let cases: [(&[u32], &[u16]); 9] = [
            (&[1, 1, 1], &[1, 2, 3, 1, 2, 3]),
            (&[3, 2, 1], &[1, 2, 1, 3, 1, 2, 1, 2, 1, 3, 1, 2]),
            (&[2, 1], &[1, 1, 2, 1, 1, 2]),
            (&[1, 2], &[2, 2, 1, 2, 2, 1]),
            (&[1, 1, 2], &[3, 1, 3, 2, 3, 1, 3, 2]),
            (
                &[5, 3, 1],
                &[1, 1, 2, 1, 3, 2, 1, 1, 2, 1, 1, 2, 1, 3, 2, 1, 1, 2],
            ),
            (&[2, 2, 1], &[1, 2, 1, 2, 3, 1, 2, 1, 2, 3]),
            (&[1, 2, 3], &[3, 2, 3, 1, 3, 2, 3, 2, 3, 1, 3, 2]),
            (&[4, 1, 1, 1], &[1, 1, 2, 1, 3, 1, 4, 1, 1, 2, 1, 3, 1, 4]),
        ];
        for (w, expected) in cases {
            assert_eq!(
                names(&fwrr_order(w, expected.len())),
                expected,
                "weights {w:?}"
            );
        }
    }

    #[test]
    fn after_the_first_period_fwrr_repeats_with_period_sum_of_weights() {
        for w in [
            &[7u32, 16, 12, 8, 10, 14][..],
            &[6, 8, 6, 17],
            &[15, 6, 16],
            &[256, 1],
        ] {
            let p: usize = w.iter().map(|&x| x as usize).sum();
            let o = fwrr_order(w, 4 * p);
            assert_eq!(o[p..2 * p], o[2 * p..3 * p], "{w:?}");
            assert_eq!(o[2 * p..3 * p], o[3 * p..4 * p], "{w:?}");
            for (i, &wi) in w.iter().enumerate() {
                assert_eq!(
                    o[p..2 * p].iter().filter(|&&x| x as usize == i).count(),
                    wi as usize
                );
            }
        }
    }

    #[test]
    fn zero_weight_servers_get_nothing() {
        let (slots, start) = schedule_for(&[0, 2, 0]);
        assert_eq!(start, 2);
        assert!(slots.iter().all(|&i| i == 1));
        assert!(schedule_for(&[0, 0]).0.is_empty());
    }
}
