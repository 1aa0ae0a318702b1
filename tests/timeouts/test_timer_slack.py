"""Short waits without a private fd (issue 20): the thread's timer slack, lowered for the wait.

A wait of up to 10 ms runs with the waiting thread's timer slack at 1 ns and puts it back as
it was right after the system call, before any Python code runs. Nothing of rselectors' lives
in the user's epoll set: the differential tests here replay the scenario that the timerfd got
wrong (a socket closed without being unregistered, then a sub-millisecond wait, then
modify/unregister/register of its number), and count the process's fds around waits of every
length. Lower bounds, counts of calls and the slack's value only, no speed.
"""

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import rselectors
from support.differential import rec_map, rec_select
from support.kinds import KINDS, skip_stale_fd_reuse_on_libkqueue
from test_timeout_precision import seccomp_child

LINUX = sys.platform.startswith("linux")
R, W = rselectors.EVENT_READ, rselectors.EVENT_WRITE
# Around the 10 ms limit, and each side of a whole millisecond.
WAITS = [1e-6, 1e-5, 5e-5, 2e-4, 9.99e-4, 0.001, 0.0015, 0.005, 0.01, 0.0101, 0.02]

needs_linux = pytest.mark.skipif(not LINUX, reason="the timer slack is Linux's (prctl)")

PR_SET_TIMERSLACK, PR_GET_TIMERSLACK = 29, 30


def _prctl(option, arg=0):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.restype = ctypes.c_long
    args = [ctypes.c_ulong(a) for a in (option, arg, 0, 0, 0)]
    return libc.prctl(*args)


def slack():
    """The calling thread's timer slack, in ns."""
    return _prctl(PR_GET_TIMERSLACK)


def set_slack(ns):
    assert _prctl(PR_SET_TIMERSLACK, ns) == 0


@pytest.fixture
def own_slack():
    """The calling thread's slack set to a value of the test's (a program's own), restored
    after the test."""
    before = slack()
    set_slack(123_457)
    yield 123_457
    set_slack(before)


@pytest.fixture
def prctl_hook():
    """rselectors' prctl made to fail with an errno (counting the calls that would have been
    made), forgotten after the test."""
    yield rselectors._rselectors._timer_slack
    rselectors._rselectors._timer_slack(0)


@pytest.fixture
def pair():
    """A connected socket pair, closed after the test."""
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def selector(kind):
    return getattr(rselectors, kind + "Selector")()


def took(sel, timeout):
    t0 = time.perf_counter()
    ready = sel.select(timeout)
    return ready, time.perf_counter() - t0


# --- the closed socket: the scenario the timerfd got wrong, on both modules -----------------

def first_a_short_wait(side):
    """A sub-millisecond wait on a selector of its own: whatever a first such wait of the
    process learns (the timerfd came only once `epoll_pwait2` was known to work) is known
    before the scenario."""
    with side.cls() as sel:
        sel.select(0.0001)


def closed_socket_scenario(selector_name, then):
    """A socket registered, closed without unregistering, then a sub-millisecond wait (asyncio
    timers make them): its number must stay free, and every step after behaves as the
    stdlib's, `then` naming the first of them."""

    def scenario(side):
        first_a_short_wait(side)
        sel = side.selector(getattr(side.mod, selector_name) if selector_name else None)
        a, b = side.socketpair("a")
        c, d = side.socketpair("c")
        n = a.fileno()
        side.rec("register a", sel.register, a, R, "a")
        side.rec("register c (idle)", sel.register, c, R, "c")
        a.close()
        rec_select(side, sel, "select(0.0003) after the close", 0.0003)
        side.rec("the closed number is still closed", os.fstat, n)
        if then == "modify":
            side.rec("modify a to W", sel.modify, a, W, "a2")
            side.rec("modify a again", sel.modify, a, R)
        elif then == "modify by number":
            side.rec("modify n to RW", sel.modify, n, R | W)
        elif then == "unregister":
            side.rec("unregister a", sel.unregister, a)
        elif then == "unregister by number":
            side.rec("unregister n", sel.unregister, n)
        rec_map(side, sel, "map")
        # No busy loop: the waits are [] and last what they ask (a lower bound).
        t0 = time.perf_counter()
        ready = side.rec("20 select(0.0003)", lambda: [len(sel.select(0.0003)) for _ in range(20)])
        if ready is not None:
            side.check("... lasted 6 ms at least", time.perf_counter() - t0 >= 0.006)
        side.rec("unregister a", sel.unregister, a)
        side.rec("register n", sel.register, n, R, "n")
        side.rec("unregister n", sel.unregister, n)
        rec_select(side, sel, "select(0.0003) at the end", 0.0003)
        d.send(b"x")
        rec_select(side, sel, "select(0.0003) with c ready", 0.0003)
        rec_map(side, sel, "map at the end")

    return scenario


THEN = ["modify", "modify by number", "unregister", "unregister by number", "nothing"]


@pytest.mark.parametrize("then", THEN)
def test_a_closed_sockets_number_after_a_sub_ms_wait(differ, kind, then):
    skip_stale_fd_reuse_on_libkqueue(kind)
    differ(closed_socket_scenario(None, then))


@pytest.mark.skipif("Epoll" not in KINDS, reason="DefaultSelector is EpollSelector on Linux")
@pytest.mark.parametrize("then", THEN)
def test_a_closed_sockets_number_after_a_sub_ms_wait_default(differential, then):
    differential(closed_socket_scenario("DefaultSelector", then), "Epoll")


@pytest.mark.skipif("Epoll" not in KINDS, reason="epoll is Linux's")
def test_a_ghost_registration_is_reported_as_the_stdlib_reports_it(differential):
    """A closed fd whose registration a dup keeps alive in the epoll set, its number reused by
    a new registered socket: the kernel holds two ready entries for one registered fd, and each
    select() gets as many events as the stdlib asks for, sub-millisecond waits included."""

    def scenario(side):
        first_a_short_wait(side)
        sel = side.selector()
        a, b = side.socketpair("a")
        dup = os.dup(a.fileno())
        side.label_fd(dup, "dup")
        side.defer(side.close_fd, dup)
        n = a.fileno()
        side.rec("register a", sel.register, a, R, "a")
        a.close()
        side.rec("unregister a (EBADF swallowed, the registration stays)", sel.unregister, a)
        c, d = side.socketpair("c")
        side.check("c took a's number", c.fileno() == n)
        side.rec("register c", sel.register, c, R, "c")
        rec_select(side, sel, "select(0.0003), nothing ready", 0.0003)
        b.send(b"x")
        d.send(b"y")
        for timeout in [0.0003, 0, 0.0003, 0.002, 0.0003]:
            rec_select(side, sel, "select(%g)" % timeout, timeout)

    differential(scenario, "Epoll")


# --- no fd of ours, and nothing in the user's epoll set ---------------------------------------

def _fds():
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd"))


def _epoll_targets(epfd):
    """The fds in an epoll set, from /proc/self/fdinfo."""
    with open("/proc/self/fdinfo/%d" % epfd) as f:
        return sorted(int(line.split()[1]) for line in f if line.startswith("tfd:"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds through /proc")
@pytest.mark.parametrize("kind", KINDS)
def test_no_wait_opens_an_fd(kind, pair):
    a, b = pair
    with selector(kind) as sel:
        sel.register(a, R)
        before = _fds()
        for timeout in [0] + WAITS:
            for _ in range(2):
                assert sel.select(timeout) == []
        b.send(b"x")
        assert len(sel.select(None)) == 1
        assert _fds() == before
        if kind == "Epoll":
            assert _epoll_targets(sel.fileno()) == [a.fileno()]


@pytest.mark.skipif("Epoll" not in KINDS, reason="epoll is Linux's")
def test_the_epoll_set_holds_the_users_fds_only(pair):
    """What an outer selector watching `sel.fileno()` sees: only the user's fds, so it is never
    woken by a timer of ours."""
    a, b = pair
    with rselectors.EpollSelector() as sel, rselectors.EpollSelector() as outer:
        sel.register(a, R)
        outer.register(sel, R)
        for timeout in WAITS[:6]:
            assert sel.select(timeout) == []
            assert outer.select(0) == []
        assert _epoll_targets(sel.fileno()) == [a.fileno()]


# --- the slack put back (never early: test_timeout_precision.py, every kind, 1 us to 10 ms) -

@needs_linux
@pytest.mark.parametrize("kind", KINDS)
def test_the_threads_own_slack_is_put_back_exactly(kind, own_slack, pair):
    a, b = pair
    with selector(kind) as sel:
        sel.register(a, R)
        for timeout in WAITS:
            sel.select(timeout)
            assert slack() == own_slack, timeout
        b.send(b"x")
        for timeout in [0, 0.0002, 0.01, None]:
            assert len(sel.select(timeout)) == 1
            assert slack() == own_slack, timeout
    assert rselectors._rselectors._timer_slack()[0] == "works"


@needs_linux
def test_the_slack_is_lowered_during_a_short_wait_only(own_slack, pair):
    """Read from another thread through /proc while this one waits: 1 ns inside waits of
    10 ms, the program's own inside waits of 30 ms."""
    path = "/proc/%d/timerslack_ns" % threading.get_native_id()
    try:
        with open(path) as f:
            assert int(f.read()) == own_slack
    except FileNotFoundError:
        pytest.skip("no /proc/<tid>/timerslack_ns (Linux before 4.6)")
    except PermissionError:
        pytest.skip("another thread's timerslack_ns needs CAP_SYS_NICE")
    a, b = pair
    seen = {0.01: [], 0.03: []}
    done = threading.Event()
    waiting = [None]

    def watch():
        while not done.is_set():
            timeout = waiting[0]
            with open(path) as f:
                value = int(f.read())
            # Kept only if the same wait was on before and after the read.
            if timeout is not None and waiting[0] == timeout:
                seen[timeout].append(value)
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch)
    with rselectors.DefaultSelector() as sel:
        sel.register(a, R)
        watcher.start()
        try:
            for timeout, enough in [(0.01, lambda xs: 1 in xs), (0.03, lambda xs: len(xs) >= 20)]:
                deadline = time.monotonic() + 5
                while not enough(seen[timeout]) and time.monotonic() < deadline:
                    waiting[0] = timeout
                    sel.select(timeout)
                    waiting[0] = None
        finally:
            done.set()
            watcher.join()
    # Between two waits the slack is the program's for a moment: both may be seen.
    assert 1 in seen[0.01], seen[0.01]
    assert set(seen[0.01]) <= {1, own_slack}, seen[0.01]
    assert seen[0.03] and set(seen[0.03]) == {own_slack}, seen[0.03]


@needs_linux
@pytest.mark.parametrize("kind", KINDS)
def test_signal_handlers_run_with_the_programs_slack(kind, own_slack, pair):
    """EINTR: the handler runs with the thread's own slack, the retry waits what is left, and
    a handler that raises leaves the slack as it was."""
    in_handler = []

    def handler(signum, frame):
        in_handler.append(slack())
        if len(in_handler) >= 3:
            raise KeyboardInterrupt

    a, b = pair
    old = signal.signal(signal.SIGALRM, handler)
    try:
        with selector(kind) as sel:
            sel.register(a, R)
            signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
            ended = None
            try:
                for _ in range(50):
                    sel.select(0.008)
            except KeyboardInterrupt:
                ended = "raised"
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            assert ended == "raised"
            assert slack() == own_slack
            assert in_handler[:3] == [own_slack] * 3
            ready, t = took(sel, 0.005)
            assert ready == [] and t >= 0.005
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)


@needs_linux
def test_each_thread_keeps_its_own_slack(pair):
    a, b = pair
    sel = rselectors.EpollSelector() if "Epoll" in KINDS else rselectors.PollSelector()
    sel.register(a, R)
    errors = []

    def waiter(own):
        try:
            set_slack(own)
            for _ in range(30):
                for timeout in (5e-5, 0.0003, 0.002):
                    ready, t = took(sel, timeout)
                    assert ready == [] and t >= timeout
                    assert slack() == own
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=waiter, args=(ns,)) for ns in (111_111, 222_222, 2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    sel.close()
    assert not errors, errors[0]


# --- what makes no prctl: select(0), long waits, None, the switch ------------------------------

@needs_linux
@pytest.mark.parametrize("kind", KINDS)
def test_only_waits_of_up_to_10ms_call_prctl(kind, prctl_hook, ms_switch, own_slack, pair):
    """Counted through the test hook, which fails every call that would be made."""
    a, b = pair
    with selector(kind) as sel:
        sel.register(a, W)
        prctl_hook(errno.EPERM)
        for timeout in [0, 0.0, -1, 0.0101, 0.02, 1.0, None]:
            assert len(sel.select(timeout)) == 1
        assert prctl_hook() == ("unknown", 0)
        ms_switch(True)
        sel.modify(a, R)
        for timeout in WAITS[:9]:
            ready, t = took(sel, timeout)
            assert ready == [] and t >= timeout
        assert prctl_hook() == ("unknown", 0), "the switch touches nothing"
        ms_switch(False)
        assert sel.select(0.0002) == []
        assert prctl_hook() == ("refused", 1)


@needs_linux
@pytest.mark.parametrize("kind", KINDS)
def test_a_short_wait_that_finds_an_fd_ready_makes_no_prctl(kind, prctl_hook, pair):
    """It looks first, with a zero timeout, as `select(0)` does."""
    a, b = pair
    with selector(kind) as sel:
        key = sel.register(a, W)
        prctl_hook(errno.EPERM)
        for timeout in WAITS[:9]:
            assert sel.select(timeout) == [(key, W)]
        assert prctl_hook() == ("unknown", 0)


@needs_linux
@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS, errno.EACCES])
def test_a_refused_prctl_is_learnt_once_and_waits_go_on(err, prctl_hook, own_slack, pair):
    a, b = pair
    with rselectors.DefaultSelector() as sel:
        sel.register(a, R)
        assert prctl_hook(err) == ("unknown", 0)
        for timeout in WAITS:
            ready, t = took(sel, timeout)
            assert ready == [] and t >= timeout
            assert slack() == own_slack
        assert prctl_hook() == ("refused", 1)
        b.send(b"x")
        assert len(sel.select(0.0002)) == 1
    a.recv(1)
    prctl_hook(0)
    with rselectors.DefaultSelector() as sel:
        sel.register(a, R)
        assert sel.select(0.0002) == []
    assert prctl_hook() == ("works", 0)


# prctl (157) refused for PR_SET_TIMERSLACK (29) and PR_GET_TIMERSLACK (30) only.
PRCTL_REFUSED = seccomp_child(157, r"""
import socket, time
import rselectors
from rselectors import _rselectors

assert prctl(30) == -1 and ctypes.get_errno() == errno_, "the filter refuses prctl"
a, b = socket.socketpair()
sel = rselectors.DefaultSelector()
sel.register(a, rselectors.EVENT_READ)
early = 0
for timeout in [0.0002, 0.001, 0.005, 0.0002]:
    t0 = time.perf_counter()
    assert sel.select(timeout) == []
    early += time.perf_counter() - t0 < timeout
b.send(b"x")
assert len(sel.select(0.0002)) == 1
state, simulated = _rselectors._timer_slack()
print(state, simulated, early)
""", arg0_values=(29, 30))


@pytest.mark.skipif(not LINUX or os.uname().machine != "x86_64",
                    reason="the seccomp filter is written for Linux on x86_64")
@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS], ids=["EPERM", "ENOSYS"])
def test_prctl_refused_by_a_seccomp_filter(err):
    proc = subprocess.run([sys.executable, "-c", PRCTL_REFUSED, str(err)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["refused", "0", "0"]
