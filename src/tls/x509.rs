//! Just enough X.509 DER reading to choose a certificate by name: the subject alternative DNS
//! names, the subject common name, the serial and the validity period.
//!
//! rustls verifies nothing about our own certificates and webpki exposes no name list, so this
//! walks the DER itself. It reads only what it needs, checks every length against the input and
//! returns `None` for anything it does not understand (never panics: certificate files are
//! operator input, and a reload must report a bad one, not crash).

/// What the certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names from the subjectAltName extension, lowercased (`*.example.com` kept as is).
    pub dns_names: Vec<String>,
    /// The subject's common name, lowercased, if it has one.
    pub common_name: Option<String>,
    /// The serial number in upper-case hex (as `openssl x509 -serial` prints it).
    pub serial_hex: String,
    /// notBefore / notAfter as Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl CertInfo {
    /// The names a client may ask for by SNI: the SAN DNS names, or the CN when there are none
    /// (HAProxy reads both; browsers ignore a CN when SANs exist).
    pub fn names(&self) -> Vec<String> {
        if !self.dns_names.is_empty() {
            return self.dns_names.clone();
        }
        self.common_name.iter().cloned().collect()
    }
}

/// One DER element: (tag, content, rest of the input).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
/// 2.5.29.17 subjectAltName.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
/// 2.5.4.3 commonName.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

/// Parses the parts of `der` (one certificate) that name it.
pub fn parse(der: &[u8]) -> Option<CertInfo> {
    let (tag, cert, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    let (mut tag, mut val, mut next) = tlv(rest)?;
    if tag == 0xa0 {
        // [0] version
        rest = next;
        (tag, val, next) = tlv(rest)?;
    }
    if tag != INTEGER {
        return None;
    }
    let serial_hex = val.iter().map(|b| format!("{b:02X}")).collect::<String>();
    let serial_hex = match serial_hex.strip_prefix("00") {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => serial_hex,
    };
    rest = next;
    let (_, _sig_alg, r) = tlv(rest)?;
    let (_, _issuer, r) = tlv(r)?;
    let (tag, validity, r) = tlv(r)?;
    if tag != SEQUENCE {
        return None;
    }
    let (t1, nb, vr) = tlv(validity)?;
    let (t2, na, _) = tlv(vr)?;
    let not_before = parse_time(t1, nb)?;
    let not_after = parse_time(t2, na)?;
    let (tag, subject, r) = tlv(r)?;
    if tag != SEQUENCE {
        return None;
    }
    let common_name = common_name(subject);
    let (_, _spki, mut r) = tlv(r)?;
    let mut dns_names = Vec::new();
    while !r.is_empty() {
        let (tag, val, next) = tlv(r)?;
        r = next;
        if tag != 0xa3 {
            continue; // [1] issuerUniqueID, [2] subjectUniqueID
        }
        let (_, mut exts, _) = tlv(val)?;
        while !exts.is_empty() {
            let (_, ext, next) = tlv(exts)?;
            exts = next;
            let (tag, oid, er) = tlv(ext)?;
            if tag != OID || oid != OID_SAN {
                continue;
            }
            let (mut tag, mut val, mut er) = tlv(er)?;
            if tag == 0x01 {
                // critical BOOLEAN
                (tag, val, er) = tlv(er)?;
            }
            let _ = er;
            if tag != 0x04 {
                return None;
            }
            let (tag, mut names, _) = tlv(val)?;
            if tag != SEQUENCE {
                return None;
            }
            while !names.is_empty() {
                let (tag, name, next) = tlv(names)?;
                names = next;
                // [2] IMPLICIT IA5String dNSName
                if tag == 0x82 {
                    if let Ok(s) = std::str::from_utf8(name) {
                        dns_names.push(s.to_ascii_lowercase());
                    }
                }
            }
        }
    }
    Some(CertInfo {
        dns_names,
        common_name,
        serial_hex,
        not_before,
        not_after,
    })
}

fn common_name(mut subject: &[u8]) -> Option<String> {
    let mut found = None;
    while !subject.is_empty() {
        let (tag, set, next) = tlv(subject)?;
        subject = next;
        if tag != SET {
            continue;
        }
        let (_, atv, _) = tlv(set)?;
        let (tag, oid, r) = tlv(atv)?;
        if tag == OID && oid == OID_CN {
            let (tag, v, _) = tlv(r)?;
            // UTF8String, PrintableString, IA5String, TeletexString
            if matches!(tag, 0x0c | 0x13 | 0x16 | 0x14) {
                found = std::str::from_utf8(v).ok().map(|s| s.to_ascii_lowercase());
            }
        }
    }
    found
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to Unix seconds.
fn parse_time(tag: u8, v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let yy: i64 = s.get(0..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        0x18 if s.len() == 14 => (s.get(0..4)?.parse().ok()?, &s[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (mo, d, h, mi, se) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_serial_and_validity_of_a_generated_certificate() {
        let mut params =
            rcgen::CertificateParams::new(vec!["www.Example.com".into(), "*.example.org".into()])
                .expect("params");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0xab]));
        params.not_before = rcgen::date_time_ymd(2024, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 3, 4);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Cn.Example");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let info = parse(cert.der()).expect("parses");
        assert_eq!(info.dns_names, vec!["www.example.com", "*.example.org"]);
        assert_eq!(info.common_name.as_deref(), Some("cn.example"));
        assert_eq!(info.serial_hex, "01AB");
        assert_eq!(info.not_before, 1_704_153_600);
        assert_eq!(info.not_after, 2_561_500_800); // date -u -d 2051-03-04 +%s
    }

    #[test]
    fn garbage_and_truncations_are_none_never_a_panic() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["a.test".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let der = cert.der().to_vec();
        for n in 0..der.len() {
            let _ = parse(&der[..n]);
        }
        for i in 0..der.len() {
            let mut d = der.clone();
            d[i] ^= 0xff;
            let _ = parse(&d);
        }
        assert!(parse(b"").is_none());
        assert!(parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    }
}
