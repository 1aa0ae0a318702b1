//! `select()`: the timeout read as the stdlib reads it, then a look (`select(0)`, under the
//! lock) or a wait without the lock and the GIL, retried after signals by the core.

use std::sync::atomic::Ordering;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;

use super::base::SelectorBase;
use super::results::{Ready, ReadyList};
use super::select_sets::Ordered;
use crate::backend::{Kind, Wait};
use crate::python::errors::{backend_error, os_error};
use crate::python::timeout_arg::{parse_timeout, ParsedTimeout};
use crate::selector::{wait_with_retries, WaitFailed};
use crate::sys::is_interrupted;

impl SelectorBase {
    /// `select(timeout)`.
    pub(super) fn select_ready<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let this = slf.get();
        if let Some(poller) = this.poller.get() {
            return this.select_through_poller(py, poller, timeout);
        }
        if this.kind == Kind::Select {
            if let Some(list) = Self::select_through(slf, timeout)? {
                return Ok(list);
            }
        }
        let parsed = match timeout {
            // `select(0)`, the hot call: CPython's one cached int 0 needs no parsing.
            Some(t) if is_cached_zero(t) => ParsedTimeout::Wait(Some(Duration::ZERO)),
            Some(t) if this.kind.is_kqueue() => this.kqueue_timeout(t)?,
            _ => parse_timeout(this.kind, timeout)?,
        };
        let timeout = match parsed {
            ParsedTimeout::Wait(t) => t,
            // epoll.poll() and kqueue.control() report a closed handle before looking at
            // the timeout.
            ParsedTimeout::Refused(err) if this.kind.has_handle() => {
                let handle = this.lock()?.core.fileno();
                if let Some(Err(closed)) = handle {
                    return Err(backend_error(closed));
                }
                return Err(err);
            }
            ParsedTimeout::Refused(err) => return Err(err),
        };
        if timeout == Some(Duration::ZERO) {
            return Self::select_now(slf);
        }
        // The error becomes a Python exception only once the lock is released.
        let begun = this.lock()?.core.begin_wait();
        let mut wait = begun.map_err(|err| this.wait_error(py, err))?;
        if this.kind == Kind::Select {
            // select.select() converted every fd it was given; a bool one warns (3.13+).
            // (`wait_error`'s own select.select() warned where one could not be.)
            if let Err(err) = this.warn_for_bools_in_sets(py) {
                this.lock()?.core.end_wait(wait);
                return Err(err);
            }
        }

        let mut retry = false;
        let call = |wait: &mut crate::backend::AnyWait, left| {
            if std::mem::replace(&mut retry, true) {
                // The stdlib retries on its own handle, which the signal handler that just ran
                // may have closed (a SIGTERM handler calling close()): the retry then fails
                // with EBADF at once. Our wait holds the fd open, so ask.
                let handle = this.lock().map_err(WaitFailed::Stopped)?.core.fileno();
                if let Some(Err(_)) = handle {
                    let ebadf = std::io::Error::from_raw_os_error(libc::EBADF);
                    return Err(WaitFailed::Os(ebadf));
                }
            }
            // Other threads run while this one waits (a zero timeout went to select_now).
            py.detach(|| wait.wait(left)).map_err(WaitFailed::Os)
        };
        let waited = wait_with_retries(&mut wait, timeout, this.kind.is_poll_like(), call, || {
            py.check_signals()
        });
        let outcome = waited.map_err(|failed| match failed {
            WaitFailed::Os(err) => os_error(&err),
            WaitFailed::Stopped(err) => err,
        });

        let mut ready = ReadyList::new();
        // SelectSelector's order of reporting may depend on every ready fd, keyed or not.
        let mut all = Vec::new();
        let select = this.kind == Kind::Select;
        let every = select && this.needs_every_ready_fd();
        {
            let mut state = this.lock()?;
            if let Ok(true) = outcome {
                let keys = state.core.keys();
                wait.for_each_ready(&mut |fd, events| {
                    if every {
                        all.push((fd, events));
                    }
                    if let Some(entry) = keys.get(fd) {
                        ready.push(entry.ready(py, fd, events));
                    }
                });
            }
            state.core.end_wait(wait);
        }
        outcome?;
        if every || (select && ready.len() >= 2) {
            return Self::in_set_order(slf, every.then_some(all), ready);
        }
        this.ready_list(py, &mut ready)
    }

    /// `select(0)`: a wait that cannot block, so it is made under the lock, with the GIL kept
    /// (releasing it would cost more than the system call).
    pub(super) fn select_now<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let this = slf.get();
        let select = this.kind == Kind::Select;
        if select && this.needs_every_ready_fd() {
            return Self::select_now_in_set_order(slf);
        }
        let mut ready = ReadyList::new();
        let result = this.lock()?.core.poll_now(&mut |fd, entry, events| {
            ready.push(entry.ready(py, fd, events));
        });
        match result {
            // One ready fd needs no ordering.
            Ok(()) if select && ready.len() >= 2 => Self::in_set_order(slf, None, ready),
            Ok(()) => this.ready_list(py, &mut ready),
            Err(err) => this.select_now_failed(py, err),
        }
    }

    /// SelectSelector's `select(0)`: every ready fd counts for the order of the result.
    #[inline(never)]
    fn select_now_in_set_order<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let this = slf.get();
        let mut ready = ReadyList::new();
        let mut all = Vec::new();
        let begun = this.lock()?.core.begin_wait();
        let mut wait = begun.map_err(|err| this.wait_error(py, err))?;
        // select.select() converted every fd it was given; a bool one warns (3.13+).
        if let Err(err) = this.warn_for_bools_in_sets(py) {
            this.lock()?.core.end_wait(wait);
            return Err(err);
        }
        let waited = {
            let mut state = this.lock()?;
            let waited = wait.wait(Some(Duration::ZERO));
            if waited.is_ok() {
                let keys = state.core.keys();
                wait.for_each_ready(&mut |fd, events| {
                    all.push((fd, events));
                    if let Some(entry) = keys.get(fd) {
                        ready.push(entry.ready(py, fd, events));
                    }
                });
            }
            state.core.end_wait(wait);
            waited
        };
        match waited {
            Ok(()) => Self::in_set_order(slf, Some(all), ready),
            Err(err) => this.select_now_failed(py, crate::backend::Error::Os(err)),
        }
    }

    fn select_now_failed<'py>(
        &self,
        py: Python<'py>,
        err: crate::backend::Error,
    ) -> PyResult<Bound<'py, PyList>> {
        match err {
            // The stdlib retries with what is left of a zero timeout: nothing.
            crate::backend::Error::Os(err) if is_interrupted(&err) => {
                py.check_signals()?;
                Ok(PyList::empty(py))
            }
            err => Err(self.wait_error(py, err)),
        }
    }

    /// SelectSelector's result list, in the order its sets give (`select_sets.rs`). `all`:
    /// every ready fd, keyed or not, when that may matter (`needs_every_ready_fd`); else those
    /// of `ready`, where one needs no ordering.
    #[inline(never)]
    fn in_set_order<'py>(
        slf: &Bound<'py, Self>,
        all: Option<Vec<(u64, u8)>>,
        mut ready: ReadyList,
    ) -> PyResult<Bound<'py, PyList>> {
        let all = match all {
            Some(all) => all,
            None if ready.len() < 2 => return slf.get().ready_list(slf.py(), &mut ready),
            None => ready.iter().filter_map(Ready::fd_events).collect(),
        };
        match Self::in_stdlib_order(slf, all, ready)? {
            Ordered::Native(mut ready) => slf.get().ready_list(slf.py(), &mut ready),
            Ordered::Done(list) => Ok(list),
        }
    }

    /// KqueueSelector's timeout: `max(timeout, 0)` in Python, then kqueue.control(), which
    /// reports a closed kqueue before it converts the timeout (an `__index__` or `__float__`
    /// of the user's is not called then).
    fn kqueue_timeout(&self, t: &Bound<'_, PyAny>) -> PyResult<ParsedTimeout> {
        let exact = t.is_exact_instance_of::<pyo3::types::PyFloat>()
            || t.is_exact_instance_of::<pyo3::types::PyInt>();
        if !exact && self.closed.load(Ordering::Relaxed) {
            0i32.into_pyobject(t.py())?.gt(t)?;
            if let Some(Err(closed)) = self.lock()?.core.fileno() {
                return Err(backend_error(closed));
            }
        }
        parse_timeout(self.kind, Some(t))
    }

    /// The error of a wait that could not start. A SelectSelector holding an fd `select()`
    /// cannot take gets `select.select`'s own: it converts the readers, then the writers, in
    /// its sets' order, and raises for the first bad one (OverflowError or ValueError), where
    /// the backend checks in fd order.
    pub(super) fn wait_error(&self, py: Python<'_>, err: crate::backend::Error) -> PyErr {
        use crate::backend::Error::{FdOutOfRange, FdTooLarge};
        if self.kind != Kind::Select || !matches!(err, FdOutOfRange | FdTooLarge) {
            return backend_error(err);
        }
        match self.select_module_error(py) {
            Some(stdlib_err) => stdlib_err,
            None => backend_error(err),
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
