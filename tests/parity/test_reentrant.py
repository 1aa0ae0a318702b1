"""Python code that runs inside a selector call and changes the selector under it: the same
steps on the stdlib and on rselectors, compared (issue 9, cases 2 to 7 and 10).

User code runs in the middle of `register`, `modify`, `select` and the mapping's lookups:
`fileno()`, the comparisons of `events` and `data` (`__ne__`), `events & EVENT_READ`
(`__and__`), `events & key.events` (`__rand__`), and the `__hash__`/`__lt__` of an fd given as an
int subclass. Whatever that code does (raise, unregister the fd, close the selector), the
outcome must be the stdlib's: it follows its order of operations exactly.
"""

import gc
import weakref

import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip

R, W, RW = 1, 2, 3


class Ev:
    """An `events` value that runs `action` on the `nth` call of operator `op`."""

    def __init__(self, value, op=None, nth=1, action=None):
        self.value = value
        self.op = op
        self.nth = nth
        self.action = action
        self.calls = []

    def _run(self, op):
        self.calls.append(op)
        if op == self.op and self.calls.count(op) == self.nth and self.action is not None:
            self.action()

    @staticmethod
    def _plain(other):
        return other.value if isinstance(other, Ev) else other

    def __ne__(self, other):
        self._run("ne")
        return self.value != self._plain(other)

    def __eq__(self, other):
        self._run("eq")
        return self.value == self._plain(other)

    def __and__(self, other):
        self._run("and")
        return self.value & self._plain(other)

    def __rand__(self, other):
        self._run("rand")
        return self._plain(other) & self.value

    def __bool__(self):
        return bool(self.value)

    __hash__ = object.__hash__

    def __repr__(self):
        return "<Ev %d>" % self.value


class Data:
    """`data` whose comparison runs `action` (once) and says it differs."""

    def __init__(self, name, action=None):
        self.name = name
        self.action = action

    def _run(self):
        action, self.action = self.action, None
        if action is not None:
            action()

    def __ne__(self, other):
        self._run()
        return self is not other

    def __eq__(self, other):
        self._run()
        return self is other

    __hash__ = object.__hash__

    def __repr__(self):
        return "<Data %s>" % self.name


def ready_fds(side, sel):
    """select(0) as the sorted labels of the reported fds and their masks."""
    out = []
    for key, mask in sel.select(0):
        out.append((side.fdish(key.fd), side.canon(mask)))
    return sorted(out, key=repr)


def map_len(sel):
    mapping = sel.get_map()
    return None if mapping is None else len(mapping)


# ---------------------------------------------------------------------------
# case 2: fileno() raising KeyError
# ---------------------------------------------------------------------------


class KeyErrorFileno:
    """fileno() returns `fd` until `broken` is set, then raises KeyError('boom')."""

    def __init__(self, fd):
        self.fd = fd
        self.broken = False

    def fileno(self):
        if self.broken:
            raise KeyError("boom")
        return self.fd

    def __repr__(self):
        return "<KeyErrorFileno>"


def test_fileno_raising_keyerror_is_not_registered(differ):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        f = side.label(KeyErrorFileno(a.fileno()), "f")
        side.rec("register", sel.register, f, R, "d")
        f.broken = True
        side.rec("get_key", sel.get_key, f)
        side.rec("map[f]", lambda: sel.get_map()[f])
        side.rec("f in map", lambda: f in sel.get_map())
        side.rec("map.get", lambda: sel.get_map().get(f, "default"))
        side.rec("modify", sel.modify, f, W)
        side.rec("unregister", sel.unregister, f)
        side.rec("len", map_len, sel)
        side.rec("register again", sel.register, f, R)

    differ(scenario)


# ---------------------------------------------------------------------------
# case 3: modify() whose data comparison unregisters the fd or closes the selector
# ---------------------------------------------------------------------------


def _unregister_through_weakref(sel, fileobj):
    """An action that frees an object whose weakref callback unregisters `fileobj`."""
    holder = {"obj": Data("victim")}
    holder["ref"] = weakref.ref(holder["obj"], lambda _ref: sel.unregister(fileobj))
    return lambda: holder.pop("obj")


def _unregister_through_gc_callback(sel, fileobj):
    """An action that runs a collection whose `gc.callbacks` entry unregisters `fileobj`."""

    def callback(phase, _info):
        if phase == "stop":
            gc.callbacks.remove(callback)
            sel.unregister(fileobj)

    def action():
        gc.callbacks.append(callback)
        gc.collect()

    return action


@pytest.mark.parametrize("how", ["unregister", "close", "weakref", "gc.callbacks"])
def test_modify_whose_data_comparison_changes_the_selector(differ, how):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        b.send(b"x")  # a is readable
        sel.register(a, R, Data("old"))
        action = {
            "unregister": lambda: sel.unregister(a),
            "close": sel.close,
            "weakref": _unregister_through_weakref(sel, a),
            "gc.callbacks": _unregister_through_gc_callback(sel, a),
        }[how]
        side.rec("modify", sel.modify, a, R, Data("new", action))
        side.rec("len", map_len, sel)
        side.rec("get_key data", lambda: sel.get_key(a).data)
        side.rec("select(0)", ready_fds, side, sel)

    differ(scenario)


# ---------------------------------------------------------------------------
# case 4: modify() whose events comparison or `&` unregisters or closes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["ne", "and"])
@pytest.mark.parametrize("what", ["unregister", "close"])
def test_modify_whose_events_change_the_selector(differ, op, what):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, R, "d")
        action = (lambda: sel.unregister(a)) if what == "unregister" else sel.close
        events = Ev(W, op, 1, action)
        side.rec("modify", sel.modify, a, events, "d")
        side.rec("len", map_len, sel)
        side.rec("register again", lambda: sel.register(a, R) and None)
        side.rec("len after", map_len, sel)

    differ(scenario)


# ---------------------------------------------------------------------------
# case 5: register() puts the key in before it computes `events & EVENT_READ/WRITE`
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("nth", [2, 3], ids=["EVENT_READ", "EVENT_WRITE"])
def test_register_key_is_visible_to_events_and(differ, nth):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        seen = []
        # The 1st `&` is the validity check `events & ~3`; then READ, then WRITE.
        events = Ev(RW, "and", nth, lambda: seen.append((map_len(sel), a in sel.get_map())))
        side.rec("register", lambda: sel.register(a, events, "d") and None)
        side.check("seen", seen)

    differ(scenario)


@pytest.mark.parametrize("nth", [2, 3], ids=["EVENT_READ", "EVENT_WRITE"])
def test_register_whose_events_and_raises_keeps_the_key(differ, nth):
    def fail():
        raise ZeroDivisionError("from __and__")

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        b.send(b"x")
        side.rec("register", sel.register, a, Ev(RW, "and", nth, fail), "d")
        side.rec("len", map_len, sel)
        side.rec("get_key data", lambda: sel.get_key(a).data)
        # SelectSelector added the fd to its readers before the failing WRITE step.
        side.rec("select(0)", lambda: [(side.fdish(k.fd), int(m)) for k, m in sel.select(0)])

    differ(scenario)


@pytest.mark.parametrize("nth", [2, 3], ids=["EVENT_READ", "EVENT_WRITE"])
def test_register_whose_events_and_closes_the_selector(differ, nth):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        b.send(b"x")
        side.rec("register", lambda: sel.register(a, Ev(R, "and", nth, sel.close), "d") and None)
        side.rec("get_map", sel.get_map)
        side.rec("select(0)", ready_fds, side, sel)

    differ(scenario)


# ---------------------------------------------------------------------------
# case 6: select() where `events & key.events` unregisters or closes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["unregister the others", "close"])
def test_select_whose_key_events_change_the_selector(differ, what):
    def scenario(side):
        sel = side.selector()
        socks = [side.socketpair("s%d" % i) for i in range(3)]

        def action():
            # Whichever fd is reported first removes the other two (kernel order differs
            # between mechanisms, so the outcome is counted, not named).
            if what == "close":
                sel.close()
                return
            for a, _ in socks:
                if sel.get_map() is not None and a in sel.get_map() and a is not first[0]:
                    sel.unregister(a)

        first = []
        for a, b in socks:
            b.send(b"x")
            ev = Ev(R, "rand", 1, None)
            sel.register(a, ev, "d")

        def run():
            for a, _ in socks:
                key = sel.get_key(a)

                def act(a=a):
                    first.append(a)
                    action()

                key.events.action = act
            ready = sel.select(0)
            return len(ready), [k.fileobj is first[0] for k, _ in ready]

        side.rec("select(0)", run)
        side.rec("len", map_len, sel)

    differ(scenario)


# ---------------------------------------------------------------------------
# case 7: fds given as int subclasses
# ---------------------------------------------------------------------------


class HashRaises(int):
    exc = TypeError

    def __hash__(self):
        raise self.exc("no hash for you")


class HashRaisesKeyError(HashRaises):
    exc = KeyError


class AlwaysNegative(int):
    def __lt__(self, other):
        return True


class CountingInt(int):
    """Records each `__hash__`, `__eq__` and `__lt__` call; `__eq__` answers `equal`."""

    calls = []
    equal = True

    def __hash__(self):
        CountingInt.calls.append("hash")
        return int.__hash__(self)

    def __eq__(self, other):
        CountingInt.calls.append("eq")
        return CountingInt.equal and int(self) == int(other)

    def __lt__(self, other):
        CountingInt.calls.append("lt")
        return int(self) < other


@pytest.mark.parametrize("cls", [HashRaises, HashRaisesKeyError])
def test_int_subclass_fd_whose_hash_raises(differ, cls):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        fd = cls(a.fileno())
        side.rec("register", sel.register, fd, R)
        side.rec("len", map_len, sel)
        sel.register(a, R)
        for name in ("get_key", "unregister"):
            side.rec(name, getattr(sel, name), fd)
        side.rec("modify", sel.modify, fd, W)
        side.rec("map[fd]", lambda: sel.get_map()[fd])
        side.rec("fd in map", lambda: fd in sel.get_map())
        side.rec("len after", map_len, sel)

    differ(scenario)


def test_int_subclass_fd_whose_lt_says_negative(differ):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        fd = AlwaysNegative(a.fileno())
        try:
            sel.register(fd, R)
            side.check("register", "ok")
        except ValueError as exc:
            side.check("register", (type(exc).__name__, str(exc) == "Invalid file descriptor: %d" % fd))
        side.rec("len", map_len, sel)

    differ(scenario)


@pytest.mark.parametrize("equal", [True, False], ids=["eq-true", "eq-false"])
def test_int_subclass_fd_calls_its_own_hash_eq_and_lt(differ, equal):
    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        b.send(b"x")
        fd = CountingInt(a.fileno())
        CountingInt.equal = True

        def calls(step, fn, *args):
            CountingInt.calls.clear()
            side.rec(step, lambda: fn(*args) and None)
            side.check(step + " calls", list(CountingInt.calls))

        calls("register", sel.register, fd, R, "d")
        CountingInt.equal = equal
        calls("get_key same", sel.get_key, fd)
        calls("get_key other", sel.get_key, CountingInt(a.fileno()))
        calls("get_key plain", sel.get_key, a.fileno())
        calls("get_key socket", sel.get_key, a)
        calls("in map", lambda: a in sel.get_map())
        calls("modify data", sel.modify, fd, R, "e")
        calls("select(0)", lambda: [(side.fdish(k.fd), m) for k, m in sel.select(0)])
        calls("unregister other", sel.unregister, CountingInt(a.fileno()))
        calls("unregister", sel.unregister, fd)
        CountingInt.equal = True

    differ(scenario)


# ---------------------------------------------------------------------------
# case 10: fds of 2**31 and above: the stdlib's precedence between errors
# ---------------------------------------------------------------------------


# (2**64 and above: a known difference for SelectSelector, see README and test_selector_methods.)
@pytest.mark.parametrize("fd", [2**31, 2**63 - 1, 2**63])
def test_huge_fd_on_a_closed_selector(differ, fd):
    def scenario(side):
        with side.selector() as sel:
            pass
        side.rec("register", sel.register, fd, R)
        side.rec("modify", sel.modify, fd, R)
        side.rec("unregister", sel.unregister, fd)

    differ(scenario)


@pytest.mark.parametrize("order", [(2**31, 10**6), (10**6, 2**31), (2**63, 10**6), (10**6, 2**63), (2**31, 2**40)])
@pytest.mark.parametrize("events", [R, W, RW])
def test_select_with_fds_select_cannot_take(differential, order, events):
    def scenario(side):
        sel = side.selector()
        for fd in order:
            side.rec("register %d" % fd, lambda fd=fd: sel.register(fd, events) and None)
        side.rec("select(0)", sel.select, 0)
        side.rec("select(0.001)", sel.select, 0.001)

    differential(scenario, "Select")
