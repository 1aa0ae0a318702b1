"""The differences a differential fuzz run found (issue 20: an independent run, and
tests/parity/diff_fuzz.py), each kept fixed by the same steps on selectors.X and rselectors.X.

Most are about what user code sees: the arguments a replaced `_select` or `_selector_cls`
gets, the order SelectSelector walks ready fds in, and what a selector does when an `events`,
`data` or int-subclass fd object changes it from inside a call.
"""

import os
import warnings
from fractions import Fraction

import pytest

import rselectors  # noqa: F401  - must be importable: no fallback, no skip
from support.kinds import stdlib_for
from test_reentrant import Ev, map_len, ready_fds

R, W, RW = 1, 2, 3


def fd_at(side, number, name):
    """A socket's fd dup'ed onto `number` (free, below FD_SETSIZE): its number fixes its
    place in a set, so both runs see the same set order."""
    a, b = side.socketpair(name)
    os.dup2(a.fileno(), number)
    side.label_fd(number, name + "@")
    side.defer(side.close_fd, number)
    return number, b


class Hashed(int):
    """An fd whose `__hash__` calls are counted."""

    calls = []

    def __hash__(self):
        Hashed.calls.append("hash")
        return int.__hash__(self)


class ClosesOnNe:
    """`data` whose `!=` (modify()'s comparison with the key's) closes the selector."""

    def __init__(self, sel):
        self.sel = sel

    def __ne__(self, other):
        self.sel.close()
        return True

    def __repr__(self):
        return "<ClosesOnNe>"


class Recorder:
    """The calls user code receives, in order."""

    def __init__(self, side):
        self.side = side
        self.calls = []

    def add(self, *call):
        self.calls.append(tuple(self.side.canon(x) for x in call))


# ---------------------------------------------------------------------------
# SelectSelector's sets
# ---------------------------------------------------------------------------


def test_select_after_close_still_holds_its_earlier_fds(differential):
    """close() empties the map, not `_readers`: select() still converts 10**6 first."""

    def scenario(side):
        sel = side.selector()
        side.rec("register 10**6", lambda: sel.register(10**6, R) and None)
        sel.close()
        r, w = side.pipe()
        side.close_fd(r)
        side.close_fd(w)
        side.rec("register a closed pipe", lambda: sel.register(r, R) and None)
        side.rec("select(0)", sel.select, 0)

    differential(scenario, "Select")


@pytest.mark.parametrize("timeout", [None, 0.0001234, 2, 0, True, -1, -0.5, float("inf"),
                                     10**10, Fraction(1, 3), "x"], ids=repr)
def test_replaced_select_gets_the_callers_timeout(differential, timeout):
    """`_select` gets `max(timeout, 0)` unrounded, with the sets themselves."""

    def scenario(side):
        rec = Recorder(side)

        class Sub(side.cls):
            def _select(self, r, w, x, t=None):
                rec.add(type(r).__name__, sorted(r), type(w).__name__, sorted(w), x, t)
                return [], list(w), []

        sel = Sub()
        side.defer(sel.close)
        a, b = side.socketpair()
        sel.register(a, RW, "d")
        side.rec("select", sel.select, timeout)
        side.check("_select calls", rec.calls)

    differential(scenario, "Select")


def test_select_replaced_on_the_instance(differential):
    """`_select` set on the instance is used from the next select() on, deleted it is the
    class's again."""

    def scenario(side):
        rec = Recorder(side)
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, W, "d")

        def recording(r, w, x, t=None):
            rec.add("instance", sorted(r), sorted(w), t)
            return [], list(w), []

        side.rec("native", lambda: [side.fdish(k.fd) for k, _ in sel.select(0)])
        sel._select = recording
        side.rec("replaced", lambda: [side.fdish(k.fd) for k, _ in sel.select(0.5)])
        del sel._select
        side.rec("deleted", lambda: [side.fdish(k.fd) for k, _ in sel.select(0)])
        side.check("calls", rec.calls)

    differential(scenario, "Select")


def test_known_difference_select_replaced_on_the_class_later(module, socketpair):
    a, b = socketpair()
    calls = []

    class Sub(module.SelectSelector):
        pass

    sel = Sub()
    try:
        sel.register(a, W)
        Sub._select = lambda self, r, w, x, t=None: calls.append(t) or ([], [], [])
        ready = sel.select(0)
        # The stdlib looks `_select` up at each select(); rselectors read it when `sel` was
        # made (README, Known differences).
        if module.__name__ == "selectors":
            assert (calls, ready) == ([0], [])
        else:
            assert calls == [] and [k.fileobj for k, _ in ready] == [a]
    finally:
        sel.close()


@pytest.mark.parametrize("kind", ["Poll", "Epoll"])
@pytest.mark.parametrize("timeout", [None, 0, -1, 0.0001234, 2, True, Fraction(1, 3),
                                     float("inf"), 10**10], ids=repr)
def test_replaced_selector_cls_gets_the_stdlibs_timeout(differential, kind, timeout):
    """A replaced `_selector_cls`'s poll() gets `math.ceil(timeout * 1e3)` (times 1e-3 for
    epoll), 0 (an int) for a timeout <= 0, None (-1 for epoll) for None."""

    def scenario(side):
        rec = Recorder(side)

        class Poller:
            def register(self, fd, events):
                rec.add("register", fd, events)

            def poll(self, *args):
                rec.add("poll", *args)
                return []

        cls = type("Sub", (side.cls,), {"_selector_cls": Poller})
        sel = cls()
        a, b = side.socketpair()
        sel.register(a, R)
        side.rec("select", sel.select, timeout)
        side.check("poller calls", rec.calls)

    differential(scenario, kind)


def test_select_walks_ready_fds_in_its_sets_order(differential):
    """604 and 609 sit in a set in the order 609, 604: `events & key.events` of 604's key
    unregistering 609 comes too late to drop it."""

    def scenario(side):
        sel = side.selector()
        first, _ = fd_at(side, 604, "p")
        second, _ = fd_at(side, 609, "q")
        sel.register(first, W, "first")
        sel.register(second, W, "second")
        side.rec("order", lambda: [(side.fdish(k.fd), m) for k, m in sel.select(0)])
        sel.modify(first, Ev(W, "rand", 1, lambda: sel.unregister(second)), "first")
        side.rec("one unregisters the other", lambda: [side.fdish(k.fd) for k, _ in sel.select(0)])
        side.rec("len", map_len, sel)

    differential(scenario, "Select")


def test_select_reports_an_fd_given_a_key_while_the_ready_list_is_built(differential):
    """After close(), `_writers` still holds 604 without a key. 609 is walked first; its
    key's `events & key.events` registers 604 again, and the stdlib, which looks 604 up only
    when it reaches it, reports it (with 0 events: WRITE & READ). Found by diff_fuzz.py."""

    def scenario(side):
        sel = side.selector()
        keyed, _ = fd_at(side, 609, "p")
        later, _ = fd_at(side, 604, "q")
        sel.register(later, W, "later")
        sel.close()
        events = Ev(W, "rand", 1, lambda: sel.register(later, R, "again"))
        sel.register(keyed, events, "keyed")
        side.rec("select(0)", lambda: [(side.fdish(k.fd), k.data, m) for k, m in sel.select(0)])

    differential(scenario, "Select")


def test_select_register_whose_write_and_modifies_keeps_only_the_writer(differential):
    """register(r, RW) adds r to `_readers`; the `&` that asks for EVENT_WRITE modifies r to
    EVENT_WRITE (unregister: out of both sets; register: into `_writers`), then register adds
    r to `_writers` only. A pipe's read end, readable and never writable, is then not ready.
    Found by diff_fuzz.py."""

    def scenario(side):
        sel = side.selector()
        r, w = side.pipe()
        events = Ev(RW, "and", 3, lambda: sel.modify(r, W, "modified"))
        side.rec("register", lambda: sel.register(r, events, "d") and None)
        os.write(w, b"x")
        side.rec("select(0)", lambda: [(side.fdish(k.fd), k.data, m) for k, m in sel.select(0)])
        side.rec("map", lambda: sorted((side.fdish(k.fd), k.events) for k in sel.get_map().values()))

    differential(scenario, "Select")


def test_select_register_shows_the_reader_to_the_writers_and(differ):
    """SelectSelector adds to `_readers` before computing `events & EVENT_WRITE`: a select(0)
    run by that `&` already reports the fd (the other classes register afterwards)."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        b.send(b"x")
        seen = []
        events = Ev(RW, "and", 3, lambda: seen.append(ready_fds(side, sel)))
        side.rec("register", lambda: sel.register(a, events, "d") and None)
        side.check("select(0) inside", seen)

    differ(scenario)


def test_select_int_subclass_fds_are_hashed_by_its_sets(differential):
    """select() makes sets of the ready fds and looks each up: an int subclass's `__hash__`
    runs each time, also after close() (the sets keep their fds)."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        c, d = side.socketpair("t")
        fd = Hashed(a.fileno())
        Hashed.calls.clear()
        sel.register(fd, W)
        sel.register(c, W)
        side.check("register", list(Hashed.calls))
        Hashed.calls.clear()
        side.rec("select(0)", lambda: sorted(side.fdish(k.fd) for k, _ in sel.select(0)))
        side.check("select(0) hashes", list(Hashed.calls))
        sel.close()
        Hashed.calls.clear()
        side.rec("select(0) closed", sel.select, 0)
        side.check("select(0) closed hashes", list(Hashed.calls))

    differential(scenario, "Select")


def test_select_discard_that_raises_keeps_the_fd_watched(differential):
    """After close(), `_readers` still holds an int subclass whose `__eq__` raises: a plain fd
    of that number cannot be added (register raises), nor discarded (unregister raises), and
    the old one is still watched."""

    class EqRaises(int):
        def __eq__(self, other):
            raise ArithmeticError("no ==")

        __hash__ = int.__hash__

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(EqRaises(a.fileno()), R)
        sel.close()
        side.rec("register plain", lambda: sel.register(a.fileno(), RW) and None)
        side.rec("unregister plain", lambda: sel.unregister(a.fileno()) and None)
        b.send(b"x")
        side.rec("select(0)", sel.select, 0)

    differential(scenario, "Select")


@pytest.mark.parametrize("timeout", [1e-9, 1e-6, 0.0001])
def test_tiny_wait_on_an_fd_closed_while_registered(differ, timeout):
    """A wait shorter than its own preparation still makes the stdlib's system call:
    select() refuses the closed fd (EBADF), poll() reports it (POLLNVAL), epoll forgot it."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(b.fileno(), R, "d")
        side.close_fd(b.detach())
        side.rec("select", lambda: [(side.fdish(k.fd), m) for k, m in sel.select(timeout)])

    differ(scenario)


@pytest.mark.parametrize("kind", ["Poll", "Epoll"])
def test_replaced_poller_warns_for_a_bool_fd_itself(differential, kind):
    """A replaced `_selector_cls` is handed the bool: the select module's poller it wraps
    warns (3.13), not the selector as well."""
    import select
    import warnings

    def scenario(side):
        real = select.poll if kind == "Poll" else select.epoll
        cls = type("Sub", (side.cls,), {"_selector_cls": real})
        sel = cls()
        side.defer(sel.close)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            side.rec("register", lambda: sel.register(True, W) and None)
            side.rec("unregister", lambda: sel.unregister(True) and None)
        side.check("warnings", [str(w.message) for w in caught])

    differential(scenario, kind)


def test_replaced_select_lookup_swallows_a_keyerror_of_eq(differential):
    """Before 3.13 `_key_from_fd` answers None for a KeyError its lookup raises, the
    comparison of a stored int subclass included (3.13's `_fd_to_key.get` lets it through)."""

    def scenario(side):
        class Sub(side.cls):
            def _select(self, r, w, x, t=None):
                return [], list(w), []

        sel = Sub()
        side.defer(sel.close)
        a, b = side.socketpair()
        sel.register(a.fileno(), W)
        sel.close()  # the sets keep the plain fd; the map now gets the subclass
        sel.register(CloseOnEq(a.fileno()), W)

        def fail():
            raise KeyError("from __eq__")

        CloseOnEq.action = fail
        side.rec("select(0)", lambda: [side.fdish(k.fd) for k, _ in sel.select(0)])
        CloseOnEq.action = None

    differential(scenario, "Select")


# ---------------------------------------------------------------------------
# user code changing the selector from inside a call
# ---------------------------------------------------------------------------


def test_register_whose_events_and_unregisters_the_fd(differ):
    """Between the key and the OS registration: poll's unregister() raises KeyError(fd) (poll
    does not hold the fd yet); epoll's ENOENT is swallowed."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        inner = []

        def unregister():
            try:
                inner.append(("ok", side.canon(sel.unregister(a))))
            except Exception as exc:  # noqa: BLE001
                inner.append(side.canon_exc(exc))

        side.rec("register", lambda: sel.register(a, Ev(RW, "and", 2, unregister), "d") and None)
        side.check("the unregister inside", inner)
        side.rec("len", map_len, sel)
        side.rec("select(0)", ready_fds, side, sel)

    differ(scenario)


class CloseOnEq(int):
    """An fd whose `__eq__` runs `action` once (the dict compares it on a lookup)."""

    action = None

    def __eq__(self, other):
        action, CloseOnEq.action = CloseOnEq.action, None
        if action is not None:
            action()
        return int.__eq__(self, other)

    __hash__ = int.__hash__


@pytest.mark.parametrize("call", ["get_key", "modify", "unregister", "map[]", "register"])
def test_int_subclass_fd_whose_eq_closes_the_selector_during_a_lookup(differ, call):
    """The dict looks again after a comparison that changed it: nothing is registered any
    more, and select() reports nothing after close()."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        b.send(b"x")
        fd = CloseOnEq(a.fileno())
        if call == "register":
            sel.register(fd, R, "d")
            CloseOnEq.action = sel.close
            side.rec(call, lambda: sel.register(a.fileno(), R) and None)
        else:
            sel.register(a.fileno(), R, "d")
            CloseOnEq.action = sel.close
            do = {"get_key": lambda: sel.get_key(fd),
                  "modify": lambda: sel.modify(fd, RW, "e"),
                  "unregister": lambda: sel.unregister(fd),
                  "map[]": lambda: sel.get_map()[fd]}[call]
            side.rec(call, do)
        CloseOnEq.action = None
        side.rec("get_map", sel.get_map)
        side.rec("select(0)", lambda: [side.fdish(k.fd) for k, _ in sel.select(0)])

    differ(scenario)


def test_int_subclass_fd_whose_eq_unregisters_it_while_the_os_reports_it(differ):
    """select()'s lookup of a ready fd compares the stored int subclass; its `__eq__`
    modifies the key: the key reported is the one read after the comparison."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        fd = CloseOnEq(a.fileno())
        sel.register(fd, RW, "before")
        CloseOnEq.action = lambda: sel.modify(a.fileno(), R, "after")
        side.rec("select(0)", lambda: [(side.canon(k), m) for k, m in sel.select(0)])
        CloseOnEq.action = None

    differ(scenario)


def test_plain_fd_register_compares_the_stored_int_subclass(differ):
    """`key.fd in self._fd_to_key` compares the stored int subclass with the plain fd: its
    `__eq__` raising, or unregistering it, is seen."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()

        def fail():
            raise ArithmeticError("no ==")

        sel.register(CloseOnEq(a.fileno()), R)
        CloseOnEq.action = fail
        side.rec("register, == raising", lambda: sel.register(a.fileno(), W) and None)
        CloseOnEq.action = lambda: sel.unregister(a)
        side.rec("register, == unregistering", lambda: sel.register(a.fileno(), W) and None)
        side.rec("map", lambda: [(side.fdish(fd), side.canon(k)) for fd, k in sel.get_map().items()])
        CloseOnEq.action = None

    differ(scenario)


@pytest.mark.parametrize("call", ["modify", "unregister"])
def test_int_subclass_lookup_eq_raising_keyerror_is_not_registered(differ, call):
    """An `__eq__` raising KeyError inside the `try` of modify() and unregister() becomes
    their "is not registered" KeyError."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a.fileno(), R, "d")

        def fail():
            raise KeyError("from __eq__")

        CloseOnEq.action = fail
        fd = CloseOnEq(a.fileno())
        do = sel.modify if call == "modify" else sel.unregister
        side.rec(call, lambda: do(fd, W) if call == "modify" else do(fd))
        CloseOnEq.action = None
        side.rec("len", map_len, sel)

    differ(scenario)


def test_modify_of_a_stored_int_subclass_hashes_it_again(differ):
    """`self._fd_to_key[key.fd] = key` hashes the stored fd object: for an int subclass that
    is a call of its `__hash__` (poll and epoll's modify had skipped it)."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        fd = Hashed(a.fileno())
        sel.register(fd, R)
        Hashed.calls.clear()
        side.rec("modify", lambda: sel.modify(fd, W) and None)
        side.check("hashes", list(Hashed.calls))

    differ(scenario)


@pytest.mark.parametrize("kind", ["Poll", "Epoll"])
def test_register_refused_by_the_os_undoes_while_handling_its_error(differential, kind):
    """The stdlib takes the key back inside `except:`: an exception `fileno()` raises there has
    the OS's error as its `__context__`."""

    class Fileno:
        def __init__(self):
            self.calls = 0
            self.context = "not raised"

        def fileno(self):
            self.calls += 1
            if self.calls == 1:
                return 2**31
            try:
                raise KeyError("second fileno()")
            except KeyError as exc:
                self.context = type(exc.__context__).__name__
                raise

        def __repr__(self):
            return "<Fileno>"

    def scenario(side):
        sel = side.selector()
        f = side.label(Fileno(), "f")
        side.rec("register", sel.register, f, R)
        side.check("context seen by fileno()", f.context)
        side.rec("len", map_len, sel)

    differential(scenario, kind)


@pytest.mark.parametrize("kind", ["Poll", "Epoll"])
def test_register_of_2_64_computes_the_events_first(differential, kind):
    """The stdlib computes `events & EVENT_READ/WRITE` and calls its poller before the number
    is refused (the key itself is never held here: README, Known differences)."""

    def scenario(side):
        rec = Recorder(side)

        class Poller:
            def register(self, fd, events):
                rec.add("register", fd, events)
                raise OverflowError("from the poller")

        sel = type("Sub", (side.cls,), {"_selector_cls": Poller})()
        events = Ev(RW)
        side.rec("register", sel.register, 2**64, events)
        side.check("calls", events.calls + rec.calls)
        side.rec("plain", lambda: side.selector().register(2**64, R))

    differential(scenario, kind)


def test_unregister_of_a_key_stored_after_close(differential):
    """modify()'s `data` comparison closes the selector; the stdlib then stores the new key
    anyway: unregistering it reaches the closed epoll (ValueError)."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(a, R, "old")

        side.rec("modify", lambda: sel.modify(a, R, ClosesOnNe(sel)) and None)
        side.rec("unregister", lambda: sel.unregister(a) and None)

    differential(scenario, "Epoll")


def test_key_from_fd_swallows_a_keyerror_of_eq(differ):
    """Before 3.13, select()'s `_key_from_fd` answers None when the lookup raises KeyError
    (an int subclass's `__eq__`); from 3.13, `_fd_to_key.get` lets it through."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        sel.register(CloseOnEq(a.fileno()), W, "d")

        def fail():
            raise KeyError("from __eq__")

        CloseOnEq.action = fail
        side.rec("select(0)", lambda: [side.fdish(k.fd) for k, _ in sel.select(0)])
        CloseOnEq.action = None

    differ(scenario)


# ---------------------------------------------------------------------------
# known differences (README), which the fuzzer steers around: each side's own behaviour
# ---------------------------------------------------------------------------


class RegistersOnSecondHash(int):
    """An fd whose second `__hash__` (register()'s dict store) registers its number, plain."""

    selector = None

    def __hash__(self):
        self.hashes = getattr(self, "hashes", 0) + 1
        if self.hashes == 2:
            self.selector.register(int(self), R, "plain")
        return int.__hash__(self)


@pytest.mark.parametrize("kind", ["Select", "Poll", "Epoll"])
def test_known_difference_a_registration_made_while_register_stores(module, kind, socketpair):
    a, b = socketpair()
    sel = getattr(module, kind + "Selector")()
    fd = RegistersOnSecondHash(a.fileno())
    fd.selector = sel
    try:
        if module.__name__ == "selectors" and kind == "Epoll":
            # The store replaced the plain fd's key; then epoll refuses the fd it already has,
            # and the key goes.
            with pytest.raises(FileExistsError):
                sel.register(fd, W, "subclass")
            assert len(sel.get_map()) == 0
        elif module.__name__ == "selectors":
            # The store finds the plain fd the hash registered and replaces its value, under
            # the plain int it holds as the key.
            key = sel.register(fd, W, "subclass")
            assert key.fd is fd and sel.get_key(a) is key
            assert [type(f) for f in sel.get_map()] == [int]
        else:
            with pytest.raises(KeyError, match="is already registered"):
                sel.register(fd, W, "subclass")
            assert sel.get_key(a).data == "plain"
    finally:
        sel.close()


@pytest.mark.parametrize("kind", ["Select", "Poll", "Epoll"])
@pytest.mark.parametrize("stored_as", ["subclass", "plain"])
def test_known_difference_a_registration_made_while_modify_stores(module, kind, stored_as,
                                                                  socketpair):
    """modify()'s data comparison registers the fd again, under the other object (a plain
    int for a key held under an int subclass, or the reverse)."""
    a, b = socketpair()
    sel = getattr(module, kind + "Selector")()
    Fd = type("Fd", (int,), {})
    key_fd, again = (Fd(a.fileno()), a.fileno()) if stored_as == "subclass" else \
        (a.fileno(), Fd(a.fileno()))
    sel.register(key_fd, R, "old")

    class ReRegisters:
        def __ne__(self, other):
            sel.unregister(a)
            sel.register(again, R, "again")
            return True

    try:
        key = sel.modify(key_fd, R, ReRegisters())
        assert sel.get_key(a) is key
        # The stdlib's dict keeps the object the data comparison registered as its key;
        # rselectors keys the fd by the modified key's own object.
        held = again if module.__name__ == "selectors" else key_fd
        assert [type(f) for f in sel.get_map()] == [type(held)]
    finally:
        sel.close()


@pytest.mark.parametrize("kind", ["Poll", "Epoll"])
def test_known_difference_2_64_is_never_held(module, kind):
    sel = getattr(module, kind + "Selector")()
    seen = []

    def look():
        seen.append(len(sel.get_map()))

    try:
        with pytest.raises(OverflowError):
            sel.register(2**64, Ev(R, "and", 2, look))
        with pytest.raises(ZeroDivisionError):
            sel.register(2**64, Ev(R, "and", 2, lambda: 1 / 0))
        held = len(sel.get_map())
    finally:
        sel.close()
    # The stdlib's map holds the key while `events & EVENT_READ` runs, and keeps it when that
    # raises; rselectors holds no fd of 2**64 or more.
    assert (seen, held) == (([1], 1) if module.__name__ == "selectors" else ([0], 0))


# ---------------------------------------------------------------------------
# KqueueSelector (a libkqueue build, against tests/support/kqueue_reference.py; skipped elsewhere)
# ---------------------------------------------------------------------------


class IndexTimeout:
    """A timeout whose `<` and `__index__` are recorded; `__index__` gives `value`."""

    def __init__(self, value, calls):
        self.value = value
        self.calls = calls

    def __lt__(self, other):
        self.calls.append("lt")
        return False

    def __gt__(self, other):
        self.calls.append("gt")
        return True

    def __index__(self):
        self.calls.append("index")
        return self.value


@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
def test_kqueue_timeout_refused_or_closed(differential, closed):
    """kqueue.control() reports a closed kqueue before it converts the timeout, and names
    the timeout's own type when it cannot take it."""

    def scenario(side):
        sel = side.selector()
        if closed:
            sel.close()
        calls = []
        t = IndexTimeout(10**10, calls)
        side.rec("select", sel.select, t)
        side.check("calls", calls)

    differential(scenario, "Kqueue")


@pytest.mark.parametrize("events", [R, W, RW])
def test_kqueue_unregister_of_a_key_stored_after_close(differential, events):
    """The filters are removed one at a time, each after its `key.events & ...`: a closed
    kqueue refuses the first one there is."""

    def scenario(side):
        sel = side.selector()
        a, b = side.socketpair()
        ev = Ev(events)
        sel.register(a, ev, "old")

        side.rec("modify", lambda: sel.modify(a, ev, ClosesOnNe(sel)) and None)
        ev.calls.clear()
        side.rec("unregister", lambda: sel.unregister(a) and None)
        side.check("calls", ev.calls)

    differential(scenario, "Kqueue")


def test_known_difference_kqueue_filter_count(module, socketpair):
    """The stdlib's KqueueSelector counts the filters it asked for in `_max_events`: one
    added per filter register() adds, one taken per bit of `key.events` in unregister(). A
    key whose registration failed but was not taken back (its `fileno()` raising in the
    undo) leaves it two below: negative, and every select() raises. rselectors counts the
    filters the kqueue holds (README, Known differences)."""
    if module.__name__ == "selectors":
        module = stdlib_for("Kqueue")
    elif not hasattr(module, "KqueueSelector"):
        pytest.skip("this build has no KqueueSelector (a libkqueue build or a BSD has)")
    sel = module.KqueueSelector()
    a, b = socketpair()
    closed_number = b.fileno()
    b.close()

    class Fileno:
        calls = 0

        def fileno(self):
            Fileno.calls += 1
            if Fileno.calls > 1:
                raise KeyError("gone")
            return closed_number

    try:
        with pytest.raises(KeyError):
            sel.register(Fileno(), RW)
        sel.unregister(closed_number)
        if module.__name__ == "rselectors":
            assert sel.select(0) == []
        else:
            with pytest.raises(ValueError, match="Length of eventlist must be 0 or positive"):
                sel.select(0)
    finally:
        sel.close()


# ---------------------------------------------------------------------------
# bool fds (3.13+: the select module warns "bool is used as a file descriptor" at each
# conversion; before 3.13 both modules warn nothing, and these compare that)
# ---------------------------------------------------------------------------


def warned(side, fn, *args):
    """fn(*args) with every warning recorded: (its canonical outcome, the warnings' texts)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = ("ok", side.canon(fn(*args)))
        except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
            out = side.canon_exc(exc)
    return out, [str(w.message) for w in caught]


@pytest.mark.parametrize("also", ["nothing", "an fd beyond FD_SETSIZE"])
def test_select_warns_for_each_bool_in_its_sets(differential, also):
    """select.select() converts `_readers`, then `_writers`: a bool registered for both
    warns twice; an fd it refuses stops the conversion (and the warnings) where it stands."""

    def scenario(side):
        sel = side.selector()
        side.rec("register True", lambda: warned(side, sel.register, True, RW))
        if also != "nothing":
            a, b = side.socketpair()
            os.dup2(a.fileno(), 1025)
            side.label_fd(1025, "beyond")
            side.defer(side.close_fd, 1025)
            side.rec("register 1025", lambda: warned(side, sel.register, 1025, RW))
        side.rec("select(0)", lambda: warned(
            side, lambda: [(side.fdish(k.fd), m) for k, m in sel.select(0)]))

    differential(scenario, "Select")


@pytest.mark.parametrize("kind", ["Poll", "Epoll"])
def test_bool_fd_with_a_replaced_poller_warns_only_through_it(differential, kind):
    """With `_selector_cls` replaced, the fd goes to the replacement, which warns or not as
    it likes: the selector itself converts nothing."""

    def scenario(side):
        rec = Recorder(side)

        class Poller:
            def register(self, fd, events):
                rec.add("register", fd, events)

            def modify(self, fd, events):
                rec.add("modify", fd, events)

            def unregister(self, fd):
                rec.add("unregister", fd)

            def poll(self, *args):
                return []

        sel = type("Sub", (side.cls,), {"_selector_cls": Poller})()
        side.defer(sel.close)
        side.rec("register", lambda: warned(side, sel.register, True, R))
        side.rec("modify", lambda: warned(side, sel.modify, True, RW))
        side.rec("unregister", lambda: warned(side, sel.unregister, True))
        side.check("poller calls", rec.calls)

    differential(scenario, kind)
