//! What epoll and kqueue share: a kernel event queue whose fd is lent to waits in flight, and
//! an event buffer lent to one wait at a time and reused. Each mechanism brings its event
//! type, its registration calls and its wait system call (`Mechanism::wait_raw`), and may keep
//! fds of its own beside the queue's, with events of their own that are never reported
//! (epoll's timerfd, see `epoll.rs`).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::time::Duration;

use super::handle::{HandleFds, Lent, OsHandle};
use super::{Backend, Result, Wait};
use crate::timeout::Timeout;

/// One OS event queue: its event record, how registrations change, and its wait.
pub trait Mechanism: Send {
    /// The record the wait fills (`epoll_event`, `kevent`).
    type Event: Send + Copy;
    /// What the queue's handle owns and lends to waits: the queue's fd, and any fds the
    /// mechanism keeps beside it (epoll's timerfd), closed together.
    type Fds: HandleFds;
    /// What one wait keeps from one call to the next, EINTR retries included (epoll: whether
    /// it armed the timerfd).
    type WaitState: Default + Send;
    /// "epoll" or "kqueue", for the error on a closed queue.
    const NAME: &'static str;

    fn add(&mut self, queue: &OsHandle<Self::Fds>, fd: u64, interest: u8) -> Result<()>;
    fn modify(&mut self, queue: &OsHandle<Self::Fds>, fd: u64, interest: u8) -> Result<()>;
    fn remove(&mut self, queue: &OsHandle<Self::Fds>, fd: u64) -> Result<()>;
    /// How many events a wait asks for, given how many fds the selector holds.
    fn wait_capacity(&self, registered: usize) -> usize {
        registered
    }
    /// The wait on `queue`: fills the first `n` (at most `events.len()`) records and returns
    /// `n`. EINTR comes back as an error; the wait's next call, its retry, gets the same
    /// `state`.
    fn wait_raw(
        queue: &Self::Fds,
        state: &mut Self::WaitState,
        events: &mut [MaybeUninit<Self::Event>],
        timeout: Timeout,
    ) -> io::Result<usize>;
    /// Records a wait on `queue` for `timeout` needs beyond the caller's `max_events` for
    /// events of the mechanism's own (`ready` gives `None` for them), so that they never take
    /// a registered fd's place. While it needs none the kernel gets the stdlib's count.
    fn own_events(_queue: &Self::Fds, _timeout: Timeout) -> usize {
        0
    }
    /// The wait is over, however its last call ended (a wait given up after EINTR too).
    fn end_wait(_queue: &Self::Fds, _state: &mut Self::WaitState) {}
    /// `(fd, READ/WRITE mask)` of one record, as the stdlib maps it; `None` for an event of
    /// the mechanism's own, which no fd registered.
    fn ready(event: &Self::Event) -> Option<(u64, u8)>;
}

/// A kernel event queue: the `Backend` of epoll and kqueue.
pub struct EventQueue<M: Mechanism> {
    /// Lent to waits in flight, so `close()` never frees what a wait still uses.
    queue: OsHandle<M::Fds>,
    /// The event buffer, lent to one wait at a time and reused across calls.
    spare: Vec<M::Event>,
    mechanism: M,
}

impl<M: Mechanism> EventQueue<M> {
    pub fn with_fds(queue: M::Fds, mechanism: M) -> Self {
        EventQueue {
            queue: OsHandle::new(M::NAME, queue),
            spare: Vec::new(),
            mechanism,
        }
    }

    /// What the queue's handle owns, while it is open.
    #[cfg(test)]
    pub fn fds(&self) -> Result<&M::Fds> {
        self.queue.fds()
    }
}

/// Waits on up to `max_events` events, and the mechanism's own, into `events` (emptied
/// first), keeping what the OS filled.
fn wait_into<M: Mechanism>(
    queue: &M::Fds,
    state: &mut M::WaitState,
    events: &mut Vec<M::Event>,
    max_events: usize,
    timeout: Timeout,
) -> io::Result<()> {
    let room = (max_events + M::own_events(queue, timeout)).min(libc::c_int::MAX as usize);
    events.clear();
    events.reserve(room);
    let n = M::wait_raw(
        queue,
        state,
        &mut events.spare_capacity_mut()[..room],
        timeout,
    )?;
    // SAFETY: the wait initialised the first `n` records, and `n <= room <= capacity`.
    unsafe { events.set_len(n.min(room)) };
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
            state: M::WaitState::default(),
        })
    }

    fn end_wait(&mut self, mut wait: EventWait<M>) {
        M::end_wait(&wait.queue.fd, &mut wait.state);
        // The wait's reference to the fds goes with it.
        drop(wait.queue);
        if wait.events.capacity() > self.spare.capacity() {
            self.spare = wait.events;
        }
    }

    fn poll_now(&mut self, max_events: usize, f: &mut dyn FnMut(u64, u8)) -> Result<()> {
        // The caller holds the selector, so close() cannot run: no need to lend the fd.
        let queue = self.queue.fds()?;
        let max_events = self
            .mechanism
            .wait_capacity(max_events)
            .clamp(1, libc::c_int::MAX as usize);
        let mut state = M::WaitState::default();
        let result = wait_into::<M>(
            queue,
            &mut state,
            &mut self.spare,
            max_events,
            Some(Duration::ZERO),
        );
        M::end_wait(queue, &mut state);
        result?;
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
    queue: Lent<M::Fds>,
    events: Vec<M::Event>,
    max_events: usize,
    state: M::WaitState,
}

impl<M: Mechanism> Wait for EventWait<M> {
    fn wait(&mut self, timeout: Timeout) -> io::Result<()> {
        wait_into::<M>(
            &self.queue.fd,
            &mut self.state,
            &mut self.events,
            self.max_events,
            timeout,
        )
    }

    fn for_each_ready(&self, f: &mut dyn FnMut(u64, u8)) {
        report::<M>(&self.events, f);
    }
}

/// Hands each event the kernel handed over to `f`, but the mechanism's own. With room for
/// those, the kernel may hand over one event more than the caller asked for when none of its
/// own came (fds ready that the selector does not count: a forked child's registrations in
/// the shared epoll set, a closed fd's whose description lives on): it is reported too, since
/// a level-triggered event the kernel handed over goes to the back of its ready list, and
/// dropping the last one every time would starve its fd behind the others.
fn report<M: Mechanism>(ready: &[M::Event], f: &mut dyn FnMut(u64, u8)) {
    for (fd, events) in ready.iter().filter_map(M::ready) {
        f(fd, events);
    }
}
