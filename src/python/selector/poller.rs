//! The one seam between a selector and its OS side: the core backend, or, when the class's
//! `_selector_cls` was replaced (CPython's tests patch it with a mock; gevent patches in a
//! green one), an instance of that class, driven as `_PollLikeSelector` drives it. Every OS
//! step of the selector methods goes through here. (SelectSelector's `_select`, replaced,
//! is called with its sets: `select_sets.rs`.)

use std::sync::atomic::Ordering;

use pyo3::exceptions::{PyInterruptedError, PyOSError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::base::{SelectorBase, State};
use super::results::{Entry, ReadyList};
use crate::backend::{Kind, READ, WRITE};
use crate::lock::OwnedGuard;
use crate::python::errors::backend_error;
use crate::python::fd::warn_if_bool_fd;
use crate::python::timeout_arg::math_ceil;

/// `select.POLLIN`/`EPOLLIN` and `POLLOUT`/`EPOLLOUT`: the same numbers for both classes.
#[cfg(unix)]
const IN: i64 = libc::POLLIN as i64;
#[cfg(unix)]
const OUT: i64 = libc::POLLOUT as i64;
/// Windows has no poll() (nor PollSelector or EpollSelector): no poller is ever made there.
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

    /// One `poll(timeout)` (`poll(timeout, max_events)` for epoll), the result mapped to
    /// `(fd, events)` as `PollSelector`/`EpollSelector` map it.
    pub fn poll(
        &self,
        py: Python<'_>,
        kind: Kind,
        timeout: &Bound<'_, PyAny>,
        max_events: usize,
    ) -> PyResult<Vec<(u64, u8)>> {
        let poll = intern!(py, "poll");
        let result = match kind.is_epoll() {
            true => self.0.call_method1(py, poll, (timeout, max_events))?,
            false => self.0.call_method1(py, poll, (timeout,))?,
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
    /// 3.13's "bool is used as a file descriptor" where the select module would warn: at our
    /// own OS step (a replaced poller, if it is the select module's, warns itself).
    pub(super) fn warn_if_bool_fd_natively(&self, fd_obj: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.native() {
            true => warn_if_bool_fd(fd_obj),
            false => Ok(()),
        }
    }

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
            // SelectSelector's sets are emptied afterwards, as the stdlib's (`select_sets.rs`).
            None if self.kind == Kind::Select => state.core.undo(fd),
            None => state.core.unregister(fd),
            Some(_) => state.core.undo(fd),
        }
    }

    /// What the OS side of the stdlib's `unregister` raises for `fd` (it lets through all
    /// but OSError), once the key is gone: the OverflowError of an fd beyond a C int (a key
    /// left behind by a failed undo), poll()'s KeyError for an fd it did not hold
    /// (`poll_lacked`: a callback unregistered it between the key and the OS registration),
    /// a closed epoll's or kqueue's ValueError (a key stored after close() by a callback).
    #[cold]
    pub(super) fn os_refused(&self, fd: u64, poll_lacked: bool) -> Option<PyErr> {
        if self.poller.get().is_some() || self.kind == Kind::Select {
            return None;
        }
        // (select.kevent takes any fd below 2**64.)
        if fd > libc::c_int::MAX as u64 && !self.kind.is_kqueue() {
            return Some(backend_error(crate::backend::Error::FdTooLarge));
        }
        if poll_lacked {
            return Some(pyo3::exceptions::PyKeyError::new_err(fd));
        }
        if self.kind.has_handle() && self.closed.load(Ordering::Relaxed) {
            let what = if self.kind.is_epoll() {
                "epoll"
            } else {
                "kqueue"
            };
            return Some(backend_error(crate::backend::Error::Closed(what)));
        }
        None
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

    /// `select()` through a replaced poller, which gets the timeout as the stdlib hands it:
    /// its Python-level arithmetic, no rounding or checks of ours.
    pub(super) fn select_through_poller<'py>(
        &self,
        py: Python<'py>,
        poller: &CustomPoller,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let timeout = poller_timeout(py, self.kind, timeout)?;
        let max_events = self.len()?.max(1);
        let polled = match poller.poll(py, self.kind, &timeout, max_events) {
            // `except InterruptedError: return ready`.
            Err(err) if err.is_instance_of::<PyInterruptedError>(py) => {
                return Ok(PyList::empty(py))
            }
            other => other?,
        };
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

/// The timeout `_PollLikeSelector.select` (`EpollSelector.select`) hands its poller: None
/// (-1), 0 for `timeout <= 0`, else `math.ceil(timeout * 1e3)` (times `1e-3`).
fn poller_timeout<'py>(
    py: Python<'py>,
    kind: Kind,
    timeout: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let Some(t) = timeout else {
        return Ok(match kind.is_epoll() {
            true => (-1i32).into_pyobject(py)?.into_any(),
            false => py.None().into_bound(py),
        });
    };
    if t.le(0)? {
        return Ok(0i32.into_pyobject(py)?.into_any());
    }
    let ms = math_ceil(py)?.call1((t.mul(1e3)?,))?;
    match kind.is_epoll() {
        true => ms.mul(1e-3),
        false => Ok(ms),
    }
}
