"""What every test folder shares: the opt-in markers (slow, consumer_suite, posix_only) and the
fixtures (kind, differ, module, socketpair, ...). Helpers a test imports live in the support
package (tests/support/: `from support.kinds import KINDS`); tests/README.md says where a test
goes.

rselectors is imported lazily inside fixtures so that this conftest never breaks collection of
other test files; a missing rselectors makes every test using these fixtures *error* (never
skip).
"""

import os
import socket
import sys

import pytest

# Registers the Hypothesis profiles ("reliability-ci", "long"): --hypothesis-profile=long works.
import support.reliability  # noqa: F401
from support.differential import run_differential
from support.kinds import KINDS, module_pairs, rselectors_module, selector_class, stdlib_module

# The reference runs of the stdlib in child processes must stay the stdlib even for a user
# who has RSELECTORS_INSTALL=1 set (python/rselectors_install.pth honours it).
os.environ.pop("RSELECTORS_INSTALL", None)

# Tests the default run leaves out, each kind with the variable that lets it in; .ci/run sets
# them, each in a stage of its own. marker -> (variable, skip reason).
OPT_IN = {
    "slow": ("RSELECTORS_SLOW",
             "soak-type test: runs with RSELECTORS_SLOW=1 (.ci/run's slow stage does)"),
    "consumer_suite": ("RSELECTORS_CONSUMER_SUITES",
                       "a consumer's own test suite, run on both modules (tens of seconds): "
                       "runs with RSELECTORS_CONSUMER_SUITES=1 (.ci/run's consumer-suites "
                       "stage does)"),
}


def _opted_in(variable):
    return os.environ.get(variable, "") not in ("", "0")


def pytest_collection_modifyitems(config, items):
    """Soak-type tests (@pytest.mark.slow) and consumers' own suites
    (@pytest.mark.consumer_suite) run only when their variable is set: `python -m pytest` on
    one interpreter stays at a few minutes, and .ci/run runs them in stages of their own.
    On Windows, tests marked @pytest.mark.posix_only("what") skip, saying what they need."""
    if sys.platform == "win32":
        for item in items:
            mark = item.get_closest_marker("posix_only")
            if mark is not None:
                item.add_marker(pytest.mark.skip(reason="POSIX only: " + mark.args[0]))
    for marker, (variable, reason) in OPT_IN.items():
        if _opted_in(variable):
            continue
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if item.get_closest_marker(marker) is not None:
                item.add_marker(skip)


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def kind(request):
    """Selector kind: "Epoll", "Poll", "Select", and "Kqueue" on a libkqueue build (test ids
    use these names)."""
    return request.param


@pytest.fixture
def differ(kind):
    """differ(scenario) -> run scenario on both modules and compare records."""

    def run(scenario, kind=kind):
        return run_differential(scenario, kind)

    return run


@pytest.fixture
def differential():
    """differential(scenario, kind) for tests not parametrized by ``kind``."""
    return run_differential


@pytest.fixture
def rselectors():
    return rselectors_module()


@pytest.fixture
def stdlib_selectors():
    return stdlib_module()


@pytest.fixture
def classes(kind):
    """(stdlib class, rselectors class) for the current kind."""
    return (selector_class(stdlib_module(), kind), selector_class(rselectors_module(), kind))


@pytest.fixture(params=["stdlib", "rselectors"])
def module(request):
    """Parametrize a test over both modules (for timing/threads/signals tests); in a test of
    one `kind`, the stdlib is `stdlib_for(kind)`."""
    kind = request.getfixturevalue("kind") if "kind" in request.fixturenames else None
    return dict(module_pairs(kind))[request.param]


@pytest.fixture
def socketpair():
    """Factory: socketpair() -> (a, b); everything is closed at teardown."""
    made = []

    def make(*args):
        a, b = socket.socketpair(*args)
        made.extend((a, b))
        return a, b

    yield make
    for s in made:
        s.close()


@pytest.fixture
def closer():
    """closer(obj_or_fn) registers a cleanup (obj.close() or fn()) run at teardown."""
    fns = []

    def add(x):
        fns.append(x if callable(x) and not hasattr(x, "close") else x.close)
        return x

    yield add
    for fn in reversed(fns):
        try:
            fn()
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture
def ms_switch():
    """Sets rselectors' millisecond switch for one test (ms_switch(True)) and restores it after."""
    rselectors = rselectors_module()
    before = rselectors.millisecond_timeouts()
    yield rselectors.set_millisecond_timeouts
    rselectors.set_millisecond_timeouts(before)
