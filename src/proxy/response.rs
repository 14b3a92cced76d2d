//! The response from the server: interim and final heads, and the streamed response body.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use super::cookie;
use super::exchange::ReqInfo;
use super::h1::{self, ChunkedDecoder, Framing, Known, Method, Parsed, ResponseHead};
use super::idle::{deadline, Stop};
use super::request::write_to;
use super::session::read_more;
use crate::runtime::{ListenRt, ServerRt};

pub(super) enum HeadErr {
    /// Closed before sending a single byte.
    Empty,
    Timeout,
    Invalid,
    Client,
}

/// Reads response heads until a final one (>= 200, or 101), relaying interim 1xx responses to
/// HTTP/1.1 clients (`100 Continue` for `Expect`).
pub(super) async fn read_final_head<R, W>(
    urd: &mut R,
    ubuf: &mut BytesMut,
    res: &mut ResponseHead,
    info: ReqInfo,
    cwr: &mut W,
    stop: &Stop,
    tserver: Duration,
) -> Result<u64, HeadErr>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut received_any = false;
    // HAProxy logs interim (1xx) heads in its bytes field too, sent to the client or not.
    let mut interim_htx = 0u64;
    loop {
        if !ubuf.is_empty() {
            received_any = true;
            match h1::parse_response(ubuf, info.method, res) {
                Ok(Parsed::Complete) => {
                    let st = res.status;
                    if (100..200).contains(&st) && !(st == 101 && info.upgrade) {
                        if st == 101 {
                            return Err(HeadErr::Invalid);
                        }
                        if info.minor == 1 {
                            let mut interim = Vec::with_capacity(res.head_len);
                            interim.extend_from_slice(b"HTTP/1.1 ");
                            interim.extend_from_slice(st.to_string().as_bytes());
                            interim.push(b' ');
                            interim.extend_from_slice(&ubuf[res.reason_r.clone()]);
                            interim.extend_from_slice(b"\r\n");
                            for f in &res.headers {
                                h1::push_lower(&mut interim, &ubuf[f.name()]);
                                interim.extend_from_slice(b": ");
                                interim.extend_from_slice(&ubuf[f.value()]);
                                interim.extend_from_slice(b"\r\n");
                            }
                            interim.extend_from_slice(b"\r\n");
                            if cwr.write_all(&interim).await.is_err() {
                                return Err(HeadErr::Client);
                            }
                        }
                        interim_htx += res.htx_len;
                        let n = res.head_len;
                        ubuf.advance(n);
                        continue;
                    }
                    return Ok(interim_htx);
                }
                Ok(Parsed::Partial) if ubuf.len() >= info.max_head => return Err(HeadErr::Invalid),
                Ok(Parsed::Partial) => {}
                Err(_) => return Err(HeadErr::Invalid),
            }
        }
        // `timeout server` between reads; every request waits here, so the deadline is kept in
        // the worker's list of waits rather than in tokio's timer wheel (`idle::deadline`).
        let at = super::clock::Tick::now().after(tserver);
        match deadline(stop, at, read_more(urd, ubuf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(if received_any {
                    HeadErr::Invalid
                } else {
                    HeadErr::Empty
                })
            }
            Ok(Ok(_)) => {}
            Err(_) => return Err(HeadErr::Timeout),
        }
    }
}

/// Relays the response body; `Err((bytes, term))` when one side failed midway. `htx` receives
/// the body's size as HAProxy's access log counts it (payload, plus trailers and their end for
/// a chunked body), as far as it was relayed.
#[allow(clippy::too_many_arguments)]
pub(super) async fn relay_body<R, W>(
    urd: &mut R,
    ubuf: &mut BytesMut,
    cwr: &mut W,
    framing: Framing,
    client_chunked: bool,
    tserver: Duration,
    tclient: Duration,
    scratch: &mut Vec<u8>,
    htx: &mut u64,
) -> Result<u64, (u64, [u8; 2])>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut sent = 0u64;
    match framing {
        Framing::None => Ok(0),
        Framing::Length(mut remaining) => loop {
            if !ubuf.is_empty() {
                let k = (ubuf.len() as u64).min(remaining) as usize;
                write_to(cwr, &ubuf[..k], tclient)
                    .await
                    .map_err(|_| (sent, *b"CD"))?;
                ubuf.advance(k);
                remaining -= k as u64;
                sent += k as u64;
                *htx = sent;
            }
            if remaining == 0 {
                return Ok(sent);
            }
            let n = read_server(urd, ubuf, tserver, sent).await?;
            if n == 0 {
                return Err((sent, *b"SD"));
            }
        },
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::default();
            loop {
                if !ubuf.is_empty() {
                    scratch.clear();
                    let n = dec
                        .feed(ubuf, scratch, client_chunked)
                        .map_err(|_| (sent, *b"SD"))?;
                    write_to(cwr, scratch, tclient)
                        .await
                        .map_err(|_| (sent, *b"CD"))?;
                    ubuf.advance(n);
                    sent += scratch.len() as u64;
                    *htx = dec.htx_len();
                }
                if dec.is_done() {
                    return Ok(sent);
                }
                let n = read_server(urd, ubuf, tserver, sent).await?;
                if n == 0 {
                    return Err((sent, *b"SD"));
                }
            }
        }
        Framing::UntilClose => loop {
            if !ubuf.is_empty() {
                write_to(cwr, ubuf, tclient)
                    .await
                    .map_err(|_| (sent, *b"CD"))?;
                sent += ubuf.len() as u64;
                *htx = sent;
                ubuf.clear();
            }
            let n = read_server(urd, ubuf, tserver, sent).await?;
            if n == 0 {
                return Ok(sent);
            }
        },
    }
}

/// One read from the server while relaying a body: `Ok(0)` at EOF, `SD` on an error, `sD` on
/// `timeout server`.
pub(super) async fn read_server<R: AsyncRead + Unpin>(
    urd: &mut R,
    ubuf: &mut BytesMut,
    t: Duration,
    sent: u64,
) -> Result<usize, (u64, [u8; 2])> {
    match timeout(t, read_more(urd, ubuf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(_)) => Err((sent, *b"SD")),
        Err(_) => Err((sent, *b"sD")),
    }
}

/// What the response head sent to the client says beyond the server's own headers.
pub(super) struct ClientHead<'a> {
    pub(super) listen: &'a ListenRt,
    pub(super) srv: &'a ServerRt,
    pub(super) method: Method,
    /// The client's HTTP minor version.
    pub(super) client_minor: u8,
    /// The request had no valid persistence cookie: insert ours.
    pub(super) insert_cookie: bool,
    /// `101` to an Upgrade request: the connection becomes a tunnel.
    pub(super) switching: bool,
    pub(super) keep_client: bool,
    /// The body is relayed chunked (an HTTP/1.1 client and a chunked response).
    pub(super) chunked_to_client: bool,
    /// `strict-transport-security: ...\r\n` to set on a final response (TLS connections of a
    /// listen with `tls.hsts`), replacing the server's.
    pub(super) hsts: Option<&'a [u8]>,
}

/// Appends `HTTP/1.1 <status> ` (no formatting machinery: it cost ~250 instructions per
/// response).
fn push_status_line_start(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    if (100..1000).contains(&status) {
        let d = |n: u16| b'0' + (n % 10) as u8;
        out.extend_from_slice(&[d(status / 100), d(status / 10), d(status), b' ']);
    } else {
        // Not from a parsed head (it refuses codes outside 100-999).
        out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
        out.push(b' ');
    }
}

/// Writes the response head for the client into `out` from the server's head `res` (ranges into
/// `src`): hop-by-hop headers dropped, the app's own persistence cookie removed, ours inserted.
/// Returns the server-cookie log flag when it changes (`I` inserted, `D` app cookie deleted).
pub(super) fn write_client_head(
    out: &mut Vec<u8>,
    src: &[u8],
    res: &ResponseHead,
    h: &ClientHead<'_>,
) -> Option<u8> {
    let status = res.status;
    let mut flag = None;
    let mut deleted_app_cookie = false;
    let mut cacheable = cookie::Cacheability::default();
    out.clear();
    push_status_line_start(out, status);
    out.extend_from_slice(&src[res.reason_r.clone()]);
    out.extend_from_slice(b"\r\n");
    let cookie_name = h.listen.cookie.as_ref().map(|c| c.name.as_bytes());
    // Like HAProxy's `http-response set-header`: final responses only, not 1xx.
    let hsts = h.hsts.filter(|_| status >= 200);
    for f in &res.headers {
        let name = &src[f.name()];
        let value = &src[f.value()];
        match f.known {
            Known::Upgrade if h.switching => {}
            k if k.hop_by_hop() => continue,
            Known::StrictTransportSecurity if hsts.is_some() => continue,
            // Chunked wins over Content-Length; a Content-Length beside it is dropped, as HAProxy
            // does, so no client (HTTP/1.0 in particular) ever sees both.
            Known::ContentLength if res.te_chunked => continue,
            _ => {}
        }
        // Headers named in `Connection` are hop-by-hop, except framing: dropping
        // Content-Length would run the body into the next response.
        if f.known != Known::ContentLength
            && res
                .conn_listed
                .iter()
                .any(|r| src[r.clone()].eq_ignore_ascii_case(name))
        {
            continue;
        }
        if let Some(cn) = cookie_name {
            if f.known == Known::SetCookie && cookie::set_cookie_is(value, cn) {
                deleted_app_cookie = true;
                continue;
            }
        }
        let at = h1::push_field(out, src, f);
        if h.insert_cookie {
            cacheable.header(&out[at..at + name.len()], value);
        }
    }
    if h.insert_cookie {
        if let Some(sc) = &h.srv.set_cookie {
            out.extend_from_slice(b"set-cookie: ");
            out.extend_from_slice(sc);
            out.extend_from_slice(b"\r\n");
            flag = Some(b'I');
            let nocache = h.listen.cookie.as_ref().map(|c| c.nocache).unwrap_or(false);
            if nocache && cacheable.needs_private(h.method.cacheable(), status) {
                out.extend_from_slice(b"cache-control: private\r\n");
            }
        }
    } else if deleted_app_cookie {
        flag = Some(b'D');
    }
    if let Some(line) = hsts {
        out.extend_from_slice(line);
    }
    if h.chunked_to_client {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if h.switching {
        out.extend_from_slice(b"connection: upgrade\r\n");
    } else if !h.keep_client {
        out.extend_from_slice(b"connection: close\r\n");
    } else if h.client_minor == 0 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    flag
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status line starts as `write!("HTTP/1.1 {status} ")` wrote it, for every code.
    #[test]
    fn the_status_line_starts_with_the_decimal_code() {
        for status in (0..=1200u16).chain([9999, u16::MAX]) {
            let mut out = b"x".to_vec();
            push_status_line_start(&mut out, status);
            assert_eq!(out, format!("xHTTP/1.1 {status} ").into_bytes(), "{status}");
        }
    }
}
