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

/// Iterates the pairs of a Cookie header value; `;` and `,` both separate pairs (HAProxy does),
/// except inside a quoted value.
fn pairs(v: &[u8]) -> impl Iterator<Item = Pair> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || loop {
        if pos > v.len() {
            return None;
        }
        let rel = v[pos..]
            .iter()
            .position(|&b| b == b';' || b == b',' || b == b'=');
        let end = match rel.map(|r| pos + r) {
            Some(eq) if v[eq] == b'=' => value_end(v, eq + 1),
            Some(d) => d,
            None => v.len(),
        };
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
    // A pair's name is a part of `v`: when `name`'s bytes occur nowhere (the usual request of a
    // client without our cookie), no pair can match.
    if !contains(v, name) {
        return out;
    }
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

/// Whether `needle` occurs in `hay` (SIMD search for its first byte, then a comparison).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    memchr::memchr_iter(first, hay).any(|i| hay[i + 1..].starts_with(rest))
}

fn is_sp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// End of a cookie value starting at `s`: the first `;` or `,` outside double quotes (a
/// backslash escapes the next byte inside quotes), as HAProxy's `http_find_cookie_value_end`.
fn value_end(v: &[u8], mut s: usize) -> usize {
    let (mut quoted, mut escaped) = (false, false);
    while s < v.len() {
        let b = v[s];
        if escaped {
            escaped = false;
        } else if quoted {
            match b {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == b',' || b == b';' {
            return s;
        }
        s += 1;
    }
    s
}

/// HAProxy's `http_del_hdr_value`: removes `h[from..next]`; when `from` is not the start, keeps
/// the delimiter found at `next` and one space after it (if there was room for one).
fn del_value(h: &mut Vec<u8>, from: usize, next: usize) {
    let end = h.len();
    let (mut prev, mut next) = (from, next);
    if prev == 0 {
        if next < end {
            next += 1;
        }
        while next < end && is_sp(h[next]) {
            next += 1;
        }
    } else {
        while prev > 0 && is_sp(h[prev - 1]) {
            prev -= 1;
        }
        if next < end {
            h[prev] = h[next];
            prev += 1;
            next += 1;
        }
        if prev + 1 < next {
            h[prev] = b' ';
            prev += 1;
        }
        while next < end && is_sp(h[next]) {
            next += 1;
        }
    }
    h.drain(prev..next);
}

/// Rewrites one `Cookie` header value as HAProxy 2.6 does with `cookie NAME insert indirect`
/// (`http_manage_client_side_cookies`): blanks around each `=` are removed, and with `remove`
/// every `name=` pair goes (with the `$` attributes after it), the separators around it
/// rewritten byte for byte as HAProxy writes them (`a=1; SERVERID=x; b=2` -> `a=1; b=2`,
/// `a=1; SERVERID=x;` -> `a=1; `, `a=1, SERVERID=x, b=2` -> `a=1, b=2`). Writes the result to
/// `out` and returns false when the header must be dropped (nothing but removed pairs and
/// `$` attributes was left).
pub fn strip(v: &[u8], name: &[u8], remove: bool, out: &mut Vec<u8>) -> bool {
    // Nothing to remove and no blank beside any `=`: the rewrite would copy the value as it is
    // (the usual Cookie header of a client without the persistence cookie).
    if !remove && !blank_beside_equals(v) {
        out.extend_from_slice(v);
        return !v.is_empty();
    }
    let base = out.len();
    out.extend_from_slice(v);
    let mut h = std::mem::take(out);
    let keep = strip_in_place(&mut h, base, name, remove);
    *out = h;
    if !keep {
        out.truncate(base);
    }
    keep
}

/// Whether some `=` in `v` has a blank right before or after it.
fn blank_beside_equals(v: &[u8]) -> bool {
    memchr::memchr_iter(b'=', v)
        .any(|i| (i > 0 && is_sp(v[i - 1])) || v.get(i + 1).is_some_and(|&n| is_sp(n)))
}

/// [`strip`] on `h[base..]`.
fn strip_in_place(buf: &mut Vec<u8>, base: usize, name: &[u8], remove: bool) -> bool {
    let mut h = buf.split_off(base);
    let mut del_from: Option<usize> = None;
    let mut preserve = false;
    let mut first = true;
    let mut prev = 0usize;
    while prev < h.len() {
        let mut att_beg = prev;
        if !first {
            att_beg += 1;
        }
        first = false;
        while att_beg < h.len() && is_sp(h[att_beg]) {
            att_beg += 1;
        }
        let (mut att_end, mut equal) = (att_beg, att_beg);
        while equal < h.len() {
            let b = h[equal];
            if b == b'=' || b == b',' || b == b';' {
                break;
            }
            equal += 1;
            if !is_sp(b) {
                att_end = equal;
            }
        }
        let mut next;
        if equal < h.len() && h[equal] == b'=' {
            let mut val_beg = equal + 1;
            while val_beg < h.len() && is_sp(h[val_beg]) {
                val_beg += 1;
            }
            next = value_end(&h, val_beg);
            // Blanks around `=` are removed, on every pair (HAProxy does it for captures).
            if att_end != equal || val_beg > equal + 1 {
                let cut_after = val_beg - (equal + 1);
                h.drain(equal + 1..val_beg);
                let cut_before = equal - att_end;
                h.drain(att_end..equal);
                next -= cut_after + cut_before;
                equal = att_end;
            }
        } else {
            next = equal;
        }
        if h.get(att_beg) == Some(&b'$') {
            prev = next;
            continue;
        }
        let ours = equal != next && remove && &h[att_beg..att_end] == name;
        if ours {
            if del_from.is_none() {
                del_from = Some(prev);
            }
        } else {
            preserve = true;
            if let Some(from) = del_from.take() {
                let before = h.len();
                del_value(&mut h, from, prev);
                // The pair just kept moved left with the removal.
                next -= before - h.len();
            }
        }
        prev = next;
    }
    if let Some(from) = del_from {
        h.truncate(if preserve { from } else { 0 });
    }
    let keep = !h.is_empty();
    buf.extend_from_slice(&h);
    keep
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
        // The parser hands over header values without surrounding blanks.
        let v = v.trim_matches([' ', '\t']);
        let mut out = b"x".to_vec();
        strip(v.as_bytes(), b"SERVERID", true, &mut out)
            .then(|| String::from_utf8(out[1..].to_vec()).unwrap())
    }

    /// Each pair measured with HAProxy 2.6.12 (`cookie SERVERID insert indirect`): the Cookie
    /// header the server received (`None`: no Cookie header). tests/differential_haproxy.rs
    /// replays them against the real HAProxy.
    pub const HAPROXY_2_6_STRIPS: &[(&str, Option<&str>)] = &[
        ("a=1; SERVERID=x;", Some("a=1; ")),
        ("a=1; SERVERID=x; b=2", Some("a=1; b=2")),
        ("SERVERID=x; a=1", Some("a=1")),
        ("a=1;SERVERID=x", Some("a=1")),
        ("a=1 ;  SERVERID=x  ; b=2", Some("a=1; b=2")),
        ("a=1;SERVERID=x;b=2", Some("a=1; b=2")),
        ("a=1;  SERVERID=x;  b=2", Some("a=1; b=2")),
        ("SERVERID=x;", None),
        ("SERVERID=x; ", None),
        (" a=1; SERVERID=x", Some("a=1")),
        ("a=1; SERVERID=x ;", Some("a=1; ")),
        ("a=1, SERVERID=x, b=2", Some("a=1, b=2")),
        ("a=1; SERVERID=x;;b=2", Some("a=1; ;b=2")),
        ("a=1;; SERVERID=x", Some("a=1;")),
        ("a=1; SERVERID=x; $Path=/; b=2", Some("a=1; b=2")),
        ("a=1;SERVERID=x; ", Some("a=1; ")),
        (";SERVERID=x;a=1", Some("a=1")),
        ("a=1 ; SERVERID=app1 ; b=2 ;", Some("a=1; b=2 ;")),
        ("SERVERID=app1;a=1;", Some("a=1;")),
        ("a=1;b=2;SERVERID=x;c=3;", Some("a=1;b=2; c=3;")),
        ("a=1\t;\tSERVERID=x\t;\tb=2", Some("a=1; b=2")),
        ("$Version=1; SERVERID=x; a=1", Some("$Version=1; a=1")),
        ("a=1; SERVERID=x, b=2", Some("a=1, b=2")),
        ("a=1;SERVERID=x,b=2", Some("a=1, b=2")),
        ("flag; SERVERID=x; b", Some("flag; b")),
        ("a=1;", Some("a=1;")),
        ("a=1; ;b=2", Some("a=1; ;b=2")),
        ("a = 1", Some("a=1")),
        ("a =1; b= 2", Some("a=1; b=2")),
        ("a=1 ; b=2", Some("a=1 ; b=2")),
        ("a=\"x;y\"; SERVERID=x; b=2", Some("a=\"x;y\"; b=2")),
        ("a=\"x;y; SERVERID=app2", Some("a=\"x;y; SERVERID=app2")),
        ("SERVERID = app2 ; a=1", Some("a=1")),
        ("$Version=1; SERVERID=x", None),
        ("SERVERID=x; SERVERID=y; a=1", Some("a=1")),
        ("a=1; SERVERID=x; SERVERID=y", Some("a=1")),
    ];

    /// The copy-as-is shortcut of `strip` gives what the full rewrite gives, for every value
    /// of up to 6 bytes over the bytes the rewrite looks at.
    #[test]
    fn strip_shortcut_matches_the_full_rewrite() {
        const ALPHABET: &[u8] = b"a=; ,\t\"$\\";
        let mut v = Vec::new();
        for len in 0..=6u32 {
            for mut code in 0..ALPHABET.len().pow(len) {
                v.clear();
                for _ in 0..len {
                    v.push(ALPHABET[code % ALPHABET.len()]);
                    code /= ALPHABET.len();
                }
                let mut fast = b"x".to_vec();
                let kept = strip(&v, b"a", false, &mut fast);
                let mut full = b"x".to_vec();
                let kept_full = strip_in_place_from(&mut full, &v, b"a", false);
                assert_eq!(
                    (kept, &fast),
                    (kept_full, &full),
                    "{:?}",
                    String::from_utf8_lossy(&v)
                );
            }
        }
    }

    fn strip_in_place_from(out: &mut Vec<u8>, v: &[u8], name: &[u8], remove: bool) -> bool {
        let base = out.len();
        out.extend_from_slice(v);
        let keep = strip_in_place(out, base, name, remove);
        if !keep {
            out.truncate(base);
        }
        keep
    }

    #[test]
    fn strip_rewrites_separators_exactly_as_haproxy_2_6() {
        for (input, want) in HAPROXY_2_6_STRIPS {
            assert_eq!(stripped(input).as_deref(), *want, "{input:?}");
        }
        // Without `indirect` the pair stays; blanks around `=` still go.
        let mut out = Vec::new();
        assert!(strip(b"a = 1; SERVERID=x", b"SERVERID", false, &mut out));
        assert_eq!(out, b"a=1; SERVERID=x");
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
