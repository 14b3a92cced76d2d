//! The response from the server: interim and final heads, and the streamed response body.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use super::exchange::ReqInfo;
use super::h1::{self, ChunkedDecoder, Framing, Parsed, ResponseHead};
use super::request::write_to;
use super::session::read_more;

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
    tserver: Duration,
    max: usize,
) -> Result<(), HeadErr>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut received_any = false;
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
                            for (n, v) in &res.headers {
                                h1::push_lower(&mut interim, &ubuf[n.clone()]);
                                interim.extend_from_slice(b": ");
                                interim.extend_from_slice(&ubuf[v.clone()]);
                                interim.extend_from_slice(b"\r\n");
                            }
                            interim.extend_from_slice(b"\r\n");
                            if cwr.write_all(&interim).await.is_err() {
                                return Err(HeadErr::Client);
                            }
                        }
                        let n = res.head_len;
                        ubuf.advance(n);
                        continue;
                    }
                    return Ok(());
                }
                Ok(Parsed::Partial) if ubuf.len() >= max => return Err(HeadErr::Invalid),
                Ok(Parsed::Partial) => {}
                Err(_) => return Err(HeadErr::Invalid),
            }
        }
        match timeout(tserver, read_more(urd, ubuf)).await {
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

/// Relays the response body; `Err((bytes, term))` when one side failed midway.
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
