"""CPython's own tests of the stdlib modules built on ``selectors``, run with
``selectors`` resolving to rselectors and, for reference, on the stdlib.

``tests/support/cpython/run_stdlib_suite.py`` runs one test module of the running
interpreter in a subprocess, after ``rselectors.install()`` (or not, with
``--stdlib``), and checks before running that ``sys.modules['selectors']``,
``subprocess._PopenSelector``, ``socketserver._ServerSelector`` and
``multiprocessing.connection._WaitSelector`` are rselectors' (or the
stdlib's).  Every test that passes on the stdlib must pass on rselectors
(compared per test id): no test is excluded.

Suites:

- ``test.test_socketserver`` (with ``-u network``, as the module requires);
- ``test.test_subprocess``, only the tests whose id contains "communicate"
  (including ``ProcessTestCaseNoPoll``, which drives
  ``selectors.SelectSelector``);
- the ``SelectorEventLoop`` parts of ``test.test_asyncio``: ``test_events``
  (the event loop tests on Epoll, Poll and Select selectors),
  ``test_selector_events``, ``test_sock_lowlevel``, ``test_streams``,
  ``test_server``, ``test_unix_events`` and ``test_subprocess``.

The 2 x 9 runs go through a small process pool (they spend most of their time
waiting), about half a minute of wall-clock time in all: marked ``consumer_suite``, so they
run with ``RSELECTORS_CONSUMER_SUITES=1`` (``.ci/run``'s consumer-suites stage), not in the
default ``python -m pytest``.
"""

import concurrent.futures

import pytest

from support.cpython import compare_stdlib_suites

pytestmark = pytest.mark.consumer_suite

TIMEOUT = 240
WORKERS = 6

# suite name -> driver arguments.
SUITES = {
    "test_socketserver": ["test.test_socketserver", "-u", "network"],
    "test_subprocess[communicate]": ["test.test_subprocess", "-k", "communicate"],
    "test_asyncio.test_events": ["test.test_asyncio.test_events", "-u", "network,cpu"],
    "test_asyncio.test_subprocess": ["test.test_asyncio.test_subprocess"],
    "test_asyncio.test_sock_lowlevel": ["test.test_asyncio.test_sock_lowlevel", "-u", "network"],
    "test_asyncio.test_selector_events": ["test.test_asyncio.test_selector_events"],
    "test_asyncio.test_unix_events": ["test.test_asyncio.test_unix_events"],
    "test_asyncio.test_streams": ["test.test_asyncio.test_streams", "-u", "network"],
    "test_asyncio.test_server": ["test.test_asyncio.test_server", "-u", "network"],
}

def _run_driver(suite, impl):
    summary = compare_stdlib_suites.run_driver(SUITES[suite], impl, TIMEOUT)
    summary["suite"] = suite
    return summary


def _format(summary):
    return compare_stdlib_suites.format_summary(summary, "%s on %s" % (summary["suite"],
                                                                       summary["impl"]))


@pytest.fixture(scope="module")
def results():
    jobs = [(suite, impl) for suite in SUITES for impl in ("stdlib", "rselectors")]
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        futures = {job: pool.submit(_run_driver, *job) for job in jobs}
        out = {job: f.result() for job, f in futures.items()}
    for job in jobs:
        print("\n" + _format(out[job]))
    return out


@pytest.mark.parametrize("suite", list(SUITES))
def test_suite_passes_on_rselectors_what_it_passes_on_stdlib(results, suite):
    stdlib, ours = results[suite, "stdlib"], results[suite, "rselectors"]
    report = _format(stdlib) + "\n" + _format(ours)
    assert "error" not in stdlib and "error" not in ours, report
    assert stdlib["setup_ok"] and ours["setup_ok"], report
    # The reference run really ran on the stdlib and ours on rselectors.
    assert stdlib["default_selector"] == "selectors.EpollSelector", report
    assert ours["default_selector"] == "rselectors.EpollSelector", report
    for attr, cls in ours["consumers"].items():
        assert cls.startswith("rselectors."), (attr, report)
    for attr, cls in stdlib["consumers"].items():
        assert cls.startswith("selectors."), (attr, report)
    assert stdlib["counts"]["run"] > 0, report
    assert stdlib["counts"].get("passed", 0) > 0, report
    regressions = compare_stdlib_suites.regressions(stdlib["tests"], ours["tests"])
    assert not regressions, "%d test(s) pass on the stdlib but not on " \
        "rselectors:\n%s\n\n%s" % (len(regressions), "\n".join(regressions), report)
    # Same set of tests on both sides (a test missing on one side would be hidden).
    assert set(stdlib["tests"]) == set(ours["tests"]), report


def test_selected_suites_are_not_trivial(results):
    """The -k filter and resources really select the tests meant."""
    sp = results["test_subprocess[communicate]", "stdlib"]
    assert "error" not in sp, _format(sp)
    ids = list(sp["tests"])
    assert all("communicate" in t for t in ids), ids
    assert any(".ProcessTestCaseNoPoll." in t for t in ids), ids
    assert any("timeout" in t for t in ids), ids
    ss = results["test_socketserver", "stdlib"]
    assert "error" not in ss, _format(ss)
    assert ss["counts"].get("passed", 0) >= 20, _format(ss)
    ev = results["test_asyncio.test_events", "rselectors"]
    assert "error" not in ev, _format(ev)
    for cls in ("EPollEventLoopTests", "PollEventLoopTests", "SelectEventLoopTests"):
        assert any((".%s." % cls) in t and v["outcome"] == "passed"
                   for t, v in ev["tests"].items()), cls
