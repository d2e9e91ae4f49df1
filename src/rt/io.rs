//! Sockets registered with the worker's epoll: `Io<T>` owns a non-blocking socket and
//! its readiness flags, and implements the `futures-io` traits over them, so the TLS
//! stream (and the tests' futures-rustls and async-tungstenite) run on it unchanged.
//! `connect` opens a backend connection without blocking.
//!
//! A socket is registered once, edge-triggered, for reading, writing and peer
//! hang-up, and never re-armed. It is not removed from epoll explicitly: closing the
//! last descriptor of a socket removes it (sidecar never duplicates one), which saves an
//! `epoll_ctl` per connection.

use std::io::{self, IoSlice};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_lite::{AsyncRead, AsyncWrite};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::net::{SendFlags, SocketFlags};
use socket2::{Domain, Protocol, Socket, Type};

use super::{with_core, Ready};

/// One registered socket's flags and the tasks waiting on it.
pub(crate) struct Source {
    key: usize,
    /// The runtime it is registered with (a thread's, never shared); 0: none, see
    /// `Io::new`.
    runtime: usize,
    ready: std::cell::Cell<Ready>,
    reader: std::cell::Cell<Option<Waker>>,
    writer: std::cell::Cell<Option<Waker>>,
}

fn park(slot: &std::cell::Cell<Option<Waker>>, waker: &Waker) {
    let kept = match slot.take() {
        Some(w) if w.will_wake(waker) => w,
        _ => waker.clone(),
    };
    slot.set(Some(kept));
}

/// The worker's registered sockets, by epoll key.
#[derive(Default)]
pub(crate) struct Sources {
    slots: Vec<Option<Rc<Source>>>,
    free: Vec<usize>,
}

impl Sources {
    /// Sets the flags an event reported and collects the wakers it concerns.
    pub(super) fn report(&self, key: usize, ready: Ready, woken: &mut Vec<Waker>) {
        let Some(Some(source)) = self.slots.get(key) else { return };
        source.ready.set(source.ready.get().with(ready));
        if ready.contains(Ready::READABLE) {
            woken.extend(source.reader.take());
        }
        if ready.contains(Ready::WRITABLE) {
            woken.extend(source.writer.take());
        }
    }

    fn insert(&mut self, runtime: usize, initial: Ready) -> Rc<Source> {
        let key = self.free.pop().unwrap_or(self.slots.len());
        let source = Rc::new(Source {
            key,
            runtime,
            ready: std::cell::Cell::new(initial),
            reader: std::cell::Cell::new(None),
            writer: std::cell::Cell::new(None),
        });
        if key == self.slots.len() {
            self.slots.push(Some(Rc::clone(&source)));
        } else {
            self.slots[key] = Some(Rc::clone(&source));
        }
        source
    }

    fn remove(&mut self, key: usize) {
        if let Some(slot) = self.slots.get_mut(key) {
            if slot.take().is_some() {
                self.free.push(key);
            }
        }
    }

    /// Drops the free tail (`super::compact`).
    pub(super) fn compact(&mut self) {
        super::compact_slots(&mut self.slots, &mut self.free);
    }
}

/// A non-blocking socket registered with the current thread's runtime.
pub struct Io<T: AsFd> {
    source: Rc<Source>,
    inner: T,
}

impl<T: AsFd> Io<T> {
    /// Registers `inner` (already non-blocking). `initial`: what is known to be
    /// possible before the first event (a fresh connected socket can be written).
    ///
    /// On a thread without the runtime (a unit test driving a future by hand) the
    /// socket is not registered: both flags stay set, so every call is tried, and the
    /// caller polls again by itself.
    pub fn new(inner: T, initial: Ready) -> io::Result<Self> {
        let registered = with_core(|core| -> io::Result<Rc<Source>> {
            let source = core.sources.borrow_mut().insert(core.remote.id, initial);
            let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
            if let Err(e) = epoll::add(&core.epoll, inner.as_fd(), EventData::new_u64(source.key as u64), flags) {
                core.sources.borrow_mut().remove(source.key);
                return Err(e.into());
            }
            Ok(source)
        });
        let source = match registered {
            Some(source) => source?,
            None => Rc::new(Source {
                key: usize::MAX,
                runtime: 0,
                ready: std::cell::Cell::new(Ready::READABLE.with(Ready::WRITABLE)),
                reader: std::cell::Cell::new(None),
                writer: std::cell::Cell::new(None),
            }),
        };
        Ok(Self { source, inner })
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// What the kernel last reported for this socket.
    pub fn ready(&self) -> Ready {
        self.source.ready.get()
    }

    /// Whether the socket has neither been closed by the peer nor received bytes
    /// since it was last read dry, judged from the flags the poller already set (no
    /// syscall) when it can be. A set readable flag may be stale (the last read filled
    /// its buffer exactly), so then a non-blocking peek decides.
    pub fn is_quiet(&self, peek: impl FnOnce(&T) -> io::Result<usize>) -> bool {
        let ready = self.ready();
        if ready.intersects(Ready::READ_CLOSED.with(Ready::WRITE_CLOSED).with(Ready::ERROR)) {
            return false;
        }
        if !ready.contains(Ready::READABLE) {
            return true;
        }
        match peek(&self.inner) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.source.ready.set(ready.without(Ready::READABLE));
                true
            }
            _ => false,
        }
    }

    /// Completes once `want` is set.
    fn poll_ready(&self, cx: &mut Context<'_>, want: Ready) -> Poll<()> {
        if self.source.ready.get().contains(want) {
            return Poll::Ready(());
        }
        if want.contains(Ready::WRITABLE) {
            park(&self.source.writer, cx.waker());
        } else {
            park(&self.source.reader, cx.waker());
        }
        Poll::Pending
    }

    /// Runs `op` while the socket is `want`-ready, updating the flags with `after`,
    /// until it does something other than EAGAIN.
    fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        want: Ready,
        mut op: impl FnMut(&T) -> io::Result<R>,
        after: impl Fn(Ready, &io::Result<R>) -> Ready,
    ) -> Poll<io::Result<R>> {
        loop {
            if self.poll_ready(cx, want).is_pending() {
                return Poll::Pending;
            }
            let result = op(&self.inner);
            if self.source.runtime != 0 {
                self.source.ready.set(after(self.source.ready.get(), &result));
            }
            match result {
                // Unregistered: nothing will report the next edge; the caller polls again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.source.runtime == 0 => return Poll::Pending,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
                other => return Poll::Ready(other),
            }
        }
    }
}

impl<T: AsFd> Drop for Io<T> {
    fn drop(&mut self) {
        let (key, runtime) = (self.source.key, self.source.runtime);
        // The socket closes right after this; closing removes it from epoll.
        let _ = with_core(|core| {
            if core.remote.id == runtime {
                core.sources.borrow_mut().remove(key);
            }
        });
    }
}

impl Io<TcpListener> {
    /// Accepts one connection and registers it. `accept4` makes it non-blocking
    /// (std's `accept` would need one more system call, an `ioctl`, to do so).
    pub async fn accept(&self) -> io::Result<(Io<TcpStream>, SocketAddr)> {
        let (fd, peer) = std::future::poll_fn(|cx| {
            self.poll_io(
                cx,
                Ready::READABLE,
                |l| Ok(rustix::net::acceptfrom_with(l, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?),
                |r, res| match res {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => r.without(Ready::READABLE),
                    _ => r,
                },
            )
        })
        .await?;
        let peer = peer.and_then(|a| SocketAddr::try_from(a).ok());
        let peer = peer.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "accepted a non-IP connection"))?;
        // Its bytes, if any arrived already, are reported by the first wait.
        Ok((Io::new(TcpStream::from(fd), Ready::WRITABLE)?, peer))
    }
}

/// Opens a TCP connection to `addr` (TCP_NODELAY: requests and responses are written
/// whole, never in pieces worth coalescing).
pub async fn connect(addr: SocketAddr) -> io::Result<Io<TcpStream>> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    socket.set_tcp_nodelay(true)?;
    let connected = match socket.connect(&addr.into()) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => false,
        Err(e) => return Err(e),
    };
    let io = Io::new(TcpStream::from(socket), if connected { Ready::WRITABLE } else { Ready::EMPTY })?;
    std::future::poll_fn(|cx| io.poll_ready(cx, Ready::WRITABLE)).await;
    if io.ready().intersects(Ready::ERROR.with(Ready::WRITE_CLOSED)) {
        if let Some(e) = io.get_ref().take_error()? {
            return Err(e);
        }
        return Err(io::ErrorKind::ConnectionRefused.into());
    }
    Ok(io)
}

impl Io<TcpStream> {
    /// Completes once the socket is readable (bytes, end-of-file or an error wait),
    /// at once if the flags already say so.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_ready(cx, Ready::READABLE).map(Ok)
    }

    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_readable(cx)).await
    }

    /// A non-blocking peek that keeps the flags true: EAGAIN clears the readable flag,
    /// so a `readable` wait after it waits for the next edge instead of spinning.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.peek(buf);
        if self.source.runtime != 0 && matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.source.ready.set(self.source.ready.get().without(Ready::READABLE));
        }
        result
    }
}

// Reads and writes are rustix's direct system calls rather than std's, which go
// through libc's `recv`/`send` wrappers and their thread-cancellation bookkeeping:
// about a hundred instructions a call, several calls per request or message. `send`
// with MSG_NOSIGNAL, as std's own; `writev` as std's (SIGPIPE is ignored by Rust's
// runtime, so a closed peer is an EPIPE error either way).
impl AsyncRead for Io<TcpStream> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let asked = buf.len();
        self.poll_io(cx, Ready::READABLE, |s| Ok(rustix::io::read(s, &mut *buf)?), |r, res| r.after_read(res, asked))
    }
}

impl AsyncWrite for Io<TcpStream> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let offered = buf.len();
        self.poll_io(
            cx,
            Ready::WRITABLE,
            |s| Ok(rustix::net::send(s, buf, SendFlags::NOSIGNAL)?),
            |r, res| r.after_write(res, offered),
        )
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let offered = bufs.iter().map(|b| b.len()).sum();
        self.poll_io(cx, Ready::WRITABLE, |s| Ok(rustix::io::writev(s, bufs)?), |r, res| r.after_write(res, offered))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Nothing is buffered here; the caller shuts the write half down itself.
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
