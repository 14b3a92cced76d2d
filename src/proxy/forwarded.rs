//! `option forwardfor except <nets>`: whether to append `x-forwarded-for: <client ip>`.

use std::io::Write;
use std::net::IpAddr;

use ipnet::IpNet;

/// The client address as HAProxy sees it: an IPv4-mapped IPv6 peer (dual-stack listener) is
/// treated as the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// True when the header must be added for this peer. Families must match for `except` to apply.
pub fn should_add(except: &[IpNet], peer: IpAddr) -> bool {
    let peer = canonical(peer);
    !except.iter().any(|n| n.contains(&peer))
}

/// Appends the header line (the client's own X-Forwarded-For lines pass through untouched).
pub fn write_header(out: &mut Vec<u8>, peer: IpAddr) {
    out.extend_from_slice(b"x-forwarded-for: ");
    let _ = write!(out, "{}", canonical(peer));
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn except_net_matches_only_its_family() {
        let except: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(!should_add(&except, "127.0.0.1".parse().unwrap()));
        assert!(should_add(&except, "192.0.2.2".parse().unwrap()));
        assert!(should_add(&except, "::1".parse().unwrap()));
        assert!(!should_add(&except, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(should_add(&[], "127.0.0.1".parse().unwrap()));
    }
}
