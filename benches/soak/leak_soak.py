#!/usr/bin/env python3
"""Leak soak: RSS before/after N register/unregister cycles, N select() calls and N/20
rounds of failing calls, for each selector class.

    python benches/soak/leak_soak.py                    # the full million of each, rselectors
    python benches/soak/leak_soak.py -n 200000 --json   # what the CI test runs
    python benches/soak/leak_soak.py --module selectors # the stdlib, for reference

Each phase is warmed up (N/20 iterations) before its "before" RSS is read, and gc.collect()
runs before every reading; the verdict is "flat" when every phase grew by at most --limit
bytes (default 2 MiB).
"""

import argparse
import gc
import json
import os
import socket
import sys
import time


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Data:
    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n


def phase(fn, n):
    fn(max(1, n // 20))  # warm-up: caches, free lists, table growth
    gc.collect()
    before = rss()
    t0 = time.perf_counter()
    fn(n)
    elapsed = time.perf_counter() - t0
    gc.collect()
    after = rss()
    return {"n": n, "rss_before": before, "rss_after": after, "delta": after - before,
            "seconds": round(elapsed, 3)}


def run_kind(mod, kind, n):
    sel = getattr(mod, kind + "Selector")()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    out = {}
    try:
        def cycles(k):
            reg, unreg, mod_ = sel.register, sel.unregister, sel.modify
            for i in range(k):
                reg(a, 1, Data(i))
                if i & 7 == 0:
                    mod_(a, 3, Data(i))
                unreg(a)

        out["register_unregister"] = phase(cycles, n)

        sel.register(a, 1, "a")
        sel.register(c, 2, "c")
        b.send(b"x")

        def selects(k):
            s = sel.select
            for _ in range(k):
                if len(s(0)) != 2:
                    raise AssertionError("both fds must be ready")

        out["select"] = phase(selects, n)

        def errors(k):
            for _ in range(k):
                for fn, args in ((sel.register, (a, 1)), (sel.register, (b, 0)),
                                 (sel.register, ("x", 1)), (sel.get_key, (b,)),
                                 (sel.unregister, (b,)), (sel.modify, (b, 1)),
                                 (sel.select, ("x",)), (sel.select, (float("nan"),)),
                                 (sel.get_map().__getitem__, (d,))):
                    try:
                        fn(*args)
                    except (KeyError, ValueError, TypeError):
                        pass

        out["failing_calls"] = phase(errors, max(1, n // 20))

        def lifecycle(k):
            for i in range(k):
                s = getattr(mod, kind + "Selector")()
                s.register(a, 1, Data(i))
                s.get_map()
                s.close()

        out["create_close"] = phase(lifecycle, max(1, n // 10))
    finally:
        sel.close()
        for s in (a, b, c, d):
            s.close()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=1_000_000, help="cycles and select calls per class")
    p.add_argument("--module", default="rselectors")
    p.add_argument("--kinds", default="Epoll,Poll,Select")
    p.add_argument("--limit", type=int, default=2 * 1024 * 1024, help="allowed growth, bytes")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args(argv)
    mod = __import__(args.module)
    report = {"module": args.module, "n": args.n, "limit": args.limit, "kinds": {}}
    flat = True
    for kind in args.kinds.split(","):
        res = run_kind(mod, kind, args.n)
        report["kinds"][kind] = res
        for name, r in res.items():
            ok = r["delta"] <= args.limit
            flat &= ok
            if not args.json:
                print("%-7s %-20s n=%-8d RSS %8.1f MiB -> %8.1f MiB  delta %+8.1f KiB  %6.2fs  %s"
                      % (kind, name, r["n"], r["rss_before"] / 2**20, r["rss_after"] / 2**20,
                         r["delta"] / 1024, r["seconds"], "ok" if ok else "GREW"))
    report["flat"] = flat
    if args.json:
        print(json.dumps(report))
    else:
        print("verdict:", "flat" if flat else "RSS GREW")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
