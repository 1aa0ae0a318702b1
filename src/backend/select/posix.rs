//! POSIX `select()`: the sets as `fd_set` bitmaps, fds at or above `FD_SETSIZE` refused
//! instead of written past the end of one.

use std::collections::BTreeSet;
use std::io;
use std::mem::MaybeUninit;

use crate::backend::{Error, Result, Wait, READ, WRITE};
use crate::sys::{syscall, to_raw_fd};
use crate::timeout::{to_timeval_ceil, Timeout};

fn empty_set() -> libc::fd_set {
    let mut set = MaybeUninit::<libc::fd_set>::uninit();
    // SAFETY: FD_ZERO initialises the whole set.
    unsafe {
        libc::FD_ZERO(set.as_mut_ptr());
        set.assume_init()
    }
}

/// Copies `fds` into `set`, refusing any fd it cannot hold; the highest fd plus one.
fn fill_set(fds: &BTreeSet<u64>, set: &mut libc::fd_set) -> Result<libc::c_int> {
    *set = empty_set();
    let mut nfds = 0;
    for &fd in fds {
        let fd = to_raw_fd(fd)?;
        if fd >= libc::FD_SETSIZE as libc::c_int {
            return Err(Error::FdOutOfRange);
        }
        // SAFETY: 0 <= fd < FD_SETSIZE, checked above.
        unsafe { libc::FD_SET(fd, set) };
        nfds = nfds.max(fd + 1);
    }
    Ok(nfds)
}

/// The OS's sets of a wait: what to watch, and what the last try found.
pub struct FdSets {
    /// What to watch; `select()` overwrites its arguments, so each try starts from a copy.
    wanted: (libc::fd_set, libc::fd_set),
    ready: (libc::fd_set, libc::fd_set),
    nfds: libc::c_int,
}

impl FdSets {
    pub(super) fn empty() -> Self {
        FdSets {
            wanted: (empty_set(), empty_set()),
            ready: (empty_set(), empty_set()),
            nfds: 0,
        }
    }

    /// Watches `readers` and `writers` from now on.
    pub(super) fn fill(&mut self, readers: &BTreeSet<u64>, writers: &BTreeSet<u64>) -> Result<()> {
        self.nfds = 0;
        let nr = fill_set(readers, &mut self.wanted.0)?;
        let nw = fill_set(writers, &mut self.wanted.1)?;
        self.nfds = nr.max(nw);
        Ok(())
    }
}

impl Wait for FdSets {
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

    fn for_each_ready(&self, mut f: impl FnMut(u64, u8)) {
        for fd in 0..self.nfds {
            // SAFETY: 0 <= fd < nfds <= FD_SETSIZE and both sets are initialised.
            let (r, w) = unsafe {
                (
                    libc::FD_ISSET(fd, &self.ready.0),
                    libc::FD_ISSET(fd, &self.ready.1),
                )
            };
            let events = (if r { READ } else { 0 }) | (if w { WRITE } else { 0 });
            if events != 0 {
                f(fd as u64, events);
            }
        }
    }
}

/// fds a wait refuses with `FdOutOfRange`: one at `FD_SETSIZE`.
#[cfg(test)]
pub(super) fn more_than_a_set_holds() -> Vec<u64> {
    vec![libc::FD_SETSIZE as u64]
}
