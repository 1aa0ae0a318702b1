"""Reliability 6: leaks.

* Reference counts: after unregister and after close (and after every failing call), the
  refcounts of file objects, data and events objects return to where they were, and their
  weak references die once the test drops them.  Checked on the stdlib too (that run
  validates the test).
* RSS: benches/soak/leak_soak.py at a CI count (200,000 register/unregister cycles and
  200,000 select() calls per class, 10,000 rounds of failing calls, 20,000 selectors
  created and closed); the full million is the script's default (run it by hand).
"""

import gc
import json
import os
import socket
import subprocess
import sys
import weakref

import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip
from support.kinds import KINDS, selector_class

R, W, RW = 1, 2, 3
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOAK = os.path.join(ROOT, "benches", "soak", "leak_soak.py")
CI_COUNT = 200_000


class Data:
    pass


class Events(int):
    pass


class Sock(socket.socket):
    """A socket subclass: weak-referenceable."""


def _pair():
    a, b = socket.socketpair()
    s = Sock(fileno=a.detach())
    return s, b


def _counts(*objs):
    return [sys.getrefcount(o) for o in objs]


@pytest.mark.parametrize("kind", KINDS)
def test_refcounts_after_unregister(module, kind):
    sel = selector_class(module, kind)()
    a, b = _pair()
    data, data2, ev = Data(), Data(), Events(3)
    try:
        before = _counts(a, data, data2, ev)
        for _ in range(50):
            sel.register(a, R, data)
            sel.modify(a, ev, data)        # events change
            sel.modify(a, ev, data2)       # data change
            sel.modify(a, R, data)         # both
            sel.get_key(a)
            b.send(b"x")
            assert len(sel.select(0)) == 1
            a.recv(10)
            list(sel.get_map().items())
            a in sel.get_map()
            sel.unregister(a)
        gc.collect()
        assert _counts(a, data, data2, ev) == before
    finally:
        sel.close()
        a.close()
        b.close()


@pytest.mark.parametrize("kind", KINDS)
def test_refcounts_after_close_and_weakrefs_die(module, kind):
    sel = selector_class(module, kind)()
    a, b = _pair()
    data = Data()
    before = _counts(a, data)
    sel.register(a, RW, data)
    m = sel.get_map()
    assert len(sel.select(0)) == 1
    sel.close()
    del m
    gc.collect()
    assert _counts(a, data) == before
    wa, wd, ws = weakref.ref(a), weakref.ref(data), weakref.ref(sel)
    a.close()
    b.close()
    del a, data, sel
    gc.collect()
    assert wa() is None and wd() is None and ws() is None


@pytest.mark.parametrize("kind", KINDS)
def test_unclosed_selector_with_registrations_is_freed(module, kind):
    """Dropping a selector that still holds keys (never closed) frees them all."""
    a, b = _pair()
    data = Data()
    sel = selector_class(module, kind)()
    sel.register(a, R, data)
    sel.get_map()
    wd, ws = weakref.ref(data), weakref.ref(sel)
    del data, sel
    gc.collect()
    try:
        assert ws() is None and wd() is None
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("kind", KINDS)
def test_refcounts_after_failing_calls(module, kind):
    sel = selector_class(module, kind)()
    a, b = _pair()
    c, d = _pair()
    data, ev_bad, t_bad = Data(), Events(4), Data()
    try:
        sel.register(c, R, "c")
        before = _counts(a, c, data, ev_bad, t_bad)
        for _ in range(50):
            for fn, args in ((sel.register, (a, 0, data)), (sel.register, (a, ev_bad, data)),
                             (sel.register, (c, R, data)),          # already registered
                             (sel.register, ("x", R, data)),
                             (sel.modify, (a, R, data)),            # not registered
                             (sel.unregister, (a,)), (sel.get_key, (a,)),
                             (sel.select, (t_bad,)),
                             (sel.get_map().__getitem__, (a,))):
                try:
                    fn(*args)
                except (KeyError, ValueError, TypeError):
                    pass
        del fn, args
        if kind != "Select":
            # Epoll/Poll hand events to the OS unvalidated; a failing modify on a closed fd
            b2 = socket.socket(fileno=os.dup(b.fileno()))
            sel.register(b2, R, data)
            b2.close()
            try:
                sel.modify(b2, W, data)
            except (OSError, ValueError, KeyError):
                pass
            try:
                sel.unregister(b2)
            except (KeyError, ValueError):
                pass
        gc.collect()
        assert _counts(a, c, data, ev_bad, t_bad) == before
    finally:
        sel.close()
        for s in (a, b, c, d):
            s.close()


@pytest.mark.slow
def test_rss_flat_ci_count():
    r = subprocess.run([sys.executable, SOAK, "-n", str(CI_COUNT), "--json"], capture_output=True,
                       text=True, timeout=240)
    assert r.stdout, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    lines = []
    for kind, phases in report["kinds"].items():
        for name, ph in phases.items():
            lines.append("%s %s n=%d delta=%+d bytes (%.2fs)" % (kind, name, ph["n"], ph["delta"],
                                                                 ph["seconds"]))
    print("\n" + "\n".join(lines))
    assert report["flat"], "\n".join(lines)
    assert r.returncode == 0
