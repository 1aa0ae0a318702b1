"""Cross-builds the Windows wheel here and inspects it (.ci/run's windows-wheel stage).

    python tests/platforms/windows_wheel.py [--python 3.11]

`maturin build --release --target x86_64-pc-windows-gnu`, linked by Debian's mingw-w64 (no
Windows Python needed: pyo3 0.30 links pythonXY.dll by raw-dylib, so there is no import
library to make). Then the wheel is read, not run (nothing here can run it; the wheels
workflow's windows job does): its tag, its files, and with `objdump -p` the `.pyd`'s format,
its one export and the DLLs and Winsock functions it imports. Prints `N passed, N failed`.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = "x86_64-pc-windows-gnu"

# What the .pyd may import: Python, Winsock, and what Rust's std and the mingw C runtime take.
ALLOWED_DLLS = {
    "kernel32.dll", "ntdll.dll", "msvcrt.dll", "ws2_32.dll", "bcryptprimitives.dll",
    "api-ms-win-core-synch-l1-2-0.dll", "userenv.dll", "advapi32.dll",
}


def build(python_version, out):
    beside = os.path.join(os.path.dirname(sys.executable), "maturin")
    maturin = beside if os.path.exists(beside) else shutil.which("maturin")
    cmd = [maturin, "build", "--release", "--target", TARGET,
           "-i", "python" + python_version, "--out", out]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    wheels = glob.glob(os.path.join(out, "*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def pe_info(pyd):
    objdump = shutil.which("x86_64-w64-mingw32-objdump") or "objdump"
    return subprocess.run([objdump, "-p", pyd], check=True, capture_output=True,
                          text=True).stdout


def imports_by_dll(dump):
    """{dll name (lower case): [function names]} from objdump's import tables."""
    found, current = {}, None
    for line in dump.splitlines():
        m = re.match(r"\s*DLL Name: (\S+)", line)
        if m:
            current = found.setdefault(m.group(1).lower(), [])
            continue
        if current is not None:
            m = re.match(r"\s*[0-9a-f]+\s+\d+\s+(\S+)$", line)
            if m:
                current.append(m.group(1))
            elif not line.strip():
                current = None
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", default="%d.%d" % sys.version_info[:2])
    args = parser.parse_args()
    tag = "cp" + args.python.replace(".", "")
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""))

    with tempfile.TemporaryDirectory() as tmp:
        wheel = build(args.python, os.path.join(tmp, "dist"))
        name = os.path.basename(wheel)
        print("wheel:", name)
        check("wheel file name tag", name.endswith("-%s-%s-win_amd64.whl" % (tag, tag)), name)
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
            wheel_meta = next(n for n in names if n.endswith(".dist-info/WHEEL"))
            meta = zf.read(wheel_meta).decode()
            print(meta.strip())
            check("WHEEL Tag", "Tag: %s-%s-win_amd64" % (tag, tag) in meta)
            check("not purelib", "Root-Is-Purelib: false" in meta)
            pyds = [n for n in names if n.endswith(".pyd")]
            check("one extension, named for Windows",
                  pyds == ["rselectors/_rselectors.%s-win_amd64.pyd" % tag], str(pyds))
            for wanted in ("rselectors/__init__.py", "rselectors/__init__.pyi",
                           "rselectors/py.typed", "rselectors/_install.py",
                           "rselectors_install.pth"):
                check("ships " + wanted, wanted in names)
            if not pyds:
                return 1
            zf.extract(pyds[0], tmp)
        dump = pe_info(os.path.join(tmp, pyds[0]))
        check("PE32+ x86-64 DLL", "file format pei-x86-64" in dump and "PE32+" in dump)
        exports = re.findall(r"\[\s*\d+\]\s+(\S+)$", dump.split("[Ordinal/Name Pointer] Table")[-1]
                             .split("\n\n")[0], re.M)
        check("exports PyInit__rselectors and nothing else", exports == ["PyInit__rselectors"],
              str(exports))
        dlls = imports_by_dll(dump)
        print("imports:")
        for dll, funcs in sorted(dlls.items()):
            shown = ", ".join(funcs) if len(funcs) <= 6 else "%d functions" % len(funcs)
            print("  %-36s %s" % (dll, shown))
        python_dll = "python%s.dll" % args.python.replace(".", "")
        check("imports %s (raw-dylib), no python3.dll" % python_dll,
              python_dll in dlls and "python3.dll" not in dlls)
        check("imports Winsock's select and WSAGetLastError",
              {"select", "WSAGetLastError"} <= set(dlls.get("ws2_32.dll", ())),
              str(dlls.get("ws2_32.dll")))
        others = set(dlls) - ALLOWED_DLLS - {python_dll}
        check("no other DLL (no mingw runtime DLL to ship)", not others, str(sorted(others)))
    failed = results.count(False)
    print("windows-wheel: %d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
