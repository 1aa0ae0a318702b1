//! The selector's OS side, step by step: the core backend, or an instance of a replaced
//! `_selector_cls` (`poller.rs`), each step where the stdlib's class takes it. The fast paths
//! that run no Python code (register's, modify's, select's) call the core directly, beside
//! the key, in one lock hold.

use std::sync::atomic::Ordering;

use pyo3::exceptions::PyInterruptedError;
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::base::{SelectorBase, State};
use super::class_rules::OsSteps;
use super::entry::{Entry, ReadyList};
use super::poller::{CustomPoller, SelectorCls};
use crate::lock::OwnedGuard;
use crate::python::errors::backend_error;
use crate::python::fd::warn_if_bool_fd;

/// Which OS step `os_watch` makes.
#[derive(Clone, Copy)]
pub(super) enum OsStep {
    /// The first registration of an fd.
    Add,
    /// A change of what an fd registered is watched for.
    Modify,
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
    /// OS registration too; and whether the OS object lacked the fd where its `unregister`
    /// raises for that (`os_refused`). A replaced poller is told in `os_unwatch`, after the
    /// steps the stdlib takes before it.
    pub(super) fn os_pop(
        &self,
        state: &mut OwnedGuard<'_, State>,
        fd: u64,
    ) -> Option<(Entry, bool)> {
        match self.poller.get() {
            // SelectSelector's sets are emptied afterwards, as the stdlib's (`select_steps.rs`).
            None if self.class.steps == OsSteps::Sets => state.core.undo(fd).map(|e| (e, false)),
            None => {
                let (entry, held) = state.core.unregister(fd)?;
                Some((entry, !held && self.class.unregister_raises_for_lacking_fd))
            }
            Some(_) => state.core.undo(fd).map(|e| (e, false)),
        }
    }

    /// What the OS side of the stdlib's `unregister` raises for `fd` (it lets through all
    /// but OSError), once the key is gone: the OverflowError of an fd beyond a C int (a key
    /// left behind by a failed undo), poll()'s KeyError for an fd it did not hold
    /// (`poll_lacked`: a callback unregistered it between the key and the OS registration),
    /// a closed epoll's or kqueue's ValueError (a key stored after close() by a callback).
    #[cold]
    pub(super) fn os_refused(&self, fd: u64, poll_lacked: bool) -> Option<PyErr> {
        if self.poller.get().is_some() || self.class.steps == OsSteps::Sets {
            return None;
        }
        if !self.class.fd_range.holds(fd) {
            return Some(self.class.fd_range.too_large());
        }
        if poll_lacked {
            return Some(pyo3::exceptions::PyKeyError::new_err(fd));
        }
        self.check_handle_open().err()
    }

    /// The error of the OS handle (epoll's, kqueue's) once `close()` closed it; Ok while it is
    /// open, and for the classes without one.
    pub(super) fn check_handle_open(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            if let Some(Err(closed)) = self.lock()?.core.fileno() {
                return Err(backend_error(closed));
            }
        }
        Ok(())
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

    /// Close's first step: a replaced poller is closed where the stdlib's class closes its
    /// own.
    pub(super) fn os_close(&self, py: Python<'_>) -> PyResult<()> {
        match self.poller.get() {
            Some(poller) => poller.close_with_selector(py),
            None => Ok(()),
        }
    }

    /// `select()` through a replaced poller, which gets the timeout as the stdlib hands it:
    /// its Python-level arithmetic, no rounding or checks of ours.
    pub(super) fn select_through_poller<'py>(
        &self,
        py: Python<'py>,
        poller: &CustomPoller,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let max_events = self.len()?.max(1);
        let polled = match poller.poll(py, timeout, max_events) {
            // `except InterruptedError: return ready`.
            Err(err) if err.is_instance_of::<PyInterruptedError>(py) => {
                return Ok(PyList::empty(py))
            }
            other => other?,
        };
        let mut ready = ReadyList::with_capacity(polled.len());
        self.lock()?
            .core
            .keyed(polled, |fd, entry: &Entry, events| {
                ready.push(entry.ready(py, fd, events))
            });
        self.ready_list(py, &mut ready)
    }

    /// Drives `poller` (an instance of a replaced `_selector_cls`) instead of the OS.
    pub(super) fn use_poller(&self, poller: Py<PyAny>, cls: SelectorCls) {
        let _ = self.poller.set(CustomPoller::new(poller, cls));
    }

    /// The poller, for the garbage collector.
    pub(super) fn poller_object(&self) -> Option<&Py<PyAny>> {
        self.poller.get().map(CustomPoller::object)
    }
}
