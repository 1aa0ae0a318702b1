"""The workflow's Windows job (.github/workflows/wheels.yml) runs test files that this Linux
machine collects with its POSIX-only modules at hand, and GitHub Actions never runs here.
Collecting the same files with those modules missing, as on Windows, makes an import of one
by a test's helpers (tests/support once imported fcntl) fail here, not only in the workflow."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
POSIX_ONLY = ("fcntl", "resource", "termios", "pwd", "grp")


def windows_job_test_files():
    workflow = (ROOT / ".github" / "workflows" / "wheels.yml").read_text(encoding="utf-8")
    job = re.search(r"^  windows:\n(.*?)(?=^  \S)", workflow, re.M | re.S).group(1)
    return sorted(set(re.findall(r"tests/[\w/]+\.py", job)))


def test_the_windows_jobs_files_collect_without_posix_only_modules():
    files = windows_job_test_files()
    assert len(files) >= 5, files  # the job's steps still name their files as this reads them
    code = (
        "import sys\n"
        f"for name in {POSIX_ONLY!r}:\n"
        "    sys.modules[name] = None  # `import name` raises ImportError, as on Windows\n"
        "import pytest\n"
        "sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', *sys.argv[1:]]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code, *files], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
