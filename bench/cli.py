"""`laser-bench NAME`: one sub-command per benchmark module in this package.

Each module exposes ``register(subparsers)``, which adds its sub-parser and sets
``func(args) -> int`` as the default. Modules are imported lazily so that a light
bench (selector) never pays for torch or vLLM imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command name -> module in laser_bench
BENCHES = {
    "selector": "selector_bench",
    "rerank-cost": "rerank_cost",
    "longbench": "longbench",
    "train-cost": "train_cost",
    "load": "load",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="laser-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    wanted = argv[0] if argv and argv[0] in BENCHES else None
    for name, module in BENCHES.items():
        if wanted is None or name == wanted:
            try:
                importlib.import_module(f"laser_bench.{module}").register(sub)
            except ModuleNotFoundError as exc:
                if exc.name != f"laser_bench.{module}":
                    raise
                sub.add_parser(name, help="(not available in this build)")
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.error(f"benchmark {args.bench!r} is not available in this build")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
