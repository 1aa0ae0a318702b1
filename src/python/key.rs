//! `SelectorKey` (a namedtuple, as the stdlib makes it) and the mapping class, made at
//! import, and the construction of keys in the way `tuple.__new__` builds them.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use super::mapping::SelectorMapping;

const MODULE: &str = "rselectors";
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
        let cls = SELECTOR_KEY.get(py).expect("set at import");
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

/// Builds `SelectorKey` and the mapping class, as the stdlib does at import.
pub(crate) fn init_types(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    TUPLE_CACHES_HASH.store(py.version_info() >= (3, 14), Ordering::Relaxed);
    NONE_IS_IMMORTAL.store(py.version_info() >= (3, 12), Ordering::Relaxed);
    let collections = py.import("collections")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("module", MODULE)?;
    let key_cls = collections.getattr("namedtuple")?.call(
        ("SelectorKey", ["fileobj", "fd", "events", "data"]),
        Some(&kwargs),
    )?;
    key_cls.setattr(
        "__doc__",
        "SelectorKey(fileobj, fd, events, data)\n\n    Object used to associate a file object to \
         its backing\n    file descriptor, selected event mask, and attached data.\n",
    )?;
    for (field, doc) in [
        ("fileobj", "File object registered."),
        ("fd", "Underlying file descriptor."),
        (
            "events",
            "Events that must be waited for on this file object.",
        ),
        (
            "data",
            if py.version_info() < (3, 11) {
                // Set inside an indented `if` block in 3.9 and 3.10's selectors.py.
                "Optional opaque data associated to this file object.\n    For example, this \
                 could be used to store a per-client session ID."
            } else {
                "Optional opaque data associated to this file object.\nFor example, this could \
                 be used to store a per-client session ID."
            },
        ),
    ] {
        key_cls.getattr(field)?.setattr("__doc__", doc)?;
    }
    m.add("SelectorKey", &key_cls)?;
    let _ = SELECTOR_KEY.set(py, key_cls.cast_into::<PyType>()?.unbind());

    let mapping_abc = py.import("collections.abc")?.getattr("Mapping")?;
    let base = py.get_type::<SelectorMapping>();
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", MODULE)?;
    if py.version_info() < (3, 13) {
        // Before 3.13 the stdlib's mapping inherits `get(key, default=None)` from Mapping.
        namespace.set_item("get", mapping_abc.getattr("get")?)?;
    }
    namespace.set_item("__doc__", "Mapping of file objects to selector keys.")?;
    let metaclass = mapping_abc.get_type();
    let mapping_cls = metaclass.call1((
        "_SelectorMapping",
        PyTuple::new(py, [base.into_any(), mapping_abc])?,
        namespace,
    ))?;
    m.add("_SelectorMapping", &mapping_cls)?;
    let _ = SELECTOR_MAPPING.set(py, mapping_cls.cast_into::<PyType>()?.unbind());
    Ok(())
}

/// `get_map()`'s class, made at import.
pub(crate) fn selector_mapping(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    match SELECTOR_MAPPING.get(py) {
        Some(cls) => Ok(cls.bind(py)),
        None => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "rselectors: _SelectorMapping is not made yet",
        )),
    }
}
