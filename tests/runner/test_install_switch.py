"""The ``RSELECTORS_INSTALL`` environment switch.

``python/rselectors_install.pth`` (installed into site-packages next to the
package) runs one line at every interpreter start: if ``RSELECTORS_INSTALL``
is set to anything but "" or "0", it calls
``rselectors._install.install_from_environment()``; otherwise that line costs
one ``os.environ`` lookup and rselectors is not even imported.  Child
processes inherit the variable, so a whole process tree runs on rselectors.

The .pth only acts from a site directory.  These tests put the repository's
``rselectors_install.pth`` into a temporary user site (``PYTHONUSERBASE``),
next to a path entry for the package as a real installation has it, and
check children started with and without the variable.  A last test checks the
interpreter's own site-packages once the packaging installs the .pth there
(skipped, with the reason, while the installed build lacks it).
"""

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import rselectors
from rselectors import _install

REPO = Path(__file__).resolve().parents[2]
PTH = REPO / "python" / "rselectors_install.pth"
PACKAGE_PARENT = Path(rselectors.__file__).resolve().parent.parent

PROBE = textwrap.dedent('''\
    import json, os, subprocess, sys
    info = {"imported_at_start": "rselectors" in sys.modules}
    import selectors, socketserver, multiprocessing.connection, asyncio
    loop = asyncio.new_event_loop()
    info.update({
        "selectors": selectors.__name__,
        "subprocess._PopenSelector": subprocess._PopenSelector.__module__,
        "socketserver._ServerSelector": socketserver._ServerSelector.__module__,
        "multiprocessing.connection._WaitSelector":
            multiprocessing.connection._WaitSelector.__module__,
        "asyncio loop selector": type(loop._selector).__module__,
    })
    loop.close()
    if len(sys.argv) > 1:   # also ask a child, started with the inherited environment
        out = subprocess.run([sys.executable, __file__], capture_output=True,
                             text=True, check=True).stdout
        info["child"] = json.loads(out.splitlines()[-1])
    print(json.dumps(info))
''')

RSELECTORS_EVERYWHERE = {
    "selectors": "rselectors",
    "subprocess._PopenSelector": "rselectors",
    "socketserver._ServerSelector": "rselectors",
    "multiprocessing.connection._WaitSelector": "rselectors",
    "asyncio loop selector": "rselectors",
}
STDLIB_EVERYWHERE = {k: "selectors" for k in RSELECTORS_EVERYWHERE}


@pytest.fixture(scope="module")
def user_base(tmp_path_factory):
    """A PYTHONUSERBASE whose site-packages holds the package path and the .pth."""
    base = tmp_path_factory.mktemp("userbase")
    user_site = Path(sysconfig.get_path("purelib", "posix_user",
                                        vars={"userbase": str(base)}))
    user_site.mkdir(parents=True)
    # As in a real installation the package is importable from the directory
    # holding the .pth ("rselectors.pth" sorts before "rselectors_install.pth",
    # like maturin's editable-install path file).
    (user_site / "rselectors.pth").write_text(str(PACKAGE_PARENT) + "\n")
    shutil.copy(PTH, user_site / PTH.name)
    return base


def run_probe(tmp_path, env_updates, python_args=(), user_base=None, ask_child=True):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = dict(os.environ)
    for var in ("RSELECTORS_INSTALL", "PYTHONPATH", "PYTHONSAFEPATH", "PYTHONNOUSERSITE"):
        env.pop(var, None)
    if user_base is not None:
        env["PYTHONUSERBASE"] = str(user_base)
    env.update(env_updates)
    cmd = [sys.executable] + list(python_args) + [str(script)]
    if ask_child:
        cmd.append("child")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Error processing line" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def _selector_fields(info):
    return {k: info[k] for k in RSELECTORS_EVERYWHERE}


def test_pth_file_is_one_cheap_import_line():
    lines = [l for l in PTH.read_text().splitlines() if l.strip()]
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("import os;")         # site.py executes "import " lines
    # Nothing is imported unless the variable asks for it.
    assert line.index("os.environ.get(") < line.index("__import__(")


def test_env_set_installs_in_child_and_grandchild(tmp_path, user_base):
    info = run_probe(tmp_path, {"RSELECTORS_INSTALL": "1"}, user_base=user_base)
    assert info["imported_at_start"] is True
    assert _selector_fields(info) == RSELECTORS_EVERYWHERE
    assert _selector_fields(info["child"]) == RSELECTORS_EVERYWHERE


@pytest.mark.parametrize("value", [None, "", "0"])
def test_env_unset_or_off_changes_nothing(tmp_path, user_base, value):
    env = {} if value is None else {"RSELECTORS_INSTALL": value}
    info = run_probe(tmp_path, env, user_base=user_base)
    assert info["imported_at_start"] is False      # not even imported
    assert _selector_fields(info) == STDLIB_EVERYWHERE
    assert _selector_fields(info["child"]) == STDLIB_EVERYWHERE


def test_other_values_switch_on(tmp_path, user_base):
    info = run_probe(tmp_path, {"RSELECTORS_INSTALL": "yes"}, user_base=user_base,
                     ask_child=False)
    assert _selector_fields(info) == RSELECTORS_EVERYWHERE


def test_python_dash_S_skips_site_and_the_switch(tmp_path, user_base):
    # -S: no site processing, so no .pth (documented limitation).
    env = {"RSELECTORS_INSTALL": "1", "PYTHONPATH": str(PACKAGE_PARENT)}
    info = run_probe(tmp_path, env, python_args=["-S"], user_base=user_base,
                     ask_child=False)
    assert info["imported_at_start"] is False
    assert _selector_fields(info) == STDLIB_EVERYWHERE


def test_runner_with_the_switch(tmp_path, user_base):
    # python -m rselectors in a process that already installed at start-up.
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = dict(os.environ, RSELECTORS_INSTALL="1", PYTHONUSERBASE=str(user_base))
    proc = subprocess.run([sys.executable, "-m", "rselectors", str(script), "child"],
                          capture_output=True, text=True, timeout=60, env=env,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.splitlines()[-1])
    assert _selector_fields(info) == RSELECTORS_EVERYWHERE
    assert _selector_fields(info["child"]) == RSELECTORS_EVERYWHERE


def test_environment_requests_install():
    f = _install.environment_requests_install
    assert f({}) is False
    assert f({"RSELECTORS_INSTALL": ""}) is False
    assert f({"RSELECTORS_INSTALL": "0"}) is False
    assert f({"RSELECTORS_INSTALL": "1"}) is True
    assert f({"RSELECTORS_INSTALL": "true"}) is True
    assert _install.ENV_VAR == "RSELECTORS_INSTALL"


def _installed_pth():
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    for d in dirs:
        candidate = Path(d) / PTH.name
        if candidate.exists():
            return candidate
    return None


def test_installed_interpreter_honours_the_switch(tmp_path):
    installed = _installed_pth()
    if installed is None:
        pytest.skip("%s is not installed in this interpreter's site-packages: the "
                    "installed build predates the packaging of the .pth (maturin "
                    "needs it listed in [tool.maturin] include)" % PTH.name)
    assert installed.read_text() == PTH.read_text(), "installed .pth is stale"
    info = run_probe(tmp_path, {"RSELECTORS_INSTALL": "1"})
    assert _selector_fields(info) == RSELECTORS_EVERYWHERE
    assert _selector_fields(info["child"]) == RSELECTORS_EVERYWHERE
    info = run_probe(tmp_path, {})
    assert info["imported_at_start"] is False
    assert _selector_fields(info) == STDLIB_EVERYWHERE
