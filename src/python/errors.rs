//! Core errors to the Python exceptions the stdlib raises for them, type and message.

use pyo3::exceptions::{PyOSError, PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::backend::Error;
use crate::sys;

/// `raise new from None` inside an `except` that caught `caught`.
pub fn from_none(py: Python<'_>, new: PyErr, caught: PyErr) -> PyErr {
    // `new` is ours, just made: its context is `caught`, the innermost exception handled,
    // whatever an outer one (`while_handling`) gave it when it was made.
    let caught = caught.into_value(py);
    // SAFETY: both are live exception objects; the call steals `into_ptr`'s reference.
    unsafe { pyo3::ffi::PyException_SetContext(new.value(py).as_ptr(), caught.into_ptr()) };
    new.set_cause(py, None);
    new
}

/// The `__context__` that raising `raised` inside an `except` that caught `handled` gives:
/// everything raised there gets `handled` as its context, so it ends the chain, after any
/// exception `raised` met in a handler of its own (a `__repr__` that raises in its `except`).
/// Nothing changes if `handled` is in the chain already, or the chain is a cycle.
/// (Not `PyErr::set_context`: pyo3 0.29+, and the free-threaded 3.13 build needs 0.28.)
pub fn chain_handled(py: Python<'_>, raised: &PyErr, handled: PyErr) {
    let handled = handled.into_value(py).into_bound(py).into_any();
    let mut last = raised.value(py).clone().into_any();
    // Floyd's tortoise: a step behind every other step, it meets `last` only in a cycle.
    let mut slow = last.clone();
    let mut slow_moves = false;
    while !last.is(&handled) {
        let Some(next) = context_of(&last) else {
            // SAFETY: both are live exception objects; the call steals `into_ptr`'s reference.
            unsafe { pyo3::ffi::PyException_SetContext(last.as_ptr(), handled.into_ptr()) };
            return;
        };
        last = next;
        if slow_moves {
            match context_of(&slow) {
                Some(next) if !next.is(&last) => slow = next,
                _ => return,
            }
        }
        slow_moves = !slow_moves;
    }
}

/// `exc.__context__`, read as CPython's own chaining reads it (no attribute lookup).
fn context_of<'py>(exc: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    // SAFETY: `exc` is a live exception object (a `__context__` can be nothing else); the call
    // returns a new reference or NULL, and sets no exception.
    unsafe {
        Bound::from_owned_ptr_or_opt(exc.py(), pyo3::ffi::PyException_GetContext(exc.as_ptr()))
    }
}

/// Runs `f` as the body of an `except` block that caught `caught`: Python code it calls sees
/// `caught` as the exception being handled (`sys.exc_info()`), and an exception raised there
/// gets it as its `__context__`, as in the stdlib's `except: super().unregister(fileobj)`.
pub fn while_handling<T>(py: Python<'_>, caught: &PyErr, f: impl FnOnce() -> T) -> T {
    let value = caught.value(py);
    let (mut kind, mut saved, mut traceback) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    // SAFETY: PyErr_GetExcInfo hands out new references (or NULLs), which PyErr_SetExcInfo
    // takes back below; PyErr_SetExcInfo steals the three references it is given.
    unsafe {
        pyo3::ffi::PyErr_GetExcInfo(&mut kind, &mut saved, &mut traceback);
        let tb = caught
            .traceback(py)
            .map_or(std::ptr::null_mut(), |t| t.into_ptr());
        pyo3::ffi::PyErr_SetExcInfo(value.get_type().into_ptr(), value.clone().into_ptr(), tb);
    }
    let result = f();
    // SAFETY: as above: the saved references go back.
    unsafe { pyo3::ffi::PyErr_SetExcInfo(kind, saved, traceback) };
    result
}

/// The OSError CPython would raise for this errno (its subclass picked by errno).
pub fn os_error(err: &std::io::Error) -> PyErr {
    match err.raw_os_error() {
        #[cfg(unix)]
        Some(errno) => PyOSError::new_err((errno, sys::strerror(errno))),
        // `PyErr_SetExcFromWindowsErr`'s arguments: OSError derives `errno` (and so the
        // subclass) from the `winerror` it is given.
        #[cfg(windows)]
        Some(code) => {
            let message = sys::windows_error_message(code);
            PyOSError::new_err((0, message, None::<i32>, code, None::<i32>))
        }
        None => PyOSError::new_err(err.to_string()),
    }
}

pub fn backend_error(err: Error) -> PyErr {
    match err {
        Error::Os(e) => os_error(&e),
        Error::FdTooLarge => PyOverflowError::new_err("Python int too large to convert to C int"),
        #[cfg(unix)]
        Error::FdOutOfRange => PyValueError::new_err("filedescriptor out of range in select()"),
        #[cfg(windows)]
        Error::FdOutOfRange => PyValueError::new_err("too many file descriptors in select()"),
        Error::Closed(what) => {
            PyValueError::new_err(format!("I/O operation on closed {what} object"))
        }
        Error::ConcurrentPoll => PyRuntimeError::new_err("concurrent poll() invocation"),
    }
}
