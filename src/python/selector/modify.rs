//! `modify`, on the stdlib's two paths (`BaseSelector.modify` for select and kqueue,
//! `_PollLikeSelector.modify` for poll and epoll), and the latter in one lock hold when no
//! user code can run in it.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple};

use super::base::SelectorBase;
use super::class_rules::OsSteps;
use super::entry::Entry;
use super::os_steps::OsStep;
use crate::backend::{READ, WRITE};
use crate::python::errors::backend_error;
use crate::python::events::{differs, differs_natively, events_as_i64, interest_of};
use crate::python::fd::is_plain_int;
use crate::python::key::{new_key, BlankKey};

impl SelectorBase {
    /// `modify`: `BaseSelector.modify` (through the instance's own `unregister` and
    /// `register`) or `_PollLikeSelector.modify` (the OS registration changed in place).
    pub(super) fn modify_in_order<'py>(
        slf: &Bound<'py, Self>,
        fileobj: &Bound<'py, PyAny>,
        events: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let (fd_obj, fd) = this.lookup_in_try(fileobj, false)?;
        let in_place = this.class.steps == OsSteps::PollLike;
        if let (true, Some(fd)) = (in_place, fd) {
            if let Some(key) = this.modify_natively(py, fileobj, &fd_obj, fd, events, data)? {
                return Ok(key.into_any());
            }
        }
        let key = this.key_in_try(fileobj, &fd_obj, fd)?;
        let Some(fd) = fd else {
            return Err(backend_error(crate::backend::Error::FdTooLarge));
        };
        let key = key.into_bound(py);
        let (old_fileobj, old_fd) = (key.get_item(0)?, key.get_item(1)?);
        let (old_events, old_data) = (key.get_item(2)?, key.get_item(3)?);

        if !in_place {
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
            let modified = this
                .warn_if_bool_fd_natively(&old_fd)
                .and_then(|()| this.os_watch(&old_fd, fd, interest, OsStep::Modify));
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

    /// `_PollLikeSelector.modify` in one lock hold, for the common case where it needs no
    /// Python code: `events` and `data` compare with the key's natively, and the fd is no
    /// bool (3.13 warns about those). None, with nothing done, when the general path must
    /// run (an odd argument, a replaced `_selector_cls`); an fd not registered is the
    /// stdlib's KeyError.
    pub(super) fn modify_natively(
        &self,
        py: Python<'_>,
        fileobj: &Bound<'_, PyAny>,
        fd_obj: &Bound<'_, PyAny>,
        fd: u64,
        events: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyTuple>>> {
        let Some(plain_events) = events_as_i64(events).filter(|_| self.native()) else {
            return Ok(None);
        };
        let interest = (plain_events & i64::from(READ | WRITE)) as u8;
        let blank = BlankKey::new(py)?;
        let mut state = self.lock()?;
        let Some(entry) = state.core.keys().get(fd) else {
            // Not registered: the stdlib's KeyError, decided under the lock (the general path
            // would look again, and could find a key another thread registered meanwhile).
            drop(state);
            return Err(Self::not_registered(fileobj, Some(Self::missing(fd_obj))));
        };
        let key = entry.key.bind(py).clone();
        let [old_fileobj, old_fd, old_events, old_data] = [0, 1, 2, 3].map(|i| entry.field(py, i));
        // An int subclass, given or stored, has its `__eq__` and `__hash__` called by the
        // lookup and the store: the general path.
        // (A bool fd warns on 3.13: the general path too.)
        let (Some(events_changed), Some(data_changed), true) = (
            differs_natively(events, &old_events),
            differs_natively(data, &old_data),
            old_fd.is_exact_instance_of::<PyInt>() && is_plain_int(fd_obj),
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
}
