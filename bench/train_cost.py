"""`laser-bench train-cost`: wall time per training step, LASeR (one RM) vs the ensemble (all
RMs), with transformers and with vLLM sampling.

Every run trains the same policy on the same prompts with the same sampling seeds. Between
LASeR and the ensemble only the scoring differs (LinUCB's one chosen RM per batch against
every RM in the pool), so their ratio is what the paper's ~2x speed-up claim is about.
Between the generators only the sampling differs: `hf` runs transformers' `generate` on the
policy itself, `vllm` the server's engine under the step's LoRA adapter. The vLLM runs
share one engine, started first; its start-up is reported apart from the steps. Timings
are medians over steps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from laser_bench.cli import emit

METHODS = (("laser", "linucb"), ("ensemble", "ensemble"))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train-cost",
        help="training step time: LASeR vs the RM ensemble, transformers vs vLLM sampling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", default="gsm8k", help="gsm8k | jsonl | strategyqa")
    p.add_argument("--data-dir", default="", help="data folder (gsm8k: the shared copy)")
    p.add_argument("--steps", type=int, default=5, help="batches per run (default 5)")
    p.add_argument("--batch-size", type=int, default=2, help="prompts per batch (default 2)")
    p.add_argument("--n", type=int, default=4, help="responses per prompt (default 4)")
    p.add_argument("--pairs", type=int, default=2, help="pairs per prompt (default 2)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="sampled tokens (default 32)")
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank (default 8)")
    p.add_argument(
        "--generators",
        default="hf,vllm",
        help="sampling backends to compare, comma-separated (default hf,vllm)",
    )
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


def _config(args: argparse.Namespace, policy: str, generator: str, out: Path) -> Any:
    from laser_serve.training.config import TrainConfig

    return TrainConfig(
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
        generator=generator,
        verifier=args.verifier,
        seed=args.seed,
        threads=args.threads,
        out=str(out),
        progress=False,
    )


def run(args: argparse.Namespace) -> int:
    from laser_serve.errors import ConfigError
    from laser_serve.training.loop import train
    from laser_serve.training.vllm_sampler import VllmSampler

    generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    if not generators or set(generators) - {"hf", "vllm"}:
        print("laser-bench train-cost: error: --generators takes hf, vllm", file=sys.stderr)
        return 2
    root = args.out or Path(tempfile.mkdtemp(prefix="laser-train-cost-"))
    results: dict[str, Any] = {"setup": {k: v for k, v in vars(args).items() if k != "func"}}
    results["setup"]["out"] = str(root)
    rows = results["rows"] = []
    echo = lambda line: print(line, file=sys.stderr)  # noqa: E731
    try:
        engine: Any = contextlib.nullcontext()
        if "vllm" in generators:
            engine = VllmSampler.for_config(_config(args, "linucb", "vllm", root))
        with engine as vllm:
            if vllm is not None:
                started = time.perf_counter()
                vllm.start()
                results["vllm_start_seconds"] = time.perf_counter() - started
            # Generators alternate within each method, so a change in machine load between
            # runs falls on both sides (an idle engine takes no CPU time).
            for label, policy in METHODS:
                for generator in generators:
                    out = root / f"{label}-{generator}"
                    config = _config(args, policy, generator, out)
                    summary = train(config, echo, vllm if generator == "vllm" else None)
                    rows.append(
                        {"method": label, "generator": generator} | _measure(out / "log.jsonl")
                    )
                    results["pool"] = [rm["name"] for rm in summary["pool"]]
    except ConfigError as exc:
        print(f"laser-bench train-cost: error: {exc}", file=sys.stderr)
        return 2
    results["ratio"] = _ratios(rows)
    if args.json:
        emit(json.dumps(results, indent=2))
    else:
        emit(_table(results))
    return 0


def _ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """ensemble / LASeR per generator (step, score) and hf / vllm per method (step,
    generate): above 1 means LASeR, or vLLM, is the faster."""
    by = {(r["method"], r["generator"]): r for r in rows}
    ratio: dict[str, Any] = {"ensemble_over_laser": {}, "hf_over_vllm": {}}
    for g in dict.fromkeys(r["generator"] for r in rows):
        laser, ensemble = by[("laser", g)], by[("ensemble", g)]
        ratio["ensemble_over_laser"][g] = {
            "step": ensemble["total"] / laser["total"],
            "score": ensemble["score"] / laser["score"],
        }
    for method, _ in METHODS:
        if (method, "hf") in by and (method, "vllm") in by:
            hf, vllm = by[(method, "hf")], by[(method, "vllm")]
            ratio["hf_over_vllm"][method] = {
                "step": hf["total"] / vllm["total"],
                "generate": hf["generate"] / vllm["generate"],
            }
    return ratio


def _table(results: dict[str, Any]) -> str:
    lines = [
        f"pool: {', '.join(results['pool'])}",
        "",
        "| method | generator | step s | generate s | score s | update s | RM calls/step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['method']} | {r['generator']} | {r['total']:.2f} | {r['generate']:.2f} | "
            f"{r['score']:.2f} | {r['update']:.2f} | {r['rms']:.0f} |"
        )
    lines.append("")
    steps = results["rows"][0]["steps"]
    for g, r in results["ratio"]["ensemble_over_laser"].items():
        lines.append(
            f"{g}: ensemble / LASeR {r['step']:.2f}x per step, {r['score']:.2f}x in scoring"
        )
    for method, r in results["ratio"]["hf_over_vllm"].items():
        lines.append(
            f"{method}: hf / vllm {r['step']:.2f}x per step, {r['generate']:.2f}x in generation"
        )
    if "vllm_start_seconds" in results:
        start = results["vllm_start_seconds"]
        lines.append(f"vLLM engine start: {start:.1f} s (once, not in the steps)")
    lines.append(f"(medians over {steps} steps)")
    return "\n".join(lines)
