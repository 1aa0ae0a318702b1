#!/usr/bin/env python3
"""The suites on a free-threaded CPython 3.13 with the GIL off (.ci/run's free-threaded stage).

    python tests/run_free_threaded.py

No free-threaded 3.14 can be had here, and pyo3 0.29+ builds free-threaded extensions for
3.14t+ only; pyo3 0.28 still targets 3.13t. So: the interpreter from TOOL (built once per
machine into its cache; skipped, saying so, when the tool is absent), a copy of the crate under
target/free-threaded/ with `pyo3 = "=0.28"` (the tracked Cargo.toml is never edited), a wheel
of it for 3.13t in a venv of its own; then a check that importing rselectors leaves the GIL off
(without PYTHON_GIL=0, which would force it), and every test under FOLDERS with PYTHON_GIL=0,
the thread stress with RSELECTORS_SLOW=1 (soak-type and at length). Prints each step's time and each suite's
counts; exit status 0 when everything passed.
"""

import os
import re
import shutil
import sys
import time
import xml.etree.ElementTree as ET

from run_other_pythons import step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Relative to the checkout (as .ci/run gives it).
TOOL = os.path.join(ROOT, os.environ.get("FREE_THREADED_TOOL",
                                         "../shared/tools/build-cpython-ft.sh"))
PREFIX = os.environ.get("FREE_THREADED_PREFIX", "/var/cache/cpython-ft/3.13.5")
WORK = os.path.join(ROOT, "target", "free-threaded")
PYO3 = "=0.28"
# hypothesis 6.155.7 is the newest pure-Python release: later ones carry an extension built
# with pyo3 0.30, which cannot build for 3.13t. pytest as in the project's own venvs.
TOOLS = ["pytest==9.2.0", "hypothesis==6.155.7", "maturin>=1.9,<2.0"]
# Every test file under these folders of tests/ (tests/README.md): the behaviour compared with
# the stdlib (CPython's test_selectors among it), timeouts, and reliability, threads above all.
FOLDERS = ["parity", "timeouts", "reliability"]
# Run on its own with RSELECTORS_SLOW=1: its soak-type tests, and its contention tests at
# length. (The other soak-type tests, single-threaded, stay in .ci/run's slow stage.)
THREAD_SOAK = "tests/reliability/test_thread_stress.py"
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "pyproject.toml", "README.md", "src",
               "python"]


def run(name, cmd, timeout, **kwargs):
    """run_other_pythons.step, and the output's tail when it failed."""
    ok, seconds, out = step(name, cmd, timeout, **kwargs)
    if not ok:
        print(out[-4000:])
    return ok, seconds, out


def copy_crate():
    """target/free-threaded/crate: the crate's sources with pyo3 pinned to PYO3."""
    crate = os.path.join(WORK, "crate")
    shutil.rmtree(crate, ignore_errors=True)
    os.makedirs(crate)
    for name in CRATE_FILES:
        src = os.path.join(ROOT, name)
        (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(crate, name))
    manifest = os.path.join(crate, "Cargo.toml")
    with open(manifest) as f:
        text, n = re.subn(r'(?m)^pyo3 = "[^"]*"$', 'pyo3 = "%s"' % PYO3, f.read())
    if n != 1:
        raise SystemExit("Cargo.toml: no line `pyo3 = \"...\"` to pin to %s" % PYO3)
    with open(manifest, "w") as f:
        f.write(text)
    return crate


def test_file(classname):
    """The test file of a JUnit classname ("tests.parity.test_mapping[.TestClass]")."""
    parts = classname.split(".")
    for n in range(len(parts), 0, -1):
        path = "/".join(parts[:n]) + ".py"
        if os.path.isfile(os.path.join(ROOT, path)):
            return path
    return "?"


def suite_counts(junit_xml):
    """{test file: [passed, skipped, failed]} from pytest's JUnit XML."""
    counts = {}
    for case in ET.parse(junit_xml).iter("testcase"):
        name = test_file(case.get("classname", ""))
        outcome = 2 if case.find("failure") is not None or case.find("error") is not None \
            else 1 if case.find("skipped") is not None else 0
        counts.setdefault(name, [0, 0, 0])[outcome] += 1
    return counts


def main():
    if not os.access(TOOL, os.X_OK):
        print("SKIPPED: %s is absent, so nothing runs on a free-threaded CPython here" % TOOL)
        return 0
    python = os.path.join(PREFIX, "bin", "python3.13t")
    ok, interpreter_s, _ = run("interpreter (%s)" % TOOL, [TOOL, PREFIX], 1800)
    if not ok:
        return 1

    started = time.monotonic()
    crate = copy_crate()
    venv = os.path.join(WORK, "venv")
    vpython = os.path.join(venv, "bin", "python")
    ok = os.path.exists(vpython) or run("venv", [python, "-m", "venv", venv], 300)[0]
    ok = ok and run("pip install tools", [vpython, "-m", "pip", "install", "-q"] + TOOLS, 900)[0]
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(WORK, "cargo"),
               # As tests/run_other_pythons.py: the same code in a third of the build time.
               CARGO_PROFILE_RELEASE_LTO="false", CARGO_PROFILE_RELEASE_CODEGEN_UNITS="16")
    for name in ("PYTHON_GIL", "RSELECTORS_INSTALL"):
        env.pop(name, None)
    wheels = os.path.join(WORK, "wheels")
    shutil.rmtree(wheels, ignore_errors=True)
    ok = ok and run("build (pyo3 %s)" % PYO3,
                    [os.path.join(venv, "bin", "maturin"), "build", "--release", "-i", vpython,
                     "-o", wheels, "-m", os.path.join(crate, "Cargo.toml")], 1800, env=env)[0]
    ok = ok and run("install wheel", [vpython, "-m", "pip", "install", "-q", "--no-deps",
                                      "--force-reinstall"]
                    + [os.path.join(wheels, w) for w in os.listdir(wheels)], 300)[0]
    build_s = time.monotonic() - started
    if not ok:
        return 1

    # Without PYTHON_GIL=0: an extension that does not declare itself free-threading-safe turns
    # the GIL back on at import (with a RuntimeWarning, an error here).
    ok, _, _ = run("GIL off after import", [vpython, "-W", "error", "-c", (
        "import sys, sysconfig\n"
        "assert sysconfig.get_config_var('Py_GIL_DISABLED') == 1, 'not a free-threaded build'\n"
        "assert not sys._is_gil_enabled(), 'GIL on before the import'\n"
        "import rselectors, rselectors._rselectors\n"
        "assert not sys._is_gil_enabled(), 'importing rselectors turned the GIL on'\n"
        "assert rselectors.__file__.startswith(sys.prefix), rselectors.__file__\n")],
        60, cwd=WORK, env=env)
    if not ok:
        return 1

    folders = [os.path.join("tests", folder) for folder in FOLDERS]
    runs = [("suites", folders + ["--ignore", THREAD_SOAK], {}),
            ("thread soak", [THREAD_SOAK], {"RSELECTORS_SLOW": "1"})]
    tests_s, counts = 0.0, {}
    for name, files, extra in runs:
        junit = os.path.join(WORK, "junit-%s.xml" % name.replace(" ", "-"))
        if os.path.exists(junit):
            os.remove(junit)
        passed, seconds, out = run(name, [vpython, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                          "-rfE", "--junitxml", junit] + files,
                                   1800, cwd=ROOT, env=dict(env, PYTHON_GIL="0", **extra))
        ok, tests_s = ok and passed, tests_s + seconds
        for line in out.splitlines():
            if line.startswith(("FAILED", "ERROR")) or re.search(r"\d+ (passed|failed)", line):
                print("    " + line)
        if os.path.exists(junit):
            counts.update(suite_counts(junit))
    print("%-44s %6s %7s %6s" % ("suite (PYTHON_GIL=0)", "passed", "skipped", "failed"))
    for name, (passed, skipped, failed) in sorted(counts.items()):
        print("%-44s %6d %7d %6d" % (name, passed, skipped, failed))
    print("free-threaded: interpreter %.0fs, crate build %.0fs, tests %.0fs"
          % (interpreter_s, build_s, tests_s))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
