"""The Rust core's own tests (`cargo test`), run as part of the Python suite so that one
command runs every test."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs a Rust toolchain (cargo)")
def test_cargo_test_passes():
    proc = subprocess.run(
        ["cargo", "test", "--quiet", "--all-targets"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )
    summary = [line for line in proc.stdout.splitlines() if line.startswith("test result:")]
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert summary, proc.stdout[-5000:]
    passed = sum(int(line.split(" passed")[0].split()[-1]) for line in summary)
    assert passed >= 20, summary
    print("\n".join(summary))


CROSS_TARGETS = ["x86_64-unknown-freebsd", "x86_64-apple-darwin"]


def installed_targets():
    if shutil.which("rustup") is None:
        return set()
    out = subprocess.run(["rustup", "target", "list", "--installed"],
                         capture_output=True, text=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("target", CROSS_TARGETS)
def test_kqueue_code_compiles_and_is_lint_clean_for(target):
    """The kqueue backend runs on Linux only on libkqueue (.ci/run's libkqueue stage); this
    compiles it (and the rest of the crate) for FreeBSD and macOS, with clippy's -D warnings."""
    if target not in installed_targets():
        pytest.skip("the Rust standard library for %s is not installed "
                    "(rustup target add %s)" % (target, target))
    env = dict(os.environ, PYO3_CROSS_PYTHON_VERSION="3.11")
    proc = subprocess.run(
        ["cargo", "clippy", "--quiet", "--lib", "--target", target, "--", "-D", "warnings"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-5000:]


WINDOWS_TARGET = "x86_64-pc-windows-gnu"


def test_windows_code_compiles_and_is_lint_clean():
    """The Winsock select backend (src/backend/select/winsock.rs) and the crate without its
    POSIX-only parts: compiled for Windows, tests included, with clippy's -D warnings. A check
    needs no linker, so no mingw-w64; nothing here can run it (.github/workflows/wheels.yml's
    windows job does)."""
    if WINDOWS_TARGET not in installed_targets():
        pytest.skip("the Rust standard library for %s is not installed (rustup target add %s):"
                    " the Windows build is not checked" % (WINDOWS_TARGET, WINDOWS_TARGET))
    env = dict(os.environ, PYO3_CROSS_PYTHON_VERSION="3.11")
    proc = subprocess.run(
        ["cargo", "clippy", "--quiet", "--all-targets", "--target", WINDOWS_TARGET,
         "--", "-D", "warnings"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-5000:]
