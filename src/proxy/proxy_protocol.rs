//! The PROXY protocol (haproxy.org/download/2.6/doc/proxy-protocol.txt), v1 and v2: reading the
//! header a load balancer (AWS NLB, HAProxy `send-proxy[-v2]`) puts before a connection, and
//! writing a v2 header towards a backend (HAProxy `send-proxy-v2`).
//!
//! The parser is sans-io (`parse`), bounded (v1 lines at most 107 bytes, v2 at most
//! `MAX_V2_LEN` bytes of addresses and TLVs) and answers every byte sequence: a header, "need
//! more", or invalid. `read_header` drives it on a socket and never consumes a byte past the
//! header, so what follows (a TLS ClientHello, an HTTP request) reaches the next layer intact.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature.
pub const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// Largest v2 address + TLV block accepted (HAProxy bounds it by its buffer; AWS's TLVs are a
/// few dozen bytes).
pub const MAX_V2_LEN: usize = 2048;

/// What a header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A relayed connection: the client's address and the address it connected to.
    Proxied { src: SocketAddr, dst: SocketAddr },
    /// v2 LOCAL or v1 UNKNOWN (or a v2 family other than TCP): the connection's own addresses
    /// stand (health checks of the load balancer).
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// A complete header of this many bytes.
    Done(Header, usize),
    /// A prefix of a valid header: at least this many bytes in total are needed.
    Partial(usize),
    Invalid(&'static str),
}

/// Parses the start of a connection.
pub fn parse(b: &[u8]) -> Parse {
    if b.is_empty() {
        return Parse::Partial(1);
    }
    if b[0] == b'P' {
        return parse_v1(b);
    }
    if b[0] == b'\r' {
        return parse_v2(b);
    }
    Parse::Invalid("not a PROXY protocol header")
}

fn parse_v1(b: &[u8]) -> Parse {
    let prefix = b"PROXY ";
    let n = b.len().min(prefix.len());
    if b[..n] != prefix[..n] {
        return Parse::Invalid("not a PROXY protocol header");
    }
    let Some(nl) = b.iter().take(V1_MAX).position(|&c| c == b'\n') else {
        return if b.len() >= V1_MAX {
            Parse::Invalid("v1 line longer than 107 bytes")
        } else {
            Parse::Partial(b.len() + 1)
        };
    };
    if nl == 0 || b[nl - 1] != b'\r' {
        return Parse::Invalid("v1 line not ended by CRLF");
    }
    let Ok(line) = std::str::from_utf8(&b[prefix.len()..nl - 1]) else {
        return Parse::Invalid("v1 line not ASCII");
    };
    let mut parts = line.split(' ');
    let proto = parts.next().unwrap_or("");
    if proto == "UNKNOWN" {
        return Parse::Done(Header::Local, nl + 1);
    }
    let fields: Vec<&str> = parts.collect();
    let [s, d, sp, dp] = fields[..] else {
        return Parse::Invalid("v1 line needs 4 fields after the protocol");
    };
    let ip = |t: &str| -> Option<IpAddr> {
        match proto {
            "TCP4" => t.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            "TCP6" => t.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            _ => None,
        }
    };
    // Ports: decimal 0..=65535 without sign or leading zeros (the specification's form).
    let port = |t: &str| -> Option<u16> {
        if t.is_empty() || t.len() > 5 || (t.len() > 1 && t.starts_with('0')) {
            return None;
        }
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    match (ip(s), ip(d), port(sp), port(dp)) {
        (Some(s), Some(d), Some(sp), Some(dp)) => Parse::Done(
            Header::Proxied {
                src: SocketAddr::new(s, sp),
                dst: SocketAddr::new(d, dp),
            },
            nl + 1,
        ),
        _ => Parse::Invalid("v1 addresses or ports invalid"),
    }
}

fn parse_v2(b: &[u8]) -> Parse {
    let n = b.len().min(12);
    if b[..n] != V2_SIG[..n] {
        return Parse::Invalid("not a PROXY protocol header");
    }
    if b.len() < 16 {
        return Parse::Partial(16);
    }
    let ver_cmd = b[12];
    if ver_cmd >> 4 != 2 {
        return Parse::Invalid("v2 version is not 2");
    }
    let len = u16::from_be_bytes([b[14], b[15]]) as usize;
    if len > MAX_V2_LEN {
        return Parse::Invalid("v2 header too long");
    }
    let total = 16 + len;
    if b.len() < total {
        return Parse::Partial(total);
    }
    let body = &b[16..total];
    match ver_cmd & 0x0f {
        // LOCAL: addresses (if any) are ignored.
        0 => Parse::Done(Header::Local, total),
        1 => {
            let fam = b[13];
            match fam {
                // TCP over IPv4
                0x11 => {
                    if body.len() < 12 {
                        return Parse::Invalid("v2 TCP4 block too short");
                    }
                    let s = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
                    let d = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
                    let sp = u16::from_be_bytes([body[8], body[9]]);
                    let dp = u16::from_be_bytes([body[10], body[11]]);
                    Parse::Done(
                        Header::Proxied {
                            src: SocketAddr::new(s.into(), sp),
                            dst: SocketAddr::new(d.into(), dp),
                        },
                        total,
                    )
                }
                // TCP over IPv6
                0x21 => {
                    if body.len() < 36 {
                        return Parse::Invalid("v2 TCP6 block too short");
                    }
                    let mut s = [0u8; 16];
                    let mut d = [0u8; 16];
                    s.copy_from_slice(&body[0..16]);
                    d.copy_from_slice(&body[16..32]);
                    let sp = u16::from_be_bytes([body[32], body[33]]);
                    let dp = u16::from_be_bytes([body[34], body[35]]);
                    Parse::Done(
                        Header::Proxied {
                            src: SocketAddr::new(Ipv6Addr::from(s).into(), sp),
                            dst: SocketAddr::new(Ipv6Addr::from(d).into(), dp),
                        },
                        total,
                    )
                }
                // UNSPEC, UDP, UNIX: keep the connection's own addresses (the specification's
                // rule for families the receiver does not handle).
                0x00 | 0x12 | 0x22 | 0x31 | 0x32 => Parse::Done(Header::Local, total),
                _ => Parse::Invalid("v2 unknown address family"),
            }
        }
        _ => Parse::Invalid("v2 unknown command"),
    }
}

/// Why a header could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Invalid(&'static str),
    Timeout,
}

/// Reads exactly one header from `s` (within `limit`), consuming nothing after it.
pub async fn read_header(
    s: &mut TcpStream,
    limit: std::time::Duration,
) -> Result<Header, ReadError> {
    tokio::time::timeout(limit, read_header_inner(s))
        .await
        .map_err(|_| ReadError::Timeout)?
}

async fn read_header_inner(s: &mut TcpStream) -> Result<Header, ReadError> {
    // 16 bytes: a v2 fixed part, or the start of a v1 line (the shortest, `PROXY UNKNOWN\r\n`,
    // is 15: read 15 first so it is never waited past).
    let mut buf = [0u8; 16 + MAX_V2_LEN];
    let mut have = 0usize;
    let mut want = 15usize;
    loop {
        while have < want {
            let n = s.read(&mut buf[have..want]).await.map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Invalid("connection closed inside the header"));
            }
            have += n;
        }
        match parse(&buf[..have]) {
            Parse::Done(h, used) => {
                debug_assert_eq!(used, have);
                return Ok(h);
            }
            Parse::Invalid(why) => return Err(ReadError::Invalid(why)),
            Parse::Partial(need) if buf[0] == b'P' => {
                // v1: look ahead for the end of the line without consuming past it.
                let mut peek = [0u8; V1_MAX];
                let room = V1_MAX - have;
                let n = s.peek(&mut peek[..room]).await.map_err(ReadError::Io)?;
                if n == 0 {
                    return Err(ReadError::Invalid("connection closed inside the header"));
                }
                want = match peek[..n].iter().position(|&c| c == b'\n') {
                    Some(i) => have + i + 1,
                    // No end yet: take what is there (it is all header) and look again.
                    None => have + n,
                };
                let _ = need;
            }
            Parse::Partial(need) => want = need.min(buf.len()),
        }
    }
}

/// The canonical form of an address for a v2 header (IPv4-mapped IPv6 as IPv4).
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(super::forwarded::canonical(a.ip()), a.port())
}

/// Appends a v2 PROXY header for a connection from `src` to `dst` (the client's view).
pub fn write_v2(out: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr) {
    out.extend_from_slice(&V2_SIG);
    out.push(0x21);
    let (src, dst) = (canonical(src), canonical(dst));
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
}

/// A v2 LOCAL header (health checks: "connection established on purpose by the proxy").
pub const V2_LOCAL: [u8; 16] = [
    b'\r', b'\n', b'\r', b'\n', 0, b'\r', b'\n', b'Q', b'U', b'I', b'T', b'\n', 0x20, 0x00, 0, 0,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_forms() {
        let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /";
        assert_eq!(
            parse(h),
            Parse::Done(
                Header::Proxied {
                    src: sa("192.0.2.1:56324"),
                    dst: sa("198.51.100.2:443")
                },
                45
            )
        );
        let h6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
        assert!(matches!(parse(h6), Parse::Done(Header::Proxied { .. }, 44)));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Parse::Done(Header::Local, 15));
        assert_eq!(
            parse(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n"),
            Parse::Done(Header::Local, 31)
        );
        assert!(matches!(parse(b"PROXY TCP4 1.2.3.4"), Parse::Partial(_)));
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"GET / HTTP/1.1\r\n",
            b"PROXx",
        ] {
            assert!(matches!(parse(bad), Parse::Invalid(_)), "{bad:?}");
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Parse::Invalid(_)));
    }

    #[test]
    fn v2_round_trip_local_and_bounds() {
        for (s, d) in [
            ("192.0.2.1:1234", "198.51.100.2:443"),
            ("[2001:db8::1]:1", "[2001:db8::2]:443"),
        ] {
            let mut out = Vec::new();
            write_v2(&mut out, sa(s), sa(d));
            out.extend_from_slice(b"rest");
            assert_eq!(
                parse(&out),
                Parse::Done(
                    Header::Proxied {
                        src: sa(s),
                        dst: sa(d)
                    },
                    out.len() - 4
                )
            );
            for n in 0..out.len() - 4 {
                assert!(matches!(parse(&out[..n]), Parse::Partial(_)), "{n}");
            }
        }
        // Mixed families go out as IPv6 (v4-mapped).
        let mut out = Vec::new();
        write_v2(&mut out, sa("192.0.2.1:1"), sa("[2001:db8::2]:2"));
        assert_eq!(out[13], 0x21);
        assert_eq!(parse(&V2_LOCAL), Parse::Done(Header::Local, 16));
        // TLVs after the addresses are skipped.
        let mut tlv = Vec::new();
        write_v2(&mut tlv, sa("192.0.2.1:1"), sa("192.0.2.2:2"));
        tlv[15] += 7;
        tlv.extend_from_slice(&[0xea, 0, 4, 1, 2, 3, 4]);
        assert!(matches!(
            parse(&tlv),
            Parse::Done(Header::Proxied { .. }, 35)
        ));
        // Too long, bad version, bad command, short block.
        let mut h = V2_LOCAL;
        h[14] = 0xff;
        assert!(matches!(parse(&h), Parse::Invalid(_)));
        let mut h = V2_LOCAL;
        h[12] = 0x11;
        assert!(matches!(parse(&h), Parse::Invalid(_)));
        let mut h = V2_LOCAL;
        h[12] = 0x2f;
        assert!(matches!(parse(&h), Parse::Invalid(_)));
        let mut h = V2_LOCAL.to_vec();
        h[12] = 0x21;
        h[13] = 0x11;
        h[15] = 4;
        h.extend_from_slice(&[1, 2, 3, 4]);
        assert!(matches!(parse(&h), Parse::Invalid(_)));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_get_an_answer(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            match parse(&b) {
                Parse::Done(_, n) => proptest::prop_assert!(n <= b.len()),
                Parse::Partial(n) => proptest::prop_assert!(n > b.len() && n <= 16 + MAX_V2_LEN),
                Parse::Invalid(_) => {}
            }
        }
    }
}
