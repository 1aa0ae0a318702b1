//! The Python classes: conversion between Python values and the core, nothing more.
//!
//! `selector.rs` holds the selector classes, `mapping.rs` the `get_map()` view, `convert.rs`
//! the argument and error conversions.

mod convert;
mod mapping;
mod poller;
mod selector;

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use mapping::SelectorMapping;
#[cfg(epoll)]
use selector::EpollSelector;
#[cfg(kqueue)]
use selector::KqueueSelector;
#[cfg(unix)]
use selector::PollSelector;
use selector::{SelectSelector, SelectorBase};

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
fn new_key<'py>(
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
struct BlankKey(Py<PyTuple>);

impl BlankKey {
    fn new(py: Python<'_>) -> PyResult<Self> {
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
    fn fill(
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
fn init_types(m: &Bound<'_, PyModule>) -> PyResult<()> {
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

/// Whether Poll and Epoll waits round their timeout up to whole milliseconds, as the
/// stdlib's do (True), or keep it to the microsecond and finer (False, the default).
#[pyfunction]
fn millisecond_timeouts() -> bool {
    crate::timeout::millisecond_timeouts()
}

/// Sets what `millisecond_timeouts()` answers, for every selector of the process, from
/// its next wait on; returns the previous setting.
#[pyfunction]
fn set_millisecond_timeouts(enabled: bool) -> bool {
    let before = crate::timeout::millisecond_timeouts();
    crate::timeout::set_millisecond_timeouts(enabled);
    before
}

/// Test hook: `(state, simulated_failures)`, where state is what the calls of
/// `epoll_pwait2` so far found ("unknown", "works", "missing"). With `simulate_errno`, first
/// forgets that and makes the next calls fail with that errno (0: call the kernel again), as
/// a kernel without it (ENOSYS) or a seccomp filter (EPERM) would, counting them.
#[pyfunction]
#[pyo3(signature = (simulate_errno=None))]
fn _epoll_pwait2(simulate_errno: Option<i32>) -> (&'static str, u32) {
    if let Some(errno) = simulate_errno {
        crate::timeout::simulate_epoll_pwait2_errno(errno);
    }
    (
        crate::timeout::epoll_pwait2_state(),
        crate::timeout::epoll_pwait2_simulated_failures(),
    )
}

/// `gil_used = false`: safe without a GIL, by review (it has never run on a free-threaded
/// build; README "Free-threading" has the findings). Every selector's state is behind its
/// own `Mutex`, held only for increfs, Rust allocations and non-blocking system calls, and
/// waited for detached (`lock_py_attached`), so no stop-the-world pause waits on it. The raw
/// C-API writes (`PyType_GenericAlloc` + `PyTuple_SET_ITEM`, `PyList_New` + `PyList_SET_ITEM`)
/// fill objects no other thread can see yet; borrowed reads are of tuple items (immutable),
/// each turned into a new reference at once; the cached `(key, events)` tuples are
/// immutable and change hands only under the lock; the types are made once, in `PyOnceLock`s.
/// The one non-frozen class, the mapping iterator, is guarded by pyo3's borrow flag: two
/// threads advancing one iterator at once get a RuntimeError, not a race.
#[pymodule(gil_used = false)]
fn _rselectors(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("EVENT_READ", crate::backend::READ)?;
    m.add("EVENT_WRITE", crate::backend::WRITE)?;
    m.add_class::<SelectorBase>()?;
    #[cfg(epoll)]
    m.add_class::<EpollSelector>()?;
    #[cfg(kqueue)]
    m.add_class::<KqueueSelector>()?;
    // Whether that KqueueSelector runs on libkqueue (Linux) rather than a kernel's kqueue.
    #[cfg(kqueue)]
    m.add("_ON_LIBKQUEUE", cfg!(libkqueue))?;
    #[cfg(unix)]
    m.add_class::<PollSelector>()?;
    m.add_class::<SelectSelector>()?;
    m.add_class::<SelectorMapping>()?;
    m.add_function(wrap_pyfunction!(millisecond_timeouts, m)?)?;
    m.add_function(wrap_pyfunction!(set_millisecond_timeouts, m)?)?;
    m.add_function(wrap_pyfunction!(_epoll_pwait2, m)?)?;
    // Read once, at import: the switch for a program that cannot be changed.
    if std::env::var_os("RSELECTORS_MS_TIMEOUTS").is_some_and(|v| !v.is_empty() && v != "0") {
        crate::timeout::set_millisecond_timeouts(true);
    }
    if m.py().version_info() >= (3, 13) {
        // Removed from selectors.py in 3.13 (gh-106554).
        m.getattr("_Selector")?.delattr("_key_from_fd")?;
    }
    init_types(m)
}
