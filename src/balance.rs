//! Weighted round-robin over a listen's servers, without locks on the request path.
//!
//! The pick order is a precomputed schedule (smooth weighted round-robin: servers interleaved in
//! proportion to their weights, first server first after a start) plus one atomic cursor. The
//! schedule is rebuilt lazily when the listen's state `version` moves (a server went DOWN, was
//! drained, re-weighted), so a server that is out does not hand its share to its neighbour.
//! HAProxy's `fwrr` produces the same proportions and smoothness; its exact interleaving of
//! unequal weights is an artefact of its trees and is not reproduced.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::runtime::{ListenShared, ServerRt};

#[derive(Debug)]
struct Schedule {
    version: u64,
    slots: Vec<u16>,
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

/// Smooth weighted round-robin order for one period (sum of weights picks).
pub fn smooth_order(weights: &[u32]) -> Vec<u16> {
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best: Option<usize> = None;
        for (i, &w) in weights.iter().enumerate() {
            if w == 0 {
                continue;
            }
            current[i] += w as i64;
            if best.map(|b| current[i] > current[b]).unwrap_or(true) {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        current[b] -= total;
        out.push(b as u16);
    }
    out
}

impl Balancer {
    pub fn new() -> Self {
        Self {
            schedule: ArcSwap::from_pointee(Schedule {
                version: u64::MAX,
                slots: Vec::new(),
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
        let fresh = Arc::new(Schedule {
            version,
            slots: smooth_order(&weights),
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
            let pos = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            let idx = sched.slots[pos] as usize;
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
    use super::smooth_order;

    #[test]
    fn equal_weights_go_in_config_order() {
        assert_eq!(smooth_order(&[1, 1, 1]), vec![0, 1, 2]);
    }

    #[test]
    fn unequal_weights_interleave_in_proportion() {
        let order = smooth_order(&[3, 2, 1]);
        assert_eq!(order.len(), 6);
        assert_eq!(order.iter().filter(|&&i| i == 0).count(), 3);
        assert_eq!(order.iter().filter(|&&i| i == 1).count(), 2);
        // Never the heavy server three times in a row: smooth, not bursty.
        assert!(order.windows(2).all(|w| !(w[0] == 0 && w[1] == 0)));
    }

    #[test]
    fn zero_weight_servers_get_nothing() {
        assert_eq!(smooth_order(&[0, 2, 0]), vec![1, 1]);
        assert!(smooth_order(&[0, 0]).is_empty());
    }
}
