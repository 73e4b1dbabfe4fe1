"""Scoring speed on an accelerator, from random-initialized models: one prepared script.

Weights do not change speed, so a model built from its config with random weights times
what the real one would. The script needs only torch and transformers (a GPU machine lent
without vLLM, network or room for weights): it loads `laser_serve/rewards/causal.py` by
path, not through the package, so nothing else of laser-serve has to import there.

For lm-loglik-shaped work (the decoder's hidden states plus the log-softmax head over the
continuation tokens) it times, per prompt length and n (32-token candidates):

- shared: `shared_prefix_hidden` (the prompt once, the n candidates on its cache);
- old: `per_candidate_hidden` (prompt + candidate as n full rows);
- bound: one forward over the prompt and one over the candidates alone;

and, for `--requests` concurrent requests, the per-request seconds of scoring them one by
one against `shared_prefix_hidden_many` over all of them (the server's batching). It also
checks that shared and old give the same log-probabilities (to bf16 tolerance).

    PYTHONPATH=. python bench/device_scoring.py --out $OUT/scoring.json         # GPU, 1.5B
    python bench/device_scoring.py --tiny --device cpu --lengths 32 --ns 1,2    # a smoke run

Prints a Markdown table and writes the JSON ({"device", "model", "dtype", "rows": [...],
"batching": [...]}) to --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

ANSWER_TOKENS = 32
# Qwen2.5-1.5B's shape (the example); --tiny is a few-layer toy for a CPU smoke run.
QWEN_15B: dict[str, Any] = dict(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    tie_word_embeddings=True,
)
TINY: dict[str, Any] = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=512,
    max_position_embeddings=4096,
    tie_word_embeddings=True,
)


def load_causal() -> Any:
    path = Path(__file__).resolve().parents[1] / "laser_serve" / "rewards" / "causal.py"
    spec = importlib.util.spec_from_file_location("laser_causal", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def build_model(tiny: bool, dtype: torch.dtype, device: str) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(**(TINY if tiny else QWEN_15B))
    model: Any = Qwen2ForCausalLM(config)
    return model.to(dtype=dtype, device=device).eval()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Any, device: str, repeats: int) -> float:
    fn()  # warm-up (kernels, allocator)
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def make_rows(causal: Any, vocab: int, prompt: int, n: int, seed: int) -> Any:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (prompt + n * ANSWER_TOKENS,), generator=g).tolist()
    conts = [ids[prompt + i * ANSWER_TOKENS :][:ANSWER_TOKENS] for i in range(n)]
    return causal.Rows(ids[:prompt], conts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--tiny", action="store_true", help="a toy config (CPU smoke run)")
    p.add_argument("--lengths", default="256,1000,2000", help="prompt tokens")
    p.add_argument("--ns", default="1,4,8,16", help="candidates per request")
    p.add_argument("--requests", type=int, default=16, help="concurrent requests, batching")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=65536, help="tokens per forward")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    causal = load_causal()
    dtype = getattr(torch, args.dtype)
    model = build_model(args.tiny, dtype, args.device)
    decoder, head = model.model, causal.TokenLogprobs(model.get_output_embeddings())
    vocab = model.config.vocab_size
    lengths = [int(v) for v in args.lengths.split(",")]
    ns = [int(v) for v in args.ns.split(",")]

    @torch.inference_mode()
    def loglik(path: Any, rows: Any) -> list[torch.Tensor]:
        last, hidden = path(decoder, rows, args.max_tokens)
        return causal.continuation_logprobs(head, [(rows, (last, hidden))])[0]

    @torch.inference_mode()
    def bound(rows: Any) -> None:
        last = decoder(input_ids=torch.tensor([rows.prefix], device=args.device))
        conts = torch.tensor(rows.continuations, device=args.device)
        h = decoder(input_ids=conts).last_hidden_state
        causal.continuation_logprobs(head, [(rows, (last.last_hidden_state[0, -1], list(h)))])

    @torch.inference_mode()
    def batched(requests: list[Any]) -> None:
        hidden = causal.shared_prefix_hidden_many(decoder, requests, args.max_tokens)
        causal.continuation_logprobs(head, list(zip(requests, hidden, strict=True)))

    def one_by_one(requests: list[Any]) -> None:
        for r in requests:
            batched([r])

    def seconds(fn: Any, *fn_args: Any) -> float:
        return timed(partial(fn, *fn_args), args.device, args.repeats)

    rows_out = []
    for length in lengths:
        for n in ns:
            rows = make_rows(causal, vocab, length, n, seed=length * 100 + n)
            diff = max(
                float((a.float() - b.float()).abs().max())
                for a, b in zip(
                    loglik(causal.shared_prefix_hidden, rows),
                    loglik(causal.per_candidate_hidden, rows),
                    strict=True,
                )
            )
            rows_out.append(
                {
                    "prompt_tokens": length,
                    "n": n,
                    "seconds": seconds(loglik, causal.shared_prefix_hidden, rows),
                    "old_seconds": seconds(loglik, causal.per_candidate_hidden, rows),
                    "bound_seconds": seconds(bound, rows),
                    "max_abs_logprob_diff": diff,
                }
            )
            print(json.dumps(rows_out[-1]), file=sys.stderr, flush=True)
    batching = []
    for length in lengths:
        reqs = [make_rows(causal, vocab, length, 4, seed=7 + i) for i in range(args.requests)]
        alone, together = seconds(one_by_one, reqs), seconds(batched, reqs)
        batching.append(
            {
                "prompt_tokens": length,
                "n": 4,
                "requests": args.requests,
                "alone_s": alone / args.requests,
                "batched_s": together / args.requests,
                "gain": alone / together,
            }
        )
        print(json.dumps(batching[-1]), file=sys.stderr, flush=True)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    doc = {
        "device": name,
        "model": "toy Qwen2" if args.tiny else "Qwen2.5-1.5B-sized Qwen2 (random init)",
        "dtype": args.dtype,
        "torch": torch.__version__,
        "rows": rows_out,
        "batching": batching,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1))
    print(format_table(doc))
    return 0


def format_table(doc: dict[str, Any]) -> str:
    lines = [
        f"{doc['model']}, {doc['dtype']}, on {doc['device']} (torch {doc['torch']})",
        "",
        "| prompt tokens | n | shared s | lower bound s | old s | shared / bound | old / shared "
        "| max |Δ logprob| |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['prompt_tokens']} | {r['n']} | {r['seconds']:.4f} | {r['bound_seconds']:.4f} "
            f"| {r['old_seconds']:.4f} | {r['seconds'] / r['bound_seconds']:.2f} "
            f"| {r['old_seconds'] / r['seconds']:.2f} | {r['max_abs_logprob_diff']:.2g} |"
        )
    lines += [
        "",
        "| prompt tokens | requests (n=4) | alone s/request | batched s/request | gain |",
        "|---:|---:|---:|---:|---:|",
    ]
    for b in doc["batching"]:
        lines.append(
            f"| {b['prompt_tokens']} | {b['requests']} | {b['alone_s']:.4f} "
            f"| {b['batched_s']:.4f} | {b['gain']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
