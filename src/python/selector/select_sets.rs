//! SelectSelector's `_readers` and `_writers`: the stdlib keeps its fds in two Python sets,
//! and what a user sees of them follows from their order and hashing: the order `select()`
//! walks ready fds in, the sets a replaced `_select` is handed, the bad fd `select.select`
//! names first. Ours are real sets (the core keeps its copy for the wait), with what
//! `select()` must do beyond the OS's answer; `select_steps.rs` changes and reads them.

use std::sync::atomic::{AtomicU8, Ordering};

use pyo3::prelude::*;
use pyo3::types::PySet;

/// The two sets of a SelectSelector.
pub(super) struct SelectSets {
    pub(super) readers: Py<PySet>,
    pub(super) writers: Py<PySet>,
    /// What `select()` must do beyond the OS's answer, in bits (one load for the common
    /// case, none set): `SUBCLASSED`, `KEYLESS`, `REPLACED`, `BOOLS`.
    flags: AtomicU8,
}

/// An int subclass went in: from then on every `select()` that finds an fd ready goes
/// through the stdlib's steps (their hashes run).
const SUBCLASSED: u8 = 1;
/// The sets may hold an fd without a key (after close(), or user code run between a key's
/// steps): from then on `select()` asks the OS for every ready fd, as they all count for the
/// order of the result.
const KEYLESS: u8 = 2;
/// `_select` is not `select.select` (the class's when the selector was made, or one set on
/// the instance since: `rselectors/__init__.py`).
const REPLACED: u8 = 4;
/// A bool went in: `select.select` warns about each one it is given (3.13+).
const BOOLS: u8 = 8;

impl SelectSets {
    pub(super) fn new(py: Python<'_>) -> PyResult<Self> {
        Ok(SelectSets {
            readers: PySet::empty(py)?.unbind(),
            writers: PySet::empty(py)?.unbind(),
            flags: AtomicU8::new(0),
        })
    }

    fn set(&self, flag: u8, on: bool) {
        match on {
            true => self.flags.fetch_or(flag, Ordering::Relaxed),
            false => self.flags.fetch_and(!flag, Ordering::Relaxed),
        };
    }

    fn has(&self, flags: u8) -> bool {
        self.flags.load(Ordering::Relaxed) & flags != 0
    }

    /// Notes that `_select` is (or is no longer) replaced.
    pub(super) fn watch_select(&self, replaced: bool) {
        self.set(REPLACED, replaced);
    }

    /// Whether `_select` is replaced.
    pub(super) fn replaced(&self) -> bool {
        self.has(REPLACED)
    }

    /// Notes that an int subclass went in.
    pub(super) fn note_subclassed(&self) {
        self.set(SUBCLASSED, true);
    }

    /// Whether an int subclass ever went in.
    pub(super) fn subclassed(&self) -> bool {
        self.has(SUBCLASSED)
    }

    /// Notes that a bool went in.
    pub(super) fn note_bool(&self) {
        self.set(BOOLS, true);
    }

    /// Whether a bool ever went in.
    pub(super) fn had_bool(&self) -> bool {
        self.has(BOOLS)
    }

    /// Notes that the sets may hold an fd without a key.
    pub(super) fn note_keyless(&self) {
        self.set(KEYLESS, true);
    }

    /// Whether `select()` needs every ready fd, keyed or not, for its order: the sets may
    /// hold one without a key, or an int subclass (whose hashes the stdlib's steps take); or
    /// a bool (its warnings come between the wait's start and its system call).
    pub(super) fn need_every_ready_fd(&self) -> bool {
        self.has(KEYLESS | SUBCLASSED | BOOLS)
    }
}
