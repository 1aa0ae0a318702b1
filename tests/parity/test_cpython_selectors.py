"""CPython's own test_selectors, run on rselectors and on the stdlib.

The driver ``tests/support/cpython/run_stdlib_suite.py`` (the one driver of CPython's
suites) runs the running interpreter's ``test.test_selectors`` with ``-u cpu``
(so ``test_above_fd_setsize`` runs) in a subprocess, once with
``rselectors.install()`` and once on the standard library.  Every test that
passes on the stdlib must pass on rselectors: no test is excluded.
"""

import concurrent.futures
import sys

import pytest

from support.cpython import compare_stdlib_suites
from support.cpython.compare_stdlib_suites import format_summary

SUITE = ["test.test_selectors", "-u", "cpu"]
TIMEOUT = 300
IMPLS = ("stdlib", "rselectors")

# Where libkqueue (KqueueSelector on Linux, the `libkqueue` feature) differs from a BSD kernel,
# CPython's KqueueSelectorTestCase fails; README "KqueueSelector on libkqueue" has each.
# test id -> the line its failure must end with.
LIBKQUEUE_DIFFERENCES = {
    # A change on a closed fd fails with EFAULT (14), where the BSD kernels say EBADF (9).
    "test.test_selectors.KqueueSelectorTestCase.test_register_bad_fd":
        "AssertionError: 14 != 9",
    # One kevent() call reports at most 512 events (libkqueue's MAX_KEVENT).
    "test.test_selectors.KqueueSelectorTestCase.test_above_fd_setsize":
        "AssertionError: %d != 512",
}


def _run_driver(impl, *extra):
    return compare_stdlib_suites.run_driver(SUITE + list(extra), impl, TIMEOUT)


@pytest.fixture(scope="module")
def results():
    # The two runs at once: they spend most of their time waiting.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        out = dict(zip(IMPLS, pool.map(_run_driver, IMPLS)))
    for impl in IMPLS:
        print("\n" + format_summary(out[impl]))
    return out


def _report(results):
    return "\n".join(format_summary(results[impl]) for impl in ("stdlib", "rselectors"))


def test_stdlib_reference_run(results):
    summary = results["stdlib"]
    report = _report(results)
    assert "error" not in summary, report
    assert summary["setup_ok"], report
    assert summary["counts"]["run"] > 0, report
    # -u cpu semantics: no test is skipped for a missing resource, and the
    # scalable selectors' test_above_fd_setsize really runs.
    resource_skips = [t for t, v in summary["tests"].items()
                      if v["outcome"] == "skipped"
                      and "resource" in (v.get("detail") or "")]
    assert not resource_skips, report
    # Windows has no scalable selector (ScalableSelectorMixIn): SelectSelector only.
    assert sys.platform == "win32" or any(
        t.endswith(".test_above_fd_setsize") and v["outcome"] == "passed"
        for t, v in summary["tests"].items()), report


def test_rselectors_run_uses_rselectors(results):
    summary = results["rselectors"]
    report = _report(results)
    assert "error" not in summary, report
    assert summary["setup_ok"], report
    assert summary["default_selector"].startswith("rselectors"), report
    assert summary["counts"]["run"] > 0, report


def test_rselectors_passes_what_stdlib_passes(results):
    stdlib, ours = results["stdlib"], results["rselectors"]
    report = _report(results)
    assert "error" not in stdlib and "error" not in ours, report
    assert stdlib["setup_ok"] and ours["setup_ok"], report
    regressions = compare_stdlib_suites.regressions(stdlib["tests"], ours["tests"])
    assert not regressions, "%d test(s) pass on the stdlib but not on " \
        "rselectors:\n%s\n\n%s" % (len(regressions), "\n".join(regressions),
                                   report)
    # Same set of tests on both sides (a test missing on one side would be hidden).
    assert set(stdlib["tests"]) == set(ours["tests"]), report


def test_kqueue_selector_test_case():
    """KqueueSelectorTestCase on rselectors' KqueueSelector: natively on macOS and the BSDs (where
    the tests above also compare it with the stdlib's), on libkqueue on Linux, where the stdlib
    has no KqueueSelector and the documented libkqueue differences are the only failures."""
    import rselectors

    if not hasattr(rselectors, "KqueueSelector"):
        pytest.skip("this build has no KqueueSelector: on Linux it needs the libkqueue feature "
                    "(README \"KqueueSelector on libkqueue\")")
    on_libkqueue = rselectors._rselectors._ON_LIBKQUEUE
    summary = _run_driver("rselectors", "-k", "KqueueSelectorTestCase")
    report = format_summary(summary)
    assert "error" not in summary and summary["setup_ok"], report
    tests = summary["tests"]
    assert len(tests) >= 20, report
    nfds = None
    problems = []
    for test_id, v in sorted(tests.items()):
        expected = LIBKQUEUE_DIFFERENCES.get(test_id) if on_libkqueue else None
        if expected is None:
            # Skips are the suite's own (e.g. test_modify_unregister is for poll-like classes).
            if v["outcome"] not in ("passed", "skipped"):
                problems.append("%s: %s" % (test_id, v["outcome"]))
            continue
        last = (v.get("detail") or "").strip().splitlines()[-1:] or [""]
        if "%d" in expected:
            # test_above_fd_setsize: NUM_FDS // 2 fds were ready, 512 were reported.
            got = last[0].split()
            nfds = int(got[1]) if len(got) == 4 and got[1].isdigit() else None
            expected = expected % (nfds or -1)
        if v["outcome"] != "failed" or last[0] != expected:
            problems.append("%s: a libkqueue difference no longer seen as documented "
                            "(expected %r, got %s %r)" % (test_id, expected, v["outcome"], last[0]))
    assert not problems, "\n".join(problems) + "\n\n" + report
    if on_libkqueue:
        assert nfds is not None and nfds > 512, report
