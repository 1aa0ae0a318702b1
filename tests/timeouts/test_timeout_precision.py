"""Sub-millisecond timeouts (issue 14): a wait lasts at least what was asked, never less.

Poll and Epoll keep a timeout's fraction of a millisecond (`ppoll`, `epoll_pwait2`) unless
the millisecond switch is on; a kernel without `epoll_pwait2` (simulated here through a
test hook) gets `epoll_wait` and whole milliseconds. Waits of up to 10 ms also run with the
thread's timer slack lowered (test_timer_slack.py). Nothing here asserts speed: only
lower bounds, which rounding decides, and counts of calls.
"""

import errno
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import rselectors
from rselectors import _rselectors

R = rselectors.EVENT_READ
KINDS = ["Epoll", "Poll", "Select"]
# Each side of a whole millisecond, and up to the 10 ms of the lowered timer slack.
TINY = [1e-6, 1e-5, 5e-5, 3e-4, 9.99e-4, 1.5e-3, 5e-3, 1e-2]


def elapsed_ns(sel, timeout):
    t0 = time.perf_counter_ns()
    result = sel.select(timeout)
    took = time.perf_counter_ns() - t0
    assert result == []
    return took


@pytest.fixture
def idle():
    """A selector factory: each selector watches one socket that never becomes readable."""
    made = []
    a, b = socket.socketpair()

    def make(kind):
        sel = getattr(rselectors, kind + "Selector")()
        sel.register(a, R)
        made.append(sel)
        return sel

    yield make
    for sel in made:
        sel.close()
    a.close()
    b.close()


@pytest.mark.parametrize("ms", [False, True], ids=["subms", "ms"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_wait_never_returns_early(idle, ms_switch, kind, ms):
    ms_switch(ms)
    sel = idle(kind)
    for timeout in TINY:
        # perf_counter is CLOCK_MONOTONIC, the clock of the kernel's timeout: whole ns.
        floor_ns = int(timeout * 1e9)
        for _ in range(3):
            took = elapsed_ns(sel, timeout)
            assert took >= floor_ns, "%s select(%g) returned after %d ns" % (kind, timeout, took)


@pytest.mark.parametrize("kind", ["Epoll", "Poll"])
def test_the_switch_rounds_up_to_whole_milliseconds(idle, ms_switch, kind):
    sel = idle(kind)
    assert ms_switch(True) is False  # sub-millisecond is the default
    assert rselectors.millisecond_timeouts() is True
    for _ in range(3):
        # The stdlib's wait: ceil(0.2 ms) = 1 ms. A lower bound, which rounding decides.
        assert elapsed_ns(sel, 0.0002) >= 1_000_000
    if kind == "Epoll":
        # And its double rounding: 9 ms is 0.009000000000000001 s, waited as 10 ms.
        assert elapsed_ns(sel, 0.009) >= 10_000_000


def test_the_switch_from_the_environment():
    code = ("import rselectors, socket, time\n"
            "a, b = socket.socketpair()\n"
            "s = rselectors.EpollSelector() if hasattr(rselectors, 'EpollSelector') "
            "else rselectors.PollSelector()\n"
            "s.register(a, 1)\n"
            "t0 = time.perf_counter_ns(); s.select(0.0002)\n"
            "print(rselectors.millisecond_timeouts(), time.perf_counter_ns() - t0)\n")
    results = {}
    for value in ["1", "0", None]:
        env = dict(os.environ)
        env.pop("RSELECTORS_MS_TIMEOUTS", None)
        if value is not None:
            env["RSELECTORS_MS_TIMEOUTS"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60, check=True).stdout.split()
        results[value] = (out[0], int(out[1]))
    assert results["1"][0] == "True" and results["1"][1] >= 1_000_000
    assert results["0"][0] == "False"
    assert results[None][0] == "False"


@pytest.mark.skipif(not hasattr(rselectors, "EpollSelector"), reason="epoll is Linux-only")
@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM], ids=["ENOSYS", "EPERM"])
def test_epoll_falls_back_to_milliseconds_without_pwait2(idle, err):
    """A kernel before 5.11 says ENOSYS; a seccomp filter ENOSYS or EPERM. The first wait
    learns it, and from then on every wait is epoll_wait's whole milliseconds, rounded up.
    (A wait of a few microseconds may be over before its system call: the look and the
    timer slack's calls come first, and then it returns as its time is up.)"""
    sel = idle("Epoll")
    try:
        assert _rselectors._epoll_pwait2(err) == ("unknown", 0)
        for _ in range(4):
            assert elapsed_ns(sel, 0.0003) >= 1_000_000
        # Detected once: the later waits did not try it again.
        assert _rselectors._epoll_pwait2() == ("missing", 1)
        for timeout in TINY:
            floor_ns = 1_000_000 if timeout >= 3e-4 else int(timeout * 1e9)
            assert elapsed_ns(sel, timeout) >= floor_ns
        # A whole millisecond never needed it.
        assert elapsed_ns(sel, 0.002) >= 2_000_000
        assert _rselectors._epoll_pwait2() == ("missing", 1)
    finally:
        _rselectors._epoll_pwait2(0)
    # Back to the real kernel: its own answer, and the wait still never short.
    assert elapsed_ns(sel, 0.0002) >= 200_000
    assert _rselectors._epoll_pwait2()[0] in ("works", "missing")


@pytest.mark.skipif(not hasattr(rselectors, "EpollSelector"), reason="epoll is Linux-only")
def test_other_errors_of_pwait2_are_raised_not_taken_for_missing(idle):
    sel = idle("Epoll")
    try:
        _rselectors._epoll_pwait2(errno.EBADF)
        with pytest.raises(OSError) as info:
            sel.select(0.0002)
        assert info.value.errno == errno.EBADF
        assert _rselectors._epoll_pwait2() == ("unknown", 1)
    finally:
        _rselectors._epoll_pwait2(0)


@pytest.mark.parametrize("kind", KINDS)
def test_eintr_retries_keep_the_deadline(kind, idle):
    """SIGALRM every 100 us during select(10 ms): each retry waits what is left, to the
    microsecond, and the call lasts at least 10 ms in all. A loaded machine can merge the
    timer's signals into one, so the wait is made again (up to 5 times) until at least two
    interrupted it: every wait must last its 10 ms."""
    hits = [0]

    def handler(signum, frame):
        hits[0] += 1

    sel = idle(kind)
    old = signal.signal(signal.SIGALRM, handler)
    took = []
    try:
        for _ in range(5):
            hits[0] = 0
            signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
            took.append(elapsed_ns(sel, 0.01))
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            if hits[0] >= 2:
                break
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    assert min(took) >= 10_000_000, took
    assert hits[0] >= 2, "never two signals in a 10 ms wait, in %d tries" % len(took)


TIMER_LOOP = """
import asyncio, sys, time
import rselectors

async def main():
    loop = asyncio.get_running_loop()
    sel = loop._selector
    calls = []
    real = sel.select
    def counting(timeout=None):
        calls.append(timeout)
        return real(timeout)
    sel.select = counting
    early = []
    for _ in range(100):
        t0 = time.perf_counter_ns()
        await asyncio.sleep(0.0002)
        took = time.perf_counter_ns() - t0
        if took < 200_000:
            early.append(took)
    print(len(calls), len(early))

loop = asyncio.SelectorEventLoop(rselectors.%s())
loop.run_until_complete(main())
"""


@pytest.mark.parametrize("kind", KINDS)
def test_asyncio_sleeps_are_never_early_and_do_not_spin(kind):
    """100 sleeps of 200 us: none ends early, and the loop does not spin on a wait that came
    back before the timer (each sleep is one or two select() calls, not hundreds)."""
    out = subprocess.run([sys.executable, "-c", TIMER_LOOP % (kind + "Selector")],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    calls, early = int(out[0]), int(out[1])
    assert early == 0
    assert calls <= 3 * 100, calls


def seccomp_child(nr, body, arg0_values=()):
    """The source of a child process (`python -c SOURCE ERRNO`) that installs a seccomp filter
    making system call `nr` (x86_64 numbering) fail with ERRNO, only where its first argument
    is one of `arg0_values` if any are given, and allows the rest, as a container runtime's
    profile does to a call it does not know; then runs `body`, with `errno_` set. A filter
    cannot be taken off, hence the child."""
    n = len(arg0_values)
    refuse = 4 + (1 + n if n else 0)
    allow = refuse + 1
    prog = [(0x20, 0, 0, 4),                     # seccomp_data.arch
            (0x15, 0, allow - 2, 0xC000003E),    # AUDIT_ARCH_X86_64
            (0x20, 0, 0, 0),                     # seccomp_data.nr
            (0x15, 0, allow - 4, nr)]
    if n:
        prog.append((0x20, 0, 0, 16))            # seccomp_data.args[0], low half
        for j, value in enumerate(arg0_values):
            k = 5 + j
            prog.append((0x15, refuse - k - 1, 0 if j < n - 1 else allow - k - 1, value))
    prog += [(0x06, 0, 0, "errno"),              # SECCOMP_RET_ERRNO | errno_
             (0x06, 0, 0, 0x7FFF0000)]           # SECCOMP_RET_ALLOW
    return SECCOMP_PRELUDE % (prog,) + body


SECCOMP_PRELUDE = r"""
import ctypes, struct, sys
errno_ = int(sys.argv[1])
prog = [(c, jt, jf, 0x00050000 | errno_ if k == "errno" else k) for c, jt, jf, k in %r]
filt = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in prog))
fprog = struct.pack("HxxxxxxP", len(prog), ctypes.addressof(filt))
libc = ctypes.CDLL(None, use_errno=True)
prctl = lambda *args: libc.prctl(*map(ctypes.c_ulong, args + (0,) * (5 - len(args))))
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
assert prctl(PR_SET_NO_NEW_PRIVS, 1) == 0, ctypes.get_errno()
buf = ctypes.create_string_buffer(fprog)
assert prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(buf)) == 0, ctypes.get_errno()
"""

# epoll_pwait2 (441) refused.
PWAIT2_REFUSED = seccomp_child(441, r"""
import socket, time
import rselectors
from rselectors import _rselectors

a, b = socket.socketpair()
sel = rselectors.EpollSelector()
sel.register(a, rselectors.EVENT_READ)
took = []
for _ in range(3):
    t0 = time.perf_counter_ns()
    assert sel.select(0.0002) == []
    took.append(time.perf_counter_ns() - t0)
state, simulated = _rselectors._epoll_pwait2()
print(state, simulated, min(took))
""")


@pytest.mark.skipif(not hasattr(rselectors, "EpollSelector") or os.uname().machine != "x86_64",
                    reason="the seccomp filter is written for Linux on x86_64")
@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM], ids=["ENOSYS", "EPERM"])
def test_epoll_falls_back_under_a_seccomp_filter(err):
    """The real kernel path of the fallback: a child process whose seccomp filter refuses
    epoll_pwait2 still waits, never early, in whole milliseconds."""
    proc = subprocess.run([sys.executable, "-c", PWAIT2_REFUSED, str(err)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state, simulated, took = proc.stdout.split()
    assert (state, simulated) == ("missing", "0")
    assert int(took) >= 1_000_000
