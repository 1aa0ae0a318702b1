"""Side-by-side timing of two builds of rselectors (e.g. default vs --features abi3).

Each figure is rselectors relative to the raw select.epoll (or select.poll) call in the same
process, so runs of different builds in different processes can be compared (get_key is in
ns; "modify data" is the stdlib's time over ours). Usage (see BENCHMARKS.md):

    maturin build --release -o /tmp/wdef
    maturin build --release --features abi3 -o /tmp/wabi3
    mkdir /tmp/defpkg /tmp/abi3pkg
    (cd /tmp/defpkg && unzip -q /tmp/wdef/*.whl); (cd /tmp/abi3pkg && unzip -q /tmp/wabi3/*.whl)
    for i in 1 2 3 4 5; do for v in def abi3; do
        echo "$v $(PYTHONPATH=/tmp/${v}pkg python benches/build_compare.py)"; done; done
"""
import json, resource, select, socket, sys, time
import rselectors
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def t(fn, n):
    best = []
    for _ in range(5):
        s = time.thread_time()
        for _ in range(n): fn()
        best.append((time.thread_time() - s) / n)
    best.sort(); return best[2] * 1e9
out = {}
for nreg, nready in [(1, 1), (100, 10), (1000, 10), (8000, 100)]:
    pairs = [socket.socketpair() for _ in range(nreg)]
    for a, b in pairs[:nready]: b.send(b"x")
    s = rselectors.EpollSelector()
    for a, b in pairs: s.register(a, 1)
    ep = select.epoll()
    for a, b in pairs: ep.register(a.fileno(), select.EPOLLIN)
    n = 3000 if nreg < 5000 else 300
    out["select%s" % ((nreg, nready),)] = t(lambda: s.select(0), n) / t(lambda: ep.poll(0, nreg), n)
    s.close(); ep.close()
    s = rselectors.PollSelector()
    for a, b in pairs: s.register(a, 1)
    p = select.poll()
    for a, b in pairs: p.register(a.fileno(), select.POLLIN)
    n = 3000 if nreg < 500 else 300 if nreg < 5000 else 30
    out["poll select%s" % ((nreg, nready),)] = t(lambda: s.select(0), n) / t(lambda: p.poll(0), n)
    s.close()
    for a, b in pairs: a.close(); b.close()
a, b = socket.socketpair()
s = rselectors.EpollSelector()
ep = select.epoll(); fd = a.fileno()
def rr(): s.register(a, 1); s.unregister(a)
def raw(): ep.register(fd, 1); ep.unregister(fd)
out["reg+unreg"] = t(rr, 20000) / t(raw, 20000)
s.register(a, 1); ep.register(fd, 1)
out["modify"] = t(lambda: (s.modify(a, 2), s.modify(a, 1)), 10000) / t(lambda: (ep.modify(fd, 4), ep.modify(fd, 1)), 10000)
out["modify, raw with the socket"] = (t(lambda: (s.modify(a, 2), s.modify(a, 1)), 10000)
                                     / t(lambda: (ep.modify(a, 4), ep.modify(a, 1)), 10000))
out["get_key_ns"] = t(lambda: s.get_key(a), 50000)
# modify with only `data` changed: the stdlib's time over ours (a speed-up, higher is better).
import selectors
std = selectors.EpollSelector()
std.register(a, 1)
d1, d2 = object(), object()
out["modify data, stdlib/rsel"] = (t(lambda: (std.modify(a, 1, d1), std.modify(a, 1, d2)), 10000)
                                   / t(lambda: (s.modify(a, 1, d1), s.modify(a, 1, d2)), 10000))
std.close()
s.close()
s = rselectors.PollSelector()
p = select.poll()
def prr(): s.register(a, 1); s.unregister(a)
def praw(): p.register(fd, 1); p.unregister(fd)
out["poll reg+unreg"] = t(prr, 20000) / t(praw, 20000)
print(json.dumps(out))
