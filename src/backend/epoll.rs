//! Linux `epoll`, level-triggered, as `select.epoll` drives it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::handle::{Lent, OsHandle};
use super::{poll_like_events, Backend, Result, Wait};
use crate::sys::{syscall, to_raw_fd};
use crate::timeout::{self, to_millis_ceil, Timeout};

pub struct Epoll {
    /// Lent to waits in flight, so `close()` never frees what a wait still uses.
    epfd: OsHandle,
    /// The event buffer, lent to one wait at a time and reused across calls.
    spare: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new() -> io::Result<Self> {
        let fd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: epoll_create1 just returned this fd and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll {
            epfd: OsHandle::new("epoll", owned),
            spare: Vec::new(),
        })
    }

    fn ctl(&self, op: libc::c_int, fd: u64, interest: u8) -> Result<()> {
        let epfd = self.epfd.raw()?;
        let fd = to_raw_fd(fd)?;
        let mut event = libc::epoll_event {
            events: epoll_bits(interest),
            u64: fd as u64,
        };
        syscall!(epoll_ctl(epfd, op, fd, &mut event))?;
        Ok(())
    }
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

impl Backend for Epoll {
    type Wait = EpollWait;

    fn add(&mut self, fd: u64, interest: u8) -> Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest)
    }

    fn modify(&mut self, fd: u64, interest: u8) -> Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest)
    }

    fn remove(&mut self, fd: u64) -> Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0)
    }

    fn begin_wait(&mut self, max_events: usize) -> Result<EpollWait> {
        let max_events = max_events.clamp(1, libc::c_int::MAX as usize);
        let epfd = self.epfd.lend()?;
        let mut events = std::mem::take(&mut self.spare);
        events.clear();
        events.reserve(max_events);
        Ok(EpollWait {
            epfd,
            events,
            max_events,
            ready: 0,
        })
    }

    fn poll_now(&mut self, max_events: usize, f: &mut dyn FnMut(u64, u8)) -> Result<()> {
        // The caller holds the selector, so close() cannot run: no need to lend the fd.
        let epfd = self.epfd.raw()?;
        let max_events = max_events.clamp(1, libc::c_int::MAX as usize);
        self.spare.clear();
        self.spare.reserve(max_events);
        let n = syscall!(epoll_wait(
            epfd,
            self.spare.as_mut_ptr(),
            max_events as libc::c_int,
            0
        ))?;
        // SAFETY: epoll_wait initialised the first `n` (<= capacity) events.
        let ready = unsafe { std::slice::from_raw_parts(self.spare.as_ptr(), n as usize) };
        report(ready, f);
        Ok(())
    }

    fn end_wait(&mut self, wait: EpollWait) {
        self.epfd.give_back(wait.epfd);
        if wait.events.capacity() > self.spare.capacity() {
            self.spare = wait.events;
        }
    }

    fn close(&mut self) {
        self.epfd.close();
    }

    fn fileno(&self) -> Option<Result<RawFd>> {
        Some(self.epfd.raw())
    }
}

pub struct EpollWait {
    epfd: Lent,
    events: Vec<libc::epoll_event>,
    max_events: usize,
    ready: usize,
}

impl Wait for EpollWait {
    fn wait(&mut self, timeout: Timeout) -> io::Result<()> {
        self.ready = 0;
        self.ready = epoll_wait_timeout(
            self.epfd.fd.as_raw_fd(),
            self.events.as_mut_ptr(),
            self.max_events as libc::c_int,
            timeout,
        )?;
        Ok(())
    }

    fn for_each_ready(&self, f: &mut dyn FnMut(u64, u8)) {
        // SAFETY: epoll_wait initialised the first `ready` (<= capacity) events.
        let ready = unsafe { std::slice::from_raw_parts(self.events.as_ptr(), self.ready) };
        report(ready, f);
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
    timeout: std::time::Duration,
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

/// Hands each event epoll reported to `f` as `(fd, READ/WRITE mask)`.
fn report(ready: &[libc::epoll_event], f: &mut dyn FnMut(u64, u8)) {
    for event in ready {
        let events = poll_like_events(event.events, libc::EPOLLIN as u32, libc::EPOLLOUT as u32);
        f(event.u64, events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_support::socket_pair;
    use crate::backend::{Error, READ, WRITE};
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn ready(ep: &mut Epoll, timeout: Timeout) -> Vec<(u64, u8)> {
        let mut wait = ep.begin_wait(8).unwrap();
        wait.wait(timeout).unwrap();
        let mut out = Vec::new();
        wait.for_each_ready(&mut |fd, ev| out.push((fd, ev)));
        ep.end_wait(wait);
        out
    }

    #[test]
    fn reports_readable_and_writable() {
        let (mut a, b) = socket_pair();
        let mut ep = Epoll::new().unwrap();
        let bfd = b.as_raw_fd() as u64;
        ep.add(bfd, READ).unwrap();
        assert!(ready(&mut ep, Some(Duration::ZERO)).is_empty());
        a.write_all(b"x").unwrap();
        assert_eq!(ready(&mut ep, Some(Duration::ZERO)), vec![(bfd, READ)]);
        ep.modify(bfd, READ | WRITE).unwrap();
        assert_eq!(ready(&mut ep, None), vec![(bfd, READ | WRITE)]);
        ep.remove(bfd).unwrap();
        assert!(ready(&mut ep, Some(Duration::from_millis(1))).is_empty());
    }

    #[test]
    fn poll_now_reports_what_a_wait_reports() {
        let (mut a, b) = socket_pair();
        let mut ep = Epoll::new().unwrap();
        let bfd = b.as_raw_fd() as u64;
        ep.add(bfd, READ | WRITE).unwrap();
        let now = |ep: &mut Epoll| {
            let mut out = Vec::new();
            ep.poll_now(4, &mut |fd, ev| out.push((fd, ev)))
                .map(|()| out)
        };
        assert_eq!(now(&mut ep).unwrap(), vec![(bfd, WRITE)]);
        a.write_all(b"x").unwrap();
        assert_eq!(now(&mut ep).unwrap(), ready(&mut ep, Some(Duration::ZERO)));
        assert_eq!(now(&mut ep).unwrap(), vec![(bfd, READ | WRITE)]);
        ep.close();
        assert!(matches!(now(&mut ep), Err(Error::Closed("epoll"))));
    }

    #[test]
    fn a_wait_never_returns_early() {
        let (_a, b) = socket_pair();
        let mut ep = Epoll::new().unwrap();
        ep.add(b.as_raw_fd() as u64, READ).unwrap();
        for us in [1, 10, 50, 300, 1500] {
            let asked = Duration::from_micros(us);
            let start = std::time::Instant::now();
            assert!(ready(&mut ep, Some(asked)).is_empty());
            assert!(start.elapsed() >= asked, "{us} us: {:?}", start.elapsed());
        }
    }

    #[test]
    fn hang_up_counts_as_both() {
        let (a, b) = socket_pair();
        let mut ep = Epoll::new().unwrap();
        ep.add(b.as_raw_fd() as u64, READ).unwrap();
        drop(a);
        assert_eq!(ready(&mut ep, None)[0].1, READ | WRITE);
    }

    #[test]
    fn errors_map_to_their_kinds() {
        let mut ep = Epoll::new().unwrap();
        assert!(matches!(ep.add(1 << 40, READ), Err(Error::FdTooLarge)));
        match ep.add(999_999, READ) {
            Err(Error::Os(e)) => assert_eq!(e.raw_os_error(), Some(libc::EBADF)),
            other => panic!("expected EBADF, got {other:?}"),
        }
        let wait = ep.begin_wait(1).unwrap();
        ep.close();
        assert!(matches!(ep.add(0, READ), Err(Error::Closed(_))));
        assert!(matches!(ep.fileno(), Some(Err(Error::Closed(_)))));
        // The wait still owns the epoll fd after close().
        let mut wait = wait;
        wait.wait(Some(Duration::ZERO)).unwrap();
    }
}
