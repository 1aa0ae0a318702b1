//! `register` and `unregister` in the stdlib's order of operations: the key, then the
//! events (user code may run), then the OS; a refusal undone as the stdlib's
//! `super().unregister(fileobj)` undoes it.

use std::sync::atomic::Ordering;

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyTuple};

use super::base::SelectorBase;
use super::lookup::same_dict_key;
use super::poller::OsStep;
use super::results::Entry;
use crate::backend::Kind;
use crate::python::errors::{backend_error, chain_handled};
use crate::python::events::{check_register_events, interest_of, wants};
use crate::python::fd::{hash_as_dict_key, hash_as_set_element, is_plain_int, warn_if_bool_fd};
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
            if self.kind.is_kqueue() {
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
        // Plain ints and int events run no Python code between the steps, so the key and the
        // OS registration go in under one lock hold.
        let native = match plain_events {
            Some(e) if self.native() && !(is_bool && poll_like) && plain_fd => Some(e),
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
        if self.kind == Kind::Select {
            // `if events & EVENT_READ: self._readers.add(key.fd)`, then the same for writers:
            // each set add hashes the fd, and what was added stays if a later step raises.
            let mut interest = 0;
            let mut failed = None;
            for bit in [crate::backend::READ, crate::backend::WRITE] {
                let step = wants(events, bit).and_then(|set| match set {
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
                self.os_watch(fd_obj, fd, interest, OsStep::Add)?;
            }
            return match failed {
                Some(err) => Err(err),
                None => Ok(Ok(())),
            };
        }
        if self.kind.is_kqueue() {
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
        let watched =
            warn_if_bool_fd(fd_obj).and_then(|()| self.os_watch(fd_obj, fd, interest, OsStep::Add));
        Ok(watched)
    }

    /// `unregister`: the key goes (and the OS registration), then the steps through which
    /// the stdlib's classes let user code see the fd object.
    pub(super) fn unregister_in_order(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
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
        if self.kind.is_kqueue() {
            // KqueueSelector.unregister tests `key.events & EVENT_READ`, then `& EVENT_WRITE`:
            // an int subclass sees those calls, and may raise from them.
            interest_of(&entry.field(py, 2))?;
        }
        self.os_unwatch(&fd_obj)?;
        Ok(entry.key)
    }

    /// `self._fd_to_key.pop(fd_obj)` and the OS registration with it. The dict compares the
    /// stored fd object with `fd_obj` first; where that can run Python code (an int
    /// subclass), it runs without the lock.
    pub(super) fn pop_key(&self, fd_obj: &Bound<'_, PyAny>, fd: u64) -> PyResult<Option<Entry>> {
        let py = fd_obj.py();
        let mut state = self.lock()?;
        match state.core.keys().get(fd) {
            Some(entry) if entry.same_fd_without_python(fd_obj) => {}
            Some(entry) => {
                let stored = entry.field(py, 1);
                drop(state);
                if !same_dict_key(&stored, fd_obj)? {
                    return Ok(None);
                }
                state = self.lock()?;
            }
            None => return Ok(None),
        }
        Ok(self.os_pop(&mut state, fd))
    }

    /// `_BaseSelectorImpl.unregister(fileobj)` as the stdlib's `register` and `modify` call it
    /// once the OS refused: the key goes, found again through `fileno()` (no OS call);
    /// KeyError when a callback already took it.
    pub(super) fn take_back(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<()> {
        let (fd_obj, fd) = self.lookup_in_try(fileobj, true)?;
        let removed = match fd {
            Some(fd) => self.lock()?.core.undo(fd),
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
    pub(super) fn undo_register(&self, fileobj: &Bound<'_, PyAny>, err: PyErr) -> PyErr {
        let py = fileobj.py();
        match self.take_back(fileobj) {
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
        let old = self.lock()?.core.store_key(fd, Entry::new(key));
        drop(old);
        Ok(())
    }
}
