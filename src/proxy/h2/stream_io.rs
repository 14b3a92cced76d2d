//! One HTTP/2 stream seen as an HTTP/1.1 client connection, so the request path
//! (`session` + `exchange`) serves it exactly as it serves a TCP client.
//!
//! Read side: the synthesized HTTP/1.1 request head (`convert::request_head`), then the request
//! body from the `RecvStream` (as it is under `content-length`, else framed as chunks with the
//! trailers), then EOF: one request per stream, so the session's keep-alive loop ends there.
//! Flow-control capacity is given back as the path takes the bytes, so a stream holds at most
//! its window (`initial_window_size`) of unread body.
//!
//! Write side: the HTTP/1.1 response the path writes (1xx heads, the final head, the body
//! framed by `content-length`, chunks or the end of the stream) becomes HEADERS (informational
//! and final) and DATA frames. A write only takes as many bytes as the stream's send window
//! allows, so the path's own `timeout_client` bounds a client that does not read, and no stream
//! buffers more than its window. Nothing is copied through an extra task or pipe.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::convert::{self, BodyFraming};
use crate::proxy::h1::ChunkedDecoder;
use crate::proxy::session::ClientIo;

/// How the response body is being carried.
enum Out {
    /// Waiting for (the rest of) a response head.
    Head,
    /// `content-length` bytes left.
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the path shuts the stream (no length given).
    UntilEnd,
    /// END_STREAM (or a reset) was sent; later writes are discarded.
    Done,
}

enum In {
    /// The synthesized head, then the body.
    Head,
    Body,
    /// Chunked body: the final chunk and trailers are being delivered.
    Ending,
    Eof,
}

/// An h2 stream as a `ClientIo`: a read half and a write half that share nothing, so the
/// request path borrows both at once without a lock (`split_io`).
pub struct StreamIo {
    rd: StreamReader,
    wr: StreamWriter,
}

/// The read half: the request.
pub struct StreamReader {
    rstate: In,
    framing: BodyFraming,
    /// Bytes waiting to be read: the head, a chunk-size line, a DATA payload, a CRLF.
    staged: [Bytes; 3],
    body: RecvStream,
}

/// The write half: the response.
pub struct StreamWriter {
    wstate: Out,
    respond: Option<SendResponse<Bytes>>,
    send: Option<SendStream<Bytes>>,
    head_buf: Vec<u8>,
    scratch: Vec<u8>,
    /// A HEAD request: the response has no body whatever its head says.
    head_request: bool,
    max_head: usize,
}

impl StreamIo {
    pub fn new(
        head: Vec<u8>,
        framing: BodyFraming,
        body: RecvStream,
        respond: SendResponse<Bytes>,
        head_request: bool,
        max_head: usize,
    ) -> Self {
        StreamIo {
            rd: StreamReader {
                rstate: In::Head,
                framing,
                staged: [Bytes::from(head), Bytes::new(), Bytes::new()],
                body,
            },
            wr: StreamWriter {
                wstate: Out::Head,
                respond: Some(respond),
                send: None,
                head_buf: Vec::new(),
                scratch: Vec::new(),
                head_request,
                max_head,
            },
        }
    }
}

impl StreamReader {
    /// Copies staged bytes into `buf`; true when something was copied.
    fn drain_staged(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let mut copied = false;
        for s in self.staged.iter_mut() {
            if buf.remaining() == 0 {
                break;
            }
            if s.is_empty() {
                continue;
            }
            let n = s.len().min(buf.remaining());
            buf.put_slice(&s[..n]);
            s.advance(n);
            copied = true;
        }
        copied
    }

    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.rstate {
                In::Head => {
                    self.rstate = if self.framing == BodyFraming::None {
                        In::Eof
                    } else {
                        In::Body
                    };
                }
                In::Body => match ready!(self.body.poll_data(cx)) {
                    Some(Ok(data)) => {
                        // The path copies it out at once: give the window back now.
                        let _ = self.body.flow_control().release_capacity(data.len());
                        if data.is_empty() {
                            continue;
                        }
                        if self.framing == BodyFraming::Chunked {
                            self.staged[0] = Bytes::from(format!("{:x}\r\n", data.len()));
                            self.staged[1] = data;
                            self.staged[2] = Bytes::from_static(b"\r\n");
                        } else {
                            self.staged[0] = data;
                        }
                        return Poll::Ready(Ok(()));
                    }
                    Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
                    None => {
                        if self.framing == BodyFraming::Length {
                            self.rstate = In::Eof;
                            return Poll::Ready(Ok(()));
                        }
                        self.rstate = In::Ending;
                    }
                },
                In::Ending => {
                    let trailers = match ready!(self.body.poll_trailers(cx)) {
                        Ok(t) => t,
                        Err(e) => return Poll::Ready(Err(h2_io(e))),
                    };
                    let mut end = b"0\r\n".to_vec();
                    for (n, v) in trailers.iter().flat_map(|t| t.iter()) {
                        let n = n.as_str().as_bytes();
                        if convert::is_connection_specific(n) {
                            continue;
                        }
                        end.extend_from_slice(n);
                        end.extend_from_slice(b": ");
                        end.extend_from_slice(v.as_bytes());
                        end.extend_from_slice(b"\r\n");
                    }
                    end.extend_from_slice(b"\r\n");
                    self.staged[0] = Bytes::from(end);
                    self.rstate = In::Eof;
                    return Poll::Ready(Ok(()));
                }
                In::Eof => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl StreamWriter {
    /// Consumes response-head bytes from `data` up to the end of the head; parses and sends the
    /// head once it is complete. Returns how many bytes of `data` were taken.
    fn write_head(&mut self, data: &[u8]) -> io::Result<usize> {
        let old = self.head_buf.len();
        self.head_buf.extend_from_slice(data);
        let from = old.saturating_sub(3);
        let Some(end) = self.head_buf[from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| from + p + 4)
        else {
            if self.head_buf.len() > self.max_head {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
            }
            return Ok(data.len());
        };
        self.head_buf.truncate(end);
        let taken = end - old;
        // The head's own buffer becomes the field values (no copy per field).
        let head = Bytes::from(std::mem::take(&mut self.head_buf));
        let head = convert::response_head(&head)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let Some(respond) = self.respond.as_mut() else {
            return Err(io::Error::other("response already sent"));
        };
        let status = head.status.as_u16();
        if (100..200).contains(&status) {
            // 101 cannot happen (h2 requests carry no Upgrade); other 1xx are relayed.
            if status != 101 {
                let mut r = Response::new(());
                *r.status_mut() = head.status;
                *r.headers_mut() = head.headers;
                respond.send_informational(r).map_err(h2_io)?;
            }
            return Ok(taken);
        }
        let no_body = self.head_request || status == 204 || status == 304;
        let mut r = Response::new(());
        *r.status_mut() = head.status;
        *r.headers_mut() = head.headers;
        let next = if no_body || head.length == Some(0) {
            Out::Done
        } else if head.chunked {
            Out::Chunked(ChunkedDecoder::default())
        } else if let Some(n) = head.length {
            Out::Length(n)
        } else {
            Out::UntilEnd
        };
        let end = matches!(next, Out::Done);
        let send = respond.send_response(r, end).map_err(h2_io)?;
        self.respond = None;
        self.send = Some(send);
        self.wstate = next;
        Ok(taken)
    }
}

fn h2_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        if let Some(e) = e.get_io() {
            return io::Error::new(e.kind(), e.to_string());
        }
    }
    io::Error::new(io::ErrorKind::BrokenPipe, e)
}

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.drain_staged(buf) {
                return Poll::Ready(Ok(()));
            }
            if matches!(this.rstate, In::Eof) {
                // EOF: one request per stream.
                return Poll::Ready(Ok(()));
            }
            ready!(this.poll_body(cx))?;
        }
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match this.wstate {
            Out::Head => return Poll::Ready(this.write_head(data)),
            Out::Done => return Poll::Ready(Ok(data.len())),
            _ => {}
        }
        let Some(send) = this.send.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        // Take only what the peer's window allows: the rest waits in the path's buffer.
        let want = match this.wstate {
            Out::Length(n) => (data.len() as u64).min(n) as usize,
            _ => data.len(),
        };
        if send.capacity() == 0 {
            send.reserve_capacity(want);
            loop {
                match ready!(send.poll_capacity(cx)) {
                    Some(Ok(0)) => continue,
                    Some(Ok(_)) => break,
                    Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
                    None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                }
            }
        }
        let cap = send.capacity().min(want);
        match &mut this.wstate {
            Out::Length(left) => {
                *left -= cap as u64;
                let end = *left == 0;
                send.send_data(Bytes::copy_from_slice(&data[..cap]), end)
                    .map_err(h2_io)?;
                if end {
                    this.wstate = Out::Done;
                }
                Poll::Ready(Ok(cap))
            }
            Out::UntilEnd => {
                send.send_data(Bytes::copy_from_slice(&data[..cap]), false)
                    .map_err(h2_io)?;
                Poll::Ready(Ok(cap))
            }
            Out::Chunked(dec) => {
                // At most `cap` input bytes, so at most `cap` payload bytes come out.
                this.scratch.clear();
                let taken = dec
                    .feed(&data[..cap], &mut this.scratch, false)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let end = dec.is_done();
                if !this.scratch.is_empty() || end {
                    send.send_data(Bytes::copy_from_slice(&this.scratch), end)
                        .map_err(h2_io)?;
                }
                if end {
                    this.wstate = Out::Done;
                    // What follows the last chunk is not part of this response.
                    return Poll::Ready(Ok(data.len()));
                }
                Poll::Ready(Ok(taken))
            }
            Out::Head | Out::Done => Poll::Ready(Ok(data.len())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection task writes the frames out.
        Poll::Ready(Ok(()))
    }

    /// Ends the stream: END_STREAM for a body that ends with the stream, RST_STREAM when the
    /// response was cut short (or never started: the client is told the request failed).
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match std::mem::replace(&mut this.wstate, Out::Done) {
            Out::Done => {}
            Out::UntilEnd => {
                if let Some(s) = this.send.as_mut() {
                    let _ = s.send_data(Bytes::new(), true);
                }
            }
            Out::Head => {
                if let Some(r) = this.respond.as_mut() {
                    r.send_reset(Reason::CANCEL);
                }
            }
            Out::Length(_) | Out::Chunked(_) => {
                if let Some(s) = this.send.as_mut() {
                    s.send_reset(Reason::INTERNAL_ERROR);
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for StreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().rd).poll_read(cx, buf)
    }
}

impl AsyncWrite for StreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().wr).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().wr).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().wr).poll_shutdown(cx)
    }
}

impl ClientIo for StreamIo {
    const HTTP2: bool = true;
    type Reader<'a> = &'a mut StreamReader;
    type Writer<'a> = &'a mut StreamWriter;

    fn split_io(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        (&mut self.rd, &mut self.wr)
    }

    fn poll_readable(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
