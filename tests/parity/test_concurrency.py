"""Threads: run on both modules (the stdlib run validates the test itself). Signals during a
select() are reliability/test_signals.py's.

Every wait is bounded: threads are joined with a timeout and asserted finished,
blocking selects are guarded by a watchdog that makes a registered fd readable.
"""

import re
import threading
import time

import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip
from support.kinds import selector_class, skip_stdlib_select_without_gil

R, W, RW = 1, 2, 3


class BgThread:
    """Run fn in a daemon thread, capturing its return value or exception."""

    def __init__(self, fn, *args):
        self.value = None
        self.exc = None
        self.started = threading.Event()
        self.elapsed = None

        def target():
            self.started.set()
            t0 = time.monotonic()
            try:
                self.value = fn(*args)
            except BaseException as exc:  # noqa: BLE001
                self.exc = exc
            finally:
                self.elapsed = time.monotonic() - t0

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        assert self.started.wait(5)

    def join(self, timeout):
        self.thread.join(timeout)
        return not self.thread.is_alive()


class Watchdog:
    """After `delay` seconds, send a byte on `sock` (unblocks a select waiting for its peer)."""

    def __init__(self, sock, delay):
        self.timer = threading.Timer(delay, self._fire, args=(sock,))
        self.fired = False
        self.timer.daemon = True
        self.timer.start()

    def _fire(self, sock):
        self.fired = True
        try:
            sock.send(b"!")
        except OSError:
            pass

    def cancel(self):
        self.timer.cancel()


# ---------------------------------------------------------------------------
# 9. threads
# ---------------------------------------------------------------------------


def test_epoll_sees_registration_during_select(module, socketpair, closer):
    """A thread blocked in EpollSelector.select(2) sees a registration made meanwhile."""
    sel = closer(module.EpollSelector())
    a, b = socketpair()
    bg = BgThread(sel.select, 2)
    time.sleep(0.1)  # let it block in epoll_wait
    key = sel.register(a, R, "a")
    b.send(b"x")
    assert bg.join(3), "select() thread did not finish"
    assert bg.exc is None, repr(bg.exc)
    assert bg.elapsed < 1.0, "blocked select did not see the new registration (%.3fs)" % bg.elapsed
    assert bg.value == [(key, R)]
    assert bg.value[0][0] is key


def test_epoll_sees_modify_during_select(module, socketpair, closer):
    sel = closer(module.EpollSelector())
    a, b = socketpair()
    old_key = sel.register(a, R, "a")  # never readable: nothing is sent
    bg = BgThread(sel.select, 2)
    time.sleep(0.1)
    key = sel.modify(a, RW, "a2")  # now writable
    assert bg.join(3), "select() thread did not finish"
    assert bg.exc is None, repr(bg.exc)
    assert bg.elapsed < 1.0, "blocked select did not see the modify (%.3fs)" % bg.elapsed
    # The stdlib updates the kernel before its map, so the woken thread may
    # still see the old key (mask W & R == 0): accept either consistent pair.
    assert len(bg.value) == 1
    rkey, mask = bg.value[0]
    assert (rkey is key and mask == W) or (rkey is old_key and mask == 0), bg.value


def test_epoll_unregister_during_select_none(module, socketpair, closer):
    """select(None) blocked; another thread unregisters a and registers a ready c."""
    sel = closer(module.EpollSelector())
    a, b = socketpair()
    c, d = socketpair()
    sel.register(a, R, "a")
    bg = BgThread(sel.select, None)
    dog = Watchdog(b, 3.0)
    try:
        time.sleep(0.1)
        sel.unregister(a)
        key = sel.register(c, W, "c")
        assert bg.join(4), "select(None) thread did not finish"
    finally:
        dog.cancel()
    assert not dog.fired
    assert bg.exc is None, repr(bg.exc)
    assert bg.value == [(key, W)]


WORKERS = 3  # threads at once in the tests below: in parallel where there is no GIL
# What iterating the map while other threads change it may raise, as a dict's items() does:
# the dict iterator's errors, or a key gone between the iteration and its lookup.
MAP_CHANGED = {"dictionary changed size during iteration",
               "dictionary keys changed during iteration"}


def _in_parallel(fn, n=WORKERS, timeout=10):
    """Run fn(i) in n threads at once; return their outcomes (None, or the exception)."""
    go = threading.Event()

    def worker(i):
        assert go.wait(5)
        return fn(i)

    bgs = [BgThread(worker, i) for i in range(n)]
    go.set()
    deadline = time.monotonic() + timeout
    finished = [bg.join(max(0.0, deadline - time.monotonic())) for bg in bgs]
    assert all(finished), "a worker thread did not finish: deadlock?"
    return [bg.exc for bg in bgs]


def test_operations_while_select_blocked(kind, module, socketpair, closer):
    """WORKERS threads at once register/modify/unregister/get_key/get_map, each its own socket,
    while another thread loops in select(): no exception (no "Already borrowed"), no
    deadlock. (Iterating the map while others change it may raise what a dict does.)"""
    skip_stdlib_select_without_gil(module, kind)
    sel = closer(selector_class(module, kind)())
    socks = [socketpair()[0] for _ in range(WORKERS)]
    c, d = socketpair()
    sel.register(c, R, "idle")  # never ready
    stop = threading.Event()
    loops = [0]

    def selecter():
        while not stop.is_set():
            sel.select(0.02)
            loops[0] += 1

    def work(i):
        a = socks[i]
        t0 = time.monotonic()
        for n in range(300):
            k = sel.register(a, R, n)
            assert sel.get_key(a) is k
            k = sel.modify(a, W, n)
            k = sel.modify(a, RW, ("x", n))
            assert sel.get_key(a.fileno()) is k
            assert 2 <= len(sel.get_map()) <= 1 + WORKERS
            try:
                list(sel.get_map().items())
            except RuntimeError as exc:
                assert str(exc) in MAP_CHANGED, exc
            except KeyError as exc:
                assert re.fullmatch(r"'\d+ is not registered'", str(exc)), exc
            assert sel.unregister(a) is k
            if time.monotonic() - t0 > 5:
                break

    bg = BgThread(selecter)
    try:
        errors = _in_parallel(work)
    finally:
        stop.set()
    assert bg.join(3), "select() thread did not finish"
    assert errors == [None] * WORKERS
    assert bg.exc is None, repr(bg.exc)
    assert loops[0] >= 1


def test_get_key_hammering_while_select_blocked(kind, module, socketpair, closer):
    """WORKERS threads at once make many read-only calls while a thread sits in a long
    select()."""
    sel = closer(selector_class(module, kind)())
    a, b = socketpair()
    key = sel.register(a, R, "a")
    bg = BgThread(sel.select, 1.0)
    dog = Watchdog(b, 3.0)

    def hammer(_):
        for _ in range(500):
            assert sel.get_key(a) is key
            assert a in sel.get_map()
            assert sel.get_map()[a.fileno()] is key
            assert len(sel.get_map()) == 1

    try:
        time.sleep(0.05)
        errors = _in_parallel(hammer)
        b.send(b"x")
        assert bg.join(3), "select() thread did not finish"
    finally:
        dog.cancel()
    assert errors == [None] * WORKERS
    assert bg.exc is None, repr(bg.exc)
    assert bg.value == [(key, R)]


POLL_CONCURRENT = (RuntimeError, "concurrent poll() invocation")


@pytest.mark.parametrize("waiters", [1, 2], ids=["1-waiter", "2-waiters"])
def test_close_while_select_blocked(kind, module, socketpair, waiters):
    """close() from another thread while one or two threads are blocked in select(None) on an
    idle fd: close() returns promptly, without an exception; once the fd is made ready every
    blocked select() returns [] (no key survives close()) and the map is gone. PollSelector
    allows one select() at a time: its second waiter gets the stdlib's RuntimeError at once."""
    if kind == "Kqueue" and module.__name__ != "rselectors":
        # README "KqueueSelector on libkqueue": rselectors keeps the fd until its waits end,
        # so its side of this test runs; the stdlib's closes it under the waiting thread.
        pytest.skip("libkqueue: closing a kqueue while another thread waits in kevent() "
                    "leaves that thread blocked for good, where a BSD kernel wakes it")
    sel = selector_class(module, kind)()
    a, b = socketpair()
    sel.register(a, R, "a")
    bgs = [BgThread(sel.select, None) for _ in range(waiters)]
    dog = Watchdog(b, 4.0)  # makes `a` readable if nothing else ends the waits
    try:
        time.sleep(0.1)
        t0 = time.monotonic()
        closer_thread = BgThread(sel.close)
        closed_promptly = closer_thread.join(1.0)
        close_seconds = time.monotonic() - t0
        b.send(b"x")  # wake the blocked selects
        for bg in bgs:
            assert bg.join(3), "a select(None) thread did not finish after the fd became ready"
        assert closer_thread.join(3), "close() never returned"
    finally:
        dog.cancel()
        sel.close()
    assert closed_promptly and close_seconds < 1.0, \
        "close() blocked while another thread was in select() (%.3fs)" % close_seconds
    assert closer_thread.exc is None, repr(closer_thread.exc)
    outcomes = sorted(("ok", repr(bg.value)) if bg.exc is None
                      else ("raise", type(bg.exc), str(bg.exc)) for bg in bgs)
    expected = [("ok", "[]")] * waiters
    if kind == "Poll" and waiters == 2:
        expected = [("ok", "[]"), ("raise",) + POLL_CONCURRENT]
    assert outcomes == expected
    assert sel.get_map() is None


def test_two_selectors_two_threads(kind, module, socketpair, closer):
    """Independent selectors in independent threads don't serialize each other."""
    s1 = closer(selector_class(module, kind)())
    s2 = closer(selector_class(module, kind)())
    a, b = socketpair()
    c, d = socketpair()
    s1.register(a, R)
    s2.register(c, R)
    t1 = BgThread(s1.select, 1.5)
    t2 = BgThread(s2.select, 1.5)
    time.sleep(0.05)
    d.send(b"x")
    assert t2.join(2)
    assert t2.elapsed < 1.0, "select on s2 was blocked by select on s1 (GIL/lock held?)"
    b.send(b"x")
    assert t1.join(2)
    assert t1.exc is None and t2.exc is None
    assert len(t1.value) == 1 and len(t2.value) == 1


def test_gil_released_during_select(kind, module, socketpair, closer):
    """While one thread waits in select(0.3), the main thread keeps running Python code."""
    sel = closer(selector_class(module, kind)())
    a, b = socketpair()
    sel.register(a, R)
    bg = BgThread(sel.select, 0.3)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 0.2:
        n += 1
    assert bg.join(3)
    assert bg.exc is None and bg.value == []
    assert n > 1000


def test_concurrent_select_calls(kind, module, socketpair, closer):
    """A second select() while one is in progress: PollSelector raises
    RuntimeError("concurrent poll() invocation"); Epoll/Select both wait."""
    sel = closer(selector_class(module, kind)())
    a, b = socketpair()
    sel.register(a, R)
    bg = BgThread(sel.select, 0.5)
    time.sleep(0.1)
    t0 = time.monotonic()
    try:
        result = ("ok", sel.select(0.05))
    except Exception as exc:  # noqa: BLE001
        result = ("raise", type(exc).__name__, str(exc))
    elapsed = time.monotonic() - t0
    assert bg.join(3)
    assert bg.exc is None, repr(bg.exc)
    if kind == "Poll":
        assert result == ("raise", "RuntimeError", "concurrent poll() invocation")
    else:
        assert result == ("ok", [])
        assert elapsed >= 0.05


# ---------------------------------------------------------------------------
# re-entrancy: user code (__del__, __ne__, fileno, __and__) calling back into the
# selector from inside an operation must not deadlock or raise "Already borrowed".
# ---------------------------------------------------------------------------


def _run_guarded(fn, timeout=5.0):
    """Run fn in a thread; return its outcome, or "DEADLOCK" if it does not finish."""
    bg = BgThread(fn)
    if not bg.join(timeout):
        return "DEADLOCK"
    if bg.exc is not None:
        return ("raise", type(bg.exc).__name__, str(bg.exc))
    return ("ok", bg.value)


def _probe_factory(sel, log, a, c):
    def probe(tag):
        for name, fn in (
            ("len", lambda: len(sel.get_map())),
            ("get_key", lambda: sel.get_key(a).data is not None),
            ("in", lambda: c in sel.get_map()),
        ):
            try:
                log.append((tag, name, "ok", fn()))
            except Exception as exc:  # noqa: BLE001
                log.append((tag, name, "raise", type(exc).__name__))

    return probe


def test_reentrant_callbacks(differ):
    """__del__ of data dropped by modify/unregister, __ne__ of data, fileobj.fileno() all call
    back into the selector: no deadlock, no "Already borrowed", same observations."""
    import gc as _gc

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        c, d = side.socketpair("t")
        log = []
        probe = _probe_factory(sel, log, a, c)

        class DelData:
            def __init__(self, tag):
                self.tag = tag

            def __del__(self):
                probe("del-" + self.tag)
                try:
                    sel.register(d, R, "from-del-" + self.tag)
                    sel.unregister(d)
                    log.append(("del-" + self.tag, "register+unregister", "ok"))
                except Exception as exc:  # noqa: BLE001
                    log.append(("del-" + self.tag, "register+unregister", "raise", type(exc).__name__))

        class NeData:
            def __ne__(self, other):
                probe("ne")
                return True

            __hash__ = object.__hash__

        class FilenoProbe:
            def fileno(self):
                probe("fileno")
                return c.fileno()

        def ops():
            sel.register(a, R, DelData("1"))
            sel.modify(a, R, DelData("2"))  # data-only: drops the key holding DelData("1")
            sel.modify(a, W, NeData())  # events change; then data != old data -> DelData("2") dropped
            sel.modify(a, W, NeData())  # NeData.__ne__ runs
            sel.register(FilenoProbe(), R, "probe")
            b.send(b"x")
            sel.select(0)
            sel.modify(a, R, DelData("3"))
            sel.unregister(a)  # the returned key (DelData("3")) is dropped by the caller
            sel.register(a, R, "plain")
            sel.close()
            _gc.collect()
            return "done"

        side.check("outcome", _run_guarded(ops))
        side.check("log", log)

    differ(scenario)


def test_del_during_close(differ):
    """A data finalizer running while close() drops the keys: what it sees of the selector
    (the stdlib clears the keys first, then sets get_map() to None)."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        c, d = side.socketpair("t")
        log = []
        probe = _probe_factory(sel, log, a, c)

        class DelData:
            def __del__(self):
                probe("del-in-close")

        def ops():
            sel.register(a, R, DelData())
            sel.close()
            return "done"

        side.check("outcome", _run_guarded(ops))
        side.check("log", log)

    differ(scenario)


class _EventsProbe(int):
    """An int subclass whose & records its calls."""

    calls = None

    def __and__(self, other):
        _EventsProbe.calls.append(("and", int(self), other))
        return int(self) & other

    def __rand__(self, other):
        _EventsProbe.calls.append(("rand", int(self), other))
        return other & int(self)


def test_events_int_subclass_operators(differ):
    """events is an int subclass overriding &: the stdlib computes `events & ~3`,
    `events & EVENT_READ`, `events & EVENT_WRITE` and `ready & key.events` with Python
    operators, so the overrides run (same count and arguments expected)."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        _EventsProbe.calls = []
        side.rec("register", sel.register, a, _EventsProbe(RW), "d")
        side.check("calls after register", _EventsProbe.calls)
        _EventsProbe.calls = []
        b.send(b"x")
        side.rec("select", lambda: sel.select(0)[0][1])
        side.check("calls after select", _EventsProbe.calls)
        _EventsProbe.calls = []
        side.rec("modify", sel.modify, a, _EventsProbe(R), "d")
        side.check("calls after modify", _EventsProbe.calls)

    differ(scenario)


_GC_DURING_MODIFY = r"""
import gc, socket, sys, faulthandler
faulthandler.dump_traceback_later(10, exit=True)  # a deadlock holds the GIL: only this helps
import {module} as selectors
sel = selectors.{kind}Selector()
a, b = socket.socketpair()
sel.register(a, selectors.EVENT_READ, None)
seen = []

class Finalized:
    def __del__(self):
        seen.append(sel.get_key(a).events)  # takes the selector's lock

def cycle():
    x, y = Finalized(), Finalized()
    x.other, y.other = y, x

out = []
# Low thresholds and varied padding make a collection (and the cycles' __del__) fall on
# every allocation in turn, including any made inside modify().
for threshold in range(1, 9):
    for data, events in [(2**64, 1), (None, 1), (-2**70, 1), (2**64, 2**70 | 1), (3, 1),
                         (3, 2**70 | 2)]:
        for padding in range(9):
            gc.collect()
            gc.set_threshold(threshold)
            cycle()
            pad = [[] for _ in range(padding)]
            try:
                key = sel.modify(a, events, data)
                out.append(("ok", key.events == events, key.data == data))
            except Exception as exc:
                out.append(("raise", type(exc).__name__))
            gc.set_threshold(700)
gc.collect()
print(repr((out, sorted(set(seen)))))
"""


@pytest.mark.parametrize("kind", ["Epoll", "Poll"])
def test_gc_during_modify_with_huge_ints(kind):
    """modify() compares huge ints (events, data) with the key's: the comparison must not
    raise and allocate an OverflowError under the selector's lock, where a garbage collection
    (run by any allocation on 3.9-3.11) would call a __del__ that takes the same lock."""
    import subprocess
    import sys

    results = {}
    for module in ("selectors", "rselectors"):
        proc = subprocess.run(
            [sys.executable, "-c", _GC_DURING_MODIFY.format(module=module, kind=kind)],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, (module, proc.stderr[-3000:])
        results[module] = proc.stdout
    assert results["rselectors"] == results["selectors"]
    assert "ok" in results["selectors"]
