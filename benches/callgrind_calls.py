"""Instructions per call of rselectors' hot paths, counted by callgrind (deterministic, unlike
wall-clock timings on a shared machine).

One call under callgrind:

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
        python benches/callgrind_calls.py NAME N

runs the setup of NAME, then N calls. Run it for N=0 and N=20000 and subtract: the difference
divided by N is the instructions per call. The driver mode does that for every NAME and prints a
table, one column per package directory (an unzipped wheel, put first on PYTHONPATH):

    python benches/callgrind_calls.py --table /tmp/base13pkg /tmp/new13pkg

NAMEs: get_key, modify (modify(a, 2); modify(a, 1)), regunreg (register(a, 1); unregister(a)),
select0 (select(0) with 1 ready of 1 registered, EpollSelector), select0_poll (the same on
PollSelector).
"""
import os
import re
import socket
import subprocess
import sys

NAMES = ["get_key", "modify", "regunreg", "select0", "select0_poll"]
PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3.11"


def run(name, n):
    import rselectors

    a, b = socket.socketpair()
    b.send(b"x")
    if name == "select0_poll":
        s = rselectors.PollSelector()
    else:
        s = rselectors.EpollSelector()
    if name != "regunreg":
        s.register(a, 1)
    if name == "get_key":
        f = s.get_key
        for _ in range(n):
            f(a)
    elif name == "modify":
        f = s.modify
        for _ in range(n):
            f(a, 2)
            f(a, 1)
    elif name == "regunreg":
        r, u = s.register, s.unregister
        for _ in range(n):
            r(a, 1)
            u(a)
    elif name in ("select0", "select0_poll"):
        f = s.select
        for _ in range(n):
            f(0)
    else:
        raise SystemExit("unknown call %r (one of %s)" % (name, ", ".join(NAMES)))
    s.close()


def count(pkg, name, n):
    out = "/tmp/cg.%d.%s.%d.out" % (os.getpid(), name, n)
    env = dict(os.environ, PYTHONPATH=pkg, PYTHONHASHSEED="0")
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
         PYTHON, os.path.abspath(__file__), name, str(n)],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        total = int(re.search(r"^summary:\s*(\d+)", f.read(), re.M).group(1))
    os.unlink(out)
    return total


def table(pkgs, n=20000):
    print("%-14s" % "call" + "".join("%14s" % os.path.basename(p.rstrip("/")) for p in pkgs))
    for name in NAMES:
        cells = [(count(p, name, n) - count(p, name, 0)) / n for p in pkgs]
        print("%-14s" % name + "".join("%14.0f" % c for c in cells))


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table(sys.argv[2:])
    else:
        run(sys.argv[1], int(sys.argv[2]))
