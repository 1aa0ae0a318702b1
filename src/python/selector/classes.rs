//! The concrete selector classes (`SelectSelector`, `PollSelector`, `EpollSelector`,
//! `KqueueSelector`), each a `SelectorBase` with its `Class`: what the stdlib's class does its
//! own way, kept on the class as selectors.py keeps it (`_selector_cls`, its own `register`,
//! `modify` and `select`). The other rooms ask the class; none of them asks which one it is.

use pyo3::prelude::*;

use super::base::SelectorBase;
use super::poller::SelectorCls;
#[cfg(epoll)]
use crate::backend::epoll::EXCLUSIVE;
use crate::backend::Mechanism;
use crate::python::fd::FdRange;
use crate::python::timeout_arg::Timeouts;
#[cfg(epoll)]
use crate::python::{errors::backend_error, events::interest_of};

/// The rules of one stdlib selector class.
#[derive(Clone, Copy)]
pub(crate) struct Class {
    /// The OS mechanism the core drives for it.
    pub mechanism: Mechanism,
    /// How its `register`, `modify` and `unregister` reach the OS.
    pub steps: OsSteps,
    /// How its `select(timeout)` reads the timeout.
    pub timeouts: Timeouts,
    /// The fds its OS calls take, and their error for a larger one.
    pub fd_range: FdRange,
    /// Its OS object's `unregister` raises for an fd it does not hold (`select.poll`'s
    /// KeyError), which the stdlib lets through; epoll's OSError it swallows.
    pub unregister_raises_for_lacking_fd: bool,
    /// Its `_selector_cls`, when it has one: how an instance of a replaced one is driven.
    pub selector_cls: Option<SelectorCls>,
}

/// How a class's steps reach the OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OsSteps {
    /// SelectSelector: `self._readers` and `self._writers`, a Python set per event, each
    /// changed as its `events & EVENT_X` says, which no OS refuses; `select.select` converts
    /// every fd at each wait (a bool one warns then), and walks its ready fds in the sets'
    /// order.
    Sets,
    /// KqueueSelector: a kevent per filter, each made as soon as its `events & EVENT_X` says
    /// so, inside the `try` that takes the key back, and removed one at a time.
    Filters,
    /// `_PollLikeSelector` (poll, epoll): one registration of the events computed first,
    /// changed in place by `modify`; the select module's object converts the fd at each
    /// change (a bool one warns, 3.13+) and looks up ready fds by the plain int it reports.
    PollLike,
}

pub(crate) const SELECT: Class = Class {
    mechanism: Mechanism::Select,
    steps: OsSteps::Sets,
    timeouts: Timeouts::Select,
    fd_range: FdRange::CInt,
    unregister_raises_for_lacking_fd: false,
    selector_cls: None,
};

#[cfg(unix)]
pub(crate) const POLL: Class = Class {
    mechanism: Mechanism::Poll,
    steps: OsSteps::PollLike,
    timeouts: Timeouts::Poll,
    fd_range: FdRange::CInt,
    unregister_raises_for_lacking_fd: true,
    selector_cls: Some(SelectorCls::Poll),
};

#[cfg(epoll)]
pub(crate) const EPOLL: Class = Class {
    mechanism: Mechanism::Epoll,
    steps: OsSteps::PollLike,
    timeouts: Timeouts::Epoll,
    fd_range: FdRange::CInt,
    unregister_raises_for_lacking_fd: false,
    selector_cls: Some(SelectorCls::Epoll),
};

#[cfg(kqueue)]
pub(crate) const KQUEUE: Class = Class {
    mechanism: Mechanism::Kqueue,
    steps: OsSteps::Filters,
    timeouts: Timeouts::Kqueue,
    // select.kevent takes the fd as a `uintptr_t`.
    fd_range: FdRange::SizeT,
    unregister_raises_for_lacking_fd: false,
    selector_cls: None,
};

macro_rules! selector_class {
    ($name:ident, $py_name:literal, $class:expr, $doc:literal $(, $extra:item)*) => {
        #[doc = $doc]
        #[pyclass(frozen, subclass, extends = SelectorBase, module = "rselectors._rselectors", name = $py_name)]
        pub struct $name;

        #[pymethods]
        impl $name {
            #[new]
            fn new(py: Python<'_>) -> PyResult<PyClassInitializer<Self>> {
                Ok(PyClassInitializer::from(SelectorBase::new(py, $class)?).add_subclass($name))
            }

            $($extra)*
        }
    };
}

#[cfg(epoll)]
selector_class!(
    EpollSelector,
    "EpollSelector",
    EPOLL,
    "Epoll-based selector.",
    /// The epoll fd.
    fn fileno(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.as_super().get().os_fileno(slf.py())
    },
    /// `register_exclusive`'s second step (`python/rselectors/__init__.py`): the
    /// registration `register` just made for `fd` gets `EPOLLEXCLUSIVE` (the kernel takes it
    /// only in a new registration: deleted and added again). If that fails, the key goes
    /// and the error is raised, as after a refused registration. A replaced `_selector_cls`
    /// keeps its plain one.
    fn _make_exclusive(
        slf: &Bound<'_, Self>,
        fileobj: &Bound<'_, PyAny>,
        fd: u64,
        events: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let base = slf.as_super().get();
        if !base.native() {
            return Ok(());
        }
        let interest = interest_of(events)? | EXCLUSIVE;
        let result = base.lock()?.core.modify_interest(fd, interest);
        result.map_err(|err| base.undo_register(fileobj, backend_error(err)))
    }
);
#[cfg(kqueue)]
selector_class!(
    KqueueSelector,
    "KqueueSelector",
    KQUEUE,
    "Kqueue-based selector.",
    /// The kqueue fd.
    fn fileno(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.as_super().get().os_fileno(slf.py())
    }
);
#[cfg(unix)]
selector_class!(PollSelector, "PollSelector", POLL, "Poll-based selector.");
selector_class!(
    SelectSelector,
    "SelectSelector",
    SELECT,
    "Select-based selector."
);
