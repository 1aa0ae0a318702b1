"""Reliability 4: signals during a long select() in the main thread.

SIGALRM and SIGINT (sent by another thread with os.kill, or by setitimer), with a raising
handler (propagated promptly, also out of select(None)), a benign one (the timeout kept:
never early, never much late), the default SIGINT handler (KeyboardInterrupt), signal storms
(a signal every millisecond: an implementation that restarts the wait with the full timeout
after EINTR would never return), a handler that makes the fd ready, signals while a worker
thread selects, and Ctrl-C on a program run through ``python -m rselectors`` compared with
the same program on plain python and the stdlib.

Every test runs on both modules (the stdlib run validates the test).
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip
from support.kinds import KINDS, selector_class

R = 1
LATE = 0.25  # "never much late": at most this many seconds past the timeout


class Boom(Exception):
    pass


@pytest.fixture
def handlers():
    """Install handlers for the test; restore the old ones, stop timers afterwards."""
    assert threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGALRM)}
    try:
        yield signal.signal
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        for s, h in saved.items():
            signal.signal(s, h)


def _kill_later(delay, signum, repeat=1, interval=0.0):
    """A thread sending `signum` to this process after `delay`, `repeat` times."""
    stop = threading.Event()

    def run():
        if stop.wait(delay):
            return
        for _ in range(repeat):
            os.kill(os.getpid(), signum)
            if stop.wait(interval):
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return stop, t


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sig", ["SIGINT", "SIGALRM"])
@pytest.mark.parametrize("timeout", [5, None], ids=["t5", "tNone"])
@pytest.mark.parametrize("registered", [True, False], ids=["idle-fd", "empty"])
def test_raising_handler_propagates_promptly(module, kind, sig, timeout, registered, handlers):
    signum = getattr(signal, sig)

    def handler(s, frame):
        raise Boom(sig)

    handlers(signum, handler)
    sel = selector_class(module, kind)()
    a, b = socket.socketpair()
    if registered:
        sel.register(a, R, "a")
    stop, t = _kill_later(0.05, signum)
    # An infinite wait on an idle fd: should the signal be lost, making the fd readable ends
    # it, and the test fails instead of hanging.
    watchdog = threading.Timer(3.0, b.send, (b"!",)) if registered and timeout is None else None
    if watchdog is not None:
        watchdog.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(Boom, match=sig):
            sel.select(timeout)
        elapsed = time.monotonic() - t0
        assert elapsed < 0.05 + LATE, "exception propagated after %.3fs" % elapsed
        assert sel.select(0) == []  # still usable
    finally:
        stop.set()
        t.join(2)
        if watchdog is not None:
            watchdog.cancel()
        sel.close()
        a.close()
        b.close()


@pytest.mark.parametrize("kind", KINDS)
def test_default_sigint_handler_raises_keyboardinterrupt(module, kind, handlers):
    handlers(signal.SIGINT, signal.default_int_handler)
    sel = selector_class(module, kind)()
    stop, t = _kill_later(0.05, signal.SIGINT)
    try:
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            sel.select(5)
        assert time.monotonic() - t0 < 0.05 + LATE
    finally:
        stop.set()
        t.join(2)
        sel.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sig", ["SIGINT", "SIGALRM"])
@pytest.mark.parametrize("registered", [True, False], ids=["idle-fd", "empty"])
def test_benign_handler_keeps_timeout(module, kind, sig, registered, handlers):
    """A handler that does not raise, run every 30 ms during select(0.3): [] after >= 0.3 s
    and < 0.3 s + LATE."""
    signum = getattr(signal, sig)
    hits = []
    handlers(signum, lambda s, f: hits.append(s))
    sel = selector_class(module, kind)()
    a, b = socket.socketpair()
    if registered:
        sel.register(a, R, "a")
    stop, t = _kill_later(0.03, signum, repeat=8, interval=0.03)
    try:
        t0 = time.monotonic()
        result = sel.select(0.3)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        t.join(2)
        sel.close()
        a.close()
        b.close()
    assert result == []
    assert elapsed >= 0.3, "returned early (%.4fs)" % elapsed
    assert elapsed < 0.3 + LATE, "much late (%.4fs)" % elapsed
    assert len(hits) >= 3


@pytest.mark.parametrize("kind", KINDS)
def test_signal_storm_timeout_still_expires(module, kind, handlers):
    """SIGALRM every millisecond during select(0.25): the remaining time must shrink with
    every retry; the call returns [] in [0.25, 0.25 + LATE]."""
    hits = [0]

    def handler(s, f):
        hits[0] += 1

    handlers(signal.SIGALRM, handler)
    sel = selector_class(module, kind)()
    a, b = socket.socketpair()
    sel.register(a, R, "a")
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        t0 = time.monotonic()
        result = sel.select(0.25)
        elapsed = time.monotonic() - t0
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        sel.close()
        a.close()
        b.close()
    assert result == []
    assert 0.25 <= elapsed < 0.25 + LATE, elapsed
    assert hits[0] >= 20


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("nth", [1, 10], ids=["first-signal", "10th-signal"])
def test_handler_makes_fd_ready(module, kind, nth, handlers):
    """The handler of the first signal, or of the 10th of a storm, makes the fd ready: the
    interrupted select() reports it at once, with its key."""
    a, b = socket.socketpair()
    count = [0]

    def handler(s, f):
        count[0] += 1
        if count[0] == nth:
            b.send(b"x")

    handlers(signal.SIGALRM, handler)
    sel = selector_class(module, kind)()
    key = sel.register(a, R, "a")
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
        t0 = time.monotonic()
        result = sel.select(3)
        elapsed = time.monotonic() - t0
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        sel.close()
        a.close()
        b.close()
    assert result == [(key, R)] and result[0][0] is key
    assert elapsed < 1.0


# -- Ctrl-C through the runner ------------------------------------------------------------

PROGRAM = r"""
import selectors, socket, sys
sel = selectors.{cls}()
a, b = socket.socketpair()
sel.register(a, selectors.EVENT_READ, "a")
print(selectors.__name__, type(sel).__module__, flush=True)
sel.select(5)
print("select returned", flush=True)
"""


def _sigint_default():
    """In the child before exec: SIGINT back to its default, so that Python installs its
    KeyboardInterrupt handler even when this run inherited SIGINT ignored (a job started in
    the background by a non-interactive shell, `bash .ci/run &`, has it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ctrl_c(argv, timeout=10):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=os.path.dirname(os.path.abspath(__file__)),
                         preexec_fn=_sigint_default)
    try:
        first = p.stdout.readline()  # the program is about to block in select(5)
        time.sleep(0.2)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=timeout)
        elapsed = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    return first, out, err, p.returncode, elapsed


@pytest.mark.parametrize("cls", ["DefaultSelector", "PollSelector", "SelectSelector"])
def test_ctrl_c_reaches_program_through_runner(cls):
    code = PROGRAM.format(cls=cls)
    rs = _ctrl_c([sys.executable, "-m", "rselectors", "-c", code])
    std = _ctrl_c([sys.executable, "-c", code])
    for name, (first, out, err, rc, elapsed) in (("stdlib", std), ("rselectors", rs)):
        assert elapsed < 2.0, (name, elapsed)
        assert out == "", (name, out)  # select() never returned normally
        lines = err.strip().splitlines()
        assert lines[0] == "Traceback (most recent call last):", (name, err)
        assert lines[-1] == "KeyboardInterrupt", (name, err)
    assert std[0].split()[0] == "selectors"
    assert rs[0].split()[0] == "rselectors", rs[0]
    assert rs[3] == std[3], "exit code %r vs plain python %r" % (rs[3], std[3])
    assert std[3] == -signal.SIGINT  # CPython re-raises SIGINT to die of it
    # The traceback reads as with plain python: the program's own frames, and no frame of
    # the runner (runpy, rselectors/_runner.py; the runner drops them for an Exception,
    # see runner/test_python_m_rselectors.py) -- only the stdlib's selectors.py frame has no rselectors
    # counterpart (select() is native code there).
    def frames(err):
        return [ln.strip() for ln in err.splitlines() if ln.startswith('  File "')]

    std_frames = [f for f in frames(std[2]) if "selectors.py" not in f]
    assert std_frames == ['File "<string>", line 7, in <module>']
    assert frames(rs[2]) == std_frames, rs[2]


@pytest.mark.parametrize("kind", KINDS)
def test_signals_while_worker_thread_selects(module, kind, handlers):
    """A worker thread in select(0.3) while a storm of SIGALRM hits the process (the kernel
    may deliver it to the worker, interrupting its wait; the handler itself only runs in the
    main thread): the worker neither raises nor returns early nor much late, and the main
    thread's raising handler raises in the main thread only."""
    import threading

    hits = [0]

    def handler(s, f):
        hits[0] += 1
        if hits[0] == 5:
            raise Boom("main")

    handlers(signal.SIGALRM, handler)
    sel = selector_class(module, kind)()
    a, b = socket.socketpair()
    sel.register(a, R, "a")
    out = {}

    def worker():
        t0 = time.monotonic()
        try:
            out["result"] = sel.select(0.3)
        except BaseException as exc:  # noqa: BLE001
            out["exc"] = exc
        out["elapsed"] = time.monotonic() - t0

    th = threading.Thread(target=worker, daemon=True)
    raised = None
    try:
        # The thread starts before the storm, so the handler's one Boom (the 5th signal, about
        # 10 ms in) cannot interrupt Thread.start(); everything the main thread does while the
        # storm lasts is inside the try, so wherever the Boom lands it is caught.
        th.start()
        deadline = time.monotonic() + 5
        signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
        # Poll a plain dict, not th.is_alive()/join(): in CPython 3.11 an exception raised by
        # a signal handler inside Thread._wait_for_tstate_lock can mark a running thread as
        # stopped (it releases the thread's lock), on both modules alike.
        while True:
            try:
                if "elapsed" in out or time.monotonic() >= deadline:
                    break
                time.sleep(0.001)
            except Boom as exc:
                raised = exc
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        th.join(3)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        sel.close()
        a.close()
        b.close()
    assert not th.is_alive()
    assert "exc" not in out, out
    assert out["result"] == []
    assert 0.3 <= out["elapsed"] < 0.3 + LATE, out["elapsed"]
    assert isinstance(raised, Boom)
