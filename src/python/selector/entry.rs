//! What the table holds per fd (`Entry`: the key, and the cache of `select()`'s result
//! tuples for it), and one ready fd as `select()` finds it under the lock (`Ready`).

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use smallvec::SmallVec;

use crate::python::fd::same_without_python;

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
