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
