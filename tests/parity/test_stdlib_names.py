"""Every name of the running interpreter's `selectors` exists on rselectors, meaning the same.

rselectors defines the selector classes, `SelectorKey`, `EVENT_*` and `_SelectorMapping` (the
class of its own `get_map()`); every other name of the stdlib module (`_BaseSelectorImpl`,
`_PollLikeSelector`, `_fileobj_to_fd`, `_can_use`, `select`, `sys`, `math`, `namedtuple`,
`Mapping`, `BaseSelector`, ... whatever this version has) is the stdlib's own object. Runs
on every CPython the suite covers (tests/run_other_pythons.py).
"""

import os
import select
import selectors
import socket

import pytest

import rselectors

# What rselectors implements itself; the rest of dir(selectors) must be the stdlib's objects.
OWN = {"EVENT_READ", "EVENT_WRITE", "SelectorKey", "SelectSelector", "PollSelector",
       "EpollSelector", "KqueueSelector", "DefaultSelector", "_SelectorMapping"}
# Public names rselectors has beyond the stdlib's (EventLoopPolicy is made on first access).
EXTRA_PUBLIC = {"install", "new_event_loop", "run", "millisecond_timeouts",
                "set_millisecond_timeouts", "exclusive_accept", "set_exclusive_accept"}


def public(names):
    return {n for n in names if not n.startswith("_")}


def test_dir_covers_the_stdlib_module():
    # __warningregistry__ appears on a module once a warning is raised from its code (3.13's
    # bool-fd warning, earlier in the run): not a name of the module as imported.
    missing = sorted(set(dir(selectors)) - set(dir(rselectors)) - {"__warningregistry__"})
    assert missing == []
    # EventLoopPolicy joins the module's namespace once first used (module __getattr__).
    assert public(dir(rselectors)) - public(dir(selectors)) - {"EventLoopPolicy"} \
        == EXTRA_PUBLIC


def test_names_not_implemented_here_are_the_stdlib_objects():
    for name in dir(selectors):
        if name.startswith("__") or name in OWN:
            continue
        assert getattr(rselectors, name) is getattr(selectors, name), name
    # The module aliases, spelled out for 3.11 (other versions: the loop above).
    import collections
    import collections.abc
    import math
    import sys
    assert rselectors.select is select and rselectors.sys is sys and rselectors.math is math
    assert rselectors.namedtuple is collections.namedtuple
    assert rselectors.Mapping is collections.abc.Mapping
    assert rselectors.BaseSelector is selectors.BaseSelector


def test_own_names_are_ours():
    assert rselectors.EVENT_READ == selectors.EVENT_READ
    assert rselectors.EVENT_WRITE == selectors.EVENT_WRITE
    for name in OWN - {"EVENT_READ", "EVENT_WRITE"}:
        if hasattr(selectors, name):
            assert getattr(rselectors, name) is not getattr(selectors, name), name
    sel = rselectors.DefaultSelector()
    try:
        assert type(sel.get_map()) is rselectors._SelectorMapping
    finally:
        sel.close()


@pytest.mark.parametrize("name", sorted(n for n in dir(selectors)
                                        if isinstance(getattr(selectors, n), type)))
def test_public_methods_of_each_class(name):
    ours, theirs = getattr(rselectors, name), getattr(selectors, name)
    # EPOLLEXCLUSIVE (issue 23), on EpollSelector and the DefaultSelector that is one.
    extra = {"register_exclusive"} if issubclass(ours, getattr(rselectors, "EpollSelector",
                                                               ())) else set()
    assert public(dir(ours)) == public(dir(theirs)) | extra


def test_select_selector_select_attribute():
    assert rselectors.SelectSelector._select is select.select
    assert selectors.SelectSelector._select is select.select


def _fd_inputs(a, closed):

    class Fileno:
        def __init__(self, value):
            self.value = value

        def fileno(self):
            if isinstance(self.value, Exception):
                raise self.value
            return self.value

    return [0, 7, 2**31, 2**70, -1, True, 1.5, "3", None, a, closed, Fileno(5), Fileno(-2),
            Fileno("x"), Fileno(ValueError("no fileno")), object()]


def _fd_outcomes(module, inputs):
    results = []
    for value in inputs:
        try:
            results.append(("ok", module._fileobj_to_fd(value)))
        except Exception as exc:  # noqa: BLE001 - the comparison is the point
            results.append(("raise", type(exc), str(exc)))
    return results


def test_fileobj_to_fd_behaves_the_same():
    a, b = socket.socketpair()
    closed = socket.socket()
    closed.close()
    try:
        inputs = _fd_inputs(a, closed)
        assert _fd_outcomes(rselectors, inputs) == _fd_outcomes(selectors, inputs)
    finally:
        a.close()
        b.close()


def _third_party(module):
    """A selector extending `_BaseSelectorImpl` as gevent's does, run on `module`."""

    class Sub(module._BaseSelectorImpl):
        def select(self, timeout=None):
            fds = list(self._fd_to_key)
            r, w, _ = select.select(fds, fds, [], timeout)
            ready = []
            for fd in sorted(set(r) | set(w)):
                key = self._key_from_fd(fd) if hasattr(self, "_key_from_fd") \
                    else self._fd_to_key.get(fd)
                events = (fd in r and module.EVENT_READ) | (fd in w and module.EVENT_WRITE)
                ready.append((key.fd, events & key.events))
            return ready

    a, b = socket.socketpair()
    sel = Sub()
    try:
        out = [isinstance(sel, selectors.BaseSelector), isinstance(sel, rselectors.BaseSelector)]
        key = sel.register(a, module.EVENT_READ, "data")
        out.append((key.fd == a.fileno(), key.events, key.data))
        out.append(sel._fileobj_lookup(a) == a.fileno())
        out.append(sel.select(0))
        b.send(b"x")
        out.append([events for _fd, events in sel.select(1)])
        out.append(len(sel.get_map()) == len(sel._map) == 1)
        sel.unregister(a)
        out.append(sel._fd_to_key)
    finally:
        sel.close()
        a.close()
        b.close()
    return out


def test_base_selector_impl_subclass_works_as_in_the_stdlib():
    assert _third_party(rselectors) == _third_party(selectors)


def _poll_like(module):
    class Sub(module._PollLikeSelector):
        _selector_cls = select.poll
        _EVENT_READ = select.POLLIN
        _EVENT_WRITE = select.POLLOUT

    r, w = os.pipe()
    sel = Sub()
    try:
        out = [type(sel._selector).__name__]
        sel.register(r, module.EVENT_READ)
        sel.register(w, module.EVENT_WRITE)
        os.write(w, b"x")
        out.append(sorted((key.fd == r, events) for key, events in sel.select(1)))
    finally:
        sel.close()
        os.close(r)
        os.close(w)
    return out


def test_poll_like_selector_subclass_works_as_in_the_stdlib():
    assert _poll_like(rselectors) == _poll_like(selectors)


def test_known_difference_our_classes_are_not_poll_like_subclasses():
    # README "Known differences": the stdlib's Epoll/PollSelector derive from
    # _PollLikeSelector and _BaseSelectorImpl; ours are Rust classes beside them.
    assert issubclass(selectors.EpollSelector, selectors._PollLikeSelector)
    assert not issubclass(rselectors.EpollSelector, rselectors._PollLikeSelector)
    assert not issubclass(rselectors.PollSelector, rselectors._BaseSelectorImpl)
    assert issubclass(rselectors.EpollSelector, selectors.BaseSelector)


class _Recording:
    def __init__(self):
        self.calls = []

    def __call__(self, r, w, x, timeout):
        self.calls.append((sorted(r), sorted(w), list(x), timeout))
        return select.select(r, w, x, timeout)


def _replaced_select(module):
    """gevent and eventlet replace SelectSelector._select: the selector waits through it."""
    recorder = _Recording()

    class Sub(module.SelectSelector):
        _select = staticmethod(recorder)

    a, b = socket.socketpair()
    sel = Sub()
    try:
        sel.register(a, module.EVENT_READ)
        b.send(b"x")
        ready = [(key.fileobj is a, events) for key, events in sel.select(2)]
        calls = [(r == [a.fileno()], w, x, timeout) for r, w, x, timeout in recorder.calls]
    finally:
        sel.close()
        a.close()
        b.close()
    return ready, calls


def test_replaced_select_function_is_used():
    assert _replaced_select(rselectors) == _replaced_select(selectors)


def test_finds_the_stdlib_module_when_selectors_names_something_else(tmp_path):
    # A module of that name earlier on sys.path (or anything else in sys.modules["selectors"])
    # stays where it is; rselectors loads the stdlib's file for itself.
    import subprocess
    import sys
    import textwrap

    (tmp_path / "selectors.py").write_text("SHADOW = True\n")
    code = textwrap.dedent("""
        import sys
        import rselectors
        shadow = sys.modules["selectors"]
        base = rselectors._BaseSelectorImpl
        print(getattr(shadow, "SHADOW", False), shadow is not rselectors._stdlib,
              base.register.__code__.co_filename == rselectors._stdlib.__file__
              != shadow.__file__,
              base.__module__, issubclass(rselectors.EpollSelector, rselectors.BaseSelector))
    """)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("RSELECTORS_INSTALL", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "True True True selectors True\n"
