"""Reliability 5: scale.

In a subprocess (so the raised limit and the ~20,000 fds never touch the test process): raise
the soft RLIMIT_NOFILE to the hard one, open as many socket pairs as it allows (~9,900 pairs
with a hard limit of 20,000; 65,000 fds where the limits allow), register one end of each,
make every one readable, and check that a single select() call reports them all (Epoll and
Poll; Select is limited to FD_SETSIZE by select(2) itself and must fail exactly as the
stdlib's does).  Also: an fd number at hard-1 (os.dup2), and a selector with zero fds
blocking with a timeout.

The figures reached are printed by the subprocess (run with ``pytest -s`` to see them).
"""

import json
import os
import resource
import sys

import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip
from support.kinds import KINDS, selector_class
from support.reliability import run_python

TARGET_FDS = 65000

SCRIPT = r"""
import json, os, resource, socket, sys, time
modname, kind, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
mod = __import__(modname)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if hard == resource.RLIM_INFINITY:
    hard = target + 100
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, target + 100), hard))
limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
sel = getattr(mod, kind + "Selector")()
in_use = len(os.listdir("/proc/self/fd"))
npairs = min(target, limit - in_use - 40) // 2
pairs = []
t0 = time.monotonic()
for _ in range(npairs):
    pairs.append(socket.socketpair())
t_open = time.monotonic() - t0
keys = {}
t0 = time.monotonic()
for i, (a, b) in enumerate(pairs):
    keys[a.fileno()] = sel.register(a, 1, i)
t_reg = time.monotonic() - t0
before = sel.select(0)
for a, b in pairs:
    b.send(b"x")
t0 = time.monotonic()
ready = sel.select(5)
t_sel = time.monotonic() - t0
ok = (len(ready) == npairs and all(k is keys[k.fd] and ev == 1 for k, ev in ready)
      and sorted(k.data for k, _ in ready) == list(range(npairs)))
# an fd number at the very top of the limit
top = limit - 1
os.dup2(pairs[0][0].fileno(), top)
try:
    ktop = sel.register(top, 1, "top")
    again = sel.select(0)
    top_ok = sum(1 for k, ev in again if k is ktop and ev == 1) == 1 and len(again) == npairs + 1
    sel.unregister(top)
except Exception as exc:
    top_ok = None
    ktop = "%s: %s" % (type(exc).__name__, exc)
os.close(top)
t0 = time.monotonic()
for a, _ in pairs:
    sel.unregister(a)
t_unreg = time.monotonic() - t0
left = len(sel.get_map())
sel.close()
for a, b in pairs:
    a.close(); b.close()
print(json.dumps(dict(module=modname, kind=kind, hard=hard, soft=limit, pairs=npairs,
                      fds_open=npairs * 2 + in_use, before=len(before), ready=len(ready),
                      all_ready_ok=ok, top_fd=top, top_ok=top_ok, top_detail=repr(ktop),
                      left=left, t_open=round(t_open, 3), t_register=round(t_reg, 3),
                      t_select=round(t_sel, 4), t_unregister=round(t_unreg, 3))))
"""


def _run(modname, kind):
    r = run_python(SCRIPT, modname, kind, str(TARGET_FDS), timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["Epoll", "Poll"])
def test_all_fds_ready_in_one_call(kind):
    res = _run("rselectors", kind)
    print("\nscale", json.dumps(res))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    expected_pairs = (min(hard, TARGET_FDS + 100) - 100) // 2
    assert res["pairs"] >= expected_pairs - 50, res  # as many as the limit allows
    assert res["before"] == 0
    assert res["ready"] == res["pairs"] and res["all_ready_ok"], res
    assert res["top_ok"] is True, res
    assert res["left"] == 0
    assert res["t_select"] < 2.0


SELECT_SCRIPT = r"""
import os, resource, socket, sys
mod = __import__(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
a, b = socket.socketpair()
out = []
for fd in (1023, 1024, 4096, hard - 1):
    os.dup2(a.fileno(), fd)
    sel = mod.SelectSelector()
    try:
        k = sel.register(fd, 1, "x")
        out.append(("register", fd, "ok"))
    except Exception as exc:
        out.append(("register", fd, type(exc).__name__, str(exc)))
    b.send(b"x")
    try:
        out.append(("select", fd, [(kk.fd, ev) for kk, ev in sel.select(0)]))
    except Exception as exc:
        out.append(("select", fd, type(exc).__name__, str(exc)))
    a.recv(10)
    sel.close()
    os.close(fd)
print(repr(out))
"""


def test_select_selector_beyond_fd_setsize_like_stdlib():
    outs = {}
    for modname in ("selectors", "rselectors"):
        r = run_python(SELECT_SCRIPT, modname, timeout=60)
        assert r.returncode == 0, r.stderr
        outs[modname] = r.stdout
    assert outs["rselectors"] == outs["selectors"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("timeout", [0.05, 0.2])
def test_zero_fds_blocks_for_the_timeout(kind, timeout):
    import time

    sel = selector_class(rselectors, kind)()
    try:
        t0 = time.monotonic()
        assert sel.select(timeout) == []
        elapsed = time.monotonic() - t0
    finally:
        sel.close()
    assert timeout <= elapsed < timeout + 0.25, elapsed


def test_scale_stdlib_reference():
    """The same run on the stdlib's EpollSelector (validates the scenario, gives a
    reference time for the single select() call)."""
    res = _run("selectors", "Epoll")
    print("\nscale", json.dumps(res))
    assert res["ready"] == res["pairs"] and res["all_ready_ok"] and res["top_ok"] is True


if sys.platform != "linux" or not os.path.exists("/proc/self/fd"):  # pragma: no cover
    pytestmark = pytest.mark.skip("Linux only")
