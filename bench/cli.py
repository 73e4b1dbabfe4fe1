"""`laser-bench NAME`: one sub-command per benchmark module in this package.

Each module exposes ``register(subparsers)``, which adds its sub-parser and sets
``func(args) -> int`` as the default. Modules are imported lazily so that a light
bench (selector) never pays for torch or vLLM imports.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO

# sub-command name -> module in laser_bench
BENCHES = {
    "selector": "selector_bench",
    "rerank-cost": "rerank_cost",
    "longbench": "longbench",
    "gsm8k": "gsm8k",
    "mix": "mix",
    "stacks": "stacks",
    "train-cost": "train_cost",
    "load": "load",
    "ope": "ope",
    "snapshot": "snapshot_cost",
    "replicas": "replicas",
}

# Where a bench writes its result; see _results_only_on_stdout.
_results: TextIO | None = None


def emit(text: str) -> None:
    """Write a bench's result (its tables or its JSON document) to standard output."""
    print(text, file=_results or sys.stdout, flush=True)


@contextlib.contextmanager
def _results_only_on_stdout() -> Iterator[None]:
    """vLLM logs to standard output, in this process and in its engine processes. While a
    bench runs, file descriptor 1 points at stderr and only `emit` writes to the real
    stdout, so `laser-bench NAME --json > out.json` holds one JSON document. Nothing to do
    when stdout is not a file descriptor (pytest's capsys)."""
    global _results
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    os.dup2(sys.stderr.fileno(), fd)
    _results = os.fdopen(saved, "w", closefd=False)
    try:
        yield
    finally:
        _results.flush()
        sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)
        _results = None


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
        with _results_only_on_stdout():
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # `python -m laser_bench.cli` runs this file as __main__, a second copy of the module:
    # the benches' `emit` lives in laser_bench.cli, so main() must be that copy's.
    from laser_bench.cli import main as package_main

    raise SystemExit(package_main())
