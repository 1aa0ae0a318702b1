//! Linux `epoll`, level-triggered, as `select.epoll` drives it.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::event_queue::{EventQueue, Mechanism};
use super::handle::OsHandle;
use super::{poll_like_events, Result};
use crate::sys::{syscall, to_raw_fd};
use crate::timeout::{self, to_millis_ceil, Timeout};

/// An epoll selector's backend.
pub type Epoll = EventQueue<EpollCalls>;

/// epoll's registration calls and wait; it keeps no state of its own.
pub struct EpollCalls;

impl Epoll {
    pub fn new() -> io::Result<Self> {
        let fd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: epoll_create1 just returned this fd and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventQueue::with_fd(owned, EpollCalls))
    }
}

fn ctl(epoll: &OsHandle, op: libc::c_int, fd: u64, interest: u8) -> Result<()> {
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
    const NAME: &'static str = "epoll";

    fn add(&mut self, epoll: &OsHandle, fd: u64, interest: u8) -> Result<()> {
        ctl(epoll, libc::EPOLL_CTL_ADD, fd, interest)
    }

    fn modify(&mut self, epoll: &OsHandle, fd: u64, interest: u8) -> Result<()> {
        ctl(epoll, libc::EPOLL_CTL_MOD, fd, interest)
    }

    fn remove(&mut self, epoll: &OsHandle, fd: u64) -> Result<()> {
        ctl(epoll, libc::EPOLL_CTL_DEL, fd, 0)
    }

    fn wait_raw(
        epfd: RawFd,
        events: &mut [MaybeUninit<libc::epoll_event>],
        timeout: Timeout,
    ) -> io::Result<usize> {
        epoll_wait_timeout(
            epfd,
            events.as_mut_ptr().cast(),
            events.len() as libc::c_int,
            timeout,
        )
    }

    fn ready(event: &libc::epoll_event) -> (u64, u8) {
        let events = poll_like_events(event.events, libc::EPOLLIN as u32, libc::EPOLLOUT as u32);
        (event.u64, events)
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
        let pwait2 = || epoll_pwait2(epfd, events, max_events, d);
        if let Some(result) = timeout::EPOLL_PWAIT2.call(timeout::epoll_pwait2_missing, pwait2) {
            return result;
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
    use crate::backend::{Backend, Error, Wait, READ, WRITE};
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    #[test]
    fn a_sub_ms_wait_learns_whether_epoll_pwait2_works() {
        let (_a, b) = socket_pair();
        let mut ep = Epoll::new().unwrap();
        ep.add(b.as_raw_fd() as u64, READ).unwrap();
        let start = Instant::now();
        assert!(ready(&mut ep, Some(Duration::from_micros(200))).is_empty());
        let took = start.elapsed();
        match timeout::EPOLL_PWAIT2.state_name() {
            "works" => assert!(took >= Duration::from_micros(200), "{took:?}"),
            // Without it, epoll_wait's whole milliseconds, rounded up.
            "missing" => assert!(took >= Duration::from_millis(1), "{took:?}"),
            other => panic!("nothing learnt from a sub-millisecond wait: {other}"),
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
