"""`laser-bench train-cost`: wall time per training step, LASeR (one RM) vs the ensemble (all RMs).

Both runs train the same policy on the same prompts with the same sampling seeds; only the
scoring differs (LinUCB's one chosen RM per batch against every RM in the pool), so the
ratio is what the paper's ~2x speed-up claim is about. Timings are medians over steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from laser_bench.cli import emit


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train-cost",
        help="training step time: LASeR (one RM per batch) vs the RM ensemble",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", default="gsm8k", help="gsm8k | jsonl | strategyqa")
    p.add_argument("--data-dir", default="", help="data folder (gsm8k: the shared copy)")
    p.add_argument("--steps", type=int, default=5, help="batches per policy (default 5)")
    p.add_argument("--batch-size", type=int, default=2, help="prompts per batch (default 2)")
    p.add_argument("--n", type=int, default=4, help="responses per prompt (default 4)")
    p.add_argument("--pairs", type=int, default=2, help="pairs per prompt (default 2)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="sampled tokens (default 32)")
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank (default 8)")
    p.add_argument("--verifier", action="store_true", help="add the verifier RM to the pool")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="keep the run folders here")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _measure(log: Path) -> dict[str, Any]:
    """Per-step medians from a run's log (a step's groups share its batch timings)."""
    steps: dict[int, dict[str, float]] = {}
    for line in log.read_text().splitlines():
        r = json.loads(line)
        s = steps.setdefault(r["step"], {"score": 0.0, "update": 0.0, "rms": 0})
        s["total"] = r["batch_seconds"]["total"]
        s["generate"] = r["batch_seconds"]["generate"]
        s["score"] += r["seconds"]["score"]
        s["update"] += r["seconds"]["update"]
        s["rms"] += len(r["arms"])
    keys = ("total", "generate", "score", "update", "rms")
    return {k: _median([s[k] for s in steps.values()]) for k in keys} | {"steps": len(steps)}


def run(args: argparse.Namespace) -> int:
    from laser_serve.errors import ConfigError
    from laser_serve.training.config import TrainConfig
    from laser_serve.training.loop import train

    root = args.out or Path(tempfile.mkdtemp(prefix="laser-train-cost-"))
    results: dict[str, Any] = {"setup": {k: v for k, v in vars(args).items() if k != "func"}}
    results["setup"]["out"] = str(root)
    for label, policy in (("laser", "linucb"), ("ensemble", "ensemble")):
        config = TrainConfig(
            data=args.data,
            data_dir=args.data_dir,
            train_size=args.steps * args.batch_size,
            eval_size=0,
            batch_size=args.batch_size,
            n=args.n,
            pairs=args.pairs,
            max_new_tokens=args.max_new_tokens,
            lora_r=args.lora_r,
            lora_alpha=2 * args.lora_r,
            lr=1e-4,
            policy=policy,
            verifier=args.verifier,
            seed=args.seed,
            threads=args.threads,
            out=str(root / label),
            progress=False,
        )
        try:
            summary = train(config, echo=lambda line: print(line, file=sys.stderr))
        except ConfigError as exc:
            print(f"laser-bench train-cost: error: {exc}", file=sys.stderr)
            return 2
        results[label] = _measure(root / label / "log.jsonl")
        results["pool"] = [rm["name"] for rm in summary["pool"]]
    laser, ensemble = results["laser"], results["ensemble"]
    results["ratio"] = {
        "step": ensemble["total"] / laser["total"],
        "score": ensemble["score"] / laser["score"],
    }
    if args.json:
        emit(json.dumps(results, indent=2))
    else:
        emit(_table(results))
    return 0


def _table(results: dict[str, Any]) -> str:
    lines = [
        f"pool: {', '.join(results['pool'])}",
        "",
        "| method | step s | generate s | score s | update s | RM calls/step |",
        "|---|---|---|---|---|---|",
    ]
    for label in ("laser", "ensemble"):
        r = results[label]
        lines.append(
            f"| {label} | {r['total']:.2f} | {r['generate']:.2f} | {r['score']:.2f} | "
            f"{r['update']:.2f} | {r['rms']:.0f} |"
        )
    ratio = results["ratio"]
    lines.append(
        f"\nensemble / LASeR: {ratio['step']:.2f}x per step, {ratio['score']:.2f}x in scoring "
        f"(medians over {results['laser']['steps']} steps)"
    )
    return "\n".join(lines)
