"""asyncio on rselectors, in the style of uvloop.

``new_event_loop()``
    An ``asyncio.SelectorEventLoop`` driven by ``rselectors.DefaultSelector()``.
``run(main, *, debug=None, loop_factory=None)``
    ``asyncio.run()`` on such a loop.
``EventLoopPolicy``
    An ``asyncio.DefaultEventLoopPolicy`` whose ``new_event_loop()`` returns
    ``rselectors.new_event_loop()``; ``asyncio.set_event_loop_policy(
    rselectors.EventLoopPolicy())`` makes every loop asyncio creates ours.
    Python 3.14 deprecates asyncio's policy system (removal planned for 3.16),
    so there reading ``rselectors.EventLoopPolicy`` warns, as uvloop's does;
    ``run()`` and ``asyncio.run(main(), loop_factory=new_event_loop)`` do not.

None of this touches ``sys.modules['selectors']``: only the loops made here
run on rselectors (use ``rselectors.install()`` or ``python -m rselectors``
for every loop of the process, whoever creates it).

asyncio is imported on first use, not when ``rselectors`` is imported:
``EventLoopPolicy`` is provided through the package's module ``__getattr__``
(PEP 562), because defining the subclass needs asyncio.
"""

import sys
import threading

# EventLoopPolicy is not listed: it exists once made, through __getattr__ below.
__all__ = ["new_event_loop", "run"]


def new_event_loop():
    """Return a new ``asyncio.SelectorEventLoop`` on ``rselectors.DefaultSelector()``.

    The loop is not set as the current event loop; like
    ``asyncio.new_event_loop()`` it is the caller's to run and close::

        loop = rselectors.new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
    """
    import asyncio
    from . import DefaultSelector

    return asyncio.SelectorEventLoop(DefaultSelector())


def run(main, *, debug=None, loop_factory=None):
    """Run coroutine ``main`` on a new rselectors event loop and return its result.

    The same as ``asyncio.run(main, debug=debug)`` except for the loop it
    creates: ``loop_factory()`` if given (as ``asyncio.run`` accepts from
    Python 3.12 on), else ``rselectors.new_event_loop()``. It cannot be called
    while another asyncio event loop is running in the same thread. When
    ``main`` is done, remaining tasks are cancelled, asynchronous generators
    finalized and the default executor shut down, and the loop is closed:
    ``asyncio.Runner(debug=debug, loop_factory=...).run(main)``.
    """
    import asyncio

    if loop_factory is None:
        loop_factory = new_event_loop
    # asyncio.run()'s own check and message (Runner.run() words it otherwise).
    if asyncio._get_running_loop() is not None:
        raise RuntimeError(
            "asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=loop_factory) as runner:
        return runner.run(main)


_POLICY_DEPRECATED = (
    "'rselectors.EventLoopPolicy' is deprecated, as asyncio's policy system is since "
    "Python 3.14, and slated for removal in Python 3.16; use rselectors.run(main()) or "
    "asyncio.run(main(), loop_factory=rselectors.new_event_loop)")

_policy_class = None
_policy_lock = threading.Lock()

_POLICY_DOC = """asyncio's default event loop policy, making rselectors loops.

    ``asyncio.set_event_loop_policy(rselectors.EventLoopPolicy())`` makes
    ``asyncio.new_event_loop()``, ``asyncio.run()`` and ``asyncio.Runner``
    (without a ``loop_factory``), and ``asyncio.get_event_loop()`` in the main
    thread create ``rselectors.new_event_loop()`` loops. Everything else (child
    watchers, the current loop of each thread) is the default policy's.
    """


def _policy_new_event_loop(self):
    """Return ``rselectors.new_event_loop()``."""
    return new_event_loop()


_policy_new_event_loop.__name__ = "new_event_loop"
_policy_new_event_loop.__qualname__ = "EventLoopPolicy.new_event_loop"


def _make_policy_class():
    global _policy_class
    with _policy_lock:
        if _policy_class is not None:
            return _policy_class
        import asyncio

        if sys.version_info >= (3, 14):
            # What asyncio.DefaultEventLoopPolicy names, read without the warning asyncio
            # gives for that name: rselectors gives its own, pointing at the caller.
            if sys.platform == "win32":
                from asyncio import windows_events as platform_events
            else:
                from asyncio import unix_events as platform_events

            base = platform_events._DefaultEventLoopPolicy
        else:
            base = asyncio.DefaultEventLoopPolicy
        # Made with type() rather than a class statement in this function, which
        # mypy's stubtest would report as a stray local class of this module.
        EventLoopPolicy = type("EventLoopPolicy", (base,), {
            "__doc__": _POLICY_DOC,
            "__module__": "rselectors",
            "__qualname__": "EventLoopPolicy",
            "new_event_loop": _policy_new_event_loop,
        })
        _policy_class = EventLoopPolicy
        return _policy_class


def __getattr__(name):
    # Also serves as the rselectors package's module __getattr__ (PEP 562).
    if name == "EventLoopPolicy":
        if sys.version_info >= (3, 14):
            # Like asyncio's own deprecated names, it warns on every read, so it is never
            # stored in the package.
            import warnings

            warnings.warn(_POLICY_DEPRECATED, DeprecationWarning, stacklevel=2)
            return _make_policy_class()
        cls = _make_policy_class()
        package = sys.modules.get("rselectors")
        if package is not None:
            package.__dict__["EventLoopPolicy"] = cls
        return cls
    raise AttributeError("module %r has no attribute %r" % (
        "rselectors", name))
