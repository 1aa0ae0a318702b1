//! The `_Selector` base class: its class's rules, the state behind its lock, and what lives
//! beside the lock. Its Python methods are in `methods.rs`.
//! The state's `Mutex` is never held across a wait, a call into Python, or the allocation or
//! drop of a Python object (either can run the garbage collector, and a `__del__` could
//! re-enter); under it Python objects are only cloned (an incref).

use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;

use super::class_rules::{Class, OsSteps};
use super::entry::Entry;
use super::poller::CustomPoller;
use super::select_sets::SelectSets;
use crate::backend::AnyBackend;
use crate::lock::{OwnedGuard, OwnedMutex, Reentered};
use crate::python::errors::os_error;
use crate::selector::Selector;

pub(super) struct State {
    pub(super) core: Selector<AnyBackend, Entry>,
    /// The mapping `get_map()` hands out, made on first use, dropped by `close()`.
    pub(super) mapping: Option<Py<PyAny>>,
}

/// The shared base of the selector classes.
#[pyclass(
    frozen,
    subclass,
    module = "rselectors._rselectors",
    name = "_Selector"
)]
pub struct SelectorBase {
    /// What the stdlib's class does its own way (`class_rules.rs`).
    pub(super) class: Class,
    pub(super) state: OwnedMutex<State>,
    /// Set when the class's `_selector_cls` was replaced: the OS side goes through it
    /// (`os_steps.rs`, `poller.rs`).
    pub(super) poller: OnceLock<CustomPoller>,
    /// Set by `close()` (under the lock, beside dropping the mapping): `get_map()` answers
    /// None from then on. Outside the lock, so `get_key` checks it without a lock round trip.
    pub(super) closed: AtomicBool,
    /// SelectSelector's `_readers` and `_writers` (`select_sets.rs`); None for the others.
    pub(super) sets: Option<SelectSets>,
}

impl SelectorBase {
    pub(super) fn new(py: Python<'_>, class: Class) -> PyResult<Self> {
        let sets = match class.steps {
            OsSteps::Sets => Some(SelectSets::new(py)?),
            _ => None,
        };
        let backend = AnyBackend::open(class.mechanism).map_err(|e| os_error(&e))?;
        Ok(SelectorBase {
            class,
            state: OwnedMutex::new(State {
                core: Selector::new(backend),
                mapping: None,
            }),
            poller: OnceLock::new(),
            closed: AtomicBool::new(false),
            sets,
        })
    }

    /// The state. Only native steps run under it; if Python code ever re-enters the selector
    /// while this thread holds it, the call fails loudly instead of deadlocking.
    #[inline]
    pub(super) fn lock(&self) -> PyResult<OwnedGuard<'_, State>> {
        // A thread that has to wait for the lock detaches meanwhile: on a free-threaded build
        // a stop-the-world pause (the GC) must not wait on a thread blocked here. Uncontended,
        // as it always is under the GIL, this is one try_lock.
        let locked = self.state.lock_with(|mutex| {
            // SAFETY: only methods called from Python take the lock (never inside `detach`),
            // so this thread is attached to the interpreter.
            let py = unsafe { Python::assume_attached() };
            mutex.lock_py_attached(py)
        });
        match locked {
            Ok(guard) => Ok(guard),
            Err(Reentered) => Err(reentered()),
        }
    }

    /// How many fds are registered.
    pub(crate) fn len(&self) -> PyResult<usize> {
        Ok(self.lock()?.core.keys().len())
    }

    /// The fd object of the first registration at or after `cursor` in registration order,
    /// with the cursor just past it.
    pub(crate) fn fd_at(
        &self,
        py: Python<'_>,
        cursor: usize,
    ) -> PyResult<Option<(usize, Py<PyAny>)>> {
        let state = self.lock()?;
        Ok(state
            .core
            .keys()
            .entry_at(cursor)
            .map(|(next, _, entry)| (next, entry.field(py, 1).unbind())))
    }
}

/// The error of a selector call made while this thread holds the selector's lock.
#[cold]
fn reentered() -> PyErr {
    PyRuntimeError::new_err(
        "rselectors: selector re-entered while this thread holds its lock (a bug in rselectors; \
         please report it)",
    )
}
