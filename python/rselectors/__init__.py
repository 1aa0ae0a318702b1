"""rselectors: CPython's ``selectors`` module rebuilt in Rust.

Use it as ``import rselectors as selectors``, run a program on it with
``python -m rselectors prog.py``, or call ``rselectors.install()`` first thing.
The selector classes and the mapping's methods live in the compiled
``rselectors._rselectors``; this file makes ``SelectorKey`` and the mapping class as
selectors.py makes them, mixes the Rust classes with the stdlib's abstract base class (so
that user subclasses and ``isinstance`` checks work as there) and binds every other name of
the stdlib module to the stdlib's object.
"""

import select
import sys
from collections import namedtuple
from collections.abc import Mapping

from . import _rselectors
from ._install import _stdlib_module
from ._rselectors import EVENT_READ, EVENT_WRITE
# Poll and Epoll waits keep sub-millisecond timeouts; True restores the stdlib's round-up to
# whole milliseconds (as RSELECTORS_MS_TIMEOUTS=1 does at import). README: Known differences.
from ._rselectors import millisecond_timeouts, set_millisecond_timeouts
# Epoll registrations of listening sockets with EPOLLEXCLUSIVE, for prefork servers (as
# RSELECTORS_EXCLUSIVE_ACCEPT=1 does at import; README: Prefork servers).
from ._rselectors import exclusive_accept, set_exclusive_accept

# EventLoopPolicy is left out so that `from rselectors import *` does not import asyncio.
__all__ = [
    "EVENT_READ",
    "EVENT_WRITE",
    "SelectorKey",
    "BaseSelector",
    "SelectSelector",
    "DefaultSelector",
    "install",
    "new_event_loop",
    "run",
]

# The running interpreter's own `selectors` module. Every name of it that this file does not
# define is bound, at the end, to the stdlib's object: `_BaseSelectorImpl`,
# `_PollLikeSelector`, `_fileobj_to_fd`, `_can_use`, the module aliases (`select`, `sys`,
# `math`, ...), whatever the version has. The abstract base class is the stdlib's own, so a
# selector built on `_BaseSelectorImpl` (gevent's) and ours are both `BaseSelector`s of
# either module.
_stdlib = _stdlib_module()
BaseSelector = _stdlib.BaseSelector

# SelectorKey and get_map()'s class, made as selectors.py makes them (their docstrings are
# the running version's own), then handed to the Rust side, which builds keys and maps of
# them without going through their Python-level constructors.
SelectorKey = namedtuple("SelectorKey", ["fileobj", "fd", "events", "data"])
SelectorKey.__doc__ = _stdlib.SelectorKey.__doc__
for _field in SelectorKey._fields:
    getattr(SelectorKey, _field).__doc__ = getattr(_stdlib.SelectorKey, _field).__doc__
del _field


class _SelectorMapping(_rselectors._SelectorMapping, Mapping):
    """Mapping of file objects to selector keys."""

    if sys.version_info < (3, 13):
        # Before 3.13 the stdlib's mapping inherits `get(key, default=None)` from Mapping.
        get = Mapping.get


_rselectors._set_types(SelectorKey, _SelectorMapping)


class _Native:
    """Between a Rust class and the ABC: keeps get_key() honest in user subclasses."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The Rust get_key() reads the table directly; the stdlib's goes through
        # self.get_map(), which a user subclass may override: then so does this one.
        native = _rselectors._Selector
        if (issubclass(cls, native) and cls.get_map is not native.get_map
                and cls.get_key is native.get_key):
            cls.get_key = BaseSelector.get_key


# On Windows the stdlib's `SelectSelector._select` is a function of selectors.py around
# `select.select`: `select(r, w, w, timeout)`, returning `r, w + x, []` (a failed connect()
# shows in the exceptional set). Ours is the same function, and its wait the Winsock one.
_WIN32_SELECT = _stdlib.SelectSelector._select if sys.platform == "win32" else None


def _is_native(func):
    """True for the `select` module's own poll/epoll (not a green library's)."""
    return getattr(func, "__module__", None) == "select"


# A SelectSelector whose `_select` is replaced (gevent and eventlet put their cooperative
# select() there; the stdlib's SelectSelector then waits through it) is driven through it by
# the stdlib's own steps, as are ready fds given as int subclasses.
from . import _select  # noqa: E402

_rselectors._set_select_steps(_select.after_select, _select.ready_keys)


def _is_native_select(func):
    """True for `select.select` (on Windows, the stdlib's function around it)."""
    if _WIN32_SELECT is not None and getattr(func, "__func__", func) is _WIN32_SELECT:
        return True
    return func is select.select


# The concrete classes: the Rust implementation first in the MRO, the ABC after it so that
# isinstance() holds and instances take attributes and weak references like Python objects.
# Each __init__ takes no argument, as the stdlib's does. A class whose `_selector_cls` is
# replaced (CPython's tests patch it) drives an instance of it, as the stdlib would.

class SelectSelector(_rselectors.SelectSelector, _Native, BaseSelector):
    """Select-based selector."""

    # As in the stdlib: a plain attribute, or on Windows the stdlib's own function. The
    # stdlib looks it up at each select(); here the class's is read when the selector is
    # made, and one set on the instance when it is set (README, Known differences).
    _select = select.select if _WIN32_SELECT is None else _WIN32_SELECT

    def __init__(self):
        if not _is_native_select(type(self)._select):
            self._watch_select(True)

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if name == "_select":
            self._watch_select(not _is_native_select(self._select))

    def __delattr__(self, name):
        super().__delattr__(name)
        if name == "_select":
            self._watch_select(not _is_native_select(self._select))


# As in the stdlib, a class exists where the `select` module has its mechanism: eventlet's
# monkey_patch() deletes select.poll and select.epoll, and a module imported after it has
# neither class. Windows has neither (nor a Rust PollSelector): SelectSelector is the default.
if hasattr(select, "poll") and hasattr(_rselectors, "PollSelector"):

    class PollSelector(_rselectors.PollSelector, _Native, BaseSelector):
        """Poll-based selector."""

        _selector_cls = select.poll

        def __init__(self):
            if not _is_native(self._selector_cls):
                self._use_poller(self._selector_cls)

        def __reduce_ex__(self, protocol):
            raise TypeError("cannot pickle 'select.poll' object")

    __all__.append("PollSelector")


if hasattr(_rselectors, "EpollSelector") and hasattr(select, "epoll"):  # Linux

    class EpollSelector(_rselectors.EpollSelector, _Native, BaseSelector):
        """Epoll-based selector."""

        _selector_cls = select.epoll

        def __init__(self):
            if not _is_native(self._selector_cls):
                self._use_poller(self._selector_cls)

        def __reduce_ex__(self, protocol):
            raise TypeError("cannot pickle 'select.epoll' object")

        def register_exclusive(self, fileobj, events, data=None):
            """Register a file object as register() does, with EPOLLEXCLUSIVE (Linux 4.5+).

            Of the processes waiting on the fd, each in its own epoll set with the flag,
            one is woken per event instead of all: for a listening socket shared by
            prefork workers. The flag stays through modify(). Where the kernel or the fd
            (an epoll fd) refuses it, the registration is a plain one.
            """
            key = _rselectors.EpollSelector.register(self, fileobj, events, data)
            self._make_exclusive(fileobj, key.fd, events)
            return key

    __all__.append("EpollSelector")


# A Linux build with the `libkqueue` feature has a KqueueSelector on libkqueue, where the
# select module has no kqueue; it is there to be tested, so DefaultSelector stays epoll.
_ON_LIBKQUEUE = hasattr(_rselectors, "KqueueSelector") and _rselectors._ON_LIBKQUEUE

if hasattr(_rselectors, "KqueueSelector") and (hasattr(select, "kqueue") or _ON_LIBKQUEUE):

    class KqueueSelector(_rselectors.KqueueSelector, _Native, BaseSelector):
        """Kqueue-based selector."""

        def __init__(self):
            pass

        def __reduce_ex__(self, protocol):
            raise TypeError("cannot pickle 'select.kqueue' object")

    __all__.append("KqueueSelector")


# The stdlib's order of preference: kqueue, epoll, (devpoll), poll, select.
if "KqueueSelector" in globals() and not _ON_LIBKQUEUE:
    DefaultSelector = KqueueSelector
elif "EpollSelector" in globals():
    DefaultSelector = EpollSelector
elif "PollSelector" in globals():
    DefaultSelector = PollSelector
else:
    DefaultSelector = SelectSelector

from ._install import install  # noqa: E402
# asyncio conveniences; asyncio itself is imported on first use. EventLoopPolicy (a subclass
# of asyncio's policy) is made on first access through this module __getattr__ (PEP 562).
from ._asyncio import new_event_loop, run, __getattr__  # noqa: E402

# Every other name of the stdlib module, as the stdlib's object (see `_stdlib` above).
for _name in dir(_stdlib):
    if not _name.startswith("__") and _name not in globals():
        globals()[_name] = getattr(_stdlib, _name)
del _name
