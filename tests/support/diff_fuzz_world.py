"""The differential fuzzer's world, and the step runner: what both selectors watch and run.

One world of fds (socket pairs, pipes, dups, closed and reused numbers, fds at FD_SETSIZE and
beyond) is shared by a stdlib selector and an rselectors selector of the same class, so both
see the same fd numbers and the same readiness. Every other object a step hands a selector
(data, events, int-subclass fds, file objects, timeouts, `_select`/`_selector_cls`
overrides) is made once per side, in lockstep, under the same label: it records each call the
selector makes on it in its side's journal, and may act on its own side's selector when
called (register, unregister, modify, close, select, or raise).

A step is Python source: a `world` step runs once (on the shared fds); a `both` step runs on
the stdlib's side, then on rselectors' side, and the two outcomes (value or exception, the
journal of user code called, warnings, and `get_map()` afterwards) are compared in canonical
form (labels for objects, types kept: `1`, `1.0` and `True` differ).

Standalone (the standard library, selectors and rselectors only): a reproduction script
(`tests/parity/diff_fuzz.py`) carries this file whole, followed by its steps.
"""

import decimal
import fractions
import os
import re
import select
import signal
import socket
import sys  # noqa: F401 - the reproduction script's __main__ (diff_fuzz.py) uses it
import time
import warnings

try:
    import resource
except ImportError:  # Windows: the fuzzer is POSIX-only; the differential tests use the rest
    resource = None

FD_SETSIZE = 1024
# The world's fds start here: placeholders fill every free number below (`pad_fd_table`), so
# the numbers a trial gets do not depend on what else the process has open, while a closed
# fd's number is still the lowest free one, as in a real program.
FD_BASE = 48
# A select() that should return at once but has not after this long is reported.
WATCHDOG_SECONDS = 5.0


class Missing(Exception):
    """A step named an object its trial never made (a step removed while shrinking)."""


class WouldBlock(Exception):
    """The watchdog: a call waited longer than any step of the fuzzer should."""


# ---------------------------------------------------------------------------
# the shared fds
# ---------------------------------------------------------------------------


def pad_fd_table(base=FD_BASE):
    """Fills every free fd number below `base` with /dev/null, and raises the open-file limit
    to past FD_SETSIZE * 2 where allowed. Returns (placeholders, whether fds beyond
    FD_SETSIZE can be made, the limit before); `unpad` undoes it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = before
    want = FD_SETSIZE * 2 + 64
    if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    held = []
    while True:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        if fd >= base:
            os.close(fd)
            break
        held.append(fd)
    high_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= want
    return held, high_fds, before


def unpad(padding):
    held, _, before = padding
    for fd in held:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


class World:
    """The fds of one trial, by label: socket objects (`s1a`) or raw numbers (`p1r`, `x2`)."""

    def __init__(self, high_fds=True):
        self.objs = {}
        self.fds = {}
        self.closed = set()
        self.by_id = {}
        self.high_fds = high_fds

    def __getitem__(self, label):
        try:
            return self.objs[label]
        except KeyError:
            raise Missing(label) from None

    def fd(self, label):
        """The number `label` has (or had, once closed)."""
        try:
            return self.fds[label]
        except KeyError:
            raise Missing(label) from None

    def _add(self, label, obj, fd):
        self.objs[label] = obj
        self.fds[label] = fd
        if not isinstance(obj, int):
            self.by_id[id(obj)] = label

    def socketpair(self, name):
        a, b = socket.socketpair()
        for suffix, s in (("a", a), ("b", b)):
            s.setblocking(False)
            self._add(name + suffix, s, s.fileno())

    def pipe(self, name):
        r, w = os.pipe()
        for suffix, fd in (("r", r), ("w", w)):
            os.set_blocking(fd, False)
            self._add(name + suffix, fd, fd)

    def dup(self, name, src, at=None):
        """A raw fd for the same file as `src`: the lowest free number (a closed fd's), or
        number `at` (FD_SETSIZE - 1, FD_SETSIZE, ...) if free."""
        if src not in self.objs or src in self.closed:
            return
        if at is None:
            new = os.dup(self.fds[src])
        else:
            if not self.high_fds:
                return
            try:
                os.fstat(at)
                return  # open: not ours to take
            except OSError:
                pass
            new = os.dup2(self.fds[src], at, inheritable=False)
        self._add(name, new, new)

    def close(self, label):
        """Closes `label` behind the selectors' backs."""
        if label not in self.objs or label in self.closed:
            return
        self.closed.add(label)
        obj = self.objs[label]
        if isinstance(obj, int):
            os.close(obj)
        else:
            obj.close()

    def send(self, label, n):
        """Writes n bytes on `label` (its peer becomes readable; a full buffer unwritable)."""
        if label not in self.objs or label in self.closed:
            return
        obj = self.objs[label]
        try:
            if isinstance(obj, int):
                os.write(obj, b"x" * n)
            else:
                obj.send(b"x" * n)
        except OSError:
            pass

    def drain(self, label):
        if label not in self.objs or label in self.closed:
            return
        obj = self.objs[label]
        for _ in range(64):
            try:
                got = os.read(obj, 1 << 16) if isinstance(obj, int) else obj.recv(1 << 16)
            except OSError:
                return
            if not got:
                return

    def shutdown(self, label, how):
        obj = self.objs.get(label)
        if obj is None or isinstance(obj, int) or label in self.closed:
            return
        try:
            obj.shutdown(how)
        except OSError:
            pass

    def close_all(self):
        for label in list(self.objs):
            self.close(label)


# ---------------------------------------------------------------------------
# the objects each side gets: they record their calls and may act
# ---------------------------------------------------------------------------


def _called(obj, method, *args):
    """Records `method` called on `obj` in its side's journal; runs its action on its
    trigger call (the nth call of that method)."""
    side = obj._side
    counts = obj._counts
    n = counts[method] = counts.get(method, 0) + 1
    side.journal.append((obj._label, method) + tuple(side.canon(a) for a in args))
    if obj._trigger is not None and obj._trigger == (method, n):
        side.act(obj._label, obj._action, obj._swallow)


def _hooked(obj, side, label, trigger, action, swallow):
    obj._side = side
    obj._label = label
    obj._trigger = tuple(trigger) if trigger else None
    obj._action = action
    obj._swallow = swallow
    obj._counts = {}


def _plain(x):
    return x.value if isinstance(x, Ev) else x


class Ev:
    """An `events` value that is no int: `&`, `!=`, `==` and truth testing recorded."""

    def __init__(self, side, label, value, trigger=None, action=None, swallow=False):
        _hooked(self, side, label, trigger, action, swallow)
        self.value = value

    def __and__(self, other):
        _called(self, "and", other)
        return self.value & _plain(other)

    def __rand__(self, other):
        _called(self, "rand", other)
        return _plain(other) & self.value

    def __ne__(self, other):
        _called(self, "ne", other)
        return self.value != _plain(other)

    def __eq__(self, other):
        _called(self, "eq", other)
        return self.value == _plain(other)

    def __bool__(self):
        _called(self, "bool")
        return bool(self.value)

    __hash__ = object.__hash__

    def __repr__(self):
        return "<Ev %s %d>" % (self._label, self.value)


class EvInt(int):
    """An `events` int subclass with its own `&`, `!=`, `==`, truth and hash, recorded."""

    def __new__(cls, side, label, value, trigger=None, action=None, swallow=False):
        self = int.__new__(cls, value)
        _hooked(self, side, label, trigger, action, swallow)
        return self

    def __and__(self, other):
        _called(self, "and", other)
        return int.__and__(self, other)

    def __rand__(self, other):
        _called(self, "rand", other)
        return int.__rand__(self, other)

    def __ne__(self, other):
        _called(self, "ne", other)
        return int.__ne__(self, other)

    def __eq__(self, other):
        _called(self, "eq", other)
        return int.__eq__(self, other)

    def __bool__(self):
        _called(self, "bool")
        return int.__bool__(self)

    def __hash__(self):
        _called(self, "hash")
        return int.__hash__(self)

    def __repr__(self):
        return "<EvInt %s %d>" % (self._label, int(self))


class Fd(int):
    """An fd given as an int subclass: its `__hash__`, `__eq__`, `__ne__`, `__lt__` and
    `__index__` recorded; `mode` "raise" makes `__hash__` raise TypeError, "keyerror" makes it
    raise KeyError, "eqraise" makes `__eq__` raise. Equality and hash otherwise follow the
    number (README, Known differences: one registration per fd number)."""

    def __new__(cls, side, label, value, mode="int", trigger=None, action=None, swallow=False):
        self = int.__new__(cls, value)
        _hooked(self, side, label, trigger, action, swallow)
        self.mode = mode
        return self

    def __hash__(self):
        _called(self, "hash")
        if self.mode == "raise":
            raise TypeError("no hash for %r" % (self,))
        if self.mode == "keyerror":
            raise KeyError("hash of %r" % (self,))
        return int.__hash__(self)

    def __eq__(self, other):
        _called(self, "eq", other)
        if self.mode == "eqraise":
            raise ArithmeticError("no == for %r" % (self,))
        return int.__eq__(self, other)

    def __ne__(self, other):
        _called(self, "ne", other)
        return int.__ne__(self, other)

    def __lt__(self, other):
        _called(self, "lt", other)
        return int.__lt__(self, other)

    def __index__(self):
        _called(self, "index")
        return int.__index__(self)

    def __repr__(self):
        return "<Fd %s %d>" % (self._label, int.__int__(self))


class FileObj:
    """A file object whose `fileno()` returns what `target` says now: a world label's number,
    a value, or an exception to raise (changed by steps: `O['f1'].target = ...`)."""

    def __init__(self, side, label, target, trigger=None, action=None, swallow=False):
        _hooked(self, side, label, trigger, action, swallow)
        self.target = target

    def fileno(self):
        _called(self, "fileno")
        kind, value = self.target
        if kind == "fd":
            return self._side.world.fd(value)
        if kind == "obj":
            return self._side[value]
        if kind == "raise":
            raise {"OSError": OSError, "ValueError": ValueError, "TypeError": TypeError,
                   "KeyError": KeyError, "AttributeError": AttributeError,
                   "RuntimeError": RuntimeError}[value]("fileno of %r" % (self,))
        return value

    def __repr__(self):
        return "<FileObj %s>" % self._label


class Data:
    """`data` whose `==` and `!=` are recorded (and say: the same object or not)."""

    def __init__(self, side, label, trigger=None, action=None, swallow=False):
        _hooked(self, side, label, trigger, action, swallow)

    def __eq__(self, other):
        _called(self, "eq", other)
        return self is other

    def __ne__(self, other):
        _called(self, "ne", other)
        return self is not other

    __hash__ = object.__hash__

    def __repr__(self):
        return "<Data %s>" % self._label


class EqData(Data):
    """`data` equal to every other EqData: modify() keeps the old object."""

    def __eq__(self, other):
        _called(self, "eq", other)
        return isinstance(other, EqData)

    def __ne__(self, other):
        _called(self, "ne", other)
        return not isinstance(other, EqData)

    __hash__ = object.__hash__


class FloatOnly:
    """A timeout with only `__float__`."""

    def __init__(self, side, label, value):
        _hooked(self, side, label, None, None, False)
        self.value = value

    def __float__(self):
        _called(self, "float")
        return float(self.value)

    def __repr__(self):
        return "<FloatOnly %s>" % self._label


class IndexOnly:
    """A timeout with only `__index__`."""

    def __init__(self, side, label, value):
        _hooked(self, side, label, None, None, False)
        self.value = value

    def __index__(self):
        _called(self, "index")
        return self.value

    def __repr__(self):
        return "<IndexOnly %s>" % self._label


class NumTimeout:
    """A timeout with comparisons, `*`, `__float__` and `__index__`, all recorded."""

    def __init__(self, side, label, value):
        _hooked(self, side, label, None, None, False)
        self.value = value

    def __le__(self, other):
        _called(self, "le", other)
        return self.value <= other

    def __lt__(self, other):
        _called(self, "lt", other)
        return self.value < other

    def __gt__(self, other):
        _called(self, "gt", other)
        return self.value > other

    def __mul__(self, other):
        _called(self, "mul", other)
        return self.value * other

    def __float__(self):
        _called(self, "float")
        return float(self.value)

    def __index__(self):
        _called(self, "index")
        return int(self.value)

    def __repr__(self):
        return "<NumTimeout %s>" % self._label


# Timeouts by name: (make(side, label), whether it may wait long when nothing is ready).
# Those that may are run only where the stdlib's selector has something ready or refuses
# the value (`Side.may_block`).
TIMEOUTS = {
    "None": (lambda s, l: None, True),
    "0": (lambda s, l: 0, False),
    "0.0": (lambda s, l: 0.0, False),
    "-0.0": (lambda s, l: -0.0, False),
    "-1": (lambda s, l: -1, False),
    "-0.5": (lambda s, l: -0.5, False),
    "-inf": (lambda s, l: float("-inf"), False),
    "-10**30": (lambda s, l: -10**30, False),
    "1e-9": (lambda s, l: 1e-9, False),
    "0.0001": (lambda s, l: 0.0001, False),
    "0.0001234": (lambda s, l: 0.0001234, False),
    "0.0003": (lambda s, l: 0.0003, False),
    "0.0009": (lambda s, l: 0.0009, False),
    "0.001": (lambda s, l: 0.001, False),
    "0.0015": (lambda s, l: 0.0015, False),
    "False": (lambda s, l: False, False),
    "True": (lambda s, l: True, True),
    "1": (lambda s, l: 1, True),
    "2": (lambda s, l: 2, True),
    "0.05": (lambda s, l: 0.05, True),
    "86400": (lambda s, l: 86400, True),
    "1e9": (lambda s, l: 1e9, True),
    "10**10": (lambda s, l: 10**10, True),
    "2**31": (lambda s, l: 2**31, True),
    "2**63": (lambda s, l: 2**63, True),
    "1e300": (lambda s, l: 1e300, True),
    "inf": (lambda s, l: float("inf"), True),
    "nan": (lambda s, l: float("nan"), True),
    "Fraction(1, 3000)": (lambda s, l: fractions.Fraction(1, 3000), False),
    "Fraction(-1, 2)": (lambda s, l: fractions.Fraction(-1, 2), False),
    "Fraction(3, 2)": (lambda s, l: fractions.Fraction(3, 2), True),
    "Decimal('0.0002')": (lambda s, l: decimal.Decimal("0.0002"), False),
    "Decimal('-1')": (lambda s, l: decimal.Decimal("-1"), False),
    "Decimal('2')": (lambda s, l: decimal.Decimal("2"), True),
    "Decimal('NaN')": (lambda s, l: decimal.Decimal("NaN"), True),
    "'x'": (lambda s, l: "x", True),
    "1j": (lambda s, l: 1j, True),
    "FloatOnly(0.0002)": (lambda s, l: FloatOnly(s, l, 0.0002), True),
    "FloatOnly(-1)": (lambda s, l: FloatOnly(s, l, -1), True),
    "IndexOnly(0)": (lambda s, l: IndexOnly(s, l, 0), True),
    "IndexOnly(2)": (lambda s, l: IndexOnly(s, l, 2), True),
    "NumTimeout(0.0004)": (lambda s, l: NumTimeout(s, l, 0.0004), False),
    "NumTimeout(-2)": (lambda s, l: NumTimeout(s, l, -2), False),
    "NumTimeout(1e10)": (lambda s, l: NumTimeout(s, l, 1e10), True),
}


def _pass_through_select(self, r, w, x, timeout=None):
    """A SelectSelector subclass's `_select`: records its arguments, then selects."""
    side = self._fuzz_side
    side.journal.append(("_select", type(r).__name__, [side.canon(fd) for fd in r],
                         type(w).__name__, [side.canon(fd) for fd in w], side.canon(x),
                         side.canon(timeout)))
    result = select.select(r, w, x, timeout)
    side.journal.append(("_select returned", side.canon(result)))
    return result


def _recording_poller(side, real_cls):
    """A `_selector_cls` that records every call, then makes it on a real poller."""

    class Poller:
        def __init__(self):
            side.journal.append(("_selector_cls()",))
            self.inner = real_cls()
            side.poller = self

        def __getattr__(self, name):
            method = getattr(self.inner, name)

            def call(*args):
                side.journal.append(("poller." + name,) + tuple(side.canon(a) for a in args))
                result = method(*args)
                if name not in ("fileno",):
                    side.journal.append(("poller." + name + " returned", side.canon(result)))
                return result

            return call

    return Poller


# ---------------------------------------------------------------------------
# one side: a module, its selector, its objects, their journal
# ---------------------------------------------------------------------------


class Side:
    def __init__(self, name, mod, world):
        self.name = name
        self.mod = mod
        self.world = world
        self.objs = {}
        self.by_id = {}
        self.journal = []
        self.sel = None
        self.poller = None  # a recording `_selector_cls`'s instance
        self.quiet = False
        self.ns = {"W": world, "O": self, "sel": None, "mod": mod, "raise_": raise_,
                   "Fraction": fractions.Fraction, "Decimal": decimal.Decimal}

    # -- objects ------------------------------------------------------------------
    def __getitem__(self, label):
        try:
            return self.objs[label]
        except KeyError:
            raise Missing(label) from None

    def _keep(self, label, obj):
        self.objs[label] = obj
        self.by_id[id(obj)] = label
        return obj

    def ev(self, label, value, trigger=None, action=None, swallow=False):
        return self._keep(label, Ev(self, label, value, trigger, action, swallow))

    def evint(self, label, value, trigger=None, action=None, swallow=False):
        return self._keep(label, EvInt(self, label, value, trigger, action, swallow))

    def fd(self, label, target, mode="int", trigger=None, action=None, swallow=False):
        """An Fd of world label `target`'s number (or of the number `target`)."""
        value = target if isinstance(target, int) else self.world.fd(target)
        return self._keep(label, Fd(self, label, value, mode, trigger, action, swallow))

    def fileobj(self, label, target, trigger=None, action=None, swallow=False):
        return self._keep(label, FileObj(self, label, target, trigger, action, swallow))

    def data(self, label, trigger=None, action=None, swallow=False, cls="Data"):
        maker = EqData if cls == "EqData" else Data
        return self._keep(label, maker(self, label, trigger, action, swallow))

    def timeout(self, label, name):
        value = TIMEOUTS[name][0](self, label)
        if isinstance(value, (FloatOnly, IndexOnly, NumTimeout)):
            self._keep(label, value)
        return value

    def keep(self, label, value):
        """Keeps any value (a mapping from get_map(), ...) under `label`."""
        if value is not None and not isinstance(value, (int, float, str)):
            self._keep(label, value)
        return value

    def selector(self, kind, variant):
        """This side's selector of `kind` ("Select", ..., "Default"), plain or subclassed:
        "sub" (no override), "override" (`_select` or `_selector_cls` recording its calls)."""
        cls = getattr(self.mod, kind + "Selector")
        if variant == "sub":
            cls = type("User" + cls.__name__, (cls,), {})
        elif variant == "override" and kind == "Select":
            cls = type("User" + cls.__name__, (cls,), {"_select": _pass_through_select,
                                                       "_fuzz_side": self})
        elif variant == "override":
            real = {"Poll": select.poll, "Epoll": select.epoll,
                    "Default": getattr(select, "epoll", None)}.get(kind)
            if real is not None:
                cls = type("User" + cls.__name__, (cls,),
                           {"_selector_cls": _recording_poller(self, real)})
        self.sel = cls()
        self.ns["sel"] = self.sel
        return self.sel

    # -- running code -------------------------------------------------------------
    def modifying(self, call, fileobj):
        """Runs `call()`, a modify() of `fileobj`, with the hooks' register and modify
        actions skipped where they could register its fd number under another object (README,
        Known differences: the stdlib's dict then keeps the object it holds as the key): all
        of them where an int subclass is involved (given, a file object's, which may be one,
        or the object the fd is held under), else those naming an int subclass or a file
        object."""
        self.quiet = "all" if self._held_as_subclass(fileobj) else "subclassed"
        try:
            return call()
        finally:
            self.quiet = False

    def _held_as_subclass(self, fileobj):
        """Whether `fileobj` is an int subclass or file object, or its number is held under
        one (looked up without user code: iterating get_map() calls none)."""
        if isinstance(fileobj, (Fd, FileObj)):
            return True
        try:
            number = fileobj if type(fileobj) in (int, bool) else fileobj.fileno()
            held = self.sel.get_map()
            if held is None:
                return True  # closed: keys stored since are not to be seen without user code
            return any(type(fd) not in (int, bool) and int.__int__(fd) == number for fd in held)
        except Exception:  # noqa: BLE001 - odd objects: skip the registering hooks
            return True

    def act(self, label, action, swallow):
        """Runs a hook's action (source, in this side's namespace); its outcome is recorded,
        and unless `swallow`, an exception it raises propagates into the selector."""
        if self.quiet and action.startswith(("sel.register", "sel.modify")) and (
                self.quiet == "all" or "O[" in action):
            self.journal.append((label, "skipped"))
            return
        try:
            value = eval(_compiled(action), self.ns)
        except Exception as exc:  # noqa: BLE001
            self.journal.append((label, "did", self.canon_exc(exc)))
            if not swallow:
                raise
            return
        self.journal.append((label, "did", self.canon(value)))

    def warned(self, message, category, filename, lineno, file=None, line=None):
        self.journal.append(("warning", category.__name__, str(message)))

    def run(self, code):
        """One step on this side: (outcome, journal, get_map() after)."""
        mark = len(self.journal)
        try:
            value = eval(code, self.ns)
            out = ("ok", self.canon(value))
        except Exception as exc:  # noqa: BLE001
            out = self.canon_exc(exc)
        return (out, self.journal[mark:], self.map_state())

    def map_state(self):
        """`get_map()`: None, or its length and fds (iterating it runs no user code)."""
        try:
            m = self.sel.get_map() if self.sel is not None else None
            if m is None:
                return None
            return (len(m), [self.canon(fd) for fd in m])
        except Exception as exc:  # noqa: BLE001
            return self.canon_exc(exc)

    def may_block(self):
        """Whether select() with a long timeout might wait: nothing ready in this (the
        stdlib's) selector. Looks without running user code, at the OS object underneath."""
        sel = self.sel
        try:
            if hasattr(sel, "_readers"):
                r, w, _ = select.select(list(sel._readers), list(sel._writers), [], 0)
                return not (r or w)
            return not self.peek()
        except Exception:  # noqa: BLE001 - a wait that fails fails at once
            return False

    def peek(self):
        """The events ready at this side's epoll, kqueue or poll object, taken without user
        code. A wait that takes every ready event leaves an epoll's ready list in its order,
        but drops what is no longer ready from it, which changes the order later events take:
        so both sides are peeked alike (`Trial.run_step`)."""
        sel = self.sel
        if self.poller is not None:
            inner = self.poller.inner
        elif hasattr(sel, "_selector"):
            inner = sel._selector
        elif isinstance(sel, getattr(self.mod, "EpollSelector", ())):
            inner = select.epoll.fromfd(os.dup(sel.fileno()))
            try:
                return inner.poll(0, 1 << 16)
            finally:
                inner.close()
        else:
            return []  # rselectors' Poll, Select: nothing to change; Kqueue: not peeked
        if hasattr(inner, "control"):  # kqueue
            return inner.control(None, 1 << 16, 0)
        if isinstance(inner, getattr(select, "epoll", ())):
            return inner.poll(0, 1 << 16)
        return inner.poll(0)

    # -- canonical forms ----------------------------------------------------------
    def canon(self, v):
        lab = self.by_id.get(id(v))
        if lab is not None and self.objs.get(lab) is v:
            return ("obj", lab)
        lab = self.world.by_id.get(id(v))
        if lab is not None and self.world.objs.get(lab) is v:
            return ("world", lab)
        if v is None or v is Ellipsis or v is NotImplemented:
            return v
        t = type(v)
        if t is bool:
            return ("bool", v)
        if t is int:
            return ("int", v)
        if t is float:
            return ("float", repr(v))
        if t is str or t is bytes:
            return (t.__name__, v)
        if isinstance(v, BaseException):
            return self.canon_exc(v)
        if isinstance(v, tuple) and getattr(t, "_fields", None) == ("fileobj", "fd", "events",
                                                                     "data"):
            return ("SelectorKey",) + tuple(self.canon(x) for x in v)
        if t is list:
            return ("list", [self.canon(x) for x in v])
        if t is tuple:
            return ("tuple", tuple(self.canon(x) for x in v))
        if t in (set, frozenset):
            return (t.__name__, sorted(repr(self.canon(x)) for x in v))
        if t in (fractions.Fraction, decimal.Decimal, complex):
            return (t.__name__, repr(v))
        if isinstance(v, int):
            return (t.__qualname__, int.__int__(v))
        if t is type(self.sel) or t.__name__.endswith("Selector"):
            return ("selector",)
        return ("object", t.__qualname__)

    def canon_exc(self, exc):
        msg = re.sub(r" at 0x[0-9a-fA-F]+", " at 0x?", str(exc))
        return ("raise", type_name(type(exc)), msg, exc_chain(exc))


def type_name(t):
    """A type's name, without the module for builtins and both selector modules."""
    mod = t.__module__
    if mod in ("builtins", "selectors", "rselectors", "selectors_on_libkqueue") or \
            mod.startswith("rselectors."):
        return t.__qualname__
    return "%s.%s" % (mod, t.__qualname__)


def exc_chain(exc):
    """The chained exceptions a traceback would print: [("cause"|"context", type), ...]."""
    chain = []
    seen = {id(exc)}
    while True:
        if exc.__cause__ is not None:
            exc, how = exc.__cause__, "cause"
        elif exc.__context__ is not None and not exc.__suppress_context__:
            exc, how = exc.__context__, "context"
        else:
            return chain
        if id(exc) in seen:
            return chain
        seen.add(id(exc))
        chain.append((how, type_name(type(exc))))


def raise_(name):
    """An action that raises (an exception of a type no selector raises itself)."""
    raise {"ZeroDivisionError": ZeroDivisionError, "KeyError": KeyError,
           "OSError": OSError, "LookupError": LookupError}[name]("raised by a user hook")


_CODE = {}


def _compiled(src):
    code = _CODE.get(src)
    if code is None:
        if len(_CODE) > 50000:
            _CODE.clear()
        code = _CODE[src] = compile(src, "<step>", "eval")
    return code


# ---------------------------------------------------------------------------
# the lockstep runner
# ---------------------------------------------------------------------------


def _watchdog(signum, frame):
    raise WouldBlock("still waiting after %s s" % WATCHDOG_SECONDS)


def stdlib_module(kind):
    """The stdlib module to compare `kind` with: the interpreter's selectors, or for Kqueue on
    Linux (a libkqueue build of rselectors) tests/support/kqueue_reference.py's."""
    import selectors

    if kind != "Kqueue" or hasattr(selectors, "KqueueSelector"):
        return selectors
    from support import kqueue_reference

    return kqueue_reference.stdlib_selectors()


_REFUSED = {}  # (kind, timeout name) -> whether the stdlib refuses it before waiting


class Trial:
    """The steps of one trial on a fresh world and a fresh pair of selectors.

    Steps are (what, source, long_wait): what is "world" (run once) or "both"; long_wait marks
    a select() that might wait long, run only where it cannot (`run_step`)."""

    def __init__(self, kind, variant, high_fds=True):
        import rselectors

        self.kind = kind
        self.variant = variant
        self.world = World(high_fds)
        self.sides = [Side("stdlib", stdlib_module(kind), self.world),
                      Side("rselectors", rselectors, self.world)]
        self.steps_run = 0

    def start(self):
        """Makes the two selectors (the stdlib's first: the fds come in that order)."""
        code = _compiled("O.selector(%r, %r)" % (self.kind, self.variant))
        return self._both(code)

    def _both(self, code):
        outs = []
        old = signal.signal(signal.SIGALRM, _watchdog)
        with warnings.catch_warnings():
            # A warning (3.13's "bool is used as a file descriptor") goes in the journal of
            # the side that raised it.
            warnings.simplefilter("always")
            try:
                for side in self.sides:
                    warnings.showwarning = side.warned
                    signal.setitimer(signal.ITIMER_REAL, WATCHDOG_SECONDS)
                    try:
                        outs.append(side.run(code))
                    finally:
                        signal.setitimer(signal.ITIMER_REAL, 0)
            finally:
                signal.signal(signal.SIGALRM, old)
        return outs

    def run_step(self, step):
        """Runs one step; for a `both` step returns the two outcomes, else None (a world step,
        or a long wait skipped because the stdlib's selector might block on it)."""
        what, src, long_wait = step
        self.steps_run += 1
        if what == "world":
            try:
                eval(_compiled(src), {"W": self.world})
            except Missing:
                pass
            return None
        if long_wait:
            may_block = self.sides[0].may_block()
            try:
                self.sides[1].peek()  # as may_block() peeked at the stdlib's
            except Exception:  # noqa: BLE001
                pass
            if may_block and not self.refused(long_wait):
                return None
        return self._both(_compiled(src))

    def refused(self, timeout_name):
        """Whether the stdlib's select() of this class refuses this timeout before waiting,
        asked of a spare selector with a ready fd (never waits)."""
        known = _REFUSED.get((self.kind, timeout_name))
        if known is None:
            world = World()
            side = Side("probe", self.sides[0].mod, world)
            try:
                world.socketpair("p")
                sel = side.selector(self.kind, "plain")
                sel.register(world["pa"], 2)
                try:
                    sel.select(side.timeout("t", timeout_name))
                    known = False
                except Exception:  # noqa: BLE001
                    known = True
                sel.close()
            finally:
                world.close_all()
            _REFUSED[(self.kind, timeout_name)] = known
        return known

    def finish(self):
        for side in self.sides:
            if side.sel is not None:
                try:
                    side.sel.close()
                except Exception:  # noqa: BLE001
                    pass
        self.world.close_all()
        if self.kind == "Kqueue":
            settle_fds()


def settle_fds(limit=1.0):
    """libkqueue frees a closed kqueue's own fds from its monitor thread a moment later: wait,
    boundedly, until the fd table stops changing, so the next trial gets the same numbers."""
    deadline = time.monotonic() + limit
    last = os.listdir("/proc/self/fd")
    while time.monotonic() < deadline:
        time.sleep(0.002)
        now = os.listdir("/proc/self/fd")
        if now == last:
            return
        last = now


def differs(outs):
    """None if the two outcomes of a step agree, else a short description of how."""
    (a_out, a_journal, a_map), (b_out, b_journal, b_map) = outs
    if a_out != b_out:
        return "the outcome"
    if a_journal != b_journal:
        return "the calls of user code"
    if a_map != b_map:
        return "get_map() afterwards"
    return None


def kqueue_count_drifted(sel):
    """Whether the stdlib's KqueueSelector counts filters (`_max_events`) other than its keys
    ask for: user code run between register()'s filters, or an undo that failed, can make it
    drift (README, Known differences); from there on its select() asks the kernel for too
    few events, or raises ValueError once the count is negative, and ours does not. Keys
    whose events are no plain int are not counted (that would run their code): no drift
    is seen then."""
    try:
        if sel.get_map() is None:
            return False  # closed: its select() raises before the count matters
        expected = 0
        for key in sel._fd_to_key.values():
            if type(key.events) is not int:
                return False
            expected += bool(key.events & 1) + bool(key.events & 2)
        return sel._max_events != expected
    except Exception:  # noqa: BLE001
        return False


def run_trial(kind, variant, steps, high_fds=True, on_step=None):
    """Runs `steps`; returns (index of the first differing step, outcomes) or (None, None).
    A KqueueSelector trial ends early, without a difference, where the stdlib's filter
    count drifts (`kqueue_count_drifted`)."""
    trial = Trial(kind, variant, high_fds)
    try:
        outs = trial.start()
        if differs(outs):
            return -1, outs
        for i, step in enumerate(steps):
            outs = trial.run_step(step)
            if on_step is not None:
                on_step(i, step, outs)
            if outs is not None and differs(outs):
                return i, outs
            if kind == "Kqueue" and kqueue_count_drifted(trial.sides[0].sel):
                break
        return None, None
    finally:
        trial.finish()


# ---------------------------------------------------------------------------
# a reproduction script's main
# ---------------------------------------------------------------------------


def repro_main(kind, variant, steps):
    """Runs `steps` in lockstep on selectors and rselectors, printing each step and its
    outcomes; exits 1 at the first difference, 0 if none."""
    _, high_fds, _ = pad_fd_table()
    rows = []

    def show(i, step, outs):
        what, src, _ = step
        if outs is None:
            rows.append("%3d %-5s %s" % (i, what if what == "world" else "skip", src))
            return
        rows.append("%3d both  %s" % (i, src))
        rows.append("       stdlib:     %r" % (outs[0][0],))
        if outs[0][0] != outs[1][0]:
            rows.append("       rselectors: %r" % (outs[1][0],))

    index, outs = run_trial(kind, variant, steps, high_fds, on_step=show)
    print("\n".join(rows))
    if index is None:
        print("no difference: both modules agree on every step")
        return 0
    print("\nFIRST DIFFERENCE at step %d, in %s:" % (index, differs(outs)))
    for (out, journal, mapping), name in zip(outs, ("stdlib", "rselectors")):
        print("  %s:\n    outcome: %r\n    calls:   %r\n    get_map: %r"
              % (name, out, journal, mapping))
    return 1
