//! A selector whose class sets `_selector_cls` to something other than the stdlib's own
//! `select.poll`/`select.epoll` (CPython's tests patch it with a mock) drives an instance of
//! that class, as `_PollLikeSelector` does, instead of the Rust backend.

use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;

use super::convert::Kind;
use crate::backend::{READ, WRITE};
use crate::timeout::{to_millis_ceil, Timeout};

/// `select.POLLIN`/`EPOLLIN` and `POLLOUT`/`EPOLLOUT`: the same numbers for both classes.
#[cfg(unix)]
const IN: i64 = libc::POLLIN as i64;
#[cfg(unix)]
const OUT: i64 = libc::POLLOUT as i64;
/// Windows has no poll(): the only poller there is SelectSelector's `_SelectCall`
/// (`python/rselectors/__init__.py`), which takes POSIX's numbers.
#[cfg(windows)]
const IN: i64 = 1;
#[cfg(windows)]
const OUT: i64 = 4;

pub struct CustomPoller(Py<PyAny>);

fn poller_events(interest: u8) -> i64 {
    let mut bits = 0;
    if interest & READ != 0 {
        bits |= IN;
    }
    if interest & WRITE != 0 {
        bits |= OUT;
    }
    bits
}

impl CustomPoller {
    pub fn new(poller: Py<PyAny>) -> Self {
        CustomPoller(poller)
    }

    pub fn register(&self, fd: &Bound<'_, PyAny>, interest: u8) -> PyResult<()> {
        let py = fd.py();
        let args = (fd, poller_events(interest));
        self.0.call_method1(py, intern!(py, "register"), args)?;
        Ok(())
    }

    pub fn modify(&self, fd: &Bound<'_, PyAny>, interest: u8) -> PyResult<()> {
        let py = fd.py();
        let args = (fd, poller_events(interest));
        self.0.call_method1(py, intern!(py, "modify"), args)?;
        Ok(())
    }

    /// Errors are swallowed where the stdlib swallows them: OSError only.
    pub fn unregister(&self, fd: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = fd.py();
        match self.0.call_method1(py, intern!(py, "unregister"), (fd,)) {
            Err(err) if !err.is_instance_of::<PyOSError>(py) => Err(err),
            _ => Ok(()),
        }
    }

    /// One `poll()` with the arguments `PollSelector`/`EpollSelector` would pass, the result
    /// mapped to `(fd, events)` as they map it.
    pub fn poll(
        &self,
        py: Python<'_>,
        kind: Kind,
        timeout: Timeout,
        max_events: usize,
    ) -> PyResult<Vec<(u64, u8)>> {
        let poll = intern!(py, "poll");
        let result = match (kind, timeout) {
            (Kind::Epoll, None) => self.0.call_method1(py, poll, (-1, max_events))?,
            // The stdlib's whole milliseconds: a poller of another library takes no finer.
            (Kind::Epoll, Some(t)) => {
                let ms = to_millis_ceil(Some(t));
                self.0
                    .call_method1(py, poll, (f64::from(ms) * 1e-3, max_events))?
            }
            (_, None) => self.0.call_method1(py, poll, (py.None(),))?,
            (_, Some(t)) => self.0.call_method1(py, poll, (to_millis_ceil(Some(t)),))?,
        };
        let mut ready = Vec::new();
        for item in result.bind(py).try_iter()? {
            let (fd, event): (u64, i64) = item?.extract()?;
            let mut events = 0;
            if event & !IN != 0 {
                events |= WRITE;
            }
            if event & !OUT != 0 {
                events |= READ;
            }
            ready.push((fd, events));
        }
        Ok(ready)
    }

    pub fn call0(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        self.0.call_method0(py, name)
    }

    pub fn object(&self) -> &Py<PyAny> {
        &self.0
    }
}
