//! `select()`: the timeout read as the stdlib reads it, then a look (`select(0)`, under the
//! lock) or a wait without the lock and the GIL, retried after signals by the core.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;

use super::base::SelectorBase;
use super::entry::{Entry, Ready, ReadyList};
use super::select_steps::Ordered;
use crate::backend::{AnyWait, Wait};
use crate::python::errors::{backend_error, os_error};
use crate::selector::{wait_with_retries, Look, WaitFailed};
use crate::timeout::Timing;

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
        // SelectSelector, its `_select` replaced.
        if let Some(list) = Self::select_through(slf, timeout)? {
            return Ok(list);
        }
        // `select(0)`, the hot call: CPython's one cached int 0 needs no parsing.
        if timeout.is_some_and(is_cached_zero) {
            return Self::select_now(slf);
        }
        Self::select_timeout(slf, timeout)
    }

    /// `select(timeout)` of any other timeout: read as the class reads it, then a look or a
    /// wait.
    #[inline(never)]
    fn select_timeout<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let this = slf.get();
        let timing = Timing::now();
        let closed = || this.check_handle_open();
        let timeout = this.class.timeouts.parse(timeout, timing, &closed)?;
        if timeout == Some(Duration::ZERO) {
            return Self::select_now(slf);
        }
        Self::wait_for_ready(slf, timeout, timing)
    }

    /// The wait of `select(timeout)`, and what it found.
    fn wait_for_ready<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<Duration>,
        timing: Timing,
    ) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let this = slf.get();
        // The error becomes a Python exception only once the lock is released.
        let begun = this.lock()?.core.begin_wait();
        let mut wait = begun.map_err(|err| this.wait_error(py, err))?;
        // select.select() converted every fd it was given; a bool one warns (3.13+).
        // (`wait_error`'s own select.select() warned where one could not be.)
        if let Err(err) = this.warn_for_bools_in_sets(py) {
            this.lock()?
                .core
                .end_wait(wait, false, |_, _| {}, |_, _: &Entry, _| {});
            return Err(err);
        }

        // Other threads run while this one waits (a zero timeout went to select_now).
        let call = |wait: &mut AnyWait, left| py.detach(|| wait.wait(left));
        let in_millis = this.class.timeouts.retries_in_millis();
        let waited = wait_with_retries(&mut wait, timeout, timing, in_millis, call, || {
            py.check_signals()
        });
        let outcome = waited.map_err(|failed| match failed {
            WaitFailed::Os(err) => os_error(&err),
            WaitFailed::Stopped(err) => err,
        });

        let mut ready = ReadyList::new();
        // SelectSelector's order of reporting may depend on every ready fd, keyed or not.
        let mut all = Vec::new();
        let select = this.sets.is_some();
        let every = select && this.needs_every_ready_fd();
        this.lock()?.core.end_wait(
            wait,
            matches!(outcome, Ok(true)),
            |fd, events| {
                if every {
                    all.push((fd, events));
                }
            },
            |fd, entry: &Entry, events| ready.push(entry.ready(py, fd, events)),
        );
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
        let select = this.sets.is_some();
        if select && this.needs_every_ready_fd() {
            return Self::select_now_in_set_order(slf);
        }
        let mut ready = ReadyList::new();
        let looked = this.lock()?.core.poll_now(
            |_, _| {},
            |fd, entry: &Entry, events| ready.push(entry.ready(py, fd, events)),
        );
        match looked {
            // One ready fd needs no ordering.
            Ok(Look::Done) if select && ready.len() >= 2 => Self::in_set_order(slf, None, ready),
            Ok(Look::Done) => this.ready_list(py, &mut ready),
            Ok(Look::Interrupted) => nothing_after_signals(py),
            Err(err) => Err(this.wait_error(py, err)),
        }
    }

    /// SelectSelector's `select(0)`: every ready fd counts for the order of the result.
    #[inline(never)]
    fn select_now_in_set_order<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let this = slf.get();
        if this.has_bools_to_warn(py) {
            // Their warnings come between the wait's start and its system call.
            return Self::wait_for_ready(slf, Some(Duration::ZERO), Timing::now());
        }
        let mut ready = ReadyList::new();
        let mut all = Vec::new();
        let looked = this.lock()?.core.poll_now(
            |fd, events| all.push((fd, events)),
            |fd, entry: &Entry, events| ready.push(entry.ready(py, fd, events)),
        );
        match looked {
            Ok(Look::Done) => Self::in_set_order(slf, Some(all), ready),
            Ok(Look::Interrupted) => nothing_after_signals(py),
            Err(err) => Err(this.wait_error(py, err)),
        }
    }

    /// SelectSelector's result list, in the order its sets give (`select_steps.rs`). `all`:
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

    /// The error of a wait that could not start. A SelectSelector holding an fd `select()`
    /// cannot take gets `select.select`'s own: it converts the readers, then the writers, in
    /// its sets' order, and raises for the first bad one (OverflowError or ValueError), where
    /// the backend checks in fd order.
    pub(super) fn wait_error(&self, py: Python<'_>, err: crate::backend::Error) -> PyErr {
        use crate::backend::Error::{FdOutOfRange, FdTooLarge};
        if !matches!(err, FdOutOfRange | FdTooLarge) {
            return backend_error(err);
        }
        match self.select_module_error(py) {
            Some(stdlib_err) => stdlib_err,
            None => backend_error(err),
        }
    }
}

/// A look interrupted by a signal: the handlers run (an exception they raise is `select()`'s),
/// and nothing is ready (`Look::Interrupted`).
fn nothing_after_signals(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    py.check_signals()?;
    Ok(PyList::empty(py))
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
