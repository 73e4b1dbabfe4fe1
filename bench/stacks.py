"""`laser-bench stacks`: what each embedded policy gives a `make serve` user on this machine.

For every builtin policy: GSM8K greedy accuracy on the first --limit test rows (the prompt
`laser-bench gsm8k` uses, all rows in one vLLM batch) and the latency of one default-sized
Rerank generation (n=4, 64 new tokens, a short question) with nothing else running on the
engine. The default stack is the one with the best quality for that latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from laser_bench.cli import emit

POLICIES = (
    "builtin:smollm2-135m-instruct",
    "builtin:qwen2.5-coder-0.5b-instruct",
    "builtin:qwen2.5-coder-1.5b-instruct",
)


def register(sub: Any) -> None:
    p = sub.add_parser("stacks", help="GSM8K accuracy and Rerank latency of each policy")
    p.add_argument("--policies", nargs="+", default=list(POLICIES))
    p.add_argument("--limit", type=int, default=40, help="GSM8K test rows (default 40)")
    p.add_argument("--requests", type=int, default=3, help="latency samples (median)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = [asyncio.run(measure(policy, args.limit, args.requests)) for policy in args.policies]
    emit(json.dumps({"rows": rows}, indent=1) if args.json else format_table(rows))
    return 0


async def measure(policy: str, limit: int, requests: int) -> dict[str, Any]:
    from laser_bench import gsm8k, replay

    from laser_serve.config import GeneratorConfig
    from laser_serve.devices import default_device, pick_dtype
    from laser_serve.generation import PromptBuilder, Sampling, make_generator
    from laser_serve.models import policy_tokenizer

    config = GeneratorConfig(model=policy)
    t = time.perf_counter()
    prompts = PromptBuilder(policy_tokenizer(policy), config.max_model_len)
    generator = make_generator(config)
    await generator.start()
    load_s = time.perf_counter() - t
    try:
        rows = gsm8k.load_rows(gsm8k.default_data_dir(), "test", limit)
        greedy = Sampling(1, 0.0, 1.0, gsm8k.MAX_NEW_TOKENS, 0)
        t = time.perf_counter()
        outs = await asyncio.gather(
            *(
                generator.generate(
                    prompts.build(None, r.messages, greedy.max_tokens), greedy, r.key
                )
                for r in rows
            )
        )
        batch_s = time.perf_counter() - t
        correct = [
            replay.quality("gsm8k", o[0].text, r.answers) for o, r in zip(outs, rows, strict=True)
        ]
        tokens = sum(o[0].token_count for o in outs)
        latencies = []
        question = [{"role": "user", "content": "Why is the sky blue?"}]
        for i in range(requests):
            sampling = Sampling(4, 0.8, 1.0, 64, i)
            t = time.perf_counter()
            await generator.generate(prompts.build(None, question, 64), sampling, f"lat-{i}")
            latencies.append(time.perf_counter() - t)
    finally:
        await generator.close()
    return {
        "policy": policy,
        "dtype": pick_dtype(config.dtype, default_device()),
        "load_s": load_s,
        "gsm8k_rows": len(rows),
        "gsm8k_greedy_accuracy": 100 * sum(correct) / len(rows),
        "gsm8k_tokens_per_s": tokens / batch_s,
        "rerank_generate_s_p50": statistics.median(latencies),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| policy | dtype | GSM8K greedy % | rows | batch tok/s | Rerank n=4 x 64 tokens s "
        "| start s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['policy']} | {r['dtype']} | {r['gsm8k_greedy_accuracy']:.1f} | "
            f"{r['gsm8k_rows']} | "
            f"{r['gsm8k_tokens_per_s']:.1f} | {r['rerank_generate_s_p50']:.1f} | "
            f"{r['load_s']:.0f} |"
        )
    return "\n".join(lines)
