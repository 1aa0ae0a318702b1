//! Winsock's `select()`, as CPython's `select.select` makes it on Windows: each set an array
//! of up to FD_SETSIZE (512, CPython's) sockets rather than a bitmap, so a socket's number
//! has no bound but a C `int`'s; an empty set passed as NULL; the write set passed again as
//! the exceptional set, where a failed non-blocking `connect()` shows (`selectors.py` on
//! win32: `select.select(r, w, w, timeout)`, reported as writable). Errors are Winsock's
//! (`WSAGetLastError()`): WSAENOTSOCK for a handle that is no socket, WSAEINVAL when all
//! three sets are empty, as the stdlib raises them.

use std::collections::BTreeSet;
use std::io;
use std::time::Duration;

use windows_sys::Win32::Networking::WinSock::{
    select, WSAGetLastError, FD_SET, SOCKET, SOCKET_ERROR, TIMEVAL,
};

use crate::backend::{Error, Result, Wait, READ, WRITE};
use crate::sys::to_raw_fd;
use crate::timeout::{timeval_parts_ceil, Timeout};

/// CPython's `FD_SETSIZE` on Windows: `Modules/selectmodule.c` defines it before including
/// winsock2.h, whose own is 64.
pub const FD_SETSIZE: usize = 512;

/// Winsock's `fd_set` with room for FD_SETSIZE sockets: a count, then the sockets. Winsock
/// reads `fd_count` of them and rewrites the array with the ready ones, in place, whatever
/// size the caller was compiled with (windows-sys's `FD_SET` has the header's 64).
#[repr(C)]
#[derive(Clone, Copy)]
struct FdSet {
    fd_count: u32,
    fd_array: [SOCKET; FD_SETSIZE],
}

impl FdSet {
    const EMPTY: FdSet = FdSet {
        fd_count: 0,
        fd_array: [0; FD_SETSIZE],
    };

    fn len(&self) -> usize {
        (self.fd_count as usize).min(FD_SETSIZE)
    }

    fn sockets(&self) -> &[SOCKET] {
        &self.fd_array[..self.len()]
    }

    fn copy_from(&mut self, other: &FdSet) {
        let n = other.len();
        self.fd_array[..n].copy_from_slice(&other.fd_array[..n]);
        self.fd_count = n as u32;
    }

    /// The pointer `select()` takes: NULL for an empty set, as CPython passes it.
    fn as_arg(&mut self) -> *mut FD_SET {
        if self.fd_count == 0 {
            std::ptr::null_mut()
        } else {
            (self as *mut FdSet).cast()
        }
    }
}

/// Copies `fds` into a set, refusing, as CPython's `seq2set` does in this order, a number
/// that is no C `int` (it reads each with `PyObject_AsFileDescriptor`) and a set of more
/// than FD_SETSIZE ("too many file descriptors in select()").
fn fill_set(fds: &BTreeSet<u64>, set: &mut FdSet) -> Result<()> {
    set.fd_count = 0;
    for &fd in fds {
        let fd = to_raw_fd(fd)?;
        let n = set.len();
        if n >= FD_SETSIZE {
            return Err(Error::FdOutOfRange);
        }
        // Registration refused negative fds: a C int >= 0 is a valid SOCKET value.
        set.fd_array[n] = fd as SOCKET;
        set.fd_count += 1;
    }
    Ok(())
}

/// A timeout as Winsock's `timeval` (32-bit `long` fields), rounded up to microseconds;
/// beyond 2**31 - 1 seconds (68 years) it waits that long.
fn to_timeval(d: Duration) -> TIMEVAL {
    let (secs, us) = timeval_parts_ceil(d);
    TIMEVAL {
        tv_sec: i32::try_from(secs).unwrap_or(i32::MAX),
        tv_usec: us as i32,
    }
}

/// The OS's sets of a wait: what to watch, and what the last try found.
pub struct FdSets {
    /// What to watch: readers, writers. `select()` overwrites its arguments, so each try
    /// starts from a copy.
    wanted: [FdSet; 2],
    /// What the last try found: readable, writable, exceptional (failed connects).
    ready: [FdSet; 3],
}

impl FdSets {
    pub(super) fn empty() -> Self {
        FdSets {
            wanted: [FdSet::EMPTY; 2],
            ready: [FdSet::EMPTY; 3],
        }
    }

    /// Watches `readers` and `writers` from now on.
    pub(super) fn fill(&mut self, readers: &BTreeSet<u64>, writers: &BTreeSet<u64>) -> Result<()> {
        fill_set(readers, &mut self.wanted[0])?;
        fill_set(writers, &mut self.wanted[1])
    }
}

impl Wait for FdSets {
    fn wait(&mut self, timeout: Timeout) -> io::Result<()> {
        let FdSets { wanted, ready } = self;
        let [read, write, except] = ready;
        read.copy_from(&wanted[0]);
        write.copy_from(&wanted[1]);
        except.copy_from(&wanted[1]);
        let tv = timeout.map(to_timeval);
        let tv_ptr = tv
            .as_ref()
            .map_or(std::ptr::null(), |tv| tv as *const TIMEVAL);
        // SAFETY: each set pointer is NULL or points to a set with room for FD_SETSIZE
        // sockets whose first `fd_count` (at most FD_SETSIZE) are set; `tv_ptr` is NULL or
        // points to a live TIMEVAL. The first argument is ignored by Winsock.
        let n = unsafe { select(0, read.as_arg(), write.as_arg(), except.as_arg(), tv_ptr) };
        if n == SOCKET_ERROR {
            // SAFETY: no preconditions; read right after the failing call, on its thread.
            let code = unsafe { WSAGetLastError() };
            for set in ready.iter_mut() {
                set.fd_count = 0;
            }
            return Err(io::Error::from_raw_os_error(code));
        }
        // Winsock keeps the sets' order (ascending); sorted anyway, for the merge below.
        for set in ready.iter_mut() {
            let n = set.len();
            set.fd_array[..n].sort_unstable();
        }
        Ok(())
    }

    /// Each ready socket once, in ascending order: readable if in the read set, writable if
    /// in the write or the exceptional set (`r, w + x` in `selectors.py`).
    fn for_each_ready(&self, mut f: impl FnMut(u64, u8)) {
        let [read, write, except] = &self.ready;
        let (mut r, mut w, mut x) = (read.sockets(), write.sockets(), except.sockets());
        while let Some(&next) = [r.first(), w.first(), x.first()]
            .into_iter()
            .flatten()
            .min()
        {
            let mut events = 0;
            for (set, bit) in [(&mut r, READ), (&mut w, WRITE), (&mut x, WRITE)] {
                if set.first() == Some(&next) {
                    events |= bit;
                    *set = &set[1..];
                }
            }
            f(next as u64, events);
        }
    }
}

/// Sockets a wait refuses with `FdOutOfRange`: one more than FD_SETSIZE.
#[cfg(test)]
pub(super) fn more_than_a_set_holds() -> Vec<u64> {
    (1..=FD_SETSIZE as u64 + 1).map(|n| 4 * n).collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::ready;
    use super::super::Select;
    use crate::backend::test_support::{raw, socket_pair};
    use crate::backend::{Backend, Error, READ};

    #[test]
    fn a_handle_that_is_no_socket_is_wsaenotsock() {
        let (_a, b) = socket_pair();
        let mut s = Select::new();
        s.add(raw(&b), READ).unwrap();
        // Handles are multiples of 4: 3 is none.
        s.add(3, READ).unwrap();
        match ready(&mut s) {
            Err(Error::Os(err)) => assert_eq!(err.raw_os_error(), Some(10038)), // WSAENOTSOCK
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nothing_to_watch_is_wsaeinval() {
        match ready(&mut Select::new()) {
            Err(Error::Os(err)) => assert_eq!(err.raw_os_error(), Some(10022)), // WSAEINVAL
            other => panic!("{other:?}"),
        }
    }
}
