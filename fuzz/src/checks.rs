//! The invariants each fuzz target asserts. Shared by the AFL++ targets (through the fuzz
//! crate, where `h1` is `src/proxy/h1.rs` compiled in) and by edgelb's
//! `tests/fuzz_regressions.rs` (where `h1` is `edgelb::proxy::h1`).

use super::h1::lex::{self, LexError, Lexed};
use super::h1::{self, ChunkedDecoder, Method, Parsed, RequestHead, ResponseHead};

fn within(r: &std::ops::Range<usize>, len: usize) {
    assert!(
        r.start <= r.end && r.end <= len,
        "range {r:?} outside 0..{len}"
    );
}

/// Where `part`, a slice httparse handed back, lies in `data`.
fn at(data: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = part.as_ptr() as usize - data.as_ptr() as usize;
    assert!(start + part.len() <= data.len());
    start..start + part.len()
}

/// Some line of `head` ends in a bare LF.
fn reference_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// The header lines of both lexings are the same lines.
fn same_fields(data: &[u8], ours: &[h1::Field], theirs: &[httparse::Header<'_>]) {
    assert_eq!(ours.len(), theirs.len(), "header count");
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(o.name(), at(data, t.name.as_bytes()), "name of {t:?}");
        assert_eq!(o.value(), at(data, t.value), "value of {t:?}");
        assert_eq!(o.known, h1::Known::of(t.name.as_bytes()));
    }
}

/// The lexer and httparse give the same answer: complete (then `complete` compares the two
/// heads, given ours and httparse's length), partial, too many lines, or malformed.
fn same_answer<L: std::fmt::Debug>(
    fields: &[h1::Field],
    ours: Result<Lexed<lex::Head<L>>, LexError>,
    theirs: httparse::Result<usize>,
    complete: impl FnOnce(lex::Head<L>, usize),
) {
    match (ours, theirs) {
        (Ok(Lexed::Partial), Ok(httparse::Status::Partial)) => assert!(fields.is_empty()),
        (Err(LexError::TooMany), Err(httparse::Error::TooManyHeaders)) => {}
        (Err(LexError::Malformed), Err(e)) if e != httparse::Error::TooManyHeaders => {}
        (Ok(Lexed::Complete(h)), Ok(httparse::Status::Complete(n))) => complete(h, n),
        (o, t) => panic!("h1_lex says {o:?}, httparse {t:?}"),
    }
}

/// `h1_lex` reads a request head as httparse 1.10 does: the same answer, and for a complete
/// head the same start line, the same header lines at the same offsets, and the same length.
pub fn check_request_lexer(data: &[u8]) {
    let mut fields = Vec::new();
    let ours = lex::request(data, &mut fields);
    let mut slots = vec![httparse::EMPTY_HEADER; lex::MAX_FIELDS];
    let mut req = httparse::Request::new(&mut slots);
    let theirs = req.parse(data);
    same_answer(&fields, ours, theirs, |h, n| {
        assert_eq!(h.len, n);
        assert_eq!(h.line.method, at(data, req.method.unwrap().as_bytes()));
        assert_eq!(h.line.target, at(data, req.path.unwrap().as_bytes()));
        assert_eq!(Some(h.line.minor), req.version);
        assert_eq!(h.bare_lf, reference_bare_lf(&data[..n]));
        same_fields(data, &fields, req.headers);
    });
}

/// As [`check_request_lexer`], for a response head.
pub fn check_response_lexer(data: &[u8]) {
    let mut fields = Vec::new();
    let ours = lex::response(data, &mut fields);
    let mut slots = vec![httparse::EMPTY_HEADER; lex::MAX_FIELDS];
    let mut res = httparse::Response::new(&mut slots);
    let theirs = res.parse(data);
    same_answer(&fields, ours, theirs, |h, n| {
        assert_eq!(h.len, n);
        assert_eq!(Some(h.line.minor), res.version);
        assert_eq!(Some(h.line.code), res.code);
        // httparse hands back "" for a reason with obs-text; ours keeps its bytes.
        let reason = res.reason.unwrap();
        if !reason.is_empty() {
            assert_eq!(h.line.reason, at(data, reason.as_bytes()));
        }
        assert_eq!(h.bare_lf, reference_bare_lf(&data[..n]));
        same_fields(data, &fields, res.headers);
    });
}

/// Request head parser: no panic; on success every range lies inside the head; parsing the
/// head alone gives the same head; a strict prefix of the head is never a complete head. The
/// lexer agrees with httparse on the input.
pub fn check_request(data: &[u8]) {
    check_request_lexer(data);
    let mut h = RequestHead::default();
    let Ok(Parsed::Complete) = h1::parse_request(data, &mut h) else {
        return;
    };
    let n = h.head_len;
    assert!(n <= data.len() && n >= 4);
    assert_eq!(&data[n - 4..n], b"\r\n\r\n");
    for r in [&h.method_r, &h.target_r]
        .into_iter()
        .chain(h.abs_path_r.iter())
        .chain(h.abs_authority_r.iter())
        .chain(h.conn_listed.iter())
    {
        within(r, n);
    }
    for f in &h.headers {
        within(&f.name(), n);
        within(&f.value(), n);
        assert_eq!(f.known, h1::Known::of(&data[f.name()]));
    }
    assert!(h.headers.len() <= h.max_lines.0.max(h1::MAX_HEADER_LINES_CAP));
    let mut again = RequestHead::default();
    assert!(matches!(
        h1::parse_request(&data[..n], &mut again),
        Ok(Parsed::Complete)
    ));
    assert_eq!(again.head_len, n);
    assert_eq!(again.framing(), h.framing());
    let mut prefix = RequestHead::default();
    assert!(!matches!(
        h1::parse_request(&data[..n - 1], &mut prefix),
        Ok(Parsed::Complete)
    ));
}

/// Response head parser, for a GET and a HEAD: no panic; ranges inside the head; HEAD and
/// 1xx/204/304 responses have no body. The lexer agrees with httparse on the input.
pub fn check_response(data: &[u8]) {
    check_response_lexer(data);
    for method in [Method::Get, Method::Head] {
        let mut r = ResponseHead::default();
        let Ok(Parsed::Complete) = h1::parse_response(data, method, &mut r) else {
            continue;
        };
        let n = r.head_len;
        assert!(n <= data.len());
        within(&r.reason_r, n);
        for f in &r.headers {
            within(&f.name(), n);
            within(&f.value(), n);
            assert_eq!(f.known, h1::Known::of(&data[f.name()]));
        }
        // HAProxy's copy of a head drops `: ` and CRLFs and adds 20 bytes of its own.
        assert!(r.htx_len <= n as u64 + 20, "{} > {n} + 20", r.htx_len);
        for c in &r.conn_listed {
            within(c, n);
        }
        assert!((100..=999).contains(&r.status));
        if method == Method::Head || matches!(r.status, 100..=199 | 204 | 304) {
            assert_eq!(r.framing(), h1::Framing::None);
        }
    }
}

/// A plain reading of RFC 9112 7.1 (no limits, no streaming) to compare the decoder with:
/// the payload of a chunked body that ends exactly at the end of `body`.
fn reference_decode(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let line_end = body[i..].windows(2).position(|w| w == b"\r\n")? + i;
        let line = &body[i..line_end];
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return None;
        }
        let size = usize::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()?;
        i = line_end + 2;
        if size == 0 {
            break;
        }
        out.extend_from_slice(body.get(i..i + size)?);
        i += size;
        if body.get(i..i + 2)? != b"\r\n" {
            return None;
        }
        i += 2;
    }
    // Trailer fields, then the empty line.
    loop {
        let line_end = body[i..].windows(2).position(|w| w == b"\r\n")? + i;
        if line_end == i {
            return (line_end + 2 == body.len()).then_some(out);
        }
        i = line_end + 2;
    }
}

/// Feeds `input` to a decoder in the given pieces; returns (consumed, output, error).
fn feed(pieces: &[&[u8]], raw: bool) -> (usize, Vec<u8>, bool, bool) {
    let mut d = ChunkedDecoder::default();
    let mut out = Vec::new();
    let mut used = 0;
    for p in pieces {
        match d.feed(p, &mut out, raw) {
            Ok(n) => {
                assert!(n <= p.len());
                used += n;
                if d.is_done() {
                    return (used, out, false, true);
                }
                assert_eq!(n, p.len(), "an unfinished decoder consumes all it is given");
            }
            Err(_) => return (used, out, true, false),
        }
    }
    (used, out, false, d.is_done())
}

/// Chunked decoder: the result does not depend on how the input is split; in raw mode the
/// output is exactly the consumed input; a finished body decodes as the reference decoder
/// reads it.
pub fn check_chunked(data: &[u8]) {
    let split = data.first().map(|&b| b as usize).unwrap_or(0);
    let data = data.get(1..).unwrap_or(&[]);
    let split = split.min(data.len());
    let whole = feed(&[data], false);
    let halves = feed(&[&data[..split], &data[split..]], false);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    let single = feed(&bytes, false);
    assert_eq!(whole.2, halves.2, "error differs with a split at {split}");
    assert_eq!(whole.3, halves.3);
    assert_eq!(whole.2, single.2, "error differs byte by byte");
    assert_eq!(whole.3, single.3);
    if whole.3 {
        assert_eq!(whole.0, halves.0);
        assert_eq!(whole.0, single.0);
        assert_eq!(whole.1, halves.1);
        assert_eq!(whole.1, single.1);
    }
    let raw = feed(&[data], true);
    assert_eq!(raw.2, whole.2);
    assert_eq!(&raw.1[..], &data[..raw.1.len()], "raw output is the input");
    if raw.3 {
        assert_eq!(raw.0, raw.1.len());
        let body = &data[..whole.0];
        assert_eq!(
            reference_decode(body).as_deref(),
            Some(&whole.1[..]),
            "payload differs from the reference decoding of {body:?}"
        );
    }
}
