//! How each stdlib class's `select(timeout)` reads its argument (`Timeouts`, one per class):
//! its Python-level arithmetic, then the conversion of the C wait it hands the result to,
//! which only that C code can make in full where a value is odd (it is asked then).

use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyInt};

use crate::timeout::{self, Timeout, Timing};

/// The timeout rules of one stdlib class: which arithmetic its `select()` makes, and which
/// C wait converts the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeouts {
    /// SelectSelector: `max(timeout, 0)`, then `select.select()`: seconds to nanoseconds,
    /// rounding up; a float, or an int by `__index__`.
    Select,
    /// KqueueSelector: as SelectSelector, through `kqueue.control()`, which reports a closed
    /// kqueue before it converts the timeout and names the type it refuses.
    #[cfg_attr(not(kqueue), allow(dead_code))]
    Kqueue,
    /// PollSelector: 0 for `timeout <= 0`, else `math.ceil(timeout * 1e3)`, then `poll.poll()`:
    /// whole milliseconds, an `int`.
    #[cfg_attr(windows, allow(dead_code))]
    Poll,
    /// EpollSelector: as PollSelector, times `1e-3`, then `epoll.poll()`: seconds to
    /// nanoseconds to milliseconds, rounding up each time.
    #[cfg_attr(not(epoll), allow(dead_code))]
    Epoll,
}

impl Timeouts {
    /// Turns `select(timeout)`'s argument into a wait as the class's `select()` does, with
    /// the errors its Python code and its C wait raise, before any system call. `closed` gives
    /// the error of the class's OS handle once closed: the C wait reports that before it
    /// converts its timeout (which may call the user's `__index__` or `__float__`).
    pub fn parse(
        self,
        timeout: Option<&Bound<'_, PyAny>>,
        timing: Timing,
        closed: &dyn Fn() -> PyResult<()>,
    ) -> PyResult<Timeout> {
        let Some(t) = timeout else {
            return Ok(None);
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
                return Ok(Some(Duration::ZERO));
            }
            let is_int = t.is_exact_instance_of::<PyInt>();
            if let Ok(d) = self.plain_seconds(secs, is_int, timing) {
                return Ok(Some(d));
            }
        }
        match self {
            Timeouts::Poll | Timeouts::Epoll => self.parse_poll_like(t, timing, closed),
            Timeouts::Select | Timeouts::Kqueue => self.parse_select_like(t, closed),
        }
    }

    /// The wait for a plain float or int of `secs` seconds (> 0): the class's arithmetic
    /// and its C wait's conversion, natively.
    fn plain_seconds(
        self,
        secs: f64,
        is_int: bool,
        timing: Timing,
    ) -> Result<Duration, timeout::TimeoutError> {
        match self {
            Timeouts::Poll => timeout::poll_millis(secs).map(|ms| timing.poll_like_wait(secs, ms)),
            Timeouts::Epoll => {
                timeout::epoll_millis(secs).map(|ms| timing.poll_like_wait(secs, ms))
            }
            Timeouts::Select | Timeouts::Kqueue if is_int => {
                timeout::select_whole_seconds(secs as i64)
            }
            Timeouts::Select | Timeouts::Kqueue => timeout::select_nanos(secs),
        }
    }

    /// Whether a retry after EINTR waits what is left rounded up to milliseconds, as the
    /// poll and epoll waits of the stdlib do (under the millisecond switch only: `timeout.rs`).
    pub fn retries_in_millis(self) -> bool {
        matches!(self, Timeouts::Poll | Timeouts::Epoll)
    }
}

/// `math.ceil`.
pub(crate) fn math_ceil(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CEIL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CEIL.import(py, "math", "ceil")
}

impl Timeouts {
    /// The general path of `_PollLikeSelector.select`/`EpollSelector.select`, operator by
    /// operator: `timeout <= 0`, then `math.ceil(timeout * 1e3)` (times `1e-3` for epoll). A
    /// float (subclass) keeps its fraction of a millisecond unless the switch is on; any other
    /// number (`Fraction`, `Decimal`) waits the stdlib's whole milliseconds.
    fn parse_poll_like(
        self,
        t: &Bound<'_, PyAny>,
        timing: Timing,
        closed: &dyn Fn() -> PyResult<()>,
    ) -> PyResult<Timeout> {
        let py = t.py();
        if t.le(0)? {
            return Ok(Some(Duration::ZERO));
        }
        let precise = |ms: Duration| match t.cast::<PyFloat>() {
            Ok(f) => timing.poll_like_wait(f.value(), ms),
            Err(_) => ms,
        };
        let mut value = math_ceil(py)?.call1((t.mul(1e3)?,))?;
        let converted = if self == Timeouts::Poll {
            match value.extract::<i64>() {
                Ok(ms) => timeout::poll_wait_millis(ms),
                Err(_) => match value.extract::<f64>() {
                    Ok(ms) if ms.is_finite() => timeout::poll_wait_millis(ms.ceil() as i64),
                    _ => Err(timeout::TimeoutError::OutOfRange),
                },
            }
        } else {
            value = value.mul(1e-3)?;
            closed()?;
            value
                .extract::<f64>()
                .map_err(|_| timeout::TimeoutError::OutOfRange)
                .and_then(timeout::epoll_wait_millis)
        };
        match converted {
            Ok(d) => Ok(Some(precise(d))),
            Err(_) => self.ask_stdlib(&value),
        }
    }

    /// The general path of `SelectSelector.select` (and `KqueueSelector.select`): `max(timeout,
    /// 0)`, then what the C wait accepts: a float, an int by `__index__` (called once, as
    /// there), and whatever else the running version takes (3.15 takes `Fraction` and
    /// `Decimal`), which only the C code itself can say.
    fn parse_select_like(
        self,
        t: &Bound<'_, PyAny>,
        closed: &dyn Fn() -> PyResult<()>,
    ) -> PyResult<Timeout> {
        let py = t.py();
        let zero = 0i64.into_pyobject(py)?;
        if zero.gt(t)? {
            return Ok(Some(Duration::ZERO));
        }
        closed()?;
        if t.is_instance_of::<PyFloat>() {
            let converted = t
                .extract::<f64>()
                .ok()
                .and_then(|s| timeout::select_nanos(s).ok());
            return match converted {
                Some(d) => Ok(Some(d)),
                None => self.ask_stdlib(t),
            };
        }
        // SAFETY: PyNumber_Index returns a new reference, or NULL with an exception set.
        let index =
            unsafe { Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyNumber_Index(t.as_ptr())) };
        match index {
            Ok(n) => {
                let converted = n
                    .extract::<i64>()
                    .ok()
                    .and_then(|s| timeout::select_whole_seconds(s).ok());
                match (converted, self) {
                    (Some(d), _) => Ok(Some(d)),
                    // kqueue.control() names the type it was given.
                    (None, Timeouts::Kqueue) => Err(kqueue_refusal(t)?),
                    // The plain int it gave: the C code's range error, without calling
                    // `__index__` again.
                    (None, _) => self.ask_stdlib(&n),
                }
            }
            // `__index__` exists and raised TypeError: select.select() rewords it, not looking
            // further.
            Err(err)
                if err.is_instance_of::<PyTypeError>(py)
                    && self == Timeouts::Select
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
            Err(err) if err.is_instance_of::<PyTypeError>(py) => self.ask_stdlib(t),
            // Anything else `__index__` raised, the C code lets through.
            Err(err) => Err(err),
        }
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

impl Timeouts {
    /// Asks the class's C wait what it makes of a timeout we could not use: its exact error,
    /// or, when it takes the value after all, the wait it would have made. Opens no fd (a
    /// selector at the open-file limit must still get the timeout's own error) and never
    /// waits.
    fn ask_stdlib(self, value: &Bound<'_, PyAny>) -> PyResult<Timeout> {
        let py = value.py();
        let select = py.import(intern!(py, "select"))?;
        let outcome = match self {
            // On libkqueue (Linux) the select module has no kqueue to ask. kqueue.control()
            // converts its timeout as select.select() does and turns any refusal into its own
            // TypeError.
            Timeouts::Kqueue if !select.hasattr(intern!(py, "kqueue"))? => {
                match ask_select(&select, value) {
                    Err(_) => Err(kqueue_refusal(value)?),
                    Ok(()) => Ok(()),
                }
            }
            Timeouts::Select => ask_select(&select, value),
            Timeouts::Poll => {
                // poll() reports a never-open fd as POLLNVAL at once.
                let poller = select.call_method0("poll")?;
                poller.call_method1("register", (NEVER_OPEN_FD, select.getattr("POLLIN")?))?;
                poller.call_method1("poll", (value,)).map(drop)
            }
            // A handle object around a never-open fd: the timeout is checked first, then the
            // system call fails with EBADF.
            Timeouts::Epoll | Timeouts::Kqueue => {
                let epoll = self == Timeouts::Epoll;
                let cls = select.getattr(if epoll { "epoll" } else { "kqueue" })?;
                let handle = cls.call_method1("fromfd", (NEVER_OPEN_FD,))?;
                let result = match epoll {
                    true => handle.call_method1("poll", (value, 1)),
                    false => handle.call_method1("control", (py.None(), 1, value)),
                };
                let _ = handle.call_method0("close");
                match result {
                    Err(err) if err.is_instance_of::<PyOSError>(py) => Ok(()),
                    other => other.map(drop),
                }
            }
        };
        outcome?;
        Ok(Some(self.accepted_anyway(value)))
    }

    /// The wait the stdlib makes for a value its C code took although we could not read it.
    fn accepted_anyway(self, value: &Bound<'_, PyAny>) -> Duration {
        let as_int = || -> Option<i64> { value.call_method0("__int__").ok()?.extract().ok() };
        let converted = match self {
            Timeouts::Poll => as_int().map(timeout::poll_wait_millis),
            Timeouts::Epoll => value.extract::<f64>().ok().map(timeout::epoll_wait_millis),
            // 3.15 takes exact numbers (Fraction, Decimal): the wait rounds up to nanoseconds.
            Timeouts::Select | Timeouts::Kqueue => exact_nanos(value).map(Ok),
        };
        converted.and_then(Result::ok).unwrap_or(Duration::ZERO)
    }
}

/// `select.select([probe], [], [], value)`: Ok when it took the timeout (the probe's `fileno()`
/// is reached only after), else its error.
fn ask_select(select: &Bound<'_, PyModule>, value: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = value.py();
    let probe = pyo3::types::PyList::new(py, [Bound::new(py, TimeoutProbe)?])?;
    let none = pyo3::types::PyList::empty(py);
    match select.call_method1("select", (probe, &none, &none, value)) {
        Err(err) if err.is_instance_of::<TimeoutAccepted>(py) => Ok(()),
        other => other.map(drop),
    }
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
