//! The HTTP-01 token table every node answers from: its own ACME challenges and those its peers
//! shared over the heartbeat channel.
//!
//! Lives beside the failover brain, not in it: the brain stays a pure state machine about
//! membership and EIPs. Writers are the ACME task (`add_own`, `withdraw_own`) and the cluster
//! shell (`apply_peer`, `heard`, `outgoing`, `expire`); they take a short mutex and republish an
//! immutable `token -> key authorization` map behind an `ArcSwap`, which the request path reads
//! without a lock (`answer`). Time is passed in (`now`), never read here.
//!
//! Bounds: a peer's entries are capped at [`MAX_PEER_ENTRIES`] and live at most
//! [`challenge_wire::MAX_TTL_MS`]; our own at [`MAX_OWN_ENTRIES`]. An entry ends when its owner
//! withdraws it (the order ended) or its time to live runs out, whichever comes first.
//! Acknowledgements: every node lists the peer tokens it holds (`ack_of`), so the ordering node
//! can wait until every live peer can answer before it asks the CA to validate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::challenge_wire::{
    ack_of, is_base64url, ChallengeEntry, ChallengePayload, ACK_LEN, MAX_ACKS, MAX_ENTRIES,
    MAX_THUMBPRINT, MAX_TOKEN, MAX_TTL_MS,
};

/// Most tokens held for one peer (a certificate with this many names needs as many tokens).
pub const MAX_PEER_ENTRIES: usize = 64;
/// Most tokens of our own at once.
pub const MAX_OWN_ENTRIES: usize = 64;
/// How long a withdrawn token is still announced (with ttl 0) so peers drop it early.
pub const WITHDRAW_ANNOUNCE: Duration = Duration::from_secs(5);
/// The URL path prefix of HTTP-01 (RFC 8555 §8.3).
pub const PATH_PREFIX: &[u8] = b"/.well-known/acme-challenge/";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("key authorization is not `token.thumbprint` in base64url")]
    BadKeyAuthorization,
    #[error("token is not 1..={MAX_TOKEN} base64url characters")]
    BadToken,
    #[error("more than {MAX_OWN_ENTRIES} challenges at once")]
    TooMany,
}

#[derive(Debug)]
struct OwnEntry {
    token: String,
    thumbprint: String,
    expires: Instant,
    withdrawn: Option<Instant>,
    acked_by: Vec<String>,
}

#[derive(Debug)]
struct PeerEntry {
    token: String,
    key_auth: Arc<str>,
    expires: Instant,
}

#[derive(Debug, Default)]
struct State {
    own: Vec<OwnEntry>,
    peers: HashMap<String, Vec<PeerEntry>>,
    heard: HashMap<String, Instant>,
}

/// Counters for the stats (monotonic).
#[derive(Debug, Default)]
pub struct TokenCounters {
    /// Challenge requests answered with a key authorization.
    pub answered: AtomicU64,
    /// Peer entries refused: over `MAX_PEER_ENTRIES`.
    pub peer_refused: AtomicU64,
    /// Peer entries accepted (upserts, repeats included).
    pub peer_received: AtomicU64,
}

/// See the module doc.
#[derive(Debug)]
pub struct TokenTable {
    state: Mutex<State>,
    answers: ArcSwap<HashMap<Box<str>, Arc<str>>>,
    /// Wakes the cluster shell to announce a change at once (not only at the next keepalive).
    pub changed: tokio::sync::Notify,
    pub counters: TokenCounters,
}

impl Default for TokenTable {
    fn default() -> Self {
        TokenTable {
            state: Mutex::new(State::default()),
            answers: ArcSwap::from_pointee(HashMap::new()),
            changed: tokio::sync::Notify::new(),
            counters: TokenCounters::default(),
        }
    }
}

/// Splits `token.thumbprint`.
fn split_key_auth<'a>(token: &str, key_auth: &'a str) -> Option<&'a str> {
    let rest = key_auth.strip_prefix(token)?.strip_prefix('.')?;
    is_base64url(rest, MAX_THUMBPRINT).then_some(rest)
}

impl TokenTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key authorization for a request path `/.well-known/acme-challenge/<token>`, if we hold
    /// that token (ours or a peer's). Lock-free; `None` for any other path.
    pub fn answer(&self, path: &[u8]) -> Option<Arc<str>> {
        let token = path.strip_prefix(PATH_PREFIX)?;
        let token = std::str::from_utf8(token).ok()?;
        let answers = self.answers.load();
        if answers.is_empty() {
            return None;
        }
        let ka = answers.get(token).cloned();
        if ka.is_some() {
            self.counters.answered.fetch_add(1, Ordering::Relaxed);
        }
        ka
    }

    /// Starts answering our own challenge `token` with `key_auth` for `ttl`, and announces it.
    pub fn add_own(
        &self,
        token: &str,
        key_auth: &str,
        ttl: Duration,
        now: Instant,
    ) -> Result<(), TokenError> {
        if !is_base64url(token, MAX_TOKEN) {
            return Err(TokenError::BadToken);
        }
        let thumb = split_key_auth(token, key_auth).ok_or(TokenError::BadKeyAuthorization)?;
        {
            let mut st = self.lock();
            st.own.retain(|e| e.token != token);
            if st.own.len() >= MAX_OWN_ENTRIES {
                return Err(TokenError::TooMany);
            }
            st.own.push(OwnEntry {
                token: token.to_string(),
                thumbprint: thumb.to_string(),
                expires: now + ttl.min(Duration::from_millis(u64::from(MAX_TTL_MS))),
                withdrawn: None,
                acked_by: Vec::new(),
            });
            self.publish(&st, now);
        }
        self.changed.notify_one();
        Ok(())
    }

    /// Stops answering our own `token`; peers are told for [`WITHDRAW_ANNOUNCE`].
    pub fn withdraw_own(&self, token: &str, now: Instant) {
        {
            let mut st = self.lock();
            for e in st.own.iter_mut().filter(|e| e.token == token) {
                e.withdrawn.get_or_insert(now);
            }
            self.publish(&st, now);
        }
        self.changed.notify_one();
    }

    /// Records that `node` was heard (any authenticated datagram).
    pub fn heard(&self, node: &str, now: Instant) {
        let mut st = self.lock();
        match st.heard.get_mut(node) {
            Some(t) => *t = now,
            None => {
                st.heard.insert(node.to_string(), now);
            }
        }
    }

    /// Applies a peer's challenge datagram: its entries (upsert, or withdraw with ttl 0) and its
    /// acknowledgements of our tokens.
    pub fn apply_peer(&self, node: &str, p: &ChallengePayload, now: Instant) {
        let mut st = self.lock();
        for a in &p.acks {
            for e in st.own.iter_mut().filter(|e| ack_of(&e.token) == *a) {
                if !e.acked_by.iter().any(|n| n == node) {
                    e.acked_by.push(node.to_string());
                }
            }
        }
        let list = st.peers.entry(node.to_string()).or_default();
        for e in &p.entries {
            let pos = list.iter().position(|x| x.token == e.token);
            if e.ttl_ms == 0 {
                if let Some(i) = pos {
                    list.swap_remove(i);
                }
                continue;
            }
            let expires = now + Duration::from_millis(u64::from(e.ttl_ms.min(MAX_TTL_MS)));
            let key_auth: Arc<str> = format!("{}.{}", e.token, e.thumbprint).into();
            match pos {
                Some(i) => {
                    list[i].expires = expires;
                    list[i].key_auth = key_auth;
                }
                None if list.len() >= MAX_PEER_ENTRIES => {
                    self.counters.peer_refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                None => list.push(PeerEntry {
                    token: e.token.clone(),
                    key_auth,
                    expires,
                }),
            }
            self.counters.peer_received.fetch_add(1, Ordering::Relaxed);
        }
        if list.is_empty() {
            st.peers.remove(node);
        }
        self.publish(&st, now);
    }

    /// Drops expired entries (and withdrawn ones announced long enough).
    pub fn expire(&self, now: Instant) {
        let mut st = self.lock();
        let before = count(&st);
        st.own
            .retain(|e| e.expires > now && e.withdrawn.is_none_or(|w| now < w + WITHDRAW_ANNOUNCE));
        for list in st.peers.values_mut() {
            list.retain(|e| e.expires > now);
        }
        st.peers.retain(|_, l| !l.is_empty());
        if count(&st) != before {
            self.publish(&st, now);
        }
    }

    /// What to tell peers now: every live own entry (with its remaining time), withdrawn ones
    /// with ttl 0, and acks for the peer tokens we hold, in datagram-sized batches. Empty when
    /// there is nothing to say (no ACME order anywhere: no traffic).
    pub fn outgoing(&self, now: Instant) -> Vec<ChallengePayload> {
        let st = self.lock();
        let entries: Vec<ChallengeEntry> = st
            .own
            .iter()
            .filter(|e| e.expires > now)
            .map(|e| ChallengeEntry {
                token: e.token.clone(),
                thumbprint: e.thumbprint.clone(),
                ttl_ms: if e.withdrawn.is_some() {
                    0
                } else {
                    u32::try_from(e.expires.duration_since(now).as_millis())
                        .unwrap_or(MAX_TTL_MS)
                        .clamp(1, MAX_TTL_MS)
                },
            })
            .collect();
        let acks: Vec<[u8; ACK_LEN]> = st
            .peers
            .values()
            .flatten()
            .filter(|e| e.expires > now)
            .map(|e| ack_of(&e.token))
            .collect();
        let batches = entries
            .len()
            .div_ceil(MAX_ENTRIES)
            .max(acks.len().div_ceil(MAX_ACKS));
        (0..batches)
            .map(|i| ChallengePayload {
                entries: entries
                    .iter()
                    .skip(i * MAX_ENTRIES)
                    .take(MAX_ENTRIES)
                    .cloned()
                    .collect(),
                acks: acks
                    .iter()
                    .skip(i * MAX_ACKS)
                    .take(MAX_ACKS)
                    .copied()
                    .collect(),
            })
            .collect()
    }

    /// Which of `peers` a validation request could still reach without an answer: those that
    /// have not acknowledged every one of `tokens`, except peers heard before but silent for
    /// longer than `fresh` (down). A peer never heard is waited for (it may be starting).
    pub fn unacked_peers(
        &self,
        tokens: &[String],
        peers: &[String],
        fresh: Duration,
        now: Instant,
    ) -> Vec<String> {
        let st = self.lock();
        peers
            .iter()
            .filter(|node| {
                st.heard
                    .get(*node)
                    .is_none_or(|t| now.saturating_duration_since(*t) <= fresh)
            })
            .filter(|node| {
                tokens.iter().any(|tok| {
                    !st.own
                        .iter()
                        .any(|e| &e.token == tok && e.acked_by.iter().any(|n| n == *node))
                })
            })
            .cloned()
            .collect()
    }

    /// Numbers for the stats: own live tokens, tokens held per peer, and the counters.
    pub fn summary(&self) -> serde_json::Value {
        let st = self.lock();
        let mut peers: Vec<(&String, usize)> = st.peers.iter().map(|(n, l)| (n, l.len())).collect();
        peers.sort();
        serde_json::json!({
            "own": st.own.iter().filter(|e| e.withdrawn.is_none()).count(),
            "from_peers": peers.into_iter().map(|(n, c)| serde_json::json!({"node": n, "tokens": c})).collect::<Vec<_>>(),
            "answered": self.counters.answered.load(Ordering::Relaxed),
            "peer_received": self.counters.peer_received.load(Ordering::Relaxed),
            "peer_refused": self.counters.peer_refused.load(Ordering::Relaxed),
        })
    }

    fn publish(&self, st: &State, now: Instant) {
        let mut m: HashMap<Box<str>, Arc<str>> = HashMap::new();
        for e in &st.own {
            if e.withdrawn.is_none() && e.expires > now {
                m.insert(
                    e.token.as_str().into(),
                    format!("{}.{}", e.token, e.thumbprint).into(),
                );
            }
        }
        for e in st.peers.values().flatten() {
            if e.expires > now {
                m.entry(e.token.as_str().into())
                    .or_insert_with(|| e.key_auth.clone());
            }
        }
        self.answers.store(Arc::new(m));
    }
}

fn count(st: &State) -> usize {
    st.own.len() + st.peers.values().map(Vec::len).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOK: &str = "tok-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const THUMB: &str = "thumb_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    fn path(t: &str) -> Vec<u8> {
        [PATH_PREFIX, t.as_bytes()].concat()
    }

    #[test]
    fn own_token_is_answered_until_withdrawn_and_announced_then_forgotten() {
        let t = TokenTable::default();
        let now = Instant::now();
        assert_eq!(t.answer(&path(TOK)), None);
        t.add_own(TOK, &format!("{TOK}.{THUMB}"), Duration::from_secs(60), now)
            .expect("adds");
        assert_eq!(
            t.answer(&path(TOK)).as_deref(),
            Some(format!("{TOK}.{THUMB}").as_str())
        );
        assert_eq!(t.answer(b"/.well-known/acme-challenge/other"), None);
        assert_eq!(t.answer(b"/index.html"), None);
        let out = t.outgoing(now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].entries[0].ttl_ms, 60_000);
        t.withdraw_own(TOK, now);
        assert_eq!(t.answer(&path(TOK)), None, "withdrawn: not answered");
        assert_eq!(
            t.outgoing(now)[0].entries[0].ttl_ms,
            0,
            "announced as withdrawn"
        );
        t.expire(now + WITHDRAW_ANNOUNCE);
        assert!(
            t.outgoing(now + WITHDRAW_ANNOUNCE).is_empty(),
            "then silent"
        );
    }

    #[test]
    fn bad_key_authorizations_are_refused() {
        let t = TokenTable::default();
        let now = Instant::now();
        let ttl = Duration::from_secs(1);
        assert_eq!(
            t.add_own("a/b", "a/b.x", ttl, now),
            Err(TokenError::BadToken)
        );
        assert_eq!(
            t.add_own(TOK, "other.x", ttl, now),
            Err(TokenError::BadKeyAuthorization)
        );
        assert_eq!(
            t.add_own(TOK, &format!("{TOK}.a b"), ttl, now),
            Err(TokenError::BadKeyAuthorization)
        );
    }

    #[test]
    fn peer_tokens_are_answered_acked_bounded_and_expire() {
        let t = TokenTable::default();
        let now = Instant::now();
        let p = ChallengePayload {
            entries: vec![ChallengeEntry {
                token: TOK.into(),
                thumbprint: THUMB.into(),
                ttl_ms: 1_000,
            }],
            acks: vec![],
        };
        t.apply_peer("lb1", &p, now);
        assert_eq!(
            t.answer(&path(TOK)).as_deref(),
            Some(format!("{TOK}.{THUMB}").as_str())
        );
        // We acknowledge what we hold.
        let out = t.outgoing(now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].acks, vec![ack_of(TOK)]);
        // TTL: gone after a second.
        t.expire(now + Duration::from_millis(1_001));
        assert_eq!(t.answer(&path(TOK)), None);
        // A withdrawal ends it before its TTL.
        t.apply_peer("lb1", &p, now);
        let mut w = p.clone();
        w.entries[0].ttl_ms = 0;
        t.apply_peer("lb1", &w, now);
        assert_eq!(t.answer(&path(TOK)), None);
        // Capped per peer; a TTL past the cap is cut to it.
        for i in 0..(MAX_PEER_ENTRIES + 5) {
            let e = ChallengeEntry {
                token: format!("t{i}"),
                thumbprint: THUMB.into(),
                ttl_ms: u32::MAX,
            };
            t.apply_peer(
                "lb1",
                &ChallengePayload {
                    entries: vec![e],
                    acks: vec![],
                },
                now,
            );
        }
        assert_eq!(t.counters.peer_refused.load(Ordering::Relaxed), 5);
        assert!(t.answer(b"/.well-known/acme-challenge/t0").is_some());
        t.expire(now + Duration::from_millis(u64::from(MAX_TTL_MS)));
        assert!(t.answer(b"/.well-known/acme-challenge/t0").is_none());
    }

    #[test]
    fn ordering_node_learns_which_live_peers_can_answer() {
        let t = TokenTable::default();
        let now = Instant::now();
        t.add_own(TOK, &format!("{TOK}.{THUMB}"), Duration::from_secs(60), now)
            .expect("adds");
        let fresh = Duration::from_secs(2);
        let toks = vec![TOK.to_string()];
        let peers = vec!["lb2".to_string(), "lb3".to_string()];
        assert!(
            t.unacked_peers(&toks, &[], fresh, now).is_empty(),
            "no peers"
        );
        assert_eq!(
            t.unacked_peers(&toks, &peers, fresh, now),
            vec!["lb2", "lb3"],
            "never heard: waited for"
        );
        t.heard("lb2", now);
        t.heard("lb3", now);
        assert_eq!(
            t.unacked_peers(&toks, &peers, fresh, now),
            vec!["lb2", "lb3"]
        );
        t.apply_peer(
            "lb2",
            &ChallengePayload {
                entries: vec![],
                acks: vec![ack_of(TOK)],
            },
            now,
        );
        assert_eq!(t.unacked_peers(&toks, &peers, fresh, now), vec!["lb3"]);
        // lb3 goes quiet: no longer waited for.
        assert!(t
            .unacked_peers(&toks, &peers, fresh, now + Duration::from_secs(3))
            .is_empty());
    }

    #[test]
    fn many_entries_and_acks_split_into_datagram_sized_batches() {
        let t = TokenTable::default();
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES * 2 + 1) {
            let tok = format!("own{i}");
            t.add_own(&tok, &format!("{tok}.{THUMB}"), Duration::from_secs(9), now)
                .expect("adds");
        }
        let out = t.outgoing(now);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|b| b.entries.len() <= MAX_ENTRIES));
        assert_eq!(
            out.iter().map(|b| b.entries.len()).sum::<usize>(),
            MAX_ENTRIES * 2 + 1
        );
    }
}
