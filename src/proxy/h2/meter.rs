//! Counts the frames an HTTP/2 client sends, to stop floods the `h2` crate answers one by one
//! without limit: RST_STREAM (rapid reset, CVE-2023-44487, for streams already accepted), and
//! SETTINGS, PING, PRIORITY and empty DATA frames (each costs a reply or work, none carries a
//! request). Over a limit per second the connection is marked, and the driver closes it with
//! GOAWAY ENHANCE_YOUR_CALM (as HAProxy and nginx do).
//!
//! The meter sits between the socket and `h2` and only reads the 9-byte frame headers; the
//! payload passes through untouched.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Client preface (RFC 9113 3.4), skipped before the first frame.
const PREFACE_LEN: usize = 24;
/// The counting window.
const WINDOW: Duration = Duration::from_secs(1);

/// Limits per connection and second.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub resets: u32,
    pub control: u32,
}

/// The byte-stream wrapper.
pub struct Meter<T> {
    io: T,
    limits: Limits,
    /// Preface bytes still to skip.
    preface: usize,
    hdr: [u8; 9],
    hdr_len: usize,
    /// Payload bytes of the current frame still to pass.
    skip: usize,
    since: Option<Instant>,
    resets: u32,
    control: u32,
    tripped: Arc<AtomicBool>,
}

impl<T> Meter<T> {
    pub fn new(io: T, limits: Limits, tripped: Arc<AtomicBool>) -> Self {
        Meter {
            io,
            limits,
            preface: PREFACE_LEN,
            hdr: [0; 9],
            hdr_len: 0,
            skip: 0,
            since: None,
            resets: 0,
            control: 0,
            tripped,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.hdr_len).min(bytes.len());
            self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&bytes[..n]);
            self.hdr_len += n;
            bytes = &bytes[n..];
            if self.hdr_len == 9 {
                self.hdr_len = 0;
                let h = self.hdr;
                let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
                self.skip = len;
                self.frame(h[3], h[4], len);
            }
        }
    }

    fn frame(&mut self, kind: u8, flags: u8, len: usize) {
        const ACK: u8 = 0x1;
        const END_STREAM: u8 = 0x1;
        let (reset, control) = match kind {
            0x0 => (false, len == 0 && flags & END_STREAM == 0),
            0x2 => (false, true),
            0x3 => (true, false),
            0x4 | 0x6 => (false, flags & ACK == 0),
            _ => (false, false),
        };
        if !reset && !control {
            return;
        }
        let now = Instant::now();
        match self.since {
            Some(t) if now.duration_since(t) < WINDOW => {}
            _ => {
                self.since = Some(now);
                self.resets = 0;
                self.control = 0;
            }
        }
        if reset {
            self.resets += 1;
        } else {
            self.control += 1;
        }
        if self.resets > self.limits.resets || self.control > self.limits.control {
            self.tripped.store(true, Ordering::Relaxed);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Meter<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tripped.load(Ordering::Relaxed) {
            // Nothing more is read from a client being sent away: the driver writes the GOAWAY
            // and closes (bounded by its own deadline).
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.scan(&buf.filled()[before..]);
            if this.tripped.load(Ordering::Relaxed) {
                // Wake the driver so it sees the mark and sends the GOAWAY.
                cx.waker().wake_by_ref();
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Meter<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, len: usize) -> Vec<u8> {
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.resize(9 + len, 0xAB);
        f
    }

    #[tokio::test]
    async fn frames_are_counted_across_read_boundaries_and_the_limit_trips() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut m = Meter::new(
            (),
            Limits {
                resets: 3,
                control: 100,
            },
            flag.clone(),
        );
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(0x4, 0, 12));
        bytes.extend(frame(0x1, 0x4, 30));
        for _ in 0..3 {
            bytes.extend(frame(0x3, 0, 4));
        }
        // One byte at a time: header and payload split everywhere.
        for b in &bytes {
            m.scan(std::slice::from_ref(b));
        }
        assert_eq!((m.resets, m.control), (3, 1));
        assert!(!flag.load(Ordering::Relaxed));
        m.scan(&frame(0x3, 0, 4));
        assert!(flag.load(Ordering::Relaxed));
    }
}
