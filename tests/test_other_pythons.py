"""The behaviour suites on every other CPython the machine has (3.9 to 3.13), each judged
against its own stdlib and its own test_selectors.

For each interpreter: build a wheel for it, install it in a fresh venv with pytest and
hypothesis, and run there the suites that compare rselectors with that version's stdlib.
RSELECTORS_PYTHONS picks versions ("3.9,3.13"; "none" for none); unset means every version
found. A version asked for by name must be present; one merely not installed is skipped.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSIONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
SUITES = [
    "tests/test_differential.py",
    "tests/test_diff_mapping.py",
    "tests/test_diff_objects.py",
    "tests/test_stdlib_names.py",
    "tests/test_diff_concurrency.py",
    "tests/test_cpython_selectors.py",
    "tests/test_runner.py",
    "tests/test_asyncio_api.py",
]
CURRENT = "%d.%d" % sys.version_info[:2]


def requested():
    value = os.environ.get("RSELECTORS_PYTHONS", "").strip()
    if not value:
        return None
    if value == "none":
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def find_python(version):
    """An interpreter of this version: python3.X on PATH, or pyenv's."""
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(os.path.join(pyenv_root, "versions", version + ".*", "bin",
                                               "python" + version)))
    for path in candidates + [shutil.which("python" + version)]:
        if path and os.path.exists(path):
            out = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True)
            if out.stdout.strip() == version:
                return path
    return None


def maturin():
    found = shutil.which("maturin")
    if found:
        return [found]
    return [sys.executable, "-m", "maturin"]


@pytest.mark.parametrize("version", [v for v in VERSIONS if v != CURRENT])
def test_suites_pass_on(version, tmp_path):
    wanted = requested()
    if wanted is not None and version not in wanted:
        pytest.skip("RSELECTORS_PYTHONS=%s leaves out %s" % (os.environ["RSELECTORS_PYTHONS"],
                                                           version))
    python = find_python(version)
    if python is None:
        if wanted is not None:
            pytest.fail("CPython %s was asked for in RSELECTORS_PYTHONS but is not installed"
                        % version)
        pytest.skip("CPython %s is not installed on this machine" % version)

    # A release build without LTO: the same code, a third of the build time.
    env = dict(os.environ, CARGO_PROFILE_RELEASE_LTO="false",
               CARGO_PROFILE_RELEASE_CODEGEN_UNITS="16")
    env.pop("RSELECTORS_INSTALL", None)
    wheels = tmp_path / "wheels"
    build = subprocess.run(maturin() + ["build", "--release", "-i", python, "-o", str(wheels)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = glob.glob(str(wheels / "*.whl"))

    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    vpython = str(venv / "bin" / "python")
    install = subprocess.run([vpython, "-m", "pip", "install", "-q", "pytest", "hypothesis", wheel],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    run = subprocess.run([vpython, "-m", "pytest", "-q", "-p", "no:cacheprovider"] + SUITES,
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    tail = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    summary = [line for line in run.stdout.splitlines() if re.search(r"\d+ passed", line)]
    assert summary, tail
    print("CPython %s: %s" % (version, summary[-1]))
