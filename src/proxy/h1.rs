//! HTTP/1.x message heads and body framing, strict enough that nothing ambiguous is forwarded.
//!
//! Heads are lexed by `h1_lex` (the syntax, as `httparse` reads it) and then checked against
//! the rules request smuggling relies on being loose (RFC 9112): bare LF, control bytes in
//! values, Content-Length together with Transfer-Encoding, differing Content-Lengths, transfer
//! codings other than a lone `chunked`, duplicate Host. A rejected request is answered 400 and
//! the connection closed. Heads are kept as byte ranges into the connection buffer so nothing is
//! copied until the upstream head is written.

use std::ops::Range;

pub use super::h1_lex as lex;
use lex::{is_tchar, LexError, Lexed};
pub use lex::{Field, Known};

/// Header lines accepted in one head by default: HAProxy's `tune.http.maxhdr` is 101 slots, one
/// of them taken by the end of the head, so its 101st header line gets 400 (request) or 502
/// (response). Measured against HAProxy 2.6.12: 100 lines pass, 101 do not.
pub const DEFAULT_MAX_HEADER_LINES: usize = 100;
/// Largest `global.max_header_lines` accepted: the lexer indexes no more lines of a head.
pub const MAX_HEADER_LINES_CAP: usize = lex::MAX_FIELDS;

/// How many header lines a head may carry (`global.max_header_lines`). Like HAProxy, a
/// `Connection` header holding only `close`/`keep-alive` is consumed by the parser and does not
/// count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxLines(pub usize);

impl Default for MaxLines {
    fn default() -> Self {
        MaxLines(DEFAULT_MAX_HEADER_LINES)
    }
}

/// Whether a header counts against [`MaxLines`] (see there).
fn counts_as_line(name: Known, value: &[u8]) -> bool {
    name != Known::Connection
        || tokens(value)
            .any(|t| !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    Length(u64),
    Chunked,
    /// Response body delimited by the server closing the connection.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Connect,
    Other,
}

impl Method {
    fn parse(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }
    /// RFC 9110 idempotent methods: safe to replay when a reused connection died before any
    /// response byte.
    pub fn idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
    /// Methods whose responses HAProxy's `nocache` considers cacheable.
    pub fn cacheable(self) -> bool {
        matches!(
            self,
            Method::Get | Method::Head | Method::Options | Method::Trace
        )
    }
}

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// 400 Bad Request.
    Bad(&'static str),
    /// 405: CONNECT is not proxied.
    Method,
    /// 501: a transfer coding we can't frame.
    NotImplemented(&'static str),
}

/// What a hop-by-hop `Connection` header asked for.
#[derive(Debug, Default, Clone, Copy)]
struct ConnTokens {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

impl ConnTokens {
    /// Reads one `Connection` value `v` (a part of `buf`): the three tokens it knows, and the
    /// ranges of the header names it lists (hop-by-hop too) into `listed`.
    fn read(&mut self, buf: &[u8], v: &[u8], listed: &mut Vec<Range<usize>>) {
        for tok in tokens(v) {
            if tok.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if tok.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                listed.push(offset(buf, tok));
            }
        }
    }
}

/// A parsed and validated request head.
#[derive(Debug, Default)]
pub struct RequestHead {
    pub head_len: usize,
    pub method: Option<Method>,
    pub method_r: Range<usize>,
    /// Request target as received.
    pub target_r: Range<usize>,
    /// For absolute-form targets: the origin-form path to forward and the authority to use as
    /// Host (RFC 9112 3.2.2: the target's authority wins over any Host header).
    pub abs_path_r: Option<Range<usize>>,
    pub abs_authority_r: Option<Range<usize>>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<Field>,
    pub framing: Option<Framing>,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    pub upgrade: bool,
    /// Header names listed in `Connection` (to drop), as ranges.
    pub conn_listed: Vec<Range<usize>>,
    /// Set by the caller from `global.max_header_lines`.
    pub max_lines: MaxLines,
}

impl RequestHead {
    /// Frees the header index while the connection is idle (it is rebuilt per request).
    pub fn release(&mut self) {
        self.headers = Vec::new();
        self.conn_listed = Vec::new();
    }
    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Other)
    }
    pub fn framing(&self) -> Framing {
        self.framing.unwrap_or(Framing::None)
    }
}

/// Where `part` (a slice of `base`'s bytes) lies inside `base`. A slice from elsewhere (a
/// static string) yields an empty range at the end instead of a bogus offset: callers index with
/// these ranges, and input must never be able to make that panic.
fn offset(base: &[u8], part: &[u8]) -> Range<usize> {
    let (b, p) = (base.as_ptr() as usize, part.as_ptr() as usize);
    match p.checked_sub(b) {
        Some(start) if start + part.len() <= base.len() => start..start + part.len(),
        _ => base.len()..base.len(),
    }
}

/// RFC 9112 3.2: a Host value is `uri-host [ ":" port ]` (reg-name, IPv4 or an IP literal in
/// brackets). Spaces, `/`, `@`, quotes and the like make it invalid (400), so a backend never
/// routes on a Host that another parser would read differently.
fn valid_host(v: &[u8]) -> bool {
    v.iter().all(|&b| HOST_BYTE[usize::from(b)])
}

/// The bytes [`valid_host`] allows: unreserved, sub-delims, `:`, `[`, `]` and `%`.
static HOST_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
                    | b'%'
            );
        i += 1;
    }
    t
};

fn trim_ows(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map(|p| p + 1)
        .unwrap_or(s);
    &v[s..e.max(s)]
}

fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

/// Parses a Content-Length value list; all members must be the same decimal number.
fn parse_content_length(v: &[u8], acc: &mut Option<u64>) -> Result<(), &'static str> {
    let mut any = false;
    for t in v.split(|&b| b == b',') {
        let t = trim_ows(t);
        if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
            return Err("invalid Content-Length");
        }
        let mut n: u64 = 0;
        for &d in t {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add((d - b'0') as u64))
                .ok_or("Content-Length overflows")?;
        }
        match acc {
            Some(prev) if *prev != n => return Err("conflicting Content-Length values"),
            _ => *acc = Some(n),
        }
        any = true;
    }
    if any {
        Ok(())
    } else {
        Err("empty Content-Length")
    }
}

pub enum Parsed {
    Complete,
    Partial,
}

/// Parses a request head at the start of `buf` into `out` (reused between requests).
pub fn parse_request(buf: &[u8], out: &mut RequestHead) -> Result<Parsed, Reject> {
    if u32::try_from(buf.len()).is_err() {
        return Err(Reject::Bad("head too large"));
    }
    let head = match lex::request(buf, &mut out.headers) {
        Ok(Lexed::Complete(head)) => head,
        Ok(Lexed::Partial) => return Ok(Parsed::Partial),
        Err(LexError::TooMany) => return Err(Reject::Bad("too many header lines")),
        Err(LexError::Malformed) => return Err(Reject::Bad("malformed request head")),
    };
    if head.bare_lf {
        return Err(Reject::Bad("bare LF in request head"));
    }
    let line = head.line;
    let minor = line.minor;
    out.head_len = head.len;
    out.method = Some(Method::parse(&buf[line.method.clone()]));
    out.method_r = line.method;
    out.target_r = line.target.clone();
    out.minor = minor;
    out.conn_listed.clear();
    out.abs_path_r = None;
    out.abs_authority_r = None;
    out.upgrade = false;

    if out.method() == Method::Connect {
        return Err(Reject::Method);
    }
    let t = &buf[line.target];
    // A fragment is never sent on the wire (RFC 9112 3.2) and non-ASCII bytes are not URI
    // characters: HAProxy 2.6 answers both with 400, so do we.
    if t.iter().any(|&b| b == b'#' || b >= 0x80) {
        return Err(Reject::Bad(
            "fragment or non-ASCII byte in the request target",
        ));
    }
    if t.first() == Some(&b'/') {
        // origin-form
    } else if t == b"*" {
        if out.method() != Method::Options {
            return Err(Reject::Bad("asterisk-form target outside OPTIONS"));
        }
    } else {
        let lower_starts = |p: &[u8]| t.len() >= p.len() && t[..p.len()].eq_ignore_ascii_case(p);
        let scheme_len = if lower_starts(b"http://") {
            7
        } else if lower_starts(b"https://") {
            8
        } else {
            return Err(Reject::Bad("invalid request target"));
        };
        let rest = &t[scheme_len..];
        let auth_end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        let authority = &rest[..auth_end];
        // The authority becomes the Host header: it passes the same check as Host.
        if authority.is_empty() || authority.contains(&b'@') || !valid_host(authority) {
            return Err(Reject::Bad("invalid authority in absolute-form target"));
        }
        out.abs_authority_r = Some(offset(buf, authority));
        out.abs_path_r = Some(offset(buf, &rest[auth_end..]));
    }

    let mut conn = ConnTokens::default();
    let mut cl: Option<u64> = None;
    let mut te_seen = false;
    let mut te_chunked_only = true;
    let mut te_count = 0usize;
    let mut hosts = 0usize;
    let mut upgrade_hdr = false;
    let mut websocket = false;
    let mut ws_key = false;
    let mut lines = 0usize;
    // The lexer has already refused any control byte but HTAB in a value (RFC 9110 5.5: NUL,
    // CR, LF and DEL included; pinned by `control_bytes_in_values_are_refused`).
    for f in &out.headers {
        let v = &buf[f.value()];
        let known = f.known;
        lines += counts_as_line(known, v) as usize;
        if lines > out.max_lines.0 {
            return Err(Reject::Bad("too many header lines"));
        }
        match known {
            Known::ContentLength => parse_content_length(v, &mut cl).map_err(Reject::Bad)?,
            Known::TransferEncoding => {
                te_seen = true;
                for tok in tokens(v) {
                    te_count += 1;
                    if !tok.eq_ignore_ascii_case(b"chunked") {
                        te_chunked_only = false;
                    }
                }
            }
            Known::Host => {
                hosts += 1;
                if !valid_host(v) {
                    return Err(Reject::Bad("invalid Host value"));
                }
            }
            Known::Connection => {
                conn.read(buf, v, &mut out.conn_listed);
            }
            Known::Upgrade => {
                upgrade_hdr = true;
                websocket |= tokens(v).any(|t| t.eq_ignore_ascii_case(b"websocket"));
            }
            Known::SecWebsocketKey => ws_key = true,
            _ => {}
        }
    }
    if hosts > 1 {
        return Err(Reject::Bad("more than one Host header"));
    }
    if hosts == 0 && minor == 1 && out.abs_authority_r.is_none() {
        return Err(Reject::Bad("HTTP/1.1 request without Host"));
    }
    out.framing = Some(if te_seen {
        if minor == 0 {
            return Err(Reject::Bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if cl.is_some() {
            return Err(Reject::Bad("both Content-Length and Transfer-Encoding"));
        }
        if !te_chunked_only || te_count != 1 {
            if te_count == 0 {
                return Err(Reject::Bad("empty Transfer-Encoding"));
            }
            return Err(Reject::NotImplemented(
                "only a single `chunked` coding is accepted",
            ));
        }
        Framing::Chunked
    } else {
        match cl {
            Some(0) | None => Framing::None,
            Some(n) => Framing::Length(n),
        }
    });
    out.keep_alive = if minor == 0 {
        conn.keep_alive && !conn.close
    } else {
        !conn.close
    };
    out.upgrade = conn.upgrade && upgrade_hdr && minor == 1;
    // RFC 6455 4.1: a WebSocket handshake carries Sec-WebSocket-Key; HAProxy 2.6 answers 400.
    if out.upgrade && websocket && !ws_key {
        return Err(Reject::Bad("WebSocket upgrade without Sec-WebSocket-Key"));
    }
    Ok(Parsed::Complete)
}

/// A parsed response head.
#[derive(Debug, Default)]
pub struct ResponseHead {
    pub head_len: usize,
    pub status: u16,
    pub minor: u8,
    pub reason_r: Range<usize>,
    pub headers: Vec<Field>,
    pub framing: Option<Framing>,
    /// The server will keep the connection open (reusable once the body is done).
    pub keep_alive: bool,
    pub conn_listed: Vec<Range<usize>>,
    /// `Transfer-Encoding: chunked` was present: any Content-Length is dropped (RFC 9112 6.3).
    pub te_chunked: bool,
    /// The size of HAProxy 2.6's internal (HTX) copy of this head, which its access log counts
    /// (with the body payload) as the bytes field: the start line's version, status and reason
    /// plus 20, each header's name and value (no `: `, no CRLF, OWS trimmed), plus 1 for the
    /// end of headers. As its H1 parser stores it: `close`/`keep-alive` are cut out of `Connection`
    /// (dropped when nothing else is listed), only the first Content-Length value is kept, and
    /// none with `Transfer-Encoding: chunked`. Headers edgelb or HAProxy add or remove later
    /// (the inserted `set-cookie`, a removed persistence cookie) are not counted.
    pub htx_len: u64,
    /// Set by the caller from `global.max_header_lines`.
    pub max_lines: MaxLines,
}

impl ResponseHead {
    /// Frees the header index while the connection is idle.
    pub fn release(&mut self) {
        self.headers = Vec::new();
        self.conn_listed = Vec::new();
    }
    pub fn framing(&self) -> Framing {
        self.framing.unwrap_or(Framing::None)
    }
}

/// Length of a `Connection` value once HAProxy 2.6's H1 parser has cut `close` and
/// `keep-alive` out of it (`h1_parse_connection_header` with `H1_MF_CLEAN_CONN_HDR`): the value
/// is kept verbatim up to the last member before the first one removed, later members are
/// appended after a bare `,` (`close, a, b` becomes `a,b`; `a ,  b,close` becomes `a ,  b`).
/// 0 means the header is dropped.
fn cleaned_connection_len(v: &[u8]) -> usize {
    let lws = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let (mut len, mut p, mut i) = (0usize, 0usize, 0usize);
    while i < v.len() {
        if lws(v[i]) {
            i += 1;
            continue;
        }
        // The member's end: the next `,` outside a quoted string.
        let (mut n, mut quoted, mut pair) = (i, false, false);
        while n < v.len() {
            let b = v[n];
            if !quoted {
                if b == b',' {
                    break;
                }
                quoted = b == b'"';
            } else if pair {
                pair = false;
            } else if b == b'\\' {
                pair = true;
            } else if b == b'"' {
                quoted = false;
            }
            n += 1;
        }
        let mut wl = n - i;
        while wl > 0 && lws(v[i + wl - 1]) {
            wl -= 1;
        }
        let word = &v[i..i + wl];
        if !word.eq_ignore_ascii_case(b"close") && !word.eq_ignore_ascii_case(b"keep-alive") {
            if len == p {
                // Nothing removed so far: the value is kept as is, up to this member's end.
                len = n;
            } else {
                len += usize::from(len > 0) + wl;
            }
        }
        p = n;
        i = n + 1;
    }
    len
}

/// Parses a response head; `Err` means the server sent something invalid (502).
pub fn parse_response(
    buf: &[u8],
    request_method: Method,
    out: &mut ResponseHead,
) -> Result<Parsed, &'static str> {
    if u32::try_from(buf.len()).is_err() {
        return Err("head too large");
    }
    let head = match lex::response(buf, &mut out.headers) {
        Ok(Lexed::Complete(head)) => head,
        Ok(Lexed::Partial) => return Ok(Parsed::Partial),
        Err(LexError::TooMany) => return Err("too many header lines"),
        Err(LexError::Malformed) => return Err("malformed response head"),
    };
    let status = head.line.code;
    if !(100..=999).contains(&status) {
        return Err("invalid status code");
    }
    out.head_len = head.len;
    out.status = status;
    out.minor = head.line.minor;
    out.reason_r = head.line.reason;
    out.conn_listed.clear();
    let mut cl: Option<u64> = None;
    let mut te_codings = 0usize;
    let mut chunked = false;
    let mut conn = ConnTokens::default();
    let mut lines = 0usize;
    // The size of HAProxy's internal copy of the head (see `htx_len`): the start line, then
    // each header as its H1 parser keeps it.
    let mut htx = 20 + b"HTTP/1.1".len() as u64 + 3 + out.reason_r.len() as u64 + 1;
    let mut first_cl_htx = 0u64;
    // Control bytes in values: refused by the lexer already (see `parse_request`). Values come
    // from the lexer without their leading and trailing blanks.
    for f in &out.headers {
        let v = &buf[f.value()];
        let name = f.name();
        let known = f.known;
        lines += counts_as_line(known, v) as usize;
        if lines > out.max_lines.0 {
            return Err("too many header lines");
        }
        match known {
            Known::ContentLength => {
                if cl.is_none() {
                    // Only the first value of the first Content-Length is kept.
                    let first = v.split(|&b| b == b',').map(trim_ows).next().unwrap_or(v);
                    first_cl_htx = (name.len() + first.len()) as u64;
                }
                parse_content_length(v, &mut cl)?;
            }
            Known::TransferEncoding => {
                for tok in tokens(v) {
                    te_codings += 1;
                    chunked = tok.eq_ignore_ascii_case(b"chunked");
                }
                htx += (name.len() + v.len()) as u64;
            }
            Known::Connection => {
                conn.read(buf, v, &mut out.conn_listed);
                match cleaned_connection_len(v) {
                    0 => {}
                    n => htx += (name.len() + n) as u64,
                }
            }
            _ => htx += (name.len() + v.len()) as u64,
        }
    }
    if !chunked {
        htx += first_cl_htx;
    }
    out.htx_len = htx;
    // Like HAProxy 2.6: a response whose Transfer-Encoding is anything but one final `chunked`
    // (`gzip`, `chunked, gzip`, `chunked, chunked`, empty) is refused (502), never relayed with
    // a relabelled or close-delimited body.
    if te_codings > 0 && !(te_codings == 1 && chunked) {
        return Err("transfer coding other than a single chunked");
    }
    out.te_chunked = chunked;
    let no_body = request_method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    out.framing = Some(if no_body {
        Framing::None
    } else if chunked {
        // RFC 9112 6.3: chunked as the final coding wins over Content-Length (which is then
        // not forwarded, see `te_chunked`).
        Framing::Chunked
    } else {
        match cl {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    });
    out.keep_alive = if out.minor == 0 {
        conn.keep_alive && !conn.close
    } else {
        !conn.close
    } && out.framing() != Framing::UntilClose;
    Ok(Parsed::Complete)
}

/// Appends `name` lower-cased (HAProxy lower-cases every forwarded header name).
pub fn push_lower(out: &mut Vec<u8>, name: &[u8]) {
    let at = out.len();
    out.extend_from_slice(name);
    out[at..].make_ascii_lowercase();
}

/// Appends the header line `f` of the head in `src` as it is forwarded: `name: value` CRLF, the
/// name lower-cased. Returns where the name starts in `out`. A line already in that shape in
/// `src` (one space after the colon, none before CRLF: nearly every line) is copied whole.
pub fn push_field(out: &mut Vec<u8>, src: &[u8], f: &Field) -> usize {
    let (name, value) = (f.name(), f.value());
    let at = out.len();
    let line = name.start..value.end + 2;
    if value.start == name.end + 2
        && src.get(name.end..value.start) == Some(b": ")
        && src.get(value.end..line.end) == Some(b"\r\n")
    {
        out.extend_from_slice(&src[line]);
    } else {
        out.extend_from_slice(&src[name.clone()]);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&src[value]);
        out.extend_from_slice(b"\r\n");
    }
    out[at..at + name.len()].make_ascii_lowercase();
    at
}

/// Streaming validator of a chunked body. Bytes are copied to `out` either verbatim
/// (re-forwarded as chunked) or as payload only (de-chunked for HTTP/1.0 clients).
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    size: u64,
    digits: u32,
    line_len: usize,
    /// A `;` was seen on the current size line: extension bytes follow.
    ext: bool,
    /// HAProxy's HTX size of the body so far: payload, trailer names and values (OWS
    /// trimmed), + 1 for the end of trailers (see `ResponseHead::htx_len`).
    htx: u64,
    /// Blanks seen in a trailer value, counted once a non-blank follows.
    trailer_ws: u64,
    /// A non-blank has been seen in the current trailer value.
    trailer_value: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// After the size digits: extensions or CR.
    SizeExt,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// Trailer section: at the start of a line.
    TrailerStart,
    /// A trailer field name (token characters up to `:`).
    TrailerName,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

/// Longest chunk-size line or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4096;

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// The body's size in HAProxy's HTX (what its access log counts), so far.
    pub fn htx_len(&self) -> u64 {
        self.htx
    }

    /// Consumes bytes from `input`, appending to `out`; returns how many were consumed (stops at
    /// the end of the body, leaving what follows).
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        raw: bool,
    ) -> Result<usize, &'static str> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() && self.state != Done {
            let b = input[i];
            match self.state {
                Data => {
                    let n = (input.len() - i).min(self.size as usize);
                    out.extend_from_slice(&input[i..i + n]);
                    self.size -= n as u64;
                    self.htx += n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                Size => {
                    let d = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        _ if self.digits > 0 => {
                            self.state = SizeExt;
                            continue;
                        }
                        _ => return Err("invalid chunk size"),
                    };
                    self.digits += 1;
                    if self.digits > 15 {
                        return Err("chunk size too large");
                    }
                    self.size = self.size * 16 + d as u64;
                }
                // RFC 9112 7.1.1: chunk-size [ BWS ";" chunk-ext ] CRLF. Anything else right
                // after the digits (`0x3`, `3z`) is refused: a backend could read another size.
                SizeExt => match b {
                    b'\r' => self.state = SizeLf,
                    b';' => self.ext = true,
                    b' ' | b'\t' => {}
                    0x21..=0x7e if self.ext => {}
                    _ => return Err("invalid chunk extension"),
                },
                SizeLf => {
                    if b != b'\n' {
                        return Err("chunk size line not ended by CRLF");
                    }
                    self.digits = 0;
                    self.ext = false;
                    self.state = if self.size == 0 { TrailerStart } else { Data };
                }
                DataCr => {
                    if b != b'\r' {
                        return Err("chunk data not followed by CRLF");
                    }
                    self.state = DataLf;
                }
                DataLf => {
                    if b != b'\n' {
                        return Err("chunk data not followed by CRLF");
                    }
                    self.state = Size;
                    self.line_len = 0;
                }
                // Trailer lines must be `name: value` fields: a line such as
                // `GET /admin HTTP/1.1` in the trailer section is refused, not forwarded.
                TrailerStart => {
                    if b == b'\r' {
                        self.state = FinalLf;
                    } else if is_tchar(b) {
                        self.state = TrailerName;
                        self.htx += 1;
                    } else {
                        return Err("invalid trailer");
                    }
                }
                TrailerName => match b {
                    b':' => {
                        self.state = TrailerLine;
                        self.trailer_ws = 0;
                        self.trailer_value = false;
                    }
                    _ if is_tchar(b) => self.htx += 1,
                    _ => return Err("invalid trailer field name"),
                },
                TrailerLine => match b {
                    b'\r' => self.state = TrailerLf,
                    b'\t' | b' ' => self.trailer_ws += self.trailer_value as u64,
                    _ if b < 0x20 || b == 0x7f => return Err("invalid trailer"),
                    _ => {
                        self.htx += self.trailer_ws + 1;
                        self.trailer_ws = 0;
                        self.trailer_value = true;
                    }
                },
                TrailerLf => {
                    if b != b'\n' {
                        return Err("trailer line not ended by CRLF");
                    }
                    self.line_len = 0;
                    self.state = TrailerStart;
                }
                FinalLf => {
                    if b != b'\n' {
                        return Err("chunked body not ended by CRLF");
                    }
                    self.state = Done;
                    self.htx += 1;
                }
                Done => break,
            }
            if raw {
                out.push(b);
            }
            self.line_len += 1;
            if self.line_len > MAX_CHUNK_LINE {
                return Err("chunk line too long");
            }
            if self.state == Data || self.state == Size {
                self.line_len = 0;
            }
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<RequestHead, Reject> {
        let mut h = RequestHead::default();
        match parse_request(s.as_bytes(), &mut h)? {
            Parsed::Complete => Ok(h),
            Parsed::Partial => Err(Reject::Bad("partial")),
        }
    }

    #[test]
    fn connection_values_cleaned_as_haproxy() {
        // Measured through HAProxy 2.6.12's log bytes field.
        assert_eq!(cleaned_connection_len(b"close"), 0);
        assert_eq!(cleaned_connection_len(b"keep-alive, Close"), 0);
        assert_eq!(cleaned_connection_len(b"X-Foo, X-Bar"), 12);
        assert_eq!(cleaned_connection_len(b"close, X-Foo, X-Bar"), 11);
        assert_eq!(cleaned_connection_len(b"X-Foo ,  X-Bar,close"), 14);
        assert_eq!(cleaned_connection_len(b"X-Foo,,X-Bar"), 12);
        assert_eq!(cleaned_connection_len(b"X-Foo, keep-alive, X-Bar, Y"), 13);
    }

    #[test]
    fn smuggling_shapes_are_rejected() {
        let cases = [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "GET / HTTP/1.1\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET x HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET http://ev\"il<x>/p HTTP/1.1\r\n\r\n",
            "GET http://a b/p HTTP/1.1\r\n\r\n",
            "GET /p#frag HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /caf\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        ];
        for c in cases {
            assert!(matches!(req(c), Err(Reject::Bad(_))), "{c:?}");
        }
        for c in [
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(req(c).is_err(), "{c:?}");
        }
    }

    /// The lexer refuses every control byte but HTAB in a header value (and DEL), in requests
    /// and responses; `parse_request` and `parse_response` rely on it instead of checking again.
    #[test]
    fn control_bytes_in_values_are_refused() {
        for b in (0u8..0x20)
            .chain([0x7f])
            .filter(|&b| b != b'\t' && b != b'\n')
        {
            let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a".to_vec();
            raw.extend_from_slice(&[b, b'b']);
            raw.extend_from_slice(b"\r\n\r\n");
            let mut h = RequestHead::default();
            assert!(
                parse_request(&raw, &mut h).is_err(),
                "request with byte {b:#x}"
            );
            let mut raw = b"HTTP/1.1 200 OK\r\nX-A: a".to_vec();
            raw.extend_from_slice(&[b, b'b']);
            raw.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
            let mut h = ResponseHead::default();
            assert!(
                parse_response(&raw, Method::Get, &mut h).is_err(),
                "response with byte {b:#x}"
            );
        }
        // A bare LF ends the line: the request is refused as a whole, the response's next line
        // (`b`) is no header.
        assert!(req("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nb\r\n\r\n").is_err());
        let mut h = ResponseHead::default();
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nX-A: a\nb\r\n\r\n", Method::Get, &mut h).is_err()
        );
        // HTAB and obs-text stay allowed.
        assert!(req("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\tb\u{e9}\r\n\r\n").is_ok());
    }

    /// The header index of a request in flight is kept while it waits for the server: 20 bytes
    /// a line (issue 16: per-request state goes cold at 500 connections).
    #[test]
    fn a_header_line_is_indexed_in_20_bytes() {
        assert_eq!(std::mem::size_of::<Field>(), 20);
        let h = req("GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\n\r\n").unwrap();
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\n\r\n";
        let f = h.headers[1];
        assert_eq!(
            (&raw[f.name()], &raw[f.value()], f.known),
            (&b"Cookie"[..], &b"a=1"[..], Known::Cookie)
        );
    }

    #[test]
    fn header_names_are_known_in_any_case_and_only_whole() {
        assert_eq!(Known::of(b"Content-Length"), Known::ContentLength);
        assert_eq!(Known::of(b"TRANSFER-ENCODING"), Known::TransferEncoding);
        assert_eq!(Known::of(b"x-forwarded-PORT"), Known::XForwardedPort);
        assert_eq!(Known::of(b"te"), Known::Te);
        assert_eq!(Known::of(b"Set-Cookie"), Known::SetCookie);
        assert_eq!(Known::of(b"cookies"), Known::Other);
        assert_eq!(Known::of(b"content-length2"), Known::Other);
        assert_eq!(Known::of(b""), Known::Other);
        let hop: Vec<_> = [
            &b"connection"[..],
            b"keep-alive",
            b"proxy-connection",
            b"te",
            b"trailer",
            b"transfer-encoding",
            b"upgrade",
            b"proxy-authenticate",
        ]
        .iter()
        .map(|n| Known::of(n))
        .collect();
        assert!(hop.iter().all(|k| k.hop_by_hop()), "{hop:?}");
        assert!(!Known::of(b"host").hop_by_hop() && !Known::of(b"cookie").hop_by_hop());
    }

    /// The bytes HAProxy's log counts for a head, computed while parsing.
    #[test]
    fn htx_len_counts_the_head_as_haproxys_parser_keeps_it() {
        let len = |raw: &[u8]| {
            let mut h = ResponseHead::default();
            assert!(matches!(
                parse_response(raw, Method::Get, &mut h),
                Ok(Parsed::Complete)
            ));
            h.htx_len
        };
        // 20 + "HTTP/1.1" + status + "OK" + 1, then CL's first value, the cleaned Connection
        // ("x"), and X-A's trimmed value.
        let raw =
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nConnection: close, x\r\nX-A:  v \r\n\r\n";
        assert_eq!(len(raw), 34 + 15 + 11 + 4);
        // Chunked: Content-Length is not kept; a Connection of only `close` is dropped.
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        assert_eq!(len(raw), 34 + 24);
        // Only the first Content-Length header counts.
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(len(raw), 34 + 15);
    }

    #[test]
    fn status_lines_without_or_with_odd_reasons_keep_their_bytes() {
        for (raw, reason) in [
            (&b"HTTP/1.1 200\r\ncontent-length: 0\r\n\r\n"[..], &b""[..]),
            (b"HTTP/1.1 100\r\n\r\n", b""),
            (b"HTTP/1.1 200 \r\n\r\n", b""),
            (b"HTTP/1.1 200 OK\r\n\r\n", b"OK"),
            (
                b"HTTP/1.1 200 \xc3\xa9t\xe9 ok\r\n\r\n",
                b"\xc3\xa9t\xe9 ok",
            ),
            (b"\r\nHTTP/1.1 404 Not Found\r\n\r\n", b"Not Found"),
        ] {
            let mut h = ResponseHead::default();
            let r = parse_response(raw, Method::Get, &mut h);
            assert!(matches!(r, Ok(Parsed::Complete)), "{raw:?}");
            assert_eq!(&raw[h.reason_r.clone()], reason, "{raw:?}");
        }
    }

    #[test]
    fn header_line_limit_is_haproxys_and_ignores_bare_connection_tokens() {
        let head = |n: usize, extra: &str| {
            let mut s = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
            for i in 1..n {
                s.push_str(&format!("X-{i}: v\r\n"));
            }
            s.push_str(extra);
            s.push_str("\r\n");
            s
        };
        assert!(req(&head(100, "")).is_ok());
        assert_eq!(
            req(&head(101, "")).err(),
            Some(Reject::Bad("too many header lines"))
        );
        // HAProxy's parser consumes a Connection header holding only close/keep-alive.
        assert!(req(&head(100, "Connection: close\r\n")).is_ok());
        assert!(req(&head(100, "Connection: upgrade\r\n")).is_err());
        let mut h = RequestHead {
            max_lines: MaxLines(3),
            ..Default::default()
        };
        assert!(parse_request(head(3, "").as_bytes(), &mut h).is_ok());
        assert!(parse_request(head(4, "").as_bytes(), &mut h).is_err());
        // Responses: the 101st line is a 502 (Err).
        let res = |n: usize| {
            let mut s = String::from("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
            for i in 1..n {
                s.push_str(&format!("X-{i}: v\r\n"));
            }
            s + "\r\n"
        };
        let mut r = ResponseHead::default();
        assert!(parse_response(res(100).as_bytes(), Method::Get, &mut r).is_ok());
        assert!(parse_response(res(101).as_bytes(), Method::Get, &mut r).is_err());
        // Far more lines than the parser has slots: still a clean refusal.
        assert!(req(&head(2000, "")).is_err());
    }

    /// A forwarded line is `name: value` CRLF with the name lower-cased, however the received
    /// line spaced it or ended.
    #[test]
    fn fields_are_forwarded_lower_cased_and_respaced() {
        for (line, want) in [
            ("X-A: b c\r\n", "x-a: b c\r\n"),
            ("X-A:b\r\n", "x-a: b\r\n"),
            ("X-A:  b \t\r\n", "x-a: b\r\n"),
            ("X-A: \r\n", "x-a: \r\n"),
            ("X-A:\r\n", "x-a: \r\n"),
            ("X-A:\tb\r\n", "x-a: b\r\n"),
            ("X-A: b\n", "x-a: b\r\n"),
        ] {
            let raw = format!("HTTP/1.1 200 OK\r\n{line}\r\n");
            let mut r = ResponseHead::default();
            assert!(matches!(
                parse_response(raw.as_bytes(), Method::Get, &mut r),
                Ok(Parsed::Complete)
            ));
            let mut out = b"x".to_vec();
            assert_eq!(push_field(&mut out, raw.as_bytes(), &r.headers[0]), 1);
            assert_eq!(String::from_utf8_lossy(&out[1..]), want, "{line:?}");
        }
    }

    #[test]
    fn identical_content_lengths_are_one() {
        let h = req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n").unwrap();
        assert_eq!(h.framing(), Framing::Length(5));
    }

    #[test]
    fn absolute_form_uses_its_authority() {
        let s = "GET http://example.com:81/a?b HTTP/1.1\r\nHost: other\r\n\r\n";
        let h = req(s).unwrap();
        assert_eq!(&s[h.abs_authority_r.clone().unwrap()], "example.com:81");
        assert_eq!(&s[h.abs_path_r.clone().unwrap()], "/a?b");
    }

    #[test]
    fn chunked_decoder_validates_and_reframes() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 1..body.len() {
            let mut d = ChunkedDecoder::default();
            let mut raw = Vec::new();
            let mut n = d.feed(&body[..split], &mut raw, true).unwrap();
            if !d.is_done() {
                n = split + d.feed(&body[split..], &mut raw, true).unwrap();
            }
            assert!(d.is_done());
            assert_eq!(&body[n..], b"NEXT");
            assert_eq!(raw, &body[..body.len() - 4]);
        }
        let mut d = ChunkedDecoder::default();
        let mut data = Vec::new();
        d.feed(body, &mut data, false).unwrap();
        assert_eq!(data, b"Wikipedia");
        for bad in [
            &b"zz\r\n"[..],
            b"4\nWiki",
            b"4\r\nWikiX\r\n",
            b"fffffffffffffffff\r\n",
            b"0x3\r\nabc\r\n0\r\n\r\n",
            b"3z\r\nabc\r\n",
            b"3=1\r\nabc\r\n",
            b"0\r\nGET /admin HTTP/1.1\r\n\r\n",
            b"0\r\nX-T 1\r\n\r\n",
            b"0\r\n: 1\r\n\r\n",
        ] {
            let mut d = ChunkedDecoder::default();
            assert!(d.feed(bad, &mut Vec::new(), true).is_err(), "{bad:?}");
        }
    }
}
