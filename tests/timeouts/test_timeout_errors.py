"""Timeout arguments the C waits refuse: the same error as the stdlib, with user code called as
often as there, and without opening any fd (issue 9, cases 8 and 9).

Each scenario runs in a child process for the stdlib and for rselectors, and the two outcomes
are compared: the open-file limit is lowered there, which must not leak into this process.
"""

import json
import subprocess
import sys

import pytest

KINDS = ["Epoll", "Poll", "Select"]

AT_EMFILE = r"""
import json, os, resource, sys
mod = __import__(sys.argv[1])
cls = getattr(mod, sys.argv[2] + "Selector")
out = {}
for name, t in [("1e300", 1e300), ("10**10", 10**10), ("10**30", 10**30), ("nan", float("nan"))]:
    sel = cls()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Fill every free fd: any fd the selector opened now would fail with EMFILE.
    held = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    try:
        sel.select(t)
        out[name] = ["ok"]
    except Exception as e:
        out[name] = [type(e).__name__, str(e)]
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        sel.close()
print(json.dumps(out))
"""

INDEX_RAISES_ONCE = r"""
import json, sys
mod = __import__(sys.argv[1])
cls = getattr(mod, sys.argv[2] + "Selector")
calls = []
class T:
    def __init__(self, exc):
        self.exc = exc
    def __index__(self):
        calls.append(1)
        if len(calls) == 1:
            raise self.exc("first call")
        return 1
    def __lt__(self, other): return False
    def __gt__(self, other): return False
    def __le__(self, other): return False
    def __mul__(self, other): return 1.0
out = {}
for exc in (RuntimeError, TypeError):
    calls.clear()
    sel = cls()
    try:
        r = sel.select(T(exc))
        out[exc.__name__] = ["ok", r, len(calls)]
    except Exception as e:
        out[exc.__name__] = [type(e).__name__, str(e), len(calls)]
    sel.close()
print(json.dumps(out))
"""


def _run(script, module, kind):
    proc = subprocess.run(
        [sys.executable, "-c", script, module, kind],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("kind", KINDS)
def test_out_of_range_timeouts_at_the_open_file_limit(kind):
    stdlib = _run(AT_EMFILE, "selectors", kind)
    ours = _run(AT_EMFILE, "rselectors", kind)
    assert ours == stdlib
    # The stdlib's own errors, not EMFILE.
    assert all(outcome[0] in ("OverflowError", "ValueError", "ok") for outcome in stdlib.values())


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_whose_index_raises_on_its_first_call(kind):
    stdlib = _run(INDEX_RAISES_ONCE, "selectors", kind)
    ours = _run(INDEX_RAISES_ONCE, "rselectors", kind)
    assert ours == stdlib


CLOSE_IN_HANDLER = r"""
import json, signal, socket, sys, time
mod = __import__(sys.argv[1])
cls = getattr(mod, sys.argv[2] + "Selector")
timeout = None if sys.argv[3] == "None" else float(sys.argv[3])
sel = cls()
a, b = socket.socketpair()
sel.register(a, mod.EVENT_READ)
signal.signal(signal.SIGALRM, lambda *args: sel.close())
signal.setitimer(signal.ITIMER_REAL, 0.1)
start = time.monotonic()
try:
    out = ["ok", len(sel.select(timeout))]
except OSError as e:
    out = [type(e).__name__, e.errno]
out.append(time.monotonic() - start < 2)
print(json.dumps(out))
"""


@pytest.mark.parametrize("kind,timeout", [
    ("Epoll", "None"), ("Epoll", "0.5"), ("Poll", "0.5"), ("Select", "0.5"),
])
def test_signal_handler_closes_the_selector_during_a_wait(kind, timeout):
    """Issue 9, case 1: it used to wait on (forever, with no timeout)."""
    def run(module):
        proc = subprocess.run(
            [sys.executable, "-c", CLOSE_IN_HANDLER, module, kind, timeout],
            capture_output=True, text=True, timeout=20,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    stdlib, ours = run("selectors"), run("rselectors")
    assert ours == stdlib
    if kind == "Epoll":
        assert stdlib == ["OSError", 9, True]
