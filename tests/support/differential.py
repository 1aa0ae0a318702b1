"""The differential harness: a scenario run on the stdlib and on rselectors, each run's
observations canonicalised and compared (the `differ` and `differential` fixtures of
conftest.py run it), and the scenario helpers several folders share.

A test writes a *scenario*, a function taking a :class:`Side`, and ``differ(scenario)`` runs it
twice, once against the stdlib ``selectors`` module and once against ``rselectors``, each time
with freshly created resources (socket pairs, pipes, files, selectors), then asserts that both
runs recorded exactly the same observations.

Observations are recorded with ``side.rec(step, fn, *args)`` (the outcome of a call:
``("ok", value)`` or ``("raise", exc_type, str(exc))``) and ``side.check(step, value)``.
Values are *canonicalised* before comparison so that the two runs can be compared although
they use different objects:

* objects created through the side (sockets, files, data sentinels, ...) are replaced by their
  label, so identity matters: a copy of a data object does not compare equal to the original;
* file descriptor numbers of those resources are replaced by labels when they appear as
  ``SelectorKey.fileobj``/``SelectorKey.fd`` or in error messages (``(FD 5)``, ``fd=5``,
  ``5 is not registered``);
* scalars keep their exact type (``True`` vs ``1`` vs ``1.0`` differ);
* ``SelectorKey`` instances become ``("SelectorKey", fileobj, fd, events, data)``;
* exceptions become ``("raise", type, str(exc), chain)`` where chain lists the
  ``__cause__``/``__context__`` exceptions a traceback would show.
"""

import os
import re
import socket
import tempfile

import pytest

from support.diff_fuzz_world import exc_chain, type_name as _type_name
from support.kinds import module_pairs, on_libkqueue, open_fds, settle_libkqueue_fds

KEY_FIELDS = ("fileobj", "fd", "events", "data")


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
    kqueue = kind == "Kqueue" and on_libkqueue()
    if kqueue:
        settle_libkqueue_fds()
    before = open_fds()
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
# scenario helpers: objects and records several test files use
# ---------------------------------------------------------------------------


class FilenoObj:
    """An object whose fileno() returns ``ret`` or raises ``exc_type(msg)``."""

    def __init__(self, name, ret=None, exc_type=None):
        self.name = name
        self.ret = ret
        self.exc_type = exc_type

    def fileno(self):
        if self.exc_type is not None:
            raise self.exc_type("fileno failed for %s" % self.name)
        return self.ret

    def __repr__(self):
        return "<FilenoObj %s>" % self.name


class MyInt(int):
    pass


class Data:
    """Data object with a stable repr."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "<Data %s>" % self.name


def select_obs(sel, timeout=0):
    """Run sel.select(timeout) and return a comparable observation.

    The ready list is sorted (kernel order is not part of the contract);
    the shape (list of 2-tuples, int masks) and key identity
    (``key is sel.get_key(key.fd)``) are checked too.
    """
    res = sel.select(timeout)
    shape = (type(res).__name__, sorted({(type(it).__name__, len(it), type(it[1]).__name__) for it in res}))
    ident = []
    for key, _mask in res:
        try:
            ident.append(key is sel.get_key(key.fd))
        except Exception as exc:  # noqa: BLE001
            ident.append(type(exc).__name__)
    return {"shape": shape, "ready": res, "identity": ident}


def rec_select(side, sel, step, timeout=0):
    """Record select() with a sorted ready list."""
    try:
        obs = select_obs(sel, timeout)
    except Exception as exc:  # noqa: BLE001
        side.records.append((step, side.canon_exc(exc)))
        return None
    ready = sorted((side.canon(item) for item in obs["ready"]), key=repr)
    side.records.append((step, ("ok", ("shape", obs["shape"]), ("ready", ready), ("identity", obs["identity"]))))
    return obs["ready"]


def rec_map(side, sel, step):
    """Record the full content of get_map() (order preserved)."""

    def snap():
        m = sel.get_map()
        if m is None:
            return None
        return [(side.fdish(fd), side.canon(key)) for fd, key in m.items()]

    try:
        side.records.append((step, ("ok", snap())))
    except Exception as exc:  # noqa: BLE001
        side.records.append((step, side.canon_exc(exc)))
