//! The OS mechanisms behind one interface. Each file is one mechanism and knows nothing of
//! Python; `selector.rs` drives them.
//!
//! A wait runs without the selector's lock (other threads may register or close meanwhile),
//! so `begin_wait` hands out everything the system call needs — a shared handle, a buffer,
//! a snapshot of the fd sets — and `end_wait` takes the reusable parts back.

use std::io;
#[cfg(unix)]
pub use std::os::fd::RawFd;
use std::time::Duration;

use crate::sys::FdTooLarge;
use crate::timeout::Timeout;

/// What `fileno()` returns for a mechanism with an OS handle (none has one on Windows).
#[cfg(windows)]
pub type RawFd = i32;

#[cfg(epoll)]
pub mod epoll;
#[cfg(any(epoll, kqueue))]
mod event_queue;
#[cfg(any(epoll, kqueue))]
mod handle;
#[cfg(kqueue)]
pub mod kqueue;
#[cfg(unix)]
pub mod poll;
pub mod select;

/// `selectors.EVENT_READ`.
pub const READ: u8 = 1;
/// `selectors.EVENT_WRITE`.
pub const WRITE: u8 = 2;

/// Why a backend operation failed; the binding turns each into the stdlib's exception.
#[derive(Debug)]
pub enum Error {
    /// The system call failed (`OSError` with its errno).
    Os(io::Error),
    /// The fd does not fit in a C `int` (`OverflowError`).
    FdTooLarge,
    /// `select()` cannot take the fd sets (`ValueError`): on POSIX an fd at or above
    /// `FD_SETSIZE`, on Windows more sockets in one set than its `FD_SETSIZE` (512).
    FdOutOfRange,
    /// The OS handle (named: "epoll", "kqueue") was closed by `close()` (`ValueError`).
    Closed(&'static str),
    /// Another thread is already inside `poll()` on this selector (`RuntimeError`).
    ConcurrentPoll,
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::Os(err)
    }
}

impl From<FdTooLarge> for Error {
    fn from(_: FdTooLarge) -> Self {
        Error::FdTooLarge
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// One OS readiness mechanism. `interest` is a mask of `READ` and `WRITE`.
pub trait Backend: Send {
    type Wait: Wait;

    fn add(&mut self, fd: u64, interest: u8) -> Result<()>;
    fn modify(&mut self, fd: u64, interest: u8) -> Result<()>;
    fn remove(&mut self, fd: u64) -> Result<()>;
    /// Everything one wait needs, for up to `max_events` ready fds.
    fn begin_wait(&mut self, max_events: usize) -> Result<Self::Wait>;
    /// Takes back what `begin_wait` lent out, for reuse by the next wait.
    fn end_wait(&mut self, wait: Self::Wait);
    /// A wait with a zero timeout, made while the caller holds the selector: it cannot block,
    /// so a mechanism may skip the lending that `begin_wait` does. `f` sees the ready fds as
    /// `for_each_ready` shows them; EINTR comes back as an error.
    fn poll_now(&mut self, max_events: usize, f: &mut dyn FnMut(u64, u8)) -> Result<()> {
        let mut wait = self.begin_wait(max_events)?;
        let result = wait.wait(Some(Duration::ZERO));
        if result.is_ok() {
            wait.for_each_ready(f);
        }
        self.end_wait(wait);
        Ok(result?)
    }
    /// Releases the OS handle, if the mechanism has one. Registrations a stateless
    /// mechanism (poll, select) keeps in user space stay, as they do in the stdlib.
    fn close(&mut self);
    /// The OS handle (`epoll` fd), when the mechanism has one and it is open.
    fn fileno(&self) -> Option<Result<RawFd>> {
        None
    }
    /// What `fd` is watched for, where the mechanism keeps that in user space (select, poll;
    /// None for an fd poll() does not hold).
    fn interest(&self, _fd: u64) -> Option<u8> {
        None
    }
}

/// One wait in flight, owned by the waiting thread.
pub trait Wait: Send {
    /// One system call; EINTR comes back as an error for the caller to retry.
    fn wait(&mut self, timeout: Timeout) -> io::Result<()>;
    /// Calls `f(fd, events)` for each fd the last `wait` found ready, in the kernel's order,
    /// with `events` a mask of `READ`/`WRITE` mapped as the stdlib maps it.
    fn for_each_ready(&self, f: &mut dyn FnMut(u64, u8));
    /// True when the last `wait` found an fd ready.
    fn found_any(&self) -> bool {
        let mut any = false;
        self.for_each_ready(&mut |_, _| any = true);
        any
    }
}

/// The stdlib's mapping of `poll`/`epoll` bits: anything but "readable" counts as writable and
/// anything but "writable" as readable, so hang-ups and errors wake both kinds of waiter.
#[cfg(unix)]
fn poll_like_events(revents: u32, readable: u32, writable: u32) -> u8 {
    let mut events = 0;
    if revents & !readable != 0 {
        events |= WRITE;
    }
    if revents & !writable != 0 {
        events |= READ;
    }
    events
}

/// Which mechanism: `AnyBackend`'s variants without their state. The binding keeps it beside
/// the lock, since each stdlib class has rules of its own (timeouts, call order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    #[cfg(epoll)]
    Epoll,
    #[cfg(kqueue)]
    Kqueue,
    #[cfg(unix)]
    Poll,
    Select,
}

impl Kind {
    /// `_PollLikeSelector`'s subclasses (poll, epoll): `modify()` changes the OS registration
    /// in place, and the fd goes through the select module's fd conversion on every change.
    pub fn is_poll_like(self) -> bool {
        match self {
            #[cfg(epoll)]
            Kind::Epoll => true,
            #[cfg(unix)]
            Kind::Poll => true,
            _ => false,
        }
    }

    /// poll(): no handle; timeouts in whole milliseconds as `select.poll` reads them.
    pub fn is_poll(self) -> bool {
        match self {
            #[cfg(unix)]
            Kind::Poll => true,
            _ => false,
        }
    }

    /// epoll: its handle, `fileno()`, and a wait with a maximum number of events.
    pub fn is_epoll(self) -> bool {
        match self {
            #[cfg(epoll)]
            Kind::Epoll => true,
            _ => false,
        }
    }

    /// kqueue: a read and a write filter per fd, registered one at a time.
    pub fn is_kqueue(self) -> bool {
        match self {
            #[cfg(kqueue)]
            Kind::Kqueue => true,
            _ => false,
        }
    }

    /// A mechanism with an OS handle of its own (epoll, kqueue), which `close()` closes.
    pub fn has_handle(self) -> bool {
        self.is_epoll() || self.is_kqueue()
    }
}

/// The mechanism a selector was built on, chosen at construction.
pub enum AnyBackend {
    #[cfg(epoll)]
    Epoll(epoll::Epoll),
    #[cfg(kqueue)]
    Kqueue(kqueue::Kqueue),
    #[cfg(unix)]
    Poll(poll::Poll),
    Select(select::Select),
}

// A wait lives on one thread's stack for one call; boxing the select sets would cost an
// allocation per call to save a copy.
#[allow(clippy::large_enum_variant)]
pub enum AnyWait {
    #[cfg(epoll)]
    Epoll(event_queue::EventWait<epoll::EpollCalls>),
    #[cfg(kqueue)]
    Kqueue(event_queue::EventWait<kqueue::KqueueFilters>),
    #[cfg(unix)]
    Poll(poll::PollWait),
    Select(select::SelectWait),
}

/// Forwards a call to whichever backend (or wait) `$value` holds.
macro_rules! dispatch {
    ($value:expr, $enum:ident, $b:ident => $call:expr) => {
        match $value {
            #[cfg(epoll)]
            $enum::Epoll($b) => $call,
            #[cfg(kqueue)]
            $enum::Kqueue($b) => $call,
            #[cfg(unix)]
            $enum::Poll($b) => $call,
            $enum::Select($b) => $call,
        }
    };
}

impl AnyBackend {
    /// A new backend of `kind` (epoll and kqueue open their OS handle).
    pub fn open(kind: Kind) -> io::Result<Self> {
        Ok(match kind {
            #[cfg(epoll)]
            Kind::Epoll => AnyBackend::Epoll(epoll::Epoll::new()?),
            #[cfg(kqueue)]
            Kind::Kqueue => AnyBackend::Kqueue(kqueue::Kqueue::new()?),
            #[cfg(unix)]
            Kind::Poll => AnyBackend::Poll(poll::Poll::new()),
            Kind::Select => AnyBackend::Select(select::Select::new()),
        })
    }
}

impl Backend for AnyBackend {
    type Wait = AnyWait;

    fn add(&mut self, fd: u64, interest: u8) -> Result<()> {
        dispatch!(self, AnyBackend, b => b.add(fd, interest))
    }

    fn modify(&mut self, fd: u64, interest: u8) -> Result<()> {
        dispatch!(self, AnyBackend, b => b.modify(fd, interest))
    }

    fn remove(&mut self, fd: u64) -> Result<()> {
        dispatch!(self, AnyBackend, b => b.remove(fd))
    }

    fn begin_wait(&mut self, max_events: usize) -> Result<AnyWait> {
        Ok(match self {
            #[cfg(epoll)]
            AnyBackend::Epoll(b) => AnyWait::Epoll(b.begin_wait(max_events)?),
            #[cfg(kqueue)]
            AnyBackend::Kqueue(b) => AnyWait::Kqueue(b.begin_wait(max_events)?),
            #[cfg(unix)]
            AnyBackend::Poll(b) => AnyWait::Poll(b.begin_wait(max_events)?),
            AnyBackend::Select(b) => AnyWait::Select(b.begin_wait(max_events)?),
        })
    }

    fn end_wait(&mut self, wait: AnyWait) {
        match (self, wait) {
            #[cfg(epoll)]
            (AnyBackend::Epoll(b), AnyWait::Epoll(w)) => b.end_wait(w),
            #[cfg(kqueue)]
            (AnyBackend::Kqueue(b), AnyWait::Kqueue(w)) => b.end_wait(w),
            #[cfg(unix)]
            (AnyBackend::Poll(b), AnyWait::Poll(w)) => b.end_wait(w),
            (AnyBackend::Select(b), AnyWait::Select(w)) => b.end_wait(w),
            // A wait is begun and ended on the one backend a selector has for its life, so
            // this cannot happen; were it to, only the buffer's reuse is lost (the wait's
            // reference to the OS handle goes with it): say so in debug builds.
            #[allow(unreachable_patterns)]
            (_, wait) => {
                debug_assert!(false, "a wait ended on a backend of another kind");
                drop(wait);
            }
        }
    }

    fn poll_now(&mut self, max_events: usize, f: &mut dyn FnMut(u64, u8)) -> Result<()> {
        dispatch!(self, AnyBackend, b => b.poll_now(max_events, f))
    }

    fn close(&mut self) {
        dispatch!(self, AnyBackend, b => b.close())
    }

    fn fileno(&self) -> Option<Result<RawFd>> {
        dispatch!(self, AnyBackend, b => b.fileno())
    }

    fn interest(&self, fd: u64) -> Option<u8> {
        dispatch!(self, AnyBackend, b => Backend::interest(b, fd))
    }
}

impl Wait for AnyWait {
    fn wait(&mut self, timeout: Timeout) -> io::Result<()> {
        dispatch!(self, AnyWait, w => w.wait(timeout))
    }

    fn for_each_ready(&self, f: &mut dyn FnMut(u64, u8)) {
        dispatch!(self, AnyWait, w => w.for_each_ready(f))
    }

    fn found_any(&self) -> bool {
        dispatch!(self, AnyWait, w => w.found_any())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod test_support {
    use socket2::Socket;

    /// A connected pair of Unix stream sockets.
    #[cfg(unix)]
    pub fn socket_pair() -> (Socket, Socket) {
        use socket2::{Domain, Type};
        Socket::pair(Domain::UNIX, Type::STREAM, None).expect("socketpair")
    }

    /// A connected pair of TCP sockets on the loopback (Winsock has no socketpair).
    #[cfg(windows)]
    pub fn socket_pair() -> (Socket, Socket) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (b, _) = listener.accept().expect("accept");
        (a.into(), b.into())
    }

    /// The number a selector registers for `socket`: its fd.
    #[cfg(unix)]
    pub fn raw(socket: &Socket) -> u64 {
        std::os::fd::AsRawFd::as_raw_fd(socket) as u64
    }

    /// The number a selector registers for `socket`: its SOCKET handle, as CPython's
    /// `socket.fileno()` returns it.
    #[cfg(windows)]
    pub fn raw(socket: &Socket) -> u64 {
        std::os::windows::io::AsRawSocket::as_raw_socket(socket)
    }
}
