//! Weighted round-robin over a listen's servers, without locks on the request path.
//!
//! The pick order is HAProxy's `fwrr` (weighted round-robin with its init/current/next trees),
//! replayed once per state change into a precomputed schedule, plus one atomic cursor: after a
//! start the order is exactly HAProxy's (weights 3/2/1 give app1 app2 app1 app3 app1 app2). fwrr's
//! state is finite, so its picks settle into a cycle; the schedule is the picks up to the first
//! repeated state, then that cycle. It is rebuilt lazily when the listen's state `version` moves
//! (a server went DOWN or came back, was drained, re-weighted): the new schedule starts from
//! fwrr's state at the cursor with HAProxy's reaction to the change applied, so the rotation goes
//! on where it was, as HAProxy's does, and a server that is out does not hand its share to its
//! neighbour.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::runtime::{ListenShared, ServerRt};

#[derive(Debug)]
struct Schedule {
    version: u64,
    /// The weights it was built for (0 = not eligible for round-robin).
    weights: Vec<u32>,
    /// fwrr's state before the first slot.
    origin: Fwrr,
    slots: Vec<u16>,
    /// Where the repeating cycle starts in `slots`.
    cycle_start: usize,
}

impl Schedule {
    /// Index in `slots` of the `pos`-th pick.
    fn index(&self, pos: usize) -> Option<usize> {
        let n = self.slots.len();
        if pos < n {
            return Some(pos);
        }
        let cycle = n - self.cycle_start;
        if cycle == 0 {
            return None;
        }
        Some(self.cycle_start + (pos - self.cycle_start) % cycle)
    }

    fn slot(&self, pos: usize) -> Option<u16> {
        self.slots.get(self.index(pos)?).copied()
    }

    /// fwrr's state after `pos` picks.
    fn state_at(&self, pos: usize) -> Fwrr {
        let mut f = self.origin.clone();
        for _ in 0..self.index(pos).unwrap_or(0) {
            f.pick();
        }
        f
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

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Tree {
    Init,
    Curr,
    Next,
    Out,
}

#[derive(Clone, Copy, Debug)]
struct FwrrSrv {
    eweight: u64,
    npos: u64,
    lpos: u64,
    rweight: u64,
    tree: Tree,
    key: u64,
    /// Insertion order: equal keys are served in the order they were queued (eb32 trees).
    seq: u64,
}

/// HAProxy's fwrr group (lb_fwrr.c), stepped one pick at a time, with its reactions to a server
/// going down, coming up or changing weight, so the rotation goes on where it was.
#[derive(Clone, Debug)]
pub struct Fwrr {
    srv: Vec<FwrrSrv>,
    curr_pos: u64,
    curr_weight: u64,
    next_weight: u64,
    seq: u64,
}

impl Fwrr {
    /// A fresh group as after a start or reload (`fwrr_init_server_groups`).
    pub fn new(weights: &[u32]) -> Fwrr {
        let total: u64 = weights.iter().map(|&w| w as u64 * WEIGHT_SCALE).sum();
        let mut f = Fwrr {
            srv: weights
                .iter()
                .map(|&w| FwrrSrv {
                    eweight: w as u64 * WEIGHT_SCALE,
                    npos: 0,
                    lpos: 0,
                    rweight: 0,
                    tree: Tree::Out,
                    key: 0,
                    seq: 0,
                })
                .collect(),
            curr_pos: total,
            curr_weight: total,
            next_weight: total,
            seq: 0,
        };
        for i in 0..f.srv.len() {
            if f.srv[i].eweight > 0 {
                f.queue_by_weight(i, Tree::Init);
            }
        }
        f
    }

    fn insert(&mut self, i: usize, tree: Tree, key: u64) {
        self.seq += 1;
        let s = &mut self.srv[i];
        s.tree = tree;
        s.key = key;
        s.seq = self.seq;
    }

    fn queue_by_weight(&mut self, i: usize, tree: Tree) {
        let key = EWGHT_MAX - self.srv[i].eweight;
        self.insert(i, tree, key);
    }

    fn first(&self, tree: Tree) -> Option<usize> {
        self.srv
            .iter()
            .enumerate()
            .filter(|(_, s)| s.tree == tree)
            .min_by_key(|(_, s)| (s.key, s.seq))
            .map(|(i, _)| i)
    }

    /// `fwrr_queue_srv`.
    fn queue_srv(&mut self, i: usize) {
        let (cw, nw) = (self.curr_weight, self.next_weight);
        let s = self.srv[i];
        if s.eweight == 0 {
            self.srv[i].tree = Tree::Out;
        } else if s.npos >= 2 * cw || s.npos >= cw + nw {
            self.srv[i].npos = s.npos.saturating_sub(cw);
            self.queue_by_weight(i, Tree::Next);
        } else {
            let key = UWGHT_RANGE * s.npos + (EWGHT_MAX + s.rweight - s.eweight) / WEIGHT_SCALE;
            self.insert(i, Tree::Curr, key);
        }
    }

    /// `fwrr_get_srv`: prepares a server taken out of its tree.
    fn get_srv(&mut self, i: usize) {
        let (cw, cp) = (self.curr_weight, self.curr_pos);
        let s = &mut self.srv[i];
        match s.tree {
            Tree::Init => {
                s.npos = 0;
                s.rweight = 0;
            }
            Tree::Next => s.npos += cw,
            Tree::Out => s.npos = cp,
            Tree::Curr => {}
        }
    }

    /// The next server (`fwrr_get_next_server` without maxconn), or `None` if none has weight.
    pub fn pick(&mut self) -> Option<u16> {
        if self.curr_weight == 0 {
            self.curr_weight = self.next_weight;
            self.curr_pos = self.next_weight;
        }
        let mut switched = false;
        let i = loop {
            if let Some(i) = self.first(Tree::Curr) {
                if self.srv[i].npos <= self.curr_pos {
                    break i;
                }
            }
            if let Some(i) = self.first(Tree::Init) {
                self.srv[i].npos = 0;
                self.srv[i].rweight = 0;
                break i;
            }
            if let Some(i) = self.first(Tree::Curr) {
                break i;
            }
            if switched {
                return None;
            }
            switched = true;
            // fwrr_switch_trees: "next" becomes "init".
            for s in self.srv.iter_mut().filter(|s| s.tree == Tree::Next) {
                s.tree = Tree::Init;
            }
            self.curr_weight = self.next_weight;
            self.curr_pos = self.curr_weight;
        };
        let (cp, nw) = (self.curr_pos, self.next_weight);
        let s = &mut self.srv[i];
        if s.npos == 0 {
            s.lpos = cp;
            s.npos = cp;
        } else {
            s.lpos = s.npos;
        }
        s.npos += nw / s.eweight;
        s.rweight += nw % s.eweight;
        if s.rweight >= s.eweight {
            s.rweight -= s.eweight;
            s.npos += 1;
        }
        s.tree = Tree::Out;
        self.curr_pos += 1;
        self.queue_srv(i);
        Some(i as u16)
    }

    /// Applies a new weight (0 = down, drained or out) to server `i`, as HAProxy's
    /// `set_server_status_down/up` and `update_server_eweight` do.
    pub fn set_weight(&mut self, i: usize, w: u32) {
        let Some(old) = self.srv.get(i).map(|s| s.eweight) else {
            return;
        };
        let new = w as u64 * WEIGHT_SCALE;
        if old == new {
            return;
        }
        if new == 0 {
            self.next_weight -= old;
            self.srv[i].eweight = 0;
            self.srv[i].tree = Tree::Out;
        } else if old == 0 {
            self.srv[i].eweight = new;
            self.next_weight += new;
            self.srv[i].tree = Tree::Out;
            self.get_srv(i);
            let (cp, cw, nw) = (self.curr_pos, self.curr_weight, self.next_weight);
            self.srv[i].npos = cp + (nw + cw).saturating_sub(cp) / new;
            self.queue_srv(i);
        } else {
            self.next_weight = self.next_weight - old + new;
            self.srv[i].eweight = new;
            if self.srv[i].tree == Tree::Init {
                self.queue_by_weight(i, Tree::Init);
                return;
            }
            self.get_srv(i);
            let prev_next = self.srv[i].npos;
            let step = self.next_weight / new;
            let (cp, lpos) = (self.curr_pos, self.srv[i].lpos);
            let mut npos = (lpos + step).min(prev_next);
            if npos < cp + 2 {
                npos = cp + step;
            }
            self.srv[i].npos = npos;
            self.srv[i].rweight = 0;
            self.queue_srv(i);
        }
    }

    /// A hash of the group's state with insertion order reduced to ranks: equal states pick
    /// alike (64 bits: a schedule holds at most a few hundred thousand states).
    fn state_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.state_key().hash(&mut h);
        h.finish()
    }

    fn state_key(&self) -> Vec<u64> {
        let mut order: Vec<usize> = (0..self.srv.len()).collect();
        order.sort_by_key(|&i| self.srv[i].seq);
        let mut k = vec![self.curr_pos, self.curr_weight, self.next_weight];
        for (rank, &i) in order.iter().enumerate() {
            let s = &self.srv[i];
            k.extend_from_slice(&[
                i as u64,
                rank as u64,
                s.eweight,
                s.npos,
                s.lpos,
                s.rweight,
                s.tree as u64,
                s.key,
            ]);
        }
        k
    }
}

/// The first `n` picks of HAProxy's fwrr for these weights (0 = never picked), starting from a
/// fresh group as after a start or reload.
pub fn fwrr_order(weights: &[u32], n: usize) -> Vec<u16> {
    let mut f = Fwrr::new(weights);
    (0..n).map_while(|_| f.pick()).collect()
}

/// The picks from `origin` on until its state repeats: (slots, where the repeating cycle
/// starts). fwrr's state is finite, so it repeats; after a change the current window may run
/// for up to `curr_weight + next_weight` positions first. The bound only guards odd weights.
fn schedule_from(origin: &Fwrr) -> (Vec<u16>, usize) {
    let period: usize = origin
        .srv
        .iter()
        .map(|s| (s.eweight / WEIGHT_SCALE) as usize)
        .sum();
    let window = (origin.curr_weight + origin.next_weight) as usize;
    let bound = 4 * window + 8 * period + 64;
    let mut f = origin.clone();
    let mut seen = std::collections::HashMap::new();
    let mut slots = Vec::with_capacity(2 * period);
    while slots.len() < bound {
        let key = f.state_hash();
        if let Some(&start) = seen.get(&key) {
            return (slots, start);
        }
        seen.insert(key, slots.len());
        match f.pick() {
            Some(i) => slots.push(i),
            None => return (Vec::new(), 0),
        }
    }
    (slots, 0)
}

/// The schedule for these weights from a fresh group. Returns (slots, cycle start).
#[cfg(test)]
fn schedule_for(weights: &[u32]) -> (Vec<u16>, usize) {
    schedule_from(&Fwrr::new(weights))
}

impl Balancer {
    pub fn new() -> Self {
        Self {
            schedule: ArcSwap::from_pointee(Schedule {
                version: u64::MAX,
                weights: Vec::new(),
                origin: Fwrr::new(&[]),
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
        // The first schedule starts a fresh group (as HAProxy at start or reload); later ones
        // carry fwrr's state over from where the rotation is and apply the weight changes, so
        // a server coming back UP joins the rotation where it is (HAProxy's fwrr).
        let origin = if s.version == u64::MAX || s.weights.len() != weights.len() {
            Fwrr::new(&weights)
        } else {
            let mut f = s.state_at(self.cursor.load(Ordering::Relaxed));
            for (i, (&old, &new)) in s.weights.iter().zip(&weights).enumerate() {
                if old != new {
                    f.set_weight(i, new);
                }
            }
            f
        };
        let (slots, cycle_start) = schedule_from(&origin);
        let fresh = Arc::new(Schedule {
            version,
            weights,
            origin,
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
    use super::{fwrr_order, schedule_for, schedule_from, Fwrr, Schedule};

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
        assert!(start < slots.len());
        assert!(slots.iter().all(|&i| i == 1));
        assert!(schedule_for(&[0, 0]).0.is_empty());
    }

    /// Orders measured with HAProxy 2.6.12 (`set server webapp/appN state maint|ready` on the
    /// stats socket between requests): `dN` takes server N out, `uN` brings it back. The
    /// rotation goes on where it was; it does not restart at the first server.
    #[test]
    fn rotation_continues_across_down_and_up_as_haproxy_2_6() {
        let cases: [(&[u32], &str, &str); 7] = [
            (&[1, 1, 1], "2,d3,3,u3,6", "1 2 1 2 1 2 1 3 2 1 3"),
            (&[1, 1, 1], "4,d2,2,u2,6", "1 2 3 1 3 1 3 1 2 3 1 2"),
            (&[1, 1, 1], "1,d1,4,u1,6", "1 2 3 2 3 2 3 1 2 3 1"),
            (&[1, 1, 1], "3,d1,d2,2,u1,u2,6", "1 2 3 3 3 1 3 2 1 3 2"),
            (&[1, 1, 1], "5,d3,1,u3,7", "1 2 3 1 2 1 2 1 3 2 1 3 2"),
            (
                &[3, 2, 1],
                "4,d2,3,u2,12",
                "1 2 1 3 1 1 1 1 2 3 1 1 2 1 2 3 1 1 2",
            ),
            (
                &[3, 2, 1],
                "2,d1,3,u1,12",
                "1 2 3 2 3 2 1 1 3 2 1 2 1 1 3 2 1",
            ),
        ];
        for (weights, script, want) in cases {
            let mut w = weights.to_vec();
            let mut f = Fwrr::new(&w);
            let mut got = Vec::new();
            for step in script.split(',') {
                let n: usize = step[1..].parse().unwrap_or(0);
                match step.as_bytes()[0] {
                    b'd' => f.set_weight(n - 1, 0),
                    b'u' => f.set_weight(n - 1, w[n - 1]),
                    _ => {
                        for _ in 0..step.parse::<usize>().unwrap() {
                            got.push((f.pick().unwrap() + 1).to_string());
                        }
                    }
                }
                w = weights.to_vec();
            }
            assert_eq!(got.join(" "), want, "weights {weights:?}, {script}");
        }
    }

    /// The schedule built from a carried-over state yields the same picks as stepping fwrr.
    #[test]
    fn schedule_from_a_state_matches_stepping() {
        let mut f = Fwrr::new(&[3, 2, 1]);
        for _ in 0..4 {
            f.pick();
        }
        f.set_weight(1, 0);
        let (slots, start) = schedule_from(&f);
        let sched = Schedule {
            version: 0,
            weights: vec![3, 0, 1],
            origin: f.clone(),
            slots,
            cycle_start: start,
        };
        let mut g = f.clone();
        for pos in 0..1000 {
            assert_eq!(sched.slot(pos), g.pick(), "pos {pos}");
        }
    }
}
