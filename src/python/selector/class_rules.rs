//! What each stdlib selector class does its own way, one `Class` value per class, as
//! selectors.py keeps it on the class (`_selector_cls`, its own `register`, `modify` and
//! `select`): the OS mechanism, how its steps reach the OS, how it reads timeouts, which fds
//! its OS calls take. The binding's rooms ask these rules; none asks which class it is.

use super::poller::SelectorCls;
use crate::backend::Mechanism;
use crate::python::fd::FdRange;
use crate::python::timeout_arg::Timeouts;

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
