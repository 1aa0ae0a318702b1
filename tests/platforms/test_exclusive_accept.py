"""EPOLLEXCLUSIVE for prefork servers (issue 23): the switch and register_exclusive().

The flag is checked in the kernel itself: /proc/self/fdinfo/<epoll fd> lists each target's
event mask. Everything a user can see otherwise (results, exceptions, the map, the kernel's
event masks but for the flag) is compared with the stdlib's EpollSelector running the same
steps; a forked worker pool sharing one listening socket serves every connection.
"""

import os
import re
import select
import socket
import subprocess
import sys
import threading
import time

import pytest

import rselectors
from rselectors import _rselectors

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="Linux epoll only")

R, W = rselectors.EVENT_READ, rselectors.EVENT_WRITE
EPOLLEXCLUSIVE = 1 << 28


def kernel_masks(sel):
    """{target fd: event mask} of an epoll selector, as the kernel lists them."""
    with open("/proc/self/fdinfo/%d" % sel.fileno()) as f:
        return {int(fd): int(mask, 16)
                for fd, mask in re.findall(r"tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)", f.read())}


def exclusive_fds(sel):
    return {fd for fd, mask in kernel_masks(sel).items() if mask & EPOLLEXCLUSIVE}


@pytest.fixture
def switch():
    """Sets the exclusive-accept switch for one test and restores it after."""
    before = rselectors.exclusive_accept()
    yield rselectors.set_exclusive_accept
    rselectors.set_exclusive_accept(before)


@pytest.fixture
def refusing_kernel():
    """Makes the kernel refuse EPOLLEXCLUSIVE (test hook) for one test."""
    _rselectors._exclusive_flag(True)
    yield
    _rselectors._exclusive_flag(False)


@pytest.fixture
def listener():
    """Factory: a listening TCP socket on the loopback, closed at teardown."""
    made = []

    def make():
        sock = socket.socket()
        made.append(sock)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        return sock

    yield make
    for sock in made:
        sock.close()


def test_switch_reads_and_sets(switch):
    before = rselectors.exclusive_accept()  # True under RSELECTORS_EXCLUSIVE_ACCEPT=1
    assert switch(True) is before
    assert rselectors.exclusive_accept() is True
    assert switch(False) is True
    assert rselectors.exclusive_accept() is False


@pytest.mark.parametrize("value,on", [("1", True), ("yes", True), ("0", False), ("", False),
                                      (None, False)])
def test_environment_switch_read_at_import(value, on):
    env = dict(os.environ)
    env.pop("RSELECTORS_EXCLUSIVE_ACCEPT", None)
    if value is not None:
        env["RSELECTORS_EXCLUSIVE_ACCEPT"] = value
    out = subprocess.run([sys.executable, "-c", "import rselectors; "
                          "print(rselectors.exclusive_accept())"],
                         env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == str(on)


@pytest.mark.parametrize("cls", ["EpollSelector", "DefaultSelector"])
def test_switch_flags_listening_sockets_watched_for_reading_alone(switch, listener, cls):
    switch(True)
    listening, listening_rw, listening_w = listener(), listener(), listener()
    a, b = socket.socketpair()
    with a, b, getattr(rselectors, cls)() as sel:
        sel.register(listening, R)
        sel.register(listening_rw, R | W)
        sel.register(listening_w, W)
        sel.register(a, R)
        r, w = os.pipe()
        try:
            sel.register(r, R)
            assert exclusive_fds(sel) == {listening.fileno()}
            assert len(kernel_masks(sel)) == 5
        finally:
            sel.unregister(r)
            os.close(r)
            os.close(w)


def test_switch_off_registers_as_the_stdlib(switch, listener):
    switch(False)
    sock = listener()
    with rselectors.EpollSelector() as sel, select.epoll() as ep:
        sel.register(sock, R)
        ep.register(sock, select.EPOLLIN)
        assert kernel_masks(sel)[sock.fileno()] == kernel_masks(ep)[sock.fileno()]
        assert exclusive_fds(sel) == set()


def test_register_exclusive_flags_any_fd_and_events(switch, listener):
    switch(False)
    sock = listener()
    a, b = socket.socketpair()
    with a, b, rselectors.EpollSelector() as sel:
        key = sel.register_exclusive(sock, R, "accept")
        assert key == rselectors.SelectorKey(sock, sock.fileno(), R, "accept")
        assert sel.get_key(sock) is key
        sel.register_exclusive(a, R | W)
        sel.register(b, R)
        assert exclusive_fds(sel) == {sock.fileno(), a.fileno()}
        # An asked-for flag stays through changes of events.
        sel.modify(a, W)
        sel.modify(sock, R | W)
        assert exclusive_fds(sel) == {sock.fileno(), a.fileno()}
        assert [k.fileobj for k, _ in sel.select(0)] == [a]


def test_register_exclusive_checks_as_register(listener):
    sock = listener()
    with rselectors.EpollSelector() as sel, rselectors.EpollSelector() as closed:
        with pytest.raises(ValueError, match="Invalid events: 0"):
            sel.register_exclusive(sock, 0)
        sel.register_exclusive(sock, R)
        with pytest.raises(KeyError, match="is already registered"):
            sel.register_exclusive(sock, R)
        with pytest.raises(KeyError, match="is already registered"):
            sel.register(sock.fileno(), R)
        with pytest.raises(OSError) as err:
            sel.register_exclusive(999_999, R)
        assert err.value.errno == 9 and 999_999 not in sel.get_map()
        closed.close()
        with pytest.raises(ValueError, match="closed epoll object"):
            closed.register_exclusive(sock, R)


def test_no_equivalent_on_other_selectors(switch, listener):
    switch(True)
    sock = listener()
    for name in ["PollSelector", "SelectSelector", "KqueueSelector"]:
        cls = getattr(rselectors, name, None)
        if cls is None:
            continue
        assert not hasattr(cls, "register_exclusive")
        with cls() as sel:
            assert sel.register(sock, R).events == R


# -- the kernel's rules: modify, unregister and close, compared with the stdlib's ---------------

def listening(side, name="l"):
    """A listening socket labelled for the differential records."""
    sock = socket.socket()
    side.defer(sock.close)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    side.label(sock, name)
    side.label_fd(sock.fileno(), name)
    return sock


def rec_kernel(side, sel, step):
    """The kernel's event masks, by label, the exclusive flag left out (only ours have it)."""
    masks = kernel_masks(sel)
    side.check(step, sorted((side.fdish(fd), mask & ~EPOLLEXCLUSIVE)
                            for fd, mask in masks.items()))
    return masks


def flagged(side, sel, sock, want):
    """On rselectors' side: whether `sock` has the flag in the kernel is `want`."""
    if side.name == "rselectors":
        assert (sock.fileno() in exclusive_fds(sel)) is want, side.records


def registering(side, how):
    """The way the scenario registers exclusively: on the stdlib side plain `register`."""
    def register(sel, *args):
        if side.name == "rselectors" and how == "explicit":
            return sel.register_exclusive(*args)
        return sel.register(*args)
    return register


def one_registered(side, how):
    """(register, selector, listening socket registered for reading with the data "d")."""
    register = registering(side, how)
    sel = side.selector()
    sock = listening(side)
    register(sel, sock, R, "d")
    return register, sel, sock


HOWS = ["switch", "explicit"]


@pytest.fixture(params=HOWS)
def how(request, switch):
    switch(request.param == "switch")
    return request.param


def test_modify_sequence_matches_the_stdlib(differential, how):
    def scenario(side):
        register = registering(side, how)
        sel = side.selector()
        sock = listening(side)
        a, b = side.socketpair()
        side.rec("register", register, sel, sock, R, "d1")
        sel.register(a, R, "a")
        flagged(side, sel, sock, True)
        rec_kernel(side, sel, "kernel")
        side.rec("modify data only", sel.modify, sock, R, "d2")
        side.rec("modify nothing", sel.modify, sock, R, "d2")
        side.rec("modify same events, new int", sel.modify, sock, 5, "d2")
        flagged(side, sel, sock, True)
        side.rec("modify to R|W", sel.modify, sock, R | W, "d3")
        rec_kernel(side, sel, "kernel R|W")
        flagged(side, sel, sock, how == "explicit")
        side.rec("modify to W", sel.modify, sock, W)
        rec_kernel(side, sel, "kernel W")
        side.rec("modify back to R", sel.modify, sock, R, "d4")
        rec_kernel(side, sel, "kernel R")
        flagged(side, sel, sock, True)
        side.rec("modify to 0", sel.modify, sock, 0)
        rec_kernel(side, sel, "kernel 0")
        side.rec("modify to R again", sel.modify, sock, R)
        flagged(side, sel, sock, True)
        side.rec("get_key", sel.get_key, sock)
        side.check("map", sorted(side.fdish(fd) for fd in sel.get_map()))
        side.rec("select(0)", sel.select, 0)
        client = socket.create_connection(sock.getsockname(), timeout=5)
        side.defer(client.close)
        side.check("select(1) sees the connection", [
            (side.canon(k), ev) for k, ev in sel.select(1)])
        side.rec("unregister", sel.unregister, sock)
        rec_kernel(side, sel, "kernel after unregister")
        side.rec("unregister again", sel.unregister, sock)
        side.rec("register again", register, sel, sock, R)
        flagged(side, sel, sock, True)
        side.rec("close", sel.close)
        side.rec("modify after close", sel.modify, sock, W)
        side.rec("get_map after close", sel.get_map)

    differential(scenario, "Epoll")


def test_modify_of_a_closed_fd_fails_as_the_stdlib(differential, how):
    def scenario(side):
        register, sel, sock = one_registered(side, how)
        other = listening(side, "m")
        register(sel, other, R, "e")
        sock.close()
        side.rec("modify closed: events change", sel.modify, sock, R | W, "d2")
        side.check("map", sorted(side.fdish(fd) for fd in sel.get_map()))
        side.rec("get_key", sel.get_key, sock)
        side.rec("unregister", sel.unregister, sock)
        fd = other.fileno()
        other.close()
        side.rec("modify closed: data only", sel.modify, other, R, "e2")
        side.rec("modify closed by number", sel.modify, fd, W)
        side.check("map end", sorted(side.fdish(fd) for fd in sel.get_map()))
        rec_kernel(side, sel, "kernel")

    differential(scenario, "Epoll")


def test_modify_of_a_registration_gone_from_the_kernel_fails_as_the_stdlib(differential, how):
    """ENOENT: the registration was deleted behind the selector (through a dup of its fd)."""
    def scenario(side):
        register, sel, sock = one_registered(side, how)
        behind = select.epoll.fromfd(os.dup(sel.fileno()))
        side.defer(behind.close)
        behind.unregister(sock)
        side.rec("modify", sel.modify, sock, W, "d2")
        side.check("map", sorted(side.fdish(fd) for fd in sel.get_map()))
        rec_kernel(side, sel, "kernel")
        side.rec("register again", register, sel, sock, R)
        rec_kernel(side, sel, "kernel again")
        flagged(side, sel, sock, True)

    differential(scenario, "Epoll")


def test_unregister_after_close_of_the_fd_matches_the_stdlib(differential, how):
    def scenario(side):
        _, sel, sock = one_registered(side, how)
        sock.close()
        side.rec("unregister", sel.unregister, sock)
        side.rec("map", len, sel.get_map())
        rec_kernel(side, sel, "kernel")

    differential(scenario, "Epoll")


# -- a kernel that refuses the flag, and targets that cannot have it ----------------------------

def test_a_refusing_kernel_gets_plain_registrations_learnt_once(switch, listener,
                                                                refusing_kernel):
    switch(True)
    socks = [listener() for _ in range(3)]
    with rselectors.EpollSelector() as sel:
        sel.register(socks[0], R)
        sel.register(socks[1], R)
        sel.register_exclusive(socks[2], R)
        assert exclusive_fds(sel) == set()
        assert len(kernel_masks(sel)) == 3
        assert _rselectors._exclusive_flag() == ("refused", 1)
        sel.modify(socks[2], R | W)
        sel.modify(socks[2], R)
        assert exclusive_fds(sel) == set()
        assert [k.fd for k in sel.get_map().values()] == [s.fileno() for s in socks]


def test_an_epoll_fd_target_is_registered_plain(switch):
    switch(False)
    _rselectors._exclusive_flag(False)
    with rselectors.EpollSelector() as sel, select.epoll() as inner:
        key = sel.register_exclusive(inner.fileno(), R, "inner")
        assert key.data == "inner"
        assert kernel_masks(sel)[inner.fileno()] & EPOLLEXCLUSIVE == 0
        # The kernel takes the flag elsewhere: the refusal was the target's.
        assert _rselectors._exclusive_flag()[0] == "works"
        a, b = socket.socketpair()
        with a, b:
            sel.register_exclusive(a, R)
            assert exclusive_fds(sel) == {a.fileno()}


# -- a forked worker pool ------------------------------------------------------------------------

def serve_until_told(lsock, stop_r, report_w, explicit):
    """A worker: one selector on the shared listening socket, echoing until `stop_r`."""
    deadline = time.monotonic() + 60
    served = 0
    with rselectors.DefaultSelector() as sel:
        if explicit:
            sel.register_exclusive(lsock, R, "accept")
        else:
            sel.register(lsock, R, "accept")
        sel.register(stop_r, R, "stop")
        assert exclusive_fds(sel) == {lsock.fileno()}
        while time.monotonic() < deadline:
            events = [key.data for key, _ in sel.select(1)]
            if "stop" in events:
                break
            if "accept" in events:
                try:
                    conn, _ = lsock.accept()
                except BlockingIOError:
                    continue  # another worker took it
                with conn:
                    conn.settimeout(5)
                    conn.sendall(conn.recv(64))
                served += 1
    os.write(report_w, b"%d\n" % served)


@pytest.mark.parametrize("explicit", [False, True], ids=["switch", "explicit"])
def test_a_forked_worker_pool_serves_every_connection(switch, explicit):
    switch(not explicit)
    workers, sequential, concurrent = 4, 150, 150
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(256)
    lsock.setblocking(False)
    stop_r, stop_w = os.pipe()
    report_r, report_w = os.pipe()
    pids = []
    try:
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    serve_until_told(lsock, stop_r, report_w, explicit)
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        failures = []

        def connect(n):
            for i in range(n):
                try:
                    with socket.create_connection(lsock.getsockname(), timeout=5) as c:
                        msg = b"hello %d" % i
                        c.sendall(msg)
                        if c.recv(64) != msg:
                            failures.append(i)
                except OSError as exc:
                    failures.append(exc)

        connect(sequential)
        threads = [threading.Thread(target=connect, args=(concurrent // 6,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not failures
    finally:
        os.write(stop_w, b"x")
        statuses = [os.waitpid(pid, 0)[1] for pid in pids]
        os.close(report_w)
        with os.fdopen(report_r) as f:
            served = [int(line) for line in f]
        for fd in (stop_r, stop_w):
            os.close(fd)
        lsock.close()
    assert statuses == [0] * workers
    assert sum(served) == sequential + concurrent
