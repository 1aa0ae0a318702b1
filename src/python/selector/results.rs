//! `select()`'s result list, `[(key, events & key.events), ...]`, and the per-key cache of
//! those tuples that makes reporting a ready fd again cost a list append.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use smallvec::SmallVec;

use super::base::SelectorBase;
use super::lookup::same_without_python;
use crate::backend::Kind;
use crate::python::events::events_as_i64;
use crate::python::fd::{is_plain_int, python_3_13};
use pyo3::exceptions::PyKeyError;

/// What the table holds per fd: the `SelectorKey` handed to Python and, once `select()` has
/// reported the fd, what makes reporting it again cheap. Kept to two pointers: the table
/// holds one per registration, and the stdlib's dict is the memory bar.
pub(super) struct Entry {
    pub(super) key: Py<PyTuple>,
    pub(super) results: Option<Box<ResultCache>>,
}

/// The `(key, events)` tuples `select()` returned for one key, indexed by `events`, so a ready
/// fd costs a list append.
pub(super) struct ResultCache {
    /// `key.events & 3` when `key.events` is a plain int (all that `events & key.events` can
    /// keep of an `events` in 0..=3); None when it is something else, computed in Python.
    pub(super) mask: Option<u8>,
    pub(super) tuples: [Option<Py<PyTuple>>; 4],
}

impl Entry {
    pub(super) fn new(key: Py<PyTuple>) -> Self {
        Entry { key, results: None }
    }

    /// What `select()` reports for this entry when the OS says `events`: the cached tuple, or
    /// what is needed to build one.
    pub(super) fn ready(&self, py: Python<'_>, fd: u64, events: u8) -> Ready {
        let mask = self.results.as_ref().map(|cache| cache.mask);
        if let Some(cache) = &self.results {
            if let Some(tuple) = cache
                .mask
                .and_then(|m| cache.tuples[usize::from(events & m)].as_ref())
            {
                return Ready::Cached {
                    fd,
                    events,
                    tuple: tuple.clone_ref(py),
                };
            }
        }
        Ready::Build {
            fd,
            key: self.key.clone_ref(py),
            events,
            mask,
        }
    }

    /// Whether the key's fd object and `fd_obj`, under one number, are the same dict key
    /// without running Python code (`same_without_python`).
    #[inline]
    pub(super) fn same_fd_without_python(&self, fd_obj: &Bound<'_, PyAny>) -> bool {
        // SAFETY: as in `field`: a filled four-field SelectorKey.
        let stored = unsafe { self.key.bind(fd_obj.py()).get_borrowed_item_unchecked(1) };
        same_without_python(&stored, fd_obj)
    }

    /// Field `index` (0 to 3) of the key.
    #[inline]
    pub(super) fn field<'py>(&self, py: Python<'py>, index: usize) -> Bound<'py, PyAny> {
        assert!(index < 4, "SelectorKey has four fields");
        // SAFETY: the table only holds keys made by `new_key` or `BlankKey::fill`: SelectorKey
        // tuples of four filled fields.
        unsafe { self.key.bind(py).get_item_unchecked(index) }
    }
}

impl SelectorBase {
    /// `[(key, events & key.events), ...]`, the list `select()` returns. Tuples built here
    /// are cached in their entry (if it still holds the same key) for the next call.
    /// The list is made from `ready` in place (no copy of its inline buffer), emptying it.
    #[inline]
    pub(super) fn ready_list<'py>(
        &self,
        py: Python<'py>,
        ready: &mut ReadyList,
    ) -> PyResult<Bound<'py, PyList>> {
        // The steady state: every fd reported before with the same events, its tuple cached.
        if ready
            .iter()
            .all(|item| matches!(item, Ready::Cached { .. }))
        {
            return fill_list(py, ready);
        }
        self.build_ready_list(py, ready)
    }

    /// `ready_list` when some tuple is still to be built.
    #[inline(never)]
    fn build_ready_list<'py>(
        &self,
        py: Python<'py>,
        ready: &mut ReadyList,
    ) -> PyResult<Bound<'py, PyList>> {
        // First every tuple, in the kernel's order, then the list, filled where no Python code
        // can see it half-made. Building a tuple runs Python code when a key's `events` is no
        // plain int (`events & key.events`); that code may unregister later fds, modify them
        // or close the selector, so from then on each fd is looked up again, as the stdlib
        // looks up each fd only when it reaches it.
        let mut built = Vec::new();
        let mut python_ran = false;
        for item in ready.iter_mut() {
            if let (true, Some((fd, events))) = (python_ran, item.fd_events()) {
                *item = match self.lock()?.core.keys().get(fd) {
                    Some(entry) => entry.ready(py, fd, events),
                    None => Ready::Gone,
                };
            }
            if let Ready::Build {
                fd,
                key,
                events,
                mask,
            } = item
            {
                let mut key = key.bind(py).clone();
                let stored_fd = key.get_item(1)?;
                let mut mask = *mask;
                if !is_plain_int(&stored_fd) && self.kind != Kind::Select {
                    // `fd_to_key.get(fd)` with the OS's plain int compares it with the stored
                    // int subclass: its `__eq__` runs, and may say no, or change the selector
                    // (the key is read after it: `key_for`). Such entries are never cached,
                    // so they always come this way.
                    python_ran = true;
                    let found = match self.key_for(fd.into_pyobject(py)?.as_any(), Some(*fd)) {
                        // Before 3.13, `_key_from_fd` answers None for a KeyError.
                        Err(err) if !python_3_13(py) && err.is_instance_of::<PyKeyError>(py) => {
                            None
                        }
                        other => other?,
                    };
                    match found {
                        Some(now) => key = now.into_bound(py),
                        None => {
                            *item = Ready::Gone;
                            continue;
                        }
                    }
                    mask = None;
                }
                let mask = match mask {
                    Some(mask) => mask,
                    None => events_as_i64(&key.get_item(2)?).map(|e| (e & 3) as u8),
                };
                let masked = mask.map(|m| usize::from(*events & m));
                let events_obj = match masked {
                    Some(m) => m.into_pyobject(py)?.into_any(),
                    None => {
                        python_ran = true;
                        events.into_pyobject(py)?.bitand(key.get_item(2)?)?
                    }
                };
                let tuple = PyTuple::new(py, [key.as_any(), &events_obj])?.unbind();
                if is_plain_int(&stored_fd) {
                    built.push((*fd, key.clone().unbind(), mask, masked, tuple.clone_ref(py)));
                }
                *item = Ready::Cached {
                    fd: *fd,
                    events: *events,
                    tuple,
                };
            }
        }
        if python_ran {
            ready.retain(|item| !matches!(item, Ready::Gone));
        }
        let list = fill_list(py, ready)?;
        if !built.is_empty() {
            let mut state = self.lock()?;
            for (fd, key, mask, masked, tuple) in built.iter_mut() {
                let Some(entry) = state.core.key_mut(*fd) else {
                    continue;
                };
                if !entry.key.is(&*key) {
                    continue;
                }
                let cache = entry.results.get_or_insert_with(|| {
                    Box::new(ResultCache {
                        mask: *mask,
                        tuples: Default::default(),
                    })
                });
                if let Some(m) = *masked {
                    if cache.tuples[m].is_none() {
                        cache.tuples[m] = Some(tuple.clone_ref(py));
                    }
                }
            }
        }
        drop(built);
        Ok(list)
    }
}

/// The ready fds of one `select()`: a few live on the stack.
pub(super) type ReadyList = SmallVec<[Ready; 8]>;

/// One ready fd, as found under the lock.
pub(super) enum Ready {
    /// The `(key, events)` tuple returned for the same key and events before.
    Cached {
        fd: u64,
        events: u8,
        tuple: Py<PyTuple>,
    },
    /// A tuple to build; `mask` is the entry's cached mask, None when not yet known.
    Build {
        fd: u64,
        key: Py<PyTuple>,
        events: u8,
        mask: Option<Option<u8>>,
    },
    /// Unregistered by Python code that ran while the list was built.
    Gone,
}

impl Ready {
    /// The fd and the events the OS reported for it.
    pub(super) fn fd_events(&self) -> Option<(u64, u8)> {
        match *self {
            Ready::Cached { fd, events, .. } | Ready::Build { fd, events, .. } => {
                Some((fd, events))
            }
            Ready::Gone => None,
        }
    }
}

/// The list of the cached tuples of `ready` (the others, `Gone`, leave no slot: there are
/// none once `ready_list` dropped them), emptying it.
fn fill_list<'py>(py: Python<'py>, ready: &mut ReadyList) -> PyResult<Bound<'py, PyList>> {
    let list = new_list(py, ready.len())?;
    for (i, item) in ready.drain(..).enumerate() {
        if let Ready::Cached { tuple, .. } = item {
            // SAFETY: `list` has `ready.len()` empty slots and no one else has seen it; each
            // slot is filled once, with a reference the list takes over.
            unsafe {
                #[cfg(not(feature = "abi3"))]
                ffi::PyList_SET_ITEM(list.as_ptr(), i as ffi::Py_ssize_t, tuple.into_ptr());
                // The limited API's checked setter; it cannot fail on an in-range index.
                #[cfg(feature = "abi3")]
                ffi::PyList_SetItem(list.as_ptr(), i as ffi::Py_ssize_t, tuple.into_ptr());
            };
        }
    }
    Ok(list)
}

/// A new list of `len` empty slots, for the caller to fill before anyone else sees it.
pub(super) fn new_list(py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyList>> {
    // SAFETY: PyList_New returns a new reference (or NULL with an exception set).
    unsafe {
        let list = ffi::PyList_New(len as ffi::Py_ssize_t);
        if list.is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr(py, list).cast_into_unchecked())
    }
}
