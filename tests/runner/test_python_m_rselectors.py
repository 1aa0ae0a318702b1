"""Tests for ``python -m rselectors`` (the program runner) and ``install()``.

Everything runs in subprocesses so this test process is never altered.  The
runner is checked against the plain interpreter: the same probe program is run
with ``python ...`` and with ``python -m rselectors ...`` and everything it
observes about its own startup (sys.argv, sys.path, the __main__ namespace,
exit status, tracebacks) must be identical, except that ``selectors`` is
rselectors.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

TIMEOUT = 60

PROBE = textwrap.dedent('''\
    """probe docstring"""
    import builtins
    import json
    import sys
    g = globals()
    info = {
        "argv": sys.argv,
        "name": __name__,
        "path0": sys.path[0] if sys.path else None,
        "path": sys.path,
        "file": g.get("__file__", "MISSING"),
        "cached": g.get("__cached__", "MISSING"),
        "package": g.get("__package__", "MISSING"),
        "spec": None if g.get("__spec__") is None else g["__spec__"].name,
        "loader": (__loader__.__name__ if isinstance(__loader__, type)
                   else type(__loader__).__name__),
        "doc": __doc__,
        "keys": sorted(g),
        "main_is_this": sys.modules["__main__"].__dict__ is g,
        "builtins_is_module": g.get("__builtins__") is builtins,
    }
    import selectors
    info["selectors"] = selectors.__name__
    info["selectors_is_rselectors"] = selectors is sys.modules.get("rselectors")
    print("PROBE " + json.dumps(info))
''')

# Fields that legitimately differ between `python` and `python -m rselectors`.
SELECTOR_FIELDS = ("selectors", "selectors_is_rselectors")


def _env():
    env = dict(os.environ)
    for var in ("PYTHONSAFEPATH", "PYTHONINSPECT", "PYTHONSTARTUP"):
        env.pop(var, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_python(args, cwd, input=None, timeout=TIMEOUT):
    return subprocess.run([sys.executable] + list(args), cwd=str(cwd),
                          input=input, capture_output=True, text=True,
                          timeout=timeout, env=_env())


def run_rselectors(args, cwd, input=None, timeout=TIMEOUT):
    return run_python(["-m", "rselectors"] + list(args), cwd, input, timeout)


def probe_output(proc):
    lines = [l for l in proc.stdout.splitlines() if l.startswith("PROBE ")]
    assert len(lines) == 1, (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(lines[0][len("PROBE "):])


def describe(proc):
    return "rc=%r\n--- stdout\n%s\n--- stderr\n%s" % (
        proc.returncode, proc.stdout, proc.stderr)


def compare_with_python(args, cwd, input=None):
    """Run args with python and with python -m rselectors; compare probes."""
    plain = run_python(args, cwd, input)
    ours = run_rselectors(args, cwd, input)
    assert plain.returncode == 0, describe(plain)
    assert ours.returncode == 0, describe(ours)
    expected = probe_output(plain)
    got = probe_output(ours)
    assert expected["selectors"] == "selectors"
    assert not expected["selectors_is_rselectors"]
    assert got["selectors"] == "rselectors", got
    assert got["selectors_is_rselectors"] is True, got
    for field in SELECTOR_FIELDS:
        del expected[field], got[field]
    assert got == expected
    assert ours.stderr == plain.stderr
    return got


def imported_modules(stderr):
    """Module names from `python -X importtime` output."""
    names = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.append(name)
    return names


# --------------------------------------------------------------------------
# running programs as `python` would
# --------------------------------------------------------------------------

def test_script_argv_name_and_selectors(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(PROBE)
    proc = run_rselectors([str(script), "a", "b"], tmp_path)
    assert proc.returncode == 0, describe(proc)
    info = probe_output(proc)
    assert info["argv"] == [str(script), "a", "b"]
    assert info["name"] == "__main__"
    assert info["selectors"] == "rselectors"
    assert info["selectors_is_rselectors"] is True
    assert info["path0"] == str(tmp_path)
    assert info["file"] == str(script)
    assert info["main_is_this"] is True


def test_script_same_as_python(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(PROBE)
    info = compare_with_python([str(script), "a", "b", "--flag", "-c"],
                               tmp_path)
    assert info["argv"] == [str(script), "a", "b", "--flag", "-c"]


def test_relative_script_from_other_directory(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "prog.py").write_text(PROBE)
    (tmp_path / "other").mkdir()
    info = compare_with_python([os.path.join("..", "sub", "prog.py"), "x"],
                               tmp_path / "other")
    assert info["argv"] == [os.path.join("..", "sub", "prog.py"), "x"]
    assert os.path.realpath(info["path0"]) == os.path.realpath(
        str(tmp_path / "sub"))


def test_symlinked_script_path0_is_target_directory(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "prog.py").write_text(PROBE)
    os.symlink(os.path.join("real", "prog.py"), str(tmp_path / "link.py"))
    info = compare_with_python(["link.py"], tmp_path)
    assert info["path0"] == os.path.realpath(str(tmp_path / "real"))


def test_script_importing_sibling_module(tmp_path):
    (tmp_path / "helper_mod_xyz.py").write_text("VALUE = 42\n")
    (tmp_path / "prog.py").write_text(
        "import helper_mod_xyz, selectors\n"
        "print(helper_mod_xyz.VALUE, selectors.__name__)\n")
    proc = run_rselectors([str(tmp_path / "prog.py")], tmp_path.parent)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "42 rselectors\n"


def test_module_same_as_python(tmp_path):
    (tmp_path / "probe_mod_xyz.py").write_text(PROBE)
    info = compare_with_python(["-m", "probe_mod_xyz", "a", "b"], tmp_path)
    assert info["argv"] == [str(tmp_path / "probe_mod_xyz.py"), "a", "b"]
    assert info["name"] == "__main__"
    assert info["spec"] == "probe_mod_xyz"
    assert info["path0"] == str(tmp_path)


def test_package_module_same_as_python(tmp_path):
    pkg = tmp_path / "probe_pkg_xyz"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(PROBE)
    (pkg / "sub.py").write_text(PROBE)
    info = compare_with_python(["-m", "probe_pkg_xyz", "z"], tmp_path)
    assert info["argv"] == [str(pkg / "__main__.py"), "z"]
    assert info["spec"] == "probe_pkg_xyz.__main__"
    info = compare_with_python(["-m", "probe_pkg_xyz.sub"], tmp_path)
    assert info["spec"] == "probe_pkg_xyz.sub"
    assert info["package"] == "probe_pkg_xyz"


def test_command_same_as_python(tmp_path):
    info = compare_with_python(["-c", PROBE, "a", "b"], tmp_path)
    assert info["argv"] == ["-c", "a", "b"]
    assert info["path0"] == ""
    assert info["name"] == "__main__"


def test_stdin_same_as_python(tmp_path):
    info = compare_with_python(["-", "q"], tmp_path, input=PROBE)
    assert info["argv"] == ["-", "q"]


def test_directory_with_main_same_as_python(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "__main__.py").write_text(PROBE)
    info = compare_with_python(["app", "x"], tmp_path)
    assert info["argv"] == ["app", "x"]


# --------------------------------------------------------------------------
# exit status, errors, usage
# --------------------------------------------------------------------------

@pytest.mark.parametrize("body, status", [
    ("import sys\nsys.exit(3)\n", 3),
    ("import sys\nsys.exit(0)\n", 0),
    ("import sys\nsys.exit()\n", 0),
    ("raise SystemExit(7)\n", 7),
    ("print('done')\n", 0),
])
def test_exit_status(tmp_path, body, status):
    script = tmp_path / "prog.py"
    script.write_text(body)
    plain = run_python([str(script)], tmp_path)
    ours = run_rselectors([str(script)], tmp_path)
    assert plain.returncode == status, describe(plain)
    assert ours.returncode == status, describe(ours)
    assert (ours.stdout, ours.stderr) == (plain.stdout, plain.stderr)


def test_exit_with_message(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text("import sys\nsys.exit('bye now')\n")
    ours = run_rselectors([str(script)], tmp_path)
    assert ours.returncode == 1, describe(ours)
    assert ours.stderr == "bye now\n"


def test_uncaught_exception_traceback_like_python(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""\
        import selectors
        def inner():
            raise ValueError("boom " + selectors.__name__)
        def outer():
            inner()
        outer()
    """))
    ours = run_rselectors([str(script)], tmp_path)
    assert ours.returncode == 1, describe(ours)
    assert ours.stderr.startswith("Traceback (most recent call last):\n")
    assert ours.stderr.endswith("ValueError: boom rselectors\n"), ours.stderr
    assert "_runner.py" not in ours.stderr and "runpy" not in ours.stderr
    plain = run_python([str(script)], tmp_path)
    assert plain.returncode == 1
    assert ours.stderr == plain.stderr.replace(
        "boom selectors", "boom rselectors")


def test_uncaught_exception_in_command(tmp_path):
    code = "x = 1\nraise KeyError('k')\n"
    ours = run_rselectors(["-c", code], tmp_path)
    plain = run_python(["-c", code], tmp_path)
    assert ours.returncode == plain.returncode == 1, describe(ours)
    assert ours.stderr == plain.stderr


def test_uncaught_exception_in_module(tmp_path):
    (tmp_path / "failing_mod_xyz.py").write_text("raise RuntimeError('m')\n")
    ours = run_rselectors(["-m", "failing_mod_xyz"], tmp_path)
    plain = run_python(["-m", "failing_mod_xyz"], tmp_path)
    assert ours.returncode == plain.returncode == 1, describe(ours)
    assert ours.stderr == plain.stderr


def test_syntax_error_like_python(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text("def f(:\n    pass\n")
    ours = run_rselectors([str(script)], tmp_path)
    plain = run_python([str(script)], tmp_path)
    assert ours.returncode == plain.returncode == 1, describe(ours)
    assert "SyntaxError" in ours.stderr
    assert ours.stderr == plain.stderr


def test_custom_excepthook_is_used(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""\
        import sys
        def hook(t, v, tb):
            print("HOOK", t.__name__, v, tb.tb_frame.f_code.co_name)
        sys.excepthook = hook
        raise ValueError("x")
    """))
    ours = run_rselectors([str(script)], tmp_path)
    plain = run_python([str(script)], tmp_path)
    assert ours.returncode == plain.returncode == 1, describe(ours)
    assert ours.stdout == plain.stdout == "HOOK ValueError x <module>\n"


def test_keyboard_interrupt_exit_status_like_python(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text("raise KeyboardInterrupt\n")
    ours = run_rselectors([str(script)], tmp_path)
    plain = run_python([str(script)], tmp_path)
    assert ours.returncode == plain.returncode, (describe(ours),
                                                 describe(plain))
    assert "KeyboardInterrupt" in ours.stderr


def test_missing_script(tmp_path):
    missing = tmp_path / "no_such_script.py"
    ours = run_rselectors([str(missing), "a"], tmp_path)
    plain = run_python([str(missing), "a"], tmp_path)
    assert ours.returncode == plain.returncode == 2, describe(ours)
    assert ("can't open file %r: [Errno 2] No such file or directory"
            % str(missing)) in ours.stderr
    assert ours.stderr == plain.stderr
    assert ours.stdout == ""


def test_missing_relative_script(tmp_path):
    ours = run_rselectors(["nope_xyz.py"], tmp_path)
    plain = run_python(["nope_xyz.py"], tmp_path)
    assert ours.returncode == 2, describe(ours)
    assert ours.stderr == plain.stderr


def test_missing_module(tmp_path):
    ours = run_rselectors(["-m", "no_such_module_xyz"], tmp_path)
    plain = run_python(["-m", "no_such_module_xyz"], tmp_path)
    assert ours.returncode == plain.returncode == 1, describe(ours)
    assert "No module named no_such_module_xyz" in ours.stderr
    assert ours.stderr == plain.stderr


def test_no_arguments_prints_usage(tmp_path):
    proc = run_rselectors([], tmp_path)
    assert proc.returncode == 2, describe(proc)
    assert proc.stdout == ""
    assert "usage" in proc.stderr.lower()
    assert "-m module" in proc.stderr and "-c" in proc.stderr


@pytest.mark.parametrize("args", [["-m"], ["-c"], ["--bogus-option"]])
def test_bad_arguments(tmp_path, args):
    proc = run_rselectors(args, tmp_path)
    assert proc.returncode == 2, describe(proc)
    assert "usage" in proc.stderr.lower()


def test_help(tmp_path):
    proc = run_rselectors(["--help"], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert "usage" in proc.stdout.lower()


def test_main_function_usage_without_arguments(tmp_path):
    code = ("import sys\nfrom rselectors._runner import main\n"
            "print('RC', main([]))\n"
            "print('INSTALLED', sys.modules['selectors'].__name__ == 'rselectors')\n")
    proc = run_python(["-c", code], tmp_path)
    assert proc.returncode == 0, describe(proc)
    # Importing rselectors imports the stdlib module (it re-exports its other names), but
    # a usage error must not install.
    assert "RC 2\n" in proc.stdout and "INSTALLED False\n" in proc.stdout
    assert "usage" in proc.stderr.lower()


# --------------------------------------------------------------------------
# install()
# --------------------------------------------------------------------------

INSTALL_BEFORE = textwrap.dedent('''\
    import json, sys
    import asyncio, subprocess, socketserver, multiprocessing.connection
    import selectors as std
    from selectors import DefaultSelector, PollSelector as PS
    # Not module attributes: install() leaves these alone.
    kept = [std, std.DefaultSelector]
    std_names = {
        "popen": subprocess._PopenSelector.__name__,
        "server": socketserver._ServerSelector.__name__,
        "wait": multiprocessing.connection._WaitSelector.__name__,
    }
    before_was_stdlib = (subprocess._PopenSelector.__module__ == "selectors"
                         and asyncio.selector_events.selectors is std)
    import rselectors
    from rselectors._install import install
    install()
    install()  # idempotent
    import selectors
    loop = asyncio.SelectorEventLoop()
    loop_selector_type = type(loop._selector)
    loop.close()
    out = subprocess.run([sys.executable, "-c", "print(42)"],
                         capture_output=True, text=True, timeout=30)
    checks = {
        "before_install_was_stdlib": before_was_stdlib,
        "sys_modules": sys.modules["selectors"] is rselectors,
        "import_selectors": selectors is rselectors,
        "asyncio_selector_events": asyncio.selector_events.selectors is rselectors,
        "asyncio_loop_selector": loop_selector_type is rselectors.DefaultSelector,
        "asyncio_loop_selector_module":
            loop_selector_type.__module__.startswith("rselectors"),
        "subprocess_module": subprocess.selectors is rselectors,
        "subprocess_PopenSelector":
            subprocess._PopenSelector is getattr(rselectors, std_names["popen"]),
        "socketserver_module": socketserver.selectors is rselectors,
        "socketserver_ServerSelector":
            socketserver._ServerSelector is getattr(rselectors, std_names["server"]),
        "mp_connection_module": multiprocessing.connection.selectors is rselectors,
        "mp_connection_WaitSelector":
            multiprocessing.connection._WaitSelector
            is getattr(rselectors, std_names["wait"]),
        "main_from_import_DefaultSelector":
            DefaultSelector is rselectors.DefaultSelector,
        "main_from_import_alias": PS is rselectors.PollSelector,
        "stdlib_module_untouched":
            kept[0].DefaultSelector is kept[1]
            and kept[1].__module__ == "selectors"
            and kept[0].__name__ == "selectors" and kept[0] is not rselectors,
        "main_global_std_rebound": std is rselectors,
        "subprocess_run_works": out.stdout == "42\\n" and out.returncode == 0,
    }
    print("CHECKS " + json.dumps(checks))
''')


def _checks(proc):
    lines = [l for l in proc.stdout.splitlines() if l.startswith("CHECKS ")]
    assert len(lines) == 1, describe(proc)
    return json.loads(lines[0][len("CHECKS "):])


def test_install_rebinds_modules_imported_before(tmp_path):
    proc = run_python(["-c", INSTALL_BEFORE], tmp_path)
    assert proc.returncode == 0, describe(proc)
    checks = _checks(proc)
    failed = sorted(k for k, v in checks.items() if v is not True)
    assert not failed, (failed, checks)


def test_install_rebinds_modules_imported_before_via_runner(tmp_path):
    # Same, but the stdlib modules are imported by the program before it
    # calls install() itself under the runner (install() then runs twice).
    code = INSTALL_BEFORE.replace(
        "import selectors as std\n", "std = sys.modules['selectors']\n")
    proc = run_rselectors(["-c", code], tmp_path)
    assert proc.returncode == 0, describe(proc)
    checks = _checks(proc)
    # Under the runner the stdlib module was never imported: `std` is
    # rselectors already, so the stdlib-specific checks do not apply.
    assert checks.pop("before_install_was_stdlib") is False
    assert checks.pop("stdlib_module_untouched") is False
    assert checks.pop("main_global_std_rebound") is True
    failed = sorted(k for k, v in checks.items() if v is not True)
    assert not failed, (failed, checks)


def test_install_exported_from_package(tmp_path):
    code = ("import rselectors, rselectors._install\n"
            "print(rselectors.install is rselectors._install.install)\n")
    proc = run_python(["-c", code], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "True\n"


def test_stdlib_selectors_is_imported_once_by_rselectors(tmp_path):
    # rselectors re-exports the stdlib module's other names (_BaseSelectorImpl, ...), so
    # importing it imports `selectors` once, under its own name; install() and later imports
    # do not look for it again.
    code = textwrap.dedent('''\
        import sys
        seen = []
        class Spy:
            def find_spec(self, name, path=None, target=None):
                if name == "selectors":
                    seen.append(name)
                return None
        sys.meta_path.insert(0, Spy())
        assert "selectors" not in sys.modules
        import rselectors
        from rselectors._install import install
        install()
        install()
        import selectors
        print(seen, selectors is rselectors)
    ''')
    proc = run_python(["-c", code], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "['selectors'] True\n"


def test_install_rebinds_module_stored_under_other_names(tmp_path):
    code = textwrap.dedent('''\
        import sys, types
        import selectors as std
        holder = types.ModuleType("holder_xyz")
        holder.sel_alias = std
        holder.key_cls = std.SelectorKey
        holder.base = std.BaseSelector
        holder.default = std.DefaultSelector
        holder.unrelated = object
        sys.modules["holder_xyz"] = holder
        sys.modules["weird_entry_xyz"] = None
        import rselectors
        rselectors._install.install()
        print(holder.sel_alias is rselectors,
              holder.key_cls is getattr(rselectors, "SelectorKey", std.SelectorKey),
              holder.base is getattr(rselectors, "BaseSelector", std.BaseSelector),
              holder.default is rselectors.DefaultSelector,
              holder.unrelated is object)
    ''')
    proc = run_python(["-c", code], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "True True True True True\n"


def test_runner_asyncio_and_subprocess_use_rselectors(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent('''\
        import asyncio, subprocess, sys
        import rselectors
        assert sys.modules["selectors"] is rselectors

        async def main():
            loop = asyncio.get_running_loop()
            sel_type = type(loop._selector)

            async def handle(reader, writer):
                data = await reader.read(100)
                writer.write(data.upper())
                await writer.drain()
                writer.close()

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            await writer.drain()
            data = await reader.read(100)
            writer.close()
            server.close()
            await server.wait_closed()
            return sel_type, data

        sel_type, data = asyncio.run(asyncio.wait_for(main(), 20))
        out = subprocess.run([sys.executable, "-c", "print(7)"],
                             capture_output=True, text=True, timeout=30)
        print(sel_type is rselectors.DefaultSelector,
              sel_type.__module__.split(".")[0], data,
              subprocess._PopenSelector.__module__.split(".")[0],
              out.stdout.strip())
    '''))
    proc = run_python(["-X", "importtime", "-m", "rselectors", str(script)],
                      tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "True rselectors b'PING' rselectors 7\n", \
        describe(proc)
    modules = imported_modules(proc.stderr)
    assert "asyncio" in modules
    # rselectors imports the stdlib module (it re-exports its other names) before asyncio.
    assert modules.index("selectors") < modules.index("asyncio")


@pytest.mark.parametrize("how", ["script", "module", "code"])
def test_keyboard_interrupt_traceback_like_python(tmp_path, how):
    """A KeyboardInterrupt leaves through the interpreter (so that the process dies of SIGINT):
    its traceback loses the runner's frames but keeps runpy's under -m, as plain python's."""
    (tmp_path / "interrupted_mod_xyz.py").write_text("def f():\n    raise KeyboardInterrupt\nf()\n")
    args = {"script": [str(tmp_path / "interrupted_mod_xyz.py")],
            "module": ["-m", "interrupted_mod_xyz"],
            "code": ["-c", "def f():\n    raise KeyboardInterrupt\nf()\n"]}[how]
    ours = run_rselectors(args, tmp_path)
    plain = run_python(args, tmp_path)
    assert ours.returncode == plain.returncode != 0, (describe(ours), describe(plain))
    assert ours.stderr == plain.stderr, (ours.stderr, plain.stderr)
