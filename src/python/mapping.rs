//! The read-only, live mapping `get_map()` returns.

use pyo3::exceptions::{PyKeyError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use super::fd::python_3_13;
use super::selector::SelectorBase;

/// The read-only, live view `get_map()` returns; Python mixes in `collections.abc.Mapping`.
#[pyclass(
    frozen,
    subclass,
    module = "rselectors._rselectors",
    name = "_SelectorMapping"
)]
pub struct SelectorMapping {
    selector: Py<SelectorBase>,
}

#[pymethods]
impl SelectorMapping {
    #[new]
    fn new(selector: Py<SelectorBase>) -> Self {
        SelectorMapping { selector }
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.selector.bind(py).get().len()
    }

    fn __getitem__(&self, py: Python<'_>, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        self.selector.bind(py).get().getitem(fileobj)
    }

    fn __contains__(&self, py: Python<'_>, fileobj: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.selector.bind(py).get().contains(fileobj)
    }

    #[pyo3(signature = (fileobj, default=None))]
    fn get(
        &self,
        py: Python<'_>,
        fileobj: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let selector = self.selector.bind(py).get();
        let found = if python_3_13(py) {
            // 3.13's own `get`: the lookup's errors go through.
            selector.find(fileobj)?
        } else {
            // `Mapping.get`: `self[fileobj]`, the default on KeyError.
            match selector.getitem(fileobj) {
                Ok(key) => Some(key),
                Err(err) if err.is_instance_of::<PyKeyError>(py) => None,
                Err(err) => return Err(err),
            }
        };
        Ok(match found {
            Some(key) => key.into_any(),
            None => default.unwrap_or_else(|| py.None()),
        })
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<SelectorMappingIter> {
        let len = self.selector.bind(py).get().len()?;
        Ok(SelectorMappingIter {
            selector: self.selector.clone_ref(py),
            cursor: 0,
            len: Some(len),
            remaining: len,
            exhausted: false,
        })
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.selector)
    }
}

/// Iterates the registered fds in registration order, like iterating the stdlib's dict.
#[pyclass(module = "rselectors._rselectors", name = "_SelectorMappingIter")]
pub struct SelectorMappingIter {
    selector: Py<SelectorBase>,
    cursor: usize,
    /// The table's length when iteration began; `None` once a change was reported.
    len: Option<usize>,
    /// How many more fds this iteration may yield, as dict iterators count.
    remaining: usize,
    exhausted: bool,
}

#[pymethods]
impl SelectorMappingIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if self.exhausted {
            return Ok(None);
        }
        let selector = self.selector.bind(py).get();
        if self.len != Some(selector.len()?) {
            self.len = None;
            return Err(PyRuntimeError::new_err(
                "dictionary changed size during iteration",
            ));
        }
        let Some((next, fd)) = selector.fd_at(py, self.cursor)? else {
            // A finished dict iterator stays finished, whatever the dict does later.
            self.exhausted = true;
            return Ok(None);
        };
        if self.remaining == 0 {
            // Same size, yet more fds than there were: one was removed and another added.
            self.len = None;
            return Err(PyRuntimeError::new_err(
                "dictionary keys changed during iteration",
            ));
        }
        self.remaining -= 1;
        self.cursor = next;
        Ok(Some(fd))
    }

    /// `operator.length_hint()`: what is left, or 0 once the table changed under it.
    fn __length_hint__(&self, py: Python<'_>) -> PyResult<usize> {
        let now = self.selector.bind(py).get().len()?;
        Ok(match self.len {
            Some(len) if !self.exhausted && len == now => self.remaining,
            _ => 0,
        })
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.selector)
    }
}
