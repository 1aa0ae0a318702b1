"""Reliability 2: bad input, table-driven, compared with the stdlib.

The differential suite (tests/parity/) already covers the odd fileobjs (FD_MAKERS), odd
events (EVENTS_VALUES), close() and mutation during iteration; timeouts, odd ones included,
are tests/timeouts/'s.  This file adds what it leaves thin:

* one table with every input the issue names, on every entry point, in one scenario per
  input (so a crash in one input cannot hide another);
* data of any type and the ``data != key.data`` rule of modify() (NaN, equal copies,
  containers, the selector itself, a key);
* every method after close(), with good and bad arguments; close twice and three times;
  register during iteration over get_map() for every kind of iterator.
"""

import math
import socket
import time
from decimal import Decimal
from fractions import Fraction

import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip
from support.kinds import KINDS, selector_class

R, W, RW = 1, 2, 3


class Obj:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "<Obj %s>" % self.name


class FilenoReturns:
    def __init__(self, value, name):
        self.value = value
        self.name = name

    def fileno(self):
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value

    def __repr__(self):
        return "<FilenoReturns %s>" % self.name


def _closed_socket(side):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    side.label(s, "closedsock")
    s.close()
    return s


def _closed_file(side):
    f = side.regular_file("closedfile")
    f.close()
    return f


FILEOBJS = {
    "None": lambda side: None,
    "str": lambda side: "not a file",
    "float": lambda side: 3.0,
    "bool-True": lambda side: True,
    "bool-False": lambda side: False,
    "int-2**64": lambda side: 2**64,
    "int-2**63": lambda side: 2**63,
    "int-2**31": lambda side: 2**31,
    "neg-int": lambda side: -5,
    "fileno-raises": lambda side: side.label(FilenoReturns(RuntimeError("boom"), "raises"), "fr"),
    "fileno-raises-ValueError": lambda side: side.label(
        FilenoReturns(ValueError("vboom"), "raisesV"), "fv"),
    "fileno-str": lambda side: side.label(FilenoReturns("3", "str"), "fs"),
    "fileno-float": lambda side: side.label(FilenoReturns(3.0, "float"), "ff"),
    "fileno-minus1": lambda side: side.label(FilenoReturns(-1, "m1"), "fm1"),
    "closed-socket": _closed_socket,
    "closed-file": _closed_file,
    "bytes": lambda side: b"3",
    "complex": lambda side: 3j,
    "list": lambda side: [3],
}

EVENTS = {"0": 0, "-1": -1, "4": 4, "999999": 999999, "1.0": 1.0, "str-1": "1", "None": None,
          "True": True, "1": 1, "3": 3}


def _entry_points(side, sel, obj, events, tag):
    side.rec(tag + " register", sel.register, obj, events, "d")
    side.rec(tag + " get_key", sel.get_key, obj)
    side.rec(tag + " in map", lambda: obj in sel.get_map())
    side.rec(tag + " map.get", lambda: sel.get_map().get(obj, "dflt"))
    side.rec(tag + " map[]", lambda: sel.get_map()[obj])
    side.rec(tag + " modify", sel.modify, obj, W, "d2")
    side.rec(tag + " unregister", sel.unregister, obj)
    side.rec(tag + " len", lambda: len(sel.get_map()))


@pytest.mark.parametrize("f_id", list(FILEOBJS), ids=list(FILEOBJS))
def test_bad_fileobj_every_entry_point(differ, kind, f_id):
    if kind == "Select" and f_id == "int-2**64":
        pytest.skip("README known difference: SelectSelector refuses 2**64 at register()")

    def scenario(side):
        sel = side.selector()
        obj = FILEOBJS[f_id](side)
        a, b = side.socketpair()
        sel.register(a, W, "a")
        _entry_points(side, sel, obj, R, "")
        side.rec("select(0) afterwards", lambda: [(k.fd == a.fileno(), ev) for k, ev in sel.select(0)])

    differ(scenario)


@pytest.mark.parametrize("e_id", list(EVENTS), ids=list(EVENTS))
def test_bad_events_every_entry_point(differ, e_id):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        c, d = side.socketpair("t")
        b.send(b"x")
        events = EVENTS[e_id]
        _entry_points(side, sel, a, events, "a")
        side.rec("register c R", sel.register, c, R, "c")
        side.rec("modify c bad events", sel.modify, c, events, "c")
        side.rec("get_key c", sel.get_key, c)
        side.rec("select", lambda: sorted((k.data, ev) for k, ev in sel.select(0)))
        side.rec("modify a (unregistered) bad events", sel.modify, a, events)

    differ(scenario)


# -- data of any type ---------------------------------------------------------------------

class NeAlwaysTrue:
    def __ne__(self, other):
        return True

    def __eq__(self, other):
        return False

    __hash__ = object.__hash__

    def __repr__(self):
        return "<NeAlwaysTrue>"


class NeReturnsObject:
    """__ne__ returns a non-bool whose truth value is computed (and counted)."""

    class Truthy:
        def __bool__(self):
            return False

    def __ne__(self, other):
        return self.Truthy()

    __hash__ = object.__hash__

    def __repr__(self):
        return "<NeReturnsObject>"


DATA = {
    "None": lambda side: None,
    "int": lambda side: 12345,
    "big-int": lambda side: 2**200,
    "neg-int": lambda side: -1,
    "float": lambda side: 1.5,
    "nan": lambda side: float("nan"),
    "str": lambda side: "data",
    "bytes": lambda side: b"data",
    "bytearray": lambda side: bytearray(b"data"),
    "list": lambda side: [1, 2],
    "dict": lambda side: {"a": 1},
    "set": lambda side: {1, 2},
    "tuple": lambda side: (1, 2),
    "function": lambda side: len,
    "class": lambda side: int,
    "Ellipsis": lambda side: ...,
    "ne-always-true": lambda side: side.label(NeAlwaysTrue(), "neat"),
    "ne-returns-object": lambda side: side.label(NeReturnsObject(), "nero"),
    "decimal-nan": lambda side: Decimal("NaN"),
    "fraction": lambda side: Fraction(1, 3),
}


def _copy(x):
    if isinstance(x, (list, dict, set, bytearray)):
        return type(x)(x)
    if isinstance(x, float):
        return float(repr(x)) if not math.isnan(x) else float("nan")
    if isinstance(x, int) and not isinstance(x, bool):
        return int(str(x))
    if isinstance(x, (str, bytes)):
        return type(x)(x[:1]) + x[1:]
    return x


@pytest.mark.parametrize("d_id", list(DATA), ids=list(DATA))
def test_data_of_any_type(differ, d_id):
    """register keeps the very object; modify(same events, data) makes a new key exactly
    when ``data != key.data`` is true (identity does not short-cut it: NaN differs from
    itself), and an equal copy keeps the old key (and the old data object)."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        data = DATA[d_id](side)
        if not isinstance(data, (int, float, str, bytes)) and data is not None and data is not ...:
            side.label(data, "data")
        key = side.rec("register", sel.register, a, R, data)
        side.check("key.data is data", key.data is data)
        k2 = side.rec("modify same object", sel.modify, a, R, data)
        side.check("same key after same object", k2 is key)
        side.check("data still the object", sel.get_key(a).data is data)
        cp = _copy(data)
        k3 = side.rec("modify equal copy", sel.modify, a, R, cp)
        side.check("same key after copy", k3 is sel.get_key(a))
        side.check("k3 is k2", k3 is k2)
        side.check("data is copy", sel.get_key(a).data is cp)
        side.check("data is original", sel.get_key(a).data is data)
        b.send(b"x")
        side.rec("select data identity", lambda: [k.data is sel.get_key(a).data for k, _ in sel.select(0)])
        k4 = side.rec("unregister", sel.unregister, a)
        side.check("unregistered key is last key", k4 is k3)

    differ(scenario)


def test_data_is_selector_or_key(differ):
    """Self-references: data is the selector, its map, or another key."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        c, d = side.socketpair("t")
        k1 = side.rec("register sel as data", sel.register, a, R, sel)
        side.rec("register key as data", sel.register, c, R, k1)
        side.rec("modify map as data", sel.modify, a, R, sel.get_map())
        side.check("data is map", sel.get_key(a).data is sel.get_map())
        side.rec("modify key as own data", sel.modify, c, R, sel.get_key(c))
        side.rec("close", sel.close)

    differ(scenario)


# -- after close --------------------------------------------------------------------------

@pytest.mark.posix_only("os.pipe() ends: Windows' select() takes sockets only")
def test_every_method_after_close(differ):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        r, w = side.pipe()
        sel.register(a, R, "a")
        m = sel.get_map()
        it = iter(m)
        side.rec("close", sel.close)
        side.rec("close twice", sel.close)
        side.rec("next(old iterator)", next, it)
        for name, obj in [("sock", a), ("fd", w), ("str", "x"), ("None", None), ("neg", -1),
                          ("fileno-raises", FilenoReturns(RuntimeError("b"), "r"))]:
            side.rec("get_key(%s)" % name, sel.get_key, obj)
            side.rec("unregister(%s)" % name, sel.unregister, obj)
            side.rec("modify(%s)" % name, sel.modify, obj, W)
            side.rec("modify(%s, bad events)" % name, sel.modify, obj, 99)
            side.rec("old map get(%s)" % name, m.get, obj)
        side.rec("register bad events", sel.register, b, 0)
        side.rec("register bad fileobj", sel.register, "x", R)
        for t in (0, None if False else 0.0, -1, "x", float("nan"), float("inf"), 1e-9):
            side.rec("select(%r)" % (t,), lambda t=t: sel.select(t))
        side.rec("get_map", sel.get_map)
        side.rec("fileno type", lambda: type(getattr(sel, "fileno", lambda: None)()).__name__)
        side.rec("context manager exit", lambda: sel.__exit__(None, None, None))
        side.rec("close third", sel.close)
        side.rec("old map len", len, m)
        side.rec("old map iter", lambda: list(m))

    differ(scenario)


@pytest.mark.parametrize("how", ["keys", "items", "values"])
@pytest.mark.parametrize("op", ["register", "register-bad", "unregister-missing", "close"])
def test_mutation_during_iteration_more(differ, how, op):
    """Register/close while iterating get_map(): the stdlib dict iterator's error (or none)."""

    def scenario(side):
        sel = side.selector()
        pairs = [side.socketpair("s%d" % i) for i in range(3)]
        for i, (x, y) in enumerate(pairs[:2]):
            sel.register(x, R, "k%d" % i)
        m = sel.get_map()
        it = iter({"keys": m, "items": m.items(), "values": m.values()}[how])

        def run():
            first = next(it)
            if op == "register":
                sel.register(pairs[2][0], R, "new")
            elif op == "register-bad":
                try:
                    sel.register("bad", R)
                except ValueError:
                    pass
            elif op == "unregister-missing":
                try:
                    sel.unregister(pairs[2][1])
                except KeyError:
                    pass
            elif op == "close":
                sel.close()
            rest = list(it)
            return type(first).__name__, len(rest)

        side.rec("iterate+%s" % op, run)
        side.rec("len after", lambda: None if sel.get_map() is None else len(sel.get_map()))

    differ(scenario)


# -- fuzz: any value for events / timeout / fd / data, compared with the stdlib ----------

from hypothesis import assume, given, settings, strategies as st  # noqa: E402

from support.differential import run_differential  # noqa: E402

ANY = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 2, 3, 4, 5, 7, -1, 255, 256, 2**31 - 1, 2**31, 2**32, 2**63 - 1,
                     2**63, 2**64, -(2**63), -(2**64)]),
    st.floats(), st.floats(min_value=-1e-3, max_value=5e-3),
    st.text(max_size=3), st.binary(max_size=3),
    st.fractions(max_denominator=10**6).filter(lambda f: abs(f) < 10**12),
    st.decimals(places=None, allow_nan=True, allow_infinity=True),
    st.complex_numbers(max_magnitude=10), st.lists(st.integers(0, 3), max_size=2),
    st.tuples(st.integers(0, 3)),
)
FUZZ = settings(max_examples=150, deadline=None, database=None)


def _ready(side, sel):
    return sorted(repr(side.canon(item)) for item in sel.select(0))


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(events=ANY, events2=ANY)
def test_fuzz_events(kind, events, events2):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        b.send(b"x")
        side.rec("register", sel.register, a, events, "d")
        side.rec("select", _ready, side, sel)
        side.rec("modify", sel.modify, a, events2, "d2")
        side.rec("select after modify", _ready, side, sel)
        side.rec("get_key", sel.get_key, a)
        side.rec("unregister", sel.unregister, a)

    run_differential(scenario, kind)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(timeout=ANY)
def test_fuzz_timeout_with_ready_fd(kind, timeout):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, W, "a")  # always writable: select() returns at once if it waits
        t0 = time.monotonic()
        side.rec("select", lambda: sorted(repr(side.canon(i)) for i in sel.select(timeout)))
        side.check("prompt", time.monotonic() - t0 < 2.0)

    run_differential(scenario, kind)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(fd=ANY, data=ANY)
def test_fuzz_fileobj_and_data(kind, fd, data):
    """Any value as the fileobj (ints: fd numbers, open in this process or not) and data."""
    # README known difference: SelectSelector refuses an fd of 2**64 or more at register().
    assume(not (kind == "Select" and isinstance(fd, int) and not isinstance(fd, bool)
                and fd >= 2**64))
    # Off stdin, stdout and stderr (harmless, but noisy).
    assume(not (isinstance(fd, int) and 0 <= fd < 3))

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, W, "a")
        side.rec("register", sel.register, fd, R, data)
        side.rec("get_key", sel.get_key, fd)
        side.rec("in map", lambda: fd in sel.get_map())
        side.rec("modify", sel.modify, fd, W, data)
        side.rec("select", lambda: sorted(repr(side.canon(i)) for i in sel.select(0)))
        side.rec("unregister", sel.unregister, fd)

    run_differential(scenario, kind)


# -- result objects -----------------------------------------------------------------------

def test_select_returns_fresh_lists_of_equal_results(differ):
    """Each select() call returns a new list; its (key, events) tuples are equal from call to
    call and hold the registered key itself."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        key = sel.register(a, W, "a")
        r1, r2 = sel.select(0), sel.select(0)
        side.check("lists differ", r1 is not r2)
        side.check("same key", r1[0][0] is key and r2[0][0] is key)
        side.check("equal", r1 == r2)
        sel.modify(a, W, "new data")
        r3 = sel.select(0)
        side.check("new key after modify", r3[0][0] is sel.get_key(a) and r3[0][0].data)

    differ(scenario)


# README "Known differences": rselectors builds each (key, events) tuple once per key and
# events value and hands the same tuple out again while the key is unchanged; the stdlib
# builds new ones on every call. Tuples are immutable, so only `is` can tell.
def test_select_reuses_result_tuples_while_the_key_is_unchanged(rselectors, kind):
    sel = selector_class(rselectors, kind)()
    a, b = socket.socketpair()
    try:
        sel.register(a, W, "a")
        r1, r2 = sel.select(0), sel.select(0)
        assert r1[0] is r2[0]
        sel.modify(a, W, "other")
        r3 = sel.select(0)
        assert r3[0] is not r1[0] and r3[0][0].data == "other"
    finally:
        sel.close()
        a.close()
        b.close()
