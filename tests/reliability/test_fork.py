"""Reliability 7: fork.

What sharing one epoll across fork() means (Linux):

* The epoll instance is a kernel object referred to by a file descriptor.  fork() copies the
  descriptor table, so parent and child hold two descriptors of the *same* epoll instance
  (same interest list, same ready list), not two epolls.  It stays shared until one of them
  closes its descriptor: the instance lives until the last descriptor is closed.
* The selector's Python-side table (the map of keys) is copied, not shared: after fork each
  process has its own map, and they drift apart as soon as either registers or unregisters.
* Hence a registration (epoll_ctl ADD/MOD/DEL) made by one process through the shared epoll
  is visible to the other in the kernel: the other's epoll_wait reports that fd, but since
  its own map has no key for it the selector drops the event (the stdlib does the same:
  ``_fd_to_key.get(fd)`` is None), and a DEL made by one silently removes the other's
  interest.  Two processes waiting on one epoll also both get woken and compete for events.
  Such a foreign interest also takes a slot of the epoll_wait buffer, which the selector
  sizes by its own map (max(len(map), 1), as the stdlib): a select() can return [] while
  one of its own fds is ready (see test_shared_epoll_until_one_closes).
* An epoll interest is attached to the open file description, not to the fd number: closing
  the child's *copy* of a registered socket does not remove it from the shared epoll, since
  the parent's copy keeps the file open.
* Closing the inherited selector in the child (``sel.close()``) closes only the child's epoll
  descriptor: the parent's selector, its descriptor and its interests are untouched.  So the
  rule for a child that wants a selector is: close the inherited one (do not unregister
  through it: that would remove the parent's interests), then build its own.

Every test runs on the stdlib too (that run validates the test).
"""

import os
import select
import socket

import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip
from support.kinds import selector_class
from support.reliability import start_in_child

R, W = 1, 2


def _in_child(fn):
    """Run fn() in a forked child; return its JSON-able result (or raise its error)."""
    return start_in_child(fn)()


def test_child_closes_inherited_and_builds_its_own(module):
    sel = module.EpollSelector()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        key_a = sel.register(a, R, "parent-a")
        parent_epfd = sel.fileno()

        def child():
            sel.close()  # closes the child's descriptor of the shared epoll only
            own = module.EpollSelector()
            try:
                k = own.register(c, R, "child-c")
                d.send(b"1")
                ready = own.select(2)
                assert ready == [(k, R)], ready
                assert own.select(0) == [(k, R)]
                c.recv(1)
                return {"child_epfd": own.fileno(), "ready": len(ready)}
            finally:
                own.close()

        res = _in_child(child)
        assert res["ready"] == 1
        # The parent's selector is intact: same fd, same map, still gets its events.
        assert sel.fileno() == parent_epfd
        assert sel.get_key(a) is key_a
        assert sel.select(0) == []
        b.send(b"x")
        ready = sel.select(2)
        assert ready == [(key_a, R)] and ready[0][0] is key_a
        # and the child's c was never registered in the parent's epoll
        d.send(b"y")
        assert sel.select(0) == [(key_a, R)]
    finally:
        sel.close()
        for s in (a, b, c, d):
            s.close()


def test_shared_epoll_until_one_closes(module):
    """Documents the sharing: a registration made by the child through the inherited
    selector is in the parent's kernel interest list too (raw epoll on a dup of the parent's
    epoll fd reports it) but not in the parent's map, so the parent's select() drops it;
    after the child closes its descriptor nothing changes for the parent."""
    sel = module.EpollSelector()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    raw = None
    try:
        key_a = sel.register(a, R, "parent-a")
        c_fd = c.fileno()

        def child():
            sel.register(c, R, "child-c")  # epoll_ctl ADD on the shared instance
            return {"child_map": len(sel.get_map())}

        assert _in_child(child) == {"child_map": 2}
        # The child has exited: its descriptor is closed, but the parent's still refers to
        # the same epoll instance, which the child changed.
        d.send(b"z")
        raw = select.epoll.fromfd(os.dup(sel.fileno()))
        kernel_fds = {fd for fd, _ in raw.poll(0)}
        assert c_fd in kernel_fds, "child's registration not visible in the shared epoll"
        assert len(sel.get_map()) == 1
        assert sel.select(0) == []  # the parent's map has no key for c: event dropped
        with pytest.raises(KeyError):
            sel.get_key(c)
        # register in the parent now: EEXIST from the kernel (the child's ADD is still there)
        with pytest.raises(FileExistsError):
            sel.register(c, R, "parent-c")
        assert len(sel.get_map()) == 1
        b.send(b"x")
        # The foreign interest takes slots of epoll_wait's buffer, which both the stdlib and
        # rselectors size by len(map) (here 1): a select() may return [] although a is ready
        # (c took the only slot and was dropped); level-triggered, c goes to the back of the
        # ready list and the next call reports a.
        results = [sel.select(0) for _ in range(3)]
        assert [(key_a, R)] in results, results
        assert all(r in ([], [(key_a, R)]) for r in results), results
    finally:
        if raw is not None:
            raw.close()
        sel.close()
        for s in (a, b, c, d):
            s.close()


def test_child_unregister_through_inherited_selector_removes_parents_interest(module):
    """The trap the docstring warns about: unregister in the child removes the interest
    from the shared epoll, and the parent stops getting events for a fd still in its map."""
    sel = module.EpollSelector()
    a, b = socket.socketpair()
    try:
        key_a = sel.register(a, R, "parent-a")

        def child():
            sel.unregister(a)
            return True

        assert _in_child(child) is True
        b.send(b"x")
        assert sel.get_key(a) is key_a  # still in the parent's map
        assert sel.select(0.05) == []  # but gone from the kernel's interest list
        # modify re-adds nothing (ENOENT): the parent's key is dropped with the error
        with pytest.raises(FileNotFoundError):
            sel.modify(a, R | W, "x")
    finally:
        sel.close()
        a.close()
        b.close()


@pytest.mark.parametrize("kind", ["Poll", "Select"])
def test_fork_poll_and_select_are_independent(module, kind):
    """Poll and Select have no kernel object: after fork each process's selector is its own."""
    sel = selector_class(module, kind)()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        key_a = sel.register(a, R, "a")

        def child():
            sel.unregister(a)
            sel.register(c, R, "c")
            d.send(b"1")
            got = [k.data for k, _ in sel.select(1)]
            sel.close()
            return got

        assert _in_child(child) == ["c"]
        b.send(b"x")
        assert sel.select(1) == [(key_a, R)]
        assert len(sel.get_map()) == 1
    finally:
        sel.close()
        for s in (a, b, c, d):
            s.close()


def test_fork_while_another_thread_blocks_in_select(module):
    """fork() while a parent thread is blocked in select(None) on the selector.  In the child
    that thread does not exist; the child closes the inherited selector: its descriptor of
    the epoll must be closed at once (as the stdlib does), since no wait can ever end in the
    child; then the child builds its own selector.  The parent's blocked thread is then
    woken by its fd and gets its key."""
    import fcntl
    import threading

    sel = module.EpollSelector()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    key_a = sel.register(a, R, "parent-a")
    got = []
    t = threading.Thread(target=lambda: got.append(sel.select(None)), daemon=True)
    t.start()
    try:
        import time

        time.sleep(0.1)  # the thread is in epoll_wait
        epfd = sel.fileno()

        def child():
            sel.close()
            try:
                fcntl.fcntl(epfd, fcntl.F_GETFD)
                still_open = True
            except OSError:
                still_open = False
            own = module.EpollSelector()
            k = own.register(c, R, "child-c")
            d.send(b"1")
            ok = own.select(2) == [(k, R)]
            own.close()
            return {"epfd_still_open_after_close": still_open, "own_ok": ok,
                    "map": sel.get_map() is None}

        res = _in_child(child)
        assert res["own_ok"] and res["map"]
        assert res["epfd_still_open_after_close"] is False, (
            "close() in the forked child left the inherited epoll fd open (a wait the child "
            "will never finish holds it)")
        b.send(b"x")
        t.join(3)
        assert not t.is_alive()
        assert got == [[(key_a, R)]]
    finally:
        if t.is_alive():
            b.send(b"x")
            t.join(3)
        sel.close()
        for s in (a, b, c, d):
            s.close()
