#!/usr/bin/env python3
"""Run one of the running interpreter's own test modules with ``selectors``
resolving to rselectors (or, with ``--stdlib``, on the standard library).

Usage::

    python tests/cpython/run_stdlib_suite.py test.test_socketserver -u network
    python tests/cpython/run_stdlib_suite.py test.test_subprocess -k communicate
    python tests/cpython/run_stdlib_suite.py --stdlib test.test_socketserver -u network

The same approach as ``run_test_selectors.py`` (whose result recorder this
reuses): ``rselectors.install()`` first, before the test module (and the
stdlib modules it uses: ``subprocess``, ``socketserver``, ...) is imported,
``support.use_resources`` set as ``python -m test -u ...`` would, the module's
tests loaded with unittest's loader (``-k`` patterns are unittest's
``testNamePatterns``: ``-k communicate`` runs every test whose id contains
"communicate") and run.  Before running, the driver checks which selector
classes the consumers really hold: with rselectors,
``sys.modules['selectors']`` is rselectors, ``subprocess._PopenSelector`` and
``socketserver._ServerSelector`` are ``rselectors.PollSelector``, and the test
module's own ``selectors`` global (if any) is rselectors; with ``--stdlib``
they are the standard library's and rselectors is not imported.

The last line on stdout is ``CPYTHON_STDLIB_SUITE_SUMMARY {json}`` with the
same fields as run_test_selectors.py's summary plus ``module`` and
``consumers`` (what each consumer attribute was).  Exit status: 0 all passed,
1 some test failed, 2 setup/identity problem.
"""

import argparse
import importlib
import json
import os
import platform
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_test_selectors import RecordingResult  # noqa: E402

SUMMARY_PREFIX = "CPYTHON_STDLIB_SUITE_SUMMARY "

# module name -> attribute holding the selector class the module uses.
CONSUMERS = {
    "subprocess": "_PopenSelector",
    "socketserver": "_ServerSelector",
    "multiprocessing.connection": "_WaitSelector",
}


def _describe(obj):
    if isinstance(obj, type):
        return "%s.%s" % (obj.__module__, obj.__qualname__)
    return repr(obj)


def _consumers():
    """{"subprocess._PopenSelector": "rselectors.PollSelector", ...}."""
    seen = {}
    for modname, attr in CONSUMERS.items():
        module = sys.modules.get(modname)
        if module is not None and hasattr(module, attr):
            seen["%s.%s" % (modname, attr)] = _describe(getattr(module, attr))
    return seen


def _check_identity(stdlib_run, test_module):
    problems = []
    selectors_now = sys.modules.get("selectors")
    in_test = getattr(test_module, "selectors", None)
    if stdlib_run:
        stdlib_dir = os.path.dirname(os.path.abspath(os.__file__))
        if "rselectors" in sys.modules:
            problems.append("rselectors was imported in the --stdlib run")
        import selectors
        where = os.path.abspath(getattr(selectors, "__file__", "") or "")
        if os.path.dirname(where) != stdlib_dir:
            problems.append("selectors comes from %r, not the stdlib" % where)
        expected_module = "selectors"
    else:
        rselectors = sys.modules.get("rselectors")
        if rselectors is None:
            problems.append("rselectors is not imported")
        if selectors_now is not rselectors:
            problems.append("sys.modules['selectors'] is %r" % (selectors_now,))
        if in_test is not None and in_test is not rselectors:
            problems.append("%s.selectors is %r, not rselectors"
                            % (test_module.__name__, in_test))
        expected_module = "rselectors"
    for modname, attr in CONSUMERS.items():
        module = sys.modules.get(modname)
        if module is None or not hasattr(module, attr):
            continue
        cls = getattr(module, attr)
        if getattr(cls, "__module__", None) != expected_module:
            problems.append("%s.%s is %s, expected a class of %s"
                            % (modname, attr, _describe(cls), expected_module))
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("module", help="test module, e.g. test.test_socketserver")
    parser.add_argument("--stdlib", action="store_true",
                        help="run on the standard library selectors")
    parser.add_argument("-k", dest="patterns", action="append", default=[],
                        help="only run tests whose id matches this pattern "
                             "(unittest -k semantics; repeatable)")
    parser.add_argument("-u", dest="resources", default="",
                        help="comma-separated test resources to enable, as "
                             "with python -m test -u")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="less progress output on stderr")
    args = parser.parse_args(argv)

    impl = "stdlib" if args.stdlib else "rselectors"
    summary = {
        "impl": impl,
        "module": args.module,
        "patterns": args.patterns,
        "python": platform.python_version(),
        "executable": sys.executable,
        "setup_ok": False,
        "setup_problems": [],
        "counts": {},
        "tests": {},
    }

    def emit():
        sys.stdout.flush()
        print(SUMMARY_PREFIX + json.dumps(summary, sort_keys=True))
        sys.stdout.flush()

    if not args.stdlib:
        import rselectors
        rselectors.install()

    from test import support
    support.use_resources = [r for r in args.resources.split(",") if r]

    try:
        test_module = importlib.import_module(args.module)
    except unittest.SkipTest as e:  # e.g. a module-level support.requires()
        summary["setup_problems"] = ["module skipped: %s" % e]
        emit()
        return 2
    # Consumers the tests use but the module may import lazily.
    for modname in CONSUMERS:
        importlib.import_module(modname)

    problems = _check_identity(args.stdlib, test_module)
    summary["consumers"] = _consumers()
    if problems:
        summary["setup_problems"] = problems
        for problem in problems:
            print("run_stdlib_suite: %s" % problem, file=sys.stderr)
        emit()
        return 2
    summary["setup_ok"] = True
    selectors = sys.modules["selectors"]
    summary["selectors_module"] = repr(selectors)
    summary["default_selector"] = _describe(selectors.DefaultSelector)

    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = [p if "*" in p else "*%s*" % p
                                   for p in args.patterns]
    suite = loader.loadTestsFromModule(test_module)
    runner = unittest.TextTestRunner(stream=sys.stderr,
                                     verbosity=1 if args.quiet else 2,
                                     resultclass=RecordingResult)
    started = time.monotonic()
    result = runner.run(suite)
    summary["seconds"] = round(time.monotonic() - started, 3)
    # Re-check after the run: a test may have patched a consumer and not
    # restored it (reported, not fatal).
    summary["consumers_after"] = _consumers()
    summary["tests"] = result.outcomes
    counts = {"run": result.testsRun}
    for entry in result.outcomes.values():
        counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
    summary["counts"] = counts
    emit()
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
