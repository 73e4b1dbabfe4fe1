"""`laser-train`: LASeR's offline iterative DPO training with a bandit-chosen reward model.

Every TrainConfig field is a flag (--batch-size for batch_size), with the field's help text
and allowed values from training/config.py. Examples:

  laser-train --data gsm8k --iterations 1 --batch-size 2 --n 4 --max-steps 8 --out runs/a
  laser-train --policy fixed:smol-judge --verifier --out runs/b
  laser-train --out runs/a --resume            # continue where runs/a stopped
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from typing import Any

from laser_serve.errors import ConfigError
from laser_serve.training.config import TrainConfig


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="laser-train",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        text = f.metadata["help"]
        if f.metadata["choices"]:
            text += f"; one of: {', '.join(f.metadata['choices'])}"
        hint = hints[f.name]
        if hint is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=text
            )
        elif typing.get_origin(hint) is list:
            parser.add_argument(
                flag,
                type=_csv,
                default=default,
                metavar="A,B",
                help=f"{text} (default: {','.join(default) or 'none'})",
            )
        else:
            parser.add_argument(
                flag, type=hint, default=default, help=f"{text} (default: {default!r})".strip()
            )
    parser.add_argument("--json", action="store_true", help="print the final summary as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    as_json = args.pop("json")
    config = TrainConfig(**args)
    from laser_serve.training.loop import train  # torch and friends load only for a real run

    try:
        summary = train(config, echo=lambda line: print(line, file=sys.stderr))
    except ConfigError as exc:
        parser.exit(2, f"laser-train: error: {exc}\n")
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; continue with: laser-train ... --out {config.out} --resume",
            file=sys.stderr,
        )
        return 130
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    """Accuracy per evaluation and RM selection counts, as markdown tables."""
    lines = ["| after iteration | accuracy | format | n |", "|---|---|---|---|"]
    for row in summary["accuracy"]:
        lines.append(
            f"| {row['iteration']} | {row['accuracy']:.3f} | "
            f"{row['format_rate']:.3f} | {row['n']} |"
        )
    lines += ["", "| reward model | selections | pulls | mean reward |", "|---|---|---|---|"]
    for name, s in summary["selections"].items():
        lines.append(f"| {name} | {s['selections']} | {s['pulls']} | {s['mean_reward']:.4f} |")
    state = "completed" if summary["completed"] else "stopped early (continue with --resume)"
    lines += [
        "",
        f"{summary['policy']} ({summary['grouping']} grouping): {summary['steps']} "
        f"batches, {summary['updates']} updates, {summary['skipped']} skipped; {state}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
