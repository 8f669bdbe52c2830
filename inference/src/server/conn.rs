//! Connections: the accept loop, a cap on open connections that evicts the stalest idle one
//! instead of refusing newcomers, per-connection read/write deadlines, and hyper's own error
//! answers made to look like ours (counted, with `X-Model-Version`).
//!
//! Every connection is in one [`ConnPhase`]. A connection that has not sent a complete
//! request head (`Fresh`, `Head`) must do so within the header timeout; one that is idle
//! between requests (`Idle`) is closed after the idle timeout; one whose request is being
//! answered (`Busy`, `Responding`) has no read deadline, and any write that cannot progress
//! for the write timeout ends it. At the cap, a new connection evicts the connection that
//! has waited longest without a request in progress (silent, trickling or idle ones: the
//! cheapest to drop, and the only ones an attacker can hold for free), so a probe always
//! finds room; when every connection is busy, the newcomer is closed at once.
//!
//! hyper answers malformed requests itself (400, 414, 431) without calling our service. The
//! IO wrapper recognises such an answer (a response head written while no response of ours
//! is pending), adds `X-Model-Version` and counts it under route `other`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Sleep;

use super::http::{Body, handle, panicked};
use super::lograte::RateLimited;
use super::metrics::Status;
use super::route::RouteLabel;
use super::state::AppState;

/// Connection limits and timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections at most; at the cap a newcomer evicts the stalest idle connection.
    pub max_connections: usize,
    /// Time to send a complete request head, from connect or from its first byte.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may stay idle between requests.
    pub idle_timeout: Duration,
    /// Time a blocked write may wait for the client to read.
    pub write_timeout: Duration,
}

impl ConnLimits {
    /// Default header timeout: 10 s, generous for any real client on a cluster network.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default idle timeout: 75 s, longer than the 60 s upstream keep-alive of ingress-nginx
    /// and cloud load balancers, so they, not we, close idle pooled connections (no race
    /// between their reuse and our close).
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
    /// Default write timeout.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Descriptors kept out of the connection budget: stdio, the listener, epoll, the log,
    /// the model file or download, and connections being evicted.
    pub const RESERVED_DESCRIPTORS: u64 = 64;
}

/// The connection cap: `requested` if given, never above what the descriptor limit allows
/// (`fd_limit` minus [`ConnLimits::RESERVED_DESCRIPTORS`], at least 16). Pure.
pub fn max_connections(requested: Option<usize>, fd_limit: Option<u64>) -> usize {
    let budget = fd_limit.map_or(usize::MAX, |limit| {
        usize::try_from(
            limit
                .saturating_sub(ConnLimits::RESERVED_DESCRIPTORS)
                .max(16),
        )
        .unwrap_or(usize::MAX)
    });
    requested
        .map_or(budget, |n| n.clamp(1, budget))
        .min(1 << 20)
}

/// Raises the soft descriptor limit to the hard one (as Go's runtime does) and returns it.
pub fn descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && maximum > current
        && setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            },
        )
        .is_ok()
    {
        return Some(maximum);
    }
    limit.current
}

/// Where a connection is in its request cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnPhase {
    /// Accepted; nothing received yet.
    Fresh,
    /// Part of a request head received.
    Head,
    /// A request is being handled.
    Busy,
    /// Our answer is handed to hyper and being written.
    Responding,
    /// Between requests on a keep-alive connection.
    Idle,
}

impl ConnPhase {
    fn from_u8(value: u8) -> ConnPhase {
        match value {
            0 => ConnPhase::Fresh,
            1 => ConnPhase::Head,
            2 => ConnPhase::Busy,
            3 => ConnPhase::Responding,
            _ => ConnPhase::Idle,
        }
    }

    /// Whether the connection may be dropped to make room: no request of it is in progress.
    pub fn evictable(self) -> bool {
        matches!(self, ConnPhase::Fresh | ConnPhase::Head | ConnPhase::Idle)
    }

    /// The read deadline of a connection in this phase since `since`. Pure.
    pub fn read_deadline(self, since: Instant, limits: &ConnLimits) -> Option<Instant> {
        match self {
            ConnPhase::Fresh | ConnPhase::Head => Some(since + limits.header_timeout),
            ConnPhase::Idle => Some(since + limits.idle_timeout),
            ConnPhase::Busy | ConnPhase::Responding => None,
        }
    }
}

/// One connection as the eviction choice sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Connection id.
    pub id: u64,
    /// Its phase.
    pub phase: ConnPhase,
    /// When it entered that phase (nanoseconds since the registry started).
    pub since: u64,
    /// Already told to close.
    pub closing: bool,
}

/// The connection to evict: the evictable one that has been in its phase longest. Pure.
pub fn pick_victim(candidates: impl IntoIterator<Item = Candidate>) -> Option<u64> {
    candidates
        .into_iter()
        .filter(|c| !c.closing && c.phase.evictable())
        .min_by_key(|c| (c.since, c.id))
        .map(|c| c.id)
}

const CMD_NONE: u8 = 0;
const CMD_GRACEFUL: u8 = 1;
const CMD_CLOSE: u8 = 2;

/// State one connection shares with the registry, its IO wrapper and its service.
#[derive(Debug)]
pub struct ConnShared {
    id: u64,
    epoch: Instant,
    phase: AtomicU8,
    since: AtomicU64,
    pending_answers: AtomicU32,
    command: AtomicU8,
    timed_out: AtomicU8,
    wake: Notify,
}

impl ConnShared {
    fn new(id: u64, epoch: Instant) -> Self {
        let shared = Self {
            id,
            epoch,
            phase: AtomicU8::new(ConnPhase::Fresh as u8),
            since: AtomicU64::new(0),
            pending_answers: AtomicU32::new(0),
            command: AtomicU8::new(CMD_NONE),
            timed_out: AtomicU8::new(0),
            wake: Notify::new(),
        };
        shared.set_phase(ConnPhase::Fresh, Instant::now());
        shared
    }

    fn phase(&self) -> ConnPhase {
        ConnPhase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn since(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.since.load(Ordering::Acquire))
    }

    fn set_phase(&self, phase: ConnPhase, now: Instant) {
        let nanos =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        self.since.store(nanos, Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// A request head was parsed and our service called.
    fn begin_request(&self) {
        self.pending_answers.fetch_add(1, Ordering::AcqRel);
        self.set_phase(ConnPhase::Busy, Instant::now());
    }

    /// Our service produced its answer.
    fn end_request(&self) {
        self.set_phase(ConnPhase::Responding, Instant::now());
    }

    fn candidate(&self) -> Candidate {
        Candidate {
            id: self.id,
            phase: self.phase(),
            since: self.since.load(Ordering::Acquire),
            closing: self.command.load(Ordering::Acquire) != CMD_NONE,
        }
    }

    fn order(&self, command: u8) {
        self.command.fetch_max(command, Ordering::AcqRel);
        self.wake.notify_one();
    }
}

/// Counters of the connection layer, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Open connections.
    pub open: AtomicUsize,
    /// The cap.
    pub max: AtomicUsize,
    /// Connections closed to make room for a newcomer.
    pub evicted: AtomicU64,
    /// Newcomers closed at once because every connection was busy.
    pub refused: AtomicU64,
    /// Connections closed by a header, idle or write timeout.
    pub timed_out: AtomicU64,
}

/// All open connections.
#[derive(Debug)]
pub struct Registry {
    limits: ConnLimits,
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnShared>>>,
    empty: Notify,
    state: Arc<AppState>,
    malformed_log: RateLimited,
    timeout_log: RateLimited,
    accept_log: RateLimited,
}

impl Registry {
    /// An empty registry.
    pub fn new(limits: ConnLimits, state: Arc<AppState>) -> Arc<Self> {
        state
            .connections
            .max
            .store(limits.max_connections, Ordering::Relaxed);
        Arc::new(Self {
            limits,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            empty: Notify::new(),
            state,
            malformed_log: RateLimited::new(),
            timeout_log: RateLimited::new(),
            accept_log: RateLimited::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnShared>>> {
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a new connection: evicts the stalest idle one at the cap, or closes the
    /// newcomer when every connection is busy; then serves it on its own task.
    pub fn open(self: &Arc<Self>, stream: TcpStream) {
        let shared = {
            let mut conns = self.lock();
            if conns.len() >= self.limits.max_connections && !self.evict_locked(&conns) {
                self.state
                    .connections
                    .refused
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let shared = Arc::new(ConnShared::new(id, self.epoch));
            conns.insert(id, Arc::clone(&shared));
            self.state
                .connections
                .open
                .store(conns.len(), Ordering::Relaxed);
            shared
        };
        let _ = stream.set_nodelay(true);
        let registry = Arc::clone(self);
        tokio::spawn(async move {
            registry.serve(stream, &shared).await;
            registry.close(shared.id);
        });
    }

    fn close(&self, id: u64) {
        let mut conns = self.lock();
        conns.remove(&id);
        self.state
            .connections
            .open
            .store(conns.len(), Ordering::Relaxed);
        if conns.is_empty() {
            self.empty.notify_waiters();
        }
    }

    /// Evicts the stalest idle connection (descriptor exhaustion). Returns whether one was.
    pub fn evict_one(&self) -> bool {
        self.evict_locked(&self.lock())
    }

    fn evict_locked(&self, conns: &HashMap<u64, Arc<ConnShared>>) -> bool {
        let Some(victim) = pick_victim(conns.values().map(|c| c.candidate())) else {
            return false;
        };
        if let Some(c) = conns.get(&victim) {
            c.order(CMD_CLOSE);
        }
        self.state
            .connections
            .evicted
            .fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Asks every connection to finish its request in progress and close (`graceful`), or
    /// to close now.
    pub fn shut_all(&self, graceful: bool) {
        let command = if graceful { CMD_GRACEFUL } else { CMD_CLOSE };
        for conn in self.lock().values() {
            conn.order(command);
        }
    }

    /// Waits until no connection is open.
    pub async fn wait_empty(&self) {
        loop {
            let notified = self.empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }

    async fn serve(&self, stream: TcpStream, shared: &Arc<ConnShared>) {
        let io = hyper_util::rt::TokioIo::new(Guarded::new(
            stream,
            Arc::clone(shared),
            Arc::clone(&self.state),
            self.limits,
        ));
        let state = Arc::clone(&self.state);
        let conn_shared = Arc::clone(shared);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let state = Arc::clone(&state);
            let conn = Arc::clone(&conn_shared);
            async move {
                conn.begin_request();
                let answer = std::panic::AssertUnwindSafe(handle(&state, &request))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| panicked(&state));
                conn.end_request();
                Ok::<Response<Body>, Infallible>(answer)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .keep_alive(true)
            // Above hyper's 64 KiB URI limit (so 414 stays reachable), far below its 400 KB
            // default: bounds the memory a hostile header can pin per connection.
            .max_buf_size(80 * 1024)
            .serve_connection(io, service);
        tokio::pin!(connection);
        let mut graceful = false;
        let result = loop {
            tokio::select! {
                result = connection.as_mut() => break Some(result),
                () = shared.wake.notified() => match shared.command.load(Ordering::Acquire) {
                    CMD_CLOSE => break None,
                    CMD_GRACEFUL if !graceful => {
                        graceful = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    _ => {}
                },
            }
        };
        if shared.timed_out.load(Ordering::Relaxed) != 0 {
            self.state
                .connections
                .timed_out
                .fetch_add(1, Ordering::Relaxed);
            if let Some(count) = self.timeout_log.note(Instant::now()) {
                tracing::info!(
                    connections = count,
                    "closed connections that sent no complete request in time, stayed idle too long or did not read"
                );
            }
            return;
        }
        if let Some(Err(error)) = result
            && (error.is_parse() || error.is_parse_too_large() || error.is_parse_status())
            && let Some(count) = self.malformed_log.note(Instant::now())
        {
            tracing::warn!(
                requests = count,
                last_error = %error,
                "malformed requests answered by the HTTP layer (400/414/431)"
            );
        }
    }

    /// Logs an accept error at most once a second (with the count).
    pub fn accept_error(&self, error: &io::Error) {
        if let Some(count) = self.accept_log.note(Instant::now()) {
            tracing::warn!(%error, errors = count, "cannot accept connections");
        }
    }
}

/// Whether an accept error means the process is out of descriptors.
pub fn out_of_descriptors(error: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux.
    matches!(error.raw_os_error(), Some(23 | 24))
}

/// Accepts connections until `stop` is notified, then drops the listener.
pub async fn accept_loop(listener: TcpListener, registry: Arc<Registry>, stop: Arc<Notify>) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.notified() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => registry.open(stream),
            Err(error) => {
                use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
                if matches!(
                    error.kind(),
                    ConnectionAborted | ConnectionRefused | ConnectionReset
                ) {
                    continue;
                }
                registry.accept_error(&error);
                if out_of_descriptors(&error) {
                    registry.evict_one();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A response head hyper wrote on its own, with `X-Model-Version` added after the status
/// line, and its status code. `None` when `head` does not start with a status line. Pure.
pub fn with_version_header(head: &[u8], version: &[u8]) -> Option<(u16, Vec<u8>)> {
    let status = head
        .strip_prefix(b"HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse::<u16>().ok())?;
    let line_end = head.windows(2).position(|w| w == b"\r\n")? + 2;
    let mut out = Vec::with_capacity(head.len() + version.len() + 20);
    out.extend_from_slice(&head[..line_end]);
    out.extend_from_slice(b"x-model-version: ");
    out.extend_from_slice(version);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&head[line_end..]);
    Some((status, out))
}

/// The metrics status of an answer hyper wrote itself.
fn hyper_status(code: u16) -> Status {
    match code {
        414 => Status::UriTooLong,
        431 => Status::HeaderFieldsTooLarge,
        _ => Status::BadRequest,
    }
}

/// A TCP stream with the phase-dependent deadlines of its connection, and the rewrite of
/// hyper's own answers.
struct Guarded {
    stream: TcpStream,
    conn: Arc<ConnShared>,
    state: Arc<AppState>,
    limits: ConnLimits,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    write_blocked_since: Option<Instant>,
    /// A rewritten answer of hyper's not yet fully written.
    pending: Vec<u8>,
}

impl Guarded {
    fn new(
        stream: TcpStream,
        conn: Arc<ConnShared>,
        state: Arc<AppState>,
        limits: ConnLimits,
    ) -> Self {
        Self {
            stream,
            conn,
            state,
            limits,
            read_timer: None,
            write_timer: None,
            write_blocked_since: None,
            pending: Vec::new(),
        }
    }

    fn timed_out(&self) -> io::Error {
        self.conn.timed_out.store(1, Ordering::Relaxed);
        io::Error::new(io::ErrorKind::TimedOut, "connection deadline passed")
    }

    /// Writes what is left of a rewritten answer; `Ready(Ok)` once nothing is left.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.pending.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return self.write_blocked(cx).map(Err),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// A write could not progress: `Ready(error)` once it has been blocked too long.
    fn write_blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let since = *self.write_blocked_since.get_or_insert_with(Instant::now);
        if poll_deadline(&mut self.write_timer, since + self.limits.write_timeout, cx) {
            Poll::Ready(self.timed_out())
        } else {
            Poll::Pending
        }
    }

    /// An answer of hyper's own: counted, given `X-Model-Version`, queued for writing.
    fn rewrite(&mut self, head: &[u8]) -> bool {
        let version = self.state.version_header();
        let Some((code, rewritten)) = with_version_header(head, version.as_bytes()) else {
            return false;
        };
        let elapsed = self.conn.since().elapsed();
        self.state
            .metrics
            .record(RouteLabel::Other, hyper_status(code), elapsed);
        self.pending = rewritten;
        true
    }

    /// Whether `first` starts a response head that is not ours.
    fn is_foreign_head(&self, first: &[u8]) -> bool {
        first.starts_with(b"HTTP/1.") && self.conn.pending_answers.load(Ordering::Acquire) == 0
    }

    fn wrote(&mut self, first: &[u8], n: usize) {
        self.write_blocked_since = None;
        if n > 0 && first.starts_with(b"HTTP/1.") {
            let _ =
                self.conn
                    .pending_answers
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }
}

/// Polls a lazily (re)armed timer for `deadline`; true once it has passed. The timer is only
/// moved earlier, never later: a late deadline is re-armed when the early timer fires, so a
/// keep-alive connection does not touch the timer wheel on every request.
fn poll_deadline(
    timer: &mut Option<Pin<Box<Sleep>>>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> bool {
    let deadline = tokio::time::Instant::from_std(deadline);
    let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if sleep.deadline() > deadline {
        sleep.as_mut().reset(deadline);
    }
    loop {
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        if tokio::time::Instant::now() >= deadline {
            return true;
        }
        sleep.as_mut().reset(deadline);
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.conn.command.load(Ordering::Acquire) == CMD_CLOSE {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before
                    && matches!(this.conn.phase(), ConnPhase::Fresh | ConnPhase::Idle)
                {
                    this.conn.set_phase(ConnPhase::Head, Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let mut phase = this.conn.phase();
                if phase == ConnPhase::Responding
                    && this.conn.pending_answers.load(Ordering::Acquire) == 0
                {
                    this.conn.set_phase(ConnPhase::Idle, Instant::now());
                    phase = ConnPhase::Idle;
                }
                match phase.read_deadline(this.conn.since(), &this.limits) {
                    Some(deadline) if poll_deadline(&mut this.read_timer, deadline, cx) => {
                        Poll::Ready(Err(this.timed_out()))
                    }
                    _ => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if this.is_foreign_head(buf) && this.rewrite(buf) {
            return match this.poll_pending(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                // Accepted in full: the rest goes out on the next write, flush or shutdown.
                Poll::Ready(Ok(())) | Poll::Pending => Poll::Ready(Ok(buf.len())),
            };
        }
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.wrote(buf, n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.write_blocked(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first: &[u8] = bufs.iter().find(|b| !b.is_empty()).map_or(&[], |b| b);
        if !this.pending.is_empty() || this.is_foreign_head(first) {
            return Pin::new(this).poll_write(cx, first);
        }
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.wrote(first, n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.write_blocked(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.stream).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.stream).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, phase: ConnPhase, since: u64) -> Candidate {
        Candidate {
            id,
            phase,
            since,
            closing: false,
        }
    }

    #[test]
    fn the_stalest_connection_without_a_request_in_progress_is_evicted() {
        let conns = [
            c(1, ConnPhase::Busy, 0),
            c(2, ConnPhase::Idle, 30),
            c(3, ConnPhase::Head, 20),
            c(4, ConnPhase::Responding, 5),
            c(5, ConnPhase::Fresh, 25),
        ];
        assert_eq!(pick_victim(conns), Some(3));
        let closing = Candidate {
            closing: true,
            ..c(3, ConnPhase::Head, 20)
        };
        assert_eq!(
            pick_victim([conns[0], conns[1], closing, conns[3], conns[4]]),
            Some(5)
        );
        assert_eq!(
            pick_victim([c(1, ConnPhase::Busy, 0), c(2, ConnPhase::Responding, 0)]),
            None
        );
    }

    #[test]
    fn read_deadlines_depend_on_the_phase() {
        let limits = ConnLimits {
            max_connections: 10,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(10),
        };
        let t = Instant::now();
        assert_eq!(
            ConnPhase::Fresh.read_deadline(t, &limits),
            Some(t + Duration::from_secs(10))
        );
        assert_eq!(
            ConnPhase::Head.read_deadline(t, &limits),
            Some(t + Duration::from_secs(10))
        );
        assert_eq!(
            ConnPhase::Idle.read_deadline(t, &limits),
            Some(t + Duration::from_secs(75))
        );
        assert_eq!(ConnPhase::Busy.read_deadline(t, &limits), None);
        assert_eq!(ConnPhase::Responding.read_deadline(t, &limits), None);
    }

    #[test]
    fn the_cap_follows_the_descriptor_limit() {
        assert_eq!(max_connections(None, Some(1024)), 960);
        assert_eq!(max_connections(Some(100), Some(1024)), 100);
        assert_eq!(max_connections(Some(5000), Some(1024)), 960);
        assert_eq!(max_connections(None, Some(10)), 16);
        assert_eq!(max_connections(Some(0), Some(1024)), 1);
        assert_eq!(max_connections(Some(300), None), 300);
    }

    #[test]
    fn hyper_answers_get_the_version_header_after_the_status_line() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let (status, out) = with_version_header(head, b"v7").unwrap();
        assert_eq!(status, 431);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "HTTP/1.1 431 Request Header Fields Too Large\r\nx-model-version: v7\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(with_version_header(b"1,2,3", b"v7"), None);
        assert_eq!(hyper_status(414), Status::UriTooLong);
        assert_eq!(hyper_status(400), Status::BadRequest);
    }
}
