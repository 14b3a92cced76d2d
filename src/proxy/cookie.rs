//! Cookie persistence on header bytes: find the persistence cookie in a request `Cookie` header
//! and strip it (`indirect`), recognise the application's own persistence `Set-Cookie`, and decide
//! HAProxy's `nocache` cacheability. No allocation except into the caller's output buffer.

/// One `name=value` pair of a Cookie header, as byte offsets into the header value.
#[derive(Debug, Clone, Copy)]
struct Pair {
    /// Content span (blanks trimmed), excluding separators.
    start: usize,
    end: usize,
    /// Offset of `=` within the value, if any.
    eq: Option<usize>,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(v: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && is_blank(v[s]) {
        s += 1;
    }
    while e > s && is_blank(v[e - 1]) {
        e -= 1;
    }
    (s, e)
}

/// Iterates the pairs of a Cookie header value; `;` and `,` both separate pairs (HAProxy does).
fn pairs(v: &[u8]) -> impl Iterator<Item = Pair> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || loop {
        if pos > v.len() {
            return None;
        }
        let rel = v[pos..].iter().position(|&b| b == b';' || b == b',');
        let end = rel.map(|r| pos + r).unwrap_or(v.len());
        let (s, e) = trim(v, pos, end);
        pos = end + 1;
        if s == e {
            continue;
        }
        let eq = v[s..e].iter().position(|&b| b == b'=').map(|p| s + p);
        return Some(Pair {
            start: s,
            end: e,
            eq,
        });
    })
}

impl Pair {
    fn name<'a>(&self, v: &'a [u8]) -> &'a [u8] {
        let (s, e) = trim(v, self.start, self.eq.unwrap_or(self.end));
        &v[s..e]
    }
    fn value<'a>(&self, v: &'a [u8]) -> Option<&'a [u8]> {
        let eq = self.eq?;
        let (s, e) = trim(v, eq + 1, self.end);
        Some(&v[s..e])
    }
}

/// The persistence cookie's value as HAProxy compares it: text before the first `|`; a quoted
/// value never matches any server.
pub fn match_value(raw: &[u8]) -> &[u8] {
    if raw.first() == Some(&b'"') {
        return b"\"";
    }
    match raw.iter().position(|&b| b == b'|') {
        Some(p) => &raw[..p],
        None => raw,
    }
}

/// What scanning one Cookie header found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CookieScan<'a> {
    /// Value of the first persistence cookie in this header.
    pub value: Option<&'a [u8]>,
    /// Whether the header contained the persistence cookie (and so must be rewritten).
    pub found: bool,
}

/// Finds the persistence cookie `name` in a Cookie header value.
pub fn scan<'a>(v: &'a [u8], name: &[u8]) -> CookieScan<'a> {
    let mut out = CookieScan::default();
    for p in pairs(v) {
        if p.name(v) == name {
            out.found = true;
            if out.value.is_none() {
                out.value = Some(p.value(v).unwrap_or(b""));
            }
        }
    }
    out
}

/// Writes `v` without the persistence cookie (and the `$Path`/`$Domain` attributes right after
/// it). The pairs around a removed one are re-joined with `; `; other separators are kept byte
/// for byte. Returns false when nothing meaningful is left (the header must be dropped).
pub fn strip(v: &[u8], name: &[u8], out: &mut Vec<u8>) -> bool {
    let start_len = out.len();
    let mut removed_pending = false;
    let mut removing_attrs = false;
    let mut last_kept_end: Option<usize> = None;
    let mut meaningful = false;
    for p in pairs(v) {
        let n = p.name(v);
        if n == name {
            removed_pending = true;
            removing_attrs = true;
            continue;
        }
        if removing_attrs
            && (n.eq_ignore_ascii_case(b"$Path") || n.eq_ignore_ascii_case(b"$Domain"))
        {
            continue;
        }
        removing_attrs = false;
        match last_kept_end {
            None => {
                if !removed_pending {
                    out.extend_from_slice(&v[..p.start]);
                }
            }
            Some(prev_end) => {
                if removed_pending {
                    out.extend_from_slice(b"; ");
                } else {
                    out.extend_from_slice(&v[prev_end..p.start]);
                }
            }
        }
        removed_pending = false;
        out.extend_from_slice(&v[p.start..p.end]);
        last_kept_end = Some(p.end);
        if !n.eq_ignore_ascii_case(b"$Version") {
            meaningful = true;
        }
    }
    if let Some(end) = last_kept_end {
        if !removed_pending {
            out.extend_from_slice(&v[end..]);
        }
    }
    if !meaningful {
        out.truncate(start_len);
    }
    meaningful
}

/// Whether a `Set-Cookie` header value sets the cookie `name`.
pub fn set_cookie_is(v: &[u8], name: &[u8]) -> bool {
    let end = v.iter().position(|&b| b == b'=').unwrap_or(v.len());
    let (s, e) = trim(v, 0, end);
    &v[s..e] == name
}

/// Accumulates what HAProxy's `nocache` looks at in a response (haproxy-semantics.md 1.2).
#[derive(Debug, Default, Clone, Copy)]
pub struct Cacheability {
    pub uncacheable: bool,
    pub fresh_or_validator: bool,
}

impl Cacheability {
    /// Feeds one response header (name already lower-case).
    pub fn header(&mut self, name: &[u8], value: &[u8]) {
        match name {
            b"pragma" if directives(value).any(|d| d.eq_ignore_ascii_case(b"no-cache")) => {
                self.uncacheable = true;
            }
            b"cache-control" => {
                for d in directives(value) {
                    let lower_eq = |s: &[u8]| d.eq_ignore_ascii_case(s);
                    if lower_eq(b"private")
                        || lower_eq(b"no-cache")
                        || lower_eq(b"no-store")
                        || lower_eq(b"max-age=0")
                        || lower_eq(b"s-maxage=0")
                    {
                        self.uncacheable = true;
                    } else if starts_with_ci(d, b"max-age") || starts_with_ci(d, b"s-maxage") {
                        self.fresh_or_validator = true;
                    }
                }
            }
            b"expires" | b"etag" | b"last-modified" => self.fresh_or_validator = true,
            _ => {}
        }
    }

    /// HAProxy adds `Cache-Control: private` only for cacheable responses to safe methods.
    pub fn needs_private(&self, method_cacheable: bool, status: u16) -> bool {
        method_cacheable
            && matches!(
                status,
                200 | 203 | 204 | 206 | 300 | 301 | 404 | 405 | 410 | 414 | 501
            )
            && !self.uncacheable
            && self.fresh_or_validator
    }
}

fn starts_with_ci(d: &[u8], p: &[u8]) -> bool {
    d.len() >= p.len() && d[..p.len()].eq_ignore_ascii_case(p)
}

fn directives(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(|d| {
        let (s, e) = trim(d, 0, d.len());
        &d[s..e]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(v: &str) -> Option<String> {
        let mut out = Vec::new();
        strip(v.as_bytes(), b"SERVERID", &mut out).then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn strip_keeps_other_cookies_with_their_separators() {
        assert_eq!(
            stripped("a=1; SERVERID=x; b=2").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(stripped("SERVERID=x; a=1").as_deref(), Some("a=1"));
        assert_eq!(stripped("a=1;SERVERID=x").as_deref(), Some("a=1"));
        assert_eq!(
            stripped("a=1 ;  SERVERID=x  ; b=2").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(stripped("a=1;b=2; SERVERID=x").as_deref(), Some("a=1;b=2"));
        assert_eq!(stripped("x=y;  z=w").as_deref(), Some("x=y;  z=w"));
        assert_eq!(stripped("SERVERID=x"), None);
        assert_eq!(stripped("$Version=1; SERVERID=x; $Path=/"), None);
        assert_eq!(stripped("SERVERID=x; $Path=/; a=1").as_deref(), Some("a=1"));
        assert_eq!(
            stripped("a=1, SERVERID=x, b=2").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(stripped("flag; SERVERID=x").as_deref(), Some("flag"));
    }

    #[test]
    fn scan_matches_exact_name_and_first_value() {
        let s = scan(b"a=1; SERVERID = app1 ; SERVERID=app2", b"SERVERID");
        assert_eq!(s.value, Some(&b"app1"[..]));
        assert!(s.found);
        let s = scan(b"serverid=app1", b"SERVERID");
        assert!(!s.found);
        assert_eq!(match_value(b"app1|12345"), b"app1");
        assert_eq!(match_value(b"\"app1\""), b"\"");
    }

    #[test]
    fn cacheability_follows_haproxy_2_6() {
        let mut c = Cacheability::default();
        assert!(!c.needs_private(true, 200), "no validator, no freshness");
        c.header(b"etag", b"x");
        assert!(c.needs_private(true, 200));
        assert!(!c.needs_private(false, 200), "POST never");
        assert!(!c.needs_private(true, 302));
        c.header(b"cache-control", b"public, no-store");
        assert!(!c.needs_private(true, 200));
        let mut c = Cacheability::default();
        c.header(b"cache-control", b"public");
        assert!(!c.needs_private(true, 200), "public alone is not freshness");
        c.header(b"cache-control", b"max-age=60");
        assert!(c.needs_private(true, 200));
    }
}
