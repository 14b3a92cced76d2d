//! HTTP/2 <-> HTTP/1.1 head conversion (RFC 9113 8.3 and 8.2.2): an h2 request's pseudo-headers
//! and fields become the HTTP/1.1 request head the request path parses, and the HTTP/1.1 response
//! head the path writes becomes an h2 response. Pure functions over bytes: no I/O here.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode};

use crate::proxy::h1::Known;

/// How the request body reaches the request path after the synthesized head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// END_STREAM came with the HEADERS: no body.
    None,
    /// The client sent `content-length`: the DATA payload passes as it is (h2 checks that the
    /// DATA adds up to it, RFC 9113 8.1.1).
    Length,
    /// No length known: the DATA payload is framed as HTTP/1.1 chunks, trailers included.
    Chunked,
}

/// Why a request is malformed (RFC 9113 8.1.1): the stream is reset with PROTOCOL_ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Connection-specific fields, forbidden in HTTP/2 (RFC 9113 8.2.2). `te` is allowed only as
/// `trailers`.
pub fn is_connection_specific(name: &[u8]) -> bool {
    matches!(
        Known::of(name),
        Known::Connection
            | Known::KeepAlive
            | Known::ProxyConnection
            | Known::TransferEncoding
            | Known::Upgrade
    )
}

/// A field value that cannot be written into an HTTP/1.1 head as it is (RFC 9113 8.2.1: CR, LF
/// and NUL are never valid; leading or trailing blanks are not either).
fn bad_value(v: &[u8]) -> bool {
    v.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0)
        || v.first().is_some_and(|&c| c == b' ' || c == b'\t')
        || v.last().is_some_and(|&c| c == b' ' || c == b'\t')
}

/// Writes the HTTP/1.1 request head for `parts` into `out`: `METHOD scheme://authority/path
/// HTTP/1.1` (origin form without `:authority`; a `host` field is dropped when `:authority` is
/// present, as it must agree),
/// the fields in order with the cookie crumbs joined by `"; "` into one `cookie` field at the
/// place of the first (RFC 9113 8.2.3), and `transfer-encoding: chunked` when a body of unknown
/// length follows.
pub fn request_head(
    parts: &Parts,
    end_stream: bool,
    out: &mut Vec<u8>,
) -> Result<BodyFraming, Malformed> {
    out.clear();
    let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
    if authority.is_some_and(|a| a.contains(&b'@')) {
        return Err(Malformed(":authority with userinfo"));
    }
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    if parts.method == Method::CONNECT {
        // h2 checks CONNECT's shape (`:authority` only); the request path answers 405 to it.
        out.extend_from_slice(authority.unwrap_or(b"/"));
    } else {
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().as_bytes())
            .unwrap_or(b"");
        if path.is_empty() {
            return Err(Malformed("empty :path"));
        }
        // With `:authority`, the absolute form, as HAProxy 2.6 builds (and logs) it: the path
        // sends the server the origin form and `host` from the authority.
        if let (Some(a), true) = (authority, path.starts_with(b"/")) {
            out.extend_from_slice(parts.uri.scheme_str().unwrap_or("http").as_bytes());
            out.extend_from_slice(b"://");
            out.extend_from_slice(a);
        } else if let Some(a) = authority {
            // `OPTIONS *`: the origin form with the authority as host.
            out.extend_from_slice(path);
            out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
            return finish_fields(parts, true, end_stream, out);
        }
        out.extend_from_slice(path);
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    finish_fields(parts, authority.is_some(), end_stream, out)
}

/// The fields after the request line (see `request_head`).
fn finish_fields(
    parts: &Parts,
    drop_host: bool,
    end_stream: bool,
    out: &mut Vec<u8>,
) -> Result<BodyFraming, Malformed> {
    let mut has_length = false;
    let mut cookie_done = false;
    for (name, value) in &parts.headers {
        let n = name.as_str().as_bytes();
        let v = value.as_bytes();
        if is_connection_specific(n) || (n == b"te" && !v.eq_ignore_ascii_case(b"trailers")) {
            return Err(Malformed("connection-specific header field"));
        }
        if bad_value(v) {
            return Err(Malformed("invalid header field value"));
        }
        if n == b"host" && drop_host {
            continue;
        }
        if n == b"content-length" {
            has_length = true;
        }
        if n == b"cookie" {
            if cookie_done {
                continue;
            }
            cookie_done = true;
            out.extend_from_slice(b"cookie: ");
            let mut first = true;
            for c in parts.headers.get_all(http::header::COOKIE) {
                if !first {
                    out.extend_from_slice(b"; ");
                }
                first = false;
                out.extend_from_slice(c.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            continue;
        }
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    let framing = if end_stream {
        BodyFraming::None
    } else if has_length {
        BodyFraming::Length
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        BodyFraming::Chunked
    };
    out.extend_from_slice(b"\r\n");
    Ok(framing)
}

/// The parts of an HTTP/1.1 response head the h2 side needs.
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// `transfer-encoding: chunked`: the body is de-chunked into DATA frames.
    pub chunked: bool,
    /// The `content-length` value, when there is one (and no chunked coding).
    pub length: Option<u64>,
}

/// Converts a complete HTTP/1.1 response head (as the request path writes it: its own or a
/// server's, already validated) into an h2 response: the status line becomes `:status`,
/// connection-specific fields and the fields `Connection` lists are dropped, names are
/// lower-cased by `http`. Field values are slices of `head`, not copies (one allocation per
/// response instead of one per field). `Err` means the head cannot be carried (the stream is
/// reset).
pub fn response_head(head: &Bytes) -> Result<ResponseHead, &'static str> {
    let mut fields = [httparse::EMPTY_HEADER; 256];
    let mut res = httparse::Response::new(&mut fields);
    match res.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("unparsable response head"),
    }
    let status = res
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("bad status")?;
    let mut listed: Vec<&[u8]> = Vec::new();
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            listed.extend(
                h.value
                    .split(|&c| c == b',')
                    .map(|t| t.trim_ascii())
                    .filter(|t| !t.is_empty()),
            );
        }
    }
    let mut out = ResponseHead {
        status,
        headers: HeaderMap::with_capacity(res.headers.len()),
        chunked: false,
        length: None,
    };
    for h in res.headers.iter() {
        let n = h.name.as_bytes();
        if n.eq_ignore_ascii_case(b"transfer-encoding") {
            out.chunked |= h
                .value
                .split(|&c| c == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            continue;
        }
        if is_connection_specific(n)
            || n.eq_ignore_ascii_case(b"te")
            || n.eq_ignore_ascii_case(b"trailer")
            || listed.iter().any(|l| l.eq_ignore_ascii_case(n))
        {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(n),
            HeaderValue::from_maybe_shared(head.slice_ref(h.value.trim_ascii())),
        ) else {
            return Err("response field not valid in HTTP/2");
        };
        if name == http::header::CONTENT_LENGTH {
            if out.length.is_some() {
                continue;
            }
            out.length = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|s| s.parse().ok());
        }
        out.headers.append(name, value);
    }
    if out.chunked {
        out.length = None;
        out.headers.remove(http::header::CONTENT_LENGTH);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(req: http::Request<()>, end: bool) -> Result<(String, BodyFraming), Malformed> {
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        let f = request_head(&parts, end, &mut out)?;
        Ok((String::from_utf8(out).unwrap(), f))
    }

    #[test]
    fn authority_becomes_host_and_cookie_crumbs_are_joined_in_place() {
        let req = http::Request::builder()
            .method("GET")
            .uri("https://example.com:8443/a?b=1")
            .header("cookie", "a=1")
            .header("accept", "*/*")
            .header("cookie", "SERVERID=s2")
            .header("host", "other.example")
            .body(())
            .unwrap();
        let (h, f) = head(req, true).unwrap();
        assert_eq!(
            h,
            "GET https://example.com:8443/a?b=1 HTTP/1.1\r\ncookie: a=1; SERVERID=s2\r\naccept: */*\r\n\r\n"
        );
        assert_eq!(f, BodyFraming::None);
    }

    #[test]
    fn a_body_without_length_is_chunked_and_one_with_length_is_not() {
        let req = http::Request::builder()
            .method("POST")
            .uri("http://h/p")
            .body(())
            .unwrap();
        let (h, f) = head(req, false).unwrap();
        assert!(h.ends_with("transfer-encoding: chunked\r\n\r\n"), "{h}");
        assert_eq!(f, BodyFraming::Chunked);
        let req = http::Request::builder()
            .method("POST")
            .uri("http://h/p")
            .header("content-length", "5")
            .body(())
            .unwrap();
        let (h, f) = head(req, false).unwrap();
        assert!(h.ends_with("content-length: 5\r\n\r\n"), "{h}");
        assert_eq!(f, BodyFraming::Length);
    }

    #[test]
    fn connection_specific_fields_are_malformed() {
        for (n, v) in [
            ("connection", "close"),
            ("keep-alive", "5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
        ] {
            let req = http::Request::builder()
                .uri("http://h/")
                .header(n, v)
                .body(())
                .unwrap();
            assert!(head(req, true).is_err(), "{n}");
        }
        let req = http::Request::builder()
            .uri("http://h/")
            .header("te", "trailers")
            .body(())
            .unwrap();
        assert!(head(req, true).is_ok());
    }

    #[test]
    fn response_head_drops_hop_by_hop_and_listed_fields() {
        let r = response_head(&Bytes::from_static(
            b"HTTP/1.1 200 OK\r\nconnection: close, x-hop\r\nx-hop: 1\r\nkeep-alive: 5\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\nset-cookie: SERVERID=s1; path=/\r\n\r\n",
        ))
        .unwrap();
        assert_eq!(r.status, 200);
        assert!(r.chunked);
        assert_eq!(r.length, None);
        assert_eq!(r.headers.len(), 1, "{:?}", r.headers);
        assert_eq!(r.headers["set-cookie"], "SERVERID=s1; path=/");
        let r = response_head(&Bytes::from_static(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n",
        ))
        .unwrap();
        assert_eq!(r.length, Some(9));
        assert_eq!(r.headers["content-length"], "9");
    }
}
