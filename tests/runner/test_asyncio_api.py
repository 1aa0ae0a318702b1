"""rselectors.new_event_loop(), rselectors.run() and rselectors.EventLoopPolicy: ``run()`` is
expected to do what ``asyncio.run()`` does, on an rselectors loop.
"""

import asyncio
import gc
import subprocess
import sys
import warnings

import pytest

import rselectors


def _selector_module(loop):
    return type(loop._selector).__module__


def test_import_does_not_import_asyncio():
    code = ("import sys; import rselectors; "
            "print('asyncio' in sys.modules, 'asyncio.events' in sys.modules)")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]
    imported = [l.rsplit("|", 1)[-1].strip() for l in proc.stderr.splitlines()
                if l.startswith("import time:")]
    assert "rselectors" in imported
    assert not [m for m in imported if m.split(".")[0] == "asyncio"], imported


def test_event_loop_policy_is_made_on_first_access():
    code = ("import sys, warnings, rselectors; assert 'asyncio' not in sys.modules\n"
            "warnings.simplefilter('ignore', DeprecationWarning)\n"
            "P = rselectors.EventLoopPolicy; assert 'asyncio' in sys.modules\n"
            "from rselectors import EventLoopPolicy; assert EventLoopPolicy is P\n"
            "print(P.__module__, P.__qualname__, 'EventLoopPolicy' in vars(rselectors))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # Kept in the package once made, except from 3.14 on, where every read warns.
    stored = str(sys.version_info < (3, 14))
    assert proc.stdout.split() == ["rselectors", "EventLoopPolicy", stored]


def _deprecation_warnings(read):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read()
    return [w for w in caught if issubclass(w.category, DeprecationWarning)]


def test_event_loop_policy_warns_where_asyncios_policy_does():
    stdlib = _deprecation_warnings(lambda: asyncio.DefaultEventLoopPolicy)
    ours = _deprecation_warnings(lambda: rselectors.EventLoopPolicy)
    assert len(ours) == len(stdlib) == (1 if sys.version_info >= (3, 14) else 0)
    for w in ours:
        # rselectors' own warning, naming what to use instead, reported at the reader's line.
        assert str(w.message).startswith("'rselectors.EventLoopPolicy' is deprecated")
        assert "loop_factory=rselectors.new_event_loop" in str(w.message)
        assert w.filename == __file__


def test_recommended_spellings_never_warn():
    code = (
        "import asyncio, sys, rselectors\n"
        "from rselectors import *\n"
        "async def main():\n"
        "    await asyncio.sleep(0)\n"
        "    return type(asyncio.get_running_loop()._selector).__module__\n"
        "print(rselectors.run(main()))\n"
        "if sys.version_info >= (3, 12):\n"
        "    print(asyncio.run(main(), loop_factory=rselectors.new_event_loop))\n"
        "loop = rselectors.new_event_loop()\n"
        "print(loop.run_until_complete(main()))\n"
        "loop.close()\n"
        "rselectors.install()\n")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
    runs = 3 if sys.version_info >= (3, 12) else 2
    assert proc.stdout.split() == ["rselectors"] * runs


def test_unknown_attribute_still_raises():
    with pytest.raises(AttributeError, match="module 'rselectors' has no attribute 'nope'"):
        rselectors.nope
    assert not hasattr(rselectors, "nope")


@pytest.mark.filterwarnings("ignore:'rselectors.EventLoopPolicy' is deprecated:DeprecationWarning")
def test_public_names_and_docstrings():
    # EventLoopPolicy is public but kept out of __all__: `from rselectors import *` must not
    # import asyncio.
    assert "EventLoopPolicy" not in rselectors.__all__
    for name in ("new_event_loop", "run", "EventLoopPolicy"):
        assert name in ("EventLoopPolicy",) or name in rselectors.__all__
        assert getattr(rselectors, name).__doc__
    assert rselectors.EventLoopPolicy.new_event_loop.__doc__


def test_new_event_loop():
    loop = rselectors.new_event_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert isinstance(loop._selector, rselectors.DefaultSelector)
        assert _selector_module(loop) == "rselectors"
        assert not loop.is_running() and not loop.is_closed()

        async def main():
            assert asyncio.get_running_loop() is loop
            await asyncio.sleep(0.01)
            return 42

        assert loop.run_until_complete(main()) == 42
    finally:
        loop.close()
    assert loop.is_closed()
    assert loop._selector is None
    other = rselectors.new_event_loop()
    other.close()
    assert other is not loop


def test_new_event_loop_is_not_set_as_current():
    policy = asyncio.get_event_loop_policy()
    before = policy._local._loop
    loop = rselectors.new_event_loop()
    loop.close()
    assert policy._local._loop is before


def test_run_returns_result_on_rselectors():
    seen = {}

    async def main(x):
        loop = asyncio.get_running_loop()
        seen["loop"] = loop
        seen["module"] = _selector_module(loop)
        seen["debug"] = loop.get_debug()
        await asyncio.sleep(0)
        return x * 2

    assert rselectors.run(main(21)) == 42
    assert seen["module"] == "rselectors"
    assert seen["loop"].is_closed()
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


@pytest.mark.parametrize("debug", [True, False])
def test_run_debug(debug):
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert rselectors.run(main(), debug=debug) is debug


def test_run_propagates_exceptions():
    class Boom(Exception):
        pass

    async def main():
        await asyncio.sleep(0)
        raise Boom("x")

    with pytest.raises(Boom, match="x"):
        rselectors.run(main())


def test_run_rejects_non_coroutines():
    with pytest.raises(Exception) as ours:
        rselectors.run(asyncio.sleep)
    # What the running version's own asyncio.run() raises (3.14 changed it to TypeError).
    with pytest.raises(Exception) as stdlib:
        asyncio.run(asyncio.sleep)
    assert (type(ours.value), str(ours.value)) == (type(stdlib.value), str(stdlib.value))


def test_run_refuses_a_running_loop():
    async def inner():
        return 1

    async def outer():
        coro = inner()
        try:
            with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
                rselectors.run(coro)
        finally:
            coro.close()
        return "ok"

    assert rselectors.run(outer()) == "ok"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gc.collect()


def test_run_cleans_up_like_asyncio_run():
    state = {"cancelled": False, "agen_closed": False, "executor_done": False}

    async def forever():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            state["agen_closed"] = True

    def blocking():
        import time
        time.sleep(0.05)
        state["executor_done"] = True

    async def main():
        loop = asyncio.get_running_loop()
        state["loop"] = loop
        asyncio.ensure_future(forever())
        g = agen()
        assert await g.__anext__() == 1
        state["gen"] = g       # left suspended: shutdown_asyncgens() closes it
        loop.run_in_executor(None, blocking)
        await asyncio.sleep(0.01)
        return "done"

    assert rselectors.run(main()) == "done"
    assert state["cancelled"]
    assert state["agen_closed"]
    assert state["executor_done"]  # the default executor was shut down (joined)
    assert state["loop"].is_closed()


def test_run_loop_factory():
    made = []

    def factory():
        loop = rselectors.new_event_loop()
        made.append(loop)
        return loop

    async def main():
        return asyncio.get_running_loop()

    loop = rselectors.run(main(), loop_factory=factory)
    assert made == [loop] and loop.is_closed()

    async def which():
        return _selector_module(asyncio.get_running_loop())

    assert rselectors.run(which(), loop_factory=asyncio.new_event_loop) == "selectors"


def test_run_twice_in_a_row():
    async def main(i):
        await asyncio.sleep(0.001)
        return i

    assert [rselectors.run(main(i)) for i in range(3)] == [0, 1, 2]


def test_run_subprocess_and_streams():
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print(input().upper())",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate(b"hi\n")

        async def echo(reader, writer):
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        async with server:
            r, w = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
            w.write(b"line\n")
            line = await r.readline()
            w.close()
        return out, line, _selector_module(asyncio.get_running_loop())

    assert rselectors.run(main()) == (b"HI\n", b"line\n", "rselectors")


@pytest.fixture
def restore_policy():
    old = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(old)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the policy API, deprecated in 3.14
def test_event_loop_policy(restore_policy):
    Policy = rselectors.EventLoopPolicy
    assert issubclass(Policy, asyncio.DefaultEventLoopPolicy)
    assert Policy is rselectors.EventLoopPolicy
    assert (Policy.__module__, Policy.__qualname__) == ("rselectors", "EventLoopPolicy")
    policy = Policy()
    loop = policy.new_event_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert _selector_module(loop) == "rselectors"
    finally:
        loop.close()

    asyncio.set_event_loop_policy(policy)
    loop = asyncio.new_event_loop()
    try:
        assert _selector_module(loop) == "rselectors"
    finally:
        loop.close()

    async def main():
        return _selector_module(asyncio.get_running_loop())

    assert asyncio.run(main()) == "rselectors"


def test_event_loop_policy_in_a_fresh_process():
    code = (
        "import asyncio, rselectors\n"
        "asyncio.set_event_loop_policy(rselectors.EventLoopPolicy())\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    p = await asyncio.create_subprocess_exec('true')\n"
        "    await p.wait()\n"
        "    return type(loop._selector).__module__, p.returncode\n"
        "print(*asyncio.run(main()))\n"
        "import selectors; print(selectors.__name__)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # The policy makes asyncio's loops ours without touching sys.modules['selectors'].
    assert proc.stdout.split() == ["rselectors", "0", "selectors"]
