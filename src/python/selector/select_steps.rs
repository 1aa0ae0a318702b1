//! SelectSelector's own steps around its sets (`select_sets.rs`): adding and discarding fds
//! where the stdlib's `register` and `unregister` do, the order its `select()` walks ready
//! fds in, `select.select`'s own error for a bad fd, and a replaced `_select`. The steps that
//! user code can watch run as the running version's selectors.py writes them
//! (`rselectors/_select.py`).

use pyo3::exceptions::PyInterruptedError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyCFunction, PyList, PySet, PyTuple};

use super::base::SelectorBase;
use super::entry::{Ready, ReadyList};
use super::select_sets::SelectSets;
use crate::backend::{READ, WRITE};
use crate::python::fd::{hash_as_dict_key, is_plain_int, python_3_13, warn_if_bool_fd};

/// What `rselectors/_select.py` hands over at import: its two steps.
struct Steps {
    after_select: Py<PyAny>,
    ready_keys: Py<PyAny>,
}

static STEPS: PyOnceLock<Steps> = PyOnceLock::new();

fn steps(py: Python<'_>) -> PyResult<&Steps> {
    STEPS.get(py).ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err("rselectors._select was not imported")
    })
}

/// `_rselectors._set_select_steps(after_select, ready_keys)`.
#[pyfunction]
pub(crate) fn _set_select_steps(after_select: Bound<'_, PyAny>, ready_keys: Bound<'_, PyAny>) {
    let py = after_select.py();
    let _ = STEPS.set(
        py,
        Steps {
            after_select: after_select.unbind(),
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
                sets.note_subclassed();
            }
            if fd_obj.is_exact_instance_of::<PyBool>() {
                sets.note_bool();
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
                    sets.note_keyless();
                    return Err(err);
                }
                self.lock()?.core.unwatch(fd, bit);
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
        if !sets.replaced() {
            return Ok(None);
        }
        Self::select_through_replaced(slf, sets, timeout).map(Some)
    }

    /// `timeout = None if timeout is None else max(timeout, 0)`, then `r, w, _ =
    /// self._select(self._readers, self._writers, [], timeout)` (`except InterruptedError:
    /// return ready`), and the rest of the stdlib's `select()` on what it returned.
    #[inline(never)]
    fn select_through_replaced<'py>(
        slf: &Bound<'py, Self>,
        sets: &SelectSets,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let timeout = match timeout {
            None => None,
            // `max(timeout, 0)` keeps `timeout` unless `0 > timeout`.
            Some(t) => {
                let zero = 0i32.into_pyobject(py)?.into_any();
                Some(if zero.gt(t)? { zero } else { t.clone() })
            }
        };
        let args = (
            sets.readers.bind(py),
            sets.writers.bind(py),
            PyList::empty(py),
            timeout,
        );
        let result = match slf.call_method1(intern!(py, "_select"), args) {
            Err(err) if err.is_instance_of::<PyInterruptedError>(py) => {
                return Ok(PyList::empty(py))
            }
            other => other?,
        };
        // `r, w, _ = ...` and the ready keys, as selectors.py writes them.
        let after = steps(py)?.after_select.bind(py);
        Ok(after
            .call1((slf, result, key_get(slf)?))?
            .cast_into::<PyList>()?)
    }

    /// Whether `select()` has bools to warn about first: 3.13's select.select warns for each.
    pub(super) fn has_bools_to_warn(&self, py: Python<'_>) -> bool {
        self.sets
            .as_ref()
            .is_some_and(|sets| sets.had_bool() && python_3_13(py))
    }

    /// 3.13's "bool is used as a file descriptor", once for each bool in the readers, then in
    /// the writers, as `select.select` converts them before its wait.
    pub(super) fn warn_for_bools_in_sets(&self, py: Python<'_>) -> PyResult<()> {
        let Some(sets) = self.sets.as_ref().filter(|_| self.has_bools_to_warn(py)) else {
            return Ok(());
        };
        let mut counts = [0usize; 2];
        for (count, set) in counts.iter_mut().zip([&sets.readers, &sets.writers]) {
            // A copy (list(set), one critical section without a GIL): another thread may
            // change the set meanwhile, as in `in_stdlib_order`.
            for obj in list_of(set.bind(py))?.iter() {
                *count += usize::from(obj.is_exact_instance_of::<PyBool>());
            }
        }
        // (Warning may run Python code: not while the sets are iterated.)
        for _ in 0..counts[0] + counts[1] {
            warn_if_bool_fd(&PyBool::new(py, true))?;
        }
        Ok(())
    }

    /// Whether `select()` needs every ready fd, keyed or not, for its order
    /// (`SelectSets::need_every_ready_fd`).
    pub(super) fn needs_every_ready_fd(&self) -> bool {
        self.sets
            .as_ref()
            .is_some_and(SelectSets::need_every_ready_fd)
    }

    /// Notes that the sets may now hold an fd without a key.
    pub(super) fn sets_may_be_keyless(&self) {
        if let Some(sets) = &self.sets {
            sets.note_keyless();
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
        let Some(sets) = &this.sets else {
            return Ok(Ordered::Native(ready));
        };
        // Whether a ready key's field (1: its fd, 2: its events) is no plain int: Python code
        // runs in its hash and comparisons, or in `events & key.events`.
        let any_key_field_not_plain = |index| {
            ready.iter().any(|item| match item {
                Ready::Build { key, .. } => key
                    .bind(py)
                    .get_item(index)
                    .is_ok_and(|v| !is_plain_int(&v)),
                _ => false,
            })
        };
        let subclassed_ready = any_key_field_not_plain(1);
        let subclassed_in_sets = sets.subclassed() && !all.is_empty();
        if all.len() < 2 && !subclassed_in_sets && !subclassed_ready {
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
        // A key whose `events` is no plain int runs Python code in `events & key.events`,
        // which may register an fd found ready without a key: the stdlib looks each fd up
        // only when it reaches it, and then reports that one too. The Python-level steps do.
        let keyless_ready = all.len() > ready.iter().filter_map(Ready::fd_events).count();
        let mut plain = !(subclassed_ready || (keyless_ready && any_key_field_not_plain(2)));
        for (set, bit, list) in [(&sets.readers, READ, &r), (&sets.writers, WRITE, &w)] {
            // A copy first, as select.select() takes one (PySequence_Fast): what runs below
            // may let another thread change the set (always, without a GIL), and a set
            // iterated meanwhile raises "Set changed size during iteration".
            for obj in list_of(set.bind(py))?.iter() {
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

/// `list(set)`: a copy in the set's order, taken in one critical section on a free-threaded
/// build, that another thread's changes to the set cannot break while it is walked.
fn list_of<'py>(set: &Bound<'py, PySet>) -> PyResult<Bound<'py, PyList>> {
    Ok(set
        .py()
        .get_type::<PyList>()
        .call1((set,))?
        .cast_into::<PyList>()?)
}
