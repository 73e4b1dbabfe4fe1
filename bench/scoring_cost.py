"""Seconds to score n candidates of one prompt with an LM-based RM, three ways, in one process:

- shared: the RM's own path (the prompt once, the candidates on its cache);
- bound:  the physics' lower bound: one forward over the prompt alone plus one over the n
          candidates alone (no attention to the prompt at all), plus the RM's head;
- old:    the per-candidate path (prompt + candidate as n full rows), what every RM did
          before prefix sharing.

And, for lm-loglik, the same job inside vLLM (`prompt_logprobs` on prompt + candidate rows
with automatic prefix caching), both as vLLM does it by default (a request that asks for
prompt log-probs skips reading the prefix cache) and with the cache read forced.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from laser_bench.rerank_cost import long_prompt

ANSWER_TOKENS = 32


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def request_of(tokenizer: Any, prompt_tokens: int, n: int, tag: str = "") -> Any:
    """A real-text prompt of about `prompt_tokens` tokens and n distinct 32-token answers."""
    from laser_serve.rewards import ScoreRequest

    text = long_prompt(prompt_tokens + n * ANSWER_TOKENS)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    prompt = tag + tokenizer.decode(ids[:prompt_tokens])
    answers = [ids[prompt_tokens + i * ANSWER_TOKENS :][:ANSWER_TOKENS] for i in range(n)]
    cands = [tokenizer.decode(a) for a in answers]
    return ScoreRequest([{"role": "user", "content": prompt}], cands, prompt[-200:])


def lower_bound(rm: Any, rows: Any) -> None:
    """The prompt once and the candidates once, with no attention between them, and the head."""
    import torch

    with torch.inference_mode():
        last = rm.decoder(input_ids=torch.tensor([rows.prefix])).last_hidden_state[0, -1]
        conts = rows.continuations
        ids = torch.zeros((len(conts), max(len(c) for c in conts)), dtype=torch.long)
        for i, c in enumerate(conts):
            ids[i, : len(c)] = torch.tensor(c)
        h = rm.decoder(input_ids=ids).last_hidden_state
        rm.head_scores([(rows, (last, [h[i, : len(c)] for i, c in enumerate(conts)]))])


def measure(
    rms: Sequence[Any], ns: Sequence[int], lengths: Sequence[int], repeats: int
) -> list[dict[str, Any]]:
    """One row per (RM, prompt length, n)."""
    from functools import partial

    from laser_serve.rewards.causal import per_candidate_hidden, shared_prefix_hidden

    out = []
    for rm in rms:
        rm.score_rows(rm.rows(request_of(rm.tokenizer, min(lengths), max(ns))))  # warm-up
        for length in lengths:
            for n in ns:
                rows = rm.rows(request_of(rm.tokenizer, length, n))
                out.append(
                    {
                        "rm": rm.name,
                        "kind": rm.kind,
                        "n": n,
                        "prompt_tokens": len(rows.prefix),
                        "seconds": _median_seconds(
                            partial(rm.score_rows, rows, shared_prefix_hidden), repeats
                        ),
                        "bound_seconds": _median_seconds(partial(lower_bound, rm, rows), repeats),
                        "old_seconds": _median_seconds(
                            partial(rm.score_rows, rows, per_candidate_hidden), repeats
                        ),
                    }
                )
    return out


def batch_requests(prompt: str, count: int, long_tokens: int = 1000) -> list[Any]:
    """`count` distinct requests like `laser-bench load`'s: ``short`` (a question and the
    four caller candidates) or ``long`` (a document of about `long_tokens` before it)."""
    from laser_bench.rerank_cost import CANDIDATES, QUESTIONS

    from laser_serve.rewards import ScoreRequest

    document = long_prompt(long_tokens) + "\n\n" if prompt == "long" else ""
    out = []
    for i in range(count):
        q = f"{QUESTIONS[i % len(QUESTIONS)]} ({i})"
        cands = [f"{c} ({i})" for c in CANDIDATES]
        out.append(ScoreRequest([{"role": "user", "content": f"[{i}] {document}{q}"}], cands, q))
    return out


def _score_in(rm: Any, requests: Sequence[Any], sizes: Sequence[int]) -> None:
    start = 0
    for size in sizes:
        rm.score_batch(requests[start : start + size])
        start += size


def measure_batching(
    rms: Sequence[Any],
    count: int,
    repeats: int,
    long_tokens: int = 1000,
    *,
    costs: Callable[[Any], int],
    max_batch_tokens: int,
) -> list[dict[str, Any]]:
    """Per-request seconds of each RM scoring `count` concurrent requests one at a time,
    all as one batch, and in the batches the server's scheduler makes of them under
    `max_batch_tokens` (`costs` gives a request's tokens as the server counts them): what
    batching can give the load bench's Rerank/s, and what the token cap keeps of it."""
    from functools import partial

    from laser_serve.batching import batch_sizes

    workloads = {p: batch_requests(p, count, long_tokens) for p in ("short", "long")}
    out = []
    for rm in rms:
        for prompt, reqs in workloads.items():
            sizes = batch_sizes([costs(r) for r in reqs], count, max_batch_tokens)
            rm.score_batch(reqs[:2])  # warm-up
            alone = _median_seconds(partial(_score_in, rm, reqs, [1] * count), repeats) / count
            batched = _median_seconds(partial(rm.score_batch, reqs), repeats) / count
            capped = _median_seconds(partial(_score_in, rm, reqs, sizes), repeats) / count
            out.append(
                {
                    "rm": rm.name,
                    "kind": rm.kind,
                    "prompt": prompt,
                    "requests": count,
                    "tokens": sum(costs(r) for r in reqs) // count,
                    "alone_s": alone,
                    "batched_s": batched,
                    "gain": alone / batched,
                    "max_batch_tokens": max_batch_tokens,
                    "capped_batches": sizes,
                    "capped_s": capped,
                    "capped_gain": alone / capped,
                }
            )
    return out


def server_cost(config: Any) -> Callable[[Any], int]:
    """A ScoreRequest's cost as the server's scheduler counts it (`request_cost`)."""
    from laser_serve.generation import Candidate, PromptBuilder
    from laser_serve.models import policy_tokenizer
    from laser_serve.pipeline import request_cost

    g = config.generator
    builder = PromptBuilder(policy_tokenizer(g.model), g.max_model_len)

    def cost(request: Any) -> int:
        prompt = builder.build(None, request.messages, 1)
        ids = builder.tokenizer(list(request.candidates), add_special_tokens=False)["input_ids"]
        return request_cost(
            prompt,
            [
                Candidate(c, len(i), "provided")
                for c, i in zip(request.candidates, ids, strict=True)
            ],
        )

    return cost


def measure_vllm_loglik(rm: Any, n: int, length: int, repeats: int) -> dict[str, Any]:
    """lm-loglik's scores of one request through vLLM's prompt_logprobs, timed, and checked
    against the RM's own scores; each timed request has a fresh prompt (nothing cached)."""
    return asyncio.run(_vllm_loglik(rm, n, length, repeats))


async def _vllm_loglik(rm: Any, n: int, length: int, repeats: int) -> dict[str, Any]:
    from vllm import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    from laser_serve.models import resolve

    engine = AsyncLLM.from_engine_args(
        AsyncEngineArgs(
            model=str(resolve(rm.model)),
            dtype="float32",
            max_model_len=max(2048, length + 2 * ANSWER_TOKENS + 64),
            enforce_eager=True,
            enable_prefix_caching=True,
            enable_chunked_prefill=False,
            max_num_batched_tokens=8192,
            kv_cache_memory_bytes=2 * 2**30,
            disable_log_stats=True,
        )
    )
    out: dict[str, Any] = {"rm": rm.name, "n": n, "prompt_tokens": length}
    try:
        for variant, skip in (("vllm_default", None), ("vllm_cache_read", False)):
            times, errors = [], []
            for call in range(repeats + 1):  # the first is a warm-up
                rows = rm.rows(request_of(rm.tokenizer, length, n, f"[{variant} {call}] "))
                t = time.perf_counter()
                scores = await asyncio.gather(
                    *(_vllm_mean_logprob(engine, rows.prefix, c, skip) for c in rows.continuations)
                )
                times.append(time.perf_counter() - t)
                errors.append(float(np.max(np.abs(np.array(scores) - rm.score_rows(rows)))))
            out[f"{variant}_seconds"] = statistics.median(times[1:])
            out[f"{variant}_max_abs_diff"] = max(errors)
        return out
    finally:
        engine.shutdown()


async def _vllm_mean_logprob(
    engine: Any, prefix: list[int], cont: list[int], skip_cache: bool | None
) -> float:
    import uuid

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind

    params = SamplingParams(
        max_tokens=1,
        prompt_logprobs=0,
        detokenize=False,  # ids only (cached prompt positions carry no token to decode)
        skip_reading_prefix_cache=skip_cache,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )
    final = None
    prompt = TokensPrompt(prompt_token_ids=prefix + cont)
    async for output in engine.generate(prompt, params, uuid.uuid4().hex):
        final = output
    assert final is not None and final.prompt_logprobs is not None
    # One entry per computed prompt token; with the cache read, the cached prefix has none,
    # so the continuation's entries are taken from the end.
    tail = final.prompt_logprobs[-len(cont) :]
    return float(np.mean([next(iter(d.values())).logprob if d else np.nan for d in tail]))
