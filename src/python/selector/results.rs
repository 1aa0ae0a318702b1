//! `select()`'s result list, `[(key, events & key.events), ...]`, made of the ready fds found
//! under the lock, and the per-key cache of those tuples that makes reporting a ready fd
//! again cost a list append (kept in the entries: `entry.rs`).

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::base::SelectorBase;
use super::class_rules::OsSteps;
use super::entry::{Ready, ReadyList, ResultCache};
use crate::python::events::events_as_i64;
use crate::python::fd::{is_plain_int, python_3_13};
use pyo3::exceptions::PyKeyError;

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
                if !is_plain_int(&stored_fd) && self.class.steps != OsSteps::Sets {
                    // (SelectSelector walks the fd objects of its sets instead: `select_steps.rs`.)
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

/// The list of the cached tuples of `ready` (the others, `Gone`, leave no slot: there are
/// none once `ready_list` dropped them), emptying it.
fn fill_list<'py>(py: Python<'py>, ready: &mut ReadyList) -> PyResult<Bound<'py, PyList>> {
    let len = ready.len();
    let list = new_list(py, len)?;
    let items = ready.as_ptr();
    // SAFETY: the vector forgets its items first (no drain to drop afterwards); each is then
    // moved out of its buffer once, below.
    unsafe { ready.set_len(0) };
    for i in 0..len {
        // SAFETY: `i < len`: an initialised item the vector no longer owns, read once.
        let item = unsafe { std::ptr::read(items.add(i)) };
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
