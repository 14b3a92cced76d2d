//! The ACME challenge datagram: how a node tells its peers which HTTP-01 tokens to answer.
//!
//! A second authenticated message kind on the heartbeat channel, beside the heartbeat itself
//! (`wire`). It shares everything that makes the heartbeat safe: the keyring and HMAC-SHA256
//! tag, the sender's incarnation and *sequence counter* (`wire::Sender::seal_challenges` takes
//! the next number, so one replay window per sender covers both kinds), the freshness window
//! and the known-node check (`wire::Receiver::open_any_at`). Only the body differs.
//!
//! # Format (version 1), all integers big-endian
//!
//! ```text
//! off  size  field
//! 0    2     magic "EC"
//! 2    1     version = 1
//! 3    1     key id
//! 4    1     flags: must be zero (reserved)
//! 5    8     incarnation (as in the sender's heartbeats)
//! 13   8     sequence number (the sender's one counter, shared with heartbeats)
//! 21   8     sender wall clock, unix milliseconds
//! 29   1+n   node name (u8 length, 1..=MAX_NAME)
//! ..   1     entries (<= MAX_ENTRIES), each: token (u8 length, 1..=MAX_TOKEN, base64url),
//!            thumbprint (u8 length, 1..=MAX_THUMBPRINT, base64url), ttl_ms (u32; 0 = withdrawn)
//! ..   1     acks (<= MAX_ACKS), each 8 bytes: SHA-256(token)[..8] of a peer token we hold
//! ..   32    HMAC-SHA256(key[key id], every byte before the tag)
//! ```
//!
//! The key authorization a node answers with is `token "." thumbprint` (RFC 8555 §8.1), so only
//! the thumbprint travels. Entries are upserts with a time to live; the sender repeats its live
//! entries every keepalive and sends withdrawn ones with ttl 0 for a short while, so a lost
//! datagram costs one keepalive and a lost withdrawal costs at most the TTL.

use hmac::Mac;
use sha2::{Digest, Sha256};

use super::wire::{put_str, DropReason, EncodeError, Keyring, Reader, MAX_DATAGRAM, MAX_NAME};
use super::wire::{TAG_LEN, VERSION};

pub const MAGIC: [u8; 2] = *b"EC";
/// ACME tokens are base64url of at least 128 bits (22 characters; Let's Encrypt and Pebble send
/// 43); 64 leaves room.
pub const MAX_TOKEN: usize = 64;
/// The account key's JWK thumbprint: base64url of a SHA-256 (43 characters).
pub const MAX_THUMBPRINT: usize = 64;
pub const MAX_ENTRIES: usize = 6;
pub const MAX_ACKS: usize = 16;
/// Longest time to live a receiver accepts; longer ones are cut to it.
pub const MAX_TTL_MS: u32 = 10 * 60 * 1000;
pub const ACK_LEN: usize = 8;

const HEADER_LEN: usize = 29;

const _: () = assert!(
    HEADER_LEN
        + 1
        + MAX_NAME
        + 1
        + MAX_ENTRIES * (1 + MAX_TOKEN + 1 + MAX_THUMBPRINT + 4)
        + 1
        + MAX_ACKS * ACK_LEN
        + TAG_LEN
        <= MAX_DATAGRAM
);

/// One token to answer (or, with `ttl_ms == 0`, to stop answering).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChallengeEntry {
    pub token: String,
    pub thumbprint: String,
    pub ttl_ms: u32,
}

/// What one challenge datagram carries; the sender fills in the rest.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ChallengePayload {
    pub entries: Vec<ChallengeEntry>,
    /// Peer tokens the sender holds (`ack_of`), so their origin knows who can answer them.
    pub acks: Vec<[u8; ACK_LEN]>,
}

impl ChallengePayload {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.acks.is_empty()
    }
}

/// A complete, authenticated challenge datagram.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChallengeMsg {
    pub node: String,
    pub incarnation: u64,
    pub seq: u64,
    pub sent_unix_ms: u64,
    pub payload: ChallengePayload,
}

/// The acknowledgement of `token`: the first 8 bytes of its SHA-256.
pub fn ack_of(token: &str) -> [u8; ACK_LEN] {
    let d = Sha256::digest(token.as_bytes());
    let mut a = [0u8; ACK_LEN];
    a.copy_from_slice(&d[..ACK_LEN]);
    a
}

/// RFC 4648 §5 alphabet, no padding: what ACME tokens and thumbprints are made of. Anything
/// else is refused on both sides (a token becomes part of a URL path we match).
pub fn is_base64url(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Encodes and signs; `seq` comes from the sender's one counter.
pub(super) fn encode(msg: &ChallengeMsg, keys: &Keyring) -> Result<Vec<u8>, EncodeError> {
    let signing = keys.signing_key_id();
    let mut mac = keys
        .mac(signing)
        .ok_or(EncodeError::NoSigningKey(signing))?;
    let p = &msg.payload;
    if p.entries.len() > MAX_ENTRIES {
        return Err(EncodeError::TooMany {
            field: "entries",
            max: MAX_ENTRIES,
        });
    }
    if p.acks.len() > MAX_ACKS {
        return Err(EncodeError::TooMany {
            field: "acks",
            max: MAX_ACKS,
        });
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(signing);
    out.push(0);
    out.extend_from_slice(&msg.incarnation.to_be_bytes());
    out.extend_from_slice(&msg.seq.to_be_bytes());
    out.extend_from_slice(&msg.sent_unix_ms.to_be_bytes());
    put_str(&mut out, &msg.node, "node", MAX_NAME)?;
    out.push(p.entries.len() as u8);
    for e in &p.entries {
        if !is_base64url(&e.token, MAX_TOKEN) {
            return Err(EncodeError::BadString {
                field: "token",
                max: MAX_TOKEN,
            });
        }
        if !is_base64url(&e.thumbprint, MAX_THUMBPRINT) {
            return Err(EncodeError::BadString {
                field: "thumbprint",
                max: MAX_THUMBPRINT,
            });
        }
        put_str(&mut out, &e.token, "token", MAX_TOKEN)?;
        put_str(&mut out, &e.thumbprint, "thumbprint", MAX_THUMBPRINT)?;
        out.extend_from_slice(&e.ttl_ms.to_be_bytes());
    }
    out.push(p.acks.len() as u8);
    for a in &p.acks {
        out.extend_from_slice(a);
    }
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    Ok(out)
}

/// Whether `datagram` claims to be a challenge datagram (by its magic; nothing is trusted yet).
pub fn is_challenge(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && datagram[0..2] == MAGIC
}

/// Authenticates and decodes one challenge datagram (the MAC is checked before the body is
/// parsed). Does not check the sender, freshness or replays (`wire::Receiver` does). Never
/// panics, whatever the input.
pub fn decode(datagram: &[u8], keys: &Keyring) -> Result<ChallengeMsg, DropReason> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DropReason::Oversized);
    }
    if datagram.len() < HEADER_LEN + TAG_LEN {
        return Err(DropReason::Malformed);
    }
    if datagram[0..2] != MAGIC || datagram[2] != VERSION {
        return Err(DropReason::Malformed);
    }
    let mut mac = keys.mac(datagram[3]).ok_or(DropReason::UnknownKey)?;
    let (signed, tag) = datagram.split_at(datagram.len() - TAG_LEN);
    mac.update(signed);
    mac.verify_slice(tag).map_err(|_| DropReason::BadMac)?;
    let mut r = Reader::new(&signed[4..]);
    if r.u8()? != 0 {
        return Err(DropReason::Malformed);
    }
    let incarnation = r.u64()?;
    let seq = r.u64()?;
    let sent_unix_ms = r.u64()?;
    let node = r.string(MAX_NAME)?;
    let n = usize::from(r.u8()?);
    if n > MAX_ENTRIES {
        return Err(DropReason::Malformed);
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let token = r.string(MAX_TOKEN)?;
        let thumbprint = r.string(MAX_THUMBPRINT)?;
        if !is_base64url(&token, MAX_TOKEN) || !is_base64url(&thumbprint, MAX_THUMBPRINT) {
            return Err(DropReason::Malformed);
        }
        let ttl_ms = r.u32()?;
        entries.push(ChallengeEntry {
            token,
            thumbprint,
            ttl_ms,
        });
    }
    let n = usize::from(r.u8()?);
    if n > MAX_ACKS {
        return Err(DropReason::Malformed);
    }
    let mut acks = Vec::with_capacity(n);
    for _ in 0..n {
        let mut a = [0u8; ACK_LEN];
        a.copy_from_slice(r.take(ACK_LEN)?);
        acks.push(a);
    }
    if !r.is_empty() {
        return Err(DropReason::Malformed);
    }
    Ok(ChallengeMsg {
        node,
        incarnation,
        seq,
        sent_unix_ms,
        payload: ChallengePayload { entries, acks },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring() -> Keyring {
        Keyring::new(1, [(1, b"secret-one".to_vec())])
    }

    fn entry(i: usize) -> ChallengeEntry {
        ChallengeEntry {
            token: format!("tok{i}-{}", "A".repeat(40)),
            thumbprint: "T".repeat(43),
            ttl_ms: 60_000,
        }
    }

    fn sample() -> ChallengeMsg {
        ChallengeMsg {
            node: "lb1".into(),
            incarnation: 9,
            seq: 3,
            sent_unix_ms: 1_800_000_000_000,
            payload: ChallengePayload {
                entries: vec![entry(1), entry(2)],
                acks: vec![ack_of("x"), ack_of("y")],
            },
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let b = encode(&m, &ring()).expect("encodes");
        assert!(is_challenge(&b));
        assert_eq!(decode(&b, &ring()), Ok(m));
    }

    #[test]
    fn largest_fits_and_more_is_refused() {
        let mut m = sample();
        m.node = "n".repeat(MAX_NAME);
        m.payload.entries = (0..MAX_ENTRIES)
            .map(|i| ChallengeEntry {
                token: format!("{i}{}", "t".repeat(MAX_TOKEN - 1)),
                thumbprint: "p".repeat(MAX_THUMBPRINT),
                ttl_ms: u32::MAX,
            })
            .collect();
        m.payload.acks = vec![[7; ACK_LEN]; MAX_ACKS];
        let b = encode(&m, &ring()).expect("encodes");
        assert!(b.len() <= MAX_DATAGRAM);
        assert_eq!(decode(&b, &ring()), Ok(m.clone()));
        m.payload.entries.push(entry(9));
        assert!(matches!(
            encode(&m, &ring()),
            Err(EncodeError::TooMany { .. })
        ));
    }

    #[test]
    fn tokens_outside_base64url_are_refused_both_ways() {
        let mut m = sample();
        m.payload.entries[0].token = "../../etc".into();
        assert!(matches!(
            encode(&m, &ring()),
            Err(EncodeError::BadString { .. })
        ));
        // Forge one past the encoder: right MAC, bad token byte.
        let good = encode(&sample(), &ring()).expect("encodes");
        let body_end = good.len() - TAG_LEN;
        let mut bytes = good[..body_end].to_vec();
        let at = bytes
            .windows(3)
            .position(|w| w == b"tok")
            .expect("token in body");
        bytes[at] = b'/';
        let mut mac = ring().mac(1).expect("key");
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        assert_eq!(decode(&bytes, &ring()), Err(DropReason::Malformed));
    }

    #[test]
    fn tampering_is_a_bad_mac() {
        let mut b = encode(&sample(), &ring()).expect("encodes");
        b[40] ^= 1;
        assert_eq!(decode(&b, &ring()), Err(DropReason::BadMac));
    }

    #[test]
    fn challenge_datagrams_share_the_heartbeat_sequence_and_checks() {
        use super::super::wire::{Datagram, HeartbeatPayload, Receiver, Sender};
        let mut tx = Sender::new("lb1", 5, ring());
        let mut rx = Receiver::new("lb2", ["lb1".to_string(), "lb2".to_string()], ring());
        let now = 1_800_000_000_000;
        let hb = tx.seal(&HeartbeatPayload::default(), now).expect("seals");
        let ch = tx.seal_challenges(&sample().payload, now).expect("seals");
        assert!(matches!(rx.open_any_at(&hb, now), Ok(Datagram::Heartbeat(h)) if h.seq == 1));
        match rx.open_any_at(&ch, now) {
            Ok(Datagram::Challenges(m)) => {
                assert_eq!(
                    (m.node.as_str(), m.seq),
                    ("lb1", 2),
                    "one counter for both kinds"
                );
                assert_eq!(m.payload, sample().payload);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rx.open_any_at(&ch, now), Err(DropReason::Duplicate));
        let old = tx
            .seal_challenges(&sample().payload, now - 31_000)
            .expect("seals");
        assert_eq!(rx.open_any_at(&old, now), Err(DropReason::Stale));
        let stranger = Sender::new("lb9", 1, ring())
            .seal_challenges(&sample().payload, now)
            .expect("seals");
        assert_eq!(rx.open_any_at(&stranger, now), Err(DropReason::UnknownNode));
        let forged = Sender::new("lb1", 5, Keyring::new(1, [(1, b"wrong".to_vec())]))
            .seal_challenges(&sample().payload, now)
            .expect("seals");
        assert_eq!(rx.open_any_at(&forged, now), Err(DropReason::BadMac));
        // A heartbeat-only receiver (a node older than this kind) drops it as malformed.
        let fresh = tx.seal_challenges(&sample().payload, now).expect("seals");
        assert_eq!(rx.open(&fresh), Err(DropReason::Malformed));
        let c = rx.counters();
        assert_eq!((c.accepted, c.duplicate, c.stale, c.bad_mac), (2, 1, 1, 1));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let _ = decode(&bytes, &ring());
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
    }
}
