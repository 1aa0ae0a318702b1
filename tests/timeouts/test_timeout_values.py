"""The timeout argument of select(), compared with the stdlib: which values each class accepts
and refuses (type and message), how it rounds them, and that a wait is never early nor much
late; odd types (objects with only `__float__` or `__index__`, float and int subclasses
overriding `__mul__` or `__le__`, -nan, 10**400, "1") and tiny timeouts (1e-9, 0.0005) too.
"""

import math
import time
from decimal import Decimal
from fractions import Fraction

import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip
from support.differential import MyInt, rec_select

R, W, RW = 1, 2, 3


@pytest.mark.parametrize("timeout", [0.009, 0.013, 0.026], ids=str)
def test_select_epoll_double_rounding(differ, timeout, ms_switch):
    """EpollSelector rounds up twice (ceil to ms in Python, then again in C): 0.009 s waits
    10 ms. Poll/Select wait at least the timeout. rselectors does the same under its
    millisecond switch (without it, a wait is the timeout to the nanosecond: issue 14,
    test_timeout_precision.py)."""
    ms_switch(True)

    def scenario(side):
        sel = side.selector()
        a, _ = side.socketpair()
        sel.register(a, R, "a")
        if side.kind == "Epoll":
            secs = math.ceil(timeout * 1e3) * 1e-3
            expected = math.ceil(math.ceil(secs * 1e9) / 1e6) / 1e3
        else:
            expected = timeout
        best = None
        for _ in range(3):
            t0 = time.monotonic()
            res = sel.select(timeout)
            elapsed = time.monotonic() - t0
            best = elapsed if best is None else min(best, elapsed)
            side.check("result", res)
        side.check("min elapsed >= expected", best >= expected)
        if not best >= expected:
            side.check("min elapsed (too short)", (round(best, 5), expected))

    differ(scenario)


TIMEOUTS = {
    "None": None,
    "0": 0,
    "0.0": 0.0,
    "-0.0": -0.0,
    "-1": -1,
    "-1e20": -1e20,
    "-inf": float("-inf"),
    "0.01": 0.01,
    "0.0001": 0.0001,
    "True": True,
    "False": False,
    "Fraction": Fraction(1, 100),
    "Decimal": Decimal("0.01"),
    "str-x": "x",
    "bytes": b"1",
    "list": [],
    "complex": 1j,
    "nan": float("nan"),
    "inf": float("inf"),
    "1e9": 1e9,
    "1e10": 1e10,
    "2**40": 2**40,
    "2**63": 2**63,
    "10**30": 10**30,
    "int-max-ms": 2**31 // 1000,
    "int-max-ms+1": 2**31 / 1000,
    "86400": 86400,
    "int-subclass": MyInt(1),
}


@pytest.mark.parametrize("t_id", list(TIMEOUTS), ids=list(TIMEOUTS))
def test_select_timeout_values(differ, t_id):
    """Timeout validation/conversion errors (type + message) with a ready fd (never blocks)."""
    timeout = TIMEOUTS[t_id]

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, W, "a")
        t0 = time.monotonic()
        rec_select(side, sel, "select(%r) with ready fd" % (timeout,), timeout)
        side.check("returned promptly", time.monotonic() - t0 < 2.0)

    differ(scenario)


@pytest.mark.parametrize("t_id", ["nan", "inf", "str-x", "Decimal", "1e10", "2**40", "Fraction"])
def test_select_timeout_values_empty(differ, t_id):
    """Same errors with nothing registered (validated before waiting)."""
    timeout = TIMEOUTS[t_id]
    if t_id == "Fraction":
        timeout = Fraction(1, 50)

    def scenario(side):
        sel = side.selector()
        t0 = time.monotonic()
        side.rec("select(%r) empty" % (timeout,), sel.select, timeout)
        side.check("returned promptly", time.monotonic() - t0 < 2.0)

    differ(scenario)


@pytest.mark.parametrize("timeout", [0.001, 0.01, 0.05, Fraction(1, 20), 0.0995], ids=str)
@pytest.mark.parametrize("registered", [False, True], ids=["empty", "idle-fd"])
def test_select_timeout_never_early(differ, timeout, registered):
    """Nothing ready: [] returned after at least `timeout` seconds, on both modules."""

    def scenario(side):
        sel = side.selector()
        if registered:
            a, _ = side.socketpair()
            sel.register(a, R, "a")
        t0 = time.monotonic()
        try:
            res = sel.select(timeout)
        except TypeError as exc:  # Select rejects Fraction: compared, no timing
            side.check("raised", exc)
            return
        elapsed = time.monotonic() - t0
        side.check("result", res)
        side.check("elapsed >= timeout", elapsed >= timeout)
        side.check("elapsed < 1.5", elapsed < 1.5)
        if not elapsed >= timeout:
            side.check("elapsed (early!)", elapsed)

    differ(scenario)


@pytest.mark.parametrize("timeout", [None, 0, -1, 0.2, True], ids=str)
def test_select_ready_returns_immediately(differ, timeout):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, R, "a")
        b.send(b"x")
        t0 = time.monotonic()
        rec_select(side, sel, "select", timeout)
        side.check("fast", time.monotonic() - t0 < 0.5)

    differ(scenario)


def test_select_zero_timeout_is_nonblocking(differ):
    def scenario(side):
        sel = side.selector()
        a, _ = side.socketpair()
        sel.register(a, R, "a")
        t0 = time.monotonic()
        for t in (0, -1, -0.5, 0.0, False):
            rec_select(side, sel, "select(%r)" % (t,), t)
        side.check("fast", time.monotonic() - t0 < 0.5)

    differ(scenario)


# -- odd types and tiny values ----------------------------------------------------------

class FloatOnly:
    def __float__(self):
        return 0.01

    def __repr__(self):
        return "<FloatOnly>"


class IndexOnly:
    def __index__(self):
        return 0

    def __repr__(self):
        return "<IndexOnly>"


class FloatMul(float):
    """A float whose * returns something odd."""

    def __mul__(self, other):
        return "not a number"

    __rmul__ = __mul__


class IntLe(int):
    """An int whose <= says 'not positive' (so selectors treat it as 0)."""

    def __le__(self, other):
        return True


class FloatSub(float):
    pass


TIMEOUTS_READY = {
    "None": None,
    "-1": -1,
    "0": 0,
    "1e-9": 1e-9,
    "0.0005": 0.0005,
    "1e9": 1e9,
    "nan": float("nan"),
    "-nan": -float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "str-1": "1",
    "Fraction": Fraction(1, 3),
    "Decimal": Decimal("0.5"),
    "Decimal-nan": Decimal("NaN"),
    "10**400": 10**400,
    "-10**400": -(10**400),
    "float-only": FloatOnly(),
    "index-only": IndexOnly(),
    "float-mul": FloatMul(0.5),
    "int-le": IntLe(5),
    "float-subclass": FloatSub(0.25),
    "2**31/1000+": 2**31 / 1000 + 1,
    "2**63/1e9": 2**63 / 1e9,
}


@pytest.mark.parametrize("t_id", list(TIMEOUTS_READY), ids=list(TIMEOUTS_READY))
def test_timeout_odd_values_with_ready_fd(differ, t_id):
    timeout = TIMEOUTS_READY[t_id]

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, W, "a")
        t0 = time.monotonic()
        side.rec("select", lambda: [(k.data, ev) for k, ev in sel.select(timeout)])
        side.check("prompt", time.monotonic() - t0 < 2.0)
        side.rec("select(0) after", lambda: [(k.data, ev) for k, ev in sel.select(0)])

    differ(scenario)


# Exception-only (or short) timeouts on a selector with nothing ready: must not wait long.
# ("int-le" and "float-mul" are left out: SelectSelector passes them to select.select(),
# which waits 5 s and 0.5 s; they are compared above with a ready fd.)
TIMEOUTS_IDLE = ["nan", "-nan", "inf", "str-1", "Decimal-nan", "10**400", "float-only",
                 "index-only", "-inf", "-1", "0"]


@pytest.mark.parametrize("t_id", TIMEOUTS_IDLE)
def test_timeout_odd_values_idle(differ, t_id):
    timeout = TIMEOUTS_READY[t_id]

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, R, "a")
        t0 = time.monotonic()
        side.rec("select", sel.select, timeout)
        side.check("prompt", time.monotonic() - t0 < 1.0)

    differ(scenario)


@pytest.mark.parametrize("timeout", [1e-9, 0.0005, 0.0015, FloatSub(0.003), Decimal("0.002")],
                         ids=str)
def test_tiny_timeouts_never_early(differ, timeout):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, R, "a")
        t0 = time.monotonic()
        try:
            res = sel.select(timeout)
        except Exception as exc:  # noqa: BLE001 - compared
            side.check("raised", exc)
            return
        elapsed = time.monotonic() - t0
        side.check("result", res)
        side.check("not early", elapsed >= float(timeout))
        side.check("not much late", elapsed < 0.5)

    differ(scenario)
