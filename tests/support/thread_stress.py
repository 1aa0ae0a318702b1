"""The thread stress of reliability/test_thread_stress.py, run for as long as asked: mutator
threads register / modify / unregister the socket pairs they own and make them ready or drain
them, while selector threads loop in select() on the same selector; then "nothing lost".
benches/soak/thread_soak.py runs it for minutes.
"""

import random
import socket
import threading
import time

from support.reliability import join_all

R, W, RW = 1, 2, 3

POLL_CONCURRENT = ("RuntimeError", "concurrent poll() invocation")


def drain(sock):
    try:
        while sock.recv(65536):
            pass
    except (BlockingIOError, InterruptedError):
        pass


class Mutator(threading.Thread):
    def __init__(self, sel, pairs, seed, stop):
        super().__init__(daemon=True)
        self.sel = sel
        self.pairs = pairs  # [(a, b)]: a is registered, b is the peer
        self.rng = random.Random(seed)
        self.stop = stop
        self.expected = {}  # a -> (events, data)
        self.errors = []
        self.ops = 0

    def run(self):
        rng = self.rng
        try:
            while not self.stop.is_set():
                a, b = rng.choice(self.pairs)
                op = rng.random()
                if a not in self.expected:
                    ev = rng.choice((R, W, RW))
                    data = ("d", a.fileno(), self.ops)
                    key = self.sel.register(a, ev, data)
                    assert key.fileobj is a and key.events == ev and key.data is data
                    self.expected[a] = (ev, data)
                elif op < 0.3:
                    key = self.sel.unregister(a)
                    assert key.fileobj is a and (key.events, key.data) == self.expected.pop(a)
                elif op < 0.6:
                    what = rng.choice(("events", "data", "both"))
                    ev, data = self.expected[a]
                    if what in ("events", "both"):
                        ev = rng.choice((R, W, RW))
                    if what in ("data", "both"):
                        data = ("d", a.fileno(), self.ops)
                    key = self.sel.modify(a, ev, data)
                    assert key.events == ev and key.data is data
                    self.expected[a] = (ev, data)
                elif op < 0.75:
                    key = self.sel.get_key(a)
                    assert (key.events, key.data) == self.expected[a]
                elif op < 0.9:
                    b.send(b"x")
                else:
                    drain(a)
                self.ops += 1
                if self.ops % 50 == 0:
                    time.sleep(0)  # let the selector threads in
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(exc)


class SelectLoop(threading.Thread):
    def __init__(self, sel, owned, stop, timeout=0.02):
        super().__init__(daemon=True)
        self.sel = sel
        self.owned = owned  # set of our sockets (ids)
        self.stop = stop
        self.timeout = timeout
        self.errors = []
        self.seen = {}  # (type, msg) -> count of exceptions
        self.calls = 0
        self.reported = 0

    def run(self):
        try:
            while not self.stop.is_set():
                try:
                    ready = self.sel.select(self.timeout)
                except Exception as exc:  # noqa: BLE001
                    sig = (type(exc).__name__, str(exc))
                    self.seen[sig] = self.seen.get(sig, 0) + 1
                    time.sleep(0.001)
                    continue
                self.calls += 1
                for key, ev in ready:
                    self.reported += 1
                    assert type(key).__name__ == "SelectorKey", key
                    assert id(key.fileobj) in self.owned, key
                    assert key.fd == key.fileobj.fileno()
                    assert ev in (R, W, RW) and ev & ~key.events == 0 or ev == 0, (key, ev)
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(exc)


def run_stress(sel, kind, seconds, mutators, selectors, pairs_per_mutator, join_timeout=10):
    """Stress `sel` (a selector of `kind`) for `seconds`, then make every pair ready: returns
    what it did and `problems` (empty when nothing deadlocked, no thread failed, the
    exceptions seen are the stdlib's and every fd registered and not unregistered is
    reported with its last events and data)."""
    pairs = []
    try:
        for _ in range(mutators * pairs_per_mutator):
            a, b = socket.socketpair()
            a.setblocking(False)
            b.setblocking(False)
            pairs.append((a, b))
        owned = {id(a) for a, _ in pairs}
        stop = threading.Event()
        muts = [Mutator(sel, pairs[i::mutators], seed=i, stop=stop) for i in range(mutators)]
        loops = [SelectLoop(sel, owned, stop) for _ in range(selectors)]
        for t in loops + muts:
            t.start()
        time.sleep(seconds)
        stop.set()
        alive = join_all(loops + muts, join_timeout)
        problems = []
        if alive:
            problems.append("threads deadlocked: %r" % alive)
        for t in muts + loops:
            problems += ["%s: %r" % (type(t).__name__, e) for e in t.errors]
        seen = {}
        for t in loops:
            for sig, n in t.seen.items():
                seen[sig] = seen.get(sig, 0) + n
        allowed = {POLL_CONCURRENT} if kind == "Poll" else set()
        if set(seen) - allowed:
            problems.append("unexpected exceptions: %r" % (set(seen) - allowed))
        selects = sum(t.calls for t in loops)
        if not selects:
            problems.append("no select() call returned")

        # Nothing lost: every fd registered and not unregistered is reported, with its
        # last events and data, once all are made readable (and are writable anyway).
        expected = {}
        for m in muts:
            expected.update(m.expected)
        if not alive:
            if len(sel.get_map()) != len(expected):
                problems.append("get_map() has %d keys, %d expected"
                                % (len(sel.get_map()), len(expected)))
            for a, b in pairs:
                b.send(b"y")
            got = {key.fileobj: (key.events, key.data, ev) for key, ev in sel.select(1)}
            want = {a: (ev, data, ev) for a, (ev, data) in expected.items()}
            if got != want:
                problems.append("lost or extra fds: %d expected, %d reported, %d differ"
                                % (len(want), len(got), len(set(got.items()) ^ set(want.items()))))
            for a, (ev, data) in expected.items():
                key = sel.get_key(a)
                if (key.events, key.data) != (ev, data):
                    problems.append("get_key(%r): %r, expected %r"
                                    % (a, (key.events, key.data), (ev, data)))
        return dict(kind=kind, seconds=seconds, ops=sum(m.ops for m in muts), selects=selects,
                    reported=sum(t.reported for t in loops), registered_at_end=len(expected),
                    exceptions=seen, problems=problems)
    finally:
        for a, b in pairs:
            a.close()
            b.close()
