//! The partition witness: writing our own stamp on our ENI, reading silent peers' stamps and
//! what EC2 says of their instances, and turning them into verdicts (fresh: partition; stale or
//! instance not running: dead).

use super::*;

impl Brain {
    pub(super) fn maybe_witness(&mut self) {
        if !self.cfg.witness.enabled {
            return;
        }
        let now = self.now;
        let me = &self.cfg.nodes[self.me];
        let (eni_id, node) = (me.eni_id.clone(), me.name.clone());
        // A write EC2 has not answered within write_interval is abandoned (its late answer is
        // ignored) and the next one goes out on time: with a stalled API answering 5-20 s late,
        // waiting for each answer let our stamp age past stale_after while we were alive and
        // writing, and a partitioned peer took our EIP (sim seeds 66881, 77660).
        let interval = self.cfg.witness.write_interval;
        self.pending.retain(|c| {
            c.kind != CallKind::WriteWitness || now.saturating_sub(c.issued) < interval
        });
        if self.health.healthy
            && self.now >= self.next_witness_write
            && !self
                .pending
                .iter()
                .any(|c| c.kind == CallKind::WriteWitness)
            && self.spend_for_witness_write()
        {
            let call = self.new_call();
            self.counters.witness_writes += 1;
            self.next_witness_write = self.now + self.cfg.witness.write_interval;
            self.pending.push(Pending {
                call,
                kind: CallKind::WriteWitness,
                issued: self.now,
            });
            self.actions
                .push_back(Action::WriteWitness { call, eni_id, node });
        }
        let eni_ids: Vec<String> = self
            .peers
            .iter()
            .filter(|p| match (p.state, p.witness) {
                (PeerState::Suspect, _) => true,
                (PeerState::SilentWitnessed, Some(Verdict::Fresh { recheck, .. })) => {
                    now >= recheck
                }
                // Declared dead without proof (the witness could not be read in time): keep
                // reading until a verdict, or an EIP it may hold behind a partition stays put.
                (PeerState::Dead, Some(Verdict::Unknown { .. } | Verdict::Fresh { .. })) => {
                    !self.refused(p)
                }
                // An old proof about a node an EIP sits on: refresh it before that EIP moves.
                (PeerState::Dead, Some(Verdict::Stale { at })) => {
                    now >= at + self.cfg.witness.stale_after
                        && !self.refused(p)
                        && (self.orphans_waiting || self.holds_observed(p.node))
                }
                _ => false,
            })
            .map(|p| self.cfg.nodes[p.node].eni_id.clone())
            .collect();
        if eni_ids.is_empty()
            || self.now < self.witness_read_not_before
            || self
                .pending
                .iter()
                .any(|c| matches!(c.kind, CallKind::ReadWitnesses { .. }))
            || !self.spend_n(2)
        {
            return;
        }
        let call = self.new_call();
        self.counters.witness_reads += 1;
        self.pending.push(Pending {
            call,
            kind: CallKind::ReadWitnesses {
                eni_ids: eni_ids.clone(),
            },
            issued: self.now,
        });
        self.actions
            .push_back(Action::ReadWitnesses { call, eni_ids });
    }

    /// `issued`: when the write was sent. Our stamp is only known to be as new as that: a
    /// write that EC2 answers 20 s late (a stalled API) may carry a 20 s old stamp, and peers
    /// reading meanwhile saw ours go stale. So our own writes "work" by issue time: the last
    /// success was issued within stale_after, and the run restarts wherever two successive
    /// successes were issued stale_after or more apart (our stamp was stale in between, so a
    /// peer's stale stamp then says as much about the API as about the peer: sim seed 66881).
    pub(super) fn on_witness_written(&mut self, issued: Duration, r: Result<(), CloudError>) {
        match r {
            Ok(()) => {
                self.witness_write_attempts = 0;
                let stale_after = self.cfg.witness.stale_after;
                let unbroken = self
                    .witness_write_ok
                    .is_some_and(|prev| issued.saturating_sub(prev) < stale_after);
                if !unbroken {
                    self.witness_write_ok_since = Some(issued);
                }
                self.witness_write_ok_since.get_or_insert(issued);
                self.witness_write_ok =
                    Some(self.witness_write_ok.map_or(issued, |p| p.max(issued)));
            }
            Err(err) => {
                self.witness_write_ok_since = None;
                self.api_failed("witness write", &err);
                // Throttled: the next write waits its regular turn. Retrying within the
                // interval spent the whole budget on writes the API refused, and a takeover
                // waited for tokens after the API recovered (8-12 s, issue 17).
                let delay = if matches!(err, CloudError::Throttled(_)) {
                    self.cfg.witness.write_interval
                } else {
                    self.backoff(self.witness_write_attempts, err.is_retryable())
                        .min(self.cfg.witness.write_interval)
                };
                self.witness_write_attempts = self.witness_write_attempts.saturating_add(1);
                self.next_witness_write = self.now + delay;
            }
        }
    }

    pub(super) fn on_witnesses(
        &mut self,
        eni_ids: &[String],
        read_unix: u64,
        r: Result<WitnessRead, CloudError>,
    ) {
        let WitnessRead { stamps, instances } = match r {
            Ok(s) => s,
            Err(err) => {
                self.api_failed("witness read", &err);
                let delay = self.backoff(self.witness_read_attempts, err.is_retryable());
                self.witness_read_attempts = self.witness_read_attempts.saturating_add(1);
                self.witness_read_not_before = self.now + delay;
                return;
            }
        };
        let stale_after = self.cfg.witness.stale_after.as_secs();
        let writes_work = self
            .witness_write_ok
            .is_some_and(|t| self.now.saturating_sub(t) <= self.cfg.witness.stale_after)
            && self
                .witness_write_ok_since
                .is_some_and(|t| self.now.saturating_sub(t) >= self.cfg.witness.stale_after);
        let mut inconclusive = false;
        for eni in eni_ids {
            let Some(i) = self.cfg.nodes.iter().position(|n| n.eni_id == *eni) else {
                continue;
            };
            if i == self.me || self.peers[i].witness.is_none() {
                // Heard again since the read was issued: the heartbeat is better evidence.
                continue;
            }
            let node = self.cfg.nodes[i].name.clone();
            // EC2's own word that the instance is not running is proof on its own: a node
            // behind a partition is `running`, and it holds during an API outage too.
            if let Some(why) = instances
                .iter()
                .find(|f| f.eni_id == *eni)
                .and_then(|f| f.gone.as_deref())
            {
                self.log(
                    LogLevel::Warn,
                    format!("Node {node}: EC2 says {why}: confirmed dead"),
                );
                self.peers[i].witness = Some(Verdict::Stale { at: self.now });
                continue;
            }
            let stamp = stamps
                .iter()
                .filter(|s| s.eni_id == *eni && s.node == node)
                .map(|s| s.stamp_unix)
                .max();
            let verdict = match stamp {
                // Whole seconds on both sides: "stale" from a difference of stale_after on
                // (a stamp written at t is stale between t + stale_after - 1 s and t +
                // stale_after; a live writer's stamp never gets near: interval << stale_after).
                Some(s) if read_unix.saturating_sub(s) < stale_after => {
                    let age = read_unix.saturating_sub(s);
                    // Re-read when the stamp would turn stale if not refreshed; sooner while
                    // the silence is young (EC2 may yet report the instance stopped).
                    let until = self.now + Duration::from_secs(stale_after - age);
                    let silence = self.now.saturating_sub(self.silence_base(&self.peers[i]));
                    let young = self.cfg.deadtime + self.cfg.witness.stale_after;
                    let recheck = if silence < young {
                        until.min(self.now + self.cfg.witness.silent_read_interval)
                    } else {
                        until
                    };
                    Verdict::Fresh {
                        until,
                        recheck,
                        age_secs: age,
                    }
                }
                _ => Verdict::Stale { at: self.now },
            };
            let stale = matches!(verdict, Verdict::Stale { .. });
            if stale && !writes_work {
                self.log(
                    LogLevel::Warn,
                    format!(
                        "Node {node}: witness stale, but our own witness writes are failing too: \
                         inconclusive, re-reading"
                    ),
                );
                // Re-read only once our own writes could have been fine for a whole
                // stale_after (earlier re-reads can only be inconclusive again), and never
                // faster than the backoff: after an outage this is one read, not a storm.
                let delay = self.backoff(self.witness_read_attempts, true);
                self.witness_read_attempts = self.witness_read_attempts.saturating_add(1);
                let writes_work_at = self
                    .witness_write_ok_since
                    .map_or(self.now + self.cfg.witness.write_interval, |t| {
                        t + self.cfg.witness.stale_after
                    });
                self.witness_read_not_before = (self.now + delay).max(writes_work_at);
                inconclusive = true;
                continue;
            }
            if stale {
                let age = stamp.map_or("no stamp".to_string(), |s| {
                    format!("stamp {}s old", read_unix.saturating_sub(s))
                });
                self.log(
                    LogLevel::Warn,
                    format!("Node {node}: witness stale ({age}): confirmed dead"),
                );
            }
            self.peers[i].witness = Some(verdict);
        }
        if !inconclusive {
            self.witness_read_attempts = 0;
        }
    }
}
