"""Differential fuzzer: random operation sequences on selectors.X and rselectors.X, compared.

    python tests/parity/diff_fuzz.py --seed 1 --seconds 60 --classes Select,Poll,Epoll,Default

Each trial makes one selector of a class on each module (plain, a user subclass, or a
subclass overriding `_select`/`_selector_cls`) and runs a random sequence of steps on them
in lockstep (tests/support/diff_fuzz_world.py): world steps make, fill, drain, shut down, close and
reuse the fds both watch; selector steps register, unregister, modify, look up, select and
close, with every kind of file object, events, data and timeout a user passes, including
objects whose methods re-enter the selector. Each selector step's outcome, the calls of user
code it made and `get_map()` afterwards must be the same on both sides.

A difference is shrunk (steps removed while the same kind of difference remains) to a
standalone script, printed and checked by running it; the exit status is 1 if any was found.
Trial N of seed S is the same sequence on every run (`--trial N` runs just it).
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

# tests/, for the support package, when run as a script.
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TESTS_DIR)

from support import diff_fuzz_world as world  # noqa: E402
from support.diff_fuzz_world import TIMEOUTS, FD_SETSIZE  # noqa: E402

CLASSES = ("Select", "Poll", "Epoll", "Default", "Kqueue")


def available_classes():
    """The classes this build can compare: Kqueue only on a libkqueue build (against
    tests/support/kqueue_reference.py) or where the select module has kqueue."""
    import select

    import rselectors

    found = [k for k in ("Select", "Poll", "Epoll") if hasattr(rselectors, k + "Selector")]
    found.append("Default")
    if hasattr(rselectors, "KqueueSelector"):
        if hasattr(select, "kqueue") or getattr(rselectors, "_ON_LIBKQUEUE", False):
            found.append("Kqueue")
    return found


# ---------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------

RAW_FDS = ["2**31", "2**31 - 1", "2**63", "2**63 - 1", "2**64", "10**6", "-1", "-2**63",
           str(FD_SETSIZE - 1), str(FD_SETSIZE), "999", "True", "3.0", "'5'", "None",
           "object()"]
PLAIN_EVENTS = ["1", "2", "3"] * 6 + ["0", "4", "-1", "True", "False", "None", "1.0", "'x'",
                                      "7", "2**64 + 1"]
PLAIN_DATA = ["None", "'d'", "0", "1", "(1, 2)", "b''"]
FILENO_VALUES = ["-1", "2**31", "2**63", "'5'", "3.7", "None", "10**6", "True",
                 str(FD_SETSIZE)]
FILENO_RAISES = ["OSError", "ValueError", "TypeError", "KeyError", "AttributeError",
                 "RuntimeError"]
SHORT_TIMEOUTS = [n for n, (_, long_wait) in TIMEOUTS.items() if not long_wait]
LONG_TIMEOUTS = [n for n, (_, long_wait) in TIMEOUTS.items() if long_wait]
OBJECT_TIMEOUTS = {"FloatOnly", "IndexOnly", "NumTimeout"}


class Generator:
    """One trial's steps, from its own random generator."""

    def __init__(self, rng, kind, high_fds):
        self.rng = rng
        self.kind = kind
        self.high_fds = high_fds
        self.n = 0
        self.sockets = []  # labels of socket ends
        self.raw = []  # labels of raw fds (pipe ends, dups)
        self.closed = set()
        self.objs = {"fd": [], "fileobj": [], "ev": [], "data": [], "map": []}
        self.steps = []

    def label(self, prefix):
        self.n += 1
        return "%s%d" % (prefix, self.n)

    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def chance(self, p):
        return self.rng.random() < p

    # -- world ------------------------------------------------------------------
    def world(self, src):
        self.steps.append(("world", src, None))

    def new_socketpair(self):
        name = self.label("s")
        self.world("W.socketpair(%r)" % name)
        self.sockets += [name + "a", name + "b"]

    def new_pipe(self):
        name = self.label("p")
        self.world("W.pipe(%r)" % name)
        self.raw += [name + "r", name + "w"]

    def resources(self):
        return self.sockets + self.raw

    def open_resources(self):
        return [r for r in self.resources() if r not in self.closed]

    def world_step(self):
        r = self.rng.random()
        opened = self.open_resources()
        if r < 0.15 or not opened:
            if len(opened) < 14:
                (self.new_socketpair if self.chance(0.7) else self.new_pipe)()
        elif r < 0.35:
            if self.kind == "Kqueue":
                # README, "KqueueSelector on libkqueue": the number of an fd closed while
                # registered is not reliably reusable there (the stdlib on a BSD kernel has no
                # such quirk to compare with).
                return
            label = self.pick(opened)
            self.world("W.close(%r)" % label)
            self.closed.add(label)
        elif r < 0.5:
            name = self.label("x")
            at = None
            if self.high_fds and self.chance(0.4):
                at = self.pick([FD_SETSIZE - 1, FD_SETSIZE, FD_SETSIZE + 1, FD_SETSIZE + 500])
            self.world("W.dup(%r, %r%s)" % (name, self.pick(opened),
                                            "" if at is None else ", %d" % at))
            self.raw.append(name)
        elif r < 0.8:
            self.world("W.send(%r, %d)" % (self.pick(opened), self.pick([1, 1, 100, 300000])))
        elif r < 0.92:
            self.world("W.drain(%r)" % self.pick(opened))
        else:
            self.world("W.shutdown(%r, %d)" % (self.pick(opened), self.rng.randrange(3)))

    # -- user objects ------------------------------------------------------------
    def resource_expr(self):
        """A world fd: the object itself (a socket, or a raw number) or its number."""
        label = self.pick(self.resources())
        if label in self.sockets and self.chance(0.3):
            return "W.fd(%r)" % label
        return "W[%r]" % label

    def hook(self, methods, fileobj=None, registers=True):
        """', trigger, action, swallow' arguments for a new hooked object, or ''."""
        if not self.chance(0.5):
            return ""
        trigger = (self.pick(methods), self.pick([1, 1, 1, 2, 3]))
        return ", %r, %r, %r" % (trigger, self.action(fileobj, registers), self.chance(0.3))

    def action(self, fileobj=None, registers=True):
        """What a hook does, on its own side's selector. `registers`: it may register and
        modify (not for an int-subclass fd's own hooks: README, Known differences)."""
        f = fileobj if fileobj and self.chance(0.6) else self.existing_fileobj()
        if not registers:
            return self.pick([
                "sel.unregister(%s)" % f,
                "sel.unregister(%s)" % self.existing_fileobj(),
                "sel.close()",
                "sel.select(0)",
                "sel.get_key(%s)" % f,
                "len(sel.get_map() or ())",
                "raise_('ZeroDivisionError')",
                "raise_('KeyError')",
            ])
        return self.pick([
            "sel.unregister(%s)" % f,
            "sel.unregister(%s)" % f,
            "sel.close()",
            "sel.register(%s, %s)" % (f, self.pick(["1", "2", "3"])),
            "sel.register(%s, 3, 'hook')" % self.existing_fileobj(),
            "sel.modify(%s, %s)" % (f, self.pick(["1", "2", "3"])),
            "sel.modify(%s, 1, 'hook')" % f,
            "sel.select(0)",
            "sel.select(0)",
            "sel.get_key(%s)" % f,
            "len(sel.get_map() or ())",
            "raise_('ZeroDivisionError')",
            "raise_('KeyError')",
        ])

    def existing_fileobj(self):
        """A file object made before (no new object: actions only name existing ones)."""
        r = self.rng.random()
        if r < 0.15 and self.objs["fd"]:
            return "O[%r]" % self.pick(self.objs["fd"])
        if r < 0.25 and self.objs["fileobj"]:
            return "O[%r]" % self.pick(self.objs["fileobj"])
        return self.resource_expr()

    def fileobj(self):
        r = self.rng.random()
        if r < 0.55:
            return self.resource_expr()
        if r < 0.7:
            if self.objs["fd"] and self.chance(0.5):
                return "O[%r]" % self.pick(self.objs["fd"])
            label = self.label("i")
            target = self.pick(self.resources())
            mode = self.pick(["int", "int", "int", "raise", "keyerror", "eqraise"])
            return self.make("fd", label, "O.fd(%r, %r, %r%s)" % (
                label, target, mode,
                self.hook(["hash", "eq", "lt", "ne", "index"], "W[%r]" % target, False)))
        if r < 0.82:
            if self.objs["fileobj"] and self.chance(0.5):
                return "O[%r]" % self.pick(self.objs["fileobj"])
            label = self.label("f")
            return self.new_fileobj(label)
        raw = self.pick(RAW_FDS)
        if raw == "2**64" and self.kind == "Select":
            # README, Known differences: SelectSelector refuses it at register().
            raw = "2**64 - 1"
        return raw

    def fileno_target(self):
        r = self.rng.random()
        if r < 0.6:
            return ("fd", self.pick(self.resources()))
        if r < 0.7 and self.objs["fd"]:
            return ("obj", self.pick(self.objs["fd"]))
        if r < 0.85:
            return ("value", eval(self.pick(FILENO_VALUES)))
        return ("raise", self.pick(FILENO_RAISES))

    def new_fileobj(self, label):
        return self.make("fileobj", label, "O.fileobj(%r, %r%s)" % (
            label, self.fileno_target(), self.hook(["fileno"])))

    def make(self, what, label, src):
        """A step of its own makes the object (so that shrinking can keep it and drop the
        step that first used it); returns the expression naming it."""
        self.both(src)
        self.objs[what].append(label)
        return "O[%r]" % label

    def events(self, fileobj):
        r = self.rng.random()
        if r < 0.75:
            return self.pick(PLAIN_EVENTS)
        if self.objs["ev"] and self.chance(0.3):
            return "O[%r]" % self.pick(self.objs["ev"])
        label = self.label("e")
        value = self.pick([1, 2, 3, 3, 0, 4])
        if self.chance(0.5):
            return self.make("ev", label, "O.ev(%r, %d%s)" % (
                label, value,
                self.hook(["and", "and", "rand", "ne", "eq", "bool"], fileobj)))
        return self.make("ev", label, "O.evint(%r, %d%s)" % (
            label, value, self.hook(["and", "rand", "ne", "eq", "bool", "hash"], fileobj)))

    def data(self, fileobj):
        r = self.rng.random()
        if r < 0.45:
            return self.pick(PLAIN_DATA)
        if self.objs["data"] and self.chance(0.4):
            return "O[%r]" % self.pick(self.objs["data"])
        label = self.label("d")
        cls = ", cls='EqData'" if self.chance(0.2) else ""
        return self.make("data", label, "O.data(%r%s%s)" % (
            label, self.hook(["ne", "eq"], fileobj), cls))

    def timeout(self):
        """(source, the name of a timeout that may wait long, or None)."""
        if self.chance(0.12):
            name = self.pick(LONG_TIMEOUTS)
        else:
            name = self.pick(SHORT_TIMEOUTS)
        long_wait = name if TIMEOUTS[name][1] else None
        if name == "None" and self.chance(0.5):
            return "", long_wait
        if name.split("(")[0] in OBJECT_TIMEOUTS:
            label = self.label("t")
            self.both("O.timeout(%r, %r)" % (label, name))
            return "O[%r]" % label, long_wait
        return name, long_wait

    # -- selector steps -------------------------------------------------------------
    def both(self, src, long_wait=None):
        self.steps.append(("both", src, long_wait))

    def selector_step(self):
        r = self.rng.random()
        if r < 0.24:
            f = self.fileobj()
            if f == "2**64":
                # README, Known differences: never held, so user code that register() runs
                # meanwhile would not see it registered.
                self.both("sel.register(2**64, %s, %s)" % (self.pick(PLAIN_EVENTS),
                                                          self.pick(PLAIN_DATA)))
            else:
                self.both("sel.register(%s, %s, %s)" % (f, self.events(f), self.data(f)))
        elif r < 0.33:
            self.both("sel.unregister(%s)" % self.fileobj())
        elif r < 0.46:
            f = self.fileobj()
            if self.chance(0.3):
                call = "sel.modify(%s, %s)" % (f, self.events(f))
            else:
                call = "sel.modify(%s, %s, %s)" % (f, self.events(f), self.data(f))
            # (README, Known differences: registrations made while modify() stores its key.)
            self.both("O.modifying(lambda: %s, %s)" % (call, f))
        elif r < 0.52:
            self.both("sel.get_key(%s)" % self.fileobj())
        elif r < 0.6:
            self.map_step()
        elif r < 0.88:
            src, long_wait = self.timeout()
            if self.chance(0.1):
                self.both("[k is sel.get_key(k.fileobj) for k, ev in sel.select(%s)]" % src,
                          long_wait)
            else:
                self.both("sel.select(%s)" % src, long_wait)
        elif r < 0.91:
            self.both(self.pick(["sel.close()", "sel.__exit__(None, None, None)"]))
        elif r < 0.94 and self.objs["fileobj"]:
            label = self.pick(self.objs["fileobj"])
            self.both("setattr(O[%r], 'target', %r)" % (label, self.fileno_target()))
        elif r < 0.96:
            self.both("sel.fileno() and None")
        else:
            label = self.label("m")
            self.make("map", label, "O.keep(%r, sel.get_map())" % label)

    def map_step(self):
        if self.objs["map"] and self.chance(0.3):
            m = "O[%r]" % self.pick(self.objs["map"])
        else:
            m = "sel.get_map()"
        f = self.fileobj()
        self.both(self.pick([
            "%s[%s]" % (m, f),
            "%s in %s" % (f, m),
            "%s.get(%s)" % (m, f),
            "%s.get(%s, 'default')" % (m, f),
            "list(%s.items())" % m,
            "list(%s.values())" % m,
            "list(%s.keys())" % m,
            "len(%s)" % m,
            "bool(%s)" % m,
        ]))

    def trial(self, length):
        self.new_socketpair()
        if self.chance(0.5):
            self.new_pipe()
        for _ in range(length):
            if self.chance(0.3):
                self.world_step()
            else:
                self.selector_step()
        self.both("list(sel.get_map().items()) if sel.get_map() is not None else None")
        self.both("sel.select(0)")
        return self.steps


VARIANTS = {"Select": ["plain", "plain", "sub", "override"],
            "Poll": ["plain", "plain", "sub", "override"],
            "Epoll": ["plain", "plain", "sub", "override"],
            "Default": ["plain", "plain", "sub", "override"],
            "Kqueue": ["plain", "plain", "sub"]}


def make_trial(seed, index, classes, high_fds):
    """Trial `index` of `seed`: (kind, variant, steps); the same on every run."""
    rng = random.Random("%s:%d" % (seed, index))
    kind = classes[rng.randrange(len(classes))]
    variant = rng.choice(VARIANTS[kind])
    length = rng.choice([5, 10, 20, 30, 40, 60])
    return kind, variant, Generator(rng, kind, high_fds).trial(length)


# ---------------------------------------------------------------------------
# shrinking and the reproduction script
# ---------------------------------------------------------------------------


def signature(step, outs):
    """What kind of difference: the call that differs, and which part of its outcome."""
    what = step[1].split("(")[0] if step is not None else "the selectors' creation"
    return (what, world.differs(outs))


def shrink(kind, variant, steps, index, outs, high_fds, budget=60.0):
    """Removes steps while the same kind of difference remains; returns the steps kept."""
    want = signature(steps[index] if index >= 0 else None, outs)
    deadline = time.monotonic() + budget

    def fails(candidate):
        i, o = world.run_trial(kind, variant, candidate, high_fds)
        if i is None:
            return None
        if signature(candidate[i] if i >= 0 else None, o) != want:
            return None
        return candidate[:i + 1]

    current = steps[:index + 1] if index >= 0 else []
    chunk = max(1, len(current) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        progress = False
        i = 0
        while i < len(current) and time.monotonic() < deadline:
            candidate = current[:i] + current[i + chunk:]
            kept = fails(candidate)
            if kept is not None:
                current = kept
                progress = True
            else:
                i += chunk
        if not progress:
            if chunk == 1:
                break
            chunk //= 2
    return current


REPRO_HEADER = '''#!/usr/bin/env python3
"""A difference between selectors.{kind}Selector and rselectors.{kind}Selector ({variant}),
found by tests/parity/diff_fuzz.py (seed {seed}, trial {trial}) and shrunk to {n} steps.

Run it with the Python that has rselectors installed: it prints each step and the outcomes,
and exits 1 at the first difference (0 once they agree). What follows is
the steps, then tests/support/diff_fuzz_world.py (which runs them).
"""
'''


def repro_script(kind, variant, steps, seed, trial):
    with open(world.__file__) as f:
        source = f.read()
    lines = [REPRO_HEADER.format(kind=kind, variant=variant, seed=seed, trial=trial,
                                 n=len(steps)), "STEPS = ["]
    lines += ["    %r," % (step,) for step in steps]
    lines += ["]", "", "", "# " + "-" * 75, source, "", "if __name__ == \"__main__\":",
              "    _TESTS_DIR = %r  # tests/support/kqueue_reference.py, for Kqueue on Linux"
              % TESTS_DIR,
              "    sys.path.insert(0, _TESTS_DIR)",
              "    sys.exit(repro_main(%r, %r, STEPS))" % (kind, variant), ""]
    return "\n".join(lines)


def check_repro(script):
    """Runs the script with this interpreter: whether it shows the difference (exit 1)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    try:
        proc = subprocess.run([sys.executable, f.name], capture_output=True, text=True,
                              timeout=300)
        return proc.returncode == 1, proc.stdout + proc.stderr
    finally:
        os.unlink(f.name)


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------


class Finding:
    def __init__(self, seed, trial, kind, variant, steps, index, outs):
        self.seed, self.trial, self.kind, self.variant = seed, trial, kind, variant
        self.steps, self.index, self.outs = steps, index, outs
        self.shrunk = None
        self.script = None


def fuzz(seed, seconds, classes, trials=None, only_trial=None, max_findings=3,
         shrink_budget=60.0, log=print, check=True, brief=False):
    """Runs trials until `seconds` pass (or `trials` ran); returns (findings, stats)."""
    padding = world.pad_fd_table()
    try:
        return _fuzz(seed, seconds, classes, trials, only_trial, max_findings, shrink_budget,
                     log, check, brief, padding[1])
    finally:
        world.unpad(padding)


def _fuzz(seed, seconds, classes, trials, only_trial, max_findings, shrink_budget, log, check,
          brief, high_fds):
    if not high_fds:
        log("note: the open-file limit cannot be raised past %d: no fds at and beyond "
            "FD_SETSIZE this run" % (FD_SETSIZE * 2))
    findings = []
    seen = set()
    stats = {"trials": 0, "steps": 0, "selector_calls": 0}
    start = time.monotonic()
    index = 0 if only_trial is None else only_trial
    while True:
        if only_trial is not None and stats["trials"] >= 1:
            break
        if trials is not None and stats["trials"] >= trials:
            break
        if only_trial is None and trials is None and time.monotonic() - start >= seconds:
            break
        kind, variant, steps = make_trial(seed, index, classes, high_fds)
        count = {"steps": 0, "both": 0}

        def on_step(i, step, outs):
            count["steps"] += 1
            if outs is not None:
                count["both"] += 1

        at, outs = world.run_trial(kind, variant, steps, high_fds, on_step=on_step)
        stats["trials"] += 1
        stats["steps"] += count["steps"]
        stats["selector_calls"] += 2 * count["both"]
        if at is not None:
            sig = (kind,) + signature(steps[at] if at >= 0 else None, outs)
            if sig not in seen:
                seen.add(sig)
                finding = Finding(seed, index, kind, variant, steps, at, outs)
                log("DIFFERENCE in trial %d (%sSelector, %s) at step %d: %s"
                    % (index, kind, variant, at, steps[at][1] if at >= 0 else "start"))
                finding.shrunk = shrink(kind, variant, steps, at, outs, high_fds,
                                        shrink_budget)
                finding.script = repro_script(kind, variant, finding.shrunk, seed, index)
                log("shrunk from %d steps to %d%s" % (
                    at + 1, len(finding.shrunk),
                    "" if brief else "; the reproduction script:\n\n" + finding.script))
                if check:
                    ok, output = check_repro(finding.script)
                    log("--- the script run alone %s:\n%s\n---" % (
                        "shows the difference" if ok else "does NOT show it", output[-4000:]))
                findings.append(finding)
                if len(findings) >= max_findings:
                    break
        index += 1
    stats["seconds"] = time.monotonic() - start
    return findings, stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", default=None,
                        help="the run's seed (any string; default: a random one, printed)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget")
    parser.add_argument("--trials", type=int, default=None,
                        help="stop after this many trials instead")
    parser.add_argument("--trial", type=int, default=None, help="run only this trial")
    parser.add_argument("--classes", default="all",
                        help="comma-separated: Select,Poll,Epoll,Default,Kqueue (default: "
                             "all this build has)")
    parser.add_argument("--max-findings", type=int, default=3,
                        help="stop after this many different differences")
    parser.add_argument("--brief", action="store_true",
                        help="print each reproduction script's run, not the script")
    parser.add_argument("--out", default=None,
                        help="a directory to write each reproduction script into")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else str(random.SystemRandom().randrange(10**9))
    have = available_classes()
    if args.classes == "all":
        classes = have
    else:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        missing = [c for c in classes if c not in have]
        if missing:
            parser.error("not in this build: %s (it has %s)" % (", ".join(missing),
                                                                 ", ".join(have)))
    print("diff_fuzz: seed %s, classes %s, %s" % (
        seed, ",".join(classes),
        "trial %d" % args.trial if args.trial is not None else
        "%d trials" % args.trials if args.trials else "%g s" % args.seconds), flush=True)
    findings, stats = fuzz(seed, args.seconds, classes, trials=args.trials,
                           only_trial=args.trial, max_findings=args.max_findings,
                           log=lambda *a: print(*a, flush=True), brief=args.brief)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for f in findings:
            path = os.path.join(args.out, "repro_%s_%d.py" % (f.seed, f.trial))
            with open(path, "w") as out:
                out.write(f.script)
            print("wrote", path)
    secs = max(stats["seconds"], 1e-9)
    print("diff_fuzz: seed %s: %d trials, %d steps (%d selector calls) in %.1f s: "
          "%.0f steps/s, %.0f selector calls/s; %d difference(s)" % (
              seed, stats["trials"], stats["steps"], stats["selector_calls"], secs,
              stats["steps"] / secs, stats["selector_calls"] / secs, len(findings)))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
