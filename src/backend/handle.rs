//! The OS handle of an epoll or kqueue selector, lent to waits in flight.
//!
//! `close()` must not free an fd a wait in another thread still sleeps on (the number could
//! be reused under it), so each wait holds its own reference and the fd closes with the last
//! one. After `fork()`, though, the child has the references of waits whose threads were not
//! copied: those never end, so in the child `close()` closes the fd once its own waits are done.
//!
//! A handle may own more than its main fd (epoll's timerfd): they all go together.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::{Error, Result};
use crate::sys::fork_generation;

/// The fds one handle owns: a main one (the selector's `fileno()`) and any others with it.
pub trait HandleFds: Send + Sync {
    fn main_fd(&self) -> RawFd;
    /// Every fd owned, the main one included, for closing them all when the handle's other
    /// holders were lost to a fork.
    fn all_fds(&self) -> Vec<RawFd>;
}

impl HandleFds for OwnedFd {
    fn main_fd(&self) -> RawFd {
        self.as_raw_fd()
    }

    fn all_fds(&self) -> Vec<RawFd> {
        vec![self.as_raw_fd()]
    }
}

pub struct OsHandle<F = OwnedFd> {
    /// "epoll" or "kqueue", for the error on a closed handle.
    what: &'static str,
    fd: Option<Arc<F>>,
    /// Waits of this process in flight, and the fork generation they belong to.
    in_flight: usize,
    generation: u64,
    /// Closed in a forked child while waits of its own were still in flight.
    orphaned: Option<Arc<F>>,
}

/// What a wait holds: the fd, and which process generation lent it.
pub struct Lent<F = OwnedFd> {
    pub fd: Arc<F>,
    generation: u64,
}

impl<F: HandleFds> OsHandle<F> {
    pub fn new(what: &'static str, fd: F) -> Self {
        OsHandle {
            what,
            fd: Some(Arc::new(fd)),
            in_flight: 0,
            generation: fork_generation(),
            orphaned: None,
        }
    }

    pub fn raw(&self) -> Result<RawFd> {
        self.fds().map(F::main_fd)
    }

    /// What the handle owns, while it is open.
    pub fn fds(&self) -> Result<&F> {
        self.fd.as_deref().ok_or(Error::Closed(self.what))
    }

    /// Waits counted before a fork belong to threads the child does not have: forget them.
    fn catch_up_with_fork(&mut self) {
        let now = fork_generation();
        if now != self.generation {
            self.generation = now;
            self.in_flight = 0;
        }
    }

    pub fn lend(&mut self) -> Result<Lent<F>> {
        let fd = self.fd.clone().ok_or(Error::Closed(self.what))?;
        self.catch_up_with_fork();
        self.in_flight += 1;
        Ok(Lent {
            fd,
            generation: self.generation,
        })
    }

    pub fn give_back(&mut self, lent: Lent<F>) {
        if lent.generation == self.generation {
            self.in_flight -= 1;
        }
        drop(lent.fd);
        if self.in_flight == 0 {
            if let Some(fd) = self.orphaned.take() {
                close_orphaned(fd);
            }
        }
    }

    pub fn close(&mut self) {
        let Some(fd) = self.fd.take() else {
            return;
        };
        self.catch_up_with_fork();
        // References beyond ours and our waits' are those of threads lost in a fork.
        let lost_to_fork = Arc::strong_count(&fd) > 1 + self.in_flight;
        if !lost_to_fork {
            drop(fd);
        } else if self.in_flight == 0 {
            close_orphaned(fd);
        } else {
            self.orphaned = Some(fd);
        }
    }
}

/// Closes fds whose other references belong to threads that `fork()` did not copy into this
/// process: they will never run again, so they will never use or drop them.
fn close_orphaned<F: HandleFds>(fd: Arc<F>) {
    let raws = fd.all_fds();
    // Leak our reference so that no Drop can close the numbers again later.
    std::mem::forget(fd);
    for raw in raws {
        // SAFETY: `raw` is open and, per the above, nothing in this process will use it again.
        unsafe { drop(<OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_support::socket_pair;

    #[test]
    fn closes_with_the_last_wait() {
        // The peer sees EOF once `a` is closed; unlike a check of the fd number, this holds
        // while other tests open fds that may reuse it.
        let (a, b) = socket_pair();
        b.set_nonblocking(true).unwrap();
        let mut buf = [std::mem::MaybeUninit::new(0u8); 1];
        let mut handle = OsHandle::new("epoll", OwnedFd::from(a));
        let lent = handle.lend().unwrap();
        handle.close();
        assert!(matches!(handle.lend(), Err(Error::Closed("epoll"))));
        assert!(
            b.recv(&mut buf).is_err(),
            "still open for the wait: no EOF yet"
        );
        handle.give_back(lent);
        assert_eq!(b.recv(&mut buf).unwrap(), 0, "closed with the wait: EOF");
    }
}
