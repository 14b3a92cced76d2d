//! Access logging in HAProxy's `option httplog` format, off the request path.
//!
//! A request formats its line ([`log`]) into its thread's batch, and a batch goes to a bounded
//! queue with `try_send`; a dedicated OS thread drains the queue into the target (stdout/stderr,
//! a file, the local syslog socket or remote syslog over UDP). The queue is bounded in bytes
//! (`log.queue_bytes`) and each line is cut at `log.max_line_len` like HAProxy's `log ... len`:
//! when the target is slow and the queue is full, lines are dropped and counted rather than ever
//! blocking a request or growing memory.
//!
//! A proxy worker ([`hold_lines_on_this_thread`]) hands its batch over when it holds
//! `BATCH_BYTES`, when the worker goes idle (its runtime's park hook calls [`flush_this_thread`])
//! and at least once a second, so a line waits no longer than the worker's current burst of
//! work; a few buffers go round between the worker and the writer. Any other thread hands each
//! line over at once. Batching spares each request an allocation (freed on the writer thread),
//! a queue slot and three shared counters (benches/README.md, issue 16, tenth pass). A batch
//! that finds the queue full is dropped whole, its lines counted. A graceful stop has the
//! workers hand over their batches and waits for [`AccessLog::all_written`] (`App::drain`).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Most batches (or single lines) buffered between the request path and the writer thread
/// (the byte bound below is the one that matters; this caps the channel's slots).
const QUEUE_LINES: usize = 65_536;
/// Default `log.max_line_len`: HAProxy's `log ... len` default, 1024 bytes per message with its
/// syslog header and final newline.
pub const DEFAULT_MAX_LINE_LEN: usize = 1024;
/// Default `log.queue_bytes`: line bytes waiting for a slow log target before lines are dropped.
pub const DEFAULT_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// How long lines may be and how much may wait (both take effect on reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_line_len: usize,
    pub queue_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_len: DEFAULT_MAX_LINE_LEN,
            queue_bytes: DEFAULT_QUEUE_BYTES,
        }
    }
}

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
    tx: Option<SyncSender<Lines>>,
    /// Bytes of the lines in the queue (the writer subtracts what it took).
    queued: Arc<AtomicUsize>,
    max_line_len: AtomicUsize,
    queue_bytes: AtomicUsize,
    /// Bytes of the syslog header the writer puts before each line (0 for streams).
    frame_overhead: usize,
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub truncated: AtomicU64,
    /// Lines the writer has written out (of the `written` ones queued for it).
    done: Arc<AtomicU64>,
}

impl AccessLog {
    /// Starts the writer thread for `target`.
    pub fn start(target: Target, facility: &str, limits: Limits) -> std::io::Result<AccessLog> {
        let queued = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let fac = facility_code(facility);
        let tx = if target == Target::Off {
            None
        } else {
            let (tx, rx) = sync_channel::<Lines>(QUEUE_LINES);
            let sink = Sink::open(&target, fac)?;
            let (q, d) = (queued.clone(), done.clone());
            std::thread::Builder::new()
                .name("edgelb-accesslog".into())
                .spawn(move || writer(rx, sink, q, d))?;
            Some(tx)
        };
        let frame_overhead = match target {
            Target::Syslog | Target::Udp(_) => syslog_frame(fac, b"").len(),
            _ => 0,
        };
        let log = AccessLog {
            target,
            facility: facility.to_string(),
            tx,
            queued,
            max_line_len: AtomicUsize::new(0),
            queue_bytes: AtomicUsize::new(0),
            frame_overhead,
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            done,
        };
        log.set_limits(limits);
        Ok(log)
    }

    /// Applies reloaded limits to a running log.
    pub fn set_limits(&self, l: Limits) {
        self.max_line_len.store(l.max_line_len, Ordering::Relaxed);
        self.queue_bytes.store(l.queue_bytes, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line (without newline), at once, on any thread (the request path uses
    /// [`log`]). Never blocks; cut and counted as [`log`] says.
    pub fn send(&self, line: Vec<u8>) {
        self.send_one(line.len(), |b| b.extend_from_slice(&line));
    }

    /// Queues the one line `f` formats (about `len` bytes) at once, in a buffer of its own.
    fn send_one(&self, len: usize, f: impl FnOnce(&mut Vec<u8>)) {
        let mut batch = Vec::with_capacity(len + 1);
        let cut = self.push_line(&mut batch, f);
        self.send_batch(batch, 1, cut as u64, None);
    }

    /// Appends one line, formatted by `f`, and its newline to `batch`, cut to `max_line_len`
    /// (counting the syslog header and the newline, as HAProxy's `len` does). Whether it was cut.
    fn push_line(&self, batch: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) -> bool {
        let keep = self
            .max_line_len
            .load(Ordering::Relaxed)
            .saturating_sub(self.frame_overhead + 1);
        let start = batch.len();
        f(batch);
        let cut = batch.len() - start > keep;
        if cut {
            batch.truncate(start + keep);
        }
        batch.push(b'\n');
        cut
    }

    /// Queues `lines` newline-terminated lines (`cut` of them cut); the writer sends the emptied
    /// buffer `back`. A batch that would take the queue past `queue_bytes` is dropped and its
    /// lines counted in `dropped`.
    fn send_batch(&self, batch: Vec<u8>, lines: u64, cut: u64, back: Option<SyncSender<Vec<u8>>>) {
        let Some(tx) = &self.tx else { return };
        if cut > 0 {
            self.truncated.fetch_add(cut, Ordering::Relaxed);
        }
        let n = batch.len();
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > self.queue_bytes.load(Ordering::Relaxed) {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.dropped.fetch_add(lines, Ordering::Relaxed);
            return;
        }
        match tx.try_send(Lines {
            bytes: batch,
            lines,
            back,
        }) {
            Ok(()) => {
                self.written.fetch_add(lines, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(n, Ordering::AcqRel);
                self.dropped.fetch_add(lines, Ordering::Relaxed);
            }
        }
    }

    /// Bytes waiting for the writer thread.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Whether the writer has written everything handed to it so far (a graceful stop waits
    /// for this, after the workers' [`flush_this_thread`], so no request goes unlogged).
    pub fn all_written(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.written.load(Ordering::Acquire)
    }
}

/// Bytes a proxy worker's batch holds before it goes to the writer (about 80 lines).
const BATCH_BYTES: usize = 16 * 1024;

/// Newline-terminated lines on their way to the writer, and where their emptied buffer goes.
struct Lines {
    bytes: Vec<u8>,
    /// How many lines `bytes` holds.
    lines: u64,
    back: Option<SyncSender<Vec<u8>>>,
}

/// A thread's lines not yet handed to the writer, all for one log.
struct Batch {
    log: Option<Arc<AccessLog>>,
    bytes: Vec<u8>,
    lines: u64,
    cut: u64,
    /// Set on a proxy worker, whose lines wait for `BATCH_BYTES` (or a flush): where the writer
    /// sends the buffers it has emptied, for this thread's next batches. A few buffers go round,
    /// still in the cache, instead of a new one per batch (whose every line was a cache miss).
    back: Option<(SyncSender<Vec<u8>>, BackRx)>,
}

/// Where a thread's emptied buffers come back.
type BackRx = Receiver<Vec<u8>>;

/// Emptied buffers waiting to be reused by their thread (beyond, the writer frees them).
const BACK_BUFFERS: usize = 8;

impl Batch {
    fn flush(&mut self) {
        if let Some(log) = self.log.take() {
            let next = match &self.back {
                Some((_, rx)) => rx.try_recv().unwrap_or_default(),
                None => Vec::new(),
            };
            let bytes = std::mem::replace(&mut self.bytes, next);
            let back = self.back.as_ref().map(|(tx, _)| tx.clone());
            log.send_batch(bytes, self.lines, self.cut, back);
        }
        (self.lines, self.cut) = (0, 0);
    }
}

thread_local! {
    static BATCH: std::cell::RefCell<Batch> = const {
        std::cell::RefCell::new(Batch {
            log: None,
            bytes: Vec::new(),
            lines: 0,
            cut: 0,
            back: None,
        })
    };
}

/// Logs one request's line to `log` (nothing when the log is off). On a proxy worker the line
/// joins the thread's batch (module doc); elsewhere it is queued at once.
pub fn log(log: &Arc<AccessLog>, r: &Record<'_>) {
    if !log.enabled() {
        return;
    }
    let queued = BATCH.try_with(|b| {
        let Ok(mut b) = b.try_borrow_mut() else {
            return false;
        };
        if b.log.as_ref().is_some_and(|l| !Arc::ptr_eq(l, log)) {
            // A reload changed the log target: the old log gets its lines first.
            b.flush();
        }
        if b.log.is_none() {
            b.log = Some(log.clone());
            if b.bytes.capacity() == 0 {
                let first = if b.back.is_some() {
                    BATCH_BYTES + 1024
                } else {
                    256
                };
                b.bytes.reserve(first);
            }
        }
        let cut = log.push_line(&mut b.bytes, |out| format(r, out));
        b.lines += 1;
        b.cut += cut as u64;
        if b.back.is_none() || b.bytes.len() >= BATCH_BYTES {
            b.flush();
        }
        true
    });
    if !matches!(queued, Ok(true)) {
        // The thread is ending (or, impossibly, logging from within a flush): no batch.
        log.send_one(256, |out| format(r, out));
    }
}

/// Makes this thread batch its lines (a proxy worker: its runtime's park hook and a timer call
/// [`flush_this_thread`]).
pub fn hold_lines_on_this_thread() {
    BATCH.with(|b| {
        let mut b = b.borrow_mut();
        b.back = Some(sync_channel(BACK_BUFFERS));
    });
}

/// Hands this thread's batch to the writer.
pub fn flush_this_thread() {
    let _ = BATCH.try_with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            b.flush();
        }
    });
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

/// How long the writer thread sleeps between batches while lines are flowing.
const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// Bytes the writer gathers for one write to a file or stream.
const WRITE_MAX: usize = 64 * 1024;
/// Empty rounds (of `BATCH_PAUSE`) after which the writer parks until the next line.
const IDLE_ROUNDS: u32 = 100;

/// Drains the queue in batches. Under traffic the thread wakes every `BATCH_PAUSE` and writes
/// everything queued (a worker's batch as it is, single lines gathered up to `WRITE_MAX`), so a
/// request never pays a thread wake-up (a futex call and a context switch per line, measured at
/// ~40 % of the proxy's CPU when the writer blocked on `recv` per line). A worker's emptied
/// buffer goes back to it. After ~1 s without lines it parks on `recv` so an idle proxy sleeps.
fn writer(rx: Receiver<Lines>, mut sink: Sink, queued: Arc<AtomicUsize>, done: Arc<AtomicU64>) {
    let mut idle_rounds = 0u32;
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_MAX + BATCH_BYTES + 1024);
    loop {
        let first = if idle_rounds >= IDLE_ROUNDS {
            match rx.recv() {
                Ok(l) => l,
                Err(_) => return,
            }
        } else {
            match rx.try_recv() {
                Ok(l) => l,
                Err(TryRecvError::Empty) => {
                    idle_rounds += 1;
                    std::thread::sleep(BATCH_PAUSE);
                    continue;
                }
                Err(TryRecvError::Disconnected) => return,
            }
        };
        idle_rounds = 0;
        let mut lines = first;
        let mut written = 0u64;
        loop {
            written += lines.lines;
            queued.fetch_sub(lines.bytes.len(), Ordering::AcqRel);
            match &mut sink {
                Sink::Stream(w) => {
                    if lines.bytes.len() >= BATCH_BYTES / 2 {
                        // A worker's batch: written as it is, not copied.
                        let _ = w.write_all(&batch);
                        batch.clear();
                        let _ = w.write_all(&lines.bytes);
                    } else {
                        batch.extend_from_slice(&lines.bytes);
                        // Written once it holds WRITE_MAX: the writer's own copy is bounded too
                        // (a stalled target stops it here; the queue's byte bound holds the rest).
                        if batch.len() >= WRITE_MAX {
                            let _ = w.write_all(&batch);
                            batch.clear();
                        }
                    }
                }
                Sink::Unix(s, fac) => {
                    for line in lines.bytes.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                        let _ = s.send(&syslog_frame(*fac, line));
                    }
                }
                Sink::Udp(s, addr, fac) => {
                    for line in lines.bytes.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                        let _ = s.send_to(&syslog_frame(*fac, line), *addr);
                    }
                }
            }
            if let Some(back) = lines.back.take() {
                let mut bytes = std::mem::take(&mut lines.bytes);
                bytes.clear();
                let _ = back.try_send(bytes);
            }
            match rx.try_recv() {
                Ok(next) => lines = next,
                Err(_) => break,
            }
        }
        if let Sink::Stream(w) = &mut sink {
            let _ = w.write_all(&batch);
            let _ = w.flush();
            batch.clear();
        }
        done.fetch_add(written, Ordering::Release);
        std::thread::sleep(BATCH_PAUSE);
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
    /// Method, target and version: the HTTP/1 minor version, or [`HTTP2`]. `None` prints
    /// `<BADREQ>`.
    pub request_line: Option<(&'a [u8], &'a [u8], u8)>,
}

/// The version in `Record::request_line` of a request that came over HTTP/2: logged as
/// `HTTP/2.0`, as HAProxy logs its h2 streams.
pub const HTTP2: u8 = 20;

pub fn ms(d: Option<Duration>) -> i64 {
    d.map(|d| d.as_millis() as i64).unwrap_or(-1)
}

/// Appends the decimal digits of `n` (no formatting machinery: a log line has ~20 numbers).
fn push_u64(out: &mut Vec<u8>, n: u64) {
    if n < 10 {
        out.push(b'0' + n as u8);
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
}

fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match crate::proxy::forwarded::canonical(ip) {
        std::net::IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, *o as u64);
            }
        }
        v6 => {
            let _ = write!(out, "{v6}");
        }
    }
}

thread_local! {
    /// The last formatted `dd/Mon/yyyy:HH:MM:SS` (local time) and the Unix second it is for:
    /// chrono's time-zone conversion and formatting run once per second per thread, not once per
    /// request.
    static DATE_CACHE: std::cell::RefCell<(i64, Vec<u8>)> = const { std::cell::RefCell::new((i64::MIN, Vec::new())) };
}

/// Appends `dd/Mon/yyyy:HH:MM:SS.mmm` in local time.
fn push_date(out: &mut Vec<u8>, t: SystemTime) {
    let (secs, ms) = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_millis()),
        Err(_) => {
            let date = chrono::DateTime::<chrono::Local>::from(t);
            let _ = write!(out, "{}", date.format("%d/%b/%Y:%H:%M:%S%.3f"));
            return;
        }
    };
    DATE_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let whole = std::time::UNIX_EPOCH + Duration::from_secs(secs as u64);
            let date = chrono::DateTime::<chrono::Local>::from(whole);
            c.1.clear();
            let _ = write!(c.1, "{}", date.format("%d/%b/%Y:%H:%M:%S"));
            c.0 = secs;
        }
        out.extend_from_slice(&c.1);
    });
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
    ]);
}

/// Formats the exact `option httplog` line (captures absent, so `%hr %hs` vanish).
pub fn format(r: &Record<'_>, out: &mut Vec<u8>) {
    push_ip(out, r.client.ip());
    out.push(b':');
    push_u64(out, r.client.port() as u64);
    out.extend_from_slice(b" [");
    push_date(out, r.date);
    out.extend_from_slice(b"] ");
    out.extend_from_slice(r.frontend.as_bytes());
    out.push(b' ');
    out.extend_from_slice(r.backend.as_bytes());
    out.push(b'/');
    out.extend_from_slice(r.server.unwrap_or("<NOSRV>").as_bytes());
    for (i, t) in [r.tr, r.tw, r.tc, r.tres, r.ta].into_iter().enumerate() {
        out.push(if i == 0 { b' ' } else { b'/' });
        push_i64(out, t);
    }
    out.push(b' ');
    push_i64(out, r.status as i64);
    out.push(b' ');
    push_u64(out, r.bytes);
    out.extend_from_slice(b" - - ");
    out.extend_from_slice(&r.term);
    out.push(b' ');
    push_u64(out, r.actconn);
    out.push(b'/');
    push_u64(out, r.feconn);
    out.push(b'/');
    push_u64(out, r.beconn);
    out.push(b'/');
    push_u64(out, r.srv_conn);
    out.push(b'/');
    if r.redispatched {
        out.push(b'+');
    }
    push_u64(out, r.retries as u64);
    out.extend_from_slice(b" 0/0 \"");
    match r.request_line {
        Some((method, uri, minor)) => {
            escape(out, method);
            out.push(b' ');
            escape(out, uri);
            if minor == HTTP2 {
                out.extend_from_slice(b" HTTP/2.0");
            } else {
                out.extend_from_slice(b" HTTP/1.");
                push_u64(out, minor as u64);
            }
        }
        None => out.extend_from_slice(b"<BADREQ>"),
    }
    out.push(b'"');
}

/// HAProxy escapes `"` and non-printable bytes in the logged request as `#XX`.
fn escape(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let plain = |b: u8| b != b'"' && b != b'#' && (0x20..0x7f).contains(&b);
    if s.iter().all(|&b| plain(b)) {
        out.extend_from_slice(s);
        return;
    }
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
        let r = record(b"/a\"b");
        let mut out = Vec::new();
        format(&r, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("127.0.0.1:48116 ["), "{s}");
        assert!(
            s.ends_with("] webapp webapp/app1 0/0/0/0/0 200 257 - - --NI 1/1/0/0/0 0/0 \"GET /a#22b HTTP/1.1\""),
            "{s}"
        );
    }

    /// A line over `max_line_len` is cut so that the syslog message with its newline fits, as
    /// HAProxy's `len` does, and counted.
    #[test]
    fn long_lines_are_cut_at_max_line_len_and_counted() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let target = Target::Udp(sock.local_addr().unwrap());
        let log = AccessLog::start(
            target,
            "local0",
            Limits {
                max_line_len: 200,
                queue_bytes: DEFAULT_QUEUE_BYTES,
            },
        )
        .unwrap();
        log.send(vec![b'a'; 1000]);
        log.send(b"short".to_vec());
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(n, 199, "message + newline = len");
        assert!(buf[..n].ends_with(b"aaaa"));
        let n = sock.recv(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b": short"));
        assert_eq!(log.truncated.load(Ordering::Relaxed), 1);
        assert_eq!(log.written.load(Ordering::Relaxed), 2);
    }

    /// With a target that stopped reading (a FIFO nobody drains), the queue holds at most
    /// `queue_bytes` of lines: the rest is dropped and counted, memory does not grow.
    #[test]
    fn a_stalled_target_bounds_the_queue_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo");
        // A reader that never reads: opening it non-blocking lets the writer open the FIFO.
        use std::os::unix::fs::OpenOptionsExt;
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let cap = 64 * 1024;
        let log = AccessLog::start(
            Target::File(fifo.to_string_lossy().into_owned()),
            "local0",
            Limits {
                max_line_len: 1024,
                queue_bytes: cap,
            },
        )
        .unwrap();
        for _ in 0..5000 {
            log.send(vec![b'x'; 1000]);
            assert!(log.queued_bytes() <= cap, "{}", log.queued_bytes());
        }
        let dropped = log.dropped.load(Ordering::Relaxed);
        let written = log.written.load(Ordering::Relaxed);
        assert_eq!(dropped + written, 5000);
        // The pipe (64 KiB) plus the queue (64 KiB) plus one writer batch hold what was kept.
        assert!(written < 1000, "written {written}, dropped {dropped}");
        assert_eq!(log.truncated.load(Ordering::Relaxed), 0);
    }

    /// A record for `/n` (the batch tests tell lines apart by path).
    fn record(path: &[u8]) -> Record<'_> {
        Record {
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
            request_line: Some((b"GET", path, 1)),
        }
    }

    /// Reads `path` until it holds `n` lines.
    fn lines_of(path: &std::path::Path, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= n || std::time::Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// On a proxy worker lines wait in the thread's batch until it is flushed (the worker goes
    /// idle) or holds `BATCH_BYTES`; a reload's new log first sends the old log its lines; each
    /// line is cut and counted as a single one would be; every line arrives whole, in order.
    #[test]
    fn a_worker_batches_its_lines_and_hands_them_over_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb) = (dir.path().join("a.log"), dir.path().join("b.log"));
        let open = |p: &std::path::Path, max_line_len| {
            let t = Target::File(p.to_string_lossy().into_owned());
            let limits = Limits {
                max_line_len,
                queue_bytes: DEFAULT_QUEUE_BYTES,
            };
            Arc::new(AccessLog::start(t, "local0", limits).unwrap())
        };
        let (a, b) = (open(&pa, 1024), open(&pb, 60));
        hold_lines_on_this_thread();
        for i in 0..3 {
            log(&a, &record(format!("/{i}").as_bytes()));
        }
        assert_eq!(a.written.load(Ordering::Relaxed), 0, "held in the batch");
        assert_eq!(a.queued_bytes(), 0);
        flush_this_thread();
        let got = lines_of(&pa, 3);
        assert_eq!(got.len(), 3);
        for (i, l) in got.iter().enumerate() {
            assert!(l.ends_with(&format!("\"GET /{i} HTTP/1.1\"")), "{l}");
        }
        assert_eq!(a.written.load(Ordering::Relaxed), 3);
        // A batch that reaches BATCH_BYTES goes by itself.
        let long = vec![b'x'; 900];
        let n = BATCH_BYTES / 900 + 1;
        for _ in 0..n {
            log(&a, &record(&long));
        }
        let sent = a.written.load(Ordering::Relaxed) - 3;
        assert!(
            sent > 0 && sent < n as u64,
            "{sent} of {n} went by themselves"
        );
        // The log changes (a reload): the old one gets its line first; the new one cuts.
        log(&a, &record(b"/last-of-a"));
        log(&b, &record(b"/first-of-b"));
        assert_eq!(a.written.load(Ordering::Relaxed), 4 + n as u64);
        assert_eq!(b.written.load(Ordering::Relaxed), 0);
        flush_this_thread();
        assert_eq!(b.written.load(Ordering::Relaxed), 1);
        assert_eq!(b.truncated.load(Ordering::Relaxed), 1);
        let got = lines_of(&pa, 4 + n);
        assert_eq!(got.len(), 4 + n);
        assert!(got[3..3 + n].iter().all(|l| l.len() > 900));
        assert!(got[3 + n].contains("/last-of-a"));
        let got = lines_of(&pb, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len(), 59, "cut to max_line_len with its newline");
    }

    /// The hand-rolled formatting matches what `write!` + chrono produced before.
    #[test]
    fn fast_format_matches_the_reference_formatting() {
        let dates = [
            SystemTime::now(),
            std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_007),
            std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_999),
            std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_001_000),
        ];
        for (i, date) in dates.into_iter().enumerate() {
            let client: SocketAddr = if i % 2 == 0 {
                "[2001:db8::1]:65535".parse().unwrap()
            } else {
                "[::ffff:192.0.2.200]:1".parse().unwrap()
            };
            let r = Record {
                client,
                date,
                frontend: "fe",
                backend: "be",
                server: None,
                tr: 12,
                tw: -1,
                tc: -1,
                tres: 0,
                ta: 123456,
                status: -1,
                bytes: 18_446_744_073_709_551_615,
                term: *b"SCNN",
                actconn: 0,
                feconn: 10,
                beconn: 200,
                srv_conn: 3000,
                retries: 3,
                redispatched: i % 2 == 1,
                request_line: if i == 3 {
                    None
                } else {
                    Some((b"GET", b"/\x01", 0))
                },
            };
            let mut fast = Vec::new();
            format(&r, &mut fast);
            let d = chrono::DateTime::<chrono::Local>::from(date);
            let want = format!(
                "{}:{} [{}] fe be/<NOSRV> 12/-1/-1/0/123456 -1 18446744073709551615 - - SCNN 0/10/200/3000/{}3 0/0 \"{}\"",
                crate::proxy::forwarded::canonical(client.ip()),
                client.port(),
                d.format("%d/%b/%Y:%H:%M:%S%.3f"),
                if i % 2 == 1 { "+" } else { "" },
                if i == 3 { "<BADREQ>" } else { "GET /#01 HTTP/1.0" },
            );
            assert_eq!(String::from_utf8(fast).unwrap(), want);
        }
    }
}
