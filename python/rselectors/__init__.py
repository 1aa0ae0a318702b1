"""rselectors: CPython's ``selectors`` module rebuilt in Rust.

Use it as ``import rselectors as selectors``, run a program on it with
``python -m rselectors prog.py``, or call ``rselectors.install()`` first thing.
The selector classes, ``SelectorKey`` and the mapping live in the compiled
``rselectors._rselectors``; this file only adds the abstract base class the
stdlib has, so that user subclasses and ``isinstance`` checks work as there.
"""

import select as _select
from abc import ABCMeta, abstractmethod

from . import _rselectors
from ._rselectors import EVENT_READ, EVENT_WRITE, SelectorKey

# EventLoopPolicy is left out so that `from rselectors import *` does not import asyncio.
__all__ = [
    "EVENT_READ",
    "EVENT_WRITE",
    "SelectorKey",
    "BaseSelector",
    "SelectSelector",
    "PollSelector",
    "DefaultSelector",
    "install",
    "new_event_loop",
    "run",
]


class BaseSelector(metaclass=ABCMeta):
    """Selector abstract base class, as in the stdlib.

    A selector supports registering file objects to be monitored for specific
    I/O events. A file object is a file descriptor or any object with a
    `fileno()` method. An arbitrary object can be attached to the file object.
    """

    @abstractmethod
    def register(self, fileobj, events, data=None):
        """Register a file object; return its SelectorKey."""
        raise NotImplementedError

    @abstractmethod
    def unregister(self, fileobj):
        """Unregister a file object; return its SelectorKey."""
        raise NotImplementedError

    def modify(self, fileobj, events, data=None):
        """Change a registered file object's monitored events or attached data."""
        self.unregister(fileobj)
        return self.register(fileobj, events, data)

    @abstractmethod
    def select(self, timeout=None):
        """Wait until some registered file objects are ready or the timeout expires.

        Return a list of (key, events) for the ready file objects.
        """
        raise NotImplementedError

    def close(self):
        """Close the selector."""
        pass

    def get_key(self, fileobj):
        """Return the key associated to a registered file object."""
        mapping = self.get_map()
        if mapping is None:
            raise RuntimeError('Selector is closed')
        try:
            return mapping[fileobj]
        except KeyError:
            raise KeyError("{!r} is not registered".format(fileobj)) from None

    @abstractmethod
    def get_map(self):
        """Return a mapping of file objects to selector keys."""
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The Rust get_key() reads the table directly; the stdlib's goes through
        # self.get_map(), which a user subclass may override: then so does this one.
        native = _rselectors._Selector
        if (issubclass(cls, native) and cls.get_map is not native.get_map
                and cls.get_key is native.get_key):
            cls.get_key = BaseSelector.get_key


# The concrete classes: the Rust implementation first in the MRO, the ABC after it so that
# isinstance() holds and instances take attributes and weak references like Python objects.
# Each __init__ takes no argument, as the stdlib's does. A class whose `_selector_cls` is
# replaced (CPython's tests patch it) drives an instance of it, as the stdlib would.

class SelectSelector(_rselectors.SelectSelector, BaseSelector):
    """Select-based selector."""

    def __init__(self):
        pass


class PollSelector(_rselectors.PollSelector, BaseSelector):
    """Poll-based selector."""

    _selector_cls = _select.poll

    def __init__(self):
        if self._selector_cls is not _select.poll:
            self._use_poller(self._selector_cls())

    def __reduce_ex__(self, protocol):
        raise TypeError("cannot pickle 'select.poll' object")


if hasattr(_rselectors, "EpollSelector"):  # Linux

    class EpollSelector(_rselectors.EpollSelector, BaseSelector):
        """Epoll-based selector."""

        _selector_cls = _select.epoll

        def __init__(self):
            if self._selector_cls is not _select.epoll:
                self._use_poller(self._selector_cls())

        def __reduce_ex__(self, protocol):
            raise TypeError("cannot pickle 'select.epoll' object")

    __all__.append("EpollSelector")


if hasattr(_rselectors, "KqueueSelector"):  # macOS and the BSDs

    class KqueueSelector(_rselectors.KqueueSelector, BaseSelector):
        """Kqueue-based selector."""

        def __init__(self):
            pass

        def __reduce_ex__(self, protocol):
            raise TypeError("cannot pickle 'select.kqueue' object")

    __all__.append("KqueueSelector")


# The stdlib's order of preference: kqueue, epoll, (devpoll), poll, select.
if "KqueueSelector" in globals():
    DefaultSelector = KqueueSelector
elif "EpollSelector" in globals():
    DefaultSelector = EpollSelector
else:
    DefaultSelector = PollSelector

from ._install import install  # noqa: E402
# asyncio conveniences; asyncio itself is imported on first use. EventLoopPolicy (a subclass
# of asyncio's policy) is made on first access through this module __getattr__ (PEP 562).
from ._asyncio import new_event_loop, run, __getattr__  # noqa: E402
