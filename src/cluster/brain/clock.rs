//! Time in the brain: when the shell must call `tick` next (`next_deadline`), moving the clock
//! forward with scheduling-gap detection (`advance`), and the windows measured from it
//! (initdead, hold-off, a peer's silence).

use super::*;

impl Brain {
    /// When the shell must call `tick` at the latest (never later than one keepalive).
    pub fn next_deadline(&self) -> Duration {
        if self.stopped {
            return self.now + Duration::from_secs(3600);
        }
        let now = self.now;
        let mut best = self.next_heartbeat.max(now + Duration::from_millis(1));
        let mut consider = |t: Duration| {
            if t > now && t < best {
                best = t;
            }
        };
        consider(self.next_reconcile);
        consider(self.started + self.cfg.initdead);
        consider(self.holdoff_until);
        if self.describe_wanted {
            consider(self.describe_not_before);
        }
        if self.cfg.witness.enabled {
            consider(self.next_witness_write);
            consider(self.witness_read_not_before);
        }
        if let Some(t) = self.self_up_since {
            consider(t + self.cfg.failback_hold);
            consider(t + self.cfg.unhealthy_hold);
        }
        for p in &self.peers {
            if p.node == self.me {
                continue;
            }
            let base = self.silence_base(p);
            consider(base + self.cfg.warntime);
            consider(base + self.cfg.deadtime);
            consider(self.started + self.cfg.initdead);
            match p.witness {
                Some(Verdict::Fresh { until, recheck, .. }) => {
                    consider(recheck);
                    consider(until);
                    consider(until + self.cfg.witness.unreadable_grace());
                }
                Some(Verdict::Unknown { since }) => {
                    consider(since + self.cfg.witness.unreadable_grace())
                }
                _ => {}
            }
            if let Some(t) = p.sees_me_since {
                consider(t + self.cfg.failback_hold);
            }
            if let Some(t) = p.unhealthy_since {
                consider(t + self.cfg.unhealthy_hold);
            }
            if let Some(t) = p.up_since {
                consider(t + self.cfg.unhealthy_hold);
            }
        }
        for e in &self.eips {
            consider(e.not_before);
        }
        for c in &self.pending {
            consider(c.issued + self.cfg.call_timeout);
        }
        if self.budget_blocked {
            let per_sec = f64::from(self.cfg.api_budget_per_minute) / 60.0;
            let wait =
                ((f64::from(self.budget_need.max(1)) - self.tokens).max(0.0) / per_sec).min(60.0);
            consider(now + Duration::from_secs_f64(wait) + Duration::from_millis(1));
        }
        best
    }

    /// Moves the clock forward and detects scheduling gaps. Returns false once stopped.
    pub(super) fn advance(&mut self, now: Duration) -> bool {
        if self.stopped {
            return false;
        }
        // A monotonic clock should never go back; if the shell's does, hold still.
        let now = now.max(self.now);
        let gap = now - self.now;
        self.now = now;
        if gap > self.cfg.pause_threshold {
            self.counters.scheduling_gaps += 1;
            self.listen_since = now;
            self.holdoff_until = now + self.cfg.pause_holdoff;
            self.holdoff_describe_from = Some(self.next_call);
            if self.health.healthy {
                self.self_up_since = Some(now);
            }
            for p in &mut self.peers {
                p.sees_me_since = None;
                p.witness = None;
            }
            self.describe_wanted = true;
            self.describe_not_before = now;
            self.membership_at = now;
            self.next_heartbeat = now;
            self.log(
                LogLevel::Warn,
                format!(
                    "not scheduled for {:.1}s (paused/frozen?): ignoring peer silence across the gap, \
                     holding off takeovers until peers are re-heard and placement re-read",
                    gap.as_secs_f64()
                ),
            );
        }
        true
    }

    /// `initdead` is the wait for peers not heard yet (Heartbeat's meaning): it ends early
    /// once every peer has been heard.
    pub(super) fn in_initdead(&self) -> bool {
        self.now < self.started + self.cfg.initdead
            && self
                .peers
                .iter()
                .any(|p| p.node != self.me && p.last_heard.is_none())
    }

    pub(super) fn in_holdoff(&self) -> bool {
        self.now < self.holdoff_until || self.holdoff_describe_from.is_some()
    }

    pub(super) fn silence_base(&self, p: &Peer) -> Duration {
        p.last_heard.unwrap_or(self.started).max(self.listen_since)
    }
}
