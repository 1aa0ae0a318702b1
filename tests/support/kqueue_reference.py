"""The stdlib's KqueueSelector on Linux, as a reference for rselectors' KqueueSelector on libkqueue.

CPython has no ``select.kqueue`` on Linux, so ``selectors.KqueueSelector`` does not exist
there. This module runs the interpreter's own ``Lib/selectors.py`` (its ``KqueueSelector``
class, unchanged) on a ``select`` module that adds ``kqueue`` and ``kevent``, written here with
ctypes over the libkqueue that rselectors' libkqueue build has loaded. They follow
``Modules/selectmodule.c``: the order of ``kqueue.control()``'s checks and its messages, the
timeout conversion (rounded up to nanoseconds; any refusal becomes its TypeError), the retry
after EINTR with the time left once signal handlers ran (PEP 475), the wait without the GIL
(ctypes releases it), ``kevent(ident)`` taking any int that fits a ``size_t``.

So the differential tests compare rselectors' KqueueSelector with the stdlib's Python logic
(registration of two filters, failure rollback, ``_max_events``, ``select()``'s mapping) on the
same libkqueue. What the C wrapper does is this file's reading of it, not CPython running:
macOS in .github/workflows/wheels.yml remains the real proof.
"""

import ctypes
import importlib.util
import math
import os
import select as _select
import sys
import time
import types

KQ_FILTER_READ = -1
KQ_FILTER_WRITE = -2
KQ_EV_ADD = 0x0001
KQ_EV_DELETE = 0x0002
KQ_EV_ENABLE = 0x0004
KQ_EV_DISABLE = 0x0008
KQ_EV_ONESHOT = 0x0010
KQ_EV_CLEAR = 0x0020
KQ_EV_EOF = 0x8000
KQ_EV_ERROR = 0x4000

_SIZE_MAX = 2 ** (8 * ctypes.sizeof(ctypes.c_size_t)) - 1
_PYTIME_MAX = 2 ** 63 - 1


class _Kevent(ctypes.Structure):
    # libkqueue's <kqueue/sys/event.h>: the classic BSD struct kevent.
    _fields_ = [("ident", ctypes.c_size_t), ("filter", ctypes.c_short),
                ("flags", ctypes.c_ushort), ("fflags", ctypes.c_uint),
                ("data", ctypes.c_ssize_t), ("udata", ctypes.c_void_p)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_lib = None


def _libkqueue():
    global _lib
    if _lib is None:
        import rselectors  # its libkqueue build has loaded libkqueue (found by its rpath)

        assert rselectors._rselectors._ON_LIBKQUEUE
        lib = ctypes.CDLL("libkqueue.so.0", use_errno=True)
        lib.kqueue.argtypes = []
        lib.kqueue.restype = ctypes.c_int
        lib.kevent.argtypes = [ctypes.c_int, ctypes.POINTER(_Kevent), ctypes.c_int,
                               ctypes.POINTER(_Kevent), ctypes.c_int,
                               ctypes.POINTER(_Timespec)]
        lib.kevent.restype = ctypes.c_int
        _lib = lib
    return _lib


class kevent:
    """select.kevent: ident is any int that fits a size_t, or an object with fileno()."""

    def __init__(self, ident, filter=KQ_FILTER_READ, flags=KQ_EV_ADD, fflags=0, data=0,
                 udata=0):
        if isinstance(ident, int):
            # PyLong_AsSize_t reads the value: an int subclass's comparisons are not called.
            ident = int(ident)
            if ident < 0:
                raise OverflowError("can't convert negative value to size_t")
            if ident > _SIZE_MAX:
                raise OverflowError("Python int too large to convert to C size_t")
        else:
            ident = _select_fd(ident)
        self.ident, self.filter, self.flags = ident, filter, flags
        self.fflags, self.data, self.udata = fflags, data, udata

    @classmethod
    def _from_c(cls, ev):
        self = cls.__new__(cls)
        self.ident, self.filter, self.flags = ev.ident, ev.filter, ev.flags
        self.fflags, self.data, self.udata = ev.fflags, ev.data, ev.udata or 0
        return self


def _select_fd(obj):
    """PyObject_AsFileDescriptor."""
    if isinstance(obj, int):
        fd = obj
    else:
        fd = obj.fileno()
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError("file descriptor cannot be a negative integer (%d)" % fd)
    if fd > 2 ** 31 - 1:
        raise OverflowError("Python int too large to convert to C int")
    return int(fd)


def _timeout_ns(value):
    """_PyTime_FromSecondsObject(value, rounding up); any failure is kqueue's TypeError."""
    try:
        if isinstance(value, float):
            if math.isnan(value):
                raise ValueError("Invalid value NaN (not a number)")
            # PyFloat_AsDouble: the float's own value, whatever a subclass overrides.
            ns = math.ceil(float.__float__(value) * 1e9)
        else:
            ns = value.__index__() * 10 ** 9
        if not -_PYTIME_MAX - 1 <= ns <= _PYTIME_MAX:
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
    except Exception:
        raise TypeError("timeout argument must be a number or None, got %s"
                        % type(value).__name__) from None
    return ns


class kqueue:
    """select.kqueue on libkqueue."""

    def __init__(self, _fd=None):
        if _fd is None:
            _fd = _libkqueue().kqueue()
            if _fd < 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            os.set_inheritable(_fd, False)
        self._fd = _fd

    @classmethod
    def fromfd(cls, fd):
        return cls(int(fd))

    @property
    def closed(self):
        return self._fd < 0

    def fileno(self):
        if self._fd < 0:
            raise ValueError("I/O operation on closed kqueue object")
        return self._fd

    def close(self):
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __reduce_ex__(self, protocol):
        raise TypeError("cannot pickle 'select.kqueue' object")

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass

    def control(self, changelist, maxevents, timeout=None):
        if self._fd < 0:
            raise ValueError("I/O operation on closed kqueue object")
        maxevents = int(maxevents.__index__())
        if maxevents < 0:
            raise ValueError("Length of eventlist must be 0 or positive, got %d" % maxevents)
        ns = None if timeout is None else _timeout_ns(timeout)
        if ns is not None and ns < 0:
            raise ValueError("timeout must be positive or None")
        changes = []
        if changelist is not None:
            try:
                items = list(changelist)
            except TypeError:
                raise TypeError("changelist is not iterable") from None
            for item in items:
                if not isinstance(item, kevent):
                    raise TypeError("changelist must be an iterable of select.kevent objects")
                changes.append(_Kevent(item.ident, item.filter, item.flags, item.fflags,
                                       item.data, item.udata or None))
        chl = (_Kevent * len(changes))(*changes) if changes else None
        evl = (_Kevent * maxevents)() if maxevents else None
        deadline = None if ns is None else time.monotonic_ns() + ns
        lib = _libkqueue()
        while True:
            ts = None if ns is None else _Timespec(ns // 10 ** 9, ns % 10 ** 9)
            ctypes.set_errno(0)
            got = lib.kevent(self._fd, chl, len(changes), evl, maxevents,
                             None if ts is None else ctypes.byref(ts))
            err = ctypes.get_errno()
            if err != _errno_EINTR:
                break
            # PEP 475: the signal handlers have run (a raising one has ended this call);
            # retry with the time left.
            if deadline is not None:
                ns = deadline - time.monotonic_ns()
                if ns < 0:
                    got = 0
                    break
        if got == -1:
            raise OSError(err, os.strerror(err))
        return [kevent._from_c(evl[i]) for i in range(got)]


import errno as _errno  # noqa: E402

_errno_EINTR = _errno.EINTR


def select_module():
    """The `select` module with kqueue and kevent added."""
    mod = types.ModuleType("select", _select.__doc__)
    mod.__dict__.update({k: v for k, v in vars(_select).items() if not k.startswith("__")})
    for name, value in list(globals().items()):
        if name.startswith("KQ_") or name in ("kqueue", "kevent"):
            setattr(mod, name, value)
    return mod


# The name the reference module has in sys.modules (so that pickle finds its classes, as it
# finds the stdlib's); conftest treats it as "selectors" when naming types.
MODULE_NAME = "selectors_on_libkqueue"


def stdlib_selectors():
    """The interpreter's Lib/selectors.py, run on `select_module()`: it has a KqueueSelector
    (which it also makes its DefaultSelector, as on the BSDs)."""
    module = sys.modules.get(MODULE_NAME)
    if module is None:
        import selectors as real

        spec = importlib.util.spec_from_file_location(MODULE_NAME, real.__file__)
        module = importlib.util.module_from_spec(spec)
        saved = sys.modules["select"]
        sys.modules["select"] = select_module()
        try:
            spec.loader.exec_module(module)
        finally:
            sys.modules["select"] = saved
        sys.modules[MODULE_NAME] = module
    return module
