//! HTTP/1.1 on std's `TcpStream`: a blocking keep-alive client for the well-behaved load
//! (a curl process per request costs more CPU than the bytes it moves on two cores), and
//! `Watch`, a non-blocking request whose answer the attack threads poll, many to a thread.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// How often a blocked read looks at its deadline and the stop flag.
const GRAIN: Duration = Duration::from_millis(200);
/// The longest response head read before giving up on it.
const MAX_HEAD: usize = 64 << 10;

/// What bounds one request: a deadline, a flag that ends it early, and a counter that
/// body bytes are added to as they arrive (so throughput counts bytes inside a phase,
/// not whole blobs).
pub struct Ctx<'a> {
    pub deadline: Instant,
    pub stop: &'a AtomicBool,
    pub counter: Option<&'a AtomicU64>,
}

#[derive(Debug)]
pub enum Fail {
    /// No full answer by the deadline.
    Timeout,
    /// The stop flag was raised.
    Stopped,
    /// The server closed the connection short of a full answer.
    Closed,
    Io(io::Error),
    Bad(String),
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::Stopped => f.write_str("stopped"),
            Self::Closed => f.write_str("closed by the server"),
            Self::Io(e) => write!(f, "{}", io_kind(e)),
            Self::Bad(what) => write!(f, "bad response: {what}"),
        }
    }
}

/// An error's kind in words, without the errno noise, so that errors count by kind.
fn io_kind(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::BrokenPipe => "broken pipe".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
        _ => e.to_string(),
    }
}

pub struct Response {
    pub status: u16,
    /// The body's first bytes, up to what the request asked to keep.
    pub body: Vec<u8>,
    /// All the body's bytes.
    pub bytes: u64,
}

pub struct Client {
    addr: SocketAddr,
    host: String,
    conn: Option<(TcpStream, Vec<u8>)>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            conn: None,
        }
    }

    /// A GET on this client's connection (a new one when it has none); `keep` body bytes
    /// are returned. A kept-alive connection the server closed meanwhile is retried once on
    /// a new one, as every client does.
    pub fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        keep: usize,
        ctx: &Ctx<'_>,
    ) -> Result<Response, Fail> {
        let reused = self.conn.is_some();
        let mut answered = false;
        let first = self.try_get(path, headers, keep, ctx, &mut answered);
        match first {
            Err(Fail::Closed | Fail::Io(_)) if reused && !answered => {
                let mut again = false;
                self.try_get(path, headers, keep, ctx, &mut again)
            }
            other => other,
        }
    }

    fn try_get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        keep: usize,
        ctx: &Ctx<'_>,
        answered: &mut bool,
    ) -> Result<Response, Fail> {
        let (mut stream, mut buf) = match self.conn.take() {
            Some(conn) => conn,
            None => (connect(self.addr, ctx)?, Vec::new()),
        };
        stream
            .write_all(&request(&self.host, path, headers))
            .map_err(Fail::Io)?;
        let head_end = loop {
            if let Some(at) = find(&buf, b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() > MAX_HEAD {
                return Err(Fail::Bad("a head over 64 KiB".into()));
            }
            fill(&mut stream, &mut buf, ctx)?;
            *answered = true;
        };
        let head = Head::parse(&buf[..head_end])?;
        buf.drain(..head_end);
        let mut body = Body {
            stream: &mut stream,
            buf,
            ctx,
            kept: Vec::new(),
            keep,
            bytes: 0,
        };
        let reusable = if head.chunked {
            body.chunked()?;
            !head.close
        } else if let Some(length) = head.length {
            body.take(length)?;
            !head.close
        } else {
            body.until_closed()?;
            false
        };
        let Body {
            buf, kept, bytes, ..
        } = body;
        if reusable {
            self.conn = Some((stream, buf));
        }
        Ok(Response {
            status: head.status,
            body: kept,
            bytes,
        })
    }
}

fn connect(addr: SocketAddr, ctx: &Ctx<'_>) -> Result<TcpStream, Fail> {
    let left = ctx.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Fail::Timeout);
    }
    let stream =
        TcpStream::connect_timeout(&addr, left.min(Duration::from_secs(5))).map_err(|e| match e
            .kind()
        {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Fail::Timeout,
            _ => Fail::Io(e),
        })?;
    stream.set_nodelay(true).map_err(Fail::Io)?;
    stream.set_read_timeout(Some(GRAIN)).map_err(Fail::Io)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(Fail::Io)?;
    Ok(stream)
}

/// Reads what comes next onto `buf`, waiting in `GRAIN`s for the deadline or the flag.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, ctx: &Ctx<'_>) -> Result<usize, Fail> {
    let mut scratch = [0u8; 64 << 10];
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            return Err(Fail::Stopped);
        }
        if Instant::now() >= ctx.deadline {
            return Err(Fail::Timeout);
        }
        match stream.read(&mut scratch) {
            Ok(0) => return Err(Fail::Closed),
            Ok(n) => {
                buf.extend_from_slice(&scratch[..n]);
                return Ok(n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(Fail::Io(e)),
        }
    }
}

struct Head {
    status: u16,
    length: Option<u64>,
    chunked: bool,
    close: bool,
}

impl Head {
    fn parse(head: &[u8]) -> Result<Self, Fail> {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Fail::Bad("no status line".into()))?;
        let mut parsed = Self {
            status,
            length: None,
            chunked: false,
            close: false,
        };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => parsed.length = value.parse().ok(),
                "transfer-encoding" => {
                    parsed.chunked = value.to_ascii_lowercase().contains("chunked");
                }
                "connection" => parsed.close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        Ok(parsed)
    }
}

struct Body<'s, 'c> {
    stream: &'s mut TcpStream,
    buf: Vec<u8>,
    ctx: &'c Ctx<'c>,
    kept: Vec<u8>,
    keep: usize,
    bytes: u64,
}

impl Body<'_, '_> {
    fn got(&mut self, n: usize) {
        let room = self.keep.saturating_sub(self.kept.len()).min(n);
        self.kept.extend_from_slice(&self.buf[..room]);
        self.buf.drain(..n);
        self.bytes += n as u64;
        if let Some(counter) = self.ctx.counter {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn take(&mut self, mut length: u64) -> Result<(), Fail> {
        while length > 0 {
            if self.buf.is_empty() {
                fill(self.stream, &mut self.buf, self.ctx)?;
            }
            let n = usize::try_from(length).map_or(self.buf.len(), |l| l.min(self.buf.len()));
            self.got(n);
            length -= n as u64;
        }
        Ok(())
    }

    fn until_closed(&mut self) -> Result<(), Fail> {
        loop {
            let n = self.buf.len();
            self.got(n);
            match fill(self.stream, &mut self.buf, self.ctx) {
                Ok(_) => {}
                Err(Fail::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    fn line(&mut self) -> Result<String, Fail> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return Ok(line);
            }
            fill(self.stream, &mut self.buf, self.ctx)?;
        }
    }

    fn chunked(&mut self) -> Result<(), Fail> {
        loop {
            let line = self.line()?;
            let size = u64::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| Fail::Bad(format!("chunk size `{line}`")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            self.take(size)?;
            self.line()?;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A GET request's bytes.
pub fn request(host: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: serve-attack\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// A request sent on a socket of its own, its answer read without blocking by whoever
/// polls it.
pub struct Watch {
    pub stream: TcpStream,
    pub since: Instant,
    head: Vec<u8>,
    pub status: Option<u16>,
    length: Option<u64>,
    /// The body's first bytes, for the messages of refusals.
    pub body: Vec<u8>,
    /// Body bytes so far.
    pub received: u64,
    pub eof: bool,
}

impl Watch {
    pub fn send(addr: SocketAddr, request: &[u8]) -> io::Result<Self> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_write_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(request)?;
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            since: Instant::now(),
            head: Vec::new(),
            status: None,
            length: None,
            body: Vec::new(),
            received: 0,
            eof: false,
        })
    }

    /// Reads what has arrived; returns the body bytes read.
    pub fn pump(&mut self) -> u64 {
        let mut scratch = [0u8; 64 << 10];
        let mut got = 0;
        while !self.eof {
            match self.stream.read(&mut scratch) {
                Ok(0) => self.eof = true,
                Ok(n) => got += self.took(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.eof = true,
            }
        }
        got
    }

    fn took(&mut self, bytes: &[u8]) -> u64 {
        let body = if self.status.is_none() {
            self.head.extend_from_slice(bytes);
            let Some(at) = find(&self.head, b"\r\n\r\n") else {
                if self.head.len() > MAX_HEAD {
                    self.eof = true;
                }
                return 0;
            };
            match Head::parse(&self.head[..at + 4]) {
                Ok(head) => {
                    self.status = Some(head.status);
                    self.length = head.length;
                }
                Err(_) => self.eof = true,
            }
            let rest = self.head.split_off(at + 4);
            self.head.clear();
            rest
        } else {
            bytes.to_vec()
        };
        let room = (8usize << 10)
            .saturating_sub(self.body.len())
            .min(body.len());
        self.body.extend_from_slice(&body[..room]);
        self.received += body.len() as u64;
        body.len() as u64
    }

    /// Whether the answer is all here (or the connection ended).
    pub fn complete(&self) -> bool {
        self.eof || self.status.is_some() && self.length.is_some_and(|l| self.received >= l)
    }

    pub fn message(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        // The OCI error JSON's message, or the text as it is.
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned())
    }
}

/// For each socket, whether its peer has closed it (or it failed): POLLRDHUP says so even
/// when unread bytes are waiting, which a reader that never reads needs.
pub fn hung_up<'a>(streams: impl Iterator<Item = &'a TcpStream>) -> Vec<bool> {
    let gone = PollFlags::from_bits_retain(libc::POLLRDHUP)
        | PollFlags::POLLHUP
        | PollFlags::POLLERR
        | PollFlags::POLLNVAL;
    let mut fds: Vec<PollFd<'_>> = streams.map(|s| PollFd::new(s.as_fd(), gone)).collect();
    if poll(&mut fds, PollTimeout::ZERO).is_err() {
        return vec![false; fds.len()];
    }
    fds.iter()
        .map(|fd| fd.revents().is_some_and(|r| r.intersects(gone)))
        .collect()
}
