//! The selector classes. Each keeps its state behind a `Mutex` that is never held across a
//! wait, a call into Python, or the allocation or drop of a Python object (either can run the
//! garbage collector, and a `__del__` could re-enter); under it Python objects are only
//! cloned (an incref).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBool, PyList, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};
use smallvec::SmallVec;

use super::convert::{
    backend_error, check_register_events, differs, differs_natively, events_as_i64, fileobj_to_fd,
    interest_of, os_error, parse_timeout, python_3_13, python_format, warn_if_bool_fd, FdNum, Kind,
    ParsedTimeout,
};
use super::poller::CustomPoller;
use super::{new_key, BlankKey, SELECTOR_MAPPING};
use crate::backend::{poll::Poll, select::Select, AnyBackend, Backend, Wait};
use crate::selector::{RegisterError, Selector};
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
                return Ready::Cached(tuple.clone_ref(py));
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
    /// Set when the class's `_selector_cls` was replaced: the OS side goes through it.
    poller: OnceLock<CustomPoller>,
    /// How many registered fds are bools (`True`): a select() selector warns about them
    /// before each wait. Outside the lock, so that check costs no lock round trip.
    bool_fds: AtomicUsize,
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
            #[allow(unreachable_patterns)]
            Kind::Epoll | Kind::Kqueue => unreachable!("no such class on this platform"),
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
            poller: OnceLock::new(),
            bool_fds: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // SAFETY: only methods called from Python take the lock (never inside `detach`), so
        // this thread is attached to the interpreter.
        let py = unsafe { Python::assume_attached() };
        // A thread that has to wait for the lock detaches meanwhile: on a free-threaded build
        // a stop-the-world pause (the GC) must not wait on a thread blocked here. Uncontended,
        // as it always is under the GIL, this is one try_lock.
        // A panic cannot leave the state half-changed in a way that matters more than
        // refusing every later call would, so a poisoned lock is simply taken over.
        self.state
            .lock_py_attached(py)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
                let state = self.lock();
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

    pub(super) fn key_for(&self, py: Python<'_>, fd: FdNum) -> Option<Py<PyTuple>> {
        let state = self.lock();
        let entry = state.core.keys().get(fd?)?;
        Some(entry.key.clone_ref(py))
    }

    /// The key registered for `fileobj`, if any (a bad file object raises as in the stdlib).
    pub(super) fn find(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyTuple>>> {
        let (_, fd) = self.lookup_fd_object(fileobj)?;
        Ok(self.key_for(fileobj.py(), fd))
    }

    /// `KeyError("<fileobj!r> is not registered")`, raised by the stdlib while handling the
    /// `KeyError(fd)` of its dict lookup: a failing `repr()` carries that as its context.
    /// (From 3.13 the mapping's lookup raises outside any handler: `fd` is then None.)
    fn not_registered(fileobj: &Bound<'_, PyAny>, fd: Option<&Bound<'_, PyAny>>) -> PyErr {
        match fileobj.repr() {
            Ok(r) => PyKeyError::new_err(format!("{r} is not registered")),
            Err(err) => {
                if let Some(fd) = fd {
                    let context = PyKeyError::new_err(fd.clone().unbind());
                    err.set_context(fileobj.py(), Some(context));
                }
                err
            }
        }
    }

    /// `get_key` and the mapping's `[]`: the key, KeyError if none.
    pub(super) fn getitem(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        let py = fileobj.py();
        let (fd_obj, fd) = self.lookup_fd_object(fileobj)?;
        self.key_for(py, fd).ok_or_else(|| {
            let handling = (!python_3_13(py)).then_some(&fd_obj);
            Self::not_registered(fileobj, handling)
        })
    }

    /// How many fds are registered.
    pub(super) fn len(&self) -> usize {
        self.lock().core.keys().len()
    }

    /// The fd object of the first registration at or after `cursor` in registration order,
    /// with the cursor just past it.
    pub(super) fn fd_at(&self, py: Python<'_>, cursor: usize) -> Option<(usize, Py<PyAny>)> {
        let state = self.lock();
        let (next, _, entry) = state.core.keys().entry_at(cursor)?;
        Some((next, entry.field(py, 1).unbind()))
    }

    /// `[(key, events & key.events), ...]`, the list `select()` returns. Tuples built here
    /// are cached in their entry (if it still holds the same key) for the next call.
    fn ready_list<'py>(
        &self,
        py: Python<'py>,
        mut ready: ReadyList,
    ) -> PyResult<Bound<'py, PyList>> {
        // First every tuple (this may run Python code, for an `events` that is no plain int),
        // then the list, filled where no Python code can see it half-made.
        let mut built = Vec::new();
        for item in ready.iter_mut() {
            if let Ready::Build {
                fd,
                key,
                events,
                mask,
            } = item
            {
                let key = key.bind(py);
                let mask = match *mask {
                    Some(mask) => mask,
                    None => events_as_i64(&key.get_item(2)?).map(|e| (e & 3) as u8),
                };
                let masked = mask.map(|m| usize::from(*events & m));
                let events_obj = match masked {
                    Some(m) => m.into_pyobject(py)?.into_any(),
                    None => events.into_pyobject(py)?.bitand(key.get_item(2)?)?,
                };
                let tuple = PyTuple::new(py, [key.as_any(), &events_obj])?.unbind();
                built.push((*fd, key.clone().unbind(), mask, masked, tuple.clone_ref(py)));
                *item = Ready::Cached(tuple);
            }
        }
        let list = new_list(py, ready.len())?;
        for (i, item) in ready.into_iter().enumerate() {
            if let Ready::Cached(tuple) = item {
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
            let mut state = self.lock();
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
        fd: u64,
        events: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyTuple>>> {
        if self.poller.get().is_some() || events_as_i64(events).is_none() {
            return Ok(None);
        }
        let interest = interest_of(events)?;
        let blank = BlankKey::new(py)?;
        let mut state = self.lock();
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
            if let Err((err, removed)) = state.core.modify_interest(fd, interest) {
                drop(state);
                drop(removed);
                return Err(backend_error(err));
            }
        }
        let new = blank.fill(&old_fileobj, &old_fd, events, data);
        let old = state.core.replace_key(fd, Entry::new(new.clone_ref(py)));
        drop(state);
        drop(old);
        Ok(Some(new))
    }

    /// `select(0)`: a wait that cannot block, so it is made under the lock, with the GIL kept
    /// (releasing it would cost more than the system call).
    fn select_now<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut ready = ReadyList::new();
        let result = self.lock().core.poll_now(&mut |fd, entry, events| {
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
            Err(err) => Err(backend_error(err)),
        }
    }

    /// `fileno()` of the selectors with an OS handle: the epoll or kqueue fd.
    fn os_fileno(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(poller) = self.poller.get() {
            return poller.call0(py, "fileno");
        }
        let fd = self.lock().core.backend().fileno();
        match fd {
            Some(Ok(fd)) => Ok(fd.into_pyobject(py)?.into_any().unbind()),
            Some(Err(err)) => Err(backend_error(err)),
            None => Err(pyo3::exceptions::PyAttributeError::new_err("fileno")),
        }
    }

    /// `_BaseSelectorImpl.modify`'s shortcut: a new key with new data, no system call.
    fn replace_key(&self, fd: u64, key: Py<PyTuple>) {
        let old = self.lock().core.replace_key(fd, Entry::new(key));
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
        let (fd_obj, fd) = self.lookup_fd_object(fileobj)?;
        let none = py.None().into_bound(py);
        let data = data.unwrap_or(&none);
        let key = new_key(py, fileobj, &fd_obj, events, data)?;
        let Some(fd) = fd else {
            return Err(backend_error(crate::backend::Error::FdTooLarge));
        };
        let interest = interest_of(events)?;
        if self.kind.is_poll_like() {
            warn_if_bool_fd(&fd_obj)?;
        }
        let is_bool = fd_obj.is_exact_instance_of::<PyBool>();
        let entry = Entry::new(key.clone_ref(py));
        let result = match self.poller.get() {
            None => self.lock().core.register(fd, interest, entry),
            Some(poller) => {
                let inserted = self.lock().core.insert_key(fd, entry);
                if inserted.is_ok() {
                    if let Err(err) = poller.register(&fd_obj, interest) {
                        let removed = self.lock().core.remove_key(fd);
                        drop(removed);
                        return Err(err);
                    }
                }
                inserted.map_err(RegisterError::AlreadyRegistered)
            }
        };
        match result {
            Ok(()) => {
                if is_bool {
                    self.bool_fds.fetch_add(1, Ordering::Relaxed);
                }
                Ok(key)
            }
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
        let py = fileobj.py();
        let (fd_obj, fd) = self.lookup_fd_object(fileobj)?;
        let removed = fd.and_then(|fd| match self.poller.get() {
            None => self.lock().core.unregister(fd),
            Some(_) => self.lock().core.remove_key(fd),
        });
        let Some(entry) = removed else {
            return Err(Self::not_registered(fileobj, Some(&fd_obj)));
        };
        let fd_obj = entry.field(py, 1);
        if fd_obj.is_exact_instance_of::<PyBool>() {
            // One less; a count already at zero stays there rather than wrapping.
            let mut n = self.bool_fds.load(Ordering::Relaxed);
            while n > 0 {
                match self.bool_fds.compare_exchange_weak(
                    n,
                    n - 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => n = now,
                }
            }
        }
        if self.kind.is_poll_like() {
            warn_if_bool_fd(&fd_obj)?;
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
        let (fd_obj, fd) = this.lookup_fd_object(fileobj)?;
        let none = py.None().into_bound(py);
        let data = data.unwrap_or(&none);
        if let (true, Some(fd)) = (this.kind.is_poll_like(), fd) {
            if let Some(key) = this.modify_natively(py, fd, events, data)? {
                return Ok(key.into_any());
            }
        }
        let key = this
            .key_for(py, fd)
            .ok_or_else(|| Self::not_registered(fileobj, Some(&fd_obj)))?;
        let fd = fd.expect("registered fds fit in 64 bits");
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
                this.replace_key(fd, new.clone_ref(py));
                return Ok(new.into_any());
            }
            return Ok(key.unbind().into_any());
        }

        // _PollLikeSelector.modify: events are not validated, only handed to the OS.
        let mut changed = false;
        if differs(events, &old_events)? {
            let interest = interest_of(events)?;
            if let Err(err) = warn_if_bool_fd(&old_fd) {
                let removed = this.lock().core.remove_key(fd);
                drop(removed);
                return Err(err);
            }
            let failed = match this.poller.get() {
                None => {
                    let result = this.lock().core.modify_interest(fd, interest);
                    result
                        .err()
                        .map(|(err, removed)| (backend_error(err), removed))
                }
                Some(poller) => poller
                    .modify(&old_fd, interest)
                    .err()
                    .map(|err| (err, this.lock().core.remove_key(fd))),
            };
            if let Some((err, removed)) = failed {
                drop(removed);
                return Err(err);
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
        this.replace_key(fd, new.clone_ref(py));
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
                let handle = self.lock().core.backend().fileno();
                if let Some(Err(closed)) = handle {
                    return Err(backend_error(closed));
                }
                return Err(err);
            }
            ParsedTimeout::Refused(err) => return Err(err),
        };
        if let Some(poller) = self.poller.get() {
            let max_events = self.len().max(1);
            let polled = poller.poll(py, self.kind, timeout, max_events)?;
            let mut ready = ReadyList::with_capacity(polled.len());
            {
                let state = self.lock();
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
        let begun = self.lock().core.begin_wait();
        let mut wait = begun.map_err(backend_error)?;

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
                    if let Some(Err(_)) = self.lock().core.backend().fileno() {
                        break Err(os_error(&std::io::Error::from_raw_os_error(libc::EBADF)));
                    }
                }
                Err(err) => break Err(os_error(&err)),
            }
        };

        let mut ready = ReadyList::new();
        {
            let mut state = self.lock();
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
        let entries = self.lock().core.close();
        drop(entries);
        let mapping = {
            let mut state = self.lock();
            state.closed = true;
            state.mapping.take()
        };
        drop(mapping);
        Ok(())
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
        // Making the mapping may have run a `__del__` that called get_map() first: keep the
        // one stored, and free ours only once the lock is released.
        let result = if state.closed {
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
    fn _key_from_fd(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> Option<Py<PyTuple>> {
        let fd = fd.extract::<u64>().ok();
        self.key_for(py, fd)
    }

    /// Drives `poller` (an instance of a replaced `_selector_cls`) instead of the OS.
    fn _use_poller(&self, poller: Py<PyAny>) {
        let _ = self.poller.set(CustomPoller::new(poller));
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Never wait for the lock here: visiting less only delays a collection.
        let Ok(state) = self.state.try_lock() else {
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
    Cached(Py<PyTuple>),
    /// A tuple to build; `mask` is the entry's cached mask, None when not yet known.
    Build {
        fd: u64,
        key: Py<PyTuple>,
        events: u8,
        mask: Option<Option<u8>>,
    },
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
