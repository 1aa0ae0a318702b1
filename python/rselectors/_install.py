"""Process-wide installation of rselectors as ``selectors`` and the
``python -m rselectors`` program runner.

``install()`` makes every ``import selectors`` in the current process resolve
to :mod:`rselectors` and rebinds references to the standard library module (and
to its selector classes) that modules imported earlier already hold, e.g.
``asyncio.selector_events.selectors``, ``subprocess._PopenSelector``,
``socketserver._ServerSelector`` or ``multiprocessing.connection._WaitSelector``.

``main(argv)`` implements::

    python -m rselectors prog.py [args...]
    python -m rselectors -m module [args...]
    python -m rselectors -c "code" [args...]
    python -m rselectors - [args...]        (program read from stdin)

``install_from_environment()`` is the ``RSELECTORS_INSTALL`` switch, called at
interpreter start-up by ``rselectors_install.pth`` (see ``ENV_VAR``).

It calls ``install()`` and then runs the program as ``__main__`` the way the
plain interpreter would: same ``sys.argv``, same ``sys.path[0]``, a fresh
``__main__`` module, exit status and tracebacks as with ``python``.
"""

import sys
import threading

__all__ = ["install", "main", "install_from_environment", "ENV_VAR"]

# The environment switch: with RSELECTORS_INSTALL set to anything but "" or "0", every
# Python process that starts with that environment (children included, since they inherit
# it) calls install() at start-up, from the `rselectors_install.pth` file installed next to
# the package in site-packages. Unset, the .pth costs one os.environ lookup per start.
ENV_VAR = "RSELECTORS_INSTALL"

USAGE = """\
usage: python -m rselectors prog.py [args...]
       python -m rselectors -m module [args...]
       python -m rselectors -c "code" [args...]
       python -m rselectors - [args...]

Run a Python program with every `import selectors` resolving to rselectors.
The program sees sys.argv, sys.path[0] and __main__ as with plain `python`.

Environment: RSELECTORS_INSTALL=1 makes every Python process started with it
(child processes included, which inherit it) use rselectors from start-up,
with or without this runner (needs rselectors_install.pth in site-packages,
which installing rselectors puts there; not under `python -S`).
"""

_lock = threading.RLock()
# The standard library ``selectors`` module object, once seen (kept so that a
# later install() call can still rebind references taken from it).
_stdlib_selectors = None


def _stdlib_path():
    import os

    stdlib_dir = os.path.dirname(getattr(os, "__file__", "") or "")
    if not stdlib_dir:  # pragma: no cover - a frozen os without __file__
        import sysconfig
        stdlib_dir = sysconfig.get_path("stdlib")
    return os.path.join(stdlib_dir, "selectors.py")


def _stdlib_module():
    """The standard library's own ``selectors`` module (rselectors re-exports its names).

    Imported as ``selectors`` when nothing is under that name yet, so that the process has
    one copy of its classes. When ``sys.modules["selectors"]`` is something else (rselectors
    after install(), a module of the same name earlier on sys.path), the stdlib's file is
    loaded under no name in sys.modules.
    """
    global _stdlib_selectors
    import os

    with _lock:
        if _stdlib_selectors is not None:
            return _stdlib_selectors
        path = _stdlib_path()
        module = sys.modules.get("selectors")
        if module is None:
            import selectors as module
        file = getattr(module, "__file__", None)
        if not file or os.path.realpath(file) != os.path.realpath(path):
            import importlib.util

            spec = importlib.util.spec_from_file_location("selectors", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        _stdlib_selectors = module
        return module


def green_patched(module):
    """True if a library (gevent, eventlet) put its own DefaultSelector on ``module``.

    Both monkey-patchers replace ``selectors.DefaultSelector`` with a class whose code lives
    in their module (gevent's ``GeventSelector``, eventlet's re-imported ``SelectSelector``).
    """
    default = getattr(module, "DefaultSelector", None)
    code_globals = getattr(getattr(default, "select", None), "__globals__", None)
    return code_globals is not None and code_globals is not vars(module)


def _stdlib_objects(std):
    """Map id(obj) -> (obj, names) for the stdlib module's selector classes."""
    found = {}
    std_name = getattr(std, "__name__", "selectors")
    for name, value in list(vars(std).items()):
        if isinstance(value, type) and getattr(value, "__module__", None) == std_name:
            entry = found.setdefault(id(value), (value, []))
            entry[1].append(name)
    return found


def _replacement_class(rsel, attr, cls, names):
    """rselectors' class of the same name as the stdlib class ``cls``."""
    candidates = []
    if attr in names:  # e.g. ``from selectors import DefaultSelector``
        candidates.append(attr)
    if cls.__name__ in names:
        candidates.append(cls.__name__)
    candidates.extend(sorted(names))
    for name in candidates:
        new = getattr(rsel, name, None)
        if isinstance(new, type):
            return new
    return None


def _rebind(rsel, std):
    """Point module attributes that are ``std`` or its classes at rselectors."""
    classes = _stdlib_objects(std)
    std_id = id(std)
    for modname, module in list(sys.modules.items()):
        if module is None or module is std or module is rsel:
            continue
        if modname == "rselectors" or modname.startswith("rselectors."):
            continue
        try:
            # object.__getattribute__ avoids triggering lazily loaded modules.
            namespace = object.__getattribute__(module, "__dict__")
        except Exception:
            continue
        if not isinstance(namespace, dict):
            continue
        try:
            items = list(namespace.items())
        except Exception:
            continue
        for attr, value in items:
            vid = id(value)
            if vid == std_id and value is std:
                namespace[attr] = rsel
                continue
            entry = classes.get(vid)
            if entry is None or entry[0] is not value:
                continue
            new = _replacement_class(rsel, attr, value, entry[1])
            if new is not None and new is not value:
                namespace[attr] = new


def install():
    """Make ``selectors`` resolve to rselectors in this process.

    Idempotent and cheap.  References to the standard library ``selectors``
    module (and to its selector classes) that modules imported earlier hold
    as module attributes are rebound to rselectors.

    If gevent or eventlet has already monkey-patched ``selectors`` (its
    DefaultSelector is theirs), this does nothing but warn: their cooperative
    selectors must stay what ``selectors`` gives. Installed first, rselectors
    is what they patch, as they would the stdlib module.
    """
    global _stdlib_selectors
    import rselectors

    with _lock:
        current = sys.modules.get("selectors")
        if current is not None and current is not rselectors and green_patched(current):
            import warnings

            warnings.warn(
                "rselectors.install() does nothing: the selectors module was already "
                "monkey-patched (DefaultSelector is %s.%s); install rselectors before "
                "patching" % (current.DefaultSelector.__module__,
                              current.DefaultSelector.__qualname__),
                RuntimeWarning, stacklevel=2)
            return
        if current is not None and current is not rselectors:
            if _stdlib_selectors is None:
                _stdlib_selectors = current
        sys.modules["selectors"] = rselectors
        for std in {id(m): m for m in (current, _stdlib_selectors)
                    if m is not None and m is not rselectors}.values():
            _rebind(rselectors, std)


def environment_requests_install(environ=None):
    """True if ``RSELECTORS_INSTALL`` asks for install() (set, not "" or "0")."""
    import os

    value = (os.environ if environ is None else environ).get(ENV_VAR, "0")
    return value not in ("", "0")


def install_from_environment():
    """install() if ``RSELECTORS_INSTALL`` asks for it; return whether it did.

    ``rselectors_install.pth`` calls this at interpreter start-up (its one
    line checks the variable first, so that a process without it never
    imports rselectors). The .pth only runs when the ``site`` module processes
    the site-packages directory holding it: not under ``python -S``.
    """
    if not environment_requests_install():
        return False
    install()
    return True


# ---------------------------------------------------------------------------
# python -m rselectors
# ---------------------------------------------------------------------------

class _UsageError(Exception):
    pass


def _program_name():
    orig = getattr(sys, "orig_argv", None)
    if orig:
        return orig[0]
    return sys.executable or "python"


def _fresh_main_module():
    """A new ``__main__`` module like the one the interpreter starts with."""
    import builtins
    import types
    import importlib.machinery

    module = types.ModuleType("__main__")
    namespace = module.__dict__
    namespace["__loader__"] = importlib.machinery.BuiltinImporter
    if sys.version_info < (3, 14):
        namespace["__annotations__"] = {}
    namespace["__builtins__"] = builtins
    sys.modules["__main__"] = module
    return module


def _set_path0(value):
    """Set sys.path[0] as the interpreter would (not with -P / -I)."""
    if getattr(sys.flags, "safe_path", False) or sys.flags.isolated:
        return
    if sys.path:
        sys.path[0] = value
    else:
        sys.path.insert(0, value)


def _parse(argv):
    """Return (kind, target, args) with kind in script/module/code/stdin."""
    if not argv:
        raise _UsageError(None)
    first = argv[0]
    if first == "--":
        argv = argv[1:]
        if not argv:
            raise _UsageError(None)
        return "script", argv[0], argv[1:]
    if first in ("-h", "--help"):
        return "help", None, []
    if first == "-":
        return "stdin", None, argv[1:]
    for opt, kind in (("-m", "module"), ("-c", "code")):
        if first == opt:
            if len(argv) < 2:
                raise _UsageError("Argument expected for the %s option" % opt)
            return kind, argv[1], argv[2:]
        if first.startswith(opt):  # -mmodule / -c'code', as python accepts
            return kind, first[2:], argv[1:]
    if first.startswith("-"):
        raise _UsageError("Unknown option: %s" % first)
    return "script", first, argv[1:]


def _report_exception(exc):
    """Print an uncaught exception like the interpreter does; exit status 1."""
    tb = exc.__traceback__
    # Drop the runner's own frames so the traceback reads as with `python`.
    here = globals()
    while tb is not None and tb.tb_frame.f_globals is here:
        tb = tb.tb_next
    exc = exc.with_traceback(tb)
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = exc
    try:
        sys.excepthook(type(exc), exc, tb)
    except BaseException:
        import traceback
        traceback.print_exception(type(exc), exc, tb)
    return 1


def _hide_runner_frames_from_excepthook():
    """Make sys.excepthook skip the leading frames of runpy and this package."""
    import os
    import runpy

    package_dir = os.path.dirname(os.path.abspath(__file__))
    hook = sys.excepthook

    def is_runner(frame):
        if frame.f_globals.get("__name__") == runpy.__name__:
            return True
        filename = frame.f_code.co_filename
        return os.path.dirname(os.path.abspath(filename)) == package_dir

    def excepthook(exc_type, exc, tb):
        while tb is not None and is_runner(tb.tb_frame):
            tb = tb.tb_next
        # The default hook prints the exception's own __traceback__: trim that too.
        hook(exc_type, exc.with_traceback(tb), tb)

    sys.excepthook = excepthook


def _read_code(path):
    """Code object for a script file: source or byte-compiled (.pyc)."""
    import io
    import importlib.util
    import marshal

    with io.open_code(path) as f:
        data = f.read()
    magic = importlib.util.MAGIC_NUMBER
    if path.endswith((".pyc", ".pyo")) or data[:len(magic)] == magic:
        if data[:len(magic)] != magic:
            raise RuntimeError("Bad magic number in .pyc file")
        return marshal.loads(data[16:]), "SourcelessFileLoader"
    return compile(data, path, "exec", dont_inherit=True), "SourceFileLoader"


def _is_runnable_path(path):
    """True for a directory or zip file holding __main__.py."""
    import os
    import zipfile

    if os.path.isdir(path):
        return True
    try:
        return os.path.isfile(path) and zipfile.is_zipfile(path)
    except OSError:
        return False


def _run_script(path, args):
    import os
    import runpy
    import importlib.machinery

    sys.argv[:] = [path] + list(args)
    abspath = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)

    if _is_runnable_path(path):
        # Like `python dir_or_zip`: sys.path[0] is the path, run __main__.
        _set_path0(abspath)
        _fresh_main_module()
        return runpy._run_module_as_main("__main__", alter_argv=False)

    try:
        code, loader_name = _read_code(abspath)
    except OSError as e:
        sys.stderr.write("%s: can't open file %r: [Errno %s] %s\n"
                         % (_program_name(), abspath, e.errno, e.strerror))
        return 2
    _set_path0(os.path.dirname(os.path.realpath(abspath)))
    module = _fresh_main_module()
    namespace = module.__dict__
    loader_cls = getattr(importlib.machinery, loader_name)
    namespace["__loader__"] = loader_cls("__main__", abspath)
    _exec_main(code, namespace, abspath)


def _run_module(name, args):
    import os
    import runpy

    sys.argv[:] = ["-m"] + list(args)  # runpy replaces argv[0] with the path
    _set_path0(os.getcwd())
    _fresh_main_module()
    if hasattr(runpy, "_run_module_as_main"):
        # What `python -m` itself calls: runs in sys.modules['__main__'].
        return runpy._run_module_as_main(name, alter_argv=True)
    return runpy.run_module(name, run_name="__main__", alter_sys=True)


def _exec_main(code, namespace, set_file=None):
    """exec code in __main__; like the interpreter, __file__ is only set
    while a file (or stdin) program runs, unless it exits via SystemExit.
    ``__cached__`` comes with it (None) up to 3.14; 3.15 no longer sets it."""
    if set_file is not None:
        namespace["__file__"] = set_file
        if sys.version_info < (3, 15):
            namespace["__cached__"] = None
    try:
        exec(code, namespace)
    finally:
        if set_file is not None and sys.exc_info()[0] is not SystemExit:
            namespace.pop("__file__", None)
            namespace.pop("__cached__", None)


def _run_source(source, filename, argv0, args):
    sys.argv[:] = [argv0] + list(args)
    _set_path0("")
    namespace = _fresh_main_module().__dict__
    if argv0 == "-c" and sys.version_info >= (3, 13):
        # Python 3.13+ shows `-c` source lines in tracebacks.
        import linecache
        linecache.cache[filename] = (
            len(source), None,
            [line + "\n" for line in source.splitlines()], filename)
    code = compile(source, filename, "exec", dont_inherit=True)
    _exec_main(code, namespace, "<stdin>" if argv0 == "-" else None)


def _run(kind, target, args):
    if kind == "script":
        return _run_script(target, args)
    if kind == "module":
        return _run_module(target, args)
    if kind == "code":
        return _run_source(target + "\n", "<string>", "-c", args)
    if kind == "stdin":
        return _run_source(sys.stdin.read(), "<stdin>", "-", args)
    raise AssertionError(kind)


def main(argv=None):
    """Entry point of ``python -m rselectors``; returns the exit status."""
    if argv is None:
        argv = sys.argv[1:]
    argv = list(argv)
    try:
        kind, target, args = _parse(argv)
    except _UsageError as e:
        if e.args[0]:
            sys.stderr.write("%s\n" % e.args[0])
        sys.stderr.write(USAGE)
        return 2
    if kind == "help":
        sys.stdout.write(USAGE)
        return 0

    install()
    try:
        status = _run(kind, target, args)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        # Let it reach the interpreter, which prints it and then ends the process by SIGINT
        # after finalizing, as with `python prog.py`; only the traceback loses our frames.
        _hide_runner_frames_from_excepthook()
        raise
    except BaseException as e:
        return _report_exception(e)
    return status if isinstance(status, int) else 0
