//! POSIX `select`, as `select.select` drives it: read and write sets rebuilt for each wait,
//! fds at or above `FD_SETSIZE` refused instead of written past the end of an `fd_set`.

use std::collections::BTreeSet;
use std::io;
use std::mem::MaybeUninit;

use super::{Backend, Error, Result, Wait};
use crate::sys::{syscall, to_raw_fd};
use crate::timeout::{to_timeval_ceil, Timeout};

#[derive(Default)]
pub struct Select {
    readers: BTreeSet<u64>,
    writers: BTreeSet<u64>,
}

impl Select {
    pub fn new() -> Self {
        Self::default()
    }

    /// What `fd` is watched for (`READ`/`WRITE` bits), 0 if nothing.
    pub fn interest(&self, fd: u64) -> u8 {
        let mut interest = 0;
        if self.readers.contains(&fd) {
            interest |= super::READ;
        }
        if self.writers.contains(&fd) {
            interest |= super::WRITE;
        }
        interest
    }
}

fn empty_set() -> libc::fd_set {
    let mut set = MaybeUninit::<libc::fd_set>::uninit();
    // SAFETY: FD_ZERO initialises the whole set.
    unsafe {
        libc::FD_ZERO(set.as_mut_ptr());
        set.assume_init()
    }
}

/// Copies `fds` into an `fd_set`, refusing any fd it cannot hold.
fn fill_set(fds: &BTreeSet<u64>) -> Result<(libc::fd_set, libc::c_int)> {
    let mut set = empty_set();
    let mut nfds = 0;
    for &fd in fds {
        let fd = to_raw_fd(fd)?;
        if fd >= libc::FD_SETSIZE as libc::c_int {
            return Err(Error::FdOutOfRange);
        }
        // SAFETY: 0 <= fd < FD_SETSIZE, checked above.
        unsafe { libc::FD_SET(fd, &mut set) };
        nfds = nfds.max(fd + 1);
    }
    Ok((set, nfds))
}

impl Backend for Select {
    type Wait = SelectWait;

    fn add(&mut self, fd: u64, interest: u8) -> Result<()> {
        if interest & super::READ != 0 {
            self.readers.insert(fd);
        }
        if interest & super::WRITE != 0 {
            self.writers.insert(fd);
        }
        Ok(())
    }

    fn modify(&mut self, fd: u64, interest: u8) -> Result<()> {
        self.remove(fd)?;
        self.add(fd, interest)
    }

    fn remove(&mut self, fd: u64) -> Result<()> {
        self.readers.remove(&fd);
        self.writers.remove(&fd);
        Ok(())
    }

    fn begin_wait(&mut self, _max_events: usize) -> Result<SelectWait> {
        let (readers, nr) = fill_set(&self.readers)?;
        let (writers, nw) = fill_set(&self.writers)?;
        Ok(SelectWait {
            wanted: (readers, writers),
            ready: (empty_set(), empty_set()),
            nfds: nr.max(nw),
        })
    }

    fn end_wait(&mut self, _wait: SelectWait) {}

    fn close(&mut self) {}

    fn interest(&self, fd: u64) -> Option<u8> {
        Some(Select::interest(self, fd))
    }
}

pub struct SelectWait {
    /// What to watch; `select()` overwrites its arguments, so each try starts from a copy.
    wanted: (libc::fd_set, libc::fd_set),
    ready: (libc::fd_set, libc::fd_set),
    nfds: libc::c_int,
}

impl Wait for SelectWait {
    fn wait(&mut self, timeout: Timeout) -> io::Result<()> {
        self.ready = self.wanted;
        let mut tv = timeout.map(to_timeval_ceil);
        let tv_ptr = tv
            .as_mut()
            .map_or(std::ptr::null_mut(), |tv| tv as *mut libc::timeval);
        let result = syscall!(select(
            self.nfds,
            &mut self.ready.0,
            &mut self.ready.1,
            std::ptr::null_mut(),
            tv_ptr,
        ));
        if result.is_err() {
            self.ready = (empty_set(), empty_set());
        }
        result.map(drop)
    }

    fn for_each_ready(&self, f: &mut dyn FnMut(u64, u8)) {
        for fd in 0..self.nfds {
            // SAFETY: 0 <= fd < nfds <= FD_SETSIZE and both sets are initialised.
            let (r, w) = unsafe {
                (
                    libc::FD_ISSET(fd, &self.ready.0),
                    libc::FD_ISSET(fd, &self.ready.1),
                )
            };
            let events = (if r { super::READ } else { 0 }) | (if w { super::WRITE } else { 0 });
            if events != 0 {
                f(fd as u64, events);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_support::socket_pair;
    use crate::backend::{READ, WRITE};
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn ready(s: &mut Select) -> Result<Vec<(u64, u8)>> {
        let mut wait = s.begin_wait(0)?;
        wait.wait(Some(Duration::ZERO)).unwrap();
        let mut out = Vec::new();
        wait.for_each_ready(&mut |fd, ev| out.push((fd, ev)));
        s.end_wait(wait);
        Ok(out)
    }

    #[test]
    fn reports_in_ascending_fd_order() {
        let (mut a, b) = socket_pair();
        let (c, d) = socket_pair();
        let mut s = Select::new();
        let (bfd, dfd) = (b.as_raw_fd() as u64, d.as_raw_fd() as u64);
        s.add(dfd, WRITE).unwrap();
        s.add(bfd, READ).unwrap();
        assert_eq!(ready(&mut s).unwrap(), vec![(dfd, WRITE)]);
        a.write_all(b"x").unwrap();
        let mut expected = vec![(bfd, READ), (dfd, WRITE)];
        expected.sort();
        assert_eq!(ready(&mut s).unwrap(), expected);
        s.modify(bfd, READ | WRITE).unwrap();
        s.remove(dfd).unwrap();
        assert_eq!(ready(&mut s).unwrap(), vec![(bfd, READ | WRITE)]);
        drop(c);
    }

    #[test]
    fn refuses_fds_an_fd_set_cannot_hold() {
        let mut s = Select::new();
        s.add(libc::FD_SETSIZE as u64, READ).unwrap();
        assert!(matches!(ready(&mut s), Err(Error::FdOutOfRange)));
        s.remove(libc::FD_SETSIZE as u64).unwrap();
        s.add(1 << 40, WRITE).unwrap();
        assert!(matches!(ready(&mut s), Err(Error::FdTooLarge)));
    }
}
