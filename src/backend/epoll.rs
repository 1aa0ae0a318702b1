//! Linux `epoll`, level-triggered, as `select.epoll` drives it.
//!
//! Sub-millisecond waits are timed by a timerfd in the epoll set as well as by the wait's own
//! timeout. The kernel ends a sleep in `epoll_pwait2` up to the thread's timer slack (50 us by
//! default) late, to batch wake-ups; a timerfd's timer has no slack, so it wakes the wait when
//! asked. The timerfd is the selector's own, created on its first sub-millisecond wait (a
//! selector that never makes one opens no extra fd), registered edge-triggered under a tag no
//! fd has, and never reported. One wait at a time arms it; the others, and every wait in a
//! forked child (whose epoll set the parent shares), wait as before. Any wait that wakes for
//! its event alone before its own deadline (another thread's or the parent's timer) waits on.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::event_queue::{EventQueue, Mechanism};
use super::handle::{HandleFds, OsHandle};
use super::timerfd::{monotonic_after, Timer, TIMER_TAG};
use super::{poll_like_events, Result};
use crate::sys::{fork_generation, syscall, to_raw_fd};
use crate::timeout::{self, to_millis_ceil, Timeout};

/// An epoll selector's backend.
pub type Epoll = EventQueue<EpollCalls>;

/// epoll's registration calls and wait. It keeps no state of its own: the timerfd belongs
/// with the epoll fd, in `EpollFds`, and a wait's hold on it in `TimerHold`.
pub struct EpollCalls;

/// The epoll fd and the timerfd that may join it, closed together.
pub struct EpollFds {
    epfd: OwnedFd,
    /// Created by the first sub-millisecond wait; `None` inside if that failed (the waits
    /// then go without).
    timer: OnceLock<Option<Timer>>,
    /// The fork generation that created the epoll fd: a child shares the epoll set with its
    /// parent, so it neither adds a timerfd to it nor arms the parent's.
    generation: u64,
}

impl HandleFds for EpollFds {
    fn main_fd(&self) -> RawFd {
        self.epfd.as_raw_fd()
    }

    unsafe fn reown(&self) -> Self {
        // SAFETY: the fds are open, and the caller leaks `self`: each new owner is the only
        // one. The fork generation stays the creator's, so the child never arms the timer.
        let own = |fd: &OwnedFd| unsafe { OwnedFd::from_raw_fd(fd.as_raw_fd()) };
        let timer = OnceLock::new();
        if let Some(t) = self.timer.get() {
            let _ = timer.set(t.as_ref().map(|t| Timer::adopt(own(&t.fd))));
        }
        EpollFds {
            epfd: own(&self.epfd),
            timer,
            generation: self.generation,
        }
    }
}

impl EpollFds {
    /// The timerfd, if one is in the epoll set.
    fn registered_timer(&self) -> Option<&Timer> {
        self.timer.get().and_then(Option::as_ref)
    }

    /// True when a wait for `timeout` would create the timerfd, if it is not there yet.
    fn may_add_timer(&self, timeout: Timeout) -> bool {
        timeout.is_some_and(timeout::wants_timerfd) && fork_generation() == self.generation
    }

    /// The timerfd this process may arm, created and registered on first use.
    fn usable_timer(&self) -> Option<&Timer> {
        if fork_generation() != self.generation {
            return None;
        }
        self.timer
            .get_or_init(|| Timer::new(self.epfd.as_raw_fd()).ok())
            .as_ref()
    }
}

/// What one Epoll wait keeps between its calls.
#[derive(Default)]
pub struct TimerHold {
    /// True from the first sub-millisecond call that armed the timerfd until the wait's end,
    /// EINTR retries included: the timer stays armed for the first call's deadline.
    armed: bool,
}

impl TimerHold {
    fn release(&mut self, epoll: &EpollFds) {
        if std::mem::take(&mut self.armed) {
            if let Some(timer) = epoll.registered_timer() {
                timer.release();
            }
        }
    }
}

impl Epoll {
    pub fn new() -> io::Result<Self> {
        let fd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: epoll_create1 just returned this fd and nothing else owns it.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let fds = EpollFds {
            epfd,
            timer: OnceLock::new(),
            generation: fork_generation(),
        };
        Ok(EventQueue::with_fds(fds, EpollCalls))
    }
}

fn ctl(epoll: &OsHandle<EpollFds>, op: libc::c_int, fd: u64, interest: u8) -> Result<()> {
    // select.epoll converts the fd (OverflowError) before it looks at its own handle.
    let fd = to_raw_fd(fd)?;
    let epfd = epoll.raw()?;
    let mut event = libc::epoll_event {
        events: epoll_bits(interest),
        u64: fd as u64,
    };
    syscall!(epoll_ctl(epfd, op, fd, &mut event))?;
    Ok(())
}

fn epoll_bits(interest: u8) -> u32 {
    let mut bits = 0;
    if interest & super::READ != 0 {
        bits |= libc::EPOLLIN as u32;
    }
    if interest & super::WRITE != 0 {
        bits |= libc::EPOLLOUT as u32;
    }
    bits
}

impl Mechanism for EpollCalls {
    type Event = libc::epoll_event;
    type Fds = EpollFds;
    type WaitState = TimerHold;
    const NAME: &'static str = "epoll";

    fn add(&mut self, epoll: &OsHandle<EpollFds>, fd: u64, interest: u8) -> Result<()> {
        ctl(epoll, libc::EPOLL_CTL_ADD, fd, interest)
    }

    fn modify(&mut self, epoll: &OsHandle<EpollFds>, fd: u64, interest: u8) -> Result<()> {
        ctl(epoll, libc::EPOLL_CTL_MOD, fd, interest)
    }

    fn remove(&mut self, epoll: &OsHandle<EpollFds>, fd: u64) -> Result<()> {
        ctl(epoll, libc::EPOLL_CTL_DEL, fd, 0)
    }

    fn wait_raw(
        epoll: &EpollFds,
        hold: &mut TimerHold,
        events: &mut [MaybeUninit<libc::epoll_event>],
        timeout: Timeout,
    ) -> io::Result<usize> {
        let result = wait_beside_timer(epoll, hold, events, timeout);
        if !matches!(&result, Err(e) if crate::sys::is_interrupted(e)) {
            // Done: another wait may arm the timer. After EINTR it stays armed for the retry.
            hold.release(epoll);
        }
        result
    }

    /// One for the timerfd's, once it is in the set or if this wait may put it there.
    fn own_events(epoll: &EpollFds, timeout: Timeout) -> usize {
        usize::from(epoll.registered_timer().is_some() || epoll.may_add_timer(timeout))
    }

    /// A wait given up after EINTR may still hold the timerfd.
    fn end_wait(epoll: &EpollFds, hold: &mut TimerHold) {
        hold.release(epoll);
    }

    /// The timerfd's event is no fd's: left out.
    fn ready(event: &libc::epoll_event) -> Option<(u64, u8)> {
        let fd = event.u64;
        if fd == TIMER_TAG {
            return None;
        }
        let events = poll_like_events(event.events, libc::EPOLLIN as u32, libc::EPOLLOUT as u32);
        Some((fd, events))
    }
}

/// What the kernel wrote into the first `n` records of `events`: whether a registered fd's
/// event is among them, and whether the timerfd's is.
fn woken_by(events: &[MaybeUninit<libc::epoll_event>], n: usize) -> (bool, bool) {
    let (mut some_fd, mut timer) = (false, false);
    for event in &events[..n] {
        // SAFETY: the wait initialised the first `n` records.
        let tag = unsafe { event.assume_init_ref() }.u64;
        if tag == TIMER_TAG {
            timer = true;
        } else {
            some_fd = true;
        }
    }
    (some_fd, timer)
}

/// One wait, with the timerfd armed for `timeout` if it is a sub-millisecond one and this
/// wait may arm it. Any wait may see the timerfd's event once the timerfd is in the set
/// (another thread's, or the parent's after a fork, or one that joined the set while this
/// wait slept): `ready` leaves it out, and a wait it alone woke before its own deadline
/// waits on.
fn wait_beside_timer(
    epoll: &EpollFds,
    hold: &mut TimerHold,
    events: &mut [MaybeUninit<libc::epoll_event>],
    timeout: Timeout,
) -> io::Result<usize> {
    let epfd = epoll.epfd.as_raw_fd();
    // The caller's room fits a C int.
    let room = events.len() as libc::c_int;
    if timeout == Some(Duration::ZERO) {
        // A look (`select(0)`): it arms nothing and has no deadline to wait on for.
        return Ok(syscall!(epoll_wait(epfd, events.as_mut_ptr().cast(), room, 0))? as usize);
    }
    let deadline = timeout.and_then(|d| Instant::now().checked_add(d));
    if !hold.armed {
        if let Some(d) = timeout.filter(|&d| timeout::wants_timerfd(d)) {
            let at = monotonic_after(d);
            // Arming costs more than a look (the timer hardware is reprogrammed, which a
            // virtual machine traps): first see whether the wait would sleep at all.
            let n = syscall!(epoll_wait(epfd, events.as_mut_ptr().cast(), room, 0))? as usize;
            if woken_by(events, n).0 {
                return Ok(n);
            }
            hold.armed = epoll.usable_timer().is_some_and(|t| t.take(at));
        }
    }
    let mut left = timeout;
    loop {
        let n = epoll_wait_timeout(epfd, events.as_mut_ptr().cast(), room, left)?;
        let (some_fd, timer_fired) = woken_by(events, n);
        if some_fd || !timer_fired {
            return Ok(n);
        }
        // Only the timer: this wait's own deadline, or another's expiry woke it early.
        left = match deadline {
            // Forever, or too far ahead to matter.
            None => timeout,
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(timeout::poll_like_retry(left)),
                _ => return Ok(n),
            },
        };
    }
}

/// One wait for up to `max_events` events into `events`: `epoll_pwait2` when the timeout
/// has a fraction of a millisecond and the kernel takes it, else `epoll_wait`, whose whole
/// milliseconds round the timeout up.
fn epoll_wait_timeout(
    epfd: RawFd,
    events: *mut libc::epoll_event,
    max_events: libc::c_int,
    timeout: Timeout,
) -> io::Result<usize> {
    if let Some(d) = timeout.filter(|&d| !timeout::whole_millis(d)) {
        if timeout::epoll_pwait2_usable() {
            let result = epoll_pwait2(epfd, events, max_events, d);
            if !timeout::epoll_pwait2_outcome(&result) {
                return result;
            }
        }
    }
    let n = syscall!(epoll_wait(
        epfd,
        events,
        max_events,
        to_millis_ceil(timeout)
    ))?;
    Ok(n as usize)
}

/// `epoll_pwait2(epfd, events, max_events, &timeout, NULL)`, by number: the C library may
/// have no wrapper for it.
fn epoll_pwait2(
    epfd: RawFd,
    events: *mut libc::epoll_event,
    max_events: libc::c_int,
    timeout: Duration,
) -> io::Result<usize> {
    if let Some(err) = timeout::epoll_pwait2_simulated_error() {
        return Err(err);
    }
    let ts = timeout::to_timespec(timeout);
    let no_sigmask: *const libc::sigset_t = std::ptr::null();
    // SAFETY: `events` has room for `max_events` entries (the caller's buffer), `ts` lives
    // across the call, and a null sigmask leaves the signal mask alone.
    let n = unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait2,
            epfd,
            events,
            max_events,
            &ts as *const libc::timespec,
            no_sigmask,
            0usize, // the sigmask's size, unread without one
        )
    };
    if n == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_support::socket_pair;
    use crate::backend::tests::ready;
    use crate::backend::timerfd::set_timer;
    use crate::backend::{Backend, Error, Wait, READ, WRITE};
    use socket2::Socket;
    use std::io::Write;

    /// Learns whether `epoll_pwait2` works (the timerfd is used only once it does).
    fn pwait2_works(ep: &mut Epoll) -> bool {
        ready(ep, Some(Duration::from_micros(10)));
        timeout::epoll_pwait2_works()
    }

    /// An Epoll with one idle fd registered (`b`, written through `a`), or None where
    /// `epoll_pwait2` does not work and sub-millisecond waits go without the timerfd.
    fn epoll_with_timer() -> Option<(Epoll, Socket, Socket)> {
        let (a, b) = socket_pair();
        let mut ep = Epoll::new().unwrap();
        ep.add(b.as_raw_fd() as u64, READ).unwrap();
        pwait2_works(&mut ep).then_some((ep, a, b))
    }

    fn has_timer(ep: &Epoll) -> bool {
        ep.fds().unwrap().registered_timer().is_some()
    }

    #[test]
    fn the_timer_comes_with_the_first_sub_ms_wait_and_is_never_reported() {
        let (mut a, b) = socket_pair();
        let mut ep = Epoll::new().unwrap();
        let bfd = b.as_raw_fd() as u64;
        ep.add(bfd, READ).unwrap();
        ready(&mut ep, Some(Duration::from_millis(1)));
        ep.poll_now(1, &mut |_, _| ()).unwrap();
        assert!(!has_timer(&ep));
        if !pwait2_works(&mut ep) {
            return;
        }
        assert!(has_timer(&ep));
        for _ in 0..20 {
            assert!(ready(&mut ep, Some(Duration::from_micros(100))).is_empty());
        }
        // The one registered fd's event still fits beside the timer's.
        a.write_all(b"x").unwrap();
        for timeout in [Some(Duration::from_micros(100)), Some(Duration::ZERO), None] {
            assert_eq!(ready(&mut ep, timeout), [(bfd, READ)].into());
        }
    }

    #[test]
    fn a_wait_with_the_timer_never_returns_early() {
        let Some((mut ep, _a, _b)) = epoll_with_timer() else {
            return;
        };
        for us in [1, 7, 50, 120, 300, 999] {
            for _ in 0..5 {
                let asked = Duration::from_micros(us);
                let start = Instant::now();
                assert!(ready(&mut ep, Some(asked)).is_empty());
                assert!(start.elapsed() >= asked, "{us} us: {:?}", start.elapsed());
            }
        }
        assert!(has_timer(&ep));
    }

    #[test]
    fn an_expiry_left_armed_does_not_end_a_later_wait_early() {
        let Some((mut ep, mut a, b)) = epoll_with_timer() else {
            return;
        };
        // Woken by the fd, with the timer still armed: it fires during the next wait.
        a.write_all(b"x").unwrap();
        assert_eq!(ready(&mut ep, Some(Duration::from_micros(500))).len(), 1);
        let mut buf = [0u8; 1];
        std::io::Read::read(&mut &b, &mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        let start = Instant::now();
        assert!(ready(&mut ep, Some(Duration::from_millis(2))).is_empty());
        assert!(start.elapsed() >= Duration::from_millis(2));
    }

    #[test]
    fn another_waits_expiry_does_not_end_a_wait_early() {
        let Some((mut ep, _a, _b)) = epoll_with_timer() else {
            return;
        };
        // A second fd for the same timer, as a wait in another thread would arm it.
        let timer = ep.fds().unwrap().registered_timer().unwrap();
        let timer = timer.fd.try_clone().unwrap();
        // The timer fires 100 us into a 2 ms wait.
        for asked in [Duration::from_millis(2), Duration::from_micros(1500)] {
            set_timer(&timer, monotonic_after(Duration::from_micros(100))).unwrap();
            let start = Instant::now();
            assert!(ready(&mut ep, Some(asked)).is_empty());
            assert!(start.elapsed() >= asked, "{:?}", start.elapsed());
        }
    }

    #[test]
    fn hang_up_counts_as_both() {
        let (a, b) = socket_pair();
        let mut ep = Epoll::new().unwrap();
        ep.add(b.as_raw_fd() as u64, READ).unwrap();
        drop(a);
        let mut wait = ep.begin_wait(8).unwrap();
        wait.wait(None).unwrap();
        let mut out = Vec::new();
        wait.for_each_ready(&mut |fd, ev| out.push((fd, ev)));
        ep.end_wait(wait);
        assert_eq!(out[0].1, READ | WRITE);
    }

    #[test]
    fn a_bad_fd_is_ebadf_and_a_huge_one_too_large() {
        let mut ep = Epoll::new().unwrap();
        assert!(matches!(ep.add(1 << 40, READ), Err(Error::FdTooLarge)));
        match ep.add(999_999, WRITE) {
            Err(Error::Os(e)) => assert_eq!(e.raw_os_error(), Some(libc::EBADF)),
            other => panic!("expected EBADF, got {other:?}"),
        }
    }
}
