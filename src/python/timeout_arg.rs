//! `select(timeout)`'s argument read as the stdlib's `select()` of each kind reads it: its
//! Python-level arithmetic, and the C wait's own checks where only the C code can say.

use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyInt};

use crate::backend::Kind;
use crate::timeout::{self, Timeout};

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
            _ if kind.is_poll() => {
                timeout::poll_millis(secs).map(|ms| timeout::poll_like_wait(secs, ms))
            }
            _ if kind.is_epoll() => {
                timeout::epoll_millis(secs).map(|ms| timeout::poll_like_wait(secs, ms))
            }
            // Select and kqueue.
            _ if t.is_exact_instance_of::<PyInt>() => timeout::select_whole_seconds(secs as i64),
            _ => timeout::select_nanos(secs),
        };
        if let Ok(d) = converted {
            return Ok(ParsedTimeout::Wait(Some(d)));
        }
    }
    match kind.is_poll_like() {
        true => parse_poll_like_timeout(kind, t),
        false => parse_select_timeout(kind, t),
    }
}

pub(crate) fn math_ceil(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
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
    if kind.is_poll() {
        let converted = match ms.extract::<i64>() {
            Ok(ms) => timeout::poll_wait_millis(ms),
            Err(_) => match ms.extract::<f64>() {
                Ok(ms) if ms.is_finite() => timeout::poll_wait_millis(ms.ceil() as i64),
                _ => Err(timeout::TimeoutError::OutOfRange),
            },
        };
        return Ok(match converted {
            Ok(d) => ParsedTimeout::Wait(Some(precise(d))),
            Err(_) => refused_by_stdlib(py, kind, &ms)?,
        });
    }
    let secs = ms.mul(1e-3)?;
    let converted = secs
        .extract::<f64>()
        .map_err(|_| timeout::TimeoutError::OutOfRange)
        .and_then(timeout::epoll_wait_millis);
    Ok(match converted {
        Ok(d) => ParsedTimeout::Wait(Some(precise(d))),
        Err(_) => refused_by_stdlib(py, kind, &secs)?,
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
                // kqueue.control() names the type it was given.
                None if kind.is_kqueue() => ParsedTimeout::Refused(kqueue_refusal(t)?),
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
// On Windows, Select is the only kind: the other arms are for the POSIX builds.
#[cfg_attr(windows, allow(unreachable_patterns))]
fn refused_by_stdlib(
    py: Python<'_>,
    kind: Kind,
    value: &Bound<'_, PyAny>,
) -> PyResult<ParsedTimeout> {
    let select = py.import(intern!(py, "select"))?;
    // On libkqueue (Linux) the select module has no kqueue to ask. kqueue.control() converts
    // its timeout as select.select() does and turns any refusal into its own TypeError.
    let asked = if kind.is_kqueue() && !select.hasattr(intern!(py, "kqueue"))? {
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
                Err(_) if kind.is_kqueue() => Err(kqueue_refusal(value)?),
                Err(err) => Err(err),
                Ok(_) => Ok(()),
            }
        }
        _ if kind.is_poll() => {
            // poll() reports a never-open fd as POLLNVAL at once.
            let poller = select.call_method0("poll")?;
            poller.call_method1("register", (NEVER_OPEN_FD, select.getattr("POLLIN")?))?;
            poller.call_method1("poll", (value,)).map(drop)
        }
        // epoll and kqueue.
        _ => {
            // A handle object around a never-open fd: the timeout is checked first, then the
            // system call fails with EBADF.
            let (cls, call) = if kind.is_epoll() {
                (select.getattr("epoll")?, "poll")
            } else {
                (select.getattr("kqueue")?, "control")
            };
            let handle = cls.call_method1("fromfd", (NEVER_OPEN_FD,))?;
            let result = if kind.is_epoll() {
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
        _ if kind.is_poll() => as_int().map(timeout::poll_wait_millis),
        _ if kind.is_epoll() => value.extract::<f64>().ok().map(timeout::epoll_wait_millis),
        // Select and kqueue. 3.9 truncates what has `__int__`.
        _ if py.version_info() < (3, 10) => as_int().map(timeout::select_whole_seconds),
        // 3.15 takes exact numbers (Fraction, Decimal): the wait rounds up to nanoseconds.
        _ => exact_nanos(value).map(Ok),
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

/// kqueue.control()'s TypeError for any timeout it cannot take, naming the type it was given.
fn kqueue_refusal(value: &Bound<'_, PyAny>) -> PyResult<PyErr> {
    Ok(PyTypeError::new_err(format!(
        "timeout argument must be a number or None, got {}",
        value.get_type().name()?
    )))
}
