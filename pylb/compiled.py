"""An optional compiled hot path: the same Python source, built with mypyc.

The per-request work of the proxy (the codec, the exchange, the balancers, the sticky layer,
the `set_headers` rendering) is type-annotated Python that mypyc compiles to C extension
modules without a change: measured here it cuts pylb's user CPU per proxied request by about
40 % (docs/pylb.md, "Performance"). The source stays the one truth:

* `pylb compile [--out DIR]` copies `pycommon/` and `pylb/` into `DIR/<stamp>/`, compiles the
  modules in `HOT` there and writes the stamp (a hash of every copied source, the Python
  version and mypyc's version). It needs mypy (which ships mypyc), a C compiler and Python's
  headers.
* `PYLB_COMPILED=DIR/<stamp> pylb serve ...` runs from that copy: `activate` (called by
  `pylb/__init__.py` before anything else is imported) checks the stamp against the sources
  next to this file and puts the copy first on the import path. A stale build (sources
  edited since) is refused with a one-line error, never used silently; without the variable
  nothing changes. `--workers` children inherit the variable.

Behaviour is identical: CI runs the byte-for-byte rewrite model (tests/unit/
test_lb_rewrite_model.py) and a real proxy against a compiled build (tests/integration/
test_lb_compiled.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

ENV = "PYLB_COMPILED"
PACKAGES = ("pycommon", "pylb")
HOT = ("pycommon/http.py", "pylb/upstream.py", "pylb/proxy.py", "pylb/set_headers.py",
       "pylb/sticky.py", "pylb/balancing/base.py", "pylb/balancing/round_robin.py",
       "pylb/balancing/ip_hash.py", "pylb/balancing/hash.py", "pylb/balancing/least_conn.py",
       "pylb/balancing/random_two.py")
STAMP = "STAMP"
_active: str | None = None  # the build directory in use


class CompiledError(Exception):
    pass


def source_root() -> Path:
    """The directory holding the `pycommon` and `pylb` packages this code came from."""
    return Path(__file__).resolve().parent.parent


def _sources(root: Path) -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py"))


def stamp(root: Path) -> str:
    mypyc = importlib.util.find_spec("mypyc")
    version = "none"
    if mypyc is not None:
        from mypy.version import __version__ as version
    h = hashlib.sha256(f"{sys.version}|{version}".encode())
    for p in _sources(root):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build(out: Path, root: Path | None = None) -> Path:
    """Compile a copy of the sources under `out`; returns the build directory."""
    root = root or source_root()
    if importlib.util.find_spec("mypyc") is None:
        raise CompiledError("mypyc is not installed (pip install mypy)")
    dest = out / stamp(root)
    if (dest / STAMP).exists():
        return dest
    tmp = out / (dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for p in _sources(root):
        target = tmp / p.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
    proc = subprocess.run([sys.executable, "-m", "mypyc", *HOT], cwd=tmp,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise CompiledError("mypyc failed: " + " / ".join(tail))
    shutil.rmtree(tmp / "build", ignore_errors=True)
    (tmp / STAMP).write_text(dest.name + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def activate(build_dir: str) -> None:
    """Run from `build_dir` if it was built from exactly these sources (else CompiledError).
    Must run before `pycommon` and any `pylb` submodule is imported."""
    d = Path(build_dir)
    try:
        built = (d / STAMP).read_text().strip()
    except OSError as exc:
        raise CompiledError(f"{ENV}={build_dir}: not a compiled build ({exc.strerror})") from None
    current = stamp(source_root())
    if built != current:
        raise CompiledError(f"{ENV}={build_dir}: built from other sources "
                            f"(stamp {built}, sources {current}); run `pylb compile`")
    if "pycommon" in sys.modules:
        raise CompiledError(f"{ENV}: pycommon was imported before pylb; cannot switch")
    sys.path.insert(0, str(d))  # pycommon, and mypyc's shared runtime module
    import pylb

    pylb.__path__.insert(0, str(d / "pylb"))
    global _active
    _active = str(d)


def active() -> str | None:
    """The compiled build this process runs from, if any."""
    return _active
