"""SelectSelector's Python-level steps after its wait, as the running version's selectors.py
writes them, for the cases where user code can watch them: the answer of a replaced
`_select` (gevent's, eventlet's, a test's; the Rust side calls it, as it calls a replaced
`_selector_cls`), and ready fds given as int subclasses, whose `__hash__` and `__eq__` the
stdlib's sets and dict call. Plain fds never come here.
"""

import sys

# The package has them from _rselectors before it imports this module.
from . import EVENT_READ, EVENT_WRITE


def after_select(selector, result, key_get):
    """The rest of `select()` once a replaced `_select` returned `result`."""
    r, w, _ = result
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
