//! Peer liveness: heartbeats in (`on_heartbeat`), every peer classified from silence, health,
//! "leaving" and the witness verdict (`classify`, `update_peers`), and our own heartbeat out
//! (`payload`, `maybe_heartbeat`).

use super::*;

impl PeerState {
    pub(super) fn liveness(self) -> Live {
        match self {
            PeerState::Alive | PeerState::Warn => Live::Up,
            PeerState::Dead | PeerState::Unhealthy | PeerState::Leaving => Live::Down,
            PeerState::Init
            | PeerState::Suspect
            | PeerState::SilentWitnessed
            | PeerState::Failing => Live::Unknown,
        }
    }

    /// Whether the node may be chosen to take over an orphaned EIP: up, or silent but witnessed
    /// alive. On both sides of a witnessed partition the same node then wins, so an orphaned EIP
    /// moves once, not once per side.
    pub(super) fn candidate(self) -> bool {
        matches!(
            self,
            PeerState::Alive | PeerState::Warn | PeerState::SilentWitnessed
        )
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            PeerState::Init => "init",
            PeerState::Alive => "up",
            PeerState::Warn => "late heartbeat",
            PeerState::Suspect => "silent past deadtime, checking witness",
            PeerState::SilentWitnessed => {
                "silent but witness fresh: partition suspected, not taking over"
            }
            PeerState::Dead => "dead",
            PeerState::Unhealthy => "unhealthy (not serving)",
            PeerState::Failing => {
                "not serving; waiting unhealthy_hold before taking its EIP (everyone's backends down?)"
            }
            PeerState::Leaving => "leaving (graceful stop)",
        }
    }
}

impl Brain {
    /// A heartbeat that `wire::Receiver::open` accepted (authenticated, not replayed).
    pub fn on_heartbeat(&mut self, now: Duration, hb: &Heartbeat) {
        if !self.advance(now) {
            return;
        }
        let Some(idx) = self.cfg.nodes.iter().position(|n| n.name == hb.node) else {
            return;
        };
        if idx == self.me {
            return;
        }
        self.counters.heartbeats_received += 1;
        let me_name = self.cfg.me.clone();
        let now = self.now;
        let quiet_after = self.cfg.keepalive * 2;
        let p = &mut self.peers[idx];
        let restarted = p.incarnation.is_some_and(|i| i != hb.incarnation);
        // Incarnations are not ordered (a restarted node may have its clock set back).
        if p.incarnation == Some(hb.incarnation) && hb.seq <= p.seq {
            // Reordered (the shell's ReplayGuard should have dropped it already): acting on it
            // would roll the peer's state back.
            return;
        }
        if restarted {
            // Another incarnation while the current one still talks: only a newer one (by the
            // sender clock) replaces it; a replayed datagram of an old one must not. After a
            // real restart the old one is quiet, whatever the clocks say.
            let quiet = p
                .last_heard
                .is_none_or(|t| now.saturating_sub(t) >= quiet_after);
            if hb.sent_unix_ms <= p.last_sent_ms && !quiet {
                let msg = format!(
                    "Node {}: datagram of an older incarnation while the current one is alive: \
                     ignored (replay?)",
                    hb.node
                );
                self.log(LogLevel::Info, msg);
                return;
            }
        }
        let p = &mut self.peers[idx];
        let known_alive = p.incarnation == Some(hb.incarnation) && p.heard_alive;
        if hb.payload.leaving && !known_alive {
            // A `leaving` is the first thing we hear from this incarnation: after our own restart
            // that may be a recording of a past stop. Only a peer we heard as a member may hand
            // its EIP over at once; otherwise silence + evidence of death decide, as for a kill.
            let msg = format!(
                "Node {}: says leaving, but this incarnation was never heard alive: ignored",
                hb.node
            );
            self.log(LogLevel::Info, msg);
            return;
        }
        let p = &mut self.peers[idx];
        if !hb.payload.leaving {
            p.heard_alive = true;
        }
        if !hb.payload.serving {
            p.unhealthy_since.get_or_insert(now);
        } else {
            p.unhealthy_since = None;
        }
        p.refused_at = None;
        p.last_sent_ms = hb.sent_unix_ms;
        p.incarnation = Some(hb.incarnation);
        p.seq = hb.seq;
        p.last_heard = Some(now);
        p.last = hb.payload.clone();
        p.witness = None;
        p.witnessed_logged = false;
        if restarted {
            p.sees_me_since = None;
            p.up_since = None;
        }
        if hb.payload.alive_view.contains(&me_name) {
            p.sees_me_since.get_or_insert(now);
        } else {
            p.sees_me_since = None;
        }
        if restarted {
            let msg = format!(
                "Node {}: restarted (incarnation {})",
                hb.node, hb.incarnation
            );
            self.log(LogLevel::Info, msg);
        }
        self.evaluate();
    }

    /// Every heartbeat address of `node` answered "port unreachable" (ICMP; a connected UDP
    /// socket sees `ECONNREFUSED`): its host is up and nothing listens on the heartbeat port, so
    /// the process is gone. A partition or a paused process answers nothing, so this never
    /// fires for them. Counts only when newer than the peer's last heartbeat.
    pub fn on_refused(&mut self, now: Duration, node: &str) {
        if !self.advance(now) {
            return;
        }
        let Some(idx) = self.cfg.nodes.iter().position(|n| n.name == node) else {
            return;
        };
        if idx == self.me {
            return;
        }
        let now = self.now;
        let p = &mut self.peers[idx];
        if p.last_heard.is_some_and(|t| t >= now) {
            return;
        }
        p.refused_at = Some(now);
        self.evaluate();
    }

    /// Positive evidence that the peer's process is gone: its heartbeat port refused after its
    /// last heartbeat, and recently (within deadtime: an old refusal says nothing about now).
    pub(super) fn refused(&self, p: &Peer) -> bool {
        p.refused_at.is_some_and(|t| {
            p.last_heard.is_none_or(|h| t > h) && self.now.saturating_sub(t) <= self.cfg.deadtime
        })
    }

    pub(super) fn classify(&mut self, i: usize) -> PeerState {
        let now = self.now;
        let base = self.silence_base(&self.peers[i]);
        let init_end = self.started + self.cfg.initdead;
        let deadtime = self.cfg.deadtime;
        let witness = self.cfg.witness.clone();
        let p = &self.peers[i];
        let silence = now.saturating_sub(base);
        // Said leaving: down at once. Past deadtime of silence, with the witness, it is judged
        // like any silent peer: a restart we could not hear (behind a partition) must not look
        // like a leaver for ever, or its EIPs look abandoned to us (sim seed 4554).
        if p.last_heard.is_some() && p.last.leaving && (silence <= deadtime || !witness.enabled) {
            return PeerState::Leaving;
        }
        if p.last_heard.is_none() && now < init_end {
            return PeerState::Init;
        }
        if silence <= deadtime {
            if p.last_heard.is_none() {
                return PeerState::Init;
            }
            if !p.last.serving {
                let hold = self.cfg.unhealthy_hold;
                return if p.unhealthy_since.is_some_and(|t| now >= t + hold) {
                    PeerState::Unhealthy
                } else {
                    PeerState::Failing
                };
            }
            return if silence > self.cfg.warntime {
                PeerState::Warn
            } else {
                PeerState::Alive
            };
        }
        if !witness.enabled || self.refused(&self.peers[i]) {
            return PeerState::Dead;
        }
        let p = &mut self.peers[i];
        // "since" is when we started needing a verdict, so the unreadable-witness allowance
        // (stale_after) is granted in full even when the suspicion starts at initdead's end.
        let v = p.witness.get_or_insert(Verdict::Unknown { since: now });
        match *v {
            Verdict::Stale { .. } => PeerState::Dead,
            // Past `until` we re-read; the peer stays witnessed meanwhile (so candidacy doesn't
            // flicker), unless the re-read cannot complete within stale_after.
            Verdict::Fresh { until, .. } if now >= until + witness.unreadable_grace() => {
                PeerState::Dead
            }
            Verdict::Fresh { .. } => PeerState::SilentWitnessed,
            Verdict::Unknown { since } => {
                if now >= since + witness.unreadable_grace() {
                    PeerState::Dead
                } else {
                    PeerState::Suspect
                }
            }
        }
    }

    pub(super) fn update_peers(&mut self) {
        let now = self.now;
        let mut membership_changed = false;
        for i in 0..self.peers.len() {
            if i == self.me {
                continue;
            }
            let new = self.classify(i);
            let old = self.peers[i].state;
            if new == old {
                continue;
            }
            self.peers[i].state = new;
            let (lo, ln) = (old.liveness(), new.liveness());
            if ln == Live::Up && lo != Live::Up {
                self.peers[i].up_since = Some(now);
            }
            if ln != Live::Up {
                self.peers[i].up_since = None;
                self.peers[i].sees_me_since = None;
            }
            if lo != ln || old.candidate() != new.candidate() {
                membership_changed = true;
            }
            let quiet_witness_flip = matches!(
                (old, new),
                (PeerState::SilentWitnessed, PeerState::Suspect)
                    | (PeerState::Suspect, PeerState::SilentWitnessed)
            ) && self.peers[i].witnessed_logged;
            if new == PeerState::SilentWitnessed {
                self.peers[i].witnessed_logged = true;
            }
            if !quiet_witness_flip {
                let level = match new {
                    PeerState::Dead | PeerState::SilentWitnessed | PeerState::Unhealthy => {
                        LogLevel::Warn
                    }
                    _ => LogLevel::Info,
                };
                let why = if new != PeerState::Dead {
                    ""
                } else if self.refused(&self.peers[i]) {
                    " (its heartbeat port refuses: process gone, host up)"
                } else if matches!(self.peers[i].witness, Some(Verdict::Unknown { .. })) {
                    " (witness unreadable for stale_after past deadtime)"
                } else {
                    ""
                };
                let msg = format!(
                    "Node {}: status {}{why}",
                    self.cfg.nodes[i].name,
                    new.describe(),
                );
                self.log(level, msg);
            }
        }
        if membership_changed {
            // Tell peers at once: a returning owner's failback hold counts from when its holder
            // lists it as alive, so that must not wait for the next keepalive.
            self.next_heartbeat = now;
            self.describe_wanted = true;
            self.membership_at = now;
        }
    }

    pub(super) fn live(&self, i: usize) -> Live {
        if i == self.me {
            if self.health.healthy && !self.stopped {
                Live::Up
            } else {
                Live::Down
            }
        } else {
            self.peers[i].state.liveness()
        }
    }

    pub(super) fn payload(&self) -> HeartbeatPayload {
        let me = &self.cfg.nodes[self.me];
        let held_eips = self
            .eips
            .iter()
            .filter(|e| {
                e.observed
                    .as_ref()
                    .and_then(|o| o.placement.as_ref())
                    .is_some_and(|p| p.eni_id == me.eni_id)
            })
            .map(|e| e.allocation_id.clone())
            .collect();
        let alive_view = (0..self.cfg.nodes.len())
            .filter(|&i| self.live(i) == Live::Up)
            .map(|i| self.cfg.nodes[i].name.clone())
            .collect();
        HeartbeatPayload {
            serving: self.health.healthy,
            healthy_backends: self.health.healthy_backends,
            total_backends: self.health.total_backends,
            held_eips,
            leaving: false,
            alive_view,
        }
    }

    pub(super) fn maybe_heartbeat(&mut self) {
        if self.now < self.next_heartbeat {
            return;
        }
        self.next_heartbeat = self.now + self.cfg.keepalive;
        self.counters.heartbeats_sent += 1;
        let payload = self.payload();
        self.actions.push_back(Action::SendHeartbeat(payload));
    }
}
