//! The `_Selector` base class's Python methods, each a short entry into the room that does
//! the work (`register.rs`, `modify.rs`, `wait.rs`, `lookup.rs`, ...).

use std::sync::atomic::Ordering;

use pyo3::exceptions::{PyKeyError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::base::SelectorBase;
use crate::python::fd::hash_as_dict_key;
use crate::python::key::selector_mapping;

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
        let Some(selector_cls) = self.class.selector_cls else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "this selector class has no _selector_cls",
            ));
        };
        let released = self.lock()?.core.close();
        drop(released);
        self.use_poller(cls.call0()?.unbind(), selector_cls);
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.traverse(visit)
    }

    fn __clear__(&self) {
        self.clear();
    }
}
