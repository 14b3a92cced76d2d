//! Where every Elastic IP should be and who moves it: the plan every node computes identically
//! from its own view (`plan`), the associates this node issues (`decide`), and what EC2 says
//! (`maybe_describe`, `on_described`, `on_associated`).

use sha2::{Digest, Sha256};

use super::*;

fn rendezvous(allocation_id: &str, node: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(allocation_id.as_bytes());
    h.update([0u8]);
    h.update(node.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

impl Brain {
    pub(super) fn locate(&self, p: &Placement) -> Option<(usize, Slot)> {
        let i = self.cfg.nodes.iter().position(|n| n.eni_id == p.eni_id)?;
        let n = &self.cfg.nodes[i];
        let slot = if n.primary_ip == p.private_ip {
            Slot::Primary
        } else if let Some(k) = n.secondary_ips.iter().position(|ip| *ip == p.private_ip) {
            Slot::Secondary(k)
        } else {
            Slot::Other
        };
        Some((i, slot))
    }

    pub(super) fn target(&self, d: &Decision) -> Option<Placement> {
        let n = &self.cfg.nodes[d.holder?];
        match d.slot? {
            Slot::Primary => Some(n.primary()),
            Slot::Secondary(k) => n.secondary(k),
            Slot::Other => None,
        }
    }

    /// Whether an EIP sitting on down node `h` is safe to take: `h` cannot be alive and
    /// deliberately holding it behind a partition.
    pub(super) fn stranded(&self, h: usize, eip: usize) -> bool {
        if h == self.me {
            // We are down ourselves (unhealthy, stopping): no partition hides us from us
            // (sim seed 9824: an unhealthy holder left the owner's reclaim unagreed).
            return true;
        }
        let p = &self.peers[h];
        match p.state {
            PeerState::Unhealthy => true,
            // A leaver holds what it held when it said so. An EIP that arrived on it since
            // proves a new incarnation alive behind a partition (sim seed 4554: we never heard
            // its restart, so it still looked "leaving" to us while it re-took EIPs).
            PeerState::Leaving => !self.moved_while_silent(h, eip),
            // A stale witness is only recorded while our own witness writes succeed (so the
            // API is healthy), which makes it proof of death on its own.
            PeerState::Dead => {
                p.last_heard.is_none()
                    || self.proven_dead(p)
                    || self.refused(p)
                    || self.held_while_heard(h, eip)
                    || self.arrival_unknowable(h, eip)
            }
            _ => false,
        }
    }

    /// The EIP arrived on `h` after we last heard `h`: only `h` itself could have put it there
    /// (nodes only associate onto themselves), so `h` is alive behind a partition.
    pub(super) fn moved_while_silent(&self, h: usize, eip: usize) -> bool {
        let p = &self.peers[h];
        matches!(p.state, PeerState::Dead | PeerState::Leaving)
            && p.last_heard.is_some()
            && !self.proven_dead(p)
            && !self.refused(p)
            && !self.held_while_heard(h, eip)
            && !self.arrival_unknowable(h, eip)
    }

    /// Without the witness: we last heard `h` before our first observation of the EIP (we
    /// restarted and EC2 was unreadable while `h` was still heard), so nothing says the EIP
    /// arrived on `h` while it was silent. With the witness a read settles it (proof or fresh
    /// stamp); without it nothing ever would, and waiting would leave the EIP dark on a node
    /// that may be gone for good (sim seed 68950: both nodes restarted in an API outage, lb2
    /// died before lb1's first describe, lb1's EIP stayed on dead lb2 for ever). If `h` is in
    /// fact alive behind a partition, this costs one extra move, never a ping-pong: `h` then
    /// sees the EIP arrive on us while we are silent to it and leaves it.
    pub(super) fn arrival_unknowable(&self, h: usize, eip: usize) -> bool {
        let p = &self.peers[h];
        !self.cfg.witness.enabled
            && p.last_heard
                .is_some_and(|l| self.eips[eip].first_seen_at.is_some_and(|first| l < first))
    }

    /// A witness proof of death no older than stale_after (older ones are re-read first, see
    /// `Verdict::Stale`).
    pub(super) fn proven_dead(&self, p: &Peer) -> bool {
        matches!(p.witness, Some(Verdict::Stale { at })
            if self.now.saturating_sub(at) <= self.cfg.witness.stale_after)
    }

    /// Whether our latest observation puts any EIP on node `h`.
    pub(super) fn holds_observed(&self, h: usize) -> bool {
        self.eips.iter().any(|e| {
            e.observed
                .as_ref()
                .and_then(|o| o.placement.as_ref())
                .and_then(|p| self.locate(p))
                .is_some_and(|(n, _)| n == h)
        })
    }

    /// Evidence that `h` already held the EIP while we could still hear it: we observed it
    /// there by then, or `h` announced it after we last saw it elsewhere.
    pub(super) fn held_while_heard(&self, h: usize, eip: usize) -> bool {
        let p = &self.peers[h];
        let t = &self.eips[eip];
        (h < 128 && t.agreed_holders & (1u128 << h) != 0)
            || p.last_heard.is_some_and(|l| {
                l >= t.arrived_seen_at
                    || (l >= t.elsewhere_at && p.last.held_eips.contains(&t.allocation_id))
            })
    }

    pub(super) fn failback_ready(&self, owner: usize, holder: usize) -> bool {
        let hold = self.cfg.failback_hold;
        let now = self.now;
        if owner == self.me {
            let self_steady = self.self_up_since.is_some_and(|t| now >= t + hold);
            let holder_agrees = holder == self.me
                || self.peers[holder]
                    .sees_me_since
                    .is_some_and(|t| now >= t + hold);
            self_steady && holder_agrees
        } else {
            self.peers[owner].up_since.is_some_and(|t| now >= t + hold)
        }
    }

    /// The desired holder of every EIP, and whether some orphan needs a taker (then old proofs
    /// of death are re-read: see `unproven_dead`).
    pub(super) fn plan(&self) -> (Vec<Decision>, bool) {
        let n = self.cfg.nodes.len();
        let live: Vec<Live> = (0..n).map(|i| self.live(i)).collect();
        let mut free: Vec<Vec<bool>> = self
            .cfg
            .nodes
            .iter()
            .map(|nd| vec![true; nd.secondary_ips.len()])
            .collect();
        let located: Vec<Option<(usize, Slot)>> = self
            .eips
            .iter()
            .map(|e| {
                e.observed
                    .as_ref()
                    .and_then(|o| o.placement.as_ref())
                    .and_then(|p| self.locate(p))
            })
            .collect();
        for (h, slot) in located.iter().flatten() {
            if let Slot::Secondary(k) = slot {
                free[*h][*k] = false;
            }
        }
        let stay = |h: usize, slot: Slot, why| Decision {
            holder: Some(h),
            slot: Some(slot),
            why,
        };
        let wait = |why| Decision {
            holder: None,
            slot: None,
            why,
        };
        // A peer declared dead only because its witness stayed unreadable (an API outage) may
        // be alive behind a partition: it stays a candidate for *other* orphans, so both sides
        // of such a split pick the same taker (seed 211: one orphan moved once per side). So
        // does one proven dead longer than stale_after ago and silent since: it may have
        // restarted behind a partition (seed 4554); its proof is re-read before anyone moves.
        // Likewise one this incarnation never heard (we restarted behind a partition: seed 4554).
        let unproven_dead = |i: usize| {
            let p = &self.peers[i];
            self.cfg.witness.enabled
                && p.state == PeerState::Dead
                && !self.proven_dead(p)
                && !self.refused(p)
        };
        let mut out = Vec::with_capacity(self.eips.len());
        let mut orphans = Vec::new();
        let mut proof_wanted = false;
        for (e, t) in self.eips.iter().enumerate() {
            let owner = t.owner;
            if t.observed.is_none() {
                out.push(wait("no observation yet"));
                continue;
            }
            let holder = located[e];
            let d = match live[owner] {
                Live::Unknown => wait("owner state unknown (init, suspect or witnessed)"),
                Live::Up => match holder {
                    Some((h, Slot::Primary)) if h == owner => stay(owner, Slot::Primary, "home"),
                    Some((h, slot)) if h != owner && live[h] == Live::Up => {
                        if !self.cfg.auto_failback {
                            stay(h, slot, "auto_failback off: stays with its live holder")
                        } else if self.failback_ready(owner, h) {
                            stay(owner, Slot::Primary, "failback: owner steadily alive")
                        } else {
                            stay(h, slot, "failback hold: owner not steadily alive yet")
                        }
                    }
                    Some((h, _)) if h != owner && live[h] == Live::Unknown => {
                        wait("holder state unknown")
                    }
                    Some((h, _)) if h != owner && !self.stranded(h, e) => {
                        wait("partition suspected: moved onto a node while it was silent to us")
                    }
                    _ => stay(owner, Slot::Primary, "owner up"),
                },
                Live::Down => match holder {
                    Some((h, Slot::Secondary(k))) if h != owner && live[h] == Live::Up => {
                        stay(h, Slot::Secondary(k), "survivor keeps it")
                    }
                    Some((h, _)) if h != owner && live[h] == Live::Unknown => {
                        wait("holder state unknown")
                    }
                    Some((h, _)) if h != owner && live[h] == Live::Down && !self.stranded(h, e) => {
                        wait("partition suspected: moved onto a node while it was silent to us")
                    }
                    // Owner and holder both silent, neither proven dead (an API outage kept
                    // their witnesses unreadable): both may be alive behind a partition, and
                    // the owner may be reclaiming it; moving it between them helps nobody
                    // (sim seed 3691). Once reads work, a proof comes within one read.
                    Some((h, _)) if h != owner && unproven_dead(h) && unproven_dead(owner) => {
                        proof_wanted = true;
                        wait("owner and holder silent, neither proven dead: waiting for proof")
                    }
                    // The owner is silent without proof of death (an API outage kept its
                    // witness unreadable past the grace) and its EIP sits on another node that
                    // is down: if the owner is alive behind a partition it reclaims the EIP
                    // itself, and a takeover now would be a second move for one event (sim seed
                    // 12914). Once reads work, a proof (or a fresh stamp) comes within one read.
                    // Old proofs are re-read while it waits (`proof_wanted`; sim seed 7697).
                    Some((h, _)) if h != owner && unproven_dead(owner) => {
                        proof_wanted = true;
                        wait("owner silent, not proven dead: it may be reclaiming; waiting for proof")
                    }
                    // It reached its owner after we last heard the owner, which is dead to us
                    // without proof: only the owner moves an EIP onto itself, so it was alive
                    // then (an agreed failback executed late behind a partition in an API
                    // outage: sim seed 33508). Wait for a proof rather than take it back.
                    // Likewise if this incarnation never heard the owner but saw the EIP
                    // arrive on it (not merely found it there): the owner put it there, alive
                    // behind a partition (sim seed 42480: we restarted during a split and an
                    // API outage, took it from its home after the grace, and the owner took
                    // it back, and we again).
                    Some((h, _))
                        if h == owner
                            && unproven_dead(owner)
                            && match self.peers[owner].last_heard {
                                Some(l) => t.arrived_seen_at > l,
                                None => t.first_seen_at.is_some_and(|f| t.arrived_seen_at > f),
                            } =>
                    {
                        proof_wanted = true;
                        wait("owner reclaimed it after we last heard it, not proven dead: waiting for proof")
                    }
                    Some((h, _)) if h == owner && self.moved_while_silent(h, e) => {
                        wait("partition suspected: owner reclaimed it while silent to us")
                    }
                    _ => {
                        orphans.push(e);
                        wait("orphaned")
                    }
                },
            };
            out.push(d);
        }
        let orphans_waiting = !orphans.is_empty() || proof_wanted;
        // A peer whose witness verdict is still pending (Suspect) ranks too: if it wins, we wait
        // for its verdict (one read) rather than the runner-up taking the EIP while the winner,
        // alive behind a partition, takes it on its side (sim seed 15855).
        let candidate = |i: usize| {
            live[i] == Live::Up
                || (i != self.me
                    && (self.peers[i].state.candidate()
                        || self.peers[i].state == PeerState::Suspect
                        || unproven_dead(i)))
        };
        for e in orphans {
            let t = &self.eips[e];
            let best = (0..n)
                .filter(|&i| i != t.owner && candidate(i) && free[i].iter().any(|f| *f))
                .max_by_key(|&i| rendezvous(&t.allocation_id, &self.cfg.nodes[i].name));
            // An owner that is down only by its health: the taker must itself have been healthy
            // for unhealthy_hold, so that backends failing (or recovering) everywhere at once
            // move nothing. The rendezvous winner waits rather than a runner-up stepping in, so
            // every node still agrees on one taker.
            let by_health = if t.owner == self.me {
                !self.health.healthy && !self.stopped
            } else {
                self.peers[t.owner].state == PeerState::Unhealthy
            };
            let hold = self.cfg.unhealthy_hold;
            let steady = |b: usize| {
                let since = if b == self.me {
                    self.self_up_since
                } else {
                    self.peers[b].up_since
                };
                since.is_some_and(|s| self.now >= s + hold)
            };
            if by_health && best.is_some_and(|b| !steady(b)) {
                out[e] = wait("owner unhealthy: taker not healthy for unhealthy_hold yet");
                continue;
            }
            out[e] = match best.and_then(|b| free[b].iter().position(|f| *f).map(|k| (b, k))) {
                Some((b, k)) => {
                    free[b][k] = false;
                    stay(b, Slot::Secondary(k), "takeover: owner down")
                }
                None => wait("owner down, no live survivor with a free secondary IP"),
            };
        }
        (out, orphans_waiting)
    }

    pub(super) fn decide(&mut self) {
        let (plan, orphans_waiting) = self.plan();
        self.orphans_waiting = orphans_waiting;
        for (e, d) in plan.into_iter().enumerate() {
            if self.eips[e].decision.holder != d.holder {
                let who = d
                    .holder
                    .map_or("nobody".to_string(), |h| self.cfg.nodes[h].name.clone());
                let msg = format!(
                    "EIP {}: desired holder {} ({})",
                    self.eips[e].allocation_id, who, d.why
                );
                self.log(LogLevel::Info, msg);
            }
            if let Some(h) = d.holder {
                if h < 128 && (h == self.me || self.live(h) == Live::Up) {
                    self.eips[e].agreed_holders |= 1u128 << h;
                }
            }
            self.eips[e].decision = d;
            if d.holder != Some(self.me) {
                continue;
            }
            let Some(target) = self.target(&d) else {
                continue;
            };
            let t = &self.eips[e];
            let observed = t.observed.as_ref().and_then(|o| o.placement.as_ref());
            if observed == Some(&target) || t.pending.is_some() || self.now < t.not_before {
                continue;
            }
            if t.observed
                .as_ref()
                .is_some_and(|o| o.issued < self.membership_at)
            {
                // The describe requested by the membership change is on its way.
                continue;
            }
            let owner_leaving = self.peers[t.owner].state == PeerState::Leaving;
            if !owner_leaving && (self.in_initdead() || self.in_holdoff()) {
                continue;
            }
            let allocation_id = t.allocation_id.clone();
            let from = observed.map_or("unassociated".to_string(), |p| {
                format!("{}/{}", p.eni_id, p.private_ip)
            });
            if !self.spend() {
                continue;
            }
            let call = self.new_call();
            self.eips[e].pending = Some(call);
            self.pending.push(Pending {
                call,
                kind: CallKind::Associate {
                    eip: e,
                    target: target.clone(),
                },
                issued: self.now,
            });
            self.log(
                LogLevel::Info,
                format!(
                    "EIP {allocation_id}: associating to {}/{} (was {from}; {})",
                    target.eni_id, target.private_ip, d.why
                ),
            );
            self.actions.push_back(Action::Associate {
                call,
                allocation_id,
                target,
            });
        }
    }

    pub(super) fn maybe_describe(&mut self) {
        if self.now >= self.next_reconcile {
            self.describe_wanted = true;
        }
        if !self.describe_wanted
            || self.eips.is_empty()
            || self.now < self.describe_not_before
            || self.pending.iter().any(|c| c.kind == CallKind::Describe)
        {
            return;
        }
        if !self.spend() {
            return;
        }
        self.describe_wanted = false;
        let interval = self.cfg.reconcile_interval;
        let pct = self.cfg.reconcile_jitter_pct;
        let lo = interval * (100 - pct) / 100;
        let hi = interval * (100 + pct) / 100;
        self.next_reconcile = self.now + self.rng.between(lo, hi);
        let call = self.new_call();
        self.counters.describes += 1;
        self.pending.push(Pending {
            call,
            kind: CallKind::Describe,
            issued: self.now,
        });
        let allocation_ids = self.eips.iter().map(|e| e.allocation_id.clone()).collect();
        self.actions.push_back(Action::Describe {
            call,
            allocation_ids,
        });
    }

    pub(super) fn on_described(
        &mut self,
        call: CallId,
        issued: Duration,
        r: Result<Vec<AddressState>, CloudError>,
    ) {
        match r {
            Ok(list) => {
                self.describe_attempts = 0;
                if self
                    .holdoff_describe_from
                    .is_some_and(|from| call.0 >= from)
                {
                    self.holdoff_describe_from = None;
                }
                for a in list {
                    let Some(e) = self
                        .eips
                        .iter()
                        .position(|t| t.allocation_id == a.allocation_id)
                    else {
                        continue;
                    };
                    if call.0 < self.eips[e].ignore_describes_before {
                        continue;
                    }
                    if let Some(v) = self.eips[e].verifying.take() {
                        let (level, what) = if a.placement.as_ref() == Some(&v) {
                            (LogLevel::Info, "verified")
                        } else {
                            (LogLevel::Warn, "NOT verified")
                        };
                        let msg = format!(
                            "EIP {}: {what}: {}/{} (DescribeAddresses shows it {})",
                            a.allocation_id,
                            v.eni_id,
                            v.private_ip,
                            self.describe_placement(a.placement.as_ref())
                        );
                        self.log(level, msg);
                    }
                    let prev = self.eips[e].observed.as_ref().map(|o| o.placement.clone());
                    let holder_of =
                        |p: Option<&Placement>| p.and_then(|p| self.locate(p)).map(|l| l.0);
                    let new_holder = holder_of(a.placement.as_ref());
                    let prev_holder = self.eips[e]
                        .observed
                        .as_ref()
                        .map(|o| holder_of(o.placement.as_ref()));
                    if new_holder == Some(self.eips[e].owner) {
                        // Home again: past agreements about who holds it are settled.
                        // The owner keeps its own mark if our plan sent it home (a failback we
                        // agreed on): if it dies right after reclaiming, its EIP is stranded,
                        // not "moved behind a partition" (sim seed 1889).
                        let owner = self.eips[e].owner;
                        let mask = if owner < 128 { 1u128 << owner } else { 0 };
                        self.eips[e].agreed_holders &= mask;
                    }
                    match (&self.eips[e].observed, prev_holder) {
                        (Some(_), Some(ph)) if ph == new_holder => {}
                        (Some(o), _) => {
                            self.eips[e].elsewhere_at = o.issued;
                            self.eips[e].arrived_seen_at = issued;
                            // It left its previous holders: what we agreed about them is
                            // over (sim seed 4554: an owner's mark from before it left made
                            // its reclaim behind a partition look like one we agreed on).
                            // The new holder keeps its mark if our plan sent it there.
                            let keep = match new_holder {
                                Some(h) if h < 128 => 1u128 << h,
                                _ => 0,
                            };
                            self.eips[e].agreed_holders &= keep;
                        }
                        (None, _) => {
                            self.eips[e].arrived_seen_at = issued;
                            self.eips[e].first_seen_at = Some(issued);
                        }
                    }
                    if prev.as_ref() != Some(&a.placement) {
                        let msg = format!(
                            "EIP {}: observed {}",
                            a.allocation_id,
                            self.describe_placement(a.placement.as_ref())
                        );
                        self.log(LogLevel::Info, msg);
                    }
                    self.eips[e].observed = Some(Observed {
                        placement: a.placement,
                        issued,
                        at: self.now,
                    });
                }
            }
            Err(err) => {
                self.api_failed("DescribeAddresses", &err);
                let delay = self.backoff(self.describe_attempts, err.is_retryable());
                self.describe_attempts = self.describe_attempts.saturating_add(1);
                self.describe_not_before = self.now + delay;
                self.describe_wanted = true;
            }
        }
    }

    pub(super) fn describe_placement(&self, p: Option<&Placement>) -> String {
        match p {
            None => "unassociated".into(),
            Some(p) => match self.locate(p) {
                Some((n, slot)) => format!(
                    "on {} {} ({}/{})",
                    self.cfg.nodes[n].name,
                    match slot {
                        Slot::Primary => "primary",
                        Slot::Secondary(_) => "secondary",
                        Slot::Other => "unknown IP",
                    },
                    p.eni_id,
                    p.private_ip
                ),
                None => format!("on a foreign ENI {}/{}", p.eni_id, p.private_ip),
            },
        }
    }

    pub(super) fn on_associated(
        &mut self,
        e: usize,
        target: Placement,
        r: Result<String, CloudError>,
    ) {
        self.eips[e].pending = None;
        match r {
            Ok(_association_id) => {
                let me = if self.me < 128 { 1u128 << self.me } else { 0 };
                let t = &mut self.eips[e];
                // Moved onto us: agreements about its earlier holders are over.
                t.agreed_holders &= me;
                t.attempts = 0;
                t.elsewhere_at = t.observed.as_ref().map_or(Duration::ZERO, |o| o.issued);
                t.arrived_seen_at = self.now;
                t.observed = Some(Observed {
                    placement: Some(target.clone()),
                    issued: self.now,
                    at: self.now,
                });
                // Any describe already in flight may predate this move.
                t.ignore_describes_before = self.next_call;
                t.last_move = Some(self.now);
                t.verifying = Some(target.clone());
                t.moves += 1;
                self.counters.moves += 1;
                let msg = format!(
                    "EIP {}: now on {}/{} (verifying)",
                    t.allocation_id, target.eni_id, target.private_ip
                );
                self.log(LogLevel::Info, msg);
                self.describe_wanted = true;
            }
            Err(err) => {
                let what = format!("AssociateAddress {}", self.eips[e].allocation_id);
                self.api_failed(&what, &err);
                let delay = self.backoff(self.eips[e].attempts, err.is_retryable());
                let t = &mut self.eips[e];
                t.attempts = t.attempts.saturating_add(1);
                t.not_before = self.now + delay;
                if !err.is_retryable() {
                    self.describe_wanted = true;
                }
            }
        }
    }
}
