//! Finding a file object's key as the stdlib's dict finds it: `fileno()`, the fd object's
//! hash and `__eq__` where an int subclass makes them Python code, and the KeyErrors the stdlib
//! raises when it finds nothing.

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::base::SelectorBase;
use crate::python::errors::{chain_handled, from_none, while_handling};
use crate::python::fd::{
    fileobj_to_fd, hash_as_dict_key, is_plain_int, python_3_13, python_format, FdNum,
};

impl SelectorBase {
    /// `_fileobj_lookup`: the fd of `fileobj` (as the Python object a key holds, and its
    /// number), or, when it no longer has a valid one, the fd it was registered under (an
    /// identity search, so closed files can be unregistered).
    #[inline]
    pub(super) fn lookup_fd_object<'py>(
        &self,
        fileobj: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, FdNum)> {
        match fileobj_to_fd(fileobj) {
            Err(err) if err.is_instance_of::<PyValueError>(fileobj.py()) => {
                self.registered_as(fileobj, err)
            }
            result => result,
        }
    }

    /// The fd object `fileobj` itself was registered with, found by identity, for a file
    /// object whose `fileno()` failed with `err` (a closed file).
    #[cold]
    #[inline(never)]
    fn registered_as<'py>(
        &self,
        fileobj: &Bound<'py, PyAny>,
        err: PyErr,
    ) -> PyResult<(Bound<'py, PyAny>, FdNum)> {
        let py = fileobj.py();
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

    /// The fd of `fileobj` for a lookup in the stdlib's `try: ... self._fd_to_key[fd] ...
    /// except KeyError: raise KeyError(f"{fileobj!r} is not registered") from None`:
    /// `fileno()` and the fd's hash run inside it, so a KeyError they raise becomes that one.
    /// `pop` for `dict.pop`, which hashes nothing when the dict is empty.
    #[inline]
    pub(super) fn lookup_in_try<'py>(
        &self,
        fileobj: &Bound<'py, PyAny>,
        pop: bool,
    ) -> PyResult<(Bound<'py, PyAny>, FdNum)> {
        match self.lookup_fd_object(fileobj) {
            // A plain int's hash runs no code: the common case returns at once.
            Ok((fd_obj, fd)) if is_plain_int(&fd_obj) => Ok((fd_obj, fd)),
            found => self.in_try(fileobj, found, pop),
        }
    }

    /// `lookup_in_try` with the `fileno()` lookup already made.
    pub(super) fn in_try<'py>(
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
    /// as in a dict lookup). As the dict does, the value is read after the comparison, and
    /// the lookup starts again if the comparison removed or replaced the entry (a `close()`
    /// or `unregister()` run by `__eq__`).
    #[inline]
    pub(super) fn key_for(
        &self,
        fd_obj: &Bound<'_, PyAny>,
        fd: FdNum,
    ) -> PyResult<Option<Py<PyTuple>>> {
        let py = fd_obj.py();
        let Some(fd) = fd else { return Ok(None) };
        let (key, same) = {
            let state = self.lock()?;
            match state.core.keys().get(fd) {
                Some(entry) => (
                    entry.key.clone_ref(py),
                    entry.same_fd_without_python(fd_obj),
                ),
                None => return Ok(None),
            }
        };
        if same {
            return Ok(Some(key));
        }
        self.key_after_comparing(key, fd_obj, fd)
    }

    /// `key_for` off its common case: `stored == fd_obj` (an int subclass's `__eq__`), then
    /// the entry read again; a different fd object there (the entry removed or replaced)
    /// starts the lookup again.
    #[inline(never)]
    fn key_after_comparing(
        &self,
        key: Py<PyTuple>,
        fd_obj: &Bound<'_, PyAny>,
        fd: u64,
    ) -> PyResult<Option<Py<PyTuple>>> {
        let py = fd_obj.py();
        let mut stored = key.bind(py).get_item(1)?;
        drop(key);
        loop {
            let equal = stored.eq(fd_obj)?;
            let now = {
                let state = self.lock()?;
                let Some(entry) = state.core.keys().get(fd) else {
                    return Ok(None);
                };
                if entry.key.bind(py).get_item(1)?.is(&stored) {
                    return Ok(equal.then(|| entry.key.clone_ref(py)));
                }
                if entry.same_fd_without_python(fd_obj) {
                    return Ok(Some(entry.key.clone_ref(py)));
                }
                entry.field(py, 1)
            };
            // (The object compared before is freed here, without the lock, if it was the last
            // reference.)
            stored = now;
        }
    }

    /// The key registered for `fileobj`, if any (a bad file object raises as in the stdlib):
    /// `_fd_to_key.get(_fileobj_lookup(fileobj))`.
    pub(crate) fn find(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyTuple>>> {
        let (fd_obj, fd) = self.lookup_fd_object(fileobj)?;
        hash_as_dict_key(&fd_obj)?;
        self.key_for(&fd_obj, fd)
    }

    /// `KeyError("<fileobj!r> is not registered")`, raised `from None` by the stdlib while
    /// handling `handled` (the `KeyError` of its dict lookup, or one that `fileno()` raised);
    /// a failing `repr()` carries that as its context. (From 3.13 the mapping raises it
    /// outside any handler: `handled` is then None.)
    pub(super) fn not_registered(fileobj: &Bound<'_, PyAny>, handled: Option<PyErr>) -> PyErr {
        let py = fileobj.py();
        // `repr()` runs inside the stdlib's `except KeyError`: it sees `handled` as handled.
        let repr = match &handled {
            Some(handled) => while_handling(py, handled, || fileobj.repr()),
            None => fileobj.repr(),
        };
        match (repr, handled) {
            (Ok(r), None) => PyKeyError::new_err(format!("{r} is not registered")),
            (Ok(r), Some(handled)) => from_none(
                py,
                PyKeyError::new_err(format!("{r} is not registered")),
                handled,
            ),
            (Err(err), handled) => {
                if let Some(handled) = handled {
                    chain_handled(py, &err, handled);
                }
                err
            }
        }
    }

    /// `key_for` inside the stdlib's `try: ... except KeyError: raise KeyError(f"{fileobj!r}
    /// is not registered") from None` (unregister, modify): a KeyError an `__eq__` raises
    /// becomes that one, and so does finding nothing.
    pub(super) fn key_in_try(
        &self,
        fileobj: &Bound<'_, PyAny>,
        fd_obj: &Bound<'_, PyAny>,
        fd: FdNum,
    ) -> PyResult<Py<PyTuple>> {
        match self.key_for(fd_obj, fd) {
            Ok(Some(key)) => Ok(key),
            Ok(None) => Err(Self::not_registered(fileobj, Some(Self::missing(fd_obj)))),
            Err(err) if err.is_instance_of::<PyKeyError>(fileobj.py()) => {
                Err(Self::not_registered(fileobj, Some(err)))
            }
            Err(err) => Err(err),
        }
    }

    /// The stdlib's `KeyError(fd)` from a dict lookup that found nothing.
    pub(super) fn missing(fd_obj: &Bound<'_, PyAny>) -> PyErr {
        PyKeyError::new_err(fd_obj.clone().unbind())
    }

    /// The mapping's `[]`: the key, KeyError if none. Before 3.13 the lookup runs inside the
    /// `try` that rewords KeyErrors; from 3.13 only a missing key is reworded.
    #[inline]
    pub(crate) fn getitem(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<Py<PyTuple>> {
        let found = self.lookup_fd_object(fileobj);
        // The common case: a plain int fd, registered under a plain int. Two plain ints of
        // one number are the same dict key, and neither hashing nor comparing them runs code.
        if let Ok((fd_obj, Some(fd))) = &found {
            if is_plain_int(fd_obj) {
                let state = self.lock()?;
                if let Some(entry) = state.core.keys().get(*fd) {
                    if entry.same_fd_without_python(fd_obj) {
                        return Ok(entry.key.clone_ref(fileobj.py()));
                    }
                }
            }
        }
        self.getitem_found(fileobj, found)
    }

    /// `getitem` once `fileno()` gave `found`, off its common case.
    #[inline(never)]
    fn getitem_found<'py>(
        &self,
        fileobj: &Bound<'py, PyAny>,
        found: PyResult<(Bound<'py, PyAny>, FdNum)>,
    ) -> PyResult<Py<PyTuple>> {
        let py = fileobj.py();
        let (fd_obj, fd) = match found {
            // A plain int's hash runs no Python code, in any version.
            Ok((fd_obj, fd)) if is_plain_int(&fd_obj) => (fd_obj, fd),
            found if !python_3_13(py) => self.in_try(fileobj, found, false)?,
            found => {
                let (fd_obj, fd) = found?;
                hash_as_dict_key(&fd_obj)?;
                (fd_obj, fd)
            }
        };
        let found = match self.key_for(&fd_obj, fd) {
            // Before 3.13 the lookup (an `__eq__` raising KeyError) is inside the `try`.
            Err(err) if !python_3_13(py) && err.is_instance_of::<PyKeyError>(py) => {
                return Err(Self::not_registered(fileobj, Some(err)))
            }
            other => other?,
        };
        match found {
            Some(key) => Ok(key),
            None => {
                let handled = (!python_3_13(py)).then(|| Self::missing(&fd_obj));
                Err(Self::not_registered(fileobj, handled))
            }
        }
    }

    /// `Mapping.__contains__`: `self[fileobj]`, False on KeyError.
    pub(crate) fn contains(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<bool> {
        match self.getitem(fileobj) {
            Ok(_) => Ok(true),
            Err(err) if err.is_instance_of::<PyKeyError>(fileobj.py()) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// `KeyError("<fileobj!r> (FD <fd>) is already registered")`.
    pub(super) fn already_registered(
        fileobj: &Bound<'_, PyAny>,
        fd_obj: &Bound<'_, PyAny>,
    ) -> PyErr {
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
}
