//! `register` and `unregister` in the stdlib's order of operations: the key, then the
//! events (user code may run), then the OS; a refusal undone as the stdlib's
//! `super().unregister(fileobj)` undoes it.

use std::sync::atomic::Ordering;

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyTuple};

use super::base::{SelectorBase, State};
use super::class_rules::OsSteps;
use super::entry::Entry;
use super::os_steps::OsStep;
use crate::lock::OwnedGuard;
use crate::python::errors::{backend_error, chain_handled, while_handling};
use crate::python::events::{check_register_events, events_as_i64, interest_of, wants};
use crate::python::fd::{hash_as_dict_key, is_plain_int, same_without_python};
use crate::python::key::new_key;

impl SelectorBase {
    /// `register`: the key goes in, then `events & EVENT_READ` and `events & EVENT_WRITE`
    /// are computed, then the OS registration is made; if that fails, `unregister(fileobj)`
    /// takes the key back.
    pub(super) fn register_in_order(
        &self,
        fileobj: &Bound<'_, PyAny>,
        events: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyTuple>> {
        let py = fileobj.py();
        let plain_events = check_register_events(events)?;
        let (fd_obj, fd) = self.lookup_fd_object(fileobj)?;
        let key = new_key(py, fileobj, &fd_obj, events, data)?;
        let Some(fd) = fd else {
            return Err(self.register_beyond_u64(fileobj, &fd_obj, events));
        };
        let is_bool = fd_obj.is_exact_instance_of::<PyBool>();
        let poll_like = self.class.steps == OsSteps::PollLike;
        let plain_fd = is_plain_int(&fd_obj);
        // Plain ints and int events run no Python code between the steps, so the key and the
        // OS registration go in under one lock hold. (SelectSelector's Python sets take the
        // general path.)
        let native = match plain_events {
            Some(e)
                if self.native() && !(is_bool && poll_like) && plain_fd && self.sets.is_none() =>
            {
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
        let mut entry = Entry::new(key.clone_ref(py));
        let mut state = self.lock()?;
        while let Err(back) = state.core.insert_key(fd, entry) {
            drop(state);
            entry = back;
            if !self.free_after_all(&fd_obj, fd)? {
                drop(entry);
                return Err(Self::already_registered(fileobj, &fd_obj));
            }
            state = self.lock()?;
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

    /// `register` of an fd number of 2**64 or more, which no table here holds (README, Known
    /// differences; SelectSelector refuses it at once): the steps the stdlib takes until the
    /// OS, or `select.kevent`, refuses the number, then its `super().unregister(fileobj)`,
    /// which finds the key again through `fileno()`.
    fn register_beyond_u64(
        &self,
        fileobj: &Bound<'_, PyAny>,
        fd_obj: &Bound<'_, PyAny>,
        events: &Bound<'_, PyAny>,
    ) -> PyErr {
        let py = fileobj.py();
        let steps = self.class.steps;
        let too_large = || self.class.fd_range.too_large();
        if steps == OsSteps::Sets {
            return too_large();
        }
        let before_os = || -> PyResult<u8> {
            if !is_plain_int(fd_obj) {
                // `key.fd in self._fd_to_key`, then `self._fd_to_key[key.fd] = key`.
                hash_as_dict_key(fd_obj)?;
                hash_as_dict_key(fd_obj)?;
            }
            if steps == OsSteps::Filters {
                // The read filter's kevent is made as soon as `events & EVENT_READ` says so.
                if !wants(events, crate::backend::READ)? {
                    wants(events, crate::backend::WRITE)?;
                }
                return Ok(0);
            }
            interest_of(events)
        };
        let interest = match before_os() {
            Ok(interest) => interest,
            Err(err) => return err,
        };
        let err = match self.poller.get() {
            Some(poller) => match poller.register(fd_obj, interest) {
                Err(err) => err,
                Ok(()) => too_large(),
            },
            None => too_large(),
        };
        match while_handling(py, &err, || self.lookup_in_try(fileobj, true)) {
            Ok(_) => err,
            Err(raised) => raised,
        }
    }

    /// For a plain fd whose number has a key: whether the stdlib's `key.fd in
    /// self._fd_to_key` finds it free after all. It compares the stored fd object with the
    /// plain one, which runs an int subclass's `__eq__`; that may unregister the fd or close
    /// the selector (the dict then looks again: `key_for`). If it only says "differ", one
    /// number still holds one registration here (README, Known differences).
    fn free_after_all(&self, fd_obj: &Bound<'_, PyAny>, fd: u64) -> PyResult<bool> {
        if !is_plain_int(fd_obj) || self.key_for(fd_obj, Some(fd))?.is_some() {
            return Ok(false);
        }
        Ok(!self.lock()?.core.keys().contains(fd))
    }

    /// The rest of `register` once the key is in, for `events` that run Python code (or a
    /// replaced `_selector_cls`): `events & EVENT_READ`, `events & EVENT_WRITE`, then the OS
    /// registration. The outer error (Python code raising) leaves the key registered, as in
    /// the stdlib; the inner one is the OS's, for the caller to undo the registration.
    pub(super) fn watch_in_order(
        &self,
        fd_obj: &Bound<'_, PyAny>,
        fd: u64,
        events: &Bound<'_, PyAny>,
    ) -> PyResult<PyResult<()>> {
        let steps = self.class.steps;
        if steps == OsSteps::Sets {
            // `if events & EVENT_READ: self._readers.add(key.fd)`, then the same for writers:
            // each set add hashes the fd, what was added stays if a later step raises, and
            // user code run by the second `&` already sees the fd a reader. (User code run
            // here may unregister the fd before it goes in a set.)
            if events_as_i64(events).is_none() || !is_plain_int(fd_obj) {
                self.sets_may_be_keyless();
            }
            for bit in [crate::backend::READ, crate::backend::WRITE] {
                if wants(events, bit)? {
                    self.add_to_sets(fd_obj, bit)?;
                    // The core's copy of that one set (adding cannot fail); not the bits
                    // added before, which user code run by this `&` may have discarded.
                    self.os_watch(fd_obj, fd, bit, OsStep::Add)?;
                }
            }
            return Ok(Ok(()));
        }
        if steps == OsSteps::Filters {
            // KqueueSelector adds the read filter as soon as `events & EVENT_READ` says so,
            // before it computes `events & EVENT_WRITE`, all inside its `try`: any error,
            // from Python code or the OS, takes the key back.
            for bit in [crate::backend::READ, crate::backend::WRITE] {
                let step = wants(events, bit).and_then(|wanted| match wanted {
                    true => self.os_watch(fd_obj, fd, bit, OsStep::Add),
                    false => Ok(()),
                });
                if let Err(err) = step {
                    return Ok(Err(err));
                }
            }
            return Ok(Ok(()));
        }
        let interest = interest_of(events)?;
        let watched = self
            .warn_if_bool_fd_natively(fd_obj)
            .and_then(|()| self.os_watch(fd_obj, fd, interest, OsStep::Add));
        Ok(watched)
    }

    /// `unregister`: the key goes (and the OS registration), then the steps through which
    /// the stdlib's classes let user code see the fd object.
    pub(super) fn unregister_in_order(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        let py = fileobj.py();
        let (fd_obj, fd) = self.lookup_in_try(fileobj, true)?;
        let removed = match fd {
            // `self._fd_to_key.pop(fd)` inside the `try`: an `__eq__` raising KeyError too.
            Some(fd) => match self.pop_key(&fd_obj, fd) {
                Err(err) if err.is_instance_of::<PyKeyError>(py) => {
                    return Err(Self::not_registered(fileobj, Some(err)))
                }
                other => other?,
            },
            None => None,
        };
        let Some((entry, poll_lacked)) = removed else {
            return Err(Self::not_registered(fileobj, Some(Self::missing(&fd_obj))));
        };
        let fd_obj = entry.field(py, 1);
        let fd = fd.unwrap_or_default();
        // SelectSelector: `self._readers.discard(key.fd)`, then the same for writers.
        self.discard_from_sets(&fd_obj, fd)?;
        let steps = self.class.steps;
        if steps == OsSteps::PollLike {
            self.warn_if_bool_fd_natively(&fd_obj)?;
        }
        if steps == OsSteps::Filters {
            // KqueueSelector.unregister tests `key.events & EVENT_READ` (an int subclass sees
            // that, and may raise), then removes the filter (a closed kqueue refuses that),
            // then the same for EVENT_WRITE.
            let events = entry.field(py, 2);
            for bit in [crate::backend::READ, crate::backend::WRITE] {
                if wants(&events, bit)? && self.closed.load(Ordering::Relaxed) {
                    if let Some(err) = self.os_refused(fd, false) {
                        return Err(err);
                    }
                }
            }
        } else if poll_lacked || fd > i32::MAX as u64 || self.closed.load(Ordering::Relaxed) {
            if let Some(err) = self.os_refused(fd, poll_lacked) {
                return Err(err);
            }
        }
        self.os_unwatch(&fd_obj)?;
        Ok(entry.key)
    }

    /// `self._fd_to_key.pop(fd_obj)` with the OS registration, and whether poll() lacked the
    /// fd (`os_refused`). The dict compares the stored fd object with `fd_obj` first
    /// unless they are the same object or plain ints (`relock_if_equal`).
    pub(super) fn pop_key(
        &self,
        fd_obj: &Bound<'_, PyAny>,
        fd: u64,
    ) -> PyResult<Option<(Entry, bool)>> {
        let py = fd_obj.py();
        let mut state = self.lock()?;
        match state.core.keys().get(fd) {
            Some(entry) if entry.same_fd_without_python(fd_obj) => {}
            Some(entry) => {
                let stored = entry.field(py, 1);
                drop(state);
                match self.relock_if_equal(stored, fd_obj, fd)? {
                    Some(relocked) => state = relocked,
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        }
        Ok(self.os_pop(&mut state, fd))
    }

    /// The dict's comparison of the fd object stored under `fd` with `fd_obj` (an int
    /// subclass's `__eq__`), without the lock: the lock again if they are equal and the entry
    /// is still there. The dict looks again if the comparison removed or replaced the entry
    /// (`key_for`).
    #[inline(never)]
    fn relock_if_equal<'py>(
        &self,
        mut stored: Bound<'py, PyAny>,
        fd_obj: &Bound<'py, PyAny>,
        fd: u64,
    ) -> PyResult<Option<OwnedGuard<'_, State>>> {
        let py = fd_obj.py();
        loop {
            let equal = stored.eq(fd_obj)?;
            let state = self.lock()?;
            let now = match state.core.keys().get(fd) {
                Some(entry) => entry.field(py, 1),
                None => return Ok(None),
            };
            if now.is(&stored) {
                return Ok(equal.then_some(state));
            }
            if same_without_python(&now, fd_obj) {
                return Ok(Some(state));
            }
            drop(state);
            stored = now;
        }
    }

    /// `_BaseSelectorImpl.unregister(fileobj)` as the stdlib's `register` and `modify` call it
    /// once the OS refused: the key goes, found again through `fileno()` (no OS call);
    /// KeyError when a callback already took it.
    pub(super) fn take_back(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = fileobj.py();
        let (fd_obj, fd) = self.lookup_in_try(fileobj, true)?;
        let removed = match fd {
            Some(fd) => {
                let mut state = self.lock()?;
                let stored = state.core.keys().get(fd).map(|entry| entry.field(py, 1));
                match stored {
                    Some(stored) if !same_without_python(&stored, &fd_obj) => {
                        drop(state);
                        match self.relock_if_equal(stored, &fd_obj, fd) {
                            Ok(Some(mut relocked)) => relocked.core.undo(fd),
                            Ok(None) => None,
                            Err(err) if err.is_instance_of::<PyKeyError>(py) => {
                                return Err(Self::not_registered(fileobj, Some(err)))
                            }
                            Err(err) => return Err(err),
                        }
                    }
                    Some(_) => state.core.undo(fd),
                    None => None,
                }
            }
            None => None,
        };
        match removed {
            Some(entry) => {
                drop(entry);
                Ok(())
            }
            None => Err(Self::not_registered(fileobj, Some(Self::missing(&fd_obj)))),
        }
    }

    /// `except: super().unregister(fileobj); raise` around an OS registration that failed
    /// with `err`: the error raised, `err` itself or what the unregistering raised.
    pub(super) fn undo_register(&self, fileobj: &Bound<'_, PyAny>, err: PyErr) -> PyErr {
        let py = fileobj.py();
        match while_handling(py, &err, || self.take_back(fileobj)) {
            Ok(()) => err,
            Err(raised) => {
                chain_handled(py, &raised, err);
                raised
            }
        }
    }

    /// `self._fd_to_key[key.fd] = key`: stored even if a callback unregistered the fd or
    /// closed the selector meanwhile, as a dict store is.
    pub(super) fn store_key(
        &self,
        fd_obj: &Bound<'_, PyAny>,
        fd: u64,
        key: Py<PyTuple>,
    ) -> PyResult<()> {
        hash_as_dict_key(fd_obj)?;
        // Stored back after a callback unregistered the fd, it has no OS registration.
        let old = self.lock()?.core.store_key(fd, Entry::new(key));
        drop(old);
        Ok(())
    }
}
