"""Object model: classes, subclassing, attributes, weakrefs, GC, fileno, SelectorKey."""

import copy
import gc
import os
import pickle
import sys
import weakref


import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip
from support.kinds import selector_class

from support.differential import Data, rec_map, rec_select

R, W, RW = 1, 2, 3


# ---------------------------------------------------------------------------
# classes / instances
# ---------------------------------------------------------------------------


def test_module_classes(rselectors):
    import selectors

    assert selectors.DefaultSelector is selectors.EpollSelector
    assert rselectors.DefaultSelector is rselectors.EpollSelector
    for kind in ("Epoll", "Poll", "Select"):
        cls = selector_class(rselectors, kind)
        assert isinstance(cls, type)
        assert issubclass(cls, rselectors.BaseSelector)
        assert cls.__name__ == kind + "Selector"
    assert rselectors.BaseSelector.__name__ == "BaseSelector"
    assert rselectors.SelectorKey.__name__ == "SelectorKey"


def test_isinstance_base(kind, module, closer):
    sel = closer(selector_class(module, kind)())
    assert isinstance(sel, module.BaseSelector)
    assert type(sel).__name__ == kind + "Selector"
    assert type(sel).__name__ == sel.__class__.__name__  # asyncio logs this


def test_instance_attributes(kind, module, closer):
    sel = closer(selector_class(module, kind)())
    sel.custom = 42
    assert sel.custom == 42
    assert "custom" in vars(sel)
    del sel.custom
    assert not hasattr(sel, "custom")


def test_weakref(kind, module):
    sel = selector_class(module, kind)()
    ref = weakref.ref(sel)
    assert ref() is sel
    proxy = weakref.proxy(sel)
    assert proxy.get_map() is sel.get_map()
    sel.close()
    del sel, proxy
    gc.collect()
    assert ref() is None


class _Holder:
    def __init__(self, sel):
        self.sel = sel


@pytest.mark.parametrize("via", ["data", "fileobj", "attribute", "events"])
def test_gc_cycle_collected(kind, module, via, socketpair):
    """selector <-> (data|fileobj|attribute|events) cycle is collected by gc.collect()."""
    a, b = socketpair()
    sel = selector_class(module, kind)()
    sel_fd = sel.fileno() if kind == "Epoll" else None

    class FileWrapper:
        def __init__(self, sock, sel):
            self.sock = sock
            self.sel = sel

        def fileno(self):
            return self.sock.fileno()

    class Events(int):
        pass

    if via == "data":
        sel.register(a, R, _Holder(sel))
    elif via == "fileobj":
        sel.register(FileWrapper(a, sel), R, None)
    elif via == "attribute":
        sel.me = sel
        sel.register(a, R, None)
    else:
        ev = Events(R)
        ev.sel = sel
        sel.register(a, ev, None)
        del ev
    ref = weakref.ref(sel)
    del sel
    gc.collect()
    gc.collect()
    assert ref() is None, "selector kept alive by a reference cycle (missing GC support?)"
    if sel_fd is not None:
        # the epoll fd was released with the object
        with pytest.raises(OSError):
            os.fstat(sel_fd)


def test_unclosed_selector_releases_fd(module):
    sel = module.EpollSelector()
    fd = sel.fileno()
    del sel
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.posix_only("reads /proc/self/fd")
def test_fileno(differ):
    def scenario(side):
        sel = side.selector()
        if side.kind == "Epoll":
            fd = sel.fileno()
            side.check("fileno type", type(fd).__name__)
            side.check("fileno >= 0", fd >= 0)
            side.check("stable", sel.fileno() == fd)
            side.check("inheritable", os.get_inheritable(fd))
            side.check("is an epoll fd", os.readlink("/proc/self/fd/%d" % fd))
        side.rec("hasattr fileno", hasattr, sel, "fileno")
        side.rec("fileno()", lambda: type(sel.fileno()).__name__)
        try:
            sel.fileno(1)
        except Exception as exc:  # noqa: BLE001 - arity message names internals: type only
            side.check("fileno(1) raises", type(exc).__name__)

    differ(scenario)


def test_repr(kind, module, closer):
    sel = closer(selector_class(module, kind)())
    r = repr(sel)
    assert r.startswith("<") and (kind + "Selector") in r


def test_subclass_override(differ):
    """A user subclass overriding register/unregister (calling super()) works like the stdlib's."""

    def scenario(side):
        calls = []

        class Sub(side.cls):
            def __init__(self):
                super().__init__()
                self.extra = "extra"

            def register(self, fileobj, events, data=None):
                calls.append(("register", side.canon(fileobj), events, side.canon(data)))
                return super().register(fileobj, events, data)

            def unregister(self, fileobj):
                calls.append(("unregister", side.canon(fileobj)))
                return super().unregister(fileobj)

        sel = side.selector(Sub)
        a, b = side.socketpair()
        side.check("isinstance base", isinstance(sel, side.mod.BaseSelector))
        side.check("isinstance cls", isinstance(sel, side.cls))
        side.check("extra", sel.extra)
        side.rec("register", sel.register, a, R, "d")
        side.rec("modify events", sel.modify, a, W, "d")
        side.rec("modify data", sel.modify, a, W, "d2")
        side.rec("modify invalid events", sel.modify, a, 0, "d2")
        side.rec("get_key", sel.get_key, a)
        b.send(b"x")
        rec_select(side, sel, "select(0)")
        side.rec("unregister", sel.unregister, a)
        side.rec("unregister again", sel.unregister, a)
        side.check("calls", calls)
        with sel as s:
            side.check("enter returns self", s is sel)
        side.rec("closed", sel.get_map)

    differ(scenario)


def test_subclass_override_select_and_close(differ):
    def scenario(side):
        log = []

        class Sub(side.cls):
            def select(self, timeout=None):
                log.append(("select", timeout))
                return super().select(timeout)

            def close(self):
                log.append("close")
                super().close()

            def get_map(self):
                log.append("get_map")
                return super().get_map()

        sel = side.selector(Sub)
        a, b = side.socketpair()
        sel.register(a, W, "a")
        side.rec("select(0)", sel.select, 0)
        side.check("log after select", log)
        side.rec("get_key (base get_key calls self.get_map())", sel.get_key, a)
        side.check("log after get_key", log)
        with sel:
            pass
        side.check("log", log)
        side.rec("get_map", sel.get_map)

    differ(scenario)


def _make_user_selector(mod):
    """A minimal BaseSelector implementation: only the abstract methods."""

    class UserSelector(mod.BaseSelector):
        def __init__(self):
            self._keys = {}
            self.closed = False

        def register(self, fileobj, events, data=None):
            fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
            key = mod.SelectorKey(fileobj, fd, events, data)
            self._keys[fd] = key
            return key

        def unregister(self, fileobj):
            fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
            return self._keys.pop(fd)

        def select(self, timeout=None):
            return [(k, k.events) for k in self._keys.values()]

        def get_map(self):
            return None if self.closed else self._keys

    return UserSelector


def test_user_subclass_of_base_selector(differential):
    """get_key/modify/__enter__/__exit__/close come from BaseSelector."""

    def scenario(side):
        U = _make_user_selector(side.mod)
        sel = U()
        a, b = side.socketpair()
        side.check("isinstance", isinstance(sel, side.mod.BaseSelector))
        k = side.rec("register", sel.register, a, R, "d")
        side.check("get_key is key", sel.get_key(a.fileno()) is k)
        side.rec("get_key unknown", sel.get_key, b.fileno())
        side.rec("get_key by socket (dict lookup by object)", sel.get_key, a)
        side.rec("modify (base: unregister+register)", sel.modify, a, W, "d2")
        side.rec("modify unknown", sel.modify, b, W)
        side.rec("select", sel.select)
        side.rec("close (base: no-op)", sel.close)
        side.rec("get_map after base close", lambda: sel.get_map() is not None)
        with sel as s:
            side.check("enter", s is sel)
        side.rec("__exit__", sel.__exit__, None, None, None)
        sel.closed = True
        side.rec("get_key when get_map() is None", sel.get_key, a.fileno())

    differential(scenario, None)


def test_base_selector_abstract(differential):
    def scenario(side):
        B = side.mod.BaseSelector
        side.rec("BaseSelector()", B)
        side.check("abstract methods", sorted(B.__abstractmethods__))

        class Partial(B):
            def register(self, fileobj, events, data=None):
                pass

            def unregister(self, fileobj):
                pass

            def get_map(self):
                return {}

        side.rec("Partial()", Partial)

        class CallsSuper(B):
            def register(self, fileobj, events, data=None):
                return super().register(fileobj, events, data)

            def unregister(self, fileobj):
                return super().unregister(fileobj)

            def select(self, timeout=None):
                return super().select(timeout)

            def get_map(self):
                return super().get_map()

        s = CallsSuper()
        side.rec("super().register", s.register, 1, R)
        side.rec("super().unregister", s.unregister, 1)
        side.rec("super().select", s.select, 0)
        side.rec("super().get_map", s.get_map)
        side.rec("base close", s.close)
        side.rec("base get_key", s.get_key, 1)
        side.rec("base modify", s.modify, 1, R)
        side.check("enter", s.__enter__() is s)

    differential(scenario, None)


# ---------------------------------------------------------------------------
# SelectorKey
# ---------------------------------------------------------------------------


def _ro_set(k):
    k.fd = 3


def test_selector_key(differential):
    def scenario(side):
        K = side.mod.SelectorKey
        data = side.label(Data("d"), "d")
        k = K(5, 5, 1, data)
        side.check("tuple subclass", isinstance(k, tuple))
        side.check("type name", (K.__name__, K.__qualname__))
        side.check("fields", (k.fileobj, k.fd, k.events, k.data))
        side.check("data identity", k.data is data)
        side.check("indexing", (k[0], k[1], k[2], k[3], k[-1]))
        side.rec("index 4", lambda: k[4])
        side.check("slice", k[1:3])
        side.check("slice type", type(k[1:3]).__name__)
        fileobj, fd, events, d = k
        side.check("unpack", (fileobj, fd, events, d is data))
        side.check("len", len(k))
        side.check("== tuple", k == (5, 5, 1, data))
        side.check("!= tuple", k != (5, 5, 2, data))
        side.check("hash == tuple hash", hash(K(5, 5, 1, "x")) == hash((5, 5, 1, "x")))
        side.rec("hash unhashable data", hash, K(5, 5, 1, []))
        side.check("repr", repr(K(5, 5, 1, "x")))
        side.check("str", str(K(5, 5, 1, None)))
        k2 = K(fileobj=6, fd=6, events=2, data=None)
        side.check("keywords", k2)
        side.check("ordering", sorted([k2, K(5, 5, 1, None)]))
        side.rec("missing arg", K, 1, 2, 3)
        side.rec("too many args", K, 1, 2, 3, 4, 5)
        side.rec("bad keyword", lambda: K(1, 2, 3, data=4, x=5))
        r = k._replace(data="new")
        side.check("_replace", r)
        side.check("_replace type", type(r) is K)
        side.rec("_replace bad field", lambda: k._replace(foo=1))
        side.check("_fields", K._fields)
        side.check("_field_defaults", K._field_defaults)
        side.check("_asdict", k._asdict())
        side.check("_asdict type", type(k._asdict()).__name__)
        side.check("_make", K._make([1, 2, 3, 4]))
        side.check("_make type", type(K._make([1, 2, 3, 4])) is K)
        side.check("__match_args__", K.__match_args__)
        found = {}
        match k:
            case K(fileobj=fo, fd=f, events=e, data=dd):
                found["keyword"] = (fo, f, e, dd)
        match k:
            case K(fo, f, e, dd):
                found["positional"] = (fo, f, e, dd)
        side.check("match keyword", found["keyword"][:3] + (found["keyword"][3] is data,))
        side.check("match positional",
                   found["positional"][:3] + (found["positional"][3] is data,))
        side.rec("setattr field", _ro_set, k)
        side.rec("setattr other", setattr, k, "other", 1)
        side.check("count/index", (k.count(5), k.index(1)))
        side.check("concat", k + (1,))
        side.check("__getnewargs__", k.__getnewargs__())
        side.check("doc", K.__doc__)
        for field in ("fileobj", "fd", "events", "data"):
            side.check("field doc " + field, getattr(K, field).__doc__)

    differential(scenario, None)


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_selector_key_pickle(rselectors, proto):
    k = rselectors.SelectorKey(5, 5, 1, "data")
    k2 = pickle.loads(pickle.dumps(k, proto))
    assert k2 == k
    assert type(k2) is rselectors.SelectorKey
    assert (k2.fileobj, k2.fd, k2.events, k2.data) == (5, 5, 1, "data")


def test_selector_key_pickle_from_selector(kind, rselectors, socketpair, closer):
    a, b = socketpair()
    sel = closer(selector_class(rselectors, kind)())
    key = sel.register(a.fileno(), RW, {"x": 1})
    k2 = pickle.loads(pickle.dumps(key))
    assert k2 == key
    assert type(k2) is type(key) is rselectors.SelectorKey


def test_selector_key_copy(rselectors):
    K = rselectors.SelectorKey
    data = [1, 2]
    k = K(5, 5, 1, data)
    c = copy.copy(k)
    assert c == k and type(c) is K and c.data is data
    d = copy.deepcopy(k)
    assert d == k and type(d) is K and d.data is not data and d.data == data


def test_selector_key_is_returned_by_all_classes(kind, rselectors, socketpair, closer):
    a, b = socketpair()
    sel = closer(selector_class(rselectors, kind)())
    key = sel.register(a, R)
    assert type(key) is rselectors.SelectorKey
    assert isinstance(key, tuple)
    b.send(b"x")
    (rkey, mask), = sel.select(0)
    assert type(rkey) is rselectors.SelectorKey
    assert rkey is key
    assert type(sel.unregister(a)) is rselectors.SelectorKey


def test_selector_key_interop_with_stdlib(rselectors):
    """Keys compare equal across modules as 4-tuples."""
    import selectors

    assert rselectors.SelectorKey(1, 1, 1, None) == selectors.SelectorKey(1, 1, 1, None)
    assert hash(rselectors.SelectorKey(1, 1, 1, None)) == hash(selectors.SelectorKey(1, 1, 1, None))


def test_map_after_many_registrations(differ):
    """Insertion order survives deletions and re-insertions."""

    def scenario(side):
        sel = side.selector()
        pairs = [side.socketpair("p%d" % i) for i in range(5)]
        socks = [s for p in pairs for s in p]
        for i, s in enumerate(socks):
            sel.register(s, W if i % 3 else R, i)
        for s in socks[::3]:
            sel.unregister(s)
        for s in reversed(socks[::3]):
            sel.register(s, RW, "again")
        rec_map(side, sel, "map")
        rec_select(side, sel, "select(0)")

    differ(scenario)


def test_pickle_selector(differ, kind):
    """pickle/deepcopy of a selector: SelectSelector pickles in the stdlib, the others raise
    TypeError("cannot pickle 'select.epoll' object") and the like."""
    if kind == "Select":
        pytest.skip("documented difference, checked by test_selectors_refuse_pickle_and_copy")

    def scenario(side):
        sel = side.selector()
        side.rec("pickle.dumps(empty selector)", lambda: type(pickle.dumps(sel)).__name__)
        side.rec("copy.deepcopy(empty selector)", lambda: type(copy.deepcopy(sel)).__name__)

    differ(scenario)


# README "Known differences": the stdlib's selectors are plain Python objects, so copy.copy()
# gives a second object sharing their state and a SelectSelector pickles; rselectors refuses
# both with TypeError rather than hand out a copy that would not share the Rust state.
@pytest.mark.parametrize("name", ["SelectSelector", "PollSelector", "EpollSelector"])
def test_selectors_refuse_pickle_and_copy(rselectors, name):
    sel = getattr(rselectors, name)()
    try:
        with pytest.raises(TypeError, match="^cannot pickle "):
            copy.copy(sel)
        with pytest.raises(TypeError, match="^cannot pickle "):
            pickle.dumps(sel)
        with pytest.raises(TypeError, match="^cannot pickle "):
            copy.deepcopy(sel)
    finally:
        sel.close()


def test_references_released(differ):
    """Data/fileobj references are dropped on unregister, modify and close (no leaks, no
    gc.collect() needed: plain reference counting, as in the stdlib)."""
    class Obj:
        pass

    def scenario(side):
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            sel = side.selector()
            a, b = side.socketpair()
            d1, d2 = Obj(), Obj()
            r1, r2 = weakref.ref(d1), weakref.ref(d2)
            base1, base_a = sys.getrefcount(d1), sys.getrefcount(a)
            sel.register(a, R, d1)
            side.check("refs to data after register", sys.getrefcount(d1) - base1)
            side.check("refs to fileobj after register", sys.getrefcount(a) - base_a)
            sel.modify(a, R, d2)  # data-only: the old key (and its ref to d1) goes away
            side.check("refs to old data after data-only modify", sys.getrefcount(d1) - base1)
            for i in range(20):
                sel.modify(a, W if i % 2 else R, d2)
                rec_select(side, sel, "select %d" % i) if i == 0 else sel.select(0)
            sel.unregister(a)
            side.check("refs to fileobj after unregister", sys.getrefcount(a) - base_a)
            sel.register(a, R, d2)
            del d1
            side.check("d1 freed", r1() is None)
            sel.close()
            side.check("refs to fileobj after close", sys.getrefcount(a) - base_a)
            del d2
            side.check("d2 freed after close", r2() is None)
            d3 = Obj()
            r3 = weakref.ref(d3)
            sel2 = side.mod.SelectSelector() if side.kind == "Select" else side.cls()
            sel2.register(b, R, d3)
            del d3
            side.check("d3 alive while registered", r3() is not None)
            sel2.close()
            del sel2
            side.check("d3 freed after close+del", r3() is None)
        finally:
            if gc_was_enabled:
                gc.enable()

    differ(scenario)


def test_keys_from_selectors_hash_as_tuples(kind, rselectors, socketpair, closer):
    """Keys the selector builds itself (not through SelectorKey()) hash as the stdlib's do:
    3.14's tuples cache their hash in a field a bare allocation leaves at 0."""
    import selectors

    a, b = socketpair()
    sel = closer(selector_class(rselectors, kind)())
    keys = [sel.register(a, R, "data"), sel.modify(a, R | W, "other")]
    b.send(b"x")
    keys.append(sel.select(0)[0][0])
    for key in keys:
        twin = selectors.SelectorKey(*key)
        assert hash(key) == hash(twin) == hash(tuple(key))
        assert {key: 1}[twin] == 1 and twin in {key}
