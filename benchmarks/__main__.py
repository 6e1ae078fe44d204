"""`python -m benchmarks NAME [--duration S] [--json FILE]`.

Each benchmark is a module `benchmarks/NAME.py` with `run(duration: float) -> dict`; the
result shapes are contracts (DESIGN.md). The table is printed and the JSON written.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

import benchmarks
from benchmarks.load import BenchError, print_table, write_json

_NOT_BENCHMARKS = {"load", "__main__"}


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(benchmarks.__file__).parent)])
                  if m.name not in _NOT_BENCHMARKS and not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("name", choices=available())
    p.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    p.add_argument("--json", default=None, help="write the result here "
                   "(default benchmarks/results/NAME.json)")
    args = p.parse_args(argv)
    mod = importlib.import_module(f"benchmarks.{args.name}")
    try:
        result = mod.run(args.duration)
    except BenchError as exc:
        print(f"benchmark {args.name}: {exc}", file=sys.stderr)
        return 1
    print_table(args.name, result)
    out = Path(args.json) if args.json else Path("benchmarks/results") / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
