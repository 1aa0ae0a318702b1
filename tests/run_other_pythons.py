#!/usr/bin/env python3
"""The behaviour suites on other CPython versions, each judged against its own stdlib and
its own test_selectors (run by .ci/run; not part of `python -m pytest`).

    python tests/run_other_pythons.py 3.12 3.13
    python tests/run_other_pythons.py --asyncio 3.14 3.15     (in the sid root: .ci/run)

For each version: a fresh venv with pytest, hypothesis and maturin; a wheel built for it
(release, without LTO: the same code in a third of the build time) and installed there; then
every test under FOLDERS with that venv's Python (its own test_selectors on both modules among
them: parity/test_cpython_selectors.py). With --asyncio also that version's whole test_asyncio,
with `selectors` resolving to rselectors, compared test by test with its run on the stdlib
(tests/support/cpython/compare_stdlib_suites.py). A version that is not installed fails:
asking for it is the point. Prints the time of every step; exit status 0 when everything passed.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every test file under these folders of tests/ runs on each version (tests/README.md): the
# behaviour compared with that version's stdlib (its own test_selectors among it), timeouts,
# reliability and rselectors' own entry points. consumers/ (CPython's suites of them, gevent:
# minutes) and platforms/ (one build or OS each) run on the main interpreter only.
FOLDERS = ["parity", "timeouts", "reliability", "runner"]
SUITES = [os.path.join("tests", folder) for folder in FOLDERS]


def log(msg):
    """A line of progress, named after the script that runs (run_free_threaded.py uses these)."""
    script = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    print("[%s %s] %s" % (script, time.strftime("%H:%M:%S"), msg), flush=True)


def find_python(version):
    """An interpreter of this version: pyenv's, or python3.X on PATH."""
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


def step(name, cmd, timeout, **kwargs):
    """Run cmd; return (ok, seconds, output tail)."""
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
        ok, out = proc.returncode == 0, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        ok, out = False, "%s timed out after %ss\n%s" % (name, timeout, e.stdout or "")
    seconds = time.monotonic() - started
    log("%s: %s in %.0fs" % (name, "ok" if ok else "FAILED", seconds))
    return ok, seconds, out


def run_version(version, with_asyncio, workdir):
    """Returns (ok, report lines)."""
    python = find_python(version)
    if python is None:
        return False, ["CPython %s: not installed" % version]
    report = []
    env = dict(os.environ, CARGO_PROFILE_RELEASE_LTO="false",
               CARGO_PROFILE_RELEASE_CODEGEN_UNITS="16")
    env.pop("RSELECTORS_INSTALL", None)
    # A target directory of its own: this may run in a chroot whose build scripts the host
    # could not run (a newer glibc), and must not invalidate the default build's cache.
    env.setdefault("CARGO_TARGET_DIR", os.path.join(ROOT, "target", "other-pythons"))
    venv = os.path.join(workdir, "venv" + version)
    vpython = os.path.join(venv, "bin", "python")
    ok, secs, out = step("%s venv" % version, [python, "-m", "venv", venv], 300)
    if ok:
        ok, more, out = step("%s pip install tools" % version,
                             [vpython, "-m", "pip", "install", "-q", "pytest", "hypothesis",
                              "maturin>=1.9,<2.0"], 900)
        secs += more
    report.append("CPython %s: venv and tools %.0fs" % (version, secs))
    if not ok:
        return False, report + [out[-3000:]]
    wheels = os.path.join(workdir, "wheels" + version)
    ok, secs, out = step("%s build" % version,
                         [os.path.join(venv, "bin", "maturin"), "build", "--release",
                          "-i", vpython, "-o", wheels], 1200, cwd=ROOT, env=env)
    report.append("CPython %s: build %s, %.0fs" % (version, "ok" if ok else "FAILED", secs))
    if not ok:
        return False, report + [out[-3000:]]
    (wheel,) = glob.glob(os.path.join(wheels, "*.whl"))
    ok, _, out = step("%s install wheel" % version,
                      [vpython, "-m", "pip", "install", "-q", "--no-deps", wheel], 300)
    if not ok:
        return False, report + [out[-3000:]]

    all_ok = True
    ok, secs, out = step("%s behaviour suites" % version,
                         [vpython, "-m", "pytest", "-q", "-p", "no:cacheprovider"] + SUITES,
                         1800, cwd=ROOT, env=env)
    summary = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    report.append("CPython %s: behaviour suites (incl. its own test_selectors) %.0fs: %s"
                  % (version, secs, summary[-1] if summary else "no summary"))
    if not ok:
        all_ok = False
        report.extend("    " + line for line in out.splitlines()
                      if line.startswith(("FAILED", "ERROR")))
    # Which warnings the suites met (pytest's summary, first lines): new ones show up here.
    lines = out.splitlines()
    if any("warnings summary" in line for line in lines):
        start = next(i for i, line in enumerate(lines) if "warnings summary" in line)
        warned = [line for line in lines[start + 1:start + 40] if "Warning" in line]
        report.extend("    warning: " + line.strip() for line in sorted(set(warned)))
    if with_asyncio:
        ok, secs, out = step("%s test_asyncio" % version,
                             [vpython,
                              os.path.join(ROOT, "tests", "support", "cpython",
                                           "compare_stdlib_suites.py"),
                              "test.test_asyncio", "-u", "network,cpu", "-j", "4"],
                             2400, env=env)
        report.append("CPython %s: %s" % (version, out.strip().replace("\n", "\n    ")))
        all_ok = all_ok and ok
    return all_ok, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("versions", nargs="+", help="e.g. 3.12 3.13")
    parser.add_argument("--asyncio", action="store_true",
                        help="also compare each version's test_asyncio on both modules")
    args = parser.parse_args(argv)
    failed = []
    reports = []
    with tempfile.TemporaryDirectory(prefix="rselectors-pythons-") as workdir:
        for version in args.versions:
            started = time.monotonic()
            ok, report = run_version(version, args.asyncio, workdir)
            report.append("CPython %s: %s, %.0fs in all"
                          % (version, "ok" if ok else "FAILED", time.monotonic() - started))
            reports.extend(report)
            if not ok:
                failed.append(version)
    print("\n".join(reports))
    if failed:
        print("FAILED on: %s" % " ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
