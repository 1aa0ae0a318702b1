"""The stdlib's own users of ``selectors`` (socketserver, http.server,
subprocess, multiprocessing.connection) running on rselectors.

Each scenario is a small program run in a subprocess (this test process is
never altered) in four modes:

- ``stdlib``: plain ``python``, the reference: the scenario itself must hold
  on the standard library;
- ``runner``: ``python -m rselectors scenario.py``;
- ``install_first``: ``import rselectors; rselectors.install()`` as the
  program's first lines;
- ``install_late``: asyncio, subprocess, socketserver, http.server,
  multiprocessing.connection and the stdlib ``selectors`` imported first, then
  ``rselectors.install()`` (which must rebind what they already hold).

The program prints ``RESULT {json}``; among the results, ``used`` names the
module of every selector class the consumers hold (and created), and must be
``rselectors`` in the three rselectors modes and ``selectors`` on the stdlib.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

TIMEOUT = 90
MODES = ["stdlib", "runner", "install_first", "install_late"]

PRELUDES = {
    "stdlib": "",
    "runner": "",
    "install_first": "import rselectors; rselectors.install()\n",
    "install_late": (
        "import asyncio, subprocess, socketserver, http.server, selectors\n"
        "import multiprocessing.connection\n"
        "from selectors import DefaultSelector as _early_default\n"
        "import rselectors; rselectors.install()\n"
        "assert _early_default is rselectors.DefaultSelector, _early_default\n"
    ),
}

# Shared helpers every scenario program gets.
COMMON = textwrap.dedent('''\
    import json as _json
    import sys as _sys

    def _modname(obj):
        """Module of obj's class (of obj if a class), skipping the
        scenario's own subclasses (defined in __main__)."""
        cls = obj if isinstance(obj, type) else type(obj)
        for klass in cls.__mro__:
            if klass.__module__ != "__main__":
                return klass.__module__
        return cls.__module__

    def report(used, **results):
        """Print the scenario's result; used: {what: module name}."""
        import selectors
        used = dict(used)
        used["sys.modules['selectors']"] = selectors.__name__
        print("RESULT " + _json.dumps({"used": used, "results": results},
                                      sort_keys=True, default=repr))
        _sys.stdout.flush()
''')


def child_env():
    env = dict(os.environ)
    for var in ("PYTHONSAFEPATH", "PYTHONINSPECT", "PYTHONSTARTUP",
                "RSELECTORS_INSTALL"):
        env.pop(var, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_scenario(tmp_path, mode, body, timeout=TIMEOUT, args=()):
    """Run a scenario program in ``mode``; return (used, results)."""
    script = tmp_path / ("scenario_%s.py" % mode)
    script.write_text(PRELUDES[mode] + COMMON + textwrap.dedent(body))
    cmd = [sys.executable]
    if mode == "runner":
        cmd += ["-m", "rselectors"]
    cmd += [str(script)] + list(args)
    proc = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=timeout, env=child_env())
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and len(lines) == 1, (
        "mode %s: rc=%r\n--- stdout\n%s\n--- stderr\n%s"
        % (mode, proc.returncode, proc.stdout[-4000:], proc.stderr[-6000:]))
    data = json.loads(lines[0][len("RESULT "):])
    return data["used"], data["results"]


def check_used(mode, used):
    expected = "selectors" if mode == "stdlib" else "rselectors"
    wrong = {k: v for k, v in used.items() if v != expected}
    assert not wrong, "mode %s: expected %s everywhere, got %s" % (
        mode, expected, used)


mode = pytest.mark.parametrize("mode", MODES)


# ---------------------------------------------------------------------------
# socketserver and http.server
# ---------------------------------------------------------------------------

SOCKETSERVER = '''
import socket, socketserver, threading, time

made = []
Orig = socketserver._ServerSelector

class Counting(Orig):
    def __init__(self):
        super().__init__()
        made.append(self)

socketserver._ServerSelector = Counting

class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line.upper())

server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
server.daemon_threads = True
t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
t.start()
replies = []
for i in range(5):
    with socket.create_connection(server.server_address, timeout=10) as c:
        f = c.makefile("rwb")
        f.write(b"hello %d\\n" % i); f.flush()
        replies.append(f.readline().decode())
started = time.monotonic()
server.shutdown()          # serve_forever notices within poll_interval
shutdown_s = time.monotonic() - started
t.join(10)
server.server_close()

# handle_request() with a timeout: select() times out, handle_timeout() runs.
timeouts = []
class UDP(socketserver.UDPServer):
    timeout = 0.2
    def handle_timeout(self):
        timeouts.append(time.monotonic())
udp = UDP(("127.0.0.1", 0), socketserver.DatagramRequestHandler)
started = time.monotonic()
udp.handle_request()
waited = time.monotonic() - started
udp.server_close()

report({"socketserver._ServerSelector": _modname(Orig),
        "selector instances": _modname(made[0])},
       replies=replies, shutdown_s=shutdown_s, timeouts=len(timeouts),
       waited=waited, instances=len(made), alive=t.is_alive())
'''


@mode
def test_socketserver(tmp_path, mode):
    used, r = run_scenario(tmp_path, mode, SOCKETSERVER)
    check_used(mode, used)
    assert r["replies"] == ["HELLO %d\n" % i for i in range(5)]
    assert not r["alive"]
    assert r["shutdown_s"] < 5
    assert r["timeouts"] == 1
    assert r["waited"] >= 0.2, "handle_request() returned before its timeout"
    assert r["instances"] >= 2


HTTP_SERVER = '''
import functools, http.server, os, socketserver, threading, urllib.request

with open("page.html", "wb") as f:
    f.write(b"<html><body>rselectors " + b"x" * 200000 + b"</body></html>")
handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                            directory=os.getcwd())
http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
t.start()
host, port = server.server_address[:2]
bodies = []
for _ in range(3):
    with urllib.request.urlopen("http://%s:%d/page.html" % (host, port),
                                timeout=10) as resp:
        bodies.append((resp.status, len(resp.read())))
try:
    urllib.request.urlopen("http://%s:%d/missing" % (host, port), timeout=10)
    missing = None
except urllib.error.HTTPError as e:
    missing = e.code
server.shutdown()
t.join(10)
server.server_close()
report({"socketserver._ServerSelector": _modname(socketserver._ServerSelector),
        "http.server's socketserver._ServerSelector":
            _modname(http.server.socketserver._ServerSelector)},
       bodies=bodies, missing=missing, size=os.path.getsize("page.html"),
       alive=t.is_alive())
'''


@mode
def test_http_server(tmp_path, mode):
    used, r = run_scenario(tmp_path, mode, HTTP_SERVER)
    check_used(mode, used)
    assert r["bodies"] == [[200, r["size"]]] * 3
    assert r["missing"] == 404
    assert not r["alive"]


# ---------------------------------------------------------------------------
# subprocess.Popen.communicate
# ---------------------------------------------------------------------------

SUBPROCESS = '''
import subprocess, sys, time

made = []
Orig = subprocess._PopenSelector
class Counting(Orig):
    def __init__(self):
        super().__init__()
        made.append(self)
subprocess._PopenSelector = Counting
PY = sys.executable

# stdin, stdout and stderr all pipes, more data than a pipe buffer holds.
data = bytes(range(256)) * 8192          # 2 MiB
p = subprocess.Popen([PY, "-c", "import sys; d = sys.stdin.buffer.read(); "
                      "sys.stdout.buffer.write(d); sys.stderr.buffer.write(d[:1000])"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
out, err = p.communicate(data, timeout=30)
roundtrip = (out == data, err == data[:1000], p.returncode)

# Timeout: TimeoutExpired, then communicate() again gets everything.
p = subprocess.Popen([PY, "-c", "import sys, time; print('early', flush=True); "
                      "time.sleep(0.8); print('late', flush=True)"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
started = time.monotonic()
try:
    p.communicate(timeout=0.3)
    expired = None
except subprocess.TimeoutExpired as e:
    expired = {"after": time.monotonic() - started, "timeout": e.timeout,
               "partial": e.output}
out, err = p.communicate(timeout=30)
timeout_case = {"expired": expired, "out": out, "err": err, "rc": p.returncode}

# Timeout with input: all of it is written (and stdin closed), then the
# child runs on past the timeout. (Python 3.11 cannot resume *writing* input
# after a timeout: its communicate() only registers stdin when given input
# and refuses input once communication started, on the stdlib too.)
big = b"y" * (1 << 20)
p = subprocess.Popen([PY, "-c", "import sys, time; n = len(sys.stdin.buffer.read()); "
                      "print(n, flush=True); time.sleep(0.6); print('done')"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
started = time.monotonic()
try:
    p.communicate(big, timeout=0.3)
    expired_in = None
except subprocess.TimeoutExpired:
    expired_in = time.monotonic() - started
out, _ = p.communicate(timeout=30)
input_case = {"expired_after": expired_in, "out": out.decode().strip()}

# run() with a timeout kills the child and raises.
started = time.monotonic()
try:
    subprocess.run([PY, "-c", "import time; time.sleep(5)"],
                   capture_output=True, timeout=0.3)
    run_timeout = None
except subprocess.TimeoutExpired:
    run_timeout = time.monotonic() - started

report({"subprocess._PopenSelector": _modname(Orig),
        "selector instances": _modname(made[0])},
       roundtrip=roundtrip, timeout_case=timeout_case, input_case=input_case,
       run_timeout=run_timeout, instances=len(made))
'''


@mode
def test_subprocess_communicate(tmp_path, mode):
    used, r = run_scenario(tmp_path, mode, SUBPROCESS)
    check_used(mode, used)
    if mode != "stdlib":
        assert used["subprocess._PopenSelector"] == "rselectors"
    assert r["roundtrip"] == [True, True, 0]
    tc = r["timeout_case"]
    assert tc["expired"] is not None, "communicate(timeout=0.3) did not time out"
    assert tc["expired"]["after"] >= 0.3, "TimeoutExpired raised early: %r" % tc
    assert tc["expired"]["timeout"] == 0.3
    assert tc["out"] == "early\nlate\n", tc
    assert tc["err"] == "" and tc["rc"] == 0, tc
    ic = r["input_case"]
    assert ic["expired_after"] is not None and ic["expired_after"] >= 0.3, ic
    assert ic["out"].split() == [str(1 << 20), "done"], ic
    assert r["run_timeout"] is not None and 0.3 <= r["run_timeout"] < 4
    assert r["instances"] >= 4


# ---------------------------------------------------------------------------
# multiprocessing.connection.wait
# ---------------------------------------------------------------------------

MULTIPROCESSING = '''
import multiprocessing, multiprocessing.connection as mpc, socket, threading, time

def child(conn):
    time.sleep(0.2)
    conn.send("from child")
    conn.close()

if __name__ == "__main__":
    Orig = mpc._WaitSelector
    pairs = [multiprocessing.Pipe() for _ in range(4)]
    readers = [r for r, w in pairs]

    # Nothing ready: returns [] after the timeout, not before.
    started = time.monotonic()
    none_ready = mpc.wait(readers, timeout=0.25)
    waited = time.monotonic() - started

    # Two of four ready.
    pairs[1][1].send("one"); pairs[3][1].send("three")
    ready = mpc.wait(readers, timeout=5)
    got = sorted(r.recv() for r in ready)

    # Woken by another thread, no timeout.
    threading.Timer(0.1, pairs[2][1].send, args=("late",)).start()
    ready_late = [r.recv() for r in mpc.wait(readers)]

    # A child process: its pipe and its sentinel.
    parent_end, child_end = multiprocessing.Pipe()
    p = multiprocessing.Process(target=child, args=(child_end,))
    p.start()
    child_end.close()
    msg = [c.recv() for c in mpc.wait([parent_end], timeout=10)]
    sentinel_ready = mpc.wait([p.sentinel], timeout=10) == [p.sentinel]
    p.join()

    # Sockets work too.
    a, b = socket.socketpair()
    b.send(b"x")
    sock_ready = mpc.wait([a], timeout=5) == [a]

    report({"multiprocessing.connection._WaitSelector": _modname(Orig),
            "current _WaitSelector": _modname(mpc._WaitSelector)},
           none_ready=none_ready, waited=waited, got=got, ready_late=ready_late,
           msg=msg, sentinel_ready=sentinel_ready, exitcode=p.exitcode,
           sock_ready=sock_ready)
'''


@mode
def test_multiprocessing_connection_wait(tmp_path, mode):
    used, r = run_scenario(tmp_path, mode, MULTIPROCESSING)
    check_used(mode, used)
    assert r["none_ready"] == []
    assert r["waited"] >= 0.25, "wait() returned before its timeout"
    assert r["got"] == ["one", "three"]
    assert r["ready_late"] == ["late"]
    assert r["msg"] == ["from child"]
    assert r["sentinel_ready"] and r["exitcode"] == 0
    assert r["sock_ready"]
