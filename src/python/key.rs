//! The classes of keys and maps (`SelectorKey`, `_SelectorMapping`, made in
//! `rselectors/__init__.py` and handed over at import) and the construction of keys in the
//! way `tuple.__new__` builds them.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

use super::mapping::SelectorMapping;

/// Whether the running CPython's tuples cache their hash (3.14+), set at import.
static TUPLE_CACHES_HASH: AtomicBool = AtomicBool::new(false);
/// Whether the running CPython's None is immortal (3.12+; every free-threaded build), set at
/// import.
static NONE_IS_IMMORTAL: AtomicBool = AtomicBool::new(false);
/// `selectors.SelectorKey`: a namedtuple, made at import.
static SELECTOR_KEY: PyOnceLock<Py<PyType>> = PyOnceLock::new();
/// `get_map()`'s class: our mapping base mixed with `collections.abc.Mapping`.
static SELECTOR_MAPPING: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `SelectorKey(fileobj, fd, events, data)`, built the way `tuple.__new__` builds a tuple
/// subclass instance, without the namedtuple's Python-level `__new__` (a third of the cost
/// of `register`).
pub(crate) fn new_key<'py>(
    py: Python<'py>,
    fileobj: &Bound<'py, PyAny>,
    fd: &Bound<'py, PyAny>,
    events: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Py<PyTuple>> {
    Ok(BlankKey::new(py)?.fill(fileobj, fd, events, data))
}

/// A `SelectorKey` allocated with its four slots still empty (as `PyTuple_New` hands out a
/// tuple), to be filled where nothing may be allocated: under a selector's lock, where an
/// allocation could start the garbage collector and with it any `__del__`. Dropped unfilled,
/// it is freed like any tuple. From 3.12 the slots hold None until filled: waiting for the
/// lock detaches from the interpreter when another thread holds it (free-threaded builds),
/// and meanwhile `gc.get_objects()` in another thread could hand the key to Python code.
pub(crate) struct BlankKey(Py<PyTuple>);

impl BlankKey {
    pub(crate) fn new(py: Python<'_>) -> PyResult<Self> {
        let Some(cls) = SELECTOR_KEY.get(py) else {
            return Err(not_made_yet("SelectorKey"));
        };
        // SAFETY: SelectorKey is a namedtuple, a tuple subclass with no fields of its own, so
        // its allocator returns a tuple of 4 empty slots, which `fill` sets before Python
        // code uses it (None meanwhile, from 3.12; None is immortal there); on 3.14+ that
        // tuple starts with a PyVarObject and a Py_hash_t.
        unsafe {
            let key = ffi::PyType_GenericAlloc(cls.as_ptr().cast(), 4);
            if key.is_null() {
                return Err(PyErr::fetch(py));
            }
            if NONE_IS_IMMORTAL.load(Ordering::Relaxed) {
                for i in 0..4 {
                    // The reference is never released: `fill` overwrites it, which an
                    // immortal object does not count.
                    let none = ffi::Py_None();
                    ffi::Py_IncRef(none);
                    #[cfg(not(feature = "abi3"))]
                    ffi::PyTuple_SET_ITEM(key, i, none);
                    #[cfg(feature = "abi3")]
                    ffi::PyTuple_SetItem(key, i, none);
                }
            }
            if TUPLE_CACHES_HASH.load(Ordering::Relaxed) {
                // From 3.14 a tuple caches its hash in the field after its header; -1 means
                // "not computed yet". `tuple.__new__` sets it, `PyType_GenericAlloc` leaves
                // it zeroed, which would make every key hash as 0.
                let hash = key
                    .cast::<u8>()
                    .add(std::mem::size_of::<ffi::PyVarObject>())
                    .cast::<ffi::Py_hash_t>();
                *hash = -1;
            }
            Ok(BlankKey(
                Bound::from_owned_ptr(py, key)
                    .cast_into_unchecked::<PyTuple>()
                    .unbind(),
            ))
        }
    }

    /// Sets the four fields (new references, no allocation, no Python code).
    pub(crate) fn fill(
        self,
        fileobj: &Bound<'_, PyAny>,
        fd: &Bound<'_, PyAny>,
        events: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> Py<PyTuple> {
        let key = self.0;
        for (i, item) in [fileobj, fd, events, data].into_iter().enumerate() {
            // SAFETY: `key` is a fresh 4-slot tuple no Python code has used; each slot, empty
            // or holding an immortal None, is filled once, with a reference the tuple takes
            // over.
            unsafe {
                #[cfg(not(feature = "abi3"))]
                ffi::PyTuple_SET_ITEM(key.as_ptr(), i as ffi::Py_ssize_t, item.clone().into_ptr());
                // The limited API's checked setter; it cannot fail on a fresh 4-slot tuple.
                #[cfg(feature = "abi3")]
                ffi::PyTuple_SetItem(key.as_ptr(), i as ffi::Py_ssize_t, item.clone().into_ptr());
            }
        }
        key
    }
}

/// `_rselectors._set_types(SelectorKey, _SelectorMapping)`: the two classes
/// `rselectors/__init__.py` makes, as selectors.py makes them, handed over once at import so
/// that keys and maps are built of them here.
#[pyfunction]
pub(crate) fn _set_types(
    key_cls: Bound<'_, PyType>,
    mapping_cls: Bound<'_, PyType>,
) -> PyResult<()> {
    let py = key_cls.py();
    let tuple = py.get_type::<PyTuple>();
    let base = py.get_type::<SelectorMapping>();
    if !key_cls.is_subclass(&tuple)? || !mapping_cls.is_subclass(&base)? {
        return Err(PyTypeError::new_err(
            "_set_types(SelectorKey, _SelectorMapping): a tuple subclass and a subclass of \
             rselectors._rselectors._SelectorMapping",
        ));
    }
    TUPLE_CACHES_HASH.store(py.version_info() >= (3, 14), Ordering::Relaxed);
    NONE_IS_IMMORTAL.store(py.version_info() >= (3, 12), Ordering::Relaxed);
    let _ = SELECTOR_KEY.set(py, key_cls.unbind());
    let _ = SELECTOR_MAPPING.set(py, mapping_cls.unbind());
    Ok(())
}

/// `get_map()`'s class, made at import.
pub(crate) fn selector_mapping(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    match SELECTOR_MAPPING.get(py) {
        Some(cls) => Ok(cls.bind(py)),
        None => Err(not_made_yet("_SelectorMapping")),
    }
}

/// Using `_rselectors` before `rselectors/__init__.py` handed it its classes.
fn not_made_yet(what: &str) -> PyErr {
    PyRuntimeError::new_err(format!(
        "rselectors: {what} is not made yet (import rselectors)"
    ))
}
