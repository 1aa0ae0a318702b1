//! What epoll and kqueue share: a kernel event queue whose fd is lent to waits in flight, and
//! an event buffer lent to one wait at a time and reused. Each mechanism brings its event
//! type, its registration calls and its wait system call (`Mechanism::wait_raw`).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{OwnedFd, RawFd};
use std::time::Duration;

use super::handle::{Lent, OsHandle};
use super::{Backend, Result, Wait};
use crate::timeout::Timeout;

/// One OS event queue: its event record, how registrations change, and its wait.
pub trait Mechanism: Send {
    /// The record the wait fills (`epoll_event`, `kevent`).
    type Event: Send + Copy;
    /// "epoll" or "kqueue", for the error on a closed queue.
    const NAME: &'static str;

    fn add(&mut self, queue: &OsHandle, fd: u64, interest: u8) -> Result<()>;
    fn modify(&mut self, queue: &OsHandle, fd: u64, interest: u8) -> Result<()>;
    fn remove(&mut self, queue: &OsHandle, fd: u64) -> Result<()>;
    /// How many events a wait asks for, given how many fds the selector holds.
    fn wait_capacity(&self, registered: usize) -> usize {
        registered
    }
    /// The wait system call on `queue`: fills the first `n` (at most `events.len()`) records
    /// and returns `n`. EINTR comes back as an error.
    fn wait_raw(
        queue: RawFd,
        events: &mut [MaybeUninit<Self::Event>],
        timeout: Timeout,
    ) -> io::Result<usize>;
    /// `(fd, READ/WRITE mask)` of one record, as the stdlib maps it.
    fn ready(event: &Self::Event) -> (u64, u8);
}

/// A kernel event queue: the `Backend` of epoll and kqueue.
pub struct EventQueue<M: Mechanism> {
    /// Lent to waits in flight, so `close()` never frees what a wait still uses.
    queue: OsHandle,
    /// The event buffer, lent to one wait at a time and reused across calls.
    spare: Vec<M::Event>,
    mechanism: M,
}

impl<M: Mechanism> EventQueue<M> {
    pub fn with_fd(queue: OwnedFd, mechanism: M) -> Self {
        EventQueue {
            queue: OsHandle::new(M::NAME, queue),
            spare: Vec::new(),
            mechanism,
        }
    }
}

/// Waits on up to `max_events` events into `events` (emptied first), keeping what the OS
/// filled.
fn wait_into<M: Mechanism>(
    queue: RawFd,
    events: &mut Vec<M::Event>,
    max_events: usize,
    timeout: Timeout,
) -> io::Result<()> {
    events.clear();
    events.reserve(max_events);
    let n = M::wait_raw(
        queue,
        &mut events.spare_capacity_mut()[..max_events],
        timeout,
    )?;
    // SAFETY: the wait initialised the first `n` records, and `n <= max_events <= capacity`.
    unsafe { events.set_len(n.min(max_events)) };
    Ok(())
}

impl<M: Mechanism> Backend for EventQueue<M> {
    type Wait = EventWait<M>;

    fn add(&mut self, fd: u64, interest: u8) -> Result<()> {
        self.mechanism.add(&self.queue, fd, interest)
    }

    fn modify(&mut self, fd: u64, interest: u8) -> Result<()> {
        self.mechanism.modify(&self.queue, fd, interest)
    }

    fn remove(&mut self, fd: u64) -> Result<()> {
        self.mechanism.remove(&self.queue, fd)
    }

    fn begin_wait(&mut self, max_events: usize) -> Result<EventWait<M>> {
        let max_events = self.mechanism.wait_capacity(max_events);
        let queue = self.queue.lend()?;
        Ok(EventWait {
            queue,
            events: std::mem::take(&mut self.spare),
            max_events: max_events.clamp(1, libc::c_int::MAX as usize),
        })
    }

    fn end_wait(&mut self, wait: EventWait<M>) {
        // The wait's reference to the fd goes with it.
        drop(wait.queue);
        if wait.events.capacity() > self.spare.capacity() {
            self.spare = wait.events;
        }
    }

    fn poll_now(&mut self, max_events: usize, f: impl FnMut(u64, u8)) -> Result<()> {
        // The caller holds the selector, so close() cannot run: no need to lend the fd.
        let queue = self.queue.raw()?;
        let max_events = self
            .mechanism
            .wait_capacity(max_events)
            .clamp(1, libc::c_int::MAX as usize);
        wait_into::<M>(queue, &mut self.spare, max_events, Some(Duration::ZERO))?;
        report::<M>(&self.spare, f);
        Ok(())
    }

    fn close(&mut self) {
        self.queue.close();
    }

    fn fileno(&self) -> Option<Result<RawFd>> {
        Some(self.queue.raw())
    }
}

/// One wait on a kernel event queue, with its own reference to the queue's fd.
pub struct EventWait<M: Mechanism> {
    queue: Lent,
    events: Vec<M::Event>,
    max_events: usize,
}

impl<M: Mechanism> Wait for EventWait<M> {
    fn wait(&mut self, timeout: Timeout) -> io::Result<()> {
        let queue = self.queue.raw();
        wait_into::<M>(queue, &mut self.events, self.max_events, timeout)
    }

    fn handle_closed(&self) -> bool {
        self.queue.closed()
    }

    fn for_each_ready(&self, f: impl FnMut(u64, u8)) {
        report::<M>(&self.events, f);
    }

    fn found_any(&self) -> bool {
        !self.events.is_empty()
    }
}

/// Hands each event the kernel handed over to `f`.
fn report<M: Mechanism>(ready: &[M::Event], mut f: impl FnMut(u64, u8)) {
    for event in ready {
        let (fd, events) = M::ready(event);
        f(fd, events);
    }
}
