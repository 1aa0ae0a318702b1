"""Prefork asyncio echo server (issue 23): wake-ups and CPU per connection, and the spread of a
concurrent load over the workers, for the stdlib's selectors against rselectors with and
without the exclusive-accept switch.

    python benches/prefork.py                       # both parts, 5 rounds
    python benches/prefork.py --part seq --workers-seq 16 --rounds 3
    python benches/prefork.py --part load --clients 64 --conns 6000

A server is K forked workers sharing one listening socket on 127.0.0.1, each running
`asyncio.SelectorEventLoop(selectors.DefaultSelector())` with an echo Protocol, as a prefork
server does; it runs in a process of its own per variant:
  stdlib       the standard library's selectors
  rsel         rselectors, switch off
  rsel-excl    rselectors with RSELECTORS_EXCLUSIVE_ACCEPT=1 in the environment (the
               server's code is the same: the switch alone makes the listening socket's
               registration EPOLLEXCLUSIVE)

Parts:
  seq   N connections one at a time (connect, send 16 bytes and half-close, read the echo
        until the server closes, as an HTTP/1.0 exchange): voluntary context
        switches per connection summed over the workers' threads (/proc/<pid>/task/*/status)
        and their CPU time per connection (/proc/<pid>/task/*/schedstat, nanoseconds).
  load  C concurrent clients (asyncio, in 2 client processes) making connections until N in
        all or the time limit: connections per second, switches and CPU per connection, and
        how the connections spread over the workers (counted by each worker).

Variants run interleaved, one server at a time (stdlib, rsel, rsel-excl, stdlib, ...); the
tables give the median over rounds, and for rates the median of the per-round ratios to the
first variant ("ratio"). Every run is bounded in count and time; a lost or failed
connection is counted and printed.
"""

import argparse
import asyncio
import mmap
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

VARIANTS = ["stdlib", "rsel", "rsel-excl"]
MESSAGE = b"0123456789abcdef"


# ---------------------------------------------------------------------------------------------
# The server: `serve VARIANT K` prints its workers' pids, one line, once they all listen.

def serve(variant, workers):
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1024)
    lsock.setblocking(False)
    # One counter per worker, shared across the fork: connections each one accepted.
    counts = mmap.mmap(-1, 8 * workers)
    ready_r, ready_w = os.pipe()
    pids = []
    for idx in range(workers):
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            try:
                run_worker(variant, lsock, counts, idx, ready_w)
            finally:
                os._exit(0)
        pids.append(pid)
    os.close(ready_w)
    for _ in range(workers):
        os.read(ready_r, 1)
    print(lsock.getsockname()[1], " ".join(map(str, pids)), flush=True)
    # Until the driver asks (a line on stdin): then the counts, and the workers stop.
    sys.stdin.readline()
    print(" ".join(str(struct.unpack_from("q", counts, 8 * i)[0]) for i in range(workers)),
          flush=True)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        os.waitpid(pid, 0)


def run_worker(variant, lsock, counts, idx, ready_w):
    if variant == "stdlib":
        import selectors
    else:
        import rselectors as selectors
    selector = selectors.DefaultSelector()
    loop = asyncio.SelectorEventLoop(selector)
    asyncio.set_event_loop(loop)
    offset = 8 * idx

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            struct.pack_into("q", counts, offset, struct.unpack_from("q", counts, offset)[0] + 1)

        def data_received(self, data):
            self.transport.write(data)

    loop.run_until_complete(loop.create_server(Echo, sock=lsock, backlog=1024))
    os.write(ready_w, b"r")
    os.close(ready_w)
    loop.run_forever()


# ---------------------------------------------------------------------------------------------
# Measuring a process tree's workers through /proc.

def task_counters(pid):
    """(voluntary context switches, CPU ns) summed over the threads of `pid`."""
    switches = cpu = 0
    base = "/proc/%d/task" % pid
    for tid in os.listdir(base):
        try:
            with open("%s/%s/status" % (base, tid)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        switches += int(line.split()[1])
            with open("%s/%s/schedstat" % (base, tid)) as f:
                cpu += int(f.read().split()[0])
        except FileNotFoundError:  # a thread that just ended
            pass
    return switches, cpu


def counters(pids):
    totals = [task_counters(p) for p in pids]
    return sum(t[0] for t in totals), sum(t[1] for t in totals)


class Server:
    """One prefork server of `variant` in a process of its own."""

    def __init__(self, variant, workers, python):
        env = dict(os.environ)
        env.pop("RSELECTORS_INSTALL", None)
        env.pop("RSELECTORS_EXCLUSIVE_ACCEPT", None)
        if variant == "rsel-excl":
            env["RSELECTORS_EXCLUSIVE_ACCEPT"] = "1"
        self.proc = subprocess.Popen(
            [python, os.path.abspath(__file__), "serve", variant, str(workers)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline().split()
        if not line:
            raise SystemExit("prefork.py: the %s server did not start" % variant)
        self.port = int(line[0])
        self.pids = [int(p) for p in line[1:]]

    def stop(self):
        """The connections each worker accepted; the server ends."""
        try:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            counts = [int(c) for c in self.proc.stdout.readline().split()]
        finally:
            self.proc.wait(timeout=30)
        return counts


def settle(pids, limit=5.0):
    """Waits until the workers are idle: their switch counts stop moving."""
    end = time.monotonic() + limit
    last = None
    while time.monotonic() < end:
        now = counters(pids)[0]
        if now == last:
            return
        last = now
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Clients.

def one_connection(port):
    """One request and its reply, HTTP/1.0 style: the client sends and half-closes, the
    server echoes and closes on that EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(MESSAGE)
        c.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            chunk = c.recv(64)
            if not chunk:
                break
            got += chunk
        return got == MESSAGE


def sequential(server, conns, limit):
    """`conns` connections one at a time; (completed, failed, seconds)."""
    ok = failed = 0
    t0 = time.monotonic()
    for _ in range(conns):
        if time.monotonic() - t0 > limit:
            break
        try:
            if one_connection(server.port):
                ok += 1
            else:
                failed += 1
        except OSError:
            failed += 1
    return ok, failed, time.monotonic() - t0


LOAD_CLIENT = r"""
import asyncio, sys, time
port, clients, quota, limit = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
request, expect, half_close = bytes.fromhex(sys.argv[5]), bytes.fromhex(sys.argv[6]), sys.argv[7] == "1"
ok = failed = 0
async def client(deadline):
    global ok, failed
    while ok + failed < quota and time.monotonic() < deadline:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            w.write(request)
            if half_close:
                w.write_eof()
            got = await asyncio.wait_for(r.read(), 5)
            w.close()
            await w.wait_closed()
            if got.startswith(expect): ok += 1
            else: failed += 1
        except (OSError, asyncio.TimeoutError):
            failed += 1
async def main():
    deadline = time.monotonic() + limit
    await asyncio.gather(*(client(deadline) for _ in range(clients)))
sys.stdin.readline()
asyncio.run(main())
print(ok, failed)
"""


def run_load_clients(port, clients, total, limit, python, request, expect, half_close,
                     procs=2):
    """`clients` concurrent clients over `procs` processes, each connection sending `request`
    (and half-closing, if asked) and reading the reply to EOF, until `total` connections in
    all (a few more: each client checks before it starts one) or `limit` seconds; a reply
    must start with `expect`. (completed, failed, seconds)."""
    env = dict(os.environ)
    env.pop("RSELECTORS_INSTALL", None)
    env.pop("RSELECTORS_EXCLUSIVE_ACCEPT", None)
    procs = min(procs, clients)
    per = [clients // procs + (i < clients % procs) for i in range(procs)]
    quota = [total // procs + (i < total % procs) for i in range(procs)]
    children = [subprocess.Popen(
        [python, "-c", LOAD_CLIENT, str(port), str(n), str(q), str(limit), request.hex(),
         expect.hex(), "1" if half_close else "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for n, q in zip(per, quota)]
    t0 = time.monotonic()
    for c in children:  # all start together
        c.stdin.write("\n")
        c.stdin.flush()
    ok = failed = 0
    for c in children:
        out, _ = c.communicate(timeout=limit + 60)
        a, b = out.split()
        ok, failed = ok + int(a), failed + int(b)
    return ok, failed, time.monotonic() - t0


# ---------------------------------------------------------------------------------------------
# The driver.

def one_run(part, variant, args):
    server = Server(variant, args.workers_now, args.python)
    try:
        settle(server.pids)
        before = counters(server.pids)
        if part == "seq":
            ok, failed, secs = sequential(server, args.conns_seq, args.time_limit)
        else:
            ok, failed, secs = run_load_clients(server.port, args.clients, args.conns,
                                                args.time_limit, args.python, MESSAGE,
                                                MESSAGE, half_close=True)
        settle(server.pids)
        after = counters(server.pids)
    finally:
        counts = server.stop()
    n = max(ok, 1)
    return {
        "ok": ok, "failed": failed,
        "switches": (after[0] - before[0]) / n,
        "cpu_us": (after[1] - before[1]) / n / 1e3,
        "rate": ok / secs,
        "busiest": max(counts) / max(sum(counts), 1),
        "busy_workers": sum(1 for c in counts if c),
        "counts": counts,
    }


def med(runs, field):
    return statistics.median(r[field] for r in runs)


def rate_ratio(results, variant):
    """Median over rounds of the variant's rate over the first variant's in the same round:
    machine noise, which comes and goes, hits both sides of a ratio alike."""
    base = next(iter(results.values()))
    return statistics.median(r["rate"] / b["rate"] for r, b in zip(results[variant], base))


def report(part, workers, results):
    print()
    if part == "seq":
        print("seq, K=%d: connections per run %s, one at a time" % (
            workers, sorted({r["ok"] for runs in results.values() for r in runs})))
        print("| variant | switches/conn | CPU us/conn | conns/s | lost or failed |")
        print("|---|---:|---:|---:|---:|")
        for v, runs in results.items():
            lost = sum(r["failed"] for r in runs)
            print("| %s | %.2f | %.0f | %.0f | %d |" % (
                v, med(runs, "switches"), med(runs, "cpu_us"), med(runs, "rate"), lost))
    else:
        print("load, K=%d: connections per run %s" % (
            workers, sorted({r["ok"] for runs in results.values() for r in runs})))
        print("| variant | conns/s | ratio | switches/conn | CPU us/conn "
              "| busiest worker's share | workers used | lost or failed |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for v, runs in results.items():
            lost = sum(r["failed"] for r in runs)
            print("| %s | %.0f | %.2f | %.2f | %.0f | %.0f%% | %.0f of %d | %d |" % (
                v, med(runs, "rate"), rate_ratio(results, v), med(runs, "switches"),
                med(runs, "cpu_us"),
                100 * med(runs, "busiest"), med(runs, "busy_workers"), workers, lost))
    sys.stdout.flush()


def main(argv):
    if argv[:1] == ["serve"]:
        serve(argv[1], int(argv[2]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["seq", "load", "both"], default="both")
    p.add_argument("--workers-seq", default="1,4,16",
                   help="K values of the seq part, comma-separated (K=1: no herd, the floor)")
    p.add_argument("--workers-load", default="4,16", help="K values of the load part")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--conns-seq", type=int, default=300)
    p.add_argument("--conns", type=int, default=6000, help="connections per load run")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per run, at most")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--verbose", action="store_true", help="print every run")
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    parts = ["seq", "load"] if args.part == "both" else [args.part]
    with open("/proc/loadavg") as f:
        print("load average before:", f.read().split()[:3], "cpus:", os.cpu_count())
    for part in parts:
        ks = args.workers_seq if part == "seq" else args.workers_load
        for workers in [int(k) for k in ks.split(",")]:
            args.workers_now = workers
            results = {v: [] for v in variants}
            for rnd in range(args.rounds):
                for v in variants:
                    r = one_run(part, v, args)
                    results[v].append(r)
                    if args.verbose:
                        print(part, workers, rnd, v, {k: (round(x, 2) if isinstance(x, float)
                                                          else x) for k, x in r.items()})
            report(part, workers, results)
    with open("/proc/loadavg") as f:
        print("load average after:", f.read().split()[:3])


if __name__ == "__main__":
    main(sys.argv[1:])
