//! Tests of `wire`: encoding limits, every drop reason, key rotation, the replay guard, the
//! freshness window, and property tests over arbitrary and corrupted datagrams.

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
