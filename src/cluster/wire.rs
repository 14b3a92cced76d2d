//! Heartbeat datagram encoding, HMAC-SHA256 authentication and replay protection.
//!
//! This module owns the bytes on the wire between cluster nodes and the receive-side checks that
//! run before the failover brain ever sees a heartbeat. The brain produces a [`HeartbeatPayload`];
//! the I/O shell seals it with a [`Sender`] (which owns the node name, incarnation, sequence
//! number and signing key) and opens received datagrams with a [`Receiver`] (keyring, replay
//! guard, known node names, drop counters).
//!
//! # Format (version 1), all integers big-endian
//!
//! ```text
//! off  size  field
//! 0    2     magic "EH"
//! 2    1     version = 1
//! 3    1     key id (selects the HMAC key; allows rotation)
//! 4    1     flags: bit0 serving, bit1 leaving; other bits must be zero
//! 5    8     incarnation (random per process start; not ordered)
//! 13   8     sequence number (strictly increasing within an incarnation)
//! 21   8     sender wall clock, unix milliseconds (freshness window, MAX_CLOCK_SKEW_MS)
//! 29   2     healthy backends
//! 31   2     total backends
//! 33   1+n   node name (u8 length, 1..=MAX_NAME bytes of UTF-8)
//! ..   1     number of held EIPs (<= MAX_EIPS), each a u8-length string (1..=MAX_ALLOC_ID)
//! ..   1     number of nodes in the sender's alive view (<= MAX_VIEW), each a u8-length name
//! ..   32    HMAC-SHA256(key[key id], every byte before the tag)
//! ```
//!
//! The limits make the largest possible datagram smaller than [`MAX_DATAGRAM`] (1200 bytes, below
//! any path MTU we will meet), so an encodable heartbeat always fits in one unfragmented packet.
//!
//! # Receive pipeline
//!
//! size check → header/magic/version → key lookup → constant-time MAC check → body parse → self
//! check → known-node check → replay check. The MAC is checked before the body is parsed so that
//! unauthenticated input only ever reaches the fixed-size header code. Each outcome increments
//! exactly one counter in [`RecvCounters`].
//!
//! Replay protection is per sender and incarnation: a 64-bit window of sequence numbers below
//! the newest (an exact copy over a second heartbeat path counts as a *duplicate*, not a
//! replay). Incarnations are random per process start, not ordered, so a node restarted with
//! its clock set back is a restart like any other; the brain switches to a new incarnation only
//! if it is newer by the sender's clock or the current one has gone quiet. Across a *receiver* restart the guard is empty; there
//! the freshness window bounds replays: `Receiver::open_at` drops datagrams whose
//! `sent_unix_ms` is more than [`MAX_CLOCK_SKEW_MS`] (30 s) from the receiver's clock, and the
//! brain ignores a `leaving` from an incarnation it never heard as a member, so a recorded
//! `leaving` replayed after a restart moves nothing.

use std::collections::{HashMap, HashSet};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const MAGIC: [u8; 2] = *b"EH";
pub const VERSION: u8 = 1;
/// Largest datagram we send or accept.
pub const MAX_DATAGRAM: usize = 1200;
pub const TAG_LEN: usize = 32;
pub const MAX_NAME: usize = 32;
pub const MAX_ALLOC_ID: usize = 32;
pub const MAX_EIPS: usize = 8;
pub const MAX_VIEW: usize = 16;

const HEADER_LEN: usize = 33;
const FLAG_SERVING: u8 = 0b01;
const FLAG_LEAVING: u8 = 0b10;

// A compile-time proof that the explicit limits keep every encodable datagram within the MTU
// budget, so `Sender::seal` can never produce something `Receiver::open` calls oversized.
const _: () = assert!(
    HEADER_LEN
        + 1
        + MAX_NAME
        + 1
        + MAX_EIPS * (1 + MAX_ALLOC_ID)
        + 1
        + MAX_VIEW * (1 + MAX_NAME)
        + TAG_LEN
        <= MAX_DATAGRAM
);

/// What the failover brain wants to tell its peers; the sender fills in the rest.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct HeartbeatPayload {
    /// False while this node is unhealthy: peers then treat it as dead (health gating).
    pub serving: bool,
    pub healthy_backends: u16,
    pub total_backends: u16,
    /// Allocation ids of the EIPs the sender's last observation shows on its ENI.
    pub held_eips: Vec<String>,
    /// Graceful stop: peers take over at once instead of waiting for deadtime.
    pub leaving: bool,
    /// Nodes the sender currently considers up (including itself when healthy).
    pub alive_view: Vec<String>,
}

/// A complete, authenticated heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heartbeat {
    pub node: String,
    pub incarnation: u64,
    pub seq: u64,
    pub sent_unix_ms: u64,
    pub payload: HeartbeatPayload,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("string field {field} is empty or longer than {max} bytes")]
    BadString { field: &'static str, max: usize },
    #[error("list {field} has more than {max} entries")]
    TooMany { field: &'static str, max: usize },
    #[error("no signing key with id {0} in the keyring")]
    NoSigningKey(u8),
}

/// Why a received datagram was dropped. Each variant has a counter in [`RecvCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("truncated or malformed datagram")]
    Malformed,
    #[error("datagram larger than {MAX_DATAGRAM} bytes")]
    Oversized,
    #[error("unknown key id")]
    UnknownKey,
    #[error("bad MAC")]
    BadMac,
    #[error("replayed datagram")]
    Replayed,
    #[error("duplicate (the same datagram over another heartbeat path)")]
    Duplicate,
    #[error("sender clock outside the freshness window (replay, or clocks skewed)")]
    Stale,
    #[error("datagram from a node not in the cluster config")]
    UnknownNode,
    #[error("our own datagram looped back")]
    OwnDatagram,
}

/// Receive outcomes, for the stats endpoint. Plain numbers: the shell owns the `Receiver` and
/// copies these out (`Receiver::counters`) whenever it publishes stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecvCounters {
    pub accepted: u64,
    /// Truncated, bad magic/version, bad field encoding, trailing bytes.
    pub malformed: u64,
    pub bad_mac: u64,
    pub unknown_key: u64,
    pub replayed: u64,
    /// Exact copies over a second heartbeat path: expected with several addresses per node.
    pub duplicate: u64,
    /// Sender clock more than `MAX_CLOCK_SKEW_MS` away from ours.
    pub stale: u64,
    pub oversized: u64,
    pub unknown_node: u64,
    /// Our own datagram (e.g. a misconfigured peer list pointing at ourselves).
    pub own: u64,
}

impl RecvCounters {
    fn count(&mut self, outcome: Result<(), DropReason>) {
        let c = match outcome {
            Ok(()) => &mut self.accepted,
            Err(DropReason::Malformed) => &mut self.malformed,
            Err(DropReason::Oversized) => &mut self.oversized,
            Err(DropReason::UnknownKey) => &mut self.unknown_key,
            Err(DropReason::BadMac) => &mut self.bad_mac,
            Err(DropReason::Replayed) => &mut self.replayed,
            Err(DropReason::Duplicate) => &mut self.duplicate,
            Err(DropReason::Stale) => &mut self.stale,
            Err(DropReason::UnknownNode) => &mut self.unknown_node,
            Err(DropReason::OwnDatagram) => &mut self.own,
        };
        *c = c.saturating_add(1);
    }
}

/// HMAC keys by id: signs with one, accepts any. Rotation = add the new key everywhere, switch
/// `signing` everywhere, then remove the old key.
#[derive(Clone)]
pub struct Keyring {
    signing: u8,
    keys: HashMap<u8, Vec<u8>>,
}

impl std::fmt::Debug for Keyring {
    // Never print secrets, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<_> = self.keys.keys().copied().collect();
        ids.sort_unstable();
        f.debug_struct("Keyring")
            .field("signing", &self.signing)
            .field("key_ids", &ids)
            .finish()
    }
}

impl Keyring {
    /// `keys` must contain `signing`; otherwise sealing fails with `EncodeError::NoSigningKey`.
    pub fn new(signing: u8, keys: impl IntoIterator<Item = (u8, Vec<u8>)>) -> Self {
        Keyring {
            signing,
            keys: keys.into_iter().collect(),
        }
    }

    pub fn signing_key_id(&self) -> u8 {
        self.signing
    }

    fn mac(&self, id: u8) -> Option<HmacSha256> {
        // HMAC accepts keys of any length, so new_from_slice cannot fail; map it anyway.
        self.keys
            .get(&id)
            .and_then(|k| HmacSha256::new_from_slice(k).ok())
    }
}

/// Datagrams whose sender clock (`sent_unix_ms`) is further than this from ours, either way, are
/// dropped as stale: a recording cannot be replayed later than this, even to a receiver that
/// restarted and forgot its replay state. Clocks of cluster nodes must agree within it (NTP on
/// EC2 keeps them within milliseconds).
pub const MAX_CLOCK_SKEW_MS: u64 = 30_000;
/// Sequence numbers remembered below the newest, per sender: an exact copy of one of them (the
/// same datagram over a second heartbeat path) is a duplicate, not a replay.
const SEQ_WINDOW: u64 = 64;
/// Incarnations remembered per sender, each with its own sequence window.
const INCARNATIONS_MAX: usize = 8;

#[derive(Debug, Default, Clone)]
struct SeqWindow {
    incarnation: u64,
    max_seq: u64,
    /// Bit k set: `max_seq - k` was accepted.
    seen: u64,
}

/// Per-sender replay state: for each of its last few incarnations, the newest sequence number
/// and a window of those seen below it. Incarnations are not ordered (a node restarted with its
/// clock set back must still be accepted); which incarnation is *current* is the brain's call
/// (a new one replaces a live one only if it is newer by the sender clock, or the old one has
/// gone quiet), so a replayed datagram of an old incarnation cannot lock the current one out.
#[derive(Debug, Default, Clone)]
pub struct ReplayGuard {
    seen: HashMap<String, Vec<SeqWindow>>,
}

impl ReplayGuard {
    /// Accepts and records `(incarnation, seq)` if it is new from `node`; `Duplicate` for an
    /// exact repeat within the window, `Replayed` for anything older than the window.
    pub fn check(&mut self, node: &str, incarnation: u64, seq: u64) -> Result<(), DropReason> {
        let list = self.seen.entry(node.to_owned()).or_default();
        let Some(s) = list.iter_mut().find(|s| s.incarnation == incarnation) else {
            if list.len() >= INCARNATIONS_MAX {
                list.remove(0);
            }
            list.push(SeqWindow {
                incarnation,
                max_seq: seq,
                seen: 1,
            });
            return Ok(());
        };
        if seq > s.max_seq {
            let shift = seq - s.max_seq;
            s.seen = if shift >= SEQ_WINDOW {
                0
            } else {
                s.seen << shift
            };
            s.seen |= 1;
            s.max_seq = seq;
            return Ok(());
        }
        let back = s.max_seq - seq;
        if back >= SEQ_WINDOW {
            return Err(DropReason::Replayed);
        }
        if s.seen & (1 << back) != 0 {
            return Err(DropReason::Duplicate);
        }
        // Older but unseen: reordered between paths. Genuine, but stale for the brain.
        s.seen |= 1 << back;
        Ok(())
    }

    /// `check` as a yes/no.
    pub fn check_and_record(&mut self, node: &str, incarnation: u64, seq: u64) -> bool {
        self.check(node, incarnation, seq).is_ok()
    }
}

/// Seals payloads into signed datagrams; owns the per-incarnation sequence number.
#[derive(Debug, Clone)]
pub struct Sender {
    node: String,
    incarnation: u64,
    next_seq: u64,
    keys: Keyring,
}

impl Sender {
    pub fn new(node: impl Into<String>, incarnation: u64, keys: Keyring) -> Self {
        Sender {
            node: node.into(),
            incarnation,
            next_seq: 1,
            keys,
        }
    }

    /// New keys (reload): the incarnation and sequence numbers carry on.
    pub fn set_keys(&mut self, keys: Keyring) {
        self.keys = keys;
    }

    /// Encodes and signs one heartbeat; every call uses a new sequence number, so send the same
    /// bytes to every peer rather than sealing once per peer.
    pub fn seal(
        &mut self,
        payload: &HeartbeatPayload,
        sent_unix_ms: u64,
    ) -> Result<Vec<u8>, EncodeError> {
        let hb = Heartbeat {
            node: self.node.clone(),
            incarnation: self.incarnation,
            seq: self.next_seq,
            sent_unix_ms,
            payload: payload.clone(),
        };
        let bytes = encode(&hb, &self.keys)?;
        self.next_seq += 1;
        Ok(bytes)
    }

    /// Seals a datagram to be sent later, if ever (a dying process's "leaving"): its sequence
    /// number is `ahead` past the next one, so it still counts as new after the heartbeats sent
    /// meanwhile, and sealing it consumes nothing.
    pub fn seal_ahead(
        &self,
        payload: &HeartbeatPayload,
        sent_unix_ms: u64,
        ahead: u64,
    ) -> Result<Vec<u8>, EncodeError> {
        let hb = Heartbeat {
            node: self.node.clone(),
            incarnation: self.incarnation,
            seq: self.next_seq.saturating_add(ahead),
            sent_unix_ms,
            payload: payload.clone(),
        };
        encode(&hb, &self.keys)
    }
}

/// Opens received datagrams: authenticates, checks the sender, rejects replays, counts outcomes.
#[derive(Debug, Clone)]
pub struct Receiver {
    me: String,
    known: HashSet<String>,
    keys: Keyring,
    replay: ReplayGuard,
    counters: RecvCounters,
}

impl Receiver {
    /// `nodes` are the cluster members whose datagrams we accept (ours may be included).
    pub fn new(
        me: impl Into<String>,
        nodes: impl IntoIterator<Item = String>,
        keys: Keyring,
    ) -> Self {
        Receiver {
            me: me.into(),
            known: nodes.into_iter().collect(),
            keys,
            replay: ReplayGuard::default(),
            counters: RecvCounters::default(),
        }
    }

    /// Opens without the freshness check (tests and tools); the shell uses `open_at`.
    pub fn open(&mut self, datagram: &[u8]) -> Result<Heartbeat, DropReason> {
        let result = self.check(datagram, None);
        self.counters
            .count(result.as_ref().map(|_| ()).map_err(|d| *d));
        result
    }

    /// Opens a datagram received when our wall clock read `now_unix_ms`: also drops it as
    /// `Stale` if its sender clock is more than `MAX_CLOCK_SKEW_MS` away.
    pub fn open_at(&mut self, datagram: &[u8], now_unix_ms: u64) -> Result<Heartbeat, DropReason> {
        let result = self.check(datagram, Some(now_unix_ms));
        self.counters
            .count(result.as_ref().map(|_| ()).map_err(|d| *d));
        result
    }

    pub fn counters(&self) -> RecvCounters {
        self.counters
    }

    /// New keys (reload): the replay state is kept, so a reload opens no replay window.
    pub fn set_keys(&mut self, keys: Keyring) {
        self.keys = keys;
    }

    fn check(
        &mut self,
        datagram: &[u8],
        now_unix_ms: Option<u64>,
    ) -> Result<Heartbeat, DropReason> {
        let hb = decode(datagram, &self.keys)?;
        if hb.node == self.me {
            return Err(DropReason::OwnDatagram);
        }
        if !self.known.contains(&hb.node) {
            return Err(DropReason::UnknownNode);
        }
        if now_unix_ms.is_some_and(|now| now.abs_diff(hb.sent_unix_ms) > MAX_CLOCK_SKEW_MS) {
            return Err(DropReason::Stale);
        }
        self.replay.check(&hb.node, hb.incarnation, hb.seq)?;
        Ok(hb)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str, field: &'static str, max: usize) -> Result<(), EncodeError> {
    if s.is_empty() || s.len() > max {
        return Err(EncodeError::BadString { field, max });
    }
    // Bounded by MAX_NAME / MAX_ALLOC_ID, both < 256.
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_list(
    out: &mut Vec<u8>,
    items: &[String],
    field: &'static str,
    max_items: usize,
    max_len: usize,
) -> Result<(), EncodeError> {
    if items.len() > max_items {
        return Err(EncodeError::TooMany {
            field,
            max: max_items,
        });
    }
    out.push(items.len() as u8);
    for s in items {
        put_str(out, s, field, max_len)?;
    }
    Ok(())
}

/// Encodes and signs `hb` with the keyring's signing key.
pub fn encode(hb: &Heartbeat, keys: &Keyring) -> Result<Vec<u8>, EncodeError> {
    let mut mac = keys
        .mac(keys.signing)
        .ok_or(EncodeError::NoSigningKey(keys.signing))?;
    let p = &hb.payload;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(keys.signing);
    let mut flags = 0;
    if p.serving {
        flags |= FLAG_SERVING;
    }
    if p.leaving {
        flags |= FLAG_LEAVING;
    }
    out.push(flags);
    out.extend_from_slice(&hb.incarnation.to_be_bytes());
    out.extend_from_slice(&hb.seq.to_be_bytes());
    out.extend_from_slice(&hb.sent_unix_ms.to_be_bytes());
    out.extend_from_slice(&p.healthy_backends.to_be_bytes());
    out.extend_from_slice(&p.total_backends.to_be_bytes());
    put_str(&mut out, &hb.node, "node", MAX_NAME)?;
    put_list(&mut out, &p.held_eips, "held_eips", MAX_EIPS, MAX_ALLOC_ID)?;
    put_list(&mut out, &p.alive_view, "alive_view", MAX_VIEW, MAX_NAME)?;
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    Ok(out)
}

/// Bounds-checked reader over untrusted bytes: every accessor returns `Malformed` instead of
/// panicking.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DropReason> {
        if self.buf.len() < n {
            return Err(DropReason::Malformed);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DropReason> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DropReason> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, DropReason> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn string(&mut self, max: usize) -> Result<String, DropReason> {
        let len = usize::from(self.u8()?);
        if len == 0 || len > max {
            return Err(DropReason::Malformed);
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DropReason::Malformed)
    }

    fn list(&mut self, max_items: usize, max_len: usize) -> Result<Vec<String>, DropReason> {
        let n = usize::from(self.u8()?);
        if n > max_items {
            return Err(DropReason::Malformed);
        }
        (0..n).map(|_| self.string(max_len)).collect()
    }
}

/// Authenticates and decodes one datagram. Does not check the sender or replays (see
/// [`Receiver`]). Never panics, whatever the input.
pub fn decode(datagram: &[u8], keys: &Keyring) -> Result<Heartbeat, DropReason> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DropReason::Oversized);
    }
    if datagram.len() < HEADER_LEN + TAG_LEN {
        return Err(DropReason::Malformed);
    }
    if datagram[0..2] != MAGIC || datagram[2] != VERSION {
        return Err(DropReason::Malformed);
    }
    let key_id = datagram[3];
    let mut mac = keys.mac(key_id).ok_or(DropReason::UnknownKey)?;
    let (signed, tag) = datagram.split_at(datagram.len() - TAG_LEN);
    mac.update(signed);
    mac.verify_slice(tag).map_err(|_| DropReason::BadMac)?;

    let mut r = Reader { buf: &signed[4..] };
    let flags = r.u8()?;
    if flags & !(FLAG_SERVING | FLAG_LEAVING) != 0 {
        return Err(DropReason::Malformed);
    }
    let incarnation = r.u64()?;
    let seq = r.u64()?;
    let sent_unix_ms = r.u64()?;
    let healthy_backends = r.u16()?;
    let total_backends = r.u16()?;
    let node = r.string(MAX_NAME)?;
    let held_eips = r.list(MAX_EIPS, MAX_ALLOC_ID)?;
    let alive_view = r.list(MAX_VIEW, MAX_NAME)?;
    if !r.buf.is_empty() {
        return Err(DropReason::Malformed);
    }
    Ok(Heartbeat {
        node,
        incarnation,
        seq,
        sent_unix_ms,
        payload: HeartbeatPayload {
            serving: flags & FLAG_SERVING != 0,
            healthy_backends,
            total_backends,
            held_eips,
            leaving: flags & FLAG_LEAVING != 0,
            alive_view,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring() -> Keyring {
        Keyring::new(
            1,
            [(1, b"secret-one".to_vec()), (2, b"secret-two".to_vec())],
        )
    }

    fn sample() -> Heartbeat {
        Heartbeat {
            node: "lb1".into(),
            incarnation: 1_700_000_000_000_000_000,
            seq: 7,
            sent_unix_ms: 1_700_000_000_123,
            payload: HeartbeatPayload {
                serving: true,
                healthy_backends: 3,
                total_backends: 4,
                held_eips: vec!["eipalloc-0123456789abcdef0".into()],
                leaving: false,
                alive_view: vec!["lb1".into(), "lb2".into()],
            },
        }
    }

    fn receiver() -> Receiver {
        Receiver::new("lb2", ["lb1".to_string(), "lb2".to_string()], ring())
    }

    #[test]
    fn round_trip() {
        let hb = sample();
        let bytes = encode(&hb, &ring()).expect("encodes");
        assert_eq!(decode(&bytes, &ring()), Ok(hb));
    }

    #[test]
    fn largest_heartbeat_fits() {
        let mut hb = sample();
        hb.node = "n".repeat(MAX_NAME);
        hb.payload.held_eips = vec!["a".repeat(MAX_ALLOC_ID); MAX_EIPS];
        hb.payload.alive_view = vec!["v".repeat(MAX_NAME); MAX_VIEW];
        let bytes = encode(&hb, &ring()).expect("encodes");
        assert!(bytes.len() <= MAX_DATAGRAM);
        assert_eq!(decode(&bytes, &ring()), Ok(hb));
    }

    #[test]
    fn encode_rejects_out_of_bounds_fields() {
        let mut hb = sample();
        hb.node = "n".repeat(MAX_NAME + 1);
        assert!(matches!(
            encode(&hb, &ring()),
            Err(EncodeError::BadString { .. })
        ));
        let mut hb = sample();
        hb.payload.alive_view = vec!["x".into(); MAX_VIEW + 1];
        assert!(matches!(
            encode(&hb, &ring()),
            Err(EncodeError::TooMany { .. })
        ));
        let no_signing = Keyring::new(9, [(1, b"k".to_vec())]);
        assert_eq!(
            encode(&sample(), &no_signing),
            Err(EncodeError::NoSigningKey(9))
        );
    }

    #[test]
    fn every_drop_reason_is_counted() {
        let mut rx = receiver();
        let mut tx = Sender::new("lb1", 10, ring());
        let good = tx.seal(&sample().payload, 0).expect("seals");
        assert!(rx.open(&good).is_ok());
        assert_eq!(rx.open(&good), Err(DropReason::Duplicate));

        let mut flipped = tx.seal(&sample().payload, 0).expect("seals");
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(rx.open(&flipped), Err(DropReason::BadMac));
        let mut body_flip = tx.seal(&sample().payload, 0).expect("seals");
        body_flip[20] ^= 1;
        assert_eq!(rx.open(&body_flip), Err(DropReason::BadMac));

        let other_ring = Keyring::new(7, [(7, b"x".to_vec())]);
        let unknown_key = Sender::new("lb1", 10, other_ring)
            .seal(&sample().payload, 0)
            .expect("seals");
        assert_eq!(rx.open(&unknown_key), Err(DropReason::UnknownKey));

        assert_eq!(rx.open(&good[..20]), Err(DropReason::Malformed));
        assert_eq!(rx.open(&[0u8; 1500]), Err(DropReason::Oversized));

        let own = Sender::new("lb2", 1, ring())
            .seal(&sample().payload, 0)
            .expect("seals");
        assert_eq!(rx.open(&own), Err(DropReason::OwnDatagram));
        let stranger = Sender::new("lb9", 1, ring())
            .seal(&sample().payload, 0)
            .expect("seals");
        assert_eq!(rx.open(&stranger), Err(DropReason::UnknownNode));

        assert_eq!(
            rx.counters(),
            RecvCounters {
                accepted: 1,
                malformed: 1,
                bad_mac: 2,
                unknown_key: 1,
                replayed: 0,
                duplicate: 1,
                stale: 0,
                oversized: 1,
                unknown_node: 1,
                own: 1,
            }
        );
    }

    #[test]
    fn key_rotation_accepts_old_and_new() {
        let mut rx = receiver();
        let old = Keyring::new(1, [(1, b"secret-one".to_vec())]);
        let new = Keyring::new(2, [(2, b"secret-two".to_vec())]);
        let a = Sender::new("lb1", 1, old)
            .seal(&sample().payload, 0)
            .expect("seals");
        let b = Sender::new("lb1", 2, new)
            .seal(&sample().payload, 0)
            .expect("seals");
        assert!(rx.open(&a).is_ok());
        assert!(rx.open(&b).is_ok());
    }

    #[test]
    fn replay_guard_incarnations() {
        let mut g = ReplayGuard::default();
        assert!(g.check_and_record("a", 5, 10));
        assert_eq!(g.check("a", 5, 10), Err(DropReason::Duplicate), "same seq");
        assert_eq!(g.check("a", 5, 9), Ok(()), "older, unseen: reordered");
        assert_eq!(g.check("a", 5, 9), Err(DropReason::Duplicate));
        assert!(g.check_and_record("a", 5, 11));
        assert!(g.check_and_record("a", 5, 200));
        assert_eq!(
            g.check("a", 5, 100),
            Err(DropReason::Replayed),
            "below the window"
        );
        // A restart with a *lower* incarnation (clock set back) is a restart, not a replay;
        // the old incarnation keeps its own window (the brain decides which one is current).
        assert!(
            g.check_and_record("a", 4, 1),
            "new incarnation, whatever its value"
        );
        assert_eq!(g.check("a", 5, 200), Err(DropReason::Duplicate));
        assert!(g.check_and_record("a", 4, 2));
        assert!(g.check_and_record("b", 1, 1), "per node");
    }

    #[test]
    fn stale_sender_clock_is_dropped() {
        let mut rx = receiver();
        let mut tx = Sender::new("lb1", 10, ring());
        let now = 1_800_000_000_000;
        let old = tx
            .seal(&sample().payload, now - MAX_CLOCK_SKEW_MS - 1)
            .expect("seals");
        assert_eq!(rx.open_at(&old, now), Err(DropReason::Stale));
        let ahead = tx
            .seal(&sample().payload, now + MAX_CLOCK_SKEW_MS + 1)
            .expect("seals");
        assert_eq!(rx.open_at(&ahead, now), Err(DropReason::Stale));
        let ok = tx
            .seal(&sample().payload, now - MAX_CLOCK_SKEW_MS)
            .expect("seals");
        assert!(rx.open_at(&ok, now).is_ok());
        assert_eq!(rx.counters().stale, 2);
    }

    fn arb_name(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[a-z0-9-]{{1,{max}}}")).expect("valid regex")
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let _ = decode(&bytes, &ring());
            let mut rx = receiver();
            let _ = rx.open(&bytes);
        }

        #[test]
        fn corrupted_valid_datagrams_never_panic(idx in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
            let mut bytes = encode(&sample(), &ring()).expect("encodes");
            let i = idx % bytes.len();
            bytes[i] = val;
            let _ = decode(&bytes, &ring());
            let cut = cut % (bytes.len() + 1);
            let _ = decode(&bytes[..cut], &ring());
        }

        #[test]
        fn valid_heartbeats_round_trip(
            node in arb_name(MAX_NAME),
            incarnation in any::<u64>(),
            seq in any::<u64>(),
            sent in any::<u64>(),
            serving in any::<bool>(),
            leaving in any::<bool>(),
            hb_ in any::<u16>(),
            tb in any::<u16>(),
            held in proptest::collection::vec(arb_name(MAX_ALLOC_ID), 0..=MAX_EIPS),
            view in proptest::collection::vec(arb_name(MAX_NAME), 0..=MAX_VIEW),
        ) {
            let hb = Heartbeat {
                node, incarnation, seq, sent_unix_ms: sent,
                payload: HeartbeatPayload {
                    serving, healthy_backends: hb_, total_backends: tb,
                    held_eips: held, leaving, alive_view: view,
                },
            };
            let bytes = encode(&hb, &ring()).expect("encodes");
            prop_assert!(bytes.len() <= MAX_DATAGRAM);
            prop_assert_eq!(decode(&bytes, &ring()), Ok(hb));
        }
    }
}
