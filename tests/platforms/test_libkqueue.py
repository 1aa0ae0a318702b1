"""KqueueSelector on libkqueue: where it differs from a BSD kernel's kqueue, asserted.

A Linux build with the `libkqueue` feature runs the kqueue backend on libkqueue (a userspace
kqueue over epoll). README "KqueueSelector on libkqueue" lists these differences; each test
here fails when one of them changes, so the list stays true. macOS and the BSDs, where the
kernel's kqueue is the reference, are tested natively by .github/workflows/wheels.yml.
"""

import errno
import os
import resource
import socket
import time

import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip

pytestmark = pytest.mark.skipif(
    not (hasattr(rselectors, "KqueueSelector") and rselectors._rselectors._ON_LIBKQUEUE),
    reason="not a libkqueue build (KqueueSelector on Linux needs the libkqueue feature)",
)

# libkqueue's MAX_KEVENT (src/common/private.h): the most events one kevent() call returns.
LIBKQUEUE_MAX_EVENTS = 512


def test_default_selector_stays_epoll():
    assert rselectors.DefaultSelector is rselectors.EpollSelector
    assert "KqueueSelector" in rselectors.__all__


def test_register_on_a_closed_fd_is_efault_not_ebadf():
    """BSD kernels refuse a change on a closed fd with EBADF; libkqueue says EFAULT. The
    registration is still refused and leaves no key behind, as on BSD."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    closed_fd = s.fileno()
    s.close()
    with rselectors.KqueueSelector() as sel:
        for events in (rselectors.EVENT_READ, rselectors.EVENT_WRITE):
            with pytest.raises(OSError) as info:
                sel.register(closed_fd, events)
            assert info.value.errno == errno.EFAULT, info.value
            assert closed_fd not in sel.get_map()


def test_one_select_reports_at_most_512_events():
    """A BSD kernel reports every ready filter in one select() (the stdlib asks for as many
    events as there are filters); libkqueue stops at 512 per kevent() call. The others stay
    ready (level-triggered), so later calls report them."""
    nready = LIBKQUEUE_MAX_EVENTS + 88
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * nready + 64
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip("needs %d fds, the hard limit is %d" % (need, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    pairs = []
    try:
        with rselectors.KqueueSelector() as sel:
            for _ in range(nready):
                a, b = socket.socketpair()
                pairs += (a, b)
                b.send(b"x")
                sel.register(a, rselectors.EVENT_READ)
            first = sel.select(0)
            assert len(first) == LIBKQUEUE_MAX_EVENTS
            assert all(events == rselectors.EVENT_READ for _, events in first)
            seen = {key.fd for key, _ in first}
            for _ in range(10):  # bounded: the rest appear in a few calls
                if len(seen) == nready:
                    break
                seen |= {key.fd for key, _ in sel.select(0)}
            assert len(seen) == nready
    finally:
        for s in pairs:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_fd_ready_both_ways_is_reported_once_per_filter():
    """Not a difference: as the stdlib's KqueueSelector, one (key, event) per kevent."""
    a, b = socket.socketpair()
    try:
        with rselectors.KqueueSelector() as sel:
            key = sel.register(a, rselectors.EVENT_READ | rselectors.EVENT_WRITE)
            b.send(b"x")
            got = sorted(events for k, events in sel.select(0) if k is key)
            assert got == [rselectors.EVENT_READ, rselectors.EVENT_WRITE]
    finally:
        a.close()
        b.close()


def _open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_each_kqueue_is_three_fds_released_by_a_helper_thread():
    """A kernel kqueue is one fd. libkqueue's is three (its own, an epoll fd and an eventfd);
    its monitor thread frees the other two shortly after close(), not in close() itself."""
    with rselectors.KqueueSelector():
        pass
    time.sleep(0.05)
    before = _open_fds()
    sel = rselectors.KqueueSelector()
    assert len(_open_fds() - before) == 3
    sel.close()
    for _ in range(500):  # bounded: 1 s
        if _open_fds() <= before:
            break
        time.sleep(0.002)
    assert _open_fds() <= before

