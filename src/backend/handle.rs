//! The OS handle of an epoll or kqueue selector, lent to waits in flight.
//!
//! `close()` must not free an fd a wait in another thread still sleeps on (the number could
//! be reused under it), so each wait holds its own reference (an `Arc`) and the fd closes with
//! the last one; the wait can still tell that `close()` let go of it. After `fork()`, though,
//! the child has the references of waits whose threads were not copied: those never end. So
//! on its first use in a new process the handle re-owns its fd under a fresh `Arc` and leaks
//! the old one, whose other holders are those lost threads; from then on the child's own
//! waits and `close()` count as in any process.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{Error, Result};
use crate::sys::fork_generation;

pub struct OsHandle {
    /// "epoll" or "kqueue", for the error on a closed handle.
    what: &'static str,
    fd: Option<Arc<SharedFd>>,
    /// The fork generation whose threads hold the references to `fd`.
    generation: u64,
}

/// The fd, shared by the handle and the waits it lent it to.
struct SharedFd {
    fd: OwnedFd,
    /// Set by the handle's `close()`.
    closed: AtomicBool,
}

impl SharedFd {
    fn new(fd: OwnedFd) -> Arc<Self> {
        Arc::new(SharedFd {
            fd,
            closed: AtomicBool::new(false),
        })
    }
}

/// What a wait holds: its own reference to the fd.
pub struct Lent(Arc<SharedFd>);

impl Lent {
    pub fn raw(&self) -> RawFd {
        self.0.fd.as_raw_fd()
    }

    /// Whether the handle's `close()` let go of the fd (which this wait keeps open).
    pub fn closed(&self) -> bool {
        self.0.closed.load(Ordering::Relaxed)
    }
}

impl OsHandle {
    pub fn new(what: &'static str, fd: OwnedFd) -> Self {
        OsHandle {
            what,
            fd: Some(SharedFd::new(fd)),
            generation: fork_generation(),
        }
    }

    pub fn raw(&self) -> Result<RawFd> {
        match &self.fd {
            Some(shared) => Ok(shared.fd.as_raw_fd()),
            None => Err(Error::Closed(self.what)),
        }
    }

    /// References taken before a fork belong to threads the child does not have: the fd gets
    /// a fresh `Arc`, and the old one is leaked with those references.
    fn catch_up_with_fork(&mut self) {
        let now = fork_generation();
        if now == self.generation {
            return;
        }
        self.generation = now;
        if let Some(old) = self.fd.take() {
            // SAFETY: `old` is open and is leaked right after, never dropped: the new owner
            // is the only one.
            let fresh = unsafe { OwnedFd::from_raw_fd(old.fd.as_raw_fd()) };
            std::mem::forget(old);
            self.fd = Some(SharedFd::new(fresh));
        }
    }

    pub fn lend(&mut self) -> Result<Lent> {
        self.catch_up_with_fork();
        let shared = self.fd.clone().ok_or(Error::Closed(self.what))?;
        Ok(Lent(shared))
    }

    /// Drops the handle's own reference: the fd closes now, or with the last wait's, which
    /// can tell it was closed.
    pub fn close(&mut self) {
        self.catch_up_with_fork();
        if let Some(shared) = self.fd.take() {
            shared.closed.store(true, Ordering::Relaxed);
        }
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
        assert!(!lent.closed());
        handle.close();
        assert!(lent.closed(), "the wait can tell");
        assert!(matches!(handle.lend(), Err(Error::Closed("epoll"))));
        assert!(
            b.recv(&mut buf).is_err(),
            "still open for the wait: no EOF yet"
        );
        drop(lent);
        assert_eq!(b.recv(&mut buf).unwrap(), 0, "closed with the wait: EOF");
    }
}
