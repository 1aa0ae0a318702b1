"""Typing: the stubs (``python/rselectors/__init__.pyi``, ``py.typed``) under mypy.

- ``mypy --strict tests/platforms/typing/sample.py``: a typed program using every public
  name through ``import rselectors as selectors``, with ``assert_type`` on what
  the stubs give and ``# type: ignore[...]`` on misuses they must reject
  (``--strict`` warns about unused ignores, so an accepted misuse fails). The
  sample is also run, so its claims hold at run time.
- The document's examples (``examples/echo_server.py``, ``echo_client.py``,
  untyped programs that must stay byte-identical) under ``mypy --strict``,
  three ways: unchanged against typeshed's ``selectors``; unchanged with
  ``selectors`` resolving to rselectors' stub (a copy of mypy's typeshed whose
  ``stdlib/selectors.pyi`` is ours: the static analogue of
  ``python -m rselectors``); and with ``import selectors`` rewritten to
  ``import rselectors as selectors``.  ``--strict`` cannot pass on these
  programs on any ``selectors``: they have two unannotated functions
  (``no-untyped-def``) and call socket methods on ``key.fileobj``, which
  typeshed types ``int | HasFileno`` (``union-attr``).  So the check is that
  all three runs report exactly the same errors, and only those: rselectors'
  stubs add no error and hide none.
- ``python -m mypy.stubtest rselectors`` with ``tests/platforms/typing/stubtest_allowlist.txt``
  (empty).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import mypy  # noqa: F401
    import mypy.api  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip("mypy is not installed (pip install '.[test]' installs it)",
                allow_module_level=True)

import rselectors

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(__file__).resolve().parent / "typing" / "sample.py"
ALLOWLIST = SAMPLE.with_name("stubtest_allowlist.txt")
PACKAGE = Path(rselectors.__file__).resolve().parent
STUB = PACKAGE / "__init__.pyi"
EXAMPLES = ["echo_server.py", "echo_client.py"]
TIMEOUT = 300

# What --strict reports on the unchanged examples, whatever `selectors` is: the
# programs' own missing annotations and their use of key.fileobj as a socket.
EXPECTED_EXAMPLE_ERRORS = sorted(
    [("echo_server.py", 7, "no-untyped-def"), ("echo_server.py", 26, "no-untyped-def")]
    + [("echo_client.py", line, "union-attr") for line in (32, 32, 37, 37, 69, 69)])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mypy_cache")


def run_mypy(args, cwd, cache_dir):
    cmd = [sys.executable, "-m", "mypy", "--cache-dir", str(cache_dir),
           "--no-error-summary", "--show-error-codes", "--hide-error-context",
           "--no-pretty", "--no-color-output"] + list(args)
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    proc = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)
    return proc


def parse_errors(output):
    """[(file name, line, code)] of the error lines (notes dropped)."""
    errors = []
    for line in output.splitlines():
        m = re.match(r"(.+?):(\d+): error: .*\[([a-z-]+)\]$", line)
        if m:
            errors.append((Path(m.group(1)).name, int(m.group(2)), m.group(3)))
        elif ": error:" in line:
            errors.append((line, 0, "unparsed"))
    return sorted(errors)


def test_py_typed_and_stub_ship_with_the_package():
    assert (PACKAGE / "py.typed").is_file()
    assert STUB.is_file()


def test_stub_lists_every_public_name():
    text = STUB.read_text()
    for name in rselectors.__all__:
        assert re.search(r"^\s*(class|def) %s\b|^%s\s*[:=]" % (name, name), text,
                         re.M), name


def test_sample_runs():
    proc = subprocess.run([sys.executable, str(SAMPLE)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "sample ok"


def test_mypy_strict_sample(tmp_path, cache_dir):
    proc = run_mypy(["--strict", str(SAMPLE)], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_sample_rejects_misuse(tmp_path, cache_dir):
    # Without its ignores the sample's misuse() must fail with exactly those errors.
    source = SAMPLE.read_text()
    stripped = re.sub(r"  # type: ignore\[[a-z-]+\]", "", source)
    copy = tmp_path / "sample_no_ignores.py"
    copy.write_text(stripped)
    proc = run_mypy(["--strict", str(copy)], tmp_path, cache_dir)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    expected = sorted(("sample_no_ignores.py", i + 1, m.group(1))
                      for i, line in enumerate(source.splitlines())
                      for m in [re.search(r"# type: ignore\[([a-z-]+)\]", line)] if m)
    assert len(expected) == 6
    assert parse_errors(proc.stdout) == expected, proc.stdout


@pytest.fixture(scope="module")
def rselectors_typeshed(tmp_path_factory):
    """A copy of mypy's typeshed whose stdlib selectors.pyi is rselectors' stub."""
    import mypy as mypy_pkg
    src = Path(mypy_pkg.__file__).resolve().parent / "typeshed"
    dst = tmp_path_factory.mktemp("typeshed") / "typeshed"
    shutil.copytree(src, dst)
    shutil.copy(STUB, dst / "stdlib" / "selectors.pyi")
    return dst


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory, cache_dir, rselectors_typeshed):
    base = tmp_path_factory.mktemp("examples")
    runs = {}
    # 1. unchanged, typeshed's selectors.
    orig = base / "stdlib"
    orig.mkdir()
    for name in EXAMPLES:
        shutil.copy(ROOT / "examples" / name, orig / name)
        assert (orig / name).read_bytes() == (ROOT / "examples" / name).read_bytes()
    runs["stdlib"] = run_mypy(["--strict"] + EXAMPLES, orig, cache_dir / "1")
    # 2. unchanged, `selectors` is rselectors' stub.
    runs["as-selectors"] = run_mypy(
        ["--strict", "--custom-typeshed-dir", str(rselectors_typeshed)] + EXAMPLES,
        orig, cache_dir / "2")
    # 3. `import rselectors as selectors`.
    rewritten = base / "rewritten"
    rewritten.mkdir()
    for name in EXAMPLES:
        text = (ROOT / "examples" / name).read_text()
        assert text.count("\nimport selectors\n") + text.startswith("import selectors\n") == 1
        new = re.sub(r"^import selectors$", "import rselectors as selectors", text,
                     flags=re.M)
        (rewritten / name).write_text(new)
    runs["import-rselectors"] = run_mypy(["--strict"] + EXAMPLES, rewritten,
                                         cache_dir / "3")
    return runs


@pytest.mark.parametrize("how", ["stdlib", "as-selectors", "import-rselectors"])
def test_mypy_strict_examples_report_only_the_programs_own_errors(example_runs, how):
    proc = example_runs[how]
    assert not proc.stderr.strip(), proc.stderr
    assert proc.returncode == 1, proc.stdout
    assert parse_errors(proc.stdout) == EXPECTED_EXAMPLE_ERRORS, proc.stdout


def test_mypy_strict_examples_same_on_rselectors_as_on_stdlib(example_runs):
    outputs = {how: sorted(proc.stdout.splitlines()) for how, proc in example_runs.items()}
    assert outputs["as-selectors"] == outputs["stdlib"]
    assert outputs["import-rselectors"] == outputs["stdlib"]


def test_examples_resolve_to_rselectors_stub_when_substituted(tmp_path, cache_dir,
                                                              rselectors_typeshed):
    # The custom-typeshed run really reads our stub: rselectors-only names exist.
    probe = tmp_path / "probe.py"
    probe.write_text("import selectors\nreveal_type(selectors.install)\n"
                     "reveal_type(selectors.EventLoopPolicy)\n")
    proc = run_mypy(["--strict", "--custom-typeshed-dir", str(rselectors_typeshed),
                     str(probe)], tmp_path, cache_dir / "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Revealed type is "def ()"' in proc.stdout
    assert "selectors.EventLoopPolicy" in proc.stdout


def test_stubtest(tmp_path):
    cmd = [sys.executable, "-m", "mypy.stubtest", "rselectors",
           "--allowlist", str(ALLOWLIST), "--mypy-config-file", os.devnull]
    import rselectors
    if getattr(rselectors._rselectors, "_ON_LIBKQUEUE", False):
        cmd += ["--allowlist", str(ALLOWLIST.with_name("stubtest_allowlist_libkqueue.txt"))]
    proc = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout, proc.stdout


def test_stubtest_allowlist_is_short_and_explained():
    entries = [l for l in ALLOWLIST.read_text().splitlines()
               if l.strip() and not l.lstrip().startswith("#")]
    assert len(entries) <= 5
    for entry in entries:
        assert "#" in entry, "allowlist entry without a reason: %r" % entry
