//! Access logging in HAProxy's `option httplog` format, off the request path.
//!
//! A request formats its line into a buffer and hands it to a bounded queue with `try_send`;
//! a dedicated OS thread drains the queue into the target (stdout/stderr, a file, the local
//! syslog socket or remote syslog over UDP). When the target is slow and the queue is full, lines
//! are dropped and counted rather than ever blocking a request.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

/// Lines buffered between the request path and the writer thread.
const QUEUE_LINES: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    Stderr,
    File(String),
    /// Local syslog (`/dev/log`).
    Syslog,
    /// Remote syslog over UDP (HAProxy `log 127.0.0.1 local0`).
    Udp(SocketAddr),
    Off,
}

impl Target {
    pub fn parse(s: &str) -> Target {
        match s {
            "stdout" => Target::Stdout,
            "stderr" => Target::Stderr,
            "syslog" => Target::Syslog,
            "off" => Target::Off,
            _ => match s.strip_prefix("udp://").and_then(|a| a.parse().ok()) {
                Some(a) => Target::Udp(a),
                None => Target::File(s.to_string()),
            },
        }
    }
}

/// Syslog facility number from its name (`local0` = 16).
pub fn facility_code(name: &str) -> u8 {
    match name {
        "kern" => 0,
        "user" => 1,
        "daemon" => 3,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => 16,
    }
}

#[derive(Debug)]
pub struct AccessLog {
    pub target: Target,
    pub facility: String,
    tx: Option<SyncSender<Vec<u8>>>,
    pub written: AtomicU64,
    pub dropped: AtomicU64,
}

impl AccessLog {
    /// Starts the writer thread for `target`.
    pub fn start(target: Target, facility: &str) -> std::io::Result<AccessLog> {
        let tx = if target == Target::Off {
            None
        } else {
            let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_LINES);
            let sink = Sink::open(&target, facility_code(facility))?;
            std::thread::Builder::new()
                .name("edgelb-accesslog".into())
                .spawn(move || writer(rx, sink))?;
            Some(tx)
        };
        Ok(AccessLog {
            target,
            facility: facility.to_string(),
            tx,
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line (without newline). Never blocks.
    pub fn send(&self, line: Vec<u8>) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(line) {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

enum Sink {
    Stream(Box<dyn Write + Send>),
    Unix(std::os::unix::net::UnixDatagram, u8),
    Udp(std::net::UdpSocket, SocketAddr, u8),
}

impl Sink {
    fn open(t: &Target, facility: u8) -> std::io::Result<Sink> {
        Ok(match t {
            Target::Stdout | Target::Off => Sink::Stream(Box::new(std::io::stdout())),
            Target::Stderr => Sink::Stream(Box::new(std::io::stderr())),
            Target::File(p) => Sink::Stream(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            Target::Syslog => {
                let s = std::os::unix::net::UnixDatagram::unbound()?;
                s.connect("/dev/log")?;
                Sink::Unix(s, facility)
            }
            Target::Udp(addr) => {
                let bind: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse().map_err(std::io::Error::other)?
                } else {
                    "[::]:0".parse().map_err(std::io::Error::other)?
                };
                Sink::Udp(std::net::UdpSocket::bind(bind)?, *addr, facility)
            }
        })
    }
}

/// RFC 3164 header: `<134>Nov 24 01:22:48 edgelb[pid]: ` (info severity).
fn syslog_frame(facility: u8, line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 48);
    let pri = facility as u32 * 8 + 6;
    let now = chrono::Local::now();
    let _ = write!(
        out,
        "<{pri}>{} edgelb[{}]: ",
        now.format("%b %e %H:%M:%S"),
        std::process::id()
    );
    out.extend_from_slice(line);
    out
}

fn writer(rx: Receiver<Vec<u8>>, mut sink: Sink) {
    while let Ok(first) = rx.recv() {
        match &mut sink {
            Sink::Stream(w) => {
                let mut line = first;
                loop {
                    line.push(b'\n');
                    let _ = w.write_all(&line);
                    match rx.try_recv() {
                        Ok(next) => line = next,
                        Err(_) => break,
                    }
                }
                let _ = w.flush();
            }
            Sink::Unix(s, fac) => {
                let _ = s.send(&syslog_frame(*fac, &first));
            }
            Sink::Udp(s, addr, fac) => {
                let _ = s.send_to(&syslog_frame(*fac, &first), *addr);
            }
        }
    }
}

/// Everything one httplog line says about a request.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub client: SocketAddr,
    pub date: SystemTime,
    pub frontend: &'a str,
    pub backend: &'a str,
    /// `None` prints `<NOSRV>`.
    pub server: Option<&'a str>,
    pub tr: i64,
    pub tw: i64,
    pub tc: i64,
    pub tres: i64,
    pub ta: i64,
    pub status: i32,
    pub bytes: u64,
    pub term: [u8; 4],
    pub actconn: u64,
    pub feconn: u64,
    pub beconn: u64,
    pub srv_conn: u64,
    pub retries: u32,
    pub redispatched: bool,
    /// `None` prints `<BADREQ>`.
    pub request_line: Option<(&'a [u8], &'a [u8], u8)>,
}

pub fn ms(d: Option<Duration>) -> i64 {
    d.map(|d| d.as_millis() as i64).unwrap_or(-1)
}

/// Formats the exact `option httplog` line (captures absent, so `%hr %hs` vanish).
pub fn format(r: &Record<'_>, out: &mut Vec<u8>) {
    let date = chrono::DateTime::<chrono::Local>::from(r.date);
    let _ = write!(
        out,
        "{}:{} [{}] {} {}/{} {}/{}/{}/{}/{} {} {} - - ",
        crate::proxy::forwarded::canonical(r.client.ip()),
        r.client.port(),
        date.format("%d/%b/%Y:%H:%M:%S%.3f"),
        r.frontend,
        r.backend,
        r.server.unwrap_or("<NOSRV>"),
        r.tr,
        r.tw,
        r.tc,
        r.tres,
        r.ta,
        r.status,
        r.bytes,
    );
    out.extend_from_slice(&r.term);
    let _ = write!(
        out,
        " {}/{}/{}/{}/{}{} 0/0 \"",
        r.actconn,
        r.feconn,
        r.beconn,
        r.srv_conn,
        if r.redispatched { "+" } else { "" },
        r.retries
    );
    match r.request_line {
        Some((method, uri, minor)) => {
            escape(out, method);
            out.push(b' ');
            escape(out, uri);
            let _ = write!(out, " HTTP/1.{minor}");
        }
        None => out.extend_from_slice(b"<BADREQ>"),
    }
    out.push(b'"');
}

/// HAProxy escapes `"` and non-printable bytes in the logged request as `#XX`.
fn escape(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b == b'"' || b == b'#' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(&[b'#', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_haproxy_field_order() {
        let r = Record {
            client: "127.0.0.1:48116".parse().unwrap(),
            date: SystemTime::now(),
            frontend: "webapp",
            backend: "webapp",
            server: Some("app1"),
            tr: 0,
            tw: 0,
            tc: 0,
            tres: 0,
            ta: 0,
            status: 200,
            bytes: 257,
            term: *b"--NI",
            actconn: 1,
            feconn: 1,
            beconn: 0,
            srv_conn: 0,
            retries: 0,
            redispatched: false,
            request_line: Some((b"GET", b"/a\"b", 1)),
        };
        let mut out = Vec::new();
        format(&r, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("127.0.0.1:48116 ["), "{s}");
        assert!(
            s.ends_with("] webapp webapp/app1 0/0/0/0/0 200 257 - - --NI 1/1/0/0/0 0/0 \"GET /a#22b HTTP/1.1\""),
            "{s}"
        );
    }
}
