//! `select()`, as `select.select` drives it: the registered read and write sets, kept in
//! ascending fd order and handed whole to each wait, which builds the OS's own sets from
//! them and makes the call: `posix.rs` (`fd_set` bitmaps) or, on Windows, `winsock.rs`
//! (arrays of sockets).

use std::collections::BTreeSet;

use super::{Backend, Result};

#[cfg(unix)]
mod posix;
#[cfg(unix)]
use posix as os;
#[cfg(windows)]
mod winsock;
#[cfg(windows)]
use winsock as os;

pub use os::SelectWait;

#[derive(Default)]
pub struct Select {
    readers: BTreeSet<u64>,
    writers: BTreeSet<u64>,
}

impl Select {
    pub fn new() -> Self {
        Self::default()
    }
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
        SelectWait::new(&self.readers, &self.writers)
    }

    fn end_wait(&mut self, _wait: SelectWait) {}

    fn close(&mut self) {}

    /// What `fd` is watched for (`READ`/`WRITE` bits), 0 if nothing.
    fn interest(&self, fd: u64) -> Option<u8> {
        let mut interest = 0;
        if self.readers.contains(&fd) {
            interest |= super::READ;
        }
        if self.writers.contains(&fd) {
            interest |= super::WRITE;
        }
        Some(interest)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::backend::test_support::{raw, socket_pair};
    use crate::backend::{Error, Wait, READ, WRITE};
    use std::io::Write;
    use std::time::Duration;

    pub fn ready(s: &mut Select) -> Result<Vec<(u64, u8)>> {
        let mut wait = s.begin_wait(0)?;
        wait.wait(Some(Duration::ZERO))?;
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
        let (bfd, dfd) = (raw(&b), raw(&d));
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
    fn refuses_fds_a_set_cannot_hold() {
        let mut s = Select::new();
        let too_many = os::more_than_a_set_holds();
        for &fd in &too_many {
            s.add(fd, WRITE).unwrap();
        }
        assert!(matches!(ready(&mut s), Err(Error::FdOutOfRange)));
        for &fd in &too_many {
            s.remove(fd).unwrap();
        }
        s.add(1 << 40, READ).unwrap();
        assert!(matches!(ready(&mut s), Err(Error::FdTooLarge)));
    }
}
