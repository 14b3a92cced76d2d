//! The EC2 call budget and retry policy: the token bucket every call spends from, jittered
//! exponential backoff, call timeouts and how failures are logged.

use super::*;

impl Brain {
    pub(super) fn expire_calls(&mut self) {
        let now = self.now;
        let timeout = self.cfg.call_timeout;
        let mut expired = Vec::new();
        self.pending.retain(|c| {
            let keep = now.saturating_sub(c.issued) < timeout;
            if !keep {
                expired.push((c.kind.clone(), c.issued));
            }
            keep
        });
        for (kind, issued) in expired {
            self.counters.call_timeouts += 1;
            self.log(
                LogLevel::Warn,
                format!("API call {kind:?} got no result within {timeout:?}; retrying"),
            );
            let err = CloudError::Unavailable("no result within call_timeout".into());
            match kind {
                CallKind::Describe => self.on_described(CallId(0), now, Err(err)),
                CallKind::Associate { eip, target } => self.on_associated(eip, target, Err(err)),
                CallKind::WriteWitness => self.on_witness_written(issued, Err(err)),
                CallKind::ReadWitnesses { eni_ids } => self.on_witnesses(&eni_ids, 0, Err(err)),
            }
        }
    }

    pub(super) fn release(&mut self, kind: CallKind) {
        match kind {
            CallKind::Associate { eip, .. } => self.eips[eip].pending = None,
            CallKind::Describe | CallKind::WriteWitness | CallKind::ReadWitnesses { .. } => {}
        }
    }

    pub(super) fn api_failed(&mut self, what: &str, err: &CloudError) {
        self.counters.api_errors += 1;
        let (level, tail) = if err.is_retryable() {
            (LogLevel::Warn, "will retry with backoff")
        } else {
            (
                LogLevel::Error,
                "not retryable; backing off longer, will keep reconciling",
            )
        };
        self.log(level, format!("{what} failed: {err}; {tail}"));
    }

    pub(super) fn backoff(&mut self, attempts: u32, retryable: bool) -> Duration {
        let base = if retryable {
            let exp = self
                .cfg
                .backoff_min
                .saturating_mul(1u32 << attempts.min(16));
            exp.min(self.cfg.backoff_max)
        } else {
            self.cfg.backoff_max * 2
        };
        // Jitter in [base/2, base] so that nodes hitting the same throttle spread out.
        self.rng.between(base / 2, base)
    }

    pub(super) fn spend(&mut self) -> bool {
        self.spend_n(1)
    }

    /// Spends for a call of `requests` HTTP requests (each up to `requests_per_call` attempts),
    /// leaving the next witness write's cost in the bucket (see `spend_for_witness_write`).
    ///
    /// The reserve is what the bucket will not refill by the time the next write is due: right
    /// after a write (7 s to go, a token every 3 s at 20 a minute) nothing is held back, so a
    /// takeover's describe and associate are not slowed once a throttled API recovers; just
    /// before a write, its whole cost is.
    pub(super) fn spend_n(&mut self, requests: u32) -> bool {
        let reserve = if self.cfg.witness.enabled && self.health.healthy && !self.stopped {
            let per_sec = f64::from(self.cfg.api_budget_per_minute) / 60.0;
            let until = self
                .next_witness_write
                .saturating_sub(self.now)
                .as_secs_f64();
            (f64::from(self.cfg.requests_per_call.max(1)) - until * per_sec).max(0.0)
        } else {
            0.0
        };
        // Retrying against a throttling API spends only the upper half of the bucket: the
        // lower half is the takeover's once the API answers again (issue 17: healing within
        // seconds of the recovery, not after the bucket refilled).
        let reserve = if self.api_throttled {
            reserve + f64::from(self.cfg.api_budget_per_minute) / 2.0
        } else {
            reserve
        };
        self.spend_inner(requests, reserve)
    }

    /// Our witness write is our lease: every other call leaves its cost in the bucket, so
    /// describes and reads retrying against a throttled or failing API cannot starve it. A
    /// node whose budget they drained stopped writing while alive, its stamp went stale, and
    /// a partitioned peer "proved" it dead and took its EIP back (sim seed 55621).
    pub(super) fn spend_for_witness_write(&mut self) -> bool {
        self.spend_inner(1, 0.0)
    }

    fn spend_inner(&mut self, requests: u32, reserve: f64) -> bool {
        let per_sec = f64::from(self.cfg.api_budget_per_minute) / 60.0;
        let cap = f64::from(self.cfg.api_budget_per_minute);
        let elapsed = self.now.saturating_sub(self.tokens_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(cap);
        self.tokens_at = self.now;
        // Each call may cost up to requests_per_call HTTP requests (SDK retries): charge them
        // all, so the budget bounds requests on the wire, not calls.
        let cost = f64::from(self.cfg.requests_per_call.max(1) * requests.max(1));
        // A bucket too small for both (a tiny api_budget_per_minute) skips the reserve.
        let need = (cost + reserve).min(cap.max(cost));
        if self.tokens >= need {
            self.tokens -= cost;
            self.counters.api_calls += 1;
            self.budget_blocked = false;
            true
        } else {
            if !self.budget_blocked {
                self.log(
                    LogLevel::Warn,
                    "API budget exhausted: deferring EC2 calls".into(),
                );
            }
            self.counters.api_budget_deferrals += 1;
            self.budget_blocked = true;
            self.budget_need = need.ceil() as u32;
            false
        }
    }
}
