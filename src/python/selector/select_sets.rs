//! SelectSelector's `_readers` and `_writers`: the stdlib keeps its fds in two Python sets,
//! and what a user sees of them follows from their order and hashing: the order `select()`
//! walks ready fds in, the sets a replaced `_select` is handed, the bad fd `select.select`
//! names first. Ours are real sets, changed where the stdlib changes its own (the core keeps
//! its copy for the wait); the steps that user code can watch run as the running version's
//! selectors.py writes them (`rselectors/_select.py`).

use std::sync::atomic::{AtomicU8, Ordering};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyCFunction, PyList, PySet, PyTuple};

use super::base::SelectorBase;
use super::results::{Ready, ReadyList};
use crate::backend::{READ, WRITE};
use crate::python::fd::{hash_as_dict_key, is_plain_int, python_3_13, warn_if_bool_fd};

/// The two sets of a SelectSelector.
pub(super) struct SelectSets {
    pub(super) readers: Py<PySet>,
    pub(super) writers: Py<PySet>,
    /// What `select()` must do beyond the OS's answer, in bits (one load for the common
    /// case, none set): `SUBCLASSED`, `KEYLESS`, `REPLACED`.
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
}

impl SelectSets {
    pub(super) fn new(py: Python<'_>) -> PyResult<Self> {
        Ok(SelectSets {
            readers: PySet::empty(py)?.unbind(),
            writers: PySet::empty(py)?.unbind(),
            flags: AtomicU8::new(0),
        })
    }
}

/// What `rselectors/_select.py` hands over at import: its two steps.
struct Steps {
    through: Py<PyAny>,
    ready_keys: Py<PyAny>,
}

static STEPS: PyOnceLock<Steps> = PyOnceLock::new();

fn steps(py: Python<'_>) -> PyResult<&Steps> {
    STEPS.get(py).ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err("rselectors._select was not imported")
    })
}

/// `_rselectors._set_select_steps(select_through, ready_keys)`.
#[pyfunction]
pub(crate) fn _set_select_steps(through: Bound<'_, PyAny>, ready_keys: Bound<'_, PyAny>) {
    let py = through.py();
    let _ = STEPS.set(
        py,
        Steps {
            through: through.unbind(),
            ready_keys: ready_keys.unbind(),
        },
    );
}

/// `selector._fd_to_key.get`, for `rselectors/_select.py`.
fn key_get<'py>(selector: &Bound<'py, SelectorBase>) -> PyResult<Bound<'py, PyCFunction>> {
    let py = selector.py();
    let selector = selector.clone().unbind();
    PyCFunction::new_closure(
        py,
        Some(c"get"),
        None,
        move |args: &Bound<'_, PyTuple>, _kwargs| -> PyResult<Option<Py<PyTuple>>> {
            let fd = args.get_item(0)?;
            hash_as_dict_key(&fd)?;
            selector.get().key_for(&fd, fd.extract::<u64>().ok())
        },
    )
}

/// How `select()` ends on a SelectSelector with ready fds: the native result list, reordered,
/// or the list the Python-level steps made.
pub(super) enum Ordered<'py> {
    Native(ReadyList),
    Done(Bound<'py, PyList>),
}

impl SelectorBase {
    /// `self._readers.add(fd)` for `READ`, `self._writers.add(fd)` for `WRITE`.
    pub(super) fn add_to_sets(&self, fd_obj: &Bound<'_, PyAny>, bit: u8) -> PyResult<()> {
        if let Some(sets) = &self.sets {
            let py = fd_obj.py();
            let set = if bit == READ {
                &sets.readers
            } else {
                &sets.writers
            };
            if !is_plain_int(fd_obj) {
                sets.set(SUBCLASSED, true);
            }
            if fd_obj.is_exact_instance_of::<PyBool>() {
                sets.set(BOOLS, true);
            }
            set.bind(py).add(fd_obj)?;
        }
        Ok(())
    }

    /// `self._readers.discard(key.fd)`, then `self._writers.discard(key.fd)`; the core's copy
    /// follows each (a discard that raises leaves the fd in that set and the next).
    pub(super) fn discard_from_sets(&self, fd_obj: &Bound<'_, PyAny>, fd: u64) -> PyResult<()> {
        if let Some(sets) = &self.sets {
            let py = fd_obj.py();
            for (set, bit) in [(&sets.readers, READ), (&sets.writers, WRITE)] {
                if let Err(err) = set.bind(py).discard(fd_obj) {
                    // The fd stays in the set, its key gone.
                    sets.set(KEYLESS, true);
                    return Err(err);
                }
                let mut state = self.lock()?;
                let left = state.core.interest(fd).unwrap_or(0) & !bit;
                // A select() set (an interest of 0 drops the fd): cannot fail.
                let _ = state.core.modify_interest(fd, left);
            }
        }
        Ok(())
    }

    /// `select.select(self._readers, self._writers, [], 0)`, for its error (the caller knows
    /// one of the fds is bad: it raises before it waits).
    pub(super) fn select_module_error(&self, py: Python<'_>) -> Option<PyErr> {
        let sets = self.sets.as_ref()?;
        let call = || -> PyResult<()> {
            let select = py.import(intern!(py, "select"))?;
            let none = PyList::empty(py);
            let args = (sets.readers.bind(py), sets.writers.bind(py), none, 0);
            select.call_method1(intern!(py, "select"), args)?;
            Ok(())
        };
        call().err()
    }

    /// A SelectSelector whose `_select` is not `select.select` selects through it, called
    /// as `self._select(...)` with its sets and the caller's timeout: None for the native one.
    pub(super) fn select_through<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(sets) = &slf.get().sets else {
            return Ok(None);
        };
        if !sets.has(REPLACED) {
            return Ok(None);
        }
        Self::select_through_replaced(slf, sets, timeout).map(Some)
    }

    #[inline(never)]
    fn select_through_replaced<'py>(
        slf: &Bound<'py, Self>,
        sets: &SelectSets,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let args = (
            slf,
            sets.readers.bind(py),
            sets.writers.bind(py),
            timeout,
            key_get(slf)?,
        );
        Ok(steps(py)?
            .through
            .bind(py)
            .call1(args)?
            .cast_into::<PyList>()?)
    }

    /// 3.13's "bool is used as a file descriptor", once for each bool in the readers, then in
    /// the writers, as `select.select` converts them before its wait.
    pub(super) fn warn_for_bools_in_sets(&self, py: Python<'_>) -> PyResult<()> {
        let Some(sets) = &self.sets else {
            return Ok(());
        };
        if !sets.has(BOOLS) || !python_3_13(py) {
            return Ok(());
        }
        let mut counts = [0usize; 2];
        for (count, set) in counts.iter_mut().zip([&sets.readers, &sets.writers]) {
            // A copy (list(set), one critical section without a GIL): another thread may
            // change the set meanwhile, as in `in_stdlib_order`.
            let snapshot = py.get_type::<PyList>().call1((set.bind(py),))?;
            for obj in snapshot.cast_into::<PyList>()?.iter() {
                *count += usize::from(obj.is_exact_instance_of::<PyBool>());
            }
        }
        // (Warning may run Python code: not while the sets are iterated.)
        for _ in 0..counts[0] + counts[1] {
            warn_if_bool_fd(&PyBool::new(py, true))?;
        }
        Ok(())
    }

    /// Whether `select()` needs every ready fd, keyed or not, for its order: the sets may
    /// hold one without a key, or an int subclass (whose hashes the stdlib's steps take); or
    /// a bool (its warnings come between the wait's start and its system call).
    pub(super) fn needs_every_ready_fd(&self) -> bool {
        self.sets
            .as_ref()
            .is_some_and(|sets| sets.has(KEYLESS | SUBCLASSED | BOOLS))
    }

    /// Notes that the sets may now hold an fd without a key.
    pub(super) fn sets_may_be_keyless(&self) {
        if let Some(sets) = &self.sets {
            sets.set(KEYLESS, true);
        }
    }

    /// SelectSelector's ready fds (`all`: every fd the wait found, keyed or not, and `ready`:
    /// those with a key) in the order the stdlib walks them, `set(r) | set(w)`, where `r` and
    /// `w` list the ready fds in its sets' order. One plain fd needs no ordering; int
    /// subclasses (their hashes run) go through the stdlib's own steps.
    pub(super) fn in_stdlib_order<'py>(
        slf: &Bound<'py, Self>,
        mut all: Vec<(u64, u8)>,
        ready: ReadyList,
    ) -> PyResult<Ordered<'py>> {
        let py = slf.py();
        let this = slf.get();
        let subclassed = |item: &Ready| match item {
            Ready::Build { key, .. } => key.bind(py).get_item(1).is_ok_and(|fd| !is_plain_int(&fd)),
            _ => false,
        };
        let Some(sets) = &this.sets else {
            return Ok(Ordered::Native(ready));
        };
        let subclassed_in_sets = sets.has(SUBCLASSED) && !all.is_empty();
        if all.len() < 2 && !subclassed_in_sets && !ready.iter().any(subclassed) {
            return Ok(Ordered::Native(ready));
        }
        all.sort_unstable();
        let ready_for = |obj: &Bound<'_, PyAny>, bit: u8| {
            obj.extract::<u64>().ok().is_some_and(|n| {
                all.binary_search_by_key(&n, |&(fd, _)| fd)
                    .is_ok_and(|i| all[i].1 & bit != 0)
            })
        };
        let (r, w) = (PyList::empty(py), PyList::empty(py));
        let mut plain = !ready.iter().any(subclassed);
        for (set, bit, list) in [(&sets.readers, READ, &r), (&sets.writers, WRITE, &w)] {
            // A copy first, as select.select() takes one (PySequence_Fast): what runs below
            // may let another thread change the set (always, without a GIL), and a set
            // iterated meanwhile raises "Set changed size during iteration". list(set) copies
            // in the set's order, in one critical section on a free-threaded build.
            let snapshot = py.get_type::<PyList>().call1((set.bind(py),))?;
            for obj in snapshot.cast_into::<PyList>()?.iter() {
                if ready_for(&obj, bit) {
                    plain &= is_plain_int(&obj);
                    list.append(obj)?;
                }
            }
        }
        if !plain {
            let ready_keys = steps(py)?.ready_keys.bind(py);
            return Ok(Ordered::Done(
                ready_keys
                    .call1((slf, r, w, key_get(slf)?))?
                    .cast_into::<PyList>()?,
            ));
        }
        // Plain ints: no user code runs in the set operations, only the order matters.
        let walked = PySet::new(py, &r)?.as_any().bitor(PySet::new(py, &w)?)?;
        let mut slots: Vec<Option<Ready>> = ready.into_iter().map(Some).collect();
        // The slot of each fd, by fd: a select() may find a thousand ready.
        let mut by_fd: Vec<(u64, usize)> = (slots.iter().enumerate())
            .filter_map(|(i, slot)| Some((slot.as_ref()?.fd_events()?.0, i)))
            .collect();
        by_fd.sort_unstable();
        let mut ordered = ReadyList::new();
        for obj in walked.try_iter()? {
            let Ok(fd) = obj?.extract::<u64>() else {
                continue;
            };
            if let Ok(at) = by_fd.binary_search_by_key(&fd, |&(f, _)| f) {
                if let Some(item) = slots[by_fd[at].1].take() {
                    ordered.push(item);
                }
            }
        }
        Ok(Ordered::Native(ordered))
    }
}
