//! The syntax of an HTTP/1.x head, in one pass: where the start line's parts lie, where each
//! header line's name and value lie (and which name it is), and where the head ends.
//!
//! It accepts exactly what `httparse` 1.10 accepts with its default settings, and it fails on the
//! same inputs (an invalid byte is an error even before the head is complete; a head cut short is
//! `Partial`). `fuzz/src/checks.rs` holds the two side by side on every fuzz input and on
//! mutated heads (`tests/fuzz_regressions.rs`). What the head means, and what `h1` refuses
//! beyond the syntax (bare LF in requests, smuggling shapes, Host), is decided in `h1` after this
//! has run.
//!
//! Why not `httparse` itself: its result is a slice of `&str`/`&[u8]` pairs that `h1` walked a
//! second time to turn into offsets and to recognise names. Lexing straight into the [`Field`]
//! index, names recognised while they are in the L1 cache and values scanned eight bytes at a
//! time, parses the bench's request and response heads in 4 000 instructions instead of 4 570
//! (`benches/README.md`, issue 16, eighth pass).

use std::ops::Range;

/// Header lines lexed into one head at most; one more complete line is [`LexError::TooMany`].
/// `h1::MAX_HEADER_LINES_CAP` is this.
pub const MAX_FIELDS: usize = 1000;

/// The header names the proxy acts on, recognised once while a head is lexed (by length, then
/// one case-insensitive comparison) so that building the forwarded heads never compares names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Known {
    #[default]
    Other,
    ContentLength,
    TransferEncoding,
    Host,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    Upgrade,
    ProxyAuthenticate,
    Cookie,
    SetCookie,
    SecWebsocketKey,
    XForwardedProto,
    XForwardedPort,
    StrictTransportSecurity,
}

impl Known {
    /// Classifies a header name (any case).
    pub fn of(name: &[u8]) -> Known {
        let is = |k: &[u8]| name.eq_ignore_ascii_case(k);
        // Length and first letter first: most names are none of these and cost no comparison.
        let Some(&first) = name.first() else {
            return Known::Other;
        };
        match (name.len(), first | 0x20) {
            (2, b't') if is(b"te") => Known::Te,
            (4, b'h') if is(b"host") => Known::Host,
            (6, b'c') if is(b"cookie") => Known::Cookie,
            (7, b'u') if is(b"upgrade") => Known::Upgrade,
            (7, b't') if is(b"trailer") => Known::Trailer,
            (10, b'c') if is(b"connection") => Known::Connection,
            (10, b'k') if is(b"keep-alive") => Known::KeepAlive,
            (10, b's') if is(b"set-cookie") => Known::SetCookie,
            (14, b'c') if is(b"content-length") => Known::ContentLength,
            (16, b'p') if is(b"proxy-connection") => Known::ProxyConnection,
            (16, b'x') if is(b"x-forwarded-port") => Known::XForwardedPort,
            (17, b't') if is(b"transfer-encoding") => Known::TransferEncoding,
            (17, b's') if is(b"sec-websocket-key") => Known::SecWebsocketKey,
            (17, b'x') if is(b"x-forwarded-proto") => Known::XForwardedProto,
            (18, b'p') if is(b"proxy-authenticate") => Known::ProxyAuthenticate,
            (25, b's') if is(b"strict-transport-security") => Known::StrictTransportSecurity,
            _ => Known::Other,
        }
    }

    /// Hop-by-hop headers, never forwarded as received (RFC 9110 7.6.1).
    pub fn hop_by_hop(self) -> bool {
        matches!(
            self,
            Known::Connection
                | Known::KeepAlive
                | Known::ProxyConnection
                | Known::Te
                | Known::Trailer
                | Known::TransferEncoding
                | Known::Upgrade
                | Known::ProxyAuthenticate
        )
    }
}

/// One header line of a lexed head: where its name and value lie in the head's buffer, and
/// what the name is. Offsets are `u32` (a head never nears 4 GiB: the parsers refuse one that
/// would) so that the header index of a request in flight, kept while it waits for the server,
/// is 20 bytes a line instead of 40.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    name_start: u32,
    name_end: u32,
    value_start: u32,
    value_end: u32,
    pub known: Known,
}

impl Field {
    /// Only for ranges into a buffer shorter than 4 GiB (the parsers check theirs first).
    pub fn new(name: Range<usize>, value: Range<usize>, known: Known) -> Field {
        Field {
            name_start: name.start as u32,
            name_end: name.end as u32,
            value_start: value.start as u32,
            value_end: value.end as u32,
            known,
        }
    }
    pub fn name(&self) -> Range<usize> {
        self.name_start as usize..self.name_end as usize
    }
    pub fn value(&self) -> Range<usize> {
        self.value_start as usize..self.value_end as usize
    }
}

/// A head's lexing came to an end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lexed<T> {
    Complete(T),
    /// Every byte so far is valid, and the head goes on past the buffer.
    Partial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LexError {
    /// A byte where the grammar allows none like it.
    Malformed,
    /// A complete header line beyond the first [`MAX_FIELDS`].
    TooMany,
}

/// A request line: `method SP target SP HTTP/1.x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub method: Range<usize>,
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
}

/// A status line: `HTTP/1.x SP code [SP reason]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub minor: u8,
    /// Three digits, so 0 to 999.
    pub code: u16,
    /// The reason phrase as received (any obs-text kept); empty, just after the code, when the
    /// line ends there.
    pub reason: Range<usize>,
}

/// A complete head: its start line and its length (the body, if any, starts there). The
/// header lines are in the `Vec<Field>` the lexer was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<L> {
    pub line: L,
    pub len: usize,
    /// Some line ended in a bare LF (`\n` without `\r`): a request with one is refused.
    pub bare_lf: bool,
}

/// Lexes a request head at the start of `buf`; its header lines replace `fields`' contents.
pub fn request(buf: &[u8], fields: &mut Vec<Field>) -> Result<Lexed<Head<RequestLine>>, LexError> {
    start(fields);
    let r = (|| {
        let mut c = Cursor::new(buf);
        c.skip_empty_lines()?;
        let method = c.method()?;
        let target = c.target()?;
        let minor = c.version()?;
        c.line_end()?;
        c.fields(fields)?;
        Ok(c.head(RequestLine {
            method,
            target,
            minor,
        }))
    })();
    settle(r, fields)
}

/// Lexes a response head at the start of `buf`; its header lines replace `fields`' contents.
pub fn response(buf: &[u8], fields: &mut Vec<Field>) -> Result<Lexed<Head<StatusLine>>, LexError> {
    start(fields);
    let r = (|| {
        let mut c = Cursor::new(buf);
        c.skip_empty_lines()?;
        let minor = c.version()?;
        c.expect(b' ')?;
        let code = c.code()?;
        let reason = match c.next()? {
            b' ' => {
                let start = c.at;
                c.at = value_end(buf, start);
                let end = c.at;
                c.line_end()?;
                start..end
            }
            b'\r' => {
                c.expect(b'\n')?;
                c.at - 2..c.at - 2
            }
            b'\n' => {
                c.bare_lf = true;
                c.at - 1..c.at - 1
            }
            _ => return Err(Stop::Malformed),
        };
        c.fields(fields)?;
        Ok(c.head(StatusLine {
            minor,
            code,
            reason,
        }))
    })();
    settle(r, fields)
}

/// Empties the index, with room for a usual head's lines in one allocation (the index of an idle
/// connection is freed, see `RequestHead::release`).
fn start(fields: &mut Vec<Field>) {
    fields.clear();
    fields.reserve(16);
}

fn settle<T>(r: Result<T, Stop>, fields: &mut Vec<Field>) -> Result<Lexed<T>, LexError> {
    let out = match r {
        Ok(head) => return Ok(Lexed::Complete(head)),
        Err(Stop::Partial) => Ok(Lexed::Partial),
        Err(Stop::Malformed) => Err(LexError::Malformed),
        Err(Stop::TooMany) => Err(LexError::TooMany),
    };
    // The index of an incomplete or refused head is never read: leave it empty, not half-built.
    fields.clear();
    out
}

/// Why lexing stopped short of a complete head.
enum Stop {
    Partial,
    Malformed,
    TooMany,
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
    bare_lf: bool,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor {
            buf,
            at: 0,
            bare_lf: false,
        }
    }

    /// The head lexed so far, ending here.
    fn head<L>(&self, line: L) -> Head<L> {
        Head {
            line,
            len: self.at,
            bare_lf: self.bare_lf,
        }
    }

    fn next(&mut self) -> Result<u8, Stop> {
        let b = *self.buf.get(self.at).ok_or(Stop::Partial)?;
        self.at += 1;
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Result<(), Stop> {
        if self.next()? == want {
            Ok(())
        } else {
            Err(Stop::Malformed)
        }
    }

    /// Empty lines before the start line are skipped (RFC 9112 2.2), as httparse does.
    fn skip_empty_lines(&mut self) -> Result<(), Stop> {
        loop {
            match self.buf.get(self.at) {
                Some(b'\r') => {
                    self.at += 1;
                    self.expect(b'\n')?;
                }
                Some(b'\n') => {
                    self.at += 1;
                    self.bare_lf = true;
                }
                Some(_) => return Ok(()),
                None => return Err(Stop::Partial),
            }
        }
    }

    /// A line's end: CRLF, or a bare LF (noted).
    fn line_end(&mut self) -> Result<(), Stop> {
        match self.next()? {
            b'\r' => self.expect(b'\n'),
            b'\n' => {
                self.bare_lf = true;
                Ok(())
            }
            _ => Err(Stop::Malformed),
        }
    }

    /// A token and the single space after it.
    fn method(&mut self) -> Result<Range<usize>, Stop> {
        let start = self.at;
        let rest = &self.buf[start..];
        let n = rest
            .iter()
            .position(|&b| !TOKEN[usize::from(b)])
            .ok_or(Stop::Partial)?;
        if n == 0 || rest[n] != b' ' {
            return Err(Stop::Malformed);
        }
        self.at = start + n + 1;
        Ok(start..start + n)
    }

    /// The request target: visible ASCII or bytes >= 0x80 that form UTF-8, then one space.
    fn target(&mut self) -> Result<Range<usize>, Stop> {
        let start = self.at;
        let end = uri_end(self.buf, start);
        self.at = end;
        if self.next()? != b' ' || end == start {
            return Err(Stop::Malformed);
        }
        let t = &self.buf[start..end];
        if !t.is_ascii() && std::str::from_utf8(t).is_err() {
            return Err(Stop::Malformed);
        }
        Ok(start..end)
    }

    /// `HTTP/1.0` or `HTTP/1.1`; a shorter prefix of `HTTP/1.` is `Partial`.
    fn version(&mut self) -> Result<u8, Stop> {
        let rest = &self.buf[self.at..];
        match rest.get(..8) {
            Some(b"HTTP/1.0") => {
                self.at += 8;
                Ok(0)
            }
            Some(b"HTTP/1.1") => {
                self.at += 8;
                Ok(1)
            }
            Some(_) => Err(Stop::Malformed),
            None if b"HTTP/1.".starts_with(rest) => Err(Stop::Partial),
            None => Err(Stop::Malformed),
        }
    }

    /// Three digits.
    fn code(&mut self) -> Result<u16, Stop> {
        let mut code = 0u16;
        for _ in 0..3 {
            let d = self.next()?;
            if !d.is_ascii_digit() {
                return Err(Stop::Malformed);
            }
            code = code * 10 + u16::from(d - b'0');
        }
        Ok(code)
    }

    /// Header lines up to and including the empty line that ends the head.
    fn fields(&mut self, fields: &mut Vec<Field>) -> Result<(), Stop> {
        let buf = self.buf;
        loop {
            let start = self.at;
            let rest = &buf[start..];
            // The name: a token, then the colon at once (no space before it, no line folding).
            let n = rest
                .iter()
                .position(|&b| !TOKEN[usize::from(b)])
                .ok_or(Stop::Partial)?;
            if n == 0 {
                // Not a name: the end of the head, or an invalid line.
                self.line_end()?;
                return Ok(());
            }
            if rest[n] != b':' {
                return Err(Stop::Malformed);
            }
            let name = start..start + n;
            // The value: from its first byte after spaces and tabs to its last before them.
            let mut v = name.end + 1;
            while matches!(buf.get(v), Some(b' ' | b'\t')) {
                v += 1;
            }
            let end = value_end(buf, v);
            self.at = end;
            self.line_end()?;
            let mut e = end;
            while e > v && matches!(buf[e - 1], b' ' | b'\t') {
                e -= 1;
            }
            if fields.len() == MAX_FIELDS {
                return Err(Stop::TooMany);
            }
            fields.push(Field::new(name.clone(), v..e, Known::of(&buf[name])));
        }
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of `x` that is below `n` (`n` <= 0x80) is set in the lowest such byte;
/// bytes above it may be flagged falsely (a borrow), never a byte below it.
fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(LO * u64::from(n)) & !x & HI
}

/// As [`below`], for bytes equal to `n`.
fn equal(x: u64, n: u8) -> u64 {
    below(x ^ (LO * u64::from(n)), 1)
}

/// The first byte at or after `at` that cannot be in a field value or a reason phrase
/// (anything but HTAB, SP, VCHAR and obs-text), or `buf.len()`. Eight bytes at a time.
fn value_end(buf: &[u8], mut at: usize) -> usize {
    while let Some(w) = buf.get(at..at + 8) {
        let Ok(w) = <[u8; 8]>::try_from(w) else { break };
        let x = u64::from_le_bytes(w);
        let bad = below(x, 0x20) | equal(x, 0x7f);
        if bad == 0 {
            at += 8;
            continue;
        }
        let k = at + (bad.trailing_zeros() / 8) as usize;
        if buf[k] != b'\t' {
            return k;
        }
        at = k + 1;
    }
    buf[at..]
        .iter()
        .position(|&b| !VALUE[usize::from(b)])
        .map_or(buf.len(), |p| at + p)
}

/// The first byte at or after `at` that cannot be in a request target (anything but VCHAR and
/// bytes >= 0x80), or `buf.len()`.
fn uri_end(buf: &[u8], mut at: usize) -> usize {
    while let Some(w) = buf.get(at..at + 8) {
        let Ok(w) = <[u8; 8]>::try_from(w) else { break };
        let x = u64::from_le_bytes(w);
        let bad = below(x, 0x21) | equal(x, 0x7f);
        if bad != 0 {
            return at + (bad.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    buf[at..]
        .iter()
        .position(|&b| b <= b' ' || b == 0x7f)
        .map_or(buf.len(), |p| at + p)
}

/// RFC 9110 5.6.2 token characters.
pub const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// [`is_tchar`] as a table: the lexer looks each name byte up.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = is_tchar(i as u8);
        i += 1;
    }
    t
};

/// Field value bytes (RFC 9110 5.5): HTAB, SP, VCHAR, obs-text.
static VALUE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i == 0x09 || (i >= 0x20 && i != 0x7f);
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_and_target_ends_are_found_eight_bytes_at_a_time_and_in_the_tail() {
        for len in 0..40 {
            for bad in [0u8, 0x0a, 0x0d, 0x1f, 0x7f] {
                for at in 0..len {
                    let mut v = vec![b'a'; len];
                    v[at] = bad;
                    assert_eq!(value_end(&v, 0), at, "{len} {bad:#x} {at}");
                    assert_eq!(uri_end(&v, 0), at, "{len} {bad:#x} {at}");
                }
                let v = vec![b'a'; len];
                assert_eq!(value_end(&v, 0), len);
            }
            // Tabs and bytes >= 0x80 are value bytes; a tab or a space ends a target.
            let v: Vec<u8> = (0..len)
                .map(|i| [0x80, 0xff, b'~', b'\t', b' '][i % 5])
                .collect();
            assert_eq!(value_end(&v, 0), len);
            assert_eq!(uri_end(&v, 0), len.min(3));
        }
    }

    #[test]
    fn heads_lex_into_ranges() {
        let buf = b"\r\nGET /a HTTP/1.1\r\nHost: x \r\nA:\t\r\nB:c\n\r\nbody";
        let mut f = Vec::new();
        let Ok(Lexed::Complete(h)) = request(buf, &mut f) else {
            panic!("not complete")
        };
        assert_eq!(&buf[h.line.method], b"GET");
        assert_eq!(&buf[h.line.target], b"/a");
        assert_eq!(h.line.minor, 1);
        assert_eq!(h.len, buf.len() - 4);
        assert!(h.bare_lf);
        let got: Vec<_> = f
            .iter()
            .map(|f| (&buf[f.name()], &buf[f.value()], f.known))
            .collect();
        assert_eq!(
            got,
            [
                (&b"Host"[..], &b"x"[..], Known::Host),
                (b"A", b"", Known::Other),
                (b"B", b"c", Known::Other)
            ]
        );
        // An empty value lies where its line ends.
        assert_eq!(f[1].value().start, 32);
        assert_eq!(buf[32], b'\r');

        let buf = b"HTTP/1.0 204\r\n\r\n";
        let Ok(Lexed::Complete(h)) = response(buf, &mut f) else {
            panic!("not complete")
        };
        assert_eq!((h.line.minor, h.line.code, h.line.reason), (0, 204, 12..12));
        assert!(f.is_empty());
    }

    #[test]
    fn errors_come_at_the_first_bad_byte_even_before_the_end() {
        let mut f = Vec::new();
        for bad in [
            &b"GET /a HTTP/1.1\r\nHo st"[..],
            b"GET /a HTTP/1.1\r\nA: b\x01",
            b"GET  /",
            b"HTTP/2",
            b"GET /a HTTP/1.1\r\n A",
            b"GET /a HTTP/1.1\r\nA: b\rc",
        ] {
            assert_eq!(request(bad, &mut f), Err(LexError::Malformed), "{bad:?}");
        }
        for partial in [
            &b""[..],
            b"\r",
            b"GET",
            b"GET /a HTTP/1.",
            b"GET /a HTTP/1.1\r\nA: b\r",
        ] {
            assert_eq!(request(partial, &mut f), Ok(Lexed::Partial), "{partial:?}");
        }
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "a: b\r\n".repeat(MAX_FIELDS + 1)
        );
        assert_eq!(request(many.as_bytes(), &mut f), Err(LexError::TooMany));
        assert!(f.is_empty());
    }
}
