"""Which selector kinds this build has, the stdlib class each is compared with, and the skips
that one kind on one platform needs (libkqueue, a Python without its GIL).

rselectors is imported lazily, so that importing this never breaks collection: a missing
rselectors makes the tests that use it *error* (never skip).
"""

import os
import sys
import time

import pytest


def _kinds_of(module):
    return tuple(k for k in ("Epoll", "Kqueue", "Poll", "Select") if hasattr(module, k + "Selector"))


def _build_kinds():
    """The selector kinds this build of rselectors has: Kqueue too on a Linux build with the
    `libkqueue` feature. Without rselectors, the default three (the tests then error)."""
    try:
        import rselectors
    except ImportError:
        return ("Epoll", "Poll", "Select")
    return _kinds_of(rselectors)


KINDS = _build_kinds()
# What the running interpreter's selectors has: no KqueueSelector on Linux (no select.kqueue).
STDLIB_KINDS = _kinds_of(__import__("selectors"))
NO_STDLIB_REFERENCE = "stdlib has no %sSelector on Linux (no select.kqueue): no reference to compare with"


def rselectors_module():
    # Deliberately no fallback: if rselectors is missing the tests must error.
    import rselectors

    return rselectors


def stdlib_module():
    import selectors

    return selectors


def on_libkqueue():
    try:
        import rselectors
    except ImportError:
        return False
    return getattr(rselectors._rselectors, "_ON_LIBKQUEUE", False)


def stdlib_for(kind):
    """The stdlib module to compare `kind` with: the running interpreter's selectors or, for
    Kqueue on a libkqueue build, its Lib/selectors.py run on a select.kqueue over libkqueue
    (support/kqueue_reference.py). A kind with neither skips the test, saying why."""
    stdlib = stdlib_module()
    if kind in STDLIB_KINDS:
        return stdlib
    if kind == "Kqueue" and on_libkqueue():
        from support import kqueue_reference

        return kqueue_reference.stdlib_selectors()
    pytest.skip(NO_STDLIB_REFERENCE % kind)


def selector_class(module, kind):
    """`module.<kind>Selector`; for the stdlib's class, that of `stdlib_for(kind)`."""
    if module.__name__ == "selectors" and kind not in STDLIB_KINDS:
        module = stdlib_for(kind)
    return getattr(module, kind + "Selector")


def module_pairs(kind=None):
    """[("stdlib", selectors), ("rselectors", rselectors)]; the stdlib's as `stdlib_for(kind)`."""
    stdlib = stdlib_module() if kind is None else stdlib_for(kind)
    return [("stdlib", stdlib), ("rselectors", rselectors_module())]


LIBKQUEUE_STALE_FD_REUSE = (
    "libkqueue: registering an fd number whose earlier registration was left behind (the fd "
    "closed while registered) sometimes adds nothing, or fails, where a BSD kernel dropped the "
    "stale filters at close(); intermittent, so these comparisons would flake "
    "(README \"KqueueSelector on libkqueue\")")


def skip_stale_fd_reuse_on_libkqueue(kind):
    """For a scenario that reuses the number of an fd closed while registered."""
    if kind == "Kqueue" and on_libkqueue():
        pytest.skip(LIBKQUEUE_STALE_FD_REUSE)


def skip_stdlib_select_without_gil(module, kind):
    """For a test where threads change a SelectSelector while another is in its select()."""
    if module.__name__ == "selectors" and kind == "Select" and \
            not getattr(sys, "_is_gil_enabled", lambda: True)():
        pytest.skip("no GIL: the stdlib's SelectSelector is not thread-safe (select.select() "
                    "iterates the sets other threads' register() changes: 'Set changed size "
                    "during iteration'), so its run validates nothing here")


def open_fds():
    return frozenset(os.listdir("/proc/self/fd"))


def settle_libkqueue_fds(before=None, limit=1.0):
    """libkqueue frees a closed kqueue's own fds (two of its three) from its monitor thread a
    moment after close() (README "KqueueSelector on libkqueue"). Wait, boundedly, until the fds
    opened since `before` are gone, or (without `before`) until the set stops changing, so
    that the two sides of a comparison see the same fd numbers."""
    deadline = time.monotonic() + limit
    last = open_fds()
    while time.monotonic() < deadline:
        time.sleep(0.002)
        now = open_fds()
        if (before is not None and now <= before) or (before is None and now == last):
            return
        last = now
