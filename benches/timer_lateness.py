"""How late do timeouts fire? (issues 14, 20): stdlib vs rselectors (both settings) vs uvloop.

    python benches/timer_lateness.py                          # about a minute
    python benches/timer_lateness.py --quick                  # a quarter of the samples
    python benches/timer_lateness.py --uvloop-path DIR        # uvloop from `pip install --target DIR uvloop`
    PYTHONPATH=DIR python benches/timer_lateness.py --plot out.png   # matplotlib in DIR
    python benches/timer_lateness.py --timer-slack-ns 1       # without the kernel's 50 us slack
    python benches/timer_lateness.py --before DIR --runs 3    # another build beside this one

Lateness is the time a call took beyond what was asked (perf_counter, CLOCK_MONOTONIC):
`sel.select(t)` on a selector watching one idle socket, and `await asyncio.sleep(t)` on an
otherwise idle event loop, for t in 50 us, 200 us, 1 ms and 10 ms. Variants:

  stdlib         selectors.DefaultSelector (EpollSelector here): ceil to whole milliseconds
  rselectors     rselectors.DefaultSelector: the timeout to the nanosecond (epoll_pwait2)
  rselectors-ms  the same under rselectors.set_millisecond_timeouts(True): the stdlib's rule
  before         with --before DIR: the rselectors package in DIR (an installed build of
                 another commit, e.g. a venv's site-packages/rselectors), loaded in this same
                 process under the name rselectors_before, its DefaultSelector
  uvloop         asyncio.sleep only (uvloop has no selector); libuv's millisecond timers
  time.sleep     select(t) row only, a reference: nanosleep, the kernel's own floor (the
                 thread's timer slack, 50 us by default, applies to it as to every wait)

All variants run in this one process, in interleaved batches (A, B, C, D, A, B, ...), so
machine noise hits each alike; the table gives min, median, p90 and p99 over all samples.
A negative minimum would be a wait that ended early. With --runs N the whole schedule runs N
times and each figure is the median of the N runs' (the load average is printed per run).

Then the CPU cost of an idle loop whose only work is a 200 us timer: each variant's loop
runs `await asyncio.sleep(0.0002)` back to back for --idle-seconds, in interleaved rounds;
reported as CPU time per second of wall time (the thread's user+system time) and per sleep.
A spinning loop would show close to 100%.
"""

import argparse
import asyncio
import json
import os
import selectors
import socket
import statistics
import sys
import time

import rselectors

if selectors is rselectors or not os.path.basename(selectors.__file__).startswith("selectors.py"):
    sys.exit("timer_lateness.py: `selectors` is not the standard library's module; run it "
             "with plain `python`, without rselectors.install()")

TIMEOUTS = [50e-6, 200e-6, 1e-3, 10e-3]
# Samples per (variant, timeout) in a full run: fewer of the long ones.
SAMPLES = {50e-6: 2000, 200e-6: 2000, 1e-3: 600, 10e-3: 120}
ROUNDS = 10


def label(t):
    return "%d us" % round(t * 1e6) if t < 1e-3 else "%g ms" % (t * 1e3)


class SleepRef:
    """time.sleep in a selector's place: the lateness of the plainest wait the OS has."""

    def register(self, fileobj, events):
        pass

    def select(self, timeout):
        time.sleep(timeout)

    def close(self):
        pass


class Variant:
    def __init__(self, name, make_selector=None, make_loop=None, ms=False, module=None):
        self.name = name
        self.ms = ms
        # The rselectors build whose millisecond switch this variant sets.
        self.module = module or rselectors
        self.selector = None
        self.loop = None
        self.sock = None
        if make_selector is not None:
            self.sock = socket.socketpair()
            self.selector = make_selector()
            self.selector.register(self.sock[0], selectors.EVENT_READ)
        self.loop = make_loop() if make_loop is not None else None

    def enter(self):
        # The switch is process-wide: set before each of this variant's batches.
        self.module.set_millisecond_timeouts(self.ms)

    def select_batch(self, t, n, out):
        sel = self.selector
        clock = time.perf_counter_ns
        asked = t * 1e9
        for _ in range(n):
            t0 = clock()
            sel.select(t)
            out.append((clock() - t0 - asked) / 1e3)

    def sleep_batch(self, t, n, out):
        async def run():
            clock = time.perf_counter_ns
            asked = t * 1e9
            for _ in range(n):
                t0 = clock()
                await asyncio.sleep(t)
                out.append((clock() - t0 - asked) / 1e3)
        self.loop.run_until_complete(run())

    def idle_cpu(self, seconds):
        """(CPU seconds per wall second, CPU us per sleep) of a loop sleeping 200 us at a time."""
        count = [0]

        async def run():
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                await asyncio.sleep(0.0002)
                count[0] += 1
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        self.loop.run_until_complete(run())
        wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
        return cpu / wall, cpu / count[0] * 1e6, count[0] / wall

    def close(self):
        if self.selector is not None:
            self.selector.close()
            for s in self.sock:
                s.close()
        if self.loop is not None:
            self.loop.close()


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def summary(xs):
    return {"n": len(xs), "min": min(xs), "median": statistics.median(xs),
            "p90": pct(xs, 0.90), "p99": pct(xs, 0.99)}


PR_SET_TIMERSLACK, PR_GET_TIMERSLACK = 29, 30


def _prctl(*args):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.restype = ctypes.c_long
    return libc.prctl(*[ctypes.c_ulong(a) for a in args + (0,) * (5 - len(args))])


def set_timer_slack(ns):
    """The kernel lets a wait end up to the thread's timer slack after its timeout (to batch
    wake-ups); every variant here, and time.sleep, pays it alike."""
    if _prctl(PR_SET_TIMERSLACK, ns) != 0:
        sys.exit("prctl(PR_SET_TIMERSLACK) failed")


def timer_slack():
    return _prctl(PR_GET_TIMERSLACK)


def load_before(pkgdir):
    """The rselectors package in `pkgdir`, imported as `rselectors_before` beside this one (its
    extension is another file, so it is another copy of the library)."""
    import importlib.util
    init = os.path.join(pkgdir, "__init__.py")
    if not os.path.exists(init):
        sys.exit("--before %s: no rselectors package there (%s)" % (pkgdir, init))
    spec = importlib.util.spec_from_file_location("rselectors_before", init,
                                                  submodule_search_locations=[pkgdir])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["rselectors_before"] = mod
    spec.loader.exec_module(mod)
    return mod


def machine():
    """The machine and build, as bench.py names them."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench import machine_info
    m = machine_info()
    return "%s, %d vCPU, Linux %s, CPython %s, git %s" % (
        m["cpu"], m["nproc"], m["kernel"], m["python"], m["git"])


COLORS = {"stdlib": "C0", "rselectors": "C1", "rselectors-ms": "C2", "uvloop": "C3",
          "time.sleep": "C7", "before": "C4"}


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, op in zip(axes, ["select(t)", "asyncio.sleep(t)"]):
        names = [n for n in results["variants"] if (op, n, label(TIMEOUTS[0])) in results["_cells"]]
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            xs, med, lo, hi = [], [], [], []
            for j, t in enumerate(TIMEOUTS):
                s = results["_cells"][(op, name, label(t))]
                xs.append(j + (i - (len(names) - 1) / 2) * width)
                med.append(s["median"])
                lo.append(s["median"] - s["min"])
                hi.append(s["p90"] - s["median"])
            ax.bar(xs, med, width, label=name, yerr=[lo, hi], capsize=3, color=COLORS[name])
        ax.set_xticks(range(len(TIMEOUTS)), [label(t) for t in TIMEOUTS])
        # Symmetric log: an early wake-up (negative lateness) shows below the zero line.
        ax.set_yscale("symlog", linthresh=10)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title("%s: lateness (bar: median; whiskers: min to p90)" % op)
        ax.set_xlabel("t asked")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("lateness, microseconds (symlog; below 0: woke early)")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle("Timer lateness, %s; timer slack %s ns" % (results["machine"],
                                                             results["timer_slack_ns"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def measure(variants, scale):
    """One interleaved run of every cell: {(op, variant, t): samples in us}."""
    cells = {}
    for t in TIMEOUTS:
        per_round = max(1, int(SAMPLES[t] * scale) // ROUNDS)
        for op in ["select(t)", "asyncio.sleep(t)"]:
            for r in range(ROUNDS):
                # Interleaved, and the order turned each round.
                order = variants[r % len(variants):] + variants[:r % len(variants)]
                for v in order:
                    if (v.selector if op == "select(t)" else v.loop) is None:
                        continue
                    v.enter()
                    out = cells.setdefault((op, v.name, label(t)), [])
                    if op == "select(t)":
                        v.select_batch(t, per_round, out)
                    else:
                        v.sleep_batch(t, per_round, out)
    return cells


def measure_idle(variants, seconds):
    """{variant: [(CPU/wall, CPU us per sleep, sleeps/s) per round]}, 5 interleaved rounds."""
    looping = [v for v in variants if v.loop is not None]
    idle = {v.name: [] for v in looping}
    for r in range(5):
        for v in looping[r % len(looping):] + looping[:r % len(looping)]:
            v.enter()
            idle[v.name].append(v.idle_cpu(seconds))
    return idle


def median_of_runs(summaries):
    """Each figure of one cell's summaries (one per run): the median over the runs."""
    return {k: statistics.median(s[k] for s in summaries) for k in summaries[0]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a quarter of the samples")
    ap.add_argument("--uvloop-path", help="a directory to import uvloop from")
    ap.add_argument("--idle-seconds", type=float, default=1.0,
                    help="length of one idle-CPU round per variant (5 rounds)")
    ap.add_argument("--plot", help="write a PNG of the lateness table (needs matplotlib)")
    ap.add_argument("--json", help="write the figures as JSON")
    ap.add_argument("--timer-slack-ns", type=int,
                    help="set this thread's timer slack first (prctl PR_SET_TIMERSLACK; "
                         "Linux's default is 50000 ns), for every variant alike")
    ap.add_argument("--before", metavar="DIR",
                    help="an rselectors package directory of another build, measured as "
                         "`before` beside this one")
    ap.add_argument("--runs", type=int, default=1,
                    help="repeat the whole interleaved schedule; figures are medians of runs")
    ap.add_argument("--no-ms", action="store_true",
                    help="leave out the rselectors-ms variant (the stdlib's rule)")
    args = ap.parse_args()
    if args.timer_slack_ns is not None:
        set_timer_slack(args.timer_slack_ns)

    if args.uvloop_path:
        sys.path.insert(0, args.uvloop_path)
    try:
        import uvloop
    except ImportError as e:
        uvloop = None
        print("uvloop column skipped: %s (pip install --target DIR uvloop; --uvloop-path DIR)"
              % e)

    def selector_loop(module):
        return lambda: asyncio.SelectorEventLoop(module.DefaultSelector())

    state_before = rselectors.millisecond_timeouts()
    variants = [
        Variant("stdlib", selectors.DefaultSelector, selector_loop(selectors)),
        Variant("rselectors", rselectors.DefaultSelector, selector_loop(rselectors)),
    ]
    before = None
    if args.before:
        before = load_before(args.before)
        before.set_millisecond_timeouts(False)
        variants.append(Variant("before", before.DefaultSelector, selector_loop(before),
                                module=before))
    if not args.no_ms:
        variants.append(Variant("rselectors-ms", rselectors.DefaultSelector,
                                selector_loop(rselectors), ms=True))
    if uvloop is not None:
        variants.append(Variant("uvloop", None, uvloop.new_event_loop))
    variants.append(Variant("time.sleep", SleepRef))
    scale = 0.25 if args.quick else 1.0

    results = {"machine": machine()}
    print("machine: %s" % results["machine"])
    print("selector: %s; timer slack: %s ns" % (type(variants[1].selector).__name__,
                                                 timer_slack()))
    if before is not None:
        print("before: %s" % before._rselectors.__file__)
    runs, idle_runs = [], []
    for run in range(args.runs):
        load = os.getloadavg()
        runs.append({k: summary(xs) for k, xs in measure(variants, scale).items()})
        idle_runs.append(measure_idle(variants, args.idle_seconds))
        print("run %d of %d: load average %.2f at the start, %.2f at the end"
              % (run + 1, args.runs, load[0], os.getloadavg()[0]))
    # The first rselectors wait learnt whether the kernel has epoll_pwait2.
    print("epoll_pwait2: %s" % rselectors._rselectors._epoll_pwait2()[0])
    results.update({"variants": [v.name for v in variants], "timer_slack_ns": timer_slack(),
                    "epoll_pwait2": rselectors._rselectors._epoll_pwait2()[0],
                    "runs": args.runs,
                    "_cells": {k: median_of_runs([r[k] for r in runs]) for k in runs[0]}})

    print("\nLateness in microseconds (time taken minus t), all samples of interleaved rounds%s"
          % ("; each figure the median of %d runs" % args.runs if args.runs > 1 else ""))
    print("%-17s %-6s %-14s %6s %9s %9s %9s %9s" % ("call", "t", "variant", "n", "min",
                                                   "median", "p90", "p99"))
    for op in ["select(t)", "asyncio.sleep(t)"]:
        for t in TIMEOUTS:
            for v in variants:
                s = results["_cells"].get((op, v.name, label(t)))
                if s is None:
                    continue
                print("%-17s %-6s %-14s %6d %9.1f %9.1f %9.1f %9.1f" % (
                    op, label(t), v.name, s["n"], s["min"], s["median"], s["p90"], s["p99"]))
            print()
    if args.runs > 1:
        print("Medians of each run (the spread of the runs):")
        for op in ["select(t)", "asyncio.sleep(t)"]:
            for t in TIMEOUTS:
                for v in variants:
                    key = (op, v.name, label(t))
                    if key in runs[0]:
                        print("%-17s %-6s %-14s %s" % (op, label(t), v.name, "  ".join(
                            "%7.1f" % r[key]["median"] for r in runs)))
        print()

    print("Idle loop, 200 us timers back to back: %d interleaved rounds of %.1f s per variant%s"
          % (5, args.idle_seconds, ", in each of %d runs" % args.runs if args.runs > 1 else ""))
    print("%-14s %12s %14s %12s" % ("variant", "CPU/wall", "CPU us/sleep", "sleeps/s"))
    results["idle"] = {}
    for name in idle_runs[0]:
        rows = [row for idle in idle_runs for row in idle[name]]
        cpu = statistics.median(r[0] for r in rows)
        per = statistics.median(r[1] for r in rows)
        rate = statistics.median(r[2] for r in rows)
        results["idle"][name] = {"cpu_per_wall": cpu, "cpu_us_per_sleep": per,
                                 "sleeps_per_s": rate}
        print("%-14s %11.1f%% %14.1f %12.0f" % (name, cpu * 100, per, rate))

    rselectors.set_millisecond_timeouts(state_before)
    for v in variants:
        v.close()
    if args.plot:
        plot(results, args.plot)
        print("\nplot written to %s" % args.plot)
    if args.json:
        dump = dict(results)
        dump["cells"] = [dict(call=k[0], variant=k[1], t=k[2], **s)
                         for k, s in dump.pop("_cells").items()]
        with open(args.json, "w") as f:
            json.dump(dump, f, indent=1)


if __name__ == "__main__":
    main()
