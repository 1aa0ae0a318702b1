#!/usr/bin/env python3
"""Run one of the running interpreter's own test modules with ``selectors``
resolving to rselectors (or, with ``--stdlib``, on the standard library).

Usage::

    python tests/support/cpython/run_stdlib_suite.py test.test_selectors -u cpu
    python tests/support/cpython/run_stdlib_suite.py test.test_socketserver -u network
    python tests/support/cpython/run_stdlib_suite.py test.test_subprocess -k communicate
    python tests/support/cpython/run_stdlib_suite.py --stdlib test.test_socketserver -u network

``python -m test -u ... MODULE`` with ``rselectors.install()`` done first,
before the test module (and the stdlib modules it uses: ``subprocess``,
``socketserver``, ...) is imported, so that the suite's ``import selectors``
(and ``unittest.mock.patch('selectors....')``) resolves to rselectors;
``support.use_resources`` set as ``python -m test -u ...`` would, the module's
tests loaded with unittest's loader (``-k`` patterns are unittest's
``testNamePatterns``: ``-k communicate`` runs every test whose id contains
"communicate") and run.  Before running, the driver checks which selector
classes the consumers really hold: with rselectors,
``sys.modules['selectors']`` is rselectors, ``subprocess._PopenSelector`` and
``socketserver._ServerSelector`` are ``rselectors.PollSelector``, and the test
module's own ``selectors`` global (if any) is rselectors; with ``--stdlib``
they are the standard library's and rselectors is not imported.

The last line on stdout is ``CPYTHON_STDLIB_SUITE_SUMMARY {json}`` with
``impl``, ``module``, ``python``, ``setup_ok``, ``setup_problems``,
``default_selector``, ``consumers`` (what each consumer attribute was),
``counts`` and ``tests``: {test id: {"outcome": passed|failed|error|skipped|
expected_failure|unexpected_success, "detail": skip reason or traceback}}.
The one driver of CPython's suites: ``tests/parity/test_cpython_selectors.py``
(``test.test_selectors``), ``tests/consumers/test_cpython_suites.py`` and
``compare_stdlib_suites.py`` run it.  Exit status: 0 all passed,
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

SUMMARY_PREFIX = "CPYTHON_STDLIB_SUITE_SUMMARY "

_RANK = {"passed": 0, "expected_failure": 0, "skipped": 1,
         "unexpected_success": 2, "failed": 3, "error": 4}


class RecordingResult(unittest.TextTestResult):
    """TextTestResult that also records one outcome per test id."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes = {}

    def _record(self, test, outcome, detail=None):
        entry = {"outcome": outcome}
        if detail is not None:
            entry["detail"] = detail
        test_id = test.id()
        previous = self.outcomes.get(test_id)
        if previous is None or _RANK[outcome] > _RANK[previous["outcome"]]:
            self.outcomes[test_id] = entry

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failed", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record(test, "expected_failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record(test, "unexpected_success")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            outcome = ("failed" if issubclass(err[0], test.failureException)
                       else "error")
            self._record(test, outcome,
                         "%s: %s" % (subtest.id(),
                                     self._exc_info_to_string(err, test)))


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
    default = getattr(sys.modules.get("selectors"), "DefaultSelector", None)
    if not (getattr(default, "__module__", None) or "").startswith(expected_module):
        problems.append("selectors.DefaultSelector is %s, expected a class of %s"
                        % (_describe(default), expected_module))
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
