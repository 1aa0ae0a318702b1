"""Instructions per call of rselectors' hot paths, counted by callgrind; the instruction ratchet.

Callgrind counts are deterministic where wall-clock timings on a shared machine are not. One
count is one process under callgrind:

    valgrind --tool=callgrind python benches/callgrind_calls.py NAME N

runs the setup of NAME, then N calls (the Python loop included). N calls minus N=0, divided
by N, is the cost of one call. Modes:

    python benches/callgrind_calls.py --table PY_OR_PKG...
        one column per build: a Python interpreter (a venv's bin/python with rselectors
        installed) or a package directory (an unzipped wheel, put first on PYTHONPATH of
        this interpreter);
    python benches/callgrind_calls.py --check benches/instruction_baseline.json
        the ratchet (.ci/run's instruction-ratchet stage): this interpreter's counts against
        the committed baseline; exit status 1 if any is more than 2% above it;
    python benches/callgrind_calls.py --write-baseline benches/instruction_baseline.json
        re-measure and rewrite the baseline's counts (raising one needs a reason: see the
        file's header and BENCHMARKS.md);
    --runs K (with --table or --check): K counts per call, to show the spread.

    --pymalloc: count with CPython's default allocator (the issue tables' method) instead of
    glibc's malloc (PYTHONMALLOC=malloc, the ratchet's: see ALLOCATOR).

Repeatable counts: the child gets a fixed minimal environment (PYTHONHASHSEED=0, PATH,
LC_ALL, cwd /), address-space randomisation off (`setarch -R`, where it works) and glibc's
allocator. Five runs of one build give the same count to the instruction; the interpreter's
or the script's path moves a count by under 0.1 instruction per call.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

# name -> what one "call" is, as the table and BENCHMARKS.md write it.
CALLS = {
    "get_key": "get_key(a)",
    "modify_events": "modify(a, 2); modify(a, 1)",
    "modify_data": "modify(a, 1, d1); modify(a, 1, d2)",
    "regunreg_epoll": "register(a, 1); unregister(a), Epoll",
    "regunreg_poll": "register(a, 1); unregister(a), Poll",
    "select0_epoll": "select(0), Epoll, 1 ready of 1",
    "select0_poll": "select(0), Poll, 1 ready of 1",
    "select0_select": "select(0), Select, 1 ready of 1",
}
N = 20000
# The ratchet fails a count more than this far above its baseline, and suggests lowering a
# baseline that a count is this far below.
TOLERANCE = 0.02


def loops():
    """NAME -> (setup, loop): setup() makes what loop(state, n) calls n times."""
    import socket
    import types

    import rselectors

    def selector(cls, registered):
        def setup():
            a, b = socket.socketpair()
            b.send(b"x")
            s = cls()
            if registered:
                s.register(a, 1)
            return s, a, (b,)
        return setup

    # One function per loop, so that each keeps its own specialised bytecode.
    def get_key(state, n):
        s, a, _ = state
        f = s.get_key
        for _ in range(n):
            f(a)

    def modify_events(state, n):
        s, a, _ = state
        f = s.modify
        for _ in range(n):
            f(a, 2)
            f(a, 1)

    def modify_data(state, n):
        s, a, _ = state
        f = s.modify
        d1, d2 = object(), object()
        for _ in range(n):
            f(a, 1, d1)
            f(a, 1, d2)

    def regunreg(state, n):
        s, a, _ = state
        r, u = s.register, s.unregister
        for _ in range(n):
            r(a, 1)
            u(a)

    def select0(state, n):
        s = state[0]
        f = s.select
        for _ in range(n):
            f(0)

    def copy(loop):
        """The same loop with a code object (and so specialised bytecode) of its own."""
        return types.FunctionType(loop.__code__.replace(), loop.__globals__)

    epoll, poll = rselectors.EpollSelector, rselectors.PollSelector
    return {
        "get_key": (selector(epoll, True), get_key),
        "modify_events": (selector(epoll, True), modify_events),
        "modify_data": (selector(epoll, True), modify_data),
        "regunreg_epoll": (selector(epoll, False), regunreg),
        "regunreg_poll": (selector(poll, False), copy(regunreg)),
        "select0_epoll": (selector(epoll, True), select0),
        "select0_poll": (selector(poll, True), copy(select0)),
        "select0_select": (selector(rselectors.SelectSelector, True), copy(select0)),
    }


def child(n):
    """Under callgrind: for each call, its setup, then `n` calls and 0 calls, each between
    two markers (os.getppid(), at which callgrind dumps its counts: `--dump-before=getppid`).
    Dumps 3k+2 and 3k+3 are call k's n-loop and 0-loop."""
    import gc

    table = loops()
    for name in CALLS:
        setup, loop = table[name]
        state = setup()
        loop(state, 1)  # the first call's one-time costs stay out of the count
        gc.collect()
        os.getppid()
        loop(state, n)
        os.getppid()
        loop(state, 0)
        os.getppid()
        state[0].close()


def no_aslr():
    """`setarch -R` (address-space randomisation off for the child) if it works here."""
    prefix = ["setarch", os.uname().machine, "-R"]
    try:
        ok = subprocess.run(prefix + ["true"], capture_output=True).returncode == 0
    except OSError:
        ok = False
    return prefix if ok else []


NO_ASLR = None
# The allocator of the child. glibc's malloc costs the same per call wherever the objects
# land; pymalloc's free and malloc cost more or less as a call empties or fills a pool, which
# moves with anything that shifts the heap (the interpreter's or the script's path: up to 15
# instructions per call here). --pymalloc counts with the default allocator, as users run.
ALLOCATOR = "malloc"


def counts_of(build, n=N):
    """{name: instructions per call} on `build` (an interpreter, or a package directory for
    this interpreter), from one process under callgrind."""
    global NO_ASLR
    if NO_ASLR is None:
        NO_ASLR = no_aslr()
    build = os.path.abspath(build)
    if os.path.isdir(build):
        python, pythonpath = sys.executable, {"PYTHONPATH": build}
    else:
        python, pythonpath = build, {}
    # Everything the child sees is fixed: environ, argv, working directory.
    env = dict(PYTHONHASHSEED="0", PYTHONMALLOC=ALLOCATOR, PATH="/usr/bin:/bin", LC_ALL="C",
               **pythonpath)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        subprocess.run(
            NO_ASLR + ["valgrind", "--tool=callgrind", "--dump-before=getppid",
                       "--callgrind-out-file=" + out,
                       python, os.path.abspath(__file__), "--child", str(n)],
            env=env, cwd="/", check=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        result = {}
        for k, name in enumerate(CALLS):
            calls, empty = (dump_total("%s.%d" % (out, 3 * k + i)) for i in (2, 3))
            result[name] = (calls - empty) / n
        return result


def dump_total(path):
    with open(path) as f:
        return int(re.search(r"^summary:\s*(\d+)", f.read(), re.M).group(1))


def measure(builds, runs=1, jobs=2):
    """{(build, name): [count per run]}, the processes `jobs` at a time."""
    tasks = [b for _ in range(runs) for b in builds]
    with ThreadPoolExecutor(jobs) as pool:
        counts = list(pool.map(counts_of, tasks))
    result = {}
    for b, c in zip(tasks, counts):
        for name, count in c.items():
            result.setdefault((b, name), []).append(count)
    return result


def table(builds, runs):
    counts = measure(builds, runs)
    width = max(len(d) for d in CALLS.values()) + 2
    heads = [os.path.basename(b.rstrip("/")) if os.path.isdir(b) else b for b in builds]
    print("%-*s" % (width, "call") + "".join("  %s" % h for h in heads))
    for name, what in CALLS.items():
        cells = []
        for b in builds:
            c = counts[b, name]
            cell = "%.0f" % (sum(c) / len(c))
            if runs > 1:
                cell += " (%.0f..%.0f)" % (min(c), max(c))
            cells.append(cell)
        print("%-*s" % (width, what) + "".join("  %*s" % (len(h), c) for h, c in zip(heads, cells)))


def environment():
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    return {"python": sys.version, "valgrind": valgrind.stdout.strip(),
            "allocator": ALLOCATOR, "aslr_off": bool(NO_ASLR), "n": N}


ABOUT = [
    "The instruction ratchet's baseline: instructions per call of each hot path, counted by",
    "benches/callgrind_calls.py (callgrind, the Python loop included, N=0 subtracted; see its",
    "docstring) on the interpreter and valgrind named in measured_with. .ci/run's",
    "instruction-ratchet stage fails when a count is more than 2% above its baseline here.",
    "Lowering a count is an ordinary commit. Raising one needs the reason in the commit",
    "message and in BENCHMARKS.md ('Instruction ratchet'). Rewrite the counts with",
    "`python benches/callgrind_calls.py --write-baseline benches/instruction_baseline.json`.",
]


def write_baseline(path, runs):
    counts = measure([sys.executable], runs)
    baseline = {"about": ABOUT, "calls": CALLS, "measured_with": environment()}
    baseline["counts"] = {name: round(max(counts[sys.executable, name]))
                          for name in CALLS}
    with open(path, "w") as f:
        json.dump(baseline, f, indent=2)
        f.write("\n")
    print(json.dumps(baseline["counts"], indent=2))


def check(path, runs):
    """The ratchet: 0 if every count is within TOLERANCE above its baseline."""
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts")
        return 1
    with open(path) as f:
        baseline = json.load(f)
    global ALLOCATOR
    ALLOCATOR = baseline["measured_with"]["allocator"]
    want = baseline["measured_with"]["python"]
    if sys.version != want:
        # Counts of another interpreter build are not comparable: a skip would hide that the
        # ratchet no longer guards anything.
        print("the baseline was measured on Python %r, this is %r: run this stage with that "
              "interpreter, or re-measure the baseline (--write-baseline) and say why in the "
              "commit and BENCHMARKS.md" % (want, sys.version))
        return 1
    counts = measure([sys.executable], runs)
    if environment()["valgrind"] != baseline["measured_with"]["valgrind"]:
        print("note: the baseline was counted with %s" % baseline["measured_with"]["valgrind"])
    failed = []
    print("%-40s %9s %9s %7s" % ("call", "baseline", "now", "change"))
    for name, what in CALLS.items():
        base = baseline["counts"][name]
        now = max(counts[sys.executable, name])
        change = now / base - 1
        verdict = ""
        if change > TOLERANCE:
            verdict = "FAILED: more than %d%% above the baseline" % round(TOLERANCE * 100)
            failed.append(what)
        elif change < -TOLERANCE:
            verdict = "lower the baseline (%s)" % os.path.relpath(path)
        print("%-40s %9d %9.0f %+6.1f%%  %s" % (what, base, now, change * 100, verdict))
    if failed:
        print("instruction ratchet FAILED for: " + "; ".join(failed))
        return 1
    print("instruction ratchet: every call within %d%% of its baseline" % round(TOLERANCE * 100))
    return 0


def option(args, name, default):
    if name in args:
        i = args.index(name)
        value = args[i + 1]
        del args[i:i + 2]
        return value
    return default


if __name__ == "__main__":
    args = sys.argv[1:]
    runs = int(option(args, "--runs", "1"))
    if "--pymalloc" in args:
        args.remove("--pymalloc")
        ALLOCATOR = "pymalloc"
    if args[0] == "--table":
        table(args[1:], runs)
    elif args[0] == "--check":
        sys.exit(check(args[1], runs))
    elif args[0] == "--write-baseline":
        write_baseline(args[1], runs)
    elif args[0] == "--child":
        child(int(args[1]))
