//! The selector classes. Each keeps its state behind a `Mutex` that is never held across a
//! wait, a call into Python, or the allocation or drop of a Python object (either can run the
//! garbage collector, and a `__del__` could re-enter); under it Python objects are only
//! cloned (an incref).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::exceptions::{PyKeyError, PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBool, PyList, PySet, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};
use smallvec::SmallVec;

use super::convert::{
    backend_error, check_register_events, differs, differs_natively, events_as_i64, fileobj_to_fd,
    from_none, hash_as_dict_key, hash_as_set_element, interest_of, is_plain_int, os_error,
    parse_timeout, python_3_13, python_format, warn_if_bool_fd, FdNum, Kind, ParsedTimeout,
};
use super::poller::CustomPoller;
use super::{new_key, BlankKey, SELECTOR_MAPPING};
#[cfg(unix)]
use crate::backend::poll::Poll;
use crate::backend::{select::Select, AnyBackend, Backend, Wait};
use crate::lock::{OwnedGuard, OwnedMutex, Reentered};
use crate::selector::Selector;
use crate::sys::is_interrupted;
use crate::timeout::{self, Deadline, Remaining};

/// What the table holds per fd: the `SelectorKey` handed to Python and, once `select()` has
/// reported the fd, what makes reporting it again cheap. Kept to two pointers: the table
/// holds one per registration, and the stdlib's dict is the memory bar.
struct Entry {
    key: Py<PyTuple>,
    results: Option<Box<ResultCache>>,
}

/// The `(key, events)` tuples `select()` returned for one key, indexed by `events`, so a ready
/// fd costs a list append.
struct ResultCache {
    /// `key.events & 3` when `key.events` is a plain int (all that `events & key.events` can
    /// keep of an `events` in 0..=3); None when it is something else, computed in Python.
    mask: Option<u8>,
    tuples: [Option<Py<PyTuple>>; 4],
}

impl Entry {
    fn new(key: Py<PyTuple>) -> Self {
        Entry { key, results: None }
    }

    /// What `select()` reports for this entry when the OS says `events`: the cached tuple, or
    /// what is needed to build one.
    fn ready(&self, py: Python<'_>, fd: u64, events: u8) -> Ready {
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

    fn field<'py>(&self, py: Python<'py>, index: usize) -> Bound<'py, PyAny> {
        self.key
            .bind(py)
            .get_item(index)
            .expect("SelectorKey has four fields")
    }
}

struct State {
    core: Selector<AnyBackend, Entry>,
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
    state: OwnedMutex<State>,
    /// Set when the class's `_selector_cls` was replaced: the OS side goes through it.
    poller: OnceLock<CustomPoller>,
    /// How many registered fds are bools (`True`): a select() selector warns about them
    /// before each wait. Outside the lock, so that check costs no lock round trip.
    bool_fds: AtomicUsize,
    /// Set by `close()` (under the lock, beside dropping the mapping): `get_map()` answers
    /// None from then on. Outside the lock, so `get_key` checks it without a lock round trip.
    closed: AtomicBool,
}

impl SelectorBase {
    fn new(kind: Kind) -> PyResult<Self> {
        let backend = match kind {
            #[cfg(epoll)]
            Kind::Epoll => {
                AnyBackend::Epoll(crate::backend::epoll::Epoll::new().map_err(|e| os_error(&e))?)
            }
            #[cfg(kqueue)]
            Kind::Kqueue => {
                AnyBackend::Kqueue(crate::backend::kqueue::Kqueue::new().map_err(|e| os_error(&e))?)
            }
            #[cfg(unix)]
            Kind::Poll => AnyBackend::Poll(Poll::new()),
            #[allow(unreachable_patterns)]
            Kind::Epoll | Kind::Kqueue | Kind::Poll => {
                unreachable!("no such class on this platform")
            }
            Kind::Select => AnyBackend::Select(Select::new()),
        };
        Ok(SelectorBase {
            kind,
            state: OwnedMutex::new(State {
                core: Selector::new(backend),
                mapping: None,
            }),
            poller: OnceLock::new(),
            bool_fds: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// The state. Only native steps run under it; if Python code ever re-enters the selector
    /// while this thread holds it, the call fails loudly instead of deadlocking.
    fn lock(&self) -> PyResult<OwnedGuard<'_, State>> {
        // SAFETY: only methods called from Python take the lock (never inside `detach`), so
        // this thread is attached to the interpreter.
        let py = unsafe { Python::assume_attached() };
        // A thread that has to wait for the lock detaches meanwhile: on a free-threaded build
        // a stop-the-world pause (the GC) must not wait on a thread blocked here. Uncontended,
        // as it always is under the GIL, this is one try_lock.
        self.state
            .lock_with(|mutex| mutex.lock_py_attached(py))
            .map_err(|Reentered| {
                PyRuntimeError::new_err(
                    "rselectors: selector re-entered while this thread holds its lock (a bug in \
                     rselectors; please report it)",
                )
            })
    }

    /// `_fileobj_lookup`: the fd of `fileobj` (as the Python object a key holds, and its
    /// number), or, when it no longer has a valid one, the fd it was registered under (an
    /// identity search, so closed files can be unregistered).
    fn lookup_fd_object<'py>(
        &self,
        fileobj: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, FdNum)> {
        let py = fileobj.py();
        match fileobj_to_fd(fileobj) {
            Err(err) if err.is_instance_of::<PyValueError>(py) => {
                let state = self.lock()?;
                let found = state
                    .core
                    .keys()
                    .iter()
                    .find(|(_, entry)| entry.field(py, 0).is(fileobj))
                    .map(|(fd, entry)| (entry.field(py, 1), Some(fd)));
                drop(state);
                found.ok_or(err)
            }
            result => result,
        }
    }

    /// The fd of `fileobj` for a lookup in the stdlib's `try: ... self._fd_to_key[fd] ...
    /// except KeyError: raise KeyError(f"{fileobj!r} is not registered") from None`:
    /// `fileno()` and the fd's hash run inside it, so a KeyError they raise becomes that one.
    /// `pop` for `dict.pop`, which hashes nothing when the dict is empty.
    fn lookup_in_try<'py>(
        &self,
        fileobj: &Bound<'py, PyAny>,
        pop: bool,
    ) -> PyResult<(Bound<'py, PyAny>, FdNum)> {
        self.in_try(fileobj, self.lookup_fd_object(fileobj), pop)
    }

    /// `lookup_in_try` with the `fileno()` lookup already made.
    fn in_try<'py>(
        &self,
        fileobj: &Bound<'py, PyAny>,
        found: PyResult<(Bound<'py, PyAny>, FdNum)>,
        pop: bool,
    ) -> PyResult<(Bound<'py, PyAny>, FdNum)> {
        let py = fileobj.py();
        let found = match found {
            // A plain int's hash runs no code: the common case returns at once.
            Ok((fd_obj, fd)) if is_plain_int(&fd_obj) => return Ok((fd_obj, fd)),
            Ok((fd_obj, fd)) => {
                let empty_pop = pop && self.len()? == 0;
                match empty_pop {
                    true => Ok((fd_obj, fd)),
                    false => hash_as_dict_key(&fd_obj).map(|()| (fd_obj, fd)),
                }
            }
            Err(err) => Err(err),
        };
        match found {
            Err(err) if err.is_instance_of::<PyKeyError>(py) => {
                Err(Self::not_registered(fileobj, Some(err)))
            }
            other => other,
        }
    }

    /// `self._fd_to_key.get(fd_obj)`, its hash taken already: the key stored under the same
    /// number, if the stored fd object also compares equal (an int subclass's `__eq__` runs,
    /// as in a dict lookup).
    fn key_for(&self, fd_obj: &Bound<'_, PyAny>, fd: FdNum) -> PyResult<Option<Py<PyTuple>>> {
        let py = fd_obj.py();
        let Some(fd) = fd else { return Ok(None) };
        let key = {
            let state = self.lock()?;
            match state.core.keys().get(fd) {
                Some(entry) => entry.key.clone_ref(py),
                None => return Ok(None),
            }
        };
        let stored_fd = key.bind(py).get_borrowed_item(1)?;
        Ok(same_dict_key(&stored_fd, fd_obj)?.then_some(key))
    }

    /// The key registered for `fileobj`, if any (a bad file object raises as in the stdlib):
    /// `_fd_to_key.get(_fileobj_lookup(fileobj))`.
    pub(super) fn find(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyTuple>>> {
        let (fd_obj, fd) = self.lookup_fd_object(fileobj)?;
        hash_as_dict_key(&fd_obj)?;
        self.key_for(&fd_obj, fd)
    }

    /// `KeyError("<fileobj!r> is not registered")`, raised `from None` by the stdlib while
    /// handling `handled` (the `KeyError` of its dict lookup, or one that `fileno()` raised);
    /// a failing `repr()` carries that as its context. (From 3.13 the mapping raises it
    /// outside any handler: `handled` is then None.)
    fn not_registered(fileobj: &Bound<'_, PyAny>, handled: Option<PyErr>) -> PyErr {
        let py = fileobj.py();
        match (fileobj.repr(), handled) {
            (Ok(r), None) => PyKeyError::new_err(format!("{r} is not registered")),
            (Ok(r), Some(handled)) => from_none(
                py,
                PyKeyError::new_err(format!("{r} is not registered")),
                handled,
            ),
            (Err(err), handled) => {
                if let Some(handled) = handled {
                    err.set_context(py, Some(handled));
                }
                err
            }
        }
    }

    /// The stdlib's `KeyError(fd)` from a dict lookup that found nothing.
    fn missing(fd_obj: &Bound<'_, PyAny>) -> PyErr {
        PyKeyError::new_err(fd_obj.clone().unbind())
    }

    /// The mapping's `[]`: the key, KeyError if none. Before 3.13 the lookup runs inside the
    /// `try` that rewords KeyErrors; from 3.13 only a missing key is reworded.
    pub(super) fn getitem(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        let py = fileobj.py();
        let found = self.lookup_fd_object(fileobj);
        let before_3_13 = !python_3_13(py);
        let (fd_obj, fd) = match found {
            // A plain int's hash runs no Python code, in any version.
            Ok((fd_obj, fd)) if is_plain_int(&fd_obj) => (fd_obj, fd),
            found if before_3_13 => self.in_try(fileobj, found, false)?,
            found => {
                let (fd_obj, fd) = found?;
                hash_as_dict_key(&fd_obj)?;
                (fd_obj, fd)
            }
        };
        self.key_for(&fd_obj, fd)?.ok_or_else(|| {
            let handled = before_3_13.then(|| Self::missing(&fd_obj));
            Self::not_registered(fileobj, handled)
        })
    }

    /// `Mapping.__contains__`: `self[fileobj]`, False on KeyError.
    pub(super) fn contains(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<bool> {
        match self.getitem(fileobj) {
            Ok(_) => Ok(true),
            Err(err) if err.is_instance_of::<PyKeyError>(fileobj.py()) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// `_BaseSelectorImpl.unregister(fileobj)` as the stdlib's `register` and `modify` call it
    /// once the OS refused: the key goes, found again through `fileno()` (no OS call);
    /// KeyError when a callback already took it.
    fn take_back(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<()> {
        let (fd_obj, fd) = self.lookup_in_try(fileobj, true)?;
        let removed = match fd {
            Some(fd) => self.lock()?.core.remove_key(fd),
            None => None,
        };
        match removed {
            Some(entry) => {
                self.forget_if_bool(&entry.field(fileobj.py(), 1));
                drop(entry);
                Ok(())
            }
            None => Err(Self::not_registered(fileobj, Some(Self::missing(&fd_obj)))),
        }
    }

    /// `except: super().unregister(fileobj); raise` around an OS registration that failed
    /// with `err`: the error raised, `err` itself or what the unregistering raised.
    fn undo_register(&self, fileobj: &Bound<'_, PyAny>, err: PyErr) -> PyErr {
        let py = fileobj.py();
        match self.take_back(fileobj) {
            Ok(()) => err,
            Err(raised) => {
                if raised
                    .value(py)
                    .getattr("__context__")
                    .is_ok_and(|c| c.is_none())
                {
                    raised.set_context(py, Some(err));
                }
                raised
            }
        }
    }

    /// `self._fd_to_key.pop(fd_obj)` and the OS registration with it. The dict compares the
    /// stored fd object with `fd_obj` first; where that can run Python code (an int
    /// subclass), it runs without the lock.
    fn pop_key(&self, fd_obj: &Bound<'_, PyAny>, fd: u64) -> PyResult<Option<Entry>> {
        let py = fd_obj.py();
        let mut state = self.lock()?;
        let stored = match state.core.keys().get(fd) {
            Some(entry) => entry.field(py, 1),
            None => return Ok(None),
        };
        if !same_without_python(&stored, fd_obj) {
            drop(state);
            if !same_dict_key(&stored, fd_obj)? {
                return Ok(None);
            }
            state = self.lock()?;
        }
        Ok(match self.poller.get() {
            None => state.core.unregister(fd),
            Some(_) => state.core.remove_key(fd),
        })
    }

    /// Keeps `bool_fds` in step when a key whose fd is a bool leaves the table.
    fn forget_if_bool(&self, fd_obj: &Bound<'_, PyAny>) {
        if fd_obj.is_exact_instance_of::<PyBool>() {
            // One less; a count already at zero stays there rather than wrapping.
            let mut count = self.bool_fds.load(Ordering::Relaxed);
            while count > 0 {
                match self.bool_fds.compare_exchange_weak(
                    count,
                    count - 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => count = now,
                }
            }
        }
    }

    /// `self._fd_to_key[key.fd] = key`: stored even if a callback unregistered the fd or
    /// closed the selector meanwhile, as a dict store is.
    fn store_key(&self, fd_obj: &Bound<'_, PyAny>, fd: u64, key: Py<PyTuple>) -> PyResult<()> {
        hash_as_dict_key(fd_obj)?;
        let old = self.lock()?.core.store_key(fd, Entry::new(key));
        drop(old);
        Ok(())
    }

    /// `KeyError("<fileobj!r> (FD <fd>) is already registered")`.
    fn already_registered(fileobj: &Bound<'_, PyAny>, fd_obj: &Bound<'_, PyAny>) -> PyErr {
        let message = || -> PyResult<String> {
            Ok(format!(
                "{} (FD {}) is already registered",
                fileobj.repr()?,
                python_format(fd_obj)?
            ))
        };
        match message() {
            Ok(text) => PyKeyError::new_err(text),
            Err(err) => err,
        }
    }

    /// How many fds are registered.
    pub(super) fn len(&self) -> PyResult<usize> {
        Ok(self.lock()?.core.keys().len())
    }

    /// The fd object of the first registration at or after `cursor` in registration order,
    /// with the cursor just past it.
    pub(super) fn fd_at(
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

    /// `[(key, events & key.events), ...]`, the list `select()` returns. Tuples built here
    /// are cached in their entry (if it still holds the same key) for the next call.
    fn ready_list<'py>(
        &self,
        py: Python<'py>,
        mut ready: ReadyList,
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
                let key = key.bind(py);
                let stored_fd = key.get_item(1)?;
                if !is_plain_int(&stored_fd) && self.kind != Kind::Select {
                    // `fd_to_key.get(fd)` with the OS's plain int compares it with the stored
                    // int subclass: its `__eq__` runs, and may say no. (Such entries are never
                    // cached, so they always come this way.)
                    python_ran = true;
                    if !stored_fd.eq(*fd)? {
                        *item = Ready::Gone;
                        continue;
                    }
                }
                let mask = match *mask {
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
        let list = new_list(py, ready.len())?;
        for (i, item) in ready.into_iter().enumerate() {
            if let Ready::Cached { tuple, .. } = item {
                // SAFETY: `list` has `ready.len()` empty slots and no one else has seen it;
                // each slot is filled once, with a reference the list takes over.
                unsafe {
                    #[cfg(not(feature = "abi3"))]
                    ffi::PyList_SET_ITEM(list.as_ptr(), i as ffi::Py_ssize_t, tuple.into_ptr());
                    // The limited API's checked setter; it cannot fail on an in-range index.
                    #[cfg(feature = "abi3")]
                    ffi::PyList_SetItem(list.as_ptr(), i as ffi::Py_ssize_t, tuple.into_ptr());
                };
            }
        }
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

    /// `_PollLikeSelector.modify` in one lock hold, for the common case where it needs no
    /// Python code: `events` and `data` compare with the key's natively, and the fd is no
    /// bool (3.13 warns about those). None, with nothing done, when the general path must
    /// run (an odd argument, a replaced `_selector_cls`, an fd not registered).
    fn modify_natively(
        &self,
        py: Python<'_>,
        fileobj: &Bound<'_, PyAny>,
        fd: u64,
        events: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyTuple>>> {
        if self.poller.get().is_some() || events_as_i64(events).is_none() {
            return Ok(None);
        }
        let interest = interest_of(events)?;
        let blank = BlankKey::new(py)?;
        let mut state = self.lock()?;
        let Some(entry) = state.core.keys().get(fd) else {
            return Ok(None);
        };
        let key = entry.key.bind(py).clone();
        let [old_fileobj, old_fd, old_events, old_data] = [0, 1, 2, 3].map(|i| entry.field(py, i));
        let (Some(events_changed), Some(data_changed), false) = (
            differs_natively(events, &old_events),
            differs_natively(data, &old_data),
            old_fd.is_exact_instance_of::<PyBool>(),
        ) else {
            drop(state);
            return Ok(None);
        };
        if !events_changed && !data_changed {
            drop(state);
            return Ok(Some(key.unbind()));
        }
        if events_changed {
            if let Err(err) = state.core.modify_interest(fd, interest) {
                drop(state);
                return Err(self.undo_register(fileobj, backend_error(err)));
            }
        }
        let new = blank.fill(&old_fileobj, &old_fd, events, data);
        let old = state.core.store_key(fd, Entry::new(new.clone_ref(py)));
        drop(state);
        drop(old);
        Ok(Some(new))
    }

    /// `select(0)`: a wait that cannot block, so it is made under the lock, with the GIL kept
    /// (releasing it would cost more than the system call).
    fn select_now<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut ready = ReadyList::new();
        let result = self.lock()?.core.poll_now(&mut |fd, entry, events| {
            ready.push(entry.ready(py, fd, events));
        });
        match result {
            Ok(()) => self.ready_list(py, ready),
            // The stdlib retries with what is left of a zero timeout: nothing.
            Err(crate::backend::Error::Os(err)) if is_interrupted(&err) => {
                drop(ready);
                py.check_signals()?;
                Ok(PyList::empty(py))
            }
            Err(err) => Err(self.wait_error(py, err)),
        }
    }

    /// The error of a wait that could not start. A SelectSelector holding an fd `select()`
    /// cannot take gets `select.select`'s own: it converts the readers, then the writers, in
    /// its sets' order, and raises for the first bad one (OverflowError or ValueError), where
    /// the backend checks in fd order. Its sets are asked for with the fds in registration
    /// order, which is the stdlib's own sets' order while nothing was unregistered.
    fn wait_error(&self, py: Python<'_>, err: crate::backend::Error) -> PyErr {
        use crate::backend::Error::{FdOutOfRange, FdTooLarge};
        if self.kind != Kind::Select || !matches!(err, FdOutOfRange | FdTooLarge) {
            return backend_error(err);
        }
        let ask_stdlib = || -> PyResult<()> {
            let mut watched = Vec::new();
            {
                let state = self.lock()?;
                // The only backend on Windows.
                #[allow(irrefutable_let_patterns)]
                let AnyBackend::Select(backend) = state.core.backend() else {
                    return Ok(());
                };
                for (fd, entry) in state.core.keys().iter() {
                    watched.push((entry.field(py, 1).unbind(), backend.interest(fd)));
                }
            }
            let (readers, writers) = (PySet::empty(py)?, PySet::empty(py)?);
            for (fd_obj, interest) in &watched {
                if interest & crate::backend::READ != 0 {
                    readers.add(fd_obj)?;
                }
                if interest & crate::backend::WRITE != 0 {
                    writers.add(fd_obj)?;
                }
            }
            let select = py.import(intern!(py, "select"))?;
            let none = PyList::empty(py);
            select.call_method1(intern!(py, "select"), (readers, writers, none, 0))?;
            Ok(())
        };
        match ask_stdlib() {
            Err(stdlib_err) => stdlib_err,
            Ok(()) => backend_error(err),
        }
    }

    /// The rest of `register` once the key is in, for `events` that run Python code (or a
    /// replaced `_selector_cls`): `events & EVENT_READ`, `events & EVENT_WRITE`, then the OS
    /// registration. The outer error (Python code raising) leaves the key registered, as in
    /// the stdlib; the inner one is the OS's, for the caller to undo the registration.
    fn watch_in_order(
        &self,
        fd_obj: &Bound<'_, PyAny>,
        fd: u64,
        events: &Bound<'_, PyAny>,
    ) -> PyResult<PyResult<()>> {
        if self.kind == Kind::Select {
            // `if events & EVENT_READ: self._readers.add(key.fd)`, then the same for writers:
            // each set add hashes the fd, and what was added stays if a later step raises.
            let mut interest = 0;
            let mut failed = None;
            for bit in [crate::backend::READ, crate::backend::WRITE] {
                let step = events
                    .bitand(i64::from(bit))
                    .and_then(|masked| masked.is_truthy())
                    .and_then(|set| match set {
                        true => hash_as_set_element(fd_obj).map(|()| bit),
                        false => Ok(0),
                    });
                match step {
                    Ok(added) => interest |= added,
                    Err(err) => {
                        failed = Some(err);
                        break;
                    }
                }
            }
            if interest != 0 {
                // A select() set (or a green library's select() behind `_select`): adding
                // cannot fail.
                match self.poller.get() {
                    None => self
                        .lock()?
                        .core
                        .watch(fd, interest)
                        .map_err(backend_error)?,
                    Some(poller) => poller.register(fd_obj, interest)?,
                }
            }
            return match failed {
                Some(err) => Err(err),
                None => Ok(Ok(())),
            };
        }
        if self.kind == Kind::Kqueue && self.poller.get().is_none() {
            // KqueueSelector adds the read filter as soon as `events & EVENT_READ` says so,
            // before it computes `events & EVENT_WRITE`, all inside its `try`: any error,
            // from Python code or the OS, takes the key back.
            for bit in [crate::backend::READ, crate::backend::WRITE] {
                let step = events
                    .bitand(i64::from(bit))
                    .and_then(|masked| masked.is_truthy())
                    .and_then(|wanted| match wanted {
                        true => self.lock()?.core.watch(fd, bit).map_err(backend_error),
                        false => Ok(()),
                    });
                if let Err(err) = step {
                    return Ok(Err(err));
                }
            }
            return Ok(Ok(()));
        }
        let interest = interest_of(events)?;
        let watched = warn_if_bool_fd(fd_obj).and_then(|()| match self.poller.get() {
            None => {
                let result = self.lock()?.core.watch(fd, interest);
                result.map_err(backend_error)
            }
            Some(poller) => poller.register(fd_obj, interest),
        });
        Ok(watched)
    }

    /// `fileno()` of the selectors with an OS handle: the epoll or kqueue fd.
    #[cfg(any(epoll, kqueue))]
    fn os_fileno(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(poller) = self.poller.get() {
            return poller.call0(py, "fileno");
        }
        let fd = self.lock()?.core.backend().fileno();
        match fd {
            Some(Ok(fd)) => Ok(fd.into_pyobject(py)?.into_any().unbind()),
            Some(Err(err)) => Err(backend_error(err)),
            None => Err(pyo3::exceptions::PyAttributeError::new_err("fileno")),
        }
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
        let (fd_obj, fd) = self.lookup_fd_object(fileobj)?;
        let none = py.None().into_bound(py);
        let data = data.unwrap_or(&none);
        let key = new_key(py, fileobj, &fd_obj, events, data)?;
        let Some(fd) = fd else {
            if self.kind == Kind::Kqueue {
                // select.kevent() takes the fd as a size_t.
                return Err(PyOverflowError::new_err(
                    "Python int too large to convert to C size_t",
                ));
            }
            return Err(backend_error(crate::backend::Error::FdTooLarge));
        };
        let is_bool = fd_obj.is_exact_instance_of::<PyBool>();
        let poll_like = self.kind.is_poll_like();
        let plain_fd = is_plain_int(&fd_obj);
        // The stdlib's order: the key goes in the dict, then `events & EVENT_READ` and
        // `events & EVENT_WRITE` are computed, then the OS registration is made; if that
        // fails, `unregister(fileobj)` takes the key back. Plain ints run no Python code in
        // between, so the key and the OS registration go in under one lock hold.
        let native = match events_as_i64(events) {
            Some(e) if self.poller.get().is_none() && !(is_bool && poll_like) && plain_fd => {
                Some(e)
            }
            _ => None,
        };
        if !plain_fd {
            // `key.fd in self._fd_to_key`, then `self._fd_to_key[key.fd] = key`.
            hash_as_dict_key(&fd_obj)?;
            if self.key_for(&fd_obj, Some(fd))?.is_some() {
                return Err(Self::already_registered(fileobj, &fd_obj));
            }
            hash_as_dict_key(&fd_obj)?;
        }
        let entry = Entry::new(key.clone_ref(py));
        let mut state = self.lock()?;
        if let Err(entry) = state.core.insert_key(fd, entry) {
            drop(state);
            drop(entry);
            return Err(Self::already_registered(fileobj, &fd_obj));
        }
        if is_bool {
            self.bool_fds.fetch_add(1, Ordering::Relaxed);
        }
        let watched = match native {
            Some(e) => {
                let result = state.core.watch(fd, (e & 3) as u8);
                drop(state);
                result.map_err(backend_error)
            }
            None => {
                drop(state);
                self.watch_in_order(&fd_obj, fd, events)?
            }
        };
        match watched {
            Ok(()) => Ok(key),
            // SelectSelector's registration cannot fail, and has no `try` around it.
            Err(err) => Err(self.undo_register(fileobj, err)),
        }
    }

    fn unregister(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        let py = fileobj.py();
        let (fd_obj, fd) = self.lookup_in_try(fileobj, true)?;
        let removed = match fd {
            Some(fd) => self.pop_key(&fd_obj, fd)?,
            None => None,
        };
        let Some(entry) = removed else {
            return Err(Self::not_registered(fileobj, Some(Self::missing(&fd_obj))));
        };
        let fd_obj = entry.field(py, 1);
        self.forget_if_bool(&fd_obj);
        if self.kind == Kind::Select {
            // `self._readers.discard(key.fd)`, then the same for writers.
            hash_as_set_element(&fd_obj)?;
            hash_as_set_element(&fd_obj)?;
        }
        if self.kind.is_poll_like() {
            warn_if_bool_fd(&fd_obj)?;
        }
        if self.kind == Kind::Kqueue {
            // KqueueSelector.unregister tests `key.events & EVENT_READ`, then `& EVENT_WRITE`:
            // an int subclass sees those calls, and may raise from them.
            interest_of(&entry.field(py, 2))?;
        }
        if let Some(poller) = self.poller.get() {
            poller.unregister(&fd_obj)?;
        }
        Ok(entry.key)
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
        let (fd_obj, fd) = this.lookup_in_try(fileobj, false)?;
        let none = py.None().into_bound(py);
        let data = data.unwrap_or(&none);
        if let (true, Some(fd)) = (this.kind.is_poll_like(), fd) {
            if let Some(key) = this.modify_natively(py, fileobj, fd, events, data)? {
                return Ok(key.into_any());
            }
        }
        let Some(key) = this.key_for(&fd_obj, fd)? else {
            return Err(Self::not_registered(fileobj, Some(Self::missing(&fd_obj))));
        };
        let Some(fd) = fd else {
            return Err(backend_error(crate::backend::Error::FdTooLarge));
        };
        let key = key.into_bound(py);
        let (old_fileobj, old_fd) = (key.get_item(0)?, key.get_item(1)?);
        let (old_events, old_data) = (key.get_item(2)?, key.get_item(3)?);

        if !this.kind.is_poll_like() {
            // BaseSelector.modify: through the instance's own unregister and register.
            if differs(events, &old_events)? {
                slf.call_method1(intern!(py, "unregister"), (fileobj,))?;
                return Ok(slf
                    .call_method1(intern!(py, "register"), (fileobj, events, data))?
                    .unbind());
            }
            if differs(data, &old_data)? {
                let new = new_key(py, &old_fileobj, &old_fd, &old_events, data)?;
                this.store_key(&old_fd, fd, new.clone_ref(py))?;
                return Ok(new.into_any());
            }
            return Ok(key.unbind().into_any());
        }

        // _PollLikeSelector.modify: events are not validated, only handed to the OS. Each
        // comparison may run Python code that unregisters the fd or closes the selector;
        // the stdlib then still goes on, and so does this.
        let mut changed = false;
        if differs(events, &old_events)? {
            let interest = interest_of(events)?;
            let modified = warn_if_bool_fd(&old_fd).and_then(|()| match this.poller.get() {
                None => {
                    let result = this.lock()?.core.modify_interest(fd, interest);
                    result.map_err(backend_error)
                }
                Some(poller) => poller.modify(&old_fd, interest),
            });
            if let Err(err) = modified {
                return Err(this.undo_register(fileobj, err));
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
        this.store_key(&old_fd, fd, new.clone_ref(py))?;
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
            // epoll.poll() and kqueue.control() report a closed handle before looking at
            // the timeout.
            ParsedTimeout::Refused(err) if matches!(self.kind, Kind::Epoll | Kind::Kqueue) => {
                let handle = self.lock()?.core.backend().fileno();
                if let Some(Err(closed)) = handle {
                    return Err(backend_error(closed));
                }
                return Err(err);
            }
            ParsedTimeout::Refused(err) => return Err(err),
        };
        if let Some(poller) = self.poller.get() {
            let max_events = self.len()?.max(1);
            let polled = poller.poll(py, self.kind, timeout, max_events)?;
            let mut ready = ReadyList::with_capacity(polled.len());
            {
                let state = self.lock()?;
                for (fd, events) in polled {
                    if let Some(entry) = state.core.keys().get(fd) {
                        ready.push(entry.ready(py, fd, events));
                    }
                }
            }
            return self.ready_list(py, ready);
        }
        if self.kind == Kind::Select && self.bool_fds.load(Ordering::Relaxed) > 0 {
            // select.select() converts every fd it is given; a bool one warns (3.13+).
            warn_if_bool_fd(&PyBool::new(py, true))?;
        }
        if timeout == Some(Duration::ZERO) {
            return self.select_now(py);
        }
        // The error becomes a Python exception only once the lock is released.
        let begun = self.lock()?.core.begin_wait();
        let mut wait = begun.map_err(|err| self.wait_error(py, err))?;

        let deadline = Deadline::after(timeout);
        let mut left = timeout;
        let outcome = loop {
            // Other threads run while this one waits (a zero timeout went to select_now).
            let result = py.detach(|| wait.wait(left));
            match result {
                Ok(()) => break Ok(true),
                Err(err) if is_interrupted(&err) => {
                    if let Err(err) = py.check_signals() {
                        break Err(err);
                    }
                    left = match deadline.remaining() {
                        Remaining::Forever => None,
                        Remaining::Left(d) if self.kind.is_poll_like() => {
                            Some(timeout::poll_like_retry(d))
                        }
                        Remaining::Left(d) => Some(d),
                        Remaining::Expired => break Ok(false),
                    };
                    // The stdlib retries on its own handle, which the signal handler that just
                    // ran may have closed (a SIGTERM handler calling close()): the retry then
                    // fails with EBADF at once. Our wait holds the fd open, so ask.
                    let handle = self.lock().map(|state| state.core.backend().fileno());
                    match handle {
                        Ok(Some(Err(_))) => {
                            break Err(os_error(&std::io::Error::from_raw_os_error(libc::EBADF)))
                        }
                        Err(err) => break Err(err),
                        Ok(_) => {}
                    }
                }
                Err(err) => break Err(os_error(&err)),
            }
        };

        let mut ready = ReadyList::new();
        {
            let mut state = self.lock()?;
            if let Ok(true) = outcome {
                let keys = state.core.keys();
                wait.for_each_ready(&mut |fd, events| {
                    if let Some(entry) = keys.get(fd) {
                        ready.push(entry.ready(py, fd, events));
                    }
                });
            }
            state.core.end_wait(wait);
        }
        outcome?;
        self.ready_list(py, ready)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if let (Some(poller), Kind::Epoll) = (self.poller.get(), self.kind) {
            poller.call0(py, "close")?;
        }
        // As the stdlib: the OS handle closes, the keys go (a `__del__` they trigger still
        // sees an empty map), and only then does `get_map()` start answering None.
        let entries = self.lock()?.core.close();
        drop(entries);
        let mapping = {
            let mut state = self.lock()?;
            self.closed.store(true, Ordering::Relaxed);
            state.mapping.take()
        };
        drop(mapping);
        Ok(())
    }

    fn get_key(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(PyRuntimeError::new_err("Selector is closed"));
        }
        // `try: return mapping[fileobj] except KeyError: raise KeyError(...) from None`.
        match self.getitem(fileobj) {
            Err(err) if err.is_instance_of::<PyKeyError>(fileobj.py()) => {
                Err(Self::not_registered(fileobj, Some(err)))
            }
            other => other,
        }
    }

    fn get_map(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        {
            let state = this.lock()?;
            if this.closed.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if let Some(mapping) = &state.mapping {
                return Ok(Some(mapping.clone_ref(py)));
            }
        }
        let cls = SELECTOR_MAPPING.get(py).expect("set at import").bind(py);
        let mapping = cls.call1((slf,))?.unbind();
        let mut state = this.lock()?;
        // Making the mapping may have run a `__del__` that called get_map() first: keep the
        // one stored, and free ours only once the lock is released.
        let result = if this.closed.load(Ordering::Relaxed) {
            None
        } else {
            let stored = state.mapping.get_or_insert_with(|| mapping.clone_ref(py));
            Some(stored.clone_ref(py))
        };
        drop(state);
        drop(mapping);
        Ok(result)
    }

    /// CPython's own tests read `len(s._map)`.
    #[getter]
    fn _map(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        Self::get_map(slf)
    }

    /// `_BaseSelectorImpl._key_from_fd` (Python 3.12 and older).
    fn _key_from_fd(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyTuple>>> {
        // `try: return self._fd_to_key[fd] except KeyError: return None`.
        match hash_as_dict_key(fd) {
            Err(err) if err.is_instance_of::<PyKeyError>(py) => return Ok(None),
            other => other?,
        }
        self.key_for(fd, fd.extract::<u64>().ok())
    }

    /// Drives `poller` (an instance of a replaced `_selector_cls`) instead of the OS.
    fn _use_poller(&self, poller: Py<PyAny>) {
        let _ = self.poller.set(CustomPoller::new(poller));
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Never wait for the lock here: visiting less only delays a collection.
        let Some(state) = self.state.try_lock() else {
            return Ok(());
        };
        for (_, entry) in state.core.keys().iter() {
            visit.call(&entry.key)?;
            for tuple in entry.results.iter().flat_map(|c| c.tuples.iter()).flatten() {
                visit.call(tuple)?;
            }
        }
        if let Some(mapping) = &state.mapping {
            visit.call(mapping)?;
        }
        if let Some(poller) = self.poller.get() {
            visit.call(poller.object())?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let (entries, mapping) = match self.state.try_lock() {
            Some(mut state) => (state.core.close_keys(), state.mapping.take()),
            None => return,
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

#[cfg(epoll)]
selector_class!(
    EpollSelector,
    "EpollSelector",
    Kind::Epoll,
    "Epoll-based selector.",
    /// The epoll fd.
    fn fileno(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.as_super().get().os_fileno(slf.py())
    }
);
#[cfg(kqueue)]
selector_class!(
    KqueueSelector,
    "KqueueSelector",
    Kind::Kqueue,
    "Kqueue-based selector.",
    /// The kqueue fd.
    fn fileno(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.as_super().get().os_fileno(slf.py())
    }
);
#[cfg(unix)]
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

/// The ready fds of one `select()`: a few live on the stack.
type ReadyList = SmallVec<[Ready; 8]>;

/// One ready fd, as found under the lock.
enum Ready {
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
    fn fd_events(&self) -> Option<(u64, u8)> {
        match *self {
            Ready::Cached { fd, events, .. } | Ready::Build { fd, events, .. } => {
                Some((fd, events))
            }
            Ready::Gone => None,
        }
    }
}

/// Whether a dict holding `stored` finds it again when looked up with `fd_obj` (same hash
/// already established): identity, else `stored == fd_obj`, which only an int subclass can
/// make run Python code.
fn same_dict_key(stored: &Bound<'_, PyAny>, fd_obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    if same_without_python(stored, fd_obj) {
        return Ok(true);
    }
    stored.eq(fd_obj)
}

/// The cases of `same_dict_key` that run no Python code: the same object, or two plain ints
/// (same number, as the caller found them under one fd).
fn same_without_python(stored: &Bound<'_, PyAny>, fd_obj: &Bound<'_, PyAny>) -> bool {
    stored.is(fd_obj) || (is_plain_int(stored) && is_plain_int(fd_obj))
}

/// A new list of `len` empty slots, for the caller to fill before anyone else sees it.
fn new_list(py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyList>> {
    // SAFETY: PyList_New returns a new reference (or NULL with an exception set).
    unsafe {
        let list = ffi::PyList_New(len as ffi::Py_ssize_t);
        if list.is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr(py, list).cast_into_unchecked())
    }
}
