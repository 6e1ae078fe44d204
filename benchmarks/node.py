"""`python -m benchmarks node`: one pynode, wrk with one thread and 32 keep-alive connections.

* `nosession`     — GET /api/hello (seed 002's hello page: no session at all);
* `session_write` — POST /api/session {"incr": "n"} with the JSESSIONID cookie kept by a wrk
  Lua script, so every request finds the session in memory and writes an attribute
  (StandardManager, distributable: the type policy is checked on every set).

Tomcat 10.1 measured on this machine the same way (one wrk thread, 32 connections): about
45k rps without a session and 48k with a session write; the target is >= 0.6x of that. Tomcat
is not installed on every machine, so its figures are recorded as a reference and the ratio
is against them; the pynode numbers are measured in this run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmarks.load import KEEP_COOKIE_LUA, ratio, wrk_run
from pylab.supervisor import Supervisor
from pylab.topology import Lab, ProcessSpec

TOMCAT_REFERENCE = {"nosession": {"rps": 45000.0}, "session_write": {"rps": 48000.0}}


def _keys(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "requests", "errors")}


def run(duration: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        lab = Lab("bench-node", "one pynode", "node1",
                  [ProcessSpec("node1", "pynode",
                               args=["--route", "node1", "--port", "{port}", "--log-level",
                                     "warning"])], "<bench>")
        sup = Supervisor(lab, Path(tmp) / "run", free_ports=True)
        try:
            sup.up()
            base = sup.url("node1", "/")
            wrk_run(base + "api/hello", 1, 32, 1)  # warm-up
            nosession = wrk_run(base + "api/hello", duration, 32, 1)
            write = wrk_run(base + "api/session", duration, 32, 1, script=KEEP_COOKIE_LUA)
        finally:
            sup.down(timeout=5)
    return {
        "pynode": {"nosession": _keys(nosession), "session_write": _keys(write)},
        "tomcat_reference": TOMCAT_REFERENCE,
        "ratio_pynode_over_tomcat": {
            "nosession": ratio(nosession["rps"], TOMCAT_REFERENCE["nosession"]["rps"]),
            "session_write": ratio(write["rps"], TOMCAT_REFERENCE["session_write"]["rps"]),
        },
        "setup": "wrk -t1 -c32, keep-alive; one pynode process (uvloop); "
                 "Tomcat figures: reference measured earlier on this machine",
    }
