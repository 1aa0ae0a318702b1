//! The Python classes: conversion between Python values and the core, nothing more.
//!
//! Locking: each selector keeps its state behind a `Mutex` that is never held across a wait,
//! a call into Python, or the drop of a Python object (a `__del__` could run and re-enter).
//! Python objects are only cloned (an incref) under it, and dropped after it is released.

mod convert;

use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyKeyError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::backend::{epoll::Epoll, poll::Poll, select::Select, AnyBackend, Backend, Wait};
use crate::selector::{RegisterError, Selector};
use crate::sys::is_interrupted;
use crate::timeout::{Deadline, Remaining};
use convert::{
    backend_error, check_register_events, differs, events_as_i64, fileobj_to_fd, interest_of,
    os_error, parse_timeout, python_format, FdNum, Kind, ParsedTimeout,
};

const MODULE: &str = "rselectors";

/// `selectors.SelectorKey`: a namedtuple, made at import.
static SELECTOR_KEY: PyOnceLock<Py<PyType>> = PyOnceLock::new();
/// `get_map()`'s class: our mapping base mixed with `collections.abc.Mapping`.
static SELECTOR_MAPPING: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn new_key<'py>(
    py: Python<'py>,
    fileobj: &Bound<'py, PyAny>,
    fd: &Bound<'py, PyAny>,
    events: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Py<PyTuple>> {
    let cls = SELECTOR_KEY.get(py).expect("set at import").bind(py);
    let key = cls.call1((fileobj, fd, events, data))?;
    Ok(key.cast_into::<PyTuple>()?.unbind())
}

/// What the table holds per fd: the `SelectorKey` handed to Python, and its `events` as a
/// plain number when it is one (the mask `select()` applies).
struct Entry {
    key: Py<PyTuple>,
    mask: Option<i64>,
}

impl Entry {
    fn new(key: Py<PyTuple>, events: &Bound<'_, PyAny>) -> Self {
        let mask = events_as_i64(events).filter(|_| {
            events.is_exact_instance_of::<pyo3::types::PyInt>()
                || events.is_exact_instance_of::<pyo3::types::PyBool>()
        });
        Entry { key, mask }
    }

    fn field<'py>(&self, py: Python<'py>, index: usize) -> Bound<'py, PyAny> {
        self.key
            .bind(py)
            .get_item(index)
            .expect("SelectorKey has four fields")
    }
}

struct State {
    core: Selector<AnyBackend, Entry>,
    /// Set by `close()`: `get_map()` answers None from then on.
    closed: bool,
    /// The mapping `get_map()` hands out, made on first use, dropped by `close()`.
    mapping: Option<Py<PyAny>>,
}

/// The shared base of the selector classes.
#[pyclass(
    frozen,
    subclass,
    module = "rselectors._rselectors",
    name = "_Selector"
)]
pub struct SelectorBase {
    kind: Kind,
    state: Mutex<State>,
}

impl SelectorBase {
    fn new(kind: Kind) -> PyResult<Self> {
        let backend = match kind {
            Kind::Epoll => AnyBackend::Epoll(Epoll::new().map_err(|e| os_error(&e))?),
            Kind::Poll => AnyBackend::Poll(Poll::new()),
            Kind::Select => AnyBackend::Select(Select::new()),
        };
        Ok(SelectorBase {
            kind,
            state: Mutex::new(State {
                core: Selector::new(backend),
                closed: false,
                mapping: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic cannot leave the state half-changed in a way that matters more than
        // refusing every later call would, so a poisoned lock is simply taken over.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `_fileobj_lookup`: the fd of `fileobj`, or, when it no longer has a valid one, the fd
    /// it was registered under (an identity search, so closed files can be unregistered).
    fn lookup(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<FdNum> {
        match fileobj_to_fd(fileobj) {
            Ok((_, fd)) => Ok(fd),
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyValueError>(fileobj.py()) => {
                let py = fileobj.py();
                let state = self.lock();
                let found = state
                    .core
                    .keys()
                    .iter()
                    .find(|(_, entry)| entry.field(py, 0).is(fileobj))
                    .map(|(fd, _)| fd);
                drop(state);
                found.map(Some).ok_or(err)
            }
            Err(err) => Err(err),
        }
    }

    fn key_for(&self, py: Python<'_>, fd: FdNum) -> Option<Py<PyTuple>> {
        let state = self.lock();
        let entry = state.core.keys().get(fd?)?;
        Some(entry.key.clone_ref(py))
    }

    fn not_registered(fileobj: &Bound<'_, PyAny>) -> PyErr {
        match fileobj.repr() {
            Ok(r) => PyKeyError::new_err(format!("{r} is not registered")),
            Err(err) => err,
        }
    }

    /// `get_key` and the mapping's `[]`: the key, KeyError if none.
    fn getitem(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        let fd = self.lookup(fileobj)?;
        self.key_for(fileobj.py(), fd)
            .ok_or_else(|| Self::not_registered(fileobj))
    }

    /// `_BaseSelectorImpl.modify`'s shortcut: a new key with new data, no system call.
    fn replace_key(&self, fd: u64, key: Py<PyTuple>, events: &Bound<'_, PyAny>) {
        let old = self.lock().core.replace_key(fd, Entry::new(key, events));
        drop(old);
    }
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
        check_register_events(events)?;
        let (fd_obj, fd) = match fileobj_to_fd(fileobj) {
            Ok(found) => found,
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyValueError>(py) => {
                // A closed file still registered under its old fd: the stdlib finds it by
                // identity and then reports it as already registered.
                let fd = self.lookup(fileobj)?;
                let key = self.key_for(py, fd).expect("lookup found it");
                (key.bind(py).get_item(1)?, fd)
            }
            Err(err) => return Err(err),
        };
        let none = py.None().into_bound(py);
        let data = data.unwrap_or(&none);
        let key = new_key(py, fileobj, &fd_obj, events, data)?;
        let Some(fd) = fd else {
            return Err(backend_error(crate::backend::Error::FdTooLarge));
        };
        let interest = interest_of(events)?;
        let result = self
            .lock()
            .core
            .register(fd, interest, Entry::new(key.clone_ref(py), events));
        match result {
            Ok(()) => Ok(key),
            Err(RegisterError::AlreadyRegistered(entry)) => {
                drop(entry);
                Err(PyKeyError::new_err(format!(
                    "{} (FD {}) is already registered",
                    fileobj.repr()?,
                    python_format(&fd_obj)?
                )))
            }
            Err(RegisterError::Backend(err, entry)) => {
                drop(entry);
                Err(backend_error(err))
            }
        }
    }

    fn unregister(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        let fd = self.lookup(fileobj)?;
        let removed = fd.and_then(|fd| self.lock().core.unregister(fd));
        match removed {
            Some(entry) => Ok(entry.key),
            None => Err(Self::not_registered(fileobj)),
        }
    }

    #[pyo3(signature = (fileobj, events, data=None))]
    fn modify<'py>(
        slf: &Bound<'py, Self>,
        fileobj: &Bound<'py, PyAny>,
        events: &Bound<'py, PyAny>,
        data: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let fd = this.lookup(fileobj)?;
        let key = this
            .key_for(py, fd)
            .ok_or_else(|| Self::not_registered(fileobj))?;
        let fd = fd.expect("registered fds fit in 64 bits");
        let key = key.into_bound(py);
        let none = py.None().into_bound(py);
        let data = data.unwrap_or(&none);
        let (old_fileobj, old_fd) = (key.get_item(0)?, key.get_item(1)?);
        let (old_events, old_data) = (key.get_item(2)?, key.get_item(3)?);

        if this.kind == Kind::Select {
            // BaseSelector.modify: through the instance's own unregister and register.
            if differs(events, &old_events)? {
                slf.call_method1(intern!(py, "unregister"), (fileobj,))?;
                return Ok(slf
                    .call_method1(intern!(py, "register"), (fileobj, events, data))?
                    .unbind());
            }
            if differs(data, &old_data)? {
                let new = new_key(py, &old_fileobj, &old_fd, &old_events, data)?;
                this.replace_key(fd, new.clone_ref(py), &old_events);
                return Ok(new.into_any());
            }
            return Ok(key.unbind().into_any());
        }

        // _PollLikeSelector.modify: events are not validated, only handed to the OS.
        let mut changed = false;
        if differs(events, &old_events)? {
            let interest = interest_of(events)?;
            let result = this.lock().core.modify_interest(fd, interest);
            if let Err((err, removed)) = result {
                drop(removed);
                return Err(backend_error(err));
            }
            changed = true;
        }
        if differs(data, &old_data)? {
            changed = true;
        }
        if !changed {
            return Ok(key.unbind().into_any());
        }
        let new = new_key(py, &old_fileobj, &old_fd, events, data)?;
        this.replace_key(fd, new.clone_ref(py), events);
        Ok(new.into_any())
    }

    #[pyo3(signature = (timeout=None))]
    fn select<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let timeout = match parse_timeout(self.kind, timeout)? {
            ParsedTimeout::Wait(t) => t,
            // epoll.poll() reports a closed epoll before looking at the timeout.
            ParsedTimeout::Refused(err) if self.kind == Kind::Epoll => {
                let mut state = self.lock();
                let wait = state.core.begin_wait().map_err(backend_error)?;
                state.core.end_wait(wait);
                return Err(err);
            }
            ParsedTimeout::Refused(err) => return Err(err),
        };
        let mut wait = self.lock().core.begin_wait().map_err(backend_error)?;

        let deadline = Deadline::after(timeout);
        let mut left = timeout;
        let outcome = loop {
            match py.detach(|| wait.wait(left)) {
                Ok(()) => break Ok(true),
                Err(err) if is_interrupted(&err) => {
                    if let Err(err) = py.check_signals() {
                        break Err(err);
                    }
                    left = match deadline.remaining() {
                        Remaining::Forever => None,
                        Remaining::Left(d) => Some(d),
                        Remaining::Expired => break Ok(false),
                    };
                }
                Err(err) => break Err(os_error(&err)),
            }
        };

        let mut ready: Vec<(Py<PyTuple>, u8, Option<i64>)> = Vec::new();
        {
            let mut state = self.lock();
            if let Ok(true) = outcome {
                let keys = state.core.keys();
                wait.for_each_ready(&mut |fd, events| {
                    if let Some(entry) = keys.get(fd) {
                        ready.push((entry.key.clone_ref(py), events, entry.mask));
                    }
                });
            }
            state.core.end_wait(wait);
        }
        outcome?;

        let list = PyList::empty(py);
        for (key, events, mask) in ready {
            let key = key.into_bound(py);
            let masked = match mask {
                Some(mask) => (i64::from(events) & mask).into_pyobject(py)?.into_any(),
                None => events.into_pyobject(py)?.bitand(key.get_item(2)?)?,
            };
            list.append(PyTuple::new(py, [key.into_any(), masked])?)?;
        }
        Ok(list)
    }

    fn close(&self) {
        let (entries, mapping) = {
            let mut state = self.lock();
            state.closed = true;
            (state.core.close(), state.mapping.take())
        };
        drop(entries);
        drop(mapping);
    }

    fn get_key(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        if self.lock().closed {
            return Err(PyRuntimeError::new_err("Selector is closed"));
        }
        self.getitem(fileobj)
    }

    fn get_map(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        {
            let state = this.lock();
            if state.closed {
                return Ok(None);
            }
            if let Some(mapping) = &state.mapping {
                return Ok(Some(mapping.clone_ref(py)));
            }
        }
        let cls = SELECTOR_MAPPING.get(py).expect("set at import").bind(py);
        let mapping = cls.call1((slf,))?.unbind();
        let mut state = this.lock();
        if state.closed {
            return Ok(None);
        }
        Ok(Some(state.mapping.get_or_insert(mapping).clone_ref(py)))
    }

    /// CPython's own tests read `len(s._map)`.
    #[getter]
    fn _map(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        Self::get_map(slf)
    }

    /// `_BaseSelectorImpl._key_from_fd` (Python 3.12 and older).
    fn _key_from_fd(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> Option<Py<PyTuple>> {
        let fd = fd.extract::<u64>().ok();
        self.key_for(py, fd)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Never wait for the lock here: visiting less only delays a collection.
        let Ok(state) = self.state.try_lock() else {
            return Ok(());
        };
        for (_, entry) in state.core.keys().iter() {
            visit.call(&entry.key)?;
        }
        if let Some(mapping) = &state.mapping {
            visit.call(mapping)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let (entries, mapping) = match self.state.try_lock() {
            Ok(mut state) => (state.core.close_keys(), state.mapping.take()),
            Err(_) => return,
        };
        drop(entries);
        drop(mapping);
    }
}

macro_rules! selector_class {
    ($name:ident, $py_name:literal, $kind:expr, $doc:literal $(, $extra:item)*) => {
        #[doc = $doc]
        #[pyclass(frozen, subclass, extends = SelectorBase, module = "rselectors._rselectors", name = $py_name)]
        pub struct $name;

        #[pymethods]
        impl $name {
            #[new]
            fn new() -> PyResult<PyClassInitializer<Self>> {
                Ok(PyClassInitializer::from(SelectorBase::new($kind)?).add_subclass($name))
            }

            $($extra)*
        }
    };
}

selector_class!(
    EpollSelector,
    "EpollSelector",
    Kind::Epoll,
    "Epoll-based selector.",
    /// The epoll fd.
    fn fileno(slf: &Bound<'_, Self>) -> PyResult<i32> {
        let base = slf.as_super().get();
        let state = base.lock();
        match state.core.backend().fileno() {
            Some(Ok(fd)) => Ok(fd),
            Some(Err(err)) => Err(backend_error(err)),
            None => Err(backend_error(crate::backend::Error::Closed)),
        }
    }
);
selector_class!(
    PollSelector,
    "PollSelector",
    Kind::Poll,
    "Poll-based selector."
);
selector_class!(
    SelectSelector,
    "SelectSelector",
    Kind::Select,
    "Select-based selector."
);

/// The read-only, live view `get_map()` returns; Python mixes in `collections.abc.Mapping`.
#[pyclass(
    frozen,
    subclass,
    module = "rselectors._rselectors",
    name = "_SelectorMappingBase"
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

    fn __len__(&self, py: Python<'_>) -> usize {
        self.selector.bind(py).get().lock().core.keys().len()
    }

    fn __getitem__(&self, py: Python<'_>, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        self.selector.bind(py).get().getitem(fileobj)
    }

    fn __contains__(&self, py: Python<'_>, fileobj: &Bound<'_, PyAny>) -> PyResult<bool> {
        let sel = self.selector.bind(py).get();
        let fd = sel.lookup(fileobj)?;
        Ok(sel.key_for(py, fd).is_some())
    }

    #[pyo3(signature = (fileobj, default=None))]
    fn get(
        &self,
        py: Python<'_>,
        fileobj: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let sel = self.selector.bind(py).get();
        let fd = sel.lookup(fileobj)?;
        Ok(match sel.key_for(py, fd) {
            Some(key) => key.into_any(),
            None => default.unwrap_or_else(|| py.None()),
        })
    }

    fn __iter__(&self, py: Python<'_>) -> SelectorMappingIter {
        let state = self.selector.bind(py).get().lock();
        let len = state.core.keys().len();
        SelectorMappingIter {
            selector: self.selector.clone_ref(py),
            cursor: 0,
            len: Some(len),
            remaining: len,
        }
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
}

#[pymethods]
impl SelectorMappingIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let state = self.selector.bind(py).get().lock();
        let keys = state.core.keys();
        if self.len != Some(keys.len()) {
            self.len = None;
            return Err(PyRuntimeError::new_err(
                "dictionary changed size during iteration",
            ));
        }
        let Some((next, _, entry)) = keys.entry_at(self.cursor) else {
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
        Ok(Some(entry.field(py, 1).unbind()))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.selector)
    }
}

/// Builds `SelectorKey` and the mapping class, as the stdlib does at import.
fn init_types(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
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
            "Optional opaque data associated to this file object.\nFor example, this could be \
             used to store a per-client session ID.",
        ),
    ] {
        key_cls.getattr(field)?.setattr("__doc__", doc)?;
    }
    m.add("SelectorKey", &key_cls)?;
    let _ = SELECTOR_KEY.set(py, key_cls.cast_into::<PyType>()?.unbind());

    let mapping_abc = py.import("collections.abc")?.getattr("Mapping")?;
    let base = py.get_type::<SelectorMapping>();
    let namespace = PyDict::new(py);
    namespace.set_item("__slots__", PyTuple::empty(py))?;
    namespace.set_item("__module__", MODULE)?;
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

#[pymodule]
fn _rselectors(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("EVENT_READ", crate::backend::READ)?;
    m.add("EVENT_WRITE", crate::backend::WRITE)?;
    m.add_class::<SelectorBase>()?;
    m.add_class::<EpollSelector>()?;
    m.add_class::<PollSelector>()?;
    m.add_class::<SelectSelector>()?;
    m.add_class::<SelectorMapping>()?;
    init_types(m)
}
