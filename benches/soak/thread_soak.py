#!/usr/bin/env python3
"""Thread stress soak: the reliability suite's thread stress (tests/test_reliability_threads.py)
for as long as asked, on each selector class, then the "nothing lost" check.

    python benches/soak/thread_soak.py --seconds 300 --mutators 4 --selectors 4
    python benches/soak/thread_soak.py --module selectors      # the stdlib, for reference
"""

import argparse
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))

from test_reliability_threads import POLL_CONCURRENT, Mutator, SelectLoop  # noqa: E402
from reliability_support import join_all  # noqa: E402


def soak(mod, kind, seconds, n_mut, n_sel, pairs_per):
    sel = getattr(mod, kind + "Selector")()
    pairs = []
    try:
        for _ in range(n_mut * pairs_per):
            a, b = socket.socketpair()
            a.setblocking(False)
            b.setblocking(False)
            pairs.append((a, b))
        owned = {id(a) for a, _ in pairs}
        stop = threading.Event()
        muts = [Mutator(sel, pairs[i::n_mut], seed=i, stop=stop) for i in range(n_mut)]
        loops = [SelectLoop(sel, owned, stop) for _ in range(n_sel)]
        for t in loops + muts:
            t.start()
        time.sleep(seconds)
        stop.set()
        alive = join_all(loops + muts, 30)
        problems = []
        if alive:
            problems.append("deadlock: %r" % alive)
        for t in muts + loops:
            problems += ["%s: %r" % (type(t).__name__, e) for e in t.errors]
        seen = {}
        for t in loops:
            for sig, n in t.seen.items():
                seen[sig] = seen.get(sig, 0) + n
        allowed = {POLL_CONCURRENT} if kind == "Poll" else set()
        if set(seen) - allowed:
            problems.append("unexpected exceptions: %r" % (set(seen) - allowed))
        expected = {}
        for m in muts:
            expected.update(m.expected)
        for a, b in pairs:
            b.send(b"y")
        got = {k.fileobj: (k.events, k.data, ev) for k, ev in sel.select(1)}
        want = {a: (ev, data, ev) for a, (ev, data) in expected.items()}
        if got != want:
            problems.append("lost/extra fds: %d expected, %d reported" % (len(want), len(got)))
        return dict(kind=kind, seconds=seconds, ops=sum(m.ops for m in muts),
                    selects=sum(t.calls for t in loops), reported=sum(t.reported for t in loops),
                    exceptions=seen, problems=problems)
    finally:
        sel.close()
        for a, b in pairs:
            a.close()
            b.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="per selector class")
    p.add_argument("--mutators", type=int, default=4)
    p.add_argument("--selectors", type=int, default=4)
    p.add_argument("--pairs", type=int, default=32, help="socket pairs per mutator")
    p.add_argument("--module", default="rselectors")
    p.add_argument("--kinds", default="Epoll,Poll,Select")
    args = p.parse_args(argv)
    mod = __import__(args.module)
    bad = False
    for kind in args.kinds.split(","):
        r = soak(mod, kind, args.seconds, args.mutators, args.selectors, args.pairs)
        print(r, flush=True)
        bad |= bool(r["problems"])
    print("verdict:", "PROBLEMS" if bad else "ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
