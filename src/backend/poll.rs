//! POSIX `poll`, as `select.poll` drives it: the registrations live in user space and are
//! copied into a `pollfd` array, rebuilt only when they changed.

use std::io;

use super::{Backend, Error, PollBits, Result, Wait};
use crate::sys::{syscall, to_raw_fd};
use crate::table::KeyTable;
use crate::timeout::{to_millis_ceil, Timeout};

#[derive(Default)]
pub struct Poll {
    /// fd -> poll bits, in registration order (the order `poll()` reports in).
    registered: KeyTable<libc::c_short>,
    /// The `pollfd` array of the last wait, reused while `registered` is unchanged.
    cached: Option<Vec<libc::pollfd>>,
    /// Bumped on every change to `registered`, so a wait's array can tell it is stale.
    generation: u64,
    /// `select.poll` refuses a second concurrent `poll()` on one object; so do we.
    running: bool,
}

impl Poll {
    pub fn new() -> Self {
        Self::default()
    }

    fn changed(&mut self) {
        self.cached = None;
        self.generation += 1;
    }
}

fn poll_bits(interest: u8) -> libc::c_short {
    PollBits::POLL.of_interest(interest) as libc::c_short
}

impl Backend for Poll {
    type Wait = PollWait;

    fn add(&mut self, fd: u64, interest: u8) -> Result<()> {
        to_raw_fd(fd)?;
        let bits = poll_bits(interest);
        if let Err(bits) = self.registered.replace(fd, bits) {
            let _ = self.registered.insert(fd, bits);
        }
        self.changed();
        Ok(())
    }

    fn modify(&mut self, fd: u64, interest: u8) -> Result<()> {
        to_raw_fd(fd)?;
        if self.registered.replace(fd, poll_bits(interest)).is_err() {
            return Err(Error::Os(io::Error::from_raw_os_error(libc::ENOENT)));
        }
        self.changed();
        Ok(())
    }

    fn remove(&mut self, fd: u64) -> Result<()> {
        if self.registered.remove(fd).is_none() {
            return Err(Error::Os(io::Error::from_raw_os_error(libc::ENOENT)));
        }
        self.changed();
        Ok(())
    }

    #[inline]
    fn begin_wait(&mut self, _max_events: usize) -> Result<PollWait> {
        if self.running {
            return Err(Error::ConcurrentPoll);
        }
        let fds = match self.cached.take() {
            Some(fds) => fds,
            None => self
                .registered
                .iter()
                .map(|(fd, &events)| libc::pollfd {
                    // Registration checked that the fd fits in a c_int.
                    fd: fd as libc::c_int,
                    events,
                    revents: 0,
                })
                .collect(),
        };
        self.running = true;
        Ok(PollWait {
            fds,
            generation: self.generation,
            ready: 0,
        })
    }

    #[inline]
    fn end_wait(&mut self, wait: PollWait) {
        self.running = false;
        if wait.generation == self.generation {
            self.cached = Some(wait.fds);
        }
    }

    fn close(&mut self) {}

    /// What `fd` is registered for, if poll() holds it.
    fn interest(&self, fd: u64) -> Option<u8> {
        let bits = *self.registered.get(fd)?;
        Some(PollBits::POLL.interest_of(bits as u16 as u64))
    }
}

pub struct PollWait {
    fds: Vec<libc::pollfd>,
    generation: u64,
    /// How many entries the last poll() marked: the scan for them stops at the last one.
    ready: usize,
}

impl Wait for PollWait {
    fn wait(&mut self, timeout: Timeout) -> io::Result<()> {
        // A successful poll() writes every entry's `revents`; `ready` bounds what is read.
        self.ready = 0;
        self.ready = poll_timeout(&mut self.fds, timeout)?;
        Ok(())
    }

    fn for_each_ready(&self, mut f: impl FnMut(u64, u8)) {
        let marked = self.fds.iter().filter(|p| p.revents != 0);
        for pfd in marked.take(self.ready) {
            let events = PollBits::POLL.ready_events(pfd.revents as u16 as u64);
            f(pfd.fd as u64, events);
        }
    }

    fn found_any(&self) -> bool {
        self.ready > 0
    }
}

/// One `poll()` of `fds`: `ppoll` when the timeout has a fraction of a millisecond (where
/// the OS has it), else `poll`, whose whole milliseconds round the timeout up.
fn poll_timeout(fds: &mut [libc::pollfd], timeout: Timeout) -> io::Result<usize> {
    #[cfg(epoll)]
    if let Some(d) = timeout.filter(|&d| !crate::timeout::whole_millis(d)) {
        let ts = crate::timeout::to_timespec(d);
        let n = syscall!(ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        ))?;
        return Ok(n as usize);
    }
    let n = syscall!(poll(
        fds.as_mut_ptr(),
        fds.len() as libc::nfds_t,
        to_millis_ceil(timeout),
    ))?;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_support::socket_pair;
    use crate::backend::{READ, WRITE};
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn ready(p: &mut Poll) -> Vec<(u64, u8)> {
        let mut wait = p.begin_wait(0).unwrap();
        wait.wait(Some(Duration::ZERO)).unwrap();
        let mut out = Vec::new();
        wait.for_each_ready(&mut |fd, ev| out.push((fd, ev)));
        p.end_wait(wait);
        out
    }

    #[test]
    fn reports_in_registration_order() {
        let (mut a, b) = socket_pair();
        let (mut c, d) = socket_pair();
        let mut p = Poll::new();
        let (bfd, dfd) = (b.as_raw_fd() as u64, d.as_raw_fd() as u64);
        p.add(dfd, READ).unwrap();
        p.add(bfd, READ).unwrap();
        assert!(ready(&mut p).is_empty());
        a.write_all(b"x").unwrap();
        c.write_all(b"x").unwrap();
        assert_eq!(ready(&mut p), vec![(dfd, READ), (bfd, READ)]);
        p.modify(bfd, WRITE).unwrap();
        assert_eq!(ready(&mut p), vec![(dfd, READ), (bfd, WRITE)]);
        p.remove(dfd).unwrap();
        assert_eq!(ready(&mut p), vec![(bfd, WRITE)]);
    }

    #[test]
    fn a_closed_fd_is_reported_as_invalid() {
        let mut p = Poll::new();
        p.add(999_999, READ).unwrap();
        assert_eq!(ready(&mut p), vec![(999_999, READ | WRITE)]);
    }

    #[test]
    fn refuses_concurrent_waits_and_huge_fds() {
        let mut p = Poll::new();
        let wait = p.begin_wait(0).unwrap();
        assert!(matches!(p.begin_wait(0), Err(Error::ConcurrentPoll)));
        p.end_wait(wait);
        assert!(p.begin_wait(0).is_ok());
        assert!(matches!(p.add(1 << 40, READ), Err(Error::FdTooLarge)));
    }
}
