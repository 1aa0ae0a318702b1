"""SelectSelector's Python-level steps around its wait, as the running version's selectors.py
writes them, for the cases where user code can watch them: a replaced `_select` (gevent's,
eventlet's, a test's), and ready fds given as int subclasses, whose `__hash__` and `__eq__`
the stdlib's sets and dict call. The Rust side calls these with its `_readers` and
`_writers` sets (it keeps them as the stdlib does); plain fds never come here.
"""

import sys

# selectors.EVENT_READ and EVENT_WRITE.
EVENT_READ = 1
EVENT_WRITE = 2


def select_through(selector, readers, writers, timeout, key_get):
    """`SelectSelector.select(timeout)` whose `_select` is not `select.select`. `key_get(fd)`
    is `selector._fd_to_key.get(fd)`."""
    timeout = None if timeout is None else max(timeout, 0)
    ready = []
    try:
        r, w, _ = selector._select(readers, writers, [], timeout)
    except InterruptedError:
        return ready
    return ready_keys(selector, r, w, key_get)


if sys.version_info >= (3, 13):

    def ready_keys(selector, r, w, key_get):
        """The rest of `select()` once `_select` returned the ready fds `r` and `w`."""
        ready = []
        r = frozenset(r)
        w = frozenset(w)
        rw = r | w
        for fd in rw:
            key = key_get(fd)
            if key:
                events = ((fd in r and EVENT_READ)
                          | (fd in w and EVENT_WRITE))
                ready.append((key, events & key.events))
        return ready

else:

    def ready_keys(selector, r, w, key_get):
        """The rest of `select()` once `_select` returned the ready fds `r` and `w`."""
        ready = []
        r = set(r)
        w = set(w)
        for fd in r | w:
            events = 0
            if fd in r:
                events |= EVENT_READ
            if fd in w:
                events |= EVENT_WRITE

            key = selector._key_from_fd(fd)
            if key:
                ready.append((key, events & key.events))
        return ready
