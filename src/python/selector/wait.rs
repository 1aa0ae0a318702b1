//! `select()`: the timeout read as the stdlib reads it, then a look (`select(0)`, under the
//! lock) or a wait without the lock and the GIL, retried after signals by the core.

use std::sync::atomic::Ordering;
use std::time::Duration;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyList, PySet};

use super::base::SelectorBase;
use super::results::ReadyList;
use crate::backend::{Kind, Wait};
use crate::python::errors::{backend_error, os_error};
use crate::python::fd::warn_if_bool_fd;
use crate::python::timeout_arg::{parse_timeout, ParsedTimeout};
use crate::selector::{wait_with_retries, WaitFailed};
use crate::sys::is_interrupted;

impl SelectorBase {
    /// `select(timeout)`.
    pub(super) fn select_ready<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let parsed = match timeout {
            // `select(0)`, the hot call: CPython's one cached int 0 needs no parsing.
            Some(t) if is_cached_zero(t) => ParsedTimeout::Wait(Some(Duration::ZERO)),
            _ => parse_timeout(self.kind, timeout)?,
        };
        let timeout = match parsed {
            ParsedTimeout::Wait(t) => t,
            // epoll.poll() and kqueue.control() report a closed handle before looking at
            // the timeout.
            ParsedTimeout::Refused(err) if self.kind.has_handle() => {
                let handle = self.lock()?.core.fileno();
                if let Some(Err(closed)) = handle {
                    return Err(backend_error(closed));
                }
                return Err(err);
            }
            ParsedTimeout::Refused(err) => return Err(err),
        };
        if let Some(replaced) = self.os_select_replaced(py, timeout) {
            return replaced;
        }
        if self.kind == Kind::Select && self.bool_fds.load(Ordering::Relaxed) > 0 {
            // select.select() converts every fd it is given; a bool one warns (3.13+).
            warn_if_bool_fd(&PyBool::new(py, true))?;
        }
        if timeout == Some(Duration::ZERO) {
            return self.select_now(py);
        }
        // The error becomes a Python exception only once the lock is released.
        let begun = self.lock()?.core.begin_wait();
        let mut wait = begun.map_err(|err| self.wait_error(py, err))?;

        let mut retry = false;
        let call = |wait: &mut crate::backend::AnyWait, left| {
            if std::mem::replace(&mut retry, true) {
                // The stdlib retries on its own handle, which the signal handler that just ran
                // may have closed (a SIGTERM handler calling close()): the retry then fails
                // with EBADF at once. Our wait holds the fd open, so ask.
                let handle = self.lock().map_err(WaitFailed::Stopped)?.core.fileno();
                if let Some(Err(_)) = handle {
                    let ebadf = std::io::Error::from_raw_os_error(libc::EBADF);
                    return Err(WaitFailed::Os(ebadf));
                }
            }
            // Other threads run while this one waits (a zero timeout went to select_now).
            py.detach(|| wait.wait(left)).map_err(WaitFailed::Os)
        };
        let waited = wait_with_retries(&mut wait, timeout, self.kind.is_poll_like(), call, || {
            py.check_signals()
        });
        let outcome = waited.map_err(|failed| match failed {
            WaitFailed::Os(err) => os_error(&err),
            WaitFailed::Stopped(err) => err,
        });

        let mut ready = ReadyList::new();
        {
            let mut state = self.lock()?;
            if let Ok(true) = outcome {
                let keys = state.core.keys();
                wait.for_each_ready(&mut |fd, events| {
                    if let Some(entry) = keys.get(fd) {
                        ready.push(entry.ready(py, fd, events));
                    }
                });
            }
            state.core.end_wait(wait);
        }
        outcome?;
        self.ready_list(py, &mut ready)
    }

    /// `select(0)`: a wait that cannot block, so it is made under the lock, with the GIL kept
    /// (releasing it would cost more than the system call).
    pub(super) fn select_now<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut ready = ReadyList::new();
        let result = self.lock()?.core.poll_now(&mut |fd, entry, events| {
            ready.push(entry.ready(py, fd, events));
        });
        match result {
            Ok(()) => self.ready_list(py, &mut ready),
            // The stdlib retries with what is left of a zero timeout: nothing.
            Err(crate::backend::Error::Os(err)) if is_interrupted(&err) => {
                drop(ready);
                py.check_signals()?;
                Ok(PyList::empty(py))
            }
            Err(err) => Err(self.wait_error(py, err)),
        }
    }

    /// The error of a wait that could not start. A SelectSelector holding an fd `select()`
    /// cannot take gets `select.select`'s own: it converts the readers, then the writers, in
    /// its sets' order, and raises for the first bad one (OverflowError or ValueError), where
    /// the backend checks in fd order. Its sets are asked for with the fds in registration
    /// order, which is the stdlib's own sets' order while nothing was unregistered.
    pub(super) fn wait_error(&self, py: Python<'_>, err: crate::backend::Error) -> PyErr {
        use crate::backend::Error::{FdOutOfRange, FdTooLarge};
        if self.kind != Kind::Select || !matches!(err, FdOutOfRange | FdTooLarge) {
            return backend_error(err);
        }
        let ask_stdlib = || -> PyResult<()> {
            let mut watched = Vec::new();
            {
                let state = self.lock()?;
                for (fd, entry) in state.core.keys().iter() {
                    let interest = state.core.interest(fd).unwrap_or(0);
                    watched.push((entry.field(py, 1).unbind(), interest));
                }
            }
            let (readers, writers) = (PySet::empty(py)?, PySet::empty(py)?);
            for (fd_obj, interest) in &watched {
                if interest & crate::backend::READ != 0 {
                    readers.add(fd_obj)?;
                }
                if interest & crate::backend::WRITE != 0 {
                    writers.add(fd_obj)?;
                }
            }
            let select = py.import(intern!(py, "select"))?;
            let none = PyList::empty(py);
            select.call_method1(intern!(py, "select"), (readers, writers, none, 0))?;
            Ok(())
        };
        match ask_stdlib() {
            Err(stdlib_err) => stdlib_err,
            Ok(()) => backend_error(err),
        }
    }
}

/// Whether `t` is the int 0 that CPython hands out for every small zero (from its small-int
/// cache, which the literal `0` is too): `select(0)`'s argument, read without parsing. Any
/// other zero takes the general parse, to the same result.
#[inline]
fn is_cached_zero(t: &Bound<'_, PyAny>) -> bool {
    static ZERO: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = t.py();
    let zero = ZERO.get_or_init(py, || match 0i32.into_pyobject(py) {
        Ok(zero) => zero.into_any().unbind(),
        Err(never) => match never {},
    });
    t.is(zero)
}
