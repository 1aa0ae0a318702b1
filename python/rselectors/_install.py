"""rselectors as ``selectors`` process-wide: ``install()`` and the environment switch.

``install()`` makes every ``import selectors`` in the current process resolve
to :mod:`rselectors` and rebinds references to the standard library module (and
to its selector classes) that modules imported earlier already hold, e.g.
``asyncio.selector_events.selectors``, ``subprocess._PopenSelector``,
``socketserver._ServerSelector`` or ``multiprocessing.connection._WaitSelector``.

``install_from_environment()`` is the ``RSELECTORS_INSTALL`` switch, called at
interpreter start-up by ``rselectors_install.pth`` (see ``ENV_VAR``).
``_stdlib_module()`` finds the interpreter's own ``selectors``, whose other names
rselectors re-exports. The ``python -m rselectors`` runner is ``_runner.py``.
"""

import sys
import threading

__all__ = ["install", "install_from_environment", "ENV_VAR"]

# The environment switch: with RSELECTORS_INSTALL set to anything but "" or "0", every
# Python process that starts with that environment (children included, since they inherit
# it) calls install() at start-up, from the `rselectors_install.pth` file installed next to
# the package in site-packages. Unset, the .pth costs one os.environ lookup per start.
ENV_VAR = "RSELECTORS_INSTALL"

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
