"""Shared fixtures for the rselectors differential test-suite.

The central piece is the ``differ`` fixture: a test writes a *scenario*, a
function taking a :class:`Side`, and ``differ(scenario)`` runs it twice, once
against the stdlib ``selectors`` module and once against ``rselectors``, each
time with freshly created resources (socket pairs, pipes, files, selectors),
then asserts that both runs recorded exactly the same observations.

Observations are recorded with ``side.rec(step, fn, *args)`` (the outcome of a
call: ``("ok", value)`` or ``("raise", exc_type, str(exc))``) and
``side.check(step, value)``.  Values are *canonicalised* before comparison so
that the two runs can be compared although they use different objects:

* objects created through the side (sockets, files, data sentinels, ...) are
  replaced by their label, so identity matters: a copy of a data object does
  not compare equal to the original;
* file descriptor numbers of those resources are replaced by labels when they
  appear as ``SelectorKey.fileobj``/``SelectorKey.fd`` or in error messages
  (``(FD 5)``, ``fd=5``, ``5 is not registered``);
* scalars keep their exact type (``True`` vs ``1`` vs ``1.0`` differ);
* ``SelectorKey`` instances become ``("SelectorKey", fileobj, fd, events, data)``;
* exceptions become ``("raise", type, str(exc), chain)`` where chain lists the
  ``__cause__``/``__context__`` exceptions a traceback would show.

rselectors is imported lazily inside fixtures so that this conftest never
breaks collection of other test files; a missing rselectors makes every test
using these fixtures *error* (never skip).
"""

import os
import re
import socket
import sys
import tempfile
import time

import pytest

# The reference runs of the stdlib in child processes must stay the stdlib even for a user
# who has RSELECTORS_INSTALL=1 set (python/rselectors_install.pth honours it).
os.environ.pop("RSELECTORS_INSTALL", None)

# Tests the default run leaves out, each kind with the variable that lets it in; .ci/run sets
# them, each in a stage of its own. marker -> (variable, skip reason).
OPT_IN = {
    "slow": ("RSELECTORS_SLOW",
             "soak-type test: runs with RSELECTORS_SLOW=1 (.ci/run's slow stage does)"),
    "consumer_suite": ("RSELECTORS_CONSUMER_SUITES",
                       "a consumer's own test suite, run on both modules (tens of seconds): "
                       "runs with RSELECTORS_CONSUMER_SUITES=1 (.ci/run's consumer-suites "
                       "stage does)"),
}


def _opted_in(variable):
    return os.environ.get(variable, "") not in ("", "0")


def pytest_collection_modifyitems(config, items):
    """Soak-type tests (@pytest.mark.slow) and consumers' own suites
    (@pytest.mark.consumer_suite) run only when their variable is set: `python -m pytest` on
    one interpreter stays at a few minutes, and .ci/run runs them in stages of their own.
    On Windows, tests marked @pytest.mark.posix_only("what") skip, saying what they need."""
    if sys.platform == "win32":
        for item in items:
            mark = item.get_closest_marker("posix_only")
            if mark is not None:
                item.add_marker(pytest.mark.skip(reason="POSIX only: " + mark.args[0]))
    for marker, (variable, reason) in OPT_IN.items():
        if _opted_in(variable):
            continue
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if item.get_closest_marker(marker) is not None:
                item.add_marker(skip)


# Registers the Hypothesis profiles ("reliability-ci", "long"): --hypothesis-profile=long works.
import reliability_support  # noqa: E402,F401

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


def _on_libkqueue():
    try:
        import rselectors
    except ImportError:
        return False
    return getattr(rselectors._rselectors, "_ON_LIBKQUEUE", False)


def stdlib_for(kind):
    """The stdlib module to compare `kind` with: the running interpreter's selectors or, for
    Kqueue on a libkqueue build, its Lib/selectors.py run on a select.kqueue over libkqueue
    (tests/kqueue_reference.py). A kind with neither skips the test, saying why."""
    stdlib = _stdlib()
    if kind in STDLIB_KINDS:
        return stdlib
    if kind == "Kqueue" and _on_libkqueue():
        import kqueue_reference

        return kqueue_reference.stdlib_selectors()
    pytest.skip(NO_STDLIB_REFERENCE % kind)


def selector_class(module, kind):
    """`module.<kind>Selector`; for the stdlib's class, that of `stdlib_for(kind)`."""
    if module.__name__ == "selectors" and kind not in STDLIB_KINDS:
        module = stdlib_for(kind)
    return getattr(module, kind + "Selector")


LIBKQUEUE_STALE_FD_REUSE = (
    "libkqueue: registering an fd number whose earlier registration was left behind (the fd "
    "closed while registered) sometimes adds nothing, or fails, where a BSD kernel dropped the "
    "stale filters at close(); intermittent, so these comparisons would flake "
    "(README \"KqueueSelector on libkqueue\")")


def skip_stale_fd_reuse_on_libkqueue(kind):
    """For a scenario that reuses the number of an fd closed while registered."""
    if kind == "Kqueue" and _on_libkqueue():
        pytest.skip(LIBKQUEUE_STALE_FD_REUSE)


def skip_stdlib_select_without_gil(module, kind):
    """For a test where threads change a SelectSelector while another is in its select()."""
    if module.__name__ == "selectors" and kind == "Select" and \
            not getattr(sys, "_is_gil_enabled", lambda: True)():
        pytest.skip("no GIL: the stdlib's SelectSelector is not thread-safe (select.select() "
                    "iterates the sets other threads' register() changes: 'Set changed size "
                    "during iteration'), so its run validates nothing here")


def _fd_set():
    return frozenset(os.listdir("/proc/self/fd"))


def settle_libkqueue_fds(before=None, limit=1.0):
    """libkqueue frees a closed kqueue's own fds (two of its three) from its monitor thread a
    moment after close() (README "KqueueSelector on libkqueue"). Wait, boundedly, until the fds
    opened since `before` are gone, or (without `before`) until the set stops changing, so
    that the two sides of a comparison see the same fd numbers."""
    deadline = time.monotonic() + limit
    last = _fd_set()
    while time.monotonic() < deadline:
        time.sleep(0.002)
        now = _fd_set()
        if (before is not None and now <= before) or (before is None and now == last):
            return
        last = now


KEY_FIELDS = ("fileobj", "fd", "events", "data")


def _rselectors():
    # Deliberately no fallback: if rselectors is missing the tests must error.
    import rselectors

    return rselectors


def _stdlib():
    import selectors

    return selectors


def module_pairs(kind=None):
    """[("stdlib", selectors), ("rselectors", rselectors)]; the stdlib's as `stdlib_for(kind)`."""
    stdlib = _stdlib() if kind is None else stdlib_for(kind)
    return [("stdlib", stdlib), ("rselectors", _rselectors())]


def is_selector_key(value):
    return (
        isinstance(value, tuple)
        and type(value).__name__ == "SelectorKey"
        and getattr(type(value), "_fields", None) == KEY_FIELDS
    )


def outcome(fn, *args, **kwargs):
    """Run fn -> ("ok", value) or ("raise", type, str(exc)) (raw, not canonical)."""
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - that is the point
        return ("raise", type(exc), str(exc))


class Side:
    """One run of a scenario, against one module."""

    def __init__(self, name, mod, kind):
        self.name = name  # "stdlib" or "rselectors"
        self.mod = mod
        self.kind = kind
        self.cls = getattr(mod, kind + "Selector") if kind else None
        self.records = []
        self._labels = {}  # id(obj) -> (label, obj)
        self._fds = {}  # fd number -> label
        self._cleanups = []
        self._closed_fds = set()

    # -- resources ---------------------------------------------------------
    def label(self, obj, name):
        """Give obj a label: it is compared by identity across the two runs."""
        if isinstance(obj, int) or obj is None:
            raise TypeError("cannot label ints/None (use label_fd)")
        self._labels[id(obj)] = (name, obj)
        return obj

    def label_fd(self, fd, name):
        self._fds[fd] = name
        return fd

    def defer(self, fn, *args):
        self._cleanups.append((fn, args))

    def selector(self, cls=None):
        sel = (cls or self.cls)()
        self.defer(sel.close)
        return sel

    def socketpair(self, name="s"):
        a, b = socket.socketpair()
        self.defer(a.close)
        self.defer(b.close)
        self.label(a, name + "0")
        self.label(b, name + "1")
        self.label_fd(a.fileno(), name + "0")
        self.label_fd(b.fileno(), name + "1")
        return a, b

    def pipe(self, name="p"):
        r, w = os.pipe()
        self.label_fd(r, name + "r")
        self.label_fd(w, name + "w")
        self.defer(self.close_fd, r)
        self.defer(self.close_fd, w)
        return r, w

    def close_fd(self, fd):
        """Close an fd created by this side exactly once (never a reused number)."""
        if fd in self._closed_fds:
            return
        self._closed_fds.add(fd)
        os.close(fd)

    def regular_file(self, name="file"):
        f = tempfile.TemporaryFile()
        self.defer(f.close)
        self.label(f, name)
        self.label_fd(f.fileno(), name)
        return f

    def closed_fd(self, name="closedfd"):
        """A fd number that was open and is closed now."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        fd = s.fileno()
        s.close()
        self.label_fd(fd, name)
        return fd

    def close(self):
        errors = []
        for fn, args in reversed(self._cleanups):
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
        self._cleanups.clear()
        return errors

    # -- recording ---------------------------------------------------------
    def rec(self, step, fn, *args, **kwargs):
        """Record the canonical outcome of fn(*args); return the raw value or None."""
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            self.records.append((step, self.canon_exc(exc)))
            return None
        self.records.append((step, ("ok", self.canon(value))))
        return value

    def check(self, step, value):
        self.records.append((step, ("ok", self.canon(value))))
        return value

    # -- canonical forms ---------------------------------------------------
    def canon_exc(self, exc):
        return ("raise", _type_name(type(exc)), self.canon_msg(str(exc)), exc_chain(exc))

    def canon_msg(self, msg):
        labelled = sorted(self._labels.values(), key=lambda lo: -len(_safe_repr(lo[1])))
        for name, obj in labelled:
            r = _safe_repr(obj)
            if r and r in msg:
                msg = msg.replace(r, "<%s>" % name)

        def fd_sub(m):
            fd = int(m.group(2))
            if fd in self._fds:
                return m.group(1) + "<fd:%s>" % self._fds[fd] + m.group(3)
            return m.group(0)

        msg = re.sub(r"(\(FD )(\d+)(\))", fd_sub, msg)
        msg = re.sub(r"(fd=)(\d+)(\b)", fd_sub, msg)
        msg = re.sub(r"(^'?)(\d+)( is not registered| \(FD )", fd_sub, msg)
        msg = re.sub(r" at 0x[0-9a-fA-F]+", " at 0x?", msg)
        return msg

    def fdish(self, value):
        """Canonical form of something used as a file descriptor / fileobj."""
        if isinstance(value, int) and not isinstance(value, bool) and int(value) in self._fds:
            return ("fd", self._fds[int(value)], _type_name(type(value)))
        return self.canon(value)

    def canon(self, v):
        lab = self._labels.get(id(v))
        if lab is not None and lab[1] is v:
            return ("obj", lab[0])
        if v is None or v is Ellipsis or v is NotImplemented:
            return v
        if isinstance(v, BaseException):
            return self.canon_exc(v)
        if isinstance(v, bool):
            return ("bool", v)
        if is_selector_key(v):
            return (
                "SelectorKey",
                self.fdish(v[0]),
                self.fdish(v[1]),
                self.canon(v[2]),
                self.canon(v[3]),
            )
        if isinstance(v, int):
            return (_type_name(type(v)), int(v))
        if isinstance(v, float):
            return (_type_name(type(v)), repr(v))
        if isinstance(v, (str, bytes)):
            return (_type_name(type(v)), v)
        if isinstance(v, list):
            return ("list", [self.canon(x) for x in v])
        if isinstance(v, tuple):
            return (_type_name(type(v)), tuple(self.canon(x) for x in v))
        if isinstance(v, dict):
            return ("dict", [(self.canon(k), self.canon(x)) for k, x in v.items()])
        if isinstance(v, (set, frozenset)):
            return (_type_name(type(v)), sorted(repr(self.canon(x)) for x in v))
        return ("object", _type_name(type(v)))


# The same canonical names and exception chains as the differential fuzzer's.
from diff_fuzz_world import exc_chain, type_name as _type_name  # noqa: E402


def _safe_repr(obj):
    try:
        return repr(obj)
    except Exception:  # noqa: BLE001
        return ""


def _fmt_records(records):
    return "\n".join("    %-45s %r" % (step, out) for step, out in records)


def compare_sides(ref, new, ref_name="stdlib", new_name="rselectors"):
    """Assert two record lists are identical, reporting the first difference (and which
    other steps differ)."""
    diffs = [i for i, (a, b) in enumerate(zip(ref, new)) if a != b]
    if diffs:
        i = diffs[0]
        a, b = ref[i], new[i]
        others = ", ".join("#%d %r" % (j, ref[j][0]) for j in diffs[1:]) or "none"
        pytest.fail(
            "first difference at step #%d %r:\n  %s:   %r\n  %s: %r\n"
            "other differing steps: %s\n"
            "--- %s records ---\n%s\n--- %s records ---\n%s"
            % (i, a[0], ref_name, a, new_name, b, others, ref_name, _fmt_records(ref),
               new_name, _fmt_records(new)),
            pytrace=False,
        )
    if len(ref) != len(new):
        pytest.fail(
            "different number of steps (%d vs %d)\n--- %s ---\n%s\n--- %s ---\n%s"
            % (len(ref), len(new), ref_name, _fmt_records(ref), new_name, _fmt_records(new)),
            pytrace=False,
        )


def run_differential(scenario, kind):
    """Run scenario(side) on the stdlib then on rselectors; compare the records."""
    runs = []
    kqueue = kind == "Kqueue" and _on_libkqueue()
    if kqueue:
        settle_libkqueue_fds()
    before = _fd_set()
    for name, mod in module_pairs(kind):
        side = Side(name, mod, kind)
        try:
            scenario(side)
        except Exception as exc:  # noqa: BLE001
            if name == "stdlib":
                raise  # harness/scenario bug: the reference itself must not blow up
            # rselectors blew up where the stdlib did not: record it so the
            # comparison shows where.
            side.records.append(("<scenario aborted>", side.canon_exc(exc)))
        finally:
            side.close()
            if kqueue:
                settle_libkqueue_fds(before)
        runs.append(side.records)
    compare_sides(runs[0], runs[1])
    return runs[0]


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def kind(request):
    """Selector kind: "Epoll", "Poll", "Select", and "Kqueue" on a libkqueue build (test ids
    use these names)."""
    return request.param


@pytest.fixture
def differ(kind):
    """differ(scenario) -> run scenario on both modules and compare records."""

    def run(scenario, kind=kind):
        return run_differential(scenario, kind)

    return run


@pytest.fixture
def differential():
    """differential(scenario, kind) for tests not parametrized by ``kind``."""
    return run_differential


@pytest.fixture
def rselectors():
    return _rselectors()


@pytest.fixture
def stdlib_selectors():
    return _stdlib()


@pytest.fixture
def classes(kind):
    """(stdlib class, rselectors class) for the current kind."""
    return (selector_class(_stdlib(), kind), selector_class(_rselectors(), kind))


@pytest.fixture(params=["stdlib", "rselectors"])
def module(request):
    """Parametrize a test over both modules (for timing/threads/signals tests); in a test of
    one `kind`, the stdlib is `stdlib_for(kind)`."""
    kind = request.getfixturevalue("kind") if "kind" in request.fixturenames else None
    return dict(module_pairs(kind))[request.param]


@pytest.fixture
def socketpair():
    """Factory: socketpair() -> (a, b); everything is closed at teardown."""
    made = []

    def make(*args):
        a, b = socket.socketpair(*args)
        made.extend((a, b))
        return a, b

    yield make
    for s in made:
        s.close()


@pytest.fixture
def closer():
    """closer(obj_or_fn) registers a cleanup (obj.close() or fn()) run at teardown."""
    fns = []

    def add(x):
        fns.append(x if callable(x) and not hasattr(x, "close") else x.close)
        return x

    yield add
    for fn in reversed(fns):
        try:
            fn()
        except Exception:  # noqa: BLE001
            pass
