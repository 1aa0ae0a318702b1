#!/usr/bin/env python3
"""Thread stress soak: the reliability suite's thread stress (tests/support/thread_stress.py)
for as long as asked, on each selector class, then the "nothing lost" check.

    python benches/soak/thread_soak.py --seconds 300 --mutators 4 --selectors 4
    python benches/soak/thread_soak.py --module selectors      # the stdlib, for reference
"""

import argparse
import os
import sys

# The stress itself is the test suite's (tests/support/thread_stress.py), run longer here.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from support.thread_stress import run_stress  # noqa: E402


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
        sel = getattr(mod, kind + "Selector")()
        try:
            r = run_stress(sel, kind, args.seconds, args.mutators, args.selectors, args.pairs,
                           join_timeout=30)
        finally:
            sel.close()
        print(r, flush=True)
        bad |= bool(r["problems"])
    print("verdict:", "PROBLEMS" if bad else "ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
