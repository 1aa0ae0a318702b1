"""register, unregister, modify and select (fileobj -> fd conversion included), step by step
on ``selectors.<Kind>Selector`` and ``rselectors.<Kind>Selector``, the recorded outcomes
compared (``Side`` / ``differ``: support/differential.py).

The mapping and close() are test_mapping.py's, the object model test_objects.py's, threads
test_concurrency.py's; select()'s timeout argument is tests/timeouts/'s.
"""

import enum
import errno
import os
import socket
import unittest.mock

import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip
from support.differential import Data, FilenoObj, MyInt, rec_map, rec_select
from support.kinds import skip_stale_fd_reuse_on_libkqueue

R = 1  # EVENT_READ
W = 2  # EVENT_WRITE
RW = 3


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


class NoFileno:
    def __repr__(self):
        return "<NoFileno>"


class IndexOnly:
    """Has __index__ but is not an int (like numpy integers)."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __repr__(self):
        return "<IndexOnly>"


class EqData:
    """Data that compares equal to every other EqData (but is not identical)."""

    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        return isinstance(other, EqData)

    def __ne__(self, other):
        return not isinstance(other, EqData)

    __hash__ = object.__hash__

    def __repr__(self):
        return "<EqData %s>" % self.name


class NeBoom(Exception):
    pass


class BadNe:
    """Data/events object whose comparisons raise."""

    def __eq__(self, other):
        raise NeBoom("__eq__ called")

    def __ne__(self, other):
        raise NeBoom("__ne__ called")

    __hash__ = object.__hash__

    def __repr__(self):
        return "<BadNe>"


# ---------------------------------------------------------------------------
# 1. fileobj -> fd conversion
# ---------------------------------------------------------------------------


def _mk_int_fd(side):
    a, _ = side.socketpair()
    return a.fileno()


def _mk_socket(side):
    a, _ = side.socketpair()
    return a


def _mk_true(side):
    return True


def _mk_fileno_int(side):
    a, _ = side.socketpair()
    return side.label(FilenoObj("int", ret=a.fileno()), "fobj")


def _mk_fileno_str(side):
    a, _ = side.socketpair()
    return side.label(FilenoObj("str", ret=str(a.fileno())), "fobj")


def _mk_fileno_str3(side):
    return side.label(FilenoObj("str3", ret="3"), "fobj")


def _mk_fileno_float(side):
    a, _ = side.socketpair()
    return side.label(FilenoObj("float", ret=a.fileno() + 0.7), "fobj")


def _mk_fileno_none(side):
    return side.label(FilenoObj("none", ret=None), "fobj")


def _mk_fileno_badstr(side):
    return side.label(FilenoObj("badstr", ret="abc"), "fobj")


def _mk_fileno_list(side):
    return side.label(FilenoObj("list", ret=[3]), "fobj")


def _mk_fileno_attrerr(side):
    return side.label(FilenoObj("attrerr", exc_type=AttributeError), "fobj")


def _mk_fileno_typeerr(side):
    return side.label(FilenoObj("typeerr", exc_type=TypeError), "fobj")


def _mk_fileno_valueerr(side):
    return side.label(FilenoObj("valueerr", exc_type=ValueError), "fobj")


def _mk_fileno_oserror(side):
    return side.label(FilenoObj("oserror", exc_type=OSError), "fobj")


def _mk_fileno_runtimeerr(side):
    return side.label(FilenoObj("runtimeerr", exc_type=RuntimeError), "fobj")


def _mk_fileno_int_subclass(side):
    a, _ = side.socketpair()
    return side.label(FilenoObj("myint", ret=MyInt(a.fileno())), "fobj")


def _mk_fileno_huge(side):
    return side.label(FilenoObj("huge", ret=2**64), "fobj")


def _mk_fileno_minus1(side):
    return side.label(FilenoObj("minus1", ret=-1), "fobj")


def _mk_fileno_bool(side):
    a, _ = side.socketpair()
    return side.label(FilenoObj("booltrue", ret=True), "fobj")


def _mk_no_fileno(side):
    return side.label(NoFileno(), "nofileno")


def _mk_neg10(side):
    return -10


def _mk_neg1(side):
    return -1


def _mk_closed_socket(side):
    a, _ = side.socketpair()
    a.close()
    return a


def _mk_closed_file(side):
    f = side.regular_file()
    f.close()
    return f


def _mk_none(side):
    return None


def _mk_str(side):
    return "abc"


def _mk_float(side):
    return 3.0


def _mk_index_only(side):
    a, _ = side.socketpair()
    return side.label(IndexOnly(a.fileno()), "indexonly")


def _mk_int_subclass(side):
    a, _ = side.socketpair()
    return MyInt(a.fileno())


def _mk_intenum(side):
    a, _ = side.socketpair()
    E = enum.IntEnum("E", {"A": a.fileno()})
    return E.A


def _mk_big(side):
    return 2**31


def _mk_huge(side):
    return 2**64


def _mk_pipe_r(side):
    r, _ = side.pipe()
    return r


FD_MAKERS = {
    "int-fd": _mk_int_fd,
    "socket": _mk_socket,
    "bool-True": _mk_true,
    "fileno-int": _mk_fileno_int,
    "fileno-str": _mk_fileno_str,
    "fileno-str-3": _mk_fileno_str3,
    "fileno-float": _mk_fileno_float,
    "fileno-None": _mk_fileno_none,
    "fileno-badstr": _mk_fileno_badstr,
    "fileno-list": _mk_fileno_list,
    "fileno-AttributeError": _mk_fileno_attrerr,
    "fileno-TypeError": _mk_fileno_typeerr,
    "fileno-ValueError": _mk_fileno_valueerr,
    "fileno-OSError": _mk_fileno_oserror,
    "fileno-RuntimeError": _mk_fileno_runtimeerr,
    "fileno-minus1": _mk_fileno_minus1,
    "fileno-True": _mk_fileno_bool,
    "fileno-int-subclass": _mk_fileno_int_subclass,
    "fileno-2**64": _mk_fileno_huge,
    "no-fileno": _mk_no_fileno,
    "neg-int-10": _mk_neg10,
    "neg-int-1": _mk_neg1,
    "closed-socket": _mk_closed_socket,
    "closed-file": _mk_closed_file,
    "None": _mk_none,
    "str": _mk_str,
    "float-3.0": _mk_float,
    "index-only": _mk_index_only,
    "int-subclass": _mk_int_subclass,
    "IntEnum": _mk_intenum,
    "int-2**31": _mk_big,
    "int-2**64": _mk_huge,
    "pipe-fd": _mk_pipe_r,
}


# README "Known differences": SelectSelector refuses an fd of 2**64 or more at register()
# (no table can key it); the stdlib stores it and fails at every select() instead.
FD_BEYOND_64_BITS = ("int-2**64", "fileno-2**64")


@pytest.mark.parametrize("maker", FD_BEYOND_64_BITS)
def test_select_refuses_fd_beyond_64_bits_at_register(rselectors, maker):
    sel = rselectors.SelectSelector()
    obj = 2**64 if maker == "int-2**64" else FilenoObj("huge", ret=2**64)
    with pytest.raises(OverflowError, match="^Python int too large to convert to C int$"):
        sel.register(obj, R)
    assert len(sel.get_map()) == 0
    with pytest.raises(KeyError):
        sel.get_key(obj)
    assert sel.select(0) == []


@pytest.mark.parametrize("maker", list(FD_MAKERS), ids=list(FD_MAKERS))
def test_fileobj_to_fd(differ, kind, maker):
    """Every entry point converting a fileobj behaves the same for odd objects."""
    if kind == "Select" and maker in FD_BEYOND_64_BITS:
        pytest.skip("documented difference, checked by "
                    "test_select_refuses_fd_beyond_64_bits_at_register")
    make = FD_MAKERS[maker]

    def scenario(side):
        sel = side.selector()
        data = side.label(Data("d"), "data")
        obj = make(side)
        side.rec("get_key before", sel.get_key, obj)
        side.rec("in map before", lambda: obj in sel.get_map())
        side.rec("map.get before", lambda: sel.get_map().get(obj, "default"))
        side.rec("map[] before", lambda: sel.get_map()[obj])
        side.rec("unregister before", sel.unregister, obj)
        side.rec("modify before", sel.modify, obj, R)
        key = side.rec("register", sel.register, obj, R, data)
        rec_map(side, sel, "map after register")
        if key is not None:
            side.check("key.fd type", type(key.fd).__name__)
            side.check("key.fileobj is obj", key.fileobj is obj)
            side.check("key.data is data", key.data is data)
            side.rec("key is get_key(obj)", lambda: sel.get_key(obj) is key)
            side.rec("key is get_key(key.fd)", lambda: sel.get_key(key.fd) is key)
        side.rec("get_key", sel.get_key, obj)
        side.rec("in map", lambda: obj in sel.get_map())
        side.rec("map.get", lambda: sel.get_map().get(obj, "default"))
        side.rec("register again", sel.register, obj, R)
        side.rec("modify W", sel.modify, obj, W, data)
        side.rec("modify same", sel.modify, obj, W, data)
        side.rec("unregister", sel.unregister, obj)
        side.rec("unregister again", sel.unregister, obj)
        rec_map(side, sel, "map at end")

    differ(scenario)


class CountingFileno:
    """fileno() returns a fixed fd and counts its calls."""

    def __init__(self, fd):
        self.fd = fd
        self.calls = 0

    def fileno(self):
        self.calls += 1
        return self.fd

    def __repr__(self):
        return "<CountingFileno>"


def test_fileno_call_count(differ):
    """How many times each operation calls fileobj.fileno() (a user-visible side effect)."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        obj = side.label(CountingFileno(a.fileno()), "counting")

        def step(name, fn, *args):
            before = obj.calls
            side.rec(name, fn, *args)
            side.check(name + " fileno calls", obj.calls - before)

        step("get_key unknown", sel.get_key, obj)
        step("register", sel.register, obj, R, "d")
        step("register dup", sel.register, obj, R, "d")
        step("get_key", sel.get_key, obj)
        step("in map", lambda: obj in sel.get_map())
        step("map[]", lambda: sel.get_map()[obj])
        step("modify data", sel.modify, obj, R, "d2")
        step("modify same", sel.modify, obj, R, "d2")
        step("modify events", sel.modify, obj, W, "d2")
        step("select", lambda: len(sel.select(0)))
        step("iterate map", lambda: len(list(sel.get_map())))
        step("unregister", sel.unregister, obj)
        step("unregister unknown", sel.unregister, obj)

    differ(scenario)


# ---------------------------------------------------------------------------
# 2. register
# ---------------------------------------------------------------------------

EVENTS_VALUES = {
    "0": 0,
    "-1": -1,
    "4": 4,
    "5": 5,
    "999999": 999999,
    "2**70": 2**70,
    "-2**70": -(2**70),
    "None": None,
    "False": False,
    "True": True,
    "1": 1,
    "2": 2,
    "3": 3,
    "str-1": "1",
    "str-empty": "",
    "float-1.0": 1.0,
    "float-0.0": 0.0,
    "list-empty": [],
    "list-1": [1],
    "object": "OBJECT",  # replaced by a labelled object in the scenario
    "IntFlag-R": "INTFLAG",
    "int-subclass-3": MyInt(3),
    "int-subclass-custom-and": "CUSTOMAND",
}


class AndOverride(int):
    """An int whose & is overridden: `events & EVENT_READ` is what the selector must ask."""

    def __and__(self, other):
        return int(self) & other & ~1  # never reports READ

    __rand__ = __and__


class Flag(enum.IntFlag):
    R = 1
    W = 2


@pytest.mark.parametrize("ev_id", list(EVENTS_VALUES), ids=list(EVENTS_VALUES))
def test_register_events(differ, ev_id):
    """events validation (ValueError/TypeError), stored value/type, select masking."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        events = EVENTS_VALUES[ev_id]
        if events == "OBJECT":
            events = side.label(Data("events"), "events-obj")
        elif events == "INTFLAG":
            events = Flag.R
        elif events == "CUSTOMAND":
            events = AndOverride(3)
        b.send(b"x")  # a is readable and writable
        key = side.rec("register", sel.register, a, events)
        if key is not None:
            side.check("events is given object", key.events is events)
        rec_map(side, sel, "map")
        rec_select(side, sel, "select(0)")
        side.rec("get_key", sel.get_key, a)
        side.rec("unregister", sel.unregister, a)
        # events are validated before the fileobj is even looked at
        side.rec("register(bad obj, events)", sel.register, "not a file", events)

    differ(scenario)


@pytest.mark.posix_only("os.pipe() ends: Windows' select() takes sockets only")
def test_register_key_fields(differ):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        r, w = side.pipe()
        d1 = side.label(Data("d1"), "d1")
        k1 = side.rec("register socket", sel.register, a, R, d1)
        k2 = side.rec("register pipe r positional data", sel.register, r, R, None)
        k3 = side.rec("register pipe w no data", sel.register, w, W)
        k4 = side.rec("register kw", sel.register, fileobj=b, events=RW, data="kw")
        for name, k in (("k1", k1), ("k2", k2), ("k3", k3), ("k4", k4)):
            side.check(name + " type is mod.SelectorKey", type(k) is side.mod.SelectorKey)
            side.check(name + " fields", (k.fileobj, k.fd, k.events, k.data))
            side.check(name + " fd type", type(k.fd).__name__)
            side.check(name + " is get_key", sel.get_key(k.fileobj) is k)
        side.check("k1.data is d1", k1.data is d1)
        side.check("k1.fileobj is a", k1.fileobj is a)
        rec_map(side, sel, "map")

    differ(scenario)


def test_register_duplicate(differ):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        wrapper = side.label(FilenoObj("wrap", ret=a.fileno()), "wrapper")
        side.rec("register a", sel.register, a, R, "first")
        side.rec("register a again", sel.register, a, W)
        side.rec("register a.fileno()", sel.register, a.fileno(), R)
        side.rec("register wrapper", sel.register, wrapper, R)
        side.rec("register str fd wrapper", sel.register,
                 side.label(FilenoObj("strwrap", ret=str(a.fileno())), "strwrapper"), R)
        rec_map(side, sel, "map unchanged")
        side.rec("register b", sel.register, b, W)
        side.rec("unregister via fd", sel.unregister, a.fileno())
        side.rec("register wrapper now", sel.register, wrapper, W)
        rec_map(side, sel, "map end")

    differ(scenario)


def test_register_regular_file(differ):
    """Epoll: PermissionError EPERM and no key left behind; Poll/Select accept."""

    def scenario(side):
        sel = side.selector()
        f = side.regular_file()
        data = side.label(Data("d"), "d")
        try:
            sel.register(f, R, data)
        except OSError as exc:
            side.check("errno", errno.errorcode.get(exc.errno))
            side.check("exc", exc)
        else:
            side.check("registered", True)
        rec_map(side, sel, "map")
        side.rec("get_key", sel.get_key, f)
        side.rec("register file fd W", sel.register, f.fileno(), W)
        rec_map(side, sel, "map 2")
        rec_select(side, sel, "select(0)")
        side.rec("unregister", sel.unregister, f)
        side.rec("unregister fd", sel.unregister, f.fileno())

    differ(scenario)


@pytest.mark.posix_only("a closed AF_UNIX socket's fd number")
def test_register_bad_fd(differ):
    """Epoll: OSError EBADF for a closed fd and no key left; Poll/Select accept it."""

    def scenario(side):
        sel = side.selector()
        fd = side.closed_fd()
        try:
            sel.register(fd, R)
        except OSError as exc:
            side.check("errno", errno.errorcode.get(exc.errno))
            side.check("exc", exc)
        else:
            side.check("registered", True)
        rec_map(side, sel, "map")
        side.rec("get_key", sel.get_key, fd)
        rec_select(side, sel, "select(0)")
        rec_select(side, sel, "select(0) again")
        side.rec("unregister", sel.unregister, fd)
        rec_map(side, sel, "map end")
        rec_select(side, sel, "select(0) empty")

    differ(scenario)


@pytest.mark.parametrize("fd", [1023, 1024, 4096, 2**31 - 1, 2**31, 2**63], ids=str)
def test_register_large_fd(differ, fd):
    """Out-of-range fds: Epoll EBADF/OverflowError, Select fails at select()."""

    def scenario(side):
        sel = side.selector()
        side.rec("register", sel.register, fd, R)
        rec_map(side, sel, "map")
        rec_select(side, sel, "select(0)")
        side.rec("unregister", sel.unregister, fd)
        rec_map(side, sel, "map end")

    differ(scenario)


def test_register_argument_errors(differ):
    """Wrong arity raises TypeError (only the type is compared: texts name internals)."""

    def rec_type(side, step, fn, *args, **kw):
        try:
            fn(*args, **kw)
        except Exception as exc:  # noqa: BLE001
            side.check(step, ("raise", type(exc).__name__))
        else:
            side.check(step, "ok")

    def scenario(side):
        sel = side.selector()
        a, _ = side.socketpair()
        rec_type(side, "register()", sel.register)
        rec_type(side, "register(a)", sel.register, a)
        rec_type(side, "register(a,1,None,5)", sel.register, a, R, None, 5)
        rec_type(side, "register(a, evnts=1)", sel.register, a, evnts=1)
        rec_type(side, "register(a, 1, data=1, x=2)", sel.register, a, R, data=1, x=2)
        rec_map(side, sel, "map")
        rec_type(side, "unregister()", sel.unregister)
        rec_type(side, "modify(a)", sel.modify, a)
        rec_type(side, "get_key()", sel.get_key)
        rec_type(side, "select(0, 1)", sel.select, 0, 1)
        rec_type(side, "get_map(1)", sel.get_map, 1)
        rec_type(side, "close(1)", sel.close, 1)
        side.rec("register(fileobj=, events=)", sel.register, fileobj=a, events=R)
        side.rec("get_key(fileobj=)", sel.get_key, fileobj=a)
        side.rec("modify(fileobj=, events=, data=)", sel.modify, fileobj=a, events=W, data="x")
        rec_select(side, sel, "select(timeout=0)")
        side.rec("select(timeout=0)", lambda: len(sel.select(timeout=0)))
        side.rec("unregister(fileobj=)", sel.unregister, fileobj=a)

    differ(scenario)


def test_rselectors_is_not_the_stdlib(rselectors):
    """Guard against a harness that would compare the stdlib with itself."""
    import selectors

    assert rselectors is not selectors
    assert rselectors.__name__ == "rselectors"
    for name in ("SelectSelector", "PollSelector", "EpollSelector"):
        assert getattr(rselectors, name) is not getattr(selectors, name), name


def test_event_constants(rselectors):
    import selectors

    assert rselectors.EVENT_READ == selectors.EVENT_READ == 1
    assert rselectors.EVENT_WRITE == selectors.EVENT_WRITE == 2
    assert type(rselectors.EVENT_READ) is int
    assert type(rselectors.EVENT_WRITE) is int
    for name in ("SelectorKey", "BaseSelector", "SelectSelector", "PollSelector",
                 "EpollSelector", "DefaultSelector", "install"):
        assert hasattr(rselectors, name), name


# ---------------------------------------------------------------------------
# 3. unregister
# ---------------------------------------------------------------------------


def test_unregister_returns_key(differ):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        d = side.label(Data("d"), "d")
        k = sel.register(a, R, d)
        got = sel.get_key(a)
        side.check("register key is get_key", k is got)
        u = side.rec("unregister", sel.unregister, a)
        side.check("unregister returns same object", u is got)
        side.check("data identity", u.data is d)
        rec_map(side, sel, "map empty")
        side.rec("get_key after", sel.get_key, a)
        side.rec("unregister again", sel.unregister, a)
        side.rec("unregister fd", sel.unregister, a.fileno())
        side.rec("unregister b (never registered)", sel.unregister, b)
        side.rec("unregister invalid", sel.unregister, "abc")
        side.rec("unregister -10", sel.unregister, -10)
        side.rec("unregister None", sel.unregister, None)
        # register/unregister cycles keep working
        for i in range(3):
            side.rec("cycle register %d" % i, sel.register, a, RW, i)
            side.rec("cycle unregister %d" % i, sel.unregister, a)
        rec_map(side, sel, "map end")

    differ(scenario)


def test_unregister_after_close(differ):
    """A closed socket is found by identity; the kernel-side OSError is swallowed."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        c, d = side.socketpair("t")
        side.rec("register a", sel.register, a, R, "a")
        side.rec("register c", sel.register, c, W, "c")
        a.close()
        side.rec("get_key closed a", sel.get_key, a)
        side.rec("in map closed a", lambda: a in sel.get_map())
        rec_map(side, sel, "map")
        side.rec("unregister closed a", sel.unregister, a)
        side.rec("unregister closed a again", sel.unregister, a)
        side.rec("get_key closed a after", sel.get_key, a)
        rec_select(side, sel, "select(0)")
        # closing by fd number, then unregistering by number
        cfd = c.fileno()
        c.close()
        side.rec("unregister closed fd number", sel.unregister, cfd)
        rec_map(side, sel, "map end")
        rec_select(side, sel, "select(0) end")

    differ(scenario)


def test_unregister_after_fd_reuse(differ, kind):
    """The old (closed) object still unregisters; a new socket on the same fd is independent."""
    skip_stale_fd_reuse_on_libkqueue(kind)

    def scenario(side):
        sel = side.selector()
        old, peer = side.socketpair("old")
        n = old.fileno()
        side.rec("register old", sel.register, old, R, "old")
        old.close()
        new, newpeer = side.socketpair("new")
        if new.fileno() != n:
            # force the reuse of number n
            os.dup2(new.fileno(), n)
            new.close()
            new = socket.socket(fileno=n)
            side.defer(new.close)
            side.label(new, "new0")
        side.label_fd(n, "n")
        side.check("new has number n", new.fileno() == n)
        side.rec("get_key(new) (same fd: finds old key)", sel.get_key, new)
        side.rec("register new while old registered", sel.register, new, R)
        side.rec("unregister old object", sel.unregister, old)
        side.rec("get_key(new)", sel.get_key, new)
        side.rec("register new", sel.register, new, R, "new")
        newpeer.send(b"x")
        rec_select(side, sel, "select(0) new readable")
        side.rec("unregister old again", sel.unregister, old)
        side.rec("get_key(new) still", sel.get_key, new)
        side.rec("unregister new", sel.unregister, new)
        rec_map(side, sel, "map end")

    differ(scenario)


@pytest.mark.posix_only("os.pipe() ends: Windows' select() takes sockets only")
def test_unregister_fd_closed_and_reused_then_unregister_by_number(differ):
    """Epoll: EPOLL_CTL_DEL on a number now used by an unregistered fd -> ENOENT swallowed."""

    def scenario(side):
        sel = side.selector()
        a, _ = side.socketpair("a")
        n = a.fileno()
        side.rec("register a", sel.register, a, W, "a")
        a.close()
        r, w = side.pipe("p")
        if r != n and w != n:
            os.dup2(r, n)
            side.label_fd(n, "n")
            side.defer(side.close_fd, n)
        side.rec("unregister by number", sel.unregister, n)
        rec_map(side, sel, "map")
        rec_select(side, sel, "select(0)")

    differ(scenario)


def test_unregister_swallows_oserror_dup_ghost(differ):
    """Epoll ghost registration: fd closed but description alive through a dup.

    unregister() swallows EBADF; later events for the unknown fd are skipped.
    """

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        dupfd = os.dup(a.fileno())
        side.label_fd(dupfd, "dup")
        side.defer(side.close_fd, dupfd)
        side.rec("register a", sel.register, a, R, "a")
        a.close()
        side.rec("unregister closed a", sel.unregister, a)
        b.send(b"x")
        rec_select(side, sel, "select(0) ghost skipped")
        side.rec("register dup", sel.register, dupfd, R, "dup")
        rec_select(side, sel, "select(0) dup")
        side.rec("unregister dup", sel.unregister, dupfd)

    differ(scenario)


# ---------------------------------------------------------------------------
# 4. modify
# ---------------------------------------------------------------------------


def test_modify_unknown(differ):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        side.rec("modify unknown socket", sel.modify, a, R)
        side.rec("modify unknown fd", sel.modify, a.fileno(), R)
        side.rec("modify invalid obj", sel.modify, "abc", R)
        side.rec("modify -10", sel.modify, -10, R)
        side.rec("modify unknown with bad events", sel.modify, a, 0)
        side.rec("modify unknown with str events", sel.modify, a, "x")
        sel.register(b, R)
        side.rec("modify unknown socket (map not empty)", sel.modify, a, W)
        rec_map(side, sel, "map")

    differ(scenario)


def test_modify_data_only_no_syscall(differ):
    """A data-only change takes the shortcut: self.register/unregister not called."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        d1 = side.label(Data("d1"), "d1")
        d2 = side.label(Data("d2"), "d2")
        k1 = sel.register(a, R, d1)
        reg = unittest.mock.Mock(name="register")
        unreg = unittest.mock.Mock(name="unregister")
        side.rec("patch register", setattr, sel, "register", reg)
        side.rec("patch unregister", setattr, sel, "unregister", unreg)
        k2 = side.rec("modify data only", sel.modify, a, R, d2)
        side.check("register called", reg.called)
        side.check("unregister called", unreg.called)
        if k2 is not None:
            side.check("new key object", k2 is not k1)
            side.check("k2.data is d2", k2.data is d2)
            side.check("k2 is get_key", sel.get_key(a) is k2)
            side.check("old key unchanged", tuple(k1))
        k3 = side.rec("modify nothing changed", sel.modify, a, R, d2)
        side.check("same key object", k3 is k2)
        side.check("register called 2", reg.called)
        side.check("unregister called 2", unreg.called)
        k4 = side.rec("modify data None", sel.modify, a, R)
        side.check("register called 3", reg.called)
        side.check("k4 is get_key", k4 is not None and sel.get_key(a) is k4)
        b.send(b"x")
        rec_select(side, sel, "select(0)")

    differ(scenario)


def test_modify_events_change(differ):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        d1 = side.label(Data("d1"), "d1")
        d2 = side.label(Data("d2"), "d2")
        k1 = sel.register(a, R, d1)
        rec_select(side, sel, "select(0) R nothing")
        k2 = side.rec("modify -> W", sel.modify, a, W, d1)
        side.check("new key", k2 is not k1)
        side.check("k2 is get_key", sel.get_key(a) is k2)
        side.check("k2.data is d1", k2.data is d1)
        rec_select(side, sel, "select(0) W")
        k3 = side.rec("modify -> RW + data", sel.modify, a, RW, d2)
        side.check("k3.data is d2", k3.data is d2)
        b.send(b"x")
        rec_select(side, sel, "select(0) RW")
        side.rec("modify -> R by fd", sel.modify, a.fileno(), R, d2)
        rec_select(side, sel, "select(0) R")
        side.rec("modify True", sel.modify, a, True, d2)  # True != 1 is False: no change
        side.rec("modify 1.0", sel.modify, a, 1.0, d2)  # 1.0 != 1 is False: no change
        side.rec("modify 2.0", sel.modify, a, 2.0, d2)  # float & int -> TypeError
        rec_map(side, sel, "map")
        side.rec("modify kw", sel.modify, fileobj=a, events=W, data=d1)
        rec_map(side, sel, "map end")

    differ(scenario)


@pytest.mark.parametrize("events", [0, 4, -1, 999999, 7, None, "1", 2.0, [], "OBJ", "BADNE"],
                         ids=["0", "4", "-1", "999999", "7", "None", "str", "float2.0", "list", "object",
                              "bad-ne"])
def test_modify_invalid_events(differ, events):
    """Poll/Epoll store unvalidated events; Select validates and drops the fd."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        ev = events
        if ev == "OBJ":
            ev = side.label(Data("ev"), "ev")
        elif ev == "BADNE":
            ev = side.label(BadNe(), "badne")
        k1 = side.rec("register", sel.register, a, R, "d")
        k2 = side.rec("modify", sel.modify, a, ev, "d2")
        if k2 is not None:
            side.check("events identity", k2.events is ev)
        side.rec("get_key", sel.get_key, a)
        side.check("key unchanged (same object)", sel.get_map().get(a) is k1)
        rec_map(side, sel, "map")
        b.send(b"x")
        rec_select(side, sel, "select(0)")
        side.rec("modify back to R", sel.modify, a, R, "d3")
        rec_select(side, sel, "select(0) R")

    differ(scenario)


def test_modify_epoll_syscall_failure(differ):
    """bpo-30014: the poller's modify fails (fd closed) -> error raised, key removed."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        c, d = side.socketpair("t")
        sel.register(a, R, "a")
        sel.register(c, R, "c")
        a.close()
        side.rec("modify closed a: events change", sel.modify, a, W, "a2")
        rec_map(side, sel, "map after")
        side.rec("get_key a", sel.get_key, a)
        # data-only change on a closed socket: no syscall, succeeds everywhere
        cfd = c.fileno()
        c.close()
        side.rec("modify closed c data only", sel.modify, c, R, "c2")
        side.rec("modify closed c events via fd number", sel.modify, cfd, W)
        rec_map(side, sel, "map end")

    differ(scenario)


@pytest.mark.parametrize("new_events", [W, 5, -1, 0], ids=["W", "R|4-same-interest", "-1", "0"])
def test_modify_after_close_syscall(differ, new_events):
    """modify() with changed events always reaches the poller (even when the OS interest is
    unchanged, e.g. R -> R|4): on a closed fd Epoll raises EBADF and drops the key."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        k = sel.register(a, R, "a")
        a.close()
        side.rec("modify", sel.modify, a, new_events, "a2")
        rec_map(side, sel, "map")
        side.rec("get_key", sel.get_key, a)
        side.rec("unregister", sel.unregister, a)

    differ(scenario)


def test_modify_after_fd_reuse_enoent(differ, kind):
    """Epoll: the fd number now names an unregistered file -> EPOLL_CTL_MOD fails ENOENT."""
    skip_stale_fd_reuse_on_libkqueue(kind)

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        n = a.fileno()
        sel.register(a, R, "a")
        a.close()
        c, d = side.socketpair("t")
        if c.fileno() != n:
            os.dup2(c.fileno(), n)
            side.defer(side.close_fd, n)
        side.label_fd(n, "n")
        side.rec("modify by number (events change)", sel.modify, n, W, "x")
        rec_map(side, sel, "map")
        side.rec("register number again", sel.register, n, R, "new")
        d.send(b"x")
        rec_select(side, sel, "select(0)")
        side.rec("unregister", sel.unregister, n)

    differ(scenario)


def test_modify_data_comparison(differ):
    """data != key.data uses Python !=: __ne__ exceptions propagate, equal data keeps the OLD object."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        e1 = side.label(EqData("e1"), "e1")
        e2 = side.label(EqData("e2"), "e2")
        e3 = side.label(EqData("e3"), "e3")
        k1 = side.rec("register e1", sel.register, a, R, e1)
        k2 = side.rec("modify equal data e2", sel.modify, a, R, e2)
        side.check("same key", k2 is k1)
        side.check("data is still e1", sel.get_key(a).data is e1)
        k3 = side.rec("modify events change + equal data e3", sel.modify, a, W, e3)
        side.check("data after events change is e3", k3.data is e3)
        bad = side.label(BadNe(), "badne")
        side.rec("modify data BadNe", sel.modify, a, W, bad)
        side.rec("get_key after BadNe", sel.get_key, a)
        side.check("key unchanged after BadNe", sel.get_key(a) is k3)
        # store BadNe as data via an events change, then compare against it
        side.rec("modify events change with BadNe data", sel.modify, a, R, bad)
        side.rec("get_key 2", sel.get_key, a)
        side.rec("modify same events, data 1 vs stored BadNe", sel.modify, a, R, 1)
        side.rec("modify same events, same BadNe object", sel.modify, a, R, bad)
        side.rec("unregister", sel.unregister, a)

    differ(scenario)


def test_modify_data_compared_by_identity(differ):
    """`data != key.data` between objects whose classes define no comparison is `is not`
    (rselectors decides it without Python); a stored or new object whose class compares in
    Python, reflected comparisons and a class given __eq__ later included, still has its
    __eq__ run, once per modify, as in the stdlib."""

    def scenario(side):
        calls = []

        class Noted:
            def __init__(self, name):
                self.name = name

            def __eq__(self, other):
                calls.append(self.name)
                return NotImplemented

            __hash__ = object.__hash__

            def __repr__(self):
                return "<Noted %s>" % self.name

        class Late:
            def __repr__(self):
                return "<Late>"

        sel = side.selector()
        a, b = side.socketpair()
        d1 = side.label(Data("d1"), "d1")
        d2 = side.label(Data("d2"), "d2")
        k1 = side.rec("register d1", sel.register, a, R, d1)
        side.check("same data object: same key", sel.modify(a, R, d1) is k1)
        k2 = side.rec("modify to d2", sel.modify, a, R, d2)
        side.check("other data object: a new key holding it", k2 is not k1 and k2.data is d2)
        side.check("same data None: same key", sel.modify(a, R, None) is sel.modify(a, R, None))
        noted = side.label(Noted("n"), "noted")
        side.rec("modify to noted (noted != None)", sel.modify, a, R, noted)
        side.check("noted's __eq__ ran once", calls == ["n"])
        side.rec("modify to d1 (d1 != noted: noted's reflected __ne__)", sel.modify, a, R, d1)
        side.check("noted's __eq__ ran again", calls == ["n", "n"])
        late1 = side.label(Late(), "late1")
        late2 = side.label(Late(), "late2")
        side.rec("modify to late1", sel.modify, a, R, late1)
        side.rec("modify to late2", sel.modify, a, R, late2)
        Late.__eq__ = lambda self, other: calls.append("late") or NotImplemented
        side.rec("modify to late1, Late now compares in Python", sel.modify, a, R, late1)
        side.check("Late's new __eq__ ran, then the reflected one", calls[2:] == ["late", "late"])
        side.rec("unregister", sel.unregister, a)

    differ(scenario)


def test_modify_dispatch_patched_select(differ):
    """Instance-patched register/unregister: which ones modify() calls on an events change."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sentinel = side.label(Data("regret"), "register-return")
        sel.register(a, R, "d")
        calls = []

        def fake_unregister(fileobj):
            calls.append(("unregister", fileobj))
            return "unreg-ret"

        def fake_register(fileobj, events, data=None):
            calls.append(("register", fileobj, events, data))
            return sentinel

        sel.unregister = fake_unregister
        sel.register = fake_register
        side.rec("modify events change", sel.modify, a, W, "d2")
        side.check("calls", calls)
        rec_map(side, sel, "map")

    differ(scenario)


# ---------------------------------------------------------------------------
# 5. select
# ---------------------------------------------------------------------------


def test_select_socketpair_readiness(differ):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        side.rec("select(0) empty selector", sel.select, 0)
        sel.register(a, R, "a")
        rec_select(side, sel, "R, nothing to read")
        sel.register(b, W, "b")
        rec_select(side, sel, "b writable")
        b.send(b"hello")
        rec_select(side, sel, "a readable, b writable")
        sel.modify(a, RW, "a")
        rec_select(side, sel, "a RW")
        sel.modify(a, W, "a")
        rec_select(side, sel, "a W only (masked)")
        a.recv(100)
        sel.modify(a, R, "a")
        rec_select(side, sel, "a R drained")
        side.rec("result is list of tuples", lambda: [(type(x).__name__, len(x)) for x in sel.select(0)])
        side.rec("fresh list each call", lambda: sel.select(0) is not sel.select(0))

    differ(scenario)


@pytest.mark.posix_only("os.pipe() ends: Windows' select() takes sockets only")
def test_select_pipes(differ):
    def scenario(side):
        sel = side.selector()
        r, w = side.pipe()
        sel.register(r, R, "r")
        sel.register(w, W, "w")
        rec_select(side, sel, "w writable")
        os.write(w, b"x")
        rec_select(side, sel, "r readable")
        os.read(r, 1)
        rec_select(side, sel, "drained")
        sel.unregister(w)
        side.close_fd(w)
        rec_select(side, sel, "writer closed -> r HUP/EOF")
        side.rec("unregister r", sel.unregister, r)

    differ(scenario)


@pytest.mark.posix_only("os.pipe() ends: Windows' select() takes sockets only")
def test_select_pipe_reader_closed(differ):
    def scenario(side):
        sel = side.selector()
        r, w = side.pipe()
        sel.register(w, RW, "w")
        rec_select(side, sel, "w RW")
        side.close_fd(r)
        rec_select(side, sel, "reader closed -> EPOLLERR")

    differ(scenario)


@pytest.mark.parametrize("events", [R, W, RW], ids=["R", "W", "RW"])
@pytest.mark.parametrize("how", ["close", "shutdown-wr", "shutdown-rdwr"])
def test_select_peer_hangup(differ, events, how):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, events, "a")
        rec_select(side, sel, "before")
        if how == "close":
            b.close()
        elif how == "shutdown-wr":
            b.shutdown(socket.SHUT_WR)
        else:
            b.shutdown(socket.SHUT_RDWR)
        rec_select(side, sel, "after " + how)
        rec_select(side, sel, "after (level triggered)")

    differ(scenario)


def test_select_zero_mask_quirk(differ):
    """modify(fd, 0) on Poll/Epoll then hang-up -> (key, 0) is still returned."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, R, "a")
        k = side.rec("modify 0", sel.modify, a, 0, "a")
        b.send(b"x")
        rec_select(side, sel, "readable with mask 0")
        b.close()
        res = rec_select(side, sel, "peer closed with mask 0")
        if res:
            side.check("mask values", [m for _, m in res])
            side.check("key is modified key", res[0][0] is k)

    differ(scenario)


def test_select_unvalidated_mask_masking(differ):
    """Poll/Epoll with events=4 / -1 stored: the returned mask is `events & key.events`."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        c, d = side.socketpair("t")
        sel.register(a, R, "a")
        sel.register(c, W, "c")
        side.rec("modify a -1", sel.modify, a, -1, "a")
        side.rec("modify c 4", sel.modify, c, 4, "c")
        b.send(b"x")
        rec_select(side, sel, "select(0)")
        d.close()
        rec_select(side, sel, "select(0) c peer closed")

    differ(scenario)


def test_select_many_ready(differ):
    """All ready fds are returned by a single call (epoll maxevents = len(map))."""

    def scenario(side):
        sel = side.selector()
        pairs = [side.socketpair("p%d" % i) for i in range(6)]
        for i, (a, b) in enumerate(pairs):
            sel.register(a, W, i)
            sel.register(b, R, -i)
        rec_select(side, sel, "6 writers")
        for a, _ in pairs:
            a.send(b"x")
        rec_select(side, sel, "6 writers + 6 readers")
        side.rec("count", lambda: len(sel.select(0)))
        for a, b in pairs:
            sel.unregister(a)
        rec_select(side, sel, "6 readers")

    differ(scenario)


@pytest.mark.posix_only("a closed AF_UNIX socket's fd number")
def test_select_closed_fd_still_registered(differ):
    """fd closed before unregister: Select EBADF, Poll POLLNVAL, Epoll silently dropped."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        c, d = side.socketpair("t")
        sel.register(a, R, "a")
        sel.register(c, W, "c")
        a.close()
        rec_select(side, sel, "select(0) after close")
        rec_select(side, sel, "select(0) again")
        side.rec("unregister closed", sel.unregister, a)
        rec_select(side, sel, "select(0) after unregister")

    differ(scenario)


def test_select_result_order(differ):
    """The (unsorted) order of select() results, after registrations/unregistrations."""

    def scenario(side):
        sel = side.selector()
        pairs = [side.socketpair("p%d" % i) for i in range(5)]
        socks = [s for p in pairs for s in p]
        order = socks[5:] + socks[:5]  # not fd order
        for i, s in enumerate(order):
            sel.register(s, W, i)
        for s in order[1::3]:
            sel.unregister(s)
        for s in reversed(order[1::3]):
            sel.register(s, RW, "again")
        sel.modify(order[0], RW, "modified")
        pairs[0][0].send(b"x")
        for i in range(3):
            side.rec("select(0) raw order #%d" % i, sel.select, 0)

    differ(scenario)


def test_default_selector_smoke(rselectors, differential):
    import selectors

    assert selectors.DefaultSelector is selectors.EpollSelector
    assert rselectors.DefaultSelector is rselectors.EpollSelector

    def scenario(side):
        sel = side.selector(side.mod.DefaultSelector)
        a, b = side.socketpair()
        side.rec("register", sel.register, a, RW, "a")
        b.send(b"x")
        rec_select(side, sel, "select(0)")
        side.check("fileno is int", type(sel.fileno()).__name__)
        side.rec("unregister", sel.unregister, a)

    differential(scenario, None)
