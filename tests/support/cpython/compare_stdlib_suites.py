#!/usr/bin/env python3
"""Run one of the running interpreter's own test packages (or modules) twice, with
``selectors`` resolving to rselectors and on the stdlib, and compare the outcomes per test.

Usage::

    python tests/support/cpython/compare_stdlib_suites.py test.test_asyncio -u network,cpu -j 4

A package is split into its ``test_*`` submodules, each run by ``run_stdlib_suite.py`` in
its own process (a small pool runs them: they mostly wait), once per implementation. Prints
the counts of both runs and every test whose outcome differs. Exit status 0 when every test
that passes on the stdlib passes on rselectors and both ran the same tests; 1 otherwise.
"""

import argparse
import collections
import concurrent.futures
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "run_stdlib_suite.py")
SUMMARY_PREFIX = "CPYTHON_STDLIB_SUITE_SUMMARY "
IMPLS = ("stdlib", "rselectors")


def modules_of(name):
    """The test_* submodules of a package, or the module itself."""
    module = importlib.import_module(name)
    path = getattr(module, "__path__", None)
    if path is None:
        return [name]
    return sorted("%s.%s" % (name, info.name) for info in pkgutil.iter_modules(path)
                  if info.name.startswith("test_"))


def run_driver(driver_args, impl, timeout):
    """One run_stdlib_suite.py run on ``impl`` ("stdlib" or "rselectors"): its summary, or
    a dict with "error" (and "stderr") when it timed out or printed none."""
    cmd = [sys.executable, DRIVER, "-q"] + list(driver_args)
    if impl == "stdlib":
        cmd.append("--stdlib")
    env = dict(os.environ)
    env.pop("PYTHONSAFEPATH", None)
    env.pop("RSELECTORS_INSTALL", None)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=HERE)
    except subprocess.TimeoutExpired as e:
        err = e.stderr
        if isinstance(err, bytes):
            err = err.decode("utf-8", "replace")
        return {"impl": impl, "error": "timed out after %ss" % timeout, "tests": {},
                "stderr": (err or "")[-4000:]}
    lines = [line[len(SUMMARY_PREFIX):] for line in proc.stdout.splitlines()
             if line.startswith(SUMMARY_PREFIX)]
    if not lines:
        return {"impl": impl, "error": "no summary (rc=%r)" % proc.returncode, "tests": {},
                "stderr": proc.stderr[-4000:], "stdout": proc.stdout[-2000:]}
    summary = json.loads(lines[-1])
    summary["returncode"] = proc.returncode
    summary["stderr_tail"] = proc.stderr[-4000:]
    return summary


def run_one(module, impl, resources, timeout):
    summary = run_driver([module] + (["-u", resources] if resources else []), impl, timeout)
    if "error" in summary:
        return summary
    if not summary.get("setup_ok"):
        # A module that skips itself as a whole (e.g. needs a resource) runs no test on
        # either side; any other setup problem is an error.
        problems = summary.get("setup_problems") or []
        if not all(p.startswith("module skipped") for p in problems):
            summary["error"] = "setup problems: %s" % problems
    return summary


def regressions(stdlib_tests, our_tests):
    """The tests that pass on the stdlib and not on rselectors (given the ``tests`` of both
    runs' summaries), each with its outcome on rselectors and the end of what it said."""
    found = []
    for test_id, v in sorted(stdlib_tests.items()):
        if v["outcome"] != "passed":
            continue
        got = our_tests.get(test_id)
        if got is None or got["outcome"] != "passed":
            detail = ((got or {}).get("detail") or "").strip()
            found.append("%s: %s\n%s" % (
                test_id, got["outcome"] if got else "not run",
                "\n".join("      " + line for line in detail.splitlines()[-12:])))
    return found


def counts(tests, run=None):
    found = collections.Counter(v["outcome"] for v in tests.values())
    return "run=%d passed=%d failed=%d errors=%d skipped=%d%s" % (
        len(tests) if run is None else run, found["passed"], found["failed"], found["error"],
        found["skipped"],
        "".join(" %s=%d" % (k, found[k]) for k in ("expected_failure", "unexpected_success")
                if found[k]))


def format_summary(summary, label=None):
    """One driver run's summary for a report: its counts, the consumers' selector classes,
    setup problems, what was skipped and why, and every failure's last line."""
    head = label or summary["impl"]
    if "error" in summary:
        return "%s: DRIVER FAILED: %s\n%s" % (head, summary["error"], summary.get("stderr", ""))
    tests = summary["tests"]
    lines = ["%s (Python %s, DefaultSelector=%s, %.1fs): %s" % (
        head, summary["python"], summary.get("default_selector"), summary.get("seconds") or 0,
        counts(tests, summary["counts"].get("run", 0)))]
    if summary.get("consumers"):
        lines.append("  consumers: %s" % summary["consumers"])
    if not summary.get("setup_ok"):
        lines.append("  SETUP PROBLEMS: %s" % summary.get("setup_problems"))
    skipped = collections.defaultdict(list)
    for test_id, v in sorted(tests.items()):
        if v["outcome"] == "skipped":
            skipped[v.get("detail") or ""].append(test_id)
    for reason, ids in sorted(skipped.items()):
        lines.append("  skipped x%d: %r%s" % (
            len(ids), reason, " (%s)" % ", ".join(ids) if len(ids) <= 3 else ""))
    for test_id, v in sorted(tests.items()):
        if v["outcome"] in ("failed", "error", "unexpected_success"):
            detail = (v.get("detail") or "").strip().splitlines()
            lines.append("  %s %s: %s" % (v["outcome"].upper(), test_id,
                                           detail[-1] if detail else ""))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", help="test package or module, e.g. test.test_asyncio")
    parser.add_argument("-u", dest="resources", default="", help="as python -m test -u")
    parser.add_argument("-j", dest="jobs", type=int, default=4, help="processes at a time")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per module run")
    args = parser.parse_args(argv)

    started = time.monotonic()
    modules = modules_of(args.name)
    jobs = [(m, impl) for m in modules for impl in IMPLS]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {job: pool.submit(run_one, *job, args.resources, args.timeout)
                   for job in jobs}
        results = {job: f.result() for job, f in futures.items()}

    problems = []
    merged = {impl: {} for impl in IMPLS}
    for module in modules:
        for impl in IMPLS:
            result = results[module, impl]
            if "error" in result:
                problems.append("%s on %s: %s" % (module, impl, result["error"]))
            merged[impl].update(result["tests"])
    stdlib, ours = merged["stdlib"], merged["rselectors"]
    differ = sorted(t for t in set(stdlib) | set(ours)
                    if stdlib.get(t, {}).get("outcome") != ours.get(t, {}).get("outcome"))
    for test_id in differ:
        a = stdlib.get(test_id, {}).get("outcome", "not run")
        b = ours.get(test_id, {}).get("outcome", "not run")
        line = "%s: stdlib %s, rselectors %s" % (test_id, a, b)
        if a == "passed" or a == "not run" or b == "not run":
            detail = (ours.get(test_id, {}).get("detail") or "").strip().splitlines()
            problems.append(line + ("\n      " + detail[-1] if detail else ""))
        else:
            print("differs (allowed, not a stdlib pass): " + line)

    python = "%d.%d.%d" % sys.version_info[:3]
    print("%s on CPython %s, %d module(s), %.0fs" % (args.name, python, len(modules),
                                                    time.monotonic() - started))
    for impl in IMPLS:
        print("  %-10s %s" % (impl, counts(merged[impl])))
    print("  outcomes identical: %s" % ("yes" if not differ else "no (%d)" % len(differ)))
    for problem in problems:
        print("  PROBLEM " + problem)
    return 1 if problems or not stdlib else 0


if __name__ == "__main__":
    sys.exit(main())
