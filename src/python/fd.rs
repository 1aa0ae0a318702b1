//! File objects to fds: `selectors._fileobj_to_fd`, and the hashing and warnings the stdlib's
//! dicts, sets and select module apply to an fd object.

use pyo3::exceptions::{
    PyAttributeError, PyOverflowError, PyRuntimeWarning, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};
use pyo3::{intern, PyTypeInfo};

use super::errors::{backend_error, chain_handled, from_none, while_handling};

/// A file descriptor as the table keys it: `None` for an int beyond 64 bits, which no table
/// can hold and every system call refuses.
pub type FdNum = Option<u64>;

/// The fd numbers a class's OS calls take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdRange {
    /// A C `int`: the select module's fd conversion.
    CInt,
    /// A `uintptr_t`: `select.kevent`'s ident.
    #[cfg_attr(not(kqueue), allow(dead_code))]
    SizeT,
}

impl FdRange {
    /// Whether an OS call of the class takes `fd`.
    pub fn holds(self, fd: u64) -> bool {
        match self {
            FdRange::CInt => fd <= libc::c_int::MAX as u64,
            FdRange::SizeT => true,
        }
    }

    /// The OverflowError for an fd number beyond the range.
    pub fn too_large(self) -> PyErr {
        match self {
            FdRange::CInt => backend_error(crate::backend::Error::FdTooLarge),
            FdRange::SizeT => {
                PyOverflowError::new_err("Python int too large to convert to C size_t")
            }
        }
    }
}

/// `selectors._fileobj_to_fd`: the fd as the Python object the key will hold, and its number.
pub fn fileobj_to_fd<'py>(fileobj: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, FdNum)> {
    let py = fileobj.py();
    let fd = if fileobj.is_instance_of::<PyInt>() {
        fileobj.clone()
    } else {
        let fd = fileobj.call_method0(intern!(py, "fileno")).and_then(|fd| {
            if fd.is_exact_instance_of::<PyInt>() {
                Ok(fd)
            } else {
                PyInt::type_object(py).call1((fd,))
            }
        });
        match fd {
            Ok(fd) => fd,
            Err(err)
                if err.is_instance_of::<PyAttributeError>(py)
                    || err.is_instance_of::<PyTypeError>(py)
                    || err.is_instance_of::<PyValueError>(py) =>
            {
                // `repr()` runs inside the stdlib's `except`: it sees `err` as handled.
                let repr = match while_handling(py, &err, || fileobj.repr()) {
                    Ok(repr) => repr,
                    Err(repr_err) => {
                        chain_handled(py, &repr_err, err);
                        return Err(repr_err);
                    }
                };
                let msg = format!("Invalid file object: {repr}");
                return Err(from_none(py, PyValueError::new_err(msg), err));
            }
            Err(err) => return Err(err),
        }
    };
    if !is_plain_int(&fd) {
        // An int subclass: `fd < 0` runs its own comparison, as in the stdlib.
        if fd.lt(0)? {
            return Err(invalid_fd(&fd));
        }
        return Ok((fd.clone(), fd.extract::<u64>().ok()));
    }
    let num = match plain_int_value(&fd) {
        Some(n) if n >= 0 => Some(n as u64),
        Some(_) => return Err(invalid_fd(&fd)),
        None if fd.lt(0)? => return Err(invalid_fd(&fd)),
        None => fd.extract::<u64>().ok(),
    };
    Ok((fd, num))
}

/// An `int` or `bool` itself, whose comparisons and hash run no Python code.
pub fn is_plain_int(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_exact_instance_of::<PyInt>() || obj.is_exact_instance_of::<PyBool>()
}

/// The value of a plain int (`is_plain_int`, which the caller checked) that fits in a C
/// `long`; None beyond. Raises nothing (an exception object is an allocation, which could
/// start the garbage collector under the selector's lock).
#[inline]
pub fn plain_int_value(obj: &Bound<'_, PyAny>) -> Option<i64> {
    debug_assert!(is_plain_int(obj));
    let mut overflow = 0;
    // SAFETY: `obj` is an int, for which PyLong_AsLongAndOverflow reports a value out of
    // range through `overflow` and sets no exception.
    let value = unsafe { pyo3::ffi::PyLong_AsLongAndOverflow(obj.as_ptr(), &mut overflow) };
    // A C long is 32 bits on some platforms.
    #[allow(clippy::useless_conversion)]
    (overflow == 0).then_some(i64::from(value))
}

/// Whether a dict holding `stored` finds it again when looked up with `fd_obj` (same hash
/// already established) without running Python code: the same object, or two plain ints
/// (same number, as the caller found them under one fd). Otherwise the dict runs
/// `stored == fd_obj`, which only an int subclass can make run Python code (`lookup.rs`, `key_for`).
pub fn same_without_python(stored: &Bound<'_, PyAny>, fd_obj: &Bound<'_, PyAny>) -> bool {
    stored.is(fd_obj) || (is_plain_int(stored) && is_plain_int(fd_obj))
}

/// The stdlib keys a dict by the fd object, so an int subclass's `__hash__` runs once per dict
/// operation (and may raise); a plain int's hash is invisible and skipped.
pub fn hash_as_dict_key(fd: &Bound<'_, PyAny>) -> PyResult<()> {
    if is_plain_int(fd) {
        return Ok(());
    }
    let py = fd.py();
    match fd.hash() {
        Ok(_) => Ok(()),
        // From 3.14 dicts and sets reword a TypeError (exactly that type) from `__hash__`,
        // naming the type as `%T` does (module-qualified but for builtins and __main__).
        Err(err)
            if py.version_info() >= (3, 14)
                && err.get_type(py).is(PyTypeError::type_object(py)) =>
        {
            let text = format!(
                "cannot use '{}' as a dict key ({})",
                fd.get_type().fully_qualified_name()?,
                err.value(py).str()?
            );
            Err(PyTypeError::new_err(text))
        }
        Err(err) => Err(err),
    }
}

fn invalid_fd(fd: &Bound<'_, PyAny>) -> PyErr {
    match python_format(fd) {
        Ok(text) => PyValueError::new_err(format!("Invalid file descriptor: {text}")),
        Err(err) => err,
    }
}

/// Python 3.13 changed a few behaviours of selectors.py and the select module.
pub fn python_3_13(py: Python<'_>) -> bool {
    static AT_LEAST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AT_LEAST.get_or_init(|| py.version_info() >= (3, 13))
}

/// From 3.13 the select module warns when a bool is passed where it wants an fd.
#[inline]
pub fn warn_if_bool_fd(fd: &Bound<'_, PyAny>) -> PyResult<()> {
    if fd.is_exact_instance_of::<PyBool>() {
        return warn_bool_fd(fd.py());
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn warn_bool_fd(py: Python<'_>) -> PyResult<()> {
    if python_3_13(py) {
        let category = py.get_type::<PyRuntimeWarning>();
        PyErr::warn(py, &category, c"bool is used as a file descriptor", 1)?;
    }
    Ok(())
}

/// `"{}".format(obj)`.
pub fn python_format(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = obj.py();
    let text = obj.call_method1(intern!(py, "__format__"), (PyString::new(py, ""),))?;
    text.extract()
}
