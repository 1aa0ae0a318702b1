//! The `_Selector` base class: the state behind its lock, and its Python methods, each a
//! short entry into the room that does the work (`register.rs`, `modify.rs`, `wait.rs`, ...).
//! The state's `Mutex` is never held across a wait, a call into Python, or the allocation or
//! drop of a Python object (either can run the garbage collector, and a `__del__` could
//! re-enter); under it Python objects are only cloned (an incref).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use pyo3::exceptions::{PyKeyError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyList, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::poller::CustomPoller;
use super::results::Entry;
use super::select_sets::SelectSets;
use crate::backend::{AnyBackend, Kind};
use crate::lock::{OwnedGuard, OwnedMutex, Reentered};
use crate::python::errors::os_error;
use crate::python::fd::hash_as_dict_key;
use crate::python::key::selector_mapping;
use crate::selector::Selector;

pub(super) struct State {
    pub(super) core: Selector<AnyBackend, Entry>,
    /// The mapping `get_map()` hands out, made on first use, dropped by `close()`.
    pub(super) mapping: Option<Py<PyAny>>,
}

/// The shared base of the selector classes.
#[pyclass(
    frozen,
    subclass,
    module = "rselectors._rselectors",
    name = "_Selector"
)]
pub struct SelectorBase {
    pub(super) kind: Kind,
    pub(super) state: OwnedMutex<State>,
    /// Set when the class's `_selector_cls` was replaced: the OS side goes through it
    /// (`poller.rs`, the only reader).
    pub(super) poller: OnceLock<CustomPoller>,
    /// Set by `close()` (under the lock, beside dropping the mapping): `get_map()` answers
    /// None from then on. Outside the lock, so `get_key` checks it without a lock round trip.
    pub(super) closed: AtomicBool,
    /// SelectSelector's `_readers` and `_writers` (`select_sets.rs`); None for the others.
    pub(super) sets: Option<SelectSets>,
    /// Set once a key may be in the table without its poll() registration (user code run
    /// between the two, a key stored back by modify(), an undo that failed): from then on
    /// unregister() asks poll() whether it holds the fd (`os_refused`).
    pub(super) maybe_unwatched: AtomicBool,
}

impl SelectorBase {
    pub(super) fn new(py: Python<'_>, kind: Kind) -> PyResult<Self> {
        let sets = match kind == Kind::Select {
            true => Some(SelectSets::new(py)?),
            false => None,
        };
        let backend = AnyBackend::open(kind).map_err(|e| os_error(&e))?;
        Ok(SelectorBase {
            kind,
            state: OwnedMutex::new(State {
                core: Selector::new(backend),
                mapping: None,
            }),
            poller: OnceLock::new(),
            closed: AtomicBool::new(false),
            sets,
            maybe_unwatched: AtomicBool::new(false),
        })
    }

    /// The state. Only native steps run under it; if Python code ever re-enters the selector
    /// while this thread holds it, the call fails loudly instead of deadlocking.
    #[inline]
    pub(super) fn lock(&self) -> PyResult<OwnedGuard<'_, State>> {
        // A thread that has to wait for the lock detaches meanwhile: on a free-threaded build
        // a stop-the-world pause (the GC) must not wait on a thread blocked here. Uncontended,
        // as it always is under the GIL, this is one try_lock.
        let locked = self.state.lock_with(|mutex| {
            // SAFETY: only methods called from Python take the lock (never inside `detach`),
            // so this thread is attached to the interpreter.
            let py = unsafe { Python::assume_attached() };
            mutex.lock_py_attached(py)
        });
        match locked {
            Ok(guard) => Ok(guard),
            Err(Reentered) => Err(reentered()),
        }
    }

    /// How many fds are registered.
    pub(crate) fn len(&self) -> PyResult<usize> {
        Ok(self.lock()?.core.keys().len())
    }

    /// The fd object of the first registration at or after `cursor` in registration order,
    /// with the cursor just past it.
    pub(crate) fn fd_at(
        &self,
        py: Python<'_>,
        cursor: usize,
    ) -> PyResult<Option<(usize, Py<PyAny>)>> {
        let state = self.lock()?;
        Ok(state
            .core
            .keys()
            .entry_at(cursor)
            .map(|(next, _, entry)| (next, entry.field(py, 1).unbind())))
    }
}

/// The error of a selector call made while this thread holds the selector's lock.
#[cold]
fn reentered() -> PyErr {
    PyRuntimeError::new_err(
        "rselectors: selector re-entered while this thread holds its lock (a bug in rselectors; \
         please report it)",
    )
}

#[pymethods]
impl SelectorBase {
    #[pyo3(signature = (fileobj, events, data=None))]
    fn register<'py>(
        &self,
        py: Python<'py>,
        fileobj: &Bound<'py, PyAny>,
        events: &Bound<'py, PyAny>,
        data: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyTuple>> {
        let none = py.None().into_bound(py);
        self.register_in_order(fileobj, events, data.unwrap_or(&none))
    }

    fn unregister(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        self.unregister_in_order(fileobj)
    }

    #[pyo3(signature = (fileobj, events, data=None))]
    fn modify<'py>(
        slf: &Bound<'py, Self>,
        fileobj: &Bound<'py, PyAny>,
        events: &Bound<'py, PyAny>,
        data: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let none = slf.py().None().into_bound(slf.py());
        Self::modify_in_order(slf, fileobj, events, data.unwrap_or(&none))
    }

    #[pyo3(signature = (timeout=None))]
    fn select<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        Self::select_ready(slf, timeout)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.os_close(py)?;
        // As the stdlib: the OS handle closes, the keys go (a `__del__` they trigger still
        // sees an empty map), and only then does `get_map()` start answering None.
        let entries = self.lock()?.core.close();
        drop(entries);
        // SelectSelector's sets keep their fds, as the stdlib's do.
        self.sets_may_be_keyless();
        let mapping = {
            let mut state = self.lock()?;
            self.closed.store(true, Ordering::Relaxed);
            state.mapping.take()
        };
        drop(mapping);
        Ok(())
    }

    fn get_key(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(PyRuntimeError::new_err("Selector is closed"));
        }
        // `try: return mapping[fileobj] except KeyError: raise KeyError(...) from None`.
        match self.getitem(fileobj) {
            Err(err) if err.is_instance_of::<PyKeyError>(fileobj.py()) => {
                Err(Self::not_registered(fileobj, Some(err)))
            }
            other => other,
        }
    }

    fn get_map(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        {
            let state = this.lock()?;
            if this.closed.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if let Some(mapping) = &state.mapping {
                return Ok(Some(mapping.clone_ref(py)));
            }
        }
        let cls = selector_mapping(py)?;
        let mapping = cls.call1((slf,))?.unbind();
        let mut state = this.lock()?;
        // Making the mapping may have run a `__del__` that called get_map() first: keep the
        // one stored, and free ours only once the lock is released.
        let result = if this.closed.load(Ordering::Relaxed) {
            None
        } else {
            let stored = state.mapping.get_or_insert_with(|| mapping.clone_ref(py));
            Some(stored.clone_ref(py))
        };
        drop(state);
        drop(mapping);
        Ok(result)
    }

    /// CPython's own tests read `len(s._map)`.
    #[getter]
    fn _map(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        Self::get_map(slf)
    }

    /// `_BaseSelectorImpl._key_from_fd` (Python 3.12 and older).
    fn _key_from_fd(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyTuple>>> {
        // `try: return self._fd_to_key[fd] except KeyError: return None`: the hash and the
        // comparisons (an int subclass's) inside the `try`.
        let found = hash_as_dict_key(fd).and_then(|()| self.key_for(fd, fd.extract::<u64>().ok()));
        match found {
            Err(err) if err.is_instance_of::<PyKeyError>(py) => Ok(None),
            other => other,
        }
    }

    /// SelectSelector: whether `_select` is replaced (`rselectors/__init__.py` says so when
    /// the selector is made and when `_select` is set on it).
    fn _watch_select(&self, replaced: bool) {
        if let Some(sets) = &self.sets {
            sets.watch_select(replaced);
        }
    }

    /// Drives an instance of `cls` (a replaced `_selector_cls`) instead of the OS. Our own
    /// epoll fd is closed first, so the poller's fds take the numbers the stdlib's would.
    fn _use_poller(&self, cls: &Bound<'_, PyAny>) -> PyResult<()> {
        let released = self.lock()?.core.close();
        drop(released);
        self.use_poller(cls.call0()?.unbind());
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.traverse(visit)
    }

    fn __clear__(&self) {
        self.clear();
    }
}
