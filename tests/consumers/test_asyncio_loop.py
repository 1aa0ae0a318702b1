"""asyncio's SelectorEventLoop on rselectors: streams, servers, ``sock_*``
methods, subprocesses, add_reader/add_writer, wake-ups from threads and
signals, and ``call_later`` timing (never early, no busy loop).

Same four modes as ``test_stdlib_users.py`` (stdlib reference,
``python -m rselectors``, ``install()`` first, ``install()`` after asyncio
was imported); every scenario reports the module of the running loop's
selector, ``type(loop._selector).__module__``.
"""

import pytest

from test_stdlib_users import MODES, check_used, run_scenario

mode = pytest.mark.parametrize("mode", MODES)

LOOP_USED = '''
def loop_used(loop):
    return {"type(loop._selector)": _modname(loop._selector),
            "asyncio.selector_events.selectors":
                __import__("asyncio").selector_events.selectors.__name__}
'''

STREAMS = LOOP_USED + '''
import asyncio

async def handle(reader, writer):
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()

async def client(port, i):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    big = b"%d" % i * 300000 + b"\\n"        # more than the socket buffers
    writer.write(b"hello %d\\n" % i)
    writer.write(big)
    await writer.drain()
    first = await reader.readline()
    second = await reader.readexactly(len(big))
    writer.write_eof()
    rest = await reader.read()
    writer.close()
    await writer.wait_closed()
    return first.decode(), second == big.upper(), rest

async def main():
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    async with server:
        results = await asyncio.wait_for(
            asyncio.gather(*(client(port, i) for i in range(20))), 30)
    # Protocol-level server and client.
    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
        def data_received(self, data):
            self.transport.write(data[::-1])
    srv = await loop.create_server(Echo, "127.0.0.1", 0)
    got = loop.create_future()
    class Client(asyncio.Protocol):
        def connection_made(self, transport):
            transport.write(b"abc")
        def data_received(self, data):
            got.set_result(data)
    transport, _ = await loop.create_connection(
        Client, *srv.sockets[0].getsockname()[:2])
    reply = await asyncio.wait_for(got, 10)
    transport.close()
    srv.close()
    await srv.wait_closed()
    # Unix sockets.
    userver = await asyncio.start_unix_server(handle, "sock")
    r, w = await asyncio.open_unix_connection("sock")
    w.write(b"unix\\n")
    unix_reply = await r.readline()
    w.close()
    userver.close()
    await userver.wait_closed()
    return loop_used(loop), results, reply, unix_reply

used, results, reply, unix_reply = asyncio.run(main())
report(used, results=results, reply=reply, unix_reply=unix_reply)
'''


@mode
def test_streams_and_servers(tmp_path, mode):
    used, r = run_scenario(tmp_path, mode, STREAMS)
    check_used(mode, used)
    assert r["results"] == [["HELLO %d\n" % i, True, "b''"] for i in range(20)]
    assert r["reply"] == "b'cba'"
    assert r["unix_reply"] == "b'UNIX\\n'"


SOCK_METHODS = LOOP_USED + '''
import asyncio, socket

async def main():
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    client = socket.socket()
    client.setblocking(False)
    accept = asyncio.ensure_future(loop.sock_accept(listener))
    await loop.sock_connect(client, listener.getsockname())
    conn, addr = await accept
    conn.setblocking(False)
    payload = bytes(range(256)) * 16384                # 4 MiB
    async def receive(n):
        chunks, got = [], 0
        while got < n:
            data = await loop.sock_recv(conn, 65536)
            if not data:
                break
            chunks.append(data); got += len(data)
        return b"".join(chunks)
    sent, received = await asyncio.gather(loop.sock_sendall(client, payload),
                                          receive(len(payload)))
    buf = bytearray(10)
    await loop.sock_sendall(conn, b"0123456789")
    n = 0
    while n < 10:
        n += await loop.sock_recv_into(client, memoryview(buf)[n:])
    # sock_sendfile (falls back to send on non-regular or not: both are selector driven)
    with open("data.bin", "wb") as f:
        f.write(b"z" * 500000)
    with open("data.bin", "rb") as f:
        count = await loop.sock_sendfile(client, f)
    got = await receive(500000)
    # UDP
    u1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u1.setblocking(False)
    u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u2.setblocking(False)
    u1.bind(("127.0.0.1", 0))
    await loop.sock_sendto(u2, b"dgram", u1.getsockname()) if hasattr(loop, "sock_sendto") else u2.sendto(b"dgram", u1.getsockname())
    dgram = (await loop.sock_recvfrom(u1, 100))[0] if hasattr(loop, "sock_recvfrom") else await loop.sock_recv(u1, 100)
    for s in (listener, client, conn, u1, u2):
        s.close()
    return loop_used(loop), received == payload, bytes(buf), count, got == b"z" * 500000, dgram

used, same, buf, count, same_file, dgram = asyncio.run(main())
report(used, same=same, buf=buf, count=count, same_file=same_file, dgram=dgram)
'''


@mode
def test_sock_methods(tmp_path, mode):
    used, r = run_scenario(tmp_path, mode, SOCK_METHODS)
    check_used(mode, used)
    assert r["same"] is True
    assert r["buf"] == "b'0123456789'"
    assert r["count"] == 500000
    assert r["same_file"] is True
    assert r["dgram"] == "b'dgram'"


SUBPROCESSES = LOOP_USED + '''
import asyncio, sys

async def main():
    loop = asyncio.get_running_loop()
    data = b"q" * (3 << 20)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d); "
        "sys.stderr.write('err'); sys.exit(3)",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(data), 30)
    shell = await asyncio.create_subprocess_shell(
        "echo shell; echo line2", stdout=asyncio.subprocess.PIPE)
    lines = [l async for l in shell.stdout]
    await shell.wait()
    slow = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(10)")
    try:
        await asyncio.wait_for(slow.wait(), 0.2)
        timed_out = False
    except asyncio.TimeoutError:
        timed_out = True
    slow.kill()
    killed_rc = await slow.wait()
    return (loop_used(loop), out == data, err, proc.returncode, lines,
            shell.returncode, timed_out, killed_rc)

used, same, err, rc, lines, shell_rc, timed_out, killed_rc = asyncio.run(main())
report(used, same=same, err=err, rc=rc, lines=lines, shell_rc=shell_rc,
       timed_out=timed_out, killed_rc=killed_rc)
'''


@mode
def test_subprocesses(tmp_path, mode):
    used, r = run_scenario(tmp_path, mode, SUBPROCESSES)
    check_used(mode, used)
    assert r["same"] is True
    assert r["err"] == "b'err'"
    assert r["rc"] == 3
    assert r["lines"] == ["b'shell\\n'", "b'line2\\n'"]
    assert r["shell_rc"] == 0
    assert r["timed_out"] is True
    assert r["killed_rc"] == -9


READERS_WRITERS = LOOP_USED + '''
import asyncio, os, signal, socket, threading, time

async def main():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False); b.setblocking(False)
    events = []
    done = loop.create_future()
    def on_read():
        data = b.recv(100)
        events.append(("read", data))
        if data == b"stop":
            loop.remove_reader(b)
            done.set_result(None)
    loop.add_reader(b, on_read)
    for chunk in (b"one", b"two", b"stop"):
        a.send(chunk)
        await asyncio.sleep(0.02)
    await asyncio.wait_for(done, 5)
    removed_again = loop.remove_reader(b)

    # add_writer: fires while the buffer has room; fill it, then drain.
    writes = 0
    full = loop.create_future()
    def on_write():
        nonlocal writes
        try:
            while True:
                a.send(b"x" * 65536)
                writes += 1
        except BlockingIOError:
            loop.remove_writer(a)
            full.set_result(writes)
    loop.add_writer(a, on_write)
    await asyncio.wait_for(full, 5)
    writable_again = loop.create_future()
    loop.add_writer(a, lambda: (loop.remove_writer(a), writable_again.set_result(True)))
    drained = 0
    await asyncio.sleep(0.05)
    early = writable_again.done()          # must not be writable while full
    try:
        while True:
            drained += len(b.recv(1 << 20))
    except BlockingIOError:
        pass
    await asyncio.wait_for(writable_again, 5)

    # Same fd for reading and writing, then modify by removing one.
    both = []
    loop.add_reader(a, lambda: both.append("r"))
    loop.add_writer(a, lambda: (both.append("w"), loop.remove_writer(a)))
    b.send(b"ping")
    await asyncio.sleep(0.05)
    loop.remove_reader(a)
    a.recv(100)

    # Wake-ups: call_soon_threadsafe from a thread, run_in_executor, signals.
    fut = loop.create_future()
    threading.Timer(0.05, loop.call_soon_threadsafe, args=(fut.set_result, "thread")).start()
    from_thread = await asyncio.wait_for(fut, 5)
    in_executor = await loop.run_in_executor(None, lambda: (time.sleep(0.05), "executor")[1])
    sig = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, sig.set_result, "signal")
    threading.Timer(0.05, os.kill, args=(os.getpid(), signal.SIGUSR1)).start()
    from_signal = await asyncio.wait_for(sig, 5)
    loop.remove_signal_handler(signal.SIGUSR1)
    a.close(); b.close()
    return (loop_used(loop), events, removed_again, writes > 0, early, drained > 0,
            sorted(set(both)), from_thread, in_executor, from_signal)

(used, events, removed_again, wrote, early, drained, both, from_thread,
 in_executor, from_signal) = asyncio.run(main())
report(used, events=events, removed_again=removed_again, wrote=wrote, early=early,
       drained=drained, both=both, from_thread=from_thread,
       in_executor=in_executor, from_signal=from_signal)
'''


@mode
def test_add_reader_add_writer_and_wakeups(tmp_path, mode):
    used, r = run_scenario(tmp_path, mode, READERS_WRITERS)
    check_used(mode, used)
    assert r["events"] == [["read", "b'one'"], ["read", "b'two'"], ["read", "b'stop'"]]
    assert r["removed_again"] is False
    assert r["wrote"] is True
    assert r["early"] is False, "add_writer fired while the socket buffer was full"
    assert r["drained"] is True
    assert r["both"] == ["r", "w"]
    assert (r["from_thread"], r["in_executor"], r["from_signal"]) == (
        "thread", "executor", "signal")


TIMERS = LOOP_USED + '''
import asyncio, random, time

async def main():
    loop = asyncio.get_running_loop()
    sel = loop._selector
    calls = []
    real_select = sel.select
    def counting_select(timeout=None):
        calls.append(timeout)
        return real_select(timeout)
    sel.select = counting_select           # instance attribute, on both implementations
    rng = random.Random(5)
    delays = [rng.choice([0.0005, 0.001, 0.0015, 0.003, 0.01, 0.0333, 0.05, 0.1, 0.2])
              for _ in range(60)]
    fired = []
    done = loop.create_future()
    for i, d in enumerate(delays):
        start_loop, start_mono = loop.time(), time.monotonic()
        def cb(i=i, d=d, start_loop=start_loop, start_mono=start_mono):
            fired.append((i, d, loop.time() - start_loop, time.monotonic() - start_mono))
            if len(fired) == len(delays):
                done.set_result(None)
        loop.call_later(d, cb)
    await asyncio.wait_for(done, 10)
    # One lone timer: how many select() calls does the loop need to reach it?
    del calls[:]
    before = time.monotonic()
    await asyncio.sleep(0.25)
    slept = time.monotonic() - before
    lone_calls = len(calls)
    # call_at with an absolute deadline.
    fut = loop.create_future()
    when = loop.time() + 0.1
    loop.call_at(when, lambda: fut.set_result(loop.time()))
    at = await fut
    del sel.select
    return loop_used(loop), fired, slept, lone_calls, at - when, loop._clock_resolution

used, fired, slept, lone_calls, at_late, resolution = asyncio.run(main())
report(used, fired=fired, slept=slept, lone_calls=lone_calls, at_late=at_late,
       resolution=resolution)
'''


@mode
def test_call_later_never_early(tmp_path, mode):
    used, r = run_scenario(tmp_path, mode, TIMERS)
    check_used(mode, used)
    assert len(r["fired"]) == 60
    res = r["resolution"]
    early = [(i, d, lt, mono) for i, d, lt, mono in r["fired"]
             if lt < d - res or mono < d - res]
    assert not early, "callbacks ran before their delay: %s" % early
    # Firing order follows the deadlines.
    late = max(lt - d for i, d, lt, mono in r["fired"])
    assert late < 1.0, "a callback was more than a second late: %r" % late
    assert r["slept"] >= 0.25
    assert r["at_late"] >= -res
    # No busy loop: one sleep(0.25) on an idle loop takes a handful of select()s
    # (a selector rounding its timeout down would spin until the deadline).
    assert r["lone_calls"] <= 4, r["lone_calls"]
