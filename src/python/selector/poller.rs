//! A replaced `_selector_cls` (CPython's tests patch it with a mock; gevent patches in a green
//! one): an instance of it, called as `_PollLikeSelector` and `EpollSelector` call theirs.

use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;

use crate::backend::PollBits;
use crate::python::timeout_arg::math_ceil;

/// The select module's object a class's `_selector_cls` names: a replaced one is called as
/// the class calls its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(windows, allow(dead_code))]
pub(crate) enum SelectorCls {
    /// `select.poll`: `poll(timeout)` in milliseconds, None to block.
    Poll,
    /// `select.epoll`: `poll(timeout, max_events)` in seconds, -1 to block; closed with the
    /// selector (`EpollSelector.close`).
    Epoll,
}

impl SelectorCls {
    /// Whether the selector's `close()` closes it.
    fn closed_with_selector(self) -> bool {
        self == SelectorCls::Epoll
    }

    /// The timeout `_PollLikeSelector.select` (`EpollSelector.select`) hands its poller: None
    /// (-1), 0 for `timeout <= 0`, else `math.ceil(timeout * 1e3)` (times `1e-3`), in Python:
    /// no rounding or checks of ours.
    fn timeout<'py>(
        self,
        py: Python<'py>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let epoll = self == SelectorCls::Epoll;
        let Some(t) = timeout else {
            return Ok(match epoll {
                true => (-1i32).into_pyobject(py)?.into_any(),
                false => py.None().into_bound(py),
            });
        };
        if t.le(0)? {
            return Ok(0i32.into_pyobject(py)?.into_any());
        }
        let ms = math_ceil(py)?.call1((t.mul(1e3)?,))?;
        match epoll {
            true => ms.mul(1e-3),
            false => Ok(ms),
        }
    }
}

/// An instance of a replaced `_selector_cls`, and which select module object it stands for.
pub struct CustomPoller {
    poller: Py<PyAny>,
    cls: SelectorCls,
}

/// The events argument of the poller's `register` and `modify`.
fn poller_events(interest: u8) -> i64 {
    // `select.POLLIN`/`EPOLLIN` and `POLLOUT`/`EPOLLOUT` are the same numbers.
    PollBits::POLL.of_interest(interest) as i64
}

impl CustomPoller {
    pub fn new(poller: Py<PyAny>, cls: SelectorCls) -> Self {
        CustomPoller { poller, cls }
    }

    pub fn register(&self, fd: &Bound<'_, PyAny>, interest: u8) -> PyResult<()> {
        let py = fd.py();
        let args = (fd, poller_events(interest));
        self.poller
            .call_method1(py, intern!(py, "register"), args)?;
        Ok(())
    }

    pub fn modify(&self, fd: &Bound<'_, PyAny>, interest: u8) -> PyResult<()> {
        let py = fd.py();
        let args = (fd, poller_events(interest));
        self.poller.call_method1(py, intern!(py, "modify"), args)?;
        Ok(())
    }

    /// Errors are swallowed where the stdlib swallows them: OSError only.
    pub fn unregister(&self, fd: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = fd.py();
        match self
            .poller
            .call_method1(py, intern!(py, "unregister"), (fd,))
        {
            Err(err) if !err.is_instance_of::<PyOSError>(py) => Err(err),
            _ => Ok(()),
        }
    }

    /// One `poll(timeout)` (`poll(timeout, max_events)` for epoll), `timeout` being
    /// `select()`'s argument, the result mapped to `(fd, events)` as
    /// `PollSelector`/`EpollSelector` map it.
    pub fn poll(
        &self,
        py: Python<'_>,
        timeout: Option<&Bound<'_, PyAny>>,
        max_events: usize,
    ) -> PyResult<Vec<(u64, u8)>> {
        let timeout = self.cls.timeout(py, timeout)?;
        let poll = intern!(py, "poll");
        let result = match self.cls {
            SelectorCls::Epoll => self.poller.call_method1(py, poll, (timeout, max_events))?,
            SelectorCls::Poll => self.poller.call_method1(py, poll, (timeout,))?,
        };
        let mut ready = Vec::new();
        for item in result.bind(py).try_iter()? {
            let (fd, event): (u64, i64) = item?.extract()?;
            ready.push((fd, PollBits::POLL.ready_events(event as u64)));
        }
        Ok(ready)
    }

    pub fn call0(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        self.poller.call_method0(py, name)
    }

    pub fn object(&self) -> &Py<PyAny> {
        &self.poller
    }

    /// Close's first step: an epoll poller is closed, as the stdlib's `EpollSelector.close`
    /// closes `self._selector`.
    pub fn close_with_selector(&self, py: Python<'_>) -> PyResult<()> {
        if self.cls.closed_with_selector() {
            self.call0(py, "close")?;
        }
        Ok(())
    }
}
