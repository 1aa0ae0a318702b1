"""Run the document's echo server and client on rselectors and show what each printed.

    python examples/demo.py

Both programs run unchanged under ``python -m rselectors``, so every ``import selectors``
in them resolves to rselectors. The server listens on localhost:9999 and stops after its
one client has gone.
"""

import os
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 30


def run_on_rselectors(script, **kwargs):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "rselectors", os.path.join(HERE, script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        **kwargs,
    )


def main():
    server = run_on_rselectors("echo_server.py")
    lines = []
    listening = threading.Event()

    def collect():
        for line in server.stdout:
            lines.append(line)
            if line.startswith("waiting for I/O"):
                listening.set()
        listening.set()

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    if not listening.wait(TIMEOUT) or server.poll() is not None:
        server.kill()
        print("".join(lines), end="")
        sys.exit("the echo server did not start listening on localhost:9999")

    client = run_on_rselectors("echo_client.py")
    try:
        client_out, _ = client.communicate(timeout=TIMEOUT)
        server.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        client.kill()
        server.kill()
        sys.exit("the demo did not finish within %d s" % TIMEOUT)
    reader.join(TIMEOUT)

    print("=== echo_server.py (python -m rselectors) ===")
    print("".join(lines), end="")
    print("=== echo_client.py (python -m rselectors) ===")
    print(client_out, end="")
    server_out = "".join(lines)
    # The programs' own race (examples/README.md): the client may stop after the first echo,
    # and the server then dies in read() on the reset connection, as it does on the stdlib.
    race = server.returncode != 0 and "in read" in server_out and (
        "Transport endpoint is not connected" in server_out
        or "ConnectionResetError" in server_out
    )
    ok = client.returncode == 0 and (server.returncode == 0 or race)
    print("=== server exit %d, client exit %d: %s ===" % (
        server.returncode, client.returncode, "ok" if ok else "FAILED"))
    if race:
        print("(the client stopped after the first echo and the server died on the reset: "
              "the programs' own race, the same on the stdlib; see examples/README.md)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
