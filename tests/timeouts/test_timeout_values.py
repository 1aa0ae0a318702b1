"""The timeout argument of select(), compared with the stdlib: which values each class accepts
and refuses (type and message), how it rounds them, and that a wait is never early nor much
late. One table of values (TIMEOUTS), odd types among them (objects with only `__float__` or
`__index__`, float and int subclasses overriding `__mul__` or `__le__`, -nan, 10**400, "1"),
and one list of waits (WAITS, down to 1e-9).
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


TIMEOUTS = {
    "None": None,
    "0": 0,
    "0.0": 0.0,
    "-0.0": -0.0,
    "-1": -1,
    "-1e20": -1e20,
    "-inf": float("-inf"),
    "1e-9": 1e-9,
    "0.0005": 0.0005,
    "0.01": 0.01,
    "0.0001": 0.0001,
    "True": True,
    "False": False,
    "Fraction": Fraction(1, 100),
    "Decimal": Decimal("0.01"),
    "Decimal-nan": Decimal("NaN"),
    "str-x": "x",
    "str-1": "1",
    "bytes": b"1",
    "list": [],
    "complex": 1j,
    "nan": float("nan"),
    "-nan": -float("nan"),
    "inf": float("inf"),
    "1e9": 1e9,
    "1e10": 1e10,
    "2**40": 2**40,
    "2**63": 2**63,
    "2**63/1e9": 2**63 / 1e9,
    "10**30": 10**30,
    "10**400": 10**400,
    "-10**400": -(10**400),
    "int-max-ms": 2**31 // 1000,
    "int-max-ms+1": 2**31 / 1000,
    "2**31/1000+": 2**31 / 1000 + 1,
    "86400": 86400,
    "int-subclass": MyInt(1),
    "float-only": FloatOnly(),
    "index-only": IndexOnly(),
    "float-mul": FloatMul(0.5),
    "int-le": IntLe(5),
    "float-subclass": FloatSub(0.25),
}


@pytest.mark.parametrize("t_id", list(TIMEOUTS), ids=list(TIMEOUTS))
def test_select_timeout_values(differ, t_id):
    """Every value with an fd ready (never blocks): the result, or the error (type and
    message) of its validation or conversion, and the selector still usable after."""
    timeout = TIMEOUTS[t_id]

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, W, "a")
        t0 = time.monotonic()
        rec_select(side, sel, "select(%r) with ready fd" % (timeout,), timeout)
        side.check("returned promptly", time.monotonic() - t0 < 2.0)
        rec_select(side, sel, "select(0) after")

    differ(scenario)


# The values that fail, or return at once, with nothing ready: validated before any wait.
# (Not "int-le" and "float-mul": SelectSelector passes them to select.select(), which waits
# 5 s and 0.5 s; they are compared above with an fd ready.)
NOTHING_READY = ["nan", "-nan", "inf", "-inf", "str-x", "str-1", "Decimal", "Decimal-nan",
                 "1e10", "2**40", "10**400", "float-only", "index-only", "-1", "0"]


@pytest.mark.parametrize("t_id", NOTHING_READY)
@pytest.mark.parametrize("registered", [False, True], ids=["empty", "idle-fd"])
def test_select_timeout_values_nothing_ready(differ, t_id, registered):
    timeout = TIMEOUTS[t_id]

    def scenario(side):
        sel = side.selector()
        if registered:
            a, _ = side.socketpair()
            sel.register(a, R, "a")
        t0 = time.monotonic()
        side.rec("select(%r)" % (timeout,), sel.select, timeout)
        side.check("returned promptly", time.monotonic() - t0 < 2.0)

    differ(scenario)


WAITS = [1e-9, 0.0005, 0.001, 0.0015, FloatSub(0.003), Decimal("0.002"), Fraction(1, 50), 0.01,
         0.05, Fraction(1, 20), 0.0995]


@pytest.mark.parametrize("timeout", WAITS, ids=str)
@pytest.mark.parametrize("registered", [False, True], ids=["empty", "idle-fd"])
def test_select_timeout_never_early(differ, timeout, registered):
    """Nothing ready: [] returned after at least `timeout` seconds, on both modules (or the
    same error: Select refuses a Fraction, Epoll and Poll a Decimal)."""

    def scenario(side):
        sel = side.selector()
        if registered:
            a, _ = side.socketpair()
            sel.register(a, R, "a")
        t0 = time.monotonic()
        try:
            res = sel.select(timeout)
        except Exception as exc:  # noqa: BLE001 - compared
            side.check("raised", exc)
            return
        elapsed = time.monotonic() - t0
        side.check("result", res)
        side.check("elapsed >= timeout", elapsed >= float(timeout))
        side.check("elapsed < 1.5", elapsed < 1.5)
        if not elapsed >= float(timeout):
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
