"""The ``python -m rselectors`` program runner.

``main(argv)`` implements::

    python -m rselectors prog.py [args...]
    python -m rselectors -m module [args...]
    python -m rselectors -c "code" [args...]
    python -m rselectors - [args...]        (program read from stdin)

It calls ``install()`` and then runs the program as ``__main__`` the way the
plain interpreter would: same ``sys.argv``, same ``sys.path[0]``, a fresh
``__main__`` module, exit status and tracebacks as with ``python``.
"""

import sys

from ._install import install

__all__ = ["main"]

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


class _UsageError(Exception):
    pass


def _program_name():
    if sys.orig_argv:
        return sys.orig_argv[0]
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


def _without_runner_frames(tb):
    """``tb`` from the program's first frame on, as plain ``python`` prints it.

    The traceback starts with the frames that ran the program: runpy's (``python -m
    rselectors`` itself is run by runpy) and this package's. Frames up to the last of this
    package's in that leading run are dropped; runpy frames after it stay, since they are
    what ``python -m module`` shows too.
    """
    import os
    import runpy

    package_dir = os.path.dirname(os.path.abspath(__file__))

    def ours(frame):
        return os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == package_dir

    cut, frame_tb = None, tb
    while frame_tb is not None:
        frame = frame_tb.tb_frame
        if ours(frame):
            cut = frame_tb
        elif frame.f_globals.get("__name__") != runpy.__name__:
            break
        frame_tb = frame_tb.tb_next
    return tb if cut is None else cut.tb_next


def _report_exception(exc):
    """Print an uncaught exception like the interpreter does; exit status 1."""
    tb = _without_runner_frames(exc.__traceback__)
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
    """Make sys.excepthook print the traceback without the runner's frames."""
    hook = sys.excepthook

    def excepthook(exc_type, exc, tb):
        tb = _without_runner_frames(tb)
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
    # What `python -m` itself calls: runs in sys.modules['__main__'].
    return runpy._run_module_as_main(name, alter_argv=True)


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
