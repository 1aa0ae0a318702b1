"""A typed program using every public name of rselectors, the way users write it:
``import rselectors as selectors``. Checked with ``mypy --strict``
(tests/platforms/test_typing.py) and also run, so that what it claims holds at run time too.

``assert_type`` pins the types the stubs give; the ``# type: ignore[...]`` lines are
misuses the stubs must reject (``--strict`` includes ``--warn-unused-ignores``, so an
accepted misuse fails the check).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, assert_type

import rselectors as selectors

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike  # typeshed's, as the stdlib stubs use
else:
    FileDescriptorLike = Any


class CountingSelector(selectors.BaseSelector):
    """A user subclass of the ABC, delegating to the default selector."""

    def __init__(self) -> None:
        self.inner = selectors.DefaultSelector()
        self.selects = 0

    def register(self, fileobj: FileDescriptorLike, events: int,
                 data: Any = None) -> selectors.SelectorKey:
        return self.inner.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self.inner.unregister(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.selects += 1
        return self.inner.select(timeout)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self.inner.get_map()

    def close(self) -> None:
        self.inner.close()


def exercise(sel: selectors.BaseSelector) -> int:
    a, b = socket.socketpair()
    try:
        key = sel.register(a, selectors.EVENT_READ | selectors.EVENT_WRITE, data="a")
        assert_type(key, selectors.SelectorKey)
        assert_type(key.fd, int)
        assert_type(key.events, int)
        key = sel.modify(a, selectors.EVENT_WRITE, data=b"x")
        assert_type(sel.get_key(a), selectors.SelectorKey)
        mapping = sel.get_map()
        assert_type(mapping, Mapping[FileDescriptorLike, selectors.SelectorKey])
        assert len(mapping) == 1 and mapping[a].data == b"x"
        ready = sel.select(timeout=1.0)
        assert_type(ready, list[tuple[selectors.SelectorKey, int]])
        ready = sel.select(0)
        ready = sel.select(None)
        events = 0
        for k, mask in ready:
            assert k.fileobj is a
            events |= mask
        sel.unregister(a)
        return events
    finally:
        a.close()
        b.close()


class ThirdPartySelector(selectors._BaseSelectorImpl):
    """A library's selector on the stdlib's base class, as gevent builds GeventSelector."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        import select

        keys = list(self.get_map().values())
        r, w, _ = select.select([k.fd for k in keys if k.events & selectors.EVENT_READ],
                                [k.fd for k in keys if k.events & selectors.EVENT_WRITE],
                                [], timeout)
        return [(k, (k.fd in r and selectors.EVENT_READ) | (k.fd in w and selectors.EVENT_WRITE))
                for k in keys if k.fd in r or k.fd in w]


def misuse(sel: selectors.DefaultSelector) -> None:
    """Never called: calls the stubs must reject."""
    sel.register(0, "read")  # type: ignore[arg-type]
    sel.select(timeout="1")  # type: ignore[arg-type]
    sel.register(1.5, selectors.EVENT_READ)  # type: ignore[arg-type]
    selectors.EVENT_READ = "r"  # type: ignore[assignment]
    selectors.PollSelector().register_exclusive(0, 1)  # type: ignore[attr-defined]
    selectors.set_exclusive_accept("yes")  # type: ignore[arg-type]


async def echo_once() -> bytes:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        await loop.sock_sendall(a, b"ping")
        return await loop.sock_recv(b, 100)
    finally:
        a.close()
        b.close()


def main() -> None:
    total = 0
    with selectors.DefaultSelector() as default:
        assert_type(default, selectors.DefaultSelector)
        total += exercise(default)
        assert_type(default.fileno(), int)
    for cls in (selectors.SelectSelector, selectors.PollSelector,
                selectors.EpollSelector):
        sel: selectors.BaseSelector = cls()
        with sel:
            total += exercise(sel)
    epoll = selectors.EpollSelector()
    assert_type(epoll.fileno(), int)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        exclusive = epoll.register_exclusive(listener, selectors.EVENT_READ, data="accept")
        assert_type(exclusive, selectors.SelectorKey)
        assert epoll.get_key(listener) == exclusive
    epoll.close()
    was_on = selectors.set_exclusive_accept(selectors.exclusive_accept())
    assert_type(was_on, bool)
    counting = CountingSelector()
    total += exercise(counting)
    counting.close()
    assert counting.selects == 3
    with ThirdPartySelector() as third:
        total += exercise(third)
    assert total == 6 * selectors.EVENT_WRITE

    key = selectors.SelectorKey(fileobj=0, fd=0, events=selectors.EVENT_READ, data=None)
    assert key._replace(data=1).data == 1

    loop = selectors.new_event_loop()
    assert_type(loop, asyncio.SelectorEventLoop)
    try:
        assert loop.run_until_complete(echo_once()) == b"ping"
    finally:
        loop.close()

    reply = selectors.run(echo_once(), debug=False)
    assert_type(reply, bytes)
    reply = selectors.run(echo_once(), loop_factory=selectors.new_event_loop)

    policy = selectors.EventLoopPolicy()
    assert_type(policy.new_event_loop(), asyncio.SelectorEventLoop)
    assert isinstance(policy, asyncio.DefaultEventLoopPolicy)
    policy.new_event_loop().close()

    selectors.install()
    import selectors as stdlib_name
    assert stdlib_name.DefaultSelector is not None
    print("sample ok")


if __name__ == "__main__":
    main()
