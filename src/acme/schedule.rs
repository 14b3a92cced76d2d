//! When to order: pure functions of the certificate on disk, the configuration and the clock
//! (passed in), so the renewal rule and the backoff are tested without a CA.

use std::time::{Duration, SystemTime};

use super::store::CertInfo;

/// First wait after a failed attempt; it doubles up to `[acme] retry_max`.
pub const RETRY_FIRST: Duration = Duration::from_secs(60);

/// When a certificate is due for renewal: `renew_before` ahead of its expiry, but never before
/// two thirds of its lifetime (so a short-lived certificate is not renewed as soon as issued).
pub fn renew_at(cert: &CertInfo, renew_before: Duration) -> SystemTime {
    let lifetime = cert
        .not_after
        .duration_since(cert.not_before)
        .unwrap_or_default();
    cert.not_after - renew_before.min(lifetime / 3)
}

/// Why an order is needed now, or `None` when the certificate on disk is good until `renew_at`.
pub fn reason_to_order(
    cert: Option<&CertInfo>,
    names: &[String],
    renew_before: Duration,
    now: SystemTime,
) -> Option<&'static str> {
    let Some(cert) = cert else {
        return Some("no certificate yet");
    };
    let mut want: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    want.sort();
    want.dedup();
    if want != cert.names {
        return Some("the configured names changed");
    }
    if now >= renew_at(cert, renew_before) {
        return Some("due for renewal");
    }
    None
}

/// The wait after `failures` consecutive failed attempts (1 = the first failure).
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let shift = failures.saturating_sub(1).min(20);
    RETRY_FIRST.saturating_mul(1 << shift).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn cert(lifetime: Duration, names: &[&str]) -> CertInfo {
        let nb = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        CertInfo {
            not_before: nb,
            not_after: nb + lifetime,
            names: names.iter().map(|s| s.to_string()).collect(),
            serial: "01".into(),
        }
    }

    #[test]
    fn ninety_day_certificates_renew_at_day_sixty() {
        let c = cert(90 * DAY, &["a.example"]);
        assert_eq!(renew_at(&c, 30 * DAY), c.not_before + 60 * DAY);
    }

    #[test]
    fn short_lived_certificates_renew_at_two_thirds_not_at_once() {
        let c = cert(6 * DAY, &["a.example"]);
        assert_eq!(renew_at(&c, 30 * DAY), c.not_before + 4 * DAY);
        let c = cert(Duration::from_secs(30), &["a.example"]);
        assert_eq!(
            renew_at(&c, Duration::from_secs(3600)),
            c.not_before + Duration::from_secs(20)
        );
    }

    #[test]
    fn orders_when_missing_renamed_or_due() {
        let names = vec!["b.example".to_string(), "A.example".to_string()];
        let c = cert(90 * DAY, &["a.example", "b.example"]);
        let rb = 30 * DAY;
        assert_eq!(
            reason_to_order(None, &names, rb, c.not_before),
            Some("no certificate yet")
        );
        assert_eq!(reason_to_order(Some(&c), &names, rb, c.not_before), None);
        assert_eq!(
            reason_to_order(Some(&c), &names[..1], rb, c.not_before),
            Some("the configured names changed")
        );
        assert_eq!(
            reason_to_order(Some(&c), &names, rb, c.not_before + 60 * DAY),
            Some("due for renewal")
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_secs(3600);
        assert_eq!(backoff(1, max), Duration::from_secs(60));
        assert_eq!(backoff(2, max), Duration::from_secs(120));
        assert_eq!(backoff(6, max), Duration::from_secs(1920));
        assert_eq!(backoff(7, max), max);
        assert_eq!(backoff(u32::MAX, max), max);
    }
}
