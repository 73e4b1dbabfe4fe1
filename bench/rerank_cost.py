"""`laser-bench rerank-cost`: what one RM per prompt saves against the ensemble of K RMs.

Table 1 sends the same prompts with the same caller-provided candidates through a real server
under policy=linucb, policy=ensemble and each fixed RM, and reports medians of request
latency and RM seconds, the linucb/ensemble ratios, and the selector + bookkeeping share of
request time. Table 2 measures generation throughput of the vLLM and transformers backends
on the same prompts with n candidates each.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

from laser_bench.cli import emit

from laser_serve.client import Client

# Short prompts and caller candidates, shared with `laser-bench load`'s short workload.
QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Why is the sky blue?",
    "What is 12 times 12?",
    "Who wrote Hamlet?",
    "What is photosynthesis?",
    "Name three primary colours.",
    "How far is the Moon?",
]
CANDIDATES = [
    "The answer is given in the first sentence of the text.",
    "I am not sure, but I think it is related to the question.",
    "Here is a short, direct answer with one supporting reason.",
    "A long answer that repeats the question and then explains the context in detail, "
    "covering the background, the key facts and a conclusion.",
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rerank-cost", help="RM cost of LinUCB vs the ensemble; generation tok/s")
    p.add_argument("--server", help="HOST:PORT of a running laser-serve (default: start one)")
    p.add_argument("--requests", type=int, default=24, help="requests per policy")
    p.add_argument("--candidates", type=int, default=4, help="candidates per request")
    p.add_argument("--gen-prompts", type=int, default=2, help="prompts for the throughput table")
    p.add_argument("--gen-n", type=int, default=8, help="candidates per prompt when generating")
    p.add_argument("--gen-tokens", type=int, default=32, help="new tokens per candidate")
    p.add_argument("--gen-prompt-tokens", type=int, default=1000, help="prompt length")
    p.add_argument("--backends", default="vllm,hf", help="generation backends to measure")
    p.add_argument("--skip-generation", action="store_true")
    p.add_argument("--skip-policies", action="store_true", help="skip the per-policy table")
    p.add_argument("--skip-scoring", action="store_true", help="skip the scoring-cost table")
    p.add_argument(
        "--scoring-profile",
        default="smollm2-135m",
        help="stack whose lm-loglik and lm-judge RMs the scoring table measures",
    )
    p.add_argument("--scoring-ns", default="1,4,8,16", help="candidates per request")
    p.add_argument("--scoring-lengths", default="256,1000,2000", help="prompt tokens")
    p.add_argument("--repeats", type=int, default=3, help="repeats per scoring cell (median)")
    p.add_argument(
        "--scoring-dtypes",
        default="auto",
        help="LM RM dtypes to time, comma-separated: auto (the server's choice), float32, "
        "bfloat16 (default auto)",
    )
    p.add_argument("--vllm-scoring", action="store_true", help="also score lm-loglik through vLLM")
    p.add_argument(
        "--batching",
        type=int,
        default=16,
        metavar="N",
        help="per-request seconds of every RM, N requests alone vs as one batch (0: skip)",
    )
    p.add_argument(
        "--batching-tokens", type=int, default=1000, help="the long requests' prompt tokens"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def measure_policies(target: str, requests: int, n_candidates: int) -> dict[str, Any]:
    with Client(target, retry=False) as client:
        rms = [r.name for r in client.reward_models()]
        policies = ["linucb", "ensemble", *[f"fixed:{rm}" for rm in rms]]
        samples: dict[str, dict[str, list[float]]] = {
            p: {"latency": [], "rm_seconds": [], "rm_calls": [], "overhead": []} for p in policies
        }
        linucb_choices = dict.fromkeys(rms, 0)
        # Interleave the policies request by request, so background load on the machine
        # falls on all of them alike.
        for i in range(requests):
            q = QUESTIONS[i % len(QUESTIONS)]
            for policy in policies:
                t = time.perf_counter()
                resp = client.rerank(
                    q, candidates=CANDIDATES[:n_candidates], policy=policy, context_text=q
                )
                row = samples[policy]
                row["latency"].append(time.perf_counter() - t)
                tm = resp.timings
                row["rm_seconds"].append(sum(tm.rm_seconds.values()))
                row["rm_calls"].append(len(tm.rm_seconds))
                work = tm.encode_seconds + tm.score_seconds + tm.generate_seconds
                row["overhead"].append(max(tm.total_seconds - work, 0.0) / tm.total_seconds)
                if policy == "linucb":  # keep the learner learning, as in production
                    for name in resp.reward_models:
                        linucb_choices[name] += 1
                    client.feedback(resp.selection_id, float(i % 2))
        rows = {
            policy: {
                "latency_s_p50": statistics.median(row["latency"]),
                "rm_seconds_p50": statistics.median(row["rm_seconds"]),
                "rm_seconds_mean": statistics.fmean(row["rm_seconds"]),
                "rm_calls_mean": statistics.fmean(row["rm_calls"]),
                "overhead_share_p50": statistics.median(row["overhead"]),
            }
            for policy, row in samples.items()
        }
    k = len(rms)
    lin, ens = rows["linucb"], rows["ensemble"]
    fixed_mean = statistics.fmean(rows[f"fixed:{rm}"]["rm_seconds_mean"] for rm in rms)
    return {
        "reward_models": rms,
        "rows": rows,
        "linucb_choices": linucb_choices,
        "rm_seconds_ratio": lin["rm_seconds_mean"] / ens["rm_seconds_mean"],
        # What LinUCB would cost choosing every RM equally often: its ratio moves with the
        # cost of the RMs the feedback steers it to, this one only with the pool.
        "rm_seconds_ratio_uniform": fixed_mean / ens["rm_seconds_mean"],
        "rm_calls_ratio": lin["rm_calls_mean"] / ens["rm_calls_mean"],
        "rm_seconds_ratio_target": 1.2 / k,
        "latency_ratio": lin["latency_s_p50"] / ens["latency_s_p50"],
        "linucb_overhead_share": lin["overhead_share_p50"],
    }


def long_prompt(tokens: int) -> str:
    """A long real-text prompt: LongBench rows from ../shared when present, else filler."""
    shared = Path(__file__).resolve().parents[1].parent / "shared/data/longbench/qasper.jsonl"
    if shared.exists():
        row = json.loads(shared.read_text().splitlines()[0])
        text = row["context"] + "\n\nQuestion: " + row["input"]
    else:
        text = " ".join(
            f"Sentence {i} of the document talks about topic {i % 17}." for i in range(tokens)
        )
    return text[: tokens * 5]


async def measure_generation(
    backend: str, n_prompts: int, n: int, max_tokens: int, prompt_tokens: int
) -> dict[str, Any]:
    from laser_serve.config import GeneratorConfig
    from laser_serve.generation import PromptBuilder, Sampling, make_generator
    from laser_serve.models import policy_tokenizer

    config = GeneratorConfig(backend=backend)
    builder = PromptBuilder(policy_tokenizer(config.model), config.max_model_len)
    tok = builder.tokenizer
    ids = tok(long_prompt(prompt_tokens), add_special_tokens=False)["input_ids"][:prompt_tokens]
    text = tok.decode(ids)
    prompts = [builder.build(f"[{i}] " + text, None, max_tokens) for i in range(n_prompts)]
    generator = make_generator(config)
    await generator.start()
    try:
        sampling = Sampling(n=n, temperature=0.8, top_p=1.0, max_tokens=max_tokens, seed=0)
        await generator.generate(prompts[0], sampling, "warmup")  # first call pays set-up
        t = time.perf_counter()
        outs = await asyncio.gather(
            *[generator.generate(p, sampling, f"bench-{i}") for i, p in enumerate(prompts)]
        )
        seconds = time.perf_counter() - t
    finally:
        await generator.close()
    tokens = sum(c.token_count for cands in outs for c in cands)
    return {
        "backend": backend,
        "prompt_tokens": len(prompts[0].token_ids),
        "n": n,
        "prompts": n_prompts,
        "new_tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
    }


def run(args: argparse.Namespace) -> int:
    from laser_serve.server.testing import running_server

    result: dict[str, Any] = {}
    if args.server and not args.skip_policies:
        result["policies"] = measure_policies(args.server, args.requests, args.candidates)
    elif not args.skip_policies:
        with running_server(["--generator", "hf"]) as target:
            result["policies"] = measure_policies(target, args.requests, args.candidates)
    if not args.skip_scoring:
        result.update(measure_scoring(args))
    if not args.skip_generation:
        result["generation"] = [
            asyncio.run(
                measure_generation(
                    b, args.gen_prompts, args.gen_n, args.gen_tokens, args.gen_prompt_tokens
                )
            )
            for b in args.backends.split(",")
        ]
    if args.json:
        emit(json.dumps(result, indent=2))
    else:
        emit(format_tables(result))
    return 0


def measure_scoring(args: argparse.Namespace) -> dict[str, Any]:
    from laser_bench import scoring_cost

    from laser_serve import config as config_module
    from laser_serve.devices import default_device, pick_dtype
    from laser_serve.rewards import make_reward_model

    config = config_module.load(profile=args.scoring_profile)
    ns = [int(v) for v in args.scoring_ns.split(",")]
    lengths = [int(v) for v in args.scoring_lengths.split(",")]
    # Room for the longest prompt, its template and the candidates: nothing is cut.
    room = max(lengths) + 256 + scoring_cost.ANSWER_TOKENS
    scoring = []
    for dtype in args.scoring_dtypes.split(","):
        rms = [
            make_reward_model(
                dataclasses.replace(rm, max_length=max(rm.max_length, room), dtype=dtype)
            )
            for rm in config.reward_models
            if rm.kind in ("lm-loglik", "lm-judge")
        ]
        rows = scoring_cost.measure(rms, ns, lengths, args.repeats)
        scoring += [{**row, "dtype": pick_dtype(dtype, default_device())} for row in rows]
    out: dict[str, Any] = {"scoring": scoring}
    if args.batching:
        every = [make_reward_model(rm) for rm in config.reward_models]
        out["batching"] = scoring_cost.measure_batching(
            every,
            args.batching,
            args.repeats,
            args.batching_tokens,
            costs=scoring_cost.server_cost(config),
            max_batch_tokens=config.server.max_batch_tokens,
        )
    if args.vllm_scoring:
        loglik = next(rm for rm in rms if rm.kind == "lm-loglik")
        out["vllm_scoring"] = scoring_cost.measure_vllm_loglik(loglik, 8, 1000, args.repeats)
    return out


def format_tables(result: dict[str, Any]) -> str:
    lines = format_policies(result) if "policies" in result else []
    if "scoring" in result:
        lines += [
            "",
            "Scoring cost (seconds to score n 32-token candidates; medians)",
            "",
            "| RM | dtype | n | prompt tokens | shared prefix s | lower bound s | old path s | "
            "shared / bound | old / shared |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["scoring"]:
            lines.append(
                f"| {r['rm']} | {r['dtype']} | {r['n']} | {r['prompt_tokens']} | "
                f"{r['seconds']:.3f} | "
                f"{r['bound_seconds']:.3f} | {r['old_seconds']:.3f} | "
                f"{r['seconds'] / r['bound_seconds']:.2f} | {r['old_seconds'] / r['seconds']:.2f} |"
            )
    if "batching" in result:
        lines += [
            "",
            "Batching across requests (per-request seconds, the load bench's requests: 4 "
            "candidates; medians)",
            "",
            "| RM | prompt | requests | tokens each | alone s | batched s | gain | "
            "capped batches | capped s | capped gain |",
            "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
        ]
        for r in result["batching"]:
            lines.append(
                f"| {r['rm']} | {r['prompt']} | {r['requests']} | {r['tokens']} | "
                f"{r['alone_s']:.3f} | {r['batched_s']:.3f} | {r['gain']:.2f} | "
                f"{'+'.join(map(str, r['capped_batches']))} | {r['capped_s']:.3f} | "
                f"{r['capped_gain']:.2f} |"
            )
    if "vllm_scoring" in result:
        v = result["vllm_scoring"]
        lines += [
            "",
            f"lm-loglik through vLLM prompt_logprobs ({v['rm']}, n={v['n']}, 1,000 tokens): "
            f"default {v['vllm_default_seconds']:.3f} s (max |score - RM| "
            f"{v['vllm_default_max_abs_diff']:.2g}), cache read forced "
            f"{v['vllm_cache_read_seconds']:.3f} s (max |score - RM| "
            f"{v['vllm_cache_read_max_abs_diff']:.2g})",
        ]
    if "generation" in result:
        lines += format_generation(result)
    return "\n".join(lines)


def format_policies(result: dict[str, Any]) -> list[str]:
    pol = result["policies"]
    k = len(pol["reward_models"])
    lines = [
        f"RM cost per request ({k} RMs, same prompts and candidates; medians)",
        "",
        "| policy | latency p50 (s) | RM s p50 | RM s mean | selector+bookkeeping share |",
        "|---|---|---|---|---|",
    ]
    for policy, row in pol["rows"].items():
        lines.append(
            f"| {policy} | {row['latency_s_p50']:.3f} | {row['rm_seconds_p50']:.3f} | "
            f"{row['rm_seconds_mean']:.3f} | {100 * row['overhead_share_p50']:.2f}% |"
        )
    lines += [
        "",
        f"linucb/ensemble RM seconds: {pol['rm_seconds_ratio']:.3f} "
        f"(target <= 1.2/K = {pol['rm_seconds_ratio_target']:.3f})",
        "linucb choices: " + ", ".join(f"{rm} {c}" for rm, c in pol["linucb_choices"].items()),
        f"mean fixed-RM / ensemble RM seconds (LinUCB choosing every RM equally often): "
        f"{pol['rm_seconds_ratio_uniform']:.3f}",
        f"linucb/ensemble RM calls: {pol['rm_calls_ratio']:.3f}",
        f"linucb/ensemble end-to-end latency: {pol['latency_ratio']:.3f}",
        f"selector + bookkeeping share of a linucb request: "
        f"{100 * pol['linucb_overhead_share']:.2f}% (target <= 2%)",
    ]
    return lines


def format_generation(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Generation throughput (same prompts)",
        "",
        "| backend | prompt tokens | prompts x n | new tokens | seconds | tokens/s |",
        "|---|---|---|---|---|---|",
    ]
    for g in result["generation"]:
        lines.append(
            f"| {g['backend']} | {g['prompt_tokens']} | {g['prompts']} x {g['n']} | "
            f"{g['new_tokens']} | {g['seconds']:.1f} | {g['tokens_per_s']:.1f} |"
        )
    return lines
