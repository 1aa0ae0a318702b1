"""Reliability 3: threads.

Bounded stress: mutator threads register / modify (events, data, both) / unregister on the
socket pairs they own and make them ready or drain them, while selector threads loop in
select() on the same selector; at the end every fd registered and not unregistered must be
reported when made ready, with its last events and data.  A last phase closes the selector
while selector threads are busy in it (a close while idle threads are blocked in select() is
parity/test_concurrency.py's test_close_while_select_blocked).  Each test runs on the stdlib too
(that run validates the test) and the exceptions seen must be the stdlib's: none, except
RuntimeError("concurrent poll() invocation") for PollSelector, which allows one select() at
a time.

Figures: STRESS_SECONDS of stress with MUTATORS mutator threads and SELECTORS selector
threads, on PAIRS socket pairs, for each of Epoll, Poll, Select (rselectors); the stdlib runs
a third of that. Each stress test prints what it did (`pytest -s` shows it); longer runs with
other figures: benches/soak/thread_soak.py (both run support/thread_stress.py).

The last two tests are rselectors' alone, for a build without a GIL: threads contending for
the same fds of one selector, and closing it under them, with invariants instead of the
stdlib as the reference (.ci/run's free-threaded stage runs them on CPython 3.13t).
"""

import os
import random
import socket
import threading
import time

import pytest

import rselectors
from support.kinds import (KINDS, open_fds, selector_class, settle_libkqueue_fds,
                           skip_stdlib_select_without_gil)
from support.reliability import join_all, open_fd_count
from support.thread_stress import drain, run_stress

R, W, RW = 1, 2, 3
STRESS_SECONDS = 3.0
MUTATORS = 2
SELECTORS = 2
PAIRS_PER_MUTATOR = 24


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_thread_stress(module, kind):
    skip_stdlib_select_without_gil(module, kind)
    seconds = STRESS_SECONDS if module.__name__ == "rselectors" else STRESS_SECONDS / 3
    sel = selector_class(module, kind)()
    try:
        report = run_stress(sel, kind, seconds, MUTATORS, SELECTORS, PAIRS_PER_MUTATOR)
    finally:
        sel.close()
    print("stress", module.__name__, report)
    assert not report["problems"], report


@pytest.mark.parametrize("n_waiters", [1, 3])
def test_select_none_woken_by_registration_from_other_thread(module, n_waiters):
    """Threads blocked in EpollSelector.select(None) are woken by an fd another thread
    registers and then makes ready (no watchdog needed: the thread joins in a bound or the
    test fails; a final send unblocks a stuck thread so nothing is leaked)."""
    sel = module.EpollSelector()
    a, b = socket.socketpair()
    idle, idle_peer = socket.socketpair()
    try:
        sel.register(idle, R, "idle")
        results = []

        def waiter():
            results.append((time.monotonic(), sel.select(None)))

        waiters = [threading.Thread(target=waiter, daemon=True) for _ in range(n_waiters)]
        for t in waiters:
            t.start()
        time.sleep(0.2)
        key = {}

        def registrar():
            key["a"] = sel.register(a, R, "late")
            b.send(b"z")

        t0 = time.monotonic()
        th = threading.Thread(target=registrar)
        th.start()
        th.join(2)
        alive = join_all(waiters, 2)
        if alive:
            idle_peer.send(b"!")  # unstick them before failing
            join_all(alive, 2)
        assert not alive, "select(None) not woken by a registration made in another thread"
        for t_done, ready in results:
            assert ready == [(key["a"], R)]
            assert ready[0][0] is key["a"]
            assert t_done - t0 < 1.0
    finally:
        sel.close()
        for s in (a, b, idle, idle_peer):
            s.close()


def _norm(exc):
    """(type, message) with object reprs and numbers blanked, for comparing sets."""
    import re

    msg = re.sub(r"<[^>]*>", "<obj>", str(exc))
    msg = re.sub(r"\d+", "N", msg)
    return (type(exc).__name__, msg)


def _closed_outcomes(module, kind):
    """What each operation raises on a closed selector of the stdlib (the allowed set)."""
    import selectors as std

    allowed = set()
    a, b = socket.socketpair()
    try:
        for setup in ("registered", "unregistered"):
            sel = selector_class(std, kind)()
            if setup == "registered":
                sel.register(a, R, "x")
            sel.close()
            for fn in (lambda: sel.register(a, R, "y"), lambda: sel.unregister(a),
                       lambda: sel.modify(a, W, "z"), lambda: sel.get_key(a),
                       lambda: sel.select(0), lambda: len(sel.get_map())):
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001
                    allowed.add(_norm(exc))
    finally:
        a.close()
        b.close()
    return allowed


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_close_during_stress(module, kind):
    """Mutators and selector loops keep going while a third party closes the selector: every
    exception afterwards is one the stdlib raises for that operation on a closed selector
    (or, for Poll, the concurrent-poll RuntimeError), nothing deadlocks, and get_map() is
    None at the end."""
    skip_stdlib_select_without_gil(module, kind)
    sel = selector_class(module, kind)()
    pairs = []
    errors = []
    stop = threading.Event()

    def mutate(mine, seed):
        rng = random.Random(seed)
        while not stop.is_set():
            a, b = rng.choice(mine)
            op = rng.randrange(5)
            try:
                if op == 0:
                    sel.register(a, rng.choice((R, W, RW)), "d")
                elif op == 1:
                    sel.unregister(a)
                elif op == 2:
                    sel.modify(a, rng.choice((R, W, RW)), "e")
                elif op == 3:
                    sel.get_key(a)
                else:
                    try:
                        b.send(b"x")
                    except BlockingIOError:
                        drain(a)
            except Exception as exc:  # noqa: BLE001
                errors.append(("mutator", exc))

    def loop():
        while not stop.is_set():
            try:
                sel.select(0.01)
            except Exception as exc:  # noqa: BLE001
                errors.append(("select", exc))
                time.sleep(0.001)

    try:
        for _ in range(16):
            a, b = socket.socketpair()
            a.setblocking(False)
            b.setblocking(False)
            pairs.append((a, b))
        threads = [threading.Thread(target=mutate, args=(pairs[i::2], i), daemon=True)
                   for i in range(2)]
        threads += [threading.Thread(target=loop, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        n_before = len(errors)
        closer = threading.Thread(target=sel.close, daemon=True)
        closer.start()
        closer.join(2)
        assert not closer.is_alive(), "close() deadlocked"
        time.sleep(0.3)
        stop.set()
        assert not join_all(threads, 10), "threads deadlocked after close()"
        before_close = {_norm(e) for _, e in errors[:n_before]}
        after_close = {_norm(e) for _, e in errors[n_before:]}
        # before close: only the mutators' own races (none: each owns its pairs) and, for
        # Poll, concurrent polls; KeyErrors of unregister/modify of unregistered pairs
        ok_before = {("RuntimeError", "concurrent poll() invocation")} if kind == "Poll" else set()
        ok_before |= {("KeyError", "'<obj> is not registered'"),
                      ("KeyError", "'<obj> (FD N) is already registered'")}
        assert before_close <= ok_before, before_close - ok_before
        allowed = _closed_outcomes(module, kind) | ok_before
        if kind == "Epoll":
            # the stdlib's race: a call that checked the epoll object was open, then released
            # the GIL for epoll_ctl/epoll_wait on a fd close() has just closed
            allowed.add(("OSError", "[Errno N] Bad file descriptor"))
        assert after_close <= allowed, after_close - allowed
        assert sel.get_map() is None
    finally:
        stop.set()
        sel.close()
        for a, b in pairs:
            a.close()
            b.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_map_iteration_while_other_threads_mutate(module, kind):
    """Threads iterating get_map() (keys, items, values, len, in, []) while others register
    and unregister: only the stdlib's exceptions (the dict iterator's RuntimeErrors, and
    KeyError for a key removed between iteration and lookup), every key yielded is well
    formed, no crash, no deadlock."""
    sel = selector_class(module, kind)()
    pairs = [socket.socketpair() for _ in range(32)]
    stop = threading.Event()
    seen = {}
    bad = []

    def note(exc):
        sig = _norm(exc)
        seen[sig] = seen.get(sig, 0) + 1

    def mutate(mine, seed):
        rng = random.Random(seed)
        registered = set()
        while not stop.is_set():
            a, _ = rng.choice(mine)
            try:
                if a in registered:
                    sel.unregister(a)
                    registered.discard(a)
                else:
                    sel.register(a, R, ("d", a.fileno()))
                    registered.add(a)
            except Exception as exc:  # noqa: BLE001
                bad.append(exc)

    def iterate(seed):
        rng = random.Random(seed)
        m = sel.get_map()
        while not stop.is_set():
            op = rng.randrange(6)
            try:
                if op == 0:
                    for fd in m:
                        assert isinstance(fd, int)
                elif op == 1:
                    for fd, key in m.items():
                        assert key.fd == fd and key.data == ("d", fd), (fd, key)
                elif op == 2:
                    for key in m.values():
                        assert key.data == ("d", key.fd), key
                elif op == 3:
                    len(m)
                else:
                    a, _ = rng.choice(pairs)
                    if op == 4:
                        a in m
                    else:
                        m.get(a)
            except (RuntimeError, KeyError) as exc:
                note(exc)
            except Exception as exc:  # noqa: BLE001
                bad.append(exc)

    threads = [threading.Thread(target=mutate, args=(pairs[i::2], i), daemon=True)
               for i in range(2)]
    threads += [threading.Thread(target=iterate, args=(10 + i,), daemon=True) for i in range(2)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0 if module.__name__ == "rselectors" else 0.5)
        stop.set()
        assert not join_all(threads, 10), "deadlock"
        assert not bad, bad[:5]
        allowed = {("RuntimeError", "dictionary changed size during iteration"),
                   ("RuntimeError", "dictionary keys changed during iteration"),
                   ("KeyError", "'N is not registered'")}
        assert set(seen) <= allowed, set(seen) - allowed
        print("stress", module.__name__, kind, "map-iteration", dict(exceptions=seen))
    finally:
        stop.set()
        sel.close()
        for a, b in pairs:
            a.close()
            b.close()



# ---------------------------------------------------------------------------
# Parallel contention, rselectors only. On a free-threaded interpreter these threads truly run
# at once (.ci/run's free-threaded stage); with a GIL they still interleave at every bytecode
# switch. The stdlib is no reference here: it is not thread-safe (register and unregister are
# check-then-act on its dict), so these tests check invariants instead of comparing.
# ---------------------------------------------------------------------------

# Longer with RSELECTORS_SLOW=1 (.ci/run's free-threaded stage sets it).
_SOAK = os.environ.get("RSELECTORS_SLOW", "") not in ("", "0")
CONTENTION_SECONDS = 2.0 if _SOAK else 0.3
CLOSE_ROUNDS = 30 if _SOAK else 5
QUIET_FDS = 8
CONTENDERS = 3
OPS = ("register", "unregister", "modify", "get_key", "map.get", "in map")
SELECT_LOOPS = 2


class _Shared:
    """A selector shared by every thread of a contention test: a sentinel socket that is always
    readable and writable (a byte waits in it, never read), registered for RW with data
    ("sentinel", generation); and QUIET_FDS pipe read ends nobody writes to, never ready for
    reading or writing, which the contenders register, modify and unregister."""

    def __init__(self, kind):
        self.kind = kind
        # BaseSelector.modify (select, kqueue) is unregister() then register(), through the
        # instance's own methods (the stdlib's contract): others may act between the two.
        # _PollLikeSelector.modify changes the key and the OS registration as one step.
        self.atomic_modify = kind in ("Epoll", "Poll")
        self.sel = selector_class(rselectors, kind)()
        self.sentinel, self.peer = socket.socketpair()
        self.peer.send(b"!")
        self.pipes = [os.pipe() for _ in range(QUIET_FDS)]
        self.quiet = [r for r, _ in self.pipes]
        self.sel.register(self.sentinel, RW, ("sentinel", 0))
        self.go = threading.Event()
        self.stop = threading.Event()
        self.errors = []  # (thread, exception): anything no invariant allows
        self.registered = {fd: 0 for fd in self.quiet}  # successful register() calls
        self.unregistered = {fd: 0 for fd in self.quiet}
        self.counts = {}  # what was done, for the printed summary
        self.count_lock = threading.Lock()

    def close_all(self):
        self.sel.close()
        self.sentinel.close()
        self.peer.close()
        for r, w in self.pipes:
            os.close(r)
            os.close(w)

    def note(self, what, n=1):
        with self.count_lock:
            self.counts[what] = self.counts.get(what, 0) + n

    def run(self, name, fn, *args):
        try:
            # All start together: a thread started while others already spin can wait a long
            # time (most of a second here, without a GIL) to get going.
            assert self.go.wait(10), "never told to go"
            fn(*args)
        except BaseException as exc:  # noqa: BLE001
            self.errors.append((name, exc))

    def contend(self, seed, closed_ok=None):
        """Random register / modify / unregister / get_key / map lookups on the quiet fds, which
        every contender shares. Each outcome must be one a serial run could give (modify() on
        select and kqueue aside: `atomic_modify`): a key that is right for the call, or the
        stdlib's KeyError with the fd in its message. With
        `closed_ok` (a set of (type name, message)), what a closed selector raises ends it."""
        rng = random.Random(seed)
        sel = self.sel
        registered = dict.fromkeys(self.quiet, 0)
        unregistered = dict.fromkeys(self.quiet, 0)
        ops = 0
        try:
            while not self.stop.is_set():
                fd = rng.choice(self.quiet)
                op = rng.choice(OPS)
                ev = rng.choice((R, W, RW))
                data = seed << 32 | ops  # an int: modify() compares it natively (see above)
                ops += 1
                try:
                    if op == "register":
                        key = sel.register(fd, ev, data)
                        assert (key.fileobj, key.fd, key.events) == (fd, fd, ev), key
                        assert key.data is data, key
                        registered[fd] += 1
                    elif op == "unregister":
                        key = sel.unregister(fd)
                        assert key.fileobj == fd and key.fd == fd, key
                        unregistered[fd] += 1
                    elif op == "modify":
                        key = sel.modify(fd, ev, data)
                        assert key.fd == fd and key.events == ev and key.data is data, key
                    elif op == "get_key":
                        assert sel.get_key(fd).fd == fd
                    else:
                        mapping = sel.get_map()
                        if mapping is None and closed_ok is not None:
                            self.note("closed: get_map() is None")
                        elif op == "map.get":
                            key = mapping.get(fd)
                            assert key is None or key.fd == fd, key
                        else:
                            assert fd not in mapping or mapping[fd].fd == fd
                except KeyError as exc:
                    taken = "%d (FD %d) is already registered" % (fd, fd)
                    want = {taken} if op == "register" else {"%d is not registered" % fd}
                    if op == "modify" and not self.atomic_modify:
                        want.add(taken)  # its register() found the fd taken meanwhile
                    if op == "register" and _caused_by(exc, closed_ok):
                        # The OS step met the closed selector, and taking the key back (the
                        # stdlib's `super().unregister(fileobj)`) found another thread's
                        # unregister() had taken it already.
                        want.add("%d is not registered" % fd)
                        self.note("closed: register's undo found no key")
                    assert len(exc.args) == 1 and exc.args[0] in want, (op, exc.args)
                except (RuntimeError, ValueError) as exc:
                    if closed_ok is None or (type(exc).__name__, str(exc)) not in closed_ok:
                        raise
                    self.note("closed: %s" % type(exc).__name__)
                except Exception as exc:  # noqa: BLE001 - none is allowed: say which call
                    raise AssertionError("%s(%d) raised %r" % (op, fd, exc)) from exc
        finally:
            with self.count_lock:
                for fd in self.quiet:
                    self.registered[fd] += registered[fd]
                    self.unregistered[fd] += unregistered[fd]
            self.note("contender ops", ops)

    def bump_sentinel(self):
        """modify() the sentinel's data again and again, its generation growing."""
        generation = 0
        while not self.stop.is_set():
            generation += 1
            key = self.sel.modify(self.sentinel, RW, ("sentinel", generation))
            assert key.data == ("sentinel", generation), key
        self.note("sentinel generations", generation)

    def select_loop(self, closed_ok=None):
        """select() again and again: the sentinel, always ready, must be in every result, alone
        (a quiet fd there is a false readiness), with a generation never older than the one
        this thread saw before (an older one is a stale key)."""
        last = 0
        sel = self.sel
        while not self.stop.is_set():
            try:
                ready = sel.select(0.05)
            except RuntimeError as exc:
                if self.kind == "Poll" and str(exc) == "concurrent poll() invocation":
                    self.note("concurrent poll() refused")  # one select() at a time, as stdlib
                    continue
                if closed_ok is None or ("RuntimeError", str(exc)) not in closed_ok:
                    raise
                self.note("closed: select")
                continue
            except ValueError as exc:
                if closed_ok is None or ("ValueError", str(exc)) not in closed_ok:
                    raise
                self.note("closed: select")
                continue
            if closed_ok is not None and ready == []:
                self.note("select() [] (closed under it)")
                continue
            # KqueueSelector reports an fd's read and write filters as two entries, as the
            # stdlib's does: their events are folded.
            assert len(ready) == (2 if self.kind == "Kqueue" else 1), ready
            events = 0
            for key, ev in ready:
                assert key.fileobj is self.sentinel, ready
                assert key.data[1] >= last, "stale key: generation %d after %d" % (
                    key.data[1], last)
                events |= ev
            assert events == RW, ready
            last = max(key.data[1] for key, _ in ready)
            self.note("selects")


def _caused_by(exc, outcomes):
    """Whether an exception in `exc`'s __context__ chain is one of `outcomes`."""
    seen = set()
    while outcomes and exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (type(exc).__name__, str(exc)) in outcomes:
            return True
        exc = exc.__context__
    return False


def _start(shared, closed_ok=None):
    threads = [threading.Thread(target=shared.run, daemon=True,
                                args=("contender", shared.contend, seed, closed_ok))
               for seed in range(CONTENDERS)]
    threads += [threading.Thread(target=shared.run, daemon=True,
                                 args=("select loop", shared.select_loop, closed_ok))
                for _ in range(SELECT_LOOPS)]
    if closed_ok is None:
        threads.append(threading.Thread(target=shared.run, daemon=True,
                                        args=("sentinel", shared.bump_sentinel)))
    for t in threads:
        t.start()
    shared.go.set()
    return threads


@pytest.mark.parametrize("kind", KINDS)
def test_parallel_contention_on_shared_fds(kind):
    """CONTENDERS threads register, modify and unregister the same fds, SELECT_LOOPS threads
    select() and one modify()s the sentinel, all on one selector at once. Every call's outcome
    is one a serial run could give; no thread dies or hangs; each select() reports the
    sentinel alone and never an older key of it. After: per fd, successful registers minus
    unregisters is 1 exactly when it is in the map; the map agrees with get_key(); and once the
    quiet fds are made readable, one select() reports exactly the registered ones wanting R."""
    shared = _Shared(kind)
    try:
        threads = _start(shared)
        time.sleep(CONTENTION_SECONDS)
        shared.stop.set()
        alive = join_all(threads, 10)
        assert not alive, "threads deadlocked: %r" % alive
        assert not shared.errors, shared.errors[:5]
        sel, mapping = shared.sel, shared.sel.get_map()
        if shared.atomic_modify:  # (else modify's own unregister and register go uncounted)
            for fd in shared.quiet:
                balance = shared.registered[fd] - shared.unregistered[fd]
                assert balance == (1 if fd in mapping else 0), (fd, balance, fd in mapping)
        assert len(mapping) == 1 + sum(fd in mapping for fd in shared.quiet)
        for fd, key in mapping.items():
            assert key.fd == fd and sel.get_key(key.fileobj) is key
        for _, w in shared.pipes:
            os.write(w, b"x")
        got = {}
        for key, events in sel.select(0):  # Kqueue: one entry per filter, folded
            before, same = got.get(key.fd, (0, True))
            got[key.fd] = (before | events, same and key is mapping[key.fd])
        want = {fd: (R, True) for fd, key in mapping.items() if key.events & R}
        want[shared.sentinel.fileno()] = (RW, True)
        assert got == want
        assert shared.counts.get("selects", 0) > 0, shared.counts
        print("contention", kind, dict(seconds=CONTENTION_SECONDS, **shared.counts,
                                       registered=sum(shared.registered.values())))
    finally:
        shared.stop.set()
        shared.close_all()


@pytest.mark.parametrize("kind", KINDS)
def test_parallel_close_under_contention(kind):
    """CLOSE_ROUNDS rounds: a fresh selector shared by contenders and select loops, closed by
    another thread at a random moment while they run. close() returns, every thread ends (all
    waits bounded); a call meets either the open selector (as in the test above) or what the
    stdlib raises on a closed one (test_close_during_stress's set); a select() returns the
    sentinel alone or []; the map is gone after; no fd is left open by the rounds, and the
    user's fds are never closed under them."""
    # What the stdlib raises on a closed selector (_closed_outcomes, before normalizing),
    # but the KeyErrors, which the contenders check as they do on an open one.
    closed_ok = {("RuntimeError", "Selector is closed"),
                 ("ValueError", "I/O operation on closed %s object" % kind.lower())}
    rng = random.Random(7)
    fds_before = open_fd_count()
    fd_set_before = open_fds()
    counts = {}
    for round_ in range(CLOSE_ROUNDS):
        shared = _Shared(kind)
        try:
            threads = _start(shared, closed_ok)
            time.sleep(rng.uniform(0, 0.02))
            closer = threading.Thread(target=shared.run, args=("close", shared.sel.close),
                                      daemon=True)
            closer.start()
            closer.join(2)
            assert not closer.is_alive(), "close() deadlocked in round %d" % round_
            time.sleep(0.01)
            shared.stop.set()
            alive = join_all(threads, 10)
            assert not alive, "threads deadlocked after close() in round %d: %r" % (round_, alive)
            assert not shared.errors, (round_, shared.errors[:5])
            assert shared.sel.get_map() is None
            for fd in shared.quiet:
                os.fstat(fd)  # still open: close() closes only its own fd
            for what, n in shared.counts.items():
                counts[what] = counts.get(what, 0) + n
        finally:
            shared.stop.set()
            shared.close_all()
    if kind == "Kqueue":
        # libkqueue frees an earlier test's kqueue fds from its own thread, at any moment: on
        # Kqueue only the fds the rounds opened count.
        settle_libkqueue_fds(before=fd_set_before)
    else:
        assert open_fd_count() == fds_before
    assert not open_fds() - fd_set_before, "fds left open by the rounds"
    # The rounds did meet closed selectors (or this test proved nothing about close()).
    assert any(what.startswith("closed") for what in counts), counts
    print("close under contention", kind, dict(rounds=CLOSE_ROUNDS, **counts))
