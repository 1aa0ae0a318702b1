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
    fn poll_now(&mut self, max_events: usize, f: impl FnMut(u64, u8)) -> Result<()> {
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
    fn for_each_ready(&self, f: impl FnMut(u64, u8));
    /// True when the last `wait` found an fd ready.
    fn found_any(&self) -> bool {
        let mut any = false;
        self.for_each_ready(&mut |_, _| any = true);
        any
    }
    /// True once the selector's `close()` let go of the OS handle this wait keeps open.
    fn handle_closed(&self) -> bool {
        false
    }
}

/// How a poll-like mechanism writes `READ` and `WRITE`: its readable and writable bits
/// (poll's, epoll's, and those a replaced `_selector_cls` of their classes takes).
#[derive(Debug, Clone, Copy)]
pub struct PollBits {
    pub readable: u64,
    pub writable: u64,
}

impl PollBits {
    /// `select.POLLIN` and `select.POLLOUT`.
    #[cfg(unix)]
    pub const POLL: PollBits = PollBits {
        readable: libc::POLLIN as u64,
        writable: libc::POLLOUT as u64,
    };
    /// Windows has no poll(), so no PollSelector or EpollSelector whose `_selector_cls` could
    /// be handed these: CPython's numbers, never sent.
    #[cfg(windows)]
    pub const POLL: PollBits = PollBits {
        readable: 1,
        writable: 4,
    };
    /// `EPOLLIN` and `EPOLLOUT`.
    #[cfg(epoll)]
    pub const EPOLL: PollBits = PollBits {
        readable: libc::EPOLLIN as u64,
        writable: libc::EPOLLOUT as u64,
    };

    /// The bits to register for `interest` (`READ`, `WRITE`).
    pub fn of_interest(self, interest: u8) -> u64 {
        let mut bits = 0;
        if interest & READ != 0 {
            bits |= self.readable;
        }
        if interest & WRITE != 0 {
            bits |= self.writable;
        }
        bits
    }

    /// The interest that registered `bits`.
    #[cfg(unix)]
    pub fn interest_of(self, bits: u64) -> u8 {
        let mut interest = 0;
        if bits & self.readable != 0 {
            interest |= READ;
        }
        if bits & self.writable != 0 {
            interest |= WRITE;
        }
        interest
    }

    /// The stdlib's mapping of ready bits: anything but "readable" counts as writable and
    /// anything but "writable" as readable, so hang-ups and errors wake both kinds of waiter.
    pub fn ready_events(self, revents: u64) -> u8 {
        let mut events = 0;
        if revents & !self.readable != 0 {
            events |= WRITE;
        }
        if revents & !self.writable != 0 {
            events |= READ;
        }
        events
    }
}

/// Which mechanism: `AnyBackend`'s variants without their state, for choosing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    #[cfg(epoll)]
    Epoll,
    #[cfg(kqueue)]
    Kqueue,
    #[cfg(unix)]
    Poll,
    Select,
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
    /// A new backend of `mechanism` (epoll and kqueue open their OS handle).
    pub fn open(mechanism: Mechanism) -> io::Result<Self> {
        Ok(match mechanism {
            #[cfg(epoll)]
            Mechanism::Epoll => AnyBackend::Epoll(epoll::Epoll::new()?),
            #[cfg(kqueue)]
            Mechanism::Kqueue => AnyBackend::Kqueue(kqueue::Kqueue::new()?),
            #[cfg(unix)]
            Mechanism::Poll => AnyBackend::Poll(poll::Poll::new()),
            Mechanism::Select => AnyBackend::Select(select::Select::new()),
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

    fn poll_now(&mut self, max_events: usize, f: impl FnMut(u64, u8)) -> Result<()> {
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

    fn for_each_ready(&self, f: impl FnMut(u64, u8)) {
        dispatch!(self, AnyWait, w => w.for_each_ready(f))
    }

    fn found_any(&self) -> bool {
        dispatch!(self, AnyWait, w => w.found_any())
    }

    fn handle_closed(&self) -> bool {
        dispatch!(self, AnyWait, w => w.handle_closed())
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
