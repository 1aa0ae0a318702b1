//! File objects to fds: `selectors._fileobj_to_fd`, and the hashing and warnings the stdlib's
//! dicts, sets and select module apply to an fd object.

use pyo3::exceptions::{PyAttributeError, PyRuntimeWarning, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};
use pyo3::{intern, PyTypeInfo};

use super::errors::{chain_handled, from_none, while_handling};

/// A file descriptor as the table keys it: `None` for an int beyond 64 bits, which no table
/// can hold and every system call refuses.
pub type FdNum = Option<u64>;

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
    let num = match fd.extract::<i64>() {
        Ok(n) if n >= 0 => Some(n as u64),
        Ok(_) => return Err(invalid_fd(&fd)),
        Err(_) if fd.lt(0)? => return Err(invalid_fd(&fd)),
        Err(_) => fd.extract::<u64>().ok(),
    };
    Ok((fd, num))
}

/// An `int` or `bool` itself, whose comparisons and hash run no Python code.
pub fn is_plain_int(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_exact_instance_of::<PyInt>() || obj.is_exact_instance_of::<PyBool>()
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
pub fn warn_if_bool_fd(fd: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = fd.py();
    if fd.is_exact_instance_of::<PyBool>() && python_3_13(py) {
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
