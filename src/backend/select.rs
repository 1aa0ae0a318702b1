//! `select()`, as `select.select` drives it: the registered read and write sets, kept in
//! ascending fd order and handed whole to each wait, which builds the OS's own sets from
//! them and makes the call: `posix.rs` (`fd_set` bitmaps) or, on Windows, `winsock.rs`
//! (arrays of sockets). The OS's sets of the last wait are kept while the registrations are
//! unchanged, as poll's array is.

use std::collections::BTreeSet;
use std::io;

use super::{Backend, Result, Wait};
use crate::timeout::Timeout;

#[cfg(unix)]
mod posix;
#[cfg(unix)]
use posix as os;
#[cfg(windows)]
mod winsock;
#[cfg(windows)]
use winsock as os;

#[derive(Default)]
pub struct Select {
    readers: BTreeSet<u64>,
    writers: BTreeSet<u64>,
    /// The OS's sets of the last wait (big: Winsock's are 12 KiB), kept for the next, and
    /// the `generation` they were filled for.
    spare: Option<(Box<os::FdSets>, u64)>,
    /// Bumped on every change of the registrations, so kept sets can tell they are stale.
    generation: u64,
}

impl Select {
    pub fn new() -> Self {
        Self::default()
    }

    /// The OS's sets for the registrations as they are now: the spare ones, filled again
    /// only if the registrations changed since.
    fn prepared(&mut self) -> Result<Box<os::FdSets>> {
        let (mut sets, filled) = match self.spare.take() {
            Some(spare) => spare,
            None => (
                Box::new(os::FdSets::empty()),
                self.generation.wrapping_sub(1),
            ),
        };
        if filled != self.generation {
            if let Err(err) = sets.fill(&self.readers, &self.writers) {
                self.spare = Some((sets, filled));
                return Err(err);
            }
        }
        Ok(sets)
    }
}

/// One select() wait: the OS's sets, and the registrations they were filled for.
pub struct SelectWait {
    sets: Box<os::FdSets>,
    generation: u64,
}

impl Wait for SelectWait {
    fn wait(&mut self, timeout: Timeout) -> io::Result<()> {
        self.sets.wait(timeout)
    }

    fn for_each_ready(&self, f: impl FnMut(u64, u8)) {
        self.sets.for_each_ready(f)
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
        self.generation += 1;
        Ok(())
    }

    fn modify(&mut self, fd: u64, interest: u8) -> Result<()> {
        self.remove(fd)?;
        self.add(fd, interest)
    }

    fn remove(&mut self, fd: u64) -> Result<()> {
        self.readers.remove(&fd);
        self.writers.remove(&fd);
        self.generation += 1;
        Ok(())
    }

    fn begin_wait(&mut self, _max_events: usize) -> Result<SelectWait> {
        Ok(SelectWait {
            sets: self.prepared()?,
            generation: self.generation,
        })
    }

    fn end_wait(&mut self, wait: SelectWait) {
        self.spare = Some((wait.sets, wait.generation));
    }

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
