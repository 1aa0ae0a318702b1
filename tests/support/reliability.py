"""Helpers of the reliability tests (tests/reliability/) and the Hypothesis profiles.

Hypothesis profiles
-------------------
``reliability-ci`` (the default used by the state-machine tests) and ``long`` are registered
here.  The hypothesis pytest plugin loads ``--hypothesis-profile`` in ``pytest_configure``,
before test modules are imported; tests/conftest.py imports this module before that, so::

    python -m pytest --hypothesis-profile=long tests/reliability/test_state_machine.py

(``RSELECTORS_HYPOTHESIS_PROFILE=long`` in the environment selects it too, without ``-p``;
``RSELECTORS_HYPOTHESIS_MAX_EXAMPLES=N`` overrides the number of examples, e.g. under valgrind.)
"""

import json
import os
import subprocess
import sys
import time

try:  # a declared test dependency; the files that do not use it run without it
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover
    settings = None

if settings is not None:
    _COMMON = dict(
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.data_too_large],
    )
    settings.register_profile("reliability-ci", max_examples=120, stateful_step_count=40,
                              **_COMMON)
    settings.register_profile("long", max_examples=5000, stateful_step_count=120, **_COMMON)


def machine_settings():
    """The settings for the state machines: the ``long`` profile when it was selected
    (``--hypothesis-profile=long`` or the environment variable), else ``reliability-ci``."""
    name = os.environ.get("RSELECTORS_HYPOTHESIS_PROFILE") or settings.get_current_profile_name()
    chosen = settings.get_profile("long" if name == "long" else "reliability-ci")
    n = os.environ.get("RSELECTORS_HYPOTHESIS_MAX_EXAMPLES")  # e.g. fewer under valgrind
    if n:
        chosen = settings(chosen, max_examples=int(n))
    return chosen


def open_fd_count():
    return len(os.listdir("/proc/self/fd"))


def join_all(threads, timeout):
    """Join every thread within `timeout` seconds in total; return the ones still alive."""
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threads if t.is_alive()]


def run_python(code, *args, timeout=60, env_extra=None):
    """Run `python -c code` in a subprocess; return CompletedProcess (text)."""
    env = dict(os.environ)
    if env_extra:
        env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def start_in_child(fn):
    """Runs fn() in a forked child and returns at once, with a function that waits for the
    child and returns fn()'s JSON-able result (or raises its error): the caller may work
    meanwhile, beside the child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(r)
            try:
                out = {"ok": fn()}
            except BaseException as exc:  # noqa: BLE001
                out = {"error": "%s: %s" % (type(exc).__name__, exc)}
                code = 1
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(code)
    os.close(w)

    def result():
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        out = json.loads(data or b"{}")
        assert "error" not in out, out["error"]
        assert os.waitstatus_to_exitcode(status) == 0
        return out["ok"]

    return result
