"""EpollSelector's timerfd (issue 14): sub-millisecond waits without the timer slack.

A sub-millisecond Epoll wait arms a timerfd of the selector's own, in its epoll set, whose
timer has no slack. Here: it is created only by such a wait (a selector that never makes one
opens no extra fd) and closed with the selector; its event never reaches Python nor takes a
registered fd's place; no wait returns early because of it (its own, another thread's, a
stale one, or the parent's after a fork). Lower bounds and counts only, no speed.
"""

import os
import socket
import sys
import threading
import time

import pytest

import rselectors
from rselectors import _rselectors
from reliability_support import start_in_child

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="epoll and timerfd are Linux's")

R = rselectors.EVENT_READ
SUB_MS = [1e-6, 1e-5, 5e-5, 1e-4, 3e-4, 9.99e-4]


def timerfds():
    """How many timerfds this process has open."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink("/proc/self/fd/" + fd) == "anon_inode:[timerfd]"
        except OSError:
            pass
    return n


@pytest.fixture(autouse=True)
def pwait2_works():
    """The timerfd serves only once epoll_pwait2 is known to work: learn it."""
    sel = rselectors.EpollSelector()
    try:
        sel.select(1e-5)
    finally:
        sel.close()
    if _rselectors._epoll_pwait2(None)[0] != "works":
        pytest.skip("epoll_pwait2 does not work here: waits are whole milliseconds")
    assert not rselectors.millisecond_timeouts()


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def took(sel, timeout):
    t0 = time.perf_counter()
    ready = sel.select(timeout)
    return ready, time.perf_counter() - t0


def test_no_extra_fd_until_a_sub_ms_wait(pair):
    a, _ = pair
    before = timerfds()
    sel = rselectors.DefaultSelector()
    poll = rselectors.PollSelector()
    try:
        sel.register(a, R)
        poll.register(a, R)
        for timeout in (0, 0.0, 0.001, 0.0025, 0.002):
            sel.select(timeout)
        poll.select(0.0002)
        assert timerfds() == before
        sel.select(0.0002)
        assert timerfds() == before + 1
        for timeout in SUB_MS:
            sel.select(timeout)
        assert timerfds() == before + 1, "one per selector"
    finally:
        sel.close()
        poll.close()
    assert timerfds() == before


def test_not_under_the_millisecond_switch(pair):
    a, _ = pair
    before = timerfds()
    old = rselectors.set_millisecond_timeouts(True)
    try:
        with rselectors.EpollSelector() as sel:
            sel.register(a, R)
            assert took(sel, 0.0002)[1] >= 0.001
            assert timerfds() == before
    finally:
        rselectors.set_millisecond_timeouts(old)


def test_the_timers_event_is_never_reported(pair):
    a, b = pair
    c, d = socket.socketpair()
    with rselectors.EpollSelector() as sel:
        ka = sel.register(a, R, "a")
        for timeout in SUB_MS:
            ready, t = took(sel, timeout)
            assert ready == [] and t >= timeout
        assert timerfds() >= 1
        # The one registered fd still gets its slot beside the timer's event.
        b.send(b"x")
        for timeout in SUB_MS + [0, 0.001, None]:
            assert sel.select(timeout) == [(ka, R)]
        kc = sel.register(c, R, "c")
        d.send(b"y")
        for timeout in SUB_MS + [0]:
            assert sorted(sel.select(timeout), key=lambda r: r[0].data) == [(ka, R), (kc, R)]
        a.recv(1)
        c.recv(1)
        for timeout in SUB_MS:
            assert sel.select(timeout) == []
    c.close()
    d.close()


def test_sub_ms_waits_never_return_early(pair):
    a, _ = pair
    with rselectors.EpollSelector() as sel:
        sel.register(a, R)
        for _ in range(10):
            for timeout in SUB_MS:
                ready, t = took(sel, timeout)
                assert ready == [] and t >= timeout, (timeout, t)


def test_an_expiry_left_armed_does_not_end_a_later_wait(pair):
    a, b = pair
    with rselectors.EpollSelector() as sel:
        sel.register(a, R)
        sel.select(0.0002)
        for _ in range(5):
            # Woken by the fd 500 us before the timer, which fires during the waits after.
            b.send(b"x")
            assert len(sel.select(0.0005)) == 1
            a.recv(1)
            time.sleep(0.001)
            assert sel.select(0) == []
            ready, t = took(sel, 0.002)
            assert ready == [] and t >= 0.002


def test_threads_on_one_selector_never_wake_early(pair):
    """One wait at a time arms the timer; another's expiry does not end the others."""
    a, b = pair
    sel = rselectors.EpollSelector()
    key = sel.register(a, R)
    errors = []

    def waiter(timeouts):
        try:
            for _ in range(40):
                for timeout in timeouts:
                    ready, t = took(sel, timeout)
                    assert ready == [] and t >= timeout, (timeout, t)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=waiter, args=(ts,)) for ts in
               ([5e-5, 3e-4], [2e-4, 7e-4], [0.0015, 1e-4], [0.001, 2.5e-5])]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        assert not errors, errors[0]
        b.send(b"x")
        assert sel.select(0.0003) == [(key, R)]
    finally:
        sel.close()


def test_fork_child_after_a_sub_ms_wait(pair):
    """The child shares the epoll set, and the parent's timerfd in it: it never arms it nor
    adds its own, wakes no earlier for the parent's expiries, and closes cleanly."""
    a, b = pair
    c, d = socket.socketpair()
    sel = rselectors.EpollSelector()
    try:
        key = sel.register(a, R, "a")
        sel.select(0.0002)
        inherited = timerfds()

        def child():
            for _ in range(30):
                for timeout in SUB_MS:
                    ready, t = took(sel, timeout)
                    assert ready == [] and t >= timeout, (timeout, t)
            assert timerfds() == inherited, "no timerfd of its own for the inherited selector"
            kc = sel.register(c, R, "c")
            d.send(b"y")
            assert sel.select(0.0002) == [(kc, R)]
            assert sel.select(0.001) == [(kc, R)]
            sel.unregister(c)
            sel.close()
            with rselectors.EpollSelector() as own:
                own.register(c, R)
                for timeout in SUB_MS:
                    ready = own.select(timeout)
                    assert len(ready) == 1
                c.recv(1)
                for timeout in SUB_MS:
                    ready, t = took(own, timeout)
                    assert ready == [] and t >= timeout
                own_count = timerfds()
            return {"own": own_count, "closed": timerfds()}

        result = start_in_child(child)
        # Meanwhile the parent waits on the shared set, its timer armed.
        for _ in range(30):
            for timeout in SUB_MS:
                ready, t = took(sel, timeout)
                assert ready == [] and t >= timeout, (timeout, t)
        res = result()
        assert res["own"] == inherited, "the child's own selector, its own timerfd"
        assert res["closed"] == inherited - 1
        b.send(b"x")
        assert sel.select(0.0002) == [(key, R)]
        assert sel.get_key(a) is key
    finally:
        sel.close()
        c.close()
        d.close()
