#!/usr/bin/env python3
"""Run the running interpreter's own ``test.test_selectors`` on rselectors.

Usage::

    python tests/cpython/run_test_selectors.py            # on rselectors
    python tests/cpython/run_test_selectors.py --stdlib   # reference run

This is ``python -m test -u cpu test_selectors`` with ``rselectors.install()``
done first, so that the suite's ``import selectors`` (and everything else that
imports it, e.g. ``unittest.mock.patch('selectors....')``) resolves to
rselectors.  ``support.use_resources = ['cpu']`` is what ``-u cpu`` does; it
enables ``test_above_fd_setsize``.  With ``--stdlib`` nothing is installed and
the run checks that ``selectors`` is the standard library module.

Progress goes to stderr; the last line on stdout is::

    CPYTHON_TEST_SELECTORS_SUMMARY {json}

with ``impl``, ``python``, ``setup_ok``, ``setup_problems``, ``counts`` and
``tests``: {test id: {"outcome": passed|failed|error|skipped|
expected_failure|unexpected_success, "detail": skip reason or traceback}}.
Exit status: 0 all passed, 1 some test failed, 2 setup/identity problem.
"""

import argparse
import json
import os
import platform
import sys
import time
import unittest

SUMMARY_PREFIX = "CPYTHON_TEST_SELECTORS_SUMMARY "

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


def _install_rselectors():
    import rselectors
    install = getattr(rselectors, "install", None)
    if install is None:
        from rselectors._install import install
    install()
    return rselectors


def _check_identity(stdlib_run, module):
    """Problems with which `selectors` the suite sees (empty list: fine)."""
    import selectors
    problems = []
    seen = module.selectors
    if stdlib_run:
        stdlib_dir = os.path.dirname(os.path.abspath(os.__file__))
        if "rselectors" in sys.modules:
            problems.append("rselectors was imported in the --stdlib run")
        if seen.__name__ != "selectors":
            problems.append("test_selectors.selectors is %r" % (seen,))
        where = os.path.abspath(getattr(seen, "__file__", "") or "")
        if os.path.dirname(where) != stdlib_dir:
            problems.append("selectors comes from %r, not the stdlib (%r)"
                            % (where, stdlib_dir))
        if seen.DefaultSelector.__module__ != "selectors":
            problems.append("DefaultSelector.__module__ is %r"
                            % seen.DefaultSelector.__module__)
    else:
        rselectors = sys.modules.get("rselectors")
        if rselectors is None:
            problems.append("rselectors is not imported")
        if seen is not rselectors:
            problems.append("test.test_selectors.selectors is %r, not "
                            "rselectors" % (seen,))
        if sys.modules.get("selectors") is not rselectors:
            problems.append("sys.modules['selectors'] is %r"
                            % (sys.modules.get("selectors"),))
        if selectors is not rselectors:
            problems.append("`import selectors` gives %r" % (selectors,))
        module_name = getattr(seen.DefaultSelector, "__module__", "") or ""
        if not module_name.startswith("rselectors"):
            problems.append("selectors.DefaultSelector.__module__ is %r"
                            % module_name)
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stdlib", action="store_true",
                        help="run on the standard library selectors")
    parser.add_argument("-k", dest="patterns", action="append", default=[],
                        help="only run tests matching this pattern "
                             "(unittest -k semantics; repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="less progress output on stderr")
    args = parser.parse_args(argv)

    impl = "stdlib" if args.stdlib else "rselectors"
    summary = {
        "impl": impl,
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
        _install_rselectors()

    from test import support
    support.use_resources = ["cpu"]  # what `python -m test -u cpu` does

    import test.test_selectors as test_module

    problems = _check_identity(args.stdlib, test_module)
    if problems:
        summary["setup_problems"] = problems
        for problem in problems:
            print("run_test_selectors: %s" % problem, file=sys.stderr)
        emit()
        return 2
    summary["setup_ok"] = True
    summary["selectors_module"] = repr(test_module.selectors)
    summary["default_selector"] = "%s.%s" % (
        test_module.selectors.DefaultSelector.__module__,
        test_module.selectors.DefaultSelector.__qualname__)

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
    summary["tests"] = result.outcomes
    counts = {"run": result.testsRun}
    for entry in result.outcomes.values():
        counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
    summary["counts"] = counts
    emit()
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
