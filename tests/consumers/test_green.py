"""gevent, eventlet and gunicorn's gevent worker on rselectors, side by side with the stdlib.

Monkey-patching is process-wide, so every scenario runs in a child process twice: with
plain `python` (the stdlib's `selectors`) and with `python -m rselectors` (rselectors
installed before the program patches), and the two must report the same. The reverse
order (patch, then `rselectors.install()`) must leave the patched stdlib module in place.

gevent's own `test__selectors` and `test__monkey_selectors` (shipped in its wheel) run here
too. gunicorn's gevent tests (about a minute) are a `consumer_suite`: they run with
RSELECTORS_CONSUMER_SUITES=1 and RSELECTORS_GUNICORN_SDIST naming an unpacked gunicorn-27.0.1
sdist (`.ci/run`'s consumer-suites stage sets both).
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

gevent = pytest.importorskip("gevent", reason="pip install '.[test]' installs gevent")
eventlet = pytest.importorskip("eventlet", reason="pip install '.[test]' installs eventlet")

MODES = ["stdlib", "rselectors"]
TIMEOUT = 120


def child_env():
    env = dict(os.environ)
    env.pop("RSELECTORS_INSTALL", None)
    env["PYTHONWARNINGS"] = "default"
    return env


def run_mode(mode, args, cwd=None, timeout=TIMEOUT, env=None):
    prefix = [sys.executable] + (["-m", "rselectors"] if mode == "rselectors" else [])
    return subprocess.run(prefix + args, cwd=cwd, env=env or child_env(), capture_output=True,
                          text=True, timeout=timeout)


def run_code(mode, code):
    """Run `code` in a child; return the JSON object it prints last."""
    proc = run_mode(mode, ["-c", textwrap.dedent(code)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_both(code):
    """Run `code` on the stdlib and on rselectors; the same report (but the module name)."""
    std, ours = (run_code(mode, code) for mode in MODES)
    assert std.pop("module") == "selectors" and ours.pop("module") == "rselectors"
    assert ours == std
    return std


# Cooperative: while the main greenlet waits 0.3 s in sel.select() on a socket with nothing
# to read, another greenlet must get to run (a blocking select would stall the hub).
GEVENT_SCENARIO = """
    from gevent import monkey
    monkey.patch_all()
    import json, socket, sys, gevent
    import selectors
    from gevent.selectors import GeventSelector

    out = {"module": selectors.__name__,
           "is_stdlib_or_ours": sys.modules["selectors"] is selectors,
           "default": selectors.DefaultSelector.__name__,
           "has_epoll": hasattr(selectors, "EpollSelector"),
           "select_patched": hasattr(selectors.SelectSelector._select, "_gevent_monkey"),
           "isinstance": isinstance(GeventSelector(), selectors.BaseSelector)}
    a, b = socket.socketpair()
    sel = selectors.DefaultSelector()
    key = sel.register(a, selectors.EVENT_READ, "data")
    out["key"] = [key.events, key.data]
    out["empty"] = sel.select(0)
    b.send(b"x")
    out["ready"] = [(k.data, ev) for k, ev in sel.select(1)]
    out["unregistered"] = sel.unregister(a).data
    sel.close()

    def cooperative(cls):
        ticks = []
        glet = gevent.spawn(lambda: ticks.append(1))
        with cls() as s:
            c, d = socket.socketpair()
            s.register(c, selectors.EVENT_READ)
            ready = s.select(0.3)
            s.unregister(c)
            c.close(); d.close()
        glet.join(5)
        return [ready, ticks]

    for name in ("SelectSelector", "PollSelector", "DefaultSelector"):
        out["coop_" + name] = cooperative(getattr(selectors, name))
    print(json.dumps(out))
"""


def test_gevent_patch_all_and_gevent_selector():
    std = run_both(GEVENT_SCENARIO)
    assert std["default"] == "GeventSelector" and std["ready"] == [["data", 1]]
    assert std["coop_SelectSelector"] == [[], [1]]


PATCH_THEN_INSTALL = """
    import json, sys, warnings
    {patch}
    import selectors, asyncio.selector_events
    patched = selectors.DefaultSelector
    import rselectors
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rselectors.install()
    print(json.dumps({{
        "warnings": [(w.category.__name__, "already monkey-patched" in str(w.message))
                     for w in caught],
        "still_stdlib": sys.modules["selectors"] is selectors,
        "default_kept": selectors.DefaultSelector is patched,
        "asyncio_kept": asyncio.selector_events.selectors is selectors,
        "names": sorted(n for n in dir(selectors) if n.endswith("Selector")),
    }}))
"""

PATCHES = {
    "gevent": "from gevent import monkey; monkey.patch_all()",
    "eventlet": "import eventlet; eventlet.monkey_patch()",
}


@pytest.mark.parametrize("library", sorted(PATCHES))
def test_patch_then_install_leaves_the_patched_module(library):
    out = run_code("stdlib", PATCH_THEN_INSTALL.format(patch=PATCHES[library]))
    assert out["warnings"] == [["RuntimeWarning", True]]
    assert out["still_stdlib"] and out["default_kept"] and out["asyncio_kept"]
    assert "EpollSelector" not in out["names"]


INSTALL_THEN_PATCH = """
    import json, sys
    {pre}
    import rselectors
    rselectors.install()
    {patch}
    rselectors.install()  # again: must not undo the patching
    import selectors
    print(json.dumps({{
        "is_rselectors": selectors is rselectors and sys.modules["selectors"] is rselectors,
        "default": selectors.DefaultSelector.__module__ + "." + selectors.DefaultSelector.__name__,
        "names": sorted(n for n in dir(selectors) if n.endswith("Selector")),
        "select": getattr(selectors.SelectSelector._select, "__module__", None),
    }}))
"""


# gevent.selectors imported before install() holds the stdlib module, which install()
# rebinds, so patch_all() still patches rselectors whole (no EpollSelector left on it).
PRE_IMPORTS = {"nothing": "", "gevent.selectors": "import gevent.selectors"}


@pytest.mark.parametrize("pre", sorted(PRE_IMPORTS))
@pytest.mark.parametrize("library", sorted(PATCHES))
def test_install_then_patch_patches_rselectors_as_the_stdlib(library, pre):
    ours = run_code("stdlib", INSTALL_THEN_PATCH.format(patch=PATCHES[library],
                                                        pre=PRE_IMPORTS[pre]))
    std = run_code("stdlib", "import json; {}\nimport selectors\nprint(json.dumps({{"
                   "'default': selectors.DefaultSelector.__module__ + '.' + "
                   "selectors.DefaultSelector.__name__, 'names': sorted(n for n in "
                   "dir(selectors) if n.endswith('Selector')), 'select': getattr("
                   "selectors.SelectSelector._select, '__module__', None)}}))"
                   .format(PATCHES[library]))
    assert ours.pop("is_rselectors")
    assert ours == std


EVENTLET_SCENARIO = """
    import eventlet
    eventlet.monkey_patch()
    import json, socket, sys, time
    import selectors

    out = {"module": selectors.__name__,
           "default": selectors.DefaultSelector.__name__,
           "names": sorted(n for n in dir(selectors) if n.endswith("Selector"))}
    a, b = socket.socketpair()

    def writer():
        eventlet.sleep(0.05)
        b.send(b"x")

    gt = eventlet.spawn(writer)
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, "data")
    start = time.monotonic()
    out["ready"] = [(k.data, ev) for k, ev in sel.select(5)]
    out["woken_by_green_writer"] = time.monotonic() - start < 4
    out["unregistered"] = sel.unregister(a).data
    sel.close()
    gt.wait()
    print(json.dumps(out))
"""


def test_eventlet_monkey_patch_and_green_selector():
    std = run_both(EVENTLET_SCENARIO)
    assert std["ready"] == [["data", 1]] and std["woken_by_green_writer"]


@pytest.mark.parametrize("test_module", ["test__selectors", "test__monkey_selectors"])
def test_gevent_own_selector_tests(test_module):
    results = {}
    for mode in MODES:
        proc = run_mode(mode, ["-m", "gevent.tests." + test_module, "-v"])
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        ran = re.search(r"^Ran (\d+) tests?", out, re.M)
        verdicts = sorted(re.findall(r"^(test\w+) .*\.\.\. (ok|skipped.*|FAIL|ERROR)$", out, re.M))
        assert ran and verdicts, out[-4000:]
        results[mode] = (ran.group(1), verdicts)
    assert results["rselectors"] == results["stdlib"]
    print(test_module, results["stdlib"][0], "tests, the same verdicts on both modules")


APP = '''
def app(environ, start_response):
    import selectors
    body = ("hello from " + selectors.__name__ + " " + selectors.DefaultSelector.__name__).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


@pytest.mark.parametrize("mode", MODES)
def test_gunicorn_gevent_worker_serves_a_request(mode, tmp_path):
    (tmp_path / "app.py").write_text(APP)
    log = tmp_path / "gunicorn.log"
    prefix = [sys.executable] + (["-m", "rselectors"] if mode == "rselectors" else [])
    with open(log, "w") as errors:
        proc = subprocess.Popen(prefix + ["-m", "gunicorn", "-k", "gevent", "-w", "1",
                                          "-b", "127.0.0.1:0", "--log-level", "info",
                                          "--no-control-socket",
                                          "app:app"],
                                cwd=str(tmp_path), env=child_env(), stdout=errors,
                                stderr=subprocess.STDOUT)
    try:
        port = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            text = log.read_text()
            match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            if match and "Booting worker" in text:
                port = int(match.group(1))
                break
            time.sleep(0.1)
        assert port, log.read_text()
        body = None
        for _ in range(50):  # the worker may still be starting
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as r:
                    assert r.status == 200
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    print(text)
    module = "rselectors" if mode == "rselectors" else "selectors"
    assert body == "hello from %s GeventSelector" % module, text
    assert "Traceback" not in text and "Error" not in text, text


GUNICORN_TESTS = ["tests/workers/test_gevent_import_order.py", "tests/test_http2_live.py",
                  "tests/test_control_socket_integration.py::"
                  "TestControlSocketForkSafetyGeventWorker"]


@pytest.mark.consumer_suite
def test_gunicorn_own_gevent_tests():
    sdist = os.environ.get("RSELECTORS_GUNICORN_SDIST")
    if not sdist:
        pytest.skip("gunicorn's gevent tests need its sdist: set RSELECTORS_GUNICORN_SDIST to "
                    "an unpacked gunicorn 27.0.1 sdist (.ci/run's consumer-suites stage does)")
    pytest.importorskip("h2", reason="gunicorn's http2 tests need h2 (.ci/run installs it)")
    results = {}
    for mode in MODES:
        env = child_env()
        if mode == "rselectors":  # the pytest process and every gunicorn it starts
            env["RSELECTORS_INSTALL"] = "1"
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                               "-o", "addopts=", "-rA", "-k", "gevent or Gevent"]
                              + GUNICORN_TESTS, cwd=sdist, env=env, capture_output=True,
                              text=True, timeout=600)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-6000:]
        outcomes = sorted(re.findall(r"^(PASSED|SKIPPED|FAILED|ERROR) (\S+)", out, re.M))
        summary = re.findall(r"=+ (.*(?:passed|failed).*) in [\d.]+s", out)
        assert outcomes, out[-6000:]
        results[mode] = outcomes
        print(mode, summary[-1] if summary else "")
    assert results["rselectors"] == results["stdlib"]
