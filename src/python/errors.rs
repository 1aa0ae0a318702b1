//! Core errors to the Python exceptions the stdlib raises for them, type and message.

use pyo3::exceptions::{PyOSError, PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::backend::Error;
use crate::sys;

/// `raise new from None` inside an `except` that caught `caught`.
pub fn from_none(py: Python<'_>, new: PyErr, caught: PyErr) -> PyErr {
    new.set_context(py, Some(caught));
    new.set_cause(py, None);
    new
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
