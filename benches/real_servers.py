"""Two real prefork servers, unchanged, on the stdlib and on rselectors (issue 23):
gunicorn `-k gthread -w 8` and `uvicorn --workers 8 --loop asyncio --http h11`, each
serving a hello app, under a connection-per-request HTTP load.

    python benches/real_servers.py                    # both servers, 1 and 64 clients
    python benches/real_servers.py --servers gunicorn --rounds 5 --requests 4000

Needs gunicorn, uvicorn and h11 in the running interpreter's environment (pip install
gunicorn uvicorn h11; not uvloop or httptools: the asyncio loop and h11 are asked for).

Variants, each a fresh server, run interleaved:
  stdlib      `python -m gunicorn ...` / `python -m uvicorn ...`
  rsel        the same under rselectors: `python -m rselectors -m gunicorn ...`;
              uvicorn's workers are spawned interpreters, so RSELECTORS_INSTALL=1
  rsel-excl   rsel with RSELECTORS_EXCLUSIVE_ACCEPT=1 in the environment

Checked, not assumed: each worker says which selector class its loop or poller is (a
gunicorn post_worker_init hook; the ASGI app's lifespan startup), and the kernel's view of
each worker's epoll sets (/proc/<pid>/fdinfo) shows whether the listening socket is
registered with EPOLLEXCLUSIVE.

The load: C clients (asyncio, in up to 2 client processes; C = 1 is one request at a
time) each sending `GET /` with
`Connection: close` and reading the reply to EOF, until N requests in all or the time limit.
Reported: requests per second, voluntary context switches and CPU per request summed over
the workers' threads (the master left out), failed requests. Loopback only; bounded.
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prefork import counters, rate_ratio, run_load_clients, settle, task_counters  # noqa: E402

VARIANTS = ["stdlib", "rsel", "rsel-excl"]
EPOLLEXCLUSIVE = 1 << 28

APP = r'''
"""Hello apps: WSGI for gunicorn, ASGI for uvicorn."""
import asyncio, os, sys

BODY = b"Hello, world!\n"

def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]

def post_worker_init(worker):  # gunicorn hook: the gthread worker's poller
    poller = worker.poller
    print("worker %d selector %s.%s" % (os.getpid(), type(poller).__module__,
                                        type(poller).__qualname__), file=sys.stderr, flush=True)

async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                sel = asyncio.get_running_loop()._selector
                print("worker %d selector %s.%s" % (os.getpid(), type(sel).__module__,
                                                    type(sel).__qualname__),
                      file=sys.stderr, flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
'''

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def exclusive_listeners(pid, port):
    """How many of `pid`'s epoll sets hold its listening socket, and how many of those with
    EPOLLEXCLUSIVE."""
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:  # LISTEN
                inode = fields[9]
    listening_fds = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "socket:[%s]" % inode:
                listening_fds.add(int(fd))
        except OSError:
            pass
    held = flagged = 0
    for fd in os.listdir("/proc/%d/fdinfo" % pid):
        try:
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                info = f.read()
        except OSError:
            continue
        for target, mask in re.findall(r"tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)", info):
            if int(target) in listening_fds:
                held += 1
                flagged += bool(int(mask, 16) & EPOLLEXCLUSIVE)
    return held, flagged


class Server:
    def __init__(self, name, variant, workers, python, appdir, threads):
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=appdir, PYTHONUNBUFFERED="1")
        for var in ("RSELECTORS_INSTALL", "RSELECTORS_EXCLUSIVE_ACCEPT"):
            env.pop(var, None)
        run = [python, "-m"]
        if variant != "stdlib":
            run = [python, "-m", "rselectors", "-m"]
            env["RSELECTORS_INSTALL"] = "1"
        if variant == "rsel-excl":
            env["RSELECTORS_EXCLUSIVE_ACCEPT"] = "1"
        bind = "127.0.0.1:%d" % self.port
        if name == "gunicorn":
            cmd = run + ["gunicorn", "-k", "gthread", "-w", str(workers), "-b", bind,
                         "--threads", str(threads),
                         "--backlog", "2048", "-c", os.path.join(appdir, "hello.py"),
                         "hello:wsgi"]
        else:
            cmd = run + ["uvicorn", "--workers", str(workers), "--loop", "asyncio",
                         "--http", "h11", "--host", "127.0.0.1", "--port", str(self.port),
                         "--backlog", "2048", "--no-access-log", "--log-level", "warning",
                         "hello:asgi"]
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        self.workers = self.wait_ready(workers)

    def wait_ready(self, workers, limit=60):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            kids = [k for k in children_of(self.proc.pid)
                    if exclusive_listeners(k, self.port)[0]]
            if len(kids) >= workers:
                return kids
            time.sleep(0.2)
        self.stop()
        self.log.seek(0)
        raise SystemExit("real_servers.py: server did not start:\n" + self.log.read()[-3000:])

    def selectors_seen(self):
        self.log.seek(0)
        return sorted(set(re.findall(r"selector ((?:\w+\.)*\w*Selector)", self.log.read())))

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def one_run(name, variant, args, appdir, clients):
    server = Server(name, variant, args.workers, args.python, appdir, args.threads)
    try:
        settle(server.workers)
        listeners = [exclusive_listeners(pid, server.port) for pid in server.workers]
        before = [task_counters(pid) for pid in server.workers]
        ok, failed, secs = run_load_clients(server.port, clients, args.requests,
                                            args.time_limit, args.python, REQUEST,
                                            b"HTTP/1.1 200 OK", half_close=False)
        after = [task_counters(pid) for pid in server.workers]
        seen = server.selectors_seen()
    finally:
        server.stop()
    n = max(ok, 1)
    switches = sum(a[0] - b[0] for a, b in zip(after, before))
    cpu = [a[1] - b[1] for a, b in zip(after, before)]
    return {"ok": ok, "failed": failed, "rate": ok / secs,
            "switches": switches / n, "cpu_us": sum(cpu) / n / 1e3,
            "busiest": max(cpu) / max(sum(cpu), 1),
            "selectors": seen,
            "exclusive": "%d of %d" % (sum(f for _, f in listeners), sum(h for h, _ in listeners))}


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default="gunicorn,uvicorn")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--threads", type=int, default=1,
                   help="gunicorn's --threads per worker (its default: 1)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=4000, help="requests per run")
    p.add_argument("--clients", default="1,64",
                   help="concurrent clients, comma-separated: 1 is one request at a time")
    p.add_argument("--time-limit", type=float, default=60.0)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    with open("/proc/loadavg") as f:
        print("load average before:", f.read().split()[:3], "cpus:", os.cpu_count())
    with tempfile.TemporaryDirectory() as appdir:
        with open(os.path.join(appdir, "hello.py"), "w") as f:
            f.write(APP)
        for name, clients in [(n, int(c)) for n in args.servers.split(",")
                              for c in args.clients.split(",")]:
            results = {v: [] for v in args.variants.split(",")}
            for rnd in range(args.rounds):
                for v in results:
                    r = one_run(name, v, args, appdir, clients)
                    results[v].append(r)
                    if args.verbose:
                        print(name, clients, rnd, v, r, flush=True)
            print("\n%s, %d workers%s, %d clients, %s requests per run" % (
                name, args.workers, " x %d threads" % args.threads if name == "gunicorn" else "",
                clients,
                sorted({r["ok"] for rs in results.values() for r in rs})))
            print("| variant | requests/s | ratio | switches/request | CPU us/request "
                  "| busiest worker's CPU share | failed | selector in the workers "
                  "| listener EPOLLEXCLUSIVE in epoll sets |")
            print("|---|---:|---:|---:|---:|---:|---:|---|---|")
            for v, rs in results.items():
                print("| %s | %.0f | %.2f | %.2f | %.0f | %.0f%% | %d | %s | %s |" % (
                    v, statistics.median(r["rate"] for r in rs), rate_ratio(results, v),
                    statistics.median(r["switches"] for r in rs),
                    statistics.median(r["cpu_us"] for r in rs),
                    100 * statistics.median(r["busiest"] for r in rs),
                    sum(r["failed"] for r in rs),
                    ", ".join(sorted({s for r in rs for s in r["selectors"]})),
                    rs[-1]["exclusive"]))
            sys.stdout.flush()
    with open("/proc/loadavg") as f:
        print("load average after:", f.read().split()[:3])


if __name__ == "__main__":
    main(sys.argv[1:])
