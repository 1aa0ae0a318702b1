"""Differential tests: get_key / get_map (the _SelectorMapping view) and close()."""

import collections.abc
import os
import socket

import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip

from support.differential import Data, FilenoObj, rec_map, rec_select

R, W, RW = 1, 2, 3


# ---------------------------------------------------------------------------
# 6. get_key / get_map
# ---------------------------------------------------------------------------


@pytest.mark.posix_only("a closed AF_UNIX socket's fd number")
def test_get_key(differ):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        d = side.label(Data("d"), "d")
        side.rec("get_key unknown socket", sel.get_key, a)
        side.rec("get_key unknown fd", sel.get_key, a.fileno())
        side.rec("get_key invalid str", sel.get_key, "abc")
        side.rec("get_key None", sel.get_key, None)
        side.rec("get_key -10", sel.get_key, -10)
        side.rec("get_key 3.0", sel.get_key, 3.0)
        side.rec("get_key object", sel.get_key, side.label(Data("o"), "o"))
        side.rec("get_key fileno raises OSError", sel.get_key,
                 side.label(FilenoObj("oserr", exc_type=OSError), "fo"))
        k = sel.register(a, R, d)
        side.check("get_key(a) is key", sel.get_key(a) is k)
        side.check("get_key(fd) is key", sel.get_key(a.fileno()) is k)
        side.check("get_key(wrapper) is key",
                   sel.get_key(side.label(FilenoObj("w", ret=a.fileno()), "w")) is k)
        side.rec("get_key b unknown", sel.get_key, b)
        side.rec("get_key(fileobj=a)", sel.get_key, fileobj=a)
        a.close()
        side.rec("get_key closed (identity search)", sel.get_key, a)
        side.check("get_key closed is key", sel.get_key(a) is k)
        side.rec("get_key other closed socket", sel.get_key, _closed_socket(side))

    differ(scenario)


def _closed_socket(side):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.close()
    return s


def _setitem(m, k, v):
    m[k] = v


def _delitem(m, k):
    del m[k]


def test_get_map_mapping_protocol(differ):
    def scenario(side):
        sel = side.selector()
        m = sel.get_map()
        side.check("same object each call", sel.get_map() is m)
        side.check("isinstance Mapping", isinstance(m, collections.abc.Mapping))
        side.check("not MutableMapping", isinstance(m, collections.abc.MutableMapping))
        side.rec("len empty", len, m)
        side.rec("bool empty", bool, m)
        side.rec("list empty", list, m)
        side.rec("== {} empty", lambda: m == {})
        pairs = [side.socketpair("p%d" % i) for i in range(3)]
        # registration order deliberately not fd order
        order = [pairs[2][1], pairs[0][0], pairs[1][1], pairs[2][0]]
        keys = []
        for i, obj in enumerate(order):
            keys.append(sel.register(obj, W if i % 2 else RW, side.label(Data(str(i)), "d%d" % i)))
        side.check("same object after register", sel.get_map() is m)
        side.rec("len", len, m)
        side.rec("bool", bool, m)
        side.rec("iteration order", lambda: [side.fdish(fd) for fd in m])
        side.rec("iteration types", lambda: [type(fd).__name__ for fd in m])
        side.rec("keys()", lambda: [side.fdish(fd) for fd in m.keys()])
        side.rec("values()", lambda: list(m.values()))
        side.rec("items()", lambda: [(side.fdish(fd), k) for fd, k in m.items()])
        side.rec("len(keys())", lambda: len(m.keys()))
        side.rec("dict(m)", lambda: [(side.fdish(fd), k) for fd, k in dict(m).items()])
        for i, obj in enumerate(order):
            side.check("m[obj] is key %d" % i, m[obj] is keys[i])
            side.check("m[fd] is key %d" % i, m[obj.fileno()] is keys[i])
            side.check("m.get(obj) is key %d" % i, m.get(obj) is keys[i])
            side.check("obj in m %d" % i, obj in m)
            side.check("fd in m %d" % i, obj.fileno() in m)
            side.check("values identity %d" % i, list(m.values())[i] is keys[i])
        unknown = pairs[0][1]
        side.rec("m[unknown socket]", lambda: m[unknown])
        side.rec("m[unknown fd]", lambda: m[unknown.fileno()])
        side.rec("m.get(unknown)", m.get, unknown)
        side.rec("m.get(unknown, dflt)", m.get, unknown, "dflt")
        side.rec("unknown in m", lambda: unknown in m)
        side.rec("unknown fd in m", lambda: unknown.fileno() in m)
        side.rec("'abc' in m", lambda: "abc" in m)
        side.rec("None in m", lambda: None in m)
        side.rec("-10 in m", lambda: -10 in m)
        side.rec("m.get('abc')", m.get, "abc")
        side.rec("m.get('abc', 5)", m.get, "abc", 5)
        side.rec("m['abc']", lambda: m["abc"])
        side.rec("m[-10]", lambda: m[-10])
        side.rec("m[None]", lambda: m[None])
        side.rec("m == dict", lambda: m == {k.fd: k for k in keys})
        side.rec("m == dict reversed", lambda: m == {k.fd: k for k in reversed(keys)})
        side.rec("m != {}", lambda: m != {})
        side.rec("m == partial dict", lambda: m == {keys[0].fd: keys[0]})
        side.rec("m == m", lambda: m == m)
        side.rec("m == list(m)", lambda: m == list(m))
        side.rec("m == dict by fileobj", lambda: m == {k.fileobj: k for k in keys})
        side.rec("keys() == set", lambda: m.keys() == {k.fd for k in keys})
        side.rec("(fd, key) in items()", lambda: (keys[0].fd, keys[0]) in m.items())
        side.rec("key in values()", lambda: keys[1] in m.values())
        side.rec("hash(m)", hash, m)
        side.rec("m[fd] = x", _setitem, m, keys[0].fd, "x")
        side.rec("m[new] = x", _setitem, m, 12345, "x")
        side.rec("del m[fd]", _delitem, m, keys[0].fd)
        side.rec("m.pop", lambda: m.pop(keys[0].fd))
        side.rec("m.clear", lambda: m.clear())
        side.rec("m.update", lambda: m.update({}))
        side.rec("m.setdefault", lambda: m.setdefault(1, 2))
        side.rec("hasattr __setitem__", hasattr, m, "__setitem__")
        side.rec("reversed(m)", lambda: list(reversed(m)))
        side.rec("len after failed mutations", len, m)
        rec_map(side, sel, "map intact")

    differ(scenario)


@pytest.mark.posix_only("os.pipe() ends: Windows' select() takes sockets only")
def test_get_map_live_view(differ):
    def scenario(side):
        sel = side.selector()
        m = sel.get_map()
        a, b = side.socketpair()
        r, w = side.pipe()
        keys_view = m.keys()
        items_view = m.items()
        side.rec("len 0", len, m)
        ka = sel.register(a, R, "a")
        side.rec("len 1", len, m)
        side.rec("a in m", lambda: a in m)
        side.rec("keys view live", lambda: [side.fdish(fd) for fd in keys_view])
        sel.register(w, W, "w")
        side.rec("len 2", len, m)
        side.rec("items view live", lambda: [(side.fdish(fd), k) for fd, k in items_view])
        k2 = sel.modify(a, R, "a2")
        side.check("m[a] is modified key", m[a] is k2 and k2 is not ka)
        sel.unregister(a)
        side.rec("len after unregister", len, m)
        side.rec("a in m after unregister", lambda: a in m)
        side.rec("iteration", lambda: [side.fdish(fd) for fd in m])
        side.check("still same object", sel.get_map() is m)

    differ(scenario)


@pytest.mark.parametrize("op", ["register", "unregister", "modify-events", "modify-data",
                                "unregister-register", "items-register", "values-unregister"])
def test_get_map_mutation_during_iteration(differ, op):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        c, d = side.socketpair("t")
        sel.register(a, R, "a")
        sel.register(b, W, "b")
        sel.register(c, R, "c")
        m = sel.get_map()

        def run():
            seen = []
            if op.startswith("items"):
                it = iter(m.items())
            elif op.startswith("values"):
                it = iter(m.values())
            else:
                it = iter(m)
            seen.append(side.canon(next(it)) if op.startswith(("items", "values")) else side.fdish(next(it)))
            if op in ("register", "items-register"):
                sel.register(d, R, "d")
            elif op in ("unregister", "values-unregister"):
                sel.unregister(c)
            elif op == "modify-events":
                sel.modify(a, W, "a")
            elif op == "modify-data":
                sel.modify(a, R, "a2")
            elif op == "unregister-register":
                sel.unregister(c)
                sel.register(d, R, "d")
            for x in it:
                seen.append(side.canon(x) if op.startswith(("items", "values")) else side.fdish(x))
            return seen

        side.rec("iterate+mutate", run)
        rec_map(side, sel, "map after")

    differ(scenario)


def test_get_map_true_fd(differ, kind):
    """True registered as fd 1 (no syscall on Poll/Select): stored and iterated as True."""
    if kind == "Epoll":
        pytest.skip("epoll refuses fd 1 when it is a regular file, as pytest's capture makes "
                    "it: test_bool_fd_epoll_with_fd1_socket makes fd 1 a socket for Epoll")

    def scenario(side):
        sel = side.selector()
        a, _ = side.socketpair()
        side.rec("register True", sel.register, True, R, "t")
        side.rec("register 1", sel.register, 1, R)
        sel.register(a, W, "a")
        m = sel.get_map()
        side.rec("iteration", lambda: [side.fdish(fd) for fd in m])
        side.rec("m[1]", lambda: m[1])
        side.rec("m[True]", lambda: m[True])
        side.rec("1 in m", lambda: 1 in m)
        side.rec("get_key(1)", sel.get_key, 1)
        side.rec("unregister 1", sel.unregister, 1)
        side.rec("iteration after", lambda: [side.fdish(fd) for fd in m])

    differ(scenario)


@pytest.fixture
def fd1_is_socket():
    """Temporarily make fd 1 a socket (so registering True/1 on epoll succeeds)."""
    a, b = socket.socketpair()
    saved = os.dup(1)
    try:
        os.dup2(a.fileno(), 1)
        yield b
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        a.close()
        b.close()


def test_bool_fd_epoll_with_fd1_socket(differential, fd1_is_socket):
    """On every class, True as fileobj is fd 1 and is stored as True (not 1)."""
    peer = fd1_is_socket

    def scenario(side):
        for kind in ("Epoll", "Poll", "Select"):
            sel = side.selector(getattr(side.mod, kind + "Selector"))
            k = side.rec(kind + " register True", sel.register, True, RW, "t")
            side.check(kind + " fd is True", k is not None and k.fd is True)
            side.rec(kind + " map iteration", lambda: list(sel.get_map()))
            rec_select(side, sel, kind + " select(0)")
            side.rec(kind + " modify True", sel.modify, True, W, "t2")
            side.rec(kind + " unregister 1", sel.unregister, 1)
            side.rec(kind + " register True again", sel.register, True, R)
            sel.close()

    differential(scenario, None)


@pytest.mark.posix_only("a closed AF_UNIX socket's fd number")
def test_get_map_after_unregister_closed(differ):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, R, "a")
        m = sel.get_map()
        a.close()
        side.rec("closed in m (identity)", lambda: a in m)
        side.rec("m[closed]", lambda: m[a])
        side.rec("m.get(closed)", m.get, a)
        side.rec("other closed in m", lambda: _closed_socket(side) in m)

    differ(scenario)


# ---------------------------------------------------------------------------
# 7. close
# ---------------------------------------------------------------------------


@pytest.mark.posix_only("os.pipe() ends: Windows' select() takes sockets only")
def test_close(differ):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        r, w = side.pipe()
        sel.register(a, R, "a")
        sel.register(w, W, "w")
        m = sel.get_map()
        side.rec("close", sel.close)
        side.rec("get_map()", sel.get_map)
        side.rec("get_key(a)", sel.get_key, a)
        side.rec("get_key(invalid)", sel.get_key, "abc")
        side.rec("get_key(unknown)", sel.get_key, b)
        side.rec("old map len", len, m)
        side.rec("old map bool", bool, m)
        side.rec("old map list", list, m)
        side.rec("old map get", m.get, a)
        side.rec("old map get fd", m.get, w)
        side.rec("old map []", lambda: m[a])
        side.rec("old map in", lambda: a in m)
        side.rec("old map == {}", lambda: m == {})
        side.rec("close again", sel.close)
        side.rec("unregister(a)", sel.unregister, a)
        side.rec("unregister(invalid)", sel.unregister, "abc")
        side.rec("modify(a)", sel.modify, a, W)
        side.rec("fileno type", lambda: type(sel.fileno()).__name__)
        side.rec("register after close", sel.register, a, R, "again")
        side.rec("get_map after register", sel.get_map)
        side.rec("old map len after register", len, m)
        b.send(b"x")
        side.rec("select(0) after close", sel.select, 0)
        side.rec("select(0.01) after close", sel.select, 0.01)
        side.rec("unregister after close+register", sel.unregister, a)
        side.rec("modify after close+register", sel.modify, a, R)
        side.rec("close third time", sel.close)
        side.rec("get_map end", sel.get_map)

    differ(scenario)


def test_close_empty_select(differ):
    def scenario(side):
        sel = side.selector()
        side.rec("close", sel.close)
        side.rec("select(0)", sel.select, 0)
        side.rec("select(-1)", sel.select, -1)
        side.rec("select('x')", sel.select, "x")

    differ(scenario)


def test_close_releases_epoll_fd(differ):
    def scenario(side):
        sel = side.selector()
        fd = None
        try:
            fd = sel.fileno()
        except AttributeError as exc:
            side.check("fileno", exc)
        if fd is not None:
            side.label_fd(fd, "selfd")
            side.check("fd open before close", _fd_open(fd))
        sel.close()
        if fd is not None:
            side.check("fd open after close", _fd_open(fd))

    differ(scenario)


def _fd_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_context_manager(differ):
    class Boom(Exception):
        pass

    def scenario(side):
        a, b = side.socketpair()
        sel = side.selector()
        with sel as s2:
            side.check("__enter__ returns self", s2 is sel)
            side.rec("register inside", sel.register, a, R, "a")
        side.rec("get_map after with", sel.get_map)
        side.rec("get_key after with", sel.get_key, a)
        sel2 = side.selector()

        def raising():
            with sel2:
                sel2.register(a, R)
                raise Boom("inside")

        side.rec("exception propagates", raising)
        side.rec("closed after exception", sel2.get_map)
        sel3 = side.selector()
        side.rec("__exit__ return value", sel3.__exit__, None, None, None)
        side.rec("closed by __exit__", sel3.get_map)
        side.rec("__enter__ after close", lambda: sel3.__enter__() is sel3)

    differ(scenario)


def test_get_map_order_after_modify(differ):
    """Poll/Epoll modify() keeps the fd in place; Select's modify() (unregister+register)
    moves it to the end of the registration order."""

    def scenario(side):
        sel = side.selector()
        pairs = [side.socketpair("p%d" % i) for i in range(2)]
        a, b = pairs[0]
        c, d = pairs[1]
        for s in (a, b, c, d):
            sel.register(s, R, "x")
        order = lambda: [side.fdish(fd) for fd in sel.get_map()]  # noqa: E731
        side.rec("initial", order)
        sel.modify(a, W, "x")
        side.rec("after modify events of first", order)
        sel.modify(b, R, "data-only")
        side.rec("after data-only modify", order)
        sel.modify(c, W, "both")
        side.rec("after modify events+data", order)
        sel.unregister(b)
        sel.register(b, RW, "back")
        side.rec("after unregister+register", order)
        side.rec("values order", lambda: [side.fdish(k.fd) for k in sel.get_map().values()])

    differ(scenario)


def test_private_hooks(differ):
    """Private names other code touches: _map (CPython's tests use len(s._map)),
    _key_from_fd (<= 3.12)."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        k = sel.register(a, R, "a")
        side.rec("_map is get_map()", lambda: sel._map is sel.get_map())
        side.rec("len(_map)", lambda: len(sel._map))
        side.rec("_key_from_fd(fd) is key", lambda: sel._key_from_fd(a.fileno()) is k)
        side.rec("_key_from_fd(unknown)", lambda: sel._key_from_fd(b.fileno()))
        side.rec("_key_from_fd(-1)", lambda: sel._key_from_fd(-1))
        sel.close()
        side.rec("_map after close", lambda: sel._map)

    differ(scenario)


def test_get_map_iterator_after_error_and_exhaustion(differ):
    """Like a dict iterator: after the RuntimeError it is exhausted (StopIteration), and an
    exhausted iterator stays exhausted even if the selector changes."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        c, d = side.socketpair("t")
        sel.register(a, R)
        sel.register(b, R)
        m = sel.get_map()
        it = iter(m)
        side.rec("next 1", lambda: side.fdish(next(it)))
        sel.register(c, R)
        side.rec("next after register", lambda: side.fdish(next(it)))
        side.rec("next after the error", lambda: side.fdish(next(it)))
        sel.unregister(c)
        side.rec("next once sizes match again", lambda: side.fdish(next(it)))
        it2 = iter(m)
        side.rec("exhaust", lambda: [side.fdish(fd) for fd in it2])
        sel.register(d, R)
        side.rec("next on exhausted after register", lambda: side.fdish(next(it2)))
        it3 = iter(m)
        side.rec("length_hint", lambda: __import__("operator").length_hint(it3, -1))
        side.rec("iter(it) is it", lambda: iter(it3) is it3)

    differ(scenario)


def test_get_map_object_model(differ):
    """The mapping object itself: attributes, weakref, keyword names of get()."""
    import weakref

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, R, "a")
        m = sel.get_map()
        side.check("type name", type(m).__name__)
        side.rec("set attribute", setattr, m, "custom", 1)
        side.rec("weakref", lambda: weakref.ref(m)() is m)
        side.rec("get(key=fd)", lambda: m.get(key=a.fileno()))
        side.rec("get(fd, default=1)", lambda: m.get(b.fileno(), default=1))
        side.rec("bool", bool, m)

    differ(scenario)


class _BadRepr:
    def fileno(self):
        raise AttributeError("no fileno")

    def __repr__(self):
        raise RuntimeError("repr failed")


class _BadReprFd:
    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd

    def __repr__(self):
        raise RuntimeError("repr failed")


def test_error_message_repr_raises(differ):
    """Messages are built with repr(): if repr raises, that error propagates (chained)."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        bad = side.label(_BadRepr(), "bad")
        badfd = side.label(_BadReprFd(a.fileno()), "badfd")
        side.rec("register invalid", sel.register, bad, R)
        side.rec("get_key invalid", sel.get_key, bad)
        side.rec("get_key unknown", sel.get_key, badfd)
        side.rec("map[] unknown", lambda: sel.get_map()[badfd])
        side.rec("unregister unknown", sel.unregister, badfd)
        side.rec("modify unknown", sel.modify, badfd, W)
        side.rec("register", sel.register, badfd, R)
        side.rec("register duplicate", sel.register, badfd, R)
        side.rec("unregister", sel.unregister, badfd)

    differ(scenario)


class _FilenoOnce:
    """fileno() gives `fd` once; then raises RuntimeError (`then="raise"`), raises it inside a
    handler of its own, so with a context of its own (`then="nested"`), or gives `then`."""

    def __init__(self, fd, then):
        self.fd, self.then, self.calls = fd, then, 0

    def fileno(self):
        self.calls += 1
        if self.calls == 1:
            return self.fd
        if self.then == "raise":
            raise RuntimeError("fileno gone")
        if self.then == "nested":
            try:
                raise LookupError("inner")
            except LookupError:
                raise RuntimeError("fileno gone") from None
        return self.then

    def __repr__(self):
        return "<FilenoOnce>"


class _ReprRaisesInHandler:
    """repr() raises inside a handler of its own; fileno() gives `fd`, or raises without one."""

    def __init__(self, fd=None):
        self.fd = fd

    def fileno(self):
        if self.fd is None:
            raise AttributeError("no fileno")
        return self.fd

    def __repr__(self):
        try:
            raise LookupError("inner")
        except LookupError:
            raise RuntimeError("repr failed")  # noqa: B904 - the context is the point


def _context_chain(side, exc, limit=5):
    """Every __context__ down the chain, suppressed ones too (`raise X from None` keeps the
    handled exception there, where a user can read it): [(type, message, suppressed), ...]."""
    chain = []
    while exc is not None and len(chain) < limit:
        chain.append(side.canon_exc(exc)[:3] + (exc.__suppress_context__,))
        exc = exc.__context__
    return chain


def test_error_context_chain(differ):
    """The exceptions raised inside the stdlib's `except` blocks carry the handled one as
    __context__, hidden by `from None` or not: `Invalid file object` (fileno()'s error),
    `is not registered` (the dict's KeyError), and what undoing a refused epoll registration
    raises (the OSError)."""

    def scenario(side):
        sel = side.selector()
        a, _ = side.socketpair()
        f, g, h = (side.regular_file(name) for name in "fgh")

        def rec_chain(step, fn, *args):
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001
                side.check(step, _context_chain(side, exc))
            else:
                side.check(step, "no error")

        rec_chain("register invalid", sel.register,
                  side.label(FilenoObj("verr", exc_type=ValueError), "verr"), R)
        rec_chain("get_key unknown", sel.get_key, a)
        rec_chain("unregister unknown", sel.unregister, a)
        rec_chain("modify unknown", sel.modify, a, W)
        rec_chain("map[] unknown", lambda: sel.get_map()[a])
        rec_chain("register invalid, repr raises in a handler", sel.register,
                  side.label(_ReprRaisesInHandler(), "nofileno"), R)
        rec_chain("get_key unknown, repr raises in a handler", sel.get_key,
                  side.label(_ReprRaisesInHandler(a.fileno()), "unknown"))
        # Epoll refuses a regular file (EPERM). Undoing the registration calls fileno() again:
        # it raises (leaving the key registered: hence a file each), or gives another fd,
        # whose unregistering raises `is not registered` from None.
        for step, file, then in [("raises", f, "raise"), ("raises in a handler", g, "nested"),
                                 ("gives another fd", h, a.fileno())]:
            rec_chain("register refused, then fileno() " + step, sel.register,
                      side.label(_FilenoOnce(file.fileno(), then), "once"), R)

    differ(scenario)
