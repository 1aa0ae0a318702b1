"""Reliability 1: differential state-machine testing with Hypothesis.

One stdlib selector and one rselectors selector of the same kind watch the *same* objects
(real socket pairs, pipes and dup2'ed fd numbers): two selectors may watch one fd.  Hypothesis
drives random sequences of register / modify (events, data, both) / unregister / get_key /
get_map lookups / select(0) / close, interleaved with rules that change the fds under the
selectors: send bytes, drain, shutdown(SHUT_WR), close an fd behind the selectors' back,
reuse a closed fd number (os.dup2 onto it, or a new socket pair taking the lowest number).

Every operation is run on both selectors and the outcomes are compared: return values (keys
as (fileobj identity, fd, events, data identity)), exceptions (type and message); after every
step an invariant compares the full ``get_map()`` content (in order) and the ``select(0)``
ready set (sorted: the kernel's order may legitimately differ between two epoll instances).

CI runs the ``reliability-ci`` profile (see support/reliability.py); for long runs::

    python -m pytest --hypothesis-profile=long tests/reliability/test_state_machine.py
"""

import errno
import fcntl
import os
import selectors as std_selectors
import socket

import pytest

from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

import rselectors
from support.reliability import machine_settings

MAX_OPEN = 12  # open fds the machine keeps at most (resources, not counting selectors)
FORMS = st.sampled_from(["obj", "int", "wrapper"])
EVENTS = [1, 2, 3, 1, 2, 3, 1, 2, 3, 0, 4, -1, 7, True, 1.0, None]


class Data:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "<Data %s>" % self.name


class Wrapper:
    """A persistent third form of a resource: an object whose fileno() returns its fd number
    (even after the fd was closed: a stale wrapper)."""

    def __init__(self, res):
        self.res = res

    def fileno(self):
        return self.res.fd

    def __repr__(self):
        return "<Wrapper %s>" % self.res.label


class Res:
    """A file descriptor under test: a socket object, or a raw int (pipe end, dup2 copy)."""

    def __init__(self, label, obj, kind, peer=None):
        self.label = label
        self.obj = obj
        self.kind = kind  # "sock", "pipe_r", "pipe_w", "dup"
        self.fd = obj.fileno() if isinstance(obj, socket.socket) else obj
        self.peer = peer  # the Res whose writes make this one readable (and vice versa)
        self.closed = False
        self.origin = None  # for "dup": the Res it is a copy of
        self.wrapper = Wrapper(self)

    def __repr__(self):
        return "<Res %s fd=%d%s>" % (self.label, self.fd, " closed" if self.closed else "")


def _fd_is_open(fd):
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
        return True
    except OSError as exc:
        if exc.errno == errno.EBADF:
            return False
        raise


class DifferentialMachine(RuleBasedStateMachine):
    KIND = None

    def __init__(self):
        super().__init__()
        self.std = getattr(std_selectors, self.KIND + "Selector")()
        self.rs = getattr(rselectors, self.KIND + "Selector")()
        self.res = []
        self.freed = []  # fd numbers we closed and may reuse with dup2
        self.count = 0
        self.data_pool = [None, Data("d0"), Data("d1"), 0, "s", 2.5, (1, 2)]
        self.labels = {id(d): "data%d" % i for i, d in enumerate(self.data_pool)}
        self.closed_sel = False
        self.steps = []

    # -- canonical forms --------------------------------------------------------------
    def ident(self, x):
        lab = self.labels.get(id(x))
        if lab is not None:
            return lab
        if isinstance(x, (int, float, str)) or x is None:
            return (type(x).__name__, repr(x))
        return ("id", type(x).__name__, id(x))

    def canon(self, v):
        if isinstance(v, BaseException):
            return ("raise", type(v).__name__, str(v))
        if isinstance(v, tuple) and type(v).__name__ == "SelectorKey" and len(v) == 4:
            return ("key", self.ident(v[0]), self.ident(v[1]), self.ident(v[2]), self.ident(v[3]))
        if isinstance(v, list):
            return [self.canon(x) for x in v]
        if isinstance(v, tuple):
            return tuple(self.canon(x) for x in v)
        return self.ident(v)

    def outcome(self, fn, sel):
        try:
            return ("ok", self.canon(fn(sel)))
        except Exception as exc:  # noqa: BLE001
            return self.canon(exc)

    def both(self, step, fn):
        """Run fn(selector) on the stdlib selector then on rselectors; outcomes must match."""
        a = self.outcome(fn, self.std)
        b = self.outcome(fn, self.rs)
        self.steps.append(step)
        assert a == b, "%s [%s]:\n  stdlib:     %r\n  rselectors: %r\n  resources: %r" % (
            step, self.KIND, a, b, self.res)
        return a

    # -- helpers ----------------------------------------------------------------------
    def pick(self, i):
        return self.res[i % len(self.res)]

    def open_res(self):
        return [r for r in self.res if not r.closed]

    def fileobj(self, r, form):
        return {"obj": r.obj, "int": r.fd, "wrapper": r.wrapper}[form]

    def name(self, *resources):
        """Label the objects of resources (kept alive in self.res: ids are not reused)."""
        for r in resources:
            if isinstance(r.obj, socket.socket):
                self.labels[id(r.obj)] = r.label
            self.labels[id(r.wrapper)] = r.label + ".wrapper"

    def new_label(self, prefix):
        self.count += 1
        return "%s%d" % (prefix, self.count)

    # -- resources --------------------------------------------------------------------
    @initialize()
    def start_with_a_pair_and_a_pipe(self):
        self.new_socketpair()
        self.new_pipe()

    @precondition(lambda self: len(self.open_res()) <= MAX_OPEN - 2)
    @rule()
    def new_socketpair(self):
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        n = self.new_label("s")
        ra, rb = Res(n + "a", a, "sock"), Res(n + "b", b, "sock")
        ra.peer, rb.peer = rb, ra
        self.res += [ra, rb]
        self.name(ra, rb)
        for r in (ra, rb):
            if r.fd in self.freed:
                self.freed.remove(r.fd)

    @precondition(lambda self: len(self.open_res()) <= MAX_OPEN - 2)
    @rule()
    def new_pipe(self):
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        n = self.new_label("p")
        rr, rw = Res(n + "r", r, "pipe_r"), Res(n + "w", w, "pipe_w")
        rr.peer, rw.peer = rw, rr
        self.res += [rr, rw]
        self.name(rr, rw)
        for x in (r, w):
            if x in self.freed:
                self.freed.remove(x)

    @precondition(lambda self: self.freed and self.open_res() and len(self.open_res()) < MAX_OPEN)
    @rule(src=st.integers(0, 63), slot=st.integers(0, 63))
    def reuse_fd_number(self, src, slot):
        """os.dup2 an open fd onto a number closed behind the selectors' back."""
        source = self.open_res()[src % len(self.open_res())]
        number = self.freed[slot % len(self.freed)]
        if _fd_is_open(number):  # taken by something else meanwhile: leave it alone
            self.freed.remove(number)
            return
        os.dup2(source.fd, number, inheritable=False)
        self.freed.remove(number)
        d = Res(self.new_label("dup"), number, "dup", peer=source.peer)
        d.origin = source
        self.res.append(d)
        self.name(d)

    @precondition(lambda self: self.open_res())
    @rule(t=st.integers(0, 63))
    def close_behind_back(self, t):
        r = self.open_res()[t % len(self.open_res())]
        if isinstance(r.obj, socket.socket):
            r.obj.close()
        else:
            os.close(r.fd)
        r.closed = True
        self.freed.append(r.fd)

    @precondition(lambda self: self.open_res())
    @rule(t=st.integers(0, 63), n=st.sampled_from([1, 10, 4096]))
    def send(self, t, n):
        r = self.open_res()[t % len(self.open_res())]
        writer = r
        if r.kind == "pipe_r":
            writer = r.peer
        elif r.kind == "dup" and r.origin is not None and r.origin.kind == "pipe_r":
            writer = r.origin.peer
        if writer is None or writer.closed:
            return
        try:
            if isinstance(writer.obj, socket.socket):
                writer.obj.send(b"x" * n)
            else:
                os.write(writer.fd, b"x" * n)
        except OSError:
            pass

    @precondition(lambda self: self.open_res())
    @rule(t=st.integers(0, 63))
    def drain(self, t):
        r = self.open_res()[t % len(self.open_res())]
        for _ in range(1000):
            try:
                if isinstance(r.obj, socket.socket):
                    got = r.obj.recv(1 << 16)
                else:
                    got = os.read(r.fd, 1 << 16)
            except OSError:
                return
            if not got:
                return

    @precondition(lambda self: any(r.kind == "sock" for r in self.open_res()))
    @rule(t=st.integers(0, 63), how=st.sampled_from([socket.SHUT_WR, socket.SHUT_WR,
                                                       socket.SHUT_RD, socket.SHUT_RDWR]))
    def shutdown(self, t, how):
        socks = [r for r in self.open_res() if r.kind == "sock"]
        r = socks[t % len(socks)]
        try:
            r.obj.shutdown(how)
        except OSError:
            pass

    # -- selector operations ----------------------------------------------------------
    @precondition(lambda self: self.res)
    @rule(t=st.integers(0, 63), events=st.sampled_from(EVENTS), d=st.integers(0, 6),
          form=FORMS)
    def register(self, t, events, d, form):
        r = self.pick(t)
        f = self.fileobj(r, form)
        data = self.data_pool[d]
        self.both("register(%r, %r, %r)" % (f, events, data), lambda s: s.register(f, events, data))

    @precondition(lambda self: self.res)
    @rule(t=st.integers(0, 63), what=st.sampled_from(["events", "data", "both", "same"]),
          events=st.sampled_from(EVENTS), d=st.integers(0, 6), form=FORMS)
    def modify(self, t, what, events, d, form):
        r = self.pick(t)
        f = self.fileobj(r, form)
        try:
            cur = self.std.get_key(f)
            cur_events, cur_data = cur.events, cur.data
        except Exception:  # noqa: BLE001
            cur_events, cur_data = 1, None
        new_data = self.data_pool[d]
        ev = {"events": events, "data": cur_events, "both": events, "same": cur_events}[what]
        da = {"events": cur_data, "data": new_data, "both": new_data, "same": cur_data}[what]
        self.both("modify(%r, %r, %r) [%s]" % (f, ev, da, what), lambda s: s.modify(f, ev, da))

    @precondition(lambda self: self.res)
    @rule(t=st.integers(0, 63), form=FORMS)
    def unregister(self, t, form):
        f = self.fileobj(self.pick(t), form)
        self.both("unregister(%r)" % (f,), lambda s: s.unregister(f))

    @precondition(lambda self: self.res)
    @rule(t=st.integers(0, 63), form=FORMS)
    def get_key(self, t, form):
        f = self.fileobj(self.pick(t), form)
        self.both("get_key(%r)" % (f,), lambda s: s.get_key(f))

    @precondition(lambda self: self.res)
    @rule(t=st.integers(0, 63), form=FORMS,
          op=st.sampled_from(["len", "iter", "items", "values", "in", "getitem", "get",
                              "get-default", "bool", "keys-eq"]))
    def map_lookup(self, t, form, op):
        f = self.fileobj(self.pick(t), form)
        ops = {
            "len": lambda m: len(m),
            "iter": lambda m: list(m),
            "items": lambda m: list(m.items()),
            "values": lambda m: list(m.values()),
            "in": lambda m: f in m,
            "getitem": lambda m: m[f],
            "get": lambda m: m.get(f),
            "get-default": lambda m: m.get(f, "dflt"),
            "bool": lambda m: bool(m),
            "keys-eq": lambda m: sorted(m.keys()) == sorted(k.fd for k in m.values()),
        }

        def run(sel):
            m = sel.get_map()
            if m is None:
                return "map is None"
            return ops[op](m)

        self.both("get_map() %s %r" % (op, f), run)

    @rule()
    def select0(self):
        self.both("select(0)", self.ready)

    @rule(gate=st.integers(0, 5))
    def close(self, gate):
        if gate:  # close is rarer than the other rules: most sequences keep the selector
            return
        self.both("close()", lambda s: s.close())
        self.closed_sel = True

    @precondition(lambda self: self.closed_sel)
    @rule()
    def close_again(self):
        self.both("close() again", lambda s: s.close())

    # -- after every step -------------------------------------------------------------
    def ready(self, sel):
        res = sel.select(0)  # canonicalised by outcome(); sorted: kernel order may differ
        return sorted(res, key=lambda item: repr(self.canon(item)))

    def snapshot(self, sel):
        m = sel.get_map()
        if m is None:
            return None
        return (len(m), [(fd, k) for fd, k in m.items()])

    @invariant()
    def same_map(self):
        self.both("invariant: get_map() content", self.snapshot)

    @invariant()
    def same_ready(self):
        self.both("invariant: select(0)", self.ready)

    def teardown(self):
        for sel in (self.std, self.rs):
            try:
                sel.close()
            except Exception:  # noqa: BLE001
                pass
        for r in reversed(self.res):
            if r.closed:
                continue
            r.closed = True
            if isinstance(r.obj, socket.socket):
                r.obj.close()
            else:
                try:
                    os.close(r.fd)
                except OSError:
                    pass


def _machine(kind):
    cls = type("Differential%sMachine" % kind, (DifferentialMachine,), {"KIND": kind})
    case = cls.TestCase
    case.settings = machine_settings()
    case.pytestmark = [pytest.mark.slow]
    return case


TestEpollStateMachine = _machine("Epoll")
TestPollStateMachine = _machine("Poll")
TestSelectStateMachine = _machine("Select")
