//! The request towards the server: the upstream head (hop-by-hop headers, cookie, XFF) and the
//! streamed request body.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use super::cookie;
use super::forwarded;
use super::h1::{self, ChunkedDecoder, Framing, Known};
use super::session::{read_more, within, Bufs, Conn};
use crate::runtime::ListenRt;

impl Conn {
    /// Writes the request head to send upstream into `b.head_out`.
    pub(super) fn build_upstream_head(&self, listen: &ListenRt, b: &mut Bufs, strip_cookie: bool) {
        if listen.forwardfor_except.is_some() {
            b.set_xff(self.peer.ip());
        }
        let req = &b.req;
        let src = &b.client[..];
        let out = &mut b.head_out;
        out.clear();
        out.reserve(1024);
        out.extend_from_slice(&src[req.method_r.clone()]);
        out.push(b' ');
        match &req.abs_path_r {
            Some(p) => {
                let path = &src[p.clone()];
                if !path.starts_with(b"/") {
                    out.push(b'/');
                }
                out.extend_from_slice(path);
            }
            None => out.extend_from_slice(&src[req.target_r.clone()]),
        }
        out.extend_from_slice(if req.minor == 0 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        if let Some(a) = &req.abs_authority_r {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(&src[a.clone()]);
            out.extend_from_slice(b"\r\n");
        }
        let cookie_name = listen.cookie.as_ref().map(|c| c.name.as_bytes());
        let mut te_written = false;
        let mut cl_written = false;
        for f in &req.headers {
            let name = &src[f.name()];
            let value = &src[f.value()];
            match f.known {
                // Content-Length is re-emitted once, as the single validated decimal value
                // (identical duplicates and `5, 5` lists become one header, as HAProxy does).
                Known::ContentLength => {
                    if !cl_written && req.framing() != Framing::Chunked {
                        let n = match req.framing() {
                            Framing::Length(n) => n,
                            _ => 0,
                        };
                        out.extend_from_slice(b"content-length: ");
                        let _ = std::io::Write::write_fmt(out, format_args!("{n}"));
                        out.extend_from_slice(b"\r\n");
                        cl_written = true;
                    }
                    continue;
                }
                // The one transfer coding we accept is re-emitted where the client put it.
                Known::TransferEncoding => {
                    if !te_written {
                        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                        te_written = true;
                    }
                    continue;
                }
                Known::Upgrade if req.upgrade => {}
                k if k.hop_by_hop() => continue,
                // The target's authority replaced Host.
                Known::Host if req.abs_authority_r.is_some() => continue,
                Known::Host => {}
                // `http-request set-header`: the client's own values are replaced, not kept.
                Known::XForwardedProto if listen.forwarded_proto => continue,
                Known::XForwardedPort if listen.forwarded_port => continue,
                _ => {}
            }
            // Headers the client listed in `Connection` are hop-by-hop too (Host aside).
            if f.known != Known::Host
                && req
                    .conn_listed
                    .iter()
                    .any(|r| src[r.clone()].eq_ignore_ascii_case(name))
            {
                continue;
            }
            if f.known == Known::Cookie {
                if let Some(cn) = cookie_name {
                    b.scratch.clear();
                    if cookie::strip(value, cn, strip_cookie, &mut b.scratch) {
                        out.extend_from_slice(b"cookie: ");
                        out.extend_from_slice(&b.scratch);
                        out.extend_from_slice(b"\r\n");
                    }
                    continue;
                }
            }
            h1::push_field(out, src, f);
        }
        // HAProxy order: the frontend's `set-header` rules run before the backend adds
        // X-Forwarded-For.
        if listen.forwarded_proto {
            out.extend_from_slice(if self.secure {
                b"x-forwarded-proto: https\r\n"
            } else {
                b"x-forwarded-proto: http\r\n"
            });
        }
        if listen.forwarded_port {
            out.extend_from_slice(b"x-forwarded-port: ");
            let _ = std::io::Write::write_fmt(out, format_args!("{}", self.local.port()));
            out.extend_from_slice(b"\r\n");
        }
        if let Some(except) = &listen.forwardfor_except {
            if forwarded::should_add(except, self.peer.ip()) {
                out.extend_from_slice(&b.xff);
            }
        }
        if req.upgrade {
            out.extend_from_slice(b"connection: upgrade\r\n");
        } else if req.minor == 0 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

pub(super) enum UploadErr {
    ClientClosed,
    ClientTimeout,
    BadChunk,
    Server,
}

/// Streams the request body (already partly in `cbuf`) to the server; leaves any pipelined
/// bytes after the body in `cbuf`.
pub(super) async fn upload_body<R, W>(
    crd: &mut R,
    cbuf: &mut BytesMut,
    uwr: &mut W,
    framing: Framing,
    tclient: Duration,
    tserver: Duration,
    scratch: &mut Vec<u8>,
) -> Result<u64, UploadErr>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut sent = 0u64;
    match framing {
        Framing::None | Framing::UntilClose => Ok(0),
        Framing::Length(mut remaining) => loop {
            if !cbuf.is_empty() {
                let k = (cbuf.len() as u64).min(remaining) as usize;
                write_to(uwr, &cbuf[..k], tserver)
                    .await
                    .map_err(|_| UploadErr::Server)?;
                cbuf.advance(k);
                remaining -= k as u64;
                sent += k as u64;
            }
            if remaining == 0 {
                return Ok(sent);
            }
            read_into(crd, cbuf, tclient).await?;
        },
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::default();
            loop {
                if !cbuf.is_empty() {
                    scratch.clear();
                    let n = dec
                        .feed(cbuf, scratch, true)
                        .map_err(|_| UploadErr::BadChunk)?;
                    write_to(uwr, scratch, tserver)
                        .await
                        .map_err(|_| UploadErr::Server)?;
                    cbuf.advance(n);
                    sent += scratch.len() as u64;
                }
                if dec.is_done() {
                    return Ok(sent);
                }
                read_into(crd, cbuf, tclient).await?;
            }
        }
    }
}

pub(super) async fn read_into<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    t: Duration,
) -> Result<(), UploadErr> {
    match timeout(t, read_more(rd, buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Err(UploadErr::ClientClosed),
        Ok(Ok(_)) => Ok(()),
        Err(_) => Err(UploadErr::ClientTimeout),
    }
}

pub(super) async fn write_to<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    t: Duration,
) -> Result<(), ()> {
    match within(t, w.write_all(data)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
