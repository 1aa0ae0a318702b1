"""rselectors benchmark (issue 3): stdlib ``selectors`` vs ``rselectors`` vs the raw floor.

    python benches/bench.py                 # full run (a few minutes)
    python benches/bench.py --quick         # under a minute, fewer rounds
    python benches/bench.py --plot out.png  # also draw the tables (needs matplotlib)
    python benches/bench.py --uvloop-path /tmp/uvloop-site   # add a uvloop column to part D
    python benches/bench.py --only A,B      # run some parts only (A..F)

Every figure is a ratio of medians taken from interleaved runs in one process: the variants
of a cell run one batch each in turn (A, B, C, A, B, C, ...), the per-call time of each batch
is recorded, and the median per variant is reported with the ratio of the medians, so machine
noise hits every variant alike. The end-to-end parts run each server in its own process and
drive them from this process, alternately, in short rounds; their ratio is the median of the
per-round ratios. Micro-benchmarks run with the garbage collector disabled (as ``timeit``).

Parts:
  A  select(0) per call, (registered, ready) grid, Epoll/Poll/Select vs raw select module
  B  register+unregister, modify, get_key per call vs raw epoll
  C  callback echo server (the seed document's style), 64 and 512 clients, round trips/s
  D  asyncio echo server on SelectorEventLoop(selector), same load (uvloop optional)
  E  profile of the callback echo server: share of server CPU inside selector calls
  F  memory: RSS per registered fd (fresh subprocesses), tracemalloc peak of select(0)

Loopback only (socketpair() and 127.0.0.1); every loop is bounded in count and time.
"""

import argparse
import gc
import json
import math
import os
import resource
import select
import selectors
import socket
import statistics
import subprocess
import sys
import time

import rselectors

# The comparison needs the real stdlib module: refuse to run if `selectors` was replaced
# (python -m rselectors, rselectors.install(), RSELECTORS_INSTALL), and keep child
# processes from replacing it.
os.environ.pop("RSELECTORS_INSTALL", None)
if selectors is rselectors or not os.path.basename(selectors.__file__).startswith("selectors.py"):
    sys.exit("bench.py: `selectors` is not the standard library's module (%r); run it with "
             "plain `python`, without rselectors.install()" % selectors)

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE
FD_SETSIZE = 1024

# Clock of the micro-benchmarks: the thread's CPU time (user + system, so the system call
# is counted) by default, which a preemption on this shared machine does not inflate;
# --clock wall switches to time.perf_counter.
CLOCK = time.thread_time

SELECT_GRID = [(1, 1), (10, 1), (100, 10), (1000, 10), (8000, 1), (8000, 100), (8000, 8000)]


# ----------------------------------------------------------------------------- helpers

SERVER_CPU = None  # set by main(): the CPU every server process is pinned to (None: no pinning)
CLIENT_CPU = None


def pin(cpu):
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def fmt_t(seconds):
    """A per-call time with a unit that keeps 3 significant figures."""
    if seconds is None:
        return "-"
    if seconds < 1e-6:
        return "%.0f ns" % (seconds * 1e9)
    if seconds < 1e-3:
        return "%.3g us" % (seconds * 1e6)
    return "%.3g ms" % (seconds * 1e3)


def fmt_r(r):
    return "-" if r is None else "%.2f" % r


def md_table(headers, rows):
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


def emit(text=""):
    print(text, flush=True)


def calibrate(fn, target, max_n=1 << 20, max_time=2.0):
    """Smallest n (doubling) for which fn(n) takes at least `target` seconds."""
    n = 1
    start = time.monotonic()
    while True:
        t = fn(n)
        if t >= target or n >= max_n or time.monotonic() - start > max_time:
            return n
        if t <= 0:
            n *= 8
        else:
            n = min(max_n, max(n * 2, int(n * target / t * 1.2)))


def interleave(variants, rounds, target, ops_per_unit=1):
    """variants: [(name, fn)], fn(n) -> elapsed seconds for n units.

    Returns {name: median seconds per op}, {name: [samples]}.
    Batches run A, B, C, A, B, C, ... for `rounds` rounds.
    """
    ns = {name: calibrate(fn, target) for name, fn in variants}
    samples = {name: [] for name, _ in variants}
    for _ in range(rounds):
        for name, fn in variants:
            n = ns[name]
            samples[name].append(fn(n) / (n * ops_per_unit))
    return {k: statistics.median(v) for k, v in samples.items()}, samples


class NoGC:
    def __enter__(self):
        gc.collect()
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was:
            gc.enable()


class Pairs:
    """A pool of AF_UNIX socket pairs; pair i's `a` end is readable iff ready[i]."""

    def __init__(self, count):
        self.pairs = []
        try:
            for _ in range(count):
                a, b = socket.socketpair()
                a.setblocking(False)
                b.setblocking(False)
                self.pairs.append((a, b))
        except BaseException:
            self.close()
            raise
        self.ready = [False] * count

    def a(self, count):
        return [p[0] for p in self.pairs[:count]]

    def set_ready(self, count, k):
        """Of the first `count` pairs, make the first k readable and the others not."""
        for i in range(count):
            want = i < k
            if want != self.ready[i]:
                a, b = self.pairs[i]
                if want:
                    b.send(b"x")
                else:
                    while True:
                        try:
                            if not a.recv(4096):
                                break
                        except BlockingIOError:
                            break
                self.ready[i] = want

    def close(self):
        for a, b in self.pairs:
            a.close()
            b.close()
        self.pairs = []


# ----------------------------------------------------------------------------- part A

def _mk_sel_fn(sel):
    def run(n):
        s = sel.select
        t0 = CLOCK()
        for _ in range(n):
            s(0)
        return CLOCK() - t0
    return run


def _mk_epoll_fn(ep, maxev):
    def run(n):
        p = ep.poll
        t0 = CLOCK()
        for _ in range(n):
            p(0, maxev)
        return CLOCK() - t0
    return run


def _mk_poll_fn(po):
    def run(n):
        p = po.poll
        t0 = CLOCK()
        for _ in range(n):
            p(0)
        return CLOCK() - t0
    return run


def _mk_select_fn(readers):
    def run(n):
        s = select.select
        e = []
        t0 = CLOCK()
        for _ in range(n):
            s(readers, e, e, 0)
        return CLOCK() - t0
    return run


def part_a(pool, cfg):
    results = {}
    for cls in ("EpollSelector", "PollSelector", "SelectSelector"):
        rows = []
        res_cls = []
        for reg, rdy in SELECT_GRID:
            socks = pool.a(reg)
            fds = [s.fileno() for s in socks]
            if cls == "SelectSelector" and max(fds) >= FD_SETSIZE:
                rows.append(["(%d, %d)" % (reg, rdy), "-", "-", "-", "-", "-", "-",
                             "skipped: fd %d >= FD_SETSIZE %d" % (max(fds), FD_SETSIZE)])
                res_cls.append({"cell": [reg, rdy], "skipped": True})
                continue
            pool.set_ready(reg, rdy)
            std = getattr(selectors, cls)()
            rs = getattr(rselectors, cls)()
            raw = None
            try:
                for s in socks:
                    std.register(s, EVENT_READ)
                    rs.register(s, EVENT_READ)
                if cls == "EpollSelector":
                    raw = select.epoll()
                    for fd in fds:
                        raw.register(fd, select.EPOLLIN)
                    raw_fn = _mk_epoll_fn(raw, reg)
                    got_raw = len(raw.poll(0, reg))
                elif cls == "PollSelector":
                    raw = select.poll()
                    for fd in fds:
                        raw.register(fd, select.POLLIN)
                    raw_fn = _mk_poll_fn(raw)
                    got_raw = len(raw.poll(0))
                else:
                    raw_fn = _mk_select_fn(fds)
                    got_raw = len(select.select(fds, [], [], 0)[0])
                got = (len(std.select(0)), len(rs.select(0)), got_raw)
                if got != (rdy, rdy, rdy):
                    raise AssertionError("%s (%d,%d): ready counts %r" % (cls, reg, rdy, got))
                with NoGC():
                    med, _ = interleave(
                        [("stdlib", _mk_sel_fn(std)), ("rselectors", _mk_sel_fn(rs)),
                         ("raw", raw_fn)],
                        cfg.rounds, cfg.target)
            finally:
                std.close()
                rs.close()
                if raw is not None and hasattr(raw, "close"):
                    raw.close()
            r_raw = med["rselectors"] / med["raw"]
            s_raw = med["stdlib"] / med["raw"]
            s_r = med["stdlib"] / med["rselectors"]
            rows.append(["(%d, %d)" % (reg, rdy), fmt_t(med["stdlib"]), fmt_t(med["rselectors"]),
                         fmt_t(med["raw"]), fmt_r(r_raw), fmt_r(s_raw), fmt_r(s_r), ""])
            res_cls.append({"cell": [reg, rdy], "median_s": med, "rsel_over_raw": r_raw,
                            "stdlib_over_raw": s_raw, "stdlib_over_rsel": s_r})
        rawname = {"EpollSelector": "raw epoll.poll(0, N)", "PollSelector": "raw poll.poll(0)",
                   "SelectSelector": "raw select.select"}[cls]
        emit("\n### A. select(0) per call: %s\n" % cls)
        emit(md_table(["(registered, ready)", "stdlib", "rselectors", rawname, "rsel/raw",
                       "stdlib/raw", "stdlib/rsel", "note"], rows))
        results[cls] = res_cls
    pool.set_ready(len(pool.pairs), 0)
    return results


# ----------------------------------------------------------------------------- part B

def part_b(pool, cfg):
    N = 1000
    socks = pool.a(N)
    fds = [s.fileno() for s in socks]
    std = selectors.EpollSelector()
    rs = rselectors.EpollSelector()
    ep = select.epoll()
    ep2 = select.epoll()
    results = {}
    rows = []
    try:
        def mk_regunreg(sel):
            def run(n):
                reg, unreg = sel.register, sel.unregister
                t0 = CLOCK()
                for _ in range(n):
                    for s in socks:
                        reg(s, EVENT_READ)
                    for s in socks:
                        unreg(s)
                return CLOCK() - t0
            return run

        def mk_raw_regunreg(e, objs):
            def run(n):
                reg, unreg = e.register, e.unregister
                IN = select.EPOLLIN
                t0 = CLOCK()
                for _ in range(n):
                    for f in objs:
                        reg(f, IN)
                    for f in objs:
                        unreg(f)
                return CLOCK() - t0
            return run

        with NoGC():
            med, _ = interleave(
                [("stdlib", mk_regunreg(std)), ("rselectors", mk_regunreg(rs)),
                 ("raw", mk_raw_regunreg(ep, fds)), ("raw_sock", mk_raw_regunreg(ep2, socks))],
                cfg.rounds, cfg.target * 4, ops_per_unit=N)
        results["register+unregister"] = med

        # modify: READ -> WRITE -> READ on each of N registered sockets
        for s in socks:
            std.register(s, EVENT_READ)
            rs.register(s, EVENT_READ)
        for fd in fds:
            ep.register(fd, select.EPOLLIN)
        for s in socks:
            ep2.register(s, select.EPOLLIN)

        def mk_modify(sel):
            def run(n):
                mod = sel.modify
                t0 = CLOCK()
                for _ in range(n):
                    for s in socks:
                        mod(s, EVENT_WRITE)
                    for s in socks:
                        mod(s, EVENT_READ)
                return CLOCK() - t0
            return run

        def mk_raw_modify(e, objs):
            def run(n):
                mod = e.modify
                IN, OUT = select.EPOLLIN, select.EPOLLOUT
                t0 = CLOCK()
                for _ in range(n):
                    for f in objs:
                        mod(f, OUT)
                    for f in objs:
                        mod(f, IN)
                return CLOCK() - t0
            return run

        def mk_get_key(sel):
            def run(n):
                g = sel.get_key
                t0 = CLOCK()
                for _ in range(n):
                    for s in socks:
                        g(s)
                return CLOCK() - t0
            return run

        def mk_dict_ref():
            d = {s.fileno(): s for s in socks}

            def run(n):
                t0 = CLOCK()
                for _ in range(n):
                    for s in socks:
                        d[s.fileno()]
                return CLOCK() - t0
            return run

        with NoGC():
            medm, _ = interleave(
                [("stdlib", mk_modify(std)), ("rselectors", mk_modify(rs)),
                 ("raw", mk_raw_modify(ep, fds)), ("raw_sock", mk_raw_modify(ep2, socks))],
                cfg.rounds, cfg.target * 4, ops_per_unit=2 * N)
            medg, _ = interleave(
                [("stdlib", mk_get_key(std)), ("rselectors", mk_get_key(rs)),
                 ("dict_ref", mk_dict_ref())],
                cfg.rounds, cfg.target * 2, ops_per_unit=N)
        results["modify"] = medm
        results["get_key"] = medg
        k1, k2 = std.get_key(socks[0]), rs.get_key(socks[0])
        assert tuple(k1) == tuple(k2), (k1, k2)
    finally:
        std.close()
        rs.close()
        ep.close()
        ep2.close()

    for op in ("register+unregister", "modify"):
        m = results[op]
        rows.append([op, fmt_t(m["stdlib"]), fmt_t(m["rselectors"]), fmt_t(m["raw"]),
                     fmt_t(m["raw_sock"]), fmt_r(m["rselectors"] / m["raw"]),
                     fmt_r(m["stdlib"] / m["raw"]), fmt_r(m["stdlib"] / m["rselectors"])])
    m = results["get_key"]
    rows.append(["get_key", fmt_t(m["stdlib"]), fmt_t(m["rselectors"]), "-",
                 "-", "-", "-", fmt_r(m["stdlib"] / m["rselectors"])])
    emit("\n### B. Registration calls per fd / per call, EpollSelector, %d socket objects\n" % N)
    emit(md_table(["operation", "stdlib", "rselectors", "raw epoll (int fd)",
                   "raw epoll (socket obj)", "rsel/raw", "stdlib/raw", "stdlib/rsel"], rows))
    emit("\nregister+unregister is per fd (one register plus one unregister); modify is per call "
         "(READ<->WRITE alternately). get_key reference: `dict[sock.fileno()]` = %s."
         % fmt_t(m["dict_ref"]))
    return results


# ----------------------------------------------------------------------------- servers

def _selector_module(name):
    if name == "stdlib":
        return selectors
    if name == "rselectors":
        return rselectors
    raise ValueError(name)


def callback_server_main(selname, ctrl, profile, cpu=None):
    """The seed document's echo server (callback style), with a control pipe.

    selname: "stdlib" | "rselectors" | "raw" (a raw epoll loop: the end-to-end ceiling).
    """
    pin(cpu)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1024)
    lsock.setblocking(False)
    running = True
    tt = time.thread_time
    acc = {"select": 0.0, "regunreg": 0.0, "callbacks": 0.0, "n_select": 0, "n_events": 0,
           "n_regunreg": 0}

    if selname == "raw":
        ep = select.epoll()
        handlers = {}

        class RawSel:
            def register(self, f, events, data):
                fd = f.fileno()
                ep.register(fd, select.EPOLLIN)
                handlers[fd] = (data, f)

            def unregister(self, f):
                fd = f.fileno()
                ep.unregister(fd)
                del handlers[fd]

            def close(self):
                ep.close()

            def nkeys(self):
                return len(handlers)

        sel = RawSel()
    else:
        sel = _selector_module(selname).EpollSelector()
        sel.nkeys = lambda: len(sel.get_map())

    def read(connection, mask):
        data = connection.recv(1024)
        if data:
            connection.sendall(data)
        else:
            if profile:
                t0 = tt()
                sel.unregister(connection)
                acc["regunreg"] += tt() - t0
                acc["n_regunreg"] += 1
            else:
                sel.unregister(connection)
            connection.close()

    def accept(sock, mask):
        try:
            new_connection, addr = sock.accept()
        except BlockingIOError:
            return
        new_connection.setblocking(False)
        if profile:
            t0 = tt()
            sel.register(new_connection, EVENT_READ, read)
            acc["regunreg"] += tt() - t0
            acc["n_regunreg"] += 1
        else:
            sel.register(new_connection, EVENT_READ, read)

    def control(c, mask):
        nonlocal running
        try:
            msg = c.recv()
        except (EOFError, OSError):
            running = False
            return
        if msg == "cpu":
            c.send(time.process_time())
        elif msg == "stats":
            d = dict(acc)
            d["cpu"] = time.process_time()
            c.send(d)
        elif msg == "nkeys":
            c.send(sel.nkeys())
        elif msg == "stop":
            running = False
            c.send("bye")

    sel.register(lsock, EVENT_READ, accept)
    sel.register(ctrl, EVENT_READ, control)
    # cost of one thread_time() call, to subtract from each timed interval
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(1000):
            tt()
        samples.append((time.perf_counter() - t0) / 1000)
    tt_cost = min(samples)
    ctrl.send(("port", lsock.getsockname()[1], tt_cost))
    ppid = os.getppid()
    deadline = time.monotonic() + 3600

    if selname == "raw":
        poll = ep.poll
        while running:
            if profile:
                t0 = tt()
                evs = poll(1.0)
                t1 = tt()
                for fd, ev in evs:
                    cb, f = handlers[fd]
                    cb(f, ev)
                t2 = tt()
                acc["select"] += t1 - t0
                acc["callbacks"] += t2 - t1
                acc["n_select"] += 1
                acc["n_events"] += len(evs)
            else:
                evs = poll(1.0)
                for fd, ev in evs:
                    cb, f = handlers[fd]
                    cb(f, ev)
            if not evs and (os.getppid() != ppid or time.monotonic() > deadline):
                break
    else:
        while running:
            if profile:
                t0 = tt()
                events = sel.select(timeout=1)
                t1 = tt()
                for key, mask in events:
                    callback = key.data
                    callback(key.fileobj, mask)
                t2 = tt()
                acc["select"] += t1 - t0
                acc["callbacks"] += t2 - t1
                acc["n_select"] += 1
                acc["n_events"] += len(events)
            else:
                events = sel.select(timeout=1)
                # the seed document's loop, as is
                for key, mask in events:
                    callback = key.data
                    callback(key.fileobj, mask)
            if not events and (os.getppid() != ppid or time.monotonic() > deadline):
                break
    sel.close()
    lsock.close()
    ctrl.close()


def asyncio_server_main(selname, ctrl, uvloop_path, cpu=None):
    import asyncio
    pin(cpu)

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    if selname == "uvloop":
        sys.path.insert(0, uvloop_path)
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.SelectorEventLoop(_selector_module(selname).EpollSelector())
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(Echo, "127.0.0.1", 0, backlog=1024))
    port = server.sockets[0].getsockname()[1]
    ppid = os.getppid()

    def on_ctrl():
        try:
            msg = ctrl.recv()
        except (EOFError, OSError):
            loop.stop()
            return
        if msg == "cpu":
            ctrl.send(time.process_time())
        elif msg == "nkeys":
            ctrl.send(-1)
        elif msg == "stop":
            ctrl.send("bye")
            loop.stop()

    def watchdog():
        if os.getppid() != ppid:
            loop.stop()
        else:
            loop.call_later(1.0, watchdog)

    loop.add_reader(ctrl.fileno(), on_ctrl)
    loop.call_later(1.0, watchdog)
    loop.call_later(3600, loop.stop)
    ctrl.send(("port", port, 0.0))
    loop.run_forever()
    loop.remove_reader(ctrl.fileno())
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()
    ctrl.close()


class ServerProc:
    def __init__(self, ctx, kind, selname, profile=False, uvloop_path=None):
        self.name = selname
        self.ctrl, child = ctx.Pipe()
        if kind == "callback":
            target, args = callback_server_main, (selname, child, profile, SERVER_CPU)
        else:
            target, args = asyncio_server_main, (selname, child, uvloop_path, SERVER_CPU)
        self.proc = ctx.Process(target=target, args=args, daemon=True)
        self.proc.start()
        child.close()
        msg = self.ask(None, timeout=30)
        assert msg[0] == "port", msg
        self.port, self.tt_cost = msg[1], msg[2]

    def ask(self, msg, timeout=10):
        if msg is not None:
            self.ctrl.send(msg)
        if not self.ctrl.poll(timeout):
            raise TimeoutError("server %s did not answer %r" % (self.name, msg))
        return self.ctrl.recv()

    def wait_idle(self, base, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            n = self.ask("nkeys")
            if n <= base:
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        try:
            self.ask("stop", timeout=10)
        except (TimeoutError, OSError, EOFError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.ctrl.close()


class ClientSet:
    """`n` loopback connections to one port, driven with a raw epoll, one message in flight each."""

    def __init__(self, port, n, size):
        self.msg = b"p" * size
        self.size = size
        self.socks = []
        self.ep = select.epoll()
        try:
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.setblocking(False)
                self.socks.append(s)
                self.ep.register(s.fileno(), select.EPOLLIN)
        except BaseException:
            self.close()
            raise
        top = max(s.fileno() for s in self.socks) + 1
        self.byfd = [None] * top
        for s in self.socks:
            self.byfd[s.fileno()] = s

    def round(self, trips, max_seconds):
        """Each connection does `trips` round trips. Returns (round trips done, seconds)."""
        size = self.size
        msg = self.msg
        byfd = self.byfd
        left = [0] * len(byfd)
        got = [0] * len(byfd)
        for s in self.socks:
            left[s.fileno()] = trips
        active = len(self.socks)
        done = 0
        poll = self.ep.poll
        t0 = time.perf_counter()
        deadline = t0 + max_seconds
        for s in self.socks:
            s.send(msg)
        while active:
            evs = poll(1.0)
            for fd, ev in evs:
                s = byfd[fd]
                data = s.recv(65536)
                if not data:
                    raise ConnectionError("server closed a connection")
                g = got[fd] + len(data)
                if g >= size:
                    g -= size
                    done += 1
                    n = left[fd] - 1
                    left[fd] = n
                    if n:
                        s.send(msg)
                    else:
                        active -= 1
                got[fd] = g
            if time.perf_counter() > deadline:
                break
        elapsed = time.perf_counter() - t0
        if active:
            # drain what is still in flight so the next round starts clean
            end = time.perf_counter() + 5
            while time.perf_counter() < end:
                evs = poll(0.2)
                if not evs:
                    break
                for fd, ev in evs:
                    try:
                        byfd[fd].recv(65536)
                    except BlockingIOError:
                        pass
        return done, elapsed, active == 0

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []
        self.ep.close()


def drive(servers, nclients, trips, rounds, size=64, max_round=20.0, profile=False):
    """Alternate rounds over the servers (order reversed every other round).

    Returns per server: list of rt/s, list of server CPU us per round trip, and with
    profile=True, list of stats deltas.
    """
    clients = {}
    old_affinity = None
    if CLIENT_CPU is not None and hasattr(os, "sched_getaffinity"):
        old_affinity = os.sched_getaffinity(0)
        pin(CLIENT_CPU)
    out = {s.name: {"rts": [], "done": [], "cpu_us_per_rt": [], "stats": [], "incomplete": 0}
           for s in servers}
    try:
        for s in servers:
            clients[s.name] = ClientSet(s.port, nclients, size)
        for s in servers:  # warm-up round, discarded
            clients[s.name].round(max(1, trips // 4), max_round)
        for r in range(rounds):
            order = servers if r % 2 == 0 else servers[::-1]
            for s in order:
                before = s.ask("stats" if profile else "cpu")
                done, el, complete = clients[s.name].round(trips, max_round)
                after = s.ask("stats" if profile else "cpu")
                if profile:
                    cpu = after["cpu"] - before["cpu"]
                    out[s.name]["stats"].append(
                        {k: after[k] - before[k] for k in after})
                else:
                    cpu = after - before
                o = out[s.name]
                o["rts"].append(done / el)
                o["done"].append(done)
                o["cpu_us_per_rt"].append(cpu / max(done, 1) * 1e6)
                if not complete:
                    o["incomplete"] += 1
    finally:
        for c in clients.values():
            c.close()
        if old_affinity is not None:
            os.sched_setaffinity(0, old_affinity)
    return out


def _start_servers(ctx, kind, names, profile=False, uvloop_path=None):
    servers = []
    try:
        for n in names:
            servers.append(ServerProc(ctx, kind, n, profile=profile, uvloop_path=uvloop_path))
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


def _e2e_table(kind_title, names, per_nclients, base="stdlib"):
    headers = ["clients", "server", "rt/s (median)", "rt/s vs %s (median of rounds, min..max)" % base,
               "server CPU us/rt", "%s CPU/rt / this (median of rounds)" % base, "server busy"]
    rows = []
    summary = {}
    for nclients, res in per_nclients:
        summ = {}
        for n in names:
            r = res[n]
            m = statistics.median(r["rts"])
            busy = [c * 1e-6 * rt for c, rt in zip(r["cpu_us_per_rt"], r["rts"])]
            s = {"rts_median": m,
                 "cpu_us_per_rt_median": statistics.median(r["cpu_us_per_rt"]),
                 "busy_median": statistics.median(busy),
                 "incomplete_rounds": r["incomplete"], "rounds": len(r["rts"])}
            row = [str(nclients), n, "%.0f" % m]
            if n != base:
                ratios = [a / b for a, b in zip(r["rts"], res[base]["rts"])]
                cratios = [b / a for a, b in zip(r["cpu_us_per_rt"], res[base]["cpu_us_per_rt"])]
                s["ratio_vs_" + base] = statistics.median(ratios)
                s["ratio_min"], s["ratio_max"] = min(ratios), max(ratios)
                s["cpu_ratio_vs_" + base] = statistics.median(cratios)
                row.append("**%.3f** (%.2f..%.2f)" % (s["ratio_vs_" + base], min(ratios),
                                                      max(ratios)))
            else:
                row.append("1")
            row.append("%.2f" % s["cpu_us_per_rt_median"])
            row.append("%.3f" % s["cpu_ratio_vs_" + base] if n != base else "1")
            row.append("%.0f%%" % (100 * s["busy_median"]))
            rows.append(row)
            summ[n] = s
        summary[nclients] = summ
    emit(md_table(headers, rows))
    inc = sum(res[n]["incomplete"] for _, res in per_nclients for n in names)
    if inc:
        emit("\nWARNING: %d round(s) hit the time bound before all round trips were done." % inc)
    return summary


E2E_NOTE = (
    "\nrt/s = round trips per second seen by the client process, median over rounds; the ratio "
    "is the median of the per-round ratios (each round drives every server once, in alternating "
    "order). server CPU us/rt = the server process's CPU time (time.process_time, user+system) "
    "per round trip, and the ratio of that is the server's efficiency gain, the figure that "
    "matters when the server is CPU-bound; server busy = server CPU time / round wall time "
    "(below 100%: the one Python client process, on the other core, is the bottleneck).")


def part_c(ctx, cfg):
    names = ["stdlib", "rselectors", "raw"]
    servers = _start_servers(ctx, "callback", names)
    per = []
    try:
        for nclients, trips in ((64, cfg.trips64), (512, cfg.trips512)):
            res = drive(servers, nclients, trips, cfg.e2e_rounds)
            per.append((nclients, res))
            for s in servers:
                if not s.wait_idle(2):
                    emit("WARNING: server %s still has connections registered" % s.name)
    finally:
        for s in servers:
            s.stop()
    emit("\n### C. Callback echo server (seed document style), EpollSelector, "
         "64-byte ping-pong, %d rounds\n" % cfg.e2e_rounds)
    summary = _e2e_table("C", names, per)
    emit(E2E_NOTE + " 'raw' is the same server on a bare `select.epoll` loop (handlers in a dict "
         "by fd): the ceiling if the selector cost nothing beyond the system call.")
    return summary


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "67108864",
              "MALLOC_TOP_PAD_": "1048576"}


def part_d(ctx, cfg, uvloop_path):
    names = ["stdlib", "rselectors"]
    note = None
    if uvloop_path:
        sys.path.insert(0, uvloop_path)
        try:
            import uvloop  # noqa: F401
            names.append("uvloop")
        except ImportError as e:
            note = "uvloop column skipped: cannot import uvloop from %s (%s)" % (uvloop_path, e)
        finally:
            sys.path.remove(uvloop_path)
    else:
        try:
            import uvloop  # noqa: F401
            uvloop_path = os.path.dirname(os.path.dirname(uvloop.__file__))
            names.append("uvloop")
        except ImportError:
            note = ("uvloop column skipped: uvloop is not importable; install it with "
                    "`pip install --target DIR uvloop` and pass `--uvloop-path DIR`")
    # asyncio reads with sock.recv(256 KiB) and shrinks the result: with glibc's default
    # (dynamic) mmap and trim thresholds, that can turn every read into brk/mmap system calls
    # and page faults, depending on the heap layout of the process -- a 4x swing in server CPU
    # per round trip that has nothing to do with the selector and that hits one server
    # process and not the other. Fixed thresholds (the same for every server) remove it.
    saved = {k: os.environ.get(k) for k in MALLOC_ENV}
    if cfg.malloc_tune:
        os.environ.update(MALLOC_ENV)
    try:
        servers = _start_servers(ctx, "asyncio", names, uvloop_path=uvloop_path)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    per = []
    try:
        for nclients, trips in ((64, cfg.trips64), (512, cfg.trips512)):
            res = drive(servers, nclients, trips, cfg.e2e_rounds)
            per.append((nclients, res))
            time.sleep(0.2)
    finally:
        for s in servers:
            s.stop()
    emit("\n### D. asyncio echo server (Protocol) on SelectorEventLoop(EpollSelector()), "
         "64-byte ping-pong, %d rounds\n" % cfg.e2e_rounds)
    emit("servers' glibc malloc: %s\n" % (
        " ".join("%s=%s" % kv for kv in MALLOC_ENV.items()) if cfg.malloc_tune
        else "default (dynamic thresholds; --no-malloc-tune)"))
    summary = _e2e_table("D", names, per)
    emit(E2E_NOTE)
    if note:
        emit("\n" + note)
    else:
        emit("\nuvloop is a reference column (its own libuv loop, no selector).")
    return summary


def part_e(ctx, cfg):
    names = ["stdlib", "rselectors", "raw"]
    servers = _start_servers(ctx, "callback", names, profile=True)
    try:
        res = drive(servers, 512, cfg.trips512, cfg.profile_rounds, profile=True)
        tt_cost = {s.name: s.tt_cost for s in servers}
    finally:
        for s in servers:
            s.stop()
    rows = []
    summary = {}
    for n in names:
        st = res[n]["stats"]
        # sum over rounds
        tot = {k: sum(d[k] for d in st) for k in st[0]}
        n_rt = sum(res[n]["done"])
        corr = tt_cost[n]  # one thread_time() call's cost inside each timed interval
        sel_cpu = max(0.0, tot["select"] - corr * tot["n_select"])
        cb_cpu = max(0.0, tot["callbacks"] - corr * tot["n_select"])
        reg_cpu = max(0.0, tot["regunreg"] - corr * tot["n_regunreg"])
        cpu = tot["cpu"]
        instr = 2 * corr * tot["n_select"]
        other = cpu - sel_cpu - cb_cpu - reg_cpu
        summary[n] = {
            "server_cpu_s": cpu, "select_cpu_s": sel_cpu, "callbacks_cpu_s": cb_cpu,
            "regunreg_cpu_s": reg_cpu, "n_select": tot["n_select"], "n_events": tot["n_events"],
            "select_share": sel_cpu / cpu, "callbacks_share": cb_cpu / cpu,
            "regunreg_share": reg_cpu / cpu, "other_share": other / cpu,
            "select_us_per_call": sel_cpu / max(tot["n_select"], 1) * 1e6,
            "select_us_per_event": sel_cpu / max(tot["n_events"], 1) * 1e6,
            "events_per_select": tot["n_events"] / max(tot["n_select"], 1),
            "server_cpu_us_per_rt": cpu / n_rt * 1e6,
            "thread_time_cost_us": corr * 1e6, "instrumentation_share": instr / cpu,
        }
        s = summary[n]
        rows.append([n, "%.2f" % s["server_cpu_us_per_rt"], "%.1f%%" % (100 * s["select_share"]),
                     "%.3f" % s["select_us_per_event"], "%.1f" % s["events_per_select"],
                     "%.1f%%" % (100 * s["regunreg_share"]),
                     "%.1f%%" % (100 * s["callbacks_share"]), "%.1f%%" % (100 * s["other_share"])])
    emit("\n### E. Profile of the callback echo server, 512 clients, %d rounds "
         "(thread CPU time around each call)\n" % cfg.profile_rounds)
    emit(md_table(["server", "srv CPU us/rt", "in select()", "select CPU us/event",
                   "events/select", "in register/unregister", "in callbacks (recv+send)",
                   "loop+rest"], rows))
    sr, ss, sw = (summary[k]["select_us_per_event"] for k in ("rselectors", "stdlib", "raw"))
    for n in names:
        s = summary[n]
        s["above_floor_share"] = max(0.0, (s["select_us_per_event"] - sw) * s["n_events"]
                                     * 1e-6 / s["server_cpu_s"])
    emit("\nSelector CPU per ready event: stdlib %.3f us, rselectors %.3f us, raw `epoll.poll` "
         "alone %.3f us. Share of server CPU in selector work above that floor: stdlib %.1f%%, "
         "rselectors %.1f%%. "
         % (ss, sr, sw, 100 * summary["stdlib"]["above_floor_share"],
            100 * summary["rselectors"]["above_floor_share"]))
    emit("Per ready event the cost also depends on how many events one call returns (the "
         "events/select column: a faster server returns with fewer events ready). "
         "Each timed interval is corrected for one time.thread_time() call (%.2f us here); "
         "the instrumentation itself is %.1f%% of the stdlib server's CPU."
         % (summary["stdlib"]["thread_time_cost_us"],
            100 * summary["stdlib"]["instrumentation_share"]))
    emit("register/unregister run only at connect/close, outside the measured ping-pong rounds, "
         "so their share in this steady-state load is ~0 by construction.")
    return summary


# ----------------------------------------------------------------------------- part F

def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def mem_child(variant):
    """Runs in a fresh interpreter: RSS growth over 16000 registrations (8000 pairs, both ends)."""
    raise_nofile()
    pool = Pairs(8000)
    socks = [s for p in pool.pairs for s in p]
    if variant == "raw-epoll":
        sel = select.epoll()
        reg = lambda s: sel.register(s.fileno(), select.EPOLLIN)  # noqa: E731
    else:
        lib, cls = variant.split(".")
        sel = getattr(_selector_module(lib), cls)()
        reg = lambda s: sel.register(s, EVENT_READ)  # noqa: E731
    # warm up the code paths (and one-time allocations) on one fd, then measure the rest
    reg(socks[0])
    gc.collect()
    before = _rss_bytes()
    for s in socks[1:]:
        reg(s)
    gc.collect()
    after = _rss_bytes()
    sel.close()
    # second pass on a new selector: the part of it that the Python allocators hold
    import tracemalloc
    if variant == "raw-epoll":
        sel = select.epoll()
        reg = lambda s: sel.register(s.fileno(), select.EPOLLIN)  # noqa: E731
    else:
        sel = getattr(_selector_module(lib), cls)()
        reg = lambda s: sel.register(s, EVENT_READ)  # noqa: E731
    reg(socks[0])
    gc.collect()
    tracemalloc.start()
    t0 = tracemalloc.get_traced_memory()[0]
    for s in socks[1:]:
        reg(s)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - t0
    tracemalloc.stop()
    sel.close()
    pool.close()
    print(json.dumps({"variant": variant, "n": len(socks) - 1, "before": before,
                      "after": after, "traced": traced}))


def alloc_child(variant):
    """Runs in a fresh interpreter: tracemalloc peak over 1000 select(0) calls, R registered, 1 ready."""
    import tracemalloc
    raise_nofile()
    out = {"variant": variant}
    pool = Pairs(8000)
    try:
        for reg in (1, 8000):
            socks = pool.a(reg)
            pool.set_ready(reg, 1)
            if variant == "raw-epoll":
                sel = select.epoll()
                for s in socks:
                    sel.register(s.fileno(), select.EPOLLIN)
                call = lambda: sel.poll(0, reg)  # noqa: E731
            else:
                lib, cls = variant.split(".")
                sel = getattr(_selector_module(lib), cls)()
                for s in socks:
                    sel.register(s, EVENT_READ)
                call = lambda: sel.select(0)  # noqa: E731
            assert len(call()) == 1
            gc.collect()
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            for _ in range(1000):
                call()
            cur, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            out[str(reg)] = {"peak_over_base": peak - base, "retained": cur - base}
            sel.close()
    finally:
        pool.close()
    print(json.dumps(out))


def _run_child(flag, variant):
    p = subprocess.run([sys.executable, os.path.abspath(__file__), flag, variant],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("%s %s failed:\n%s" % (flag, variant, p.stderr))
    return json.loads(p.stdout.strip().splitlines()[-1])


def part_f(cfg):
    variants = ["stdlib.EpollSelector", "rselectors.EpollSelector",
                "stdlib.PollSelector", "rselectors.PollSelector",
                "stdlib.SelectSelector", "rselectors.SelectSelector", "raw-epoll"]
    per_fd = {v: [] for v in variants}
    traced = {v: [] for v in variants}
    for _ in range(cfg.mem_reps):  # interleaved: each repetition runs every variant once
        for v in variants:
            d = _run_child("--_mem-child", v)
            per_fd[v].append((d["after"] - d["before"]) / d["n"])
            traced[v].append(d["traced"] / d["n"])
    rows = []
    summary = {"rss_bytes_per_fd": {}, "traced_bytes_per_fd": {}, "select_alloc": {}}
    for v in variants:
        m = statistics.median(per_fd[v])
        t = statistics.median(traced[v])
        summary["rss_bytes_per_fd"][v] = m
        summary["traced_bytes_per_fd"][v] = t
        rows.append([v, "%.3f" % (m / 1024), "%.0f" % m,
                     " ".join("%.0f" % x for x in per_fd[v]), "%.0f" % t, "%.0f" % (m - t)])
    emit("\n### F. Memory\n")
    emit("RSS growth per registered fd, 16000 registrations (8000 socket pairs, both ends), "
         "fresh interpreter per run, median of %d runs:\n" % cfg.mem_reps)
    emit(md_table(["selector", "RSS KiB per fd", "RSS bytes per fd", "runs (bytes/fd)",
                   "of which Python heap (tracemalloc)", "rest (native: malloc, tables)"], rows))
    for cls in ("Epoll", "Poll", "Select"):
        s = summary["rss_bytes_per_fd"]["stdlib.%sSelector" % cls]
        r = summary["rss_bytes_per_fd"]["rselectors.%sSelector" % cls]
        summary["rsel_over_stdlib_%s" % cls] = r / s if s > 0 else None
    rows = []
    for v in ["stdlib.EpollSelector", "rselectors.EpollSelector", "stdlib.PollSelector",
              "rselectors.PollSelector", "raw-epoll"]:
        d = _run_child("--_alloc-child", v)
        summary["select_alloc"][v] = d
        rows.append([v, d["1"]["peak_over_base"], d["8000"]["peak_over_base"],
                     d["8000"]["peak_over_base"] - d["1"]["peak_over_base"],
                     d["8000"]["retained"]])
    emit("\ntracemalloc during 1000 `select(0)` calls with 1 ready fd (bytes above the "
         "baseline; the peak is what one call holds at once):\n")
    emit(md_table(["selector", "peak, 1 registered", "peak, 8000 registered",
                   "growth with 8000 fds", "retained after 8000-fd run"], rows))
    emit("\ntracemalloc sees the Python allocators (objects, PyMem_*), which is where the "
         "stdlib's per-call `epoll_event[maxevents]` buffer comes from; an allocation made "
         "with Rust's global allocator (malloc) is not traced: part A's (8000,1) vs (1,1) times "
         "are the evidence for those.")
    return summary


# ----------------------------------------------------------------------------- plot

def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if "A" in results:
        for cls, cells in results["A"].items():
            panels.append(("A. select(0) %s: time / raw floor" % cls, cells))
    n = len(panels) + sum(k in results for k in ("B", "C", "D", "F"))
    if n == 0:
        return
    cols = 2
    rows = (n + 1) // 2
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.6 * rows), squeeze=False)
    axes = [a for r in axes for a in r]
    i = 0
    for title, cells in panels:
        ax = axes[i]
        i += 1
        labels = ["%d/%d" % tuple(c["cell"]) for c in cells]
        s = [c.get("stdlib_over_raw", 0) for c in cells]
        r = [c.get("rsel_over_raw", 0) for c in cells]
        x = range(len(cells))
        ax.bar([k - 0.2 for k in x], s, 0.4, label="stdlib")
        ax.bar([k + 0.2 for k in x], r, 0.4, label="rselectors")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylim(0, max(s + r + [1.0]) * 1.3)
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_xlabel("registered/ready (empty = skipped)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    if "B" in results:
        ax = axes[i]
        i += 1
        ops = ["register+unregister", "modify", "get_key"]
        b = results["B"]
        s = [b[o]["stdlib"] * 1e9 for o in ops]
        r = [b[o]["rselectors"] * 1e9 for o in ops]
        w = [b[o].get("raw", 0) * 1e9 for o in ops]
        x = range(len(ops))
        ax.bar([k - 0.27 for k in x], s, 0.27, label="stdlib")
        ax.bar(list(x), r, 0.27, label="rselectors")
        ax.bar([k + 0.27 for k in x], w, 0.27, label="raw epoll")
        ax.set_xticks(list(x))
        ax.set_xticklabels(ops, fontsize=8)
        ax.set_ylabel("ns per call")
        ax.set_title("B. registration calls", fontsize=9)
        ax.legend(fontsize=8)
    for part, title in (("C", "C. callback echo server vs stdlib"),
                        ("D", "D. asyncio echo server vs stdlib")):
        if part not in results:
            continue
        ax = axes[i]
        i += 1
        summ = results[part]
        ncl = sorted(summ, key=int)
        names = [nm for nm in summ[ncl[0]] if nm != "stdlib"]
        bars = [(nm, "rt/s", "ratio_vs_stdlib") for nm in names] + \
               [(nm, "server CPU efficiency", "cpu_ratio_vs_stdlib") for nm in names]
        width = 0.8 / len(bars)
        for j, (nm, what, key) in enumerate(bars):
            ax.bar([k + (j - (len(bars) - 1) / 2) * width for k in range(len(ncl))],
                   [summ[c][nm][key] for c in ncl], width, label="%s: %s" % (nm, what))
        ax.axhline(1.0, color="k", lw=0.8)
        vals = [summ[c][nm][key] for c in ncl for nm, _, key in bars]
        ax.set_ylim(min(vals + [1.0]) - 0.15, max(vals + [1.0]) + 0.25)
        ax.set_xticks(range(len(ncl)))
        ax.set_xticklabels(["%s clients" % c for c in ncl], fontsize=8)
        ax.set_ylabel("ratio to stdlib (>1 = better)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    if "F" in results:
        ax = axes[i]
        i += 1
        d = results["F"]["rss_bytes_per_fd"]
        ks = list(d)
        ax.barh(range(len(ks)), [d[k] for k in ks])
        ax.set_yticks(range(len(ks)))
        ax.set_yticklabels(ks, fontsize=7)
        ax.set_xlabel("RSS bytes per registered fd")
        ax.set_title("F. memory", fontsize=9)
    for ax in axes[i:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------- main

class Config:
    def __init__(self, quick, rounds=None, e2e_rounds=None):
        if quick:
            self.rounds, self.target = 15, 0.001
            self.e2e_rounds, self.profile_rounds = 10, 4
            self.trips64, self.trips512 = 100, 12
            self.mem_reps = 1
        else:
            self.rounds, self.target = 41, 0.002
            self.e2e_rounds, self.profile_rounds = 60, 16
            self.trips64, self.trips512 = 160, 20
            self.mem_reps = 3
        if rounds:
            self.rounds = rounds
        if e2e_rounds:
            self.e2e_rounds = e2e_rounds


def _open_fds():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ext = getattr(rselectors, "_rselectors", None) or sys.modules.get("rselectors._rselectors")
    ext_file = getattr(ext, "__file__", None)
    build = "?"
    if ext_file:
        build = "%s (built %s)" % (ext_file, time.strftime(
            "%Y-%m-%d %H:%M:%S UTC", time.gmtime(os.path.getmtime(ext_file))))
    try:
        head = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)),
                               "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        head = "?"
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": os.uname().release,
            "python": sys.version.split()[0], "rselectors": build, "git": head}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, under a minute")
    ap.add_argument("--plot", metavar="FILE.png", help="draw the tables (needs matplotlib)")
    ap.add_argument("--uvloop-path", metavar="DIR",
                    help="directory holding uvloop (pip install --target DIR uvloop)")
    ap.add_argument("--only", metavar="PARTS", default="ABCDEF",
                    help="parts to run, e.g. A,B or CE (default: all)")
    ap.add_argument("--rounds", type=int, help="rounds for the micro-benchmarks (A, B)")
    ap.add_argument("--e2e-rounds", type=int,
                    help="rounds for the end-to-end servers (C, D; 60 full, 10 quick): a "
                         "round is short, so a few percent needs a few hundred")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="clock of the micro-benchmarks A and B: the thread's CPU time "
                         "(default; preemption by other processes does not count) or "
                         "time.perf_counter")
    ap.add_argument("--pin", action="store_true",
                    help="end to end: pin the client to the first CPU and every server to the "
                         "second (default: no pinning, the scheduler places them)")
    ap.add_argument("--no-malloc-tune", action="store_true",
                    help="part D: leave glibc's dynamic mmap/trim thresholds in the asyncio "
                         "servers (see the note in part D)")
    ap.add_argument("--_mem-child", dest="mem_child", help=argparse.SUPPRESS)
    ap.add_argument("--_alloc-child", dest="alloc_child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.mem_child:
        return mem_child(args.mem_child)
    if args.alloc_child:
        return alloc_child(args.alloc_child)

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib, which is not importable here (it is an optional "
                  "extra: `pip install matplotlib`, or put it on PYTHONPATH)", file=sys.stderr)
            return 2

    global CLOCK, SERVER_CPU, CLIENT_CPU
    if args.pin and hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            CLIENT_CPU, SERVER_CPU = cpus[0], cpus[1]
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    parts = set(args.only.upper().replace(",", ""))
    cfg = Config(args.quick, args.rounds, args.e2e_rounds)
    cfg.malloc_tune = not args.no_malloc_tune
    soft, hard = raise_nofile()
    info = machine_info()
    t_start = time.monotonic()
    emit("# rselectors benchmark (%s)\n" % ("--quick" if args.quick else "full"))
    emit("%s; nproc %s; %s; Linux %s; Python %s; RLIMIT_NOFILE soft %s hard %s"
         % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), info["nproc"], info["cpu"],
            info["kernel"], info["python"], soft, hard))
    emit("rselectors: %s; work tree at git %s" % (info["rselectors"], info["git"]))
    emit("end to end: %s" % ("client pinned to CPU %d, every server to CPU %d (the servers "
                              "alternate, so they share one CPU's conditions)"
                              % (CLIENT_CPU, SERVER_CPU) if SERVER_CPU is not None
                              else "no CPU pinning (--pin to pin)"))
    emit("load average at start: %.2f %.2f %.2f (on %s CPUs; other processes share them)"
         % (os.getloadavg() + (info["nproc"],)))
    emit("micro-benchmarks: %d interleaved rounds, batches of >= %.1f ms, clock: %s; end to end: "
         "%d rounds (64 clients x %d round trips, 512 clients x %d round trips per round)"
         % (cfg.rounds, cfg.target * 1e3,
            "thread CPU time" if args.clock == "cpu" else "wall (perf_counter)",
            cfg.e2e_rounds, cfg.trips64, cfg.trips512))

    results = {"machine": info, "quick": args.quick}
    fds_at_start = _open_fds()
    if parts & set("AB"):
        need = 8000 if "A" in parts else 1000
        if soft != resource.RLIM_INFINITY and soft < 2 * need + 100:
            emit("RLIMIT_NOFILE %d is too low for %d socket pairs; parts A/B skipped"
                 % (soft, need))
        else:
            pool = Pairs(need)
            try:
                if "A" in parts:
                    results["A"] = part_a(pool, cfg)
                if "B" in parts:
                    results["B"] = part_b(pool, cfg)
            finally:
                pool.close()
    if parts & set("CDE"):
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        if "C" in parts:
            results["C"] = part_c(ctx, cfg)
        if "D" in parts:
            results["D"] = part_d(ctx, cfg, args.uvloop_path)
        if "E" in parts:
            results["E"] = part_e(ctx, cfg)
    if "F" in parts:
        results["F"] = part_f(cfg)
    emit("\ntotal time %.1f s; load average at end: %.2f %.2f %.2f"
         % ((time.monotonic() - t_start,) + os.getloadavg()))
    import multiprocessing
    left = multiprocessing.active_children()
    fds_at_end = _open_fds()
    emit("clean up: %d child process(es) left, open fds %d at start and %d at end%s"
         % (len(left), fds_at_start, fds_at_end,
            " (one is the pipe to multiprocessing's resource tracker, which exits with this "
            "process)" if parts & set("CDE") else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    if args.plot:
        plot(results, args.plot)
        emit("plot written to %s" % args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
