//! The one seam between a selector and its OS side: the core backend, or, when the class's
//! `_selector_cls` (or SelectSelector's `_select`) was replaced (CPython's tests patch it with
//! a mock; gevent and eventlet patch in green ones), an instance of that class, driven as
//! `_PollLikeSelector` drives it. Every OS step of the selector methods goes through here.

use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::base::{SelectorBase, State};
use super::results::{Entry, ReadyList};
use crate::backend::{Kind, READ, WRITE};
use crate::lock::OwnedGuard;
use crate::python::errors::backend_error;
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

/// Which OS step `os_watch` makes.
#[derive(Clone, Copy)]
pub(super) enum OsStep {
    /// The first registration of an fd.
    Add,
    /// A change of what an fd registered is watched for.
    Modify,
}

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
            (k, None) if k.is_epoll() => self.0.call_method1(py, poll, (-1, max_events))?,
            // The stdlib's whole milliseconds: a poller of another library takes no finer.
            (k, Some(t)) if k.is_epoll() => {
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

impl SelectorBase {
    /// Whether the OS side is the core backend: the fast paths that make their OS call under
    /// the lock, beside the key, apply.
    pub(super) fn native(&self) -> bool {
        self.poller.get().is_none()
    }

    /// Register's OS step for a key already in (`self._selector.register(fd, events)`), or
    /// modify's (`self._selector.modify(fd, events)`).
    pub(super) fn os_watch(
        &self,
        fd_obj: &Bound<'_, PyAny>,
        fd: u64,
        interest: u8,
        step: OsStep,
    ) -> PyResult<()> {
        match (self.poller.get(), step) {
            (None, step) => {
                let mut state = self.lock()?;
                let result = match step {
                    OsStep::Add => state.core.watch(fd, interest),
                    OsStep::Modify => state.core.modify_interest(fd, interest),
                };
                drop(state);
                result.map_err(backend_error)
            }
            (Some(poller), OsStep::Add) => poller.register(fd_obj, interest),
            (Some(poller), OsStep::Modify) => poller.modify(fd_obj, interest),
        }
    }

    /// Unregister's first step, under the lock: the key goes, and with the core backend its
    /// OS registration too. A replaced poller is told in `os_unwatch`, after the steps the
    /// stdlib takes before it.
    pub(super) fn os_pop(&self, state: &mut OwnedGuard<'_, State>, fd: u64) -> Option<Entry> {
        match self.poller.get() {
            None => state.core.unregister(fd),
            Some(_) => state.core.undo(fd),
        }
    }

    /// Unregister's last step with a replaced poller: `self._selector.unregister(key.fd)`.
    pub(super) fn os_unwatch(&self, fd_obj: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.poller.get() {
            None => Ok(()),
            Some(poller) => poller.unregister(fd_obj),
        }
    }

    /// `fileno()` of the selectors with an OS handle: the epoll or kqueue fd.
    #[cfg(any(epoll, kqueue))]
    pub(super) fn os_fileno(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(poller) = self.poller.get() {
            return poller.call0(py, "fileno");
        }
        let fd = self.lock()?.core.fileno();
        match fd {
            Some(Ok(fd)) => Ok(fd.into_pyobject(py)?.into_any().unbind()),
            Some(Err(err)) => Err(backend_error(err)),
            None => Err(pyo3::exceptions::PyAttributeError::new_err("fileno")),
        }
    }

    /// Close's first step: an epoll poller of a replaced class is closed, as the stdlib's
    /// `EpollSelector.close` closes `self._selector`.
    pub(super) fn os_close(&self, py: Python<'_>) -> PyResult<()> {
        if let (Some(poller), true) = (self.poller.get(), self.kind.is_epoll()) {
            poller.call0(py, "close")?;
        }
        Ok(())
    }

    /// `select()` through a replaced poller: None with the core backend.
    pub(super) fn os_select_replaced<'py>(
        &self,
        py: Python<'py>,
        timeout: Timeout,
    ) -> Option<PyResult<Bound<'py, PyList>>> {
        let poller = self.poller.get()?;
        let select = || {
            let max_events = self.len()?.max(1);
            let polled = poller.poll(py, self.kind, timeout, max_events)?;
            let mut ready = ReadyList::with_capacity(polled.len());
            {
                let state = self.lock()?;
                for (fd, events) in polled {
                    if let Some(entry) = state.core.keys().get(fd) {
                        ready.push(entry.ready(py, fd, events));
                    }
                }
            }
            self.ready_list(py, &mut ready)
        };
        Some(select())
    }

    /// Drives `poller` (an instance of a replaced `_selector_cls`) instead of the OS.
    pub(super) fn use_poller(&self, poller: Py<PyAny>) {
        let _ = self.poller.set(CustomPoller::new(poller));
    }

    /// The poller, for the garbage collector.
    pub(super) fn poller_object(&self) -> Option<&Py<PyAny>> {
        self.poller.get().map(CustomPoller::object)
    }
}
