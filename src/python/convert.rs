//! Python values to core values and core errors to Python exceptions, each with the exact
//! type and message the stdlib gives.

use std::time::Duration;

use pyo3::exceptions::{
    PyAttributeError, PyOSError, PyOverflowError, PyRuntimeError, PyRuntimeWarning, PyTypeError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};
use pyo3::{intern, PyTypeInfo};

use crate::backend::{Error, READ, WRITE};
use crate::sys;
use crate::timeout::{self, Timeout};

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
                let repr = match fileobj.repr() {
                    Ok(repr) => repr,
                    Err(repr_err) => {
                        repr_err.set_context(py, Some(err));
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
    hash_as(fd, "a dict key")
}

/// The same for a set (SelectSelector's `_readers` and `_writers`).
pub fn hash_as_set_element(fd: &Bound<'_, PyAny>) -> PyResult<()> {
    hash_as(fd, "a set element")
}

fn hash_as(fd: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
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
                "cannot use '{}' as {what} ({})",
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

/// `raise new from None` inside an `except` that caught `caught`.
pub fn from_none(py: Python<'_>, new: PyErr, caught: PyErr) -> PyErr {
    new.set_context(py, Some(caught));
    new.set_cause(py, None);
    new
}

/// `events` as a plain number when it is an `int` or `bool` that fits, the case worth a fast
/// path; a subclass may override the operators, so it takes the general path.
pub fn events_as_i64(events: &Bound<'_, PyAny>) -> Option<i64> {
    if events.is_exact_instance_of::<PyInt>() || events.is_exact_instance_of::<PyBool>() {
        events.extract::<i64>().ok()
    } else {
        None
    }
}

/// The check at the top of `register`: `if (not events) or (events & ~(READ | WRITE))`.
pub fn check_register_events(events: &Bound<'_, PyAny>) -> PyResult<()> {
    let invalid = match events_as_i64(events) {
        Some(e) => e == 0 || e & !3 != 0,
        None => !events.is_truthy()? || events.bitand(!3i64)?.is_truthy()?,
    };
    if invalid {
        return Err(PyValueError::new_err(format!(
            "Invalid events: {}",
            events.repr()?
        )));
    }
    Ok(())
}

/// What to ask the OS for: `events & EVENT_READ`, then `events & EVENT_WRITE`, each
/// truth-tested, as Python would compute them for whatever `events` is.
pub fn interest_of(events: &Bound<'_, PyAny>) -> PyResult<u8> {
    if let Some(e) = events_as_i64(events) {
        return Ok((e & i64::from(READ | WRITE)) as u8);
    }
    let mut interest = 0;
    for bit in [READ, WRITE] {
        if events.bitand(i64::from(bit))?.is_truthy()? {
            interest |= bit;
        }
    }
    Ok(interest)
}

/// `a != b` as Python evaluates it, skipping the call where identity settles it.
pub fn differs(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<bool> {
    match differs_natively(a, b) {
        Some(result) => Ok(result),
        None => a.ne(b),
    }
}

/// `a != b` when it can be answered without running Python code or allocating (either could
/// see the selector half-way through a call): the same None or int, or two plain ints that
/// fit in 64 bits. Safe to call under the selector's lock.
pub fn differs_natively(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> Option<bool> {
    if a.is(b) && (a.is_none() || a.is_exact_instance_of::<PyInt>()) {
        return Some(false);
    }
    Some(exact_i64(a)? != exact_i64(b)?)
}

/// The value of a plain `int` that fits in 64 bits. Raises nothing, even for a bigger int (an
/// exception object is an allocation, which could start the garbage collector): callers
/// use it under the selector's lock.
fn exact_i64(obj: &Bound<'_, PyAny>) -> Option<i64> {
    if !obj.is_exact_instance_of::<PyInt>() {
        return None;
    }
    let mut overflow = 0;
    // SAFETY: `obj` is an exact int, for which PyLong_AsLongAndOverflow reports a value out of
    // range through `overflow` and sets no exception.
    let value = unsafe { pyo3::ffi::PyLong_AsLongAndOverflow(obj.as_ptr(), &mut overflow) };
    // A C long is 32 bits on some platforms.
    #[allow(clippy::useless_conversion)]
    (overflow == 0).then_some(i64::from(value))
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

/// The waits, each with the stdlib's own timeout rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    #[cfg_attr(not(epoll), allow(dead_code))]
    Epoll,
    #[cfg_attr(not(kqueue), allow(dead_code))]
    Kqueue,
    Poll,
    Select,
}

impl Kind {
    /// `_PollLikeSelector`'s subclasses: `modify()` changes the OS registration in place, and
    /// the fd goes through the select module's fd conversion on every registration change.
    pub fn is_poll_like(self) -> bool {
        matches!(self, Kind::Epoll | Kind::Poll)
    }
}

/// A timeout argument after the stdlib's Python-level arithmetic. `Refused` holds the error the
/// C wait would raise on it; the caller raises it where the C code would check it.
pub enum ParsedTimeout {
    Wait(Timeout),
    Refused(PyErr),
}

/// Turns `select(timeout)`'s argument into a wait as the stdlib's `select()` of `kind` does.
/// Errors raised here are the ones the stdlib raises in Python code, before any system call.
pub fn parse_timeout(kind: Kind, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<ParsedTimeout> {
    let Some(t) = timeout else {
        return Ok(ParsedTimeout::Wait(None));
    };
    let fast = if t.is_exact_instance_of::<PyFloat>() {
        t.extract::<f64>().ok()
    } else if t.is_exact_instance_of::<PyInt>() {
        t.extract::<i64>().ok().map(|n| n as f64)
    } else {
        None
    };
    if let Some(secs) = fast.filter(|s| s.is_finite()) {
        if secs <= 0.0 {
            return Ok(ParsedTimeout::Wait(Some(Duration::ZERO)));
        }
        let converted = match kind {
            Kind::Poll => timeout::poll_millis(secs).map(|ms| timeout::poll_like_wait(secs, ms)),
            Kind::Epoll => timeout::epoll_millis(secs).map(|ms| timeout::poll_like_wait(secs, ms)),
            Kind::Select | Kind::Kqueue if t.is_exact_instance_of::<PyInt>() => {
                timeout::select_whole_seconds(secs as i64)
            }
            Kind::Select | Kind::Kqueue => timeout::select_nanos(secs),
        };
        if let Ok(d) = converted {
            return Ok(ParsedTimeout::Wait(Some(d)));
        }
    }
    match kind {
        Kind::Poll | Kind::Epoll => parse_poll_like_timeout(kind, t),
        Kind::Select | Kind::Kqueue => parse_select_timeout(kind, t),
    }
}

fn math_ceil(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CEIL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CEIL.import(py, "math", "ceil")
}

/// The general path of `_PollLikeSelector.select`/`EpollSelector.select`, operator by operator:
/// `timeout <= 0`, then `math.ceil(timeout * 1e3)` (times `1e-3` for epoll). A float
/// (subclass) keeps its fraction of a millisecond unless the switch is on; any other number
/// (`Fraction`, `Decimal`) waits the stdlib's whole milliseconds.
fn parse_poll_like_timeout(kind: Kind, t: &Bound<'_, PyAny>) -> PyResult<ParsedTimeout> {
    let py = t.py();
    if t.le(0)? {
        return Ok(ParsedTimeout::Wait(Some(Duration::ZERO)));
    }
    let precise = |ms: Duration| match t.cast::<PyFloat>() {
        Ok(f) => timeout::poll_like_wait(f.value(), ms),
        Err(_) => ms,
    };
    let ms = math_ceil(py)?.call1((t.mul(1e3)?,))?;
    if kind == Kind::Poll {
        let converted = match ms.extract::<i64>() {
            Ok(ms) => timeout::poll_wait_millis(ms),
            Err(_) => match ms.extract::<f64>() {
                Ok(ms) if ms.is_finite() => timeout::poll_wait_millis(ms.ceil() as i64),
                _ => Err(timeout::TimeoutError::OutOfRange),
            },
        };
        return Ok(match converted {
            Ok(d) => ParsedTimeout::Wait(Some(precise(d))),
            Err(_) => refused_by_stdlib(py, Kind::Poll, &ms)?,
        });
    }
    let secs = ms.mul(1e-3)?;
    let converted = secs
        .extract::<f64>()
        .map_err(|_| timeout::TimeoutError::OutOfRange)
        .and_then(timeout::epoll_wait_millis);
    Ok(match converted {
        Ok(d) => ParsedTimeout::Wait(Some(precise(d))),
        Err(_) => refused_by_stdlib(py, Kind::Epoll, &secs)?,
    })
}

/// The general path of `SelectSelector.select` (and `KqueueSelector.select`): `max(timeout,
/// 0)`, then what the C wait accepts: a float, an int by `__index__` (called once, as there),
/// and whatever else the running version takes (3.9 truncates with `__int__`; 3.15 takes
/// `Fraction` and `Decimal`), which only the C code itself can say.
fn parse_select_timeout(kind: Kind, t: &Bound<'_, PyAny>) -> PyResult<ParsedTimeout> {
    let py = t.py();
    let zero = 0i64.into_pyobject(py)?;
    if zero.gt(t)? {
        return Ok(ParsedTimeout::Wait(Some(Duration::ZERO)));
    }
    if t.is_instance_of::<PyFloat>() {
        let converted = t
            .extract::<f64>()
            .ok()
            .and_then(|s| timeout::select_nanos(s).ok());
        return Ok(match converted {
            Some(d) => ParsedTimeout::Wait(Some(d)),
            None => refused_by_stdlib(py, kind, t)?,
        });
    }
    // SAFETY: PyNumber_Index returns a new reference, or NULL with an exception set.
    let index = unsafe { Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyNumber_Index(t.as_ptr())) };
    match index {
        Ok(n) => {
            let converted = n
                .extract::<i64>()
                .ok()
                .and_then(|s| timeout::select_whole_seconds(s).ok());
            Ok(match converted {
                Some(d) => ParsedTimeout::Wait(Some(d)),
                // The plain int it gave: the C code's range error, without calling
                // `__index__` again.
                None => refused_by_stdlib(py, kind, &n)?,
            })
        }
        // `__index__` exists and raised TypeError: the C code would reword it, not look further.
        Err(err)
            if err.is_instance_of::<PyTypeError>(py)
                && kind == Kind::Select
                && t.get_type().hasattr(intern!(py, "__index__"))? =>
        {
            // 3.15 rewords it and names the type.
            Err(PyTypeError::new_err(if py.version_info() >= (3, 15) {
                format!(
                    "timeout must be a real number or None, not {}",
                    t.get_type().fully_qualified_name()?
                )
            } else {
                "timeout must be a float or None".to_owned()
            }))
        }
        Err(err) if err.is_instance_of::<PyTypeError>(py) => refused_by_stdlib(py, kind, t),
        // Anything else `__index__` raised, the C code lets through.
        Err(err) => Err(err),
    }
}

/// An fd number no process can have open (Linux caps fds well below `INT_MAX`): the stdlib's
/// waits can be handed it to check their other arguments without waiting or opening anything.
const NEVER_OPEN_FD: i32 = i32::MAX;

pyo3::create_exception!(rselectors, TimeoutAccepted, pyo3::exceptions::PyException);

/// Raises `TimeoutAccepted` from `fileno()`: `select.select()` converts its fd lists only
/// after its timeout, so this tells "timeout accepted" apart from any timeout error.
#[pyclass(frozen, module = "rselectors._rselectors", name = "_TimeoutProbe")]
struct TimeoutProbe;

#[pymethods]
impl TimeoutProbe {
    fn fileno(&self) -> PyResult<i32> {
        Err(TimeoutAccepted::new_err(()))
    }
}

/// Asks the stdlib's C wait of `kind` what it makes of a timeout we could not use: its exact
/// error, or, when it takes the value after all, the wait it would have made. Opens no fd (a
/// selector at the open-file limit must still get the timeout's own error) and never waits.
fn refused_by_stdlib(
    py: Python<'_>,
    kind: Kind,
    value: &Bound<'_, PyAny>,
) -> PyResult<ParsedTimeout> {
    let select = py.import(intern!(py, "select"))?;
    // On libkqueue (Linux) the select module has no kqueue to ask. kqueue.control() converts
    // its timeout as select.select() does and turns any refusal into its own TypeError.
    let asked = if kind == Kind::Kqueue && !select.hasattr(intern!(py, "kqueue"))? {
        Kind::Select
    } else {
        kind
    };
    let outcome = match asked {
        Kind::Select => {
            let probe = pyo3::types::PyList::new(py, [Bound::new(py, TimeoutProbe)?])?;
            let none = pyo3::types::PyList::empty(py);
            match select.call_method1("select", (probe, &none, &none, value)) {
                Err(err) if err.is_instance_of::<TimeoutAccepted>(py) => Ok(()),
                Err(_) if kind == Kind::Kqueue => Err(PyTypeError::new_err(format!(
                    "timeout argument must be a number or None, got {}",
                    value.get_type().name()?
                ))),
                Err(err) => Err(err),
                Ok(_) => Ok(()),
            }
        }
        Kind::Poll => {
            // poll() reports a never-open fd as POLLNVAL at once.
            let poller = select.call_method0("poll")?;
            poller.call_method1("register", (NEVER_OPEN_FD, select.getattr("POLLIN")?))?;
            poller.call_method1("poll", (value,)).map(drop)
        }
        Kind::Epoll | Kind::Kqueue => {
            // A handle object around a never-open fd: the timeout is checked first, then the
            // system call fails with EBADF.
            let (cls, call) = if kind == Kind::Epoll {
                (select.getattr("epoll")?, "poll")
            } else {
                (select.getattr("kqueue")?, "control")
            };
            let handle = cls.call_method1("fromfd", (NEVER_OPEN_FD,))?;
            let result = if kind == Kind::Epoll {
                handle.call_method1(call, (value, 1))
            } else {
                handle.call_method1(call, (py.None(), 1, value))
            };
            let _ = handle.call_method0("close");
            match result {
                Err(err) if err.is_instance_of::<PyOSError>(py) => Ok(()),
                other => other.map(drop),
            }
        }
    };
    Ok(match outcome {
        Err(err) => ParsedTimeout::Refused(err),
        Ok(()) => ParsedTimeout::Wait(Some(accepted_anyway(kind, value))),
    })
}

/// The wait the stdlib makes for a value its C code took although we could not read it.
fn accepted_anyway(kind: Kind, value: &Bound<'_, PyAny>) -> Duration {
    let py = value.py();
    let as_int = || -> Option<i64> { value.call_method0("__int__").ok()?.extract().ok() };
    let converted = match kind {
        // 3.9 truncates what has `__int__`.
        Kind::Select | Kind::Kqueue if py.version_info() < (3, 10) => {
            as_int().map(timeout::select_whole_seconds)
        }
        // 3.15 takes exact numbers (Fraction, Decimal): the wait rounds up to nanoseconds.
        Kind::Select | Kind::Kqueue => exact_nanos(value).map(Ok),
        Kind::Poll => as_int().map(timeout::poll_wait_millis),
        Kind::Epoll => value.extract::<f64>().ok().map(timeout::epoll_wait_millis),
    };
    converted.and_then(Result::ok).unwrap_or(Duration::ZERO)
}

/// `value` seconds as nanoseconds rounded up, from its `as_integer_ratio()` (exact for
/// `Fraction` and `Decimal`), or from `float(value)`.
fn exact_nanos(value: &Bound<'_, PyAny>) -> Option<Duration> {
    if let Ok(ratio) = value.call_method0("as_integer_ratio") {
        let (num, den): (i128, i128) = ratio.extract().ok()?;
        if den <= 0 {
            return None;
        }
        let ns = num.checked_mul(1_000_000_000)?;
        let ns = ns.div_euclid(den) + i128::from(ns.rem_euclid(den) != 0);
        return u64::try_from(ns.max(0)).ok().map(Duration::from_nanos);
    }
    timeout::select_nanos(value.extract::<f64>().ok()?).ok()
}
